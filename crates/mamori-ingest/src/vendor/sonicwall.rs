//! SonicWall (SonicOS) enhanced syslog: `id=firewall sn=C0EAE4599999 time="2019-02-27 12:55:40
//! UTC" fw=2.228.169.242 pri=5 c=32 m=30 msg="Administrator login denied due to bad
//! credentials" src=2.2.2.2:36701:WAN dst=1.1.1.1:50000:WAN usr="admin"`.
//!
//! Addresses are `ip:port:interface[:host]` (`10.12.14.9::X0-V500` has no port); the event is
//! told by `m` (message id) and `msg`.

use super::{contains_ci, date_time, outcome_of, parse_ip, Norm};
use crate::kv::Pairs;

pub(super) fn parse(p: &Pairs<'_>) -> Option<Norm> {
    if !(p.has("sn") && p.has("m") && (p.has("fw") || p.has("c") || p.has("id"))) {
        return None;
    }
    let mut n = Norm::new(
        "sonicwall",
        "SonicWall",
        "SonicOS",
        "sonicwall",
        "sonicwall",
    );
    let msg = p.get("msg").unwrap_or_default();
    for (k, ip_f, port_f) in [
        ("src", "source.ip", "source.port"),
        ("dst", "destination.ip", "destination.port"),
    ] {
        if let Some(v) = p.get(k) {
            addr(v, ip_f, port_f, &mut n);
        }
    }
    if let Some(u) = p
        .meaningful("usr")
        .or_else(|| p.meaningful("user"))
        .or_else(|| p.meaningful("dstuser"))
    {
        n.user(u);
    }
    let login = contains_ci(msg, "login") || contains_ci(msg, "logged in");
    let o = outcome_of(msg);
    if login && contains_ci(msg, "logout") {
        n.action("user_logout", "session");
    } else if login || contains_ci(msg, "authentication") {
        let action = if contains_ci(msg, "administrator") || contains_ci(msg, "admin ") {
            "admin_login"
        } else if contains_ci(msg, "vpn") || contains_ci(msg, "netextender") {
            "vpn_login"
        } else {
            "user_login"
        };
        if login || o.is_some() {
            n.auth(action, o);
        }
    } else if contains_ci(msg, "vpn") && contains_ci(msg, "fail") {
        n.action("vpn_tunnel_error", "network");
    } else if contains_ci(msg, "dropped")
        || contains_ci(msg, "denied")
        || contains_ci(msg, "blocked")
    {
        n.action(
            if contains_ci(msg, "web site") {
                "url_blocked"
            } else {
                "connection_denied"
            },
            "network",
        );
    } else if contains_ci(msg, "connection opened") || contains_ci(msg, "nat mapping") {
        n.action("connection_allowed", "network");
    }
    if let Some(t) = p.get("time") {
        let t = t.trim_end_matches(" UTC");
        if let Some((d, c)) = t.split_once(' ') {
            n.time(date_time(d, c));
        }
    }
    if let Some(f) = p.get("fw").filter(|v| parse_ip(v).is_some()) {
        n.set("observer.ip", f);
    }
    n.keep_pairs(p);
    Some(n)
}

/// `ip:port:iface[:host]`, `ip::iface`, `:port:iface` (IPv6 in `srcV6`).
fn addr(v: &str, ip_f: &'static str, port_f: &'static str, n: &mut Norm) {
    let mut parts = v.split(':');
    let ip = parts.next().unwrap_or_default();
    if n.ip(ip_f, ip) {
        if let Some(port) = parts.next() {
            n.port(port_f, port);
        }
    }
}
