//! `verify_bundle()`: check an evidence bundle offline, streaming the tar and never extracting
//! it (so a hostile bundle cannot write anywhere), in memory bounded by its small files and a
//! few dozen bytes per record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead as _, Read};
use std::path::{Component, Path};

use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};
use crate::export::names;
use crate::format;
use crate::head::SignedTreeHead;
use crate::keys;
use crate::merkle::{self, Hash};

/// One problem in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleFinding {
    /// Path inside the bundle (relative to its root directory), or `-` for the bundle itself.
    pub file: String,
    pub problem: String,
}

/// The result of [`verify_bundle`]. Intact means: every file matches the manifest, the manifest
/// and the tree head are signed by the key, and every record has a valid inclusion proof.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    pub findings: Vec<BundleFinding>,
    pub files: usize,
    pub records: u64,
    pub audit_records: u64,
    pub tree_size: Option<u64>,
    pub root_hash: Option<String>,
    /// Fingerprint of the key the checks used. When no expected key was given this is the
    /// bundle's own key, which the reader must compare with one kept elsewhere.
    pub key_fingerprint: Option<String>,
    pub key_from_bundle: bool,
}

impl BundleReport {
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }
}

const MAX_BUNDLE_FILES: usize = 1_000_000;
/// Largest of the small files the checks keep in memory (manifest, signatures, key, head,
/// consistency proofs); a bundle's records are only ever streamed.
const MAX_KEPT_BYTES: u64 = 64 << 20;

/// The files kept in memory during the checks.
const KEPT: [&str; 6] = [
    names::MANIFEST,
    names::MANIFEST_SIG,
    names::PUBKEY,
    names::HEAD_MSG,
    names::HEAD_SIG,
    names::CONSISTENCY,
];

/// Verify the bundle at `path`. With `expected_key`, the bundle's key must be that key; without
/// it, the bundle's own key is used and reported (weaker: say so to the user).
///
/// The tar is read sequentially, three times at most, in memory bounded by its small files and
/// about 60 bytes per record (the leaves whose inclusion proofs verified): hashes of every
/// file, then the inclusion proofs, then the records against them.
pub fn verify_bundle(path: &Path, expected_key: Option<&VerifyingKey>) -> Result<BundleReport> {
    let mut findings = Vec::new();
    let mut digests: BTreeMap<String, String> = BTreeMap::new();
    let mut kept: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    walk(path, Some(&mut findings), |rel, entry| {
        let mut sha = Sha256::new();
        if KEPT.contains(&rel) {
            let mut bytes = Vec::new();
            entry.take(MAX_KEPT_BYTES + 1).read_to_end(&mut bytes)?;
            sha.update(&bytes);
            kept.insert(rel.to_owned(), bytes);
        }
        std::io::copy(entry, &mut sha)?;
        digests.insert(rel.to_owned(), hex::encode(sha.finalize()));
        Ok(())
    })?;
    let mut report = BundleReport {
        findings,
        files: digests.len(),
        records: 0,
        audit_records: 0,
        tree_size: None,
        root_hash: None,
        key_fingerprint: None,
        key_from_bundle: expected_key.is_none(),
    };
    check_contents(path, &digests, &kept, expected_key, &mut report)?;
    Ok(report)
}

/// Calls `f` with the relative name and contents of each regular file of the bundle, in
/// archive order, once per name (the first); with `findings`, reports what is not read and why.
fn walk(
    path: &Path,
    mut findings: Option<&mut Vec<BundleFinding>>,
    mut f: impl FnMut(&str, &mut dyn Read) -> std::io::Result<()>,
) -> Result<()> {
    let mut bad = |file: &str, problem: String| {
        if let Some(v) = findings.as_deref_mut() {
            v.push(BundleFinding {
                file: file.to_string(),
                problem,
            })
        }
    };
    let file = File::open(path).at(path)?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(256 << 10, file));
    let mut seen: HashSet<String> = HashSet::new();
    let mut root: Option<String> = None;
    for entry in archive.entries().at(path)? {
        let mut entry = entry.at(path)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let ty = entry.header().entry_type();
        if ty.is_dir() {
            continue;
        }
        let Some((top, rel)) = safe_split(&raw) else {
            bad(
                &raw,
                "unsafe path in archive (absolute, `..`, or empty component); not read".into(),
            );
            continue;
        };
        if !ty.is_file() {
            bad(
                &raw,
                format!(
                    "entry of type {ty:?} (only regular files belong in a bundle); not followed"
                ),
            );
            continue;
        }
        match &root {
            None => root = Some(top.clone()),
            Some(r) if *r != top => {
                bad(&raw, format!("entry outside the bundle root `{r}`"));
                continue;
            }
            _ => {}
        }
        if seen.len() >= MAX_BUNDLE_FILES {
            bad("-", "too many files".into());
            break;
        }
        if !seen.insert(rel.clone()) {
            bad(&rel, "appears twice in the archive".into());
            continue;
        }
        f(&rel, &mut entry).at(path)?;
    }
    Ok(())
}

/// `root/a/b` → (`root`, `a/b`), rejecting anything that is not plain relative names.
fn safe_split(raw: &str) -> Option<(String, String)> {
    let p = Path::new(raw);
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if parts.len() < 2 {
        return None;
    }
    let top = parts.remove(0);
    Some((top, parts.join("/")))
}

fn check_contents(
    path: &Path,
    digests: &BTreeMap<String, String>,
    files: &BTreeMap<String, Vec<u8>>,
    expected_key: Option<&VerifyingKey>,
    r: &mut BundleReport,
) -> Result<()> {
    let mut bad = |file: &str, problem: String| {
        r.findings.push(BundleFinding {
            file: file.to_string(),
            problem,
        })
    };
    let get = |name: &str| files.get(name);

    // 1. The manifest covers every file and every hash matches.
    let Some(manifest) = get(names::MANIFEST) else {
        bad(names::MANIFEST, "missing".into());
        return Ok(());
    };
    let mut listed = HashMap::new();
    for line in String::from_utf8_lossy(manifest).lines() {
        match line.split_once("  ") {
            Some((h, name)) if h.len() == 64 => {
                listed.insert(name.to_string(), h.to_string());
            }
            _ => bad(names::MANIFEST, format!("unreadable line: {line:?}")),
        }
    }
    for (name, digest) in digests {
        if name == names::MANIFEST || name == names::MANIFEST_SIG {
            continue;
        }
        match listed.remove(name) {
            None => bad(name, "not listed in the manifest".into()),
            Some(h) if h != *digest => bad(
                name,
                format!("SHA-256 mismatch (manifest {h}, file {digest})"),
            ),
            Some(_) => {}
        }
    }
    for name in listed.keys() {
        bad(name, "listed in the manifest but missing".into());
    }

    // 2. The key, the manifest signature and the tree head signature.
    let bundle_key = get(names::PUBKEY)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|pem| VerifyingKey::from_public_key_pem(pem).ok());
    let key = match (expected_key, bundle_key) {
        (Some(e), Some(b)) => {
            if e != &b {
                bad(
                    names::PUBKEY,
                    format!(
                        "bundle key {} is not the expected key {}",
                        keys::fingerprint(&b),
                        keys::fingerprint(e)
                    ),
                );
            }
            *e
        }
        (Some(e), None) => {
            bad(names::PUBKEY, "missing or unreadable".into());
            *e
        }
        (None, Some(b)) => b,
        (None, None) => {
            bad(
                names::PUBKEY,
                "missing or unreadable, and no expected key given".into(),
            );
            return Ok(());
        }
    };
    r.key_fingerprint = Some(keys::fingerprint(&key));
    let sig_ok = |msg: &[u8], sig: Option<&Vec<u8>>| {
        sig.and_then(|s| <[u8; 64]>::try_from(s.as_slice()).ok())
            .is_some_and(|s| key.verify_strict(msg, &Signature::from_bytes(&s)).is_ok())
    };
    if !sig_ok(manifest, get(names::MANIFEST_SIG)) {
        bad(
            names::MANIFEST_SIG,
            "signature does not verify with the key".into(),
        );
    }
    let head = get(names::HEAD_MSG).and_then(|msg| {
        let sig = get(names::HEAD_SIG).and_then(|s| <[u8; 64]>::try_from(s.as_slice()).ok())?;
        SignedTreeHead::parse(msg, sig)
    });
    let Some(head) = head else {
        bad(
            names::HEAD_MSG,
            "missing or unreadable signed tree head".into(),
        );
        return Ok(());
    };
    if !head.verify_signature(&key) {
        bad(
            names::HEAD_SIG,
            "tree head signature does not verify with the key".into(),
        );
    }
    r.tree_size = Some(head.tree_size);
    r.root_hash = Some(hex::encode(head.root_hash));

    // 3. Every record has a valid inclusion proof in the signed tree: the proofs are checked
    // as they stream by (the leaf of each that verifies is kept), then the records.
    let mut proved: HashMap<u64, Hash> = HashMap::new();
    let mut unreadable = Vec::new();
    walk(path, None, |rel, entry| {
        if rel != names::INCLUSION {
            return Ok(());
        }
        for line in std::io::BufReader::new(entry).lines() {
            let line = line?;
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(v) => {
                    let (Some(seq), Some(leaf)) = (v["seq"].as_u64(), hash(&v["leaf_hash"])) else {
                        continue;
                    };
                    if proof_ok(&v, &leaf, seq, &head) {
                        proved.insert(seq, leaf);
                    }
                }
                Err(e) => unreadable.push(format!("unreadable line: {e}")),
            }
        }
        Ok(())
    })?;
    for u in unreadable {
        r.findings.push(BundleFinding {
            file: names::INCLUSION.into(),
            problem: u,
        });
    }
    let (mut records, mut audit_records) = (0, 0);
    let mut seen = HashSet::new();
    walk(path, None, |rel, entry| {
        let counter = match rel {
            names::RECORDS_BIN => &mut records,
            names::AUDIT_BIN => &mut audit_records,
            _ => return Ok(()),
        };
        seen.insert(rel.to_owned());
        let mut reader = std::io::BufReader::with_capacity(256 << 10, entry);
        let mut buf = Vec::new();
        let mut at = 0u64;
        loop {
            let frame = match read_frame(&mut reader, &mut buf) {
                Ok(Some(())) => format::decode_frame(&buf),
                Ok(None) => break,
                Err(e) => {
                    r.findings.push(BundleFinding {
                        file: rel.into(),
                        problem: format!("unreadable frame at offset {at}: {e}"),
                    });
                    break;
                }
            };
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    r.findings.push(BundleFinding {
                        file: rel.into(),
                        problem: format!("unreadable frame at offset {at}: {e:?}"),
                    });
                    break;
                }
            };
            *counter += 1;
            if proved.get(&frame.seq) != Some(&frame.leaf()) {
                r.findings.push(BundleFinding {
                    file: rel.into(),
                    problem: format!("record seq {} at offset {at}: no valid inclusion proof in the signed tree head", frame.seq),
                });
            }
            at += frame.len as u64;
        }
        Ok(())
    })?;
    (r.records, r.audit_records) = (records, audit_records);
    for name in [names::RECORDS_BIN, names::AUDIT_BIN] {
        if !seen.contains(name) {
            r.findings.push(BundleFinding {
                file: name.into(),
                problem: "missing".into(),
            });
        }
    }

    // 4. Earlier signed heads are prefixes of this one (the log only grew).
    for line in get(names::CONSISTENCY)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let old = v["old_head"]
            .as_str()
            .zip(v["old_signature"].as_str().and_then(hex_sig))
            .and_then(|(m, s)| SignedTreeHead::parse(m.as_bytes(), s));
        let proof = hashes(&v["proof"]);
        let ok = old.as_ref().is_some_and(|o| {
            o.verify_signature(&key)
                && proof.as_ref().is_some_and(|p| {
                    merkle::verify_consistency(
                        o.tree_size,
                        head.tree_size,
                        &o.root_hash,
                        &head.root_hash,
                        p,
                    )
                })
        });
        if !ok {
            r.findings.push(BundleFinding {
                file: names::CONSISTENCY.into(),
                problem: format!(
                    "earlier head of size {} is not consistent with the signed tree head",
                    v["old_size"]
                ),
            });
        }
    }
    Ok(())
}

fn hex_sig(s: &str) -> Option<[u8; 64]> {
    hex::decode(s).ok()?.try_into().ok()
}

fn hashes(v: &serde_json::Value) -> Option<Vec<Hash>> {
    v.as_array()?
        .iter()
        .map(|h| hex::decode(h.as_str()?).ok()?.try_into().ok())
        .collect()
}

fn hash(v: &serde_json::Value) -> Option<Hash> {
    hex::decode(v.as_str()?).ok()?.try_into().ok()
}

/// Reads the next record frame of a `.bin` file into `buf`; `None` at its end.
fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<Option<()>> {
    buf.resize(format::FRAME_PREFIX, 0);
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let entry_len = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    if entry_len > format::MAX_ENTRY_LEN {
        return Err(std::io::Error::other("record length out of range"));
    }
    buf.resize(format::FRAME_OVERHEAD + entry_len, 0);
    r.read_exact(&mut buf[format::FRAME_PREFIX..])?;
    Ok(Some(()))
}

fn proof_ok(p: &serde_json::Value, leaf: &Hash, seq: u64, head: &SignedTreeHead) -> bool {
    let Some(path) = hashes(&p["audit_path"]) else {
        return false;
    };
    p["tree_size"].as_u64() == Some(head.tree_size)
        && merkle::verify_inclusion(leaf, seq, head.tree_size, &path, &head.root_hash)
}
