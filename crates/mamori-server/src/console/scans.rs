//! The scans page (`/scans`): the runs of `[scan]` and the latest findings with their
//! explanation and fix in the reader's language, rendered on the server from the same
//! `ScanService` the `/api/v1/scans` route reads. Scanned sites' text (evidence, titles from
//! templates) is attacker-controlled: the template autoescapes it; the page has no script.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use minijinja::{context, Environment};
use serde_json::{json, Value};

use super::i18n::Lang;
use crate::api::{blocking, ApiError, AppState};

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        if let Err(err) = e.add_template(
            "scans.html",
            include_str!("../../console/templates/scans.html"),
        ) {
            tracing::error!(error = %err, "console template scans.html does not compile");
        }
        e
    })
}

/// The rows of the newest run's findings, texts in `lang`.
fn rows(overview: &Value, lang: &str) -> Vec<Value> {
    overview["scans"][0]["report"]["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["findings"].as_array().into_iter().flatten())
        .map(|f| {
            json!({
                "severity": f["severity"], "title": f["title"][lang], "explain": f["explain"][lang],
                "fix": f["fix"][lang], "location": f["location"], "evidence": f["evidence"],
            })
        })
        .collect()
}

pub(super) async fn page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let user = match super::pages::page_user(&st, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = super::pages::lang_of(Some(&user), &headers);
    let svc = Arc::clone(&st.scans);
    let ov = match blocking(move || {
        svc.overview(20)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let l = lang.as_str();
    let ctx = context! {
        lang => l,
        ja => lang == Lang::Ja,
        version => env!("CARGO_PKG_VERSION"),
        enabled => ov["enabled"].as_bool().unwrap_or(false),
        runs => ov["scans"].clone(),
        rows => rows(&ov, l),
    };
    match env().get_template("scans.html").and_then(|t| t.render(ctx)) {
        Ok(s) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            s,
        )
            .into_response(),
        Err(e) => ApiError::Internal(format!("console template scans.html: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_scanned_sites_said() {
        let ov = json!({ "scans": [{ "id": 1, "started": "2026-12-01T00:00:00Z", "profile": "safe", "worst": "high", "findings": 1,
            "report": { "targets": [{ "findings": [{ "severity": "high", "location": "https://a/<b>",
                "evidence": "<script>alert(1)</script>",
                "title": { "en": "T", "ja": "題" }, "explain": { "en": "E", "ja": "説明" }, "fix": { "en": "F", "ja": "対策" } }] }] } }] });
        let r = rows(&ov, "ja");
        let html = env()
            .get_template("scans.html")
            .unwrap()
            .render(context! { lang => "ja", ja => true, version => "0", enabled => true, runs => ov["scans"].clone(), rows => r })
            .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;") && html.contains("対策") && html.contains("題"));
        assert!(html.contains("lvl-high"));
    }
}
