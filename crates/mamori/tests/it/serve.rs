//! `mamori serve` end to end: the real binary, real sockets on loopback, SIGKILL crashes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{mamori, repo, text};

/// A `mamori serve` process on ephemeral ports; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) udp: SocketAddr,
    pub(crate) token: String,
    /// Server log lines (kept so the reader thread keeps draining stderr).
    _log: mpsc::Receiver<String>,
}

pub(crate) fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("mamori.toml");
    let rules = repo().join("rules");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {data:?}\n{extra}\n[syslog]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\nmax_frame_bytes = 4096\n\
             [http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\nbody_timeout_secs = 3\n\
             [detection]\nrules = [{rules:?}]\nreload_interval_secs = 1\n{incidents}",
            data = dir.join("data").display().to_string(),
            rules = rules.display().to_string(),
            // The tests' attacks come from documentation (public) addresses, so their guessing
            // is `low`; they follow it into incidents and responses (the default, `medium`, is
            // covered by mamori-cases' grouping tests).
            incidents = if extra.contains("[incidents]") {
                ""
            } else {
                "[incidents]\nopen_min_level = \"low\"\n"
            },
        ),
    )
    .unwrap();
    cfg
}

impl Server {
    pub(crate) fn start(cfg: &Path, token: Option<String>) -> Server {
        Server::start_under(cfg, token, None)
    }

    /// Starts the server through `sh -c '<shell>; exec mamori serve …'` when `shell` is given
    /// (e.g. `ulimit -n 256`).
    pub(crate) fn start_under(cfg: &Path, token: Option<String>, shell: Option<&str>) -> Server {
        let token = token.unwrap_or_else(|| {
            // A cluster's tokens are shared (PostgreSQL): one name per node there.
            let name = match std::fs::read_to_string(cfg) {
                Ok(c) if c.contains("[cluster]") => format!(
                    "e2e-{}",
                    cfg.parent()
                        .and_then(|d| d.file_name())
                        .map_or("node".into(), |n| n.to_string_lossy())
                ),
                _ => "e2e".to_owned(),
            };
            let out = mamori(&["token", "create", &name, "--config", cfg.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            text(&out.stdout).trim().to_owned()
        });
        let mut cmd = match shell {
            None => Command::new(env!("CARGO_BIN_EXE_mamori")),
            Some(sh) => {
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    &format!("{sh}; exec \"$0\" \"$@\""),
                    env!("CARGO_BIN_EXE_mamori"),
                ]);
                c
            }
        };
        let mut child = cmd
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .env("MAMORI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mamori serve");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Keep draining even when nobody listens, or the server would block on stderr.
                let _ = tx.send(line);
            }
        });
        let (mut http, mut tcp, mut udp) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while http.is_none() || tcp.is_none() || udp.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("server did not start"));
            let addr = |l: &str| l.rsplit(' ').next().unwrap().parse::<SocketAddr>().ok();
            if let Some(r) = line
                .strip_prefix("mamori: API on http://")
                .or_else(|| line.strip_prefix("mamori: API on https://"))
            {
                http = r.split('/').next().and_then(|a| a.parse().ok());
            } else if line.starts_with("mamori: syslog TCP on ") {
                tcp = addr(&line);
            } else if line.starts_with("mamori: syslog UDP on ") {
                udp = addr(&line);
            } else if line.starts_with("error") {
                panic!("server failed: {line}");
            }
        }
        Server {
            child,
            http: http.unwrap(),
            tcp: tcp.unwrap(),
            udp: udp.unwrap(),
            token,
            _log: rx,
        }
    }

    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        let (s, b) = http(self.http, "GET", path, Some(&self.token), &[], b"");
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    pub(crate) fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        let (s, b) = http(self.http, "POST", path, Some(&self.token), headers, body);
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    /// The server's log lines (warnings and errors) printed so far: for failure messages.
    pub(crate) fn log_lines(&self) -> String {
        self._log.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// The whole `/metrics` text.
    pub(crate) fn metrics_text(&self) -> String {
        let (s, b) = http(self.http, "GET", "/metrics", Some(&self.token), &[], b"");
        assert_eq!(s, 200);
        text(&b)
    }

    /// The value of a sample of `/metrics` (see [`sample`]; `None` when absent).
    pub(crate) fn metric(&self, name: &str) -> Option<f64> {
        sample(&self.metrics_text(), name)
    }

    /// Waits until detection has evaluated every stored event (`mamori_events_matched_total`
    /// reaches `events`), then until the alert count has not changed for `quiet`: on a loaded
    /// machine detection runs seconds behind storage, so a fixed pause is not enough.
    pub(crate) fn settle_detection(
        &self,
        events: u64,
        quiet: Duration,
        deadline: Instant,
    ) -> Vec<Value> {
        while self.metric("mamori_events_matched_total").unwrap_or(0.0) < events as f64
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(250));
        }
        let (mut last, mut since) = (usize::MAX, Instant::now());
        loop {
            let alerts = self.all_alerts();
            if alerts.len() != last {
                (last, since) = (alerts.len(), Instant::now());
            } else if since.elapsed() >= quiet || Instant::now() > deadline {
                return alerts;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every alert, page by page.
    pub(crate) fn all_alerts(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let (s, v) = self.get(&format!("/api/v1/alerts?limit=1000&offset={}", out.len()));
            assert_eq!(s, 200, "{v}");
            let page = v["alerts"].as_array().cloned().unwrap_or_default();
            if page.is_empty() {
                return out;
            }
            out.extend(page);
        }
    }

    /// Polls a search until it returns `want` hits (or times out) and returns the hits.
    pub(crate) fn search_until(&self, q: &str, want: u64, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (s, v) = self.get(&format!("/api/v1/search?limit=10000&sort=asc&q={}", enc(q)));
            assert_eq!(s, 200, "{v}");
            if v["total"].as_u64() == Some(want) || Instant::now() > deadline {
                return v["hits"].as_array().cloned().unwrap_or_default();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every hit of a query, page by page.
    pub(crate) fn search_all(&self, q: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let (s, v) = self.get(&format!(
                "/api/v1/search?limit=10000&sort=asc&offset={}&q={}",
                out.len(),
                enc(q)
            ));
            assert_eq!(s, 200, "{v}");
            let hits = v["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                return out;
            }
            out.extend(hits);
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub(crate) fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A minimal HTTP/1.1 client (one request per connection).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    try_http(addr, method, path, token, headers, body)
        .unwrap_or_else(|| panic!("no HTTP response to {method} {path}"))
}

/// [`http`], or `None` when the server is unreachable or hung up without an answer.
pub(crate) fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    // The server may answer (413) before reading the whole body and close.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = text(resp.get(9..12)?).parse().ok()?;
    Some((status, resp[head_end + 4..].to_vec()))
}

fn ssh_fail(i: usize, ip: &str) -> String {
    format!("<38>Nov 23 10:00:{:02} web01 sshd[123]: Failed password for invalid user admin{i} from {ip} port {} ssh2\n", i % 60, 40000 + i)
}

#[test]
fn ssh_brute_force_over_tcp_alerts_within_a_second_and_is_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&write_config(dir.path(), ""), None);
    // Auth on every route but health.
    let (s, _) = http(srv.http, "GET", "/api/v1/health", None, &[], b"");
    assert_eq!(s, 200);
    for p in [
        "/api/v1/alerts",
        "/api/v1/search",
        "/metrics",
        "/api/v1/rules",
        "/api/v1/openapi.json",
    ] {
        let (s, _) = http(srv.http, "GET", p, None, &[], b"");
        assert_eq!(s, 401, "{p} without a token");
        let (s, _) = http(srv.http, "GET", p, Some("mamori_wrong"), &[], b"");
        assert_eq!(s, 401, "{p} with a wrong token");
    }
    let (s, _) = http(srv.http, "POST", "/api/v1/ingest", None, &[], b"{}");
    assert_eq!(s, 401);

    let mut c = TcpStream::connect(srv.tcp).unwrap();
    let lines: String = (0..12).map(|i| ssh_fail(i, "203.0.113.9")).collect();
    c.write_all(lines.as_bytes()).unwrap();
    c.flush().unwrap();
    let sent = Instant::now();
    let alert = loop {
        let (s, v) = srv.get("/api/v1/alerts?min_level=low");
        assert_eq!(s, 200, "{v}");
        let found = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["title"] == "SSH Brute Force From One Source")
            .cloned();
        if let Some(a) = found {
            break a;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "no brute-force alert after 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let latency = sent.elapsed();
    assert!(
        latency < Duration::from_secs(1),
        "alert took {latency:?} (goal: under 1 s)"
    );
    assert_eq!(alert["group_key"], "source.ip=203.0.113.9");
    assert!(alert["details"]["description_ja"]
        .as_str()
        .unwrap()
        .contains("総当たり"));
    // The rule's Japanese title travels with the alert (rules/linux/ssh_bruteforce.yml).
    assert_eq!(
        alert["details"]["title_ja"],
        "同一送信元からの SSH 総当たり攻撃"
    );
    // Single-rule alerts carry theirs too: every SSH alert of this run has one.
    let (_, v) = srv.get("/api/v1/alerts?min_level=informational");
    for a in v["alerts"].as_array().unwrap() {
        if a["title"].as_str().is_some_and(|t| t.starts_with("SSH ")) {
            assert!(
                a["details"]["title_ja"]
                    .as_str()
                    .is_some_and(|t| t.contains("SSH")),
                "{a}"
            );
        }
    }
    // The events, through search.
    let hits = srv.search_until(
        "source.ip:203.0.113.9 AND event.outcome:failure",
        12,
        Duration::from_secs(5),
    );
    assert_eq!(hits.len(), 12);
    assert!(hits[0]["source"]
        .as_str()
        .unwrap()
        .starts_with("tcp://127.0.0.1:"));
    assert_eq!(hits[0]["fields"]["log.source.address"], "127.0.0.1");
    // Acknowledge through the API: who is recorded.
    let id = alert["id"].as_i64().unwrap();
    let (s, v) = srv.post(
        &format!("/api/v1/alerts/{id}/ack"),
        &[("Content-Type", "application/json")],
        br#"{"note":"blocked at the firewall"}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "acknowledged");
    assert_eq!(v["ack"]["by"], "e2e");
    // Metrics count what happened.
    let (s, m) = http(srv.http, "GET", "/metrics", Some(&srv.token), &[], b"");
    assert_eq!(s, 200);
    let m = text(&m);
    assert!(
        m.contains("mamori_events_in_total{source=\"syslog_tcp\"} 12"),
        "{m}"
    );
    assert!(m.contains("mamori_alert_latency_seconds_count"), "{m}");
    // The histogram of the search API.
    let (s, v) = srv.get("/api/v1/search?q=event.outcome:failure&histogram=60&limit=0");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 12);
    assert!(!v["histogram"].as_array().unwrap().is_empty());
    assert_eq!(srv.stop(), Some(0), "clean shutdown on SIGTERM");
}

#[test]
fn killed_during_http_ingest_keeps_every_acknowledged_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let srv = Server::start(&cfg, None);
    let (addr, token) = (srv.http, srv.token.clone());
    const PER: usize = 25;
    let (tx, rx) = mpsc::channel::<(usize, usize)>();
    let mut clients = Vec::new();
    for client in 0..3usize {
        let (tx, token) = (tx.clone(), token.clone());
        clients.push(std::thread::spawn(move || {
            for b in 0.. {
                let body: String = (0..PER)
                    .map(|n| {
                        format!(
                            "{{\"crash.client\":{client},\"crash.batch\":{b},\"crash.n\":{n},\"message\":\"crash test\"}}\n"
                        )
                    })
                    .collect();
                let r = try_http(addr, "POST", "/api/v1/ingest", Some(&token), &[], body.as_bytes());
                match r {
                    Some((200, _)) => {
                        if tx.send((client, b)).is_err() {
                            return;
                        }
                    }
                    _ => return, // the server is gone
                }
            }
        }));
    }
    drop(tx);
    std::thread::sleep(Duration::from_millis(1500));
    srv.kill(); // SIGKILL, mid-ingest
    for c in clients {
        let _ = c.join();
    }
    let acked: Vec<(usize, usize)> = rx.iter().collect();
    assert!(
        acked.len() > 10,
        "too few acknowledged batches: {}",
        acked.len()
    );
    let srv = Server::start(&cfg, Some(token));
    let hits = srv.search_all("message:crash");
    let mut seen = std::collections::HashMap::new();
    for h in &hits {
        let f = &h["fields"];
        let key = (
            f["crash.client"].as_u64().unwrap() as usize,
            f["crash.batch"].as_u64().unwrap() as usize,
            f["crash.n"].as_u64().unwrap() as usize,
        );
        *seen.entry(key).or_insert(0) += 1;
    }
    let dup = seen.iter().filter(|(_, &c)| c > 1).count();
    assert_eq!(dup, 0, "events stored twice");
    for (c, b) in &acked {
        for n in 0..PER {
            assert_eq!(
                seen.get(&(*c, *b, n)),
                Some(&1),
                "acknowledged event client {c} batch {b} n {n} lost"
            );
        }
    }
    // A stored batch is whole (all or nothing), acknowledged or not: the event log marks the
    // end of each batch and recovery drops a batch cut short (issue #15, once "a torn batch").
    let mut per_batch = std::collections::HashMap::new();
    for (c, b, _) in seen.keys() {
        *per_batch.entry((*c, *b)).or_insert(0) += 1;
    }
    assert!(per_batch.values().all(|&n| n == PER), "a torn batch");
    eprintln!(
        "crash test: {} batches acknowledged, {} stored, none lost or duplicated",
        acked.len(),
        per_batch.len()
    );
}

#[test]
fn killed_during_tcp_ingest_keeps_order_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let srv = Server::start(&cfg, None);
    let addr = srv.tcp;
    let sender = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        let mut i = 0u64;
        loop {
            let mut chunk = String::new();
            for _ in 0..20 {
                chunk.push_str(&format!(
                    "<14>Nov 23 11:00:00 db01 app: tcp-crash seq={i}\n"
                ));
                i += 1;
            }
            if c.write_all(chunk.as_bytes()).is_err() {
                return i;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    std::thread::sleep(Duration::from_millis(1000));
    let token = srv.token.clone();
    srv.kill();
    let sent = sender.join().unwrap();
    let srv = Server::start(&cfg, Some(token));
    let (s, v) = srv.get("/api/v1/search?q=tcp-crash&limit=0");
    assert_eq!(s, 200);
    let total = v["total"].as_u64().unwrap();
    assert!(total > 0 && total <= sent, "stored {total} of {sent}");
    // Read them back: by store seq (receipt order) they are 0, 1, 2, … — a prefix of what was
    // sent, with no gap and no duplicate.
    let mut got: Vec<(u64, u64)> = srv
        .search_all("tcp-crash")
        .iter()
        .map(|h| {
            let msg = h["fields"]["message"].as_str().unwrap();
            let n = msg.strip_prefix("tcp-crash seq=").unwrap().parse().unwrap();
            (h["seq"].as_u64().unwrap(), n)
        })
        .collect();
    got.sort();
    let next = got.len() as u64;
    for (i, (_, n)) in got.iter().enumerate() {
        assert_eq!(*n, i as u64, "gap or duplicate at position {i}");
    }
    assert_eq!(next, total);
}

#[test]
fn bad_input_is_contained_and_other_clients_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&write_config(dir.path(), ""), None);
    // A slow client: half a frame, then nothing.
    let mut slow = TcpStream::connect(srv.tcp).unwrap();
    slow.write_all(b"<13>Nov 23 12:00:00 h app: never finis")
        .unwrap();
    // Garbage and an oversized frame on one connection, then a good line: still accepted.
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    c.write_all(&[0xff, 0xfe, 0x00, 0x80, b'\n']).unwrap();
    c.write_all(&vec![b'A'; 10_000]).unwrap();
    c.write_all(b"\n<13>Nov 23 12:00:01 h app: after-oversize \xff\xfe invalid utf8\n")
        .unwrap();
    c.write_all(b"2000000 ").unwrap(); // a huge octet count is skipped, never buffered
    c.write_all(&vec![b'B'; 5000]).unwrap();
    drop(c);
    let mut good = TcpStream::connect(srv.tcp).unwrap();
    good.write_all(b"<13>Nov 23 12:00:02 h app: good-client\n")
        .unwrap();
    drop(good);
    assert_eq!(
        srv.search_until("good-client", 1, Duration::from_secs(5))
            .len(),
        1
    );
    let hits = srv.search_until("after-oversize", 1, Duration::from_secs(5));
    assert_eq!(hits.len(), 1);
    assert!(hits[0]["raw"].as_str().unwrap().contains('\u{fffd}'));
    // HTTP: over the size limit → 413, and the server still answers.
    let big = vec![b' '; 200_000];
    let (s, _) = http(
        srv.http,
        "POST",
        "/api/v1/ingest",
        Some(&srv.token),
        &[],
        &big,
    );
    assert_eq!(s, 413);
    // A gzip bomb: small on the wire, over the limit decompressed.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![b' '; 1 << 20]).unwrap();
    let gz = enc.finish().unwrap();
    let (s, v) = srv.post("/api/v1/ingest", &[("Content-Encoding", "gzip")], &gz);
    assert_eq!(s, 413, "{v}");
    // A malformed JSON line is reported by number; the other lines are stored (issue #15).
    let (s, v) = srv.post(
        "/api/v1/ingest",
        &[],
        b"{\"message\":\"half-batch\"}\n{\"message\": oops}\n",
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        v["errors"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("line 2:"),
        "{v}"
    );
    // gzip JSON lines work.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"{\"message\":\"gzipped-event\",\"user.name\":\"alice\"}\n")
        .unwrap();
    let (s, v) = srv.post(
        "/api/v1/ingest",
        &[("Content-Encoding", "gzip")],
        &enc.finish().unwrap(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        srv.search_until("user.name:alice", 1, Duration::from_secs(5))
            .len(),
        1
    );
    assert_eq!(
        srv.search_until("half-batch", 1, Duration::from_secs(5))
            .len(),
        1
    );
    // A request whose body never finishes is cut off; others are served meanwhile.
    let mut stuck = TcpStream::connect(srv.http).unwrap();
    stuck
        .write_all(
            format!(
                "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n{{",
                srv.token
            )
            .as_bytes(),
        )
        .unwrap();
    let (s, _) = srv.get("/api/v1/health");
    assert_eq!(s, 200);
    // A bad search query is a 400 with a message, not a 500.
    let (s, v) = srv.get("/api/v1/search?q=%28unbalanced");
    assert_eq!(s, 400, "{v}");
    drop(slow);
    drop(stuck);
    let (s, m) = http(srv.http, "GET", "/metrics", Some(&srv.token), &[], b"");
    assert_eq!(s, 200);
    let m = text(&m);
    assert!(
        m.contains("mamori_oversized_total{source=\"syslog_tcp\"} 2"),
        "{m}"
    );
}

#[test]
fn udp_syslog_upload_and_rule_hot_reload() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::copy(
        repo().join("rules/linux/ssh_bruteforce.yml"),
        rules.join("ssh.yml"),
    )
    .unwrap();
    let cfg = write_config(dir.path(), "");
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("{:?}", repo().join("rules").display().to_string()),
        &format!("{:?}", rules.display().to_string()),
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    let srv = Server::start(&cfg, None);
    // UDP: real datagrams, two messages in one datagram.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(
        b"<34>1 2026-11-23T12:00:00Z fw01 kernel - - - udp-one\n<34>1 2026-11-23T12:00:01Z fw01 kernel - - - udp-two",
        srv.udp,
    )
    .unwrap();
    let hits = srv.search_until("host:fw01", 2, Duration::from_secs(5));
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(hits[0]["source"].as_str().unwrap().starts_with("udp://"));
    // Upload a file: read by the same readers as `hunt`, kept under the data directory.
    let auth = std::fs::read(repo().join("examples/sample/auth.log")).unwrap();
    let lines = auth
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let (s, v) = srv.post("/api/v1/upload?name=..%2F..%2Fauth.log", &[], &auth);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["events"].as_u64().unwrap() as usize, lines, "{v}");
    assert_eq!(v["format"], "syslog");
    let kept = dir
        .path()
        .join("data/uploads")
        .join(v["file"].as_str().unwrap());
    assert!(kept.is_file() && v["file"].as_str().unwrap().ends_with("-auth.log"));
    // Hot reload: a new rule goes live, a broken one is reported.
    let (_, r) = srv.get("/api/v1/rules");
    let before = r["report"]["rules"].as_u64().unwrap();
    std::fs::write(
        rules.join("new.yml"),
        "title: Firewall Test Rule\nid: 5b0f3b5e-8a7e-4f2a-9a57-0d1f7c1a2b3c\nlogsource:\n  product: linux\ndetection:\n  sel:\n    message|contains: hotreload-marker\n  condition: sel\nlevel: medium\n",
    )
    .unwrap();
    std::fs::write(rules.join("broken.yml"), "title: x\ndetection: [\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let (_, r) = srv.get("/api/v1/rules");
        if r["report"]["rules"].as_u64() == Some(before + 1) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r["report"]["rules"].as_u64(), Some(before + 1), "{r}");
    let failures = r["report"]["failures"].as_array().unwrap();
    assert!(
        failures
            .iter()
            .any(|f| f.as_str().unwrap().contains("broken.yml")),
        "{r}"
    );
    u.send_to(b"<13>Nov 23 12:00:03 fw01 app: hotreload-marker", srv.udp)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = srv.get("/api/v1/alerts");
        if v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["title"] == "Firewall Test Rule")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reloaded rule did not alert: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The OpenAPI document is served.
    let (s, v) = srv.get("/api/v1/openapi.json");
    assert_eq!(s, 200);
    assert_eq!(v["openapi"], "3.1.0");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[syslog]\nudpp = \"127.0.0.1:514\"\n").unwrap();
    let out = mamori(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("udpp"), "{err}");
    let out = mamori(&["serve", "--print-config"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("[syslog]"));
}

/// The value of the sample `name` in a `/metrics` text: `name` as written (with its labels,
/// `name{a="b"}`, when given), else — for a bare name — its first labelled sample.
pub(crate) fn sample(metrics: &str, name: &str) -> Option<f64> {
    let value = |l: &str| l.rsplit(' ').next()?.parse().ok();
    metrics
        .lines()
        .find_map(|l| value(l.strip_prefix(name)?.strip_prefix(' ')?))
        .or_else(|| {
            metrics
                .lines()
                .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
                .and_then(value)
        })
}
