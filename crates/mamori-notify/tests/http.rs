//! Slack, Teams and signed webhooks against a real HTTP receiver on loopback.

mod common;

use std::time::{Duration, Instant};

use common::{closed_port, config, daytime, sample, silent_server, HttpReceiver};
use hmac::{Hmac, Mac};
use mamori_notify::{http, Decision, Notifier};
use sha2::Sha256;

fn notifier(text: &str) -> Notifier {
    Notifier::new(&config(text)).unwrap_or_else(|e| panic!("{e}"))
}

/// The receiver's side of the recipe documented in `mamori_notify::http`.
fn receiver_verifies(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(bytes) = hex::decode(hex_sig) else {
        return false;
    };
    mac.verify_slice(&bytes).is_ok()
}

#[test]
fn webhook_is_signed_json() {
    let rx = HttpReceiver::start(200);
    let n = notifier(&format!(
        r#"
        [channels.hook]
        type = "webhook"
        url = "{}"
        secret = "s3cret-key"

        [[contacts]]
        name = "soar"
        language = "both"
        channels = ["hook"]
        "#,
        rx.url("/mamori/hook")
    ));
    let now = daytime();
    let deliveries = n.notify(&sample(), now);
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert!(d.ok, "{d:?}");
    assert_eq!(
        (
            d.contact.as_str(),
            d.channel.as_str(),
            d.error.as_deref(),
            d.at
        ),
        ("soar", "hook", None, now)
    );

    let req = rx.next();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/mamori/hook");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let ts = req.header("x-mamori-timestamp").expect("timestamp header");
    assert_eq!(ts, now.timestamp().to_string());
    let sig = req.header("x-mamori-signature").expect("signature header");
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
    assert!(receiver_verifies(b"s3cret-key", ts, &req.body, sig));
    assert!(http::verify(b"s3cret-key", ts, &req.body, sig));
    assert!(!receiver_verifies(b"wrong-key", ts, &req.body, sig));
    assert!(!receiver_verifies(b"s3cret-key", "1", &req.body, sig));
    let mut tampered = req.body.clone();
    tampered.push(b' ');
    assert!(!receiver_verifies(b"s3cret-key", ts, &tampered, sig));

    let body = req.json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["incident_id"], "42");
    // Data is carried as is (JSON encoding is the escaping); only the text is rendered.
    assert_eq!(body["title"], "Brute force against vpn01 <!channel> a|b=c");
    assert_eq!(body["severity"], "high");
    assert_eq!(body["phase"], "containment");
    assert_eq!(body["kind"], "brute_force");
    assert_eq!(body["reason"], "opened");
    assert_eq!(
        body["entities"][0],
        serde_json::json!({"field": "user.name", "value": "alice"})
    );
    assert_eq!(body["url"], "https://mamori.example.jp/incidents/42");
    assert_eq!(body["time"], "2026-01-15T03:00:00+00:00");
    let ja = body["text"]["ja"].as_str().unwrap();
    let en = body["text"]["en"].as_str().unwrap();
    assert!(
        ja.starts_with("新しいインシデントを検知しました。\nBrute force against vpn01"),
        "{ja}"
    );
    assert!(
        en.starts_with("A new incident was detected.\nBrute force against vpn01"),
        "{en}"
    );
    rx.assert_no_more();
}

#[test]
fn slack_payload_escapes_log_text() {
    let rx = HttpReceiver::start(200);
    let n = notifier(&format!(
        r#"
        [channels.slack]
        type = "slack"
        webhook_url = "{}"

        [[contacts]]
        name = "soc"
        language = "ja"
        channels = ["slack"]
        "#,
        rx.url("/services/T000/B000/XXXX")
    ));
    let mut note = sample();
    note.entities.push((
        "comment".into(),
        "<https://evil.example|click here> & <@U0001>".into(),
    ));
    let d = n.notify(&note, daytime());
    assert!(d[0].ok, "{d:?}");
    let req = rx.next();
    assert_eq!(req.path, "/services/T000/B000/XXXX");
    let body = req.json();
    let obj = body.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["text"]);
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("新しいインシデントを検知しました。\n*Brute force against vpn01 &lt;!channel&gt; a|b=c*"), "{text}");
    assert!(
        text.contains("・comment: &lt;https://evil.example|click here&gt; &amp; &lt;@U0001&gt;"),
        "{text}"
    );
    assert!(
        text.contains("<https://mamori.example.jp/incidents/42|Mamori で詳細を見る>"),
        "{text}"
    );
    assert!(
        !text.contains("<!channel>")
            && !text.contains("<@U0001>")
            && !text.contains("<https://evil")
    );
    // Language "ja" only.
    assert!(!text.contains("A new incident"));
}

#[test]
fn teams_payload_is_an_adaptive_card_with_plain_text_runs() {
    let rx = HttpReceiver::start(202);
    let n = notifier(&format!(
        r#"
        [channels.teams]
        type = "teams"
        webhook_url = "{}"

        [[contacts]]
        name = "soc"
        language = "en"
        channels = ["teams"]
        "#,
        rx.url("/workflows/abc")
    ));
    let mut note = sample();
    note.title = "[click](https://evil.example) **x** <b>y</b>".into();
    let d = n.notify(&note, daytime());
    assert!(d[0].ok, "202 is a success: {d:?}");
    let body = rx.next().json();
    assert_eq!(body["type"], "message");
    let att = &body["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &att["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    // The heading (a Markdown TextBlock) holds only our words.
    assert_eq!(card["body"][0]["type"], "TextBlock");
    assert_eq!(card["body"][0]["text"], "[High] New incident");
    assert_eq!(card["body"][0]["color"], "Attention");
    // Log text only in TextRuns, verbatim.
    let items = card["body"][1]["items"].as_array().unwrap();
    let runs: Vec<&str> = items
        .iter()
        .map(|p| {
            assert_eq!(p["type"], "RichTextBlock");
            assert_eq!(p["inlines"][0]["type"], "TextRun");
            p["inlines"][0]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(runs[0], "A new incident was detected.");
    assert_eq!(runs[1], "[click](https://evil.example) **x** <b>y</b>");
    assert!(runs.contains(&"Phase: Containment"), "{runs:?}");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(
        card["actions"][0]["url"],
        "https://mamori.example.jp/incidents/42"
    );
}

#[test]
fn non_2xx_and_redirects_are_failures_without_leaking_the_url() {
    for status in [500, 404, 302] {
        let rx = HttpReceiver::start(status);
        let n = notifier(&format!(
            r#"
            [channels.slack]
            type = "slack"
            webhook_url = "{}"

            [[contacts]]
            name = "soc"
            channels = ["slack"]
            "#,
            rx.url("/services/T000/B000/SECRETTOKEN")
        ));
        let d = n.notify(&sample(), daytime());
        rx.next();
        assert!(!d[0].ok);
        let err = d[0].error.as_deref().unwrap();
        assert_eq!(err, format!("HTTP status {status}"));
    }
    // Connection refused: an error, and the token in the URL is not in it.
    let url = format!("http://{}/services/T000/B000/SECRETTOKEN", closed_port());
    let n = notifier(&format!(
        r#"
        [channels.slack]
        type = "slack"
        webhook_url = "{url}"

        [[contacts]]
        name = "soc"
        channels = ["slack"]
        "#
    ));
    let d = n.notify(&sample(), daytime());
    assert!(!d[0].ok);
    let err = d[0].error.as_deref().unwrap();
    assert!(!err.contains("SECRETTOKEN"), "{err}");
    assert!(!format!("{n:?}").contains("SECRETTOKEN"));
}

#[test]
fn a_server_that_never_answers_times_out_on_time() {
    let addr = silent_server();
    let n = notifier(&format!(
        r#"
        [channels.hook]
        type = "webhook"
        url = "http://{addr}/hook"
        secret = "k"
        timeout_secs = 1

        [channels.teams]
        type = "teams"
        webhook_url = "http://{addr}/teams"
        timeout_secs = 1

        [channels.slack]
        type = "slack"
        webhook_url = "http://{addr}/slack"
        timeout_secs = 1

        [[contacts]]
        name = "soc"
        channels = ["hook", "teams", "slack"]
        "#
    ));
    let start = Instant::now();
    let d = n.notify(&sample(), daytime());
    let elapsed = start.elapsed();
    assert_eq!(d.len(), 3);
    for x in &d {
        assert!(!x.ok);
        assert_eq!(x.error.as_deref(), Some("timed out after 1000 ms"), "{x:?}");
    }
    // The channels run in parallel: about 1 s in all, not 3.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
}

#[test]
fn a_shared_channel_is_sent_once_in_both_languages() {
    let rx = HttpReceiver::start(200);
    let n = notifier(&format!(
        r#"
        [channels.slack]
        type = "slack"
        webhook_url = "{}"

        [[contacts]]
        name = "tanaka"
        language = "ja"
        channels = ["slack"]

        [[contacts]]
        name = "smith"
        language = "en"
        channels = ["slack"]
        "#,
        rx.url("/s")
    ));
    let d = n.notify(&sample(), daytime());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].contact, "tanaka");
    let text = rx.next().json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains("新しいインシデント") && text.contains("A new incident"),
        "{text}"
    );
    rx.assert_no_more();
}

#[test]
fn quiet_hours_hold_non_critical_and_let_critical_through() {
    let rx = HttpReceiver::start(200);
    let n = notifier(&format!(
        r#"
        [channels.slack]
        type = "slack"
        webhook_url = "{}"

        [[contacts]]
        name = "tanaka"
        language = "ja"
        channels = ["slack"]
        quiet_hours = {{ start = "22:00", end = "07:00", utc_offset = "+09:00" }}
        "#,
        rx.url("/s")
    ));
    // 23:30 JST.
    let night = chrono::DateTime::parse_from_rfc3339("2026-01-15T14:30:00Z")
        .unwrap()
        .to_utc();
    let mut note = sample();
    assert_eq!(
        n.plan(&note, night)[0].decision,
        Decision::Hold {
            until: chrono::DateTime::parse_from_rfc3339("2026-01-15T22:00:00Z")
                .unwrap()
                .to_utc()
        }
    );
    assert!(n.notify(&note, night).is_empty());
    rx.assert_no_more();
    // Held ones are sent by name once the hold ends; times show in the contact's offset.
    note.reason = mamori_notify::Reason::Reminder;
    let d = n.notify_contact(&note, "tanaka", night);
    assert!(d[0].ok);
    let text = rx.next().json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("対応待ちのインシデントがあります。"),
        "{text}"
    );
    assert!(text.contains("日時: 2026-01-15 12:00:00 +09:00"), "{text}");
    note.severity = mamori_event::Level::Critical;
    note.reason = mamori_notify::Reason::Opened;
    let d = n.notify(&note, night);
    assert_eq!(d.len(), 1);
    assert!(d[0].ok);
    assert!(rx.next().json()["text"]
        .as_str()
        .unwrap()
        .contains("重要度: 重大"));
}
