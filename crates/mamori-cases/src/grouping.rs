//! Deciding whether an alert joins an open incident or starts a new one. Pure: no I/O, no clock
//! (the alert's own time is the only time used), state passed in.
//!
//! Rules, in order:
//! 1. **Shared entity within the window.** The alert joins an open incident that saw one of its
//!    entities (same field, same value, compared case-insensitively) within `window` (default
//!    24h) of the alert's time. If several incidents qualify, the one that saw a shared entity
//!    most recently wins; the others are named in the explanation (incidents are never merged
//!    automatically — that is an analyst's call).
//! 2. **ATT&CK progression.** Past the window, an alert still joins if it shares an *account or
//!    host* entity (`user.*`, `host.*`, access key ids) with an incident and its tactic comes
//!    later in the kill chain than the furthest tactic that incident saw on that entity, within
//!    `progression_window` (default 7 days): intruders dwell between stages, and credential
//!    access on Monday followed by lateral movement on Thursday is one story. Addresses do not
//!    count here: they are shared (NAT, proxies) far more often than accounts or hosts.
//! 3. Otherwise a new incident — if the alert is at least [`GrouperConfig::open_min_level`]
//!    (default `medium`). **A low or informational alert never opens an incident on its own**
//!    (the internet's failed probes and guessing are one low episode per source and day, every
//!    day): it joins an open incident that shares one of its entities by rules 1–2, and is
//!    otherwise kept as an alert only ([`CaseStore::group_alert`](crate::CaseStore::group_alert)).
//!
//! **Noisy entities never join anything.** Values such as `-`, empty, `SYSTEM`, `127.0.0.1`,
//! `::1` and `localhost` appear in unrelated alerts all day; joining on them would glue every
//! incident on a host into one. The list is [`GrouperConfig::noisy_values`] (defaults in
//! [`DEFAULT_NOISY_VALUES`]), extendable per site (a shared NAT address, a service account).

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use mamori_event::{Level, RuleId};

use crate::classify::Tactic;
use crate::model::IncidentId;

#[cfg(test)]
mod tests;

/// One alert, as the grouper needs it. Built by the caller from a stored alert and its events.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertInput {
    pub alert_id: i64,
    pub rule_id: RuleId,
    pub title: String,
    /// The rule's Japanese title (`title_ja`), when it has one.
    pub title_ja: Option<String>,
    pub level: Level,
    /// Event time of the alert (not arrival time): windows are measured in event time.
    pub time: DateTime<Utc>,
    /// `(field, value)`: `user.name`, `host.name`, `source.ip`, `aws.access_key_id`, …
    pub entities: Vec<(String, String)>,
    /// Rule tags: `attack.t1110.003`, `attack.credential-access`, …
    pub tags: Vec<String>,
    pub event_seqs: Vec<u64>,
}

/// Values ignored for grouping, compared case-insensitively after trimming.
pub const DEFAULT_NOISY_VALUES: &[&str] = &[
    "",
    "-",
    "--",
    "system",
    "nt authority\\system",
    "local service",
    "network service",
    "anonymous logon",
    "localhost",
    "localhost.localdomain",
    "127.0.0.1",
    "::1",
    "0.0.0.0",
    "::",
    "n/a",
    "null",
    "none",
    "unknown",
];

#[derive(Debug, Clone, PartialEq)]
pub struct GrouperConfig {
    /// How close in time a shared entity must be. Default 24h.
    pub window: TimeDelta,
    /// How far an ATT&CK progression on an account or host may reach. Default 7 days.
    pub progression_window: TimeDelta,
    /// Entity values that never join alerts.
    pub noisy_values: Vec<String>,
    /// Alerts below this level join incidents but never open one. Default `medium`.
    pub open_min_level: Level,
}

impl Default for GrouperConfig {
    fn default() -> GrouperConfig {
        GrouperConfig {
            window: TimeDelta::hours(24),
            progression_window: TimeDelta::days(7),
            noisy_values: DEFAULT_NOISY_VALUES.iter().map(|s| s.to_string()).collect(),
            open_min_level: Level::Medium,
        }
    }
}

/// What an open incident remembers about one of its entities, for grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityState {
    /// Normalised: trimmed, lowercase.
    pub field: String,
    /// Normalised: trimmed, lowercase.
    pub value: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The alert that last carried this entity.
    pub alert_id: i64,
    /// The furthest ATT&CK tactic seen with this entity, and the alert that had it.
    pub tactic: Option<(Tactic, i64)>,
}

/// An open incident's grouping state. The store passes only the entities the alert shares.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenIncident {
    pub id: IncidentId,
    pub entities: Vec<EntityState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Join {
        incident: IncidentId,
        because: String,
    },
    New {
        because: String,
    },
}

/// An alert entity after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) field: String,
    pub(crate) value: String,
    /// As the alert spelled it, for explanations.
    pub(crate) shown: String,
}

#[derive(Debug, Clone)]
pub struct Grouper {
    window: TimeDelta,
    progression_window: TimeDelta,
    noisy: HashSet<String>,
    open_min_level: Level,
}

impl Grouper {
    pub fn new(config: GrouperConfig) -> Grouper {
        Grouper {
            window: config.window.abs(),
            progression_window: config.progression_window.abs(),
            noisy: config
                .noisy_values
                .iter()
                .map(|v| v.trim().to_lowercase())
                .collect(),
            open_min_level: config.open_min_level,
        }
    }

    /// May an alert of this level open an incident on its own?
    pub fn opens_incident(&self, level: Level) -> bool {
        level >= self.open_min_level
    }

    /// Why an alert that shares nothing with an open incident opened none.
    pub fn held_because(&self, alert: &AlertInput, new_because: &str) -> String {
        format!(
            "no incident: a {} alert opens no incident on its own (incidents open at {} and above); it joins one that shares its entities ({})",
            alert.level.as_str(),
            self.open_min_level.as_str(),
            new_because.trim_start_matches("new incident: ")
        )
    }

    pub fn window(&self) -> TimeDelta {
        self.window
    }

    pub fn is_noisy(&self, value: &str) -> bool {
        self.noisy.contains(&value.trim().to_lowercase())
    }

    /// The alert's usable entities (deduplicated) and the noisy ones it carried.
    pub(crate) fn keys(&self, alert: &AlertInput) -> (Vec<Key>, Vec<String>) {
        let mut keys: Vec<Key> = Vec::new();
        let mut ignored = Vec::new();
        for (field, value) in &alert.entities {
            let f = field.trim().to_lowercase();
            if f.is_empty() {
                continue;
            }
            if self.is_noisy(value) {
                ignored.push(format!("{}={}", field.trim(), value.trim()));
                continue;
            }
            let v = value.trim().to_lowercase();
            if !keys.iter().any(|k| k.field == f && k.value == v) {
                keys.push(Key {
                    field: f,
                    value: v,
                    shown: format!("{}={}", field.trim(), value.trim()),
                });
            }
        }
        (keys, ignored)
    }

    /// Join or new, with the sentence that explains it.
    pub fn decide(&self, alert: &AlertInput, open: &[OpenIncident]) -> Decision {
        let (keys, ignored) = self.keys(alert);
        let ignored_note = if ignored.is_empty() {
            String::new()
        } else {
            format!(" (ignored noisy entities: {})", ignored.join(", "))
        };
        if keys.is_empty() {
            return Decision::New {
                because: format!("new incident: the alert has no entity to group on{ignored_note}"),
            };
        }
        let tactic = Tactic::of_tags(&alert.tags);

        // (most recent shared sighting, incident, reasons)
        let mut shared: Vec<(DateTime<Utc>, IncidentId, Vec<String>)> = Vec::new();
        let mut progressed: Vec<(DateTime<Utc>, IncidentId, Vec<String>)> = Vec::new();
        let mut stale: Vec<String> = Vec::new();
        for inc in open {
            let mut reasons = Vec::new();
            let mut prog = Vec::new();
            let mut latest = None::<DateTime<Utc>>;
            let mut latest_prog = None::<DateTime<Utc>>;
            for k in &keys {
                let Some(e) = inc
                    .entities
                    .iter()
                    .find(|e| e.field == k.field && e.value == k.value)
                else {
                    continue;
                };
                if within(alert.time, e, self.window) {
                    reasons.push(format!("{} (shared with alert {})", k.shown, e.alert_id));
                    latest = latest.max(Some(e.last_seen));
                    continue;
                }
                let progression = match (tactic, e.tactic) {
                    (Some(now), Some((before, before_alert)))
                        if now > before
                            && is_actor_field(&k.field)
                            && within(alert.time, e, self.progression_window) =>
                    {
                        Some(format!(
                            "{} progresses ATT&CK {before} → {now} (after alert {before_alert})",
                            k.shown
                        ))
                    }
                    _ => None,
                };
                match progression {
                    Some(p) => {
                        prog.push(p);
                        latest_prog = latest_prog.max(Some(e.last_seen));
                    }
                    None => stale.push(format!(
                        "{} was last seen in incident {} at {}",
                        k.shown,
                        inc.id,
                        e.last_seen
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )),
                }
            }
            if let Some(t) = latest {
                shared.push((t, inc.id, reasons));
            } else if let Some(t) = latest_prog {
                progressed.push((t, inc.id, prog));
            }
        }

        for candidates in [&mut shared, &mut progressed] {
            // Most recent sighting first; among equals, the newest incident.
            candidates.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
            if let Some((_, id, reasons)) = candidates.first() {
                let mut because = format!("joined because {}", reasons.join(", "));
                let others: Vec<String> = candidates[1..].iter().map(|c| c.1.to_string()).collect();
                if !others.is_empty() {
                    because.push_str(&format!(
                        "; also matches incident {} (incidents are not merged automatically)",
                        others.join(", ")
                    ));
                }
                return Decision::Join {
                    incident: *id,
                    because,
                };
            }
        }

        let shown: Vec<&str> = keys.iter().map(|k| k.shown.as_str()).collect();
        let mut because = format!(
            "new incident: no open incident shares {} within {}",
            shown.join(", "),
            fmt_span(self.window)
        );
        if !stale.is_empty() {
            because.push_str(&format!("; {}, outside the window", stale.join("; ")));
        }
        because.push_str(&ignored_note);
        Decision::New { because }
    }

    /// Folds the alert's entities into an incident's grouping state (after joining or creating).
    pub fn absorb(&self, state: &mut OpenIncident, alert: &AlertInput) {
        let (keys, _) = self.keys(alert);
        let tactic = Tactic::of_tags(&alert.tags);
        for k in keys {
            match state
                .entities
                .iter_mut()
                .find(|e| e.field == k.field && e.value == k.value)
            {
                Some(e) => {
                    e.first_seen = e.first_seen.min(alert.time);
                    if alert.time >= e.last_seen {
                        e.last_seen = alert.time;
                        e.alert_id = alert.alert_id;
                    }
                    if let Some(t) = tactic {
                        if e.tactic.is_none_or(|(before, _)| t > before) {
                            e.tactic = Some((t, alert.alert_id));
                        }
                    }
                }
                None => state.entities.push(EntityState {
                    field: k.field,
                    value: k.value,
                    first_seen: alert.time,
                    last_seen: alert.time,
                    alert_id: alert.alert_id,
                    tactic: tactic.map(|t| (t, alert.alert_id)),
                }),
            }
        }
    }
}

impl Default for Grouper {
    fn default() -> Grouper {
        Grouper::new(GrouperConfig::default())
    }
}

/// Whether `t` falls within `window` of the span in which the entity was seen.
fn within(t: DateTime<Utc>, e: &EntityState, window: TimeDelta) -> bool {
    let lo = e.first_seen.checked_sub_signed(window);
    let hi = e.last_seen.checked_add_signed(window);
    lo.is_none_or(|lo| t >= lo) && hi.is_none_or(|hi| t <= hi)
}

/// Accounts and hosts: the entities an intrusion progresses on.
fn is_actor_field(field: &str) -> bool {
    field.starts_with("user.")
        || field.starts_with("host.")
        || field.contains("access_key")
        || field.contains("accesskey")
}

fn fmt_span(d: TimeDelta) -> String {
    let s = d.num_seconds();
    if s != 0 && s % 86_400 == 0 && s >= 2 * 86_400 {
        format!("{}d", s / 86_400)
    } else if s != 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
