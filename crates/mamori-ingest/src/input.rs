//! Opening files (gzip unwrapped by magic bytes) and a line reader with a bounded buffer.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::time::SystemTime;

use flate2::bufread::MultiGzDecoder;

const BUF_SIZE: usize = 64 * 1024;
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A buffered byte stream, already decompressed when the file was gzip; readers count offsets
/// themselves (see [`LineReader`]).
pub(crate) type Input = Box<dyn BufRead + Send>;

/// Opens `path`; a gzip stream (any number of members) is decompressed on the fly.
pub(crate) fn open(path: &Path) -> io::Result<Input> {
    let file = File::open(path)?;
    let mut raw = BufReader::with_capacity(BUF_SIZE, file);
    if is_gzip(&mut raw)? {
        Ok(Box::new(BufReader::with_capacity(
            BUF_SIZE,
            MultiGzDecoder::new(raw),
        )))
    } else {
        Ok(Box::new(raw))
    }
}

fn is_gzip(r: &mut BufReader<File>) -> io::Result<bool> {
    let head = r.fill_buf()?;
    Ok(head.starts_with(&GZIP_MAGIC))
}

/// Up to `n` bytes from the start of the (decompressed) file. A read error after some bytes
/// (a truncated gzip member) just ends the sample: detection works on what there is.
pub(crate) fn sample(path: &Path, n: usize) -> io::Result<(Vec<u8>, bool)> {
    let file = File::open(path)?;
    let mut raw = BufReader::with_capacity(BUF_SIZE, file);
    let gz = is_gzip(&mut raw)?;
    let mut out = Vec::with_capacity(n.min(BUF_SIZE));
    let mut reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let mut buf = [0u8; 8192];
    while out.len() < n {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                let take = k.min(n - out.len());
                out.extend_from_slice(buf.get(..take).unwrap_or_default());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if out.is_empty() {
                    return Err(e);
                }
                break;
            }
        }
    }
    Ok((out, gz))
}

/// The file's modification time (for the RFC 3164 year rule).
pub(crate) fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// One line from [`LineReader::next_line`].
pub(crate) enum Line<'a> {
    /// The line without its `\n` / `\r\n`.
    Text {
        bytes: &'a [u8],
        /// 1-based line number.
        number: u64,
        /// Byte offset of the line start.
        offset: u64,
    },
    /// Longer than the limit: skipped to the next newline without buffering it.
    TooLong { number: u64, offset: u64, len: u64 },
}

/// Reads lines into a buffer that never grows past `max` bytes.
pub(crate) struct LineReader<'r> {
    inner: &'r mut dyn BufRead,
    buf: Vec<u8>,
    max: usize,
    /// Offset of the next line start.
    pub(crate) offset: u64,
    number: u64,
}

impl<'r> LineReader<'r> {
    pub(crate) fn new(inner: &'r mut dyn BufRead, max: usize) -> LineReader<'r> {
        LineReader {
            inner,
            buf: Vec::new(),
            max: max.max(1),
            offset: 0,
            number: 0,
        }
    }

    /// Starts counting at an offset/line other than zero (after a consumed prefix).
    pub(crate) fn with_position(mut self, offset: u64, number: u64) -> LineReader<'r> {
        self.offset = offset;
        self.number = number;
        self
    }

    /// The next line, `Ok(None)` at the end, or the I/O error that ended the stream.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let start = self.offset;
        let mut total: u64 = 0;
        let mut too_long = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.offset = start + total;
                    return Err(e);
                }
            };
            if avail.is_empty() {
                if total == 0 {
                    return Ok(None);
                }
                break;
            }
            let (chunk, consumed, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (avail.get(..i).unwrap_or_default(), i + 1, true),
                None => (avail, avail.len(), false),
            };
            if !too_long {
                if self.buf.len() + chunk.len() > self.max {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.inner.consume(consumed);
            total += consumed as u64;
            if done {
                break;
            }
        }
        self.offset = start + total;
        self.number += 1;
        if too_long {
            return Ok(Some(Line::TooLong {
                number: self.number,
                offset: start,
                len: total,
            }));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line::Text {
            bytes: &self.buf,
            number: self.number,
            offset: start,
        }))
    }
}

/// A message for an I/O error that ended a stream early.
pub(crate) fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => format!("stream truncated: {e}"),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
            format!("corrupt compressed stream: {e}")
        }
        _ => format!("read error: {e}"),
    }
}

/// Text of a line, lossily decoded.
pub(crate) fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}
