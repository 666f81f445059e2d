//! Who is told what, when: minimum severity, quiet hours and escalation. Pure: the time is
//! always passed in, nothing here does I/O.

use chrono::{DateTime, Duration, Timelike, Utc};
use mamori_event::Level;
use serde::{Deserialize, Serialize};

use crate::config::{self, ConfigErrors, Contact, NotifyConfig, QuietHours};

/// What to do about one contact for one incident, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    Send,
    /// In the contact's quiet hours and not critical: send at `until` (the end of the quiet
    /// hours), as a [`crate::Reason::Reminder`] if the incident is still open.
    Hold {
        until: DateTime<Utc>,
    },
    /// Below the contact's `min_severity`: never sent to this contact.
    BelowMinSeverity,
}

impl QuietHours {
    /// If `now` is inside the quiet hours, when they end.
    pub fn ends_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.offset);
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let inside = if self.start < self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        };
        if !inside {
            return None;
        }
        // Minutes from now (truncated to the minute) until `end`, wrapping past midnight.
        let until_end = (i64::from(self.end) - i64::from(minute)).rem_euclid(24 * 60);
        let floor = now
            - Duration::seconds(i64::from(local.second()))
            - Duration::nanoseconds(i64::from(local.nanosecond()));
        Some(floor + Duration::minutes(until_end))
    }
}

pub(crate) fn decide(contact: &Contact, severity: Level, now: DateTime<Utc>) -> Decision {
    if severity < contact.min_severity {
        return Decision::BelowMinSeverity;
    }
    if severity == Level::Critical {
        return Decision::Send;
    }
    match contact.quiet_hours.and_then(|q| q.ends_after(now)) {
        Some(until) => Decision::Hold { until },
        None => Decision::Send,
    }
}

/// An incident as the escalator needs to see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentStatus {
    pub id: String,
    pub severity: Level,
    /// When the first-line contacts were notified; escalation delays count from here.
    pub notified_at: DateTime<Utc>,
    pub acknowledged: bool,
    /// Indices of escalation steps already done (sent or below the contact's severity).
    pub steps_done: Vec<usize>,
}

/// One escalation step that is due for one incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationAction {
    pub incident_id: String,
    /// Index into `[[notify.escalation]]`; record it in `steps_done` once acted on
    /// (`Send` after delivery, `BelowMinSeverity` at once; `Hold` comes back when due).
    pub step: usize,
    pub contact: String,
    pub decision: Decision,
}

/// Decides which escalation steps are due. Holds no state: what was done is passed in with
/// each incident, so a restart loses nothing.
#[derive(Debug, Clone)]
pub struct Escalator {
    contacts: Vec<Contact>,
    /// `(after_minutes, contact index)`, in config order.
    steps: Vec<(u32, usize)>,
}

impl Escalator {
    /// Validates contacts and escalation steps (not channels: no secrets are read).
    pub fn new(config: &NotifyConfig) -> Result<Escalator, ConfigErrors> {
        let mut errors = config::Errors(Vec::new());
        let v = config::validate(config, &mut errors);
        if errors.0.is_empty() {
            Ok(Escalator::from_validated(v))
        } else {
            Err(ConfigErrors(errors.0))
        }
    }

    pub(crate) fn from_validated(v: config::Validated) -> Escalator {
        Escalator {
            contacts: v.contacts,
            steps: v.steps,
        }
    }

    /// The due, not yet done steps of every unacknowledged incident, in incident then step order.
    pub fn due(&self, incidents: &[IncidentStatus], now: DateTime<Utc>) -> Vec<EscalationAction> {
        let mut out = Vec::new();
        for inc in incidents.iter().filter(|i| !i.acknowledged) {
            for (step, &(after, ci)) in self.steps.iter().enumerate() {
                if inc.steps_done.contains(&step) {
                    continue;
                }
                if now < inc.notified_at + Duration::minutes(i64::from(after)) {
                    continue;
                }
                let contact = &self.contacts[ci];
                out.push(EscalationAction {
                    incident_id: inc.id.clone(),
                    step,
                    contact: contact.name.clone(),
                    decision: decide(contact, inc.severity, now),
                });
            }
        }
        out
    }

    /// When the next step of this incident becomes due, if any remains.
    pub fn next_due(&self, incident: &IncidentStatus) -> Option<DateTime<Utc>> {
        if incident.acknowledged {
            return None;
        }
        self.steps
            .iter()
            .enumerate()
            .filter(|(i, _)| !incident.steps_done.contains(i))
            .map(|(_, &(after, _))| incident.notified_at + Duration::minutes(i64::from(after)))
            .min()
    }

    pub(crate) fn contacts(&self) -> &[Contact] {
        &self.contacts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config(toml_text: &str) -> NotifyConfig {
        toml::from_str(toml_text).unwrap()
    }

    const CONFIG: &str = r#"
        [channels.siem]
        type = "syslog"
        address = "127.0.0.1:514"

        [[contacts]]
        name = "soc"
        channels = ["siem"]
        min_severity = "low"
        quiet_hours = { start = "22:00", end = "07:00", utc_offset = "+09:00" }

        [[contacts]]
        name = "lead"
        channels = ["siem"]
        min_severity = "medium"
        escalation_order = 1

        [[contacts]]
        name = "ciso"
        channels = ["siem"]
        min_severity = "high"
        escalation_order = 2
        quiet_hours = { start = "23:30", end = "06:00", utc_offset = "+09:00" }

        [[escalation]]
        after_minutes = 15
        to = "lead"

        [[escalation]]
        after_minutes = 60
        to = "ciso"
    "#;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        // 2026-01-15 hh:mm UTC
        Utc.with_ymd_and_hms(2026, 1, 15, h, m, 0).unwrap()
    }

    fn incident(severity: Level, acknowledged: bool, done: &[usize]) -> IncidentStatus {
        IncidentStatus {
            id: "7".into(),
            severity,
            notified_at: at(3, 0), // 12:00 JST
            acknowledged,
            steps_done: done.to_vec(),
        }
    }

    #[test]
    fn quiet_hours_across_midnight_in_contact_offset() {
        let q = QuietHours {
            start: 22 * 60,
            end: 7 * 60,
            offset: config::parse_offset("+09:00").unwrap(),
        };
        // 21:59 JST = 12:59 UTC: outside.
        assert_eq!(q.ends_after(at(12, 59)), None);
        // 22:00 JST = 13:00 UTC: inside until 07:00 JST = 22:00 UTC.
        assert_eq!(q.ends_after(at(13, 0)), Some(at(22, 0)));
        // 03:10:30 JST next day = 18:10:30 UTC.
        let t = Utc.with_ymd_and_hms(2026, 1, 15, 18, 10, 30).unwrap();
        assert_eq!(q.ends_after(t), Some(at(22, 0)));
        // 07:00 JST: outside (end is exclusive).
        assert_eq!(q.ends_after(at(22, 0)), None);
    }

    #[test]
    fn quiet_hours_within_a_day() {
        let q = QuietHours {
            start: 12 * 60,
            end: 13 * 60,
            offset: config::parse_offset("Z").unwrap(),
        };
        assert_eq!(q.ends_after(at(11, 59)), None);
        assert_eq!(q.ends_after(at(12, 30)), Some(at(13, 0)));
        assert_eq!(q.ends_after(at(13, 0)), None);
    }

    #[test]
    fn decisions_severity_quiet_critical() {
        let e = Escalator::new(&config(CONFIG)).unwrap();
        let soc = &e.contacts()[0];
        let night = at(14, 0); // 23:00 JST
        let day = at(3, 0); // 12:00 JST
        assert_eq!(
            decide(soc, Level::Informational, day),
            Decision::BelowMinSeverity
        );
        assert_eq!(decide(soc, Level::Low, day), Decision::Send);
        assert_eq!(
            decide(soc, Level::High, night),
            Decision::Hold { until: at(22, 0) }
        );
        assert_eq!(decide(soc, Level::Critical, night), Decision::Send);
    }

    #[test]
    fn escalation_steps_come_due_in_order() {
        let e = Escalator::new(&config(CONFIG)).unwrap();
        let inc = incident(Level::High, false, &[]);
        assert!(e.due(std::slice::from_ref(&inc), at(3, 14)).is_empty());
        assert_eq!(e.next_due(&inc), Some(at(3, 15)));
        assert_eq!(
            e.due(std::slice::from_ref(&inc), at(3, 15)),
            vec![EscalationAction {
                incident_id: "7".into(),
                step: 0,
                contact: "lead".into(),
                decision: Decision::Send
            }]
        );
        let inc = incident(Level::High, false, &[0]);
        assert!(e.due(std::slice::from_ref(&inc), at(3, 59)).is_empty());
        assert_eq!(e.next_due(&inc), Some(at(4, 0)));
        let due = e.due(std::slice::from_ref(&inc), at(4, 0));
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].step, due[0].contact.as_str(), due[0].decision),
            (1, "ciso", Decision::Send)
        );
        // Both done: nothing more, ever.
        let inc = incident(Level::High, false, &[0, 1]);
        assert!(e.due(std::slice::from_ref(&inc), at(23, 0)).is_empty());
        assert_eq!(e.next_due(&inc), None);
    }

    #[test]
    fn acknowledged_incidents_never_escalate() {
        let e = Escalator::new(&config(CONFIG)).unwrap();
        let inc = incident(Level::Critical, true, &[]);
        assert!(e.due(std::slice::from_ref(&inc), at(9, 0)).is_empty());
        assert_eq!(e.next_due(&inc), None);
    }

    #[test]
    fn escalation_respects_min_severity_and_quiet_hours() {
        let e = Escalator::new(&config(CONFIG)).unwrap();
        // Medium: lead gets it, ciso (min high) is below severity.
        let mut inc = incident(Level::Medium, false, &[]);
        let due = e.due(std::slice::from_ref(&inc), at(4, 0));
        assert_eq!(
            due.iter().map(|a| a.decision).collect::<Vec<_>>(),
            vec![Decision::Send, Decision::BelowMinSeverity]
        );
        // High at 00:00 JST (15:00 UTC): ciso is in quiet hours until 06:00 JST (21:00 UTC).
        inc.severity = Level::High;
        inc.notified_at = at(14, 0);
        let due = e.due(std::slice::from_ref(&inc), at(15, 0));
        assert_eq!(due[1].decision, Decision::Hold { until: at(21, 0) });
        // Critical at the same time: goes through quiet hours.
        inc.severity = Level::Critical;
        let due = e.due(std::slice::from_ref(&inc), at(15, 0));
        assert_eq!(due[1].decision, Decision::Send);
    }

    #[test]
    fn config_errors_name_their_keys() {
        let bad = r#"
            [channels.mail]
            type = "smtp"
            host = "smtp.example.jp"
            from = "mamori@example.jp"

            [[contacts]]
            name = "a"
            channels = ["mail", "nope"]
            quiet_hours = { start = "25:00", end = "07:00", utc_offset = "JST" }

            [[contacts]]
            name = "a"
            email = "not an address"
            channels = []
            escalation_order = 1

            [[contacts]]
            name = "late"
            channels = ["mail"]
            email = "late@example.jp"
            escalation_order = 3

            [[escalation]]
            after_minutes = 0
            to = "ghost"
        "#;
        let err = Escalator::new(&config(bad)).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "contacts[0].email",
                "contacts[0].channels[1]",
                "contacts[0].quiet_hours.start",
                "contacts[0].quiet_hours.utc_offset",
                "contacts[1].name",
                "contacts[1].email",
                "contacts[1].channels",
                "escalation[0].after_minutes",
                "escalation[0].to",
                "contacts[1].escalation_order",
                "contacts[2].escalation_order",
            ],
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("contacts[0].channels[1]: no channel named \"nope\""),
            "{err}"
        );
    }

    #[test]
    fn escalation_out_of_tier_order_is_rejected() {
        let text = CONFIG.replace("after_minutes = 60", "after_minutes = 5");
        let err = Escalator::new(&config(&text)).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].key, "escalation");
        let text = CONFIG.replace("to = \"lead\"", "to = \"soc\"");
        let err = Escalator::new(&config(&text)).unwrap_err();
        assert!(err.0.iter().any(|e| e.key == "escalation[0].to"), "{err}");
    }
}
