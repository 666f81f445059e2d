//! Witnessed heads: detecting a vault rolled back to an earlier signed state (issue #15,
//! finding 11).
//!
//! Signatures prove who signed a head, not that it is the newest: someone with the box can put
//! back an earlier copy of the vault directory — every record, chain link and head in it still
//! verifies. A copy of each signed head kept *outside* the box (a syslog/CEF forward, a webhook,
//! an e-mail digest, another Mamori) is the remedy: [`check_witness`] checks that the vault
//! still extends every head a witness saw — it holds at least that many records, and the root
//! of its first `tree_size` records is the witnessed root. A witness file is text holding head
//! JSON objects ([`SignedTreeHead::to_json`]) — one per line, possibly after a syslog prefix,
//! or a bundle's `head/tree-head.json` — so whatever a forwarder stored can be passed as is.

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::error::Result;
use crate::head::{self, SignedTreeHead};
use crate::merkle::{Frontier, Hash};
use crate::vault::for_each_record;

/// The result of [`check_witness`].
#[derive(Debug, Clone, Serialize)]
pub struct WitnessReport {
    /// Records in the vault.
    pub vault_records: u64,
    /// Witnessed heads signed by the key (those checked).
    pub witnessed: usize,
    /// Head-like objects in the witness that did not parse or are not signed by the key.
    pub ignored: usize,
    /// The largest witnessed head.
    pub newest: Option<SignedTreeHead>,
    /// Each witnessed head the vault does not extend, in words.
    pub problems: Vec<String>,
}

impl WitnessReport {
    /// Whether the vault extends every witnessed head (and at least one was checked).
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty() && self.witnessed > 0
    }
}

/// A head from its JSON view; `None` unless it re-encodes to a canonical signed message.
pub fn head_from_json(v: &serde_json::Value) -> Option<SignedTreeHead> {
    let msg = format!(
        "mamori-vault tree head v1\ntree_size {}\nroot_hash {}\nchain_head {}\ntimestamp {}\n",
        v["tree_size"].as_u64()?,
        v["root_hash"].as_str()?,
        v["chain_head"].as_str()?,
        v["timestamp"].as_str()?
    );
    let sig: [u8; 64] = hex::decode(v["signature"].as_str()?)
        .ok()?
        .try_into()
        .ok()?;
    SignedTreeHead::parse(msg.as_bytes(), sig)
}

/// Every head JSON object in `text`: the whole text as one object or array, else each line's
/// outermost `{…}`. Returns the heads and how many head-like objects did not parse.
pub fn parse_witness(text: &str) -> (Vec<SignedTreeHead>, usize) {
    let mut values = Vec::new();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(a)) => values.extend(a),
        Ok(v @ serde_json::Value::Object(_)) => values.push(v),
        _ => {
            for line in text.lines() {
                let (Some(a), Some(b)) = (line.find('{'), line.rfind('}')) else {
                    continue;
                };
                if let Ok(v) = serde_json::from_str(&line[a..=b]) {
                    values.push(v);
                }
            }
        }
    }
    let mut heads = Vec::new();
    let mut bad = 0;
    for v in values {
        // A forwarded line or a status may wrap the head: `{"tree_head": {…}}`,
        // `mamori vault status --json`'s `{"last_head": {…}}`.
        let v = match ["tree_head", "last_head"]
            .iter()
            .find(|k| v.get(**k).is_some())
        {
            Some(k) => v[*k].clone(),
            None => v,
        };
        if v.get("tree_size").is_none() {
            continue;
        }
        match head_from_json(&v) {
            Some(h) => heads.push(h),
            None => bad += 1,
        }
    }
    (heads, bad)
}

/// Checks that the vault at `dir` extends every head in `witnessed` signed by `key`. Reads the
/// records once, keeping O(log n) hashes.
pub fn check_witness(
    dir: &Path,
    key: &VerifyingKey,
    witnessed: &[SignedTreeHead],
) -> Result<WitnessReport> {
    let (mut heads, unsigned): (Vec<_>, Vec<_>) =
        witnessed.iter().partition(|h| h.verify_signature(key));
    heads.sort_by_key(|h| h.tree_size);
    let mut roots: Vec<(u64, Hash)> = Vec::new();
    let mut frontier = Frontier::new();
    let mut wanted = heads.iter().map(|h| h.tree_size).peekable();
    while wanted.next_if_eq(&0).is_some() {
        roots.push((0, frontier.root()));
    }
    for_each_record(dir, |_, _, frame, _| {
        if frame.seq != frontier.size() {
            return Ok(()); // damage: `verify` reports it; roots past it will not match
        }
        frontier.push(frame.leaf());
        while wanted.next_if_eq(&frontier.size()).is_some() {
            roots.push((frontier.size(), frontier.root()));
        }
        Ok(())
    })?;
    let vault_records = frontier.size();
    let mut problems = Vec::new();
    for h in &heads {
        let when = head::format_ts(h.timestamp);
        if h.tree_size > vault_records {
            problems.push(format!(
                "ROLLBACK: the vault holds {vault_records} records, but a witness saw a signed head of {} records at {when} — the vault was rolled back to an earlier copy or truncated",
                h.tree_size
            ));
        } else if roots
            .iter()
            .find(|(n, _)| *n == h.tree_size)
            .is_none_or(|(_, r)| *r != h.root_hash)
        {
            problems.push(format!(
                "the vault's first {} records are not those of the head a witness saw at {when} (root {}) — history was rewritten",
                h.tree_size,
                hex::encode(h.root_hash)
            ));
        }
    }
    Ok(WitnessReport {
        vault_records,
        witnessed: heads.len(),
        ignored: unsigned.len(),
        newest: heads.last().map(|h| (*h).clone()),
        problems,
    })
}
