use std::path::Path;
use std::sync::Arc;

use super::*;

fn origin() -> Origin {
    Origin::File {
        path: Arc::from(Path::new("access_log")),
        record: None,
        line: Some(1),
        offset: 0,
    }
}

fn get(e: &Event, k: &str) -> Option<String> {
    e.get_str(k).map(|s| s.into_owned())
}

#[test]
fn combined_line_gets_ecs_and_sigma_names() {
    let line = br#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.php?a=1&b=2 HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;
    let e = parse_access_log_line(line, origin(), &mut Interner::new()).unwrap();
    for (k, v) in [
        ("source.ip", "127.0.0.1"),
        ("c-ip", "127.0.0.1"),
        ("user.name", "frank"),
        ("cs-username", "frank"),
        ("http.request.method", "GET"),
        ("cs-method", "GET"),
        ("url.original", "/apache_pb.php?a=1&b=2"),
        ("url.path", "/apache_pb.php"),
        ("cs-uri-stem", "/apache_pb.php"),
        ("url.query", "a=1&b=2"),
        ("cs-uri-query", "a=1&b=2"),
        ("http.version", "1.0"),
        ("c-uri-extension", "php"),
        ("cs-referer", "http://www.example.com/start.html"),
        ("cs-user-agent", "Mozilla/4.08 [en] (Win98; I ;Nav)"),
        ("c-useragent", "Mozilla/4.08 [en] (Win98; I ;Nav)"),
    ] {
        assert_eq!(get(&e, k).as_deref(), Some(v), "{k}");
    }
    assert_eq!(e.get("sc-status"), Some(&Value::Int(200)));
    assert_eq!(e.get("http.response.body.bytes"), Some(&Value::Int(2326)));
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2000-10-10T20:55:36+00:00"
    );
    assert_eq!(
        e.logsource.category.as_ref().map(|c| c.as_str()),
        Some("webserver")
    );
}

#[test]
fn malformed_requests_and_vhosts() {
    let mut names = Interner::new();
    let e = parse_access_log_line(
        br#"www.example.com 10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "-" 400 -"#,
        origin(),
        &mut names,
    )
    .unwrap();
    assert_eq!(get(&e, "cs-host").as_deref(), Some("www.example.com"));
    assert_eq!(get(&e, "c-ip").as_deref(), Some("10.0.0.1"));
    assert!(e.get("cs-method").is_none() && e.get("http.response.body.bytes").is_none());
    let e = parse_access_log_line(
        br#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a"b HTTP/1.1" 404 1"#,
        origin(),
        &mut names,
    )
    .unwrap();
    assert_eq!(get(&e, "url.original").as_deref(), Some("/a\"b"));
    let e = parse_access_log_line(
        b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"\x16\x03\x01\x02\" 400 226",
        origin(),
        &mut names,
    )
    .unwrap();
    assert!(e.get("cs-method").is_none() && e.get("url.original").is_some());
    assert!(parse_access_log_line(b"not an access log", origin(), &mut names).is_err());
    // Cut inside the user agent: what is there is kept.
    let e = parse_access_log_line(
        br#"10.0.0.5 - - [1/Apr/2014:00:00:01 -0500] "POST /wp-comments-post.php HTTP/1.1" 403 181 "-" "Googlebot/1"#,
        origin(),
        &mut names,
    )
    .unwrap();
    assert_eq!(
        get(&e, "user_agent.original").as_deref(),
        Some("Googlebot/1")
    );
    assert_eq!(get(&e, "sc-status").as_deref(), Some("403"));
}

#[test]
fn iis_fields_header_drives_the_columns() {
    let fields = IisFields::parse("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken s-computername");
    let line = b"2019-09-03 12:00:01 10.0.0.5 POST /owa/auth/x.aspx proxy&port=3389 443 - 10.0.0.9 Mozilla/5.0+(Windows+NT) - 200 0 0 15 WEB01";
    let e = parse_iis_line(line, &fields, origin(), &mut Interner::new()).unwrap();
    assert_eq!(
        get(&e, "cs-user-agent").as_deref(),
        Some("Mozilla/5.0 (Windows NT)")
    );
    assert_eq!(get(&e, "cs-uri-query").as_deref(), Some("proxy&port=3389"));
    assert_eq!(
        get(&e, "c-uri").as_deref(),
        Some("/owa/auth/x.aspx?proxy&port=3389")
    );
    assert_eq!(get(&e, "host.name").as_deref(), Some("WEB01"));
    assert_eq!(e.get("sc-status"), Some(&Value::Int(200)));
    assert!(e.get("cs-username").is_none());
    assert_eq!(
        e.timestamp.unwrap().to_rfc3339(),
        "2019-09-03T12:00:01+00:00"
    );
}
