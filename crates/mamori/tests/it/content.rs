//! Detection content measured on public, real data (`$MAMORI_CORPUS`, skipped when absent): how
//! much of each attack family the embedded default set finds, and what its newer rule families
//! say about data where they must stay quiet. The corpus stands in for the held-out sets the
//! product is judged on; these numbers are what the README's "Detection content" table reports.
//!
//! The floors are the figures measured when the content landed: a rule change that loses recall
//! or adds a false positive fails here, with the whole table printed. Nothing in the rules is
//! keyed to these files (no file names, hosts or sample-specific strings).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{corpus, mamori, repo, text};

/// One timeline row of `mamori hunt --format jsonl`: (source file, rule id, rule title, tags).
struct Hit {
    file: String,
    rule_id: String,
    title: String,
    tags: Vec<String>,
}

/// Runs `mamori hunt` with the embedded default set over `paths`; returns every alert row
/// (signals — weak findings that only add risk — are not alerts and are left out).
fn hunt(paths: &[&Path], out_dir: &Path, name: &str) -> Vec<Hit> {
    let out = out_dir.join(format!("{name}.jsonl"));
    let mut args: Vec<String> = vec![
        "hunt".into(),
        "-q".into(),
        "--format".into(),
        "jsonl".into(),
        "-o".into(),
        out.display().to_string(),
    ];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let res = mamori(&args);
    assert!(
        matches!(res.status.code(), Some(0)),
        "hunt {name}: {}",
        text(&res.stderr)
    );
    let body = std::fs::read_to_string(&out).expect("timeline written");
    let _ = std::fs::remove_file(&out);
    body.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"].as_str() != Some("signal"))
        .map(|r| {
            let source = r["source"].as_str().unwrap_or_default();
            // `path:line` or `path:record`; correlation rows cite `first … last`.
            let first = source.split(" … ").next().unwrap_or(source);
            let file = first
                .rsplit_once(':')
                .map(|(f, n)| {
                    if n.chars().all(|c| c.is_ascii_digit()) {
                        f
                    } else {
                        first
                    }
                })
                .unwrap_or(first)
                .to_owned();
            Hit {
                file,
                rule_id: r["rule"]["id"].as_str().unwrap_or_default().to_owned(),
                title: r["rule"]["title"].as_str().unwrap_or_default().to_owned(),
                tags: r["rule"]["tags"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// The `id:` of every rule in the rule files under `rules/<sub>` (or one file).
fn rule_ids(sub: &str) -> BTreeSet<String> {
    let root = repo().join("rules").join(sub);
    let mut files = Vec::new();
    if root.is_file() {
        files.push(root);
    } else {
        for e in std::fs::read_dir(&root).expect("rules folder").flatten() {
            if e.path().extension().is_some_and(|x| x == "yml") {
                files.push(e.path());
            }
        }
    }
    let mut ids = BTreeSet::new();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap_or_default().lines() {
            if let Some(id) = line.strip_prefix("id:") {
                ids.insert(id.trim().to_owned());
            }
        }
    }
    assert!(!ids.is_empty(), "no rule ids under rules/{sub}");
    ids
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// Windows attack samples (EVTX-ATTACK-SAMPLES, one technique per file): a file counts as found
/// when the default set raises at least one alert on it. Recall per tactic folder.
#[test]
fn windows_attack_samples_recall_per_tactic() {
    let Some(c) = corpus() else { return };
    let root = c.join("evtx/hayabusa-sample-evtx/EVTX-ATTACK-SAMPLES");
    if !root.is_dir() {
        eprintln!("skipped: {} not found", root.display());
        return;
    }
    let mut all = Vec::new();
    files_under(&root, "evtx", &mut all);
    let tmp = tempfile::tempdir().unwrap();
    let hits = hunt(&[&root], tmp.path(), "evtx");
    let found: BTreeSet<&str> = hits.iter().map(|h| h.file.as_str()).collect();
    let mut table: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for f in &all {
        let rel = f.strip_prefix(&root).unwrap();
        let tactic = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let e = table.entry(tactic).or_default();
        e.1 += 1;
        if found
            .iter()
            .any(|s| Path::new(s).ends_with(rel) || s.ends_with(&*rel.to_string_lossy()))
        {
            e.0 += 1;
        }
    }
    eprintln!("EVTX-ATTACK-SAMPLES, files with at least one alert:");
    for (t, (f, n)) in &table {
        eprintln!("  {t:<28} {f:>3} / {n:<3}");
    }
    let get = |t: &str| table.get(t).copied().unwrap_or_default();
    // Measured when this content landed (2026-12-06): 26/37 and 20/48 (before: 20/37, 9/48).
    let (ca, ca_n) = get("Credential Access");
    let (lm, lm_n) = get("Lateral Movement");
    assert!(ca_n >= 30 && lm_n >= 40, "corpus changed: {table:?}");
    assert!(ca >= 26, "credential access recall fell: {ca}/{ca_n}");
    assert!(lm >= 20, "lateral movement recall fell: {lm}/{lm_n}");
}

/// OTRF atomic Windows datasets: one simulated technique each, recorded on lab machines whose
/// ordinary background (services, updates, logons, PowerShell, Defender) makes up nearly all the
/// events. Every credential-access dataset must raise a credential-access alert; the curated
/// SigmaHQ rules and the lateral-movement rules must raise nothing on the datasets of other
/// tactics (their background is benign, their technique unrelated).
#[test]
fn otrf_credential_datasets_found_and_background_quiet() {
    let Some(c) = corpus() else { return };
    let root = c.join("otrf-security-datasets/datasets/atomic/windows");
    if !root.is_dir() {
        eprintln!("skipped: {} not found", root.display());
        return;
    }
    if Command::new("unzip").arg("-v").output().is_err() {
        eprintln!("skipped: `unzip` not installed (needed to open the OTRF archives)");
        return;
    }
    let mut zips = Vec::new();
    files_under(&root, "zip", &mut zips);
    zips.sort();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("otrf");
    for z in &zips {
        let rel = z.strip_prefix(&root).unwrap();
        let tactic = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let name = z.file_stem().unwrap().to_string_lossy();
        let dest = data.join(format!("{tactic}__{name}"));
        std::fs::create_dir_all(&dest).unwrap();
        let st = Command::new("unzip")
            .args(["-q", "-o"])
            .arg(z)
            .arg("-d")
            .arg(&dest)
            .status()
            .expect("run unzip");
        assert!(st.success(), "unzip {}", z.display());
        let _ = std::fs::remove_dir_all(dest.join("__MACOSX"));
    }
    let hits = hunt(&[&data], tmp.path(), "otrf");
    let sigmahq = rule_ids("sigmahq");
    let lateral = rule_ids("windows/smb_lateral_movement.yml");
    let dataset = |h: &Hit| -> String {
        let rel = Path::new(&h.file)
            .strip_prefix(&data)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| PathBuf::from(&h.file));
        rel.components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut per: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for h in &hits {
        *per.entry(dataset(h))
            .or_default()
            .entry(h.title.clone())
            .or_default() += 1;
    }
    eprintln!("OTRF atomic Windows datasets ({} archives):", zips.len());
    for (d, rules) in &per {
        eprintln!("  {d}: {rules:?}");
    }
    let credential: BTreeSet<String> = zips
        .iter()
        .filter(|z| {
            z.strip_prefix(&root)
                .unwrap()
                .starts_with("credential_access")
        })
        .map(|z| {
            format!(
                "credential_access__{}",
                z.file_stem().unwrap().to_string_lossy()
            )
        })
        .collect();
    let found: BTreeSet<String> = hits
        .iter()
        .filter(|h| h.tags.iter().any(|t| t == "attack.credential-access"))
        .map(dataset)
        .filter(|d| credential.contains(d))
        .collect();
    eprintln!(
        "credential-access datasets with a credential-access alert: {} / {}",
        found.len(),
        credential.len()
    );
    assert!(credential.len() >= 5, "corpus changed: {credential:?}");
    assert_eq!(found, credential, "credential dumping missed");
    // Other tactics' datasets ("other" holds attack simulators such as APTSimulator, whose
    // Cobalt Strike lateral movement is a true hit) must not raise curated SigmaHQ or
    // lateral-movement alerts.
    let noisy: Vec<String> = hits
        .iter()
        .filter(|h| sigmahq.contains(&h.rule_id) || lateral.contains(&h.rule_id))
        .filter(|h| {
            let d = dataset(h);
            !d.starts_with("credential_access__") && !d.starts_with("other__")
        })
        .map(|h| format!("{} on {}", h.title, h.file))
        .collect();
    eprintln!(
        "curated SigmaHQ and lateral-movement alerts on other tactics' datasets: {}",
        noisy.len()
    );
    assert!(noisy.is_empty(), "false positives: {noisy:#?}");
}

/// Web: three scanners' logs (Acunetix, Netsparker, w3af against DVWA) and a 2004 honeynet web
/// server. Each scanner must become a scanning episode and injection-family alerts; the
/// product-specific exploit rules (KEV-class products none of these servers ran) and the
/// account-takeover correlation must stay silent on all of it.
#[test]
fn web_scanners_become_episodes_and_product_rules_stay_quiet() {
    let Some(c) = corpus() else { return };
    let scans = c.join("weblogs/ocatak-apache-http-logs");
    let honeynet = c.join("weblogs/honeynet-redhat71-httpd/httpd");
    if !scans.is_dir() || !honeynet.is_dir() {
        eprintln!("skipped: corpus weblogs not found");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kev = rule_ids("web/kev_app_exploits.yml");
    let takeover = rule_ids("identity");
    let mut lines_total = 0usize;
    for scanner in ["acunetix", "netsparker", "w3af"] {
        let f = scans.join(format!("{scanner}.txt"));
        lines_total += std::fs::read_to_string(&f)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        let hits = hunt(&[&f], tmp.path(), scanner);
        let episodes = hits
            .iter()
            .filter(|h| h.title == "Web Scanning Burst From One Source")
            .count();
        let injection = hits
            .iter()
            .filter(|h| {
                h.title.starts_with("SQL Injection")
                    || h.title.starts_with("Cross-Site Scripting")
                    || h.title.starts_with("Path Traversal")
                    || h.title.contains("Template Injection")
                    || h.title.starts_with("Command Injection")
                    || h.title.starts_with("Quote-Breaking Injection Probe")
            })
            .count();
        eprintln!(
            "{scanner}: {} alert rows, {episodes} scanning episode(s), {injection} injection-family alerts",
            hits.len()
        );
        assert!(episodes >= 1, "{scanner}: no scanning episode");
        assert!(injection >= 1, "{scanner}: no injection-family alert");
        let wrong: Vec<&str> = hits
            .iter()
            .filter(|h| kev.contains(&h.rule_id))
            .map(|h| h.title.as_str())
            .collect();
        assert!(
            wrong.is_empty(),
            "{scanner}: product rules fired: {wrong:?}"
        );
    }
    let mut others = vec![honeynet.clone()];
    for sub in ["loghub", "cloudtrail"] {
        if c.join(sub).is_dir() {
            others.push(c.join(sub));
        }
    }
    let refs: Vec<&Path> = others.iter().map(PathBuf::as_path).collect();
    let hits = hunt(&refs, tmp.path(), "quiet");
    let wrong: Vec<String> = hits
        .iter()
        .filter(|h| kev.contains(&h.rule_id) || takeover.contains(&h.rule_id))
        .map(|h| format!("{} on {}", h.title, h.file))
        .collect();
    eprintln!(
        "product-exploit and account-takeover alerts on {lines_total} scanner requests, the 2004 honeynet web server, loghub and CloudTrail: {}",
        wrong.len()
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}
