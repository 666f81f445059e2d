//! Check Point Log Exporter syslog: `1 2019-05-15T16:25:50Z host CheckPoint 19710 -
//! [action:"Drop"; origin:"11.22.33.44"; src:"…"; user:"…"; …]` (the fields use `key:"value";`,
//! not RFC 5424 structured data, so they are read from the raw line).

use super::{contains_ci, Norm};
use mamori_event::Event;

/// Offset of the `[key:"` field block of a Check Point line.
pub(super) fn find(s: &str) -> Option<usize> {
    let cp = s.find("CheckPoint")?;
    let rest = s.get(cp..)?;
    let i = rest.find('[')?;
    let after = rest.get(i + 1..)?;
    let key_len = after
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    (after.as_bytes().get(key_len) == Some(&b':')).then_some(cp + i)
}

/// `key:"value"; key:"value"` with `\"` escapes; stops at the closing `]`.
fn fields(s: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', ';']);
        let Some(colon) = rest.find(':') else { break };
        let key = rest.get(..colon).unwrap_or_default().trim();
        let after = rest.get(colon + 1..).unwrap_or_default();
        let Some(q) = after.strip_prefix('"') else {
            // `ike::"…"` or a truncated sample (`action:"Login";...`): skip to the next `;`.
            match after.find(';') {
                Some(i) => {
                    rest = after.get(i + 1..).unwrap_or_default();
                    continue;
                }
                None => break,
            }
        };
        let mut value = String::new();
        let mut end = None;
        let mut chars = q.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(end) = end else { break };
        if !key.is_empty()
            && key.len() <= 64
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            out.push((key, value));
        }
        rest = q.get(end..).unwrap_or_default();
        if rest.starts_with(']') {
            break;
        }
    }
    out
}

pub(super) fn parse(tag: Option<&str>, msg: &str, ev: &Event) -> Option<Norm> {
    let tagged = tag.is_some_and(|t| t.eq_ignore_ascii_case("CheckPoint"));
    if !tagged && !msg.contains("CheckPoint") {
        return None;
    }
    let raw = String::from_utf8_lossy(&ev.raw);
    let start = find(&raw)?;
    let block = raw.get(start + 1..)?;
    let f = fields(block);
    let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
    let mut n = Norm::new(
        "checkpoint",
        "Check Point",
        get("product").unwrap_or("Check Point"),
        "checkpoint",
        "checkpoint",
    );
    let action = get("action").unwrap_or_default();
    if let Some(u) = get("user")
        .or_else(|| get("src_user_name"))
        .or_else(|| get("administrator"))
    {
        let u = u.split(" (").next().unwrap_or(u);
        n.user(u);
    }
    for (k, fld) in [
        ("src", "source.ip"),
        ("client_ip", "source.ip"),
        ("dst", "destination.ip"),
    ] {
        if let Some(v) = get(k) {
            n.ip(fld, v);
        }
    }
    for (k, fld) in [("s_port", "source.port"), ("service", "destination.port")] {
        if let Some(v) = get(k) {
            n.port(fld, v);
        }
    }
    let product = get("product").unwrap_or_default();
    let status = get("auth_status").unwrap_or_default();
    let a = action.to_ascii_lowercase();
    let kind = if contains_ci(product, "vpn")
        || contains_ci(product, "mobile access")
        || contains_ci(product, "remote access")
    {
        "vpn_login"
    } else if contains_ci(product, "smartconsole")
        || contains_ci(product, "smartdashboard")
        || contains_ci(product, "gaia")
        || contains_ci(product, "management")
    {
        "admin_login"
    } else {
        "user_login"
    };
    if !status.is_empty() && contains_ci(status, "log") {
        n.auth(kind, super::outcome_of(status));
    } else if matches!(a.as_str(), "login" | "log in" | "authorize") {
        n.auth(kind, Some("success"));
    } else if matches!(a.as_str(), "failed log in" | "failed login") {
        n.auth(kind, Some("failure"));
    } else if matches!(a.as_str(), "deauthorize" | "log out" | "logout") {
        n.action(
            if kind == "vpn_login" {
                "vpn_logout"
            } else {
                "user_logout"
            },
            "session",
        );
    } else if matches!(a.as_str(), "drop" | "reject" | "block") {
        n.action("connection_denied", "network");
    } else if matches!(a.as_str(), "accept" | "allow" | "encrypt" | "decrypt") {
        n.action("connection_allowed", "network");
    } else if matches!(a.as_str(), "detect" | "prevent" | "quarantine" | "inspect") {
        n.action("threat_detected", "intrusion_detection");
    } else if a == "key install" {
        n.action("vpn_tunnel_up", "network");
    }
    if let Some(o) = get("origin") {
        if super::parse_ip(o).is_some() {
            n.set("observer.ip", o);
        }
    }
    if let Some(t) = get("time") {
        n.time(super::epoch(t));
    }
    for (k, v) in f {
        n.keep(k, v);
    }
    Some(n)
}
