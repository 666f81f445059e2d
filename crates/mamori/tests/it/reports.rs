//! Issue #18 parts 1–2 end to end: a `serve` run fed with simulated attacks (several
//! incidents, a departed identity, a hostile note and log value), a month of activity
//! aggregates with a source that went silent, and a failed backup check; then the incident
//! report and the monthly audit in ja/en × PDF/HTML through the CLI and the API. PDFs are read
//! back with `pdftotext` and rendered page by page with `pdftoppm` (Debian poppler-utils).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Datelike, DurationRound, TimeDelta, Utc};
use serde_json::Value;

use crate::serve::{http, write_config, Server};
use crate::{mamori, text};

/// Log value and note text that must stay text in HTML and in typst.
const HOSTILE: &str =
    r#"<script>alert(1)</script> #set page(fill: red) #import "/etc/passwd": * ] \ \\"#;

fn poppler() -> bool {
    let ok = Command::new("pdftotext").arg("-v").output().is_ok()
        && Command::new("pdftoppm").arg("-v").output().is_ok();
    if !ok {
        eprintln!("skipped: poppler-utils (pdftotext, pdftoppm) not installed");
    }
    ok
}

fn pdf_text(pdf: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-layout", pdf.to_str().unwrap(), "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Long tokens carry zero-width break opportunities; lines wrap: compare without them.
    text(&out.stdout).replace('\u{200B}', "")
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Renders every page to PNG; returns the page count.
fn render_pages(pdf: &Path, dir: &Path) -> usize {
    let info = Command::new("pdfinfo").arg(pdf).output().unwrap();
    let pages: usize = text(&info.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:").map(|n| n.trim().parse().unwrap()))
        .unwrap();
    let prefix = dir.join(pdf.file_stem().unwrap());
    let out = Command::new("pdftoppm")
        .args([
            "-r",
            "60",
            "-png",
            pdf.to_str().unwrap(),
            prefix.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stem = pdf.file_stem().unwrap().to_string_lossy().into_owned();
    let pngs = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&stem) && n.ends_with(".png") && e.metadata().unwrap().len() > 1000
        })
        .count();
    assert_eq!(pngs, pages, "every page of {} renders", pdf.display());
    pages
}

fn vpn_fail(i: usize, user: &str) -> String {
    format!(
        "<38>1 2026-11-23T01:{:02}:00Z vpn01 vpnd 4242 AUTH [auth@32473 user=\"{user}\" src=\"198.51.100.77\" result=\"failure\" method=\"password\"] authentication failed\n",
        10 + i
    )
}

fn incidents(srv: &Server) -> Vec<Value> {
    let (s, v) = srv.get("/api/v1/incidents?limit=100");
    assert_eq!(s, 200, "{v}");
    v["incidents"].as_array().cloned().unwrap_or_default()
}

/// A month of activity as the pipeline aggregates it: three sources, one of which stopped
/// sending two days before the end, and external addresses with failed logins.
fn write_aggregates(data: &Path) {
    use mamori_store::{AddressDay, SourceHour, SqliteAlertStore};
    let store = SqliteAlertStore::open(&data.join("state.db")).unwrap();
    let now = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap();
    let first = now
        .with_day(1)
        .unwrap()
        .duration_trunc(TimeDelta::days(1))
        .unwrap();
    let mut hours = Vec::new();
    let mut h = first - TimeDelta::days(20);
    while h <= now {
        for (src, kind, n) in [("fw01", "syslog", 120u64), ("dc01", "http", 80)] {
            hours.push(SourceHour {
                source: src.into(),
                kind: kind.into(),
                hour: h,
                events: n,
            });
        }
        if h < now - TimeDelta::hours(50) {
            hours.push(SourceHour {
                source: "nas01-silent".into(),
                kind: "syslog".into(),
                hour: h,
                events: 40,
            });
        }
        h += TimeDelta::hours(1);
    }
    let day = now.date_naive();
    let addrs = vec![
        AddressDay {
            ip: "198.18.77.9".parse().unwrap(),
            day,
            events: 4321,
            auth_failures: 987,
            auth_successes: 1,
            first_seen: now - TimeDelta::hours(3),
        },
        AddressDay {
            ip: "198.51.100.77".parse().unwrap(),
            day,
            events: 120,
            auth_failures: 15,
            auth_successes: 0,
            first_seen: now - TimeDelta::hours(2),
        },
    ];
    store.add_aggregates(&hours, &addrs).unwrap();
}

fn write_failed_backup(data: &Path) {
    use mamori_backup::{CheckRecord, CheckStatus, Finding, History};
    let h = History::open(data).unwrap();
    let now = Utc::now();
    for (name, status, finding) in [
        (
            "nas-daily",
            CheckStatus::Failed,
            Finding::new(
                "restore_mismatch",
                "restore test: 2 files differ from the manifest",
                "復元テスト：2 件のファイルがマニフェストと一致しません",
            ),
        ),
        (
            "restic-offsite",
            CheckStatus::Passed,
            Finding::new(
                "ok",
                "latest snapshot 3 h old",
                "最新スナップショットは 3 時間前",
            ),
        ),
    ] {
        h.record(&CheckRecord {
            name: name.into(),
            kind: "restic".into(),
            started: now - TimeDelta::minutes(10),
            finished: now - TimeDelta::minutes(9),
            status,
            findings: vec![finding],
            details: serde_json::json!({}),
        })
        .unwrap();
    }
}

#[test]
fn incident_and_monthly_reports_from_a_served_month_in_ja_and_en() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let ids = d.join("identities.csv");
    std::fs::write(
        &ids,
        "kind,id,person,status,end_date,created\naccount,kobayashi,小林 (委託),contractor_ended,2026-09-25,\n",
    )
    .unwrap();
    // A real SMTP server (aiosmtpd) for the contact who wants the monthly report.
    let smtp = crate::incidents::Smtp::start();
    if smtp.is_none() {
        eprintln!("skipped: the mailing of the monthly report (aiosmtpd not installed)");
    }
    let mut extra = format!(
        "[analytics]\nidentities = {:?}\n[reports]\nlanguages = [\"en\"]\nformats = [\"html\"]\n",
        ids.display().to_string()
    );
    if let Some(s) = &smtp {
        extra.push_str(&format!(
            "[notify.channels.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"Mamori <mamori@example.jp>\"\n\
             [[notify.contacts]]\nname = \"boss\"\nemail = \"boss@example.jp\"\nlanguage = \"both\"\nchannels = [\"mail\"]\nmin_severity = \"critical\"\nmonthly_report = true\n",
            s.port
        ));
    }
    let cfg = write_config(d, &extra);
    let init = mamori(&["init", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(init.status.code(), Some(0), "{}", text(&init.stderr));
    // A data directory that has watched since the month before last (a fresh one does not
    // report months before its first start: `reports/since`).
    let now = Utc::now();
    let before_last = if now.month() <= 2 {
        format!("{}-{:02}", now.year() - 1, now.month() + 10)
    } else {
        format!("{}-{:02}", now.year(), now.month() - 2)
    };
    std::fs::create_dir_all(data.join("reports")).unwrap();
    std::fs::write(data.join("reports/since"), format!("{before_last}\n")).unwrap();
    let srv = Server::start(&cfg, None);

    // The 1st-of-month duty: last month's audit is written at start (catch-up).
    let last = if now.month() == 1 {
        format!("{}-12", now.year() - 1)
    } else {
        format!("{}-{:02}", now.year(), now.month() - 1)
    };
    let duty = data.join(format!("reports/monthly-{last}-en.html"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !duty.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(duty.exists(), "the monthly duty wrote {}", duty.display());
    if let Some(s) = &smtp {
        // Incident notifications may reach the same server: take the report's mail.
        let mail: Value = loop {
            let m: Value = serde_json::from_str(
                &s.rx
                    .recv_timeout(Duration::from_secs(30))
                    .expect("the monthly report is mailed"),
            )
            .unwrap();
            if m["subject"].as_str().unwrap_or("").contains("monthly") {
                break m;
            }
        };
        assert_eq!(mail["to"], "boss@example.jp", "{mail}");
        assert!(mail["subject"].as_str().unwrap().contains(&last), "{mail}");
        assert_eq!(
            mail["attachments"][0],
            format!("monthly-{last}-en.html"),
            "{mail}"
        );
    }

    // Attacks: a simulated ransomware intrusion and a VPN password spray whose user names
    // carry hostile text; and the departed contractor logging in on the VPN.
    let sim = d.join("sim");
    let out = mamori(&[
        "simulate",
        "ransomware",
        "--out",
        sim.to_str().unwrap(),
        "--days",
        "10",
        "--events-per-day",
        "150",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut uploaded = 0;
    for e in walk(&sim) {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") && name.contains("truth") || name.ends_with(".md") {
            continue;
        }
        let body = std::fs::read(&e).unwrap();
        let (s, v) = srv.post(&format!("/api/v1/upload?name={name}"), &[], &body);
        assert_eq!(s, 200, "{name}: {v}");
        uploaded += 1;
    }
    assert!(uploaded > 0);
    let hostile_user = r#"x<script>\]#set\\"#;
    let mut spray = String::new();
    for i in 0..12 {
        spray.push_str(&vpn_fail(i, if i == 0 { hostile_user } else { "user" }));
        spray = spray.replace("user=\"user\"", &format!("user=\"user{i}\""));
    }
    // The contractor whose contract ended logs in on the VPN.
    spray.push_str("<38>1 2026-10-01T13:05:00.000Z vpn01 vpnd 4242 AUTH [auth@32473 user=\"kobayashi\" src=\"198.51.100.10\" result=\"success\" method=\"password\"] user kobayashi authenticated from 198.51.100.10, tunnel up\n");
    {
        use std::io::Write;
        let mut tcp = std::net::TcpStream::connect(srv.tcp).unwrap();
        tcp.write_all(spray.as_bytes()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut list = incidents(&srv);
    while list.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        list = incidents(&srv);
    }
    assert!(list.len() >= 2, "several incidents: {list:?}");
    let id = list
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .min()
        .unwrap();

    // Work the incident: a hostile note, containment, closing with lessons learned.
    let note = serde_json::json!({ "text": HOSTILE }).to_string();
    let (s, v) = srv.post(
        &format!("/api/v1/incidents/{id}/notes"),
        &[("Content-Type", "application/json")],
        note.as_bytes(),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = srv.post(
        &format!("/api/v1/incidents/{id}/phase"),
        &[("Content-Type", "application/json")],
        br#"{"phase":"containment"}"#,
    );
    assert_eq!(s, 200, "{v}");
    let lessons = serde_json::json!({ "lessons": "MFA on the VPN; alert on new admin accounts. 多要素認証を導入する。" }).to_string();
    let (s, v) = srv.post(
        &format!("/api/v1/incidents/{id}/close"),
        &[("Content-Type", "application/json")],
        lessons.as_bytes(),
    );
    assert_eq!(s, 200, "{v}");

    // The API route: authenticated, HTML and (with a font) PDF.
    let (s, _) = http(
        srv.http,
        "GET",
        &format!("/api/v1/incidents/{id}/report?lang=en&format=html"),
        None,
        &[],
        b"",
    );
    assert_eq!(s, 401, "the report route needs a token");
    let (s, body) = http(
        srv.http,
        "GET",
        &format!("/api/v1/incidents/{id}/report?lang=ja&format=html"),
        Some(&srv.token),
        &[],
        b"",
    );
    assert_eq!(s, 200, "{}", text(&body));
    let html = text(&body);
    assert!(
        html.contains("インシデント報告書") && html.contains("封じ込め"),
        "ja headings"
    );
    // The incident's Japanese title (its first alert's rule `title_ja`), not the English one.
    let listed = list.iter().find(|i| i["id"] == id).unwrap();
    let title_ja = listed["title_ja"]
        .as_str()
        .unwrap_or_else(|| panic!("no Japanese title: {listed}"));
    let rule_ja = title_ja.split(" (").next().unwrap();
    let rule_en = listed["title"]
        .as_str()
        .unwrap()
        .split(" (")
        .next()
        .unwrap();
    assert!(html.contains(rule_ja), "{rule_ja} not in the ja report");
    assert!(!html.contains(rule_en), "{rule_en} in the ja report");
    assert!(!html.contains("<script>"), "no live script in the HTML");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; #set page(fill: red) #import &quot;/etc/passwd&quot;: * ] \\ \\\\"));
    let (s, body) = http(
        srv.http,
        "GET",
        &format!("/api/v1/incidents/{id}/report?lang=en&format=pdf"),
        Some(&srv.token),
        &[],
        b"",
    );
    assert_eq!(s, 200, "{}", text(&body));
    assert!(body.starts_with(b"%PDF-"));
    let (s, body) = http(
        srv.http,
        "GET",
        &format!("/api/v1/incidents/{id}/report?lang=xx"),
        Some(&srv.token),
        &[],
        b"",
    );
    assert_eq!(s, 400, "{}", text(&body));
    let (s, inc) = srv.get(&format!("/api/v1/incidents/{id}"));
    assert_eq!(s, 200, "{inc}");
    let entities: Vec<String> = inc["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["value"].as_str().map(str::to_string))
        .filter(|v| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
        })
        .collect();
    assert!(!entities.is_empty(), "the incident names entities: {inc}");
    assert_eq!(srv.stop(), Some(0));

    // Evidence for the incident (the vault's writer lock is free once the server stopped).
    let bundle = d.join("evidence.tar");
    let ex = mamori(&[
        "evidence",
        "export",
        "--data-dir",
        data.to_str().unwrap(),
        "--incident",
        &id.to_string(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(ex.status.code(), Some(0), "{}", text(&ex.stderr));
    let sha = sha256_hex(&std::fs::read(&bundle).unwrap());

    write_aggregates(&data);
    write_failed_backup(&data);

    let month = format!("{}-{:02}", now.year(), now.month());
    let pdf_ok = poppler();
    let pages_dir = d.join("pages");
    std::fs::create_dir_all(&pages_dir).unwrap();
    for lang in ["ja", "en"] {
        for format in ["html", "pdf"] {
            let inc = d.join(format!("incident-{lang}.{format}"));
            let mon = d.join(format!("monthly-{lang}.{format}"));
            for (args, out) in [
                (vec!["report", "incident", &id.to_string() as &str], &inc),
                (vec!["report", "monthly", "--month", &month], &mon),
            ] {
                let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                a.extend(
                    [
                        "--lang",
                        lang,
                        "--format",
                        format,
                        "--data-dir",
                        data.to_str().unwrap(),
                        "--out",
                        out.to_str().unwrap(),
                    ]
                    .map(String::from),
                );
                a.extend(["--config".to_string(), cfg.display().to_string()]);
                let r = mamori(&a.iter().map(String::as_str).collect::<Vec<_>>());
                assert_eq!(r.status.code(), Some(0), "{a:?}: {}", text(&r.stderr));
            }
            // MAMORI_REPORTS_KEEP=DIR keeps the reports and page images to look at.
            if let Some(keep) = std::env::var_os("MAMORI_REPORTS_KEEP") {
                std::fs::create_dir_all(&keep).unwrap();
                for f in [&inc, &mon] {
                    std::fs::copy(f, Path::new(&keep).join(f.file_name().unwrap())).unwrap();
                }
            }
            let (itext, mtext) = if format == "html" {
                (
                    std::fs::read_to_string(&inc).unwrap(),
                    std::fs::read_to_string(&mon).unwrap(),
                )
            } else {
                if !pdf_ok {
                    continue;
                }
                let pi = render_pages(&inc, &pages_dir);
                let pm = render_pages(&mon, &pages_dir);
                assert!(pi >= 2 && pm >= 3, "pages: incident {pi}, monthly {pm}");
                (pdf_text(&inc), pdf_text(&mon))
            };
            let ja = lang == "ja";
            for h in if ja {
                [
                    "インシデント報告書",
                    "時系列",
                    "検知と分析",
                    "封じ込め・根絶・復旧",
                    "証拠",
                    "教訓",
                    "付録",
                ]
            } else {
                [
                    "Incident report",
                    "Timeline",
                    "Detection and analysis",
                    "Containment, eradication and recovery",
                    "Evidence",
                    "Lessons learned",
                    "Appendix",
                ]
            } {
                assert!(itext.contains(h), "{lang} {format}: incident heading {h}");
            }
            assert!(
                squash(&itext).contains(&sha),
                "{lang} {format}: bundle SHA-256 {sha}"
            );
            for e in &entities {
                assert!(
                    squash(&itext).contains(e.as_str()),
                    "{lang} {format}: entity {e}"
                );
            }
            assert!(
                itext.contains("多要素認証を導入する"),
                "{lang} {format}: lessons learned"
            );
            assert!(
                squash(&itext).contains(&squash("#set page(fill: red) #import")),
                "{lang} {format}: the hostile note is text"
            );
            for h in if ja {
                [
                    "月次セキュリティ監査報告書",
                    "経営層向けサマリー",
                    "不審な通信",
                    "ログの異常",
                    "アカウントと鍵",
                    "バックアップ",
                    "検知",
                ]
            } else {
                [
                    "Monthly security audit",
                    "Summary for management",
                    "Suspicious connections",
                    "Log anomalies",
                    "Accounts and keys",
                    "Backups",
                    "Detection",
                ]
            } {
                assert!(mtext.contains(h), "{lang} {format}: monthly heading {h}");
            }
            assert!(
                mtext.contains("nas01-silent"),
                "{lang} {format}: the silent source"
            );
            assert!(
                mtext.contains("nas-daily"),
                "{lang} {format}: the failed backup check"
            );
            assert!(mtext.contains(if ja { "失敗" } else { "FAILED" }));
            assert!(
                mtext.contains("198.18.77.9") && mtext.contains("4,321") && mtext.contains("987"),
                "{lang} {format}: address volume and failed logins"
            );
            assert!(
                mtext.contains("kobayashi"),
                "{lang} {format}: the departed identity's activity"
            );
            if format == "html" {
                assert!(
                    !itext.contains("<script>") && !mtext.contains("<script>"),
                    "no live script"
                );
                assert!(itext.contains("Content-Security-Policy"));
            }
        }
    }
    if pdf_ok {
        eprintln!("reports: pages rendered in {}", pages_dir.display());
    }
    // Bad arguments are usage errors with a clear message.
    let r = mamori(&[
        "report",
        "monthly",
        "--month",
        "2026-13",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        d.join("x.pdf").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("bad month"), "{}", text(&r.stderr));
    let r = mamori(&[
        "report",
        "incident",
        "999",
        "--data-dir",
        d.join("nothing").to_str().unwrap(),
        "--out",
        d.join("x.pdf").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        text(&r.stderr).contains("no incident database"),
        "{}",
        text(&r.stderr)
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn sha256_hex(b: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
