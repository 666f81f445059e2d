//! One row per internet source and day for what failed: the failed-probe episodes of one
//! public address on one UTC day (`mamori_detect::outcome`) become **one** low row, naming every
//! rule that fired, with the first and last event, the request count and the events (bounded) —
//! as `serve` merges them into one alert by the same key ([`outcome::probe_episode_key`]).
//! Lowered guessing/scanning correlations keep their own rows (their title, evidence span and
//! events belong to them).

use std::collections::BTreeMap;

use mamori_detect::outcome;
use serde_json::{json, Value};

use crate::timeline::Row;

/// Most events an episode row lists in JSONL.
const EPISODE_SOURCES: usize = 100;

fn day_key(row: &Row) -> Option<String> {
    let ip = row
        .details
        .iter()
        .find(|(k, _)| k == "source.ip" || k.ends_with(".ip") || k == "IpAddress")
        .map(|(_, v)| v.clone())?;
    let ms = row.timestamp?.timestamp_millis();
    Some(outcome::probe_episode_key(&ip, ms))
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Merges the failed-probe episode rows of one source and day into one row; rows without a
/// source address pass through.
pub(crate) fn merge_daily(rows: Vec<Row>) -> Vec<Row> {
    let mut out = Vec::new();
    let mut groups: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in rows {
        match day_key(&r) {
            Some(k) => groups.entry(k).or_default().push(r),
            None => out.push(r),
        }
    }
    for (_, mut rows) in groups {
        if rows.len() == 1 {
            out.extend(rows);
            continue;
        }
        // The failed-probe episode leads (it is the day's episode by definition); else the
        // earliest row.
        rows.sort_by_key(|r| {
            (
                r.rule_id != outcome::FAILED_PROBES_RULE_ID,
                r.timestamp,
                r.rule_id.clone(),
            )
        });
        let mut base = rows.remove(0);
        let ev = base.evidence.take().unwrap_or_else(|| json!({}));
        let mut rules = strs(ev.get("rules"));
        if !rules.contains(&base.rule_id) {
            rules.insert(0, base.rule_id.clone());
        }
        let mut sources = strs(ev.get("sources"));
        let mut hosts = strs(ev.get("hosts"));
        let mut truncated = ev["sources_truncated"].as_bool().unwrap_or(false);
        let mut max_count = ev["count"].as_u64().unwrap_or(0);
        let (mut first, mut last) = (
            ev["first"].as_str().unwrap_or_default().to_owned(),
            ev["last"].as_str().unwrap_or_default().to_owned(),
        );
        let (mut t0, mut t1) = (base.timestamp, base.timestamp);
        let mut also = Vec::new();
        for r in rows {
            let e = r.evidence.clone().unwrap_or_else(|| json!({}));
            for id in std::iter::once(r.rule_id.clone()).chain(strs(e.get("rules"))) {
                if !rules.contains(&id) {
                    rules.push(id);
                }
            }
            for s in strs(e.get("sources")) {
                if !sources.contains(&s) {
                    sources.push(s);
                }
            }
            for h in strs(e.get("hosts")) {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
            truncated |= e["sources_truncated"].as_bool().unwrap_or(false);
            max_count = max_count.max(e["count"].as_u64().unwrap_or(0));
            if r.timestamp < t0 {
                t0 = r.timestamp;
                first = e["first"].as_str().unwrap_or_default().to_owned();
            }
            if r.timestamp > t1 {
                t1 = r.timestamp;
                last = e["last"].as_str().unwrap_or_default().to_owned();
            }
            base.level = base.level.max(r.level);
            for t in r.tags {
                if !base.tags.contains(&t) {
                    base.tags.push(t);
                }
            }
            also.push(r.rule_title);
        }
        // Distinct events when every row listed all of its own; the largest count otherwise.
        let count = if truncated {
            max_count.max(sources.len() as u64)
        } else {
            sources.len() as u64
        };
        let listed = sources.len();
        sources.truncate(EPISODE_SOURCES);
        base.timestamp = t0;
        base.host = hosts.join(", ");
        if !first.is_empty() {
            base.source = if first == last || last.is_empty() {
                first.clone()
            } else {
                format!("{first} … {last}")
            };
        }
        base.details.push(("also".into(), also.join("; ")));
        base.details.push((
            "episode".into(),
            format!(
                "one low row for this source and day: {count} events, {} rules",
                rules.len()
            ),
        ));
        base.details.push((
            "episode_ja".into(),
            format!("この送信元・この日の低レベルのエピソード1件にまとめました（{count} 件のイベント、{} 件のルール）", rules.len()),
        ));
        base.evidence = Some(json!({
            "first": first,
            "last": last,
            "count": count,
            "rules": rules,
            "hosts": hosts,
            "sources": sources,
            "sources_truncated": truncated || listed > EPISODE_SOURCES,
        }));
        out.push(base);
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use mamori_event::Level;

    use super::*;
    use crate::timeline::RowKind;

    fn row(rule: &str, ip: &str, hour: u32, sources: &[&str]) -> Row {
        Row {
            timestamp: Some(Utc.with_ymd_and_hms(2026, 9, 7, hour, 0, 0).unwrap()),
            host: "web01".into(),
            source: sources[0].into(),
            rule_id: rule.into(),
            rule_title: format!("title {rule}"),
            level: Level::Low,
            tags: vec![format!("attack.{rule}")],
            details: vec![("source.ip".into(), ip.into())],
            event: None,
            evidence: Some(json!({
                "first": sources[0],
                "last": sources[sources.len() - 1],
                "count": sources.len(),
                "rules": [rule],
                "hosts": ["web01"],
                "sources": sources,
                "sources_truncated": false,
            })),
            kind: RowKind::Detection,
        }
    }

    /// Issue #14: a scanner's failed probes, its user-agent episode and its scanning burst are
    /// one low row for the source and day, naming every rule and counting distinct events.
    #[test]
    fn one_row_per_source_and_day_naming_every_rule() {
        let ip = "45.33.12.7";
        let rows = vec![
            row("ua-episode", ip, 3, &["access.log:1", "access.log:2"]),
            row(
                outcome::FAILED_PROBES_RULE_ID,
                ip,
                3,
                &["access.log:1", "access.log:2", "access.log:3"],
            ),
            row("burst", ip, 4, &["access.log:3", "access.log:4"]),
            // Another day, another source: rows of their own.
            {
                let mut r = row("burst", ip, 23, &["access.log:9"]);
                r.timestamp = r.timestamp.map(|t| t + chrono::Duration::days(1));
                r
            },
            row("ua-episode", "45.33.12.8", 3, &["access.log:5"]),
        ];
        let mut out = merge_daily(rows);
        out.sort_by_key(|r| (r.timestamp, r.rule_id.clone()));
        assert_eq!(out.len(), 3, "{out:#?}");
        let m = out
            .iter()
            .find(|r| r.rule_id == outcome::FAILED_PROBES_RULE_ID)
            .unwrap();
        let ev = m.evidence.as_ref().unwrap();
        assert_eq!(ev["count"], 4);
        assert_eq!(ev["first"], "access.log:1");
        assert_eq!(ev["last"], "access.log:4");
        let rules = strs(ev.get("rules"));
        for r in [outcome::FAILED_PROBES_RULE_ID, "ua-episode", "burst"] {
            assert!(rules.contains(&r.to_owned()), "{rules:?}");
        }
        let also = &m.details.iter().find(|(k, _)| k == "also").unwrap().1;
        assert!(also.contains("title burst"), "{also}");
        assert!(m.details.iter().any(|(k, _)| k == "episode_ja"));
    }
}
