//! Byte layouts of the vault files, version 1. `docs/vault-format.md` is the prose version of
//! this module; the two must change together, and a frozen fixture test guards both.
//!
//! All integers are big-endian. A segment file is a header followed by record frames; the heads
//! file is a header followed by signed-head frames.
//!
//! ```text
//! segment header:  "MAMORIVS" | version u16 | n u16 | segment u32 | first_seq u64
//!                  | prev_chain [32] | frontier [32]·n | header_sha256 [32]
//! record frame:    "MVR1" | entry_len u32 | entry | chain [32]
//! entry:           seq u64 | kind u8 | received_at_ns i64 | source_len u16 | source | payload
//! heads header:    "MAMORIVH" | version u16 | reserved u16 (0)
//! head frame:      "MVH1" | msg_len u32 | msg (text, see SignedTreeHead) | ed25519 sig [64]
//! ```

#[cfg(test)]
mod tests;

use sha2::{Digest, Sha256};

use crate::merkle::{leaf_hash, Frontier, Hash};

/// The on-disk format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

pub const SEGMENT_MAGIC: [u8; 8] = *b"MAMORIVS";
pub const HEADS_MAGIC: [u8; 8] = *b"MAMORIVH";
pub const RECORD_MAGIC: [u8; 4] = *b"MVR1";
pub const HEAD_MAGIC: [u8; 4] = *b"MVH1";

/// Fixed part of the segment header, before the frontier hashes.
pub const SEGMENT_HEADER_FIXED: usize = 8 + 2 + 2 + 4 + 8 + 32;
pub const HEADS_HEADER_LEN: usize = 12;
/// `magic | entry_len` before the entry, `chain` after it.
pub const FRAME_PREFIX: usize = 8;
pub const FRAME_OVERHEAD: usize = FRAME_PREFIX + 32;
/// `seq | kind | received_at | source_len`.
pub const ENTRY_FIXED: usize = 8 + 1 + 8 + 2;
pub const MAX_SOURCE_LEN: usize = 4096;
pub const MAX_PAYLOAD_LEN: usize = 16 << 20;
pub const MAX_ENTRY_LEN: usize = ENTRY_FIXED + MAX_SOURCE_LEN + MAX_PAYLOAD_LEN;
pub const MAX_HEAD_MSG_LEN: usize = 4096;
pub const SIGNATURE_LEN: usize = 64;

/// Domain-separation prefix of the chain hash, distinct from the Merkle leaf (0x00) and node
/// (0x01) prefixes so no chain value can be passed off as a tree node.
pub const CHAIN_PREFIX: u8 = 0x02;

/// What a record holds. The audit trail lives in the same chain as the evidence, so the chain of
/// custody is exactly as tamper-evident as the evidence itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Raw bytes of an event as received, before parsing.
    Event,
    /// A JSON [`crate::AuditEntry`]: who did what, when.
    Audit,
}

impl RecordKind {
    pub fn to_byte(self) -> u8 {
        match self {
            RecordKind::Event => 1,
            RecordKind::Audit => 2,
        }
    }

    pub fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Event),
            2 => Some(RecordKind::Audit),
            _ => None,
        }
    }
}

/// `chain_n = SHA-256(0x02 ‖ seq_be64 ‖ chain_{n-1} ‖ leaf_n)`; `chain_{-1}` is 32 zero bytes.
pub fn chain_hash(seq: u64, prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([CHAIN_PREFIX]);
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// The chain value before the first record.
pub const GENESIS_CHAIN: Hash = [0; 32];

/// Parsed segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u16,
    pub segment: u32,
    pub first_seq: u64,
    /// Chain value of the record before `first_seq` (stored, checked against the previous
    /// segment by the verifier's join pass).
    pub prev_chain: Hash,
    /// Merkle frontier after `first_seq` leaves.
    pub frontier: Frontier,
}

impl SegmentHeader {
    pub fn encoded_len(&self) -> usize {
        SEGMENT_HEADER_FIXED + 32 * self.frontier.hashes().len() + 32
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        b.extend_from_slice(&SEGMENT_MAGIC);
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&(self.frontier.hashes().len() as u16).to_be_bytes());
        b.extend_from_slice(&self.segment.to_be_bytes());
        b.extend_from_slice(&self.first_seq.to_be_bytes());
        b.extend_from_slice(&self.prev_chain);
        for h in self.frontier.hashes() {
            b.extend_from_slice(h);
        }
        let digest: Hash = Sha256::digest(&b).into();
        b.extend_from_slice(&digest);
        b
    }
}

/// Why a header or frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not enough bytes yet; `need` is the total length required from the start.
    Incomplete {
        need: usize,
    },
    /// The bytes cannot be this structure.
    Invalid(&'static str),
    UnsupportedVersion(u16),
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}
fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}
fn hash_at(b: &[u8], at: usize) -> Hash {
    b[at..at + 32].try_into().expect("32 bytes")
}

/// Decode a segment header from the start of `b`; returns it and its length.
pub fn decode_segment_header(b: &[u8]) -> Result<(SegmentHeader, usize), DecodeError> {
    if b.len() < SEGMENT_HEADER_FIXED {
        return Err(DecodeError::Incomplete {
            need: SEGMENT_HEADER_FIXED,
        });
    }
    if b[..8] != SEGMENT_MAGIC {
        return Err(DecodeError::Invalid("bad segment magic"));
    }
    let version = be_u16(&b[8..]);
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let n = be_u16(&b[10..]) as usize;
    if n > 64 {
        return Err(DecodeError::Invalid("frontier longer than 64 hashes"));
    }
    let total = SEGMENT_HEADER_FIXED + 32 * n + 32;
    if b.len() < total {
        return Err(DecodeError::Incomplete { need: total });
    }
    let digest: Hash = Sha256::digest(&b[..total - 32]).into();
    if digest != hash_at(b, total - 32) {
        return Err(DecodeError::Invalid("segment header checksum mismatch"));
    }
    let first_seq = be_u64(&b[16..]);
    let hashes: Vec<Hash> = (0..n)
        .map(|i| hash_at(b, SEGMENT_HEADER_FIXED + 32 * i))
        .collect();
    let frontier = Frontier::from_parts(first_seq, &hashes)
        .ok_or(DecodeError::Invalid("frontier does not match first_seq"))?;
    Ok((
        SegmentHeader {
            version,
            segment: be_u32(&b[12..]),
            first_seq,
            prev_chain: hash_at(b, 24),
            frontier,
        },
        total,
    ))
}

/// One record as the writer gives it.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub seq: u64,
    pub kind: RecordKind,
    pub received_at_ns: i64,
    pub source: &'a str,
    pub payload: &'a [u8],
}

impl EntryRef<'_> {
    pub fn encoded_len(&self) -> usize {
        ENTRY_FIXED + self.source.len() + self.payload.len()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.received_at_ns.to_be_bytes());
        out.extend_from_slice(&(self.source.len() as u16).to_be_bytes());
        out.extend_from_slice(self.source.as_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// Append a full frame for `entry` to `out`, chained to `prev`; returns `(leaf, chain)`.
pub fn encode_frame(entry: &EntryRef<'_>, prev: &Hash, out: &mut Vec<u8>) -> (Hash, Hash) {
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&(entry.encoded_len() as u32).to_be_bytes());
    let start = out.len();
    entry.encode_into(out);
    let leaf = leaf_hash(&out[start..]);
    let chain = chain_hash(entry.seq, prev, &leaf);
    out.extend_from_slice(&chain);
    (leaf, chain)
}

/// A decoded record frame borrowing from the buffer it was read from.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The hashed bytes: `seq | kind | received_at | source_len | source | payload`.
    pub entry: &'a [u8],
    pub seq: u64,
    /// Raw kind byte (unknown kinds are reported by the verifier, not rejected by framing).
    pub kind: u8,
    pub received_at_ns: i64,
    pub source: &'a [u8],
    pub payload: &'a [u8],
    pub chain: Hash,
    /// Whole frame length, `FRAME_OVERHEAD + entry.len()`.
    pub len: usize,
}

impl Frame<'_> {
    pub fn leaf(&self) -> Hash {
        leaf_hash(self.entry)
    }

    pub fn kind(&self) -> Option<RecordKind> {
        RecordKind::from_byte(self.kind)
    }
}

/// Decode the frame at the start of `b`.
pub fn decode_frame(b: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if b.len() < FRAME_PREFIX {
        // A short prefix of the magic is still "incomplete"; anything else cannot be a frame.
        let n = b.len().min(4);
        if b[..n] != RECORD_MAGIC[..n] {
            return Err(DecodeError::Invalid("bad record magic"));
        }
        return Err(DecodeError::Incomplete { need: FRAME_PREFIX });
    }
    if b[..4] != RECORD_MAGIC {
        return Err(DecodeError::Invalid("bad record magic"));
    }
    let entry_len = be_u32(&b[4..]) as usize;
    if !(ENTRY_FIXED..=MAX_ENTRY_LEN).contains(&entry_len) {
        return Err(DecodeError::Invalid("record length out of range"));
    }
    let total = FRAME_OVERHEAD + entry_len;
    if b.len() < FRAME_PREFIX + ENTRY_FIXED {
        return Err(DecodeError::Incomplete { need: total });
    }
    let e = &b[FRAME_PREFIX..];
    let source_len = be_u16(&e[17..]) as usize;
    if source_len > MAX_SOURCE_LEN || ENTRY_FIXED + source_len > entry_len {
        return Err(DecodeError::Invalid("source length out of range"));
    }
    if b.len() < total {
        return Err(DecodeError::Incomplete { need: total });
    }
    let entry = &b[FRAME_PREFIX..FRAME_PREFIX + entry_len];
    Ok(Frame {
        entry,
        seq: be_u64(entry),
        kind: entry[8],
        received_at_ns: be_u64(&entry[9..]) as i64,
        source: &entry[ENTRY_FIXED..ENTRY_FIXED + source_len],
        payload: &entry[ENTRY_FIXED + source_len..],
        chain: hash_at(b, FRAME_PREFIX + entry_len),
        len: total,
    })
}

/// The entry bytes with a different sequence number: lets the verifier recognise a record whose
/// only damage is its `seq` field.
pub(crate) fn entry_with_seq(entry: &[u8], seq: u64) -> Vec<u8> {
    let mut e = entry.to_vec();
    e[..8].copy_from_slice(&seq.to_be_bytes());
    e
}

/// Offsets and lengths of the well-formed frames in a segment file's bytes, skipping the header
/// and stopping at the first undecodable byte. For forensic tooling and tests.
pub fn frame_ranges(segment: &[u8]) -> Vec<std::ops::Range<usize>> {
    let Ok((_, mut at)) = decode_segment_header(segment) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Ok(f) = decode_frame(&segment[at..]) {
        out.push(at..at + f.len);
        at += f.len;
    }
    out
}

pub fn encode_heads_header() -> [u8; HEADS_HEADER_LEN] {
    let mut b = [0u8; HEADS_HEADER_LEN];
    b[..8].copy_from_slice(&HEADS_MAGIC);
    b[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    b
}

pub fn decode_heads_header(b: &[u8]) -> Result<(), DecodeError> {
    if b.len() < HEADS_HEADER_LEN {
        return Err(DecodeError::Incomplete {
            need: HEADS_HEADER_LEN,
        });
    }
    if b[..8] != HEADS_MAGIC {
        return Err(DecodeError::Invalid("bad heads file magic"));
    }
    match be_u16(&b[8..]) {
        FORMAT_VERSION => Ok(()),
        v => Err(DecodeError::UnsupportedVersion(v)),
    }
}

/// Append a head frame (`msg` and its signature) to `out`.
pub fn encode_head_frame(msg: &[u8], sig: &[u8; SIGNATURE_LEN], out: &mut Vec<u8>) {
    out.extend_from_slice(&HEAD_MAGIC);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out.extend_from_slice(sig);
}

/// Decode the head frame at the start of `b`: `(msg, signature, frame length)`.
pub fn decode_head_frame(b: &[u8]) -> Result<(&[u8], [u8; SIGNATURE_LEN], usize), DecodeError> {
    if b.len() < 8 {
        return Err(DecodeError::Incomplete { need: 8 });
    }
    if b[..4] != HEAD_MAGIC {
        return Err(DecodeError::Invalid("bad head magic"));
    }
    let len = be_u32(&b[4..]) as usize;
    if len > MAX_HEAD_MSG_LEN {
        return Err(DecodeError::Invalid("head message too long"));
    }
    let total = 8 + len + SIGNATURE_LEN;
    if b.len() < total {
        return Err(DecodeError::Incomplete { need: total });
    }
    let sig = b[8 + len..total].try_into().expect("64 bytes");
    Ok((&b[8..8 + len], sig, total))
}
