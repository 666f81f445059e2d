//! Host agents (`mamori agent`): one-time enrolment tokens, per-agent credentials, batches
//! stored exactly once, the agent list, revocation and silence alerts.
//!
//! # Enrolment
//!
//! `mamori agent token create` (CLI, like `mamori token create`) stores the SHA-256 of a
//! one-time token under `agents/enroll-tokens`; `POST /api/v1/agents/enroll` trades an unused,
//! unexpired token for a per-agent credential (32 random bytes, shown once, stored hashed and
//! compared in constant time). Only the CLI writes the token list and only the server writes
//! the agent registry (`agents/registry`, which also lists the tokens used), so the two never
//! overwrite each other.
//!
//! # Exactly once
//!
//! `POST /api/v1/agents/batches` carries the agent's batch number (`seq`). The server keeps,
//! per agent, the last number it stored; a number at or below it is acknowledged without
//! storing (a batch re-sent after a crash or a lost answer). Batches are stored one at a time
//! under a lock, and before a batch goes to the pipeline the registry records it as *pending*
//! with the event store's last seq. If the server dies after the events are durable but before
//! the registry says so, the next start reads the log after that seq: a record whose source is
//! `agent://<name>/…` can only be that batch, so it is marked stored; otherwise it is not. The
//! answer (200) is sent only after the pipeline's durable acknowledgement.
//!
//! # Silence
//!
//! An active agent that has not reported (batch or heartbeat) for `[agents] silence_secs`
//! raises one alert (`mamori.agents.silent`) per silent episode.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use mamori_event::{Event, Interner, Level, Origin, RuleId, Value};
use mamori_store::{AlertStore, EventStore, NewAlert};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as JsonValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::{blocking, ApiError, AppState, Authed};
use crate::metrics::SourceKind;

const REGISTRY_KEY: &str = "agents/registry";
const ENROLL_KEY: &str = "agents/enroll-tokens";
const ENROLL_PREFIX: &str = "mamori_enroll_";
const CREDENTIAL_PREFIX: &str = "mamori_agent_";
/// Most records in one batch.
pub const MAX_BATCH_RECORDS: usize = 100_000;

/// `[agents]` in the server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// An agent silent this long is an alert.
    pub silence_secs: u64,
    /// Largest batch body, compressed and decompressed.
    pub max_batch_bytes: usize,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            silence_secs: 300,
            max_batch_bytes: 64 << 20,
        }
    }
}

/// One enrolment token as stored (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollToken {
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The buffer an agent reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferState {
    pub bytes: u64,
    pub pending: u64,
    pub dropped: u64,
}

/// One enrolled agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub os: String,
    pub version: String,
    /// Hex SHA-256 of the credential.
    sha256: String,
    pub enrolled_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_seen: Option<DateTime<Utc>>,
    /// The last batch number stored.
    #[serde(default)]
    pub last_seq: u64,
    #[serde(default)]
    pub events: u64,
    #[serde(default)]
    pub buffer: BufferState,
    /// A silence alert was raised for the current silence.
    #[serde(default)]
    pub silent_alerted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    agent: String,
    seq: u64,
    store_before: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Registry {
    agents: Vec<AgentRecord>,
    /// Enrolment tokens already used (hashes).
    used_tokens: Vec<String>,
    pending: Option<Pending>,
}

fn hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn read_registry(store: &dyn AlertStore) -> Result<Registry, String> {
    match store.kv_get(REGISTRY_KEY).map_err(|e| e.to_string())? {
        None => Ok(Registry::default()),
        Some(b) => {
            serde_json::from_slice(&b).map_err(|e| format!("agent registry is corrupt: {e}"))
        }
    }
}

fn read_enroll(store: &dyn AlertStore) -> Result<Vec<EnrollToken>, String> {
    match store.kv_get(ENROLL_KEY).map_err(|e| e.to_string())? {
        None => Ok(Vec::new()),
        Some(b) => {
            serde_json::from_slice(&b).map_err(|e| format!("enrolment tokens are corrupt: {e}"))
        }
    }
}

/// Creates a one-time enrolment token valid for `ttl` (CLI; shown once).
pub fn create_enroll_token(store: &dyn AlertStore, ttl: Duration) -> Result<String, String> {
    let token = format!("{ENROLL_PREFIX}{}", random_hex(32));
    let now = Utc::now();
    let mut list = read_enroll(store)?;
    // Expired tokens are of no use to anyone: keep the list short.
    list.retain(|t| t.expires_at > now);
    list.push(EnrollToken {
        sha256: hex::encode(hash(&token)),
        created_at: now,
        expires_at: now
            + chrono::TimeDelta::from_std(ttl).map_err(|_| "enrolment token lifetime too long")?,
    });
    let b = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
    store.kv_put(ENROLL_KEY, &b).map_err(|e| e.to_string())?;
    Ok(token)
}

/// The enrolled agents (CLI `mamori agent list`; read-only).
pub fn list(store: &dyn AlertStore) -> Result<Vec<AgentRecord>, String> {
    Ok(read_registry(store)?.agents)
}

/// The server's agent registry.
pub struct Agents {
    cfg: AgentsConfig,
    alerts: Arc<dyn AlertStore>,
    events: Arc<dyn EventStore>,
    reg: Mutex<Registry>,
    /// Held while a batch is stored: one agent batch in the pipeline at a time.
    ingest: Mutex<()>,
    /// Response commands for agents ([`crate::agent_commands`]).
    pub commands: crate::agent_commands::CommandQueue,
    /// Where the server's alerts are published (incident grouping), like source health's.
    alert_tx: Option<tokio::sync::broadcast::Sender<mamori_store::Alert>>,
}

/// What a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    New {
        events: usize,
        first_seq: u64,
        last_seq: u64,
    },
    Duplicate,
}

impl Agents {
    /// Loads the registry and settles a batch left pending by a crash.
    pub fn open(
        cfg: AgentsConfig,
        alerts: Arc<dyn AlertStore>,
        events: Arc<dyn EventStore>,
    ) -> Result<Agents, String> {
        let mut reg = read_registry(&*alerts)?;
        if let Some(p) = reg.pending.take() {
            let stored = batch_in_log(&*events, &reg, &p)?;
            if let Some(a) = reg.agents.iter_mut().find(|a| a.id == p.agent) {
                if stored && p.seq > a.last_seq {
                    a.last_seq = p.seq;
                }
                tracing::info!(agent = %a.name, seq = p.seq, stored, "settled the agent batch pending at the last stop");
            }
            let b = serde_json::to_vec(&reg).map_err(|e| e.to_string())?;
            alerts.kv_put(REGISTRY_KEY, &b).map_err(|e| e.to_string())?;
        }
        let commands = crate::agent_commands::CommandQueue::open(Arc::clone(&alerts))?;
        Ok(Agents {
            cfg,
            commands,
            alert_tx: None,
            alerts,
            events,
            reg: Mutex::new(reg),
            ingest: Mutex::new(()),
        })
    }

    /// Publishes this registry's alerts (silent agent, dropped logs) to incident handling.
    pub fn with_alert_tx(
        mut self,
        tx: tokio::sync::broadcast::Sender<mamori_store::Alert>,
    ) -> Agents {
        self.alert_tx = Some(tx);
        self
    }

    /// Records an alert and, when incident handling listens, publishes it.
    fn raise(&self, a: &NewAlert) -> mamori_store::Result<()> {
        match &self.alert_tx {
            Some(tx) => crate::pipeline::record_alert(&*self.alerts, tx, a).map(|_| ()),
            None => self.alerts.insert_alert(a).map(|_| ()),
        }
    }

    fn save(&self, reg: &Registry) -> Result<(), ApiError> {
        let b = serde_json::to_vec(reg).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.alerts
            .kv_put(REGISTRY_KEY, &b)
            .map_err(|e| ApiError::Internal(format!("cannot save the agent registry: {e}")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.reg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Trades a one-time token for a credential.
    pub fn enroll(&self, req: &EnrollRequest) -> Result<JsonValue, ApiError> {
        if !req.token.starts_with(ENROLL_PREFIX) || req.token.len() != ENROLL_PREFIX.len() + 64 {
            return Err(ApiError::Unauthorized);
        }
        if !crate::tokens::valid_name(&req.name) {
            return Err(ApiError::BadRequest(
                "agent name: use 1-64 letters, digits, `.`, `_` or `-`".into(),
            ));
        }
        for (k, v) in [
            ("hostname", &req.hostname),
            ("os", &req.os),
            ("version", &req.version),
        ] {
            if v.len() > 256 || v.chars().any(char::is_control) {
                return Err(ApiError::BadRequest(format!(
                    "{k}: at most 256 printable characters"
                )));
            }
        }
        let h = hash(&req.token);
        let tokens = read_enroll(&*self.alerts).map_err(ApiError::Internal)?;
        let now = Utc::now();
        let mut found = None;
        for t in &tokens {
            let mut th = [0u8; 32];
            if hex::decode_to_slice(&t.sha256, &mut th).is_ok() && bool::from(th.ct_eq(&h)) {
                found = Some(t.clone());
            }
        }
        let Some(t) = found.filter(|t| t.expires_at > now) else {
            return Err(ApiError::Unauthorized);
        };
        let mut reg = self.lock();
        if reg.used_tokens.contains(&t.sha256) {
            return Err(ApiError::Forbidden(
                "this enrolment token was already used".into(),
            ));
        }
        if reg
            .agents
            .iter()
            .any(|a| a.name == req.name && a.revoked_at.is_none())
        {
            return Err(ApiError::Conflict(format!(
                "an active agent is named `{}`; revoke it first or pick another name",
                req.name
            )));
        }
        let credential = format!("{CREDENTIAL_PREFIX}{}", random_hex(32));
        let id = format!("ag-{}", random_hex(8));
        reg.used_tokens.push(t.sha256);
        reg.agents.push(AgentRecord {
            id: id.clone(),
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            os: req.os.clone(),
            version: req.version.clone(),
            sha256: hex::encode(hash(&credential)),
            enrolled_at: now,
            revoked_at: None,
            last_seen: Some(now),
            last_seq: 0,
            events: 0,
            buffer: BufferState::default(),
            silent_alerted: false,
        });
        self.save(&reg)?;
        tracing::info!(agent = %req.name, %id, "agent enrolled");
        Ok(json!({ "agent_id": id, "name": req.name, "credential": credential }))
    }

    /// An agent by id or name (the active one when a revoked agent had the same name).
    pub fn find(&self, who: &str) -> Option<AgentRecord> {
        let reg = self.lock();
        let all: Vec<&AgentRecord> = reg
            .agents
            .iter()
            .filter(|a| a.id == who || a.name == who)
            .collect();
        all.iter()
            .find(|a| a.revoked_at.is_none())
            .or(all.last())
            .map(|a| (*a).clone())
    }

    /// An active agent by id or name: 404 unknown, 409 revoked.
    pub fn find_active(&self, who: &str) -> Result<AgentRecord, ApiError> {
        let a = self
            .find(who)
            .ok_or_else(|| ApiError::NotFound(format!("no agent `{}`", who.escape_default())))?;
        if a.revoked_at.is_some() {
            return Err(ApiError::Conflict(format!(
                "agent `{}` was revoked",
                a.name
            )));
        }
        Ok(a)
    }

    /// The agent a credential belongs to: 401 unknown, 403 revoked.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<AgentRecord, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        if !presented.starts_with(CREDENTIAL_PREFIX)
            || presented.len() != CREDENTIAL_PREFIX.len() + 64
        {
            return Err(ApiError::Unauthorized);
        }
        let h = hash(presented);
        let reg = self.lock();
        let mut found = None;
        for a in &reg.agents {
            let mut ah = [0u8; 32];
            if hex::decode_to_slice(&a.sha256, &mut ah).is_ok() && bool::from(ah.ct_eq(&h)) {
                found = Some(a.clone());
            }
        }
        let a = found.ok_or(ApiError::Unauthorized)?;
        if a.revoked_at.is_some() {
            return Err(ApiError::Forbidden(format!(
                "agent `{}` was revoked",
                a.name
            )));
        }
        Ok(a)
    }

    fn touch(&self, id: &str, buffer: Option<BufferState>) -> Result<(), ApiError> {
        let mut reg = self.lock();
        if let Some(a) = reg.agents.iter_mut().find(|a| a.id == id) {
            a.last_seen = Some(Utc::now());
            a.silent_alerted = false;
            if let Some(b) = buffer {
                note_buffer(&|n| self.raise(n), a, b);
            }
        }
        self.save(&reg)
    }

    /// Stores one batch exactly once; returns after it is durable.
    pub fn store_batch(
        &self,
        agent: &AgentRecord,
        batch: WireBatch,
        sink: &crate::pipeline::Sink,
        refuse: &dyn Fn() -> bool,
    ) -> Result<Stored, ApiError> {
        let _one = self.ingest.lock().unwrap_or_else(|e| e.into_inner());
        let last = self
            .lock()
            .agents
            .iter()
            .find(|a| a.id == agent.id)
            .map_or(0, |a| a.last_seq);
        if batch.seq <= last {
            self.touch(&agent.id, Some(batch.buffer))?;
            return Ok(Stored::Duplicate);
        }
        let events = build_events(agent, &batch.records);
        let n = events.len();
        let mut range = (0, 0);
        if n > 0 {
            if refuse() {
                return Err(ApiError::InsufficientStorage(
                    crate::diskfull::REFUSED.to_owned(),
                ));
            }
            let store_before = self
                .events
                .stats()
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .last_seq
                .unwrap_or(0);
            {
                let mut reg = self.lock();
                reg.pending = Some(Pending {
                    agent: agent.id.clone(),
                    seq: batch.seq,
                    store_before,
                });
                self.save(&reg)?;
            }
            match sink.send_durable_blocking(events, SourceKind::Http) {
                Ok(ack) => range = (ack.first_seq, ack.last_seq),
                Err(e) => {
                    // Not acknowledged: whether the append happened is read from the log, so
                    // the agent's retry is stored once either way.
                    let mut reg = self.lock();
                    if let Some(p) = reg.pending.take() {
                        if batch_in_log(&*self.events, &reg, &p).unwrap_or(false) {
                            if let Some(a) = reg.agents.iter_mut().find(|a| a.id == p.agent) {
                                a.last_seq = a.last_seq.max(p.seq);
                            }
                        }
                        self.save(&reg)?;
                    }
                    return Err(ApiError::Unavailable(format!("not stored: {e}")));
                }
            }
        }
        let mut reg = self.lock();
        reg.pending = None;
        if let Some(a) = reg.agents.iter_mut().find(|a| a.id == agent.id) {
            a.last_seq = batch.seq;
            a.events += n as u64;
            a.last_seen = Some(Utc::now());
            a.silent_alerted = false;
            note_buffer(&|n| self.raise(n), a, batch.buffer);
        }
        self.save(&reg)?;
        Ok(Stored::New {
            events: n,
            first_seq: range.0,
            last_seq: range.1,
        })
    }

    /// Revokes an agent by id or name; whether one was active.
    pub fn revoke(&self, who: &str) -> Result<bool, ApiError> {
        let mut reg = self.lock();
        let Some(a) = reg
            .agents
            .iter_mut()
            .find(|a| (a.id == who || a.name == who) && a.revoked_at.is_none())
        else {
            return Ok(false);
        };
        a.revoked_at = Some(Utc::now());
        tracing::warn!(agent = %a.name, id = %a.id, "agent revoked");
        self.save(&reg)?;
        Ok(true)
    }

    /// The agents as the API shows them.
    pub fn report(&self, now: DateTime<Utc>) -> JsonValue {
        let reg = self.lock();
        let silence = chrono::TimeDelta::seconds(self.cfg.silence_secs as i64);
        let agents: Vec<JsonValue> = reg
            .agents
            .iter()
            .map(|a| {
                let state = if a.revoked_at.is_some() {
                    "revoked"
                } else if a.last_seen.is_none_or(|t| now - t > silence) {
                    "silent"
                } else {
                    "active"
                };
                json!({
                    "id": a.id, "name": a.name, "hostname": a.hostname, "os": a.os,
                    "version": a.version, "enrolled_at": a.enrolled_at, "last_seen": a.last_seen,
                    "revoked_at": a.revoked_at, "state": state, "last_batch": a.last_seq,
                    "events": a.events, "buffer": a.buffer,
                })
            })
            .collect();
        json!({ "agents": agents })
    }

    /// Raises one alert per silent episode of an active agent.
    pub fn check_silence(&self, now: DateTime<Utc>) {
        let silence = chrono::TimeDelta::seconds(self.cfg.silence_secs as i64);
        let mut reg = self.lock();
        let mut changed = false;
        for a in reg.agents.iter_mut() {
            let Some(last) = a.last_seen else { continue };
            if a.revoked_at.is_some() || a.silent_alerted || now - last <= silence {
                continue;
            }
            let alert = NewAlert {
                rule_id: RuleId("mamori.agents.silent".into()),
                title: format!("Agent went silent: {}", a.name),
                level: Level::High,
                event_time: Some(last),
                received_at: now,
                event_seqs: Vec::new(),
                group_key: Some(format!("host={}", a.hostname)),
                dedup_key: Some(format!(
                    "mamori.agents.silent|{}|{}",
                    a.id,
                    last.timestamp_micros()
                )),
                details: json!({
                    "agent": a.name, "agent_id": a.id, "hostname": a.hostname, "host": a.hostname,
                    "last_seen": last, "silent_after_secs": self.cfg.silence_secs,
                    "buffer": a.buffer,
                    "description": format!("The Mamori agent {} on {} has not reported since {}. A stopped agent, a host that is down, a network cut or an attacker killing the agent look like this; check the host.", a.name, a.hostname, last.to_rfc3339()),
                    "description_ja": format!("ホスト {} の Mamori エージェント {} から {} 以降報告がありません。エージェントの停止、ホストの停止、ネットワーク断、攻撃者によるエージェント停止が考えられます。ホストを確認してください。", a.hostname, a.name, last.to_rfc3339()),
                }),
            };
            match self.raise(&alert) {
                Ok(_) => {
                    tracing::warn!(agent = %a.name, "agent silent");
                    a.silent_alerted = true;
                    changed = true;
                }
                Err(e) => tracing::error!(error = %e, "cannot record the silent-agent alert"),
            }
        }
        if changed {
            if let Err(e) = self.save(&reg) {
                tracing::error!(error = ?e, "cannot save the agent registry");
            }
        }
    }
}

/// Records an agent's buffer state; batches it dropped since its last report (its disk buffer
/// was full) are an alert: lost logs are a security event, never silent.
fn note_buffer(
    raise: &dyn Fn(&NewAlert) -> mamori_store::Result<()>,
    a: &mut AgentRecord,
    b: BufferState,
) {
    if b.dropped > a.buffer.dropped {
        let lost = b.dropped - a.buffer.dropped;
        let now = Utc::now();
        let alert = NewAlert {
            rule_id: RuleId("mamori.agents.dropped".into()),
            title: format!("Agent dropped buffered logs: {}", a.name),
            level: Level::High,
            event_time: Some(now),
            received_at: now,
            event_seqs: Vec::new(),
            group_key: Some(format!("host={}", a.hostname)),
            dedup_key: Some(format!("mamori.agents.dropped|{}", a.id)),
            details: json!({
                "agent": a.name, "agent_id": a.id, "hostname": a.hostname, "host": a.hostname,
                "dropped_batches": lost, "dropped_total": b.dropped,
                "description": format!("The Mamori agent {} on {} dropped {lost} batches of logs because its disk buffer was full while the server was unreachable (buffer.max_bytes). Those logs are lost; raise the buffer or fix the connection.", a.name, a.hostname),
                "description_ja": format!("ホスト {} の Mamori エージェント {} は、サーバーに接続できない間にディスクバッファが満杯になり、{lost} 個のバッチを破棄しました。これらのログは失われています。バッファ（buffer.max_bytes）を増やすか接続を復旧してください。", a.hostname, a.name),
            }),
        };
        if let Err(e) = raise(&alert) {
            tracing::error!(error = %e, "cannot record the dropped-logs alert");
        }
        tracing::warn!(agent = %a.name, lost, "agent dropped buffered batches");
    }
    a.buffer = b;
}

/// Whether the pending batch reached the log: any record after `store_before` from that
/// agent can only be it (agent batches are stored one at a time).
fn batch_in_log(events: &dyn EventStore, reg: &Registry, p: &Pending) -> Result<bool, String> {
    let Some(a) = reg.agents.iter().find(|a| a.id == p.agent) else {
        return Ok(false);
    };
    let prefix = format!("agent://{}/", a.name);
    let mut after = p.store_before;
    loop {
        let recs = events.raw_since(after, 4096).map_err(|e| e.to_string())?;
        let Some(last) = recs.last() else {
            return Ok(false);
        };
        if recs.iter().any(|r| r.source.starts_with(&prefix)) {
            return Ok(true);
        }
        after = last.seq;
    }
}

// ---------------------------------------------------------------------------------------------
// Wire format (see `mamori-agent` `batch.rs`)

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    pub name: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum WireRecord {
    Line {
        path: String,
        line: u64,
        offset: u64,
        text: String,
        #[serde(default)]
        truncated: bool,
    },
    Journal {
        fields: JsonValue,
    },
    Event {
        source: String,
        fields: JsonValue,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireBatch {
    pub seq: u64,
    #[serde(default)]
    pub buffer: BufferState,
    pub records: Vec<WireRecord>,
}

#[derive(Debug, Clone, Deserialize)]
struct Heartbeat {
    #[serde(default)]
    buffer: BufferState,
}

/// `agent://<name>/<what>`: the origin of an agent's events (`what` cleaned of control
/// characters and bounded; it is display text, never a path the server opens).
fn origin(agent: &str, what: &str, line: Option<u64>, record: Option<u64>, offset: u64) -> Origin {
    let what: String = what
        .trim_start_matches('/')
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect();
    Origin::File {
        path: Arc::from(Path::new(&format!("agent://{agent}/{what}"))),
        record,
        line,
        offset,
    }
}

/// The events of a batch: lines parsed like the server's own file tail (JSON, access log,
/// else syslog/text), journald and agent events as JSON; each tagged with the agent.
pub fn build_events(agent: &AgentRecord, records: &[WireRecord]) -> Vec<Event> {
    let mut names = Interner::new();
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let ev = match r {
            WireRecord::Line {
                path,
                line,
                offset,
                text,
                truncated,
            } => {
                let o = origin(&agent.name, path, Some(*line), None, *offset);
                let b = text.as_bytes();
                let first = b.iter().find(|c| !c.is_ascii_whitespace());
                let specific = if first == Some(&b'{') {
                    mamori_ingest::parse_json_object(b, o.clone(), &mut names)
                } else {
                    mamori_ingest::parse_access_log_line(b, o.clone(), &mut names)
                };
                let ev = specific.or_else(|_| mamori_ingest::parse_syslog_line(b, o, &mut names));
                ev.ok().map(|mut ev| {
                    ev.push(names.intern("log.file.path"), Value::str(path.as_str()));
                    if *truncated {
                        ev.push(names.intern("log.truncated"), Value::str("true"));
                    }
                    ev
                })
            }
            WireRecord::Journal { fields } => {
                let o = origin(&agent.name, "journald", None, Some(i as u64 + 1), 0);
                let raw = serde_json::to_vec(fields).unwrap_or_default();
                mamori_ingest::parse_json_value(fields, raw, o, &mut names).ok()
            }
            WireRecord::Event { source, fields } => {
                let o = origin(&agent.name, source, None, Some(i as u64 + 1), 0);
                let raw = serde_json::to_vec(fields).unwrap_or_default();
                mamori_ingest::parse_json_value(fields, raw, o, &mut names).ok()
            }
        };
        let Some(mut ev) = ev else {
            tracing::debug!(agent = %agent.name, record = i, "agent record is not an event");
            continue;
        };
        if ev.host().is_none() {
            ev.push(
                names.intern("host.name"),
                Value::str(agent.hostname.as_str()),
            );
        }
        ev.push(names.intern("agent.id"), Value::str(agent.id.as_str()));
        ev.push(names.intern("agent.name"), Value::str(agent.name.as_str()));
        ev.push(names.intern("agent.type"), Value::str("mamori"));
        out.push(ev);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Routes

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agents", get(list_agents))
        .route("/api/v1/agents/enroll", post(enroll))
        .route("/api/v1/agents/batches", post(batches))
        .route("/api/v1/agents/heartbeat", post(heartbeat))
        .route("/api/v1/agents/{id}/revoke", post(revoke))
        .merge(crate::agent_commands::routes())
}

/// Reads a body up to `max` bytes within `timeout`.
async fn read_limited(body: Body, max: usize, timeout: Duration) -> Result<Vec<u8>, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(ApiError::Timeout),
        Ok(Err(e)) => {
            if std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit")
            {
                Err(ApiError::TooLarge(format!(
                    "request body exceeds {max} bytes"
                )))
            } else {
                Err(ApiError::BadRequest(format!(
                    "cannot read request body: {e}"
                )))
            }
        }
        Ok(Ok(b)) => Ok(b.to_vec()),
    }
}

fn agents_of(st: &AppState) -> Result<Arc<Agents>, ApiError> {
    st.agents
        .clone()
        .ok_or_else(|| ApiError::NotFound("agents are not available".into()))
}

async fn list_agents(
    _auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    let a = agents_of(&st)?;
    Ok(Json(a.report(Utc::now())))
}

/// Authenticated by the one-time enrolment token in the body (not by an API token: the host
/// has none).
async fn enroll(State(st): State<AppState>, body: Body) -> Result<Json<JsonValue>, ApiError> {
    let a = agents_of(&st)?;
    let b = read_limited(
        body,
        64 << 10,
        Duration::from_secs(st.http.body_timeout_secs),
    )
    .await?;
    let req: EnrollRequest = serde_json::from_slice(&b)
        .map_err(|e| ApiError::Unprocessable(format!("enrolment request: {e}")))?;
    blocking(move || a.enroll(&req)).await.map(Json)
}

/// Authenticated by the agent's credential.
async fn batches(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<JsonValue>, ApiError> {
    let a = agents_of(&st)?;
    let agent = {
        let a = Arc::clone(&a);
        let h = headers.clone();
        blocking(move || a.authenticate(&h)).await?
    };
    let gz = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let gz = match gz.as_deref() {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return Err(ApiError::UnsupportedEncoding(format!(
                "unsupported Content-Encoding `{}` (use gzip)",
                other.escape_default()
            )))
        }
    };
    let max = a.cfg.max_batch_bytes;
    let raw = read_limited(
        body,
        max,
        Duration::from_secs(st.http.body_timeout_secs.max(30)),
    )
    .await?;
    let st2 = Arc::clone(&st);
    let out = blocking(move || {
        let text = if gz {
            use std::io::Read as _;
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::BadRequest(format!("invalid gzip body: {e}")))?;
            if out.len() > max {
                return Err(ApiError::TooLarge(format!(
                    "decompressed batch exceeds {max} bytes"
                )));
            }
            out
        } else {
            raw
        };
        let batch: WireBatch = serde_json::from_slice(&text)
            .map_err(|e| ApiError::Unprocessable(format!("batch: {e}")))?;
        if batch.seq == 0 {
            return Err(ApiError::BadRequest("batch seq starts at 1".into()));
        }
        if batch.records.len() > MAX_BATCH_RECORDS {
            return Err(ApiError::TooLarge(format!(
                "{} records in one batch; at most {MAX_BATCH_RECORDS}",
                batch.records.len()
            )));
        }
        let seq = batch.seq;
        let records = batch.records.len();
        let m = Arc::clone(&st2.metrics);
        let r = a.store_batch(&agent, batch, &st2.sink, &move || m.storage.refuse_now())?;
        Ok(match r {
            Stored::Duplicate => json!({ "seq": seq, "duplicate": true, "stored": 0 }),
            Stored::New {
                events,
                first_seq,
                last_seq,
            } => json!({
                "seq": seq, "duplicate": false, "records": records, "stored": events,
                "first_seq": first_seq, "last_seq": last_seq,
            }),
        })
    })
    .await?;
    Ok(Json(out))
}

async fn heartbeat(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<JsonValue>, ApiError> {
    let a = agents_of(&st)?;
    let b = read_limited(
        body,
        64 << 10,
        Duration::from_secs(st.http.body_timeout_secs),
    )
    .await?;
    let hb: Heartbeat = serde_json::from_slice(&b)
        .map_err(|e| ApiError::Unprocessable(format!("heartbeat: {e}")))?;
    blocking(move || {
        let agent = a.authenticate(&headers)?;
        a.touch(&agent.id, Some(hb.buffer))?;
        Ok(Json(json!({ "ok": true })))
    })
    .await
}

async fn revoke(
    auth: Authed,
    State(st): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let a = agents_of(&st)?;
    let who = id.clone();
    if blocking(move || a.revoke(&who)).await? {
        Ok(Json(json!({ "revoked": id })))
    } else {
        Err(ApiError::NotFound(format!(
            "no active agent `{}`",
            id.escape_default()
        )))
    }
}

/// Checks for silent agents in the background.
pub(crate) fn silence_task(a: Arc<Agents>) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs((a.cfg.silence_secs / 4).clamp(1, 30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let a = Arc::clone(&a);
            let _ = tokio::task::spawn_blocking(move || a.check_silence(Utc::now())).await;
        }
    })
}

/// The agent routes in the OpenAPI document.
pub fn openapi_paths() -> JsonValue {
    let errs = json!({
        "400": { "$ref": "#/components/responses/BadRequest" },
        "401": { "$ref": "#/components/responses/Unauthorized" },
        "403": { "$ref": "#/components/responses/Forbidden" },
        "404": { "$ref": "#/components/responses/NotFound" },
        "405": { "$ref": "#/components/responses/MethodNotAllowed" },
        "422": { "$ref": "#/components/responses/Unprocessable" },
        "500": { "$ref": "#/components/responses/Internal" },
        "503": { "$ref": "#/components/responses/Unavailable" }
    });
    let ok = |desc: &str| {
        let mut m = errs.clone();
        m["200"] = json!({ "description": desc, "content": { "application/json": { "schema": { "type": "object" } } } });
        m
    };
    let body = |schema: JsonValue| json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    let buffer = json!({ "type": "object", "properties": {
        "bytes": { "type": "integer", "minimum": 0 }, "pending": { "type": "integer", "minimum": 0 },
        "dropped": { "type": "integer", "minimum": 0 } } });
    let mut paths = json!({
        "/api/v1/agents": { "get": { "summary": "Enrolled host agents: name, host, OS, version, last seen, state (active, silent, revoked), last batch stored, events and the agent's disk buffer (bytes, pending batches, dropped batches).", "responses": ok("Agents") } },
        "/api/v1/agents/enroll": { "post": { "summary": "Trade a one-time enrolment token (`mamori agent token create`) for a per-agent credential (shown once). Authenticated by the token in the body, not by an API token.", "security": [],
            "requestBody": body(json!({ "type": "object", "required": ["token", "name"], "additionalProperties": false, "properties": {
                "token": { "type": "string" }, "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
                "hostname": { "type": "string", "maxLength": 256 }, "os": { "type": "string", "maxLength": 256 }, "version": { "type": "string", "maxLength": 256 } } })),
            "responses": ok("The credential") } },
        "/api/v1/agents/batches": { "post": { "summary": "A batch from an agent (JSON, usually gzip-encoded; `seq` numbers the agent's batches from 1). 200 only once the events are durable; a batch number already stored is acknowledged without storing it again. Authenticated by the agent's credential (Bearer), not an API token; 403 once the agent is revoked.",
            "requestBody": body(json!({ "type": "object", "required": ["seq", "records"], "properties": {
                "seq": { "type": "integer", "minimum": 1 }, "buffer": buffer.clone(),
                "records": { "type": "array", "maxItems": MAX_BATCH_RECORDS, "items": { "type": "object", "required": ["t"], "properties": { "t": { "type": "string", "enum": ["line", "journal", "event"] } } } } } })),
            "responses": ok("Stored") } },
        "/api/v1/agents/heartbeat": { "post": { "summary": "An agent reporting in with its buffer's state when it has nothing to send. Authenticated by the agent's credential (Bearer).",
            "requestBody": body(json!({ "type": "object", "properties": { "buffer": buffer } })),
            "responses": ok("Noted") } },
        "/api/v1/agents/{id}/revoke": { "post": { "summary": "Revoke an agent (by id or name): its credential stops working at once. Admin only.",
            "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": ok("Revoked") } }
    });
    if let (Some(p), JsonValue::Object(more)) = (
        paths.as_object_mut(),
        crate::agent_commands::openapi_paths(),
    ) {
        p.extend(more);
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_store::{MemoryAlertStore, MemoryEventStore};

    fn agent(name: &str) -> AgentRecord {
        AgentRecord {
            id: "ag-1".into(),
            name: name.into(),
            hostname: "web01".into(),
            os: "Linux".into(),
            version: "0.1.0".into(),
            sha256: String::new(),
            enrolled_at: Utc::now(),
            revoked_at: None,
            last_seen: None,
            last_seq: 0,
            events: 0,
            buffer: BufferState::default(),
            silent_alerted: false,
        }
    }

    #[test]
    fn enrol_once_authenticate_revoke() {
        let alerts: Arc<dyn AlertStore> = Arc::new(MemoryAlertStore::new());
        let events: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
        let a = Agents::open(AgentsConfig::default(), Arc::clone(&alerts), events).unwrap();
        let tok = create_enroll_token(&*alerts, Duration::from_secs(3600)).unwrap();
        let req = EnrollRequest {
            token: tok.clone(),
            name: "web01".into(),
            hostname: "web01".into(),
            os: "Debian".into(),
            version: "0.1".into(),
        };
        let v = a.enroll(&req).unwrap();
        let cred = v["credential"].as_str().unwrap().to_owned();
        // Stored hashed only.
        let raw = String::from_utf8(alerts.kv_get(REGISTRY_KEY).unwrap().unwrap()).unwrap();
        assert!(!raw.contains(&cred[CREDENTIAL_PREFIX.len()..]));
        assert!(!raw.contains(&tok[ENROLL_PREFIX.len()..]));
        // One time only.
        assert!(matches!(a.enroll(&req), Err(ApiError::Forbidden(_))));
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {cred}").parse().unwrap(),
        );
        assert_eq!(a.authenticate(&h).unwrap().name, "web01");
        assert!(a.revoke("web01").unwrap());
        assert!(matches!(a.authenticate(&h), Err(ApiError::Forbidden(_))));
        h.insert(
            header::AUTHORIZATION,
            "Bearer mamori_agent_nope".parse().unwrap(),
        );
        assert!(matches!(a.authenticate(&h), Err(ApiError::Unauthorized)));
        // An expired token is refused.
        let tok2 = create_enroll_token(&*alerts, Duration::from_secs(0)).unwrap();
        let req2 = EnrollRequest {
            token: tok2,
            name: "db01".into(),
            ..req
        };
        assert!(matches!(a.enroll(&req2), Err(ApiError::Unauthorized)));
    }

    #[test]
    fn pending_batch_is_settled_from_the_log() {
        let alerts: Arc<dyn AlertStore> = Arc::new(MemoryAlertStore::new());
        let events: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
        let mut reg = Registry::default();
        let mut a = agent("web01");
        a.last_seq = 4;
        reg.agents.push(a.clone());
        // Crashed after the append of batch 5, before the registry said so.
        reg.pending = Some(Pending {
            agent: "ag-1".into(),
            seq: 5,
            store_before: 0,
        });
        alerts
            .kv_put(REGISTRY_KEY, &serde_json::to_vec(&reg).unwrap())
            .unwrap();
        let evs = build_events(
            &a,
            &[WireRecord::Line {
                path: "/var/log/x".into(),
                line: 1,
                offset: 0,
                text: "hello".into(),
                truncated: false,
            }],
        );
        events.append(&evs).unwrap();
        let ag = Agents::open(
            AgentsConfig::default(),
            Arc::clone(&alerts),
            Arc::clone(&events),
        )
        .unwrap();
        assert_eq!(ag.lock().agents[0].last_seq, 5);
        assert!(ag.lock().pending.is_none());
        // Crashed before the append: not stored, the batch will be accepted when re-sent.
        reg.pending = Some(Pending {
            agent: "ag-1".into(),
            seq: 6,
            store_before: 1,
        });
        reg.agents[0].last_seq = 5;
        alerts
            .kv_put(REGISTRY_KEY, &serde_json::to_vec(&reg).unwrap())
            .unwrap();
        let ag = Agents::open(AgentsConfig::default(), alerts, events).unwrap();
        assert_eq!(ag.lock().agents[0].last_seq, 5);
    }

    #[test]
    fn events_carry_the_agent_and_parse_like_the_tail() {
        let a = agent("web01");
        let evs = build_events(&a, &[
            WireRecord::Line { path: "/var/log/auth.log".into(), line: 3, offset: 10, text: "Dec  6 10:00:00 web01 sshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2".into(), truncated: false },
            WireRecord::Event { source: "fim".into(), fields: json!({"event": {"category": "file", "action": "modified"}, "file": {"path": "/etc/passwd"}}) },
        ]);
        assert_eq!(evs.len(), 2);
        assert_eq!(
            evs[0].origin.to_string(),
            "agent://web01/var/log/auth.log:3"
        );
        assert_eq!(evs[0].get_str("agent.name").as_deref(), Some("web01"));
        assert_eq!(
            evs[0].get_str("log.file.path").as_deref(),
            Some("/var/log/auth.log")
        );
        assert_eq!(evs[1].get_str("file.path").as_deref(), Some("/etc/passwd"));
        assert_eq!(evs[1].get_str("host.name").as_deref(), Some("web01"));
    }

    #[test]
    fn dropped_batches_are_an_alert() {
        let alerts = MemoryAlertStore::new();
        let raise = |n: &NewAlert| alerts.insert_alert(n).map(|_| ());
        let mut a = agent("web01");
        note_buffer(
            &raise,
            &mut a,
            BufferState {
                bytes: 10,
                pending: 1,
                dropped: 0,
            },
        );
        assert!(alerts
            .list_alerts(&mamori_store::AlertFilter::default())
            .unwrap()
            .is_empty());
        note_buffer(
            &raise,
            &mut a,
            BufferState {
                bytes: 10,
                pending: 1,
                dropped: 3,
            },
        );
        note_buffer(
            &raise,
            &mut a,
            BufferState {
                bytes: 10,
                pending: 1,
                dropped: 3,
            },
        );
        let all = alerts
            .list_alerts(&mamori_store::AlertFilter::default())
            .unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].details["dropped_batches"], 3);
        assert_eq!(a.buffer.dropped, 3);
    }

    #[test]
    fn silence_raises_one_alert() {
        let alerts: Arc<dyn AlertStore> = Arc::new(MemoryAlertStore::new());
        let events: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
        let mut reg = Registry::default();
        let mut a = agent("web01");
        a.last_seen = Some(Utc::now() - chrono::TimeDelta::seconds(1000));
        reg.agents.push(a);
        alerts
            .kv_put(REGISTRY_KEY, &serde_json::to_vec(&reg).unwrap())
            .unwrap();
        let ag = Agents::open(AgentsConfig::default(), Arc::clone(&alerts), events).unwrap();
        ag.check_silence(Utc::now());
        ag.check_silence(Utc::now());
        let all = alerts
            .list_alerts(&mamori_store::AlertFilter::default())
            .unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(&*all[0].rule_id.0, "mamori.agents.silent");
    }
}
