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

/// The stream of a leaf site, in the site's own JetStream domain.
pub fn site_stream(site: &str) -> String {
    format!("MAMORI_SITE_{site}")
}

/// The subject a leaf site's collector publishes to: not under `mamori.events.>`, so the
/// hub's stream (whose subject interest reaches the leaf node) never captures it directly —
/// it receives the site's events only by sourcing the site stream, once, in order.
pub fn site_subject(site: &str, source: &str) -> String {
    format!("mamori.site.{site}.{source}")
}

/// A connection to the NATS servers of a cluster.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// `Some(site)` when this node talks to its site's leaf node (`jetstream_domain`): its
    /// events go to the site stream.
    pub leaf_site: Option<String>,
}

/// The connection options of `[cluster]`: authentication, TLS, and a log line when the
/// client loses or regains its server (it reconnects by itself, across every URL of
/// `nats` and the members the servers announce, for as long as the node runs).
pub fn connect_options(cfg: &ClusterConfig) -> Result<async_nats::ConnectOptions, String> {
    let node = cfg.node_name();
    let mut o = async_nats::ConnectOptions::new()
        .name(format!("mamori {node}"))
        .connection_timeout(Duration::from_secs(10))
        .event_callback(move |ev| {
            let node = node.clone();
            async move {
                match ev {
                    async_nats::Event::Disconnected => {
                        tracing::warn!(node = %node, "NATS connection lost; reconnecting")
                    }
                    async_nats::Event::Connected => {
                        tracing::info!(node = %node, "NATS connected")
                    }
                    other => tracing::debug!(node = %node, event = %other, "NATS event"),
                }
            }
        });
    if let Some(t) = &cfg.nats_token {
        o = o.token(t.0.clone());
    }
    if let (Some(u), Some(p)) = (&cfg.nats_user, &cfg.nats_password) {
        o = o.user_and_password(u.clone(), p.0.clone());
    }
    if let Some(ca) = &cfg.nats_tls_ca {
        if !ca.is_file() {
            return Err(format!("nats_tls_ca {}: no such file", ca.display()));
        }
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(o)
}

impl Bus {
    /// Connects and makes sure the streams exist (created with `replicas` copies): on a leaf
    /// site the site stream only; on the hub `MAMORI_EVENTS` (sourcing the leaf sites'
    /// streams) and `MAMORI_MATCHES`.
    pub async fn connect(cfg: &ClusterConfig) -> Result<Bus, String> {
        let client = connect_options(cfg)?
            .connect(cfg.nats.clone())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let js = jetstream::new(client.clone());
        let bus = Bus {
            client,
            js,
            leaf_site: cfg.jetstream_domain.as_ref().map(|_| cfg.site.clone()),
        };
        match &bus.leaf_site {
            Some(site) => {
                bus.ensure_stream(
                    &site_stream(site),
                    &format!("mamori.site.{site}.>"),
                    cfg.replicas,
                    Vec::new(),
                )
                .await?
            }
            None => {
                let sources = cfg
                    .leaf_sites
                    .iter()
                    .map(|s| stream::Source {
                        name: site_stream(s),
                        external: Some(stream::External {
                            api_prefix: format!("$JS.{s}.API"),
                            delivery_prefix: None,
                        }),
                        ..Default::default()
                    })
                    .collect();
                bus.ensure_stream(EVENTS_STREAM, "mamori.events.>", cfg.replicas, sources)
                    .await?;
                bus.ensure_stream(MATCHES_STREAM, "mamori.matches.>", cfg.replicas, Vec::new())
                    .await?;
            }
        }
        Ok(bus)
    }

    /// The subject of an event from `source` published by this node's collector.
    pub fn event_subject(&self, site: &str, source: &str) -> String {
        match &self.leaf_site {
            Some(_) => site_subject(site, source),
            None => event_subject(site, source),
        }
    }

    /// Creates the stream, or adds to an existing one the sources it lacks (a hub that
    /// gained a leaf site); nothing else of an existing stream is changed.
    async fn ensure_stream(
        &self,
        name: &str,
        subjects: &str,
        replicas: usize,
        sources: Vec<stream::Source>,
    ) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| {
            format!("cannot create or open the JetStream stream {name}: {e}")
        };
        let s = self
            .js
            .get_or_create_stream(stream::Config {
                name: name.into(),
                subjects: vec![subjects.into()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                num_replicas: replicas,
                duplicate_window: DUPLICATE_WINDOW,
                sources: (!sources.is_empty()).then(|| sources.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| err(&e))?;
        let mut config = s.cached_info().config.clone();
        let have = config.sources.get_or_insert_with(Vec::new);
        let before = have.len();
        for src in sources {
            if !have.iter().any(|h| h.name == src.name) {
                have.push(src);
            }
        }
        if have.len() > before {
            tracing::info!(stream = name, sources = ?have.iter().map(|h| &h.name).collect::<Vec<_>>(), "stream sources updated");
            self.js.update_stream(config).await.map_err(|e| err(&e))?;
        }
        Ok(())
    }
}

/// Most publishes awaiting their acknowledgement at once (the client's own limit is 5,000
/// per connection, shared by every task).
const IN_FLIGHT: usize = 512;

/// How long [`publish_all`] keeps publishing again what JetStream did not acknowledge (a
/// NATS node lost, a stream leader being elected): well inside [`DUPLICATE_WINDOW`], so a
/// message stored whose acknowledgement was lost is recognised by its `Nats-Msg-Id`.
pub const PUBLISH_PATIENCE: Duration = Duration::from_secs(30);

/// Publishes `(subject, Nats-Msg-Id, body)` messages, pipelined, and returns once JetStream
/// acknowledged every one of them (stored, and replicated when the stream has replicas),
/// with the number of publishes it repeated. What is not acknowledged is published again
/// with the same `Nats-Msg-Id` (JetStream stores it once) until [`PUBLISH_PATIENCE`] runs
/// out, then the error is returned.
pub async fn publish_all(
    js: &jetstream::Context,
    msgs: impl IntoIterator<Item = (String, String, Vec<u8>)>,
) -> Result<u64, String> {
    let mut todo: Vec<(String, String, Vec<u8>)> = msgs.into_iter().collect();
    let deadline = tokio::time::Instant::now() + PUBLISH_PATIENCE;
    let mut delay = Duration::from_millis(100);
    let mut repeated = 0u64;
    loop {
        let (failed, last_error) = publish_round(js, &todo).await;
        if failed.is_empty() {
            return Ok(repeated);
        }
        if tokio::time::Instant::now() + delay > deadline {
            return Err(last_error);
        }
        tracing::warn!(
            unacknowledged = failed.len(),
            error = %last_error,
            "JetStream did not acknowledge; publishing again with the same Nats-Msg-Id"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        repeated += failed.len() as u64;
        todo = failed.into_iter().map(|i| todo[i].clone()).collect();
    }
}

/// One pipelined pass: the indexes of the messages not acknowledged, and the last error.
///
/// The acknowledgements are awaited **concurrently**: a publish's acknowledgement timeout
/// starts when it is first awaited, so awaiting them one after another made every ack lost
/// with a SIGKILLed NATS node cost its full timeout in turn (hundreds of them: minutes).
async fn publish_round(
    js: &jetstream::Context,
    msgs: &[(String, String, Vec<u8>)],
) -> (Vec<usize>, String) {
    use async_nats::jetstream::message::PublishMessage;
    use futures_util::stream::FuturesUnordered;
    use futures_util::StreamExt;
    let mut failed = Vec::new();
    let mut last_error = String::new();
    let mut pending = FuturesUnordered::new();
    let mut settle = |(i, r): (usize, Result<(), String>), failed: &mut Vec<usize>| {
        if let Err(e) = r {
            failed.push(i);
            last_error = e;
        }
    };
    for (i, (subject, id, body)) in msgs.iter().enumerate() {
        if pending.len() >= IN_FLIGHT {
            if let Some(done) = pending.next().await {
                settle(done, &mut failed);
            }
        }
        match js
            .send_publish(
                subject.clone(),
                PublishMessage::build()
                    .payload(body.clone().into())
                    .message_id(id.as_str()),
            )
            .await
        {
            Ok(ack) => pending.push(async move {
                let r = ack
                    .await
                    .map(drop)
                    .map_err(|e| format!("JetStream did not acknowledge: {e}"));
                (i, r)
            }),
            Err(e) => settle((i, Err(format!("publish: {e}"))), &mut failed),
        }
    }
    while let Some(done) = pending.next().await {
        settle(done, &mut failed);
    }
    failed.sort_unstable();
    (failed, last_error)
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
