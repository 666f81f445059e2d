//! SQLite specifics: persistence across reopen, schema version guard.

use mamori_event::Level;
use mamori_store::testsuite::t;
use mamori_store::{AlertFilter, AlertStore, Error, NewAlert, SqliteAlertStore};

#[test]
fn alerts_and_kv_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamori.sqlite");
    let s = SqliteAlertStore::open(&path).unwrap();
    let id = s
        .insert_alert(&NewAlert {
            rule_id: mamori_event::RuleId("r".into()),
            title: "SSH brute force".into(),
            level: Level::High,
            event_time: None,
            received_at: t(0),
            event_seqs: vec![3],
            group_key: None,
            dedup_key: Some("k".into()),
            details: serde_json::json!({}),
        })
        .unwrap()
        .id();
    s.kv_put("correlation/state", b"blob").unwrap();
    drop(s);
    let s = SqliteAlertStore::open(&path).unwrap();
    assert_eq!(s.get_alert(id).unwrap().unwrap().title, "SSH brute force");
    assert_eq!(s.list_alerts(&AlertFilter::default()).unwrap().len(), 1);
    assert_eq!(
        s.kv_get("correlation/state").unwrap().as_deref(),
        Some(&b"blob"[..])
    );
}

#[test]
fn newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamori.sqlite");
    drop(SqliteAlertStore::open(&path).unwrap());
    let c = rusqlite_set_version(&path, 99);
    assert!(c);
    assert!(matches!(
        SqliteAlertStore::open(&path),
        Err(Error::UnsupportedVersion { found: 99, .. })
    ));
}

/// Bumps `user_version` through SQLite's own file format (header offset 60, big-endian), so the
/// test needs no SQLite client of its own.
fn rusqlite_set_version(path: &std::path::Path, v: u32) -> bool {
    let mut b = std::fs::read(path).unwrap();
    if b.len() < 100 {
        return false;
    }
    b[60..64].copy_from_slice(&v.to_be_bytes());
    std::fs::write(path, b).unwrap();
    true
}

/// Two connections to one file, one merging alerts (read, then write) while the other writes:
/// every insert succeeds. A deferred read-then-write transaction failed at once with "database
/// is locked" whenever the other connection wrote in between (the busy wait does not apply to
/// a read lock upgraded to a write lock), and the server lost that alert.
#[test]
fn merging_alerts_while_another_connection_writes_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let a = SqliteAlertStore::open(&path).unwrap();
    let b = SqliteAlertStore::open(&path).unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..400u32 {
            b.kv_put(&format!("k{}", i % 7), &i.to_le_bytes()).unwrap();
        }
    });
    for i in 0..400u32 {
        let r = a.insert_alert(&NewAlert {
            rule_id: mamori_event::RuleId("r".into()),
            title: "SSH brute force".into(),
            level: Level::Low,
            event_time: None,
            received_at: t(i64::from(i)),
            event_seqs: vec![u64::from(i) + 1],
            group_key: None,
            dedup_key: Some(format!("key{}", i % 5)),
            details: serde_json::json!({}),
        });
        assert!(r.is_ok(), "insert {i}: {r:?}");
    }
    writer.join().unwrap();
    let all = a.list_alerts(&AlertFilter::default()).unwrap();
    assert_eq!(all.len(), 5, "five dedup keys, merged");
}
