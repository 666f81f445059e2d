//! The configuration as an operator writes it: the documented example loads, mistakes are
//! reported with their keys, secrets never show in Debug output.

mod common;

use common::config;
use mamori_notify::{Decision, Notifier, NotifyConfig};

/// The example of the crate docs (`src/lib.rs`), as the section's content.
const EXAMPLE: &str = r#"
[channels.mail]
type = "smtp"
host = "smtp.example.jp"
port = 587
security = "starttls"
username = "mamori"
password_env = "MAMORI_TEST_SMTP_PASSWORD"
from = "Mamori <mamori@example.jp>"
timeout_secs = 10

[channels.slack]
type = "slack"
webhook_url = "https://hooks.slack.com/services/T000/B000/SLACKTOKEN"

[channels.teams]
type = "teams"
webhook_url = "https://example.webhook.office.com/workflows/TEAMSTOKEN"

[channels.soar]
type = "webhook"
url = "https://soar.example.jp/hooks/mamori"
secret = "WEBHOOKSECRET"

[channels.siem]
type = "syslog"
address = "siem.example.jp:514"
protocol = "udp"
format = "cef"

[[contacts]]
name = "soc"
email = "soc@example.jp"
language = "both"
channels = ["mail", "slack", "siem", "soar"]
min_severity = "low"
quiet_hours = { start = "22:00", end = "07:00", utc_offset = "+09:00" }

[[contacts]]
name = "lead"
email = "lead@example.jp"
language = "ja"
channels = ["mail", "teams"]
min_severity = "medium"
escalation_order = 1

[[escalation]]
after_minutes = 15
to = "lead"
"#;

#[test]
fn the_documented_example_loads() {
    std::env::set_var("MAMORI_TEST_SMTP_PASSWORD", "SMTPPASSWORD");
    let cfg: NotifyConfig = config(EXAMPLE);
    let n = Notifier::new(&cfg).unwrap_or_else(|e| panic!("{e}"));
    // Secrets are nowhere in Debug output, of the config or of the notifier.
    let debug = format!("{cfg:?}\n{n:?}");
    for secret in ["SLACKTOKEN", "TEAMSTOKEN", "WEBHOOKSECRET", "SMTPPASSWORD"] {
        assert!(!debug.contains(secret), "{secret} leaked in {debug}");
    }
    assert!(debug.contains("<redacted>"));
    // Only first-line contacts are in the plan.
    let plan = n.plan(&common::sample(), common::daytime());
    assert_eq!(plan.len(), 1);
    assert_eq!(
        (plan[0].contact.as_str(), plan[0].decision),
        ("soc", Decision::Send)
    );
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let text = EXAMPLE.replace("protocol = \"udp\"", "protocl = \"udp\"");
    let err = toml::from_str::<NotifyConfig>(&text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `protocl`"), "{err}");
    let text = EXAMPLE.replace("min_severity = \"low\"", "min_severity = \"urgent\"");
    let err = toml::from_str::<NotifyConfig>(&text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("urgent"), "{err}");
    let text = EXAMPLE.replace("type = \"teams\"", "type = \"msteams\"");
    let err = toml::from_str::<NotifyConfig>(&text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("msteams"), "{err}");
}

#[test]
fn channel_mistakes_name_their_keys() {
    let text = r#"
        [channels.mail]
        type = "smtp"
        host = "smtp example"
        port = 0
        username = "mamori"
        password = "a"
        password_file = "/nonexistent"
        from = "nobody"
        timeout_secs = 0

        [channels.hook]
        type = "webhook"
        url = "ftp://x"

        [channels.hook2]
        type = "webhook"
        url = "https://x.example/h"
        secret_file = "/nonexistent/secret"

        [channels.env]
        type = "webhook"
        url = "https://x.example/h"
        secret_env = "MAMORI_TEST_UNSET_VARIABLE_XYZ"

        [channels.siem]
        type = "syslog"
        address = "siem.example.jp"
        hostname = "two words"

        [channels.slack]
        type = "slack"
        webhook_url = "hooks.slack.com/x"

        [[contacts]]
        name = "x"
        channels = ["siem"]
    "#;
    let err = Notifier::new(&config(text)).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "channels.env.secret_env",
            "channels.hook.url",
            "channels.hook.secret",
            "channels.hook2.secret_file",
            "channels.mail.timeout_secs",
            "channels.mail.host",
            "channels.mail.port",
            "channels.mail.from",
            "channels.mail.password",
            "channels.siem.address",
            "channels.siem.hostname",
            "channels.slack.webhook_url",
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("channels.mail.password: give only one of"),
        "{text}"
    );
    assert!(text.contains("channels.hook.secret: required: one of channels.hook.secret, channels.hook.secret_file, channels.hook.secret_env"), "{text}");
}

#[test]
fn the_message_names_a_missing_email() {
    let text = r#"
        [channels.mail]
        type = "smtp"
        host = "127.0.0.1"
        from = "mamori@example.jp"

        [[contacts]]
        name = "x"
        channels = ["mail"]
    "#;
    let err = Notifier::new(&config(text)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "contacts[0].email: required: channel \"mail\" sends mail"
    );
}
