use std::process::Command;

use chrono::Utc;
use mamori_backup::{BackupConfig, BackupsSettings, CheckStatus};

use crate::*;

fn borg(lab: &Lab) -> Command {
    let mut c = Command::new("borg");
    c.env("BORG_PASSPHRASE", "correct horse battery staple")
        .env("BORG_BASE_DIR", lab.path("borg-home"))
        .current_dir(lab.dir.path());
    c
}

fn repo(lab: &Lab) -> String {
    lab.path("borg").display().to_string()
}

fn setup() -> Option<(Lab, Vec<BackupConfig>)> {
    if !have("borg") {
        return None;
    }
    let lab = Lab::new();
    sh(borg(&lab)
        .args(["init", "--encryption=repokey"])
        .arg(repo(&lab)));
    sh(borg(&lab)
        .arg("create")
        .arg(format!("{}::first", repo(&lab)))
        .arg("src"));
    let e = lab.entry(&format!(
        "name = \"fs01-borg\"\nkind = \"borg\"\nrepository = {:?}\npassword_file = {:?}\nsource = {:?}\nrestore_sample = 4\nsystem = \"fs01\"\nmedia = \"cloud\"\noffsite = true\noffline = true\n",
        repo(&lab),
        lab.path("password"),
        lab.src()
    ));
    Some((lab, vec![e]))
}

#[test]
fn a_good_repository_passes() {
    let Some((lab, entries)) = setup() else {
        return;
    };
    let r = lab.check(&entries, &BackupsSettings::default(), "fs01-borg");
    assert_eq!(problems(&r), Vec::<&str>::new(), "{r:#?}");
    assert_eq!(r.details["snapshots"], 1);
    assert_eq!(r.details["latest_name"], "first");
    assert_eq!(r.details["restored"], 4);
    assert_eq!(
        r.details["restored_compared_with_source"], 4,
        "{:#}",
        r.details
    );
}

#[test]
fn a_deleted_archive_is_reported() {
    let Some((lab, entries)) = setup() else {
        return;
    };
    sh(borg(&lab)
        .arg("create")
        .arg(format!("{}::second", repo(&lab)))
        .arg("src"));
    let settings = BackupsSettings::default();
    let first = lab.check(&entries, &settings, "fs01-borg");
    assert_ne!(first.status, CheckStatus::Failed, "{first:#?}");
    assert_eq!(first.details["latest_name"], "second");
    sh(borg(&lab)
        .arg("delete")
        .arg(format!("{}::second", repo(&lab))));
    let r = lab.check(&entries, &settings, "fs01-borg");
    assert_failed_with(&r, "borg.latest_deleted");
    assert_failed_with(&r, "borg.count_collapsed");
}

#[test]
fn a_corrupted_segment_is_reported() {
    let Some((lab, entries)) = setup() else {
        return;
    };
    // The largest segment file holds the file data.
    let mut segs: Vec<_> = walk(&lab.path("borg/data"));
    segs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    corrupt(segs.last().unwrap());
    let r = lab.check(&entries, &BackupsSettings::default(), "fs01-borg");
    assert_failed_with(&r, "borg.check_failed");
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_stale_repository_is_reported_with_a_configured_clock() {
    let Some((lab, entries)) = setup() else {
        return;
    };
    let settings = BackupsSettings {
        clock: Some(Utc::now() + chrono::Duration::days(2)),
    };
    let r = lab.check(&entries, &settings, "fs01-borg");
    assert_failed_with(&r, "borg.snapshot_stale");
}

#[test]
fn the_restore_test_catches_a_changed_file() {
    let Some((lab, mut entries)) = setup() else {
        return;
    };
    entries[0].restore_sample = 100;
    let p = lab.src().join("docs/contract.pdf");
    let mut b = std::fs::read(&p).unwrap();
    b[40] ^= 1;
    std::fs::write(&p, b).unwrap();
    set_mtime(
        &p,
        std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
    );
    let r = lab.check(&entries, &BackupsSettings::default(), "fs01-borg");
    assert_failed_with(&r, "restore.mismatch");
    assert!(
        r.findings.iter().any(|f| f.en.contains("contract.pdf")),
        "{r:#?}"
    );
}
