//! Seal, reopen, verify; RFC 9162 inclusion and consistency proofs against the stored heads.

use std::path::Path;

use mamori_vault::format::{self, decode_frame, frame_ranges};
use mamori_vault::merkle::{verify_consistency, verify_inclusion, MerkleTree};
use mamori_vault::{verify, AuditAction, AuditEntry, RecordInput, SignedTreeHead};

use crate::common::*;

fn leaves(dir: &Path) -> Vec<[u8; 32]> {
    let mut names: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|n| {
            let b = std::fs::read(n).unwrap();
            frame_ranges(&b)
                .into_iter()
                .map(move |r| decode_frame(&b[r]).unwrap().leaf())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn heads(dir: &Path) -> Vec<SignedTreeHead> {
    let b = std::fs::read(dir.join("heads.log")).unwrap();
    let mut at = format::HEADS_HEADER_LEN;
    let mut out = Vec::new();
    while at < b.len() {
        let (msg, sig, n) = format::decode_head_frame(&b[at..]).unwrap();
        out.push(SignedTreeHead::parse(msg, sig).unwrap());
        at += n;
    }
    out
}

#[test]
fn seal_reopen_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = small_config(dir.path()).open(key(), t(0)).unwrap();
    fill(&mut v, 120, u64::MAX);
    drop(v); // 20 records after the last head
    let report = verify(dir.path(), &key().verifying_key()).unwrap();
    assert!(report.is_intact(), "{:#?}", report.findings);
    assert_eq!((report.records, report.unsigned_records), (120, 20));

    let mut v = small_config(dir.path()).open(key(), t(200)).unwrap();
    assert_eq!(v.tree_size(), 120);
    let big = vec![7u8; 3 << 20]; // larger than one read chunk
    v.append(
        &RecordInput {
            source: "file:/big",
            received_at: t(200),
            payload: &big,
        },
        t(200),
    )
    .unwrap();
    v.append_audit(
        &AuditEntry::new(
            t(201),
            "analyst-b",
            AuditAction::ResponseAction,
            "host:web01",
            "isolated host",
        ),
        t(201),
    )
    .unwrap();
    v.close(t(202)).unwrap();
    let report = verify(dir.path(), &key().verifying_key()).unwrap();
    assert!(report.is_intact(), "{:#?}", report.findings);
    assert_eq!((report.records, report.unsigned_records), (122, 0));
    assert!(report.bytes > 3 << 20);
}

#[test]
fn every_head_has_inclusion_and_consistency_proofs() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 230, u64::MAX);
    let tree = MerkleTree::from_leaves(leaves(dir.path()));
    let hs = heads(dir.path());
    assert!(hs.len() >= 3);
    for h in &hs {
        assert!(h.verify_signature(&key().verifying_key()));
        assert_eq!(
            tree.root(h.tree_size),
            Some(h.root_hash),
            "head {}",
            h.tree_size
        );
        for i in [0, h.tree_size / 2, h.tree_size - 1] {
            let p = tree.inclusion_proof(i, h.tree_size).unwrap();
            assert!(verify_inclusion(
                tree.leaf(i).unwrap(),
                i,
                h.tree_size,
                &p,
                &h.root_hash
            ));
        }
    }
    for w in hs.windows(2) {
        let p = tree
            .consistency_proof(w[0].tree_size, w[1].tree_size)
            .unwrap();
        assert!(verify_consistency(
            w[0].tree_size,
            w[1].tree_size,
            &w[0].root_hash,
            &w[1].root_hash,
            &p
        ));
    }
}

#[test]
fn wrong_public_key_fails_every_head() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 50, u64::MAX);
    let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    let report = verify(dir.path(), &other).unwrap();
    assert!(report.count(mamori_vault::FindingKind::BadSignature) >= 1);
}

/// One writer at a time: a second open is refused while the first is open, and allowed once
/// it is closed. The sealer's resume point is read back from the records themselves.
#[test]
fn single_writer_lock_and_last_store_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    let mut v = small_config(&dir).open(key(), t(0)).unwrap();
    assert_eq!(v.last_store_seq().unwrap(), None);
    match small_config(&dir).open(key(), t(0)) {
        Err(mamori_vault::Error::InUse { .. }) => {}
        other => panic!("a second writer must be refused, got {other:?}"),
    }
    for seq in [1u64, 2, 3] {
        let src = mamori_vault::event_source("tcp://10.0.0.5:40000", seq);
        v.append(
            &RecordInput {
                source: &src,
                received_at: t(seq as i64),
                payload: b"line",
            },
            t(seq as i64),
        )
        .unwrap();
    }
    // Records without a store seq (sealed by `mamori vault seal`) and audit records after them
    // do not move the resume point.
    v.append(
        &RecordInput {
            source: "stdin",
            received_at: t(4),
            payload: b"x",
        },
        t(4),
    )
    .unwrap();
    v.append_audit(
        &AuditEntry::new(
            t(5),
            "alice",
            AuditAction::AnalystNote,
            "incident:1",
            "note",
        ),
        t(5),
    )
    .unwrap();
    assert_eq!(v.last_store_seq().unwrap(), Some(3));
    v.close(t(6)).unwrap();
    let v = small_config(&dir).open(key(), t(7)).unwrap();
    assert_eq!(v.last_store_seq().unwrap(), Some(3));
    assert!(verify(&dir, &key().verifying_key()).unwrap().is_intact());
}
