//! `mamori hunt`: read every log file under some paths in parallel, match Sigma rules
//! (incl. correlations), write a time-sorted timeline and a summary.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mamori_detect::correlation::{Arrival, CorrelationAlert, Correlator, Limits, Phase};
use mamori_detect::{outcome, CompileOptions, Match, RuleSet};
use mamori_event::{Event, Format, Level};
use mamori_ingest::{FileReport, ReadOptions};
use mamori_sigma::FieldMap;
use rayon::prelude::*;

use crate::exit;
use crate::rules::{load_pack_with_default, load_placeholders};
use crate::timeline::{self, Row, TimelineFormat};

#[derive(Args, Debug)]
#[command(
    long_about = "Hunt through log files with Sigma rules and write a forensic timeline.\n\n\
Every file under PATH is read (EVTX, JSON/JSONL, CloudTrail, syslog, access logs, auditd; .gz\n\
transparently), its format detected from the content. Detections are written as a timeline sorted\n\
by time: CSV by default (spreadsheet formulas neutralised), or JSONL with the full event.\n\
A summary goes to standard error."
)]
pub(crate) struct HuntArgs {
    /// Log files or directories to read (recursively).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Sigma rule files or directories, added to the embedded default pack.
    #[arg(short, long, value_name = "PATH", num_args = 1..)]
    rules: Vec<PathBuf>,
    /// Leave out the embedded default pack (Mamori's `rules/`): only `--rules` are used.
    #[arg(long, requires = "rules")]
    no_default_rules: bool,
    /// Write the timeline to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Timeline format.
    #[arg(long, value_enum, default_value = "csv")]
    format: TimelineFormat,
    /// Read every input as this format instead of detecting it
    /// (evtx, json, cloudtrail, syslog, access-log, iis, auditd).
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    input_format: Option<Format>,
    /// Only report detections of at least this level.
    #[arg(long, value_name = "LEVEL", value_parser = parse_level, default_value = "informational")]
    min_level: Level,
    /// Number of threads (default: all cores).
    #[arg(short = 'j', long, value_name = "N")]
    threads: Option<usize>,
    /// Exit with code 1 when anything was detected.
    #[arg(long)]
    fail_on_detection: bool,
    /// YAML file with values for `%placeholders%` used by `|expand`.
    #[arg(long, value_name = "FILE")]
    placeholders: Option<PathBuf>,
    /// No progress bar and no summary.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    analytics: crate::analytics::AnalyticsArgs,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| {
        format!("unknown format `{s}` (expected evtx, json, cloudtrail, syslog, access-log, iis or auditd)")
    })
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s)
        .ok_or_else(|| format!("unknown level `{s}` (informational, low, medium, high, critical)"))
}

/// A copy of `ev` with only the named fields (and its time and origin), for correlation.
fn slim(ev: &Event, names: &[String]) -> Event {
    let mut out = Event::new(ev.format, ev.origin.clone(), Vec::new());
    out.timestamp = ev.timestamp;
    out.logsource = ev.logsource.clone();
    for (n, v) in ev.fields() {
        if names.iter().any(|x| x == n.as_str()) {
            // Detached: a value shares its event's whole line otherwise.
            out.push(n.clone(), v.detached());
        }
    }
    out
}

/// How many rules of each kind were loaded (for the summary).
struct PackCounts {
    rules: usize,
    correlations: usize,
    filters: usize,
    failed: usize,
}

/// What one file produced.
struct FileResult {
    report: FileReport,
    /// Events that matched rules feeding correlations, with those matches.
    for_correlation: Vec<(Event, Vec<Match>)>,
    /// Matches of low-level Sigma rules that feed risk instead of alerting.
    signals: Vec<mamori_analytics::Signal>,
    /// Failed exploit probes (`mamori_detect::outcome`), gathered into episodes.
    probes: Vec<Probe>,
    /// Remote-administration rows, judged once every admin-network logon is known.
    held: Vec<Row>,
    admin_logons: Vec<(String, mamori_analytics::AdminLogon)>,
}

/// A web exploit or probe whose response says it failed.
struct Probe {
    source_ip: String,
    time_ms: i64,
    host: String,
    product: String,
    rule_id: String,
    status: u16,
    origin: String,
}

pub(crate) fn run(args: HuntArgs) -> anyhow::Result<i32> {
    let start = Instant::now();
    let ph = load_placeholders(args.placeholders.as_deref())?;
    let (pack, rule_files) = load_pack_with_default(&args.rules, &ph, !args.no_default_rules)?;
    if pack.rules.is_empty() {
        eprintln!(
            "error: no rule could be loaded from {} rule file(s)",
            rule_files
        );
        for f in pack.failures.iter().take(20) {
            eprintln!("  {f}");
        }
        return Ok(exit::USAGE);
    }
    let opts = CompileOptions::default();
    let rules = RuleSet::compile(&pack, &opts);
    let mut correlator = Correlator::new(&pack, &rules, &FieldMap::builtin(), Limits::default());
    // The parsed rules are compiled: only their counts are needed from here on. Freed before
    // the files are read, their memory serves the hunt instead of adding to its peak.
    let pack_counts = PackCounts {
        rules: pack.rules.len(),
        correlations: pack.correlations.len(),
        filters: pack.filters.len(),
        failed: pack.failures.len(),
    };
    drop(pack);

    let (files, walk_errors) = mamori_ingest::discover(&args.paths);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")?;

    let show = !args.quiet && std::io::stderr().is_terminal();
    let bar = if show {
        let b = ProgressBar::new(files.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} files {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };

    let read_opts = ReadOptions {
        format: args.input_format,
        ..ReadOptions::default()
    };
    let jsonl = args.format == TimelineFormat::Jsonl;
    let mut corr_fields = correlator.needed_fields();
    // Correlation rows name the hosts of their events.
    corr_fields.extend(["host.name", "Computer", "hostname"].map(String::from));
    let sigma_risk = args.analytics.sigma_risk()?;
    let sigma_risk = &sigma_risk;
    let analytics_on = args.analytics.enabled();
    let admin_nets = sigma_risk.has_admin_network();
    let timeline_buf = timeline::Buffer::new(args.format);
    let corr_ref = &correlator;
    let results: Vec<FileResult> = pool.install(|| {
        files
            .par_iter()
            .map_init(
                || rules.scratch(),
                |scratch, path| {
                    let mut batch = timeline_buf.batch();
                    let mut for_correlation = Vec::new();
                    let mut signals = Vec::new();
                    let mut probes = Vec::new();
                    let mut held = Vec::new();
                    let mut admin_logons = Vec::new();
                    let mut matches = Vec::new();
                    let report = mamori_ingest::read_file(path, &read_opts, &mut |ev| {
                        if admin_nets {
                            admin_logons.extend(sigma_risk.admin_logon(&ev));
                        }
                        matches.clear();
                        rules.matches(&ev, scratch, &mut matches);
                        if matches.is_empty() {
                            return;
                        }
                        // What the event's rows share, found or rendered once: its host,
                        // its source and (JSONL) the event itself.
                        let mut event_json: Option<String> = None;
                        let mut host_source: Option<(String, String)> = None;
                        for m in &matches {
                            let info = rules.rule(m.rule);
                            let mut as_signal = info.standalone && sigma_risk.is_signal(info.level);
                            if as_signal {
                                signals.extend(sigma_risk.signal(&ev, info));
                            }
                            // A probe the server answered with a failure is a signal, not an
                            // alert (one definition with `serve`: mamori_detect::outcome).
                            // A declared scanner's probes are signals (no risk, no episode).
                            let (verdict, scanned) = if info.standalone {
                                sigma_risk.judge(info, &ev)
                            } else {
                                (outcome::Verdict::Alert, false)
                            };
                            let mut why = None;
                            if let outcome::Verdict::Signal(r) = verdict {
                                as_signal = true;
                                if analytics_on && !scanned {
                                    signals.extend(sigma_risk.failed_probe_signal(&ev, &r.en));
                                }
                                probes.extend((!scanned).then(|| Probe {
                                    source_ip: outcome::probe_source(&ev),
                                    time_ms: ev.timestamp.map_or(0, |t| t.timestamp_millis()),
                                    host: ev.host().map(|h| h.into_owned()).unwrap_or_default(),
                                    product: info.meta.title.clone(),
                                    rule_id: info.meta.reference().to_owned(),
                                    status: r.status.unwrap_or(0),
                                    origin: ev.origin.to_string(),
                                }));
                                why = Some(r);
                            }
                            if !info.standalone || info.level < args.min_level {
                                continue;
                            }
                            let mut details = rules.details_matched(m.rule, &ev, scratch);
                            if let Some(r) = why {
                                details.push(("outcome".into(), r.en));
                                details.push(("outcome_ja".into(), r.ja));
                            }
                            // Remote administration waits for the admin-network logons.
                            let hold = admin_nets
                                && !as_signal
                                && outcome::is_remote_admin_rule(&info.meta);
                            let kind = if as_signal {
                                timeline::RowKind::Signal
                            } else {
                                timeline::RowKind::Detection
                            };
                            let (host, source) = host_source.get_or_insert_with(|| {
                                (
                                    ev.host().map(|h| h.into_owned()).unwrap_or_default(),
                                    ev.origin.to_string(),
                                )
                            });
                            let tags: Vec<&str> = info.meta.attack_tags().collect();
                            let event = jsonl.then(|| {
                                event_json
                                    .get_or_insert_with(|| ev.fields_json_text())
                                    .as_str()
                            });
                            let view = timeline::RowView {
                                timestamp: ev.timestamp,
                                host,
                                source,
                                rule_id: info.meta.reference(),
                                rule_title: &info.meta.title,
                                level: info.level,
                                tags: &tags,
                                details: &details,
                                event,
                                evidence: None,
                                kind,
                            };
                            if hold {
                                held.push(view.to_row());
                            } else {
                                // Rendered here from borrowed parts: no owned row is built.
                                batch.add(&view);
                            }
                        }
                        if matches.iter().any(|m| corr_ref.uses_rule(m.rule)) {
                            // Keep only what correlations read: memory grows with the
                            // correlated matches, not with the events' size.
                            for_correlation.push((slim(&ev, &corr_fields), matches.clone()));
                        }
                        if batch.full() {
                            timeline_buf.push(&mut batch);
                        }
                    });
                    // The file's last rows: its batch (and its scratch) end with it.
                    timeline_buf.push(&mut batch);
                    bar.inc(1);
                    FileResult {
                        report,
                        for_correlation,
                        signals,
                        probes,
                        held,
                        admin_logons,
                    }
                },
            )
            .collect()
    });
    bar.finish_and_clear();

    // Correlations run over the merged stream in event time.
    let mut rows: Vec<Row> = Vec::new();
    let mut corr_events: Vec<(Event, Vec<Match>)> = Vec::new();
    let mut sigma_signals = Vec::new();
    let mut probes = Vec::new();
    let mut held = Vec::new();
    let mut admin_logons = Vec::new();
    let mut reports = Vec::with_capacity(results.len());
    for r in results {
        corr_events.extend(r.for_correlation);
        sigma_signals.extend(r.signals);
        probes.extend(r.probes);
        held.extend(r.held);
        admin_logons.extend(r.admin_logons);
        reports.push(r.report);
    }
    rows.extend(sigma_risk.judge_remote_admin(held, admin_logons));
    // One low row per internet source and day: failed probes and lowered correlations.
    let mut daily = Vec::new();
    if Level::Low >= args.min_level {
        daily.extend(probe_episodes(probes));
    }
    if !correlator.is_empty() {
        corr_events.sort_by_key(|(e, _)| e.timestamp);
        let mut alerts = Vec::new();
        for (i, (ev, m)) in corr_events.iter().enumerate() {
            // Event time is the only clock offline; lateness and clock skew are per file.
            let source = match &ev.origin {
                mamori_event::Origin::File { path, .. } => path.to_string_lossy(),
                other => std::borrow::Cow::Owned(other.to_string()),
            };
            let arrival = Arrival {
                source: &source,
                received_ms: None,
                reference: i as u64,
            };
            correlator.observe(ev, m, &arrival, &mut alerts);
        }
        correlator.flush(&mut alerts);
        for a in alerts {
            // One row per episode, with its final figures. Guessing from the internet that
            // guessed nothing is low (mamori_detect::outcome, the same judgement as `serve`).
            let (level, why) = outcome::judge_correlation(
                &a.correlation.meta,
                a.correlation.kind,
                a.correlation.level,
                &a.group,
                |ip| sigma_risk.is_internal(ip),
            );
            if a.phase != Phase::Closed || level < args.min_level {
                continue;
            }
            let mut row = correlation_row(&a, &corr_events);
            // Probing from a declared scanner is the scan the company ordered: a signal.
            let scanner = outcome::group_address(&a.group)
                .and_then(|ip| sigma_risk.scanner_of_ip(ip).map(|n| (n, ip)))
                .filter(|_| {
                    outcome::is_probing_correlation(&a.correlation.meta, a.correlation.kind)
                });
            if let Some((n, ip)) = scanner {
                let r = outcome::scanner_reason(n, ip, None);
                row.kind = timeline::RowKind::Signal;
                row.details.push(("outcome".into(), r.en));
                row.details.push(("outcome_ja".into(), r.ja));
                rows.push(row);
                continue;
            }
            if let Some(r) = why {
                row.level = level;
                row.details.push(("outcome".into(), r.en));
                row.details.push(("outcome_ja".into(), r.ja));
            }
            // A lowered correlation keeps its own row (title, evidence span, every event): merged
            // into the source's daily episode it lost its title and, in serve, its events.
            rows.push(row);
        }
    }
    rows.extend(crate::episodes::merge_daily(daily));
    // Baseline analytics (mamori-analytics: identity directory, first-seen, volume, off-hours):
    // a second, observation-only pass over the files, run in event time. Only when asked for.
    // Low-level Sigma matches (`--sigma-signals`) join the analytics' signals.
    if args.analytics.enabled() || !sigma_signals.is_empty() {
        rows.extend(crate::analytics::run(
            &args.analytics,
            &files,
            &read_opts,
            &pool,
            args.min_level,
            sigma_signals,
        )?);
    }
    timeline_buf.push_batch(rows);
    let mut stats = timeline::Stats::default();
    match &args.output {
        Some(p) => {
            let f = std::fs::File::create(p)
                .with_context(|| format!("cannot create {}", p.display()))?;
            // Rows are kilobytes each (JSONL carries the event): written in large blocks.
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            stats = timeline_buf
                .write_sorted(&mut w)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let tty = std::io::IsTerminal::is_terminal(&stdout);
            let w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            // On a terminal, log content is escaped (ESC, BEL, CR…); a pipe or file gets it as is.
            let mut w: Box<dyn std::io::Write> = if tty {
                Box::new(crate::term::Sanitize::new(w))
            } else {
                Box::new(w)
            };
            match timeline_buf.write_sorted(&mut w) {
                Ok(s) => stats = s,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e).context("cannot write the timeline"),
            }
        }
    }

    // The compiled rules and the correlator end with the process, which returns their memory
    // whole: freeing their blocks one by one costs a large rule set ~10 ms for nothing.
    std::mem::forget(rules);
    std::mem::forget(correlator);
    if !args.quiet {
        summary(
            &reports,
            &walk_errors,
            &stats,
            &pack_counts,
            rule_files,
            start.elapsed(),
        );
    }
    Ok(if args.fail_on_detection && stats.total > 0 {
        exit::FOUND
    } else {
        exit::OK
    })
}

/// The timeline row of a correlation episode: its hosts, and the events behind it — first
/// and last `file:line` in the source column, all of them (up to the bound) in JSONL.
fn correlation_row(a: &CorrelationAlert, events: &[(Event, Vec<Match>)]) -> Row {
    let at = |r: Option<mamori_detect::correlation::EvRef>| {
        r.and_then(|r| events.get(r.reference as usize))
            .map(|(e, _)| e.origin.to_string())
            .unwrap_or_default()
    };
    let (first, last) = (at(a.evidence.first), at(a.evidence.last));
    let source = if first == last {
        first.clone()
    } else {
        format!("{first} … {last}")
    };
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    let mut details: Vec<(String, String)> = a.group.clone();
    details.push((
        a.correlation.kind.as_str().to_owned(),
        format!("{}", a.value),
    ));
    details.push(("events".into(), a.events.to_string()));
    details.push(("first".into(), time(a.first_ms)));
    details.push(("last".into(), time(a.last_ms)));
    let sources: Vec<String> = a.evidence.refs.iter().map(|r| at(Some(*r))).collect();
    Row {
        timestamp: chrono::DateTime::from_timestamp_millis(a.first_ms),
        host: a.evidence.hosts.join(", "),
        source,
        rule_id: a.correlation.meta.reference().to_owned(),
        rule_title: a.correlation.meta.title.clone(),
        level: a.correlation.level,
        tags: a
            .correlation
            .meta
            .attack_tags()
            .map(str::to_owned)
            .collect(),
        details,
        event: None,
        kind: timeline::RowKind::Detection,
        evidence: Some(serde_json::json!({
            "first": first,
            "last": last,
            "count": a.events,
            "hosts": a.evidence.hosts,
            "sources": sources,
            "sources_truncated": (sources.len() as u64) < a.evidence.count,
        })),
    }
}

/// One row per source and day for the failed exploit probes: low, with first/last, count,
/// the products probed and the answers, citing its events like a correlation row.
fn probe_episodes(probes: Vec<Probe>) -> Vec<Row> {
    let mut by_key: BTreeMap<String, Vec<Probe>> = BTreeMap::new();
    for p in probes {
        by_key
            .entry(outcome::probe_episode_key(&p.source_ip, p.time_ms))
            .or_default()
            .push(p);
    }
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    by_key
        .into_values()
        .map(|mut ps| {
            ps.sort_by_key(|p| p.time_ms);
            let (first, last) = (&ps[0], &ps[ps.len() - 1]);
            let mut products: Vec<&str> = ps.iter().map(|p| p.product.as_str()).collect();
            products.sort_unstable();
            products.dedup();
            let mut rule_ids: Vec<&str> = ps.iter().map(|p| p.rule_id.as_str()).collect();
            rule_ids.sort_unstable();
            rule_ids.dedup();
            let mut statuses: Vec<u16> = ps.iter().map(|p| p.status).collect();
            statuses.sort_unstable();
            statuses.dedup();
            let mut hosts: Vec<&str> = ps
                .iter()
                .map(|p| p.host.as_str())
                .filter(|h| !h.is_empty())
                .collect();
            hosts.sort_unstable();
            hosts.dedup();
            // One request may match several rules: the episode counts requests.
            let mut sources: Vec<&str> = ps.iter().map(|p| p.origin.as_str()).collect();
            sources.dedup();
            let requests = sources.len();
            sources.truncate(EPISODE_SOURCES);
            let statuses = statuses
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let details = vec![
                ("source.ip".to_owned(), first.source_ip.clone()),
                ("events".to_owned(), requests.to_string()),
                ("first".to_owned(), time(first.time_ms)),
                ("last".to_owned(), time(last.time_ms)),
                ("products".to_owned(), products.join("; ")),
                ("answers".to_owned(), statuses.clone()),
                (
                    "outcome".to_owned(),
                    format!("every probe failed (the server answered {statuses}): one low episode for this source and day, not one alert per request"),
                ),
                (
                    "outcome_ja".to_owned(),
                    format!("すべての試行は失敗（サーバーの応答 {statuses}）。リクエストごとのアラートではなく、この送信元・この日について低レベルのエピソード1件"),
                ),
                (
                    "title_ja".to_owned(),
                    outcome::FAILED_PROBES_TITLE_JA.to_owned(),
                ),
            ];
            let source = if requests == 1 {
                first.origin.clone()
            } else {
                format!("{} … {}", first.origin, last.origin)
            };
            Row {
                timestamp: chrono::DateTime::from_timestamp_millis(first.time_ms),
                host: hosts.join(", "),
                source,
                rule_id: outcome::FAILED_PROBES_RULE_ID.to_owned(),
                rule_title: outcome::FAILED_PROBES_TITLE.to_owned(),
                level: Level::Low,
                tags: vec!["attack.initial-access".into(), "attack.t1190".into()],
                details,
                event: None,
                kind: timeline::RowKind::Detection,
                evidence: Some(serde_json::json!({
                    "first": first.origin,
                    "last": last.origin,
                    "count": requests,
                    "rules": rule_ids,
                    "hosts": hosts,
                    "sources": sources,
                    "sources_truncated": requests > EPISODE_SOURCES,
                })),
            }
        })
        .collect()
}

/// Most events an episode row lists in JSONL.
const EPISODE_SOURCES: usize = 100;

fn summary(
    reports: &[FileReport],
    walk_errors: &[mamori_ingest::ReadError],
    stats: &timeline::Stats,
    pack: &PackCounts,
    rule_files: usize,
    elapsed: std::time::Duration,
) {
    let mut e = std::io::stderr().lock();
    let mut by_format: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut events = 0u64;
    for r in reports {
        events += r.events;
        if let Some(f) = r.format {
            let x = by_format.entry(f.as_str()).or_default();
            x.0 += 1;
            x.1 += r.events;
        }
    }
    let _ = writeln!(
        e,
        "\nRules: {} loaded from {rule_files} files ({} correlations, {} filters), {} failed",
        pack.rules, pack.correlations, pack.filters, pack.failed
    );
    let _ = writeln!(e, "Events read: {events} from {} files", reports.len());
    for (f, (n, ev)) in &by_format {
        let _ = writeln!(e, "  {f:<12} {ev:>10} events in {n} files");
    }
    read_quality(&mut e, reports);
    let _ = writeln!(e, "Detections (alerts): {}", stats.total);
    for (l, n) in stats.by_level.iter().rev() {
        let _ = writeln!(e, "  {:<14} {n}", format!("{l} ({})", l.as_str_ja()));
    }
    let mut top: Vec<_> = stats
        .by_rule
        .iter()
        .map(|((t, l), n)| ((t.as_str(), *l), *n))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(b.0 .1.cmp(&a.0 .1)));
    if !top.is_empty() {
        let _ = writeln!(e, "Top rules:");
        for ((title, level), n) in top.iter().take(10) {
            let _ = writeln!(e, "  {n:>6}  [{level}] {title}");
        }
    }
    if stats.signals > 0 {
        // Signals add risk to an entity; they are not alerts (mamori-analytics::risk).
        let _ = writeln!(
            e,
            "Signals (add risk, not alerts / リスク加算のみ): {}",
            stats.signals
        );
        let mut sig: Vec<_> = stats.signals_by_rule.iter().collect();
        sig.sort_by(|a, b| b.1.cmp(a.1));
        for (title, n) in sig.iter().take(5) {
            let _ = writeln!(e, "  {n:>6}  {title}");
        }
    }
    let failed: Vec<&FileReport> = reports
        .iter()
        .filter(|r| r.skipped.is_some() || r.error_count > 0)
        .collect();
    if !failed.is_empty() || !walk_errors.is_empty() {
        let _ = writeln!(e, "Problems:");
        for w in walk_errors {
            let _ = writeln!(e, "  {w}");
        }
        for r in failed.iter().take(50) {
            if let Some(why) = &r.skipped {
                let _ = writeln!(e, "  {}: skipped: {why}", r.path.display());
            }
            for er in r.errors.iter().take(5) {
                let _ = writeln!(e, "  {er}");
            }
            if r.error_count > 5 {
                let _ = writeln!(
                    e,
                    "  {}: … {} more errors",
                    r.path.display(),
                    r.error_count - 5
                );
            }
        }
    }
    let secs = elapsed.as_secs_f64();
    let _ = writeln!(
        e,
        "Elapsed: {secs:.2}s ({:.0} events/s)",
        events as f64 / secs.max(1e-9)
    );
}

/// Most files listed one by one in the summary; the rest are counted.
const MAX_FILES_LISTED: usize = 50;

/// Per file: the format and why it was chosen, what was found inside, the lines not
/// understood, the expected fields missing, and warnings. Files with warnings or lines not
/// understood come first, so none of them is hidden behind the listing limit.
fn read_quality(e: &mut impl Write, reports: &[FileReport]) {
    let read: Vec<&FileReport> = reports.iter().filter(|r| r.format.is_some()).collect();
    if read.is_empty() {
        return;
    }
    let rank = |r: &FileReport| {
        if !r.warnings.is_empty() {
            0
        } else if r.unparsed > 0 || !r.missing.is_empty() {
            1
        } else {
            2
        }
    };
    let mut order = read.clone();
    order.sort_by_key(|r| rank(r));
    let unparsed: u64 = read.iter().map(|r| r.unparsed).sum();
    let with_unparsed = read.iter().filter(|r| r.unparsed > 0).count();
    let warnings: usize = read.iter().map(|r| r.warnings.len()).sum();
    let _ = writeln!(
        e,
        "Read quality: {unparsed} lines not understood in {with_unparsed} files, {warnings} warnings"
    );
    for r in order.iter().take(MAX_FILES_LISTED) {
        let format = match r.format {
            Some(_) if r.generic_text => "generic text",
            Some(f) => f.as_str(),
            None => "-",
        };
        let mut line = format!("  {}: {format}", r.path.display());
        if let Some(why) = &r.detected {
            line.push_str(&format!(" ({why})"));
        }
        line.push_str(&format!(", {} events", r.events));
        for (what, n) in &r.embedded {
            line.push_str(&format!(", read as {what}: {n}"));
        }
        if r.unparsed > 0 {
            line.push_str(&format!(", {} lines not understood", r.unparsed));
        }
        for (what, n) in &r.missing {
            line.push_str(&format!(", missing {what}: {n}"));
        }
        let _ = writeln!(e, "{line}");
        for w in &r.warnings {
            let _ = writeln!(e, "    warning: {w}");
        }
    }
    if order.len() > MAX_FILES_LISTED {
        let _ = writeln!(e, "  … {} more files", order.len() - MAX_FILES_LISTED);
    }
}
