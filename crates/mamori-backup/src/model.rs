//! The result of one check: what [`crate::History`] stores and the reports read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The verdict of one check. Ordered so that `max` gives the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passed,
    Warning,
    Failed,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passed => "passed",
            CheckStatus::Warning => "warning",
            CheckStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<CheckStatus> {
        match s {
            "passed" => Some(CheckStatus::Passed),
            "warning" => Some(CheckStatus::Warning),
            "failed" => Some(CheckStatus::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing a check found, with a stable machine code (e.g. `restic.snapshot_stale`) and the
/// same sentence in English and Japanese.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: String,
    pub en: String,
    pub ja: String,
}

impl Finding {
    pub fn new(code: &str, en: impl Into<String>, ja: impl Into<String>) -> Finding {
        Finding {
            code: code.to_string(),
            en: en.into(),
            ja: ja.into(),
        }
    }

    /// The sentence in `lang` (`ja` or anything else = English).
    pub fn text(&self, lang: &str) -> &str {
        if lang == "ja" {
            &self.ja
        } else {
            &self.en
        }
    }
}

/// One run of one `[[backup]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The entry's `name`.
    pub name: String,
    /// `restic`, `borg` or `directory`.
    pub kind: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub status: CheckStatus,
    pub findings: Vec<Finding>,
    /// Kind-specific numbers (snapshot count, total size, files hashed, …) that later runs
    /// compare against.
    pub details: serde_json::Value,
}

/// What a check collects while it runs: findings, each with the verdict it implies, and the
/// numbers stored in [`CheckRecord::details`].
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub found: Vec<(CheckStatus, Finding)>,
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Outcome {
    pub(crate) fn fail(&mut self, code: &str, en: impl Into<String>, ja: impl Into<String>) {
        self.found
            .push((CheckStatus::Failed, Finding::new(code, en, ja)));
    }

    pub(crate) fn warn(&mut self, code: &str, en: impl Into<String>, ja: impl Into<String>) {
        self.found
            .push((CheckStatus::Warning, Finding::new(code, en, ja)));
    }

    /// A finding that is worth saying but changes nothing (e.g. files changed since last run).
    pub(crate) fn note(&mut self, code: &str, en: impl Into<String>, ja: impl Into<String>) {
        self.found
            .push((CheckStatus::Passed, Finding::new(code, en, ja)));
    }

    pub(crate) fn set(&mut self, key: &str, v: impl Into<serde_json::Value>) {
        self.details.insert(key.to_string(), v.into());
    }

    pub(crate) fn status(&self) -> CheckStatus {
        self.found
            .iter()
            .map(|(s, _)| *s)
            .max()
            .unwrap_or(CheckStatus::Passed)
    }
}
