//! The shared alert-store suite and the PostgreSQL-only guarantees (concurrent writers,
//! idempotent occurrences, migrations) against a real PostgreSQL: `MAMORI_PG_URL`, default
//! `host=127.0.0.1 user=postgres dbname=test` (trust auth). Each check runs in a schema of its
//! own, dropped afterwards, so parallel tests never collide. Without a reachable server the
//! tests say "skipped" and pass.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use mamori_cluster::PgAlertStore;
use mamori_event::{Level, RuleId};
use mamori_store::testsuite::{alert_store_suite, t};
use mamori_store::{AlertFilter, AlertStore, InsertOutcome, NewAlert};

fn url() -> String {
    std::env::var("MAMORI_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test connect_timeout=5".into())
}

/// A fresh schema name: process, counter, time.
fn schema() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000_000
    )
}

/// Drops the schema when the test is done with it (also when it fails).
struct Dropper(String);

impl Drop for Dropper {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&url(), postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0));
        }
    }
}

fn fresh() -> Option<(PgAlertStore, Dropper)> {
    let s = schema();
    match PgAlertStore::open(&url(), &s) {
        Ok(st) => Some((st, Dropper(s))),
        Err(e) => {
            eprintln!("skipped: PostgreSQL not reachable ({e})");
            None
        }
    }
}

fn reachable() -> bool {
    fresh().is_some()
}

#[test]
fn shared_alert_store_suite_passes_on_postgresql() {
    if !reachable() {
        return;
    }
    alert_store_suite(|| fresh().expect("PostgreSQL went away during the suite"));
}

fn alert(dedup: &str, seqs: Vec<u64>) -> NewAlert {
    NewAlert {
        rule_id: RuleId("brute".into()),
        title: "SSH brute force".into(),
        level: Level::High,
        event_time: Some(t(0)),
        received_at: t(1),
        event_seqs: seqs,
        group_key: Some("source.ip=203.0.113.5".into()),
        dedup_key: Some(dedup.into()),
        details: serde_json::json!({"site": "osaka"}),
    }
}

#[test]
fn concurrent_writers_of_one_dedup_key_make_one_alert() {
    let Some((store, _guard)) = fresh() else {
        return;
    };
    let store = Arc::new(store);
    std::thread::scope(|s| {
        for th in 0..4u64 {
            let store = Arc::clone(&store);
            s.spawn(move || {
                for i in 0..10u64 {
                    store
                        .insert_alert(&alert("brute|203.0.113.5|1", vec![th * 100 + i]))
                        .unwrap();
                }
            });
        }
    });
    let all = store.list_alerts(&AlertFilter::default()).unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].count, 40);
    assert_eq!(all[0].event_seqs.len(), 40);
}

#[test]
fn an_occurrence_is_recorded_once() {
    let Some((store, _guard)) = fresh() else {
        return;
    };
    let first = store
        .insert_alert_once(&alert("k", vec![7]), "7|brute")
        .unwrap();
    assert!(matches!(first, Some(InsertOutcome::Created(_))));
    // A redelivered message: the same occurrence changes nothing.
    assert_eq!(
        store
            .insert_alert_once(&alert("k", vec![7]), "7|brute")
            .unwrap(),
        None
    );
    let merged = store
        .insert_alert_once(&alert("k", vec![8]), "8|brute")
        .unwrap();
    assert_eq!(merged, Some(InsertOutcome::Merged(first.unwrap().id())));
    let a = store.get_alert(first.unwrap().id()).unwrap().unwrap();
    assert_eq!((a.count, a.event_seqs.clone()), (2, vec![7, 8]));
    assert_eq!(store.count("alert_occurrences").unwrap(), 2);
    // A redelivery finds the alert its occurrence was recorded as (handed on again).
    assert_eq!(
        store.occurrence_alert("7|brute").unwrap(),
        Some(first.unwrap().id())
    );
    assert_eq!(store.occurrence_alert("9|brute").unwrap(), None);
    // Validation happens before anything is written.
    let mut big = alert("k", vec![9]);
    big.title = "x".repeat(10_000);
    assert!(store.insert_alert_once(&big, "9|brute").is_err());
    assert_eq!(store.count("alert_occurrences").unwrap(), 2);
}

#[test]
fn migrations_are_idempotent_and_a_newer_schema_is_refused() {
    let Some((store, guard)) = fresh() else {
        return;
    };
    store.kv_put("cluster/node/a", b"1").unwrap();
    store.kv_put("cluster/node/b", b"2").unwrap();
    store.kv_put("other", b"3").unwrap();
    assert_eq!(
        store.kv_prefix("cluster/node/").unwrap(),
        vec![
            ("cluster/node/a".to_owned(), b"1".to_vec()),
            ("cluster/node/b".to_owned(), b"2".to_vec())
        ]
    );
    // Opening again (another node starting) keeps the data.
    let again = PgAlertStore::open(&url(), &guard.0).unwrap();
    assert_eq!(again.kv_get("other").unwrap().as_deref(), Some(&b"3"[..]));
    let mut c = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "UPDATE \"{}\".schema_version SET version = 99 WHERE component = 'state'",
        guard.0
    ))
    .unwrap();
    let e = PgAlertStore::open(&url(), &guard.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("99") && e.contains("upgrade"), "{e}");
    // A schema name is never quoted into SQL unchecked.
    assert!(PgAlertStore::open(&url(), "x\"; DROP SCHEMA public; --").is_err());
}

/// The case-store suite (`mamori_cases::testsuite`, which SQLite passes in `mamori-cases`) on
/// PostgreSQL, each check in a schema of its own; and what only PostgreSQL has.
mod cases {
    use mamori_cases::{CaseStore, Error, IncidentFilter, Outcome};
    use mamori_cluster::{open_case_store, PgAlertStore, PgCaseBackend};
    use mamori_event::{Level, RuleId};

    use mamori_store::AlertStore;

    use super::{schema, url, Dropper};

    /// The opener of a fresh schema, or `None` (and "skipped") without a server.
    fn postgres() -> Option<(impl Fn() -> CaseStore, Dropper)> {
        let s = schema();
        match open_case_store(&url(), &s) {
            Ok(first) => {
                drop(first);
                let name = s.clone();
                Some((
                    move || open_case_store(&url(), &name).expect("PostgreSQL went away"),
                    Dropper(s),
                ))
            }
            Err(e) => {
                eprintln!("skipped: PostgreSQL not reachable ({e})");
                None
            }
        }
    }

    mamori_cases::case_store_suite!(postgres);

    fn alert(id: i64) -> mamori_cases::AlertInput {
        mamori_cases::AlertInput {
            alert_id: id,
            rule_id: RuleId("r".into()),
            title: format!("Alert {id}"),
            title_ja: None,
            level: Level::High,
            time: chrono::Utc::now(),
            entities: vec![("host.name".into(), format!("h{id}"))],
            tags: vec![],
            event_seqs: vec![id as u64],
        }
    }

    #[test]
    fn alerts_and_incidents_share_a_schema_and_its_migrations() {
        let Some((open, guard)) = postgres() else {
            return;
        };
        let cases = open();
        // The alert store migrates its own component next to the incidents'.
        let alerts = PgAlertStore::open(&url(), &guard.0).unwrap();
        alerts.kv_put("k", b"v").unwrap();
        let (id, o, _) = cases.ingest_alert(&alert(1), chrono::Utc::now()).unwrap();
        assert_eq!(o, Outcome::Created);
        assert_eq!(cases.get(id).unwrap().alerts.len(), 1);
        assert!(cases.describe().contains(&guard.0));
        let mut c = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
        let versions: Vec<(String, i32)> = c
            .query(
                &format!(
                    "SELECT component, version FROM \"{}\".schema_version ORDER BY component",
                    guard.0
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(
            versions,
            [
                ("cases".to_owned(), mamori_cluster::PG_CASES_SCHEMA_VERSION),
                ("state".to_owned(), mamori_cluster::PG_SCHEMA_VERSION)
            ]
        );
        // A newer incident schema is refused with a hint, and a bad schema name never
        // reaches SQL.
        c.batch_execute(&format!(
            "UPDATE \"{}\".schema_version SET version = 7 WHERE component = 'cases'",
            guard.0
        ))
        .unwrap();
        let e = open_case_store(&url(), &guard.0).unwrap_err().to_string();
        assert!(e.contains("version 7") && e.contains("upgrade"), "{e}");
        assert!(matches!(
            PgCaseBackend::open(&url(), "x\"; DROP SCHEMA public; --"),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn corrupt_documents_are_reported_not_panicked_on() {
        let Some((open, guard)) = postgres() else {
            return;
        };
        let s = open();
        let (id, ..) = s.ingest_alert(&alert(1), chrono::Utc::now()).unwrap();
        let mut c = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
        c.execute(
            &format!(
                "UPDATE \"{}\".incidents SET doc = '{{\"nope\": 1}}' WHERE id = $1",
                guard.0
            ),
            &[&id.0],
        )
        .unwrap();
        let e = s.get(id).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains(&guard.0), "{e}");
        assert!(s.list(&IncidentFilter::default()).is_err());
    }

    #[test]
    fn a_store_is_usable_from_async_tasks() {
        let Some((open, _guard)) = postgres() else {
            return;
        };
        let s = std::sync::Arc::new(open());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        // Called straight from async tasks (no spawn_blocking): the synchronous client
        // never runs on a tokio worker thread.
        let n = rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..4 {
                let s = std::sync::Arc::clone(&s);
                tasks.push(tokio::spawn(async move {
                    s.ingest_alert(&alert(i), chrono::Utc::now()).unwrap();
                    s.count(&IncidentFilter::default()).unwrap()
                }));
            }
            let mut last = 0;
            for t in tasks {
                last = last.max(t.await.unwrap());
            }
            last
        });
        assert_eq!(n, 4);
        drop(rt);
        drop(s); // idle connections close off the runtime, too
    }
}
