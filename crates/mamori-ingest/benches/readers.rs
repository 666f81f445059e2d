//! Reader throughput on corpus data: events/s and MB/s per reader (`MAMORI_CORPUS`, default
//! `../shared/corpus` from the project root). A reader whose corpus is missing is left out.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mamori_ingest::{discover, measure_readers, ReadOptions};

fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("MAMORI_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/corpus"
            ))
        });
    p.is_dir().then_some(p)
}

fn sets(c: &std::path::Path) -> Vec<(&'static str, Vec<PathBuf>)> {
    let evtx = discover(&[c.join("evtx")])
        .0
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "evtx"))
        .collect();
    let weblogs = discover(&[c.join("weblogs")])
        .0
        .into_iter()
        .filter(|f| {
            let n = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.starts_with("access_log")
                || ["acunetix.txt", "netsparker.txt", "w3af.txt"].contains(&n.as_str())
        })
        .collect();
    vec![
        ("evtx", evtx),
        ("jsonl", vec![c.join("bench/windows-flat.jsonl")]),
        (
            "syslog",
            vec![
                c.join("loghub/OpenSSH/OpenSSH_2k.log"),
                c.join("loghub/Linux/Linux_2k.log"),
            ],
        ),
        ("access_log", weblogs),
        ("vendor", vendor_file(c).into_iter().collect()),
        ("syslog_payload", wrapped_access(&c.join("weblogs"))),
        (
            "cloudtrail",
            discover(&[c.join("cloudtrail")])
                .0
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "json"))
                .collect(),
        ),
    ]
}

/// The appliance sample lines of `wazuh-ruleset-tests` (FortiGate, Cisco, Palo Alto, SonicWall,
/// Sophos, Check Point, CEF, …), 50 times over, as one headerless/mixed syslog file.
fn vendor_file(c: &std::path::Path) -> Option<PathBuf> {
    let dir = c.join("wazuh-ruleset-tests/tests");
    let mut lines = String::new();
    for f in [
        "fortigate",
        "fortiauth",
        "fortimail",
        "cisco_asa",
        "cisco_ftd",
        "pix",
        "paloalto",
        "SonicWall",
        "sophos_fw",
        "checkpoint_smart1",
        "openvpn_ldap",
        "fireeye",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{f}.ini"))).ok()?;
        for l in text.lines() {
            if let Some((_, v)) = l.strip_prefix("log ").and_then(|r| r.split_once(" = ")) {
                lines.push_str(v);
                lines.push('\n');
            }
        }
    }
    let path = std::env::temp_dir().join("mamori-bench-vendor.log");
    std::fs::write(&path, lines.repeat(50)).ok()?;
    Some(path)
}

/// The corpus's scanner access logs as nginx `access_log syslog:` sends them (a syslog header
/// in front of every line), written once to a temporary file: the payload dispatcher's cost
/// next to the plain `access_log` set.
fn wrapped_access(weblogs: &std::path::Path) -> Vec<PathBuf> {
    let out = std::env::temp_dir().join("mamori-bench-syslog-payload.log");
    let mut text = Vec::new();
    for name in ["acunetix.txt", "netsparker.txt", "w3af.txt"] {
        let Ok(data) = std::fs::read(weblogs.join("ocatak-apache-http-logs").join(name)) else {
            continue;
        };
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            text.extend_from_slice(b"<190>Nov 10 01:00:01 web1 nginx: ");
            text.extend_from_slice(line);
            text.push(b'\n');
        }
    }
    if text.is_empty() || std::fs::write(&out, text).is_err() {
        return Vec::new();
    }
    vec![out]
}

fn readers(crit: &mut Criterion) {
    let Some(c) = corpus() else {
        eprintln!("skipped: corpus not found");
        return;
    };
    let opts = ReadOptions::default();
    let mut group = crit.benchmark_group("readers");
    group.sample_size(10);
    for (name, files) in sets(&c) {
        if files.is_empty() {
            continue;
        }
        // One untimed pass for the figures (and the page cache).
        let fig = measure_readers(&files, &opts);
        eprintln!(
            "{name}: {} files, {} events, {:.1} MB, {:.0} events/s, {:.1} MiB/s (single pass)",
            fig.files,
            fig.events,
            fig.bytes as f64 / 1e6,
            fig.events_per_sec(),
            fig.mib_per_sec()
        );
        group.throughput(Throughput::Elements(fig.events));
        group.bench_function(name, |b| b.iter(|| measure_readers(&files, &opts)));
    }
    group.finish();
}

criterion_group!(benches, readers);
criterion_main!(benches);
