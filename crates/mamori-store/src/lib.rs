//! Storage of `mamori serve`: events, alerts, rule state and settings.
//!
//! # The key design decision: the log is the truth, the index is a cache
//!
//! Events go to a **write-ahead segment log** first ([`EmbeddedEventStore`], format in
//! [`codec`] and `docs/store-format.md`): length-prefixed, CRC32-framed records in numbered,
//! versioned segment files. `append` acknowledges a batch only after it is written — and
//! fsynced, under the default [`FsyncPolicy::Always`] — so an acknowledged event survives a
//! crash. The raw bytes and the receipt order are kept exactly, which is what the evidence vault
//! seals ([`EventStore::raw_since`]).
//!
//! The **tantivy index** is derived from the log and may lag it: it commits in batches (every
//! N events or T ms, or on [`EventStore::refresh`]) and each commit records, atomically, the
//! highest seq it covers. On open the store deletes index documents the log no longer has and
//! re-indexes the log from the last committed seq. Documents are keyed by seq, so this is
//! idempotent: a crash at any point leaves every acknowledged event in the log once and, after
//! the next open, in the index once. An unreadable or outdated index is dropped and rebuilt.
//!
//! Alerts, detection state and settings are small, mutable and relational, so they live in
//! SQLite ([`SqliteAlertStore`]) rather than in the log.
//!
//! # Two traits, two backends each, one suite
//!
//! [`EventStore`] and [`AlertStore`] are what the server sees (`Arc<dyn EventStore>`). Each has
//! an embedded implementation and an in-memory one ([`MemoryEventStore`], [`MemoryAlertStore`]);
//! [`testsuite`] holds one set of behavioural tests, generic over a factory, that every backend
//! — including a later scale-out one — must pass.
//!
//! # Invariants
//!
//! - **An acknowledged event is in the log exactly once**, with the seq the ack named; seqs are
//!   dense, start at 1 and are never reused.
//! - **Retention removes a prefix of the log**, never a hole; the index follows.
//! - **Open never drops data silently**: a torn tail is copied to `wal/quarantine/`, truncated
//!   and reported ([`OpenReport`]); damage anywhere else is [`Error::Corrupt`].
//! - **Bad input never panics**: oversized events are refused before anything is written,
//!   malformed queries are [`Error::Query`] with a position, corrupt frames are errors.
//! - **Time is passed in** where it decides anything (`append_at`, `apply_retention(now, ..)`);
//!   only the convenience [`EventStore::append`] reads the clock.

mod aggregates;
mod alerts;
pub mod codec;
mod doc;
mod embedded;
mod error;
mod index;
pub mod kvchunks;
mod memory;
mod model;
mod sqlite;
pub mod testsuite;
mod wal;
mod words;

use chrono::{DateTime, TimeDelta, Utc};
use mamori_event::Event;

/// The alert rules every [`AlertStore`] backend shares — validation, a new alert's fields, the
/// dedup merge — for backends outside this crate (PostgreSQL in `mamori-cluster`), so their
/// merge semantics are the embedded ones by construction.
pub mod alert_rules {
    pub use crate::alerts::{merge, new_alert, validate, MAX_DETAILS, MAX_TEXT};
}

pub use aggregates::{
    AddressDay, SourceHour, SourceSeen, AGGREGATES_THROUGH_KEY, MAX_SOURCE_LEN, OTHER_ADDRESS,
};
pub use embedded::{EmbeddedConfig, EmbeddedEventStore, OpenReport};
pub use error::{Error, Result};
pub use memory::{MemoryAlertStore, MemoryEventStore};
pub use model::{
    Ack, Alert, AlertFilter, AlertId, AlertStatus, AppendAck, Bucket, InsertOutcome, NewAlert,
    RawRecord, RetentionReport, SearchRequest, SearchResponse, Seq, SortOrder, StoreStats,
    StoredEvent, MAX_ALERT_SEQS, MAX_BUCKETS, MAX_LIMIT, MAX_WINDOW,
};
pub use sqlite::{SqliteAlertStore, SQLITE_SCHEMA_VERSION};
pub use wal::{FsyncPolicy, Recovery};

/// Where events are kept. Synchronous and `&self`: the async server calls it from a blocking
/// pool; implementations serialise appends internally and let searches run concurrently.
pub trait EventStore: Send + Sync {
    /// Stores a batch received at `received_at`; returns once the batch is durable per the
    /// backend's policy. All or nothing: an event that cannot be stored (too large, nesting
    /// too deep) fails the whole batch before anything is written.
    fn append_at(&self, batch: &[Event], received_at: DateTime<Utc>) -> Result<AppendAck>;

    /// [`EventStore::append_at`] with the current time.
    fn append(&self, batch: &[Event]) -> Result<AppendAck> {
        self.append_at(batch, Utc::now())
    }

    /// Makes every acknowledged event visible to [`EventStore::search`] (search otherwise lags
    /// appends by the index commit interval).
    fn refresh(&self) -> Result<()>;

    fn search(&self, q: &SearchRequest) -> Result<SearchResponse>;

    /// The event with this seq, or `None` if it was never stored or retention removed it.
    fn get(&self, seq: Seq) -> Result<Option<StoredEvent>>;

    /// Up to `limit` records with seq `> after`, in seq (receipt) order, raw bytes untouched —
    /// the evidence vault's feed. Pass the last seq sealed; 0 reads from the start. If
    /// retention removed records after `after`, the result starts at the first kept one (the
    /// gap is visible in the seqs).
    fn raw_since(&self, after: Seq, limit: usize) -> Result<Vec<RawRecord>>;

    /// Removes the oldest events: those received before `now - max_age`, then more while the
    /// store exceeds `max_bytes`. Backends remove in their own units (whole segments on disk),
    /// so an old event may outlive the cutoff until its unit is entirely old, and the unit
    /// being written ([`StoreStats::active_bytes`]) is kept; but an event received at or after
    /// the cutoff is never removed for age.
    fn apply_retention(
        &self,
        now: DateTime<Utc>,
        max_age: Option<TimeDelta>,
        max_bytes: Option<u64>,
    ) -> Result<RetentionReport>;

    fn stats(&self) -> Result<StoreStats>;
}

/// What [`AlertStore::kv_update`] makes of a key's current value (`None`: leave it).
pub type KvUpdate<'a> = dyn FnMut(Option<&[u8]>) -> Option<Vec<u8>> + 'a;

/// Attempts of [`AlertStore::kv_update`] before it gives up on a key others keep changing.
pub const KV_UPDATE_TRIES: usize = 64;

/// Alerts, and small named blobs (settings, detection state such as a saved
/// `mamori_detect::correlation::Correlator`).
pub trait AlertStore: Send + Sync {
    /// Records an alert, or merges it into the open alert with the same dedup key.
    fn insert_alert(&self, a: &NewAlert) -> Result<InsertOutcome>;

    /// Alerts matching the filter, newest (highest id) first.
    fn list_alerts(&self, f: &AlertFilter) -> Result<Vec<Alert>>;

    fn get_alert(&self, id: AlertId) -> Result<Option<Alert>>;

    /// Marks an alert acknowledged and returns it. The first acknowledgement wins: a second
    /// one returns the alert unchanged. [`Error::NotFound`] for an unknown id.
    fn acknowledge(&self, id: AlertId, ack: &Ack) -> Result<Alert>;

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key`, replacing any previous value atomically.
    fn kv_put(&self, key: &str, value: &[u8]) -> Result<()>;

    /// Removes `key`; whether it existed.
    fn kv_delete(&self, key: &str) -> Result<bool>;

    /// Writes `new` under `key` only if its value is still `expected` (`None`: absent);
    /// whether it did. Atomic against every other writer of the store — another process on
    /// the same file, another cluster node on the same database — in every persistent
    /// backend (each overrides this non-atomic default).
    fn kv_compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<bool> {
        if self.kv_get(key)?.as_deref() != expected {
            return Ok(false);
        }
        self.kv_put(key, new)?;
        Ok(true)
    }

    /// Replaces `key`'s value with what `f` makes of the current one (`None` from `f`: leave
    /// it as it is), retrying on a concurrent change, so two read-modify-write updates never
    /// lose one of them. `f` may run more than once.
    fn kv_update(&self, key: &str, f: &mut KvUpdate<'_>) -> Result<()> {
        for _ in 0..KV_UPDATE_TRIES {
            let cur = self.kv_get(key)?;
            let Some(new) = f(cur.as_deref()) else {
                return Ok(());
            };
            if self.kv_compare_and_swap(key, cur.as_deref(), &new)? {
                return Ok(());
            }
        }
        Err(Error::Backend {
            backend: "kv",
            message: format!("`{key}` kept changing under {KV_UPDATE_TRIES} attempts to update it"),
        })
    }

    /// Alerts last seen in the `hours` hours from `start`, counted per level and hour:
    /// `(level, hour index from start, count)`, zero counts left out. Stores override this
    /// with a grouped query; the default pages through [`AlertStore::list_alerts`].
    fn count_alerts_by_level_hour(
        &self,
        start: DateTime<Utc>,
        hours: u32,
    ) -> Result<Vec<(mamori_event::Level, u32, u64)>> {
        alerts::count_by_level_hour(self, start, hours)
    }
}
