//! Stored check results: `<data_dir>/backups.db` (SQLite). Each run of each entry is one row;
//! later runs read the latest row of the same entry to see whether the repository shrank, and
//! the monthly report reads a month of rows.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};
use crate::model::{CheckRecord, CheckStatus, Finding};

const SCHEMA_VERSION: i64 = 1;

const MIGRATIONS: &[&str] = &["CREATE TABLE checks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        started_us INTEGER NOT NULL,
        finished_us INTEGER NOT NULL,
        status TEXT NOT NULL,
        findings TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX checks_name_started ON checks (name, started_us);
    CREATE INDEX checks_started ON checks (started_us);"];

/// The file name inside the data directory.
pub const HISTORY_FILE: &str = "backups.db";

/// The history of backup checks. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct History {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl History {
    /// Opens (creating and migrating if needed) `<data_dir>/backups.db`.
    pub fn open(data_dir: &Path) -> Result<History> {
        let path = data_dir.join(HISTORY_FILE);
        let conn = Connection::open(&path).map_err(db(&path))?;
        History::init(conn, path)
    }

    /// A private in-memory history (tests, `--dry-run`).
    pub fn open_in_memory() -> Result<History> {
        let path = PathBuf::from(":memory:");
        History::init(Connection::open_in_memory().map_err(db(&path))?, path)
    }

    fn init(mut conn: Connection, path: PathBuf) -> Result<History> {
        {
            let e = db(&path);
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(&e)?;
            let _: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(&e)?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(&e)?;
            migrate(&mut conn, &path)?;
        }
        Ok(History {
            conn: Mutex::new(conn),
            path,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // Every write is one statement; a panic elsewhere cannot leave it half-applied.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores one result.
    pub fn record(&self, r: &CheckRecord) -> Result<()> {
        let findings = serde_json::to_string(&r.findings).expect("findings always serialise");
        let details = serde_json::to_string(&r.details).expect("a json value always serialises");
        self.conn()
            .execute(
                "INSERT INTO checks (name, kind, started_us, finished_us, status, findings, details) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    r.name,
                    r.kind,
                    r.started.timestamp_micros(),
                    r.finished.timestamp_micros(),
                    r.status.as_str(),
                    findings,
                    details
                ],
            )
            .map_err(db(&self.path))?;
        Ok(())
    }

    /// Every result whose check *started* in `[from, to)`, oldest first.
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<CheckRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, name, kind, started_us, finished_us, status, findings, details \
                 FROM checks WHERE started_us >= ?1 AND started_us < ?2 ORDER BY started_us, id",
            )
            .map_err(db(&self.path))?;
        let rows = stmt
            .query_map(
                params![from.timestamp_micros(), to.timestamp_micros()],
                raw_row,
            )
            .map_err(db(&self.path))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.decode(row.map_err(db(&self.path))?)?);
        }
        Ok(out)
    }

    /// The most recent result of the entry `name` (by start time), if it ever ran.
    pub fn latest(&self, name: &str) -> Result<Option<CheckRecord>> {
        let raw = self
            .conn()
            .query_row(
                "SELECT id, name, kind, started_us, finished_us, status, findings, details \
                 FROM checks WHERE name = ?1 ORDER BY started_us DESC, id DESC LIMIT 1",
                [name],
                raw_row,
            )
            .optional()
            .map_err(db(&self.path))?;
        raw.map(|r| self.decode(r)).transpose()
    }

    /// The last `limit` results of the entry `name`, newest first (the console's history).
    pub fn recent(&self, name: &str, limit: usize) -> Result<Vec<CheckRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, name, kind, started_us, finished_us, status, findings, details \
                 FROM checks WHERE name = ?1 ORDER BY started_us DESC, id DESC LIMIT ?2",
            )
            .map_err(db(&self.path))?;
        let rows = stmt
            .query_map(params![name, limit as i64], raw_row)
            .map_err(db(&self.path))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.decode(row.map_err(db(&self.path))?)?);
        }
        Ok(out)
    }

    fn decode(&self, r: RawRow) -> Result<CheckRecord> {
        let corrupt = |reason: String| Error::Corrupt {
            path: self.path.clone(),
            id: r.id,
            reason,
        };
        let time = |us: i64| {
            DateTime::from_timestamp_micros(us).ok_or_else(|| corrupt(format!("time {us}")))
        };
        Ok(CheckRecord {
            started: time(r.started_us)?,
            finished: time(r.finished_us)?,
            status: CheckStatus::parse(&r.status)
                .ok_or_else(|| corrupt(format!("status {:?}", r.status)))?,
            findings: serde_json::from_str::<Vec<Finding>>(&r.findings)
                .map_err(|e| corrupt(format!("findings: {e}")))?,
            details: serde_json::from_str(&r.details)
                .map_err(|e| corrupt(format!("details: {e}")))?,
            name: r.name,
            kind: r.kind,
        })
    }
}

struct RawRow {
    id: i64,
    name: String,
    kind: String,
    started_us: i64,
    finished_us: i64,
    status: String,
    findings: String,
    details: String,
}

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        started_us: r.get(3)?,
        finished_us: r.get(4)?,
        status: r.get(5)?,
        findings: r.get(6)?,
        details: r.get(7)?,
    })
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let e = db(path);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&e)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(&e)?;
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for m in &MIGRATIONS[version as usize..] {
        tx.execute_batch(m).map_err(&e)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(&e)?;
    tx.commit().map_err(&e)
}

fn db(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Db {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
