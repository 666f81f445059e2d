//! What only the SQLite backend has: its schema versions, its file, its rows. The behaviour
//! shared with every backend is `crate::testsuite`, run in `tests/it`.

use std::path::PathBuf;

use rusqlite::Connection;

use super::*;

use crate::testsuite::{alert, t};

fn file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.sqlite");
    (dir, path)
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn fresh_database_is_at_the_current_schema_version() {
    let (_dir, path) = file();
    drop(CaseStore::open(&path).unwrap());
    assert_eq!(user_version(&path), SCHEMA_VERSION);
}

#[test]
fn an_in_memory_store_groups_like_a_file() {
    let s = CaseStore::open_in_memory().unwrap();
    let (id, o, _) = s
        .ingest_alert(&alert(1, 0, Level::High, &[("user.name", "x")]), t(0))
        .unwrap();
    assert_eq!(o, Outcome::Created);
    let (j, o, _) = s
        .ingest_alert(&alert(2, 1, Level::Low, &[("user.name", "X")]), t(1))
        .unwrap();
    assert_eq!((j, o), (id, Outcome::Joined));
    assert_eq!(s.describe(), ":memory:");
}

#[test]
fn a_newer_schema_is_refused() {
    let (_dir, path) = file();
    drop(CaseStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let e = CaseStore::open(&path).unwrap_err();
    assert!(matches!(e, Error::UnsupportedVersion { found, .. } if found == SCHEMA_VERSION + 1));
    assert!(e.to_string().contains("this build reads up to"), "{e}");
}

#[test]
fn corrupt_documents_are_reported_not_panicked_on() {
    let (_dir, path) = file();
    let s = CaseStore::open(&path).unwrap();
    let (id, ..) = s.ingest_alert(&alert(1, 0, Level::Low, &[]), t(0)).unwrap();
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE incidents SET doc = '{\"nope\": 1}' WHERE id = ?1",
            [id.0],
        )
        .unwrap();
    let e = s.get(id).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("cases.sqlite"), "{e}");
    assert!(s.list(&IncidentFilter::default()).is_err());
}

#[test]
fn forgotten_held_alerts_leave_no_entities_behind() {
    let (_dir, path) = file();
    let s = CaseStore::open(&path).unwrap().with_max_held(3);
    for i in 0..5 {
        let ip = format!("192.0.2.{i}");
        let a = alert(
            i + 1,
            i,
            Level::Low,
            &[("source.ip", &ip), ("host.name", "h")],
        );
        assert!(matches!(s.group_alert(&a, t(i)).unwrap(), Grouped::Held(_)));
    }
    // Counted again with other entities: the old ones go with the old copy.
    let again = alert(5, 4, Level::Low, &[("user.name", "u")]);
    assert!(matches!(
        s.group_alert(&again, t(5)).unwrap(),
        Grouped::Held(_)
    ));
    let c = Connection::open(&path).unwrap();
    let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM held_alerts"), 3);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM held_entities WHERE alert_id NOT IN \
             (SELECT alert_id FROM held_alerts)"
        ),
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM held_entities WHERE alert_id = 5"),
        1
    );
}

#[test]
fn a_schema_1_database_is_upgraded_in_place() {
    let (_dir, path) = file();
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.execute(
            "INSERT INTO incidents (status, phase, severity, kind, created_at_us, updated_at_us, doc) \
             VALUES ('open', '', 0, '', 0, 0, '{}')",
            [],
        )
        .unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
    }
    let s = CaseStore::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_eq!(s.held_count().unwrap(), 0);
    assert_eq!(
        s.count(&IncidentFilter::default()).unwrap(),
        1,
        "the upgrade keeps what was there"
    );
}
