//! The index document of one event, built without per-value allocations.
//!
//! tantivy's own `TantivyDocument` wants an owned map of owned strings for a JSON field and then
//! re-serialises it into its compact form: at saturation that cost about 15% of the server's CPU.
//! [`IndexDoc`] copies the event's text once into one buffer, keeps the values as ranges into
//! it, and hands them to tantivy through its `Document`/`Value` traits, which the indexing
//! threads walk directly.

use std::fmt;

use chrono::{DateTime, Utc};
use mamori_event::{Event, Value};
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{Document, Field};

use crate::model::Seq;

/// Longest string value (and raw text) the index sees; `get` still returns everything.
pub(crate) const MAX_INDEXED_TEXT: usize = 256 << 10;
/// Field names longer than this are stored but not indexed (they could not be typed in a query).
const MAX_INDEXED_NAME: usize = 255;

/// The schema fields a document fills.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DocFields {
    pub(crate) seq: Field,
    pub(crate) ts: Field,
    pub(crate) host: Field,
    pub(crate) message: Field,
    pub(crate) fields: Field,
}

/// A range of [`DocData::text`].
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Debug, Clone, Copy)]
enum Leaf {
    Str(Span),
    I64(i64),
    F64(f64),
    Bool(bool),
    /// `len` values at `start` in [`DocData::items`].
    List {
        start: u32,
        len: u32,
    },
}

/// One event as the index sees it. Owns its data (the indexer thread indexes it later).
///
/// Boxed: tantivy's document channel is an array of 10,000 slots allocated whole at every
/// commit, each slot holding up to four documents inline, so the size of this handle (not of
/// its text) is what that array costs — 5.6 MB with the fields inline, 0.8 MB boxed (issue #15,
/// `bench ingest` heap profile).
pub(crate) struct IndexDoc(Box<DocData>);

/// What an [`IndexDoc`] holds.
pub(crate) struct DocData {
    f: DocFields,
    seq: Seq,
    ts: i64,
    text: String,
    host: Option<Span>,
    message: Span,
    /// Top-level fields of the JSON object: name and value.
    fields: Vec<(Span, Leaf)>,
    /// Elements of lists, each list contiguous.
    items: Vec<Leaf>,
}

impl std::ops::Deref for IndexDoc {
    type Target = DocData;

    fn deref(&self) -> &DocData {
        &self.0
    }
}

impl fmt::Debug for IndexDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexDoc")
            .field("seq", &self.seq)
            .field("fields", &self.fields.len())
            .finish_non_exhaustive()
    }
}

impl IndexDoc {
    pub(crate) fn seq(&self) -> Seq {
        self.0.seq
    }

    /// Bytes of memory this document holds (its handle, its text and its tables), for the
    /// store's bounded indexing backlog.
    pub(crate) fn heap_bytes(&self) -> usize {
        let d = &self.0;
        std::mem::size_of::<DocData>()
            + d.text.capacity()
            + d.fields.capacity() * std::mem::size_of::<(Span, Leaf)>()
            + d.items.capacity() * std::mem::size_of::<Leaf>()
    }

    pub(crate) fn new(f: DocFields, seq: Seq, received_at: DateTime<Utc>, e: &Event) -> IndexDoc {
        let mut d = DocData {
            f,
            seq,
            ts: e.timestamp.unwrap_or(received_at).timestamp_micros(),
            text: String::with_capacity(e.raw.len() * 2 + 64),
            host: None,
            message: Span { start: 0, end: 0 },
            fields: Vec::with_capacity(e.fields().len()),
            items: Vec::new(),
        };
        d.message = {
            let raw = String::from_utf8_lossy(&e.raw);
            let (head, tail) = searchable_text(&raw, e);
            let start = d.put(head).start;
            if !tail.is_empty() {
                d.put(" ");
                d.put(tail);
            }
            Span {
                start,
                end: d.text.len() as u32,
            }
        };
        if let Some(h) = e.host() {
            d.host = Some(d.put(&h));
        }
        for (name, v) in e.fields() {
            let n = name.as_str();
            // `message` is part of the raw text, indexed above in the `message` field (which is
            // also what a `message:` query names): indexing it again would double the cost.
            // Names with tantivy's path separators (NUL, 0x01) cannot be indexed as JSON keys.
            if n.is_empty()
                || n == "message"
                || n.len() > MAX_INDEXED_NAME
                || n.contains(['\0', '\u{1}'])
            {
                continue;
            }
            if let Some(leaf) = d.leaf(v) {
                let name = d.put(n);
                d.fields.push((name, leaf));
            }
        }
        IndexDoc(Box::new(d))
    }
}

impl DocData {
    fn put(&mut self, s: &str) -> Span {
        let mut s = cap(s);
        // Spans are u32: past 4 GiB of text in one event (no reader produces that), the rest
        // of its values are indexed empty rather than wrapped.
        if self.text.len() + s.len() > u32::MAX as usize {
            s = "";
        }
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span {
            start,
            end: self.text.len() as u32,
        }
    }

    fn leaf(&mut self, v: &Value) -> Option<Leaf> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => Leaf::Bool(*b),
            Value::Int(i) => Leaf::I64(*i),
            Value::Float(x) if x.is_finite() => Leaf::F64(*x),
            Value::Float(_) => return None,
            Value::Str(s) => Leaf::Str(self.put(s)),
            Value::List(list) => {
                // Children first (a nested list appends its own), then this list's block.
                let children: Vec<Leaf> = list.iter().filter_map(|x| self.leaf(x)).collect();
                if children.is_empty() {
                    return None;
                }
                let start = self.items.len() as u32;
                self.items.extend_from_slice(&children);
                Leaf::List {
                    start,
                    len: children.len() as u32,
                }
            }
        })
    }

    fn str(&self, s: Span) -> &str {
        &self.text[s.start as usize..s.end as usize]
    }
}

/// The words of the raw record that bare-word queries search: the record without its syslog
/// priority (`<34>`, `<34>1 `) and without its timestamp as written. Both are metadata with
/// fields of their own (`log.syslog.priority`, the time range of a search) and were a sixth of
/// a syslog line's words; no one searches the word "nov". Returned as the text before and after
/// the cut timestamp.
fn searchable_text<'a>(raw: &'a str, e: &Event) -> (&'a str, &'a str) {
    let mut text = raw;
    if e.format == mamori_event::Format::Syslog {
        if let Some(rest) = text.strip_prefix('<') {
            if let Some(end) = rest.find('>').filter(|&n| n > 0 && n <= 3) {
                if rest[..end].bytes().all(|b| b.is_ascii_digit()) {
                    text = rest[end + 1..]
                        .strip_prefix("1 ")
                        .unwrap_or(&rest[end + 1..]);
                }
            }
        }
    }
    match e.timestamp_raw.as_deref().filter(|t| t.len() >= 8) {
        Some(ts) => match text.find(ts) {
            Some(at) => (&text[..at], &text[at + ts.len()..]),
            None => (text, ""),
        },
        None => (text, ""),
    }
}

/// Cuts `s` to at most [`MAX_INDEXED_TEXT`] bytes, on a character boundary.
pub(crate) fn cap(s: &str) -> &str {
    if s.len() <= MAX_INDEXED_TEXT {
        return s;
    }
    let mut end = MAX_INDEXED_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A value of an [`IndexDoc`], as tantivy walks it.
#[derive(Clone, Copy)]
pub(crate) struct DocValue<'a> {
    doc: &'a IndexDoc,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Seq,
    Ts,
    Text(Span),
    Object,
    Leaf(Leaf),
}

impl fmt::Debug for DocValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Seq => write!(f, "seq {}", self.doc.seq),
            Kind::Ts => write!(f, "ts {}", self.doc.ts),
            Kind::Text(s) | Kind::Leaf(Leaf::Str(s)) => write!(f, "{:?}", self.doc.str(s)),
            Kind::Object => write!(f, "object of {} fields", self.doc.fields.len()),
            Kind::Leaf(l) => write!(f, "{l:?}"),
        }
    }
}

impl<'a> tantivy::schema::Value<'a> for DocValue<'a> {
    type ArrayIter = ListIter<'a>;
    type ObjectIter = ObjectIter<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        let doc = self.doc;
        match self.kind {
            Kind::Seq => ReferenceValueLeaf::U64(doc.seq).into(),
            Kind::Ts => ReferenceValueLeaf::I64(doc.ts).into(),
            Kind::Text(s) => ReferenceValueLeaf::Str(doc.str(s)).into(),
            Kind::Object => ReferenceValue::Object(ObjectIter { doc, next: 0 }),
            Kind::Leaf(Leaf::Str(s)) => ReferenceValueLeaf::Str(doc.str(s)).into(),
            Kind::Leaf(Leaf::I64(i)) => ReferenceValueLeaf::I64(i).into(),
            Kind::Leaf(Leaf::F64(x)) => ReferenceValueLeaf::F64(x).into(),
            Kind::Leaf(Leaf::Bool(b)) => ReferenceValueLeaf::Bool(b).into(),
            Kind::Leaf(Leaf::List { start, len }) => ReferenceValue::Array(ListIter {
                doc,
                next: start as usize,
                end: (start + len) as usize,
            }),
        }
    }
}

pub(crate) struct ObjectIter<'a> {
    doc: &'a IndexDoc,
    next: usize,
}

impl<'a> Iterator for ObjectIter<'a> {
    type Item = (&'a str, DocValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let doc = self.doc;
        let &(name, leaf) = doc.fields.get(self.next)?;
        self.next += 1;
        Some((
            doc.str(name),
            DocValue {
                doc,
                kind: Kind::Leaf(leaf),
            },
        ))
    }
}

pub(crate) struct ListIter<'a> {
    doc: &'a IndexDoc,
    next: usize,
    end: usize,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = DocValue<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let leaf = self.doc.items[self.next];
        self.next += 1;
        Some(DocValue {
            doc: self.doc,
            kind: Kind::Leaf(leaf),
        })
    }
}

/// The (field, value) pairs of a document: seq, ts, host (if any), message, the JSON fields.
pub(crate) struct FieldsIter<'a> {
    doc: &'a IndexDoc,
    step: u8,
}

impl<'a> Iterator for FieldsIter<'a> {
    type Item = (Field, DocValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let doc = self.doc;
        loop {
            let step = self.step;
            self.step = self.step.saturating_add(1);
            let (field, kind) = match step {
                0 => (doc.f.seq, Kind::Seq),
                1 => (doc.f.ts, Kind::Ts),
                2 => match doc.host {
                    Some(h) => (doc.f.host, Kind::Text(h)),
                    None => continue,
                },
                3 => (doc.f.message, Kind::Text(doc.message)),
                4 if !doc.fields.is_empty() => (doc.f.fields, Kind::Object),
                4 => continue,
                _ => return None,
            };
            return Some((field, DocValue { doc, kind }));
        }
    }
}

impl Document for IndexDoc {
    type Value<'a> = DocValue<'a>;
    type FieldsValuesIter<'a> = FieldsIter<'a>;

    fn iter_fields_and_values(&self) -> FieldsIter<'_> {
        FieldsIter { doc: self, step: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_event::{Format, Origin, Transport};

    fn origin() -> Origin {
        Origin::Network {
            peer: "127.0.0.1:514".parse().unwrap(),
            transport: Transport::Tcp,
        }
    }

    fn syslog(raw: &str, ts: &str) -> Event {
        let mut e = Event::new(Format::Syslog, origin(), raw.as_bytes());
        e.timestamp_raw = Some(ts.into());
        e
    }

    #[test]
    fn searchable_text_drops_priority_and_timestamp_only() {
        let e = syslog(
            "<86>Nov 23 10:00:05 srv05 sshd[1234]: Accepted publickey for deploy",
            "Nov 23 10:00:05",
        );
        let raw = String::from_utf8_lossy(&e.raw).into_owned();
        assert_eq!(
            searchable_text(&raw, &e),
            ("", " srv05 sshd[1234]: Accepted publickey for deploy")
        );
        let e = syslog(
            "<14>1 2026-11-23T10:00:05.123Z srv05 app 4242 ID47 - request id=7",
            "2026-11-23T10:00:05.123Z",
        );
        let raw = String::from_utf8_lossy(&e.raw).into_owned();
        assert_eq!(
            searchable_text(&raw, &e),
            ("", " srv05 app 4242 ID47 - request id=7")
        );
        // Not a priority, a timestamp not in the text, a too-short one: nothing is cut.
        for (raw, ts) in [
            ("<html> Nov 23", "Nov 23 10:00:05"),
            ("<1234>x", "x"),
            ("plain 10:00", "10:00"),
        ] {
            let e = syslog(raw, ts);
            assert_eq!(searchable_text(raw, &e), (raw, ""), "{raw}");
        }
        // Other formats keep a leading `<`, and lose the timestamp.
        let mut e = Event::new(Format::Json, origin(), &b"<1>"[..]);
        e.timestamp_raw = Some("2026-11-23T10:00:05Z".into());
        let raw = r#"<1>{"t":"2026-11-23T10:00:05Z","u":"alice"}"#;
        assert_eq!(
            searchable_text(raw, &e),
            (r#"<1>{"t":""#, r#"","u":"alice"}"#)
        );
    }
}
