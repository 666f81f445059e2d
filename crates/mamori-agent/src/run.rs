//! `mamori agent run`: the collector loop and the sender thread around the disk buffer.
//!
//! The collector polls the sources, seals a batch (at `max_records`, after `max_wait_ms`, or at
//! once when it holds a file integrity or ransomware event) and appends it to the buffer
//! together with the positions after it, then saves the same positions to
//! `checkpoint.json` — both under the buffer's lock, so the sender never sends a batch whose
//! positions are not saved somewhere. On start the newer of the two wins. The FIM baseline is
//! saved after the batch holding its changes is buffered.
//!
//! The agent needs no clean shutdown: SIGTERM or SIGKILL at any point loses nothing that was
//! buffered and sends nothing twice (the server deduplicates by batch number).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::batch::{Batch, BufferState, Record};
use crate::client::{Client, Credential, Reply};
use crate::config::{AgentConfig, FimConfig, ResponseMode};
use crate::spool::{self, Spool};
use crate::tail::{FilePos, Tail};
use crate::{fim, inventory, journald, ransom, Error, Result};

const CHECKPOINT_FILE: &str = "checkpoint.json";

/// How far every source was read after batch `seq`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Positions {
    pub seq: u64,
    #[serde(default)]
    pub files: BTreeMap<String, FilePos>,
    #[serde(default)]
    pub journald_cursor: Option<String>,
}

fn load_positions(state_dir: &Path, last: Option<(u64, Vec<u8>)>) -> Result<Positions> {
    let p = state_dir.join(CHECKPOINT_FILE);
    let saved: Positions = match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
            path: p.clone(),
            offset: e.column() as u64,
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Positions::default(),
        Err(e) => return Err(Error::Io { path: p, source: e }),
    };
    if let Some((seq, bytes)) = last {
        if seq > saved.seq {
            // Crashed between buffering a batch and saving the checkpoint: the batch knows.
            if let Ok(pos) = serde_json::from_slice::<Positions>(&bytes) {
                tracing::info!(
                    seq,
                    "resuming from the positions of the last buffered batch"
                );
                return Ok(pos);
            }
        }
    }
    Ok(saved)
}

struct Shared {
    spool: Mutex<Spool>,
    wake: Condvar,
}

/// Counters for the bench and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub records: std::sync::atomic::AtomicU64,
    pub batches_sent: std::sync::atomic::AtomicU64,
}

/// Runs until `stop` is set (a signal ends the process otherwise; that is safe).
pub fn run(cfg: AgentConfig, stop: Arc<AtomicBool>, stats: Arc<Stats>) -> Result<()> {
    let state = cfg.state_dir.clone();
    std::fs::create_dir_all(&state).map_err(|e| Error::Io {
        path: state.clone(),
        source: e,
    })?;
    let cred = Credential::load(&state)?;
    let client = Client::new(cred.clone())?;
    let responder = {
        let c = Client::new(cred)?;
        let r = crate::respond::HostResponder::open(
            cfg.response.clone(),
            c.server_endpoints(),
            &state,
        )?;
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("agent-response".into())
            .spawn(move || crate::respond::poll_loop(&c, r, &stop))
            .map_err(|e| Error::Invalid(format!("cannot start the response thread: {e}")))?
    };
    let (sp, report) = Spool::open(&state.join("buffer"), cfg.buffer.max_bytes)?;
    if report.torn_bytes > 0 || !report.corrupt.is_empty() {
        tracing::warn!(
            torn_bytes = report.torn_bytes,
            corrupt = report.corrupt.len(),
            "the disk buffer was repaired"
        );
    }
    tracing::info!(
        pending = report.pending,
        dropped = sp.dropped(),
        "disk buffer opened"
    );
    let positions = load_positions(&state, report.last.clone())?;
    let shared = Arc::new(Shared {
        spool: Mutex::new(sp),
        wake: Condvar::new(),
    });
    let sender = {
        let shared = Arc::clone(&shared);
        let stop = Arc::clone(&stop);
        let stats = Arc::clone(&stats);
        let hb = Duration::from_secs(cfg.heartbeat_secs);
        std::thread::Builder::new()
            .name("agent-sender".into())
            .spawn(move || send_loop(&client, &shared, &stop, hb, &stats))
            .map_err(|e| Error::Invalid(format!("cannot start the sender: {e}")))?
    };
    let r = Collector::new(&cfg, positions)?.run(&cfg, &shared, &stop, &stats);
    stop.store(true, Ordering::Relaxed);
    shared.wake.notify_all();
    let _ = sender.join();
    let _ = responder.join();
    r
}

fn buffer_state(sp: &Spool) -> BufferState {
    BufferState {
        bytes: sp.bytes(),
        pending: sp.pending() as u64,
        dropped: sp.dropped(),
    }
}

fn send_loop(
    client: &Client,
    shared: &Shared,
    stop: &AtomicBool,
    heartbeat: Duration,
    stats: &Stats,
) {
    let mut backoff = Duration::from_millis(250);
    let mut last_contact = Instant::now() - heartbeat;
    let mut failing_since: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let next = {
            let sp = shared.spool.lock().unwrap_or_else(|e| e.into_inner());
            sp.peek().map(|r| (r, buffer_state(&sp)))
        };
        let outcome = match next {
            Ok((Some(rec), _)) => match client.send_batch(&rec.body) {
                Reply::Ok(_) => {
                    let mut sp = shared.spool.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = sp.ack(rec.seq) {
                        tracing::error!(error = %e, "cannot record an acknowledgement; the batch will be sent again (the server drops the repeat)");
                    }
                    stats.batches_sent.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Reply::Refused(s, m) => Err(format!(
                    "the server refuses this agent (HTTP {s}: {m}); batches stay buffered"
                )),
                Reply::Retry(m) => Err(m),
            },
            Ok((None, state)) => {
                if last_contact.elapsed() >= heartbeat {
                    match client.heartbeat(&serde_json::json!({ "buffer": state })) {
                        Reply::Ok(_) => Ok(()),
                        Reply::Refused(s, m) => Err(format!(
                            "the server refuses this agent (HTTP {s}: {m}); batches stay buffered"
                        )),
                        Reply::Retry(m) => Err(m),
                    }
                } else {
                    let sp = shared.spool.lock().unwrap_or_else(|e| e.into_inner());
                    let left = heartbeat.saturating_sub(last_contact.elapsed());
                    let _ = shared
                        .wake
                        .wait_timeout(sp, left.min(Duration::from_millis(500)));
                    continue;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "a buffered batch cannot be read; it is skipped and counted as dropped");
                let mut sp = shared.spool.lock().unwrap_or_else(|e| e.into_inner());
                let _ = sp.skip_corrupt();
                continue;
            }
        };
        match outcome {
            Ok(()) => {
                if let Some(t) = failing_since.take() {
                    tracing::info!(after_secs = t.elapsed().as_secs(), "server reachable again");
                }
                last_error = None;
                last_contact = Instant::now();
                backoff = Duration::from_millis(250);
            }
            Err(m) => {
                // Logged when the failure starts and whenever its reason changes (the server
                // came back with another certificate, the agent was revoked…).
                if failing_since.is_none() || last_error.as_deref() != Some(m.as_str()) {
                    tracing::warn!(error = %m, "cannot deliver to the server; buffering");
                    failing_since.get_or_insert_with(Instant::now);
                    last_error = Some(m);
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

struct Collector {
    tails: Vec<Tail>,
    journald_rx: Option<mpsc::Receiver<(Record, String)>>,
    _journald: Option<journald::Journald>,
    cursor: Option<String>,
    fim: Option<fim::Fim>,
    detector: Option<ransom::Detector>,
    host: String,
    last_scan: Instant,
    /// The first round scans, so changes made while the agent was stopped are reported.
    scanned: bool,
    /// Batch numbers already used (from the checkpoint): never reused even if the buffer
    /// directory was lost.
    seq_floor: u64,
    /// The last inventory sent, when it was taken, and one waiting to be saved once the batch
    /// holding its changes is buffered.
    inventory: Option<inventory::Snapshot>,
    inventory_at: Option<Instant>,
    inventory_unsaved: Option<inventory::Snapshot>,
}

impl Collector {
    fn new(cfg: &AgentConfig, pos: Positions) -> Result<Collector> {
        let mut paths: Vec<PathBuf> = cfg.file.iter().flat_map(|f| f.paths.clone()).collect();
        paths.sort();
        paths.dedup();
        let tails = paths
            .into_iter()
            .map(|p| {
                let saved = pos.files.get(&*p.to_string_lossy()).copied();
                Tail::new(p, saved)
            })
            .collect();
        let (journald_rx, jd) = if cfg.journald.enabled {
            let (tx, rx) = mpsc::sync_channel(10_000);
            match journald::Journald::start(&cfg.journald.units, pos.journald_cursor.as_deref(), tx)
            {
                Ok(j) => (Some(rx), Some(j)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot run journalctl; journald is not collected");
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        let detector = (!cfg.ransomware.paths.is_empty()).then(|| {
            let d = ransom::Detector::new(cfg.ransomware.clone());
            d.plant_canaries();
            d
        });
        let mut watched = cfg.fim.paths.clone();
        watched.extend(cfg.ransomware.paths.iter().cloned());
        let fim = if watched.is_empty() {
            None
        } else {
            let mut f = fim::Fim::open(
                FimConfig {
                    paths: watched,
                    ..cfg.fim.clone()
                },
                &cfg.state_dir,
            )?;
            f.watch();
            tracing::info!(files = f.len(), "file integrity baseline loaded");
            Some(f)
        };
        Ok(Collector {
            tails,
            journald_rx,
            _journald: jd,
            cursor: pos.journald_cursor.clone(),
            fim,
            detector,
            host: crate::hostname(),
            last_scan: Instant::now(),
            scanned: false,
            seq_floor: pos.seq,
            inventory: if cfg.inventory.enabled {
                inventory::load(&cfg.state_dir)?
            } else {
                None
            },
            inventory_at: None,
            inventory_unsaved: None,
        })
    }

    fn positions(&self, seq: u64) -> Positions {
        Positions {
            seq,
            files: self
                .tails
                .iter()
                .filter_map(|t| Some((t.path().to_string_lossy().into_owned(), t.position()?)))
                .collect(),
            journald_cursor: self.cursor.clone(),
        }
    }

    fn run(
        mut self,
        cfg: &AgentConfig,
        shared: &Shared,
        stop: &AtomicBool,
        stats: &Stats,
    ) -> Result<()> {
        let max = cfg.buffer.max_records;
        let max_wait = Duration::from_millis(cfg.buffer.max_wait_ms);
        let poll = Duration::from_millis(cfg.buffer.poll_ms);
        let scan_every = Duration::from_secs(cfg.fim.scan_interval_secs);
        let mut pending: Vec<Record> = Vec::new();
        let mut first_at: Option<Instant> = None;
        let mut lines = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let before = pending.len();
            let mut urgent = false;
            for t in &mut self.tails {
                let room = max.saturating_sub(pending.len());
                if room == 0 {
                    break;
                }
                lines.clear();
                t.poll(room, &mut lines);
                pending.extend(lines.drain(..).map(|l| Record::Line {
                    path: l.path,
                    line: l.line,
                    offset: l.offset,
                    text: l.text,
                    truncated: l.truncated,
                }));
            }
            if let Some(rx) = &self.journald_rx {
                while pending.len() < max {
                    let Ok((rec, cursor)) = rx.try_recv() else {
                        break;
                    };
                    pending.push(rec);
                    self.cursor = Some(cursor);
                }
            }
            if let Some(f) = &mut self.fim {
                let mut changes = Vec::new();
                f.poll(&mut changes);
                if !self.scanned
                    || (!scan_every.is_zero() && self.last_scan.elapsed() >= scan_every)
                {
                    f.scan(&mut changes);
                    self.last_scan = Instant::now();
                    self.scanned = true;
                }
                let now = Instant::now();
                for c in &changes {
                    pending.push(Record::Event {
                        source: "fim".into(),
                        fields: fim::change_fields(c, &self.host),
                    });
                    urgent = true;
                    if let Some(d) = &mut self.detector {
                        if let Some(a) = d.observe(c, now) {
                            let ev = respond(&a, d.mode(), &self.host);
                            pending.push(Record::Event {
                                source: "ransomware".into(),
                                fields: ev,
                            });
                        }
                    }
                }
            }
            if cfg.inventory.enabled
                && self.inventory_unsaved.is_none()
                && self
                    .inventory_at
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(cfg.inventory.interval_secs))
            {
                self.inventory_at = Some(Instant::now());
                let snap = inventory::collect(&cfg.inventory);
                if self
                    .inventory
                    .as_ref()
                    .is_none_or(|old| inventory::changed(old, &snap))
                {
                    for fields in inventory::events(self.inventory.as_ref(), &snap, &self.host) {
                        pending.push(Record::Event {
                            source: "inventory".into(),
                            fields,
                        });
                    }
                    urgent = true;
                    self.inventory_unsaved = Some(snap);
                }
            }
            let got = pending.len() > before;
            if got && first_at.is_none() {
                first_at = Some(Instant::now());
            }
            let due =
                pending.len() >= max || urgent || first_at.is_some_and(|t| t.elapsed() >= max_wait);
            if !pending.is_empty() && due {
                stats
                    .records
                    .fetch_add(pending.len() as u64, Ordering::Relaxed);
                self.seal(std::mem::take(&mut pending), cfg, shared)?;
                first_at = None;
                if let Some(f) = &mut self.fim {
                    f.save()?;
                }
                if let Some(snap) = self.inventory_unsaved.take() {
                    inventory::save(&cfg.state_dir, &snap)?;
                    self.inventory = Some(snap);
                }
            }
            if !got {
                std::thread::sleep(poll);
            }
        }
        Ok(())
    }

    /// Buffers one batch and the positions after it.
    fn seal(&mut self, records: Vec<Record>, cfg: &AgentConfig, shared: &Shared) -> Result<()> {
        let mut sp = shared.spool.lock().unwrap_or_else(|e| e.into_inner());
        let seq = sp.last_seq().max(self.seq_floor) + 1;
        self.seq_floor = seq;
        let pos = self.positions(seq);
        let pos_json = serde_json::to_vec(&pos).map_err(|e| Error::Invalid(e.to_string()))?;
        let body = Batch {
            seq,
            buffer: buffer_state(&sp),
            records,
        }
        .encode()?;
        sp.append(&spool::Record {
            seq,
            positions: pos_json.clone(),
            body,
        })?;
        spool::write_atomic(&cfg.state_dir.join(CHECKPOINT_FILE), &pos_json)?;
        drop(sp);
        shared.wake.notify_all();
        Ok(())
    }
}

/// Finds the process behind an alarm and, in automatic mode, kills it; the event to report.
fn respond(a: &ransom::Alarm, mode: ResponseMode, host: &str) -> serde_json::Value {
    tracing::error!(directory = %a.directory, reason = %a.reason, "ransomware behaviour detected");
    let culprits = ransom::find_culprits(Path::new(&a.directory), Duration::from_millis(1500));
    let top = culprits.first();
    let response = match (mode, top) {
        (ResponseMode::Detect, _) => ("none".to_owned(), "detect mode: reported only".to_owned()),
        (ResponseMode::Automatic, None) => (
            "kill".to_owned(),
            "failed: no process found with files open in the share".to_owned(),
        ),
        (ResponseMode::Automatic, Some(c)) => match ransom::kill(c.pid) {
            Ok(()) => {
                tracing::error!(pid = c.pid, name = %c.name, "ransomware process killed");
                (
                    "kill".to_owned(),
                    format!("killed PID {} ({})", c.pid, c.name),
                )
            }
            Err(e) => (
                "kill".to_owned(),
                format!("failed to kill PID {}: {e}", c.pid),
            ),
        },
    };
    ransom::alarm_fields(a, top, (&response.0, &response.1), host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_of_checkpoint_and_buffer_wins() {
        let d = tempfile::tempdir().unwrap();
        let mut p = Positions {
            seq: 3,
            ..Positions::default()
        };
        p.journald_cursor = Some("c3".into());
        spool::write_atomic(
            &d.path().join(CHECKPOINT_FILE),
            &serde_json::to_vec(&p).unwrap(),
        )
        .unwrap();
        let newer = Positions {
            seq: 4,
            journald_cursor: Some("c4".into()),
            ..Positions::default()
        };
        let got = load_positions(d.path(), Some((4, serde_json::to_vec(&newer).unwrap()))).unwrap();
        assert_eq!(got, newer);
        let got = load_positions(d.path(), Some((3, b"{}".to_vec()))).unwrap();
        assert_eq!(got, p);
        assert_eq!(load_positions(d.path(), None).unwrap(), p);
    }
}
