//! Issue #15, the soak of "Done when": every structure of `mamori serve` keyed by something a
//! sender chooses is capped. A flood of distinct addresses and account names over real syslog
//! sockets (TCP and UDP) fills each cap set small in the config; the gauges stay at the cap,
//! the drops are counted and each structure raises exactly one "state under pressure" alert.
//! (`mamori bench distinct-sources` is the 5k/s, 10-minute version with RSS.)

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::repo;
use crate::serve::Server;

const CAP: usize = 40;
/// Distinct addresses (and accounts) sent: several times the cap.
const N: usize = 300;

fn metric(srv: &Server, name: &str) -> f64 {
    srv.metric(name)
        .unwrap_or_else(|| panic!("no metric {name} in:\n{}", srv.metrics_text()))
}

fn state(srv: &Server, family: &str, structure: &str) -> f64 {
    metric(srv, &format!("{family}{{structure=\"{structure}\"}}"))
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

/// A public-looking address per `i` (198.51.100.0/24 and neighbours are documentation ranges,
/// which source health would not count as external; 11.x is not).
fn addr(i: usize) -> String {
    format!("11.{}.{}.{}", i / 250, i % 250 + 1, i % 7 + 1)
}

#[test]
fn a_flood_of_distinct_addresses_and_accounts_is_capped_counted_and_alerted_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mamori.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {data:?}\n[syslog]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [detection]\nrules = [{rules:?}]\nreload_interval_secs = 0\n\
             [sources]\nflush_interval_secs = 1\ncheck_interval_secs = 1\nmax_addresses_per_day = {CAP}\n\
             [analytics]\nmax_accounts = {CAP}\n[analytics.risk]\nmax_entities = {CAP}\n",
            data = dir.path().join("data").display().to_string(),
            rules = repo().join("rules").display().to_string(),
        ),
    )
    .unwrap();
    let srv = Server::start(&cfg, None);
    let now = chrono::Utc::now();
    let head = now.format("%b %e %H:%M:%S");
    // TCP: exploit probes the web server answered 404, each from a new address (a failed
    // probe adds risk to its public address: one risk entity per address).
    let probes: String = (0..N)
        .map(|i| {
            format!(
                "<190>{head} web01 nginx: {} - - [{}] \"GET /cgi-bin/../../etc/passwd HTTP/1.1\" 404 153 \"-\" \"curl/8.5\"\n",
                addr(i),
                now.format("%d/%b/%Y:%H:%M:%S +0000")
            )
        })
        .collect();
    let mut tcp = TcpStream::connect(srv.tcp).unwrap();
    tcp.write_all(probes.as_bytes()).unwrap();
    tcp.flush().unwrap();
    // UDP: forged VPN logins, each for a new account (one baseline per account).
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stamp = now.format("%Y-%m-%dT%H:%M:%SZ");
    for i in 0..N {
        let line = format!(
            "<190>1 {stamp} vpn01 vpnd 1 AUTH [auth@32473 user=\"guest{i}\" src=\"{}\" result=\"success\" method=\"password\"] ok",
            addr(i)
        );
        udp.send_to(line.as_bytes(), srv.udp).unwrap();
        if i % 50 == 49 {
            // Loopback UDP still has a receive buffer: pace the burst.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let total = (2 * N) as f64;
    assert!(
        wait_until(Duration::from_secs(120), || metric(
            &srv,
            "mamori_events_matched_total"
        ) >= total),
        "detection did not see the flood: {}",
        srv.metrics_text()
    );
    // Source health judges (and reports its caps) every second.
    assert!(
        wait_until(Duration::from_secs(30), || state(
            &srv,
            "mamori_state_pressure_episodes_total",
            "source_addresses_per_day"
        ) >= 1.0),
        "{}",
        srv.metrics_text()
    );
    let text = srv.metrics_text();
    for s in [
        "risk_entities",
        "analytics_accounts",
        "source_addresses_per_day",
    ] {
        let entries = state(&srv, "mamori_state_entries", s);
        let dropped = state(&srv, "mamori_state_dropped_total", s);
        assert_eq!(state(&srv, "mamori_state_limit", s), CAP as f64, "{s}");
        // The evicting structures drop a tenth at a time; none ever holds more than the cap.
        assert!(
            entries <= CAP as f64 && entries >= 0.9 * CAP as f64 - 1.0,
            "{s}: {entries} entries\n{text}"
        );
        assert!(
            dropped >= (N - CAP) as f64,
            "{s}: {dropped} dropped\n{text}"
        );
        assert_eq!(
            state(&srv, "mamori_state_pressure_episodes_total", s),
            1.0,
            "{s}: one episode\n{text}"
        );
        assert_eq!(
            state(&srv, "mamori_state_pressure", s),
            1.0,
            "{s}: under pressure\n{text}"
        );
    }
    // Source health counts the addresses beyond the cap together: exactly the cap is kept.
    assert_eq!(
        state(&srv, "mamori_state_entries", "source_addresses_per_day"),
        CAP as f64
    );
    let (s, v) = srv.get("/api/v1/alerts?rule_id=mamori.state.pressure&limit=100");
    assert_eq!(s, 200, "{v}");
    let alerts = v["alerts"].as_array().unwrap();
    let of = |structure: &str| -> Vec<&Value> {
        alerts
            .iter()
            .filter(|a| a["details"]["structure"] == structure)
            .collect()
    };
    for (structure, lost) in [
        ("risk_entities", "may not reach the risk threshold"),
        ("analytics_accounts", "learn again from scratch"),
        ("source_addresses_per_day", "counted under 0.0.0.0"),
    ] {
        let a = of(structure);
        assert_eq!(a.len(), 1, "one alert per episode of {structure}: {v}");
        let d = &a[0]["details"];
        assert!(
            d["description"].as_str().unwrap().contains(lost),
            "{structure}: {d}"
        );
        assert!(
            !d["description_ja"].as_str().unwrap().is_empty() && d["title_ja"].is_string(),
            "{d}"
        );
    }
    assert!(of("sources").is_empty(), "two sources only: {v}");
}
