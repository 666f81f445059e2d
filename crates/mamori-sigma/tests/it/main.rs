//! Loads the whole SigmaHQ corpus: every rule must parse, or the failure is listed with reason.

use std::path::{Path, PathBuf};

use mamori_sigma::{Placeholders, RulePack};

fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("MAMORI_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    if p.join("sigma").is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: corpus not found at {}", p.display());
        None
    }
}

fn yml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn sigmahq_rules_all_parse() {
    let Some(c) = corpus() else { return };
    let mut files = Vec::new();
    for d in ["rules", "rules-threat-hunting", "rules-emerging-threats"] {
        yml_files(&c.join("sigma").join(d), &mut files);
    }
    // Two emerging-threat rules use `|expand` with `%known_cdcs%`: the operator supplies values.
    let ph = Placeholders::from_yaml("known_cdcs: ['CN=CDC01', 'CN=CDC02']").unwrap();
    let mut pack = RulePack::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        pack.add_file(&f.display().to_string(), &src, &ph);
    }
    pack.resolve_references();
    for e in &pack.failures {
        eprintln!("FAILED {e}");
    }
    eprintln!(
        "{} files, {} documents loaded, {} failed",
        files.len(),
        pack.len(),
        pack.failures.len()
    );
    assert_eq!(files.len(), 3754, "corpus size changed");
    assert!(
        pack.failures.is_empty(),
        "{} rules failed to parse",
        pack.failures.len()
    );
}

#[test]
fn placeholder_rules_need_values() {
    let Some(c) = corpus() else { return };
    let mut files = Vec::new();
    yml_files(&c.join("sigma/rules-placeholder"), &mut files);
    let mut pack = RulePack::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        pack.add_file(&f.display().to_string(), &src, &Placeholders::new());
    }
    // Without a values file every placeholder rule is an error naming the placeholder.
    assert!(!pack.failures.is_empty());
    assert!(
        pack.failures.iter().all(|e| e.message.contains('%')),
        "{:?}",
        pack.failures
    );
}
