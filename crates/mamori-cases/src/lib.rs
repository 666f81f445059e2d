//! Cases: alerts grouped into incidents, incidents worked through the NIST SP 800-61 phases,
//! tasks taken from playbooks.
//!
//! Key design decision: **the rules are pure, the store only persists them.** Grouping
//! ([`Grouper::decide`]) takes an alert and the grouping state of the open incidents it shares
//! an entity with, and returns a decision *with the sentence that explains it* — the
//! `joined_because` an analyst reads ("joined because user.name=alice (shared with alert 12)").
//! The phase machine and every other change are functions on [`Incident`]. [`CaseStore`] loads
//! an incident, applies one of those inside one database transaction and writes it back; so
//! the rules are tested without a database, and a change is either fully recorded (with who,
//! when and why in the history) or not at all. No function here reads the clock: `now` is passed in,
//! and grouping windows are measured in the alerts' own event time.
//!
//! The database is a seam ([`backend::CaseBackend`]): SQLite embedded, PostgreSQL in the
//! scale-out mode (`mamori-cluster`), both passing one suite ([`testsuite`]). A backend only
//! reads and writes rows; what goes where is decided here, once.
//!
//! An incident is stored as one JSON document (it is read and written whole and is exactly what
//! the REST API returns) next to the few columns lists filter on; the grouping state lives in
//! its own table indexed by entity, so it survives restarts and an alert finds its candidate
//! incidents with an index lookup.
//!
//! Phases ([`Phase`]): detection & analysis → containment → eradication → recovery →
//! post-incident. Forward by one or more steps; back (re-infection) only with a reason; closing
//! needs lessons learned. Preparation is not an incident phase: it is the organisation's
//! standing [`preparation_checklist`].
//!
//! Noisy entity values (`-`, empty, `SYSTEM`, `127.0.0.1`, `::1`, `localhost`, …) never join
//! alerts; see [`grouping`] for the rules and [`DEFAULT_NOISY_VALUES`] for the list.

pub mod backend;
mod classify;
mod error;
pub mod grouping;
mod incident;
mod model;
mod playbook;
mod store;
pub mod testsuite;

pub use classify::{classify, Tactic};
pub use error::{Error, Result};
pub use grouping::{
    AlertInput, Decision, EntityState, Grouper, GrouperConfig, OpenIncident, DEFAULT_NOISY_VALUES,
};
pub use incident::SYSTEM_ACTOR;
pub use model::{
    ActionEntry, Entity, HistoryAction, HistoryEntry, Incident, IncidentFilter, IncidentId,
    IncidentKind, IncidentSummary, LinkedAlert, Note, Phase, Status, Task,
};
pub use playbook::{
    preparation_checklist, ChecklistItem, Playbook, PlaybookTask, Playbooks, BUILTIN_PLAYBOOKS,
};
pub use store::{
    CaseStore, Grouped, Outcome, MAX_ALERT_ENTITIES, MAX_HELD_ALERTS, MAX_LIMIT, MIGRATIONS,
    SCHEMA_VERSION,
};

#[cfg(test)]
mod send_sync {
    #[test]
    fn case_store_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() -> &'static str {
            std::any::type_name::<T>()
        }
        assert!(check::<crate::CaseStore>().ends_with("CaseStore"));
    }
}
