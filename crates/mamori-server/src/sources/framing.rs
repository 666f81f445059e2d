//! Syslog-over-TCP framing (RFC 6587): octet counting (`123 <34>1 …`) or non-transparent
//! newline framing, decided **once per connection** from its first frame, as RFC 6587 §3.4
//! describes: a connection is octet-counted only when it starts with `MSG-LEN SP <PRI>` —
//! `MSG-LEN` a non-zero decimal of at most [`MAX_LEN_DIGITS`] digits without a leading zero,
//! followed by one space and `<`. Anything else makes the connection newline-framed, so a
//! plain line that happens to start with digits and a space (`200 OK …`, `9999999999 x`) is
//! one event and never swallows the lines after it.
//!
//! On an octet-counted connection a frame that does not start with a valid header (a sender
//! that mixed framings, or bytes lost) is read up to the next LF as one newline frame and
//! counting resumes after it: the stream resynchronises instead of being misread to its end.
//! A frame's bytes are returned exactly as received (without the `MSG-LEN SP` header), so what
//! is stored and sealed is what the sender sent for that message.
//!
//! Pure and synchronous so it can be tested and fuzzed without sockets. Memory is bounded: a
//! frame longer than `max` is skipped (its bytes are discarded as they arrive, never buffered)
//! and reported once as [`FrameError::Oversized`]; the connection stays usable.

use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Longer than the limit; skipped.
    Oversized,
    /// The stream ended inside an octet-counted frame.
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    Bytes(u64),
    ToNewline,
}

/// Most digits of an octet count: up to 999,999,999 bytes (RFC 6587 sets no limit; a longer
/// count is not a header, so a line of digits can never make us wait for gigabytes).
pub const MAX_LEN_DIGITS: usize = 9;

/// How a connection is framed, decided from its first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Undecided,
    OctetCounting,
    NonTransparent,
}

/// What the bytes at a frame start are.
enum Header {
    /// `MSG-LEN SP <`: the length and where the message starts (relative).
    Count { len: u64, start: usize },
    /// A prefix of a header so far: more bytes are needed to tell.
    Incomplete,
    /// Not an octet-counting header.
    No,
}

fn header(rest: &[u8]) -> Header {
    match rest.first() {
        Some(b'1'..=b'9') => {}
        Some(_) => return Header::No,
        None => return Header::Incomplete,
    }
    let nd = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if nd > MAX_LEN_DIGITS {
        return Header::No;
    }
    match (rest.get(nd), rest.get(nd + 1)) {
        (None, _) | (Some(b' '), None) => Header::Incomplete,
        (Some(b' '), Some(b'<')) => Header::Count {
            len: rest[..nd]
                .iter()
                .fold(0u64, |a, d| a * 10 + u64::from(d - b'0')),
            start: nd + 1,
        },
        _ => Header::No,
    }
}

/// Splits a byte stream into syslog frames.
pub struct Framer {
    buf: Vec<u8>,
    pos: usize,
    max: usize,
    skip: Skip,
    mode: Mode,
}

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer {
            buf: Vec::with_capacity(16 * 1024),
            pos: 0,
            max,
            skip: Skip::None,
            mode: Mode::Undecided,
        }
    }

    /// The connection's framing, once its first frame decided it.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Appends received bytes. Invalidates ranges returned earlier.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The bytes of a frame returned by [`Framer::next_frame`].
    pub fn get(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    /// Bytes buffered but not yet returned.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete frame, or `None` when more input is needed. With `eof`, a final
    /// unterminated newline frame is returned too.
    pub fn next_frame(&mut self, eof: bool) -> Option<Result<Range<usize>, FrameError>> {
        let len = self.buf.len();
        match self.skip {
            Skip::Bytes(n) => {
                let take = n.min((len - self.pos) as u64);
                self.pos += take as usize;
                if take < n {
                    self.skip = Skip::Bytes(n - take);
                    return None;
                }
                self.skip = Skip::None;
            }
            Skip::ToNewline => match memchr::memchr(b'\n', &self.buf[self.pos..]) {
                Some(i) => {
                    self.pos += i + 1;
                    self.skip = Skip::None;
                }
                None => {
                    self.pos = len;
                    return None;
                }
            },
            Skip::None => {}
        }
        while self.pos < len && matches!(self.buf[self.pos], b'\n' | b'\r' | 0) {
            self.pos += 1;
        }
        if self.pos == len {
            return None;
        }
        if self.mode == Mode::NonTransparent {
            return self.newline_frame(eof);
        }
        let pos = self.pos;
        match header(&self.buf[pos..]) {
            Header::Count { len: n, start } => {
                self.mode = Mode::OctetCounting;
                let start = pos + start;
                if n > self.max as u64 {
                    self.pos = start;
                    self.skip = Skip::Bytes(n);
                    return Some(Err(FrameError::Oversized));
                }
                let n = n as usize;
                if len - start >= n {
                    self.pos = start + n;
                    return Some(Ok(start..start + n));
                }
                if eof {
                    self.pos = len;
                    return Some(Err(FrameError::Truncated));
                }
                None
            }
            Header::Incomplete if !eof => None,
            Header::Incomplete | Header::No => {
                if self.mode == Mode::Undecided {
                    self.mode = Mode::NonTransparent;
                }
                // On an octet-counted connection: resynchronise at the next LF.
                self.newline_frame(eof)
            }
        }
    }

    /// The frame at `pos` ending at the next LF (or at EOF).
    fn newline_frame(&mut self, eof: bool) -> Option<Result<Range<usize>, FrameError>> {
        let (pos, len) = (self.pos, self.buf.len());
        let rest = &self.buf[pos..];
        match memchr::memchr(b'\n', rest) {
            Some(i) => {
                self.pos = pos + i + 1;
                if i > self.max {
                    Some(Err(FrameError::Oversized))
                } else {
                    Some(Ok(pos..pos + i))
                }
            }
            None if rest.len() > self.max => {
                self.pos = len;
                self.skip = Skip::ToNewline;
                Some(Err(FrameError::Oversized))
            }
            None if eof => {
                self.pos = len;
                Some(Ok(pos..len))
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]], max: usize) -> Vec<Result<String, FrameError>> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            f.feed(c);
            let eof = i + 1 == chunks.len();
            while let Some(r) = f.next_frame(eof) {
                out.push(r.map(|r| String::from_utf8_lossy(f.get(r)).into_owned()));
            }
        }
        out
    }

    #[test]
    fn newline_framing() {
        assert_eq!(
            frames(&[b"<13>a\n<13>b\r\n\n<13>c"], 100),
            vec![Ok("<13>a".into()), Ok("<13>b\r".into()), Ok("<13>c".into())]
        );
    }

    #[test]
    fn octet_counting_across_reads() {
        let msg = b"<34>1 2026-11-23T10:00:00Z host app - - - hello";
        let framed = format!("{} {}", msg.len(), String::from_utf8_lossy(msg));
        let b = framed.as_bytes();
        let out = frames(&[&b[..3], &b[3..10], &b[10..], b"5 <1>ab"], 1000);
        assert_eq!(
            out,
            vec![
                Ok(String::from_utf8_lossy(msg).into_owned()),
                Ok("<1>ab".into())
            ]
        );
    }

    #[test]
    fn a_connection_that_starts_newline_framed_stays_so() {
        // A line starting with digits is newline-framed; so is everything after it.
        let out = frames(&[b"2026-11-23T10:00:00Z h a: x\n3 abc<1>y\n"], 100);
        assert_eq!(
            out,
            vec![
                Ok("2026-11-23T10:00:00Z h a: x".into()),
                Ok("3 abc<1>y".into())
            ]
        );
    }

    /// Issue #15 finding 8: `200 OK …` merged the next lines into one event, `9999999999 `
    /// discarded the rest of the connection.
    #[test]
    fn digits_and_a_space_without_pri_are_a_plain_line_issue_15() {
        let out = frames(&[b"200 OK GET /\n<13>next one\n<13>and another\n"], 4096);
        assert_eq!(
            out,
            vec![
                Ok("200 OK GET /".into()),
                Ok("<13>next one".into()),
                Ok("<13>and another".into())
            ]
        );
        let out = frames(&[b"9999999999 <13>x\n", b"<13>kept\n"], 4096);
        assert_eq!(
            out,
            vec![Ok("9999999999 <13>x".into()), Ok("<13>kept".into())]
        );
        let mut f = Framer::new(100);
        f.feed(b"11");
        assert_eq!(
            f.next_frame(false),
            None,
            "undecided until the space and `<`"
        );
        f.feed(b" <1>abcdefgh");
        assert_eq!(
            f.next_frame(false).map(|r| r.map(|r| r.len())),
            Some(Ok(11))
        );
        assert_eq!(f.mode(), Mode::OctetCounting);
    }

    #[test]
    fn octet_counted_connection_resynchronises_on_a_bad_header() {
        let out = frames(&[b"5 <1>ab", b"oops no header\n6 <2>xyz"], 100);
        assert_eq!(
            out,
            vec![
                Ok("<1>ab".into()),
                Ok("oops no header".into()),
                Ok("<2>xyz".into())
            ]
        );
    }

    #[test]
    fn oversized_frames_are_skipped_and_the_stream_continues() {
        let long = vec![b'x'; 500];
        let mut line = long.clone();
        line.push(b'\n');
        let out = frames(&[&line[..200], &line[200..], b"<1>ok\n"], 100);
        assert_eq!(out, vec![Err(FrameError::Oversized), Ok("<1>ok".into())]);
        let mut oc = b"500 <".to_vec();
        oc.extend_from_slice(&long[1..]);
        oc.extend_from_slice(b"4 <1>k");
        let out = frames(&[&oc[..50], &oc[50..]], 100);
        assert_eq!(out, vec![Err(FrameError::Oversized), Ok("<1>k".into())]);
    }

    #[test]
    fn truncated_octet_frame_at_eof() {
        assert_eq!(frames(&[b"10 <1>"], 100), vec![Err(FrameError::Truncated)]);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        for _ in 0..2000 {
            let mut data = Vec::new();
            for _ in 0..(seed % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(b"0123456789 \n\r<<x"[(seed % 16) as usize]);
            }
            let split = (seed as usize) % (data.len() + 1);
            let _ = frames(&[&data[..split], &data[split..]], 8);
        }
    }
}
