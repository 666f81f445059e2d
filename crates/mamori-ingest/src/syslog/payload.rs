//! Payloads inside syslog: the message body of a syslog line is often another format, because
//! that is how servers and appliances forward — nginx `access_log syslog:…` and Apache
//! `CustomLog "|logger"` send access-log lines, Docker/journald/Sysmon-for-Linux and Windows
//! shippers send JSON objects (optionally behind rsyslog's `@cee:` cookie), nginx
//! `error_log syslog:` sends error-log lines.
//!
//! # Key design decision: the payload's event, with the syslog header as metadata
//!
//! A body that parses as another format becomes **that format's event** (its `Format` and its
//! logsource: an access line is `category: webserver`, a Windows-in-JSON object is
//! `product: windows` with its `Channel`), so the rules written for that format see it exactly as
//! they would in a file. The syslog header is kept on it: every `log.syslog.*` field (priority,
//! facility, severity, appname, msgid, structured data), `log.syslog.hostname`, and `host.name`,
//! `process.name`, `process.pid` and the timestamp when the payload lacks them. `raw` stays the
//! whole line; a payload without a logsource of its own (an application's JSON) keeps the
//! syslog line's (`linux`, the program). Error-log bodies stay syslog events, enriched with the error-log fields
//! ([`super::errorlog`]), as error-log files are.
//!
//! The order is: JSON (a body starting with `{` or `@cee:`), access log (cheap `] "` prefilter
//! before the regex), error log; vendor formats (CEF, LEEF, key=value, appliances) are tried
//! by `crate::vendor` where [`parse_body`] says so. A body that looks like JSON but does not
//! parse stays a syslog event and is reported (`LineInfo::payload_failed`), never dropped; so
//! does a body in a structured format no reader took (CEF, LEEF, `key=value` pairs).

use mamori_event::{Event, Interner, Value};

use super::errorlog::{self, ErrorLine};
use crate::access;
use crate::json::parse_json_object;

/// What a syslog message body turned out to be.
pub(crate) enum Body<'a> {
    /// Plain text: the syslog event stands as it is.
    Text,
    /// Another format's event (without the syslog metadata yet) and the format's name.
    Event(Event, &'static str),
    /// A web server error-log line, to be added to the syslog event.
    ErrorLog(ErrorLine<'a>),
    /// It looked like this format but did not parse.
    Failed(&'static str),
    /// A format Mamori does not read (yet): kept as text, and reported.
    Unread(&'static str),
}

/// Tries the payload formats on a syslog message body.
pub(crate) fn parse_body<'a>(msg: &'a str, syslog_ev: &Event, names: &mut Interner) -> Body<'a> {
    let body = msg.trim_matches(|c: char| c == ' ' || c == '\t');
    let json = body
        .strip_prefix("@cee:")
        .map(str::trim_start)
        .unwrap_or(body);
    if json.starts_with('{') {
        return match parse_json_object(json.as_bytes(), syslog_ev.origin.clone(), names) {
            Ok(ev) => Body::Event(ev, "json"),
            Err(_) => Body::Failed("json"),
        };
    }
    // A cheap prefilter, then one regex run: the parser answers "not an access log" itself.
    if memchr::memmem::find(body.as_bytes(), b"] \"").is_some() {
        if let Ok(ev) =
            access::parse_access_log_line(body.as_bytes(), syslog_ev.origin.clone(), names)
        {
            return Body::Event(ev, "access-log");
        }
    }
    // Vendor formats (CEF, LEEF, key=value, appliances) were tried before, by `crate::vendor`
    // from the syslog header parser: a body reaching here is none of those it reads.
    if let Some(e) = errorlog::parse(body) {
        return Body::ErrorLog(e);
    }
    match unread_format(body) {
        Some(f) => Body::Unread(f),
        None => Body::Text,
    }
}

/// A structured format no reader took: CEF, LEEF, or four or more `key=value` pairs (an
/// appliance's own log). Its fields are not read, so the operator is told.
fn unread_format(body: &str) -> Option<&'static str> {
    if body.starts_with("CEF:") || body.contains("|CEF:") {
        return Some("CEF");
    }
    if body.starts_with("LEEF:") {
        return Some("LEEF");
    }
    let pairs = body
        .split_ascii_whitespace()
        .filter(|w| {
            w.split_once('=').is_some_and(|(k, v)| {
                !k.is_empty()
                    && !v.is_empty()
                    && k.len() <= 40
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            })
        })
        .take(4)
        .count();
    (pairs >= 4).then_some("key=value")
}

/// Makes `inner` (a payload's event) carry the syslog header of `outer` and the whole line.
pub(crate) fn adopt(inner: &mut Event, outer: &Event, line: &[u8], names: &mut Interner) {
    inner.raw = line.into();
    // A JSON object of no known shape (an application's own log) keeps the sender's logsource
    // (`linux`, the program), as the plain syslog line had.
    if inner.logsource == mamori_event::LogSource::default() {
        inner.logsource = outer.logsource.clone();
    }
    if inner.timestamp.is_none() {
        inner.timestamp = outer.timestamp;
        inner.timestamp_raw.clone_from(&outer.timestamp_raw);
    }
    let mut add: Vec<(mamori_event::FieldName, Value)> = Vec::new();
    for (n, v) in outer.fields() {
        let name = n.as_str();
        if name.starts_with("log.syslog.") {
            add.push((n.clone(), v.clone()));
        } else if name == "host.name" {
            add.push((names.intern("log.syslog.hostname"), v.clone()));
            if inner.get("host.name").is_none() {
                add.push((n.clone(), v.clone()));
            }
        } else if matches!(name, "process.name" | "process.pid") && inner.get(name).is_none() {
            add.push((n.clone(), v.clone()));
        }
    }
    for (n, v) in add {
        inner.push(n, v);
    }
}
