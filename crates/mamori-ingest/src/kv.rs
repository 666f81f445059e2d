//! Generic `key=value` lines, as FortiGate, SonicWall, Sophos, Pulse Secure (WELF) and many
//! other appliances write them: `date=2016-06-15 time=21:35:09 devname="FW 1" user="bob" …`.
//!
//! Values are either bare (up to the next space) or double-quoted with `\"` and `\\` escapes.
//! Keys are identifier-like (`[A-Za-z0-9_.:-]`, starting with a letter or `_`); text before the
//! first pair (a syslog-ish prefix a forwarder added) is skipped, and a token that is not a pair
//! in the middle of the line is kept with the value before it only when the value was bare
//! (FortiOS 3 writes `time=10: 13:03`). Nothing here panics on any input.

use std::borrow::Cow;

/// One pair. The value borrows from the line unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: Cow<'a, str>,
}

/// The pairs of a line, in order; duplicates are kept (lookups take the first).
#[derive(Debug, Default, Clone)]
pub(crate) struct Pairs<'a> {
    pub(crate) pairs: Vec<Pair<'a>>,
    /// Text before the first pair (a prefix such as `Mar 22 19:21:00 10.10.10.10`), trimmed.
    pub(crate) prefix: &'a str,
    /// Free text after the last pair that is not itself a pair (FortiAuthenticator, Pulse).
    pub(crate) trailer: &'a str,
}

impl<'a> Pairs<'a> {
    /// The first value of `key`, if any (exact, case-sensitive: appliance keys are lowercase).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_ref())
    }

    /// The first value of `key` that means something: not empty, `N/A`, `-`, `(null)`.
    pub(crate) fn meaningful(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| meaningful(v))
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|p| p.key == key)
    }

    pub(crate) fn len(&self) -> usize {
        self.pairs.len()
    }
}

/// A value that carries information (appliances write `N/A`, `-`, `(null)`, `""` for none).
pub(crate) fn meaningful(v: &str) -> bool {
    let v = v.trim();
    !(v.is_empty()
        || v == "-"
        || v.eq_ignore_ascii_case("n/a")
        || v.eq_ignore_ascii_case("(null)")
        || v.eq_ignore_ascii_case("none")
        || v.eq_ignore_ascii_case("unknown"))
}

fn key_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':')
}

/// Length of a key at the start of `s` followed by `=`, or `None`.
fn key_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !b.first().copied().is_some_and(key_start) {
        return None;
    }
    let n = b.iter().take_while(|&&c| key_byte(c)).count();
    if n > 64 || b.get(n) != Some(&b'=') {
        return None;
    }
    Some(n)
}

/// Parses a line into pairs. Never fails: a line without pairs gives an empty list.
pub(crate) fn parse(line: &str) -> Pairs<'_> {
    let mut out = Pairs::default();
    let mut rest = line;
    let mut started = false;
    let mut last_bare = false;
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            break;
        }
        let Some(klen) = key_len(trimmed) else {
            // Not a pair: a prefix before the first pair, free text at the end, or the tail
            // of a bare value that contained a space.
            let (tok, after) = match trimmed.find([' ', '\t']) {
                Some(i) => (
                    trimmed.get(..i).unwrap_or_default(),
                    trimmed.get(i..).unwrap_or_default(),
                ),
                None => (trimmed, ""),
            };
            if !started {
                rest = after;
                continue;
            }
            // Only glue a token to a bare value when a pair follows (`time=10: 13:03 x=1`).
            let next_is_pair = key_len(after.trim_start_matches([' ', '\t'])).is_some();
            if last_bare && next_is_pair && !tok.contains('"') {
                if let Some(p) = out.pairs.last_mut() {
                    let joined = format!("{} {tok}", p.value);
                    p.value = Cow::Owned(joined);
                }
                rest = after;
                continue;
            }
            out.trailer = trimmed.trim_end();
            break;
        };
        if !started {
            let consumed = line.len() - trimmed.len();
            out.prefix = line.get(..consumed).unwrap_or_default().trim();
            started = true;
        }
        let key = trimmed.get(..klen).unwrap_or_default();
        let after_eq = trimmed.get(klen + 1..).unwrap_or_default();
        if let Some(q) = after_eq.strip_prefix('"') {
            let (value, used) = quoted(q);
            out.pairs.push(Pair { key, value });
            rest = q.get(used..).unwrap_or_default();
            last_bare = false;
        } else {
            let end = after_eq.find([' ', '\t']).unwrap_or(after_eq.len());
            let value = after_eq.get(..end).unwrap_or_default();
            out.pairs.push(Pair {
                key,
                value: Cow::Borrowed(value),
            });
            rest = after_eq.get(end..).unwrap_or_default();
            last_bare = true;
        }
    }
    out
}

/// A quoted value after its opening quote: the value and the bytes used (closing quote
/// included). An unterminated quote takes the rest of the line.
fn quoted(s: &str) -> (Cow<'_, str>, usize) {
    let bytes = s.as_bytes();
    let mut owned: Option<String> = None;
    let mut i = 0;
    let mut start = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' if matches!(bytes.get(i + 1), Some(b'"') | Some(b'\\')) => {
                let o = owned.get_or_insert_with(String::new);
                o.push_str(s.get(start..i).unwrap_or_default());
                start = i + 1;
                i += 2;
            }
            b'"' => {
                let v = match owned {
                    Some(mut o) => {
                        o.push_str(s.get(start..i).unwrap_or_default());
                        Cow::Owned(o)
                    }
                    None => Cow::Borrowed(s.get(..i).unwrap_or_default()),
                };
                return (v, i + 1);
            }
            _ => i += 1,
        }
    }
    let v = match owned {
        Some(mut o) => {
            o.push_str(s.get(start..).unwrap_or_default());
            Cow::Owned(o)
        }
        None => Cow::Borrowed(s),
    };
    (v, s.len())
}

/// Whether a line is mostly `key=value` pairs: at least four pairs, and pairs make up most of
/// its tokens (so a sentence with one `a=b` in it is not a kv line).
pub(crate) fn looks_like(line: &str) -> bool {
    let p = parse(line);
    if p.len() < 4 {
        return false;
    }
    let tokens = line.split_whitespace().count().max(1);
    p.len() * 2 >= tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_quoted_escaped_and_prefix() {
        let p = parse(
            r#"Mar 22 19:21:00 10.1.1.1 date=2016-03-22 devname="FW \"1\"" user="" x=1 trailing words"#,
        );
        assert_eq!(p.prefix, "Mar 22 19:21:00 10.1.1.1");
        assert_eq!(p.get("date"), Some("2016-03-22"));
        assert_eq!(p.get("devname"), Some(r#"FW "1""#));
        assert_eq!(p.get("user"), Some(""));
        assert_eq!(p.meaningful("user"), None);
        assert_eq!(p.get("x"), Some("1"));
        assert_eq!(p.trailer, "trailing words");
    }

    #[test]
    fn a_spaced_bare_value_is_glued_when_a_pair_follows() {
        let p = parse("date=2011-07-24 time=10: 13:03 devname=D");
        assert_eq!(p.get("time"), Some("10: 13:03"));
        assert_eq!(p.get("devname"), Some("D"));
    }

    #[test]
    fn unterminated_quote_and_garbage_never_panic() {
        for s in [
            "a=\"x",
            "=",
            "a=",
            "a=\"\\",
            "é=1 ü=\"ß",
            "a=1 \"b=2",
            "\u{0}=\u{0}",
        ] {
            let _ = parse(s);
            let _ = looks_like(s);
        }
        assert_eq!(parse("a=\"x y").get("a"), Some("x y"));
    }

    #[test]
    fn looks_like_needs_mostly_pairs() {
        assert!(looks_like("a=1 b=2 c=3 d=4"));
        assert!(!looks_like(
            "the user a=1 logged in from b=2 to c=3 at d=4 today again yes"
        ));
        assert!(!looks_like("a=1 b=2"));
    }
}
