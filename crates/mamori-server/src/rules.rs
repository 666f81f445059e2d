//! Rule files on disk → a compiled [`RuleSet`], and the live, hot-reloadable handle to it.
//!
//! Loading never aborts on a bad rule: the rules that compile go live and every failure is kept
//! in the [`RulesReport`] (file, line, reason) that `GET /api/v1/rules` and the reload answer
//! show. A reload that cannot read its paths at all keeps the previous rules.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::UNIX_EPOCH;

use chrono::{DateTime, Utc};
use mamori_detect::{CompileOptions, RuleSet};
use mamori_sigma::{Placeholders, RulePack};
use serde::Serialize;

/// Every `.yml`/`.yaml` file under the paths (directories recursively, sorted; symlinks are
/// not followed so a rules directory cannot pull in the rest of the file system).
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let md = std::fs::symlink_metadata(p)?;
        if md.is_dir() {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(p)?.flatten().map(|e| e.path()).collect();
            entries.sort();
            for e in entries {
                walk(&e, out)?;
            }
        } else if md.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p.to_path_buf());
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if !p.exists() {
            return Err(format!("rules path {} does not exist", p.display()));
        }
        if p.is_file() {
            out.push(p.clone());
        } else {
            walk(p, &mut out)
                .map_err(|e| format!("cannot read rules directory {}: {e}", p.display()))?;
        }
    }
    Ok(out)
}

/// Reads a placeholder file (`%admins%` → values), or none.
pub fn load_placeholders(path: Option<&Path>) -> Result<Placeholders, String> {
    match path {
        None => Ok(Placeholders::new()),
        Some(p) => {
            let src = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            Placeholders::from_yaml(&src).map_err(|e| format!("{}: {e}", p.display()))
        }
    }
}

/// Reads and parses every rule file; unreadable files become failures, not errors. Returns the
/// pack and the number of files read.
pub fn load_pack(paths: &[PathBuf], ph: &Placeholders) -> Result<(RulePack, usize), String> {
    load_pack_with_default(paths, ph, false)
}

/// [`load_pack`] on top of the embedded default pack ([`crate::default_rules`]) when
/// `default` is set. A file under `paths` identical to an embedded one is read once; a rule
/// or correlation under `paths` with the id of an embedded one replaces it (so a locally
/// tuned copy of a default rule does not alert twice).
pub fn load_pack_with_default(
    paths: &[PathBuf],
    ph: &Placeholders,
    default: bool,
) -> Result<(RulePack, usize), String> {
    let files = rule_files(paths)?;
    let mut pack = RulePack::new();
    let mut embedded = RulePack::new();
    let mut count = 0;
    if default {
        for (path, src) in crate::default_rules::FILES {
            embedded.add_file(&format!("{}{path}", crate::default_rules::PREFIX), src, ph);
            count += 1;
        }
    }
    for f in &files {
        match std::fs::read(f) {
            Ok(bytes) => {
                if default
                    && crate::default_rules::FILES
                        .iter()
                        .any(|(_, e)| e.as_bytes() == bytes.as_slice())
                {
                    continue; // already embedded
                }
                count += 1;
                let src = String::from_utf8_lossy(&bytes);
                pack.add_file(&f.display().to_string(), &src, ph);
            }
            Err(e) => pack.failures.push(mamori_sigma::Error {
                path: f.display().to_string(),
                line: None,
                rule: None,
                kind: mamori_sigma::ErrorKind::Yaml,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if default {
        let local: std::collections::HashSet<String> = pack
            .rules
            .iter()
            .filter_map(|r| r.meta.id.clone())
            .chain(pack.correlations.iter().filter_map(|c| c.meta.id.clone()))
            .collect();
        let overridden = |id: &Option<String>| id.as_ref().is_some_and(|i| local.contains(i));
        embedded.rules.retain(|r| !overridden(&r.meta.id));
        embedded.correlations.retain(|c| !overridden(&c.meta.id));
        embedded.rules.append(&mut pack.rules);
        embedded.correlations.append(&mut pack.correlations);
        embedded.filters.append(&mut pack.filters);
        embedded.failures.append(&mut pack.failures);
        pack = embedded;
    }
    pack.resolve_references();
    Ok((pack, count))
}

/// A fingerprint of the rule files (names, sizes, modification times) to notice changes.
pub fn fingerprint(paths: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(files) = rule_files(paths) {
        for f in files {
            f.hash(&mut h);
            if let Ok(md) = std::fs::metadata(&f) {
                md.len().hash(&mut h);
                md.modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .hash(&mut h);
            }
        }
    }
    h.finish()
}

/// Compiled rules plus the pack they came from (correlations are rebuilt from it).
pub struct Engine {
    pub rules: RuleSet,
    pub pack: RulePack,
    /// Increases with every reload; the detector rebuilds its correlation state when it changes.
    pub generation: u64,
}

/// What the last (re)load did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RulesReport {
    pub generation: u64,
    pub loaded_at: Option<DateTime<Utc>>,
    pub files: usize,
    pub rules: usize,
    pub correlations: usize,
    /// `file:line: rule: reason` for every document that did not compile.
    pub failures: Vec<String>,
    /// Set when the reload failed as a whole (the previous rules stay live).
    pub error: Option<String>,
}

/// The live rules, swapped atomically on reload.
pub struct RulesHandle {
    paths: Vec<PathBuf>,
    /// The embedded default pack is loaded under `paths`.
    default_rules: bool,
    placeholders: Option<PathBuf>,
    current: RwLock<Arc<Engine>>,
    report: RwLock<RulesReport>,
    reload_lock: Mutex<()>,
    /// Changes made in the console (kept in state.db): disabled rules, level overrides.
    overrides: RwLock<RuleOverrides>,
}

/// Rules switched off and levels changed from the console, by rule reference (id, else name,
/// else title). Applied on every (re)load, after the files are read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RuleOverrides {
    /// Reference → title of each disabled rule (the title is shown while it is off).
    pub disabled: std::collections::BTreeMap<String, String>,
    pub levels: std::collections::BTreeMap<String, mamori_event::Level>,
}

impl RuleOverrides {
    pub fn is_empty(&self) -> bool {
        self.disabled.is_empty() && self.levels.is_empty()
    }

    /// Removes disabled rules and correlations and sets overridden levels; a correlation that
    /// used a disabled rule is dropped with a reference failure.
    pub fn apply(&self, pack: &mut RulePack) {
        if self.is_empty() {
            return;
        }
        let off = |m: &mamori_sigma::Meta| self.disabled.contains_key(m.reference());
        pack.rules.retain(|r| !off(&r.meta));
        pack.correlations.retain(|c| !off(&c.meta));
        for r in &mut pack.rules {
            if let Some(l) = self.levels.get(r.meta.reference()) {
                r.meta.level = Some(*l);
            }
        }
        for c in &mut pack.correlations {
            if let Some(l) = self.levels.get(c.meta.reference()) {
                c.meta.level = Some(*l);
            }
        }
        pack.resolve_references();
    }
}

impl RulesHandle {
    /// Loads the rules for the first time. Fails only if the paths cannot be read at all.
    pub fn load(paths: Vec<PathBuf>, placeholders: Option<PathBuf>) -> Result<RulesHandle, String> {
        RulesHandle::load_with_default(paths, placeholders, false)
    }

    /// [`RulesHandle::load`], on top of the embedded default pack when `default_rules`.
    pub fn load_with_default(
        paths: Vec<PathBuf>,
        placeholders: Option<PathBuf>,
        default_rules: bool,
    ) -> Result<RulesHandle, String> {
        let (engine, report) = build(
            &paths,
            placeholders.as_deref(),
            default_rules,
            1,
            &RuleOverrides::default(),
        )?;
        Ok(RulesHandle {
            default_rules,
            current: RwLock::new(Arc::new(engine)),
            report: RwLock::new(report),
            paths,
            placeholders,
            reload_lock: Mutex::new(()),
            overrides: RwLock::new(RuleOverrides::default()),
        })
    }

    pub fn current(&self) -> Arc<Engine> {
        self.current
            .read()
            .map(|g| Arc::clone(&g))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    pub fn report(&self) -> RulesReport {
        self.report
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The console's overrides in force.
    pub fn overrides(&self) -> RuleOverrides {
        self.overrides
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the overrides and reloads, so they apply to detection at once.
    pub fn set_overrides(&self, o: RuleOverrides) -> RulesReport {
        if let Ok(mut g) = self.overrides.write() {
            *g = o;
        }
        self.reload()
    }

    /// Recompiles the rules and swaps them in. Compilation runs on the caller's thread
    /// (call it from a blocking context).
    pub fn reload(&self) -> RulesReport {
        let _serial = self.reload_lock.lock();
        let generation = self.current().generation + 1;
        let report = match build(
            &self.paths,
            self.placeholders.as_deref(),
            self.default_rules,
            generation,
            &self.overrides(),
        ) {
            Ok((engine, report)) => {
                if let Ok(mut g) = self.current.write() {
                    *g = Arc::new(engine);
                }
                report
            }
            Err(e) => {
                let mut r = self.report();
                r.error = Some(e);
                r
            }
        };
        if let Ok(mut g) = self.report.write() {
            *g = report.clone();
        }
        report
    }
}

fn build(
    paths: &[PathBuf],
    placeholders: Option<&Path>,
    default_rules: bool,
    generation: u64,
    overrides: &RuleOverrides,
) -> Result<(Engine, RulesReport), String> {
    let ph = load_placeholders(placeholders)?;
    let (mut pack, files) = load_pack_with_default(paths, &ph, default_rules)?;
    overrides.apply(&mut pack);
    let rules = RuleSet::compile(&pack, &CompileOptions::default());
    let report = RulesReport {
        generation,
        loaded_at: Some(Utc::now()),
        files,
        rules: pack.rules.len(),
        correlations: pack.correlations.len(),
        failures: pack.failures.iter().map(|f| f.to_string()).collect(),
        error: None,
    };
    Ok((
        Engine {
            rules,
            pack,
            generation,
        },
        report,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "title: T\nid: 11111111-1111-1111-1111-111111111111\nlogsource:\n  product: linux\ndetection:\n  sel:\n    event.action: ssh_login\n  condition: sel\nlevel: high\n";

    #[test]
    fn reload_reports_failures_and_keeps_good_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), GOOD).unwrap();
        let h = RulesHandle::load(vec![dir.path().to_owned()], None).unwrap();
        assert_eq!(h.report().rules, 1);
        let fp = fingerprint(&[dir.path().to_owned()]);
        std::fs::write(
            dir.path().join("b.yml"),
            "title: broken\ndetection:\n  condition: sel\n  condition: x\n",
        )
        .unwrap();
        assert_ne!(fp, fingerprint(&[dir.path().to_owned()]));
        let r = h.reload();
        assert_eq!(r.generation, 2);
        assert_eq!(r.rules, 1);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert!(r.failures[0].contains("b.yml"), "{:?}", r.failures);
        assert_eq!(h.current().generation, 2);
    }

    #[test]
    fn vanished_path_keeps_previous_rules() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("rules");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.yml"), GOOD).unwrap();
        let h = RulesHandle::load(vec![sub.clone()], None).unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        let r = h.reload();
        assert!(r.error.as_deref().unwrap().contains("does not exist"));
        assert_eq!(h.current().generation, 1);
        assert_eq!(h.current().rules.len(), 1);
    }
}
