//! The embedded event store: the segment log on disk plus a tantivy index in `index/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use mamori_event::{Event, Interner};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::doc::IndexDoc;
use crate::error::{Error, Result};
use crate::index::{EventIndex, IndexConfig};
use crate::model::{
    AppendAck, RawRecord, RetentionReport, SearchRequest, SearchResponse, Seq, StoreStats,
    StoredEvent,
};
use crate::wal::{Body, FsyncPolicy, Recovery, Wal};
use crate::EventStore;

/// Settings of the embedded event store (`[store]` in the server config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// The store directory (`<data-dir>/events`): `wal/` and `index/` live inside.
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// Start a new log segment past this size. Segments are the unit of retention.
    pub segment_max_bytes: u64,
    /// tantivy writer memory budget.
    pub index_heap_bytes: usize,
    /// Commit the index (make events searchable) after this many events…
    pub index_commit_every: u64,
    /// …or this many milliseconds after the previous commit, at the next append.
    pub index_commit_interval_ms: u64,
    /// No index merge takes in more than this many events (nor makes a segment past it): a
    /// merge holds its inputs' pages resident, so larger merges made memory grow with the
    /// volume stored (tantivy's own policy merges whole levels, up to 10 M).
    pub index_merge_max_docs: u64,
    /// Concurrent index merges (tantivy's own default is 4; each holds its inputs' maps).
    pub index_merge_threads: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            dir: PathBuf::from("events"),
            fsync: FsyncPolicy::Always,
            segment_max_bytes: 64 << 20,
            index_heap_bytes: 64 << 20,
            index_commit_every: 200_000,
            index_commit_interval_ms: 1000,
            index_merge_max_docs: 500_000,
            index_merge_threads: 1,
        }
    }
}

impl EmbeddedConfig {
    pub fn new(dir: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            dir: dir.into(),
            ..EmbeddedConfig::default()
        }
    }

    pub fn open(self) -> Result<EmbeddedEventStore> {
        EmbeddedEventStore::open(self)
    }
}

/// What open found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpenReport {
    /// Torn tails truncated (and quarantined).
    pub recoveries: Vec<Recovery>,
    /// Events re-indexed from the log because the index commit lagged it.
    pub reindexed: u64,
}

/// Events in a write-ahead segment log (the truth) and a tantivy index (a rebuildable cache).
///
/// An append is acknowledged once the log has it (and fsynced it, under the default policy);
/// the index follows in its own thread ("mamori-indexer"), fed in seq order through a queue,
/// so indexing and its commits never hold up an acknowledgement. When the indexer falls more
/// than [`INDEX_BACKLOG_BYTES`] of documents behind, appends wait for it: the lag of search behind
/// the log, and the memory the queue holds, stay bounded. `refresh` waits until everything
/// appended before it is searchable.
///
/// **The index never claims what it does not hold**: [`StoreStats::indexed_seq`] is the seq
/// the last *successful* tantivy commit covers. When an add or a commit fails (disk full), the
/// writer is rolled back to that commit, the indexer drops what it is fed (the log has it) and,
/// every [`INDEX_RETRY`], re-indexes the log from the commit onwards until a commit succeeds.
/// The failure is visible meanwhile in [`StoreStats::index_error`] and the honest lag.
pub struct EmbeddedEventStore {
    wal: Arc<Wal>,
    index: Arc<EventIndex>,
    /// Serialises log append + hand-over to the indexer, so the index sees seqs in order and
    /// its commit payload ("indexed through N") is always a prefix of the log.
    append_lock: Mutex<()>,
    indexer: Mutex<Option<Indexer>>,
    report: OpenReport,
    dir: PathBuf,
    health: Arc<IndexHealth>,
}

const REINDEX_CHUNK: usize = 4096;
/// Bytes of documents the indexer may lag behind before appends wait: about 16,000 syslog
/// events, 1.5 s at 10k events/s, so an index commit (a few hundred ms) does not delay an
/// acknowledgement. Counted in bytes, not documents, so large events cannot multiply it: at
/// saturation this queue is full, and 32,768 documents held ~35 MB (issue #15).
const INDEX_BACKLOG_BYTES: usize = 16 << 20;
/// How often a failed index retries (re-indexing the log from its last commit).
const INDEX_RETRY: Duration = Duration::from_secs(2);
/// How long closing the store waits for the indexer before leaving it: the log is the truth,
/// and the next open re-indexes whatever the index did not commit.
const INDEXER_STOP_WAIT: Duration = Duration::from_secs(10);
/// How long `refresh` waits for the indexer.
const REFRESH_WAIT: Duration = Duration::from_secs(120);

/// Below this much free space under `index/`, a failed index write counts as disk full.
const INDEX_LOW_SPACE: u64 = 64 << 20;

/// What went wrong with the index, shared by the indexer thread and `stats()`.
struct IndexHealth {
    /// The index directory (its filesystem's free space tells a full disk apart).
    dir: PathBuf,
    errors: AtomicU64,
    /// The failure the index has not yet recovered from, and whether it is a full disk.
    failing: Mutex<Option<(String, bool)>>,
}

impl IndexHealth {
    fn new(dir: PathBuf) -> IndexHealth {
        IndexHealth {
            dir,
            errors: AtomicU64::new(0),
            failing: Mutex::new(None),
        }
    }

    fn fail(&self, e: &Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        // tantivy often reports a worker's I/O failure only as "an index writer was killed",
        // without the OS error, so a full filesystem is also recognised by its free space.
        let full = e.is_disk_full()
            || fs4::available_space(&self.dir).is_ok_and(|free| free < INDEX_LOW_SPACE);
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!(error = %e, disk_full = full, "indexing failed; search lags the log until the index recovers (it retries from its last commit)");
        }
        *f = Some((e.to_string(), full));
    }

    fn recovered(&self) {
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if f.take().is_some() {
            tracing::info!("the search index recovered and caught up with the log");
        }
    }

    fn failing(&self) -> Option<(String, bool)> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Bytes of documents queued for the indexer, with a condition variable appends wait on when
/// full.
#[derive(Default)]
struct Backlog {
    bytes: Mutex<usize>,
    drained: Condvar,
}

impl Backlog {
    fn reserve(&self, n: usize) {
        let mut d = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        // A batch larger than the whole budget goes through once the queue is empty.
        while *d > 0 && *d + n > INDEX_BACKLOG_BYTES {
            d = self.drained.wait(d).unwrap_or_else(|p| p.into_inner());
        }
        *d += n;
    }

    fn release(&self, n: usize) {
        let mut d = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        *d = d.saturating_sub(n);
        self.drained.notify_all();
    }
}

enum IndexJob {
    /// Documents of consecutive seqs, and the bytes they hold.
    Docs(Vec<IndexDoc>, usize),
    /// Commit everything queued before this job, then answer.
    Flush(SyncSender<Result<()>>),
}

struct Indexer {
    tx: Sender<IndexJob>,
    backlog: Arc<Backlog>,
    thread: JoinHandle<()>,
    /// Disconnects when the thread ends (so stopping can wait with a deadline).
    done: Receiver<()>,
}

/// The indexer thread's view: the index, the log to re-index from, and its health.
struct IndexerCtx {
    index: Arc<EventIndex>,
    wal: Arc<Wal>,
    dir: PathBuf,
    health: Arc<IndexHealth>,
    /// Set after a failure: documents are dropped until the log is re-indexed.
    recover_at: Option<Instant>,
}

impl IndexerCtx {
    fn fail(&mut self, e: &Error) {
        self.health.fail(e);
        self.recover_at = Some(Instant::now() + INDEX_RETRY);
    }

    fn docs(&mut self, mut docs: Vec<IndexDoc>) {
        if self.recover_at.is_some() {
            return; // the log has them; recovery re-reads it
        }
        // Seqs a recovery already re-indexed from the log are skipped.
        let through = self.index.added_through();
        docs.retain(|d| d.seq() > through);
        let (Some(first), Some(last)) = (docs.first(), docs.last()) else {
            return;
        };
        let (first, last) = (first.seq(), last.seq());
        let r = if first != through + 1 {
            // Never add past a hole: the commit payload would claim it.
            self.index.rollback().and(Err(Error::Index(format!(
                "the indexer expected seq {} and was given {first}",
                through + 1
            ))))
        } else {
            self.index
                .add_documents(docs, last)
                .and_then(|()| self.index.maybe_commit(false))
        };
        if let Err(e) = r {
            self.fail(&e);
        }
    }

    /// Commits what is pending; during a failure, first re-indexes the log from the last
    /// commit (`force`: now, else only once the retry time has come).
    fn commit(&mut self, force: bool) -> Result<()> {
        let r = match self.recover_at {
            Some(at) if !force && Instant::now() < at => return Ok(()),
            Some(_) => self.recover(),
            None => self.index.maybe_commit(force),
        };
        match &r {
            Ok(()) => {
                if self.recover_at.take().is_some() {
                    self.health.recovered();
                }
            }
            Err(e) => self.fail(e),
        }
        r
    }

    fn recover(&self) -> Result<()> {
        self.index.rollback()?;
        reindex_from_log(&self.index, &self.wal, &self.dir)?;
        self.index.maybe_commit(true)
    }
}

/// Adds every log record after the index's `added_through` (up to the log's end, which may
/// move meanwhile) to the index, uncommitted. Returns how many.
fn reindex_from_log(index: &EventIndex, wal: &Wal, dir: &Path) -> Result<u64> {
    let mut names = Interner::new();
    let mut n = 0;
    loop {
        let from = index.added_through() + 1;
        let bodies = wal.read_range(from, REINDEX_CHUNK)?;
        let Some(last) = bodies.last() else {
            return Ok(n);
        };
        if bodies[0].seq != from && from > wal.bounds().0 {
            return Err(Error::Index(format!(
                "re-indexing from seq {from} but the log gave {}",
                bodies[0].seq
            )));
        }
        let last = last.seq;
        let decoded = decode_all(dir, &bodies, &mut names)?;
        let docs = decoded
            .iter()
            .map(|d| index.document(d.seq, d.received_at, &d.event))
            .collect();
        index.add_documents(docs, last)?;
        n += decoded.len() as u64;
    }
}

impl Indexer {
    fn start(mut ctx: IndexerCtx, interval: Duration) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<IndexJob>();
        let (done_tx, done) = mpsc::channel::<()>();
        let backlog = Arc::new(Backlog::default());
        let drained = Arc::clone(&backlog);
        let tick = interval.max(Duration::from_millis(10));
        let thread = std::thread::Builder::new()
            .name("mamori-indexer".into())
            .spawn(move || {
                let _done = done_tx;
                loop {
                    match rx.recv_timeout(tick) {
                        Ok(IndexJob::Docs(docs, bytes)) => {
                            ctx.docs(docs);
                            drained.release(bytes);
                        }
                        Ok(IndexJob::Flush(reply)) => {
                            let _ = reply.send(ctx.commit(true));
                        }
                        // Nothing new: commit what is pending once the interval has passed,
                        // so search catches up even when appends stop; retry a failed index.
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = ctx.commit(false);
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            let _ = ctx.commit(true);
                            break;
                        }
                    }
                }
            })
            .map_err(|e| Error::Index(format!("cannot start the indexer thread: {e}")))?;
        Ok(Indexer {
            tx,
            backlog,
            thread,
            done,
        })
    }

    /// Stops the thread after it indexed and committed everything queued — or, if it does not
    /// finish within `wait` (a blocked disk), leaves it: whether it stopped.
    fn stop(self, wait: Duration) -> bool {
        drop(self.tx);
        match self.done.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    waited_secs = wait.as_secs(),
                    "the indexer did not stop in time; leaving it (the next start re-indexes from the log)"
                );
                false
            }
            _ => {
                let _ = self.thread.join();
                true
            }
        }
    }
}

impl EmbeddedEventStore {
    pub fn open(cfg: EmbeddedConfig) -> Result<EmbeddedEventStore> {
        if cfg.segment_max_bytes < 4096 || cfg.segment_max_bytes > (1 << 30) {
            return Err(Error::InvalidRequest(format!(
                "segment_max_bytes {} is outside 4 KiB..1 GiB",
                cfg.segment_max_bytes
            )));
        }
        let icfg = IndexConfig::from(&cfg);
        // The index first: its writer lock keeps a second process from opening the store, which
        // must happen before the log's torn-tail recovery could touch a live writer's segment.
        let (index, _) = EventIndex::open_dir(&cfg.dir.join("index"), icfg)?;
        let wal = Wal::open(&cfg.dir.join("wal"), cfg.fsync, cfg.segment_max_bytes)?;
        let (first, next) = wal.bounds();
        // Documents the log no longer has (retention ran but the index did not commit, or the
        // log lost an unsynced tail on power loss) go first; then everything the index lacks
        // is re-added. Both are idempotent by seq. If this fails (disk full), the store still
        // opens — the log is the truth — and the indexer retries.
        let wal = Arc::new(wal);
        let health = Arc::new(IndexHealth::new(cfg.dir.join("index")));
        let mut reindexed = 0;
        let caught_up = index.retain(first, next).and_then(|()| {
            reindexed = reindex_from_log(&index, &wal, &cfg.dir)?;
            index.maybe_commit(true)
        });
        let recover_at = match caught_up {
            Ok(()) => None,
            Err(e) if matches!(e, Error::Corrupt { .. } | Error::UnsupportedVersion { .. }) => {
                return Err(e)
            }
            Err(e) => {
                health.fail(&e);
                Some(Instant::now() + INDEX_RETRY)
            }
        };
        let index = Arc::new(index);
        let indexer = Indexer::start(
            IndexerCtx {
                index: Arc::clone(&index),
                wal: Arc::clone(&wal),
                dir: cfg.dir.clone(),
                health: Arc::clone(&health),
                recover_at,
            },
            icfg.commit_interval,
        )?;
        Ok(EmbeddedEventStore {
            report: OpenReport {
                recoveries: wal.recoveries().to_vec(),
                reindexed,
            },
            wal,
            index,
            append_lock: Mutex::new(()),
            indexer: Mutex::new(Some(indexer)),
            dir: cfg.dir,
            health,
        })
    }

    /// What open recovered and re-indexed.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Indexes and commits everything appended, and fsyncs the log, so the next open has
    /// nothing to redo.
    ///
    /// The log is fsynced first; an index that cannot commit (disk full) or an indexer that
    /// does not stop within a bounded wait is left behind — the next open re-indexes from
    /// the log — so closing never hangs on the index.
    pub fn close(self) -> Result<()> {
        self.wal.sync()?;
        if self.stop_indexer() {
            self.index.maybe_commit(true)?;
        }
        Ok(())
    }

    /// Whether the indexer thread stopped (or was not running).
    fn stop_indexer(&self) -> bool {
        let taken = self
            .indexer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        taken.is_none_or(|i| i.stop(INDEXER_STOP_WAIT))
    }

    /// Waits until the indexer committed everything queued before this call.
    fn flush_indexer(&self) -> Result<()> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = {
            let g = self.indexer.lock().unwrap_or_else(|p| p.into_inner());
            match g.as_ref() {
                Some(i) => i.tx.send(IndexJob::Flush(reply)).is_ok(),
                None => false,
            }
        };
        if !sent {
            return Err(Error::Index("the indexer is stopped".into()));
        }
        match answer.recv_timeout(REFRESH_WAIT) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(Error::Index(format!(
                "the index did not catch up within {}s",
                REFRESH_WAIT.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                Err(Error::Index("the indexer thread stopped".into()))
            }
        }
    }

    /// Up to `limit` stored events with seq `> after`, in seq order, decoded (an upgrade to a
    /// cluster reads the whole log with this; a retention gap shows in the seqs).
    pub fn events_since(&self, after: Seq, limit: usize) -> Result<Vec<StoredEvent>> {
        let bodies = self.wal.read_range(after.saturating_add(1), limit)?;
        self.decode(&bodies)
    }

    /// The seqs the committed index holds, ascending (for consistency checks and tests).
    pub fn indexed_seqs(&self) -> Result<Vec<Seq>> {
        self.index.committed_seqs()
    }

    fn decode(&self, bodies: &[Body]) -> Result<Vec<StoredEvent>> {
        decode_all(&self.dir, bodies, &mut Interner::new())
    }
}

fn decode_all(dir: &Path, bodies: &[Body], names: &mut Interner) -> Result<Vec<StoredEvent>> {
    bodies
        .iter()
        .map(|b| {
            codec::decode_body(&b.bytes, names)
                .map(|d| StoredEvent {
                    seq: d.seq,
                    received_at: d.received_at,
                    event: d.event,
                })
                .map_err(|reason| Error::Corrupt {
                    path: dir.join("wal"),
                    offset: 0,
                    reason: format!("seq {}: {reason}", b.seq),
                })
        })
        .collect()
}

impl EventStore for EmbeddedEventStore {
    fn append_at(&self, batch: &[Event], received_at: DateTime<Utc>) -> Result<AppendAck> {
        let _g = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        let ack = self.wal.append(batch, received_at)?;
        // The log has it, so the batch is acknowledged even if indexing fails: an error here
        // would make the caller retry and store the batch twice. Failures are counted
        // (`stats().index_errors`) and the indexer re-indexes from the log.
        if !batch.is_empty() {
            let docs: Vec<IndexDoc> = ack
                .seqs()
                .zip(batch)
                .map(|(s, e)| self.index.document(s, received_at, e))
                .collect();
            let g = self.indexer.lock().unwrap_or_else(|p| p.into_inner());
            let bytes = docs.iter().map(IndexDoc::heap_bytes).sum();
            let sent = g.as_ref().is_some_and(|i| {
                i.backlog.reserve(bytes);
                i.tx.send(IndexJob::Docs(docs, bytes)).is_ok()
            });
            if !sent {
                self.health.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(ack)
    }

    fn refresh(&self) -> Result<()> {
        self.flush_indexer()
    }

    fn search(&self, q: &SearchRequest) -> Result<SearchResponse> {
        self.index.search(q, |seqs| {
            let mut out = Vec::with_capacity(seqs.len());
            for &s in seqs {
                // A hit whose record retention removed meanwhile is skipped.
                out.extend(self.get(s)?);
            }
            Ok(out)
        })
    }

    fn get(&self, seq: Seq) -> Result<Option<StoredEvent>> {
        match self.wal.read(seq)? {
            Some(b) if b.seq == seq => Ok(self.decode(&[b])?.pop()),
            _ => Ok(None),
        }
    }

    fn raw_since(&self, after: Seq, limit: usize) -> Result<Vec<RawRecord>> {
        let bodies = self.wal.read_range(after.saturating_add(1), limit)?;
        Ok(self
            .decode(&bodies)?
            .into_iter()
            .map(|s| RawRecord {
                seq: s.seq,
                received_at: s.received_at,
                source: s.event.origin.to_string(),
                raw: s.event.raw,
            })
            .collect())
    }

    fn apply_retention(
        &self,
        now: DateTime<Utc>,
        max_age: Option<TimeDelta>,
        max_bytes: Option<u64>,
    ) -> Result<RetentionReport> {
        let _g = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        // Drain the indexer first, so no queued document of a removed record lands after
        // the deletion below. A failing index (disk full) does not stop retention — freeing
        // space is how it recovers; stale documents are skipped by search (their record is
        // gone) and removed at the next successful retention or open.
        if let Err(e) = self.flush_indexer() {
            tracing::warn!(error = %e, "retention runs while the index is failing");
        }
        let cutoff = max_age.map(|a| codec::nanos(now - a));
        let (removed_events, removed_bytes) = self.wal.remove_prefix(cutoff, max_bytes)?;
        let (first, next) = self.wal.bounds();
        if removed_events > 0 {
            if let Err(e) = self.index.retain(first, next) {
                self.health.fail(&e);
            }
        }
        Ok(RetentionReport {
            removed_events,
            removed_bytes,
            first_retained_seq: (first < next).then_some(first),
        })
    }

    fn stats(&self) -> Result<StoreStats> {
        let failing = self.health.failing();
        let (first, next) = self.wal.bounds();
        let (bytes, active_bytes, _) = self.wal.sizes();
        Ok(StoreStats {
            events: next - first,
            first_seq: (first < next).then_some(first),
            last_seq: (first < next).then(|| next - 1),
            bytes,
            active_bytes,
            indexed_seq: self.index.committed_through(),
            recovered_torn_bytes: self.report.recoveries.iter().map(|r| r.bytes).sum(),
            index_errors: self.health.errors.load(Ordering::Relaxed),
            index_error: failing.as_ref().map(|(e, _)| e.clone()),
            index_disk_full: failing.is_some_and(|(_, full)| full),
        })
    }
}

impl Drop for EmbeddedEventStore {
    fn drop(&mut self) {
        // Best effort: a clean shutdown leaves nothing to re-index. Failures are recovered at
        // the next open, so they are ignored here.
        let _ = self.wal.sync();
        if self.stop_indexer() {
            let _ = self.index.maybe_commit(true);
        }
    }
}
