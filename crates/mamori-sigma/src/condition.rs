//! The condition grammar: `and`/`or`/`not`, parentheses, `1 of`/`any of`/`all of` with `them`
//! or a `prefix*` pattern. Precedence: not > and > or. Keywords are lowercase only.

use crate::error::{ErrorKind, PResult, Problem};

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Ref(String),
    OneOf(Target),
    AllOf(Target),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Them,
    Pattern(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    And,
    Or,
    Not,
    LParen,
    RParen,
    OneOf,
    AllOf,
    Pipe,
}

fn tokenize(s: &str, line: usize) -> PResult<Vec<Tok>> {
    let mut toks = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            toks.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            toks.push(Tok::RParen);
            i += 1;
        } else if c == '|' {
            toks.push(Tok::Pipe);
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '*' || c == '-' || c == '.' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '*' | '-' | '.'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            toks.push(match word.as_str() {
                "and" => Tok::And,
                "or" => Tok::Or,
                "not" => Tok::Not,
                _ => Tok::Ident(word),
            });
        } else {
            return Err(Problem::at(
                line,
                ErrorKind::Condition,
                format!("unexpected character `{c}` in condition `{s}`"),
            ));
        }
    }
    // Fold `1 of` / `any of` / `all of`.
    let mut out = Vec::with_capacity(toks.len());
    let mut it = toks.into_iter().peekable();
    while let Some(t) = it.next() {
        match (&t, it.peek()) {
            (Tok::Ident(w), Some(Tok::Ident(of)))
                if of == "of" && (w == "1" || w == "any" || w == "all") =>
            {
                it.next();
                out.push(if w == "all" { Tok::AllOf } else { Tok::OneOf });
            }
            _ => out.push(t),
        }
    }
    Ok(out)
}

/// Parses a condition string.
pub fn parse_condition(s: &str, line: usize) -> PResult<Cond> {
    if s.contains('|') {
        return Err(Problem::at(
            line,
            ErrorKind::Condition,
            "the `| count() …` aggregation syntax is deprecated: use a correlation rule",
        ));
    }
    let toks = tokenize(s, line)?;
    let mut p = P {
        toks,
        i: 0,
        line,
        src: s,
    };
    let c = p.or()?;
    if p.i != p.toks.len() {
        return Err(p.err("unexpected token after the end of the expression"));
    }
    Ok(c)
}

struct P<'a> {
    toks: Vec<Tok>,
    i: usize,
    line: usize,
    src: &'a str,
}

impl P<'_> {
    fn err(&self, msg: &str) -> Problem {
        Problem::at(
            self.line,
            ErrorKind::Condition,
            format!("{msg} in condition `{}` (token {})", self.src, self.i + 1),
        )
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn or(&mut self) -> PResult<Cond> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.i += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Cond::Or(items)
        })
    }

    fn and(&mut self) -> PResult<Cond> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Tok::And) {
            self.i += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Cond::And(items)
        })
    }

    fn unary(&mut self) -> PResult<Cond> {
        match self.peek().cloned() {
            Some(Tok::Not) => {
                self.i += 1;
                Ok(Cond::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.i += 1;
                let c = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(self.err("expected `)`"));
                }
                self.i += 1;
                Ok(c)
            }
            Some(t @ (Tok::OneOf | Tok::AllOf)) => {
                self.i += 1;
                let target = match self.peek().cloned() {
                    Some(Tok::Ident(w)) if w == "them" => Target::Them,
                    Some(Tok::Ident(w)) => Target::Pattern(w),
                    _ => return Err(self.err("expected `them` or a selection pattern after `of`")),
                };
                self.i += 1;
                Ok(if t == Tok::OneOf {
                    Cond::OneOf(target)
                } else {
                    Cond::AllOf(target)
                })
            }
            Some(Tok::Ident(w)) => {
                self.i += 1;
                Ok(Cond::Ref(w))
            }
            Some(_) => Err(self.err("expected a selection name, `not`, `(` or `1 of`/`all of`")),
            None => Err(self.err("unexpected end")),
        }
    }
}

/// Whether a selection name matches an `of` pattern (`*` wildcard, full match).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|k| rec(rest, &n[k..])),
            Some((c, rest)) => n.first() == Some(c) && rec(rest, &n[1..]),
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Cond {
        Cond::Ref(s.into())
    }

    #[test]
    fn precedence_not_and_or() {
        let c = parse_condition("a or not b and c", 1).unwrap();
        assert_eq!(
            c,
            Cond::Or(vec![
                r("a"),
                Cond::And(vec![Cond::Not(Box::new(r("b"))), r("c")])
            ])
        );
    }

    #[test]
    fn of_forms() {
        assert_eq!(
            parse_condition("1 of selection_* and not all of them", 1).unwrap(),
            Cond::And(vec![
                Cond::OneOf(Target::Pattern("selection_*".into())),
                Cond::Not(Box::new(Cond::AllOf(Target::Them)))
            ])
        );
        assert_eq!(
            parse_condition("any of them", 1).unwrap(),
            Cond::OneOf(Target::Them)
        );
    }

    #[test]
    fn errors() {
        assert!(parse_condition("a and", 3)
            .unwrap_err()
            .message
            .contains("unexpected end"));
        assert!(parse_condition("(a", 3).is_err());
        assert!(parse_condition("a | count() > 5", 3)
            .unwrap_err()
            .message
            .contains("deprecated"));
        // Upper-case operators are identifiers, so `a AND b` has trailing tokens.
        assert!(parse_condition("a AND b", 1).is_err());
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("selection_*", "selection_a"));
        assert!(!pattern_matches("selection", "selection_a"));
        assert!(pattern_matches("*", "x"));
    }
}
