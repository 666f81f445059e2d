use chrono::{Duration, TimeZone};

use super::*;

fn rec(name: &str, started: DateTime<Utc>, status: CheckStatus) -> CheckRecord {
    CheckRecord {
        name: name.into(),
        kind: "restic".into(),
        started,
        finished: started + Duration::seconds(3),
        status,
        findings: vec![Finding::new(
            "restic.snapshot_stale",
            "the latest snapshot is 3 days old",
            "最新のスナップショットは3日前のものです",
        )],
        details: serde_json::json!({"snapshots": 4, "total_size": 1234}),
    }
}

#[test]
fn records_survive_reopen_and_latest_is_newest() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
    {
        let h = History::open(dir.path()).unwrap();
        h.record(&rec("nas", t0, CheckStatus::Passed)).unwrap();
        h.record(&rec("nas", t0 + Duration::days(1), CheckStatus::Failed))
            .unwrap();
        h.record(&rec("other", t0 + Duration::days(2), CheckStatus::Warning))
            .unwrap();
    }
    assert!(dir.path().join(HISTORY_FILE).exists());
    let h = History::open(dir.path()).unwrap();
    let latest = h.latest("nas").unwrap().unwrap();
    assert_eq!(
        latest,
        rec("nas", t0 + Duration::days(1), CheckStatus::Failed)
    );
    assert_eq!(h.latest("missing").unwrap(), None);
    assert_eq!(h.recent("nas", 10).unwrap().len(), 2);
    assert_eq!(h.recent("nas", 1).unwrap()[0].status, CheckStatus::Failed);
}

#[test]
fn between_is_half_open_and_ordered() {
    let h = History::open_in_memory().unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let t1 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    h.record(&rec("b", t1, CheckStatus::Passed)).unwrap();
    h.record(&rec("a", t0 + Duration::days(3), CheckStatus::Passed))
        .unwrap();
    h.record(&rec("a", t0, CheckStatus::Failed)).unwrap();
    h.record(&rec("a", t0 - Duration::seconds(1), CheckStatus::Passed))
        .unwrap();
    let got = h.between(t0, t1).unwrap();
    assert_eq!(
        got.iter().map(|r| r.started).collect::<Vec<_>>(),
        vec![t0, t0 + Duration::days(3)]
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(History::open(dir.path()).unwrap());
    let c = Connection::open(dir.path().join(HISTORY_FILE)).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let err = History::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}
