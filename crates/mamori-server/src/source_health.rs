//! Source health and activity aggregates: "the logs were not there" is an alert.
//!
//! # Counting
//!
//! The pipeline's writer counts every stored batch in memory ([`Tally::count`]): events per
//! source and hour, and per external address and day with authentication outcomes. A
//! background task adds the counts to `state.db` in one transaction every
//! `[sources] flush_interval_secs` ([`SourceHealth::flush`]) and once more at shutdown — never a
//! query per event. The highest seq counted is written in the same transaction.
//!
//! **After a crash (SIGKILL, power loss) the counts of at most the last flush interval are
//! missing; nothing is ever counted twice** (the counts and the seq they reach commit
//! together, and events are counted only after their append succeeded).
//!
//! Hours and days are those of the event's own time (`@timestamp`), clamped to its receipt time
//! when it claims to be from the future, so a month replayed from files lands in that month;
//! last-seen times are receipt times (what a silent forwarder changes).
//!
//! **Memory is bounded**: at most `max_sources` distinct sources are tracked (the rest count
//! as `(other)`: a syslog host name is attacker-controlled) and at most
//! `max_addresses_per_day` distinct addresses per day (the rest count under
//! [`mamori_store::OTHER_ADDRESS`], `0.0.0.0`).
//!
//! # Judging
//!
//! Every `check_interval_secs` the monitor reads the last two days of hourly counts and judges
//! each source ([`judge`]) — simple, explainable arithmetic, no learning beyond a median:
//!
//! - `silent`: nothing received for longer than the largest of `min_silence_secs`,
//!   `silent_gap_factor` × its usual gap (mean interval between its events over the last
//!   `history_hours`) and the longest quiet stretch it had in that history (a source quiet
//!   every night is not silent at night);
//! - `collapsed`: the events of the last hour (this hour plus the prorated previous one) are
//!   below `collapse_ratio` × the median of its complete hours in the history, when that
//!   median is at least `collapse_min_events` — and, when the source already sent a day ago,
//!   also below `collapse_ratio` × the same hour yesterday (a quiet night is not a collapse);
//! - `new`: first heard from less than `new_hours` ago; otherwise `ok`.
//!
//! A `silent` or `collapsed` source raises **one alert per episode** (deduplicated by the
//! episode's start, remembered across restarts in the state database); recovery closes the
//! episode, and the next one is a new alert.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use mamori_analytics::Networks;
use mamori_event::{Event, Level, Origin, RuleId};
use mamori_store::{
    AddressDay, Alert, AlertStore, NewAlert, SourceHour, SourceSeen, SqliteAlertStore,
    MAX_SOURCE_LEN, OTHER_ADDRESS,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::metrics::{Metrics, SourceKind};
use crate::pressure::{self, CapGauges, Capped};

/// The source name under which sources beyond `max_sources` are counted.
pub const OTHER_SOURCE: &str = "(other)";
/// Hourly counts the API shows per source.
pub const HOURLY: usize = 48;
/// Key of the open episodes in the state database's key/value table.
const EPISODES_KEY: &str = "sources/episodes";

/// `[sources]`: activity aggregates and source health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Count activity and watch source health (on by default).
    pub enabled: bool,
    /// Counts are added to `state.db` this often (and at shutdown); a crash loses at most this.
    pub flush_interval_secs: u64,
    /// Sources are judged (and alerted on) this often.
    pub check_interval_secs: u64,
    /// A source is never silent before this much quiet.
    pub min_silence_secs: u64,
    /// …nor before this many times its usual gap between events.
    pub silent_gap_factor: f64,
    /// Collapsed: last hour's events below this share of its median hour…
    pub collapse_ratio: f64,
    /// …when that median hour has at least this many events.
    pub collapse_min_events: u64,
    /// Hours of history the usual gap and volume are learnt from.
    pub history_hours: u32,
    /// A source is `new` this long after it was first heard from.
    pub new_hours: u32,
    /// Source names (case-insensitive) that are counted and listed but never alerted on.
    pub ignore: Vec<String>,
    /// Source names that must send: listed (and silent after `min_silence_secs` from start)
    /// even if never heard from.
    pub expected: Vec<String>,
    /// Kinds whose silence means something (`upload` is one-off by nature).
    pub watch_kinds: Vec<String>,
    /// Most distinct sources tracked; the rest count as `(other)`.
    pub max_sources: usize,
    /// Most distinct external addresses per day; the rest count as `0.0.0.0`.
    pub max_addresses_per_day: usize,
    /// Aggregates older than this are deleted.
    pub keep_days: u32,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        SourcesConfig {
            enabled: true,
            flush_interval_secs: 5,
            check_interval_secs: 60,
            min_silence_secs: 3600,
            silent_gap_factor: 10.0,
            collapse_ratio: 0.1,
            collapse_min_events: 100,
            history_hours: 24,
            new_hours: 24,
            ignore: Vec::new(),
            expected: Vec::new(),
            watch_kinds: vec!["syslog".into(), "http".into(), "tail".into()],
            max_sources: 2000,
            max_addresses_per_day: 20_000,
            keep_days: 400,
        }
    }
}

impl SourcesConfig {
    /// Checks the values (called by the configuration's validation).
    pub fn validate(&self) -> Result<(), String> {
        let bad = |k: &str, why: &str| Err(format!("[sources] {k}: {why}"));
        if self.flush_interval_secs == 0 {
            return bad("flush_interval_secs", "must be at least 1");
        }
        if self.check_interval_secs == 0 {
            return bad("check_interval_secs", "must be at least 1");
        }
        if !(self.silent_gap_factor.is_finite() && self.silent_gap_factor > 0.0) {
            return bad("silent_gap_factor", "must be a positive number");
        }
        if !(self.collapse_ratio.is_finite() && (0.0..1.0).contains(&self.collapse_ratio)) {
            return bad("collapse_ratio", "must be between 0 and 1");
        }
        if self.history_hours == 0 || self.history_hours > 24 * 14 {
            return bad("history_hours", "must be between 1 and 336");
        }
        for k in &self.watch_kinds {
            if !KINDS.contains(&k.as_str()) {
                return bad(
                    "watch_kinds",
                    &format!("unknown kind {k:?} (syslog, http, upload, tail)"),
                );
            }
        }
        if self.max_sources == 0 || self.max_addresses_per_day == 0 {
            return bad("max_sources / max_addresses_per_day", "must be at least 1");
        }
        Ok(())
    }
}

const KINDS: [&str; 4] = ["syslog", "http", "upload", "tail"];

/// The `kind` of a pipeline source.
pub fn kind_of(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Udp | SourceKind::Tcp | SourceKind::Tls => "syslog",
        SourceKind::Http => "http",
        SourceKind::Upload => "upload",
        SourceKind::Tail => "tail",
    }
}

fn kind_index(k: &str) -> usize {
    KINDS.iter().position(|x| *x == k).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Counting
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct KindCounts {
    /// (hour start in seconds, events); a batch touches one or two hours, so a short list.
    hours: Vec<(i64, u64)>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct AddrCounts {
    events: u64,
    failures: u64,
    successes: u64,
    first: Option<DateTime<Utc>>,
}

/// Counts not yet in the database.
#[derive(Debug, Default)]
struct Window {
    sources: HashMap<String, [Option<KindCounts>; 4]>,
    addrs: HashMap<(IpAddr, NaiveDate), AddrCounts>,
    through_seq: Option<u64>,
}

impl Window {
    fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.addrs.is_empty() && self.through_seq.is_none()
    }

    fn add_source(&mut self, name: &str, kind: usize, hour: i64, n: u64, at: DateTime<Utc>) {
        let slots = match self.sources.get_mut(name) {
            Some(s) => s,
            None => self.sources.entry(name.to_owned()).or_default(),
        };
        let c = slots[kind].get_or_insert_with(KindCounts::default);
        match c.hours.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, e)) => *e += n,
            None => c.hours.push((hour, n)),
        }
        c.first = Some(c.first.map_or(at, |f| f.min(at)));
        c.last = Some(c.last.map_or(at, |l| l.max(at)));
    }

    fn add_addr(&mut self, ip: IpAddr, day: NaiveDate, a: AddrCounts) {
        let c = self.addrs.entry((ip, day)).or_default();
        c.events += a.events;
        c.failures += a.failures;
        c.successes += a.successes;
        c.first = match (c.first, a.first) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
    }

    /// Folds counts that could not be written back in (they are retried with the next flush).
    fn merge(&mut self, other: Window) {
        for (name, slots) in other.sources {
            for (k, c) in slots.into_iter().enumerate() {
                let Some(c) = c else { continue };
                for (h, n) in c.hours {
                    self.add_source(&name, k, h, n, c.first.unwrap_or_else(Utc::now));
                }
                if let (Some(l), Some(mine)) = (c.last, self.sources.get_mut(&name)) {
                    if let Some(m) = mine[k].as_mut() {
                        m.last = Some(m.last.map_or(l, |x| x.max(l)));
                    }
                }
            }
        }
        for ((ip, day), a) in other.addrs {
            self.add_addr(ip, day, a);
        }
        self.through_seq = self.through_seq.max(other.through_seq);
    }
}

/// What the tally remembers between flushes so memory stays bounded.
#[derive(Debug, Default)]
struct Known {
    /// Sources (name, kind index) already counted at least once.
    sources: HashSet<(String, usize)>,
    /// Distinct addresses counted per day (the most recent few days).
    days: BTreeMap<NaiveDate, HashSet<IpAddr>>,
}

/// Days of address sets kept in memory for the per-day cap.
const KNOWN_DAYS: usize = 3;

/// The pipeline's in-memory counter; one per server, shared by the writer and the monitor.
#[derive(Debug)]
pub struct Tally {
    window: Mutex<Window>,
    known: Mutex<Known>,
    networks: Networks,
    max_sources: usize,
    max_addresses_per_day: usize,
    /// Events counted under `(other)` / `0.0.0.0` at the caps (`crate::pressure`).
    sources_over: AtomicU64,
    addresses_over: AtomicU64,
}

impl Tally {
    pub fn new(networks: Networks, max_sources: usize, max_addresses_per_day: usize) -> Tally {
        Tally {
            window: Mutex::new(Window::default()),
            known: Mutex::new(Known::default()),
            networks,
            max_sources: max_sources.max(1),
            max_addresses_per_day: max_addresses_per_day.max(1),
            sources_over: AtomicU64::new(0),
            addresses_over: AtomicU64::new(0),
        }
    }

    /// Remembers what the database already holds (the sources, and the addresses of the last
    /// days), so the caps hold across restarts.
    pub fn preload(&self, db: &SqliteAlertStore, now: DateTime<Utc>) -> mamori_store::Result<()> {
        let mut k = lock(&self.known);
        for s in db.sources_seen()? {
            k.sources.insert((s.source, kind_index(&s.kind)));
        }
        let today = now.date_naive();
        let from = today - TimeDelta::days(KNOWN_DAYS as i64 - 1);
        for a in db.address_days(from, today)? {
            k.days.entry(a.day).or_default().insert(a.ip);
        }
        Ok(())
    }

    /// Counts a stored batch (called by the writer after the append succeeded). `last_seq` is
    /// the seq of the batch's last event.
    pub fn count(
        &self,
        events: &[Event],
        kind: SourceKind,
        received_at: DateTime<Utc>,
        last_seq: u64,
    ) {
        if events.is_empty() {
            return;
        }
        let k = kind_index(kind_of(kind));
        let mut known = lock(&self.known);
        let mut w = lock(&self.window);
        let mut lower = String::new();
        for ev in events {
            let at = ev.timestamp.map_or(received_at, |t| t.min(received_at));
            let hour = at.timestamp().div_euclid(3600) * 3600;
            // The source's name, lower-cased, bounded, without allocating in the common case.
            let host = ev.host();
            let name: &str = match host.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
                Some(h) => h,
                None => {
                    lower.clear();
                    origin_name(&ev.origin, &mut lower);
                    &lower
                }
            };
            let owned;
            let name: &str =
                if name.bytes().any(|b| b.is_ascii_uppercase()) || name.len() > MAX_SOURCE_LEN {
                    let mut s = name.to_ascii_lowercase();
                    truncate(&mut s, MAX_SOURCE_LEN);
                    owned = s;
                    &owned
                } else {
                    name
                };
            let name: &str = if w.sources.get(name).is_some_and(|s| s[k].is_some())
                || known.sources.contains(&(name.to_owned(), k))
            {
                name
            } else if known.sources.len() < self.max_sources {
                known.sources.insert((name.to_owned(), k));
                name
            } else {
                self.sources_over.fetch_add(1, Relaxed);
                OTHER_SOURCE
            };
            w.add_source(name, k, hour, 1, received_at);
            if let Some(ip) = self.external(ev) {
                let day = at.date_naive();
                let set = known.days.entry(day).or_default();
                let ip = if set.contains(&ip) {
                    ip
                } else if set.len() < self.max_addresses_per_day {
                    set.insert(ip);
                    ip
                } else {
                    self.addresses_over.fetch_add(1, Relaxed);
                    OTHER_ADDRESS
                };
                while known.days.len() > KNOWN_DAYS {
                    known.days.pop_first();
                }
                let (failures, successes) = auth_outcome(ev);
                w.add_addr(
                    ip,
                    day,
                    AddrCounts {
                        events: 1,
                        failures,
                        successes,
                        first: Some(at),
                    },
                );
            }
        }
        w.through_seq = w.through_seq.max(Some(last_seq));
    }

    /// The event's `source.ip` when it is an external address.
    fn external(&self, ev: &Event) -> Option<IpAddr> {
        let text = ev.get_str("source.ip")?;
        let ip: IpAddr = text.trim().parse().ok()?;
        if !is_external(ip) || self.networks.name_of(&text).is_some() {
            return None;
        }
        Some(ip)
    }

    fn take(&self) -> Window {
        std::mem::take(&mut *lock(&self.window))
    }

    fn put_back(&self, w: Window) {
        lock(&self.window).merge(w);
    }

    /// Sets the gauges of the capped sets (today's addresses, sources) and raises the alert of
    /// a pressure episode that opens.
    fn pressure(
        &self,
        now: DateTime<Utc>,
        episodes: &mut [pressure::Episode; 2],
        gauges: &CapGauges,
    ) -> Vec<NewAlert> {
        let sources = lock(&self.known).sources.len();
        let (a_over, s_over) = (
            self.addresses_over.load(Relaxed),
            self.sources_over.load(Relaxed),
        );
        gauges.set(
            Capped::SourceAddresses,
            self.addresses_today(now),
            self.max_addresses_per_day,
            a_over,
        );
        gauges.set(Capped::Sources, sources, self.max_sources, s_over);
        let [a, s] = episodes;
        let mut out = Vec::new();
        out.extend(a.update(
            Capped::SourceAddresses,
            a_over,
            self.max_addresses_per_day,
            now,
            gauges,
        ));
        out.extend(s.update(Capped::Sources, s_over, self.max_sources, now, gauges));
        out
    }

    /// Distinct addresses counted today (metrics, tests).
    pub fn addresses_today(&self, now: DateTime<Utc>) -> usize {
        lock(&self.known)
            .days
            .get(&now.date_naive())
            .map_or(0, HashSet::len)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut i = max;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
    }
}

/// The sender address, else the file name.
fn origin_name(o: &Origin, out: &mut String) {
    use std::fmt::Write as _;
    match o {
        Origin::Network { peer, .. } => {
            let _ = write!(out, "{}", peer.ip());
        }
        Origin::File { path, .. } => {
            let n = path
                .file_name()
                .map_or_else(|| path.to_string_lossy(), |f| f.to_string_lossy());
            out.push_str(&n);
        }
    }
}

/// Not private, loopback, link-local, unspecified, multicast or documentation-free internal.
pub fn is_external(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64))
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_external(IpAddr::V4(v4));
            }
            let s = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s & 0xfe00) == 0xfc00 // unique local
                || (s & 0xffc0) == 0xfe80) // link-local
        }
    }
}

/// (failures, successes) of an authentication event (the readers' normalisation contract:
/// `event.category: authentication`, `event.outcome: failure|success`).
fn auth_outcome(ev: &Event) -> (u64, u64) {
    let is_auth = ev
        .get_str("event.category")
        .is_some_and(|c| c.contains("authentication"));
    if !is_auth {
        return (0, 0);
    }
    match ev.get_str("event.outcome").as_deref() {
        Some("failure") => (1, 0),
        Some("success") => (0, 1),
        _ => (0, 0),
    }
}

// ---------------------------------------------------------------------------------------------
// Judging
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    New,
    Ok,
    Silent,
    Collapsed,
}

impl State {
    pub const ALL: [State; 4] = [State::Ok, State::New, State::Silent, State::Collapsed];

    pub fn as_str(self) -> &'static str {
        match self {
            State::New => "new",
            State::Ok => "ok",
            State::Silent => "silent",
            State::Collapsed => "collapsed",
        }
    }

    fn is_episode(self) -> bool {
        matches!(self, State::Silent | State::Collapsed)
    }
}

/// What is known of one source for judging.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Events per hour, keyed by the hour's start (seconds).
    pub hours: BTreeMap<i64, u64>,
}

/// The verdict on one source, with the numbers behind it (for the alert's description).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub state: State,
    pub events_last_hour: u64,
    /// The last [`HOURLY`] hours, oldest first, the current (partial) hour last.
    pub hourly: Vec<u64>,
    /// Usual gap between events (seconds), when known.
    pub usual_gap_secs: Option<f64>,
    /// Quiet longer than this is silence (seconds).
    pub silent_after_secs: f64,
    /// Median events of its complete hours in the history, when known.
    pub usual_hourly: Option<f64>,
}

fn median(v: &mut [u64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    })
}

/// Judges one source at `now`. `watched` is false for ignored sources and one-off kinds;
/// `started` is when the server started (an expected source never heard from is silent once
/// `min_silence_secs` passed since).
pub fn judge(
    cfg: &SourcesConfig,
    now: DateTime<Utc>,
    h: &History,
    watched: bool,
    started: DateTime<Utc>,
) -> Verdict {
    let this_hour = now.timestamp().div_euclid(3600) * 3600;
    let hourly: Vec<u64> = (0..HOURLY as i64)
        .map(|i| {
            let hs = this_hour - (HOURLY as i64 - 1 - i) * 3600;
            h.hours.get(&hs).copied().unwrap_or(0)
        })
        .collect();
    let frac = (now.timestamp() - this_hour) as f64 / 3600.0;
    let cur = hourly[HOURLY - 1];
    let prev = hourly[HOURLY - 2];
    let events_last_hour = cur + (prev as f64 * (1.0 - frac)).round() as u64;

    // History window: the last `history_hours` complete hours, from the source's first hour.
    let hist_from = this_hour - i64::from(cfg.history_hours) * 3600;
    let first_hour = h.hours.iter().find(|(_, n)| **n > 0).map(|(k, _)| *k);
    let min_silence = cfg.min_silence_secs as f64;
    let mut v = Verdict {
        state: State::Ok,
        events_last_hour,
        hourly,
        usual_gap_secs: None,
        silent_after_secs: min_silence,
        usual_hourly: None,
    };
    let Some(last) = h.last_seen else {
        // Never heard from: silent if expected (watched) once min_silence passed since start.
        v.state = if watched && (now - started).num_seconds() as f64 > min_silence {
            State::Silent
        } else {
            State::New
        };
        return v;
    };
    // Usual gap: the mean interval between its events over the history (up to its last event).
    let window_start = h
        .first_seen
        .map_or(hist_from, |f| f.timestamp().max(hist_from));
    let n: u64 = h.hours.range(hist_from..=this_hour).map(|(_, n)| *n).sum();
    let span = (last.timestamp_micros() as f64 / 1e6 - window_start as f64).max(0.0);
    if n >= 2 {
        v.usual_gap_secs = Some(span / (n - 1) as f64);
    }
    // Longest quiet stretch it had in the history (between its first and last counted hours).
    let mut longest = 0i64;
    if let Some(fh) = first_hour {
        let mut run = 0i64;
        let mut hs = fh.max(hist_from);
        let last_hour = h
            .hours
            .range(..=this_hour)
            .rev()
            .find(|(_, n)| **n > 0)
            .map_or(fh, |(k, _)| *k);
        while hs < last_hour {
            if h.hours.get(&hs).copied().unwrap_or(0) == 0 {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
            hs += 3600;
        }
    }
    let tolerated = if longest > 0 {
        ((longest + 1) * 3600) as f64
    } else {
        0.0
    };
    v.silent_after_secs = min_silence
        .max(cfg.silent_gap_factor * v.usual_gap_secs.unwrap_or(0.0))
        .max(tolerated);
    let quiet = (now - last).num_milliseconds() as f64 / 1000.0;

    // Usual hourly volume: the median of its complete hours in the history.
    let mut complete: Vec<u64> = (0..i64::from(cfg.history_hours))
        .map(|i| this_hour - (i + 1) * 3600)
        .filter(|hs| first_hour.is_some_and(|f| *hs >= f))
        .map(|hs| h.hours.get(&hs).copied().unwrap_or(0))
        .collect();
    v.usual_hourly = median(&mut complete);
    // The same hour yesterday, when the source was already sending then: a source quiet every
    // night is not collapsed at night.
    let yesterday = this_hour - 24 * 3600;
    let same_hour_yesterday = first_hour.filter(|f| *f <= yesterday - 3600).map(|_| {
        let at = |hs: i64| h.hours.get(&hs).copied().unwrap_or(0) as f64;
        at(yesterday) * frac + at(yesterday - 3600) * (1.0 - frac)
    });

    let new = h
        .first_seen
        .is_some_and(|f| now - f < TimeDelta::hours(i64::from(cfg.new_hours)));
    v.state = if !watched {
        if new {
            State::New
        } else {
            State::Ok
        }
    } else if quiet > v.silent_after_secs {
        State::Silent
    } else if v.usual_hourly.is_some_and(|m| {
        let low = |usual: f64| (events_last_hour as f64) < cfg.collapse_ratio * usual;
        m >= cfg.collapse_min_events as f64 && low(m) && same_hour_yesterday.is_none_or(low)
    }) {
        State::Collapsed
    } else if new {
        State::New
    } else {
        State::Ok
    };
    v
}

// ---------------------------------------------------------------------------------------------
// The monitor
// ---------------------------------------------------------------------------------------------

/// One source as `GET /api/v1/sources` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    pub source: String,
    pub kind: String,
    pub last_seen: Option<DateTime<Utc>>,
    pub events_last_hour: u64,
    pub hourly: Vec<u64>,
    pub state: State,
    /// Start of the current silent/collapsed episode, or when a new source was first seen.
    pub since: Option<DateTime<Utc>>,
}

/// The `GET /api/v1/sources` body.
#[derive(Debug, Clone, Serialize)]
pub struct SourcesReport {
    pub sources: Vec<SourceView>,
    pub generated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Episode {
    state: State,
    started: DateTime<Utc>,
    alerted: bool,
}

/// Source health of a running server: the tally, the database it flushes to, the episodes.
pub struct SourceHealth {
    pub cfg: SourcesConfig,
    pub tally: Tally,
    db: Arc<SqliteAlertStore>,
    started: DateTime<Utc>,
    ignore: HashSet<String>,
    /// Open episodes by `kind/source`.
    episodes: Mutex<HashMap<String, Episode>>,
    /// Serialises flushes (the periodic one, the API's and the last one at shutdown).
    flushing: Mutex<()>,
    /// Pressure episodes of the addresses and sources caps.
    pressure: Mutex<[pressure::Episode; 2]>,
}

impl SourceHealth {
    /// Builds it, reading what the database already knows (sources, episodes).
    pub fn open(
        cfg: SourcesConfig,
        networks: Networks,
        db: Arc<SqliteAlertStore>,
    ) -> Result<SourceHealth, String> {
        cfg.validate()?;
        let now = Utc::now();
        let tally = Tally::new(networks, cfg.max_sources, cfg.max_addresses_per_day);
        tally
            .preload(&db, now)
            .map_err(|e| format!("[sources]: {e}"))?;
        let episodes = match db.kv_get(EPISODES_KEY).map_err(|e| e.to_string())? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "source health episodes unreadable; starting afresh");
                HashMap::new()
            }),
            None => HashMap::new(),
        };
        let ignore = cfg.ignore.iter().map(|s| s.to_ascii_lowercase()).collect();
        Ok(SourceHealth {
            cfg,
            tally,
            db,
            started: now,
            ignore,
            episodes: Mutex::new(episodes),
            flushing: Mutex::new(()),
            pressure: Mutex::new(Default::default()),
        })
    }

    /// Adds the counts gathered since the last flush to the database, in one transaction.
    /// On failure (disk full) they are kept and retried with the next flush.
    pub fn flush(&self) -> mamori_store::Result<()> {
        let _one = lock(&self.flushing);
        let w = self.tally.take();
        if w.is_empty() {
            return Ok(());
        }
        let mut hours = Vec::new();
        let mut seen = Vec::new();
        for (name, slots) in &w.sources {
            for (k, c) in slots.iter().enumerate() {
                let Some(c) = c else { continue };
                for (h, n) in &c.hours {
                    hours.push(SourceHour {
                        source: name.clone(),
                        kind: KINDS[k].into(),
                        hour: DateTime::from_timestamp(*h, 0).unwrap_or_default(),
                        events: *n,
                    });
                }
                if let (Some(first), Some(last)) = (c.first, c.last) {
                    seen.push(SourceSeen {
                        source: name.clone(),
                        kind: KINDS[k].into(),
                        first_seen: first,
                        last_seen: last,
                    });
                }
            }
        }
        let addrs: Vec<AddressDay> = w
            .addrs
            .iter()
            .map(|((ip, day), a)| AddressDay {
                ip: *ip,
                day: *day,
                events: a.events,
                auth_failures: a.failures,
                auth_successes: a.successes,
                first_seen: a.first.unwrap_or_default(),
            })
            .collect();
        match self
            .db
            .record_aggregates(&hours, &addrs, &seen, w.through_seq)
        {
            Ok(()) => Ok(()),
            Err(e) => {
                self.tally.put_back(w);
                Err(e)
            }
        }
    }

    fn watched(&self, source: &str, kind: &str) -> bool {
        !self.ignore.contains(source) && self.cfg.watch_kinds.iter().any(|k| k == kind)
    }

    /// Judges every source now (after a flush, so the counts are current).
    pub fn report(&self, now: DateTime<Utc>) -> mamori_store::Result<SourcesReport> {
        let _ = self.flush();
        let this_hour = now.timestamp().div_euclid(3600) * 3600;
        let back = (HOURLY as i64).max(i64::from(self.cfg.history_hours) + 1);
        let from = DateTime::from_timestamp(this_hour - back * 3600, 0).unwrap_or_default();
        let mut hist: BTreeMap<(String, String), History> = BTreeMap::new();
        for s in self.db.sources_seen()? {
            let h = hist.entry((s.source, s.kind)).or_default();
            h.first_seen = Some(s.first_seen);
            h.last_seen = Some(s.last_seen);
        }
        for r in self.db.source_hours(from, now + TimeDelta::hours(1))? {
            *hist
                .entry((r.source, r.kind))
                .or_default()
                .hours
                .entry(r.hour.timestamp())
                .or_default() += r.events;
        }
        for e in &self.cfg.expected {
            let e = e.to_ascii_lowercase();
            if !hist.keys().any(|(s, _)| *s == e) {
                hist.insert((e, "syslog".into()), History::default());
            }
        }
        let episodes = lock(&self.episodes);
        let sources = hist
            .into_iter()
            .map(|((source, kind), h)| {
                let watched = self.watched(&source, &kind);
                let v = judge(&self.cfg, now, &h, watched, self.started);
                let key = episode_key(&kind, &source);
                let since = match v.state {
                    State::Silent => h.last_seen.or(Some(self.started)),
                    State::Collapsed => episodes
                        .get(&key)
                        .filter(|e| e.state == State::Collapsed)
                        .map_or(Some(now), |e| Some(e.started)),
                    State::New => h.first_seen,
                    State::Ok => None,
                };
                SourceView {
                    source,
                    kind,
                    last_seen: h.last_seen,
                    events_last_hour: v.events_last_hour,
                    hourly: v.hourly,
                    state: v.state,
                    since,
                }
            })
            .collect();
        Ok(SourcesReport {
            sources,
            generated_at: now,
        })
    }

    /// One monitor step: judges every source, opens and closes episodes, raises one alert per
    /// episode, updates the metrics. Returns the alerts recorded.
    pub fn check(
        &self,
        now: DateTime<Utc>,
        alerts: &dyn AlertStore,
        tx: &broadcast::Sender<Alert>,
        metrics: &Metrics,
    ) -> mamori_store::Result<usize> {
        let over = self
            .tally
            .pressure(now, &mut lock(&self.pressure), &metrics.caps);
        for a in &over {
            if let Err(e) = crate::pipeline::record_alert(alerts, tx, a) {
                tracing::warn!(error = %e, "the state pressure alert cannot be recorded");
            }
        }
        let report = self.report(now)?;
        let mut by_state = [0u64; 4];
        let mut raised = 0;
        let mut eps = lock(&self.episodes);
        let mut changed = false;
        let mut current = HashSet::new();
        for s in &report.sources {
            by_state[State::ALL.iter().position(|x| *x == s.state).unwrap_or(0)] += 1;
            let key = episode_key(&s.kind, &s.source);
            current.insert(key.clone());
            match (eps.get(&key).cloned(), s.state.is_episode()) {
                (Some(e), true) if e.state == s.state && e.alerted => {}
                (Some(e), true) if e.state == s.state => {
                    // Recorded late (the database refused it before).
                    if self.raise(s, &e, alerts, tx, now).is_ok() {
                        eps.insert(key, Episode { alerted: true, ..e });
                        raised += 1;
                        changed = true;
                    }
                }
                (_, true) => {
                    let mut e = Episode {
                        state: s.state,
                        started: now,
                        alerted: false,
                    };
                    tracing::warn!(source = %s.source, kind = %s.kind, state = s.state.as_str(), last_seen = ?s.last_seen, "log source unhealthy");
                    if self.raise(s, &e, alerts, tx, now).is_ok() {
                        e.alerted = true;
                        raised += 1;
                    }
                    eps.insert(key, e);
                    changed = true;
                }
                (Some(e), false) => {
                    tracing::info!(source = %s.source, kind = %s.kind, was = e.state.as_str(), since = %e.started, "log source recovered");
                    eps.remove(&key);
                    changed = true;
                }
                (None, false) => {}
            }
        }
        // Sources no longer listed (pruned) close their episodes.
        let before = eps.len();
        eps.retain(|k, _| current.contains(k));
        changed |= eps.len() != before;
        if changed {
            let blob = serde_json::to_vec(&*eps).expect("episodes serialise");
            if let Err(e) = alerts.kv_put(EPISODES_KEY, &blob) {
                tracing::warn!(error = %e, "cannot save source health episodes");
            }
        }
        for (i, n) in by_state.iter().enumerate() {
            metrics.sources_by_state[i].store(*n, Relaxed);
        }
        Ok(raised)
    }

    fn raise(
        &self,
        s: &SourceView,
        e: &Episode,
        alerts: &dyn AlertStore,
        tx: &broadcast::Sender<Alert>,
        now: DateTime<Utc>,
    ) -> mamori_store::Result<()> {
        let h = self.history_of(s, now);
        let v = judge(&self.cfg, now, &h, true, self.started);
        let a = health_alert(s, e, &v);
        crate::pipeline::record_alert(alerts, tx, &a).map(|_| ()).inspect_err(|err| {
            tracing::warn!(error = %err, "the source health alert cannot be recorded yet; retrying")
        })
    }

    fn history_of(&self, s: &SourceView, now: DateTime<Utc>) -> History {
        let this_hour = now.timestamp().div_euclid(3600) * 3600;
        let mut h = History {
            first_seen: None,
            last_seen: s.last_seen,
            hours: BTreeMap::new(),
        };
        for (i, n) in s.hourly.iter().enumerate() {
            h.hours
                .insert(this_hour - (HOURLY as i64 - 1 - i as i64) * 3600, *n);
        }
        h
    }

    /// Deletes aggregates older than `keep_days`.
    pub fn prune(&self, now: DateTime<Utc>) -> mamori_store::Result<u64> {
        self.db
            .prune_aggregates(now - TimeDelta::days(i64::from(self.cfg.keep_days)))
    }
}

fn episode_key(kind: &str, source: &str) -> String {
    format!("{kind}/{source}")
}

fn short(s: &str) -> String {
    let mut s: String = s.chars().filter(|c| !c.is_control()).collect();
    truncate(&mut s, 128);
    s
}

fn human_gap(secs: f64) -> (String, String) {
    if secs >= 7200.0 {
        let h = (secs / 3600.0).round();
        (format!("{h} hours"), format!("{h}時間"))
    } else if secs >= 120.0 {
        let m = (secs / 60.0).round();
        (format!("{m} minutes"), format!("{m}分"))
    } else {
        let s = secs.round();
        (format!("{s} seconds"), format!("{s}秒"))
    }
}

fn health_alert(s: &SourceView, e: &Episode, v: &Verdict) -> NewAlert {
    let name = short(&s.source);
    let last = s
        .last_seen
        .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
    let last_ja = s
        .last_seen
        .map_or_else(|| "受信なし".to_owned(), |t| t.to_rfc3339());
    let (gap, gap_ja) = human_gap(v.usual_gap_secs.unwrap_or(v.silent_after_secs));
    let (after, after_ja) = human_gap(v.silent_after_secs);
    let usual = v.usual_hourly.unwrap_or(0.0);
    let (rule, title, level, en, ja) = match e.state {
        State::Silent => (
            "mamori.sources.silent",
            format!("Log source went silent: {name} ({})", s.kind),
            Level::High,
            format!("The {} source {name} has sent nothing since {last}. It usually sends about every {gap} (silence is judged after {after}). An attacker stopping the logs, a broken forwarder or a host that is down look like this; check the host and its log forwarding.", s.kind, ),
            format!("{}のログ送信元 {name} から {last_ja} 以降ログが届いていません。通常は約{gap_ja}ごとに送信しています({after_ja}以上の無送信で判定)。攻撃者によるログ停止、転送設定の故障、ホストの停止が考えられます。ホストとログ転送を確認してください。", s.kind),
        ),
        _ => (
            "mamori.sources.collapsed",
            format!("Log volume collapsed: {name} ({})", s.kind),
            Level::Medium,
            format!("The {} source {name} sent {} events in the last hour; it usually sends about {usual:.0} an hour. Logging may have been turned down or partly disabled, or a forwarder is losing messages. Last event received {last}.", s.kind, s.events_last_hour),
            format!("{}のログ送信元 {name} の直近1時間のイベント数は{}件で、通常の1時間あたり約{usual:.0}件を大きく下回っています。ログ設定の変更・一部無効化や転送時の欠落が考えられます。最終受信: {last_ja}。", s.kind, s.events_last_hour),
        ),
    };
    NewAlert {
        rule_id: RuleId(rule.into()),
        title,
        level,
        event_time: Some(e.started),
        received_at: Utc::now(),
        event_seqs: Vec::new(),
        group_key: Some(format!("host={}", s.source)),
        // One alert per episode.
        dedup_key: Some(format!(
            "{rule}|{}|{}|{}",
            s.kind,
            s.source,
            e.started.timestamp_micros()
        )),
        details: serde_json::json!({
            "source": s.source,
            "kind": s.kind,
            "state": e.state,
            "since": e.started,
            "last_seen": s.last_seen,
            "events_last_hour": s.events_last_hour,
            "usual_hourly": v.usual_hourly,
            "usual_gap_secs": v.usual_gap_secs,
            "silent_after_secs": v.silent_after_secs,
            "description": en,
            "description_ja": ja,
        }),
    }
}

/// The background duty: flushes every `flush_interval_secs`, judges every
/// `check_interval_secs`, prunes daily.
pub async fn run(
    health: Arc<SourceHealth>,
    alerts: Arc<dyn AlertStore>,
    tx: broadcast::Sender<Alert>,
    metrics: Arc<Metrics>,
) {
    let flush_every = Duration::from_secs(health.cfg.flush_interval_secs.max(1));
    let check_every = Duration::from_secs(health.cfg.check_interval_secs.max(1));
    let mut tick = tokio::time::interval(flush_every.min(check_every));
    let mut last_check = std::time::Instant::now();
    let mut last_flush = std::time::Instant::now();
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        let check = last_check.elapsed() >= check_every;
        let flush = last_flush.elapsed() >= flush_every;
        let prune = last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(86_400));
        if !(check || flush || prune) {
            continue;
        }
        let (h, al, tx, m) = (
            Arc::clone(&health),
            Arc::clone(&alerts),
            tx.clone(),
            Arc::clone(&metrics),
        );
        let _ = tokio::task::spawn_blocking(move || {
            if flush {
                if let Err(e) = h.flush() {
                    tracing::warn!(error = %e, "cannot add activity counts to the state database; retrying");
                }
            }
            if check {
                if let Err(e) = h.check(Utc::now(), &*al, &tx, &m) {
                    tracing::warn!(error = %e, "source health check failed");
                }
            }
            if prune {
                match h.prune(Utc::now()) {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "old activity aggregates removed"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune activity aggregates"),
                    _ => {}
                }
            }
        })
        .await;
        if check {
            last_check = std::time::Instant::now();
        }
        if flush {
            last_flush = std::time::Instant::now();
        }
        if prune {
            last_prune = Some(std::time::Instant::now());
        }
    }
}

#[cfg(test)]
mod tests;
