//! Checks against real restic and Borg repositories and real directories, made by the real
//! tools in temporary directories. A test whose tool is missing prints
//! `skipped: restic not installed` (or borg) and passes.

mod borg;
mod directory;
mod restic;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use mamori_backup::{BackupConfig, BackupsSettings, CheckRecord, CheckStatus, Checker, History};

pub(crate) fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: {tool} not installed");
    }
    ok
}

/// Runs a tool and panics with its output when it fails.
pub(crate) fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().expect("tool starts");
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A scratch area: `src/` (the original data), the repositories, and the data directory.
pub(crate) struct Lab {
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub(crate) fn new() -> Lab {
        let lab = Lab {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(lab.src()).unwrap();
        std::fs::create_dir_all(lab.data()).unwrap();
        std::fs::write(lab.path("password"), "correct horse battery staple\n").unwrap();
        for i in 0..12 {
            std::fs::write(
                lab.src().join(format!("invoice-{i:02}.csv")),
                format!(
                    "date,customer,amount\n2026-11-{:02},株式会社{i},{}\n",
                    i + 1,
                    1000 * i
                )
                .repeat(20),
            )
            .unwrap();
        }
        std::fs::create_dir_all(lab.src().join("docs")).unwrap();
        std::fs::write(
            lab.src().join("docs/contract.pdf"),
            b"%PDF-1.7\n% contract\n".repeat(50),
        )
        .unwrap();
        // Old enough that a restore test may compare it with the original.
        for dir in [lab.src(), lab.src().join("docs")] {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    set_mtime(&p, SystemTime::now() - Duration::from_secs(3600));
                }
            }
        }
        lab
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub(crate) fn src(&self) -> PathBuf {
        self.path("src")
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.path("data")
    }

    pub(crate) fn entry(&self, toml_body: &str) -> BackupConfig {
        let c: BackupConfig = toml::from_str(toml_body).unwrap();
        c.validate().unwrap();
        c
    }

    pub(crate) fn check(
        &self,
        entries: &[BackupConfig],
        settings: &BackupsSettings,
        name: &str,
    ) -> CheckRecord {
        let history = History::open(&self.data()).unwrap();
        let c = Checker {
            data_dir: &self.data(),
            history: &history,
            settings,
            entries,
        };
        let e = entries.iter().find(|e| e.name == name).unwrap();
        c.check(e).unwrap()
    }
}

pub(crate) fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

pub(crate) fn codes(r: &CheckRecord) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

/// Findings other than the 3-2-1 judgement and notes.
pub(crate) fn problems(r: &CheckRecord) -> Vec<&str> {
    codes(r)
        .into_iter()
        .filter(|c| !c.starts_with("rule321.") && *c != "dir.changed")
        .collect()
}

pub(crate) fn assert_failed_with(r: &CheckRecord, code: &str) {
    assert_eq!(r.status, CheckStatus::Failed, "{r:#?}");
    let f = r
        .findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} in {:#?}", r.findings));
    assert!(!f.en.is_empty() && !f.ja.is_empty());
    assert!(!f.ja.is_ascii(), "Japanese sentence: {}", f.ja);
}

/// Overwrites bytes in the middle of a file (keeping its size), as a failing disk or an
/// attacker would.
pub(crate) fn corrupt(p: &Path) {
    let mut perms = std::fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(p, perms).unwrap();
    let mut b = std::fs::read(p).unwrap();
    let (mid, len) = (b.len() / 2, b.len());
    for x in &mut b[mid.saturating_sub(16)..(mid + 16).min(len)] {
        *x ^= 0x5a;
    }
    std::fs::write(p, b).unwrap();
}
