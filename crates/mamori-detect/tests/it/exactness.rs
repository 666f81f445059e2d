//! Issue #16: the six SigmaHQ rules where Mamori disagreed with the Sigma specification (and
//! pySigma 2.0.1), each checked with the *whole* SigmaHQ rule set loaded — the conflicting
//! rules included — and alone: a rule's answer must not depend on the other rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mamori_detect::{CompileOptions, RuleSet};
use mamori_event::{Event, FieldName, Format, Origin, Value};
use mamori_ingest::ReadOptions;
use mamori_sigma::{Placeholders, RulePack};

use crate::{corpus, files};

/// The rules of the issue, by file stem, with the `bench/windows-flat.jsonl` lines each
/// matches according to pySigma 2.0.1 + pysigma-backend-sqlite 2.1.1 (`.ci/sigma-oracle`).
const RULES: &[(&str, &[u64])] = &[
    (
        "file_event_win_susp_binary_dropper",
        &[
            7003, 7089, 10229, 12359, 13641, 14603, 14755, 15322, 19449, 19450, 24925, 25067,
            25069, 25074,
        ],
    ),
    ("file_event_win_net_cli_artefact", &[]),
    ("proc_creation_win_control_panel_item", &[]),
    (
        "proc_creation_win_susp_bad_opsec_sacrificial_processes",
        &[3038, 10724],
    ),
    ("registry_set_disable_winevt_logging", &[]),
    ("create_remote_thread_win_hktl_cactustorch", &[]),
    ("win_firewall_as_add_rule", &[21793]),
];

fn pack_of(paths: &[PathBuf]) -> RulePack {
    let ph = Placeholders::from_yaml("known_cdcs: ['CN=CDC01']").unwrap();
    let mut pack = RulePack::new();
    for f in paths {
        pack.add_file(
            &f.display().to_string(),
            &std::fs::read_to_string(f).unwrap(),
            &ph,
        );
    }
    pack.resolve_references();
    pack
}

struct Sets {
    all: RuleSet,
    /// Per issue rule: its index in `all`, and the rule compiled alone.
    issue: Vec<(&'static str, u32, RuleSet)>,
}

fn sets(sigma: &Path) -> Sets {
    let mut paths = Vec::new();
    for d in ["rules", "rules-threat-hunting", "rules-emerging-threats"] {
        files(&sigma.join(d), ".yml", &mut paths);
    }
    let all = RuleSet::compile(&pack_of(&paths), &CompileOptions::default());
    let issue = RULES
        .iter()
        .map(|(stem, _)| {
            let path = paths
                .iter()
                .find(|p| p.file_stem().is_some_and(|s| s == *stem))
                .unwrap_or_else(|| panic!("{stem} not in the corpus"));
            let alone = RuleSet::compile(
                &pack_of(std::slice::from_ref(path)),
                &CompileOptions::default(),
            );
            assert_eq!(alone.len(), 1, "{stem}");
            let id = alone.rule(0).meta.id.clone();
            let idx = (0..all.len() as u32)
                .find(|&i| all.rule(i).meta.id == id)
                .unwrap();
            (*stem, idx, alone)
        })
        .collect();
    Sets { all, issue }
}

fn win(fields: &[(&str, &str)]) -> Event {
    let mut e = Event::new(
        Format::Json,
        Origin::File {
            path: Arc::from(Path::new("synthetic.json")),
            record: None,
            line: Some(1),
            offset: 0,
        },
        Vec::new(),
    );
    for (k, v) in fields {
        let value = match v.parse::<i64>() {
            Ok(n) if *k == "EventID" => Value::Int(n),
            _ => Value::str(*v),
        };
        e.push(FieldName::new(k), value);
    }
    e.logsource.product = Some("windows".into());
    e
}

/// (rule stem, matches with all rules, matches alone).
fn verdicts(s: &Sets, ev: &Event) -> Vec<(&'static str, bool, bool)> {
    let mut out = Vec::new();
    s.all.matches(ev, &mut s.all.scratch(), &mut out);
    s.issue
        .iter()
        .map(|(stem, idx, alone)| {
            let mut one = Vec::new();
            alone.matches(ev, &mut alone.scratch(), &mut one);
            (*stem, out.iter().any(|m| m.rule == *idx), !one.is_empty())
        })
        .collect()
}

fn expect(s: &Sets, ev: &Event, stem: &str, want: bool) {
    let v = verdicts(s, ev);
    let (_, together, alone) = v.iter().find(|(x, _, _)| *x == stem).unwrap();
    assert_eq!(
        (*together, *alone),
        (want, want),
        "{stem} (with all rules, alone) on {:?}",
        ev.fields()
    );
}

const SYSMON: &str = "Microsoft-Windows-Sysmon/Operational";

#[test]
fn issue_16_rules_agree_with_the_specification_whatever_else_is_loaded() {
    let Some(c) = corpus() else { return };
    let s = sets(&c.join("sigma"));

    // endswith `.exe` must not fire on `….exe.log` although `\UsageLogs\*.exe.log` is loaded.
    let log = win(&[
        ("Channel", SYSMON),
        ("EventID", "11"),
        ("Image", "C:\\Tools\\dropper.exe"),
        (
            "TargetFilename",
            "C:\\Users\\u\\AppData\\Local\\Microsoft\\CLR_v4.0\\UsageLogs\\TransactionLog.exe.log",
        ),
    ]);
    expect(&s, &log, "file_event_win_susp_binary_dropper", false);
    let exe = win(&[
        ("Channel", SYSMON),
        ("EventID", "11"),
        ("Image", "C:\\Tools\\dropper.exe"),
        ("TargetFilename", "C:\\Users\\u\\Documents\\payload.exe"),
    ]);
    expect(&s, &exe, "file_event_win_susp_binary_dropper", true);

    // endswith `.cpl` must not fire on a command line ending in `.cpl",`.
    let cpl = |cmd: &str| {
        win(&[
            ("Channel", SYSMON),
            ("EventID", "1"),
            ("Image", "C:\\Windows\\explorer.exe"),
            ("CommandLine", cmd),
        ])
    };
    expect(
        &s,
        &cpl("control.exe C:\\Users\\u\\evil.cpl\","),
        "proc_creation_win_control_panel_item",
        false,
    );
    expect(
        &s,
        &cpl("control.exe C:\\Users\\u\\evil.cpl"),
        "proc_creation_win_control_panel_item",
        true,
    );

    // endswith `rundll32.exe` must not fire on `…\rundll32.exe"`.
    let rundll = |cmd: &str| {
        win(&[
            ("Channel", SYSMON),
            ("EventID", "1"),
            ("Image", "C:\\Windows\\System32\\rundll32.exe"),
            ("ParentImage", "C:\\Windows\\explorer.exe"),
            ("CommandLine", cmd),
        ])
    };
    let sacrificial = "proc_creation_win_susp_bad_opsec_sacrificial_processes";
    expect(
        &s,
        &rundll("\"C:\\Windows\\System32\\rundll32.exe\""),
        sacrificial,
        false,
    );
    expect(
        &s,
        &rundll("C:\\Windows\\System32\\rundll32.exe"),
        sacrificial,
        true,
    );

    // The 86-byte `contains` filter of the svchost exclusion must exclude.
    let winevt = |image: &str| {
        win(&[
            ("Channel", SYSMON),
            ("EventID", "13"),
            ("EventType", "SetValue"),
            ("Image", image),
            (
                "TargetObject",
                "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\WINEVT\\Channels\\Microsoft-Windows-Kernel-AppCompat\\Operational\\Enabled",
            ),
            ("Details", "DWORD (0x00000000)"),
        ])
    };
    let logging = "registry_set_disable_winevt_logging";
    expect(
        &s,
        &winevt("C:\\Windows\\System32\\svchost.exe"),
        logging,
        false,
    );
    expect(&s, &winevt("C:\\Users\\u\\evil.exe"), logging, true);

    // `StartModule: null` is an absent or null StartModule, not an empty one.
    let thread = |start: Option<&str>| {
        let mut f = vec![
            ("Channel", SYSMON),
            ("EventID", "8"),
            ("SourceImage", "C:\\Windows\\System32\\cscript.exe"),
            ("TargetImage", "C:\\Windows\\SysWOW64\\notepad.exe"),
        ];
        if let Some(m) = start {
            f.push(("StartModule", m));
        }
        win(&f)
    };
    let cactus = "create_remote_thread_win_hktl_cactustorch";
    expect(&s, &thread(Some("")), cactus, false);
    expect(&s, &thread(None), cactus, true);
    expect(&s, &thread(Some("C:\\x.dll")), cactus, false);

    // `filter_main_null: ApplicationPath: null` does not exclude an empty ApplicationPath.
    let fw = |path: Option<&str>| {
        let mut f = vec![
            (
                "Channel",
                "Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",
            ),
            ("EventID", "2004"),
            ("Action", "3"),
            ("ModifyingApplication", "C:\\Users\\u\\evil.exe"),
        ];
        if let Some(p) = path {
            f.push(("ApplicationPath", p));
        }
        win(&f)
    };
    let firewall = "win_firewall_as_add_rule";
    expect(&s, &fw(Some("")), firewall, true);
    expect(&s, &fw(None), firewall, false);
    expect(&s, &fw(Some("C:\\Users\\u\\evil.exe")), firewall, true);
}

#[test]
fn issue_16_rules_match_what_pysigma_matches_on_the_bench_events() {
    let Some(c) = corpus() else { return };
    let bench = c.join("bench/windows-flat.jsonl");
    if !bench.exists() {
        eprintln!("skipped: {} not found", bench.display());
        return;
    }
    let s = sets(&c.join("sigma"));
    let mut together: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let mut alone: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let mut scratch = s.all.scratch();
    let mut out = Vec::new();
    let mut events = 0;
    mamori_ingest::read_file(&bench, &ReadOptions::default(), &mut |ev| {
        events += 1;
        let Origin::File {
            line: Some(line), ..
        } = ev.origin
        else {
            panic!("a JSONL event without a line")
        };
        out.clear();
        s.all.matches(&ev, &mut scratch, &mut out);
        for (stem, idx, one) in &s.issue {
            if out.iter().any(|m| m.rule == *idx) {
                together.entry(stem).or_default().insert(line);
            }
            let mut o = Vec::new();
            one.matches(&ev, &mut one.scratch(), &mut o);
            if !o.is_empty() {
                alone.entry(stem).or_default().insert(line);
            }
        }
    });
    assert_eq!(events, 25_076);
    for (stem, want) in RULES {
        let want: BTreeSet<u64> = want.iter().copied().collect();
        let t = together.remove(stem).unwrap_or_default();
        let a = alone.remove(stem).unwrap_or_default();
        assert_eq!(t, a, "{stem}: with all rules vs alone");
        assert_eq!(t, want, "{stem}: Mamori vs pySigma");
    }
}
