//! A small YAML tree with positions, built on yaml-rust2's event parser.
//!
//! Why not a serde YAML crate: Sigma needs three things they do not give together — the line of
//! every node for error messages, **rejection of duplicate keys** (a silently dropped second
//! `condition:` is a missed attack), and quote-safe typing: only plain scalars are typed, and
//! only conservatively (`on`, `yes`, `0755`, `1e3` stay strings; `true`, `false`, `null`, `~` and
//! plain decimal integers/floats are typed).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

mod fast;
#[cfg(test)]
mod fast_tests;

/// A position in the source (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Any string; `quoted` tells whether the author quoted it.
    Str {
        text: String,
        quoted: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

/// A YAML problem at a position.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// The text of a scalar key or value (numbers and booleans rendered as written would be;
    /// null as the empty string).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(match s {
                Scalar::Null => String::new(),
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Str { text, .. } => text.clone(),
            }),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(Scalar::Str { text, .. }) => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// Looks a key up in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(Scalar::Null) => "null",
            NodeKind::Scalar(Scalar::Bool(_)) => "boolean",
            NodeKind::Scalar(Scalar::Int(_)) | NodeKind::Scalar(Scalar::Float(_)) => "number",
            NodeKind::Scalar(Scalar::Str { .. }) => "string",
            NodeKind::Seq(_) => "list",
            NodeKind::Map(_) => "mapping",
        }
    }
}

/// Parses every document of a YAML stream.
///
/// Sigma rules use a small part of YAML; [`fast`] parses that part directly (several times
/// faster) and gives up on anything else, in which case the file goes through yaml-rust2. Both
/// paths feed the same [`Builder`], so typing, duplicate-key rejection and positions are shared;
/// the fast path's tokenising is checked against yaml-rust2 over the whole SigmaHQ corpus and
/// on generated inputs (see the tests).
pub fn parse_documents(src: &str) -> Result<Vec<Node>, YamlError> {
    match fast::parse(src) {
        Some(r) => r,
        None => parse_documents_slow(src),
    }
}

/// [`parse_documents`] through yaml-rust2 only (the reference the fast path is tested against).
pub(crate) fn parse_documents_slow(src: &str) -> Result<Vec<Node>, YamlError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(src);
    if let Err(e) = parser.load(&mut b, true) {
        let m = e.marker();
        return Err(YamlError {
            pos: Pos {
                line: m.line(),
                col: m.col() + 1,
            },
            message: e.info().to_owned(),
        });
    }
    b.finish()
}

enum Frame {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: Vec<(usize, Node)>,
    error: Option<YamlError>,
}

impl Builder {
    fn finish(self) -> Result<Vec<Node>, YamlError> {
        match self.error {
            Some(err) => Err(err),
            None => Ok(self.docs),
        }
    }

    fn fail(&mut self, pos: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError { pos, message });
        }
    }

    fn insert(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _, _)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    let dup = entries
                        .iter()
                        .any(|(k, _)| k.kind == key.kind && matches!(k.kind, NodeKind::Scalar(_)));
                    if dup {
                        let (pos, name) = (key.pos, key.scalar_text().unwrap_or_default());
                        entries.push((key, node));
                        self.fail(pos, format!("duplicate key `{name}`"));
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

fn pos_of(m: Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

impl Builder {
    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        tag: Option<&Tag>,
        anchor: usize,
        pos: Pos,
    ) {
        let scalar = type_scalar(text, style, tag);
        self.insert(
            Node {
                kind: NodeKind::Scalar(scalar),
                pos,
            },
            anchor,
        );
    }

    fn seq_start(&mut self, pos: Pos, anchor: usize) {
        self.stack.push(Frame::Seq(Vec::new(), pos, anchor))
    }

    fn seq_end(&mut self) {
        if let Some(Frame::Seq(items, p, anchor)) = self.stack.pop() {
            self.insert(
                Node {
                    kind: NodeKind::Seq(items),
                    pos: p,
                },
                anchor,
            );
        }
    }

    fn map_start(&mut self, pos: Pos, anchor: usize) {
        self.stack.push(Frame::Map(Vec::new(), None, pos, anchor))
    }

    fn map_end(&mut self) {
        if let Some(Frame::Map(entries, _, p, anchor)) = self.stack.pop() {
            self.insert(
                Node {
                    kind: NodeKind::Map(entries),
                    pos: p,
                },
                anchor,
            );
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = pos_of(mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                self.scalar(text, style, tag.as_ref(), anchor, pos)
            }
            Event::SequenceStart(anchor, _) => self.seq_start(pos, anchor),
            Event::SequenceEnd => self.seq_end(),
            Event::MappingStart(anchor, _) => self.map_start(pos, anchor),
            Event::MappingEnd => self.map_end(),
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, n)) => {
                    let n = n.clone();
                    self.insert(n, 0);
                }
                None => self.fail(pos, format!("unknown alias {id}")),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Types a scalar conservatively: quoted or tagged-`!!str` scalars are strings; plain scalars
/// become null/bool/number only in their canonical YAML 1.2 core spelling, and never when a
/// leading zero would change the text (`0755`).
fn type_scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Scalar {
    if style != TScalarStyle::Plain || tag.is_some_and(|t| t.suffix == "str") {
        return Scalar::Str { text, quoted: true };
    }
    // Only these first characters can start a typed scalar; most text is left as it is
    // without further checks (#16: this ran for every scalar of every rule).
    if !matches!(
        text.as_bytes().first(),
        None | Some(b'0'..=b'9' | b'-' | b'~' | b'n' | b'N' | b't' | b'T' | b'f' | b'F')
    ) {
        return Scalar::Str {
            text,
            quoted: false,
        };
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    if is_canonical_int(&text) {
        if let Ok(i) = text.parse::<i64>() {
            return Scalar::Int(i);
        }
    }
    if is_canonical_float(&text) {
        if let Ok(f) = text.parse::<f64>() {
            return Scalar::Float(f);
        }
    }
    Scalar::Str {
        text,
        quoted: false,
    }
}

fn is_canonical_int(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

fn is_canonical_float(t: &str) -> bool {
    let body = t.strip_prefix('-').unwrap_or(t);
    match body.bytes().position(|b| b == b'.') {
        Some(dot) => {
            let (int, frac) = (&body[..dot], &body[dot + 1..]);
            !int.is_empty()
                && !frac.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && (int == "0" || !int.starts_with('0'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Node {
        parse_documents(src).unwrap().remove(0)
    }

    #[test]
    fn duplicate_keys_are_rejected_with_line() {
        let err =
            parse_documents("a: 1\ndetection:\n  condition: x\n  condition: y\n").unwrap_err();
        assert_eq!(err.pos.line, 4);
        assert!(err.message.contains("duplicate key `condition`"), "{err:?}");
    }

    #[test]
    fn quote_safe_typing() {
        let n =
            one("a: on\nb: 0755\nc: '12'\nd: 12\ne: yes\nf: true\ng: ~\nh: 1.5\ni: 1e3\nj: -4\n");
        let s = |k: &str| match &n.get(k).unwrap().kind {
            NodeKind::Scalar(s) => s.clone(),
            _ => panic!(),
        };
        assert!(matches!(s("a"), Scalar::Str { ref text, quoted: false } if text == "on"));
        assert!(matches!(s("b"), Scalar::Str { ref text, .. } if text == "0755"));
        assert!(matches!(s("c"), Scalar::Str { quoted: true, .. }));
        assert_eq!(s("d"), Scalar::Int(12));
        assert!(matches!(s("e"), Scalar::Str { .. }));
        assert_eq!(s("f"), Scalar::Bool(true));
        assert_eq!(s("g"), Scalar::Null);
        assert_eq!(s("h"), Scalar::Float(1.5));
        assert!(matches!(s("i"), Scalar::Str { .. }));
        assert_eq!(s("j"), Scalar::Int(-4));
    }

    #[test]
    fn multi_documents_and_positions() {
        let docs = parse_documents("title: a\n---\ntitle: b\nx:\n  - 1\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].get("x").unwrap().pos.line, 5);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse_documents("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
    }

    /// `type_scalar` rejects most text on its first character (#16); the full check it used
    /// before is the oracle, over all strings of up to 4 characters from an alphabet of the
    /// characters that matter, and the words YAML types.
    #[test]
    fn plain_scalar_typing_matches_the_full_check() {
        fn reference(text: &str) -> Scalar {
            match text {
                "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
                "true" | "True" | "TRUE" => return Scalar::Bool(true),
                "false" | "False" | "FALSE" => return Scalar::Bool(false),
                _ => {}
            }
            if is_canonical_int(text) {
                if let Ok(i) = text.parse::<i64>() {
                    return Scalar::Int(i);
                }
            }
            let body = text.strip_prefix('-').unwrap_or(text);
            if let Some((int, frac)) = body.split_once('.') {
                let canonical = !int.is_empty()
                    && !frac.is_empty()
                    && int.bytes().all(|b| b.is_ascii_digit())
                    && frac.bytes().all(|b| b.is_ascii_digit())
                    && (int == "0" || !int.starts_with('0'));
                if canonical {
                    if let Ok(f) = text.parse::<f64>() {
                        return Scalar::Float(f);
                    }
                }
            }
            Scalar::Str {
                text: text.to_owned(),
                quoted: false,
            }
        }
        let alphabet = [
            "0", "1", "9", "-", ".", "+", "~", "e", "a", "n", "t", "F", " ", "é",
        ];
        let mut strings = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(last.iter().cloned());
        }
        for w in [
            "null",
            "Null",
            "NULL",
            "nULL",
            "true",
            "True",
            "TRUE",
            "tRUE",
            "false",
            "False",
            "FALSE",
            "fAlse",
            "-0",
            "-0.0",
            "00",
            "0.50",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "1.7976931348623157e308",
            "nan",
            "inf",
            "-.5",
            "5.",
            ".5",
            "1_000",
        ] {
            strings.push(w.to_owned());
        }
        for s in &strings {
            assert_eq!(
                type_scalar(s.clone(), TScalarStyle::Plain, None),
                reference(s),
                "{s:?}"
            );
        }
    }

    #[test]
    fn aliases_are_expanded() {
        let n = one("a: &x [1, 2]\nb: *x\n");
        assert_eq!(n.get("a"), n.get("b"));
    }
}
