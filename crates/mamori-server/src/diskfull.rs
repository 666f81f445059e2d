//! Disk full is loud, not silent: what the server does when the event log, the search index or
//! SQLite runs out of space.
//!
//! * The **writer** ([`crate::pipeline`]) marks the episode ([`StorageHealth::set_full`]) when
//!   an append fails for lack of space. Batches waiting for an acknowledgement (HTTP ingest,
//!   uploads, file tail) are refused at once — HTTP answers 507 with a JSON body, nothing is
//!   acknowledged that was not stored, the file tail keeps its position and retries. Batches
//!   nobody waits for (syslog) are held, up to [`HOLD_MAX_EVENTS`], and retried until space
//!   returns; past that the queue fills, TCP senders wait (backpressure) and UDP drops and
//!   counts (`mamori_events_dropped_total{source="syslog_udp"}`).
//! * The **search index** reports its own failure in the store's stats; it re-indexes from the
//!   log once space returns.
//! * The **monitor** ([`run_monitor`]) turns all of it into one alert per episode. The alert
//!   goes to SQLite, which may be full too: it is retried until it is recorded, at the latest
//!   when space returns. `/health` says `degraded` with the reasons while it lasts.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mamori_event::{Level, RuleId};
use mamori_store::{Alert, AlertStore, EventStore, NewAlert};
use tokio::sync::broadcast;

use crate::metrics::Metrics;

/// Most events the writer holds in memory while the disk is full (beyond it, sources wait or,
/// for UDP, drop and count).
pub const HOLD_MAX_EVENTS: usize = 50_000;
/// How often the writer retries the held events while the disk is full.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How long shutdown keeps retrying held events before giving up on them (they were never
/// acknowledged; the count is logged and added to the source's dropped counter).
pub const SHUTDOWN_RETRY: Duration = Duration::from_secs(5);

/// The message of a refused batch (HTTP 507).
pub const REFUSED: &str =
    "insufficient storage: the server's disk is full; nothing of this request was stored, retry later";

/// Storage health shared by the writer, the monitor, `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct StorageHealth {
    full: AtomicBool,
    /// Why, and when a write last failed for lack of space.
    reason: Mutex<Option<(String, Instant)>>,
    /// Disk-full episodes seen since start.
    pub episodes: AtomicU64,
    /// Events the writer holds, waiting for space (received, not yet stored).
    pub held_events: AtomicU64,
    /// Events refused (not acknowledged) because the disk was full.
    pub refused_events: AtomicU64,
    /// Whether SQLite (alerts, state) refused a write for lack of space at the last probe.
    sqlite_full: AtomicBool,
}

impl StorageHealth {
    /// The event log cannot be written for lack of space.
    pub fn set_full(&self, reason: &str) {
        if !self.full.swap(true, Relaxed) {
            tracing::error!(reason, "disk full: the event log cannot be written; holding syslog, refusing HTTP ingest with 507");
        }
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((reason.to_owned(), Instant::now()));
    }

    /// The event log was written again.
    pub fn clear_full(&self) {
        // Called after every successful write: only an atomic load on the hot path.
        if self.full.load(Relaxed) && self.full.swap(false, Relaxed) {
            tracing::info!("space returned: the event log is written again");
            *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Whether the event log is full (new events are refused or held).
    pub fn is_full(&self) -> bool {
        self.full.load(Relaxed)
    }

    /// Why the event log cannot be written, while it cannot.
    pub fn reason(&self) -> Option<String> {
        if !self.is_full() {
            return None;
        }
        let r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        r.as_ref().map(|(m, _)| m.clone())
    }

    /// Whether a request that waits for an acknowledgement should be refused without trying:
    /// while the disk is full, except about once per [`RETRY_INTERVAL`] since the last failed
    /// write, so that with no syslog being held, a request still finds out when space returned.
    pub fn refuse_now(&self) -> bool {
        if !self.is_full() {
            return false;
        }
        let r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        r.as_ref()
            .is_some_and(|(_, at)| at.elapsed() < RETRY_INTERVAL)
    }

    /// Appends the disk-full series to a Prometheus text exposition.
    pub fn render(&self, s: &mut String) {
        let lines: [(&str, &str, &str, u64); 5] = [
            (
                "mamori_store_disk_full",
                "gauge",
                "1 while the event log cannot be written for lack of space.",
                u64::from(self.is_full()),
            ),
            (
                "mamori_state_disk_full",
                "gauge",
                "1 while SQLite (alerts, state) cannot be written for lack of space.",
                u64::from(self.sqlite_full.load(Relaxed)),
            ),
            (
                "mamori_disk_full_episodes_total",
                "counter",
                "Disk-full episodes since start.",
                self.episodes.load(Relaxed),
            ),
            (
                "mamori_store_held_events",
                "gauge",
                "Syslog events held in memory waiting for disk space (not yet stored).",
                self.held_events.load(Relaxed),
            ),
            (
                "mamori_events_refused_disk_full_total",
                "counter",
                "Events refused (HTTP 507, not acknowledged) because the disk was full.",
                self.refused_events.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in lines {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    }
}

/// Why storage is degraded right now (empty when it is not): the event log, the search index
/// and SQLite, each with its reason.
pub fn degraded_reasons(metrics: &Metrics, events: &dyn EventStore) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = metrics.storage.reason() {
        out.push(format!("disk full: event log: {r}"));
    }
    match events.stats() {
        Ok(s) => {
            if let Some(e) = s.index_error {
                let what = if s.index_disk_full {
                    "disk full: search index"
                } else {
                    "search index failing"
                };
                let lag = s.last_seq.unwrap_or(0).saturating_sub(s.indexed_seq);
                out.push(format!(
                    "{what} ({lag} stored events not searchable yet): {e}"
                ));
            }
        }
        Err(e) => out.push(format!("event store: {e}")),
    }
    if metrics.storage.sqlite_full.load(Relaxed) {
        out.push("disk full: alert and state database (SQLite)".to_owned());
    }
    out
}

/// Whether any store is out of space right now.
fn any_full(metrics: &Metrics, events: &dyn EventStore) -> Option<String> {
    let mut reasons = Vec::new();
    if let Some(r) = metrics.storage.reason() {
        reasons.push(format!("event log: {r}"));
    }
    if let Ok(s) = events.stats() {
        if s.index_disk_full {
            reasons.push(format!(
                "search index: {}",
                s.index_error.unwrap_or_default()
            ));
        }
    }
    if metrics.storage.sqlite_full.load(Relaxed) {
        reasons.push("alert and state database (SQLite)".to_owned());
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Key of the monitor's SQLite write probe (a tiny value rewritten every few seconds).
const PROBE_KEY: &str = "health/disk_probe";

/// One disk-full episode: from the first failure until space returned and the alert is in.
struct Episode {
    started: DateTime<Utc>,
    reason: String,
    recorded: bool,
}

/// Watches storage every `tick`: opens an episode when a store is out of space, raises one
/// alert per episode (retried until SQLite takes it), and closes the episode when space
/// returned and the alert is recorded.
pub async fn run_monitor(
    metrics: Arc<Metrics>,
    events: Arc<dyn EventStore>,
    alerts: Arc<dyn AlertStore>,
    alert_tx: broadcast::Sender<Alert>,
    tick: Duration,
) {
    let mut episode: Option<Episode> = None;
    let mut ticks = 0u64;
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        ticks += 1;
        let (m, ev, al, tx) = (
            Arc::clone(&metrics),
            Arc::clone(&events),
            Arc::clone(&alerts),
            alert_tx.clone(),
        );
        // Probe SQLite every few ticks, and on every tick of an episode.
        let probe = episode.is_some() || ticks % 5 == 1;
        let state = episode.take();
        let r = tokio::task::spawn_blocking(move || {
            if probe {
                let now = Utc::now().timestamp_micros().to_le_bytes();
                let full = matches!(al.kv_put(PROBE_KEY, &now), Err(e) if e.is_disk_full());
                m.storage.sqlite_full.store(full, Relaxed);
            }
            step(state, any_full(&m, &*ev), &m, &*al, &tx)
        })
        .await;
        // A panicked step forgets the episode; the next tick opens it again if still full.
        episode = r.unwrap_or(None);
    }
}

/// One monitor step: the episode after this tick.
fn step(
    mut episode: Option<Episode>,
    full: Option<String>,
    metrics: &Metrics,
    alerts: &dyn AlertStore,
    tx: &broadcast::Sender<Alert>,
) -> Option<Episode> {
    if let Some(reason) = &full {
        if episode.is_none() {
            metrics.storage.episodes.fetch_add(1, Relaxed);
            tracing::error!(%reason, "disk full");
            episode = Some(Episode {
                started: Utc::now(),
                reason: reason.clone(),
                recorded: false,
            });
        }
    }
    let ep = episode.as_mut()?;
    if !ep.recorded {
        let a = disk_full_alert(ep, full.is_none());
        match crate::pipeline::record_alert(alerts, tx, &a) {
            Ok(_) => ep.recorded = true,
            Err(e) => {
                tracing::warn!(error = %e, "the disk-full alert cannot be recorded yet; retrying")
            }
        }
    }
    if full.is_none() && ep.recorded {
        tracing::info!(since = %ep.started, "disk-full episode over: space returned");
        return None;
    }
    episode
}

fn disk_full_alert(ep: &Episode, over: bool) -> NewAlert {
    let now = Utc::now();
    let state = if over {
        " (space has returned since; recorded late because the database was full too)"
    } else {
        ""
    };
    NewAlert {
        rule_id: RuleId("mamori.storage.disk_full".into()),
        title: "Disk full: the server cannot store everything it receives".into(),
        level: Level::High,
        event_time: Some(ep.started),
        received_at: now,
        event_seqs: Vec::new(),
        group_key: Some("storage=disk".into()),
        // One alert per episode.
        dedup_key: Some(format!(
            "mamori.storage.disk_full|{}",
            ep.started.timestamp_micros()
        )),
        details: serde_json::json!({
            "reason": ep.reason,
            "since": ep.started,
            "space_returned": over,
            "description": format!("A store of the server ran out of disk space{state}: {}. While it lasts, HTTP ingest is refused with 507, syslog over TCP waits, syslog over UDP is dropped (counted in mamori_events_dropped_total) and search may lag. Free space in the data directory or raise retention.", ep.reason),
            "description_ja": format!("サーバーのストレージの空き容量がなくなりました{}: {}。この間、HTTP取り込みは507で拒否され、TCPのsyslogは待機し、UDPのsyslogは破棄されます(mamori_events_dropped_totalで計数)。検索が遅れる場合があります。データディレクトリの空き容量を確保するか、保持期間の設定を見直してください。", if over { "(その後容量は回復しましたが、データベースも満杯だったため記録が遅れました)" } else { "" }, ep.reason),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_store::{AlertFilter, MemoryAlertStore, MemoryEventStore};

    #[test]
    fn one_alert_per_episode_and_the_episode_ends_when_space_returns() {
        let m = Metrics::default();
        let al = MemoryAlertStore::default();
        let ev = MemoryEventStore::new();
        let (tx, _) = broadcast::channel(4);
        assert!(degraded_reasons(&m, &ev).is_empty());
        m.storage.set_full("no space left on device");
        assert_eq!(degraded_reasons(&m, &ev).len(), 1);
        let mut ep = None;
        for _ in 0..3 {
            ep = step(ep, any_full(&m, &ev), &m, &al, &tx);
        }
        assert!(ep.is_some());
        m.storage.clear_full();
        ep = step(ep, any_full(&m, &ev), &m, &al, &tx);
        assert!(ep.is_none());
        let alerts = al.list_alerts(&AlertFilter::default()).unwrap();
        assert_eq!(alerts.len(), 1, "one alert for one episode");
        assert_eq!(&*alerts[0].rule_id.0, "mamori.storage.disk_full");
        assert_eq!(m.storage.episodes.load(Relaxed), 1);
        // A second episode is a second alert.
        m.storage.set_full("again");
        std::thread::sleep(Duration::from_millis(2));
        ep = step(ep, any_full(&m, &ev), &m, &al, &tx);
        m.storage.clear_full();
        assert!(step(ep, any_full(&m, &ev), &m, &al, &tx).is_none());
        assert_eq!(al.list_alerts(&AlertFilter::default()).unwrap().len(), 2);
        let mut text = String::new();
        m.storage.render(&mut text);
        assert!(text.contains("mamori_disk_full_episodes_total 2"));
        assert!(text.contains("mamori_store_disk_full 0"));
    }
}
