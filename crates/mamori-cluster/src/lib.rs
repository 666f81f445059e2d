//! The scale-out mode of `mamori serve` (issue #20, first slice): the same binary with a
//! `[cluster]` section runs one or more **roles** over existing, proven engines — NATS
//! JetStream carries events and correlation matches, PostgreSQL holds the shared state.
//!
//! ```text
//!  site A collector ─┐ mamori.events.<site>.<source>      ┌─► detector 1 ─┐ mamori.matches.<p>
//!  site B collector ─┴─► stream MAMORI_EVENTS ─ durable ──┤               ├─► MAMORI_MATCHES ─► owner of p
//!                              │            "detectors"   └─► detector 2 ─┘  (one per partition)
//!                              └─ ordered consumer ─► store (tantivy)      alerts ─► PostgreSQL
//! ```
//!
//! * **collector** ([`collector::PublishingStore`]): the server's sources and pipeline are
//!   unchanged; the store the pipeline writes to publishes each event (its site added as the
//!   field [`SITE_FIELD`]) and returns only when JetStream acknowledged every event of the
//!   batch, so a sender is acknowledged (HTTP 200) only for what the stream holds. Each event
//!   carries a `Nats-Msg-Id`, so a retried publish is stored once.
//! * **detector** (in `mamori-server`'s `cluster` module, reusing the server's compiled rules):
//!   all detectors pull from one durable consumer (a work queue); stateless Sigma matching
//!   runs there. Matches that feed a correlation are republished to
//!   `mamori.matches.<partition>`, partition = hash(correlation, group-by values) mod N
//!   ([`partition`]); each partition has exactly one owner (static assignment in the
//!   configuration, `owns = [...]`), which keeps that correlation state.
//! * **store** ([`store_role`]): an ordered consumer appends the stream, in stream order, to
//!   the node's own event store; the stream sequence is the store's seq, so alerts cite
//!   events by one number everywhere.
//! * **state** ([`pg::PgAlertStore`]): alerts (dedup merge as in SQLite), kv blobs, counts,
//!   with migrations; it passes `mamori_store::testsuite::alert_store_suite`. Incidents
//!   ([`pg_cases::PgCaseBackend`]: the case store's grouping, phases, tasks, notes, response
//!   records, evidence and held alerts) in the same schema; it passes
//!   `mamori_cases::testsuite`, grouping on several nodes at once included.

pub mod bus;
pub mod collector;
pub mod import;
pub mod partition;
pub mod pg;
pub mod pg_cases;
pub mod status;
pub mod store_role;
pub mod testing;

use serde::{Deserialize, Serialize};

pub use pg::{PgAlertStore, PG_SCHEMA_VERSION};
pub use pg_cases::{open_case_store, PgCaseBackend, PG_CASES_SCHEMA_VERSION};

/// The field every event published by a collector carries: the collector's site.
pub const SITE_FIELD: &str = "mamori.site";

/// The field the HTTP ingest route gives each event of a request sent with an
/// `Idempotency-Key`: `<caller>/<key>/<n>` (`n` = the event's place in the request). A
/// collector publishes such an event with that as its `Nats-Msg-Id`, so a request repeated at
/// another collector within the duplicate window is stored once. Only the ingest route writes
/// it (it removes a sender's own); a collector ignores and drops it on any other event.
pub const INGEST_ID_FIELD: &str = "mamori.ingest_id";

/// A role of a cluster node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Collector,
    Detector,
    Store,
}

/// A PostgreSQL connection string: it may hold a password, so it is never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PgUrl(pub String);

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgUrl(…)")
    }
}

/// A secret of the configuration (a NATS token or password): never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// `[cluster]` of the server configuration. Without it the server is the embedded one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS servers (`nats://host:4222`; credentials in the URL are accepted). The client
    /// reconnects across all of them (and the cluster members the servers announce).
    pub nats: Vec<String>,
    /// NATS authentication by token (`authorization { token }` on the server).
    #[serde(default)]
    pub nats_token: Option<Secret>,
    /// NATS authentication by user and password (both or neither).
    #[serde(default)]
    pub nats_user: Option<String>,
    #[serde(default)]
    pub nats_password: Option<Secret>,
    /// PEM file of the CA that signed the NATS servers' certificates: TLS is then required.
    #[serde(default)]
    pub nats_tls_ca: Option<std::path::PathBuf>,
    /// The JetStream domain of the NATS leaf node this node talks to, at a site of its own:
    /// its collector publishes to the site stream `MAMORI_SITE_<site>` in that domain, which
    /// the hub's `MAMORI_EVENTS` sources (a cut link buffers at the site). Only a collector.
    #[serde(default)]
    pub jetstream_domain: Option<String>,
    /// Hub nodes: the leaf sites (each a JetStream domain named like the site) whose site
    /// streams `MAMORI_EVENTS` sources.
    #[serde(default)]
    pub leaf_sites: Vec<String>,
    /// PostgreSQL connection string (`host=… user=… dbname=…` or `postgresql://…`).
    pub postgres: PgUrl,
    /// The schema the state lives in (one per cluster: tests use one each).
    #[serde(default = "default_schema")]
    pub postgres_schema: String,
    /// This node's site: a subject token (letters, digits, `-`, `_`).
    pub site: String,
    pub roles: Vec<Role>,
    /// Correlation partitions (the same number on every node).
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// The partitions whose correlation state this node's detector owns (static assignment:
    /// every partition must be owned by exactly one running detector).
    #[serde(default)]
    pub owns: Vec<u32>,
    /// JetStream replicas of the streams (3 on a 3-node JetStream cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// This node's name in `mamori cluster status` and in the consumers (default: the site
    /// and the roles).
    #[serde(default)]
    pub node: Option<String>,
}

fn default_schema() -> String {
    "mamori".into()
}
fn default_partitions() -> u32 {
    8
}
fn default_replicas() -> usize {
    1
}

/// Whether `s` can be one token of a NATS subject.
pub fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl ClusterConfig {
    /// Checks what serde cannot; the message names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.nats.is_empty() {
            return Err(("cluster.nats", "name at least one NATS server".into()));
        }
        if self.postgres.0.trim().is_empty() {
            return Err(("cluster.postgres", "must not be empty".into()));
        }
        if !pg::valid_schema(&self.postgres_schema) {
            return Err((
                "cluster.postgres_schema",
                format!(
                    "{:?}: use 1–63 lower-case letters, digits and _",
                    self.postgres_schema
                ),
            ));
        }
        if !valid_token(&self.site) {
            return Err((
                "cluster.site",
                format!(
                    "{:?}: use 1–64 letters, digits, - and _ (it is a NATS subject token)",
                    self.site
                ),
            ));
        }
        if self.roles.is_empty() {
            return Err((
                "cluster.roles",
                "name at least one of collector, detector, store".into(),
            ));
        }
        if !(1..=1024).contains(&self.partitions) {
            return Err((
                "cluster.partitions",
                format!("{} is outside 1..=1024", self.partitions),
            ));
        }
        if let Some(p) = self.owns.iter().find(|&&p| p >= self.partitions) {
            return Err((
                "cluster.owns",
                format!(
                    "partition {p} does not exist (partitions = {})",
                    self.partitions
                ),
            ));
        }
        if !self.owns.is_empty() && !self.has(Role::Detector) {
            return Err((
                "cluster.owns",
                "only a detector owns correlation partitions".into(),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err((
                "cluster.replicas",
                format!("{} is outside 1..=5", self.replicas),
            ));
        }
        match (&self.nats_user, &self.nats_password) {
            (Some(_), None) | (None, Some(_)) => {
                return Err((
                    "cluster.nats_user",
                    "nats_user and nats_password go together".into(),
                ))
            }
            (Some(_), Some(_)) if self.nats_token.is_some() => {
                return Err((
                    "cluster.nats_token",
                    "use either nats_token or nats_user/nats_password".into(),
                ))
            }
            _ => {}
        }
        if let Some(d) = &self.jetstream_domain {
            if !valid_token(d) {
                return Err((
                    "cluster.jetstream_domain",
                    format!("{d:?}: use letters, digits, - and _"),
                ));
            }
            if self.roles != [Role::Collector] {
                return Err((
                    "cluster.jetstream_domain",
                    "a node on a site's leaf node has the collector role only (detectors and stores read the hub)".into(),
                ));
            }
            if !self.leaf_sites.is_empty() {
                return Err((
                    "cluster.leaf_sites",
                    "a leaf site's node sources no other sites".into(),
                ));
            }
        }
        if let Some(s) = self.leaf_sites.iter().find(|s| !valid_token(s)) {
            return Err((
                "cluster.leaf_sites",
                format!("{s:?}: use letters, digits, - and _"),
            ));
        }
        if let Some(n) = &self.node {
            if !valid_token(n) {
                return Err((
                    "cluster.node",
                    format!("{n:?}: use letters, digits, - and _"),
                ));
            }
        }
        Ok(())
    }

    pub fn has(&self, r: Role) -> bool {
        self.roles.contains(&r)
    }

    /// This node's name.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            let roles: Vec<&str> = self
                .roles
                .iter()
                .map(|r| match r {
                    Role::Collector => "collector",
                    Role::Detector => "detector",
                    Role::Store => "store",
                })
                .collect();
            format!("{}-{}", self.site, roles.join("-"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClusterConfig {
        toml_like()
    }

    fn toml_like() -> ClusterConfig {
        serde_json::from_value(serde_json::json!({
            "nats": ["nats://127.0.0.1:4222"],
            "postgres": "host=127.0.0.1 user=postgres dbname=test password=hunter2",
            "site": "tokyo",
            "roles": ["collector", "detector"],
        }))
        .unwrap()
    }

    #[test]
    fn defaults_and_validation_name_the_key() {
        let c = cfg();
        assert_eq!((c.partitions, c.replicas), (8, 1));
        assert_eq!(c.postgres_schema, "mamori");
        assert!(c.validate().is_ok());
        assert_eq!(c.node_name(), "tokyo-collector-detector");
        let mut secret = c.clone();
        secret.nats_token = Some(Secret("hunter3".into()));
        let shown = format!("{secret:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "the connection string and the NATS token are never printed"
        );
        let bad = |f: &dyn Fn(&mut ClusterConfig), key: &str| {
            let mut c = cfg();
            f(&mut c);
            assert_eq!(c.validate().unwrap_err().0, key);
        };
        bad(&|c| c.site = "to.kyo".into(), "cluster.site");
        bad(&|c| c.site = "a b".into(), "cluster.site");
        bad(&|c| c.site = String::new(), "cluster.site");
        bad(&|c| c.nats.clear(), "cluster.nats");
        bad(&|c| c.roles.clear(), "cluster.roles");
        bad(&|c| c.partitions = 0, "cluster.partitions");
        bad(&|c| c.nats_user = Some("u".into()), "cluster.nats_user");
        bad(
            &|c| {
                c.nats_token = Some(Secret("t".into()));
                c.nats_user = Some("u".into());
                c.nats_password = Some(Secret("p".into()))
            },
            "cluster.nats_token",
        );
        bad(
            &|c| c.jetstream_domain = Some("tokyo".into()),
            "cluster.jetstream_domain",
        );
        bad(&|c| c.leaf_sites = vec!["a.b".into()], "cluster.leaf_sites");
        bad(&|c| c.owns = vec![8], "cluster.owns");
        bad(
            &|c| {
                c.roles = vec![Role::Store];
                c.owns = vec![0]
            },
            "cluster.owns",
        );
        bad(
            &|c| c.postgres_schema = "x\"; DROP".into(),
            "cluster.postgres_schema",
        );
        let r: Result<ClusterConfig, _> = serde_json::from_value(serde_json::json!({
            "nats": [], "postgres": "x", "site": "a", "roles": ["janitor"],
        }));
        assert!(r.unwrap_err().to_string().contains("janitor"));
    }
}
