use std::borrow::Cow;

use crate::Text;

/// A typed field value. Readers type values when they know the type (a port is an `Int`, a
/// status code is an `Int`); matching compares numbers numerically and strings textually, and
/// renders numbers as text for string patterns (so `EventID: 4688` matches `"4688"` and `4688`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text, usually a slice of its event's one shared buffer ([`Text`]).
    Str(Text),
    List(Vec<Value>),
}

impl Value {
    pub fn str(s: impl Into<Text>) -> Value {
        Value::Str(s.into())
    }

    /// The value as text: strings borrowed, numbers and booleans rendered, lists joined by `,`.
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Value::Null => Cow::Borrowed(""),
            Value::Bool(true) => Cow::Borrowed("true"),
            Value::Bool(false) => Cow::Borrowed("false"),
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Float(f) => Cow::Owned(f.to_string()),
            Value::Str(s) => Cow::Borrowed(s.as_str()),
            Value::List(items) => Cow::Owned(
                items
                    .iter()
                    .map(|v| v.to_text().into_owned())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a number: numbers as they are, strings that parse as numbers (decimal, or
    /// `0x` hex as Windows writes many ids).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(_) | Value::Null | Value::List(_) => None,
            Value::Str(s) => parse_number(s),
        }
    }

    /// A copy whose text has buffers of its own ([`Text::detached`]): keeping it does not keep
    /// the rest of its event's shared buffer alive.
    pub fn detached(&self) -> Value {
        match self {
            Value::Str(s) => Value::Str(s.detached()),
            Value::List(items) => Value::List(items.iter().map(Value::detached).collect()),
            other => other.clone(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.as_str().to_owned()),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
        }
    }

    /// Appends the value as JSON text, as `to_json()` would render it.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::Int(i) => {
                use std::io::Write;
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{i}");
            }
            Value::Float(_) => {
                let _ = serde_json::to_writer(&mut *out, &self.to_json());
            }
            Value::Str(s) => write_json_str(out, s),
            Value::List(items) => {
                out.push(b'[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    x.write_json(out);
                }
                out.push(b']');
            }
        }
    }

    /// Converts a JSON scalar or array (not an object: readers flatten objects into dotted names).
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.as_str().into()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(_) => Value::Str(v.to_string().into()),
        }
    }
}

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s.into())
    }
}

impl From<Text> for Value {
    fn from(s: Text) -> Value {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

/// Appends `s` as a JSON string literal, quoted and escaped exactly as `serde_json` writes
/// it (`\"`, `\\`, `\b\f\n\r\t`, other control characters as `\u00xx`), but copying the
/// runs between escapes whole instead of going through a serializer. Eight bytes are checked
/// at once (a word with no quote, backslash or control byte is skipped whole): event text
/// rarely needs escaping, and a timeline row is mostly its event's strings.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// Whether any byte of `w` is a control byte, `"` or `\`. (The zero-byte test can flag a
    /// byte above a true hit through the borrow, never a word without one.)
    fn special(w: u64) -> bool {
        let ctl = w.wrapping_sub(ONES * 0x20) & !w;
        let q = w ^ (ONES * u64::from(b'"'));
        let bs = w ^ (ONES * u64::from(b'\\'));
        (ctl | (q.wrapping_sub(ONES) & !q) | (bs.wrapping_sub(ONES) & !bs)) & HIGH != 0
    }
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if let Some(w) = b.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            if !special(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        // A word with a byte to escape, or the last bytes: one at a time up to the word's end.
        let end = (i + 8).min(b.len());
        while i < end {
            let c = b[i];
            let esc: &[u8] = match c {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..=0x1f => &[],
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(b.get(start..i).unwrap_or_default());
            if esc.is_empty() {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 0xf)]);
            } else {
                out.extend_from_slice(esc);
            }
            i += 1;
            start = i;
        }
    }
    out.extend_from_slice(b.get(start..).unwrap_or_default());
    out.push(b'"');
}
