//! Linux auditd raw records (`type=SYSCALL msg=audit(1364481363.243:24287): …`).
//!
//! Consecutive records with the same serial (`:24287`) are one event: the reader buffers
//! one group and flushes it when the serial changes or the file ends (auditd writes a
//! group's records together; an interleaved record of another serial just starts a new event).
//! Fields are emitted under their plain names, which SigmaHQ's `linux/auditd` rules use (`type`,
//! `syscall`, `exe`, `comm`, `key`, `a0`, `name`), and qualified by record type
//! (`SYSCALL.exe`, `EXECVE.a0`). EXECVE's plain fields come first, so `a0` looks up the
//! program argument rather than SYSCALL's register value; both are present. Unquoted hex
//! values (EXECVE arguments, `proctitle`, `name`, …) are decoded.

use std::io::BufRead;

use chrono::{DateTime, Utc};
use mamori_event::{Event, Format, Interner, Origin, Value};

use crate::input::{io_message, lossy, Line, LineReader};
use crate::json::epoch_to_utc;
use crate::{Ctx, Error, Result};

/// One audit record (one line).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditdRecord {
    pub node: Option<String>,
    pub record_type: String,
    /// Seconds since the epoch as written (`1364481363.243`).
    pub time_raw: String,
    pub timestamp: Option<DateTime<Utc>>,
    pub serial: u64,
    /// `key=value` pairs in order, values unquoted and hex-decoded.
    pub fields: Vec<(String, String)>,
}

/// Keys whose unquoted values auditd writes hex-encoded when they contain special bytes.
const HEX_KEYS: &[&str] = &[
    "proctitle",
    "name",
    "cwd",
    "exe",
    "comm",
    "path",
    "cmd",
    "data",
    "dir",
    "ocomm",
    "old",
    "new",
    "key",
];

/// Whether a line is an auditd record (for detection).
pub(crate) fn looks_like(line: &[u8]) -> bool {
    let t = lossy(line);
    let t = t
        .strip_prefix("node=")
        .map_or(&*t, |r| r.split_once(' ').map_or("", |x| x.1));
    t.starts_with("type=") && t.contains(" msg=audit(")
}

/// Parses one auditd record line.
pub fn parse_auditd_line(line: &[u8]) -> Result<AuditdRecord> {
    let text = lossy(line);
    let mut t = text.trim();
    let mut node = None;
    if let Some(r) = t.strip_prefix("node=") {
        let (n, rest) = r.split_once(' ').ok_or(Error::NotAuditd)?;
        node = Some(n.to_owned());
        t = rest.trim_start();
    }
    let r = t.strip_prefix("type=").ok_or(Error::NotAuditd)?;
    let (rtype, r) = r.split_once(' ').ok_or(Error::NotAuditd)?;
    let r = r
        .trim_start()
        .strip_prefix("msg=audit(")
        .ok_or(Error::NotAuditd)?;
    let (stamp, r) = r.split_once(')').ok_or(Error::NotAuditd)?;
    let (time_raw, serial) = stamp.split_once(':').ok_or(Error::NotAuditd)?;
    let serial: u64 = serial.parse().map_err(|_| Error::NotAuditd)?;
    let timestamp = time_raw.parse::<f64>().ok().and_then(epoch_to_utc);
    let body = r.strip_prefix(':').unwrap_or(r);
    let mut fields = Vec::new();
    kv_pairs(body, rtype, &mut fields);
    Ok(AuditdRecord {
        node,
        record_type: rtype.to_owned(),
        time_raw: time_raw.to_owned(),
        timestamp,
        serial,
        fields,
    })
}

/// `k=v k="v w" msg='k=v …'` — quoted values keep spaces; `msg='…'` is expanded in place.
fn kv_pairs(s: &str, rtype: &str, out: &mut Vec<(String, String)>) {
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', '\x1d', '\t']);
        if rest.is_empty() {
            break;
        }
        let key_end = rest.find(['=', ' ', '\x1d']).unwrap_or(rest.len());
        let key = rest.get(..key_end).unwrap_or_default();
        let after = rest.get(key_end..).unwrap_or_default();
        let Some(v) = after.strip_prefix('=') else {
            // A bare word: skip it.
            rest = after;
            continue;
        };
        let (value, quoted, next) = if let Some(q) = v.strip_prefix('"') {
            match q.split_once('"') {
                Some((val, n)) => (val, true, n),
                None => (q, true, ""),
            }
        } else if let Some(q) = v.strip_prefix('\'') {
            match q.split_once('\'') {
                Some((val, n)) => (val, true, n),
                None => (q, true, ""),
            }
        } else {
            let end = v.find([' ', '\x1d']).unwrap_or(v.len());
            (
                v.get(..end).unwrap_or_default(),
                false,
                v.get(end..).unwrap_or_default(),
            )
        };
        if key == "msg" && quoted {
            kv_pairs(value, rtype, out);
        } else if !key.is_empty() {
            let decoded = if !quoted && wants_hex(key, rtype) {
                decode_hex(value, key == "proctitle")
            } else {
                None
            };
            out.push((key.to_owned(), decoded.unwrap_or_else(|| value.to_owned())));
        }
        rest = next;
    }
}

fn wants_hex(key: &str, rtype: &str) -> bool {
    HEX_KEYS.contains(&key)
        || (rtype == "EXECVE"
            && key.len() > 1
            && key.starts_with('a')
            && key.bytes().skip(1).all(|b| b.is_ascii_digit()))
}

/// Hex text → string, or `None` if it is not hex (then the value stays as written).
fn decode_hex(v: &str, nul_to_space: bool) -> Option<String> {
    if v.len() < 2 || v.len() % 2 != 0 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = v
        .as_bytes()
        .chunks(2)
        .filter_map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .map(|b| if nul_to_space && b == 0 { b' ' } else { b })
        .collect();
    let s = String::from_utf8_lossy(&bytes);
    Some(s.trim_end_matches('\0').to_owned())
}

/// Builds one event from a group of records with the same serial.
pub fn auditd_event(
    records: &[AuditdRecord],
    raw: Vec<u8>,
    origin: Origin,
    names: &mut Interner,
) -> Event {
    let mut ev = Event::new(Format::Auditd, origin, raw);
    ev.logsource.product = Some(names.intern("linux"));
    ev.logsource.service = Some(names.intern("auditd"));
    let Some(first) = records.first() else {
        return ev;
    };
    ev.timestamp = first.timestamp;
    ev.timestamp_raw = Some(first.time_raw.as_str().into());
    let types: Vec<Value> = records
        .iter()
        .map(|r| Value::from(r.record_type.as_str()))
        .collect();
    ev.push(names.intern("type"), Value::List(types));
    // EXECVE first: its `a0` is the program, SYSCALL's is a register.
    let order = records
        .iter()
        .filter(|r| r.record_type == "EXECVE")
        .chain(records.iter().filter(|r| r.record_type != "EXECVE"));
    let mut qualified = String::new();
    for r in order {
        for (k, v) in &r.fields {
            ev.push(names.intern(k), Value::from(v.as_str()));
            qualified.clear();
            qualified.push_str(&r.record_type);
            qualified.push('.');
            qualified.push_str(k);
            ev.push(names.intern(&qualified), Value::from(v.as_str()));
        }
    }
    let mut args: Vec<(u64, &str)> = records
        .iter()
        .filter(|r| r.record_type == "EXECVE")
        .flat_map(|r| r.fields.iter())
        .filter_map(|(k, v)| {
            let n = k.strip_prefix('a')?.parse::<u64>().ok()?;
            Some((n, v.as_str()))
        })
        .collect();
    args.sort_by_key(|a| a.0);
    let mut add: Vec<(&str, Value)> = Vec::new();
    if !args.is_empty() {
        let cmd: Vec<&str> = args.iter().map(|a| a.1).collect();
        add.push(("process.command_line", Value::from(cmd.join(" "))));
    }
    let get = |k: &str| {
        records
            .iter()
            .flat_map(|r| r.fields.iter())
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(x) = get("exe") {
        add.push(("process.executable", x.into()));
    }
    if let Some(x) = get("comm") {
        add.push(("process.name", x.into()));
    }
    for (k, to) in [("pid", "process.pid"), ("ppid", "process.parent.pid")] {
        if let Some(i) = get(k).and_then(|x| x.parse::<i64>().ok()) {
            add.push((to, Value::Int(i)));
        }
    }
    if let Some(x) = get("uid") {
        add.push(("user.id", x.into()));
    }
    if let Some(x) = get("acct").or_else(|| get("UID")) {
        add.push(("user.name", x.into()));
    }
    if let Some(x) = get("cwd") {
        add.push(("process.working_directory", x.into()));
    }
    add.push((
        "event.sequence",
        Value::Int(i64::try_from(first.serial).unwrap_or(i64::MAX)),
    ));
    if let Some(n) = &first.node {
        add.push(("host.name", n.as_str().into()));
    }
    for (n, v) in add {
        ev.push(names.intern(n), v);
    }
    ev
}

struct Group {
    records: Vec<AuditdRecord>,
    raw: Vec<u8>,
    line: u64,
    offset: u64,
}

fn flush(ctx: &mut Ctx<'_>, g: &mut Option<Group>) {
    if let Some(g) = g.take() {
        let origin = ctx.origin(Some(g.line), None, g.offset);
        let ev = auditd_event(&g.records, g.raw, origin, &mut ctx.names);
        ctx.emit(ev);
    }
}

/// A group is capped so a stream of one serial cannot grow without bound.
const MAX_GROUP_RECORDS: usize = 4096;

pub(crate) fn read(ctx: &mut Ctx<'_>, reader: &mut dyn BufRead) {
    let max = ctx.opts.max_record_bytes;
    let mut group: Option<Group> = None;
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
                match parse_auditd_line(bytes) {
                    Ok(rec) => {
                        let same = group.as_ref().is_some_and(|g| {
                            g.records.first().is_some_and(|f| {
                                f.serial == rec.serial && f.time_raw == rec.time_raw
                            }) && g.records.len() < MAX_GROUP_RECORDS
                                && g.raw.len() + bytes.len() < max
                        });
                        if !same {
                            flush(ctx, &mut group);
                            group = Some(Group {
                                records: Vec::new(),
                                raw: Vec::new(),
                                line: number,
                                offset,
                            });
                        }
                        if let Some(g) = group.as_mut() {
                            if !g.raw.is_empty() {
                                g.raw.push(b'\n');
                            }
                            g.raw.extend_from_slice(bytes);
                            g.records.push(rec);
                        }
                    }
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
    flush(ctx, &mut group);
    ctx.report.bytes = lines.offset;
}
