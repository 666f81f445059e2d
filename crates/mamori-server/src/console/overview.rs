//! The overview's numbers: alerts by level per hour over the last day, open incidents by NIST
//! phase, response actions in force. (Source health comes from `GET /api/v1/sources`.)

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use mamori_cases::{IncidentFilter, Phase, Status};
use mamori_event::Level;
use mamori_store::AlertStore;
use serde_json::{json, Value as JsonValue};

use crate::api::{blocking, ApiError, AppState, Authed};

/// Hours shown in the alerts chart.
pub(super) const HOURS: usize = 24;

/// Hour starts (Unix seconds) and counts per level per hour.
type ByLevel = (Vec<i64>, Vec<(Level, Vec<u64>)>);

/// Counts of alerts last seen in each of the `HOURS` hours ending with the current one, per
/// level (`informational` … `critical`), oldest first.
pub(super) fn alerts_by_level(
    store: &dyn AlertStore,
    now: DateTime<Utc>,
) -> Result<ByLevel, mamori_store::Error> {
    let end = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now)
        + TimeDelta::hours(1);
    let start = end - TimeDelta::hours(HOURS as i64);
    let mut counts: Vec<(Level, Vec<u64>)> =
        Level::ALL.iter().map(|l| (*l, vec![0; HOURS])).collect();
    // One grouped query over the (last_seen, level) index; no alert is read.
    for (level, h, n) in store.count_alerts_by_level_hour(start, HOURS as u32)? {
        if let (Some((_, c)), Some(slot)) = (
            counts.iter_mut().find(|(l, _)| *l == level),
            Some(h as usize).filter(|h| *h < HOURS),
        ) {
            c[slot] += n;
        }
    }
    let xs = (0..HOURS as i64)
        .map(|i| (start + TimeDelta::hours(i)).timestamp())
        .collect();
    Ok((xs, counts))
}

pub(super) async fn overview(
    _auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    let s = Arc::clone(&st);
    let v = blocking(move || {
        let (xs, counts) = alerts_by_level(&*s.alerts, Utc::now())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let by_level: serde_json::Map<String, JsonValue> = counts
            .into_iter()
            .map(|(l, c)| (l.as_str().to_owned(), json!(c)))
            .collect();
        let phases = match &s.incidents {
            None => JsonValue::Null,
            Some(svc) => {
                let mut m = serde_json::Map::new();
                for p in Phase::ALL {
                    let n = svc
                        .cases
                        .count(&IncidentFilter {
                            status: Some(Status::Open),
                            phase: Some(p),
                            ..IncidentFilter::default()
                        })
                        .map_err(crate::api_incidents::case_err)?;
                    m.insert(p.as_str().to_owned(), json!(n));
                }
                JsonValue::Object(m)
            }
        };
        let in_force: Vec<JsonValue> = match &s.incidents {
            None => Vec::new(),
            Some(svc) => svc.responses()["records"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter(|x| {
                            x["rolled_back_at"].is_null()
                                && x["expired_at"].is_null()
                                && !x["dry_run"].as_bool().unwrap_or(false)
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        };
        Ok(json!({
            "hours": xs,
            "alerts_by_level": by_level,
            "incidents_by_phase": phases,
            "responses_in_force": in_force,
        }))
    })
    .await?;
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_event::RuleId;
    use mamori_store::{MemoryAlertStore, NewAlert};

    #[test]
    fn alerts_are_counted_per_hour_and_level() {
        // The paging default (memory store) and SQLite's grouped query give the same counts.
        let mem = MemoryAlertStore::new();
        let sql = mamori_store::SqliteAlertStore::open_in_memory().unwrap();
        counted_per_hour_and_level(&mem);
        counted_per_hour_and_level(&sql);
    }

    fn counted_per_hour_and_level(s: &dyn AlertStore) {
        let now = Utc::now();
        for (i, (level, ago)) in [
            (Level::High, 0),
            (Level::High, 0),
            (Level::Low, 3),
            (Level::Critical, 30),
        ]
        .into_iter()
        .enumerate()
        {
            let t = now - TimeDelta::hours(ago);
            s.insert_alert(&NewAlert {
                rule_id: RuleId(format!("r{i}").into()),
                title: "t".into(),
                level,
                event_time: Some(t),
                received_at: t,
                event_seqs: vec![],
                group_key: None,
                dedup_key: None,
                details: json!({}),
            })
            .unwrap();
        }
        let (xs, counts) = alerts_by_level(s, now).unwrap();
        assert_eq!(xs.len(), HOURS);
        let get = |l: Level| counts.iter().find(|(x, _)| *x == l).unwrap().1.clone();
        assert_eq!(get(Level::High)[HOURS - 1], 2);
        assert_eq!(get(Level::Low)[HOURS - 4], 1);
        // Older than the chart: not counted.
        assert_eq!(get(Level::Critical).iter().sum::<u64>(), 0);
    }
}
