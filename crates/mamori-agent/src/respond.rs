//! Response on this host: commands from the server (block an address, isolate the host, lock
//! an account, kill a process) run under this agent's own guard-rails and reported back.
//!
//! A thread asks the server for commands every `[response] poll_secs` with the agent's
//! credential (`GET /api/v1/agents/commands`), so commands arrive even while the disk buffer
//! is being drained. Each command runs **at most once**: its id is saved to
//! `response.json` before anything runs, and its result after; a command the agent was
//! running when it died is reported as of unknown effect, never run again. Results are
//! reported (`POST /api/v1/agents/commands/{id}/result`) until the server has them; the server
//! records them on the incident and in the chain of custody.
//!
//! The checks and the commands are `mamori_respond::HostPolicy`'s: the same nftables scripts,
//! `usermod`/`pkill` argv and typed arguments as the server's own responder, no shell.
//! Isolation always keeps the server's addresses and port (resolved from the credential).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use mamori_respond::{HostCommand, HostOp, HostOutcome, HostPolicy, HostRecord, HostResult, Keep};
use serde::{Deserialize, Serialize};

use crate::client::{Client, Reply};
use crate::spool::write_atomic;
use crate::{Error, Result};

const STATE_FILE: &str = "response.json";
/// Results kept (to report again if the server asks again) beyond those still in effect.
const KEEP_RESULTS: usize = 1000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Commands started: never started again.
    #[serde(default)]
    started: Vec<u64>,
    /// Results, reported or not.
    #[serde(default)]
    results: BTreeMap<u64, HostResult>,
    /// Results the server has not acknowledged yet.
    #[serde(default)]
    unreported: Vec<u64>,
    /// Applied actions (for rollback).
    #[serde(default)]
    records: BTreeMap<u64, HostRecord>,
}

/// The agent's side of response on the host.
pub struct HostResponder {
    policy: HostPolicy,
    server: Vec<Keep>,
    path: PathBuf,
    state: State,
}

impl HostResponder {
    pub fn open(policy: HostPolicy, server: Vec<Keep>, state_dir: &Path) -> Result<HostResponder> {
        let path = state_dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
                path: path.clone(),
                offset: e.column() as u64,
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        Ok(HostResponder {
            policy,
            server,
            path,
            state,
        })
    }

    fn save(&self) -> Result<()> {
        let b = serde_json::to_vec(&self.state).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&self.path, &b)
    }

    /// Handles one command from the server (raw JSON: a command that does not parse is
    /// refused with the reason, if it has an id). Returns the result to report.
    pub fn handle(&mut self, raw: &serde_json::Value) -> Result<Option<HostResult>> {
        let Some(id) = raw.get("id").and_then(serde_json::Value::as_u64) else {
            tracing::warn!("a command without an id from the server was ignored");
            return Ok(None);
        };
        if let Some(r) = self.state.results.get(&id) {
            return Ok(Some(r.clone()));
        }
        let now = Utc::now();
        if self.state.started.contains(&id) {
            let r = HostResult {
                id,
                at: now,
                outcome: HostOutcome::Failed {
                    error: "the agent stopped while running this command; its effect is unknown and it is not run again".into(),
                },
                commands: Vec::new(),
            };
            return self.finish(r, None).map(Some);
        }
        self.state.started.push(id);
        self.save()?;
        let cmd: HostCommand = match serde_json::from_value(raw.clone()) {
            Ok(c) => c,
            Err(e) => {
                let r = HostResult {
                    id,
                    at: now,
                    outcome: HostOutcome::Refused {
                        reason: format!("invalid command: {e}"),
                    },
                    commands: Vec::new(),
                };
                return self.finish(r, None).map(Some);
            }
        };
        let (result, record) = match &cmd.op {
            HostOp::Apply { action } => {
                let rec = self
                    .policy
                    .run(id, action, &self.server, std::process::id(), now);
                let r = HostResult {
                    id,
                    at: rec.at,
                    outcome: rec.outcome.clone(),
                    commands: rec.commands.clone(),
                };
                (r, rec.outcome.is_done().then_some(rec))
            }
            HostOp::Rollback { of } => {
                let (outcome, commands) = match self.state.records.get(of) {
                    None => (
                        HostOutcome::Refused {
                            reason: format!("command {of} did not take effect on this host"),
                        },
                        Vec::new(),
                    ),
                    Some(rec) => self.policy.rollback(rec),
                };
                if outcome.is_done() {
                    if let Some(rec) = self.state.records.get_mut(of) {
                        rec.rolled_back_at = Some(now);
                    }
                }
                (
                    HostResult {
                        id,
                        at: now,
                        outcome,
                        commands,
                    },
                    None,
                )
            }
        };
        match &result.outcome {
            HostOutcome::Done => {
                tracing::warn!(id, command = ?cmd.op, "response command carried out on this host")
            }
            HostOutcome::Failed { error } => {
                tracing::error!(id, %error, "response command failed")
            }
            HostOutcome::Refused { reason } => {
                tracing::warn!(id, %reason, "response command refused by this agent's guard-rails")
            }
        }
        self.finish(result, record).map(Some)
    }

    fn finish(&mut self, r: HostResult, record: Option<HostRecord>) -> Result<HostResult> {
        if let Some(rec) = record {
            self.state.records.insert(rec.id, rec);
        }
        self.state.unreported.push(r.id);
        self.state.results.insert(r.id, r.clone());
        self.prune();
        self.save()?;
        Ok(r)
    }

    /// Forgets old results and records no longer in effect (bounded state).
    fn prune(&mut self) {
        let now = Utc::now();
        self.state.records.retain(|_, r| {
            (r.rolled_back_at.is_none() && r.expires_at.is_none_or(|t| t > now))
                || r.at > now - chrono::TimeDelta::days(30)
        });
        while self.state.results.len() > KEEP_RESULTS {
            let Some((&oldest, _)) = self.state.results.iter().next() else {
                break;
            };
            if self.state.unreported.contains(&oldest) {
                break;
            }
            self.state.results.remove(&oldest);
        }
        if self.state.started.len() > 4 * KEEP_RESULTS {
            let cut = self.state.started.len() - 2 * KEEP_RESULTS;
            self.state.started.drain(..cut);
        }
    }

    fn reported(&mut self, id: u64) -> Result<()> {
        self.state.unreported.retain(|&x| x != id);
        self.save()
    }

    /// Results not yet acknowledged by the server.
    fn unreported(&self) -> Vec<HostResult> {
        self.state
            .unreported
            .iter()
            .filter_map(|id| self.state.results.get(id).cloned())
            .collect()
    }
}

/// The response thread: fetch, run, report, until `stop`.
pub fn poll_loop(client: &Client, mut r: HostResponder, stop: &AtomicBool) {
    let every = Duration::from_secs(r.policy.poll_secs.max(1));
    tracing::info!(
        enabled = r.policy.enabled,
        server = ?r.server.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "response on this host: polling for commands"
    );
    let mut last_error: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        for res in r.unreported() {
            match client.report_result(&res) {
                Reply::Ok(_) => {
                    if let Err(e) = r.reported(res.id) {
                        tracing::error!(error = %e, "cannot save the response state");
                    }
                }
                // The server no longer knows it (or refuses us): nothing to retry.
                Reply::Refused(..) => {
                    let _ = r.reported(res.id);
                }
                Reply::Retry(_) => break,
            }
        }
        match client.fetch_commands() {
            Reply::Ok(v) => {
                last_error = None;
                let cmds = v["commands"].as_array().cloned().unwrap_or_default();
                for c in &cmds {
                    match r.handle(c) {
                        Ok(Some(res)) => {
                            if let Reply::Ok(_) = client.report_result(&res) {
                                if let Err(e) = r.reported(res.id) {
                                    tracing::error!(error = %e, "cannot save the response state");
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "cannot save the response state; commands are not run until it can be saved");
                            break;
                        }
                    }
                }
            }
            Reply::Refused(_, m) | Reply::Retry(m) => {
                if last_error.as_deref() != Some(&m) {
                    tracing::debug!(error = %m, "cannot fetch response commands");
                    last_error = Some(m);
                }
            }
        }
        while started.elapsed() < every && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> HostPolicy {
        HostPolicy {
            enabled: true,
            // `true` stands in for kill: it succeeds and kills nothing.
            kill: PathBuf::from("true"),
            ..HostPolicy::default()
        }
    }

    #[test]
    fn each_command_runs_at_most_once_across_restarts() {
        let d = tempfile::tempdir().unwrap();
        let server: Vec<Keep> = vec!["10.0.0.5:8080".parse().unwrap()];
        let mut r = HostResponder::open(policy(), server.clone(), d.path()).unwrap();
        let cmd = json!({"id": 1, "op": "apply", "action": {"type": "kill_process", "pid": 4242}});
        let res = r.handle(&cmd).unwrap().unwrap();
        assert_eq!(res.outcome, HostOutcome::Done);
        assert_eq!(res.commands[0].args, ["-KILL", "--", "4242"]);
        // Asked again (the report was lost): the same result, nothing run again.
        let again = r.handle(&cmd).unwrap().unwrap();
        assert_eq!(again, res);
        assert_eq!(r.unreported().len(), 1);
        r.reported(1).unwrap();
        assert!(r.unreported().is_empty());
        // A command started when the agent died is not run again after a restart.
        r.state.started.push(2);
        r.save().unwrap();
        let mut r = HostResponder::open(policy(), server, d.path()).unwrap();
        let res = r
            .handle(&json!({"id": 2, "op": "apply", "action": {"type": "isolate_host"}}))
            .unwrap()
            .unwrap();
        assert!(
            matches!(res.outcome, HostOutcome::Failed { ref error } if error.contains("unknown"))
        );
        assert!(res.commands.is_empty());
        // Invalid arguments are refused with the reason; nothing runs.
        let res = r
            .handle(&json!({"id": 3, "op": "apply", "action": {"type": "block_ip", "ip": "1.2.3.4; flush ruleset", "ttl": 60}}))
            .unwrap()
            .unwrap();
        assert!(
            matches!(res.outcome, HostOutcome::Refused { ref reason } if reason.contains("invalid command"))
        );
        // A kill cannot be rolled back; an unknown command neither.
        let res = r
            .handle(&json!({"id": 4, "op": "rollback", "of": 1}))
            .unwrap()
            .unwrap();
        assert!(
            matches!(res.outcome, HostOutcome::Refused { ref reason } if reason.contains("cannot be undone"))
        );
        let res = r
            .handle(&json!({"id": 5, "op": "rollback", "of": 99}))
            .unwrap()
            .unwrap();
        assert!(matches!(res.outcome, HostOutcome::Refused { .. }));
        assert!(r
            .handle(&json!({"op": "rollback", "of": 99}))
            .unwrap()
            .is_none());
    }

    #[test]
    fn disabled_agent_refuses() {
        let d = tempfile::tempdir().unwrap();
        let mut r = HostResponder::open(HostPolicy::default(), Vec::new(), d.path()).unwrap();
        let res = r
            .handle(
                &json!({"id": 9, "op": "apply", "action": {"type": "kill_process", "pid": 4242}}),
            )
            .unwrap()
            .unwrap();
        assert!(
            matches!(res.outcome, HostOutcome::Refused { ref reason } if reason.contains("disabled"))
        );
    }
}
