//! The responder: plans from triggers, executes, approves, rolls back, expires, persists.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use mamori_event::{Level, RuleId};
use serde::{Deserialize, Serialize};

use crate::backend::Backends;
use crate::command::{self, CommandSpec, Outcome};
use crate::policy::{ActionKind, Mode, Modes, ResponsePolicy};
use crate::validate::{parse_ip, Actor, UserName};
use crate::{Action, Error, Result};

/// Settings of a [`Responder`]: the policy and how to run the tools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponderConfig {
    pub policy: ResponsePolicy,
    #[serde(default)]
    pub backends: Backends,
}

/// What an alert hands the responder. The entity strings come straight from events and are
/// untrusted: they are parsed in [`Responder::plan`] and refused if they do not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub rule_id: RuleId,
    pub level: Level,
    /// `source.ip`
    pub source_ip: Option<String>,
    /// `user.name`
    pub user_name: Option<String>,
    /// `host.name`
    pub host_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanId(pub u64);

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(pub u64);

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An action the policy allows for a trigger, with how it is to be run and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAction {
    pub id: PlanId,
    pub rule_id: String,
    pub level: Level,
    pub planned_at: DateTime<Utc>,
    pub action: Action,
    /// [`Mode::Automatic`] or [`Mode::Suggest`]; `Off` kinds are never planned.
    pub mode: Mode,
    pub reason: String,
}

/// An action the policy enabled but the guard-rails refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: ActionKind,
    /// The target as it appeared in the event (untrusted text, for display only).
    pub target: String,
    pub reason: String,
}

/// The result of [`Responder::plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<PlannedAction>,
    pub refused: Vec<Refusal>,
}

/// The result of [`Responder::respond`]: the plan, and the records of its automatic actions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Response {
    pub plan: Plan,
    pub executed: Vec<ActionRecord>,
}

/// One rollback (or dry-run rollback) of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackAttempt {
    pub at: DateTime<Utc>,
    pub by: Actor,
    pub dry_run: bool,
    pub commands: Vec<CommandSpec>,
    pub outcome: Outcome,
}

/// One record applied again by [`Responder::reapply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reapplied {
    pub record: RecordId,
    pub commands: Vec<CommandSpec>,
    pub outcome: Outcome,
}

/// What was done (or, with `dry_run`, would have been), by whom, with which commands, and how
/// it ended. Attach it to the incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub id: RecordId,
    pub plan: PlanId,
    pub rule_id: String,
    pub at: DateTime<Utc>,
    /// `automatic`, or the person who approved it.
    pub by: Actor,
    pub action: Action,
    pub mode: Mode,
    pub reason: String,
    pub dry_run: bool,
    /// Exactly what ran (or would run): program, argv, stdin.
    pub commands: Vec<CommandSpec>,
    pub outcome: Outcome,
    /// When a block ends in the kernel (`at + ttl`).
    pub expires_at: Option<DateTime<Utc>>,
    /// Set by [`Responder::expire`] once `expires_at` has passed.
    pub expired_at: Option<DateTime<Utc>>,
    /// Set when a rollback succeeded.
    pub rolled_back_at: Option<DateTime<Utc>>,
    pub rollbacks: Vec<RollbackAttempt>,
}

impl ActionRecord {
    /// True while the action holds on the system: real, succeeded, reversible, not rolled back,
    /// not expired.
    pub fn in_effect(&self) -> bool {
        !self.dry_run
            && self.outcome.is_ok()
            && self.rolled_back_at.is_none()
            && self.expired_at.is_none()
            && self.action.kind() != ActionKind::Webhook
    }
}

const STATE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    version: u32,
    next_plan: u64,
    next_record: u64,
    open: Vec<PlannedAction>,
    records: Vec<ActionRecord>,
}

/// Plans, executes and remembers response actions. `&mut self` throughout; share it behind a
/// mutex. Time is passed in (`now`), never read.
#[derive(Debug)]
pub struct Responder {
    policy: ResponsePolicy,
    backends: Backends,
    next_plan: u64,
    next_record: u64,
    /// Issued and not yet executed: automatic plans until executed, suggestions until approved
    /// or dismissed.
    open: BTreeMap<PlanId, PlannedAction>,
    records: BTreeMap<RecordId, ActionRecord>,
}

impl Responder {
    pub fn new(config: ResponderConfig) -> Result<Responder> {
        config.policy.check()?;
        Ok(Responder {
            policy: config.policy,
            backends: config.backends,
            next_plan: 1,
            next_record: 1,
            open: BTreeMap::new(),
            records: BTreeMap::new(),
        })
    }

    pub fn policy(&self) -> &ResponsePolicy {
        &self.policy
    }

    /// Replaces the policy (config reload). Open plans keep the mode they were planned with.
    pub fn set_policy(&mut self, policy: ResponsePolicy) -> Result<()> {
        policy.check()?;
        self.policy = policy;
        Ok(())
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Decides what to do about a trigger. Pure policy and validation: nothing runs. Enabled
    /// actions whose target is invalid, protected, already in effect or already planned are
    /// returned as refusals with the reason. The planned actions are remembered so that
    /// [`execute`](Self::execute) and [`approve`](Self::approve) can find them.
    pub fn plan(&mut self, trigger: &Trigger, now: DateTime<Utc>) -> Plan {
        let rule = trigger.rule_id.0.as_ref();
        let (modes, source) = self.policy.modes_for(rule, trigger.level);
        let Some(modes) = modes.cloned() else {
            return Plan::default();
        };
        let mut plan = Plan::default();
        // The webhook goes last so that its payload can list what else was planned.
        let entities = [
            (ActionKind::BlockIp, trigger.source_ip.as_deref()),
            (ActionKind::DisableAccount, trigger.user_name.as_deref()),
            (ActionKind::IsolateHost, trigger.host_name.as_deref()),
            (ActionKind::Webhook, Some("")),
        ];
        for (kind, raw) in entities {
            let mode = modes.get(kind);
            let Some(raw) = raw.filter(|_| mode != Mode::Off) else {
                continue;
            };
            let built = match kind {
                ActionKind::BlockIp => self.block_ip(raw, &modes),
                ActionKind::DisableAccount => self.disable_account(raw),
                ActionKind::IsolateHost => self.isolate_host(raw),
                ActionKind::Webhook => self.webhook(trigger, &plan, now),
            };
            let (action, seen, note) = match built {
                Ok(built) => built,
                Err(why) => {
                    refuse(&mut plan, kind, raw, why);
                    continue;
                }
            };
            if let Some(why) = self.duplicate_of(&action) {
                refuse(&mut plan, kind, raw, why);
                continue;
            }
            let mut reason = format!(
                "rule {rule} ({}) {seen}; {source}: {kind} {mode}",
                trigger.level
            );
            if let Some(note) = note {
                reason.push_str("; ");
                reason.push_str(&note);
            }
            let id = PlanId(self.next_plan);
            self.next_plan += 1;
            let planned = PlannedAction {
                id,
                rule_id: rule.to_owned(),
                level: trigger.level,
                planned_at: now,
                action,
                mode,
                reason,
            };
            self.open.insert(id, planned.clone());
            plan.actions.push(planned);
        }
        plan
    }

    // Each builder turns a raw entity into an action, what was seen, and an optional note; or
    // says why not.

    fn block_ip(&self, raw: &str, modes: &Modes) -> Built {
        let ip = parse_ip(raw).map_err(|_| "source.ip is not an IP address".to_owned())?;
        if let Some(why) = self.policy.ip_protection(ip) {
            return Err(why);
        }
        let (ttl, note) = self.policy.ttl(modes);
        Ok((
            Action::BlockIp { ip, ttl },
            format!("saw source.ip {ip}"),
            note,
        ))
    }

    fn disable_account(&self, raw: &str) -> Built {
        let user = UserName::parse(raw).map_err(|e| match e {
            Error::InvalidUserName { reason, .. } => {
                format!("user.name is not a valid account name: {reason}")
            }
            other => other.to_string(),
        })?;
        if let Some(why) = self.policy.user_protection(&user) {
            return Err(why);
        }
        let seen = format!("saw user.name {user}");
        Ok((Action::DisableAccount { user }, seen, None))
    }

    fn isolate_host(&self, raw: &str) -> Built {
        let local = match &self.policy.local_host {
            None => return Err("local_host is not configured; isolation only runs locally".into()),
            Some(l) if !l.eq_ignore_ascii_case(raw) => {
                return Err(format!(
                    "host.name is not this host ({l}); isolation only runs locally"
                ))
            }
            Some(l) => l,
        };
        let keep = self.policy.isolation_keep.clone();
        let action = Action::IsolateHost { keep };
        if let Some(why) = self.policy.protection(&action) {
            return Err(why);
        }
        Ok((action, format!("saw host.name {local}"), None))
    }

    fn webhook(&self, trigger: &Trigger, plan: &Plan, now: DateTime<Utc>) -> Built {
        let url = self
            .policy
            .webhook_url
            .clone()
            .ok_or("webhook_url is not configured")?;
        let payload = webhook_payload(trigger, plan, now);
        Ok((Action::Webhook { url, payload }, "fired".into(), None))
    }

    /// Why `action` would be redundant: the same target is already in effect or planned.
    fn duplicate_of(&self, action: &Action) -> Option<String> {
        if let Some(r) = self
            .records
            .values()
            .find(|r| r.in_effect() && r.action.same_target(action))
        {
            return Some(format!(
                "already in effect: record {} ({})",
                r.id,
                r.action.describe()
            ));
        }
        let p = self.open.values().find(|p| p.action.same_target(action))?;
        Some(format!(
            "already planned: plan {} ({}, {})",
            p.id,
            p.action.describe(),
            p.mode
        ))
    }

    /// Plans and executes the automatic actions (dry or real); suggestions stay pending.
    pub fn respond(&mut self, trigger: &Trigger, dry_run: bool, now: DateTime<Utc>) -> Response {
        let plan = self.plan(trigger, now);
        let mut executed = Vec::new();
        for p in plan.actions.iter().filter(|p| p.mode == Mode::Automatic) {
            // The plan was issued just now, so it is open and unchanged.
            if let Ok(rec) = self.execute(p, dry_run, now) {
                executed.push(rec);
            }
        }
        Response { plan, executed }
    }

    /// Runs an automatic plan issued by this responder (and must be passed back unchanged).
    /// With `dry_run`, nothing runs: the record holds exactly the commands that would.
    /// A dry run of a suggestion is a preview and leaves it pending; anything else consumes
    /// the plan.
    pub fn execute(
        &mut self,
        plan: &PlannedAction,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<ActionRecord> {
        let stored = self.open.get(&plan.id).ok_or(Error::UnknownPlan(plan.id))?;
        if stored != plan {
            return Err(Error::PlanMismatch(plan.id));
        }
        let planned = match (stored.mode, dry_run) {
            (Mode::Suggest, false) => return Err(Error::NeedsApproval(plan.id)),
            (Mode::Suggest, true) => stored.clone(),
            _ => self
                .open
                .remove(&plan.id)
                .ok_or(Error::UnknownPlan(plan.id))?,
        };
        if !dry_run {
            self.recheck(&planned)?;
        }
        Ok(self.run(planned, Actor::Automatic, dry_run, now))
    }

    /// Approves a pending suggestion and runs it for real; the record names `by`.
    pub fn approve(&mut self, id: PlanId, by: Actor, now: DateTime<Utc>) -> Result<ActionRecord> {
        if by == Actor::Automatic {
            return Err(Error::InvalidActor {
                input: "automatic".into(),
                reason: "approval needs a person",
            });
        }
        match self.open.get(&id) {
            None => return Err(Error::UnknownPlan(id)),
            Some(p) if p.mode != Mode::Suggest => return Err(Error::NotASuggestion(id)),
            Some(_) => {}
        }
        let planned = self.open.remove(&id).ok_or(Error::UnknownPlan(id))?;
        self.recheck(&planned)?;
        Ok(self.run(planned, by, false, now))
    }

    /// The guard-rails once more, against the current policy. A plan that fails is dropped.
    fn recheck(&self, planned: &PlannedAction) -> Result<()> {
        match self.policy.protection(&planned.action) {
            None => Ok(()),
            Some(reason) => Err(Error::Refused {
                id: planned.id,
                reason,
            }),
        }
    }

    /// Drops an open plan without running it.
    pub fn dismiss(&mut self, id: PlanId) -> Result<PlannedAction> {
        self.open.remove(&id).ok_or(Error::UnknownPlan(id))
    }

    fn run(
        &mut self,
        planned: PlannedAction,
        by: Actor,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> ActionRecord {
        let commands = self.backends.apply(&planned.action);
        let outcome = if dry_run {
            Outcome::Ok
        } else {
            command::run_all(&commands)
        };
        let expires_at = match &planned.action {
            Action::BlockIp { ttl, .. } => chrono::Duration::from_std(*ttl)
                .ok()
                .and_then(|d| now.checked_add_signed(d)),
            _ => None,
        };
        let id = RecordId(self.next_record);
        self.next_record += 1;
        let record = ActionRecord {
            id,
            plan: planned.id,
            rule_id: planned.rule_id,
            at: now,
            by,
            action: planned.action,
            mode: planned.mode,
            reason: planned.reason,
            dry_run,
            commands,
            outcome,
            expires_at,
            expired_at: None,
            rolled_back_at: None,
            rollbacks: Vec::new(),
        };
        self.records.insert(id, record.clone());
        record
    }

    /// Undoes a record (idempotent on the system side: unblocking an expired address or
    /// unlocking an unlocked account succeeds). With `dry_run` the attempt holds the commands
    /// that would run. Webhooks cannot be undone.
    pub fn rollback(
        &mut self,
        id: RecordId,
        by: Actor,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<ActionRecord> {
        let rec = self.records.get_mut(&id).ok_or(Error::UnknownRecord(id))?;
        if rec.rolled_back_at.is_some() {
            return Err(Error::AlreadyRolledBack(id));
        }
        if rec.dry_run && !dry_run {
            return Err(Error::DryRunRecord(id));
        }
        let commands = self
            .backends
            .undo(&rec.action)
            .ok_or(Error::NotReversible {
                id,
                kind: rec.action.kind(),
            })?;
        let outcome = if dry_run {
            Outcome::Ok
        } else {
            command::run_all(&commands)
        };
        if !dry_run && outcome.is_ok() {
            rec.rolled_back_at = Some(now);
        }
        rec.rollbacks.push(RollbackAttempt {
            at: now,
            by,
            dry_run,
            commands,
            outcome,
        });
        Ok(rec.clone())
    }

    /// Applies again what the records say is in effect, for when the system lost it: nft
    /// rules live in memory, so a reboot or `nft flush ruleset` removes blocks and isolation
    /// that Mamori still shows. Call after [`restore`](Self::restore) at start-up. Blocks get
    /// their remaining TTL; blocks past their expiry are marked expired instead. Account locks
    /// persist in `/etc/shadow` and are not re-run. Records are not changed by a re-apply.
    pub fn reapply(&mut self, dry_run: bool, now: DateTime<Utc>) -> Vec<Reapplied> {
        self.expire(now);
        let mut done = Vec::new();
        for rec in self.records.values().filter(|r| r.in_effect()) {
            let action = match &rec.action {
                Action::BlockIp { ip, .. } => {
                    let left = rec
                        .expires_at
                        .and_then(|at| (at - now).to_std().ok())
                        .unwrap_or_default();
                    // Round up so the block never ends before the record says.
                    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                    Action::BlockIp {
                        ip: *ip,
                        ttl: std::time::Duration::from_secs(secs.max(1)),
                    }
                }
                Action::IsolateHost { .. } => rec.action.clone(),
                Action::DisableAccount { .. } | Action::Webhook { .. } => continue,
            };
            let commands = self.backends.apply(&action);
            let outcome = if dry_run {
                Outcome::Ok
            } else {
                command::run_all(&commands)
            };
            done.push(Reapplied {
                record: rec.id,
                commands,
                outcome,
            });
        }
        done
    }

    /// Marks blocks whose TTL has passed as expired (the kernel already removed them) and
    /// returns their ids.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Vec<RecordId> {
        let mut done = Vec::new();
        for rec in self.records.values_mut() {
            if let Some(at) = rec.expires_at {
                if rec.in_effect() && at <= now {
                    rec.expired_at = Some(at);
                    done.push(rec.id);
                }
            }
        }
        done
    }

    /// Forgets records that are no longer in effect and are older than `before`; returns how
    /// many. Records in effect are kept whatever their age, so they can still be rolled back.
    pub fn prune(&mut self, before: DateTime<Utc>) -> usize {
        let n = self.records.len();
        self.records.retain(|_, r| r.in_effect() || r.at >= before);
        n - self.records.len()
    }

    pub fn record(&self, id: RecordId) -> Option<&ActionRecord> {
        self.records.get(&id)
    }

    /// All records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &ActionRecord> {
        self.records.values()
    }

    /// Records whose action currently holds.
    pub fn active(&self) -> impl Iterator<Item = &ActionRecord> {
        self.records.values().filter(|r| r.in_effect())
    }

    pub fn plan_by_id(&self, id: PlanId) -> Option<&PlannedAction> {
        self.open.get(&id)
    }

    /// Suggestions waiting for approval, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &PlannedAction> {
        self.open.values().filter(|p| p.mode == Mode::Suggest)
    }

    /// Records, open plans and id counters as versioned JSON bytes.
    pub fn save(&self) -> Vec<u8> {
        let state = StateRef {
            version: STATE_VERSION,
            next_plan: self.next_plan,
            next_record: self.next_record,
            open: self.open.values().collect(),
            records: self.records.values().collect(),
        };
        serde_json::to_vec(&state).unwrap_or_else(|e| unreachable!("state serialises: {e}"))
    }

    /// Replaces records, open plans and counters with saved ones; the policy and backends stay.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let state: State = serde_json::from_slice(bytes)?;
        if state.version != STATE_VERSION {
            return Err(Error::StateVersion(state.version));
        }
        self.next_plan = state.next_plan;
        self.next_record = state.next_record;
        self.open = state.open.into_iter().map(|p| (p.id, p)).collect();
        self.records = state.records.into_iter().map(|r| (r.id, r)).collect();
        // Never hand out an id twice, even from a hand-edited state.
        let max_plan = self.open.keys().map(|p| p.0).max().unwrap_or(0);
        let max_rec = self.records.keys().map(|r| r.0).max().unwrap_or(0);
        let max_rec_plan = self.records.values().map(|r| r.plan.0).max().unwrap_or(0);
        self.next_plan = self.next_plan.max(max_plan.max(max_rec_plan) + 1);
        self.next_record = self.next_record.max(max_rec + 1);
        Ok(())
    }
}

#[derive(Serialize)]
struct StateRef<'a> {
    version: u32,
    next_plan: u64,
    next_record: u64,
    open: Vec<&'a PlannedAction>,
    records: Vec<&'a ActionRecord>,
}

fn refuse(plan: &mut Plan, kind: ActionKind, raw: &str, reason: String) {
    plan.refused.push(Refusal {
        kind,
        target: crate::clip(raw),
        reason,
    });
}

/// An action, what was seen, an optional note; or why not.
type Built = std::result::Result<(Action, String, Option<String>), String>;

fn webhook_payload(trigger: &Trigger, plan: &Plan, now: DateTime<Utc>) -> serde_json::Value {
    let actions: Vec<serde_json::Value> = plan
        .actions
        .iter()
        .map(|p| serde_json::json!({"plan": p.id, "action": p.action.describe(), "mode": p.mode}))
        .collect();
    let refused: Vec<serde_json::Value> = plan
        .refused
        .iter()
        .map(|r| serde_json::json!({"kind": r.kind, "target": r.target, "reason": r.reason}))
        .collect();
    serde_json::json!({
        "source": "mamori",
        "at": now.to_rfc3339(),
        "rule_id": trigger.rule_id.0.as_ref(),
        "level": trigger.level,
        "entities": {
            "source.ip": trigger.source_ip.as_deref().map(crate::clip),
            "user.name": trigger.user_name.as_deref().map(crate::clip),
            "host.name": trigger.host_name.as_deref().map(crate::clip),
        },
        "actions": actions,
        "refused": refused,
    })
}
