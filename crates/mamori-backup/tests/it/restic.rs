use std::process::Command;

use chrono::Utc;
use mamori_backup::{BackupConfig, BackupsSettings, CheckStatus};

use crate::*;

fn restic(lab: &Lab) -> Command {
    let mut c = Command::new("restic");
    c.arg("--repo")
        .arg(lab.path("restic"))
        .arg("--no-cache")
        .env("RESTIC_PASSWORD_FILE", lab.path("password"));
    c
}

fn backup(lab: &Lab) -> String {
    let out = sh(restic(lab)
        .args(["--json", "backup", "--quiet"])
        .arg(lab.src()));
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    v["snapshot_id"].as_str().unwrap().to_string()
}

fn setup() -> Option<(Lab, Vec<BackupConfig>)> {
    if !have("restic") {
        return None;
    }
    let lab = Lab::new();
    sh(restic(&lab).args(["init", "--quiet"]));
    backup(&lab);
    let e = lab.entry(&format!(
        "name = \"fs01-restic\"\nkind = \"restic\"\nrepository = {:?}\npassword_file = {:?}\nsource = {:?}\nrestore_sample = 4\nread_data_percent = 50\nhosts = [\"FS01\"]\n",
        lab.path("restic").display().to_string(),
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
    let r = lab.check(&entries, &BackupsSettings::default(), "fs01-restic");
    assert_eq!(problems(&r), Vec::<&str>::new(), "{r:#?}");
    // A lone copy breaks 3-2-1: a warning, said plainly, not a failure.
    assert_eq!(r.status, CheckStatus::Warning);
    assert!(codes(&r).contains(&"rule321.offsite"));
    assert_eq!(r.details["snapshots"], 1);
    assert!(r.details["total_size"].as_u64().unwrap() > 0);
    assert_eq!(r.details["restored"], 4);
    assert_eq!(
        r.details["restored_compared_with_source"], 4,
        "{:#}",
        r.details
    );
}

#[test]
fn a_deleted_snapshot_is_reported() {
    let Some((lab, entries)) = setup() else {
        return;
    };
    let latest = backup(&lab);
    let settings = BackupsSettings::default();
    let first = lab.check(&entries, &settings, "fs01-restic");
    assert_ne!(first.status, CheckStatus::Failed, "{first:#?}");
    let full = first.details["latest_id"].as_str().unwrap().to_string();
    assert!(
        full.starts_with(&latest),
        "{full} is the snapshot {latest} just made"
    );
    sh(restic(&lab).args(["forget", "--quiet", &latest]));
    let r = lab.check(&entries, &settings, "fs01-restic");
    assert_failed_with(&r, "restic.latest_deleted");
    assert_failed_with(&r, "restic.count_collapsed");
    assert!(r.findings.iter().any(|f| f.en.contains(&full)));
}

#[test]
fn a_corrupted_pack_file_is_reported() {
    let Some((lab, mut entries)) = setup() else {
        return;
    };
    entries[0].read_data_percent = 100;
    let mut packs = Vec::new();
    for d in std::fs::read_dir(lab.path("restic/data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            packs.push(f.unwrap().path());
        }
    }
    assert!(!packs.is_empty());
    for p in &packs {
        corrupt(p);
    }
    let r = lab.check(&entries, &BackupsSettings::default(), "fs01-restic");
    assert_failed_with(&r, "restic.check_failed");
}

#[test]
fn a_stale_repository_is_reported_with_a_configured_clock() {
    let Some((lab, entries)) = setup() else {
        return;
    };
    let settings = BackupsSettings {
        clock: Some(Utc::now() + chrono::Duration::days(3)),
    };
    let r = lab.check(&entries, &settings, "fs01-restic");
    assert_failed_with(&r, "restic.snapshot_stale");
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "restic.snapshot_stale")
        .unwrap();
    assert!(f.en.contains("older than the allowed 26 hours"), "{}", f.en);
}

#[test]
fn the_restore_test_catches_a_changed_file() {
    let Some((lab, mut entries)) = setup() else {
        return;
    };
    entries[0].restore_sample = 100;
    // The original changes under the same size and an old time: the backup and the original
    // no longer agree although nobody edited the file since the backup.
    let p = lab.src().join("invoice-03.csv");
    let mut b = std::fs::read(&p).unwrap();
    b[30] ^= 1;
    std::fs::write(&p, b).unwrap();
    set_mtime(
        &p,
        std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
    );
    let r = lab.check(&entries, &BackupsSettings::default(), "fs01-restic");
    assert_failed_with(&r, "restore.mismatch");
    assert!(
        r.findings.iter().any(|f| f.en.contains("invoice-03.csv")),
        "{r:#?}"
    );
}

#[test]
fn a_wrong_password_and_a_missing_repository_fail_with_a_reason() {
    let Some((lab, mut entries)) = setup() else {
        return;
    };
    std::fs::write(lab.path("password"), "wrong\n").unwrap();
    let r = lab.check(&entries, &BackupsSettings::default(), "fs01-restic");
    assert_failed_with(&r, "restic.command_failed");
    entries[0].repository = lab.path("nowhere").display().to_string();
    let r = lab.check(&entries, &BackupsSettings::default(), "fs01-restic");
    assert_failed_with(&r, "restic.command_failed");
    // The password never appears in what is stored.
    let h = mamori_backup::History::open(&lab.data()).unwrap();
    let all = h
        .between(
            Utc::now() - chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(1),
        )
        .unwrap();
    assert!(!serde_json::to_string(&all)
        .unwrap()
        .contains("correct horse"));
}
