use std::time::{Duration, SystemTime};

use chrono::Utc;
use mamori_backup::{BackupConfig, BackupsSettings, CheckStatus};
use rand::RngCore;

use crate::*;

/// A NAS share of office files, as a backup job leaves it.
fn setup() -> (Lab, Vec<BackupConfig>) {
    let lab = Lab::new();
    let share = lab.path("nas");
    std::fs::create_dir_all(share.join("経理")).unwrap();
    for i in 0..6 {
        std::fs::write(
            share.join(format!("経理/report-{i}.pdf")),
            format!("%PDF-1.7\n1 0 obj << /Title (report {i}) >>\n").repeat(80),
        )
        .unwrap();
        std::fs::write(
            share.join(format!("minutes-{i}.docx")),
            [
                b"PK\x03\x04".as_slice(),
                &b"word/document.xml minutes ".repeat(100),
            ]
            .concat(),
        )
        .unwrap();
        std::fs::write(
            share.join(format!("ledger-{i}.csv")),
            "date,account,amount\n2026-11-02,売上,120000\n".repeat(60),
        )
        .unwrap();
    }
    let e = lab.entry(&format!(
        "name = \"nas-share\"\nkind = \"directory\"\nrepository = {:?}\nrestore_sample = 3\nmedia = \"nas\"\n",
        share.display().to_string()
    ));
    (lab, vec![e])
}

#[test]
fn a_good_directory_passes_and_gets_a_signed_manifest() {
    let (lab, entries) = setup();
    let s = BackupsSettings::default();
    let r = lab.check(&entries, &s, "nas-share");
    assert_eq!(problems(&r), Vec::<&str>::new(), "{r:#?}");
    assert_eq!(r.details["files"], 18);
    assert_eq!(r.details["first_run"], true);
    let (json, sig) = mamori_backup::manifest_paths(&lab.data(), "nas-share");
    assert!(json.exists() && sig.exists());
    // Second run: nothing changed, a sample is restored and compared.
    let r = lab.check(&entries, &s, "nas-share");
    assert_eq!(problems(&r), Vec::<&str>::new(), "{r:#?}");
    assert_eq!(r.details["hashed"], 0);
    assert_eq!(r.details["restored"], 3);
    // New backup files are normal.
    std::fs::write(lab.path("nas/ledger-new.csv"), "date,account\n".repeat(10)).unwrap();
    let r = lab.check(&entries, &s, "nas-share");
    assert_eq!(problems(&r), Vec::<&str>::new(), "{r:#?}");
    assert_eq!(r.details["added"], 1);
    assert!(codes(&r).contains(&"dir.changed"));
}

/// What a ransomware script does to a share: random bytes over the files, a `.locked`
/// extension, and a note.
fn encrypt(share: &std::path::Path) {
    let mut rng = rand::thread_rng();
    for e in walk(share) {
        let len = std::fs::metadata(&e).unwrap().len() as usize;
        let mut b = vec![0u8; len.max(2048)];
        rng.fill_bytes(&mut b);
        std::fs::write(&e, &b).unwrap();
        let mut locked = e.clone().into_os_string();
        locked.push(".locked");
        std::fs::rename(&e, locked).unwrap();
    }
    std::fs::write(
        share.join("README_DECRYPT.txt"),
        "Your files are encrypted. Pay 2 BTC.",
    )
    .unwrap();
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
fn an_encrypted_directory_is_reported() {
    let (lab, entries) = setup();
    let s = BackupsSettings::default();
    assert_ne!(
        lab.check(&entries, &s, "nas-share").status,
        CheckStatus::Failed
    );
    encrypt(&lab.path("nas"));
    let r = lab.check(&entries, &s, "nas-share");
    assert_failed_with(&r, "dir.ransom_note");
    assert_failed_with(&r, "dir.mass_extension_change");
    assert_failed_with(&r, "dir.encryption_burst");
    let note = r
        .findings
        .iter()
        .find(|f| f.code == "dir.ransom_note")
        .unwrap();
    assert!(
        note.en.contains("README_DECRYPT.txt") && note.ja.contains("身代金"),
        "{note:?}"
    );
    // The manifest keeps the last good state: the next run still says so.
    assert_eq!(r.details["manifest_updated"], false);
    let again = lab.check(&entries, &s, "nas-share");
    assert_failed_with(&again, "dir.mass_extension_change");
}

#[test]
fn files_encrypted_in_place_are_reported_by_entropy_and_magic_bytes() {
    let (lab, entries) = setup();
    let s = BackupsSettings::default();
    lab.check(&entries, &s, "nas-share");
    let mut rng = rand::thread_rng();
    for name in [
        "経理/report-1.pdf",
        "minutes-2.docx",
        "ledger-3.csv",
        "ledger-4.csv",
    ] {
        let p = lab.path("nas").join(name);
        let mut b = vec![0u8; std::fs::metadata(&p).unwrap().len() as usize];
        rng.fill_bytes(&mut b);
        std::fs::write(&p, b).unwrap();
    }
    let r = lab.check(&entries, &s, "nas-share");
    assert_failed_with(&r, "dir.encryption_burst");
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "dir.encryption_burst")
        .unwrap();
    assert!(
        f.en.contains("report-1.pdf") && f.en.contains("ledger-3.csv"),
        "{}",
        f.en
    );
    assert!(f.en.contains("file signature"), "{}", f.en);
}

#[test]
fn the_restore_test_catches_a_file_changed_under_the_same_size_and_time() {
    let (lab, mut entries) = setup();
    entries[0].restore_sample = 100;
    let s = BackupsSettings::default();
    lab.check(&entries, &s, "nas-share");
    let p = lab.path("nas/ledger-2.csv");
    let t = std::fs::metadata(&p).unwrap().modified().unwrap();
    let mut b = std::fs::read(&p).unwrap();
    b[25] ^= 1;
    std::fs::write(&p, b).unwrap();
    set_mtime(&p, t);
    let r = lab.check(&entries, &s, "nas-share");
    assert_failed_with(&r, "restore.mismatch");
    assert!(r.findings.iter().any(|f| f.en.contains("ledger-2.csv")));
}

#[test]
fn a_tampered_manifest_is_not_trusted() {
    let (lab, entries) = setup();
    let s = BackupsSettings::default();
    lab.check(&entries, &s, "nas-share");
    let (json, _) = mamori_backup::manifest_paths(&lab.data(), "nas-share");
    let text = std::fs::read_to_string(&json)
        .unwrap()
        .replacen("\"size\":", "\"size\":1", 1);
    std::fs::write(&json, text).unwrap();
    let r = lab.check(&entries, &s, "nas-share");
    assert_failed_with(&r, "dir.manifest_untrusted");
}

#[test]
fn mass_deletion_and_staleness_are_reported() {
    let (lab, entries) = setup();
    let s = BackupsSettings::default();
    lab.check(&entries, &s, "nas-share");
    for i in 0..6 {
        std::fs::remove_file(lab.path(&format!("nas/minutes-{i}.docx"))).unwrap();
        std::fs::remove_file(lab.path(&format!("nas/ledger-{i}.csv"))).unwrap();
    }
    let r = lab.check(&entries, &s, "nas-share");
    assert_failed_with(&r, "dir.mass_deletion");

    let (lab, entries) = setup();
    for p in walk(&lab.path("nas")) {
        set_mtime(&p, SystemTime::now() - Duration::from_secs(5 * 86400));
    }
    let r = lab.check(
        &entries,
        &BackupsSettings {
            clock: Some(Utc::now()),
        },
        "nas-share",
    );
    assert_failed_with(&r, "dir.stale");
}
