//! `mamori bench ingest`: the server end to end on this machine — syslog over TCP into durable
//! storage with the rules loaded — in two phases:
//!
//! 1. **saturation**: several connections send as fast as they can; the figure is events
//!    durably stored per second (the load generator shares the machine, so it is conservative),
//!    and the CPU time per stored event by thread (tantivy indexing and merging, the writer,
//!    detection, the receiving runtime): on a shared machine whose speed varies from run to
//!    run, where the time goes is steadier than the rate;
//! 2. **steady rate** (default 10,000 events/s): resident memory at that rate, and receipt →
//!    alert latency of SSH brute-force bursts mixed into the background (each from a new
//!    address so each raises a new alert), measured inside the server from the moment the
//!    batch was read off the socket to the moment the alert was recorded.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use mamori_server::ServerConfig;
use mamori_store::FsyncPolicy;

use crate::exit;

#[derive(Args, Debug)]
pub(crate) struct IngestArgs {
    /// Rule files or directories to load (e.g. SigmaHQ's rules plus ./rules).
    #[arg(short, long, num_args = 1.., value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sender connections in the saturation phase.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Events per second in the steady phase.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// fsync policy: always (default, as shipped), never.
    #[arg(long, default_value = "always")]
    fsync: String,
    /// Skip the saturation phase.
    #[arg(long)]
    no_saturation: bool,
    /// Keep the data directory here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Only measure saturation with the activity aggregates (`[sources]`) off and on, in
    /// alternating rounds of the same run, and print the ratio.
    #[arg(long)]
    compare_sources: bool,
    /// Rounds of off/on for --compare-sources.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// `[storage] index_heap_bytes` of the server (default: the server's default).
    #[arg(long, value_name = "BYTES")]
    index_heap_bytes: Option<usize>,
    /// `[storage] index_merge_max_docs` of the server (default: the server's default).
    #[arg(long, value_name = "N")]
    index_merge_max_docs: Option<u64>,
}

fn attack_burst(n: u64) -> String {
    let ip = format!("203.0.{}.{}", (n / 250) % 250, n % 250 + 1);
    (0..12)
        .map(|i| {
            format!(
                "<38>Nov 23 10:01:{i:02} web01 sshd[9{i}]: Failed password for invalid user u{i} from {ip} port {} ssh2\n",
                50000 + i
            )
        })
        .collect()
}

/// CPU time (user + system) in clock ticks from a `/proc/.../stat` line, with its `comm`.
fn stat_ticks(stat: &str) -> Option<(&str, u64)> {
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses; it ends at the last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // utime and stime (fields 14 and 15) are 11 and 12 places after the state (field 3).
    let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((stat.get(open + 1..close)?, ticks(11)? + ticks(12)?))
}

/// CPU ticks of the whole process (dead threads included) and of each live thread, by
/// (name, tid). The saturation phase's senders are threads of this process too.
struct CpuSnapshot {
    process: u64,
    threads: std::collections::BTreeMap<(String, u64), u64>,
}

fn cpu_snapshot() -> CpuSnapshot {
    let process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_ticks(&s).map(|(_, t)| t))
        .unwrap_or(0);
    let mut threads = std::collections::BTreeMap::new();
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        if let Some((comm, ticks)) = stat_ticks(&stat) {
            // One name per pool: `merge_thread_0`, `merge_thread_1` → `merge_thread_`.
            let comm = comm
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .to_string();
            let tid = t.file_name().to_string_lossy().parse().unwrap_or(0);
            threads.insert((comm, tid), ticks);
        }
    }
    CpuSnapshot { process, threads }
}

/// Prints CPU µs per stored event, in all and by thread, between two snapshots. Threads that
/// ended in between are only in the process total: the senders (`sender_ticks`, measured by
/// themselves) and tantivy's indexing threads, which it starts anew at every commit.
fn print_cpu_per_event(before: &CpuSnapshot, after: &CpuSnapshot, sender_ticks: u64, events: u64) {
    let hz = 100.0; // USER_HZ: 100 on every Linux architecture Mamori builds for.
    let mut groups: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for ((comm, tid), &t) in &after.threads {
        let t0 = before
            .threads
            .get(&(comm.clone(), *tid))
            .copied()
            .unwrap_or(0);
        let name = match comm.as_str() {
            "mamori" => "bench main",
            "thrd-tantivy-in" => "tantivy indexing",
            "merge_thread_" => "tantivy merges",
            other => other,
        };
        *groups.entry(name).or_default() += t.saturating_sub(t0);
    }
    let total = after.process.saturating_sub(before.process);
    let live: u64 = groups.values().sum();
    *groups.entry("bench senders").or_default() += sender_ticks;
    *groups.entry("tantivy indexing").or_default() += total.saturating_sub(live + sender_ticks);
    let per = |ticks: u64| ticks as f64 / hz * 1e6 / events.max(1) as f64;
    let mut rows: Vec<(&str, u64)> = groups.into_iter().filter(|(_, t)| *t > 0).collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    let parts: Vec<String> = rows
        .iter()
        .map(|(name, t)| format!("{name} {:.1}", per(*t)))
        .collect();
    println!(
        "CPU per stored event: {:.1} µs in all ({})",
        per(total),
        parts.join(", ")
    );
}

fn rss_mib() -> Option<f64> {
    crate::bench::proc_status_mib("self", "VmRSS:")
}

/// Resident memory split as the kernel counts it: anonymous (heap, stacks) and file-backed
/// (mapped index segments and binaries), in MiB.
fn rss_split_mib() -> (f64, f64) {
    let get = |k| crate::bench::proc_status_mib("self", k).unwrap_or(0.0);
    (get("RssAnon:"), get("RssFile:") + get("RssShmem:"))
}

/// CPU ticks of the calling thread.
fn own_ticks() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| stat_ticks(&s).map(|(_, t)| t))
        .unwrap_or(0)
}

/// `conns` connections send pre-rendered syslog lines to `addr` as fast as they can for `dur`;
/// returns the number of lines sent and the CPU ticks the senders used.
fn saturate(addr: SocketAddr, conns: usize, dur: Duration) -> anyhow::Result<(u64, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..conns)
        .map(|c| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
                let t0 = own_ticks();
                let mut s = TcpStream::connect(addr)?;
                // Pre-render a block of lines; send it over and over.
                let block: String = (0..4096u64)
                    .map(|i| mamori_sim::load::fleet_syslog_line(i * 7 + c as u64) + "\n")
                    .collect();
                let mut sent = 0;
                while !stop.load(Relaxed) {
                    s.write_all(block.as_bytes())?;
                    sent += 4096;
                }
                Ok((sent, own_ticks().saturating_sub(t0)))
            })
        })
        .collect();
    if conns > 0 {
        std::thread::sleep(dur);
    }
    stop.store(true, Relaxed);
    let (mut sent, mut ticks) = (0, 0);
    for s in senders {
        let (n, t) = s.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        sent += n;
        ticks += t;
    }
    Ok((sent, ticks))
}

/// The baseline of the same run: the same load generator into a loopback listener that only
/// reads and counts lines — what this machine's loopback and generator allow at most.
fn baseline(conns: usize, dur: Duration) -> anyhow::Result<f64> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let readers = std::thread::spawn(move || {
        let mut handles = Vec::new();
        for s in l.incoming().take(conns) {
            let Ok(mut s) = s else { continue };
            handles.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut lines = 0u64;
                while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                }
                lines
            }));
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .sum::<u64>()
    });
    let start = Instant::now();
    saturate(addr, conns, dur)?;
    let secs = start.elapsed().as_secs_f64();
    let lines = readers
        .join()
        .map_err(|_| anyhow::anyhow!("baseline reader panicked"))?;
    Ok(lines as f64 / secs)
}

pub(crate) fn run(args: IngestArgs) -> anyhow::Result<i32> {
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("data"));
    let mut cfg = ServerConfig {
        data_dir: data,
        ..ServerConfig::default()
    };
    cfg.syslog.udp = None;
    cfg.syslog.tcp = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.http.listen = None;
    cfg.detection.rules = args.rules.clone();
    cfg.detection.reload_interval_secs = 0;
    cfg.storage.fsync = match args.fsync.as_str() {
        "always" => FsyncPolicy::Always,
        "never" => FsyncPolicy::Never,
        other => anyhow::bail!("unknown fsync policy `{other}` (always, never)"),
    };
    if let Some(b) = args.index_heap_bytes {
        cfg.storage.index_heap_bytes = b;
    }
    if let Some(n) = args.index_merge_max_docs {
        cfg.storage.index_merge_max_docs = n;
    }
    cfg.validate(std::path::Path::new("(bench)"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.compare_sources {
        return compare_sources(&args, cfg, &rt);
    }
    let rss_idle_before = rss_mib();
    let t_load = Instant::now();
    let server = rt.block_on(mamori_server::start(cfg))?;
    let load_secs = t_load.elapsed().as_secs_f64();
    let addr = server.syslog_tcp.context("no TCP listener")?;
    let m = Arc::clone(&server.metrics);
    let rules = server.rules.as_ref().map(|r| r.report());
    eprintln!(
        "server up in {load_secs:.1}s: {} rules, {} correlations; RSS {:.0} MiB (process before start {:.0} MiB)",
        rules.as_ref().map_or(0, |r| r.rules),
        rules.as_ref().map_or(0, |r| r.correlations),
        rss_mib().unwrap_or(0.0),
        rss_idle_before.unwrap_or(0.0)
    );

    // Phase 1: saturation.
    let dur = Duration::from_secs(args.seconds.max(1));
    let start = Instant::now();
    let stored0 = m.events_stored.load(Relaxed);
    let cpu0 = cpu_snapshot();
    let conns = if args.no_saturation {
        0
    } else {
        args.connections.max(1)
    };
    let (sent, sender_ticks) = saturate(addr, conns, dur)?;
    let stored_at_stop = m.events_stored.load(Relaxed) - stored0;
    let secs = start.elapsed().as_secs_f64();
    // Let the queue drain to report what was accepted in the end.
    let drain_start = Instant::now();
    while m.events_stored.load(Relaxed) - stored0 < sent && drain_start.elapsed() < dur * 3 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stored = m.events_stored.load(Relaxed) - stored0;
    let cpu1 = cpu_snapshot();
    let rss_sat = rss_mib().unwrap_or(0.0);
    let (anon_sat, file_sat) = rss_split_mib();
    let rate_stored = stored_at_stop as f64 / secs;
    if conns > 0 {
        let base = baseline(conns, dur)?;
        println!(
            "baseline (same run): the generator into a loopback reader that only counts lines: {base:.0} lines/s; the server stores {:.4}× that (1/{:.0})",
            rate_stored / base,
            base / rate_stored.max(1.0)
        );
    }
    println!(
        "saturation: {:.0} events/s durably stored with the rules loaded ({} connections, {:.1}s, {} sent, {} stored; RSS {:.0} MiB: anonymous {:.0}, file-backed {:.0})",
        rate_stored,
        args.connections,
        secs,
        sent,
        stored,
        rss_sat,
        anon_sat,
        file_sat
    );
    if conns > 0 {
        print_cpu_per_event(&cpu0, &cpu1, sender_ticks, stored);
    }

    // Phase 2: steady rate with attack bursts.
    m.reset_latency();
    let rate = args.rate.max(100);
    let mut s = TcpStream::connect(addr)?;
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let start = Instant::now();
    let mut i = 0u64;
    let mut bursts = 0u64;
    let mut next = Instant::now();
    let mut peak_rss: f64 = 0.0;
    let (mut peak_anon, mut peak_file) = (0.0f64, 0.0f64);
    while start.elapsed() < dur {
        let mut chunk = String::with_capacity(per_tick as usize * 160);
        for _ in 0..per_tick {
            chunk.push_str(&mamori_sim::load::fleet_syslog_line(i));
            chunk.push('\n');
            i += 1;
        }
        // A brute-force burst every 200 ms, each from a new address.
        if i % (rate / 5).max(1) < per_tick {
            chunk.push_str(&attack_burst(bursts));
            bursts += 1;
        }
        s.write_all(chunk.as_bytes())?;
        next += tick;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        peak_rss = peak_rss.max(rss_mib().unwrap_or(0.0));
        let (anon, file) = rss_split_mib();
        (peak_anon, peak_file) = (peak_anon.max(anon), peak_file.max(file));
    }
    let steady_secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let lat = m.latency_percentiles();
    println!(
        "steady: {:.0} events/s for {:.1}s, RSS peak {:.0} MiB (anonymous peak {:.0}, file-backed peak {:.0}; VmHWM {:.0}), {} brute-force bursts",
        i as f64 / steady_secs,
        steady_secs,
        peak_rss,
        peak_anon,
        peak_file,
        crate::bench::proc_status_mib("self", "VmHWM:").unwrap_or(0.0),
        bursts
    );
    match lat {
        Some((p50, p99, n)) => println!(
            "latency receipt → alert: p50 {:.1} ms, p99 {:.1} ms over {n} alerts",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        ),
        None => println!("latency: no alert was raised (are the rules loaded? pass --rules rules)"),
    }
    println!(
        "store: {} writes, {:.2} ms per write (fsync {}); matching {:.2} µs/event",
        m.store_writes.load(Relaxed),
        m.store_write_micros.load(Relaxed) as f64
            / 1e3
            / m.store_writes.load(Relaxed).max(1) as f64,
        args.fsync,
        m.match_micros.load(Relaxed) as f64 / m.events_matched.load(Relaxed).max(1) as f64
    );
    rt.block_on(server.shutdown());
    Ok(exit::OK)
}

/// Saturation throughput with the activity aggregates off and on, alternating `rounds` times
/// in one run (so drift of a shared machine hits both), each on a fresh data directory.
fn compare_sources(
    args: &IngestArgs,
    cfg: ServerConfig,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<i32> {
    let dur = Duration::from_secs(args.seconds.max(1));
    let conns = args.connections.max(1);
    let base_dir = cfg.data_dir.clone();
    let mut ratios = Vec::new();
    let (mut sum_off, mut sum_on) = (0.0, 0.0);
    for round in 0..args.rounds.max(1) {
        let mut pair = [0.0f64; 2];
        for (i, on) in [false, true].into_iter().enumerate() {
            let mut c = cfg.clone();
            c.sources.enabled = on;
            c.data_dir = base_dir.join(format!("round{round}-{}", if on { "on" } else { "off" }));
            let server = rt.block_on(mamori_server::start(c.clone()))?;
            let addr = server.syslog_tcp.context("no TCP listener")?;
            let m = Arc::clone(&server.metrics);
            let stored0 = m.events_stored.load(Relaxed);
            let start = Instant::now();
            saturate(addr, conns, dur)?;
            let stored = m.events_stored.load(Relaxed) - stored0;
            pair[i] = stored as f64 / start.elapsed().as_secs_f64();
            rt.block_on(server.shutdown());
            let _ = std::fs::remove_dir_all(&c.data_dir);
            println!(
                "round {round}: aggregates {}: {:.0} events/s stored",
                if on { "on " } else { "off" },
                pair[i]
            );
        }
        sum_off += pair[0];
        sum_on += pair[1];
        ratios.push(pair[1] / pair[0].max(1.0));
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "aggregates on / off (same run, {} rounds): median ratio {median:.3}, ratio of means {:.3}",
        ratios.len(),
        sum_on / sum_off.max(1.0)
    );
    Ok(exit::OK)
}
