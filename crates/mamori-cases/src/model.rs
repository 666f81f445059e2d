//! The incident record as the REST API and the CLI see it (serde JSON), and the small enums it
//! is made of, with their English and Japanese labels.

use std::fmt;

use chrono::{DateTime, Utc};
use mamori_event::{Level, RuleId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of an incident (its SQLite rowid). Serialises as a bare number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(pub i64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The phases an incident goes through (NIST SP 800-61 r2, section 3).
///
/// Preparation is deliberately absent: it is the organisation's standing work, done before any
/// incident exists (see [`crate::preparation_checklist`]). Detection & analysis is where every
/// incident starts; the order of the variants is the forward order of the phase machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    DetectionAnalysis,
    Containment,
    Eradication,
    Recovery,
    PostIncident,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::DetectionAnalysis,
        Phase::Containment,
        Phase::Eradication,
        Phase::Recovery,
        Phase::PostIncident,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::DetectionAnalysis => "detection_analysis",
            Phase::Containment => "containment",
            Phase::Eradication => "eradication",
            Phase::Recovery => "recovery",
            Phase::PostIncident => "post_incident",
        }
    }

    /// Accepts the snake_case name and, for the CLI, the hyphenated one (`post-incident`).
    pub fn parse(s: &str) -> Option<Phase> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Label for the UI and reports; `lang` is `"ja"` or anything else for English.
    pub fn label(self, lang: &str) -> &'static str {
        let ja = is_ja(lang);
        match self {
            Phase::DetectionAnalysis if ja => "検知・分析",
            Phase::DetectionAnalysis => "Detection & analysis",
            Phase::Containment if ja => "封じ込め",
            Phase::Containment => "Containment",
            Phase::Eradication if ja => "根絶",
            Phase::Eradication => "Eradication",
            Phase::Recovery if ja => "復旧",
            Phase::Recovery => "Recovery",
            Phase::PostIncident if ja => "事後対応",
            Phase::PostIncident => "Post-incident activity",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the phase machine allows `from → to`, and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Forward,
    /// Going back (re-infection, containment that did not hold): a reason is required.
    Back,
    Same,
}

pub(crate) fn step(from: Phase, to: Phase) -> Step {
    match to.index().cmp(&from.index()) {
        std::cmp::Ordering::Greater => Step::Forward,
        std::cmp::Ordering::Less => Step::Back,
        std::cmp::Ordering::Equal => Step::Same,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Some(Status::Open),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }

    pub fn label(self, lang: &str) -> &'static str {
        match (self, is_ja(lang)) {
            (Status::Open, true) => "対応中",
            (Status::Open, false) => "Open",
            (Status::Closed, true) => "クローズ",
            (Status::Closed, false) => "Closed",
        }
    }
}

/// What kind of incident this is, derived from its alerts (see [`crate::classify`]); picks the
/// playbook. Ordered by precedence: when alerts of several kinds are grouped, the highest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    Generic,
    BruteForce,
    WebAttack,
    AccountCompromise,
    VpnCompromise,
    DataExfiltration,
    Ransomware,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 7] = [
        IncidentKind::Generic,
        IncidentKind::BruteForce,
        IncidentKind::WebAttack,
        IncidentKind::AccountCompromise,
        IncidentKind::VpnCompromise,
        IncidentKind::DataExfiltration,
        IncidentKind::Ransomware,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Generic => "generic",
            IncidentKind::BruteForce => "brute_force",
            IncidentKind::WebAttack => "web_attack",
            IncidentKind::AccountCompromise => "account_compromise",
            IncidentKind::VpnCompromise => "vpn_compromise",
            IncidentKind::DataExfiltration => "data_exfiltration",
            IncidentKind::Ransomware => "ransomware",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentKind> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        IncidentKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn label(self, lang: &str) -> &'static str {
        let ja = is_ja(lang);
        match self {
            IncidentKind::Generic if ja => "一般インシデント",
            IncidentKind::Generic => "Generic incident",
            IncidentKind::BruteForce if ja => "総当たり攻撃",
            IncidentKind::BruteForce => "Brute force",
            IncidentKind::WebAttack if ja => "Webアプリケーション攻撃",
            IncidentKind::WebAttack => "Web application attack",
            IncidentKind::AccountCompromise if ja => "アカウント侵害",
            IncidentKind::AccountCompromise => "Account compromise",
            IncidentKind::VpnCompromise if ja => "VPN侵害",
            IncidentKind::VpnCompromise => "VPN compromise",
            IncidentKind::DataExfiltration if ja => "情報持ち出し",
            IncidentKind::DataExfiltration => "Data exfiltration",
            IncidentKind::Ransomware if ja => "ランサムウェア",
            IncidentKind::Ransomware => "Ransomware",
        }
    }
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_ja(lang: &str) -> bool {
    lang.trim().to_ascii_lowercase().starts_with("ja")
}

/// Something the incident is about: `user.name=alice`, `host.name=ws-042`, `source.ip=…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entity {
    pub field: String,
    pub value: String,
}

/// An alert grouped into the incident, with the reason it was put here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedAlert {
    pub alert_id: i64,
    #[serde(serialize_with = "ser_rule_id", deserialize_with = "de_rule_id")]
    pub rule_id: RuleId,
    pub title: String,
    /// The rule's Japanese title; absent in documents written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_ja: Option<String>,
    pub level: Level,
    pub time: DateTime<Utc>,
    pub joined_because: String,
}

// `RuleId` is `Serialize` only (it is never read back elsewhere); the case store reads its own
// JSON, so it needs both directions here.
fn ser_rule_id<S: Serializer>(id: &RuleId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.0)
}

fn de_rule_id<'de, D: Deserializer<'de>>(d: D) -> Result<RuleId, D::Error> {
    String::deserialize(d).map(|s| RuleId(s.into()))
}

/// A playbook step, created when the incident enters `phase`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique within the incident, starting at 1.
    pub id: u32,
    pub phase: Phase,
    pub text_en: String,
    pub text_ja: String,
    pub done: bool,
    pub done_by: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryAction {
    Created,
    AlertJoined,
    Severity,
    Kind,
    Phase,
    Assigned,
    Note,
    TaskDone,
    Action,
    Evidence,
    Closed,
    Reopened,
}

impl HistoryAction {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryAction::Created => "created",
            HistoryAction::AlertJoined => "alert_joined",
            HistoryAction::Severity => "severity",
            HistoryAction::Kind => "kind",
            HistoryAction::Phase => "phase",
            HistoryAction::Assigned => "assigned",
            HistoryAction::Note => "note",
            HistoryAction::TaskDone => "task_done",
            HistoryAction::Action => "action",
            HistoryAction::Evidence => "evidence",
            HistoryAction::Closed => "closed",
            HistoryAction::Reopened => "reopened",
        }
    }
}

/// One audited change: who, when, what changed from what to what, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub by: String,
    pub action: HistoryAction,
    pub from: Option<String>,
    pub to: Option<String>,
    pub why: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub at: DateTime<Utc>,
    pub by: String,
    pub text: String,
}

/// A response action or notification carried out for the incident (by `mamori-respond` or a
/// person), e.g. `kind = "disable_account"`, `detail = {"user": "alice", "ok": true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionEntry {
    pub at: DateTime<Utc>,
    pub by: String,
    pub kind: String,
    pub detail: serde_json::Value,
}

/// The incident: an aggregate that is read and written whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub title: String,
    /// The title in Japanese, built like `title` from the first alert's `title_ja`; absent when
    /// that alert had none, and in documents written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_ja: Option<String>,
    pub severity: Level,
    pub phase: Phase,
    pub status: Status,
    pub assignee: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub kind: IncidentKind,
    pub entities: Vec<Entity>,
    pub alerts: Vec<LinkedAlert>,
    /// Event sequence numbers in the event store, deduplicated, in arrival order.
    pub events: Vec<u64>,
    pub tasks: Vec<Task>,
    pub history: Vec<HistoryEntry>,
    pub notes: Vec<Note>,
    pub actions: Vec<ActionEntry>,
    /// References to sealed evidence (vault entry ids, bundle paths, hashes).
    pub evidence: Vec<String>,
    pub lessons_learned: Option<String>,
}

/// A row of `mamori incident list` / `GET /api/incidents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentSummary {
    pub id: IncidentId,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_ja: Option<String>,
    pub severity: Level,
    pub phase: Phase,
    pub status: Status,
    pub kind: IncidentKind,
    pub assignee: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub alert_count: usize,
    pub open_tasks: usize,
}

impl From<&Incident> for IncidentSummary {
    fn from(i: &Incident) -> IncidentSummary {
        IncidentSummary {
            id: i.id,
            title: i.title.clone(),
            title_ja: i.title_ja.clone(),
            severity: i.severity,
            phase: i.phase,
            status: i.status,
            kind: i.kind,
            assignee: i.assignee.clone(),
            created_at: i.created_at,
            updated_at: i.updated_at,
            alert_count: i.alerts.len(),
            open_tasks: i.tasks.iter().filter(|t| !t.done).count(),
        }
    }
}

/// Filter of [`crate::CaseStore::list`]. Every field is optional; `limit` defaults to 100 and is
/// capped at 1000. Results are newest activity first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentFilter {
    pub status: Option<Status>,
    pub phase: Option<Phase>,
    pub min_severity: Option<Level>,
    pub kind: Option<IncidentKind>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}
