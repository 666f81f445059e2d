//! `mamori serve`: live collection, durable storage, real-time detection, alerts and search.
//!
//! # The key design decision: acknowledge only what is durable, and never let one slow part
//! # stall the others silently
//!
//! Sources (syslog UDP/TCP, HTTP ingest, file upload) parse on the tokio workers and hand
//! batches to one bounded queue ([`pipeline`]). A single writer thread stores them with group
//! commit — one append and one fsync for everything waiting — and only then acknowledges (HTTP
//! 200). The detector thread runs the compiled Sigma rules (rayon across cores for large
//! groups) and the correlation state machine over the stored events and records alerts in
//! SQLite, deduplicated per rule, entity and suppression window. When storage is slow the
//! queue fills and TCP/HTTP sources wait; UDP cannot wait, so it drops, counts, and the
//! server raises an alert about it: losing logs is itself a security event.
//!
//! Starting is three steps, one module each: [`config`] (parse and check the TOML),
//! `build` (open the stores, load the rules, start the pipeline threads — everything that can
//! fail because of the machine fails here, before a port is taken) and `run` (bind the
//! listeners, start the background duties). New roles add a part in `build` and its wiring in
//! `run`, not a branch in one long function.
//!
//! Everything the server knows is reachable over the API ([`api::router`]), every route but
//! health behind a token, and in Prometheus metrics ([`metrics`]).
//!
//! # Invariants
//!
//! - **An HTTP 200 from ingest means the events are in the log** (fsynced under the default
//!   policy); a killed server loses nothing it acknowledged and stores nothing twice.
//! - **Queues are bounded**; memory does not grow with load.
//! - **Log content never reaches a shell or a path**: uploads are stored under a sanitised name.
//! - **Secrets are never logged**: tokens are stored hashed and compared in constant time.

// The hand-written OpenAPI document is one `json!` literal deeper than the default allows.
#![recursion_limit = "256"]

pub mod agent_commands;
pub mod agents;
pub mod analytics;

pub mod api;
mod api_incidents;
mod api_reports;
pub mod api_serve;
pub mod backups;
mod build;
pub mod cluster;
pub mod config;
pub mod console;
pub mod default_rules;
pub mod diskfull;
pub mod incidents;
mod kvlist;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod pressure;
pub mod reports;
pub mod rules;
mod run;
pub mod scans;
pub mod seal;
pub mod source_health;
pub mod sources;
pub mod tls_api;
pub mod tokens;
mod witness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use mamori_store::{Alert, AlertStore, EventStore, SqliteAlertStore};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use config::{ConfigError, ServerConfig};
use metrics::Metrics;
use pipeline::Pipeline;
use rules::{RulesHandle, RulesReport};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the event store in {path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error("cannot open {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot open the incident database {path}: {message}")]
    Cases { path: PathBuf, message: String },
    #[error("cannot open the evidence vault {path}: {message}")]
    Vault { path: PathBuf, message: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot load rules: {0}")]
    Rules(String),
    #[error("cannot listen on {key} = {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Where the alert/state database lives in a data directory.
pub fn state_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state.db")
}

/// Opens the alert/state database of a data directory (also used by `mamori token`).
pub fn open_state(data_dir: &Path) -> Result<SqliteAlertStore, StartError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let p = state_db_path(data_dir);
    SqliteAlertStore::open(&p).map_err(|e| StartError::State {
        path: p,
        message: e.to_string(),
    })
}

/// The state a node's API and `mamori token`/`mamori user` work on: the data directory's
/// `state.db`, and with `[cluster]` the alerts and the cluster's shared keys (tokens, console
/// users and settings: [`cluster::shared_key`]) in PostgreSQL.
pub fn open_node_state(
    data_dir: &Path,
    cluster: Option<&mamori_cluster::ClusterConfig>,
) -> Result<std::sync::Arc<dyn mamori_store::AlertStore>, StartError> {
    let local = std::sync::Arc::new(open_state(data_dir)?);
    let Some(c) = cluster else {
        return Ok(local);
    };
    let pg = mamori_cluster::PgAlertStore::open(&c.postgres.0, &c.postgres_schema)
        .map_err(|e| StartError::Config(format!("[cluster] postgres: {e}")))?;
    Ok(std::sync::Arc::new(cluster::SplitStore::new(
        std::sync::Arc::new(pg),
        local,
    )))
}

/// Reloads the rules and counts the outcome in the metrics.
pub fn reload_and_count(h: &RulesHandle, m: &Metrics) -> RulesReport {
    let r = h.reload();
    m.rule_reloads.fetch_add(1, Relaxed);
    m.rule_reload_failures
        .fetch_add(r.failures.len() as u64, Relaxed);
    if let Some(e) = &r.error {
        tracing::error!(error = %e, "rule reload failed; the previous rules stay live");
    } else {
        tracing::info!(
            rules = r.rules,
            correlations = r.correlations,
            failures = r.failures.len(),
            "rules reloaded"
        );
        for f in r.failures.iter().take(20) {
            tracing::warn!(failure = %f, "rule did not compile");
        }
    }
    r
}

/// A running server.
pub struct Running {
    /// Bound addresses (useful when the config asked for port 0).
    pub syslog_udp: Option<SocketAddr>,
    pub syslog_tcp: Option<SocketAddr>,
    pub syslog_tls: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub events: Arc<dyn EventStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub metrics: Arc<Metrics>,
    pub rules: Option<Arc<RulesHandle>>,
    alert_tx: broadcast::Sender<Alert>,
    stop: watch::Sender<bool>,
    sources: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    pipeline: Option<Pipeline>,
    /// Seals stored events and custody records into the evidence vault (when initialised).
    pub sealer: Option<seal::Sealer>,
    /// Activity aggregates and source health (`[sources]`), flushed once more at shutdown.
    pub source_health: Option<Arc<source_health::SourceHealth>>,
    /// The roles of a `[cluster]` node.
    cluster: Option<cluster::Roles>,
}

impl Running {
    /// New alerts as they are recorded (for notifications and incident grouping).
    pub fn subscribe_alerts(&self) -> broadcast::Receiver<Alert> {
        self.alert_tx.subscribe()
    }

    /// Stops the sources, drains the queue into storage, saves detection state.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(c) = self.cluster.take() {
            c.stop().await;
        }
        for t in self.sources.drain(..) {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for t in self.background.drain(..) {
            t.abort();
        }
        if let Some(p) = self.pipeline.take() {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
        // The pipeline is drained: add the last counts.
        if let Some(h) = self.source_health.take() {
            let r = tokio::task::spawn_blocking(move || h.flush()).await;
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "the last activity counts could not be saved");
            }
        }
        // Make everything searchable — but never hang on an index that cannot commit (disk
        // full): the log has every acknowledged event and the next start re-indexes it.
        let ev = Arc::clone(&self.events);
        let refresh = tokio::task::spawn_blocking(move || ev.refresh());
        match tokio::time::timeout(Duration::from_secs(10), refresh).await {
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "the index did not catch up before shutdown; the next start re-indexes from the log")
            }
            Err(_) => tracing::warn!(
                "the index did not catch up within 10s; the next start re-indexes from the log"
            ),
            _ => {}
        }
        if let Some(s) = self.sealer.take() {
            let _ = tokio::task::spawn_blocking(move || s.stop()).await;
        }
    }
}

/// Opens the stores, loads the rules, binds every listener and starts serving:
/// [`config`] (already parsed and checked) → [`build`] (the parts) → [`run`] (listeners and
/// background duties).
pub async fn start(cfg: ServerConfig) -> Result<Running, StartError> {
    let parts = build::build(cfg).await?;
    run::run(parts).await
}
