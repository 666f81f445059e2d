//! Cisco ASA, Firepower Threat Defense, PIX and FWSM: `%ASA-6-113005: AAA user authentication
//! Rejected : reason = … : server = … : user = bob : user IP = 198.51.100.7`, with AnyConnect
//! and WebVPN messages. The `%ASA-n-NNNNNN` marker is either the syslog tag or inside the
//! message (headerless files, `Oct 03 2018 17:34:08: %ASA-4-…`).

use super::{contains_ci, parse_ip, Norm};

/// The products and their names.
const PRODUCTS: &[(&str, &str, &str)] = &[
    ("%ASA-", "ASA", "cisco-asa"),
    ("%FTD-", "FTD", "cisco-ftd"),
    ("%PIX-", "PIX", "cisco-pix"),
    ("%FWSM-", "FWSM", "cisco-fwsm"),
];

pub(super) struct Marker<'a> {
    product: &'static str,
    format: &'static str,
    level: Option<u8>,
    id: &'a str,
    body: &'a str,
}

/// Finds `%ASA-n-NNNNNN` in the first bytes of a text; returns it with the text after it.
pub(super) fn marker(s: &str) -> Option<Marker<'_>> {
    let head = s.get(..s.len().min(160)).unwrap_or(s);
    let (at, product, format) = PRODUCTS
        .iter()
        .find_map(|(m, p, f)| head.find(m).map(|i| (i + m.len(), *p, *f)))?;
    let rest = s.get(at..)?;
    let (lvl, rest) = rest.split_once('-')?;
    let level = lvl.parse::<u8>().ok().filter(|l| *l <= 7);
    level?;
    let id_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if !(5..=7).contains(&id_len) {
        return None;
    }
    let id = rest.get(..id_len)?;
    let body = rest.get(id_len..)?;
    let body = body.strip_prefix(':').unwrap_or(body).trim_start();
    Some(Marker {
        product,
        format,
        level,
        id,
        body,
    })
}

pub(super) fn parse(tag: Option<&str>, msg: &str) -> Option<Norm> {
    let m = match tag {
        Some(t) if t.starts_with('%') => {
            // The tag is `%ASA-6-113005`; the message is the body.
            let full = marker(t)?;
            Marker { body: msg, ..full }
        }
        _ => {
            if !msg.contains('%') {
                return None;
            }
            marker(msg)?
        }
    };
    let mut n = Norm::new(m.format, "Cisco", m.product, "cisco", "cisco");
    if let Some(i) = msg.find(['%']) {
        n.time(own_timestamp(msg.get(..i).unwrap_or_default()));
    }
    n.set("event.code", m.id);
    if let Some(l) = m.level {
        n.set("event.severity", mamori_event::Value::Int(l.into()));
        n.keep("cisco.severity", mamori_event::Value::Int(l.into()));
    }
    n.keep("cisco.message_id", m.id);
    classify(m.id, m.body, &mut n);
    Some(n)
}

/// The value after `key` (case-insensitive) up to a separator (` `, `,`, `:`, `;`, `)`),
/// quotes and angle brackets removed.
fn value_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let lower = s.to_ascii_lowercase();
    let i = lower.find(&key.to_ascii_lowercase())?;
    let rest = s.get(i + key.len()..)?.trim_start();
    let rest = rest.trim_start_matches(['"', '\'', '<']);
    let end = rest
        .find([' ', ',', ':', ';', ')', '"', '\'', '>'])
        .unwrap_or(rest.len());
    let v = rest.get(..end)?;
    (!v.is_empty()).then_some(v)
}

/// `ip/port` or `iface:ip/port` → (ip, port).
fn addr(tok: &str) -> (Option<&str>, Option<&str>) {
    let tok = tok.rsplit(':').next().unwrap_or(tok);
    let (ip, port) = match tok.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (tok, None),
    };
    (parse_ip(ip).is_some().then_some(ip), port)
}

fn user_and_ip(body: &str, n: &mut Norm) {
    for key in [
        "user = ",
        "username = ",
        "uname: ",
        "user <",
        "for user ",
        "user '",
        "user ",
    ] {
        if let Some(u) = value_after(body, key) {
            if !u.eq_ignore_ascii_case("authentication") && !u.eq_ignore_ascii_case("ip") {
                n.user(u);
                break;
            }
        }
    }
    for key in [
        "user ip = ",
        "ip <",
        "ip = ",
        "ip address: ",
        "from ip ",
        "(from ",
    ] {
        if let Some(ip) = ip_after(body, key) {
            if n.ip("source.ip", ip) {
                break;
            }
        }
    }
}

/// An address after `key`: up to a space, `,`, `>` or `)` (colons belong to IPv6).
fn ip_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let lower = s.to_ascii_lowercase();
    let i = lower.find(&key.to_ascii_lowercase())?;
    let rest = s
        .get(i + key.len()..)?
        .trim_start()
        .trim_start_matches(['<', '(']);
    let end = rest.find([' ', ',', '>', ')', ';']).unwrap_or(rest.len());
    rest.get(..end).map(|v| v.trim_end_matches([':', '.']))
}

/// `Oct 03 2018 17:34:08:` — the ASA's own timestamp before the marker (`logging timestamp`).
fn own_timestamp(prefix: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let p = prefix.trim().trim_end_matches(':').trim();
    let words: Vec<&str> = p.split_whitespace().collect();
    let tail = words.get(words.len().checked_sub(4)?..)?.join(" ");
    chrono::NaiveDateTime::parse_from_str(&tail, "%b %d %Y %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

/// Maps the message ids that matter for detection; everything else keeps its id and text.
fn classify(id: &str, body: &str, n: &mut Norm) {
    match id {
        // AAA (VPN, cut-through proxy, management) authentication.
        "113004" | "113012" | "113008" => {
            n.auth("vpn_login", Some("success"));
            user_and_ip(body, n);
        }
        "113005" | "113015" | "113021" => {
            n.auth("vpn_login", Some("failure"));
            user_and_ip(body, n);
        }
        "113006" | "113007" => {
            n.auth("vpn_account_locked", Some("failure"));
            if let Some(u) = value_after(body, "User ").or_else(|| value_after(body, "user = ")) {
                n.user(u);
            }
        }
        // AnyConnect / WebVPN: `Group <g> User <u> IP <ip> Authentication: rejected|successful`.
        "716038" => {
            n.auth("vpn_login", Some("success"));
            user_and_ip(body, n);
        }
        "716039" => {
            n.auth("vpn_login", Some("failure"));
            user_and_ip(body, n);
        }
        "113039" | "722022" | "716001" | "722051" | "734001" => {
            n.action("vpn_tunnel_up", "network");
            n.set("event.type", "start");
            user_and_ip(body, n);
        }
        "113019" | "716002" | "722023" | "722028" | "722037" => {
            n.action("vpn_logout", "session");
            n.set("event.type", "end");
            user_and_ip(body, n);
        }
        // Management access.
        "605005" => {
            n.auth("admin_login", Some("success"));
            mgmt(body, n);
        }
        "605004" => {
            n.auth("admin_login", Some("failure"));
            mgmt(body, n);
        }
        "611101" => {
            n.auth("admin_login", Some("success"));
            user_and_ip(body, n);
        }
        "611102" => {
            n.auth("admin_login", Some("failure"));
            user_and_ip(body, n);
        }
        "308001" => {
            n.auth("admin_login", Some("failure"));
            if let Some(ip) = ip_after(body, "(from ") {
                n.ip("source.ip", ip);
            }
        }
        "611103" | "605006" => {
            n.action("admin_logout", "session");
            user_and_ip(body, n);
        }
        "111001" | "111002" | "111003" | "111004" | "111005" | "111007" => {
            n.action("config_change", "configuration");
            for tok in body.split_whitespace() {
                if n.ip("source.ip", tok.trim_end_matches(['.', ','])) {
                    break;
                }
            }
        }
        "111008" | "111009" | "111010" => {
            n.action("command_executed", "process");
            user_and_ip(body, n);
        }
        "502101" => {
            n.action("user_created", "iam");
            user_and_ip(body, n);
        }
        "502102" => {
            n.action("user_deleted", "iam");
            user_and_ip(body, n);
        }
        "502103" => {
            n.action("privilege_changed", "iam");
            user_and_ip(body, n);
        }
        "603108" | "603109" => {
            let up = id == "603108";
            n.action(
                if up {
                    "vpn_tunnel_up"
                } else {
                    "vpn_tunnel_down"
                },
                "network",
            );
            if let Some(u) = value_after(body, "username = ") {
                n.user(u);
            }
            if let Some(ip) = ip_after(body, "remote-peer = ") {
                n.ip("source.ip", ip);
            }
        }
        _ => traffic(id, body, n),
    }
}

/// `Login permitted|denied from 192.0.2.1/2953 to inside:192.0.2.2/ssh for user "admin"`.
fn mgmt(body: &str, n: &mut Norm) {
    if let Some(from) = value_after(body, "from ") {
        let (ip, port) = addr(from);
        if let Some(ip) = ip {
            n.ip("source.ip", ip);
        }
        if let Some(p) = port {
            n.port("source.port", p);
        }
    }
    if let Some(u) = value_after(body, "for user ") {
        n.user(u);
    }
}

/// Connection records: `Deny …`, `Built …`, `Teardown …` with `from|src a:ip/port to|dst b:ip/port`.
fn traffic(id: &str, body: &str, n: &mut Norm) {
    let action = if body.starts_with("Deny")
        || contains_ci(body, " denied")
        || id.starts_with("106")
        || id.starts_with("4100")
    {
        "connection_denied"
    } else if body.starts_with("Built") || contains_ci(body, "permitted") {
        "connection_allowed"
    } else {
        return;
    };
    n.action(action, "network");
    let words: Vec<&str> = body.split_whitespace().collect();
    let mut src_done = false;
    for w in words.windows(2) {
        let [k, v] = w else { continue };
        let k = k.to_ascii_lowercase();
        if !src_done && (k == "from" || k == "src" || k == "for") {
            let (ip, port) = addr(v);
            if let Some(ip) = ip {
                n.ip("source.ip", ip);
                if let Some(p) = port {
                    n.port("source.port", p);
                }
                src_done = true;
            }
        } else if src_done && (k == "to" || k == "dst") {
            let (ip, port) = addr(v);
            if let Some(ip) = ip {
                n.ip("destination.ip", ip);
                if let Some(p) = port {
                    n.port("destination.port", p);
                }
                break;
            }
        }
    }
}
