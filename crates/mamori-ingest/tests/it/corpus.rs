//! Every corpus file read with the expected counts and no errors.

use std::collections::HashMap;

use super::*;
use mamori_ingest::{discover, Format};
use serde_json::{Map, Value as Json};

fn events_of(path: &Path) -> Vec<Event> {
    let (r, ev) = read_all(path);
    assert_eq!(r.error_count, 0, "{}: {:?}", path.display(), r.errors);
    ev
}

/// EVTX: the exact per-file record counts of `RECORD_COUNTS.tsv` (`records<TAB>relative path`),
/// and the flattened fields equal to the benchmark file's for every record both have.
#[test]
fn evtx_record_counts_and_flattening_match_the_benchmark_file() {
    let Some(c) = corpus() else { return };
    let base = c.join("evtx/hayabusa-sample-evtx");
    let tsv =
        std::fs::read_to_string(c.join("evtx/hayabusa-sample-evtx.RECORD_COUNTS.tsv")).unwrap();
    let mut expected_total = 0;
    let mut read_total = 0;
    let mut unreadable = Vec::new();
    let mut by_key: HashMap<(String, String, String), Map<String, Json>> = HashMap::new();
    for line in tsv.lines() {
        let (count, rel) = line.split_once('\t').unwrap();
        let count: u64 = count.parse().unwrap();
        expected_total += count;
        let (report, events) = read_all(&base.join(rel));
        assert_eq!(report.format, Some(Format::Evtx), "{rel}");
        for e in &report.errors {
            unreadable.push(e.to_string());
        }
        assert_eq!(report.events, count, "{rel}");
        read_total += report.events;
        for e in events {
            assert!(
                e.timestamp.is_some()
                    && matches!(
                        e.origin,
                        mamori_ingest::Origin::File {
                            record: Some(_),
                            ..
                        }
                    )
            );
            let j = e.fields_json();
            let key = (
                j["Computer"].to_string(),
                j["EventRecordID"].to_string(),
                j["TimeCreated"].to_string(),
            );
            by_key.insert(key, j.as_object().cloned().unwrap_or_default());
        }
    }
    println!("EVTX records read: {read_total} of {expected_total}; unreadable: {unreadable:?}");
    assert_eq!(expected_total, 24_661);
    assert_eq!(read_total, expected_total);
    assert!(unreadable.is_empty());

    // The benchmark file also holds the 415 records of the held-out zerologon file (25,076 in
    // all), which has no EVTX here, and one EventForwarder record without an EventRecordID.
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (mut compared, mut fields) = (0, 0);
    for l in std::fs::read_to_string(c.join("bench/windows-flat.jsonl"))
        .unwrap()
        .lines()
    {
        let b: Map<String, Json> = serde_json::from_str(l).unwrap();
        let rid = b.get("EventRecordID").map(text).unwrap_or_default();
        let key = (b["Computer"].to_string(), rid, b["TimeCreated"].to_string());
        let Some(mine) = by_key.get(&key) else {
            continue;
        };
        compared += 1;
        for (k, v) in &b {
            // The benchmark keeps nested UserData elements as objects; we flatten their leaves.
            if v.is_object() {
                continue;
            }
            fields += 1;
            assert_eq!(mine.get(k).map(text), Some(text(v)), "{k} in {l}");
        }
    }
    println!("compared {compared} records, {fields} fields with the benchmark file");
    assert!(compared >= 24_600, "{compared}");
}

/// Sigma's regression data has each sample as EVTX and as evtx_dump JSON: both readers must
/// give the same events.
#[test]
fn sigma_regression_json_equals_evtx() {
    let Some(c) = corpus() else { return };
    let (files, errors) = discover(&[c.join("sigma/regression_data")]);
    assert!(errors.is_empty());
    let mut pairs = 0;
    for evtx in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "evtx"))
    {
        let json = evtx.with_extension("json");
        let (a, b) = (events_of(evtx), events_of(&json));
        assert_eq!(a.len(), b.len(), "{}", json.display());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(y.format, Format::Json);
            // The JSON was written by another tool: it trims strings, writes GUIDs upper-case
            // without braces and cuts times to microseconds.
            let norm = |v: &mamori_event::Value| {
                v.to_text()
                    .trim()
                    .trim_start_matches('{')
                    .trim_end_matches('}')
                    .to_lowercase()
            };
            for (name, value) in x.fields() {
                if name.as_str() == "TimeCreated" {
                    let (tx, ty) = (x.timestamp.unwrap(), y.timestamp.unwrap());
                    assert!(
                        (tx - ty).num_microseconds().unwrap().abs() < 1,
                        "{}",
                        json.display()
                    );
                    continue;
                }
                let other = y.get(name.as_str()).map(norm);
                assert_eq!(other, Some(norm(value)), "{name} in {}", json.display());
            }
        }
        pairs += 1;
    }
    assert_eq!(pairs, 202);
}

#[test]
fn loghub_logs_read_without_errors() {
    let Some(c) = corpus() else { return };
    for (rel, format) in [
        ("loghub/OpenSSH/OpenSSH_2k.log", Format::Syslog),
        ("loghub/Linux/Linux_2k.log", Format::Syslog),
        ("loghub/Apache/Apache_2k.log", Format::Syslog),
        ("loghub/Thunderbird/Thunderbird_2k.log", Format::Syslog),
        ("loghub/Proxifier/Proxifier_2k.log", Format::Syslog),
    ] {
        let (r, events) = read_all(&c.join(rel));
        assert_eq!(r.format, Some(format), "{rel}");
        assert_eq!(r.error_count, 0, "{rel}: {:?}", r.errors);
        assert_eq!(events.len(), 2000, "{rel}");
        assert!(events.iter().all(|e| e.get("message").is_some()), "{rel}");
    }
    // The Apache error log: timestamp and level from `[Sun Dec 04 04:47:44 2005] [error] …`.
    let (_, apache) = read_all(&c.join("loghub/Apache/Apache_2k.log"));
    assert!(apache
        .iter()
        .all(|e| e.timestamp.is_some() && e.get("log.level").is_some()));
    // Linux: `sshd(pam_unix)[pid]` is program sshd; its failures are parsed.
    let (_, linux) = read_all(&c.join("loghub/Linux/Linux_2k.log"));
    let failures = linux
        .iter()
        .filter(|e| e.get_str("event.action").as_deref() == Some("authentication_failure"))
        .count();
    assert!(failures > 300, "{failures}");
    assert!(
        linux
            .iter()
            .filter(|e| e.get_str("process.name").as_deref() == Some("su"))
            .count()
            > 100
    );
}

#[test]
fn weblogs_read_without_errors() {
    let Some(c) = corpus() else { return };
    let (files, errors) = discover(&[c.join("weblogs")]);
    assert!(errors.is_empty());
    let mut access_events = 0;
    for f in &files {
        let (r, events) = read_all(f);
        assert_eq!(r.error_count, 0, "{}: {:?}", f.display(), r.errors);
        let name = f.file_name().unwrap().to_string_lossy();
        if name.starts_with("access_log") || name.ends_with(".txt") && !name.contains("readme") {
            if r.skipped.is_some() {
                // access_log.6/.7/.8 hold one newline each.
                assert_eq!(r.skipped.as_deref(), Some("empty file"), "{name}");
                continue;
            }
            assert_eq!(r.format, Some(Format::AccessLog), "{}", f.display());
            access_events += events.len();
            assert!(events
                .iter()
                .all(|e| e.get("c-ip").is_some() && e.get("sc-status").is_some()));
        }
        if name.ends_with(".png") {
            assert_eq!(r.skipped.as_deref(), Some("unsupported format (png image)"));
        }
    }
    // 38,490 honeynet lines of which three are empty files' newlines, plus 6,539 + 7,314 + 3,996.
    assert_eq!(access_events, 38_487 + 6_539 + 7_314 + 3_996);
}

#[test]
fn cloudtrail_files_read_without_errors() {
    let Some(c) = corpus() else { return };
    let (files, _) = discover(&[c.join("cloudtrail")]);
    let mut records = 0;
    let mut actions: HashMap<String, usize> = HashMap::new();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
    {
        let (r, events) = read_all(f);
        assert_eq!(r.format, Some(Format::CloudTrail));
        assert_eq!(r.error_count, 0, "{:?}", r.errors);
        for e in &events {
            assert_eq!(e.format, Format::CloudTrail);
            assert!(e.timestamp.is_some());
            assert!(e.get("eventName").is_some() && e.get("event.outcome").is_some());
            *actions
                .entry(e.get_str("event.action").unwrap_or_default().into_owned())
                .or_default() += 1;
        }
        records += events.len();
    }
    assert_eq!(records, 2_900);
    assert!(actions.contains_key("StopLogging") && actions.contains_key("DeleteTrail"));
}

#[test]
fn otrf_json_and_auditd_read_without_errors() {
    let Some(c) = corpus() else { return };
    let base = c.join("otrf-security-datasets/unzipped/atomic");
    for (rel, format, count) in [
        ("aws/collection/ec2_proxy_s3_exfiltration_2020-09-14011940.json", Format::CloudTrail, 103),
        ("windows/credential_access/host/cmd_psexec_lsa_secrets_dump_2020-10-1903305471.json", Format::Json, 286),
        ("windows/credential_access/host/psh_lsass_memory_dump_comsvcs_2020-10-18T19500924.json", Format::Json, 184),
        ("windows/defense_evasion/host/cmd_bitsadmin_download_psh_script_2020-10-2302365189.json", Format::Json, 424),
        ("windows/other/raccine_samples_2020-10-18T05002422.json", Format::Json, 6),
        ("windows/other/raccine_simulation_mode_2020-10-18T05154752.json", Format::Json, 3),
        ("windows/persistence/host/cmd_userinitmprlogonscript_batch_2020-10-1922471810.json", Format::Json, 122),
        // 6 and 12 audit records: one and two audit events.
        ("linux/defense_evasion/host/sh_binary_padding_dd_2020-11-10081941.log", Format::Auditd, 1),
        ("linux/discovery/host/sh_arp_cache_2020-11-10074812.log", Format::Auditd, 2),
    ] {
        let (r, events) = read_all(&base.join(rel));
        assert_eq!(r.format, Some(format), "{rel}");
        assert_eq!(r.error_count, 0, "{rel}: {:?}", r.errors);
        assert_eq!(events.len(), count, "{rel}");
        assert!(events.iter().all(|e| e.timestamp.is_some()), "{rel}");
        if format == Format::Json {
            // NXLog shape: Provider_Name and Computer copied from SourceName/Source and Hostname.
            assert!(events.iter().all(|e| e.get("EventID").is_some_and(|v| matches!(v, mamori_event::Value::Int(_)))));
            assert!(events.iter().all(|e| e.get("Computer").is_some() && e.get("host.name").is_some()), "{rel}");
            assert!(events.iter().all(|e| e.logsource.product.as_ref().is_some_and(|p| p.as_str() == "windows")));
        }
    }
    let (_, arp) = read_all(&base.join("linux/discovery/host/sh_arp_cache_2020-11-10074812.log"));
    assert_eq!(
        arp[0].get_str("process.command_line").as_deref(),
        Some("arp -a")
    );
    assert_eq!(arp[0].get_str("a0").as_deref(), Some("arp"));
    assert_eq!(arp[0].get_str("exe").as_deref(), Some("/usr/sbin/arp"));
    // The honey-bucket CSV is not a log format we parse: still one generic event per line.
    let (r, csv) = read_all(&base.join("aws/discovery/AWS_S3_HoneyBucketLogs.csv"));
    assert_eq!((r.error_count, csv.len()), (0, 302));
}

/// The sshd, VPN, firewall and web lines of the Wazuh tests (`log N pass = …`): every line gives
/// an event with the line's message, and the sshd lines with a user or address get them.
#[test]
fn wazuh_sample_lines_all_give_events() {
    let Some(c) = corpus() else { return };
    let (files, _) = discover(&[c.join("wazuh-ruleset-tests/tests")]);
    let mut names = mamori_ingest::Interner::new();
    let (mut lines, mut ssh_with_ip) = (0, 0);
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "ini"))
    {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        if ![
            "sshd",
            "pam",
            "su",
            "sudo",
            "cisco_asa",
            "cisco_ftd",
            "fortigate",
            "paloalto",
            "iptables",
            "pfsense",
            "openvpn_ldap",
            "SonicWall",
            "web_appsec",
            "web_rules",
            "apache",
            "nginx",
            "firewalld",
            "junos",
            "dropbear",
            "syslog",
            "systemd",
            "doas",
        ]
        .contains(&stem.as_str())
        {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for l in text.lines() {
            let Some((head, line)) = l.split_once(" = ") else {
                continue;
            };
            if !head.starts_with("log ") {
                continue;
            }
            lines += 1;
            let origin = mamori_ingest::Origin::File {
                path: std::sync::Arc::from(f.as_path()),
                record: None,
                line: None,
                offset: 0,
            };
            let ev = if mamori_ingest::detect_bytes(line.as_bytes(), None)
                == mamori_ingest::Sniffed::Format(Format::AccessLog)
            {
                mamori_ingest::parse_access_log_line(line.as_bytes(), origin, &mut names).unwrap()
            } else {
                let ev =
                    mamori_ingest::parse_syslog_line(line.as_bytes(), origin, &mut names).unwrap();
                // A syslog message carrying an access line or JSON is that format's event.
                assert!(
                    ev.get("message").is_some() || ev.format != Format::Syslog,
                    "{line}"
                );
                ev
            };
            if stem == "sshd" && ev.get("source.ip").is_some() {
                ssh_with_ip += 1;
            }
        }
    }
    println!("wazuh lines: {lines}, sshd lines with source.ip: {ssh_with_ip}");
    assert!(lines > 300, "{lines}");
    assert!(ssh_with_ip > 30, "{ssh_with_ip}");
}
