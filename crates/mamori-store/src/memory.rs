//! In-memory implementations of both traits: for tests of the layers above, and the reference
//! the shared suite holds the embedded backend to. Search uses the same tantivy index code over
//! a RAM directory, so query semantics are identical by construction; what differs is the log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use mamori_event::Event;

use crate::codec;
use crate::error::{Error, Result};
use crate::index::{EventIndex, IndexConfig};
use crate::model::{
    Ack, Alert, AlertFilter, AlertId, AlertStatus, AppendAck, InsertOutcome, NewAlert, RawRecord,
    RetentionReport, SearchRequest, SearchResponse, Seq, StoreStats, StoredEvent,
};
use crate::{AlertStore, EventStore};

struct Log {
    /// `(event, encoded frame length)`, seq = `first_seq + index`.
    events: VecDeque<(StoredEvent, u64)>,
    first_seq: Seq,
    bytes: u64,
}

/// Events in memory; retention removes single events (the unit is one event).
pub struct MemoryEventStore {
    log: Mutex<Log>,
    index: EventIndex,
    index_errors: AtomicU64,
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        MemoryEventStore::new()
    }
}

impl MemoryEventStore {
    pub fn new() -> MemoryEventStore {
        MemoryEventStore {
            log: Mutex::new(Log {
                events: VecDeque::new(),
                first_seq: 1,
                bytes: 0,
            }),
            index: EventIndex::open_ram(IndexConfig {
                heap_bytes: 15 << 20,
                ..IndexConfig::from(&crate::EmbeddedConfig::default())
            })
            .expect("a RAM index always opens"),
            index_errors: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EventStore for MemoryEventStore {
    fn append_at(&self, batch: &[Event], received_at: DateTime<Utc>) -> Result<AppendAck> {
        let mut log = self.lock();
        let first_seq = log.first_seq + log.events.len() as u64;
        // Same limits as the log format, checked before anything is stored.
        let mut lens = Vec::with_capacity(batch.len());
        let mut scratch = Vec::new();
        for e in batch {
            scratch.clear();
            lens.push(codec::encode_frame(&mut scratch, 0, received_at, e)? as u64);
        }
        for (i, (e, len)) in batch.iter().zip(lens).enumerate() {
            log.events.push_back((
                StoredEvent {
                    seq: first_seq + i as u64,
                    received_at,
                    event: e.clone(),
                },
                len,
            ));
            log.bytes += len;
        }
        let ack = AppendAck {
            first_seq,
            last_seq: first_seq + batch.len() as u64 - 1,
        };
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
        let _log = self.lock();
        self.index.maybe_commit(true)
    }

    fn search(&self, q: &SearchRequest) -> Result<SearchResponse> {
        self.index.search(q, |seqs| {
            let mut out = Vec::with_capacity(seqs.len());
            for &s in seqs {
                out.extend(self.get(s)?);
            }
            Ok(out)
        })
    }

    fn get(&self, seq: Seq) -> Result<Option<StoredEvent>> {
        let log = self.lock();
        Ok(seq
            .checked_sub(log.first_seq)
            .and_then(|i| log.events.get(i as usize))
            .map(|(e, _)| e.clone()))
    }

    fn raw_since(&self, after: Seq, limit: usize) -> Result<Vec<RawRecord>> {
        let log = self.lock();
        let skip = after.saturating_add(1).saturating_sub(log.first_seq);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        Ok(log
            .events
            .iter()
            .skip(skip)
            .take(limit)
            .map(|(s, _)| RawRecord {
                seq: s.seq,
                received_at: s.received_at,
                source: s.event.origin.to_string(),
                raw: s.event.raw.clone(),
            })
            .collect())
    }

    fn apply_retention(
        &self,
        now: DateTime<Utc>,
        max_age: Option<TimeDelta>,
        max_bytes: Option<u64>,
    ) -> Result<RetentionReport> {
        let mut log = self.lock();
        let cutoff = max_age.map(|a| now - a);
        let (mut removed_events, mut removed_bytes) = (0, 0);
        while let Some((front, len)) = log.events.front() {
            let old = cutoff.is_some_and(|c| front.received_at < c);
            let big = max_bytes.is_some_and(|m| log.bytes > m);
            if !(old || big) {
                break;
            }
            let len = *len;
            log.events.pop_front();
            log.first_seq += 1;
            log.bytes -= len;
            removed_events += 1;
            removed_bytes += len;
        }
        let next = log.first_seq + log.events.len() as u64;
        if removed_events > 0 {
            self.index.retain(log.first_seq, next)?;
        }
        Ok(RetentionReport {
            removed_events,
            removed_bytes,
            first_retained_seq: (!log.events.is_empty()).then_some(log.first_seq),
        })
    }

    fn stats(&self) -> Result<StoreStats> {
        let log = self.lock();
        let n = log.events.len() as u64;
        Ok(StoreStats {
            events: n,
            first_seq: (n > 0).then_some(log.first_seq),
            last_seq: (n > 0).then(|| log.first_seq + n - 1),
            bytes: log.bytes,
            active_bytes: 0,
            indexed_seq: self.index.committed_through(),
            recovered_torn_bytes: 0,
            index_errors: self.index_errors.load(Ordering::Relaxed),
            index_error: None,
            index_disk_full: false,
        })
    }
}

/// Alerts and settings in memory.
#[derive(Default)]
pub struct MemoryAlertStore {
    inner: Mutex<AlertsInner>,
}

#[derive(Default)]
struct AlertsInner {
    alerts: BTreeMap<i64, Alert>,
    kv: BTreeMap<String, Vec<u8>>,
}

impl MemoryAlertStore {
    pub fn new() -> MemoryAlertStore {
        MemoryAlertStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AlertsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AlertStore for MemoryAlertStore {
    fn insert_alert(&self, a: &NewAlert) -> Result<InsertOutcome> {
        crate::alerts::validate(a)?;
        let mut g = self.lock();
        if let Some(key) = &a.dedup_key {
            let open = g
                .alerts
                .values_mut()
                .rev()
                .find(|x| x.status == AlertStatus::Open && x.dedup_key.as_deref() == Some(key));
            if let Some(x) = open {
                crate::alerts::merge(x, a);
                return Ok(InsertOutcome::Merged(x.id));
            }
        }
        let id = AlertId(g.alerts.keys().next_back().map_or(1, |k| k + 1));
        g.alerts.insert(id.0, crate::alerts::new_alert(id, a));
        Ok(InsertOutcome::Created(id))
    }

    fn list_alerts(&self, f: &AlertFilter) -> Result<Vec<Alert>> {
        let g = self.lock();
        Ok(g.alerts
            .values()
            .rev()
            .filter(|a| f.matches(a))
            .skip(f.offset)
            .take(f.limit)
            .cloned()
            .collect())
    }

    fn get_alert(&self, id: AlertId) -> Result<Option<Alert>> {
        Ok(self.lock().alerts.get(&id.0).cloned())
    }

    fn acknowledge(&self, id: AlertId, ack: &Ack) -> Result<Alert> {
        let mut g = self.lock();
        let a = g.alerts.get_mut(&id.0).ok_or_else(|| Error::NotFound {
            what: "alert",
            id: id.to_string(),
        })?;
        if a.status == AlertStatus::Open {
            a.status = AlertStatus::Acknowledged;
            a.ack = Some(ack.clone());
        }
        Ok(a.clone())
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().kv.get(key).cloned())
    }

    fn kv_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.lock().kv.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<bool> {
        Ok(self.lock().kv.remove(key).is_some())
    }

    fn kv_compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<bool> {
        let mut g = self.lock();
        if g.kv.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        g.kv.insert(key.to_string(), new.to_vec());
        Ok(true)
    }
}
