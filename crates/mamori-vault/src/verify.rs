//! `verify()`: re-hash a vault directory and say precisely what, if anything, is wrong.
//!
//! Phase 1 runs one rayon task per segment. Each task streams its file, checks every record
//! against the chain (using the chain value of `seq - 1`, wherever that record physically is,
//! so a single bad record produces a single finding), classifies sequence anomalies, and pushes
//! every leaf into a Merkle frontier seeded from the segment header, recording the root at each
//! signed tree size it passes. Phase 2 is a cheap sequential join: each segment header must
//! continue exactly where the previous segment ended (seq, chain value, frontier), and every
//! signed head must match the root computed at its size.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{IoContext, Result};
use crate::format::{self, chain_hash, entry_with_seq, SegmentHeader, GENESIS_CHAIN};
use crate::head::{self, SignedTreeHead};
use crate::merkle::{self, leaf_hash, Frontier, Hash};
use crate::scan::{Item, SegmentReader};
use crate::vault::{segment_file_name, HEADS_FILE, SEGMENTS_DIR};

/// What kind of damage a finding describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A record's bytes (content, sequence field or stored chain value) were changed.
    Modified,
    /// Bytes inside a segment that are not a record (damaged framing, inserted junk).
    Corrupt,
    /// Sequence numbers are missing: records were deleted.
    Deleted,
    /// A record that does not belong: a duplicate, or a foreign record.
    Inserted,
    /// A record is present but out of order.
    Reordered,
    /// A signed head covers more records than the vault holds: the tail was cut.
    TruncatedTail,
    /// The last segment (or the heads file) ends inside a record: an interrupted write, or a cut.
    TornTail,
    /// A segment file is missing from the numbered sequence.
    SegmentMissing,
    /// A segment does not continue the previous one (replaced segment or rewritten header).
    SegmentMismatch,
    /// A segment header is unreadable.
    BadHeader,
    /// A signed head's signature does not verify with the given public key.
    BadSignature,
    /// A correctly signed head does not match the records (root or chain head differ).
    HeadMismatch,
    /// The heads file is unreadable, or its heads go backwards.
    BadHeads,
    /// A file in the vault that the format does not define (not read, not followed).
    UnexpectedFile,
}

/// One problem, located as precisely as the damage allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// File relative to the vault directory, e.g. `segments/00000003.seg` or `heads.log`.
    pub file: String,
    pub segment: Option<u32>,
    /// Byte offset in `file`.
    pub offset: Option<u64>,
    pub seq: Option<u64>,
    pub expected: String,
    pub found: String,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.file)?;
        if let Some(o) = self.offset {
            write!(f, " offset {o}")?;
        }
        if let Some(s) = self.seq {
            write!(f, " seq {s}")?;
        }
        write!(f, ": {}", self.detail)?;
        if !self.expected.is_empty() || !self.found.is_empty() {
            write!(f, " (expected {}, found {})", self.expected, self.found)?;
        }
        Ok(())
    }
}

/// The result of [`verify()`]. An intact vault has no findings.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// In vault order: segment findings by segment and offset, then heads findings.
    pub findings: Vec<Finding>,
    /// Findings not kept because one segment produced more than [`MAX_FINDINGS_PER_SEGMENT`].
    pub suppressed: u64,
    pub segments: u32,
    pub records: u64,
    /// Bytes of segment data hashed.
    pub bytes: u64,
    /// Heads whose signature verified.
    pub valid_heads: usize,
    pub last_head: Option<SignedTreeHead>,
    /// Records after the last signed head: protected by the chain only, not by a signature.
    pub unsigned_records: u64,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty() && self.suppressed == 0
    }

    /// The first thing wrong, in vault order.
    pub fn first(&self) -> Option<&Finding> {
        self.findings.first()
    }

    pub fn count(&self, kind: FindingKind) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }
}

pub const MAX_FINDINGS_PER_SEGMENT: usize = 1000;

/// Records remembered per segment for classifying out-of-order records. Anomalies further apart
/// than this are still detected, only classified less precisely ("inserted" instead of
/// "reordered").
const WINDOW: usize = 4096;

/// Verify the vault in `dir` against the operator's public key. Needs nothing else: no
/// database, no private key, no Mamori state. Returns `Err` only for I/O failures that prevent
/// verification (e.g. `dir` unreadable); damage is reported in the [`VerifyReport`].
pub fn verify(dir: &Path, key: &VerifyingKey) -> Result<VerifyReport> {
    let mut findings = Vec::new();
    let segments = list_segments(dir, &mut findings)?;
    let heads = read_heads(dir, key, &mut findings)?;
    let sizes: Vec<u64> = {
        let mut s: Vec<u64> = heads.iter().map(|h| h.tree_size).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let last_index = segments.last().map(|(i, _)| *i);
    let results: Vec<Result<SegResult>> = segments
        .par_iter()
        .map(|(index, path)| scan_segment(*index, path, Some(*index) == last_index, &sizes))
        .collect();
    let mut results = results.into_iter().collect::<Result<Vec<_>>>()?;
    let mut seg_findings = join_segments(&mut results);
    let mut suppressed = 0;
    for r in &mut results {
        suppressed += r.suppressed;
        seg_findings.append(&mut r.findings);
    }
    seg_findings.sort_by_key(|f| (f.segment, f.offset.unwrap_or(0)));

    let present = results
        .iter()
        .filter_map(|r| r.header.as_ref().map(|_| r.end_frontier.size()))
        .max()
        .unwrap_or(0);
    let mut roots: HashMap<u64, (Hash, Hash)> = HashMap::new();
    for r in &results {
        for (size, root, chain) in &r.roots {
            roots.entry(*size).or_insert((*root, *chain));
        }
    }
    let head_findings = check_heads(&heads, &roots, present);
    findings.splice(0..0, seg_findings);
    findings.extend(head_findings);

    let last_head = heads.last().cloned();
    Ok(VerifyReport {
        findings,
        suppressed,
        segments: results.len() as u32,
        records: results.iter().map(|r| r.records).sum(),
        bytes: results.iter().map(|r| r.bytes).sum(),
        valid_heads: heads.len(),
        unsigned_records: present.saturating_sub(last_head.as_ref().map_or(0, |h| h.tree_size)),
        last_head,
    })
}

fn seg_file(index: u32) -> String {
    format!("{SEGMENTS_DIR}/{}", segment_file_name(index))
}

/// Numbered segment files in order; anything else in the directory is reported, never read.
fn list_segments(dir: &Path, findings: &mut Vec<Finding>) -> Result<Vec<(u32, PathBuf)>> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let mut out = Vec::new();
    for entry in fs::read_dir(&seg_dir).at(&seg_dir)? {
        let entry = entry.at(&seg_dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ty = entry.file_type().at(&entry.path())?;
        match parse_segment_name(&name) {
            Some(i) if ty.is_file() => out.push((i, entry.path())),
            _ => findings.push(Finding {
                kind: FindingKind::UnexpectedFile,
                file: format!("{SEGMENTS_DIR}/{name}"),
                segment: None,
                offset: None,
                seq: None,
                expected: "a regular file named NNNNNNNN.seg".into(),
                found: if ty.is_symlink() {
                    "a symlink (not followed)"
                } else {
                    "another file"
                }
                .into(),
                detail: "file not defined by the vault format".into(),
            }),
        }
    }
    out.sort();
    let mut next = 0u32;
    for (i, _) in &out {
        if *i > next {
            findings.push(Finding {
                kind: FindingKind::SegmentMissing,
                file: seg_file(next),
                segment: Some(next),
                offset: None,
                seq: None,
                expected: format!("segments {next}..{}", i - 1),
                found: "no file".into(),
                detail: format!("{} segment file(s) missing", i - next),
            });
        }
        next = i + 1;
    }
    Ok(out)
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Signature-checked heads, in file order; problems become findings.
fn read_heads(
    dir: &Path,
    key: &VerifyingKey,
    findings: &mut Vec<Finding>,
) -> Result<Vec<SignedTreeHead>> {
    let path = dir.join(HEADS_FILE);
    let mut finding = |kind, offset: Option<u64>, expected: &str, found: String, detail: String| {
        findings.push(Finding {
            kind,
            file: HEADS_FILE.into(),
            segment: None,
            offset,
            seq: None,
            expected: expected.into(),
            found,
            detail,
        })
    };
    let bytes = match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => fs::read(&path).at(&path)?,
        Ok(_) => {
            finding(
                FindingKind::UnexpectedFile,
                None,
                "a regular file",
                "not a regular file (not followed)".into(),
                "heads file is not a regular file".into(),
            );
            return Ok(Vec::new());
        }
        Err(_) => {
            finding(
                FindingKind::BadHeads,
                None,
                "heads file",
                "missing".into(),
                "no signed tree heads: the tail of the vault is unprotected".into(),
            );
            return Ok(Vec::new());
        }
    };
    let file = match head::parse_heads_file(&bytes) {
        Ok(f) => f,
        Err(e) => {
            finding(
                FindingKind::BadHeads,
                Some(0),
                "heads file header",
                format!("{e:?}"),
                "heads file header unreadable".into(),
            );
            return Ok(Vec::new());
        }
    };
    let mut out: Vec<SignedTreeHead> = Vec::new();
    // Signatures are the expensive part of the heads file (one head per checkpoint, for
    // years): check them in parallel, then walk the results in order.
    let checked: Vec<(Option<SignedTreeHead>, bool)> = file
        .heads
        .par_iter()
        .map(|raw| {
            let h = SignedTreeHead::parse(&raw.msg, raw.signature);
            let ok = h.as_ref().is_some_and(|h| h.verify_signature(key));
            (h, ok)
        })
        .collect();
    for (raw, (h, sig_ok)) in file.heads.iter().zip(checked) {
        let Some(h) = h else {
            finding(
                FindingKind::BadHeads,
                Some(raw.offset),
                "a canonical v1 tree head message",
                format!("{} bytes", raw.msg.len()),
                "unreadable signed head".into(),
            );
            continue;
        };
        if !sig_ok {
            finding(
                FindingKind::BadSignature,
                Some(raw.offset),
                "a signature by the given key",
                hex::encode(h.signature),
                format!(
                    "tree head of size {} is not signed by this key",
                    h.tree_size
                ),
            );
            continue;
        }
        if let Some(prev) = out.last() {
            if h.tree_size < prev.tree_size || h.timestamp < prev.timestamp {
                finding(
                    FindingKind::BadHeads,
                    Some(raw.offset),
                    &format!(
                        "size ≥ {}, time ≥ {}",
                        prev.tree_size,
                        head::format_ts(prev.timestamp)
                    ),
                    format!(
                        "size {}, time {}",
                        h.tree_size,
                        head::format_ts(h.timestamp)
                    ),
                    "signed heads go backwards".into(),
                );
            }
        }
        out.push(h);
    }
    if let Some((offset, len, reason)) = file.bad_tail {
        finding(
            FindingKind::TornTail,
            Some(offset),
            "a complete head frame",
            format!("{len} bytes"),
            reason.into(),
        );
    }
    Ok(out)
}

/// What one segment task found.
struct SegResult {
    index: u32,
    header: Option<SegmentHeader>,
    /// Next seq expected after this segment.
    end_seq: u64,
    /// Stored chain value of record `end_seq - 1`.
    last_chain: Hash,
    end_frontier: Frontier,
    /// `(tree_size, root, chain value of record tree_size-1)` at each signed size reached.
    roots: Vec<(u64, Hash, Hash)>,
    findings: Vec<Finding>,
    suppressed: u64,
    records: u64,
    bytes: u64,
}

#[derive(Clone, Copy)]
struct Known {
    seq: u64,
    offset: u64,
    /// The stored chain value.
    chain: Hash,
    /// If the record failed its chain check: what its chain value should have been. The next
    /// record is accepted against either, so a damaged stored chain value costs one finding.
    alt: Option<Hash>,
}

struct Scan<'a> {
    index: u32,
    file: String,
    sizes: &'a [u64],
    next_size: usize,
    header: SegmentHeader,
    expected: u64,
    phys_prev: Hash,
    window: Vec<Option<Known>>,
    /// Missing seq ranges `start → (end, offset where the jump was seen)`.
    gaps: BTreeMap<u64, (u64, u64)>,
    /// A record whose seq jumped ahead, kept for one record to see whether the records it
    /// skipped follow right after it (then it, not they, is out of place).
    jumper: Option<(u64, Known, u64)>,
    /// Records taken out of the sequence by the jumper rule: seq → offset.
    displaced: BTreeMap<u64, u64>,
    after_garbage: Option<usize>,
    frontier: Frontier,
    roots: Vec<(u64, Hash, Hash)>,
    findings: Vec<Finding>,
    suppressed: u64,
    records: u64,
}

impl Scan<'_> {
    fn find(
        &mut self,
        kind: FindingKind,
        offset: u64,
        seq: Option<u64>,
        expected: String,
        found: String,
        detail: String,
    ) {
        if self.findings.len() >= MAX_FINDINGS_PER_SEGMENT {
            self.suppressed += 1;
            return;
        }
        self.findings.push(Finding {
            kind,
            file: self.file.clone(),
            segment: Some(self.index),
            offset: Some(offset),
            seq,
            expected,
            found,
            detail,
        });
    }

    fn known(&self, seq: u64) -> Option<Known> {
        self.window[(seq % self.window.len() as u64) as usize].filter(|k| k.seq == seq)
    }

    fn remember(&mut self, k: Known) {
        let n = self.window.len() as u64;
        self.window[(k.seq % n) as usize] = Some(k);
    }

    /// Chain values a record with `seq` may extend: the stored and the recomputed value of
    /// `seq - 1` when known, else the physically previous record's.
    fn preds(&self, seq: u64) -> (Hash, Option<Hash>) {
        if seq == self.header.first_seq {
            return (self.header.prev_chain, None);
        }
        match seq.checked_sub(1).and_then(|p| self.known(p)) {
            Some(k) => (k.chain, k.alt),
            None => (self.phys_prev, None),
        }
    }

    fn chains_ok(&self, seq: u64, leaf: &Hash, stored: &Hash) -> (bool, Hash) {
        let (p, alt) = self.preds(seq);
        let computed = chain_hash(seq, &p, leaf);
        let ok = computed == *stored || alt.is_some_and(|a| chain_hash(seq, &a, leaf) == *stored);
        (ok, computed)
    }

    fn record(&mut self, offset: u64, entry: &[u8], seq: u64, stored: Hash) {
        let leaf = leaf_hash(entry);
        self.records += 1;
        self.frontier.push(leaf);
        while self.next_size < self.sizes.len()
            && self.sizes[self.next_size] <= self.frontier.size()
        {
            if self.sizes[self.next_size] == self.frontier.size() {
                self.roots
                    .push((self.frontier.size(), self.frontier.root(), stored));
            }
            self.next_size += 1;
        }
        let garbage = self.after_garbage.take();
        let here = Known {
            seq,
            offset,
            chain: stored,
            alt: None,
        };

        if let Some((gap_start, jumper, gap_end)) = self.jumper.take() {
            // The record right after a jump carries the first skipped seq and chains from its
            // true predecessor: the jumper is what is out of place, not the records it skipped.
            if seq == gap_start && self.chains_ok(seq, &leaf, &stored).0 {
                self.gaps.remove(&gap_start);
                self.displaced.insert(jumper.seq, jumper.offset);
                self.expected = gap_start;
                debug_assert_eq!(gap_end, jumper.seq);
            }
        }

        if seq > self.expected {
            // Only the seq field damaged? Then the entry with the expected seq chains.
            let fixed = leaf_hash(&entry_with_seq(entry, self.expected));
            let (p, _) = self.preds(self.expected);
            if chain_hash(self.expected, &p, &fixed) == stored {
                let e = self.expected;
                self.find(
                    FindingKind::Modified,
                    offset,
                    Some(e),
                    format!("seq {e}"),
                    format!("seq {seq}"),
                    "sequence number field altered".into(),
                );
                self.remember(Known { seq: e, ..here });
                self.expected = e + 1;
                self.phys_prev = stored;
                return;
            }
            // Seqs taken earlier by the jumper rule are not missing: they were moved.
            let moved: Vec<(u64, u64)> = self
                .displaced
                .range(self.expected..seq)
                .map(|(s, o)| (*s, *o))
                .collect();
            for (s, o) in &moved {
                self.displaced.remove(s);
                self.find(
                    FindingKind::Reordered,
                    *o,
                    Some(*s),
                    format!("seq {s} after seq {}", s.wrapping_sub(1)),
                    format!("seq {s} earlier, at offset {o}"),
                    "record moved out of order".into(),
                );
            }
            let missing: Vec<u64> = (self.expected..seq)
                .filter(|s| !moved.iter().any(|(m, _)| m == s))
                .collect();
            if let (Some(&a), Some(&b)) = (missing.first(), missing.last()) {
                if let Some(idx) = garbage {
                    // The unreadable bytes just before held these records.
                    let f = &mut self.findings[idx];
                    f.detail = format!("{}; records seq {a}..={b} unreadable", f.detail);
                } else {
                    self.gaps.insert(a, (b + 1, offset));
                    if b + 1 == seq {
                        self.jumper = Some((a, here, seq));
                    }
                }
                self.remember(here);
                self.expected = seq + 1;
                self.phys_prev = stored;
                return;
            }
            // Everything skipped was found earlier: check this record normally.
            self.expected = seq;
        }

        if seq == self.expected {
            if let Some(o) = self.displaced.remove(&seq) {
                // The same seq was already seen out of place: that one was an extra copy.
                self.find(
                    FindingKind::Inserted,
                    o,
                    Some(seq),
                    format!("seq {seq} once"),
                    format!("another record with seq {seq} at offset {offset}"),
                    "record inserted out of place (duplicate or foreign)".into(),
                );
            }
            let (ok, computed) = self.chains_ok(seq, &leaf, &stored);
            if !ok && garbage.is_none() {
                self.find(
                    FindingKind::Modified,
                    offset,
                    Some(seq),
                    hex::encode(computed),
                    hex::encode(stored),
                    "record does not match its chain value".into(),
                );
            }
            self.remember(Known {
                alt: (!ok).then_some(computed),
                ..here
            });
            self.expected = seq + 1;
        } else if let Some((&start, &(end, at))) = self
            .gaps
            .range(..=seq)
            .next_back()
            .filter(|(_, (e, _))| seq < *e)
        {
            // A seq we recorded as missing turns up later: it was moved.
            self.gaps.remove(&start);
            if start < seq {
                self.gaps.insert(start, (seq, at));
            }
            if seq + 1 < end {
                self.gaps.insert(seq + 1, (end, at));
            }
            let (ok, computed) = self.chains_ok(seq, &leaf, &stored);
            self.find(
                FindingKind::Reordered,
                offset,
                Some(seq),
                format!("seq {seq} before offset {at}"),
                format!("seq {seq} at offset {offset}"),
                "record moved out of order".into(),
            );
            self.remember(Known {
                alt: (!ok).then_some(computed),
                ..here
            });
        } else {
            let detail = match self.known(seq) {
                Some(k) if k.chain == stored => {
                    format!("duplicate of the record at offset {}", k.offset)
                }
                Some(k) => format!(
                    "second record claiming seq {seq} (first at offset {})",
                    k.offset
                ),
                None => format!("seq {seq} does not fit here (expected {})", self.expected),
            };
            self.find(
                FindingKind::Inserted,
                offset,
                Some(seq),
                format!("seq {}", self.expected),
                format!("seq {seq}"),
                detail,
            );
        }
        self.phys_prev = stored;
    }

    fn finish(&mut self) {
        let gaps = std::mem::take(&mut self.gaps);
        for (start, (end, at)) in gaps {
            self.find(
                FindingKind::Deleted,
                at,
                Some(start),
                format!("seqs {start}..={}", end - 1),
                "missing".into(),
                format!("{} record(s) deleted", end - start),
            );
        }
        // Records moved earlier whose seqs come right at the end of the segment (e.g. the last
        // two records swapped) were moved, not added.
        while let Some(o) = self.displaced.remove(&self.expected) {
            let s = self.expected;
            self.find(
                FindingKind::Reordered,
                o,
                Some(s),
                format!("seq {s} at the end of the segment"),
                format!("seq {s} earlier, at offset {o}"),
                "record moved out of order".into(),
            );
            self.expected += 1;
        }
        let displaced = std::mem::take(&mut self.displaced);
        for (seq, o) in displaced {
            self.find(
                FindingKind::Inserted,
                o,
                Some(seq),
                "no record here".into(),
                format!("seq {seq}"),
                "record inserted out of place (duplicate or foreign)".into(),
            );
        }
    }
}

fn scan_segment(index: u32, path: &Path, is_last: bool, sizes: &[u64]) -> Result<SegResult> {
    let file_name = seg_file(index);
    let f = File::open(path).at(path)?;
    let bytes = f.metadata().at(path)?.len();
    let (header, mut reader) = SegmentReader::open(f, Some(bytes)).at(path)?;
    let bad = |reason: String| SegResult {
        index,
        header: None,
        end_seq: 0,
        last_chain: GENESIS_CHAIN,
        end_frontier: Frontier::new(),
        roots: Vec::new(),
        findings: vec![Finding {
            kind: FindingKind::BadHeader,
            file: file_name.clone(),
            segment: Some(index),
            offset: Some(0),
            seq: None,
            expected: "a valid v1 segment header".into(),
            found: reason,
            detail: "segment header unreadable; its records cannot be placed in the tree".into(),
        }],
        suppressed: 0,
        records: 0,
        bytes,
    };
    let header = match header {
        Ok(h) => h,
        Err(e) => return Ok(bad(format!("{e:?}"))),
    };
    if header.segment != index {
        return Ok(bad(format!("header says segment {}", header.segment)));
    }
    let first_size = header.first_seq;
    let mut s = Scan {
        index,
        file: file_name,
        sizes,
        next_size: sizes.partition_point(|&x| x <= first_size),
        expected: header.first_seq,
        phys_prev: header.prev_chain,
        frontier: header.frontier.clone(),
        header,
        // Sized to the segment so small segments do not pay for the full window.
        window: vec![None; ((bytes as usize) / format::FRAME_OVERHEAD + 1).min(WINDOW)],
        gaps: BTreeMap::new(),
        jumper: None,
        displaced: BTreeMap::new(),
        after_garbage: None,
        roots: Vec::new(),
        findings: Vec::new(),
        suppressed: 0,
        records: 0,
    };
    while let Some(item) = reader.next_item().at(path)? {
        match item {
            Item::Record { offset, frame } => s.record(offset, frame.entry, frame.seq, frame.chain),
            Item::Garbage {
                offset,
                len,
                reason,
            } => {
                s.find(
                    FindingKind::Corrupt,
                    offset,
                    None,
                    "a record".into(),
                    format!("{len} unreadable bytes"),
                    reason.into(),
                );
                s.after_garbage = Some(s.findings.len().saturating_sub(1));
            }
            Item::Tail { offset, len, torn } => {
                let (kind, detail) = match (is_last, torn) {
                    (true, true) => (FindingKind::TornTail, "the segment ends inside a record (interrupted write or cut); `Vault::open` quarantines and audits it"),
                    (true, false) => (FindingKind::TornTail, "unreadable bytes at the end of the last segment (interrupted write or damage)"),
                    (false, _) => (FindingKind::Corrupt, "unreadable bytes at the end of a sealed segment"),
                };
                s.find(
                    kind,
                    offset,
                    Some(s.expected),
                    "a complete record".into(),
                    format!("{len} bytes"),
                    detail.into(),
                );
            }
        }
    }
    s.finish();
    let last_chain = s
        .expected
        .checked_sub(1)
        .and_then(|p| s.known(p))
        .map_or(s.phys_prev, |k| k.chain);
    Ok(SegResult {
        index,
        end_seq: s.expected,
        last_chain,
        end_frontier: s.frontier,
        roots: s.roots,
        findings: s.findings,
        suppressed: s.suppressed,
        records: s.records,
        bytes,
        header: Some(s.header),
    })
}

/// Phase 2: each segment must start exactly where the previous one ended.
fn join_segments(results: &mut [SegResult]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut prev: Option<&SegResult> = None;
    for r in results.iter() {
        let Some(h) = &r.header else {
            prev = None;
            continue;
        };
        let (exp_seq, exp_chain, exp_frontier, prev_clean) = match prev {
            Some(p) if p.index + 1 == r.index => (
                p.end_seq,
                p.last_chain,
                p.end_frontier.clone(),
                p.findings.is_empty(),
            ),
            None if r.index == 0 => (0, GENESIS_CHAIN, Frontier::new(), true),
            _ => {
                prev = Some(r);
                continue; // missing or unreadable predecessor: already reported
            }
        };
        let mut finding = |kind, expected: String, found: String, detail: &str| {
            out.push(Finding {
                kind,
                file: seg_file(r.index),
                segment: Some(r.index),
                offset: Some(0),
                seq: Some(h.first_seq),
                expected,
                found,
                detail: detail.into(),
            })
        };
        if h.first_seq > exp_seq {
            finding(
                FindingKind::Deleted,
                format!("seqs {exp_seq}..={}", h.first_seq - 1),
                "missing".into(),
                "records missing between segments",
            );
        } else if h.first_seq < exp_seq {
            finding(
                FindingKind::SegmentMismatch,
                format!("first seq {exp_seq}"),
                format!("first seq {}", h.first_seq),
                "segment overlaps the previous one",
            );
        } else if h.prev_chain != exp_chain {
            finding(FindingKind::SegmentMismatch, hex::encode(exp_chain), hex::encode(h.prev_chain), "segment does not continue the previous segment's chain (replaced segment or rewritten header)");
        } else if h.frontier != exp_frontier && prev_clean {
            finding(
                FindingKind::SegmentMismatch,
                "the previous segment's Merkle frontier".into(),
                "a different frontier".into(),
                "segment header's tree state does not match the records before it",
            );
        }
        prev = Some(r);
    }
    out
}

fn check_heads(
    heads: &[SignedTreeHead],
    roots: &HashMap<u64, (Hash, Hash)>,
    present: u64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut mismatches = 0usize;
    for h in heads {
        let computed = if h.tree_size == 0 {
            Some((merkle::empty_root(), GENESIS_CHAIN))
        } else {
            roots.get(&h.tree_size).copied()
        };
        if let Some((root, chain)) = computed {
            if root != h.root_hash || chain != h.chain_head {
                mismatches += 1;
                if mismatches == 1 {
                    let (e, f) = if root != h.root_hash {
                        (h.root_hash, root)
                    } else {
                        (h.chain_head, chain)
                    };
                    out.push(Finding {
                        kind: FindingKind::HeadMismatch,
                        file: HEADS_FILE.into(),
                        segment: None,
                        offset: None,
                        seq: Some(h.tree_size - 1),
                        expected: hex::encode(e),
                        found: hex::encode(f),
                        detail: format!(
                            "the records do not match the head signed at {} for tree size {}",
                            head::format_ts(h.timestamp),
                            h.tree_size
                        ),
                    });
                }
            }
        }
    }
    if mismatches > 1 {
        if let Some(f) = out.last_mut() {
            f.detail = format!("{} ({} later heads mismatch too)", f.detail, mismatches - 1);
        }
    }
    if let Some(max) = heads.iter().map(|h| h.tree_size).max() {
        if max > present {
            out.push(Finding {
                kind: FindingKind::TruncatedTail,
                file: SEGMENTS_DIR.into(),
                segment: None,
                offset: None,
                seq: Some(present),
                expected: format!("{max} records (signed)"),
                found: format!("{present} records"),
                detail: format!(
                    "{} signed record(s) are missing from the end of the vault",
                    max - present
                ),
            });
        }
    }
    out
}
