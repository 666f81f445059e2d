//! Audit entries: the chain of custody, stored as records in the same chain as the evidence.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of custody event an [`AuditEntry`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    VaultInit,
    IncidentChange,
    ResponseAction,
    AnalystNote,
    EvidenceExport,
    /// The writer recovered from a crash (torn tail quarantined and truncated).
    VaultRecovery,
    Other,
}

/// Who did what, when. Serialised as JSON (field order as declared) into an audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// Analyst login, `mamori` for the system itself, or a service name.
    pub actor: String,
    pub action: AuditAction,
    /// What was acted on: `incident:12`, `segments/00000003.seg`, an export file name.
    pub target: String,
    pub detail: String,
}

impl AuditEntry {
    pub fn new(
        at: DateTime<Utc>,
        actor: impl Into<String>,
        action: AuditAction,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) -> AuditEntry {
        AuditEntry {
            at,
            actor: actor.into(),
            action,
            target: target.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("audit entries always serialise")
    }

    /// Parse an audit record's payload.
    pub fn from_payload(payload: &[u8]) -> Option<AuditEntry> {
        serde_json::from_slice(payload).ok()
    }
}
