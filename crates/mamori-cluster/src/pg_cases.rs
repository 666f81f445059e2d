//! Incidents in PostgreSQL: the [`CaseBackend`] of the scale-out mode, so that every node's
//! [`CaseStore`] sees one set of incidents (tasks, notes, history, response records and
//! evidence references live in the incident's document). The grouping and the phase machine
//! are `mamori-cases`' own; this file only stores rows. It passes the case-store suite
//! (`mamori_cases::testsuite`) that SQLite passes.
//!
//! * **Grouping on several nodes at once**: a write transaction first takes a
//!   transaction-scoped advisory lock per lock name the store gives (the alert's id, its
//!   normalised entities), in ascending order so two transactions never wait on each other in
//!   a cycle. Two alerts sharing an entity are thus grouped one after the other, and the
//!   second sees the incident the first opened (`READ COMMITTED`: each statement reads what
//!   was committed before it). Candidate incidents and loaded incidents are locked
//!   (`FOR UPDATE`), so a concurrent close either comes first (the incident is no longer a
//!   candidate) or waits.
//! * **Locks learnt on the way** ([`CaseTx::lock_more`]: the entities of a held alert being
//!   taken in) are tried without waiting; if another transaction has one, this attempt rolls
//!   back and runs again holding *all* its locks from the start, in order. A deadlock or
//!   serialisation failure the server reports is retried the same way.
//! * Entity fields and values are `BYTEA`: log content may hold NUL, which `TEXT` refuses.
//! * **Migrations**: component `cases` of the `schema_version` table [`crate::pg`] keeps,
//!   under the same advisory lock, so a schema holds alerts and incidents side by side.
//! * The synchronous client must not run on a tokio worker: every call runs on a scoped
//!   thread of its own with a pooled connection (dropped there, too).

use std::sync::Mutex;
use std::time::Duration;

use mamori_cases::backend::{
    lock_id, severity_rank, CaseBackend, CaseTx, EntityRow, HeldRow, IncidentRow, TxBody,
};
use mamori_cases::{CaseStore, Error, IncidentFilter, IncidentId, Result};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Transaction};

/// Version of the incident schema this build writes (`schema_version`, component `cases`).
pub const PG_CASES_SCHEMA_VERSION: i32 = 1;

/// Migrations, in order: entry `i` brings the `cases` component from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["
CREATE TABLE incidents (
    id BIGSERIAL PRIMARY KEY,
    status TEXT NOT NULL,
    phase TEXT NOT NULL,
    severity BIGINT NOT NULL,
    kind TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX incidents_by_status ON incidents (status, updated_at_us);
CREATE INDEX incidents_by_update ON incidents (updated_at_us DESC, id DESC);
CREATE TABLE incident_entities (
    incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    field BYTEA NOT NULL,
    value BYTEA NOT NULL,
    first_seen_us BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL,
    alert_id BIGINT NOT NULL,
    tactic BIGINT,
    tactic_alert_id BIGINT,
    PRIMARY KEY (incident_id, field, value)
);
CREATE INDEX incident_entities_by_entity ON incident_entities (field, value);
CREATE TABLE incident_alerts (
    alert_id BIGINT PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE
);
CREATE TABLE held_alerts (
    alert_id BIGINT PRIMARY KEY,
    time_us BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX held_alerts_by_time ON held_alerts (time_us);
CREATE TABLE held_entities (
    field BYTEA NOT NULL,
    value BYTEA NOT NULL,
    alert_id BIGINT NOT NULL REFERENCES held_alerts (alert_id) ON DELETE CASCADE,
    PRIMARY KEY (field, value, alert_id)
);
CREATE INDEX held_entities_by_alert ON held_entities (alert_id);
"];

/// Idle connections kept for the next call.
const IDLE: usize = 4;
/// Attempts of one write transaction before a conflict is reported.
const ATTEMPTS: u32 = 30;

/// The PostgreSQL case backend (see the module docs). Wrap it with
/// [`CaseStore::with_backend`], or use [`open_case_store`].
pub struct PgCaseBackend {
    url: String,
    schema: String,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PgCaseBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCaseBackend")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// A [`CaseStore`] on PostgreSQL: connects to `url`, creates `schema` if needed and brings
/// its incident tables to [`PG_CASES_SCHEMA_VERSION`].
pub fn open_case_store(url: &str, schema: &str) -> Result<CaseStore> {
    CaseStore::with_backend(Box::new(PgCaseBackend::open(url, schema)?))
}

impl PgCaseBackend {
    /// Connects (failing now, with the server's words, rather than at the first alert) and
    /// migrates; see [`open_case_store`].
    pub fn open(url: &str, schema: &str) -> Result<PgCaseBackend> {
        if !crate::pg::valid_schema(schema) {
            return Err(Error::Invalid(format!(
                "postgres schema {schema:?}: use 1–63 lower-case letters, digits and _"
            )));
        }
        let b = PgCaseBackend {
            url: url.to_owned(),
            schema: schema.to_owned(),
            idle: Mutex::new(Vec::new()),
        };
        b.run(|c, store| migrate(c, &b.schema, store))?;
        Ok(b)
    }

    /// The schema the incidents live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs `f` with a pooled connection on a thread of its own (see the module docs).
    fn run<T: Send>(&self, f: impl FnOnce(&mut Client, &str) -> Result<T> + Send) -> Result<T> {
        let store = self.describe();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut c = self.checkout(&store)?;
                let r = f(&mut c, &store);
                if !c.is_closed() {
                    let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                    if idle.len() < IDLE {
                        idle.push(c);
                    }
                }
                r
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    fn checkout(&self, store: &str) -> Result<Client> {
        loop {
            let c = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match c {
                Some(c) if !c.is_closed() => return Ok(c),
                Some(_) => continue,
                None => break,
            }
        }
        let mut c = Client::connect(&self.url, NoTls).map_err(|e| pg(store, e))?;
        c.batch_execute(&format!("SET search_path TO \"{}\"", self.schema))
            .map_err(|e| pg(store, e))?;
        Ok(c)
    }

    fn query<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error> + Send,
    ) -> Result<T> {
        self.run(|c, store| f(c).map_err(|e| pg(store, e)))
    }

    /// Drops the schema and everything in it, alerts included (tests clean up with it).
    pub fn drop_schema(self) -> Result<()> {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        self.query(move |c| c.batch_execute(&sql))
    }
}

impl Drop for PgCaseBackend {
    fn drop(&mut self) {
        // Closing a connection blocks on its runtime: never on the caller's (maybe async)
        // thread.
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("mamori-pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

fn pg(store: &str, e: postgres::Error) -> Error {
    Error::Backend {
        store: store.to_owned(),
        message: e.to_string(),
    }
}

/// A conflict the server broke by aborting this transaction: running it again succeeds.
fn retryable(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// A short pause before attempt `n + 1`, spread so that two nodes that collided do not
/// collide again in step.
fn backoff(n: u32) -> Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 1000);
    Duration::from_micros(u64::from(n.min(20)) * (200 + u64::from(jitter)))
}

impl CaseBackend for PgCaseBackend {
    fn describe(&self) -> String {
        format!("postgresql schema {:?}", self.schema)
    }

    fn write(&self, locks: &[String], f: &mut TxBody<'_>) -> Result<()> {
        let mut ids: Vec<i64> = locks.iter().map(|n| lock_id(n)).collect();
        self.run(|c, store| {
            let mut attempt = 0;
            loop {
                attempt += 1;
                ids.sort_unstable();
                ids.dedup();
                match attempt_once(c, store, &ids, f) {
                    (Err(_), true, learnt) if attempt < ATTEMPTS => {
                        // The next attempt holds what this one learnt from the start.
                        ids.extend(learnt);
                        std::thread::sleep(backoff(attempt));
                    }
                    (r, ..) => return r,
                }
            }
        })
    }

    fn get(&self, id: IncidentId) -> Result<Option<String>> {
        self.query(move |c| {
            Ok(
                c.query_opt("SELECT doc FROM incidents WHERE id = $1", &[&id.0])?
                    .map(|r| r.get(0)),
            )
        })
    }

    fn list(
        &self,
        filter: &IncidentFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<(IncidentId, String)>> {
        let (cond, mut args) = where_clause(filter);
        let n = args.len();
        args.push(Box::new(limit));
        args.push(Box::new(offset));
        let sql = format!(
            "SELECT id, doc FROM incidents{cond} ORDER BY updated_at_us DESC, id DESC \
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        self.query(move |c| {
            Ok(c.query(&sql, &params(&args))?
                .iter()
                .map(|r| (IncidentId(r.get(0)), r.get(1)))
                .collect())
        })
    }

    fn count(&self, filter: &IncidentFilter) -> Result<u64> {
        let (cond, args) = where_clause(filter);
        let sql = format!("SELECT COUNT(*) FROM incidents{cond}");
        self.query(move |c| Ok(c.query_one(&sql, &params(&args))?.get::<_, i64>(0) as u64))
    }

    fn held_count(&self) -> Result<u64> {
        self.query(|c| {
            Ok(c.query_one("SELECT COUNT(*) FROM held_alerts", &[])?
                .get::<_, i64>(0) as u64)
        })
    }
}

/// One attempt of a write transaction: its result, whether running it again may succeed,
/// and the lock ids it learnt.
fn attempt_once(
    c: &mut Client,
    store: &str,
    ids: &[i64],
    f: &mut TxBody<'_>,
) -> (Result<()>, bool, Vec<i64>) {
    let t = match c.transaction() {
        Ok(t) => t,
        Err(e) => return (Err(pg(store, e)), false, Vec::new()),
    };
    let mut tx = PgTx {
        tx: t,
        store,
        retry: false,
        learnt: Vec::new(),
    };
    let r = tx.lock_all(ids).and_then(|()| f(&mut tx));
    let PgTx {
        tx: t,
        mut retry,
        learnt,
        ..
    } = tx;
    let r = match r {
        Ok(()) => t.commit().map_err(|e| {
            retry |= retryable(&e);
            pg(store, e)
        }),
        Err(e) => Err(e), // dropping `t` rolls the attempt back
    };
    (r, retry, learnt)
}

type Args = Vec<Box<dyn ToSql + Sync + Send>>;

fn params(args: &Args) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect()
}

fn where_clause(f: &IncidentFilter) -> (String, Args) {
    let mut conds = Vec::new();
    let mut args: Args = Vec::new();
    if let Some(s) = f.status {
        args.push(Box::new(s.as_str()));
        conds.push(format!("status = ${}", args.len()));
    }
    if let Some(p) = f.phase {
        args.push(Box::new(p.as_str()));
        conds.push(format!("phase = ${}", args.len()));
    }
    if let Some(l) = f.min_severity {
        args.push(Box::new(severity_rank(l)));
        conds.push(format!("severity >= ${}", args.len()));
    }
    if let Some(k) = f.kind {
        args.push(Box::new(k.as_str()));
        conds.push(format!("kind = ${}", args.len()));
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), args)
    }
}

/// One attempt of a write transaction.
struct PgTx<'a, 's> {
    tx: Transaction<'a>,
    store: &'s str,
    /// Set when the attempt failed on a conflict that running it again resolves.
    retry: bool,
    /// Lock ids [`CaseTx::lock_more`] asked for.
    learnt: Vec<i64>,
}

impl PgTx<'_, '_> {
    fn err(&mut self, e: postgres::Error) -> Error {
        self.retry |= retryable(&e);
        pg(self.store, e)
    }

    fn lock_all(&mut self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // `unnest` yields the (sorted) array in order, and the locks are taken in that order.
        let r = self.tx.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
            &[&ids],
        );
        r.map(drop).map_err(|e| self.err(e))
    }
}

/// The `(field, value)` pairs as two `BYTEA[]` parameters.
fn columns<'k>(keys: &[(&'k str, &'k str)]) -> (Vec<&'k [u8]>, Vec<&'k [u8]>) {
    keys.iter()
        .map(|(f, v)| (f.as_bytes(), v.as_bytes()))
        .unzip()
}

fn text(b: Vec<u8>) -> String {
    // Written from `&str`: always UTF-8. A row that is not cannot match a key and is ignored.
    String::from_utf8(b).unwrap_or_default()
}

impl CaseTx for PgTx<'_, '_> {
    fn lock_more(&mut self, names: &[String]) -> Result<()> {
        let mut ids: Vec<i64> = names.iter().map(|n| lock_id(n)).collect();
        ids.sort_unstable();
        ids.dedup();
        self.learnt.extend_from_slice(&ids);
        let r = self.tx.query_one(
            "SELECT COALESCE(bool_and(pg_try_advisory_xact_lock(k)), TRUE) \
             FROM unnest($1::bigint[]) AS k",
            &[&ids],
        );
        let got: bool = r.map(|r| r.get(0)).map_err(|e| self.err(e))?;
        if got {
            Ok(())
        } else {
            self.retry = true;
            Err(Error::Backend {
                store: self.store.to_owned(),
                message: "another node holds an entity of a held alert; trying again".into(),
            })
        }
    }

    fn linked_incident(&mut self, alert_id: i64) -> Result<Option<IncidentId>> {
        let r = self.tx.query_opt(
            "SELECT incident_id FROM incident_alerts WHERE alert_id = $1",
            &[&alert_id],
        );
        Ok(r.map_err(|e| self.err(e))?.map(|r| IncidentId(r.get(0))))
    }

    fn load(&mut self, id: IncidentId) -> Result<Option<String>> {
        let r = self.tx.query_opt(
            "SELECT doc FROM incidents WHERE id = $1 FOR UPDATE",
            &[&id.0],
        );
        Ok(r.map_err(|e| self.err(e))?.map(|r| r.get(0)))
    }

    fn candidates(&mut self, keys: &[(&str, &str)]) -> Result<Vec<EntityRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (fields, values) = columns(keys);
        // Sorted by incident before the rows are locked: every transaction locks
        // candidates in the same order.
        let r = self.tx.query(
            "SELECT e.incident_id, e.field, e.value, e.first_seen_us, e.last_seen_us, \
             e.alert_id, e.tactic, e.tactic_alert_id \
             FROM incident_entities e \
             JOIN unnest($1::bytea[], $2::bytea[]) AS k (field, value) \
               ON e.field = k.field AND e.value = k.value \
             JOIN incidents i ON i.id = e.incident_id \
             WHERE i.status = 'open' \
             ORDER BY e.incident_id FOR UPDATE OF i",
            &[&fields, &values],
        );
        Ok(r.map_err(|e| self.err(e))?
            .iter()
            .map(|r| EntityRow {
                incident: IncidentId(r.get(0)),
                field: text(r.get(1)),
                value: text(r.get(2)),
                first_seen_us: r.get(3),
                last_seen_us: r.get(4),
                alert_id: r.get(5),
                tactic: match (r.get::<_, Option<i64>>(6), r.get::<_, Option<i64>>(7)) {
                    (Some(t), Some(a)) => Some((t, a)),
                    _ => None,
                },
            })
            .collect())
    }

    fn create(&mut self, now_us: i64) -> Result<IncidentId> {
        let r = self.tx.query_one(
            "INSERT INTO incidents (status, phase, severity, kind, created_at_us, \
             updated_at_us, doc) VALUES ('open', '', 0, '', $1, $1, '{}') RETURNING id",
            &[&now_us],
        );
        Ok(IncidentId(r.map_err(|e| self.err(e))?.get(0)))
    }

    fn save(&mut self, row: &IncidentRow<'_>) -> Result<()> {
        let r = self.tx.execute(
            "UPDATE incidents SET status = $2, phase = $3, severity = $4, kind = $5, \
             created_at_us = $6, updated_at_us = $7, doc = $8 WHERE id = $1",
            &[
                &row.id.0,
                &row.status,
                &row.phase,
                &row.severity,
                &row.kind,
                &row.created_at_us,
                &row.updated_at_us,
                &row.doc,
            ],
        );
        r.map(drop).map_err(|e| self.err(e))
    }

    fn save_entities(&mut self, rows: &[EntityRow]) -> Result<()> {
        // One row per key (the last wins, as a replace would): `ON CONFLICT DO UPDATE` may
        // not touch a row twice in one statement.
        let mut unique: Vec<&EntityRow> = Vec::with_capacity(rows.len());
        for e in rows.iter().rev() {
            if !unique
                .iter()
                .any(|u| (u.incident, &u.field, &u.value) == (e.incident, &e.field, &e.value))
            {
                unique.push(e);
            }
        }
        let rows = unique;
        if rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = rows.iter().map(|e| e.incident.0).collect();
        let fields: Vec<&[u8]> = rows.iter().map(|e| e.field.as_bytes()).collect();
        let values: Vec<&[u8]> = rows.iter().map(|e| e.value.as_bytes()).collect();
        let first: Vec<i64> = rows.iter().map(|e| e.first_seen_us).collect();
        let last: Vec<i64> = rows.iter().map(|e| e.last_seen_us).collect();
        let alerts: Vec<i64> = rows.iter().map(|e| e.alert_id).collect();
        let tactic: Vec<Option<i64>> = rows.iter().map(|e| e.tactic.map(|t| t.0)).collect();
        let tactic_alert: Vec<Option<i64>> = rows.iter().map(|e| e.tactic.map(|t| t.1)).collect();
        let r = self.tx.execute(
            "INSERT INTO incident_entities (incident_id, field, value, first_seen_us, \
             last_seen_us, alert_id, tactic, tactic_alert_id) \
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bigint[], \
             $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[]) \
             ON CONFLICT (incident_id, field, value) DO UPDATE SET \
             first_seen_us = excluded.first_seen_us, last_seen_us = excluded.last_seen_us, \
             alert_id = excluded.alert_id, tactic = excluded.tactic, \
             tactic_alert_id = excluded.tactic_alert_id",
            &[
                &ids,
                &fields,
                &values,
                &first,
                &last,
                &alerts,
                &tactic,
                &tactic_alert,
            ],
        );
        r.map(drop).map_err(|e| self.err(e))
    }

    fn link_alert(&mut self, alert_id: i64, incident: IncidentId) -> Result<()> {
        let r = self.tx.execute(
            "INSERT INTO incident_alerts (alert_id, incident_id) VALUES ($1, $2) \
             ON CONFLICT (alert_id) DO NOTHING",
            &[&alert_id, &incident.0],
        );
        r.map(drop).map_err(|e| self.err(e))
    }

    fn hold(
        &mut self,
        alert_id: i64,
        time_us: i64,
        doc: &str,
        keys: &[(&str, &str)],
        max_held: usize,
    ) -> Result<()> {
        let (fields, values) = columns(keys);
        let max = max_held.min(i64::MAX as usize) as i64;
        let r = self
            .tx
            .execute(
                "DELETE FROM held_entities WHERE alert_id = $1",
                &[&alert_id],
            )
            .and_then(|_| {
                self.tx.execute(
                    "INSERT INTO held_alerts (alert_id, time_us, doc) VALUES ($1, $2, $3) \
                     ON CONFLICT (alert_id) DO UPDATE SET time_us = excluded.time_us, \
                     doc = excluded.doc",
                    &[&alert_id, &time_us, &doc],
                )
            })
            .and_then(|_| {
                self.tx.execute(
                    "INSERT INTO held_entities (field, value, alert_id) \
                     SELECT f, v, $3 FROM unnest($1::bytea[], $2::bytea[]) AS k (f, v) \
                     ON CONFLICT DO NOTHING",
                    &[&fields, &values, &alert_id],
                )
            })
            .and_then(|_| {
                self.tx.execute(
                    "DELETE FROM held_alerts WHERE alert_id IN (SELECT alert_id FROM \
                     held_alerts ORDER BY time_us DESC, alert_id DESC OFFSET $1)",
                    &[&max],
                )
            });
        r.map(drop).map_err(|e| self.err(e))
    }

    fn release_held(&mut self, alert_id: i64) -> Result<bool> {
        let r = self
            .tx
            .execute("DELETE FROM held_alerts WHERE alert_id = $1", &[&alert_id]);
        Ok(r.map_err(|e| self.err(e))? > 0)
    }

    fn held_sharing(
        &mut self,
        keys: &[(&str, &str)],
        lo_us: i64,
        hi_us: i64,
    ) -> Result<Vec<HeldRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (fields, values) = columns(keys);
        let r = self.tx.query(
            "SELECT h.alert_id, h.time_us, h.doc, e.field, e.value FROM held_entities e \
             JOIN unnest($1::bytea[], $2::bytea[]) AS k (field, value) \
               ON e.field = k.field AND e.value = k.value \
             JOIN held_alerts h ON h.alert_id = e.alert_id \
             WHERE h.time_us BETWEEN $3 AND $4",
            &[&fields, &values, &lo_us, &hi_us],
        );
        Ok(r.map_err(|e| self.err(e))?
            .iter()
            .map(|r| HeldRow {
                alert_id: r.get(0),
                time_us: r.get(1),
                doc: r.get(2),
                field: text(r.get(3)),
                value: text(r.get(4)),
            })
            .collect())
    }
}

fn migrate(c: &mut Client, schema: &str, store: &str) -> Result<()> {
    // The alert store's mechanism and lock: one migrator per schema at a time.
    crate::pg::migrate_component(c, schema, "cases", MIGRATIONS).map_err(|message| Error::Backend {
        store: store.to_owned(),
        message,
    })
}

// The version this build writes is the number of its migrations.
const _: () = assert!(MIGRATIONS.len() as i32 == PG_CASES_SCHEMA_VERSION);
