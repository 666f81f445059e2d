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
    let req = SearchRequest {
        query: p.q.unwrap_or_default(),
        from: p.from,
        to: p.to,
        sort: SortOrder::default(),
        offset: 0,
        limit: p
            .limit
            .unwrap_or(mamori_store::MAX_LIMIT)
            .min(mamori_store::MAX_LIMIT),
        histogram: None,
    };
    req.validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let s = Arc::clone(&st);
    let body = blocking(move || {
        let r = s
            .events
            .search(&req)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
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
