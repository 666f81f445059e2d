use super::*;
use crate::vault::{RecordInput, VaultConfig};
use chrono::{TimeZone, Utc};
use ed25519_dalek::SigningKey;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[8; 32])
}

/// A small single-segment vault; returns its segment bytes and frame ranges.
fn vault(dir: &Path, n: u64) -> (PathBuf, Vec<u8>, Vec<std::ops::Range<usize>>) {
    let t = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let mut v = VaultConfig::new(dir).open(key(), t).unwrap();
    for i in 0..n {
        let p = format!("event {i}");
        v.append(
            &RecordInput {
                source: "s",
                received_at: t,
                payload: p.as_bytes(),
            },
            t,
        )
        .unwrap();
    }
    v.close(t).unwrap();
    let seg = dir.join("segments/00000000.seg");
    let b = fs::read(&seg).unwrap();
    let r = crate::format::frame_ranges(&b);
    (seg, b, r)
}

fn kinds(dir: &Path) -> Vec<FindingKind> {
    verify(dir, &key().verifying_key())
        .unwrap()
        .findings
        .iter()
        .map(|f| f.kind)
        .collect()
}

fn splice(b: &[u8], order: &[usize], r: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut out = b[..r[0].start].to_vec();
    for &i in order {
        out.extend_from_slice(&b[r[i].clone()]);
    }
    out
}

#[test]
fn classifications_of_single_edits() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, b, r) = vault(dir.path(), 8);
    let check = |bytes: Vec<u8>, want: &[FindingKind]| {
        fs::write(&seg, &bytes).unwrap();
        let got = kinds(dir.path());
        let record_level: Vec<_> = got
            .iter()
            .copied()
            .filter(|k| *k != FindingKind::HeadMismatch && *k != FindingKind::TruncatedTail)
            .collect();
        assert_eq!(record_level, want, "all findings: {got:?}");
        assert!(!got.is_empty());
    };
    // Untouched.
    fs::write(&seg, &b).unwrap();
    assert!(kinds(dir.path()).is_empty());
    // Payload byte changed.
    let mut m = b.clone();
    m[r[3].end - 33] ^= 1;
    check(m, &[FindingKind::Modified]);
    // Stored chain value changed: one finding, not two.
    let mut m = b.clone();
    m[r[3].end - 1] ^= 1;
    check(m, &[FindingKind::Modified]);
    // Sequence field changed.
    let mut m = b.clone();
    m[r[3].start + 8 + 7] ^= 4;
    check(m, &[FindingKind::Modified]);
    // Deleted, swapped, duplicated, moved.
    check(
        splice(&b, &[0, 1, 2, 4, 5, 6, 7], &r),
        &[FindingKind::Deleted],
    );
    check(
        splice(&b, &[0, 1, 3, 2, 4, 5, 6, 7], &r),
        &[FindingKind::Reordered],
    );
    check(
        splice(&b, &[0, 1, 2, 3, 3, 4, 5, 6, 7], &r),
        &[FindingKind::Inserted],
    );
    check(
        splice(&b, &[0, 1, 5, 2, 3, 4, 5, 6, 7], &r),
        &[FindingKind::Inserted],
    );
    check(
        splice(&b, &[0, 1, 5, 2, 3, 4, 6, 7], &r),
        &[FindingKind::Reordered],
    );
    check(
        splice(&b, &[0, 2, 3, 4, 5, 1, 6, 7], &r),
        &[FindingKind::Reordered],
    );
    // Magic damaged: unreadable bytes, the record inside them is not also "deleted".
    let mut m = b.clone();
    m[r[4].start] ^= 1;
    check(m, &[FindingKind::Corrupt]);
    // Tail cut at a record boundary: only the signed head can tell.
    fs::write(&seg, &b[..r[7].start]).unwrap();
    assert_eq!(kinds(dir.path()), vec![FindingKind::TruncatedTail]);
}

#[test]
fn report_names_segment_offset_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, mut b, r) = vault(dir.path(), 4);
    b[r[2].end - 40] ^= 0x20;
    fs::write(&seg, &b).unwrap();
    let rep = verify(dir.path(), &key().verifying_key()).unwrap();
    let f = rep.first().unwrap();
    assert_eq!(
        (f.kind, f.segment, f.offset, f.seq),
        (
            FindingKind::Modified,
            Some(0),
            Some(r[2].start as u64),
            Some(2)
        )
    );
    assert_eq!(f.found, hex::encode(&b[r[2].end - 32..r[2].end]));
    assert_ne!(f.expected, f.found);
    assert!(f.to_string().contains("segments/00000000.seg offset"));
}
