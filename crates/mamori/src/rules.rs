//! Loading rule files from disk and `mamori rules check`.

use std::path::{Path, PathBuf};

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

/// Reads a placeholder file (shared with `mamori serve`).
pub(crate) fn load_placeholders(path: Option<&Path>) -> anyhow::Result<Placeholders> {
    mamori_server::rules::load_placeholders(path).map_err(anyhow::Error::msg)
}

/// Reads and parses every rule file; unreadable files become failures, not errors.
pub(crate) fn load_pack(paths: &[PathBuf], ph: &Placeholders) -> anyhow::Result<(RulePack, usize)> {
    mamori_server::rules::load_pack(paths, ph).map_err(anyhow::Error::msg)
}

/// [`load_pack`] on top of the embedded default pack when `default` is set.
pub(crate) fn load_pack_with_default(
    paths: &[PathBuf],
    ph: &Placeholders,
    default: bool,
) -> anyhow::Result<(RulePack, usize)> {
    mamori_server::rules::load_pack_with_default(paths, ph, default).map_err(anyhow::Error::msg)
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
