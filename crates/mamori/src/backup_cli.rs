//! `mamori backup check`: run the `[[backup]]` checks of a server configuration now, print the
//! results, store them in the server's history (`<data_dir>/backups.db`, shared safely with a
//! running server) and exit 0 when all passed, 1 when one failed, 2 on a usage error.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use mamori_backup::{CheckRecord, CheckStatus, Checker, History};
use mamori_server::ServerConfig;

use crate::exit;
use crate::term::{out_raw, outln};

#[derive(Subcommand, Debug)]
pub(crate) enum BackupCmd {
    /// Check backups now: restic/Borg repositories, backup directories, restore tests, 3-2-1.
    #[command(after_help = "Examples:\n    \
mamori backup check --config mamori.toml                 Check every [[backup]] entry\n    \
mamori backup check fs01-restic --config mamori.toml     Check one entry\n    \
mamori backup check --config mamori.toml --format json   Machine-readable results\n\n\
Exit codes: 0 every check passed (warnings included), 1 a check failed, 2 usage or configuration error.")]
    Check(CheckArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    En,
    Ja,
}

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// Entries to check (their `name`); all when none is given.
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// The server's configuration file holding the `[[backup]]` entries.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Data directory for history, manifests and keys; overrides `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Language of the findings in text output.
    #[arg(long, value_enum, default_value_t = Lang::En)]
    lang: Lang,
}

pub(crate) fn run(cmd: BackupCmd) -> anyhow::Result<i32> {
    match cmd {
        BackupCmd::Check(a) => check(a),
    }
}

fn check(a: CheckArgs) -> anyhow::Result<i32> {
    let cfg = match ServerConfig::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    if cfg.backup.is_empty() {
        eprintln!(
            "error: {} has no [[backup]] entries (see README: Backup checks)",
            a.config.display()
        );
        return Ok(exit::USAGE);
    }
    if let Some(n) = a
        .names
        .iter()
        .find(|n| !cfg.backup.iter().any(|b| &b.name == *n))
    {
        let known: Vec<&str> = cfg.backup.iter().map(|b| b.name.as_str()).collect();
        eprintln!(
            "error: no [[backup]] entry is named {n:?} (configured: {})",
            known.join(", ")
        );
        return Ok(exit::USAGE);
    }
    let data_dir = a.data_dir.clone().unwrap_or(cfg.data_dir.clone());
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let history = History::open(&data_dir)?;
    let checker = Checker {
        data_dir: &data_dir,
        history: &history,
        settings: &cfg.backups,
        entries: &cfg.backup,
    };
    let mut records = Vec::new();
    for e in cfg
        .backup
        .iter()
        .filter(|e| a.names.is_empty() || a.names.contains(&e.name))
    {
        eprintln!("checking {} ({})…", e.name, e.kind.as_str());
        let r = checker.check(e)?;
        if a.format == Format::Text {
            print_text(&r, a.lang);
        }
        records.push(r);
    }
    if a.format == Format::Json {
        out_raw!("{}", serde_json::to_string_pretty(&records)?);
    }
    Ok(match mamori_backup::worst(&records) {
        CheckStatus::Failed => exit::FOUND,
        _ => exit::OK,
    })
}

fn print_text(r: &CheckRecord, lang: Lang) {
    let ja = lang == Lang::Ja;
    let status = match (r.status, ja) {
        (CheckStatus::Passed, false) => "PASSED",
        (CheckStatus::Warning, false) => "WARNING",
        (CheckStatus::Failed, false) => "FAILED",
        (CheckStatus::Passed, true) => "合格",
        (CheckStatus::Warning, true) => "警告",
        (CheckStatus::Failed, true) => "失敗",
    };
    outln!(
        "{}  {}  {}  {}",
        r.name,
        r.kind,
        status,
        r.started.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let levels = r.details["finding_status"].as_array();
    for (i, f) in r.findings.iter().enumerate() {
        let mark = match levels
            .and_then(|l| l.get(i))
            .and_then(|v| v.as_str())
            .unwrap_or("failed")
        {
            "failed" => "✗",
            "warning" => "!",
            _ => "·",
        };
        outln!(
            "  {mark} {}  [{}]",
            f.text(if ja { "ja" } else { "en" }),
            f.code
        );
    }
    if r.findings.is_empty() {
        outln!(
            "  {}",
            if ja {
                "問題はありません"
            } else {
                "no findings"
            }
        );
    }
}
