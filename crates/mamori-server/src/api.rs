//! The HTTP API: `fn router(state) -> Router`.
//!
//! * Authentication is an extractor ([`Authed`]): a handler that takes it cannot run without a
//!   valid `Authorization: Bearer <token>`. Every route takes it except `GET /api/v1/health`.
//! * One error type ([`ApiError`]): client mistakes get a clear message; internal causes are
//!   logged and answered with a generic 500, never sent to the client.
//! * Every error, whatever produced it (a handler, an extractor's rejection, an unknown route),
//!   is answered with one JSON body `{"error": "…"}` (see [`json_errors`]).
//! * Ingest answers 200 only after its events are durable (the pipeline's ack). The body is
//!   parsed as it is stored, [`INGEST_BATCH`] events at a time, so memory does not grow with
//!   the number of events. Limits are checked before anything is stored: 413 past the size
//!   limit (compressed or decompressed) or past `max_events_per_request`, 415 for a
//!   `Content-Encoding` other than gzip, 400 for a JSON array that is not valid JSON. JSON
//!   lines are independent records: a line that is not an event is reported in `errors` with
//!   its line number and the other lines are stored (the same rule as upload and `hunt`); only
//!   when no line at all is an event is the answer 400.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use mamori_event::{Event, FieldName, Interner, Level, Origin, RuleId, Transport, Value};
use mamori_store::{
    Ack, AlertFilter, AlertId, AlertStatus, AlertStore, EventStore, SearchRequest, SortOrder,
    StoredEvent,
};
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};

use crate::config::HttpConfig;
use crate::metrics::{Metrics, SourceKind};
use crate::pipeline::Sink;
use crate::rules::RulesHandle;
use crate::tokens::TokenCache;

/// What every handler can reach.
pub struct StateInner {
    pub events: Arc<dyn EventStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub sink: Sink,
    pub rules: Option<Arc<RulesHandle>>,
    pub metrics: Arc<Metrics>,
    pub tokens: TokenCache,
    pub http: HttpConfig,
    pub uploads_dir: PathBuf,
    pub started: Instant,
    pub incidents: Option<Arc<crate::incidents::IncidentService>>,
    /// The web console's sign-in state (sessions themselves are in `alerts`' key/value table).
    pub console: crate::console::ConsoleState,
    /// Source health (`[sources]`), when on.
    pub sources: Option<Arc<crate::source_health::SourceHealth>>,
    /// `[[backup]]` checks: results, history, run now.
    pub backups: Arc<crate::backups::BackupService>,
    /// `[scan]`: scheduled scans of the allow-listed targets, stored results.
    pub scans: Arc<crate::scans::ScanService>,
    /// The data directory (reports read the vault there).
    pub data_dir: PathBuf,
    /// Host agents (`mamori agent`): enrolment, batches, list, revocation.
    pub agents: Option<Arc<crate::agents::Agents>>,
}

pub type AppState = Arc<StateInner>;

/// The API routes.
pub fn router(state: AppState) -> Router {
    let max_body = state.http.max_body_bytes;
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/ingest", post(ingest))
        .route("/api/v1/upload", post(upload))
        .route("/api/v1/search", get(search_get).post(search_post))
        .route("/api/v1/events/{seq}", get(event_get))
        .route("/api/v1/alerts", get(alerts_list))
        .route("/api/v1/alerts/{id}", get(alert_get))
        .route("/api/v1/alerts/{id}/ack", post(alert_ack))
        .route("/api/v1/rules", get(rules_list))
        .route("/api/v1/rules/reload", post(rules_reload))
        .route("/api/v1/sources", get(sources_list))
        .route("/metrics", get(metrics))
        .merge(crate::api_incidents::routes())
        .merge(crate::api_reports::routes())
        .merge(crate::backups::routes())
        .merge(crate::scans::routes())
        .merge(crate::agents::routes())
        .merge(crate::console::routes())
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        // Bodies are limited by the handlers themselves (ingest and upload have different
        // limits, and ingest also limits the decompressed size).
        .layer(axum::extract::DefaultBodyLimit::max(max_body.max(64 << 10)))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An API error: status plus a message for the client.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    /// Authenticated but not allowed (a viewer changing state, a missing CSRF token).
    Forbidden(String),
    BadRequest(String),
    NotFound(String),
    /// The request conflicts with the current state (a refused phase change).
    Conflict(String),
    TooLarge(String),
    /// A `Content-Encoding` the server does not decode (415).
    UnsupportedEncoding(String),
    /// Well-formed but not acceptable (422), e.g. a JSON body of the wrong shape.
    Unprocessable(String),
    /// Every record of a request was rejected (400), each listed with its line.
    Rejected {
        message: String,
        errors: JsonValue,
    },
    Timeout,
    Unavailable(String),
    /// The disk is full: nothing was stored (507).
    InsufficientStorage(String),
    /// Logged; the client sees only "internal error".
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut extra = None;
        let (status, msg) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or invalid API token (Authorization: Bearer <token>; create one with `mamori token create`)".to_owned(),
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::UnsupportedEncoding(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::Rejected { message, errors } => {
                extra = Some(errors);
                (StatusCode::BAD_REQUEST, message)
            }
            ApiError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time".to_owned(),
            ),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::InsufficientStorage(m) => (StatusCode::INSUFFICIENT_STORAGE, m),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error answering an API request");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned())
            }
        };
        let mut body = json!({ "error": msg });
        if let Some(errors) = extra {
            body["errors"] = errors;
        }
        let mut r = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path().escape_default()))
}

/// Gives every error response the one JSON error body, whatever produced it: axum's extractor
/// rejections (bad query string, path or JSON body: text/plain), 405 (empty body).
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let keep = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // (A console page answered with an error status, e.g. a refused sign-in, stays a page.)
    if !(status.is_client_error() || status.is_server_error()) || keep {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let msg = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&json!({ "error": msg })).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

fn store_err(e: mamori_store::Error) -> ApiError {
    match e {
        mamori_store::Error::Query { .. } | mamori_store::Error::InvalidRequest(_) => {
            ApiError::BadRequest(e.to_string())
        }
        mamori_store::Error::NotFound { .. } => ApiError::NotFound(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))?
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// The caller: an API token's name (machines) or a console user signed in with a session
/// cookie. Taking this extractor is what makes a route authenticated.
pub struct Authed {
    pub name: String,
    /// API tokens act as admin; console users have their own role, enforced here (a viewer's
    /// change is refused before any handler runs) and by routes that need more.
    pub role: crate::console::Role,
}

impl Authed {
    /// Refuses the request unless the caller is an admin (user management, response policy).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == crate::console::Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "only an admin may do this (you are `{}`)",
                self.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            // No token: the console's session cookie (+ CSRF header on changes).
            return crate::console::auth::authenticate_api(
                &parts.method,
                parts.uri.path(),
                &parts.headers,
                state,
            )
            .await;
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(ApiError::Unauthorized)?
            .trim()
            .to_owned();
        let st = Arc::clone(state);
        let name = tokio::task::spawn_blocking(move || st.tokens.verify(&*st.alerts, &token))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        name.map(|name| Authed {
            name,
            role: crate::console::Role::Admin,
        })
        .ok_or(ApiError::Unauthorized)
    }
}

// ---------------------------------------------------------------------------------------------
// Health, OpenAPI, metrics

/// `ok`, or `degraded` with the reasons (a disk full under the event log, the index or SQLite;
/// a failing search index). Always 200: the server still answers; monitors read `status`.
async fn health(State(st): State<AppState>) -> Json<JsonValue> {
    let s = Arc::clone(&st);
    let reasons = tokio::task::spawn_blocking(move || {
        crate::diskfull::degraded_reasons(&s.metrics, &*s.events)
    })
    .await
    .unwrap_or_else(|e| vec![format!("health check failed: {e}")]);
    Json(json!({
        "status": if reasons.is_empty() { "ok" } else { "degraded" },
        "reasons": reasons,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": st.started.elapsed().as_secs(),
    }))
}

async fn openapi(_auth: Authed) -> Json<JsonValue> {
    Json(crate::openapi::document())
}

/// Every log source with its last-seen time, 48 hourly counts and health state.
async fn sources_list(_auth: Authed, State(st): State<AppState>) -> Result<Response, ApiError> {
    let Some(h) = st.sources.clone() else {
        return Err(ApiError::NotFound(
            "source health is off ([sources] enabled = false)".into(),
        ));
    };
    let r = blocking(move || h.report(chrono::Utc::now()).map_err(store_err)).await?;
    Ok(Json(r).into_response())
}

async fn metrics(_auth: Authed, State(st): State<AppState>) -> Result<Response, ApiError> {
    let s = Arc::clone(&st);
    let stats = blocking(move || s.events.stats().map_err(store_err)).await?;
    let (rules, corr) = st
        .rules
        .as_ref()
        .map(|r| {
            let rep = r.report();
            (rep.rules as f64, rep.correlations as f64)
        })
        .unwrap_or((0.0, 0.0));
    let mut body = st.metrics.render(&[
        (
            "mamori_queue_depth",
            "Batches waiting between the sources and storage.",
            st.sink.depth() as f64,
        ),
        (
            "mamori_store_events",
            "Events in the store.",
            stats.events as f64,
        ),
        (
            "mamori_store_bytes",
            "Bytes of the event log.",
            stats.bytes as f64,
        ),
        (
            "mamori_index_lag_events",
            "Stored events not yet searchable.",
            stats
                .last_seq
                .unwrap_or(0)
                .saturating_sub(stats.indexed_seq) as f64,
        ),
        ("mamori_rules_loaded", "Sigma rules loaded.", rules),
        (
            "mamori_correlations_loaded",
            "Sigma correlation rules loaded.",
            corr,
        ),
    ]);
    st.metrics.net.render(&mut body);
    if let Some(c) = st.metrics.cluster.get() {
        c.render(&mut body);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

// ---------------------------------------------------------------------------------------------
// Ingest

/// How much of an oversized body is read and discarded before answering 413.
const DRAIN_LIMIT: usize = 16 << 20;

/// Reads a body up to `max` bytes within the configured time.
async fn read_body(body: Body, max: usize, timeout: Duration) -> Result<Vec<u8>, ApiError> {
    let collect = async move {
        let mut body = body;
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if e.to_string().contains("length limit") {
                    ApiError::TooLarge(format!("request body exceeds {max} bytes"))
                } else {
                    ApiError::BadRequest(format!("cannot read request body: {e}"))
                }
            })?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max {
                    // Read (and discard) a bounded amount more so the client, still sending,
                    // gets the 413 instead of a reset connection.
                    let mut drained = out.len() + data.len();
                    while drained < DRAIN_LIMIT {
                        match body.frame().await {
                            Some(Ok(f)) => {
                                drained += f.data_ref().map_or(0, |d| d.len());
                            }
                            _ => break,
                        }
                    }
                    return Err(ApiError::TooLarge(format!(
                        "request body exceeds {max} bytes"
                    )));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, collect)
        .await
        .map_err(|_| ApiError::Timeout)?
}

fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("invalid gzip body: {e}")))?;
    if out.len() > max {
        return Err(ApiError::TooLarge(format!(
            "decompressed body exceeds {max} bytes"
        )));
    }
    Ok(out)
}

/// Events per pipeline batch when an ingest request is stored: a request's memory is its
/// body plus one batch, however many events it holds (issue #15 finding 6).
pub const INGEST_BATCH: usize = 2000;
/// Per-line errors listed in an ingest response (all are counted).
const MAX_LISTED_ERRORS: usize = 100;

/// One rejected line (JSON lines) or element (JSON array) of an ingest body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    /// 1-based line (JSON lines) or element (array) number.
    pub line: usize,
    pub error: String,
}

/// The events of an ingest body, or why the body as a whole is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not parseable as a whole (a JSON array with a syntax error); nothing is stored.
    Malformed(String),
    /// More events than allowed; nothing is stored.
    TooMany { count: usize, max: usize },
}

/// Counts the records of an ingest body without building them, and checks an array's syntax:
/// the limits are enforced before anything is stored.
fn count_records(body: &[u8]) -> Result<usize, BodyError> {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(n)
        }
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(0),
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let n = serde::Deserializer::deserialize_seq(&mut de, Count)
                .and_then(|n| de.end().map(|_| n))
                .map_err(|e| BodyError::Malformed(format!("invalid JSON array: {e}")))?;
            Ok(n)
        }
        Some(_) => Ok(body
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
            .count()),
    }
}

/// Parses a JSON array or JSON lines body, handing events to `emit` as they are parsed and
/// returning the lines (or elements) that are not events. Lines are independent: a bad one is
/// reported with its number and the others are kept. An array must be valid JSON as a whole.
pub fn parse_ingest_stream(
    body: &[u8],
    peer: SocketAddr,
    max_events: usize,
    emit: &mut dyn FnMut(Event) -> Result<(), String>,
) -> Result<Vec<LineError>, IngestStop> {
    let count = count_records(body).map_err(IngestStop::Body)?;
    if count > max_events {
        return Err(IngestStop::Body(BodyError::TooMany {
            count,
            max: max_events,
        }));
    }
    let origin = Origin::Network {
        peer,
        transport: Transport::Http,
    };
    let mut names = Interner::new();
    let mut errors = Vec::new();
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Ok(errors);
    };
    if body[first] == b'[' {
        struct Each<'a> {
            origin: Origin,
            names: &'a mut Interner,
            errors: &'a mut Vec<LineError>,
            emit: &'a mut dyn FnMut(Event) -> Result<(), String>,
        }
        impl<'de> serde::de::Visitor<'de> for Each<'_> {
            type Value = Result<(), String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut i = 0;
                while let Some(v) = seq.next_element::<JsonValue>()? {
                    i += 1;
                    let raw = serde_json::to_vec(&v).unwrap_or_default();
                    match mamori_ingest::parse_json_value(&v, raw, self.origin.clone(), self.names)
                    {
                        Ok(ev) => {
                            if let Err(e) = (self.emit)(ev) {
                                return Ok(Err(e));
                            }
                        }
                        Err(e) => self.errors.push(LineError {
                            line: i,
                            error: format!("element {i}: {e}"),
                        }),
                    }
                }
                Ok(Ok(()))
            }
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let each = Each {
            origin,
            names: &mut names,
            errors: &mut errors,
            emit,
        };
        // The syntax was checked by `count_records`; an error here is a pipeline failure.
        match serde::Deserializer::deserialize_seq(&mut de, each) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(IngestStop::Pipeline(e)),
            Err(e) => {
                return Err(IngestStop::Body(BodyError::Malformed(format!(
                    "invalid JSON array: {e}"
                ))))
            }
        }
        return Ok(errors);
    }
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match mamori_ingest::parse_json_object(line, origin.clone(), &mut names) {
            Ok(ev) => emit(ev).map_err(IngestStop::Pipeline)?,
            Err(e) => errors.push(LineError {
                line: i + 1,
                error: format!("line {}: {e}", i + 1),
            }),
        }
    }
    Ok(errors)
}

/// Why an ingest request stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestStop {
    Body(BodyError),
    /// The pipeline refused a batch (shutting down, storage failing).
    Pipeline(String),
}

/// Parses a whole body into events (tests and tools; the server streams instead).
pub fn parse_ingest_body(
    body: &[u8],
    peer: SocketAddr,
) -> Result<(Vec<Event>, Vec<LineError>), IngestStop> {
    let mut out = Vec::new();
    let errors = parse_ingest_stream(body, peer, usize::MAX, &mut |ev| {
        out.push(ev);
        Ok(())
    })?;
    Ok((out, errors))
}

/// The body's `Content-Encoding`: gzip or none; anything else is refused (415), never read as
/// identity.
fn content_encoding(headers: &HeaderMap) -> Result<bool, ApiError> {
    let mut gz = false;
    for v in headers.get_all(header::CONTENT_ENCODING) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::UnsupportedEncoding("Content-Encoding is not ASCII".into()))?;
        for token in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
                if gz {
                    return Err(ApiError::UnsupportedEncoding(
                        "gzip applied twice is not supported".into(),
                    ));
                }
                gz = true;
            } else if !token.eq_ignore_ascii_case("identity") {
                return Err(ApiError::UnsupportedEncoding(format!(
                    "unsupported Content-Encoding `{}` (use gzip or none)",
                    token.escape_default()
                )));
            }
        }
    }
    Ok(gz)
}

/// The `Idempotency-Key` of an ingest request: 1–128 characters of `A–Z a–z 0–9 . _ : -`.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v.to_str().unwrap_or("");
    if k.is_empty()
        || k.len() > 128
        || !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(ApiError::BadRequest(
            "Idempotency-Key: 1 to 128 characters of A-Z a-z 0-9 . _ : -".into(),
        ));
    }
    Ok(Some(k.to_owned()))
}

async fn ingest(
    auth: Authed,
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<JsonValue>, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let max = st.http.max_body_bytes;
    let c = st.metrics.source(SourceKind::Http);
    let gz = content_encoding(&headers)?;
    // Scoped by the caller's name: two senders choosing the same key never collide.
    let ingest_id = idempotency_key(&headers)?.map(|k| format!("{}/{k}", auth.name));
    let raw = match read_body(body, max, Duration::from_secs(st.http.body_timeout_secs)).await {
        Ok(b) => b,
        Err(e) => {
            if matches!(e, ApiError::TooLarge(_)) {
                c.oversized.fetch_add(1, Relaxed);
            }
            return Err(e);
        }
    };
    c.bytes_in.fetch_add(raw.len() as u64, Relaxed);
    let max_events = st.http.max_events_per_request;
    let st2 = Arc::clone(&st);
    let (outcome, stored) = blocking(move || {
        let text = if gz { gunzip(&raw, max)? } else { raw };
        let mut batch = Vec::with_capacity(INGEST_BATCH.min(max_events));
        let mut stored: Option<(u64, u64, usize)> = None;
        let mut send = |batch: Vec<Event>| -> Result<(), String> {
            let n = batch.len();
            if st2.metrics.storage.refuse_now() {
                // Disk full: refused at once, never queued (nothing of it is acknowledged).
                st2.metrics
                    .storage
                    .refused_events
                    .fetch_add(n as u64, Relaxed);
                return Err(crate::diskfull::REFUSED.to_owned());
            }
            let ack = st2.sink.send_durable_blocking(batch, SourceKind::Http)?;
            stored = Some(match stored {
                None => (ack.first_seq, ack.last_seq, n),
                Some((f, _, k)) => (f, ack.last_seq, k + n),
            });
            Ok(())
        };
        let id_field = FieldName::new(mamori_cluster::INGEST_ID_FIELD);
        let mut n = 0u64;
        let mut outcome = parse_ingest_stream(&text, peer, max_events, &mut |mut ev| {
            // Only this route writes the ingest id; a sender's own is dropped, never believed.
            ev.fields_mut().retain(|(f, _)| *f != id_field);
            if let Some(id) = &ingest_id {
                ev.push(id_field.clone(), Value::str(format!("{id}/{n}")));
                n += 1;
            }
            batch.push(ev);
            if batch.len() >= INGEST_BATCH {
                send(std::mem::take(&mut batch))?;
            }
            Ok(())
        });
        if outcome.is_ok() && !batch.is_empty() {
            if let Err(e) = send(batch) {
                outcome = Err(IngestStop::Pipeline(e));
            }
        }
        Ok((outcome, stored))
    })
    .await?;
    let (first, last, accepted) = stored.unwrap_or((0, 0, 0));
    let errors = match outcome {
        Ok(errors) => errors,
        Err(IngestStop::Body(BodyError::Malformed(m))) => {
            c.malformed.fetch_add(1, Relaxed);
            return Err(ApiError::BadRequest(m));
        }
        Err(IngestStop::Body(BodyError::TooMany { count, max })) => {
            c.oversized.fetch_add(1, Relaxed);
            return Err(ApiError::TooLarge(format!(
                "{count} events in one request; at most {max} (http.max_events_per_request), nothing was stored"
            )));
        }
        Err(IngestStop::Pipeline(e)) => {
            let m = format!("stored {accepted} events, then: {e}");
            return Err(if e == crate::diskfull::REFUSED {
                ApiError::InsufficientStorage(m)
            } else {
                ApiError::Unavailable(m)
            });
        }
    };
    c.malformed.fetch_add(errors.len() as u64, Relaxed);
    st.metrics
        .net
        .ingest_rejected
        .fetch_add(errors.len() as u64, Relaxed);
    let listed: Vec<&LineError> = errors.iter().take(MAX_LISTED_ERRORS).collect();
    if accepted == 0 && !errors.is_empty() {
        return Err(ApiError::Rejected {
            message: format!(
                "no event accepted: {} of {} lines rejected ({})",
                errors.len(),
                errors.len(),
                errors[0].error
            ),
            errors: json!(listed),
        });
    }
    let mut out = json!({ "accepted": accepted, "rejected": errors.len(), "errors": listed });
    if accepted > 0 {
        out["first_seq"] = json!(first);
        out["last_seq"] = json!(last);
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadParams {
    /// The original file name (kept for the record; sanitised).
    name: String,
    /// Force a format instead of detecting it.
    format: Option<String>,
}

/// `[A-Za-z0-9._-]` only, no leading dot, at most 100 characters: never a path.
fn sanitize_name(name: &str) -> String {
    let s: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(100)
        .collect();
    let s = s.trim_start_matches('.').to_owned();
    if s.is_empty() {
        "upload".to_owned()
    } else {
        s
    }
}

async fn upload(
    _auth: Authed,
    State(st): State<AppState>,
    Query(p): Query<UploadParams>,
    body: Body,
) -> Result<Json<JsonValue>, ApiError> {
    use std::io::Write as _;
    let format = match &p.format {
        None => None,
        Some(f) => Some(
            mamori_event::Format::parse(f)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown format `{f}`")))?,
        ),
    };
    let max = st.http.max_upload_bytes;
    std::fs::create_dir_all(&st.uploads_dir)
        .map_err(|e| ApiError::Internal(format!("cannot create uploads dir: {e}")))?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let name = sanitize_name(&p.name);
    // Concurrent uploads of one name in the same millisecond get distinct files (was a 500).
    let (path, mut file) = {
        let mut n = 0u32;
        loop {
            let path = if n == 0 {
                st.uploads_dir.join(format!("{stamp}-{name}"))
            } else {
                st.uploads_dir.join(format!("{stamp}-{n}-{name}"))
            };
            match std::fs::File::create_new(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
                Err(e) => {
                    return Err(ApiError::Internal(format!(
                        "cannot create {}: {e}",
                        path.display()
                    )))
                }
            }
        }
    };
    // Stream the body to disk (an upload may be larger than memory should hold).
    let copy = async {
        let mut body = body;
        let mut n = 0usize;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::BadRequest(format!("cannot read body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                n += data.len();
                if n > max {
                    return Err(ApiError::TooLarge(format!("upload exceeds {max} bytes")));
                }
                file.write_all(&data)
                    .map_err(|e| ApiError::Internal(format!("cannot write upload: {e}")))?;
            }
        }
        file.sync_all()
            .map_err(|e| ApiError::Internal(format!("cannot sync upload: {e}")))?;
        Ok(n)
    };
    let res = tokio::time::timeout(Duration::from_secs(st.http.body_timeout_secs * 20), copy)
        .await
        .map_err(|_| ApiError::Timeout)
        .and_then(|r| r);
    let size = match res {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    st.metrics
        .source(SourceKind::Upload)
        .bytes_in
        .fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed);
    let sink = st.sink.clone();
    let p2 = path.clone();
    let report = blocking(move || {
        let opts = mamori_ingest::ReadOptions {
            format,
            ..Default::default()
        };
        let mut batch = Vec::new();
        let mut failed: Option<String> = None;
        let mut stored = 0u64;
        let report = mamori_ingest::read_file(&p2, &opts, &mut |ev| {
            if failed.is_some() {
                return;
            }
            batch.push(ev);
            if batch.len() >= 1000 {
                let n = batch.len() as u64;
                match sink.send_durable_blocking(std::mem::take(&mut batch), SourceKind::Upload) {
                    Ok(_) => stored += n,
                    Err(e) => failed = Some(e),
                }
            }
        });
        if failed.is_none() && !batch.is_empty() {
            let n = batch.len() as u64;
            match sink.send_durable_blocking(batch, SourceKind::Upload) {
                Ok(_) => stored += n,
                Err(e) => failed = Some(e),
            }
        }
        Ok((report, stored, failed))
    })
    .await?;
    let (report, stored, failed) = report;
    if let Some(e) = failed {
        return Err(ApiError::Unavailable(format!(
            "stored {stored} events, then: {e}"
        )));
    }
    Ok(Json(json!({
        "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "bytes": size,
        "format": report.format.map(|f| f.as_str()),
        "events": stored,
        "skipped": report.skipped,
        "error_count": report.error_count,
        "errors": report.errors.iter().take(20).map(|e| e.to_string()).collect::<Vec<_>>(),
    })))
}

// ---------------------------------------------------------------------------------------------
// Search

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    sort: Option<SortOrder>,
    offset: Option<usize>,
    limit: Option<usize>,
    /// Histogram bucket width in seconds.
    histogram: Option<f64>,
}

pub(crate) fn event_json(e: &StoredEvent) -> JsonValue {
    json!({
        "seq": e.seq,
        "received_at": e.received_at,
        "time": e.time(),
        "timestamp_raw": e.event.timestamp_raw,
        "format": e.event.format.as_str(),
        "source": e.event.origin.to_string(),
        "host": e.event.host(),
        "fields": e.event.fields_json(),
        "raw": String::from_utf8_lossy(&e.event.raw),
    })
}

async fn run_search(st: AppState, req: SearchRequest) -> Result<Json<JsonValue>, ApiError> {
    let max_offset = crate::openapi::SEARCH_MAX_OFFSET;
    if req.offset > max_offset {
        return Err(ApiError::BadRequest(format!(
            "offset {} exceeds {max_offset}",
            req.offset
        )));
    }
    if req.limit > mamori_store::MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit {} exceeds {}",
            req.limit,
            mamori_store::MAX_LIMIT
        )));
    }
    if let (Some(f), Some(t)) = (req.from, req.to) {
        if f > t {
            // An empty time range holds no events (not a malformed request).
            return Ok(Json(json!({ "total": 0, "hits": [], "histogram": [] })));
        }
    }
    req.validate().map_err(store_err)?;
    let from = req.from;
    let mut r = blocking(move || st.events.search(&req).map_err(store_err)).await?;
    // Buckets are aligned to multiples of their width; the first one may start before
    // `from` (even before year 0 for huge widths): report it from where the range starts.
    if let Some(from) = from {
        for b in &mut r.histogram {
            if b.start < from {
                b.start = from;
            }
        }
    }
    Ok(Json(json!({
        "total": r.total,
        "hits": r.hits.iter().map(event_json).collect::<Vec<_>>(),
        "histogram": r.histogram,
    })))
}

async fn search_get(
    _auth: Authed,
    State(st): State<AppState>,
    Query(p): Query<SearchParams>,
) -> Result<Json<JsonValue>, ApiError> {
    let histogram = match p.histogram {
        None => None,
        Some(s) if (0.001..1e10).contains(&s) => Some(TimeDelta::milliseconds((s * 1000.0) as i64)),
        Some(s) => {
            return Err(ApiError::BadRequest(format!(
                "histogram width {s} s is out of range"
            )))
        }
    };
    let req = SearchRequest {
        query: p.q.unwrap_or_default(),
        from: p.from,
        to: p.to,
        sort: p.sort.unwrap_or_default(),
        offset: p.offset.unwrap_or(0),
        limit: p.limit.unwrap_or(100),
        histogram,
    };
    run_search(st, req).await
}

async fn search_post(
    _auth: Authed,
    State(st): State<AppState>,
    body: Result<Json<JsonValue>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let Json(mut v) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // JSON has one number type: `"limit": 100.0` is the integer 100.
    for k in ["offset", "limit"] {
        if let Some(f) = v.get(k).and_then(JsonValue::as_f64) {
            if v[k].is_f64() && f.fract() == 0.0 && (0.0..9.0e15).contains(&f) {
                v[k] = json!(f as u64);
            }
        }
    }
    let req: SearchRequest = serde_json::from_value(v)
        .map_err(|e| ApiError::Unprocessable(format!("invalid search request: {e}")))?;
    run_search(st, req).await
}

async fn event_get(
    _auth: Authed,
    State(st): State<AppState>,
    Path(seq): Path<u64>,
) -> Result<Json<JsonValue>, ApiError> {
    let e = blocking(move || st.events.get(seq).map_err(store_err)).await?;
    e.map(|e| Json(event_json(&e)))
        .ok_or_else(|| ApiError::NotFound(format!("no event with seq {seq}")))
}

// ---------------------------------------------------------------------------------------------
// Alerts

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertParams {
    status: Option<String>,
    min_level: Option<String>,
    since: Option<DateTime<Utc>>,
    rule_id: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    /// A console user's alerts; empty: the unassigned ones.
    assignee: Option<String>,
}

async fn alerts_list(
    _auth: Authed,
    State(st): State<AppState>,
    Query(p): Query<AlertParams>,
) -> Result<Json<JsonValue>, ApiError> {
    let status = match p.status.as_deref() {
        None => None,
        Some(s) => Some(AlertStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!("unknown status `{s}` (open, acknowledged)"))
        })?),
    };
    let min_level = match p.min_level.as_deref() {
        None => None,
        Some(s) => Some(Level::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown level `{s}` (informational, low, medium, high, critical)"
            ))
        })?),
    };
    let limit = p.limit.unwrap_or(100);
    if limit > 1000 {
        return Err(ApiError::BadRequest("limit may not exceed 1000".into()));
    }
    let f = AlertFilter {
        min_level,
        status,
        since: p.since,
        rule_id: p.rule_id.map(|r| RuleId(r.into())),
        offset: p.offset.unwrap_or(0),
        limit,
    };
    let list = blocking(move || {
        crate::console::manage::list_alerts(&*st.alerts, &f, p.assignee.as_deref())
    })
    .await?;
    Ok(Json(json!({ "alerts": list })))
}

async fn alert_get(
    _auth: Authed,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<JsonValue>, ApiError> {
    let a = blocking(move || {
        let a = st.alerts.get_alert(AlertId(id)).map_err(store_err)?;
        let map = crate::console::manage::assignments(&*st.alerts);
        Ok(a.map(|a| crate::console::manage::alert_json(&a, &map)))
    })
    .await?;
    a.map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AckBody {
    note: String,
}

async fn alert_ack(
    auth: Authed,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    body: Option<Json<AckBody>>,
) -> Result<Json<JsonValue>, ApiError> {
    let note = body.map(|Json(b)| b.note).unwrap_or_default();
    if note.len() > 10_000 {
        return Err(ApiError::BadRequest("note exceeds 10000 bytes".into()));
    }
    let ack = Ack {
        by: auth.name,
        at: Utc::now(),
        note,
    };
    let a = blocking(move || st.alerts.acknowledge(AlertId(id), &ack).map_err(store_err)).await?;
    Ok(Json(json!(a)))
}

// ---------------------------------------------------------------------------------------------
// Rules

async fn rules_list(
    _auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    let Some(h) = &st.rules else {
        return Ok(Json(json!({ "report": null, "rules": [] })));
    };
    let engine = h.current();
    let rules: Vec<JsonValue> = engine
        .pack
        .rules
        .iter()
        .map(|r| {
            json!({
                "id": r.meta.reference(),
                "title": r.meta.title,
                "title_ja": r.meta.extra.get("title_ja"),
                "level": r.meta.level,
                "path": r.meta.path,
                "line": r.meta.line,
            })
        })
        .chain(engine.pack.correlations.iter().map(|c| {
            json!({
                "id": c.meta.reference(),
                "title": c.meta.title,
                "title_ja": c.meta.extra.get("title_ja"),
                "level": c.meta.level,
                "path": c.meta.path,
                "line": c.meta.line,
                "correlation": true,
            })
        }))
        .collect();
    Ok(Json(json!({ "report": h.report(), "rules": rules })))
}

async fn rules_reload(
    _auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    let Some(h) = st.rules.clone() else {
        return Err(ApiError::BadRequest(
            "no rules are configured ([detection] rules)".into(),
        ));
    };
    let m = Arc::clone(&st.metrics);
    let report = blocking(move || Ok(crate::reload_and_count(&h, &m))).await?;
    Ok(Json(json!(report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_cannot_escape() {
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("..\\..\\x.evtx"), "x.evtx");
        assert_eq!(sanitize_name(".."), "upload");
        assert_eq!(sanitize_name(".bashrc"), "bashrc");
        assert_eq!(sanitize_name("a b;rm -rf.log"), "abrm-rf.log");
    }

    /// Issue #15 finding 13: one bad line no longer rejects the whole request.
    #[test]
    fn ingest_lines_are_independent_and_reported_by_number() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (ok, errs) = parse_ingest_body(b"{\"a\":1}\n\n{\"b\":2}\n", peer).unwrap();
        assert_eq!((ok.len(), errs.len()), (2, 0));
        let (ok, errs) = parse_ingest_body(b"{\"a\":1}\n{\"b\":\n{\"c\":3}", peer).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 2);
        assert!(errs[0].error.starts_with("line 2:"), "{:?}", errs[0]);
        let (arr, _) = parse_ingest_body(b" [{\"a\":1},{\"b\":2}]", peer).unwrap();
        assert_eq!(arr.len(), 2);
        let (arr, errs) = parse_ingest_body(b"[{\"a\":1},3]", peer).unwrap();
        assert_eq!(arr.len(), 1);
        assert!(errs[0].error.contains("element 2"), "{errs:?}");
        // An array that is not valid JSON is rejected as a whole.
        assert!(matches!(
            parse_ingest_body(b"[{\"a\":1},", peer),
            Err(IngestStop::Body(BodyError::Malformed(_)))
        ));
        assert!(parse_ingest_body(b"  \n", peer).unwrap().0.is_empty());
        // Invalid UTF-8 is replaced, not fatal.
        assert_eq!(
            parse_ingest_body(b"{\"a\":\"\xff\"}", peer)
                .unwrap()
                .0
                .len(),
            1
        );
    }

    /// Issue #15 finding 6: the event cap is checked before anything is emitted.
    #[test]
    fn event_cap_is_checked_before_storing() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for body in [&b"{}\n{}\n{}\n"[..], b"[{},{},{}]"] {
            let mut emitted = 0;
            let r = parse_ingest_stream(body, peer, 2, &mut |_| {
                emitted += 1;
                Ok(())
            });
            assert_eq!(
                r,
                Err(IngestStop::Body(BodyError::TooMany { count: 3, max: 2 }))
            );
            assert_eq!(emitted, 0);
        }
    }

    #[test]
    fn unknown_content_encoding_is_refused() {
        let mut h = HeaderMap::new();
        assert!(!content_encoding(&h).unwrap());
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(content_encoding(&h).unwrap());
        h.insert(header::CONTENT_ENCODING, "identity".parse().unwrap());
        assert!(!content_encoding(&h).unwrap());
        for bad in ["br", "deflate", "gzip, gzip", "zstd"] {
            h.insert(header::CONTENT_ENCODING, bad.parse().unwrap());
            assert!(
                matches!(content_encoding(&h), Err(ApiError::UnsupportedEncoding(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn gzip_limit_applies_to_decompressed_size() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 1 << 20]).unwrap();
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 10_000);
        assert!(matches!(gunzip(&gz, 1000), Err(ApiError::TooLarge(_))));
        assert_eq!(gunzip(&gz, 2 << 20).unwrap().len(), 1 << 20);
        assert!(matches!(gunzip(b"nope", 100), Err(ApiError::BadRequest(_))));
    }
}
