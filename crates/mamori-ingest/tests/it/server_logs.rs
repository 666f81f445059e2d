//! Server logs from real fixtures (wazuh-ruleset-tests `nginx.ini`, `apache.ini`, `php.ini`,
//! `modsecurity.ini`, `sshd.ini`; loghub Apache, OpenSSH and Linux): every web server error-log
//! line is read as an error-log line, and every sshd line that wazuh's rules classify as an
//! authentication event gets its `event.action`.

use mamori_ingest::{parse_syslog_line_info, Format, Interner, LineInfo, Origin, YearHint};

use super::*;

/// The `log … = LINE` lines of a wazuh test file.
fn wazuh_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .filter(|(h, _)| h.starts_with("log "))
        .map(|(_, l)| l.to_owned())
        .collect()
}

fn parse(line: &str, names: &mut Interner) -> (Event, LineInfo) {
    let origin = Origin::File {
        path: std::sync::Arc::from(Path::new("fixture")),
        record: None,
        line: None,
        offset: 0,
    };
    parse_syslog_line_info(line.as_bytes(), origin, names, &mut YearHint::current()).unwrap()
}

#[test]
fn every_web_server_error_log_fixture_line_is_read_as_an_error_log() {
    let Some(c) = corpus() else { return };
    let t = c.join("wazuh-ruleset-tests/tests");
    let mut names = Interner::new();
    let mut counts = Vec::new();
    for name in ["nginx", "apache", "php", "modsecurity"] {
        let lines = wazuh_lines(&t.join(format!("{name}.ini")));
        let mut read = 0;
        let mut missed = Vec::new();
        for l in &lines {
            let (ev, info) = parse(l, &mut names);
            // Access lines in these files are access-log payloads, not error logs.
            if info.payload == Some("error-log") || ev.format == Format::AccessLog {
                read += 1;
            } else {
                missed.push(l.clone());
            }
        }
        counts.push(format!("{name}: {read}/{}", lines.len()));
        assert!(
            missed.is_empty(),
            "{name}: not read:\n{}",
            missed.join("\n")
        );
    }
    println!("error-log fixture lines read: {}", counts.join(", "));
    // loghub's Apache sample: 2,000 Apache 2.2 error-log lines, all with time and level.
    let (report, events) = read_all(&c.join("loghub/Apache/Apache_2k.log"));
    assert_eq!(report.embedded.get("error-log"), Some(&2000));
    assert_eq!(report.unparsed, 0);
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    assert!(events
        .iter()
        .all(|e| e.get("log.level").is_some() && e.timestamp.is_some()));
}

#[test]
fn sshd_fixture_lines_that_are_authentication_events_are_classified() {
    let Some(c) = corpus() else { return };
    let t = c.join("wazuh-ruleset-tests/tests");
    let mut names = Interner::new();
    let (mut sshd, mut classified, mut auth_words, mut auth_classified) = (0, 0, 0, 0);
    let mut missed = Vec::new();
    let mut lines = wazuh_lines(&t.join("sshd.ini"));
    for f in ["loghub/OpenSSH/OpenSSH_2k.log", "loghub/Linux/Linux_2k.log"] {
        let text = std::fs::read_to_string(c.join(f)).unwrap();
        lines.extend(text.lines().map(str::to_owned));
    }
    for l in lines.iter().filter(|l| l.contains("sshd")) {
        let (ev, _) = parse(l, &mut names);
        sshd += 1;
        let action = ev.get("event.action").is_some();
        classified += usize::from(action);
        // Lines whose wording says authentication, users or addresses must be classified.
        let m = ev.get_str("message").unwrap_or_default().into_owned();
        let about_auth = ["user", "User", "password", "authentication", "from "]
            .iter()
            .any(|w| m.contains(w));
        if about_auth {
            auth_words += 1;
            if action {
                auth_classified += 1;
            } else {
                missed.push(m);
            }
        }
    }
    println!(
        "sshd lines: {sshd}, with event.action: {classified}; about authentication: {auth_words}, classified: {auth_classified}"
    );
    assert!(missed.is_empty(), "not classified:\n{}", missed.join("\n"));
}
