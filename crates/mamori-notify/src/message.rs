//! What a notification says, and how it reads in Japanese and English.
//!
//! Rendering is pure: a [`Notification`], a [`Language`] and the offset to show times in go
//! in, text comes out. Every field that can come from a log passes through the escaper of the
//! [`Style`] before it is placed in a template; the templates' own text is trusted.

use chrono::{DateTime, FixedOffset, Utc};
use mamori_event::Level;
use serde::{Deserialize, Serialize};

use crate::config::Language;
use crate::escape;

/// A machine name with its English and Japanese labels (e.g. a phase or an incident kind).
/// `mamori-cases` has the labels; the caller passes them so this crate does not depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// `containment`, `brute_force`: what webhooks and CEF carry.
    pub code: String,
    pub en: String,
    pub ja: String,
}

impl Label {
    pub fn new(code: impl Into<String>, en: impl Into<String>, ja: impl Into<String>) -> Label {
        Label {
            code: code.into(),
            en: en.into(),
            ja: ja.into(),
        }
    }

    /// The code as the label in both languages.
    pub fn plain(code: impl Into<String>) -> Label {
        let code = code.into();
        Label {
            en: code.clone(),
            ja: code.clone(),
            code,
        }
    }
}

/// Why this notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A new incident.
    #[default]
    Opened,
    /// Severity, phase or content changed.
    Updated,
    /// Still unacknowledged after an escalation step's delay.
    Escalated,
    /// Held during quiet hours, sent now.
    Reminder,
    Resolved,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Opened => "opened",
            Reason::Updated => "updated",
            Reason::Escalated => "escalated",
            Reason::Reminder => "reminder",
            Reason::Resolved => "resolved",
        }
    }

    fn headline_en(self) -> &'static str {
        match self {
            Reason::Opened => "A new incident was detected.",
            Reason::Updated => "An incident was updated.",
            Reason::Escalated => "An incident has not been acknowledged yet. Please respond.",
            Reason::Reminder => "An incident is waiting for your response.",
            Reason::Resolved => "An incident was resolved.",
        }
    }

    fn headline_ja(self) -> &'static str {
        match self {
            Reason::Opened => "新しいインシデントを検知しました。",
            Reason::Updated => "インシデントが更新されました。",
            Reason::Escalated => "未確認のインシデントがあります。至急ご対応ください。",
            Reason::Reminder => "対応待ちのインシデントがあります。",
            Reason::Resolved => "インシデントが解決されました。",
        }
    }

    fn short_en(self) -> &'static str {
        match self {
            Reason::Opened => "New incident",
            Reason::Updated => "Incident updated",
            Reason::Escalated => "Escalation",
            Reason::Reminder => "Reminder",
            Reason::Resolved => "Resolved",
        }
    }

    fn short_ja(self) -> &'static str {
        match self {
            Reason::Opened => "新規インシデント",
            Reason::Updated => "インシデント更新",
            Reason::Escalated => "エスカレーション",
            Reason::Reminder => "リマインド",
            Reason::Resolved => "解決",
        }
    }
}

/// One notification about one incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub incident_id: String,
    /// From a log: attacker-controlled.
    pub title: String,
    /// The title in Japanese, for the Japanese parts (else `title` there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_ja: Option<String>,
    pub severity: Level,
    pub phase: Label,
    pub kind: Label,
    #[serde(default)]
    pub reason: Reason,
    /// From a log: attacker-controlled; may span lines.
    pub summary: String,
    /// The summary in Japanese, for the Japanese parts (else `summary` there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_ja: Option<String>,
    /// `(field, value)`, e.g. `("user.name", "alice")`; attacker-controlled.
    pub entities: Vec<(String, String)>,
    /// Link to the incident in Mamori's UI.
    pub url: Option<String>,
    /// When the incident happened (or changed).
    pub time: DateTime<Utc>,
}

impl Notification {
    /// The title the Japanese parts show: `title_ja` when present, else `title`.
    pub fn title_in_ja(&self) -> &str {
        self.title_ja
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(&self.title)
    }

    /// The summary the Japanese parts show: `summary_ja` when present, else `summary`.
    pub fn summary_in_ja(&self) -> &str {
        self.summary_ja
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(&self.summary)
    }
}

/// How attacker-controlled text is escaped, and how emphasis is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Plain text (mail bodies, Teams TextRuns, syslog): control characters removed.
    Plain,
    /// Slack mrkdwn: `&<>` escaped, `*bold*`.
    Slack,
}

impl Style {
    fn line(self, s: &str) -> String {
        let s = escape::one_line(s);
        match self {
            Style::Plain => s,
            Style::Slack => escape::slack(&s),
        }
    }

    fn lines(self, s: &str) -> String {
        let s = escape::multi_line(s);
        match self {
            Style::Plain => s,
            Style::Slack => escape::slack(&s),
        }
    }

    fn bold(self, s: &str) -> String {
        match self {
            Style::Plain => s.to_owned(),
            Style::Slack => format!("*{s}*"),
        }
    }

    fn link(self, url: &str, text: &str) -> String {
        match self {
            Style::Plain => format!("{text}: {}", escape::one_line(url)),
            // `|` and `>` would end the link early; the URL is ours, but be exact anyway.
            Style::Slack => format!(
                "<{}|{text}>",
                escape::slack(&escape::one_line(url)).replace('|', "%7C")
            ),
        }
    }
}

/// How long a summary may be in a message, in characters.
const SUMMARY_MAX: usize = 2000;
/// Entities listed before "… and N more".
const ENTITIES_MAX: usize = 20;

pub(crate) fn severity_en(level: Level) -> &'static str {
    match level {
        Level::Informational => "Informational",
        Level::Low => "Low",
        Level::Medium => "Medium",
        Level::High => "High",
        Level::Critical => "Critical",
    }
}

fn time_in(t: DateTime<Utc>, offset: FixedOffset) -> String {
    t.with_timezone(&offset)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// The mail subject: one line, bounded, log text made inert.
pub(crate) fn subject(n: &Notification, lang: Language) -> String {
    let sev_ja = n.severity.as_str_ja();
    let sev_en = n.severity.as_str().to_ascii_uppercase();
    let s = match lang {
        Language::Ja => format!(
            "[Mamori][{sev_ja}] {}: {}",
            n.reason.short_ja(),
            n.title_in_ja()
        ),
        Language::En => format!("[Mamori][{sev_en}] {}: {}", n.reason.short_en(), n.title),
        Language::Both => format!(
            "[Mamori][{sev_ja}/{sev_en}] {} / {}: {}",
            n.reason.short_ja(),
            n.reason.short_en(),
            if n.title_in_ja() == n.title {
                n.title.clone()
            } else {
                format!("{} / {}", n.title_in_ja(), n.title)
            }
        ),
    };
    escape::mail_header(&s)
}

/// The message text in `lang` (both: Japanese, a rule, English).
pub(crate) fn body(n: &Notification, lang: Language, offset: FixedOffset, style: Style) -> String {
    match lang {
        Language::Ja => body_ja(n, offset, style),
        Language::En => body_en(n, offset, style),
        Language::Both => format!(
            "{}\n\n――――――――――――――――\n\n{}",
            body_ja(n, offset, style),
            body_en(n, offset, style)
        ),
    }
}

fn entities(n: &Notification, style: Style, more: impl Fn(usize) -> String) -> String {
    let mut out = String::new();
    for (k, v) in n.entities.iter().take(ENTITIES_MAX) {
        out.push_str(&format!("・{}: {}\n", style.line(k), style.line(v)));
    }
    if n.entities.len() > ENTITIES_MAX {
        out.push_str(&more(n.entities.len() - ENTITIES_MAX));
        out.push('\n');
    }
    out
}

fn body_ja(n: &Notification, offset: FixedOffset, style: Style) -> String {
    let mut s = String::new();
    s.push_str(n.reason.headline_ja());
    s.push('\n');
    s.push_str(&style.bold(&style.line(n.title_in_ja())));
    s.push_str("\n\n");
    s.push_str(&format!("インシデントID: {}\n", style.line(&n.incident_id)));
    s.push_str(&format!("重要度: {}\n", n.severity.as_str_ja()));
    s.push_str(&format!("種別: {}\n", style.line(&n.kind.ja)));
    s.push_str(&format!("フェーズ: {}\n", style.line(&n.phase.ja)));
    s.push_str(&format!("日時: {}\n", time_in(n.time, offset)));
    if !n.summary_in_ja().trim().is_empty() {
        s.push_str("\n概要:\n");
        s.push_str(&style.lines(&escape::truncate(n.summary_in_ja().trim(), SUMMARY_MAX)));
        s.push('\n');
    }
    if !n.entities.is_empty() {
        s.push_str("\n関連する項目:\n");
        s.push_str(&entities(n, style, |k| format!("ほか {k} 件")));
    }
    if let Some(url) = &n.url {
        s.push('\n');
        s.push_str(&style.link(url, "Mamori で詳細を見る"));
        s.push('\n');
    }
    s.trim_end().to_owned()
}

fn body_en(n: &Notification, offset: FixedOffset, style: Style) -> String {
    let mut s = String::new();
    s.push_str(n.reason.headline_en());
    s.push('\n');
    s.push_str(&style.bold(&style.line(&n.title)));
    s.push_str("\n\n");
    s.push_str(&format!("Incident: {}\n", style.line(&n.incident_id)));
    s.push_str(&format!("Severity: {}\n", severity_en(n.severity)));
    s.push_str(&format!("Kind: {}\n", style.line(&n.kind.en)));
    s.push_str(&format!("Phase: {}\n", style.line(&n.phase.en)));
    s.push_str(&format!("Time: {}\n", time_in(n.time, offset)));
    if !n.summary.trim().is_empty() {
        s.push_str("\nSummary:\n");
        s.push_str(&style.lines(&escape::truncate(n.summary.trim(), SUMMARY_MAX)));
        s.push('\n');
    }
    if !n.entities.is_empty() {
        s.push_str("\nEntities:\n");
        s.push_str(&entities(n, style, |k| format!("… and {k} more")));
    }
    if let Some(url) = &n.url {
        s.push('\n');
        s.push_str(&style.link(url, "Open in Mamori"));
        s.push('\n');
    }
    s.trim_end().to_owned()
}

/// Headline and title for a card heading (Teams), plain.
pub(crate) fn heading(n: &Notification, lang: Language) -> String {
    let sev = match lang {
        Language::Ja => n.severity.as_str_ja().to_owned(),
        Language::En => severity_en(n.severity).to_owned(),
        Language::Both => format!("{} / {}", n.severity.as_str_ja(), severity_en(n.severity)),
    };
    let reason = match lang {
        Language::Ja => n.reason.short_ja().to_owned(),
        Language::En => n.reason.short_en().to_owned(),
        Language::Both => format!("{} / {}", n.reason.short_ja(), n.reason.short_en()),
    };
    format!("[{sev}] {reason}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn sample() -> Notification {
        Notification {
            incident_id: "42".into(),
            title: "Brute force against vpn01 <!channel>".into(),
            title_ja: None,
            severity: Level::High,
            phase: Label::new("containment", "Containment", "封じ込め"),
            kind: Label::new("brute_force", "Brute force", "総当たり攻撃"),
            reason: Reason::Opened,
            summary: "37 failed logins for alice\nthen one success from 203.0.113.9".into(),
            summary_ja: None,
            entities: vec![
                ("user.name".into(), "alice".into()),
                ("source.ip".into(), "203.0.113.9".into()),
            ],
            url: Some("https://mamori.example.jp/incidents/42".into()),
            time: Utc.with_ymd_and_hms(2026, 1, 15, 13, 30, 0).unwrap(),
        }
    }

    fn jst() -> FixedOffset {
        FixedOffset::east_opt(9 * 3600).unwrap()
    }

    #[test]
    fn japanese_body_reads_naturally() {
        let b = body(&sample(), Language::Ja, jst(), Style::Plain);
        let expected = "新しいインシデントを検知しました。
Brute force against vpn01 <!channel>

インシデントID: 42
重要度: 高
種別: 総当たり攻撃
フェーズ: 封じ込め
日時: 2026-01-15 22:30:00 +09:00

概要:
37 failed logins for alice
then one success from 203.0.113.9

関連する項目:
・user.name: alice
・source.ip: 203.0.113.9

Mamori で詳細を見る: https://mamori.example.jp/incidents/42";
        assert_eq!(b, expected);
    }

    #[test]
    fn english_body_in_utc() {
        let b = body(
            &sample(),
            Language::En,
            FixedOffset::east_opt(0).unwrap(),
            Style::Plain,
        );
        assert!(
            b.starts_with("A new incident was detected.\nBrute force against vpn01"),
            "{b}"
        );
        assert!(b.contains("Severity: High\nKind: Brute force\nPhase: Containment\nTime: 2026-01-15 13:30:00 +00:00"), "{b}");
        assert!(
            b.ends_with("Open in Mamori: https://mamori.example.jp/incidents/42"),
            "{b}"
        );
    }

    #[test]
    fn both_has_japanese_then_english() {
        let b = body(&sample(), Language::Both, jst(), Style::Plain);
        let ja = b.find("新しいインシデント").unwrap();
        let en = b.find("A new incident").unwrap();
        assert!(ja < en);
    }

    #[test]
    fn slack_style_escapes_log_text_but_keeps_its_own_link() {
        let mut n = sample();
        n.entities
            .push(("x".into(), "<http://evil|click> & <@U1>".into()));
        let b = body(&n, Language::En, jst(), Style::Slack);
        assert!(
            b.contains("*Brute force against vpn01 &lt;!channel&gt;*"),
            "{b}"
        );
        assert!(
            b.contains("・x: &lt;http://evil|click&gt; &amp; &lt;@U1&gt;"),
            "{b}"
        );
        assert!(
            b.contains("<https://mamori.example.jp/incidents/42|Open in Mamori>"),
            "{b}"
        );
        assert!(!b.contains("<!channel>") && !b.contains("<http://evil"));
    }

    #[test]
    fn subjects_per_language() {
        let mut n = sample();
        n.title = "login\r\nBcc: x@example.com".into();
        assert_eq!(
            subject(&n, Language::En),
            "[Mamori][HIGH] New incident: login  Bcc: x@example.com"
        );
        assert_eq!(
            subject(&n, Language::Ja),
            "[Mamori][高] 新規インシデント: login  Bcc: x@example.com"
        );
        assert_eq!(
            subject(&n, Language::Both),
            "[Mamori][高/HIGH] 新規インシデント / New incident: login  Bcc: x@example.com"
        );
    }

    #[test]
    fn japanese_parts_use_the_japanese_title_and_summary() {
        let mut n = sample();
        n.title = "SSH Brute Force From One Source (203.0.113.9)".into();
        n.title_ja = Some("同一送信元からのSSH総当たり攻撃 (203.0.113.9)".into());
        n.summary_ja = Some("同一送信元からのSSH総当たり攻撃 (高)\n5分以内に10回以上".into());
        assert_eq!(
            subject(&n, Language::Ja),
            "[Mamori][高] 新規インシデント: 同一送信元からのSSH総当たり攻撃 (203.0.113.9)"
        );
        assert_eq!(
            subject(&n, Language::Both),
            "[Mamori][高/HIGH] 新規インシデント / New incident: 同一送信元からのSSH総当たり攻撃 (203.0.113.9) / SSH Brute Force From One Source (203.0.113.9)"
        );
        let ja = body(&n, Language::Ja, jst(), Style::Plain);
        assert!(
            ja.starts_with("新しいインシデントを検知しました。\n同一送信元からのSSH総当たり攻撃 (203.0.113.9)\n"),
            "{ja}"
        );
        assert!(
            ja.contains("概要:\n同一送信元からのSSH総当たり攻撃 (高)\n5分以内に10回以上"),
            "{ja}"
        );
        assert!(
            !ja.contains("SSH Brute Force") && !ja.contains("37 failed"),
            "{ja}"
        );
        let en = body(&n, Language::En, jst(), Style::Plain);
        assert!(
            en.contains("SSH Brute Force From One Source (203.0.113.9)"),
            "{en}"
        );
        assert!(
            en.contains("37 failed logins") && !en.contains("総当たり攻撃"),
            "{en}"
        );
        // A blank Japanese title falls back to the English one.
        n.title_ja = Some(" ".into());
        assert!(
            subject(&n, Language::Ja).ends_with(": SSH Brute Force From One Source (203.0.113.9)")
        );
    }

    #[test]
    fn many_entities_are_capped() {
        let mut n = sample();
        n.entities = (0..25).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        let b = body(&n, Language::Ja, jst(), Style::Plain);
        assert_eq!(b.matches("・k").count(), ENTITIES_MAX);
        assert!(b.contains("ほか 5 件"), "{b}");
    }

    #[test]
    fn escalation_headline() {
        let mut n = sample();
        n.reason = Reason::Escalated;
        assert!(body(&n, Language::Ja, jst(), Style::Plain)
            .starts_with("未確認のインシデントがあります。"));
        assert_eq!(
            heading(&n, Language::Both),
            "[高 / High] エスカレーション / Escalation"
        );
    }
}
