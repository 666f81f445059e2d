//! `CaseStore`: incidents over a [`CaseBackend`], one transaction per change.
//!
//! The store decides (grouping, held low alerts, the phase machine on [`Incident`]); the
//! backend only reads and writes rows ([`crate::backend`]). SQLite is the embedded default
//! ([`CaseStore::open`]); PostgreSQL (`mamori-cluster`) plugs in with
//! [`CaseStore::with_backend`]. Both pass [`crate::testsuite`].
//!
//! Held low alerts: low alerts that opened no incident are kept for the grouping window so
//! that an incident opened later by a stronger alert sharing their entities takes them in
//! (the spray before the successful login); bounded by [`MAX_HELD_ALERTS`], the oldest
//! dropped first.

use std::path::Path;

use chrono::{DateTime, Utc};
use mamori_event::Level;
use serde::{Deserialize, Serialize};

use crate::backend::{severity_rank, CaseBackend, CaseTx, EntityRow, IncidentRow};
use crate::classify::Tactic;
use crate::error::{Error, Result};
use crate::grouping::{
    AlertInput, Decision, EntityState, Grouper, GrouperConfig, Key, OpenIncident,
};
use crate::model::{
    ActionEntry, Entity, Incident, IncidentFilter, IncidentId, IncidentSummary, Phase,
};
use crate::playbook::Playbooks;

mod sqlite;
#[cfg(test)]
mod tests;

pub use sqlite::{MIGRATIONS, SCHEMA_VERSION};

/// Largest page of [`CaseStore::list`].
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
/// More entities than this on one alert is a reader bug or an attack on the grouper.
pub const MAX_ALERT_ENTITIES: usize = 256;
/// Most held low alerts kept; past it the oldest (by alert time) are forgotten. Internet
/// noise is one low alert per source and day, so this holds days of it on a busy site.
pub const MAX_HELD_ALERTS: usize = 20_000;

/// A held alert as the backend keeps it (`held_alerts.doc`).
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

/// Incidents and their grouping state. `Send + Sync`: share it in an `Arc`.
pub struct CaseStore {
    backend: Box<dyn CaseBackend>,
    grouper: Grouper,
    playbooks: Playbooks,
    max_held: usize,
}

impl std::fmt::Debug for CaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseStore")
            .field("backend", &self.backend.describe())
            .finish_non_exhaustive()
    }
}

impl CaseStore {
    /// Opens (creating and migrating if needed) the SQLite database at `path`, e.g.
    /// `<data-dir>/incidents.db`, with the default grouping and the built-in playbooks.
    pub fn open(path: &Path) -> Result<CaseStore> {
        CaseStore::with_backend(Box::new(sqlite::SqliteBackend::open(path)?))
    }

    /// A private in-memory SQLite database (tests, `--dry-run`).
    pub fn open_in_memory() -> Result<CaseStore> {
        CaseStore::with_backend(Box::new(sqlite::SqliteBackend::open_in_memory()?))
    }

    /// A store over another backend (PostgreSQL in the scale-out mode), with the default
    /// grouping and the built-in playbooks.
    pub fn with_backend(backend: Box<dyn CaseBackend>) -> Result<CaseStore> {
        Ok(CaseStore {
            backend,
            grouper: Grouper::default(),
            playbooks: Playbooks::builtin()?,
            max_held: MAX_HELD_ALERTS,
        })
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
        self.backend.held_count()
    }

    pub fn playbooks(&self) -> &Playbooks {
        &self.playbooks
    }

    /// The grouping rules in force.
    pub fn grouper(&self) -> &Grouper {
        &self.grouper
    }

    /// Where the incidents live (a file path, a PostgreSQL schema).
    pub fn describe(&self) -> String {
        self.backend.describe()
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
        // The alert's usable entities, normalised once for the lookups below; the same
        // names serialise two nodes grouping alerts that share one of them.
        let (keys, _) = self.grouper.keys(alert);
        let mut locks = vec![format!("alert\0{}", alert.alert_id)];
        locks.extend(entity_locks(&keys));
        let entities = self.entities_of(alert);
        let mut done = None;
        self.backend.write(&locks, &mut |tx| {
            done = Some(self.ingest_tx(tx, alert, &keys, &entities, now, hold_low)?);
            Ok(())
        })?;
        Ok(done.expect("a committed ingest has a result"))
    }

    fn ingest_tx(
        &self,
        tx: &mut dyn CaseTx,
        alert: &AlertInput,
        keys: &[Key],
        entities: &[Entity],
        now: DateTime<Utc>,
        hold_low: bool,
    ) -> Result<Grouped> {
        if let Some(id) = tx.linked_incident(alert.alert_id)? {
            let mut inc = self.load(tx, id)?;
            if inc.add_events(&alert.event_seqs, now) {
                self.save(tx, &inc)?;
            }
            let because = format!(
                "alert {} is already linked to incident {id}",
                alert.alert_id
            );
            return Ok(Grouped::Incident(id, Outcome::AlreadyLinked, because));
        }

        let pairs: Vec<(&str, &str)> = keys
            .iter()
            .map(|k| (k.field.as_str(), k.value.as_str()))
            .collect();
        let candidates = self.candidates(tx, keys, &pairs)?;
        let (mut inc, mut state, outcome, because) = match self.grouper.decide(alert, &candidates) {
            Decision::Join { incident, because } => {
                let mut inc = self.load(tx, incident)?;
                inc.add_alert(
                    alert,
                    entities.to_vec(),
                    because.clone(),
                    now,
                    &self.playbooks,
                );
                let state = candidates
                    .into_iter()
                    .find(|c| c.id == incident)
                    .expect("the grouper joins only a candidate it was given");
                (inc, state, Outcome::Joined, because)
            }
            Decision::New { because } if hold_low && !self.grouper.opens_incident(alert.level) => {
                self.hold(tx, alert, &pairs)?;
                return Ok(Grouped::Held(self.grouper.held_because(alert, &because)));
            }
            Decision::New { because } => {
                let id = tx.create(now.timestamp_micros())?;
                let inc = Incident::new(
                    id,
                    alert,
                    entities.to_vec(),
                    because.clone(),
                    now,
                    &self.playbooks,
                );
                let state = OpenIncident {
                    id,
                    entities: Vec::new(),
                };
                (inc, state, Outcome::Created, because)
            }
        };
        self.grouper.absorb(&mut state, alert);
        tx.link_alert(alert.alert_id, inc.id)?;
        // A held alert may already be this one (a low alert counted again after it was held).
        tx.release_held(alert.alert_id)?;
        let taken = self.take_held(tx, alert, keys, &pairs, &mut inc, &mut state, now)?;
        self.save(tx, &inc)?;
        tx.save_entities(&entity_rows(&state))?;
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

    /// Keeps a low alert that opened no incident (replacing an earlier copy of it); the
    /// backend trims the oldest past [`MAX_HELD_ALERTS`].
    fn hold(&self, tx: &mut dyn CaseTx, alert: &AlertInput, keys: &[(&str, &str)]) -> Result<()> {
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
        tx.hold(
            alert.alert_id,
            alert.time.timestamp_micros(),
            &doc,
            keys,
            self.max_held,
        )
    }

    /// Moves into `inc` the held alerts that share an entity with `alert` and lie within the
    /// grouping window of its time; returns their ids.
    #[allow(clippy::too_many_arguments)]
    fn take_held(
        &self,
        tx: &mut dyn CaseTx,
        alert: &AlertInput,
        keys: &[Key],
        pairs: &[(&str, &str)],
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
        // Each held alert once, explained by the first of the alert's entities it shares.
        let mut found: Vec<(usize, i64, i64, String)> = Vec::new();
        for h in tx.held_sharing(pairs, lo, hi)? {
            let Some(k) = key_index(keys, &h.field, &h.value) else {
                continue;
            };
            if h.alert_id == alert.alert_id {
                continue;
            }
            match found.iter_mut().find(|f| f.1 == h.alert_id) {
                Some(f) => f.0 = f.0.min(k),
                None => found.push((k, h.alert_id, h.time_us, h.doc)),
            }
        }
        found.sort_by_key(|f| (f.2, f.1));
        let mut taken = Vec::new();
        for (k, id, t, doc) in found {
            // A held copy that no longer reads (an older build's) is dropped, not fatal.
            let decoded = serde_json::from_str::<HeldDoc>(&doc).ok().and_then(|h| {
                let level = Level::parse(&h.level)?;
                Some((h, level, DateTime::from_timestamp_micros(t)?))
            });
            let Some((h, level, time)) = decoded else {
                tx.release_held(id)?;
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
            // Its entities become this incident's: an alert of another node carrying one of
            // them must wait and then join this incident, not open a second one.
            tx.lock_more(&entity_locks(&self.grouper.keys(&held).0).collect::<Vec<_>>())?;
            // Another transaction took it first (another node grouping an alert that shares
            // a different entity with it): it is that incident's.
            if !tx.release_held(id)? {
                continue;
            }
            let because = format!(
                "held low alert joined when alert {} grouped: {} shared within the window",
                alert.alert_id, keys[k].shown
            );
            let entities = self.entities_of(&held);
            inc.add_alert(&held, entities, because, now, &self.playbooks);
            self.grouper.absorb(state, &held);
            tx.link_alert(id, inc.id)?;
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

    /// Open incidents sharing one of the alert's entities, with only the shared entities
    /// (in the order of the alert's entities), by id.
    fn candidates(
        &self,
        tx: &mut dyn CaseTx,
        keys: &[Key],
        pairs: &[(&str, &str)],
    ) -> Result<Vec<OpenIncident>> {
        let mut rows: Vec<(usize, EntityRow)> = tx
            .candidates(pairs)?
            .into_iter()
            .filter_map(|r| key_index(keys, &r.field, &r.value).map(|k| (k, r)))
            .collect();
        rows.sort_by_key(|(k, r)| (*k, r.incident));
        let mut out: Vec<OpenIncident> = Vec::new();
        for (_, r) in rows {
            let corrupt = |what: &str| Error::Corrupt {
                store: self.backend.describe(),
                id: r.incident,
                reason: format!("grouping state of {}: {what}", r.field),
            };
            let e = EntityState {
                first_seen: DateTime::from_timestamp_micros(r.first_seen_us)
                    .ok_or_else(|| corrupt("first seen out of range"))?,
                last_seen: DateTime::from_timestamp_micros(r.last_seen_us)
                    .ok_or_else(|| corrupt("last seen out of range"))?,
                alert_id: r.alert_id,
                tactic: r
                    .tactic
                    .and_then(|(t, a)| Tactic::from_index(t).map(|t| (t, a))),
                field: r.field,
                value: r.value,
            };
            match out.iter_mut().find(|o| o.id == r.incident) {
                Some(o) => o.entities.push(e),
                None => out.push(OpenIncident {
                    id: r.incident,
                    entities: vec![e],
                }),
            }
        }
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    fn load(&self, tx: &mut dyn CaseTx, id: IncidentId) -> Result<Incident> {
        let doc = tx.load(id)?.ok_or(Error::NotFound(id))?;
        self.decode(id, &doc)
    }

    fn decode(&self, id: IncidentId, doc: &str) -> Result<Incident> {
        let mut inc: Incident = serde_json::from_str(doc).map_err(|e| Error::Corrupt {
            store: self.backend.describe(),
            id,
            reason: e.to_string(),
        })?;
        inc.id = id;
        Ok(inc)
    }

    fn save(&self, tx: &mut dyn CaseTx, inc: &Incident) -> Result<()> {
        let doc = serde_json::to_string(inc).expect("an incident always serialises");
        tx.save(&IncidentRow {
            id: inc.id,
            status: inc.status.as_str(),
            phase: inc.phase.as_str(),
            severity: severity_rank(inc.severity),
            kind: inc.kind.as_str(),
            created_at_us: inc.created_at.timestamp_micros(),
            updated_at_us: inc.updated_at.timestamp_micros(),
            doc: &doc,
        })
    }

    /// Loads, changes and writes back one incident in one transaction; returns the result.
    /// `f` may run more than once (a backend retries a transaction the database aborted).
    fn update(
        &self,
        id: IncidentId,
        f: impl Fn(&mut Incident) -> Result<()> + Sync,
    ) -> Result<Incident> {
        let mut done = None;
        self.backend.write(&[], &mut |tx| {
            let mut inc = self.load(tx, id)?;
            f(&mut inc)?;
            self.save(tx, &inc)?;
            done = Some(inc);
            Ok(())
        })?;
        Ok(done.expect("a committed update has a result"))
    }

    pub fn get(&self, id: IncidentId) -> Result<Incident> {
        let doc = self.backend.get(id)?.ok_or(Error::NotFound(id))?;
        self.decode(id, &doc)
    }

    /// Incidents matching `filter`, most recently updated first.
    pub fn list(&self, filter: &IncidentFilter) -> Result<Vec<IncidentSummary>> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT) as i64;
        let offset = filter.offset.unwrap_or(0).min(i64::MAX as usize) as i64;
        self.backend
            .list(filter, limit, offset)?
            .iter()
            .map(|(id, doc)| Ok(IncidentSummary::from(&self.decode(*id, doc)?)))
            .collect()
    }

    /// How many incidents match `filter` (ignoring its limit and offset), for paging.
    pub fn count(&self, filter: &IncidentFilter) -> Result<u64> {
        self.backend.count(filter)
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
        self.update(id, |inc| inc.record_action(entry.clone()))
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

/// The lock names of normalised entities (see [`CaseBackend::write`]).
fn entity_locks(keys: &[Key]) -> impl Iterator<Item = String> + '_ {
    keys.iter()
        .map(|k| format!("entity\0{}\0{}", k.field, k.value))
}

/// Position of a normalised `(field, value)` among the alert's keys.
fn key_index(keys: &[Key], field: &str, value: &str) -> Option<usize> {
    keys.iter()
        .position(|k| k.field == field && k.value == value)
}

fn entity_rows(state: &OpenIncident) -> Vec<EntityRow> {
    state
        .entities
        .iter()
        .map(|e| EntityRow {
            incident: state.id,
            field: e.field.clone(),
            value: e.value.clone(),
            first_seen_us: e.first_seen.timestamp_micros(),
            last_seen_us: e.last_seen.timestamp_micros(),
            alert_id: e.alert_id,
            tactic: e.tactic.map(|(t, a)| (t.index(), a)),
        })
        .collect()
}
