//! Sigma wildcard patterns (`*`, `?`) matched directly, without building a regex: a few bytes
//! per pattern instead of a compiled automaton, and linear-time matching for the common shapes.

use mamori_sigma::Piece;

/// One pattern position: a character (already folded unless cased), `?`, or `*`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Char(char),
    One,
    Star,
}

/// A compiled wildcard pattern; case-insensitive unless `cased`.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    toks: Box<[Tok]>,
    cased: bool,
    /// For ASCII patterns without `?`: the literal runs between stars, lowercased unless cased,
    /// and whether the pattern is anchored at its start / end. Matched by sequential substring
    /// search, linear in the text.
    segments: Option<Segments>,
    /// A character of the pattern is non-ASCII after case folding: no ASCII text can match
    /// (ASCII text folds to ASCII), which spares scanning most command lines for lookalike
    /// letters (Cyrillic `а` for `a`).
    non_ascii: bool,
}

#[derive(Debug, Clone)]
struct Segments {
    parts: Vec<Vec<u8>>,
    anchored_start: bool,
    anchored_end: bool,
}

/// Case-insensitive (ASCII) or exact substring search from `from`; returns the end of the match.
fn find(hay: &[u8], needle: &[u8], from: usize, cased: bool) -> Option<usize> {
    let first = *needle.first()?;
    let n = needle.len();
    let mut i = from;
    while i + n <= hay.len() {
        let rel = if cased {
            memchr::memchr(first, &hay[i..])
        } else {
            memchr::memchr2(
                first.to_ascii_lowercase(),
                first.to_ascii_uppercase(),
                &hay[i..],
            )
        }?;
        let at = i + rel;
        if at + n > hay.len() {
            return None;
        }
        let cand = &hay[at..at + n];
        if (cased && cand == needle) || (!cased && cand.eq_ignore_ascii_case(needle)) {
            return Some(at + n);
        }
        i = at + 1;
    }
    None
}

impl Segments {
    fn is_match(&self, t: &[u8], cased: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if cased {
                a == b
            } else {
                a.eq_ignore_ascii_case(b)
            }
        };
        let last = self.parts.len().saturating_sub(1);
        let mut pos = 0usize;
        for (k, seg) in self.parts.iter().enumerate() {
            if k == 0 && self.anchored_start {
                if t.len() < seg.len() || !eq(&t[..seg.len()], seg) {
                    return false;
                }
                pos = seg.len();
                if k == last && self.anchored_end {
                    return pos == t.len();
                }
            } else if k == last && self.anchored_end {
                return t.len() >= pos + seg.len() && eq(&t[t.len() - seg.len()..], seg);
            } else {
                match find(t, seg, pos, cased) {
                    Some(end) => pos = end,
                    None => return false,
                }
            }
        }
        true
    }
}

fn fold(c: char) -> char {
    if c.is_ascii() {
        c.to_ascii_lowercase()
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
}

impl Glob {
    pub(crate) fn new(pieces: &[Piece], cased: bool) -> Glob {
        let mut toks = Vec::new();
        for p in pieces {
            match p {
                Piece::Lit(s) => toks.extend(
                    s.chars()
                        .map(|c| Tok::Char(if cased { c } else { fold(c) })),
                ),
                Piece::Any => toks.push(Tok::Star),
                Piece::One => toks.push(Tok::One),
            }
        }
        let simple = toks.iter().all(|t| match t {
            Tok::Char(c) => c.is_ascii(),
            Tok::One => false,
            Tok::Star => true,
        });
        let segments = simple.then(|| {
            let mut parts = Vec::new();
            let mut cur = Vec::new();
            for t in &toks {
                match t {
                    Tok::Char(c) => cur.push(*c as u8),
                    _ => {
                        if !cur.is_empty() {
                            parts.push(std::mem::take(&mut cur));
                        }
                    }
                }
            }
            if !cur.is_empty() {
                parts.push(cur);
            }
            Segments {
                parts,
                anchored_start: toks.first().is_some_and(|t| *t != Tok::Star),
                anchored_end: toks.last().is_some_and(|t| *t != Tok::Star),
            }
        });
        let non_ascii = toks
            .iter()
            .any(|t| matches!(t, Tok::Char(c) if !c.is_ascii()));
        Glob {
            toks: toks.into(),
            cased,
            segments,
            non_ascii,
        }
    }

    pub(crate) fn is_match(&self, text: &str) -> bool {
        if let Some(seg) = &self.segments {
            // An ASCII pattern: non-ASCII text bytes can only meet `*`, so bytes suffice.
            return seg.is_match(text.as_bytes(), self.cased);
        }
        if text.is_ascii() {
            if self.non_ascii {
                return false;
            }
            let b = text.as_bytes();
            if self.cased {
                self.run(b.len(), |i| b[i] as char)
            } else {
                self.run(b.len(), |i| b[i].to_ascii_lowercase() as char)
            }
        } else {
            let t: Vec<char> = if self.cased {
                text.chars().collect()
            } else {
                text.chars().map(fold).collect()
            };
            self.run(t.len(), |i| t[i])
        }
    }

    /// The classic two-pointer wildcard match with backtracking to the last star
    /// (O(n·m) worst case, linear for the usual shapes).
    fn run(&self, len: usize, at: impl Fn(usize) -> char) -> bool {
        let pat = &self.toks;
        let (mut p, mut i) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while i < len {
            match pat.get(p) {
                Some(Tok::Char(c)) if *c == at(i) => {
                    p += 1;
                    i += 1;
                }
                Some(Tok::One) => {
                    p += 1;
                    i += 1;
                }
                Some(Tok::Star) => {
                    star = Some((p, i));
                    p += 1;
                }
                _ => match star {
                    Some((sp, si)) => {
                        p = sp + 1;
                        i = si + 1;
                        star = Some((sp, si + 1));
                    }
                    None => return false,
                },
            }
        }
        while let Some(Tok::Star) = pat.get(p) {
            p += 1;
        }
        p == pat.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_sigma::Pattern;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(&Pattern::parse(p).0, false).is_match(t)
    }

    #[test]
    fn wildcards() {
        assert!(m("a*c?e", "ABBBCDE"));
        assert!(!m("a*c?e", "abce"));
        assert!(m(
            r"*\appdata\\*\x.exe",
            "C:\\Users\\u\\AppData\\Local\\x.exe"
        ));
        assert!(!m(r"*\appdata\\*\x.exe", "C:\\AppData\\x.exe"));
        assert!(m("*", ""));
        assert!(m("a*", "a"));
        assert!(!m("a?", "a"));
        assert!(m("*a*a*a", "xaxaxaxa"));
        assert!(m("ÄB*", "äbc"), "non-ASCII case folding");
        assert!(!Glob::new(&Pattern::parse("Ab*").0, true).is_match("abc"));
        assert!(m("a\\*b", "a*b"));
        assert!(m("a*b", "a\nb"));
    }

    /// A non-ASCII pattern character never matches ASCII text, except through case folding
    /// (the Kelvin sign folds to `k`), which the early exit must not break.
    #[test]
    fn non_ascii_patterns_against_ascii_text() {
        assert!(!m("*а*", "powershell -c calc"), "Cyrillic а is not ASCII a");
        assert!(m("*а*", "xАx"));
        assert!(m("*\u{212A}*", "kelvin"), "the Kelvin sign folds to k");
        assert!(m("?", "k"));
    }
}
