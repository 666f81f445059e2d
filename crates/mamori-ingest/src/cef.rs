//! ArcSight CEF (`CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|ext`) and IBM QRadar
//! LEEF 1.0 (`LEEF:1.0|Vendor|Product|Version|EventID|ext`, tab-separated) and 2.0 (a sixth
//! header field names the delimiter: a character, or its hex code `x09`/`0x5E`).
//!
//! Header fields unescape `\|` and `\\`. An extension value runs up to the next `key=` (CEF
//! values may contain spaces) and unescapes `\=`, `\\`, `\n`, `\r`. Every extension key is kept
//! under its own name, and `csNLabel=foo csN=bar` also gives `foo=bar` (labels that are plain
//! identifiers only). [`crate::vendor`] maps the result onto ECS.

use std::borrow::Cow;

/// A parsed CEF or LEEF record.
#[derive(Debug, Clone)]
pub(crate) struct Record<'a> {
    pub(crate) leef: bool,
    pub(crate) version: &'a str,
    pub(crate) vendor: Cow<'a, str>,
    pub(crate) product: Cow<'a, str>,
    pub(crate) product_version: Cow<'a, str>,
    /// CEF signature id / LEEF event id.
    pub(crate) event_id: Cow<'a, str>,
    /// CEF only.
    pub(crate) name: Option<Cow<'a, str>>,
    /// CEF only (0–10, or `Low`/`Medium`/`High`/`Very-High`).
    pub(crate) severity: Option<Cow<'a, str>>,
    pub(crate) ext: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl Record<'_> {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.ext
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// Where a CEF or LEEF record starts in a message (`CEF:0|`, `LEEF:1.0|`, `LEEF:2.0|`), which
/// may follow a tag or prefix (`ASM:CEF:0|…`).
pub(crate) fn find_start(msg: &str) -> Option<usize> {
    for pat in ["CEF:", "LEEF:"] {
        let mut from = 0;
        while let Some(i) = msg.get(from..).and_then(|s| s.find(pat)) {
            let at = from + i;
            let after = msg.get(at + pat.len()..).unwrap_or_default();
            let ver_len = after
                .bytes()
                .take_while(|b| b.is_ascii_digit() || *b == b'.')
                .count();
            if ver_len > 0 && ver_len <= 4 && after.as_bytes().get(ver_len) == Some(&b'|') {
                return Some(at);
            }
            from = at + pat.len();
            if from > 512 {
                break;
            }
        }
    }
    None
}

/// Parses a record that starts at `CEF:`/`LEEF:`; `None` if the header is incomplete.
pub(crate) fn parse(s: &str) -> Option<Record<'_>> {
    let (leef, rest) = if let Some(r) = s.strip_prefix("CEF:") {
        (false, r)
    } else {
        (true, s.strip_prefix("LEEF:")?)
    };
    let n_header = if leef { 5 } else { 7 };
    let mut fields: Vec<Cow<'_, str>> = Vec::with_capacity(n_header);
    let mut rest = rest;
    while fields.len() < n_header {
        let (f, r) = header_field(rest)?;
        fields.push(f);
        rest = r;
    }
    let mut it = fields.into_iter();
    let version = match it.next()? {
        Cow::Borrowed(v) => v,
        Cow::Owned(_) => return None,
    };
    let vendor = it.next()?;
    let product = it.next()?;
    let product_version = it.next()?;
    let event_id = it.next()?;
    let (name, severity) = if leef {
        (None, None)
    } else {
        (it.next(), it.next())
    };
    let mut delim = if leef { '\t' } else { ' ' };
    if leef && version.starts_with('2') {
        // LEEF 2.0: the delimiter field, then the extension.
        if let Some((d, r)) = rest.split_once('|') {
            if let Some(c) = delimiter(d) {
                delim = c;
                rest = r;
            }
        }
    }
    // LEEF 1.0 in the wild is often space-separated: use spaces when there is no tab.
    if delim == '\t' && !rest.contains('\t') {
        delim = ' ';
    }
    Some(Record {
        leef,
        version,
        vendor,
        product,
        product_version,
        event_id,
        name,
        severity,
        ext: extension(rest, delim),
    })
}

fn delimiter(d: &str) -> Option<char> {
    let hex = d
        .strip_prefix("0x")
        .or_else(|| d.strip_prefix("0X"))
        .or_else(|| d.strip_prefix('x'))
        .or_else(|| d.strip_prefix('X'));
    if let Some(h) = hex {
        return u32::from_str_radix(h, 16).ok().and_then(char::from_u32);
    }
    let mut chars = d.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// One `|`-terminated header field with `\|` and `\\` unescaped.
fn header_field(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut owned: Option<String> = None;
    let mut start = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' if matches!(b.get(i + 1), Some(b'|') | Some(b'\\')) => {
                let o = owned.get_or_insert_with(String::new);
                o.push_str(s.get(start..i)?);
                start = i + 1;
                i += 2;
            }
            b'|' => {
                let v = match owned {
                    Some(mut o) => {
                        o.push_str(s.get(start..i)?);
                        Cow::Owned(o)
                    }
                    None => Cow::Borrowed(s.get(..i)?),
                };
                return Some((v, s.get(i + 1..)?));
            }
            _ => i += 1,
        }
    }
    None
}

fn ext_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'[' | b']')
}

/// If a key followed by `=` starts at byte `i` of `b`, its length.
fn key_at(b: &[u8], i: usize) -> Option<usize> {
    let n = b.get(i..)?.iter().take_while(|&&c| ext_key_byte(c)).count();
    (n > 0 && n <= 64 && b.get(i + n) == Some(&b'=')).then_some(n)
}

/// The extension: `key=value` pairs; a value ends where `delim` is followed by another key.
fn extension(s: &str, delim: char) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let mut out: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    let b = s.as_bytes();
    let dl = delim.len_utf8();
    // Starts of `key=` tokens: at the start, or right after a delimiter.
    let mut i = 0;
    while i < b.len()
        && (b.get(i) == Some(&b' ') || s.get(i..).is_some_and(|r| r.starts_with(delim)))
    {
        i += if b.get(i) == Some(&b' ') { 1 } else { dl };
    }
    let Some(first) = key_at(b, i) else {
        return out;
    };
    // (key start, value start) of the pair being read.
    let mut cur = Some((i, i + first + 1));
    let mut pos = i + first + 1;
    while pos <= b.len() {
        let at_delim = s.get(pos..).is_some_and(|r| r.starts_with(delim));
        let escaped = pos > 0 && b.get(pos - 1) == Some(&b'\\');
        if pos == b.len() || (at_delim && !escaped && key_at(b, pos + dl).is_some()) {
            if let Some((ks, vs)) = cur {
                let key = s.get(ks..vs - 1).unwrap_or_default();
                let raw = s.get(vs..pos).unwrap_or_default();
                let raw = if delim == ' ' { raw.trim_end() } else { raw };
                out.push((Cow::Borrowed(key), unescape(raw)));
            }
            if pos == b.len() {
                break;
            }
            let ks = pos + dl;
            let n = key_at(b, ks).unwrap_or(0);
            cur = Some((ks, ks + n + 1));
            pos = ks + n + 1;
            continue;
        }
        pos += s
            .get(pos..)
            .and_then(|r| r.chars().next())
            .map_or(1, char::len_utf8);
    }
    // `csNLabel=name csN=value` → also `name=value`.
    let mut labelled = Vec::new();
    for (k, label) in &out {
        if let Some(base) = k.strip_suffix("Label") {
            let ok = !label.is_empty()
                && label.len() <= 64
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_');
            if ok {
                if let Some((_, v)) = out.iter().find(|(k2, _)| k2 == base) {
                    labelled.push((Cow::Owned(label.to_string()), v.clone()));
                }
            }
        }
    }
    out.extend(labelled);
    out
}

fn unescape(v: &str) -> Cow<'_, str> {
    if !v.contains('\\') {
        return Cow::Borrowed(v);
    }
    let mut o = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        match chars.next() {
            Some('=') => o.push('='),
            Some('\\') => o.push('\\'),
            Some('n') => o.push('\n'),
            Some('r') => o.push('\r'),
            Some('|') => o.push('|'),
            Some(other) => {
                o.push('\\');
                o.push(other);
            }
            None => o.push('\\'),
        }
    }
    Cow::Owned(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cef_header_and_extension_with_spaces_and_escapes() {
        let s = r"CEF:0|Security|threat\|manager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 msg=a b\=c d cs1Label=policy_name cs1=My Policy";
        let r = parse(s).unwrap();
        assert!(!r.leef);
        assert_eq!(r.product, "threat|manager");
        assert_eq!(r.name.as_deref(), Some("worm successfully stopped"));
        assert_eq!(r.get("msg"), Some("a b=c d"));
        assert_eq!(r.get("src"), Some("10.0.0.1"));
        assert_eq!(r.get("policy_name"), Some("My Policy"));
    }

    #[test]
    fn leef_1_tabs_and_2_custom_delimiter() {
        let r = parse("LEEF:1.0|Microsoft|MSExchange|4.0 SP1|15345|src=192.0.2.0\tdst=172.50.123.1\tusrName=joe user").unwrap();
        assert!(r.leef);
        assert_eq!(r.event_id, "15345");
        assert_eq!(r.get("usrName"), Some("joe user"));
        let r = parse("LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=10.0.1.8^dst=10.0.0.5^sev=5")
            .unwrap();
        assert_eq!(r.get("dst"), Some("10.0.0.5"));
        assert_eq!(r.get("sev"), Some("5"));
        let r = parse("LEEF:2.0|V|P|1|E|x09|a=1\tb=2").unwrap();
        assert_eq!(r.get("b"), Some("2"));
    }

    #[test]
    fn start_after_a_tag_and_garbage_never_panics() {
        assert_eq!(find_start("ASM:CEF:0|F5|ASM|1|x|y|2|a=b"), Some(4));
        assert_eq!(find_start("no CEF: here"), None);
        for s in [
            "CEF:0|",
            "CEF:0|a|b|c|d|e|f|",
            "LEEF:2.0|a|b|c|d|",
            "CEF:0|a|b|c|d|e|f|=x y=",
            "LEEF:2.0|a|b|c|d|xZZ|k=v",
            "CEF:0|a|b|c|d|e|f|k=\\",
        ] {
            let _ = parse(s);
        }
        assert!(parse("CEF:0|a|b").is_none());
    }
}
