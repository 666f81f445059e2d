//! Certificate pinning at enrolment (trust on first use) against `mamori serve` over HTTPS with
//! a self-signed certificate: a wrong `--pin` refuses to enrol, enrolment pins and prints the
//! certificate's SHA-256, the agent talks to that server, and once the server presents another
//! certificate the agent refuses it with both fingerprints in its log.

use std::time::{Duration, Instant};

use super::*;

fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let fp = mamori_agent::client::fingerprint(ck.cert.der());
    (cert, key, fp)
}

fn tls_config(dir: &Path, port: u16, cert: &Path, key: &Path) -> PathBuf {
    server_config(
        dir,
        &format!("127.0.0.1:{port}"),
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
}

fn last_seen(cfg: &Path) -> String {
    let out = mamori(&["agent", "list", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
        .split("last_seen=")
        .nth(1)
        .and_then(|r| r.split('\t').next())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn enrolment_pins_the_self_signed_certificate_and_a_new_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, key_a, fp_a) = self_signed(dir.path(), "a");
    let (cert_b, key_b, fp_b) = self_signed(dir.path(), "b");
    assert_ne!(fp_a, fp_b);
    let port = free_port();
    let cfg = tls_config(dir.path(), port, &cert_a, &key_a);
    let srv = Server::start(&cfg, None);
    let token = srv.token.clone();
    let url = format!("https://127.0.0.1:{port}");
    let adir = dir.path().join("agent");
    std::fs::create_dir_all(&adir).unwrap();
    let acfg = agent_config(&adir, "");
    let enroll_tok = enroll_token(&cfg);
    let enrol = |pin: Option<&str>| {
        let mut args = vec![
            "agent",
            "enroll",
            "--server",
            &url,
            "--token",
            &enroll_tok,
            "--config",
            acfg.to_str().unwrap(),
            "--name",
            "tls01",
        ];
        if let Some(p) = pin {
            args.extend(["--pin", p]);
        }
        mamori(&args)
    };

    // A pin that is not the server's: refused before the token is used.
    let out = enrol(Some(&fp_b));
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains(&fp_a) && err.contains("not the pinned"),
        "{err}"
    );
    let out = enrol(Some("sha256:nothex"));
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("not a SHA-256 fingerprint"));

    // Trust on first use, checked against the pin (upper case with colons is accepted too).
    let colons: String = fp_a["sha256:".len()..]
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let out = enrol(Some(&format!("sha256:{colons}")));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), fp_a);
    assert!(text(&out.stderr).contains("Pinned the server's certificate"));
    let cred: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adir.join("state/credential.json")).unwrap())
            .unwrap();
    assert_eq!(cred["pinned_sha256"], fp_a.as_str());

    // The agent reports in over the pinned connection.
    let enrolled = last_seen(&cfg);
    let agent = AgentProc::start(&Host { ns: None }, &acfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_seen(&cfg) == enrolled {
        assert!(
            Instant::now() < deadline,
            "the agent never reported in over TLS"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The server comes back with another certificate: refused, and the log says why.
    srv.kill();
    let cfg = tls_config(dir.path(), port, &cert_b, &key_b);
    let _srv = Server::start(&cfg, Some(token));
    let line = agent.wait_log("certificate changed", Duration::from_secs(60));
    assert!(line.contains(&fp_a) && line.contains(&fp_b), "{line}");
    let seen = last_seen(&cfg);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        last_seen(&cfg),
        seen,
        "nothing accepted from the new certificate"
    );
}
