//! **Build**: turn a checked configuration into the server's parts — the event store, the
//! alert/state database, the vault sealer, the rules, the pipeline threads, the incident
//! service — without binding a socket or spawning a task. [`crate::run`] then wires them to
//! the network and the timers.
//!
//! Everything that can fail because of the machine (a data directory that cannot be created,
//! a store that cannot be opened, a vault key that does not load, a rule path that does not
//! exist) fails here, before any port is taken, with the path and the reason.

use std::path::PathBuf;
use std::sync::Arc;

use mamori_store::{Alert, AlertStore, EmbeddedConfig, EmbeddedEventStore, EventStore};
use tokio::sync::broadcast;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Settings};
use crate::rules::RulesHandle;
use crate::{analytics, incidents, limits, open_state, seal, StartError};

/// Connection caps after fitting them to the open-file limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// Syslog TCP and TLS, each.
    pub stream: usize,
    pub http: usize,
}

/// The server's parts, built and not yet connected to anything.
pub(crate) struct Components {
    pub cfg: ServerConfig,
    pub data: PathBuf,
    pub caps: Caps,
    pub events: Arc<dyn EventStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub sealer: Option<seal::Sealer>,
    /// Where sign-ins, token use and incident actions are recorded (the vault's custody log).
    pub audit: Option<seal::AuditHandle>,
    pub rules: Option<Arc<RulesHandle>>,
    pub metrics: Arc<Metrics>,
    pub alert_tx: broadcast::Sender<Alert>,
    /// Subscribed before the pipeline starts, so incident grouping sees every alert.
    pub incident_rx: broadcast::Receiver<Alert>,
    pub pipeline: Pipeline,
    pub incidents: Option<Arc<incidents::IncidentService>>,
    /// Activity aggregates and source health (`[sources]`), when on.
    pub source_health: Option<Arc<crate::source_health::SourceHealth>>,
    /// The roles of a `[cluster]` node (none in the embedded mode).
    pub cluster: Option<crate::cluster::Roles>,
}

/// Opens the stores, loads the rules and starts the pipeline's threads.
pub(crate) async fn build(cfg: ServerConfig) -> Result<Components, StartError> {
    let data = cfg.data_dir.clone();
    let caps = connection_caps(&cfg);
    std::fs::create_dir_all(&data).map_err(|source| StartError::DataDir {
        path: data.clone(),
        source,
    })?;
    // `[cluster]`: NATS and PostgreSQL first, so a node that cannot reach them takes no port.
    let node = match &cfg.cluster {
        Some(c) => Some(crate::cluster::connect(c).await?),
        None => None,
    };
    let events = open_events(&cfg).await?;
    let state = Arc::new(open_state(&data)?);
    let alerts: Arc<dyn AlertStore> = match &node {
        Some(n) => n.api_alerts(Arc::clone(&state)),
        None => state.clone(),
    };
    let source_health = open_source_health(&cfg, state)?;
    let sealer = start_sealer(&cfg, Arc::clone(&events)).await?;
    let audit = sealer.as_ref().map(|s| s.audit_handle());
    let rules = load_rules(&cfg).await?;
    let metrics = Arc::new(Metrics::default());
    let (alert_tx, incident_rx) = broadcast::channel(4096);
    let analytics = match &node {
        // A cluster node's pipeline only collects: detection runs in the detector role.
        Some(_) => None,
        None => {
            analytics::LiveAnalytics::open(&cfg.analytics, &*alerts).map_err(StartError::Config)?
        }
    };
    let (pipeline_events, pipeline_rules) = match &node {
        Some(n) => (n.pipeline_store(), None),
        None => (Arc::clone(&events), rules.clone()),
    };
    let pipeline = Pipeline::start_counted(
        pipeline_events,
        Arc::clone(&alerts),
        pipeline_rules,
        Settings {
            min_level: cfg.detection.min_level,
            suppress_secs: cfg.detection.suppress_secs,
            lateness_secs: cfg.detection.lateness_secs,
            max_correlation_groups: cfg.detection.max_correlation_groups,
            queue_batches: cfg.pipeline.queue_batches,
            max_group_events: cfg.pipeline.max_group_events,
            backup_links: crate::backups::BackupLinks::new(&cfg.backup),
        },
        Arc::clone(&metrics),
        alert_tx.clone(),
        analytics,
        source_health.clone(),
    );
    let incidents = incident_service(&cfg, &alerts, audit.clone(), node.as_ref()).await?;
    let cluster = match node {
        Some(n) => Some(n.start(
            rules.clone(),
            Arc::clone(&events),
            &cfg.detection,
            &metrics,
            alert_tx.clone(),
        )?),
        None => None,
    };
    Ok(Components {
        cfg,
        data,
        caps,
        events,
        alerts,
        sealer,
        audit,
        rules,
        metrics,
        alert_tx,
        incident_rx,
        pipeline,
        incidents,
        source_health,
        cluster,
    })
}

/// Source health over the state database, when `[sources] enabled`.
fn open_source_health(
    cfg: &ServerConfig,
    state: Arc<mamori_store::SqliteAlertStore>,
) -> Result<Option<Arc<crate::source_health::SourceHealth>>, StartError> {
    if !cfg.sources.enabled {
        return Ok(None);
    }
    let networks = mamori_analytics::Networks::parse(&cfg.analytics.networks)
        .map_err(|e| StartError::Config(format!("[analytics] networks: {e}")))?;
    crate::source_health::SourceHealth::open(cfg.sources.clone(), networks, state)
        .map(|h| Some(Arc::new(h)))
        .map_err(StartError::Config)
}

/// Raises the open-file limit and lowers the connection caps to what it allows.
fn connection_caps(cfg: &ServerConfig) -> Caps {
    let nofile = limits::raise_nofile();
    tracing::info!(
        before = nofile.before,
        soft = nofile.soft,
        hard = nofile.hard,
        "open-file limit (RLIMIT_NOFILE)"
    );
    let mut want = vec![cfg.syslog.max_connections, cfg.http.max_connections];
    // TLS gets as many slots as TCP; count it when it is on.
    if cfg.syslog.tls.is_some() {
        want.push(cfg.syslog.max_connections);
    }
    let fit = limits::fit_caps(nofile.soft, &want);
    if fit != want {
        tracing::warn!(
            soft_limit = nofile.soft,
            syslog_max_connections = fit[0],
            http_max_connections = fit[1],
            "connection caps lowered to fit the open-file limit; raise LimitNOFILE (see docs/limits.md)"
        );
    }
    Caps {
        stream: fit[0],
        http: fit[1],
    }
}

async fn open_events(cfg: &ServerConfig) -> Result<Arc<dyn EventStore>, StartError> {
    let store_dir = cfg.data_dir.join("events");
    let ecfg = EmbeddedConfig {
        dir: store_dir.clone(),
        fsync: cfg.storage.fsync,
        segment_max_bytes: cfg.storage.segment_max_bytes,
        index_heap_bytes: cfg.storage.index_heap_bytes,
        index_merge_max_docs: cfg.storage.index_merge_max_docs,
        ..EmbeddedConfig::default()
    };
    let err = |message: String| StartError::Store {
        path: store_dir.clone(),
        message,
    };
    let store = tokio::task::spawn_blocking(move || EmbeddedEventStore::open(ecfg))
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(e.to_string()))?;
    let rep = store.open_report();
    if !rep.recoveries.is_empty() || rep.reindexed > 0 {
        tracing::warn!(
            recoveries = rep.recoveries.len(),
            reindexed = rep.reindexed,
            "event store recovered after an unclean stop"
        );
    }
    Ok(Arc::new(store))
}

async fn load_rules(cfg: &ServerConfig) -> Result<Option<Arc<RulesHandle>>, StartError> {
    if cfg.detection.rules.is_empty() && !cfg.detection.default_rules {
        tracing::warn!("no [detection] rules configured: events are stored but not examined");
        return Ok(None);
    }
    let (paths, ph, default) = (
        cfg.detection.rules.clone(),
        cfg.detection.placeholders.clone(),
        cfg.detection.default_rules,
    );
    let h = tokio::task::spawn_blocking(move || RulesHandle::load_with_default(paths, ph, default))
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
    Ok(Some(Arc::new(h)))
}

/// The incident service with its notifier and responder, when `[incidents]` is on; its
/// incidents in `incidents.db`, or in PostgreSQL on a `[cluster]` node.
async fn incident_service(
    cfg: &ServerConfig,
    alerts: &Arc<dyn AlertStore>,
    audit: Option<seal::AuditHandle>,
    node: Option<&crate::cluster::Node>,
) -> Result<Option<Arc<incidents::IncidentService>>, StartError> {
    if !cfg.incidents.enabled {
        return Ok(None);
    }
    let cases = match node {
        Some(n) => n.case_store().await?,
        None => {
            let p = cfg.data_dir.join("incidents.db");
            mamori_cases::CaseStore::open(&p).map_err(|e| StartError::Cases {
                path: p.clone(),
                message: e.to_string(),
            })?
        }
    };
    let cases = cases.with_grouper_config(mamori_cases::GrouperConfig {
        open_min_level: cfg.incidents.open_min_level,
        ..Default::default()
    });
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
    let kv = Arc::clone(alerts);
    let svc = tokio::task::spawn_blocking(move || {
        incidents::IncidentService::new(Arc::new(cases), notifier, responder, kv, base_url)
            .with_audit(audit)
    })
    .await
    .map_err(|e| StartError::Config(e.to_string()))?;
    Ok(Some(Arc::new(svc)))
}

/// Starts sealing into `<data_dir>/vault` if `[vault] seal` is on and the vault's key exists
/// (`mamori init` creates it); otherwise says why nothing is sealed.
async fn start_sealer(
    cfg: &ServerConfig,
    events: Arc<dyn EventStore>,
) -> Result<Option<seal::Sealer>, StartError> {
    let data = &cfg.data_dir;
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
