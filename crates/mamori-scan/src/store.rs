//! The stored results of `serve`'s scheduled scans (`<data_dir>/scans.db`): the schema, owned
//! here so the server that writes it and the monthly report that reads it agree on one layout.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};

use crate::Severity;

/// The database file inside a data directory.
pub const SCANS_FILE: &str = "scans.db";

/// Tables: one row per scan run, one per distinct finding (first and last seen, RFC 3339).
pub const SCHEMA: &str = "PRAGMA journal_mode=WAL;
    CREATE TABLE IF NOT EXISTS scans(
        id INTEGER PRIMARY KEY, started TEXT NOT NULL, duration_ms INTEGER NOT NULL,
        profile TEXT NOT NULL, worst TEXT NOT NULL, findings INTEGER NOT NULL,
        report TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS findings(
        key TEXT PRIMARY KEY, check_id TEXT NOT NULL, target TEXT NOT NULL,
        location TEXT NOT NULL, severity TEXT NOT NULL, first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL, first_scan INTEGER NOT NULL, last_scan INTEGER NOT NULL,
        alert_id INTEGER);";

/// A finding as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinding {
    pub check_id: String,
    pub target: String,
    pub location: String,
    pub severity: Severity,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// What the scans of `[from, to)` saw: the runs and the findings seen in that span (most
/// severe first). `None` when the data directory holds no scan database (no `[scan]`).
pub fn seen_between(
    data_dir: &Path,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> rusqlite::Result<Option<(u64, Vec<StoredFinding>)>> {
    let path = data_dir.join(SCANS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let c = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
    };
    let mut runs = 0u64;
    let mut st = c.prepare("SELECT started FROM scans")?;
    for s in st.query_map([], |r| r.get::<_, String>(0))? {
        if parse(&s?).is_some_and(|t| t >= from && t < to) {
            runs += 1;
        }
    }
    let mut st = c.prepare(
        "SELECT check_id, target, location, severity, first_seen, last_seen FROM findings",
    )?;
    let mut out = Vec::new();
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })? {
        let (check_id, target, location, sev, first, last) = row?;
        let (Some(first_seen), Some(last_seen)) = (parse(&first), parse(&last)) else {
            continue;
        };
        if last_seen < from || first_seen >= to {
            continue;
        }
        out.push(StoredFinding {
            check_id,
            target,
            location,
            severity: Severity::parse(&sev).unwrap_or_default(),
            first_seen,
            last_seen,
        });
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.target.cmp(&b.target))
            .then_with(|| a.check_id.cmp(&b.check_id))
    });
    Ok(Some((runs, out)))
}
