//! Mail against a real SMTP server (Python's aiosmtpd) on loopback: plain, AUTH, STARTTLS.
//! Skipped, saying so, when python3 or aiosmtpd is missing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{config, daytime, sample};
use mamori_notify::Notifier;
use serde_json::Value;

struct SmtpServer {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    rx: mpsc::Receiver<String>,
}

impl SmtpServer {
    /// `None` (after printing why) when the server cannot run here.
    fn start(args: &[&str]) -> Option<SmtpServer> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
        let mut child = match Command::new("python3")
            .arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(_) => {
                println!("skipped: aiosmtpd not installed (no python3)");
                return None;
            }
        };
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(port) = first.strip_prefix("PORT ").and_then(|p| p.parse().ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            println!("skipped: aiosmtpd not installed ({first:?})");
            return None;
        };
        Some(SmtpServer {
            child,
            _stdin: stdin,
            port,
            rx,
        })
    }

    fn next(&self) -> Value {
        let line = self
            .rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a message within 10 s");
        serde_json::from_str(&line).unwrap()
    }

    fn assert_none(&self) {
        assert!(self.rx.recv_timeout(Duration::from_millis(300)).is_err());
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn notifier(smtp: &str) -> Notifier {
    let text = format!(
        r#"
        [channels.mail]
        type = "smtp"
        from = "Mamori <mamori@example.jp>"
        timeout_secs = 5
        {smtp}

        [[contacts]]
        name = "tanaka"
        email = "田中 太郎 <tanaka@example.jp>"
        language = "both"
        channels = ["mail"]
        "#
    );
    Notifier::new(&config(&text)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn plain_smtp_mail_in_both_languages() {
    let Some(server) = SmtpServer::start(&["plain"]) else {
        return;
    };
    let n = notifier(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"",
        server.port
    ));
    let d = n.notify(&sample(), daytime());
    assert!(d[0].ok, "{d:?}");
    assert_eq!(
        (d[0].contact.as_str(), d[0].channel.as_str()),
        ("tanaka", "mail")
    );
    let m = server.next();
    assert_eq!(m["mail_from"], "mamori@example.jp");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["tanaka@example.jp"]));
    assert_eq!(m["from"], "Mamori <mamori@example.jp>");
    assert_eq!(m["to"], "田中 太郎 <tanaka@example.jp>");
    assert_eq!(
        m["subject"],
        "[Mamori][高/HIGH] 新規インシデント / New incident: Brute force against vpn01 <!channel> a|b=c"
    );
    // The Japanese subject travels RFC 2047-encoded.
    let raw = m["subject_raw"].as_str().unwrap();
    assert!(raw.to_ascii_lowercase().contains("=?utf-8?"), "{raw}");
    assert!(raw.is_ascii());
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["charset"], "utf-8");
    // Mail lines end in CRLF on the wire.
    let body = m["body"].as_str().unwrap().replace("\r\n", "\n");
    let body = body.as_str();
    let ja = body
        .find("新しいインシデントを検知しました。\nBrute force against vpn01 <!channel> a|b=c")
        .expect(body);
    let en = body
        .find("A new incident was detected.\nBrute force against vpn01 <!channel> a|b=c")
        .expect(body);
    assert!(ja < en);
    assert!(
        body.contains("重要度: 高") && body.contains("Severity: High"),
        "{body}"
    );
    assert!(body.contains("https://mamori.example.jp/incidents/42"));
    assert_eq!(
        (m["authenticated"].as_bool(), m["tls"].as_bool()),
        (Some(false), Some(false))
    );
}

#[test]
fn a_hostile_title_cannot_inject_headers() {
    let Some(server) = SmtpServer::start(&["plain"]) else {
        return;
    };
    let n = notifier(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"",
        server.port
    ));
    let mut note = sample();
    note.title = "x\r\nBcc: victim@example.com\r\n\r\nforged body".into();
    let d = n.notify(&note, daytime());
    assert!(d[0].ok, "{d:?}");
    let m = server.next();
    assert_eq!(m["rcpt_tos"], serde_json::json!(["tanaka@example.jp"]));
    let names: Vec<String> = m["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(!names.contains(&"bcc".to_owned()), "{names:?}");
    let subject = m["subject"].as_str().unwrap();
    assert!(
        subject.ends_with("x  Bcc: victim@example.com    forged body"),
        "{subject}"
    );
}

#[test]
fn auth_over_plain_text() {
    let Some(server) = SmtpServer::start(&["auth"]) else {
        return;
    };
    let base = format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nusername = \"mamori\"",
        server.port
    );
    let n = notifier(&format!("{base}\npassword = \"s3cret\""));
    let d = n.notify(&sample(), daytime());
    assert!(d[0].ok, "{d:?}");
    assert_eq!(server.next()["authenticated"], true);

    let n = notifier(&format!("{base}\npassword = \"wrong-pass-123\""));
    let d = n.notify(&sample(), daytime());
    assert!(!d[0].ok);
    let err = d[0].error.as_deref().unwrap();
    assert!(!err.contains("wrong-pass-123"), "{err}");
    assert!(!format!("{n:?}").contains("wrong-pass-123"));
    server.assert_none();
}

#[test]
fn password_from_a_file() {
    let Some(server) = SmtpServer::start(&["auth"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("smtp.pass");
    std::fs::write(&file, "s3cret\n").unwrap();
    let n = notifier(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nusername = \"mamori\"\npassword_file = {:?}",
        server.port,
        file.to_str().unwrap()
    ));
    assert!(n.notify(&sample(), daytime())[0].ok);
    assert_eq!(server.next()["authenticated"], true);
}

/// A self-signed certificate for 127.0.0.1 made with the openssl CLI; `None` if it is absent.
fn self_signed(dir: &Path) -> Option<()> {
    let status = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then_some(())
}

#[test]
fn starttls_then_auth_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    if self_signed(dir.path()).is_none() {
        println!("skipped: openssl CLI not available to make a test certificate");
        return;
    }
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let Some(server) =
        SmtpServer::start(&["starttls", cert.to_str().unwrap(), key.to_str().unwrap()])
    else {
        return;
    };
    let base = format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nusername = \"mamori\"\npassword = \"s3cret\"",
        server.port
    );
    let n = notifier(&format!("{base}\nca_file = {:?}", cert.to_str().unwrap()));
    let d = n.notify(&sample(), daytime());
    assert!(d[0].ok, "{d:?}");
    let m = server.next();
    assert_eq!(
        (m["tls"].as_bool(), m["authenticated"].as_bool()),
        (Some(true), Some(true))
    );

    // Without the private CA the certificate is refused and nothing is sent.
    let n = notifier(&base);
    let d = n.notify(&sample(), daytime());
    assert!(!d[0].ok);
    let err = d[0].error.as_deref().unwrap().to_ascii_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "{err}");
    server.assert_none();
}
