//! Scale-out (issue #20) end to end: the real binary as five nodes — two collectors at two
//! sites, two detectors (each owning one correlation partition), one store — over a real NATS
//! JetStream (a `nats-server` started by the test on a free loopback port, its own storage
//! directory) and the real PostgreSQL (`MAMORI_PG_URL`, default 127.0.0.1:5432 trust, database
//! `test`, in a schema of the test's own, dropped afterwards). Without either, "skipped".

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::Utc;
use mamori_cluster::PgAlertStore;
use mamori_event::RuleId;
use mamori_store::{Alert, AlertFilter, AlertStore};

use crate::serve::{try_http, write_config, Server};
use crate::{mamori, text};

const BRUTE_FORCE: &str = "b0ed808b-7ffd-4d9a-accb-e09cb7e57e5b";

pub(crate) fn pg_url() -> String {
    std::env::var("MAMORI_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test connect_timeout=5".into())
}

/// The test's PostgreSQL schema, dropped at the end (also on failure).
pub(crate) struct Schema {
    pub(crate) name: String,
    pg: Option<PgAlertStore>,
}

impl Schema {
    /// A schema of the test's own in the test PostgreSQL (`None`: "skipped", unreachable).
    pub(crate) fn create(tag: &str) -> Option<(Schema, PgAlertStore)> {
        let name = format!(
            "e2e_{tag}_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros() % 1_000_000_000
        );
        let pg = match PgAlertStore::open(&pg_url(), &name) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("skipped: PostgreSQL not reachable ({e})");
                return None;
            }
        };
        let second = PgAlertStore::open(&pg_url(), &name).unwrap();
        Some((Schema { name, pg: Some(pg) }, second))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Some(pg) = self.pg.take() {
            let _ = pg.drop_schema();
        }
    }
}

/// A node's configuration: `[cluster]` with `nats` URLs, the test's schema, two partitions,
/// and `extra` lines of `[cluster]` (auth, replicas, domains).
#[allow(clippy::too_many_arguments)]
pub(crate) fn cluster_config(
    dir: &Path,
    nats: &[String],
    schema: &str,
    node: &str,
    site: &str,
    roles: &str,
    owns: &str,
    extra: &str,
) -> std::path::PathBuf {
    let d = dir.join(node);
    std::fs::create_dir_all(&d).unwrap();
    write_config(
        &d,
        &format!(
            "[cluster]\nnats = {nats:?}\npostgres = {url:?}\n\
             postgres_schema = {schema:?}\nsite = {site:?}\nroles = {roles}\npartitions = 2\n\
             owns = {owns}\nnode = {node:?}\n{extra}\n",
            url = pg_url(),
        ),
    )
}

fn ssh_fail(t: chrono::DateTime<Utc>, ip: &str, i: usize) -> String {
    format!(
        "<38>{} web01 sshd[4{i}]: Failed password for invalid user admin{i} from {ip} port {} ssh2\n",
        t.format("%b %e %H:%M:%S"),
        41000 + i
    )
}

fn alerts_of(pg: &PgAlertStore, rule: &str) -> Vec<Alert> {
    pg.list_alerts(&AlertFilter {
        rule_id: Some(RuleId(rule.into())),
        limit: 10_000,
        ..AlertFilter::default()
    })
    .unwrap()
}

pub(crate) fn all_alerts(pg: &PgAlertStore) -> Vec<Alert> {
    let mut out = Vec::new();
    loop {
        let page = pg
            .list_alerts(&AlertFilter {
                offset: out.len(),
                limit: 1000,
                ..AlertFilter::default()
            })
            .unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// `mamori cluster status --json`.
/// Waits until the detectors' shared consumer has nothing pending (lag and unacknowledged 0),
/// as `mamori cluster status` of `cfg` reports it; fails after `within`.
pub(crate) fn caught_up(cfg: &Path, within: Duration, after: &str) {
    let deadline = Instant::now() + within;
    loop {
        let s = status(cfg);
        let c = &s["consumers"][0];
        if c["lag"] == 0 && c["unacknowledged"] == 0 {
            eprintln!("detectors' consumer after {after}: {c}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "detectors did not catch up: {s:#}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The alerts whose group key starts with `prefix`, once there are `want` of them or `within`
/// has passed (the caller asserts on what it got).
pub(crate) fn alerts_grouped_under(
    pg: &PgAlertStore,
    prefix: &str,
    want: usize,
    within: Duration,
) -> Vec<Alert> {
    let deadline = Instant::now() + within;
    loop {
        let got: Vec<Alert> = all_alerts(pg)
            .into_iter()
            .filter(|a| {
                a.group_key
                    .as_deref()
                    .is_some_and(|g| g.starts_with(prefix))
            })
            .collect();
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub(crate) fn status(cfg: &Path) -> serde_json::Value {
    let out = mamori(&[
        "cluster",
        "status",
        "--json",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn two_sites_one_brute_force_one_alert_and_a_killed_detector_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = mamori_cluster::testing::single(&dir.path().join("nats")) else {
        return;
    };
    let Some((guard, pg)) = Schema::create("two") else {
        return;
    };
    let schema = guard.name.clone();
    let urls = [nats.url()];
    let cfg = |node, site, roles, owns| {
        cluster_config(dir.path(), &urls, &schema, node, site, roles, owns, "")
    };
    let tokyo_cfg = cfg("tokyo", "tokyo", "[\"collector\"]", "[]");
    let osaka_cfg = cfg("osaka", "osaka", "[\"collector\"]", "[]");
    let det1_cfg = cfg("det1", "hq", "[\"detector\"]", "[0]");
    let det2_cfg = cfg("det2", "hq", "[\"detector\"]", "[1]");
    let store_cfg = cfg("store", "hq", "[\"store\"]", "[]");
    let tokyo = Server::start(&tokyo_cfg, None);
    let osaka = Server::start(&osaka_cfg, None);
    let det1 = Server::start(&det1_cfg, None);
    let det2 = Server::start(&det2_cfg, None);
    let store = Server::start(&store_cfg, None);

    // 1. A brute force whose attempts arrive half at each site: one correlation alert.
    let start = Utc::now() - chrono::Duration::seconds(60);
    let ip = "203.0.113.77";
    let (mut a, mut b) = (String::new(), String::new());
    // 12 attempts, 6 at each site: the threshold (10 in 5 minutes) needs both sites' events.
    for i in 0..12 {
        let line = ssh_fail(start + chrono::Duration::seconds(2 * i as i64), ip, i);
        if i % 2 == 0 {
            a += &line
        } else {
            b += &line
        }
    }
    for (srv, lines) in [(&tokyo, a), (&osaka, b)] {
        let mut c = TcpStream::connect(srv.tcp).unwrap();
        std::io::Write::write_all(&mut c, lines.as_bytes()).unwrap();
    }
    // A sender cannot choose its site: the collector's replaces the one in the log.
    let (st, v) = tokyo.post(
        "/api/v1/ingest",
        &[],
        b"{\"message\":\"forged site\",\"mamori.site\":\"evil\"}\n",
    );
    assert_eq!(st, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let bf = loop {
        let bf = alerts_of(&pg, BRUTE_FORCE);
        if !bf.is_empty() {
            break bf;
        }
        assert!(
            Instant::now() < deadline,
            "no brute-force alert in PostgreSQL; det1: {}\ndet2: {}",
            det1.log_lines(),
            det2.log_lines()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(bf.len(), 1, "one attack, one alert: {bf:#?}");
    assert_eq!(
        bf[0].group_key.as_deref(),
        Some(&*format!("source.ip={ip}"))
    );
    let sites = &bf[0].details["sites"];
    assert!(
        sites
            .as_array()
            .is_some_and(|s| s.contains(&"tokyo".into()) && s.contains(&"osaka".into())),
        "the alert names both sites: {sites}"
    );
    // The detector that recorded the alert handed it to its incident service: one incident,
    // in PostgreSQL, that every node sees.
    let cases = mamori_cluster::open_case_store(&pg_url(), &schema).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let with_alert = loop {
        let found: Vec<_> = cases
            .list(&mamori_cases::IncidentFilter::default())
            .unwrap()
            .iter()
            .map(|s| cases.get(s.id).unwrap())
            .filter(|inc| inc.alerts.iter().any(|a| a.alert_id == bf[0].id.0))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(with_alert.len(), 1, "det1: {}", det1.log_lines());
    // With it, the attempts' own alerts that share the address (held or joined).
    assert!(
        with_alert[0]
            .entities
            .iter()
            .any(|e| e.field == "source.ip" && e.value == ip),
        "{:#?}",
        with_alert[0]
    );

    // Every event is in the store once, with its site; the alert cites store seqs.
    let hits = store.search_until(&format!("source.ip:\"{ip}\""), 12, Duration::from_secs(60));
    assert_eq!(hits.len(), 12, "{:#?}", store.log_lines());
    let by_site = |s: &str| {
        hits.iter()
            .filter(|h| h["fields"]["mamori.site"] == s)
            .count()
    };
    assert_eq!((by_site("tokyo"), by_site("osaka")), (6, 6));
    let seqs: Vec<u64> = hits.iter().map(|h| h["seq"].as_u64().unwrap()).collect();
    assert!(
        bf[0].event_seqs.iter().all(|s| seqs.contains(s)),
        "alert seqs {:?} are store seqs {seqs:?}",
        bf[0].event_seqs
    );

    let forged = store.search_until("message:\"forged site\"", 1, Duration::from_secs(60));
    assert_eq!(forged.len(), 1);
    assert_eq!(
        forged[0]["fields"]["mamori.site"], "tokyo",
        "{:#}",
        forged[0]
    );

    // 2. A few thousand acknowledged events through both collectors, a detector SIGKILLed
    //    mid-run. One event in ten is a shadow-copy deletion on a host of its own: exactly one
    //    alert each, counted once, whoever examined it and however often it was delivered.
    const PER: usize = 20;
    const BATCHES: usize = 60; // per client: 3 × 60 × 20 = 3600 events
    let (tx, rx) = mpsc::channel::<(usize, usize)>();
    let mut clients = Vec::new();
    for client in 0..3usize {
        let tx = tx.clone();
        let targets = [
            (tokyo.http, tokyo.token.clone()),
            (osaka.http, osaka.token.clone()),
        ];
        clients.push(std::thread::spawn(move || {
            for batch in 0..BATCHES {
                let body: String = (0..PER)
                    .map(|n| {
                        if n % 10 == 0 {
                            format!(
                                r#"{{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"H-{client}-{batch}-{n}","Image":"C:\\Windows\\System32\\vssadmin.exe","CommandLine":"vssadmin.exe delete shadows /all /quiet","crash.client":{client},"crash.batch":{batch},"crash.n":{n},"message":"crash test"}}"#
                            ) + "\n"
                        } else {
                            format!("{{\"crash.client\":{client},\"crash.batch\":{batch},\"crash.n\":{n},\"message\":\"crash test\"}}\n")
                        }
                    })
                    .collect();
                let (addr, token) = &targets[(client + batch) % 2];
                // A collector answers 200 only once JetStream holds the batch.
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    match try_http(*addr, "POST", "/api/v1/ingest", Some(token), &[], body.as_bytes()) {
                        Some((200, _)) => break,
                        r => {
                            assert!(Instant::now() < deadline, "batch {batch} never acknowledged: {r:?}");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
                tx.send((client, batch)).unwrap();
            }
        }));
    }
    drop(tx);
    // Freeze the second detector once a third of the batches are acknowledged (the server
    // keeps delivering to its pending pull requests: events it holds and never acknowledges),
    // then SIGKILL it another third later.
    let mut acked = Vec::new();
    while acked.len() < BATCHES {
        acked.push(
            rx.recv_timeout(Duration::from_secs(120))
                .expect("ingest stalled"),
        );
    }
    let det2_token = det2.token.clone();
    Command::new("kill")
        .args(["-STOP", &det2.pid().to_string()])
        .status()
        .unwrap();
    while acked.len() < 2 * BATCHES {
        acked.push(
            rx.recv_timeout(Duration::from_secs(120))
                .expect("ingest stalled"),
        );
    }
    det2.kill();
    acked.extend(rx.iter());
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(acked.len(), 3 * BATCHES);
    // The killed detector comes back: it resumes its partition from its saved state.
    let det2 = Server::start(&det2_cfg, Some(det2_token));

    let total = 3 * BATCHES * PER;
    store.search_until("message:crash", total as u64, Duration::from_secs(120));
    let hits = store.search_all("message:crash");
    let mut seen = std::collections::HashMap::new();
    for h in &hits {
        let f = &h["fields"];
        let key = (
            f["crash.client"].as_u64().unwrap(),
            f["crash.batch"].as_u64().unwrap(),
            f["crash.n"].as_u64().unwrap(),
        );
        *seen.entry(key).or_insert(0) += 1;
    }
    assert_eq!(
        seen.values().filter(|&&c| c > 1).count(),
        0,
        "events stored twice"
    );
    for (c, b) in &acked {
        for n in 0..PER {
            assert_eq!(
                seen.get(&(*c as u64, *b as u64, n as u64)),
                Some(&1),
                "acknowledged event {c}/{b}/{n} not stored once"
            );
        }
    }
    // Detection catches up (the killed detector's unacknowledged events are redelivered to
    // the others after the ack wait): the consumer has nothing pending.
    caught_up(&det1_cfg, Duration::from_secs(180), "the SIGKILL");
    let want = 3 * BATCHES * (PER / 10);
    let shadow = alerts_grouped_under(&pg, "host.name=H-", want, Duration::from_secs(60));
    let mut per_host = std::collections::HashMap::new();
    for a in &shadow {
        *per_host
            .entry((a.group_key.clone(), a.rule_id.clone()))
            .or_insert(0u64) += a.count;
    }
    let hosts: std::collections::HashSet<_> = per_host.keys().map(|(g, _)| g.clone()).collect();
    assert_eq!(
        hosts.len(),
        want,
        "every shadow-copy deletion raised its alert"
    );
    assert!(
        per_host.values().all(|&c| c == 1),
        "an alert counted a redelivered event twice: {:?}",
        per_host
            .iter()
            .filter(|(_, &c)| c != 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    // The brute force is still one alert after the owner's restart and replay.
    assert_eq!(alerts_of(&pg, BRUTE_FORCE).len(), 1);
    // Status names every node and the streams.
    let s = status(&det1_cfg);
    let nodes: Vec<&str> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    for n in ["tokyo", "osaka", "det1", "det2", "store"] {
        assert!(nodes.contains(&n), "{n} in {nodes:?}");
    }
    assert_eq!(s["streams"][0]["name"], "MAMORI_EVENTS");
    let redelivered: u64 = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["redelivered"].as_u64())
        .sum();
    // Whether the frozen detector held events when it was killed depends on whether it had a
    // pull request pending at the SIGSTOP (on a loaded machine it sometimes had none): the
    // exactly-once checks above hold either way, and this says which case the run exercised.
    if redelivered > 0 {
        eprintln!("events redelivered to the surviving detectors after the SIGKILL: {redelivered}");
    } else {
        eprintln!(
            "note: the killed detector held no events in this run: redelivery was not exercised"
        );
    }
    let text_out = mamori(&["cluster", "status", "--config", det1_cfg.to_str().unwrap()]);
    assert!(text(&text_out.stdout).contains("MAMORI_EVENTS"));
    for srv in [tokyo, osaka, det1, det2, store] {
        assert_eq!(srv.stop(), Some(0), "clean shutdown on SIGTERM");
    }
    drop(nats);
}

/// The upgrade path: an embedded install's events go into a new cluster with their seqs
/// (`mamori cluster import`), its data directory becomes the store node, and the cluster's
/// detector examines the imported events like any other.
#[test]
fn an_embedded_install_is_imported_with_its_seqs_and_its_directory_becomes_the_store_node() {
    let dir = tempfile::tempdir().unwrap();
    // 1. The embedded install: a brute force over TCP and some JSON over HTTP.
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let emb_cfg = write_config(&dir.path().join("store"), "");
    let emb = Server::start(&emb_cfg, None);
    let ip = "203.0.113.88";
    let start = Utc::now() - chrono::Duration::seconds(60);
    let lines: String = (0..12)
        .map(|i| ssh_fail(start + chrono::Duration::seconds(2 * i as i64), ip, i))
        .collect();
    let mut c = TcpStream::connect(emb.tcp).unwrap();
    std::io::Write::write_all(&mut c, lines.as_bytes()).unwrap();
    drop(c);
    let body: String = (0..40)
        .map(|n| format!("{{\"message\":\"before the upgrade\",\"n\":{n}}}\n"))
        .collect();
    let (st, v) = emb.post("/api/v1/ingest", &[], body.as_bytes());
    assert_eq!(st, 200, "{v}");
    assert_eq!(emb.search_until("*", 52, Duration::from_secs(60)).len(), 52);
    // The install's API token stays valid on every node (imported into the cluster's tokens).
    let token = emb.token.clone();
    assert_eq!(emb.stop(), Some(0));

    let Some(nats) = mamori_cluster::testing::single(&dir.path().join("nats")) else {
        return;
    };
    let Some((guard, pg)) = Schema::create("import") else {
        return;
    };
    let urls = [nats.url()];
    let cfg = |node, roles, owns| {
        cluster_config(dir.path(), &urls, &guard.name, node, "hq", roles, owns, "")
    };
    // The store node's configuration replaces the embedded one in the same directory.
    let store_cfg = cfg("store", "[\"store\"]", "[]");
    let data = dir.path().join("store").join("data");
    let import = |args: &[&str]| {
        let mut a = vec!["cluster", "import", "--from", data.to_str().unwrap()];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--config", store_cfg.to_str().unwrap()]);
        mamori(&a)
    };
    let out = import(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("imported 52 events (seqs 1..=52)"), "{said}");
    assert!(said.contains("copied to the cluster: api/tokens"), "{said}");
    let again = import(&["--quiet"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("nothing to import"),
        "{}",
        text(&again.stdout)
    );
    let s = status(&store_cfg);
    let events = &s["streams"][0];
    assert_eq!(
        (&events["first_seq"], &events["last_seq"]),
        (&1.into(), &52.into()),
        "{s:#}"
    );
    // A directory that is not an install is refused with the reason.
    let bad = mamori(&[
        "cluster",
        "import",
        "--from",
        dir.path().to_str().unwrap(),
        "--config",
        store_cfg.to_str().unwrap(),
    ]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        text(&bad.stderr).contains("is not an event log"),
        "{}",
        text(&bad.stderr)
    );

    // 2. The cluster: the old directory as the store node, a detector, a collector.
    let store = Server::start(&store_cfg, Some(token));
    let det = Server::start(
        &cfg("det", "[\"detector\"]", "[0, 1]"),
        Some(store.token.clone()),
    );
    let col = Server::start(
        &cfg("col", "[\"collector\"]", "[]"),
        Some(store.token.clone()),
    );
    let (st, v) = col.post(
        "/api/v1/ingest",
        &[],
        b"{\"message\":\"after the upgrade\"}\n",
    );
    assert_eq!(st, 200, "{v}");
    let after = store.search_until("message:\"after the upgrade\"", 1, Duration::from_secs(60));
    assert_eq!(after.len(), 1, "{}", store.log_lines());
    assert_eq!(
        after[0]["seq"], 53,
        "the collector's event follows the imported seqs"
    );
    let before = store.search_until(
        "message:\"before the upgrade\"",
        40,
        Duration::from_secs(60),
    );
    assert_eq!(before.len(), 40);
    // The imported brute force is examined by the cluster's detector: one alert per
    // correlation (brute force, fast brute force, spraying: 12 users from one address), each
    // citing the events by the seqs the install gave them.
    let got = alerts_grouped_under(&pg, &format!("source.ip={ip}"), 3, Duration::from_secs(120));
    let mut rules: Vec<&str> = got.iter().map(|a| &*a.rule_id.0).collect();
    rules.sort_unstable();
    rules.dedup();
    assert_eq!(
        (got.len(), rules.len()),
        (3, 3),
        "{got:#?}\n{}",
        det.log_lines()
    );
    assert!(rules.contains(&BRUTE_FORCE));
    for a in &got {
        assert!(
            a.event_seqs.iter().all(|s| (1..=12).contains(s)),
            "{:?}",
            a.event_seqs
        );
    }
}

/// A request repeated at another collector (its first collector died before answering) is
/// stored once when it carries an `Idempotency-Key`; without one it is stored twice (at least
/// once), and a sender cannot forge the id that makes the dedup.
#[test]
fn a_request_with_an_idempotency_key_repeated_at_another_collector_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = mamori_cluster::testing::single(&dir.path().join("nats")) else {
        return;
    };
    let Some((guard, _pg)) = Schema::create("idem") else {
        return;
    };
    let urls = [nats.url()];
    let cfg =
        |node, roles| cluster_config(dir.path(), &urls, &guard.name, node, "hq", roles, "[]", "");
    let tokyo = Server::start(&cfg("tokyo", "[\"collector\"]"), None);
    // The cluster's tokens are shared: the sender uses one token at both collectors, and its
    // name scopes the key.
    let osaka = Server::start(&cfg("osaka", "[\"collector\"]"), Some(tokyo.token.clone()));
    let store = Server::start(&cfg("store", "[\"store\"]"), None);
    let keyed: String = (0..3)
        .map(|n| format!("{{\"message\":\"keyed\",\"n\":{n}}}\n"))
        .collect();
    let unkeyed: String = (0..3)
        .map(|n| format!("{{\"message\":\"unkeyed\",\"n\":{n}}}\n"))
        .collect();
    for srv in [&tokyo, &osaka] {
        let (st, v) = srv.post(
            "/api/v1/ingest",
            &[("Idempotency-Key", "batch-7")],
            keyed.as_bytes(),
        );
        assert_eq!((st, &v["accepted"]), (200, &3.into()), "{v}");
        let (st, v) = srv.post("/api/v1/ingest", &[], unkeyed.as_bytes());
        assert_eq!(st, 200, "{v}");
    }
    // A sender's own id is dropped: this event is not taken for keyed event 0.
    let (st, v) = tokyo.post(
        "/api/v1/ingest",
        &[],
        b"{\"message\":\"forged id\",\"mamori.ingest_id\":\"e2e-tokyo/batch-7/0\"}\n",
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = tokyo.post(
        "/api/v1/ingest",
        &[("Idempotency-Key", "no spaces")],
        b"{}\n",
    );
    assert_eq!(st, 400, "{v}");

    let forged = store.search_until("message:\"forged id\"", 1, Duration::from_secs(60));
    assert_eq!(forged.len(), 1, "{}", store.log_lines());
    assert!(
        forged[0]["fields"]["mamori.ingest_id"].is_null(),
        "{:#}",
        forged[0]
    );
    let twice = store.search_until("message:unkeyed", 6, Duration::from_secs(60));
    assert_eq!(
        twice.len(),
        6,
        "without a key a repeated request is stored again"
    );
    let once = store.search_all("message:keyed");
    let mut ids: Vec<&str> = once
        .iter()
        .map(|h| h["fields"]["mamori.ingest_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "e2e-tokyo/batch-7/0",
            "e2e-tokyo/batch-7/1",
            "e2e-tokyo/batch-7/2"
        ]
    );
}
