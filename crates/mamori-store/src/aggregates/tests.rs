use super::*;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn hour(source: &str, kind: &str, at: &str, events: u64) -> SourceHour {
    SourceHour {
        source: source.into(),
        kind: kind.into(),
        hour: t(at),
        events,
    }
}

fn addr(ip: &str, day: &str, events: u64, fail: u64, ok: u64, first: &str) -> AddressDay {
    AddressDay {
        ip: ip.parse().unwrap(),
        day: d(day),
        events,
        auth_failures: fail,
        auth_successes: ok,
        first_seen: t(first),
    }
}

#[test]
fn counts_add_up_and_hours_are_truncated() {
    let s = SqliteAlertStore::open_in_memory().unwrap();
    s.add_aggregates(
        &[
            hour("web1", "syslog", "2026-11-03T10:00:00Z", 5),
            hour("web1", "syslog", "2026-11-03T11:00:00Z", 1),
        ],
        &[],
    )
    .unwrap();
    // A time inside the hour lands in that hour.
    s.add_aggregates(&[hour("web1", "syslog", "2026-11-03T10:42:17Z", 3)], &[])
        .unwrap();
    let got = s
        .source_hours(t("2026-11-03T00:00:00Z"), t("2026-11-04T00:00:00Z"))
        .unwrap();
    assert_eq!(
        got,
        vec![
            hour("web1", "syslog", "2026-11-03T10:00:00Z", 8),
            hour("web1", "syslog", "2026-11-03T11:00:00Z", 1),
        ]
    );
}

#[test]
fn source_hours_range_is_half_open_and_keeps_kinds_apart() {
    let s = SqliteAlertStore::open_in_memory().unwrap();
    s.add_aggregates(
        &[
            hour("a", "syslog", "2026-11-03T09:00:00Z", 1),
            hour("a", "syslog", "2026-11-03T10:00:00Z", 2),
            hour("a", "http", "2026-11-03T10:00:00Z", 7),
            hour("b", "tail", "2026-11-03T11:00:00Z", 4),
        ],
        &[],
    )
    .unwrap();
    let got = s
        .source_hours(t("2026-11-03T10:00:00Z"), t("2026-11-03T11:00:00Z"))
        .unwrap();
    assert_eq!(
        got,
        vec![
            hour("a", "http", "2026-11-03T10:00:00Z", 7),
            hour("a", "syslog", "2026-11-03T10:00:00Z", 2),
        ]
    );
    // `from` inside an hour excludes that hour.
    let got = s
        .source_hours(t("2026-11-03T10:30:00Z"), t("2026-11-04T00:00:00Z"))
        .unwrap();
    assert_eq!(got, vec![hour("b", "tail", "2026-11-03T11:00:00Z", 4)]);
}

#[test]
fn address_days_add_up_and_keep_the_earliest_first_seen() {
    let s = SqliteAlertStore::open_in_memory().unwrap();
    s.add_aggregates(
        &[],
        &[
            addr(
                "203.0.113.7",
                "2026-11-01",
                10,
                4,
                1,
                "2026-11-01T08:00:00Z",
            ),
            addr("2001:db8::1", "2026-11-01", 1, 0, 0, "2026-11-01T09:00:00Z"),
        ],
    )
    .unwrap();
    s.add_aggregates(
        &[],
        &[
            addr("203.0.113.7", "2026-11-01", 5, 2, 0, "2026-11-01T07:00:00Z"),
            addr("203.0.113.7", "2026-11-02", 1, 0, 1, "2026-11-02T00:00:01Z"),
            addr(
                "198.51.100.1",
                "2026-12-01",
                1,
                0,
                0,
                "2026-12-01T00:00:00Z",
            ),
        ],
    )
    .unwrap();
    // Both ends inclusive.
    let got = s.address_days(d("2026-11-01"), d("2026-11-30")).unwrap();
    assert_eq!(
        got,
        vec![
            addr("2001:db8::1", "2026-11-01", 1, 0, 0, "2026-11-01T09:00:00Z"),
            addr(
                "203.0.113.7",
                "2026-11-01",
                15,
                6,
                1,
                "2026-11-01T07:00:00Z"
            ),
            addr("203.0.113.7", "2026-11-02", 1, 0, 1, "2026-11-02T00:00:01Z"),
        ]
    );
    assert_eq!(
        s.address_days(d("2026-12-01"), d("2026-12-01"))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn seen_times_and_through_seq_are_kept_with_the_counts() {
    let s = SqliteAlertStore::open_in_memory().unwrap();
    assert_eq!(s.aggregates_through().unwrap(), 0);
    let seen = |first: &str, last: &str| SourceSeen {
        source: "fw".into(),
        kind: "syslog".into(),
        first_seen: t(first),
        last_seen: t(last),
    };
    s.record_aggregates(
        &[],
        &[],
        &[seen("2026-11-01T10:00:00Z", "2026-11-01T10:05:00Z")],
        Some(42),
    )
    .unwrap();
    s.record_aggregates(
        &[],
        &[],
        &[seen("2026-11-01T10:01:00Z", "2026-11-01T12:00:00Z")],
        Some(99),
    )
    .unwrap();
    assert_eq!(
        s.sources_seen().unwrap(),
        vec![seen("2026-11-01T10:00:00Z", "2026-11-01T12:00:00Z")]
    );
    assert_eq!(s.aggregates_through().unwrap(), 99);
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let s = SqliteAlertStore::open_in_memory().unwrap();
    let long = "x".repeat(MAX_SOURCE_LEN + 1);
    let err = s
        .add_aggregates(
            &[
                hour("ok", "syslog", "2026-11-03T10:00:00Z", 1),
                hour(&long, "syslog", "2026-11-03T10:00:00Z", 1),
            ],
            &[],
        )
        .unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    let err = s
        .add_aggregates(
            &[],
            &[addr(
                "203.0.113.7",
                "2026-11-01",
                u64::MAX,
                0,
                0,
                "2026-11-01T00:00:00Z",
            )],
        )
        .unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    assert!(s
        .source_hours(t("2000-01-01T00:00:00Z"), t("2100-01-01T00:00:00Z"))
        .unwrap()
        .is_empty());
    assert!(s
        .address_days(d("2000-01-01"), d("2100-01-01"))
        .unwrap()
        .is_empty());
}

#[test]
fn aggregates_survive_reopening_and_prune_removes_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.db");
    {
        let s = SqliteAlertStore::open(&p).unwrap();
        s.add_aggregates(
            &[
                hour("a", "syslog", "2026-10-01T10:00:00Z", 3),
                hour("a", "syslog", "2026-11-01T10:00:00Z", 4),
            ],
            &[
                addr("203.0.113.7", "2026-10-01", 1, 0, 0, "2026-10-01T00:00:00Z"),
                addr("203.0.113.7", "2026-11-01", 2, 0, 0, "2026-11-01T00:00:00Z"),
            ],
        )
        .unwrap();
    }
    let s = SqliteAlertStore::open(&p).unwrap();
    assert_eq!(s.prune_aggregates(t("2026-10-15T00:00:00Z")).unwrap(), 2);
    let all = s
        .source_hours(t("2000-01-01T00:00:00Z"), t("2100-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(all, vec![hour("a", "syslog", "2026-11-01T10:00:00Z", 4)]);
    let all = s.address_days(d("2000-01-01"), d("2100-01-01")).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].events, 2);
}

/// A version-1 database (before aggregates) opens, gains the tables and keeps its alerts.
#[test]
fn a_version_1_database_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.db");
    {
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch(
            "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             INSERT INTO kv VALUES ('k', x'01');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let s = SqliteAlertStore::open(&p).unwrap();
    use crate::AlertStore;
    assert_eq!(s.kv_get("k").unwrap(), Some(vec![1]));
    s.add_aggregates(&[hour("a", "syslog", "2026-11-01T10:00:00Z", 1)], &[])
        .unwrap();
    let v: i64 = rusqlite::Connection::open(&p)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, crate::SQLITE_SCHEMA_VERSION);
}
