//! `mamori bench`: throughput of the hot paths on real data, single thread.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;
use mamori_detect::{CompileOptions, RuleSet};
use mamori_event::Event;
use mamori_ingest::ReadOptions;

use crate::exit;
use crate::rules::{load_pack, load_placeholders};

#[derive(Subcommand, Debug)]
pub(crate) enum BenchCmd {
    /// Sigma matching throughput: µs/event and events/s on one core, compile time, memory,
    /// and how time grows with the number of rules.
    Rules {
        /// Rule files or directories.
        #[arg(short, long, required = true, num_args = 1.., value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// Events to match (any supported format; pre-flattened JSONL is typical).
        #[arg(short, long, required = true, value_name = "FILE")]
        events: PathBuf,
        /// Only rules whose logsource product is this (e.g. `windows`).
        #[arg(long, value_name = "PRODUCT")]
        product: Option<String>,
        /// Passes over the events (the figures are for the whole run).
        #[arg(long, default_value_t = 10)]
        repeat: usize,
        /// Also measure with 100 and 1,000 of the rules (evenly spaced through the set, so each
        /// subset has the same mix of logsources) to show how cost grows.
        #[arg(long)]
        scaling: bool,
        /// YAML file with values for `%placeholders%`.
        #[arg(long, value_name = "FILE")]
        placeholders: Option<PathBuf>,
    },
    /// The server end to end: syslog/TCP → durable store with the rules loaded; events/s at
    /// saturation and CPU per event by thread, RSS at a steady rate, receipt → alert latency
    /// p50/p99.
    Ingest(crate::bench_ingest::IngestArgs),
    /// Correlation under a flood of new groups: every failed login from a new address, at a
    /// steady rate, against a real `serve` process; events/s, RSS, CPU (issue #15 finding 3).
    DistinctSources(crate::bench_corr::DistinctArgs),
    /// Server time of the web console's pages (overview, alerts, search) with a full store:
    /// 1 M events and 10 k alerts by default.
    Console(crate::bench_console::ConsoleArgs),
    /// The monthly security audit over a month of `--events` events (aggregates synthesised
    /// into a fresh state.db): seconds and peak RSS against the goal (< 30 s, < 256 MiB).
    Report(crate::bench_report::ReportArgs),
    /// Evidence export and bundle verification of a large vault: peak memory and time per
    /// phase (issue #15 finding 10).
    VaultExport(crate::bench_vault::VaultExportArgs),
    /// The host agent: CPU and RSS idle and at 5,000 lines/s, against `tail -F` on the same
    /// file in the same run, with a real server receiving the batches.
    Agent(crate::bench_agent::AgentBenchArgs),
    /// Reader throughput per file (events/s and MiB/s), one thread.
    Readers {
        /// Files or directories to read.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

pub(crate) fn run(cmd: BenchCmd) -> anyhow::Result<i32> {
    match cmd {
        BenchCmd::Rules {
            rules,
            events,
            product,
            repeat,
            scaling,
            placeholders,
        } => bench_rules(
            &rules,
            &events,
            product.as_deref(),
            repeat.max(1),
            scaling,
            placeholders,
        ),
        BenchCmd::Ingest(a) => crate::bench_ingest::run(a),
        BenchCmd::DistinctSources(a) => crate::bench_corr::run(a),
        BenchCmd::Console(a) => crate::bench_console::run(a),
        BenchCmd::Report(a) => crate::bench_report::run(a),
        BenchCmd::VaultExport(a) => crate::bench_vault::run(a),
        BenchCmd::Agent(a) => crate::bench_agent::run(a),
        BenchCmd::Readers { paths } => {
            let (files, errs) = mamori_ingest::discover(&paths);
            for e in errs {
                eprintln!("warning: {e}");
            }
            let fig = mamori_ingest::measure_readers(&files, &ReadOptions::default());
            println!(
                "{} files, {} events, {:.1} MiB in {:.3}s: {:.0} events/s, {:.1} MiB/s ({} errors)",
                fig.files,
                fig.events,
                fig.bytes as f64 / 1048576.0,
                fig.elapsed.as_secs_f64(),
                fig.events_per_sec(),
                fig.mib_per_sec(),
                fig.errors
            );
            Ok(exit::OK)
        }
    }
}

/// `n` of `all` evenly spaced through it (all of them when `n` is its length): a subset with
/// the mix of the whole set, not the first folder's rules.
fn spread<T: Clone>(all: &[T], n: usize) -> Vec<T> {
    if n >= all.len() {
        return all.to_vec();
    }
    (0..n).map(|i| all[i * all.len() / n].clone()).collect()
}

/// CPU time of the calling thread in nanoseconds (Linux `schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// A memory line of `/proc/PID/status` (`VmRSS:`, `VmHWM:`…) in MiB; `pid` is a number or
/// `self` (Linux).
pub(crate) fn proc_status_mib(pid: &str, key: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Peak resident set size of this process.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    proc_status_mib("self", "VmHWM:")
}

fn bench_rules(
    rule_paths: &[PathBuf],
    events_path: &std::path::Path,
    product: Option<&str>,
    repeat: usize,
    scaling: bool,
    placeholders: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let ph = load_placeholders(placeholders.as_deref())?;
    let t0 = Instant::now();
    let (mut pack, files) = load_pack(rule_paths, &ph)?;
    if let Some(p) = product {
        pack.rules
            .retain(|r| r.logsource.product.as_deref() == Some(p));
        pack.correlations.clear();
        pack.filters.clear();
    }
    let parse_s = t0.elapsed().as_secs_f64();

    let mut events: Vec<Event> = Vec::new();
    let report = mamori_ingest::read_file(events_path, &ReadOptions::default(), &mut |e| {
        events.push(e)
    });
    if events.is_empty() {
        anyhow::bail!(
            "no events read from {}: {}",
            events_path.display(),
            report.skipped.unwrap_or_else(|| "empty".into())
        );
    }
    println!(
        "rules: {} loaded from {files} files ({} failed), parsed in {parse_s:.2}s",
        pack.rules.len(),
        pack.failures.len()
    );
    println!("events: {} from {}", events.len(), events_path.display());

    let mut sizes = vec![pack.rules.len()];
    if scaling {
        sizes = [100usize, 1000, pack.rules.len()]
            .into_iter()
            .filter(|n| *n <= pack.rules.len())
            .collect();
    }
    let all_rules = std::mem::take(&mut pack.rules);
    let mut baseline: Option<f64> = None;
    for n in sizes {
        pack.rules = spread(&all_rules, n);
        let t = Instant::now();
        let set = RuleSet::compile(&pack, &CompileOptions::default());
        let compile_s = t.elapsed().as_secs_f64();
        let mut scratch = set.scratch();
        let mut out = Vec::new();
        let mut matches = 0usize;
        // Warm-up pass (not timed).
        for e in &events {
            out.clear();
            set.matches(e, &mut scratch, &mut out);
        }
        let t = Instant::now();
        let cpu0 = thread_cpu_ns();
        for _ in 0..repeat {
            for e in &events {
                out.clear();
                set.matches(e, &mut scratch, &mut out);
                matches += out.len();
            }
        }
        // CPU time of this thread when the kernel reports it (a shared machine's other load
        // does not count), wall time otherwise.
        let secs = match (cpu0, thread_cpu_ns()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => t.elapsed().as_secs_f64(),
        };
        let total = (events.len() * repeat) as f64;
        let us = secs * 1e6 / total;
        let ratio = baseline.map(|b| us / b);
        baseline.get_or_insert(us);
        println!(
            "{n:>5} rules: compile {compile_s:.2}s, {} predicates | {us:.3} µs/event, {:.0} events/s/core | matches per pass {}{}",
            set.predicate_count(),
            total / secs,
            matches / repeat,
            ratio.map(|r| format!(" | {r:.2}× the {}-rule time", 100.min(all_rules.len()))).unwrap_or_default()
        );
    }
    if let Some(rss) = peak_rss_mib() {
        println!(
            "peak RSS: {rss:.1} MiB (rules + {} events held in memory)",
            events.len()
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    #[test]
    fn spread_takes_evenly_spaced_items() {
        let all: Vec<usize> = (0..10).collect();
        assert_eq!(super::spread(&all, 3), vec![0, 3, 6]);
        assert_eq!(super::spread(&all, 10), all);
        assert_eq!(super::spread(&all, 20), all);
        assert!(super::spread(&all, 0).is_empty());
    }
}
