//! restic repositories through `restic --json`: snapshots, `stats --mode raw-data`,
//! `check --read-data-subset=N%`, and a restore test with `restore --include`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::check::{
    compare_restored, judge_snapshots, pick_sample, restore_dir, tool_failed, Listed, Snap,
};
use crate::config::BackupConfig;
use crate::error::Result;
use crate::exec::{run, Output, Run, RunError};
use crate::model::{CheckRecord, Outcome};

struct Restic<'a> {
    cfg: &'a BackupConfig,
    program: PathBuf,
    cache: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Restic<'_> {
    fn run(&self, args: &[&str], extra: &[OsString]) -> std::result::Result<Output, RunError> {
        let mut a: Vec<OsString> = vec![
            "--repo".into(),
            self.cfg.repository.clone().into(),
            "--cache-dir".into(),
            self.cache.clone().into(),
            "--no-lock".into(),
        ];
        // `check` takes the repository lock; the read-only commands do not need one (and an
        // append-only or immutable repository cannot take it).
        if args.first() == Some(&"check") {
            a.pop();
        }
        a.extend(args.iter().map(OsString::from));
        a.extend(extra.iter().cloned());
        run(&Run {
            program: self.program.clone(),
            args: a,
            env: self.env.clone(),
            cwd: None,
            timeout: self.cfg.timeout(),
            scrub: (self.cfg.repository_display() != self.cfg.repository)
                .then(|| (self.cfg.repository.clone(), self.cfg.repository_display())),
        })
    }
}

#[derive(Deserialize)]
struct JsonSnapshot {
    id: String,
    time: String,
}

#[derive(Deserialize)]
struct JsonStats {
    total_size: u64,
}

#[derive(Deserialize)]
struct JsonNode {
    #[serde(default)]
    struct_type: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    size: u64,
}

/// Reports a failed run of restic as a finding; `true` when the check must stop.
fn failed(out: &mut Outcome, what: &str, r: &std::result::Result<Output, RunError>) -> bool {
    tool_failed(out, "restic", what, r)
}

pub(crate) fn check(
    cfg: &BackupConfig,
    data_dir: &Path,
    now: DateTime<Utc>,
    prev: Option<&CheckRecord>,
    out: &mut Outcome,
) -> Result<()> {
    let mut env = Vec::new();
    if let Some(p) = cfg.password()? {
        env.push(("RESTIC_PASSWORD", OsString::from(p.expose())));
    }
    let r = Restic {
        cfg,
        program: cfg.program.clone().unwrap_or_else(|| "restic".into()),
        cache: data_dir.join("cache").join("restic"),
        env,
    };

    let o = r.run(&["--json", "snapshots"], &[]);
    if failed(out, "snapshots", &o) {
        return Ok(());
    }
    let o = o.expect("checked");
    let snaps: Vec<JsonSnapshot> = match serde_json::from_slice(&o.stdout) {
        Ok(s) => s,
        Err(e) => {
            out.fail(
                "restic.bad_output",
                format!("restic snapshots printed something that is not its JSON: {e}"),
                format!("restic snapshots の出力がJSONとして読めません: {e}"),
            );
            return Ok(());
        }
    };
    let mut list = Vec::new();
    for s in snaps {
        match DateTime::parse_from_rfc3339(&s.time) {
            Ok(t) => list.push(Snap {
                id: s.id,
                time: t.with_timezone(&Utc),
            }),
            Err(e) => out.warn(
                "restic.bad_output",
                format!("snapshot {} has an unreadable time {:?}: {e}", s.id, s.time),
                format!(
                    "スナップショット {} の時刻 {:?} を読めません: {e}",
                    s.id, s.time
                ),
            ),
        }
    }

    let stats = r.run(&["--json", "stats", "--mode", "raw-data"], &[]);
    let size = match &stats {
        Ok(o) if o.success() => serde_json::from_slice::<JsonStats>(&o.stdout)
            .ok()
            .map(|s| s.total_size),
        _ => None,
    };
    if size.is_none() {
        failed(out, "stats", &stats);
    }
    let latest = judge_snapshots(out, cfg, "restic", &list, size, prev, now);

    // The repository check, reading back the configured share of the data.
    let subset;
    let mut args = vec!["check"];
    match cfg.read_data_percent {
        0 => {}
        100 => args.push("--read-data"),
        p => {
            subset = format!("--read-data-subset={p}%");
            args.push(&subset);
        }
    }
    let c = r.run(&args, &[]);
    out.set("read_data_percent", cfg.read_data_percent);
    if let Ok(o) = &c {
        if !o.success() {
            out.fail(
                "restic.check_failed",
                format!(
                    "restic check found the repository damaged (exit {}): {}",
                    o.code.unwrap_or(-1),
                    o.tail()
                ),
                format!(
                    "restic check でリポジトリの破損が見つかりました(終了コード {}): {}",
                    o.code.unwrap_or(-1),
                    o.tail()
                ),
            );
        }
    } else {
        failed(out, "check", &c);
    }

    if let (Some(latest), n) = (latest, cfg.restore_sample) {
        if n > 0 {
            restore_test(&r, &latest, n, out)?;
        }
    }
    Ok(())
}

fn restore_test(r: &Restic<'_>, latest: &Snap, n: usize, out: &mut Outcome) -> Result<()> {
    let ls = r.run(&["--json", "ls", &latest.id], &[]);
    if failed(out, "ls", &ls) {
        return Ok(());
    }
    let ls = ls.expect("checked");
    let files: Vec<Listed> = ls
        .stdout
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<JsonNode>(l).ok())
        .filter(|n| n.struct_type == "node" && n.kind == "file")
        // restic reads --include as a glob; a name with glob characters is left out of the
        // sample rather than escaped.
        .filter(|n| !n.path.contains(['*', '?', '[', '\\']))
        .map(|n| Listed {
            path: n.path,
            size: n.size,
        })
        .collect();
    out.set("snapshot_files", files.len());
    let sample = pick_sample(files, n);
    if sample.is_empty() {
        return Ok(());
    }
    let tmp = restore_dir()?;
    let mut extra: Vec<OsString> = vec!["--target".into(), tmp.path().into()];
    for f in &sample {
        extra.push(format!("--include={}", f.path).into());
    }
    let o = r.run(&["restore", &latest.id], &extra);
    match &o {
        Ok(o) if !o.success() => {
            out.fail(
                "restore.failed",
                format!(
                    "restore test: restic restore of {} files from {} failed: {}",
                    sample.len(),
                    latest.id,
                    o.tail()
                ),
                format!(
                    "リストアテスト: {} から{}個のファイルの restic restore が失敗しました: {}",
                    latest.id,
                    sample.len(),
                    o.tail()
                ),
            );
            return Ok(());
        }
        Ok(_) => {}
        Err(_) => {
            failed(out, "restore", &o);
            return Ok(());
        }
    }
    compare_restored(out, r.cfg, &sample, tmp.path(), latest.time);
    Ok(())
}
