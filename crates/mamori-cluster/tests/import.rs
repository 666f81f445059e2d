//! `mamori cluster import` against a real NATS JetStream (a `nats-server` started by the test;
//! "skipped" without it) and a real embedded event store on disk: seqs kept across a retention
//! gap, an interrupted import resumed, a second run a no-op, the embedded directory turned
//! into the first store node, and a stream that holds someone else's events refused.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mamori_cluster::bus::{decode_event, Bus};
use mamori_cluster::collector::PublishingStore;
use mamori_cluster::import::{self, Plan};
use mamori_cluster::store_role::{self, StoreProgress};
use mamori_cluster::{testing, ClusterConfig, SITE_FIELD};
use mamori_event::Interner;
use mamori_store::testsuite::{ssh_event, t};
use mamori_store::{EmbeddedConfig, EmbeddedEventStore, EventStore, FsyncPolicy};

fn cfg(port: u16) -> ClusterConfig {
    serde_json::from_value(serde_json::json!({
        "nats": [format!("nats://127.0.0.1:{port}")],
        "postgres": "unused here",
        "site": "osaka",
        "roles": ["collector", "store"],
    }))
    .unwrap()
}

fn open(dir: &std::path::Path) -> EmbeddedEventStore {
    EmbeddedEventStore::open(EmbeddedConfig {
        dir: dir.to_path_buf(),
        fsync: FsyncPolicy::Never,
        segment_max_bytes: 4096,
        ..EmbeddedConfig::default()
    })
    .unwrap()
}

/// An embedded store of 600 events whose oldest segments retention removed (first seq > 1).
fn embedded_with_gap(dir: &std::path::Path) -> (EmbeddedEventStore, u64, u64) {
    let store = open(dir);
    for b in 0..12u64 {
        let batch: Vec<_> = (0..50)
            .map(|i| {
                let n = b * 50 + i;
                ssh_event(n, "alice", "failure", "203.0.113.9", Some(t(n as i64)))
            })
            .collect();
        store.append_at(&batch, t(b as i64 * 50 + 60)).unwrap();
    }
    let bytes = store.stats().unwrap().bytes;
    store
        .apply_retention(t(10_000), None, Some(bytes * 2 / 3))
        .unwrap();
    let s = store.stats().unwrap();
    let (first, last) = (s.first_seq.unwrap(), s.last_seq.unwrap());
    assert!(first > 1, "retention removed the oldest segments");
    assert_eq!(last, 600);
    (store, first, last)
}

#[test]
fn import_keeps_embedded_seqs_resumes_and_the_directory_becomes_the_store_node() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = testing::single(&dir.path().join("nats")) else {
        eprintln!("skipped: nats-server not found");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = cfg(nats.port);
    let bus = rt.block_on(Bus::connect(&cfg)).unwrap();
    let (store, first, last) = embedded_with_gap(&dir.path().join("events"));

    // An earlier run that stopped after 100 events: the stream moved to the first seq, and
    // 100 events published with the import's own ids and expectations.
    rt.block_on(import::move_next_seq(&bus, first)).unwrap();
    let head: Vec<_> = store
        .events_since(first - 1, 100)
        .unwrap()
        .iter()
        .map(|s| (s.seq, import::message_for("osaka", s).unwrap()))
        .collect();
    assert_eq!(
        rt.block_on(import::publish_run(&bus.js, &head, false))
            .unwrap(),
        first + 99
    );
    // Publishing the same run again: stored once (Nats-Msg-Id), nothing moves.
    rt.block_on(import::publish_run(&bus.js, &head, false))
        .unwrap();
    assert_eq!(
        rt.block_on(import::stream_state(&bus)).unwrap(),
        (100, first, first + 99)
    );

    let seen = std::sync::Mutex::new(Vec::new());
    let report = rt
        .block_on(import::import(&bus, "osaka", &store, &|d, n| {
            seen.lock().unwrap().push((d, n))
        }))
        .unwrap();
    assert_eq!(
        report.started_at,
        Some(first + 100),
        "resumed where the stream ended"
    );
    assert_eq!(report.published, last - first - 99);
    assert_eq!((report.first, report.last), (first, last));
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.last(), Some(&(last - first - 99, last - first - 99)));
    assert_eq!(
        rt.block_on(import::stream_state(&bus)).unwrap(),
        (last - first + 1, first, last),
        "stream seqs are the embedded seqs"
    );
    // Every message is its embedded event, with the node's site.
    let stream = rt
        .block_on(bus.js.get_stream(mamori_cluster::bus::EVENTS_STREAM))
        .unwrap();
    let mut names = Interner::new();
    for seq in [first, first + 100, last] {
        let m = rt.block_on(stream.get_raw_message(seq)).unwrap();
        let d = decode_event(&m.payload, &mut names).unwrap();
        let want = store.get(seq).unwrap().unwrap();
        assert_eq!(d.event.raw, want.event.raw, "seq {seq}");
        assert_eq!(d.received_at, want.received_at);
        assert_eq!(
            d.event.get_str(SITE_FIELD).as_deref(),
            Some("osaka"),
            "seq {seq}"
        );
    }
    // A second run finds everything there.
    let again = rt
        .block_on(import::import(&bus, "osaka", &store, &|_, _| {}))
        .unwrap();
    assert_eq!((again.published, again.started_at), (0, None));

    // The embedded directory is the first store node: it resumes after its own last seq,
    // and the collector's new events get the next seqs.
    let store: Arc<dyn EventStore> = Arc::new(store);
    let progress = Arc::new(StoreProgress::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let role = rt.spawn(store_role::run(
        bus.clone(),
        Arc::clone(&store),
        Arc::clone(&progress),
        stop_rx,
    ));
    let collector = PublishingStore::new(&bus, rt.handle().clone(), "osaka", "c1");
    let fresh: Vec<_> = (0..30)
        .map(|i| ssh_event(900 + i, "bob", "success", "198.51.100.7", Some(t(700))))
        .collect();
    collector.append_at(&fresh, t(701)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.stored_through.load(Ordering::Relaxed) < last + 30 {
        assert!(Instant::now() < deadline, "the store node caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        store.get(last + 1).unwrap().unwrap().event.raw,
        fresh[0].raw
    );
    assert_eq!(store.stats().unwrap().first_seq, Some(first));
    let _ = stop.send(true);
    rt.block_on(role).unwrap();
}

#[test]
fn import_refuses_a_stream_that_holds_other_events_and_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = testing::single(&dir.path().join("nats")) else {
        eprintln!("skipped: nats-server not found");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bus = rt.block_on(Bus::connect(&cfg(nats.port))).unwrap();

    let empty = open(&dir.path().join("empty"));
    let e = rt
        .block_on(import::import(&bus, "osaka", &empty, &|_, _| {}))
        .unwrap_err();
    assert!(e.contains("no events"), "{e}");

    // A collector already ran: its events are in the stream.
    let collector = PublishingStore::new(&bus, rt.handle().clone(), "osaka", "c1");
    collector
        .append_at(
            &[ssh_event(1, "eve", "failure", "192.0.2.1", Some(t(1)))],
            t(2),
        )
        .unwrap();
    let store = open(&dir.path().join("events"));
    let batch: Vec<_> = (0..20)
        .map(|i| ssh_event(i, "alice", "failure", "203.0.113.9", Some(t(i as i64))))
        .collect();
    store.append_at(&batch, t(30)).unwrap();
    let e = rt
        .block_on(import::import(&bus, "osaka", &store, &|_, _| {}))
        .unwrap_err();
    assert!(e.contains("not this install's"), "{e}");
    assert_eq!(
        rt.block_on(import::stream_state(&bus)).unwrap(),
        (1, 1, 1),
        "nothing published"
    );
    // And JetStream itself refuses a publish that does not follow the seq it expects.
    let run: Vec<_> = store
        .events_since(0, 1)
        .unwrap()
        .iter()
        .map(|s| (s.seq, import::message_for("osaka", s).unwrap()))
        .collect();
    assert!(rt
        .block_on(import::publish_run(&bus.js, &run, true))
        .is_err());
    assert_eq!(
        import::plan(1, 20, (1, 1, 1), |_| Ok(false)).unwrap_err(),
        e
    );
    assert_ne!(import::plan(1, 20, (0, 0, 0), |_| Ok(true)), Ok(Plan::Done));
}
