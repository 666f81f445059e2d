//! Human-facing output (issue #15 finding 9 and 13).
//!
//! Log content is attacker-controlled, and a terminal obeys what it prints: ESC sequences can
//! clear the screen, fake text or retitle the window; BEL rings; CR and BiDi overrides make a
//! line read differently from what it holds. Everything `mamori` prints for a person goes
//! through [`escape`], which writes such characters as visible escapes (`\x1b`, `\u{202e}`).
//! Files and machine formats keep their content (CSV files are only formula-neutralised, JSON
//! escapes controls itself).
//!
//! A closed pipe (`mamori vault status | head`) ends the process quietly with status 0 instead
//! of a panic: [`outln!`] and [`out_raw!`] exit on `EPIPE`, and [`install_pipe_guard`] covers
//! any other `println!`.

use std::borrow::Cow;
use std::io::Write;

/// Whether `c` must not reach a terminal as is: C0 controls but tab and line feed, DEL, C1
/// controls, and the BiDi embedding, override and isolate characters.
fn unsafe_char(c: char, keep_newline: bool) -> bool {
    match c {
        '\t' => false,
        '\n' => !keep_newline,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => true,
        _ => false,
    }
}

fn escape_with(s: &str, keep_newline: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| unsafe_char(c, keep_newline)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !unsafe_char(c, keep_newline) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// `s` with every character a terminal would interpret (line feeds included) made visible.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, false)
}

/// Writes `s` and a newline to stdout; exits quietly (status 0) when stdout is a closed pipe.
pub(crate) fn write_stdout(s: &str) {
    let mut o = std::io::stdout().lock();
    let r = o.write_all(s.as_bytes()).and_then(|_| o.write_all(b"\n"));
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(2);
    }
}

/// `println!` for people: the line is escaped (see [`escape`]) and a closed pipe exits quietly.
macro_rules! outln {
    () => { $crate::term::write_stdout("") };
    ($($arg:tt)*) => {
        $crate::term::write_stdout(&$crate::term::escape(&format!($($arg)*)))
    };
}
pub(crate) use outln;

/// `println!` for machine output (JSON) that escapes itself: a closed pipe exits quietly.
macro_rules! out_raw {
    ($($arg:tt)*) => { $crate::term::write_stdout(&format!($($arg)*)) };
}
pub(crate) use out_raw;

/// A closed stdout makes `println!` panic ("failed printing to stdout: Broken pipe"); this
/// turns exactly that panic into a quiet exit, for output paths not written with [`outln!`].
pub(crate) fn install_pipe_guard() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether an error is a closed output pipe (the reader went away: not an error to report).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|ce| {
                matches!(ce.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}

/// A writer for a terminal: escapes what [`escape`] does, line by line, keeping line feeds
/// (they separate the records of a timeline; JSON lines escape their own).
pub(crate) struct Sanitize<W: Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: Write> Sanitize<W> {
    pub(crate) fn new(inner: W) -> Sanitize<W> {
        Sanitize {
            inner,
            line: Vec::new(),
        }
    }

    fn emit_line(&mut self) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(&self.line);
        let safe = escape_with(&text, true);
        self.inner.write_all(safe.as_bytes())?;
        self.line.clear();
        Ok(())
    }
}

impl<W: Write> Write for Sanitize<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = memchr_nl(rest) {
            self.line.extend_from_slice(&rest[..=i]);
            self.emit_line()?;
            rest = &rest[i + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // A partial line may end inside a UTF-8 sequence; it waits for the rest unless this
        // is the end of output, where `Drop`-less writers call flush last.
        if !self.line.is_empty() && std::str::from_utf8(&self.line).is_ok() {
            self.emit_line()?;
        }
        self.inner.flush()
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_are_made_visible_issue_15() {
        assert_eq!(escape("plain 日本語\tok"), "plain 日本語\tok");
        assert_eq!(escape("a\x1b[2J\x07b\rc\nd"), "a\\x1b[2J\\x07b\\x0dc\\x0ad");
        assert_eq!(escape("x\u{202e}y\u{9b}z"), "x\\u{202e}y\\u{9b}z");
        assert!(matches!(escape("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn sanitizing_writer_keeps_lines_and_escapes_the_rest() {
        let mut out = Vec::new();
        {
            let mut w = Sanitize::new(&mut out);
            w.write_all(b"h1,h2\nva\x1b]0;pwned\x07l,").unwrap();
            w.write_all("\u{202e}x\n".as_bytes()).unwrap();
            w.write_all(b"tail").unwrap();
            w.flush().unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "h1,h2\nva\\x1b]0;pwned\\x07l,\\u{202e}x\ntail"
        );
    }
}
