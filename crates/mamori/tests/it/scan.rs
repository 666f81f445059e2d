//! `mamori scan` end to end (issue #21): the real binary against a deliberately vulnerable web
//! application and a hardened one, both written here and served over TLS on loopback by axum +
//! tokio-rustls, with real SQLite behind the injectable parameters. The servers record every
//! request, so the safety properties (allow-list, budget, rate, no destructive payload, no
//! request out of scope) are checked on what actually arrived.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio_rustls::TlsAcceptor;

use crate::{mamori, text};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    body_len: usize,
    user_agent: String,
    at: Instant,
}

struct App {
    hardened: bool,
    db: Mutex<rusqlite::Connection>,
    seen: Mutex<Vec<Seen>>,
    /// The port of a server the pages link to: out of scope, must never be contacted.
    outside_port: u16,
}

fn db() -> rusqlite::Connection {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(
        "CREATE TABLE products(id TEXT PRIMARY KEY, name TEXT);
         INSERT INTO products VALUES ('1','Widget'),('2','Gadget'),('3','Gizmo');",
    )
    .unwrap();
    c
}

fn query(uri: &axum::http::Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(app: &App, body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if app.hardened {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
        h.insert(
            "content-security-policy",
            HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
        );
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    } else {
        h.insert("server", HeaderValue::from_static("Apache/2.4.49 (Unix)"));
    }
    r
}

fn not_found(app: &App) -> Response {
    let mut r = html(app, "<html><body>not found</body></html>".into());
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    app.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        body_len: body.len(),
        user_agent: parts
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        at: Instant::now(),
    });
    respond(&app, &parts.method, &parts.uri, &parts.headers)
}

fn respond(app: &App, method: &Method, uri: &axum::http::Uri, _h: &HeaderMap) -> Response {
    let hard = app.hardened;
    if method == Method::OPTIONS {
        let allow = if hard {
            "GET, HEAD, OPTIONS"
        } else {
            "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE"
        };
        return (StatusCode::NO_CONTENT, [("allow", allow)]).into_response();
    }
    if method.as_str() == "TRACE" {
        if hard {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        return (
            StatusCode::OK,
            [("content-type", "message/http")],
            format!("TRACE {} HTTP/1.1\r\nhost: x\r\n", uri.path()),
        )
            .into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    match uri.path() {
        "/" => {
            let banner = if hard {
                "<title>Example Co.</title>".to_string()
            } else {
                // A fake old Roundcube login page: the banner and the version it leaks.
                "<title>Roundcube Webmail :: Welcome to Roundcube Webmail</title>\
                 <script>var rcmail = {\"env\":{\"rcversion\":10403}};</script>"
                    .to_string()
            };
            let mut r = html(
                app,
                format!(
                    "<html><head>{banner}</head><body>\
                     <a href=\"/product?id=1\">product</a> <a href=\"/item?id=2\">item</a>\
                     <a href=\"/uploads/report.pdf\">report</a> <a href=\"/go?next=/\">home</a>\
                     <a href=\"/logout\">log out</a>\
                     <a href=\"https://127.0.0.1:{}/outside\">partner</a>\
                     <form action=\"/search\" method=\"get\"><input name=\"q\" value=\"hello\"><input type=\"submit\"></form>\
                     <form action=\"/login\" method=\"post\"><input name=\"user\"><input type=\"password\" name=\"pass\"></form>\
                     </body></html>",
                    app.outside_port
                ),
            );
            let cookie = if hard {
                "sid=abc; Path=/; Secure; HttpOnly; SameSite=Lax"
            } else {
                "roundcube_sessid=abc; path=/"
            };
            r.headers_mut()
                .insert("set-cookie", HeaderValue::from_static(cookie));
            r
        }
        "/product" => {
            let id = query(uri, "id").unwrap_or_default();
            let db = app.db.lock().unwrap();
            let res: Result<Option<String>, rusqlite::Error> = if hard {
                db.query_row("SELECT name FROM products WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
            } else {
                // Planted: SQL built from the parameter, errors shown.
                db.query_row(
                    &format!("SELECT name FROM products WHERE id = '{id}'"),
                    [],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
            };
            match res {
                Ok(Some(n)) => html(app, format!("<html><body><h1>Product: {}</h1><p>In stock, ships in two days.</p></body></html>", esc(&n))),
                Ok(None) => html(app, "<html><body>No such product</body></html>".into()),
                Err(e) => html(app, format!("<html><body>Database error: {}</body></html>", esc(&e.to_string()))),
            }
        }
        "/item" => {
            // Planted (vulnerable only): SQL built from the parameter, errors hidden —
            // only a true/false difference shows.
            let id = query(uri, "id").unwrap_or_default();
            let db = app.db.lock().unwrap();
            let sql = if hard {
                None
            } else {
                Some(format!("SELECT name FROM products WHERE id = '{id}'"))
            };
            let found: Option<String> = match sql {
                Some(s) => db.query_row(&s, [], |r| r.get(0)).ok(),
                None => db
                    .query_row("SELECT name FROM products WHERE id = ?1", [&id], |r| {
                        r.get(0)
                    })
                    .ok(),
            };
            match found {
                Some(n) => html(app, format!("<html><body><h1>Item {}</h1><p>A fine item with a long description that makes the page longer.</p></body></html>", esc(&n))),
                None => html(app, "<html><body>Nothing here</body></html>".into()),
            }
        }
        "/search" => {
            let q = query(uri, "q").unwrap_or_default();
            // Planted (vulnerable only): reflected without escaping.
            let shown = if hard { esc(&q) } else { q };
            html(
                app,
                format!("<html><body><p>Results for {shown}</p><p>none</p></body></html>"),
            )
        }
        "/go" => {
            let next = query(uri, "next").unwrap_or_else(|| "/".into());
            let ok = hard && next.starts_with('/') && !next.starts_with("//");
            if hard && !ok {
                return (StatusCode::BAD_REQUEST, "bad destination").into_response();
            }
            // Planted (vulnerable only): redirects anywhere.
            (StatusCode::FOUND, [("location", next)]).into_response()
        }
        "/uploads/" if !hard => html(
            app,
            "<html><head><title>Index of /uploads</title></head><body><h1>Index of /uploads</h1>\
             <a href=\"report.pdf\">report.pdf</a></body></html>"
                .into(),
        ),
        "/uploads/report.pdf" => (
            StatusCode::OK,
            [("content-type", "application/pdf")],
            "%PDF-1.4 fake",
        )
            .into_response(),
        "/.git/HEAD" if !hard => (StatusCode::OK, "ref: refs/heads/main\n").into_response(),
        "/.git/config" if !hard => {
            (StatusCode::OK, "[core]\n\trepositoryformatversion = 0\n").into_response()
        }
        "/.env" if !hard => (
            StatusCode::OK,
            "APP_KEY=base64:c2VjcmV0\nDB_PASSWORD=hunter2\n",
        )
            .into_response(),
        _ => not_found(app),
    }
}

/// A TLS listener for `axum::serve`: a failed handshake (the scanner's legacy ClientHellos)
/// is dropped and the next connection accepted.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((s, a)) = self.tcp.accept().await else {
                continue;
            };
            let hs = tokio::time::timeout(Duration::from_secs(20), self.acceptor.accept(s));
            if let Ok(Ok(tls)) = hs.await {
                return (tls, a);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

struct Site {
    app: Arc<App>,
    port: u16,
    outside_hits: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl Site {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.app.seen.lock().unwrap().clone()
    }
}

struct Certs {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_pem: Option<String>,
}

/// The vulnerable site's certificate: self-signed, expired on 2020-01-01.
fn expired_self_signed() -> Certs {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2019, 1, 1);
    p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let c = p.self_signed(&key).unwrap();
    Certs {
        chain: vec![c.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ca_pem: None,
    }
}

/// The hardened site's certificate: issued for 127.0.0.1 by a private CA the scan trusts.
fn private_ca() -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    Certs {
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ca_pem: Some(ca.pem()),
    }
}

fn start(hardened: bool, certs: &Certs) -> Site {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outside_hits = Arc::new(AtomicUsize::new(0));
    let (port, outside_port, app) = rt.block_on(async {
        let outside = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let outside_port = outside.local_addr().unwrap().port();
        let hits = outside_hits.clone();
        tokio::spawn(async move {
            while let Ok((_s, _)) = outside.accept().await {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs.chain.clone(), certs.key.clone_key())
        .unwrap();
        let app = Arc::new(App {
            hardened,
            db: Mutex::new(db()),
            seen: Mutex::new(Vec::new()),
            outside_port,
        });
        let router = Router::new().fallback(handle).with_state(app.clone());
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (port, outside_port, app)
    });
    let _ = outside_port;
    Site {
        app,
        port,
        outside_hits,
        _rt: rt,
    }
}

fn write_scan_config(dir: &Path, body: &str) -> String {
    let p = dir.join("mamori.toml");
    std::fs::write(&p, format!("[scan]\n{body}\n")).unwrap();
    p.display().to_string()
}

fn checks(report: &Value) -> BTreeSet<String> {
    report["targets"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect()
}

fn worst_above_info(report: &Value) -> Vec<String> {
    report["targets"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| format!("{} {} {}", f["severity"], f["check"], f["evidence"]))
        .collect()
}

/// Every request the servers saw was read-only, bodiless, identified and harmless.
fn assert_harmless(seen: &[Seen]) {
    assert!(!seen.is_empty());
    for s in seen {
        assert!(
            ["GET", "HEAD", "OPTIONS", "TRACE"].contains(&s.method.as_str()),
            "method {} {}",
            s.method,
            s.uri
        );
        assert_eq!(s.body_len, 0, "{} {}", s.method, s.uri);
        assert!(
            s.user_agent.starts_with("Mamori-Scan/"),
            "{:?}",
            s.user_agent
        );
        let decoded: String = url::form_urlencoded::parse(s.uri.as_bytes())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
            .to_ascii_uppercase();
        for bad in [
            "DROP ",
            "DELETE ",
            "UPDATE ",
            "INSERT ",
            "SLEEP(",
            "BENCHMARK(",
            "WAITFOR",
            "UNION ",
            ";--",
            "XP_CMDSHELL",
            "<SCRIPT",
            "ONERROR",
            "/ETC/PASSWD",
            "../",
        ] {
            assert!(!decoded.contains(bad), "{bad:?} in {}", s.uri);
        }
        assert!(
            !s.uri.contains("logout"),
            "followed a logout link: {}",
            s.uri
        );
        assert!(
            !s.uri.starts_with("/login"),
            "submitted the login form: {}",
            s.uri
        );
    }
}

#[test]
fn every_planted_issue_is_found_and_nothing_destructive_is_sent() {
    let site = start(false, &expired_self_signed());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_scan_config(
        dir.path(),
        "allow = [\"127.0.0.0/8\"]\nrate = 40\nmax_requests = 400\ntimeout_seconds = 20",
    );
    let out = mamori(&[
        "scan",
        &site.url(),
        "--profile",
        "standard",
        "--format",
        "json",
        "--config",
        &cfg,
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "vulnerable site: {} requests and TLS connections in {} ms (rate limit 40/s)",
        report["targets"][0]["requests"], report["duration_ms"]
    );
    let found = checks(&report);
    for want in [
        "sqli-error",
        "sqli-boolean",
        "xss-reflected",
        "exposed-git",
        "exposed-env",
        "directory-listing",
        "csp-missing",
        "frame-missing",
        "nosniff-missing",
        "hsts-missing",
        "cookie-flags",
        "cert-expired",
        "cert-untrusted",
        "kev-affected",
        "version-banner",
        "open-redirect",
        "trace-enabled",
        "put-allowed",
    ] {
        assert!(found.contains(want), "{want} not found; found {found:?}");
    }
    let findings = report["targets"][0]["findings"].as_array().unwrap();
    let rc = findings
        .iter()
        .find(|f| {
            f["check"] == "kev-affected" && f["location"].as_str().unwrap().starts_with("roundcube")
        })
        .expect("old Roundcube recognised");
    assert!(
        rc["title"]["en"]
            .as_str()
            .unwrap()
            .contains("Roundcube Webmail 1.4.3"),
        "{rc}"
    );
    let cves: Vec<&str> = rc["cves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        cves.contains(&"CVE-2020-12641") && cves.contains(&"CVE-2023-5631"),
        "{cves:?}"
    );
    let sqli = findings
        .iter()
        .find(|f| f["check"] == "sqli-boolean")
        .unwrap();
    assert!(
        sqli["location"].as_str().unwrap().ends_with("/item?id"),
        "{sqli}"
    );
    let err = findings
        .iter()
        .find(|f| f["check"] == "sqli-error")
        .unwrap();
    assert!(
        err["location"].as_str().unwrap().ends_with("/product?id"),
        "{err}"
    );
    // Each finding explains itself in both languages.
    for f in findings {
        for k in ["title", "explain", "fix"] {
            assert!(!f[k]["ja"].as_str().unwrap().is_empty(), "{f}");
            assert!(!f[k]["en"].as_str().unwrap().is_empty(), "{f}");
        }
    }

    let seen = site.seen();
    assert_harmless(&seen);
    assert!(seen.len() as u64 <= report["targets"][0]["requests"].as_u64().unwrap());
    assert_eq!(
        site.outside_hits.load(Ordering::SeqCst),
        0,
        "left the target's scope"
    );
    // The database is whole: nothing was written.
    let n: i64 = site
        .app
        .db
        .lock()
        .unwrap()
        .query_row("SELECT count(*) FROM products", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}

#[test]
fn the_hardened_site_has_nothing_above_info_and_reports_render_safely() {
    let certs = private_ca();
    let site = start(true, &certs);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), certs.ca_pem.as_ref().unwrap()).unwrap();
    let cfg = write_scan_config(
        dir.path(),
        "allow = [\"127.0.0.1\"]\nrate = 40\nca_file = \"ca.pem\"\ntimeout_seconds = 20",
    );
    let out = mamori(&[
        "scan",
        &site.url(),
        "--profile",
        "standard",
        "--format",
        "json",
        "--config",
        &cfg,
        "-q",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    assert!(
        worst_above_info(&report).is_empty(),
        "{:?}",
        worst_above_info(&report)
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(report["targets"][0]["reachable"].as_bool().unwrap());
    let facts = report["targets"][0]["facts"].to_string();
    assert!(facts.contains("TLS 1.3, TLS 1.2"), "{facts}");
    assert_harmless(&site.seen());

    // The vulnerable site in Japanese HTML: attacker-controlled evidence is escaped.
    let vuln = start(false, &expired_self_signed());
    let html_path = dir.path().join("scan.html");
    let cfg2 = write_scan_config(
        dir.path(),
        "allow = [\"127.0.0.1\"]\nrate = 40\ntimeout_seconds = 20",
    );
    let out = mamori(&[
        "scan",
        &vuln.url(),
        "--profile",
        "standard",
        "--lang",
        "ja",
        "--format",
        "html",
        "--config",
        &cfg2,
        "-q",
        "-o",
        html_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let h = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        h.contains("反射型クロスサイトスクリプティング") && h.contains("対策"),
        "ja text"
    );
    assert!(
        !h.contains("<mmr") && h.contains("&lt;mmr"),
        "marker not escaped"
    );
    assert!(!h.contains("<script"), "script in report");
    // Text in English names the fix.
    let out = mamori(&["scan", &vuln.url(), "--config", &cfg2, "-q"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    assert!(
        t.contains("[high] Git repository exposed") && t.contains("fix: Remove the .git folder"),
        "{t}"
    );
}

#[test]
fn outside_the_allow_list_nothing_is_sent_and_the_exit_code_is_2() {
    let site = start(false, &expired_self_signed());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_scan_config(
        dir.path(),
        "allow = [\"192.0.2.0/24\", \"www.example.co.jp\"]",
    );
    let out = mamori(&["scan", &site.url(), "--config", &cfg, "-q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("outside the allow-list"),
        "{}",
        text(&out.stderr)
    );
    let out = mamori(&["scan", &site.url(), "--config", &cfg, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(site.seen().is_empty());
}

#[test]
fn dry_run_lists_requests_and_sends_none() {
    let site = start(false, &expired_self_signed());
    let out = mamori(&["scan", &site.url(), "--dry-run", "--profile", "standard"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("nothing was sent"));
    assert!(t.contains(&format!("{}.git/HEAD", site.url())), "{t}");
    assert!(
        t.contains("ClientHello TLS 1.0") && t.contains("TRACE"),
        "{t}"
    );
    // Give a stray request time to arrive, then check that none did.
    std::thread::sleep(Duration::from_millis(300));
    assert!(site.seen().is_empty());
}

#[test]
fn request_budget_and_rate_limit_hold_at_the_server() {
    let site = start(false, &expired_self_signed());
    let dir = tempfile::tempdir().unwrap();
    let rate = 5.0;
    let cfg = write_scan_config(
        dir.path(),
        &format!("allow = [\"127.0.0.1\"]\nmax_requests = 15\nrate = {rate}\ntimeout_seconds = 20"),
    );
    let out = mamori(&[
        "scan",
        &site.url(),
        "--profile",
        "standard",
        "--format",
        "json",
        "--config",
        &cfg,
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        checks(&report).contains("budget-spent"),
        "{:?}",
        checks(&report)
    );
    assert_eq!(report["targets"][0]["requests"], 15);
    let seen = site.seen();
    // TLS probes spend from the same budget but are not HTTP requests.
    assert!(
        !seen.is_empty() && seen.len() <= 15,
        "{} requests",
        seen.len()
    );
    let mut at: Vec<Instant> = seen.iter().map(|s| s.at).collect();
    at.sort();
    // Arrival jitter aside, no one-second window holds more than the rate allows.
    for (i, t) in at.iter().enumerate() {
        let n = at[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(n <= rate as usize + 2, "{n} requests within one second");
    }
    let span = at.last().unwrap().duration_since(at[0]);
    let min = Duration::from_secs_f64((at.len() - 1) as f64 / rate * 0.7);
    assert!(span >= min, "{} requests in {span:?}", at.len());
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `serve` with `[scan]`: the allow-listed target is scanned at start, the run is stored and
/// served by `GET /api/v1/scans`, new findings raise one alert, and `/.env` — which the logs
/// show probed — is raised a step and linked to the probe's alert.
#[test]
fn serve_scans_on_schedule_stores_alerts_and_links_probed_paths() {
    use crate::serve::{http, write_config, Server};
    let site = start(false, &expired_self_signed());
    let dir = tempfile::tempdir().unwrap();
    let scan = |targets: &str| {
        format!(
            "[scan]\nallow = [\"127.0.0.1\"]\ntargets = [{targets}]\nprofile = \"standard\"\nrate = 40\nevery = \"7d\"\ntimeout_seconds = 20\n"
        )
    };
    // First without targets: the logs show someone probing /.env.
    let cfg = write_config(dir.path(), &scan(""));
    let srv = Server::start(&cfg, None);
    let line = "203.0.113.7 - - [06/Dec/2026:10:00:00 +0000] \"GET /.env HTTP/1.1\" 404 0 \"-\" \"Mozilla/5.0\"\n";
    let (s, v) = srv.post("/api/v1/upload?name=access.log", &[], line.as_bytes());
    assert_eq!(s, 200, "{v}");
    // Generous: the detection thread may still be loading rules on a loaded machine.
    let probe_id = poll(
        &format!("the probe alert after {v}"),
        Duration::from_secs(90),
        || {
            let (_, v) = srv.get("/api/v1/alerts?limit=1000");
            v["alerts"].as_array()?.first()?["id"].as_i64()
        },
    );
    let (s, v) = srv.get("/api/v1/scans");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false);
    assert_eq!(v["scans"].as_array().unwrap().len(), 0);
    let token = srv.token.clone();
    srv.stop();

    // Then with the target: scanned at start.
    let cfg = write_config(dir.path(), &scan(&format!("{:?}", site.url())));
    let srv = Server::start(&cfg, Some(token));
    let v = poll("a stored scan", Duration::from_secs(120), || {
        let (_, v) = srv.get("/api/v1/scans");
        (!v["scans"].as_array()?.is_empty()).then_some(v)
    });
    assert_eq!(v["enabled"], true);
    let run = &v["scans"][0];
    assert_eq!(run["worst"], "critical", "{run}");
    let findings = run["report"]["targets"][0]["findings"].as_array().unwrap();
    let env = findings
        .iter()
        .find(|f| f["check"] == "exposed-env")
        .unwrap();
    assert_eq!(env["severity"], "critical", "raised from high: {env}");
    assert!(
        env["evidence"]
            .as_str()
            .unwrap()
            .contains(&format!("alerts {probe_id}")),
        "{env}"
    );
    let git = findings
        .iter()
        .find(|f| f["check"] == "exposed-git")
        .unwrap();
    assert_eq!(git["severity"], "high", "not probed, not raised: {git}");
    let stored = v["findings"].as_array().unwrap();
    assert_eq!(stored.len(), findings.len());
    assert!(stored.iter().all(|f| f["first_seen"] == f["last_seen"]));

    let alert = poll("the new-findings alert", Duration::from_secs(60), || {
        let (_, v) = srv.get("/api/v1/alerts?limit=1000");
        v["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["rule_id"] == "mamori.scan.new_findings")
            .cloned()
    });
    assert_eq!(alert["level"], "critical", "{alert}");
    assert!(
        alert["details"]["linked_alerts"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(probe_id)),
        "{alert}"
    );
    assert!(
        alert["details"]["description_ja"]
            .as_str()
            .unwrap()
            .contains("診断"),
        "{alert}"
    );
    // The findings are linked to the alert once it is stored: the snapshot above may predate it.
    poll("findings linked to the alert", Duration::from_secs(30), || {
        let (_, v) = srv.get("/api/v1/scans");
        v["findings"]
            .as_array()?
            .iter()
            .filter(|f| f["severity"] != "info")
            .all(|f| f["alert_id"] == alert["id"])
            .then_some(())
    });

    let (s, _) = srv.get("/api/v1/scans?limit=101");
    assert_eq!(s, 400);
    let (s, _) = http(srv.http, "GET", "/api/v1/scans", None, &[], b"");
    assert_eq!(s, 401);
    let (_, doc) = srv.get("/api/v1/openapi.json");
    assert!(doc["paths"]["/api/v1/scans"]["get"].is_object());
    // The console page needs a session.
    let (s, _) = http(srv.http, "GET", "/scans", None, &[], b"");
    assert_eq!(s, 303);
    srv.stop();
    // Only the target was contacted, with harmless requests.
    assert_harmless(&site.seen());
}
