//! Ivanti (Pulse) Connect Secure. Two syslog formats:
//!
//! * WELF: `id=firewall time="2024-01-10 10:11:12" pri=6 fw=10.0.0.1 vpn=ive user=bob
//!   realm="Users" roles="" src=198.51.100.7 type=vpn msg="AUT23457: Login failed using auth
//!   server System Local (Local Authentication).  Reason: Failed"`;
//! * standard: `2024-01-10 10:11:12 - ive - [198.51.100.7] bob(Users)[] - Login failed …`.
//!
//! Messages are told by their code (`AUT…`, `ADM…`) and text: `Login failed`, `Primary
//! authentication successful`, `Login succeeded`, `Logout`, `Account locked`.

use super::{contains_ci, date_time, outcome_of, Norm};
use crate::kv::Pairs;

pub(super) fn parse_kv(p: &Pairs<'_>) -> Option<Norm> {
    let ive = p.get("vpn").is_some_and(|v| v.eq_ignore_ascii_case("ive"));
    let coded = p.get("msg").is_some_and(|m| code(m).is_some());
    if !(ive || (p.has("realm") && coded)) {
        return None;
    }
    let mut n = Norm::new(
        "pulse-welf",
        "Ivanti",
        "Connect Secure",
        "pulse_secure",
        "pulse_secure",
    );
    let msg = p.get("msg").unwrap_or_default();
    let realm = p.get("realm").unwrap_or_default();
    if let Some(u) = p
        .meaningful("user")
        .filter(|u| !u.eq_ignore_ascii_case("system"))
    {
        n.user(u);
    }
    if let Some(s) = p.get("src") {
        n.ip("source.ip", s);
    }
    classify(msg, realm, &mut n);
    if let Some((d, t)) = p.get("time").and_then(|t| t.split_once(' ')) {
        n.time(date_time(d, t));
    }
    n.keep_pairs(p);
    Some(n)
}

/// `AUT23457` at the start of a message.
fn code(m: &str) -> Option<&str> {
    let c = m.get(..8)?;
    let b = c.as_bytes();
    (b.iter().take(3).all(u8::is_ascii_uppercase) && b.iter().skip(3).all(u8::is_ascii_digit))
        .then_some(c)
}

fn classify(msg: &str, realm: &str, n: &mut Norm) {
    if let Some(c) = code(msg) {
        n.set("event.code", c);
    }
    let admin = contains_ci(realm, "admin") || msg.starts_with("ADM");
    let login_words = [
        "login failed",
        "login succeeded",
        "authentication successful",
        "authentication failed",
        "primary authentication",
        "secondary authentication",
        "agent login",
        "logged in",
    ];
    if login_words.iter().any(|w| contains_ci(msg, w)) {
        n.auth(
            if admin { "admin_login" } else { "vpn_login" },
            outcome_of(msg),
        );
    } else if contains_ci(msg, "account locked") || contains_ci(msg, "locked out") {
        n.auth("vpn_account_locked", Some("failure"));
    } else if contains_ci(msg, "logout")
        || contains_ci(msg, "session timed out")
        || contains_ci(msg, "closed connection")
    {
        n.action(if admin { "admin_logout" } else { "vpn_logout" }, "session");
    } else if contains_ci(msg, "vpn tunneling") && contains_ci(msg, "session started") {
        n.action("vpn_tunnel_up", "network");
    }
}

/// The standard format: `… - [ip] user(realm)[roles] - message`.
pub(super) fn parse_bracketed(msg: &str) -> Option<Norm> {
    let i = msg.find(" - [")?;
    let rest = msg.get(i + 4..)?;
    let (ip, rest) = rest.split_once("] ")?;
    let (who, text) = rest.split_once(" - ")?;
    let (user, realm) = match who.split_once('(') {
        Some((u, r)) => (u, r.split(')').next().unwrap_or_default()),
        None => (who, ""),
    };
    let head = msg.get(..i).unwrap_or_default();
    if !(contains_ci(head, "ive")
        || contains_ci(head, "pulse")
        || contains_ci(head, "ics")
        || code(text).is_some()
        || realm.len() > 1)
    {
        return None;
    }
    if super::parse_ip(ip).is_none() && ip != "0.0.0.0" {
        return None;
    }
    let mut n = Norm::new(
        "pulse",
        "Ivanti",
        "Connect Secure",
        "pulse_secure",
        "pulse_secure",
    );
    n.ip("source.ip", ip);
    if !user.eq_ignore_ascii_case("system") {
        n.user(user);
    }
    classify(text, realm, &mut n);
    n.keep("realm", realm);
    n.keep("msg", text);
    let mut words = head.split_whitespace();
    if let (Some(d), Some(t)) = (words.next(), words.next()) {
        n.time(date_time(d, t));
    }
    Some(n)
}
