//! Data-driven matcher tests: `check(rule, event, expect)` — a rule's detection (YAML), one flat
//! event (JSON), and whether it must match. Covers every modifier and condition form.

use std::path::Path;
use std::sync::Arc;

use mamori_event::{Event, FieldName, Format, Origin, Value};
use mamori_sigma::{Placeholders, RulePack};

use super::*;

fn event(json: &str) -> Event {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut e = Event::new(
        Format::Json,
        Origin::File {
            path: Arc::from(Path::new("t.json")),
            record: None,
            line: Some(1),
            offset: 0,
        },
        json.as_bytes().to_vec(),
    );
    for (k, v) in v.as_object().unwrap() {
        e.push(FieldName::new(k), Value::from_json(v));
    }
    e
}

fn compile(rules: &str) -> RuleSet {
    let mut pack = RulePack::new();
    pack.add_file("t.yml", rules, &Placeholders::new());
    pack.resolve_references();
    assert!(pack.failures.is_empty(), "{:?}", pack.failures);
    RuleSet::compile(&pack, &CompileOptions::default())
}

fn rule(detection: &str) -> String {
    let body: String = detection.lines().map(|l| format!("  {l}\n")).collect();
    format!("title: t\nid: r1\nlogsource: {{product: test}}\ndetection:\n{body}")
}

/// Matches `detection` (selections + condition) against `event` with a product-less logsource.
fn check(detection: &str, ev: &str, expect: bool) {
    let rs = compile(&rule(detection));
    let mut e = event(ev);
    e.logsource.product = Some("test".into());
    let mut out = Vec::new();
    rs.matches(&e, &mut rs.scratch(), &mut out);
    assert_eq!(
        !out.is_empty(),
        expect,
        "detection:\n{detection}\nevent: {ev}"
    );
}

#[test]
fn plain_strings_are_case_insensitive_equality() {
    let d = "sel:\n  Image: 'C:\\Windows\\cmd.exe'\ncondition: sel";
    check(d, r#"{"Image":"c:\\windows\\CMD.EXE"}"#, true);
    check(d, r#"{"Image":"c:\\windows\\cmd.exe2"}"#, false);
    check(d, r#"{"Other":"C:\\Windows\\cmd.exe"}"#, false);
}

#[test]
fn contains_startswith_endswith() {
    check(
        "s:\n  F|contains: whoami\ncondition: s",
        r#"{"F":"x WHOAMI /all"}"#,
        true,
    );
    check(
        "s:\n  F|startswith: abc\ncondition: s",
        r#"{"F":"abcdef"}"#,
        true,
    );
    check(
        "s:\n  F|startswith: abc\ncondition: s",
        r#"{"F":"xabc"}"#,
        false,
    );
    check(
        "s:\n  F|endswith: '.exe'\ncondition: s",
        r#"{"F":"a.EXE"}"#,
        true,
    );
    check(
        "s:\n  F|endswith: '.exe'\ncondition: s",
        r#"{"F":"a.exe.txt"}"#,
        false,
    );
}

#[test]
fn wildcards_and_escapes() {
    check("s:\n  F: 'a*c?e'\ncondition: s", r#"{"F":"ABBBCDE"}"#, true);
    check("s:\n  F: 'a*c?e'\ncondition: s", r#"{"F":"abce"}"#, false);
    check("s:\n  F: 'a\\*b'\ncondition: s", r#"{"F":"a*b"}"#, true);
    check("s:\n  F: 'a\\*b'\ncondition: s", r#"{"F":"axb"}"#, false);
    check("s:\n  F: '*'\ncondition: s", r#"{"F":"anything"}"#, true);
    check("s:\n  F: '*'\ncondition: s", r#"{"G":"x"}"#, false);
    // multi-line values: `*` spans newlines
    check("s:\n  F: 'a*b'\ncondition: s", r#"{"F":"a\nb"}"#, true);
}

#[test]
fn lists_all_and_maps() {
    check(
        "s:\n  F|contains: [x, y]\ncondition: s",
        r#"{"F":"..y.."}"#,
        true,
    );
    check(
        "s:\n  F|contains|all: [x, y]\ncondition: s",
        r#"{"F":"..y.."}"#,
        false,
    );
    check(
        "s:\n  F|contains|all: [x, y]\ncondition: s",
        r#"{"F":"y..x"}"#,
        true,
    );
    check("s:\n  - F: a\n  - G: b\ncondition: s", r#"{"G":"b"}"#, true);
    check("s:\n  F: a\n  G: b\ncondition: s", r#"{"G":"b"}"#, false);
}

#[test]
fn keywords_search_every_field() {
    check(
        "k:\n  - evil\n  - bad\ncondition: k",
        r#"{"message":"this is EVIL stuff"}"#,
        true,
    );
    check("k:\n  - evil\ncondition: k", r#"{"message":"fine"}"#, false);
    check(
        "k:\n  '|all':\n    - one\n    - two\ncondition: k",
        r#"{"a":"one","b":"two"}"#,
        true,
    );
    check(
        "k:\n  '|all':\n    - one\n    - two\ncondition: k",
        r#"{"a":"one"}"#,
        false,
    );
}

#[test]
fn numbers_null_bool_exists() {
    check(
        "s:\n  EventID: 4688\ncondition: s",
        r#"{"EventID":4688}"#,
        true,
    );
    check(
        "s:\n  EventID: 4688\ncondition: s",
        r#"{"EventID":"4688"}"#,
        true,
    );
    check(
        "s:\n  EventID: [1, 4688]\ncondition: s",
        r#"{"EventID":5}"#,
        false,
    );
    check("s:\n  F: null\ncondition: s", r#"{"G":1}"#, true);
    check("s:\n  F: null\ncondition: s", r#"{"F":null}"#, true);
    check("s:\n  F: null\ncondition: s", r#"{"F":"x"}"#, false);
    check("s:\n  F: ''\ncondition: s", r#"{"F":""}"#, true);
    check("s:\n  F: true\ncondition: s", r#"{"F":true}"#, true);
    check("s:\n  F: true\ncondition: s", r#"{"F":"True"}"#, true);
    check("s:\n  F|exists: true\ncondition: s", r#"{"F":"x"}"#, true);
    check("s:\n  F|exists: false\ncondition: s", r#"{"F":"x"}"#, false);
    check("s:\n  F|exists: false\ncondition: s", r#"{"G":"x"}"#, true);
}

#[test]
fn numeric_comparisons_and_neq() {
    check("s:\n  N|gt: 10\ncondition: s", r#"{"N":11}"#, true);
    check("s:\n  N|gt: 10\ncondition: s", r#"{"N":10}"#, false);
    check("s:\n  N|gte: 10\ncondition: s", r#"{"N":"10"}"#, true);
    check("s:\n  N|lt: 10\ncondition: s", r#"{"N":9.5}"#, true);
    check("s:\n  N|lte: 10\ncondition: s", r#"{"N":"abc"}"#, false);
    check("s:\n  F|neq: [a, b]\ncondition: s", r#"{"F":"c"}"#, true);
    check("s:\n  F|neq: [a, b]\ncondition: s", r#"{"F":"b"}"#, false);
}

#[test]
fn regex_with_flags() {
    check(
        "s:\n  F|re: '^ab+c$'\ncondition: s",
        r#"{"F":"abbbc"}"#,
        true,
    );
    check(
        "s:\n  F|re: '^ab+c$'\ncondition: s",
        r#"{"F":"ABBC"}"#,
        false,
    );
    check(
        "s:\n  F|re|i: '^ab+c$'\ncondition: s",
        r#"{"F":"ABBC"}"#,
        true,
    );
    check("s:\n  F|re: 'a.b'\ncondition: s", r#"{"F":"a\nb"}"#, false);
    check("s:\n  F|re|s: 'a.b'\ncondition: s", r#"{"F":"a\nb"}"#, true);
    check("s:\n  F|re|m: '^b$'\ncondition: s", r#"{"F":"a\nb"}"#, true);
    check(
        "s:\n  N|re: '^4[0-9]+$'\ncondition: s",
        r#"{"N":4688}"#,
        true,
    );
}

#[test]
fn cidr_matches_numerically() {
    check(
        "s:\n  ip|cidr: 10.0.0.0/8\ncondition: s",
        r#"{"ip":"10.1.2.3"}"#,
        true,
    );
    check(
        "s:\n  ip|cidr: 10.0.0.0/8\ncondition: s",
        r#"{"ip":"100.1.2.3"}"#,
        false,
    );
    check(
        "s:\n  ip|cidr: ['192.168.0.0/16', 'fe80::/10']\ncondition: s",
        r#"{"ip":"fe80::1"}"#,
        true,
    );
    check(
        "s:\n  ip|cidr: 10.0.0.0/8\ncondition: s",
        r#"{"ip":"not an ip"}"#,
        false,
    );
}

#[test]
fn cased_base64_wide_windash() {
    check("s:\n  F|cased: Abc\ncondition: s", r#"{"F":"Abc"}"#, true);
    check("s:\n  F|cased: Abc\ncondition: s", r#"{"F":"abc"}"#, false);
    // "whoami" base64-encoded somewhere in a command line, at any offset
    check(
        "s:\n  F|base64offset|contains: whoami\ncondition: s",
        r#"{"F":"powershell -enc IHdob2FtaQ=="}"#,
        true,
    );
    check(
        "s:\n  F|base64|contains: whoami\ncondition: s",
        r#"{"F":"x d2hvYW1p y"}"#,
        true,
    );
    // UTF-16LE "iex" base64: aQBlAHgA
    check(
        "s:\n  F|wide|base64offset|contains: iex\ncondition: s",
        r#"{"F":"-e aQBlAHgA"}"#,
        true,
    );
    check(
        "s:\n  F|windash|contains: ' -enc '\ncondition: s",
        r#"{"F":"powershell /enc AAA"}"#,
        true,
    );
    check(
        "s:\n  F|windash|contains: ' -enc '\ncondition: s",
        "{\"F\":\"powershell \u{2013}enc AAA\"}",
        true,
    );
}

#[test]
fn fieldref_and_time_parts() {
    check(
        "s:\n  A|fieldref: B\ncondition: s",
        r#"{"A":"x","B":"X"}"#,
        true,
    );
    check(
        "s:\n  A|fieldref: B\ncondition: s",
        r#"{"A":"x","B":"y"}"#,
        false,
    );
    check(
        "s:\n  A|fieldref|endswith: B\ncondition: s",
        r#"{"A":"path\\evil.exe","B":"evil.exe"}"#,
        true,
    );
    check(
        "s:\n  T|hour: 3\ncondition: s",
        r#"{"T":"2024-01-02T03:04:05Z"}"#,
        true,
    );
    check(
        "s:\n  T|hour: 4\ncondition: s",
        r#"{"T":"2024-01-02T03:04:05Z"}"#,
        false,
    );
    check(
        "s:\n  T|year: 2024\ncondition: s",
        r#"{"T":"2024-01-02 03:04:05.123"}"#,
        true,
    );
}

#[test]
fn conditions_not_of_them_underscore() {
    let d = "sel1:\n  A: x\nsel2:\n  B: y\n_ctx:\n  C: z\ncondition: all of them";
    check(d, r#"{"A":"x","B":"y"}"#, true);
    let d = "sel1:\n  A: x\nsel2:\n  B: y\ncondition: 1 of sel* and not sel2";
    check(d, r#"{"A":"x"}"#, true);
    check(d, r#"{"A":"x","B":"y"}"#, false);
    let d = "a:\n  A: x\nb:\n  B: y\nc:\n  C: z\ncondition: a or b and c";
    check(d, r#"{"B":"y"}"#, false);
    check(d, r#"{"A":"x"}"#, true);
    check(
        "a:\n  A: x\nb:\n  B: y\ncondition:\n  - a\n  - b",
        r#"{"B":"y"}"#,
        true,
    );
    // A rule that is only a negation has no trigger literal and must still run.
    check("f:\n  A: x\ncondition: not f", r#"{"B":"y"}"#, true);
}

#[test]
fn list_values_in_events() {
    check("s:\n  Tags: b\ncondition: s", r#"{"Tags":["a","b"]}"#, true);
    check(
        "s:\n  Tags|contains: zz\ncondition: s",
        r#"{"Tags":["a","b"]}"#,
        false,
    );
}

fn win(json: &str) -> Event {
    let mut e = event(json);
    e.logsource.product = Some("windows".into());
    e
}

#[test]
fn windows_logsource_mapping() {
    let rs = compile(
        "title: pc\nid: pc\nlogsource: {product: windows, category: process_creation}\ndetection:\n  s:\n    Image|endswith: '\\whoami.exe'\n  condition: s\n",
    );
    let mut out = Vec::new();
    let mut sc = rs.scratch();
    let sysmon = win(
        r#"{"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":1,"Image":"C:\\w\\whoami.exe"}"#,
    );
    rs.matches(&sysmon, &mut sc, &mut out);
    assert_eq!(out.len(), 1);
    // Security 4688 carries NewProcessName: the field mapping makes `Image` read it.
    out.clear();
    let sec = win(r#"{"Channel":"Security","EventID":4688,"NewProcessName":"C:\\w\\whoami.exe"}"#);
    rs.matches(&sec, &mut sc, &mut out);
    assert_eq!(out.len(), 1);
    // Same field, wrong EventID: not a process creation.
    out.clear();
    let other = win(
        r#"{"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":3,"Image":"C:\\w\\whoami.exe"}"#,
    );
    rs.matches(&other, &mut sc, &mut out);
    assert!(out.is_empty());
}

#[test]
fn other_logsources_use_reader_services() {
    let rs = compile(
        "title: a\nid: a\nlogsource: {product: linux, service: auth}\ndetection:\n  k:\n    - 'Failed password'\n  condition: k\n",
    );
    let mut e = event(r#"{"message":"Failed password for root from 1.2.3.4 port 22 ssh2"}"#);
    e.logsource.product = Some("linux".into());
    e.logsource.service = Some("sshd".into());
    let mut out = Vec::new();
    rs.matches(&e, &mut rs.scratch(), &mut out);
    assert_eq!(out.len(), 1, "sshd counts as auth");
    e.logsource.service = Some("kernel".into());
    out.clear();
    rs.matches(&e, &mut rs.scratch(), &mut out);
    assert!(out.is_empty());
}

#[test]
fn filters_and_correlation_bases() {
    let src = "title: r\nid: r1\nlogsource: {product: test}\ndetection:\n  s:\n    A: x\n  condition: s\n---\ntitle: f\nlogsource: {product: test}\nfilter:\n  rules: [r1]\n  adm:\n    User|startswith: adm_\n  condition: not adm\n";
    let rs = compile(src);
    let mut out = Vec::new();
    let mut e = event(r#"{"A":"x","User":"adm_bob"}"#);
    e.logsource.product = Some("test".into());
    rs.matches(&e, &mut rs.scratch(), &mut out);
    assert!(out.is_empty(), "filtered out");
    let mut e = event(r#"{"A":"x","User":"bob"}"#);
    e.logsource.product = Some("test".into());
    rs.matches(&e, &mut rs.scratch(), &mut out);
    assert_eq!(out.len(), 1);
    assert!(rs.rule(out[0].rule).standalone);
}

#[test]
fn identical_tests_are_deduplicated() {
    let a = "title: a\nid: a\nlogsource: {product: test}\ndetection:\n  s:\n    F|contains: evil\n  condition: s\n";
    let b = a.replace("id: a", "id: b");
    let rs = compile(&format!("{a}---\n{b}"));
    assert_eq!(rs.len(), 2);
    // one literal predicate + one logsource predicate, shared by both rules
    assert_eq!(rs.predicate_count(), 2);
}

/// Issue #16: `''` and `null` are two predicates (Sigma spec, "Special Field Values"): null is
/// an absent or null field, `''` a present empty string.
#[test]
fn null_and_empty_are_distinct() {
    let null = "s:\n  F: null\ncondition: s";
    let empty = "s:\n  F: ''\ncondition: s";
    check(null, r#"{"F":""}"#, false);
    check(null, r#"{"F":null}"#, true);
    check(null, r#"{"G":"x"}"#, true);
    check(empty, r#"{"F":""}"#, true);
    check(empty, r#"{"F":null}"#, false);
    check(empty, r#"{"G":"x"}"#, false);
    check(empty, r#"{"F":"x"}"#, false);
    check(empty, r#"{"F":["a",""]}"#, true);
    // `field: []` is null, as in pySigma.
    check("s:\n  F: []\ncondition: s", r#"{"G":"x"}"#, true);
    check("s:\n  F: []\ncondition: s", r#"{"F":""}"#, false);
    // The spec's own example: one selection per special value.
    let both = "m:\n  A: x\ne1:\n  F: ''\ne2:\n  F: null\ncondition: m and 1 of e*";
    check(both, r#"{"A":"x","F":""}"#, true);
    check(both, r#"{"A":"x"}"#, true);
    check(both, r#"{"A":"x","F":"y"}"#, false);
    // Keywords: an empty keyword is found nowhere (a field-less null is a load error).
    check("k:\n  - ''\ncondition: k", r#"{"F":""}"#, false);
}

/// Compiles `rules` together and returns the ids of the rules matching `ev` (product `test`).
fn ids_matching(rules: &[String], ev: &str) -> Vec<String> {
    let rs = compile(&rules.join("---\n"));
    let mut e = event(ev);
    e.logsource.product = Some("test".into());
    let mut out = Vec::new();
    rs.matches(&e, &mut rs.scratch(), &mut out);
    out.iter()
        .map(|m| rs.rule(m.rule).meta.id.clone().unwrap_or_default())
        .collect()
}

fn rule_id(id: &str, detection: &str) -> String {
    rule(detection).replace("id: r1", &format!("id: {id}"))
}

/// Issue #16: an anchored literal fired where it sat inside a longer pattern of the same
/// automaton state (`endswith .exe` on `x.exe.log` once `.exe.log` was loaded).
#[test]
fn anchored_literals_fire_only_where_anchored() {
    let exe = rule_id("exe", "s:\n  F|endswith: '.exe'\ncondition: s");
    let exelog = rule_id("exelog", "s:\n  F|endswith: '.exe.log'\ncondition: s");
    let ev = r#"{"F":"C:\\x\\TransactionLog.exe.log"}"#;
    assert_eq!(
        ids_matching(std::slice::from_ref(&exe), ev),
        Vec::<String>::new()
    );
    assert_eq!(ids_matching(&[exe.clone(), exelog.clone()], ev), ["exelog"]);
    assert_eq!(ids_matching(&[exelog, exe], r#"{"F":"a.EXE"}"#), ["exe"]);

    // `.cpl` vs `.cpl",` (suffix), `rundll32.exe` vs `\rundll32.exe"` (suffix).
    let cpl = rule_id("cpl", "s:\n  F|endswith: '.cpl'\ncondition: s");
    let cplq = rule_id("cplq", "s:\n  F|endswith: '.cpl\",'\ncondition: s");
    assert_eq!(
        ids_matching(&[cpl.clone(), cplq.clone()], r#"{"F":"x.cpl\","}"#),
        ["cplq"]
    );
    assert_eq!(ids_matching(&[cpl, cplq], r#"{"F":"x.cpl"}"#), ["cpl"]);
    let r = rule_id("r", "s:\n  F|endswith: 'rundll32.exe'\ncondition: s");
    let rq = rule_id("rq", "s:\n  F|endswith: '\\rundll32.exe\"'\ncondition: s");
    assert_eq!(
        ids_matching(&[r.clone(), rq.clone()], r#"{"F":"\"C:\\rundll32.exe\""}"#),
        ["rq"]
    );
    assert_eq!(ids_matching(&[r, rq], r#"{"F":"C:\\rundll32.exe"}"#), ["r"]);

    // The same on the prefix side: `abc` inside the path of `xabc`.
    let p = rule_id("p", "s:\n  F|startswith: 'abc'\ncondition: s");
    let q = rule_id("q", "s:\n  F|startswith: 'xabcd'\ncondition: s");
    assert_eq!(
        ids_matching(&[p.clone(), q.clone()], r#"{"F":"xabcde"}"#),
        ["q"]
    );
    assert_eq!(ids_matching(&[p, q], r#"{"F":"abcde"}"#), ["p"]);
}

/// Issue #16: literals longer than the 16-byte automaton key share one pattern; each must be
/// verified over its own full length (an 86-byte `contains` filter never excluded).
#[test]
fn long_literals_sharing_a_key_are_each_verified() {
    let short = "\\Microsoft\\Windows\\CurrentVersion\\WINEVT\\Channels\\Microsoft-Windows-ASN1\\";
    let long = "\\Microsoft\\Windows\\CurrentVersion\\WINEVT\\Channels\\Microsoft-Windows-Kernel-AppCompat\\Long\\Tail\\Beyond\\Sixty\\Four\\Bytes";
    let a = rule_id("a", &format!("s:\n  F|contains: '{short}'\ncondition: s"));
    let b = rule_id("b", &format!("s:\n  F|contains: '{long}'\ncondition: s"));
    let c = rule_id("c", &format!("s:\n  F|startswith: '{long}'\ncondition: s"));
    let d = rule_id("d", &format!("s:\n  F|endswith: '{long}'\ncondition: s"));
    let value = long.replace("\\\\", "\\");
    let ev = format!(r#"{{"F":"{}"}}"#, value.replace('\\', "\\\\"));
    let all = [a, b, c, d];
    assert_eq!(ids_matching(&all, &ev), ["b", "c", "d"]);
    let ev2 = format!(r#"{{"F":"HKLM{}\\x"}}"#, value.replace('\\', "\\\\"));
    assert_eq!(ids_matching(&all, &ev2), ["b"]);
}

#[test]
fn details_name_the_author_of_third_party_rules_only() {
    let mut ev = event(r#"{"CommandLine": "reg save hklm\\sam s.hiv", "User": "sato"}"#);
    ev.logsource.product = Some("test".into());
    let third = compile(
        "title: t\nid: r1\nauthor: Florian Roth (Nextron Systems)\nlogsource: {product: test}\ndetection:\n  s: {CommandLine|contains: 'save'}\n  condition: s\n",
    );
    let mut scratch = third.scratch();
    let mut m = Vec::new();
    third.matches(&ev, &mut scratch, &mut m);
    assert_eq!(m.len(), 1);
    let d = third.details(m[0].rule, &ev);
    assert!(d.contains(&("CommandLine".into(), "reg save hklm\\sam s.hiv".into())));
    assert!(
        d.contains(&(
            "rule.author".into(),
            "Florian Roth (Nextron Systems)".into()
        )),
        "{d:?}"
    );
    let own = compile(
        "title: t\nid: r1\nauthor: Mamori\nlogsource: {product: test}\ndetection:\n  s: {CommandLine|contains: 'save'}\n  condition: s\n",
    );
    let mut scratch = own.scratch();
    let mut m = Vec::new();
    own.matches(&ev, &mut scratch, &mut m);
    assert!(!own
        .details(m[0].rule, &ev)
        .iter()
        .any(|(k, _)| k == "rule.author"));
}

/// `details_matched` reads the slots found while matching; it must say what `details` says,
/// with repeated fields, a field two names map to, and one scratch reused across rule sets.
#[test]
fn details_from_matching_equal_details() {
    let mut ev = event(
        r#"{"CommandLine": "reg save hklm\\sam s.hiv", "User": "sato", "Image": "C:\\reg.exe", "x": [1, 2]}"#,
    );
    ev.push("User".into(), Value::from("suzuki"));
    ev.push("User".into(), Value::from("sato"));
    ev.logsource.product = Some("test".into());
    let set = compile(
        "title: t\nid: r1\nauthor: A\nlogsource: {product: test}\ndetection:\n  s: {CommandLine|contains: 'save', User: [sato, suzuki], Image|endswith: reg.exe}\n  condition: s\nfields: [Image]\n",
    );
    let other = compile(
        "title: t\nid: r2\nlogsource: {product: test}\ndetection:\n  s: {User: sato}\n  condition: s\n",
    );
    let mut scratch = other.scratch();
    let mut m = Vec::new();
    other.matches(&ev, &mut scratch, &mut m);
    assert_eq!(m.len(), 1);
    m.clear();
    set.matches(&ev, &mut scratch, &mut m);
    assert_eq!(m.len(), 1);
    let want = set.details(m[0].rule, &ev);
    assert!(
        want.contains(&("User".into(), "sato | suzuki".into())),
        "{want:?}"
    );
    assert_eq!(set.details_matched(m[0].rule, &ev, &scratch), want);
}

/// The SIMD prefilter of small `contains` sets only says where the first occurrence starts:
/// every occurrence after it (overlapping ones, the last bytes, other cases) still fires, and
/// a value with none fires nothing. Values from 32 bytes on take that path.
#[test]
fn contains_prefilter_keeps_every_occurrence() {
    let rules: Vec<String> = [
        ("abcd", "abcd"),
        ("bcde", "bcde"),
        ("tail", "zz-tail"),
        ("long", "0123456789-wxyz-and-more-than-sixteen"),
    ]
    .iter()
    .map(|(id, lit)| rule_id(id, &format!("s:\n  F|contains: '{lit}'\ncondition: s")))
    .collect();
    let pad = "x".repeat(40);
    let ids = |v: &str| ids_matching(&rules, &format!(r#"{{"F":"{v}"}}"#));
    assert_eq!(
        ids(&format!("{pad}ABCDE{pad}ZZ-TAIL")),
        ["abcd", "bcde", "tail"]
    );
    assert_eq!(ids(&format!("{pad}bcde{pad}abcd")), ["abcd", "bcde"]);
    assert_eq!(ids(&format!("{pad}abc{pad}bcd{pad}")), Vec::<String>::new());
    assert_eq!(
        ids(&format!("{pad}0123456789-WXYZ-and-more-than-sixteen")),
        ["long"]
    );
    assert_eq!(
        ids(&format!("{pad}0123456789-wxyz-and-less")),
        Vec::<String>::new()
    );
    // Short values are walked directly: the same answers.
    assert_eq!(ids("abcde"), ["abcd", "bcde"]);
}

/// Keywords are searched per bucket, with only its own rules' keywords: a channel's keyword
/// rule sees its events, a Windows-wide one every Windows event, and neither loses a match
/// when the other is loaded.
#[test]
fn keywords_are_searched_per_bucket() {
    let any = "title: any\nid: any\nlogsource: {product: windows}\ndetection:\n  k:\n    - 'mimikatz'\n  condition: k\n";
    let sys = "title: sys\nid: sys\nlogsource: {product: windows, service: system}\ndetection:\n  k:\n    - 'kali'\n  condition: k\n";
    let both = format!("{any}---\n{sys}");
    let ids = |rules: &str, json: &str| -> Vec<String> {
        let rs = compile(rules);
        let mut out = Vec::new();
        rs.matches(&win(json), &mut rs.scratch(), &mut out);
        out.iter()
            .map(|m| rs.rule(m.rule).meta.id.clone().unwrap_or_default())
            .collect()
    };
    let system = r#"{"Channel":"System","EventID":7045,"ImagePath":"C:\\kali\\MIMIKATZ.exe"}"#;
    let security = r#"{"Channel":"Security","EventID":4688,"CommandLine":"kali mimikatz"}"#;
    assert_eq!(ids(&both, system), ["any", "sys"]);
    assert_eq!(ids(&both, security), ["any"]);
    assert_eq!(ids(sys, system), ["sys"]);
    assert_eq!(ids(any, security), ["any"]);
}

#[test]
fn long_literal_rests_are_read_in_their_direction() {
    assert!(Tail::Fwd(b"ABCdef").starts_with(b"abc"));
    assert!(Tail::Fwd(b"abc").starts_with(b"abc"));
    assert!(!Tail::Fwd(b"ab").starts_with(b"abc"));
    assert!(!Tail::Fwd(b"ab\xffc").starts_with(b"abc"));
    assert!(Tail::Fwd(b"").starts_with(b""));
    // A suffix walk reads backward: the rest is stored in reading order.
    assert!(Tail::Rev(b"xyzCBA").starts_with(b"abc"));
    assert!(!Tail::Rev(b"BA").starts_with(b"abc"));
    assert!(!Tail::Rev(b"abc").starts_with(b"abc"));
    // End to end: literals longer than the automaton's 16-byte key, in every anchoring, with
    // a near miss in the rest.
    let long = "verylongliteral_abcdefghijkl";
    for (m, hit, miss) in [
        (
            "contains",
            format!("x {long} y"),
            "x verylongliteral_abcdefghijkX y".to_owned(),
        ),
        (
            "startswith",
            format!("{long} tail"),
            "verylongliteral_abcdefghijkX tail".to_owned(),
        ),
        (
            "endswith",
            format!("head {long}"),
            "head verylongliteral_Xbcdefghijkl".to_owned(),
        ),
    ] {
        let rule = format!("s:\n  F|{m}: '{long}'\ncondition: s");
        check(
            &rule,
            &serde_json::json!({ "F": hit.to_uppercase() }).to_string(),
            true,
        );
        let miss_case = miss.replace("X", "Q");
        check(
            &rule,
            &serde_json::json!({ "F": miss_case }).to_string(),
            false,
        );
    }
}

/// Issue #16: literals no rule waits for (a filter's, an AND's commoner half) are left out of
/// the automata and checked when a candidate rule reads them; the answers must be the scan's.
#[test]
fn literals_no_rule_waits_for_are_checked_when_read() {
    let filtered = rule_id(
        "filtered",
        "sel:\n  F|contains: 'rare-trigger'\nfilter:\n  F|contains:\n    - '.exe'\n    - 'cmd'\ncondition: sel and not filter",
    );
    // `beta` is a trigger of `scanned`, `gamma` of no rule (`mixed` waits for its two rarer
    // selections): the OR is split.
    let scanned = rule_id("scanned", "s:\n  G|contains: 'beta'\ncondition: s");
    let mixed = rule_id(
        "mixed",
        "a:\n  G|contains: 'alpha-rare'\nb:\n  G|contains:\n    - 'beta'\n    - 'gamma'\nc:\n  G|contains: 'delta-rare'\ncondition: a and b and c",
    );
    // A wildcard's required literal that no rule waits for gates its glob when read.
    let glob = rule_id(
        "glob",
        "sel:\n  H|contains: 'trig'\nfilter:\n  H: '*foo*bar*'\ncondition: sel and not filter",
    );
    let all = [filtered, scanned, mixed, glob];
    let rs = compile(&all.join("---\n"));
    let lazy: Vec<String> = rs
        .preds
        .iter()
        .filter_map(|p| match &p.kind {
            PredKind::LazyLit { text, .. } => Some(String::from_utf8_lossy(text).into_owned()),
            _ => None,
        })
        .collect();
    for l in [".exe", "cmd", "gamma", "bar"] {
        assert!(lazy.iter().any(|x| x == l), "{l} not lazy: {lazy:?}");
    }
    for l in ["rare-trigger", "beta", "alpha-rare", "delta-rare", "trig"] {
        assert!(!lazy.iter().any(|x| x == l), "{l} lazy: {lazy:?}");
    }
    let ids = |ev: &str| ids_matching(&all, ev);
    assert_eq!(ids(r#"{"F":"x rare-trigger y"}"#), ["filtered"]);
    assert_eq!(ids(r#"{"F":"x RARE-trigger y.EXE"}"#), Vec::<String>::new());
    assert_eq!(ids(r#"{"F":"CMD rare-trigger"}"#), Vec::<String>::new());
    assert_eq!(
        ids(r#"{"F":["a rare-trigger", "b.Exe"]}"#),
        Vec::<String>::new()
    );
    assert_eq!(ids(r#"{"F":["a rare-trigger", "b.ex"]}"#), ["filtered"]);
    assert_eq!(ids(r#"{"G":"alpha-rare GAMMA delta-rare"}"#), ["mixed"]);
    assert_eq!(
        ids(r#"{"G":"alpha-rare beta delta-rare"}"#),
        ["scanned", "mixed"]
    );
    assert_eq!(
        ids(r#"{"G":"alpha-rare gamm delta-rare"}"#),
        Vec::<String>::new()
    );
    assert_eq!(ids(r#"{"G":"alpha-rare gamma"}"#), Vec::<String>::new());
    assert_eq!(ids(r#"{"H":"trig foo"}"#), ["glob"]);
    assert_eq!(ids(r#"{"H":"trig FOO and bar"}"#), Vec::<String>::new());
    assert_eq!(ids(r#"{"H":"trig bar foo"}"#), ["glob"]);
}

#[test]
fn contains_folded_is_a_case_folded_find() {
    let hays = [
        "",
        "a",
        "A",
        "ab",
        "xAbC",
        "abcabd",
        "aaab",
        "C:\\Windows\\CMD.EXE /c",
        "ÄbcÖ.exe",
        "..exe.exe",
        "zz",
    ];
    let needles = [
        "",
        "a",
        "ab",
        "abd",
        "abc",
        ".exe",
        "cmd.exe",
        "\\windows\\",
        "c",
        "zzz",
    ];
    for h in hays {
        for n in needles {
            let naive = h.to_ascii_lowercase().contains(n);
            assert_eq!(
                contains_folded(h.as_bytes(), n.as_bytes()),
                naive,
                "{h:?} {n:?}"
            );
            assert_eq!(
                literal_holds(h.as_bytes(), n.as_bytes(), Anchor::Prefix),
                h.to_ascii_lowercase().starts_with(n),
                "{h:?} {n:?}"
            );
            assert_eq!(
                literal_holds(h.as_bytes(), n.as_bytes(), Anchor::Suffix),
                h.to_ascii_lowercase().ends_with(n),
                "{h:?} {n:?}"
            );
            assert_eq!(
                literal_holds(h.as_bytes(), n.as_bytes(), Anchor::Exact),
                h.to_ascii_lowercase() == n,
                "{h:?} {n:?}"
            );
        }
    }
}

/// An empty `contains` literal is held by every value (the double array keeps no empty
/// pattern: it is fired apart), alone in its field or beside others.
#[test]
fn empty_contains_literal_holds_for_every_value() {
    let d = "s:\n  F|contains: ''\ncondition: s";
    check(d, r#"{"F":"abc"}"#, true);
    check(d, r#"{"F":""}"#, true);
    check(d, r#"{"G":"abc"}"#, false);
    let both = "s:\n  F|contains:\n    - ''\n    - 'zz'\nt:\n  F|contains: 'q'\ncondition: s and t";
    check(both, r#"{"F":"q"}"#, true);
    check(both, r#"{"F":"x"}"#, false);
}
