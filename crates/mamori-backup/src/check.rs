//! Running one `[[backup]]` entry: the kind's own check, the 3-2-1 judgement of its system,
//! and the result stored in [`History`].

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{BackupConfig, BackupKind, BackupsSettings};
use crate::error::{Error, Result};
use crate::exec::{Output, RunError};
use crate::history::History;
use crate::model::{CheckRecord, CheckStatus, Outcome};
use crate::rule321;

/// Everything a check needs besides its entry.
#[derive(Debug, Clone, Copy)]
pub struct Checker<'a> {
    /// Where history, manifests, keys and tool caches are kept.
    pub data_dir: &'a Path,
    pub history: &'a History,
    pub settings: &'a BackupsSettings,
    /// All configured entries (the 3-2-1 judgement looks at the other copies of a system).
    pub entries: &'a [BackupConfig],
}

impl Checker<'_> {
    /// Checks one entry and stores the result. A failing backup is an `Ok` record with status
    /// `Failed`; `Err` only when the result cannot be stored.
    pub fn check(&self, cfg: &BackupConfig) -> Result<CheckRecord> {
        let started = Utc::now();
        let now = self.settings.now();
        let mut out = Outcome::default();
        out.set("repository", cfg.repository_display());
        out.set("system", cfg.system().to_string());
        if let Some(c) = self.settings.clock {
            out.set("clock", c.to_rfc3339());
        }
        let prev = self.history.latest(&cfg.name)?;
        let res = match cfg.kind {
            BackupKind::Restic => {
                crate::restic::check(cfg, self.data_dir, now, prev.as_ref(), &mut out)
            }
            BackupKind::Borg => {
                crate::borg::check(cfg, self.data_dir, now, prev.as_ref(), &mut out)
            }
            BackupKind::Directory => crate::directory::check(cfg, self.data_dir, now, &mut out),
        };
        if let Err(e) = res {
            out.fail(
                "check.error",
                format!("the check could not run: {e}"),
                format!("チェックを実行できませんでした: {e}"),
            );
        }
        // 3-2-1 with this entry's fresh status and the others' latest.
        let own = out.status();
        let mut statuses = Vec::new();
        for e in self.entries.iter().filter(|e| e.system() == cfg.system()) {
            let s = if e.name == cfg.name {
                Some(own)
            } else {
                self.history.latest(&e.name)?.map(|r| r.status)
            };
            statuses.push((e, s));
        }
        if !statuses.iter().any(|(e, _)| e.name == cfg.name) {
            statuses.push((cfg, Some(own)));
        }
        let judged = rule321::judge(cfg.system(), &statuses);
        rule321::findings(&judged, &mut out);
        out.set(
            "rule321",
            serde_json::to_value(&judged).expect("serialises"),
        );

        // The verdict each finding implies, in the order of `findings` (a display can mark
        // failures, warnings and notes apart).
        let levels: Vec<&str> = out.found.iter().map(|(s, _)| s.as_str()).collect();
        out.set("finding_status", serde_json::json!(levels));
        let record = CheckRecord {
            name: cfg.name.clone(),
            kind: cfg.kind.as_str().to_string(),
            started,
            finished: Utc::now(),
            status: out.status(),
            findings: out.found.into_iter().map(|(_, f)| f).collect(),
            details: serde_json::Value::Object(out.details),
        };
        self.history.record(&record)?;
        tracing::info!(backup = %record.name, kind = %record.kind, status = %record.status, findings = record.findings.len(), "backup checked");
        Ok(record)
    }

    /// Checks the named entries (all when `names` is empty), in configuration order.
    pub fn check_names(&self, names: &[String]) -> Result<Vec<CheckRecord>> {
        for n in names {
            if !self.entries.iter().any(|e| &e.name == n) {
                return Err(Error::Config(format!("no [[backup]] entry is named {n:?}")));
            }
        }
        self.entries
            .iter()
            .filter(|e| names.is_empty() || names.contains(&e.name))
            .map(|e| self.check(e))
            .collect()
    }
}

/// Fails `code` when `latest` is older than `max_age` at `now`.
pub(crate) fn judge_age(
    out: &mut Outcome,
    code: &str,
    latest: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: Duration,
    what_en: &str,
    what_ja: &str,
) {
    let age = now.signed_duration_since(latest);
    out.set(
        "age_hours",
        (age.num_minutes() as f64 / 60.0 * 10.0).round() / 10.0,
    );
    let max = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    if age > max {
        let h = age.num_hours();
        let m = max_age.as_secs() / 3600;
        out.fail(
            code,
            format!("{what_en} is {h} hours old ({}), older than the allowed {m} hours — backups have stopped or are being held back", latest.format("%Y-%m-%d %H:%M UTC")),
            format!("{what_ja}は{h}時間前({})のもので、許容される{m}時間を超えています — バックアップが停止しているか、妨げられています", latest.format("%Y-%m-%d %H:%M UTC")),
        );
    }
}

/// A snapshot (restic) or archive (Borg).
#[derive(Debug, Clone)]
pub(crate) struct Snap {
    pub id: String,
    pub time: DateTime<Utc>,
}

/// The judgements restic and Borg share: a latest snapshot exists and is recent, the previous
/// latest was not deleted, the count and the size did not collapse.
pub(crate) fn judge_snapshots(
    out: &mut Outcome,
    cfg: &BackupConfig,
    kind: &str,
    snaps: &[Snap],
    size: Option<u64>,
    prev: Option<&CheckRecord>,
    now: DateTime<Utc>,
) -> Option<Snap> {
    let (word_en, word_ja) = if kind == "borg" {
        ("archive", "アーカイブ")
    } else {
        ("snapshot", "スナップショット")
    };
    out.set("snapshots", snaps.len());
    if let Some(s) = size {
        out.set("total_size", s);
    }
    let latest = snaps.iter().max_by_key(|s| s.time).cloned();
    let ids: Vec<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
    match &latest {
        None => out.fail(
            &format!("{kind}.no_snapshot"),
            format!(
                "the repository {} holds no {word_en}",
                cfg.repository_display()
            ),
            format!(
                "リポジトリ {} に{word_ja}がありません",
                cfg.repository_display()
            ),
        ),
        Some(l) => {
            out.set("latest_id", l.id.clone());
            out.set("latest_time", l.time.to_rfc3339());
            judge_age(
                out,
                &format!("{kind}.snapshot_stale"),
                l.time,
                now,
                cfg.max_age(),
                &format!("the latest {word_en}"),
                &format!("最新の{word_ja}"),
            );
        }
    }
    let shrink = f64::from(cfg.shrink_percent) / 100.0;
    let pd = prev.map(|p| &p.details);
    if let Some(prev_latest) = pd.and_then(|d| d.get("latest_id")).and_then(|v| v.as_str()) {
        if !ids.contains(&prev_latest) {
            out.fail(
                &format!("{kind}.latest_deleted"),
                format!("the {word_en} {prev_latest} that was the latest at the previous check has been deleted — retention never deletes the newest, an attacker does"),
                format!("前回のチェックで最新だった{word_ja} {prev_latest} が削除されています — 保持ポリシーは最新のものを削除しません。攻撃者による削除の可能性があります"),
            );
        }
    }
    if let Some(pc) = pd.and_then(|d| d.get("snapshots")).and_then(|v| v.as_u64()) {
        if (snaps.len() as f64) < (1.0 - shrink) * pc as f64 {
            out.fail(
                &format!("{kind}.count_collapsed"),
                format!(
                    "the number of {word_en}s fell from {pc} to {} since the previous check",
                    snaps.len()
                ),
                format!(
                    "前回のチェック以降、{word_ja}の数が{pc}から{}に減りました",
                    snaps.len()
                ),
            );
        }
    }
    if let (Some(ps), Some(s)) = (
        pd.and_then(|d| d.get("total_size"))
            .and_then(|v| v.as_u64()),
        size,
    ) {
        if (s as f64) < (1.0 - shrink) * ps as f64 {
            out.fail(
                &format!("{kind}.size_collapsed"),
                format!("the repository shrank from {ps} to {s} bytes since the previous check"),
                format!(
                    "前回のチェック以降、リポジトリの容量が{ps}バイトから{s}バイトに減りました"
                ),
            );
        }
    }
    latest
}

/// A file of a snapshot listing, for the restore test.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// The path as the tool names it (restic: absolute; Borg: relative).
    pub path: String,
    pub size: u64,
}

/// Reports a failed run of a backup tool (`restic`, `borg`) as a finding with the tool's codes
/// (`TOOL.command_failed`, `TOOL.not_installed`); `true` when the check must stop.
pub(crate) fn tool_failed(
    out: &mut Outcome,
    tool: &str,
    what: &str,
    r: &std::result::Result<Output, RunError>,
) -> bool {
    match r {
        Ok(o) if o.success() => false,
        Ok(o) => {
            let code = o.code.map_or("signal".into(), |c| c.to_string());
            out.fail(
                &format!("{tool}.command_failed"),
                format!("{tool} {what} failed (exit {code}): {}", o.tail()),
                format!(
                    "{tool} {what} が失敗しました(終了コード {code}): {}",
                    o.tail()
                ),
            );
            true
        }
        Err(RunError::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            out.fail(
                &format!("{tool}.not_installed"),
                format!("{tool} is not installed (or not on PATH): the repository cannot be checked"),
                format!("{tool}がインストールされていません(またはPATHにありません): リポジトリをチェックできません"),
            );
            true
        }
        Err(e) => {
            out.fail(
                &format!("{tool}.command_failed"),
                format!("{tool} {what}: {e}"),
                format!("{tool} {what}: {e}"),
            );
            true
        }
    }
}

/// A temporary directory for a restore test (removed when dropped).
pub(crate) fn restore_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("mamori-restore-")
        .tempdir()
        .map_err(|e| Error::Io {
            path: std::env::temp_dir(),
            source: e,
        })
}

/// Picks the files of a restore test: up to `n` at random among regular files.
pub(crate) fn pick_sample(files: Vec<Listed>, n: usize) -> Vec<Listed> {
    use rand::seq::SliceRandom;
    let mut files = files;
    files.shuffle(&mut rand::thread_rng());
    files.truncate(n);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Compares restored files with the listing (size) and, where `source` is configured and the
/// original has not changed since the snapshot, with the original (SHA-256).
pub(crate) fn compare_restored(
    out: &mut Outcome,
    cfg: &BackupConfig,
    sample: &[Listed],
    restored_root: &Path,
    snapshot_time: DateTime<Utc>,
) {
    use sha2::{Digest, Sha256};
    let hash = |p: &Path| -> std::io::Result<String> {
        let mut f = std::fs::File::open(p)?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        Ok(hex::encode(h.finalize()))
    };
    let mut missing = Vec::new();
    let mut wrong_size = Vec::new();
    let mut differs = Vec::new();
    let mut compared = 0usize;
    let mut hashes = serde_json::Map::new();
    for f in sample {
        let rel = f.path.trim_start_matches('/');
        let restored = restored_root.join(rel);
        let meta = match std::fs::metadata(&restored) {
            Ok(m) => m,
            Err(_) => {
                missing.push(f.path.clone());
                continue;
            }
        };
        if meta.len() != f.size {
            wrong_size.push(format!("{} ({} ≠ {})", f.path, meta.len(), f.size));
            continue;
        }
        let Ok(got) = hash(&restored) else {
            missing.push(f.path.clone());
            continue;
        };
        hashes.insert(f.path.clone(), got.clone().into());
        // The original: `source` joined with the path relative to the backed-up root.
        let Some(src_root) = &cfg.source else {
            continue;
        };
        let Some(orig) = original_of(src_root, &f.path) else {
            continue;
        };
        let Ok(om) = std::fs::metadata(&orig) else {
            continue;
        };
        let changed_since = om
            .modified()
            .ok()
            .map(DateTime::<Utc>::from)
            .is_none_or(|t| t > snapshot_time);
        if changed_since {
            continue;
        }
        compared += 1;
        if hash(&orig).ok().as_deref() != Some(got.as_str()) {
            differs.push(f.path.clone());
        }
    }
    out.set("restored", sample.len());
    out.set("restored_compared_with_source", compared);
    out.set("restored_sha256", serde_json::Value::Object(hashes));
    let ex = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if !missing.is_empty() {
        out.fail(
            "restore.failed",
            format!(
                "restore test: {} of {} files were not restored: {}",
                missing.len(),
                sample.len(),
                ex(&missing)
            ),
            format!(
                "リストアテスト: {}個中{}個のファイルが復元されませんでした: {}",
                sample.len(),
                missing.len(),
                ex(&missing)
            ),
        );
    }
    if !wrong_size.is_empty() {
        out.fail(
            "restore.size_mismatch",
            format!("restore test: {} restored files differ in size from the snapshot listing: {}", wrong_size.len(), ex(&wrong_size)),
            format!("リストアテスト: 復元した{}個のファイルのサイズがスナップショットの一覧と一致しません: {}", wrong_size.len(), ex(&wrong_size)),
        );
    }
    if !differs.is_empty() {
        out.fail(
            "restore.mismatch",
            format!("restore test: {} restored files differ from their originals, which have not changed since the backup: {}", differs.len(), ex(&differs)),
            format!("リストアテスト: 復元した{}個のファイルが、バックアップ後に変更されていない元ファイルと一致しません: {}", differs.len(), ex(&differs)),
        );
    }
}

/// The original of a backed-up path: the longest suffix of `path` that exists under
/// `source` (restic stores absolute paths, Borg relative ones; the source may be mounted
/// elsewhere than where it was backed up). Never leaves `source`.
fn original_of(source: &Path, path: &str) -> Option<std::path::PathBuf> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == ".." || *p == ".") {
        return None;
    }
    let name = source.file_name()?.to_str()?;
    // Prefer the part after the source folder's own name (…/share/a.txt → a.txt).
    if let Some(i) = parts.iter().rposition(|p| *p == name) {
        let p = source.join(parts[i + 1..].join("/"));
        if p.is_file() {
            return Some(p);
        }
    }
    (0..parts.len())
        .map(|i| source.join(parts[i..].join("/")))
        .find(|p| p.is_file())
}

/// The status of a whole run: the worst of its records.
pub fn worst(records: &[CheckRecord]) -> CheckStatus {
    records
        .iter()
        .map(|r| r.status)
        .max()
        .unwrap_or(CheckStatus::Passed)
}
