//! Appliance and vendor formats, normalised to ECS so that one rule serves every vendor.
//!
//! # Key design decision: the normalisation contract
//!
//! A VPN password spray is the same attack on a FortiGate, an ASA or a Windows NPS server, so
//! the rules (`rules/vpn/`) are written against vendor-neutral fields, and every reader here
//! promises, for **every authentication event it recognises, whatever the vendor**:
//!
//! * `event.category: authentication`, `event.outcome: success | failure`, `event.action` from
//!   the vocabulary below;
//! * `user.name`, `source.ip` (and `source.port`) when the record names them (a value such as
//!   `N/A`, `-`, `(null)` or `*****` is no value; an address that does not parse as an IP is
//!   not put in `source.ip`);
//! * `observer.vendor`, `observer.product`, `event.module`, and `mamori.format` naming the
//!   payload format (`fortigate`, `cisco-asa`, `cef`, …; the [`mamori_event::Format`] stays
//!   `syslog`);
//! * and the vendor's **own field names too** (`remip`, `srcuser`, `usr`, `xauthuser`, CEF
//!   `suser`, …), so vendor-specific rules still resolve. The normalised fields are added
//!   before the vendor's, so a vendor key that collides with an ECS name cannot override them
//!   (lookups take the first).
//!
//! `event.action` vocabulary:
//!
//! | value | meaning |
//! |---|---|
//! | `vpn_login` | remote-access VPN user authentication (SSL-VPN, IPsec XAuth, AnyConnect/AAA, GlobalProtect, OpenVPN, Pulse/Ivanti, SonicWall/Sophos/Check Point remote access, and the legacy RFC 5424 `[auth@32473 …]` lines); a FortiGate SSL-VPN `tunnel-up` is its successful login |
//! | `vpn_logout` | a VPN user session ended |
//! | `vpn_account_locked` | the VPN locked an account after failures |
//! | `vpn_tunnel_up`, `vpn_tunnel_down` | a site-to-site / IPsec tunnel (no user) came up or went down |
//! | `vpn_tunnel_error` | negotiation or dead-peer-detection failure |
//! | `radius_login` | a RADIUS server accepted or rejected a user (Windows NPS 6272/6273, FortiAuthenticator) |
//! | `remote_gateway_login` | RD Gateway connection authorisation (200/201, 300/301) |
//! | `remote_gateway_connect`, `remote_gateway_disconnect` | RD Gateway session to a resource (302, 304 failure; 303) |
//! | `admin_login`, `admin_logout` | management login to the appliance (GUI, SSH, console, `enable`) |
//! | `user_login`, `user_logout` | firewall user authentication that is not VPN (captive portal, FSSO, Check Point Identity Awareness) |
//! | `config_change` | the appliance configuration was changed, saved or erased |
//! | `user_created`, `user_deleted`, `privilege_changed`, `command_executed` | local account and accounting records |
//! | `connection_allowed`, `connection_denied` | firewall traffic (`event.category: network`) |
//! | `threat_detected` | IPS, anomaly, antivirus (`event.category: intrusion_detection`/`malware`) |
//! | `web_request`, `url_blocked` | web traffic seen by a proxy/WAF/filter (`url.*`, `http.*`, `user_agent.original`) |
//!
//! VPN authentication and tunnel events also get the logsource category `vpn` (the VPN rules
//! select on it), and every vendor event gets its product as the logsource product.
//!
//! Entry points: [`parse_syslog_body`] (called by the syslog reader with the tag and message
//! of every line, header or not — headerless vendor files are read as syslog-ish text), and
//! [`windows::normalize`] (called for every Windows event). [`looks_like`] lets the format vote
//! count a headerless vendor line as syslog-ish text rather than as unknown.

mod checkpoint;
mod cisco;
mod fortinet;
mod generic;
mod openvpn;
mod paloalto;
mod pulse;
mod sonicwall;
mod sophos;
pub(crate) mod windows;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use mamori_event::{Event, Interner, Value};

use crate::cef;
use crate::kv;

/// What a vendor parser made of a record: the normalised (ECS) fields, the vendor's own
/// fields, and where the record belongs.
pub(crate) struct Norm {
    /// `mamori.format`.
    format: &'static str,
    ecs: Vec<(&'static str, Value)>,
    original: Vec<(String, Value)>,
    /// `None` leaves the reader's logsource product and service as they are.
    ls_product: Option<&'static str>,
    ls_category: Option<&'static str>,
    time: Option<DateTime<Utc>>,
}

impl Norm {
    pub(crate) fn new(
        format: &'static str,
        vendor: &str,
        product: &str,
        module: &'static str,
        ls_product: &'static str,
    ) -> Norm {
        let mut n = Norm {
            format,
            ecs: Vec::with_capacity(12),
            original: Vec::new(),
            ls_product: Some(ls_product),
            ls_category: None,
            time: None,
        };
        n.set("observer.vendor", vendor);
        n.set("observer.product", product);
        n.set("event.module", module);
        n
    }

    fn has(&self, name: &str) -> bool {
        self.ecs.iter().any(|(n, _)| *n == name)
    }

    /// Sets an ECS field unless it is already set or the value is empty.
    pub(crate) fn set(&mut self, name: &'static str, v: impl Into<Value>) {
        let v = v.into();
        if matches!(&v, Value::Str(s) if s.trim().is_empty()) || self.has(name) {
            return;
        }
        self.ecs.push((name, v));
    }

    /// `user.name` when the value is a real account name.
    pub(crate) fn user(&mut self, u: &str) {
        let u = u.trim().trim_matches(['"', '\'']);
        if kv::meaningful(u) && !u.bytes().all(|b| b == b'*') {
            self.set("user.name", u);
        }
    }

    /// `source.ip` (or `destination.ip`) when the text is an IP address (`[v6]`, `ip%zone`
    /// tolerated). Returns whether it was one.
    pub(crate) fn ip(&mut self, field: &'static str, s: &str) -> bool {
        match parse_ip(s) {
            Some(ip) => {
                self.set(field, ip.to_string());
                true
            }
            None => false,
        }
    }

    pub(crate) fn port(&mut self, field: &'static str, s: &str) {
        if let Ok(p) = s.trim().parse::<u16>() {
            if p > 0 {
                self.set(field, Value::Int(p.into()));
            }
        }
    }

    /// An authentication event: category, action, outcome (and the `vpn` logsource category
    /// for VPN actions).
    pub(crate) fn auth(&mut self, action: &'static str, outcome: Option<&'static str>) {
        self.set("event.category", "authentication");
        self.set("event.action", action);
        if let Some(o) = outcome {
            self.set("event.outcome", o);
        }
        if action.starts_with("vpn_")
            || action == "radius_login"
            || action.starts_with("remote_gateway_")
        {
            self.ls_category = Some("vpn");
        }
    }

    /// Any other classified event.
    pub(crate) fn action(&mut self, action: &'static str, category: &'static str) {
        self.set("event.category", category);
        self.set("event.action", action);
        if action.starts_with("vpn_") {
            self.ls_category = Some("vpn");
        }
    }

    pub(crate) fn keep(&mut self, name: &str, v: impl Into<Value>) {
        let v = v.into();
        if matches!(&v, Value::Str(s) if s.is_empty()) {
            return;
        }
        self.original.push((name.to_owned(), v));
    }

    /// Keeps every pair of a kv line under its own name (numbers typed).
    pub(crate) fn keep_pairs(&mut self, p: &kv::Pairs<'_>) {
        for pair in &p.pairs {
            let v = pair.value.as_ref();
            let value = if !v.is_empty()
                && v.len() <= 18
                && v.bytes().all(|b| b.is_ascii_digit())
                && !v.starts_with('0')
            {
                v.parse::<i64>()
                    .map(Value::Int)
                    .unwrap_or_else(|_| v.into())
            } else {
                v.into()
            };
            self.keep(pair.key, value);
        }
    }

    pub(crate) fn time(&mut self, t: Option<DateTime<Utc>>) {
        if self.time.is_none() {
            self.time = t;
        }
    }

    fn emit(self, ev: &mut Event, names: &mut Interner) {
        for (n, v) in self.ecs {
            // A reader that already set the field (Windows ECS copies) keeps its value.
            if ev.get(n).is_none() {
                ev.push(names.intern(n), v);
            }
        }
        ev.push(names.intern("mamori.format"), Value::from(self.format));
        for (n, v) in self.original {
            ev.push(names.intern(&n), v);
        }
        if let Some(p) = self.ls_product {
            ev.logsource.product = Some(names.intern(p));
            ev.logsource.service = None;
        }
        if let Some(c) = self.ls_category {
            ev.logsource.category = Some(names.intern(c));
        }
        if ev.timestamp.is_none() {
            if let Some(t) = self.time {
                ev.timestamp = Some(t);
            }
        }
    }
}

/// An IP address in the forms appliances write: plain, `[v6]`, `ip%zone`.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches(['[', ']', '"', '\'']);
    let s = s.split('%').next().unwrap_or(s);
    s.parse::<IpAddr>().ok()
}

/// `2016-06-15` + `21:35:09` (zone unknown: taken as UTC, as the crate doc says).
pub(crate) fn date_time(date: &str, time: &str) -> Option<DateTime<Utc>> {
    let date = date.trim().replace('/', "-");
    let d = NaiveDate::parse_from_str(&date, "%Y-%m-%d").ok()?;
    let time: String = time.chars().filter(|c| !c.is_whitespace()).collect();
    let t = chrono::NaiveTime::parse_from_str(&time, "%H:%M:%S%.f").ok()?;
    Some(NaiveDateTime::new(d, t).and_utc())
}

/// Epoch seconds, milliseconds, microseconds or nanoseconds (FortiOS `eventtime`).
pub(crate) fn epoch(s: &str) -> Option<DateTime<Utc>> {
    let n: i64 = s.trim().parse().ok()?;
    let (secs, nanos) = match n {
        0..=99_999_999_999 => (n, 0),
        100_000_000_000..=99_999_999_999_999 => (n / 1_000, (n % 1_000) * 1_000_000),
        100_000_000_000_000..=99_999_999_999_999_999 => (n / 1_000_000, (n % 1_000_000) * 1_000),
        _ => (n / 1_000_000_000, n % 1_000_000_000),
    };
    DateTime::from_timestamp(secs, u32::try_from(nanos).ok()?)
}

/// Case-insensitive substring test without allocating for the common all-ASCII case.
pub(crate) fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Outcome words of free text: `failure` before `success` (a "login failed after success"
/// reads as failed).
pub(crate) fn outcome_of(text: &str) -> Option<&'static str> {
    const FAIL: &[&str] = &[
        "fail",
        "denied",
        "deny",
        "reject",
        "invalid",
        "bad ",
        "incorrect",
        "wrong",
        "locked",
        "not authorized",
        "unauthorized",
    ];
    const OK: &[&str] = &[
        "success",
        "succeeded",
        "accepted",
        "allowed",
        "granted",
        "permitted",
        "logged in",
        "authenticated",
    ];
    if FAIL.iter().any(|w| contains_ci(text, w)) {
        Some("failure")
    } else if OK.iter().any(|w| contains_ci(text, w)) {
        Some("success")
    } else {
        None
    }
}

/// Adds the fields of a vendor format found in a syslog message (or a headerless line) and
/// returns the format's name, or `None` when the message is none of them. `tag` is the syslog
/// tag (app name) when the line had one. Cheap for ordinary syslog lines: each format is
/// recognised by a fixed marker before anything is parsed.
pub(crate) fn parse_syslog_body(
    tag: Option<&str>,
    msg: &str,
    ev: &mut Event,
    names: &mut Interner,
) -> Option<&'static str> {
    let norm = recognise(tag, msg, ev)?;
    let format = norm.format;
    norm.emit(ev, names);
    Some(format)
}

fn recognise(tag: Option<&str>, msg: &str, ev: &Event) -> Option<Norm> {
    // `host CEF:0|…` reads as tag `CEF` and message `0|…`: put the record back together.
    if let Some(t @ ("CEF" | "LEEF")) = tag {
        if msg.starts_with(|c: char| c.is_ascii_digit()) {
            let joined = format!("{t}:{msg}");
            return cef::parse(&joined).map(|r| generic::cef(&r));
        }
    }
    if let Some(n) = cisco::parse(tag, msg) {
        return Some(n);
    }
    if ev
        .get("log.syslog.structured_data.auth@32473.result")
        .is_some()
    {
        return legacy_vpnd(ev);
    }
    if let Some(n) = checkpoint::parse(tag, msg, ev) {
        return Some(n);
    }
    let tag_lc = tag.map(str::to_ascii_lowercase);
    if let Some(n) = openvpn::parse(tag_lc.as_deref(), msg) {
        return Some(n);
    }
    if msg.contains("EF:") {
        if let Some(start) = cef::find_start(msg) {
            if let Some(r) = msg.get(start..).and_then(cef::parse) {
                return Some(generic::cef(&r));
            }
        }
    }
    if let Some(n) = paloalto::parse(msg) {
        return Some(n);
    }
    if let Some(n) = pulse::parse_bracketed(msg) {
        return Some(n);
    }
    if !msg.contains('=') {
        return None;
    }
    let pairs = kv::parse(msg);
    if pairs.len() < 3 {
        return None;
    }
    fortinet::parse(&pairs)
        .or_else(|| sophos::parse(&pairs))
        .or_else(|| pulse::parse_kv(&pairs))
        .or_else(|| sonicwall::parse(&pairs))
        .or_else(|| {
            // Generic key=value: only where no Linux program parser already understood the
            // line, and only when the line is mostly pairs.
            (ev.get("event.action").is_none() && kv::looks_like(msg)).then(|| generic::kv(&pairs))
        })
}

/// The RFC 5424 `[auth@32473 user=".." src=".." result=".."]` VPN lines: same contract.
fn legacy_vpnd(ev: &Event) -> Option<Norm> {
    const SD: &str = "log.syslog.structured_data.auth@32473.";
    let get = |k: &str| ev.get_str(&format!("{SD}{k}")).map(|v| v.into_owned());
    let mut n = Norm::new("rfc5424-vpn", "unknown", "vpn", "vpn", "linux");
    n.ls_product = None;
    let outcome = match get("result").as_deref() {
        Some("success") => Some("success"),
        Some("failure") => Some("failure"),
        _ => None,
    };
    n.auth("vpn_login", outcome);
    if let Some(u) = get("user") {
        n.user(&u);
    }
    if let Some(s) = get("src") {
        n.ip("source.ip", &s);
    }
    Some(n)
}

/// Whether a headerless line is one of the vendor formats (for the format vote).
pub(crate) fn looks_like(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let t = text.trim();
    if t.is_empty() {
        return false;
    }
    cisco::marker(t).is_some()
        || cef::find_start(t).is_some_and(|i| i < 128)
        || paloalto::find(t).is_some()
        || checkpoint::find(t).is_some()
        || kv::looks_like(t)
}
