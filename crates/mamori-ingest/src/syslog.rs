//! Syslog: RFC 5424, RFC 3164 (with or without `<PRI>`, as in `/var/log/auth.log`), rsyslog's
//! RFC 3339-timestamp file format, and generic text lines.
//!
//! Every non-empty line gives an event: a line that is not syslog at all still has its text in
//! `message` (Sigma keyword rules search it) and is reported as not understood
//! ([`LineInfo::generic`]); nginx and Apache error-log lines are parsed by [`errorlog`]. A
//! message body in another format (access log, JSON, error log) is read as that format by
//! [`payload`]. The Linux authentication programs are parsed further in [`auth`] (see the crate
//! doc for the `event.action` vocabulary).

mod auth;
pub(crate) mod errorlog;
pub(crate) mod payload;

#[cfg(test)]
mod tests;

use std::io::BufRead;
use std::time::SystemTime;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use mamori_event::{Event, Format, Interner, Origin, Value};

use crate::input::{io_message, lossy, Line, LineReader};
use crate::json::parse_timestamp;
use crate::{Ctx, Error, Result};

/// Supplies the year RFC 3164 timestamps lack (rule in the crate doc).
#[derive(Debug, Clone)]
pub struct YearHint {
    year: i32,
    /// Month of the reference time (file mtime); the first timestamp after it is last year's.
    ref_month: u32,
    last_month: Option<u32>,
    /// `None`: no file; each timestamp is placed at most a month ahead of now.
    now: Option<DateTime<Utc>>,
}

impl YearHint {
    /// For a file: the year of its modification time.
    pub fn from_mtime(mtime: Option<SystemTime>) -> YearHint {
        let t: DateTime<Utc> = mtime.map(DateTime::from).unwrap_or_else(Utc::now);
        YearHint {
            year: t.year(),
            ref_month: t.month(),
            last_month: None,
            now: None,
        }
    }

    /// For lines arriving now (network): the current year.
    pub fn current() -> YearHint {
        let now = Utc::now();
        YearHint {
            year: now.year(),
            ref_month: now.month(),
            last_month: None,
            now: Some(now),
        }
    }

    fn resolve(
        &mut self,
        month: u32,
        day: u32,
        h: u32,
        m: u32,
        s: u32,
        nanos: u32,
    ) -> Option<DateTime<Utc>> {
        let year = match self.now {
            Some(now) => {
                let t = make(now.year(), month, day, h, m, s, nanos)?;
                if t > now + chrono::Duration::days(31) {
                    now.year() - 1
                } else {
                    now.year()
                }
            }
            None => {
                match self.last_month {
                    None if month > self.ref_month => self.year -= 1,
                    // December → January inside the file.
                    Some(last) if month + 6 < last => self.year += 1,
                    _ => {}
                }
                self.last_month = Some(month);
                self.year
            }
        };
        make(year, month, day, h, m, s, nanos)
    }
}

fn make(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32) -> Option<DateTime<Utc>> {
    NaiveDate::from_ymd_opt(y, mo, d)?
        .and_hms_nano_opt(h, mi, s, nanos)
        .map(|t| t.and_utc())
}

/// Parses one syslog (or generic text) line, taking the year from the current date.
pub fn parse_syslog_line(line: &[u8], origin: Origin, names: &mut Interner) -> Result<Event> {
    parse_syslog_line_with_year(line, origin, names, &mut YearHint::current())
}

/// Parses one syslog (or generic text) line. Fails only on an empty line.
pub fn parse_syslog_line_with_year(
    line: &[u8],
    origin: Origin,
    names: &mut Interner,
    year: &mut YearHint,
) -> Result<Event> {
    parse_syslog_line_info(line, origin, names, year).map(|(ev, _)| ev)
}

/// How much of a line was understood, for read-quality reporting (`hunt` summary, `serve`
/// metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineInfo {
    /// Read only as generic text: no syslog header and no known format.
    pub generic: bool,
    /// No timestamp could be read.
    pub no_timestamp: bool,
    /// The format of a payload found in the message (`access-log`, `json`, `error-log`).
    pub payload: Option<&'static str>,
    /// The message looked like this payload format but did not parse (`json`), or is in a
    /// structured format whose fields are not read (`CEF`, `LEEF`, `key=value`).
    pub payload_failed: Option<&'static str>,
}

/// Parses one syslog (or generic text) line and says how much of it was understood. A message
/// body in another format becomes that format's event (see [`payload`]).
pub fn parse_syslog_line_info(
    line: &[u8],
    origin: Origin,
    names: &mut Interner,
    year: &mut YearHint,
) -> Result<(Event, LineInfo)> {
    let text = lossy(line);
    let text = text.trim_end_matches(['\r', '\n', '\0']);
    if text.trim().is_empty() {
        return Err(Error::Empty);
    }
    let mut ev = Event::new(Format::Syslog, origin, line.to_vec());
    let mut info = LineInfo::default();
    let mut p = Parsed::default();
    let (pri, rest) = split_pri(text);
    p.pri = pri;
    let mut error_line = None;
    if let (Some(_), Some(r)) = (pri, rest.strip_prefix("1 ")) {
        rfc5424(r, &mut p, names, &mut ev);
    } else if let Some((ts, raw, r)) = leading_timestamp(rest, year) {
        p.timestamp = ts;
        p.timestamp_raw = Some(raw);
        header_3164(r, &mut p);
    } else if pri.is_some() {
        // `<PRI>` without a timestamp (some devices): tag and message only.
        header_3164_no_host(rest, &mut p);
    } else if let Some(e) = errorlog::parse(rest) {
        p.timestamp = e.timestamp;
        p.timestamp_raw = e.timestamp_raw;
        p.message = e.message;
        error_line = Some(e);
    } else {
        p.message = rest;
        info.generic = true;
    }
    let message = p.message;
    let vendor = finish(p, &mut ev, names);
    if let Some(e) = error_line {
        errorlog::apply(&e, &mut ev, names);
        if let Some(s) = e.server {
            ev.logsource.service = Some(names.intern(s.service()));
        }
        info.payload = Some("error-log");
    } else if let Some(v) = vendor {
        // An appliance / CEF / LEEF / key=value body, read by `crate::vendor`.
        info.payload = Some(v);
        info.generic = false;
    } else {
        match payload::parse_body(message, &ev, names) {
            payload::Body::Text => {}
            payload::Body::Event(mut inner, kind) => {
                payload::adopt(&mut inner, &ev, line, names);
                ev = inner;
                info.payload = Some(kind);
                info.generic = false;
            }
            payload::Body::ErrorLog(e) => {
                errorlog::apply(&e, &mut ev, names);
                if ev.timestamp.is_none() {
                    ev.timestamp = e.timestamp;
                    ev.timestamp_raw = e.timestamp_raw.map(Into::into);
                }
                if let Some(s) = e.server {
                    ev.logsource.service = Some(names.intern(s.service()));
                }
                info.payload = Some("error-log");
                info.generic = false;
            }
            payload::Body::Failed(kind) => info.payload_failed = Some(kind),
            payload::Body::Unread(kind) => {
                // Only where nothing else understood the message (an auth program's `k=v`
                // details are read by `auth`).
                if !info.generic && ev.get("event.action").is_none() {
                    info.payload_failed = Some(kind);
                }
            }
        }
    }
    info.no_timestamp = ev.timestamp.is_none();
    Ok((ev, info))
}

#[derive(Default)]
struct Parsed<'a> {
    pri: Option<u8>,
    timestamp: Option<DateTime<Utc>>,
    timestamp_raw: Option<&'a str>,
    host: Option<&'a str>,
    tag: Option<&'a str>,
    pid: Option<&'a str>,
    msgid: Option<&'a str>,
    message: &'a str,
}

fn split_pri(s: &str) -> (Option<u8>, &str) {
    let Some(r) = s.strip_prefix('<') else {
        return (None, s);
    };
    let Some((num, rest)) = r.split_once('>') else {
        return (None, s);
    };
    if num.is_empty() || num.len() > 3 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return (None, s);
    }
    match num.parse::<u8>() {
        Ok(p) if p <= 191 => (Some(p), rest),
        _ => (None, s),
    }
}

/// Next whitespace-separated token and the rest after one separator.
fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(' ') {
        Some((t, r)) => (t, r),
        None => (s, ""),
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn month_of(s: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + 1)
}

/// `hh:mm:ss[.frac]` → (h, m, s, nanos).
fn clock(s: &str) -> Option<(u32, u32, u32, u32)> {
    let (hms, frac) = match s.split_once(['.', ',']) {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let mut it = hms.split(':');
    let h = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let sec = it.next()?.parse().ok()?;
    if it.next().is_some() || hms.len() > 8 {
        return None;
    }
    let nanos = match frac {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let v: u32 = f.parse().ok()?;
            v * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
        None => 0,
    };
    Some((h, m, sec, nanos))
}

/// A BSD (`Mmm dd hh:mm:ss`, optionally with a year) or RFC 3339 timestamp at the start.
/// Returns the time, its raw text and the rest of the line.
fn leading_timestamp<'a>(
    s: &'a str,
    year: &mut YearHint,
) -> Option<(Option<DateTime<Utc>>, &'a str, &'a str)> {
    let (t1, r1) = token(s)?;
    let lead = s.len() - s.trim_start_matches(' ').len();
    if let Some(month) = month_of(t1) {
        let (day, r2) = token(r1)?;
        let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
        let (t3, r3) = token(r2)?;
        let (explicit_year, clock_tok, rest) =
            if t3.len() == 4 && t3.bytes().all(|b| b.is_ascii_digit()) {
                let (c, r4) = token(r3)?;
                (t3.parse::<i32>().ok(), c, r4)
            } else {
                (None, t3, r3)
            };
        let (h, m, sec, nanos) = clock(clock_tok)?;
        let ts = match explicit_year {
            Some(y) => make(y, month, day, h, m, sec, nanos),
            None => year.resolve(month, day, h, m, sec, nanos),
        };
        let consumed = s.len() - rest.len();
        let raw = s.get(lead..consumed).unwrap_or_default().trim_end();
        return Some((ts, raw, rest));
    }
    // RFC 3339 / ISO 8601 as rsyslog writes it: `2024-01-02T03:04:05.678+01:00`.
    let b = t1.as_bytes();
    if b.len() >= 19
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b'T') | Some(b' '))
    {
        let ts = parse_timestamp(t1)?;
        return Some((Some(ts), t1, r1));
    }
    // `2024-01-02 03:04:05` (two tokens).
    if b.len() == 10 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-') {
        let (t2, r2) = token(r1)?;
        // `03:04:05.678`, `03:04:05,678`, `03:04:05.801612-0700`, `03:04:05Z`
        clock(
            t2.trim_end_matches(',')
                .split(['+', '-', 'Z'])
                .next()
                .unwrap_or(t2),
        )?;
        let joined = s.get(lead..s.len() - r2.len())?.trim_end();
        let ts = parse_timestamp(joined);
        return Some((ts, joined, r2));
    }
    None
}

/// `host tag[pid]: message` after an RFC 3164 timestamp.
fn header_3164<'a>(s: &'a str, p: &mut Parsed<'a>) {
    let s = s.trim_start_matches(' ');
    match token(s) {
        Some((host, rest)) if !looks_like_tag(host) && !host.contains('=') => {
            p.host = Some(host);
            tag_and_message(rest, p);
        }
        _ => tag_and_message(s, p),
    }
}

fn header_3164_no_host<'a>(s: &'a str, p: &mut Parsed<'a>) {
    tag_and_message(s.trim_start_matches(' '), p);
}

/// `sshd[123]:` or `kernel:` — a token that is a tag, not a host name.
fn looks_like_tag(t: &str) -> bool {
    t.ends_with(':') || (t.contains('[') && t.ends_with("]:"))
}

fn tag_and_message<'a>(s: &'a str, p: &mut Parsed<'a>) {
    let s = s.trim_start_matches(' ');
    let end = s.find([':', '[', ' ']);
    let (tag, after) = match end {
        Some(i) => (
            s.get(..i).unwrap_or_default(),
            s.get(i..).unwrap_or_default(),
        ),
        None => ("", s),
    };
    // `CEF:0|…` / `LEEF:1.0|…` straight after the host is a payload, not a tag.
    if tag.is_empty() || tag.len() > 64 || tag == "CEF" || tag == "LEEF" {
        p.message = s;
        return;
    }
    if let Some(r) = after.strip_prefix('[') {
        if let Some((pid, r2)) = r.split_once(']') {
            if let Some(msg) = r2.strip_prefix(':') {
                p.tag = Some(tag);
                p.pid = Some(pid);
                p.message = msg.strip_prefix(' ').unwrap_or(msg);
                return;
            }
        }
        p.message = s;
        return;
    }
    if let Some(msg) = after.strip_prefix(':') {
        p.tag = Some(tag);
        p.message = msg.strip_prefix(' ').unwrap_or(msg);
        return;
    }
    p.message = s;
}

fn rfc5424<'a>(s: &'a str, p: &mut Parsed<'a>, names: &mut Interner, ev: &mut Event) {
    let dash = |t: &'a str| (t != "-").then_some(t);
    let mut rest = s;
    let mut next = || -> Option<&'a str> {
        let (t, r) = match rest.split_once(' ') {
            Some(x) => x,
            None => (rest, ""),
        };
        rest = r;
        Some(t)
    };
    let ts = next();
    let host = next();
    let app = next();
    let procid = next();
    let msgid = next();
    let rest_after = rest;
    if let Some(ts) = ts.and_then(dash) {
        p.timestamp = parse_timestamp(ts);
        p.timestamp_raw = Some(ts);
    }
    p.host = host.and_then(dash);
    p.tag = app.and_then(dash);
    p.pid = procid.and_then(dash);
    p.msgid = msgid.and_then(dash);
    let msg = if let Some(r) = rest_after.strip_prefix('-') {
        r
    } else if rest_after.starts_with('[') {
        structured_data(rest_after, names, ev)
    } else {
        rest_after
    };
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    p.message = msg.strip_prefix('\u{feff}').unwrap_or(msg);
}

/// Parses `[id k="v" …][…]` into `log.syslog.structured_data.<id>.<k>`; returns the rest.
fn structured_data<'a>(s: &'a str, names: &mut Interner, ev: &mut Event) -> &'a str {
    let mut rest = s;
    let mut name = String::new();
    while let Some(r) = rest.strip_prefix('[') {
        let id_end = r.find([' ', ']']).unwrap_or(r.len());
        let id = r.get(..id_end).unwrap_or_default();
        let mut cur = r.get(id_end..).unwrap_or_default();
        loop {
            cur = cur.trim_start_matches(' ');
            if let Some(after) = cur.strip_prefix(']') {
                cur = after;
                break;
            }
            let Some((param, after_eq)) = cur.split_once("=\"") else {
                // Malformed: keep the remainder as the message.
                return cur;
            };
            let mut value = String::new();
            let mut chars = after_eq.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            if !matches!(n, '"' | '\\' | ']') {
                                value.push('\\');
                            }
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let Some(end) = end else { return "" };
            name.clear();
            name.push_str("log.syslog.structured_data.");
            name.push_str(id);
            name.push('.');
            name.push_str(param.trim());
            ev.push(names.intern(&name), Value::from(value));
            cur = after_eq.get(end..).unwrap_or_default();
        }
        rest = cur;
    }
    rest
}

/// A program's message that arrived outside a syslog line (a journald record): the Linux
/// logsource with the program as service, the authentication programs parsed, and a payload
/// in the message (an access line, JSON, an error-log line) read as in a syslog line.
pub(crate) fn program_message(
    program: &str,
    msg: &str,
    mut ev: Event,
    names: &mut Interner,
) -> Event {
    ev.push(names.intern("message"), Value::from(msg));
    ev.logsource.product = Some(names.intern("linux"));
    if !program.is_empty() {
        let base = program_base(program).to_ascii_lowercase();
        ev.logsource.service = Some(names.intern(&base));
        auth::parse(&base, msg, &mut ev, names);
    }
    with_payload(msg, ev, names)
}

/// A text line inside a JSON envelope (Docker's `log`): `message`, and the line's format when
/// it has one (an nginx container's access line becomes an access-log event).
pub(crate) fn text_payload(line: &str, mut ev: Event, names: &mut Interner) -> Event {
    ev.push(names.intern("message"), Value::from(line));
    with_payload(line, ev, names)
}

fn with_payload(msg: &str, mut ev: Event, names: &mut Interner) -> Event {
    match payload::parse_body(msg, &ev, names) {
        payload::Body::Event(mut inner, _) => {
            let raw = std::mem::take(&mut ev.raw);
            payload::adopt(&mut inner, &ev, &raw, names);
            inner
        }
        payload::Body::ErrorLog(e) => {
            errorlog::apply(&e, &mut ev, names);
            if ev.timestamp.is_none() {
                ev.timestamp = e.timestamp;
                ev.timestamp_raw = e.timestamp_raw.map(Into::into);
            }
            ev
        }
        payload::Body::Text | payload::Body::Failed(_) | payload::Body::Unread(_) => ev,
    }
}

/// Base program name: `sshd(pam_unix)` → `sshd`, `/usr/sbin/cron` → `cron`.
fn program_base(tag: &str) -> &str {
    let t = tag.split('(').next().unwrap_or(tag);
    t.rsplit('/').next().unwrap_or(t)
}

/// Fills the event from the parsed header; returns the vendor format when an appliance, CEF,
/// LEEF or key=value body was read (`crate::vendor`).
fn finish(p: Parsed<'_>, ev: &mut Event, names: &mut Interner) -> Option<&'static str> {
    ev.timestamp = p.timestamp;
    ev.timestamp_raw = p.timestamp_raw.map(Into::into);
    let put = |ev: &mut Event, names: &mut Interner, n: &str, v: Value| {
        ev.push_nonempty(names.intern(n), v)
    };
    if let Some(h) = p.host {
        put(ev, names, "host.name", h.into());
    }
    let mut program = None;
    if let Some(tag) = p.tag {
        let base = program_base(tag);
        put(ev, names, "process.name", base.into());
        put(ev, names, "log.syslog.appname", tag.into());
        program = Some(base.to_ascii_lowercase());
    }
    if let Some(pid) = p.pid {
        let v = pid
            .parse::<i64>()
            .map(Value::Int)
            .unwrap_or_else(|_| pid.into());
        put(ev, names, "process.pid", v);
    }
    // Always present, even empty: keyword rules search it.
    ev.push(names.intern("message"), Value::from(p.message));
    if let Some(pri) = p.pri {
        put(ev, names, "log.syslog.priority", Value::Int(pri.into()));
        put(
            ev,
            names,
            "log.syslog.facility.code",
            Value::Int((pri >> 3).into()),
        );
        put(
            ev,
            names,
            "log.syslog.severity.code",
            Value::Int((pri & 7).into()),
        );
    }
    if let Some(m) = p.msgid {
        put(ev, names, "log.syslog.msgid", m.into());
    }
    ev.logsource.product = Some(names.intern("linux"));
    if let Some(prog) = program {
        ev.logsource.service = Some(names.intern(&prog));
        auth::parse(&prog, p.message, ev, names);
    } else if p.timestamp.is_some()
        && p.tag.is_none()
        && p.message.contains("authentication failure;")
    {
        auth::parse("", p.message, ev, names);
    }
    crate::vendor::parse_syslog_body(p.tag, p.message, ev, names)
}

/// `1.2.3.4:5678` or `[::1]:5678` → (ip, port).
fn split_host_port(s: &str) -> (&str, Option<i64>) {
    if let Some(r) = s.strip_prefix('[') {
        if let Some((ip, port)) = r.split_once("]:") {
            return (ip, port.parse().ok());
        }
    }
    match s.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') => (ip, port.parse().ok()),
        _ => (s, None),
    }
}

/// Whether a line looks like syslog (for detection): `<PRI>` or a leading syslog timestamp.
pub(crate) fn looks_like(line: &[u8]) -> bool {
    let text = lossy(line);
    let (pri, rest) = split_pri(&text);
    if pri.is_some() {
        return true;
    }
    let mut y = YearHint::from_mtime(None);
    leading_timestamp(rest, &mut y).is_some()
}

pub(crate) fn read(ctx: &mut Ctx<'_>, reader: &mut dyn BufRead, mtime: Option<SystemTime>) {
    let max = ctx.opts.max_record_bytes;
    let mut year = YearHint::from_mtime(mtime);
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
                let origin = ctx.origin(Some(number), None, offset);
                match parse_syslog_line_info(bytes, origin, &mut ctx.names, &mut year) {
                    Ok((ev, info)) => {
                        let r = &mut *ctx.report;
                        if info.generic {
                            r.unparsed += 1;
                        } else if info.no_timestamp {
                            r.count_missing("timestamp");
                        }
                        if let Some(k) = info.payload {
                            r.count_embedded(k);
                        }
                        if let Some(k) = info.payload_failed {
                            r.count_missing(match k {
                                "json" => "json payload (did not parse)",
                                "CEF" => "CEF payload (fields not read)",
                                "LEEF" => "LEEF payload (fields not read)",
                                "key=value" => "key=value payload (fields not read)",
                                _ => "payload (did not parse)",
                            });
                        }
                        ctx.emit(ev);
                    }
                    Err(Error::Empty) => {}
                    Err(e) => ctx.error(Some(number), None, Some(offset), e.to_string()),
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
