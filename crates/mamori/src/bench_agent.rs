//! `mamori bench agent`: the agent's cost on a host — CPU and RSS while idle and while a log
//! grows by 5,000 lines/s — against `tail -F` following the same file in the same run (the
//! least any follower can do), with a real `mamori serve` receiving the batches.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::exit;

#[derive(Args, Debug)]
pub(crate) struct AgentBenchArgs {
    /// Seconds of the idle phase.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// Seconds of the burst phase.
    #[arg(long, default_value_t = 20)]
    burst_secs: u64,
    /// Lines per second during the burst.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
}

/// CPU seconds (user + system) of a process and its threads.
fn cpu_secs(pid: u32, tck: f64) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / tck)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn search_total(http: SocketAddr, token: &str, q: &str) -> Option<u64> {
    let mut c = TcpStream::connect(http).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        c,
        "GET /api/v1/search?limit=1&q={q} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    c.read_to_string(&mut body).ok()?;
    let json = &body[body.find("\r\n\r\n")? + 4..];
    serde_json::from_str::<serde_json::Value>(json).ok()?["total"].as_u64()
}

fn start_server(bin: &Path, dir: &Path) -> anyhow::Result<(Killed, SocketAddr, String)> {
    let cfg = dir.join("mamori.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[syslog]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("data").display().to_string()
        ),
    )?;
    let out = Command::new(bin)
        .args(["token", "create", "bench", "--config"])
        .arg(&cfg)
        .output()?;
    anyhow::ensure!(out.status.success(), "token create failed");
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
    let child = Killed(child);
    let mut http = None;
    let mut lines = BufReader::new(stderr).lines();
    while http.is_none() {
        let l = lines.next().context("the server did not start")??;
        if let Some(r) = l.strip_prefix("mamori: API on http://") {
            http = r.split('/').next().and_then(|a| a.parse().ok());
        } else if l.starts_with("error") {
            anyhow::bail!("server failed: {l}");
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok((child, http.context("http address")?, token))
}

pub(crate) fn run(a: AgentBenchArgs) -> anyhow::Result<i32> {
    let bin = std::env::current_exe()?;
    let tck = clock_ticks();
    let dir = tempfile::tempdir()?;
    let (_server, http, token) = start_server(&bin, dir.path())?;
    let store = mamori_server::open_state(&dir.path().join("data"))?;
    let enroll = mamori_server::agents::create_enroll_token(&store, Duration::from_secs(600))
        .map_err(anyhow::Error::msg)?;
    drop(store);
    let state = dir.path().join("agent");
    let cred = mamori_agent::client::enroll(
        &format!("http://{http}"),
        &enroll,
        &mamori_agent::client::Identity::of_this_host(Some("bench".into())),
        None,
        false,
        None,
    )?;
    cred.save(&state)?;
    let log = dir.path().join("app.log");
    std::fs::write(&log, "")?;
    let acfg = dir.path().join("agent.toml");
    std::fs::write(
        &acfg,
        format!(
            "state_dir = {:?}\n[[file]]\npaths = [{:?}]\n",
            state.display().to_string(),
            log.display().to_string()
        ),
    )?;
    let agent = Killed(
        Command::new(&bin)
            .args(["agent", "run", "--config"])
            .arg(&acfg)
            .env("MAMORI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let tail = Killed(
        Command::new("tail")
            .args(["-F", "-n", "0"])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("run `tail -F` (the baseline)")?,
    );
    let (ap, tp) = (agent.0.id(), tail.0.id());
    // Let both settle (the agent's first heartbeat, allocations).
    std::thread::sleep(Duration::from_secs(2));

    let measure = |secs: u64, work: &dyn Fn(Duration)| -> anyhow::Result<(f64, f64, f64)> {
        let (a0, t0) = (
            cpu_secs(ap, tck).context("agent cpu")?,
            cpu_secs(tp, tck).context("tail cpu")?,
        );
        let start = Instant::now();
        work(Duration::from_secs(secs));
        let wall = start.elapsed().as_secs_f64();
        let (a1, t1) = (
            cpu_secs(ap, tck).context("agent cpu")?,
            cpu_secs(tp, tck).context("tail cpu")?,
        );
        Ok(((a1 - a0) / wall * 100.0, (t1 - t0) / wall * 100.0, wall))
    };
    let rss = |pid: u32| crate::bench::proc_status_mib(&pid.to_string(), "VmRSS:").unwrap_or(0.0);

    eprintln!("idle phase: {} s", a.idle_secs);
    let (idle_agent, idle_tail, _) = measure(a.idle_secs, &|d| std::thread::sleep(d))?;
    let (idle_rss_agent, rss_tail) = (rss(ap), rss(tp));
    // Heap and stacks; the rest of the RSS is clean pages of the binary (shared, reclaimable).
    let idle_anon_agent = crate::bench::proc_status_mib(&ap.to_string(), "RssAnon:").unwrap_or(0.0);

    eprintln!("burst phase: {} lines/s for {} s", a.rate, a.burst_secs);
    let rate = a.rate;
    let written = std::sync::atomic::AtomicU64::new(0);
    let (burst_agent, burst_tail, wall) = measure(a.burst_secs, &|d| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < d {
            // 10 ms slices at the target rate.
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            let mut buf = String::new();
            while n < due {
                n += 1;
                buf.push_str(&format!(
                    "Dec  7 01:00:00 web01 app[42]: benchline request {n} served in 12 ms user=alice\n"
                ));
            }
            let _ = f.write_all(buf.as_bytes());
            std::thread::sleep(Duration::from_millis(10));
        }
        written.store(n, std::sync::atomic::Ordering::Relaxed);
    })?;
    let burst_rss_agent = rss(ap);
    let n = written.load(std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let mut delivered = 0;
    while t.elapsed() < Duration::from_secs(120) {
        delivered = search_total(http, &token, "benchline").unwrap_or(0);
        if delivered >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let ratio = |x: f64, base: f64| {
        if base > 0.0 {
            format!("{:.1}x tail -F", x / base)
        } else {
            "tail -F used no measurable CPU".to_owned()
        }
    };
    println!("mamori agent vs `tail -F` on the same file, same run ({} lines written in {wall:.1} s = {:.0}/s)", n, n as f64 / wall);
    println!(
        "  idle : agent {idle_agent:.2}% of one core ({}), RSS {idle_rss_agent:.1} MiB of which {idle_anon_agent:.1} MiB anonymous (tail -F {idle_tail:.2}%, {rss_tail:.1} MiB) — budget < 1 %, < 30 MiB",
        ratio(idle_agent, idle_tail)
    );
    println!(
        "  burst: agent {burst_agent:.2}% of one core ({}), RSS {burst_rss_agent:.1} MiB (tail -F {burst_tail:.2}%) — budget < 10 %",
        ratio(burst_agent, burst_tail)
    );
    println!(
        "  searchable on the server: {delivered} of {n} lines {:.1} s after the burst",
        t.elapsed().as_secs_f64()
    );
    Ok(exit::OK)
}
