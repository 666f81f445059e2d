//! The embedded backend: incidents in one SQLite file (WAL), one `IMMEDIATE` transaction per
//! change. SQLite has one writer at a time, which is all the serialisation
//! [`CaseBackend::write`]'s `locks` ask for.
//!
//! Layout (schema version in `PRAGMA user_version`, upgraded by [`MIGRATIONS`] in order):
//! - `incidents`: one row per incident; the whole incident as JSON in `doc`, plus the
//!   columns lists filter and sort on (status, phase, severity rank, kind, times).
//! - `incident_entities`: the grouping state: per incident and normalised entity, when it was
//!   seen, by which alert, and the furthest ATT&CK tactic seen with it; indexed by entity, so
//!   an alert finds its candidate incidents without reading any document.
//! - `incident_alerts`: which incident each alert went to (an alert is linked at most once).
//! - `held_alerts` / `held_entities` (schema 2): low alerts that opened no incident, kept for
//!   the grouping window, found again by entity when an incident opens.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use crate::backend::{severity_rank, CaseBackend, CaseTx, EntityRow, HeldRow, IncidentRow, TxBody};
use crate::error::{Error, Result};
use crate::model::{IncidentFilter, IncidentId};

/// Schema migrations; `MIGRATIONS[i]` takes version `i` to `i + 1`. Append only.
pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        status TEXT NOT NULL,
        phase TEXT NOT NULL,
        severity INTEGER NOT NULL,
        kind TEXT NOT NULL,
        created_at_us INTEGER NOT NULL,
        updated_at_us INTEGER NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE INDEX incidents_by_status ON incidents(status, updated_at_us);
    CREATE TABLE incident_entities (
        incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        first_seen_us INTEGER NOT NULL,
        last_seen_us INTEGER NOT NULL,
        alert_id INTEGER NOT NULL,
        tactic INTEGER,
        tactic_alert_id INTEGER,
        PRIMARY KEY (incident_id, field, value)
    ) WITHOUT ROWID;
    CREATE INDEX incident_entities_by_entity ON incident_entities(field, value);
    CREATE TABLE incident_alerts (
        alert_id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE
    );
    ",
    // 2: held low alerts, found again by entity when an incident opens.
    "
    CREATE TABLE held_alerts (
        alert_id INTEGER PRIMARY KEY,
        time_us INTEGER NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE INDEX held_alerts_by_time ON held_alerts(time_us);
    CREATE TABLE held_entities (
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        alert_id INTEGER NOT NULL REFERENCES held_alerts(alert_id) ON DELETE CASCADE,
        PRIMARY KEY (field, value, alert_id)
    ) WITHOUT ROWID;
    CREATE INDEX held_entities_by_alert ON held_entities(alert_id);
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The SQLite case database (see the module docs).
pub(crate) struct SqliteBackend {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteBackend {
    pub(crate) fn open(path: &Path) -> Result<SqliteBackend> {
        let conn = Connection::open(path).map_err(db(path))?;
        SqliteBackend::init(conn, path)
    }

    pub(crate) fn open_in_memory() -> Result<SqliteBackend> {
        let path = Path::new(":memory:");
        SqliteBackend::init(Connection::open_in_memory().map_err(db(path))?, path)
    }

    fn init(mut conn: Connection, path: &Path) -> Result<SqliteBackend> {
        let e = db(path);
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(&e)?;
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(&e)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&e)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(&e)?;
        migrate(&mut conn, path)?;
        Ok(SqliteBackend {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied change: every change is
        // one SQLite transaction, rolled back when dropped.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        db(&self.path)
    }
}

impl CaseBackend for SqliteBackend {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn write(&self, _locks: &[String], f: &mut TxBody<'_>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err())?;
        f(&mut SqliteTx {
            tx: &tx,
            path: &self.path,
        })?;
        tx.commit().map_err(self.err())
    }

    fn get(&self, id: IncidentId) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT doc FROM incidents WHERE id = ?1", [id.0], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }

    fn list(
        &self,
        filter: &IncidentFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<(IncidentId, String)>> {
        let (cond, args) = where_clause(filter);
        let sql = format!(
            "SELECT id, doc FROM incidents{cond} ORDER BY updated_at_us DESC, id DESC \
             LIMIT {limit} OFFSET {offset}"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| {
                Ok((IncidentId(r.get(0)?), r.get::<_, String>(1)?))
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    fn count(&self, filter: &IncidentFilter) -> Result<u64> {
        let (cond, args) = where_clause(filter);
        let n: i64 = self
            .conn()
            .query_row(
                &format!("SELECT COUNT(*) FROM incidents{cond}"),
                params_from_iter(args),
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(n as u64)
    }

    fn held_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM held_alerts", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(n as u64)
    }
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    path: &'a Path,
}

impl SqliteTx<'_> {
    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        db(self.path)
    }
}

impl CaseTx for SqliteTx<'_> {
    fn lock_more(&mut self, _names: &[String]) -> Result<()> {
        Ok(()) // one writer at a time already
    }

    fn linked_incident(&mut self, alert_id: i64) -> Result<Option<IncidentId>> {
        self.tx
            .query_row(
                "SELECT incident_id FROM incident_alerts WHERE alert_id = ?1",
                [alert_id],
                |r| Ok(IncidentId(r.get(0)?)),
            )
            .optional()
            .map_err(self.err())
    }

    fn load(&mut self, id: IncidentId) -> Result<Option<String>> {
        self.tx
            .query_row("SELECT doc FROM incidents WHERE id = ?1", [id.0], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }

    fn candidates(&mut self, keys: &[(&str, &str)]) -> Result<Vec<EntityRow>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT e.incident_id, e.first_seen_us, e.last_seen_us, e.alert_id, e.tactic, \
                 e.tactic_alert_id FROM incident_entities e JOIN incidents i ON i.id = e.incident_id \
                 WHERE i.status = 'open' AND e.field = ?1 AND e.value = ?2",
            )
            .map_err(self.err())?;
        let mut out = Vec::new();
        for (field, value) in keys {
            let rows = stmt
                .query_map(params![field, value], |r| {
                    Ok(EntityRow {
                        incident: IncidentId(r.get(0)?),
                        field: (*field).to_owned(),
                        value: (*value).to_owned(),
                        first_seen_us: r.get(1)?,
                        last_seen_us: r.get(2)?,
                        alert_id: r.get(3)?,
                        tactic: match (r.get::<_, Option<i64>>(4)?, r.get::<_, Option<i64>>(5)?) {
                            (Some(t), Some(a)) => Some((t, a)),
                            _ => None,
                        },
                    })
                })
                .map_err(self.err())?;
            for row in rows {
                out.push(row.map_err(self.err())?);
            }
        }
        Ok(out)
    }

    fn create(&mut self, now_us: i64) -> Result<IncidentId> {
        self.tx
            .execute(
                "INSERT INTO incidents (status, phase, severity, kind, created_at_us, \
                 updated_at_us, doc) VALUES ('open', '', 0, '', ?1, ?1, '{}')",
                [now_us],
            )
            .map_err(self.err())?;
        Ok(IncidentId(self.tx.last_insert_rowid()))
    }

    fn save(&mut self, row: &IncidentRow<'_>) -> Result<()> {
        self.tx
            .execute(
                "UPDATE incidents SET status = ?2, phase = ?3, severity = ?4, kind = ?5, \
                 created_at_us = ?6, updated_at_us = ?7, doc = ?8 WHERE id = ?1",
                params![
                    row.id.0,
                    row.status,
                    row.phase,
                    row.severity,
                    row.kind,
                    row.created_at_us,
                    row.updated_at_us,
                    row.doc,
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn save_entities(&mut self, rows: &[EntityRow]) -> Result<()> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "INSERT OR REPLACE INTO incident_entities (incident_id, field, value, \
                 first_seen_us, last_seen_us, alert_id, tactic, tactic_alert_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(self.err())?;
        for e in rows {
            stmt.execute(params![
                e.incident.0,
                e.field,
                e.value,
                e.first_seen_us,
                e.last_seen_us,
                e.alert_id,
                e.tactic.map(|(t, _)| t),
                e.tactic.map(|(_, a)| a),
            ])
            .map_err(self.err())?;
        }
        Ok(())
    }

    fn link_alert(&mut self, alert_id: i64, incident: IncidentId) -> Result<()> {
        self.tx
            .execute(
                "INSERT OR IGNORE INTO incident_alerts (alert_id, incident_id) VALUES (?1, ?2)",
                params![alert_id, incident.0],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn hold(
        &mut self,
        alert_id: i64,
        time_us: i64,
        doc: &str,
        keys: &[(&str, &str)],
        max_held: usize,
    ) -> Result<()> {
        let e = self.err();
        self.tx
            .execute("DELETE FROM held_entities WHERE alert_id = ?1", [alert_id])
            .map_err(&e)?;
        self.tx
            .execute(
                "INSERT OR REPLACE INTO held_alerts (alert_id, time_us, doc) VALUES (?1, ?2, ?3)",
                params![alert_id, time_us, doc],
            )
            .map_err(&e)?;
        let mut stmt = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO held_entities (field, value, alert_id) VALUES (?1, ?2, ?3)",
            )
            .map_err(&e)?;
        for (field, value) in keys {
            stmt.execute(params![field, value, alert_id]).map_err(&e)?;
        }
        self.tx
            .execute(
                "DELETE FROM held_alerts WHERE alert_id IN (SELECT alert_id FROM held_alerts \
                 ORDER BY time_us DESC, alert_id DESC LIMIT -1 OFFSET ?1)",
                [max_held.min(i64::MAX as usize) as i64],
            )
            .map_err(&e)?;
        Ok(())
    }

    fn release_held(&mut self, alert_id: i64) -> Result<bool> {
        Ok(self
            .tx
            .execute("DELETE FROM held_alerts WHERE alert_id = ?1", [alert_id])
            .map_err(self.err())?
            > 0)
    }

    fn held_sharing(
        &mut self,
        keys: &[(&str, &str)],
        lo_us: i64,
        hi_us: i64,
    ) -> Result<Vec<HeldRow>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT h.alert_id, h.time_us, h.doc FROM held_entities e \
                 JOIN held_alerts h ON h.alert_id = e.alert_id \
                 WHERE e.field = ?1 AND e.value = ?2 AND h.time_us BETWEEN ?3 AND ?4",
            )
            .map_err(self.err())?;
        let mut out = Vec::new();
        for (field, value) in keys {
            let rows = stmt
                .query_map(params![field, value, lo_us, hi_us], |r| {
                    Ok(HeldRow {
                        alert_id: r.get(0)?,
                        time_us: r.get(1)?,
                        doc: r.get(2)?,
                        field: (*field).to_owned(),
                        value: (*value).to_owned(),
                    })
                })
                .map_err(self.err())?;
            for row in rows {
                out.push(row.map_err(self.err())?);
            }
        }
        Ok(out)
    }
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

fn where_clause(f: &IncidentFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(s) = f.status {
        args.push(Value::Text(s.as_str().into()));
        conds.push(format!("status = ?{}", args.len()));
    }
    if let Some(p) = f.phase {
        args.push(Value::Text(p.as_str().into()));
        conds.push(format!("phase = ?{}", args.len()));
    }
    if let Some(l) = f.min_severity {
        args.push(Value::Integer(severity_rank(l)));
        conds.push(format!("severity >= ?{}", args.len()));
    }
    if let Some(k) = f.kind {
        args.push(Value::Text(k.as_str().into()));
        conds.push(format!("kind = ?{}", args.len()));
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), args)
    }
}

fn db(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Db {
        path: path.to_path_buf(),
        source,
    }
}
