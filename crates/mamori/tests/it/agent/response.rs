//! Response on a host by its agent, end to end: the agent in its own network namespace, the
//! server on the host side. An incident opened by the agent's own alert (a webshell) asks the
//! agent to isolate its host: from then on the namespace reaches the server and nothing else —
//! a real connection to another service of the host fails — until the rollback, after which it
//! works again. A process is killed by PID (while isolated: commands still arrive), a kind the
//! agent does not allow is refused by the agent, bad arguments by the server; everything is
//! recorded on the incident.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

/// A tiny HTTP service on the host side that answers every request with 200 "bystander".
fn bystander() -> u16 {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nbystander",
            );
        }
    });
    port
}

/// The HTTP status of a fresh connection from inside the namespace, or `None` if it could
/// not connect (curl's own timeout, 3 s).
fn status_from(ns: &Netns, url: &str) -> Option<u16> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--connect-timeout",
            "3",
            "--max-time",
            "5",
            url,
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let code: u16 = text(&out.stdout).trim().parse().unwrap_or(0);
    (out.status.success() && code != 0).then_some(code)
}

/// Waits until the command has a result; returns the command.
fn wait_result(srv: &Server, agent: &str, cid: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (s, v) = srv.get(&format!("/api/v1/agents/{agent}/commands"));
        assert_eq!(s, 200, "{v}");
        if let Some(c) = v["commands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == cid && !c["result"].is_null())
        {
            return c.clone();
        }
        assert!(
            Instant::now() < deadline,
            "command {cid} has no result: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn request(srv: &Server, incident: i64, body: Value) -> (u16, Value) {
    srv.post(
        &format!("/api/v1/incidents/{incident}/agent-actions"),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

#[test]
fn isolation_from_an_incident_leaves_only_the_server_until_rollback() {
    let Some(ns) = Netns::create(2) else {
        eprintln!("skipped: network namespaces (needs root and `ip`)");
        return;
    };
    if Command::new("curl").arg("--version").output().is_err()
        || !Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: needs curl and nft");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = server_config(dir.path(), &format!("0.0.0.0:{port}"), "");
    let srv = Server::start(&cfg, None);
    let other = bystander();
    let server_url = format!("http://{}:{port}/api/v1/health", ns.host_ip);
    let other_url = format!("http://{}:{other}/", ns.host_ip);
    assert!(
        status_from(&ns, &other_url).is_some(),
        "the bystander is reachable before"
    );

    let www = dir.path().join("root/var/www/html");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<h1>hi</h1>").unwrap();
    let adir = dir.path().join("agent");
    std::fs::create_dir_all(&adir).unwrap();
    let acfg = agent_config(
        &adir,
        &format!(
            "[fim]\npaths = [{:?}]\n[response]\nenabled = true\npoll_secs = 1\n\
             actions = [\"isolate_host\", \"kill_process\", \"block_ip\"]\n",
            www.display().to_string()
        ),
    );
    let host = Host { ns: Some(ns) };
    enroll(&host, port, &enroll_token(&cfg), &acfg, "web01");
    let agent = AgentProc::start(&host, &acfg);
    agent.wait_log("file integrity baseline loaded", Duration::from_secs(60));
    let ns = host.ns.as_ref().unwrap();

    // The agent's own alert opens the incident.
    std::fs::write(www.join("cmd.php"), "<?php system($_GET['c']); ?>\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let incident = loop {
        let (_, v) = srv.get("/api/v1/incidents");
        if let Some(id) = v["incidents"][0]["id"].as_i64() {
            break id;
        }
        assert!(Instant::now() < deadline, "no incident: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };

    // Bad arguments never reach the agent.
    let (s, v) = request(
        &srv,
        incident,
        json!({"agent": "web01", "action": {"type": "block_ip", "ip": "10.0.0.1; flush ruleset", "ttl": 60}}),
    );
    assert_eq!(s, 422, "{v}");
    let (s, v) = request(
        &srv,
        incident,
        json!({"agent": "web01", "action": {"type": "block_ip", "ip": "127.0.0.1", "ttl": 60}}),
    );
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("loopback"), "{v}");
    let (s, _) = request(
        &srv,
        incident,
        json!({"agent": "nobody", "action": {"type": "isolate_host"}}),
    );
    assert_eq!(s, 404);

    // Isolation.
    let (s, v) = request(
        &srv,
        incident,
        json!({"agent": "web01", "action": {"type": "isolate_host"}}),
    );
    assert_eq!(s, 200, "{v}");
    let iso = v["id"].as_u64().unwrap();
    let c = wait_result(&srv, "web01", iso);
    assert_eq!(c["result"]["outcome"]["status"], "done", "{c}");
    assert!(
        c["result"]["commands"][0]["stdin"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "ip daddr {} tcp dport {port} ct state new",
                ns.host_ip
            )),
        "{c}"
    );
    assert_eq!(
        status_from(ns, &other_url),
        None,
        "isolated: another service of the network is unreachable"
    );
    assert!(
        status_from(ns, &server_url).is_some(),
        "isolated: the Mamori server is still reachable"
    );

    // Commands still arrive while isolated: a process is killed by PID (same PID namespace).
    let mut victim = Command::new("sleep").arg("600").spawn().unwrap();
    let (s, v) = request(
        &srv,
        incident,
        json!({"agent": "web01", "action": {"type": "kill_process", "pid": victim.id(), "name": "sleep"}}),
    );
    assert_eq!(s, 200, "{v}");
    let c = wait_result(&srv, "web01", v["id"].as_u64().unwrap());
    assert_eq!(c["result"]["outcome"]["status"], "done", "{c}");
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(victim.wait().unwrap().signal(), Some(9));
    // A kind this agent does not allow is refused by the agent, and nothing runs.
    let (s, v) = request(
        &srv,
        incident,
        json!({"agent": "web01", "action": {"type": "disable_account", "user": "mallory"}}),
    );
    assert_eq!(s, 200, "{v}");
    let c = wait_result(&srv, "web01", v["id"].as_u64().unwrap());
    assert_eq!(c["result"]["outcome"]["status"], "refused", "{c}");
    assert!(c["result"]["commands"].as_array().unwrap().is_empty());

    // Rollback: the network is back.
    let (s, v) = srv.post(
        &format!("/api/v1/incidents/{incident}/agent-actions/{iso}/rollback"),
        &[],
        b"",
    );
    assert_eq!(s, 200, "{v}");
    let c = wait_result(&srv, "web01", v["id"].as_u64().unwrap());
    assert_eq!(c["result"]["outcome"]["status"], "done", "{c}");
    assert_eq!(
        status_from(ns, &other_url),
        Some(200),
        "after rollback the bystander is reachable again"
    );
    let (s, _) = srv.post(
        &format!("/api/v1/incidents/{incident}/agent-actions/{iso}/rollback"),
        &[],
        b"",
    );
    assert_eq!(s, 409, "one rollback only");

    // All of it is on the incident, by whom.
    let (_, inc) = srv.get(&format!("/api/v1/incidents/{incident}"));
    let acts = inc["actions"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = acts
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["by"].as_str().unwrap()))
        .collect();
    for want in [
        ("agent_response_requested", "e2e"),
        ("agent_response_executed", "agent:web01"),
        ("agent_response_refused", "agent:web01"),
        ("agent_response_rollback_requested", "e2e"),
        ("agent_response_rolled_back", "agent:web01"),
    ] {
        assert!(kinds.contains(&want), "{want:?} not in {kinds:?}");
    }
    // A forged result from outside is refused.
    let (s, _) = http(
        srv.http,
        "POST",
        &format!("/api/v1/agents/commands/{iso}/result"),
        Some("mamori_agent_forged"),
        &[("Content-Type", "application/json")],
        br#"{"id": 1, "at": "2026-01-01T00:00:00Z", "outcome": {"status": "done"}}"#,
    );
    assert_eq!(s, 401);
    drop(agent);
}
