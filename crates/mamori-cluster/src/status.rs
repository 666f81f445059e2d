//! `mamori cluster status`: the nodes (their heartbeats in PostgreSQL), the streams and the
//! detectors' consumer lag (from JetStream), the alerts (PostgreSQL).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bus::{Bus, DETECTORS_CONSUMER, EVENTS_STREAM, MATCHES_STREAM};
use crate::{ClusterConfig, PgAlertStore, Role};

/// Prefix of the kv keys under which nodes write their heartbeat.
pub const NODE_KEY_PREFIX: &str = "cluster/node/";

/// What a node says about itself every few seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    pub site: String,
    pub roles: Vec<Role>,
    pub owns: Vec<u32>,
    pub at: DateTime<Utc>,
    /// Store role: the highest stream seq stored.
    pub stored_through: Option<u64>,
    /// Detector role: events examined since start.
    pub examined: Option<u64>,
    /// Detector role: of those, events JetStream delivered more than once (another
    /// detector's unacknowledged events after it died, or this one's after a timeout).
    #[serde(default)]
    pub redelivered: Option<u64>,
}

impl Heartbeat {
    pub fn key(&self) -> String {
        format!("{NODE_KEY_PREFIX}{}", self.node)
    }
}

/// Collects the status as JSON (`mamori cluster status --json` prints it; the text form is
/// made from it).
pub async fn collect(cfg: &ClusterConfig) -> Result<serde_json::Value, String> {
    let bus = tokio::time::timeout(Duration::from_secs(15), Bus::connect(cfg))
        .await
        .map_err(|_| "NATS did not answer within 15 s".to_owned())??;
    let mut streams = Vec::new();
    for name in [EVENTS_STREAM, MATCHES_STREAM] {
        let mut s = bus
            .js
            .get_stream(name)
            .await
            .map_err(|e| format!("stream {name}: {e}"))?;
        let info = s.info().await.map_err(|e| format!("stream {name}: {e}"))?;
        let st = &info.state;
        streams.push(serde_json::json!({
            "name": name,
            "messages": st.messages,
            "bytes": st.bytes,
            "first_seq": st.first_sequence,
            "last_seq": st.last_sequence,
            "consumers": st.consumer_count,
            "replicas": info.config.num_replicas,
            "leader": info.cluster.as_ref().and_then(|c| c.leader.clone()),
        }));
    }
    let mut consumers = Vec::new();
    let events = bus
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    if let Ok(c) = events.consumer_info(DETECTORS_CONSUMER).await {
        consumers.push(serde_json::json!({
            "stream": EVENTS_STREAM,
            "name": c.name,
            "lag": c.num_pending,
            "unacknowledged": c.num_ack_pending,
            "redelivered": c.num_redelivered,
            "delivered_seq": c.delivered.stream_sequence,
            "ack_floor_seq": c.ack_floor.stream_sequence,
        }));
    }
    let (url, schema) = (cfg.postgres.0.clone(), cfg.postgres_schema.clone());
    let (nodes, alerts) = tokio::task::spawn_blocking(move || {
        let pg = PgAlertStore::open(&url, &schema).map_err(|e| e.to_string())?;
        let nodes: Vec<Heartbeat> = pg
            .kv_prefix(NODE_KEY_PREFIX)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        let alerts = pg.count("alerts").map_err(|e| e.to_string())?;
        Ok::<_, String>((nodes, alerts))
    })
    .await
    .map_err(|e| e.to_string())??;
    let now = Utc::now();
    let last_seq = streams
        .first()
        .and_then(|s| s["last_seq"].as_u64())
        .unwrap_or(0);
    let nodes: Vec<serde_json::Value> = nodes
        .iter()
        .map(|h| {
            serde_json::json!({
                "node": h.node,
                "site": h.site,
                "roles": h.roles,
                "owns": h.owns,
                "last_seen": h.at,
                "seconds_since_seen": (now - h.at).num_seconds(),
                "stored_through": h.stored_through,
                "store_lag": h.stored_through.map(|s| last_seq.saturating_sub(s)),
                "examined": h.examined,
                "redelivered": h.redelivered,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "nodes": nodes,
        "streams": streams,
        "consumers": consumers,
        "alerts": alerts,
        "partitions": cfg.partitions,
    }))
}

/// The status as text for a terminal.
pub fn render(s: &serde_json::Value) -> String {
    let mut out = String::new();
    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    out += "nodes:\n";
    for n in list(&s["nodes"]) {
        out += &format!(
            "  {:<28} site {:<12} roles {:<28} seen {}s ago{}{}\n",
            n["node"].as_str().unwrap_or("?"),
            n["site"].as_str().unwrap_or("?"),
            n["roles"].to_string(),
            n["seconds_since_seen"],
            n["store_lag"]
                .as_u64()
                .map(|l| format!("  store lag {l}"))
                .unwrap_or_default(),
            match n["owns"].as_array() {
                Some(o) if !o.is_empty() => format!("  owns {}", n["owns"]),
                _ => String::new(),
            },
        );
    }
    out += "streams:\n";
    for st in list(&s["streams"]) {
        out += &format!(
            "  {:<16} {} messages, {} bytes, seq {}..{}, {} replica(s)\n",
            st["name"].as_str().unwrap_or("?"),
            st["messages"],
            st["bytes"],
            st["first_seq"],
            st["last_seq"],
            st["replicas"],
        );
    }
    out += "consumers:\n";
    for c in list(&s["consumers"]) {
        out += &format!(
            "  {}/{}: lag {} events, {} unacknowledged, {} redelivered\n",
            c["stream"].as_str().unwrap_or("?"),
            c["name"].as_str().unwrap_or("?"),
            c["lag"],
            c["unacknowledged"],
            c["redelivered"],
        );
    }
    out += &format!("alerts in PostgreSQL: {}\n", s["alerts"]);
    out
}
