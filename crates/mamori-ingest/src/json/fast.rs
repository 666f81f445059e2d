//! The fast path for one JSON object: parsed into a tree whose strings are spans of one
//! buffer — the line itself, with the strings that held escapes appended unescaped — and
//! flattened straight into the event, whose string values are slices of that one buffer
//! ([`Text`]): one allocation for all of an event's strings, none per field. The buffer, the
//! tree's vectors and the path are scratch reused from line to line ([`Scratch`]).
//!
//! It serves the plain shapes, flat Windows records (NXLog / `windows-flat.jsonl`) and generic
//! JSON, and gives up — `None`, the caller takes the general path over `serde_json::Value` —
//! on everything the general path treats specially: a record or event data nested as a JSON
//! string, `Event.System`, Winlogbeat, CloudTrail, journald, Docker lines, and repeated keys.
//! Both paths give the same event (tested over every shape in `json::tests`).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use mamori_event::{Event, Format, Interner, Origin, Text, Value};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{parse_timestamp, windows, EVENT_DATA_KEYS, TIMESTAMP_KEYS};

/// A string of the record: a range of the scratch buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start..self.start + self.len
    }

    fn of(self, buf: &str) -> &str {
        buf.get(self.range()).unwrap_or_default()
    }
}

/// A JSON value whose strings are [`Span`]s.
#[derive(Debug)]
enum Lazy {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Span),
    Arr(Vec<Lazy>),
    Obj(Vec<(Span, Lazy)>),
}

/// What the fast path reuses between lines (one per reader).
#[derive(Default)]
pub(crate) struct Scratch {
    pools: Pools,
    path: String,
}

#[derive(Default)]
struct Pools {
    /// The line, then the unescaped strings.
    buf: String,
    objs: Vec<Vec<(Span, Lazy)>>,
    arrs: Vec<Vec<Lazy>>,
}

/// Most vectors of each kind kept for reuse, and the largest kept.
const POOL: usize = 64;
const POOL_CAPACITY: usize = 1024;
/// A buffer grown past this by a huge line is not kept.
const BUF_KEPT: usize = 1 << 20;

impl Pools {
    fn recycle(&mut self, v: Lazy) {
        match v {
            Lazy::Obj(mut o) => {
                for (_, x) in o.drain(..) {
                    self.recycle(x);
                }
                if self.objs.len() < POOL && o.capacity() <= POOL_CAPACITY {
                    self.objs.push(o);
                }
            }
            Lazy::Arr(mut a) => {
                for x in a.drain(..) {
                    self.recycle(x);
                }
                if self.arrs.len() < POOL && a.capacity() <= POOL_CAPACITY {
                    self.arrs.push(a);
                }
            }
            _ => {}
        }
    }
}

/// Deserialises one value of the line at `base..base + len` into a [`Lazy`]: a borrowed
/// string is a span of the line (which starts the buffer), an escaped one is appended.
struct Seed<'p> {
    base: usize,
    len: usize,
    p: &'p mut Pools,
}

impl Seed<'_> {
    fn child(&mut self) -> Seed<'_> {
        Seed {
            base: self.base,
            len: self.len,
            p: &mut *self.p,
        }
    }

    fn borrowed(&mut self, s: &str) -> Span {
        let off = (s.as_ptr() as usize).wrapping_sub(self.base);
        if off <= self.len && s.len() <= self.len - off {
            Span {
                start: off,
                len: s.len(),
            }
        } else {
            self.owned(s)
        }
    }

    fn owned(&mut self, s: &str) -> Span {
        let start = self.p.buf.len();
        self.p.buf.push_str(s);
        Span {
            start,
            len: s.len(),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Lazy;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Lazy, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Lazy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Lazy, E> {
        Ok(Lazy::Null)
    }
    fn visit_none<E>(self) -> Result<Lazy, E> {
        Ok(Lazy::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Lazy, E> {
        Ok(Lazy::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Lazy, E> {
        Ok(Lazy::I64(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Lazy, E> {
        Ok(match i64::try_from(u) {
            Ok(i) => Lazy::I64(i),
            Err(_) => Lazy::U64(u),
        })
    }
    fn visit_f64<E>(self, f: f64) -> Result<Lazy, E> {
        Ok(Lazy::F64(f))
    }
    fn visit_borrowed_str<E>(mut self, s: &'de str) -> Result<Lazy, E> {
        Ok(Lazy::Str(self.borrowed(s)))
    }
    fn visit_str<E>(mut self, s: &str) -> Result<Lazy, E> {
        Ok(Lazy::Str(self.owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Lazy, A::Error> {
        let mut v = self.p.arrs.pop().unwrap_or_default();
        while let Some(x) = seq.next_element_seed(self.child())? {
            v.push(x);
        }
        Ok(Lazy::Arr(v))
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Lazy, A::Error> {
        let mut v = self.p.objs.pop().unwrap_or_else(|| Vec::with_capacity(32));
        while let Some(k) = map.next_key_seed(KeySeed(self.child()))? {
            v.push((k, map.next_value_seed(self.child())?));
        }
        Ok(Lazy::Obj(v))
    }
}

/// An object key, as a span like any string.
struct KeySeed<'p>(Seed<'p>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Span;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Span, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Span;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(mut self, s: &'de str) -> Result<Span, E> {
        Ok(self.0.borrowed(s))
    }
    fn visit_str<E: de::Error>(mut self, s: &str) -> Result<Span, E> {
        Ok(self.0.owned(s))
    }
}

type Obj = [(Span, Lazy)];

/// The keys the shape checks below read, found in one pass over the object instead of one
/// linear search each (an object has 10–90 keys; there are some 25 lookups per record).
const KNOWN: [&str; 25] = [
    "EventID",
    "Channel",
    "Provider_Name",
    "SourceName",
    "Source",
    "Hostname",
    "Computer",
    "ProviderGuid",
    "eventSource",
    "eventName",
    "eventVersion",
    "awsRegion",
    "userIdentity",
    "MESSAGE",
    "__REALTIME_TIMESTAMP",
    "SYSLOG_IDENTIFIER",
    "_SYSTEMD_UNIT",
    "log",
    "stream",
    "@timestamp",
    "TimeCreated",
    "EventTime",
    "eventTime",
    "timestamp",
    "time",
];

/// The index of `k` in [`KNOWN`]: its first byte narrows it to a few candidates.
fn known(k: &str) -> Option<usize> {
    let cands: &[usize] = match k.as_bytes().first()? {
        b'E' => &[0, 21],
        b'C' => &[1, 6],
        b'P' => &[2, 7],
        b'S' => &[3, 4, 15],
        b'H' => &[5],
        b'e' => &[8, 9, 10, 22],
        b'a' => &[11],
        b'u' => &[12],
        b'M' => &[13],
        b'_' => &[14, 16],
        b'l' => &[17],
        b's' => &[18],
        b'@' => &[19],
        b'T' => &[20],
        b't' => &[23, 24],
        _ => &[],
    };
    cands.iter().copied().find(|&i| KNOWN[i] == k)
}

/// Positions of the [`KNOWN`] keys in one object (the first occurrence of each).
struct Index<'o> {
    obj: &'o Obj,
    buf: &'o str,
    at: [u32; KNOWN.len()],
}

const ABSENT: u32 = u32::MAX;

impl<'o> Index<'o> {
    fn new(obj: &'o Obj, buf: &'o str) -> Index<'o> {
        let mut at = [ABSENT; KNOWN.len()];
        for (i, (k, _)) in obj.iter().enumerate() {
            if let Some(w) = known(k.of(buf)) {
                if at[w] == ABSENT {
                    at[w] = u32::try_from(i).unwrap_or(ABSENT);
                }
            }
        }
        Index { obj, buf, at }
    }

    fn get(&self, k: &str) -> Option<&'o Lazy> {
        match known(k) {
            Some(w) => match self.at[w] {
                ABSENT => None,
                i => self.obj.get(i as usize).map(|(_, v)| v),
            },
            None => get(self.obj, self.buf, k),
        }
    }

    fn str_of(&self, k: &str) -> Option<&'o str> {
        match self.get(k) {
            Some(Lazy::Str(s)) => Some(s.of(self.buf)),
            _ => None,
        }
    }
}

fn get<'o>(obj: &'o Obj, buf: &str, k: &str) -> Option<&'o Lazy> {
    obj.iter().find(|(n, _)| n.of(buf) == k).map(|(_, v)| v)
}

/// A string the general path would unpack as a nested JSON object (`nested_object`). A GUID
/// in braces fails at its second byte.
fn looks_nested(v: &Lazy, buf: &str) -> bool {
    match v {
        Lazy::Str(s) => {
            let s = s.of(buf);
            // Most strings start with a byte that is neither `{` nor whitespace: no trimming.
            if let Some(&c) = s.as_bytes().first() {
                if c != b'{' && c.is_ascii() && !c.is_ascii_whitespace() && c != 0x0b {
                    return false;
                }
            }
            let t = s.trim();
            t.len() >= 2
                && t.starts_with('{')
                && t.ends_with('}')
                && serde_json::from_str::<de::IgnoredAny>(t).is_ok()
        }
        _ => false,
    }
}

/// True when the general path would do anything but flatten (and the flat Windows copies).
fn special(ix: &Index<'_>) -> bool {
    let (obj, buf) = (ix.obj, ix.buf);
    // Key signatures seen so far (length and two bytes in a 64-bit filter): a key is compared
    // with the earlier ones only when its bit was already set.
    let mut seen = 0u64;
    for (i, (k, v)) in obj.iter().enumerate() {
        let k = k.of(buf);
        if looks_nested(v, buf) {
            return true;
        }
        if let Lazy::Obj(child) = v {
            if child
                .iter()
                .any(|(ck, cv)| EVENT_DATA_KEYS.contains(&ck.of(buf)) && looks_nested(cv, buf))
            {
                return true;
            }
            if k == "Event" || k == "winlog" {
                return true;
            }
        }
        // A CloudTrail delivery object on one line: its records are the events.
        if k == "Records" && matches!(v, Lazy::Arr(_)) {
            return true;
        }
        // A repeated key: serde_json's map keeps the last value, the event the first.
        let b = k.as_bytes();
        let bit = 1u64
            << ((b.len() as u64 * 7
                + u64::from(*b.first().unwrap_or(&0)) * 3
                + u64::from(*b.last().unwrap_or(&0)))
                % 64);
        if seen & bit != 0 && obj[..i].iter().any(|(p, _)| p.of(buf) == k) {
            return true;
        }
        seen |= bit;
    }
    let is_str = |k: &str| matches!(ix.get(k), Some(Lazy::Str(_)));
    let cloudtrail = is_str("eventSource")
        && is_str("eventName")
        && ["eventVersion", "awsRegion", "userIdentity"]
            .iter()
            .any(|k| ix.get(k).is_some());
    let journald = is_str("MESSAGE")
        && ["__REALTIME_TIMESTAMP", "SYSLOG_IDENTIFIER", "_SYSTEMD_UNIT"]
            .iter()
            .any(|k| ix.get(k).is_some());
    let docker = is_str("log") && matches!(ix.str_of("stream"), Some("stdout" | "stderr"));
    cloudtrail || journald || docker
}

/// A field value; strings are slices of the event's buffer `buf`.
fn value(v: &Lazy, buf: &Arc<str>) -> Value {
    match v {
        Lazy::Null => Value::Null,
        Lazy::Bool(b) => Value::Bool(*b),
        Lazy::I64(i) => Value::Int(*i),
        Lazy::U64(u) => Value::from(u.to_string()),
        Lazy::F64(f) => Value::Float(*f),
        Lazy::Str(s) => Value::Str(Text::slice(buf, s.range())),
        Lazy::Arr(items) => Value::List(items.iter().map(|i| value(i, buf)).collect()),
        // Not reached from `flatten` (objects are flattened); as the general path renders it.
        Lazy::Obj(_) => Value::from(to_json(v, buf).to_string()),
    }
}

fn to_json(v: &Lazy, buf: &str) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Lazy::Null => J::Null,
        Lazy::Bool(b) => J::Bool(*b),
        Lazy::I64(i) => J::from(*i),
        Lazy::U64(u) => J::from(*u),
        Lazy::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Lazy::Str(s) => J::String(s.of(buf).to_owned()),
        Lazy::Arr(a) => J::Array(a.iter().map(|x| to_json(x, buf)).collect()),
        Lazy::Obj(o) => J::Object(
            o.iter()
                .map(|(k, v)| (k.of(buf).to_owned(), to_json(v, buf)))
                .collect(),
        ),
    }
}

/// What flattening writes with.
struct Flat<'a> {
    buf: &'a Arc<str>,
    names: &'a mut Interner,
    path: &'a mut String,
}

impl Flat<'_> {
    /// `json::flatten` over the span tree. Names are interned in record order
    /// ([`Interner::intern_seq`]): lines of one file repeat their keys in the same order.
    fn flatten(&mut self, v: &Lazy, ev: &mut Event) {
        match v {
            Lazy::Obj(o) => {
                for (k, x) in o {
                    let k = k.of(self.buf);
                    // A top-level scalar is named by its key: no path to build.
                    if self.path.is_empty()
                        && !k.is_empty()
                        && !matches!(x, Lazy::Obj(_) | Lazy::Arr(_))
                    {
                        ev.push(self.names.intern_seq(k), value(x, self.buf));
                        continue;
                    }
                    let len = self.path.len();
                    if !self.path.is_empty() {
                        self.path.push('.');
                    }
                    self.path.push_str(k);
                    self.flatten(x, ev);
                    self.path.truncate(len);
                }
            }
            Lazy::Arr(items)
                if items
                    .iter()
                    .any(|i| matches!(i, Lazy::Obj(_) | Lazy::Arr(_))) =>
            {
                for i in items {
                    match i {
                        Lazy::Obj(_) | Lazy::Arr(_) => self.flatten(i, ev),
                        scalar => {
                            ev.push(self.names.intern_seq(&*self.path), value(scalar, self.buf))
                        }
                    }
                }
            }
            _ if self.path.is_empty() => {}
            scalar => ev.push(self.names.intern_seq(&*self.path), value(scalar, self.buf)),
        }
    }
}

/// `json::is_flat_windows`.
fn is_flat_windows(ix: &Index<'_>) -> bool {
    ix.get("EventID").is_some()
        && [
            "Channel",
            "Provider_Name",
            "SourceName",
            "Hostname",
            "Computer",
            "ProviderGuid",
        ]
        .iter()
        .any(|k| ix.get(k).is_some())
}

/// `json::nxlog_copies`.
fn nxlog_copies(ix: &Index<'_>, buf: &Arc<str>, ev: &mut Event, names: &mut Interner) {
    if ix.get("Provider_Name").is_none() {
        if let Some(s) = ix.get("SourceName").or_else(|| ix.get("Source")) {
            ev.push(names.intern("Provider_Name"), value(s, buf));
        }
    }
    if ix.get("Computer").is_none() {
        if let Some(h) = ix.get("Hostname") {
            ev.push(names.intern("Computer"), value(h, buf));
        }
    }
    if let Some(s) = ix.str_of("EventID") {
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

/// `json::set_timestamp`.
fn set_timestamp(ix: &Index<'_>, ev: &mut Event) {
    let buf = ix.buf;
    for k in TIMESTAMP_KEYS {
        let Some(v) = ix.get(k) else { continue };
        let (parsed, raw) = match v {
            Lazy::Str(s) => (parse_timestamp(s.of(buf)), s.of(buf).into()),
            Lazy::I64(_) | Lazy::U64(_) | Lazy::F64(_) => {
                let serde_json::Value::Number(n) = to_json(v, buf) else {
                    continue;
                };
                (
                    n.as_f64().and_then(super::epoch_to_utc),
                    n.to_string().into(),
                )
            }
            Lazy::Obj(o) => match get(o, buf, "SystemTime").or_else(|| get(o, buf, "#text")) {
                Some(Lazy::Str(s)) => (parse_timestamp(s.of(buf)), s.of(buf).into()),
                _ => continue,
            },
            _ => continue,
        };
        if parsed.is_some() {
            ev.timestamp = parsed;
            ev.timestamp_raw = Some(raw);
            return;
        }
    }
}

/// Parses `text` (one JSON object) into an event if it has a plain shape; `None` sends it to
/// the general path (which also reports any syntax error).
pub(super) fn parse(
    text: &[u8],
    origin: &Origin,
    names: &mut Interner,
    scratch: &mut Scratch,
) -> Option<Event> {
    // Validated once here, the strings need no check each (`from_str`); a line that is not
    // UTF-8 takes the general path, which reads it lossily.
    let text_str = std::str::from_utf8(text).ok()?;
    let pools = &mut scratch.pools;
    if pools.buf.capacity() > BUF_KEPT {
        pools.buf = String::new();
    }
    pools.buf.clear();
    pools.buf.push_str(text_str);
    let mut de = serde_json::Deserializer::from_str(text_str);
    let seed = Seed {
        base: text_str.as_ptr() as usize,
        len: text_str.len(),
        p: &mut *pools,
    };
    let tree = seed.deserialize(&mut de).ok()?;
    if de.end().is_err() {
        pools.recycle(tree);
        return None;
    }
    let ev = match &tree {
        Lazy::Obj(obj) => event(obj, &tree, text, origin, names, pools, &mut scratch.path),
        _ => None,
    };
    pools.recycle(tree);
    ev
}

fn event(
    obj: &Obj,
    tree: &Lazy,
    text: &[u8],
    origin: &Origin,
    names: &mut Interner,
    pools: &Pools,
    path: &mut String,
) -> Option<Event> {
    let ix = Index::new(obj, &pools.buf);
    if special(&ix) {
        return None;
    }
    // The event's one buffer: every string value is a slice of it.
    let buf: Arc<str> = Arc::from(pools.buf.as_str());
    let mut ev = Event::new(Format::Json, origin.clone(), text);
    ev.fields_mut().reserve(obj.len() + 8);
    path.clear();
    names.start_record();
    Flat {
        buf: &buf,
        names: &mut *names,
        path,
    }
    .flatten(tree, &mut ev);
    if is_flat_windows(&ix) {
        nxlog_copies(&ix, &buf, &mut ev, names);
        windows::add_windows_ecs(&mut ev, names);
    }
    set_timestamp(&ix, &mut ev);
    Some(ev)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    fn origin() -> Origin {
        Origin::File {
            path: Arc::from(Path::new("t.jsonl")),
            record: None,
            line: Some(1),
            offset: 0,
        }
    }

    /// The general path's event for `line`.
    fn general(line: &str, names: &mut Interner) -> Event {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        super::super::parse_json_value(&v, line.as_bytes().to_vec(), origin(), names).unwrap()
    }

    fn same(a: &Event, b: &Event) -> Result<(), String> {
        let show = |e: &Event| {
            format!(
                "{:?} {:?} {:?} {:?}",
                e.fields(),
                e.timestamp,
                e.timestamp_raw,
                e.logsource
            )
        };
        if a.fields() == b.fields()
            && a.timestamp == b.timestamp
            && a.timestamp_raw == b.timestamp_raw
            && a.logsource == b.logsource
            && a.format == b.format
            && a.raw == b.raw
        {
            Ok(())
        } else {
            Err(format!("fast:    {}\ngeneral: {}", show(a), show(b)))
        }
    }

    /// Every line either takes the general path (`None`) or gives exactly its event.
    fn check(line: &str) -> bool {
        check_with(line, &mut Scratch::default())
    }

    /// [`check`] with scratch left by earlier lines.
    fn check_with(line: &str, scratch: &mut Scratch) -> bool {
        let mut names = Interner::new();
        let want = general(line, &mut names);
        match parse(line.as_bytes(), &origin(), &mut names, scratch) {
            None => false,
            Some(got) => {
                if let Err(e) = same(&got, &want) {
                    panic!("{line}\n{e}");
                }
                true
            }
        }
    }

    #[test]
    fn plain_shapes_take_the_fast_path_and_agree() {
        for line in [
            r#"{"EventID":4688,"Channel":"Security","Computer":"PC1","NewProcessName":"C:\\x.exe","TimeCreated":"2020-09-18T14:02:36.2195349Z","SubjectUserName":"bob","IpAddress":"-"}"#,
            r#"{"EventID":"4625","SourceName":"Microsoft-Windows-Security-Auditing","Hostname":"h","TargetUserName":"a\u00e9\"b","EventTime":"2021-01-02 03:04:05"}"#,
            r#"{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","CommandLine":"cmd /c \"x\"","Image":"C:\\Windows\\cmd.exe","n":18446744073709551615,"f":1.5,"neg":-3,"b":true,"z":null}"#,
            r#"{"a":{"b":{"c":1},"d":[1,"x",null]},"arr":[{"k":1},{"k":2},3],"nested":[[1],[2]],"@timestamp":1600000000123,"e":{}}"#,
            r#"{"msg":"hello {not json","time":"2020-01-01T00:00:00+09:00","x":"{}x"}"#,
            r#"{"k\u0041":"v","TimeCreated":{"SystemTime":"2020-01-01T00:00:00Z"}}"#,
            r#"{"timestamp":1.5e9,"v":[]}"#,
            r#"{"time":"not a time","eventTime":"2020-02-02T00:00:00Z"}"#,
            r#"{"":1,"a":{"":2},"b":"x","c":[1,2]}"#,
        ] {
            assert!(check(line), "took the general path: {line}");
        }
    }

    #[test]
    fn special_shapes_take_the_general_path() {
        for line in [
            r#"{"message":"{\"EventID\":1,\"Channel\":\"Security\"}","host":"h"}"#,
            r#"{"EventID":1,"Channel":"Security","EventData":"{\"Image\":\"x\"}"}"#,
            r#"{"winlog":{"event_id":4624,"event_data":{"TargetUserName":"u"}}}"#,
            r#"{"Event":{"System":{"EventID":1}}}"#,
            r#"{"eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"x"}"#,
            r#"{"MESSAGE":"Accepted password for x","SYSLOG_IDENTIFIER":"sshd"}"#,
            r#"{"log":"GET / HTTP/1.1\n","stream":"stdout","time":"2020-01-01T00:00:00Z"}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"Records":[{"a":1}]}"#,
            r#"[{"a":1}]"#,
        ] {
            let mut names = Interner::new();
            assert!(
                parse(
                    line.as_bytes(),
                    &origin(),
                    &mut names,
                    &mut Scratch::default()
                )
                .is_none(),
                "{line}"
            );
        }
    }

    #[test]
    fn known_keys_are_found_by_their_first_byte() {
        for (i, k) in KNOWN.iter().enumerate() {
            assert_eq!(known(k), Some(i), "{k}");
        }
        for k in ["", "Event", "EventId", "time ", "Timestamp", "x"] {
            assert_eq!(known(k), None, "{k}");
        }
    }

    #[test]
    fn repeated_keys_are_found_among_many() {
        let mut obj: Vec<String> = (0..80).map(|i| format!("\"k{i}\":{i}")).collect();
        obj.push("\"k17\":0".into());
        let line = format!("{{{}}}", obj.join(","));
        let mut names = Interner::new();
        assert!(parse(
            line.as_bytes(),
            &origin(),
            &mut names,
            &mut Scratch::default()
        )
        .is_none());
        obj.pop();
        let line = format!("{{{}}}", obj.join(","));
        assert!(check(&line));
    }

    #[test]
    fn bad_input_takes_the_general_path() {
        let mut names = Interner::new();
        for bad in [
            &b"{\"a\":"[..],
            b"{\"a\":1} x",
            b"{\"a\":\"\xff\"}",
            b"",
            b"nul",
        ] {
            assert!(parse(bad, &origin(), &mut names, &mut Scratch::default()).is_none());
        }
    }

    /// Every record of the benchmark file (the corpus): the same event from both paths.
    #[test]
    fn corpus_records_agree_with_the_general_path() {
        let corpus =
            std::env::var("MAMORI_CORPUS").unwrap_or_else(|_| "../../../shared/corpus".into());
        let path = Path::new(&corpus).join("bench/windows-flat.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!("skipped: corpus not found at {}", path.display());
            return;
        };
        let mut fast_count = 0;
        // One scratch for the whole file, as a reader uses it.
        let mut scratch = Scratch::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            fast_count += usize::from(check_with(line, &mut scratch));
        }
        assert!(
            fast_count > 20_000,
            "{fast_count} records took the fast path"
        );
    }
}
