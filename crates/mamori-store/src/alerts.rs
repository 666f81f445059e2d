//! Alert rules both alert backends share: validation and dedup merging.

use crate::error::{Error, Result};
use crate::model::{Alert, AlertFilter, AlertId, AlertStatus, NewAlert, MAX_ALERT_SEQS};
use crate::AlertStore;
use chrono::{DateTime, TimeDelta, Utc};
use mamori_event::Level;

/// Longest title / key / rule id accepted (they are shown in lists, not documents).
pub const MAX_TEXT: usize = 4096;
/// Largest details JSON accepted.
pub const MAX_DETAILS: usize = 1 << 20;

pub fn validate(a: &NewAlert) -> Result<()> {
    let too_long = |what: &str, len: usize, max: usize| {
        Err(Error::InvalidRequest(format!(
            "alert {what} is {len} bytes, the limit is {max}"
        )))
    };
    if a.title.len() > MAX_TEXT {
        return too_long("title", a.title.len(), MAX_TEXT);
    }
    if a.rule_id.0.len() > MAX_TEXT {
        return too_long("rule id", a.rule_id.0.len(), MAX_TEXT);
    }
    for k in [&a.group_key, &a.dedup_key].into_iter().flatten() {
        if k.len() > MAX_TEXT {
            return too_long("key", k.len(), MAX_TEXT);
        }
    }
    let details = a.details.to_string().len();
    if details > MAX_DETAILS {
        return too_long("details", details, MAX_DETAILS);
    }
    Ok(())
}

pub fn new_alert(id: AlertId, a: &NewAlert) -> Alert {
    let mut seqs = a.event_seqs.clone();
    seqs.truncate(MAX_ALERT_SEQS);
    Alert {
        id,
        rule_id: a.rule_id.clone(),
        title: a.title.clone(),
        level: a.level,
        status: AlertStatus::Open,
        event_time: a.event_time,
        received_at: a.received_at,
        last_seen: a.received_at,
        count: 1,
        event_seqs: seqs,
        group_key: a.group_key.clone(),
        dedup_key: a.dedup_key.clone(),
        details: a.details.clone(),
        ack: None,
    }
}

/// Folds a new occurrence into an open alert with the same dedup key.
pub fn merge(x: &mut Alert, a: &NewAlert) {
    x.count += 1;
    x.last_seen = x.last_seen.max(a.received_at);
    if a.event_time > x.event_time {
        x.event_time = a.event_time;
    }
    // Seqs the alert already names are not repeated (an episode's end after a restart cites
    // the events its start cited).
    let known: std::collections::HashSet<_> = x.event_seqs.iter().copied().collect();
    let room = MAX_ALERT_SEQS.saturating_sub(x.event_seqs.len());
    let mut seen = std::collections::HashSet::new();
    x.event_seqs.extend(
        a.event_seqs
            .iter()
            .copied()
            .filter(|s| !known.contains(s) && seen.insert(*s))
            .take(room),
    );
    x.level = x.level.max(a.level);
    widen_seq_span(&mut x.details, &a.details);
}

/// A correlation alert's seq span (`first_seq`, `last_seq`) and event count (`events`) grow
/// with each occurrence merged into it (the end of its episode), so they describe every event
/// behind the alert even when its seq list is bounded. Other details keep their first values.
fn widen_seq_span(x: &mut serde_json::Value, a: &serde_json::Value) {
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|n| n.as_u64());
    let Some(obj) = x.as_object_mut() else {
        return;
    };
    for (k, pick) in [
        ("first_seq", u64::min as fn(u64, u64) -> u64),
        ("last_seq", u64::max),
        ("events", u64::max),
    ] {
        let mine = obj.get(k).and_then(|n| n.as_u64());
        if let (Some(m), Some(t)) = (mine, num(a, k)) {
            obj.insert(k.into(), pick(m, t).into());
        }
    }
    // An episode gathering several rules (failed probes of one source and day) names each
    // of them, up to a bound.
    for k in ["rules", "products", "answers"] {
        let (Some(mine), Some(theirs)) = (
            obj.get_mut(k).and_then(|v| v.as_array_mut()),
            a.get(k).and_then(|v| v.as_array()),
        ) else {
            continue;
        };
        for v in theirs {
            if mine.len() < MAX_EPISODE_NAMES && !mine.contains(v) {
                mine.push(v.clone());
            }
        }
    }
}

/// Most rule names an episode alert lists.
const MAX_EPISODE_NAMES: usize = 32;
/// [`AlertStore::count_alerts_by_level_hour`] by paging through the alerts (stores without a
/// grouped query).
pub(crate) fn count_by_level_hour<S: AlertStore + ?Sized>(
    store: &S,
    start: DateTime<Utc>,
    hours: u32,
) -> Result<Vec<(Level, u32, u64)>> {
    let end = start + TimeDelta::hours(i64::from(hours));
    let mut counts: std::collections::BTreeMap<(usize, u32), u64> = Default::default();
    let mut offset = 0;
    loop {
        let page = store.list_alerts(&AlertFilter {
            since: Some(start),
            offset,
            limit: 1000,
            ..AlertFilter::default()
        })?;
        for a in page.iter().filter(|a| a.last_seen < end) {
            let h = (a.last_seen - start).num_hours() as u32;
            let l = Level::ALL.iter().position(|x| *x == a.level).unwrap_or(0);
            *counts.entry((l, h)).or_default() += 1;
        }
        offset += page.len();
        if page.len() < 1000 {
            break;
        }
    }
    Ok(counts
        .into_iter()
        .map(|((l, h), n)| (Level::ALL[l], h, n))
        .collect())
}
