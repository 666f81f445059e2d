//! Response on a host by its Mamori agent: the typed actions the server sends an agent, the
//! guard-rails the agent applies before running one, and the commands it runs.
//!
//! The server queues a [`HostCommand`] for an agent (from an incident, by a person); the agent
//! fetches it with its own credential, checks it against its own [`HostPolicy`] (the host's
//! owner decides what a server may make it do), runs the commands built here — the same
//! [`Backends`] and [`NftScript`] as the server's own responder, argv only, no shell — and
//! reports a [`HostResult`] with the exact commands back onto the incident.
//!
//! Arguments are typed from the wire on: an address deserialises as an [`IpAddr`] or the
//! command is refused, a user name as a [`UserName`], a process as a number. Host isolation
//! always keeps the agent's own server connection (the agent adds it; the server cannot
//! remove it), so a rollback can still arrive.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::Backends;
use crate::command::{self, CommandSpec, Outcome};
use crate::policy::ResponsePolicy;
use crate::validate::{Cidr, Keep, UserName};
use crate::{secs, Action};

/// Longest block a command may ask for (the agent's `max_ttl` may be shorter).
pub const MAX_HOST_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// An action for an agent to carry out on its own host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostAction {
    /// Drop packets from `ip` for `ttl` (kernel-side timeout in the `inet mamori` table).
    BlockIp {
        ip: IpAddr,
        #[serde(with = "secs")]
        ttl: Duration,
    },
    /// Drop all traffic except loopback and the agent's server connection (and the peers the
    /// agent's own configuration keeps).
    IsolateHost {},
    /// Lock the password of `user` and kill their processes.
    DisableAccount { user: UserName },
    /// SIGKILL process `pid`; with `name`, only if the process is still called that (a PID can
    /// be reused between the request and its execution).
    KillProcess {
        pid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<ProcessName>,
    },
}

/// The kinds of [`HostAction`], as allowed in an agent's `[response] actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostActionKind {
    BlockIp,
    IsolateHost,
    DisableAccount,
    KillProcess,
}

impl HostActionKind {
    pub const ALL: [HostActionKind; 4] = [
        HostActionKind::BlockIp,
        HostActionKind::IsolateHost,
        HostActionKind::DisableAccount,
        HostActionKind::KillProcess,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostActionKind::BlockIp => "block_ip",
            HostActionKind::IsolateHost => "isolate_host",
            HostActionKind::DisableAccount => "disable_account",
            HostActionKind::KillProcess => "kill_process",
        }
    }
}

/// A process name as the kernel shows it (`/proc/PID/comm`): 1-15 printable bytes, no `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProcessName(String);

impl ProcessName {
    pub fn parse(s: &str) -> Result<ProcessName, String> {
        if s.is_empty() || s.len() > 15 || s.chars().any(|c| c.is_control() || c == '/') {
            return Err(format!(
                "process name {:?}: 1-15 printable characters without `/`",
                crate::clip(s)
            ));
        }
        Ok(ProcessName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProcessName {
    type Error = String;
    fn try_from(s: String) -> Result<ProcessName, String> {
        ProcessName::parse(&s)
    }
}

impl From<ProcessName> for String {
    fn from(p: ProcessName) -> String {
        p.0
    }
}

impl HostAction {
    pub fn kind(&self) -> HostActionKind {
        match self {
            HostAction::BlockIp { .. } => HostActionKind::BlockIp,
            HostAction::IsolateHost {} => HostActionKind::IsolateHost,
            HostAction::DisableAccount { .. } => HostActionKind::DisableAccount,
            HostAction::KillProcess { .. } => HostActionKind::KillProcess,
        }
    }

    /// One line for people: `block_ip 203.0.113.9 for 3600s`.
    pub fn describe(&self) -> String {
        match self {
            HostAction::BlockIp { ip, ttl } => format!("block_ip {ip} for {}s", ttl.as_secs()),
            HostAction::IsolateHost {} => "isolate_host".to_owned(),
            HostAction::DisableAccount { user } => format!("disable_account {user}"),
            HostAction::KillProcess { pid, name: None } => format!("kill_process {pid}"),
            HostAction::KillProcess { pid, name: Some(n) } => {
                format!("kill_process {pid} ({})", n.as_str())
            }
        }
    }

    /// What the server itself can check before queuing: the arguments are sane (the types
    /// already checked the syntax). `policy` is the server's response policy, whose
    /// allow-list and protected users hold for agents too.
    pub fn check(&self, policy: Option<&ResponsePolicy>) -> Result<(), String> {
        match self {
            HostAction::BlockIp { ip, ttl } => {
                if ttl.is_zero() || *ttl > MAX_HOST_TTL {
                    return Err(format!("ttl must be 1-{} seconds", MAX_HOST_TTL.as_secs()));
                }
                let p = ResponsePolicy::default();
                if let Some(why) = policy.unwrap_or(&p).ip_protection(*ip) {
                    return Err(why);
                }
            }
            HostAction::DisableAccount { user } => {
                let p = ResponsePolicy::default();
                if let Some(why) = policy.unwrap_or(&p).user_protection(user) {
                    return Err(why);
                }
            }
            HostAction::KillProcess { pid, .. } => {
                if *pid <= 1 {
                    return Err(format!("PID {pid} is never killed"));
                }
            }
            HostAction::IsolateHost {} => {}
        }
        Ok(())
    }
}

/// What the server asks of an agent: apply an action, or roll back one it applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostOp {
    Apply { action: HostAction },
    Rollback { of: u64 },
}

/// One command for one agent; `id` is the server's, unique per server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCommand {
    pub id: u64,
    #[serde(flatten)]
    pub op: HostOp,
}

/// How a command ended on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HostOutcome {
    /// Every command exited successfully.
    Done,
    /// A command could not be started or failed; `error` says which and why.
    Failed { error: String },
    /// The agent's guard-rails refused it; nothing ran.
    Refused { reason: String },
}

impl HostOutcome {
    pub fn is_done(&self) -> bool {
        matches!(self, HostOutcome::Done)
    }
}

/// What an agent reports for a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResult {
    pub id: u64,
    pub at: DateTime<Utc>,
    pub outcome: HostOutcome,
    /// Exactly what ran: program, argv, stdin.
    #[serde(default)]
    pub commands: Vec<CommandSpec>,
}

/// An agent's guard-rails (`[response]` in `agent.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostPolicy {
    /// Off by default: an agent runs nothing the server asks until its owner says so.
    pub enabled: bool,
    /// The kinds of action the server may ask for.
    pub actions: Vec<HostActionKind>,
    /// Networks never blocked on this host (admin workstation, gateway, resolvers).
    pub allow_list: Vec<Cidr>,
    /// Accounts never disabled (`root` always is).
    pub protected_users: Vec<UserName>,
    /// Peers isolation keeps reachable besides the Mamori server (which is always kept).
    pub keep: Vec<Keep>,
    /// Longest block accepted.
    #[serde(with = "secs")]
    pub max_ttl: Duration,
    /// How to run nft, usermod, pkill.
    pub backends: Backends,
    /// The `kill` binary (procps), run as `kill -KILL -- PID`.
    pub kill: PathBuf,
    /// How often the agent asks its server for commands (seconds).
    pub poll_secs: u64,
}

impl Default for HostPolicy {
    fn default() -> HostPolicy {
        HostPolicy {
            enabled: false,
            actions: HostActionKind::ALL.to_vec(),
            allow_list: Vec::new(),
            protected_users: Vec::new(),
            keep: Vec::new(),
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            backends: Backends::default(),
            kill: PathBuf::from("kill"),
            poll_secs: 5,
        }
    }
}

/// An action's state on the host, as the agent remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub id: u64,
    pub action: HostAction,
    pub at: DateTime<Utc>,
    pub outcome: HostOutcome,
    pub commands: Vec<CommandSpec>,
    /// When a block ends in the kernel.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub rolled_back_at: Option<DateTime<Utc>>,
}

impl HostPolicy {
    /// The guard-rails as a [`ResponsePolicy`], so the server's checks are reused unchanged.
    fn as_response_policy(&self, keep: &[Keep]) -> ResponsePolicy {
        ResponsePolicy {
            allow_list: self.allow_list.clone(),
            protected_users: self.protected_users.clone(),
            isolation_keep: keep.to_vec(),
            max_ttl: self.max_ttl,
            ..ResponsePolicy::default()
        }
    }

    /// Why this host will not run `action`, or `None`. `server` are the addresses of the
    /// agent's server connection (kept during isolation, never blocked); `own_pid` is the
    /// agent's.
    pub fn refusal(&self, action: &HostAction, server: &[Keep], own_pid: u32) -> Option<String> {
        if !self.enabled {
            return Some(
                "response is disabled in this agent's configuration ([response] enabled = false)"
                    .into(),
            );
        }
        let kind = action.kind();
        if !self.actions.contains(&kind) {
            return Some(format!(
                "{} is not in this agent's [response] actions",
                kind.as_str()
            ));
        }
        let keep = self.keep_with(server);
        let p = self.as_response_policy(&keep);
        match action {
            HostAction::BlockIp { ip, ttl } => {
                if ttl.is_zero() || *ttl > self.max_ttl {
                    return Some(format!(
                        "ttl {}s is outside 1-{}s (max_ttl)",
                        ttl.as_secs(),
                        self.max_ttl.as_secs()
                    ));
                }
                p.ip_protection(*ip)
            }
            HostAction::IsolateHost {} => {
                if server.is_empty() {
                    return Some("the server's address is unknown: isolating would cut this host off from Mamori".into());
                }
                None
            }
            HostAction::DisableAccount { user } => p.user_protection(user),
            HostAction::KillProcess { pid, .. } => {
                if *pid <= 1 {
                    Some(format!("PID {pid} is never killed"))
                } else if *pid == own_pid {
                    Some("the agent does not kill itself".into())
                } else {
                    None
                }
            }
        }
    }

    fn keep_with(&self, server: &[Keep]) -> Vec<Keep> {
        let mut keep = server.to_vec();
        for k in &self.keep {
            if !keep.contains(k) {
                keep.push(*k);
            }
        }
        keep
    }

    /// The commands that carry out `action` on this host.
    pub fn apply_commands(&self, action: &HostAction, server: &[Keep]) -> Vec<CommandSpec> {
        match action {
            HostAction::BlockIp { ip, ttl } => {
                self.backends.apply(&Action::BlockIp { ip: *ip, ttl: *ttl })
            }
            HostAction::IsolateHost {} => self.backends.apply(&Action::IsolateHost {
                keep: self.keep_with(server),
            }),
            HostAction::DisableAccount { user } => self
                .backends
                .apply(&Action::DisableAccount { user: user.clone() }),
            HostAction::KillProcess { pid, .. } => vec![CommandSpec::new(
                self.kill.clone(),
                vec!["-KILL".into(), "--".into(), pid.to_string()],
            )],
        }
    }

    /// The commands that undo `action`, or `None` (a killed process stays dead).
    pub fn undo_commands(&self, action: &HostAction) -> Option<Vec<CommandSpec>> {
        match action {
            HostAction::BlockIp { ip, ttl } => {
                self.backends.undo(&Action::BlockIp { ip: *ip, ttl: *ttl })
            }
            HostAction::IsolateHost {} => self
                .backends
                .undo(&Action::IsolateHost { keep: Vec::new() }),
            HostAction::DisableAccount { user } => self
                .backends
                .undo(&Action::DisableAccount { user: user.clone() }),
            HostAction::KillProcess { .. } => None,
        }
    }

    /// Checks and runs `action`; the record says what ran and how it ended.
    pub fn run(
        &self,
        id: u64,
        action: &HostAction,
        server: &[Keep],
        own_pid: u32,
        now: DateTime<Utc>,
    ) -> HostRecord {
        let refused = self
            .refusal(action, server, own_pid)
            .or_else(|| process_mismatch(action));
        let (outcome, commands) = match refused {
            Some(reason) => (HostOutcome::Refused { reason }, Vec::new()),
            None => {
                let cmds = self.apply_commands(action, server);
                (outcome_of(command::run_all(&cmds)), cmds)
            }
        };
        let expires_at = match action {
            HostAction::BlockIp { ttl, .. } if outcome.is_done() => {
                chrono::Duration::from_std(*ttl)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
            }
            _ => None,
        };
        HostRecord {
            id,
            action: action.clone(),
            at: now,
            outcome,
            commands,
            expires_at,
            rolled_back_at: None,
        }
    }

    /// Undoes `rec` (whatever the policy says now: taking an action back is always allowed).
    pub fn rollback(&self, rec: &HostRecord) -> (HostOutcome, Vec<CommandSpec>) {
        if !rec.outcome.is_done() {
            return (
                HostOutcome::Refused {
                    reason: format!("command {} did not take effect; nothing to undo", rec.id),
                },
                Vec::new(),
            );
        }
        if rec.rolled_back_at.is_some() {
            return (
                HostOutcome::Refused {
                    reason: format!("command {} was already rolled back", rec.id),
                },
                Vec::new(),
            );
        }
        match self.undo_commands(&rec.action) {
            None => (
                HostOutcome::Refused {
                    reason: format!("{} cannot be undone", rec.action.kind().as_str()),
                },
                Vec::new(),
            ),
            Some(cmds) => (outcome_of(command::run_all(&cmds)), cmds),
        }
    }
}

/// For a kill with a name: why the process is not the one meant (gone, or another program).
fn process_mismatch(action: &HostAction) -> Option<String> {
    let HostAction::KillProcess {
        pid,
        name: Some(want),
    } = action
    else {
        return None;
    };
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Err(_) => Some(format!("no process {pid} on this host")),
        Ok(comm) if comm.trim_end_matches('\n') != want.as_str() => Some(format!(
            "process {pid} is {:?}, not {:?} (the PID may have been reused)",
            crate::clip(comm.trim_end_matches('\n')),
            want.as_str()
        )),
        Ok(_) => None,
    }
}

fn outcome_of(o: Outcome) -> HostOutcome {
    match o {
        Outcome::Ok => HostOutcome::Done,
        Outcome::Failed { stderr } => HostOutcome::Failed { error: stderr },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> HostPolicy {
        HostPolicy {
            enabled: true,
            allow_list: vec!["192.0.2.0/24".parse().unwrap()],
            protected_users: vec![UserName::parse("admin").unwrap()],
            max_ttl: Duration::from_secs(3600),
            ..HostPolicy::default()
        }
    }

    fn server() -> Vec<Keep> {
        vec!["10.0.0.5:8080".parse().unwrap()]
    }

    #[test]
    fn wire_is_typed() {
        let c: HostCommand = serde_json::from_str(
            r#"{"id": 7, "op": "apply", "action": {"type": "block_ip", "ip": "203.0.113.9", "ttl": 60}}"#,
        )
        .unwrap();
        assert_eq!(
            c.op,
            HostOp::Apply {
                action: HostAction::BlockIp {
                    ip: "203.0.113.9".parse().unwrap(),
                    ttl: Duration::from_secs(60)
                }
            }
        );
        for bad in [
            r#"{"id": 1, "op": "apply", "action": {"type": "block_ip", "ip": "1.2.3.4; flush ruleset", "ttl": 60}}"#,
            r#"{"id": 1, "op": "apply", "action": {"type": "disable_account", "user": "-rf"}}"#,
            r#"{"id": 1, "op": "apply", "action": {"type": "kill_process", "pid": "12; reboot"}}"#,
            r#"{"id": 1, "op": "apply", "action": {"type": "kill_process", "pid": 12, "name": "a/b"}}"#,
            r#"{"id": 1, "op": "apply", "action": {"type": "isolate_host", "keep": ["0.0.0.0/0"]}}"#,
            r#"{"id": 1, "op": "apply", "action": {"type": "shell", "cmd": "id"}}"#,
        ] {
            assert!(serde_json::from_str::<HostCommand>(bad).is_err(), "{bad}");
        }
        let iso: HostCommand =
            serde_json::from_str(r#"{"id": 2, "op": "apply", "action": {"type": "isolate_host"}}"#)
                .unwrap();
        assert_eq!(
            iso.op,
            HostOp::Apply {
                action: HostAction::IsolateHost {}
            }
        );
        let r: HostCommand =
            serde_json::from_str(r#"{"id": 8, "op": "rollback", "of": 7}"#).unwrap();
        assert_eq!(r.op, HostOp::Rollback { of: 7 });
    }

    #[test]
    fn guard_rails() {
        let p = on();
        let s = server();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let block = |a: &str, t: u64| HostAction::BlockIp {
            ip: ip(a),
            ttl: Duration::from_secs(t),
        };
        assert!(HostPolicy::default()
            .refusal(&block("203.0.113.9", 60), &s, 1000)
            .unwrap()
            .contains("disabled"));
        assert_eq!(p.refusal(&block("203.0.113.9", 60), &s, 1000), None);
        assert!(p
            .refusal(&block("203.0.113.9", 7200), &s, 1000)
            .unwrap()
            .contains("max_ttl"));
        assert!(p
            .refusal(&block("192.0.2.4", 60), &s, 1000)
            .unwrap()
            .contains("allow-list"));
        assert!(p
            .refusal(&block("10.0.0.5", 60), &s, 1000)
            .unwrap()
            .contains("kept during isolation"));
        assert!(p.refusal(&block("127.0.0.1", 60), &s, 1000).is_some());
        let user = |u: &str| HostAction::DisableAccount {
            user: UserName::parse(u).unwrap(),
        };
        assert!(p.refusal(&user("root"), &s, 1000).is_some());
        assert!(p.refusal(&user("admin"), &s, 1000).is_some());
        assert_eq!(p.refusal(&user("mallory"), &s, 1000), None);
        let kill = |pid| HostAction::KillProcess { pid, name: None };
        assert!(p.refusal(&kill(1), &s, 1000).is_some());
        assert!(p.refusal(&kill(1000), &s, 1000).is_some());
        assert_eq!(p.refusal(&kill(4242), &s, 1000), None);
        assert!(p
            .refusal(&HostAction::IsolateHost {}, &[], 1000)
            .unwrap()
            .contains("cut this host off"));
        assert_eq!(p.refusal(&HostAction::IsolateHost {}, &s, 1000), None);
        let only_block = HostPolicy {
            actions: vec![HostActionKind::BlockIp],
            ..on()
        };
        assert!(only_block
            .refusal(&HostAction::IsolateHost {}, &s, 1000)
            .unwrap()
            .contains("not in this agent's"));
        // The server's own check uses its policy.
        assert!(block("127.0.0.1", 60).check(None).is_err());
        assert!(block("203.0.113.9", 0).check(None).is_err());
        assert!(user("root").check(None).is_err());
        assert!(kill(1).check(None).is_err());
        assert!(kill(77).check(None).is_ok());
    }

    #[test]
    fn commands_reuse_the_backends_and_keep_the_server() {
        let p = on();
        let s = server();
        let iso = p.apply_commands(&HostAction::IsolateHost {}, &s);
        assert_eq!(iso[0].args, ["-f", "-"]);
        let script = iso[0].stdin.as_deref().unwrap();
        assert!(
            script.contains(
                "ip daddr 10.0.0.5 tcp dport 8080 ct state new,established,related accept"
            ),
            "{script}"
        );
        let undo = p.undo_commands(&HostAction::IsolateHost {}).unwrap();
        assert!(undo[0]
            .stdin
            .as_deref()
            .unwrap()
            .contains("delete chain inet mamori isolate_out"));
        let k = p.apply_commands(
            &HostAction::KillProcess {
                pid: 4242,
                name: None,
            },
            &s,
        );
        assert_eq!(k[0].program, PathBuf::from("kill"));
        assert_eq!(k[0].args, ["-KILL", "--", "4242"]);
        assert!(p
            .undo_commands(&HostAction::KillProcess {
                pid: 4242,
                name: None
            })
            .is_none());
    }

    #[test]
    fn run_records_refusals_failures_and_rollbacks() {
        let mut p = on();
        // A `kill` that fails: the record says so, with the command.
        p.kill = PathBuf::from("/nonexistent/kill");
        let now = Utc::now();
        let r = p.run(
            3,
            &HostAction::KillProcess {
                pid: 4242,
                name: None,
            },
            &server(),
            1,
            now,
        );
        assert!(
            matches!(&r.outcome, HostOutcome::Failed { error } if error.contains("cannot start")),
            "{r:?}"
        );
        assert_eq!(r.commands.len(), 1);
        let (o, _) = p.rollback(&r);
        assert!(matches!(o, HostOutcome::Refused { .. }));
        let r = p.run(4, &HostAction::IsolateHost {}, &[], 1, now);
        assert!(matches!(r.outcome, HostOutcome::Refused { .. }));
        assert!(r.commands.is_empty());
        // `true` stands in for kill: success, and a kill cannot be undone.
        p.kill = PathBuf::from("true");
        let r = p.run(
            5,
            &HostAction::KillProcess {
                pid: 4242,
                name: None,
            },
            &server(),
            1,
            now,
        );
        assert_eq!(r.outcome, HostOutcome::Done);
        let (o, c) = p.rollback(&r);
        assert!(
            matches!(o, HostOutcome::Refused { reason } if reason.contains("cannot be undone"))
        );
        assert!(c.is_empty());
    }
}
