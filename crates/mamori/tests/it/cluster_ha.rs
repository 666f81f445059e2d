//! Scale-out under failure (issue #20): the real binary as five nodes over a **3-node
//! JetStream cluster** started by the test (free loopback ports, routes, user/password
//! required), streams with 3 replicas, and the real PostgreSQL. During a run of many events
//! (`MAMORI_E2E_HA_EVENTS`, default 100,000) the stream leader's NATS node, a detector and a
//! collector are SIGKILLed: every event acknowledged at the first attempt, or sent again with
//! the same `Idempotency-Key` (to the other collector), is stored exactly once, no alert is
//! duplicated, and `/metrics` shows the consumer lag and redeliveries.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::cluster::{alerts_grouped_under, caught_up, cluster_config, status, Schema};
use crate::serve::{sample, Server};

/// One POST with a long read timeout: a collector holds its answer while it publishes again
/// what a lost NATS node did not acknowledge (up to 30 s); `None` when the connection failed
/// or closed without an answer.
fn post(addr: SocketAddr, token: &str, key: Option<&str>, body: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(90))).ok()?;
    let key = key.map_or(String::new(), |k| format!("Idempotency-Key: {k}\r\n"));
    let req = format!(
        "POST /api/v1/ingest HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\nAuthorization: Bearer {token}\r\n{key}\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    std::str::from_utf8(resp.get(9..12)?).ok()?.parse().ok()
}

/// What a client learnt of one batch.
#[derive(Debug, Clone, Copy)]
struct Sent {
    client: usize,
    batch: usize,
    /// Attempts until a 200 (1: acknowledged at once).
    attempts: u32,
}

#[test]
fn three_nats_nodes_one_killed_with_a_detector_and_a_collector_every_acknowledged_event_once() {
    let total: usize = std::env::var("MAMORI_E2E_HA_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let auth = "authorization {\n  user: mamori\n  password: \"e2e-pa55\"\n}";
    let Some(mut nats) = mamori_cluster::testing::cluster(&dir.path().join("nats"), 3, auth) else {
        return;
    };
    let Some((guard, pg)) = Schema::create("ha") else {
        return;
    };
    let urls: Vec<String> = nats.iter().map(|n| n.url()).collect();
    let extra = "replicas = 3\nnats_user = \"mamori\"\nnats_password = \"e2e-pa55\"";
    let cfg = |node, site, roles, owns| {
        cluster_config(
            dir.path(),
            &urls,
            &guard.name,
            node,
            site,
            roles,
            owns,
            extra,
        )
    };
    let a_cfg = cfg("col_a", "site_a", "[\"collector\"]", "[]");
    let b_cfg = cfg("col_b", "site_b", "[\"collector\"]", "[]");
    let det1_cfg = cfg("det1", "hq", "[\"detector\"]", "[0]");
    let det2_cfg = cfg("det2", "hq", "[\"detector\"]", "[1]");
    let store_cfg = cfg("store", "hq", "[\"store\"]", "[]");
    let col_a = Server::start(&a_cfg, None);
    // One token for both collectors (the cluster shares them): the keyed retries below are
    // scoped by its name wherever they land.
    let col_b = Server::start(&b_cfg, Some(col_a.token.clone()));
    let det1 = Server::start(&det1_cfg, None);
    let det2 = Server::start(&det2_cfg, None);
    let store = Server::start(&store_cfg, None);
    let s = status(&det1_cfg);
    assert_eq!(s["streams"][0]["replicas"], 3, "{s:#}");

    // Clients: batches of PER events, one in 100 a shadow-copy deletion on a host of its
    // own (one alert each). A batch not acknowledged (a killed collector, a 500) is sent
    // again, to the other collector once one is dead; the even clients' batches carry an
    // `Idempotency-Key`.
    const PER: usize = 250;
    const CLIENTS: usize = 4;
    let batches = total.div_ceil(PER * CLIENTS);
    let total = batches * PER * CLIENTS;
    let b_dead = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Sent>();
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let tx = tx.clone();
        let b_dead = Arc::clone(&b_dead);
        let targets = [
            (col_a.http, col_a.token.clone()),
            (col_b.http, col_b.token.clone()),
        ];
        clients.push(std::thread::spawn(move || {
            for batch in 0..batches {
                let body: String = (0..PER)
                    .map(|n| {
                        let id = format!(r#""ha.client":{client},"ha.batch":{batch},"ha.n":{n}"#);
                        if n % 100 == 0 {
                            format!(
                                r#"{{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"HA-{client}-{batch}-{n}","Image":"C:\\Windows\\System32\\vssadmin.exe","CommandLine":"vssadmin.exe delete shadows /all /quiet",{id},"message":"hatest{client}"}}"#
                            ) + "\n"
                        } else {
                            format!("{{{id},\"message\":\"hatest{client}\"}}\n")
                        }
                    })
                    .collect();
                // Even clients send an Idempotency-Key: their repeats are stored once.
                let key = (client % 2 == 0).then(|| format!("ha-{client}-{batch}"));
                let mut attempts = 0;
                let deadline = Instant::now() + Duration::from_secs(300);
                loop {
                    attempts += 1;
                    let pick = if b_dead.load(Ordering::SeqCst) == 1 {
                        0
                    } else {
                        (client + batch + attempts as usize - 1) % 2
                    };
                    let (addr, token) = &targets[pick];
                    let t = Instant::now();
                    let r = post(*addr, token, key.as_deref(), body.as_bytes());
                    if t.elapsed() > Duration::from_secs(3) || r != Some(200) {
                        eprintln!(
                            "{:.1} s: batch {client}/{batch} attempt {attempts} to collector {pick}: status {r:?} after {:.1} s",
                            started.elapsed().as_secs_f64(),
                            t.elapsed().as_secs_f64()
                        );
                    }
                    if r == Some(200) {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "batch {client}/{batch} never acknowledged"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                tx.send(Sent {
                    client,
                    batch,
                    attempts,
                })
                .unwrap();
            }
        }));
    }
    drop(tx);
    let all_batches = batches * CLIENTS;
    let mut sent: Vec<Sent> = Vec::with_capacity(all_batches);
    let nats_dir = dir.path().join("nats");
    let monitors: Vec<u16> = nats.iter().map(|n| n.http_port).collect();
    let wait_for = |n: usize, sent: &mut Vec<Sent>| {
        while sent.len() < n {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(s) => sent.push(s),
                Err(_) => {
                    for i in 1..=3 {
                        let log = std::fs::read_to_string(nats_dir.join(format!("n{i}/n{i}.log")))
                            .unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(25).collect();
                        eprintln!("n{i} log (last lines, newest first):\n{}", tail.join("\n"));
                    }
                    let m = crate::serve::try_http(
                        col_a.http,
                        "GET",
                        "/metrics",
                        Some(&col_a.token),
                        &[],
                        b"",
                    );
                    let jsz: Vec<_> = monitors
                        .iter()
                        .map(|&p| {
                            mamori_cluster::testing::monitor(p, "/jsz?streams=true&consumers=true")
                        })
                        .collect();
                    panic!(
                        "ingest stalled; col_a answers /metrics: {:?}\njsz: {jsz:?}\ncol_a: {}",
                        m.map(|(s, b)| (
                            s,
                            crate::text(&b)
                                .lines()
                                .filter(|l| l.contains("cluster") || l.contains("queue"))
                                .collect::<Vec<_>>()
                                .join("\n")
                        )),
                        col_a.log_lines()
                    );
                }
            }
        }
    };
    // A quarter in: SIGKILL the NATS node leading MAMORI_EVENTS.
    wait_for(all_batches / 4, &mut sent);
    let leader = status(&det1_cfg)["streams"][0]["leader"]
        .as_str()
        .unwrap_or("n1")
        .to_owned();
    let killed = nats.iter().position(|n| n.name == leader).unwrap_or(0);
    nats[killed].kill();
    eprintln!(
        "{:.1} s: SIGKILLed NATS node {leader} (the stream leader) after {} batches",
        started.elapsed().as_secs_f64(),
        sent.len()
    );
    // Half way: SIGKILL a detector (it owns partition 1 and holds unacknowledged events).
    wait_for(all_batches / 2, &mut sent);
    let det2_token = det2.token.clone();
    det2.kill();
    eprintln!(
        "{:.1} s: SIGKILLed det2 after {} batches",
        started.elapsed().as_secs_f64(),
        sent.len()
    );
    // Three quarters: SIGKILL a collector; its clients' batches go to the other.
    wait_for(3 * all_batches / 4, &mut sent);
    b_dead.store(1, Ordering::SeqCst);
    col_b.kill();
    eprintln!(
        "{:.1} s: SIGKILLed col_b after {} batches",
        started.elapsed().as_secs_f64(),
        sent.len()
    );
    wait_for(all_batches, &mut sent);
    for c in clients {
        c.join().unwrap();
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{total} events acknowledged in {ingest_secs:.1} s ({:.0} events/s, debug build)",
        total as f64 / ingest_secs
    );
    // The killed detector comes back and resumes its partition; the NATS node too.
    let det2 = Server::start(&det2_cfg, Some(det2_token));
    nats[killed].restart();

    // Every event in the store: acknowledged at once or sent with a key → exactly once; sent
    // again without a key → at least once (its first attempt may have been published before
    // the collector died).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // One query per client: a search pages through at most 90,000 hits.
        let stored: u64 = (0..CLIENTS)
            .map(|c| {
                let (st, v) = store.get(&format!("/api/v1/search?limit=1&q=message%3Ahatest{c}"));
                assert_eq!(st, 200, "{v}");
                v["total"].as_u64().unwrap_or(0)
            })
            .sum();
        if stored >= total as u64 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let hits: Vec<serde_json::Value> = (0..CLIENTS)
        .flat_map(|c| store.search_all(&format!("message:hatest{c}")))
        .collect();
    let mut seen: HashMap<(u64, u64, u64), u32> = HashMap::new();
    for h in &hits {
        let f = &h["fields"];
        let key = (
            f["ha.client"].as_u64().unwrap(),
            f["ha.batch"].as_u64().unwrap(),
            f["ha.n"].as_u64().unwrap(),
        );
        *seen.entry(key).or_insert(0) += 1;
    }
    let mut retried = 0;
    let mut repeated_events = 0;
    for s in &sent {
        for n in 0..PER {
            let c = seen
                .get(&(s.client as u64, s.batch as u64, n as u64))
                .copied()
                .unwrap_or(0);
            if s.attempts == 1 || s.client % 2 == 0 {
                assert_eq!(
                    c, 1,
                    "event {}/{}/{n}, acknowledged after {} attempt(s), stored {c} times",
                    s.client, s.batch, s.attempts
                );
            } else {
                assert!(
                    (1..=s.attempts).contains(&c),
                    "event {}/{}/{n}, acknowledged after {} attempts, stored {c} times",
                    s.client,
                    s.batch,
                    s.attempts
                );
                repeated_events += (c - 1) as usize;
            }
        }
        retried += usize::from(s.attempts > 1);
    }
    eprintln!(
        "batches sent again after a failure: {retried} of {all_batches}; events of theirs stored twice: {repeated_events}"
    );
    assert!(
        retried <= CLIENTS * 8,
        "only the batches in flight at a kill are sent again: {retried}"
    );
    // Store seqs are stream seqs: dense, one per stored event.
    let mut seqs: Vec<u64> = hits.iter().map(|h| h["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), hits.len(), "one store seq per stored event");

    // Detection catches up, and no alert is counted twice.
    caught_up(&det1_cfg, Duration::from_secs(600), "the kills");
    let shadow = alerts_grouped_under(
        &pg,
        "host.name=HA-",
        all_batches * PER.div_ceil(100),
        Duration::from_secs(120),
    );
    let mut per_host: HashMap<(Option<String>, String), u64> = HashMap::new();
    for a in &shadow {
        *per_host
            .entry((a.group_key.clone(), a.rule_id.0.to_string()))
            .or_insert(0) += a.count;
    }
    let hosts: std::collections::HashSet<_> = per_host.keys().map(|(g, _)| g.clone()).collect();
    assert_eq!(
        hosts.len(),
        all_batches * PER.div_ceil(100),
        "every shadow-copy deletion raised its alert"
    );
    let doubled: Vec<_> = per_host.iter().filter(|(_, &c)| c != 1).collect();
    // An event stored twice (sent again by its client) is two events: its alert counts 2.
    assert!(
        doubled.len() <= repeated_events,
        "alerts counted an event twice: {:?}",
        doubled.iter().take(5).collect::<Vec<_>>()
    );

    // `/metrics` of a detector: the consumer lag (now 0) and the redeliveries.
    let m = det1.metrics_text();
    assert_eq!(
        sample(&m, "mamori_cluster_consumer_lag_events"),
        Some(0.0),
        "{m}"
    );
    let examined = sample(&m, "mamori_cluster_detector_examined_total").unwrap();
    assert!(examined > 0.0, "{m}");
    let redelivered = sample(&m, "mamori_cluster_detector_redelivered_total").unwrap();
    eprintln!("det1 examined {examined} events, {redelivered} of them redelivered");
    let sm = store.metrics_text();
    assert_eq!(
        sample(&sm, "mamori_cluster_store_lag_events"),
        Some(0.0),
        "{sm}"
    );
    let am = col_a.metrics_text();
    eprintln!(
        "col_a published again after the NATS node's loss: {:?}",
        sample(&am, "mamori_cluster_republished_total")
    );
    for srv in [col_a, det1, det2, store] {
        assert_eq!(srv.stop(), Some(0), "clean shutdown on SIGTERM");
    }
    drop(nats);
}
