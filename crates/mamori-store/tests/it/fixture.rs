//! A frozen format-v1 event log must keep reading. Regenerate (only when the format version
//! changes, with a new directory) with `MAMORI_STORE_WRITE_FIXTURE=1`.

use std::path::Path;

use mamori_store::testsuite::{assert_same_event, ssh_event, t, windows_event};
use mamori_store::{EmbeddedConfig, EventStore, FsyncPolicy, SearchRequest};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1");

fn events() -> Vec<mamori_event::Event> {
    let mut bad = ssh_event(2, "bob", "failure", "198.51.100.7", Some(t(2)));
    bad.raw = b"\xff\xfeinvalid utf-8".to_vec().into_boxed_slice();
    vec![
        ssh_event(0, "alice", "failure", "203.0.113.5", Some(t(0))),
        ssh_event(1, "alice", "success", "203.0.113.5", Some(t(1))),
        bad,
        windows_event(3, r"C:\Windows\System32\vssadmin.exe", None),
    ]
}

#[test]
fn frozen_v1_log_still_reads() {
    if std::env::var_os("MAMORI_STORE_WRITE_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(FIXTURE);
        let s = EmbeddedConfig {
            fsync: FsyncPolicy::Always,
            ..EmbeddedConfig::new(FIXTURE)
        }
        .open()
        .unwrap();
        let ev = events();
        s.append_at(&ev[..2], t(10)).unwrap();
        s.append_at(&ev[2..], t(11)).unwrap();
        s.close().unwrap();
        // Only the log is frozen: the index is a cache and is rebuilt.
        std::fs::remove_dir_all(Path::new(FIXTURE).join("index")).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    for e in std::fs::read_dir(Path::new(FIXTURE).join("wal")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, wal.join(p.file_name().unwrap())).unwrap();
    }
    let s = EmbeddedConfig::new(dir.path()).open().unwrap();
    assert!(s.open_report().recoveries.is_empty());
    assert_eq!(s.open_report().reindexed, 4);
    for (i, e) in events().iter().enumerate() {
        let got = s.get(i as u64 + 1).unwrap().unwrap();
        assert_eq!(got.received_at, if i < 2 { t(10) } else { t(11) });
        assert_same_event(&got.event, e, "fixture");
    }
    let r = s
        .search(&SearchRequest::new(
            "user.name:alice AND event.outcome:failure",
        ))
        .unwrap();
    assert_eq!(r.hits.iter().map(|h| h.seq).collect::<Vec<_>>(), [1]);
}
