//! `mamori serve` seals into the evidence vault; an incident is exported and verified offline.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{write_config, Server};
use crate::{mamori, text};

fn ssh_fail(i: usize) -> String {
    format!("<38>Nov 23 10:00:{:02} web01 sshd[77]: Failed password for invalid user =cmd|' /C calc'!A0 from 203.0.113.77 port {} ssh2\n", i % 60, 41000 + i)
}

#[test]
fn served_events_are_sealed_and_an_incident_exports_and_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let out = mamori(&["init", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cfg = write_config(dir.path(), "[vault]\ncheckpoint_every_secs = 1\n");
    let srv = Server::start(&cfg, None);

    // An SSH brute force (user names that are spreadsheet formulas) opens an incident.
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    let lines: String = (0..12).map(ssh_fail).collect();
    c.write_all(lines.as_bytes()).unwrap();
    c.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let (s, v) = srv.get("/api/v1/incidents");
        assert_eq!(s, 200, "{v}");
        if let Some(id) = v["incidents"][0]["id"].as_i64() {
            break id;
        }
        assert!(Instant::now() < deadline, "no incident: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Analyst work through the API goes into the chain of custody.
    let (s, v) = srv.post(
        &format!("/api/v1/incidents/{id}/notes"),
        &[("content-type", "application/json")],
        br#"{"text":"=HYPERLINK(\"http://x\") checked with the web01 owner"}"#,
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = srv.post(
        &format!("/api/v1/incidents/{id}/phase"),
        &[("content-type", "application/json")],
        br#"{"phase":"containment"}"#,
    );
    assert_eq!(s, 200, "{v}");
    let (_, inc) = srv.get(&format!("/api/v1/incidents/{id}"));
    let events: Vec<u64> = inc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_u64().unwrap())
        .collect();
    assert!(!events.is_empty(), "{inc}");

    // The vault has one writer: an export while the server runs is refused, clearly.
    let bundle = dir.path().join("incident.tar");
    let b = bundle.to_str().unwrap();
    let id_s = id.to_string();
    let export = [
        "evidence",
        "export",
        "--data-dir",
        d,
        "--incident",
        &id_s,
        "--out",
        b,
    ];
    let out = mamori(&export);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("in use"),
        "{}",
        text(&out.stderr)
    );
    assert!(!bundle.exists());

    // A clean stop seals the rest and signs a final head; the vault verifies.
    assert_eq!(srv.stop(), Some(0));
    let out = mamori(&["vault", "verify", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let out = mamori(&export);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("warning"),
        "every event of the incident is sealed: {}",
        text(&out.stderr)
    );
    let key = data.join("keys/vault-ed25519.pub");
    let out = mamori(&["evidence", "verify", b, "--key", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Offline, with standard tools: extract, then `sha256sum -c` the manifest.
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("tar")
        .args(["-xf", b, "-C", x.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let root = std::fs::read_dir(&x)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let o = Command::new("sha256sum")
        .args(["-c", "--quiet", "MANIFEST.sha256"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "sha256sum -c: {}", text(&o.stdout));

    // Exactly the incident's events, by store seq, byte for byte as received.
    let records: Vec<Value> = std::fs::read_to_string(root.join("records/records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut sealed: Vec<u64> = records
        .iter()
        .map(|r| {
            let src = r["source"].as_str().unwrap();
            mamori_vault::store_seq_of(src).unwrap_or_else(|| panic!("no seq in {src}"))
        })
        .collect();
    sealed.sort_unstable();
    // Every event the incident listed while the server ran, and the failures that extended
    // the brute-force episode after its alert (cited when the server stopped): all 12 lines.
    for e in &events {
        assert!(sealed.contains(e), "event {e} not exported: {sealed:?}");
    }
    assert_eq!(sealed.len(), 12, "{sealed:?}");
    for r in &records {
        let p = r["payload"]["utf8"].as_str().unwrap();
        assert!(p.contains("Failed password for invalid user =cmd|"), "{p}");
    }

    // The incident's own timeline, formula-safe, and the custody trail with who did what.
    let csv = std::fs::read_to_string(root.join("timeline/incident.csv")).unwrap();
    assert!(csv.starts_with("time,kind,actor,summary,detail\n"), "{csv}");
    assert!(csv.contains(",note,e2e,\"'=HYPERLINK("), "{csv}");
    assert!(csv.contains("containment"), "{csv}");
    assert!(!csv.contains(",=") && !csv.contains("\"="), "{csv}");
    let records_csv = std::fs::read_to_string(root.join("timeline/timeline.csv")).unwrap();
    assert_eq!(records_csv.lines().count(), sealed.len() + 1);
    let audit = std::fs::read_to_string(root.join("custody/audit.jsonl")).unwrap();
    let custody: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["entry"].clone())
        .collect();
    let target = format!("incident:{id}");
    for (action, actor) in [
        ("incident_change", "mamori"),
        ("analyst_note", "e2e"),
        ("incident_change", "e2e"),
        ("evidence_export", ""),
    ] {
        assert!(
            custody.iter().any(|e| e["action"] == action
                && (actor.is_empty() || e["actor"] == actor)
                && (action == "evidence_export" || e["target"] == target.as_str())),
            "no {action} by {actor:?} in {audit}"
        );
    }

    // The incident lists its evidence.
    let out = mamori(&["incident", "show", &id_s, "--data-dir", d, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let inc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ev = inc["evidence"].to_string();
    assert!(
        ev.contains("incident.tar") && ev.contains("sha256:"),
        "{inc}"
    );
}

/// A failed SSH login of a brute force from 203.0.113.77, one second after the previous one.
fn bf_line(i: usize) -> String {
    format!("<38>Nov 23 10:{:02}:{:02} web01 sshd[77]: Failed password for invalid user =cmd|' /C calc'!A0 from 203.0.113.77 port {} ssh2\n", i / 60, i % 60, 41000 + i)
}

/// Sends `lines` over TCP and waits until the store holds `total` events of web01.
fn send_lines(srv: &Server, lines: &[String], total: usize) {
    let mut c = TcpStream::connect(srv.tcp).unwrap();
    c.write_all(lines.concat().as_bytes()).unwrap();
    c.flush().unwrap();
    srv.search_until("web01", total as u64, Duration::from_secs(30));
}

/// The first incident's id and how many events it lists, once it exists.
fn first_incident(srv: &Server) -> (i64, usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let (s, v) = srv.get("/api/v1/incidents");
        assert_eq!(s, 200, "{v}");
        if let Some(id) = v["incidents"][0]["id"].as_i64() {
            break id;
        }
        assert!(Instant::now() < deadline, "no incident: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (_, inc) = srv.get(&format!("/api/v1/incidents/{id}"));
    (id, inc["events"].as_array().unwrap().len())
}

/// Exports incident `id` (the server stopped), checks the bundle offline, and asserts that it
/// holds exactly the `sent` lines, byte for byte, each named in the incident timeline with its
/// alert.
fn assert_export_holds(dir: &std::path::Path, id: i64, sent: &[String], listed: usize) {
    let data = dir.join("data");
    let d = data.to_str().unwrap();
    let bundle = dir.join(format!("incident-{}.tar", sent.len()));
    let b = bundle.to_str().unwrap();
    let id_s = id.to_string();
    let out = mamori(&[
        "evidence",
        "export",
        "--data-dir",
        d,
        "--incident",
        &id_s,
        "--out",
        b,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    let key = data.join("keys/vault-ed25519.pub");
    let out = mamori(&["evidence", "verify", b, "--key", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let x = dir.join(format!("x-{}", sent.len()));
    std::fs::create_dir(&x).unwrap();
    assert!(Command::new("tar")
        .args(["-xf", b, "-C", x.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let root = std::fs::read_dir(&x)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records: Vec<Value> = std::fs::read_to_string(root.join("records/records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut payloads: Vec<String> = records
        .iter()
        .map(|r| r["payload"]["utf8"].as_str().unwrap().to_owned())
        .collect();
    payloads.sort();
    let mut want: Vec<String> = sent.iter().map(|l| l.trim_end().to_owned()).collect();
    want.sort();
    let n = want.len();
    let missing: Vec<&String> = want.iter().filter(|l| !payloads.contains(l)).collect();
    assert!(
        missing.is_empty(),
        "exported {} of the {n} failures (the incident listed {listed}); first missing: {:?}",
        payloads.len(),
        missing.first()
    );
    assert_eq!(payloads, want, "all {n} failures, byte for byte, once each");

    // The incident timeline names the alert behind each exported event.
    let csv = std::fs::read_to_string(root.join("timeline/incident.csv")).unwrap();
    for r in &records {
        let seq = mamori_vault::store_seq_of(r["source"].as_str().unwrap()).unwrap();
        let row = csv
            .lines()
            .find(|l| l.contains(&format!(",event,mamori,store seq {seq},")))
            .unwrap_or_else(|| panic!("no timeline row for seq {seq}: {csv}"));
        assert!(row.contains("alert "), "{row}");
    }
}

/// Issue #15 finding 10: a brute force of N failures is one correlation alert whose first
/// citation names only the events up to its threshold; the export of its incident must hold
/// all N events, byte for byte, each named in the incident timeline with its alert.
#[test]
fn an_incident_export_holds_every_event_behind_a_correlation_alert() {
    // More failures than a correlation alert lists (at most 100 seqs of evidence): the rest
    // come from the alert's first_seq..=last_seq span.
    const N: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let out = mamori(&["init", "--data-dir", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cfg = write_config(dir.path(), "[vault]\ncheckpoint_every_secs = 1\n");
    let srv = Server::start(&cfg, None);
    let sent: Vec<String> = (0..N).map(bf_line).collect();
    send_lines(&srv, &sent, N);
    let (id, listed) = first_incident(&srv);
    assert!(
        listed < N,
        "the alerts cite only the events up to their thresholds while the episode runs: {listed}"
    );
    assert_eq!(srv.stop(), Some(0));
    assert_export_holds(dir.path(), id, &sent, listed);
}

/// The episode goes on across a restart (its state is saved): the events after the restart
/// are cited at the second stop too.
#[test]
fn an_incident_export_holds_the_events_of_an_episode_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let out = mamori(&["init", "--data-dir", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cfg = write_config(dir.path(), "[vault]\ncheckpoint_every_secs = 1\n");
    let sent: Vec<String> = (0..60).map(bf_line).collect();
    let srv = Server::start(&cfg, None);
    send_lines(&srv, &sent[..30], 30);
    let (id, listed) = first_incident(&srv);
    let token = srv.token.clone();
    assert_eq!(srv.stop(), Some(0));
    assert_export_holds(dir.path(), id, &sent[..30], listed);

    let srv = Server::start(&cfg, Some(token));
    send_lines(&srv, &sent[30..], 60);
    let (again, _) = first_incident(&srv);
    assert_eq!(again, id);
    assert_eq!(srv.stop(), Some(0));
    assert_export_holds(dir.path(), id, &sent, listed);
}

/// SIGKILL while sealing: after a restart the sealer resumes from the vault's own last record,
/// so every stored event is sealed exactly once and the vault verifies.
#[test]
fn sealing_resumes_exactly_once_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    assert_eq!(mamori(&["init", "--data-dir", d]).status.code(), Some(0));
    let cfg = write_config(dir.path(), "");
    let send = |srv: &Server, from: usize, n: usize| {
        let mut c = TcpStream::connect(srv.tcp).unwrap();
        let lines: String = (from..from + n)
            .map(|i| format!("<30>Nov 23 10:00:00 app01 app[1]: request {i} ok\n"))
            .collect();
        c.write_all(lines.as_bytes()).unwrap();
    };
    let srv = Server::start(&cfg, None);
    send(&srv, 0, 20_000);
    srv.search_until("app01", 20_000, Duration::from_secs(30));
    let token = srv.token.clone();
    srv.kill();
    let srv = Server::start(&cfg, Some(token));
    send(&srv, 20_000, 5_000);
    srv.search_until("app01", 25_000, Duration::from_secs(30));
    assert_eq!(srv.stop(), Some(0));

    let out = mamori(&["vault", "verify", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let bundle = dir.path().join("all.tar");
    let out = mamori(&[
        "evidence",
        "export",
        "--data-dir",
        d,
        "--from",
        "2000-01-01",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    assert!(Command::new("tar")
        .args(["-xf", bundle.to_str().unwrap(), "-C", x.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let root = std::fs::read_dir(&x)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut seqs: Vec<u64> = std::fs::read_to_string(root.join("records/records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            mamori_vault::store_seq_of(v["source"].as_str().unwrap()).unwrap()
        })
        .collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "an event was sealed twice");
    assert_eq!(
        seqs,
        (1..=25_000).collect::<Vec<u64>>(),
        "every stored event sealed, in order"
    );
}

/// Issue #15 finding 11: `serve` sends every new signed tree head to a witness outside the box
/// (here a real TCP syslog listener standing in for the operator's log host); what the witness
/// stored, passed as is to `vault verify --witness`, checks the vault.
#[test]
fn serve_publishes_signed_heads_to_the_witness() {
    let witness = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = witness.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for c in witness.incoming() {
            let Ok(c) = c else { return };
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut { c }, &mut s);
            if tx.send(s).is_err() {
                return;
            }
        }
    });
    // A webhook witness: a plain HTTP receiver that keeps each POST's headers and body.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let (htx, hrx) = std::sync::mpsc::channel::<(String, Vec<u8>)>();
    std::thread::spawn(move || {
        for c in hook.incoming() {
            let Ok(mut c) = c else { return };
            let Some(req) = read_http_request(&mut c) else {
                continue;
            };
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if htx.send(req).is_err() {
                return;
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    assert_eq!(
        mamori(&["init", "--data-dir", d.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let cfg = write_config(
        dir.path(),
        &format!(
            "[vault]\ncheckpoint_every_secs = 1\nwitness_syslog = \"127.0.0.1:{port}\"\n\
             witness_webhook = \"http://127.0.0.1:{hook_port}/heads?token=hook-url-secret\"\n\
             witness_webhook_secret = \"hook-key\"\n"
        ),
    );
    let srv = Server::start(&cfg, None);
    let sent: Vec<String> = (0..20).map(bf_line).collect();
    send_lines(&srv, &sent, 20);
    // Wait for a head that covers the 20 events (plus custody records), on both witnesses.
    let (mut log, mut hook_log) = (String::new(), String::new());
    let (mut syslog_done, mut hook_done) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !(syslog_done && hook_done) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            assert!(l.starts_with("<110>1 "), "an RFC 5424 line: {l}");
            log.push_str(&l);
            let (heads, _) = mamori_vault::parse_witness(&l);
            syslog_done |= heads.iter().any(|h| h.tree_size >= 20);
        }
        if let Ok((head, body)) = hrx.recv_timeout(Duration::from_millis(200)) {
            let h = head.to_ascii_lowercase();
            let header = |name: &str| {
                h.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            assert!(
                h.starts_with("post /heads?token=hook-url-secret "),
                "{head}"
            );
            let (ts, sig) = (header("x-mamori-timestamp"), header("x-mamori-signature"));
            assert!(
                mamori_notify::http::verify(b"hook-key", &ts, &body, &sig),
                "the POST is signed with the configured key: {head}"
            );
            let b = String::from_utf8(body).unwrap();
            hook_log.push_str(&b);
            hook_log.push('\n');
            let (heads, bad) = mamori_vault::parse_witness(&b);
            assert_eq!(bad, 0, "{b}");
            hook_done |= heads.iter().any(|h| h.tree_size >= 20);
        }
    }
    assert!(
        syslog_done,
        "no head covering the events reached the syslog witness"
    );
    assert!(
        hook_done,
        "no head covering the events reached the webhook witness"
    );
    // The webhook's URL is a credential: never in the server's log.
    assert!(!srv.log_lines().contains("hook-url-secret"));
    assert_eq!(srv.stop(), Some(0));
    for (name, body) in [("witness.log", &log), ("hook.jsonl", &hook_log)] {
        let file = dir.path().join(name);
        std::fs::write(&file, body).unwrap();
        let out = mamori(&[
            "vault",
            "verify",
            "--data-dir",
            d.to_str().unwrap(),
            "--witness",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stdout));
        assert!(text(&out.stdout).contains("witnessed heads"), "{name}");
    }
}

/// One HTTP/1.1 request: the head (request line and headers) and the body (Content-Length).
fn read_http_request(c: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use std::io::Read;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}
