use super::*;

fn pieces(s: &str) -> Vec<Piece> {
    Pattern::parse(s).0
}

fn lit(s: &str) -> Piece {
    Piece::Lit(s.into())
}

#[test]
fn escapes_follow_pysigma() {
    assert_eq!(
        pieces(r"escaped\*\?\\*?"),
        vec![lit(r"escaped*?\"), Piece::Any, Piece::One]
    );
    assert_eq!(pieces(r"C:\Windows\x"), vec![lit(r"C:\Windows\x")]);
    assert_eq!(pieces(r"\\*"), vec![lit(r"\"), Piece::Any]);
    assert_eq!(pieces(r"\\\*"), vec![lit(r"\*")]);
    assert_eq!(pieces(r"\\\\"), vec![lit(r"\\")]);
    assert_eq!(pieces(r"trail\"), vec![lit(r"trail\")]);
    assert_eq!(Pattern::parse(r"a\*b*").to_string(), r"a\*b*");
}

fn item(yaml: &str) -> Result<Expr, String> {
    let doc = crate::yaml::parse_documents(yaml).unwrap().remove(0);
    parse_selection(&doc, &Placeholders::new()).map_err(|p| p.message)
}

fn tests_of(e: &Expr) -> Vec<String> {
    match e {
        Expr::Test { test, .. } => vec![test.key()],
        Expr::And(v) | Expr::Or(v) => v.iter().flat_map(tests_of).collect(),
        Expr::Not(x) => tests_of(x),
        Expr::Const(b) => vec![format!("const:{b}")],
    }
}

#[test]
fn contains_does_not_double_wildcards() {
    let e = item("f|contains: '*abc'").unwrap();
    assert_eq!(tests_of(&e), vec!["s0:*abc*"]);
    let e = item("f|startswith: 'abc'").unwrap();
    assert_eq!(tests_of(&e), vec!["s0:abc*"]);
    let e = item(r"f|endswith: 'foobar\\'").unwrap();
    assert_eq!(tests_of(&e), vec![r"s0:*foobar\\"]);
}

#[test]
fn all_makes_and_and_neq_negates() {
    assert!(matches!(
        item("f|contains|all: [a, b]").unwrap(),
        Expr::And(_)
    ));
    assert!(matches!(item("f: [a, b]").unwrap(), Expr::Or(_)));
    assert!(matches!(item("f|neq: [a, b]").unwrap(), Expr::Not(_)));
}

#[test]
fn base64offset_variants() {
    assert_eq!(
        base64_offsets(b"foobar"),
        vec!["Zm9vYmFy", "Zvb2Jhc", "mb29iYX"]
    );
    let e = item("f|base64offset|contains: foobar").unwrap();
    assert_eq!(
        tests_of(&e),
        vec!["s0:*Zm9vYmFy*", "s0:*Zvb2Jhc*", "s0:*mb29iYX*"]
    );
    assert!(item("f|base64: 'a*'").unwrap_err().contains("wildcards"));
}

#[test]
fn wide_then_base64() {
    // "ab" as UTF-16LE is 61 00 62 00 → YQBiAA==
    let e = item("f|wide|base64: ab").unwrap();
    assert_eq!(tests_of(&e), vec!["s0:YQBiAA=="]);
    assert!(item("f|wide: 'é'").is_err());
}

#[test]
fn windash_expands_only_option_dashes() {
    let e = item("f|windash: '-param-1 -p'").unwrap();
    let t = tests_of(&e);
    assert_eq!(t.len(), 25, "{t:?}");
    assert!(t.contains(&"s0:/param-1 /p".to_string()));
    assert!(t.contains(&"s0:\u{2013}param-1 \u{2014}p".to_string()));
}

#[test]
fn regex_flags_and_errors() {
    let e = item("f|re|i: '^abc$'").unwrap();
    assert_eq!(tests_of(&e), vec!["r:(?i)^abc$"]);
    assert!(item("f|re: '(unclosed'")
        .unwrap_err()
        .contains("invalid regular expression"));
    assert!(item("f|i: 'x'").unwrap_err().contains("need `re`"));
    assert!(item("f|base64|re: 'x'").is_err());
    let e = item("f|re|contains: 'abc'").unwrap();
    assert_eq!(tests_of(&e), vec!["r:abc"]);
    let e = item("f|re|startswith: 'abc'").unwrap();
    assert_eq!(tests_of(&e), vec!["r:^(?:abc)"]);
}

#[test]
fn cidr_is_strict_and_numeric() {
    assert!(item("f|cidr: 192.168.1.1/24")
        .unwrap_err()
        .contains("host bits"));
    let c = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(c.contains("10.2.3.4".parse().unwrap()));
    assert!(!c.contains("11.0.0.1".parse().unwrap()));
    assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
    let c6 = Cidr::parse("2001:db8::/32").unwrap();
    assert!(c6.contains("2001:db8::1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
    assert!(
        item("'|cidr': 10.0.0.0/8").is_err(),
        "keyword cidr is rejected"
    );
}

#[test]
fn exists_null_numbers_and_keywords() {
    assert_eq!(tests_of(&item("f|exists: true").unwrap()), vec!["e:true"]);
    assert!(item("f|exists: maybe").is_err());
    assert_eq!(tests_of(&item("f: null").unwrap()), vec!["null"]);
    assert_eq!(tests_of(&item("f: []").unwrap()), vec!["null"]);
    assert_eq!(tests_of(&item("f: 4688").unwrap()), vec!["n=4688"]);
    assert_eq!(tests_of(&item("f|gte: 10").unwrap()), vec!["cGte10"]);
    assert!(item("f|gt: abc").is_err());
    assert_eq!(tests_of(&item("- a\n- b\n").unwrap()), vec!["s0:a", "s0:b"]);
    assert_eq!(tests_of(&item("f|cased: Abc").unwrap()), vec!["s1:Abc"]);
    assert!(item("f|unknown: x")
        .unwrap_err()
        .contains("unknown modifier"));
    assert_eq!(tests_of(&item("f|hour: 3").unwrap()), vec!["tHour:3"]);
}

#[test]
fn fieldref_and_expand() {
    assert_eq!(tests_of(&item("f|fieldref: g").unwrap()), vec!["fEquals:g"]);
    assert_eq!(
        tests_of(&item("f|fieldref|endswith: g").unwrap()),
        vec!["fEndsWith:g"]
    );
    // without expand, %x% is literal text
    assert_eq!(tests_of(&item("f: '%x%'").unwrap()), vec!["s0:%x%"]);
    assert!(item("f|expand: '%x%'").unwrap_err().contains("%x%"));
}

/// `Pattern::parse` copies literal runs whole (#16); the per-character parser it replaced is
/// the oracle, over every string of up to 5 characters from an alphabet of the special ones.
#[test]
fn pattern_parse_matches_the_per_character_parser() {
    fn reference(s: &str) -> Pattern {
        let mut p = Pattern::default();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek() {
                    Some(&n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        p.push_char(n);
                    }
                    _ => p.push_char('\\'),
                },
                '*' => p.push_piece(Piece::Any),
                '?' => p.push_piece(Piece::One),
                c => p.push_char(c),
            }
        }
        p
    }
    let alphabet = ['\\', '*', '?', 'a', 'é'];
    let mut strings = vec![String::new()];
    for _ in 0..5 {
        let longer: Vec<String> = strings
            .iter()
            .filter(|s| s.chars().count() == strings.last().map_or(0, |l| l.chars().count()))
            .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
            .collect();
        strings.extend(longer);
    }
    assert_eq!(strings.len(), 1 + 5 + 25 + 125 + 625 + 3125);
    for s in &strings {
        assert_eq!(Pattern::parse(s), reference(s), "{s:?}");
    }
}
