//! Appliance formats on the real sample lines of `wazuh-ruleset-tests` (issue #13): every line
//! of each vendor's `.ini` is read through the syslog reader (with or without its syslog
//! header, as the file has it), counted as parsed (a vendor format recognised: `mamori.format`)
//! and normalised (`event.action` set), and every line the tests expect to alert on for an
//! authentication success or failure must carry the normalisation contract: `event.category:
//! authentication`, the right `event.outcome`, and `user.name` / `source.ip` where the line
//! names them. The per-vendor table is printed (and copied into the README).

use std::collections::BTreeMap;

use super::*;
use mamori_ingest::{parse_syslog_line_with_year, Interner, Origin, YearHint};

/// The vendors' files, in the table's order.
const FILES: &[&str] = &[
    "fortigate",
    "fortiauth",
    "fortimail",
    "fortiddos",
    "cisco_asa",
    "cisco_ftd",
    "pix",
    "paloalto",
    "SonicWall",
    "sophos_fw",
    "sophos",
    "checkpoint_smart1",
    "openvpn_ldap",
    "f5_big_ip",
    "fireeye",
];

/// (file, section title, log number or 0 for all, outcome, user, source address).
type Expect = (
    &'static str,
    &'static str,
    u32,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

const AUTH_LINES: &[Expect] = &[
    (
        "fortigate",
        "Fortigate: Login failed.",
        1,
        "failure",
        Some("gfedhf"),
        Some("4.3.5.253"),
    ),
    (
        "fortigate",
        "Fortigate: Login failed.",
        2,
        "failure",
        Some("root"),
        Some("222.186.130.227"),
    ),
    (
        "fortigate",
        "Fortigate: SSL VPN user failed login attempt.",
        1,
        "failure",
        Some("my_user_name"),
        Some("2.4.6.8"),
    ),
    (
        "fortigate",
        "Fortigate: VPN user connected.",
        1,
        "success",
        Some("my_user_name"),
        Some("9.8.7.7"),
    ),
    (
        "fortigate",
        "Fortigate: User successfully logged into firewall interface.",
        1,
        "success",
        Some("a@b.com.na"),
        Some("10.42.8.253"),
    ),
    (
        "fortiauth",
        "Fortiauth: Failed authentication",
        1,
        "failure",
        Some("user1"),
        None,
    ),
    (
        "fortiauth",
        "Fortiauth: Successful authentication",
        1,
        "success",
        Some("user1"),
        None,
    ),
    (
        "fortimail",
        "FortiMail: An administrator successfully logged in using the web-based manager or CLI.",
        1,
        "success",
        Some("admin"),
        Some("172.20.120.26"),
    ),
    (
        "cisco_asa",
        "cisco asa: Failed login attempt",
        1,
        "failure",
        Some("root"),
        Some("192.168.2.10"),
    ),
    (
        "cisco_asa",
        "cisco asa: Successful login",
        1,
        "success",
        Some("username"),
        Some("192.168.0.1"),
    ),
    (
        "cisco_asa",
        "cisco asa: Password mismatch while running 'enable'",
        1,
        "failure",
        None,
        Some("192.168.0.1"),
    ),
    (
        "cisco_asa",
        "cisco asa: AAA (VPN) authentication failed",
        1,
        "failure",
        Some("user"),
        Some("192.168.0.1"),
    ),
    (
        "cisco_asa",
        "cisco asa: AAA (VPN) authentication successful",
        1,
        "success",
        Some("user"),
        None,
    ),
    (
        "cisco_asa",
        "cisco asa: AAA (VPN) user locked out",
        1,
        "failure",
        Some("user"),
        None,
    ),
    (
        "cisco_ftd",
        "Cisco FTD: Failed login attempt",
        1,
        "failure",
        Some("username"),
        None,
    ),
    (
        "cisco_ftd",
        "Cisco FTD: Successful login",
        1,
        "success",
        Some("username"),
        None,
    ),
    (
        "cisco_ftd",
        "Cisco FTD: AAA (VPN) authentication failed",
        1,
        "failure",
        Some("user"),
        None,
    ),
    (
        "cisco_ftd",
        "Cisco FTD: AAA (VPN) authentication successful",
        1,
        "success",
        Some("user"),
        None,
    ),
    (
        "cisco_ftd",
        "Cisco FTD: AAA (VPN) user locked out",
        1,
        "failure",
        Some("user"),
        None,
    ),
    (
        "SonicWall",
        "SonicWall : ac3 ",
        2,
        "failure",
        None,
        Some("2.2.2.2"),
    ),
    (
        "checkpoint_smart1",
        "checkpoint smart1: Login: A user logged into the system.",
        1,
        "success",
        None,
        None,
    ),
    (
        "checkpoint_smart1",
        "checkpoint smart1: Authorize: Client Authentication logon",
        1,
        "success",
        None,
        None,
    ),
    (
        "openvpn_ldap",
        "openvpn: LDAP Bind Failed",
        1,
        "failure",
        None,
        None,
    ),
    (
        "openvpn_ldap",
        "openvpn: LDAP Logon Failure",
        1,
        "failure",
        Some("Harry T. Hacker"),
        None,
    ),
];

struct Line {
    section: String,
    number: u32,
    text: String,
}

/// The `log N pass|fail = …` lines of a Wazuh test file with their section.
fn ini_lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut section = String::new();
    for l in text.lines() {
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let Some(rest) = l.strip_prefix("log ") else {
            continue;
        };
        let Some((head, value)) = rest.split_once(" = ") else {
            continue;
        };
        let number = head
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        out.push(Line {
            section: section.clone(),
            number,
            text: value.to_owned(),
        });
    }
    out
}

#[derive(Default)]
struct Row {
    lines: usize,
    parsed: usize,
    normalised: usize,
    auth_expected: usize,
    auth_ok: usize,
    formats: BTreeMap<String, usize>,
}

#[test]
fn wazuh_vendor_lines_are_parsed_and_authentication_is_normalised() {
    let Some(c) = corpus() else { return };
    let dir = c.join("wazuh-ruleset-tests/tests");
    let mut names = Interner::new();
    let mut table: Vec<(&str, Row)> = Vec::new();
    let mut failures = Vec::new();
    let mut matched_expectations = 0;
    for file in FILES {
        let path = dir.join(format!("{file}.ini"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut row = Row::default();
        for (i, l) in ini_lines(&text).iter().enumerate() {
            row.lines += 1;
            let origin = Origin::File {
                path: path.as_path().into(),
                record: None,
                line: Some(i as u64 + 1),
                offset: 0,
            };
            let ev = parse_syslog_line_with_year(
                l.text.as_bytes(),
                origin,
                &mut names,
                &mut YearHint::from_mtime(None),
            )
            .unwrap();
            let s = |k: &str| ev.get_str(k).map(|v| v.into_owned());
            if let Some(f) = s("mamori.format") {
                row.parsed += 1;
                *row.formats.entry(f).or_default() += 1;
                // The contract's observer fields come with every recognised line.
                assert!(
                    s("observer.vendor").is_some() && s("observer.product").is_some(),
                    "{}",
                    l.text
                );
            }
            if s("event.action").is_some() {
                row.normalised += 1;
            }
            for (f, section, number, outcome, user, ip) in AUTH_LINES {
                if f != file || *section != l.section || (*number != 0 && *number != l.number) {
                    continue;
                }
                matched_expectations += 1;
                row.auth_expected += 1;
                let ok = s("event.category").as_deref() == Some("authentication")
                    && s("event.outcome").as_deref() == Some(*outcome)
                    && s("event.action").is_some()
                    && user.is_none_or(|u| s("user.name").as_deref() == Some(u))
                    && ip.is_none_or(|a| s("source.ip").as_deref() == Some(a));
                if ok {
                    row.auth_ok += 1;
                } else {
                    failures.push(format!(
                        "{file} [{section}] log {}: {:?}\n  {}",
                        l.number,
                        ev.fields_json(),
                        l.text
                    ));
                }
            }
        }
        table.push((file, row));
    }
    println!("| file | lines | vendor format recognised | normalised (`event.action`) | auth lines expected → normalised | formats |");
    println!("|---|---|---|---|---|---|");
    for (file, r) in &table {
        let formats: Vec<String> = r.formats.iter().map(|(f, n)| format!("{f} {n}")).collect();
        println!(
            "| `{file}.ini` | {} | {} | {} | {} → {} | {} |",
            r.lines,
            r.parsed,
            r.normalised,
            r.auth_expected,
            r.auth_ok,
            formats.join(", ")
        );
    }
    assert_eq!(
        matched_expectations,
        AUTH_LINES.len(),
        "an expected line was not found in the corpus"
    );
    assert!(
        failures.is_empty(),
        "not normalised:\n{}",
        failures.join("\n")
    );
}
