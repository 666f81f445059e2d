//! Evidence export while the server runs: `POST /api/v1/incidents/{id}/evidence` asks the
//! sealer (the vault's one writer) for a bundle of the incident's events, its timeline and
//! the whole chain of custody; `GET /api/v1/evidence/{file}` downloads it. The bundle's
//! SHA-256 is answered and listed on the incident.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use mamori_cases::{Incident, IncidentId};
use mamori_store::{AlertId, AlertStore};
use mamori_vault::{ExportFilter, ExportRequest, IncidentRef};
use serde_json::{json, Value as JsonValue};

use crate::api::{blocking, ApiError, AppState, Authed};

/// How long an export may take before the request gives up (the export still finishes).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(600);

/// The store seqs of an incident's events: its own list and every linked alert's.
pub(super) fn incident_seqs(inc: &Incident, alerts: &dyn AlertStore) -> BTreeSet<u64> {
    let mut seqs: BTreeSet<u64> = inc.events.iter().copied().collect();
    for a in &inc.alerts {
        if let Ok(Some(al)) = alerts.get_alert(AlertId(a.alert_id)) {
            seqs.extend(al.event_seqs.iter().copied());
        }
    }
    seqs
}

/// The incident's timeline (alerts, history, notes, actions) as CSV and JSON lines, sorted by
/// time. CSV cells are formula-safe.
pub(super) fn timeline(inc: &Incident) -> (Vec<u8>, Vec<u8>) {
    let mut rows: Vec<(chrono::DateTime<Utc>, &str, String, String)> = Vec::new();
    for a in &inc.alerts {
        rows.push((
            a.time,
            "alert",
            "mamori".into(),
            format!("{} [{}] {}", a.title, a.rule_id.0, a.joined_because),
        ));
    }
    for h in &inc.history {
        let what = format!(
            "{:?}{}{}{}",
            h.action,
            h.from
                .as_deref()
                .map(|f| format!(" from {f}"))
                .unwrap_or_default(),
            h.to.as_deref()
                .map(|t| format!(" to {t}"))
                .unwrap_or_default(),
            h.why
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        );
        rows.push((h.at, "history", h.by.clone(), what));
    }
    for n in &inc.notes {
        rows.push((n.at, "note", n.by.clone(), n.text.clone()));
    }
    for a in &inc.actions {
        rows.push((
            a.at,
            "action",
            a.by.clone(),
            format!("{} {}", a.kind, a.detail),
        ));
    }
    rows.sort_by_key(|r| r.0);
    let mut csv = String::from("time,kind,by,detail\r\n");
    let mut jsonl = String::new();
    for (t, kind, by, detail) in &rows {
        csv.push_str(&format!(
            "{},{},{},{}\r\n",
            t.to_rfc3339(),
            kind,
            mamori_vault::csv_cell(by),
            mamori_vault::csv_cell(detail)
        ));
        jsonl.push_str(&json!({"time": t, "kind": kind, "by": by, "detail": detail}).to_string());
        jsonl.push('\n');
    }
    (csv.into_bytes(), jsonl.into_bytes())
}

/// Whether `name` is a bundle name this server writes (`incident-<id>-<time>.tar`).
fn valid_bundle_name(name: &str) -> bool {
    name.len() <= 100
        && name.starts_with("incident-")
        && name.ends_with(".tar")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.contains("..")
}

pub(super) async fn export_incident(
    auth: Authed,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<JsonValue>, ApiError> {
    let Some(audit) = st.console.audit.clone() else {
        return Err(ApiError::Unavailable(
            "the evidence vault is not sealing ([vault] seal, `mamori init`): nothing to export"
                .into(),
        ));
    };
    let svc = st
        .incidents
        .clone()
        .ok_or_else(|| ApiError::NotFound("incident handling is disabled ([incidents])".into()))?;
    let s = Arc::clone(&st);
    let actor = auth.name.clone();
    let v = blocking(move || {
        let inc = svc
            .cases
            .get(IncidentId(id))
            .map_err(crate::api_incidents::case_err)?;
        let seqs = incident_seqs(&inc, &*s.alerts);
        let wanted = seqs.len();
        let (timeline_csv, timeline_jsonl) = timeline(&inc);
        std::fs::create_dir_all(&s.console.exports_dir)
            .map_err(|e| ApiError::Internal(format!("cannot create the exports folder: {e}")))?;
        let name = format!("incident-{id}-{}.tar", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
        let out = s.console.exports_dir.join(&name);
        let req = ExportRequest {
            incident: Some(IncidentRef {
                id: id as u64,
                title: inc.title.clone(),
                timeline_csv,
                timeline_jsonl,
            }),
            filter: ExportFilter {
                store_seqs: Some(seqs),
                ..ExportFilter::default()
            },
            actor: actor.clone(),
        };
        let summary = audit
            .export(req, out, EXPORT_TIMEOUT)
            .map_err(|e| ApiError::Conflict(format!("evidence export failed: {e}")))?;
        let reference = format!(
            "bundle {name} sha256:{} (records {}, tree size {})",
            summary.bundle_sha256, summary.records, summary.tree_size
        );
        if let Err(e) = svc.cases.add_evidence(IncidentId(id), &reference, &actor, Utc::now()) {
            tracing::error!(error = %e, incident = id, "the bundle is written but the incident does not list it");
        }
        Ok(json!({
            "file": name,
            "download": format!("/api/v1/evidence/{name}"),
            "sha256": summary.bundle_sha256,
            "records": summary.records,
            "events_wanted": wanted,
            "custody_records": summary.audit_records,
            "tree_size": summary.tree_size,
            "root_hash": summary.root_hash,
        }))
    })
    .await?;
    Ok(Json(v))
}

pub(super) async fn download(
    _auth: Authed,
    State(st): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    if !valid_bundle_name(&file) {
        return Err(ApiError::NotFound(format!(
            "no bundle {}",
            file.escape_default()
        )));
    }
    let path = st.console.exports_dir.join(&file);
    let f = file.clone();
    let bytes = blocking(move || {
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ApiError::NotFound(format!("no bundle {f}")),
            _ => ApiError::Internal(format!("cannot read {}: {e}", path.display())),
        })
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_bundle_names_are_served() {
        assert!(valid_bundle_name("incident-3-20261206T210000.123Z.tar"));
        for bad in [
            "../state.db",
            "incident-1/../../x.tar",
            "incident-..tar",
            "state.db",
            "incident-1.tar\0",
        ] {
            assert!(!valid_bundle_name(bad), "{bad}");
        }
    }
}
