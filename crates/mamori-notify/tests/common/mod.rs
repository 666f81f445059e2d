//! Shared helpers for the integration tests: a sample notification and a real HTTP/1.1
//! receiver on loopback (std sockets, one thread per connection).

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mamori_event::Level;
use mamori_notify::{Label, Notification, NotifyConfig, Reason};

pub fn sample() -> Notification {
    Notification {
        incident_id: "42".into(),
        title: "Brute force against vpn01 <!channel> a|b=c".into(),
        title_ja: None,
        severity: Level::High,
        phase: Label::new("containment", "Containment", "封じ込め"),
        kind: Label::new("brute_force", "Brute force", "総当たり攻撃"),
        reason: Reason::Opened,
        summary: "37 failed logins for alice\nthen one success from 203.0.113.9".into(),
        summary_ja: None,
        entities: vec![
            ("user.name".into(), "alice".into()),
            ("source.ip".into(), "203.0.113.9".into()),
        ],
        url: Some("https://mamori.example.jp/incidents/42".into()),
        time: Utc.with_ymd_and_hms(2026, 1, 15, 3, 0, 0).unwrap(),
    }
}

/// 2026-01-15 12:05 JST: outside any usual quiet hours.
pub fn daytime() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 3, 5, 0).unwrap()
}

pub fn config(text: &str) -> NotifyConfig {
    toml::from_str(text).unwrap_or_else(|e| panic!("bad test config: {e}\n{text}"))
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

pub struct HttpReceiver {
    pub addr: SocketAddr,
    rx: mpsc::Receiver<Request>,
}

impl HttpReceiver {
    /// Answers every request with `status`.
    pub fn start(status: u16) -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, status, &tx);
                });
            }
        });
        HttpReceiver { addr, rx }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn next(&self) -> Request {
        self.rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a request within 10 s")
    }

    pub fn assert_no_more(&self) {
        assert!(
            self.rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "an unexpected extra request"
        );
    }
}

fn handle(stream: TcpStream, status: u16, tx: &mpsc::Sender<Request>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let _ = tx.send(Request {
        method,
        path,
        headers,
        body,
    });
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} Test\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    )?;
    stream.flush()
}

/// Accepts connections and never answers; returns its address.
pub fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// An address on which nothing listens (bound then closed).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
