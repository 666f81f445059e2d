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

pub mod auth;
mod evidence;
pub mod i18n;
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
        .layer(axum::middleware::map_response(security_headers))
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
