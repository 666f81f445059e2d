//! Slack, Teams and signed generic webhooks over HTTP(S) (ureq, rustls with ring).
//!
//! # Verifying a Mamori webhook
//!
//! Each request carries `X-Mamori-Timestamp: <unix seconds>` and
//! `X-Mamori-Signature: sha256=<hex>`, where `<hex>` is the lowercase hex HMAC-SHA256, keyed
//! with the configured secret, of the bytes `<timestamp>.<raw body>`. A receiver:
//!
//! 1. reads the raw body bytes (before any JSON parsing);
//! 2. rejects the request if the timestamp is more than 5 minutes from its clock (replay);
//! 3. computes `HMAC-SHA256(secret, timestamp + "." + body)` and compares it with the hex after
//!    `sha256=` in constant time.
//!
//! In a shell: `printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET"`.
//! In Python: `hmac.compare_digest(hmac.new(key, f"{ts}.".encode() + body, "sha256").hexdigest(), sig)`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::config::{Language, Secret};
use crate::message::{self, Notification, Style};
use crate::Target;

/// The header with the signing time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Mamori-Timestamp";
/// The header with `sha256=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "X-Mamori-Signature";

/// `sha256=<hex>` of `HMAC-SHA256(secret, "<timestamp>.<body>")`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header the way a receiver should (constant-time comparison).
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The generic webhook body: the notification's fields as data, plus the rendered text.
pub(crate) fn webhook_body(n: &Notification, target: &Target) -> Value {
    let mut text = serde_json::Map::new();
    if target.language.has_ja() {
        text.insert(
            "ja".into(),
            Value::String(message::body(n, Language::Ja, target.offset, Style::Plain)),
        );
    }
    if target.language.has_en() {
        text.insert(
            "en".into(),
            Value::String(message::body(n, Language::En, target.offset, Style::Plain)),
        );
    }
    json!({
        "version": 1,
        "incident_id": n.incident_id,
        "title": n.title,
        "title_ja": n.title_ja,
        "severity": n.severity,
        "phase": n.phase.code,
        "kind": n.kind.code,
        "reason": n.reason,
        "summary": n.summary,
        "entities": n.entities.iter().map(|(k, v)| json!({"field": k, "value": v})).collect::<Vec<_>>(),
        "url": n.url,
        "time": n.time.to_rfc3339(),
        "text": text,
    })
}

/// Slack incoming webhook: `{"text": mrkdwn}` with log text escaped.
pub(crate) fn slack_body(n: &Notification, target: &Target) -> Value {
    json!({ "text": message::body(n, target.language, target.offset, Style::Slack) })
}

/// Teams: an Adaptive Card message, the format of Teams' Workflows webhooks (the Office 365
/// connectors that took MessageCards are being retired).
///
/// Log text is never put where Teams interprets markup: only `TextRun`s of a `RichTextBlock`
/// carry it, and a `TextRun` is plain text by the Adaptive Card schema (no Markdown, no HTML),
/// so there is nothing to escape there and escaping would show `&amp;` to the reader. The
/// heading `TextBlock` (which does render Markdown) holds only our own words.
pub(crate) fn teams_body(n: &Notification, target: &Target) -> Value {
    let text = message::body(n, target.language, target.offset, Style::Plain);
    let paragraphs: Vec<Value> = text
        .lines()
        .map(|line| {
            json!({
                "type": "RichTextBlock",
                "spacing": "None",
                "inlines": [{ "type": "TextRun", "text": if line.is_empty() { " " } else { line } }]
            })
        })
        .collect();
    let color = match n.severity {
        mamori_event::Level::Critical | mamori_event::Level::High => "Attention",
        mamori_event::Level::Medium => "Warning",
        _ => "Default",
    };
    let mut card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "msteams": { "width": "Full" },
        "body": [
            {
                "type": "TextBlock",
                "text": message::heading(n, target.language),
                "weight": "Bolder",
                "size": "Medium",
                "color": color,
                "wrap": true
            },
            { "type": "Container", "items": paragraphs }
        ]
    });
    if let Some(url) = &n.url {
        card["actions"] = json!([{ "type": "Action.OpenUrl", "title": "Mamori", "url": url }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card
        }]
    })
}

/// POSTs JSON; any non-2xx status, redirect included, is a failure. `hide` is removed from
/// error text (a Slack/Teams URL is itself a credential).
pub(crate) fn post_json(
    url: &str,
    body: &[u8],
    headers: &[(&str, String)],
    timeout: Duration,
    hide: Option<&Secret>,
) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("mamori-notify")
        .build()
        .into();
    let mut req = agent.post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let redact = |s: String| match hide {
        Some(secret) if !secret.expose().is_empty() => s.replace(secret.expose(), "<redacted url>"),
        _ => s,
    };
    match req.send(body) {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP status {}", status.as_u16()))
            }
        }
        Err(ureq::Error::Timeout(_)) => Err(format!("timed out after {} ms", timeout.as_millis())),
        Err(e) => Err(redact(e.to_string())),
    }
}

/// POSTs a JSON body to `url`, signed like a webhook notification (the two `X-Mamori-*`
/// headers) when `secret` is given. The URL is a credential: it never appears in the error.
pub fn post_signed(
    url: &Secret,
    secret: Option<&Secret>,
    body: &[u8],
    timeout: Duration,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let mut headers = Vec::new();
    if let Some(secret) = secret {
        let ts = now.timestamp();
        headers.push((TIMESTAMP_HEADER, ts.to_string()));
        headers.push((SIGNATURE_HEADER, sign(secret.expose().as_bytes(), ts, body)));
    }
    post_json(url.expose(), body, &headers, timeout, Some(url))
}

pub(crate) fn send_webhook(
    url: &str,
    secret: &Secret,
    timeout: Duration,
    n: &Notification,
    target: &Target,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let body = serde_json::to_vec(&webhook_body(n, target)).map_err(|e| e.to_string())?;
    let ts = now.timestamp();
    let sig = sign(secret.expose().as_bytes(), ts, &body);
    post_json(
        url,
        &body,
        &[(TIMESTAMP_HEADER, ts.to_string()), (SIGNATURE_HEADER, sig)],
        timeout,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_implementation() {
        // python3: hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        assert_eq!(
            sign(b"k", 1_700_000_000, b"{\"a\":1}"),
            "sha256=1b6ad1bc9bf48c52ce01939866d5877c6cc4e87ddad27e16673cb8c4964394a3"
        );
        let sig = sign(b"k", 1_700_000_000, b"{\"a\":1}");
        assert!(verify(b"k", "1700000000", b"{\"a\":1}", &sig));
        assert!(!verify(b"k2", "1700000000", b"{\"a\":1}", &sig));
        assert!(!verify(b"k", "1700000001", b"{\"a\":1}", &sig));
        assert!(!verify(b"k", "1700000000", b"{\"a\":2}", &sig));
        assert!(!verify(
            b"k",
            "1700000000",
            b"{\"a\":1}",
            sig.trim_start_matches("sha256=")
        ));
    }
}
