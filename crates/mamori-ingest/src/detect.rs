//! Format detection by content.
//!
//! Order of the checks: EVTX magic; known binary magics (zip, png, pcap, …) and NUL-heavy
//! samples are unsupported; `{`/`[` is JSON (CloudTrail when `"Records"` holds records with
//! `eventVersion`/`eventSource`, or a line is a CloudTrail record); IIS W3C headers; then the first
//! 40 non-empty lines vote: access-log shape, auditd `type=… msg=audit(`, syslog (PRI or a
//! syslog timestamp, or a headerless appliance line: `%ASA-…`, CEF/LEEF, PAN-OS CSV,
//! key=value), web server error log (read by the syslog reader). [`explain_bytes`] says
//! which vote or signature decided, and for generic text what the lines resemble.
//! **Text that matches none of them is read as generic syslog-ish lines**
//! (one event per line, `message` = the line, timestamps picked up where recognisable): a
//! hunt should see every line of an unknown text log rather than skip it. The file extension
//! only breaks a tie between the line votes.

use std::path::Path;

use mamori_event::Format;

use crate::{access, auditd, input, syslog, ReadError};

const SAMPLE_BYTES: usize = 16 * 1024;
const VOTE_LINES: usize = 40;

/// What the sniffer made of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Format(Format),
    /// Not a log format we read; the reason (`binary`, `zip archive`, …).
    Unsupported(&'static str),
    /// No bytes, or whitespace only.
    Empty,
}

/// Detects the format of a file from its first kilobytes (gzip unwrapped).
/// `Ok(None)` for unsupported (binary) and empty files.
pub fn detect_format(path: &Path) -> Result<Option<Format>, ReadError> {
    match sniff_path(path)? {
        Sniffed::Format(f) => Ok(Some(f)),
        Sniffed::Unsupported(_) | Sniffed::Empty => Ok(None),
    }
}

pub(crate) fn sniff_path(path: &Path) -> Result<Sniffed, ReadError> {
    sniff_path_explained(path).map(|(s, _)| s)
}

pub(crate) fn sniff_path_explained(path: &Path) -> Result<(Sniffed, Detection), ReadError> {
    let (sample, _gz) = input::sample(path, SAMPLE_BYTES)
        .map_err(|e| ReadError::file(path, format!("cannot read: {e}")))?;
    Ok(explain_bytes(&sample, Some(path)))
}

/// Why the sniffer chose a format, for the read-quality report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detection {
    /// `38 of 40 sample lines look like syslog`, `JSON (starts with '{')`, …
    pub reason: String,
    /// No known format matched: the file is read as generic text, one event per line.
    pub generic: bool,
    /// For generic text: what the sample resembles that Mamori does not parse (`CEF`,
    /// `key=value pairs`, `CSV`, `XML`).
    pub resembles: Option<&'static str>,
}

const BINARY_MAGICS: &[(&[u8], &str)] = &[
    (b"PK\x03\x04", "zip archive"),
    (b"PK\x05\x06", "zip archive"),
    (b"\x89PNG", "png image"),
    (b"\xff\xd8\xff", "jpeg image"),
    (b"GIF8", "gif image"),
    (b"%PDF", "pdf"),
    (b"\x7fELF", "executable"),
    (b"MZ", "executable"),
    (b"7z\xbc\xaf", "7z archive"),
    (b"\xfd7zXZ", "xz archive"),
    (b"BZh", "bzip2 archive"),
    (b"\x28\xb5\x2f\xfd", "zstd archive"),
    (b"\xd4\xc3\xb2\xa1", "pcap"),
    (b"\xa1\xb2\xc3\xd4", "pcap"),
    (b"\x0a\x0d\x0d\x0a", "pcapng"),
    (b"SQLite format 3", "sqlite database"),
    (b"\x1f\x8b", "gzip inside gzip"),
];

/// Detects the format of a sample (the decompressed start of a file). `path` only breaks ties.
pub fn detect_bytes(sample: &[u8], path: Option<&Path>) -> Sniffed {
    explain_bytes(sample, path).0
}

/// [`detect_bytes`] and why.
pub fn explain_bytes(sample: &[u8], path: Option<&Path>) -> (Sniffed, Detection) {
    let because = |s: Sniffed, r: &str| {
        (
            s,
            Detection {
                reason: r.to_owned(),
                ..Detection::default()
            },
        )
    };
    if sample.starts_with(b"ElfFile\0") {
        return because(Sniffed::Format(Format::Evtx), "EVTX file header");
    }
    for (magic, what) in BINARY_MAGICS {
        if sample.starts_with(magic) {
            // "MZ"/"BZh" are also plausible text starts; only call them binary with NULs around.
            if (magic.len() < 4) && !sample.iter().take(512).any(|&b| b == 0) {
                continue;
            }
            return because(Sniffed::Unsupported(what), what);
        }
    }
    let text = strip_bom(sample);
    let Some(first) = text.iter().position(|b| !b.is_ascii_whitespace()) else {
        return because(Sniffed::Empty, "empty");
    };
    let body = text.get(first..).unwrap_or_default();
    let v = vote(body, path);
    // Exploit payloads put control bytes into otherwise textual logs (a WebDAV overflow
    // request is mostly `\x02\xb1`): a sample whose lines still mostly parse is text.
    if is_binary(text) && v.matched * 2 <= v.sampled {
        return because(Sniffed::Unsupported("binary"), "binary");
    }
    if json_start(body) {
        return if looks_cloudtrail(body) {
            because(
                Sniffed::Format(Format::CloudTrail),
                "JSON with CloudTrail record fields",
            )
        } else {
            because(
                Sniffed::Format(Format::Json),
                "JSON (starts with '{' or '[')",
            )
        };
    }
    if body.starts_with(b"#Software: Microsoft Internet Information Services")
        || body.starts_with(b"#Fields:")
        || (body.starts_with(b"#Version:") && contains(body, b"#Fields:"))
        || (body.starts_with(b"#") && contains(body, b"\n#Fields: date time"))
    {
        return because(Sniffed::Format(Format::Iis), "IIS W3C #Fields header");
    }
    let det = Detection {
        reason: v.reason(),
        generic: v.best() == 0,
        resembles: (v.best() == 0).then(|| resembles(body)).flatten(),
    };
    (Sniffed::Format(v.format), det)
}

/// `{`, or `[` followed by what a JSON array of objects starts with (`[Sun Dec 04 …]` of an
/// Apache error log and `[section]` of an ini file are text).
pub(crate) fn json_start(body: &[u8]) -> bool {
    match body.first() {
        Some(b'{') => true,
        Some(b'[') => {
            let rest = body.get(1..).unwrap_or_default();
            let next = rest.iter().find(|b| !b.is_ascii_whitespace());
            matches!(
                next,
                Some(b'{') | Some(b'[') | Some(b']') | Some(b'"') | None
            )
        }
        _ => false,
    }
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b)
}

/// NULs or many control bytes. Invalid UTF-8 alone is not binary: Latin-1 logs exist, and
/// attack traffic puts raw bytes into otherwise textual access logs.
fn is_binary(b: &[u8]) -> bool {
    if b.is_empty() {
        return false;
    }
    let control = b
        .iter()
        .filter(|&&c| {
            (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b | 0x1d)) || c == 0x7f
        })
        .count();
    let nul = b.iter().filter(|&&c| c == 0).count();
    // A few NULs in a text log (a binary request line) are tolerated; a tenth of the sample is not.
    control * 10 > b.len() || nul * 100 > b.len() || (nul > 0 && !b.contains(&b'\n'))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

fn looks_cloudtrail(body: &[u8]) -> bool {
    let ct_fields = contains(body, b"\"eventVersion\"")
        || (contains(body, b"\"eventSource\"") && contains(body, b"\"eventName\""));
    ct_fields
        && (contains(body, b"\"Records\"")
            || contains(body, b"\"awsRegion\"")
            || contains(body, b"amazonaws.com"))
}

/// The result of the line vote.
struct Vote {
    format: Format,
    access: usize,
    audit: usize,
    sys: usize,
    errlog: usize,
    matched: usize,
    sampled: usize,
}

impl Vote {
    fn best(&self) -> usize {
        self.access.max(self.audit).max(self.sys + self.errlog)
    }

    fn reason(&self) -> String {
        let n = self.sampled;
        if self.best() == 0 {
            return format!("none of the first {n} lines matched a known format");
        }
        let (k, what) = match self.format {
            Format::AccessLog => (self.access, "access-log"),
            Format::Auditd => (self.audit, "auditd"),
            _ if self.errlog > self.sys => (self.errlog, "web server error-log"),
            _ => (self.sys, "syslog"),
        };
        format!("{k} of the first {n} lines look like {what} lines")
    }
}

/// The format most sample lines have, with the counts of the vote.
fn vote(body: &[u8], path: Option<&Path>) -> Vote {
    let (mut access, mut audit, mut sys, mut errlog, mut sampled) = (0, 0, 0, 0, 0);
    // A last line without its newline may be cut off by the sample size: it only votes when
    // it is the only line.
    let complete = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) if !body.ends_with(b"\n") => body.get(..i).unwrap_or(body),
        _ => body,
    };
    for line in sample_lines(complete) {
        sampled += 1;
        if access::looks_like(line) {
            access += 1;
        } else if auditd::looks_like(line) {
            audit += 1;
        } else if syslog::looks_like(line) || crate::vendor::looks_like(line) {
            sys += 1;
        } else if syslog::errorlog::looks_like(line) {
            errlog += 1;
        }
    }
    let ext = path
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    // Error-log lines are read by the syslog reader.
    let sys_like = sys + errlog;
    let best = access.max(audit).max(sys_like);
    let matched = access + audit + sys_like;
    let format = if best == 0 {
        // Generic text: read line by line as syslog-ish (see the module doc).
        Format::Syslog
    } else if access == best
        && ((ext.contains("access") || ext.contains("httpd")) || (audit < best && sys_like < best))
    {
        Format::AccessLog
    } else if audit == best && (ext.contains("audit") || sys_like < best) {
        Format::Auditd
    } else if sys_like == best {
        Format::Syslog
    } else if access == best {
        Format::AccessLog
    } else {
        Format::Auditd
    };
    Vote {
        format,
        access,
        audit,
        sys,
        errlog,
        matched,
        sampled,
    }
}

fn sample_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .take(VOTE_LINES)
}

/// What a generic-text sample resembles, when most of its lines share a shape Mamori does not
/// parse: the operator is warned that its fields are not read.
fn resembles(body: &[u8]) -> Option<&'static str> {
    let lines: Vec<&[u8]> = sample_lines(body).collect();
    if lines.is_empty() {
        return None;
    }
    let most = |f: &dyn Fn(&[u8]) -> bool| lines.iter().filter(|l| f(l)).count() * 2 > lines.len();
    if most(&|l| contains(l, b"CEF:")) {
        return Some("CEF");
    }
    if most(&|l| contains(l, b"LEEF:")) {
        return Some("LEEF");
    }
    if most(&|l| {
        lossy_words(l)
            .filter(|w| w.split_once('=').is_some_and(|(k, _)| is_key(k)))
            .count()
            >= 3
    }) {
        return Some("key=value pairs");
    }
    if most(&|l| l.first() == Some(&b'<') && !syslog::looks_like(l)) {
        return Some("XML");
    }
    let commas = |l: &[u8]| l.iter().filter(|&&b| b == b',').count();
    let first = commas(lines.first().copied().unwrap_or_default());
    if first >= 3 && most(&|l| commas(l) == first) {
        return Some("CSV");
    }
    if most(&|l| contains(l, b"{\"")) {
        return Some("JSON inside text lines");
    }
    None
}

fn lossy_words(l: &[u8]) -> impl Iterator<Item = &str> {
    l.split(|b| b.is_ascii_whitespace())
        .filter_map(|w| std::str::from_utf8(w).ok())
}

fn is_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 40
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
