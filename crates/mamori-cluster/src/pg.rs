//! Alerts, kv blobs (settings, detection state) and their counts in PostgreSQL: the
//! [`AlertStore`] of the scale-out mode, with the embedded store's semantics (one shared suite,
//! `mamori_store::testsuite::alert_store_suite`, passes on both).
//!
//! * **Same merge, by construction**: validation, a new alert's fields and the dedup merge are
//!   `mamori_store::alert_rules`, the functions `SqliteAlertStore` uses.
//! * **Concurrent writers**: several detectors insert at once. An insert with a dedup key
//!   takes a transaction-scoped advisory lock on the key first, so two occurrences of one
//!   episode never create two alerts (SQLite gets this from its single writer).
//! * **Idempotent redelivery**: [`PgAlertStore::insert_alert_once`] records an occurrence id
//!   (e.g. `event seq|rule`) in the same transaction; the same occurrence again changes
//!   nothing. JetStream redelivers what a killed detector had not acknowledged: the alert
//!   count stays exact.
//! * **Migrations**: `schema_version` names the version of each component; migrations run
//!   in one transaction under an advisory lock, so nodes starting together do not race. A
//!   database newer than this build is refused.
//! * The synchronous `postgres` client runs on connection threads of its own: the trait is
//!   synchronous and is called from blocking threads and async tasks alike, and the client
//!   must never block inside a tokio runtime.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use mamori_event::{Level, RuleId};
use mamori_store::alert_rules;
use mamori_store::{
    Ack, Alert, AlertFilter, AlertId, AlertStatus, AlertStore, Error, InsertOutcome, NewAlert,
    Result,
};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};

/// Version of the state schema this build writes (`schema_version`, component `state`).
pub const PG_SCHEMA_VERSION: i32 = 1;

/// Migrations, in order: entry `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    rule_id TEXT NOT NULL,
    title TEXT NOT NULL,
    level INTEGER NOT NULL,
    status TEXT NOT NULL,
    event_time_us BIGINT,
    received_at_us BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL,
    count BIGINT NOT NULL,
    event_seqs TEXT NOT NULL,
    group_key TEXT,
    dedup_key TEXT,
    details TEXT NOT NULL,
    ack_by TEXT,
    ack_at_us BIGINT,
    ack_note TEXT
);
CREATE INDEX alerts_open_dedup ON alerts (dedup_key) WHERE status = 'open';
CREATE INDEX alerts_last_seen_level ON alerts (last_seen_us, level);
CREATE TABLE alert_occurrences (
    occurrence TEXT PRIMARY KEY,
    alert_id BIGINT NOT NULL,
    at_us BIGINT NOT NULL
);
CREATE TABLE kv (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
"];

const COLUMNS: &str = "id, rule_id, title, level, status, event_time_us, received_at_us, \
    last_seen_us, count, event_seqs, group_key, dedup_key, details, ack_by, ack_at_us, ack_note";

/// Connections kept open (each on its own thread).
const CONNECTIONS: usize = 4;

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

struct Conn {
    url: String,
    schema: String,
    client: Option<Client>,
}

impl Conn {
    /// The open connection, reconnecting after a failure.
    fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let mut c = Client::connect(&self.url, NoTls).map_err(pg)?;
            c.batch_execute(&format!("SET search_path TO \"{}\"", self.schema))
                .map_err(pg)?;
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}

/// PostgreSQL state store (see the module docs).
pub struct PgAlertStore {
    jobs: mpsc::Sender<Job>,
    schema: String,
}

impl std::fmt::Debug for PgAlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAlertStore")
            .field("schema", &self.schema)
            .finish()
    }
}

fn pg(e: postgres::Error) -> Error {
    Error::Backend {
        backend: "postgresql",
        message: e.to_string(),
    }
}

fn closed() -> Error {
    Error::Backend {
        backend: "postgresql",
        message: "the connection threads stopped".into(),
    }
}

/// Whether `s` is a schema name this store accepts (quoted into SQL, so checked strictly).
pub fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl PgAlertStore {
    /// Connects to `url` (`host=… user=… dbname=…` or `postgresql://…`), creates `schema` if
    /// needed and brings it to [`PG_SCHEMA_VERSION`].
    pub fn open(url: &str, schema: &str) -> Result<PgAlertStore> {
        if !valid_schema(schema) {
            return Err(Error::InvalidRequest(format!(
                "postgres schema {schema:?}: use 1–63 lower-case letters, digits and _"
            )));
        }
        // Fail now, with the server's own words, rather than at the first alert.
        let mut first = Conn {
            url: url.to_owned(),
            schema: schema.to_owned(),
            client: None,
        };
        migrate(first.client()?, schema)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..CONNECTIONS {
            let rx = Arc::clone(&rx);
            let mut conn = if i == 0 {
                std::mem::replace(
                    &mut first,
                    Conn {
                        url: String::new(),
                        schema: String::new(),
                        client: None,
                    },
                )
            } else {
                Conn {
                    url: url.to_owned(),
                    schema: schema.to_owned(),
                    client: None,
                }
            };
            std::thread::Builder::new()
                .name(format!("mamori-pg-{i}"))
                .spawn(move || loop {
                    let job = {
                        let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                        rx.recv()
                    };
                    match job {
                        Ok(job) => job(&mut conn),
                        Err(_) => break, // the store was dropped
                    }
                })
                .map_err(|e| Error::Backend {
                    backend: "postgresql",
                    message: format!("cannot start a connection thread: {e}"),
                })?;
        }
        Ok(PgAlertStore {
            jobs: tx,
            schema: schema.to_owned(),
        })
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs `f` on a connection thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |c: &mut Conn| {
                let r = c.client().and_then(f);
                let _ = tx.send(r);
            }))
            .map_err(|_| closed())?;
        rx.recv().map_err(|_| closed())?
    }

    /// The alert an occurrence was recorded as (see [`PgAlertStore::insert_alert_once`]).
    pub fn occurrence_alert(&self, occurrence: &str) -> Result<Option<AlertId>> {
        let occ = occurrence.to_owned();
        self.call(move |c| {
            Ok(c.query_opt(
                "SELECT alert_id FROM alert_occurrences WHERE occurrence = $1",
                &[&occ],
            )
            .map_err(pg)?
            .map(|r| AlertId(r.get(0))))
        })
    }

    /// [`AlertStore::insert_alert`], at most once per `occurrence` (an id the caller derives
    /// from what caused the alert, e.g. `event seq|rule`): `Ok(None)` when that occurrence was
    /// recorded before (a redelivered message), and nothing changes.
    pub fn insert_alert_once(
        &self,
        a: &NewAlert,
        occurrence: &str,
    ) -> Result<Option<InsertOutcome>> {
        alert_rules::validate(a)?;
        let (a, occ) = (a.clone(), occurrence.to_owned());
        self.call(move |c| insert(c, &a, Some(&occ)))
    }

    /// Drops the schema and everything in it (tests clean up with it).
    pub fn drop_schema(self) -> Result<()> {
        let schema = self.schema.clone();
        self.call(move |c| {
            c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .map_err(pg)
        })
    }

    /// Every kv entry whose key starts with `prefix`, by key.
    pub fn kv_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let p = prefix.to_owned();
        self.call(move |c| {
            Ok(c.query(
                "SELECT key, value FROM kv WHERE starts_with(key, $1) ORDER BY key",
                &[&p],
            )
            .map_err(pg)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    /// Rows in a table of this schema's (`alerts`, `alert_occurrences`, `kv`), for status.
    pub fn count(&self, table: &'static str) -> Result<i64> {
        if !matches!(table, "alerts" | "alert_occurrences" | "kv") {
            return Err(Error::InvalidRequest(format!("unknown table {table}")));
        }
        self.call(move |c| {
            c.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                .map(|r| r.get::<_, i64>(0))
                .map_err(pg)
        })
    }
}

fn migrate(c: &mut Client, schema: &str) -> Result<()> {
    migrate_component(c, schema, "state", MIGRATIONS).map_err(|message| Error::Backend {
        backend: "postgresql",
        message,
    })
}

/// Brings `component`'s tables in `schema` to the last of `migrations` (entry `i` takes it from
/// version `i` to `i + 1`), recorded in the schema's `schema_version` table, under one
/// advisory lock per schema shared by every component: one migrator at a time. A schema newer
/// than this build is refused.
pub(crate) fn migrate_component(
    c: &mut Client,
    schema: &str,
    component: &str,
    migrations: &[&str],
) -> std::result::Result<(), String> {
    let e = |e: postgres::Error| e.to_string();
    let latest = migrations.len() as i32;
    let mut tx = c.transaction().map_err(e)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("mamori-migrate:{schema}")],
    )
    .map_err(e)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         SET LOCAL search_path TO \"{schema}\";
         CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL);"
    ))
    .map_err(e)?;
    let found: i32 = tx
        .query_opt(
            "SELECT version FROM schema_version WHERE component = $1",
            &[&component],
        )
        .map_err(e)?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if !(0..=latest).contains(&found) {
        return Err(format!(
            "schema {schema:?} is at {component} version {found}; this build knows versions up to {latest} (upgrade mamori)"
        ));
    }
    for m in &migrations[found as usize..] {
        tx.batch_execute(m).map_err(e)?;
    }
    tx.execute(
        "INSERT INTO schema_version (component, version) VALUES ($1, $2) \
         ON CONFLICT (component) DO UPDATE SET version = excluded.version",
        &[&component, &latest],
    )
    .map_err(e)?;
    tx.commit().map_err(e)
}

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn bad(msg: String) -> Error {
    Error::Backend {
        backend: "postgresql",
        message: format!("stored alert does not decode: {msg}"),
    }
}

fn from_us(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| bad(format!("time {v} out of range")))
}

fn level_rank(l: Level) -> i32 {
    Level::ALL.iter().position(|x| *x == l).unwrap_or(0) as i32
}

fn level_of(rank: i32) -> Result<Level> {
    usize::try_from(rank)
        .ok()
        .and_then(|i| Level::ALL.get(i))
        .copied()
        .ok_or_else(|| bad(format!("level {rank}")))
}

fn row_to_alert(r: &Row) -> Result<Alert> {
    let status: String = r.get(4);
    let seqs: String = r.get(9);
    let details: String = r.get(12);
    let ack = match r.get::<_, Option<String>>(13) {
        None => None,
        Some(by) => Some(Ack {
            by,
            at: from_us(r.get::<_, Option<i64>>(14).unwrap_or(0))?,
            note: r.get::<_, Option<String>>(15).unwrap_or_default(),
        }),
    };
    Ok(Alert {
        id: AlertId(r.get(0)),
        rule_id: RuleId(r.get::<_, String>(1).into()),
        title: r.get(2),
        level: level_of(r.get(3))?,
        status: AlertStatus::parse(&status).ok_or_else(|| bad(format!("status {status}")))?,
        event_time: r.get::<_, Option<i64>>(5).map(from_us).transpose()?,
        received_at: from_us(r.get(6))?,
        last_seen: from_us(r.get(7))?,
        count: r.get::<_, i64>(8) as u64,
        event_seqs: serde_json::from_str(&seqs).map_err(|e| bad(e.to_string()))?,
        group_key: r.get(10),
        dedup_key: r.get(11),
        details: serde_json::from_str(&details).map_err(|e| bad(e.to_string()))?,
        ack,
    })
}

fn insert(c: &mut Client, a: &NewAlert, occurrence: Option<&str>) -> Result<Option<InsertOutcome>> {
    let mut tx = c.transaction().map_err(pg)?;
    // One writer per dedup key (or occurrence) at a time, across every node.
    if let Some(lock) = a.dedup_key.as_deref().or(occurrence) {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))",
            &[&lock],
        )
        .map_err(pg)?;
    }
    if let Some(occ) = occurrence {
        let seen = tx
            .query_opt(
                "SELECT alert_id FROM alert_occurrences WHERE occurrence = $1",
                &[&occ],
            )
            .map_err(pg)?;
        if seen.is_some() {
            return Ok(None); // dropping the transaction rolls it back
        }
    }
    let outcome = 'done: {
        if let Some(key) = &a.dedup_key {
            let existing = tx
                .query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM alerts WHERE status = 'open' AND dedup_key = $1 \
                         ORDER BY id DESC LIMIT 1 FOR UPDATE"
                    ),
                    &[key],
                )
                .map_err(pg)?;
            if let Some(row) = existing {
                let mut x = row_to_alert(&row)?;
                alert_rules::merge(&mut x, a);
                tx.execute(
                    "UPDATE alerts SET count = $2, last_seen_us = $3, event_time_us = $4, \
                     event_seqs = $5, level = $6, details = $7 WHERE id = $1",
                    &[
                        &x.id.0,
                        &(x.count as i64),
                        &us(x.last_seen),
                        &x.event_time.map(us),
                        &serde_json::to_string(&x.event_seqs).expect("seqs serialise"),
                        &level_rank(x.level),
                        &x.details.to_string(),
                    ],
                )
                .map_err(pg)?;
                break 'done InsertOutcome::Merged(x.id);
            }
        }
        let x = alert_rules::new_alert(AlertId(0), a);
        let row = tx
            .query_one(
                "INSERT INTO alerts (rule_id, title, level, status, event_time_us, received_at_us, \
                 last_seen_us, count, event_seqs, group_key, dedup_key, details) \
                 VALUES ($1, $2, $3, 'open', $4, $5, $5, 1, $6, $7, $8, $9) RETURNING id",
                &[
                    &&*x.rule_id.0,
                    &x.title,
                    &level_rank(x.level),
                    &x.event_time.map(us),
                    &us(x.received_at),
                    &serde_json::to_string(&x.event_seqs).expect("seqs serialise"),
                    &x.group_key,
                    &x.dedup_key,
                    &x.details.to_string(),
                ],
            )
            .map_err(pg)?;
        InsertOutcome::Created(AlertId(row.get(0)))
    };
    if let Some(occ) = occurrence {
        tx.execute(
            "INSERT INTO alert_occurrences (occurrence, alert_id, at_us) VALUES ($1, $2, $3)",
            &[&occ, &outcome.id().0, &us(Utc::now())],
        )
        .map_err(pg)?;
    }
    tx.commit().map_err(pg)?;
    Ok(Some(outcome))
}

impl AlertStore for PgAlertStore {
    fn insert_alert(&self, a: &NewAlert) -> Result<InsertOutcome> {
        alert_rules::validate(a)?;
        let a = a.clone();
        self.call(move |c| {
            insert(c, &a, None).map(|o| o.expect("without an occurrence id an insert always lands"))
        })
    }

    fn list_alerts(&self, f: &AlertFilter) -> Result<Vec<Alert>> {
        let f = f.clone();
        self.call(move |c| {
            let mut sql = format!("SELECT {COLUMNS} FROM alerts WHERE TRUE");
            let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            if let Some(l) = f.min_level {
                args.push(Box::new(level_rank(l)));
                sql += &format!(" AND level >= ${}", args.len());
            }
            if let Some(s) = f.status {
                args.push(Box::new(s.as_str().to_owned()));
                sql += &format!(" AND status = ${}", args.len());
            }
            if let Some(t) = f.since {
                args.push(Box::new(us(t)));
                sql += &format!(" AND last_seen_us >= ${}", args.len());
            }
            if let Some(r) = &f.rule_id {
                args.push(Box::new(r.0.to_string()));
                sql += &format!(" AND rule_id = ${}", args.len());
            }
            args.push(Box::new(f.limit.min(i64::MAX as usize) as i64));
            args.push(Box::new(f.offset.min(i64::MAX as usize) as i64));
            sql += &format!(
                " ORDER BY id DESC LIMIT ${} OFFSET ${}",
                args.len() - 1,
                args.len()
            );
            let params: Vec<&(dyn ToSql + Sync)> =
                args.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
            c.query(&sql, &params)
                .map_err(pg)?
                .iter()
                .map(row_to_alert)
                .collect()
        })
    }

    fn get_alert(&self, id: AlertId) -> Result<Option<Alert>> {
        self.call(move |c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM alerts WHERE id = $1"),
                &[&id.0],
            )
            .map_err(pg)?
            .as_ref()
            .map(row_to_alert)
            .transpose()
        })
    }

    fn acknowledge(&self, id: AlertId, ack: &Ack) -> Result<Alert> {
        let ack = ack.clone();
        self.call(move |c| {
            // 0 rows: unknown id, or already acknowledged (the first ack wins).
            c.execute(
                "UPDATE alerts SET status = 'acknowledged', ack_by = $2, ack_at_us = $3, \
                 ack_note = $4 WHERE id = $1 AND status = 'open'",
                &[&id.0, &ack.by, &us(ack.at), &ack.note],
            )
            .map_err(pg)?;
            Ok(())
        })?;
        self.get_alert(id)?.ok_or_else(|| Error::NotFound {
            what: "alert",
            id: id.to_string(),
        })
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.call(move |c| {
            Ok(c.query_opt("SELECT value FROM kv WHERE key = $1", &[&key])
                .map_err(pg)?
                .map(|r| r.get(0)))
        })
    }

    fn kv_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.call(move |c| {
            c.execute(
                "INSERT INTO kv (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn kv_delete(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        self.call(move |c| {
            Ok(c.execute("DELETE FROM kv WHERE key = $1", &[&key])
                .map_err(pg)?
                > 0)
        })
    }

    fn kv_compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<bool> {
        let (key, expected, new) = (key.to_owned(), expected.map(<[u8]>::to_vec), new.to_vec());
        // One statement each: atomic against every other node (a concurrent insert of the
        // same key makes `ON CONFLICT DO NOTHING` affect no row).
        self.call(move |c| {
            let n = match &expected {
                None => c.execute(
                    "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[&key, &new],
                ),
                Some(old) => c.execute(
                    "UPDATE kv SET value = $3 WHERE key = $1 AND value = $2",
                    &[&key, old, &new],
                ),
            }
            .map_err(pg)?;
            Ok(n == 1)
        })
    }

    fn count_alerts_by_level_hour(
        &self,
        start: DateTime<Utc>,
        hours: u32,
    ) -> Result<Vec<(Level, u32, u64)>> {
        const HOUR_US: i64 = 3_600_000_000;
        let from = us(start);
        let to = from.saturating_add(i64::from(hours) * HOUR_US);
        self.call(move |c| {
            c.query(
                "SELECT level, (last_seen_us - $1) / $3 AS h, COUNT(*) FROM alerts \
                 WHERE last_seen_us >= $1 AND last_seen_us < $2 GROUP BY level, h",
                &[&from, &to, &HOUR_US],
            )
            .map_err(pg)?
            .iter()
            .map(|r| {
                Ok((
                    level_of(r.get(0))?,
                    r.get::<_, i64>(1) as u32,
                    r.get::<_, i64>(2) as u64,
                ))
            })
            .collect()
        })
    }
}

// The version this build writes is the number of its migrations.
const _: () = assert!(MIGRATIONS.len() as i32 == PG_SCHEMA_VERSION);
