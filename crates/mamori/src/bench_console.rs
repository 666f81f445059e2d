//! `mamori bench console`: server time of the console's pages with a full store (issue #17:
//! overview, alerts and search in < 300 ms with 1 M events and 10 k alerts).
//!
//! Fills a data directory (once; `--data-dir` keeps it for the next run) with syslog events
//! parsed by the real reader into the real embedded store, and alerts into the real SQLite
//! alert store; then starts the real server on it, signs in through the console's form and
//! times each request a page makes over loopback (page shell + the API calls its script makes),
//! as medians over `--repeat` runs. The baseline, measured in the same run, is
//! `GET /api/v1/health`: figures are also given as multiples of it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mamori_event::{Interner, Level, Origin, RuleId, Transport};
use mamori_store::{
    AlertStore, EmbeddedConfig, EmbeddedEventStore, EventStore, FsyncPolicy, NewAlert,
};

use crate::exit;

#[derive(Args, Debug)]
pub(crate) struct ConsoleArgs {
    /// Events in the store.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Alerts in the alert store (spread over the last 24 hours).
    #[arg(long, default_value_t = 10_000)]
    alerts: u64,
    /// Keep the data here (filled on the first run, reused after); default: a temporary folder.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Timed runs per request (the median is reported).
    #[arg(long, default_value_t = 15)]
    repeat: usize,
}

const PASSWORD: &str = "bench password 0123456789";
const TARGET_MS: f64 = 300.0;

/// Event `i` of `n`, its syslog time spread over the last 24 hours (the search page's
/// default range), so a 24-hour search matches every stored event: the worst case.
fn line(i: u64, n: u64, now: DateTime<Utc>) -> String {
    let t = now - TimeDelta::seconds(((n - i) as i64 * 86_400) / n.max(1) as i64);
    let ts = t.format("%b %e %H:%M:%S");
    let host = format!("srv{:02}", i % 40);
    let ip = format!("198.51.{}.{}", (i / 250) % 250, i % 250);
    match i % 4 {
        0 => format!("<38>{ts} {host} sshd[{}]: Failed password for invalid user u{} from {ip} port {} ssh2", 1000 + i % 5000, i % 997, 40000 + i % 20000),
        1 => format!("<38>{ts} {host} sshd[{}]: Accepted publickey for deploy from {ip} port {} ssh2", 1000 + i % 5000, 40000 + i % 20000),
        2 => format!("<30>{ts} {host} systemd[1]: Started session {} of user app{}.", i, i % 50),
        _ => format!("<86>{ts} {host} sudo[{}]: app{} : TTY=pts/0 ; PWD=/srv ; USER=root ; COMMAND=/usr/bin/systemctl restart web{}", 1000 + i % 5000, i % 50, i % 7),
    }
}

fn fill(data: &std::path::Path, events: u64, alerts: u64) -> anyhow::Result<()> {
    let store = EmbeddedEventStore::open(EmbeddedConfig {
        dir: data.join("events"),
        fsync: FsyncPolicy::Never,
        ..EmbeddedConfig::default()
    })
    .context("cannot open the event store")?;
    let have = store.stats()?.events;
    if have < events {
        eprintln!("filling the event store: {have} → {events} events");
        let pb = ProgressBar::new(events);
        pb.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_position(have);
        let mut names = Interner::default();
        let origin = Origin::Network {
            peer: "127.0.0.1:5514".parse()?,
            transport: Transport::Udp,
        };
        let mut i = have;
        let now = Utc::now();
        while i < events {
            let n = (events - i).min(20_000);
            let batch: Vec<_> = (i..i + n)
                .filter_map(|k| {
                    mamori_ingest::parse_syslog_line(
                        line(k, events, now).as_bytes(),
                        origin.clone(),
                        &mut names,
                    )
                    .ok()
                })
                .collect();
            store.append(&batch)?;
            i += n;
            pb.set_position(i);
        }
        pb.finish_and_clear();
        store.refresh()?;
    }
    drop(store);
    let state = mamori_server::open_state(data)?;
    let have = state
        .list_alerts(&mamori_store::AlertFilter {
            limit: 1,
            ..Default::default()
        })?
        .first()
        .map_or(0, |a| a.id.0 as u64);
    if have < alerts {
        eprintln!("filling the alert store: {have} → {alerts} alerts");
        let now = Utc::now();
        for k in have..alerts {
            let t = now - TimeDelta::seconds((k as i64 * 86_400) / alerts.max(1) as i64);
            state.insert_alert(&NewAlert {
                rule_id: RuleId(format!("bench-rule-{}", k % 60).into()),
                title: format!("Bench alert {}", k % 60),
                level: Level::ALL[(k % 5) as usize],
                event_time: Some(t),
                received_at: t,
                event_seqs: vec![k + 1],
                group_key: Some(format!("source.ip=198.51.100.{}", k % 250)),
                dedup_key: Some(format!("bench|{k}")),
                details: serde_json::json!({ "group": { "source.ip": format!("198.51.100.{}", k % 250) }, "host": format!("srv{:02}", k % 40) }),
            })?;
        }
    }
    if mamori_server::console::users::find(&state, "bench")
        .map_err(anyhow::Error::msg)?
        .is_none()
    {
        mamori_server::console::users::add(
            &state,
            "bench",
            mamori_server::console::Role::Admin,
            PASSWORD,
        )
        .map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// One request: status, head, body, wall time.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String, Vec<u8>, Duration)> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let took = start.elapsed();
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no response head")?;
    let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
    let status = String::from_utf8_lossy(&resp[9..12]).parse()?;
    Ok((status, head, resp[end + 4..].to_vec(), took))
}

fn cookie(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

fn sign_in(addr: SocketAddr) -> anyhow::Result<String> {
    let (_, head, body, _) = request(addr, "GET", "/login", &[], b"")?;
    let form_cookie = cookie(&head, "mamori_login_csrf").context("no sign-in cookie")?;
    let page = String::from_utf8_lossy(&body);
    let i = page
        .find("name=\"csrf\" value=\"")
        .context("no csrf field")?
        + 19;
    let csrf = &page[i..i + 64];
    let form = format!(
        "user=bench&password={}&csrf={csrf}",
        PASSWORD.replace(' ', "+")
    );
    let (s, head, _, _) = request(
        addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &format!("mamori_login_csrf={form_cookie}")),
        ],
        form.as_bytes(),
    )?;
    match cookie(&head, "mamori_session") {
        Some(c) if s == 303 => Ok(c),
        _ => bail!("bench sign-in failed ({s})"),
    }
}

fn median_ms(addr: SocketAddr, path: &str, session: &str, repeat: usize) -> anyhow::Result<f64> {
    let c = format!("mamori_session={session}");
    // One warm-up (first use of a page of the index, template compilation).
    let (s, _, b, _) = request(addr, "GET", path, &[("Cookie", &c)], b"")?;
    if s != 200 {
        bail!("GET {path}: {s} {}", String::from_utf8_lossy(&b));
    }
    let mut v = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        v.push(
            request(addr, "GET", path, &[("Cookie", &c)], b"")?
                .3
                .as_secs_f64()
                * 1000.0,
        );
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

pub(crate) fn run(a: ConsoleArgs) -> anyhow::Result<i32> {
    let tmp;
    let data = match &a.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&data)?;
    let t = Instant::now();
    fill(&data, a.events, a.alerts)?;
    eprintln!("data ready in {:.1}s", t.elapsed().as_secs_f64());
    let mut cfg = mamori_server::ServerConfig {
        data_dir: data.clone(),
        ..Default::default()
    };
    cfg.syslog.udp = None;
    cfg.syslog.tcp = None;
    cfg.http.listen = Some("127.0.0.1:0".parse()?);
    cfg.vault.seal = false;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let running = rt.block_on(mamori_server::start(cfg))?;
    let addr = running.http.context("no HTTP listener")?;
    let events = Arc::clone(&running.events);
    let stored = events.stats()?.events;
    let session = sign_in(addr)?;
    let since = (Utc::now() - TimeDelta::hours(24)).to_rfc3339();
    let since = since.replace('+', "%2B");
    let repeat = a.repeat.max(3);
    let base = median_ms(addr, "/api/v1/health", &session, repeat)?;
    let pages: [(&str, Vec<String>); 3] = [
        (
            "overview",
            vec![
                "/".into(),
                "/api/v1/console/overview".into(),
                "/api/v1/sources".into(),
            ],
        ),
        (
            "alerts",
            vec![
                "/alerts".into(),
                "/api/v1/alerts?limit=200".into(),
                format!("/api/v1/alerts?limit=200&min_level=high&since={since}"),
            ],
        ),
        (
            "search",
            vec![
                "/search".into(),
                // What the page asks by default: the last 24 hours, 1440 s buckets.
                format!(
                    "/api/v1/search?q=Failed%20AND%20srv07&from={since}&limit=100&histogram=1440"
                ),
                format!("/api/v1/search?from={since}&limit=100&histogram=1440"),
            ],
        ),
    ];
    println!("console render time: {stored} events, {} alerts, median of {repeat} runs; baseline GET /api/v1/health = {base:.2} ms", a.alerts);
    let mut worst = 0.0f64;
    for (name, reqs) in &pages {
        let mut total = 0.0;
        for r in reqs {
            let ms = match median_ms(addr, r, &session, repeat) {
                Ok(ms) => ms,
                Err(e) if r.ends_with("/sources") => {
                    println!("  {name:<9} {r:<70} not measured: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            total += ms;
            println!(
                "  {name:<9} {r:<70} {ms:>8.2} ms  ({:>6.1}× baseline)",
                ms / base.max(0.001)
            );
        }
        worst = worst.max(total);
        println!(
            "  {name:<9} page total (requests one after another) {total:>8.2} ms  {}",
            if total < TARGET_MS {
                "ok"
            } else {
                "OVER 300 ms"
            }
        );
    }
    // Not the page's default: "all time" walks every stored event for its histogram.
    let r = "/api/v1/search?limit=100&histogram=10080";
    let ms = median_ms(addr, r, &session, repeat)?;
    println!(
        "  (all time, not the default) {r:<52} {ms:>8.2} ms  ({:>6.1}× baseline)",
        ms / base.max(0.001)
    );
    rt.block_on(running.shutdown());
    Ok(if worst < TARGET_MS {
        exit::OK
    } else {
        exit::FOUND
    })
}
