use std::io::Write;

use crate::{corpus, mamori, text};

#[test]
fn quick_start_sample_finds_the_attack_chain() {
    let out = mamori(&["hunt", "examples/sample", "--rules", "rules"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    for title in [
        "SSH Brute Force From One Source",
        "SSH Password Spraying",
        "SSH Login Success After Brute Force",
        "New Local Linux User Created",
        "SQL Injection Attempt In Web Request",
        "Backup Or Shadow Copy Deletion",
        "Windows Security Log Cleared",
        "Member Added To A Privileged Group",
    ] {
        assert!(csv.contains(title), "missing {title} in\n{csv}");
    }
    // sorted by time
    let times: Vec<&str> = csv.lines().skip(1).map(|l| &l[..24]).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    let summary = text(&out.stderr);
    assert!(summary.contains("Events read: 137"), "{summary}");
    assert!(summary.contains("critical (重大)"), "{summary}");
}

#[test]
fn exit_codes_scripts_can_trust() {
    let out = mamori(&[
        "hunt",
        "examples/sample",
        "--rules",
        "rules",
        "--fail-on-detection",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("quiet.log");
    std::fs::write(
        &quiet,
        "Mar  2 01:10:00 h sshd[1]: Server listening on 0.0.0.0 port 22.\n",
    )
    .unwrap();
    let out = mamori(&[
        "hunt",
        quiet.to_str().unwrap(),
        "--rules",
        "rules",
        "--fail-on-detection",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "nothing detected");
    let out = mamori(&["hunt", "examples/sample", "--rules", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does not exist"));
    // Issue #14: the default pack is embedded; no rules at all is the usage error.
    let out = mamori(&["hunt", "examples/sample", "--no-default-rules"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--no-default-rules without --rules is a usage error"
    );
    let out = mamori(&[
        "hunt",
        "examples/sample",
        "--rules",
        "rules",
        "--input-format",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn csv_neutralises_formulas_and_jsonl_carries_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut f = std::fs::File::create(&log).unwrap();
    writeln!(
        f,
        r#"203.0.113.9 - - [02/Mar/2026:01:00:00 +0000] "GET /a?id=1%20or%201=1 HTTP/1.1" 200 10 "-" "=cmd|' /C calc'!A0 sqlmap""#
    )
    .unwrap();
    drop(f);
    let csv_path = dir.path().join("t.csv");
    let out = mamori(&[
        "hunt",
        log.to_str().unwrap(),
        "-r",
        "rules",
        "-o",
        csv_path.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    // The scanner's requests are reported as one episode (rules/web/scanner_episodes.yml).
    assert!(
        csv.contains("Web Vulnerability Scanner Activity From One Source"),
        "{csv}"
    );
    for line in csv.lines().skip(1) {
        for cell in line.split(',') {
            let c = cell.trim_start_matches('"');
            assert!(!c.starts_with('='), "formula cell in {line}");
        }
    }
    let out = mamori(&[
        "hunt",
        log.to_str().unwrap(),
        "-r",
        "rules",
        "--format",
        "jsonl",
        "-q",
    ]);
    let first: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["event"]["source.ip"], "203.0.113.9");
    assert!(first["rule"]["tags"].as_array().is_some());
}

#[test]
fn rules_check_lists_failures_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.yml"),
        "title: ok\nlogsource: {product: linux}\ndetection:\n  s: {a: b}\n  condition: s\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.yml"), "title: bad\nlogsource: {product: linux}\ndetection:\n  s: {a: b}\n  condition: s\n  condition: t\n").unwrap();
    let out = mamori(&["rules", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(s.contains("bad.yml:6"), "{s}");
    assert!(s.contains("duplicate key `condition`"), "{s}");
    assert!(
        s.contains("1 rules, 0 correlations, 0 filters loaded; 1 failed"),
        "{s}"
    );
}

#[test]
fn bad_input_is_reported_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.jsonl");
    std::fs::write(&p, "{\"EventID\":1102,\"Channel\":\"Security\",\"TimeCreated\":\"2026-01-01T00:00:00Z\"}\n{not json\n{\"EventID\":1102,\"Channel\":\"Security\",\"TimeCreated\":\"2026-01-01T00:00:01Z\"}\n").unwrap();
    std::fs::write(
        dir.path().join("blob.bin"),
        [0u8, 1, 2, 3, 0, 0, 255, 254, 0, 7],
    )
    .unwrap();
    let out = mamori(&["hunt", dir.path().to_str().unwrap(), "-r", "rules"]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(err.contains("mixed.jsonl:2"), "{err}");
    assert!(err.contains("blob.bin: skipped"), "{err}");
    assert_eq!(
        text(&out.stdout)
            .matches("Windows Security Log Cleared")
            .count(),
        2
    );
}

#[test]
fn corpus_evtx_hunt_reads_every_record() {
    let Some(c) = corpus() else { return };
    let evtx = c.join("evtx");
    let out = mamori(&[
        "hunt",
        evtx.to_str().unwrap(),
        "-r",
        "rules",
        "-q",
        "--format",
        "jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let out = mamori(&["hunt", evtx.to_str().unwrap(), "-r", "rules"]);
    let err = text(&out.stderr);
    // 24,661 records are on disk (RECORD_COUNTS.tsv); the corpus README's 25,076 includes 415
    // records of a file that is not part of this corpus.
    assert!(
        err.contains("evtx              24661 events in 593 files"),
        "{err}"
    );
}

/// Issue #14 item 7: the default pack is embedded, so `hunt` needs no `--rules`; `--rules`
/// adds (a file identical to an embedded one is read once) and `--no-default-rules` replaces.
#[test]
fn embedded_default_rules_need_no_flag_and_rules_add_or_replace() {
    let plain = mamori(&["hunt", "examples/sample", "-q"]);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));
    let with_dir = mamori(&["hunt", "examples/sample", "--rules", "rules", "-q"]);
    assert_eq!(text(&plain.stdout), text(&with_dir.stdout));
    assert!(
        text(&plain.stdout).contains("Security Log Cleared"),
        "{}",
        text(&plain.stdout)
    );
    let only_linux = mamori(&[
        "hunt",
        "examples/sample",
        "--no-default-rules",
        "--rules",
        "rules/linux",
        "-q",
    ]);
    assert_eq!(
        only_linux.status.code(),
        Some(0),
        "{}",
        text(&only_linux.stderr)
    );
    let rows = text(&only_linux.stdout);
    assert!(rows.lines().count() > 1 && rows.lines().count() < plain_rows(&plain));
    assert!(!rows.contains("Security Log Cleared"), "{rows}");
    let out = mamori(&["hunt", "examples/sample", "--no-default-rules"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

fn plain_rows(out: &std::process::Output) -> usize {
    text(&out.stdout).lines().count()
}

/// Issue #14 item 2: with `--sigma-signals low`, low-level Sigma matches are signal rows (not
/// alerts) that add risk to their source address; two different kinds of probe from one
/// address cross a lowered threshold (45: 25 each, decaying), and the risk row cites both lines.
#[test]
fn low_sigma_rules_can_feed_risk_instead_of_alerting() {
    let dir = tempfile::tempdir().unwrap();
    let ff = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:129.0) Gecko/20100101 Firefox/129.0";
    let log = format!(
        "203.0.113.9 - - [02/Mar/2026:02:00:40 +0000] \"GET /.git/config HTTP/1.1\" 200 100 \"-\" \"{ff}\"\n\
         203.0.113.9 - - [02/Mar/2026:02:01:40 +0000] \"GET http://www.example.com/ HTTP/1.1\" 200 100 \"-\" \"{ff}\"\n"
    );
    std::fs::write(dir.path().join("access.log"), log).unwrap();
    let d = dir.path().to_str().unwrap();
    let rows = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["hunt", d, "--format", "jsonl", "-q", "--learning-days", "0"];
        args.extend_from_slice(extra);
        let out = mamori(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let plain = rows(&[]);
    assert_eq!(plain.len(), 2);
    assert!(plain.iter().all(|r| r["kind"] == "detection"), "{plain:?}");
    let risk = rows(&["--sigma-signals", "low", "--risk-threshold", "45"]);
    let kinds: Vec<&str> = risk.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "signal").count(),
        2,
        "{risk:?}"
    );
    let alert: Vec<&serde_json::Value> = risk.iter().filter(|r| r["kind"] == "risk").collect();
    assert_eq!(alert.len(), 1, "{risk:?}");
    assert_eq!(alert[0]["details"]["address"], "203.0.113.9");
    let cited = alert[0]["details"]["signals"].as_str().unwrap();
    assert!(
        cited.contains("access.log:1") && cited.contains("access.log:2"),
        "{cited}"
    );
    assert!(alert[0]["details"]["why_ja"]
        .as_str()
        .unwrap()
        .contains("しきい値"));
    // Medium and above always alert.
    let out = mamori(&["hunt", d, "--sigma-signals", "medium"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
