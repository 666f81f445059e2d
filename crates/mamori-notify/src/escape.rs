//! Escaping for each target. Everything that comes from a log (titles, summaries, entity names
//! and values) is attacker-controlled and passes through one of these before it reaches a wire.

/// Replaces every control character (CR, LF, TAB, NUL, ESC, DEL, C1, and the Unicode line /
/// paragraph separators) with a space, so the text stays on one line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Like [`one_line`] but keeps `\n` (CR LF and lone CR become `\n`).
pub fn multi_line(s: &str) -> String {
    let s = s.replace("\r\n", "\n");
    s.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\r' => '\n',
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => ' ',
            c => c,
        })
        .collect()
}

/// At most `max` characters, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A mail header value (Subject): one line, bounded. lettre encodes non-ASCII per RFC 2047 and
/// refuses raw line breaks itself; this is the second, independent guard.
pub fn mail_header(s: &str) -> String {
    truncate(one_line(s).trim(), 200)
}

/// Slack mrkdwn: `&`, `<`, `>` are the only characters Slack asks to escape; with them escaped a
/// log cannot produce a link (`<http://evil|click>`) or a mention (`<!channel>`, `<@U123>`).
pub fn slack(s: &str) -> String {
    replace_chars(s, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    })
}

/// HTML text and attribute content.
pub fn html(s: &str) -> String {
    replace_chars(s, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\'' => Some("&#39;"),
        _ => None,
    })
}

/// A CEF header field (version .. severity): `\` → `\\`, `|` → `\|`; line breaks are not
/// allowed in the header and become spaces (CEF Implementation Standard, "Character encoding").
pub fn cef_header(s: &str) -> String {
    replace_chars(&one_line(s), |c| match c {
        '\\' => Some("\\\\"),
        '|' => Some("\\|"),
        _ => None,
    })
}

/// A CEF extension value: `\` → `\\`, `=` → `\=`, CR → `\r`, LF → `\n` (multi-line values are
/// allowed there, encoded); other control characters become spaces. `|` needs no escape in
/// extensions.
pub fn cef_value(s: &str) -> String {
    replace_chars(s, |c| match c {
        '\\' => Some("\\\\"),
        '=' => Some("\\="),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => Some(" "),
        _ => None,
    })
}

/// An RFC 5424 SD-PARAM value: `"`, `\` and `]` are escaped with a backslash; one line.
pub fn sd_param(s: &str) -> String {
    replace_chars(&one_line(s), |c| match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        ']' => Some("\\]"),
        _ => None,
    })
}

/// `s` with each character for which `f` gives a replacement replaced by it.
fn replace_chars(s: &str, f: impl Fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match f(c) {
            Some(r) => out.push_str(r),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_cannot_link_or_mention() {
        assert_eq!(
            slack("<!channel> <http://evil|click> a&b"),
            "&lt;!channel&gt; &lt;http://evil|click&gt; a&amp;b"
        );
    }

    #[test]
    fn html_escapes_markup() {
        assert_eq!(
            html(r#"<img src=x onerror="a">&'"#),
            "&lt;img src=x onerror=&quot;a&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn header_has_no_line_breaks() {
        let s = mail_header("hi\r\nBcc: victim@example.com\u{2028}x");
        assert!(!s.contains('\r') && !s.contains('\n') && !s.contains('\u{2028}'));
        assert_eq!(s, "hi  Bcc: victim@example.com x");
        assert_eq!(mail_header(&"あ".repeat(300)).chars().count(), 201);
    }

    #[test]
    fn cef_escapes_per_spec() {
        assert_eq!(cef_header("a|b=c\nd\\e"), "a\\|b=c d\\\\e");
        assert_eq!(cef_value("a|b=c\nd\\e\r"), "a|b\\=c\\nd\\\\e\\r");
    }

    #[test]
    fn sd_param_escapes() {
        assert_eq!(sd_param("a\"b]c\\d\ne"), "a\\\"b\\]c\\\\d e");
    }

    #[test]
    fn truncate_counts_chars() {
        assert_eq!(truncate("日本語テキスト", 3), "日本語…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn multi_line_keeps_newlines_only() {
        assert_eq!(multi_line("a\r\nb\rc\u{1b}[31m\td"), "a\nb\nc [31m d");
    }
}
