//! The values that cross the storage traits.

use chrono::{DateTime, TimeDelta, Utc};
use mamori_event::{Event, Level, RuleId};
use serde::{Deserialize, Serialize};

/// Position of an event in the store's log. Seqs start at 1, increase by one per event in the
/// order events were acknowledged, and are never reused (retention removes a prefix of the log;
/// the seqs after it keep their values).
pub type Seq = u64;

/// What `append` acknowledges: the seqs given to the batch, `first_seq..=last_seq`. For an empty
/// batch `last_seq == first_seq - 1` and nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AppendAck {
    pub first_seq: Seq,
    pub last_seq: Seq,
}

impl AppendAck {
    pub fn len(&self) -> u64 {
        (self.last_seq + 1).saturating_sub(self.first_seq)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn seqs(&self) -> std::ops::RangeInclusive<Seq> {
        self.first_seq..=self.last_seq
    }
}

/// An event as stored: its seq, when the store received it, and the event itself (fields typed
/// exactly as appended, raw bytes untouched).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: Seq,
    pub received_at: DateTime<Utc>,
    pub event: Event,
}

impl StoredEvent {
    /// The time search filters, sorts and buckets by: the event's own timestamp, or the receipt
    /// time when the record carried none.
    pub fn time(&self) -> DateTime<Utc> {
        self.event.timestamp.unwrap_or(self.received_at)
    }
}

/// Raw bytes of one event in receipt order, for the evidence vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub seq: Seq,
    pub received_at: DateTime<Utc>,
    /// Where the event came from (`Origin`'s display form: `file:line`, `tcp://peer`).
    pub source: String,
    pub raw: Box<[u8]>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Oldest first.
    Asc,
    /// Newest first (what a console shows by default).
    #[default]
    Desc,
}

/// Most hits one search returns.
pub const MAX_LIMIT: usize = 10_000;
/// Deepest page: `offset + limit` may not exceed this (deep paging costs memory in every
/// backend; narrow the time range instead).
pub const MAX_WINDOW: usize = 100_000;
/// Most histogram buckets one search returns.
pub const MAX_BUCKETS: usize = 10_000;

/// A search: a Lucene-like query over the event fields, a time range, order and page, and an
/// optional histogram of the matching events over time.
///
/// Query syntax (tantivy's query parser): `user.name:alice AND event.outcome:failure`,
/// `Image:"C:\Windows\System32\cmd.exe"`, `NOT host:web01`, `-x`, `+y`, bare words search the
/// raw text (`message`) without its syslog priority and its timestamp as written (search time
/// with `from`/`to`); `host:` is the event's host; an empty query or `*` matches everything.
/// Matching is on lower-cased words, as in Kibana's default analyser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    /// Inclusive lower bound on [`StoredEvent::time`].
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on [`StoredEvent::time`].
    pub to: Option<DateTime<Utc>>,
    pub sort: SortOrder,
    pub offset: usize,
    pub limit: usize,
    /// Bucket width of the histogram of matching events; `None` for no histogram.
    #[serde(with = "opt_secs")]
    pub histogram: Option<TimeDelta>,
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            query: String::new(),
            from: None,
            to: None,
            sort: SortOrder::Desc,
            offset: 0,
            limit: 100,
            histogram: None,
        }
    }
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            ..SearchRequest::default()
        }
    }

    /// Checks the bounds every backend enforces.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::InvalidRequest(m));
        if self.limit > MAX_LIMIT {
            return bad(format!("limit {} exceeds {MAX_LIMIT}", self.limit));
        }
        if self.offset.saturating_add(self.limit) > MAX_WINDOW {
            return bad(format!("offset + limit exceeds {MAX_WINDOW}"));
        }
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f > t {
                return bad(format!("from {f} is after to {t}"));
            }
        }
        if let Some(w) = self.histogram {
            if w < TimeDelta::milliseconds(1) {
                return bad("histogram bucket width must be at least 1 ms".into());
            }
        }
        Ok(())
    }
}

/// One histogram bucket: `[start, start + width)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SearchResponse {
    /// Number of events matching query and time range (not just this page).
    pub total: u64,
    pub hits: Vec<StoredEvent>,
    /// Dense buckets (empty ones included) from the `from` bound, or the first match, to the
    /// `to` bound, or the last match. Bucket starts are multiples of the width since the epoch.
    pub histogram: Vec<Bucket>,
}

/// What `apply_retention` removed. Retention always removes a prefix of the log (oldest seqs),
/// never a hole, so the vault's cursor and `raw_since` stay simple.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub removed_events: u64,
    pub removed_bytes: u64,
    /// The first seq still stored, if any event is.
    pub first_retained_seq: Option<Seq>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub events: u64,
    pub first_seq: Option<Seq>,
    pub last_seq: Option<Seq>,
    /// Bytes of the event log (the size retention compares with `max_bytes`).
    pub bytes: u64,
    /// Bytes retention cannot remove yet (the segment being written); 0 in memory.
    pub active_bytes: u64,
    /// Highest seq the search index has durably committed (search may lag appends until
    /// [`crate::EventStore::refresh`]).
    pub indexed_seq: Seq,
    /// Bytes of torn tail truncated (and quarantined) when the store was opened.
    pub recovered_torn_bytes: u64,
    /// Index failures since open (adds or commits that failed after the log had the events;
    /// they were acknowledged, and the index re-indexes them from the log when it recovers).
    pub index_errors: u64,
    /// The index failure not yet recovered from (search lags the log meanwhile: compare
    /// `indexed_seq` with `last_seq`); `None` when the index is healthy.
    pub index_error: Option<String>,
    /// Whether that failure is a full disk.
    pub index_disk_full: bool,
}

// ---------------------------------------------------------------------------------------------
// Alerts

/// Row id of an alert. A newtype so it cannot be confused with event seqs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlertId(pub i64);

impl std::fmt::Display for AlertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Open,
    Acknowledged,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
        }
    }

    pub fn parse(s: &str) -> Option<AlertStatus> {
        match s {
            "open" => Some(AlertStatus::Open),
            "acknowledged" => Some(AlertStatus::Acknowledged),
            _ => None,
        }
    }
}

/// An alert to record, as the detection pipeline produces it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub rule_id: RuleId,
    pub title: String,
    pub level: Level,
    /// Time of the (last) triggering event, if it had one.
    pub event_time: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// Seqs of the events that triggered it (the evidence to show and seal).
    pub event_seqs: Vec<Seq>,
    /// Correlation group (e.g. `source.ip=203.0.113.5`), for display and filtering.
    pub group_key: Option<String>,
    /// Alerts with the same dedup key merge into the *open* alert that has it: its count grows,
    /// `last_seen` moves, seqs it does not name yet are appended (up to [`MAX_ALERT_SEQS`]), and a `first_seq` /
    /// `last_seq` / `events` span in the details widens (a correlation episode's end).
    pub dedup_key: Option<String>,
    pub details: serde_json::Value,
}

/// Most event seqs one alert keeps; later merges still count.
pub const MAX_ALERT_SEQS: usize = 1000;

/// Who acknowledged an alert, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub at: DateTime<Utc>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: AlertId,
    pub rule_id: RuleId,
    pub title: String,
    pub level: Level,
    pub status: AlertStatus,
    pub event_time: Option<DateTime<Utc>>,
    /// Receipt time of the first occurrence.
    pub received_at: DateTime<Utc>,
    /// Receipt time of the latest merged occurrence.
    pub last_seen: DateTime<Utc>,
    /// Occurrences merged into this alert (1 when never deduplicated).
    pub count: u64,
    pub event_seqs: Vec<Seq>,
    pub group_key: Option<String>,
    pub dedup_key: Option<String>,
    pub details: serde_json::Value,
    pub ack: Option<Ack>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Created(AlertId),
    /// Merged into the open alert with the same dedup key.
    Merged(AlertId),
}

impl InsertOutcome {
    pub fn id(self) -> AlertId {
        match self {
            InsertOutcome::Created(id) | InsertOutcome::Merged(id) => id,
        }
    }
}

/// Alert list filter; results are newest first (highest id first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only alerts at this level or above.
    pub min_level: Option<Level>,
    pub status: Option<AlertStatus>,
    /// Only alerts last seen at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub rule_id: Option<RuleId>,
    pub offset: usize,
    pub limit: usize,
}

impl Default for AlertFilter {
    fn default() -> Self {
        AlertFilter {
            min_level: None,
            status: None,
            since: None,
            rule_id: None,
            offset: 0,
            limit: 100,
        }
    }
}

impl AlertFilter {
    pub(crate) fn matches(&self, a: &Alert) -> bool {
        self.min_level.is_none_or(|l| a.level >= l)
            && self.status.is_none_or(|s| a.status == s)
            && self.since.is_none_or(|t| a.last_seen >= t)
            && self.rule_id.as_ref().is_none_or(|r| &a.rule_id == r)
    }
}

/// Serde for `Option<TimeDelta>` as whole seconds (the API's `histogram: 3600`).
mod opt_secs {
    use chrono::TimeDelta;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<TimeDelta>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|d| d.num_milliseconds() as f64 / 1000.0).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<TimeDelta>, D::Error> {
        let v: Option<f64> = Option::deserialize(d)?;
        match v {
            None => Ok(None),
            Some(s) if s.is_finite() && s > 0.0 && s < 1e12 => {
                Ok(Some(TimeDelta::milliseconds((s * 1000.0) as i64)))
            }
            Some(s) => Err(serde::de::Error::custom(format!(
                "histogram width {s} s is out of range"
            ))),
        }
    }
}
