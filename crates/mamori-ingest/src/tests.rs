use std::path::Path;
use std::sync::Arc;

use mamori_event::Value;

use super::*;

fn origin() -> Origin {
    Origin::File {
        path: Arc::from(Path::new("x.json")),
        record: None,
        line: Some(1),
        offset: 0,
    }
}

fn json(s: &str) -> Event {
    parse_json_object(s.as_bytes(), origin(), &mut Interner::new()).unwrap()
}

fn get(e: &Event, k: &str) -> Option<String> {
    e.get_str(k).map(|s| s.into_owned())
}

#[test]
fn detection_by_content() {
    let f = |s: &[u8]| detect_bytes(s, None);
    assert_eq!(f(b"ElfFile\0rest"), Sniffed::Format(Format::Evtx));
    assert_eq!(f(b"{\"a\":1}\n"), Sniffed::Format(Format::Json));
    assert_eq!(
        f(b"{\"Records\":[{\"eventVersion\":\"1.08\",\"eventSource\":\"s3.amazonaws.com\"}]}"),
        Sniffed::Format(Format::CloudTrail)
    );
    assert_eq!(
        f(b"#Software: Microsoft Internet Information Services 10.0\n#Fields: date time\n"),
        Sniffed::Format(Format::Iis)
    );
    assert_eq!(
        f(b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1\n"),
        Sniffed::Format(Format::AccessLog)
    );
    assert_eq!(
        f(b"type=SYSCALL msg=audit(1.2:3): a=b\n"),
        Sniffed::Format(Format::Auditd)
    );
    assert_eq!(
        f(b"Jan  1 00:00:00 h sshd[1]: x\n"),
        Sniffed::Format(Format::Syslog)
    );
    assert_eq!(
        f(b"[Sun Dec 04 04:47:44 2005] [error] x\n"),
        Sniffed::Format(Format::Syslog)
    );
    assert_eq!(f(b"plain text\n"), Sniffed::Format(Format::Syslog));
    assert_eq!(f(b"PK\x03\x04\0\0"), Sniffed::Unsupported("zip archive"));
    assert_eq!(f(b" \n\t"), Sniffed::Empty);
}

#[test]
fn nested_json_flattens_with_dots_and_keeps_types() {
    let e = json(
        r#"{"a":{"b":1,"c":[1,2],"d":[{"x":"p"},{"x":"q"}]},"t":true,"big":18446744073709551615}"#,
    );
    assert_eq!(e.get("a.b"), Some(&Value::Int(1)));
    assert_eq!(
        e.get("a.c"),
        Some(&Value::List(vec![Value::Int(1), Value::Int(2)]))
    );
    assert_eq!(
        e.fields()
            .iter()
            .filter(|(n, _)| n.as_str() == "a.d.x")
            .count(),
        2
    );
    assert_eq!(e.get("t"), Some(&Value::Bool(true)));
    assert_eq!(get(&e, "big").as_deref(), Some("18446744073709551615"));
}

#[test]
fn cloudtrail_ecs_copies() {
    let e = json(
        r#"{"eventVersion":"1.08","eventTime":"2023-07-10T11:42:18Z","eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/Admin/alice"},"sourceIPAddress":"3.225.16.109","errorCode":"AccessDenied","requestParameters":{"name":"trail"}}"#,
    );
    assert_eq!(e.format, Format::CloudTrail);
    assert_eq!(get(&e, "event.action").as_deref(), Some("StopLogging"));
    assert_eq!(get(&e, "event.outcome").as_deref(), Some("failure"));
    assert_eq!(get(&e, "user.name").as_deref(), Some("alice"));
    assert_eq!(get(&e, "source.ip").as_deref(), Some("3.225.16.109"));
    assert_eq!(get(&e, "requestParameters.name").as_deref(), Some("trail"));
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2023-07-10T11:42:18+00:00"
    );
    assert_eq!(
        e.logsource.service.as_ref().map(|s| s.as_str()),
        Some("cloudtrail")
    );
}

#[test]
fn windows_json_variants_get_evtx_names() {
    // evtx_dump style
    let e = json(
        r##"{"Event":{"#attributes":{"xmlns":"x"},"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Security-Auditing","Guid":"{g}"}},"EventID":{"#text":"4625","#attributes":{"Qualifiers":"0"}},"TimeCreated":{"#attributes":{"SystemTime":"2021-01-01T00:00:00.1234567Z"}},"Computer":"DC1","Security":null,"Execution":{"#attributes":{"ProcessID":1,"ThreadID":2}}},"EventData":{"TargetUserName":"bob","IpAddress":"10.1.1.1","Data":{"#text":["x","y"]}}}}"##,
    );
    assert_eq!(e.get("EventID"), Some(&Value::Int(4625)));
    assert_eq!(
        get(&e, "Provider_Name").as_deref(),
        Some("Microsoft-Windows-Security-Auditing")
    );
    assert_eq!(e.get("Execution_ProcessID"), Some(&Value::Int(1)));
    assert_eq!(get(&e, "event.outcome").as_deref(), Some("failure"));
    assert_eq!(get(&e, "user.name").as_deref(), Some("bob"));
    assert_eq!(get(&e, "source.ip").as_deref(), Some("10.1.1.1"));
    assert_eq!(get(&e, "host.name").as_deref(), Some("DC1"));
    assert_eq!(
        e.get("Data"),
        Some(&Value::List(vec![Value::from("x"), Value::from("y")]))
    );
    assert!(e.timestamp.is_some());
    // Winlogbeat
    let e = json(
        r#"{"@timestamp":"2021-01-01T00:00:00Z","winlog":{"event_id":4688,"channel":"Security","computer_name":"WS1","provider_name":"P","event_data":{"NewProcessName":"C:\\x.exe","CommandLine":"x"}}}"#,
    );
    assert_eq!(e.get("EventID"), Some(&Value::Int(4688)));
    assert_eq!(get(&e, "Channel").as_deref(), Some("Security"));
    assert_eq!(get(&e, "Image").as_deref(), Some("C:\\x.exe"));
    assert_eq!(get(&e, "process.command_line").as_deref(), Some("x"));
    // NXLog
    let e = json(
        r#"{"EventID":4624,"SourceName":"Microsoft-Windows-Security-Auditing","Hostname":"WS2","EventTime":"2020-10-18 19:50:09","IpAddress":"-","SubjectUserName":"s"}"#,
    );
    assert_eq!(
        get(&e, "Provider_Name").as_deref(),
        Some("Microsoft-Windows-Security-Auditing")
    );
    assert_eq!(get(&e, "Computer").as_deref(), Some("WS2"));
    assert!(e.get("source.ip").is_none(), "`-` is not an address");
    assert_eq!(get(&e, "user.name").as_deref(), Some("s"));
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2020-10-18T19:50:09+00:00"
    );
}

#[test]
fn read_error_display() {
    let mut e = ReadError::file(Path::new("a.log"), "bad");
    assert_eq!(e.to_string(), "a.log: bad");
    e.offset = Some(7);
    assert_eq!(e.to_string(), "a.log@7: bad");
    e.line = Some(3);
    assert_eq!(e.to_string(), "a.log:3: bad");
    e.line = None;
    e.record = Some(9);
    assert_eq!(e.to_string(), "a.log@7: record 9: bad");
}

#[test]
fn discover_walks_sorted_and_does_not_follow_directory_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("b");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("z.log"), "x").unwrap();
    std::fs::write(dir.path().join("a.log"), "x").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path(), sub.join("loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.log"), sub.join("link.log")).unwrap();
    }
    let (files, errors) = discover(&[dir.path().to_path_buf(), dir.path().join("missing")]);
    let names: Vec<_> = files
        .iter()
        .map(|f| {
            f.strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    #[cfg(unix)]
    assert_eq!(names, ["a.log", "b/link.log", "b/z.log"]);
    assert_eq!(errors.len(), 1);
}

#[test]
fn auditd_groups_records_and_decodes_hex() {
    let recs: Vec<_> = [
        &b"type=SYSCALL msg=audit(1604996384.965:93777): arch=c000003e syscall=59 a0=55 comm=\"dd\" exe=\"/usr/bin/dd\" key=(null)"[..],
        b"type=EXECVE msg=audit(1604996384.965:93777): argc=3 a0=\"dd\" a1=69663D2F6465762F7A65726F a2=\"bs=1\"",
        b"type=PROCTITLE msg=audit(1604996384.965:93777): proctitle=6464006966",
    ]
    .iter()
    .map(|l| parse_auditd_line(l).unwrap())
    .collect();
    let e = auditd_event(&recs, Vec::new(), origin(), &mut Interner::new());
    assert_eq!(get(&e, "a0").as_deref(), Some("dd"), "EXECVE's a0 first");
    assert_eq!(get(&e, "SYSCALL.a0").as_deref(), Some("55"));
    assert_eq!(
        get(&e, "process.command_line").as_deref(),
        Some("dd if=/dev/zero bs=1")
    );
    assert_eq!(get(&e, "proctitle").as_deref(), Some("dd if"));
    assert_eq!(get(&e, "type").as_deref(), Some("SYSCALL,EXECVE,PROCTITLE"));
    assert_eq!(get(&e, "key").as_deref(), Some("(null)"));
    assert!(e.timestamp.is_some());
}

#[test]
fn sysmon_record_nested_as_a_json_string_is_unpacked() {
    // A shipper's envelope whose `message` is the Sysmon event as JSON text.
    let e = json(
        r#"{"@timestamp":"2024-03-01T10:00:00Z","host":{"name":"ws1"},"message":"{\"EventID\":1,\"Channel\":\"Microsoft-Windows-Sysmon/Operational\",\"Computer\":\"WS1.corp\",\"Image\":\"C:\\\\Windows\\\\System32\\\\vssadmin.exe\",\"CommandLine\":\"vssadmin delete shadows /all /quiet\"}"}"#,
    );
    assert_eq!(e.get("EventID"), Some(&Value::Int(1)));
    assert_eq!(
        get(&e, "CommandLine").as_deref(),
        Some("vssadmin delete shadows /all /quiet")
    );
    assert_eq!(
        get(&e, "Image").as_deref(),
        Some(r"C:\Windows\System32\vssadmin.exe")
    );
    assert_eq!(
        e.logsource.product.as_ref().map(|p| p.as_str()),
        Some("windows")
    );
    // The envelope's own keys stay (its ECS `host.name` is the first one).
    assert_eq!(get(&e, "host.name").as_deref(), Some("ws1"));
    assert_eq!(get(&e, "Computer").as_deref(), Some("WS1.corp"));
    assert!(e.timestamp.is_some());
}

#[test]
fn event_data_nested_as_a_string_is_unpacked_in_place() {
    let e = json(
        r#"{"EventID":4688,"Channel":"security","Hostname":"dc1","EventData":"{\"NewProcessName\":\"C:\\\\w\\\\cmd.exe\",\"CommandLine\":\"cmd /c whoami\"}"}"#,
    );
    assert_eq!(get(&e, "CommandLine").as_deref(), Some("cmd /c whoami"));
    assert_eq!(get(&e, "Image").as_deref(), Some(r"C:\w\cmd.exe"));
    let e = json(
        r#"{"winlog":{"event_id":"1","channel":"Microsoft-Windows-Sysmon/Operational","event_data":"{\"Image\":\"C:\\\\x.exe\"}"}}"#,
    );
    assert_eq!(get(&e, "Image").as_deref(), Some(r"C:\x.exe"));
    assert_eq!(e.get("EventID"), Some(&Value::Int(1)));
    // An object in a string that is no record nests under its key.
    let e = json(r#"{"app":"x","detail":"{\"a\":{\"b\":2}}"}"#);
    assert_eq!(e.get("detail.a.b"), Some(&Value::Int(2)));
    // Text that only looks like JSON stays text.
    let e = json(r#"{"detail":"{not json}"}"#);
    assert_eq!(get(&e, "detail").as_deref(), Some("{not json}"));
}

fn read_text(name: &str, text: &str) -> FileReport {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    read_file(&p, &ReadOptions::default(), &mut |_| {})
}

#[test]
fn report_says_why_and_what_was_not_understood() {
    // Syslog carrying access lines: syslog by vote, the payloads counted.
    let line = r#"<190>Nov 10 01:00:01 web1 nginx: 203.0.113.9 - - [10/Nov/2023:10:00:01 +0900] "GET / HTTP/1.1" 200 5 "-" "curl/8""#;
    let r = read_text("messages", &format!("{line}\n{line}\nstray words\n"));
    assert_eq!(r.format, Some(Format::Syslog));
    assert_eq!(r.events, 3);
    assert_eq!(r.embedded.get("access-log"), Some(&2));
    assert_eq!(r.unparsed, 1);
    assert!(
        r.detected.as_deref().unwrap().contains("look like syslog"),
        "{:?}",
        r.detected
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // Unknown text: generic, with a warning naming what it resembles.
    let r = read_text(
        "fw.xml",
        "<ev><src>1.2.3.4</src><act>deny</act></ev>\n<ev><src>1.2.3.5</src><act>allow</act></ev>\n",
    );
    assert_eq!(r.format, Some(Format::Syslog));
    assert_eq!(r.unparsed, 2);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("read as generic text"));
    assert!(r.warnings[0].contains("XML"), "{}", r.warnings[0]);

    // Plain key=value lines are read by the key=value reader: understood, no warning.
    let r = read_text(
        "fw.log",
        "ts=1 src=1.2.3.4 dst=5.6.7.8 action=deny\nts=2 src=1.2.3.5 dst=5.6.7.8 action=allow\n",
    );
    assert_eq!(r.unparsed, 0, "{:?}", r.warnings);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // nginx error log: recognised by its own vote.
    let r = read_text(
        "error.log",
        "2023/11/10 01:02:03 [error] 1#1: *2 open() failed, client: 192.0.2.1, server: s, request: \"GET /x HTTP/1.1\"\n",
    );
    assert!(
        r.detected.as_deref().unwrap().contains("error-log"),
        "{:?}",
        r.detected
    );
    assert_eq!(r.embedded.get("error-log"), Some(&1));
    assert_eq!(r.unparsed, 0);
    assert!(r.warnings.is_empty());

    // Access log without status: the missing field is counted.
    let r = read_text(
        "access.log",
        "1.2.3.4 - - [10/Nov/2023:10:00:01 +0000] \"GET / HTTP/1.1\" - 0\n",
    );
    assert_eq!(r.format, Some(Format::AccessLog));
    assert_eq!(r.missing.get("http status"), Some(&1));

    // Broken JSON inside syslog: kept as text, warned about.
    let r = read_text("app.log", "<14>Nov 10 01:00:01 h app: {\"a\": \n");
    assert_eq!(r.missing.get("json payload (did not parse)"), Some(&1));
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
}

#[test]
fn journald_records_are_read_like_their_syslog_lines() {
    let e = json(
        r#"{"__REALTIME_TIMESTAMP":"1731200401000000","_HOSTNAME":"bastion","SYSLOG_IDENTIFIER":"sshd","_PID":"812","PRIORITY":"6","MESSAGE":"Failed password for invalid user oracle from 203.0.113.5 port 50022 ssh2"}"#,
    );
    assert_eq!(get(&e, "event.action").as_deref(), Some("ssh_login"));
    assert_eq!(get(&e, "event.outcome").as_deref(), Some("failure"));
    assert_eq!(get(&e, "user.name").as_deref(), Some("oracle"));
    assert_eq!(get(&e, "source.ip").as_deref(), Some("203.0.113.5"));
    assert_eq!(get(&e, "host.name").as_deref(), Some("bastion"));
    assert_eq!(e.get("process.pid"), Some(&Value::Int(812)));
    assert_eq!(
        e.logsource.service.as_ref().map(|s| s.as_str()),
        Some("sshd")
    );
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2024-11-10T01:00:01+00:00"
    );
}

#[test]
fn docker_json_file_lines_are_unpacked() {
    let e = json(
        r#"{"log":"203.0.113.8 - - [10/Nov/2024:01:00:01 +0000] \"GET /?q=<script>alert(1)</script> HTTP/1.1\" 200 5 \"-\" \"curl/8\"\n","stream":"stdout","time":"2024-11-10T01:00:01.5Z"}"#,
    );
    assert_eq!(e.format, Format::AccessLog);
    assert_eq!(
        e.logsource.category.as_ref().map(|s| s.as_str()),
        Some("webserver")
    );
    assert_eq!(
        get(&e, "url.query").as_deref(),
        Some("q=<script>alert(1)</script>")
    );
    let e =
        json(r#"{"log":"starting worker 3\n","stream":"stderr","time":"2024-11-10T01:00:01Z"}"#);
    assert_eq!(get(&e, "message").as_deref(), Some("starting worker 3"));
    assert!(e.timestamp.is_some());
}
