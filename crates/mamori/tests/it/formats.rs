//! Formats end to end (issue #13): payloads inside syslog in `serve` and `hunt`, error logs,
//! old and new sshd variants, channel names in any case, and a hunt summary that says what it
//! did not understand.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{http, write_config, Server};
use crate::{mamori, text};

/// nginx combined format with an SQL injection and a scanner's user agent.
const ACCESS: &str = r#"203.0.113.77 - - [10/Nov/2026:10:00:01 +0900] "GET /item.php?id=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1" 200 512 "-" "sqlmap/1.7.2#stable (https://sqlmap.org)""#;

/// The same line as nginx `access_log syslog:server=…` sends it.
fn wrapped() -> String {
    format!("<190>Nov 10 01:00:01 web1 nginx: {ACCESS}")
}

/// Hunts `path` with the repository's rules; the JSONL rows.
fn hunt_rows(path: &Path, rules: &str) -> Vec<Value> {
    let out = mamori(&[
        "hunt",
        path.to_str().unwrap(),
        "--rules",
        rules,
        "--format",
        "jsonl",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rule_titles(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r["rule"]["title"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn access_line_over_tcp_syslog_raises_the_web_alert_and_metrics_say_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&write_config(dir.path(), ""), None);
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    let lines = format!(
        "{}\nplain words no format at all\n<14>Nov 10 01:00:02 app1 api: {{\"broken\": \n",
        wrapped()
    );
    c.write_all(lines.as_bytes()).unwrap();
    c.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let (s, v) = srv.get("/api/v1/alerts");
        assert_eq!(s, 200, "{v}");
        let found = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["title"] == "SQL Injection Attempt In Web Request")
            .cloned();
        if let Some(a) = found {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no web alert for an access line sent over syslog: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(alert["level"], "high", "{alert}");
    let (s, m) = http(srv.http, "GET", "/metrics", Some(&srv.token), &[], b"");
    assert_eq!(s, 200);
    let m = text(&m);
    for want in [
        "mamori_events_embedded_total{source=\"syslog_tcp\",format=\"access-log\"} 1",
        "mamori_events_by_format_total{source=\"syslog_tcp\",format=\"access-log\"} 1",
        "mamori_events_unparsed_total{source=\"syslog_tcp\"} 1",
        "mamori_payload_unparsed_total{source=\"syslog_tcp\"} 1",
    ] {
        assert!(m.contains(want), "/metrics lacks `{want}`:\n{m}");
    }
    srv.kill();
}

#[test]
fn the_same_access_line_with_and_without_a_syslog_header_gives_the_same_detections() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("access.log");
    let sys = dir.path().join("messages");
    std::fs::write(&plain, format!("{ACCESS}\n")).unwrap();
    std::fs::write(&sys, format!("{}\n", wrapped())).unwrap();
    let a = hunt_rows(&plain, "rules");
    let b = hunt_rows(&sys, "rules");
    let titles = rule_titles(&a);
    assert!(
        titles.contains("SQL Injection Attempt In Web Request"),
        "{titles:?}"
    );
    assert_eq!(titles, rule_titles(&b));
    // Same time instant (the access line's own zone wins over the zone-less syslog header).
    assert_eq!(a[0]["timestamp"], b[0]["timestamp"]);
    // The syslog header is kept on the payload's event.
    let ev = &b[0]["event"];
    assert_eq!(ev["log.syslog.hostname"], "web1", "{ev}");
    assert_eq!(ev["log.syslog.priority"], 190, "{ev}");
    assert_eq!(ev["source.ip"], "203.0.113.77", "{ev}");
}

const FIELD_RULES: &str = r#"title: Apache error shows a shell
id: 11111111-1111-4111-8111-111111111111
logsource:
  service: apache
detection:
  selection:
    log.level: error
    source.ip: 10.0.0.5
    message|contains: 'no job control in this shell'
  condition: selection
level: high
---
title: nginx error names the request
id: 22222222-2222-4222-8222-222222222222
logsource:
  service: nginx
detection:
  selection:
    http.request.method: GET
    url.path: /up/shell.php
    url.query|contains: 'cmd='
    source.ip: 198.51.100.23
  condition: selection
level: high
---
title: sshd invalid user (old and new wording)
id: 33333333-3333-4333-8333-333333333333
logsource:
  product: linux
  service: sshd
detection:
  selection:
    event.action: ssh_invalid_user
    event.outcome: failure
  condition: selection
level: low
"#;

#[test]
fn error_logs_and_old_and_new_sshd_variants_are_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(
        logs.join("error_log"),
        "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties\n\
         [Tue Sep 30 11:30:13.262255 2014] [core:error] [pid 20101] [client 99.47.227.95:34567] AH00037: Symbolic link not allowed: /var/www/x\n\
         [Sun Dec 04 04:52:15 2005] [error] [client 10.0.0.5] sh: no job control in this shell\n",
    )
    .unwrap();
    std::fs::write(
        logs.join("nginx-error.log"),
        "2026/11/10 01:02:03 [error] 1234#1234: *56 FastCGI sent in stderr: \"PHP message: PHP Warning:  system(): Unable to fork [id] in /var/www/html/up/shell.php on line 3\" while reading response header from upstream, client: 198.51.100.23, server: shop.example.jp, request: \"GET /up/shell.php?cmd=id HTTP/1.1\", host: \"shop.example.jp\"\n",
    )
    .unwrap();
    // OpenSSH 3.x `Illegal user` next to today's wording, and the old `illegal user` failures
    // that must still count towards a brute force.
    let mut auth = String::from(
        "Nov 10 01:00:00 h sshd[10]: Illegal user test from 192.0.2.10\n\
         Nov 10 01:00:00 h sshd[11]: Invalid user admin from 192.0.2.11 port 4242\n",
    );
    for i in 0..12 {
        auth.push_str(&format!(
            "Nov 10 01:01:{i:02} h sshd[2{i}]: Failed password for illegal user guest{i} from 192.0.2.99 port {} ssh2\n",
            40000 + i
        ));
    }
    std::fs::write(logs.join("auth.log"), auth).unwrap();
    let rules = dir.path().join("field_rules.yml");
    std::fs::write(&rules, FIELD_RULES).unwrap();

    let rows = hunt_rows(&logs, rules.to_str().unwrap());
    let titles = rule_titles(&rows);
    assert!(titles.contains("Apache error shows a shell"), "{titles:?}");
    assert!(
        titles.contains("nginx error names the request"),
        "{titles:?}"
    );
    let invalid: BTreeSet<String> = rows
        .iter()
        .filter(|r| r["rule"]["title"] == "sshd invalid user (old and new wording)")
        .map(|r| r["event"]["user.name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        invalid,
        BTreeSet::from(["test".to_owned(), "admin".to_owned()])
    );
    let apache = rows
        .iter()
        .find(|r| r["rule"]["title"] == "Apache error shows a shell")
        .unwrap();
    assert_eq!(apache["timestamp"], "2005-12-04T04:52:15.000Z");

    // The old wording feeds the repository's brute-force correlation.
    let rows = hunt_rows(&logs, "rules");
    let brute = rows
        .iter()
        .find(|r| r["rule"]["title"] == "SSH Brute Force From One Source");
    assert!(brute.is_some(), "{:?}", rule_titles(&rows));
}

#[test]
fn a_lowercase_security_channel_still_selects_security_rules() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("export.jsonl");
    // As some exporters write it (the OTRF datasets mix `Security` and `security`), and with
    // the event data nested as a JSON string.
    std::fs::write(
        &f,
        concat!(
            r#"{"EventID":1102,"Channel":"security","Hostname":"DC1","SourceName":"Microsoft-Windows-Eventlog","@timestamp":"2026-11-10T01:00:00Z"}"#,
            "\n",
            r#"{"host":"collector","message":"{\"EventID\":1102,\"Channel\":\"SECURITY\",\"Computer\":\"DC2\",\"TimeCreated\":\"2026-11-10T02:00:00Z\"}"}"#,
            "\n"
        ),
    )
    .unwrap();
    let rows = hunt_rows(&f, "rules");
    let hosts: BTreeSet<String> = rows
        .iter()
        .filter(|r| r["rule"]["title"] == "Windows Security Log Cleared")
        .map(|r| r["host"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        hosts,
        BTreeSet::from(["DC1".to_owned(), "DC2".to_owned()]),
        "{rows:?}"
    );
}

#[test]
fn a_mixed_folder_summary_names_formats_lines_not_understood_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("mixed");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(
        logs.join("messages"),
        format!("{}\nstray text\n", wrapped()),
    )
    .unwrap();
    std::fs::write(
        logs.join("firewall.txt"),
        "<ev><src>192.0.2.1</src><act>deny</act></ev>\n<ev><src>192.0.2.2</src><act>allow</act></ev>\n",
    )
    .unwrap();
    // Plain key=value lines are read by the key=value reader: understood, no warning.
    std::fs::write(
        logs.join("appliance.log"),
        "ts=1 src=192.0.2.1 dst=198.51.100.1 action=deny\nts=2 src=192.0.2.2 dst=198.51.100.1 action=allow\n",
    )
    .unwrap();
    std::fs::write(logs.join("notes.txt"), "hello\nworld\n").unwrap();
    std::fs::write(
        logs.join("error.log"),
        "2026/11/10 01:02:03 [crit] 7#7: *9 open() \"/etc/passwd\" failed (13: Permission denied), client: 192.0.2.4, server: _, request: \"GET /../../etc/passwd HTTP/1.1\"\n",
    )
    .unwrap();
    std::fs::write(logs.join("access.log"), format!("{ACCESS}\n")).unwrap();
    let out = mamori(&["hunt", logs.to_str().unwrap(), "--rules", "rules"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let line_of = |name: &str| {
        err.lines()
            .find(|l| l.contains(&format!("{name}: ")) && l.contains(" events"))
            .unwrap_or_else(|| panic!("no summary line for {name}:\n{err}"))
            .to_owned()
    };
    let messages = line_of("messages");
    assert!(messages.contains(": syslog ("), "{messages}");
    assert!(messages.contains("read as access-log: 1"), "{messages}");
    assert!(messages.contains("1 lines not understood"), "{messages}");
    let access = line_of("access.log");
    assert!(access.contains(": access-log ("), "{access}");
    assert!(!access.contains("not understood"), "{access}");
    let kv = line_of("appliance.log");
    assert!(kv.contains("read as kv: 2"), "{kv}");
    assert!(!kv.contains("not understood"), "{kv}");
    let error = line_of("error.log");
    assert!(error.contains("error-log lines"), "{error}");
    assert!(!error.contains("not understood"), "{error}");
    for generic in ["firewall.txt", "notes.txt"] {
        let l = line_of(generic);
        assert!(l.contains(": generic text ("), "{l}");
        assert!(l.contains("2 lines not understood"), "{l}");
    }
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.trim_start().starts_with("warning: read as generic text"))
        .collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(warnings.iter().any(|w| w.contains("XML")), "{err}");
    assert!(
        err.contains("Read quality: 5 lines not understood in 3 files, 2 warnings"),
        "{err}"
    );
}
