use super::*;

fn origin() -> Origin {
    Origin::File {
        path: Arc::from(Path::new("auth.log")),
        record: None,
        line: Some(7),
        offset: 120,
    }
}

#[test]
fn first_field_wins_on_lookup_and_iteration_sees_all() {
    let mut names = Interner::new();
    let mut e = Event::new(Format::Syslog, origin(), b"x".to_vec());
    e.push(names.intern("user.name"), Value::from("alice"));
    e.push(names.intern("user.name"), Value::from("bob"));
    assert_eq!(e.get_str("user.name").as_deref(), Some("alice"));
    assert_eq!(e.fields().len(), 2);
    assert_eq!(names.len(), 1, "interned once");
}

#[test]
fn push_nonempty_skips_null_and_empty() {
    let mut e = Event::new(Format::Json, origin(), Vec::new());
    e.push_nonempty("a".into(), Value::Null);
    e.push_nonempty("b".into(), Value::from(""));
    e.push_nonempty("c".into(), Value::Int(0));
    assert_eq!(e.fields().len(), 1);
}

#[test]
fn numbers_render_and_parse() {
    assert_eq!(Value::Int(4688).to_text(), "4688");
    assert_eq!(Value::from("0x10").as_f64(), Some(16.0));
    assert_eq!(Value::from(" 12.5 ").as_f64(), Some(12.5));
    assert_eq!(Value::from("abc").as_f64(), None);
    assert_eq!(Value::from("inf").as_f64(), None);
}

#[test]
fn origin_displays_file_and_locator() {
    assert_eq!(origin().to_string(), "auth.log:7");
    let o = Origin::Network {
        peer: "127.0.0.1:514".parse().unwrap(),
        transport: Transport::Udp,
    };
    assert_eq!(o.to_string(), "udp://127.0.0.1:514");
}

#[test]
fn host_prefers_ecs_then_windows_then_syslog() {
    let mut e = Event::new(Format::Evtx, origin(), Vec::new());
    e.push("Computer".into(), Value::from("WS01"));
    assert_eq!(e.host().as_deref(), Some("WS01"));
    e.fields_mut()
        .insert(0, ("host.name".into(), Value::from("srv")));
    assert_eq!(e.host().as_deref(), Some("srv"));
}

#[test]
fn level_order_and_labels() {
    assert!(Level::Critical > Level::High);
    assert_eq!(Level::parse("medium"), Some(Level::Medium));
    assert_eq!(Level::High.as_str_ja(), "高");
    assert_eq!(Format::parse("access-log"), Some(Format::AccessLog));
}

#[test]
fn fields_json_text_is_fields_json_rendered() {
    let mut names = Interner::new();
    let mut e = Event::new(Format::Json, origin(), Vec::new());
    e.push(names.intern("b"), Value::from("x\"\n\u{1}é"));
    e.push(names.intern("a"), Value::Int(-4));
    e.push(names.intern("b"), Value::from("second"));
    e.push("a".into(), Value::Null);
    e.push(names.intern("f"), Value::Float(1.5));
    e.push(names.intern("nan"), Value::Float(f64::NAN));
    e.push(names.intern("t"), Value::Bool(true));
    e.push(
        names.intern("l"),
        Value::List(vec![Value::from("p"), Value::Int(2), Value::Null]),
    );
    e.push(names.intern("n"), Value::Null);
    let text = e.fields_json_text();
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back, e.fields_json());
    // Field order, first value of a repeated name.
    assert!(
        text.starts_with(r#"{"b":"x\"\n\u0001é","a":-4,"f":1.5,"#),
        "{text}"
    );
    assert_eq!(back["b"], "x\"\n\u{1}é");
    assert_eq!(back["a"], -4);
    assert!(back["nan"].is_null());
}

#[test]
fn intern_seq_gives_the_interned_name_whatever_the_order() {
    let mut names = Interner::new();
    let first: Vec<FieldName> = ["a", "b", "c"]
        .iter()
        .map(|k| names.intern_seq(k))
        .collect();
    names.start_record();
    // Same order: the same allocations.
    for (k, n) in ["a", "b", "c"].iter().zip(&first) {
        let m = names.intern_seq(k);
        assert!(std::ptr::eq(m.as_str().as_ptr(), n.as_str().as_ptr()));
    }
    names.start_record();
    // Another order, a new name, more names than before: still the interned names.
    for k in ["c", "x", "a", "b", "a"] {
        let m = names.intern_seq(k);
        assert_eq!(m.as_str(), k);
        let n = names.intern(k);
        assert!(std::ptr::eq(m.as_str().as_ptr(), n.as_str().as_ptr()));
    }
    assert_eq!(names.len(), 4);
}

#[test]
fn json_strings_are_escaped_as_serde_json_escapes_them() {
    let mut all: String = (0u8..0x80).map(char::from).collect();
    all.push_str("é日本\u{7f}\u{2028}\"\\x");
    let mut cases: Vec<String> = vec![all, String::new(), "plain".into(), "\"".into()];
    cases.extend((0u8..0x20).map(|c| format!("a{}b", char::from(c))));
    // Every byte to escape at every place in and across the eight-byte words, among plain
    // and multi-byte text.
    for c in ['"', '\\', '\n', '\u{1}', '\u{1f}', 'é', '\u{7f}'] {
        for len in 0..20 {
            for at in 0..=len {
                let mut s: String = "abcdefghijklmnopqrst"[..len].into();
                s.insert(at, c);
                cases.push(s.clone());
                s.insert_str(0, "日本");
                cases.push(s);
            }
        }
    }
    for s in cases {
        let mut got = Vec::new();
        value::write_json_str(&mut got, &s);
        assert_eq!(
            String::from_utf8(got).unwrap(),
            serde_json::to_string(&s).unwrap(),
            "{s:?}"
        );
    }
    for i in [0, -1, i64::MIN, i64::MAX, 4688] {
        let mut got = Vec::new();
        Value::Int(i).write_json(&mut got);
        assert_eq!(got, serde_json::to_vec(&i).unwrap());
    }
}
