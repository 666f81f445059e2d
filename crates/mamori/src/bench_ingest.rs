//! `mamori bench ingest`: the server end to end on this machine — syslog over TCP into durable
//! storage with the rules loaded — in two phases:
//!
//! 1. **saturation**: several connections send as fast as they can; the figure is events
//!    durably stored per second (the load generator shares the machine, so it is conservative);
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
}

/// Background lines: the mix a Linux fleet sends (sshd, sudo, cron, systemd, kernel).
fn background_line(i: u64) -> String {
    let host = format!("srv{:02}", i % 40);
    let sec = i % 60;
    match i % 8 {
        0 => format!("<86>Nov 23 10:00:{sec:02} {host} sshd[{p}]: Accepted publickey for deploy from 10.0.{a}.{b} port {port} ssh2: ED25519 SHA256:abcdef", p = 1000 + i % 5000, a = i % 200, b = i % 250, port = 30000 + i % 30000),
        1 => format!("<85>Nov 23 10:00:{sec:02} {host} sudo:   deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/systemctl restart app{}", i % 9),
        2 => format!("<78>Nov 23 10:00:{sec:02} {host} CRON[{p}]: (root) CMD (/usr/local/bin/backup.sh --incremental)", p = 2000 + i % 3000),
        3 => format!("<30>Nov 23 10:00:{sec:02} {host} systemd[1]: Started Session {} of User deploy.", i % 100_000),
        4 => format!("<4>Nov 23 10:00:{sec:02} {host} kernel: [UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.{} DST=10.0.0.5 PROTO=TCP SPT={} DPT=23", i % 250, 40000 + i % 20000),
        5 => format!("<86>Nov 23 10:00:{sec:02} {host} sshd[{p}]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)", p = 1000 + i % 5000),
        6 => format!("<14>1 2026-11-23T10:00:{sec:02}.123Z {host} app 4242 ID47 - request id={i} path=/api/orders status=200 ms=12"),
        _ => format!("<38>Nov 23 10:00:{sec:02} {host} sshd[{p}]: Connection closed by 10.0.{a}.{b} port {port} [preauth]", p = 1000 + i % 5000, a = i % 200, b = i % 250, port = 30000 + i % 30000),
    }
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

fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// `conns` connections send pre-rendered syslog lines to `addr` as fast as they can for `dur`;
/// returns the number of lines sent.
fn saturate(addr: SocketAddr, conns: usize, dur: Duration) -> anyhow::Result<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..conns)
        .map(|c| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let mut s = TcpStream::connect(addr)?;
                // Pre-render a block of lines; send it over and over.
                let block: String = (0..4096u64)
                    .map(|i| background_line(i * 7 + c as u64) + "\n")
                    .collect();
                let mut sent = 0;
                while !stop.load(Relaxed) {
                    s.write_all(block.as_bytes())?;
                    sent += 4096;
                }
                Ok(sent)
            })
        })
        .collect();
    if conns > 0 {
        std::thread::sleep(dur);
    }
    stop.store(true, Relaxed);
    let mut sent = 0;
    for s in senders {
        sent += s.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    Ok(sent)
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
    cfg.validate(std::path::Path::new("(bench)"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
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
    let conns = if args.no_saturation {
        0
    } else {
        args.connections.max(1)
    };
    let sent = saturate(addr, conns, dur)?;
    let stored_at_stop = m.events_stored.load(Relaxed) - stored0;
    let secs = start.elapsed().as_secs_f64();
    // Let the queue drain to report what was accepted in the end.
    let drain_start = Instant::now();
    while m.events_stored.load(Relaxed) - stored0 < sent && drain_start.elapsed() < dur * 3 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stored = m.events_stored.load(Relaxed) - stored0;
    let rss_sat = rss_mib().unwrap_or(0.0);
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
        "saturation: {:.0} events/s durably stored with the rules loaded ({} connections, {:.1}s, {} sent, {} stored; RSS {:.0} MiB)",
        rate_stored,
        args.connections,
        secs,
        sent,
        stored,
        rss_sat
    );

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
    while start.elapsed() < dur {
        let mut chunk = String::with_capacity(per_tick as usize * 160);
        for _ in 0..per_tick {
            chunk.push_str(&background_line(i));
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
    }
    let steady_secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let lat = m.latency_percentiles();
    println!(
        "steady: {:.0} events/s for {:.1}s, RSS peak {:.0} MiB, {} brute-force bursts",
        i as f64 / steady_secs,
        steady_secs,
        peak_rss,
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
