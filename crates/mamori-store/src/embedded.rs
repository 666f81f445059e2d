//! The embedded event store: the segment log on disk plus a tantivy index in `index/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use mamori_event::{Event, Interner};
use serde::{Deserialize, Serialize};

use crate::codec;
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
            index_commit_every: 50_000,
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
pub struct EmbeddedEventStore {
    wal: Wal,
    index: EventIndex,
    /// Serialises log append + index add so the index sees seqs in order and its commit
    /// payload ("indexed through N") is always a prefix of the log.
    append_lock: Mutex<()>,
    report: OpenReport,
    dir: PathBuf,
    index_errors: AtomicU64,
}

const REINDEX_CHUNK: usize = 4096;

impl EmbeddedEventStore {
    pub fn open(cfg: EmbeddedConfig) -> Result<EmbeddedEventStore> {
        if cfg.segment_max_bytes < 4096 || cfg.segment_max_bytes > (1 << 30) {
            return Err(Error::InvalidRequest(format!(
                "segment_max_bytes {} is outside 4 KiB..1 GiB",
                cfg.segment_max_bytes
            )));
        }
        let icfg = IndexConfig {
            heap_bytes: cfg.index_heap_bytes,
            commit_every_docs: cfg.index_commit_every.max(1),
            commit_interval: std::time::Duration::from_millis(cfg.index_commit_interval_ms),
        };
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
        Ok(EmbeddedEventStore {
            report: OpenReport {
                recoveries: wal.recoveries().to_vec(),
                reindexed,
            },
            wal,
            index,
            append_lock: Mutex::new(()),
            dir: cfg.dir,
            index_errors: AtomicU64::new(0),
        })
    }

    /// What open recovered and re-indexed.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Commits the index and fsyncs the log, so the next open has nothing to redo.
    pub fn close(self) -> Result<()> {
        self.index.maybe_commit(true)?;
        self.wal.sync()
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
        // would make the caller retry and store the batch twice. The failure is counted
        // (`stats().index_errors`) and the next open re-indexes from the log.
        let indexed = self
            .index
            .add(ack.seqs().zip(batch).map(|(s, e)| (s, received_at, e)))
            .and_then(|()| self.index.maybe_commit(false));
        if indexed.is_err() {
            self.index_errors.fetch_add(1, Ordering::Relaxed);
        }
        Ok(ack)
    }

    fn refresh(&self) -> Result<()> {
        let _g = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.index.maybe_commit(true)
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
        let _ = self.index.maybe_commit(true);
        let _ = self.wal.sync();
    }
}
