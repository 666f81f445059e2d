//! Alerts → incidents (mamori-cases), notifications (mamori-notify) and automatic response
//! (mamori-respond), wired together.
//!
//! One task consumes the alert stream. For every alert it asks the case store to group it
//! into an incident (the explanation is kept on the incident); when a new incident opens it
//! notifies the contacts; and it hands the alert's entities to the responder, whose policy
//! decides what is off, only suggested (approved later over the API) or automatic. Every
//! delivery, planned action, execution, approval and rollback is recorded on the incident.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use mamori_cases::{ActionEntry, AlertInput, CaseStore, Grouped, Incident, IncidentId, Outcome};
use mamori_notify::{Label, Notification, Notifier, Reason};
use mamori_respond::{ActionRecord, Actor, PlanId, RecordId, Responder, Trigger};
use mamori_store::{Alert, AlertStore};
use tokio::sync::broadcast;

/// Key of the responder's saved state in the alert store's key/value table.
pub const RESPONDER_STATE_KEY: &str = "response/state";

/// Incident handling of a running server.
pub struct IncidentService {
    pub cases: Arc<CaseStore>,
    notifier: Option<Notifier>,
    responder: Option<Mutex<Responder>>,
    kv: Arc<dyn AlertStore>,
    base_url: Option<String>,
    /// The vault's chain of custody, when sealing is on.
    pub audit: Option<crate::seal::AuditHandle>,
}

/// The entities of an alert, normalised to ECS names: correlation groups
/// (`source.ip=…`, `…auth@32473.src=…`) and the fields the rule matched on.
pub fn alert_entities(a: &Alert) -> Vec<(String, String)> {
    fn norm(k: &str) -> Option<&'static str> {
        let last = k.rsplit('.').next().unwrap_or(k);
        Some(match (k, last) {
            ("source.ip", _) | (_, "src") | (_, "src_ip") | ("IpAddress", _) => "source.ip",
            ("user.name", _) | (_, "user") | ("TargetUserName", _) | ("SubjectUserName", _) => {
                "user.name"
            }
            ("host.name", _) | ("Computer", _) => "host.name",
            ("aws.access_key_id", _) | ("userIdentity.accessKeyId", _) => "aws.access_key_id",
            _ => return None,
        })
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: &str| {
        if let Some(n) = norm(k) {
            let v = v.trim();
            if !v.is_empty() && !out.iter().any(|(a, b)| a == n && b == v) {
                out.push((n.to_owned(), v.to_owned()));
            }
        }
    };
    for key in ["group", "fields"] {
        if let Some(m) = a.details.get(key).and_then(|g| g.as_object()) {
            for (k, v) in m {
                if let Some(s) = v.as_str() {
                    push(k, s);
                }
            }
        }
    }
    if let Some(h) = a.details.get("host").and_then(|h| h.as_str()) {
        push("host.name", h);
    }
    out
}

fn tags(a: &Alert) -> Vec<String> {
    a.details
        .get("tags")
        .and_then(|t| t.as_array())
        .map(|t| {
            t.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A non-empty string from an alert's details (`title_ja`, `description`, …).
fn detail_str<'a>(a: &'a Alert, key: &str) -> Option<&'a str> {
    a.details
        .get(key)
        .and_then(|v| v.as_str())
        .filter(|s| !s.trim().is_empty())
}

impl IncidentService {
    pub fn new(
        cases: Arc<CaseStore>,
        notifier: Option<Notifier>,
        mut responder: Option<Responder>,
        kv: Arc<dyn AlertStore>,
        base_url: Option<String>,
    ) -> IncidentService {
        if let Some(r) = responder.as_mut() {
            if let Ok(Some(saved)) = kv.kv_get(RESPONDER_STATE_KEY) {
                if let Err(e) = r.restore(&saved) {
                    tracing::error!(error = %e, "saved response state not restored");
                } else {
                    // A reboot empties nftables: put active blocks back with their remaining TTL.
                    let re = r.reapply(false, Utc::now());
                    if !re.is_empty() {
                        tracing::info!(count = re.len(), "response actions re-applied");
                    }
                }
            }
        }
        IncidentService {
            cases,
            notifier,
            responder: responder.map(Mutex::new),
            kv,
            base_url,
            audit: None,
        }
    }

    /// Records incident changes and response actions in the vault's chain of custody.
    pub fn with_audit(mut self, audit: Option<crate::seal::AuditHandle>) -> IncidentService {
        self.audit = audit;
        self
    }

    /// Appends a custody record (if sealing is on).
    pub fn custody(
        &self,
        actor: &str,
        action: mamori_vault::AuditAction,
        id: IncidentId,
        detail: String,
    ) {
        if let Some(a) = &self.audit {
            a.record(actor, action, &format!("incident:{}", id.0), detail);
        }
    }

    fn save_responder(&self, r: &Responder) {
        if let Err(e) = self.kv.kv_put(RESPONDER_STATE_KEY, &r.save()) {
            tracing::error!(error = %e, "cannot save response state");
        }
    }

    /// Records an action on an incident and in the chain of custody.
    pub(crate) fn record(&self, id: IncidentId, by: &str, kind: &str, detail: serde_json::Value) {
        self.custody(
            by,
            mamori_vault::AuditAction::ResponseAction,
            id,
            serde_json::json!({ "kind": kind, "detail": &detail }).to_string(),
        );
        let entry = ActionEntry {
            at: Utc::now(),
            by: by.to_owned(),
            kind: kind.to_owned(),
            detail,
        };
        if let Err(e) = self.cases.record_action(id, entry) {
            tracing::error!(error = %e, incident = id.0, "cannot record action on incident");
        }
    }

    fn notification(&self, inc: &Incident, alert: &Alert) -> Notification {
        Notification {
            incident_id: inc.id.0.to_string(),
            title: inc.title.clone(),
            title_ja: inc.title_ja.clone(),
            severity: inc.severity,
            phase: Label::new(
                inc.phase.as_str(),
                inc.phase.label("en"),
                inc.phase.label("ja"),
            ),
            kind: Label::new(
                inc.kind.as_str(),
                inc.kind.label("en"),
                inc.kind.label("ja"),
            ),
            reason: Reason::Opened,
            summary: format!(
                "{} ({}){}",
                alert.title,
                alert.level,
                detail_str(alert, "description")
                    .map(|d| format!("\n{d}"))
                    .unwrap_or_default()
            ),
            summary_ja: Some(format!(
                "{} ({}){}",
                detail_str(alert, "title_ja").unwrap_or(&alert.title),
                alert.level.as_str_ja(),
                detail_str(alert, "description_ja")
                    .map(|d| format!("\n{d}"))
                    .unwrap_or_default()
            )),
            entities: inc
                .entities
                .iter()
                .map(|e| (e.field.clone(), e.value.clone()))
                .collect(),
            url: self
                .base_url
                .as_ref()
                .map(|b| format!("{}/api/v1/incidents/{}", b.trim_end_matches('/'), inc.id.0)),
            time: Utc::now(),
        }
    }

    /// Groups one alert, notifies, responds. Blocking (SQLite, SMTP, nft).
    pub fn handle_alert(&self, a: &Alert) {
        let entities = alert_entities(a);
        let input = AlertInput {
            alert_id: a.id.0,
            rule_id: a.rule_id.clone(),
            title: a.title.clone(),
            title_ja: detail_str(a, "title_ja").map(str::to_owned),
            level: a.level,
            time: a.event_time.unwrap_or(a.received_at),
            entities: entities.clone(),
            tags: tags(a),
            event_seqs: a.event_seqs.clone(),
        };
        // A low alert (the internet's failed probes and guessing: one low episode per source
        // and day) opens no incident on its own; it joins one that shares its entities.
        let (id, outcome, why) = match self.cases.group_alert(&input, Utc::now()) {
            Ok(Grouped::Incident(id, o, why)) => (id, o, why),
            Ok(Grouped::Held(why)) => {
                tracing::debug!(alert = a.id.0, level = %a.level, %why, "alert not grouped");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, alert = a.id.0, "cannot group alert into an incident");
                return;
            }
        };
        tracing::info!(incident = id.0, alert = a.id.0, outcome = ?outcome, %why, "alert grouped");
        self.custody(
            mamori_cases::SYSTEM_ACTOR,
            mamori_vault::AuditAction::IncidentChange,
            id,
            serde_json::json!({
                "alert": a.id.0,
                "rule": a.rule_id.0.as_ref(),
                "outcome": format!("{outcome:?}").to_lowercase(),
                "why": why.to_string(),
                "event_seqs": &a.event_seqs,
            })
            .to_string(),
        );
        if outcome == Outcome::Created {
            if let (Some(n), Ok(inc)) = (&self.notifier, self.cases.get(id)) {
                let msg = self.notification(&inc, a);
                let deliveries = n.notify(&msg, Utc::now());
                for d in &deliveries {
                    if !d.ok {
                        tracing::warn!(channel = %d.channel, contact = %d.contact, error = ?d.error, "notification failed");
                    }
                }
                self.record(
                    id,
                    mamori_cases::SYSTEM_ACTOR,
                    "notification",
                    serde_json::json!(deliveries),
                );
            }
        }
        if outcome == Outcome::AlreadyLinked {
            return;
        }
        if let Some(r) = &self.responder {
            let get = |f: &str| {
                entities
                    .iter()
                    .find(|(k, _)| k == f)
                    .map(|(_, v)| v.clone())
            };
            let trigger = Trigger {
                rule_id: a.rule_id.clone(),
                level: a.level,
                source_ip: get("source.ip"),
                user_name: get("user.name"),
                host_name: get("host.name"),
            };
            let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
            let resp = r.respond(&trigger, false, Utc::now());
            for rec in &resp.executed {
                self.record(id, "automatic", "response_executed", serde_json::json!(rec));
            }
            for p in resp
                .plan
                .actions
                .iter()
                .filter(|p| p.mode == mamori_respond::Mode::Suggest)
            {
                self.record(id, "automatic", "response_suggested", serde_json::json!(p));
            }
            for refusal in &resp.plan.refused {
                self.record(
                    id,
                    "automatic",
                    "response_refused",
                    serde_json::json!(refusal),
                );
            }
            self.save_responder(&r);
        }
    }

    /// Approves a suggested action and records it on the incident of `incident`.
    pub fn approve(
        &self,
        incident: IncidentId,
        plan: u64,
        by: &str,
    ) -> Result<ActionRecord, String> {
        let r = self
            .responder
            .as_ref()
            .ok_or("automatic response is not configured ([response])")?;
        let actor = Actor::user(by).map_err(|e| e.to_string())?;
        let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
        let rec = r
            .approve(PlanId(plan), actor, Utc::now())
            .map_err(|e| e.to_string())?;
        self.save_responder(&r);
        self.record(incident, by, "response_approved", serde_json::json!(rec));
        Ok(rec)
    }

    /// Rolls back an action and records it on the incident.
    pub fn rollback(
        &self,
        incident: IncidentId,
        record: u64,
        by: &str,
        dry_run: bool,
    ) -> Result<ActionRecord, String> {
        let r = self
            .responder
            .as_ref()
            .ok_or("automatic response is not configured ([response])")?;
        let actor = Actor::user(by).map_err(|e| e.to_string())?;
        let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
        let rec = r
            .rollback(RecordId(record), actor, dry_run, Utc::now())
            .map_err(|e| e.to_string())?;
        self.save_responder(&r);
        self.record(incident, by, "response_rolled_back", serde_json::json!(rec));
        Ok(rec)
    }

    /// Rejects a suggested action: it is dropped without running, and who rejected it and
    /// why are recorded on the incident and in the chain of custody.
    pub fn reject(
        &self,
        incident: IncidentId,
        plan: u64,
        by: &str,
        reason: &str,
    ) -> Result<mamori_respond::PlannedAction, String> {
        let r = self
            .responder
            .as_ref()
            .ok_or("automatic response is not configured ([response])")?;
        let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
        let p = r.dismiss(PlanId(plan)).map_err(|e| e.to_string())?;
        self.save_responder(&r);
        self.record(
            incident,
            by,
            "response_rejected",
            serde_json::json!({ "id": p.id, "action": &p.action, "reason": reason, "suggested_because": &p.reason }),
        );
        Ok(p)
    }

    /// The response policy in force (`None` when `[response]` is not configured).
    pub fn policy(&self) -> Option<mamori_respond::ResponsePolicy> {
        let r = self.responder.as_ref()?;
        let r = r.lock().unwrap_or_else(|p| p.into_inner());
        Some(r.policy().clone())
    }

    /// Replaces the response policy (validated by the responder first).
    pub fn set_policy(&self, p: mamori_respond::ResponsePolicy) -> Result<(), String> {
        let r = self
            .responder
            .as_ref()
            .ok_or("automatic response is not configured ([response])")?;
        let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
        r.set_policy(p).map_err(|e| e.to_string())
    }

    /// Pending suggestions and recorded actions.
    pub fn responses(&self) -> serde_json::Value {
        match &self.responder {
            None => serde_json::json!({ "configured": false }),
            Some(r) => {
                let r = r.lock().unwrap_or_else(|p| p.into_inner());
                serde_json::json!({
                    "configured": true,
                    "pending": r.pending().collect::<Vec<_>>(),
                    "records": r.records().collect::<Vec<_>>(),
                })
            }
        }
    }

    /// Marks expired actions (the kernel already dropped them) and saves the state.
    pub fn expire(&self) {
        if let Some(r) = &self.responder {
            let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
            if !r.expire(Utc::now()).is_empty() {
                self.save_responder(&r);
            }
        }
    }
}

/// Consumes the alert stream until it closes.
pub async fn run(service: Arc<IncidentService>, mut rx: broadcast::Receiver<Alert>) {
    loop {
        match rx.recv().await {
            Ok(a) => {
                let s = Arc::clone(&service);
                let _ = tokio::task::spawn_blocking(move || s.handle_alert(&a)).await;
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::error!(
                    missed = n,
                    "incident handling fell behind; alerts were not grouped"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
