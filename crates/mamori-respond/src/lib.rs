//! Response actions with guard-rails: block an IP, disable an account, isolate this host, call a
//! webhook — planned from an alert by policy, executed automatically or after a person
//! approves, recorded, and undoable.
//!
//! # Key design decision: typed values from the log line to the argv
//!
//! Log content is attacker-controlled, and a response action runs as root. So the boundary is
//! drawn once, at [`Responder::plan`]: the trigger's entities arrive as raw strings and are
//! parsed there into [`IpAddr`], [`UserName`], [`Keep`] and [`WebhookUrl`], each of which has a
//! single strict constructor (an address parses as an address or is refused; a user name matches
//! `^[a-z_][a-z0-9_-]{0,31}$`). From then on only typed values flow:
//!
//! * commands are `std::process::Command` with an argv array ([`CommandSpec`]); there is no
//!   `sh -c` anywhere, so `;`, `$( )` or newlines would be inert bytes even if they got through;
//! * nft scripts (`nft -f -`, on stdin) are rendered by [`NftScript`] from `IpAddr`, [`Keep`],
//!   a number of seconds and constants — no function that builds a script accepts a string, so
//!   `1.2.3.4 }; flush ruleset` cannot be expressed (see the `injection_*` tests);
//! * webhook payloads are JSON serialised by `serde_json` and sent on curl's stdin.
//!
//! # Other decisions
//!
//! * **Plan, then execute.** Planning is policy and validation only (no I/O); a
//!   [`PlannedAction`] says what would happen and why. The responder executes only plans it
//!   issued, unchanged, so a caller cannot skip the guard-rails by constructing one.
//! * **Guard-rails refuse with a reason.** Loopback, the server's own addresses, the isolation
//!   peers and the allow-list are never blocked; `root` and protected users are never disabled;
//!   isolation needs a kept server connection; a target already blocked or pending is not planned
//!   twice. Each refusal is a [`Refusal`] with its reason, so it can be shown in the incident.
//! * **The kernel owns expiry.** Blocks go into nft sets with `flags timeout`, so a block ends on
//!   time even if Mamori is down; [`Responder::expire`] only updates the records.
//! * **Everything is a record.** Each execution (dry run included), approval and rollback
//!   is an [`ActionRecord`] with the exact commands; state saves to bytes and restores.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use mamori_event::{Level, RuleId};
//! use mamori_respond::*;
//!
//! let policy: ResponsePolicy = serde_json::from_str(r#"{
//!     "levels": {"critical": {"block_ip": "automatic", "disable_account": "suggest"}},
//!     "allow_list": ["192.0.2.0/24"],
//!     "default_ttl": 3600
//! }"#).unwrap();
//! let mut responder = Responder::new(ResponderConfig { policy, ..Default::default() }).unwrap();
//! let trigger = Trigger {
//!     rule_id: RuleId(Arc::from("ssh-bruteforce")),
//!     level: Level::Critical,
//!     source_ip: Some("203.0.113.9".into()),
//!     user_name: Some("mallory".into()),
//!     host_name: None,
//! };
//! let now = chrono::Utc::now();
//! // Dry run: the automatic block is recorded with the exact command, nothing runs.
//! let response = responder.respond(&trigger, true, now);
//! let record = &response.executed[0];
//! assert_eq!(record.commands[0].args, ["-f", "-"]);
//! assert!(record.commands[0].stdin.as_deref().unwrap()
//!     .ends_with("add element inet mamori blocked4 { 203.0.113.9 timeout 3600s }\n"));
//! // The account is only suggested: it waits for `approve(id, Actor::user("ana")?, now)`.
//! let pending: Vec<_> = responder.pending().collect();
//! assert_eq!(pending[0].action.describe(), "disable_account mallory");
//! ```
//!
//! Execution blocks on child processes (`nft`, `usermod`, `curl` with `--max-time`); async
//! callers should run it on a blocking pool.

mod backend;
mod command;
pub mod host;
mod policy;
mod responder;
mod validate;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use backend::{AccountConfig, Backends, NftConfig, NftScript, WebhookConfig, NFT_TABLE};
pub use command::{CommandSpec, Outcome};
pub use host::{
    HostAction, HostActionKind, HostCommand, HostOp, HostOutcome, HostPolicy, HostRecord,
    HostResult,
};
pub use policy::{ActionKind, Mode, Modes, ResponsePolicy};
pub use responder::{
    ActionRecord, Plan, PlanId, PlannedAction, Reapplied, RecordId, Refusal, Responder,
    ResponderConfig, Response, RollbackAttempt, Trigger,
};
pub use validate::{parse_ip, Actor, Cidr, Keep, NetNs, UserName, WebhookUrl};

/// A response action with validated arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Drop packets from `ip` for `ttl` (kernel-side timeout).
    BlockIp {
        ip: IpAddr,
        #[serde(with = "secs")]
        ttl: Duration,
    },
    /// Lock the password of `user` and kill their processes.
    DisableAccount { user: UserName },
    /// Drop all traffic of this host except loopback and the `keep` peers.
    IsolateHost { keep: Vec<Keep> },
    /// POST `payload` as JSON to `url`.
    Webhook {
        url: WebhookUrl,
        payload: serde_json::Value,
    },
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::BlockIp { .. } => ActionKind::BlockIp,
            Action::DisableAccount { .. } => ActionKind::DisableAccount,
            Action::IsolateHost { .. } => ActionKind::IsolateHost,
            Action::Webhook { .. } => ActionKind::Webhook,
        }
    }

    /// One line for people: `block_ip 203.0.113.9 for 3600s`.
    pub fn describe(&self) -> String {
        match self {
            Action::BlockIp { ip, ttl } => format!("block_ip {ip} for {}s", ttl.as_secs()),
            Action::DisableAccount { user } => format!("disable_account {user}"),
            Action::IsolateHost { keep } => {
                let keep: Vec<String> = keep.iter().map(Keep::to_string).collect();
                format!("isolate_host keeping {}", keep.join(", "))
            }
            Action::Webhook { url, .. } => format!("webhook {url}"),
        }
    }

    /// True if both act on the same target, so the second would be redundant. Webhooks never
    /// are: each trigger notifies.
    pub(crate) fn same_target(&self, other: &Action) -> bool {
        match (self, other) {
            (Action::BlockIp { ip: a, .. }, Action::BlockIp { ip: b, .. }) => {
                a.to_canonical() == b.to_canonical()
            }
            (Action::DisableAccount { user: a }, Action::DisableAccount { user: b }) => a == b,
            (Action::IsolateHost { .. }, Action::IsolateHost { .. }) => true,
            _ => false,
        }
    }
}

/// Errors from validation and from using the responder wrongly. A command that fails is not
/// an error but an [`Outcome::Failed`] in the record.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid ip address {input:?}")]
    InvalidIp { input: String },
    #[error("invalid network {input:?}: {reason}")]
    InvalidCidr { input: String, reason: &'static str },
    #[error("invalid user name {input:?}: {reason}")]
    InvalidUserName { input: String, reason: &'static str },
    #[error("invalid network namespace name {input:?}: {reason}")]
    InvalidNetNs { input: String, reason: &'static str },
    #[error("invalid webhook url {input:?}: {reason}")]
    InvalidUrl { input: String, reason: &'static str },
    #[error("invalid address to keep {input:?}: expected IP or IP:port")]
    InvalidKeep { input: String },
    #[error("invalid actor {input:?}: {reason}")]
    InvalidActor { input: String, reason: &'static str },
    #[error("invalid policy: {reason}")]
    InvalidPolicy { reason: String },
    #[error("unknown plan {0}")]
    UnknownPlan(PlanId),
    #[error("plan {0} differs from the plan this responder issued")]
    PlanMismatch(PlanId),
    #[error("plan {0} is a suggestion and needs approval")]
    NeedsApproval(PlanId),
    #[error("plan {id} refused by the current policy: {reason}")]
    Refused { id: PlanId, reason: String },
    #[error("plan {0} is automatic, not a suggestion")]
    NotASuggestion(PlanId),
    #[error("unknown record {0}")]
    UnknownRecord(RecordId),
    #[error("record {0} was already rolled back")]
    AlreadyRolledBack(RecordId),
    #[error("record {id}: {kind} cannot be rolled back")]
    NotReversible { id: RecordId, kind: ActionKind },
    #[error("record {0} is a dry run; only a dry-run rollback is possible")]
    DryRunRecord(RecordId),
    #[error("responder state: {0}")]
    State(#[from] serde_json::Error),
    #[error("responder state version {0} is not supported")]
    StateVersion(u32),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Bounds attacker-controlled text quoted in an error message.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 128;
    match s.char_indices().nth(MAX) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// `Duration` as whole seconds in serde.
pub(crate) mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }

    pub(crate) mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&d.as_secs()),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_secs))
        }
    }
}

#[cfg(test)]
mod tests;
