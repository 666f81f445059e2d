//! Palo Alto Networks PAN-OS syslog CSV: `FUTURE_USE,receive time,serial,type,subtype,…` for
//! TRAFFIC, THREAT, SYSTEM (with GlobalProtect events before PAN-OS 9.1), CONFIG,
//! GLOBALPROTECT (9.1+), USERID, AUTH, … The CSV may follow a syslog header or another prefix.
//!
//! GlobalProtect portal/gateway authentication becomes `vpn_login`, the management `auth`
//! system events `admin_login`, CONFIG records `config_change`. Field positions are PAN-OS's
//! documented syslog field order; the original columns are kept under PAN-OS's names.

use super::{contains_ci, Norm};

const TYPES: &[&str] = &[
    "TRAFFIC",
    "THREAT",
    "SYSTEM",
    "CONFIG",
    "GLOBALPROTECT",
    "USERID",
    "AUTH",
    "HIPMATCH",
    "DECRYPTION",
    "CORRELATION",
    "IPTAG",
    "TUNNEL",
    "GTP",
    "SCTP",
    "OTHERS",
];

/// Offset where the PAN-OS CSV starts, if the text contains one.
pub(super) fn find(s: &str) -> Option<usize> {
    if !s.contains(',') {
        return None;
    }
    let mut start = 0;
    for _ in 0..8 {
        if let Some(rest) = s.get(start..) {
            if is_csv(rest) {
                return Some(start);
            }
        }
        let next = s.get(start..)?.find(' ')?;
        start += next + 1;
    }
    None
}

fn is_csv(s: &str) -> bool {
    let mut it = s.splitn(5, ',');
    let (Some(f0), Some(t), Some(_serial), Some(ty)) = (it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let b = t.as_bytes();
    f0.len() <= 4
        && !f0.contains(' ')
        && b.len() == 19
        && b.get(4) == Some(&b'/')
        && b.get(7) == Some(&b'/')
        && TYPES.contains(&ty)
}

/// Splits CSV with `"…"` quoting (`""` inside quotes is one quote).
fn split_csv(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

const TRAFFIC: &[&str] = &[
    "future_use1",
    "receive_time",
    "serial",
    "type",
    "subtype",
    "future_use2",
    "time_generated",
    "src",
    "dst",
    "natsrc",
    "natdst",
    "rule",
    "srcuser",
    "dstuser",
    "app",
    "vsys",
    "from",
    "to",
    "inbound_if",
    "outbound_if",
    "logset",
    "future_use3",
    "sessionid",
    "repeatcnt",
    "sport",
    "dport",
    "natsport",
    "natdport",
    "flags",
    "proto",
    "action",
];
const THREAT_EXTRA: &[&str] = &["misc", "threatid", "category", "severity", "direction"];
const SYSTEM: &[&str] = &[
    "future_use1",
    "receive_time",
    "serial",
    "type",
    "subtype",
    "future_use2",
    "time_generated",
    "vsys",
    "eventid",
    "object",
    "future_use3",
    "future_use4",
    "module",
    "severity",
    "opaque",
];
const CONFIG: &[&str] = &[
    "future_use1",
    "receive_time",
    "serial",
    "type",
    "subtype",
    "future_use2",
    "time_generated",
    "host",
    "vsys",
    "cmd",
    "admin",
    "client",
    "result",
    "path",
];
const GLOBALPROTECT: &[&str] = &[
    "future_use1",
    "receive_time",
    "serial",
    "type",
    "subtype",
    "future_use2",
    "time_generated",
    "vsys",
    "eventid",
    "stage",
    "auth_method",
    "tunnel_type",
    "srcuser",
    "srcregion",
    "machinename",
    "public_ip",
    "public_ipv6",
    "private_ip",
    "private_ipv6",
    "hostid",
    "serialnumber",
    "client_ver",
    "client_os",
    "client_os_ver",
    "repeatcnt",
    "reason",
    "error",
    "opaque",
    "status",
    "location",
    "login_duration",
    "connect_method",
    "error_code",
    "portal",
];

pub(super) fn parse(msg: &str) -> Option<Norm> {
    let start = find(msg)?;
    let cols = split_csv(msg.get(start..)?);
    let ty = cols
        .get(3)
        .map(String::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut n = Norm::new("paloalto", "Palo Alto Networks", "PAN-OS", "panw", "panos");
    let names: Vec<&str> = match ty.as_str() {
        "TRAFFIC" => TRAFFIC.to_vec(),
        "THREAT" => TRAFFIC.iter().chain(THREAT_EXTRA).copied().collect(),
        "SYSTEM" => SYSTEM.to_vec(),
        "CONFIG" => CONFIG.to_vec(),
        "GLOBALPROTECT" => GLOBALPROTECT.to_vec(),
        _ => TRAFFIC.get(..7).unwrap_or_default().to_vec(),
    };
    let col = |name: &str| -> Option<&str> {
        let i = names.iter().position(|n| *n == name)?;
        cols.get(i).map(String::as_str).filter(|v| !v.is_empty())
    };
    if let Some(t) = col("time_generated") {
        n.time(super::date_time(
            t.get(..10).unwrap_or_default(),
            t.get(11..).unwrap_or_default(),
        ));
    }
    match ty.as_str() {
        "TRAFFIC" | "THREAT" => {
            for (c, f) in [("src", "source.ip"), ("dst", "destination.ip")] {
                if let Some(v) = col(c) {
                    n.ip(f, v);
                }
            }
            for (c, f) in [("sport", "source.port"), ("dport", "destination.port")] {
                if let Some(v) = col(c) {
                    n.port(f, v);
                }
            }
            if let Some(u) = col("srcuser") {
                n.user(u);
            }
            let action = col("action").unwrap_or_default();
            if ty == "THREAT" {
                let sub = col("subtype").unwrap_or_default();
                if sub == "url" {
                    n.action(
                        if action.starts_with("block") {
                            "url_blocked"
                        } else {
                            "web_request"
                        },
                        "web",
                    );
                    if let Some(u) = col("misc") {
                        n.set("url.original", u);
                    }
                } else {
                    n.action(
                        "threat_detected",
                        if sub == "virus" || sub == "wildfire-virus" {
                            "malware"
                        } else {
                            "intrusion_detection"
                        },
                    );
                }
            } else {
                let denied = action.starts_with("deny")
                    || action.starts_with("drop")
                    || action.starts_with("reset")
                    || action.starts_with("block");
                n.action(
                    if denied {
                        "connection_denied"
                    } else {
                        "connection_allowed"
                    },
                    "network",
                );
            }
        }
        "SYSTEM" => system(
            col("subtype").unwrap_or_default(),
            col("eventid").unwrap_or_default(),
            col("opaque").unwrap_or_default(),
            &mut n,
        ),
        "CONFIG" => {
            n.action("config_change", "configuration");
            if let Some(u) = col("admin") {
                n.user(u);
            }
            if let Some(h) = col("host") {
                n.ip("source.ip", h);
            }
        }
        "GLOBALPROTECT" => {
            let event = col("eventid").unwrap_or_default();
            let status = col("status").unwrap_or_default();
            if let Some(u) = col("srcuser") {
                n.user(u);
            }
            if let Some(ip) = col("public_ip").or_else(|| col("public_ipv6")) {
                n.ip("source.ip", ip);
            }
            let outcome = match status {
                "success" => Some("success"),
                "failure" => Some("failure"),
                _ => None,
            };
            if event.contains("auth") || event == "login" || event.contains("config") {
                n.auth("vpn_login", outcome);
            } else if event == "logout" {
                n.action("vpn_logout", "session");
            } else if event.contains("tunnel") || event.contains("connected") {
                n.action("vpn_tunnel_up", "network");
            }
        }
        _ => {}
    }
    for (i, v) in cols.iter().enumerate() {
        if let Some(name) = names.get(i) {
            if !name.starts_with("future_use") {
                n.keep(name, v.as_str());
            }
        }
    }
    Some(n)
}

/// SYSTEM records: GlobalProtect (before 9.1) and management authentication.
fn system(sub: &str, event: &str, text: &str, n: &mut Norm) {
    let outcome = if event.ends_with("-fail") || contains_ci(text, "failed") {
        Some("failure")
    } else if event.ends_with("-succ")
        || event.ends_with("-success")
        || contains_ci(text, "succeeded")
        || contains_ci(text, "success")
    {
        Some("success")
    } else {
        None
    };
    let gp = sub == "globalprotect" || event.starts_with("globalprotect");
    if gp && (event.contains("auth") || event.contains("regist")) {
        n.auth("vpn_login", outcome);
    } else if gp && event.contains("logout") {
        n.action("vpn_logout", "session");
    } else if sub == "auth" || event.starts_with("auth-") {
        n.auth("admin_login", outcome);
    } else if sub == "general" && contains_ci(text, "logged in") {
        n.auth("admin_login", Some("success"));
    }
    // `… Login from: 198.51.100.7, Source region: …, User name: bob, …` and
    // `failed authentication for user 'admin'. Reason: …  From: 10.0.0.1.`
    let field = |key: &str| -> Option<&str> {
        let i = text.find(key)? + key.len();
        let r = text.get(i..)?.trim_start();
        let end = r.find([',', ' ']).unwrap_or(r.len());
        r.get(..end)
            .map(|v| v.trim_end_matches('.').trim_matches('\''))
    };
    if let Some(u) = field("User name:")
        .or_else(|| field("for user "))
        .or_else(|| field("User:"))
    {
        n.user(u);
    }
    if let Some(ip) = field("Login from:")
        .or_else(|| field("From:"))
        .or_else(|| field("from:"))
    {
        n.ip("source.ip", ip);
    }
}
