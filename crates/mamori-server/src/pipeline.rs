//! The pipeline: sources → bounded queue → writer (group commit) → detector → alerts.
//!
//! ```text
//!  sources ──Batch──► [queue: pipeline.queue_batches] ──► writer thread ──► detector thread
//!  (parse on the        full: TCP/HTTP wait,               groups batches,     matches (rayon),
//!   tokio workers)      UDP drops and counts               one append+fsync,   correlates,
//!                                                          then acks           records alerts
//! ```
//!
//! * **Durable before acknowledged**: a batch's ack (HTTP 200) is sent only after the store's
//!   `append` returned, which under the default fsync policy means after fsync.
//! * **Group commit**: the writer takes every batch already waiting (up to
//!   `max_group_events`) and stores them with one write, so one fsync serves many clients.
//!   If the group fails (an oversized event), each batch is retried alone, so one bad client
//!   cannot fail another's batch.
//! * **Backpressure**: the queues are bounded; a slow store slows the writer, the queue fills,
//!   and the sources wait — except UDP, which cannot push back and drops instead (counted, and
//!   raised as an alert by the server: losing logs is itself a security event).
//! * **Memory**: besides the queues' lengths, every event holds its share of one budget in
//!   bytes ([`QUEUE_BYTES`]) from the moment a source queues it until detection is done with
//!   it — through the queue, the writer's group and the detector's queue — so the events in
//!   flight cost at most that much whatever their size or the stage that is behind.
//! * Detection runs after storage so every alert can name the seqs of its events.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mamori_detect::correlation::{
    Arrival, CorrelationAlert, Correlator, Limits, Phase, PressureReport, SkewReport,
};
use mamori_detect::{outcome, Match};
use mamori_event::{Event, Level, RuleId};
use mamori_sigma::FieldMap;
use mamori_store::{
    kvchunks, Alert, AlertStore, AppendAck, EventStore, InsertOutcome, NewAlert, Seq,
};
use rayon::prelude::*;
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::analytics::LiveAnalytics;
use crate::metrics::{Metrics, SourceKind};
use crate::rules::{Engine, RulesHandle};

/// Bytes of events (as estimated by [`event_bytes`]) between the sources and the end of
/// detection. At saturation every stage is full: counted in batches and groups the events in
/// flight held ~75 MB (64 batches of 512 in the queue, one group being stored, four stored
/// groups of 4,096 waiting for detection; `mamori bench ingest`, issue #15). 16 MiB is about
/// 12,000 syslog events: a group being detected, one being stored and the next one queued.
pub const QUEUE_BYTES: usize = 16 << 20;

/// Memory an event holds, estimated from its parts (the struct, its raw bytes and each field
/// with its text). Allocator overhead is included as a fixed amount per allocation.
pub fn event_bytes(e: &Event) -> usize {
    const PER_ALLOC: usize = 16;
    fn value_bytes(v: &mamori_event::Value) -> usize {
        match v {
            mamori_event::Value::Str(s) => s.len() + PER_ALLOC,
            mamori_event::Value::List(l) => {
                l.iter().map(value_bytes).sum::<usize>()
                    + l.len() * std::mem::size_of::<mamori_event::Value>()
                    + PER_ALLOC
            }
            _ => 0,
        }
    }
    std::mem::size_of::<Event>()
        + e.raw.len()
        + PER_ALLOC
        + e.timestamp_raw.as_ref().map_or(0, |t| t.len() + PER_ALLOC)
        + e.fields()
            .iter()
            .map(|(_, v)| {
                std::mem::size_of::<(mamori_event::FieldName, mamori_event::Value)>()
                    + value_bytes(v)
            })
            .sum::<usize>()
}

/// Key of the saved correlation state in the alert store's key/value table: a full snapshot;
/// the groups changed since are under `{key}/delta/{n}` (n = 1, 2, …). Each is written in
/// parts (`mamori_store::kvchunks`: the key holds a manifest, the parts `{key}/part/…`), and
/// each value starts with the snapshot's generation (8 bytes, little endian): a change set of
/// another generation is stale (left by a crash between a new snapshot and the deletion of the
/// old changes).
pub const CORRELATION_STATE_KEY: &str = "detection/correlation_state";

/// Change sets written before the next full snapshot (10 minutes of 5-second saves), which
/// is also written when the change sets outgrow [`DELTA_RATIO`] times the last one: a flood
/// of new groups then writes a snapshot now and then, not every few seconds, and a restart
/// reads at most a few times the live state.
const MAX_DELTAS: u64 = 120;
const DELTA_RATIO: u64 = 4;

fn delta_key(n: u64) -> String {
    format!("{CORRELATION_STATE_KEY}/delta/{n}")
}

fn split_generation(blob: &[u8]) -> Option<(u64, &[u8])> {
    let (g, body) = blob.split_at_checked(8)?;
    Some((u64::from_le_bytes(g.try_into().ok()?), body))
}

/// The unit correlation judges clock skew per: the file (upload, tailed file) or, for a
/// network stream, transport, peer address and the host the event names.
fn arrival_source(ev: &Event) -> String {
    match &ev.origin {
        mamori_event::Origin::File { path, .. } => path.display().to_string(),
        mamori_event::Origin::Network { peer, transport } => {
            let t = match transport {
                mamori_event::Transport::Udp => "udp",
                mamori_event::Transport::Tcp => "tcp",
                mamori_event::Transport::Tls => "tls",
                mamori_event::Transport::Http => "http",
            };
            let host = ev.host().unwrap_or_default();
            format!("{t}://{}/{host}", peer.ip())
        }
    }
}

/// Events from one source read, with an optional acknowledgement channel.
pub struct Batch {
    pub events: Vec<Event>,
    pub source: SourceKind,
    pub received: Instant,
    pub received_at: DateTime<Utc>,
    pub ack: Option<oneshot::Sender<Result<AppendAck, String>>>,
    /// This batch's share of [`QUEUE_BYTES`], handed on with its events to detection.
    budget: Option<OwnedSemaphorePermit>,
}

/// The pipeline closed (the server is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is shutting down")]
pub struct Closed;

/// The sources' handle to the pipeline.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Batch>,
    /// [`QUEUE_BYTES`] of events in flight, shared by every source.
    budget: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Sink {
    fn batch(&self, events: Vec<Event>, source: SourceKind) -> Batch {
        self.metrics
            .source(source)
            .events_in
            .fetch_add(events.len() as u64, Relaxed);
        Batch {
            events,
            source,
            received: Instant::now(),
            received_at: Utc::now(),
            ack: None,
            budget: None,
        }
    }

    /// The batch's share of the budget in permits: its estimated bytes, at most the whole
    /// budget (a batch larger than it goes alone once everything before it is done).
    fn share(&self, events: &[Event]) -> u32 {
        let bytes: usize = events.iter().map(event_bytes).sum();
        bytes.clamp(1, QUEUE_BYTES) as u32
    }

    /// Waits for the batch's share of the budget.
    async fn reserve(&self, events: &[Event]) -> Result<OwnedSemaphorePermit, Closed> {
        Arc::clone(&self.budget)
            .acquire_many_owned(self.share(events))
            .await
            .map_err(|_| Closed)
    }

    /// [`Sink::reserve`] for a blocking thread.
    fn reserve_blocking(&self, events: &[Event]) -> Result<OwnedSemaphorePermit, Closed> {
        let wait = Arc::clone(&self.budget).acquire_many_owned(self.share(events));
        match tokio::runtime::Handle::try_current() {
            Ok(h) => h.block_on(wait).map_err(|_| Closed),
            // Outside a runtime (tests, tools): poll.
            Err(_) => loop {
                match Arc::clone(&self.budget).try_acquire_many_owned(self.share(events)) {
                    Ok(p) => return Ok(p),
                    Err(tokio::sync::TryAcquireError::Closed) => return Err(Closed),
                    Err(tokio::sync::TryAcquireError::NoPermits) => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                }
            },
        }
    }

    /// Queues events, waiting while the queue is full (backpressure).
    pub async fn send(&self, events: Vec<Event>, source: SourceKind) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        let budget = self.reserve(&events).await?;
        let mut b = self.batch(events, source);
        b.budget = Some(budget);
        self.tx.send(b).await.map_err(|_| Closed)
    }

    /// A batch whose writer answers on the returned channel once it is durable.
    fn durable_batch(
        &self,
        events: Vec<Event>,
        source: SourceKind,
        budget: OwnedSemaphorePermit,
    ) -> (Batch, oneshot::Receiver<Result<AppendAck, String>>) {
        let (tx, rx) = oneshot::channel();
        let mut b = self.batch(events, source);
        b.ack = Some(tx);
        b.budget = Some(budget);
        (b, rx)
    }

    /// Queues events and waits until they are durable; returns their seqs.
    pub async fn send_durable(
        &self,
        events: Vec<Event>,
        source: SourceKind,
    ) -> Result<AppendAck, String> {
        let budget = self.reserve(&events).await.map_err(|e| e.to_string())?;
        let (b, rx) = self.durable_batch(events, source, budget);
        self.tx.send(b).await.map_err(|_| Closed.to_string())?;
        rx.await.map_err(|_| Closed.to_string())?
    }

    /// [`Sink::send_durable`] for a blocking thread (file uploads read on the blocking pool).
    pub fn send_durable_blocking(
        &self,
        events: Vec<Event>,
        source: SourceKind,
    ) -> Result<AppendAck, String> {
        let budget = self.reserve_blocking(&events).map_err(|e| e.to_string())?;
        let (b, rx) = self.durable_batch(events, source, budget);
        self.tx.blocking_send(b).map_err(|_| Closed.to_string())?;
        rx.blocking_recv().map_err(|_| Closed.to_string())?
    }

    /// Queues events without waiting; when the queue (or the budget) is full they are dropped
    /// and counted.
    pub fn try_send(&self, events: Vec<Event>, source: SourceKind) -> bool {
        if events.is_empty() {
            return true;
        }
        let n = events.len() as u64;
        let budget = Arc::clone(&self.budget).try_acquire_many_owned(self.share(&events));
        let mut b = self.batch(events, source);
        let sent = match budget {
            Ok(budget) => {
                b.budget = Some(budget);
                self.tx.try_send(b).is_ok()
            }
            Err(_) => false,
        };
        if !sent {
            self.metrics.source(source).dropped.fetch_add(n, Relaxed);
        }
        sent
    }

    /// Batches waiting in the queue.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Bytes of events in flight (queued, being stored or waiting for detection), as counted
    /// against [`QUEUE_BYTES`].
    pub fn bytes_in_flight(&self) -> usize {
        QUEUE_BYTES.saturating_sub(self.budget.available_permits())
    }
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Alerts below this level are not raised.
    pub min_level: Level,
    pub suppress_secs: u64,
    pub lateness_secs: u64,
    /// Most groups per correlation rule (see `DetectionConfig::max_correlation_groups`).
    pub max_correlation_groups: usize,
    /// Capacity of the source → writer queue, in batches.
    pub queue_batches: usize,
    /// Most events stored with one write.
    pub max_group_events: usize,
    /// Backup-deletion alerts on these hosts name the `[[backup]]` entries they concern.
    pub backup_links: crate::backups::BackupLinks,
}

/// What the writer hands the detector.
struct Work {
    first_seq: Seq,
    events: Vec<Event>,
    received: Instant,
    received_at: DateTime<Utc>,
    /// The events' share of [`QUEUE_BYTES`], returned when detection is done with them.
    _budget: Option<OwnedSemaphorePermit>,
}

/// Running pipeline threads.
pub struct Pipeline {
    pub sink: Sink,
    writer: Option<std::thread::JoinHandle<()>>,
    detector: Option<std::thread::JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the writer and detector threads.
    pub fn start(
        store: Arc<dyn EventStore>,
        alerts: Arc<dyn AlertStore>,
        rules: Option<Arc<RulesHandle>>,
        settings: Settings,
        metrics: Arc<Metrics>,
        alert_tx: broadcast::Sender<Alert>,
    ) -> Pipeline {
        Pipeline::start_with_analytics(store, alerts, rules, settings, metrics, alert_tx, None)
    }

    /// [`Pipeline::start`] with live analytics run by the detector (see [`crate::analytics`]).
    pub fn start_with_analytics(
        store: Arc<dyn EventStore>,
        alerts: Arc<dyn AlertStore>,
        rules: Option<Arc<RulesHandle>>,
        settings: Settings,
        metrics: Arc<Metrics>,
        alert_tx: broadcast::Sender<Alert>,
        analytics: Option<LiveAnalytics>,
    ) -> Pipeline {
        Pipeline::start_counted(
            store, alerts, rules, settings, metrics, alert_tx, analytics, None,
        )
    }

    /// [`Pipeline::start_with_analytics`] with the writer counting every stored batch into
    /// `tally` (activity aggregates, see [`crate::source_health`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start_counted(
        store: Arc<dyn EventStore>,
        alerts: Arc<dyn AlertStore>,
        rules: Option<Arc<RulesHandle>>,
        settings: Settings,
        metrics: Arc<Metrics>,
        alert_tx: broadcast::Sender<Alert>,
        analytics: Option<LiveAnalytics>,
        tally: Option<Arc<crate::source_health::SourceHealth>>,
    ) -> Pipeline {
        let (tx, rx) = mpsc::channel::<Batch>(settings.queue_batches.max(1));
        let max_group_events = settings.max_group_events.max(1);
        // Stored groups waiting for detection: each up to `max_group_events` events, so a
        // short queue (a few groups) keeps the detector busy without holding tens of
        // thousands of events in memory at saturation.
        let (wtx, wrx) = std_mpsc::sync_channel::<Work>(4);
        let m = Arc::clone(&metrics);
        let writer = std::thread::Builder::new()
            .name("mamori-writer".into())
            .spawn(move || writer_loop(rx, wtx, store, m, max_group_events, tally))
            .expect("spawn writer thread");
        let m = Arc::clone(&metrics);
        let detector = std::thread::Builder::new()
            .name("mamori-detect".into())
            .spawn(move || {
                let mut d = Detector::new(rules, alerts, settings, m, alert_tx);
                d.analytics = analytics;
                d.run(wrx)
            })
            .expect("spawn detector thread");
        Pipeline {
            sink: Sink {
                tx,
                budget: Arc::new(Semaphore::new(QUEUE_BYTES)),
                metrics,
            },
            writer: Some(writer),
            detector: Some(detector),
        }
    }

    /// Waits until every queued batch is stored and examined. Call after every [`Sink`] clone
    /// is dropped (the sources stopped); the pipeline's own sink is dropped here.
    pub fn shutdown(mut self) {
        drop(self.sink);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(d) = self.detector.take() {
            let _ = d.join();
        }
    }
}

fn writer_loop(
    mut rx: mpsc::Receiver<Batch>,
    wtx: std_mpsc::SyncSender<Work>,
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    max_group: usize,
    tally: Option<Arc<crate::source_health::SourceHealth>>,
) {
    let tally = tally.as_deref().map(|h| &h.tally);
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut n = group[0].events.len();
        while n < max_group {
            match rx.try_recv() {
                Ok(b) => {
                    n += b.events.len();
                    group.push(b);
                }
                Err(_) => break,
            }
        }
        let Some(held) = store_group(group, &*store, &metrics, &wtx, tally) else {
            return;
        };
        if !held.is_empty() && !hold(held, &mut rx, &*store, &metrics, &wtx, max_group, tally) {
            return;
        }
    }
}

/// Stores a group with one append (each batch alone if the group fails), acknowledges, and
/// hands the stored events to detection. Returns the batches that failed for lack of space
/// and that nobody waits for (syslog): the caller holds and retries them. `None` when the
/// detector is gone.
fn store_group(
    group: Vec<Batch>,
    store: &dyn EventStore,
    metrics: &Metrics,
    wtx: &std_mpsc::SyncSender<Work>,
    tally: Option<&crate::source_health::Tally>,
) -> Option<Vec<Batch>> {
    let n: usize = group.iter().map(|b| b.events.len()).sum();
    let received = group
        .iter()
        .map(|b| b.received)
        .min()
        .unwrap_or_else(Instant::now);
    let received_at = group
        .iter()
        .map(|b| b.received_at)
        .min()
        .unwrap_or_else(Utc::now);
    let lens: Vec<usize> = group.iter().map(|b| b.events.len()).collect();
    let mut acks = Vec::with_capacity(group.len());
    let mut meta = Vec::with_capacity(group.len());
    let mut all = Vec::with_capacity(n);
    for b in group {
        acks.push(b.ack);
        meta.push((b.source, b.received, b.received_at, b.budget));
        all.extend(b.events);
    }
    let t = Instant::now();
    let results: Vec<mamori_store::Result<AppendAck>> = match store.append_at(&all, received_at) {
        Ok(ack) => {
            let mut at = ack.first_seq;
            lens.iter()
                .map(|&l| {
                    let a = AppendAck {
                        first_seq: at,
                        last_seq: at + l as u64 - 1,
                    };
                    at += l as u64;
                    Ok(a)
                })
                .collect()
        }
        Err(e) if lens.len() == 1 => vec![Err(e)],
        Err(_) => {
            // Retry each batch alone so one bad batch fails only itself.
            let mut off = 0;
            lens.iter()
                .map(|&l| {
                    let r = store.append_at(&all[off..off + l], received_at);
                    off += l;
                    r
                })
                .collect()
        }
    };
    metrics
        .store_write_micros
        .fetch_add(t.elapsed().as_micros() as u64, Relaxed);
    metrics.store_writes.fetch_add(1, Relaxed);
    // Hand the stored events to detection, then acknowledge.
    let mut works = Vec::new();
    let mut held = Vec::new();
    // The stored batches' shares of the budget, which go to detection with their events.
    let mut stored_budget: Option<OwnedSemaphorePermit> = None;
    let mut events = all.into_iter();
    let mut answers = Vec::with_capacity(acks.len());
    for ((r, &l), (ack, (source, b_received, b_received_at, budget))) in results
        .into_iter()
        .zip(&lens)
        .zip(acks.into_iter().zip(meta))
    {
        let chunk: Vec<Event> = events.by_ref().take(l).collect();
        match r {
            Ok(a) => {
                if let Some(b) = budget {
                    match stored_budget.as_mut() {
                        Some(all) => all.merge(b),
                        None => stored_budget = Some(b),
                    }
                }
                metrics.storage.clear_full();
                if let Some(t) = tally {
                    t.count(&chunk, source, b_received_at, a.last_seq);
                }
                if l > 0 {
                    metrics.events_stored.fetch_add(l as u64, Relaxed);
                    match works.last_mut() {
                        Some(Work {
                            first_seq, events, ..
                        }) if *first_seq + events.len() as u64 == a.first_seq => {
                            events.extend(chunk)
                        }
                        _ => works.push(Work {
                            first_seq: a.first_seq,
                            events: chunk,
                            received,
                            received_at,
                            _budget: None,
                        }),
                    }
                }
                answers.push((ack, Ok(a)));
            }
            Err(e) if e.is_disk_full() => {
                // Never acknowledged: a waiting client is refused now (HTTP 507), syslog is
                // held and retried until space returns.
                metrics.storage.set_full(&e.to_string());
                match ack {
                    Some(ack) => {
                        metrics.storage.refused_events.fetch_add(l as u64, Relaxed);
                        answers.push((Some(ack), Err(crate::diskfull::REFUSED.to_owned())));
                    }
                    None => held.push(Batch {
                        events: chunk,
                        source,
                        received: b_received,
                        received_at: b_received_at,
                        ack: None,
                        budget,
                    }),
                }
            }
            Err(e) => {
                metrics.store_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, events = l, "store write failed");
                answers.push((ack, Err(e.to_string())));
            }
        }
    }
    for (ack, r) in answers {
        if let Some(ack) = ack {
            let _ = ack.send(r);
        }
    }
    // Detection releases the shares once it is done with the last of these events.
    if let Some(last) = works.last_mut() {
        last._budget = stored_budget;
    }
    for w in works {
        if wtx.send(w).is_err() {
            return None;
        }
    }
    Some(held)
}

/// Holds syslog batches that could not be stored for lack of space and retries them until
/// space returns, meanwhile refusing batches that wait for an acknowledgement (HTTP 507) and
/// taking further syslog batches only up to [`crate::diskfull::HOLD_MAX_EVENTS`] (and as far as
/// their shares of [`QUEUE_BYTES`] allow, which they keep while held) — beyond it
/// the queue fills, TCP senders wait and UDP drops and counts. At shutdown the retries stop
/// after [`crate::diskfull::SHUTDOWN_RETRY`]; what is still held was never acknowledged and
/// is logged and counted as dropped. Returns `false` when the detector is gone.
fn hold(
    mut held: Vec<Batch>,
    rx: &mut mpsc::Receiver<Batch>,
    store: &dyn EventStore,
    metrics: &Metrics,
    wtx: &std_mpsc::SyncSender<Work>,
    max_group: usize,
    tally: Option<&crate::source_health::Tally>,
) -> bool {
    use crate::diskfull::{HOLD_MAX_EVENTS, REFUSED, RETRY_INTERVAL, SHUTDOWN_RETRY};
    use tokio::sync::mpsc::error::TryRecvError;
    let count = |h: &[Batch]| h.iter().map(|b| b.events.len()).sum::<usize>();
    let mut closed_at: Option<Instant> = None;
    while !held.is_empty() {
        metrics
            .storage
            .held_events
            .store(count(&held) as u64, Relaxed);
        while closed_at.is_none() && count(&held) < HOLD_MAX_EVENTS {
            match rx.try_recv() {
                Ok(mut b) => match b.ack.take() {
                    Some(ack) => {
                        metrics
                            .storage
                            .refused_events
                            .fetch_add(b.events.len() as u64, Relaxed);
                        let _ = ack.send(Err(REFUSED.to_owned()));
                    }
                    None => held.push(b),
                },
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => closed_at = Some(Instant::now()),
            }
        }
        // The oldest held batches first, one group's worth.
        let mut take = 0;
        let mut n = 0;
        while take < held.len() && (take == 0 || n + held[take].events.len() <= max_group) {
            n += held[take].events.len();
            take += 1;
        }
        let rest = held.split_off(take);
        let Some(mut again) = store_group(held, store, metrics, wtx, tally) else {
            return false;
        };
        let failed = !again.is_empty();
        again.extend(rest);
        held = again;
        if failed {
            if closed_at.is_some_and(|t| t.elapsed() >= SHUTDOWN_RETRY) {
                let lost = count(&held);
                for b in &held {
                    metrics
                        .source(b.source)
                        .dropped
                        .fetch_add(b.events.len() as u64, Relaxed);
                }
                tracing::error!(
                    events = lost,
                    "shutting down with the disk still full: syslog events held in memory were never stored (nor acknowledged)"
                );
                break;
            }
            std::thread::sleep(RETRY_INTERVAL);
        }
    }
    metrics.storage.held_events.store(0, Relaxed);
    true
}

/// The detection stage: one thread that owns the correlation state.
struct Detector {
    rules: Option<Arc<RulesHandle>>,
    alerts: Arc<dyn AlertStore>,
    settings: Settings,
    metrics: Arc<Metrics>,
    alert_tx: broadcast::Sender<Alert>,
    engine: Option<Arc<Engine>>,
    correlator: Option<Correlator>,
    last_save: Instant,
    dirty: bool,
    analytics: Option<LiveAnalytics>,
    persist: Persist,
    /// Event seqs already cited by the alert of each open episode (by dedup key), so the
    /// episode's end adds only the new ones.
    cited: std::collections::HashMap<String, usize>,
}

/// Where the saved correlation state stands (see [`CORRELATION_STATE_KEY`]).
#[derive(Debug, Default)]
struct Persist {
    generation: u64,
    deltas: u64,
    delta_bytes: u64,
    base_bytes: u64,
    /// The next save writes a full snapshot (start, reload, a failed write).
    need_full: bool,
}

impl Detector {
    fn new(
        rules: Option<Arc<RulesHandle>>,
        alerts: Arc<dyn AlertStore>,
        settings: Settings,
        metrics: Arc<Metrics>,
        alert_tx: broadcast::Sender<Alert>,
    ) -> Detector {
        let mut d = Detector {
            rules,
            alerts,
            settings,
            metrics,
            alert_tx,
            engine: None,
            correlator: None,
            last_save: Instant::now(),
            dirty: false,
            analytics: None,
            persist: Persist {
                need_full: true,
                ..Persist::default()
            },
            cited: std::collections::HashMap::new(),
        };
        d.refresh_engine();
        d.restore_state();
        d
    }

    /// How many change sets are stored (of any generation).
    fn count_deltas(&self) -> u64 {
        let mut n = 0;
        // A change set's key holds a small manifest (`mamori_store::kvchunks`).
        while let Ok(Some(_)) = self.alerts.kv_get(&delta_key(n + 1)) {
            n += 1;
        }
        n
    }

    /// Reads the snapshot and the change sets of its generation.
    fn restore_state(&mut self) {
        let stored = self.count_deltas();
        let Some(c) = self.correlator.as_mut() else {
            return;
        };
        let base = match kvchunks::get_chunked(&*self.alerts, CORRELATION_STATE_KEY) {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "saved correlation state not readable");
                return;
            }
        };
        let Some((generation, body)) = split_generation(&base) else {
            tracing::warn!("saved correlation state is truncated; starting empty");
            return;
        };
        if let Err(e) = c.restore(body) {
            tracing::warn!(error = %e, "saved correlation state not restored; starting empty");
            return;
        }
        self.persist.generation = generation;
        // Deletes them at the first save (a new snapshot), whatever their generation.
        self.persist.deltas = stored;
        for n in 1.. {
            let Ok(Some(blob)) = kvchunks::get_chunked(&*self.alerts, &delta_key(n)) else {
                break;
            };
            match split_generation(&blob) {
                Some((g, body)) if g == generation => {
                    if let Err(e) = c.restore(body) {
                        tracing::warn!(error = %e, delta = n, "correlation change set not applied");
                        break;
                    }
                }
                _ => break,
            }
        }
        self.metrics.set_correlation(c);
    }

    fn limits(&self) -> Limits {
        Limits {
            lateness_ms: (self.settings.lateness_secs as i64).saturating_mul(1000),
            max_groups: self.settings.max_correlation_groups.max(1),
            ..Limits::default()
        }
    }

    /// Picks up reloaded rules; correlation windows carry over to the new rules.
    fn refresh_engine(&mut self) {
        let Some(h) = &self.rules else { return };
        let cur = h.current();
        if self
            .engine
            .as_ref()
            .is_some_and(|e| e.generation == cur.generation)
        {
            return;
        }
        let mut c = Correlator::new(&cur.pack, &cur.rules, &FieldMap::builtin(), self.limits());
        c.track_changes(true);
        if let Some(old) = &self.correlator {
            if let Err(e) = c.restore(&old.save()) {
                tracing::warn!(error = %e, "correlation state not carried over the reload");
            }
        }
        self.persist.need_full = true;
        self.correlator = Some(c);
        self.engine = Some(cur);
    }

    fn run(&mut self, rx: std_mpsc::Receiver<Work>) {
        let mut last_tick = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(w) => self.process(w),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                self.tick();
            }
            let analytics_dirty = self.analytics.as_ref().is_some_and(|a| a.is_dirty());
            if (self.dirty || analytics_dirty) && self.last_save.elapsed() >= Duration::from_secs(5)
            {
                self.save_state();
            }
        }
        self.cite_open_episodes();
        self.save_state();
    }

    /// At shutdown, adds to the alert of each episode still open the seqs of the events that
    /// extended it since it opened, so the alert (and an evidence export of its incident, which
    /// needs the server stopped) names every event behind it. The episodes stay open: a copy of
    /// the correlation state is flushed, the saved state is untouched and the episode's end
    /// after a restart cites the events that come later.
    fn cite_open_episodes(&mut self) {
        let (Some(c), Some(engine)) = (self.correlator.as_ref(), self.engine.as_ref()) else {
            return;
        };
        if c.open_episodes() == 0 {
            return;
        }
        let mut copy = Correlator::new(
            &engine.pack,
            &engine.rules,
            &FieldMap::builtin(),
            self.limits(),
        );
        if let Err(e) = copy.restore(&c.save()) {
            tracing::warn!(error = %e, "open episodes not cited at shutdown");
            return;
        }
        let mut out = Vec::new();
        copy.flush(&mut out);
        let now = Utc::now();
        // Episodes the flush itself opened (windows judged early) raised no alert: skip them.
        let opened_now: std::collections::HashSet<String> = out
            .iter()
            .filter(|a| a.phase == Phase::Opened)
            .filter_map(|a| self.correlation_alert(a, now).dedup_key)
            .collect();
        for a in out.iter().filter(|a| a.phase == Phase::Closed) {
            if self.correlation_level(a) < self.settings.min_level {
                continue;
            }
            let mut alert = self.correlation_alert(a, now);
            let key = alert.dedup_key.clone().unwrap_or_default();
            if opened_now.contains(&key) {
                continue;
            }
            // An episode opened before a restart is not in `cited`: all its seqs are cited
            // again (the alert store skips the seqs an alert already names).
            let cited = self.cited.get(&key).copied().unwrap_or(0);
            if alert.event_seqs.len() > cited {
                let all = alert.event_seqs.len();
                alert.event_seqs.drain(..cited);
                self.cited.insert(key, all);
                self.record(&alert, Instant::now());
            }
        }
    }

    /// Ends the episodes of groups gone quiet (in receipt time) even when no event arrives.
    fn tick(&mut self) {
        let Some(c) = self.correlator.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        c.tick(Utc::now().timestamp_millis(), &mut out);
        if !out.is_empty() {
            self.dirty = true;
            let now = Utc::now();
            for a in out {
                self.record_correlation(&a, now, Instant::now());
            }
        }
        if let Some(c) = &self.correlator {
            self.metrics.set_correlation(c);
        }
    }

    /// Saves the correlation state: the groups changed since the last save, or a full
    /// snapshot when the change sets have grown large (see [`MAX_DELTAS`]); a save under a
    /// flood of new groups writes only them.
    fn save_state(&mut self) {
        let Some(c) = self.correlator.as_mut() else {
            return;
        };
        let p = &mut self.persist;
        let full = p.need_full
            || p.deltas >= MAX_DELTAS
            || p.delta_bytes > DELTA_RATIO * p.base_bytes.max(1 << 20);
        // Streamed into the store in parts: the snapshot (18 MB at the group cap) is never
        // whole in memory, nor copied by SQLite (issue #15, finding 12).
        let alerts = &*self.alerts;
        if full {
            let generation = p.generation + 1;
            let put = kvchunks::put_chunked(alerts, CORRELATION_STATE_KEY, &mut |w| {
                w.write_all(&generation.to_le_bytes())?;
                c.save_to(w)
            });
            match put {
                Ok(len) => {
                    c.mark_saved();
                    for n in 1..=p.deltas {
                        let _ = kvchunks::delete_chunked(alerts, &delta_key(n));
                    }
                    *p = Persist {
                        generation,
                        base_bytes: len,
                        ..Persist::default()
                    };
                    self.metrics
                        .correlation_state_snapshots
                        .fetch_add(1, Relaxed);
                    self.metrics.correlation_state_bytes.fetch_add(len, Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "cannot save correlation state"),
            }
        } else if c.changed_groups() > 0 {
            let generation = p.generation;
            let put = kvchunks::put_chunked(alerts, &delta_key(p.deltas + 1), &mut |w| {
                w.write_all(&generation.to_le_bytes())?;
                c.save_changes_to(w).unwrap_or(Ok(()))
            });
            match put {
                Ok(len) => {
                    p.deltas += 1;
                    p.delta_bytes += len;
                    self.metrics.correlation_state_deltas.fetch_add(1, Relaxed);
                    self.metrics.correlation_state_bytes.fetch_add(len, Relaxed);
                }
                Err(e) => {
                    // The changes are no longer tracked: the next save must be whole.
                    p.need_full = true;
                    tracing::error!(error = %e, "cannot save correlation state changes");
                }
            }
        }
        if let Some(a) = self.analytics.as_mut() {
            a.save(&*self.alerts, Utc::now());
        }
        self.dirty = false;
        self.last_save = Instant::now();
    }

    fn process(&mut self, w: Work) {
        if let Some(a) = self.analytics.as_mut() {
            let mut raised = Vec::new();
            a.process(&w.events, w.first_seq, w.received_at, &mut raised);
            a.pressure(w.received_at, &self.metrics.caps, &mut raised);
            for alert in raised.iter().filter(|x| x.level >= self.settings.min_level) {
                self.record(alert, w.received);
            }
        }
        self.refresh_engine();
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let rules = &engine.rules;
        let t = Instant::now();
        let all: Vec<Vec<Match>> = if w.events.len() >= 256 {
            w.events
                .par_chunks(128)
                .map_init(
                    || rules.scratch(),
                    |scratch, chunk| {
                        chunk
                            .iter()
                            .map(|ev| {
                                let mut m = Vec::new();
                                rules.matches(ev, scratch, &mut m);
                                m
                            })
                            .collect::<Vec<_>>()
                    },
                )
                .flatten()
                .collect()
        } else {
            let mut scratch = rules.scratch();
            w.events
                .iter()
                .map(|ev| {
                    let mut m = Vec::new();
                    rules.matches(ev, &mut scratch, &mut m);
                    m
                })
                .collect()
        };
        self.metrics
            .match_micros
            .fetch_add(t.elapsed().as_micros() as u64, Relaxed);
        self.metrics
            .events_matched
            .fetch_add(w.events.len() as u64, Relaxed);
        let mut corr_out = Vec::new();
        for (i, (ev, matches)) in w.events.iter().zip(&all).enumerate() {
            if matches.is_empty() {
                continue;
            }
            let seq = w.first_seq + i as u64;
            for m in matches {
                let info = rules.rule(m.rule);
                // A probe the server answered with a failure is a signal (risk on its source)
                // and part of one low episode per source and day, not an alert — the same
                // judgement as `mamori hunt` (mamori_detect::outcome).
                if info.standalone {
                    // The declared scanner's probes and IT's remote administration from its
                    // admin network are signals: no alert, no risk, no episode.
                    if let Some(a) = self.analytics.as_ref() {
                        let scanned = a.scanner_of(ev).is_some_and(|n| {
                            outcome::judge_scanner_match(&info.meta, &info.logsource, ev, &n)
                                != outcome::Verdict::Alert
                        });
                        if scanned
                            || (outcome::is_remote_admin_rule(&info.meta)
                                && a.admin_session(ev).is_some())
                        {
                            tracing::debug!(rule = %info.meta.title, seq, "declared network: signal");
                            continue;
                        }
                    }
                    if let outcome::Verdict::Signal(r) =
                        outcome::judge_match(&info.meta, &info.logsource, ev)
                    {
                        if let Some(a) = self.analytics.as_mut() {
                            let mut raised = Vec::new();
                            a.failed_probe_signal(ev, seq, &r.en, w.received_at, &mut raised);
                            for alert in
                                raised.iter().filter(|x| x.level >= self.settings.min_level)
                            {
                                self.record(alert, w.received);
                            }
                        }
                        if Level::Low >= self.settings.min_level {
                            let alert = probe_episode_alert(ev, seq, &info.meta, &r, w.received_at);
                            self.record(&alert, w.received);
                        }
                        continue;
                    }
                }
                // Low-level rules may feed risk instead of alerting (crate::analytics).
                if let Some(a) = self.analytics.as_mut().filter(|_| info.standalone) {
                    if a.sigma_is_signal(info.level) {
                        let mut raised = Vec::new();
                        a.sigma_signal(ev, seq, &info.meta, info.level, w.received_at, &mut raised);
                        for alert in &raised {
                            self.record(alert, w.received);
                        }
                        continue;
                    }
                }
                if !info.standalone || info.level < self.settings.min_level {
                    continue;
                }
                let host = ev.host().map(|h| h.into_owned()).unwrap_or_default();
                let details: serde_json::Map<String, serde_json::Value> = rules
                    .details(m.rule, ev)
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                let alert = NewAlert {
                    rule_id: RuleId(info.meta.reference().into()),
                    title: info.meta.title.clone(),
                    level: info.level,
                    event_time: ev.timestamp,
                    received_at: w.received_at,
                    event_seqs: vec![seq],
                    group_key: (!host.is_empty()).then(|| format!("host.name={host}")),
                    dedup_key: Some(self.dedup_key(
                        info.meta.reference(),
                        &host,
                        ev.timestamp,
                        w.received_at,
                    )),
                    details: serde_json::json!({
                        "source": ev.origin.to_string(),
                        "host": host,
                        "fields": details,
                        "tags": info.meta.tags,
                        "description": info.meta.description,
                        "description_ja": info.meta.extra.get("description_ja"),
                        "title_ja": info.meta.extra.get("title_ja"),
                    }),
                };
                self.record(&alert, w.received);
            }
            if let Some(c) = self.correlator.as_mut() {
                if matches.iter().any(|m| c.uses_rule(m.rule)) {
                    let source = arrival_source(ev);
                    let arrival = Arrival {
                        source: &source,
                        received_ms: Some(w.received_at.timestamp_millis()),
                        reference: seq,
                    };
                    c.observe(ev, matches, &arrival, &mut corr_out);
                    self.dirty = true;
                }
            }
            let corr = std::mem::take(&mut corr_out);
            for a in corr {
                self.record_correlation(&a, w.received_at, w.received);
            }
        }
        if let Some(c) = self.correlator.as_mut() {
            let skewed = c.take_skew_reports();
            let pressure = c.take_pressure_reports();
            self.metrics.set_correlation(c);
            for r in skewed {
                self.record(&skew_alert(&r, w.received_at), w.received);
            }
            for r in pressure {
                self.record(&pressure_alert(&r, w.received_at), w.received);
            }
        }
        // Failed probes and Sigma signals above add risk entities.
        if let Some(a) = self.analytics.as_mut() {
            let mut raised = Vec::new();
            a.pressure(w.received_at, &self.metrics.caps, &mut raised);
            for alert in &raised {
                self.record(alert, w.received);
            }
        }
    }

    /// An episode that opened raises its alert; one that ended adds the seqs of the events
    /// that extended it to the same alert (same dedup key).
    fn record_correlation(
        &mut self,
        a: &CorrelationAlert,
        received_at: DateTime<Utc>,
        received: Instant,
    ) {
        if self.correlation_level(a) < self.settings.min_level {
            return;
        }
        let group_ip = outcome::group_address(&a.group);
        if let (Some(x), Some(ip)) = (self.analytics.as_ref(), group_ip) {
            if x.scanner_of_ip(ip).is_some()
                && outcome::is_probing_correlation(&a.correlation.meta, a.correlation.kind)
            {
                return; // the declared scanner's probing: a signal, not an alert
            }
        }
        let mut alert = self.correlation_alert(a, received_at);
        let key = alert.dedup_key.clone().unwrap_or_default();
        match a.phase {
            Phase::Opened => {
                if self.cited.len() < 100_000 {
                    self.cited.insert(key, alert.event_seqs.len());
                }
                self.record(&alert, received);
            }
            Phase::Closed => {
                let cited = self.cited.remove(&key).unwrap_or(0);
                if alert.event_seqs.len() > cited {
                    alert.event_seqs.drain(..cited);
                    self.record(&alert, received);
                }
            }
        }
    }

    fn dedup_key(
        &self,
        rule: &str,
        entity: &str,
        time: Option<DateTime<Utc>>,
        received_at: DateTime<Utc>,
    ) -> String {
        let t = time.unwrap_or(received_at).timestamp();
        let window = t.div_euclid(self.settings.suppress_secs.max(1) as i64);
        format!("{rule}|{entity}|{window}")
    }

    /// The level of a correlation episode: guessing from the internet that guessed nothing
    /// is low (mamori_detect::outcome, the same judgement as `mamori hunt`).
    fn correlation_level(&self, a: &CorrelationAlert) -> Level {
        self.judge_correlation(a).0
    }

    fn judge_correlation(&self, a: &CorrelationAlert) -> (Level, Option<outcome::Reason>) {
        let analytics = self.analytics.as_ref();
        outcome::judge_correlation(
            &a.correlation.meta,
            a.correlation.kind,
            a.correlation.level,
            &a.group,
            |ip| match analytics {
                Some(x) => x.is_internal(ip),
                None => outcome::is_internal_default(ip),
            },
        )
    }

    fn correlation_alert(&self, a: &CorrelationAlert, received_at: DateTime<Utc>) -> NewAlert {
        let (level, why) = self.judge_correlation(a);
        correlation_alert(a, level, why, received_at)
    }

    fn record(&self, a: &NewAlert, received: Instant) {
        let linked = self.settings.backup_links.link(a);
        let a = linked.as_ref().unwrap_or(a);
        match record_alert(&*self.alerts, &self.alert_tx, a) {
            Ok(outcome) => match outcome {
                InsertOutcome::Created(_) => {
                    self.metrics.alerts_created.fetch_add(1, Relaxed);
                    self.metrics.observe_latency(received.elapsed());
                }
                InsertOutcome::Merged(_) => {
                    self.metrics.alerts_merged.fetch_add(1, Relaxed);
                }
            },
            Err(e) => {
                self.metrics.alert_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, rule = %a.rule_id, "cannot record alert");
            }
        }
    }
}

/// A correlation episode as an alert, at the level (and with the outcome) it was judged: one
/// alert per episode — its end merges into the alert its start raised. Shared with the cluster's
/// partition owners.
pub(crate) fn correlation_alert(
    a: &CorrelationAlert,
    level: Level,
    why: Option<outcome::Reason>,
    received_at: DateTime<Utc>,
) -> NewAlert {
    let group = a
        .group
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let meta = &a.correlation.meta;
    let first = DateTime::from_timestamp_millis(a.first_ms);
    let last = DateTime::from_timestamp_millis(a.last_ms);
    let ev = &a.evidence;
    let mut alert = NewAlert {
        rule_id: RuleId(meta.reference().into()),
        title: meta.title.clone(),
        level,
        event_time: last,
        received_at,
        event_seqs: ev.refs.iter().map(|r| r.reference).collect(),
        group_key: (!group.is_empty()).then(|| group.clone()),
        // One alert per episode: its end merges into the alert its start raised.
        dedup_key: Some(format!("{}|{group}|{}", meta.reference(), a.episode_ms)),
        details: serde_json::json!({
            "correlation": a.correlation.kind.as_str(),
            "value": a.value,
            "events": a.events,
            "group": a.group.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "host": ev.hosts.first(),
            "hosts": ev.hosts,
            "first_seq": ev.first.map(|r| r.reference),
            "last_seq": ev.last.map(|r| r.reference),
            "first": first,
            "last": last,
            "tags": meta.tags,
            "description": meta.description,
            "description_ja": meta.extra.get("description_ja"),
            "title_ja": meta.extra.get("title_ja"),
        }),
    };
    if let (Some(r), Some(d)) = (why, alert.details.as_object_mut()) {
        d.insert("outcome".into(), r.en.into());
        d.insert("outcome_ja".into(), r.ja.into());
    }
    alert
}

/// The failed-probe episode of one source and day (`mamori_detect::outcome`): low, one alert
/// whose seqs grow with each failed probe of that address that day (same dedup key).
fn probe_episode_alert(
    ev: &Event,
    seq: Seq,
    meta: &mamori_sigma::Meta,
    why: &outcome::Reason,
    received_at: DateTime<Utc>,
) -> NewAlert {
    let src = outcome::probe_source(ev);
    let time = ev.timestamp.unwrap_or(received_at);
    let host = ev.host().map(|h| h.into_owned()).unwrap_or_default();
    NewAlert {
        rule_id: RuleId(outcome::FAILED_PROBES_RULE_ID.into()),
        title: outcome::FAILED_PROBES_TITLE.into(),
        level: Level::Low,
        event_time: Some(time),
        received_at,
        event_seqs: vec![seq],
        group_key: Some(format!("source.ip={src}")),
        dedup_key: Some(outcome::probe_episode_key(&src, time.timestamp_millis())),
        details: serde_json::json!({
            "source": ev.origin.to_string(),
            "source.ip": src,
            "host": host,
            "first_seq": seq,
            "last_seq": seq,
            "events": 1,
            "rules": [meta.reference()],
            "products": [meta.title],
            "answers": [why.status],
            "outcome": why.en,
            "outcome_ja": why.ja,
            "title_ja": outcome::FAILED_PROBES_TITLE_JA,
            "tags": ["attack.initial-access", "attack.t1190"],
            "description": "Exploit probes from one address that the server answered with a failure (404, 400, 403 …): one low episode per source and day. Each probe is kept in the event store; the address collects risk.",
            "description_ja": "サーバーが失敗（404・400・403 など）で応答した、同一アドレスからの攻撃プローブ。送信元・日ごとに低レベルのエピソード1件。各プローブはイベントストアに残り、アドレスにリスクが加算される。",
        }),
    }
}

/// "Future-dated events from X": raised once per source by the correlator, whose events are
/// placed at their receipt time instead (a sender's clock must not steer detection).
fn skew_alert(r: &SkewReport, received_at: DateTime<Utc>) -> NewAlert {
    let event_time = DateTime::from_timestamp_millis(r.event_ms);
    let skew_h = (r.event_ms - r.received_ms) as f64 / 3_600_000.0;
    NewAlert {
        rule_id: RuleId("mamori.correlation.future_dated".into()),
        title: "Clock skew: future-dated events from one source".into(),
        level: Level::Medium,
        event_time,
        received_at,
        event_seqs: vec![r.reference],
        group_key: Some(format!("source={}", r.source)),
        dedup_key: Some(format!("mamori.correlation.future_dated|{}", r.source)),
        details: serde_json::json!({
            "source": r.source,
            "host": r.host,
            "event_time": event_time,
            "received_at": DateTime::from_timestamp_millis(r.received_ms),
            "skew_hours": (skew_h * 100.0).round() / 100.0,
            "description": format!(
                "{} sent events dated {skew_h:.1} h after their receipt (a wrong clock or time zone, or forged dates). Correlation places its events at their receipt time; check the sender's clock and time zone (RFC 3164 syslog carries no zone).",
                r.source
            ),
            "description_ja": format!(
                "{} から受信時刻より {skew_h:.1} 時間先の日時のイベントが届きました（時計・タイムゾーンの誤り、または日時の偽装）。相関分析では受信時刻として扱います。送信元の時計とタイムゾーン設定を確認してください（RFC 3164 の syslog にはタイムゾーンがありません）。",
                r.source
            ),
        }),
    }
}

/// "State under pressure": a correlation evicts groups at its cap (a flood of new addresses,
/// or a cap too low for the network), raised once per episode so the blindness is never silent.
fn pressure_alert(r: &PressureReport, received_at: DateTime<Utc>) -> NewAlert {
    let title = &r.correlation.meta.title;
    NewAlert {
        rule_id: RuleId("mamori.correlation.state_pressure".into()),
        title: "Correlation state under pressure: correlations may miss slow attacks".into(),
        level: Level::High,
        event_time: DateTime::from_timestamp_millis(r.at_ms),
        received_at,
        event_seqs: Vec::new(),
        group_key: None,
        dedup_key: Some("mamori.correlation.state_pressure".into()),
        details: serde_json::json!({
            "correlation": title,
            "max_groups": r.max_groups,
            "evicted_before": r.evicted_before,
            "description": format!(
                "Correlation \"{title}\" reached its cap of {} groups and is evicting the least recently seen ones: a flood of distinct values (e.g. failed logins from many addresses) or a cap too low for this network. A slow attack hidden in the flood may be missed until it eases. Evictions: mamori_correlation_dropped_total{{reason=\"group_evicted\"}}; raise [detection] max_correlation_groups if memory allows (~350 bytes per group).",
                r.max_groups
            ),
            "description_ja": format!(
                "相関ルール「{title}」がグループ数の上限 {} に達し、最も古いグループから破棄しています（多数の送信元からのログイン失敗などの大量の異なる値、またはこのネットワークには低すぎる上限）。収まるまで、大量のイベントに紛れた低速な攻撃を見逃す可能性があります。メモリに余裕があれば [detection] max_correlation_groups を引き上げてください（1グループ約350バイト）。",
                r.max_groups
            ),
        }),
    }
}

/// Records an alert and publishes the stored (possibly merged) alert to the subscribers
/// (incident handling). Used by the detector and by the server's own alerts.
pub(crate) fn record_alert(
    alerts: &dyn AlertStore,
    tx: &broadcast::Sender<Alert>,
    a: &NewAlert,
) -> mamori_store::Result<InsertOutcome> {
    let outcome = alerts.insert_alert(a)?;
    if tx.receiver_count() > 0 {
        if let Some(full) = alerts.get_alert(outcome.id())? {
            let _ = tx.send(full);
        }
    }
    Ok(outcome)
}
