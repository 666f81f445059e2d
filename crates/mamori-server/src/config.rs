//! `mamori serve --config mamori.toml`: one TOML file, validated at start.
//!
//! Every section has defaults, so an empty file (or none) gives a server that listens on
//! localhost only: syslog on UDP and TCP 5514, the API on 8080. Unknown keys are errors that
//! name the key (`deny_unknown_fields`), so a typo never silently disables a source.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mamori_event::Level;
use mamori_store::FsyncPolicy;
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where events, alerts and state are kept (`events/`, `state.db`, `uploads/`, `tls/`).
    pub data_dir: PathBuf,
    pub syslog: SyslogConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub detection: DetectionConfig,
    /// Baselines, identity directory, GeoIP and risk-based alerting on the live stream.
    pub analytics: crate::analytics::AnalyticsConfig,
    pub pipeline: PipelineConfig,
    /// Files to follow (`[[tail]]` sections), with checkpoints across restarts.
    pub tail: Vec<crate::sources::tail::TailConfig>,
    pub incidents: IncidentsConfig,
    pub vault: VaultSection,
    /// Notification channels, contacts and escalation (see `mamori-notify`); none by default.
    pub notify: Option<toml::Table>,
    /// Automatic response policy and backends (see `mamori-respond`); off by default.
    pub response: Option<mamori_respond::ResponderConfig>,
    /// Activity aggregates and source health: silent or collapsed sources are alerts.
    pub sources: crate::source_health::SourcesConfig,
    /// The monthly security audit written by the server (`[reports]`).
    pub reports: ReportsConfig,
    /// Backups to check (`[[backup]]` sections, see `mamori-backup`); none by default.
    pub backup: Vec<mamori_backup::BackupConfig>,
    /// `[backups]`: settings for all backup checks.
    pub backups: mamori_backup::BackupsSettings,
    /// `[scan]`: allow-list, targets and schedule of `mamori scan` in the server; off by default.
    pub scan: Option<mamori_scan::ScanConfig>,
    /// `[agents]`: host agents (`mamori agent`).
    pub agents: crate::agents::AgentsConfig,
    /// `[cluster]`: scale-out roles over NATS JetStream and PostgreSQL (see
    /// `mamori-cluster`); absent, the server is the embedded one.
    pub cluster: Option<mamori_cluster::ClusterConfig>,
}

/// `[reports]`: on the 1st of each month (or at the first start after it) the server writes
/// the previous month's security audit to `<data_dir>/reports/monthly-YYYY-MM-LANG.EXT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    pub monthly: bool,
    /// `ja`, `en`.
    pub languages: Vec<String>,
    /// `pdf`, `html`.
    pub formats: Vec<String>,
    /// Zone of the dates and of the month's boundaries: `UTC`, `JST`, `Asia/Tokyo` or an
    /// offset like `+09:00` (default: JST for ja, UTC for en).
    pub timezone: Option<String>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            monthly: true,
            languages: vec!["ja".into(), "en".into()],
            formats: vec!["pdf".into(), "html".into()],
            timezone: None,
        }
    }
}

/// `[vault]`: stored events and the chain of custody are sealed into the evidence vault
/// (`<data_dir>/vault`) when it was initialised with `mamori init` (which creates its key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSection {
    pub seal: bool,
    /// Sign a tree head after this many sealed records…
    pub checkpoint_every_records: u64,
    /// …or this many seconds after the previous head when records are waiting.
    pub checkpoint_every_secs: u64,
    /// A log host outside this machine (`host:port`, syslog over TCP) that receives every new
    /// signed tree head, so a rollback of the vault is detectable (`vault verify --witness`).
    pub witness_syslog: Option<String>,
    /// An HTTPS endpoint outside this machine that receives every new signed tree head as
    /// `{"tree_head": {…}}` in a POST (kept by the receiver as one JSON document per line for
    /// `vault verify --witness`). A credential: never logged.
    pub witness_webhook: Option<mamori_notify::Secret>,
    /// Key of the `X-Mamori-Signature` HMAC on those POSTs (as for webhook notifications).
    pub witness_webhook_secret: Option<mamori_notify::Secret>,
}

impl Default for VaultSection {
    fn default() -> Self {
        let v = mamori_vault::VaultConfig::default();
        VaultSection {
            seal: true,
            checkpoint_every_records: v.checkpoint_every_records,
            checkpoint_every_secs: v.checkpoint_every_secs,
            witness_syslog: None,
            witness_webhook: None,
            witness_webhook_secret: None,
        }
    }
}

/// `[incidents]`: alerts are grouped into incidents unless disabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    pub enabled: bool,
    /// The address operators reach the API at, for links in notifications.
    pub base_url: Option<String>,
    /// The lowest alert level that opens an incident of its own (default `medium`): a lower
    /// alert joins an open incident it shares an entity with, or is held (an internet password
    /// spray that guessed nothing is `low`). Set `low` when a response policy acts on low
    /// alerts, so that they reach an incident and its actions.
    pub open_min_level: Level,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            enabled: true,
            base_url: None,
            open_min_level: mamori_cases::GrouperConfig::default().open_min_level,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("mamori-data"),
            syslog: SyslogConfig::default(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            detection: DetectionConfig::default(),
            analytics: crate::analytics::AnalyticsConfig::default(),
            pipeline: PipelineConfig::default(),
            tail: Vec::new(),
            incidents: IncidentsConfig::default(),
            vault: VaultSection::default(),
            notify: None,
            response: None,
            sources: crate::source_health::SourcesConfig::default(),
            backup: Vec::new(),
            backups: mamori_backup::BackupsSettings::default(),
            scan: None,
            reports: ReportsConfig::default(),
            agents: crate::agents::AgentsConfig::default(),
            cluster: None,
        }
    }
}

/// Syslog listeners. An absent address disables that listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    pub udp: Option<SocketAddr>,
    /// TCP with newline or RFC 6587 octet-counting framing (decided per connection).
    pub tcp: Option<SocketAddr>,
    /// Syslog over TLS (RFC 5425): `{ listen = "0.0.0.0:6514", cert = "…", key = "…" }`; without
    /// cert and key a self-signed pair is generated in `<data_dir>/tls/` on first run.
    pub tls: Option<crate::sources::tls::TlsConfig>,
    /// Longest accepted message; longer frames are skipped, counted and the connection kept.
    pub max_frame_bytes: usize,
    /// Most concurrent TCP connections (and as many TLS ones); more wait for a free slot.
    /// Lowered at start if it does not fit the open-file limit (see `docs/limits.md`).
    pub max_connections: usize,
    /// A TCP/TLS connection that sends nothing for this long is closed.
    pub idle_timeout_secs: u64,
    /// …and this long once the listener is three-quarters full, so idle sockets cannot lock
    /// new senders out.
    pub idle_timeout_when_full_secs: u64,
    /// `SO_RCVBUF` asked for the UDP socket (the kernel caps it at `net.core.rmem_max`).
    pub udp_receive_buffer_bytes: usize,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            udp: Some(SocketAddr::from(([127, 0, 0, 1], 5514))),
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 5514))),
            tls: None,
            max_frame_bytes: 64 * 1024,
            max_connections: 1024,
            idle_timeout_secs: 600,
            idle_timeout_when_full_secs: 10,
            udp_receive_buffer_bytes: 8 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The API (ingest, search, alerts, rules, metrics). `None` disables it.
    pub listen: Option<SocketAddr>,
    /// Largest request body of `/api/v1/ingest`, compressed and decompressed (413 beyond).
    pub max_body_bytes: usize,
    /// Largest file accepted by `/api/v1/upload`.
    pub max_upload_bytes: usize,
    /// A request body must arrive within this many seconds (slow clients are cut off).
    pub body_timeout_secs: u64,
    /// Request headers must arrive within this many seconds; also closes idle keep-alive
    /// connections (slowloris).
    pub header_read_timeout_secs: u64,
    /// Most concurrent API connections; more wait for a free slot. Lowered at start if it
    /// does not fit the open-file limit.
    pub max_connections: usize,
    /// Most events in one ingest request (413 beyond, nothing stored).
    pub max_events_per_request: usize,
    /// PEM certificate chain (leaf first): with `tls_key`, the API and the console are served
    /// over HTTPS only, and console cookies get `Secure`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            max_body_bytes: 16 << 20,
            max_upload_bytes: 512 << 20,
            body_timeout_secs: 30,
            header_read_timeout_secs: 10,
            max_connections: 512,
            max_events_per_request: 100_000,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `always` (fsync before every acknowledgement; the default), `{ batch = { interval_ms } }`
    /// or `never`.
    pub fsync: FsyncPolicy,
    /// Delete events received more than this many days ago (whole segments).
    pub retention_days: Option<u32>,
    /// Keep the event log under this many bytes (oldest segments go first).
    pub retention_bytes: Option<u64>,
    pub segment_max_bytes: u64,
    pub index_heap_bytes: usize,
    /// No index merge takes in more than this many events: a merge's memory grows with what
    /// it merges (issue #15, findings 3 and 12), at the cost of one segment per 0.5–1 × this
    /// many events for searches to visit.
    pub index_merge_max_docs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            fsync: FsyncPolicy::Always,
            retention_days: Some(365),
            retention_bytes: None,
            segment_max_bytes: 64 << 20,
            index_heap_bytes: 64 << 20,
            index_merge_max_docs: mamori_store::EmbeddedConfig::default().index_merge_max_docs,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Sigma rule files or directories (read recursively), added to the default pack.
    pub rules: Vec<PathBuf>,
    /// Start from Mamori's own pack embedded in the binary (`rules/` of the repository).
    /// `false` with no `rules`: events are stored but not examined.
    pub default_rules: bool,
    /// Placeholder values (`%admins%`…) for the rules, a YAML file.
    pub placeholders: Option<PathBuf>,
    /// Alerts below this level are not raised (matches still feed correlations).
    pub min_level: Level,
    /// Repeats of one rule on one host/group within this many seconds merge into one alert.
    pub suppress_secs: u64,
    /// How late (event time) an event may arrive and still count in a correlation window.
    pub lateness_secs: u64,
    /// Most groups (distinct group-by values) per correlation rule; at the cap the least
    /// recently seen group is evicted, counted and reported once per episode (~350 bytes each).
    pub max_correlation_groups: usize,
    /// Poll the rule files for changes and reload them (seconds; 0 = never).
    pub reload_interval_secs: u64,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            rules: Vec::new(),
            default_rules: true,
            placeholders: None,
            min_level: Level::Low,
            suppress_secs: 3600,
            lateness_secs: 60,
            max_correlation_groups: 25_000,
            reload_interval_secs: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Capacity (in batches) of the queue between the sources and storage. When it is full,
    /// TCP and HTTP sources wait (backpressure) and UDP drops and counts.
    pub queue_batches: usize,
    /// Most events stored with one write (and one fsync).
    pub max_group_events: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue_batches: 64,
            max_group_events: 4096,
        }
    }
}

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

impl ServerConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = ServerConfig::parse(&text, path)?;
        // `[scan]` paths (ca_file, templates, kev_file) are read from the file's directory,
        // as `mamori scan --config` reads them.
        if let Some(s) = &mut cfg.scan {
            s.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        }
        Ok(cfg)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<ServerConfig, ConfigError> {
        let cfg: ServerConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks the values serde cannot.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &'static str, message: String| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                key,
                message,
            })
        };
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty".into());
        }
        for l in &self.reports.languages {
            if mamori_report::Lang::parse(l).is_none() {
                return bad(
                    "reports.languages",
                    format!("unknown language `{l}` (ja, en)"),
                );
            }
        }
        for f in &self.reports.formats {
            if mamori_report::Format::parse(f).is_none() {
                return bad(
                    "reports.formats",
                    format!("unknown format `{f}` (pdf, html)"),
                );
            }
        }
        if let Some(z) = &self.reports.timezone {
            if mamori_report::Zone::parse(z).is_none() {
                return bad(
                    "reports.timezone",
                    format!("unknown zone `{z}` (UTC, JST, Asia/Tokyo or an offset like +09:00)"),
                );
            }
        }
        if let Err(m) = self.sources.validate() {
            return bad("sources", m);
        }
        if let Some(c) = &self.cluster {
            if let Err((key, m)) = c.validate() {
                return bad(key, m);
            }
        }
        if !(256..=16 << 20).contains(&self.syslog.max_frame_bytes) {
            return bad(
                "syslog.max_frame_bytes",
                format!("{} is outside 256..=16777216", self.syslog.max_frame_bytes),
            );
        }
        if self.syslog.max_connections == 0 {
            return bad("syslog.max_connections", "must be at least 1".into());
        }
        if self.http.max_body_bytes < 1024 {
            return bad("http.max_body_bytes", "must be at least 1024".into());
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return bad(
                "http.tls_cert",
                "set both `tls_cert` and `tls_key` (HTTPS), or neither".into(),
            );
        }
        if self.http.body_timeout_secs == 0 {
            return bad("http.body_timeout_secs", "must be at least 1".into());
        }
        for (key, v) in [
            (
                "http.header_read_timeout_secs",
                self.http.header_read_timeout_secs,
            ),
            ("http.max_connections", self.http.max_connections as u64),
            (
                "http.max_events_per_request",
                self.http.max_events_per_request as u64,
            ),
            ("syslog.idle_timeout_secs", self.syslog.idle_timeout_secs),
            (
                "syslog.idle_timeout_when_full_secs",
                self.syslog.idle_timeout_when_full_secs,
            ),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.pipeline.queue_batches == 0 {
            return bad("pipeline.queue_batches", "must be at least 1".into());
        }
        if self.pipeline.max_group_events == 0 {
            return bad("pipeline.max_group_events", "must be at least 1".into());
        }
        if !(4096..=1 << 30).contains(&self.storage.segment_max_bytes) {
            return bad(
                "storage.segment_max_bytes",
                "must be within 4 KiB..1 GiB".into(),
            );
        }
        if self.storage.index_merge_max_docs < 10_000 {
            return bad(
                "storage.index_merge_max_docs",
                "must be at least 10000".into(),
            );
        }
        if self.storage.index_heap_bytes < 15 << 20 {
            return bad(
                "storage.index_heap_bytes",
                "must be at least 15 MiB (tantivy's minimum)".into(),
            );
        }
        if let Some(u) = &self.vault.witness_webhook {
            let u = u.expose();
            if !(u.starts_with("https://") || u.starts_with("http://")) || u.len() < 10 {
                return bad(
                    "vault.witness_webhook",
                    "must be an http(s):// URL (https outside this machine)".into(),
                );
            }
        }
        if self.vault.witness_webhook_secret.is_some() && self.vault.witness_webhook.is_none() {
            return bad(
                "vault.witness_webhook_secret",
                "is set but vault.witness_webhook is not".into(),
            );
        }
        for t in &self.tail {
            if let Err(m) = t.validate() {
                return bad("tail", m);
            }
        }
        if self.notify.is_some() {
            let cfg = self
                .notify_config()
                .map_err(|message| ConfigError::Invalid {
                    path: path.to_owned(),
                    key: "notify",
                    message,
                })?;
            if let Some(c) = cfg {
                if let Err(e) = mamori_notify::Notifier::new(&c) {
                    return bad("notify", e.to_string());
                }
            }
        }
        if let Some(r) = &self.response {
            if let Err(e) = mamori_respond::Responder::new(r.clone()) {
                return bad("response", e.to_string());
            }
        }
        if let Err(e) = mamori_backup::validate_all(&self.backup) {
            return bad("backup", e.to_string());
        }
        if let Some(s) = &self.scan {
            if let Err(e) = crate::scans::validate(s) {
                return bad("scan", e);
            }
        }
        for r in &self.detection.rules {
            if !r.exists() {
                return bad("detection.rules", format!("{} does not exist", r.display()));
            }
        }
        Ok(())
    }

    /// The typed `[notify]` section, if any.
    pub fn notify_config(&self) -> Result<Option<mamori_notify::NotifyConfig>, String> {
        match &self.notify {
            None => Ok(None),
            Some(t) => {
                use serde::Deserialize as _;
                mamori_notify::NotifyConfig::deserialize(toml::Value::Table(t.clone()))
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// A commented example configuration (`mamori serve --print-config`).
    pub fn example() -> String {
        let mut s = String::from(
            "# Mamori server configuration. Every key is optional; shown are the defaults.\n",
        );
        s.push_str(&toml::to_string_pretty(&ServerConfig::default()).unwrap_or_default());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_localhost_defaults() {
        let c = ServerConfig::parse("", Path::new("m.toml")).unwrap();
        assert_eq!(c, ServerConfig::default());
        assert!(c.syslog.udp.unwrap().ip().is_loopback());
        assert!(c.http.listen.unwrap().ip().is_loopback());
        assert_eq!(c.storage.fsync, FsyncPolicy::Always);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = ServerConfig::parse("[syslog]\nupd = \"0.0.0.0:514\"\n", Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.toml"), "{e}");
        assert!(e.contains("upd"), "{e}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let e = ServerConfig::parse("[syslog]\nmax_frame_bytes = 10\n", Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("syslog.max_frame_bytes"), "{e}");
        let e = ServerConfig::parse("[http]\nlisten = \"not an address\"\n", Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let e = ServerConfig::parse(
            "[detection]\nrules = [\"/no/such/rules\"]\n",
            Path::new("m.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("detection.rules") && e.contains("/no/such/rules"),
            "{e}"
        );
    }

    #[test]
    fn example_round_trips() {
        let text = ServerConfig::example();
        let c = ServerConfig::parse(&text, Path::new("example.toml")).unwrap();
        assert_eq!(c, ServerConfig::default());
    }

    #[test]
    fn fsync_policies_parse() {
        let c = ServerConfig::parse("[storage]\nfsync = \"never\"\n", Path::new("m.toml")).unwrap();
        assert_eq!(c.storage.fsync, FsyncPolicy::Never);
    }
}
