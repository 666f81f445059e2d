//! `mamori scan`: a safe external diagnosis of the company's own web services and VPN. Glue
//! over `mamori-scan`: arguments, the `[scan]` section of a configuration, progress, output
//! and exit codes (0 nothing above info, 1 findings, 2 error or refused target).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mamori_scan::{report, Lang, Profile, ScanConfig, Scanner, Severity, Target};

use crate::exit;
use crate::term::out_raw;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    Html,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProfileArg {
    /// Look only: pages, headers, TLS, exposed files, fingerprints (default).
    Safe,
    /// Also harmless-marker probes (XSS, SQL injection, open redirect) and TRACE.
    Standard,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LangArg {
    En,
    Ja,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n    \
mamori scan https://mail.example.co.jp/                        Look at one site (profile safe)\n    \
mamori scan vpn.example.co.jp --dry-run                         List what would be sent, send nothing\n    \
mamori scan https://www.example.co.jp/ --profile standard --lang ja --format html -o scan.html\n    \
mamori scan --config mamori.toml                                The [scan] targets, checked against its allow-list\n\n\
Safety: only GET/HEAD/OPTIONS/TRACE without a body; at most max_requests per target at `rate`\n\
per second; links out of the target's scope, POST forms and logout/delete links are never followed;\n\
no login is ever tried. With --config, every target must be in [scan] allow (names, *.domain, IPs,\n\
CIDRs); without it, the targets given are the allow-list. Scan only what you are allowed to test.\n\n\
Exit codes: 0 no finding above info, 1 findings, 2 error or a target outside the allow-list.")]
pub(crate) struct ScanArgs {
    /// URLs or host names to scan (a bare host means https://HOST/); default: [scan] targets.
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
    /// How far to go.
    #[arg(long, value_enum)]
    profile: Option<ProfileArg>,
    /// Language of the report.
    #[arg(long, value_enum, default_value_t = LangArg::En)]
    lang: LangArg,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// List every request the scan would send, and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// A configuration file with a [scan] section (allow-list, budget, rate, ca_file…).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A directory of more templates (*.yml), added to the shipped ones.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Write the report to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// No progress display.
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn run(a: ScanArgs) -> anyhow::Result<i32> {
    match scan(a) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(exit::USAGE)
        }
    }
}

fn scan(a: ScanArgs) -> anyhow::Result<i32> {
    let mut cfg = match &a.config {
        Some(p) => ScanConfig::from_file(p)?,
        None => ScanConfig::default(),
    };
    if let Some(d) = &a.templates {
        cfg.templates = Some(d.clone());
    }
    let profile = match a.profile {
        Some(ProfileArg::Safe) => Profile::Safe,
        Some(ProfileArg::Standard) => Profile::Standard,
        None => cfg.profile,
    };
    let lang = match a.lang {
        LangArg::En => Lang::En,
        LangArg::Ja => Lang::Ja,
    };
    let given = if a.targets.is_empty() {
        cfg.targets.clone()
    } else {
        a.targets.clone()
    };
    if given.is_empty() {
        anyhow::bail!("no target: give TARGET… or [scan] targets in --config");
    }
    let targets: Vec<Target> = given
        .iter()
        .map(|t| Target::parse(t))
        .collect::<Result<_, _>>()?;
    let scanner = Scanner::new(&cfg, profile)?;
    for e in scanner.template_errors() {
        eprintln!("warning: template not loaded: {e}");
    }
    if a.dry_run {
        let plan = scanner.plan(&targets)?;
        let text = match a.format {
            Format::Json => serde_json::to_string_pretty(&plan)?,
            _ => report::plan_text(&plan, lang),
        };
        emit(&a.output, &text)?;
        return Ok(exit::OK);
    }
    let show = !a.quiet && std::io::stderr().is_terminal();
    let bar = if show {
        let b = ProgressBar::new(targets.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos}/{len} targets {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    } else {
        ProgressBar::hidden()
    };
    let mut first = true;
    let rep = scanner.run(&targets, |t| {
        if !first {
            bar.inc(1);
        }
        first = false;
        bar.set_message(t.to_string());
    })?;
    bar.finish_and_clear();
    let text = match a.format {
        Format::Text => report::text(&rep, lang),
        Format::Json => report::json(&rep),
        Format::Html => report::html(&rep, lang),
    };
    emit(&a.output, &text)?;
    if rep.targets.iter().all(|t| !t.reachable) {
        eprintln!("error: no target answered");
        return Ok(exit::USAGE);
    }
    Ok(if rep.worst() > Severity::Info {
        exit::FOUND
    } else {
        exit::OK
    })
}

fn emit(output: &Option<PathBuf>, text: &str) -> anyhow::Result<()> {
    match output {
        Some(p) => std::fs::write(p, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display())),
        None => {
            out_raw!("{}", text.trim_end());
            Ok(())
        }
    }
}
