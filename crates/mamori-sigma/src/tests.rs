use super::*;

const RULE: &str = r#"
title: Test rule
id: 11111111-1111-1111-1111-111111111111
status: test
level: high
description_ja: テスト
tags: [attack.execution, attack.t1059]
logsource:
  product: windows
  category: process_creation
detection:
  selection_img:
    Image|endswith: '\cmd.exe'
  selection_cli:
    CommandLine|contains: whoami
  _internal:
    User: SYSTEM
  filter:
    User: admin
  condition: all of selection_* and not filter
"#;

#[test]
fn parses_rule_with_meta() {
    let (docs, errs) = parse_file("r.yml", RULE, &Placeholders::new());
    assert!(errs.is_empty(), "{errs:?}");
    let Document::Rule(r) = &docs[0] else {
        panic!()
    };
    assert_eq!(r.meta.level, Some(mamori_event::Level::High));
    assert_eq!(r.meta.extra["description_ja"], "テスト");
    assert_eq!(r.logsource.category.as_deref(), Some("process_creation"));
    assert_eq!(r.fields_used, vec!["Image", "CommandLine", "User"]);
    assert_eq!(r.meta.attack_tags().count(), 2);
}

#[test]
fn underscore_selections_skipped_by_them() {
    let src = RULE.replace("all of selection_* and not filter", "1 of them");
    let (docs, _) = parse_file("r.yml", &src, &Placeholders::new());
    let Document::Rule(r) = &docs[0] else {
        panic!()
    };
    let Expr::Or(items) = &r.condition else {
        panic!("{:?}", r.condition)
    };
    assert_eq!(
        items.len(),
        3,
        "selection_img, selection_cli, filter — not _internal"
    );
}

#[test]
fn errors_name_file_line_and_rule() {
    let src = RULE.replace(
        "condition: all of selection_* and not filter",
        "condition: selection_x",
    );
    let (_, errs) = parse_file("bad.yml", &src, &Placeholders::new());
    assert_eq!(errs.len(), 1);
    let e = &errs[0];
    assert_eq!(e.kind, ErrorKind::Condition);
    assert_eq!(e.line, Some(20));
    assert_eq!(e.to_string(), "bad.yml:20 (11111111-1111-1111-1111-111111111111): condition refers to undefined selection `selection_x`");

    let (_, errs) = parse_file("dup.yml", "title: a\ntitle: b\n", &Placeholders::new());
    assert_eq!(errs[0].kind, ErrorKind::Yaml);
    assert_eq!(errs[0].line, Some(2));
}

const CORR: &str = r#"
title: Many failed logons then success
id: c1
correlation:
  type: temporal_ordered
  rules: [many_failed, success]
  group-by: [User]
  timespan: 10m
level: high
---
title: Many failed
name: many_failed
correlation:
  type: event_count
  rules: [failed]
  group-by: [User]
  timespan: 10m
  condition:
    gte: 10
---
title: failed
name: failed
logsource: {product: windows, service: security}
detection:
  sel: {EventID: 4625}
  condition: sel
---
title: success
name: success
logsource: {product: windows, service: security}
detection:
  sel: {EventID: 4624}
  condition: sel
"#;

#[test]
fn correlation_documents_and_references() {
    let mut pack = RulePack::new();
    pack.add_file("c.yml", CORR, &Placeholders::new());
    pack.resolve_references();
    assert!(pack.failures.is_empty(), "{:?}", pack.failures);
    assert_eq!(pack.rules.len(), 2);
    assert_eq!(pack.correlations.len(), 2);
    let ec = pack
        .correlations
        .iter()
        .find(|c| c.kind == CorrelationKind::EventCount)
        .unwrap();
    assert_eq!(ec.timespan_secs, 600);

    let mut pack = RulePack::new();
    pack.add_file(
        "c.yml",
        &CORR.replace("rules: [failed]", "rules: [nope]"),
        &Placeholders::new(),
    );
    pack.resolve_references();
    assert_eq!(
        pack.failures.len(),
        2,
        "the broken correlation and, through it, its parent"
    );
}

#[test]
fn correlation_validation() {
    let bad = "title: x\ncorrelation:\n  type: value_count\n  rules: [a]\n  group-by: [h]\n  timespan: 1h\n  condition: {gte: 3}\n";
    let (_, errs) = parse_file("v.yml", bad, &Placeholders::new());
    assert!(errs[0].message.contains("condition.field"), "{errs:?}");
    let bad = bad
        .replace("1h", "1x")
        .replace("{gte: 3}", "{gte: 3, field: u}");
    let (_, errs) = parse_file("v.yml", &bad, &Placeholders::new());
    assert!(errs[0].message.contains("invalid timespan"), "{errs:?}");
    assert_eq!(parse_timespan("2d"), Some(172_800));
    assert_eq!(parse_timespan("1M"), Some(2_629_746));
}

#[test]
fn placeholders_resolve_or_fail() {
    let src = "title: p\nlogsource: {product: windows}\ndetection:\n  sel:\n    Computer|expand: '%dcs%'\n  condition: sel\n";
    let (_, errs) = parse_file("p.yml", src, &Placeholders::new());
    assert_eq!(errs[0].kind, ErrorKind::Value);
    assert!(errs[0].message.contains("%dcs%"));
    let ph = Placeholders::from_yaml("dcs: [DC1, DC2]").unwrap();
    let (docs, errs) = parse_file("p.yml", src, &ph);
    assert!(errs.is_empty());
    assert_eq!(docs.len(), 1);
}

#[test]
fn filters_parse() {
    let src = "title: f\nlogsource: {product: windows}\nfilter:\n  rules: [r1]\n  sel:\n    User|startswith: adm_\n  condition: not sel\n";
    let (docs, errs) = parse_file("f.yml", src, &Placeholders::new());
    assert!(errs.is_empty(), "{errs:?}");
    assert!(matches!(&docs[0], Document::Filter(f) if f.rules == vec!["r1"]));
}

/// Selections are moved into the condition on their last use and cloned before (load-time
/// cost, #16): every use must still get the whole selection, across a list of conditions.
#[test]
fn selections_used_several_times_are_whole_each_time() {
    let with = |cond: &str| {
        let src = RULE.replace(
            "condition: all of selection_* and not filter",
            &format!("condition: {cond}"),
        );
        let (docs, errs) = parse_file("r.yml", &src, &Placeholders::new());
        assert!(errs.is_empty(), "{errs:?}");
        let Document::Rule(r) = &docs[0] else {
            panic!()
        };
        format!("{:?}", r.condition)
    };
    let (img, cli, filter) = (with("selection_img"), with("selection_cli"), with("filter"));
    let got = with("['selection_img and not filter', '1 of selection_* or filter', selection_img]");
    let want =
        format!("Or([And([{img}, Not({filter})]), Or([Or([{img}, {cli}]), {filter}]), {img}])");
    assert_eq!(got, want);
    // An undefined selection after a used one is still reported.
    let src = RULE.replace("all of selection_* and not filter", "['filter', 'nope']");
    let (_, errs) = parse_file("r.yml", &src, &Placeholders::new());
    assert!(
        errs[0].message.contains("undefined selection `nope`"),
        "{errs:?}"
    );
}
