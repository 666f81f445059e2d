//! The `[notify]` section of `mamori serve`'s configuration, and its validation.
//!
//! Parsing (serde, `deny_unknown_fields`) only checks shapes; [`validate`] checks meaning
//! (references between contacts, channels and escalation steps, times, offsets, addresses) and
//! reports every problem at once, each naming its key relative to the section (e.g.
//! `contacts[1].quiet_hours.start`). Secrets are read from files or the environment only when a
//! [`crate::Notifier`] is built.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use chrono::FixedOffset;
use mamori_event::Level;
use serde::Deserialize;

/// A secret string (SMTP password, webhook key, webhook URL with its token). Its `Debug` and
/// `Display` never show the value; only [`Secret::expose`] does.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Serialised as `"<redacted>"`: a configuration printed or dumped never carries the value.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The whole `[notify]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Named delivery channels; contacts refer to them by name.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
    #[serde(default)]
    pub contacts: Vec<ContactConfig>,
    /// Who is notified next when an incident stays unacknowledged.
    #[serde(default)]
    pub escalation: Vec<EscalationStep>,
}

/// One channel, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChannelConfig {
    Smtp(SmtpConfig),
    Slack(SlackConfig),
    Teams(TeamsConfig),
    Webhook(WebhookConfig),
    Syslog(SyslogConfig),
}

impl ChannelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Smtp(_) => "smtp",
            ChannelConfig::Slack(_) => "slack",
            ChannelConfig::Teams(_) => "teams",
            ChannelConfig::Webhook(_) => "webhook",
            ChannelConfig::Syslog(_) => "syslog",
        }
    }
}

fn default_timeout_secs() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (default port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "SMTPS" (default port 465).
    Tls,
    /// No encryption at all (default port 25). Only for a relay on the same host or network.
    None,
}

/// Mail through an SMTP server. The recipient is each contact's `email`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults by `security`: 587, 465 or 25.
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// The password inline; prefer `password_file` or `password_env`.
    pub password: Option<Secret>,
    /// A file whose content (trailing newline removed) is the password.
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// `Mamori <mamori@example.jp>` or a bare address.
    pub from: String,
    /// Extra trusted root certificate(s), PEM, for a server behind a private CA.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// A Slack incoming webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The URL carries its own token, so it is a secret.
    pub webhook_url: Secret,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// A Microsoft Teams incoming webhook (Workflows "when a webhook request is received").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    pub webhook_url: Secret,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// A generic JSON webhook signed with HMAC-SHA256. Exactly one of `secret`, `secret_file`,
/// `secret_env` is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    #[default]
    Udp,
    /// One message per line (non-transparent framing, RFC 6587 §3.4.2).
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// ArcSight CEF as the message of an RFC 5424 line.
    #[default]
    Cef,
    /// RFC 5424 with structured data `[mamori@32473 ...]` and an English text message.
    Rfc5424,
}

/// A syslog collector / SIEM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` (`[::1]:514` for IPv6).
    pub address: String,
    #[serde(default)]
    pub protocol: SyslogProtocol,
    #[serde(default)]
    pub format: SyslogFormat,
    /// HOSTNAME of the syslog header; `-` when absent.
    pub hostname: Option<String>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// Which language(s) a contact reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Ja,
    En,
    /// Japanese first, then English, in one message.
    #[default]
    Both,
}

impl Language {
    pub(crate) fn has_ja(self) -> bool {
        matches!(self, Language::Ja | Language::Both)
    }

    pub(crate) fn has_en(self) -> bool {
        matches!(self, Language::En | Language::Both)
    }

    pub(crate) fn union(self, other: Language) -> Language {
        if self == other {
            self
        } else {
            Language::Both
        }
    }
}

/// A person or team that receives notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactConfig {
    pub name: String,
    /// Required when one of `channels` is an `smtp` channel.
    pub email: Option<String>,
    #[serde(default)]
    pub language: Language,
    /// Names from `[notify.channels]`.
    pub channels: Vec<String>,
    /// Incidents below this severity are not sent to this contact.
    #[serde(default = "default_min_severity")]
    pub min_severity: Level,
    pub quiet_hours: Option<QuietHoursConfig>,
    /// 0 (default): notified as soon as an incident is notified. N > 0: reached only through an
    /// `[[notify.escalation]]` step; steps must escalate in this order (tier 1 before tier 2).
    #[serde(default)]
    pub escalation_order: u32,
    /// Receives the monthly security audit by e-mail (through its SMTP channels), in its
    /// language (`both`: one message with the Japanese and the English report attached).
    #[serde(default)]
    pub monthly_report: bool,
}

fn default_min_severity() -> Level {
    Level::Informational
}

/// Hours in which only critical incidents are sent; the rest is held until `end`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursConfig {
    /// `HH:MM`, local to `utc_offset`.
    pub start: String,
    /// `HH:MM`; before `start` means the window crosses midnight.
    pub end: String,
    /// `+09:00`, `-05:00`, `Z`.
    pub utc_offset: String,
}

/// If an incident is still unacknowledged `after_minutes` after it was first notified,
/// notify contact `to`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    pub after_minutes: u32,
    pub to: String,
}

/// One problem in the configuration, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Path relative to the `[notify]` section, e.g. `channels.mail.port`.
    pub key: String,
    pub message: String,
}

/// Every problem found, in key order of discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Quiet hours, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after local midnight.
    pub start: u16,
    pub end: u16,
    pub offset: FixedOffset,
}

/// A contact after validation.
#[derive(Debug, Clone)]
pub(crate) struct Contact {
    pub(crate) name: String,
    pub(crate) email: Option<lettre::message::Mailbox>,
    pub(crate) language: Language,
    pub(crate) channels: Vec<String>,
    pub(crate) min_severity: Level,
    pub(crate) quiet_hours: Option<QuietHours>,
    pub(crate) escalation_order: u32,
    pub(crate) monthly_report: bool,
}

/// Contacts and escalation steps after validation (no I/O, no secrets).
#[derive(Debug, Clone)]
pub(crate) struct Validated {
    pub(crate) contacts: Vec<Contact>,
    pub(crate) steps: Vec<(u32, usize)>,
}

pub(crate) struct Errors(pub(crate) Vec<ConfigError>);

impl Errors {
    pub(crate) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }
}

/// `HH:MM` → minutes after midnight.
pub(crate) fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// `+09:00` / `-05:30` / `Z` → offset.
pub(crate) fn parse_offset(s: &str) -> Option<FixedOffset> {
    if s == "Z" || s == "z" {
        return FixedOffset::east_opt(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let minutes = parse_hhmm(&s[1..])?;
    FixedOffset::east_opt(sign * i32::from(minutes) * 60)
}

/// `host:port` with a non-zero port.
pub(crate) fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

pub(crate) fn valid_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/') && !s.contains(char::is_whitespace))
}

/// Validates contacts and escalation (everything but channel settings).
pub(crate) fn validate(config: &NotifyConfig, errors: &mut Errors) -> Validated {
    let mut contacts = Vec::with_capacity(config.contacts.len());
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, c) in config.contacts.iter().enumerate() {
        let key = format!("contacts[{i}]");
        if c.name.trim().is_empty() {
            errors.push(format!("{key}.name"), "must not be empty");
        } else if by_name.insert(c.name.as_str(), i).is_some() {
            errors.push(
                format!("{key}.name"),
                format!("duplicate contact name {:?}", c.name),
            );
        }
        let email = match &c.email {
            Some(e) => match e.parse::<lettre::message::Mailbox>() {
                Ok(m) => Some(m),
                Err(err) => {
                    errors.push(format!("{key}.email"), format!("not a mail address: {err}"));
                    None
                }
            },
            None => None,
        };
        if c.channels.is_empty() {
            errors.push(format!("{key}.channels"), "lists no channel");
        }
        for (j, ch) in c.channels.iter().enumerate() {
            match config.channels.get(ch) {
                None => errors.push(
                    format!("{key}.channels[{j}]"),
                    format!("no channel named {ch:?} in [notify.channels]"),
                ),
                Some(ChannelConfig::Smtp(_)) if c.email.is_none() => errors.push(
                    format!("{key}.email"),
                    format!("required: channel {ch:?} sends mail"),
                ),
                Some(_) => {}
            }
        }
        let quiet_hours = c.quiet_hours.as_ref().and_then(|q| {
            let start = parse_hhmm(&q.start);
            let end = parse_hhmm(&q.end);
            let offset = parse_offset(&q.utc_offset);
            if start.is_none() {
                errors.push(
                    format!("{key}.quiet_hours.start"),
                    format!("{:?} is not HH:MM", q.start),
                );
            }
            if end.is_none() {
                errors.push(
                    format!("{key}.quiet_hours.end"),
                    format!("{:?} is not HH:MM", q.end),
                );
            }
            if offset.is_none() {
                errors.push(
                    format!("{key}.quiet_hours.utc_offset"),
                    format!("{:?} is not an offset like +09:00", q.utc_offset),
                );
            }
            let (start, end, offset) = (start?, end?, offset?);
            if start == end {
                errors.push(
                    format!("{key}.quiet_hours.end"),
                    "equals start: the window would be empty",
                );
                return None;
            }
            Some(QuietHours { start, end, offset })
        });
        contacts.push(Contact {
            name: c.name.clone(),
            email,
            language: c.language,
            channels: c.channels.clone(),
            min_severity: c.min_severity,
            quiet_hours,
            escalation_order: c.escalation_order,
            monthly_report: c.monthly_report,
        });
    }

    let mut steps = Vec::with_capacity(config.escalation.len());
    for (i, s) in config.escalation.iter().enumerate() {
        let key = format!("escalation[{i}]");
        if s.after_minutes == 0 {
            errors.push(format!("{key}.after_minutes"), "must be at least 1");
        }
        match by_name.get(s.to.as_str()) {
            None => errors.push(format!("{key}.to"), format!("no contact named {:?}", s.to)),
            Some(&ci) => {
                if config.contacts[ci].escalation_order == 0 {
                    errors.push(
                        format!("{key}.to"),
                        format!(
                            "contact {:?} has escalation_order 0 (notified at once); give it 1 or more",
                            s.to
                        ),
                    );
                } else {
                    steps.push((s.after_minutes, ci));
                }
            }
        }
    }
    // Steps must escalate in tier order: a higher tier never before a lower one.
    for (i, a) in steps.iter().enumerate() {
        for b in &steps[i + 1..] {
            let (ta, tb) = (
                contacts[a.1].escalation_order,
                contacts[b.1].escalation_order,
            );
            if (ta < tb && a.0 > b.0) || (tb < ta && b.0 > a.0) {
                errors.push(
                    "escalation",
                    format!(
                        "contact {:?} (escalation_order {}) is reached after {} min, later than {:?} (escalation_order {}) at {} min",
                        contacts[a.1].name, ta, a.0, contacts[b.1].name, tb, b.0
                    ),
                );
            }
        }
    }
    for (i, c) in contacts.iter().enumerate() {
        if c.escalation_order > 0 && !steps.iter().any(|s| s.1 == i) {
            errors.push(
                format!("contacts[{i}].escalation_order"),
                format!(
                    "contact {:?} is never reached: no [[notify.escalation]] step has to = {:?}",
                    c.name, c.name
                ),
            );
        }
    }
    Validated { contacts, steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hhmm_and_offsets() {
        assert_eq!(parse_hhmm("22:00"), Some(1320));
        assert_eq!(parse_hhmm("07:05"), Some(425));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_hhmm("7:00"), None);
        assert_eq!(parse_hhmm("07:60"), None);
        assert_eq!(
            parse_offset("+09:00").map(|o| o.local_minus_utc()),
            Some(9 * 3600)
        );
        assert_eq!(
            parse_offset("-05:30").map(|o| o.local_minus_utc()),
            Some(-(5 * 3600 + 1800))
        );
        assert_eq!(parse_offset("Z").map(|o| o.local_minus_utc()), Some(0));
        assert_eq!(parse_offset("09:00"), None);
    }

    #[test]
    fn host_port_and_urls() {
        assert!(valid_host_port("127.0.0.1:514"));
        assert!(valid_host_port("[::1]:514"));
        assert!(valid_host_port("siem.example.jp:6514"));
        assert!(!valid_host_port("siem.example.jp"));
        assert!(!valid_host_port("siem:0"));
        assert!(!valid_host_port(":514"));
        assert!(valid_http_url("https://hooks.slack.com/services/T/B/x"));
        assert!(!valid_http_url("ftp://x"));
        assert!(!valid_http_url("https:///x"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
