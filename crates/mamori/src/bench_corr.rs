//! `mamori bench distinct-sources`: the correlation soak of issue #15 finding 3 — syslog at a
//! steady rate where every failed SSH login comes from a new random address (each one a new
//! correlation group), against a real `mamori serve` process (this binary, or `--server BIN`
//! to measure another build in the same run). The same-run baseline is the same load from one
//! address (one group). Reports events/s sent and run through detection, the backlog left,
//! the server's RSS (end and peak) and CPU, and its correlation group count.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::exit;

#[derive(Args, Debug)]
pub(crate) struct DistinctArgs {
    /// Rule files or directories the server loads.
    #[arg(short, long, num_args = 1.., value_name = "PATH", default_value = "rules")]
    rules: Vec<PathBuf>,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Failed logins per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// The `mamori` binary to run as the server (default: this one).
    #[arg(long, value_name = "BIN")]
    server: Option<PathBuf>,
    /// Skip the one-address baseline phase.
    #[arg(long)]
    no_baseline: bool,
    /// Seconds of the baseline phase (default: as `--seconds`), e.g. a short baseline before
    /// a 10-minute soak.
    #[arg(long, value_name = "SECS")]
    baseline_seconds: Option<u64>,
    /// `[detection] max_correlation_groups` of the server (default: the server's default).
    #[arg(long, value_name = "N")]
    max_correlation_groups: Option<usize>,
    /// `[storage] index_heap_bytes` of the server (default: the server's default).
    #[arg(long, value_name = "BYTES")]
    index_heap_bytes: Option<usize>,
    /// `[storage] index_merge_max_docs` of the server (default: the server's default).
    #[arg(long, value_name = "N")]
    index_merge_max_docs: Option<u64>,
}

struct Served {
    child: Child,
    tcp: SocketAddr,
    http: SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, args: &DistinctArgs) -> anyhow::Result<Served> {
    let (rules, max_groups) = (&args.rules, args.max_correlation_groups);
    let mut storage = String::new();
    if let Some(b) = args.index_heap_bytes {
        storage.push_str(&format!("index_heap_bytes = {b}\n"));
    }
    if let Some(n) = args.index_merge_max_docs {
        storage.push_str(&format!("index_merge_max_docs = {n}\n"));
    }
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("mamori.toml");
    let rules: Vec<String> = rules
        .iter()
        .map(|r| std::fs::canonicalize(r).map(|p| format!("{:?}", p.display().to_string())))
        .collect::<Result<_, _>>()
        .context("rule path")?;
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[syslog]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [detection]\nrules = [{}]\nreload_interval_secs = 0\n{}[storage]\n{storage}",
            dir.path().join("data").display().to_string(),
            rules.join(", "),
            max_groups.map_or(String::new(), |n| format!("max_correlation_groups = {n}\n"))
        ),
    )?;
    let out = Command::new(bin)
        .args(["token", "create", "bench", "--config"])
        .arg(&cfg)
        .output()
        .context("run the server binary")?;
    anyhow::ensure!(
        out.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("MAMORI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start the server")?;
    let stderr = child.stderr.take().context("server stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let (mut tcp, mut http) = (None, None);
    while tcp.is_none() || http.is_none() {
        let l = rx
            .recv_timeout(Duration::from_secs(120))
            .context("the server did not start")?;
        if let Some(r) = l.strip_prefix("mamori: API on http://") {
            http = r.split('/').next().and_then(|a| a.parse().ok());
        } else if l.starts_with("mamori: syslog TCP on ") {
            tcp = l.rsplit(' ').next().and_then(|a| a.parse().ok());
        } else if l.starts_with("error") {
            anyhow::bail!("server failed: {l}");
        }
    }
    // Keep draining the server's log.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Ok(Served {
        child,
        tcp: tcp.context("tcp")?,
        http: http.context("http")?,
        token,
        _dir: dir,
    })
}

/// One `/metrics` value (the first line that starts with `name `).
fn metric(s: &Served, name: &str) -> Option<f64> {
    let mut c = TcpStream::connect(s.http).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        c,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        s.token
    )
    .ok()?;
    let mut body = String::new();
    std::io::Read::read_to_string(&mut c, &mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn proc_status(pid: u32, key: &str) -> Option<f64> {
    crate::bench::proc_status_mib(&pid.to_string(), key)
}

/// CPU seconds (user + system) of a process.
fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn phase(bin: &Path, args: &DistinctArgs, seconds: u64, distinct: bool) -> anyhow::Result<()> {
    let srv = start(bin, args)?;
    let pid = srv.child.id();
    let rss0 = proc_status(pid, "VmRSS:").unwrap_or(0.0);
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    let matched0 = metric(&srv, "mamori_events_matched_total").unwrap_or(0.0);
    let mut conn = TcpStream::connect(srv.tcp)?;
    let rate = args.rate.max(100);
    let per_tick = rate / 100;
    let dur = Duration::from_secs(seconds.max(1));
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut sent = 0u64;
    let start_t = Instant::now();
    let mut next = Instant::now();
    let mut peak = rss0;
    let mut peak_anon = proc_status(pid, "RssAnon:").unwrap_or(0.0);
    let mut last_report = Instant::now();
    let mut last_line = Instant::now();
    while start_t.elapsed() < dur {
        let now = chrono::Utc::now().format("%b %e %H:%M:%S").to_string();
        let mut chunk = String::with_capacity(per_tick as usize * 120);
        for _ in 0..per_tick {
            let ip = if distinct {
                // xorshift64*: a new pseudo-random public-looking address per failure.
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
                format!(
                    "{}.{}.{}.{}",
                    11 + (r >> 56) % 200,
                    (r >> 48) & 255,
                    (r >> 40) & 255,
                    1 + ((r >> 32) & 253)
                )
            } else {
                "203.0.113.9".to_owned()
            };
            chunk.push_str(&format!(
                "<38>{now} web01 sshd[{}]: Failed password for invalid user u{} from {ip} port {} ssh2\n",
                sent % 30000,
                sent % 97,
                1024 + sent % 60000
            ));
            sent += 1;
        }
        conn.write_all(chunk.as_bytes())?;
        next += Duration::from_millis(10);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            peak = peak.max(proc_status(pid, "VmRSS:").unwrap_or(0.0));
            peak_anon = peak_anon.max(proc_status(pid, "RssAnon:").unwrap_or(0.0));
        }
        // A timeline of the memory: what grows with time (anonymous: heap; file: the index's
        // mapped segments) and the capped state beside it.
        if last_line.elapsed() >= Duration::from_secs(30) {
            last_line = Instant::now();
            eprintln!("{}", memory_line(&srv, pid, start_t.elapsed().as_secs()));
        }
    }
    eprintln!("{}", memory_line(&srv, pid, start_t.elapsed().as_secs()));
    let secs = start_t.elapsed().as_secs_f64();
    let anon = proc_status(pid, "RssAnon:").unwrap_or(0.0);
    let file = proc_status(pid, "RssFile:").unwrap_or(0.0);
    let matched_at_stop = metric(&srv, "mamori_events_matched_total").unwrap_or(0.0) - matched0;
    let cpu = cpu_secs(pid).unwrap_or(0.0) - cpu0;
    let rss = proc_status(pid, "VmRSS:").unwrap_or(0.0);
    let hwm = proc_status(pid, "VmHWM:").unwrap_or(0.0);
    let groups = metric(&srv, "mamori_correlation_groups");
    let evicted = metric(
        &srv,
        "mamori_correlation_dropped_total{reason=\"group_evicted\"}",
    );
    let episodes = metric(&srv, "mamori_correlation_state_pressure_episodes_total");
    println!(
        "{} ({}): sent {:.0} events/s (target {rate}), detection {:.0} events/s, backlog at stop {:.0}; RSS {:.0} MiB at end (anonymous {anon:.0}, file-backed {file:.0}), peak {:.0} MiB (VmHWM {:.0}, anonymous peak {peak_anon:.0}); server CPU {:.2} s per 1k events; correlation groups {} (evicted {}, state-pressure alerts {})",
        if distinct { "every failure from a new address" } else { "baseline: one address" },
        bin.display(),
        sent as f64 / secs,
        matched_at_stop / secs,
        sent as f64 - matched_at_stop,
        rss,
        peak.max(rss),
        hwm,
        cpu / (matched_at_stop.max(1.0) / 1000.0),
        groups.map_or("n/a".to_owned(), |g| format!("{g:.0}")),
        evicted.map_or("n/a".to_owned(), |g| format!("{g:.0}")),
        episodes.map_or("n/a".to_owned(), |g| format!("{g:.0}"))
    );
    Ok(())
}

/// `t=…s RSS … (anon …, file …); correlation groups …; state entries {structure=n/limit}`.
fn memory_line(srv: &Served, pid: u32, t: u64) -> String {
    let mib = |k| proc_status(pid, k).unwrap_or(0.0);
    let mut line = format!(
        "  t={t}s RSS {:.0} MiB (anon {:.0}, file {:.0}); correlation groups {}",
        mib("VmRSS:"),
        mib("RssAnon:"),
        mib("RssFile:"),
        metric(srv, "mamori_correlation_groups").map_or("n/a".into(), |g| format!("{g:.0}"))
    );
    for s in mamori_server::pressure::Capped::ALL.map(|c| c.label()) {
        let e = metric(srv, &format!("mamori_state_entries{{structure=\"{s}\"}}"));
        let l = metric(srv, &format!("mamori_state_limit{{structure=\"{s}\"}}"));
        if let (Some(e), Some(l)) = (e, l) {
            line.push_str(&format!("; {s} {e:.0}/{l:.0}"));
        }
    }
    line
}

pub(crate) fn run(args: DistinctArgs) -> anyhow::Result<i32> {
    let bin = match &args.server {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("own path")?,
    };
    if !args.no_baseline {
        phase(
            &bin,
            &args,
            args.baseline_seconds.unwrap_or(args.seconds),
            false,
        )?;
    }
    phase(&bin, &args, args.seconds, true)?;
    Ok(exit::OK)
}
