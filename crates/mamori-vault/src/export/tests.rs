use super::*;

#[test]
fn host_of_understands_common_source_shapes() {
    for (src, host) in [
        ("udp://10.0.0.5:514", "10.0.0.5"),
        ("tcp://[2001:db8::1]:6514/x", "2001:db8::1"),
        ("https://user@web01.example:8443/path", "web01.example"),
        ("web01", "web01"),
        ("web01/var/log/auth.log", "web01"),
        ("file:/var/log/auth.log", "file"),
    ] {
        assert_eq!(host_of(src), host, "{src}");
    }
}

#[test]
fn safe_component_never_yields_a_path() {
    for s in [
        "../../etc/passwd",
        "/abs",
        ".hidden",
        "",
        "a/b\\c",
        "..",
        "日本語",
    ] {
        let c = safe_component(s);
        assert!(
            !c.contains('/') && !c.contains('\\') && !c.starts_with('.'),
            "{s} -> {c}"
        );
        assert!(c
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    }
    assert_ne!(safe_component("a/b"), safe_component("a_b"));
}

#[test]
fn csv_cells_are_quoted_and_defused() {
    assert_eq!(csv_cell("plain"), "plain");
    assert_eq!(csv_cell("a,b"), "\"a,b\"");
    assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_cell("=cmd()"), "'=cmd()");
}

#[test]
fn filter_matches_half_open_time_range() {
    let f = ExportFilter {
        from: Some(Utc.timestamp_opt(10, 0).unwrap()),
        to: Some(Utc.timestamp_opt(20, 0).unwrap()),
        host: Some("WEB01".into()),
        source: None,
    };
    let s = 1_000_000_000i64;
    assert!(f.matches(10 * s, "tcp://web01:1"));
    assert!(!f.matches(20 * s, "tcp://web01:1"));
    assert!(!f.matches(9 * s, "tcp://web01:1"));
    assert!(!f.matches(15 * s, "tcp://web02:1"));
}
