//! Frozen format fixture: a small v1 vault written once and committed under
//! `tests/fixtures/v1/`. It must keep verifying with every later build, and a fresh build from
//! the same inputs must produce the same bytes (so an accidental format change fails here,
//! not in a courtroom).
//!
//! Regenerate only for a deliberate format change (and then add `v2/` beside `v1/`, never
//! replace it):
//! `MAMORI_VAULT_WRITE_FIXTURE=1 cargo test -p mamori-vault --test it fixture::write_fixture -- --ignored`

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use mamori_vault::{
    load_verifying_key, public_key_pem, verify, AuditAction, AuditEntry, FsyncPolicy, RecordInput,
    VaultConfig,
};

use crate::common::{snapshot, t};

/// Fixture key: seed bytes 0x00..0x1f. Test-only, published on purpose.
fn fixture_key() -> SigningKey {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    SigningKey::from_bytes(&seed)
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

/// Expected facts about the committed fixture.
const TREE_SIZE: u64 = 64;
const ROOT_HASH: &str = include_str!("../fixtures/v1/root_hash.txt");

fn write_vault(root: &Path) {
    let cfg = VaultConfig {
        fsync: FsyncPolicy::Never,
        checkpoint_every_records: 16,
        checkpoint_every_secs: 3600,
        segment_max_bytes: 2048,
        ..VaultConfig::new(root.join("vault"))
    };
    let mut v = cfg.open(fixture_key(), t(0)).unwrap();
    v.append_audit(
        &AuditEntry::new(
            t(0),
            "mamori",
            AuditAction::VaultInit,
            "vault",
            "fixture v1",
        ),
        t(0),
    )
    .unwrap();
    for i in 1..TREE_SIZE - 1 {
        let line = format!("<38>Jan  1 00:{:02}:00 host{} sshd[{}]: Accepted publickey for user{} from 192.0.2.{} port 22", i % 60, i % 2, 100 + i, i % 4, i);
        let bin = [0u8, 0xff, 0x0a, i as u8];
        let payload: &[u8] = if i % 10 == 0 { &bin } else { line.as_bytes() };
        let src = if i % 3 == 0 {
            "file:/var/log/auth.log"
        } else {
            "udp://192.0.2.1:514"
        };
        v.append(
            &RecordInput {
                source: src,
                received_at: t(i as i64),
                payload,
            },
            t(i as i64),
        )
        .unwrap();
    }
    v.append_audit(
        &AuditEntry::new(
            t(99),
            "analyst-a",
            AuditAction::AnalystNote,
            "incident:1",
            "fixture note: 日本語 ok",
        ),
        t(99),
    )
    .unwrap();
    v.close(t(100)).unwrap();
    std::fs::write(
        root.join("vault-ed25519.pub"),
        public_key_pem(&fixture_key().verifying_key()),
    )
    .unwrap();
}

#[test]
#[ignore = "writes the committed fixture; run only for a deliberate format change"]
fn write_fixture() {
    if std::env::var("MAMORI_VAULT_WRITE_FIXTURE").is_err() {
        eprintln!(
            "set MAMORI_VAULT_WRITE_FIXTURE=1 to overwrite {}",
            fixture_dir().display()
        );
        return;
    }
    let dir = fixture_dir();
    let _ = std::fs::remove_dir_all(&dir);
    write_vault(&dir);
    let report = verify(&dir.join("vault"), &fixture_key().verifying_key()).unwrap();
    let root = &report.last_head.as_ref().unwrap().root_hash;
    std::fs::write(dir.join("root_hash.txt"), hex::encode(root)).unwrap();
}

#[test]
fn fixture_v1_still_verifies() {
    let dir = fixture_dir();
    // The committed public key, not the in-code seed: this is what an auditor would hold.
    let key = load_verifying_key(&dir.join("vault-ed25519.pub")).unwrap();
    let report = verify(&dir.join("vault"), &key).unwrap();
    assert!(report.is_intact(), "{:#?}", report.findings);
    let head = report.last_head.unwrap();
    assert_eq!(head.tree_size, TREE_SIZE);
    assert_eq!(hex::encode(head.root_hash), ROOT_HASH.trim());
    assert!(report.segments >= 3);
    assert_eq!(report.unsigned_records, 0);
}

#[test]
fn this_build_writes_the_fixture_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    write_vault(tmp.path());
    let mut fresh = snapshot(&tmp.path().join("vault"));
    // The single-writer lock file is empty and not part of the format.
    assert_eq!(
        fresh.remove(std::path::Path::new(mamori_vault::LOCK_FILE)),
        Some(Vec::new())
    );
    let frozen = snapshot(&fixture_dir().join("vault"));
    assert_eq!(
        fresh.keys().collect::<Vec<_>>(),
        frozen.keys().collect::<Vec<_>>()
    );
    for (k, v) in &fresh {
        assert!(
            frozen[k] == *v,
            "{} differs from the frozen v1 fixture: the on-disk format changed",
            k.display()
        );
    }
}
