//! The collector role: the event store the server's pipeline writes to publishes to
//! JetStream instead.
//!
//! The server's sources, parsing, group commit and backpressure are unchanged: the pipeline's
//! writer thread calls [`EventStore::append_at`] with a group of batches and acknowledges
//! senders only when it returns. Here it returns only after JetStream acknowledged **every**
//! event of the group (stored, and replicated when the stream has replicas), so an HTTP 200
//! or a TCP read that went on means the stream holds the events. A failed publish fails the
//! append: the sender is not acknowledged (HTTP 500) and retries.
//!
//! Every event gets its site ([`crate::SITE_FIELD`], replacing any such field the sender
//! wrote) and a `Nats-Msg-Id`
//! (`<node>-<start time>-<n>`): JetStream stores a retried publish once. An event of an
//! HTTP request sent with an `Idempotency-Key` uses `ingest-<caller>/<key>/<n>`
//! ([`crate::INGEST_ID_FIELD`]) instead, so the same request repeated at *another* collector
//! (its first collector died before answering) is stored once too.
//!
//! The seqs this store returns are the collector's own count of published events (an ingest
//! answer names them); the cluster-wide seq of an event is its seq in the stream, which the
//! store node uses as its store seq.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use mamori_event::{Event, FieldName, Value};
use mamori_store::{
    AppendAck, Error, EventStore, RawRecord, Result, RetentionReport, SearchRequest,
    SearchResponse, Seq, StoreStats, StoredEvent,
};

use async_nats::jetstream;

use crate::bus::{encode_event, publish_all, source_token, Bus, PUBLISH_PATIENCE};
use crate::{INGEST_ID_FIELD, SITE_FIELD};

fn is_http(ev: &Event) -> bool {
    matches!(
        ev.origin,
        mamori_event::Origin::Network {
            transport: mamori_event::Transport::Http,
            ..
        }
    )
}

/// Publishes appended events to `MAMORI_EVENTS` (see the module docs).
pub struct PublishingStore {
    bus: Bus,
    rt: tokio::runtime::Handle,
    site: String,
    node: String,
    started: i64,
    /// Events published (the collector's own seq).
    published: AtomicU64,
    /// Publishes repeated because JetStream did not acknowledge them (metrics).
    republished: AtomicU64,
    /// One group in flight at a time (the returned seqs are dense), and the JetStream
    /// context it publishes with (replaced after a stuck publish, see `append_at`).
    lock: Mutex<jetstream::Context>,
}

impl PublishingStore {
    /// `rt` runs the publishes; `append_at` must be called from outside it (the pipeline's
    /// writer thread).
    pub fn new(bus: &Bus, rt: tokio::runtime::Handle, site: &str, node: &str) -> PublishingStore {
        PublishingStore {
            bus: bus.clone(),
            rt,
            site: site.to_owned(),
            node: node.to_owned(),
            started: Utc::now().timestamp_micros(),
            published: AtomicU64::new(0),
            republished: AtomicU64::new(0),
            lock: Mutex::new(bus.js.clone()),
        }
    }

    /// Publishes repeated with their `Nats-Msg-Id` since start (JetStream had not
    /// acknowledged them: a NATS node lost, a leader election).
    pub fn republished(&self) -> u64 {
        self.republished.load(Ordering::Relaxed)
    }

    fn not_here(&self) -> Error {
        Error::InvalidRequest(format!(
            "node {} is a collector without the store role: search on a store node",
            self.node
        ))
    }
}

impl EventStore for PublishingStore {
    fn append_at(&self, batch: &[Event], received_at: DateTime<Utc>) -> Result<AppendAck> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::InvalidRequest(
                "the publishing store cannot be written from inside the async runtime".into(),
            ));
        }
        // Encode everything first: an event that cannot be stored fails the whole batch
        // before anything is published.
        let site = FieldName::new(SITE_FIELD);
        let mut bodies = Vec::with_capacity(batch.len());
        for ev in batch {
            let mut e = ev.clone();
            // The site is the collector's word: a `mamori.site` in the log itself (JSON
            // ingest flattens whatever a sender writes) is dropped, never believed; so is an
            // ingest id anywhere but where the HTTP ingest route wrote it.
            let http = is_http(ev);
            e.fields_mut().retain(|(n, _)| {
                n.as_str() != SITE_FIELD && (http || n.as_str() != INGEST_ID_FIELD)
            });
            e.push(site.clone(), Value::str(self.site.as_str()));
            let ingest_id = http
                .then(|| ev.get_str(INGEST_ID_FIELD).map(|id| format!("ingest-{id}")))
                .flatten();
            bodies.push((
                self.bus.event_subject(&self.site, source_token(ev)),
                ingest_id,
                encode_event(0, received_at, &e)?,
            ));
        }
        let mut js = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let first = self.published.load(Ordering::SeqCst) + 1;
        let (node, started) = (&self.node, self.started);
        let msgs: Vec<_> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, (subject, ingest_id, body))| {
                let id =
                    ingest_id.unwrap_or_else(|| format!("{node}-{started}-{}", first + i as u64));
                (subject, id, body)
            })
            .collect();
        // The publish runs as a task of the runtime, watched from here with a clock of our
        // own, so that no fault of the client (a publish once hung for minutes after a NATS
        // node's SIGKILL, see `bus::publish_round`) can hold the pipeline: past its patience
        // the append fails (the senders are not acknowledged and retry) and the next one
        // gets a fresh JetStream context.
        let (tx, rx) = std::sync::mpsc::channel();
        let task = {
            let js = js.clone();
            self.rt.spawn(async move {
                let _ = tx.send(publish_all(&js, msgs).await);
            })
        };
        let outcome = rx
            .recv_timeout(PUBLISH_PATIENCE + std::time::Duration::from_secs(15))
            .unwrap_or_else(|_| {
                task.abort();
                let _rt = self.rt.enter();
                *js = jetstream::new(self.bus.client.clone());
                tracing::error!(
                    node = %self.node,
                    "a JetStream publish neither finished nor failed in time; abandoned, the next one uses a fresh context"
                );
                Err("JetStream publish stuck; abandoned".into())
            });
        // The ids of a failed group are burnt too: some of its events may be in the stream,
        // and the next group's events must never be taken for their duplicates.
        let n = batch.len() as u64;
        self.published.store(first - 1 + n, Ordering::SeqCst);
        let repeated = outcome.map_err(|e| Error::Backend {
            backend: "nats",
            message: e,
        })?;
        self.republished.fetch_add(repeated, Ordering::Relaxed);
        Ok(AppendAck {
            first_seq: first,
            last_seq: first + n - 1,
        })
    }

    fn refresh(&self) -> Result<()> {
        Ok(())
    }

    fn search(&self, _q: &SearchRequest) -> Result<SearchResponse> {
        Err(self.not_here())
    }

    fn get(&self, _seq: Seq) -> Result<Option<StoredEvent>> {
        Ok(None)
    }

    fn raw_since(&self, _after: Seq, _limit: usize) -> Result<Vec<RawRecord>> {
        Ok(Vec::new())
    }

    fn apply_retention(
        &self,
        _now: DateTime<Utc>,
        _max_age: Option<TimeDelta>,
        _max_bytes: Option<u64>,
    ) -> Result<RetentionReport> {
        Ok(RetentionReport::default())
    }

    fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats::default())
    }
}
