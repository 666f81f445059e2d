//! `mamori report`: the incident report and the monthly security audit, as PDF or HTML, in
//! Japanese or English, from a server's data directory (safe while the server runs).

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use mamori_report::monthly::Month;
use mamori_report::{Format, Lang, Locale, Zone};

use crate::exit;
use crate::serve::DataDirArgs;
use crate::term::outln;

#[derive(Subcommand, Debug)]
pub(crate) enum ReportCmd {
    /// Incident report (NIST SP 800-61 phases): summary, timeline, detection and analysis,
    /// containment/eradication/recovery, evidence with SHA-256 and the vault's signed tree
    /// head, chain of custody, lessons learned, indicators.
    Incident {
        /// Incident number.
        id: i64,
        #[command(flatten)]
        out: OutArgs,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Monthly security audit: summary for management, suspicious connections, log
    /// anomalies, accounts and keys, backups, detection (with trends).
    Monthly {
        /// The month, as YYYY-MM (default: the previous month).
        #[arg(long, value_name = "YYYY-MM")]
        month: Option<String>,
        #[command(flatten)]
        out: OutArgs,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

#[derive(Args, Debug)]
pub(crate) struct OutArgs {
    /// Language of the report: ja or en.
    #[arg(long, default_value = "en", value_name = "LANG")]
    lang: String,
    /// pdf (typeset in-process; needs a Japanese font, e.g. Debian fonts-ipaexfont-gothic)
    /// or html (one self-contained file).
    #[arg(long, default_value = "pdf", value_name = "FORMAT")]
    format: String,
    /// Where to write the report.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// Time zone for dates: UTC, JST, Asia/Tokyo or an offset like +09:00 (default: JST for
    /// ja, UTC for en).
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
}

struct Out {
    loc: Locale,
    format: Format,
    path: PathBuf,
}

fn usage(msg: impl std::fmt::Display) -> anyhow::Result<i32> {
    eprintln!("error: {msg}");
    Ok(exit::USAGE)
}

fn parse_out(o: OutArgs) -> Result<Out, String> {
    let lang =
        Lang::parse(&o.lang).ok_or_else(|| format!("unknown language `{}` (ja, en)", o.lang))?;
    let format = Format::parse(&o.format)
        .ok_or_else(|| format!("unknown format `{}` (pdf, html)", o.format))?;
    let zone = match &o.tz {
        None => None,
        Some(z) => Some(Zone::parse(z).ok_or_else(|| {
            format!("unknown time zone `{z}` (UTC, JST, Asia/Tokyo or an offset like +09:00)")
        })?),
    };
    Ok(Out {
        loc: Locale::new(lang, zone),
        format,
        path: o.out,
    })
}

fn write(out: &Out, bytes: &[u8]) -> anyhow::Result<()> {
    // Written beside the target and renamed, so a reader never sees half a report.
    let dir = out
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(&out.path)
        .with_context(|| format!("writing {}", out.path.display()))?;
    Ok(())
}

pub(crate) fn run(cmd: ReportCmd) -> anyhow::Result<i32> {
    let now = Utc::now();
    match cmd {
        ReportCmd::Incident { id, out, dir } => {
            let out = match parse_out(out) {
                Ok(o) => o,
                Err(e) => return usage(e),
            };
            let data_dir = dir.resolve()?;
            let data = match mamori_report::incident::load(&data_dir, id) {
                Ok(d) => d,
                Err(e @ mamori_report::Error::Input(_)) => return usage(e),
                Err(e) => return Err(e.into()),
            };
            let report = mamori_report::incident::build(&data, &out.loc, now)?;
            let bytes = mamori_report::render(&report, out.format)?;
            write(&out, &bytes)?;
            outln!("wrote {} ({} bytes)", out.path.display(), bytes.len());
            Ok(exit::OK)
        }
        ReportCmd::Monthly { month, out, dir } => {
            let out = match parse_out(out) {
                Ok(o) => o,
                Err(e) => return usage(e),
            };
            let month = match month {
                None => Month::previous_of(now, &out.loc),
                Some(m) => match Month::parse(&m) {
                    Some(m) => m,
                    None => return usage(format!("bad month `{m}` (YYYY-MM, e.g. 2026-11)")),
                },
            };
            let data_dir = dir.resolve()?;
            let mut data = mamori_report::monthly::load(&data_dir, month, &out.loc)?;
            data.rule_failures = rule_failures(&dir);
            let report = mamori_report::monthly::build(&data, month, &out.loc, now)?;
            let bytes = mamori_report::render(&report, out.format)?;
            write(&out, &bytes)?;
            outln!("wrote {} ({} bytes)", out.path.display(), bytes.len());
            Ok(exit::OK)
        }
    }
}

/// The rules of the server's configuration, compiled now: their load failures are the ones
/// the server sees (the embedded default pack and the configured rule folders).
fn rule_failures(dir: &DataDirArgs) -> Option<Vec<String>> {
    let cfg = dir.config_file()?;
    let cfg = mamori_server::ServerConfig::load(cfg).ok()?;
    let h = mamori_server::rules::RulesHandle::load_with_default(
        cfg.detection.rules.clone(),
        cfg.detection.placeholders.clone(),
        cfg.detection.default_rules,
    )
    .ok()?;
    Some(h.report().failures)
}
