//! `mamori backup check` and the backup checks of `mamori serve`, on the real binary, with
//! real directories and (when installed) a real restic repository.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{http, write_config, Server};
use crate::{mamori, text};

/// A backup share of office files.
fn share(dir: &Path) -> PathBuf {
    let s = dir.join("nas");
    std::fs::create_dir_all(s.join("経理")).unwrap();
    for i in 0..5 {
        std::fs::write(
            s.join(format!("経理/invoice-{i}.pdf")),
            format!("%PDF-1.7\n<< /Title (invoice {i}) >>\n").repeat(60),
        )
        .unwrap();
        std::fs::write(
            s.join(format!("sales-{i}.csv")),
            "date,customer,amount\n2026-11-02,山田商事,120000\n".repeat(50),
        )
        .unwrap();
        std::fs::write(
            s.join(format!("minutes-{i}.docx")),
            [b"PK\x03\x04".as_slice(), &b"word/document.xml ".repeat(80)].concat(),
        )
        .unwrap();
    }
    s
}

/// What a ransomware script does: random bytes over every file, `.locked`, a note.
fn encrypt(share: &Path) {
    use rand::RngCore;
    let mut rng = rand::thread_rng();
    let mut files = Vec::new();
    let mut stack = vec![share.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    for f in files {
        let mut b = vec![0u8; 4096];
        rng.fill_bytes(&mut b);
        std::fs::write(&f, &b).unwrap();
        let mut to = f.clone().into_os_string();
        to.push(".locked");
        std::fs::rename(&f, to).unwrap();
    }
    std::fs::write(
        share.join("README_DECRYPT.txt"),
        "All your files are encrypted.",
    )
    .unwrap();
}

fn dir_entry(name: &str, path: &Path, hosts: &str) -> String {
    format!(
        "[[backup]]\nname = \"{name}\"\nkind = \"directory\"\nrepository = {:?}\nmedia = \"nas\"\nsystem = \"fs01\"\nhosts = [{hosts}]\nrestore_sample = 3\n",
        path.display().to_string()
    )
}

fn write_cli_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("backup.toml");
    std::fs::write(
        &p,
        format!(
            "data_dir = {:?}\n{body}",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    p
}

fn check(cfg: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["backup", "check", "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = mamori(&args);
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

#[test]
fn cli_exit_codes_follow_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let nas = share(dir.path());
    let cfg = write_cli_config(dir.path(), &dir_entry("fs01-nas", &nas, "\"FS01\""));

    // A good share: 0, with the 3-2-1 gaps said plainly.
    let (code, out, err) = check(&cfg, &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("fs01-nas  directory  WARNING"), "{out}");
    assert!(out.contains("no copy is kept off-site"), "{out}");
    let (code, out, _) = check(&cfg, &["--lang", "ja"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("遠隔地に保管されたコピーがありません"),
        "{out}"
    );

    // Encrypted: 1, with the reasons, in JSON too.
    encrypt(&nas);
    let (code, out, err) = check(&cfg, &["--format", "json"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["status"], "failed");
    let codes: Vec<&str> = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    for c in ["dir.ransom_note", "dir.mass_extension_change"] {
        assert!(codes.contains(&c), "{c} in {codes:?}");
    }
    let (code, out, _) = check(&cfg, &["fs01-nas", "--lang", "ja"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("失敗") && out.contains("README_DECRYPT.txt"),
        "{out}"
    );

    // Usage and configuration errors: 2.
    let (code, _, err) = check(&cfg, &["no-such-backup"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no-such-backup") && err.contains("fs01-nas"),
        "{err}"
    );
    let empty = write_cli_config(dir.path(), "");
    let (code, _, err) = check(&empty, &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no [[backup]] entries"), "{err}");
    // A password is never a shell string.
    let bad = write_cli_config(
        dir.path(),
        "[[backup]]\nname = \"x\"\nkind = \"restic\"\nrepository = \"/r\"\npassword_command = \"cat /etc/pw\"\n",
    );
    let (code, _, err) = check(&bad, &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("password_command"), "{err}");
    let (code, _, err) = check(&cfg, &["--format", "xml"]);
    assert_eq!(code, Some(2), "{err}");
}

fn have_restic() -> bool {
    let ok = Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: restic not installed");
    }
    ok
}

/// Runs restic on `repo` with the password in `pw`.
fn run_restic(repo: &Path, pw: &Path, args: &[&str]) -> String {
    let o = Command::new("restic")
        .arg("--repo")
        .arg(repo)
        .arg("--no-cache")
        .args(args)
        .env("RESTIC_PASSWORD_FILE", pw)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

/// A restic repository `name` with `snapshots` snapshots of a small source folder, and its
/// `[[backup]]` entry (with `extra` keys).
fn restic_repo(
    dir: &Path,
    name: &str,
    snapshots: usize,
    extra: &str,
) -> (PathBuf, PathBuf, String) {
    let repo = dir.join(name);
    let pw = dir.join(format!("{name}.pass"));
    std::fs::write(&pw, "s3cret-pass\n").unwrap();
    let src = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(&src).unwrap();
    run_restic(&repo, &pw, &["init", "--quiet"]);
    for i in 0..snapshots {
        let dump = format!("INSERT INTO t VALUES ({i});\n").repeat(100);
        std::fs::write(src.join("db-dump.sql"), dump).unwrap();
        run_restic(&repo, &pw, &["backup", "--quiet", src.to_str().unwrap()]);
    }
    let entry = format!(
        "[[backup]]\nname = \"{name}\"\nkind = \"restic\"\nrepository = {:?}\npassword_file = {:?}\nsystem = \"db01\"\nmedia = \"cloud\"\noffsite = true\n{extra}",
        repo.display().to_string(),
        pw.display().to_string()
    );
    (repo, pw, entry)
}

/// Flips bytes in the middle of every pack file of a restic repository.
fn corrupt_packs(repo: &Path) {
    for d in std::fs::read_dir(repo.join("data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let mut perms = std::fs::metadata(&p).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&p, perms).unwrap();
            let mut b = std::fs::read(&p).unwrap();
            let mid = b.len() / 2;
            for x in &mut b[mid..mid + 8] {
                *x ^= 0x5a;
            }
            std::fs::write(&p, b).unwrap();
        }
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The finding codes of the backup alert of `name`.
fn alert_codes(alerts: &[Value], name: &str) -> Vec<String> {
    let a = alerts
        .iter()
        .find(|a| a["details"]["backup"][0] == name)
        .unwrap_or_else(|| panic!("no alert for {name} in {alerts:#?}"));
    a["details"]["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

fn backup_alerts(srv: &Server) -> Vec<Value> {
    let (s, v) = srv.get("/api/v1/alerts?limit=1000");
    assert_eq!(s, 200, "{v}");
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule_id"] == "mamori.backup.check_failed")
        .cloned()
        .collect()
}

#[test]
fn serve_checks_on_schedule_alerts_on_failure_and_links_deletion_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let good = share(&dir.path().join("good"));
    let bad = share(&dir.path().join("bad"));
    encrypt(&bad);
    // Three restic repositories: one stale (the clock below is three days ahead and it keeps
    // the default max_age), one with corrupted pack files, one whose latest snapshot will be
    // deleted.
    let restic = have_restic().then(|| {
        let (_, _, stale) = restic_repo(dir.path(), "db01-restic", 1, "");
        let (repo, _, corrupt) = restic_repo(
            dir.path(),
            "db02-restic",
            1,
            "max_age = \"30d\"\nread_data_percent = 100\n",
        );
        corrupt_packs(&repo);
        let (repo3, pw3, deleted) =
            restic_repo(dir.path(), "db03-restic", 2, "max_age = \"30d\"\n");
        (format!("{stale}{corrupt}{deleted}"), repo3, pw3)
    });
    // The clock is set three days ahead.
    let mut extra = format!(
        "[backups]\nclock = {:?}\n{}{}",
        (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339(),
        dir_entry("fs01-nas", &good, "\"FS01\""),
        dir_entry("fs02-nas", &bad, "\"FS02\""),
    );
    // The directory entries judge freshness too: their files are new, the clock is ahead.
    extra = extra.replace(
        "restore_sample = 3\n",
        "restore_sample = 3\nmax_age = \"7d\"\n",
    );
    if let Some((r, ..)) = &restic {
        extra.push_str(r);
    }
    let cfg = write_config(dir.path(), &extra);
    let srv = Server::start(&cfg, None);
    let want = if restic.is_some() { 5 } else { 2 };

    // Every entry is checked at start.
    let list = wait_for("the first checks", Duration::from_secs(120), || {
        let (s, v) = srv.get("/api/v1/backups");
        assert_eq!(s, 200, "{v}");
        let done = v["backups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["latest"].is_object())
            .count();
        (done == want).then_some(v)
    });
    let by_name = |n: &str| {
        list["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == n)
            .unwrap()
            .clone()
    };
    assert_ne!(
        by_name("fs01-nas")["latest"]["status"],
        "failed",
        "{list:#}"
    );
    let bad_latest = &by_name("fs02-nas")["latest"];
    assert_eq!(bad_latest["status"], "failed");
    assert!(bad_latest["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["code"] == "dir.ransom_note"));
    assert_eq!(
        list["systems"].as_array().unwrap().len(),
        if restic.is_some() { 2 } else { 1 }
    );

    // A failed check is an alert, in both languages, naming its backup.
    // Failing at start: fs02-nas (encrypted); with restic db01 (stale) and db02 (corrupt).
    let failing = if restic.is_some() { 3 } else { 1 };
    let alerts = wait_for("the backup alerts", Duration::from_secs(10), || {
        let a = backup_alerts(&srv);
        (a.len() == failing).then_some(a)
    });
    let fs02 = alerts
        .iter()
        .find(|a| a["details"]["backup"][0] == "fs02-nas")
        .expect("fs02 alert");
    assert_eq!(fs02["level"], "critical");
    assert!(fs02["details"]["description"]
        .as_str()
        .unwrap()
        .contains("ransom-note"));
    assert!(fs02["details"]["description_ja"]
        .as_str()
        .unwrap()
        .contains("身代金"));
    if let Some((_, repo3, pw3)) = &restic {
        assert!(alert_codes(&alerts, "db01-restic").contains(&"restic.snapshot_stale".into()));
        assert!(alert_codes(&alerts, "db02-restic").contains(&"restic.check_failed".into()));
        let db03 = by_name("db03-restic");
        assert_ne!(db03["latest"]["status"], "failed", "{list:#}");
        // The newest snapshot of db03 is deleted: the next check says so, and alerts.
        let latest = db03["latest"]["details"]["latest_id"].as_str().unwrap();
        run_restic(repo3, pw3, &["forget", "--quiet", latest]);
        let (s, r) = srv.post("/api/v1/backups/db03-restic/check?wait=true", &[], b"");
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["status"], "failed");
        let codes = alert_codes(&backup_alerts(&srv), "db03-restic");
        assert!(codes.contains(&"restic.latest_deleted".into()), "{codes:?}");
        let secrets =
            serde_json::to_string(&list).unwrap() + &serde_json::to_string(&alerts).unwrap();
        assert!(
            !secrets.contains("s3cret-pass"),
            "the password never leaves the server"
        );
    }

    // Run now: the same day's failure counts on the same alert.
    let (s, r) = srv.post("/api/v1/backups/fs02-nas/check?wait=true", &[], b"");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "failed");
    let again = backup_alerts(&srv);
    let expected = alerts.len() + usize::from(restic.is_some());
    assert_eq!(again.len(), expected, "one alert per backup and day");
    let fs02 = again
        .iter()
        .find(|a| a["details"]["backup"][0] == "fs02-nas")
        .unwrap();
    assert_eq!(fs02["count"], 2, "{fs02:#}");
    let (s, _) = srv.post("/api/v1/backups/nope/check", &[], b"");
    assert_eq!(s, 404);
    let (s, _) = srv.post("/api/v1/backups/fs01-nas/check", &[], b"");
    assert_eq!(s, 202);
    for (m, p) in [
        ("GET", "/api/v1/backups"),
        ("POST", "/api/v1/backups/fs01-nas/check"),
    ] {
        let (s, _) = http(srv.http, m, p, None, &[], b"");
        assert_eq!(s, 401, "{m} {p} without a token");
    }
    let (_, doc) = srv.get("/api/v1/openapi.json");
    assert!(doc["paths"]["/api/v1/backups"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/backups/{name}/check"]["post"].is_object());

    // `vssadmin delete shadows` on FS01 is linked to FS01's backup entry.
    let line = r#"{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"FS01.corp.local","TimeCreated":"2026-12-06T10:00:00Z","Image":"C:\\Windows\\System32\\vssadmin.exe","CommandLine":"vssadmin.exe delete shadows /all /quiet"}"#;
    let (s, v) = srv.post(
        "/api/v1/ingest",
        &[("Content-Type", "application/x-ndjson")],
        line.as_bytes(),
    );
    assert_eq!(s, 200, "{v}");
    let linked = wait_for("the deletion alert", Duration::from_secs(10), || {
        let (_, v) = srv.get("/api/v1/alerts?limit=1000");
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["title"] == "Backup Or Shadow Copy Deletion")
            .cloned()
    });
    assert_eq!(
        linked["details"]["backup"],
        serde_json::json!(["fs01-nas"]),
        "{linked:#}"
    );
    srv.stop();
}
