//! File tailing with durable checkpoints: `[[tail]] paths = ["/var/log/auth.log"]`.
//!
//! Each configured path is polled every [`TailConfig::poll_ms`] (no inotify: polling works the
//! same on every filesystem, NFS and bind mounts included). Complete lines are parsed — by the
//! forced [`TailConfig::format`], or per line: `{` → JSON, an Apache/nginx access-log line →
//! access log, anything else → syslog / plain text — and stored with origin
//! `Origin::File { path, line, offset }` and the field `log.file.path`.
//!
//! # Checkpoints: resume without gaps
//!
//! The position in each file — device + inode, byte offset, line number, and a SHA-256 of the
//! file's first bytes to recognise a recycled inode — is kept in the alert store's key/value
//! table under [`checkpoint_key`]. It is written only **after** the events up to that offset
//! were acknowledged as durable ([`Sink::send_durable`]), so a restart never skips a line. The
//! only window for duplicates is a crash between that acknowledgement and the checkpoint write
//! (one SQLite put, right after the ack): then the last batch (at most 1024 lines) of that file
//! is stored again. Exactly-once would need the two stores to commit together.
//!
//! # Rotation, truncation, missing files
//!
//! * **Rename rotation** (`mv app.log app.log.1`, a new `app.log`): the old file stays open
//!   and is read to its end; it is closed after it produced nothing for two polls in a row (so
//!   a writer that has not reopened yet still gets its last lines read), and its final line is
//!   taken even without a newline. The new file is read from offset 0. The checkpoint lists
//!   every file still open, so a restart in the middle of a rotation finds the renamed file in
//!   the same directory by its inode and finishes it.
//! * **Truncation** (same inode, size below the offset, e.g. `copytruncate`): reading restarts
//!   at 0, with a warning. A file truncated and refilled past the old offset between two polls
//!   cannot be told from an appended one (lines in between are then missed).
//! * **Missing file**: the current file (if any) is finished as a rotated one and the path is
//!   waited for; it is read from 0 when it appears.
//! * **Lines**: only complete lines are consumed; a partial last line waits for its newline. A
//!   line longer than [`MAX_LINE_BYTES`] is skipped and counted as malformed, and reading goes
//!   on after its newline. `\r\n` endings and blank lines are accepted.
//! * `start_at_end = true` skips the content present when a path is first seen with no
//!   checkpoint (line numbers are then unknown and left out of the origin).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use mamori_event::{Event, FieldName, Format, Interner, Origin, Value};
use mamori_store::AlertStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::metrics::{Metrics, SourceKind};
use crate::pipeline::{Closed, Sink};

/// Default of [`TailConfig::poll_ms`].
pub const DEFAULT_POLL_MS: u64 = 500;
/// Longest line taken; longer ones are skipped and counted as malformed.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Most lines sent (and checkpointed) at once.
const MAX_BATCH_LINES: usize = 1024;
/// Most bytes consumed per batch.
const MAX_BATCH_BYTES: u64 = 4 << 20;
const READ_CHUNK: usize = 64 * 1024;
/// Polls in a row a rotated file must yield nothing before it is closed.
const ROTATED_GRACE_POLLS: u32 = 2;
/// Bytes at the start of a file hashed to recognise it.
const HEAD_BYTES: u64 = 256;
/// Most directory entries examined when looking for a rotated file after a restart.
const MAX_DIR_SCAN: usize = 10_000;

fn default_poll_ms() -> u64 {
    DEFAULT_POLL_MS
}

/// One `[[tail]]` section.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    /// Files to follow (no globs). A missing file is waited for.
    pub paths: Vec<PathBuf>,
    /// `syslog`, `json` or `access-log`; absent: detected per line.
    #[serde(default)]
    pub format: Option<String>,
    /// How often each file is checked for new lines, rotation and truncation (default 500).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// On first sight of a file (no checkpoint yet), skip what it already holds
    /// (default false: read it from the start).
    #[serde(default)]
    pub start_at_end: bool,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            paths: Vec::new(),
            format: None,
            poll_ms: DEFAULT_POLL_MS,
            start_at_end: false,
        }
    }
}

impl TailConfig {
    /// Checks what serde cannot: a known line format, a sane poll interval, some paths.
    pub fn validate(&self) -> Result<(), String> {
        LineFormat::from_config(self.format.as_deref())?;
        if self.poll_ms == 0 {
            return Err("tail: poll_ms must be at least 1".into());
        }
        if self.paths.is_empty() {
            return Err("tail: `paths` is empty".into());
        }
        Ok(())
    }
}

/// Key of a path's checkpoint in the alert store's key/value table.
pub fn checkpoint_key(path: &Path) -> String {
    format!("tail/checkpoint/{}", path.display())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LineFormat {
    Sniff,
    Syslog,
    Json,
    Access,
}

impl LineFormat {
    fn from_config(s: Option<&str>) -> Result<LineFormat, String> {
        let Some(s) = s else {
            return Ok(LineFormat::Sniff);
        };
        match Format::parse(s) {
            Some(Format::Syslog) => Ok(LineFormat::Syslog),
            Some(Format::Json) => Ok(LineFormat::Json),
            Some(Format::AccessLog) => Ok(LineFormat::Access),
            _ => Err(format!(
                "tail: unsupported format `{s}` (line formats: syslog, json, access-log; \
                 leave it out to detect per line)"
            )),
        }
    }
}

/// Turns lines into events.
struct LineParser {
    format: LineFormat,
    names: Interner,
    path_field: FieldName,
    path_text: Box<str>,
    origin_path: Arc<Path>,
}

impl LineParser {
    fn new(format: LineFormat, path: &Path) -> LineParser {
        let mut names = Interner::new();
        let path_field = names.intern("log.file.path");
        LineParser {
            format,
            names,
            path_field,
            path_text: path.to_string_lossy().into(),
            origin_path: Arc::from(path),
        }
    }

    /// The event of one line (without its newline), or `None` if the forced format rejects it.
    fn parse(&mut self, line: &[u8], line_no: Option<u64>, offset: u64) -> Option<Event> {
        let origin = Origin::File {
            path: Arc::clone(&self.origin_path),
            record: None,
            line: line_no,
            offset,
        };
        let n = &mut self.names;
        let ev = match self.format {
            LineFormat::Syslog => mamori_ingest::parse_syslog_line(line, origin, n).ok(),
            LineFormat::Json => mamori_ingest::parse_json_object(line, origin, n).ok(),
            LineFormat::Access => mamori_ingest::parse_access_log_line(line, origin, n).ok(),
            LineFormat::Sniff => {
                let first = line.iter().find(|b| !b.is_ascii_whitespace());
                let specific = if first == Some(&b'{') {
                    mamori_ingest::parse_json_object(line, origin.clone(), n)
                } else {
                    mamori_ingest::parse_access_log_line(line, origin.clone(), n)
                };
                // A line that only looked like JSON is still kept, as text.
                specific
                    .or_else(|_| mamori_ingest::parse_syslog_line(line, origin, n))
                    .ok()
            }
        };
        ev.map(|mut ev| {
            ev.push(self.path_field.clone(), Value::str(self.path_text.clone()));
            ev
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt as _;
    FileId {
        dev: m.dev(),
        ino: m.ino(),
    }
}

/// Without inodes, rotation is not detected (truncation still is).
#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> FileId {
    FileId { dev: 0, ino: 0 }
}

/// Where reading stands in one file: everything before `offset` is stored (or skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Pos {
    offset: u64,
    /// Lines before `offset`; unknown after `start_at_end`.
    line: Option<u64>,
    /// Inside an over-long line: discard up to its newline.
    #[serde(default)]
    skipping: bool,
}

impl Pos {
    const START: Pos = Pos {
        offset: 0,
        line: Some(0),
        skipping: false,
    };
}

/// A saved position of one open file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedFile {
    dev: u64,
    ino: u64,
    #[serde(flatten)]
    pos: Pos,
    /// Length and SHA-256 (hex) of the file's first bytes, to tell a recycled inode apart.
    head_len: u64,
    head_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    path: String,
    /// Rotated files still being finished (oldest first), then the file at the path.
    files: Vec<SavedFile>,
}

/// An open file being read.
struct Tracked {
    file: File,
    id: FileId,
    /// Committed position.
    pos: Pos,
    head_len: u64,
    head_sha256: String,
    /// Polls in a row without new lines (rotated files only).
    quiet_polls: u32,
}

/// Lines read past a [`Tracked`]'s position, not yet committed.
struct Chunk {
    events: Vec<Event>,
    end: Pos,
    malformed: u64,
}

impl Tracked {
    fn new(file: File, id: FileId, pos: Pos) -> io::Result<Tracked> {
        let mut t = Tracked {
            file,
            id,
            pos,
            head_len: 0,
            head_sha256: String::new(),
            quiet_polls: 0,
        };
        t.update_head()?;
        Ok(t)
    }

    /// Hashes up to [`HEAD_BYTES`] of the committed part of the file (the part that cannot
    /// change without a truncation).
    fn update_head(&mut self) -> io::Result<()> {
        let want = self.pos.offset.min(HEAD_BYTES);
        if want == self.head_len && !self.head_sha256.is_empty() {
            return Ok(());
        }
        let (len, sha) = head_of(&self.file, want)?;
        self.head_len = len;
        self.head_sha256 = sha;
        Ok(())
    }

    fn saved(&self) -> SavedFile {
        SavedFile {
            dev: self.id.dev,
            ino: self.id.ino,
            pos: self.pos,
            head_len: self.head_len,
            head_sha256: self.head_sha256.clone(),
        }
    }

    /// Reads complete lines after the committed position, up to one batch. With `last`, a
    /// final line without newline at end of file is taken too (the file is finished).
    fn read_batch(&mut self, parser: &mut LineParser, last: bool) -> io::Result<Chunk> {
        let start = self.pos;
        let mut cur = start;
        let mut events = Vec::new();
        let mut malformed = 0u64;
        self.file.seek(SeekFrom::Start(start.offset))?;
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut eof = false;
        // Parses one line into `events`; false when it is malformed.
        let mut handle = |line: &[u8], line_no: Option<u64>, offset: u64, events: &mut Vec<_>| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE_BYTES {
                return false;
            }
            if line.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
                return true;
            }
            match parser.parse(line, line_no, offset) {
                Some(ev) => {
                    events.push(ev);
                    true
                }
                None => false,
            }
        };
        'read: while events.len() < MAX_BATCH_LINES && cur.offset - start.offset < MAX_BATCH_BYTES {
            let n = match self.file.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            while let Some(i) = memchr::memchr(b'\n', &buf[at..]) {
                let offset = cur.offset;
                cur.offset += i as u64 + 1;
                cur.line = cur.line.map(|l| l + 1);
                let line = &buf[at..at + i];
                at += i + 1;
                if cur.skipping {
                    // The end of an over-long line (counted when it started).
                    cur.skipping = false;
                } else if !handle(line, cur.line, offset, &mut events) {
                    malformed += 1;
                }
                if events.len() >= MAX_BATCH_LINES {
                    break 'read;
                }
            }
            buf.drain(..at);
            if buf.len() > MAX_LINE_BYTES {
                if !cur.skipping {
                    malformed += 1;
                    cur.skipping = true;
                }
                cur.offset += buf.len() as u64;
                buf.clear();
            }
        }
        if last && eof && !buf.is_empty() {
            let offset = cur.offset;
            cur.offset += buf.len() as u64;
            cur.line = cur.line.map(|l| l + 1);
            if cur.skipping {
                cur.skipping = false;
            } else if !handle(&buf, cur.line, offset, &mut events) {
                malformed += 1;
            }
        }
        Ok(Chunk {
            events,
            end: cur,
            malformed,
        })
    }
}

/// Length and SHA-256 (hex) of the first `want` bytes (fewer if the file is shorter).
fn head_of(mut file: &File, want: u64) -> io::Result<(u64, String)> {
    file.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(want as usize);
    file.take(want).read_to_end(&mut head)?;
    Ok((head.len() as u64, hex::encode(Sha256::digest(&head))))
}

/// Opens `path` and returns it with the identity of what was opened.
fn open(path: &Path) -> io::Result<(File, FileId, u64)> {
    let f = File::open(path)?;
    let m = f.metadata()?;
    Ok((f, file_id(&m), m.len()))
}

/// Whether an open file is the one a checkpoint describes (same head bytes).
fn head_matches(file: &File, len: u64, saved: &SavedFile) -> bool {
    if len < saved.head_len {
        return false;
    }
    matches!(head_of(file, saved.head_len), Ok((l, sha)) if l == saved.head_len && sha == saved.head_sha256)
}

/// Looks in `path`'s directory for the file with this identity (a rotated file, after a
/// restart).
fn find_by_id(path: &Path, id: FileId) -> Option<(File, PathBuf)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    for e in std::fs::read_dir(dir).ok()?.take(MAX_DIR_SCAN).flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_file() && file_id(&m) == id {
            let p = e.path();
            if let Ok((f, got, _)) = open(&p) {
                if got == id {
                    return Some((f, p));
                }
            }
        }
    }
    None
}

/// Everything about one configured path.
struct PathState {
    path: PathBuf,
    key: String,
    parser: LineParser,
    /// The file at the path.
    cur: Option<Tracked>,
    /// Files renamed away (or deleted) still being finished, oldest first.
    rotated: VecDeque<Tracked>,
    /// Already said that the path is missing / unreadable.
    reported: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Rotated(usize),
    Cur,
}

impl PathState {
    /// Rebuilds the state from the checkpoint (or first sight).
    fn restore(
        path: &Path,
        format: LineFormat,
        start_at_end: bool,
        kv: &dyn AlertStore,
    ) -> PathState {
        let key = checkpoint_key(path);
        let mut st = PathState {
            path: path.to_owned(),
            key,
            parser: LineParser::new(format, path),
            cur: None,
            rotated: VecDeque::new(),
            reported: false,
        };
        let saved = match kv.kv_get(&st.key) {
            Ok(Some(b)) => match serde_json::from_slice::<Checkpoint>(&b) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e,
                        "unreadable tail checkpoint; reading the file from the start");
                    Some(Checkpoint {
                        path: String::new(),
                        files: Vec::new(),
                    })
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e,
                    "cannot read the tail checkpoint; reading the file from the start");
                Some(Checkpoint {
                    path: String::new(),
                    files: Vec::new(),
                })
            }
        };
        let Some(cp) = saved else {
            // First sight.
            if let Ok((f, id, len)) = open(path) {
                let pos = if start_at_end {
                    Pos {
                        offset: len,
                        line: None,
                        skipping: false,
                    }
                } else {
                    Pos::START
                };
                match Tracked::new(f, id, pos) {
                    Ok(t) => st.cur = Some(t),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read file")
                    }
                }
            }
            if start_at_end {
                // Remember the skip, so a restart before the first new line skips nothing more.
                st.save(kv);
            }
            return st;
        };
        let at_path = std::fs::metadata(path).ok().map(|m| file_id(&m));
        for s in &cp.files {
            let id = FileId {
                dev: s.dev,
                ino: s.ino,
            };
            if Some(id) == at_path && st.cur.is_none() {
                let Ok((f, got, len)) = open(path) else {
                    continue;
                };
                if got != id {
                    continue;
                }
                let pos = if len < s.pos.offset || !head_matches(&f, len, s) {
                    tracing::warn!(path = %path.display(), offset = s.pos.offset,
                        "file was truncated or replaced while stopped; reading it from the start");
                    Pos::START
                } else {
                    s.pos
                };
                if let Ok(t) = Tracked::new(f, id, pos) {
                    st.cur = Some(t);
                }
            } else {
                match find_by_id(path, id).filter(|(f, _)| head_matches(f, u64::MAX, s)) {
                    Some((f, found)) => {
                        tracing::info!(path = %path.display(), rotated = %found.display(),
                            offset = s.pos.offset, "finishing a file rotated while stopped");
                        if let Ok(t) = Tracked::new(f, id, s.pos) {
                            st.rotated.push_back(t);
                        }
                    }
                    _ => tracing::warn!(path = %path.display(), offset = s.pos.offset,
                        "a file being read before the restart is gone (rotated away and \
                         deleted?); lines it got after the checkpoint are not read"),
                }
            }
        }
        st
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            path: self.path.to_string_lossy().into_owned(),
            files: self
                .rotated
                .iter()
                .chain(self.cur.as_ref())
                .map(Tracked::saved)
                .collect(),
        }
    }

    fn save(&self, kv: &dyn AlertStore) {
        let cp = self.checkpoint();
        let bytes = match serde_json::to_vec(&cp) {
            Ok(b) => b,
            Err(_) => return,
        };
        if let Err(e) = kv.kv_put(&self.key, &bytes) {
            tracing::error!(path = %self.path.display(), error = %e,
                "cannot save the tail checkpoint (lines may be read twice after a restart)");
        }
    }

    /// Looks at the path: rotation, truncation, a file appearing or disappearing.
    fn observe(&mut self) {
        match std::fs::metadata(&self.path) {
            Err(e) => {
                if let Some(c) = self.cur.take() {
                    tracing::info!(path = %self.path.display(),
                        "file is gone; finishing what was written to it");
                    self.rotated.push_back(c);
                }
                if !self.reported {
                    self.reported = true;
                    if e.kind() == io::ErrorKind::NotFound {
                        tracing::info!(path = %self.path.display(), "waiting for the file to appear");
                    } else {
                        tracing::warn!(path = %self.path.display(), error = %e, "cannot read file");
                    }
                }
            }
            Ok(m) => {
                let id = file_id(&m);
                match &mut self.cur {
                    Some(c) if c.id == id => {
                        if m.len() < c.pos.offset {
                            tracing::warn!(path = %self.path.display(), size = m.len(),
                                offset = c.pos.offset,
                                "file was truncated; reading it again from the start");
                            c.pos = Pos::START;
                            c.head_len = 0;
                            c.head_sha256.clear();
                        }
                    }
                    _ => {
                        let opened =
                            open(&self.path).and_then(|(f, id, _)| Tracked::new(f, id, Pos::START));
                        match opened {
                            Ok(t) => {
                                if let Some(c) = self.cur.take() {
                                    tracing::info!(path = %self.path.display(),
                                        "file was rotated; finishing the old one, reading the new one");
                                    self.rotated.push_back(c);
                                }
                                self.cur = Some(t);
                                self.reported = false;
                            }
                            Err(e) => {
                                if !self.reported {
                                    self.reported = true;
                                    tracing::warn!(path = %self.path.display(), error = %e,
                                        "cannot open file");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn tracked(&mut self, w: Which) -> Option<&mut Tracked> {
        match w {
            Which::Cur => self.cur.as_mut(),
            Which::Rotated(i) => self.rotated.get_mut(i),
        }
    }

    fn read(&mut self, w: Which, last: bool) -> Option<io::Result<Chunk>> {
        let PathState {
            parser,
            cur,
            rotated,
            ..
        } = self;
        let t = match w {
            Which::Cur => cur.as_mut(),
            Which::Rotated(i) => rotated.get_mut(i),
        }?;
        Some(t.read_batch(parser, last))
    }
}

/// The task's shared handles.
struct Ctx {
    kv: Arc<dyn AlertStore>,
    sink: Sink,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
}

/// The task ends (shutdown, or a lost blocking task).
struct End;

/// Runs `f` on the blocking pool with the state moved in and back.
async fn blocking<T: Send + 'static>(
    mut st: PathState,
    f: impl FnOnce(&mut PathState) -> T + Send + 'static,
) -> Result<(PathState, T), End> {
    tokio::task::spawn_blocking(move || {
        let r = f(&mut st);
        (st, r)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "file tail task failed");
        End
    })
}

/// Reads one file of a path batch by batch, storing durably and checkpointing after each
/// batch. Returns the state and whether anything was consumed.
async fn drain(
    mut st: PathState,
    w: Which,
    last: bool,
    ctx: &Ctx,
) -> Result<(PathState, bool), End> {
    let mut any = false;
    loop {
        if *ctx.stop.borrow() {
            return Ok((st, any));
        }
        let (s, r) = blocking(st, move |st| st.read(w, last)).await?;
        st = s;
        let chunk = match r {
            None => return Ok((st, any)),
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                tracing::warn!(path = %st.path.display(), error = %e, "cannot read file");
                return Ok((st, any));
            }
        };
        let Some(t) = st.tracked(w) else {
            return Ok((st, any));
        };
        if chunk.end == t.pos {
            return Ok((st, any));
        }
        let consumed = chunk.end.offset.saturating_sub(t.pos.offset);
        if !chunk.events.is_empty() {
            if let Err(e) = ctx.sink.send_durable(chunk.events, SourceKind::Tail).await {
                if e == Closed.to_string() {
                    return Err(End);
                }
                // Not stored: keep the position and try again at the next poll.
                tracing::error!(path = %st.path.display(), error = %e,
                    "storing tailed lines failed; retrying at the next poll");
                return Ok((st, any));
            }
        }
        any = true;
        let c = ctx.metrics.source(SourceKind::Tail);
        c.bytes_in.fetch_add(consumed, Relaxed);
        c.malformed.fetch_add(chunk.malformed, Relaxed);
        let kv = Arc::clone(&ctx.kv);
        let (s, ()) = blocking(st, move |st| {
            if let Some(t) = st.tracked(w) {
                t.pos = chunk.end;
                if let Err(e) = t.update_head() {
                    tracing::warn!(error = %e, "cannot hash the start of a tailed file");
                }
            }
            st.save(kv.as_ref());
        })
        .await?;
        st = s;
    }
}

/// One poll of one path: rotated files first (closing the finished ones), then the current one.
async fn poll_path(st: PathState, ctx: &Ctx) -> Result<PathState, End> {
    let (mut st, ()) = blocking(st, PathState::observe).await?;
    let mut i = 0;
    while i < st.rotated.len() {
        let (s, any) = drain(st, Which::Rotated(i), false, ctx).await?;
        st = s;
        let t = &mut st.rotated[i];
        t.quiet_polls = if any { 0 } else { t.quiet_polls + 1 };
        if t.quiet_polls >= ROTATED_GRACE_POLLS && !*ctx.stop.borrow() {
            // Finished: take a last line without newline, then forget the file.
            let (s, _) = drain(st, Which::Rotated(i), true, ctx).await?;
            st = s;
            let kv = Arc::clone(&ctx.kv);
            let (s, ()) = blocking(st, move |st| {
                st.rotated.remove(i);
                st.save(kv.as_ref());
            })
            .await?;
            st = s;
        } else {
            i += 1;
        }
    }
    let (st, _) = drain(st, Which::Cur, false, ctx).await?;
    Ok(st)
}

/// Follows the files of one `[[tail]]` section until `stop` changes. Each complete line is
/// stored durably before its checkpoint moves past it (see the module docs).
pub async fn run_tail(
    cfg: TailConfig,
    kv: Arc<dyn AlertStore>,
    sink: Sink,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    if let Err(e) = cfg.validate() {
        tracing::error!(error = %e, "file tail not started");
        return;
    }
    let Ok(format) = LineFormat::from_config(cfg.format.as_deref()) else {
        return;
    };
    let mut ctx = Ctx {
        kv,
        sink,
        metrics,
        stop,
    };
    let mut states: Vec<Option<PathState>> = Vec::with_capacity(cfg.paths.len());
    for p in &cfg.paths {
        let kv = Arc::clone(&ctx.kv);
        let p = p.clone();
        let start_at_end = cfg.start_at_end;
        match tokio::task::spawn_blocking(move || {
            PathState::restore(&p, format, start_at_end, kv.as_ref())
        })
        .await
        {
            Ok(st) => states.push(Some(st)),
            Err(e) => {
                tracing::error!(error = %e, "file tail task failed");
                return;
            }
        }
    }
    let poll = Duration::from_millis(cfg.poll_ms.max(1));
    loop {
        for slot in states.iter_mut() {
            if *ctx.stop.borrow() {
                return;
            }
            let Some(st) = slot.take() else { continue };
            match poll_path(st, &ctx).await {
                Ok(st) => *slot = Some(st),
                Err(End) => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = ctx.stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, Settings};
    use mamori_event::Level;
    use mamori_store::{EventStore, MemoryAlertStore, MemoryEventStore, RawRecord};
    use std::io::Write as _;
    use std::time::Instant;
    use tokio::sync::broadcast;

    const POLL_MS: u64 = 20;

    struct Harness {
        store: Arc<MemoryEventStore>,
        kv: Arc<MemoryAlertStore>,
        metrics: Arc<Metrics>,
        pipeline: Option<Pipeline>,
        dir: tempfile::TempDir,
    }

    struct Tail {
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Harness {
        fn new() -> Harness {
            let store = Arc::new(MemoryEventStore::new());
            let kv = Arc::new(MemoryAlertStore::new());
            let metrics = Arc::new(Metrics::default());
            let (alert_tx, _) = broadcast::channel(16);
            let pipeline = Pipeline::start(
                Arc::clone(&store) as Arc<dyn EventStore>,
                Arc::clone(&kv) as Arc<dyn AlertStore>,
                None,
                Settings {
                    min_level: Level::Informational,
                    suppress_secs: 60,
                    lateness_secs: 60,
                    max_correlation_groups: 50_000,
                    queue_batches: 64,
                    max_group_events: 4096,
                    backup_links: Default::default(),
                },
                Arc::clone(&metrics),
                alert_tx,
            );
            Harness {
                store,
                kv,
                metrics,
                pipeline: Some(pipeline),
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn cfg(&self, name: &str) -> TailConfig {
            TailConfig {
                paths: vec![self.path(name)],
                poll_ms: POLL_MS,
                ..TailConfig::default()
            }
        }

        fn tail(&self, cfg: TailConfig) -> Tail {
            let (stop, rx) = watch::channel(false);
            let task = tokio::spawn(run_tail(
                cfg,
                Arc::clone(&self.kv) as Arc<dyn AlertStore>,
                self.pipeline.as_ref().unwrap().sink.clone(),
                Arc::clone(&self.metrics),
                rx,
            ));
            Tail { stop, task }
        }

        fn records(&self) -> Vec<RawRecord> {
            self.store.raw_since(0, 1_000_000).unwrap()
        }

        fn texts(&self) -> Vec<String> {
            self.records()
                .iter()
                .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
                .collect()
        }

        async fn wait_events(&self, n: u64) -> Vec<String> {
            let t = Instant::now();
            while self.store.stats().unwrap().events < n {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "timed out waiting for {n} events; have {:?}",
                    self.texts()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // A few more polls: nothing extra (duplicates) may arrive.
            tokio::time::sleep(Duration::from_millis(POLL_MS * 5)).await;
            let texts = self.texts();
            assert_eq!(
                texts.len() as u64,
                n,
                "more events than expected: {texts:?}"
            );
            texts
        }

        fn malformed(&self) -> u64 {
            self.metrics
                .source(SourceKind::Tail)
                .malformed
                .load(Relaxed)
        }
    }

    impl Tail {
        async fn stop(self) {
            let _ = self.stop.send(true);
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("run_tail stops")
                .unwrap();
        }
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn numbered(range: std::ops::Range<u32>) -> String {
        range
            .map(|i| format!("<13>May  1 10:00:00 host app: line {i}\n"))
            .collect()
    }

    fn expect_numbered(texts: &[String], range: std::ops::Range<u32>) {
        let mut got: Vec<u32> = texts
            .iter()
            .map(|t| {
                t.rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected line {t:?}"))
            })
            .collect();
        got.sort_unstable();
        let want: Vec<u32> = range.collect();
        assert_eq!(got, want, "lost or duplicated lines");
    }

    #[tokio::test]
    async fn appended_lines_are_stored_with_their_format_and_origin() {
        let h = Harness::new();
        let p = h.path("app.log");
        append(
            &p,
            "<34>May  1 10:00:00 web1 sshd[42]: Failed password for root from 10.0.0.9 port 22 ssh2\n\
             {\"event\":{\"action\":\"login\"},\"user\":{\"name\":\"alice\"}}\r\n\
             \n\
             10.0.0.7 - - [01/May/2024:10:00:02 +0000] \"GET /admin HTTP/1.1\" 404 12 \"-\" \"curl/8\"\n",
        );
        let tail = h.tail(h.cfg("app.log"));
        h.wait_events(3).await;
        let recs = h.records();
        let formats: Vec<Format> = recs
            .iter()
            .map(|r| h.store.get(r.seq).unwrap().unwrap().event.format)
            .collect();
        assert_eq!(formats, [Format::Syslog, Format::Json, Format::AccessLog]);
        let p_disp = p.display().to_string();
        let sources: Vec<&str> = recs.iter().map(|r| r.source.as_str()).collect();
        assert_eq!(
            sources,
            [
                format!("{p_disp}:1"),
                format!("{p_disp}:2"),
                format!("{p_disp}:4")
            ]
        );
        let ev = h.store.get(recs[0].seq).unwrap().unwrap().event;
        assert_eq!(ev.host().as_deref(), Some("web1"));
        assert_eq!(
            ev.get("log.file.path").map(|v| v.to_text().into_owned()),
            Some(p_disp.clone())
        );
        match &ev.origin {
            Origin::File { offset, line, .. } => {
                assert_eq!((*offset, *line), (0, Some(1)));
            }
            o => panic!("origin {o:?}"),
        }
        // CR stripped from the JSON line's raw bytes.
        assert!(!recs[1].raw.ends_with(b"\r"));

        append(&p, &numbered(0..2));
        h.wait_events(5).await;
        assert_eq!(
            h.metrics.source(SourceKind::Tail).events_in.load(Relaxed),
            5
        );
        assert_eq!(h.malformed(), 0);
        tail.stop().await;
    }

    #[tokio::test]
    async fn partial_line_waits_for_its_newline() {
        let h = Harness::new();
        let p = h.path("app.log");
        append(
            &p,
            "<13>May  1 10:00:00 host app: whole\n<13>May  1 10:00:01 host app: hal",
        );
        let tail = h.tail(h.cfg("app.log"));
        h.wait_events(1).await;
        tokio::time::sleep(Duration::from_millis(POLL_MS * 5)).await;
        assert_eq!(h.texts().len(), 1);
        append(&p, "f done\n");
        let texts = h.wait_events(2).await;
        assert_eq!(texts[1], "<13>May  1 10:00:01 host app: half done");
        tail.stop().await;
    }

    #[tokio::test]
    async fn rename_rotation_loses_and_duplicates_nothing() {
        let h = Harness::new();
        let p = h.path("app.log");
        append(&p, &numbered(0..100));
        let tail = h.tail(h.cfg("app.log"));
        h.wait_events(100).await;
        let mut want: Vec<u32> = (0..100).collect();
        for round in 0..3u32 {
            let base = 1000 * (round + 1);
            // Lines written right before the rename, and by a writer that has not reopened
            // yet (through its old handle) right after it.
            let mut old = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            old.write_all(numbered(base..base + 50).as_bytes()).unwrap();
            std::fs::rename(&p, h.path(&format!("app.log.{round}"))).unwrap();
            old.write_all(numbered(base + 50..base + 60).as_bytes())
                .unwrap();
            // The old file's last line has no newline: taken when the file is finished.
            old.write_all(format!("<13>May  1 10:00:00 host app: line {}", base + 60).as_bytes())
                .unwrap();
            drop(old);
            append(&p, &numbered(base + 100..base + 150));
            want.extend(base..base + 61);
            want.extend(base + 100..base + 150);
            // The next rotation comes after the tail saw this new file (a file created and
            // rotated away within one poll is never seen by a poller).
            let texts = h.wait_events(want.len() as u64).await;
            let mut got: Vec<u32> = texts
                .iter()
                .map(|t| t.rsplit(' ').next().unwrap().parse().unwrap())
                .collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want);
        }
        // The new file's lines are numbered from 1 again.
        let rec = h
            .records()
            .into_iter()
            .find(|r| r.raw.ends_with(b"line 3149"))
            .unwrap();
        assert!(rec.source.ends_with("app.log:50"), "{}", rec.source);
        tail.stop().await;
        // Finished rotated files are dropped from the checkpoint.
        let cp: Checkpoint =
            serde_json::from_slice(&h.kv.kv_get(&checkpoint_key(&p)).unwrap().unwrap()).unwrap();
        assert_eq!(cp.files.len(), 1);
    }

    #[tokio::test]
    async fn truncation_restarts_at_zero() {
        let h = Harness::new();
        let p = h.path("app.log");
        append(&p, &numbered(0..20));
        let tail = h.tail(h.cfg("app.log"));
        h.wait_events(20).await;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&p, &numbered(100..102));
        let texts = h.wait_events(22).await;
        expect_numbered(&texts[20..], 100..102);
        let recs = h.records();
        assert!(
            recs[20].source.ends_with("app.log:1"),
            "{}",
            recs[20].source
        );
        tail.stop().await;
    }

    #[tokio::test]
    async fn restart_resumes_without_gaps_or_duplicates() {
        let h = Harness::new();
        let p = h.path("app.log");
        append(&p, &numbered(0..10));
        let tail = h.tail(h.cfg("app.log"));
        h.wait_events(10).await;
        tail.stop().await;
        // Written while stopped, including a partial line.
        append(&p, &numbered(10..20));
        append(&p, "<13>May  1 10:00:00 host app: line 2");
        let tail = h.tail(h.cfg("app.log"));
        h.wait_events(20).await;
        append(&p, "0\n");
        let texts = h.wait_events(21).await;
        expect_numbered(&texts, 0..21);
        assert!(h.records()[20].source.ends_with("app.log:21"));
        tail.stop().await;

        // Rotated while stopped: the renamed file is found by inode and finished.
        append(&p, &numbered(21..30));
        std::fs::rename(&p, h.path("app.log.1")).unwrap();
        append(&p, &numbered(30..40));
        let tail = h.tail(h.cfg("app.log"));
        let texts = h.wait_events(40).await;
        expect_numbered(&texts, 0..40);
        tail.stop().await;

        // A checkpointed file that disappeared: the new file is read from the start.
        append(&p, &numbered(40..45));
        let tail = h.tail(h.cfg("app.log"));
        h.wait_events(45).await;
        tail.stop().await;
        std::fs::remove_file(h.path("app.log.1")).unwrap();
        std::fs::rename(&p, h.path("app.log.1")).unwrap();
        std::fs::remove_file(h.path("app.log.1")).unwrap();
        append(&p, &numbered(45..50));
        let tail = h.tail(h.cfg("app.log"));
        let texts = h.wait_events(50).await;
        expect_numbered(&texts, 0..50);
        tail.stop().await;
    }

    #[tokio::test]
    async fn missing_file_is_waited_for() {
        let h = Harness::new();
        let p = h.path("later.log");
        let tail = h.tail(h.cfg("later.log"));
        tokio::time::sleep(Duration::from_millis(POLL_MS * 3)).await;
        append(&p, &numbered(0..3));
        let texts = h.wait_events(3).await;
        expect_numbered(&texts, 0..3);
        // Deleted and recreated.
        std::fs::remove_file(&p).unwrap();
        tokio::time::sleep(Duration::from_millis(POLL_MS * 3)).await;
        append(&p, &numbered(3..5));
        let texts = h.wait_events(5).await;
        expect_numbered(&texts, 0..5);
        tail.stop().await;
    }

    #[tokio::test]
    async fn start_at_end_skips_existing_content_once() {
        let h = Harness::new();
        let p = h.path("app.log");
        append(&p, &numbered(0..10));
        let mut cfg = h.cfg("app.log");
        cfg.start_at_end = true;
        let tail = h.tail(cfg.clone());
        tokio::time::sleep(Duration::from_millis(POLL_MS * 5)).await;
        assert!(h.texts().is_empty());
        append(&p, &numbered(10..12));
        let texts = h.wait_events(2).await;
        expect_numbered(&texts, 10..12);
        // Line numbers are unknown after the skip: the origin is path@offset.
        assert!(h.records()[0].source.contains("app.log@"));
        tail.stop().await;
        // With a checkpoint, start_at_end no longer skips.
        append(&p, &numbered(12..14));
        let tail = h.tail(cfg);
        let texts = h.wait_events(4).await;
        expect_numbered(&texts, 10..14);
        tail.stop().await;
    }

    #[tokio::test]
    async fn over_long_lines_are_skipped_and_counted() {
        let h = Harness::new();
        let p = h.path("app.log");
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        // One long line that arrives whole, one that arrives over several polls.
        append(&p, &format!("{}{long}\n", numbered(0..1)));
        let tail = h.tail(h.cfg("app.log"));
        h.wait_events(1).await;
        append(&p, &long[..MAX_LINE_BYTES / 2]);
        tokio::time::sleep(Duration::from_millis(POLL_MS * 3)).await;
        append(&p, &long[MAX_LINE_BYTES / 2..]);
        tokio::time::sleep(Duration::from_millis(POLL_MS * 3)).await;
        append(&p, &format!("tail of it\n{}", numbered(1..2)));
        let texts = h.wait_events(2).await;
        expect_numbered(&texts, 0..2);
        assert_eq!(h.malformed(), 2);
        assert!(h.records()[1].source.ends_with("app.log:4"));
        tail.stop().await;
    }

    #[tokio::test]
    async fn forced_format_rejects_other_lines() {
        let h = Harness::new();
        let p = h.path("app.json");
        append(&p, "{\"a\":1}\nnot json\n{\"b\":2}\n");
        let mut cfg = h.cfg("app.json");
        cfg.format = Some("json".into());
        let tail = h.tail(cfg);
        h.wait_events(2).await;
        assert_eq!(h.malformed(), 1);
        tail.stop().await;
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: TailConfig = toml::from_str(r#"paths = ["/var/log/auth.log"]"#).unwrap();
        assert_eq!(
            c,
            TailConfig {
                paths: vec![PathBuf::from("/var/log/auth.log")],
                format: None,
                poll_ms: 500,
                start_at_end: false,
            }
        );
        assert!(c.validate().is_ok());
        assert!(toml::from_str::<TailConfig>("paths = []\npoll = 5").is_err());
        let mut bad = c.clone();
        bad.format = Some("evtx".into());
        assert!(bad.validate().unwrap_err().contains("evtx"));
        bad.format = Some("access-log".into());
        assert!(bad.validate().is_ok());
        bad.poll_ms = 0;
        assert!(bad.validate().is_err());
        assert_eq!(
            checkpoint_key(Path::new("/var/log/auth.log")),
            "tail/checkpoint//var/log/auth.log"
        );
    }
}
