//! Alerts, rule state and settings in SQLite (WAL journal, `synchronous = FULL`: a committed
//! transaction survives power loss).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use mamori_event::{Level, RuleId};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::alerts;
use crate::error::{Error, Result};
use crate::model::{Ack, Alert, AlertFilter, AlertId, AlertStatus, InsertOutcome, NewAlert};
use crate::AlertStore;

/// Schema version, kept in `PRAGMA user_version`.
/// Version 2 added the activity aggregates (`source_hours`, `address_days`, `source_seen`).
pub const SQLITE_SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id TEXT NOT NULL,
    title TEXT NOT NULL,
    level INTEGER NOT NULL,
    status TEXT NOT NULL,
    event_time_us INTEGER,
    received_at_us INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL,
    count INTEGER NOT NULL,
    event_seqs TEXT NOT NULL,
    group_key TEXT,
    dedup_key TEXT,
    details TEXT NOT NULL,
    ack_by TEXT,
    ack_at_us INTEGER,
    ack_note TEXT
);
CREATE INDEX IF NOT EXISTS alerts_open_dedup ON alerts(dedup_key) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS alerts_last_seen ON alerts(last_seen_us);
CREATE INDEX IF NOT EXISTS alerts_last_seen_level ON alerts(last_seen_us, level);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
";

const COLUMNS: &str = "id, rule_id, title, level, status, event_time_us, received_at_us, \
    last_seen_us, count, event_seqs, group_key, dedup_key, details, ack_by, ack_at_us, ack_note";

pub struct SqliteAlertStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteAlertStore {
    /// Opens (creating if needed) the database at `path` (`<data-dir>/mamori.sqlite`).
    pub fn open(path: &Path) -> Result<SqliteAlertStore> {
        let conn = Connection::open(path).map_err(sql_at(path))?;
        SqliteAlertStore::init(conn, path)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> Result<SqliteAlertStore> {
        let path = Path::new(":memory:");
        SqliteAlertStore::init(Connection::open_in_memory().map_err(sql_at(path))?, path)
    }

    fn init(conn: Connection, path: &Path) -> Result<SqliteAlertStore> {
        let e = sql_at(path);
        // Other connections of the server write to the same file (cases, users, reports):
        // wait for them rather than lose an alert on a loaded machine.
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(&e)?;
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(&e)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&e)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&e)?;
        if version > SQLITE_SCHEMA_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version as u16,
                supported: SQLITE_SCHEMA_VERSION as u16,
            });
        }
        conn.execute_batch(SCHEMA).map_err(&e)?;
        conn.execute_batch(crate::aggregates::SCHEMA).map_err(&e)?;
        conn.pragma_update(None, "user_version", SQLITE_SCHEMA_VERSION)
            .map_err(&e)?;
        Ok(SqliteAlertStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        sql_at(&self.path)
    }
}

fn sql_at(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_us(v: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or(rusqlite::Error::IntegralValueOutOfRange(0, v))
}

fn bad(col: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, msg.into())
}

fn row_to_alert(r: &Row<'_>) -> rusqlite::Result<Alert> {
    let level: i64 = r.get(3)?;
    let status: String = r.get(4)?;
    let seqs: String = r.get(9)?;
    let details: String = r.get(12)?;
    let ack_by: Option<String> = r.get(13)?;
    let ack = match ack_by {
        None => None,
        Some(by) => Some(Ack {
            by,
            at: from_us(r.get(14)?)?,
            note: r.get::<_, Option<String>>(15)?.unwrap_or_default(),
        }),
    };
    Ok(Alert {
        id: AlertId(r.get(0)?),
        rule_id: RuleId(r.get::<_, String>(1)?.into()),
        title: r.get(2)?,
        level: *usize::try_from(level)
            .ok()
            .and_then(|i| Level::ALL.get(i))
            .ok_or_else(|| bad(3, format!("bad level {level}")))?,
        status: AlertStatus::parse(&status)
            .ok_or_else(|| bad(4, format!("bad status {status}")))?,
        event_time: r.get::<_, Option<i64>>(5)?.map(from_us).transpose()?,
        received_at: from_us(r.get(6)?)?,
        last_seen: from_us(r.get(7)?)?,
        count: r.get::<_, i64>(8)? as u64,
        event_seqs: serde_json::from_str(&seqs).map_err(|e| bad(9, e.to_string()))?,
        group_key: r.get(10)?,
        dedup_key: r.get(11)?,
        details: serde_json::from_str(&details).map_err(|e| bad(12, e.to_string()))?,
        ack,
    })
}

fn level_rank(l: Level) -> i64 {
    Level::ALL
        .iter()
        .position(|x| *x == l)
        .expect("level in ALL") as i64
}

impl AlertStore for SqliteAlertStore {
    fn count_alerts_by_level_hour(
        &self,
        start: DateTime<Utc>,
        hours: u32,
    ) -> Result<Vec<(Level, u32, u64)>> {
        const HOUR_US: i64 = 3_600_000_000;
        let from = us(start);
        let to = from.saturating_add(i64::from(hours) * HOUR_US);
        let conn = self.conn();
        // Served from the (last_seen_us, level) index alone: no alert row is read.
        let mut stmt = conn
            .prepare_cached(
                "SELECT level, (last_seen_us - ?1) / ?3 AS h, COUNT(*) FROM alerts \
                 WHERE last_seen_us >= ?1 AND last_seen_us < ?2 GROUP BY level, h",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![from, to, HOUR_US], |r| {
                let level: i64 = r.get(0)?;
                let level = *usize::try_from(level)
                    .ok()
                    .and_then(|i| Level::ALL.get(i))
                    .ok_or_else(|| bad(0, format!("bad level {level}")))?;
                Ok((
                    level,
                    r.get::<_, i64>(1)? as u32,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    fn insert_alert(&self, a: &NewAlert) -> Result<InsertOutcome> {
        alerts::validate(a)?;
        let mut conn = self.conn();
        // IMMEDIATE: this transaction reads then writes; a deferred one would fail at once with
        // "database is locked" (no busy wait) when another connection wrote in between.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err())?;
        if let Some(key) = &a.dedup_key {
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM alerts WHERE status = 'open' AND dedup_key = ?1 \
                         ORDER BY id DESC LIMIT 1"
                    ),
                    [key],
                    row_to_alert,
                )
                .optional()
                .map_err(self.err())?;
            if let Some(mut x) = existing {
                alerts::merge(&mut x, a);
                tx.execute(
                    "UPDATE alerts SET count = ?2, last_seen_us = ?3, event_time_us = ?4, \
                     event_seqs = ?5, level = ?6, details = ?7 WHERE id = ?1",
                    params![
                        x.id.0,
                        x.count as i64,
                        us(x.last_seen),
                        x.event_time.map(us),
                        serde_json::to_string(&x.event_seqs).expect("seqs serialise"),
                        level_rank(x.level),
                        x.details.to_string(),
                    ],
                )
                .map_err(self.err())?;
                tx.commit().map_err(self.err())?;
                return Ok(InsertOutcome::Merged(x.id));
            }
        }
        let x = alerts::new_alert(AlertId(0), a);
        tx.execute(
            "INSERT INTO alerts (rule_id, title, level, status, event_time_us, received_at_us, \
             last_seen_us, count, event_seqs, group_key, dedup_key, details) \
             VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?5, 1, ?6, ?7, ?8, ?9)",
            params![
                &*x.rule_id.0,
                x.title,
                level_rank(x.level),
                x.event_time.map(us),
                us(x.received_at),
                serde_json::to_string(&x.event_seqs).expect("seqs serialise"),
                x.group_key,
                x.dedup_key,
                x.details.to_string(),
            ],
        )
        .map_err(self.err())?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(self.err())?;
        Ok(InsertOutcome::Created(AlertId(id)))
    }

    fn list_alerts(&self, f: &AlertFilter) -> Result<Vec<Alert>> {
        let mut sql = format!("SELECT {COLUMNS} FROM alerts WHERE 1 = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(l) = f.min_level {
            args.push(SqlValue::Integer(level_rank(l)));
            sql += &format!(" AND level >= ?{}", args.len());
        }
        if let Some(s) = f.status {
            args.push(SqlValue::Text(s.as_str().into()));
            sql += &format!(" AND status = ?{}", args.len());
        }
        if let Some(t) = f.since {
            args.push(SqlValue::Integer(us(t)));
            sql += &format!(" AND last_seen_us >= ?{}", args.len());
        }
        if let Some(r) = &f.rule_id {
            args.push(SqlValue::Text(r.0.to_string()));
            sql += &format!(" AND rule_id = ?{}", args.len());
        }
        args.push(SqlValue::Integer(f.limit.min(i64::MAX as usize) as i64));
        args.push(SqlValue::Integer(f.offset.min(i64::MAX as usize) as i64));
        sql += &format!(
            " ORDER BY id DESC LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), row_to_alert)
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    fn get_alert(&self, id: AlertId) -> Result<Option<Alert>> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"),
                [id.0],
                row_to_alert,
            )
            .optional()
            .map_err(self.err())
    }

    fn acknowledge(&self, id: AlertId, ack: &Ack) -> Result<Alert> {
        let n = self
            .conn()
            .execute(
                "UPDATE alerts SET status = 'acknowledged', ack_by = ?2, ack_at_us = ?3, \
                 ack_note = ?4 WHERE id = ?1 AND status = 'open'",
                params![id.0, ack.by, us(ack.at), ack.note],
            )
            .map_err(self.err())?;
        let _ = n; // 0 rows: unknown id, or already acknowledged (the first ack wins)
        self.get_alert(id)?.ok_or_else(|| Error::NotFound {
            what: "alert",
            id: id.to_string(),
        })
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.conn()
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    fn kv_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM kv WHERE key = ?1", [key])
            .map_err(self.err())?;
        Ok(n > 0)
    }

    fn kv_compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<bool> {
        // One statement each: atomic against other connections and processes.
        let n = match expected {
            None => self.conn().execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                params![key, new],
            ),
            Some(old) => self.conn().execute(
                "UPDATE kv SET value = ?3 WHERE key = ?1 AND value = ?2",
                params![key, old, new],
            ),
        }
        .map_err(self.err())?;
        Ok(n == 1)
    }
}
