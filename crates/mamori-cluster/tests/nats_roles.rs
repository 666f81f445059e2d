//! The collector's publishing store and the store role against a real NATS JetStream: a
//! `nats-server` started by the test on a free loopback port with its own storage directory
//! (`/usr/sbin/nats-server`; "skipped" without it).

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mamori_cluster::bus::Bus;
use mamori_cluster::collector::PublishingStore;
use mamori_cluster::store_role::{self, StoreProgress};
use mamori_cluster::{ClusterConfig, SITE_FIELD};
use mamori_event::{FieldName, Value};
use mamori_store::testsuite::{ssh_event, t};
use mamori_store::{EventStore, MemoryEventStore};

struct Nats(Child);

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nats(dir: &Path) -> Option<(Nats, u16)> {
    let bin = "/usr/sbin/nats-server";
    if !Path::new(bin).exists() {
        eprintln!("skipped: {bin} not installed");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let n = Nats(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((n, port))
}

fn wait_stored(p: &StoreProgress, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.stored_through.load(Ordering::Relaxed) < want {
        assert!(
            Instant::now() < deadline,
            "stored through {} of {want}",
            p.stored_through.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn published_events_are_stored_once_with_the_stream_seq_and_the_collectors_site() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_nats, port)) = nats(dir.path()) else {
        return;
    };
    let cfg: ClusterConfig = serde_json::from_value(serde_json::json!({
        "nats": [format!("nats://127.0.0.1:{port}")],
        "postgres": "unused here",
        "site": "kobe",
        "roles": ["collector", "store"],
    }))
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bus = rt.block_on(Bus::connect(&cfg)).unwrap();
    let collector = PublishingStore::new(bus.js.clone(), rt.handle().clone(), "kobe", "n1");
    let mut batch: Vec<_> = (0..700)
        .map(|i| ssh_event(i, "alice", "failure", "203.0.113.5", Some(t(i as i64))))
        .collect();
    // A sender's own `mamori.site` is replaced by the collector's.
    batch[3].push(FieldName::new(SITE_FIELD), Value::str("forged"));
    let a = collector.append_at(&batch[..600], t(1000)).unwrap();
    assert_eq!((a.first_seq, a.last_seq), (1, 600));
    let a = collector.append_at(&batch[600..], t(1001)).unwrap();
    assert_eq!((a.first_seq, a.last_seq), (601, 700));
    // Never from inside the runtime (it would block a worker): an error, not a panic.
    let inside = rt.block_on(async { collector.append_at(&batch[..1], t(0)) });
    assert!(inside.is_err());

    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let progress = Arc::new(StoreProgress::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let role = rt.spawn(store_role::run(
        bus.clone(),
        Arc::clone(&store),
        Arc::clone(&progress),
        stop_rx,
    ));
    wait_stored(&progress, 700);
    for (i, ev) in batch.iter().enumerate() {
        let got = store.get(i as u64 + 1).unwrap().expect("stored");
        assert_eq!(got.event.raw, ev.raw, "store seq {} = stream seq", i + 1);
        assert_eq!(
            got.received_at,
            if i < 600 { t(1000) } else { t(1001) },
            "receipt time travels with the event"
        );
        let sites: Vec<_> = got
            .event
            .fields()
            .iter()
            .filter(|(n, _)| n.as_str() == SITE_FIELD)
            .map(|(_, v)| v.to_text().into_owned())
            .collect();
        assert_eq!(sites, ["kobe"], "event {i}");
    }
    // The role restarts from the store's last seq: nothing is stored twice.
    stop.send(true).unwrap();
    rt.block_on(role).unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let progress = Arc::new(StoreProgress::default());
    let role = rt.spawn(store_role::run(
        bus.clone(),
        Arc::clone(&store),
        Arc::clone(&progress),
        stop_rx,
    ));
    collector.append_at(&batch[..5], t(1002)).unwrap();
    wait_stored(&progress, 705);
    assert_eq!(store.stats().unwrap().events, 705);
    assert_eq!(store.get(705).unwrap().unwrap().event.raw, batch[4].raw);
    stop.send(true).unwrap();
    rt.block_on(role).unwrap();
}
