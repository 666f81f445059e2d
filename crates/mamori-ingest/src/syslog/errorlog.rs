//! Web server error logs: nginx (`2024/01/02 03:04:05 [error] 123#45: *6 message, client: IP,
//! server: S, request: "GET /x HTTP/1.1", host: "h"`) and Apache 2.2 / 2.4
//! (`[Sun Dec 04 04:47:44 2005] [error] [client 1.2.3.4] message` and
//! `[Tue Sep 30 11:30:13.262255 2014] [core:error] [pid 1:tid 2] [client IP:port] AH00037: …`),
//! also without their timestamp (as some relays strip it) and as the body of a syslog message
//! (nginx `error_log syslog:`).
//!
//! What an exploited site reveals there — command output, `sh: no job control in this shell`,
//! PHP warnings naming the script, ModSecurity verdicts — stays whole in `message`, and the
//! message without the request context goes to `error.message`, so keyword and field rules both
//! see it. The client goes to `source.ip`/`source.port`, the request line to
//! `http.request.method` and `url.*` (ModSecurity's `[uri "…"]` too), the level to `log.level`;
//! `event.dataset` is `nginx.error` or `apache.error` and the logsource service `nginx` or
//! `apache` (SigmaHQ's Apache rules use `service: apache`).

use chrono::{DateTime, NaiveDateTime, Utc};
use mamori_event::{Event, Interner, Value};

use super::{clock, make, month_of, split_host_port};

/// Which server wrote the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    Nginx,
    Apache,
}

impl Server {
    pub(crate) fn dataset(self) -> &'static str {
        match self {
            Server::Nginx => "nginx.error",
            Server::Apache => "apache.error",
        }
    }

    pub(crate) fn service(self) -> &'static str {
        match self {
            Server::Nginx => "nginx",
            Server::Apache => "apache",
        }
    }
}

/// One parsed error-log line (borrowed from the text).
#[derive(Debug, Default)]
pub(crate) struct ErrorLine<'a> {
    pub(crate) server: Option<Server>,
    pub(crate) timestamp: Option<DateTime<Utc>>,
    pub(crate) timestamp_raw: Option<&'a str>,
    pub(crate) level: Option<&'a str>,
    pub(crate) module: Option<&'a str>,
    pub(crate) pid: Option<&'a str>,
    pub(crate) tid: Option<&'a str>,
    pub(crate) connection: Option<&'a str>,
    pub(crate) client: Option<&'a str>,
    /// The whole message after the bracketed prefix.
    pub(crate) message: &'a str,
    /// The message without the trailing request context.
    pub(crate) error: &'a str,
    pub(crate) code: Option<&'a str>,
    pub(crate) request: Option<&'a str>,
    pub(crate) uri: Option<&'a str>,
    pub(crate) server_name: Option<&'a str>,
    pub(crate) host: Option<&'a str>,
    pub(crate) referrer: Option<&'a str>,
}

impl ErrorLine<'_> {
    /// `(ip, port)` of the client.
    pub(crate) fn client_addr(&self) -> Option<(&str, Option<i64>)> {
        self.client.map(split_host_port)
    }
}

const LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug", "trace1", "trace2",
    "trace3", "trace4", "trace5", "trace6", "trace7", "trace8",
];

fn is_level(s: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s)) || s.eq_ignore_ascii_case("warning")
}

/// Parses a line that is an nginx or Apache error-log line; `None` otherwise.
pub(crate) fn parse(s: &str) -> Option<ErrorLine<'_>> {
    let s = s.trim_start_matches(' ');
    nginx(s).or_else(|| apache(s))
}

/// Whether a line looks like an error-log line (for format detection).
pub(crate) fn looks_like(line: &[u8]) -> bool {
    let text = crate::input::lossy(line);
    parse(&text).is_some()
}

fn nginx(s: &str) -> Option<ErrorLine<'_>> {
    // `YYYY/MM/DD hh:mm:ss [level] `
    let date = s.get(..10)?;
    let b = date.as_bytes();
    if b.get(4) != Some(&b'/') || b.get(7) != Some(&b'/') {
        return None;
    }
    let rest = s.get(10..)?.strip_prefix(' ')?;
    let (time, rest) = rest.split_once(' ')?;
    clock(time)?;
    let rest = rest.strip_prefix('[')?;
    let (level, rest) = rest.split_once(']')?;
    if level.is_empty() || level.len() > 16 || level.contains(' ') {
        return None;
    }
    let raw = s.get(..10 + 1 + time.len())?;
    let mut e = ErrorLine {
        server: Some(Server::Nginx),
        timestamp: NaiveDateTime::parse_from_str(raw, "%Y/%m/%d %H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc()),
        timestamp_raw: Some(raw),
        level: Some(level),
        ..ErrorLine::default()
    };
    let mut rest = rest.trim_start_matches(' ');
    // `123#45: ` (pid#tid) and `*6 ` (connection); wazuh's samples write `80:2 `.
    if let Some((head, after)) = rest.split_once(' ') {
        let pidtid = head.strip_suffix(':').unwrap_or(head);
        if let Some((pid, tid)) = pidtid.split_once(['#', ':']) {
            if digits(pid) && digits(tid) {
                e.pid = Some(pid);
                e.tid = Some(tid);
                rest = after;
            }
        }
    }
    if let Some(r) = rest.strip_prefix('*') {
        if let Some((cid, after)) = r.split_once(' ') {
            if digits(cid) {
                e.connection = Some(cid);
                rest = after;
            }
        }
    }
    e.message = rest;
    e.error = rest;
    // `…, client: IP, server: S, request: "…", upstream: "…", host: "…", referrer: "…"`.
    // Attacker text precedes the context, so it is cut at the *last* `, client: `.
    if let Some(i) = rest.rfind(", client: ") {
        e.error = rest.get(..i).unwrap_or(rest);
        let ctx = rest.get(i + 2..).unwrap_or_default();
        nginx_context(ctx, &mut e);
    }
    Some(e)
}

/// `client: IP, server: S, request: "GET / HTTP/1.1", host: "h"` (quoted values may hold `, `).
fn nginx_context<'a>(mut s: &'a str, e: &mut ErrorLine<'a>) {
    while !s.is_empty() {
        let Some((key, r)) = s.split_once(": ") else {
            return;
        };
        let (value, next) = if let Some(q) = r.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (
                    q.get(..end).unwrap_or_default(),
                    q.get(end + 1..).unwrap_or_default(),
                ),
                None => (q, ""),
            }
        } else {
            match r.find(", ") {
                Some(end) => (r.get(..end).unwrap_or_default(), r.get(end..).unwrap_or("")),
                None => (r, ""),
            }
        };
        match key.trim() {
            "client" => e.client = Some(value),
            "server" => e.server_name = Some(value),
            "request" => e.request = Some(value),
            "host" => e.host = Some(value),
            "referrer" => e.referrer = Some(value),
            _ => {}
        }
        s = next.trim_start_matches(',').trim_start_matches(' ');
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Apache: optional `[date]`, then `[module:level]`, `[pid N:tid M]`, `[client IP:port]`.
fn apache(s: &str) -> Option<ErrorLine<'_>> {
    let mut e = ErrorLine {
        server: Some(Server::Apache),
        ..ErrorLine::default()
    };
    let mut rest = s;
    let (first, after) = s.strip_prefix('[')?.split_once(']')?;
    if let Some(ts) = apache_time(first) {
        e.timestamp = ts;
        e.timestamp_raw = Some(first);
        rest = after;
    }
    loop {
        let t = rest.trim_start_matches(' ');
        let Some(r) = t.strip_prefix('[') else { break };
        let Some((inside, after)) = r.split_once(']') else {
            break;
        };
        if let Some(c) = inside.strip_prefix("client ") {
            e.client = Some(c.trim());
        } else if let Some(p) = inside.strip_prefix("pid ") {
            // `pid 123` or `pid 123:tid 456`
            let (pid, tid) = match p.split_once(":tid ") {
                Some((a, b)) => (a, Some(b)),
                None => (p, None),
            };
            e.pid = Some(pid.trim());
            e.tid = tid.map(str::trim);
        } else if let Some(t) = inside.strip_prefix("tid ") {
            e.tid = Some(t.trim());
        } else if e.level.is_none() && !inside.contains(' ') && !inside.is_empty() {
            // `error`, `core:error`, `:error`
            let (module, level) = match inside.rsplit_once(':') {
                Some((m, l)) => (Some(m).filter(|m| !m.is_empty()), l),
                None => (None, inside),
            };
            if !is_level(level) {
                break;
            }
            e.level = Some(level);
            e.module = module;
        } else {
            break;
        }
        rest = after;
    }
    // Without a timestamp, only a known level makes it an error log line.
    if e.timestamp.is_none() && e.level.is_none() {
        return None;
    }
    let msg = rest.trim_start_matches(' ');
    e.message = msg;
    let mut err = msg;
    // `AH00037: …` (Apache 2.4 error codes)
    if let Some((code, _)) = msg.split_once(": ") {
        if code.len() == 7 && code.starts_with("AH") && digits(code.get(2..).unwrap_or_default()) {
            e.code = Some(code);
        }
    }
    if let Some(i) = err.rfind(", referer: ") {
        e.referrer = err.get(i + ", referer: ".len()..);
        err = err.get(..i).unwrap_or(err);
    }
    // ModSecurity: `… [uri "/x.php"] [unique_id "…"]`
    if let Some(i) = err.find("[uri \"") {
        let r = err.get(i + 6..).unwrap_or_default();
        e.uri = r.split_once('"').map(|x| x.0);
    }
    if let Some(i) = err.find("[hostname \"") {
        let r = err.get(i + 11..).unwrap_or_default();
        e.host = r.split_once('"').map(|x| x.0);
    }
    e.error = err;
    Some(e)
}

/// `Sun Dec 04 04:47:44 2005` or `Tue Sep 30 11:30:13.262255 2014`.
fn apache_time(inside: &str) -> Option<Option<DateTime<Utc>>> {
    let parts: Vec<&str> = inside.split_whitespace().collect();
    let [_, mon, day, time, year] = parts.as_slice() else {
        return None;
    };
    let m = month_of(mon)?;
    let d = day.parse::<u32>().ok()?;
    let (h, mi, sec, n) = clock(time)?;
    let y = year.parse::<i32>().ok()?;
    Some(make(y, m, d, h, mi, sec, n))
}

/// Adds the fields of an error-log line to `ev` (its `message` is already set by the caller).
pub(crate) fn apply(e: &ErrorLine<'_>, ev: &mut Event, names: &mut Interner) {
    let mut put = |n: &str, v: Value| ev.push_nonempty(names.intern(n), v);
    if let Some(s) = e.server {
        put("event.dataset", s.dataset().into());
    }
    if let Some(l) = e.level {
        put("log.level", l.into());
    }
    if let Some(m) = e.module {
        put("log.logger", m.into());
    }
    if let Some(pid) = e.pid {
        let v = pid
            .parse::<i64>()
            .map(Value::Int)
            .unwrap_or_else(|_| pid.into());
        put("process.pid", v);
    }
    if let Some(t) = e.tid.and_then(|t| t.parse::<i64>().ok()) {
        put("process.thread.id", Value::Int(t));
    }
    if let Some(c) = e.connection.and_then(|c| c.parse::<i64>().ok()) {
        put("nginx.error.connection_id", Value::Int(c));
    }
    put("error.message", e.error.trim().into());
    if let Some(c) = e.code {
        put("error.code", c.into());
    }
    if let Some((ip, port)) = e.client_addr() {
        put("source.ip", ip.into());
        if let Some(p) = port {
            put("source.port", Value::Int(p));
        }
    }
    if let Some(r) = e.request {
        let mut parts = r.split(' ').filter(|p| !p.is_empty());
        let method = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        let (uri, version) = match rest.split_last() {
            Some((v, init)) if v.starts_with("HTTP/") && !init.is_empty() => {
                (init.join(" "), Some(*v))
            }
            _ => (rest.join(" "), None),
        };
        if !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()) {
            put("http.request.method", method.into());
            url(&uri, &mut put);
        } else {
            url(r, &mut put);
        }
        if let Some(v) = version {
            put("http.version", v.trim_start_matches("HTTP/").into());
        }
    } else if let Some(u) = e.uri {
        url(u, &mut put);
    }
    if let Some(h) = e.host.or(e.server_name) {
        put("url.domain", h.into());
    }
    if let Some(r) = e.referrer {
        put("http.request.referrer", r.into());
    }
}

fn url(uri: &str, put: &mut impl FnMut(&str, Value)) {
    if uri.is_empty() {
        return;
    }
    put("url.original", uri.into());
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    put("url.path", path.into());
    if let Some(q) = query {
        put("url.query", q.into());
    }
}
