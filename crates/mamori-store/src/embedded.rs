//! The embedded event store: the segment log on disk plus a tantivy index in `index/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
/// than [`INDEX_BACKLOG_DOCS`] events behind, appends wait for it: the lag of search behind
/// the log, and the memory the queue holds, stay bounded. `refresh` waits until everything appended before it is searchable.
pub struct EmbeddedEventStore {
    wal: Wal,
    index: Arc<EventIndex>,
    /// Serialises log append + hand-over to the indexer, so the index sees seqs in order and
    /// its commit payload ("indexed through N") is always a prefix of the log.
    append_lock: Mutex<()>,
    indexer: Mutex<Option<Indexer>>,
    report: OpenReport,
    dir: PathBuf,
    index_errors: Arc<AtomicU64>,
}

const REINDEX_CHUNK: usize = 4096;
/// Events the indexer may lag behind before appends wait: room for a few seconds at 10k
/// events/s, so an index commit (a few hundred ms) never delays an acknowledgement.
const INDEX_BACKLOG_DOCS: usize = 32_768;

/// Documents queued for the indexer, with a condition variable appends wait on when full.
#[derive(Default)]
struct Backlog {
    docs: Mutex<usize>,
    drained: Condvar,
}

impl Backlog {
    fn reserve(&self, n: usize) {
        let mut d = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        // A batch larger than the whole budget goes through once the queue is empty.
        while *d > 0 && *d + n > INDEX_BACKLOG_DOCS {
            d = self.drained.wait(d).unwrap_or_else(|p| p.into_inner());
        }
        *d += n;
    }

    fn release(&self, n: usize) {
        let mut d = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        *d = d.saturating_sub(n);
        self.drained.notify_all();
    }
}

enum IndexJob {
    Docs(Vec<IndexDoc>, Seq),
    /// Commit everything queued before this job, then answer.
    Flush(SyncSender<Result<()>>),
}

struct Indexer {
    tx: Sender<IndexJob>,
    backlog: Arc<Backlog>,
    thread: JoinHandle<()>,
}

impl Indexer {
    fn start(index: Arc<EventIndex>, errors: Arc<AtomicU64>, interval: Duration) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<IndexJob>();
        let backlog = Arc::new(Backlog::default());
        let drained = Arc::clone(&backlog);
        let tick = interval.max(Duration::from_millis(10));
        let thread = std::thread::Builder::new()
            .name("mamori-indexer".into())
            .spawn(move || {
                let count = |r: Result<()>| {
                    if let Err(e) = r {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "indexing failed; the next open re-indexes from the log");
                    }
                };
                loop {
                    match rx.recv_timeout(tick) {
                        Ok(IndexJob::Docs(docs, last)) => {
                            let n = docs.len();
                            count(index.add_documents(docs, last));
                            drained.release(n);
                            count(index.maybe_commit(false));
                        }
                        Ok(IndexJob::Flush(reply)) => {
                            let _ = reply.send(index.maybe_commit(true));
                        }
                        // Nothing new: commit what is pending once the interval has passed,
                        // so search catches up even when appends stop.
                        Err(RecvTimeoutError::Timeout) => count(index.maybe_commit(false)),
                        Err(RecvTimeoutError::Disconnected) => {
                            count(index.maybe_commit(true));
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
        })
    }

    /// Stops the thread after it indexed and committed everything queued.
    fn stop(self) {
        drop(self.tx);
        let _ = self.thread.join();
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
        let (index, indexed) = EventIndex::open_dir(&cfg.dir.join("index"), icfg)?;
        let wal = Wal::open(&cfg.dir.join("wal"), cfg.fsync, cfg.segment_max_bytes)?;
        let (first, next) = wal.bounds();
        // Documents the log no longer has (retention ran but the index did not commit, or the
        // log lost an unsynced tail on power loss) go first; then everything the index lacks
        // is re-added. Both are idempotent by seq.
        index.retain(first, next)?;
        let mut reindexed = 0;
        let mut from = (indexed + 1).max(first);
        let mut names = Interner::new();
        while from < next {
            let bodies = wal.read_range(from, REINDEX_CHUNK)?;
            if bodies.is_empty() {
                break;
            }
            let decoded = decode_all(&cfg.dir, &bodies, &mut names)?;
            index.add(decoded.iter().map(|d| (d.seq, d.received_at, &d.event)))?;
            reindexed += decoded.len() as u64;
            from = bodies.last().expect("non-empty").seq + 1;
        }
        index.maybe_commit(true)?;
        let index = Arc::new(index);
        let index_errors = Arc::new(AtomicU64::new(0));
        let indexer = Indexer::start(
            Arc::clone(&index),
            Arc::clone(&index_errors),
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
            index_errors,
        })
    }

    /// What open recovered and re-indexed.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Indexes and commits everything appended, and fsyncs the log, so the next open has
    /// nothing to redo.
    pub fn close(self) -> Result<()> {
        self.stop_indexer();
        self.index.maybe_commit(true)?;
        self.wal.sync()
    }

    fn stop_indexer(&self) {
        let taken = self
            .indexer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(i) = taken {
            i.stop();
        }
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
            return self.index.maybe_commit(true);
        }
        answer
            .recv()
            .map_err(|_| Error::Index("the indexer thread stopped".into()))?
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
        // (`stats().index_errors`) and the next open re-indexes from the log.
        if !batch.is_empty() {
            let docs: Vec<IndexDoc> = ack
                .seqs()
                .zip(batch)
                .map(|(s, e)| self.index.document(s, received_at, e))
                .collect();
            let g = self.indexer.lock().unwrap_or_else(|p| p.into_inner());
            let sent = g.as_ref().is_some_and(|i| {
                i.backlog.reserve(docs.len());
                i.tx.send(IndexJob::Docs(docs, ack.last_seq)).is_ok()
            });
            if !sent {
                self.index_errors.fetch_add(1, Ordering::Relaxed);
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
        // the deletion below.
        self.flush_indexer()?;
        let cutoff = max_age.map(|a| codec::nanos(now - a));
        let (removed_events, removed_bytes) = self.wal.remove_prefix(cutoff, max_bytes)?;
        let (first, next) = self.wal.bounds();
        if removed_events > 0 {
            self.index.retain(first, next)?;
        }
        Ok(RetentionReport {
            removed_events,
            removed_bytes,
            first_retained_seq: (first < next).then_some(first),
        })
    }

    fn stats(&self) -> Result<StoreStats> {
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
            index_errors: self.index_errors.load(Ordering::Relaxed),
        })
    }
}

impl Drop for EmbeddedEventStore {
    fn drop(&mut self) {
        // Best effort: a clean shutdown leaves nothing to re-index. Failures are recovered at
        // the next open, so they are ignored here.
        self.stop_indexer();
        let _ = self.index.maybe_commit(true);
        let _ = self.wal.sync();
    }
}
