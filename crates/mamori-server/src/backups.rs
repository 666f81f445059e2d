//! Backup integrity checks in `mamori serve`: the `[[backup]]` entries checked on their
//! schedule (`every`), on demand (`POST /api/v1/backups/{name}/check`) and at once when a
//! backup-deletion rule fires on one of an entry's `hosts`; every result stored in
//! `<data_dir>/backups.db`; a failed check raises an alert (ja/en, one per backup and day).
//!
//! The checks themselves live in `mamori-backup`; they spawn restic/Borg and walk shares, so
//! they run on the blocking pool, one at a time (the machine is small and a repository check
//! reads a lot), and never twice at once for the same entry.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use mamori_backup::{BackupConfig, BackupsSettings, CheckRecord, CheckStatus, Checker, History};
use mamori_event::{Level, RuleId};
use mamori_store::{Alert, AlertStore, NewAlert};
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::api::{blocking, ApiError, AppState, Authed};

/// The rule id of the alert a failed check raises.
pub const CHECK_FAILED_RULE: &str = "mamori.backup.check_failed";
/// How often the schedule looks for entries that are due.
const TICK: Duration = Duration::from_secs(60);
/// ATT&CK T1490 (Inhibit System Recovery): the tag of the backup-deletion rules
/// (`vssadmin delete shadows`, `wbadmin delete catalog`, …) whose alerts are linked to entries.
const DELETION_TAG: &str = "attack.t1490";

/// Host name → the entries that back it up, for linking backup-deletion alerts.
#[derive(Debug, Clone, Default)]
pub struct BackupLinks(Arc<HashMap<String, Vec<String>>>);

/// `FS01`, `fs01.corp.local` and `FS01.CORP.LOCAL` are the same host.
fn host_key(h: &str) -> String {
    h.split('.').next().unwrap_or(h).trim().to_ascii_lowercase()
}

impl BackupLinks {
    pub fn new(entries: &[BackupConfig]) -> BackupLinks {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for e in entries {
            for h in &e.hosts {
                m.entry(host_key(h)).or_default().push(e.name.clone());
            }
        }
        BackupLinks(Arc::new(m))
    }

    /// The alert with `details.backup` naming the entries it concerns, when it comes from a
    /// backup-deletion rule (tagged T1490) on a host of an entry; `None` otherwise.
    pub fn link(&self, a: &NewAlert) -> Option<NewAlert> {
        if self.0.is_empty() {
            return None;
        }
        let tagged = a.details["tags"].as_array().is_some_and(|t| {
            t.iter().any(|v| {
                v.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(DELETION_TAG))
            })
        });
        if !tagged {
            return None;
        }
        let host = a.details["host"].as_str()?;
        let names = self.0.get(&host_key(host))?;
        let mut linked = a.clone();
        linked.details["backup"] = json!(names);
        Some(linked)
    }
}

/// The backups of one server: configuration, history and what is running.
pub struct BackupService {
    entries: Vec<BackupConfig>,
    settings: BackupsSettings,
    data_dir: PathBuf,
    history: History,
    alerts: Arc<dyn AlertStore>,
    alert_tx: broadcast::Sender<Alert>,
    running: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for BackupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupService")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// Why a check did not run.
#[derive(Debug)]
pub enum CheckNowError {
    Unknown(String),
    Busy(String),
    Failed(mamori_backup::Error),
}

impl BackupService {
    pub fn open(
        entries: Vec<BackupConfig>,
        settings: BackupsSettings,
        data_dir: &Path,
        alerts: Arc<dyn AlertStore>,
        alert_tx: broadcast::Sender<Alert>,
    ) -> mamori_backup::Result<BackupService> {
        Ok(BackupService {
            history: History::open(data_dir)?,
            entries,
            settings,
            data_dir: data_dir.to_path_buf(),
            alerts,
            alert_tx,
            running: Mutex::new(HashSet::new()),
        })
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Checks `name` now (blocking), stores the result and raises the alert on failure.
    pub fn check_now(&self, name: &str) -> Result<CheckRecord, CheckNowError> {
        let cfg = self
            .entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| CheckNowError::Unknown(name.to_string()))?;
        {
            let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if !r.insert(name.to_string()) {
                return Err(CheckNowError::Busy(name.to_string()));
            }
        }
        let checker = Checker {
            data_dir: &self.data_dir,
            history: &self.history,
            settings: &self.settings,
            entries: &self.entries,
        };
        let res = checker.check(cfg);
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let record = res.map_err(CheckNowError::Failed)?;
        if record.status == CheckStatus::Failed {
            let a = failure_alert(cfg, &record);
            if let Err(e) = crate::pipeline::record_alert(&*self.alerts, &self.alert_tx, &a) {
                tracing::error!(backup = %name, error = %e, "cannot record the backup alert");
            }
        }
        Ok(record)
    }

    /// Entries whose last check started `every` ago or more (or that never ran).
    fn due(&self) -> Vec<String> {
        let now = Utc::now();
        self.entries
            .iter()
            .filter(|e| match self.history.latest(&e.name) {
                Ok(Some(r)) => {
                    let every =
                        chrono::Duration::from_std(e.every()).unwrap_or(chrono::Duration::MAX);
                    now.signed_duration_since(r.started) >= every
                }
                Ok(None) => true,
                Err(err) => {
                    tracing::error!(backup = %e.name, error = %err, "cannot read backup history");
                    false
                }
            })
            .map(|e| e.name.clone())
            .collect()
    }

    /// Every entry with its latest result and the last `limit` results, and the 3-2-1
    /// judgement of each system (from the latest results).
    pub fn overview(&self, limit: usize) -> mamori_backup::Result<JsonValue> {
        let mut list = Vec::new();
        let mut latest_status = HashMap::new();
        for e in &self.entries {
            let recent = self.history.recent(&e.name, limit.max(1))?;
            latest_status.insert(e.name.clone(), recent.first().map(|r| r.status));
            list.push(json!({
                "name": e.name,
                "kind": e.kind.as_str(),
                "repository": e.repository_display(),
                "system": e.system(),
                "hosts": e.hosts,
                "media": e.media,
                "copies": e.copies,
                "offsite": e.offsite,
                "offline": e.offline,
                "every": e.every,
                "max_age": e.max_age,
                "running": self.running.lock().unwrap_or_else(|p| p.into_inner()).contains(&e.name),
                "latest": recent.first(),
                "history": if limit == 0 { Vec::new() } else { recent },
            }));
        }
        let mut systems: Vec<&str> = self.entries.iter().map(|e| e.system()).collect();
        systems.sort_unstable();
        systems.dedup();
        let judged: Vec<JsonValue> = systems
            .into_iter()
            .map(|s| {
                let with: Vec<_> = self
                    .entries
                    .iter()
                    .map(|e| (e, latest_status.get(&e.name).copied().flatten()))
                    .collect();
                let r = mamori_backup::rule321::judge(s, &with);
                json!({ "satisfied": r.satisfied(), "judgement": r })
            })
            .collect();
        Ok(json!({ "backups": list, "systems": judged }))
    }
}

fn failure_alert(cfg: &BackupConfig, r: &CheckRecord) -> NewAlert {
    let levels = r.details["finding_status"].as_array();
    let failed: Vec<&mamori_backup::Finding> = r
        .findings
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            levels
                .and_then(|l| l.get(*i))
                .and_then(|v| v.as_str())
                .is_none_or(|s| s == "failed")
        })
        .map(|(_, f)| f)
        .collect();
    const RANSOM: &[&str] = &[
        "dir.ransom_note",
        "dir.encryption_burst",
        "dir.mass_extension_change",
        "restic.latest_deleted",
        "borg.latest_deleted",
    ];
    let level = if failed.iter().any(|f| RANSOM.contains(&f.code.as_str())) {
        Level::Critical
    } else {
        Level::High
    };
    let en: Vec<&str> = failed.iter().map(|f| f.en.as_str()).collect();
    let ja: Vec<&str> = failed.iter().map(|f| f.ja.as_str()).collect();
    let name = &cfg.name;
    let kind = cfg.kind.as_str();
    NewAlert {
        rule_id: RuleId(CHECK_FAILED_RULE.into()),
        title: format!("Backup check failed: {name}"),
        level,
        event_time: Some(r.finished),
        received_at: Utc::now(),
        event_seqs: Vec::new(),
        group_key: Some(format!("backup={name}")),
        // One alert per backup and day; later failures the same day count on it.
        dedup_key: Some(format!(
            "{CHECK_FAILED_RULE}|{name}|{}",
            r.started.format("%Y-%m-%d")
        )),
        details: json!({
            "backup": [name],
            "kind": kind,
            "system": cfg.system(),
            "host": cfg.hosts.first(),
            "hosts": cfg.hosts,
            "codes": failed.iter().map(|f| f.code.as_str()).collect::<Vec<_>>(),
            "findings": failed,
            "title_ja": format!("バックアップのチェックに失敗しました: {name}"),
            "description": format!("The backup check of {name} ({kind}) failed: {}. This backup may not restore when it is needed; look at it now.", en.join("; ")),
            "description_ja": format!("バックアップ {name}({kind})のチェックに失敗しました: {}。必要なときに復元できない可能性があります。すぐに確認してください。", ja.join(" ")),
        }),
    }
}

/// Runs the due checks every minute, and at once the entries named by a linked
/// backup-deletion alert.
pub(crate) fn schedule(
    svc: Arc<BackupService>,
    alerts: broadcast::Receiver<Alert>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut alerts = Some(alerts);
        loop {
            let names: Vec<String> = tokio::select! {
                _ = tick.tick() => svc.due(),
                a = recv(&mut alerts) => match a {
                    Some(a) if a.rule_id.0.as_ref() != CHECK_FAILED_RULE => a.details["backup"]
                        .as_array()
                        .map(|v| v.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                },
            };
            for name in names {
                let s = Arc::clone(&svc);
                let n = name.clone();
                match tokio::task::spawn_blocking(move || s.check_now(&n)).await {
                    Ok(Ok(_)) | Ok(Err(CheckNowError::Busy(_))) => {}
                    Ok(Err(e)) => {
                        tracing::error!(backup = %name, error = ?e, "backup check could not run")
                    }
                    Err(e) => tracing::error!(backup = %name, error = %e, "backup check panicked"),
                }
            }
        }
    })
}

/// The next alert; pending forever once the channel closed (so `select!` keeps ticking).
async fn recv(rx: &mut Option<broadcast::Receiver<Alert>>) -> Option<Alert> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    match r.recv().await {
        Ok(a) => Some(a),
        Err(broadcast::error::RecvError::Lagged(_)) => None,
        Err(broadcast::error::RecvError::Closed) => {
            *rx = None;
            None
        }
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/backups", get(list))
        .route("/api/v1/backups/{name}/check", post(check))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Results per entry (newest first); default 30, at most 1000.
    history: Option<usize>,
}

async fn list(
    _a: Authed,
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<JsonValue>, ApiError> {
    let limit = q.history.unwrap_or(30);
    if limit > 1000 {
        return Err(ApiError::BadRequest(format!(
            "history = {limit}: at most 1000 results per entry"
        )));
    }
    let svc = Arc::clone(&st.backups);
    blocking(move || {
        svc.overview(limit)
            .map(Json)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CheckQuery {
    /// Wait for the result (200 with the record) instead of starting it (202).
    wait: Option<bool>,
}

async fn check(
    a: Authed,
    State(st): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<CheckQuery>,
) -> Result<axum::response::Response, ApiError> {
    let svc = Arc::clone(&st.backups);
    if !svc.entries.iter().any(|e| e.name == name) {
        return Err(ApiError::NotFound(format!(
            "no [[backup]] entry is named {:?}",
            name.escape_default().to_string()
        )));
    }
    tracing::info!(backup = %name, by = %a.name, "backup check requested");
    let run = move || match svc.check_now(&name) {
        Ok(r) => Ok(r),
        Err(CheckNowError::Busy(n)) => Err(ApiError::Conflict(format!(
            "the check of {n} is already running"
        ))),
        Err(CheckNowError::Unknown(n)) => Err(ApiError::NotFound(format!(
            "no [[backup]] entry is named {n:?}"
        ))),
        Err(CheckNowError::Failed(e)) => Err(ApiError::Internal(e.to_string())),
    };
    if q.wait.unwrap_or(false) {
        let r = blocking(run).await?;
        return Ok(Json(json!(r)).into_response());
    }
    tokio::task::spawn_blocking(move || {
        if let Err(e) = run() {
            tracing::warn!(error = ?e, "backup check requested by the API did not run");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "started" }))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, hosts: &[&str]) -> BackupConfig {
        let mut c: BackupConfig = toml::from_str(&format!(
            "name = {name:?}\nkind = \"directory\"\nrepository = \"/srv/{name}\"\n"
        ))
        .unwrap();
        c.hosts = hosts.iter().map(|h| h.to_string()).collect();
        c
    }

    fn alert(host: &str, tags: &[&str]) -> NewAlert {
        NewAlert {
            rule_id: RuleId("e4ba325d-738a-4a0e-896d-e7c85289e9ba".into()),
            title: "Backup Or Shadow Copy Deletion".into(),
            level: Level::Critical,
            event_time: None,
            received_at: Utc::now(),
            event_seqs: vec![],
            group_key: None,
            dedup_key: None,
            details: json!({ "host": host, "tags": tags }),
        }
    }

    #[test]
    fn deletion_alerts_are_linked_to_the_backups_of_their_host() {
        let links = BackupLinks::new(&[
            entry("fs01-nas", &["FS01"]),
            entry("fs01-cloud", &["fs01.corp.local"]),
            entry("db", &["DB01"]),
        ]);
        let a = links
            .link(&alert(
                "fs01.CORP.local",
                &["attack.impact", "attack.t1490"],
            ))
            .unwrap();
        assert_eq!(a.details["backup"], json!(["fs01-nas", "fs01-cloud"]));
        assert!(
            links.link(&alert("WS22", &["attack.t1490"])).is_none(),
            "another host"
        );
        assert!(
            links.link(&alert("FS01", &["attack.t1059"])).is_none(),
            "another technique"
        );
        assert!(BackupLinks::default()
            .link(&alert("FS01", &["attack.t1490"]))
            .is_none());
    }
}
