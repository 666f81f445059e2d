//! What the responder may do, and to whom it may never do it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use mamori_event::Level;
use serde::{Deserialize, Serialize};

use crate::validate::{Cidr, Keep, UserName, WebhookUrl};
use crate::{secs, Error, Result};

/// How an action kind is handled for a rule or level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Not planned at all.
    #[default]
    Off,
    /// Planned and kept pending until a person approves it.
    Suggest,
    /// Planned and executed without asking.
    Automatic,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Suggest => "suggest",
            Mode::Automatic => "automatic",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four kinds of [`crate::Action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    BlockIp,
    DisableAccount,
    IsolateHost,
    Webhook,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::BlockIp => "block_ip",
            ActionKind::DisableAccount => "disable_account",
            ActionKind::IsolateHost => "isolate_host",
            ActionKind::Webhook => "webhook",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mode of each action kind for one rule or level. Missing kinds are [`Mode::Off`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Modes {
    pub block_ip: Mode,
    pub disable_account: Mode,
    pub isolate_host: Mode,
    pub webhook: Mode,
    /// Block duration for this rule/level; the policy's `default_ttl` if absent, clamped to
    /// `max_ttl`.
    #[serde(with = "secs::option", skip_serializing_if = "Option::is_none")]
    pub block_ttl: Option<Duration>,
}

impl Modes {
    pub fn get(&self, kind: ActionKind) -> Mode {
        match kind {
            ActionKind::BlockIp => self.block_ip,
            ActionKind::DisableAccount => self.disable_account,
            ActionKind::IsolateHost => self.isolate_host,
            ActionKind::Webhook => self.webhook,
        }
    }
}

/// The guard-rails. Loaded from the server config (serde, unknown fields rejected).
///
/// Mode lookup: an entry in `rules` for the trigger's rule id wins as a whole; otherwise the
/// entry in `levels` for the trigger's level; otherwise everything is off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsePolicy {
    #[serde(default)]
    pub rules: BTreeMap<String, Modes>,
    #[serde(default)]
    pub levels: BTreeMap<Level, Modes>,
    /// Networks that are never blocked (admin workstation, gateways, resolvers). Loopback,
    /// `server_addrs` and `isolation_keep` are protected in addition, always.
    #[serde(default)]
    pub allow_list: Vec<Cidr>,
    /// This machine's and the Mamori server's own addresses: never blocked.
    #[serde(default)]
    pub server_addrs: Vec<IpAddr>,
    /// Peers host isolation keeps reachable (the Mamori server connection). Isolation is
    /// refused while this is empty. Also never blocked.
    #[serde(default)]
    pub isolation_keep: Vec<Keep>,
    /// Accounts never disabled. `root` is protected in addition, always.
    #[serde(default)]
    pub protected_users: Vec<UserName>,
    /// Isolation runs on the machine the responder runs on, so it is planned only when the
    /// trigger's `host.name` equals this (ASCII case-insensitive). Unset: never.
    #[serde(default)]
    pub local_host: Option<String>,
    /// Where webhooks go. Unset: webhook actions are refused.
    #[serde(default)]
    pub webhook_url: Option<WebhookUrl>,
    #[serde(with = "secs", default = "default_ttl")]
    pub default_ttl: Duration,
    #[serde(with = "secs", default = "max_ttl")]
    pub max_ttl: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn max_ttl() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

impl Default for ResponsePolicy {
    fn default() -> ResponsePolicy {
        ResponsePolicy {
            rules: BTreeMap::new(),
            levels: BTreeMap::new(),
            allow_list: Vec::new(),
            server_addrs: Vec::new(),
            isolation_keep: Vec::new(),
            protected_users: Vec::new(),
            local_host: None,
            webhook_url: None,
            default_ttl: default_ttl(),
            max_ttl: max_ttl(),
        }
    }
}

impl ResponsePolicy {
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidPolicy { reason });
        if self.default_ttl.as_secs() == 0 || self.max_ttl.as_secs() == 0 {
            return bad("ttls must be at least one second".into());
        }
        if self.default_ttl > self.max_ttl {
            return bad(format!(
                "default_ttl {}s exceeds max_ttl {}s",
                self.default_ttl.as_secs(),
                self.max_ttl.as_secs()
            ));
        }
        Ok(())
    }

    /// The modes for a trigger and where they came from (for the plan's reason).
    pub fn modes_for(&self, rule_id: &str, level: Level) -> (Option<&Modes>, String) {
        if let Some(m) = self.rules.get(rule_id) {
            return (Some(m), format!("policy for rule {rule_id}"));
        }
        if let Some(m) = self.levels.get(&level) {
            return (Some(m), format!("policy for level {level}"));
        }
        (None, "no policy".into())
    }

    /// Why `ip` must not be blocked, or `None` if it may be.
    pub fn ip_protection(&self, ip: IpAddr) -> Option<String> {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return Some(format!("{ip} is a loopback address"));
        }
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
            return Some(format!("{ip} is not a unicast host address"));
        }
        if self.server_addrs.iter().any(|a| a.to_canonical() == ip) {
            return Some(format!("{ip} is one of the server's own addresses"));
        }
        if self
            .isolation_keep
            .iter()
            .any(|k| k.ip.to_canonical() == ip)
        {
            return Some(format!(
                "{ip} is the Mamori server connection kept during isolation"
            ));
        }
        if let Some(c) = self.allow_list.iter().find(|c| c.contains(ip)) {
            return Some(format!("{ip} is in allow-list entry {c}"));
        }
        None
    }

    /// Why `user` must not be disabled, or `None` if it may be.
    pub fn user_protection(&self, user: &UserName) -> Option<String> {
        if user.as_str() == "root" {
            return Some("root is never disabled".into());
        }
        if self.protected_users.contains(user) {
            return Some(format!("{user} is a protected user"));
        }
        None
    }

    /// Why `action` must not run under this policy, or `None`. Checked again right before
    /// execution, since the policy may have changed (or the state been edited) since planning.
    pub fn protection(&self, action: &crate::Action) -> Option<String> {
        match action {
            crate::Action::BlockIp { ip, .. } => self.ip_protection(*ip),
            crate::Action::DisableAccount { user } => self.user_protection(user),
            crate::Action::IsolateHost { keep } if keep.is_empty() => Some(
                "no isolation_keep address: isolating would cut this host off from Mamori".into(),
            ),
            crate::Action::IsolateHost { .. } | crate::Action::Webhook { .. } => None,
        }
    }

    /// The TTL to use and a note if it was clamped.
    pub(crate) fn ttl(&self, modes: &Modes) -> (Duration, Option<String>) {
        let want = modes.block_ttl.unwrap_or(self.default_ttl);
        let want = want.max(Duration::from_secs(1));
        if want > self.max_ttl {
            (
                self.max_ttl,
                Some(format!(
                    "ttl {}s clamped to max_ttl {}s",
                    want.as_secs(),
                    self.max_ttl.as_secs()
                )),
            )
        } else {
            (Duration::from_secs(want.as_secs()), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_from_json_and_lookup_order() {
        let p: ResponsePolicy = serde_json::from_str(
            r#"{
                "rules": {"r-ssh": {"block_ip": "automatic", "block_ttl": 600}},
                "levels": {"high": {"block_ip": "suggest", "webhook": "automatic"}},
                "allow_list": ["192.0.2.0/24"],
                "default_ttl": 3600,
                "max_ttl": 86400
            }"#,
        )
        .unwrap();
        let (m, why) = p.modes_for("r-ssh", Level::High);
        let m = m.unwrap();
        assert_eq!(m.block_ip, Mode::Automatic);
        // A rule entry replaces the level entry as a whole.
        assert_eq!(m.webhook, Mode::Off);
        assert_eq!(why, "policy for rule r-ssh");
        let (m, _) = p.modes_for("other", Level::High);
        assert_eq!(m.unwrap().get(ActionKind::Webhook), Mode::Automatic);
        assert!(p.modes_for("other", Level::Low).0.is_none());
        assert!(serde_json::from_str::<ResponsePolicy>(r#"{"alow_list": []}"#).is_err());
        assert!(
            serde_json::from_str::<ResponsePolicy>(r#"{"allow_list": ["10.0.0.0/8; x"]}"#).is_err()
        );
    }

    #[test]
    fn protections() {
        let p = ResponsePolicy {
            allow_list: vec!["192.0.2.0/24".parse().unwrap()],
            server_addrs: vec!["198.51.100.10".parse().unwrap()],
            isolation_keep: vec!["198.51.100.20:8443".parse().unwrap()],
            protected_users: vec![UserName::parse("admin").unwrap()],
            ..ResponsePolicy::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p
            .ip_protection(ip("127.0.0.53"))
            .unwrap()
            .contains("loopback"));
        assert!(p.ip_protection(ip("::1")).unwrap().contains("loopback"));
        assert!(p
            .ip_protection(ip("::ffff:127.0.0.1"))
            .unwrap()
            .contains("loopback"));
        assert!(p.ip_protection(ip("0.0.0.0")).is_some());
        assert!(p
            .ip_protection(ip("192.0.2.44"))
            .unwrap()
            .contains("192.0.2.0/24"));
        assert!(p.ip_protection(ip("::ffff:192.0.2.44")).is_some());
        assert!(p
            .ip_protection(ip("198.51.100.10"))
            .unwrap()
            .contains("own addresses"));
        assert!(p
            .ip_protection(ip("198.51.100.20"))
            .unwrap()
            .contains("kept during isolation"));
        assert_eq!(p.ip_protection(ip("203.0.113.5")), None);
        assert!(p
            .user_protection(&UserName::parse("root").unwrap())
            .is_some());
        assert!(p
            .user_protection(&UserName::parse("admin").unwrap())
            .is_some());
        assert!(p
            .user_protection(&UserName::parse("mallory").unwrap())
            .is_none());
    }

    #[test]
    fn ttl_clamping_and_checks() {
        let p = ResponsePolicy {
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(120),
            ..ResponsePolicy::default()
        };
        assert_eq!(p.ttl(&Modes::default()), (Duration::from_secs(60), None));
        let long = Modes {
            block_ttl: Some(Duration::from_secs(999)),
            ..Modes::default()
        };
        let (ttl, note) = p.ttl(&long);
        assert_eq!(ttl, Duration::from_secs(120));
        assert_eq!(note.unwrap(), "ttl 999s clamped to max_ttl 120s");
        assert!(p.check().is_ok());
        let bad = ResponsePolicy {
            default_ttl: Duration::from_secs(500),
            ..p
        };
        assert!(bad.check().is_err());
    }
}
