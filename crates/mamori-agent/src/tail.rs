//! Following log files: complete lines, rotation, truncation, positions that survive restarts.
//!
//! This is the agent's own tailer rather than the server's (`mamori-server` `sources/tail.rs`):
//! that one is wired to the server's pipeline and its key/value store for checkpoints, while
//! the agent's positions must travel inside each buffered batch (see [`crate::spool`]) so a
//! batch and the position after it are written in one fsync. The rules are the same:
//!
//! * only complete lines are taken; a partial last line waits for its newline;
//! * **rename rotation** (`mv app.log app.log.1`, a new `app.log`): the old file, still open,
//!   is read to its end first, then the new one from offset 0; after a restart in the middle of
//!   a rotation the old file is found in the same directory by its device and inode;
//! * **truncation** (same inode, size below the offset): reading restarts at 0;
//! * a missing file is waited for; a line longer than [`MAX_LINE`] is cut and marked.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest line kept whole; longer lines are cut here (and flagged `truncated`).
pub const MAX_LINE: usize = 64 << 10;
const READ_CHUNK: usize = 64 << 10;
/// Most directory entries looked at to find a rotated file after a restart.
const MAX_DIR_SCAN: usize = 10_000;

/// Where reading stands in one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePos {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// Lines before `offset`.
    pub line: u64,
}

/// One line read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub path: String,
    /// 1-based line number.
    pub line: u64,
    pub offset: u64,
    pub text: String,
    pub truncated: bool,
}

struct Open {
    file: File,
    pos: FilePos,
}

/// One followed path.
pub struct Tail {
    path: PathBuf,
    cur: Option<Open>,
    /// Inside an over-long line: skip to its newline.
    skipping: bool,
}

#[cfg(unix)]
fn ids(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn ids(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

impl Tail {
    /// Follows `path`, resuming at `saved` when given (the file it names is looked for at the
    /// path, then among its neighbours when it was rotated away meanwhile).
    pub fn new(path: PathBuf, saved: Option<FilePos>) -> Tail {
        let mut t = Tail {
            path,
            cur: None,
            skipping: false,
        };
        if let Some(p) = saved {
            t.cur = t.reopen(p);
        }
        t
    }

    fn reopen(&self, p: FilePos) -> Option<Open> {
        let try_open = |path: &Path| -> Option<Open> {
            let file = File::open(path).ok()?;
            let m = file.metadata().ok()?;
            ((p.dev, p.ino) == ids(&m)).then_some(Open { file, pos: p })
        };
        if let Some(o) = try_open(&self.path) {
            return Some(o);
        }
        let dir = self.path.parent()?;
        for ent in std::fs::read_dir(dir).ok()?.take(MAX_DIR_SCAN).flatten() {
            if let Some(o) = try_open(&ent.path()) {
                tracing::info!(path = %self.path.display(), rotated = %ent.path().display(), "finishing the rotated file after a restart");
                return Some(o);
            }
        }
        tracing::warn!(path = %self.path.display(), "the file read before the restart is gone; reading the current file from its start");
        None
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The position after everything returned so far.
    pub fn position(&self) -> Option<FilePos> {
        self.cur.as_ref().map(|o| o.pos)
    }

    /// Reads up to `max` new complete lines.
    pub fn poll(&mut self, max: usize, out: &mut Vec<Line>) {
        let before = out.len();
        if self.cur.is_none() {
            self.open_new();
        }
        let Some(cur) = self.cur.as_ref() else {
            return;
        };
        let (dev, ino) = (cur.pos.dev, cur.pos.ino);
        // Truncated in place?
        if let Ok(m) = cur.file.metadata() {
            if m.len() < cur.pos.offset {
                tracing::warn!(path = %self.path.display(), "file truncated; reading it again from the start");
                let c = self.cur.as_mut().expect("checked");
                c.pos.offset = 0;
                c.pos.line = 0;
                self.skipping = false;
            }
        }
        self.read_lines(max, out);
        if out.len() - before >= max {
            return;
        }
        // Rotated: the path now names another file (or none). The old one was read to its
        // end above; take a last line without newline, then switch.
        let rotated = match std::fs::metadata(&self.path) {
            Ok(m) => ids(&m) != (dev, ino),
            Err(_) => false,
        };
        if rotated {
            self.read_rest(out);
            self.cur = None;
            self.skipping = false;
            self.open_new();
            let left = max.saturating_sub(out.len() - before);
            self.read_lines(left, out);
        }
    }

    fn open_new(&mut self) {
        let Ok(file) = File::open(&self.path) else {
            return;
        };
        let Ok(m) = file.metadata() else {
            return;
        };
        let (dev, ino) = ids(&m);
        self.cur = Some(Open {
            file,
            pos: FilePos {
                dev,
                ino,
                offset: 0,
                line: 0,
            },
        });
    }

    /// Complete lines after the position, at most `max`.
    fn read_lines(&mut self, max: usize, out: &mut Vec<Line>) {
        if max == 0 {
            return;
        }
        let path_text = self.path.to_string_lossy().into_owned();
        let Some(cur) = self.cur.as_mut() else {
            return;
        };
        if cur.file.seek(SeekFrom::Start(cur.pos.offset)).is_err() {
            return;
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut taken = 0usize;
        // Offset of buf[0] in the file.
        let mut base = cur.pos.offset;
        loop {
            let n = match cur.file.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut start = 0usize;
            while let Some(nl) = memchr(&buf[start..]) {
                let end = start + nl;
                let raw = &buf[start..end];
                let line_off = base + start as u64;
                if self.skipping {
                    self.skipping = false;
                } else {
                    cur.pos.line += 1;
                    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                    let truncated = raw.len() > MAX_LINE;
                    let raw = &raw[..raw.len().min(MAX_LINE)];
                    if !raw.iter().all(|b| b.is_ascii_whitespace()) {
                        out.push(Line {
                            path: path_text.clone(),
                            line: cur.pos.line,
                            offset: line_off,
                            text: String::from_utf8_lossy(raw).into_owned(),
                            truncated,
                        });
                        taken += 1;
                    }
                }
                start = end + 1;
                cur.pos.offset = base + start as u64;
                if taken >= max {
                    return;
                }
            }
            buf.drain(..start);
            base += start as u64;
            if buf.len() > MAX_LINE {
                // An over-long line: keep its head, skip the rest up to the newline.
                cur.pos.line += 1;
                out.push(Line {
                    path: path_text.clone(),
                    line: cur.pos.line,
                    offset: base,
                    text: String::from_utf8_lossy(&buf[..MAX_LINE]).into_owned(),
                    truncated: true,
                });
                taken += 1;
                base += buf.len() as u64;
                cur.pos.offset = base;
                buf.clear();
                self.skipping = true;
                if taken >= max {
                    return;
                }
            }
        }
    }

    /// A final line without newline of a finished (rotated) file.
    fn read_rest(&mut self, out: &mut Vec<Line>) {
        let path_text = self.path.to_string_lossy().into_owned();
        let Some(cur) = self.cur.as_mut() else {
            return;
        };
        if cur.file.seek(SeekFrom::Start(cur.pos.offset)).is_err() {
            return;
        }
        let mut rest = Vec::new();
        if (&cur.file)
            .take(MAX_LINE as u64 + 1)
            .read_to_end(&mut rest)
            .is_err()
        {
            return;
        }
        if !rest.is_empty() && !self.skipping {
            cur.pos.line += 1;
            let truncated = rest.len() > MAX_LINE;
            rest.truncate(MAX_LINE);
            out.push(Line {
                path: path_text,
                line: cur.pos.line,
                offset: cur.pos.offset,
                text: String::from_utf8_lossy(&rest).into_owned(),
                truncated,
            });
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Every followed path's position, keyed by path.
pub type Positions = BTreeMap<String, FilePos>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn texts(v: &[Line]) -> Vec<&str> {
        v.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn lines_partial_lines_and_resume() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.log");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"one\ntwo\r\n\nthr").unwrap();
        let mut t = Tail::new(p.clone(), None);
        let mut out = Vec::new();
        t.poll(100, &mut out);
        assert_eq!(texts(&out), ["one", "two"]);
        assert_eq!(out[1].line, 2);
        f.write_all(b"ee\nfour\n").unwrap();
        let pos = t.position().unwrap();
        // A restart resumes at the saved position.
        let mut t = Tail::new(p.clone(), Some(pos));
        let mut out = Vec::new();
        t.poll(1, &mut out);
        assert_eq!(texts(&out), ["three"]);
        assert_eq!(out[0].line, 4);
        t.poll(100, &mut out);
        assert_eq!(texts(&out), ["three", "four"]);
    }

    #[test]
    fn rotation_reads_old_file_to_its_end_then_new_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app.log");
        std::fs::write(&p, "a\n").unwrap();
        let mut t = Tail::new(p.clone(), None);
        let mut out = Vec::new();
        t.poll(100, &mut out);
        // Written after the last poll, then rotated: must not be lost.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"b\nc-no-newline").unwrap();
        std::fs::rename(&p, d.path().join("app.log.1")).unwrap();
        std::fs::write(&p, "d\n").unwrap();
        t.poll(100, &mut out);
        assert_eq!(texts(&out), ["a", "b", "c-no-newline", "d"]);
    }

    #[test]
    fn restart_mid_rotation_finds_the_old_file_by_inode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app.log");
        std::fs::write(&p, "a\nb\n").unwrap();
        let mut t = Tail::new(p.clone(), None);
        let mut out = Vec::new();
        t.poll(1, &mut out);
        let pos = t.position().unwrap();
        drop(t);
        std::fs::rename(&p, d.path().join("app.log.1")).unwrap();
        std::fs::write(&p, "c\n").unwrap();
        let mut t = Tail::new(p.clone(), Some(pos));
        t.poll(100, &mut out);
        assert_eq!(texts(&out), ["a", "b", "c"]);
    }

    #[test]
    fn truncation_restarts_and_long_lines_are_cut() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        std::fs::write(&p, "abcdef\nghijkl\n").unwrap();
        let mut t = Tail::new(p.clone(), None);
        let mut out = Vec::new();
        t.poll(100, &mut out);
        std::fs::write(&p, "z\n").unwrap();
        t.poll(100, &mut out);
        assert_eq!(texts(&out), ["abcdef", "ghijkl", "z"]);
        let mut long = vec![b'x'; MAX_LINE * 2 + 10];
        long.extend_from_slice(b"\nafter\n");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&long).unwrap();
        out.clear();
        t.poll(100, &mut out);
        assert_eq!(
            out.len(),
            2,
            "{:?}",
            out.iter().map(|l| l.text.len()).collect::<Vec<_>>()
        );
        assert!(out[0].truncated && out[0].text.len() == MAX_LINE);
        assert_eq!(out[1].text, "after");
    }
}
