//! Response on a host by its agent: commands queued for an agent from an incident, fetched by
//! the agent with its credential, and their results recorded on the incident and in the chain
//! of custody.
//!
//! `POST /api/v1/incidents/{id}/agent-actions` (a person, not a viewer) queues a typed
//! [`HostAction`] (`block_ip`, `isolate_host`, `disable_account`, `kill_process`) for an
//! active agent; the arguments are typed by serde (an address that does not parse is a 422)
//! and checked against the server's response policy (its allow-list and protected users hold
//! for agents too). The agent fetches `GET /api/v1/agents/commands`, runs the command under its
//! own guard-rails and posts the result to `POST /api/v1/agents/commands/{cid}/result`; the
//! first result of a command is recorded on the incident (`agent_response_*`), later copies
//! are acknowledged. `POST /api/v1/incidents/{id}/agent-actions/{cid}/rollback` queues the
//! undo of an applied command. The queue lives in the state store (`agents/commands`).

use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use mamori_cases::IncidentId;
use mamori_respond::{HostAction, HostCommand, HostOp, HostOutcome, HostResult};
use mamori_store::AlertStore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as JsonValue};

use crate::agents::AgentRecord;
use crate::api::{blocking, ApiError, AppState, Authed};

const QUEUE_KEY: &str = "agents/commands";
/// Finished commands kept (the newest); unfinished ones are always kept.
const KEEP_FINISHED: usize = 10_000;

/// One command as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCommand {
    pub id: u64,
    pub agent_id: String,
    pub agent_name: String,
    pub incident: i64,
    #[serde(flatten)]
    pub op: HostOp,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    #[serde(default)]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub result: Option<HostResult>,
}

/// The queue of commands for agents.
pub struct CommandQueue {
    kv: Arc<dyn AlertStore>,
    list: Mutex<Vec<StoredCommand>>,
}

impl CommandQueue {
    pub fn open(kv: Arc<dyn AlertStore>) -> Result<CommandQueue, String> {
        let list = match kv.kv_get(QUEUE_KEY).map_err(|e| e.to_string())? {
            None => Vec::new(),
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("agent command queue is corrupt: {e}"))?,
        };
        Ok(CommandQueue {
            kv,
            list: Mutex::new(list),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StoredCommand>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, list: &mut Vec<StoredCommand>) -> Result<(), ApiError> {
        let finished = list.iter().filter(|c| c.result.is_some()).count();
        if finished > KEEP_FINISHED {
            let mut drop = finished - KEEP_FINISHED;
            list.retain(|c| {
                if drop > 0 && c.result.is_some() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        let b = serde_json::to_vec(&*list).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.kv
            .kv_put(QUEUE_KEY, &b)
            .map_err(|e| ApiError::Internal(format!("cannot save the agent command queue: {e}")))
    }

    /// Queues `op` for `agent`; a rollback must name an applied, effective, not yet undone
    /// command of the same agent and incident.
    pub fn queue(
        &self,
        agent: &AgentRecord,
        incident: i64,
        op: HostOp,
        by: &str,
    ) -> Result<StoredCommand, ApiError> {
        let mut list = self.lock();
        if let HostOp::Rollback { of } = &op {
            let target = list
                .iter()
                .find(|c| c.id == *of && c.incident == incident)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("no agent command {of} on incident {incident}"))
                })?;
            if !matches!(target.op, HostOp::Apply { .. }) {
                return Err(ApiError::Conflict(format!(
                    "command {of} is itself a rollback"
                )));
            }
            if target.agent_id != agent.id {
                return Err(ApiError::Conflict(format!(
                    "command {of} ran on agent `{}`",
                    target.agent_name
                )));
            }
            match &target.result {
                None => {
                    return Err(ApiError::Conflict(format!(
                        "command {of} has not been carried out yet"
                    )))
                }
                Some(r) if !r.outcome.is_done() => {
                    return Err(ApiError::Conflict(format!(
                        "command {of} did not take effect; nothing to roll back"
                    )))
                }
                Some(_) => {}
            }
            if list.iter().any(|c| {
                matches!(c.op, HostOp::Rollback { of: o } if o == *of)
                    && c.result.as_ref().is_none_or(|r| r.outcome.is_done())
            }) {
                return Err(ApiError::Conflict(format!(
                    "command {of} is already rolled back or its rollback is pending"
                )));
            }
        }
        let id = list.iter().map(|c| c.id).max().unwrap_or(0) + 1;
        let c = StoredCommand {
            id,
            agent_id: agent.id.clone(),
            agent_name: agent.name.clone(),
            incident,
            op,
            requested_by: by.to_owned(),
            requested_at: Utc::now(),
            delivered_at: None,
            result: None,
        };
        list.push(c.clone());
        self.save(&mut list)?;
        Ok(c)
    }

    /// The unfinished commands of an agent, oldest first; marks them delivered.
    pub fn fetch(&self, agent_id: &str) -> Result<Vec<HostCommand>, ApiError> {
        let mut list = self.lock();
        let mut out = Vec::new();
        let mut changed = false;
        for c in list
            .iter_mut()
            .filter(|c| c.agent_id == agent_id && c.result.is_none())
        {
            if c.delivered_at.is_none() {
                c.delivered_at = Some(Utc::now());
                changed = true;
            }
            out.push(HostCommand {
                id: c.id,
                op: c.op.clone(),
            });
        }
        if changed {
            self.save(&mut list)?;
        }
        Ok(out)
    }

    /// Stores an agent's result; `Some` the first time (to be recorded), `None` for a copy.
    pub fn complete(
        &self,
        agent_id: &str,
        r: HostResult,
    ) -> Result<Option<StoredCommand>, ApiError> {
        let mut list = self.lock();
        let c = list
            .iter_mut()
            .find(|c| c.id == r.id && c.agent_id == agent_id)
            .ok_or_else(|| ApiError::NotFound(format!("no command {} for this agent", r.id)))?;
        if c.result.is_some() {
            return Ok(None);
        }
        c.result = Some(r);
        let done = c.clone();
        self.save(&mut list)?;
        Ok(Some(done))
    }

    /// The commands of an agent (id or name), newest first.
    pub fn list_for(&self, agent: &AgentRecord) -> Vec<StoredCommand> {
        let mut v: Vec<StoredCommand> = self
            .lock()
            .iter()
            .filter(|c| c.agent_id == agent.id)
            .cloned()
            .collect();
        v.reverse();
        v
    }

    pub fn get(&self, id: u64) -> Option<StoredCommand> {
        self.lock().iter().find(|c| c.id == id).cloned()
    }
}

/// What a command did, for the incident's action log.
fn describe(op: &HostOp) -> String {
    match op {
        HostOp::Apply { action } => action.describe(),
        HostOp::Rollback { of } => format!("rollback of command {of}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/incidents/{id}/agent-actions", post(request))
        .route(
            "/api/v1/incidents/{id}/agent-actions/{cid}/rollback",
            post(rollback),
        )
        .route("/api/v1/agents/{id}/commands", get(list))
        .route("/api/v1/agents/commands", get(fetch))
        .route("/api/v1/agents/commands/{cid}/result", post(result))
}

fn agents_of(st: &AppState) -> Result<Arc<crate::agents::Agents>, ApiError> {
    st.agents
        .clone()
        .ok_or_else(|| ApiError::NotFound("agents are not available".into()))
}

fn incidents_of(st: &AppState) -> Result<Arc<crate::incidents::IncidentService>, ApiError> {
    st.incidents
        .clone()
        .ok_or_else(|| ApiError::NotFound("incident handling is disabled ([incidents])".into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    /// Agent id or name.
    agent: String,
    action: HostAction,
}

fn json_body<T>(
    b: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::Unprocessable(e.body_text()))
}

async fn request(
    auth: Authed,
    State(st): State<AppState>,
    UrlPath(incident): UrlPath<i64>,
    b: Result<Json<RequestBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = json_body(b)?;
    let agents = agents_of(&st)?;
    let inc = incidents_of(&st)?;
    let out = blocking(move || {
        inc.cases
            .get(IncidentId(incident))
            .map_err(crate::api_incidents::case_err)?;
        let agent = agents.find_active(&b.agent)?;
        b.action
            .check(inc.policy().as_ref())
            .map_err(|why| ApiError::Conflict(format!("{}: {why}", b.action.describe())))?;
        let c = agents.commands.queue(
            &agent,
            incident,
            HostOp::Apply {
                action: b.action.clone(),
            },
            &auth.name,
        )?;
        inc.record(
            IncidentId(incident),
            &auth.name,
            "agent_response_requested",
            json!({ "command": c.id, "agent": agent.name, "agent_id": agent.id,
                    "action": b.action, "describe": b.action.describe() }),
        );
        tracing::warn!(command = c.id, agent = %agent.name, action = %b.action.describe(), by = %auth.name, "response on a host requested");
        Ok(json!(c))
    })
    .await?;
    Ok(Json(out))
}

async fn rollback(
    auth: Authed,
    State(st): State<AppState>,
    UrlPath((incident, cid)): UrlPath<(i64, u64)>,
) -> Result<Json<JsonValue>, ApiError> {
    let agents = agents_of(&st)?;
    let inc = incidents_of(&st)?;
    let out = blocking(move || {
        let target = agents
            .commands
            .get(cid)
            .ok_or_else(|| ApiError::NotFound(format!("no agent command {cid}")))?;
        let agent = agents.find_active(&target.agent_id)?;
        let c =
            agents
                .commands
                .queue(&agent, incident, HostOp::Rollback { of: cid }, &auth.name)?;
        inc.record(
            IncidentId(incident),
            &auth.name,
            "agent_response_rollback_requested",
            json!({ "command": c.id, "of": cid, "agent": agent.name, "agent_id": agent.id,
                    "describe": describe(&target.op) }),
        );
        Ok(json!(c))
    })
    .await?;
    Ok(Json(out))
}

async fn list(
    _auth: Authed,
    State(st): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let agents = agents_of(&st)?;
    let out = blocking(move || {
        let a = agents
            .find(&id)
            .ok_or_else(|| ApiError::NotFound(format!("no agent `{}`", id.escape_default())))?;
        Ok(json!({ "commands": agents.commands.list_for(&a) }))
    })
    .await?;
    Ok(Json(out))
}

/// Authenticated by the agent's credential.
async fn fetch(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<JsonValue>, ApiError> {
    let agents = agents_of(&st)?;
    let out = blocking(move || {
        let agent = agents.authenticate(&headers)?;
        Ok(json!({ "commands": agents.commands.fetch(&agent.id)? }))
    })
    .await?;
    Ok(Json(out))
}

/// Authenticated by the agent's credential; records the first result on the incident.
async fn result(
    State(st): State<AppState>,
    headers: HeaderMap,
    UrlPath(cid): UrlPath<u64>,
    b: Result<Json<HostResult>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let agents = agents_of(&st)?;
    let inc = st.incidents.clone();
    let out = blocking(move || {
        let agent = agents.authenticate(&headers)?;
        let mut r = json_body(b)?;
        if r.id != cid {
            return Err(ApiError::BadRequest(format!(
                "result for command {} posted to command {cid}",
                r.id
            )));
        }
        // The agent's text is bounded before it is stored.
        clip_outcome(&mut r.outcome);
        r.commands.truncate(16);
        let Some(done) = agents.commands.complete(&agent.id, r)? else {
            return Ok(json!({ "id": cid, "duplicate": true }));
        };
        let Some(res) = &done.result else {
            return Err(ApiError::Internal("a completed command has no result".into()));
        };
        let kind = match (&done.op, &res.outcome) {
            (HostOp::Rollback { .. }, HostOutcome::Done) => "agent_response_rolled_back",
            (_, HostOutcome::Done) => "agent_response_executed",
            (_, HostOutcome::Failed { .. }) => "agent_response_failed",
            (_, HostOutcome::Refused { .. }) => "agent_response_refused",
        };
        tracing::warn!(command = cid, agent = %agent.name, %kind, "agent reported a response command");
        if let Some(inc) = inc {
            inc.record(
                IncidentId(done.incident),
                &format!("agent:{}", agent.name),
                kind,
                json!({ "command": done.id, "agent": agent.name, "agent_id": agent.id,
                        "describe": describe(&done.op), "op": done.op, "requested_by": done.requested_by,
                        "outcome": res.outcome, "commands": res.commands, "at": res.at }),
            );
        }
        Ok(json!({ "id": cid, "duplicate": false }))
    })
    .await?;
    Ok(Json(out))
}

fn clip_outcome(o: &mut HostOutcome) {
    let s = match o {
        HostOutcome::Done => return,
        HostOutcome::Failed { error } => error,
        HostOutcome::Refused { reason } => reason,
    };
    if s.len() > 4096 {
        let mut cut = 4096;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// The routes in the OpenAPI document.
pub fn openapi_paths() -> JsonValue {
    let ok = |desc: &str| {
        json!({
            "200": { "description": desc, "content": { "application/json": { "schema": { "type": "object" } } } },
            "400": { "$ref": "#/components/responses/BadRequest" },
            "401": { "$ref": "#/components/responses/Unauthorized" },
            "403": { "$ref": "#/components/responses/Forbidden" },
            "404": { "$ref": "#/components/responses/NotFound" },
            "409": { "description": "Refused by the guard-rails or the command's state" },
            "422": { "$ref": "#/components/responses/Unprocessable" },
            "500": { "$ref": "#/components/responses/Internal" }
        })
    };
    let id =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } });
    let cid =
        json!({ "name": "cid", "in": "path", "required": true, "schema": { "type": "integer" } });
    let action = json!({ "oneOf": [
        { "type": "object", "required": ["type", "ip", "ttl"], "properties": { "type": { "const": "block_ip" }, "ip": { "type": "string" }, "ttl": { "type": "integer", "minimum": 1 } } },
        { "type": "object", "required": ["type"], "properties": { "type": { "const": "isolate_host" } } },
        { "type": "object", "required": ["type", "user"], "properties": { "type": { "const": "disable_account" }, "user": { "type": "string", "pattern": "^[a-z_][a-z0-9_-]{0,31}$" } } },
        { "type": "object", "required": ["type", "pid"], "properties": { "type": { "const": "kill_process" }, "pid": { "type": "integer", "minimum": 2 }, "name": { "type": "string", "maxLength": 15 } } }
    ] });
    json!({
        "/api/v1/incidents/{id}/agent-actions": { "post": { "summary": "Ask an agent to carry out a response action on its own host (block_ip, isolate_host keeping the Mamori connection, disable_account, kill_process). Typed arguments; the server's response policy and then the agent's own [response] guard-rails are applied; the request and the agent's result are recorded on the incident.",
            "parameters": [id],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["agent", "action"], "additionalProperties": false, "properties": { "agent": { "type": "string" }, "action": action } } } } },
            "responses": ok("The queued command") } },
        "/api/v1/incidents/{id}/agent-actions/{cid}/rollback": { "post": { "summary": "Ask the agent to undo a command it carried out (unblock, end isolation, unlock the account); a killed process cannot be undone.",
            "parameters": [id, cid], "responses": ok("The queued rollback") } },
        "/api/v1/agents/{id}/commands": { "get": { "summary": "Response commands for an agent (by id or name), newest first, with their results.",
            "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": ok("Commands") } },
        "/api/v1/agents/commands": { "get": { "summary": "The agent's unfinished response commands. Authenticated by the agent's credential (Bearer).", "responses": ok("Commands") } },
        "/api/v1/agents/commands/{cid}/result": { "post": { "summary": "An agent's result for a command (done, failed, refused by its guard-rails) with the exact commands run. Authenticated by the agent's credential (Bearer).",
            "parameters": [cid], "responses": ok("Recorded") } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_store::MemoryAlertStore;

    fn agent(id: &str) -> AgentRecord {
        serde_json::from_value(json!({
            "id": id, "name": format!("n-{id}"), "hostname": "h", "os": "Linux", "version": "0",
            "sha256": "", "enrolled_at": Utc::now()
        }))
        .unwrap()
    }

    #[test]
    fn queue_fetch_complete_rollback() {
        let kv: Arc<dyn AlertStore> = Arc::new(MemoryAlertStore::new());
        let q = CommandQueue::open(Arc::clone(&kv)).unwrap();
        let a = agent("ag-1");
        let c = q
            .queue(
                &a,
                1,
                HostOp::Apply {
                    action: HostAction::IsolateHost {},
                },
                "ana",
            )
            .unwrap();
        assert_eq!(c.id, 1);
        // Not carried out yet: no rollback.
        assert!(matches!(
            q.queue(&a, 1, HostOp::Rollback { of: 1 }, "ana"),
            Err(ApiError::Conflict(_))
        ));
        assert!(q.fetch("ag-2").unwrap().is_empty());
        let got = q.fetch("ag-1").unwrap();
        assert_eq!(got.len(), 1);
        // Another agent cannot complete it.
        let res = HostResult {
            id: 1,
            at: Utc::now(),
            outcome: HostOutcome::Done,
            commands: Vec::new(),
        };
        assert!(q.complete("ag-2", res.clone()).is_err());
        assert!(q.complete("ag-1", res.clone()).unwrap().is_some());
        assert!(q.complete("ag-1", res).unwrap().is_none());
        assert!(q.fetch("ag-1").unwrap().is_empty());
        // Survives a restart.
        let q = CommandQueue::open(kv).unwrap();
        // Wrong incident, wrong agent, then one rollback only.
        assert!(q.queue(&a, 2, HostOp::Rollback { of: 1 }, "ana").is_err());
        assert!(q
            .queue(&agent("ag-2"), 1, HostOp::Rollback { of: 1 }, "ana")
            .is_err());
        let r = q.queue(&a, 1, HostOp::Rollback { of: 1 }, "ana").unwrap();
        assert_eq!(r.id, 2);
        assert!(q.queue(&a, 1, HostOp::Rollback { of: 1 }, "ana").is_err());
        assert!(q.queue(&a, 1, HostOp::Rollback { of: 2 }, "ana").is_err());
        assert_eq!(q.list_for(&a)[0].id, 2);
    }
}
