//! `verify_bundle()`: check an evidence bundle offline, reading the tar in memory and never
//! extracting it (so a hostile bundle cannot write anywhere).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
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

/// Verify the bundle at `path`. With `expected_key`, the bundle's key must be that key; without
/// it, the bundle's own key is used and reported (weaker: say so to the user).
pub fn verify_bundle(path: &Path, expected_key: Option<&VerifyingKey>) -> Result<BundleReport> {
    let mut findings = Vec::new();
    let mut bad = |file: &str, problem: String| {
        findings.push(BundleFinding {
            file: file.to_string(),
            problem,
        })
    };
    let f = File::open(path).at(path)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(f));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
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
        if files.len() >= MAX_BUNDLE_FILES {
            bad("-", "too many files".into());
            break;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).at(path)?;
        if files.insert(rel.clone(), bytes).is_some() {
            bad(&rel, "appears twice in the archive".into());
        }
    }
    let mut report = BundleReport {
        findings,
        files: files.len(),
        records: 0,
        audit_records: 0,
        tree_size: None,
        root_hash: None,
        key_fingerprint: None,
        key_from_bundle: expected_key.is_none(),
    };
    check_contents(&files, expected_key, &mut report);
    Ok(report)
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
    files: &BTreeMap<String, Vec<u8>>,
    expected_key: Option<&VerifyingKey>,
    r: &mut BundleReport,
) {
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
        return;
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
    for (name, bytes) in files {
        if name == names::MANIFEST || name == names::MANIFEST_SIG {
            continue;
        }
        match listed.remove(name) {
            None => bad(name, "not listed in the manifest".into()),
            Some(h) if h != hex::encode(Sha256::digest(bytes)) => bad(
                name,
                format!(
                    "SHA-256 mismatch (manifest {h}, file {})",
                    hex::encode(Sha256::digest(bytes))
                ),
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
            return;
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
        return;
    };
    if !head.verify_signature(&key) {
        bad(
            names::HEAD_SIG,
            "tree head signature does not verify with the key".into(),
        );
    }
    r.tree_size = Some(head.tree_size);
    r.root_hash = Some(hex::encode(head.root_hash));

    // 3. Every record has a valid inclusion proof in the signed tree.
    let mut proofs: HashMap<u64, serde_json::Value> = HashMap::new();
    for line in get(names::INCLUSION)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
        .lines()
    {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                if let Some(seq) = v["seq"].as_u64() {
                    proofs.insert(seq, v);
                }
            }
            Err(e) => bad(names::INCLUSION, format!("unreadable line: {e}")),
        }
    }
    for (name, counter) in [
        (names::RECORDS_BIN, &mut r.records),
        (names::AUDIT_BIN, &mut r.audit_records),
    ] {
        let Some(bytes) = files.get(name) else {
            r.findings.push(BundleFinding {
                file: name.into(),
                problem: "missing".into(),
            });
            continue;
        };
        let mut at = 0;
        while at < bytes.len() {
            let frame = match format::decode_frame(&bytes[at..]) {
                Ok(f) => f,
                Err(e) => {
                    r.findings.push(BundleFinding {
                        file: name.into(),
                        problem: format!("unreadable frame at offset {at}: {e:?}"),
                    });
                    break;
                }
            };
            *counter += 1;
            let leaf = frame.leaf();
            if !proof_ok(proofs.get(&frame.seq), &leaf, frame.seq, &head) {
                r.findings.push(BundleFinding {
                    file: name.into(),
                    problem: format!("record seq {} at offset {at}: no valid inclusion proof in the signed tree head", frame.seq),
                });
            }
            at += frame.len;
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

fn proof_ok(p: Option<&serde_json::Value>, leaf: &Hash, seq: u64, head: &SignedTreeHead) -> bool {
    let Some(p) = p else { return false };
    let Some(path) = hashes(&p["audit_path"]) else {
        return false;
    };
    p["tree_size"].as_u64() == Some(head.tree_size)
        && merkle::verify_inclusion(leaf, seq, head.tree_size, &path, &head.root_hash)
}
