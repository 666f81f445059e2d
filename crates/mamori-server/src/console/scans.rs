//! The scans page (`/scans`): the runs of `[scan]` and the latest findings with their
//! explanation and fix in the reader's language, rendered on the server from the same
//! `ScanService` the `/api/v1/scans` route reads. Scanned sites' text (evidence, titles from
//! templates) is attacker-controlled: the template autoescapes it; the page has no script.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde_json::{json, Value};

use crate::api::{blocking, ApiError, AppState};

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
        ..super::pages::chrome(&user, lang, "scans", "/scans"),
        ..context! {
        enabled => ov["enabled"].as_bool().unwrap_or(false),
        runs => ov["scans"].clone(),
        rows => rows(&ov, l),
        }
    };
    super::pages::render("scans.html", ctx)
}

#[cfg(test)]
mod tests {
    use super::super::i18n::Lang;
    use super::*;

    #[test]
    fn the_page_escapes_what_scanned_sites_said() {
        let ov = json!({ "scans": [{ "id": 1, "started": "2026-12-01T00:00:00Z", "profile": "safe", "worst": "high", "findings": 1,
            "report": { "targets": [{ "findings": [{ "severity": "high", "location": "https://a/<b>",
                "evidence": "<script>alert(1)</script>",
                "title": { "en": "T", "ja": "題" }, "explain": { "en": "E", "ja": "説明" }, "fix": { "en": "F", "ja": "対策" } }] }] } }] });
        let r = rows(&ov, "ja");
        let user = super::super::pages::test_user(super::super::users::Role::Analyst);
        let html = super::super::pages::env()
            .get_template("scans.html")
            .unwrap()
            .render(context! { ..super::super::pages::chrome(&user, Lang::Ja, "scans", "/scans"), ..context! { enabled => true, runs => ov["scans"].clone(), rows => r } })
            .unwrap();
        assert!(
            html.contains("class=\"on\" id=\"nav-scans\"")
                && html.contains("id=\"sign-out\"")
                && html.contains("value=\"&#x2f;scans\""),
            "{html}"
        );
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;") && html.contains("対策") && html.contains("題"));
        assert!(html.contains("lvl-high"));
    }
}
