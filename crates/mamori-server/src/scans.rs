//! `mamori scan` inside `mamori serve` (`[scan]`): the configured targets — never a target taken
//! from a log line, each inside the configured allow-list — scanned on their schedule
//! (`every`) on the blocking pool, one scan at a time; every run stored in
//! `<data_dir>/scans.db` with the first and last time each finding was seen; new findings above
//! "info" raise one alert per target and run. A finding whose path the logs show being probed
//! (an alert whose fields mention it) is raised one severity step and linked to those alerts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use mamori_event::{Level, RuleId};
use mamori_scan::{Finding, ScanConfig, ScanReport, Scanner, Severity, Target};
use mamori_store::{Alert, AlertFilter, AlertStore, EventStore, NewAlert};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::api::{blocking, ApiError, AppState, Authed};

/// The rule id of the alert new scan findings raise.
pub const NEW_FINDINGS_RULE: &str = "mamori.scan.new_findings";
/// The file of stored scans in the data directory.
pub use mamori_scan::store::SCANS_FILE;
const TICK: Duration = Duration::from_secs(60);
/// How far back alerts are read to find probes of a finding's path.
const PROBE_LOOKBACK_DAYS: i64 = 90;

/// Checks `[scan]` when the configuration is loaded: allow-list entries and targets parse,
/// targets need an allow-list, the schedule is sane. Names are not resolved here.
pub fn validate(cfg: &ScanConfig) -> Result<(), String> {
    mamori_scan::AllowList::parse(&cfg.allow).map_err(|e| e.to_string())?;
    for t in &cfg.targets {
        Target::parse(t).map_err(|e| e.to_string())?;
    }
    if !cfg.targets.is_empty() && cfg.allow.is_empty() {
        return Err("targets need an allow-list (allow = [...])".into());
    }
    cfg.every().map_err(|e| e.to_string())?;
    Ok(())
}

fn level(s: Severity) -> Level {
    match s {
        Severity::Info => Level::Informational,
        Severity::Low => Level::Low,
        Severity::Medium => Level::Medium,
        Severity::High => Level::High,
        Severity::Critical => Level::Critical,
    }
}

/// The scans of one server.
pub struct ScanService {
    cfg: Option<ScanConfig>,
    db: Mutex<Connection>,
    alerts: Arc<dyn AlertStore>,
    events: Arc<dyn EventStore>,
    alert_tx: broadcast::Sender<Alert>,
    running: AtomicBool,
}

impl std::fmt::Debug for ScanService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanService")
            .field("enabled", &self.cfg.is_some())
            .finish_non_exhaustive()
    }
}

/// Events read per alert, and in all, when looking for the URLs alerts were raised on.
const EVENTS_PER_ALERT: usize = 50;
const EVENTS_IN_ALL: usize = 5000;

/// `(alert id, URL text)` of every recent alert: the values of its rule's fields and the
/// `url.original`/`url.path` of its events (a failed-probe episode cites its events only).
pub fn alert_urls(alerts: &[Alert], events: &dyn EventStore) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut budget = EVENTS_IN_ALL;
    for a in alerts {
        if a.rule_id.0.as_ref() == NEW_FINDINGS_RULE {
            continue;
        }
        if let Some(f) = a.details["fields"].as_object() {
            for v in f.values().filter_map(|v| v.as_str()) {
                out.push((a.id.0, v.to_string()));
            }
        }
        for seq in a.event_seqs.iter().rev().take(EVENTS_PER_ALERT.min(budget)) {
            budget -= 1;
            if let Ok(Some(e)) = events.get(*seq) {
                for name in ["url.original", "url.path"] {
                    if let Some(v) = e.event.get_str(name) {
                        out.push((a.id.0, v.into_owned()));
                    }
                }
            }
        }
    }
    out
}

/// The alerts whose URLs contain `path`: the logs show it probed or exploited.
pub fn probes_of(path: &str, urls: &[(i64, String)]) -> Vec<i64> {
    // `/` and empty paths are in every web log: nothing to learn from them.
    if path.len() < 2 {
        return Vec::new();
    }
    let p = path.trim_end_matches('/');
    let mut ids: Vec<i64> = urls
        .iter()
        .filter(|(_, u)| u.contains(p))
        .map(|(id, _)| *id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl ScanService {
    pub fn open(
        cfg: Option<ScanConfig>,
        data_dir: &Path,
        alerts: Arc<dyn AlertStore>,
        events: Arc<dyn EventStore>,
        alert_tx: broadcast::Sender<Alert>,
    ) -> rusqlite::Result<ScanService> {
        let db = Connection::open(data_dir.join(SCANS_FILE))?;
        db.busy_timeout(Duration::from_secs(10))?;
        db.execute_batch(mamori_scan::store::SCHEMA)?;
        Ok(ScanService {
            cfg,
            db: Mutex::new(db),
            alerts,
            events,
            alert_tx,
            running: AtomicBool::new(false),
        })
    }

    pub fn enabled(&self) -> bool {
        self.cfg.as_ref().is_some_and(|c| !c.targets.is_empty())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last_started(&self) -> Option<chrono::DateTime<Utc>> {
        self.conn()
            .query_row(
                "SELECT started FROM scans ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .ok()
            .flatten()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            .map(|d| d.with_timezone(&Utc))
    }

    fn due(&self) -> bool {
        let Some(cfg) = self.cfg.as_ref().filter(|_| self.enabled()) else {
            return false;
        };
        let every = cfg
            .every()
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .unwrap_or(chrono::Duration::days(7));
        match self.last_started() {
            Some(t) => Utc::now().signed_duration_since(t) >= every,
            None => true,
        }
    }

    /// Scans the configured targets now (blocking), stores the run, links findings to the
    /// alerts that show their path probed, and raises the alerts of new findings.
    pub fn run_now(&self) -> Result<ScanReport, String> {
        let cfg = self.cfg.clone().ok_or("no [scan] section")?;
        if self.running.swap(true, Ordering::SeqCst) {
            return Err("a scan is already running".into());
        }
        let res = self.run_inner(&cfg);
        self.running.store(false, Ordering::SeqCst);
        res
    }

    fn run_inner(&self, cfg: &ScanConfig) -> Result<ScanReport, String> {
        let targets: Vec<Target> = cfg
            .targets
            .iter()
            .map(|t| Target::parse(t))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let scanner = Scanner::new(cfg, cfg.profile).map_err(|e| e.to_string())?;
        let mut report = scanner
            .run(&targets, |t| tracing::info!(target = %t, "scan started"))
            .map_err(|e| e.to_string())?;
        let recent = self
            .alerts
            .list_alerts(&AlertFilter {
                since: Some(Utc::now() - chrono::Duration::days(PROBE_LOOKBACK_DAYS)),
                limit: 5000,
                ..AlertFilter::default()
            })
            .unwrap_or_default();
        let urls = alert_urls(&recent, &*self.events);
        let mut linked: HashMap<String, Vec<i64>> = HashMap::new();
        for t in &mut report.targets {
            for f in &mut t.findings {
                let ids = probes_of(&f.path, &urls);
                if !ids.is_empty() && f.severity > Severity::Info {
                    f.severity = f.severity.raised();
                    f.evidence = format!(
                        "{} · probed in the logs: alerts {}",
                        f.evidence,
                        ids.iter()
                            .map(|i| i.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    linked.insert(f.key(), ids);
                }
            }
        }
        let now = Utc::now().to_rfc3339();
        let report_json = serde_json::to_string(&report).map_err(|e| e.to_string())?;
        // The run and its findings in one transaction: a reader (the API, the monthly report)
        // never sees a run whose findings are not stored yet.
        let (scan_id, new_by_target) = {
            let mut c = self.conn();
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| e.to_string())?;
            tx.execute(
                "INSERT INTO scans(started, duration_ms, profile, worst, findings, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    report.started,
                    report.duration_ms as i64,
                    report.profile.as_str(),
                    report.worst().as_str(),
                    report.findings().count() as i64,
                    report_json
                ],
            )
            .map_err(|e| e.to_string())?;
            let scan_id = tx.last_insert_rowid();
            let mut new_by_target = Vec::new();
            for t in &report.targets {
                let mut new = Vec::new();
                for f in &t.findings {
                    if upsert(&tx, f, scan_id, &now)? && f.severity > Severity::Info {
                        new.push(f);
                    }
                }
                new_by_target.push((&t.target, new));
            }
            tx.commit().map_err(|e| e.to_string())?;
            (scan_id, new_by_target)
        };
        for (target, new) in new_by_target {
            if !new.is_empty() {
                self.raise(target, scan_id, &new, &linked);
            }
        }
        Ok(report)
    }

    fn raise(&self, target: &str, scan: i64, new: &[&Finding], linked: &HashMap<String, Vec<i64>>) {
        let worst = new
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Low);
        let links: Vec<i64> = new
            .iter()
            .filter_map(|f| linked.get(&f.key()))
            .flatten()
            .copied()
            .collect();
        let en: Vec<String> = new
            .iter()
            .map(|f| format!("{} ({})", f.title.en, f.location))
            .collect();
        let ja: Vec<String> = new
            .iter()
            .map(|f| format!("{}（{}）", f.title.ja, f.location))
            .collect();
        let a = NewAlert {
            rule_id: RuleId(NEW_FINDINGS_RULE.into()),
            title: format!("New scan findings on {target}"),
            level: level(worst),
            event_time: None,
            received_at: Utc::now(),
            event_seqs: Vec::new(),
            group_key: Some(format!("scan.target={target}")),
            dedup_key: Some(format!("{NEW_FINDINGS_RULE}|{target}|{scan}")),
            details: json!({
                "scan": scan,
                "target": target,
                "findings": new.iter().map(|f| json!({
                    "check": f.check, "severity": f.severity, "location": f.location,
                    "title": f.title, "fix": f.fix, "cves": f.cves,
                })).collect::<Vec<_>>(),
                "linked_alerts": links,
                "title_ja": format!("診断で新しい指摘: {target}"),
                "description": format!("The scan of {target} found: {}.", en.join("; ")),
                "description_ja": format!("{target} の診断で次の指摘がありました: {}。", ja.join("、")),
            }),
        };
        match crate::pipeline::record_alert(&*self.alerts, &self.alert_tx, &a) {
            Ok(outcome) => {
                let c = self.conn();
                for f in new {
                    if let Err(e) = c.execute(
                        "UPDATE findings SET alert_id = ?2 WHERE key = ?1",
                        params![f.key(), outcome.id().0],
                    ) {
                        tracing::error!(target = %target, check = %f.check, error = %e, "cannot link the finding to its alert");
                    }
                }
            }
            Err(e) => tracing::error!(target = %target, error = %e, "cannot record the scan alert"),
        }
    }

    /// The configuration, the last `limit` runs (newest first, the newest with its report)
    /// and every finding with when it was first and last seen.
    pub fn overview(&self, limit: usize) -> rusqlite::Result<JsonValue> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT id, started, duration_ms, profile, worst, findings, report FROM scans ORDER BY id DESC LIMIT ?1",
        )?;
        let runs: Vec<JsonValue> = st
            .query_map([limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?
            .filter_map(|r| r.ok())
            .enumerate()
            .map(|(i, (id, started, ms, profile, worst, n, report))| {
                json!({
                    "id": id, "started": started, "duration_ms": ms, "profile": profile,
                    "worst": worst, "findings": n,
                    "report": if i == 0 { serde_json::from_str(&report).unwrap_or(JsonValue::Null) } else { JsonValue::Null },
                })
            })
            .collect();
        let mut st = c.prepare(
            "SELECT check_id, target, location, severity, first_seen, last_seen, first_scan, last_scan, alert_id FROM findings ORDER BY last_scan DESC, severity, check_id LIMIT 5000",
        )?;
        let findings: Vec<JsonValue> = st
            .query_map([], |r| {
                Ok(json!({
                    "check": r.get::<_, String>(0)?, "target": r.get::<_, String>(1)?,
                    "location": r.get::<_, String>(2)?, "severity": r.get::<_, String>(3)?,
                    "first_seen": r.get::<_, String>(4)?, "last_seen": r.get::<_, String>(5)?,
                    "first_scan": r.get::<_, i64>(6)?, "last_scan": r.get::<_, i64>(7)?,
                    "alert_id": r.get::<_, Option<i64>>(8)?,
                }))
            })?
            .filter_map(|r| r.ok())
            .collect();
        let cfg = self.cfg.clone().unwrap_or_default();
        Ok(json!({
            "enabled": self.enabled(),
            "targets": cfg.targets,
            "profile": cfg.profile,
            "every": cfg.every.unwrap_or_else(|| "7d".into()),
            "running": self.running.load(Ordering::SeqCst),
            "scans": runs,
            "findings": findings,
        }))
    }
}

/// Stores `f`; true when it was not seen before.
fn upsert(c: &Connection, f: &Finding, scan: i64, now: &str) -> Result<bool, String> {
    let key = f.key();
    let known: Option<i64> = c
        .query_row(
            "SELECT first_scan FROM findings WHERE key = ?1",
            [&key],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    if known.is_some() {
        c.execute(
            "UPDATE findings SET last_seen = ?2, last_scan = ?3, severity = ?4 WHERE key = ?1",
            params![key, now, scan, f.severity.as_str()],
        )
        .map_err(|e| e.to_string())?;
        return Ok(false);
    }
    c.execute(
        "INSERT INTO findings(key, check_id, target, location, severity, first_seen, last_seen, first_scan, last_scan) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?7)",
        params![key, f.check, f.target, f.location, f.severity.as_str(), now, scan],
    )
    .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Scans when due, checking every minute.
pub(crate) fn schedule(svc: Arc<ScanService>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            if !svc.due() {
                continue;
            }
            let s = Arc::clone(&svc);
            match tokio::task::spawn_blocking(move || s.run_now()).await {
                Ok(Ok(r)) => tracing::info!(findings = r.findings().count(), "scan finished"),
                Ok(Err(e)) => tracing::error!(error = %e, "scan could not run"),
                Err(e) => tracing::error!(error = %e, "scan panicked"),
            }
        }
    })
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/scans", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Runs to list, newest first; default 10, at most 100.
    limit: Option<usize>,
}

async fn list(
    _a: Authed,
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<JsonValue>, ApiError> {
    let limit = q.limit.unwrap_or(10);
    if limit > 100 {
        return Err(ApiError::BadRequest(format!(
            "limit = {limit}: at most 100 scans"
        )));
    }
    let svc = Arc::clone(&st.scans);
    blocking(move || {
        svc.overview(limit)
            .map(Json)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_store::{AlertId, AlertStatus};

    fn alert(id: i64, fields: JsonValue) -> Alert {
        Alert {
            id: AlertId(id),
            rule_id: RuleId("r".into()),
            title: "Web probe".into(),
            level: Level::Medium,
            status: AlertStatus::Open,
            event_time: None,
            received_at: Utc::now(),
            last_seen: Utc::now(),
            count: 1,
            event_seqs: vec![],
            group_key: None,
            dedup_key: None,
            details: json!({ "fields": fields }),
            ack: None,
        }
    }

    #[test]
    fn a_path_probed_in_the_logs_links_its_alerts() {
        let events = mamori_store::MemoryEventStore::new();
        let alerts = vec![
            alert(1, json!({ "url.original": "/.git/HEAD?x=1" })),
            alert(2, json!({ "url.original": "/index.html" })),
            alert(3, json!({ "url.path": "/.git/config" })),
        ];
        let urls = alert_urls(&alerts, &events);
        assert_eq!(probes_of("/.git/HEAD", &urls), vec![1]);
        assert_eq!(probes_of("/.git/", &urls), vec![1, 3]);
        assert!(probes_of("/", &urls).is_empty(), "too generic");
        assert!(probes_of("/.env", &urls).is_empty());
    }

    #[test]
    fn validation() {
        let mut c = ScanConfig {
            targets: vec!["https://www.example.co.jp/".into()],
            ..ScanConfig::default()
        };
        assert!(validate(&c).unwrap_err().contains("allow-list"));
        c.allow = vec!["www.example.co.jp".into()];
        validate(&c).unwrap();
        c.allow = vec!["bad host!".into()];
        assert!(validate(&c).is_err());
        c.allow = vec!["www.example.co.jp".into()];
        c.every = Some("5m".into());
        assert!(validate(&c).is_err());
    }
}
