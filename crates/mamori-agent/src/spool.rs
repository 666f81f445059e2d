//! The bounded disk buffer: append-only segment files of CRC-framed batches.
//!
//! A batch is written here (and fsynced) before anything is sent, and leaves only when the
//! server acknowledged it as durable. The collector's positions (file offsets, journald
//! cursor) travel inside each record, so the last record on disk always says how far the
//! sources were read — a crash between writing a batch and saving the checkpoint file re-reads
//! nothing (see `run.rs`).
//!
//! # Format
//!
//! `seg-<first seq, 20 digits>.log` files, each a run of frames:
//! `len: u32 LE | crc32(payload): u32 LE | payload`, payload =
//! `seq: u64 LE | positions length: u32 LE | positions (JSON) | body (gzip JSON)`.
//! `acked` holds the highest acknowledged seq (decimal), `dropped` the number of batches
//! dropped because the buffer was full. A torn frame at the end of the last segment (a crash
//! while writing) is cut off and counted; a bad frame anywhere else ends that segment's reading
//! and is reported.
//!
//! # Bounded
//!
//! When the segments exceed `max_bytes`, the oldest segment is deleted — with the batches in it
//! not yet acknowledged — and they are counted in `dropped`, which every batch reports to the
//! server. Nothing is dropped silently.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

const FRAME_HEADER: usize = 8;
/// Largest payload read back (a larger length is corruption).
const MAX_PAYLOAD: usize = 64 << 20;

/// One batch waiting in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    /// Collector positions after this batch (JSON).
    pub positions: Vec<u8>,
    /// The compressed body sent to the server.
    pub body: Vec<u8>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + self.positions.len() + self.body.len());
        p.extend_from_slice(&self.seq.to_le_bytes());
        p.extend_from_slice(&(self.positions.len() as u32).to_le_bytes());
        p.extend_from_slice(&self.positions);
        p.extend_from_slice(&self.body);
        let mut f = Vec::with_capacity(FRAME_HEADER + p.len());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
        f.extend_from_slice(&p);
        f
    }

    fn decode(p: &[u8]) -> Option<Record> {
        let seq = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
        let plen = u32::from_le_bytes(p.get(8..12)?.try_into().ok()?) as usize;
        let positions = p.get(12..12usize.checked_add(plen)?)?.to_vec();
        let body = p.get(12 + plen..)?.to_vec();
        Some(Record {
            seq,
            positions,
            body,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    segment: u64,
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
}

/// What opening found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Batches waiting to be sent.
    pub pending: usize,
    /// Bytes cut from the end of the last segment (a torn write).
    pub torn_bytes: u64,
    /// Segments whose reading stopped at a bad frame (path and offset).
    pub corrupt: Vec<(PathBuf, u64)>,
    /// The newest record on disk, acknowledged or not: its seq and positions.
    pub last: Option<(u64, Vec<u8>)>,
}

/// The buffer.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// Unacknowledged records, oldest first.
    entries: VecDeque<Entry>,
    acked: u64,
    dropped: u64,
    current: Option<File>,
    last_seq: u64,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:020}.log"))
}

fn io_err(path: &Path, e: io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: e,
    }
}

/// Writes `data` to `path` through a temporary file and a rename (atomic), fsynced.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(data).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    if let Some(d) = path.parent() {
        if let Ok(d) = File::open(d) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn read_u64_file(path: &Path) -> Result<u64> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map_err(|_| Error::Corrupt {
            path: path.to_owned(),
            offset: 0,
            reason: format!("expected a number, found {:?}", s.trim()),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(path, e)),
    }
}

impl Spool {
    /// Opens (or creates) the buffer in `dir`, holding at most `max_bytes` of segments.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spool, OpenReport)> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let max_bytes = max_bytes.max(64 << 10);
        let acked = read_u64_file(&dir.join("acked"))?;
        let dropped = read_u64_file(&dir.join("dropped"))?;
        let mut ids = Vec::new();
        for ent in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let ent = ent.map_err(|e| io_err(dir, e))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_prefix("seg-")
                .and_then(|s| s.strip_suffix(".log"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut sp = Spool {
            dir: dir.to_owned(),
            max_bytes,
            // Four segments or more fit in the bound, so dropping one frees room.
            segment_bytes: (max_bytes / 4).clamp(16 << 10, 4 << 20),
            segments: VecDeque::new(),
            entries: VecDeque::new(),
            acked,
            dropped,
            current: None,
            last_seq: acked,
        };
        let mut report = OpenReport::default();
        let n = ids.len();
        for (i, id) in ids.into_iter().enumerate() {
            let path = seg_path(dir, id);
            let data = fs::read(&path).map_err(|e| io_err(&path, e))?;
            let mut off = 0usize;
            let mut good_end = 0usize;
            let mut bad = false;
            while off < data.len() {
                let Some(h) = data.get(off..off + FRAME_HEADER) else {
                    bad = true;
                    break;
                };
                let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
                let body = (len <= MAX_PAYLOAD)
                    .then(|| data.get(off + FRAME_HEADER..off + FRAME_HEADER + len))
                    .flatten();
                let rec = body
                    .filter(|p| crc32fast::hash(p) == crc)
                    .and_then(Record::decode);
                let Some(rec) = rec else {
                    bad = true;
                    break;
                };
                if rec.seq > acked {
                    sp.entries.push_back(Entry {
                        seq: rec.seq,
                        segment: id,
                        offset: off as u64,
                        len: (FRAME_HEADER + len) as u32,
                    });
                }
                sp.last_seq = sp.last_seq.max(rec.seq);
                if report.last.as_ref().is_none_or(|(s, _)| rec.seq > *s) {
                    report.last = Some((rec.seq, rec.positions));
                }
                off += FRAME_HEADER + len;
                good_end = off;
            }
            if bad {
                if i + 1 == n {
                    // A torn write at the end of the newest segment: cut it off.
                    report.torn_bytes = (data.len() - good_end) as u64;
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io_err(&path, e))?;
                    f.set_len(good_end as u64).map_err(|e| io_err(&path, e))?;
                    f.sync_all().map_err(|e| io_err(&path, e))?;
                    tracing::warn!(path = %path.display(), offset = good_end, bytes = report.torn_bytes, "torn batch at the end of the buffer cut off");
                } else {
                    tracing::error!(path = %path.display(), offset = good_end, "corrupt frame in the buffer; the rest of this segment is skipped");
                    report.corrupt.push((path.clone(), good_end as u64));
                }
            }
            sp.segments.push_back(Segment {
                id,
                bytes: good_end as u64,
            });
        }
        sp.remove_acked_segments()?;
        report.pending = sp.entries.len();
        Ok((sp, report))
    }

    /// The highest seq ever written or acknowledged.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Batches dropped because the buffer was full (ever).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Batches waiting.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of segments on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Appends a batch and fsyncs it. Its seq must be above every earlier one.
    pub fn append(&mut self, rec: &Record) -> Result<()> {
        if rec.seq <= self.last_seq {
            return Err(Error::Invalid(format!(
                "batch seq {} is not above the last one ({})",
                rec.seq, self.last_seq
            )));
        }
        let frame = rec.encode();
        let roll = self
            .segments
            .back()
            .is_none_or(|s| s.bytes > 0 && s.bytes + frame.len() as u64 > self.segment_bytes);
        if roll || self.current.is_none() {
            let id = if roll {
                rec.seq
            } else {
                self.segments.back().map_or(rec.seq, |s| s.id)
            };
            let path = seg_path(&self.dir, id);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_err(&path, e))?;
            if roll {
                self.segments.push_back(Segment { id, bytes: 0 });
                if let Ok(d) = File::open(&self.dir) {
                    let _ = d.sync_all();
                }
            }
            self.current = Some(f);
        }
        let seg = self.segments.back_mut().expect("a segment is open");
        let path = seg_path(&self.dir, seg.id);
        let f = self.current.as_mut().expect("a segment is open");
        let offset = seg.bytes;
        f.write_all(&frame).map_err(|e| io_err(&path, e))?;
        f.sync_data().map_err(|e| io_err(&path, e))?;
        seg.bytes += frame.len() as u64;
        self.entries.push_back(Entry {
            seq: rec.seq,
            segment: seg.id,
            offset,
            len: frame.len() as u32,
        });
        self.last_seq = rec.seq;
        self.enforce_bound()
    }

    /// Drops the oldest segments while the buffer is over its bound, counting their batches.
    fn enforce_bound(&mut self) -> Result<()> {
        while self.bytes() > self.max_bytes && self.segments.len() > 1 {
            let seg = self.segments.pop_front().expect("more than one segment");
            let mut lost = 0u64;
            while self.entries.front().is_some_and(|e| e.segment == seg.id) {
                let e = self.entries.pop_front().expect("checked");
                self.acked = self.acked.max(e.seq);
                lost += 1;
            }
            self.dropped += lost;
            let path = seg_path(&self.dir, seg.id);
            tracing::error!(
                batches = lost,
                total_dropped = self.dropped,
                "the disk buffer is full: the oldest batches were dropped"
            );
            write_atomic(
                &self.dir.join("dropped"),
                self.dropped.to_string().as_bytes(),
            )?;
            write_atomic(&self.dir.join("acked"), self.acked.to_string().as_bytes())?;
            fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }

    /// The oldest batch not acknowledged yet.
    pub fn peek(&self) -> Result<Option<Record>> {
        let Some(e) = self.entries.front() else {
            return Ok(None);
        };
        let path = seg_path(&self.dir, e.segment);
        let mut f = File::open(&path).map_err(|x| io_err(&path, x))?;
        f.seek(SeekFrom::Start(e.offset))
            .map_err(|x| io_err(&path, x))?;
        let mut buf = vec![0u8; e.len as usize];
        f.read_exact(&mut buf).map_err(|x| io_err(&path, x))?;
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.clone(),
            offset: e.offset,
            reason: reason.to_owned(),
        };
        let p = &buf[FRAME_HEADER..];
        if crc32fast::hash(p) != u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) {
            return Err(corrupt("checksum mismatch"));
        }
        Record::decode(p)
            .filter(|r| r.seq == e.seq)
            .map(Some)
            .ok_or_else(|| corrupt("undecodable batch"))
    }

    /// Marks every batch up to `seq` acknowledged and deletes segments holding nothing else.
    pub fn ack(&mut self, seq: u64) -> Result<()> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq;
        write_atomic(&self.dir.join("acked"), seq.to_string().as_bytes())?;
        while self.entries.front().is_some_and(|e| e.seq <= seq) {
            self.entries.pop_front();
        }
        self.remove_acked_segments()
    }

    /// Skips a batch that cannot be read back (counted as dropped).
    pub fn skip_corrupt(&mut self) -> Result<()> {
        if let Some(e) = self.entries.front().copied() {
            self.dropped += 1;
            write_atomic(
                &self.dir.join("dropped"),
                self.dropped.to_string().as_bytes(),
            )?;
            self.ack(e.seq)?;
        }
        Ok(())
    }

    fn remove_acked_segments(&mut self) -> Result<()> {
        // Every segment but the newest whose records are all acknowledged goes.
        while self.segments.len() > 1 {
            let first = self.segments[0].id;
            if self.entries.front().is_some_and(|e| e.segment == first) {
                break;
            }
            self.segments.pop_front();
            let path = seg_path(&self.dir, first);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, n: usize) -> Record {
        Record {
            seq,
            positions: format!("{{\"seq\":{seq}}}").into_bytes(),
            body: vec![seq as u8; n],
        }
    }

    #[test]
    fn append_peek_ack_reopen() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, r) = Spool::open(d.path(), 1 << 20).unwrap();
        assert_eq!(r.pending, 0);
        for i in 1..=5 {
            s.append(&rec(i, 100)).unwrap();
        }
        assert!(s.append(&rec(5, 1)).is_err(), "seqs only grow");
        assert_eq!(s.peek().unwrap().unwrap(), rec(1, 100));
        s.ack(2).unwrap();
        assert_eq!(s.peek().unwrap().unwrap().seq, 3);
        drop(s);
        let (s, r) = Spool::open(d.path(), 1 << 20).unwrap();
        assert_eq!(r.pending, 3);
        assert_eq!(r.last.unwrap().0, 5);
        assert_eq!(s.peek().unwrap().unwrap(), rec(3, 100));
        assert_eq!(s.last_seq(), 5);
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_batches_kept() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(d.path(), 1 << 20).unwrap();
        s.append(&rec(1, 50)).unwrap();
        s.append(&rec(2, 50)).unwrap();
        drop(s);
        let seg = seg_path(d.path(), 1);
        let len = fs::metadata(&seg).unwrap().len();
        // Half of the second frame written: a crash mid-write.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 20).unwrap();
        let (mut s, r) = Spool::open(d.path(), 1 << 20).unwrap();
        assert_eq!(r.pending, 1);
        assert!(r.torn_bytes > 0);
        assert_eq!(r.last.unwrap().0, 1);
        // Appending after the cut works and reads back.
        s.append(&rec(2, 10)).unwrap();
        s.ack(1).unwrap();
        assert_eq!(s.peek().unwrap().unwrap(), rec(2, 10));
    }

    #[test]
    fn a_flipped_bit_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(d.path(), 1 << 20).unwrap();
        s.append(&rec(1, 50)).unwrap();
        drop(s);
        let seg = seg_path(d.path(), 1);
        let mut b = fs::read(&seg).unwrap();
        b[30] ^= 1;
        fs::write(&seg, b).unwrap();
        let (_, r) = Spool::open(d.path(), 1 << 20).unwrap();
        assert_eq!(r.pending, 0);
        assert!(r.torn_bytes > 0);
    }

    #[test]
    fn full_buffer_drops_oldest_and_counts() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(d.path(), 64 << 10).unwrap();
        for i in 1..=40 {
            s.append(&rec(i, 4000)).unwrap();
        }
        assert!(s.bytes() <= 64 << 10, "bounded: {}", s.bytes());
        assert!(s.dropped() > 0);
        let first = s.peek().unwrap().unwrap().seq;
        assert_eq!(first, s.dropped() + 1, "exactly the oldest were dropped");
        drop(s);
        let (s, r) = Spool::open(d.path(), 64 << 10).unwrap();
        assert_eq!(s.peek().unwrap().unwrap().seq, first);
        assert_eq!(r.pending as u64 + s.dropped(), 40);
    }

    #[test]
    fn acked_segments_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(d.path(), 256 << 10).unwrap();
        for i in 1..=60 {
            s.append(&rec(i, 4000)).unwrap();
        }
        let before = fs::read_dir(d.path()).unwrap().count();
        s.ack(60).unwrap();
        let after = fs::read_dir(d.path()).unwrap().count();
        assert!(after < before, "{before} -> {after}");
        assert_eq!(s.pending(), 0);
        assert!(s.peek().unwrap().is_none());
    }
}
