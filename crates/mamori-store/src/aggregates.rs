//! Activity aggregates in the state database: events per source and hour, and per external
//! address and day (with authentication outcomes).
//!
//! The pipeline counts in memory and adds its counts here in one transaction every few
//! seconds ([`SqliteAlertStore::add_aggregates`]), so the source health monitor and the
//! monthly report read a few thousand rows instead of rescanning millions of events.
//!
//! Adding is an upsert: counts add up, `first_seen` keeps the earliest. Hours are truncated to
//! the start of their UTC hour. Bad input (an over-long source name, a count beyond SQLite's
//! integer range) is refused before anything is written: the batch is all or nothing.

use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use rusqlite::{params, OptionalExtension};

use crate::error::{Error, Result};
use crate::sqlite::SqliteAlertStore;

/// The address under which counts for addresses beyond the per-day cap are kept (a flood of
/// random addresses must not grow the table without limit): `0.0.0.0`, never a real sender.
pub const OTHER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Longest source name stored (a syslog host name is at most 255 bytes).
pub const MAX_SOURCE_LEN: usize = 512;

/// Events of one source in one UTC hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHour {
    /// The sending host as the event names it (`host.name`), else the sender address, else
    /// the upload / tailed file name.
    pub source: String,
    /// `syslog`, `http`, `upload` or `tail`.
    pub kind: String,
    /// Start of the hour (truncated when added).
    pub hour: DateTime<Utc>,
    pub events: u64,
}

/// Events of one external address on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressDay {
    /// [`OTHER_ADDRESS`] holds the addresses beyond the per-day cap.
    pub ip: IpAddr,
    pub day: NaiveDate,
    pub events: u64,
    pub auth_failures: u64,
    pub auth_successes: u64,
    pub first_seen: DateTime<Utc>,
}

/// When a source was first and last heard from (receipt time), kept beside the hourly counts
/// so the health monitor knows the minute a source went quiet, across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSeen {
    pub source: String,
    pub kind: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS source_hours (
    hour_s INTEGER NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (hour_s, source, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS address_days (
    day TEXT NOT NULL,
    ip TEXT NOT NULL,
    events INTEGER NOT NULL,
    auth_failures INTEGER NOT NULL,
    auth_successes INTEGER NOT NULL,
    first_seen_us INTEGER NOT NULL,
    PRIMARY KEY (day, ip)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS source_seen (
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen_us INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL,
    PRIMARY KEY (source, kind)
) WITHOUT ROWID;
";

/// Key of the kv entry holding the highest event seq whose counts were added (written in the
/// same transaction as the counts).
pub const AGGREGATES_THROUGH_KEY: &str = "aggregates/through_seq";

fn hour_start(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

fn count(what: &str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidRequest(format!("{what} count {n} is too large")))
}

fn check_source(source: &str, kind: &str) -> Result<()> {
    if source.len() > MAX_SOURCE_LEN || kind.len() > MAX_SOURCE_LEN {
        return Err(Error::InvalidRequest(format!(
            "source name is {} bytes, the limit is {MAX_SOURCE_LEN}",
            source.len().max(kind.len())
        )));
    }
    Ok(())
}

fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn bad(col: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, msg.into())
}

fn from_us(col: usize, v: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| bad(col, format!("bad time {v}")))
}

impl SqliteAlertStore {
    /// Adds the counts (upsert: events add up, first_seen keeps the earliest).
    pub fn add_aggregates(&self, hours: &[SourceHour], addrs: &[AddressDay]) -> Result<()> {
        self.record_aggregates(hours, addrs, &[], None)
    }

    /// [`SqliteAlertStore::add_aggregates`] plus the sources' first/last seen times (first
    /// keeps the earliest, last the latest) and, when given, the highest event seq these
    /// counts cover ([`SqliteAlertStore::aggregates_through`]) — all in one transaction.
    pub fn record_aggregates(
        &self,
        hours: &[SourceHour],
        addrs: &[AddressDay],
        seen: &[SourceSeen],
        through_seq: Option<u64>,
    ) -> Result<()> {
        for h in hours {
            check_source(&h.source, &h.kind)?;
            count("events", h.events)?;
        }
        for a in addrs {
            count("events", a.events)?;
            count("auth failure", a.auth_failures)?;
            count("auth success", a.auth_successes)?;
        }
        for s in seen {
            check_source(&s.source, &s.kind)?;
        }
        let mut conn = self.conn();
        // IMMEDIATE: this transaction reads then writes; a deferred one would fail at once with
        // "database is locked" (no busy wait) when another connection wrote in between.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err())?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO source_hours (hour_s, source, kind, events) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (hour_s, source, kind) DO UPDATE SET events = events + excluded.events",
                )
                .map_err(self.err())?;
            for h in hours {
                st.execute(params![
                    hour_start(h.hour).timestamp(),
                    h.source,
                    h.kind,
                    h.events as i64
                ])
                .map_err(self.err())?;
            }
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO address_days (day, ip, events, auth_failures, auth_successes, first_seen_us) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (day, ip) DO UPDATE SET \
                     events = events + excluded.events, \
                     auth_failures = auth_failures + excluded.auth_failures, \
                     auth_successes = auth_successes + excluded.auth_successes, \
                     first_seen_us = min(first_seen_us, excluded.first_seen_us)",
                )
                .map_err(self.err())?;
            for a in addrs {
                st.execute(params![
                    day_text(a.day),
                    a.ip.to_string(),
                    a.events as i64,
                    a.auth_failures as i64,
                    a.auth_successes as i64,
                    a.first_seen.timestamp_micros(),
                ])
                .map_err(self.err())?;
            }
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO source_seen (source, kind, first_seen_us, last_seen_us) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (source, kind) DO UPDATE SET \
                     first_seen_us = min(first_seen_us, excluded.first_seen_us), \
                     last_seen_us = max(last_seen_us, excluded.last_seen_us)",
                )
                .map_err(self.err())?;
            for s in seen {
                st.execute(params![
                    s.source,
                    s.kind,
                    s.first_seen.timestamp_micros(),
                    s.last_seen.timestamp_micros()
                ])
                .map_err(self.err())?;
            }
            if let Some(seq) = through_seq {
                tx.execute(
                    "INSERT INTO kv (key, value) VALUES (?1, ?2) \
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![AGGREGATES_THROUGH_KEY, seq.to_le_bytes().to_vec()],
                )
                .map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())
    }

    /// Hourly counts with `from <= hour < to`, oldest first (then by source and kind).
    pub fn source_hours(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<SourceHour>> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT hour_s, source, kind, events FROM source_hours \
                 WHERE hour_s >= ?1 AND hour_s < ?2 ORDER BY hour_s, source, kind",
            )
            .map_err(self.err())?;
        // An hour that starts before `from` is outside the range even if `from` is inside it.
        let from_s = {
            let h = hour_start(from);
            if h < from {
                h.timestamp() + 3600
            } else {
                h.timestamp()
            }
        };
        let rows = st
            .query_map(params![from_s, to.timestamp()], |r| {
                let h: i64 = r.get(0)?;
                Ok(SourceHour {
                    hour: DateTime::from_timestamp(h, 0)
                        .ok_or_else(|| bad(0, format!("bad hour {h}")))?,
                    source: r.get(1)?,
                    kind: r.get(2)?,
                    events: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    /// Daily address counts with `from <= day <= to` (both inclusive: a month is its first and
    /// last day), by day then address text.
    pub fn address_days(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<AddressDay>> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT day, ip, events, auth_failures, auth_successes, first_seen_us \
                 FROM address_days WHERE day >= ?1 AND day <= ?2 ORDER BY day, ip",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![day_text(from), day_text(to)], |r| {
                let day: String = r.get(0)?;
                let ip: String = r.get(1)?;
                Ok(AddressDay {
                    day: NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                        .map_err(|e| bad(0, format!("bad day {day:?}: {e}")))?,
                    ip: ip
                        .parse()
                        .map_err(|e| bad(1, format!("bad address {ip:?}: {e}")))?,
                    events: r.get::<_, i64>(2)? as u64,
                    auth_failures: r.get::<_, i64>(3)? as u64,
                    auth_successes: r.get::<_, i64>(4)? as u64,
                    first_seen: from_us(5, r.get(5)?)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    /// Every source ever counted, with its first and last receipt time.
    pub fn sources_seen(&self) -> Result<Vec<SourceSeen>> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT source, kind, first_seen_us, last_seen_us FROM source_seen \
                 ORDER BY source, kind",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok(SourceSeen {
                    source: r.get(0)?,
                    kind: r.get(1)?,
                    first_seen: from_us(2, r.get(2)?)?,
                    last_seen: from_us(3, r.get(3)?)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    /// The highest event seq whose counts were recorded (0 if none).
    pub fn aggregates_through(&self) -> Result<u64> {
        let v: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT value FROM kv WHERE key = ?1",
                [AGGREGATES_THROUGH_KEY],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        Ok(v.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0))
    }

    /// Removes aggregate rows older than `before`, and the sources last seen before it
    /// (retention of the state database). Returns the rows removed.
    pub fn prune_aggregates(&self, before: DateTime<Utc>) -> Result<u64> {
        let conn = self.conn();
        let a = conn
            .execute(
                "DELETE FROM source_hours WHERE hour_s < ?1",
                [hour_start(before).timestamp()],
            )
            .map_err(self.err())?;
        let b = conn
            .execute(
                "DELETE FROM address_days WHERE day < ?1",
                [day_text(before.date_naive())],
            )
            .map_err(self.err())?;
        // A source not heard from since is forgotten with its counts.
        let c = conn
            .execute(
                "DELETE FROM source_seen WHERE last_seen_us < ?1",
                [before.timestamp_micros()],
            )
            .map_err(self.err())?;
        Ok((a + b + c) as u64)
    }
}

#[cfg(test)]
mod tests;
