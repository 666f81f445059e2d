//! Borg repositories through `borg --json`: `list`, `info` (deduplicated size), `check`
//! (`--verify-data` when any share is asked: Borg 1.x cannot read back only a share), and a
//! restore test with `extract` into a temporary directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use crate::check::{
    compare_restored, judge_snapshots, pick_sample, restore_dir, tool_failed, Listed, Snap,
};
use crate::config::BackupConfig;
use crate::error::Result;
use crate::exec::{run, Output, Run, RunError};
use crate::model::{CheckRecord, Outcome};

struct Borg<'a> {
    cfg: &'a BackupConfig,
    program: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Borg<'_> {
    fn run(&self, args: &[OsString], cwd: Option<&Path>) -> std::result::Result<Output, RunError> {
        // Wait for a backup that holds the repository lock instead of failing at once.
        let mut a: Vec<OsString> = vec!["--lock-wait".into(), "600".into()];
        a.extend(args.iter().cloned());
        run(&Run {
            program: self.program.clone(),
            args: a,
            env: self.env.clone(),
            cwd: cwd.map(Path::to_path_buf),
            timeout: self.cfg.timeout(),
            scrub: (self.cfg.repository_display() != self.cfg.repository)
                .then(|| (self.cfg.repository.clone(), self.cfg.repository_display())),
        })
    }

    fn repo(&self) -> OsString {
        self.cfg.repository.clone().into()
    }

    fn archive(&self, name: &str) -> OsString {
        format!("{}::{name}", self.cfg.repository).into()
    }
}

#[derive(Deserialize)]
struct JsonList {
    archives: Vec<JsonArchive>,
}

#[derive(Deserialize)]
struct JsonArchive {
    name: String,
    #[serde(default)]
    id: String,
    time: String,
}

#[derive(Deserialize)]
struct JsonInfo {
    cache: JsonCache,
}

#[derive(Deserialize)]
struct JsonCache {
    stats: JsonStats,
}

#[derive(Deserialize)]
struct JsonStats {
    unique_csize: u64,
}

#[derive(Deserialize)]
struct JsonItem {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    size: u64,
}

/// Reports a failed run of borg as a finding; `true` when the check must stop.
fn failed(out: &mut Outcome, what: &str, r: &std::result::Result<Output, RunError>) -> bool {
    tool_failed(out, "borg", what, r)
}

/// Borg 1.x prints local times without an offset; it runs with `TZ=UTC`, so they are UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

pub(crate) fn check(
    cfg: &BackupConfig,
    data_dir: &Path,
    now: DateTime<Utc>,
    prev: Option<&CheckRecord>,
    out: &mut Outcome,
) -> Result<()> {
    let mut env: Vec<(&'static str, OsString)> = vec![
        ("TZ", "UTC".into()),
        // Borg's config, keys, cache and security records live under the data directory.
        ("BORG_BASE_DIR", data_dir.join("borg").into()),
        // A repository that moved is answered "no" instead of hanging on a prompt.
        ("BORG_RELOCATED_REPO_ACCESS_IS_OK", "no".into()),
        ("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "no".into()),
        ("BORG_EXIT_CODES", "legacy".into()),
    ];
    if let Some(p) = cfg.password()? {
        env.push(("BORG_PASSPHRASE", OsString::from(p.expose())));
    }
    let b = Borg {
        cfg,
        program: cfg.program.clone().unwrap_or_else(|| "borg".into()),
        env,
    };

    let o = b.run(
        &["list".into(), "--json".into(), "--".into(), b.repo()],
        None,
    );
    if failed(out, "list", &o) {
        return Ok(());
    }
    let list: JsonList = match serde_json::from_slice(&o.expect("checked").stdout) {
        Ok(l) => l,
        Err(e) => {
            out.fail(
                "borg.bad_output",
                format!("borg list printed something that is not its JSON: {e}"),
                format!("borg list の出力がJSONとして読めません: {e}"),
            );
            return Ok(());
        }
    };
    let mut snaps = Vec::new();
    let mut names = std::collections::HashMap::new();
    for a in list.archives {
        match parse_time(&a.time) {
            Some(t) => {
                // The archive name is what `extract` needs; the id is what stays unique.
                let id = if a.id.is_empty() {
                    a.name.clone()
                } else {
                    a.id.clone()
                };
                names.insert(id.clone(), a.name.clone());
                snaps.push(Snap { id, time: t });
            }
            None => out.warn(
                "borg.bad_output",
                format!("archive {} has an unreadable time {:?}", a.name, a.time),
                format!("アーカイブ {} の時刻 {:?} を読めません", a.name, a.time),
            ),
        }
    }
    let info = b.run(
        &["info".into(), "--json".into(), "--".into(), b.repo()],
        None,
    );
    let size = match &info {
        Ok(o) if o.success() => serde_json::from_slice::<JsonInfo>(&o.stdout)
            .ok()
            .map(|i| i.cache.stats.unique_csize),
        _ => None,
    };
    if size.is_none() {
        failed(out, "info", &info);
    }
    let latest = judge_snapshots(out, cfg, "borg", &snaps, size, prev, now);
    if let Some(l) = &latest {
        out.set("latest_name", names[&l.id].clone());
    }

    let mut args: Vec<OsString> = vec!["check".into()];
    if cfg.read_data_percent > 0 {
        args.push("--verify-data".into());
    }
    args.push("--".into());
    args.push(b.repo());
    out.set("verify_data", cfg.read_data_percent > 0);
    let c = b.run(&args, None);
    match &c {
        Ok(o) if !o.success() => out.fail(
            "borg.check_failed",
            format!(
                "borg check found the repository damaged (exit {}): {}",
                o.code.unwrap_or(-1),
                o.tail()
            ),
            format!(
                "borg check でリポジトリの破損が見つかりました(終了コード {}): {}",
                o.code.unwrap_or(-1),
                o.tail()
            ),
        ),
        Ok(_) => {}
        Err(_) => {
            failed(out, "check", &c);
        }
    }

    if let Some(l) = latest {
        if cfg.restore_sample > 0 {
            restore_test(&b, &l, &names[&l.id], cfg.restore_sample, out)?;
        }
    }
    Ok(())
}

fn restore_test(
    b: &Borg<'_>,
    latest: &Snap,
    name: &str,
    n: usize,
    out: &mut Outcome,
) -> Result<()> {
    let ls = b.run(
        &[
            "list".into(),
            "--json-lines".into(),
            "--".into(),
            b.archive(name),
        ],
        None,
    );
    if failed(out, "list (archive)", &ls) {
        return Ok(());
    }
    let files: Vec<Listed> = ls
        .expect("checked")
        .stdout
        .split(|c| *c == b'\n')
        .filter_map(|l| serde_json::from_slice::<JsonItem>(l).ok())
        .filter(|i| i.kind == "-")
        .map(|i| Listed {
            path: i.path,
            size: i.size,
        })
        .collect();
    out.set("snapshot_files", files.len());
    let sample = pick_sample(files, n);
    if sample.is_empty() {
        return Ok(());
    }
    let tmp = restore_dir()?;
    let mut args: Vec<OsString> = vec!["extract".into(), "--".into(), b.archive(name)];
    // Borg reads PATH arguments as path prefixes (`pp:`), so a listed path is taken literally.
    args.extend(
        sample
            .iter()
            .map(|f| OsString::from(format!("pp:{}", f.path))),
    );
    let o = b.run(&args, Some(tmp.path()));
    match &o {
        Ok(o) if !o.success() => {
            out.fail(
                "restore.failed",
                format!(
                    "restore test: borg extract of {} files from {name} failed: {}",
                    sample.len(),
                    o.tail()
                ),
                format!(
                    "リストアテスト: {name} から{}個のファイルの borg extract が失敗しました: {}",
                    sample.len(),
                    o.tail()
                ),
            );
            return Ok(());
        }
        Ok(_) => {}
        Err(_) => {
            failed(out, "extract", &o);
            return Ok(());
        }
    }
    compare_restored(out, b.cfg, &sample, tmp.path(), latest.time);
    Ok(())
}
