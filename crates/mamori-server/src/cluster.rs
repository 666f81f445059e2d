//! `[cluster]`: the roles of a scale-out node (see `mamori-cluster` for the design), wired
//! into the server at one place in `build` and `run`. Without `[cluster]` none of this runs.
//!
//! * collector: the pipeline writes to [`mamori_cluster::collector::PublishingStore`];
//! * store: [`mamori_cluster::store_role`] fills the node's own event store (the API's
//!   search, the sealer);
//! * detector ([`detector`]): the durable work-queue consumer, the server's compiled rules
//!   (hot reload included), standalone alerts into PostgreSQL, correlation matches to their
//!   partition; and the owner ([`owner`]) of each partition in `owns`.
//!
//! Alerts of the API are PostgreSQL's ([`SplitStore`]), and so are incidents
//! ([`Node::case_store`]): a detector hands each alert it recorded (not a redelivered one) to
//! its node's incident service, and every node groups into the same incidents. API tokens,
//! console users and console settings are the cluster's too ([`shared_key`]: one token works
//! on every node; `mamori token/user --config node.toml` write them to PostgreSQL); what is a
//! node's own (its detection and source state, agents enrolled at it, its custody records)
//! stays in its `state.db`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::AckKind;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use mamori_cluster::bus::{
    decode_event, decode_match, encode_event, encode_match, match_subject, Bus, MatchMeta,
    DETECTORS_CONSUMER, EVENTS_STREAM, MATCHES_STREAM,
};
use mamori_cluster::collector::PublishingStore;
use mamori_cluster::partition::{partition, Families};
use mamori_cluster::status::Heartbeat;
use mamori_cluster::store_role::{self, StoreProgress};
use mamori_cluster::{ClusterConfig, PgAlertStore, Role, SITE_FIELD};
use mamori_detect::correlation::{Arrival, CorrelationAlert, Correlator, Limits};
use mamori_detect::{outcome, Match};
use mamori_event::{Event, Interner, Level, RuleId};
use mamori_sigma::{FieldMap, RulePack};
use mamori_store::{
    Ack, Alert, AlertFilter, AlertId, AlertStore, EventStore, InsertOutcome, NewAlert,
    SqliteAlertStore,
};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::rules::{Engine, RulesHandle};
use crate::StartError;

/// A connected cluster node, before its roles start.
pub(crate) struct Node {
    pub cfg: ClusterConfig,
    pub bus: Bus,
    pub pg: Arc<PgAlertStore>,
    /// The collector's store (its counters feed the metrics).
    collector: Option<Arc<PublishingStore>>,
}

/// Connects to NATS (creating the streams) and PostgreSQL (migrating the schema): a node
/// that cannot reach them does not start.
pub(crate) async fn connect(cfg: &ClusterConfig) -> Result<Node, StartError> {
    let bus = tokio::time::timeout(Duration::from_secs(30), Bus::connect(cfg))
        .await
        .map_err(|_| StartError::Config("[cluster] nats: no answer within 30 s".into()))?
        .map_err(|e| StartError::Config(format!("[cluster] nats: {e}")))?;
    let (url, schema) = (cfg.postgres.0.clone(), cfg.postgres_schema.clone());
    let pg = tokio::task::spawn_blocking(move || PgAlertStore::open(&url, &schema))
        .await
        .map_err(|e| StartError::Config(e.to_string()))?
        .map_err(|e| StartError::Config(format!("[cluster] postgres: {e}")))?;
    tracing::info!(node = %cfg.node_name(), site = %cfg.site, roles = ?cfg.roles, "cluster node connected to NATS and PostgreSQL");
    let collector = cfg.has(Role::Collector).then(|| {
        Arc::new(PublishingStore::new(
            &bus,
            tokio::runtime::Handle::current(),
            &cfg.site,
            &cfg.node_name(),
        ))
    });
    Ok(Node {
        cfg: cfg.clone(),
        bus,
        pg: Arc::new(pg),
        collector,
    })
}

impl Node {
    /// The store the pipeline writes to: JetStream on a collector; on another node, one that
    /// refuses (its sources are not part of the cluster's intake).
    pub(crate) fn pipeline_store(&self) -> Arc<dyn EventStore> {
        match &self.collector {
            Some(c) => Arc::clone(c) as Arc<dyn EventStore>,
            None => Arc::new(NotCollector(self.cfg.node_name())),
        }
    }

    /// The API's alert store: alerts and the shared keys in PostgreSQL, the rest of the kv in
    /// the node's `state.db`.
    pub(crate) fn api_alerts(&self, state: Arc<SqliteAlertStore>) -> Arc<dyn AlertStore> {
        Arc::new(SplitStore::new(Arc::clone(&self.pg), state))
    }

    /// The incidents of the cluster, in PostgreSQL (the schema of the alerts).
    pub(crate) async fn case_store(&self) -> Result<mamori_cases::CaseStore, StartError> {
        let (url, schema) = (
            self.cfg.postgres.0.clone(),
            self.cfg.postgres_schema.clone(),
        );
        tokio::task::spawn_blocking(move || mamori_cluster::open_case_store(&url, &schema))
            .await
            .map_err(|e| StartError::Config(e.to_string()))?
            .map_err(|e| StartError::Config(format!("[cluster] postgres incidents: {e}")))
    }

    /// Starts this node's roles. A detector sends the alerts it records on `alert_tx` (the
    /// node's incident service groups them).
    pub(crate) fn start(
        self,
        rules: Option<Arc<RulesHandle>>,
        local_events: Arc<dyn EventStore>,
        detection: &crate::config::DetectionConfig,
        metrics: &crate::metrics::Metrics,
        alert_tx: broadcast::Sender<Alert>,
    ) -> Result<Roles, StartError> {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let cm = Arc::new(ClusterMetrics {
            roles: self.cfg.roles.clone(),
            collector: self.collector.clone(),
            ..ClusterMetrics::default()
        });
        let _ = metrics.cluster.set(Arc::clone(&cm));
        let progress = Arc::clone(&cm.store);
        let examined = Arc::clone(&cm.examined);
        let redelivered = Arc::clone(&cm.redelivered);
        if self.cfg.has(Role::Store) {
            tasks.push(tokio::spawn(store_role::run(
                self.bus.clone(),
                local_events,
                Arc::clone(&progress),
                stop_rx.clone(),
            )));
        }
        if self.cfg.has(Role::Detector) {
            let Some(rules) = rules else {
                return Err(StartError::Config(
                    "[cluster] roles: a detector needs [detection] rules".into(),
                ));
            };
            let d = DetectorCtx {
                bus: self.bus.clone(),
                pg: Arc::clone(&self.pg),
                rules,
                partitions: self.cfg.partitions,
                min_level: detection.min_level,
                suppress_secs: detection.suppress_secs.max(1),
                examined: Arc::clone(&examined),
                redelivered: Arc::clone(&redelivered),
                alert_tx,
            };
            let d = Arc::new(d);
            tasks.push(tokio::spawn(detector(Arc::clone(&d), stop_rx.clone())));
            for &p in &self.cfg.owns {
                tasks.push(tokio::spawn(owner(Arc::clone(&d), p, stop_rx.clone())));
            }
        }
        tasks.push(tokio::spawn(heartbeat(
            self.cfg.clone(),
            Arc::clone(&self.pg),
            progress,
            [examined, redelivered],
            stop_rx.clone(),
        )));
        // A leaf site's collector sees its site stream only, not the hub's.
        if self.bus.leaf_site.is_none() {
            tasks.push(tokio::spawn(observe(self.bus.clone(), cm, stop_rx)));
        }
        Ok(Roles { stop, tasks })
    }
}

/// The running roles of a node.
pub struct Roles {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Roles {
    /// Asks every role to stop after the message at hand and waits (bounded) for them; an
    /// owner saves its state on the way out.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// A cluster node's figures for `/metrics`: its own counters, and what JetStream says of the
/// stream and of the detectors' consumer (polled every 2 s by [`observe`]).
#[derive(Default)]
pub struct ClusterMetrics {
    roles: Vec<Role>,
    collector: Option<Arc<PublishingStore>>,
    store: Arc<StoreProgress>,
    examined: Arc<AtomicU64>,
    redelivered: Arc<AtomicU64>,
    /// Whether JetStream answered the last poll (the gauges below are then current).
    polled: AtomicU64,
    stream_last_seq: AtomicU64,
    consumer_pending: AtomicU64,
    consumer_ack_pending: AtomicU64,
    consumer_redelivered: AtomicU64,
}

impl std::fmt::Debug for ClusterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMetrics")
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl ClusterMetrics {
    /// Appends the Prometheus text lines of this node's roles.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let mut put = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        };
        if let Some(c) = &self.collector {
            put(
                "mamori_cluster_republished_total",
                "counter",
                "Events published again with their Nats-Msg-Id because JetStream had not acknowledged them.",
                c.republished(),
            );
        }
        if self.polled.load(Relaxed) > 0 {
            put(
                "mamori_cluster_stream_last_seq",
                "gauge",
                "Last sequence of the MAMORI_EVENTS stream.",
                self.stream_last_seq.load(Relaxed),
            );
            put(
                "mamori_cluster_consumer_lag_events",
                "gauge",
                "Events of MAMORI_EVENTS not yet delivered to any detector (the detectors consumer's pending count).",
                self.consumer_pending.load(Relaxed),
            );
            put(
                "mamori_cluster_consumer_unacknowledged",
                "gauge",
                "Events delivered to detectors and not yet acknowledged.",
                self.consumer_ack_pending.load(Relaxed),
            );
            put(
                "mamori_cluster_consumer_redelivered",
                "gauge",
                "Events JetStream is redelivering to the detectors (delivered more than once and not yet acknowledged).",
                self.consumer_redelivered.load(Relaxed),
            );
        }
        if self.roles.contains(&Role::Detector) {
            put(
                "mamori_cluster_detector_examined_total",
                "counter",
                "Events this detector examined.",
                self.examined.load(Relaxed),
            );
            put(
                "mamori_cluster_detector_redelivered_total",
                "counter",
                "Events this detector received more than once (redeliveries).",
                self.redelivered.load(Relaxed),
            );
        }
        if self.roles.contains(&Role::Store) {
            let through = self.store.stored_through.load(Relaxed);
            put(
                "mamori_cluster_store_through_seq",
                "gauge",
                "Highest MAMORI_EVENTS sequence stored on this node.",
                through,
            );
            if self.polled.load(Relaxed) > 0 {
                put(
                    "mamori_cluster_store_lag_events",
                    "gauge",
                    "Events of MAMORI_EVENTS not yet stored on this node.",
                    self.stream_last_seq.load(Relaxed).saturating_sub(through),
                );
            }
            put(
                "mamori_cluster_store_skipped_total",
                "counter",
                "Stream messages the store skipped as already stored (redeliveries).",
                self.store.skipped.load(Relaxed),
            );
        }
    }
}

/// Polls JetStream every 2 s for the stream's last seq and the detectors' consumer.
async fn observe(bus: Bus, m: Arc<ClusterMetrics>, mut stop: watch::Receiver<bool>) {
    loop {
        let poll = async {
            let mut s = bus.js.get_stream(EVENTS_STREAM).await.ok()?;
            let info = s.info().await.ok()?;
            m.stream_last_seq.store(info.state.last_sequence, Relaxed);
            if let Ok(c) = s.consumer_info(DETECTORS_CONSUMER).await {
                m.consumer_pending.store(c.num_pending, Relaxed);
                m.consumer_ack_pending
                    .store(c.num_ack_pending as u64, Relaxed);
                m.consumer_redelivered
                    .store(c.num_redelivered as u64, Relaxed);
            }
            Some(())
        };
        if tokio::time::timeout(Duration::from_secs(5), poll)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            m.polled.store(1, Relaxed);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The pipeline's store on a node without the collector role.
struct NotCollector(String);

impl EventStore for NotCollector {
    fn append_at(
        &self,
        _batch: &[Event],
        _received_at: DateTime<Utc>,
    ) -> mamori_store::Result<mamori_store::AppendAck> {
        Err(mamori_store::Error::InvalidRequest(format!(
            "node {} has no collector role: send events to a collector",
            self.0
        )))
    }
    fn refresh(&self) -> mamori_store::Result<()> {
        Ok(())
    }
    fn search(
        &self,
        _q: &mamori_store::SearchRequest,
    ) -> mamori_store::Result<mamori_store::SearchResponse> {
        Err(mamori_store::Error::InvalidRequest(
            "not a store node".into(),
        ))
    }
    fn get(&self, _seq: u64) -> mamori_store::Result<Option<mamori_store::StoredEvent>> {
        Ok(None)
    }
    fn raw_since(
        &self,
        _after: u64,
        _limit: usize,
    ) -> mamori_store::Result<Vec<mamori_store::RawRecord>> {
        Ok(Vec::new())
    }
    fn apply_retention(
        &self,
        _now: DateTime<Utc>,
        _max_age: Option<chrono::TimeDelta>,
        _max_bytes: Option<u64>,
    ) -> mamori_store::Result<mamori_store::RetentionReport> {
        Ok(Default::default())
    }
    fn stats(&self) -> mamori_store::Result<mamori_store::StoreStats> {
        Ok(Default::default())
    }
}

/// Whether a kv key is the cluster's (PostgreSQL) rather than a node's own (`state.db`): the
/// API tokens and everything of the console (users, lockouts, preferences, settings, alert
/// assignments). Not the tokens' custody record: each node seals what it saw in its vault.
pub fn shared_key(key: &str) -> bool {
    key == "api/tokens" || key.starts_with("console/")
}

/// Copies an embedded install's [`shared_key`]s (API tokens, console users with their
/// preferences, console settings, alert assignments) from its `state.db` into the cluster's
/// PostgreSQL — each only where the cluster has none yet, so a cluster already in use keeps
/// its own. Returns the keys copied and the keys the cluster kept. Lockouts are not copied.
pub fn import_shared_state(
    local: &dyn AlertStore,
    cluster: &dyn AlertStore,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut keys: Vec<String> = [
        "api/tokens",
        crate::console::users::USERS_KEY,
        crate::console::manage::RULES_KEY,
        crate::console::manage::POLICY_KEY,
        crate::console::manage::ASSIGN_KEY,
    ]
    .map(str::to_owned)
    .to_vec();
    for u in crate::console::users::read(local)? {
        keys.push(crate::console::users::prefs_key(&u.name));
    }
    let (mut copied, mut kept) = (Vec::new(), Vec::new());
    for k in keys {
        debug_assert!(shared_key(&k));
        let Some(v) = local.kv_get(&k).map_err(|e| e.to_string())? else {
            continue;
        };
        if cluster
            .kv_compare_and_swap(&k, None, &v)
            .map_err(|e| e.to_string())?
        {
            copied.push(k);
        } else {
            kept.push(k);
        }
    }
    Ok((copied, kept))
}

/// Alerts and the [`shared_key`]s from PostgreSQL (shared by the cluster), the rest of the kv
/// from the node's own `state.db`.
pub struct SplitStore {
    alerts: Arc<PgAlertStore>,
    local: Arc<SqliteAlertStore>,
}

impl SplitStore {
    pub fn new(alerts: Arc<PgAlertStore>, local: Arc<SqliteAlertStore>) -> SplitStore {
        SplitStore { alerts, local }
    }

    fn kv(&self, key: &str) -> &dyn AlertStore {
        if shared_key(key) {
            &*self.alerts
        } else {
            &*self.local
        }
    }
}

impl AlertStore for SplitStore {
    fn insert_alert(&self, a: &NewAlert) -> mamori_store::Result<InsertOutcome> {
        self.alerts.insert_alert(a)
    }
    fn list_alerts(&self, f: &AlertFilter) -> mamori_store::Result<Vec<Alert>> {
        self.alerts.list_alerts(f)
    }
    fn get_alert(&self, id: AlertId) -> mamori_store::Result<Option<Alert>> {
        self.alerts.get_alert(id)
    }
    fn acknowledge(&self, id: AlertId, ack: &Ack) -> mamori_store::Result<Alert> {
        self.alerts.acknowledge(id, ack)
    }
    fn kv_get(&self, key: &str) -> mamori_store::Result<Option<Vec<u8>>> {
        self.kv(key).kv_get(key)
    }
    fn kv_put(&self, key: &str, value: &[u8]) -> mamori_store::Result<()> {
        self.kv(key).kv_put(key, value)
    }
    fn kv_delete(&self, key: &str) -> mamori_store::Result<bool> {
        self.kv(key).kv_delete(key)
    }
    fn kv_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> mamori_store::Result<bool> {
        self.kv(key).kv_compare_and_swap(key, expected, new)
    }
    fn count_alerts_by_level_hour(
        &self,
        start: DateTime<Utc>,
        hours: u32,
    ) -> mamori_store::Result<Vec<(Level, u32, u64)>> {
        self.alerts.count_alerts_by_level_hour(start, hours)
    }
}

/// Writes this node's heartbeat to PostgreSQL every 3 s (`mamori cluster status`).
async fn heartbeat(
    cfg: ClusterConfig,
    pg: Arc<PgAlertStore>,
    progress: Arc<StoreProgress>,
    [examined, redelivered]: [Arc<AtomicU64>; 2],
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let h = Heartbeat {
            node: cfg.node_name(),
            site: cfg.site.clone(),
            roles: cfg.roles.clone(),
            owns: cfg.owns.clone(),
            at: Utc::now(),
            stored_through: cfg
                .has(Role::Store)
                .then(|| progress.stored_through.load(Relaxed)),
            examined: cfg.has(Role::Detector).then(|| examined.load(Relaxed)),
            redelivered: cfg.has(Role::Detector).then(|| redelivered.load(Relaxed)),
        };
        let pg2 = Arc::clone(&pg);
        let blob = serde_json::to_vec(&h).expect("heartbeat serialises");
        let r = tokio::task::spawn_blocking(move || pg2.kv_put(&h.key(), &blob)).await;
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "cluster heartbeat not written");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What the detector and the partition owners share.
struct DetectorCtx {
    bus: Bus,
    pg: Arc<PgAlertStore>,
    rules: Arc<RulesHandle>,
    partitions: u32,
    min_level: Level,
    suppress_secs: u64,
    examined: Arc<AtomicU64>,
    redelivered: Arc<AtomicU64>,
    /// The node's alert broadcast (incident grouping).
    alert_tx: broadcast::Sender<Alert>,
}

/// Records an alert once per occurrence and hands the stored alert to the node's incident
/// service — also on a redelivery, whose alert was recorded before: the detector that
/// recorded it may have died before handing it on, and grouping an alert again only finds it
/// linked already (`Outcome::AlreadyLinked`, nothing changes).
fn record_once(
    pg: &PgAlertStore,
    tx: &broadcast::Sender<Alert>,
    a: &NewAlert,
    occurrence: &str,
) -> mamori_store::Result<()> {
    let id = match pg.insert_alert_once(a, occurrence)? {
        Some(outcome) => Some(outcome.id()),
        None => pg.occurrence_alert(occurrence)?,
    };
    if let (Some(id), true) = (id, tx.receiver_count() > 0) {
        if let Some(full) = pg.get_alert(id)? {
            let _ = tx.send(full);
        }
    }
    Ok(())
}

/// Per rule generation: the routing correlator (never fed) and the families.
struct Routing {
    generation: u64,
    engine: Arc<Engine>,
    correlator: Correlator,
    families: Families,
}

impl Routing {
    fn new(engine: Arc<Engine>) -> Routing {
        let correlator = Correlator::new(
            &engine.pack,
            &engine.rules,
            &FieldMap::builtin(),
            Limits::default(),
        );
        Routing {
            generation: engine.generation,
            families: Families::new(&engine.pack),
            correlator,
            engine,
        }
    }
}

/// One event pulled from the work queue.
struct Pulled {
    seq: u64,
    received_at: DateTime<Utc>,
    event: Event,
}

/// The detector: pulls events from the shared durable consumer, matches them, records
/// standalone alerts (once per event and rule), republishes correlation matches, then
/// acknowledges. A killed detector's unacknowledged events are redelivered to the others
/// after the ack wait; what it had done already is not done twice (alert occurrences,
/// `Nats-Msg-Id` of the matches).
async fn detector(d: Arc<DetectorCtx>, mut stop: watch::Receiver<bool>) {
    loop {
        match detect_loop(&d, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "detector: consumer lost; pulling again");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

async fn detect_loop(d: &Arc<DetectorCtx>, stop: &mut watch::Receiver<bool>) -> Result<(), String> {
    let stream = d
        .bus
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .get_or_create_consumer(
            DETECTORS_CONSUMER,
            pull::Config {
                durable_name: Some(DETECTORS_CONSUMER.into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut msgs = consumer
        .messages()
        .await
        .map_err(|e| e.to_string())?
        .ready_chunks(512);
    let mut names = Interner::new();
    let mut routing: Option<Arc<std::sync::Mutex<Routing>>> = None;
    loop {
        let chunk = tokio::select! {
            c = msgs.next() => c.ok_or("the consumer ended")?,
            _ = stop.changed() => return Ok(()),
        };
        let mut pulled = Vec::with_capacity(chunk.len());
        let mut to_ack = Vec::with_capacity(chunk.len());
        for m in chunk {
            let m = m.map_err(|e| e.to_string())?;
            let seq = match m.info() {
                Ok(i) => {
                    if i.delivered > 1 {
                        d.redelivered.fetch_add(1, Relaxed);
                    }
                    i.stream_sequence
                }
                Err(e) => {
                    tracing::error!(error = %e, "detector: message without stream info, dropped");
                    let _ = m.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            match decode_event(&m.payload, &mut names) {
                Ok(x) => pulled.push(Pulled {
                    seq,
                    received_at: x.received_at,
                    event: x.event,
                }),
                Err(e) => {
                    // Never retried: it would fail again.
                    tracing::error!(seq, error = %e, "detector: event does not decode; not examined");
                    let _ = m.ack_with(AckKind::Term).await;
                    continue;
                }
            }
            to_ack.push(m);
        }
        let engine = d.rules.current();
        let r = match &routing {
            Some(r)
                if r.lock().unwrap_or_else(|p| p.into_inner()).generation == engine.generation =>
            {
                Arc::clone(r)
            }
            _ => {
                let r = Arc::new(std::sync::Mutex::new(Routing::new(engine)));
                routing = Some(Arc::clone(&r));
                r
            }
        };
        let d2 = Arc::clone(d);
        let (alerts, matches) = tokio::task::spawn_blocking(move || {
            let r = r.lock().unwrap_or_else(|p| p.into_inner());
            examine(&d2, &r, &pulled)
        })
        .await
        .map_err(|e| e.to_string())?;
        // Matches first (JetStream-acknowledged), then alerts, then the events' acks: a crash
        // anywhere leaves the events unacknowledged, and their redelivery repeats nothing.
        mamori_cluster::bus::publish_all(&d.bus.js, matches)
            .await
            .map_err(|e| format!("matches: {e}"))?;
        let (pg, tx) = (Arc::clone(&d.pg), d.alert_tx.clone());
        tokio::task::spawn_blocking(move || {
            for (a, occurrence) in alerts {
                record_once(&pg, &tx, &a, &occurrence)?;
            }
            Ok::<(), mamori_store::Error>(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("alerts not recorded: {e}"))?;
        d.examined.fetch_add(to_ack.len() as u64, Relaxed);
        for m in to_ack {
            m.ack().await.map_err(|e| format!("ack: {e}"))?;
        }
    }
}

type Republish = (String, String, Vec<u8>);

/// Matches a chunk of events: standalone alerts with their occurrence ids, and the match
/// messages for the correlation partitions.
fn examine(
    d: &DetectorCtx,
    r: &Routing,
    pulled: &[Pulled],
) -> (Vec<(NewAlert, String)>, Vec<Republish>) {
    let rules = &r.engine.rules;
    let mut scratch = rules.scratch();
    let mut alerts = Vec::new();
    let mut out = Vec::new();
    let mut m = Vec::new();
    for p in pulled {
        m.clear();
        rules.matches(&p.event, &mut scratch, &mut m);
        if m.is_empty() {
            continue;
        }
        let site = site_of(&p.event);
        for x in &m {
            let info = rules.rule(x.rule);
            if !info.standalone || info.level < d.min_level {
                continue;
            }
            let host = p.event.host().map(|h| h.into_owned()).unwrap_or_default();
            let fields: serde_json::Map<String, serde_json::Value> = rules
                .details(x.rule, &p.event)
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let t = p.event.timestamp.unwrap_or(p.received_at).timestamp();
            let window = t.div_euclid(d.suppress_secs as i64);
            let rule = info.meta.reference();
            alerts.push((
                NewAlert {
                    rule_id: RuleId(rule.into()),
                    title: info.meta.title.clone(),
                    level: info.level,
                    event_time: p.event.timestamp,
                    received_at: p.received_at,
                    event_seqs: vec![p.seq],
                    group_key: (!host.is_empty()).then(|| format!("host.name={host}")),
                    dedup_key: Some(format!("{rule}|{host}|{window}")),
                    details: serde_json::json!({
                        "source": p.event.origin.to_string(),
                        "host": host,
                        "site": site,
                        "fields": fields,
                        "tags": info.meta.tags,
                        "description": info.meta.description,
                        "description_ja": info.meta.extra.get("description_ja"),
                        "title_ja": info.meta.extra.get("title_ja"),
                    }),
                },
                format!("{}|{rule}", p.seq),
            ));
        }
        // Correlation matches: one message per family, to the partition of its group.
        let mut sent: Vec<&str> = Vec::new();
        for (ci, values) in r.correlator.route(&p.event, &m) {
            let family = r.families.family(ci);
            if sent.contains(&family) {
                continue;
            }
            sent.push(family);
            // The family's correlator ignores the rules it does not read.
            let feeding: Vec<String> = m
                .iter()
                .filter(|x| r.correlator.uses_rule(x.rule))
                .map(|x| rules.rule(x.rule).meta.reference().to_owned())
                .collect();
            let Ok(frame) = encode_event(p.seq, p.received_at, &p.event) else {
                continue; // it was stored, so it encodes; never panic on it
            };
            let meta = MatchMeta {
                family: family.to_owned(),
                rules: feeding,
            };
            let part = partition(family, &values, d.partitions);
            out.push((
                match_subject(part),
                format!("m-{}-{family}", p.seq),
                encode_match(&meta, &frame),
            ));
        }
    }
    (alerts, out)
}

fn site_of(ev: &Event) -> Option<String> {
    ev.get(SITE_FIELD).map(|v| v.to_text().into_owned())
}

/// Key of a partition owner's saved state in PostgreSQL.
fn owner_key(p: u32) -> String {
    format!("cluster/correlation/p{p}")
}

/// A partition owner's state: the position in `MAMORI_MATCHES` it covers and each family's
/// correlator.
struct OwnerState {
    position: u64,
    families: HashMap<String, Correlator>,
    /// Saved states of families not built yet (restored when their first match arrives).
    pending: HashMap<String, Vec<u8>>,
    /// Recent match seq → site, for the sites of a correlation alert (bounded).
    sites: HashMap<u64, String>,
    generation: u64,
    /// Rule reference → index in the current rules.
    rule_index: HashMap<String, u32>,
}

fn save_owner(s: &OwnerState) -> Vec<u8> {
    let mut out = s.position.to_le_bytes().to_vec();
    let mut put = |b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    let mut all: Vec<(&String, Vec<u8>)> = s.families.iter().map(|(k, c)| (k, c.save())).collect();
    all.extend(s.pending.iter().map(|(k, v)| (k, v.clone())));
    for (k, v) in all {
        put(k.as_bytes());
        put(&v);
    }
    out
}

fn load_owner(b: &[u8]) -> Option<(u64, HashMap<String, Vec<u8>>)> {
    let (pos, mut rest) = b.split_at_checked(8)?;
    let position = u64::from_le_bytes(pos.try_into().ok()?);
    let take = |r: &mut &[u8]| -> Option<Vec<u8>> {
        let (l, tail) = r.split_at_checked(4)?;
        let l = u32::from_le_bytes(l.try_into().ok()?) as usize;
        let (v, tail) = tail.split_at_checked(l)?;
        *r = tail;
        Some(v.to_vec())
    };
    let mut m = HashMap::new();
    while !rest.is_empty() {
        let k = String::from_utf8(take(&mut rest)?).ok()?;
        let v = take(&mut rest)?;
        m.insert(k, v);
    }
    Some((position, m))
}

/// The correlator of one family: the pack's correlations of the family only, so matches
/// sent for another family's group never touch this one's state.
fn family_correlator(engine: &Engine, family: &str) -> Correlator {
    let families = Families::new(&engine.pack);
    let pack = RulePack {
        correlations: families
            .members(family)
            .into_iter()
            .map(|i| engine.pack.correlations[i].clone())
            .collect(),
        ..RulePack::default()
    };
    Correlator::new(
        &pack,
        &engine.rules,
        &FieldMap::builtin(),
        Limits::default(),
    )
}

/// The owner of partition `p`: an ordered consumer of `mamori.matches.<p>` from the position
/// its saved state covers. The state and the position are saved together (every 2 s and at
/// stop), so after a crash the matches after the saved position are replayed onto the saved
/// state: each counted once. Alerts raised again by the replay are the same occurrences
/// (dedup key and phase) and change nothing.
async fn owner(d: Arc<DetectorCtx>, p: u32, mut stop: watch::Receiver<bool>) {
    let pg = Arc::clone(&d.pg);
    let saved = tokio::task::spawn_blocking(move || pg.kv_get(&owner_key(p))).await;
    let (position, pending) = match saved {
        Ok(Ok(Some(b))) => load_owner(&b).unwrap_or_else(|| {
            tracing::error!(
                partition = p,
                "saved correlation state is damaged; starting empty from the stream's start"
            );
            (0, HashMap::new())
        }),
        Ok(Ok(None)) => (0, HashMap::new()),
        Ok(Err(e)) => {
            tracing::error!(partition = p, error = %e, "cannot read the partition's saved state; the partition is not served");
            return;
        }
        Err(_) => return,
    };
    let mut st = OwnerState {
        position,
        families: HashMap::new(),
        pending,
        sites: HashMap::new(),
        generation: 0,
        rule_index: HashMap::new(),
    };
    tracing::info!(
        partition = p,
        position,
        "correlation partition owner starting"
    );
    loop {
        match own_loop(&d, p, &mut st, &mut stop).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "owner: consumer lost; resuming from its position");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    }
    save(&d, p, &st).await;
}

async fn save(d: &DetectorCtx, p: u32, st: &OwnerState) {
    let blob = save_owner(st);
    let pg = Arc::clone(&d.pg);
    match tokio::task::spawn_blocking(move || pg.kv_put(&owner_key(p), &blob)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(partition = p, error = %e, "cannot save correlation state"),
        Err(_) => {}
    }
}

async fn own_loop(
    d: &Arc<DetectorCtx>,
    p: u32,
    st: &mut OwnerState,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let stream = d
        .bus
        .js
        .get_stream(MATCHES_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: match_subject(p),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: st.position + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut msgs = consumer
        .messages()
        .await
        .map_err(|e| e.to_string())?
        .ready_chunks(256);
    let mut names = Interner::new();
    let mut last_save = Instant::now();
    let mut dirty = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let chunk = tokio::select! {
            c = msgs.next() => Some(c.ok_or("the consumer ended")?),
            _ = tick.tick() => None,
            _ = stop.changed() => return Ok(()),
        };
        let engine = d.rules.current();
        if engine.generation != st.generation {
            // Rules reloaded: rebuild each family's correlator, carrying its state over.
            let olds: Vec<(String, Vec<u8>)> =
                st.families.drain().map(|(k, c)| (k, c.save())).collect();
            st.pending.extend(olds);
            st.generation = engine.generation;
            st.rule_index = (0..engine.rules.len() as u32)
                .map(|i| (engine.rules.rule(i).meta.reference().to_owned(), i))
                .collect();
        }
        let mut out: Vec<(CorrelationAlert, DateTime<Utc>)> = Vec::new();
        if let Some(chunk) = chunk {
            for m in chunk {
                let m = m.map_err(|e| e.to_string())?;
                let seq = m.info().map_err(|e| e.to_string())?.stream_sequence;
                if seq <= st.position {
                    continue;
                }
                st.position = seq;
                dirty = true;
                let (meta, ev) = match decode_match(&m.payload, &mut names) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::error!(partition = p, seq, error = %e, "match does not decode; skipped");
                        continue;
                    }
                };
                let c = st.families.entry(meta.family.clone()).or_insert_with(|| {
                    let mut c = family_correlator(&engine, &meta.family);
                    if let Some(b) = st.pending.remove(&meta.family) {
                        if let Err(e) = c.restore(&b) {
                            tracing::warn!(family = %meta.family, error = %e, "saved correlation state not restored");
                        }
                    }
                    c
                });
                let matches: Vec<Match> = meta
                    .rules
                    .iter()
                    .filter_map(|r| st.rule_index.get(r))
                    .map(|&rule| Match { rule })
                    .collect();
                if let Some(site) = site_of(&ev.event) {
                    if st.sites.len() >= 100_000 {
                        st.sites.clear();
                    }
                    st.sites.insert(ev.seq, site);
                }
                let source = format!(
                    "{}/{}",
                    site_of(&ev.event).unwrap_or_default(),
                    ev.event.origin
                );
                let arrival = Arrival {
                    source: &source,
                    received_ms: Some(ev.received_at.timestamp_millis()),
                    reference: ev.seq,
                };
                let mut raised = Vec::new();
                c.observe(&ev.event, &matches, &arrival, &mut raised);
                out.extend(raised.into_iter().map(|a| (a, ev.received_at)));
            }
        } else {
            let now = Utc::now();
            for c in st.families.values_mut() {
                let mut raised = Vec::new();
                c.tick(now.timestamp_millis(), &mut raised);
                if !raised.is_empty() {
                    dirty = true;
                }
                out.extend(raised.into_iter().map(|a| (a, now)));
            }
        }
        if !out.is_empty() {
            let alerts: Vec<(NewAlert, String)> = out
                .iter()
                .filter_map(|(a, at)| {
                    let alert = correlation_alert(a, *at, &st.sites);
                    (alert.level >= d.min_level).then(|| {
                        let occ = format!(
                            "{}|{:?}",
                            alert.dedup_key.clone().unwrap_or_default(),
                            a.phase
                        );
                        (alert, occ)
                    })
                })
                .collect();
            let (pg, tx) = (Arc::clone(&d.pg), d.alert_tx.clone());
            tokio::task::spawn_blocking(move || {
                for (a, occ) in alerts {
                    record_once(&pg, &tx, &a, &occ)?;
                }
                Ok::<(), mamori_store::Error>(())
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("correlation alerts not recorded: {e}"))?;
        }
        if dirty && last_save.elapsed() >= Duration::from_secs(2) {
            save(d, p, st).await;
            dirty = false;
            last_save = Instant::now();
        }
    }
}

/// A correlation episode as an alert: as the embedded detector words it, with the sites of
/// its events.
fn correlation_alert(
    a: &CorrelationAlert,
    received_at: DateTime<Utc>,
    sites: &HashMap<u64, String>,
) -> NewAlert {
    let (level, why) = outcome::judge_correlation(
        &a.correlation.meta,
        a.correlation.kind,
        a.correlation.level,
        &a.group,
        outcome::is_internal_default,
    );
    let mut site_list: Vec<&String> = a
        .evidence
        .refs
        .iter()
        .filter_map(|r| sites.get(&r.reference))
        .collect();
    site_list.sort();
    site_list.dedup();
    let mut alert = crate::pipeline::correlation_alert(a, level, why, received_at);
    if let Some(d) = alert.details.as_object_mut() {
        d.insert("sites".into(), serde_json::json!(site_list));
    }
    alert
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_state_roundtrips_and_damage_is_refused() {
        let mut pending = HashMap::new();
        pending.insert("c-brute".to_owned(), b"state one".to_vec());
        pending.insert("c-spray".to_owned(), Vec::new());
        let st = OwnerState {
            position: 4242,
            families: HashMap::new(),
            pending: pending.clone(),
            sites: HashMap::new(),
            generation: 1,
            rule_index: HashMap::new(),
        };
        let b = save_owner(&st);
        assert_eq!(load_owner(&b), Some((4242, pending.clone())));
        for n in 0..8 {
            assert_eq!(load_owner(&b[..n]), None, "no position at {n}");
        }
        // Cut anywhere: an error or a smaller set of whole entries, never a panic.
        for n in 8..b.len() {
            if let Some((pos, m)) = load_owner(&b[..n]) {
                assert_eq!(pos, 4242);
                assert!(m.len() < 2 && m.iter().all(|(k, v)| pending.get(k) == Some(v)));
            }
        }
        assert_eq!(load_owner(&b[..8]), Some((4242, HashMap::new())));
    }
}

/// The stores a node may keep its key/value state in (API tokens, console users, saved
/// settings): `state.db` (SQLite) as today, PostgreSQL as a `[cluster]` node could, and the
/// in-memory store of unit tests. Tests of what lives there run on each (issue #20: one state
/// suite on SQLite and PostgreSQL).
#[cfg(test)]
pub(crate) mod state_backends {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use mamori_cluster::PgAlertStore;
    use mamori_store::{AlertStore, MemoryAlertStore, SqliteAlertStore};

    pub(crate) struct Backend {
        pub(crate) name: &'static str,
        pub(crate) store: Arc<dyn AlertStore>,
        _dir: Option<tempfile::TempDir>,
        pg_schema: Option<String>,
    }

    impl Drop for Backend {
        fn drop(&mut self) {
            if let Some(s) = self.pg_schema.take() {
                if let Ok(pg) = PgAlertStore::open(&pg_url(), &s) {
                    let _ = pg.drop_schema();
                }
            }
        }
    }

    fn pg_url() -> String {
        std::env::var("MAMORI_PG_URL")
            .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test connect_timeout=5".into())
    }

    /// Memory, SQLite and — when reachable ("skipped" otherwise) — PostgreSQL, each fresh.
    pub(crate) fn all() -> Vec<Backend> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteAlertStore::open(&dir.path().join("state.db")).unwrap();
        let mut out = vec![
            Backend {
                name: "memory",
                store: Arc::new(MemoryAlertStore::new()),
                _dir: None,
                pg_schema: None,
            },
            Backend {
                name: "sqlite",
                store: Arc::new(sqlite),
                _dir: Some(dir),
                pg_schema: None,
            },
        ];
        let schema = format!(
            "state_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_micros() % 1_000_000_000
        );
        match PgAlertStore::open(&pg_url(), &schema) {
            Ok(pg) => out.push(Backend {
                name: "postgresql",
                store: Arc::new(pg),
                _dir: None,
                pg_schema: Some(schema),
            }),
            Err(e) => eprintln!("skipped on PostgreSQL: not reachable ({e})"),
        }
        out
    }
}
