//! Fortinet key=value logs: FortiGate/FortiOS 3–7 (`date= time= devname= devid= logid= type=
//! subtype= …`), FortiAuthenticator (`category= subcategory= typeid= user= status=`), FortiMail
//! (`device_id=FE… log_id= type=kevent`) and FortiDDoS (`devid= spp=`).

use super::{contains_ci, date_time, epoch, outcome_of, parse_ip, Norm};
use crate::kv::{meaningful, Pairs};

pub(super) fn parse(p: &Pairs<'_>) -> Option<Norm> {
    let device = p.get("devid").or_else(|| p.get("device_id"));
    let logid = p.get("logid").or_else(|| p.get("log_id"));
    if p.has("typeid") && p.has("subcategory") && p.has("category") {
        return Some(fortiauth(p));
    }
    if p.has("spp") && p.has("devid") {
        let mut n = Norm::new(
            "fortiddos",
            "Fortinet",
            "FortiDDoS",
            "fortinet",
            "fortiddos",
        );
        n.action("threat_detected", "intrusion_detection");
        if let Some(ip) = p.get("sip") {
            n.ip("source.ip", ip);
        }
        if let Some(ip) = p.get("dip") {
            n.ip("destination.ip", ip);
        }
        common(p, &mut n);
        return Some(n);
    }
    if logid.is_none() || !p.has("type") {
        return None;
    }
    let mail_type = matches!(
        p.get("type"),
        Some("kevent" | "statistics" | "spam" | "encrypt")
    );
    if device.is_some_and(|d| d.starts_with("FE")) || mail_type || p.has("mailer") {
        let mut n = Norm::new(
            "fortimail",
            "Fortinet",
            "FortiMail",
            "fortinet",
            "fortimail",
        );
        fortigate_like(p, &mut n);
        common(p, &mut n);
        return Some(n);
    }
    // FortiGate: `devid`/`devname` (absent from some FortiOS 6 samples), `logid`, `type`.
    if !(device.is_some() || p.has("subtype") || p.has("vd")) {
        return None;
    }
    let mut n = Norm::new(
        "fortigate",
        "Fortinet",
        "FortiGate",
        "fortinet",
        "fortigate",
    );
    fortigate_like(p, &mut n);
    common(p, &mut n);
    Some(n)
}

/// Time, device name, addresses and the original pairs.
fn common(p: &Pairs<'_>, n: &mut Norm) {
    let t = p
        .get("eventtime")
        .and_then(epoch)
        .or_else(|| date_time(p.get("date")?, p.get("time")?));
    n.time(t);
    if let Some(d) = p.meaningful("devname").or_else(|| p.meaningful("devid")) {
        n.set("observer.name", d);
    }
    for (k, f) in [
        ("srcip", "source.ip"),
        ("src", "source.ip"),
        ("remip", "source.ip"),
        ("dstip", "destination.ip"),
        ("dst", "destination.ip"),
    ] {
        if let Some(v) = p.get(k) {
            n.ip(f, v);
        }
    }
    for (k, f) in [
        ("srcport", "source.port"),
        ("src_port", "source.port"),
        ("remport", "source.port"),
        ("dstport", "destination.port"),
        ("dst_port", "destination.port"),
    ] {
        if let Some(v) = p.get(k) {
            n.port(f, v);
        }
    }
    n.keep_pairs(p);
}

/// `https(4.3.5.253)`, `GUI(4.3.5.8)`, `ssh(222.186.130.227)` → the address.
fn ui_ip(ui: &str) -> Option<&str> {
    let (_, r) = ui.split_once('(')?;
    let ip = r.split(')').next()?;
    parse_ip(ip).is_some().then_some(ip)
}

fn fortigate_like(p: &Pairs<'_>, n: &mut Norm) {
    let ty = p.get("type").unwrap_or_default();
    let sub = p.get("subtype").unwrap_or_default();
    let action = p.get("action").unwrap_or_default();
    let status = p.get("status").unwrap_or_default();
    let desc = p
        .get("logdesc")
        .or_else(|| p.get("msg"))
        .unwrap_or_default();
    let user = p.meaningful("user").or_else(|| p.meaningful("xauthuser"));
    if let Some(u) = user {
        n.user(u);
    }
    if let Some(ip) = p.get("ui").and_then(ui_ip) {
        n.ip("source.ip", ip);
    }
    match (ty, sub) {
        ("event", "vpn") => vpn(p, action, status, desc, n),
        ("event", "system") | ("kevent", "admin") | ("kevent", _) => {
            let a = action.to_ascii_lowercase();
            if a == "login" {
                let o = outcome_of(status).or_else(|| outcome_of(desc));
                n.auth("admin_login", o);
            } else if a == "logout" {
                n.action("admin_logout", "session");
            } else if matches!(
                a.as_str(),
                "add" | "edit" | "delete" | "move" | "set" | "unset"
            ) || p.has("cfgpath")
                || contains_ci(desc, "configur")
            {
                n.action("config_change", "configuration");
            }
        }
        ("event", "user") => {
            // Firewall user authentication (captive portal, FSSO, RADIUS/LDAP users).
            let o = outcome_of(status)
                .or_else(|| outcome_of(action))
                .or_else(|| outcome_of(desc));
            if contains_ci(action, "auth")
                || contains_ci(desc, "auth")
                || contains_ci(desc, "login")
            {
                n.auth("user_login", o);
            }
        }
        ("traffic", _) => {
            let verdict = if action.is_empty() { status } else { action };
            let a = verdict.to_ascii_lowercase();
            let denied = matches!(
                a.as_str(),
                "deny" | "block" | "blocked" | "dropped" | "drop"
            );
            n.action(
                if denied {
                    "connection_denied"
                } else {
                    "connection_allowed"
                },
                "network",
            );
        }
        ("utm", "webfilter") => {
            let blocked = matches!(action, "blocked" | "block");
            n.action(
                if blocked {
                    "url_blocked"
                } else {
                    "web_request"
                },
                "web",
            );
            web(p, n);
        }
        ("utm", "virus") => {
            n.action("threat_detected", "malware");
            web(p, n);
        }
        ("utm", _) | ("anomaly", _) | ("attack", _) | ("virus", _) | ("ips", _) => {
            n.action("threat_detected", "intrusion_detection");
        }
        _ => {}
    }
}

fn vpn(p: &Pairs<'_>, action: &str, status: &str, desc: &str, n: &mut Norm) {
    let tunnel = p.get("tunneltype").unwrap_or_default();
    let ssl = tunnel.starts_with("ssl") || action.starts_with("ssl") || contains_ci(desc, "ssl");
    let has_user = p.meaningful("user").is_some() || p.meaningful("xauthuser").is_some();
    match action {
        "ssl-login-fail" => n.auth("vpn_login", Some("failure")),
        "ssl-login-success" | "ssl-web-pass" => n.auth("vpn_login", Some("success")),
        // An SSL-VPN tunnel up is its successful login (FortiOS logs no separate record).
        "tunnel-up" if ssl || has_user => {
            n.auth("vpn_login", Some("success"));
            n.set("event.type", "start");
        }
        "tunnel-down" if ssl || has_user => {
            n.action("vpn_logout", "session");
            n.set("event.type", "end");
        }
        "tunnel-up" | "phase2-up" | "install_sa" => n.action("vpn_tunnel_up", "network"),
        "tunnel-down" | "phase2-down" | "delete_phase1_sa" => {
            n.action("vpn_tunnel_down", "network")
        }
        "dpd" => n.action("vpn_tunnel_error", "network"),
        _ => {
            let xauth = contains_ci(action, "xauth") || contains_ci(desc, "xauth");
            let o = outcome_of(status).or_else(|| outcome_of(desc));
            if xauth || (has_user && contains_ci(desc, "auth")) {
                n.auth("vpn_login", o);
            } else if o == Some("failure") && action == "negotiate" {
                n.action("vpn_tunnel_error", "network");
            }
        }
    }
    // SSL-VPN lines name the remote address `remip` (set in `common`); IPsec `remip` is the peer.
}

fn web(p: &Pairs<'_>, n: &mut Norm) {
    if let Some(h) = p.meaningful("hostname") {
        n.set("url.domain", h);
    }
    if let Some(u) = p.meaningful("url") {
        if u.starts_with("http://") || u.starts_with("https://") {
            n.set("url.original", u);
        } else {
            n.set("url.path", u.split('?').next().unwrap_or(u));
        }
    }
    if let Some(a) = p.meaningful("agent") {
        n.set("user_agent.original", a);
    }
}

/// FortiAuthenticator: `category="Event" subcategory="Authentication" typeid=20001 user="u1"
/// nas="…" action="Authentication" status="Failed" Remote RADIUS user authentication …`.
fn fortiauth(p: &Pairs<'_>) -> Norm {
    let mut n = Norm::new(
        "fortiauthenticator",
        "Fortinet",
        "FortiAuthenticator",
        "fortinet",
        "fortiauthenticator",
    );
    let sub = p.get("subcategory").unwrap_or_default();
    let status = p.get("status").unwrap_or_default();
    if sub.eq_ignore_ascii_case("authentication") {
        let o = match status.to_ascii_lowercase().as_str() {
            "success" | "successful" => Some("success"),
            "failed" | "failure" => Some("failure"),
            _ => None,
        };
        n.auth("radius_login", o);
        if let Some(u) = p.meaningful("user") {
            n.user(u);
        }
    }
    if let Some(nas) = p
        .get("nas")
        .filter(|v| meaningful(v) && parse_ip(v).is_some())
    {
        n.set("observer.ip", nas);
    }
    if !p.trailer.is_empty() {
        n.keep("msg", p.trailer);
    }
    n.keep_pairs(p);
    n
}
