//! CEF/LEEF records and generic key=value lines mapped onto ECS.
//!
//! CEF/LEEF: `src`/`spt`, `dst`/`dpt`, `suser`/`usrName`/`duser`, `request`/`url`,
//! `requestMethod`, `requestClientApplication`/`userAgent`, `outcome`, a `response_code`
//! label; an event whose name, id or category speaks of a login or authentication becomes an
//! authentication event (VPN when the vendor, product or name says VPN).
//! Generic kv: `src`/`srcip`/`src_ip`/`source_ip`, `dst…`, `user`/`username`/`usr`/`suser`.

use super::{contains_ci, outcome_of, Norm};
use crate::cef::Record;
use crate::kv::Pairs;
use mamori_event::Value;

const SRC_IP: &[&str] = &[
    "src",
    "srcip",
    "src_ip",
    "source_ip",
    "sourceip",
    "client_ip",
    "rhost",
];
const SRC_PORT: &[&str] = &[
    "spt",
    "srcport",
    "src_port",
    "sport",
    "source_port",
    "srcPort",
];
const DST_IP: &[&str] = &["dst", "dstip", "dst_ip", "destination_ip", "destinationip"];
const DST_PORT: &[&str] = &[
    "dpt",
    "dstport",
    "dst_port",
    "dport",
    "destination_port",
    "dstPort",
];
const USER: &[&str] = &[
    "suser",
    "usrName",
    "user",
    "username",
    "user_name",
    "usr",
    "duser",
    "account",
];

fn addresses(get: &dyn Fn(&str) -> Option<String>, n: &mut Norm) {
    for (keys, field) in [(SRC_IP, "source.ip"), (DST_IP, "destination.ip")] {
        if let Some(v) = keys.iter().find_map(|k| get(k)) {
            n.ip(field, &v);
        }
    }
    for (keys, field) in [(SRC_PORT, "source.port"), (DST_PORT, "destination.port")] {
        if let Some(v) = keys.iter().find_map(|k| get(k)) {
            n.port(field, &v);
        }
    }
    if let Some(u) = USER.iter().find_map(|k| get(k)) {
        n.user(&u);
    }
}

fn auth_words(s: &str) -> bool {
    [
        "login",
        "logon",
        "log in",
        "log on",
        "authentica",
        "sign-in",
        "signin",
    ]
    .iter()
    .any(|w| contains_ci(s, w))
}

pub(super) fn cef(r: &Record<'_>) -> Norm {
    let format = if r.leef { "leef" } else { "cef" };
    let mut n = Norm::new(
        format,
        &r.vendor,
        &r.product,
        if r.leef { "leef" } else { "cef" },
        "cef",
    );
    n.set("observer.version", r.product_version.as_ref());
    n.set("event.code", r.event_id.as_ref());
    if let Some(sev) = &r.severity {
        match sev.trim().parse::<i64>() {
            Ok(i) => n.set("event.severity", Value::Int(i)),
            Err(_) => n.set("event.severity", sev.as_ref()),
        }
    }
    let get = |k: &str| r.get(k).map(str::to_owned);
    addresses(&get, &mut n);
    let name = r.name.as_deref().unwrap_or_default();
    let cat = r
        .get("cat")
        .or_else(|| r.get("categoryBehavior"))
        .unwrap_or_default();
    let text = format!("{name} {} {cat}", r.event_id);
    let explicit = r.get("outcome").and_then(|o| {
        let o = o.trim_start_matches('/');
        if contains_ci(o, "fail") || contains_ci(o, "deny") || contains_ci(o, "reject") {
            Some("failure")
        } else if contains_ci(o, "success") || contains_ci(o, "allow") || contains_ci(o, "accept") {
            Some("success")
        } else {
            None
        }
    });
    let request = r.get("request").or_else(|| r.get("url"));
    if auth_words(&text) {
        let vpn = [
            "vpn",
            "globalprotect",
            "anyconnect",
            "pulse",
            "connect secure",
            "openvpn",
        ]
        .iter()
        .any(|w| contains_ci(&text, w) || contains_ci(&r.product, w) || contains_ci(&r.vendor, w));
        let admin = contains_ci(&text, "admin");
        let action = if vpn {
            "vpn_login"
        } else if admin {
            "admin_login"
        } else {
            "user_login"
        };
        n.auth(action, explicit.or_else(|| outcome_of(&text)));
    } else if request.is_some() || r.get("requestMethod").is_some() {
        let act = r.get("act").unwrap_or_default();
        let blocked =
            contains_ci(act, "block") || contains_ci(act, "deny") || contains_ci(act, "drop");
        n.action(
            if blocked {
                "url_blocked"
            } else {
                "web_request"
            },
            "web",
        );
    }
    if let Some(u) = request {
        web_url(u, &mut n);
    }
    if let Some(m) = r.get("requestMethod") {
        n.set("http.request.method", m);
    }
    if let Some(a) = r
        .get("requestClientApplication")
        .or_else(|| r.get("userAgent"))
    {
        n.set("user_agent.original", a);
    }
    if let Some(c) = r
        .get("response_code")
        .and_then(|c| c.trim().parse::<i64>().ok())
        .filter(|c| *c > 0)
    {
        n.set("http.response.status_code", Value::Int(c));
    }
    if let Some(h) = r.get("dvchost") {
        n.set("observer.hostname", h);
    }
    if let Some(t) = r.get("rt").or_else(|| r.get("devTime")) {
        n.time(super::epoch(t));
    }
    n.keep(
        if r.leef {
            "leef.version"
        } else {
            "cef.version"
        },
        r.version,
    );
    if let Some(name) = &r.name {
        n.keep("cef.name", name.as_ref());
    }
    for (k, v) in &r.ext {
        n.keep(k, v.as_ref());
    }
    n
}

/// `url.original` plus `url.path`/`url.query` (and `url.domain` for absolute URLs).
fn web_url(u: &str, n: &mut Norm) {
    n.set("url.original", u);
    let rest = match u.split_once("://") {
        Some((_, r)) => {
            let (host, path) = match r.find('/') {
                Some(i) => (
                    r.get(..i).unwrap_or_default(),
                    r.get(i..).unwrap_or_default(),
                ),
                None => (r, "/"),
            };
            n.set("url.domain", host.split(':').next().unwrap_or(host));
            path
        }
        None => u,
    };
    match rest.split_once('?') {
        Some((p, q)) => {
            n.set("url.path", p);
            n.set("url.query", q);
        }
        None => n.set("url.path", rest),
    }
}

pub(super) fn kv(p: &Pairs<'_>) -> Norm {
    let mut n = Norm::new("kv", "unknown", "unknown", "kv", "kv");
    // Generic pairs inside a program's syslog line (kernel firewall, …): the line keeps the
    // syslog reader's logsource so Linux rules still select it.
    n.ls_product = None;
    let get = |k: &str| p.meaningful(k).map(str::to_owned);
    addresses(&get, &mut n);
    let action = p.get("action").or_else(|| p.get("act")).unwrap_or_default();
    let text = format!(
        "{} {} {}",
        p.get("msg")
            .or_else(|| p.get("message"))
            .unwrap_or_default(),
        action,
        p.get("event").or_else(|| p.get("type")).unwrap_or_default()
    );
    if auth_words(&text) {
        let outcome = p
            .get("status")
            .or_else(|| p.get("result"))
            .or_else(|| p.get("outcome"))
            .and_then(outcome_of)
            .or_else(|| outcome_of(&text));
        let vpn = contains_ci(&text, "vpn");
        n.auth(if vpn { "vpn_login" } else { "user_login" }, outcome);
    }
    n.keep_pairs(p);
    n
}
