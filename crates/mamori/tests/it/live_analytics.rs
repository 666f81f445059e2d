//! Issue #14 item 3: `mamori serve` runs the baselines and the identity directory on the live
//! stream. A contractor's slow export (a daily volume far above their own history) and
//! activity by the identity after their contract ended (the directory file is edited while the
//! server runs) are alerts with the seqs of their events; after a restart the learned baseline
//! is still there (the next anomalous day alerts without relearning).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{write_config, Server};

const VOLUME: &str = "mamori-analytics-volume";
const DEPARTED: &str = "mamori-analytics-departed-identity";

/// One access-log line of `kobayashi` on 2026-09-`day` at `hour`.
fn access(day: u32, hour: u32, minute: u32, bytes: u64) -> String {
    format!(
        "198.51.100.10 - kobayashi [{day:02}/Sep/2026:{hour:02}:{minute:02}:00 +0000] \"GET /crm/customers/export?rows=40&format=csv HTTP/1.1\" 200 {bytes} \"-\" \"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36\"\n"
    )
}

/// Ten ordinary days (about 10 KB a day), then `big` on `big_day`, then one line the day after.
fn export_log(days: std::ops::Range<u32>, big_day: u32) -> String {
    let mut s = String::new();
    for d in days {
        for (i, b) in [3_100, 3_400, 3_000 + u64::from(d) * 37].iter().enumerate() {
            s.push_str(&access(d, 1 + i as u32, 10, *b));
        }
    }
    for i in 0..5 {
        s.push_str(&access(big_day, 12, 10 + i, 110_000 + u64::from(i)));
    }
    s.push_str(&access(big_day + 1, 2, 0, 3_200));
    s
}

fn alerts_of(srv: &Server, rule: &str) -> Vec<Value> {
    let (s, v) = srv.get("/api/v1/alerts?limit=1000");
    assert_eq!(s, 200, "{v}");
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule_id"] == rule)
        .cloned()
        .collect()
}

fn wait_for(srv: &Server, rule: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = alerts_of(srv, rule);
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_raises_departed_identity_and_slow_export_live_and_keeps_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("identities.csv");
    let header = "kind,id,person,status,end_date,created\n";
    std::fs::write(
        &ids,
        format!("{header}account,kobayashi,小林 (委託),active,,\n"),
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[analytics]\nidentities = {:?}\nreload_interval_secs = 1\n",
            ids.display().to_string()
        ),
    );
    let srv = Server::start(&cfg, None);

    // The slow export: ten ordinary days, then five times 110 KB on the 11th.
    let (s, v) = srv.post(
        "/api/v1/upload?name=crm-access.log",
        &[],
        export_log(1..11, 11).as_bytes(),
    );
    assert_eq!(s, 200, "{v}");
    let volume = wait_for(&srv, VOLUME, 1);
    assert_eq!(
        volume.len(),
        1,
        "one volume alert for 2026-09-11: {volume:?}"
    );
    let a = &volume[0];
    assert_eq!(a["group_key"], "user.name=kobayashi");
    assert!(
        a["event_time"].as_str().unwrap().starts_with("2026-09-11"),
        "{a}"
    );
    assert_eq!(a["event_seqs"].as_array().unwrap().len(), 1, "{a}");
    let why = a["details"]["fields"]["why"].as_str().unwrap();
    assert!(why.contains("robust z"), "{why}");
    assert!(
        a["details"]["title_ja"]
            .as_str()
            .unwrap()
            .contains("転送量"),
        "{a}"
    );
    // An active identity is not "departed".
    assert!(alerts_of(&srv, DEPARTED).is_empty());

    // The contract ends; the directory file is edited while the server runs, and the account
    // still logs in on the VPN (syslog over TCP).
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(
        &ids,
        format!("{header}account,kobayashi,小林 (委託),contractor_ended,2026-09-25,\n"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    c.write_all(
        b"<38>1 2026-10-01T13:05:00.000Z vpn01 vpnd 4242 AUTH [auth@32473 user=\"kobayashi\" src=\"198.51.100.10\" result=\"success\" method=\"password\"] user kobayashi authenticated from 198.51.100.10, tunnel up\n",
    )
    .unwrap();
    c.flush().unwrap();
    let departed = wait_for(&srv, DEPARTED, 1);
    assert_eq!(departed.len(), 1, "{departed:?}");
    let d = &departed[0];
    assert_eq!(d["level"], "critical");
    assert_eq!(d["event_seqs"].as_array().unwrap().len(), 1, "{d}");
    assert!(d["details"]["fields"]["why"]
        .as_str()
        .unwrap()
        .contains("contractor_ended"));
    // The VPN event is the one cited.
    let seq = d["event_seqs"][0].as_u64().unwrap();
    let hits = srv.search_until("host:vpn01", 1, Duration::from_secs(5));
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["seq"].as_u64(), Some(seq), "{}", hits[0]);
    let token = srv.token.clone();
    assert_eq!(srv.stop(), Some(0), "clean shutdown saves the state");

    // Restart: the baseline learned before is still there, so one more anomalous day alerts
    // at once (a fresh baseline would need five ordinary days first).
    std::fs::write(
        &ids,
        format!("{header}account,kobayashi,小林 (委託),active,,\n"),
    )
    .unwrap();
    let srv = Server::start(&cfg, Some(token));
    let mut s2 = String::new();
    for i in 0..5 {
        s2.push_str(&access(13, 12, 10 + i, 120_000));
    }
    s2.push_str(&access(14, 2, 0, 3_300));
    let (s, v) = srv.post("/api/v1/upload?name=crm-access-2.log", &[], s2.as_bytes());
    assert_eq!(s, 200, "{v}");
    let volume = wait_for(&srv, VOLUME, 2);
    assert_eq!(volume.len(), 2, "{volume:?}");
    assert!(volume
        .iter()
        .any(|a| a["event_time"].as_str().unwrap().starts_with("2026-09-13")));
}
