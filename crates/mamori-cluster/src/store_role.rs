//! The store role: `MAMORI_EVENTS`, in stream order, into this node's event store.
//!
//! An ordered consumer starts right after the store's last seq; each event is appended so that
//! **its store seq is its stream seq** (both start at 1 and have no gaps), which the append
//! acknowledgement checks. A redelivered message (seq already stored) is skipped, so a crash
//! anywhere stores every event exactly once: the resume point is the store's own last seq,
//! written in the same append as the event. A gap (the stream dropped events this store never
//! had, e.g. by the stream's retention) stops the role with an error rather than shift seqs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use mamori_event::{Event, Interner};
use mamori_store::EventStore;
use tokio::sync::watch;

use crate::bus::{decode_event, Bus, EVENTS_STREAM};

/// Progress of the store role, for status and metrics.
#[derive(Debug, Default)]
pub struct StoreProgress {
    /// Highest stream seq stored.
    pub stored_through: AtomicU64,
    /// Messages skipped because their seq was already stored (redeliveries).
    pub skipped: AtomicU64,
}

/// Runs until `stop` turns true or the store fails (logged).
pub async fn run(
    bus: Bus,
    store: Arc<dyn EventStore>,
    progress: Arc<StoreProgress>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match consume(&bus, &store, &progress, &mut stop).await {
            Ok(()) => return,
            Err(Fatal(e)) => {
                tracing::error!(error = %e, "store role stopped: events are no longer stored on this node");
                return;
            }
            Err(Retry(e)) => {
                tracing::warn!(error = %e, "store role: consumer lost; resuming from the store's last seq");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

enum Failure {
    Fatal(String),
    Retry(String),
}
use Failure::{Fatal, Retry};

async fn consume(
    bus: &Bus,
    store: &Arc<dyn EventStore>,
    progress: &StoreProgress,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Failure> {
    let st = Arc::clone(store);
    let last = tokio::task::spawn_blocking(move || st.stats())
        .await
        .map_err(|e| Fatal(e.to_string()))?
        .map_err(|e| Fatal(e.to_string()))?
        .last_seq
        .unwrap_or(0);
    progress.stored_through.store(last, Ordering::Relaxed);
    let stream = bus
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| Retry(e.to_string()))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| Retry(e.to_string()))?;
    let mut msgs = consumer
        .messages()
        .await
        .map_err(|e| Retry(e.to_string()))?
        .ready_chunks(1024);
    let mut names = Interner::new();
    let mut next = last + 1;
    loop {
        let chunk = tokio::select! {
            c = msgs.next() => match c {
                Some(c) => c,
                None => return Err(Retry("the consumer ended".into())),
            },
            _ = stop.changed() => return Ok(()),
        };
        // Runs of consecutive seqs with one receipt time: one append each.
        let mut runs: Vec<(u64, DateTime<Utc>, Vec<Event>)> = Vec::new();
        for m in chunk {
            let m = m.map_err(|e| Retry(e.to_string()))?;
            let seq = m
                .info()
                .map_err(|e| Retry(format!("message without stream info: {e}")))?
                .stream_sequence;
            if seq < next {
                progress.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if seq > next {
                return Err(Fatal(format!(
                    "the stream skips from seq {next} to {seq} (events removed before this store had them); store seqs would no longer be stream seqs"
                )));
            }
            let d = decode_event(&m.payload, &mut names)
                .map_err(|e| Fatal(format!("stream seq {seq}: {e}")))?;
            match runs.last_mut() {
                Some((_, at, evs)) if *at == d.received_at => evs.push(d.event),
                _ => runs.push((seq, d.received_at, vec![d.event])),
            }
            next = seq + 1;
        }
        for (first, at, evs) in runs {
            let st = Arc::clone(store);
            let n = evs.len() as u64;
            let ack = tokio::task::spawn_blocking(move || st.append_at(&evs, at))
                .await
                .map_err(|e| Fatal(e.to_string()))?
                .map_err(|e| Fatal(format!("append of stream seqs {first}..: {e}")))?;
            if ack.first_seq != first {
                return Err(Fatal(format!(
                    "the store gave seq {} to stream seq {first}",
                    ack.first_seq
                )));
            }
            progress
                .stored_through
                .store(first + n - 1, Ordering::Relaxed);
        }
    }
}
