//! `mamori cluster import`: an embedded install's event log into the cluster's stream — the
//! upgrade path from one machine to a cluster (issue #20).
//!
//! The embedded store's seqs are kept: **the event with embedded seq `n` becomes stream seq
//! `n`**, so the install's alerts, incidents, evidence bundles and vault records keep pointing
//! at the same events, and the embedded data directory can become the cluster's first store
//! node as it is (its store seq is the stream seq already; the store role resumes after it).
//!
//! How that is made exact:
//! - an empty stream whose next seq is not the embedded store's first seq (retention removed
//!   the oldest events) is moved to it with a purge up to that seq (JetStream's own
//!   operation: `first_seq` then equals the embedded first seq);
//! - every acknowledgement must name the event's embedded seq, and on a stream no purge moved
//!   every publish also carries `Nats-Expected-Last-Sequence = seq - 1`, so JetStream refuses
//!   it if anything else was stored in between (a collector already running): the import
//!   stops with that explanation rather than shift a seq;
//! - every publish carries a `Nats-Msg-Id` (`import-<seq>-<receipt µs>`): a publish repeated
//!   after a lost acknowledgement is stored once;
//! - an interrupted import resumes where the stream ends, after checking that the stream's
//!   last message is byte for byte what this import would have published for that seq.
//!
//! Imported events go through the detectors like any other (the cluster's alerts are made by
//! the cluster); the embedded install's own alerts and incidents stay in its `state.db`.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use mamori_event::{FieldName, Value};
use mamori_store::StoredEvent;

use crate::bus::{encode_event, source_token, Bus, EVENTS_STREAM};
use crate::SITE_FIELD;

/// What the stream holds compared with the embedded log, and where the import starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The stream already holds every event up to the embedded store's last seq.
    Done,
    /// Publish embedded seqs `from..=to`; first move an empty stream's next seq to `from`
    /// when `purge_to` says so.
    Publish {
        from: u64,
        to: u64,
        purge_to: Option<u64>,
    },
}

/// The stream's state: (messages, first seq, last seq).
pub async fn stream_state(bus: &Bus) -> Result<(u64, u64, u64), String> {
    let mut s = bus
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| format!("stream {EVENTS_STREAM}: {e}"))?;
    let i = s
        .info()
        .await
        .map_err(|e| format!("stream {EVENTS_STREAM}: {e}"))?;
    Ok((
        i.state.messages,
        i.state.first_sequence,
        i.state.last_sequence,
    ))
}

/// Decides where to start, given the embedded log's first and last seq and the stream's
/// state; `last_matches` tells whether the stream's last message is this import's
/// (asked only when the stream already holds messages).
pub fn plan(
    first: u64,
    last: u64,
    stream: (u64, u64, u64),
    last_matches: impl FnOnce(u64) -> Result<bool, String>,
) -> Result<Plan, String> {
    let foreign = |stream_last: u64| {
        format!(
            "the cluster's stream {EVENTS_STREAM} already holds events (last seq {stream_last}) that are not this install's \
             (its events are seqs {first}..={last}): import into a new cluster, before any collector runs"
        )
    };
    let (messages, _stream_first, stream_last) = stream;
    if first == 0 || last < first {
        return Err("the embedded store holds no events: nothing to import".into());
    }
    if messages == 0 && stream_last == 0 {
        return Ok(Plan::Publish {
            from: first,
            to: last,
            purge_to: (first > 1).then_some(first),
        });
    }
    if messages == 0 && stream_last + 1 == first {
        // A purge of an earlier attempt already moved the stream's next seq.
        return Ok(Plan::Publish {
            from: first,
            to: last,
            purge_to: None,
        });
    }
    if messages == 0 || stream_last < first || stream_last > last || !last_matches(stream_last)? {
        return Err(foreign(stream_last));
    }
    if stream_last == last {
        return Ok(Plan::Done);
    }
    Ok(Plan::Publish {
        from: stream_last + 1,
        to: last,
        purge_to: None,
    })
}

/// Moves an empty stream's next seq to `seq` (JetStream's purge up to a seq).
pub async fn move_next_seq(bus: &Bus, seq: u64) -> Result<(), String> {
    let s = bus
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| format!("stream {EVENTS_STREAM}: {e}"))?;
    s.purge()
        .sequence(seq)
        .await
        .map_err(|e| format!("cannot move the stream's next seq to {seq}: {e}"))?;
    let (messages, _, last) = stream_state(bus).await?;
    if messages != 0 || last + 1 != seq {
        return Err(format!(
            "the stream's next seq is {} after a purge to {seq} (this NATS server does not move it): \
             import needs an embedded store whose first seq is 1, or a newer nats-server",
            last + 1
        ));
    }
    Ok(())
}

/// The message body and id this import publishes for one stored event: the event with the
/// node's site (as a collector adds it), framed with its embedded seq and receipt time.
pub fn message_for(site: &str, s: &StoredEvent) -> Result<Message, String> {
    let mut e = s.event.clone();
    e.fields_mut().retain(|(n, _)| n.as_str() != SITE_FIELD);
    e.push(FieldName::new(SITE_FIELD), Value::str(site));
    let body = encode_event(s.seq, s.received_at, &e).map_err(|e| e.to_string())?;
    Ok((
        crate::bus::event_subject(site, source_token(&s.event)),
        format!("import-{}-{}", s.seq, s.received_at.timestamp_micros()),
        body,
    ))
}

/// Whether the stream's message at `seq` is exactly `body`.
pub async fn stream_holds(bus: &Bus, seq: u64, body: &[u8]) -> Result<bool, String> {
    let s = bus
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| format!("stream {EVENTS_STREAM}: {e}"))?;
    let m = s
        .get_raw_message(seq)
        .await
        .map_err(|e| format!("stream seq {seq}: {e}"))?;
    Ok(m.payload.as_ref() == body)
}

/// A message to publish: subject, `Nats-Msg-Id`, body.
pub type Message = (String, String, Vec<u8>);

/// Publishes one run of consecutive events, pipelined; every acknowledgement must name the
/// event's embedded seq. With `expect`, each publish also expects its predecessor as the
/// stream's last seq, so JetStream refuses it when anything else came in between; without it
/// (a stream whose next seq a purge moved: nats-server 2.9 keeps counting its expected last
/// seq from before the purge until it restarts) an interleaved event is found by the
/// acknowledged seqs instead. Returns the last seq stored; an error names the first seq
/// refused.
pub async fn publish_run(
    js: &jetstream::Context,
    run: &[(u64, Message)],
    expect: bool,
) -> Result<u64, String> {
    let mut pending = FuturesUnordered::new();
    let mut first_error: Option<(u64, String)> = None;
    let note = |seq: u64, e: String, first_error: &mut Option<(u64, String)>| {
        if first_error.as_ref().is_none_or(|(s, _)| seq < *s) {
            *first_error = Some((seq, e));
        }
    };
    for (seq, (subject, id, body)) in run {
        let seq = *seq;
        if pending.len() >= 512 {
            if let Some((s, Err(e))) = pending.next().await {
                note(s, e, &mut first_error);
            }
        }
        let mut msg = PublishMessage::build()
            .payload(body.clone().into())
            .message_id(id.as_str());
        if expect {
            msg = msg.expected_last_sequence(seq - 1);
        }
        match js.send_publish(subject.clone(), msg).await {
            Ok(ack) => pending.push(async move {
                let r = match ack.await {
                    Ok(a) if a.sequence == seq => Ok(()),
                    Ok(a) => Err(format!(
                        "JetStream stored embedded seq {seq} at stream seq {}",
                        a.sequence
                    )),
                    Err(e) => Err(e.to_string()),
                };
                (seq, r)
            }),
            Err(e) => note(seq, e.to_string(), &mut first_error),
        }
    }
    while let Some((s, r)) = pending.next().await {
        if let Err(e) = r {
            note(s, e, &mut first_error);
        }
    }
    match first_error {
        None => Ok(run.last().map_or(0, |(s, _)| *s)),
        Some((seq, e)) => Err(format!("embedded seq {seq}: {e}")),
    }
}

/// How long an import keeps resuming after refused or unacknowledged publishes (a NATS node
/// lost, a leader election) before it gives up; a later run resumes where the stream ends.
pub const IMPORT_PATIENCE: Duration = Duration::from_secs(60);

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Embedded seqs of the install: first and last.
    pub first: u64,
    pub last: u64,
    /// Events published by this run (an interrupted earlier run's are not counted).
    pub published: u64,
    /// Where this run started (`None`: the stream held everything already).
    pub started_at: Option<u64>,
    /// Publishes refused or unacknowledged, resumed from the stream's end.
    pub resumed: u64,
}

/// Events read from the embedded log per publish run.
const RUN: usize = 2_000;

/// Imports the embedded store's events into `MAMORI_EVENTS`; `progress(done, total)` after
/// each run. Reading the log blocks (a command-line tool's runtime, not a server's).
pub async fn import(
    bus: &Bus,
    site: &str,
    store: &mamori_store::EmbeddedEventStore,
    progress: &dyn Fn(u64, u64),
) -> Result<Report, String> {
    use mamori_store::EventStore;
    if bus.leaf_site.is_some() {
        return Err(
            "import into the hub: this configuration talks to a leaf site's JetStream domain"
                .into(),
        );
    }
    let stats = store.stats().map_err(|e| e.to_string())?;
    let (first, last) = match (stats.first_seq, stats.last_seq) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err("the embedded store holds no events: nothing to import".into()),
    };
    let mut report = Report {
        first,
        last,
        ..Report::default()
    };
    let st = stream_state(bus).await?;
    let matches = if st.0 > 0 && (first..=last).contains(&st.2) {
        Some(last_is_ours(bus, site, store, st.2).await?)
    } else {
        None
    };
    let (mut next, purge_to) = match plan(first, last, st, |_| {
        matches.ok_or_else(|| "not asked".to_owned())
    })? {
        Plan::Done => return Ok(report),
        Plan::Publish { from, purge_to, .. } => (from, purge_to),
    };
    if let Some(seq) = purge_to {
        move_next_seq(bus, seq).await?;
    }
    // Expectations hold only on a stream whose next seq no purge moved (see `publish_run`).
    let expect = first == 1;
    report.started_at = Some(next);
    let total = last - next + 1;
    let start = next;
    let mut last_progress = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    while next <= last {
        let batch = store
            .events_since(next - 1, RUN)
            .map_err(|e| format!("reading the embedded log after seq {}: {e}", next - 1))?;
        let Some(head) = batch.first() else {
            return Err(format!(
                "the embedded log ends at seq {} but said it holds seqs up to {last}",
                next - 1
            ));
        };
        if head.seq != next {
            return Err(format!(
                "the embedded log skips from seq {} to {} (removed by retention while importing?): stop the server that writes it",
                next - 1,
                head.seq
            ));
        }
        let mut run = Vec::with_capacity(batch.len());
        for (i, s) in batch.iter().enumerate() {
            if s.seq != next + i as u64 {
                return Err(format!(
                    "the embedded log skips from seq {} to {}",
                    next + i as u64 - 1,
                    s.seq
                ));
            }
            run.push((s.seq, message_for(site, s)?));
        }
        match publish_run(&bus.js, &run, expect).await {
            Ok(done) => {
                report.published += done + 1 - next;
                next = done + 1;
                last_progress = tokio::time::Instant::now();
                delay = Duration::from_millis(200);
                progress(next - start, total);
            }
            Err(e) => {
                if last_progress.elapsed() > IMPORT_PATIENCE {
                    return Err(format!(
                        "{e}; gave up after {} s without progress (run the import again: it resumes where the stream ends)",
                        IMPORT_PATIENCE.as_secs()
                    ));
                }
                tracing::warn!(error = %e, "import: a publish was refused or not acknowledged; resuming from the stream's end");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                report.resumed += 1;
                let (messages, _, stream_last) = stream_state(bus).await?;
                if stream_last + 1 < next
                    || stream_last > last
                    || (messages > 0
                        && stream_last >= first
                        && !last_is_ours(bus, site, store, stream_last).await?)
                {
                    return Err(format!(
                        "{e}; the stream now ends at seq {stream_last}, which is not this import's: another publisher (a collector?) wrote to it"
                    ));
                }
                report.published += (stream_last + 1).saturating_sub(next);
                next = stream_last + 1;
            }
        }
    }
    Ok(report)
}

/// Whether the stream's message at `seq` is what this import publishes for embedded `seq`.
async fn last_is_ours(
    bus: &Bus,
    site: &str,
    store: &mamori_store::EmbeddedEventStore,
    seq: u64,
) -> Result<bool, String> {
    use mamori_store::EventStore;
    let Some(s) = store.get(seq).map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    let (_, _, body) = message_for(site, &s)?;
    stream_holds(bus, seq, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: u64) -> Result<bool, String> {
        panic!("not asked")
    }

    #[test]
    fn plan_starts_an_empty_stream_at_the_first_embedded_seq() {
        assert_eq!(
            plan(1, 10, (0, 0, 0), never),
            Ok(Plan::Publish {
                from: 1,
                to: 10,
                purge_to: None
            })
        );
        assert_eq!(
            plan(5, 10, (0, 0, 0), never),
            Ok(Plan::Publish {
                from: 5,
                to: 10,
                purge_to: Some(5)
            })
        );
        // An earlier attempt purged already.
        assert_eq!(
            plan(5, 10, (0, 5, 4), never),
            Ok(Plan::Publish {
                from: 5,
                to: 10,
                purge_to: None
            })
        );
    }

    #[test]
    fn plan_resumes_only_its_own_stream() {
        assert_eq!(
            plan(1, 10, (4, 1, 4), |s| Ok(s == 4)),
            Ok(Plan::Publish {
                from: 5,
                to: 10,
                purge_to: None
            })
        );
        assert_eq!(plan(1, 10, (10, 1, 10), |_| Ok(true)), Ok(Plan::Done));
        let e = plan(1, 10, (4, 1, 4), |_| Ok(false)).unwrap_err();
        assert!(e.contains("not this install's"), "{e}");
        // More than the install holds, or ends before it starts: someone else's.
        assert!(plan(1, 10, (11, 1, 11), |_| Ok(true)).is_err());
        assert!(plan(5, 10, (3, 1, 3), |_| Ok(true)).is_err());
        // An empty stream whose next seq is elsewhere (a purge to another seq).
        assert!(plan(5, 10, (0, 8, 7), |_| Ok(true)).is_err());
        assert!(plan(0, 0, (0, 0, 0), never).is_err());
    }
}
