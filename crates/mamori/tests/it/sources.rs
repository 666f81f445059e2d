//! Source health and activity aggregates (issues #17 and #18) on the real binary: real syslog
//! over loopback TCP from several "hosts" (the syslog HOSTNAME field), `GET /api/v1/sources`,
//! the alerts, restarts (SIGTERM and SIGKILL) and a flood of random addresses.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::serve::{write_config, Server};

/// Short thresholds so a silence is judged within seconds.
const FAST: &str = "[sources]\nflush_interval_secs = 1\ncheck_interval_secs = 1\n\
                    min_silence_secs = 4\nsilent_gap_factor = 2.0\nnew_hours = 0\n";

fn send(c: &mut TcpStream, lines: &[String]) {
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    c.write_all(buf.as_bytes()).unwrap();
    c.flush().unwrap();
}

/// An RFC 5424 line from `host` without a timestamp (stamped on receipt).
fn line(host: &str, n: usize) -> String {
    format!("<13>1 - {host} app - - - heartbeat {n}")
}

/// An RFC 5424 line from `host` dated `at`.
fn dated(host: &str, at: DateTime<Utc>, n: usize) -> String {
    format!(
        "<13>1 {} {host} app - - - backlog {n}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

fn sources(srv: &Server) -> Value {
    let (s, v) = srv.get("/api/v1/sources");
    assert_eq!(s, 200, "{v}");
    v
}

fn source<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
}

fn wait_state(srv: &Server, name: &str, state: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = sources(srv);
        if let Some(s) = source(&v, name) {
            if s["state"] == state {
                return s.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {state}: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alerts_of(srv: &Server, rule: &str) -> Vec<Value> {
    let (s, v) = srv.get("/api/v1/alerts?limit=1000");
    assert_eq!(s, 200, "{v}");
    let list = v
        .as_array()
        .cloned()
        .or_else(|| v["alerts"].as_array().cloned())
        .unwrap_or_default();
    list.into_iter().filter(|a| a["rule_id"] == rule).collect()
}

fn hourly_sum(s: &Value) -> u64 {
    s["hourly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

/// Two hosts send; one stops. With short thresholds the silent alert appears once, the API
/// shows `silent`, the other host stays `ok`; when it sends again it is `ok` and the episode
/// is over.
#[test]
fn a_host_that_stops_sending_is_silent_once_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), FAST);
    let srv = Server::start(&cfg, None);
    let mut alpha = TcpStream::connect(srv.tcp).unwrap();
    let mut beta = TcpStream::connect(srv.tcp).unwrap();
    for i in 0..15 {
        send(&mut alpha, &[line("alpha", i)]);
        send(&mut beta, &[line("beta", i)]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = sources(&srv);
    let b = source(&v, "beta").unwrap_or_else(|| panic!("beta listed: {v}"));
    assert_eq!(b["kind"], "syslog");
    assert_eq!(b["state"], "ok", "{b}");
    assert_eq!(b["hourly"].as_array().unwrap().len(), 48);
    assert_eq!(b["events_last_hour"], 15, "{b}");
    assert!(b["last_seen"].is_string());
    assert!(v["generated_at"].is_string());

    // Beta stops; alpha goes on.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut silent = None;
    let mut i = 15;
    while Instant::now() < deadline {
        send(&mut alpha, &[line("alpha", i)]);
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
        let v = sources(&srv);
        if source(&v, "beta").is_some_and(|b| b["state"] == "silent") {
            silent = Some(v);
            break;
        }
    }
    let v = silent.expect("beta never became silent");
    let b = source(&v, "beta").unwrap();
    assert_eq!(
        b["since"], b["last_seen"],
        "silent since its last event: {b}"
    );
    assert_eq!(source(&v, "alpha").unwrap()["state"], "ok", "{v}");
    // Several more checks pass: still one alert for the episode.
    for _ in 0..15 {
        send(&mut alpha, &[line("alpha", i)]);
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = alerts_of(&srv, "mamori.sources.silent");
    while got.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = alerts_of(&srv, "mamori.sources.silent");
    }
    assert_eq!(got.len(), 1, "one alert per episode: {got:?}");
    let a = &got[0];
    assert!(a["title"].as_str().unwrap().contains("beta"), "{a}");
    assert_eq!(a["level"], "high");
    let d = &a["details"];
    assert!(d["description"].as_str().unwrap().contains("beta"), "{d}");
    assert!(
        d["description_ja"].as_str().unwrap().contains("beta"),
        "{d}"
    );
    assert!(
        d["description_ja"].as_str().unwrap().contains("ログ"),
        "{d}"
    );

    // Beta recovers.
    for j in 0..5 {
        send(&mut beta, &[line("beta", 100 + j)]);
    }
    let b = wait_state(&srv, "beta", "ok", Duration::from_secs(10));
    assert!(b["since"].is_null(), "{b}");
    // The monitor's gauges follow within a check interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, m) = crate::serve::http(srv.http, "GET", "/metrics", Some(&srv.token), &[], b"");
        assert_eq!(s, 200);
        let m = crate::text(&m);
        if m.contains("mamori_sources{state=\"silent\"} 0")
            && m.contains("mamori_sources{state=\"ok\"} 2")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Recovery closed the episode: no second alert.
    assert_eq!(alerts_of(&srv, "mamori.sources.silent").len(), 1);
    // Documented, with the shape the console reads.
    let (_, doc) = srv.get("/api/v1/openapi.json");
    let item = &doc["paths"]["/api/v1/sources"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["properties"]["sources"]["items"];
    assert_eq!(item["properties"]["hourly"]["minItems"], 48, "{doc}");
    // Without a token, nothing.
    let (s, _) = crate::serve::http(srv.http, "GET", "/api/v1/sources", None, &[], b"");
    assert_eq!(s, 401);
}

/// A host that sent ~100 events an hour for five hours (a forwarder's backlog, dated) and
/// then only 2 is `collapsed`, with one medium alert.
#[test]
fn a_host_whose_volume_collapses_is_collapsed() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{FAST}collapse_min_events = 50\n");
    let cfg = write_config(dir.path(), &extra);
    let srv = Server::start(&cfg, None);
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    let now = Utc::now();
    let hour = now - TimeDelta::seconds(now.timestamp() % 3600);
    let mut lines = Vec::new();
    for h in 2..=6 {
        for n in 0..100 {
            lines.push(dated(
                "gamma",
                hour - TimeDelta::hours(h) + TimeDelta::seconds(n * 30),
                n as usize,
            ));
        }
    }
    lines.push(line("gamma", 1));
    lines.push(line("gamma", 2));
    send(&mut c, &lines);
    let g = wait_state(&srv, "gamma", "collapsed", Duration::from_secs(20));
    assert_eq!(hourly_sum(&g), 502, "{g}");
    assert_eq!(g["events_last_hour"], 2, "{g}");
    let h = g["hourly"].as_array().unwrap();
    assert_eq!(h[47], 2);
    assert_eq!(h[46], 0);
    assert_eq!(h[45], 100);
    assert!(g["since"].is_string());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = alerts_of(&srv, "mamori.sources.collapsed");
    while got.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = alerts_of(&srv, "mamori.sources.collapsed");
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["level"], "medium");
    assert!(got[0]["details"]["description"]
        .as_str()
        .unwrap()
        .contains("100 an hour"));
}

fn stored(srv: &Server, q: &str, want: u64) {
    let hits = srv.search_until(q, want, Duration::from_secs(30));
    assert_eq!(hits.len() as u64, want, "{q}");
}

/// Counts survive a clean stop exactly, and a SIGKILL after a flush exactly; a SIGKILL right
/// after sending loses at most the last flush interval's counts and never counts twice.
#[test]
fn aggregates_are_exact_across_restarts_and_never_double_counted_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), FAST);
    let count = |srv: &Server| source(&sources(srv), "delta").map_or(0, hourly_sum);

    let srv = Server::start(&cfg, None);
    let token = srv.token.clone();
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    send(
        &mut c,
        &(0..300).map(|i| line("delta", i)).collect::<Vec<_>>(),
    );
    stored(&srv, "heartbeat AND host:delta", 300);
    assert_eq!(srv.stop(), Some(0));

    let srv = Server::start(&cfg, Some(token.clone()));
    assert_eq!(count(&srv), 300, "a clean stop keeps every count");
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    send(
        &mut c,
        &(0..200).map(|i| line("delta", i)).collect::<Vec<_>>(),
    );
    stored(&srv, "heartbeat AND host:delta", 500);
    // More than a flush interval, then SIGKILL.
    std::thread::sleep(Duration::from_millis(2500));
    srv.kill();

    let srv = Server::start(&cfg, Some(token.clone()));
    assert_eq!(count(&srv), 500, "flushed counts survive SIGKILL, once");
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    send(
        &mut c,
        &(0..100).map(|i| line("delta", i)).collect::<Vec<_>>(),
    );
    stored(&srv, "heartbeat AND host:delta", 600);
    srv.kill();

    let srv = Server::start(&cfg, Some(token));
    let n = count(&srv);
    assert!(
        (500..=600).contains(&n),
        "a SIGKILL loses at most the last flush interval and never counts twice: {n}"
    );
    drop(srv);
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn address_rows(data: &Path) -> Vec<mamori_store::AddressDay> {
    let db = mamori_store::SqliteAlertStore::open(&data.join("state.db")).unwrap();
    let today = Utc::now().date_naive();
    db.address_days(today - TimeDelta::days(1), today).unwrap()
}

/// 100 000 failed logins from 100 000 random public addresses: the address table holds at
/// most the per-day cap plus `0.0.0.0` (the rest), every event is counted, and the server's
/// memory stays bounded.
#[test]
fn a_flood_of_random_addresses_keeps_the_table_and_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{FAST}max_addresses_per_day = 1000\n");
    let cfg = write_config(dir.path(), &extra);
    let srv = Server::start(&cfg, None);
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    const N: u32 = 100_000;
    // A cheap deterministic generator over 11.0.0.0 – 99.255.255.255 (public space).
    let mut x: u32 = 0x9e37_79b9;
    let mut rss_max = 0;
    let start_rss = rss_kib(srv.pid());
    for chunk in 0..(N / 5000) {
        let lines: Vec<String> = (0..5000)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let a = 11 + (x >> 24) % 89;
                format!(
                    "<38>1 - edge sshd 7 - - Failed password for root from {a}.{}.{}.{} port 22 ssh2 n{}",
                    (x >> 16) & 255,
                    (x >> 8) & 255,
                    x & 255,
                    chunk * 5000 + i
                )
            })
            .collect();
        send(&mut c, &lines);
        rss_max = rss_max.max(rss_kib(srv.pid()));
    }
    // Every event counted once flushed.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let e = source(&sources(&srv), "edge").map_or(0, hourly_sum);
        rss_max = rss_max.max(rss_kib(srv.pid()));
        if e == u64::from(N) {
            break;
        }
        assert!(Instant::now() < deadline, "only {e} of {N} counted");
        std::thread::sleep(Duration::from_millis(500));
    }
    let rows = address_rows(&dir.path().join("data"));
    assert!(rows.len() <= 1001, "{} address rows", rows.len());
    let total: u64 = rows.iter().map(|r| r.events).sum();
    assert_eq!(total, u64::from(N), "every failed login counted");
    assert_eq!(
        rows.iter().map(|r| r.auth_failures).sum::<u64>(),
        u64::from(N)
    );
    let other = rows
        .iter()
        .find(|r| r.ip == mamori_store::OTHER_ADDRESS)
        .expect("the overflow row");
    assert!(other.events >= u64::from(N) - 1000, "{}", other.events);
    eprintln!(
        "flood: {} address rows, RSS {} MiB at start, {} MiB at most",
        rows.len(),
        start_rss / 1024,
        rss_max / 1024
    );
    assert!(
        rss_max < 512 * 1024,
        "RSS {} MiB for 100k events",
        rss_max / 1024
    );
}
