//! NATS JetStream: connection, the two streams, and what travels on them.
//!
//! * `MAMORI_EVENTS`, subjects `mamori.events.<site>.<source>`: one message per event, the
//!   event encoded as one frame of the store's own codec (`mamori_store::codec`: CRC-checked,
//!   raw bytes and typed fields exactly), receipt time included.
//! * `MAMORI_MATCHES`, subjects `mamori.matches.<partition>`: an event that matched rules
//!   feeding a correlation, with the correlation and the rules ([`MatchMeta`]) and the event's
//!   seq in `MAMORI_EVENTS`.
//!
//! Both are file-backed, limits-retention streams with a duplicate window of
//! [`DUPLICATE_WINDOW`]: a publish retried with the same `Nats-Msg-Id` is stored once.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};
use mamori_event::{Event, Interner};
use mamori_store::codec;
use serde::{Deserialize, Serialize};

use crate::ClusterConfig;

pub const EVENTS_STREAM: &str = "MAMORI_EVENTS";
pub const MATCHES_STREAM: &str = "MAMORI_MATCHES";
/// The durable consumer every detector pulls events from (a work queue).
pub const DETECTORS_CONSUMER: &str = "detectors";
/// How long JetStream remembers a `Nats-Msg-Id`.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

pub fn event_subject(site: &str, source: &str) -> String {
    format!("mamori.events.{site}.{source}")
}

pub fn match_subject(partition: u32) -> String {
    format!("mamori.matches.{partition}")
}

/// A connection to the NATS servers of a cluster.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Bus {
    /// Connects and makes sure both streams exist (created with `replicas` copies).
    pub async fn connect(cfg: &ClusterConfig) -> Result<Bus, String> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("mamori {}", cfg.node_name()))
            .connection_timeout(Duration::from_secs(10))
            .connect(cfg.nats.clone())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let js = jetstream::new(client.clone());
        let bus = Bus { client, js };
        bus.ensure_streams(cfg.replicas).await?;
        Ok(bus)
    }

    async fn ensure_streams(&self, replicas: usize) -> Result<(), String> {
        for (name, subjects) in [
            (EVENTS_STREAM, "mamori.events.>"),
            (MATCHES_STREAM, "mamori.matches.>"),
        ] {
            self.js
                .get_or_create_stream(stream::Config {
                    name: name.into(),
                    subjects: vec![subjects.into()],
                    storage: stream::StorageType::File,
                    retention: stream::RetentionPolicy::Limits,
                    num_replicas: replicas,
                    duplicate_window: DUPLICATE_WINDOW,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("cannot create or open the JetStream stream {name}: {e}"))?;
        }
        Ok(())
    }
}

/// Most publishes awaiting their acknowledgement at once (the client's own limit is 5,000
/// per connection, shared by every task).
const IN_FLIGHT: usize = 512;

/// Publishes `(subject, Nats-Msg-Id, body)` messages, pipelined, and returns once JetStream
/// acknowledged every one of them (stored, and replicated when the stream has replicas).
pub async fn publish_all(
    js: &jetstream::Context,
    msgs: impl IntoIterator<Item = (String, String, Vec<u8>)>,
) -> Result<(), String> {
    use async_nats::jetstream::message::PublishMessage;
    let mut pending = std::collections::VecDeque::with_capacity(IN_FLIGHT);
    for (subject, id, body) in msgs {
        if pending.len() >= IN_FLIGHT {
            let a: async_nats::jetstream::context::PublishAckFuture =
                pending.pop_front().expect("not empty");
            a.await
                .map_err(|e| format!("JetStream did not acknowledge: {e}"))?;
        }
        let ack = js
            .send_publish(
                subject,
                PublishMessage::build().payload(body.into()).message_id(id),
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        pending.push_back(ack);
    }
    for a in pending {
        a.await
            .map_err(|e| format!("JetStream did not acknowledge: {e}"))?;
    }
    Ok(())
}

/// The subject token of an event's source: its transport, or `file` (uploads, tails).
pub fn source_token(ev: &Event) -> &'static str {
    match &ev.origin {
        mamori_event::Origin::File { .. } => "file",
        mamori_event::Origin::Network { transport, .. } => match transport {
            mamori_event::Transport::Udp => "udp",
            mamori_event::Transport::Tcp => "tcp",
            mamori_event::Transport::Tls => "tls",
            mamori_event::Transport::Http => "http",
        },
    }
}

/// One event as a message body (a store frame; `seq` is the event's seq where it has one).
pub fn encode_event(
    seq: u64,
    received_at: DateTime<Utc>,
    ev: &Event,
) -> mamori_store::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256 + ev.raw.len());
    codec::encode_frame(&mut out, seq, received_at, ev)?;
    Ok(out)
}

/// A message body back to `(seq, receipt time, event)`; a damaged body is an error, never a
/// panic.
pub fn decode_event(b: &[u8], names: &mut Interner) -> Result<codec::Decoded, String> {
    let (body, len) = codec::check_frame(b).map_err(|e| format!("bad event frame: {e:?}"))?;
    if len != b.len() {
        return Err(format!("{} bytes after the event frame", b.len() - len));
    }
    codec::decode_body(body, names)
}

/// What a match message says besides the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchMeta {
    /// The correlation family (the reference of its first correlation) the message feeds.
    pub family: String,
    /// References of the rules the event matched that feed this family.
    pub rules: Vec<String>,
}

/// A match message body: `u32` length of the JSON [`MatchMeta`], the JSON, the event frame.
pub fn encode_match(meta: &MatchMeta, frame: &[u8]) -> Vec<u8> {
    let m = serde_json::to_vec(meta).expect("match meta serialises");
    let mut out = Vec::with_capacity(4 + m.len() + frame.len());
    out.extend_from_slice(&(m.len() as u32).to_be_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(frame);
    out
}

pub fn decode_match(b: &[u8], names: &mut Interner) -> Result<(MatchMeta, codec::Decoded), String> {
    let len = b
        .get(..4)
        .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize)
        .ok_or("match message shorter than its header")?;
    let m = b
        .get(4..4 + len)
        .ok_or("match message shorter than its metadata")?;
    let meta: MatchMeta =
        serde_json::from_slice(m).map_err(|e| format!("bad match metadata: {e}"))?;
    let ev = decode_event(&b[4 + len..], names)?;
    Ok((meta, ev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_store::testsuite::{assert_same_event, ssh_event, t};

    #[test]
    fn event_and_match_bodies_roundtrip_and_damage_is_an_error() {
        let ev = ssh_event(3, "alice", "failure", "203.0.113.5", Some(t(1)));
        let b = encode_event(42, t(2), &ev).unwrap();
        let mut names = Interner::new();
        let d = decode_event(&b, &mut names).unwrap();
        assert_eq!((d.seq, d.received_at), (42, t(2)));
        assert_same_event(&d.event, &ev, "event body");
        let meta = MatchMeta {
            family: "b0ed808b".into(),
            rules: vec!["mamori_ssh_failed_login".into()],
        };
        let m = encode_match(&meta, &b);
        let (m2, d2) = decode_match(&m, &mut names).unwrap();
        assert_eq!(m2, meta);
        assert_same_event(&d2.event, &ev, "match body");
        // Every truncation and a flipped byte anywhere: an error, never a panic.
        for n in 0..m.len() {
            assert!(
                decode_match(&m[..n], &mut names).is_err(),
                "truncated at {n}"
            );
        }
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x40;
            let _ = decode_event(&x, &mut names);
        }
        let mut x = b.clone();
        x.push(0);
        assert!(decode_event(&x, &mut names).is_err(), "trailing bytes");
        assert_eq!(source_token(&ev), "file");
        assert_eq!(event_subject("osaka", "tcp"), "mamori.events.osaka.tcp");
    }
}
