//! `mamori agent` end to end: the real `mamori serve` and `mamori agent run` processes.
//!
//! When the test runs as root with `ip` available, each agent runs in a network namespace of
//! its own (a veth pair to the host, the server listening on the host side), so the agents are
//! separate hosts on a real network; otherwise they run on loopback and the test says so.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{http, Server};
use crate::{mamori, text};

mod inventory;
mod response;
mod tofu;

const BIN: &str = env!("CARGO_BIN_EXE_mamori");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn server_config(dir: &Path, listen: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("mamori.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {data:?}\n[syslog]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"{listen}\"\n{extra}\n",
            data = dir.join("data").display().to_string(),
        ),
    )
    .unwrap();
    cfg
}

fn enroll_token(cfg: &Path) -> String {
    let out = mamori(&[
        "agent",
        "token",
        "create",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// A network namespace with a veth pair to the host: `10.<a>.<b>.1` (host) ↔ `.2` (agent).
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    /// `None` when not root or `ip` cannot make namespaces here.
    fn create(i: u32) -> Option<Netns> {
        if !Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| text(&o.stdout).trim() == "0")
        {
            return None;
        }
        let tag = (std::process::id() % 50_000) * 4 + i;
        let name = format!("mamori-it-{tag}");
        let host_if = format!("mh{tag}");
        let ns_if = format!("mn{tag}");
        let (a, b) = (10 + (tag / 250) % 200, tag % 250);
        let host_ip = format!("10.{a}.{b}.1");
        let agent_ip = format!("10.{a}.{b}.2");
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let n = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
        };
        let ok = ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]) && ip(&["link", "set", &ns_if, "netns", &name])
            && ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])
            && ip(&["link", "set", &host_if, "up"])
            && ip(&[
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("{agent_ip}/30"),
                "dev",
                &ns_if,
            ])
            && ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"])
            && ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ok.then_some(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_if]);
        ip(&["netns", "del", &self.name]);
    }
}

/// A host for one agent: a namespace, or loopback.
struct Host {
    ns: Option<Netns>,
}

impl Host {
    fn command(&self, args: &[&str]) -> Command {
        match &self.ns {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &n.name, BIN]).args(args);
                c
            }
            None => {
                let mut c = Command::new(BIN);
                c.args(args);
                c
            }
        }
    }

    fn server_url(&self, port: u16) -> String {
        match &self.ns {
            Some(n) => format!("http://{}:{port}", n.host_ip),
            None => format!("http://127.0.0.1:{port}"),
        }
    }
}

/// A running `mamori agent run`; killed on drop. Its log lines arrive on `log`.
struct AgentProc {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl AgentProc {
    fn start(host: &Host, cfg: &Path) -> AgentProc {
        let mut child = host
            .command(&["agent", "run", "--config", cfg.to_str().unwrap()])
            .env("MAMORI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mamori agent run");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        AgentProc { child, log: rx }
    }

    /// Waits for a log line containing `what`.
    fn wait_log(&self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => {}
                Err(_) => panic!("agent never logged {what:?}"),
            }
        }
    }

    fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent_config(dir: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = {:?}\nheartbeat_secs = 1\n{extra}\n[buffer]\nmax_wait_ms = 300\npoll_ms = 100\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    cfg
}

fn enroll(host: &Host, port: u16, token: &str, cfg: &Path, name: &str) {
    let url = host.server_url(port);
    let mut args = vec![
        "agent",
        "enroll",
        "--server",
        &url,
        "--token",
        token,
        "--config",
        cfg.to_str().unwrap(),
        "--name",
        name,
    ];
    if host.ns.is_some() {
        args.push("--allow-plain-http");
    }
    let out = host.command(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Appends numbered lines to a file at a steady pace until stopped; returns how many.
fn writer(path: PathBuf, word: &'static str, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            writeln!(f, "{word} n={n:06} host log line").unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    })
}

/// How many hits a query has now.
fn total(srv: &Server, q: &str) -> u64 {
    let (s, v) = srv.get(&format!("/api/v1/search?limit=1&q={q}"));
    assert_eq!(s, 200, "{v}");
    v["total"].as_u64().unwrap_or(0)
}

/// Every line number of `word` stored, checked to be each of 1..=n exactly once.
fn assert_exactly_once(srv: &Server, word: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while total(srv, word) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let hits = srv.search_all(word);
    let mut seen = vec![0u32; n as usize + 1];
    for h in &hits {
        let raw = h["raw"].as_str().unwrap_or_default();
        let num: usize = raw
            .split("n=")
            .nth(1)
            .and_then(|r| r.get(..6))
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {raw:?}"));
        assert!(num >= 1 && num <= n as usize, "{raw}");
        seen[num] += 1;
    }
    let missing: Vec<usize> = (1..=n as usize).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (1..=n as usize).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "{word}: {n} lines written, {} stored; missing {:?}…, twice {:?}…",
        hits.len(),
        &missing[..missing.len().min(20)],
        &twice[..twice.len().min(20)]
    );
}

fn agents_list(srv: &Server) -> Vec<Value> {
    let (s, v) = srv.get("/api/v1/agents");
    assert_eq!(s, 200, "{v}");
    v["agents"].as_array().cloned().unwrap_or_default()
}

#[test]
fn two_agents_survive_a_server_outage_and_a_crash_with_every_line_once_and_revocation_cuts_off() {
    let dir = tempfile::tempdir().unwrap();
    let hosts: Vec<Host> = (0..2)
        .map(|i| Host {
            ns: Netns::create(i),
        })
        .collect();
    let netns = hosts.iter().all(|h| h.ns.is_some());
    if !netns {
        eprintln!("skipped: network namespaces (needs root and `ip`); the agents run on loopback");
    }
    let port = free_port();
    let listen = if netns {
        format!("0.0.0.0:{port}")
    } else {
        format!("127.0.0.1:{port}")
    };
    let cfg = server_config(dir.path(), &listen, "[agents]\nsilence_secs = 300\n");
    let srv = Server::start(&cfg, None);
    let token = srv.token.clone();

    let words = ["alphaline", "bravoline"];
    let mut agents = Vec::new();
    let mut cfgs = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let adir = dir.path().join(format!("agent{i}"));
        std::fs::create_dir_all(&adir).unwrap();
        let log = adir.join("app.log");
        let acfg = agent_config(
            &adir,
            &format!("[[file]]\npaths = [{:?}]\n", log.display().to_string()),
        );
        enroll(
            host,
            port,
            &enroll_token(&cfg),
            &acfg,
            &format!("agent-{i}"),
        );
        agents.push(Some(AgentProc::start(host, &acfg)));
        cfgs.push(acfg);
        writers.push(writer(log, words[i], Arc::clone(&stop)));
    }
    // Both deliver.
    let deadline = Instant::now() + Duration::from_secs(60);
    while words.iter().any(|w| total(&srv, w) == 0) {
        assert!(Instant::now() < deadline, "no lines arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = agents_list(&srv);
    assert_eq!(list.len(), 2, "{list:?}");
    for a in &list {
        assert_eq!(a["state"], "active", "{a}");
        assert!(a["os"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(a["last_seen"].is_string());
    }

    // The server goes away for 20 s (SIGKILL) while the agents keep logging, then returns.
    srv.kill();
    std::thread::sleep(Duration::from_secs(20));
    let srv = Server::start(&cfg, Some(token));
    // Agent 0 is killed (SIGKILL) while it drains its buffer, and restarted.
    std::thread::sleep(Duration::from_millis(700));
    agents[0].take().unwrap().sigkill();
    agents[0] = Some(AgentProc::start(&hosts[0], &cfgs[0]));
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    for (w, n) in words.iter().zip(&counts) {
        assert!(*n > 500, "{w}: only {n} lines written");
        assert_exactly_once(&srv, w, *n);
    }
    let list = agents_list(&srv);
    for a in &list {
        assert!(
            a["events"].as_u64().unwrap() >= counts[0].min(counts[1]) / 2,
            "{a}"
        );
    }

    // Revocation: agent-1's credential is refused from now on, its new lines never stored.
    let id = list.iter().find(|a| a["name"] == "agent-1").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = srv.post(&format!("/api/v1/agents/{id}/revoke"), &[], b"");
    assert_eq!(s, 200, "{v}");
    let cred: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("agent1/state/credential.json")).unwrap(),
    )
    .unwrap();
    let body = br#"{"seq": 999999, "records": [{"t": "line", "path": "/x", "line": 1, "offset": 0, "text": "bravoline n=999999 forged"}]}"#;
    let (s, b) = http(
        srv.http,
        "POST",
        "/api/v1/agents/batches",
        cred["credential"].as_str(),
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(s, 403, "{}", text(&b));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("agent1/app.log"))
        .unwrap();
    for n in counts[1] + 1..=counts[1] + 20 {
        writeln!(f, "bravoline n={n:06} after revocation").unwrap();
    }
    drop(f);
    let agent1 = agents[1].as_ref().unwrap();
    agent1.wait_log("refuses this agent", Duration::from_secs(30));
    assert_eq!(
        total(&srv, "bravoline"),
        counts[1],
        "nothing stored after revocation"
    );
    let list = agents_list(&srv);
    let a1 = list.iter().find(|a| a["name"] == "agent-1").unwrap();
    assert_eq!(a1["state"], "revoked");
    // The CLI lists the same agents from the state database.
    let out = mamori(&["agent", "list", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.contains("\tagent-0\tactive\t") && listed.contains("\tagent-1\trevoked\t"),
        "{listed}"
    );
    // Unauthenticated or unknown callers get nothing.
    let (s, _) = http(srv.http, "GET", "/api/v1/agents", None, &[], b"");
    assert_eq!(s, 401);
    let (s, _) = http(
        srv.http,
        "POST",
        "/api/v1/agents/batches",
        Some("mamori_agent_x"),
        &[],
        body,
    );
    assert_eq!(s, 401);
}

fn alert_with_rule(srv: &Server, title: &str) -> Option<Value> {
    let (s, v) = srv.get("/api/v1/alerts?min_level=low&limit=200");
    assert_eq!(s, 200, "{v}");
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"] == title)
        .cloned()
}

fn wait_alert(srv: &Server, title: &str, timeout: Duration) -> (Value, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(a) = alert_with_rule(srv, title) {
            return (a, t0.elapsed());
        }
        assert!(
            t0.elapsed() < timeout,
            "no alert {title:?} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alert_event(srv: &Server, a: &Value) -> Value {
    let seq = a["event_seqs"][0].as_u64().expect("alert cites its event");
    let (s, v) = srv.get(&format!("/api/v1/events/{seq}"));
    assert_eq!(s, 200, "{v}");
    v
}

#[test]
fn webshell_and_authorized_keys_changes_alert_with_hashes_and_a_silent_agent_is_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = server_config(
        dir.path(),
        &format!("127.0.0.1:{port}"),
        "[agents]\nsilence_secs = 3\n",
    );
    let srv = Server::start(&cfg, None);
    let www = dir.path().join("root/var/www/html");
    let ssh = dir.path().join("root/home/alice/.ssh");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(www.join("index.html"), "<h1>hello</h1>").unwrap();
    let keys = ssh.join("authorized_keys");
    std::fs::write(
        &keys,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld alice@laptop\n",
    )
    .unwrap();
    let before = mamori_agent::fim::hash_file(&keys).unwrap();
    let adir = dir.path().join("agent");
    std::fs::create_dir_all(&adir).unwrap();
    let acfg = agent_config(
        &adir,
        &format!(
            "[fim]\npaths = [{:?}, {:?}]\nscan_interval_secs = 60\n",
            www.display().to_string(),
            ssh.display().to_string()
        ),
    );
    let host = Host { ns: None };
    enroll(&host, port, &enroll_token(&cfg), &acfg, "web01");
    let agent = AgentProc::start(&host, &acfg);
    agent.wait_log("file integrity baseline loaded", Duration::from_secs(60));

    let t0 = Instant::now();
    let shell = www.join("uploads-cmd.php");
    std::fs::write(&shell, "<?php system($_GET['c']); ?>\n").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&keys)
        .unwrap();
    writeln!(
        f,
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCevil attacker@vps"
    )
    .unwrap();
    drop(f);
    let after = mamori_agent::fim::hash_file(&keys).unwrap();
    let shell_hash = mamori_agent::fim::hash_file(&shell).unwrap();

    let (web, _) = wait_alert(
        &srv,
        "Possible Webshell Written To A Web Root",
        Duration::from_secs(30),
    );
    let web_latency = t0.elapsed();
    let (key, _) = wait_alert(&srv, "SSH Authorized Keys Changed", Duration::from_secs(30));
    let key_latency = t0.elapsed();
    eprintln!("webshell alert after {web_latency:?}, authorized_keys alert after {key_latency:?} (goal: 2 s)");
    let e = alert_event(&srv, &web);
    assert_eq!(e["fields"]["file.path"], shell.display().to_string(), "{e}");
    assert_eq!(e["fields"]["file.hash.sha256"], shell_hash.as_str(), "{e}");
    assert_eq!(e["fields"]["agent.name"], "web01");
    // The key file's alert carries the hashes before and after (the newest event of it).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, k) = srv.get(&format!("/api/v1/alerts/{}", key["id"]));
        let seqs: Vec<u64> = k["event_seqs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        let found = seqs.iter().any(|s| {
            let (_, ev) = srv.get(&format!("/api/v1/events/{s}"));
            ev["fields"]["file.hash.sha256"] == after.as_str()
                && ev["fields"]["fim.before.sha256"].as_str().is_some()
        });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no authorized_keys event with the hash {after} (before {before}): {k}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The agent dies: a silence alert follows.
    agent.sigkill();
    let (s, _) = wait_alert(&srv, "Agent went silent: web01", Duration::from_secs(60));
    assert_eq!(s["level"], "high");
    // It reaches incident grouping like the server's other alerts, with the host as entity.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = srv.get("/api/v1/incidents");
        let grouped = v["incidents"].as_array().unwrap().iter().any(|i| {
            let (_, inc) = srv.get(&format!("/api/v1/incidents/{}", i["id"]));
            inc["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["alert_id"] == s["id"]))
        });
        if grouped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the silent-agent alert is on no incident: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn encrypting_script_is_detected_and_killed_before_it_finishes() {
    if Command::new("python3")
        .arg("-c")
        .arg("1")
        .status()
        .map_or(true, |s| !s.success())
    {
        eprintln!("skipped: python3 not found (it runs the test's encryption script)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = server_config(dir.path(), &format!("127.0.0.1:{port}"), "");
    let srv = Server::start(&cfg, None);
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let files = 500;
    for i in 0..files {
        std::fs::write(
            share.join(format!("report-{i:03}.txt")),
            format!("Quarterly report {i}\n").repeat(200),
        )
        .unwrap();
    }
    let adir = dir.path().join("agent");
    std::fs::create_dir_all(&adir).unwrap();
    let acfg = agent_config(
        &adir,
        &format!(
            "[ransomware]\npaths = [{:?}]\nmode = \"automatic\"\nthreshold = 10\nwindow_secs = 10\n",
            share.display().to_string()
        ),
    );
    let host = Host { ns: None };
    enroll(&host, port, &enroll_token(&cfg), &acfg, "files01");
    let agent = AgentProc::start(&host, &acfg);
    agent.wait_log("file integrity baseline loaded", Duration::from_secs(60));
    // The test's own "ransomware": overwrites each file with random bytes, in chunks.
    let script = r#"
import os, sys, time
d = sys.argv[1]
for name in sorted(os.listdir(d)):
    if not name.startswith("report-"):
        continue
    p = os.path.join(d, name)
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        for _ in range(4):
            f.write(os.urandom(size // 4 + 1))
            f.flush()
            time.sleep(0.005)
    print(name, flush=True)
"#;
    let t0 = Instant::now();
    let child = Command::new("python3")
        .args(["-c", script, share.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let ran = t0.elapsed();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "the script was killed (SIGKILL)"
    );
    let done = text(&out.stdout).lines().count();
    eprintln!("script killed after {ran:?}, {done} of {files} files encrypted");
    assert!(done < files, "stopped before it encrypted every file");
    let (a, _) = wait_alert(
        &srv,
        "Ransomware Behaviour On A Host",
        Duration::from_secs(30),
    );
    assert_eq!(a["level"], "critical");
    let e = alert_event(&srv, &a);
    assert_eq!(e["fields"]["process.pid"], pid, "{e}");
    assert!(
        e["fields"]["response.result"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("killed PID {pid}"))),
        "{e}"
    );
    assert!(
        e["fields"]["ransomware.file_count"].as_u64().unwrap() >= 10,
        "{e}"
    );
}
