//! Byte layouts of the event log, format version 2 (reads 1). `docs/store-format.md` is the prose version
//! of this module; the two change together, and a frozen fixture test guards both.
//!
//! All integers are big-endian.
//!
//! ```text
//! segment header: "MAMORIWL" | version u16 | flags u16 (0) | first_seq u64 | crc32 u32 (of the 20 bytes before)
//! frame:          body_len u32 (top bit: last frame of its batch, v2) | crc32 u32 (of body) | body
//! body:           seq u64 | received_at_ns i64 | event
//! event:          timestamp (u8 0 | u8 1, secs i64, nanos u32) | timestamp_raw opt_str | format u8
//!                 | origin | logsource (3 × opt_str) | raw bytes | field_count u32 | (name str, value)*
//! origin:         u8 0, path str, record opt_u64, line opt_u64, offset u64
//!                 | u8 1, peer str (SocketAddr text), transport u8
//! value:          u8 0 null | 1 bool u8 | 2 int i64 | 3 float f64 bits | 4 str | 5 list u32 n, value*
//! str / bytes:    len u32 | bytes (str: UTF-8);  opt_*: u8 0 | u8 1, item
//! ```

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mamori_event::{Event, FieldName, Format, Interner, LogSource, Origin, Transport, Value};

/// The on-disk format version this build writes; it reads this and [`OLDEST_VERSION`].
///
/// Version 2 marks the last frame of each appended batch ([`BATCH_END`]) so that recovery keeps
/// a batch whole or not at all: a SIGKILL in the middle of one `write` may leave a prefix of
/// an unacknowledged batch, which version 1 kept.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version read (every frame of it counts as a whole batch).
pub const OLDEST_VERSION: u16 = 1;
/// Top bit of `body_len`: this frame ends its batch (version 2).
pub const BATCH_END: u32 = 1 << 31;
/// XORed into the CRC of a marked frame, so a flipped mark fails the check like a flipped body.
const BATCH_END_CRC: u32 = 0xFFFF_FFFF;
pub const SEGMENT_MAGIC: [u8; 8] = *b"MAMORIWL";
pub const SEGMENT_HEADER_LEN: usize = 24;
/// `body_len | crc32` before each body.
pub const FRAME_PREFIX: usize = 8;
/// `seq | received_at_ns` at the start of each body.
pub const BODY_FIXED: usize = 16;
/// Largest encoded body accepted; a larger event is refused at append ([`crate::Error::EventTooLarge`]),
/// and a larger length prefix on disk marks a torn or corrupt frame.
pub const MAX_BODY_LEN: usize = 32 << 20;
/// Nesting limit of list values, so a crafted frame cannot overflow the decoder's stack.
const MAX_DEPTH: u32 = 64;

pub fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[10..12].copy_from_slice(&0u16.to_be_bytes());
    h[12..20].copy_from_slice(&first_seq.to_be_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_be_bytes());
    h
}

#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    BadMagic,
    BadChecksum,
    UnsupportedVersion(u16),
}

/// Parses a segment header; returns its first seq.
pub fn decode_segment_header(h: &[u8; SEGMENT_HEADER_LEN]) -> Result<u64, HeaderError> {
    if h[..8] != SEGMENT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let crc = u32::from_be_bytes(h[20..24].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(&h[..20]) {
        return Err(HeaderError::BadChecksum);
    }
    let version = u16::from_be_bytes([h[8], h[9]]);
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    Ok(u64::from_be_bytes(h[12..20].try_into().expect("8 bytes")))
}

/// The format version of a header [`decode_segment_header`] accepted.
pub fn segment_version(h: &[u8; SEGMENT_HEADER_LEN]) -> u16 {
    u16::from_be_bytes([h[8], h[9]])
}

/// Marks the frame at the start of `frame` (unmarked, as [`encode_frame`] wrote it) as the
/// last of its batch.
pub fn mark_batch_end(frame: &mut [u8]) {
    frame[0] |= (BATCH_END >> 24) as u8;
    let crc = u32::from_be_bytes(frame[4..8].try_into().expect("4 bytes")) ^ BATCH_END_CRC;
    frame[4..8].copy_from_slice(&crc.to_be_bytes());
}

/// Appends one frame (prefix + body) for `event` to `out`; returns the frame length. On
/// [`crate::Error::EventTooLarge`] `out` is left as it was.
pub fn encode_frame(
    out: &mut Vec<u8>,
    seq: u64,
    received_at: DateTime<Utc>,
    event: &Event,
) -> crate::Result<usize> {
    if event.raw.len() > MAX_BODY_LEN {
        return Err(crate::Error::EventTooLarge {
            len: event.raw.len(),
            max: MAX_BODY_LEN,
        });
    }
    if let Some((name, _)) = event.fields().iter().find(|(_, v)| depth(v) > MAX_DEPTH) {
        return Err(crate::Error::InvalidRequest(format!(
            "field {name} nests lists deeper than {MAX_DEPTH}"
        )));
    }
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&nanos(received_at).to_be_bytes());
    encode_event(out, event);
    let body_len = out.len() - start - FRAME_PREFIX;
    if body_len > MAX_BODY_LEN {
        out.truncate(start);
        return Err(crate::Error::EventTooLarge {
            len: body_len,
            max: MAX_BODY_LEN,
        });
    }
    let crc = crc32fast::hash(&out[start + FRAME_PREFIX..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    Ok(out.len() - start)
}

fn depth(v: &Value) -> u32 {
    match v {
        Value::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The frame length `event` would take, without keeping the bytes (for size accounting).
pub fn frame_len(event: &Event) -> usize {
    let mut b = Vec::with_capacity(256 + event.raw.len());
    encode_event(&mut b, event);
    FRAME_PREFIX + BODY_FIXED + b.len()
}

/// Why a frame could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs: a torn write at the end of the log.
    Truncated,
    /// A length prefix beyond [`MAX_BODY_LEN`].
    BadLength(u32),
    BadChecksum,
}

/// Checks the frame at the start of `b`; returns `(body, frame_len)`.
pub fn check_frame(b: &[u8]) -> Result<(&[u8], usize), FrameError> {
    check_marked_frame(b).map(|(body, n, _)| (body, n))
}

/// [`check_frame`], and whether the frame ends its batch (the [`BATCH_END`] bit).
pub fn check_marked_frame(b: &[u8]) -> Result<(&[u8], usize, bool), FrameError> {
    if b.len() < FRAME_PREFIX {
        return Err(FrameError::Truncated);
    }
    let marked = u32::from_be_bytes(b[..4].try_into().expect("4 bytes"));
    let len = marked & !BATCH_END;
    if len as usize > MAX_BODY_LEN || (len as usize) < BODY_FIXED {
        return Err(FrameError::BadLength(len));
    }
    let end = FRAME_PREFIX + len as usize;
    if b.len() < end {
        return Err(FrameError::Truncated);
    }
    let crc = u32::from_be_bytes(b[4..8].try_into().expect("4 bytes"));
    let body = &b[FRAME_PREFIX..end];
    let end_mark = marked & BATCH_END != 0;
    if crc != crc32fast::hash(body) ^ if end_mark { BATCH_END_CRC } else { 0 } {
        return Err(FrameError::BadChecksum);
    }
    Ok((body, end, end_mark))
}

/// `seq` and receipt time of a checked body, without decoding the event.
pub fn body_header(body: &[u8]) -> (u64, i64) {
    let seq = u64::from_be_bytes(body[..8].try_into().expect("checked body"));
    let ns = i64::from_be_bytes(body[8..16].try_into().expect("checked body"));
    (seq, ns)
}

/// A decoded body.
pub struct Decoded {
    pub seq: u64,
    pub received_at: DateTime<Utc>,
    pub event: Event,
}

/// Decodes a checked body. A CRC-valid body that does not decode is corruption (or a bug), never
/// a panic.
pub fn decode_body(body: &[u8], names: &mut Interner) -> Result<Decoded, String> {
    if body.len() < BODY_FIXED {
        return Err("body shorter than its fixed part".into());
    }
    let (seq, ns) = body_header(body);
    let mut r = Reader {
        b: &body[BODY_FIXED..],
    };
    let event = decode_event(&mut r, names)?;
    if !r.b.is_empty() {
        return Err(format!("{} trailing bytes after the event", r.b.len()));
    }
    Ok(Decoded {
        seq,
        received_at: from_nanos(ns),
        event,
    })
}

/// Nanoseconds since the epoch, saturating (the i64 range covers 1677–2262).
pub fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

pub fn from_nanos(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

fn encode_event(out: &mut Vec<u8>, e: &Event) {
    match e.timestamp {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.timestamp().to_be_bytes());
            out.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
        }
    }
    put_opt_str(out, e.timestamp_raw.as_deref());
    out.push(format_byte(e.format));
    match &e.origin {
        Origin::File {
            path,
            record,
            line,
            offset,
        } => {
            out.push(0);
            // Paths are stored as text; a non-UTF-8 path is kept lossily (it names the source,
            // it is not evidence: the raw bytes are).
            put_str(out, &path.to_string_lossy());
            put_opt_u64(out, *record);
            put_opt_u64(out, *line);
            out.extend_from_slice(&offset.to_be_bytes());
        }
        Origin::Network { peer, transport } => {
            out.push(1);
            put_str(out, &peer.to_string());
            out.push(match transport {
                Transport::Udp => 0,
                Transport::Tcp => 1,
                Transport::Tls => 2,
                Transport::Http => 3,
            });
        }
    }
    for n in [
        &e.logsource.product,
        &e.logsource.category,
        &e.logsource.service,
    ] {
        put_opt_str(out, n.as_ref().map(FieldName::as_str));
    }
    put_bytes(out, &e.raw);
    out.extend_from_slice(&(e.fields().len() as u32).to_be_bytes());
    for (n, v) in e.fields() {
        put_str(out, n.as_str());
        put_value(out, v);
    }
}

fn format_byte(f: Format) -> u8 {
    match f {
        Format::Evtx => 0,
        Format::Json => 1,
        Format::CloudTrail => 2,
        Format::Syslog => 3,
        Format::AccessLog => 4,
        Format::Iis => 5,
        Format::Auditd => 6,
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, *b as u8]),
        Value::Int(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(s) => {
            out.push(4);
            put_str(out, s);
        }
        Value::List(items) => {
            out.push(5);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for i in items {
                put_value(out, i);
            }
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!(
                "needs {n} bytes, {} left in the body",
                self.b.len()
            ));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes()?).map_err(|e| format!("invalid UTF-8 in a string: {e}"))
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("bad option flag {b}")),
        }
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, String> {
        if self.flag()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_u64(&mut self) -> Result<Option<u64>, String> {
        if self.flag()? {
            self.u64().map(Some)
        } else {
            Ok(None)
        }
    }
}

fn decode_event(r: &mut Reader<'_>, names: &mut Interner) -> Result<Event, String> {
    let timestamp = if r.flag()? {
        let secs = r.u64()? as i64;
        let ns = r.u32()?;
        Some(
            DateTime::from_timestamp(secs, ns)
                .ok_or_else(|| format!("timestamp {secs}.{ns} out of range"))?,
        )
    } else {
        None
    };
    let timestamp_raw = r.opt_str()?.map(Box::from);
    let format = match r.u8()? {
        b @ 0..=6 => Format::ALL[b as usize],
        b => return Err(format!("unknown format byte {b}")),
    };
    let origin = match r.u8()? {
        0 => Origin::File {
            path: Arc::from(Path::new(r.str()?)),
            record: r.opt_u64()?,
            line: r.opt_u64()?,
            offset: r.u64()?,
        },
        1 => {
            let peer: SocketAddr = r
                .str()?
                .parse()
                .map_err(|e| format!("bad peer address: {e}"))?;
            let transport = match r.u8()? {
                0 => Transport::Udp,
                1 => Transport::Tcp,
                2 => Transport::Tls,
                3 => Transport::Http,
                b => return Err(format!("unknown transport byte {b}")),
            };
            Origin::Network { peer, transport }
        }
        b => return Err(format!("unknown origin tag {b}")),
    };
    let mut ls = [None, None, None];
    for slot in &mut ls {
        *slot = r.opt_str()?.map(|s| names.intern(s));
    }
    let [product, category, service] = ls;
    let raw = r.bytes()?;
    let mut event = Event::new(format, origin, raw);
    event.timestamp = timestamp;
    event.timestamp_raw = timestamp_raw;
    event.logsource = LogSource {
        product,
        category,
        service,
    };
    let n = r.u32()? as usize;
    // Each field takes at least 5 bytes; refuse counts the body cannot hold before allocating.
    if n > r.b.len() / 5 {
        return Err(format!("field count {n} exceeds what the body can hold"));
    }
    let fields = event.fields_mut();
    fields.reserve(n);
    for _ in 0..n {
        let name = names.intern(r.str()?);
        let v = decode_value(r, 0)?;
        fields.push((name, v));
    }
    Ok(event)
}

fn decode_value(r: &mut Reader<'_>, depth: u32) -> Result<Value, String> {
    Ok(match r.u8()? {
        0 => Value::Null,
        1 => Value::Bool(r.flag()?),
        2 => Value::Int(r.u64()? as i64),
        3 => Value::Float(f64::from_bits(r.u64()?)),
        4 => Value::Str(r.str()?.into()),
        5 => {
            if depth >= MAX_DEPTH {
                return Err(format!("lists nested deeper than {MAX_DEPTH}"));
            }
            let n = r.u32()? as usize;
            if n > r.b.len() {
                return Err(format!("list length {n} exceeds what the body can hold"));
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(decode_value(r, depth + 1)?);
            }
            Value::List(items)
        }
        b => return Err(format!("unknown value tag {b}")),
    })
}
