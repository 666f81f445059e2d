//! The console's management routes over the JSON API: alert assignment (one or many),
//! rejecting a suggested response action, rule switches and level overrides, testing a rule
//! against stored events, hits per rule, API tokens and the response policy.
//!
//! Roles are checked here, on the server: a viewer's change never reaches a handler
//! ([`Authed`] refuses it); tokens and the response policy need an admin. Settings changed
//! here live in state.db (the alert store's key/value table) and override the TOML file's
//! values, at once and after a restart ([`apply_saved`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use mamori_event::Level;
use mamori_store::{Alert, AlertFilter, AlertId, AlertStore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as JsonValue};

use crate::api::{blocking, ApiError, AppState, Authed};
use crate::rules::RuleOverrides;

/// Key of the alert assignments (alert id → assignment).
pub const ASSIGN_KEY: &str = "console/alert-assignees";
/// Key of the rule overrides made in the console.
pub const RULES_KEY: &str = "console/settings/rules";
/// Key of the response policy saved from the console (overrides `[response.policy]`).
pub const POLICY_KEY: &str = "console/settings/response_policy";
/// Most alerts one bulk assignment may name.
const MAX_BULK: usize = 1000;
/// Most stored events a rule test may examine.
pub const MAX_TEST_EVENTS: usize = 100_000;
/// Matching events a rule test sends back (the count covers all of them).
const TEST_SHOWN: usize = 100;

/// Read-modify-write of the console's key/value entries is serialised in this process.
static KV_LOCK: Mutex<()> = Mutex::new(());

use crate::api_incidents::body;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn kv_json<T: for<'de> Deserialize<'de> + Default>(store: &dyn AlertStore, key: &str) -> T {
    match store.kv_get(key) {
        Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::error!(key, error = %e, "console setting is corrupt; using the default");
            T::default()
        }),
        Ok(None) => T::default(),
        Err(e) => {
            tracing::error!(key, error = %e, "cannot read console setting");
            T::default()
        }
    }
}

fn put_json<T: Serialize>(store: &dyn AlertStore, key: &str, v: &T) -> Result<(), ApiError> {
    let b = serde_json::to_vec(v).map_err(internal)?;
    store.kv_put(key, &b).map_err(internal)
}

// ---------------------------------------------------------------------------------------------
// Alert assignment

/// Who an alert is assigned to, by whom and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub to: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

pub fn assignments(store: &dyn AlertStore) -> BTreeMap<i64, Assignment> {
    kv_json(store, ASSIGN_KEY)
}

/// An alert as JSON with its `assignee` (or null).
pub fn alert_json(a: &Alert, map: &BTreeMap<i64, Assignment>) -> JsonValue {
    let mut v = json!(a);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "assignee".into(),
            map.get(&a.id.0).map_or(JsonValue::Null, |x| json!(x.to)),
        );
    }
    v
}

fn filter_matches(f: &AlertFilter, a: &Alert) -> bool {
    f.min_level.is_none_or(|l| a.level >= l)
        && f.status.is_none_or(|s| a.status == s)
        && f.since.is_none_or(|t| a.last_seen >= t)
        && f.rule_id.as_ref().is_none_or(|r| &a.rule_id == r)
}

/// `GET /api/v1/alerts` with an assignee: that person's alerts (newest first) matching the
/// other filters; `assignee=` (empty) lists the unassigned ones. Each alert carries `assignee`.
pub fn list_alerts(
    store: &dyn AlertStore,
    f: &AlertFilter,
    assignee: Option<&str>,
) -> Result<Vec<JsonValue>, ApiError> {
    if assignee.is_some_and(|a| a.chars().count() > 64) {
        return Err(ApiError::BadRequest(
            "assignee: a user name has at most 64 characters".into(),
        ));
    }
    let map = assignments(store);
    let Some(who) = assignee else {
        let list = store.list_alerts(f).map_err(internal)?;
        return Ok(list.iter().map(|a| alert_json(a, &map)).collect());
    };
    let mut out = Vec::new();
    let mut skip = f.offset;
    if who.is_empty() {
        // Unassigned: page through the store and leave out the assigned ones.
        let mut page = AlertFilter {
            offset: 0,
            limit: 1000,
            ..f.clone()
        };
        loop {
            let list = store.list_alerts(&page).map_err(internal)?;
            let n = list.len();
            for a in list.iter().filter(|a| !map.contains_key(&a.id.0)) {
                if skip > 0 {
                    skip -= 1;
                } else if out.len() < f.limit {
                    out.push(alert_json(a, &map));
                }
            }
            if n < page.limit || out.len() >= f.limit {
                return Ok(out);
            }
            page.offset += n;
        }
    }
    for (id, _) in map.iter().rev().filter(|(_, x)| x.to == who) {
        if out.len() >= f.limit {
            break;
        }
        if let Some(a) = store.get_alert(AlertId(*id)).map_err(internal)? {
            if filter_matches(f, &a) {
                if skip > 0 {
                    skip -= 1;
                } else {
                    out.push(alert_json(&a, &map));
                }
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignBody {
    ids: Vec<i64>,
    /// A console user's name; null or empty unassigns.
    assignee: Option<String>,
}

/// Assigns alerts (one or many) to a console user, or unassigns them.
pub(super) async fn assign(
    auth: Authed,
    State(st): State<AppState>,
    b: Result<Json<AssignBody>, JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = body(b)?;
    if b.assignee.as_ref().is_some_and(|a| a.chars().count() > 64) {
        return Err(ApiError::BadRequest(
            "assignee: a user name has at most 64 characters".into(),
        ));
    }
    if b.ids.is_empty() || b.ids.len() > MAX_BULK {
        return Err(ApiError::BadRequest(format!(
            "name 1 to {MAX_BULK} alerts in `ids`"
        )));
    }
    let to = b.assignee.filter(|s| !s.is_empty());
    let s = Arc::clone(&st);
    let by = auth.name.clone();
    let (to2, ids) = (to.clone(), b.ids.clone());
    blocking(move || {
        let store = &*s.alerts;
        if let Some(name) = &to2 {
            match super::users::find(store, name).map_err(internal)? {
                Some(u) if !u.disabled => {}
                Some(_) => {
                    return Err(ApiError::Conflict(format!(
                        "user `{name}` is disabled; assign to someone who can act"
                    )))
                }
                None => return Err(ApiError::NotFound(format!("no console user `{name}`"))),
            }
        }
        for id in &ids {
            if store.get_alert(AlertId(*id)).map_err(internal)?.is_none() {
                return Err(ApiError::NotFound(format!("no alert {id}")));
            }
        }
        let _g = KV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = assignments(store);
        for id in &ids {
            match &to2 {
                Some(name) => {
                    map.insert(
                        *id,
                        Assignment {
                            to: name.clone(),
                            by: by.clone(),
                            at: Utc::now(),
                        },
                    );
                }
                None => {
                    map.remove(id);
                }
            }
        }
        put_json(store, ASSIGN_KEY, &map)
    })
    .await?;
    let what = match &to {
        Some(n) => format!("assigned to {n}"),
        None => "unassigned".to_owned(),
    };
    for id in &b.ids {
        st.console
            .custody(&auth.name, &format!("alert:{id}"), what.clone());
    }
    Ok(Json(
        json!({ "assigned": b.ids.len(), "ids": b.ids, "assignee": to }),
    ))
}

/// The names an alert can be assigned to (enabled console users).
pub(super) async fn assignees(
    _auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    let s = Arc::clone(&st);
    let names = blocking(move || {
        Ok(super::users::read(&*s.alerts)
            .map_err(internal)?
            .into_iter()
            .filter(|u| !u.disabled)
            .map(|u| u.name)
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(json!({ "users": names })))
}

// ---------------------------------------------------------------------------------------------
// Rejecting a suggested response action

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RejectBody {
    reason: String,
}

pub(super) async fn reject(
    auth: Authed,
    State(st): State<AppState>,
    Path((id, plan)): Path<(i64, u64)>,
    b: Result<Json<RejectBody>, JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = body(b)?;
    let reason = b.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 2000 {
        return Err(ApiError::BadRequest(
            "say why the action is rejected (`reason`, 1 to 2000 characters)".into(),
        ));
    }
    let svc = st
        .incidents
        .clone()
        .ok_or_else(|| ApiError::NotFound("incident handling is disabled ([incidents])".into()))?;
    let by = auth.name.clone();
    let p = blocking(move || {
        svc.cases
            .get(mamori_cases::IncidentId(id))
            .map_err(crate::api_incidents::case_err)?;
        // Only a pending suggestion can be rejected: anything else is not found.
        svc.reject(mamori_cases::IncidentId(id), plan, &by, &reason)
            .map_err(|e| ApiError::NotFound(format!("no suggested action {plan} to reject: {e}")))
    })
    .await?;
    Ok(Json(json!({ "rejected": p })))
}

// ---------------------------------------------------------------------------------------------
// Rules: list with hits and switches, override, test

fn rules_handle(st: &AppState) -> Result<Arc<crate::rules::RulesHandle>, ApiError> {
    st.rules
        .clone()
        .ok_or_else(|| ApiError::NotFound("no rules are configured ([detection] rules)".into()))
}

/// Alerts (occurrences included) per rule, over at most 100,000 alerts.
fn hits_per_rule(store: &dyn AlertStore) -> Result<BTreeMap<String, u64>, ApiError> {
    let mut hits = BTreeMap::new();
    let mut f = AlertFilter {
        offset: 0,
        limit: 1000,
        ..AlertFilter::default()
    };
    while f.offset < 100_000 {
        let list = store.list_alerts(&f).map_err(internal)?;
        for a in &list {
            *hits.entry(a.rule_id.0.to_string()).or_insert(0) += a.count;
        }
        if list.len() < f.limit {
            break;
        }
        f.offset += list.len();
    }
    Ok(hits)
}

/// Every rule (loaded and disabled) with its hits, level override and whether it is on.
pub(super) async fn rules(
    _auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    let Some(h) = st.rules.clone() else {
        return Ok(Json(
            json!({ "configured": false, "rules": [], "report": null }),
        ));
    };
    let s = Arc::clone(&st);
    let hits = blocking(move || hits_per_rule(&*s.alerts)).await?;
    let engine = h.current();
    let o = h.overrides();
    let row = |m: &mamori_sigma::Meta, correlation: bool| {
        let id = m.reference();
        json!({
            "id": id, "title": m.title, "title_ja": m.extra.get("title_ja"), "level": m.level, "path": m.path, "line": m.line,
            "correlation": correlation, "enabled": true,
            "level_override": o.levels.get(id), "hits": hits.get(id).copied().unwrap_or(0),
        })
    };
    let mut list: Vec<JsonValue> = engine
        .pack
        .rules
        .iter()
        .map(|r| row(&r.meta, false))
        .chain(engine.pack.correlations.iter().map(|c| row(&c.meta, true)))
        .collect();
    for (id, title) in &o.disabled {
        list.push(json!({
            "id": id, "title": title, "level": o.levels.get(id), "enabled": false,
            "level_override": o.levels.get(id), "hits": hits.get(id).copied().unwrap_or(0),
        }));
    }
    Ok(Json(
        json!({ "configured": true, "rules": list, "report": h.report() }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OverrideBody {
    rule_id: String,
    enabled: Option<bool>,
    /// A level, or `default` for the rule file's own.
    level: Option<String>,
}

/// Switches a rule on or off and/or overrides its level; saved in state.db and applied to
/// detection at once (the rules are recompiled).
pub(super) async fn rule_override(
    auth: Authed,
    State(st): State<AppState>,
    b: Result<Json<OverrideBody>, JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = body(b)?;
    let h = rules_handle(&st)?;
    let level = match b.level.as_deref() {
        None => None,
        Some("default") => Some(None),
        Some(l) => Some(Some(Level::parse(l).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown level `{l}` (informational, low, medium, high, critical, default)"
            ))
        })?)),
    };
    let s = Arc::clone(&st);
    let id = b.rule_id.clone();
    let (o, report) = blocking(move || {
        let _g = KV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut o = h.overrides();
        let engine = h.current();
        let loaded = engine
            .pack
            .rules
            .iter()
            .map(|r| &r.meta)
            .chain(engine.pack.correlations.iter().map(|c| &c.meta))
            .find(|m| m.reference() == id)
            .map(|m| m.title.clone());
        if loaded.is_none() && !o.disabled.contains_key(&id) {
            return Err(ApiError::NotFound(format!("no rule `{id}` is loaded")));
        }
        match b.enabled {
            Some(false) => {
                if let Some(t) = loaded {
                    o.disabled.insert(id.clone(), t);
                }
            }
            Some(true) => {
                o.disabled.remove(&id);
            }
            None => {}
        }
        match level {
            Some(Some(l)) => {
                o.levels.insert(id.clone(), l);
            }
            Some(None) => {
                o.levels.remove(&id);
            }
            None => {}
        }
        put_json(&*s.alerts, RULES_KEY, &o)?;
        let report = h.set_overrides(o.clone());
        Ok((o, report))
    })
    .await?;
    let mut what = Vec::new();
    if let Some(e) = b.enabled {
        what.push(if e { "enabled" } else { "disabled" }.to_owned());
    }
    if let Some(l) = &b.level {
        what.push(format!("level set to {l}"));
    }
    st.console
        .custody(&auth.name, &format!("rule:{}", b.rule_id), what.join("; "));
    Ok(Json(json!({
        "rule_id": b.rule_id,
        "enabled": !o.disabled.contains_key(&b.rule_id),
        "level_override": o.levels.get(&b.rule_id),
        "report": report,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestBody {
    /// A loaded rule's reference (id, else name, else title)…
    rule_id: Option<String>,
    /// …or the YAML of a Sigma rule not loaded yet.
    yaml: Option<String>,
    /// How many of the latest stored events to examine (default 1000, at most 100,000).
    last: Option<usize>,
}

/// Runs a rule against the latest stored events, off the async runtime.
pub(super) async fn rule_test(
    _auth: Authed,
    State(st): State<AppState>,
    b: Result<Json<TestBody>, JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = body(b)?;
    let last = b.last.unwrap_or(1000);
    if last == 0 || last > MAX_TEST_EVENTS {
        return Err(ApiError::BadRequest(format!(
            "`last` must be 1 to {MAX_TEST_EVENTS}"
        )));
    }
    let mut pack = mamori_sigma::RulePack::new();
    match (&b.rule_id, &b.yaml) {
        (Some(id), None) => {
            let h = rules_handle(&st)?;
            let engine = h.current();
            let r = engine
                .pack
                .rules
                .iter()
                .find(|r| r.meta.reference() == id)
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "no loaded detection rule `{id}` (correlations are tested through their rules; paste a disabled rule's YAML)"
                    ))
                })?;
            pack.rules.push(r.clone());
        }
        (None, Some(y)) => {
            if y.len() > 256 << 10 {
                return Err(ApiError::BadRequest("rule YAML over 256 KiB".into()));
            }
            pack.add_file("console-test.yml", y, &mamori_sigma::Placeholders::new());
            pack.resolve_references();
            if pack.rules.is_empty() {
                let why: Vec<String> = pack.failures.iter().map(|f| f.to_string()).collect();
                return Err(ApiError::BadRequest(if why.is_empty() {
                    "the YAML holds no detection rule (correlations are tested through their rules)"
                        .into()
                } else {
                    format!("the rule does not compile: {}", why.join("; "))
                }));
            }
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give either `rule_id` or `yaml`".into(),
            ))
        }
    }
    let s = Arc::clone(&st);
    let out = blocking(move || {
        let started = Instant::now();
        let rs = mamori_detect::RuleSet::compile(&pack, &mamori_detect::CompileOptions::default());
        let rules: Vec<JsonValue> = pack
            .rules
            .iter()
            .map(|r| json!({ "id": r.meta.reference(), "title": r.meta.title, "level": r.meta.level }))
            .collect();
        let stats = s.events.stats().map_err(internal)?;
        let (first, end) = (stats.first_seq.unwrap_or(1), stats.last_seq.unwrap_or(0));
        let mut scratch = rs.scratch();
        let mut m = Vec::new();
        let (mut examined, mut matched) = (0usize, 0usize);
        let mut shown = Vec::new();
        let mut seq = end;
        while seq >= first.max(1) && examined < last {
            if let Some(e) = s.events.get(seq).map_err(internal)? {
                examined += 1;
                m.clear();
                rs.matches(&e.event, &mut scratch, &mut m);
                if !m.is_empty() {
                    matched += 1;
                    if shown.len() < TEST_SHOWN {
                        shown.push(crate::api::event_json(&e));
                    }
                }
            }
            seq -= 1;
        }
        Ok(json!({
            "rules": rules,
            "examined": examined,
            "matched": matched,
            "events": shown,
            "elapsed_ms": started.elapsed().as_millis() as u64,
            "failures": pack.failures.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
        }))
    })
    .await?;
    Ok(Json(out))
}

// ---------------------------------------------------------------------------------------------
// API tokens (admin)

pub(super) async fn tokens(
    auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let s = Arc::clone(&st);
    let list = blocking(move || crate::tokens::list(&*s.alerts).map_err(internal)).await?;
    let list: Vec<JsonValue> = list
        .iter()
        .map(|t| json!({ "name": t.name, "created_at": t.created_at }))
        .collect();
    Ok(Json(json!({ "tokens": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    name: String,
}

/// Creates a token; the answer is the only time it is shown.
pub(super) async fn token_create(
    auth: Authed,
    State(st): State<AppState>,
    b: Result<Json<NewToken>, JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let b = body(b)?;
    if !crate::tokens::valid_name(&b.name) {
        return Err(ApiError::BadRequest(format!(
            "invalid token name `{}`: use 1-64 letters, digits, `.`, `_` or `-`",
            b.name.escape_default()
        )));
    }
    let s = Arc::clone(&st);
    let name = b.name.clone();
    let token = blocking(move || {
        let _g = KV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        crate::tokens::create(&*s.alerts, &name).map_err(ApiError::Conflict)
    })
    .await?;
    st.console.custody(
        &auth.name,
        &format!("api-token:{}", b.name),
        "token created in the console".into(),
    );
    Ok(Json(json!({ "name": b.name, "token": token })))
}

pub(super) async fn token_revoke(
    auth: Authed,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let s = Arc::clone(&st);
    let n = name.clone();
    let found = blocking(move || {
        let _g = KV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        crate::tokens::revoke(&*s.alerts, &n).map_err(internal)
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound(format!(
            "no active token `{}`",
            name.escape_default()
        )));
    }
    st.console.custody(
        &auth.name,
        &format!("api-token:{name}"),
        "token revoked in the console".into(),
    );
    Ok(Json(json!({ "revoked": name })))
}

// ---------------------------------------------------------------------------------------------
// Response policy

pub(super) async fn policy(
    _auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    let s = Arc::clone(&st);
    let (policy, saved) = blocking(move || {
        let p = s.incidents.as_ref().and_then(|i| i.policy());
        let saved = s.alerts.kv_get(POLICY_KEY).map_err(internal)?.is_some();
        Ok((p, saved))
    })
    .await?;
    Ok(Json(json!({
        "configured": policy.is_some(),
        "policy": policy,
        "from_console": saved,
    })))
}

/// Replaces the response policy (admin); saved in state.db, it overrides `[response.policy]`.
pub(super) async fn policy_set(
    auth: Authed,
    State(st): State<AppState>,
    b: Result<Json<mamori_respond::ResponsePolicy>, JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let svc = st
        .incidents
        .clone()
        .ok_or_else(|| ApiError::NotFound("incident handling is disabled ([incidents])".into()))?;
    if svc.policy().is_none() {
        return Err(ApiError::NotFound(
            "automatic response is not configured ([response])".into(),
        ));
    }
    let p = body(b)?;
    let s = Arc::clone(&st);
    let p2 = p.clone();
    blocking(move || {
        svc.set_policy(p2.clone()).map_err(ApiError::BadRequest)?;
        put_json(&*s.alerts, POLICY_KEY, &p2)
    })
    .await?;
    st.console.custody(
        &auth.name,
        "response-policy",
        format!(
            "response policy replaced: {}",
            serde_json::to_string(&p).unwrap_or_default()
        ),
    );
    Ok(Json(json!({ "policy": p, "from_console": true })))
}

// ---------------------------------------------------------------------------------------------
// Contacts, channels and escalation (`[notify]`): shown, and a test sent for real

fn lower_debug(x: &impl std::fmt::Debug) -> String {
    format!("{x:?}").to_lowercase()
}

/// Contacts, channels (name and kind, never a secret) and escalation steps of `[notify]`.
pub(super) async fn contacts(
    _auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    let Some(n) = &st.console.notify else {
        return Ok(Json(
            json!({ "configured": false, "channels": [], "contacts": [], "escalation": [] }),
        ));
    };
    let channels: Vec<JsonValue> = n
        .channels
        .iter()
        .map(|(name, c)| json!({ "name": name, "kind": c.kind() }))
        .collect();
    let contacts: Vec<JsonValue> = n
        .contacts
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "email": c.email, "language": lower_debug(&c.language),
                "channels": c.channels, "min_severity": c.min_severity,
                "escalation_order": c.escalation_order, "monthly_report": c.monthly_report,
                "quiet_hours": c.quiet_hours.as_ref().map(|q| format!("{}–{} ({})", q.start, q.end, q.utc_offset)),
            })
        })
        .collect();
    let escalation: Vec<JsonValue> = n
        .escalation
        .iter()
        .map(|e| json!({ "after_minutes": e.after_minutes, "to": e.to }))
        .collect();
    Ok(Json(json!({
        "configured": true, "channels": channels, "contacts": contacts, "escalation": escalation,
    })))
}

/// Sends a test notification to one contact through every channel it has, now (admin): the
/// real delivery code, so a wrong password or an unreachable server shows here, not during an
/// incident. The answer lists each delivery and its error.
pub(super) async fn contact_test(
    auth: Authed,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let Some(cfg) = st.console.notify.clone() else {
        return Err(ApiError::NotFound(
            "no notification contacts are configured ([notify])".into(),
        ));
    };
    if !cfg.contacts.iter().any(|c| c.name == name) {
        return Err(ApiError::NotFound(format!(
            "no contact `{}`",
            name.escape_default()
        )));
    }
    let by = auth.name.clone();
    let n2 = name.clone();
    let deliveries = blocking(move || {
        let notifier = mamori_notify::Notifier::new(&cfg)
            .map_err(|e| ApiError::Conflict(format!("[notify] is not valid: {e}")))?;
        let now = Utc::now();
        let msg = mamori_notify::Notification {
            incident_id: "test".into(),
            title: format!("Mamori test notification (sent by {by}) / Mamori テスト通知"),
            title_ja: None,
            severity: Level::Informational,
            phase: mamori_notify::Label::new("test", "Test", "テスト"),
            kind: mamori_notify::Label::new("test", "Test", "テスト"),
            reason: mamori_notify::Reason::default(),
            summary: "This is a test from the Mamori console: no incident. / Mamori コンソールからのテストです（インシデントではありません）。".into(),
            summary_ja: None,
            entities: Vec::new(),
            url: None,
            time: now,
        };
        Ok(notifier.notify_contact(&msg, &n2, now))
    })
    .await?;
    let ok = deliveries.iter().all(|d| d.ok) && !deliveries.is_empty();
    st.console.custody(
        &auth.name,
        &format!("notify-contact:{name}"),
        format!(
            "test notification sent: {}",
            serde_json::to_string(&deliveries).unwrap_or_default()
        ),
    );
    Ok(Json(
        json!({ "contact": name, "ok": ok, "deliveries": deliveries }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Identity directory (`[analytics] identities`)

/// Largest identity directory the console edits.
const MAX_DIRECTORY_BYTES: usize = 4 << 20;

/// The identity directory file as text (CSV or JSON), with how many identities it holds.
pub(super) async fn identities(
    _auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    let Some(p) = st.console.identities.clone() else {
        return Ok(Json(json!({ "configured": false })));
    };
    let out = blocking(move || {
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(internal(format!("{}: {e}", p.display()))),
        };
        let parsed = mamori_analytics::Directory::parse(&text, &p.display().to_string());
        Ok(json!({
            "configured": true,
            "path": p.display().to_string(),
            "text": text,
            "identities": parsed.as_ref().map(|d| d.len()).ok(),
            "error": parsed.err().map(|e| e.to_string()),
        }))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DirectoryBody {
    text: String,
}

/// Replaces the identity directory (admin): checked with the analytics' own parser first,
/// then written atomically over the configured file (the previous one kept as `.bak`), which
/// the server's hot reload applies within `[analytics] reload_interval_secs`.
pub(super) async fn identities_set(
    auth: Authed,
    State(st): State<AppState>,
    b: Result<Json<DirectoryBody>, JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let Some(p) = st.console.identities.clone() else {
        return Err(ApiError::NotFound(
            "no identity directory is configured ([analytics] identities)".into(),
        ));
    };
    let b = body(b)?;
    if b.text.len() > MAX_DIRECTORY_BYTES {
        return Err(ApiError::BadRequest(format!(
            "identity directory over {MAX_DIRECTORY_BYTES} bytes"
        )));
    }
    let n = blocking(move || {
        let d = mamori_analytics::Directory::parse(&b.text, "identities")
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let _g = KV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "identities".into());
        let tmp = p.with_file_name(format!(".{name}.console-tmp"));
        std::fs::write(&tmp, b.text.as_bytes())
            .map_err(|e| internal(format!("{}: {e}", tmp.display())))?;
        if p.exists() {
            std::fs::copy(&p, p.with_file_name(format!("{name}.bak")))
                .map_err(|e| internal(format!("backup of {}: {e}", p.display())))?;
        }
        std::fs::rename(&tmp, &p).map_err(|e| internal(format!("{}: {e}", p.display())))?;
        Ok(d.len())
    })
    .await?;
    st.console.custody(
        &auth.name,
        "identity-directory",
        format!("identity directory replaced in the console ({n} identities)"),
    );
    Ok(Json(json!({ "identities": n })))
}

/// Applies what the console saved (rule overrides, response policy) to a starting server:
/// these override the TOML file's values.
pub fn apply_saved(
    store: &dyn AlertStore,
    rules: Option<&crate::rules::RulesHandle>,
    incidents: Option<&crate::incidents::IncidentService>,
) {
    if let Some(h) = rules {
        let o: RuleOverrides = kv_json(store, RULES_KEY);
        if !o.is_empty() {
            let r = h.set_overrides(o);
            tracing::info!(
                rules = r.rules,
                correlations = r.correlations,
                "rule changes made in the console applied"
            );
        }
    }
    if let Some(svc) = incidents {
        if let Ok(Some(b)) = store.kv_get(POLICY_KEY) {
            match serde_json::from_slice::<mamori_respond::ResponsePolicy>(&b)
                .map_err(|e| e.to_string())
                .and_then(|p| svc.set_policy(p))
            {
                Ok(()) => tracing::info!("response policy saved in the console applied"),
                Err(e) if svc.policy().is_some() => {
                    tracing::error!(error = %e, "response policy saved in the console not applied")
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_store::{AlertStatus, MemoryAlertStore, NewAlert};

    fn alert(store: &dyn AlertStore, rule: &str) -> i64 {
        let a = NewAlert {
            rule_id: mamori_event::RuleId(rule.into()),
            title: format!("t {rule}"),
            level: Level::High,
            event_time: None,
            received_at: Utc::now(),
            event_seqs: vec![],
            group_key: None,
            dedup_key: None,
            details: json!({}),
        };
        match store.insert_alert(&a).unwrap() {
            mamori_store::InsertOutcome::Created(id) | mamori_store::InsertOutcome::Merged(id) => {
                id.0
            }
        }
    }

    #[test]
    fn assignee_filter_lists_that_persons_alerts_and_the_unassigned() {
        let store = MemoryAlertStore::new();
        let ids: Vec<i64> = (0..5).map(|i| alert(&store, &format!("r{i}"))).collect();
        let mut map = BTreeMap::new();
        for id in &ids[..2] {
            map.insert(
                *id,
                Assignment {
                    to: "aoi".into(),
                    by: "admin".into(),
                    at: Utc::now(),
                },
            );
        }
        put_json(&store, ASSIGN_KEY, &map).unwrap();
        let f = AlertFilter::default();
        let mine = list_alerts(&store, &f, Some("aoi")).unwrap();
        assert_eq!(mine.len(), 2);
        assert!(mine.iter().all(|a| a["assignee"] == "aoi"));
        // Newest first, like the store's own list.
        assert_eq!(mine[0]["id"], ids[1]);
        let free = list_alerts(&store, &f, Some("")).unwrap();
        assert_eq!(free.len(), 3);
        assert!(free.iter().all(|a| a["assignee"].is_null()));
        let all = list_alerts(&store, &f, None).unwrap();
        assert_eq!(all.len(), 5);
        // Other filters still apply.
        let f = AlertFilter {
            status: Some(AlertStatus::Acknowledged),
            ..AlertFilter::default()
        };
        assert!(list_alerts(&store, &f, Some("aoi")).unwrap().is_empty());
        let f = AlertFilter {
            limit: 1,
            offset: 1,
            ..AlertFilter::default()
        };
        let page = list_alerts(&store, &f, Some("aoi")).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0]["id"], ids[0]);
    }

    #[test]
    fn hits_sum_occurrences_per_rule() {
        let store = MemoryAlertStore::new();
        alert(&store, "a");
        alert(&store, "a");
        alert(&store, "b");
        let h = hits_per_rule(&store).unwrap();
        assert_eq!(h.get("a"), Some(&2));
        assert_eq!(h.get("b"), Some(&1));
    }
}
