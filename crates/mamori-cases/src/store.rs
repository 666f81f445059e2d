//! `CaseStore`: incidents in SQLite (WAL), one transaction per change.
//!
//! Layout (schema version in `PRAGMA user_version`, upgraded by [`MIGRATIONS`] in order):
//! - `incidents`: one row per incident; the whole [`Incident`] as JSON in `doc`, plus the
//!   columns lists filter and sort on (status, phase, severity rank, kind, times).
//! - `incident_entities`: the grouping state: per incident and normalised entity, when it was
//!   seen, by which alert, and the furthest ATT&CK tactic seen with it; indexed by entity, so
//!   an alert finds its candidate incidents without reading any document.
//! - `incident_alerts`: which incident each alert went to (an alert is linked at most once).
//! - `held_alerts` / `held_entities` (schema 2): low alerts that opened no incident, kept for
//!   the grouping window so that an incident opened later by a stronger alert sharing their
//!   entities takes them in (the spray before the successful login); bounded by
//!   [`MAX_HELD_ALERTS`], the oldest dropped first.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use mamori_event::Level;
use rusqlite::{
    params, params_from_iter, Connection, OptionalExtension, Transaction, TransactionBehavior,
};
use serde::{Deserialize, Serialize};

use crate::classify::Tactic;
use crate::error::{Error, Result};
use crate::grouping::{
    AlertInput, Decision, EntityState, Grouper, GrouperConfig, Key, OpenIncident,
};
use crate::model::{
    ActionEntry, Entity, Incident, IncidentFilter, IncidentId, IncidentSummary, Phase,
};
use crate::playbook::Playbooks;

#[cfg(test)]
mod tests;

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

/// Largest page of [`CaseStore::list`].
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
/// More entities than this on one alert is a reader bug or an attack on the grouper.
const MAX_ALERT_ENTITIES: usize = 256;
/// Most held low alerts kept; past it the oldest (by alert time) are forgotten. Internet
/// noise is one low alert per source and day, so this holds days of it on a busy site.
pub const MAX_HELD_ALERTS: usize = 20_000;

/// A held alert as `held_alerts.doc` keeps it.
#[derive(Serialize, Deserialize)]
struct HeldDoc {
    rule_id: String,
    title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title_ja: Option<String>,
    level: String,
    entities: Vec<(String, String)>,
    tags: Vec<String>,
    event_seqs: Vec<u64>,
}

/// What ingesting an alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Joined,
    /// The alert was ingested before (a deduplicated alert counted again): its new event
    /// sequence numbers, if any, were added; nothing else changed.
    AlreadyLinked,
}

/// What [`CaseStore::group_alert`] did with an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouped {
    /// Joined, created or already linked, with the explanation.
    Incident(IncidentId, Outcome, String),
    /// A low alert that shares nothing with an open incident: no incident, and why.
    Held(String),
}

/// Incidents and their grouping state in one SQLite file. `Send + Sync`: share it in an `Arc`.
pub struct CaseStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    grouper: Grouper,
    playbooks: Playbooks,
    max_held: usize,
}

impl std::fmt::Debug for CaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl CaseStore {
    /// Opens (creating and migrating if needed) the database at `path`, e.g.
    /// `<data-dir>/cases.sqlite`, with the default grouping and the built-in playbooks.
    pub fn open(path: &Path) -> Result<CaseStore> {
        let conn = Connection::open(path).map_err(db(path))?;
        CaseStore::init(conn, path)
    }

    /// A private in-memory database (tests, `--dry-run`).
    pub fn open_in_memory() -> Result<CaseStore> {
        let path = Path::new(":memory:");
        CaseStore::init(Connection::open_in_memory().map_err(db(path))?, path)
    }

    /// Replaces the grouping settings (window, noisy values).
    pub fn with_grouper_config(mut self, config: GrouperConfig) -> CaseStore {
        self.grouper = Grouper::new(config);
        self
    }

    /// Replaces the playbooks (for site-specific ones).
    pub fn with_playbooks(mut self, playbooks: Playbooks) -> CaseStore {
        self.playbooks = playbooks;
        self
    }

    /// Keeps at most `n` held low alerts (default [`MAX_HELD_ALERTS`]).
    pub fn with_max_held(mut self, n: usize) -> CaseStore {
        self.max_held = n;
        self
    }

    /// How many low alerts are held, waiting for an incident that shares their entities.
    pub fn held_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM held_alerts", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(n as u64)
    }

    pub fn playbooks(&self) -> &Playbooks {
        &self.playbooks
    }

    fn init(mut conn: Connection, path: &Path) -> Result<CaseStore> {
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
        Ok(CaseStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            grouper: Grouper::default(),
            playbooks: Playbooks::builtin()?,
            max_held: MAX_HELD_ALERTS,
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

    /// Like [`CaseStore::ingest_alert`], but an alert below the grouping's `open_min_level`
    /// (default `medium`) that shares nothing with an open incident opens none: it is
    /// [`Grouped::Held`] with the sentence that says why (nothing is written). What a server
    /// does with its alert stream.
    pub fn group_alert(&self, alert: &AlertInput, now: DateTime<Utc>) -> Result<Grouped> {
        self.ingest(alert, now, true)
    }

    /// Groups the alert into an open incident or creates one. `now` is the wall-clock time
    /// recorded as `created_at`/`updated_at`; windows use the alert's own time.
    pub fn ingest_alert(
        &self,
        alert: &AlertInput,
        now: DateTime<Utc>,
    ) -> Result<(IncidentId, Outcome, String)> {
        match self.ingest(alert, now, false)? {
            Grouped::Incident(id, o, why) => Ok((id, o, why)),
            Grouped::Held(why) => Err(Error::Invalid(why)),
        }
    }

    fn ingest(&self, alert: &AlertInput, now: DateTime<Utc>, hold_low: bool) -> Result<Grouped> {
        if alert.title.trim().is_empty() {
            return Err(Error::Invalid("alert title must not be empty".into()));
        }
        if alert.entities.len() > MAX_ALERT_ENTITIES {
            return Err(Error::Invalid(format!(
                "alert {} has {} entities, at most {MAX_ALERT_ENTITIES} are accepted",
                alert.alert_id,
                alert.entities.len()
            )));
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err())?;

        let linked: Option<i64> = tx
            .query_row(
                "SELECT incident_id FROM incident_alerts WHERE alert_id = ?1",
                [alert.alert_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        if let Some(id) = linked {
            let id = IncidentId(id);
            let mut inc = self.load(&tx, id)?;
            if inc.add_events(&alert.event_seqs, now) {
                self.save(&tx, &inc)?;
            }
            tx.commit().map_err(self.err())?;
            let because = format!(
                "alert {} is already linked to incident {id}",
                alert.alert_id
            );
            return Ok(Grouped::Incident(id, Outcome::AlreadyLinked, because));
        }

        // The alert's usable entities, normalised once for the lookups below.
        let (keys, _) = self.grouper.keys(alert);
        let candidates = self.candidates(&tx, &keys)?;
        let entities = self.entities_of(alert);
        let (inc, mut state, outcome, because) = match self.grouper.decide(alert, &candidates) {
            Decision::Join { incident, because } => {
                let mut inc = self.load(&tx, incident)?;
                inc.add_alert(alert, entities, because.clone(), now, &self.playbooks);
                let state = candidates
                    .into_iter()
                    .find(|c| c.id == incident)
                    .expect("the grouper joins only a candidate it was given");
                (inc, state, Outcome::Joined, because)
            }
            Decision::New { because } if hold_low && !self.grouper.opens_incident(alert.level) => {
                self.hold(&tx, alert, &keys)?;
                tx.commit().map_err(self.err())?;
                return Ok(Grouped::Held(self.grouper.held_because(alert, &because)));
            }
            Decision::New { because } => {
                tx.execute(
                    "INSERT INTO incidents (status, phase, severity, kind, created_at_us, \
                     updated_at_us, doc) VALUES ('open', '', 0, '', ?1, ?1, '{}')",
                    [now.timestamp_micros()],
                )
                .map_err(self.err())?;
                let id = IncidentId(tx.last_insert_rowid());
                let inc = Incident::new(id, alert, entities, because.clone(), now, &self.playbooks);
                let state = OpenIncident {
                    id,
                    entities: Vec::new(),
                };
                (inc, state, Outcome::Created, because)
            }
        };
        let mut inc = inc;
        self.grouper.absorb(&mut state, alert);
        tx.execute(
            "INSERT INTO incident_alerts (alert_id, incident_id) VALUES (?1, ?2)",
            params![alert.alert_id, inc.id.0],
        )
        .map_err(self.err())?;
        // A held alert may already be this one (a low alert counted again after it was held).
        tx.execute(
            "DELETE FROM held_alerts WHERE alert_id = ?1",
            [alert.alert_id],
        )
        .map_err(self.err())?;
        let taken = self.take_held(&tx, alert, &keys, &mut inc, &mut state, now)?;
        self.save(&tx, &inc)?;
        self.save_entities(&tx, &state)?;
        tx.commit().map_err(self.err())?;
        let because = if taken.is_empty() {
            because
        } else {
            format!(
                "{because}; took in held low alert(s) {} sharing its entities",
                taken
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Ok(Grouped::Incident(inc.id, outcome, because))
    }

    /// Keeps a low alert that opened no incident (replacing an earlier copy of it), then
    /// trims the oldest past [`MAX_HELD_ALERTS`].
    fn hold(&self, tx: &Transaction<'_>, alert: &AlertInput, keys: &[Key]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let doc = serde_json::to_string(&HeldDoc {
            rule_id: alert.rule_id.0.to_string(),
            title: alert.title.clone(),
            title_ja: alert.title_ja.clone(),
            level: alert.level.as_str().to_owned(),
            entities: alert.entities.clone(),
            tags: alert.tags.clone(),
            event_seqs: alert.event_seqs.clone(),
        })
        .expect("a held alert always serialises");
        tx.execute(
            "INSERT OR REPLACE INTO held_alerts (alert_id, time_us, doc) VALUES (?1, ?2, ?3)",
            params![alert.alert_id, alert.time.timestamp_micros(), doc],
        )
        .map_err(self.err())?;
        let mut stmt = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO held_entities (field, value, alert_id) VALUES (?1, ?2, ?3)",
            )
            .map_err(self.err())?;
        for k in keys {
            stmt.execute(params![k.field, k.value, alert.alert_id])
                .map_err(self.err())?;
        }
        tx.execute(
            "DELETE FROM held_alerts WHERE alert_id IN (SELECT alert_id FROM held_alerts \
             ORDER BY time_us DESC, alert_id DESC LIMIT -1 OFFSET ?1)",
            [self.max_held as i64],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// Moves into `inc` the held alerts that share an entity with `alert` and lie within the
    /// grouping window of its time; returns their ids.
    fn take_held(
        &self,
        tx: &Transaction<'_>,
        alert: &AlertInput,
        keys: &[Key],
        inc: &mut Incident,
        state: &mut OpenIncident,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        let w = self.grouper.window();
        let lo = alert
            .time
            .checked_sub_signed(w)
            .map_or(i64::MIN, |t| t.timestamp_micros());
        let hi = alert
            .time
            .checked_add_signed(w)
            .map_or(i64::MAX, |t| t.timestamp_micros());
        let mut found: Vec<(i64, i64, String, String)> = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT h.alert_id, h.time_us, h.doc FROM held_entities e \
                     JOIN held_alerts h ON h.alert_id = e.alert_id \
                     WHERE e.field = ?1 AND e.value = ?2 AND h.time_us BETWEEN ?3 AND ?4",
                )
                .map_err(self.err())?;
            for k in keys {
                let rows = stmt
                    .query_map(params![k.field, k.value, lo, hi], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    })
                    .map_err(self.err())?;
                for row in rows {
                    let (id, t, doc) = row.map_err(self.err())?;
                    if id != alert.alert_id && !found.iter().any(|f| f.0 == id) {
                        found.push((id, t, doc, k.shown.clone()));
                    }
                }
            }
        }
        found.sort_by_key(|f| (f.1, f.0));
        let mut taken = Vec::new();
        for (id, t, doc, shown) in found {
            tx.execute("DELETE FROM held_alerts WHERE alert_id = ?1", [id])
                .map_err(self.err())?;
            // A held copy that no longer reads (an older build's) is dropped, not fatal.
            let Ok(h) = serde_json::from_str::<HeldDoc>(&doc) else {
                continue;
            };
            let (Some(level), Ok(time)) = (Level::parse(&h.level), from_us(t)) else {
                continue;
            };
            let held = AlertInput {
                alert_id: id,
                rule_id: mamori_event::RuleId(h.rule_id.into()),
                title: h.title,
                title_ja: h.title_ja,
                level,
                time,
                entities: h.entities,
                tags: h.tags,
                event_seqs: h.event_seqs,
            };
            let because = format!(
                "held low alert joined when alert {} grouped: {shown} shared within the window",
                alert.alert_id
            );
            let entities = self.entities_of(&held);
            inc.add_alert(&held, entities, because, now, &self.playbooks);
            self.grouper.absorb(state, &held);
            tx.execute(
                "INSERT OR IGNORE INTO incident_alerts (alert_id, incident_id) VALUES (?1, ?2)",
                params![id, inc.id.0],
            )
            .map_err(self.err())?;
            taken.push(id);
        }
        Ok(taken)
    }

    /// The alert's usable entities as the incident shows them (original spelling).
    fn entities_of(&self, alert: &AlertInput) -> Vec<Entity> {
        alert
            .entities
            .iter()
            .filter(|(f, v)| !f.trim().is_empty() && !self.grouper.is_noisy(v))
            .map(|(f, v)| Entity {
                field: f.trim().to_owned(),
                value: v.trim().to_owned(),
            })
            .collect()
    }

    /// Open incidents sharing one of the alert's entities, with only the shared entities.
    fn candidates(&self, tx: &Transaction<'_>, keys: &[Key]) -> Result<Vec<OpenIncident>> {
        let mut stmt = tx
            .prepare_cached(
                "SELECT e.incident_id, e.first_seen_us, e.last_seen_us, e.alert_id, e.tactic, \
                 e.tactic_alert_id FROM incident_entities e JOIN incidents i ON i.id = e.incident_id \
                 WHERE i.status = 'open' AND e.field = ?1 AND e.value = ?2",
            )
            .map_err(self.err())?;
        let mut out: Vec<OpenIncident> = Vec::new();
        for k in keys {
            let rows = stmt
                .query_map(params![k.field, k.value], |r| {
                    let tactic = match (r.get::<_, Option<i64>>(4)?, r.get::<_, Option<i64>>(5)?) {
                        (Some(t), Some(a)) => Tactic::from_index(t).map(|t| (t, a)),
                        _ => None,
                    };
                    Ok((
                        IncidentId(r.get(0)?),
                        EntityState {
                            field: k.field.clone(),
                            value: k.value.clone(),
                            first_seen: from_us(r.get(1)?)?,
                            last_seen: from_us(r.get(2)?)?,
                            alert_id: r.get(3)?,
                            tactic,
                        },
                    ))
                })
                .map_err(self.err())?;
            for row in rows {
                let (id, e) = row.map_err(self.err())?;
                match out.iter_mut().find(|o| o.id == id) {
                    Some(o) => o.entities.push(e),
                    None => out.push(OpenIncident {
                        id,
                        entities: vec![e],
                    }),
                }
            }
        }
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    fn save_entities(&self, tx: &Transaction<'_>, state: &OpenIncident) -> Result<()> {
        let mut stmt = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO incident_entities (incident_id, field, value, \
                 first_seen_us, last_seen_us, alert_id, tactic, tactic_alert_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(self.err())?;
        for e in &state.entities {
            stmt.execute(params![
                state.id.0,
                e.field,
                e.value,
                e.first_seen.timestamp_micros(),
                e.last_seen.timestamp_micros(),
                e.alert_id,
                e.tactic.map(|(t, _)| t.index()),
                e.tactic.map(|(_, a)| a),
            ])
            .map_err(self.err())?;
        }
        Ok(())
    }

    fn load(&self, tx: &Transaction<'_>, id: IncidentId) -> Result<Incident> {
        let doc: Option<String> = tx
            .query_row("SELECT doc FROM incidents WHERE id = ?1", [id.0], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        let doc = doc.ok_or(Error::NotFound(id))?;
        self.decode(id, &doc)
    }

    fn decode(&self, id: IncidentId, doc: &str) -> Result<Incident> {
        let mut inc: Incident = serde_json::from_str(doc).map_err(|e| Error::Corrupt {
            path: self.path.clone(),
            id,
            reason: e.to_string(),
        })?;
        inc.id = id;
        Ok(inc)
    }

    fn save(&self, tx: &Transaction<'_>, inc: &Incident) -> Result<()> {
        let doc = serde_json::to_string(inc).expect("an incident always serialises");
        tx.execute(
            "UPDATE incidents SET status = ?2, phase = ?3, severity = ?4, kind = ?5, \
             created_at_us = ?6, updated_at_us = ?7, doc = ?8 WHERE id = ?1",
            params![
                inc.id.0,
                inc.status.as_str(),
                inc.phase.as_str(),
                level_rank(inc.severity),
                inc.kind.as_str(),
                inc.created_at.timestamp_micros(),
                inc.updated_at.timestamp_micros(),
                doc,
            ],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// Loads, changes and writes back one incident in one transaction; returns the result.
    fn update(
        &self,
        id: IncidentId,
        f: impl FnOnce(&mut Incident) -> Result<()>,
    ) -> Result<Incident> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err())?;
        let mut inc = self.load(&tx, id)?;
        f(&mut inc)?;
        self.save(&tx, &inc)?;
        tx.commit().map_err(self.err())?;
        Ok(inc)
    }

    pub fn get(&self, id: IncidentId) -> Result<Incident> {
        let conn = self.conn();
        let doc: Option<String> = conn
            .query_row("SELECT doc FROM incidents WHERE id = ?1", [id.0], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        self.decode(id, &doc.ok_or(Error::NotFound(id))?)
    }

    /// Incidents matching `filter`, most recently updated first.
    pub fn list(&self, filter: &IncidentFilter) -> Result<Vec<IncidentSummary>> {
        let (cond, args) = where_clause(filter);
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT) as i64;
        let offset = filter.offset.unwrap_or(0).min(i64::MAX as usize) as i64;
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
        let mut out = Vec::new();
        for row in rows {
            let (id, doc) = row.map_err(self.err())?;
            out.push(IncidentSummary::from(&self.decode(id, &doc)?));
        }
        Ok(out)
    }

    /// How many incidents match `filter` (ignoring its limit and offset), for paging.
    pub fn count(&self, filter: &IncidentFilter) -> Result<u64> {
        let (cond, args) = where_clause(filter);
        let conn = self.conn();
        let n: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM incidents{cond}"),
                params_from_iter(args),
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(n as u64)
    }

    /// Moves to another phase (see [`Phase`]): forward freely, back with a reason (reopens a
    /// closed incident). Creates the new phase's tasks.
    pub fn set_phase(
        &self,
        id: IncidentId,
        to: Phase,
        by: &str,
        why: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Incident> {
        self.update(id, |inc| inc.set_phase(to, by, why, now, &self.playbooks))
    }

    /// Sets (`Some`) or clears (`None`) the assignee.
    pub fn assign(
        &self,
        id: IncidentId,
        who: Option<&str>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Incident> {
        self.update(id, |inc| inc.assign(who, by, now))
    }

    pub fn add_note(
        &self,
        id: IncidentId,
        by: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Incident> {
        self.update(id, |inc| inc.add_note(by, text, now))
    }

    pub fn complete_task(
        &self,
        id: IncidentId,
        task_id: u32,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Incident> {
        self.update(id, |inc| inc.complete_task(task_id, by, now))
    }

    /// Closes with lessons learned (required), moving to post-incident if not there yet.
    pub fn close(
        &self,
        id: IncidentId,
        by: &str,
        lessons: &str,
        now: DateTime<Utc>,
    ) -> Result<Incident> {
        self.update(id, |inc| inc.close(by, lessons, now, &self.playbooks))
    }

    /// Records a response action or notification carried out for the incident.
    pub fn record_action(&self, id: IncidentId, entry: ActionEntry) -> Result<Incident> {
        self.update(id, |inc| inc.record_action(entry))
    }

    /// Adds a reference to sealed evidence (vault entry, bundle path, hash).
    pub fn add_evidence(
        &self,
        id: IncidentId,
        reference: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Incident> {
        self.update(id, |inc| inc.add_evidence(reference, by, now))
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
        args.push(Value::Integer(level_rank(l)));
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

fn from_us(v: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or(rusqlite::Error::IntegralValueOutOfRange(0, v))
}

fn level_rank(l: Level) -> i64 {
    Level::ALL.iter().position(|x| *x == l).unwrap_or(0) as i64
}
