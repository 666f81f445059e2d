//! The persistence seam of [`CaseStore`](crate::CaseStore): what a database must do for the
//! case store, and nothing of what the store decides.
//!
//! The grouping, the phase machine and the held-alert rules stay in this crate and run the same
//! on every backend; a backend only reads and writes rows. Two implement it: SQLite (the
//! embedded default, [`CaseStore::open`](crate::CaseStore::open)) and PostgreSQL (the
//! scale-out state, in `mamori-cluster`). Both pass one suite, [`crate::testsuite`].
//!
//! **Contract of [`CaseBackend::write`]**: `f` runs inside one transaction that is committed
//! only if `f` returns `Ok`. Before `f` runs, the backend serialises the transaction with every
//! other one naming one of the same `locks` (the alert's id and its normalised entities): two
//! nodes grouping alerts of one entity at once must not both see "no open incident" and open
//! two. A single-writer database gets this for free; PostgreSQL takes advisory locks. The
//! backend may run `f` again after a transient conflict (a deadlock the database broke), so
//! `f` must only touch the transaction and its own results. A held alert taken into an
//! incident brings its own entities, so the store locks those too ([`CaseTx::lock_more`])
//! before it takes the alert. Every [`CaseTx::load`] of an
//! incident and every incident [`CaseTx::candidates`] returns is locked until the end of the
//! transaction (a concurrent change to it waits).
//!
//! Entity fields and values are attacker-controlled text (any Unicode, NUL included): a
//! backend must store them byte for byte.

use mamori_event::Level;

use crate::error::Result;
use crate::model::{IncidentFilter, IncidentId};

/// One incident as written: its JSON document and the columns lists filter and sort on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRow<'a> {
    pub id: IncidentId,
    pub status: &'static str,
    pub phase: &'static str,
    /// [`severity_rank`] of the incident's severity.
    pub severity: i64,
    pub kind: &'static str,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub doc: &'a str,
}

/// The grouping state of one (incident, normalised entity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRow {
    pub incident: IncidentId,
    /// Normalised (trimmed, lower case), as the grouper keys it.
    pub field: String,
    pub value: String,
    pub first_seen_us: i64,
    pub last_seen_us: i64,
    /// The alert that last carried the entity.
    pub alert_id: i64,
    /// Index of the furthest ATT&CK tactic seen with it, and the alert that had it.
    pub tactic: Option<(i64, i64)>,
}

/// A held low alert that shares the entity `(field, value)` with the alert being grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRow {
    pub alert_id: i64,
    pub time_us: i64,
    /// As [`CaseTx::hold`] stored it.
    pub doc: String,
    pub field: String,
    pub value: String,
}

/// The operations of one write transaction (see the module docs).
pub trait CaseTx {
    /// Serialises the rest of the transaction on more lock names, learnt on the way (the
    /// entities of a held alert about to be taken in). Must not wait for a transaction that
    /// may wait for this one: a backend that cannot take a lock at once fails the attempt
    /// and runs the transaction again.
    fn lock_more(&mut self, names: &[String]) -> Result<()>;
    /// The incident an alert was linked to, if any.
    fn linked_incident(&mut self, alert_id: i64) -> Result<Option<IncidentId>>;
    /// An incident's document, locked until the end of the transaction.
    fn load(&mut self, id: IncidentId) -> Result<Option<String>>;
    /// The grouping state of the *open* incidents that saw one of `keys` (normalised
    /// `(field, value)`), one row per shared entity, in any order; their incidents are locked.
    fn candidates(&mut self, keys: &[(&str, &str)]) -> Result<Vec<EntityRow>>;
    /// A new open incident with a placeholder document (written by [`CaseTx::save`] before
    /// the commit); returns its id, unique and increasing.
    fn create(&mut self, now_us: i64) -> Result<IncidentId>;
    fn save(&mut self, row: &IncidentRow<'_>) -> Result<()>;
    /// Inserts or replaces each row (key: incident, field, value).
    fn save_entities(&mut self, rows: &[EntityRow]) -> Result<()>;
    /// Records that `alert_id` went to `incident`; nothing if it is recorded already.
    fn link_alert(&mut self, alert_id: i64, incident: IncidentId) -> Result<()>;
    /// Keeps a held low alert under its entities `keys` (replacing an earlier copy and its
    /// entities), then forgets the oldest (by time, then id) past `max_held`.
    fn hold(
        &mut self,
        alert_id: i64,
        time_us: i64,
        doc: &str,
        keys: &[(&str, &str)],
        max_held: usize,
    ) -> Result<()>;
    /// Forgets a held alert; `true` if it was held (and so is now this transaction's to use:
    /// a concurrent transaction releasing it too gets `false`).
    fn release_held(&mut self, alert_id: i64) -> Result<bool>;
    /// Held alerts with a time in `lo_us..=hi_us` that share one of `keys`, one row per
    /// shared entity, in any order.
    fn held_sharing(
        &mut self,
        keys: &[(&str, &str)],
        lo_us: i64,
        hi_us: i64,
    ) -> Result<Vec<HeldRow>>;
}

/// The body of a write transaction; see [`CaseBackend::write`].
pub type TxBody<'a> = dyn FnMut(&mut dyn CaseTx) -> Result<()> + Send + 'a;

/// A database for the case store. `Send + Sync`: one is shared by every thread of a server.
pub trait CaseBackend: Send + Sync {
    /// Where the data lives, for error messages (`/var/lib/mamori/incidents.db`,
    /// `postgresql schema "mamori"`). Never a credential.
    fn describe(&self) -> String;
    /// Runs `f` in one transaction serialised on `locks` (see the module docs).
    fn write(&self, locks: &[String], f: &mut TxBody<'_>) -> Result<()>;
    /// An incident's document.
    fn get(&self, id: IncidentId) -> Result<Option<String>>;
    /// `(id, document)` of the incidents matching `filter` (its limit and offset ignored:
    /// `limit`/`offset` are given, already bounded), most recently updated first, then by
    /// id descending.
    fn list(
        &self,
        filter: &IncidentFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<(IncidentId, String)>>;
    /// How many incidents match `filter` (limit and offset ignored).
    fn count(&self, filter: &IncidentFilter) -> Result<u64>;
    /// How many low alerts are held.
    fn held_count(&self) -> Result<u64>;
}

/// The rank the `severity` column holds: the level's position in [`Level::ALL`].
pub fn severity_rank(l: Level) -> i64 {
    Level::ALL.iter().position(|x| *x == l).unwrap_or(0) as i64
}

/// A stable 64-bit lock id for a lock name (FNV-1a): the same on every node and build, so
/// backends with numbered locks (PostgreSQL advisory locks) agree across processes.
pub fn lock_id(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}
