//! Syslog-over-TCP framing (RFC 6587): octet counting (`123 <34>1 …`) and non-transparent
//! newline framing, decided per frame the way rsyslog does — a frame that starts with digits
//! followed by a space is octet-counted, anything else ends at the next LF.
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

/// Splits a byte stream into syslog frames.
pub struct Framer {
    buf: Vec<u8>,
    pos: usize,
    max: usize,
    skip: Skip,
}

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer {
            buf: Vec::with_capacity(16 * 1024),
            pos: 0,
            max,
            skip: Skip::None,
        }
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
        loop {
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
            let pos = self.pos;
            let rest = &self.buf[pos..];
            if rest[0].is_ascii_digit() {
                let nd = rest
                    .iter()
                    .take(11)
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if nd < rest.len() {
                    if nd <= 10 && rest[nd] == b' ' {
                        let n: u64 = rest[..nd]
                            .iter()
                            .fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
                        let start = pos + nd + 1;
                        if n > self.max as u64 {
                            self.pos = start;
                            self.skip = Skip::Bytes(n);
                            return Some(Err(FrameError::Oversized));
                        }
                        let n = n as usize;
                        if len - start >= n {
                            self.pos = start + n;
                            if n == 0 {
                                continue;
                            }
                            return Some(Ok(start..start + n));
                        }
                        if eof {
                            self.pos = len;
                            return Some(Err(FrameError::Truncated));
                        }
                        return None;
                    }
                } else if !eof && nd <= 10 {
                    // Only digits so far: cannot tell the framing yet.
                    return None;
                }
            }
            return match memchr::memchr(b'\n', rest) {
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
            };
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
    fn mixed_framing_and_timestamp_lines() {
        // A line starting with digits not followed by a space is newline-framed.
        let out = frames(&[b"2026-11-23T10:00:00Z h a: x\n3 abc<1>y\n"], 100);
        assert_eq!(
            out,
            vec![
                Ok("2026-11-23T10:00:00Z h a: x".into()),
                Ok("abc".into()),
                Ok("<1>y".into())
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
        let mut oc = b"500 ".to_vec();
        oc.extend_from_slice(&long);
        oc.extend_from_slice(b"2 ok");
        let out = frames(&[&oc[..50], &oc[50..]], 100);
        assert_eq!(out, vec![Err(FrameError::Oversized), Ok("ok".into())]);
    }

    #[test]
    fn truncated_octet_frame_at_eof() {
        assert_eq!(frames(&[b"10 abc"], 100), vec![Err(FrameError::Truncated)]);
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
                data.push(b"0123456789 \n\r<>x"[(seed % 16) as usize]);
            }
            let split = (seed as usize) % (data.len() + 1);
            let _ = frames(&[&data[..split], &data[split..]], 8);
        }
    }
}
