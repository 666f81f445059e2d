//! A direct parser for the part of YAML that Sigma rules use, feeding the same [`Builder`] as
//! the yaml-rust2 path (issue #16: yaml-rust2's scanner was ~⅓ of rule-loading instructions).
//!
//! Accepted: block mappings and sequences (incl. `- key: value` items and sequences at their
//! key's indentation), one-line flow sequences of scalars, one-line plain, single- and
//! double-quoted scalars (with every escape yaml-rust2 knows), `|` and `>` block scalars with
//! `-`/`+` chomping, comments, and `---` between documents.
//!
//! Everything else — anchors, aliases, tags, flow mappings, multi-line plain or quoted
//! scalars, empty values, tabs, CR, NUL, a BOM, `...`, directives, explicit indentation
//! indicators, over- or under-indented lines, anything that would be a syntax error — returns
//! `None` ("not sure"), and the caller parses the file with yaml-rust2. The rule is: this code
//! may give up on any input, but when it answers, the answer is the one yaml-rust2 gives.

use yaml_rust2::scanner::TScalarStyle;

use super::{Builder, Node, Pos, YamlError};

/// Not sure: parse this file with yaml-rust2.
struct Bail;

type R<T = ()> = Result<T, Bail>;

/// Parses `src`, or returns `None` when it uses YAML outside the subset.
pub(super) fn parse(src: &str) -> Option<Result<Vec<Node>, YamlError>> {
    if has_unsupported_bytes(src.as_bytes()) {
        return None;
    }
    let mut p = Fast {
        src,
        s: src.as_bytes(),
        p: 0,
        line: 1,
        line_start: 0,
        b: Builder::default(),
    };
    p.stream().ok()?;
    Some(p.b.finish())
}

struct Fast<'a> {
    src: &'a str,
    s: &'a [u8],
    /// Current byte offset.
    p: usize,
    /// 1-based line of `p`, and the offset where that line starts.
    line: usize,
    line_start: usize,
    b: Builder,
}

/// Whether `s` holds a tab, CR, NUL or a BOM (U+FEFF, `EF BB BF`): the fast path leaves
/// those to yaml-rust2. Eight bytes at a time: these bytes are rare, the scan is per file.
pub(super) fn has_unsupported_bytes(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let byte_at = |i: usize| s.get(i).copied().unwrap_or(0);
    let check = |i: usize| match s[i] {
        b'\t' | b'\r' | 0 => true,
        0xEF => byte_at(i + 1) == 0xBB && byte_at(i + 2) == 0xBF,
        _ => false,
    };
    let mut chunks = s.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        if (has_zero(w)
            || has_zero(w ^ (ONES * 0x09))
            || has_zero(w ^ (ONES * 0x0D))
            || has_zero(w ^ (ONES * 0xEF)))
            && (base..base + 8).any(check)
        {
            return true;
        }
        base += 8;
    }
    (base..s.len()).any(check)
}

fn blank_or_end(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | 0)
}

impl Fast<'_> {
    /// The byte at `i`, or 0 past the end (NUL bytes in the input were rejected up front).
    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    /// Position of byte offset `i` on the current line, with yaml-rust2's columns (characters).
    fn pos(&self, i: usize) -> Pos {
        let prefix = &self.s[self.line_start..i];
        let col = if prefix.is_ascii() {
            prefix.len()
        } else {
            self.src[self.line_start..i].chars().count()
        };
        Pos {
            line: self.line,
            col: col + 1,
        }
    }

    /// Moves `p` past the end of the current line (past its `\n`, if any).
    fn next_line(&mut self) {
        match self.s[self.p..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.p += n + 1;
                self.line += 1;
                self.line_start = self.p;
            }
            None => {
                self.p = self.s.len();
                self.line_start = self.p;
            }
        }
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.p;
        while self.at(self.p) == b' ' {
            self.p += 1;
        }
        self.p - start
    }

    /// After a node on the current line: only spaces and a comment may follow; moves to the next
    /// line.
    fn end_of_line(&mut self) -> R {
        let spaces = self.skip_spaces();
        match self.at(self.p) {
            b'\n' | 0 => {}
            b'#' if spaces > 0 => {}
            _ => return Err(Bail),
        }
        self.next_line();
        Ok(())
    }

    /// From the start of a line, skips empty and comment lines. Returns the indentation of the
    /// next content line (leaving `p` at that line's start), or `None` at the end.
    fn skip_blank_lines(&mut self) -> Option<usize> {
        debug_assert_eq!(self.p, self.line_start);
        loop {
            let start = self.p;
            let indent = self.skip_spaces();
            match self.at(self.p) {
                0 => {
                    self.line_start = self.p;
                    return None;
                }
                b'\n' | b'#' => self.next_line(),
                _ => {
                    self.p = start;
                    return Some(indent);
                }
            }
        }
    }

    /// Whether the line at `p` (its start) is `---` or `...` followed by a blank or the end.
    fn at_document_marker(&self) -> Option<u8> {
        let c = self.at(self.p);
        (matches!(c, b'-' | b'.')
            && self.at(self.p + 1) == c
            && self.at(self.p + 2) == c
            && blank_or_end(self.at(self.p + 3)))
        .then_some(c)
    }

    fn stream(&mut self) -> R {
        // After a `---` line a document must follow (an empty one is left to yaml-rust2).
        let mut started = false;
        loop {
            let Some(indent) = self.skip_blank_lines() else {
                return if started { Err(Bail) } else { Ok(()) };
            };
            if indent != 0 {
                return Err(Bail);
            }
            match self.at_document_marker() {
                Some(b'-') => {
                    if started {
                        return Err(Bail);
                    }
                    self.p += 3;
                    self.skip_spaces();
                    if !matches!(self.at(self.p), b'\n' | 0) {
                        return Err(Bail);
                    }
                    self.next_line();
                    started = true;
                    continue;
                }
                Some(_) => return Err(Bail),
                None => {}
            }
            if self.at(self.p) == b'-' && blank_or_end(self.at(self.p + 1)) {
                self.block_seq(0, false)?;
            } else {
                self.block_map(0)?;
            }
            started = false;
            // The root collection ends only at the end or at a `---` line, which the loop takes.
        }
    }

    /// A block mapping whose first key is at `p`, in column `m` (0-based).
    fn block_map(&mut self, m: usize) -> R {
        let first = self.key_at(self.p).ok_or(Bail)?;
        // yaml-rust2 marks a block mapping at its first key's `:`.
        self.b.map_start(self.pos(first.2), 0);
        let mut key = Some(first);
        loop {
            let k = match key.take() {
                Some(k) => k,
                None => self.key_at(self.p).ok_or(Bail)?,
            };
            self.map_entry(m, k)?;
            match self.skip_blank_lines() {
                None => break,
                Some(i) if i == m => {
                    if i == 0 && self.at_document_marker().is_some() {
                        break;
                    }
                    self.p += i;
                }
                Some(i) if i < m => break,
                Some(_) => return Err(Bail),
            }
        }
        self.b.map_end();
        Ok(())
    }

    /// One `key: value` entry; `p` is at the key (already scanned by [`Self::key_at`]), the
    /// mapping is in column `m`. Leaves `p` at the start of the line after the value.
    fn map_entry(&mut self, m: usize, (text, style, colon): (String, TScalarStyle, usize)) -> R {
        let key_pos = self.pos(self.p);
        self.b.scalar(text, style, None, 0, key_pos);
        self.p = colon + 1;
        self.value(m, true)
    }

    /// If a mapping key (a one-line plain or quoted scalar followed by `:` and a blank) starts
    /// at `i`, returns its text, style and the offset of its `:`.
    fn key_at(&self, i: usize) -> Option<(String, TScalarStyle, usize)> {
        let c = self.at(i);
        let (text, style, colon) = if c == b'\'' || c == b'"' {
            let (text, end) = self.quoted(i).ok()?;
            let style = if c == b'\'' {
                TScalarStyle::SingleQuoted
            } else {
                TScalarStyle::DoubleQuoted
            };
            (text, style, end)
        } else {
            if !plain_start(c, self.at(i + 1)) {
                return None;
            }
            let colon = self.plain_end(i)?;
            let colon = match colon {
                PlainEnd::Colon(c) => c,
                PlainEnd::Line(_) => return None,
            };
            if self.s[colon - 1] == b' ' {
                return None;
            }
            (self.src[i..colon].to_owned(), TScalarStyle::Plain, colon)
        };
        // yaml-rust2 limits simple keys to 1024 characters; stay well inside.
        (self.at(colon) == b':' && blank_or_end(self.at(colon + 1)) && colon - i < 1000)
            .then_some((text, style, colon))
    }

    /// Scans a block-context plain scalar from `i` on its line: where it ends, either at a
    /// `:` followed by a blank (a key) or at the end of the line / a ` #` comment (returning
    /// the end of its text, trailing spaces excluded). `None` if nothing is there.
    fn plain_end(&self, i: usize) -> Option<PlainEnd> {
        let mut j = i;
        let mut text_end = i;
        loop {
            match self.at(j) {
                b'\n' | 0 => break,
                b'#' if j > i && self.s[j - 1] == b' ' => break,
                b':' if blank_or_end(self.at(j + 1)) => return Some(PlainEnd::Colon(j)),
                b' ' => {}
                _ => text_end = j + 1,
            }
            j += 1;
        }
        (text_end > i).then_some(PlainEnd::Line(text_end))
    }

    /// The value after a `key:` (or a `- ` whose item is not a mapping): `p` is on the same
    /// line, after the indicator; `n` is the column of the enclosing collection. Leaves `p` at
    /// the start of the next line.
    fn value(&mut self, n: usize, in_map: bool) -> R {
        let spaces = self.skip_spaces();
        let c = self.at(self.p);
        if c == b'\n' || c == 0 || (c == b'#' && spaces > 0) {
            self.next_line();
            return self.nested(n, in_map);
        }
        if spaces == 0 && c != b'\n' {
            // `key:x` is not a key; `-x` is not an entry. The callers never get here.
            return Err(Bail);
        }
        match c {
            b'[' => {
                self.flow_seq()?;
                self.end_of_line()
            }
            b'\'' | b'"' => {
                let pos = self.pos(self.p);
                self.quoted_scalar(c, pos)?;
                self.end_of_line()
            }
            b'|' | b'>' => self.block_scalar(n),
            _ => {
                if !plain_start(c, self.at(self.p + 1)) {
                    return Err(Bail);
                }
                let Some(PlainEnd::Line(end)) = self.plain_end(self.p) else {
                    return Err(Bail);
                };
                let pos = self.pos(self.p);
                self.b.scalar(
                    self.src[self.p..end].to_owned(),
                    TScalarStyle::Plain,
                    None,
                    0,
                    pos,
                );
                self.p = end;
                // A continuation line would be more indented than `n`: the collection loops
                // give up on those.
                self.end_of_line()
            }
        }
    }

    /// A value on the lines after `key:` / `-`: a more indented mapping or sequence, or (for a
    /// mapping value) a sequence at the key's indentation. `n` is the enclosing collection's
    /// column.
    fn nested(&mut self, n: usize, in_map: bool) -> R {
        let Some(i) = self.skip_blank_lines() else {
            return Err(Bail); // empty value
        };
        let dash = self.at(self.p + i) == b'-' && blank_or_end(self.at(self.p + i + 1));
        if i > n || (i == n && in_map && dash && !(i == 0 && self.at_document_marker().is_some())) {
            self.p += i;
            if dash {
                self.block_seq(i, i == n)
            } else {
                self.block_map(i)
            }
        } else {
            Err(Bail) // empty value
        }
    }

    /// A block sequence whose first `-` is at `p`, column `s`; `indentless` when it sits at its
    /// mapping key's indentation (it then ends at the next key).
    fn block_seq(&mut self, s: usize, indentless: bool) -> R {
        if indentless {
            // yaml-rust2 marks an indentless sequence where its first entry's content starts
            // (after the `-`, blanks and a comment).
            let mut q = self.p + 1;
            while self.at(q) == b' ' {
                q += 1;
            }
            if self.at(q) == b'#' {
                while !matches!(self.at(q), b'\n' | 0) {
                    q += 1;
                }
            }
            self.b.seq_start(self.pos(q), 0);
        } else {
            self.b.seq_start(self.pos(self.p), 0);
        }
        loop {
            self.p += 1; // the `-`
            self.seq_item(s)?;
            match self.skip_blank_lines() {
                None => break,
                Some(i) if i == s => {
                    if i == 0 && self.at_document_marker().is_some() {
                        break;
                    }
                    if self.at(self.p + i) == b'-' && blank_or_end(self.at(self.p + i + 1)) {
                        self.p += i;
                    } else if indentless {
                        break;
                    } else {
                        return Err(Bail);
                    }
                }
                Some(i) if i < s => break,
                Some(_) => return Err(Bail),
            }
        }
        self.b.seq_end();
        Ok(())
    }

    /// One sequence item; `p` is just after its `-` (column `s`).
    fn seq_item(&mut self, s: usize) -> R {
        let spaces = self.skip_spaces();
        let c = self.at(self.p);
        if c == b'\n' || c == 0 || c == b'#' {
            if c == b'#' && spaces == 0 {
                return Err(Bail);
            }
            self.next_line();
            // yaml-rust2 indents one column more after a bare `-`; a node in that column is
            // read differently, so it is left to yaml-rust2.
            if self.s[self.p..].starts_with(&b" ".repeat(s + 1)) && self.at(self.p + s + 1) != b' '
            {
                return Err(Bail);
            }
            return self.nested(s, false);
        }
        if c == b'-' && blank_or_end(self.at(self.p + 1)) {
            return Err(Bail); // `- - x`
        }
        if self.key_at(self.p).is_some() {
            // `- key: value`: a mapping in the item's column (all ASCII before it).
            let m = self.p - self.line_start;
            return self.block_map(m);
        }
        // Back to just after the blank so `value` sees its separating space.
        self.p -= spaces;
        self.value(s, false)
    }

    /// A one-line flow sequence of scalars at `p` (`[`); leaves `p` after the `]`.
    fn flow_seq(&mut self) -> R {
        self.b.seq_start(self.pos(self.p), 0);
        self.p += 1;
        self.skip_spaces();
        if self.at(self.p) == b']' {
            self.p += 1;
            self.b.seq_end();
            return Ok(());
        }
        loop {
            self.skip_spaces();
            let c = self.at(self.p);
            let pos = self.pos(self.p);
            if c == b'\'' || c == b'"' {
                self.quoted_scalar(c, pos)?;
            } else {
                if matches!(c, b'-' | b'?' | b':') || !plain_start(c, self.at(self.p + 1)) {
                    return Err(Bail);
                }
                let start = self.p;
                let mut end = start;
                loop {
                    match self.at(self.p) {
                        b',' | b']' => break,
                        b' ' => {}
                        b'\n' | 0 | b'#' | b':' | b'[' | b'{' | b'}' => return Err(Bail),
                        // yaml-rust2 rejects a word starting with `-` before `,[]{}`.
                        b'-' if matches!(self.at(self.p + 1), b',' | b']' | b'[' | b'{' | b'}') => {
                            return Err(Bail)
                        }
                        _ => end = self.p + 1,
                    }
                    self.p += 1;
                }
                self.b.scalar(
                    self.src[start..end].to_owned(),
                    TScalarStyle::Plain,
                    None,
                    0,
                    pos,
                );
            }
            self.skip_spaces();
            match self.at(self.p) {
                b',' => {
                    self.p += 1;
                    self.skip_spaces();
                    if self.at(self.p) == b']' {
                        return Err(Bail); // trailing comma
                    }
                }
                b']' => {
                    self.p += 1;
                    break;
                }
                _ => return Err(Bail),
            }
        }
        self.b.seq_end();
        Ok(())
    }

    /// The quoted scalar at `self.p` (opened by quote `c`, at `pos`) as a scalar event; moves
    /// past its closing quote.
    fn quoted_scalar(&mut self, c: u8, pos: Pos) -> R {
        let (text, end) = self.quoted(self.p)?;
        self.p = end;
        let style = if c == b'\'' {
            TScalarStyle::SingleQuoted
        } else {
            TScalarStyle::DoubleQuoted
        };
        self.b.scalar(text, style, None, 0, pos);
        Ok(())
    }

    /// A one-line quoted scalar starting at `i` (its quote): its text and the offset after the
    /// closing quote. Gives up on line breaks inside and on escapes yaml-rust2 rejects.
    fn quoted(&self, i: usize) -> R<(String, usize)> {
        let q = self.at(i);
        // Most quoted scalars have no escapes: find the closing quote, copy once.
        let rest = &self.s[i + 1..];
        let stop = rest
            .iter()
            .position(|&b| b == q || b == b'\n' || (b == b'\\' && q == b'"'));
        if let Some(n) = stop {
            let j = i + 1 + n;
            if self.at(j) == q && !(q == b'\'' && self.at(j + 1) == b'\'') {
                return Ok((self.src[i + 1..j].to_owned(), j + 1));
            }
        }
        let mut out = String::with_capacity(64);
        let mut j = i + 1;
        let mut run = j; // start of the literal run not yet copied
        loop {
            match self.at(j) {
                b'\n' | 0 => return Err(Bail),
                b'\'' if q == b'\'' => {
                    out.push_str(&self.src[run..j]);
                    if self.at(j + 1) == b'\'' {
                        out.push('\'');
                        j += 2;
                        run = j;
                    } else {
                        return Ok((out, j + 1));
                    }
                }
                b'"' if q == b'"' => {
                    out.push_str(&self.src[run..j]);
                    return Ok((out, j + 1));
                }
                b'\\' if q == b'"' => {
                    out.push_str(&self.src[run..j]);
                    let (ch, len) = self.escape(j + 1)?;
                    out.push(ch);
                    j += 1 + len;
                    run = j;
                }
                _ => j += 1,
            }
        }
    }

    /// The escape after a `\` at `i`: the character and how many bytes it took.
    fn escape(&self, i: usize) -> R<(char, usize)> {
        let c = match self.at(i) {
            b'0' => '\0',
            b'a' => '\x07',
            b'b' => '\x08',
            b't' => '\t',
            b'n' => '\n',
            b'v' => '\x0b',
            b'f' => '\x0c',
            b'r' => '\r',
            b'e' => '\x1b',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            b'x' | b'u' | b'U' => {
                let len = match self.at(i) {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = self.s.get(i + 1..i + 1 + len).ok_or(Bail)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(Bail);
                }
                let v = hex.iter().fold(0u32, |v, &h| {
                    (v << 4) | (h as char).to_digit(16).unwrap_or(0)
                });
                return char::from_u32(v).map(|c| (c, 1 + len)).ok_or(Bail);
            }
            _ => return Err(Bail),
        };
        Ok((c, 1))
    }

    /// A `|` or `>` block scalar whose indicator is at `p`; `n` is the enclosing collection's
    /// column. Leaves `p` at the start of the first line after it.
    fn block_scalar(&mut self, n: usize) -> R {
        let literal = self.at(self.p) == b'|';
        self.p += 1;
        let chomp = match self.at(self.p) {
            c @ (b'-' | b'+') => {
                self.p += 1;
                c
            }
            _ => 0,
        };
        if !blank_or_end(self.at(self.p)) {
            return Err(Bail); // indentation indicator, or anything else
        }
        self.end_of_line()?;
        if self.p >= self.s.len() {
            return Err(Bail);
        }
        // The first line sets the indentation; leading empty lines are left to yaml-rust2.
        let k = self.skip_spaces();
        if matches!(self.at(self.p), b'\n' | 0) || k <= n {
            return Err(Bail);
        }
        let pos = self.pos(self.p);
        let mut text = String::new();
        let mut empties = 0usize;
        let mut first = true;
        loop {
            // `p` is at the first content character of a content line (column >= k).
            let start = self.p;
            let end = self.s[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(self.s.len(), |e| start + e);
            let line = &self.src[start..end];
            if !literal && line.starts_with(' ') {
                return Err(Bail); // more-indented folded lines
            }
            if !first {
                if literal {
                    text.push('\n');
                    push_newlines(&mut text, empties);
                } else if empties == 0 {
                    text.push(' ');
                } else {
                    push_newlines(&mut text, empties);
                }
            }
            first = false;
            empties = 0;
            text.push_str(line);
            self.p = end;
            if self.p >= self.s.len() {
                self.line_start = self.p;
                break;
            }
            self.next_line();
            // Empty lines, then either another content line or the end of the scalar.
            loop {
                let line_start = self.p;
                let sp = self.skip_spaces();
                match self.at(self.p) {
                    b'\n' if sp <= k => {
                        empties += 1;
                        self.next_line();
                    }
                    0 if sp == 0 => break,
                    b'\n' | 0 => return Err(Bail), // spaces-only line longer than the indent
                    _ if sp >= k => {
                        self.p = line_start + k;
                        break;
                    }
                    _ => {
                        // Less indented: the scalar is over; this line belongs to the parent.
                        self.p = line_start;
                        break;
                    }
                }
            }
            if self.p >= self.s.len() || self.p == self.line_start {
                break;
            }
        }
        match chomp {
            b'-' => {}
            b'+' => {
                text.push('\n');
                push_newlines(&mut text, empties);
            }
            _ => text.push('\n'),
        }
        let style = if literal {
            TScalarStyle::Literal
        } else {
            TScalarStyle::Folded
        };
        self.b.scalar(text, style, None, 0, pos);
        Ok(())
    }
}

enum PlainEnd {
    /// The `:` of `key: ` / `key:` at the end of a line.
    Colon(usize),
    /// The end of the scalar's text on its line.
    Line(usize),
}

fn push_newlines(s: &mut String, n: usize) {
    for _ in 0..n {
        s.push('\n');
    }
}

/// Whether a block plain scalar may start with `c` (followed by `next`), as yaml-rust2's
/// `fetch_next_token` decides.
fn plain_start(c: u8, next: u8) -> bool {
    match c {
        b'-' | b'?' | b':' => !blank_or_end(next),
        b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\''
        | b'"' | b'%' | b'@' | b'`' | b' ' | b'\n' | 0 => false,
        _ => true,
    }
}
