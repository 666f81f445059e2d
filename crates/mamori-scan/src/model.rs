//! Findings and their plain-words explanations in Japanese and English.

use serde::{Deserialize, Serialize};

/// How bad a finding is; `Info` never makes `mamori scan` exit 1.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn label(self, lang: Lang) -> &'static str {
        match (lang, self) {
            (Lang::En, s) => s.as_str(),
            (Lang::Ja, Severity::Info) => "情報",
            (Lang::Ja, Severity::Low) => "低",
            (Lang::Ja, Severity::Medium) => "中",
            (Lang::Ja, Severity::High) => "高",
            (Lang::Ja, Severity::Critical) => "緊急",
        }
    }

    /// One step up (used when the logs show the path being probed).
    pub fn raised(self) -> Severity {
        match self {
            Severity::Info => Severity::Low,
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Ja,
    #[default]
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

/// A text in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub en: String,
    pub ja: String,
}

impl Text {
    pub fn new(en: impl Into<String>, ja: impl Into<String>) -> Text {
        Text {
            en: en.into(),
            ja: ja.into(),
        }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Ja => &self.ja,
        }
    }
}

/// One thing the scan found. `check` is stable (a template id or a built-in check id) and,
/// with `target` and `location`, identifies the finding across runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub check: String,
    pub severity: Severity,
    /// The target as given (`https://mail.example.co.jp/`).
    pub target: String,
    /// Where exactly: a URL, `host:port` for TLS, a parameter (`/search?q`).
    pub location: String,
    /// The URL path the finding is about (for linking with the logs), `/` when none.
    pub path: String,
    pub title: Text,
    /// What it is and why it matters, in plain words.
    pub explain: Text,
    /// How to fix it.
    pub fix: Text,
    /// What was seen (response excerpt, header value, version); attacker-controlled text.
    pub evidence: String,
    /// Known-exploited CVEs this finding points to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
}

impl Finding {
    /// The key that says "the same finding" across runs.
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.check, self.target, self.location)
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary, with `…` when cut.
pub fn excerpt(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
