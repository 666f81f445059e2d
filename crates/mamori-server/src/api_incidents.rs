//! Incident routes: the NIST SP 800-61 workflow over REST, and approval / rollback of response
//! actions. Every route is authenticated; the token's name is recorded as who did it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use mamori_cases::{IncidentFilter, IncidentId, Phase};
use mamori_vault::AuditAction;
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};

use crate::api::{blocking, ApiError, AppState, Authed};
use crate::incidents::IncidentService;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/incidents", get(list))
        .route("/api/v1/incidents/{id}", get(show))
        .route("/api/v1/incidents/{id}/phase", post(phase))
        .route("/api/v1/incidents/{id}/assign", post(assign))
        .route("/api/v1/incidents/{id}/notes", post(note))
        .route("/api/v1/incidents/{id}/tasks/{task}/done", post(task_done))
        .route("/api/v1/incidents/{id}/close", post(close))
        .route("/api/v1/responses", get(responses))
        .route(
            "/api/v1/incidents/{id}/responses/{plan}/approve",
            post(approve),
        )
        .route(
            "/api/v1/incidents/{id}/responses/{record}/rollback",
            post(rollback),
        )
        .route("/api/v1/preparation", get(preparation))
}

fn service(st: &AppState) -> Result<Arc<IncidentService>, ApiError> {
    st.incidents
        .clone()
        .ok_or_else(|| ApiError::NotFound("incident handling is disabled ([incidents])".into()))
}

pub(crate) fn case_err(e: mamori_cases::Error) -> ApiError {
    use mamori_cases::Error as E;
    match e {
        E::NotFound(_) | E::TaskNotFound { .. } => ApiError::NotFound(e.to_string()),
        E::InvalidTransition { .. } => ApiError::Conflict(e.to_string()),
        E::Invalid(_) => ApiError::BadRequest(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

/// A change to record in the vault's chain of custody once it succeeded.
struct Custody {
    actor: String,
    action: AuditAction,
    what: JsonValue,
}

/// Runs one incident change on the blocking pool, records it in the chain of custody (when
/// sealing is on) and answers with the updated incident.
async fn change(
    st: &AppState,
    custody: Option<Custody>,
    f: impl FnOnce(&mamori_cases::CaseStore) -> mamori_cases::Result<mamori_cases::Incident>
        + Send
        + 'static,
) -> Result<Json<JsonValue>, ApiError> {
    let s = service(st)?;
    let svc = Arc::clone(&s);
    let inc = blocking(move || f(&s.cases).map_err(case_err)).await?;
    if let Some(c) = custody {
        svc.custody(&c.actor, c.action, inc.id, c.what.to_string());
    }
    Ok(Json(json!(inc)))
}

impl Custody {
    fn by(auth: &Authed, action: AuditAction, what: JsonValue) -> Option<Custody> {
        Some(Custody {
            actor: auth.name.clone(),
            action,
            what,
        })
    }
}

/// A JSON body, or 400 with what was wrong in it.
pub(crate) fn body<T>(
    b: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

async fn list(
    _auth: Authed,
    State(st): State<AppState>,
    Query(f): Query<IncidentFilter>,
) -> Result<Json<JsonValue>, ApiError> {
    let s = service(&st)?;
    let (items, total) = blocking(move || {
        let l = s.cases.list(&f).map_err(case_err)?;
        let n = s.cases.count(&f).map_err(case_err)?;
        Ok((l, n))
    })
    .await?;
    Ok(Json(json!({ "incidents": items, "total": total })))
}

async fn show(
    _auth: Authed,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<JsonValue>, ApiError> {
    change(&st, None, move |c| c.get(IncidentId(id))).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseBody {
    phase: String,
    #[serde(default)]
    why: Option<String>,
}

async fn phase(
    auth: Authed,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    b: Result<Json<PhaseBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = body(b)?;
    let to = Phase::parse(&b.phase).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown phase `{}` (detection-analysis, containment, eradication, recovery, post-incident)",
            b.phase
        ))
    })?;
    let cu = Custody::by(
        &auth,
        AuditAction::IncidentChange,
        json!({"phase": to.as_str(), "why": &b.why}),
    );
    change(&st, cu, move |c| {
        c.set_phase(IncidentId(id), to, &auth.name, b.why.as_deref(), Utc::now())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    assignee: Option<String>,
}

async fn assign(
    auth: Authed,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    b: Result<Json<AssignBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = body(b)?;
    let cu = Custody::by(
        &auth,
        AuditAction::IncidentChange,
        json!({"assignee": &b.assignee}),
    );
    change(&st, cu, move |c| {
        c.assign(
            IncidentId(id),
            b.assignee.as_deref(),
            &auth.name,
            Utc::now(),
        )
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

async fn note(
    auth: Authed,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    b: Result<Json<NoteBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = body(b)?;
    let cu = Custody::by(&auth, AuditAction::AnalystNote, json!({"note": &b.text}));
    change(&st, cu, move |c| {
        c.add_note(IncidentId(id), &auth.name, &b.text, Utc::now())
    })
    .await
}

async fn task_done(
    auth: Authed,
    State(st): State<AppState>,
    Path((id, task)): Path<(i64, u32)>,
) -> Result<Json<JsonValue>, ApiError> {
    let cu = Custody::by(
        &auth,
        AuditAction::IncidentChange,
        json!({"task_done": task}),
    );
    change(&st, cu, move |c| {
        c.complete_task(IncidentId(id), task, &auth.name, Utc::now())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    lessons: String,
}

async fn close(
    auth: Authed,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    b: Result<Json<CloseBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = body(b)?;
    let cu = Custody::by(
        &auth,
        AuditAction::IncidentChange,
        json!({"closed": &b.lessons}),
    );
    change(&st, cu, move |c| {
        c.close(IncidentId(id), &auth.name, &b.lessons, Utc::now())
    })
    .await
}

async fn responses(_auth: Authed, State(st): State<AppState>) -> Result<Json<JsonValue>, ApiError> {
    let s = service(&st)?;
    Ok(Json(blocking(move || Ok(s.responses())).await?))
}

async fn approve(
    auth: Authed,
    State(st): State<AppState>,
    Path((id, plan)): Path<(i64, u64)>,
) -> Result<Json<JsonValue>, ApiError> {
    let s = service(&st)?;
    let rec = blocking(move || {
        s.approve(IncidentId(id), plan, &auth.name)
            .map_err(ApiError::Conflict)
    })
    .await?;
    Ok(Json(json!(rec)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RollbackBody {
    dry_run: bool,
}

async fn rollback(
    auth: Authed,
    State(st): State<AppState>,
    Path((id, record)): Path<(i64, u64)>,
    b: Option<Json<RollbackBody>>,
) -> Result<Json<JsonValue>, ApiError> {
    let dry_run = b.map(|Json(b)| b.dry_run).unwrap_or(false);
    let s = service(&st)?;
    let rec = blocking(move || {
        s.rollback(IncidentId(id), record, &auth.name, dry_run)
            .map_err(ApiError::Conflict)
    })
    .await?;
    Ok(Json(json!(rec)))
}

async fn preparation(_auth: Authed) -> Json<JsonValue> {
    Json(json!({ "checklist": mamori_cases::preparation_checklist() }))
}
