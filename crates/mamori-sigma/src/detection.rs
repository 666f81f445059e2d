//! Detection items: YAML `field|mod1|mod2: values` → a boolean expression of [`Test`]s.
//!
//! All modifier semantics live here (wildcards and escapes, contains/startswith/endswith,
//! all, base64/base64offset, utf16/wide, windash, re with flags, cidr, exists, cased, expand,
//! fieldref, numeric comparisons, neq, timestamp parts), so the matcher only sees normalised
//! tests.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;

use crate::error::{ErrorKind, PResult, Problem};
use crate::placeholders::Placeholders;
use crate::yaml::{Node, NodeKind, Scalar};

/// One piece of a Sigma string: literal text or a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Piece {
    Lit(String),
    /// `*`: any sequence of characters, including none.
    Any,
    /// `?`: exactly one character.
    One,
}

/// A Sigma string value after escapes were resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Pattern(pub Vec<Piece>);

impl Pattern {
    /// Parses Sigma string syntax: `*`, `?` wildcards; `\` escapes only `*`, `?` and `\`.
    pub fn parse(s: &str) -> Pattern {
        // Literal runs are copied whole (was a push per character: #16, rule loading).
        let mut p = Pattern::default();
        let b = s.as_bytes();
        let mut run = 0; // start of the literal text not yet pushed
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\\' if matches!(b.get(i + 1), Some(b'*' | b'?' | b'\\')) => {
                    // The escaped character starts the next literal run.
                    p.push_str(&s[run..i]);
                    run = i + 1;
                    i += 2;
                }
                c @ (b'*' | b'?') => {
                    p.push_str(&s[run..i]);
                    p.push_piece(if c == b'*' { Piece::Any } else { Piece::One });
                    i += 1;
                    run = i;
                }
                _ => i += 1,
            }
        }
        p.push_str(&s[run..]);
        p
    }

    fn push_str(&mut self, t: &str) {
        if t.is_empty() {
            return;
        }
        if let Some(Piece::Lit(s)) = self.0.last_mut() {
            s.push_str(t);
        } else {
            self.0.push(Piece::Lit(t.to_owned()));
        }
    }

    pub fn literal(s: &str) -> Pattern {
        let mut p = Pattern::default();
        if !s.is_empty() {
            p.0.push(Piece::Lit(s.to_owned()));
        }
        p
    }

    fn push_char(&mut self, c: char) {
        if let Some(Piece::Lit(s)) = self.0.last_mut() {
            s.push(c);
        } else {
            self.0.push(Piece::Lit(c.to_string()));
        }
    }

    fn push_piece(&mut self, piece: Piece) {
        // `**` is the same as `*`.
        if piece == Piece::Any && self.0.last() == Some(&Piece::Any) {
            return;
        }
        self.0.push(piece);
    }

    pub fn has_wildcards(&self) -> bool {
        self.0.iter().any(|p| !matches!(p, Piece::Lit(_)))
    }

    /// The literal text when the pattern has no wildcards.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Lit(s) => out.push_str(s),
                _ => return None,
            }
        }
        Some(out)
    }

    fn starts_any(&self) -> bool {
        self.0.first() == Some(&Piece::Any)
    }

    fn ends_any(&self) -> bool {
        self.0.last() == Some(&Piece::Any)
    }

    fn map_literals(&self, f: impl Fn(&str) -> String) -> Pattern {
        Pattern(
            self.0
                .iter()
                .map(|p| match p {
                    Piece::Lit(s) => Piece::Lit(f(s)),
                    other => other.clone(),
                })
                .collect(),
        )
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            match p {
                Piece::Lit(s) => {
                    for c in s.chars() {
                        if matches!(c, '*' | '?' | '\\') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                }
                Piece::Any => f.write_str("*")?,
                Piece::One => f.write_str("?")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimePart {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefMode {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

/// An IP network, matched numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid CIDR `{s}`: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid CIDR `{s}`: bad prefix length"))?,
            None => max,
        };
        let c = Cidr { addr, prefix };
        if c.network_of(addr) != raw(addr) {
            return Err(format!("invalid CIDR `{s}`: host bits are set"));
        }
        Ok(c)
    }

    /// The address with its host bits cleared.
    fn network_of(&self, a: IpAddr) -> u128 {
        let width: u32 = if a.is_ipv4() { 32 } else { 128 };
        let host = width - u32::from(self.prefix);
        if host >= 128 {
            0
        } else {
            (raw(a) >> host) << host
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address is compared as IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && self.network_of(ip) == raw(self.addr)
    }
}

fn raw(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// One test on one field (or, for keywords, on any field).
#[derive(Debug, Clone)]
pub enum Test {
    /// Sigma string match; case-insensitive unless `cased`.
    Str {
        pattern: Pattern,
        cased: bool,
    },
    /// A regular expression (already validated), with the text it was built from.
    Regex {
        source: String,
        regex: regex::Regex,
    },
    /// Numeric equality with a YAML number; a string field holding that number also matches.
    NumEq(f64),
    Cmp(CmpOp, f64),
    Bool(bool),
    /// `field: null` (and `field: []`): the field is absent or null. `''` is not null: it is
    /// a string test for the empty value (Sigma spec, "Special Field Values").
    Null,
    Exists(bool),
    Cidr(Cidr),
    FieldRef {
        field: String,
        mode: RefMode,
    },
    TimePart(TimePart, i64),
}

impl Test {
    /// A canonical text used to deduplicate identical tests across rules.
    pub fn key(&self) -> String {
        match self {
            Test::Str { pattern, cased } => format!("s{}:{pattern}", u8::from(*cased)),
            Test::Regex { source, .. } => format!("r:{source}"),
            Test::NumEq(n) => format!("n={n}"),
            Test::Cmp(op, n) => format!("c{op:?}{n}"),
            Test::Bool(b) => format!("b:{b}"),
            Test::Null => "null".into(),
            Test::Exists(b) => format!("e:{b}"),
            Test::Cidr(c) => format!("cidr:{}/{}", c.addr, c.prefix),
            Test::FieldRef { field, mode } => format!("f{mode:?}:{field}"),
            Test::TimePart(p, v) => format!("t{p:?}:{v}"),
        }
    }
}

/// A boolean expression over tests bound to fields.
#[derive(Debug, Clone)]
pub enum Expr {
    /// `field: None` means a keyword test (any field / the message).
    Test {
        field: Option<String>,
        test: Test,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// Constant (e.g. an empty `all` list).
    Const(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    Contains,
    StartsWith,
    EndsWith,
    All,
    Base64,
    Base64Offset,
    Utf16Le,
    Utf16Be,
    Utf16,
    Windash,
    Re,
    ReI,
    ReM,
    ReS,
    Cidr,
    Exists,
    Cased,
    Expand,
    FieldRef,
    Cmp(CmpOp),
    Neq,
    Time(TimePart),
}

fn parse_modifier(s: &str) -> Option<Modifier> {
    Some(match s {
        "contains" => Modifier::Contains,
        "startswith" => Modifier::StartsWith,
        "endswith" => Modifier::EndsWith,
        "all" => Modifier::All,
        "base64" => Modifier::Base64,
        "base64offset" => Modifier::Base64Offset,
        "utf16le" | "wide" => Modifier::Utf16Le,
        "utf16be" => Modifier::Utf16Be,
        "utf16" => Modifier::Utf16,
        "windash" => Modifier::Windash,
        "re" => Modifier::Re,
        "i" | "ignorecase" => Modifier::ReI,
        "m" | "multiline" => Modifier::ReM,
        "s" | "dotall" => Modifier::ReS,
        "cidr" => Modifier::Cidr,
        "exists" => Modifier::Exists,
        "cased" => Modifier::Cased,
        "expand" => Modifier::Expand,
        "fieldref" => Modifier::FieldRef,
        "gt" => Modifier::Cmp(CmpOp::Gt),
        "gte" => Modifier::Cmp(CmpOp::Gte),
        "lt" => Modifier::Cmp(CmpOp::Lt),
        "lte" => Modifier::Cmp(CmpOp::Lte),
        "neq" => Modifier::Neq,
        "minute" => Modifier::Time(TimePart::Minute),
        "hour" => Modifier::Time(TimePart::Hour),
        "day" => Modifier::Time(TimePart::Day),
        "week" => Modifier::Time(TimePart::Week),
        "month" => Modifier::Time(TimePart::Month),
        "year" => Modifier::Time(TimePart::Year),
        _ => return None,
    })
}

/// Parses one selection body (a map, a list of maps, or a keyword list) into an expression.
pub(crate) fn parse_selection(node: &Node, ph: &Placeholders) -> PResult<Expr> {
    match &node.kind {
        NodeKind::Map(entries) => {
            let mut items = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let key = k.scalar_text().unwrap_or_default();
                items.push(parse_item(&key, v, k.pos.line, ph)?);
            }
            Ok(and(items))
        }
        NodeKind::Seq(seq) => {
            if seq.iter().all(|n| matches!(n.kind, NodeKind::Scalar(_))) {
                // A keyword list: values ORed, searched in every field.
                return parse_item("", node, node.pos.line, ph);
            }
            let mut alts = Vec::with_capacity(seq.len());
            for n in seq {
                alts.push(match &n.kind {
                    NodeKind::Map(_) => parse_selection(n, ph)?,
                    NodeKind::Scalar(_) => parse_item("", n, n.pos.line, ph)?,
                    NodeKind::Seq(_) => {
                        return Err(Problem::at(
                            n.pos.line,
                            ErrorKind::Schema,
                            "a selection list may hold maps or values, not nested lists",
                        ))
                    }
                });
            }
            Ok(Expr::Or(alts))
        }
        NodeKind::Scalar(_) => parse_item("", node, node.pos.line, ph),
    }
}

fn and(mut items: Vec<Expr>) -> Expr {
    if items.len() == 1 {
        items.remove(0)
    } else {
        Expr::And(items)
    }
}

fn or(mut items: Vec<Expr>) -> Expr {
    if items.len() == 1 {
        items.remove(0)
    } else {
        Expr::Or(items)
    }
}

/// A value as written in YAML.
#[derive(Debug, Clone)]
enum Raw {
    Str(String),
    Num(f64, String),
    Bool(bool),
    Null,
}

fn raw_values(node: &Node) -> PResult<Vec<Raw>> {
    let one = |n: &Node| -> PResult<Raw> {
        match &n.kind {
            NodeKind::Scalar(Scalar::Str { text, .. }) => Ok(Raw::Str(text.clone())),
            NodeKind::Scalar(Scalar::Int(i)) => Ok(Raw::Num(*i as f64, i.to_string())),
            NodeKind::Scalar(Scalar::Float(f)) => Ok(Raw::Num(*f, f.to_string())),
            NodeKind::Scalar(Scalar::Bool(b)) => Ok(Raw::Bool(*b)),
            NodeKind::Scalar(Scalar::Null) => Ok(Raw::Null),
            _ => Err(Problem::at(
                n.pos.line,
                ErrorKind::Schema,
                format!("expected a value, found a {}", n.kind_name()),
            )),
        }
    };
    match &node.kind {
        NodeKind::Seq(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(node)?]),
    }
}

fn parse_item(key: &str, node: &Node, line: usize, ph: &Placeholders) -> PResult<Expr> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let field = (!field.is_empty()).then(|| field.to_owned());
    let mut mods = Vec::new();
    for m in parts {
        let md = parse_modifier(m).ok_or_else(|| {
            Problem::at(
                line,
                ErrorKind::Value,
                format!("unknown modifier `{m}` in `{key}`"),
            )
        })?;
        mods.push(md);
    }
    let err = |msg: String| Problem::at(line, ErrorKind::Value, format!("`{key}`: {msg}"));
    let values = raw_values(node)?;
    let has = |m: Modifier| mods.contains(&m);

    if has(Modifier::Exists) {
        if field.is_none() {
            return Err(err("`exists` needs a field".into()));
        }
        return match values.as_slice() {
            [Raw::Bool(b)] => Ok(Expr::Test {
                field,
                test: Test::Exists(*b),
            }),
            [Raw::Str(s)] if s == "true" || s == "false" => Ok(Expr::Test {
                field,
                test: Test::Exists(s == "true"),
            }),
            _ => Err(err("`exists` takes one boolean".into())),
        };
    }
    if has(Modifier::Cidr) && field.is_none() {
        return Err(err("`cidr` needs a field".into()));
    }
    if has(Modifier::Windash) && has(Modifier::All) {
        return Err(err("`windash` cannot be combined with `all`".into()));
    }
    let re_flags = [Modifier::ReI, Modifier::ReM, Modifier::ReS];
    if mods.iter().any(|m| re_flags.contains(m)) && !has(Modifier::Re) {
        return Err(err("regex flags `i`, `m`, `s` need `re`".into()));
    }
    if values.is_empty() {
        // `field: []` is null.
        return Ok(match field {
            Some(_) => Expr::Test {
                field,
                test: Test::Null,
            },
            None => Expr::Const(false),
        });
    }

    let mut groups = Vec::with_capacity(values.len());
    for v in values {
        let variants = value_tests(&v, &mods, field.is_some(), ph).map_err(err)?;
        groups.push(or(variants
            .into_iter()
            .map(|test| Expr::Test {
                field: field.clone(),
                test,
            })
            .collect()));
    }
    let combined = if has(Modifier::All) {
        and(groups)
    } else {
        or(groups)
    };
    Ok(if has(Modifier::Neq) {
        Expr::Not(Box::new(combined))
    } else {
        combined
    })
}

/// The tests (ORed variants) one YAML value turns into under a modifier chain.
fn value_tests(
    v: &Raw,
    mods: &[Modifier],
    has_field: bool,
    ph: &Placeholders,
) -> Result<Vec<Test>, String> {
    // Value types that ignore string modifiers.
    if let Some(Modifier::Cmp(op)) = mods.iter().find(|m| matches!(m, Modifier::Cmp(_))) {
        let n = match v {
            Raw::Num(n, _) => *n,
            Raw::Str(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("`{op:?}` needs a number, found `{s}`").to_lowercase())?,
            _ => return Err("numeric comparison needs a number".into()),
        };
        return Ok(vec![Test::Cmp(*op, n)]);
    }
    if let Some(Modifier::Time(part)) = mods.iter().find(|m| matches!(m, Modifier::Time(_))) {
        let n = match v {
            Raw::Num(n, _) => *n as i64,
            Raw::Str(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| "time part needs a number".to_string())?,
            _ => return Err("time part needs a number".into()),
        };
        return Ok(vec![Test::TimePart(*part, n)]);
    }
    if mods.contains(&Modifier::FieldRef) {
        let Raw::Str(other) = v else {
            return Err("`fieldref` needs a field name".into());
        };
        if other.contains(['*', '?']) {
            return Err("`fieldref` value may not contain wildcards".into());
        }
        let mode = if mods.contains(&Modifier::Contains) {
            RefMode::Contains
        } else if mods.contains(&Modifier::StartsWith) {
            RefMode::StartsWith
        } else if mods.contains(&Modifier::EndsWith) {
            RefMode::EndsWith
        } else {
            RefMode::Equals
        };
        return Ok(vec![Test::FieldRef {
            field: other.clone(),
            mode,
        }]);
    }
    if mods.contains(&Modifier::Cidr) {
        let s = match v {
            Raw::Str(s) => s.clone(),
            Raw::Num(_, t) => t.clone(),
            _ => return Err("`cidr` needs a network".into()),
        };
        return Ok(vec![Test::Cidr(Cidr::parse(&s)?)]);
    }
    if mods.contains(&Modifier::Re) {
        return regex_tests(v, mods).map(|t| vec![t]);
    }
    let stringy = mods.iter().any(|m| {
        !matches!(
            m,
            Modifier::All | Modifier::Neq | Modifier::Cased | Modifier::Expand
        )
    });
    let text = match v {
        Raw::Null => {
            if !has_field {
                return Err("a keyword cannot be null".into());
            }
            return Ok(vec![Test::Null]);
        }
        Raw::Bool(b) if !stringy => return Ok(vec![Test::Bool(*b)]),
        Raw::Bool(b) => b.to_string(),
        Raw::Num(n, _) if !stringy => return Ok(vec![Test::NumEq(*n)]),
        Raw::Num(_, t) => t.clone(),
        Raw::Str(s) => s.clone(),
    };

    // Placeholders are recognised only with `expand`.
    let texts = if mods.contains(&Modifier::Expand) {
        ph.expand(&text)?
    } else {
        vec![text]
    };
    let mut patterns: Vec<Pattern> = texts.iter().map(|t| Pattern::parse(t)).collect();
    let cased = mods.contains(&Modifier::Cased);
    // After a utf16 transform, literals hold one byte per char (the BOM is U+00FF U+00FE).
    let mut byte_mode = false;
    for m in mods {
        if matches!(m, Modifier::Utf16Le | Modifier::Utf16Be | Modifier::Utf16) {
            byte_mode = true;
        }
        patterns = match m {
            Modifier::Contains => patterns
                .into_iter()
                .map(|mut p| {
                    if !p.starts_any() {
                        p.0.insert(0, Piece::Any);
                    }
                    if !p.ends_any() {
                        p.0.push(Piece::Any);
                    }
                    p
                })
                .collect(),
            Modifier::StartsWith => patterns
                .into_iter()
                .map(|mut p| {
                    if !p.ends_any() {
                        p.0.push(Piece::Any);
                    }
                    p
                })
                .collect(),
            Modifier::EndsWith => patterns
                .into_iter()
                .map(|mut p| {
                    if !p.starts_any() {
                        p.0.insert(0, Piece::Any);
                    }
                    p
                })
                .collect(),
            Modifier::Utf16Le => patterns
                .into_iter()
                .map(|p| utf16(&p, false, false))
                .collect::<Result<_, _>>()?,
            Modifier::Utf16Be => patterns
                .into_iter()
                .map(|p| utf16(&p, true, false))
                .collect::<Result<_, _>>()?,
            Modifier::Utf16 => patterns
                .into_iter()
                .map(|p| utf16(&p, false, true))
                .collect::<Result<_, _>>()?,
            Modifier::Windash => patterns.iter().flat_map(windash).collect(),
            Modifier::Base64 => patterns
                .iter()
                .map(|p| {
                    let lit = p
                        .as_literal()
                        .ok_or("`base64` value may not contain wildcards")?;
                    Ok::<_, String>(Pattern::literal(
                        &base64::engine::general_purpose::STANDARD
                            .encode(to_bytes(&lit, byte_mode)),
                    ))
                })
                .collect::<Result<_, _>>()?,
            Modifier::Base64Offset => {
                let mut out = Vec::new();
                for p in &patterns {
                    let lit = p
                        .as_literal()
                        .ok_or("`base64offset` value may not contain wildcards")?;
                    out.extend(
                        base64_offsets(&to_bytes(&lit, byte_mode))
                            .into_iter()
                            .map(|s| Pattern::literal(&s)),
                    );
                }
                out
            }
            _ => patterns,
        };
    }
    Ok(patterns
        .into_iter()
        .map(|pattern| Test::Str { pattern, cased })
        .collect())
}

fn to_bytes(s: &str, byte_mode: bool) -> Vec<u8> {
    if byte_mode {
        s.chars().map(|c| c as u32 as u8).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

fn regex_tests(v: &Raw, mods: &[Modifier]) -> Result<Test, String> {
    let Raw::Str(src) = v else {
        return Err("`re` needs a string".into());
    };
    for m in mods {
        if !matches!(
            m,
            Modifier::Re
                | Modifier::ReI
                | Modifier::ReM
                | Modifier::ReS
                | Modifier::Contains
                | Modifier::StartsWith
                | Modifier::EndsWith
                | Modifier::All
                | Modifier::Neq
                | Modifier::Cased
        ) {
            return Err(format!("`re` cannot be combined with `{m:?}`").to_lowercase());
        }
    }
    // Regexes are searched (unanchored), so `contains` needs nothing; `startswith` and
    // `endswith` add the anchor unless the author already wrote one.
    let mut body = src.clone();
    if mods.contains(&Modifier::StartsWith) && !body.starts_with('^') {
        body = format!("^(?:{body})");
    } else if mods.contains(&Modifier::EndsWith) && (!body.ends_with('$') || body.ends_with("\\$"))
    {
        body = format!("(?:{body})$");
    }
    let mut flags = String::new();
    if mods.contains(&Modifier::ReI) {
        flags.push('i');
    }
    if mods.contains(&Modifier::ReM) {
        flags.push('m');
    }
    if mods.contains(&Modifier::ReS) {
        flags.push('s');
    }
    let full = if flags.is_empty() {
        body
    } else {
        format!("(?{flags}){body}")
    };
    let regex = regex::RegexBuilder::new(&full)
        .size_limit(8 << 20)
        .build()
        .map_err(|e| {
            format!(
                "invalid regular expression `{src}`: {}",
                first_line(&e.to_string())
            )
        })?;
    Ok(Test::Regex {
        source: full,
        regex,
    })
}

fn first_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.last().copied().unwrap_or(s).trim().to_owned()
}

fn utf16(p: &Pattern, be: bool, bom: bool) -> Result<Pattern, String> {
    let mut out = p.map_literals(|s| {
        let mut o = String::with_capacity(s.len() * 2);
        for c in s.chars() {
            if be {
                o.push('\0');
                o.push(c);
            } else {
                o.push(c);
                o.push('\0');
            }
        }
        o
    });
    if p.0
        .iter()
        .any(|x| matches!(x, Piece::Lit(s) if !s.is_ascii()))
    {
        return Err("`utf16`/`wide` supports ASCII values only".into());
    }
    if bom {
        out.0.insert(0, Piece::Lit("\u{ff}\u{fe}".into()));
        // The BOM bytes are FF FE; represented here as the two Latin-1 characters.
    }
    Ok(out)
}

/// base64 of the value at offsets 0, 1, 2 with the unstable edge characters trimmed.
pub fn base64_offsets(value: &[u8]) -> Vec<String> {
    let eng = &base64::engine::general_purpose::STANDARD;
    let start = [0usize, 2, 3];
    let end = [0usize, 3, 2];
    (0..3)
        .map(|i| {
            let mut buf = vec![b' '; i];
            buf.extend_from_slice(value);
            let enc = eng.encode(&buf);
            let trim_end = end[(value.len() + i) % 3];
            let stop = enc.len().saturating_sub(trim_end);
            enc.get(start[i]..stop).unwrap_or_default().to_owned()
        })
        .collect()
}

const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// All variants of a pattern with each option-leading `-` or `/` replaced by every dash form.
fn windash(p: &Pattern) -> Vec<Pattern> {
    // Flatten to (char or wildcard) to find positions with their neighbours.
    enum C {
        Ch(char),
        W(Piece),
    }
    let mut flat = Vec::new();
    for piece in &p.0 {
        match piece {
            Piece::Lit(s) => flat.extend(s.chars().map(C::Ch)),
            w => flat.push(C::W(w.clone())),
        }
    }
    let is_word = |c: Option<&C>| matches!(c, Some(C::Ch(c)) if c.is_alphanumeric() || *c == '_');
    let positions: Vec<usize> = (0..flat.len())
        .filter(|&i| {
            matches!(flat[i], C::Ch('-') | C::Ch('/'))
                && !is_word(if i == 0 { None } else { flat.get(i - 1) })
                && is_word(flat.get(i + 1))
        })
        .collect();
    if positions.is_empty() || positions.len() > 4 {
        return vec![p.clone()];
    }
    let mut out = Vec::new();
    let combos = DASHES.len().pow(positions.len() as u32);
    for mut n in 0..combos {
        let mut pat = Pattern::default();
        let mut choice = vec![0usize; positions.len()];
        for c in choice.iter_mut().rev() {
            *c = n % DASHES.len();
            n /= DASHES.len();
        }
        for (i, c) in flat.iter().enumerate() {
            match c {
                C::Ch(ch) => match positions.iter().position(|&p| p == i) {
                    Some(k) => pat.push_char(DASHES[choice[k]]),
                    None => pat.push_char(*ch),
                },
                C::W(w) => pat.push_piece(w.clone()),
            }
        }
        out.push(pat);
    }
    out
}

#[cfg(test)]
mod tests;
