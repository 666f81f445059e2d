//! OpenVPN server logs (syslog tag `openvpn`/`ovpn-*`, or its own log file with a ctime
//! timestamp `Mon Jan  1 10:00:00 2024 …`):
//!
//! * `198.51.100.7:51234 TLS Auth Error: Auth Username/Password verification failed for peer`
//!   and `AUTH-PAM: BACKGROUND: user 'bob' failed to authenticate` → failure;
//! * `198.51.100.7:51234 [bob] Peer Connection Initiated with [AF_INET]198.51.100.7:51234` →
//!   success (the client authenticated and the tunnel is up);
//! * `bob/198.51.100.7:51234 SIGTERM[soft,remote-exit] received, client-instance exiting` →
//!   logout;
//! * the LDAP plugin's `LDAP bind failed` and `Incorrect password supplied for LDAP DN "CN=…"`.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::{contains_ci, Norm};

/// `Mon Jan  1 10:00:00 2024 ` at the start: (time, rest).
fn ctime(s: &str) -> Option<(DateTime<Utc>, &str)> {
    let mut it = s.split_whitespace();
    let (w, m, d, t, y) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if w.len() != 3 || m.len() != 3 || y.len() != 4 {
        return None;
    }
    let joined = format!("{m} {d} {t} {y}");
    let ts = NaiveDateTime::parse_from_str(&joined, "%b %d %H:%M:%S %Y")
        .ok()?
        .and_utc();
    let pos = s.find(y)? + 4;
    Some((ts, s.get(pos..)?.trim_start()))
}

const MARKERS: &[&str] = &[
    "TLS Auth Error",
    "Peer Connection Initiated",
    "AUTH-PAM:",
    "failed to authenticate",
    "client-instance exiting",
    "MULTI_sva",
    "LDAP bind failed",
    "Incorrect password supplied for LDAP DN",
    "TLS Error: TLS handshake failed",
    "VERIFY OK",
    "VERIFY ERROR",
];

pub(super) fn parse(tag: Option<&str>, msg: &str) -> Option<Norm> {
    let tagged = tag.is_some_and(|t| t.starts_with("openvpn") || t.starts_with("ovpn"));
    let (time, body) = match ctime(msg) {
        Some((t, b)) => (Some(t), b),
        None => (None, msg),
    };
    if !tagged && (time.is_none() || !MARKERS.iter().any(|m| body.contains(m))) {
        return None;
    }
    let mut n = Norm::new("openvpn", "OpenVPN", "OpenVPN", "openvpn", "openvpn");
    n.time(time);
    // `[user/]ip:port ` prefix.
    let first = body.split_whitespace().next().unwrap_or_default();
    let (who, addr) = match first.split_once('/') {
        Some((u, a)) => (Some(u), a),
        None => (None, first),
    };
    let (ip, port) = match addr.rsplit_once(':') {
        Some((i, p)) if !i.contains(':') || i.starts_with('[') => (i, Some(p)),
        _ => (addr, None),
    };
    if n.ip("source.ip", ip) {
        if let Some(p) = port {
            n.port("source.port", p);
        }
        if let Some(u) = who {
            n.user(u);
        }
    }
    if contains_ci(body, "Peer Connection Initiated") {
        if let Some(u) = between(body, "[", "]").filter(|u| !u.starts_with("AF_INET")) {
            n.user(u);
        }
        n.auth("vpn_login", Some("success"));
    } else if body.contains("TLS Auth Error")
        || body.contains("failed to authenticate")
        || body.contains("LDAP bind failed")
        || body.contains("Incorrect password supplied")
        || contains_ci(body, "AUTH_FAILED")
    {
        if let Some(u) = between(body, "user '", "'").or_else(|| between(body, "username '", "'")) {
            n.user(u);
        }
        if let Some(dn) = between(body, "LDAP DN \"", "\"") {
            let cn = dn.split(',').next().unwrap_or(dn);
            n.user(cn.strip_prefix("CN=").unwrap_or(cn));
        }
        n.auth("vpn_login", Some("failure"));
    } else if body.contains("client-instance exiting") {
        n.action("vpn_logout", "session");
    } else if body.contains("TLS handshake failed") || body.contains("VERIFY ERROR") {
        n.action("vpn_tunnel_error", "network");
    }
    n.keep("msg", body);
    Some(n)
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let i = s.find(open)? + open.len();
    let rest = s.get(i..)?;
    let j = rest.find(close)?;
    rest.get(..j).filter(|v| !v.is_empty())
}
