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
        store_seqs: None,
    };
    let s = 1_000_000_000i64;
    assert!(f.matches(10 * s, "tcp://web01:1"));
    assert!(!f.matches(20 * s, "tcp://web01:1"));
    assert!(!f.matches(9 * s, "tcp://web01:1"));
    assert!(!f.matches(15 * s, "tcp://web02:1"));
    assert!(f.matches(10 * s, &crate::event_source("tcp://web01:1", 7)));
}

#[test]
fn filter_selects_store_seqs_sealed_by_the_server() {
    let f = ExportFilter {
        store_seqs: Some([3, 5].into_iter().collect()),
        ..Default::default()
    };
    assert!(f.matches(0, &crate::event_source("tcp://10.0.0.5:4000", 5)));
    assert!(!f.matches(0, &crate::event_source("tcp://10.0.0.5:4000", 4)));
    assert!(
        !f.matches(0, "tcp://10.0.0.5:4000"),
        "records without a store seq are not an incident's"
    );
    assert!(!f.matches(0, "x#seq=5x"));
    assert_eq!(
        crate::store_seq_of("file:/var/log/auth.log#seq=12"),
        Some(12)
    );
    assert_eq!(
        crate::host_of(&crate::event_source("udp://web01:514", 9)),
        "web01"
    );
}
