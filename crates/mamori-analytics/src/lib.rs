//! Baseline analytics that Sigma cannot express: who is allowed to act at all (an identity
//! directory), what is new for an account (first-seen address or host), how much an account
//! moves compared with its own history (robust z-score over the median absolute deviation), and
//! when an account is usually active.
//!
//! # Key design decision: compact observations, explicit state, event time only
//!
//! The caller turns each [`Event`] into an [`Observation`] (who, from where, on which host, how
//! many bytes) with [`Observation::from_event`] — most events yield none — and feeds the
//! observations **in event-time order** to [`Analytics::observe`]. All learned state lives in
//! [`State`] (serialisable, so a baseline can be carried from one hunt to the next); nothing reads
//! a clock. Every alert explains itself in its details: what was expected from the history and
//! what was seen.
//!
//! An account is only judged once it has a history (a few distinct active days): the first days
//! of data are learning, not alerting. Observations that raise an alert are not learned from, so
//! an intruder who repeats the same thing every night does not become "normal".

mod admin;
mod directory;
mod geo;
pub mod risk;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use mamori_event::{Event, Format, Level};
use serde::{Deserialize, Serialize};

pub use admin::{admin_logon, AdminLogon, AdminSessions};
pub use directory::{Directory, Identity, Status};
pub use geo::{distance_km, GeoIp, Place};
pub use risk::{
    Entity, EntityKind, Network, NetworkRole, Networks, RiskAlert, RiskConfig, RiskEngine,
    RiskState, Signal,
};

/// Errors loading a directory or a saved state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Load { path: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Rule ids of the analytics (the `rule_id` column of the timeline).
pub mod ids {
    pub const DEPARTED: &str = "mamori-analytics-departed-identity";
    pub const KEY_AGE: &str = "mamori-analytics-key-age";
    pub const FIRST_ADDRESS: &str = "mamori-analytics-first-seen-address";
    pub const FIRST_HOST: &str = "mamori-analytics-first-seen-host";
    pub const VOLUME: &str = "mamori-analytics-volume";
    pub const OFF_HOURS: &str = "mamori-analytics-off-hours";
    pub const NEW_COUNTRY: &str = "mamori-analytics-new-country";
    pub const IMPOSSIBLE_TRAVEL: &str = "mamori-analytics-impossible-travel";
}

/// Tunables, with defaults that suit a small company.
#[derive(Debug, Clone)]
pub struct Config {
    /// Distinct active days before an account's first-seen and off-hours checks apply.
    pub min_history_days: usize,
    /// Access keys older than this are reported once.
    pub key_max_age_days: i64,
    /// Robust z-score above which a daily volume is anomalous.
    pub mad_k: f64,
    /// Daily volumes of history before the volume check applies.
    pub volume_min_days: usize,
    /// The day must also be at least this many times the median.
    pub volume_min_ratio: f64,
    /// Two logins further apart than this need a speed check.
    pub travel_min_km: f64,
    /// Faster than this between two logins is impossible travel (km/h; airliners do ~900).
    pub travel_max_kmh: f64,
    /// Observations of history before the off-hours check applies.
    pub off_hours_min_events: u32,
    /// Active days before an account's own hours are judged (a working week: three days have
    /// not shown where its working day ends, and an evening mail check is not the night).
    pub off_hours_min_days: usize,
    /// Internal networks: a first-seen address inside one is judged by its network (a DHCP
    /// lease changing inside `office-dhcp` is not new), RFC 1918 ranges always are.
    pub networks: Networks,
    /// Most accounts with a baseline. Account names come from logs (a forged login line names
    /// any account), so at the cap the accounts active least recently are forgotten: they
    /// learn again from scratch, and their first-seen, off-hours and volume checks are off
    /// until they have a history again.
    pub max_accounts: usize,
}

/// Default of [`Config::max_accounts`].
pub const DEFAULT_MAX_ACCOUNTS: usize = 20_000;

impl Default for Config {
    fn default() -> Config {
        Config {
            min_history_days: 3,
            key_max_age_days: 365,
            mad_k: 6.0,
            volume_min_days: 5,
            volume_min_ratio: 3.0,
            off_hours_min_events: 30,
            off_hours_min_days: 5,
            travel_min_km: 500.0,
            travel_max_kmh: 1000.0,
            networks: Networks::default(),
            max_accounts: DEFAULT_MAX_ACCOUNTS,
        }
    }
}

/// Who did something, from where, where, how much — extracted from one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub time: DateTime<Utc>,
    /// Account name or access key id.
    pub actor: String,
    /// A successful login (VPN, SSH, CloudTrail call): its source address is baselined.
    pub login: bool,
    pub address: Option<String>,
    /// The host logged on to (Windows 4624, SSH).
    pub host: Option<String>,
    /// Bytes moved (web response, S3 bytesTransferredOut).
    pub bytes: Option<u64>,
    /// `file:line` of the event.
    pub source: String,
    /// Store sequence number of the event (`mamori serve`).
    pub seq: Option<u64>,
}

const VPN_USER: &str = "log.syslog.structured_data.auth@32473.user";
const VPN_SRC: &str = "log.syslog.structured_data.auth@32473.src";
const VPN_RESULT: &str = "log.syslog.structured_data.auth@32473.result";
/// Successful logins of the `event.action` vocabulary (mamori-ingest) besides VPN and SSH.
const LOGIN_ACTIONS: &[&str] = &[
    "mail_login",
    "radius_login",
    "remote_gateway_login",
    "user_login",
    "admin_login",
    "web_login",
];

impl Observation {
    /// The observation an event carries, if any.
    pub fn from_event(ev: &Event) -> Option<Observation> {
        let time = ev.timestamp?;
        let s = |n: &str| {
            ev.get_str(n)
                .map(|v| v.into_owned())
                .filter(|v| !v.is_empty() && v != "-")
        };
        let mut o = Observation {
            time,
            actor: String::new(),
            login: false,
            address: None,
            host: None,
            bytes: None,
            // Filled in below, only for events that carry an observation (most do not).
            source: String::new(),
            seq: None,
        };
        match ev.format {
            Format::Syslog => {
                if let (Some(u), Some(true)) = (s(VPN_USER), s(VPN_RESULT).map(|r| r == "success"))
                {
                    o.actor = u;
                    o.login = true;
                    o.address = s(VPN_SRC);
                } else if s("event.action").as_deref() == Some("vpn_login")
                    && s("event.outcome").as_deref() == Some("success")
                {
                    // Any vendor's VPN login, normalised by the reader (mamori-ingest vendor).
                    o.actor = s("user.name")?;
                    o.login = true;
                    o.address = s("source.ip");
                } else if s("event.action").as_deref() == Some("ssh_login")
                    && s("event.outcome").as_deref() == Some("success")
                {
                    o.actor = s("user.name")?;
                    o.login = true;
                    o.address = s("source.ip");
                    o.host = s("host.name");
                } else if s("event.outcome").as_deref() == Some("success")
                    && s("event.action")
                        .as_deref()
                        .is_some_and(|a| LOGIN_ACTIONS.contains(&a))
                {
                    // Mail (IMAP/POP3/SMTP AUTH), RADIUS, RD Gateway and appliance logins: where
                    // a person usually comes from is learned from every way they log in, so a
                    // phone's mail client at home or a hotel is known when the VPN sees it.
                    // The mail server is not a host the account "logs on to" (no host).
                    o.actor = s("user.name")?;
                    o.login = true;
                    o.address = Some(s("source.ip")?);
                } else {
                    return None;
                }
            }
            Format::AccessLog | Format::Iis => {
                o.actor = s("user.name")?;
                o.bytes = ev
                    .get("http.response.body.bytes")
                    .and_then(|v| v.to_text().parse().ok());
                o.address = s("source.ip");
            }
            Format::CloudTrail => {
                o.actor = s("userIdentity.accessKeyId").or_else(|| s("user.name"))?;
                o.login = true;
                o.address = s("sourceIPAddress");
                o.bytes = s("additionalEventData.bytesTransferredOut").and_then(|b| b.parse().ok());
            }
            Format::Evtx | Format::Json => {
                if s("EventID").as_deref() != Some("4624") {
                    return None;
                }
                let u = s("TargetUserName")?;
                let lower = u.to_ascii_lowercase();
                if u.ends_with('$') || lower == "anonymous logon" || lower == "system" {
                    return None;
                }
                o.actor = u;
                o.host = s("Computer").map(|h| h.to_ascii_lowercase());
            }
            Format::Auditd => return None,
        }
        o.source = ev.origin.to_string();
        Some(o)
    }
}

/// One analytic finding.
#[derive(Debug, Clone)]
pub struct Alert {
    pub time: DateTime<Utc>,
    pub rule_id: &'static str,
    pub title: &'static str,
    pub level: Level,
    pub tags: &'static [&'static str],
    pub host: String,
    pub source: String,
    /// Store sequence number of the event (`mamori serve`).
    pub seq: Option<u64>,
    /// The account or key the finding is about.
    pub actor: String,
    /// The address involved, if any.
    pub address: Option<String>,
    pub details: Vec<(String, String)>,
}

/// Most addresses (or address networks) and most hosts one account's baseline learns: a
/// person's real set is a few dozen; the cap bounds what a flood of forged login lines naming
/// one account can make the server keep (issue #15).
pub const MAX_KNOWN_PER_ACCOUNT: usize = 256;

/// What an account has been seen doing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Account {
    days: BTreeSet<NaiveDate>,
    addresses: BTreeSet<String>,
    hosts: BTreeSet<String>,
    hours: [u32; 24],
    /// Daily volumes of normal days (most recent last, at most 90).
    volumes: Vec<u64>,
    #[serde(default)]
    countries: BTreeSet<String>,
    #[serde(default)]
    asns: BTreeSet<u32>,
    /// Last located login: time, latitude, longitude, place name.
    #[serde(default)]
    last_fix: Option<(DateTime<Utc>, f64, f64, String)>,
    /// The open day: kept in the state so a restarted server does not lose it.
    #[serde(default)]
    today: Option<(NaiveDate, u64, String, DateTime<Utc>)>,
    #[serde(default)]
    today_seq: Option<u64>,
    /// Addresses reported as first-seen, with the days they were used: one used on
    /// `min_history_days` different days is the account's habit and is learned.
    #[serde(default)]
    new_addresses: BTreeMap<String, BTreeSet<NaiveDate>>,
    /// Time of its latest observation: at the cap the accounts seen least recently go.
    #[serde(default)]
    last_seen: Option<DateTime<Utc>>,
}

/// Everything learned; save it to carry a baseline to the next hunt.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    accounts: HashMap<String, Account>,
    /// Logins of the whole organisation by hour (UTC): the hours of an account whose own
    /// history is still too short to say.
    #[serde(default)]
    org_hours: [u32; 24],
}

impl State {
    pub fn from_json(text: &str) -> Result<State> {
        serde_json::from_str(text).map_err(|e| Error::Load {
            path: "baseline state".into(),
            message: e.to_string(),
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct SavedRef<'a> {
    state: &'a State,
    said: &'a BTreeSet<(String, String, Option<NaiveDate>)>,
}

/// The analytics engine: config, directory, state, and what it already said today.
#[derive(Debug, Default)]
pub struct Analytics {
    cfg: Config,
    directory: Option<Directory>,
    state: State,
    geo: Option<GeoIp>,
    said: BTreeSet<(String, String, Option<NaiveDate>)>,
    /// Accounts forgotten at the cap since start.
    evicted: u64,
}

/// What a running engine must keep across a restart: the learned state and what it already
/// said (so a restarted server does not repeat today's alerts).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    state: State,
    said: Vec<(String, String, Option<NaiveDate>)>,
}

impl Analytics {
    pub fn new(cfg: Config, directory: Option<Directory>, state: State) -> Analytics {
        Analytics {
            cfg,
            directory,
            state,
            geo: None,
            said: BTreeSet::new(),
            evicted: 0,
        }
    }

    /// [`Config::max_accounts`].
    pub fn max_accounts(&self) -> usize {
        self.cfg.max_accounts.max(1)
    }

    /// Accounts with a baseline now.
    pub fn account_count(&self) -> usize {
        self.state.accounts.len()
    }

    /// Accounts forgotten at the cap since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Makes room for one more account: forgets the tenth active least recently (one O(n)
    /// selection per n/10 new accounts: O(1) amortised).
    fn make_room(&mut self) {
        let cap = self.cfg.max_accounts.max(1);
        let keep = cap - cap.div_ceil(10);
        if self.state.accounts.len() < cap {
            return;
        }
        // A state saved before `last_seen` existed: the start of its last active day.
        let day_start = |a: &Account| {
            a.days
                .last()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        };
        let mut last: Vec<(Option<DateTime<Utc>>, &String)> = self
            .state
            .accounts
            .iter()
            .map(|(k, a)| (a.last_seen.or_else(|| day_start(a)), k))
            .collect();
        let drop = last.len() - keep;
        last.select_nth_unstable(drop - 1);
        let gone: Vec<String> = last[..drop].iter().map(|(_, k)| (*k).clone()).collect();
        for k in gone {
            self.state.accounts.remove(&k);
            self.evicted += 1;
        }
    }

    /// Adds GeoIP: new-country, impossible-travel and ASN context for logins.
    pub fn set_geo(&mut self, geo: GeoIp) {
        self.geo = Some(geo);
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Replaces the identity directory (the server reloads it when its file changes).
    pub fn set_directory(&mut self, directory: Option<Directory>) {
        self.directory = directory;
    }

    /// Everything needed to continue after a restart (state and today's said alerts), as JSON.
    /// Day-keyed memory older than `keep_days` before `now` is dropped first.
    pub fn save(&mut self, now: DateTime<Utc>, keep_days: i64) -> String {
        let cutoff = now.date_naive() - chrono::Duration::days(keep_days);
        self.said.retain(|(_, _, d)| d.is_none_or(|d| d >= cutoff));
        let saved = SavedRef {
            state: &self.state,
            said: &self.said,
        };
        serde_json::to_string(&saved).unwrap_or_default()
    }

    /// Restores what [`Analytics::save`] wrote.
    pub fn restore(&mut self, text: &str) -> Result<()> {
        let saved: Saved = serde_json::from_str(text).map_err(|e| Error::Load {
            path: "analytics state".into(),
            message: e.to_string(),
        })?;
        self.state = saved.state;
        self.said = saved.said.into_iter().collect();
        // A state saved under a larger cap is cut down to this one.
        if self.state.accounts.len() > self.cfg.max_accounts.max(1) {
            self.make_room();
        }
        Ok(())
    }

    /// Feeds one observation (in event-time order); alerts go to `out`.
    pub fn observe(&mut self, o: &Observation, out: &mut Vec<Alert>) {
        let day = o.time.date_naive();
        self.check_directory(o, out);
        // Close the previous day's volume first: it is history now.
        let cfg = self.cfg.clone();
        if !self.state.accounts.contains_key(&o.actor) {
            self.make_room();
        }
        let acct = self.state.accounts.entry(o.actor.clone()).or_default();
        acct.last_seen = acct.last_seen.max(Some(o.time));
        if let Some(a) = close_day(&cfg, &o.actor, acct, Some(day)) {
            out.push(a);
        }
        let known = acct.days.len() >= cfg.min_history_days;
        // What was anomalous in each aspect: an aspect learns only from what was normal in it.
        let (mut addr_anom, mut host_anom, mut place_anom, mut hours_anom) =
            (false, false, false, false);
        let mut alerts = Vec::new();
        let addr_key = o.address.as_deref().map(|ip| cfg.networks.baseline_key(ip));
        if known && o.login {
            if let (Some(ip), Some(key)) = (&o.address, &addr_key) {
                if !acct.addresses.contains(key) {
                    addr_anom = true;
                    alerts.push(alert(
                        o,
                        ids::FIRST_ADDRESS,
                        "First-Seen Source Address For Account",
                        Level::Medium,
                        &["attack.initial-access", "attack.t1078"],
                        vec![
                            ("account".into(), o.actor.clone()),
                            ("address".into(), ip.clone()),
                            (
                                "network".into(),
                                cfg.networks
                                    .name_of(ip)
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| {
                                        self.geo
                                            .as_ref()
                                            .and_then(|g| g.locate(ip))
                                            .map(|p| {
                                                let new =
                                                    p.asn.is_some_and(|a| !acct.asns.contains(&a));
                                                format!(
                                                    "{}{}",
                                                    place_name(&p),
                                                    if new {
                                                        " (new network for this account)"
                                                    } else {
                                                        ""
                                                    }
                                                )
                                            })
                                            .unwrap_or_default()
                                    }),
                            ),
                            (
                                "why".into(),
                                format!(
                                    "first use of this address in {} active days; known: {}",
                                    acct.days.len(),
                                    list(&acct.addresses)
                                ),
                            ),
                        ],
                    ));
                }
            }
        }
        if known {
            if let Some(h) = &o.host {
                if !acct.hosts.contains(h) {
                    host_anom = true;
                    alerts.push(alert(
                        o,
                        ids::FIRST_HOST,
                        "First-Seen Host For Account",
                        Level::Medium,
                        &["attack.lateral-movement", "attack.t1021"],
                        vec![
                            ("account".into(), o.actor.clone()),
                            ("host".into(), h.clone()),
                            (
                                "why".into(),
                                format!(
                                    "first logon to this host in {} active days; known: {}",
                                    acct.days.len(),
                                    list(&acct.hosts)
                                ),
                            ),
                        ],
                    ));
                }
            }
        }
        let place = match (&self.geo, &o.address) {
            (Some(g), Some(ip)) if o.login => g.locate(ip),
            _ => None,
        };
        if let Some(pl) = &place {
            let name = place_name(pl);
            if let Some(c) = &pl.country {
                if known && !acct.countries.is_empty() && !acct.countries.contains(c) {
                    place_anom = true;
                    alerts.push(alert(
                        o,
                        ids::NEW_COUNTRY,
                        "Login From A Country Never Seen For Account",
                        Level::High,
                        &["attack.initial-access", "attack.t1078"],
                        vec![
                            ("account".into(), o.actor.clone()),
                            ("address".into(), o.address.clone().unwrap_or_default()),
                            ("country".into(), c.clone()),
                            (
                                "why".into(),
                                format!(
                                    "{name}: first login from {c} in {} active days; known countries: {}",
                                    acct.days.len(),
                                    list(&acct.countries)
                                ),
                            ),
                        ],
                    ));
                    // A country is new once: reported, it is known (a business trip is one
                    // finding, not one a day; each new address there is still judged).
                    acct.countries.insert(c.clone());
                }
            }
            if let (Some((la, lo)), Some((t0, la0, lo0, from))) = (pl.coords, &acct.last_fix) {
                let km = distance_km((*la0, *lo0), (la, lo));
                // Logins may arrive out of order (a live stream from several sources, files
                // uploaded in any order): the time between them is what it is either way.
                let hours = (o.time - *t0).num_seconds().abs().max(1) as f64 / 3600.0;
                if km >= cfg.travel_min_km && km / hours > cfg.travel_max_kmh {
                    place_anom = true;
                    alerts.push(alert(
                        o,
                        ids::IMPOSSIBLE_TRAVEL,
                        "Impossible Travel Between Two Logins",
                        Level::High,
                        &["attack.initial-access", "attack.t1078"],
                        vec![
                            ("account".into(), o.actor.clone()),
                            ("address".into(), o.address.clone().unwrap_or_default()),
                            (
                                "why".into(),
                                format!(
                                    "{from} at {} then {name} at {}: {km:.0} km in {hours:.1} h = {:.0} km/h (limit {:.0})",
                                    t0.format("%Y-%m-%d %H:%M UTC"),
                                    o.time.format("%Y-%m-%d %H:%M UTC"),
                                    km / hours,
                                    cfg.travel_max_kmh
                                ),
                            ),
                        ],
                    ));
                }
            }
        }
        let total: u32 = acct.hours.iter().sum();
        let org_total: u32 = self.state.org_hours.iter().sum();
        let h = o.time.hour() as usize;
        // The account's own hours once it has enough history (a working week, 30 events);
        // with too few events (e.g. only the VPN log received so far) a login is judged
        // against the hours at which anyone in the organisation logs in (30 logins or more).
        let judged = if known
            && acct.days.len() >= cfg.off_hours_min_days
            && total >= cfg.off_hours_min_events
        {
            quiet_at(&acct.hours, h).map(|(first, last)| {
                format!(
                    "all {total} earlier events fall between {first:02}:00 and {last:02}:59 UTC over {} days; this one is at {h:02}:{:02} UTC",
                    acct.days.len(),
                    o.time.minute()
                )
            })
        } else if known
            && o.login
            && acct.days.len() >= cfg.off_hours_min_days
            && total < cfg.off_hours_min_events
            && org_total >= cfg.off_hours_min_events
        {
            quiet_at(&self.state.org_hours, h).map(|(first, last)| {
                format!(
                    "the account's history is short ({total} events), and all {org_total} earlier logins of the organisation fall between {first:02}:00 and {last:02}:59 UTC; this one is at {h:02}:{:02} UTC",
                    o.time.minute()
                )
            })
        } else {
            None
        };
        if let Some(why) = judged {
            hours_anom = true;
            alerts.push(alert(
                o,
                ids::OFF_HOURS,
                "Activity Outside The Account's Usual Hours",
                Level::Medium,
                &["attack.initial-access", "attack.t1078"],
                vec![
                    ("account".into(), o.actor.clone()),
                    ("hour_utc".into(), format!("{h:02}")),
                    ("why".into(), why),
                ],
            ));
        }
        // A new address or host that keeps being used (a new home router, the office's address
        // or PC first seen after the account became known, a stream whose sources arrive out
        // of order) is the account's habit once used on `min_history_days` different days;
        // each day until then is a signal.
        let mut habit = |what: String| -> bool {
            let days = acct.new_addresses.entry(what.clone()).or_default();
            days.insert(day);
            if days.len() >= cfg.min_history_days {
                acct.new_addresses.remove(&what);
                return true;
            }
            if acct.new_addresses.len() > 64 {
                let oldest = acct
                    .new_addresses
                    .iter()
                    .min_by_key(|(_, d)| d.last().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    acct.new_addresses.remove(&k);
                }
            }
            false
        };
        let learn_addr = match (&addr_key, o.login) {
            (Some(k), true) if addr_anom => habit(format!("address:{k}")),
            (Some(_), true) => !place_anom,
            _ => false,
        };
        let learn_host = match &o.host {
            Some(h) if host_anom => habit(format!("host:{h}")),
            Some(_) => true,
            None => false,
        };
        // Learn each aspect from what was normal in it (an intruder's new address at night
        // teaches neither the address nor the hour; a new PC still counts as a working day).
        if !(addr_anom || place_anom) {
            acct.days.insert(day);
        }
        // Bounded: while an account is still learning, every address and host of a forged
        // flood naming it would be learned; past the cap nothing more is (later ones stay news).
        if learn_addr && acct.addresses.len() < MAX_KNOWN_PER_ACCOUNT {
            if let Some(key) = addr_key {
                acct.addresses.insert(key);
            }
        }
        if learn_host && acct.hosts.len() < MAX_KNOWN_PER_ACCOUNT {
            if let Some(h) = &o.host {
                acct.hosts.insert(h.clone());
            }
        }
        if !(place_anom || addr_anom) {
            if let Some(pl) = &place {
                if let Some(c) = &pl.country {
                    acct.countries.insert(c.clone());
                }
                if let Some(a) = pl.asn {
                    acct.asns.insert(a);
                }
                if let Some((la, lo)) = pl.coords {
                    // The latest login's place (an older one arriving late does not replace it).
                    if acct.last_fix.as_ref().is_none_or(|f| f.0 <= o.time) {
                        acct.last_fix = Some((o.time, la, lo, place_name(pl)));
                    }
                }
            }
        }
        if !(hours_anom || addr_anom || place_anom) {
            acct.hours[o.time.hour() as usize] += 1;
            if o.login {
                self.state.org_hours[o.time.hour() as usize] += 1;
            }
        }
        if let Some(b) = o.bytes {
            let t = acct.today.get_or_insert((day, 0, String::new(), o.time));
            t.1 += b;
            t.2 = o.source.clone();
            t.3 = o.time;
            acct.today_seq = o.seq;
        }
        for a in alerts {
            self.say(a, out);
        }
    }

    /// Closes every open day (call once after the last observation).
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        let cfg = self.cfg.clone();
        let mut names: Vec<&String> = self.state.accounts.keys().collect();
        names.sort();
        let names: Vec<String> = names.into_iter().cloned().collect();
        for n in names {
            if let Some(acct) = self.state.accounts.get_mut(&n) {
                if let Some(a) = close_day(&cfg, &n, acct, None) {
                    out.push(a);
                }
            }
        }
    }

    /// Closes every open day before `now`'s day (a live stream has no end: a day is history
    /// once the stream has moved past it, even for an account that has been quiet since).
    pub fn close_days_before(&mut self, now: DateTime<Utc>, out: &mut Vec<Alert>) {
        let cfg = self.cfg.clone();
        let day = now.date_naive();
        let mut names: Vec<String> = self
            .state
            .accounts
            .iter()
            .filter(|(_, a)| a.today.as_ref().is_some_and(|t| t.0 < day))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        for n in names {
            if let Some(acct) = self.state.accounts.get_mut(&n) {
                if let Some(a) = close_day(&cfg, &n, acct, Some(day)) {
                    out.push(a);
                }
            }
        }
    }

    /// At most one alert per rule, account and day — and, for the first-seen findings, per
    /// address or host: a second new address the same day is new evidence, not a repeat (an
    /// intruder's login must not hide behind the account's own new address of the morning).
    fn say(&mut self, a: Alert, out: &mut Vec<Alert>) {
        let mut who = a
            .details
            .first()
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let place = match a.rule_id {
            ids::FIRST_ADDRESS | ids::IMPOSSIBLE_TRAVEL => Some("address"),
            ids::FIRST_HOST => Some("host"),
            ids::NEW_COUNTRY => Some("country"),
            _ => None,
        };
        if let Some((_, v)) = place.and_then(|p| a.details.iter().find(|(k, _)| k == p)) {
            who.push('|');
            who.push_str(v);
        }
        if self
            .said
            .insert((a.rule_id.to_owned(), who, Some(a.time.date_naive())))
        {
            out.push(a);
        }
    }

    fn check_directory(&mut self, o: &Observation, out: &mut Vec<Alert>) {
        let Some(dir) = &self.directory else { return };
        let Some(id) = dir.get(&o.actor) else { return };
        let mut found = Vec::new();
        if id.status != Status::Active {
            let after_end = id.end_date.is_none_or(|d| o.time.date_naive() > d);
            if after_end {
                found.push(alert(
                    o,
                    ids::DEPARTED,
                    "Activity By A Departed Identity",
                    Level::Critical,
                    &[
                        "attack.initial-access",
                        "attack.persistence",
                        "attack.t1078",
                    ],
                    vec![
                        ("account".into(), o.actor.clone()),
                        ("person".into(), id.person.clone()),
                        (
                            "why".into(),
                            format!(
                                "identity directory: status {}{}",
                                id.status.as_str(),
                                id.end_date
                                    .map(|d| format!(" since {d}"))
                                    .unwrap_or_default()
                            ),
                        ),
                    ],
                ));
            }
        }
        if let Some(created) = id.created {
            let age = (o.time.date_naive() - created).num_days();
            if id.kind == "key" && age > self.cfg.key_max_age_days {
                let mut a = alert(
                    o,
                    ids::KEY_AGE,
                    "Access Key Older Than Policy",
                    Level::Medium,
                    &["attack.persistence", "attack.t1098.001"],
                    vec![
                        ("account".into(), o.actor.clone()),
                        ("person".into(), id.person.clone()),
                        (
                            "why".into(),
                            format!(
                                "key created {created}, {age} days old; policy is {} days",
                                self.cfg.key_max_age_days
                            ),
                        ),
                    ],
                );
                // Once per key, not per day.
                if self
                    .said
                    .insert((ids::KEY_AGE.to_owned(), o.actor.clone(), None))
                {
                    a.time = o.time;
                    found.push(a);
                }
            }
        }
        for a in found {
            if a.rule_id == ids::KEY_AGE {
                out.push(a);
            } else {
                self.say(a, out);
            }
        }
    }
}

fn alert(
    o: &Observation,
    rule_id: &'static str,
    title: &'static str,
    level: Level,
    tags: &'static [&'static str],
    details: Vec<(String, String)>,
) -> Alert {
    Alert {
        time: o.time,
        rule_id,
        title,
        level,
        tags,
        host: o.host.clone().unwrap_or_default(),
        source: o.source.clone(),
        seq: o.seq,
        actor: o.actor.clone(),
        address: o.address.clone(),
        details,
    }
}

fn place_name(p: &Place) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &p.city {
        parts.push(c.clone());
    }
    if let Some(c) = &p.country {
        parts.push(c.clone());
    }
    if let Some(a) = p.asn {
        parts.push(
            format!("AS{a} {}", p.as_org.as_deref().unwrap_or(""))
                .trim_end()
                .to_owned(),
        );
    }
    parts.join(", ")
}

fn list(s: &BTreeSet<String>) -> String {
    let v: Vec<&str> = s.iter().take(5).map(String::as_str).collect();
    let more = s.len().saturating_sub(5);
    if more > 0 {
        format!("{} (+{more})", v.join(", "))
    } else {
        v.join(", ")
    }
}

/// Is hour `h` inside the longest quiet stretch of `hours`, four hours or more after its start
/// and three before its end? The evening after the last activity seen (a phone checking mail
/// at home) is the shoulder of the working day, not the night; a live stream whose sources
/// arrive out of order may also have seen a little of the day's end late. The active hours
/// `(first, last)`.
fn quiet_at(hours: &[u32; 24], h: usize) -> Option<(usize, usize)> {
    let (start, len) = quiet_hours(hours)?;
    let pos = (h + 24 - start) % 24;
    (len >= 8 && pos >= 4 && pos + 3 < len).then(|| ((start + len) % 24, (start + 23) % 24))
}

/// The longest circular run of hours without any activity: `(first hour, length)`.
fn quiet_hours(hours: &[u32; 24]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for start in 0..24 {
        if hours[start] != 0 || hours[(start + 23) % 24] == 0 {
            continue; // not the beginning of a quiet run
        }
        let len = (0..24).take_while(|i| hours[(start + i) % 24] == 0).count();
        if best.is_none_or(|(_, l)| len > l) {
            best = Some((start, len));
        }
    }
    best
}

/// Median and median absolute deviation.
pub fn median_mad(values: &[u64]) -> (f64, f64) {
    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        if n == 0 {
            0.0
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    let m = median(&mut v);
    let mut d: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    (m, median(&mut d))
}

/// Closes the account's open day if `now` is a later day (or `None`: always).
fn close_day(
    cfg: &Config,
    actor: &str,
    acct: &mut Account,
    now: Option<NaiveDate>,
) -> Option<Alert> {
    let (day, total, source, time) = acct.today.clone()?;
    let seq = acct.today_seq;
    if now.is_some_and(|n| n <= day) {
        return None;
    }
    acct.today = None;
    let hist = &acct.volumes;
    if hist.len() >= cfg.volume_min_days {
        let (med, mad) = median_mad(hist);
        // 1.4826 × MAD estimates the standard deviation; a floor of 5 % of the median keeps a
        // perfectly regular history from flagging tiny changes.
        let scale = (1.4826 * mad).max(0.05 * med).max(1.0);
        let z = (total as f64 - med) / scale;
        if z > cfg.mad_k && total as f64 >= cfg.volume_min_ratio * med {
            return Some(Alert {
                time,
                rule_id: ids::VOLUME,
                title: "Daily Volume Far Above The Account's Own History",
                level: Level::High,
                tags: &["attack.exfiltration", "attack.collection", "attack.t1530"],
                host: String::new(),
                source,
                seq,
                actor: actor.to_owned(),
                address: None,
                details: vec![
                    ("account".into(), actor.to_owned()),
                    ("day".into(), day.to_string()),
                    ("bytes".into(), total.to_string()),
                    (
                        "why".into(),
                        format!(
                            "{total} bytes on {day}; own median {med:.0} bytes/day, MAD {mad:.0}, over {} days: robust z = {z:.1} (threshold {})",
                            hist.len(),
                            cfg.mad_k
                        ),
                    ),
                ],
            });
        }
    }
    acct.volumes.push(total);
    if acct.volumes.len() > 90 {
        acct.volumes.remove(0);
    }
    None
}
