//! Live analytics in `mamori serve`: the baselines, the identity directory and GeoIP of
//! `mamori-analytics` on the live stream, with risk-based alerting, run by the detection thread
//! after every stored batch.
//!
//! * Strong findings (activity by a departed identity, a daily volume far above the account's
//!   own history) are alerts; weak ones are signals that add risk to an entity, and a risk alert
//!   names every contributing event's store seq.
//! * The learned state (baselines, today's open volumes, risk) is saved in the alert store's
//!   key/value table, like correlation state, and restored on start: a restart does not
//!   relearn.
//! * The identity directory is re-read when its file changes (checked every
//!   `reload_interval_secs`); a file that no longer parses keeps the previous directory.
//! * A live stream has no end: a day's volume is judged once the stream has moved past that day.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use mamori_analytics::risk::{title_ja, RISK_RULE_ID};
use mamori_analytics::{
    AdminSessions, Alert, Analytics, Config, Directory, GeoIp, Network, Networks, Observation,
    RiskAlert, RiskConfig, RiskEngine, Signal, State,
};
use mamori_event::{Event, RuleId};
use mamori_store::{AlertStore, NewAlert, Seq};

use crate::pressure::{CapGauges, Capped, Episode};
use serde::{Deserialize, Serialize};

/// Key of the saved baselines in the alert store's key/value table.
pub const ANALYTICS_STATE_KEY: &str = "detection/analytics_state";
/// Key of the saved risk state.
pub const RISK_STATE_KEY: &str = "detection/risk_state";

/// `[analytics]`: baselines, identity directory, GeoIP and risk-based alerting on the live
/// stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    pub enabled: bool,
    /// Identity directory (CSV or JSON: kind,id,person,status,end_date,created).
    pub identities: Option<PathBuf>,
    /// MaxMind City (or Country) database: new-country and impossible-travel checks.
    pub geoip_city: Option<PathBuf>,
    /// MaxMind ASN database.
    pub geoip_asn: Option<PathBuf>,
    /// Named internal networks (`[[analytics.networks]] name = "office-dhcp"
    /// cidrs = ["10.0.20.0/24"]`): addresses inside are judged by their network.
    pub networks: Vec<Network>,
    /// Re-read the identity directory when it changed (seconds; 0 = never).
    pub reload_interval_secs: u64,
    /// Most accounts with a baseline; at the cap the least recently active are forgotten
    /// (`crate::pressure`).
    pub max_accounts: usize,
    pub risk: RiskConfig,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            enabled: true,
            identities: None,
            geoip_city: None,
            geoip_asn: None,
            networks: Vec::new(),
            reload_interval_secs: 5,
            max_accounts: mamori_analytics::DEFAULT_MAX_ACCOUNTS,
            risk: RiskConfig::default(),
        }
    }
}

/// The running analytics of the detection thread.
pub struct LiveAnalytics {
    engine: Analytics,
    risk: RiskEngine,
    networks: Networks,
    identities: Option<PathBuf>,
    identities_stamp: Option<(SystemTime, u64)>,
    reload_every: Duration,
    last_check: Instant,
    dirty: bool,
    findings: Vec<Alert>,
    risk_out: Vec<RiskAlert>,
    /// Recent network logons from networks declared `admin`, per host.
    admin: AdminSessions,
    has_admin: bool,
    /// Pressure episodes of the capped state: risk entities, accounts.
    risk_pressure: Episode,
    accounts_pressure: Episode,
}

fn stamp(p: &std::path::Path) -> Option<(SystemTime, u64)> {
    let md = std::fs::metadata(p).ok()?;
    Some((md.modified().ok()?, md.len()))
}

fn read_directory(p: &std::path::Path) -> Result<Directory, String> {
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    Directory::parse(&text, &p.display().to_string()).map_err(|e| e.to_string())
}

impl LiveAnalytics {
    /// Builds the analytics from the configuration and restores the saved state. `None` when
    /// disabled; an error names what could not be read.
    pub fn open(
        cfg: &AnalyticsConfig,
        kv: &dyn AlertStore,
    ) -> Result<Option<LiveAnalytics>, String> {
        if !cfg.enabled {
            return Ok(None);
        }
        let networks = Networks::parse(&cfg.networks).map_err(|e| format!("[analytics]: {e}"))?;
        let directory = match &cfg.identities {
            Some(p) => Some(read_directory(p).map_err(|e| format!("[analytics] identities: {e}"))?),
            None => None,
        };
        let config = Config {
            networks: networks.clone(),
            max_accounts: cfg.max_accounts,
            ..Config::default()
        };
        let mut engine = Analytics::new(config, directory, State::default());
        if let Ok(Some(saved)) = kv.kv_get(ANALYTICS_STATE_KEY) {
            if let Err(e) = engine.restore(&String::from_utf8_lossy(&saved)) {
                tracing::warn!(error = %e, "saved analytics state not restored");
            }
        }
        if cfg.geoip_city.is_some() || cfg.geoip_asn.is_some() {
            let geo = GeoIp::open(cfg.geoip_city.as_deref(), cfg.geoip_asn.as_deref())
                .map_err(|e| format!("[analytics] geoip: {e}"))?;
            engine.set_geo(geo);
        }
        let risk_state = match kv.kv_get(RISK_STATE_KEY) {
            Ok(Some(saved)) => RiskEngine::restore(&String::from_utf8_lossy(&saved))
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "saved risk state not restored");
                    Default::default()
                }),
            _ => Default::default(),
        };
        Ok(Some(LiveAnalytics {
            engine,
            risk: RiskEngine::new(cfg.risk.clone(), risk_state),
            networks,
            identities_stamp: cfg.identities.as_deref().and_then(stamp),
            identities: cfg.identities.clone(),
            reload_every: Duration::from_secs(cfg.reload_interval_secs),
            last_check: Instant::now(),
            dirty: false,
            findings: Vec::new(),
            risk_out: Vec::new(),
            admin: AdminSessions::default(),
            has_admin: cfg
                .networks
                .iter()
                .any(|n| n.role == Some(mamori_analytics::NetworkRole::Admin)),
            risk_pressure: Episode::default(),
            accounts_pressure: Episode::default(),
        }))
    }

    /// Re-reads the identity directory if its file changed.
    fn reload_directory(&mut self) {
        let Some(p) = &self.identities else { return };
        if self.reload_every.is_zero() || self.last_check.elapsed() < self.reload_every {
            return;
        }
        self.last_check = Instant::now();
        let now = stamp(p);
        if now == self.identities_stamp {
            return;
        }
        self.identities_stamp = now;
        match read_directory(p) {
            Ok(d) => {
                tracing::info!(path = %p.display(), identities = d.len(), "identity directory reloaded");
                self.engine.set_directory(Some(d));
            }
            Err(e) => {
                tracing::warn!(error = %e, "identity directory not reloaded; the previous one stays")
            }
        }
    }

    /// Runs one stored batch (`events[i]` has seq `first_seq + i`); alerts to raise go to `out`.
    pub fn process(
        &mut self,
        events: &[Event],
        first_seq: Seq,
        received_at: DateTime<Utc>,
        out: &mut Vec<NewAlert>,
    ) {
        self.reload_directory();
        let mut latest: Option<DateTime<Utc>> = None;
        for (i, ev) in events.iter().enumerate() {
            if self.has_admin {
                self.admin.observe(ev, &self.networks);
            }
            let Some(mut o) = Observation::from_event(ev) else {
                continue;
            };
            o.seq = Some(first_seq + i as u64);
            latest = latest.max(Some(o.time));
            self.risk.note_time(o.time);
            self.engine.observe(&o, &mut self.findings);
            self.dirty = true;
        }
        if let Some(t) = latest {
            self.engine.close_days_before(t, &mut self.findings);
        }
        let findings = std::mem::take(&mut self.findings);
        for a in findings {
            if self.risk.config().is_strong(a.rule_id) {
                out.push(finding_alert(&a, received_at));
            } else {
                tracing::debug!(rule = a.rule_id, account = %a.actor, "analytics signal");
                let sig = Signal::from_alert(&a, self.risk.config(), &self.networks);
                self.risk.add(sig, &mut self.risk_out);
            }
        }
        for r in self.risk_out.drain(..) {
            out.push(risk_alert(&r, received_at));
        }
    }

    /// Does a Sigma match of this level feed risk instead of alerting
    /// (`[analytics.risk] sigma_signal_max_level`)?
    pub fn sigma_is_signal(&self, level: mamori_event::Level) -> bool {
        self.risk.config().sigma_is_signal(level)
    }

    /// Is `ip` inside the company (RFC 1918 or a configured network)?
    pub fn is_internal(&self, ip: &str) -> bool {
        self.networks.name_of(ip).is_some()
    }

    /// The declared scanner network (`role = "scanner"`) of an address.
    pub fn scanner_of_ip(&self, ip: &str) -> Option<&str> {
        self.networks.scanner_of(ip)
    }

    /// The declared scanner network of an event's source address.
    pub fn scanner_of(&self, ev: &Event) -> Option<String> {
        let ip = ev.get_str("source.ip")?;
        self.networks.scanner_of(&ip).map(str::to_owned)
    }

    /// Why a remote-administration detection on `ev`'s host is IT's work: a network logon
    /// from a network declared `admin` to that host just before (the same judgement as
    /// `mamori hunt`).
    pub fn admin_session(&self, ev: &Event) -> Option<mamori_detect::outcome::Reason> {
        use mamori_detect::outcome;
        if !self.has_admin {
            return None;
        }
        let host = ev.host()?;
        let t = ev.timestamp?;
        let l = self
            .admin
            .session(&host, t, outcome::ADMIN_SESSION_MINUTES)?;
        Some(outcome::admin_reason(
            &l.network,
            &l.account,
            &l.address,
            (t - l.time).num_minutes(),
        ))
    }

    /// Adds a failed exploit probe (`mamori_detect::outcome`) as a signal on its public source
    /// address: one kind of finding (many probes count once), the weight of a `low` Sigma
    /// signal — the same as `mamori hunt`.
    pub fn failed_probe_signal(
        &mut self,
        ev: &Event,
        seq: Seq,
        why: &str,
        received_at: DateTime<Utc>,
        out: &mut Vec<NewAlert>,
    ) {
        let entities: Vec<_> = self
            .networks
            .match_entities(ev)
            .into_iter()
            .filter(|e| e.kind == mamori_analytics::EntityKind::Address)
            .collect();
        let Some(time) = ev.timestamp else { return };
        if entities.is_empty() {
            return;
        }
        self.risk.note_time(time);
        let sig = Signal {
            time,
            rule_id: mamori_detect::outcome::FAILED_PROBES_RULE_ID.to_owned(),
            title: mamori_detect::outcome::FAILED_PROBES_TITLE.to_owned(),
            weight: self.risk.config().sigma_weight(mamori_event::Level::Low),
            entities,
            source: ev.origin.to_string(),
            seq: Some(seq),
            why: why.to_owned(),
            tags: vec!["attack.initial-access".into(), "attack.t1190".into()],
        };
        self.dirty = true;
        self.risk.add(sig, &mut self.risk_out);
        for r in self.risk_out.drain(..) {
            out.push(risk_alert(&r, received_at));
        }
    }

    /// Adds a low-level Sigma match as a signal on the event's account, host and public
    /// source address; a risk alert it completes goes to `out`.
    pub fn sigma_signal(
        &mut self,
        ev: &Event,
        seq: Seq,
        meta: &mamori_sigma::Meta,
        level: mamori_event::Level,
        received_at: DateTime<Utc>,
        out: &mut Vec<NewAlert>,
    ) {
        let entities = self.networks.match_entities(ev);
        let Some(time) = ev.timestamp else { return };
        if entities.is_empty() {
            return;
        }
        self.risk.note_time(time);
        let sig = Signal {
            time,
            rule_id: meta.reference().to_owned(),
            title: meta.title.clone(),
            weight: self.risk.config().sigma_weight(level),
            entities,
            source: ev.origin.to_string(),
            seq: Some(seq),
            why: format!("Sigma rule of level {}", level.as_str()),
            tags: meta.attack_tags().map(str::to_owned).collect(),
        };
        self.dirty = true;
        self.risk.add(sig, &mut self.risk_out);
        for r in self.risk_out.drain(..) {
            out.push(risk_alert(&r, received_at));
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Sets the gauges of the capped state (risk entities, accounts) and raises the alert of
    /// a pressure episode that opens (`crate::pressure`).
    pub fn pressure(&mut self, now: DateTime<Utc>, gauges: &CapGauges, out: &mut Vec<NewAlert>) {
        let risk_cap = self.risk.config().max_entities;
        gauges.set(
            Capped::RiskEntities,
            self.risk.entity_count(),
            risk_cap,
            self.risk.evicted(),
        );
        let accounts_cap = self.engine.max_accounts();
        gauges.set(
            Capped::Accounts,
            self.engine.account_count(),
            accounts_cap,
            self.engine.evicted(),
        );
        out.extend(self.risk_pressure.update(
            Capped::RiskEntities,
            self.risk.evicted(),
            risk_cap,
            now,
            gauges,
        ));
        out.extend(self.accounts_pressure.update(
            Capped::Accounts,
            self.engine.evicted(),
            accounts_cap,
            now,
            gauges,
        ));
    }

    /// Saves the learned state in the key/value table.
    pub fn save(&mut self, kv: &dyn AlertStore, now: DateTime<Utc>) {
        let state = self.engine.save(now, 7);
        if let Err(e) = kv
            .kv_put(ANALYTICS_STATE_KEY, state.as_bytes())
            .and_then(|_| kv.kv_put(RISK_STATE_KEY, self.risk.save().as_bytes()))
        {
            tracing::error!(error = %e, "cannot save analytics state");
            return;
        }
        self.dirty = false;
    }
}

fn finding_alert(a: &Alert, received_at: DateTime<Utc>) -> NewAlert {
    let details: serde_json::Map<String, serde_json::Value> = a
        .details
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let day = a.time.date_naive();
    NewAlert {
        rule_id: RuleId(a.rule_id.into()),
        title: a.title.into(),
        level: a.level,
        event_time: Some(a.time),
        received_at,
        event_seqs: a.seq.into_iter().collect(),
        group_key: Some(format!("user.name={}", a.actor)),
        // One alert per finding, account and day (the engine says each once a day too).
        dedup_key: Some(format!("{}|{}|{day}", a.rule_id, a.actor)),
        details: serde_json::json!({
            "source": a.source,
            "host": a.host,
            "account": a.actor,
            "fields": details,
            "tags": a.tags,
            "title_ja": title_ja(a.rule_id),
        }),
    }
}

fn risk_alert(r: &RiskAlert, received_at: DateTime<Utc>) -> NewAlert {
    let mut tags: Vec<&str> = Vec::new();
    for s in &r.signals {
        for t in &s.tags {
            if !tags.contains(&t.as_str()) {
                tags.push(t);
            }
        }
    }
    let entity = format!("{}={}", r.entity.kind.as_str(), r.entity.name);
    NewAlert {
        rule_id: RuleId(RISK_RULE_ID.into()),
        title: r.title(),
        level: r.level,
        event_time: Some(r.time),
        received_at,
        event_seqs: {
            let mut v: Vec<Seq> = r.signals.iter().filter_map(|s| s.seq).collect();
            v.sort_unstable();
            v.dedup();
            v
        },
        group_key: Some(entity.clone()),
        dedup_key: Some(format!("{RISK_RULE_ID}|{entity}|{}", r.time.timestamp())),
        details: serde_json::json!({
            "entity": r.entity,
            "score": r.score,
            "threshold": r.threshold,
            "signals": r.signals,
            "why": r.why,
            "why_ja": r.why_ja,
            "tags": tags,
            "title_ja": title_ja(RISK_RULE_ID),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mamori_event::{Interner, Origin};
    use mamori_store::MemoryAlertStore;

    use super::*;

    fn vpn(names: &mut Interner, line: u64, time: &str, user: &str, src: &str) -> Event {
        let text = format!(
            "<38>1 {time} vpn01 vpnd 1 AUTH [auth@32473 user=\"{user}\" src=\"{src}\" result=\"success\" method=\"password\"] ok"
        );
        let origin = Origin::File {
            path: Arc::from(std::path::Path::new("vpn.log")),
            record: None,
            line: Some(line),
            offset: 0,
        };
        mamori_ingest::parse_syslog_line(text.as_bytes(), origin, names).unwrap()
    }

    /// Weak findings converge on one account: the risk alert names every contributing seq;
    /// the state survives a save/open cycle (a restart), so nothing is relearned.
    #[test]
    fn converging_signals_raise_one_risk_alert_citing_seqs_and_state_survives_restart() {
        let kv = MemoryAlertStore::new();
        let cfg = AnalyticsConfig {
            networks: vec![Network {
                name: "office-dhcp".into(),
                cidrs: vec!["10.0.20.0/24".into()],
                role: None,
            }],
            ..AnalyticsConfig::default()
        };
        let mut live = LiveAnalytics::open(&cfg, &kv).unwrap().unwrap();
        let mut names = Interner::new();
        let now = Utc::now();
        let mut out = Vec::new();
        // Eleven days at the office, 08:00-10:00 UTC, a new DHCP lease for every login:
        // never a "new" address.
        let mut history = Vec::new();
        for d in 1..=11u64 {
            for h in 8..=10u64 {
                history.push(vpn(
                    &mut names,
                    d * 10 + h,
                    &format!("2026-09-{d:02}T{h:02}:00:00Z"),
                    "sato",
                    &format!("10.0.20.{}", d * 10 + h),
                ));
            }
        }
        live.process(&history, 100, now, &mut out);
        assert!(out.is_empty(), "{out:?}");
        live.save(&kv, now);
        // Restart.
        let mut live = LiveAnalytics::open(&cfg, &kv).unwrap().unwrap();
        // A new public address, far from the usual hour: two kinds of evidence, one alert.
        let odd = vec![vpn(
            &mut names,
            11,
            "2026-09-12T21:30:00Z",
            "sato",
            "45.155.205.33",
        )];
        live.process(&odd, 500, now, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let a = &out[0];
        assert_eq!(&*a.rule_id.0, RISK_RULE_ID);
        assert_eq!(a.event_seqs, vec![500]);
        assert_eq!(a.group_key.as_deref(), Some("user=sato"));
        let why = a.details["why"].as_str().unwrap();
        assert!(
            why.contains("First-Seen Source Address") && why.contains("Usual Hours"),
            "{why}"
        );
        assert!(a.details["why_ja"].as_str().unwrap().contains("しきい値"));
    }

    /// `[analytics.risk] sigma_signal_max_level = "low"`: low-level Sigma matches add risk
    /// to their host and public source address; two different ones cross a threshold of 45.
    #[test]
    fn low_sigma_matches_feed_risk_when_configured() {
        let kv = MemoryAlertStore::new();
        let cfg = AnalyticsConfig {
            risk: RiskConfig {
                sigma_signal_max_level: Some(mamori_event::Level::Low),
                threshold: 45.0,
                learning_days: 0,
                ..RiskConfig::default()
            },
            ..AnalyticsConfig::default()
        };
        let mut live = LiveAnalytics::open(&cfg, &kv).unwrap().unwrap();
        assert!(live.sigma_is_signal(mamori_event::Level::Low));
        assert!(!live.sigma_is_signal(mamori_event::Level::Medium));
        let mut pack = mamori_sigma::RulePack::new();
        for (i, t) in ["Probe One", "Probe Two"].iter().enumerate() {
            pack.add_file(
                &format!("r{i}.yml"),
                &format!("title: {t}\nid: 00000000-0000-4000-8000-00000000000{i}\nlogsource:\n  category: webserver\ndetection:\n  s:\n    url.path: /x\n  condition: s\nlevel: low\n"),
                &Default::default(),
            );
        }
        assert_eq!(pack.rules.len(), 2, "{:?}", pack.failures);
        let mut names = Interner::new();
        let ev = vpn(
            &mut names,
            1,
            "2026-09-12T21:30:00Z",
            "sato",
            "45.155.205.33",
        );
        let mut ev2 = ev.clone();
        ev2.push(
            names.intern("source.ip"),
            mamori_event::Value::Str("45.155.205.33".into()),
        );
        let mut out = Vec::new();
        let now = Utc::now();
        live.sigma_signal(
            &ev2,
            7,
            &pack.rules[0].meta,
            mamori_event::Level::Low,
            now,
            &mut out,
        );
        assert!(out.is_empty());
        live.sigma_signal(
            &ev2,
            8,
            &pack.rules[1].meta,
            mamori_event::Level::Low,
            now,
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].event_seqs, vec![7, 8]);
        // User, host and address cross on the same evidence: one alert, on the first entity
        // (the VPN line is normalised, so it names its user).
        assert_eq!(out[0].group_key.as_deref(), Some("user=sato"));
    }

    #[test]
    fn a_bad_directory_or_network_is_a_start_error_naming_it() {
        let kv = MemoryAlertStore::new();
        let cfg = AnalyticsConfig {
            identities: Some("/no/such/identities.csv".into()),
            ..AnalyticsConfig::default()
        };
        let e = LiveAnalytics::open(&cfg, &kv).err().unwrap();
        assert!(e.contains("/no/such/identities.csv"), "{e}");
        let cfg = AnalyticsConfig {
            networks: vec![Network {
                name: "servers".into(),
                cidrs: vec!["10.0.0.0/40".into()],
                role: None,
            }],
            ..AnalyticsConfig::default()
        };
        let e = LiveAnalytics::open(&cfg, &kv).err().unwrap();
        assert!(e.contains("servers"), "{e}");
        let off = AnalyticsConfig {
            enabled: false,
            ..AnalyticsConfig::default()
        };
        assert!(LiveAnalytics::open(&off, &kv).unwrap().is_none());
    }
}
