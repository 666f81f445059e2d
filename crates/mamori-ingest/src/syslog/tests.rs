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

fn parse_info(line: &str) -> (Event, LineInfo) {
    let mut y = YearHint::from_mtime(Some(
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
    ));
    parse_syslog_line_info(line.as_bytes(), origin(), &mut Interner::new(), &mut y).unwrap()
}

const NGINX_ACCESS: &str = r#"203.0.113.9 - - [10/Nov/2023:10:00:01 +0900] "GET /item.php?id=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1" 200 512 "-" "sqlmap/1.7""#;

#[test]
fn access_line_inside_rfc3164_is_an_access_event_with_the_syslog_header() {
    let line = format!("<190>Nov 10 01:00:01 web1 nginx: {NGINX_ACCESS}");
    let (e, info) = parse_info(&line);
    assert_eq!(info.payload, Some("access-log"));
    assert!(!info.generic);
    assert_eq!(e.format, Format::AccessLog);
    assert_eq!(
        e.logsource.category.as_ref().map(|c| c.as_str()),
        Some("webserver")
    );
    assert_eq!(get(&e, "source.ip").as_deref(), Some("203.0.113.9"));
    assert_eq!(get(&e, "cs-method").as_deref(), Some("GET"));
    assert!(get(&e, "url.query").unwrap().contains("UNION"));
    assert_eq!(get(&e, "host.name").as_deref(), Some("web1"));
    assert_eq!(get(&e, "log.syslog.hostname").as_deref(), Some("web1"));
    assert_eq!(get(&e, "log.syslog.appname").as_deref(), Some("nginx"));
    assert_eq!(e.get("log.syslog.priority"), Some(&Value::Int(190)));
    // The access line's own time (with its zone) wins over the zone-less syslog header.
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2023-11-10T01:00:01+00:00"
    );
    assert_eq!(&*e.raw, line.as_bytes());
}

#[test]
fn access_line_inside_rfc5424_keeps_structured_data() {
    let line =
        format!("<134>1 2023-11-10T01:00:01Z web2 apache 42 - [meta site=\"shop\"] {NGINX_ACCESS}");
    let (e, info) = parse_info(&line);
    assert_eq!(info.payload, Some("access-log"));
    assert_eq!(e.format, Format::AccessLog);
    assert_eq!(
        get(&e, "log.syslog.structured_data.meta.site").as_deref(),
        Some("shop")
    );
    assert_eq!(e.get("process.pid"), Some(&Value::Int(42)));
}

#[test]
fn json_payload_with_cee_cookie_and_windows_shape() {
    let line = r#"<14>Nov 10 01:00:01 collector winlogbeat: @cee: {"EventID": 4625, "Channel": "Security", "Computer": "DC1", "TargetUserName": "admin", "IpAddress": "198.51.100.7"}"#;
    let (e, info) = parse_info(line);
    assert_eq!(info.payload, Some("json"));
    assert_eq!(e.format, Format::Json);
    assert_eq!(
        e.logsource.product.as_ref().map(|c| c.as_str()),
        Some("windows")
    );
    assert_eq!(get(&e, "event.outcome").as_deref(), Some("failure"));
    // The payload names its host; the syslog sender is kept apart.
    assert_eq!(get(&e, "host.name").as_deref(), Some("DC1"));
    assert_eq!(get(&e, "log.syslog.hostname").as_deref(), Some("collector"));
}

#[test]
fn application_json_payload_keeps_the_senders_logsource() {
    let (e, info) = parse_info(
        r#"<14>Nov 10 01:00:01 app1 billing[7]: {"level":"warn","msg":"login failed","user":"bob"}"#,
    );
    assert_eq!(info.payload, Some("json"));
    assert_eq!(get(&e, "user").as_deref(), Some("bob"));
    assert_eq!(
        e.logsource.product.as_ref().map(|p| p.as_str()),
        Some("linux")
    );
    assert_eq!(
        e.logsource.service.as_ref().map(|p| p.as_str()),
        Some("billing")
    );
    assert_eq!(e.get("process.pid"), Some(&Value::Int(7)));
}

#[test]
fn broken_json_payload_stays_a_syslog_event_and_is_reported() {
    let (e, info) = parse_info(r#"<14>Nov 10 01:00:01 h app: {"a": 1, "b": "#);
    assert_eq!(e.format, Format::Syslog);
    assert_eq!(info.payload_failed, Some("json"));
    assert_eq!(get(&e, "message").as_deref(), Some(r#"{"a": 1, "b": "#));
}

#[test]
fn nginx_error_log_line() {
    let (e, info) = parse_info(
        r#"2023/11/10 01:02:03 [error] 1234#1234: *56 FastCGI sent in stderr: "PHP message: PHP Warning:  system(): Unable to fork [id; uname -a] in /var/www/html/up/shell.php on line 3" while reading response header from upstream, client: 198.51.100.23, server: shop.example.jp, request: "GET /up/shell.php?cmd=id HTTP/1.1", upstream: "fastcgi://unix:/run/php/php-fpm.sock:", host: "shop.example.jp""#,
    );
    assert_eq!(info.payload, Some("error-log"));
    assert!(!info.generic && !info.no_timestamp);
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2023-11-10T01:02:03+00:00"
    );
    assert_eq!(get(&e, "log.level").as_deref(), Some("error"));
    assert_eq!(e.get("process.pid"), Some(&Value::Int(1234)));
    assert_eq!(get(&e, "source.ip").as_deref(), Some("198.51.100.23"));
    assert_eq!(get(&e, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(get(&e, "url.path").as_deref(), Some("/up/shell.php"));
    assert_eq!(get(&e, "url.query").as_deref(), Some("cmd=id"));
    assert_eq!(get(&e, "url.domain").as_deref(), Some("shop.example.jp"));
    assert_eq!(get(&e, "event.dataset").as_deref(), Some("nginx.error"));
    assert!(get(&e, "error.message").unwrap().ends_with("from upstream"));
    assert!(get(&e, "message")
        .unwrap()
        .contains("system(): Unable to fork"));
    assert_eq!(
        e.logsource.service.as_ref().map(|s| s.as_str()),
        Some("nginx")
    );
}

#[test]
fn nginx_error_log_sent_over_syslog() {
    let (e, info) = parse_info(
        "<187>Nov 10 01:02:03 web1 nginx: 2023/11/10 01:02:03 [crit] 77#77: *9 open() \"/etc/passwd\" failed (13: Permission denied), client: 192.0.2.4, server: _, request: \"GET /../../etc/passwd HTTP/1.1\"",
    );
    assert_eq!(info.payload, Some("error-log"));
    assert_eq!(get(&e, "host.name").as_deref(), Some("web1"));
    assert_eq!(get(&e, "source.ip").as_deref(), Some("192.0.2.4"));
    assert_eq!(get(&e, "url.path").as_deref(), Some("/../../etc/passwd"));
    assert_eq!(get(&e, "log.level").as_deref(), Some("crit"));
}

#[test]
fn apache_error_log_22_and_24() {
    let (e, info) = parse_info(
        "[Sun Dec 04 04:47:44 2005] [error] [client 10.0.0.5] sh: no job control in this shell",
    );
    assert_eq!(info.payload, Some("error-log"));
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2005-12-04T04:47:44+00:00"
    );
    assert_eq!(get(&e, "log.level").as_deref(), Some("error"));
    assert_eq!(get(&e, "source.ip").as_deref(), Some("10.0.0.5"));
    assert_eq!(
        get(&e, "message").as_deref(),
        Some("sh: no job control in this shell")
    );
    assert_eq!(get(&e, "event.dataset").as_deref(), Some("apache.error"));

    let (e, _) = parse_info("[Tue Sep 30 11:30:13.262255 2014] [core:error] [pid 20101:tid 140] [client 99.47.227.95:34567] AH00037: Symbolic link not allowed: /var/www/x, referer: http://evil.example/");
    assert_eq!(get(&e, "log.level").as_deref(), Some("error"));
    assert_eq!(get(&e, "log.logger").as_deref(), Some("core"));
    assert_eq!(e.get("process.pid"), Some(&Value::Int(20101)));
    assert_eq!(e.get("process.thread.id"), Some(&Value::Int(140)));
    assert_eq!(e.get("source.port"), Some(&Value::Int(34567)));
    assert_eq!(get(&e, "error.code").as_deref(), Some("AH00037"));
    assert_eq!(
        get(&e, "http.request.referrer").as_deref(),
        Some("http://evil.example/")
    );
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2014-09-30T11:30:13.262255+00:00"
    );
}

#[test]
fn modsecurity_line_gives_its_uri() {
    let (e, _) = parse_info(
        r#"[Mon Feb 09 16:47:55.974089 2015] [:error] [pid 17675] [client 172.16.10.87] ModSecurity: Warning. Pattern match "x" at ARGS:path_prefix. [id "950119"] [msg "Remote File Inclusion Attack"] [hostname "172.16.10.91"] [uri "/wordpress/web/Module.php"] [unique_id "VMEm"]"#,
    );
    assert_eq!(
        get(&e, "url.path").as_deref(),
        Some("/wordpress/web/Module.php")
    );
    assert_eq!(get(&e, "url.domain").as_deref(), Some("172.16.10.91"));
    assert!(get(&e, "message")
        .unwrap()
        .contains("Remote File Inclusion Attack"));
}

#[test]
fn unknown_text_is_generic_and_says_so() {
    let (e, info) = parse_info("just some words without structure");
    assert!(info.generic && info.no_timestamp);
    assert_eq!(info.payload, None);
    assert_eq!(
        get(&e, "message").as_deref(),
        Some("just some words without structure")
    );
    let (_, info) =
        parse_info("Nov 10 01:00:01 h sshd[1]: Accepted password for a from 1.2.3.4 port 1 ssh2");
    assert_eq!(info, LineInfo::default());
}

#[test]
fn error_log_without_client_context_and_with_attacker_text() {
    // An attacker-chosen `, client: ` inside the message must not move the real client.
    let (e, _) = parse_info(
        r#"2023/11/10 01:02:03 [error] 1#1: *2 open() "/x, client: 6.6.6.6" failed, client: 192.0.2.1, server: s, request: "GET / HTTP/1.1""#,
    );
    assert_eq!(get(&e, "source.ip").as_deref(), Some("192.0.2.1"));
    let (e, _) = parse_info("2014/12/30 06:07:37 [error] 80:2 yadda yadda");
    assert_eq!(get(&e, "log.level").as_deref(), Some("error"));
    assert_eq!(get(&e, "message").as_deref(), Some("yadda yadda"));
}

/// Every sshd message variant, old (OpenSSH 3.x `Illegal user`) and new (9.x), with what it
/// must give: (message, event.action, event.outcome, user.name, source.ip).
type Variant = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

const SSHD_VARIANTS: &[Variant] = &[
    ("Illegal user test from 192.168.0.5", "ssh_invalid_user", Some("failure"), Some("test"), Some("192.168.0.5")),
    ("Illegal user oracle from ::ffff:61.1.2.3", "ssh_invalid_user", Some("failure"), Some("oracle"), Some("::ffff:61.1.2.3")),
    ("Failed password for illegal user test from 192.168.0.5 port 3022 ssh2", "ssh_login", Some("failure"), Some("test"), Some("192.168.0.5")),
    ("Invalid user admin from 203.0.113.4 port 4242", "ssh_invalid_user", Some("failure"), Some("admin"), Some("203.0.113.4")),
    ("Invalid user admin from 203.0.113.4", "ssh_invalid_user", Some("failure"), Some("admin"), Some("203.0.113.4")),
    ("Failed password for invalid user admin from 203.0.113.4 port 4242 ssh2", "ssh_login", Some("failure"), Some("admin"), Some("203.0.113.4")),
    ("Failed none for invalid user admin from 203.0.113.4 port 4242 ssh2", "ssh_login", Some("failure"), Some("admin"), Some("203.0.113.4")),
    ("Failed keyboard-interactive/pam for invalid user x from 203.0.113.4 port 5 ssh2", "ssh_login", Some("failure"), Some("x"), Some("203.0.113.4")),
    ("Failed publickey for root from 203.0.113.4 port 5 ssh2: RSA SHA256:abc", "ssh_login", Some("failure"), Some("root"), Some("203.0.113.4")),
    ("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.4  user=root", "authentication_failure", Some("failure"), Some("root"), Some("203.0.113.4")),
    ("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.4", "authentication_failure", Some("failure"), None, Some("203.0.113.4")),
    ("error: PAM: Authentication failure for root from 203.0.113.4", "authentication_failure", Some("failure"), Some("root"), Some("203.0.113.4")),
    ("error: PAM: Authentication failure for illegal user x from 203.0.113.4", "authentication_failure", Some("failure"), Some("x"), Some("203.0.113.4")),
    ("PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.4  user=root", "authentication_failure", Some("failure"), Some("root"), Some("203.0.113.4")),
    ("Connection closed by authenticating user root 203.0.113.4 port 22 [preauth]", "ssh_disconnect", None, Some("root"), Some("203.0.113.4")),
    ("Connection closed by invalid user admin 203.0.113.4 port 22 [preauth]", "ssh_disconnect", None, Some("admin"), Some("203.0.113.4")),
    ("Connection closed by 203.0.113.4 port 22 [preauth]", "ssh_disconnect", None, None, Some("203.0.113.4")),
    ("Received disconnect from 203.0.113.4 port 5:11: Bye Bye [preauth]", "ssh_disconnect", None, None, Some("203.0.113.4")),
    ("Received disconnect from 203.0.113.4: 11: Bye Bye", "ssh_disconnect", None, None, Some("203.0.113.4")),
    ("error: Received disconnect from 203.0.113.4 port 5:3: com.jcraft.jsch.JSchException: Auth fail [preauth]", "ssh_disconnect", None, None, Some("203.0.113.4")),
    ("Disconnected from invalid user admin 203.0.113.4 port 5 [preauth]", "ssh_disconnect", None, Some("admin"), Some("203.0.113.4")),
    ("Disconnected from authenticating user root 203.0.113.4 port 5 [preauth]", "ssh_disconnect", None, Some("root"), Some("203.0.113.4")),
    ("Disconnected from user alice 203.0.113.4 port 5", "ssh_disconnect", None, Some("alice"), Some("203.0.113.4")),
    ("Disconnecting invalid user admin 203.0.113.4 port 5: Too many authentication failures [preauth]", "ssh_max_auth_attempts", Some("failure"), Some("admin"), Some("203.0.113.4")),
    ("Did not receive identification string from 203.0.113.4 port 5", "ssh_no_identification", None, None, Some("203.0.113.4")),
    ("Did not receive identification string from 203.0.113.4", "ssh_no_identification", None, None, Some("203.0.113.4")),
    ("Bad protocol version identification 'GET / HTTP/1.1' from 203.0.113.4 port 5", "ssh_connection", Some("failure"), None, Some("203.0.113.4")),
    ("Bad protocol version identification '\\026\\003\\001' from 203.0.113.4", "ssh_connection", Some("failure"), None, Some("203.0.113.4")),
    ("error: maximum authentication attempts exceeded for root from 203.0.113.4 port 5 ssh2 [preauth]", "ssh_max_auth_attempts", Some("failure"), Some("root"), Some("203.0.113.4")),
    ("error: maximum authentication attempts exceeded for invalid user admin from 203.0.113.4 port 5 ssh2 [preauth]", "ssh_max_auth_attempts", Some("failure"), Some("admin"), Some("203.0.113.4")),
    ("Accepted publickey for root from 203.0.113.4 port 5 ssh2: RSA SHA256:abc", "ssh_login", Some("success"), Some("root"), Some("203.0.113.4")),
    ("Accepted keyboard-interactive/pam for root from 203.0.113.4 port 5 ssh2", "ssh_login", Some("success"), Some("root"), Some("203.0.113.4")),
    ("Accepted password for root from 2001:db8::1 port 5 ssh2", "ssh_login", Some("success"), Some("root"), Some("2001:db8::1")),
    ("reverse mapping checking getaddrinfo for host.example [203.0.113.4] failed - POSSIBLE BREAK-IN ATTEMPT!", "ssh_reverse_mapping_failed", None, None, Some("203.0.113.4")),
    ("Address 203.0.113.4 maps to x.example, but this does not map back to the address - POSSIBLE BREAK-IN ATTEMPT!", "ssh_reverse_mapping_failed", None, None, Some("203.0.113.4")),
    ("User root from 203.0.113.4 not allowed because not listed in AllowUsers", "ssh_login", Some("failure"), Some("root"), Some("203.0.113.4")),
    ("ROOT LOGIN REFUSED FROM 203.0.113.4", "ssh_login", Some("failure"), Some("root"), Some("203.0.113.4")),
    ("ROOT LOGIN REFUSED FROM 203.0.113.4 port 5", "ssh_login", Some("failure"), Some("root"), Some("203.0.113.4")),
    ("refused connect from 203.0.113.4 (203.0.113.4)", "ssh_connection", Some("failure"), None, Some("203.0.113.4")),
    ("Timeout before authentication for 203.0.113.4 port 5", "ssh_disconnect", Some("failure"), None, Some("203.0.113.4")),
    ("fatal: Timeout before authentication for 203.0.113.4", "ssh_disconnect", Some("failure"), None, Some("203.0.113.4")),
    ("Connection reset by 203.0.113.4 port 5 [preauth]", "ssh_disconnect", None, None, Some("203.0.113.4")),
    ("Connection reset by authenticating user root 203.0.113.4 port 5 [preauth]", "ssh_disconnect", None, Some("root"), Some("203.0.113.4")),
    ("input_userauth_request: invalid user admin [preauth]", "ssh_invalid_user", Some("failure"), Some("admin"), None),
    ("message repeated 2 times: [ Failed password for root from 203.0.113.4 port 5 ssh2]", "ssh_login", Some("failure"), Some("root"), Some("203.0.113.4")),
    ("Unable to negotiate with 203.0.113.4 port 5: no matching key exchange method found.", "ssh_disconnect", Some("failure"), None, Some("203.0.113.4")),
    ("Authentication refused: bad ownership or modes for file /home/ansible/.ssh/authorized_keys", "ssh_login", Some("failure"), None, None),
    ("PAM service(sshd) ignoring max retries; 6 > 3", "ssh_max_auth_attempts", Some("failure"), None, None),
    ("Connection from 203.0.113.4 port 5 on 10.0.0.1 port 22 rdomain \"\"", "ssh_connection", None, None, Some("203.0.113.4")),
    ("subsystem request for netconf by user checker failed, subsystem not found", "ssh_subsystem", Some("failure"), Some("checker"), None),
    ("subsystem request for sftp by user alice", "ssh_subsystem", Some("success"), Some("alice"), None),
    ("Postponed publickey for alice from 203.0.113.4 port 5 ssh2 [preauth]", "ssh_login", None, Some("alice"), Some("203.0.113.4")),
];

#[test]
fn every_sshd_variant_old_and_new() {
    let mut bad = Vec::new();
    for (msg, action, outcome, user, ip) in SSHD_VARIANTS {
        let e = parse(&format!("Nov 10 01:00:01 host sshd[42]: {msg}"));
        let got = (
            get(&e, "event.action"),
            get(&e, "event.outcome"),
            get(&e, "user.name"),
            get(&e, "source.ip"),
        );
        let want = (
            Some(action.to_string()),
            outcome.map(str::to_owned),
            user.map(str::to_owned),
            ip.map(str::to_owned),
        );
        if got != want {
            bad.push(format!("{msg}\n   got  {got:?}\n   want {want:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} variants wrong:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn structured_bodies_are_read_by_the_vendor_readers() {
    // CEF and an appliance's key=value behind a syslog header are read (`crate::vendor`), not
    // reported as unread.
    let (e, info) = parse_info("<134>Nov 10 01:00:01 fw1 CEF:0|Vendor|Product|1.0|100|Login failed|5|src=192.0.2.1 suser=bob");
    assert_eq!(info.payload, Some("cef"));
    assert_eq!(info.payload_failed, None);
    assert_eq!(get(&e, "source.ip").as_deref(), Some("192.0.2.1"));
    assert!(get(&e, "message").unwrap().starts_with("CEF:0|"));
    // (Without `logid`/`devid` this is not recognisably a FortiGate: generic key=value.)
    let (e, info) = parse_info("<134>Nov 10 01:00:01 fw1 date=2026-11-10 time=01:00:01 devname=fw1 type=event subtype=vpn action=ssl-login-fail user=bob");
    assert_eq!(info.payload, Some("kv"));
    assert_eq!(info.payload_failed, None);
    assert_eq!(get(&e, "devname").as_deref(), Some("fw1"));
    // PAM's `k=v` details are understood by the auth parser: nothing to report.
    let (_, info) = parse_info("Nov 10 01:00:01 h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.1  user=root");
    assert_eq!(info.payload_failed, None);
    // A LEEF-looking body the reader cannot take is reported.
    let (_, info) = parse_info("<134>Nov 10 01:00:01 fw1 LEEF:broken");
    assert_eq!(info.payload_failed, Some("LEEF"));
}

#[test]
fn vhost_combined_access_line_from_apache_logger() {
    let (e, info) = parse_info(
        r#"<13>Nov 10 01:00:01 web2 apache: shop.example.jp:443 192.0.2.50 - - [10/Nov/2026:01:00:01 +0000] "POST /wp-login.php HTTP/1.1" 200 1234 "-" "Mozilla/5.0""#,
    );
    assert_eq!(info.payload, Some("access-log"));
    assert_eq!(get(&e, "cs-host").as_deref(), Some("shop.example.jp"));
    assert_eq!(get(&e, "source.ip").as_deref(), Some("192.0.2.50"));
    assert_eq!(get(&e, "log.syslog.hostname").as_deref(), Some("web2"));
}

#[test]
fn mail_server_logins_are_normalised() {
    // (line, action outcome, user, source.ip) — dovecot and postfix as they log over syslog.
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let cases: [Case<'_>; 8] = [
        ("Dec 19 06:21:06 ny dovecot: imap-login: Disconnected (auth failed, 7 attempts in 111 secs): user=<thousands>, method=PLAIN, rip=109.201.200.201, lip=67.205.141.203, session=<+hgd5vxDBMZtycjJ>",
         Some("failure"), Some("thousands"), Some("109.201.200.201")),
        ("May 31 09:43:57 mx dovecot: pop3-login: Aborted login (1 authentication attempts): user=<bob>, method=PLAIN, rip=::ffff:1.2.3.4, lip=::ffff:1.2.3.5, secured",
         Some("failure"), Some("bob"), Some("1.2.3.4")),
        ("May 31 09:43:57 mx dovecot: imap-login: Login: user=<carol>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, mpid=1234, TLS",
         Some("success"), Some("carol"), Some("198.51.100.7")),
        ("Jan 11 03:42:09 mx dovecot: auth-worker(default): sql(user@example.com,1.2.3.4): Password mismatch",
         Some("failure"), Some("user@example.com"), Some("1.2.3.4")),
        ("Jan 11 03:42:09 mx dovecot: auth(default): pam(user@example.com,::ffff:1.2.3.4): pam_authenticate() failed: User not known to the underlying authentication module",
         Some("failure"), Some("user@example.com"), Some("1.2.3.4")),
        ("Nov 10 01:00:01 mx postfix/smtpd[4242]: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
         Some("failure"), None, Some("203.0.113.7")),
        ("Nov 10 01:00:01 mx postfix/submission/smtpd[4242]: 4B1C21E0A2: client=pc1.example.jp[192.0.2.44], sasl_method=PLAIN, sasl_username=sato",
         Some("success"), Some("sato"), Some("192.0.2.44")),
        // No attempt: nothing to normalise.
        ("Jul  4 17:30:51 mx dovecot[2992]: pop3-login: Disconnected: rip=1.2.3.4, lip=1.2.3.5",
         None, None, None),
    ];
    for (line, outcome, user, ip) in cases {
        let e = parse(line);
        assert_eq!(get(&e, "event.outcome").as_deref(), outcome, "{line}");
        assert_eq!(get(&e, "user.name").as_deref(), user, "{line}");
        assert_eq!(get(&e, "source.ip").as_deref(), ip, "{line}");
        if outcome.is_some() {
            assert_eq!(
                get(&e, "event.action").as_deref(),
                Some("mail_login"),
                "{line}"
            );
            assert_eq!(
                get(&e, "event.category").as_deref(),
                Some("authentication"),
                "{line}"
            );
        }
    }
}
