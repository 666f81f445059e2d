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

pub mod analytics;

pub mod api;
mod api_incidents;
pub mod api_serve;
pub mod config;
pub mod default_rules;
pub mod diskfull;
pub mod incidents;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod rules;
pub mod seal;
pub mod sources;
pub mod tokens;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use mamori_event::{Level, RuleId};
use mamori_store::{
    Alert, AlertStore, EmbeddedConfig, EmbeddedEventStore, EventStore, NewAlert, SqliteAlertStore,
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use config::{ConfigError, ServerConfig};
use metrics::{Metrics, SourceKind};
use pipeline::{Pipeline, Settings};
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
}

impl Running {
    /// New alerts as they are recorded (for notifications and incident grouping).
    pub fn subscribe_alerts(&self) -> broadcast::Receiver<Alert> {
        self.alert_tx.subscribe()
    }

    /// Stops the sources, drains the queue into storage, saves detection state.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
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

/// Starts sealing into `<data_dir>/vault` if `[vault] seal` is on and the vault's key exists
/// (`mamori init` creates it); otherwise says why nothing is sealed.
async fn start_sealer(
    cfg: &ServerConfig,
    data: &std::path::Path,
    events: Arc<dyn EventStore>,
) -> Result<Option<seal::Sealer>, StartError> {
    if !cfg.vault.seal {
        tracing::info!(
            "[vault] seal = false: stored events are not sealed into the evidence vault"
        );
        return Ok(None);
    }
    let keys = mamori_vault::KeyPaths::in_data_dir(data);
    if !keys.private.exists() {
        tracing::warn!(
            "the evidence vault is not initialised: run `mamori init --data-dir {}` to seal events and the chain of custody",
            data.display()
        );
        return Ok(None);
    }
    let dir = data.join("vault");
    let vcfg = mamori_vault::VaultConfig {
        checkpoint_every_records: cfg.vault.checkpoint_every_records.max(1),
        checkpoint_every_secs: cfg.vault.checkpoint_every_secs.max(1),
        ..mamori_vault::VaultConfig::new(&dir)
    };
    let err = |message: String| StartError::Vault {
        path: dir.clone(),
        message,
    };
    let vault = tokio::task::spawn_blocking(move || -> Result<mamori_vault::Vault, String> {
        let key = mamori_vault::load_signing_key(&keys.private).map_err(|e| e.to_string())?;
        let v = vcfg.open(key, chrono::Utc::now()).map_err(|e| e.to_string())?;
        for r in v.recoveries() {
            tracing::warn!(file = %r.file, offset = r.offset, bytes = r.len, quarantined = %r.quarantined_as, "vault recovered an interrupted write");
        }
        Ok(v)
    })
    .await
    .map_err(|e| err(e.to_string()))?
    .map_err(err)?;
    let sealer = seal::Sealer::start(vault, events).map_err(err)?;
    tracing::info!(vault = %dir.display(), "sealing stored events into the evidence vault");
    Ok(Some(sealer))
}

/// Opens the stores, loads the rules, binds every listener and starts serving.
pub async fn start(cfg: ServerConfig) -> Result<Running, StartError> {
    let data = cfg.data_dir.clone();
    let nofile = limits::raise_nofile();
    tracing::info!(
        before = nofile.before,
        soft = nofile.soft,
        hard = nofile.hard,
        "open-file limit (RLIMIT_NOFILE)"
    );
    let (tcp_cap, http_cap) = {
        let want = [cfg.syslog.max_connections, cfg.http.max_connections];
        // TLS gets as many slots as TCP; count it when it is on.
        let mut caps = want.to_vec();
        if cfg.syslog.tls.is_some() {
            caps.push(cfg.syslog.max_connections);
        }
        let fit = limits::fit_caps(nofile.soft, &caps);
        if fit != caps {
            tracing::warn!(
                soft_limit = nofile.soft,
                syslog_max_connections = fit[0],
                http_max_connections = fit[1],
                "connection caps lowered to fit the open-file limit; raise LimitNOFILE (see docs/limits.md)"
            );
        }
        (fit[0], fit[1])
    };
    std::fs::create_dir_all(&data).map_err(|source| StartError::DataDir {
        path: data.clone(),
        source,
    })?;
    let store_dir = data.join("events");
    let ecfg = EmbeddedConfig {
        dir: store_dir.clone(),
        fsync: cfg.storage.fsync,
        segment_max_bytes: cfg.storage.segment_max_bytes,
        index_heap_bytes: cfg.storage.index_heap_bytes,
        ..EmbeddedConfig::default()
    };
    let store = tokio::task::spawn_blocking(move || EmbeddedEventStore::open(ecfg))
        .await
        .map_err(|e| StartError::Store {
            path: store_dir.clone(),
            message: e.to_string(),
        })?
        .map_err(|e| StartError::Store {
            path: store_dir.clone(),
            message: e.to_string(),
        })?;
    let rep = store.open_report();
    if !rep.recoveries.is_empty() || rep.reindexed > 0 {
        tracing::warn!(
            recoveries = rep.recoveries.len(),
            reindexed = rep.reindexed,
            "event store recovered after an unclean stop"
        );
    }
    let events: Arc<dyn EventStore> = Arc::new(store);
    let alerts: Arc<dyn AlertStore> = Arc::new(open_state(&data)?);
    let sealer = start_sealer(&cfg, &data, Arc::clone(&events)).await?;
    let audit = sealer.as_ref().map(|s| s.audit_handle());
    let token_audit = audit.clone();
    let rules = if cfg.detection.rules.is_empty() && !cfg.detection.default_rules {
        tracing::warn!("no [detection] rules configured: events are stored but not examined");
        None
    } else {
        let (paths, ph, default) = (
            cfg.detection.rules.clone(),
            cfg.detection.placeholders.clone(),
            cfg.detection.default_rules,
        );
        let h =
            tokio::task::spawn_blocking(move || RulesHandle::load_with_default(paths, ph, default))
                .await
                .map_err(|e| StartError::Rules(e.to_string()))?
                .map_err(StartError::Rules)?;
        let r = h.report();
        tracing::info!(
            rules = r.rules,
            correlations = r.correlations,
            failures = r.failures.len(),
            "rules loaded"
        );
        for f in r.failures.iter().take(20) {
            tracing::warn!(failure = %f, "rule did not compile");
        }
        Some(Arc::new(h))
    };
    let metrics = Arc::new(Metrics::default());
    let (alert_tx, incident_rx) = broadcast::channel(4096);
    let analytics =
        analytics::LiveAnalytics::open(&cfg.analytics, &*alerts).map_err(StartError::Config)?;
    let pipeline = Pipeline::start_with_analytics(
        Arc::clone(&events),
        Arc::clone(&alerts),
        rules.clone(),
        Settings {
            min_level: cfg.detection.min_level,
            suppress_secs: cfg.detection.suppress_secs,
            lateness_secs: cfg.detection.lateness_secs,
            queue_batches: cfg.pipeline.queue_batches,
            max_group_events: cfg.pipeline.max_group_events,
        },
        Arc::clone(&metrics),
        alert_tx.clone(),
        analytics,
    );
    let sink = pipeline.sink.clone();
    let (stop, stop_rx) = watch::channel(false);
    let incidents = if cfg.incidents.enabled {
        let p = data.join("incidents.db");
        let cases = mamori_cases::CaseStore::open(&p).map_err(|e| StartError::Cases {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let notifier = match cfg.notify_config().map_err(StartError::Config)? {
            Some(n) => Some(
                mamori_notify::Notifier::new(&n)
                    .map_err(|e| StartError::Config(format!("[notify]: {e}")))?,
            ),
            None => None,
        };
        let responder = match &cfg.response {
            Some(r) => Some(
                mamori_respond::Responder::new(r.clone())
                    .map_err(|e| StartError::Config(format!("[response]: {e}")))?,
            ),
            None => None,
        };
        let base_url = cfg.incidents.base_url.clone();
        let kv = Arc::clone(&alerts);
        let svc = tokio::task::spawn_blocking(move || {
            incidents::IncidentService::new(Arc::new(cases), notifier, responder, kv, base_url)
                .with_audit(audit)
        })
        .await
        .map_err(|e| StartError::Config(e.to_string()))?;
        Some(Arc::new(svc))
    } else {
        None
    };
    let mut sources = Vec::new();
    let mut running = Running {
        syslog_udp: None,
        syslog_tcp: None,
        syslog_tls: None,
        http: None,
        events: Arc::clone(&events),
        alerts: Arc::clone(&alerts),
        metrics: Arc::clone(&metrics),
        rules: rules.clone(),
        alert_tx,
        stop,
        sources: Vec::new(),
        background: Vec::new(),
        pipeline: Some(pipeline),
        sealer,
    };

    if let Some(addr) = cfg.syslog.udp {
        let (sock, granted) = sources::syslog::bind_udp(addr, cfg.syslog.udp_receive_buffer_bytes)
            .map_err(|source| StartError::Bind {
                key: "syslog.udp",
                addr,
                source,
            })?;
        metrics
            .net
            .udp_receive_buffer_bytes
            .store(granted as u64, Relaxed);
        running.syslog_udp = sock.local_addr().ok();
        sources.push(tokio::spawn(sources::syslog::run_udp(
            sock,
            sink.clone(),
            Arc::clone(&metrics),
            stop_rx.clone(),
        )));
    }
    // What every stream listener (TCP, TLS) shares.
    let stream_ctx = |kind, transport| sources::syslog::StreamCtx {
        kind,
        transport,
        sink: sink.clone(),
        metrics: Arc::clone(&metrics),
        max_frame: cfg.syslog.max_frame_bytes,
        stop: stop_rx.clone(),
        idle: Duration::from_secs(cfg.syslog.idle_timeout_secs),
        idle_when_full: Duration::from_secs(cfg.syslog.idle_timeout_when_full_secs),
        load: None,
    };
    if let Some(addr) = cfg.syslog.tcp {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                key: "syslog.tcp",
                addr,
                source,
            })?;
        running.syslog_tcp = l.local_addr().ok();
        let ctx = stream_ctx(SourceKind::Tcp, mamori_event::Transport::Tcp);
        sources.push(tokio::spawn(sources::syslog::run_tcp(l, ctx, tcp_cap)));
    }
    if let Some(tls) = &cfg.syslog.tls {
        let (acceptor, generated) = sources::tls::load_or_generate(tls, &data)
            .map_err(|m| StartError::Tls(format!("[syslog.tls]: {m}")))?;
        if let Some(p) = generated {
            tracing::info!(cert = %p.display(), "syslog TLS uses a generated self-signed certificate; give it to your senders as their CA");
        }
        let addr = tls.listen;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                key: "syslog.tls.listen",
                addr,
                source,
            })?;
        running.syslog_tls = l.local_addr().ok();
        let ctx = stream_ctx(SourceKind::Tls, mamori_event::Transport::Tls);
        sources.push(tokio::spawn(sources::tls::run_tls(
            l, acceptor, ctx, tcp_cap,
        )));
    }
    for t in &cfg.tail {
        sources.push(tokio::spawn(sources::tail::run_tail(
            t.clone(),
            Arc::clone(&alerts),
            sink.clone(),
            Arc::clone(&metrics),
            stop_rx.clone(),
        )));
    }
    if let Some(addr) = cfg.http.listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                key: "http.listen",
                addr,
                source,
            })?;
        running.http = l.local_addr().ok();
        let state = Arc::new(api::StateInner {
            events: Arc::clone(&events),
            alerts: Arc::clone(&alerts),
            sink: sink.clone(),
            rules: rules.clone(),
            metrics: Arc::clone(&metrics),
            tokens: tokens::TokenCache::with_audit(&*alerts, token_audit.clone()),
            http: cfg.http.clone(),
            uploads_dir: data.join("uploads"),
            started: Instant::now(),
            incidents: incidents.clone(),
        });
        // Token revocations take effect (and reach the chain of custody) without a request.
        let st = Arc::clone(&state);
        running.background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(tokens::REFRESH);
            loop {
                tick.tick().await;
                let st = Arc::clone(&st);
                let _ = tokio::task::spawn_blocking(move || st.tokens.refresh_if_due(&*st.alerts))
                    .await;
            }
        }));
        let app = api::router(state);
        let http_limits = api_serve::HttpLimits {
            max_connections: http_cap,
            header_read_timeout: Duration::from_secs(cfg.http.header_read_timeout_secs),
        };
        sources.push(tokio::spawn(api_serve::serve(
            l,
            app,
            http_limits,
            stop_rx.clone(),
        )));
    }
    drop(sink);
    running.sources = sources;

    if let Some(svc) = &incidents {
        running
            .background
            .push(tokio::spawn(incidents::run(Arc::clone(svc), incident_rx)));
        let svc = Arc::clone(svc);
        running.background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                let s = Arc::clone(&svc);
                let _ = tokio::task::spawn_blocking(move || s.expire()).await;
            }
        }));
    }
    // Make stored events searchable within a second even when no new events arrive.
    let ev = Arc::clone(&events);
    running.background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let ev = Arc::clone(&ev);
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(s) = ev.stats() {
                    if s.last_seq.unwrap_or(0) > s.indexed_seq {
                        if let Err(e) = ev.refresh() {
                            tracing::error!(error = %e, "index refresh failed");
                        }
                    }
                }
            })
            .await;
        }
    }));
    // Retention, hourly.
    if cfg.storage.retention_days.is_some() || cfg.storage.retention_bytes.is_some() {
        let ev = Arc::clone(&events);
        let age = cfg
            .storage
            .retention_days
            .map(|d| TimeDelta::days(i64::from(d)));
        let bytes = cfg.storage.retention_bytes;
        running.background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let ev = Arc::clone(&ev);
                let r =
                    tokio::task::spawn_blocking(move || ev.apply_retention(Utc::now(), age, bytes))
                        .await;
                match r {
                    Ok(Ok(r)) if r.removed_events > 0 => tracing::info!(
                        removed = r.removed_events,
                        bytes = r.removed_bytes,
                        "retention removed old events"
                    ),
                    Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
                    _ => {}
                }
            }
        }));
    }
    // Hot reload of the rules.
    if let (Some(h), true) = (rules.clone(), cfg.detection.reload_interval_secs > 0) {
        let m = Arc::clone(&metrics);
        let every = Duration::from_secs(cfg.detection.reload_interval_secs);
        running.background.push(tokio::spawn(async move {
            let paths = h.paths().to_vec();
            let p2 = paths.clone();
            let mut last = tokio::task::spawn_blocking(move || rules::fingerprint(&p2))
                .await
                .unwrap_or(0);
            loop {
                tokio::time::sleep(every).await;
                let (h2, m2, p2) = (Arc::clone(&h), Arc::clone(&m), paths.clone());
                let r = tokio::task::spawn_blocking(move || {
                    let fp = rules::fingerprint(&p2);
                    if fp != last {
                        reload_and_count(&h2, &m2);
                    }
                    fp
                })
                .await;
                if let Ok(fp) = r {
                    last = fp;
                }
            }
        }));
    }
    // Disk full is loud: one alert per episode, `/health` degraded while it lasts.
    running.background.push(tokio::spawn(diskfull::run_monitor(
        Arc::clone(&metrics),
        Arc::clone(&events),
        Arc::clone(&alerts),
        running.alert_tx.clone(),
        Duration::from_secs(1),
    )));
    // Losing logs is a security event: raise an alert when UDP drops.
    let (m, al) = (Arc::clone(&metrics), Arc::clone(&alerts));
    let atx = running.alert_tx.clone();
    running.background.push(tokio::spawn(async move {
        let mut seen = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            // Queue drops and the kernel's receive-buffer drops: both are lost messages.
            let now = m.source(SourceKind::Udp).dropped.load(Relaxed)
                + m.net.udp_kernel_drops.load(Relaxed);
            if now > seen {
                let lost = now - seen;
                seen = now;
                let (al, atx) = (Arc::clone(&al), atx.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = pipeline::record_alert(&*al, &atx, &dropped_alert(lost)) {
                        tracing::error!(error = %e, "cannot record drop alert");
                    }
                })
                .await;
            }
        }
    }));
    tracing::info!(
        syslog_udp = ?running.syslog_udp,
        syslog_tcp = ?running.syslog_tcp,
        http = ?running.http,
        data_dir = %data.display(),
        "mamori serve is running"
    );
    Ok(running)
}

fn dropped_alert(lost: u64) -> NewAlert {
    let now = Utc::now();
    NewAlert {
        rule_id: RuleId("mamori.pipeline.udp_dropped".into()),
        title: "Syslog messages dropped: the server could not keep up".into(),
        level: Level::High,
        event_time: Some(now),
        received_at: now,
        event_seqs: Vec::new(),
        group_key: Some("source=syslog_udp".into()),
        dedup_key: Some(format!(
            "mamori.pipeline.udp_dropped|{}",
            now.timestamp() / 3600
        )),
        details: serde_json::json!({
            "dropped": lost,
            "description": "UDP syslog messages were dropped because the pipeline queue or the socket's receive buffer was full. Logs may be missing; check the server's load and storage speed, raise syslog.udp_receive_buffer_bytes (and net.core.rmem_max), or send over TCP.",
            "description_ja": "パイプラインのキューまたはソケットの受信バッファが満杯のため、UDPで受信したsyslogメッセージを破棄しました。ログが欠落している可能性があります。サーバーの負荷とストレージ速度を確認するか、syslog.udp_receive_buffer_bytes（および net.core.rmem_max）を増やすか、TCPで送信してください。",
        }),
    }
}
