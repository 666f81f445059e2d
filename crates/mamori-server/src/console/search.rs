//! Export of search results: CSV (every cell neutralised against spreadsheet formulas, RFC
//! 4180 quoting) or JSON lines, at most [`mamori_store::MAX_LIMIT`] events per export.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use mamori_store::{SearchRequest, SortOrder, StoredEvent};
use serde::Deserialize;

use crate::api::{blocking, ApiError, AppState, Authed};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportParams {
    q: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// `csv` (default) or `jsonl`.
    format: Option<String>,
    limit: Option<usize>,
}

/// One CSV row of an event: time, host, source, format, message (every cell formula-safe).
pub(super) fn csv_row(e: &StoredEvent) -> String {
    let time = e.time().to_rfc3339();
    let raw = String::from_utf8_lossy(&e.event.raw);
    let cells = [
        e.seq.to_string(),
        time,
        e.event.host().unwrap_or_default().to_string(),
        e.event.origin.to_string(),
        e.event.format.as_str().to_owned(),
        raw.into_owned(),
    ];
    let mut line = cells
        .iter()
        .map(|c| mamori_vault::csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

pub(super) async fn export(
    _auth: Authed,
    State(st): State<AppState>,
    Query(p): Query<ExportParams>,
) -> Result<Response, ApiError> {
    let jsonl = match p.format.as_deref() {
        None | Some("csv") => false,
        Some("jsonl") => true,
        Some(f) => {
            return Err(ApiError::BadRequest(format!(
                "unknown format `{f}` (csv, jsonl)"
            )))
        }
    };
    let limit = p.limit.unwrap_or(mamori_store::MAX_LIMIT);
    if limit > mamori_store::MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit {limit} exceeds {}",
            mamori_store::MAX_LIMIT
        )));
    }
    // An empty time range holds no events (as in search).
    let empty = matches!((p.from, p.to), (Some(f), Some(t)) if f > t);
    let req = SearchRequest {
        query: p.q.unwrap_or_default(),
        from: p.from,
        to: p.to,
        sort: SortOrder::default(),
        offset: 0,
        limit: if empty { 0 } else { limit },
        histogram: None,
    };
    if !empty {
        req.validate()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let s = Arc::clone(&st);
    let body = blocking(move || {
        let r = if empty {
            mamori_store::SearchResponse::default()
        } else {
            s.events
                .search(&req)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?
        };
        let mut out = String::new();
        if jsonl {
            for e in &r.hits {
                out.push_str(&crate::api::event_json(e).to_string());
                out.push('\n');
            }
        } else {
            out.push_str("seq,time,host,source,format,message\r\n");
            for e in &r.hits {
                out.push_str(&csv_row(e));
            }
        }
        Ok(out)
    })
    .await?;
    let (ct, name) = if jsonl {
        ("application/x-ndjson", "mamori-search.jsonl")
    } else {
        ("text/csv; charset=utf-8", "mamori-search.csv")
    };
    Ok((
        [
            (header::CONTENT_TYPE, ct.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Saved searches of one user (`console/searches/<user>` in the state database).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SavedSearch {
    name: String,
    q: String,
    /// Hours back from now; none = all time.
    #[serde(default)]
    range_hours: Option<u32>,
}

/// Saved searches kept per user at most.
const MAX_SAVED: usize = 100;

fn saved_key(user: &str) -> String {
    format!("console/searches/{user}")
}

fn read_saved(store: &dyn mamori_store::AlertStore, user: &str) -> Vec<SavedSearch> {
    store
        .kv_get(&saved_key(user))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub(super) async fn list_saved(
    auth: Authed,
    State(st): State<AppState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let s = Arc::clone(&st);
    let list = blocking(move || Ok(read_saved(&*s.alerts, &auth.name))).await?;
    Ok(axum::Json(serde_json::json!({ "searches": list })))
}

/// Saves (or replaces, by name) a search of the caller; an empty query deletes it.
pub(super) async fn save(
    auth: Authed,
    State(st): State<AppState>,
    b: Result<axum::Json<SavedSearch>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let axum::Json(b) = b.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if b.name.trim().is_empty() || b.name.chars().count() > 100 || b.q.chars().count() > 4000 {
        return Err(ApiError::BadRequest(
            "a saved search needs a name (up to 100 bytes) and a query up to 4000 bytes".into(),
        ));
    }
    let s = Arc::clone(&st);
    let list = blocking(move || {
        let mut list = read_saved(&*s.alerts, &auth.name);
        list.retain(|x| x.name != b.name);
        if !b.q.trim().is_empty() {
            if list.len() >= MAX_SAVED {
                return Err(ApiError::Conflict(format!(
                    "at most {MAX_SAVED} saved searches; delete one first"
                )));
            }
            list.push(b);
        }
        let bytes = serde_json::to_vec(&list).map_err(|e| ApiError::Internal(e.to_string()))?;
        s.alerts
            .kv_put(&saved_key(&auth.name), &bytes)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(list)
    })
    .await?;
    Ok(axum::Json(serde_json::json!({ "searches": list })))
}
