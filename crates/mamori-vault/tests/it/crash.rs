//! SIGKILL during sealing, then restart: nothing acknowledged is missing, a torn tail is
//! reported by verify and recovered (quarantined + audited) by open, and the vault verifies.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use mamori_vault::format::{decode_frame, frame_ranges, RecordKind};
use mamori_vault::{
    verify, AuditAction, AuditEntry, FindingKind, FsyncPolicy, RecordInput, VaultConfig,
};

use crate::common::*;

const CHILD_ENV: &str = "MAMORI_VAULT_CRASH_CHILD_DIR";

fn crash_config(dir: &std::path::Path) -> VaultConfig {
    VaultConfig {
        fsync: FsyncPolicy::Never, // SIGKILL keeps the page cache: acknowledged = written
        checkpoint_every_records: 40,
        checkpoint_every_secs: 3600,
        segment_max_bytes: 256 << 10,
        ..VaultConfig::new(dir)
    }
}

/// Large payloads make it likely that the kill lands inside a write(2).
fn crash_payload(seq: u64) -> Vec<u8> {
    let mut p = format!("crash-test record {seq} ").into_bytes();
    let len = if seq % 5 == 0 {
        48 << 10
    } else {
        200 + (seq as usize * 131) % 4000
    };
    p.resize(len, b'0' + (seq % 10) as u8);
    p
}

/// The child: seals records forever, printing `ack <seq>` after each acknowledgement. Does
/// nothing unless started by the parent test below.
#[test]
fn crash_child_sealer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut v = crash_config(dir.as_ref()).open(key(), t(0)).unwrap();
    let mut out = std::io::stdout().lock();
    loop {
        let seq = v.tree_size();
        if seq % 7 == 3 {
            // A batch of 4 under one write.
            let ps: Vec<Vec<u8>> = (seq..seq + 4).map(crash_payload).collect();
            let recs: Vec<RecordInput<'_>> = ps
                .iter()
                .map(|p| RecordInput {
                    source: "tcp://10.1.1.1:6514",
                    received_at: t(1),
                    payload: p,
                })
                .collect();
            for r in v.append_batch(&recs, t(1)).unwrap() {
                writeln!(out, "ack {}", r.seq).unwrap();
            }
        } else {
            let p = crash_payload(seq);
            let r = v
                .append(
                    &RecordInput {
                        source: "tcp://10.1.1.1:6514",
                        received_at: t(1),
                        payload: &p,
                    },
                    t(1),
                )
                .unwrap();
            writeln!(out, "ack {}", r.seq).unwrap();
        }
        out.flush().unwrap();
    }
}

fn records(dir: &std::path::Path) -> Vec<(u64, u8, Vec<u8>)> {
    let mut names: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let b = std::fs::read(n).unwrap();
        for r in frame_ranges(&b) {
            let f = decode_frame(&b[r]).unwrap();
            out.push((f.seq, f.kind, f.payload.to_vec()));
        }
    }
    out
}

#[test]
fn sigkill_during_sealing_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    let mut torn_seen = 0;
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::crash_child_sealer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = 120 + round * 41;
        let mut n = 0;
        while let Some(Ok(line)) = lines.next() {
            if let Some(s) = line.strip_prefix("ack ") {
                acked.push(s.parse::<u64>().unwrap());
                n += 1;
                if n == target {
                    child.kill().unwrap(); // SIGKILL on Unix
                }
            }
        }
        child.wait().unwrap();
        assert!(n >= target, "child stopped early after {n} acks");

        // Before restart: verify may see a torn tail, and nothing else.
        let report = verify(dir.path(), &key().verifying_key()).unwrap();
        assert!(
            report
                .findings
                .iter()
                .all(|f| f.kind == FindingKind::TornTail),
            "{:#?}",
            report.findings
        );
        let torn = report.count(FindingKind::TornTail);
        torn_seen += torn;

        let v = crash_config(dir.path()).open(key(), t(2)).unwrap();
        assert_eq!(
            v.recoveries().len(),
            torn,
            "every torn tail is recovered and audited"
        );
        v.close(t(2)).unwrap();
        let report = verify(dir.path(), &key().verifying_key()).unwrap();
        assert!(report.is_intact(), "after restart: {:#?}", report.findings);

        let recs = records(dir.path());
        for &seq in &acked {
            let (s, kind, payload) = &recs[seq as usize];
            assert_eq!((*s, *kind), (seq, RecordKind::Event.to_byte()));
            assert_eq!(
                payload,
                &crash_payload(seq),
                "acknowledged seq {seq} intact"
            );
        }
    }
    eprintln!("crash test: {} acknowledged records survived 3 SIGKILLs; {torn_seen} torn tail(s) hit by chance", acked.len());
}

#[test]
fn torn_tail_after_kill_is_reported_then_recovered_with_audit_entry() {
    // The kill above lands inside a write only by chance; make it certain here.
    let dir = tempfile::tempdir().unwrap();
    let mut v = crash_config(dir.path()).open(key(), t(0)).unwrap();
    for seq in 0..10 {
        let p = crash_payload(seq);
        v.append(
            &RecordInput {
                source: "s",
                received_at: t(0),
                payload: &p,
            },
            t(0),
        )
        .unwrap();
    }
    drop(v);
    let seg = dir.path().join("segments/00000000.seg");
    let good = std::fs::metadata(&seg).unwrap().len();
    let mut b = std::fs::read(&seg).unwrap();
    let last = frame_ranges(&b).pop().unwrap();
    let partial = b[last.clone()][..last.len() / 2].to_vec();
    b.extend_from_slice(&partial);
    std::fs::write(&seg, &b).unwrap();

    let report = verify(dir.path(), &key().verifying_key()).unwrap();
    let f = report.first().unwrap();
    assert_eq!(
        (f.kind, f.segment, f.offset),
        (FindingKind::TornTail, Some(0), Some(good))
    );
    assert_eq!(f.found, format!("{} bytes", partial.len()));

    let v = crash_config(dir.path()).open(key(), t(3)).unwrap();
    let r = v.recoveries()[0].clone();
    drop(v);
    assert_eq!((r.offset, r.len), (good, partial.len() as u64));
    let recs = records(dir.path());
    let (_, kind, payload) = &recs[r.audit_seq as usize];
    assert_eq!(*kind, RecordKind::Audit.to_byte());
    let e = AuditEntry::from_payload(payload).unwrap();
    assert_eq!(e.action, AuditAction::VaultRecovery);
    assert!(
        e.detail.contains(&format!(
            "recovered torn tail at segments/00000000.seg offset {good}, {} bytes",
            partial.len()
        )),
        "{}",
        e.detail
    );
    assert!(verify(dir.path(), &key().verifying_key())
        .unwrap()
        .is_intact());
}
