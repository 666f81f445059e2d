//! JSON: JSON Lines, one pretty-printed object, a top-level array, CloudTrail `{"Records":[…]}`.
//!
//! The first non-empty line decides: if it is a complete JSON value the file is JSON Lines and
//! every line is parsed on its own (a bad line is an error with its line number, the next line
//! is read). Otherwise the file is a document: up to 64 MiB it is parsed whole (CloudTrail
//! delivery files are a few MB), above that it is streamed element by element through a serde
//! visitor so a multi-GB array never sits in memory.
//!
//! Objects are flattened with dots (`userIdentity.accessKeyId`); arrays of scalars become a
//! `List`, arrays of objects repeat the dotted names. Windows events in JSON are recognised in
//! three shapes (evtx_dump `Event.System`, Winlogbeat `winlog.*`, NXLog/flat) and get the same
//! names as EVTX; CloudTrail records get ECS copies and the `aws`/`cloudtrail` logsource.
//! A record or its event data nested as a JSON **string** (`{"message": "{\"EventID\": 1, …}"}`,
//! `"EventData": "{…}"`, `winlog.event_data`) is unpacked first. journald records
//! (`journalctl -o json`) are read like their syslog lines (authentication programs, payloads),
//! and Docker json-file lines (`{"log": …, "stream": …}`) like the text they carry.

use std::io::{BufRead, Cursor, Read};
use std::net::IpAddr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use mamori_event::{Event, Format, Interner, Origin, Value};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

use crate::input::{io_message, Line, LineReader};

mod fast;
use crate::{syslog, windows, Ctx, Error, Result};
pub(crate) use fast::Scratch;

/// Documents up to this size are parsed whole; larger ones are streamed.
const WHOLE_DOCUMENT_LIMIT: u64 = 64 * 1024 * 1024;

/// Parses one JSON object (a JSON Lines line, an HTTP body) into an event. Invalid UTF-8 is
/// replaced, not rejected.
pub fn parse_json_object(text: &[u8], origin: Origin, names: &mut Interner) -> Result<Event> {
    if let Some(ev) = fast::parse(text, &origin, names, &mut Scratch::default()) {
        return Ok(ev);
    }
    let value = parse_bytes(text)?;
    if !value.is_object() {
        return Err(Error::NotAnObject);
    }
    parse_json_value(&value, text.to_vec(), origin, names)
}

fn parse_bytes(text: &[u8]) -> Result<Json> {
    match serde_json::from_slice(text) {
        Ok(v) => Ok(v),
        Err(e) if std::str::from_utf8(text).is_err() => {
            let s = String::from_utf8_lossy(text);
            serde_json::from_str(&s).map_err(|_| Error::Json(e))
        }
        Err(e) => Err(Error::Json(e)),
    }
}

/// Turns a parsed JSON object into an event, recognising Windows and CloudTrail shapes.
pub fn parse_json_value(
    value: &Json,
    raw: Vec<u8>,
    origin: Origin,
    names: &mut Interner,
) -> Result<Event> {
    let Json::Object(obj) = value else {
        return Err(Error::NotAnObject);
    };
    if let Some(unpacked) = unpack_nested(obj) {
        // Parsed again with the strings unpacked; `unpack_nested` leaves no string it would
        // unpack a second time, so this recurses once.
        return parse_json_value(&Json::Object(unpacked), raw, origin, names);
    }
    let mut ev = Event::new(Format::Json, origin, raw);
    if let Some(Json::Object(event)) = obj.get("Event") {
        if event.contains_key("System") {
            windows::flatten_event(event, &mut ev, names);
            windows::add_windows_ecs(&mut ev, names);
            return Ok(ev);
        }
    }
    let mut path = String::new();
    flatten(&mut path, value, &mut ev, names);
    if is_cloudtrail(obj) {
        ev.format = Format::CloudTrail;
        cloudtrail_ecs(obj, &mut ev, names);
    } else if let Some(Json::Object(winlog)) = obj.get("winlog") {
        winlogbeat_copies(winlog, &mut ev, names);
        windows::add_windows_ecs(&mut ev, names);
    } else if is_flat_windows(obj) {
        nxlog_copies(obj, &mut ev, names);
        windows::add_windows_ecs(&mut ev, names);
    } else if is_journald(obj) {
        set_timestamp(obj, &mut ev);
        return Ok(journald(obj, ev, names));
    } else if let Some(line) = docker_line(obj) {
        set_timestamp(obj, &mut ev);
        return Ok(syslog::text_payload(line, ev, names));
    }
    set_timestamp(obj, &mut ev);
    Ok(ev)
}

/// `journalctl -o json` (and journald's export over HTTP): `MESSAGE` with `SYSLOG_IDENTIFIER`,
/// `_HOSTNAME`, `_PID`, `__REALTIME_TIMESTAMP`.
fn is_journald(obj: &Map<String, Json>) -> bool {
    obj.get("MESSAGE").is_some_and(Json::is_string)
        && (obj.contains_key("__REALTIME_TIMESTAMP")
            || obj.contains_key("SYSLOG_IDENTIFIER")
            || obj.contains_key("_SYSTEMD_UNIT"))
}

/// A journald record read like the syslog line it would have been: `host.name`,
/// `process.name`/`pid`, `message`, the Linux logsource with the program as service, the
/// authentication programs parsed, and a payload in `MESSAGE` (nginx access lines) unpacked.
fn journald(obj: &Map<String, Json>, mut ev: Event, names: &mut Interner) -> Event {
    if ev.timestamp.is_none() {
        // Microseconds since the epoch, as text.
        if let Some(us) = str_of(obj, "__REALTIME_TIMESTAMP").and_then(|u| u.parse::<i64>().ok()) {
            ev.timestamp = DateTime::from_timestamp_micros(us);
            ev.timestamp_raw = str_of(obj, "__REALTIME_TIMESTAMP").map(Into::into);
        }
    }
    let program = str_of(obj, "SYSLOG_IDENTIFIER").or_else(|| str_of(obj, "_COMM"));
    let mut put = |ev: &mut Event, n: &str, v: Value| ev.push_nonempty(names.intern(n), v);
    if let Some(h) = str_of(obj, "_HOSTNAME") {
        put(&mut ev, "host.name", h.into());
    }
    if let Some(p) = program {
        put(&mut ev, "process.name", p.into());
        put(&mut ev, "log.syslog.appname", p.into());
    }
    if let Some(pid) = str_of(obj, "_PID")
        .or_else(|| str_of(obj, "SYSLOG_PID"))
        .and_then(|p| p.parse::<i64>().ok())
    {
        put(&mut ev, "process.pid", Value::Int(pid));
    }
    if let Some(sev) = str_of(obj, "PRIORITY").and_then(|p| p.parse::<i64>().ok()) {
        put(&mut ev, "log.syslog.severity.code", Value::Int(sev));
    }
    let msg = str_of(obj, "MESSAGE").unwrap_or_default();
    syslog::program_message(program.unwrap_or_default(), msg, ev, names)
}

/// Docker's json-file driver: `{"log": "line\n", "stream": "stdout", "time": "…"}`.
fn docker_line(obj: &Map<String, Json>) -> Option<&str> {
    let line = str_of(obj, "log")?;
    obj.get("stream")
        .and_then(Json::as_str)
        .filter(|s| matches!(*s, "stdout" | "stderr"))?;
    Some(line.trim_end_matches(['\n', '\r']))
}

/// Keys whose object value holds a Windows event's data fields, which the flat (NXLog) shape
/// keeps at top level.
const EVENT_DATA_KEYS: &[&str] = &["EventData", "event_data", "UserData", "user_data"];

/// A string value that is itself a JSON object (`"{\"EventID\": 1, …}"`), as shippers write
/// Sysmon and Windows event data inside a JSON envelope.
fn nested_object(v: &Json) -> Option<Map<String, Json>> {
    let Json::String(s) = v else { return None };
    let t = s.trim();
    if t.len() < 2 || !t.starts_with('{') || !t.ends_with('}') {
        return None;
    }
    match serde_json::from_str(t) {
        Ok(Json::Object(o)) => Some(o),
        _ => None,
    }
}

fn is_record_shape(o: &Map<String, Json>) -> bool {
    o.get("Event")
        .and_then(Json::as_object)
        .is_some_and(|e| e.contains_key("System"))
        || o.contains_key("winlog")
        || is_flat_windows(o)
        || is_cloudtrail(o)
}

/// Unpacks JSON objects nested as strings: a whole record inside an envelope (`{"message":
/// "{\"EventID\":1,\"Channel\":…}", "host": …}`) becomes the object, with the envelope's other
/// keys kept where the record lacks them; event data (`EventData`, `winlog.event_data`,
/// `Event.EventData`) is unpacked in place; any other object-in-a-string is nested under its
/// key. `None` when there is nothing to unpack.
fn unpack_nested(obj: &Map<String, Json>) -> Option<Map<String, Json>> {
    let mut out: Option<Map<String, Json>> = None;
    for (k, v) in obj {
        if let Some(inner) = nested_object(v) {
            let o = out.get_or_insert_with(|| obj.clone());
            if is_record_shape(&inner) {
                let mut record = inner;
                for (ok, ov) in obj {
                    if ok != k && !record.contains_key(ok) {
                        record.insert(ok.clone(), ov.clone());
                    }
                }
                // The record replaces the envelope; other strings are handled on the next pass.
                return Some(record);
            }
            if EVENT_DATA_KEYS.contains(&k.as_str()) && is_flat_windows(obj) {
                o.remove(k);
                for (ik, iv) in inner {
                    o.entry(ik).or_insert(iv);
                }
            } else {
                o.insert(k.clone(), Json::Object(inner));
            }
        } else if let Json::Object(child) = v {
            // `winlog.event_data` / `Event.EventData` as a string.
            for dk in EVENT_DATA_KEYS {
                if let Some(inner) = child.get(*dk).and_then(nested_object) {
                    let o = out.get_or_insert_with(|| obj.clone());
                    if let Some(Json::Object(c)) = o.get_mut(k) {
                        c.insert((*dk).to_owned(), Json::Object(inner));
                    }
                }
            }
        }
    }
    out
}

/// A JSON scalar or array as a field value. Unlike `Value::from_json`, integers above
/// `i64::MAX` (Windows writes `u64::MAX` as "unlimited") stay exact, as text.
pub(crate) fn json_value(v: &Json) -> Value {
    match v {
        Json::Number(n) if n.as_i64().is_none() => match n.as_u64() {
            Some(u) => Value::from(u.to_string()),
            None => Value::from_json(v),
        },
        Json::Array(items) => Value::List(items.iter().map(json_value).collect()),
        _ => Value::from_json(v),
    }
}

/// Dotted flattening, no allocation per name beyond the shared `path` buffer.
fn flatten(path: &mut String, v: &Json, ev: &mut Event, names: &mut Interner) {
    match v {
        Json::Object(o) => {
            for (k, x) in o {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                flatten(path, x, ev, names);
                path.truncate(len);
            }
        }
        Json::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            for i in items {
                match i {
                    Json::Object(_) | Json::Array(_) => flatten(path, i, ev, names),
                    scalar => ev.push(names.intern(path), json_value(scalar)),
                }
            }
        }
        _ if path.is_empty() => {}
        scalar => ev.push(names.intern(path), json_value(scalar)),
    }
}

fn is_cloudtrail(obj: &Map<String, Json>) -> bool {
    obj.get("eventSource").is_some_and(Json::is_string)
        && obj.get("eventName").is_some_and(Json::is_string)
        && (obj.contains_key("eventVersion")
            || obj.contains_key("awsRegion")
            || obj.contains_key("userIdentity"))
}

fn is_flat_windows(obj: &Map<String, Json>) -> bool {
    obj.contains_key("EventID")
        && [
            "Channel",
            "Provider_Name",
            "SourceName",
            "Hostname",
            "Computer",
            "ProviderGuid",
        ]
        .iter()
        .any(|k| obj.contains_key(*k))
}

fn str_of<'a>(obj: &'a Map<String, Json>, k: &str) -> Option<&'a str> {
    obj.get(k).and_then(Json::as_str)
}

fn cloudtrail_ecs(obj: &Map<String, Json>, ev: &mut Event, names: &mut Interner) {
    ev.logsource.product = Some(names.intern("aws"));
    ev.logsource.service = Some(names.intern("cloudtrail"));
    let mut add: Vec<(&str, Value)> = Vec::new();
    if let Some(n) = str_of(obj, "eventName") {
        add.push(("event.action", n.into()));
    }
    if let Some(s) = str_of(obj, "eventSource") {
        add.push(("event.provider", s.into()));
    }
    let failed = obj.get("errorCode").is_some_and(|v| !v.is_null());
    add.push((
        "event.outcome",
        if failed { "failure" } else { "success" }.into(),
    ));
    if let Some(Json::Object(uid)) = obj.get("userIdentity") {
        let user = str_of(uid, "userName")
            .filter(|u| !u.is_empty())
            .or_else(|| str_of(uid, "arn").and_then(|a| a.rsplit(['/', ':']).next()))
            .filter(|u| !u.is_empty());
        if let Some(u) = user {
            add.push(("user.name", u.into()));
        }
    }
    if let Some(ip) = str_of(obj, "sourceIPAddress").filter(|s| !s.is_empty() && *s != "-") {
        // CloudTrail puts service names (`AWS Internal`, `s3.amazonaws.com`) here as well.
        let field = if ip.parse::<IpAddr>().is_ok() {
            "source.ip"
        } else {
            "source.address"
        };
        add.push((field, ip.into()));
    }
    if let Some(r) = str_of(obj, "awsRegion") {
        add.push(("cloud.region", r.into()));
    }
    if let Some(a) = str_of(obj, "recipientAccountId") {
        add.push(("cloud.account.id", a.into()));
    }
    if let Some(u) = str_of(obj, "userAgent") {
        add.push(("user_agent.original", u.into()));
    }
    for (n, v) in add {
        ev.push(names.intern(n), v);
    }
}

fn winlogbeat_copies(winlog: &Map<String, Json>, ev: &mut Event, names: &mut Interner) {
    for (k, to) in [
        ("event_id", "EventID"),
        ("channel", "Channel"),
        ("computer_name", "Computer"),
        ("provider_name", "Provider_Name"),
        ("provider_guid", "Provider_Guid"),
        ("record_id", "EventRecordID"),
        ("task", "Task"),
        ("opcode", "Opcode"),
    ] {
        if let Some(v) = winlog.get(k) {
            let value = match (to, v) {
                ("EventID" | "EventRecordID", Json::String(s)) => s
                    .trim()
                    .parse::<i64>()
                    .map(Value::Int)
                    .unwrap_or_else(|_| json_value(v)),
                _ => json_value(v),
            };
            ev.push(names.intern(to), value);
        }
    }
    for section in ["event_data", "user_data"] {
        if let Some(Json::Object(data)) = winlog.get(section) {
            for (k, v) in data {
                if !v.is_object() {
                    ev.push(names.intern(k), json_value(v));
                }
            }
        }
    }
}

fn nxlog_copies(obj: &Map<String, Json>, ev: &mut Event, names: &mut Interner) {
    if !obj.contains_key("Provider_Name") {
        if let Some(s) = obj.get("SourceName").or_else(|| obj.get("Source")) {
            ev.push(names.intern("Provider_Name"), json_value(s));
        }
    }
    if !obj.contains_key("Computer") {
        if let Some(h) = obj.get("Hostname") {
            ev.push(names.intern("Computer"), json_value(h));
        }
    }
    // Some exporters write the EventID as text; rules compare numbers.
    if let Some(Json::String(s)) = obj.get("EventID") {
        if let Ok(i) = s.trim().parse::<i64>() {
            if let Some(slot) = ev
                .fields_mut()
                .iter_mut()
                .find(|(n, _)| n.as_str() == "EventID")
            {
                slot.1 = Value::Int(i);
            }
        }
    }
}

const TIMESTAMP_KEYS: &[&str] = &[
    "@timestamp",
    "TimeCreated",
    "EventTime",
    "eventTime",
    "timestamp",
    "time",
];

fn set_timestamp(obj: &Map<String, Json>, ev: &mut Event) {
    for k in TIMESTAMP_KEYS {
        let Some(v) = obj.get(*k) else { continue };
        let (parsed, raw) = match v {
            Json::String(s) => (parse_timestamp(s), s.clone()),
            Json::Number(n) => (n.as_f64().and_then(epoch_to_utc), n.to_string()),
            Json::Object(o) => match o.get("SystemTime").or_else(|| o.get("#text")) {
                Some(Json::String(s)) => (parse_timestamp(s), s.clone()),
                _ => continue,
            },
            _ => continue,
        };
        if parsed.is_some() {
            ev.timestamp = parsed;
            ev.timestamp_raw = Some(raw.into_boxed_str());
            return;
        }
    }
}

/// Seconds or milliseconds since the epoch, told apart by magnitude.
pub(crate) fn epoch_to_utc(x: f64) -> Option<DateTime<Utc>> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let secs = if x > 1e11 { x / 1000.0 } else { x };
    if secs > 1e11 {
        return None;
    }
    let whole = secs.trunc() as i64;
    let nanos = ((secs - secs.trunc()) * 1e9) as u32;
    Utc.timestamp_opt(whole, nanos.min(999_999_999)).single()
}

/// RFC 3339 and the common variants: space instead of `T`, no zone (taken as UTC), seven
/// fractional digits (Windows), `+0000` offsets, epoch numbers as text.
pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y/%m/%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, f) {
            return Some(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(naive, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.parse::<f64>().ok().and_then(epoch_to_utc);
    }
    None
}

pub(crate) fn read(ctx: &mut Ctx<'_>, reader: &mut dyn BufRead) {
    let max = ctx.opts.max_record_bytes;
    // An array or a `{"Records": …}` object is a document even when it is all on one line
    // (CloudTrail writes its files that way), so it is not subject to the line length limit.
    match reader.fill_buf() {
        Ok(head) if starts_document(head) => {
            read_document(ctx, Vec::new(), reader);
            return;
        }
        Ok(_) => {}
        Err(e) => {
            ctx.error(None, None, Some(0), io_message(&e));
            return;
        }
    }
    // Otherwise the first non-empty line decides between JSON Lines and a document.
    let mut prefix: Vec<u8> = Vec::new();
    let mut first: Option<(Vec<u8>, u64, u64)> = None;
    let (offset, number) = {
        let mut lines = LineReader::new(reader, max);
        loop {
            match lines.next_line() {
                Ok(None) => break,
                Ok(Some(Line::Text {
                    bytes,
                    number,
                    offset,
                })) => {
                    let t = trim(bytes);
                    if t.is_empty() {
                        prefix.extend_from_slice(bytes);
                        prefix.push(b'\n');
                        continue;
                    }
                    first = Some((bytes.to_vec(), number, offset));
                    break;
                }
                Ok(Some(Line::TooLong {
                    number,
                    offset,
                    len,
                })) => {
                    // A document on one huge line, or a huge JSON line: either way unreadable
                    // within the limit.
                    ctx.error(
                        Some(number),
                        None,
                        Some(offset),
                        format!("line too long ({len} bytes, limit {max})"),
                    );
                }
                Err(e) => {
                    ctx.report.bytes = lines.offset;
                    ctx.error(None, None, Some(lines.offset), io_message(&e));
                    return;
                }
            }
        }
        (lines.offset, lines_number(&first))
    };
    let Some((line, line_no, line_offset)) = first else {
        ctx.report.bytes = offset;
        return;
    };
    let t = trim(&line);
    let jsonl = match serde_json::from_slice::<de::IgnoredAny>(t) {
        Ok(_) => true,
        // An incomplete value: the start of a multi-line document.
        Err(e) if e.is_eof() => false,
        // Invalid UTF-8 in a string is fine for a line (read lossily).
        Err(_) => std::str::from_utf8(t).is_err() || !t.starts_with(b"["),
    };
    if jsonl {
        json_line(ctx, &line, line_no, line_offset);
        let mut lines = LineReader::new(reader, max).with_position(offset, number);
        loop {
            match lines.next_line() {
                Ok(None) => break,
                Ok(Some(Line::Text {
                    bytes,
                    number,
                    offset,
                })) => {
                    json_line(ctx, bytes, number, offset);
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
        return;
    }
    prefix.extend_from_slice(&line);
    prefix.push(b'\n');
    read_document(ctx, prefix, reader);
}

fn starts_document(head: &[u8]) -> bool {
    let t = trim(head);
    if t.starts_with(b"[") {
        return crate::detect::json_start(t);
    }
    match t.strip_prefix(b"{") {
        Some(rest) => trim(rest).starts_with(b"\"Records\""),
        None => false,
    }
}

fn lines_number(first: &Option<(Vec<u8>, u64, u64)>) -> u64 {
    first.as_ref().map(|f| f.1).unwrap_or(0)
}

fn trim(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

fn json_line(ctx: &mut Ctx<'_>, bytes: &[u8], number: u64, offset: u64) {
    let t = trim(bytes);
    if t.is_empty() {
        return;
    }
    let origin = ctx.origin(Some(number), None, offset);
    if let Some(ev) = fast::parse(t, &origin, &mut ctx.names, &mut ctx.json) {
        ctx.emit(ev);
        return;
    }
    let value = match parse_bytes(t) {
        Ok(v) => v,
        Err(e) => {
            let note = if std::str::from_utf8(t).is_err() {
                " (line is not valid UTF-8)"
            } else {
                ""
            };
            ctx.error(Some(number), None, Some(offset), format!("{e}{note}"));
            return;
        }
    };
    match &value {
        Json::Object(o) if matches!(o.get("Records"), Some(Json::Array(_))) => {
            if let Some(Json::Array(items)) = o.get("Records") {
                for (i, item) in items.iter().enumerate() {
                    element(ctx, item, Some(number), i as u64 + 1, offset);
                }
            }
        }
        Json::Object(_) => match parse_json_value(&value, t.to_vec(), origin, &mut ctx.names) {
            Ok(ev) => ctx.emit(ev),
            Err(e) => ctx.error(Some(number), None, Some(offset), e.to_string()),
        },
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                element(ctx, item, Some(number), i as u64 + 1, offset);
            }
        }
        _ => ctx.error(
            Some(number),
            None,
            Some(offset),
            "JSON value is not an object",
        ),
    }
}

/// One array element / CloudTrail record.
fn element(ctx: &mut Ctx<'_>, item: &Json, line: Option<u64>, record: u64, offset: u64) {
    if !item.is_object() {
        ctx.error(
            line,
            Some(record),
            Some(offset),
            "array element is not an object",
        );
        return;
    }
    let raw = serde_json::to_vec(item).unwrap_or_default();
    let origin = ctx.origin(line, Some(record), offset);
    match parse_json_value(item, raw, origin, &mut ctx.names) {
        Ok(ev) => ctx.emit(ev),
        Err(e) => ctx.error(line, Some(record), Some(offset), e.to_string()),
    }
}

fn read_document(ctx: &mut Ctx<'_>, prefix: Vec<u8>, reader: &mut dyn BufRead) {
    let mut buf = prefix;
    let room = WHOLE_DOCUMENT_LIMIT.saturating_sub(buf.len() as u64);
    if let Err(e) = reader.take(room + 1).read_to_end(&mut buf) {
        // Parse what arrived; the I/O error is reported after it.
        ctx.error(None, None, Some(buf.len() as u64), io_message(&e));
    }
    if (buf.len() as u64) <= WHOLE_DOCUMENT_LIMIT {
        ctx.report.bytes = buf.len() as u64;
        whole_document(ctx, &buf);
        return;
    }
    let mut sink = DocSink {
        ctx,
        records: 0,
        error: None,
    };
    let chained = Cursor::new(buf).chain(reader);
    let mut counted = Counted {
        inner: chained,
        n: 0,
    };
    let result = {
        let mut de = serde_json::Deserializer::from_reader(&mut counted);
        (&mut sink).deserialize(&mut de)
    };
    let bytes = counted.n;
    let records = sink.records;
    if let Err(e) = result {
        ctx.error(
            Some(e.line() as u64),
            Some(records + 1),
            Some(bytes),
            format!("{e} (document streaming stopped)"),
        );
    }
    ctx.report.bytes = bytes;
}

fn whole_document(ctx: &mut Ctx<'_>, buf: &[u8]) {
    let mut stream = serde_json::Deserializer::from_slice(buf).into_iter::<Json>();
    let mut record = 0u64;
    loop {
        let start = stream.byte_offset();
        let value = match stream.next() {
            None => break,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                // A broken document cannot be resynchronised; report where it broke.
                let note = if std::str::from_utf8(buf).is_err() {
                    " (file is not valid UTF-8)"
                } else {
                    ""
                };
                ctx.error(
                    Some(e.line() as u64),
                    None,
                    Some(stream.byte_offset() as u64),
                    format!("{e}{note}"),
                );
                break;
            }
        };
        let start_u = start as u64;
        match &value {
            Json::Object(o) => match o.get("Records") {
                Some(Json::Array(items)) => {
                    for item in items {
                        record += 1;
                        element(ctx, item, None, record, start_u);
                    }
                }
                _ => {
                    record += 1;
                    let raw = buf
                        .get(start..stream.byte_offset())
                        .map(|r| trim(r).to_vec())
                        .unwrap_or_default();
                    let origin = ctx.origin(None, Some(record), start_u);
                    match parse_json_value(&value, raw, origin, &mut ctx.names) {
                        Ok(ev) => ctx.emit(ev),
                        Err(e) => ctx.error(None, Some(record), Some(start_u), e.to_string()),
                    }
                }
            },
            Json::Array(items) => {
                for item in items {
                    record += 1;
                    element(ctx, item, None, record, start_u);
                }
            }
            _ => ctx.error(None, None, Some(start_u), "JSON value is not an object"),
        }
    }
}

/// Counts bytes taken from a reader (for offsets while streaming a large document).
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// Streams a large document: top-level array elements, or the `Records` of a CloudTrail
/// object, each handed over as soon as it is parsed.
struct DocSink<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    records: u64,
    error: Option<String>,
}

impl DocSink<'_, '_> {
    fn element(&mut self, v: &Json) {
        self.records += 1;
        element(self.ctx, v, None, self.records, 0);
    }
}

impl<'de> DeserializeSeed<'de> for &mut DocSink<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut DocSink<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object or an array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Json>()? {
            self.element(&v);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut rest = Map::new();
        let mut had_records = false;
        while let Some(k) = map.next_key::<String>()? {
            if k == "Records" {
                had_records = true;
                map.next_value_seed(RecordsSeed(&mut *self))?;
            } else {
                let v = map.next_value::<Json>()?;
                rest.insert(k, v);
            }
        }
        if !had_records {
            self.element(&Json::Object(rest));
        }
        if let Some(e) = self.error.take() {
            return Err(de::Error::custom(e));
        }
        Ok(())
    }
}

struct RecordsSeed<'s, 'a, 'c>(&'s mut DocSink<'a, 'c>);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Json>()? {
            self.0.element(&v);
        }
        Ok(())
    }
}
