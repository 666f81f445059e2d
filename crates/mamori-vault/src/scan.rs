//! Streaming reader of one segment file: yields record frames, and after damage resynchronises
//! on the next decodable frame instead of giving up, so one flipped bit costs one record, not
//! the rest of the segment. Memory is one read buffer (grown only for records larger than it).

#[cfg(test)]
mod tests;

use std::io::{self, Read};

use crate::format::{self, DecodeError, Frame, SegmentHeader};

const READ_CHUNK: usize = 1 << 20;

/// One thing found in a segment, in file order.
#[derive(Debug)]
pub(crate) enum Item<'a> {
    Record {
        offset: u64,
        frame: Frame<'a>,
    },
    /// `[offset, offset + len)` is not a record; a valid record follows it.
    Garbage {
        offset: u64,
        len: u64,
        reason: &'static str,
    },
    /// The file ends with `[offset, offset + len)`, which is not a complete record: either the
    /// prefix of one (`torn` — what a crash mid-write leaves) or bytes that never decode.
    Tail {
        offset: u64,
        len: u64,
        torn: bool,
    },
}

pub(crate) struct SegmentReader<R> {
    r: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    pos: u64,
    eof: bool,
    pending_record: Option<usize>,
}

impl<R: Read> SegmentReader<R> {
    /// Read and decode the header; the reader is then positioned at the first frame.
    /// `size_hint` (the file length, if known) keeps the buffer small for small segments.
    pub(crate) fn open(
        r: R,
        size_hint: Option<u64>,
    ) -> io::Result<(Result<SegmentHeader, DecodeError>, SegmentReader<R>)> {
        let cap = size_hint.map_or(READ_CHUNK * 2, |n| (n as usize + 1).min(READ_CHUNK * 2));
        let mut s = SegmentReader {
            r,
            buf: vec![0; cap],
            start: 0,
            end: 0,
            pos: 0,
            eof: false,
            pending_record: None,
        };
        let header = loop {
            match format::decode_segment_header(&s.buf[s.start..s.end]) {
                Ok((h, n)) => {
                    s.consume(n);
                    break Ok(h);
                }
                Err(DecodeError::Incomplete { need }) if !s.eof => s.fill(need)?,
                Err(e) => break Err(e),
            }
        };
        Ok((header, s))
    }

    pub(crate) fn offset(&self) -> u64 {
        self.pos
    }

    fn avail(&self) -> usize {
        self.end - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
    }

    /// Make at least `need` bytes available from `start`, unless the file ends first.
    fn fill(&mut self, need: usize) -> io::Result<()> {
        // Compact when the free space after `start` is small, so reads stay large.
        if self.start > 0 && self.buf.len() - self.start < need.max(self.buf.len() / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < self.start + need {
            self.buf.resize(self.start + need, 0);
        }
        while self.avail() < need && !self.eof {
            let n = loop {
                match self.r.read(&mut self.buf[self.end..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
        Ok(())
    }

    /// The next item, or `None` at the end of the file.
    pub(crate) fn next_item(&mut self) -> io::Result<Option<Item<'_>>> {
        if let Some(n) = self.pending_record.take() {
            self.consume(n);
        }
        if self.avail() < format::FRAME_PREFIX + format::ENTRY_FIXED && !self.eof {
            self.fill(format::FRAME_PREFIX + format::ENTRY_FIXED)?;
        }
        if self.avail() == 0 {
            return Ok(None);
        }
        loop {
            match format::decode_frame(&self.buf[self.start..self.end]) {
                Ok(f) => {
                    // Borrow dance: remember the length, consume on the next call.
                    self.pending_record = Some(f.len);
                    let offset = self.pos;
                    let frame = format::decode_frame(&self.buf[self.start..self.end])
                        .expect("decoded just above");
                    return Ok(Some(Item::Record { offset, frame }));
                }
                Err(DecodeError::Incomplete { need }) if !self.eof => self.fill(need)?,
                Err(e) => {
                    let torn = matches!(e, DecodeError::Incomplete { .. });
                    let reason = match e {
                        DecodeError::Invalid(r) => r,
                        _ => "record extends past the end of the segment",
                    };
                    return self.resync(torn, reason);
                }
            }
        }
    }

    /// Skip forward to the next offset where a whole frame decodes.
    fn resync(&mut self, torn: bool, reason: &'static str) -> io::Result<Option<Item<'_>>> {
        let offset = self.pos;
        let mut skipped = 1usize;
        self.consume(1);
        loop {
            let hay = &self.buf[self.start..self.end];
            let found = hay.windows(4).position(|w| w == format::RECORD_MAGIC);
            match found {
                Some(i) => match format::decode_frame(&hay[i..]) {
                    Ok(_) => {
                        self.consume(i);
                        skipped += i;
                        return Ok(Some(Item::Garbage {
                            offset,
                            len: skipped as u64,
                            reason,
                        }));
                    }
                    Err(DecodeError::Incomplete { need }) if !self.eof => {
                        self.consume(i);
                        skipped += i;
                        self.fill(need)?;
                        continue;
                    }
                    Err(_) => {
                        self.consume(i + 1);
                        skipped += i + 1;
                    }
                },
                None => {
                    // Keep a possible partial magic at the end of the buffer.
                    let keep = self.avail().min(3);
                    let n = self.avail() - keep;
                    self.consume(n);
                    skipped += n;
                    if self.eof {
                        self.consume(keep);
                        skipped += keep;
                        return Ok(Some(Item::Tail {
                            offset,
                            len: skipped as u64,
                            torn,
                        }));
                    }
                    self.fill(4)?;
                }
            }
        }
    }
}
