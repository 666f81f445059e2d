//! Notifications of incidents: mail (SMTP), Slack, Teams, signed JSON webhooks and syslog/CEF,
//! to contacts with a language, a minimum severity, quiet hours and an escalation tier.
//!
//! # The key design decision: decide purely, deliver blocking, report everything as values
//!
//! *Whom* to tell and *when* is decided by pure code with the time passed in
//! ([`Notifier::plan`], [`Escalator::due`], [`QuietHours::ends_after`]); it keeps no state,
//! so the server stores what was sent (incident `notified_at`, escalation `steps_done`) next to
//! the incident and a restart loses nothing. *Delivery* is a plain blocking call
//! ([`Notifier::notify`]) that the server runs on a blocking thread: every channel has its own
//! timeout, channels are delivered in parallel on scoped threads, and every outcome — success,
//! refusal, timeout — comes back as a [`Delivery`] value. Nothing here panics on a failure or
//! retries on its own; the caller sees each result and decides.
//!
//! Two smaller decisions follow from "log content is attacker-controlled": every text field of a
//! [`Notification`] is escaped for its target at the last moment (Slack mrkdwn, mail headers,
//! CEF header and extension rules, RFC 5424 structured data; Teams gets log text only in
//! plain-text `TextRun`s), and secrets are a [`Secret`] newtype whose `Debug` is redacted, also
//! removed from error texts.
//!
//! Shared channels (Slack, Teams, webhook, syslog) are delivered once per notification even when
//! several contacts list them, in the union of those contacts' languages; mail goes to each
//! contact.
//!
//! Webhook signatures and how to verify them: see [`http`].
//!
//! # Configuration (the `[notify]` section of `mamori serve`)
//!
//! ```toml
//! [notify.channels.mail]
//! type = "smtp"
//! host = "smtp.example.jp"
//! port = 587                      # default by security: 587 / 465 / 25
//! security = "starttls"           # starttls (default) | tls | none
//! username = "mamori"
//! password_env = "MAMORI_SMTP_PASSWORD"   # or password_file = "...", or password = "..."
//! from = "Mamori <mamori@example.jp>"
//! # ca_file = "/etc/mamori/private-ca.pem"
//! timeout_secs = 10               # every channel has one; default 10, 1..=300
//!
//! [notify.channels.slack]
//! type = "slack"
//! webhook_url = "https://hooks.slack.com/services/T000/B000/XXXX"
//!
//! [notify.channels.teams]
//! type = "teams"
//! webhook_url = "https://example.webhook.office.com/workflows/..."
//!
//! [notify.channels.soar]
//! type = "webhook"
//! url = "https://soar.example.jp/hooks/mamori"
//! secret_file = "/etc/mamori/webhook.key"  # or secret = "...", or secret_env = "..."
//!
//! [notify.channels.siem]
//! type = "syslog"
//! address = "siem.example.jp:514"
//! protocol = "udp"                # udp (default) | tcp
//! format = "cef"                  # cef (default) | rfc5424
//!
//! [[notify.contacts]]
//! name = "soc"
//! email = "soc@example.jp"
//! language = "both"               # ja | en | both (default)
//! channels = ["mail", "slack", "siem", "soar"]
//! min_severity = "low"            # default informational
//! quiet_hours = { start = "22:00", end = "07:00", utc_offset = "+09:00" }
//!
//! [[notify.contacts]]
//! name = "lead"
//! email = "lead@example.jp"
//! language = "ja"
//! channels = ["mail", "teams"]
//! min_severity = "medium"
//! escalation_order = 1            # 0 (default) = notified at once; N > 0 = only by escalation
//!
//! [[notify.escalation]]
//! after_minutes = 15
//! to = "lead"
//! ```

mod config;
pub mod escape;
pub mod http;
mod message;
mod schedule;
mod smtp;
mod syslog;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use lettre::message::Mailbox;
use lettre::transport::smtp::client::Certificate;
use serde::{Deserialize, Serialize};

pub use config::{
    ChannelConfig, ConfigError, ConfigErrors, ContactConfig, EscalationStep, Language,
    NotifyConfig, QuietHours, QuietHoursConfig, Secret, SlackConfig, SmtpConfig, SmtpSecurity,
    SyslogConfig, SyslogFormat, SyslogProtocol, TeamsConfig, WebhookConfig,
};
pub use message::{Label, Notification, Reason};
pub use schedule::{Decision, EscalationAction, Escalator, IncidentStatus};
pub use syslog::{cef, cef_severity};

use config::Errors;
pub use smtp::Attachment;
use smtp::SmtpChannel;
use syslog::SyslogChannel;

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The contact it was for. A shared channel (Slack, Teams, webhook, syslog) listed by
    /// several contacts is sent once; this names the first of them in config order.
    pub contact: String,
    /// The channel's name in `[notify.channels]`.
    pub channel: String,
    pub ok: bool,
    /// Why it failed; never contains a secret.
    pub error: Option<String>,
    /// The `now` the notification was sent at.
    pub at: DateTime<Utc>,
}

/// One first-line contact and what [`Notifier::notify`] does for it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    pub contact: String,
    pub decision: Decision,
}

/// Who a message is rendered for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) language: Language,
    /// Times are shown in the contact's quiet-hours offset, UTC otherwise.
    pub(crate) offset: FixedOffset,
    pub(crate) email: Option<Mailbox>,
}

#[derive(Debug, Clone)]
enum Channel {
    Smtp(SmtpChannel),
    Slack {
        url: Secret,
        timeout: Duration,
    },
    Teams {
        url: Secret,
        timeout: Duration,
    },
    Webhook {
        url: String,
        secret: Secret,
        timeout: Duration,
    },
    Syslog(SyslogChannel),
}

impl Channel {
    fn is_shared(&self) -> bool {
        !matches!(self, Channel::Smtp(_))
    }

    fn send(&self, n: &Notification, target: &Target, now: DateTime<Utc>) -> Result<(), String> {
        match self {
            Channel::Smtp(s) => s.send(n, target),
            Channel::Slack { url, timeout } => {
                let body =
                    serde_json::to_vec(&http::slack_body(n, target)).map_err(|e| e.to_string())?;
                http::post_json(url.expose(), &body, &[], *timeout, Some(url))
            }
            Channel::Teams { url, timeout } => {
                let body =
                    serde_json::to_vec(&http::teams_body(n, target)).map_err(|e| e.to_string())?;
                http::post_json(url.expose(), &body, &[], *timeout, Some(url))
            }
            Channel::Webhook {
                url,
                secret,
                timeout,
            } => http::send_webhook(url, secret, *timeout, n, target, now),
            Channel::Syslog(s) => s.send(n, now),
        }
    }
}

/// Delivers notifications. Built once from the configuration (secrets are read then), shared
/// by reference; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Notifier {
    channels: BTreeMap<String, Channel>,
    escalator: Escalator,
}

fn read_secret(
    key: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
    env: Option<&str>,
    errors: &mut Errors,
) -> Option<Secret> {
    let given =
        usize::from(inline.is_some()) + usize::from(file.is_some()) + usize::from(env.is_some());
    if given == 0 {
        errors.push(
            key,
            format!("required: one of {key}, {key}_file, {key}_env"),
        );
        return None;
    }
    if given > 1 {
        errors.push(
            key,
            format!("give only one of {key}, {key}_file, {key}_env"),
        );
        return None;
    }
    let value = if let Some(s) = inline {
        s.clone()
    } else if let Some(path) = file {
        match std::fs::read_to_string(path) {
            Ok(s) => Secret::new(s.trim_end_matches(['\r', '\n'])),
            Err(e) => {
                errors.push(
                    format!("{key}_file"),
                    format!("reading {}: {e}", path.display()),
                );
                return None;
            }
        }
    } else {
        let var = env.unwrap_or_default();
        match std::env::var(var) {
            Ok(s) => Secret::new(s),
            Err(_) => {
                errors.push(
                    format!("{key}_env"),
                    format!("environment variable {var:?} is not set"),
                );
                return None;
            }
        }
    };
    if value.expose().is_empty() {
        errors.push(key, "is empty");
        return None;
    }
    Some(value)
}

fn timeout(key: &str, secs: u64, errors: &mut Errors) -> Duration {
    if secs == 0 || secs > 300 {
        errors.push(format!("{key}.timeout_secs"), "must be between 1 and 300");
    }
    Duration::from_secs(secs)
}

fn build_channel(key: &str, cfg: &ChannelConfig, errors: &mut Errors) -> Option<Channel> {
    let before = errors.0.len();
    let channel = match cfg {
        ChannelConfig::Smtp(c) => {
            let timeout = timeout(key, c.timeout_secs, errors);
            if c.host.trim().is_empty() || c.host.contains(char::is_whitespace) {
                errors.push(format!("{key}.host"), "must be a host name or address");
            }
            if c.port == Some(0) {
                errors.push(format!("{key}.port"), "must not be 0");
            }
            let port = c.port.unwrap_or(match c.security {
                SmtpSecurity::Starttls => 587,
                SmtpSecurity::Tls => 465,
                SmtpSecurity::None => 25,
            });
            let from = match c.from.parse::<Mailbox>() {
                Ok(m) => Some(m),
                Err(e) => {
                    errors.push(format!("{key}.from"), format!("not a mail address: {e}"));
                    None
                }
            };
            let has_password =
                c.password.is_some() || c.password_file.is_some() || c.password_env.is_some();
            let credentials = match &c.username {
                Some(user) => read_secret(
                    &format!("{key}.password"),
                    c.password.as_ref(),
                    c.password_file.as_deref(),
                    c.password_env.as_deref(),
                    errors,
                )
                .map(|p| (user.clone(), p)),
                None if has_password => {
                    errors.push(
                        format!("{key}.username"),
                        "required when a password is given",
                    );
                    None
                }
                None => None,
            };
            if c.security == SmtpSecurity::None && c.ca_file.is_some() {
                errors.push(format!("{key}.ca_file"), "security = \"none\" uses no TLS");
            }
            let roots = match &c.ca_file {
                None => None,
                Some(path) => match std::fs::read(path) {
                    Ok(pem)
                        if String::from_utf8_lossy(&pem)
                            .contains("-----BEGIN CERTIFICATE-----") =>
                    {
                        match Certificate::from_pem(&pem) {
                            Ok(cert) => Some(cert),
                            Err(e) => {
                                errors.push(
                                    format!("{key}.ca_file"),
                                    format!("{}: {e}", path.display()),
                                );
                                None
                            }
                        }
                    }
                    Ok(_) => {
                        errors.push(
                            format!("{key}.ca_file"),
                            format!("{}: no PEM certificate", path.display()),
                        );
                        None
                    }
                    Err(e) => {
                        errors.push(
                            format!("{key}.ca_file"),
                            format!("reading {}: {e}", path.display()),
                        );
                        None
                    }
                },
            };
            Channel::Smtp(SmtpChannel {
                host: c.host.clone(),
                port,
                security: c.security,
                credentials,
                from: from?,
                roots,
                timeout,
            })
        }
        ChannelConfig::Slack(c) => {
            if !config::valid_http_url(c.webhook_url.expose()) {
                errors.push(format!("{key}.webhook_url"), "must be an http(s) URL");
            }
            Channel::Slack {
                url: c.webhook_url.clone(),
                timeout: timeout(key, c.timeout_secs, errors),
            }
        }
        ChannelConfig::Teams(c) => {
            if !config::valid_http_url(c.webhook_url.expose()) {
                errors.push(format!("{key}.webhook_url"), "must be an http(s) URL");
            }
            Channel::Teams {
                url: c.webhook_url.clone(),
                timeout: timeout(key, c.timeout_secs, errors),
            }
        }
        ChannelConfig::Webhook(c) => {
            if !config::valid_http_url(&c.url) {
                errors.push(
                    format!("{key}.url"),
                    format!("{:?} is not an http(s) URL", c.url),
                );
            }
            let timeout = timeout(key, c.timeout_secs, errors);
            let secret = read_secret(
                &format!("{key}.secret"),
                c.secret.as_ref(),
                c.secret_file.as_deref(),
                c.secret_env.as_deref(),
                errors,
            );
            Channel::Webhook {
                url: c.url.clone(),
                secret: secret?,
                timeout,
            }
        }
        ChannelConfig::Syslog(c) => {
            if !config::valid_host_port(&c.address) {
                errors.push(
                    format!("{key}.address"),
                    format!("{:?} is not host:port", c.address),
                );
            }
            let hostname = match &c.hostname {
                None => "-".to_owned(),
                Some(h)
                    if !h.is_empty()
                        && h.len() <= 255
                        && h.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    h.clone()
                }
                Some(_) => {
                    errors.push(
                        format!("{key}.hostname"),
                        "must be 1-255 printable ASCII characters, no spaces",
                    );
                    "-".to_owned()
                }
            };
            Channel::Syslog(SyslogChannel {
                address: c.address.clone(),
                protocol: c.protocol,
                format: c.format,
                hostname,
                timeout: timeout(key, c.timeout_secs, errors),
            })
        }
    };
    (errors.0.len() == before).then_some(channel)
}

impl Notifier {
    /// Validates the whole section, reads secrets from their files / environment variables,
    /// and returns every problem found, each naming its key.
    pub fn new(config: &NotifyConfig) -> Result<Notifier, ConfigErrors> {
        let mut errors = Errors(Vec::new());
        let mut channels = BTreeMap::new();
        for (name, cfg) in &config.channels {
            let key = format!("channels.{name}");
            if let Some(ch) = build_channel(&key, cfg, &mut errors) {
                channels.insert(name.clone(), ch);
            }
        }
        let validated = config::validate(config, &mut errors);
        if !errors.0.is_empty() {
            return Err(ConfigErrors(errors.0));
        }
        Ok(Notifier {
            channels,
            escalator: Escalator::from_validated(validated),
        })
    }

    /// The escalation schedule of the same configuration.
    pub fn escalator(&self) -> &Escalator {
        &self.escalator
    }

    /// What [`Notifier::notify`] does for each first-line contact (`escalation_order = 0`) now:
    /// send, hold until the end of quiet hours, or skip as below the contact's minimum.
    pub fn plan(&self, n: &Notification, now: DateTime<Utc>) -> Vec<Planned> {
        self.escalator
            .contacts()
            .iter()
            .filter(|c| c.escalation_order == 0)
            .map(|c| Planned {
                contact: c.name.clone(),
                decision: schedule::decide(c, n.severity, now),
            })
            .collect()
    }

    /// Sends `n` to every first-line contact whose [`Notifier::plan`] decision is `Send`.
    /// Held contacts are not sent to: call [`Notifier::plan`] to learn until when, and
    /// [`Notifier::notify_contact`] then. Blocks until every channel has answered or timed out.
    pub fn notify(&self, n: &Notification, now: DateTime<Utc>) -> Vec<Delivery> {
        let names: Vec<&str> = self
            .plan(n, now)
            .iter()
            .filter(|p| p.decision == Decision::Send)
            .filter_map(|p| self.contact_index(&p.contact))
            .map(|i| self.escalator.contacts()[i].name.as_str())
            .collect();
        self.deliver(n, &names, now)
    }

    /// Sends `n` to one contact now, whatever its tier, minimum severity or quiet hours (the
    /// caller has decided: an [`EscalationAction`] or the end of a hold). An unknown name gives
    /// one failed [`Delivery`].
    pub fn notify_contact(
        &self,
        n: &Notification,
        contact: &str,
        now: DateTime<Utc>,
    ) -> Vec<Delivery> {
        if self.contact_index(contact).is_none() {
            return vec![Delivery {
                contact: contact.to_owned(),
                channel: String::new(),
                ok: false,
                error: Some("no such contact".to_owned()),
                at: now,
            }];
        }
        self.deliver(n, &[contact], now)
    }

    /// Mails a report to every contact with `monthly_report = true`, through each of its SMTP
    /// channels: `files(language)` gives the attachments for the contact's language (`ja`,
    /// `en`; both for `both`). Other channel kinds are skipped (a report is a file).
    pub fn send_report(
        &self,
        subject: &str,
        body: &str,
        files: &[(&str, Attachment)],
        now: DateTime<Utc>,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        for c in self
            .escalator
            .contacts()
            .iter()
            .filter(|c| c.monthly_report)
        {
            let wanted: Vec<&Attachment> = files
                .iter()
                .filter(|(lang, _)| match *lang {
                    "ja" => c.language.has_ja(),
                    _ => c.language != config::Language::Ja,
                })
                .map(|(_, a)| a)
                .collect();
            for ch in &c.channels {
                let Some(Channel::Smtp(smtp)) = self.channels.get(ch) else {
                    continue;
                };
                let r = match &c.email {
                    None => Err("the contact has no email".to_owned()),
                    Some(to) => {
                        smtp::build_with_attachments(&smtp.from, to, subject, body, &wanted)
                            .and_then(|m| smtp.send_message(&m))
                    }
                };
                out.push(Delivery {
                    contact: c.name.clone(),
                    channel: ch.clone(),
                    ok: r.is_ok(),
                    error: r.err(),
                    at: now,
                });
            }
        }
        out
    }

    fn contact_index(&self, name: &str) -> Option<usize> {
        self.escalator
            .contacts()
            .iter()
            .position(|c| c.name == name)
    }

    fn deliver(&self, n: &Notification, contacts: &[&str], now: DateTime<Utc>) -> Vec<Delivery> {
        // (contact, channel name, target) in contact then channel order; shared channels once.
        let mut jobs: Vec<(String, String, Target)> = Vec::new();
        for name in contacts {
            let Some(i) = self.contact_index(name) else {
                continue;
            };
            let c = &self.escalator.contacts()[i];
            let offset = c
                .quiet_hours
                .map(|q| q.offset)
                .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
            for ch in &c.channels {
                let shared = self.channels.get(ch).is_some_and(Channel::is_shared);
                if shared {
                    if let Some(job) = jobs.iter_mut().find(|j| &j.1 == ch) {
                        job.2.language = job.2.language.union(c.language);
                        continue;
                    }
                }
                jobs.push((
                    c.name.clone(),
                    ch.clone(),
                    Target {
                        language: c.language,
                        offset,
                        email: c.email.clone(),
                    },
                ));
            }
        }
        let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(_, ch, target)| {
                    let channel = self.channels.get(ch);
                    scope.spawn(move || match channel {
                        Some(channel) => channel.send(n, target, now),
                        None => Err("no such channel".to_owned()),
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("delivery thread panicked".to_owned()))
                })
                .collect()
        });
        jobs.into_iter()
            .zip(results)
            .map(|((contact, channel, _), r)| Delivery {
                contact,
                channel,
                ok: r.is_ok(),
                error: r.err(),
                at: now,
            })
            .collect()
    }
}
