//! Web server access logs: Apache/nginx common and combined (optionally vhost-prefixed), and
//! IIS W3C extended (columns from the `#Fields:` header).
//!
//! Each event carries ECS names and the Sigma webserver taxonomy (`c-ip`, `cs-method`,
//! `cs-uri-stem`, `cs-uri-query`, `sc-status`, `cs-user-agent`, `c-useragent`, `cs-referer`,
//! `cs-username`, `cs-host`, `c-uri`, `cs-uri`, `c-uri-extension`), logsource category
//! `webserver`. Attack traffic writes garbage into the request line (`"-"`, a TLS ClientHello,
//! unescaped quotes): the request is matched lazily up to `" <status> <bytes>` and a request
//! that is not `METHOD URI [VERSION]` goes to `url.original` whole, so URI rules still see it.
//! A line cut inside its last field (a relay's length limit, `… "Googlebot/1`) keeps the user
//! agent it has: the closing quote is optional at the end of the line.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::io::BufRead;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDateTime, Utc};
use mamori_event::{Event, Format, Interner, Origin, Value};
use regex::bytes::Regex;

use crate::input::{io_message, lossy, Line, LineReader};
use crate::{Ctx, Error, Result};

static COMBINED: LazyLock<Regex> = LazyLock::new(|| {
    // `(?s-u)`: `.` matches any byte, so invalid UTF-8 inside a request does not break the match.
    Regex::new(
        r#"(?s-u)^(?:(?P<vhost>\S+) )?(?P<ip>\S+) (?P<ident>\S+) (?P<user>"[^"]*"|\S+) \[(?P<ts>[^\]]{1,64})\] "(?P<req>.*?)" (?P<status>-|\d{1,3}) (?P<bytes>-|\d+)(?: "(?P<ref>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)(?:"|$))?(?P<rest>.*)$"#,
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// Whether a line has the access-log shape (for detection).
pub(crate) fn looks_like(line: &[u8]) -> bool {
    COMBINED.is_match(unwrap_quotes(line))
}

/// Some exports wrap every line in an extra pair of quotes (`"1.2.3.4 - - […] "GET …" … "ua""`).
fn unwrap_quotes(line: &[u8]) -> &[u8] {
    if let Some(inner) = line.strip_prefix(b"\"").and_then(|l| l.strip_suffix(b"\"")) {
        if COMBINED.is_match(inner) {
            return inner;
        }
    }
    line
}

fn text(b: Option<regex::bytes::Match<'_>>) -> Option<Cow<'_, str>> {
    b.map(|m| lossy(m.as_bytes()))
}

fn dash(s: &str) -> Option<&str> {
    (!s.is_empty() && s != "-").then_some(s)
}

/// Parses one Apache/nginx common or combined log line.
pub fn parse_access_log_line(line: &[u8], origin: Origin, names: &mut Interner) -> Result<Event> {
    let body = unwrap_quotes(line);
    let caps = COMBINED.captures(body).ok_or(Error::NotAccessLog)?;
    let mut ev = Event::new(Format::AccessLog, origin, line.to_vec());
    let mut w = Writer { ev: &mut ev, names };
    if let Some(ts) = text(caps.name("ts")) {
        w.ev.timestamp = parse_clf_time(&ts);
        w.ev.timestamp_raw = Some(ts.as_ref().into());
    }
    if let Some(ip) = text(caps.name("ip")) {
        w.both("source.ip", "c-ip", &ip);
    }
    if let Some(user) = text(caps.name("user")) {
        let user = user.trim_matches('"');
        if let Some(u) = dash(user) {
            w.both("user.name", "cs-username", u);
        }
    }
    if let Some(req) = text(caps.name("req")) {
        request(&mut w, &req);
    }
    if let Some(s) = text(caps.name("status")) {
        if let Ok(code) = s.parse::<i64>() {
            w.int("http.response.status_code", code);
            w.int("sc-status", code);
        }
    }
    if let Some(b) = text(caps.name("bytes")) {
        if let Ok(n) = b.parse::<i64>() {
            w.int("http.response.body.bytes", n);
            w.int("sc-bytes", n);
        }
    }
    if let Some(r) = text(caps.name("ref")) {
        if let Some(r) = dash(&r) {
            w.both("http.request.referrer", "cs-referer", r);
        }
    }
    if let Some(ua) = text(caps.name("ua")) {
        if let Some(ua) = dash(&ua) {
            w.str("user_agent.original", ua);
            w.str("cs-user-agent", ua);
            w.str("c-useragent", ua);
        }
    }
    if let Some(v) = text(caps.name("vhost")) {
        // `vhost:port` as Apache's `%v:%p` writes it.
        let host = v.split(':').next().unwrap_or(&v);
        w.both("host.name", "cs-host", host);
    }
    let category = w.names.intern("webserver");
    ev.logsource.category = Some(category);
    Ok(ev)
}

struct Writer<'e, 'n> {
    ev: &'e mut Event,
    names: &'n mut Interner,
}

impl Writer<'_, '_> {
    fn str(&mut self, n: &str, v: &str) {
        if !v.is_empty() {
            self.ev.push(self.names.intern(n), Value::from(v));
        }
    }
    fn both(&mut self, ecs: &str, sigma: &str, v: &str) {
        self.str(ecs, v);
        self.str(sigma, v);
    }
    fn int(&mut self, n: &str, v: i64) {
        self.ev.push(self.names.intern(n), Value::Int(v));
    }
}

/// `METHOD URI [HTTP/x]`, tolerating garbage.
fn request(w: &mut Writer<'_, '_>, req: &str) {
    let req = req.trim();
    let Some(req) = dash(req) else { return };
    let mut parts = req.split(' ').filter(|p| !p.is_empty());
    let method = parts.next().unwrap_or_default();
    let is_method = !method.is_empty()
        && method.len() <= 16
        && method
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_');
    if !is_method {
        w.uri(req);
        return;
    }
    w.both("http.request.method", "cs-method", method);
    let rest: Vec<&str> = parts.collect();
    let (uri_parts, version) = match rest.split_last() {
        Some((last, init)) if last.starts_with("HTTP/") && !init.is_empty() => (init, Some(*last)),
        _ => (rest.as_slice(), None),
    };
    if !uri_parts.is_empty() {
        let uri = uri_parts.join(" ");
        w.uri(&uri);
    }
    if let Some(v) = version {
        w.str("http.version", v.trim_start_matches("HTTP/"));
        w.str("cs-version", v);
    }
}

impl Writer<'_, '_> {
    fn uri(&mut self, uri: &str) {
        self.str("url.original", uri);
        self.str("c-uri", uri);
        self.str("cs-uri", uri);
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        self.both("url.path", "cs-uri-stem", path);
        if let Some(q) = query {
            self.both("url.query", "cs-uri-query", q);
        }
        if let Some(ext) = extension(path) {
            self.str("url.extension", ext);
            self.str("c-uri-extension", ext);
        }
    }
}

fn extension(path: &str) -> Option<&str> {
    let last = path.rsplit('/').next()?;
    let (_, ext) = last.rsplit_once('.')?;
    (!ext.is_empty() && ext.len() <= 10 && ext.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(ext)
}

/// `10/Oct/2000:13:55:36 -0700` (zone optional).
fn parse_clf_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S %z") {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

/// The columns of an IIS W3C log, from its `#Fields:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IisFields {
    names: Vec<String>,
}

impl Default for IisFields {
    /// IIS's default field set, for lines before any `#Fields:` header.
    fn default() -> IisFields {
        IisFields::parse("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken")
    }
}

impl IisFields {
    /// Parses a `#Fields: a b c` header line.
    pub fn parse(header: &str) -> IisFields {
        let list = header.trim().strip_prefix("#Fields:").unwrap_or(header);
        IisFields {
            names: list.split_whitespace().map(sigma_name).collect(),
        }
    }
}

/// W3C names as the Sigma taxonomy spells them: `cs(User-Agent)` → `cs-user-agent`.
fn sigma_name(w3c: &str) -> String {
    if let Some(inner) = w3c.strip_prefix("cs(").and_then(|r| r.strip_suffix(')')) {
        return format!("cs-{}", inner.to_ascii_lowercase());
    }
    if let Some(inner) = w3c.strip_prefix("sc(").and_then(|r| r.strip_suffix(')')) {
        return format!("sc-{}", inner.to_ascii_lowercase());
    }
    w3c.to_ascii_lowercase()
}

const IIS_INTS: &[&str] = &[
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "sc-bytes",
    "cs-bytes",
    "s-port",
    "c-port",
    "time-taken",
];

/// Parses one IIS W3C data line with the given columns.
pub fn parse_iis_line(
    line: &[u8],
    fields: &IisFields,
    origin: Origin,
    names: &mut Interner,
) -> Result<Event> {
    let text = lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Empty);
    }
    let mut ev = Event::new(Format::Iis, origin, line.to_vec());
    let mut w = Writer { ev: &mut ev, names };
    let (mut date, mut time) = (None, None);
    let (mut stem, mut query) = (None, None);
    for (name, value) in fields.names.iter().zip(text.split(' ')) {
        if value == "-" || value.is_empty() {
            continue;
        }
        match name.as_str() {
            "date" => date = Some(value),
            "time" => time = Some(value),
            "cs-user-agent" => {
                let ua = value.replace('+', " ");
                w.str("cs-user-agent", &ua);
                w.str("c-useragent", &ua);
                w.str("user_agent.original", &ua);
                continue;
            }
            _ => {}
        }
        if IIS_INTS.contains(&name.as_str()) {
            if let Ok(i) = value.parse::<i64>() {
                w.int(name, i);
            } else {
                w.str(name, value);
            }
        } else {
            w.str(name, value);
        }
        match name.as_str() {
            "c-ip" => w.str("source.ip", value),
            "cs-method" => w.str("http.request.method", value),
            "cs-uri-stem" => {
                stem = Some(value);
                w.str("url.path", value);
            }
            "cs-uri-query" => {
                query = Some(value);
                w.str("url.query", value);
            }
            "cs-username" => w.str("user.name", value),
            "cs-referer" => w.str("http.request.referrer", value),
            "s-computername" => w.str("host.name", value),
            "cs-version" => w.str("http.version", value.trim_start_matches("HTTP/")),
            "sc-status" => {
                if let Ok(i) = value.parse() {
                    w.int("http.response.status_code", i);
                }
            }
            "sc-bytes" => {
                if let Ok(i) = value.parse() {
                    w.int("http.response.body.bytes", i);
                }
            }
            _ => {}
        }
    }
    if let Some(stem) = stem {
        let full = match query {
            Some(q) => format!("{stem}?{q}"),
            None => stem.to_owned(),
        };
        w.str("url.original", &full);
        w.str("c-uri", &full);
        w.str("cs-uri", &full);
        if let Some(ext) = extension(stem) {
            w.str("url.extension", ext);
            w.str("c-uri-extension", ext);
        }
    }
    if let (Some(d), Some(t)) = (date, time) {
        let joined = format!("{d} {t}");
        ev.timestamp = NaiveDateTime::parse_from_str(&joined, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc());
        ev.timestamp_raw = Some(joined.into_boxed_str());
    }
    ev.logsource.category = Some(names.intern("webserver"));
    Ok(ev)
}

pub(crate) fn read(ctx: &mut Ctx<'_>, reader: &mut dyn BufRead) {
    let max = ctx.opts.max_record_bytes;
    let mut iis: Option<IisFields> =
        (ctx.report.format == Some(Format::Iis)).then(IisFields::default);
    let mut lines = LineReader::new(reader, max);
    loop {
        match lines.next_line() {
            Ok(None) => break,
            Ok(Some(Line::Text {
                bytes,
                number,
                offset,
            })) => {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if bytes.first() == Some(&b'#') {
                    // W3C directives; `#Fields:` switches to (or updates) IIS columns.
                    let t = lossy(bytes);
                    if t.starts_with("#Fields:") {
                        iis = Some(IisFields::parse(&t));
                    }
                    continue;
                }
                let origin = ctx.origin(Some(number), None, offset);
                let parsed = match &iis {
                    Some(f) => parse_iis_line(bytes, f, origin, &mut ctx.names),
                    None => parse_access_log_line(bytes, origin, &mut ctx.names),
                };
                match parsed {
                    Ok(ev) => {
                        if ev.timestamp.is_none() {
                            ctx.report.count_missing("timestamp");
                        }
                        if ev.get("http.response.status_code").is_none() {
                            ctx.report.count_missing("http status");
                        }
                        ctx.emit(ev);
                    }
                    Err(Error::Empty) => {}
                    Err(e) => {
                        let note = if std::str::from_utf8(bytes).is_err() {
                            " (line is not valid UTF-8)"
                        } else {
                            ""
                        };
                        ctx.error(Some(number), None, Some(offset), format!("{e}{note}"));
                    }
                }
            }
            Ok(Some(Line::TooLong {
                number,
                offset,
                len,
            })) => ctx.error(
                Some(number),
                None,
                Some(offset),
                format!("line too long ({len} bytes, limit {max})"),
            ),
            Err(e) => {
                ctx.error(None, None, Some(lines.offset), io_message(&e));
                break;
            }
        }
    }
    ctx.report.bytes = lines.offset;
}
