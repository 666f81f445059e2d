//! Signed tree heads and the append-only heads file.
//!
//! The signed message is deliberately plain text with one canonical spelling, so a person can
//! read what was signed (`cat tree-head.msg`) and `openssl pkeyutl -verify -rawin` can check the
//! signature without any Mamori code:
//!
//! ```text
//! mamori-vault tree head v1
//! tree_size 42
//! root_hash <64 hex>
//! chain_head <64 hex>
//! timestamp 2025-01-01T00:00:00.000Z
//! ```

#[cfg(test)]
mod tests;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::format::{self, DecodeError, SIGNATURE_LEN};
use crate::merkle::Hash;

const MSG_TITLE: &str = "mamori-vault tree head v1";

/// A tree head and its Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTreeHead {
    pub version: u16,
    /// Number of records (leaves) the head covers: seqs `0..tree_size`.
    pub tree_size: u64,
    /// RFC 9162 root of those leaves.
    pub root_hash: Hash,
    /// Chain value of record `tree_size - 1` (zeros for an empty tree).
    pub chain_head: Hash,
    /// When the head was made, millisecond precision.
    pub timestamp: DateTime<Utc>,
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedTreeHead {
    /// Build and sign a head. The timestamp is truncated to milliseconds so the text form
    /// round-trips exactly.
    pub fn sign(
        key: &SigningKey,
        tree_size: u64,
        root_hash: Hash,
        chain_head: Hash,
        timestamp: DateTime<Utc>,
    ) -> SignedTreeHead {
        let timestamp = truncate_ms(timestamp);
        let mut h = SignedTreeHead {
            version: format::FORMAT_VERSION,
            tree_size,
            root_hash,
            chain_head,
            timestamp,
            signature: [0; SIGNATURE_LEN],
        };
        h.signature = key.sign(&h.message()).to_bytes();
        h
    }

    /// The exact bytes that are signed.
    pub fn message(&self) -> Vec<u8> {
        message(
            self.version,
            self.tree_size,
            &self.root_hash,
            &self.chain_head,
            self.timestamp,
        )
        .into_bytes()
    }

    /// Check the signature with `key` (strict Ed25519: rejects malleable signatures and weak keys).
    pub fn verify_signature(&self, key: &VerifyingKey) -> bool {
        key.verify_strict(&self.message(), &Signature::from_bytes(&self.signature))
            .is_ok()
    }

    /// Parse a signed message; fails unless `msg` is the canonical spelling of a version-1 head.
    pub fn parse(msg: &[u8], signature: [u8; SIGNATURE_LEN]) -> Option<SignedTreeHead> {
        let text = std::str::from_utf8(msg).ok()?;
        let mut lines = text.strip_suffix('\n')?.split('\n');
        if lines.next()? != MSG_TITLE {
            return None;
        }
        let mut field = |name: &str| lines.next()?.strip_prefix(name)?.strip_prefix(' ');
        let tree_size: u64 = field("tree_size")?.parse().ok()?;
        let root_hash = parse_hash(field("root_hash")?)?;
        let chain_head = parse_hash(field("chain_head")?)?;
        let timestamp = DateTime::parse_from_rfc3339(field("timestamp")?)
            .ok()?
            .with_timezone(&Utc);
        let head = SignedTreeHead {
            version: format::FORMAT_VERSION,
            tree_size,
            root_hash,
            chain_head,
            timestamp,
            signature,
        };
        // One spelling only: anything that does not re-encode to the same bytes is rejected, so
        // two different messages can never claim to be the same head.
        (head.message() == msg).then_some(head)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.version,
            "tree_size": self.tree_size,
            "root_hash": hex::encode(self.root_hash),
            "chain_head": hex::encode(self.chain_head),
            "timestamp": format_ts(self.timestamp),
            "signature": hex::encode(self.signature),
        })
    }
}

/// Serialised as its JSON view ([`SignedTreeHead::to_json`]): hex hashes, RFC 3339 time.
impl serde::Serialize for SignedTreeHead {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

fn message(v: u16, size: u64, root: &Hash, chain: &Hash, ts: DateTime<Utc>) -> String {
    debug_assert_eq!(v, 1, "only version 1 messages exist");
    format!(
        "{MSG_TITLE}\ntree_size {size}\nroot_hash {}\nchain_head {}\ntimestamp {}\n",
        hex::encode(root),
        hex::encode(chain),
        format_ts(ts)
    )
}

pub(crate) fn format_ts(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn truncate_ms(ts: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ts.timestamp_millis())
        .single()
        .unwrap_or(ts)
}

fn parse_hash(s: &str) -> Option<Hash> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(s).ok()?.try_into().ok()
}

/// One frame of the heads file, as read.
#[derive(Debug, Clone)]
pub(crate) struct RawHead {
    pub offset: u64,
    pub msg: Vec<u8>,
    pub signature: [u8; SIGNATURE_LEN],
}

/// What the heads file holds: well-formed frames, then possibly an unreadable tail.
#[derive(Debug, Default)]
pub(crate) struct HeadsFile {
    pub heads: Vec<RawHead>,
    /// `(offset, length, reason)` of bytes after the last frame that do not form one.
    pub bad_tail: Option<(u64, u64, &'static str)>,
}

pub(crate) fn parse_heads_file(b: &[u8]) -> Result<HeadsFile, DecodeError> {
    format::decode_heads_header(b)?;
    let mut at = format::HEADS_HEADER_LEN;
    let mut out = HeadsFile::default();
    while at < b.len() {
        match format::decode_head_frame(&b[at..]) {
            Ok((msg, signature, n)) => {
                out.heads.push(RawHead {
                    offset: at as u64,
                    msg: msg.to_vec(),
                    signature,
                });
                at += n;
            }
            Err(e) => {
                let reason = match e {
                    DecodeError::Incomplete { .. } => "incomplete head frame (torn write)",
                    _ => "unreadable head frame",
                };
                out.bad_tail = Some((at as u64, (b.len() - at) as u64, reason));
                break;
            }
        }
    }
    Ok(out)
}
