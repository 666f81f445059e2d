//! The Linux authentication programs: sshd, PAM, sudo, su, the shadow-utils (useradd, userdel,
//! groupadd, usermod, passwd, chpasswd), systemd-logind and cron.
//!
//! Plain string matching, no regex: these run on every auth.log line, and each pattern is a
//! fixed prefix followed by `user from IP port N`. User names are taken *before the last*
//! ` from ` so a user name an attacker chose (`x from 1.2.3.4 port 1`) cannot move the source
//! address.

use std::net::IpAddr;

use mamori_event::{Event, Interner, Value};

/// What a message said, before it becomes fields.
#[derive(Default)]
struct Auth<'a> {
    action: Option<&'static str>,
    outcome: Option<&'static str>,
    category: Option<&'static str>,
    reason: Option<&'a str>,
    user: Option<&'a str>,
    target: Option<&'a str>,
    ip: Option<&'a str>,
    port: Option<&'a str>,
    domain: Option<&'a str>,
    method: Option<&'a str>,
    command: Option<&'a str>,
    cwd: Option<&'a str>,
    tty: Option<&'a str>,
    group: Option<&'a str>,
    session: Option<&'a str>,
    repeat: Option<&'a str>,
}

const AUTHN: &str = "authentication";
const SESSION: &str = "session";
const IAM: &str = "iam";
const PROCESS: &str = "process";

pub(super) fn parse(program: &str, msg: &str, ev: &mut Event, names: &mut Interner) {
    let mut a = Auth::default();
    let found = match program {
        "sshd" | "dropbear" => sshd(msg, &mut a) || pam(program, msg, &mut a),
        "sudo" => sudo(msg, &mut a) || pam(program, msg, &mut a),
        "su" => su(msg, &mut a) || pam(program, msg, &mut a),
        "useradd" | "userdel" | "groupadd" | "groupdel" | "usermod" | "groupmod" | "adduser"
        | "deluser" | "passwd" | "chpasswd" | "chage" | "gpasswd" => {
            shadow(msg, &mut a) || pam(program, msg, &mut a)
        }
        "systemd-logind" => logind(msg, &mut a),
        "cron" | "crond" => cron(msg, &mut a) || pam(program, msg, &mut a),
        "dovecot" | "imap-login" | "pop3-login" | "managesieve-login" | "submission-login" => {
            dovecot(msg, &mut a) || pam(program, msg, &mut a)
        }
        "smtpd" => postfix_sasl(msg, &mut a),
        _ => pam(program, msg, &mut a),
    };
    if found {
        a.emit(ev, names);
    }
}

impl Auth<'_> {
    fn emit(self, ev: &mut Event, names: &mut Interner) {
        let mut put = |n: &str, v: Value| ev.push_nonempty(names.intern(n), v);
        if let Some(x) = self.action {
            put("event.action", x.into());
        }
        if let Some(x) = self.outcome {
            put("event.outcome", x.into());
        }
        if let Some(x) = self.category {
            put("event.category", x.into());
        }
        if let Some(x) = self.reason {
            put("event.reason", x.into());
        }
        if let Some(x) = self.user {
            put("user.name", x.into());
        }
        if let Some(x) = self.target {
            put("user.target.name", x.into());
        }
        if let Some(x) = self.ip {
            if x.parse::<IpAddr>().is_ok() {
                put("source.ip", x.into());
            } else {
                put("source.domain", x.into());
            }
        }
        if let Some(x) = self.port.and_then(|p| p.parse::<i64>().ok()) {
            put("source.port", Value::Int(x));
        }
        if let Some(x) = self.domain {
            put("source.domain", x.into());
        }
        if let Some(x) = self.method {
            put("mamori.auth.method", x.into());
        }
        if let Some(x) = self.command {
            put("process.command_line", x.into());
        }
        if let Some(x) = self.cwd {
            put("process.working_directory", x.into());
        }
        if let Some(x) = self.tty {
            put("process.tty.name", x.into());
        }
        if let Some(x) = self.group {
            put("group.name", x.into());
        }
        if let Some(x) = self.session {
            put("mamori.session.id", x.into());
        }
        if let Some(x) = self.repeat.and_then(|r| r.parse::<i64>().ok()) {
            put("mamori.repeat_count", Value::Int(x));
        }
    }

    fn set(&mut self, action: &'static str, outcome: Option<&'static str>, category: &'static str) {
        self.action = Some(action);
        self.outcome = outcome;
        self.category = Some(category);
    }
}

fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.split_once(' ') {
        Some((w, r)) => (w, r),
        None => (s, ""),
    }
}

fn strip_preauth(s: &str) -> &str {
    let s = s.trim();
    s.strip_suffix("[preauth]").unwrap_or(s).trim()
}

/// `U from IP port P …` (U may be empty or contain spaces).
fn user_from<'a>(s: &'a str, a: &mut Auth<'a>) -> bool {
    let Some(i) = s.rfind(" from ") else {
        // `Invalid user  from` with an empty user starts with "from ".
        if let Some(r) = s.strip_prefix("from ") {
            a.user = Some("");
            return ip_port(r, a);
        }
        return false;
    };
    let user = s.get(..i).unwrap_or_default();
    a.user = Some(user.trim());
    ip_port(s.get(i + 6..).unwrap_or_default(), a)
}

/// `IP [port P] …`
fn ip_port<'a>(s: &'a str, a: &mut Auth<'a>) -> bool {
    let (ip, rest) = word(s);
    if ip.is_empty() {
        return false;
    }
    a.ip = Some(ip.trim_end_matches([':', ',']));
    if let Some(r) = rest.trim_start().strip_prefix("port ") {
        let (p, _) = word(r);
        a.port = Some(p.trim_end_matches([':', ',']));
    }
    true
}

/// `[authenticating |invalid ]user U IP port P` or `IP port P`.
fn who_ip_port<'a>(s: &'a str, a: &mut Auth<'a>) -> bool {
    let s = strip_preauth(s);
    for (prefix, reason) in [
        ("authenticating user ", None),
        ("invalid user ", Some("invalid_user")),
        ("user ", None),
    ] {
        if let Some(r) = s.strip_prefix(prefix) {
            a.reason = reason.or(a.reason);
            // The last three words are `IP port P`.
            let mut parts = r.rsplitn(4, ' ');
            let (p, kw, ip) = (parts.next(), parts.next(), parts.next());
            if let (Some(p), Some("port"), Some(ip), Some(user)) = (p, kw, ip, parts.next()) {
                a.user = Some(user.trim());
                a.ip = Some(ip);
                a.port = Some(p.trim_end_matches(':'));
                return true;
            }
            // Older sshd: `… user U IP` without a port.
            if let Some((user, ip)) = r.rsplit_once(' ') {
                a.user = Some(user.trim());
                a.ip = Some(ip);
                return true;
            }
            return false;
        }
    }
    ip_port(s, a)
}

fn sshd<'a>(msg: &'a str, a: &mut Auth<'a>) -> bool {
    let mut m = msg.trim();
    // Solaris: `[ID 800047 auth.notice] Failed none for root …`
    if let Some(r) = m.strip_prefix("[ID ") {
        m = r.split_once("] ").map_or(m, |x| x.1);
    }
    let m = m.strip_prefix("error: ").unwrap_or(m);
    let m = m.strip_prefix("fatal: ").unwrap_or(m);
    if let Some(r) = m.strip_prefix("message repeated ") {
        let (n, rest) = word(r);
        if let Some(inner) = rest.strip_prefix("times: [") {
            let inner = inner.trim_end().trim_end_matches(']').trim();
            a.repeat = Some(n);
            return sshd(inner, a);
        }
        return false;
    }
    if let Some(r) = m.strip_prefix("Accepted ") {
        let (method, rest) = word(r);
        let Some(rest) = rest.strip_prefix("for ") else {
            return false;
        };
        a.set("ssh_login", Some("success"), AUTHN);
        a.method = Some(method);
        return user_from(rest, a);
    }
    if let Some(r) = m.strip_prefix("Failed ") {
        let (method, rest) = word(r);
        let Some(mut rest) = rest.strip_prefix("for ") else {
            return false;
        };
        // `illegal user` is OpenSSH before 3.8's word for it.
        if let Some(r2) = rest
            .strip_prefix("invalid user ")
            .or_else(|| rest.strip_prefix("illegal user "))
        {
            a.reason = Some("invalid_user");
            rest = r2;
        }
        a.set("ssh_login", Some("failure"), AUTHN);
        a.method = Some(method);
        return user_from(rest, a);
    }
    if let Some(r) = m
        .strip_prefix("Invalid user ")
        .or_else(|| m.strip_prefix("Illegal user "))
    {
        a.set("ssh_invalid_user", Some("failure"), AUTHN);
        a.reason = Some("invalid_user");
        return user_from(r, a) || {
            a.user = Some(strip_preauth(r));
            true
        };
    }
    if let Some(r) = m.strip_prefix("input_userauth_request: invalid user ") {
        a.set("ssh_invalid_user", Some("failure"), AUTHN);
        a.reason = Some("invalid_user");
        a.user = Some(strip_preauth(r));
        return true;
    }
    if let Some(r) = m.strip_prefix("maximum authentication attempts exceeded for ") {
        a.set("ssh_max_auth_attempts", Some("failure"), AUTHN);
        let r = match r.strip_prefix("invalid user ") {
            Some(x) => {
                a.reason = Some("invalid_user");
                x
            }
            None => r,
        };
        return user_from(strip_preauth(r), a);
    }
    if let Some(r) = m.strip_prefix("Disconnecting: Too many authentication failures") {
        a.set("ssh_max_auth_attempts", Some("failure"), AUTHN);
        if let Some(u) = r.trim_start().strip_prefix("for ") {
            let u = strip_preauth(u);
            a.user = Some(u.strip_prefix("invalid user ").unwrap_or(u));
        }
        return true;
    }
    if let Some(r) = m.strip_prefix("Too many authentication failures for ") {
        a.set("ssh_max_auth_attempts", Some("failure"), AUTHN);
        a.user = Some(strip_preauth(r));
        return true;
    }
    if let Some(r) = m.strip_prefix("Disconnecting ") {
        // `Disconnecting authenticating user U IP port P: Too many authentication failures`
        if let Some((who, why)) = r.split_once(": ") {
            if why.starts_with("Too many authentication failures") {
                a.set("ssh_max_auth_attempts", Some("failure"), AUTHN);
                return who_ip_port(who, a);
            }
        }
        if r.starts_with("invalid user ")
            || r.starts_with("authenticating user ")
            || r.starts_with("user ")
        {
            a.set("ssh_disconnect", None, SESSION);
            return who_ip_port(r.split(": ").next().unwrap_or(r), a);
        }
        return false;
    }
    if let Some(r) = m.strip_prefix("Connection closed by ") {
        a.set("ssh_disconnect", None, SESSION);
        return who_ip_port(r, a);
    }
    if let Some(r) = m.strip_prefix("Disconnected from ") {
        a.set("ssh_disconnect", None, SESSION);
        return who_ip_port(r, a);
    }
    if let Some(r) = m.strip_prefix("Received disconnect from ") {
        a.set("ssh_disconnect", None, SESSION);
        // `IP: 11: reason` or `IP port P:11: reason`
        let end = r.find([':', ' ']).unwrap_or(r.len());
        a.ip = r.get(..end);
        let rest = r.get(end..).unwrap_or_default();
        if let Some(p) = rest.strip_prefix(" port ") {
            let pend = p.find(':').unwrap_or(p.len());
            a.port = p.get(..pend);
        }
        return true;
    }
    if let Some(r) = m.strip_prefix("reverse mapping checking getaddrinfo for ") {
        a.set("ssh_reverse_mapping_failed", None, AUTHN);
        let (host, rest) = word(r);
        a.domain = Some(host);
        if let Some(ip) = rest.strip_prefix('[').and_then(|x| x.split_once(']')) {
            a.ip = Some(ip.0);
        }
        return true;
    }
    if let Some(r) = m.strip_prefix("Address ") {
        if m.contains("POSSIBLE BREAK-IN ATTEMPT") {
            a.set("ssh_reverse_mapping_failed", None, AUTHN);
            let (ip, rest) = word(r);
            a.ip = Some(ip);
            if let Some(h) = rest.strip_prefix("maps to ") {
                a.domain = Some(word(h).0.trim_end_matches(','));
            }
            return true;
        }
        return false;
    }
    if let Some(r) = m.strip_prefix("Did not receive identification string from ") {
        a.set("ssh_no_identification", None, SESSION);
        return ip_port(r, a);
    }
    if let Some(r) = m.strip_prefix("User ") {
        // `User root from 1.2.3.4 not allowed because listed in DenyUsers`
        if let Some((who, why)) = r.split_once(" not allowed because ") {
            a.set("ssh_login", Some("failure"), AUTHN);
            a.reason = Some(why);
            return user_from(who, a);
        }
        return false;
    }
    if let Some(r) = m.strip_prefix("PAM: ") {
        // `PAM: authentication error for illegal user badguy from 192.168.33.1`
        if let Some(i) = r.find(" for ") {
            a.set("authentication_failure", Some("failure"), AUTHN);
            a.reason = r.get(..i);
            let who = r.get(i + 5..).unwrap_or_default();
            let who = who.strip_prefix("illegal user ").unwrap_or(who);
            return user_from(who, a);
        }
        return false;
    }
    if let Some(r) = m.strip_prefix("Postponed ") {
        let (method, rest) = word(r);
        let Some(mut rest) = rest.strip_prefix("for ") else {
            return false;
        };
        if let Some(r2) = rest.strip_prefix("invalid user ") {
            a.reason = Some("invalid_user");
            rest = r2;
        }
        a.set("ssh_login", None, AUTHN);
        a.method = Some(method);
        return user_from(strip_preauth(rest), a);
    }
    if let Some(r) = m.strip_prefix("Connection reset by ") {
        a.set("ssh_disconnect", None, SESSION);
        return who_ip_port(r, a);
    }
    if let Some(r) = m.strip_prefix("Unable to negotiate with ") {
        a.set("ssh_disconnect", Some("failure"), SESSION);
        let (who, why) = r.split_once(": ").unwrap_or((r, ""));
        a.reason = Some(strip_preauth(why)).filter(|w| !w.is_empty());
        return ip_port(who, a);
    }
    if let Some(r) = m.strip_prefix("Bad protocol version identification ") {
        a.set("ssh_connection", Some("failure"), SESSION);
        if let Some(i) = r.rfind(" from ") {
            return ip_port(r.get(i + 6..).unwrap_or_default(), a);
        }
        return true;
    }
    if let Some(r) = m.strip_prefix("Read error from remote host ") {
        a.set("ssh_disconnect", None, SESSION);
        let (ip, _) = r.split_once(':').unwrap_or((r, ""));
        return ip_port(ip, a);
    }
    if let Some(r) = m.strip_prefix("subsystem request for ") {
        // `subsystem request for sftp by user alice` [`failed, subsystem not found`]
        let (_, rest) = word(r);
        if let Some(who) = rest.strip_prefix("by user ") {
            let (user, tail) = word(who);
            let outcome = if tail.starts_with("failed") {
                "failure"
            } else {
                "success"
            };
            a.set("ssh_subsystem", Some(outcome), SESSION);
            a.user = Some(user);
            return true;
        }
        return false;
    }
    if let Some(r) = m.strip_prefix("ROOT LOGIN REFUSED FROM ") {
        // Old sshd with `PermitRootLogin no`.
        a.set("ssh_login", Some("failure"), AUTHN);
        a.user = Some("root");
        a.reason = Some("root login refused");
        return ip_port(r, a);
    }
    if let Some(r) = m.strip_prefix("refused connect from ") {
        // TCP wrappers (hosts.deny): `refused connect from IP (IP)` or `from host (IP)`.
        a.set("ssh_connection", Some("failure"), SESSION);
        let (who, rest) = word(r);
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|x| x.strip_suffix(')'));
        return ip_port(inner.unwrap_or(who), a);
    }
    if let Some(r) = m.strip_prefix("Timeout before authentication for ") {
        a.set("ssh_disconnect", Some("failure"), SESSION);
        let r = r.strip_prefix("connection from ").unwrap_or(r);
        return ip_port(r, a);
    }
    if let Some(r) = m.strip_prefix("Authentication refused: ") {
        a.set("ssh_login", Some("failure"), AUTHN);
        a.reason = Some(r.trim());
        return true;
    }
    if m.starts_with("PAM service(") && m.contains("ignoring max retries") {
        a.set("ssh_max_auth_attempts", Some("failure"), AUTHN);
        return true;
    }
    if let Some(r) = m.strip_prefix("Connection from ") {
        a.set("ssh_connection", None, SESSION);
        return ip_port(r, a);
    }
    false
}

/// PAM messages any program may log: authentication failures and sessions.
fn pam<'a>(program: &str, msg: &'a str, a: &mut Auth<'a>) -> bool {
    if let Some(i) = msg.find("authentication failure;") {
        a.set("authentication_failure", Some("failure"), AUTHN);
        let kv = msg
            .get(i + "authentication failure;".len()..)
            .unwrap_or_default();
        pam_kv(kv, a);
        return true;
    }
    if let Some(i) = msg.find("more authentication failure") {
        // `PAM 2 more authentication failures; logname= … rhost=…`
        a.set("authentication_failure", Some("failure"), AUTHN);
        if let Some((_, kv)) = msg.get(i..).unwrap_or_default().split_once(';') {
            pam_kv(kv, a);
        }
        return true;
    }
    if msg.contains("check pass; user unknown") {
        a.set("authentication_failure", Some("failure"), AUTHN);
        a.reason = Some("user unknown");
        return true;
    }
    if let Some(i) = msg.find("session opened for user ") {
        a.set("session_opened", Some("success"), SESSION);
        let r = msg
            .get(i + "session opened for user ".len()..)
            .unwrap_or_default();
        let (user, rest) = word(r);
        let user = user.split('(').next().unwrap_or(user);
        let by = rest
            .strip_prefix("by ")
            .map(|b| b.split('(').next().unwrap_or(b).trim())
            .filter(|b| !b.is_empty());
        match (program, by) {
            // su/sudo: the session is for the target, opened by the invoking user.
            ("su" | "sudo", Some(by)) => {
                a.user = Some(by);
                a.target = Some(user);
            }
            _ => a.user = Some(user),
        }
        return true;
    }
    if let Some(i) = msg.find("session closed for user ") {
        a.set("session_closed", Some("success"), SESSION);
        let r = msg
            .get(i + "session closed for user ".len()..)
            .unwrap_or_default();
        let user = word(r).0;
        a.user = Some(user.split('(').next().unwrap_or(user));
        return true;
    }
    if let Some(i) = msg.find("password changed for ") {
        a.set("password_changed", Some("success"), IAM);
        let r = msg
            .get(i + "password changed for ".len()..)
            .unwrap_or_default();
        a.target = Some(word(r).0);
        return true;
    }
    false
}

/// `logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root`
fn pam_kv<'a>(s: &'a str, a: &mut Auth<'a>) {
    for kv in s.split_whitespace() {
        if let Some((k, v)) = kv.split_once('=') {
            match k {
                "rhost" if !v.is_empty() => a.ip = Some(v),
                "user" if !v.is_empty() => a.user = Some(v),
                "tty" if !v.is_empty() => a.tty = Some(v),
                _ => {}
            }
        }
    }
}

/// `alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id`
fn sudo<'a>(msg: &'a str, a: &mut Auth<'a>) -> bool {
    let Some((user, rest)) = msg.split_once(" : ") else {
        return false;
    };
    let user = user.trim();
    if user.is_empty() || user.contains(' ') {
        return false;
    }
    a.set("sudo", Some("success"), PROCESS);
    a.user = Some(user);
    let (head, command) = match rest.split_once("COMMAND=") {
        Some((h, c)) => (h, Some(c.trim())),
        None => (rest, None),
    };
    a.command = command;
    for part in head.split(" ; ") {
        let part = part.trim().trim_end_matches(';').trim();
        match part.split_once('=') {
            Some(("TTY", v)) => a.tty = Some(v),
            Some(("PWD", v)) => a.cwd = Some(v),
            Some(("USER", v)) => a.target = Some(v),
            Some(_) => {}
            None if !part.is_empty() => {
                // `3 incorrect password attempts`, `user NOT in sudoers`, `command not allowed`
                a.outcome = Some("failure");
                a.reason = Some(part);
            }
            None => {}
        }
    }
    true
}

fn su<'a>(msg: &'a str, a: &mut Auth<'a>) -> bool {
    let m = msg.trim();
    for (prefix, outcome) in [
        ("Successful su for ", "success"),
        ("FAILED su for ", "failure"),
    ] {
        if let Some(r) = m.strip_prefix(prefix) {
            a.set("su", Some(outcome), PROCESS);
            let (target, rest) = word(r);
            a.target = Some(target);
            a.user = rest.strip_prefix("by ").map(str::trim);
            return true;
        }
    }
    // `+ pts/0 alice:root` / `- pts/0 alice:root`
    for (prefix, outcome) in [("+ ", "success"), ("- ", "failure")] {
        if let Some(r) = m.strip_prefix(prefix) {
            let (tty, rest) = word(r);
            if let Some((user, target)) = rest.trim().split_once(':') {
                a.set("su", Some(outcome), PROCESS);
                a.tty = Some(tty);
                a.user = Some(user);
                a.target = Some(target);
                return true;
            }
        }
    }
    // util-linux: `(to root) alice on pts/0`, `FAILED SU (to root) alice on pts/0`
    let (outcome, r) = match m.strip_prefix("FAILED SU ") {
        Some(r) => ("failure", r),
        None => ("success", m),
    };
    if let Some(r) = r.strip_prefix("(to ") {
        if let Some((target, rest)) = r.split_once(')') {
            a.set("su", Some(outcome), PROCESS);
            a.target = Some(target);
            let (user, rest) = word(rest);
            a.user = Some(user);
            if let Some(t) = rest.strip_prefix("on ") {
                a.tty = Some(t.trim());
            }
            return true;
        }
    }
    false
}

/// `name=bob, UID=1001, GID=1001, home=/home/bob`
fn kv_comma<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.split(',').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k == key).then_some(v.trim())
    })
}

fn quoted(s: &str) -> Option<(&str, &str)> {
    let r = s.trim_start().strip_prefix('\'')?;
    r.split_once('\'')
}

fn shadow<'a>(msg: &'a str, a: &mut Auth<'a>) -> bool {
    let m = msg.trim();
    if let Some(r) = m.strip_prefix("new user: ") {
        a.set("user_created", Some("success"), IAM);
        a.target = kv_comma(r, "name");
        return true;
    }
    if let Some(r) = m
        .strip_prefix("new group: ")
        .or_else(|| m.strip_prefix("group added to /etc/group: "))
    {
        a.set("group_created", Some("success"), IAM);
        a.group = kv_comma(r, "name");
        return true;
    }
    if let Some(r) = m.strip_prefix("delete user ") {
        a.set("user_deleted", Some("success"), IAM);
        a.target = quoted(r).map(|q| q.0);
        return true;
    }
    if let Some(r) = m.strip_prefix("removed group ") {
        a.set("group_deleted", Some("success"), IAM);
        a.group = quoted(r).map(|q| q.0);
        return true;
    }
    if let Some(r) = m.strip_prefix("group ") {
        if m.ends_with(" removed") || m.contains("' removed") {
            a.set("group_deleted", Some("success"), IAM);
            a.group = quoted(r).map(|q| q.0);
            return true;
        }
    }
    if let Some(r) = m.strip_prefix("add ") {
        // `add 'bob' to group 'sudo'` / `add 'bob' to shadow group 'sudo'`
        if let Some((user, rest)) = quoted(r) {
            if let Some(g) = rest
                .trim_start()
                .strip_prefix("to group ")
                .or_else(|| rest.trim_start().strip_prefix("to shadow group "))
            {
                a.set("user_added_to_group", Some("success"), IAM);
                a.target = Some(user);
                a.group = quoted(g).map(|q| q.0);
                return true;
            }
        }
    }
    if let Some(r) = m.strip_prefix("change user ") {
        if let Some((user, rest)) = quoted(r) {
            let action = if rest.trim() == "password" {
                "password_changed"
            } else {
                "user_modified"
            };
            a.set(action, Some("success"), IAM);
            a.target = Some(user);
            return true;
        }
    }
    if let Some(r) = m
        .strip_prefix("lock user ")
        .or_else(|| m.strip_prefix("unlock user "))
    {
        a.set("user_modified", Some("success"), IAM);
        a.target = quoted(r).map(|q| q.0);
        return true;
    }
    if let Some(r) = m.strip_prefix("password for ") {
        // chpasswd/passwd: `password for 'bob' changed by 'root'`
        if let Some((user, rest)) = quoted(r) {
            if let Some(by) = rest.trim_start().strip_prefix("changed by ") {
                a.set("password_changed", Some("success"), IAM);
                a.target = Some(user);
                a.user = quoted(by).map(|q| q.0);
                return true;
            }
        }
    }
    false
}

fn logind<'a>(msg: &'a str, a: &mut Auth<'a>) -> bool {
    let m = msg.trim().trim_end_matches('.');
    if let Some(r) = m.strip_prefix("New session ") {
        let (id, rest) = word(r);
        if let Some(user) = rest.strip_prefix("of user ") {
            a.set("session_opened", Some("success"), SESSION);
            a.session = Some(id);
            a.user = Some(user.trim());
            return true;
        }
    }
    if let Some(r) = m.strip_prefix("Removed session ") {
        a.set("session_closed", Some("success"), SESSION);
        a.session = Some(word(r).0);
        return true;
    }
    false
}

/// `(root) CMD (command)`
fn cron<'a>(msg: &'a str, a: &mut Auth<'a>) -> bool {
    let Some(r) = msg.trim().strip_prefix('(') else {
        return false;
    };
    let Some((user, rest)) = r.split_once(") CMD (") else {
        return false;
    };
    a.set("cron_exec", None, PROCESS);
    a.user = Some(user);
    a.command = Some(rest.strip_suffix(')').unwrap_or(rest));
    true
}

/// `user=<name>` (dovecot angle brackets) or `user=name`, up to the next `,`.
fn bracketed_kv<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let v = word_kv(s, key)?;
    let v = v
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(v);
    (!v.is_empty()).then_some(v)
}

/// `key=value` where `key` starts a word (after a space, a comma or the start), the value
/// running to the next `,` (dovecot's `… secs): user=<u>, method=PLAIN, rip=IP, …`).
fn word_kv<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = s.get(from..)?.find(key).map(|i| i + from) {
        let after = i + key.len();
        let boundary = i == 0 || matches!(s.as_bytes().get(i - 1), Some(b' ' | b','));
        if boundary && s.as_bytes().get(after) == Some(&b'=') {
            let rest = s.get(after + 1..)?;
            let v = rest.split(',').next().unwrap_or(rest).trim();
            return Some(v);
        }
        from = after;
    }
    None
}

/// An address as dovecot writes it (`::ffff:1.2.3.4` for IPv4 on a dual-stack socket).
fn plain_ip(ip: &str) -> &str {
    ip.strip_prefix("::ffff:")
        .filter(|v| v.contains('.'))
        .unwrap_or(ip)
}

/// dovecot: `imap-login: Disconnected (auth failed, 7 attempts in 111 secs): user=<u>,
/// method=PLAIN, rip=IP, …`, `pop3-login: Aborted login (1 authentication attempts): …`,
/// `imap-login: Login: user=<u>, …, rip=IP` and the passdb drivers'
/// `auth-worker(default): sql(user,IP): Password mismatch` / `unknown user` /
/// `pam(user,IP): pam_authenticate() failed: …`.
fn dovecot<'a>(msg: &'a str, a: &mut Auth<'a>) -> bool {
    // The login processes: `imap-login: …` (the program is `dovecot`), or the process itself.
    let body = match msg.split_once("-login: ") {
        Some((svc, rest)) if !svc.contains(' ') => rest,
        _ => msg,
    };
    let failed = body.starts_with("Disconnected (auth failed")
        || (body.starts_with("Aborted login (")
            && !body.starts_with("Aborted login (0 ")
            && !body.starts_with("Aborted login (no auth attempts"));
    let success = body.starts_with("Login: ");
    if failed || success {
        let Some(ip) = word_kv(body, "rip") else {
            return false;
        };
        a.ip = Some(plain_ip(ip));
        a.user = bracketed_kv(body, "user");
        a.method = word_kv(body, "method");
        if failed {
            a.set("mail_login", Some("failure"), AUTHN);
        } else {
            a.set("mail_login", Some("success"), AUTHN);
        }
        return true;
    }
    // passdb drivers: `auth…: DRIVER(user,ip[,…]): reason`
    const FAILURES: [&str; 4] = [
        "Password mismatch",
        "unknown user",
        "pam_authenticate() failed",
        "user not found",
    ];
    if !FAILURES.iter().any(|f| msg.contains(f)) {
        return false;
    }
    let Some((head, _)) = msg.rsplit_once("): ") else {
        return false;
    };
    let Some(args) = head.rsplit_once('(').map(|(_, a)| a) else {
        return false;
    };
    let mut parts = args.split(',');
    let (Some(user), Some(ip)) = (parts.next(), parts.next()) else {
        return false;
    };
    let ip = plain_ip(ip.trim());
    if ip.parse::<std::net::IpAddr>().is_err() {
        return false;
    }
    a.user = Some(user.trim()).filter(|u| !u.is_empty());
    a.ip = Some(ip);
    a.reason = FAILURES.iter().find(|f| msg.contains(*f)).copied();
    a.set("mail_login", Some("failure"), AUTHN);
    true
}

/// postfix smtpd: `warning: host[IP]: SASL LOGIN authentication failed: …` and
/// `QUEUEID: client=host[IP], sasl_method=PLAIN, sasl_username=user`.
fn postfix_sasl<'a>(msg: &'a str, a: &mut Auth<'a>) -> bool {
    let bracket_ip = |s: &'a str| -> Option<&'a str> {
        let (_, r) = s.split_once('[')?;
        let (ip, _) = r.split_once(']')?;
        ip.parse::<std::net::IpAddr>().is_ok().then_some(ip)
    };
    if let Some(i) = msg.find(": SASL ") {
        let rest = msg.get(i + 7..).unwrap_or_default();
        if !rest.contains("authentication failed") {
            return false;
        }
        let Some(ip) = msg.get(..i).and_then(bracket_ip) else {
            return false;
        };
        a.ip = Some(ip);
        a.method = rest.split_once(' ').map(|(m, _)| m);
        a.set("mail_login", Some("failure"), AUTHN);
        return true;
    }
    if let Some(user) = kv_comma(msg, "sasl_username").filter(|u| !u.is_empty()) {
        let Some(client) = msg.split_once("client=").map(|(_, c)| c) else {
            return false;
        };
        let Some(ip) = bracket_ip(client) else {
            return false;
        };
        a.ip = Some(ip);
        a.user = Some(user);
        a.method = kv_comma(msg, "sasl_method");
        a.set("mail_login", Some("success"), AUTHN);
        return true;
    }
    false
}
