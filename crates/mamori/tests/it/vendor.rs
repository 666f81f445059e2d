//! Appliance formats end to end (issue #13): a VPN password spray written by the simulator in
//! the appliance's own format raises the VPN rules — written once against the normalised
//! fields — in `hunt` (FortiGate SSL-VPN key=value files without a syslog header, and Cisco ASA
//! syslog) and in `serve` (the FortiGate lines sent over TCP syslog as the appliance sends them,
//! `<189>date=… time=…`).

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{write_config, Server};
use crate::{mamori, text};

/// The simulator's attacker address in `vpn-intrusion`.
const ATTACKER: &str = "89.160.20.115";

fn simulate(dir: &Path, format: Option<&str>) -> std::path::PathBuf {
    let out = dir.join(format.unwrap_or("default"));
    let o = out.to_str().unwrap();
    let mut args = vec![
        "simulate",
        "vpn-intrusion",
        "--out",
        o,
        "--seed",
        "5",
        "--days",
        "10",
        "--events-per-day",
        "300",
    ];
    if let Some(f) = format {
        args.extend(["--vpn-format", f]);
    }
    let sim = mamori(&args);
    assert_eq!(sim.status.code(), Some(0), "{}", text(&sim.stderr));
    out
}

fn hunt_rows(out: &Path) -> Vec<Value> {
    let timeline = out.join("timeline.jsonl");
    let logs = out.join("logs");
    let hunt = mamori(&[
        "hunt",
        logs.to_str().unwrap(),
        "--rules",
        "rules",
        "--format",
        "jsonl",
        "-o",
        timeline.to_str().unwrap(),
    ]);
    assert_eq!(hunt.status.code(), Some(0), "{}", text(&hunt.stderr));
    std::fs::read_to_string(&timeline)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn correlation_names_attacker(rows: &[Value], title: &str) -> bool {
    rows.iter()
        .any(|r| r["rule"]["title"] == title && r["details"].to_string().contains(ATTACKER))
}

#[test]
fn fortigate_spray_in_the_appliance_format_is_found_by_hunt() {
    let dir = tempfile::tempdir().unwrap();
    let out = simulate(dir.path(), None);
    let vpn = std::fs::read_to_string(out.join("logs/vpn.log")).unwrap();
    // The default VPN format of this scenario is the FortiGate's own, without syslog header.
    let first = vpn.lines().next().unwrap();
    assert!(
        first.starts_with("date=") && first.contains("devid=\"FGT"),
        "{first}"
    );
    assert!(vpn.contains("action=\"ssl-login-fail\""));
    let rows = hunt_rows(&out);
    assert!(
        correlation_names_attacker(&rows, "VPN Password Spraying"),
        "no spray alert naming {ATTACKER}"
    );
    assert!(correlation_names_attacker(
        &rows,
        "VPN Login Success After Password Spraying"
    ));
}

#[test]
fn the_same_rules_find_the_spray_on_a_cisco_asa() {
    let dir = tempfile::tempdir().unwrap();
    let out = simulate(dir.path(), Some("cisco-asa"));
    let vpn = std::fs::read_to_string(out.join("logs/vpn.log")).unwrap();
    assert!(vpn.contains("%ASA-6-716039: Group <"));
    let rows = hunt_rows(&out);
    assert!(correlation_names_attacker(&rows, "VPN Password Spraying"));
    assert!(correlation_names_attacker(
        &rows,
        "VPN Login Success After Password Spraying"
    ));
}

#[test]
fn fortigate_spray_over_tcp_syslog_raises_the_spray_alert_in_serve() {
    let dir = tempfile::tempdir().unwrap();
    let out = simulate(dir.path(), None);
    let vpn = std::fs::read_to_string(out.join("logs/vpn.log")).unwrap();
    let srv = Server::start(&write_config(dir.path(), ""), None);
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    // As a FortiGate sends it: `<PRI>` then the key=value body, no timestamp or host header.
    let framed: String = vpn.lines().map(|l| format!("<189>{l}\n")).collect();
    c.write_all(framed.as_bytes()).unwrap();
    c.flush().unwrap();
    let sent = Instant::now();
    let titles = |v: &Value| -> Vec<(String, String)> {
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["title"].as_str().unwrap_or_default().to_owned(),
                    a["group_key"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let want = format!("source.ip={ATTACKER}");
    loop {
        let (s, v) = srv.get("/api/v1/alerts?min_level=low");
        assert_eq!(s, 200, "{v}");
        let t = titles(&v);
        let has = |title: &str| t.iter().any(|(a, g)| a == title && *g == want);
        if has("VPN Password Spraying") && has("VPN Login Success After Password Spraying") {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "no spray alerts for {want} after 20 s: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The stored events carry the normalised fields and the vendor's own.
    let hits = srv.search_until(
        &format!("source.ip:{ATTACKER} AND event.outcome:failure"),
        23,
        Duration::from_secs(5),
    );
    assert_eq!(hits.len(), 23);
    let f = &hits[0]["fields"];
    assert_eq!(f["observer.vendor"], "Fortinet");
    assert_eq!(f["event.action"], "vpn_login");
    assert_eq!(f["remip"], ATTACKER);
    assert_eq!(f["mamori.format"], "fortigate");
}
