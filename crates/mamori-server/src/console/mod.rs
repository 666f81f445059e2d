//! The web console served at `/` on the HTTP port: compiled into the binary, works offline.
//!
//! # The key design decision: server-rendered pages over the same JSON API machines use
//!
//! Each page is an HTML shell rendered on the server from an auto-escaping template
//! (minijinja, HTML escaping on by file extension): navigation, labels in the user's language,
//! the CSRF token. The page's data is fetched by one small script (`console.js`) from the JSON
//! API (`/api/v1/…`) — the very routes, role checks and validation that tokens use — and put
//! into the page only as text (`textContent`, never `innerHTML`). So there is one
//! implementation of every action, one place where roles are enforced ([`Authed`]), and log
//! content, which is attacker-controlled, is never parsed as HTML. Charts use uPlot, vendored
//! with its licence in `console/assets/`.
//!
//! # Invariants
//!
//! - **No inline script or style**: every response carries a strict Content-Security-Policy
//!   (`default-src 'self'`, `frame-ancestors 'none'`), so even a missed escape cannot run.
//! - **Every state change needs the session's CSRF token** and a role that allows it; the
//!   server refuses (403), hidden buttons are only a courtesy.
//! - **No link is built from log data**: links are our own paths with numeric ids or
//!   URL-encoded query strings.
//!
//! [`Authed`]: crate::api::Authed

mod agents;
pub mod auth;
mod evidence;
pub mod i18n;
pub mod manage;
mod overview;
mod pages;
mod scans;
mod search;
mod settings;
pub mod users;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub use auth::ConsoleState;
pub use users::Role;

use crate::api::AppState;

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes (pages, assets, sign-in) and its API additions.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/alerts", get(pages::alerts))
        .route("/alerts/{id}", get(pages::alert))
        .route("/incidents", get(pages::incidents))
        .route("/incidents/{id}", get(pages::incident))
        .route("/search", get(pages::search))
        .route("/rules", get(pages::rules))
        .route("/settings", get(pages::settings))
        .route("/scans", get(scans::page))
        .route("/agents", get(agents::page))
        .route("/agents/{id}/revoke", post(agents::revoke))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/prefs", post(pages::prefs))
        .route("/assets/{name}", get(pages::asset))
        .route("/api/v1/console/overview", get(overview::overview))
        .route("/api/v1/search/export", get(search::export))
        .route(
            "/api/v1/console/searches",
            get(search::list_saved).post(search::save),
        )
        .route(
            "/api/v1/users",
            get(settings::list_users).post(settings::add_user),
        )
        .route("/api/v1/users/{name}", post(settings::change_user))
        .route(
            "/api/v1/incidents/{id}/evidence",
            post(evidence::export_incident),
        )
        .route("/api/v1/evidence/{file}", get(evidence::download))
        .route("/api/v1/alerts/assign", post(manage::assign))
        .route("/api/v1/console/assignees", get(manage::assignees))
        .route(
            "/api/v1/incidents/{id}/responses/{plan}/reject",
            post(manage::reject),
        )
        .route("/api/v1/console/rules", get(manage::rules))
        .route(
            "/api/v1/console/rules/override",
            post(manage::rule_override),
        )
        .route("/api/v1/console/rules/test", post(manage::rule_test))
        .route(
            "/api/v1/console/tokens",
            get(manage::tokens).post(manage::token_create),
        )
        .route(
            "/api/v1/console/tokens/{name}/revoke",
            post(manage::token_revoke),
        )
        .route(
            "/api/v1/console/response-policy",
            get(manage::policy).post(manage::policy_set),
        )
        .route(
            "/api/v1/console/identities",
            get(manage::identities).post(manage::identities_set),
        )
        .route("/api/v1/console/contacts", get(manage::contacts))
        .route(
            "/api/v1/console/contacts/{name}/test",
            post(manage::contact_test),
        )
        .layer(axum::middleware::map_response(security_headers))
}

/// The OpenAPI paths of the management routes ([`manage`]).
pub fn openapi_paths() -> serde_json::Value {
    let levels = ["informational", "low", "medium", "high", "critical"];
    let obj = serde_json::json!({ "type": "object" });
    let ok = |d: &str| crate::openapi::ok_object(d);
    let id = serde_json::json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX });
    let path = |n: &str, s: &serde_json::Value| serde_json::json!({ "name": n, "in": "path", "required": true, "schema": s });
    let body = |schema: serde_json::Value| serde_json::json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    let token_name = serde_json::json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._-]+$" });
    let mut lv: Vec<&str> = levels.to_vec();
    lv.push("default");
    serde_json::json!({
        "/api/v1/alerts/assign": { "post": { "summary": "Assign alerts (one or up to 1000) to a console user; a null or empty `assignee` unassigns. Recorded in the chain of custody.",
            "requestBody": body(serde_json::json!({ "type": "object", "additionalProperties": false, "required": ["ids"], "properties": {
                "ids": { "type": "array", "minItems": 1, "maxItems": 1000, "items": id.clone() },
                "assignee": { "type": ["string", "null"], "maxLength": 64 } } })),
            "responses": ok("What was assigned") } },
        "/api/v1/console/assignees": { "get": { "summary": "Console users alerts can be assigned to (enabled ones).", "responses": ok("Names") } },
        "/api/v1/incidents/{id}/responses/{plan}/reject": { "post": { "summary": "Reject a suggested response action with a reason: it is dropped without running; recorded on the incident and in the chain of custody.",
            "parameters": [ path("id", &id), path("plan", &id) ],
            "requestBody": body(serde_json::json!({ "type": "object", "additionalProperties": false, "required": ["reason"], "properties": { "reason": { "type": "string", "minLength": 1, "maxLength": 2000, "pattern": "\\S" } } })),
            "responses": ok("The rejected plan") } },
        "/api/v1/console/rules": { "get": { "summary": "Every rule, loaded or disabled in the console, with hits (alert occurrences), level override and whether it is on.", "responses": ok("Rules") } },
        "/api/v1/console/rules/override": { "post": { "summary": "Switch a rule on or off and/or override its level (`default`: the file's). Saved in state.db, applied to detection at once, kept across restarts.",
            "requestBody": body(serde_json::json!({ "type": "object", "additionalProperties": false, "required": ["rule_id"], "properties": {
                "rule_id": { "type": "string" }, "enabled": { "type": ["boolean", "null"] }, "level": { "type": ["string", "null"], "enum": [lv[0], lv[1], lv[2], lv[3], lv[4], lv[5], null] } } })),
            "responses": ok("The rule's state and the reload report") } },
        "/api/v1/console/rules/test": { "post": { "summary": "Run a loaded rule (`rule_id`) or a rule's YAML against the latest `last` stored events (1 to 100000, default 1000); answers the count and the first 100 matching events.",
            "requestBody": body(serde_json::json!({ "type": "object", "additionalProperties": false, "properties": {
                "rule_id": { "type": ["string", "null"] }, "yaml": { "type": ["string", "null"], "maxLength": 262144 }, "last": { "type": ["integer", "null"], "minimum": 1, "maximum": 100000 } } })),
            "responses": ok("Matches") } },
        "/api/v1/console/tokens": {
            "get": { "summary": "Active API tokens, names and creation times (admin only).", "responses": ok("Tokens") },
            "post": { "summary": "Create an API token (admin only); the answer is the only time it is shown.",
                "requestBody": body(serde_json::json!({ "type": "object", "additionalProperties": false, "required": ["name"], "properties": { "name": token_name } })),
                "responses": ok("The token") } },
        "/api/v1/console/tokens/{name}/revoke": { "post": { "summary": "Revoke an API token (admin only).",
            "parameters": [ path("name", &token_name) ], "responses": ok("Revoked") } },
        "/api/v1/console/response-policy": {
            "get": { "summary": "The response policy in force (modes per level and rule, allow-list, TTLs) and whether it was set in the console.", "responses": ok("Policy") },
            "post": { "summary": "Replace the response policy (admin only). Saved in state.db, it overrides `[response.policy]` of the configuration file, now and after a restart.",
                "requestBody": body(obj), "responses": ok("Policy") } },
        "/api/v1/console/identities": {
            "get": { "summary": "The identity directory (`[analytics] identities`, CSV or JSON: kind,id,person,status,end_date,created) as text, with its count or why it does not parse.", "responses": ok("Directory") },
            "post": { "summary": "Replace the identity directory (admin only): checked with the analytics parser, written over the configured file (previous kept as .bak), applied by the hot reload.",
                "requestBody": body(serde_json::json!({ "type": "object", "additionalProperties": false, "required": ["text"], "properties": { "text": { "type": "string", "maxLength": 4194304 } } })),
                "responses": ok("Count") } },
        "/api/v1/console/contacts": { "get": { "summary": "Notification contacts, channels (name and kind; never a secret) and escalation steps of `[notify]`.", "responses": ok("Contacts") } },
        "/api/v1/console/contacts/{name}/test": { "post": { "summary": "Send a test notification to a contact through each of its channels now (admin only); answers every delivery with its error.",
            "parameters": [ path("name", &serde_json::json!({ "type": "string", "minLength": 1 })) ], "responses": ok("Deliveries") } }
    })
}

/// Security headers on every console response (pages, assets and the console's API routes).
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}
