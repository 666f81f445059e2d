use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use ed25519_dalek::SigningKey;
use mamori_vault::{AuditAction, AuditEntry, FsyncPolicy, RecordInput, Vault, VaultConfig};

/// The fixed test key. Never use a key like this outside tests.
pub(crate) fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

pub(crate) fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_735_689_600 + secs, 0).unwrap() // 2025-01-01T00:00:00Z
}

pub(crate) fn small_config(dir: &Path) -> VaultConfig {
    VaultConfig {
        fsync: FsyncPolicy::Never,
        checkpoint_every_records: 100,
        checkpoint_every_secs: 3600,
        segment_max_bytes: 2048,
        ..VaultConfig::new(dir)
    }
}

/// Deterministic payload of varying length; `variant` changes content but not length.
pub(crate) fn payload(i: u64, variant: u8) -> Vec<u8> {
    let mut p = format!(
        "<34>Jan  1 00:00:{:02} web{:02} sshd[{}]: event {i} v{variant} ",
        i % 60,
        i % 3,
        1000 + i
    )
    .into_bytes();
    p.resize(40 + (i as usize * 37) % 90, b'a' + variant);
    p
}

pub(crate) fn source(i: u64) -> String {
    format!("udp://10.0.0.{}:514", i % 3)
}

/// Seal `n` event records (one audit entry every 50), changing content from `change_from` on.
pub(crate) fn fill(v: &mut Vault, n: u64, change_from: u64) {
    for i in 0..n {
        let p = payload(i, if i >= change_from { 1 } else { 0 });
        let s = source(i);
        if i % 50 == 49 {
            let e = AuditEntry::new(
                t(i as i64),
                "analyst-a",
                AuditAction::AnalystNote,
                "incident:1",
                format!("note {i}"),
            );
            v.append_audit(&e, t(i as i64)).unwrap();
        } else {
            v.append(
                &RecordInput {
                    source: &s,
                    received_at: t(i as i64),
                    payload: &p,
                },
                t(i as i64),
            )
            .unwrap();
        }
    }
}

pub(crate) fn build(dir: &Path, n: u64, change_from: u64) {
    let mut v = small_config(dir).open(key(), t(0)).unwrap();
    fill(&mut v, n, change_from);
    v.close(t(n as i64)).unwrap();
}

/// Every file of a vault directory, by relative path.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["segments", ""] {
        let d = dir.join(sub);
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Make `dir` hold exactly `files` (other files in `segments/` and the root removed).
pub(crate) fn restore(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) {
    for sub in ["segments", ""] {
        for e in fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() && !files.contains_key(p.strip_prefix(dir).unwrap()) {
                fs::remove_file(p).unwrap();
            }
        }
    }
    for (rel, bytes) in files {
        let p = dir.join(rel);
        if fs::read(&p).ok().as_deref() != Some(bytes.as_slice()) {
            fs::write(p, bytes).unwrap();
        }
    }
}

pub(crate) fn segment_names(files: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<PathBuf> {
    files
        .keys()
        .filter(|p| p.starts_with("segments"))
        .cloned()
        .collect()
}
