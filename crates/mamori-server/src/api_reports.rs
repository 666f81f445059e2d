//! Report routes: `GET /api/v1/incidents/{id}/report?lang=ja&format=pdf` answers the incident
//! report as a file (PDF or self-contained HTML). Authenticated like every route; typesetting
//! runs on the blocking pool.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use mamori_cases::IncidentId;
use mamori_report::{Format, Lang, Locale, Zone};
use mamori_store::AlertId;
use serde::Deserialize;

use crate::api::{blocking, ApiError, AppState, Authed};
use crate::api_incidents::case_err;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/incidents/{id}/report", get(incident_report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    lang: Option<String>,
    format: Option<String>,
    /// UTC, JST, Asia/Tokyo or an offset like +09:00.
    tz: Option<String>,
}

async fn incident_report(
    _auth: Authed,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let lang = match q.lang.as_deref() {
        None => Lang::En,
        Some(l) => Lang::parse(l)
            .ok_or_else(|| ApiError::BadRequest(format!("unknown lang `{l}` (ja, en)")))?,
    };
    let format = match q.format.as_deref() {
        None => Format::Pdf,
        Some(f) => Format::parse(f)
            .ok_or_else(|| ApiError::BadRequest(format!("unknown format `{f}` (pdf, html)")))?,
    };
    // An empty `tz=` (a form left blank) means the language's default zone.
    let zone = match q.tz.as_deref().filter(|z| !z.trim().is_empty()) {
        None => None,
        Some(z) => Some(
            Zone::parse(z)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown time zone `{z}`")))?,
        ),
    };
    let svc = st
        .incidents
        .clone()
        .ok_or_else(|| ApiError::NotFound("incident handling is disabled ([incidents])".into()))?;
    let st2 = st.clone();
    let bytes = blocking(move || {
        let incident = svc.cases.get(IncidentId(id)).map_err(case_err)?;
        let mut alerts = Vec::new();
        for l in &incident.alerts {
            if let Some(a) = st2
                .alerts
                .get_alert(AlertId(l.alert_id))
                .map_err(|e| ApiError::Internal(e.to_string()))?
            {
                alerts.push(a);
            }
        }
        let vdir = st2.data_dir.join("vault");
        let (vault_head, custody) = if vdir.join("segments").is_dir() {
            let status = mamori_vault::read_status(&vdir)
                .map_err(|e| ApiError::Internal(format!("vault: {e}")))?;
            let target = format!("incident:{id}");
            let c = mamori_vault::read_custody(&vdir, |e| e.target == target)
                .map_err(|e| ApiError::Internal(format!("vault: {e}")))?;
            (status.last_head, Some(c))
        } else {
            (None, None)
        };
        let data = mamori_report::incident::IncidentData {
            incident,
            alerts,
            vault_head,
            custody,
        };
        let loc = Locale::new(lang, zone);
        let report = mamori_report::incident::build(&data, &loc, Utc::now())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        mamori_report::render(&report, format).map_err(|e| match e {
            // The operator must install a font: say which, it is no secret.
            e @ mamori_report::Error::NoFont { .. } => ApiError::Unprocessable(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        })
    })
    .await?;
    let name = format!(
        "attachment; filename=\"incident-{id}-{}.{}\"",
        lang.as_str(),
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, name),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response())
}
