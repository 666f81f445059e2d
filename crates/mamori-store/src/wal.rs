//! The event log: numbered segment files of CRC-framed records (format in [`crate::codec`]).
//!
//! The log is the source of truth of the event store. `append` returns only after the batch is
//! written (and fsynced, per [`FsyncPolicy`]); open-time recovery truncates a torn tail (after
//! copying it to `quarantine/`) and reports it, and treats any other damage as
//! [`Error::Corrupt`].
//!
//! **A batch survives a crash whole or not at all**: its last frame carries the end-of-batch
//! mark (format 2), and recovery cuts the frames of a batch that has none — a SIGKILL in the
//! middle of the one `write` of an unacknowledged batch leaves no prefix of it behind.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mamori_event::Event;
use serde::{Deserialize, Serialize};

use crate::codec::{self, FrameError, HeaderError, SEGMENT_HEADER_LEN};
use crate::error::{Error, IoContext, Result};
use crate::model::{AppendAck, Seq};

/// When the log is fsynced. Every policy writes the batch to the OS before acknowledging, so a
/// *process* crash (SIGKILL, panic, OOM kill) never loses an acknowledged event; the policies
/// differ on *power loss*.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum FsyncPolicy {
    /// fsync before every acknowledgement (one fsync per batch). Nothing acknowledged is lost
    /// on power failure. The default.
    #[default]
    Always,
    /// fsync at the first append at least `interval_ms` after the previous fsync, and at segment
    /// rollover and close: a power failure can lose up to that window of acknowledged events.
    Batch { interval_ms: u64 },
    /// Leave syncing to the OS (tests, benchmarks, throwaway data).
    Never,
}

/// A torn tail found and truncated at open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub segment: PathBuf,
    /// Where the first bad frame started; the segment now ends here.
    pub offset: u64,
    /// Bytes removed from the segment (copied to `quarantine` first).
    pub bytes: u64,
    pub reason: String,
    pub quarantined: PathBuf,
}

struct Segment {
    first_seq: Seq,
    path: PathBuf,
    file: Arc<File>,
    /// Frames in the segment.
    frames: u64,
    /// Start offset of every [`STRIDE`]th frame (seq `first_seq + k·STRIDE`): a quarter byte
    /// per event instead of four, since what the server keeps per stored event is what grows
    /// with the volume stored (issue #15 finding 12: 42 MB at 10 M events).
    sparse: Vec<u32>,
    /// Valid bytes (header + whole frames).
    len: u64,
    /// Latest receipt time in the segment, for age retention.
    max_received_ns: i64,
    /// Format version of its header.
    version: u16,
}

/// Frames between two entries of [`Segment::sparse`]: a read overreaches by fewer than this
/// many frames at each end.
const STRIDE: u64 = 16;

impl Segment {
    fn end_seq(&self) -> Seq {
        self.first_seq + self.frames
    }

    fn push_frame(&mut self, offset: u32) {
        if self.frames % STRIDE == 0 {
            self.sparse.push(offset);
        }
        self.frames += 1;
    }

    /// Whole frames covering seqs `first..=last`: `(start, end, frames before first)`.
    fn span(&self, first: Seq, last: Seq) -> Option<(u64, u64, usize)> {
        let i = first.checked_sub(self.first_seq)?;
        let j = last.checked_sub(self.first_seq)?;
        if j >= self.frames || i > j {
            return None;
        }
        let start = *self.sparse.get((i / STRIDE) as usize)? as u64;
        let end = self
            .sparse
            .get((j / STRIDE + 1) as usize)
            .map_or(self.len, |&o| o as u64);
        Some((start, end, (i % STRIDE) as usize))
    }
}

struct Writer {
    file: File,
    next_seq: Seq,
    last_sync: Instant,
    unsynced: bool,
    poisoned: bool,
    buf: Vec<u8>,
    lens: Vec<u32>,
}

pub(crate) struct Wal {
    dir: PathBuf,
    fsync: FsyncPolicy,
    segment_max_bytes: u64,
    /// Oldest first; the last one is being written.
    segments: RwLock<VecDeque<Segment>>,
    writer: Mutex<Writer>,
    recoveries: Vec<Recovery>,
}

/// A body read back from the log (checked CRC), with its seq.
pub(crate) struct Body {
    pub(crate) seq: Seq,
    pub(crate) bytes: Vec<u8>,
}

pub(crate) fn segment_name(first_seq: Seq) -> String {
    format!("{first_seq:020}.wal")
}

fn parse_segment_name(name: &str) -> Option<Seq> {
    let stem = name.strip_suffix(".wal")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

impl Wal {
    pub(crate) fn open(dir: &Path, fsync: FsyncPolicy, segment_max_bytes: u64) -> Result<Wal> {
        fs::create_dir_all(dir).at(dir)?;
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
                firsts.push(seq);
            }
        }
        firsts.sort_unstable();
        let mut segments = VecDeque::new();
        let mut recoveries = Vec::new();
        for (i, &first) in firsts.iter().enumerate() {
            let is_last = i + 1 == firsts.len();
            let (seg, rec) = scan_segment(dir, first, is_last)?;
            if let Some(prev) = segments.back() {
                let prev: &Segment = prev;
                if prev.end_seq() != seg.first_seq {
                    return Err(Error::Corrupt {
                        path: seg.path.clone(),
                        offset: 0,
                        reason: format!(
                            "segment starts at seq {} but the previous one ends before seq {}",
                            seg.first_seq,
                            prev.end_seq()
                        ),
                    });
                }
            }
            recoveries.extend(rec);
            segments.push_back(seg);
        }
        if segments.is_empty() {
            segments.push_back(create_segment(dir, 1, fsync != FsyncPolicy::Never)?);
        }
        // Batches are appended with end marks only to a segment of the current format: a log
        // written by an older version continues in a new segment.
        let sync = fsync != FsyncPolicy::Never;
        let active = segments.back().expect("at least one segment");
        if active.version < codec::FORMAT_VERSION {
            let (path, first, end) = (active.path.clone(), active.first_seq, active.end_seq());
            if active.frames == 0 {
                fs::remove_file(&path).at(&path)?;
                segments.pop_back();
                segments.push_back(create_segment(dir, first, sync)?);
            } else {
                segments.push_back(create_segment(dir, end, sync)?);
            }
        }
        let active = segments.back().expect("at least one segment");
        let file = OpenOptions::new()
            .append(true)
            .open(&active.path)
            .at(&active.path)?;
        let writer = Writer {
            file,
            next_seq: active.end_seq(),
            last_sync: Instant::now(),
            unsynced: false,
            poisoned: false,
            buf: Vec::new(),
            lens: Vec::new(),
        };
        Ok(Wal {
            dir: dir.to_path_buf(),
            fsync,
            segment_max_bytes,
            segments: RwLock::new(segments),
            writer: Mutex::new(writer),
            recoveries,
        })
    }

    pub(crate) fn recoveries(&self) -> &[Recovery] {
        &self.recoveries
    }

    /// Appends a batch under one write (and at most one fsync). Nothing is written if any event
    /// cannot be encoded.
    pub(crate) fn append(&self, batch: &[Event], received_at: DateTime<Utc>) -> Result<AppendAck> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.poisoned {
            return Err(Error::Poisoned);
        }
        let first_seq = w.next_seq;
        if batch.is_empty() {
            return Ok(AppendAck {
                first_seq,
                last_seq: first_seq - 1,
            });
        }
        let w = &mut *w;
        w.buf.clear();
        w.lens.clear();
        let mut last = 0;
        for (i, e) in batch.iter().enumerate() {
            last = w.buf.len();
            let n = codec::encode_frame(&mut w.buf, first_seq + i as u64, received_at, e)?;
            w.lens.push(n as u32);
        }
        codec::mark_batch_end(&mut w.buf[last..]);
        let (active_len, active_has_frames) = {
            let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
            let a = segs.back().expect("active segment");
            (a.len, a.frames > 0)
        };
        let mut start = active_len;
        if active_has_frames && active_len + w.buf.len() as u64 > self.segment_max_bytes {
            self.roll(w, first_seq)?;
            start = SEGMENT_HEADER_LEN as u64;
        }
        if start + w.buf.len() as u64 > u32::MAX as u64 {
            return Err(Error::InvalidRequest(format!(
                "batch of {} bytes does not fit in one segment",
                w.buf.len()
            )));
        }
        let path = self.active_path();
        if let Err(e) = w.file.write_all(&w.buf) {
            // Roll back the partial write so the next append does not follow garbage.
            if w.file.set_len(start).is_err() {
                w.poisoned = true;
            }
            return Err(Error::Io { path, source: e });
        }
        self.sync_per_policy(w, &path)?;
        let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
        let a = segs.back_mut().expect("active segment");
        let mut off = start;
        for &n in &w.lens {
            a.push_frame(off as u32);
            off += n as u64;
        }
        a.len = off;
        a.max_received_ns = a.max_received_ns.max(codec::nanos(received_at));
        let last_seq = first_seq + batch.len() as u64 - 1;
        w.next_seq = last_seq + 1;
        Ok(AppendAck {
            first_seq,
            last_seq,
        })
    }

    fn active_path(&self) -> PathBuf {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segs.back().expect("active segment").path.clone()
    }

    fn sync_per_policy(&self, w: &mut Writer, path: &Path) -> Result<()> {
        let due = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Batch { interval_ms } => {
                w.last_sync.elapsed() >= Duration::from_millis(interval_ms)
            }
            FsyncPolicy::Never => false,
        };
        if due {
            if let Err(e) = w.file.sync_data() {
                // After a failed fsync the page cache state is unknown (fsyncgate): stop.
                w.poisoned = true;
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
            w.last_sync = Instant::now();
            w.unsynced = false;
        } else {
            w.unsynced = true;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at `first_seq`.
    fn roll(&self, w: &mut Writer, first_seq: Seq) -> Result<()> {
        let sync = self.fsync != FsyncPolicy::Never;
        if sync && w.unsynced {
            w.file.sync_data().at(&self.active_path())?;
            w.unsynced = false;
        }
        let seg = create_segment(&self.dir, first_seq, sync)?;
        w.file = OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .at(&seg.path)?;
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(seg);
        Ok(())
    }

    /// fsyncs whatever the policy left unsynced.
    pub(crate) fn sync(&self) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.unsynced && self.fsync != FsyncPolicy::Never {
            let path = self.active_path();
            w.file.sync_data().at(&path)?;
            w.unsynced = false;
            w.last_sync = Instant::now();
        }
        Ok(())
    }

    /// `(first_seq, next_seq)`: the log holds `first_seq..next_seq`.
    pub(crate) fn bounds(&self) -> (Seq, Seq) {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let first = segs.front().expect("segment").first_seq;
        (first, segs.back().expect("segment").end_seq())
    }

    /// `(bytes, active_bytes, segments)`.
    pub(crate) fn sizes(&self) -> (u64, u64, usize) {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let total = segs.iter().map(|s| s.len).sum();
        (total, segs.back().map_or(0, |s| s.len), segs.len())
    }

    pub(crate) fn read(&self, seq: Seq) -> Result<Option<Body>> {
        Ok(self.read_range(seq, 1)?.pop())
    }

    /// Up to `limit` bodies from `from` on (fewer at the end of the log, or starting later if
    /// retention removed `from`), in seq order. Reads each segment's part in one read.
    pub(crate) fn read_range(&self, from: Seq, limit: usize) -> Result<Vec<Body>> {
        let mut plan = Vec::new();
        {
            let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
            let mut seq = from.max(segs.front().expect("segment").first_seq);
            let mut left = limit as u64;
            let i0 = segs.partition_point(|s| s.end_seq() <= seq);
            for s in segs.iter().skip(i0) {
                if left == 0 || seq >= s.end_seq() {
                    break;
                }
                let last = seq.saturating_add(left).min(s.end_seq()) - 1;
                let (start, end, skip) = s.span(seq, last).expect("seqs in segment");
                plan.push((s.file.clone(), s.path.clone(), seq, last, start, end, skip));
                left -= last + 1 - seq;
                seq = last + 1;
            }
        }
        let mut out = Vec::new();
        for (file, path, first, last, start, end, skip) in plan {
            let mut buf = vec![0u8; (end - start) as usize];
            read_exact_at(&file, &mut buf, start).at(&path)?;
            let mut pos = 0usize;
            for seq in first - skip as u64..=last {
                let (body, n) = codec::check_frame(&buf[pos..]).map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    offset: start + pos as u64,
                    reason: format!("frame of seq {seq} no longer reads: {e:?}"),
                })?;
                let (found, _) = codec::body_header(body);
                if found != seq {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        offset: start + pos as u64,
                        reason: format!("expected seq {seq}, found {found}"),
                    });
                }
                if seq >= first {
                    out.push(Body {
                        seq,
                        bytes: body.to_vec(),
                    });
                }
                pos += n;
            }
        }
        Ok(out)
    }

    /// Removes whole sealed segments from the front: those whose every event was received
    /// before `cutoff_ns`, then more while the log exceeds `max_bytes`. Returns
    /// `(events, bytes)` removed.
    pub(crate) fn remove_prefix(
        &self,
        cutoff_ns: Option<i64>,
        max_bytes: Option<u64>,
    ) -> Result<(u64, u64)> {
        let mut removed = Vec::new();
        {
            let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
            let mut total: u64 = segs.iter().map(|s| s.len).sum();
            while segs.len() > 1 {
                let s = segs.front().expect("segment");
                let old = cutoff_ns.is_some_and(|c| s.max_received_ns < c);
                let big = max_bytes.is_some_and(|m| total > m);
                if !(old || big) {
                    break;
                }
                total -= s.len;
                removed.push(segs.pop_front().expect("segment"));
            }
        }
        let (mut events, mut bytes) = (0, 0);
        for s in &removed {
            fs::remove_file(&s.path).at(&s.path)?;
            events += s.frames;
            bytes += s.len;
        }
        if !removed.is_empty() && self.fsync != FsyncPolicy::Never {
            sync_dir(&self.dir)?;
        }
        Ok((events, bytes))
    }
}

fn create_segment(dir: &Path, first_seq: Seq, sync: bool) -> Result<Segment> {
    let path = dir.join(segment_name(first_seq));
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .at(&path)?;
    let written = f
        .write_all(&codec::encode_segment_header(first_seq))
        .and_then(|()| if sync { f.sync_all() } else { Ok(()) });
    if let Err(e) = written {
        // A header cut short (disk full) must not stay behind: the next roll creates the
        // same name, and open would read a segment without a header.
        drop(f);
        let _ = fs::remove_file(&path);
        return Err(Error::Io { path, source: e });
    }
    if sync {
        if let Err(e) = sync_dir(dir) {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
    }
    Ok(Segment {
        first_seq,
        file: Arc::new(File::open(&path).at(&path)?),
        path,
        frames: 0,
        sparse: Vec::new(),
        len: SEGMENT_HEADER_LEN as u64,
        max_received_ns: i64::MIN,
        version: codec::FORMAT_VERSION,
    })
}

/// Reads one segment, checking every frame. Damage in the last segment is a torn tail:
/// quarantined, truncated and reported. Damage elsewhere is [`Error::Corrupt`].
fn scan_segment(dir: &Path, first_seq: Seq, is_last: bool) -> Result<(Segment, Option<Recovery>)> {
    let path = dir.join(segment_name(first_seq));
    let data = fs::read(&path).at(&path)?;
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        path: path.clone(),
        offset,
        reason,
    };
    let mut recovery = None;
    let mut offsets = Vec::new();
    let mut max_received_ns = i64::MIN;
    let mut version = codec::FORMAT_VERSION;
    let mut pos;
    if data.len() < SEGMENT_HEADER_LEN {
        if !is_last {
            return Err(corrupt(0, "segment shorter than its header".into()));
        }
        // Torn while being created: rewrite the header.
        recovery = Some(quarantine(dir, &path, &data, 0, "torn segment header")?);
        let mut f = OpenOptions::new().write(true).open(&path).at(&path)?;
        f.set_len(0).at(&path)?;
        f.write_all(&codec::encode_segment_header(first_seq))
            .at(&path)?;
        f.sync_all().at(&path)?;
        pos = SEGMENT_HEADER_LEN;
    } else {
        let h: &[u8; SEGMENT_HEADER_LEN] = data[..SEGMENT_HEADER_LEN].try_into().expect("len");
        match codec::decode_segment_header(h) {
            Ok(s) if s == first_seq => {}
            Ok(s) => return Err(corrupt(0, format!("header says first seq {s}"))),
            Err(HeaderError::UnsupportedVersion(v)) => {
                return Err(Error::UnsupportedVersion {
                    path: path.clone(),
                    found: v,
                    supported: codec::FORMAT_VERSION,
                })
            }
            Err(e) => return Err(corrupt(0, format!("bad segment header: {e:?}"))),
        }
        version = codec::segment_version(h);
        pos = SEGMENT_HEADER_LEN;
        let mut expect = first_seq;
        // The end of the last whole batch: frames after it belong to a batch cut short.
        let (mut whole_pos, mut whole_frames, mut whole_max) = (pos, 0, max_received_ns);
        let mut bad = None;
        while pos < data.len() {
            let why = match codec::check_marked_frame(&data[pos..]) {
                Ok((body, n, end)) => {
                    let (seq, ns) = codec::body_header(body);
                    if seq == expect {
                        if pos > u32::MAX as usize {
                            return Err(corrupt(pos as u64, "segment beyond 4 GiB".into()));
                        }
                        offsets.push(pos as u32);
                        max_received_ns = max_received_ns.max(ns);
                        expect += 1;
                        pos += n;
                        // Format 1 has no marks: each frame stands alone.
                        if end || version < 2 {
                            (whole_pos, whole_frames, whole_max) =
                                (pos, offsets.len(), max_received_ns);
                        }
                        continue;
                    }
                    format!("expected seq {expect}, found {seq}")
                }
                Err(FrameError::Truncated) => "frame cut short".to_string(),
                Err(e) => format!("{e:?}"),
            };
            bad = Some(why);
            break;
        }
        if whole_pos < pos || bad.is_some() {
            let cut = whole_pos;
            let reason = match bad {
                Some(why) if cut == pos => why,
                Some(why) => format!(
                    "unfinished batch of {} frames before: {why}",
                    offsets.len() - whole_frames
                ),
                None => format!(
                    "unfinished batch: {} frames without the end-of-batch mark",
                    offsets.len() - whole_frames
                ),
            };
            if !is_last {
                return Err(corrupt(cut as u64, reason));
            }
            let r = quarantine(dir, &path, &data[cut..], cut as u64, &reason)?;
            let f = OpenOptions::new().write(true).open(&path).at(&path)?;
            f.set_len(cut as u64).at(&path)?;
            f.sync_all().at(&path)?;
            recovery = Some(r);
            offsets.truncate(whole_frames);
            max_received_ns = whole_max;
            pos = cut;
        }
    }
    let frames = offsets.len() as u64;
    let sparse = offsets.iter().step_by(STRIDE as usize).copied().collect();
    Ok((
        Segment {
            first_seq,
            file: Arc::new(File::open(&path).at(&path)?),
            path,
            frames,
            sparse,
            len: pos as u64,
            max_received_ns,
            version,
        },
        recovery,
    ))
}

fn quarantine(dir: &Path, seg: &Path, bytes: &[u8], offset: u64, reason: &str) -> Result<Recovery> {
    let qdir = dir.join("quarantine");
    fs::create_dir_all(&qdir).at(&qdir)?;
    let name = seg
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    // Never overwrite an earlier quarantine (repeated crashes can tear at the same offset).
    let mut q = qdir.join(format!("{name}.{offset}.torn"));
    let mut n = 1;
    while q.exists() {
        q = qdir.join(format!("{name}.{offset}.{n}.torn"));
        n += 1;
    }
    fs::write(&q, bytes).at(&q)?;
    Ok(Recovery {
        segment: seg.to_path_buf(),
        offset,
        bytes: bytes.len() as u64,
        reason: reason.to_string(),
        quarantined: q,
    })
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(unix)]
fn read_exact_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}

#[cfg(windows)]
fn read_exact_at(f: &File, mut buf: &mut [u8], mut off: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, off)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                off += n as u64;
            }
        }
    }
    Ok(())
}
