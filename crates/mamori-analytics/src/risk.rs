//! Risk-based alerting: weak findings become *signals* that add risk to an entity, and an alert
//! is raised only when an entity's risk crosses a threshold, or when a finding is strong on its
//! own.
//!
//! # Key design decision: alerts need converging evidence, not one oddity
//!
//! A first-seen address, a first-seen host, a login at an odd hour or a rare Sigma match of
//! level `low` each happen to honest staff every week; alerting on each one buries an operator
//! (issue #14: about 2,000 false alerts per 100,000 events on a realistic month). Here each such
//! finding is a [`Signal`] with a weight. The signal adds risk to every [`Entity`] it names (the
//! account or access key, the host for Sigma signals, a *public* address); risk decays with a
//! half-life and only signals inside a window count; each rule counts at most once per entity
//! (its most recent occurrence), so the threshold is reached only when *different* kinds of
//! evidence converge on one entity. Strong findings (a departed identity, a volume far above the
//! account's own history) alert alone.
//!
//! Internal addresses are judged by their network ([`Networks`]: RFC 1918 ranges and the
//! configured `networks` list, e.g. `office-dhcp`, `vpn-pool`, `servers`): a DHCP lease changing
//! inside `office-dhcp` is not a new address, and a shared internal network is never an entity
//! that collects the risk of everyone in it.
//!
//! Pure like the rest of the crate: time comes from the signals, all state is in [`RiskState`]
//! (serialisable, so `mamori serve` persists it and a restart does not forget).

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use mamori_event::Level;
use serde::{Deserialize, Serialize};

use crate::{ids, Alert, Error, Result};

/// Rule id of a risk alert (the `rule_id` column of the timeline).
pub const RISK_RULE_ID: &str = "mamori-analytics-risk";

/// A named internal network (`[[analytics.networks]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// e.g. `office-dhcp`, `vpn-pool`, `servers`.
    pub name: String,
    /// CIDR ranges, e.g. `10.0.20.0/24`.
    pub cidrs: Vec<String>,
    /// What the network is for, when it changes how its traffic is judged (declared by the
    /// operator; most networks have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<NetworkRole>,
}

/// A declared role of an internal network: traffic that is the network's job is judged as
/// such — a signal with the network's name as its explanation, never an alert by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkRole {
    /// The company's own vulnerability scanner(s): their probes, scanning bursts and
    /// password tests are the scan the company ordered (signals, no risk, no episode).
    Scanner,
    /// IT's administration workstations / jump hosts: remote administration tools (PsExec,
    /// remote services, WMI/WinRM) run on a host right after a network logon from here are
    /// IT's work (signals, not alerts).
    Admin,
}

impl NetworkRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkRole::Scanner => "scanner",
            NetworkRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<NetworkRole> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scanner" => Some(NetworkRole::Scanner),
            "admin" => Some(NetworkRole::Admin),
            _ => None,
        }
    }
}

/// Parsed networks: which internal network an address belongs to.
#[derive(Debug, Clone, Default)]
pub struct Networks {
    ranges: Vec<(String, IpAddr, u8)>,
    roles: Vec<(String, NetworkRole)>,
}

const RFC1918: [(&str, [u8; 4], u8); 3] = [
    ("internal 10.0.0.0/8", [10, 0, 0, 0], 8),
    ("internal 172.16.0.0/12", [172, 16, 0, 0], 12),
    ("internal 192.168.0.0/16", [192, 168, 0, 0], 16),
];

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Networks {
    /// Parses the configured networks; a bad CIDR is an error naming the network.
    pub fn parse(list: &[Network]) -> Result<Networks> {
        let mut ranges = Vec::new();
        let mut roles = Vec::new();
        for n in list {
            if let Some(r) = n.role {
                roles.push((n.name.clone(), r));
            }
            for c in &n.cidrs {
                let bad = || Error::Load {
                    path: format!("network {}", n.name),
                    message: format!("`{c}` is not an address range like 10.0.20.0/24"),
                };
                let (addr, bits) = c.split_once('/').unwrap_or((c, ""));
                let ip: IpAddr = addr.trim().parse().map_err(|_| bad())?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits: u8 = if bits.is_empty() {
                    max
                } else {
                    bits.trim().parse().map_err(|_| bad())?
                };
                if bits > max {
                    return Err(bad());
                }
                ranges.push((n.name.clone(), ip, bits));
            }
        }
        // Most specific first, so `servers` inside `10.0.0.0/8` wins.
        ranges.sort_by_key(|r| std::cmp::Reverse(r.2));
        Ok(Networks { ranges, roles })
    }

    /// The declared role of the network `ip` belongs to, with the network's name (the most
    /// specific range decides: a scanner's /32 inside the admin /24 is the scanner).
    pub fn role_of(&self, ip: &str) -> Option<(&str, NetworkRole)> {
        let a: IpAddr = ip.trim().parse().ok()?;
        let (n, _, _) = self.ranges.iter().find(|(_, r, b)| in_cidr(a, *r, *b))?;
        let role = self.roles.iter().find(|(name, _)| name == n)?.1;
        Some((n.as_str(), role))
    }

    /// The declared scanner network of `ip`, if any.
    pub fn scanner_of(&self, ip: &str) -> Option<&str> {
        self.role_of(ip)
            .filter(|(_, r)| *r == NetworkRole::Scanner)
            .map(|(n, _)| n)
    }

    /// The entities a Sigma match weighs on: the event's account, its host and its public
    /// source address (an internal one is judged by its network, never per address). Shared by
    /// `hunt` and `serve`, so both give a match the same entities.
    pub fn match_entities(&self, ev: &mamori_event::Event) -> Vec<Entity> {
        let mut entities = Vec::new();
        if let Some(u) = ev
            .get_str("user.name")
            .filter(|u| !u.is_empty() && u != "-")
        {
            entities.push(Entity::actor(&u));
        }
        if let Some(h) = ev.host().filter(|h| !h.is_empty()) {
            entities.push(Entity {
                kind: EntityKind::Host,
                name: h.to_ascii_lowercase(),
            });
        }
        if let Some(ip) = ev.get_str("source.ip") {
            if self.name_of(&ip).is_none() && ip.parse::<IpAddr>().is_ok() {
                entities.push(Entity {
                    kind: EntityKind::Address,
                    name: ip.into_owned(),
                });
            }
        }
        entities
    }

    /// The internal network of `ip`: a configured name, an RFC 1918 / ULA / loopback range,
    /// or `None` for a public address (or text that is no address).
    pub fn name_of(&self, ip: &str) -> Option<&str> {
        let a: IpAddr = ip.trim().parse().ok()?;
        if let Some((n, _, _)) = self.ranges.iter().find(|(_, r, b)| in_cidr(a, *r, *b)) {
            return Some(n);
        }
        for (n, r, b) in RFC1918 {
            if in_cidr(a, IpAddr::from(r), b) {
                return Some(n);
            }
        }
        match a {
            IpAddr::V4(v) if v.is_loopback() => Some("loopback"),
            IpAddr::V6(v) if v.is_loopback() => Some("loopback"),
            IpAddr::V6(v) if (v.segments()[0] & 0xfe00) == 0xfc00 => Some("internal fc00::/7"),
            _ => None,
        }
    }

    /// What a baseline remembers for an address: `net:<name>` inside an internal network,
    /// the address itself otherwise.
    pub fn baseline_key(&self, ip: &str) -> String {
        match self.name_of(ip) {
            Some(n) => format!("net:{n}"),
            None => ip.to_owned(),
        }
    }
}

/// Tunables of risk-based alerting (`[analytics.risk]` in `mamori serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// An entity whose risk reaches this raises an alert.
    pub threshold: f64,
    /// Risk of a signal halves every this many hours.
    pub half_life_hours: f64,
    /// Only signals of the last this many hours count.
    pub window_hours: i64,
    /// Days after the first signal during which no risk alert is raised (the baselines are
    /// still learning what is normal here).
    pub learning_days: i64,
    /// Weight of each weak finding, by rule id (analytics ids; Sigma rules get `sigma_weights`).
    pub weights: BTreeMap<String, f64>,
    /// Findings that raise an alert on their own, by rule id.
    pub strong: Vec<String>,
    /// Sigma rules of at most this level feed risk instead of alerting (`None`: all alert).
    pub sigma_signal_max_level: Option<Level>,
    /// Weight of a Sigma signal by its level (`informational`, `low`, …).
    pub sigma_weights: BTreeMap<String, f64>,
    /// Most entities holding signals. Public addresses are entities, so a flood of failed
    /// probes from forged or rented addresses would otherwise grow the state without bound;
    /// at the cap the entities signalled least recently are dropped (their risk is lost).
    pub max_entities: usize,
}

impl Default for RiskConfig {
    fn default() -> RiskConfig {
        let weights = [
            // A new public address at an hour the account is never active: the classic
            // stolen-password login, and exactly the threshold together.
            (ids::FIRST_ADDRESS, 60.0),
            (ids::FIRST_HOST, 25.0),
            (ids::OFF_HOURS, 40.0),
            (ids::NEW_COUNTRY, 60.0),
            (ids::IMPOSSIBLE_TRAVEL, 60.0),
            (ids::KEY_AGE, 30.0),
        ];
        RiskConfig {
            threshold: 100.0,
            half_life_hours: 12.0,
            window_hours: 48,
            learning_days: 2,
            weights: weights.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            strong: vec![ids::DEPARTED.to_owned(), ids::VOLUME.to_owned()],
            sigma_signal_max_level: None,
            sigma_weights: [("informational", 10.0), ("low", 25.0)]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            max_entities: DEFAULT_MAX_ENTITIES,
        }
    }
}

impl RiskConfig {
    /// Does this finding alert on its own?
    pub fn is_strong(&self, rule_id: &str) -> bool {
        self.strong.iter().any(|s| s == rule_id)
    }

    /// Weight of an analytics finding (unknown ids: 0, i.e. it never adds risk).
    pub fn weight(&self, rule_id: &str) -> f64 {
        self.weights.get(rule_id).copied().unwrap_or(0.0)
    }

    /// Does a Sigma rule of this level feed risk instead of alerting?
    pub fn sigma_is_signal(&self, level: Level) -> bool {
        self.sigma_signal_max_level.is_some_and(|m| level <= m)
    }

    /// Weight of a Sigma signal of this level.
    pub fn sigma_weight(&self, level: Level) -> f64 {
        self.sigma_weights
            .get(level.as_str())
            .copied()
            .unwrap_or(0.0)
    }
}

/// What kind of thing collects risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    User,
    Key,
    Host,
    Address,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Key => "key",
            EntityKind::Host => "host",
            EntityKind::Address => "address",
        }
    }

    fn as_str_ja(self) -> &'static str {
        match self {
            EntityKind::User => "アカウント",
            EntityKind::Key => "アクセスキー",
            EntityKind::Host => "ホスト",
            EntityKind::Address => "アドレス",
        }
    }
}

/// A thing that collects risk: `user:sato`, `host:fs01`, `address:203.0.113.9`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entity {
    pub kind: EntityKind,
    pub name: String,
}

impl Entity {
    /// An account, or an access key when the name looks like one (`AKIA…`/`ASIA…`).
    pub fn actor(name: &str) -> Entity {
        let key = name.len() >= 16
            && (name.starts_with("AKIA") || name.starts_with("ASIA"))
            && name.bytes().all(|b| b.is_ascii_alphanumeric());
        Entity {
            kind: if key {
                EntityKind::Key
            } else {
                EntityKind::User
            },
            name: name.to_owned(),
        }
    }

    fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }
}

/// One weak finding: it adds `weight` to each of its entities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub time: DateTime<Utc>,
    pub rule_id: String,
    pub title: String,
    pub weight: f64,
    pub entities: Vec<Entity>,
    /// `file:line` of the event (hunt) or its origin (serve).
    pub source: String,
    /// Store sequence number of the event (`mamori serve`).
    pub seq: Option<u64>,
    /// The finding's own explanation.
    pub why: String,
    /// ATT&CK tags of the finding.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Signal {
    /// The signal of an analytics finding: it weighs on the account or key, and on the
    /// address when that is public (an internal network is shared, never an entity).
    pub fn from_alert(a: &Alert, cfg: &RiskConfig, networks: &Networks) -> Signal {
        let mut entities = vec![Entity::actor(&a.actor)];
        if let Some(ip) = &a.address {
            if networks.name_of(ip).is_none() && ip.parse::<IpAddr>().is_ok() {
                entities.push(Entity {
                    kind: EntityKind::Address,
                    name: ip.clone(),
                });
            }
        }
        Signal {
            time: a.time,
            rule_id: a.rule_id.to_owned(),
            title: a.title.to_owned(),
            weight: cfg.weight(a.rule_id),
            entities,
            source: a.source.clone(),
            seq: a.seq,
            why: a
                .details
                .iter()
                .find(|(k, _)| k == "why")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            tags: a.tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }
}

/// An entity's risk crossed the threshold: every contributing signal, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskAlert {
    pub time: DateTime<Utc>,
    pub entity: Entity,
    pub score: f64,
    pub threshold: f64,
    pub level: Level,
    /// Oldest first; each with its source (`file:line` or seq).
    pub signals: Vec<Signal>,
    pub why: String,
    pub why_ja: String,
}

impl RiskAlert {
    pub fn title(&self) -> String {
        format!(
            "Risk Threshold Crossed For {} {}",
            self.entity.kind.as_str(),
            self.entity.name
        )
    }
}

/// Learned risk: recent signals per entity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RiskState {
    /// Time of the first event seen (start of the learning period).
    first: Option<DateTime<Utc>>,
    entities: BTreeMap<String, Vec<Signal>>,
}

/// Most signals kept per entity (oldest dropped first).
const MAX_SIGNALS_PER_ENTITY: usize = 64;
/// Default of [`RiskConfig::max_entities`]: about 25 MB at ~500 bytes per entity holding one
/// signal (estimated from the types, `docs/limits.md`).
pub const DEFAULT_MAX_ENTITIES: usize = 50_000;

/// Adds signals to entities and raises risk alerts.
#[derive(Debug, Default)]
pub struct RiskEngine {
    cfg: RiskConfig,
    state: RiskState,
    /// Entities dropped at the cap since start (their risk was lost).
    evicted: u64,
}

impl RiskEngine {
    pub fn new(cfg: RiskConfig, state: RiskState) -> RiskEngine {
        let mut engine = RiskEngine {
            cfg,
            state,
            evicted: 0,
        };
        // A state saved under a larger cap is cut down to this one.
        if engine.state.entities.len() > engine.cfg.max_entities.max(1) {
            engine.make_room(None);
        }
        engine
    }

    /// Entities holding signals now.
    pub fn entity_count(&self) -> usize {
        self.state.entities.len()
    }

    /// Entities dropped at the cap since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Makes room for one more entity: drops the entities whose signals all left the window,
    /// then, if that is not enough, the tenth signalled least recently. Batching the eviction
    /// keeps it O(1) amortised per new entity (one O(n) selection per n/10 new entities).
    fn make_room(&mut self, now: Option<DateTime<Utc>>) {
        let cap = self.cfg.max_entities.max(1);
        if let Some(now) = now {
            let window = Duration::hours(self.cfg.window_hours.max(1));
            self.state
                .entities
                .retain(|_, v| v.last().is_some_and(|s| s.time + window >= now));
        }
        // Down to 90 % of the cap whatever the sweep freed, so the next O(n) pass is at least
        // a tenth of the cap of new entities away.
        let keep = cap - cap.div_ceil(10);
        if self.state.entities.len() <= keep {
            return;
        }
        let mut last: Vec<(DateTime<Utc>, &String)> = self
            .state
            .entities
            .iter()
            .map(|(k, v)| (v.iter().map(|s| s.time).max().unwrap_or_default(), k))
            .collect();
        let drop = last.len() - keep;
        last.select_nth_unstable(drop - 1);
        let gone: Vec<String> = last[..drop].iter().map(|(_, k)| (*k).clone()).collect();
        for k in gone {
            self.state.entities.remove(&k);
            self.evicted += 1;
        }
    }

    pub fn config(&self) -> &RiskConfig {
        &self.cfg
    }

    pub fn state(&self) -> &RiskState {
        &self.state
    }

    pub fn save(&self) -> String {
        serde_json::to_string(&self.state).unwrap_or_default()
    }

    pub fn restore(text: &str) -> Result<RiskState> {
        serde_json::from_str(text).map_err(|e| Error::Load {
            path: "risk state".into(),
            message: e.to_string(),
        })
    }

    /// The current risk of an entity at `now` (each rule once: its latest occurrence).
    pub fn score(&self, entity: &Entity, now: DateTime<Utc>) -> f64 {
        self.state
            .entities
            .get(&entity.key())
            .map(|s| score_of(&self.cfg, s, now))
            .unwrap_or(0.0)
    }

    /// Notes the time of an event: the learning period starts at the first one.
    pub fn note_time(&mut self, t: DateTime<Utc>) {
        let f = self.state.first.get_or_insert(t);
        if t < *f {
            *f = t;
        }
    }

    /// Feeds one signal (roughly in time order); alerts go to `out`.
    pub fn add(&mut self, sig: Signal, out: &mut Vec<RiskAlert>) {
        if sig.weight <= 0.0 {
            return;
        }
        let now = sig.time;
        let first = *self.state.first.get_or_insert(now);
        let learning = now < first + Duration::days(self.cfg.learning_days.max(0));
        let window = Duration::hours(self.cfg.window_hours.max(1));
        // One piece of evidence makes one alert: when the account and its address cross on
        // the same signals, the address's alert would only repeat the account's.
        let mut alerted: Vec<(DateTime<Utc>, String, String)> = Vec::new();
        for ent in &sig.entities {
            let key = ent.key();
            if self.state.entities.len() >= self.cfg.max_entities.max(1)
                && !self.state.entities.contains_key(&key)
            {
                self.make_room(Some(now));
            }
            let list = self.state.entities.entry(key).or_default();
            // Each kind of finding counts once (its latest occurrence), so an entity keeps at
            // most one signal per rule: the list stays short and adding stays cheap.
            list.retain(|s| {
                s.rule_id != sig.rule_id && s.time + window >= now && s.time <= now + window
            });
            list.push(sig.clone());
            if list.len() > MAX_SIGNALS_PER_ENTITY {
                list.remove(0);
            }
            // Risk is judged at the entity's latest signal: one that arrives late (a live
            // stream from several sources, files uploaded in any order) is decayed by its
            // age then, not counted at full weight.
            let at = list.iter().map(|s| s.time).max().unwrap_or(now).max(now);
            let score = score_of(&self.cfg, list, at);
            if learning || score < self.cfg.threshold {
                continue;
            }
            let list = list.clone();
            // The evidence is consumed: the next alert on this entity needs new signals.
            self.state.entities.remove(&ent.key());
            let ids: Vec<_> = list
                .iter()
                .map(|s| (s.time, s.rule_id.clone(), s.source.clone()))
                .collect();
            if ids.iter().all(|i| alerted.contains(i)) {
                continue;
            }
            alerted.extend(ids);
            out.push(self.explain(ent.clone(), score, list, now));
        }
    }

    fn explain(
        &self,
        entity: Entity,
        score: f64,
        signals: Vec<Signal>,
        now: DateTime<Utc>,
    ) -> RiskAlert {
        let parts: Vec<String> = signals
            .iter()
            .map(|s| {
                format!(
                    "{} ({:.0}, {} at {})",
                    s.title,
                    s.weight,
                    s.time.format("%Y-%m-%d %H:%M UTC"),
                    s.source
                )
            })
            .collect();
        let parts_ja: Vec<String> = signals
            .iter()
            .map(|s| {
                format!(
                    "{}（{:.0}、{} {}）",
                    title_ja(&s.rule_id).unwrap_or(&s.title),
                    s.weight,
                    s.time.format("%Y-%m-%d %H:%M UTC"),
                    s.source
                )
            })
            .collect();
        let h = self.cfg.window_hours;
        let why = format!(
            "risk {score:.0} of {} {} reached the threshold {:.0} within {h} h (half-life {} h, each kind of finding counted once, a new country and a new address of one login once) from {} signals: {}",
            entity.kind.as_str(),
            entity.name,
            self.cfg.threshold,
            self.cfg.half_life_hours,
            signals.len(),
            parts.join("; ")
        );
        let why_ja = format!(
            "{} {} のリスク値 {score:.0} が {h} 時間以内にしきい値 {:.0} に達しました（半減期 {} 時間、同じ種類の兆候は1回、同じログインの初めての国とアドレスは合わせて1回として計算）。兆候 {} 件: {}",
            entity.kind.as_str_ja(),
            entity.name,
            self.cfg.threshold,
            self.cfg.half_life_hours,
            signals.len(),
            parts_ja.join("、")
        );
        RiskAlert {
            time: now,
            level: if score >= 2.0 * self.cfg.threshold {
                Level::Critical
            } else {
                Level::High
            },
            entity,
            score,
            threshold: self.cfg.threshold,
            signals,
            why,
            why_ja,
        }
    }
}

/// Risk of an entity's signals at `now`: decayed weights inside the window, each rule once.
/// A new country and a new address found on the *same* login (or for the same address) are
/// one fact (the country is where the address is), so together they count as the larger of
/// the two: a business trip — a new hotel address in a new country — is not two pieces of
/// evidence.
fn score_of(cfg: &RiskConfig, signals: &[Signal], now: DateTime<Utc>) -> f64 {
    let half = cfg.half_life_hours.max(0.01) * 3600.0;
    let window = Duration::hours(cfg.window_hours.max(1));
    // (rule, weight, that occurrence)
    let mut latest: Vec<(&str, f64, &Signal)> = Vec::new();
    for s in signals.iter().filter(|s| s.time + window >= now) {
        let age = (now - s.time).num_seconds().max(0) as f64;
        let v = s.weight * 0.5f64.powf(age / half);
        match latest.iter_mut().find(|(r, _, _)| *r == s.rule_id) {
            Some(x) => {
                if v >= x.1 {
                    *x = (x.0, v, s);
                }
            }
            None => latest.push((&s.rule_id, v, s)),
        }
    }
    let mut total: f64 = latest.iter().map(|(_, w, _)| w).sum();
    let find = |id: &str| latest.iter().find(|(r, _, _)| *r == id);
    if let (Some(a), Some(c)) = (find(ids::FIRST_ADDRESS), find(ids::NEW_COUNTRY)) {
        let same_event =
            |x: &Signal, y: &Signal| x.time == y.time && x.seq == y.seq && x.source == y.source;
        let address = |x: &Signal| {
            x.entities
                .iter()
                .find(|e| e.kind == EntityKind::Address)
                .map(|e| e.name.clone())
        };
        // The same login, or two logins from the same new address (the VPN and the phone's
        // mail client at the hotel): the country is where that address is.
        let same_address = address(a.2).is_some() && address(a.2) == address(c.2);
        if same_event(a.2, c.2) || same_address {
            total -= a.1.min(c.1);
        }
    }
    total
}

/// Japanese titles of the analytics findings.
pub fn title_ja(rule_id: &str) -> Option<&'static str> {
    Some(match rule_id {
        ids::DEPARTED => "退職者・契約終了者のアカウントによる活動",
        ids::KEY_AGE => "ポリシーより古いアクセスキー",
        ids::FIRST_ADDRESS => "アカウントにとって初めての接続元アドレス",
        ids::FIRST_HOST => "アカウントにとって初めてのログオン先ホスト",
        ids::VOLUME => "アカウント自身の過去と比べて著しく多い1日の転送量",
        ids::OFF_HOURS => "アカウントの普段の時間帯以外の活動",
        ids::NEW_COUNTRY => "アカウントにとって初めての国からのログイン",
        ids::IMPOSSIBLE_TRAVEL => "移動不可能な2つのログイン",
        RISK_RULE_ID => "リスク値がしきい値を超過",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
