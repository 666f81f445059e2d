//! The event model every Mamori crate shares.
//!
//! Design decision: an [`Event`] holds its fields as a flat list of `(name, value)` pairs with
//! interned [`FieldName`]s, already typed at read time. Nested JSON (`Event.EventData.Image`) is
//! flattened by the reader, so the detection engine never re-parses anything: it walks the field
//! list once per event and looks names up in its own compiled table. Field names keep the
//! original spelling of the source (Windows `EventData` names, CloudTrail names) *and* ECS names
//! where the reader knows one (`source.ip`, `user.name`, …), so rules written against either
//! resolve.
//!
//! String values are [`Text`]: slices of a shared buffer. The JSON reader gives each event one
//! buffer (its line, with unescaped strings appended), so reading an event allocates once for
//! all its strings rather than once per field, and copying a value is a reference count.
//!
//! This crate does no I/O.

mod name;
mod text;
mod value;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use name::{FieldName, Interner};
pub use text::Text;
pub use value::{write_json_str, Value};

/// The format a reader recognised; used for the summary and to pick logsource defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Evtx,
    Json,
    CloudTrail,
    Syslog,
    AccessLog,
    Iis,
    Auditd,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Evtx,
        Format::Json,
        Format::CloudTrail,
        Format::Syslog,
        Format::AccessLog,
        Format::Iis,
        Format::Auditd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Evtx => "evtx",
            Format::Json => "json",
            Format::CloudTrail => "cloudtrail",
            Format::Syslog => "syslog",
            Format::AccessLog => "access-log",
            Format::Iis => "iis",
            Format::Auditd => "auditd",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| {
            f.as_str().eq_ignore_ascii_case(s) || (s == "accesslog" && *f == Format::AccessLog)
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an event came from: a place in a file, or a network peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File {
        path: Arc<Path>,
        /// EVTX record number, or the 1-based index of a JSON array element / CloudTrail record.
        record: Option<u64>,
        /// 1-based line number for line-oriented formats.
        line: Option<u64>,
        /// Byte offset of the record in the (decompressed) stream.
        offset: u64,
    },
    Network {
        peer: SocketAddr,
        transport: Transport,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Http,
}

impl fmt::Display for Origin {
    /// `file:record` / `file:line` / `file@offset` / `tcp://peer` — the "source" column of a timeline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                record,
                line,
                offset,
            } => {
                let p = path.display();
                match (record, line) {
                    (Some(r), _) => write!(f, "{p}:{r}"),
                    (None, Some(l)) => write!(f, "{p}:{l}"),
                    (None, None) => write!(f, "{p}@{offset}"),
                }
            }
            Origin::Network { peer, transport } => {
                let t = match transport {
                    Transport::Udp => "udp",
                    Transport::Tcp => "tcp",
                    Transport::Tls => "tls",
                    Transport::Http => "http",
                };
                write!(f, "{t}://{peer}")
            }
        }
    }
}

/// The Sigma logsource triple a reader attaches when it knows it (`linux`/`sshd`, `aws`/`cloudtrail`,
/// `webserver`). Windows events leave category empty: the engine derives it from `Channel`/`EventID`
/// through the mapping data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSource {
    pub product: Option<FieldName>,
    pub category: Option<FieldName>,
    pub service: Option<FieldName>,
}

/// One log record, normalised.
#[derive(Debug, Clone)]
pub struct Event {
    /// Event time in UTC, if the record carried one we could parse.
    pub timestamp: Option<DateTime<Utc>>,
    /// The timestamp exactly as written in the record.
    pub timestamp_raw: Option<Box<str>>,
    pub origin: Origin,
    pub format: Format,
    pub logsource: LogSource,
    /// The record as received: the line for text formats, the JSON object text for JSON, the
    /// JSON rendering of the record for EVTX (the binary record is located by `origin`).
    pub raw: Box<[u8]>,
    fields: Vec<(FieldName, Value)>,
}

impl Event {
    pub fn new(format: Format, origin: Origin, raw: impl Into<Box<[u8]>>) -> Event {
        Event {
            timestamp: None,
            timestamp_raw: None,
            origin,
            format,
            logsource: LogSource::default(),
            raw: raw.into(),
            fields: Vec::new(),
        }
    }

    /// Adds a field. A later field with the same name does not replace the earlier one: lookups
    /// return the first, iteration sees both (a JSON array flattened to repeated names).
    pub fn push(&mut self, name: FieldName, value: Value) {
        self.fields.push((name, value));
    }

    /// Adds a field unless the value is null or an empty string.
    pub fn push_nonempty(&mut self, name: FieldName, value: Value) {
        match &value {
            Value::Null => {}
            Value::Str(s) if s.is_empty() => {}
            _ => self.fields.push((name, value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
    }

    /// A field as text (numbers rendered), or `None` when absent.
    pub fn get_str(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(Value::to_text)
    }

    pub fn fields(&self) -> &[(FieldName, Value)] {
        &self.fields
    }

    pub fn fields_mut(&mut self) -> &mut Vec<(FieldName, Value)> {
        &mut self.fields
    }

    /// The host this event is about: `host.name`, Windows `Computer`, or syslog hostname.
    pub fn host(&self) -> Option<Cow<'_, str>> {
        self.get_str("host.name")
            .or_else(|| self.get_str("Computer"))
            .or_else(|| self.get_str("hostname"))
    }

    /// The fields as the text of one JSON object, the same as `fields_json()` rendered (first
    /// value of a repeated name, in field order) but written straight from the fields: no JSON
    /// tree is built, so a timeline row costs what its event's text costs.
    pub fn fields_json_text(&self) -> String {
        let mut out = Vec::with_capacity(self.raw.len() + 16 * self.fields.len() + 2);
        out.push(b'{');
        // Signatures of the names written so far (length and two bytes in a 64-bit filter): a
        // name is compared with the earlier ones only when its bit was already set, so an
        // event of distinct names costs no quadratic scan.
        let mut written = 0u64;
        for (i, (n, v)) in self.fields.iter().enumerate() {
            let b = n.as_str().as_bytes();
            let bit = 1u64
                << ((b.len() as u64 * 7
                    + u64::from(b.first().copied().unwrap_or(0)) * 3
                    + u64::from(b.last().copied().unwrap_or(0)))
                    % 64);
            let seen = written & bit != 0
                && self.fields[..i]
                    .iter()
                    .any(|(m, _)| std::ptr::eq(m.as_str().as_ptr(), n.as_str().as_ptr()) || m == n);
            written |= bit;
            if seen {
                continue;
            }
            if out.len() > 1 {
                out.push(b',');
            }
            value::write_json_str(&mut out, n.as_str());
            out.push(b':');
            v.write_json(&mut out);
        }
        out.push(b'}');
        // Only valid UTF-8 was written: names and strings are `str`, the rest ASCII.
        String::from_utf8(out).unwrap_or_default()
    }

    /// The fields as one JSON object (flattened names), for JSONL timelines and the API.
    pub fn fields_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for (n, v) in &self.fields {
            map.entry(n.as_str().to_owned())
                .or_insert_with(|| v.to_json());
        }
        serde_json::Value::Object(map)
    }
}

/// Severity levels as Sigma defines them, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Informational,
        Level::Low,
        Level::Medium,
        Level::High,
        Level::Critical,
    ];

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    /// Japanese label for reports and the UI.
    pub fn as_str_ja(self) -> &'static str {
        match self {
            Level::Informational => "情報",
            Level::Low => "低",
            Level::Medium => "中",
            Level::High => "高",
            Level::Critical => "重大",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Sigma rule id (usually a UUID). A newtype so it cannot be confused with other strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RuleId(pub Arc<str>);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
