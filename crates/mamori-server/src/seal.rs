//! Sealing: the evidence vault follows the event store.
//!
//! One thread ("mamori-sealer") owns the vault while the server runs. It reads the raw bytes of
//! stored events in seq order (`EventStore::raw_since`) and appends them to the vault with
//! their receipt time and origin, the store seq in the source (`origin#seq=N`), so an incident's
//! events can be exported from the vault and the sealer resumes exactly after a crash (the
//! resume point is read back from the vault itself, never from a second file that could
//! disagree). It also appends the chain of custody: incident changes, response actions and
//! analyst notes made through the server arrive as audit entries on a channel.
//!
//! Sealing follows storage instead of sitting in front of it, so it is never the ingest
//! bottleneck: the store already holds the bytes durably, and the vault catches up within
//! [`POLL`]. Tree heads are signed by the vault's own checkpoint policy and at shutdown.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;
use mamori_store::EventStore;
use mamori_vault::{AuditAction, AuditEntry, ExportRequest, ExportSummary, RecordInput, Vault};

/// How often the sealer looks for newly stored events.
pub const POLL: Duration = Duration::from_millis(200);
/// Records read from the store and sealed per vault write (one fsync each).
const BATCH: usize = 4096;

enum Msg {
    Audit(AuditEntry),
    Export(Box<ExportJob>),
    Stop,
}

/// An evidence export asked of the sealer while the server runs.
struct ExportJob {
    req: ExportRequest,
    out: PathBuf,
    reply: mpsc::Sender<Result<ExportSummary, String>>,
}

/// Hands custody records to the sealer. Cheap to clone.
#[derive(Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<Msg>,
}

impl AuditHandle {
    /// Records who did what to what, in the vault's chain of custody. Never blocks; if the
    /// sealer has stopped the entry is logged instead.
    pub fn record(&self, actor: &str, action: AuditAction, target: &str, detail: String) {
        let e = AuditEntry::new(Utc::now(), actor, action, target, detail);
        if self.tx.send(Msg::Audit(e)).is_err() {
            tracing::error!(
                actor,
                target,
                "custody record not sealed: the sealer has stopped"
            );
        }
    }
}

impl AuditHandle {
    /// Writes an evidence bundle to `out` through the sealer, which owns the vault, so evidence
    /// can be exported while the server runs (issue #17). Everything stored so far is sealed
    /// first; the export itself is recorded in the chain of custody (by the vault). Blocks
    /// until the bundle is written or `timeout` passes.
    pub fn export(
        &self,
        req: ExportRequest,
        out: PathBuf,
        timeout: Duration,
    ) -> Result<ExportSummary, String> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(Msg::Export(Box::new(ExportJob { req, out, reply })))
            .map_err(|_| "the sealer has stopped".to_owned())?;
        rx.recv_timeout(timeout)
            .map_err(|_| format!("the export did not finish within {}s", timeout.as_secs()))?
    }
}

/// The running sealer.
pub struct Sealer {
    handle: AuditHandle,
    thread: Option<JoinHandle<()>>,
}

impl Sealer {
    /// Starts sealing from where the vault left off. Fails when the vault's records cannot be
    /// read back.
    pub fn start(vault: Vault, store: Arc<dyn EventStore>) -> Result<Sealer, String> {
        let mut cursor = vault
            .last_store_seq()
            .map_err(|e| format!("cannot read the vault's last sealed event: {e}"))?
            .unwrap_or(0);
        let (tx, rx) = mpsc::channel();
        let handle = AuditHandle { tx };
        let mut renumbered = None;
        let last = store.stats().map(|s| s.last_seq.unwrap_or(0)).unwrap_or(0);
        if cursor > last {
            // The event store was recreated (its seqs start again at 1): say so in the chain
            // of custody and seal the new store from its start.
            renumbered = Some(AuditEntry::new(
                Utc::now(),
                "mamori",
                AuditAction::Other,
                "events",
                format!(
                    "the event store restarted its numbering: the vault had sealed through seq {cursor}, the store ends at {last}; sealing the new store from its start"
                ),
            ));
            cursor = 0;
        }
        let thread = std::thread::Builder::new()
            .name("mamori-sealer".into())
            .spawn(move || {
                let mut w = Worker {
                    vault: Some(vault),
                    store,
                    cursor,
                };
                if let Some(e) = renumbered {
                    w.audit(e);
                }
                w.run(rx);
            })
            .map_err(|e| format!("cannot start the sealer thread: {e}"))?;
        Ok(Sealer {
            handle,
            thread: Some(thread),
        })
    }

    pub fn audit_handle(&self) -> AuditHandle {
        self.handle.clone()
    }

    /// Seals everything stored so far, signs a final head, closes the vault.
    pub fn stop(mut self) {
        let _ = self.handle.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    vault: Option<Vault>,
    store: Arc<dyn EventStore>,
    cursor: u64,
}

impl Worker {
    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            match rx.recv_timeout(POLL) {
                Ok(Msg::Audit(e)) => self.audit(e),
                Ok(Msg::Export(job)) => self.export(*job),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Take every other waiting entry, then catch up with the store.
            while let Ok(m) = rx.try_recv() {
                match m {
                    Msg::Audit(e) => self.audit(e),
                    Msg::Export(job) => self.export(*job),
                    Msg::Stop => return self.finish(),
                }
            }
            self.seal_available();
            self.checkpoint();
        }
        self.finish();
    }

    fn finish(&mut self) {
        self.seal_available();
        if let Some(v) = self.vault.take() {
            if let Err(e) = v.close(Utc::now()) {
                tracing::error!(error = %e, "cannot sign the final vault head");
            }
        }
    }

    fn audit(&mut self, e: AuditEntry) {
        let Some(v) = self.vault.as_mut() else { return };
        if let Err(err) = v.append_audit(&e, Utc::now()) {
            tracing::error!(error = %err, actor = %e.actor, target = %e.target, "cannot seal a custody record");
        }
    }

    /// Seals what is stored, then exports through the vault's own export.
    fn export(&mut self, job: ExportJob) {
        self.seal_available();
        let r = match self.vault.as_mut() {
            None => Err("the vault is closed".to_owned()),
            Some(v) => v
                .export(&job.req, &job.out, Utc::now())
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = &r {
            tracing::error!(error = %e, out = %job.out.display(), "evidence export failed");
        }
        let _ = job.reply.send(r);
    }

    /// Signs a head when the vault's policy (records or seconds since the last) says so.
    fn checkpoint(&mut self) {
        let Some(v) = self.vault.as_mut() else { return };
        if let Err(e) = v.maybe_checkpoint(Utc::now()) {
            tracing::error!(error = %e, "cannot sign a vault tree head");
        }
    }

    fn seal_available(&mut self) {
        loop {
            let recs = match self.store.raw_since(self.cursor, BATCH) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read stored events to seal");
                    return;
                }
            };
            let Some(first) = recs.first().map(|r| r.seq) else {
                return;
            };
            if first > self.cursor + 1 {
                let gap = format!(
                    "events {}..={} were removed by retention before they were sealed",
                    self.cursor + 1,
                    first - 1
                );
                tracing::warn!("{gap}");
                self.audit(AuditEntry::new(
                    Utc::now(),
                    "mamori",
                    AuditAction::Other,
                    "events",
                    gap,
                ));
            }
            let sources: Vec<String> = recs
                .iter()
                .map(|r| mamori_vault::event_source(&r.source, r.seq))
                .collect();
            let inputs: Vec<RecordInput<'_>> = recs
                .iter()
                .zip(&sources)
                .map(|(r, s)| RecordInput {
                    source: s,
                    received_at: r.received_at,
                    payload: &r.raw,
                })
                .collect();
            let Some(v) = self.vault.as_mut() else { return };
            match v.append_batch(&inputs, Utc::now()) {
                Ok(_) => self.cursor = recs.last().map_or(self.cursor, |r| r.seq),
                Err(e) => {
                    // Nothing was acknowledged; the same records are retried at the next poll.
                    tracing::error!(error = %e, from = first, "cannot seal stored events");
                    return;
                }
            }
            if recs.len() < BATCH {
                return;
            }
            self.checkpoint();
        }
    }
}
