//! The writer: `VaultConfig` → `Vault`. Appends records to segments, fsyncs per policy, signs
//! tree heads at checkpoints, and on open recovers from a crash without dropping anything
//! silently.
//!
//! **Invariant: a signed head never covers bytes that are not on disk.** The segment is always
//! fsynced before a head is written, whatever the [`FsyncPolicy`], so a power loss can lose
//! unsigned records (per policy) but can never make a signed head point past the data.

#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{AuditAction, AuditEntry};
use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, chain_hash, encode_frame, EntryRef, RecordKind, SegmentHeader, GENESIS_CHAIN,
    MAX_PAYLOAD_LEN, MAX_SOURCE_LEN,
};
use crate::head::{self, SignedTreeHead};
use crate::merkle::{Frontier, Hash};
use crate::scan::{Item, SegmentReader};
use crate::verify::parse_segment_name;

pub(crate) const SEGMENTS_DIR: &str = "segments";
pub(crate) const HEADS_FILE: &str = "heads.log";
pub(crate) const QUARANTINE_DIR: &str = "quarantine";
/// The `source` of audit records.
pub const AUDIT_SOURCE: &str = "mamori:audit";

pub(crate) fn segment_file_name(index: u32) -> String {
    format!("{index:08}.seg")
}

/// When an appended record counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync before every acknowledgement: each `append` and each `append_batch` call (one
    /// fsync for the whole batch). Nothing acknowledged is lost, even on power failure.
    #[default]
    Always,
    /// fsync at each checkpoint (and segment rollover, close). A process crash loses nothing
    /// acknowledged; a power failure can lose the records since the last signed head.
    Batch,
    /// Like `Batch`; named separately so benchmarks and tests say what they mean. Records are
    /// still synced before a head covers them.
    Never,
}

/// Vault settings. Times are seconds; the checkpoint clock is the `now` callers pass in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// The vault directory (`<data-dir>/vault`).
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// Sign a tree head after this many records…
    pub checkpoint_every_records: u64,
    /// …or when this many seconds have passed since the last head and records are waiting.
    pub checkpoint_every_secs: u64,
    /// Start a new segment past this size. Segments are the unit of parallel verification.
    pub segment_max_bytes: u64,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            dir: PathBuf::from("vault"),
            fsync: FsyncPolicy::Always,
            checkpoint_every_records: 10_000,
            checkpoint_every_secs: 60,
            segment_max_bytes: 64 << 20,
        }
    }
}

impl VaultConfig {
    pub fn new(dir: impl Into<PathBuf>) -> VaultConfig {
        VaultConfig {
            dir: dir.into(),
            ..VaultConfig::default()
        }
    }

    /// Open (creating if needed) the vault for appending, recovering from a crash if the last
    /// write was interrupted. `now` timestamps recovery audit entries.
    pub fn open(self, key: SigningKey, now: DateTime<Utc>) -> Result<Vault> {
        Vault::open(self, key, now)
    }
}

/// The lock file that makes a vault single-writer.
pub const LOCK_FILE: &str = "LOCK";

/// The source of an event record sealed from the event store: the origin, then `#seq=N` with
/// the store's seq, so an export can select an incident's events and a sealer can resume.
/// The host filter ([`crate::host_of`]) ignores the `#…` part.
pub fn event_source(origin: &str, store_seq: u64) -> String {
    format!("{origin}#seq={store_seq}")
}

/// The store seq of a source written by [`event_source`].
pub fn store_seq_of(source: &str) -> Option<u64> {
    source.rsplit_once("#seq=")?.1.parse().ok()
}

/// One record to seal: raw bytes as received, when, and from where.
#[derive(Debug, Clone, Copy)]
pub struct RecordInput<'a> {
    /// Where the bytes came from (`udp://10.0.0.5:514`, `file:/var/log/auth.log`); the export
    /// host filter matches the host part of this.
    pub source: &'a str,
    pub received_at: DateTime<Utc>,
    pub payload: &'a [u8],
}

/// Proof of acknowledgement: where a record now lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub seq: u64,
    pub segment: u32,
    pub offset: u64,
}

/// Something `open` repaired, and the audit record that says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// File repaired, relative to the vault directory.
    pub file: String,
    pub offset: u64,
    pub len: u64,
    pub sha256: String,
    /// Where the removed bytes are kept, relative to the vault directory.
    pub quarantined_as: String,
    pub audit_seq: u64,
}

/// Summary for `mamori vault status`.
#[derive(Debug, Clone, Serialize)]
pub struct VaultStatus {
    pub tree_size: u64,
    pub segments: u32,
    pub last_head: Option<serde_json::Value>,
    pub unsigned_records: u64,
}

/// Where the next record goes, and the state needed to chain it.
#[derive(Debug, Clone)]
struct Tip {
    next_seq: u64,
    last_chain: Hash,
    frontier: Frontier,
    segment: u32,
    seg_len: u64,
    seg_records: u64,
}

/// An open vault, the only writer of its directory (enforced by an exclusive lock on
/// `<vault>/LOCK`, held while the vault is open and released by the OS if the process dies).
#[derive(Debug)]
pub struct Vault {
    _lock: File,
    cfg: VaultConfig,
    key: SigningKey,
    seg_file: File,
    heads_file: File,
    tip: Tip,
    /// State as of the last successful write; a failed write rolls back to it.
    committed: Tip,
    last_head: Option<SignedTreeHead>,
    since_head: u64,
    /// Clock start for the time-based checkpoint before the first head of this session.
    opened_at: DateTime<Utc>,
    /// Written but not yet fsynced.
    dirty: bool,
    poisoned: bool,
    recoveries: Vec<Recovery>,
    buf: Vec<u8>,
}

impl Vault {
    fn open(cfg: VaultConfig, key: SigningKey, now: DateTime<Utc>) -> Result<Vault> {
        let seg_dir = cfg.dir.join(SEGMENTS_DIR);
        fs::create_dir_all(&seg_dir).at(&seg_dir)?;
        let lock_path = cfg.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        // flock(2) through fs4 (std's `File::try_lock` needs Rust 1.89; MSRV is 1.85).
        if !fs4::fs_std::FileExt::try_lock_exclusive(&lock).at(&lock_path)? {
            return Err(Error::InUse {
                path: cfg.dir.clone(),
            });
        }
        let mut pending = Vec::new();

        let heads_path = cfg.dir.join(HEADS_FILE);
        let last_head = open_heads(&cfg.dir, &key, now, &mut pending)?;
        let mut heads_file = OpenOptions::new()
            .append(true)
            .open(&heads_path)
            .at(&heads_path)?;
        heads_file.seek(SeekFrom::End(0)).at(&heads_path)?;

        let (tip, seg_file) = open_segments(&cfg.dir, now, &mut pending)?;
        if let Some(h) = &last_head {
            if h.tree_size > tip.next_seq {
                return Err(Error::Corrupt {
                    path: seg_dir,
                    offset: tip.seg_len,
                    reason: format!(
                        "the last signed head covers {} records but only {} are present; run `mamori vault verify`",
                        h.tree_size, tip.next_seq
                    ),
                });
            }
            if h.tree_size == tip.next_seq && h.root_hash != tip.frontier.root() {
                return Err(Error::Corrupt {
                    path: seg_dir,
                    offset: tip.seg_len,
                    reason:
                        "the records do not match the last signed head; run `mamori vault verify`"
                            .into(),
                });
            }
        }
        let since_head = tip.next_seq - last_head.as_ref().map_or(0, |h| h.tree_size);
        let mut v = Vault {
            _lock: lock,
            committed: tip.clone(),
            cfg,
            key,
            seg_file,
            heads_file,
            tip,
            last_head,
            since_head,
            opened_at: now,
            dirty: false,
            poisoned: false,
            recoveries: Vec::new(),
            buf: Vec::with_capacity(1 << 16),
        };
        // Quarantine files left by this open or by an earlier open that crashed before
        // auditing them: audit now, then mark done. Worst case an entry is recorded twice.
        pending.extend(list_pending(&v.cfg.dir)?);
        pending.sort();
        pending.dedup();
        for p in pending {
            v.audit_recovery(&p, now)?;
        }
        if !v.recoveries.is_empty() {
            v.checkpoint(now)?;
        }
        Ok(v)
    }

    pub fn config(&self) -> &VaultConfig {
        &self.cfg
    }

    /// The highest event-store seq named by an event record (see [`event_source`]), searching
    /// segments from the newest back: where a sealer that follows the event store resumes, so
    /// a crash between sealing and remembering seals nothing twice.
    pub fn last_store_seq(&self) -> Result<Option<u64>> {
        let seg_dir = self.cfg.dir.join(SEGMENTS_DIR);
        let indexes = segment_indexes(&seg_dir)?;
        for index in indexes.into_iter().rev() {
            let path = seg_dir.join(segment_file_name(index));
            let (_, mut reader) =
                SegmentReader::open(File::open(&path).at(&path)?, None).at(&path)?;
            let mut last = None;
            while let Some(item) = reader.next_item().at(&path)? {
                if let Item::Record { frame, .. } = item {
                    if frame.kind() == Some(RecordKind::Event) {
                        if let Some(seq) = store_seq_of(&String::from_utf8_lossy(frame.source)) {
                            last = Some(last.map_or(seq, |l: u64| l.max(seq)));
                        }
                    }
                }
            }
            if last.is_some() {
                return Ok(last);
            }
        }
        Ok(None)
    }

    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Repairs made by `open`, each with the seq of the audit record that documents it.
    pub fn recoveries(&self) -> &[Recovery] {
        &self.recoveries
    }

    /// Number of records sealed (the next seq).
    pub fn tree_size(&self) -> u64 {
        self.tip.next_seq
    }

    pub fn last_head(&self) -> Option<&SignedTreeHead> {
        self.last_head.as_ref()
    }

    pub fn status(&self) -> VaultStatus {
        VaultStatus {
            tree_size: self.tip.next_seq,
            segments: self.tip.segment + 1,
            last_head: self.last_head.as_ref().map(|h| h.to_json()),
            unsigned_records: self.since_head,
        }
    }

    /// Seal one event record; returns once it is written (and fsynced under
    /// [`FsyncPolicy::Always`]). May sign a tree head if a checkpoint is due.
    pub fn append(&mut self, rec: &RecordInput<'_>, now: DateTime<Utc>) -> Result<Receipt> {
        let r = self.append_batch(std::slice::from_ref(rec), now)?;
        Ok(r[0])
    }

    /// Seal several records with one write and (under `Always`) one fsync. On error nothing of
    /// the batch is acknowledged; records already flushed before a segment rollover inside the
    /// batch may remain in the vault (at-least-once, never lost-after-ack).
    pub fn append_batch(
        &mut self,
        recs: &[RecordInput<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Receipt>> {
        let entries = recs
            .iter()
            .map(|r| {
                Ok((
                    RecordKind::Event,
                    nanos(r.received_at)?,
                    check_len("source", r.source.len(), MAX_SOURCE_LEN, r.source)?,
                    check_len("payload", r.payload.len(), MAX_PAYLOAD_LEN, r.payload)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let receipts = self.write_entries(&entries)?;
        if self.cfg.fsync == FsyncPolicy::Always {
            self.sync_segment()?;
        }
        self.since_head += receipts.len() as u64;
        self.maybe_checkpoint(now)?;
        Ok(receipts)
    }

    /// Record a custody event in the chain. Always fsynced: custody records are rare and are
    /// exactly what must survive.
    pub fn append_audit(&mut self, entry: &AuditEntry, now: DateTime<Utc>) -> Result<Receipt> {
        let payload = entry.to_payload();
        let e = (
            RecordKind::Audit,
            nanos(entry.at)?,
            AUDIT_SOURCE,
            check_len("audit entry", payload.len(), MAX_PAYLOAD_LEN, &payload[..])?,
        );
        let r = self.write_entries(&[e])?;
        self.sync_segment()?;
        self.since_head += 1;
        self.maybe_checkpoint(now)?;
        Ok(r[0])
    }

    /// Sign a head if `checkpoint_every_records` records or `checkpoint_every_secs` seconds
    /// have accumulated. Call it from a timer so quiet periods still get signed.
    pub fn maybe_checkpoint(&mut self, now: DateTime<Utc>) -> Result<Option<SignedTreeHead>> {
        if self.since_head == 0 {
            return Ok(None);
        }
        let last = self
            .last_head
            .as_ref()
            .map_or(self.opened_at, |h| h.timestamp);
        let elapsed = (now - last).num_seconds();
        if self.since_head >= self.cfg.checkpoint_every_records
            || elapsed >= self.cfg.checkpoint_every_secs as i64
        {
            return self.checkpoint(now).map(Some);
        }
        Ok(None)
    }

    /// Sign and store a tree head covering every record sealed so far.
    pub fn checkpoint(&mut self, now: DateTime<Utc>) -> Result<SignedTreeHead> {
        self.ensure_ok()?;
        // The invariant: never sign what is not durable.
        self.sync_segment()?;
        // Heads must not go backwards in time even if the wall clock does.
        let ts = match &self.last_head {
            Some(h) if h.timestamp > now => h.timestamp,
            _ => now,
        };
        let head = SignedTreeHead::sign(
            &self.key,
            self.tip.next_seq,
            self.tip.frontier.root(),
            if self.tip.next_seq == 0 {
                GENESIS_CHAIN
            } else {
                self.tip.last_chain
            },
            ts,
        );
        let mut b = Vec::new();
        format::encode_head_frame(&head.message(), &head.signature, &mut b);
        let path = self.cfg.dir.join(HEADS_FILE);
        if let Err(e) = self
            .heads_file
            .write_all(&b)
            .and_then(|_| self.heads_file.sync_data())
        {
            // A torn head frame is recovered (quarantined and audited) on the next open.
            self.poisoned = true;
            return Err(e).at(&path);
        }
        self.last_head = Some(head.clone());
        self.since_head = 0;
        Ok(head)
    }

    /// Sign a final head if records are waiting and flush everything.
    pub fn close(mut self, now: DateTime<Utc>) -> Result<()> {
        if self.since_head > 0 {
            self.checkpoint(now)?;
        }
        self.sync_segment()
    }

    fn ensure_ok(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    fn seg_path(&self, index: u32) -> PathBuf {
        self.cfg
            .dir
            .join(SEGMENTS_DIR)
            .join(segment_file_name(index))
    }

    fn sync_segment(&mut self) -> Result<()> {
        if self.dirty {
            let p = self.seg_path(self.tip.segment);
            self.seg_file.sync_data().at(&p)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Frame, chain and write entries; rolls over to a new segment when full.
    fn write_entries(
        &mut self,
        entries: &[(RecordKind, i64, &str, &[u8])],
    ) -> Result<Vec<Receipt>> {
        self.ensure_ok()?;
        self.buf.clear();
        let mut receipts = Vec::with_capacity(entries.len());
        for &(kind, received_at_ns, source, payload) in entries {
            let entry = EntryRef {
                seq: self.tip.next_seq,
                kind,
                received_at_ns,
                source,
                payload,
            };
            let len = (format::FRAME_OVERHEAD + entry.encoded_len()) as u64;
            if self.tip.seg_records > 0 && self.tip.seg_len + len > self.cfg.segment_max_bytes {
                self.flush_buf()?;
                self.rollover()?;
            }
            receipts.push(Receipt {
                seq: entry.seq,
                segment: self.tip.segment,
                offset: self.tip.seg_len,
            });
            let (leaf, chain) = encode_frame(&entry, &self.tip.last_chain, &mut self.buf);
            self.tip.frontier.push(leaf);
            self.tip.last_chain = chain;
            self.tip.next_seq += 1;
            self.tip.seg_len += len;
            self.tip.seg_records += 1;
        }
        self.flush_buf()?;
        Ok(receipts)
    }

    /// Write the buffered frames. On failure, cut the file back to the last committed length
    /// so the next append does not land after garbage; if even that fails, stop writing.
    fn flush_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.seg_path(self.tip.segment);
        if let Err(e) = self.seg_file.write_all(&self.buf) {
            let rolled_back = self.tip.segment == self.committed.segment
                && self.seg_file.set_len(self.committed.seg_len).is_ok();
            self.tip = self.committed.clone();
            self.poisoned = !rolled_back;
            self.buf.clear();
            return Err(e).at(&path);
        }
        self.buf.clear();
        self.dirty = true;
        self.committed = self.tip.clone();
        Ok(())
    }

    fn rollover(&mut self) -> Result<()> {
        self.sync_segment()?;
        let index = self.tip.segment + 1;
        let (file, len) = create_segment(
            &self.cfg.dir,
            index,
            self.tip.next_seq,
            self.tip.last_chain,
            &self.tip.frontier,
        )?;
        self.seg_file = file;
        self.tip.segment = index;
        self.tip.seg_len = len;
        self.tip.seg_records = 0;
        self.committed = self.tip.clone();
        Ok(())
    }

    fn audit_recovery(&mut self, pending: &Path, now: DateTime<Utc>) -> Result<()> {
        let name = pending
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some((file, offset)) = parse_pending_name(&name) else {
            return Ok(());
        };
        let bytes = fs::read(pending).at(pending)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        let done = pending.with_extension("bin");
        let kept = format!(
            "{QUARANTINE_DIR}/{}",
            done.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        );
        let detail = format!(
            "recovered torn tail at {file} offset {offset}, {} bytes (sha256 {sha}); bytes kept as {kept}",
            bytes.len()
        );
        let r = self.append_audit(
            &AuditEntry::new(
                now,
                "mamori",
                AuditAction::VaultRecovery,
                file.clone(),
                detail,
            ),
            now,
        )?;
        fs::rename(pending, &done).at(pending)?;
        sync_dir(&self.cfg.dir.join(QUARANTINE_DIR))?;
        self.recoveries.push(Recovery {
            file,
            offset,
            len: bytes.len() as u64,
            sha256: sha,
            quarantined_as: kept,
            audit_seq: r.seq,
        });
        Ok(())
    }
}

fn nanos(t: DateTime<Utc>) -> Result<i64> {
    t.timestamp_nanos_opt().ok_or_else(|| {
        Error::InvalidRequest(format!("time {t} is outside the representable range"))
    })
}

fn check_len<'a, T: ?Sized>(what: &'static str, len: usize, max: usize, v: &'a T) -> Result<&'a T> {
    if len > max {
        return Err(Error::RecordTooLarge { what, len, max });
    }
    Ok(v)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn create_segment(
    dir: &Path,
    index: u32,
    first_seq: u64,
    prev_chain: Hash,
    frontier: &Frontier,
) -> Result<(File, u64)> {
    let header = SegmentHeader {
        version: format::FORMAT_VERSION,
        segment: index,
        first_seq,
        prev_chain,
        frontier: frontier.clone(),
    }
    .encode();
    let seg_dir = dir.join(SEGMENTS_DIR);
    let path = seg_dir.join(segment_file_name(index));
    let mut f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .at(&path)?;
    f.write_all(&header).and_then(|_| f.sync_all()).at(&path)?;
    sync_dir(&seg_dir)?;
    Ok((f, header.len() as u64))
}

/// Copy `[offset, end)` of `path` into the quarantine, durably, then cut the file there.
/// The quarantine file is the record that the bytes existed; the audit entry follows once the
/// vault is writable.
fn quarantine_tail(
    dir: &Path,
    rel: &str,
    path: &Path,
    offset: u64,
    now: DateTime<Utc>,
    pending: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .at(path)?;
    f.seek(SeekFrom::Start(offset)).at(path)?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).at(path)?;
    let qdir = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&qdir).at(&qdir)?;
    let stem = format!(
        "{}@{offset}.{}",
        rel.replace('/', "~"),
        now.timestamp_nanos_opt().unwrap_or_default()
    );
    let mut n = 0;
    let qpath = loop {
        let p = qdir.join(format!("{stem}.{n}.pending"));
        if fs::symlink_metadata(&p).is_err()
            && fs::symlink_metadata(p.with_extension("bin")).is_err()
        {
            break p;
        }
        n += 1;
    };
    let mut q = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&qpath)
        .at(&qpath)?;
    q.write_all(&tail).and_then(|_| q.sync_all()).at(&qpath)?;
    sync_dir(&qdir)?;
    f.set_len(offset).and_then(|_| f.sync_all()).at(path)?;
    pending.push(qpath);
    Ok(())
}

/// `segments~00000003.seg@4096.<ns>.<n>.pending` → (`segments/00000003.seg`, 4096).
fn parse_pending_name(name: &str) -> Option<(String, u64)> {
    let (file, rest) = name.split_once('@')?;
    let offset = rest.split('.').next()?.parse().ok()?;
    Some((file.replace('~', "/"), offset))
}

fn list_pending(dir: &Path) -> Result<Vec<PathBuf>> {
    let qdir = dir.join(QUARANTINE_DIR);
    let Ok(rd) = fs::read_dir(&qdir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e.at(&qdir)?.path();
        if p.extension().is_some_and(|x| x == "pending") {
            out.push(p);
        }
    }
    Ok(out)
}

/// Open or create the heads file; quarantine a torn last frame; return the last head, checked
/// against our key so we never continue a vault signed by someone else.
fn open_heads(
    dir: &Path,
    key: &SigningKey,
    now: DateTime<Utc>,
    pending: &mut Vec<PathBuf>,
) -> Result<Option<SignedTreeHead>> {
    let path = dir.join(HEADS_FILE);
    if fs::symlink_metadata(&path).is_err() {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .at(&path)?;
        f.write_all(&format::encode_heads_header())
            .and_then(|_| f.sync_all())
            .at(&path)?;
        sync_dir(dir)?;
        return Ok(None);
    }
    let bytes = fs::read(&path).at(&path)?;
    let parsed = head::parse_heads_file(&bytes).map_err(|e| match e {
        format::DecodeError::UnsupportedVersion(v) => Error::UnsupportedVersion {
            path: path.clone(),
            found: v,
            supported: format::FORMAT_VERSION,
        },
        e => Error::Corrupt {
            path: path.clone(),
            offset: 0,
            reason: format!("heads file header: {e:?}"),
        },
    })?;
    if let Some((offset, _, _)) = parsed.bad_tail {
        quarantine_tail(dir, HEADS_FILE, &path, offset, now, pending)?;
    }
    let Some(raw) = parsed.heads.last() else {
        return Ok(None);
    };
    let h = SignedTreeHead::parse(&raw.msg, raw.signature).ok_or_else(|| Error::Corrupt {
        path: path.clone(),
        offset: raw.offset,
        reason: "last signed head is unreadable".into(),
    })?;
    if !h.verify_signature(&key.verifying_key()) {
        return Err(Error::KeyMismatch { path });
    }
    Ok(Some(h))
}

/// Find the last segment, check its records chain cleanly, recover a torn tail, and return the
/// tip and the file opened for appending.
fn open_segments(
    dir: &Path,
    now: DateTime<Utc>,
    pending: &mut Vec<PathBuf>,
) -> Result<(Tip, File)> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    loop {
        let indexes = segment_indexes(&seg_dir)?;
        let Some(&last) = indexes.last() else {
            let (f, len) = create_segment(dir, 0, 0, GENESIS_CHAIN, &Frontier::new())?;
            let tip = Tip {
                next_seq: 0,
                last_chain: GENESIS_CHAIN,
                frontier: Frontier::new(),
                segment: 0,
                seg_len: len,
                seg_records: 0,
            };
            return Ok((tip, f));
        };
        let rel = format!("{SEGMENTS_DIR}/{}", segment_file_name(last));
        let path = seg_dir.join(segment_file_name(last));
        let file = File::open(&path).at(&path)?;
        let len = file.metadata().at(&path)?.len();
        let (header, mut reader) = SegmentReader::open(file, Some(len)).at(&path)?;
        let header = match header {
            Ok(h) => h,
            Err(format::DecodeError::Incomplete { .. }) if last > 0 => {
                // Crash while creating the segment: keep its bytes, remove it, retry.
                quarantine_tail(dir, &rel, &path, 0, now, pending)?;
                fs::remove_file(&path).at(&path)?;
                sync_dir(&seg_dir)?;
                continue;
            }
            Err(format::DecodeError::UnsupportedVersion(v)) => {
                return Err(Error::UnsupportedVersion {
                    path,
                    found: v,
                    supported: format::FORMAT_VERSION,
                })
            }
            Err(e) => {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    reason: format!("segment header: {e:?}"),
                })
            }
        };
        let mut tip = Tip {
            next_seq: header.first_seq,
            last_chain: header.prev_chain,
            frontier: header.frontier.clone(),
            segment: last,
            seg_len: reader.offset(),
            seg_records: 0,
        };
        let mut torn_at = None;
        while let Some(item) = reader.next_item().at(&path)? {
            match item {
                Item::Record { offset, frame } => {
                    let leaf = frame.leaf();
                    if frame.seq != tip.next_seq
                        || chain_hash(frame.seq, &tip.last_chain, &leaf) != frame.chain
                    {
                        return Err(Error::Corrupt {
                            path,
                            offset,
                            reason: format!("record seq {} does not continue the chain (expected seq {}); run `mamori vault verify`", frame.seq, tip.next_seq),
                        });
                    }
                    tip.frontier.push(leaf);
                    tip.last_chain = frame.chain;
                    tip.next_seq += 1;
                    tip.seg_len = offset + frame.len as u64;
                    tip.seg_records += 1;
                }
                Item::Garbage { offset, reason, .. } => {
                    return Err(Error::Corrupt {
                        path,
                        offset,
                        reason: format!("{reason}; run `mamori vault verify`"),
                    });
                }
                Item::Tail { offset, .. } => torn_at = Some(offset),
            }
        }
        drop(reader);
        if let Some(offset) = torn_at {
            quarantine_tail(dir, &rel, &path, offset, now, pending)?;
        }
        let mut f = OpenOptions::new().append(true).open(&path).at(&path)?;
        f.seek(SeekFrom::End(0)).at(&path)?;
        return Ok((tip, f));
    }
}

/// Read-only status (no key needed): scans only the last segment and reads the last head
/// without checking its signature — `verify` is what checks.
/// The segment numbers present in `seg_dir`, ascending.
fn segment_indexes(seg_dir: &Path) -> Result<Vec<u32>> {
    let mut indexes: Vec<u32> = fs::read_dir(seg_dir)
        .at(seg_dir)?
        .filter_map(|e| e.ok()?.file_name().to_str().and_then(parse_segment_name))
        .collect();
    indexes.sort_unstable();
    Ok(indexes)
}

pub fn read_status(dir: &Path) -> Result<VaultStatus> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let indexes = segment_indexes(&seg_dir)?;
    let mut tree_size = 0;
    if let Some(&last) = indexes.last() {
        let path = seg_dir.join(segment_file_name(last));
        let (header, mut reader) =
            SegmentReader::open(File::open(&path).at(&path)?, None).at(&path)?;
        if let Ok(h) = header {
            tree_size = h.first_seq;
            while let Some(item) = reader.next_item().at(&path)? {
                if let Item::Record { frame, .. } = item {
                    tree_size = tree_size.max(frame.seq + 1);
                }
            }
        }
    }
    let heads_path = dir.join(HEADS_FILE);
    let last_head = fs::read(&heads_path)
        .ok()
        .and_then(|b| head::parse_heads_file(&b).ok())
        .and_then(|f| {
            f.heads
                .last()
                .and_then(|r| SignedTreeHead::parse(&r.msg, r.signature))
        });
    Ok(VaultStatus {
        tree_size,
        segments: indexes.len() as u32,
        unsigned_records: tree_size.saturating_sub(last_head.as_ref().map_or(0, |h| h.tree_size)),
        last_head: last_head.map(|h| h.to_json()),
    })
}

/// Visit every well-formed record of every segment in order (for export). Damage is skipped
/// here; export refuses to run on a vault that does not verify.
pub(crate) fn for_each_record(
    dir: &Path,
    mut f: impl FnMut(u32, u64, &format::Frame<'_>, &[u8]) -> Result<()>,
) -> Result<()> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let indexes = segment_indexes(&seg_dir)?;
    let mut frame_bytes = Vec::new();
    for index in indexes {
        let path = seg_dir.join(segment_file_name(index));
        let (_, mut reader) = SegmentReader::open(File::open(&path).at(&path)?, None).at(&path)?;
        while let Some(item) = reader.next_item().at(&path)? {
            if let Item::Record { offset, frame } = item {
                frame_bytes.clear();
                frame_bytes.extend_from_slice(&format::RECORD_MAGIC);
                frame_bytes.extend_from_slice(&(frame.entry.len() as u32).to_be_bytes());
                frame_bytes.extend_from_slice(frame.entry);
                frame_bytes.extend_from_slice(&frame.chain);
                f(index, offset, &frame, &frame_bytes)?;
            }
        }
    }
    Ok(())
}

/// The chain-of-custody entries (audit records) whose target is accepted by `want`, in vault
/// order, read without the key and without checking the chain (`verify` is what checks).
/// Used by reports; a record whose payload does not parse is skipped.
pub fn read_custody(
    dir: &Path,
    mut want: impl FnMut(&AuditEntry) -> bool,
) -> Result<Vec<(u64, AuditEntry)>> {
    let mut out = Vec::new();
    for_each_record(dir, |_, _, frame, _| {
        if frame.kind() == Some(RecordKind::Audit) {
            if let Some(e) = AuditEntry::from_payload(frame.payload) {
                if want(&e) {
                    out.push((frame.seq, e));
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}
