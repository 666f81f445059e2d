use std::path::Path;
use std::sync::Arc;

use super::*;

fn origin() -> Origin {
    Origin::File {
        path: Arc::from(Path::new("auth.log")),
        record: None,
        line: Some(1),
        offset: 0,
    }
}

fn parse(line: &str) -> Event {
    let mut y = YearHint::from_mtime(Some(
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
    ));
    parse_syslog_line_with_year(line.as_bytes(), origin(), &mut Interner::new(), &mut y).unwrap()
}

fn get(e: &Event, k: &str) -> Option<String> {
    e.get_str(k).map(|s| s.into_owned())
}

#[test]
fn rfc3164_file_line_with_sshd_accepted() {
    let e = parse("Dec 10 09:32:20 LabSZ sshd[24680]: Accepted password for fztu from 119.137.62.142 port 49116 ssh2");
    assert_eq!(get(&e, "host.name").as_deref(), Some("LabSZ"));
    assert_eq!(e.get("process.pid"), Some(&Value::Int(24680)));
    assert_eq!(get(&e, "event.action").as_deref(), Some("ssh_login"));
    assert_eq!(get(&e, "event.outcome").as_deref(), Some("success"));
    assert_eq!(get(&e, "user.name").as_deref(), Some("fztu"));
    assert_eq!(get(&e, "source.ip").as_deref(), Some("119.137.62.142"));
    assert_eq!(e.get("source.port"), Some(&Value::Int(49116)));
    assert_eq!(get(&e, "mamori.auth.method").as_deref(), Some("password"));
    assert_eq!(
        e.logsource.service.as_ref().map(|s| s.as_str()),
        Some("sshd")
    );
    // mtime November 2023, line in December: last year.
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2022-12-10T09:32:20+00:00"
    );
}

#[test]
fn year_rolls_over_from_december_to_january() {
    let mut y = YearHint::from_mtime(Some(
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_704_153_600),
    )); // 2024-01-02
    let mut names = Interner::new();
    let a = parse_syslog_line_with_year(
        b"Dec 31 23:59:59 h cron[1]: x",
        origin(),
        &mut names,
        &mut y,
    )
    .unwrap();
    let b = parse_syslog_line_with_year(
        b"Jan  1 00:00:01 h cron[1]: y",
        origin(),
        &mut names,
        &mut y,
    )
    .unwrap();
    assert_eq!(
        a.timestamp.unwrap().to_rfc3339(),
        "2023-12-31T23:59:59+00:00"
    );
    assert_eq!(
        b.timestamp.unwrap().to_rfc3339(),
        "2024-01-01T00:00:01+00:00"
    );
}

#[test]
fn rfc5424_with_structured_data() {
    let e = parse(
        r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Appl\"ication"] An application event"#,
    );
    assert_eq!(e.get("log.syslog.facility.code"), Some(&Value::Int(20)));
    assert_eq!(e.get("log.syslog.severity.code"), Some(&Value::Int(5)));
    assert_eq!(get(&e, "log.syslog.msgid").as_deref(), Some("ID47"));
    assert_eq!(
        get(
            &e,
            "log.syslog.structured_data.exampleSDID@32473.eventSource"
        )
        .as_deref(),
        Some("Appl\"ication")
    );
    assert_eq!(get(&e, "message").as_deref(), Some("An application event"));
    assert_eq!(get(&e, "process.name").as_deref(), Some("evntslog"));
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2003-10-11T22:14:15.003+00:00"
    );
}

#[test]
fn pri_and_iso_timestamps_and_pam_program_names() {
    let e = parse("<38>2024-03-01T10:00:00+02:00 web1 sudo[99]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id -u");
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2024-03-01T08:00:00+00:00"
    );
    assert_eq!(get(&e, "event.action").as_deref(), Some("sudo"));
    assert_eq!(get(&e, "user.name").as_deref(), Some("alice"));
    assert_eq!(get(&e, "user.target.name").as_deref(), Some("root"));
    assert_eq!(
        get(&e, "process.command_line").as_deref(),
        Some("/usr/bin/id -u")
    );
    let e = parse(
        "Jun 15 04:06:18 combo su(pam_unix)[21416]: session opened for user cyrus by (uid=0)",
    );
    assert_eq!(get(&e, "process.name").as_deref(), Some("su"));
    assert_eq!(
        get(&e, "log.syslog.appname").as_deref(),
        Some("su(pam_unix)")
    );
    assert_eq!(get(&e, "event.action").as_deref(), Some("session_opened"));
    assert_eq!(get(&e, "user.name").as_deref(), Some("cyrus"));
}

#[test]
fn auth_program_vocabulary() {
    for (line, action, outcome, user) in [
        ("Jan 1 00:00:00 h sshd[1]: Failed password for invalid user admin from 1.2.3.4 port 22 ssh2", "ssh_login", Some("failure"), "admin"),
        ("Jan 1 00:00:00 h sshd[1]: Invalid user test from 1.2.3.4 port 5", "ssh_invalid_user", Some("failure"), "test"),
        ("Jan 1 00:00:00 h sshd[1]: Connection closed by authenticating user root 1.2.3.4 port 22 [preauth]", "ssh_disconnect", None, "root"),
        ("Jan 1 00:00:00 h sshd[1]: Disconnected from invalid user x 1.2.3.4 port 22", "ssh_disconnect", None, "x"),
        ("Jan 1 00:00:00 h sshd[1]: error: maximum authentication attempts exceeded for root from 1.2.3.4 port 22 ssh2 [preauth]", "ssh_max_auth_attempts", Some("failure"), "root"),
        ("Jan 1 00:00:00 h su[1]: FAILED su for root by bob", "su", Some("failure"), "bob"),
        ("Jan 1 00:00:00 h useradd[1]: new user: name=eve, UID=1001, GID=1001, home=/home/eve, shell=/bin/bash", "user_created", Some("success"), ""),
        ("Jan 1 00:00:00 h passwd[1]: pam_unix(passwd:chauthtok): password changed for eve", "password_changed", Some("success"), ""),
        ("Jan 1 00:00:00 h systemd-logind[1]: New session 7 of user eve.", "session_opened", Some("success"), "eve"),
        ("Jan 1 00:00:00 h CRON[1]: (root) CMD (run-parts /etc/cron.hourly)", "cron_exec", None, "root"),
        ("Jan 1 00:00:00 h usermod[1]: add 'eve' to group 'sudo'", "user_added_to_group", Some("success"), ""),
    ] {
        let e = parse(line);
        assert_eq!(get(&e, "event.action").as_deref(), Some(action), "{line}");
        assert_eq!(get(&e, "event.outcome").as_deref(), outcome, "{line}");
        if !user.is_empty() {
            assert_eq!(get(&e, "user.name").as_deref(), Some(user), "{line}");
        }
    }
    let e = parse("Jan 1 00:00:00 h useradd[1]: new user: name=eve, UID=1001");
    assert_eq!(get(&e, "user.target.name").as_deref(), Some("eve"));
}

#[test]
fn spoofed_user_name_cannot_move_the_source_address() {
    let e = parse("Jan 1 00:00:00 h sshd[1]: Failed password for invalid user x from 6.6.6.6 port 1 from 1.2.3.4 port 22 ssh2");
    assert_eq!(get(&e, "source.ip").as_deref(), Some("1.2.3.4"));
    assert_eq!(
        get(&e, "user.name").as_deref(),
        Some("x from 6.6.6.6 port 1")
    );
}

#[test]
fn generic_lines_keep_their_text() {
    let e = parse("[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6");
    assert_eq!(get(&e, "log.level").as_deref(), Some("error"));
    assert_eq!(
        get(&e, "message").as_deref(),
        Some("mod_jk child workerEnv in error state 6")
    );
    assert!(e.timestamp.is_some());
    let e = parse("just some text");
    assert_eq!(get(&e, "message").as_deref(), Some("just some text"));
    assert!(parse_syslog_line(b"   ", origin(), &mut Interner::new()).is_err());
}
