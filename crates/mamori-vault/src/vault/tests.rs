use super::*;
use chrono::TimeZone;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

fn cfg(dir: &Path) -> VaultConfig {
    VaultConfig {
        checkpoint_every_records: 10,
        checkpoint_every_secs: 60,
        segment_max_bytes: 1024,
        ..VaultConfig::new(dir)
    }
}

fn rec(payload: &[u8]) -> RecordInput<'_> {
    RecordInput {
        source: "udp://10.0.0.1:514",
        received_at: t(0),
        payload,
    }
}

#[test]
fn append_assigns_sequential_seqs_and_rolls_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cfg(dir.path()).open(key(), t(0)).unwrap();
    let mut last_segment = 0;
    for i in 0..50u64 {
        let r = v
            .append(&rec(format!("line {i}").as_bytes()), t(0))
            .unwrap();
        assert_eq!(r.seq, i);
        assert!(r.segment >= last_segment);
        last_segment = r.segment;
    }
    assert!(last_segment >= 2, "small segments should roll over");
    assert_eq!(
        v.last_head().unwrap().tree_size,
        50,
        "checkpoint every 10 records"
    );
    v.close(t(1)).unwrap();
    let report = crate::verify(dir.path(), &key().verifying_key()).unwrap();
    assert!(report.is_intact(), "{:#?}", report.findings);
    assert_eq!(report.records, 50);
}

#[test]
fn checkpoint_is_time_driven_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cfg(dir.path()).open(key(), t(0)).unwrap();
    v.append(&rec(b"a"), t(0)).unwrap();
    v.append(&rec(b"b"), t(10)).unwrap();
    assert!(v.last_head().is_none());
    assert!(v.maybe_checkpoint(t(30)).unwrap().is_none());
    assert_eq!(v.maybe_checkpoint(t(61)).unwrap().unwrap().tree_size, 2);
    // A clock going backwards never makes heads go backwards.
    v.append(&rec(b"c"), t(0)).unwrap();
    let h = v.checkpoint(t(-100)).unwrap();
    assert_eq!(h.timestamp, t(61));
}

#[test]
fn reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cfg(dir.path()).open(key(), t(0)).unwrap();
    for i in 0..25u64 {
        v.append(&rec(&i.to_be_bytes()), t(0)).unwrap();
    }
    drop(v); // no close: 5 records unsigned
    let mut v = cfg(dir.path()).open(key(), t(1)).unwrap();
    assert!(v.recoveries().is_empty());
    assert_eq!(v.tree_size(), 25);
    assert_eq!(v.append(&rec(b"x"), t(1)).unwrap().seq, 25);
    v.close(t(2)).unwrap();
    assert!(crate::verify(dir.path(), &key().verifying_key())
        .unwrap()
        .is_intact());
}

#[test]
fn reopening_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cfg(dir.path()).open(key(), t(0)).unwrap();
    v.append(&rec(b"a"), t(0)).unwrap();
    v.close(t(0)).unwrap();
    let other = SigningKey::from_bytes(&[6; 32]);
    assert!(matches!(
        cfg(dir.path()).open(other, t(0)),
        Err(Error::KeyMismatch { .. })
    ));
}

#[test]
fn torn_tail_is_quarantined_audited_then_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cfg(dir.path()).open(key(), t(0)).unwrap();
    for i in 0..3u64 {
        v.append(&rec(&i.to_be_bytes()), t(0)).unwrap();
    }
    v.close(t(0)).unwrap();
    let seg = dir.path().join("segments/00000000.seg");
    let good_len = fs::metadata(&seg).unwrap().len();
    // A crash mid-write leaves the first bytes of a frame.
    let mut torn = Vec::new();
    let e = EntryRef {
        seq: 3,
        kind: RecordKind::Event,
        received_at_ns: 0,
        source: "s",
        payload: b"never acknowledged",
    };
    encode_frame(&e, &[0; 32], &mut torn);
    torn.truncate(21);
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&torn)
        .unwrap();

    let report = crate::verify(dir.path(), &key().verifying_key()).unwrap();
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    assert_eq!(report.findings[0].kind, crate::FindingKind::TornTail);
    assert_eq!(report.findings[0].offset, Some(good_len));

    let v = cfg(dir.path()).open(key(), t(5)).unwrap();
    let r = &v.recoveries()[0];
    assert_eq!(
        (r.file.as_str(), r.offset, r.len),
        ("segments/00000000.seg", good_len, 21)
    );
    assert_eq!(r.audit_seq, 3);
    assert_eq!(fs::read(dir.path().join(&r.quarantined_as)).unwrap(), torn);
    assert_eq!(
        v.last_head().unwrap().tree_size,
        4,
        "recovery is signed at once"
    );
    drop(v);
    assert!(crate::verify(dir.path(), &key().verifying_key())
        .unwrap()
        .is_intact());
    let mut audit = Vec::new();
    for_each_record(dir.path(), |_, _, f, _| {
        if f.kind() == Some(RecordKind::Audit) {
            audit.push(AuditEntry::from_payload(f.payload).unwrap());
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, AuditAction::VaultRecovery);
    assert!(audit[0].detail.starts_with(&format!(
        "recovered torn tail at segments/00000000.seg offset {good_len}, 21 bytes"
    )));
}

#[test]
fn pending_quarantine_from_a_crashed_recovery_is_audited_on_next_open() {
    let dir = tempfile::tempdir().unwrap();
    cfg(dir.path())
        .open(key(), t(0))
        .unwrap()
        .close(t(0))
        .unwrap();
    let q = dir.path().join(QUARANTINE_DIR);
    fs::create_dir_all(&q).unwrap();
    fs::write(q.join("segments~00000000.seg@99.1.0.pending"), b"xyz").unwrap();
    let v = cfg(dir.path()).open(key(), t(1)).unwrap();
    assert_eq!(v.recoveries().len(), 1);
    assert_eq!(v.recoveries()[0].offset, 99);
    assert!(q.join("segments~00000000.seg@99.1.0.bin").exists());
}

#[test]
fn torn_head_frame_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cfg(dir.path()).open(key(), t(0)).unwrap();
    v.append(&rec(b"a"), t(0)).unwrap();
    v.close(t(0)).unwrap();
    let heads = dir.path().join(HEADS_FILE);
    OpenOptions::new()
        .append(true)
        .open(&heads)
        .unwrap()
        .write_all(b"MVH1\0\0")
        .unwrap();
    let v = cfg(dir.path()).open(key(), t(1)).unwrap();
    assert_eq!(v.recoveries()[0].file, HEADS_FILE);
    drop(v);
    assert!(crate::verify(dir.path(), &key().verifying_key())
        .unwrap()
        .is_intact());
}

#[test]
fn oversized_records_are_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cfg(dir.path()).open(key(), t(0)).unwrap();
    let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
    assert!(matches!(
        v.append(&rec(&big), t(0)),
        Err(Error::RecordTooLarge { .. })
    ));
    assert_eq!(v.append(&rec(b"ok"), t(0)).unwrap().seq, 0);
}

#[test]
fn status_reads_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = cfg(dir.path()).open(key(), t(0)).unwrap();
    for _ in 0..12 {
        v.append(&rec(b"a"), t(0)).unwrap();
    }
    drop(v);
    let s = read_status(dir.path()).unwrap();
    assert_eq!(s.tree_size, 12);
    assert_eq!(s.unsigned_records, 2);
}
