//! Glue for `mamori hunt`'s baseline analytics (`mamori-analytics`): options, a parallel pass
//! that extracts compact observations from every file, the time-ordered analytics run, and the
//! timeline rows.
//!
//! Strong findings (a departed identity, a volume far above the account's own history) are
//! alert rows; weak ones (first-seen address/host/country, off-hours, old key, impossible
//! travel) are rows of kind `signal` that feed risk-based alerting
//! ([`mamori_analytics::risk`]); a risk alert is a row of kind `risk` that cites every
//! contributing signal (its `file:line` in the details, the full signals in JSONL's `event`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use mamori_analytics::risk::{title_ja, RISK_RULE_ID};
use mamori_analytics::{AdminLogon, AdminSessions};
use mamori_analytics::{
    Alert, Analytics, Config, Directory, GeoIp, Network, NetworkRole, Networks, Observation,
    RiskAlert, RiskConfig, RiskEngine, Signal, State,
};
use mamori_detect::{outcome, RuleInfo};
use mamori_event::Event;
use mamori_event::Level;
use mamori_ingest::ReadOptions;
use rayon::prelude::*;

use crate::timeline::{Row, RowKind};

#[derive(Args, Debug, Default)]
pub(crate) struct AnalyticsArgs {
    /// Run the baseline analytics (first-seen, volume, off-hours) and keep what they learned in
    /// FILE (read if it exists, written after the hunt).
    #[arg(long, value_name = "FILE")]
    baseline_state: Option<PathBuf>,
    /// Identity directory (CSV or JSON: kind,id,person,status,end_date,created); any activity
    /// by a departed identity is an alert. Enables the baseline analytics.
    #[arg(long, value_name = "FILE")]
    identities: Option<PathBuf>,
    /// Run the baseline analytics without a saved state (the first days of the logs are learned).
    #[arg(long)]
    baselines: bool,
    /// MaxMind GeoIP2/GeoLite2 City (or Country) database: new-country and impossible-travel
    /// checks on logins. Enables the baseline analytics.
    #[arg(long, value_name = "FILE")]
    geoip_city: Option<PathBuf>,
    /// MaxMind ASN database: the network of a first-seen address. Enables the baseline analytics.
    #[arg(long, value_name = "FILE")]
    geoip_asn: Option<PathBuf>,
    /// A named internal network, `NAME[:ROLE]=CIDR[,CIDR…]` (e.g. `office-dhcp=10.0.20.0/24`),
    /// repeatable: addresses inside are judged by their network (RFC 1918 ranges always are).
    /// ROLE `scanner` declares the company's own vulnerability scanner (its probes are signals,
    /// e.g. `openvas:scanner=10.0.10.50`); ROLE `admin` declares IT's admin workstations
    /// (PsExec and other remote administration right after a logon from there is a signal).
    #[arg(long = "network", value_name = "NAME[:ROLE]=CIDR,…")]
    networks: Vec<String>,
    /// Risk at which an entity (account, key, public address) raises an alert.
    #[arg(long, value_name = "N", default_value_t = RiskConfig::default().threshold)]
    risk_threshold: f64,
    /// Days at the start of the logs (or of a saved baseline) without risk alerts.
    #[arg(long, value_name = "DAYS", default_value_t = RiskConfig::default().learning_days)]
    learning_days: i64,
    /// Sigma rules of at most this level (informational, low) add risk as signals instead of
    /// alerting (weights: informational 10, low 25).
    #[arg(long, value_name = "LEVEL", value_parser = parse_signal_level)]
    sigma_signals: Option<Level>,
}

fn parse_signal_level(s: &str) -> Result<Level, String> {
    match Level::parse(s) {
        Some(l @ (Level::Informational | Level::Low)) => Ok(l),
        Some(_) => Err(format!(
            "`{s}`: only informational or low rules can be signals (medium and above alert)"
        )),
        None => Err(format!("unknown level `{s}` (informational or low)")),
    }
}

/// Turns matches of low-level Sigma rules into signals (`--sigma-signals`).
pub(crate) struct SigmaRisk {
    cfg: RiskConfig,
    networks: Networks,
    has_admin: bool,
}

impl SigmaRisk {
    pub(crate) fn is_signal(&self, level: Level) -> bool {
        self.cfg.sigma_is_signal(level)
    }

    /// Is `ip` inside the company (RFC 1918 or a configured network)?
    pub(crate) fn is_internal(&self, ip: &str) -> bool {
        self.networks.name_of(ip).is_some()
    }

    /// The declared scanner network (`--network NAME:scanner=…`) of an address.
    pub(crate) fn scanner_of_ip(&self, ip: &str) -> Option<&str> {
        self.networks.scanner_of(ip)
    }

    /// The declared scanner network of an event's source address.
    pub(crate) fn scanner_of(&self, ev: &Event) -> Option<String> {
        let ip = ev.get_str("source.ip")?;
        self.networks.scanner_of(&ip).map(str::to_owned)
    }

    /// The verdict on a standalone match: a declared scanner's probes are signals whatever
    /// the answer; others are judged by their outcome (`mamori_detect::outcome`). The flag
    /// says the verdict came from the scanner declaration (no risk, no episode).
    pub(crate) fn judge(&self, info: &RuleInfo, ev: &Event) -> (outcome::Verdict, bool) {
        if let Some(n) = self.scanner_of(ev) {
            let v = outcome::judge_scanner_match(&info.meta, &info.logsource, ev, &n);
            if v != outcome::Verdict::Alert {
                return (v, true);
            }
        }
        (outcome::judge_match(&info.meta, &info.logsource, ev), false)
    }

    /// An admin-network logon (`--network NAME:admin=…`) this event is, if any.
    pub(crate) fn admin_logon(&self, ev: &Event) -> Option<(String, AdminLogon)> {
        mamori_analytics::admin_logon(ev, &self.networks)
    }

    /// Remote-administration rows held back during the parallel pass, judged once every
    /// admin-network logon is known (they may be in another file: System vs Security log):
    /// right after a logon from IT's admin network to the same host, a row is a signal that
    /// says who and from where; otherwise it stays an alert.
    pub(crate) fn judge_remote_admin(
        &self,
        held: Vec<Row>,
        logons: Vec<(String, AdminLogon)>,
    ) -> Vec<Row> {
        let mut sessions = AdminSessions::default();
        for (h, l) in logons {
            sessions.note(h, l);
        }
        held.into_iter()
            .map(|mut row| {
                let session = row.timestamp.and_then(|t| {
                    sessions
                        .session(&row.host, t, outcome::ADMIN_SESSION_MINUTES)
                        .map(|l| (l, (t - l.time).num_minutes()))
                });
                if let Some((l, min)) = session {
                    let r = outcome::admin_reason(&l.network, &l.account, &l.address, min);
                    row.kind = RowKind::Signal;
                    row.details.push(("outcome".into(), r.en));
                    row.details.push(("outcome_ja".into(), r.ja));
                }
                row
            })
            .collect()
    }

    /// Does any configured network have the `admin` role?
    pub(crate) fn has_admin_network(&self) -> bool {
        self.has_admin
    }

    /// The risk signal of a failed exploit probe (`mamori_detect::outcome`): it weighs on the
    /// public source address only, as one kind of finding (many probes count once), with the
    /// weight of a `low` Sigma signal.
    pub(crate) fn failed_probe_signal(&self, ev: &Event, why: &str) -> Option<Signal> {
        let entities: Vec<_> = self
            .networks
            .match_entities(ev)
            .into_iter()
            .filter(|e| e.kind == mamori_analytics::EntityKind::Address)
            .collect();
        if entities.is_empty() {
            return None;
        }
        Some(Signal {
            time: ev.timestamp?,
            rule_id: mamori_detect::outcome::FAILED_PROBES_RULE_ID.to_owned(),
            title: mamori_detect::outcome::FAILED_PROBES_TITLE.to_owned(),
            weight: self.cfg.sigma_weight(Level::Low),
            entities,
            source: ev.origin.to_string(),
            seq: None,
            why: why.to_owned(),
            tags: vec!["attack.initial-access".into(), "attack.t1190".into()],
        })
    }

    /// The signal of one match: it weighs on the event's account, host and public source
    /// address (none of them: no signal).
    pub(crate) fn signal(&self, ev: &Event, info: &RuleInfo) -> Option<Signal> {
        let entities = self.networks.match_entities(ev);
        if entities.is_empty() {
            return None;
        }
        Some(Signal {
            time: ev.timestamp?,
            rule_id: info.meta.reference().to_owned(),
            title: info.meta.title.clone(),
            weight: self.cfg.sigma_weight(info.level),
            entities,
            source: ev.origin.to_string(),
            seq: None,
            why: format!("Sigma rule of level {}", info.level.as_str()),
            tags: info.meta.attack_tags().map(str::to_owned).collect(),
        })
    }
}

/// Parses `--network NAME=CIDR,CIDR`.
fn parse_networks(specs: &[String]) -> anyhow::Result<Networks> {
    let mut list = Vec::new();
    for s in specs {
        let (name, cidrs) = s
            .split_once('=')
            .with_context(|| format!("--network `{s}`: expected NAME[:ROLE]=CIDR[,CIDR…]"))?;
        let (name, role) = match name.split_once(':') {
            Some((n, r)) => (
                n,
                Some(NetworkRole::parse(r).with_context(|| {
                    format!("--network `{s}`: unknown role `{r}` (scanner or admin)")
                })?),
            ),
            None => (name, None),
        };
        list.push(Network {
            name: name.trim().to_owned(),
            cidrs: cidrs.split(',').map(|c| c.trim().to_owned()).collect(),
            role,
        });
    }
    Ok(Networks::parse(&list)?)
}

/// Saved risk state lives beside the baseline state: `FILE.risk.json`.
fn risk_state_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".risk.json");
    PathBuf::from(s)
}

impl AnalyticsArgs {
    pub(crate) fn sigma_risk(&self) -> anyhow::Result<SigmaRisk> {
        Ok(SigmaRisk {
            cfg: self.risk_config(),
            networks: parse_networks(&self.networks)?,
            has_admin: self.networks.iter().any(|n| {
                n.split('=')
                    .next()
                    .is_some_and(|h| h.trim_end().ends_with(":admin"))
            }),
        })
    }

    fn risk_config(&self) -> RiskConfig {
        RiskConfig {
            threshold: self.risk_threshold,
            learning_days: self.learning_days,
            sigma_signal_max_level: self.sigma_signals,
            ..RiskConfig::default()
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.baselines
            || self.baseline_state.is_some()
            || self.identities.is_some()
            || self.geoip_city.is_some()
            || self.geoip_asn.is_some()
    }
}

/// Reads `files` again, runs the analytics over their observations in time order, returns rows.
pub(crate) fn run(
    args: &AnalyticsArgs,
    files: &[PathBuf],
    read_opts: &ReadOptions,
    pool: &rayon::ThreadPool,
    min_level: Level,
    sigma_signals: Vec<Signal>,
) -> anyhow::Result<Vec<Row>> {
    let directory = match &args.identities {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(Directory::parse(&text, &p.display().to_string())?)
        }
        None => None,
    };
    let state = match &args.baseline_state {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            State::from_json(&text).with_context(|| format!("in {}", p.display()))?
        }
        _ => State::default(),
    };
    let mut obs: Vec<Observation> = if args.enabled() {
        pool.install(|| {
            files
                .par_iter()
                .flat_map_iter(|path: &PathBuf| observations(path, read_opts))
                .collect()
        })
    } else {
        Vec::new()
    };
    obs.sort_by(|a, b| (a.time, &a.source).cmp(&(b.time, &b.source)));
    let networks = parse_networks(&args.networks)?;
    let risk_cfg = args.risk_config();
    let risk_state = match &args.baseline_state {
        Some(p) if risk_state_path(p).exists() => {
            let rp = risk_state_path(p);
            let text = std::fs::read_to_string(&rp)
                .with_context(|| format!("cannot read {}", rp.display()))?;
            RiskEngine::restore(&text).with_context(|| format!("in {}", rp.display()))?
        }
        _ => Default::default(),
    };
    let mut risk = RiskEngine::new(risk_cfg, risk_state);
    let cfg = Config {
        networks: networks.clone(),
        ..Config::default()
    };
    let mut engine = Analytics::new(cfg, directory, state);
    if args.geoip_city.is_some() || args.geoip_asn.is_some() {
        engine.set_geo(GeoIp::open(
            args.geoip_city.as_deref(),
            args.geoip_asn.as_deref(),
        )?);
    }
    if let Some(t) = obs
        .first()
        .map(|o| o.time)
        .into_iter()
        .chain(sigma_signals.iter().map(|s| s.time))
        .min()
    {
        risk.note_time(t);
    }
    let mut alerts = Vec::new();
    for o in &obs {
        engine.observe(o, &mut alerts);
    }
    engine.finish(&mut alerts);
    // Findings come out per account in time order, but volume findings close a day late:
    // risk is added in event time.
    alerts.sort_by(|a, b| (a.time, &a.source).cmp(&(b.time, &b.source)));
    let mut rows = Vec::new();
    let mut signals: Vec<Signal> = sigma_signals;
    for a in alerts {
        if risk.config().is_strong(a.rule_id) {
            if a.level >= min_level {
                rows.push(finding_row(a, RowKind::Detection));
            }
            continue;
        }
        signals.push(Signal::from_alert(&a, risk.config(), &networks));
        rows.push(finding_row(a, RowKind::Signal));
    }
    // Risk is added in event time (Sigma signals and analytics findings interleaved).
    signals.sort_by(|a, b| (a.time, &a.source).cmp(&(b.time, &b.source)));
    let mut risk_alerts = Vec::new();
    for s in signals {
        risk.add(s, &mut risk_alerts);
    }
    rows.extend(
        risk_alerts
            .into_iter()
            .filter(|r| r.level >= min_level)
            .map(risk_row),
    );
    if let Some(p) = &args.baseline_state {
        std::fs::write(p, engine.state().to_json())
            .with_context(|| format!("cannot write {}", p.display()))?;
        let rp = risk_state_path(p);
        std::fs::write(&rp, risk.save())
            .with_context(|| format!("cannot write {}", rp.display()))?;
    }
    Ok(rows)
}

fn finding_row(a: Alert, kind: RowKind) -> Row {
    let mut details = a.details;
    if let Some(ja) = title_ja(a.rule_id) {
        details.push(("title_ja".into(), ja.into()));
    }
    Row {
        timestamp: Some(a.time),
        host: a.host,
        source: a.source,
        rule_id: a.rule_id.to_owned(),
        rule_title: a.title.to_owned(),
        level: a.level,
        tags: a.tags.iter().map(|t| (*t).to_owned()).collect(),
        details,
        event: None,
        evidence: None,
        kind,
    }
}

/// A risk alert row: the entity, the score, every contributing signal (`title @ file:line`),
/// why in English and Japanese; JSONL's `event` carries the full signals.
fn risk_row(r: RiskAlert) -> Row {
    let mut tags: Vec<String> = Vec::new();
    for s in &r.signals {
        for t in &s.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
    }
    let cited = r
        .signals
        .iter()
        .map(|s| format!("{} @ {}", s.title, s.source))
        .collect::<Vec<_>>()
        .join("; ");
    Row {
        timestamp: Some(r.time),
        host: String::new(),
        source: r
            .signals
            .last()
            .map(|s| s.source.clone())
            .unwrap_or_default(),
        rule_id: RISK_RULE_ID.to_owned(),
        rule_title: r.title(),
        level: r.level,
        tags,
        details: vec![
            (r.entity.kind.as_str().to_owned(), r.entity.name.clone()),
            ("score".into(), format!("{:.0}", r.score)),
            ("threshold".into(), format!("{:.0}", r.threshold)),
            ("signals".into(), cited),
            ("why".into(), r.why.clone()),
            ("why_ja".into(), r.why_ja.clone()),
        ],
        event: Some(serde_json::json!({ "risk": r }).to_string().into()),
        evidence: None,
        kind: RowKind::Risk,
    }
}

fn observations(path: &Path, read_opts: &ReadOptions) -> Vec<Observation> {
    let mut out = Vec::new();
    let _ = mamori_ingest::read_file(path, read_opts, &mut |ev| {
        if let Some(o) = Observation::from_event(&ev) {
            out.push(o);
        }
    });
    out
}
