//! Required literals of a regular expression: strings of which at least one must occur in any
//! text the regex matches. They let a regex-only rule be skipped unless the cheap
//! Aho-Corasick pass saw one of its literals.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Shortest literal worth using as a trigger (shorter ones fire on almost every event).
const MIN_LEN: usize = 3;

/// An OR-set of lowercase ASCII literals, one of which every match contains; `None` when no
/// useful set exists.
pub(crate) fn required_literals(pattern: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let set = required(&hir)?;
    (!set.is_empty() && set.iter().all(|s| s.len() >= MIN_LEN) && set.len() <= 16).then_some(set)
}

/// One char a HIR node stands for, ignoring ASCII case (a literal byte, or a class like `[Aa]`).
fn single_char(h: &Hir) -> Option<char> {
    match h.kind() {
        HirKind::Literal(lit) => {
            let s = std::str::from_utf8(&lit.0).ok()?;
            let mut cs = s.chars();
            let c = cs.next()?;
            (cs.next().is_none() && c.is_ascii()).then(|| c.to_ascii_lowercase())
        }
        HirKind::Class(Class::Unicode(cls)) => {
            let r = cls.ranges();
            case_pair(r.iter().map(|x| (x.start(), x.end())).collect())
        }
        HirKind::Class(Class::Bytes(cls)) => {
            let r = cls.ranges();
            case_pair(
                r.iter()
                    .map(|x| (x.start() as char, x.end() as char))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// `[Aa]` (or `[a]`) → `a`.
fn case_pair(ranges: Vec<(char, char)>) -> Option<char> {
    let chars: Vec<char> = ranges.iter().flat_map(|(a, b)| (*a..=*b).take(3)).collect();
    match chars.as_slice() {
        [c] if c.is_ascii() => Some(c.to_ascii_lowercase()),
        [a, b] if a.is_ascii() && a.eq_ignore_ascii_case(b) => Some(a.to_ascii_lowercase()),
        // Unicode case folding adds e.g. the Kelvin sign to [Kk]: accept a third non-ASCII char.
        [a, b, c] if a.is_ascii() && a.eq_ignore_ascii_case(b) && !c.is_ascii() => {
            Some(a.to_ascii_lowercase())
        }
        _ => None,
    }
}

fn literal_text(h: &Hir) -> Option<String> {
    match h.kind() {
        HirKind::Literal(lit) => {
            let s = std::str::from_utf8(&lit.0).ok()?;
            s.is_ascii().then(|| s.to_ascii_lowercase())
        }
        _ => single_char(h).map(String::from),
    }
}

fn required(h: &Hir) -> Option<Vec<String>> {
    match h.kind() {
        HirKind::Literal(_) | HirKind::Class(_) => literal_text(h).map(|s| vec![s]),
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required(&r.sub),
        HirKind::Concat(items) => {
            let mut best: Option<Vec<String>> = None;
            let mut consider = |cand: Vec<String>| {
                let score = |v: &Vec<String>| v.iter().map(|s| s.len()).min().unwrap_or(0);
                if cand.iter().all(|s| !s.is_empty())
                    && best.as_ref().is_none_or(|b| score(&cand) > score(b))
                {
                    best = Some(cand);
                }
            };
            // Runs of adjacent literal characters form one literal.
            let mut run = String::new();
            for it in items {
                match literal_text(it) {
                    Some(t) => run.push_str(&t),
                    None => {
                        if !run.is_empty() {
                            consider(vec![std::mem::take(&mut run)]);
                        }
                        if let Some(sub) = required(it) {
                            consider(sub);
                        }
                    }
                }
            }
            if !run.is_empty() {
                consider(vec![run]);
            }
            best
        }
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(required(a)?);
            }
            all.sort();
            all.dedup();
            Some(all)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(p: &str) -> Option<Vec<String>> {
        required_literals(p)
    }

    #[test]
    fn finds_required_literals() {
        assert_eq!(req("abc.*def"), Some(vec!["abc".into()]));
        assert_eq!(
            req("(?i)\\\\Windows\\\\Temp\\\\[a-z]+\\.exe"),
            Some(vec!["\\windows\\temp\\".into()])
        );
        assert_eq!(
            req("(foo|barx)[0-9]"),
            Some(vec!["barx".into(), "foo".into()])
        );
        assert_eq!(req("(foo|b)[0-9]"), None, "a branch without a long literal");
        assert_eq!(req("[0-9]+"), None);
        assert_eq!(req("a*bcd"), Some(vec!["bcd".into()]));
        assert_eq!(req("(?:x)?yz"), None);
    }
}
