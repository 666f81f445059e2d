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

/// Issue #15 finding 10: the export spools to disk and cleans up — a stale spool of an export
/// killed half-way is replaced, none is left behind, and the bundle has many sources (more
/// than the spool keeps open at once) that all verify.
#[test]
fn export_spools_to_disk_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let mut v = crate::VaultConfig {
        fsync: crate::FsyncPolicy::Never,
        ..crate::VaultConfig::new(dir.path().join("vault"))
    }
    .open(crate::generate_keypair(), now)
    .unwrap();
    let sources: Vec<String> = (0..40).map(|i| format!("tcp://10.0.0.{i}:514")).collect();
    for k in 0..400usize {
        let payload = format!("line {k}\n");
        v.append(
            &crate::RecordInput {
                source: &sources[k * 7 % 40],
                received_at: Utc
                    .timestamp_opt(1_700_000_000 - (k % 13) as i64, 0)
                    .unwrap(),
                payload: payload.as_bytes(),
            },
            now,
        )
        .unwrap();
    }
    let out = dir.path().join("bundle.tar");
    let stale = dir.path().join(".bundle.tar.spool");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("00000000"), b"left by a killed export").unwrap();
    let req = ExportRequest {
        incident: None,
        filter: ExportFilter::default(),
        actor: "test".into(),
    };
    let s = v.export(&req, &out, now).unwrap();
    assert_eq!(s.records, 400);
    assert!(!stale.exists(), "the spool is removed");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "only the vault and the bundle: {names:?}");
    let r = crate::verify_bundle(&out, Some(&v.verifying_key())).unwrap();
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!(r.records, 400);
    assert_eq!(s.files, r.files);
}
