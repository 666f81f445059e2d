//! The rule test harness: every rule in `rules/` has test cases kept as data in
//! `rules/tests/*.cases` (YAML; not `.yml`, so rule loaders do not take them for rules).
//!
//! A case names a rule (id, name or title), a reader format and one or more log lines, and
//! whether the rule must match them:
//!
//! ```yaml
//! - rule: 10fba0e7-c106-4c64-bf7b-394983dc5a23
//!   format: access-log          # access-log | iis | syslog | json | evtx-json | cloudtrail | auditd
//!   line: '1.2.3.4 - - [06/Dec/2026:10:00:00 +0000] "GET /remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession HTTP/1.1" 200 1 "-" "curl/8"'
//!   expect: match               # or no_match
//! - rule: SSH Brute Force From One Source
//!   format: syslog
//!   lines: [ ... ]              # a sequence, for correlations
//!   repeat: 12                  # optional: the lines 12 times, `{n}` → 0..11, `{n2}` → 00..11
//!   expect: match
//! ```
//!
//! The lines go through the same path as `mamori hunt`: written to a file, read by
//! `mamori_ingest::read_file` with the stated format (no read error allowed), matched by the
//! compiled `RuleSet`, and fed to a fresh `Correlator` in event time. The test fails listing
//! every failing case, every rule without a passing `match` case, every case naming an unknown
//! rule, and every reporting rule that lacks `description_ja`, an ATT&CK technique tag or a
//! false-positive note. Building blocks (rules and correlations only used by a correlation) are
//! not reported alone, so they need a case (correlations: through their parent) but no metadata.
//! Every rule and correlation Mamori authors — building blocks too, since hunt shows them —
//! needs a Japanese title (`title_ja`); the SigmaHQ copies in `rules/sigmahq/` are kept as SigmaHQ
//! wrote them (`rules/SIGMAHQ-CURATED.md`), so theirs come from `mamori_sigma::titles_ja` by id.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mamori_detect::correlation::{Correlator, Limits};
use mamori_detect::{CompileOptions, RuleSet};
use mamori_event::Format;
use mamori_ingest::ReadOptions;
use mamori_sigma::{FieldMap, Meta, Placeholders, RulePack};
use yaml_rust2::{Yaml, YamlLoader};

use crate::repo;

struct Case {
    /// `file.cases:N` (N = 1-based index of the case in its file).
    at: String,
    rule: String,
    format: Format,
    lines: Vec<String>,
    expect_match: bool,
}

fn parse_format(s: &str) -> Option<Format> {
    Some(match s {
        "access-log" => Format::AccessLog,
        "iis" => Format::Iis,
        "syslog" => Format::Syslog,
        "json" | "evtx-json" => Format::Json,
        "cloudtrail" => Format::CloudTrail,
        "auditd" => Format::Auditd,
        _ => return None,
    })
}

fn load_cases(dir: &Path, problems: &mut Vec<String>) -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cases"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.cases files in {}", dir.display());
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let src = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
        let docs = match YamlLoader::load_from_str(&src) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{name}: invalid YAML: {e}"));
                continue;
            }
        };
        let Some(Yaml::Array(items)) = docs.into_iter().next() else {
            problems.push(format!("{name}: expected a list of cases"));
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let at = format!("{name}:{}", i + 1);
            let rule = item["rule"].as_str().map(str::to_owned);
            let format = item["format"].as_str().and_then(parse_format);
            let lines: Vec<String> = match (&item["line"], &item["lines"]) {
                (Yaml::String(s), Yaml::BadValue) => vec![s.clone()],
                (Yaml::BadValue, Yaml::Array(v)) => v
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let lines = match item["repeat"].as_i64() {
                Some(n) if n > 0 => (0..n)
                    .flat_map(|i| {
                        lines.iter().map(move |l| {
                            l.replace("{n2}", &format!("{i:02}"))
                                .replace("{n}", &i.to_string())
                        })
                    })
                    .collect(),
                _ => lines,
            };
            let expect = match item["expect"].as_str() {
                Some("match") => Some(true),
                Some("no_match") => Some(false),
                _ => None,
            };
            match (rule, format, expect) {
                (Some(rule), Some(format), Some(expect_match)) if !lines.is_empty() => {
                    out.push(Case {
                        at,
                        rule,
                        format,
                        lines,
                        expect_match,
                    })
                }
                _ => problems.push(format!(
                    "{at}: a case needs `rule`, a known `format`, `line` or `lines`, and `expect: match|no_match`"
                )),
            }
        }
    }
    out
}

fn refers_to(meta: &Meta, r: &str) -> bool {
    meta.id.as_deref() == Some(r) || meta.name.as_deref() == Some(r) || meta.title == r
}

/// Why a reporting rule's metadata is incomplete (empty when complete).
fn metadata_gaps(meta: &Meta) -> Vec<&'static str> {
    let mut gaps = Vec::new();
    if meta
        .extra
        .get("description_ja")
        .is_none_or(|d| d.trim().is_empty())
    {
        gaps.push("description_ja");
    }
    if !meta.tags.iter().any(|t| t.starts_with("attack.t")) {
        gaps.push("an ATT&CK technique tag (attack.tNNNN)");
    }
    if meta.falsepositives.iter().all(|f| f.trim().is_empty()) {
        gaps.push("falsepositives");
    }
    if meta.level.is_none() {
        gaps.push("level");
    }
    if meta.id.is_none() {
        gaps.push("id");
    }
    gaps
}

/// The Japanese title every rule and correlation of `rules/` carries (the SigmaHQ copies
/// through `mamori_sigma::titles_ja`): `None` when present.
fn title_ja_gap(meta: &Meta) -> Option<String> {
    if meta
        .extra
        .get("title_ja")
        .is_some_and(|t| !t.trim().is_empty())
    {
        return None;
    }
    Some(format!(
        "{}:{} ({}) lacks title_ja (the Japanese title shown for `{}`)",
        meta.path,
        meta.line,
        meta.reference(),
        meta.title
    ))
}

/// Runs one case's lines through the reader, the rule set and a fresh correlator; returns the
/// references (id, name, title) of every rule and correlation that fired, or a read error.
fn fired(case: &Case, pack: &RulePack, rules: &RuleSet, dir: &Path) -> Result<Vec<Meta>, String> {
    let path = dir.join("case.log");
    let mut text = case.lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let opts = ReadOptions {
        format: Some(case.format),
        ..ReadOptions::default()
    };
    let mut scratch = rules.scratch();
    let mut out: Vec<Meta> = Vec::new();
    let mut events = Vec::new();
    let report = mamori_ingest::read_file(&path, &opts, &mut |ev| {
        let mut m = Vec::new();
        rules.matches(&ev, &mut scratch, &mut m);
        events.push((ev, m));
    });
    if let Some(e) = report.errors.first() {
        return Err(format!("read error: {e:?}"));
    }
    if report.events == 0 {
        return Err("the reader produced no event".into());
    }
    events.sort_by_key(|(e, _)| e.timestamp);
    let mut correlator = Correlator::new(pack, rules, &FieldMap::builtin(), Limits::default());
    let mut alerts = Vec::new();
    let source = path.display().to_string();
    for (i, (ev, m)) in events.iter().enumerate() {
        out.extend(m.iter().map(|m| rules.rule(m.rule).meta.clone()));
        let arrival = mamori_detect::correlation::Arrival {
            source: &source,
            received_ms: None,
            reference: i as u64,
        };
        correlator.observe(ev, m, &arrival, &mut alerts);
    }
    correlator.flush(&mut alerts);
    out.extend(alerts.iter().map(|a| a.correlation.meta.clone()));
    Ok(out)
}

#[test]
fn every_rule_has_passing_test_cases_and_complete_metadata() {
    let rules_dir = repo().join("rules");
    let rules_dir = rules_dir.canonicalize().unwrap_or(rules_dir);
    let (pack, _) =
        mamori_server::rules::load_pack(std::slice::from_ref(&rules_dir), &Placeholders::default())
            .expect("load rules");
    let mut problems: Vec<String> = pack
        .failures
        .iter()
        .map(|f| format!("rule does not compile: {f}"))
        .collect();
    let rules = RuleSet::compile(&pack, &CompileOptions::default());
    let cases = load_cases(&rules_dir.join("tests"), &mut problems);

    // Correlations used by a parent correlation without `generate` do not alert alone.
    let quiet = |m: &Meta| {
        pack.correlations.iter().any(|p| {
            !p.generate
                && p.rules
                    .iter()
                    .any(|r| m.id.as_deref() == Some(r) || m.name.as_deref() == Some(r))
        })
    };
    // Everything a case may name: (reference, metadata, reports alone, needs a case).
    let mut known: Vec<(String, &Meta, bool, bool)> = Vec::new();
    for i in 0..rules.len() as u32 {
        let info = rules.rule(i);
        known.push((
            info.meta.reference().to_owned(),
            &info.meta,
            info.standalone,
            true,
        ));
    }
    for c in &pack.correlations {
        let q = quiet(&c.meta);
        known.push((c.meta.reference().to_owned(), &c.meta, !q, !q));
    }
    for (reference, meta, reports, _) in &known {
        problems.extend(title_ja_gap(meta));
        if *reports {
            let gaps = metadata_gaps(meta);
            if !gaps.is_empty() {
                problems.push(format!(
                    "{}:{} ({reference}) lacks {}",
                    meta.path,
                    meta.line,
                    gaps.join(", ")
                ));
            }
        }
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let mut covered: BTreeSet<String> = BTreeSet::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &cases {
        let Some((reference, ..)) = known.iter().find(|(_, m, ..)| refers_to(m, &case.rule)) else {
            problems.push(format!("{}: no rule `{}` in rules/", case.at, case.rule));
            continue;
        };
        match fired(case, &pack, &rules, tmp.path()) {
            Err(e) => {
                failed += 1;
                problems.push(format!("{} ({}): {e}", case.at, case.rule));
            }
            Ok(hits) => {
                let hit = hits.iter().any(|m| refers_to(m, reference));
                if hit == case.expect_match {
                    passed += 1;
                    if hit {
                        covered.insert(reference.clone());
                    }
                } else {
                    failed += 1;
                    let fired: BTreeSet<&str> = hits.iter().map(|m| m.title.as_str()).collect();
                    problems.push(format!(
                        "{} ({}): expected {}, but it {}; fired: {fired:?}",
                        case.at,
                        case.rule,
                        if case.expect_match {
                            "a match"
                        } else {
                            "no match"
                        },
                        if hit { "matched" } else { "did not match" },
                    ));
                }
            }
        }
    }
    let mut untested: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (reference, meta, _, needs_case) in &known {
        if *needs_case && !covered.contains(reference) {
            untested
                .entry(meta.path.as_str())
                .or_default()
                .push(meta.title.as_str());
        }
    }
    for (path, titles) in &untested {
        problems.push(format!(
            "{path}: no passing `expect: match` case for: {}",
            titles.join("; ")
        ));
    }
    eprintln!(
        "rule tests: {} cases ({passed} passed, {failed} failed), {} rules and correlations, {} without a passing match case",
        cases.len(),
        known.iter().filter(|k| k.3).count(),
        untested.values().map(Vec::len).sum::<usize>()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn a_rule_without_a_japanese_title_is_named_with_its_file() {
    let mut meta = Meta {
        title: "SSH Brute Force From One Source".into(),
        path: "rules/linux/ssh_bruteforce.yml".into(),
        line: 1,
        ..Meta::default()
    };
    let gap = title_ja_gap(&meta).expect("a gap");
    assert!(
        gap.starts_with(
            "rules/linux/ssh_bruteforce.yml:1 (SSH Brute Force From One Source) lacks title_ja"
        ),
        "{gap}"
    );
    meta.extra.insert("title_ja".into(), " ".into());
    assert!(
        title_ja_gap(&meta).is_some(),
        "a blank title_ja is no title"
    );
    meta.extra.insert(
        "title_ja".into(),
        "同一送信元からの SSH 総当たり攻撃".into(),
    );
    assert_eq!(title_ja_gap(&meta), None);
    // The SigmaHQ copies are not edited: their Japanese titles come from Mamori's table by id
    // (`mamori_sigma::titles_ja`), added when the document is parsed.
    let (docs, errors) = mamori_sigma::parse_file(
        "rules/sigmahq/proc_creation_win_hktl_mimikatz_command_line.yml",
        "title: HackTool - Mimikatz Execution\nid: a642964e-bead-4bed-8910-1bb4d63e3b4d\nlogsource: {category: process_creation, product: windows}\ndetection: {sel: {Image|endswith: mimikatz.exe}, condition: sel}\n",
        &Placeholders::default(),
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(title_ja_gap(docs[0].meta()), None);
    assert_eq!(
        docs[0].meta().extra.get("title_ja").map(String::as_str),
        Some("ハッキングツール Mimikatz の実行")
    );
    // A document's own title_ja wins over the table.
    let (docs, _) = mamori_sigma::parse_file(
        "x.yml",
        "title: T\ntitle_ja: 独自の題\nid: a642964e-bead-4bed-8910-1bb4d63e3b4d\nlogsource: {product: windows}\ndetection: {sel: {a: b}, condition: sel}\n",
        &Placeholders::default(),
    );
    assert_eq!(
        docs[0].meta().extra.get("title_ja").map(String::as_str),
        Some("独自の題")
    );
}
