//! Loading rule files from disk and `mamori rules check`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use mamori_detect::{CompileOptions, RuleSet};
use mamori_sigma::{Placeholders, RulePack};

use crate::exit;

#[derive(Subcommand, Debug)]
pub(crate) enum RulesCmd {
    /// Compile rules and list every rule that failed, with file, line and reason.
    ///
    /// Exits 0 when every rule compiled, 1 when some failed, 2 on a usage error.
    Check {
        /// Rule files or directories (searched recursively for .yml/.yaml).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// YAML file with values for `%placeholders%` used by `|expand`.
        #[arg(long, value_name = "FILE")]
        placeholders: Option<PathBuf>,
        /// Print only the summary line and failures.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// Every .yml/.yaml file under the paths, sorted.
pub(crate) fn rule_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
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
            bail!("rules path {} does not exist", p.display());
        }
        if p.is_file() {
            out.push(p.clone());
        } else {
            walk(p, &mut out)
                .with_context(|| format!("cannot read rules directory {}", p.display()))?;
        }
    }
    Ok(out)
}

pub(crate) fn load_placeholders(path: Option<&Path>) -> anyhow::Result<Placeholders> {
    match path {
        None => Ok(Placeholders::new()),
        Some(p) => {
            let src = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Placeholders::from_yaml(&src).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
    }
}

/// Reads and parses every rule file; unreadable files become failures, not errors.
pub(crate) fn load_pack(paths: &[PathBuf], ph: &Placeholders) -> anyhow::Result<(RulePack, usize)> {
    let files = rule_files(paths)?;
    let mut pack = RulePack::new();
    for f in &files {
        match std::fs::read(f) {
            Ok(bytes) => {
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
    pack.resolve_references();
    Ok((pack, files.len()))
}

pub(crate) fn run(cmd: RulesCmd) -> anyhow::Result<i32> {
    match cmd {
        RulesCmd::Check {
            paths,
            placeholders,
            quiet,
        } => {
            let ph = load_placeholders(placeholders.as_deref())?;
            let start = std::time::Instant::now();
            let (pack, files) = load_pack(&paths, &ph)?;
            let set = RuleSet::compile(&pack, &CompileOptions::default());
            let elapsed = start.elapsed();
            for f in &pack.failures {
                println!("FAILED  {f}");
            }
            if !quiet {
                println!(
                    "{files} files: {} rules, {} correlations, {} filters loaded; {} failed",
                    pack.rules.len(),
                    pack.correlations.len(),
                    pack.filters.len(),
                    pack.failures.len()
                );
                println!(
                    "compiled in {:.2}s: {} distinct predicates, {} rules without a literal trigger",
                    elapsed.as_secs_f64(),
                    set.predicate_count(),
                    set.untriggered_count()
                );
            }
            Ok(if pack.failures.is_empty() {
                exit::OK
            } else {
                exit::FOUND
            })
        }
    }
}
