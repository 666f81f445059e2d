//! Sophos Firewall (SFOS/XG: `device="SFW" date= time= device_name= log_id= log_type=
//! log_component= log_subtype= status= user_name= src_ip= …`) and Sophos UTM (`id="3005"
//! severity="warn" sys="System" sub="auth" name="Authentication failed" srcip= user= caller=`).

use super::{contains_ci, date_time, outcome_of, Norm};
use crate::kv::Pairs;

pub(super) fn parse(p: &Pairs<'_>) -> Option<Norm> {
    if p.has("log_type") && p.has("log_component") && (p.has("device_name") || p.has("device")) {
        return Some(sfos(p));
    }
    if p.has("sys") && p.has("sub") && p.has("name") && p.has("severity") {
        return Some(utm(p));
    }
    None
}

fn sfos(p: &Pairs<'_>) -> Norm {
    let mut n = Norm::new("sophos-sfos", "Sophos", "SFOS", "sophos", "sophos");
    let ty = p.get("log_type").unwrap_or_default();
    let comp = p.get("log_component").unwrap_or_default();
    let sub = p.get("log_subtype").unwrap_or_default();
    let status = p.get("status").unwrap_or_default();
    let message = p.get("message").unwrap_or_default();
    if let Some(u) = p.meaningful("user_name").or_else(|| p.meaningful("user")) {
        n.user(u);
    }
    for (k, f) in [("src_ip", "source.ip"), ("dst_ip", "destination.ip")] {
        if let Some(v) = p.get(k) {
            n.ip(f, v);
        }
    }
    for (k, f) in [
        ("src_port", "source.port"),
        ("dst_port", "destination.port"),
    ] {
        if let Some(v) = p.get(k) {
            n.port(f, v);
        }
    }
    let event_log = ty.eq_ignore_ascii_case("event") || ty.eq_ignore_ascii_case("admin");
    if event_log
        && (sub.eq_ignore_ascii_case("authentication")
            || contains_ci(comp, "authentication")
            || contains_ci(message, "login"))
    {
        let client = p.get("auth_client").unwrap_or_default();
        let action = if contains_ci(comp, "vpn")
            || contains_ci(client, "vpn")
            || contains_ci(client, "ipsec")
        {
            "vpn_login"
        } else if contains_ci(comp, "gui")
            || contains_ci(comp, "admin")
            || contains_ci(comp, "ssh")
            || contains_ci(comp, "console")
            || ty.eq_ignore_ascii_case("admin")
        {
            "admin_login"
        } else {
            "user_login"
        };
        let o = outcome_of(status).or_else(|| outcome_of(message));
        n.auth(action, o);
    } else if ty.eq_ignore_ascii_case("firewall") {
        let s = status.to_ascii_lowercase();
        let denied = matches!(s.as_str(), "deny" | "drop" | "denied" | "dropped");
        n.action(
            if denied {
                "connection_denied"
            } else {
                "connection_allowed"
            },
            "network",
        );
    } else if contains_ci(ty, "ips") || contains_ci(ty, "atp") || contains_ci(ty, "anti-virus") {
        n.action("threat_detected", "intrusion_detection");
    } else if contains_ci(ty, "content filtering") || contains_ci(comp, "http") {
        let blocked = contains_ci(sub, "denied") || contains_ci(sub, "blocked");
        n.action(
            if blocked {
                "url_blocked"
            } else {
                "web_request"
            },
            "web",
        );
        if let Some(u) = p.meaningful("url") {
            n.set("url.original", u);
        }
        if let Some(a) = p.meaningful("user_agent") {
            n.set("user_agent.original", a);
        }
    }
    if let (Some(d), Some(t)) = (p.get("date"), p.get("time")) {
        n.time(date_time(d, t));
    }
    if let Some(d) = p.meaningful("device_name") {
        n.set("observer.name", d);
    }
    n.keep_pairs(p);
    n
}

fn utm(p: &Pairs<'_>) -> Norm {
    let mut n = Norm::new("sophos-utm", "Sophos", "UTM", "sophos", "sophos");
    let sub = p.get("sub").unwrap_or_default();
    let name = p.get("name").unwrap_or_default();
    if let Some(u) = p.meaningful("user") {
        n.user(u);
    }
    for (k, f) in [("srcip", "source.ip"), ("dstip", "destination.ip")] {
        if let Some(v) = p.get(k) {
            n.ip(f, v);
        }
    }
    for (k, f) in [("srcport", "source.port"), ("dstport", "destination.port")] {
        if let Some(v) = p.get(k) {
            n.port(f, v);
        }
    }
    if sub.eq_ignore_ascii_case("auth") || contains_ci(name, "authentication") {
        let caller = p.get("caller").unwrap_or_default().to_ascii_lowercase();
        let action = match caller.as_str() {
            "webadmin" | "sshd" | "ssh" => "admin_login",
            c if c.contains("vpn")
                || c.contains("ipsec")
                || c.contains("l2tp")
                || c.contains("pptp") =>
            {
                "vpn_login"
            }
            _ => "user_login",
        };
        n.auth(action, outcome_of(name));
    } else if sub.eq_ignore_ascii_case("packetfilter") {
        let denied = contains_ci(name, "drop") || contains_ci(name, "reject");
        n.action(
            if denied {
                "connection_denied"
            } else {
                "connection_allowed"
            },
            "network",
        );
    } else if sub.eq_ignore_ascii_case("ips") {
        n.action("threat_detected", "intrusion_detection");
    } else if sub.eq_ignore_ascii_case("http") {
        n.action("web_request", "web");
        if let Some(u) = p.meaningful("url") {
            n.set("url.original", u);
        }
    }
    n.keep_pairs(p);
    n
}
