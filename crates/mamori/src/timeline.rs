//! Timeline rows and their CSV / JSONL writers.
//!
//! Log content is attacker-controlled: CSV cells that a spreadsheet would run as a formula
//! (starting with `=`, `+`, `-`, `@`, tab or carriage return) are prefixed with `'`.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// One detection on the timeline.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) timestamp: Option<DateTime<Utc>>,
    pub(crate) host: String,
    pub(crate) source: String,
    pub(crate) rule_id: String,
    pub(crate) rule_title: String,
    pub(crate) level: mamori_event::Level,
    pub(crate) tags: Vec<String>,
    pub(crate) details: Vec<(String, String)>,
    /// The full event (JSONL only).
    pub(crate) event: Option<serde_json::Value>,
}

impl Row {
    fn ts(&self) -> String {
        self.timestamp
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default()
    }

    fn details_text(&self) -> String {
        self.details
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(" ¦ ")
    }
}

/// Neutralises a cell a spreadsheet would otherwise evaluate.
pub(crate) fn csv_safe(s: &str) -> std::borrow::Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TimelineFormat {
    Csv,
    Jsonl,
}

pub(crate) fn write(
    rows: &[Row],
    format: TimelineFormat,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        TimelineFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "timestamp",
                "host",
                "source",
                "rule_id",
                "rule_title",
                "level",
                "tags",
                "details",
            ])?;
            for r in rows {
                let tags = r.tags.join(" ");
                let details = r.details_text();
                w.write_record([
                    csv_safe(&r.ts()).as_ref(),
                    &csv_safe(&r.host),
                    &csv_safe(&r.source),
                    &csv_safe(&r.rule_id),
                    &csv_safe(&r.rule_title),
                    r.level.as_str(),
                    &csv_safe(&tags),
                    &csv_safe(&details),
                ])?;
            }
            w.flush()?;
        }
        TimelineFormat::Jsonl => {
            for r in rows {
                let details: serde_json::Map<String, serde_json::Value> = r
                    .details
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                let line = json!({
                    "timestamp": r.ts(),
                    "host": r.host,
                    "source": r.source,
                    "rule": {"id": r.rule_id, "title": r.rule_title, "level": r.level, "tags": r.tags},
                    "details": details,
                    "event": r.event,
                });
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(csv_safe("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_safe("+1"), "'+1");
        assert_eq!(csv_safe("-2"), "'-2");
        assert_eq!(csv_safe("@SUM(1)"), "'@SUM(1)");
        assert_eq!(csv_safe("\tx"), "'\tx");
        assert_eq!(csv_safe("plain"), "plain");
    }

    #[test]
    fn csv_quotes_and_jsonl_carries_event() {
        let row = Row {
            timestamp: None,
            host: "h,1".into(),
            source: "a.log:3".into(),
            rule_id: "r".into(),
            rule_title: "=HYPERLINK(\"x\")".into(),
            level: mamori_event::Level::High,
            tags: vec!["attack.t1110".into()],
            details: vec![("user.name".into(), "root".into())],
            event: Some(json!({"user.name": "root"})),
        };
        let mut out = Vec::new();
        write(std::slice::from_ref(&row), TimelineFormat::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"h,1\""));
        assert!(text.contains("'=HYPERLINK"));
        let mut out = Vec::new();
        write(&[row], TimelineFormat::Jsonl, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"]["user.name"], "root");
        assert_eq!(v["rule"]["level"], "high");
    }
}
