use chrono::{TimeZone, Utc};

use super::*;

/// A stand-in for the store: keeps every incident's grouping state in memory.
struct Sim {
    grouper: Grouper,
    open: Vec<OpenIncident>,
}

impl Sim {
    fn new(config: GrouperConfig) -> Sim {
        Sim {
            grouper: Grouper::new(config),
            open: Vec::new(),
        }
    }

    /// Returns the incident number (1-based, in creation order) and the explanation.
    fn ingest(&mut self, a: &AlertInput) -> (i64, String) {
        match self.grouper.decide(a, &self.open) {
            Decision::Join { incident, because } => {
                let st = self.open.iter_mut().find(|o| o.id == incident).unwrap();
                self.grouper.absorb(st, a);
                (incident.0, because)
            }
            Decision::New { because } => {
                let mut st = OpenIncident {
                    id: IncidentId(self.open.len() as i64 + 1),
                    entities: Vec::new(),
                };
                self.grouper.absorb(&mut st, a);
                let id = st.id.0;
                self.open.push(st);
                (id, because)
            }
        }
    }
}

/// `hours` after a fixed start.
fn alert(id: i64, hours: i64, entities: &[(&str, &str)], tags: &[&str]) -> AlertInput {
    AlertInput {
        alert_id: id,
        rule_id: RuleId(format!("rule-{id}").into()),
        title: format!("alert {id}"),
        title_ja: None,
        level: Level::Medium,
        time: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap() + TimeDelta::hours(hours),
        entities: entities
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        event_seqs: vec![id as u64],
    }
}

struct Case {
    name: &'static str,
    alerts: Vec<AlertInput>,
    /// Per alert: (incident number, the exact explanation).
    expect: Vec<(i64, &'static str)>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "shared user joins; unrelated user starts another",
            alerts: vec![
                alert(12, 0, &[("user.name", "alice"), ("source.ip", "203.0.113.5")], &[]),
                alert(13, 2, &[("user.name", "Alice"), ("host.name", "ws-042")], &[]),
                alert(14, 3, &[("user.name", "bob")], &[]),
            ],
            expect: vec![
                (
                    1,
                    "new incident: no open incident shares user.name=alice, source.ip=203.0.113.5 within 24h",
                ),
                (1, "joined because user.name=Alice (shared with alert 12)"),
                (2, "new incident: no open incident shares user.name=bob within 24h"),
            ],
        },
        Case {
            name: "chain through a second entity",
            alerts: vec![
                alert(1, 0, &[("source.ip", "198.51.100.7")], &[]),
                alert(2, 1, &[("source.ip", "198.51.100.7"), ("user.name", "carol")], &[]),
                alert(3, 2, &[("user.name", "carol"), ("host.name", "srv-db")], &[]),
            ],
            expect: vec![
                (1, "new incident: no open incident shares source.ip=198.51.100.7 within 24h"),
                (1, "joined because source.ip=198.51.100.7 (shared with alert 1)"),
                (1, "joined because user.name=carol (shared with alert 2)"),
            ],
        },
        Case {
            name: "noisy entities are ignored",
            alerts: vec![
                alert(1, 0, &[("user.name", "SYSTEM"), ("host.name", "ws-1")], &[]),
                alert(2, 1, &[("user.name", "SYSTEM"), ("host.name", "ws-2")], &[]),
                alert(3, 1, &[("source.ip", "127.0.0.1"), ("user.name", "-")], &[]),
                alert(4, 1, &[("source.ip", "::1"), ("host.name", "localhost")], &[]),
            ],
            expect: vec![
                (
                    1,
                    "new incident: no open incident shares host.name=ws-1 within 24h \
                     (ignored noisy entities: user.name=SYSTEM)",
                ),
                (
                    2,
                    "new incident: no open incident shares host.name=ws-2 within 24h \
                     (ignored noisy entities: user.name=SYSTEM)",
                ),
                (
                    3,
                    "new incident: the alert has no entity to group on \
                     (ignored noisy entities: source.ip=127.0.0.1, user.name=-)",
                ),
                (
                    4,
                    "new incident: the alert has no entity to group on \
                     (ignored noisy entities: source.ip=::1, host.name=localhost)",
                ),
            ],
        },
        Case {
            name: "window expiry starts a new incident",
            alerts: vec![
                alert(1, 0, &[("user.name", "dave")], &[]),
                alert(2, 24, &[("user.name", "dave")], &[]),
                alert(3, 49, &[("user.name", "dave")], &[]),
            ],
            expect: vec![
                (1, "new incident: no open incident shares user.name=dave within 24h"),
                (1, "joined because user.name=dave (shared with alert 1)"),
                (
                    2,
                    "new incident: no open incident shares user.name=dave within 24h; \
                     user.name=dave was last seen in incident 1 at 2026-03-03T09:00:00Z, \
                     outside the window",
                ),
            ],
        },
        Case {
            name: "ATT&CK progression on an account joins past the window",
            alerts: vec![
                alert(3, 0, &[("user.name", "erin")], &["attack.credential-access"]),
                alert(4, 72, &[("user.name", "erin"), ("host.name", "fs-01")], &["attack.lateral_movement"]),
                // Same tactic again later: no progression, new incident.
                alert(5, 200, &[("user.name", "erin")], &["attack.lateral_movement"]),
            ],
            expect: vec![
                (1, "new incident: no open incident shares user.name=erin within 24h"),
                (
                    1,
                    "joined because user.name=erin progresses ATT&CK credential_access → \
                     lateral_movement (after alert 3)",
                ),
                (
                    2,
                    "new incident: no open incident shares user.name=erin within 24h; \
                     user.name=erin was last seen in incident 1 at 2026-03-05T09:00:00Z, \
                     outside the window",
                ),
            ],
        },
        Case {
            name: "progression never joins on an address",
            alerts: vec![
                alert(1, 0, &[("source.ip", "192.0.2.1")], &["attack.initial_access"]),
                alert(2, 48, &[("source.ip", "192.0.2.1")], &["attack.impact"]),
            ],
            expect: vec![
                (1, "new incident: no open incident shares source.ip=192.0.2.1 within 24h"),
                (
                    2,
                    "new incident: no open incident shares source.ip=192.0.2.1 within 24h; \
                     source.ip=192.0.2.1 was last seen in incident 1 at 2026-03-02T09:00:00Z, \
                     outside the window",
                ),
            ],
        },
        Case {
            name: "two matching incidents: the most recent wins, the other is named",
            alerts: vec![
                alert(1, 0, &[("user.name", "frank")], &[]),
                alert(2, 1, &[("host.name", "ws-9")], &[]),
                alert(3, 2, &[("user.name", "frank"), ("host.name", "ws-9")], &[]),
            ],
            expect: vec![
                (1, "new incident: no open incident shares user.name=frank within 24h"),
                (2, "new incident: no open incident shares host.name=ws-9 within 24h"),
                (
                    2,
                    "joined because host.name=ws-9 (shared with alert 2); also matches \
                     incident 1 (incidents are not merged automatically)",
                ),
            ],
        },
        Case {
            name: "an out-of-order older alert still joins within the window",
            alerts: vec![
                alert(1, 10, &[("host.name", "ws-3")], &[]),
                alert(2, -5, &[("host.name", "ws-3")], &[]),
            ],
            expect: vec![
                (1, "new incident: no open incident shares host.name=ws-3 within 24h"),
                (1, "joined because host.name=ws-3 (shared with alert 1)"),
            ],
        },
    ]
}

#[test]
fn grouping_scenarios() {
    for case in cases() {
        assert_eq!(case.alerts.len(), case.expect.len(), "{}", case.name);
        let mut sim = Sim::new(GrouperConfig::default());
        for (a, (want_incident, want_because)) in case.alerts.iter().zip(&case.expect) {
            let (got_incident, got_because) = sim.ingest(a);
            assert_eq!(
                (got_incident, got_because.as_str()),
                (*want_incident, *want_because),
                "case {:?}, alert {}",
                case.name,
                a.alert_id
            );
        }
    }
}

#[test]
fn window_is_configurable() {
    let mut sim = Sim::new(GrouperConfig {
        window: TimeDelta::hours(1),
        ..GrouperConfig::default()
    });
    assert_eq!(sim.ingest(&alert(1, 0, &[("user.name", "g")], &[])).0, 1);
    let (id, because) = sim.ingest(&alert(2, 2, &[("user.name", "g")], &[]));
    assert_eq!(id, 2);
    assert!(because.contains("within 1h"), "{because}");
}

#[test]
fn site_specific_noisy_values() {
    let mut config = GrouperConfig::default();
    config.noisy_values.push("10.0.0.1".into());
    let mut sim = Sim::new(config);
    sim.ingest(&alert(
        1,
        0,
        &[("source.ip", "10.0.0.1"), ("user.name", "a")],
        &[],
    ));
    let (id, because) = sim.ingest(&alert(
        2,
        0,
        &[("source.ip", "10.0.0.1"), ("user.name", "b")],
        &[],
    ));
    assert_eq!(id, 2);
    assert!(
        because.ends_with("(ignored noisy entities: source.ip=10.0.0.1)"),
        "{because}"
    );
}

#[test]
fn absorb_keeps_span_and_furthest_tactic() {
    let g = Grouper::default();
    let mut st = OpenIncident {
        id: IncidentId(1),
        entities: Vec::new(),
    };
    g.absorb(
        &mut st,
        &alert(1, 5, &[("user.name", "h")], &["attack.discovery"]),
    );
    g.absorb(
        &mut st,
        &alert(2, 1, &[("USER.NAME", " H ")], &["attack.execution"]),
    );
    assert_eq!(st.entities.len(), 1);
    let e = &st.entities[0];
    assert_eq!((e.field.as_str(), e.value.as_str()), ("user.name", "h"));
    assert_eq!(e.last_seen - e.first_seen, TimeDelta::hours(4));
    assert_eq!(e.alert_id, 1, "the latest sighting stays the reference");
    assert_eq!(e.tactic, Some((Tactic::Discovery, 1)));
}

#[test]
fn span_formatting() {
    assert_eq!(fmt_span(TimeDelta::hours(24)), "24h");
    assert_eq!(fmt_span(TimeDelta::days(7)), "7d");
    assert_eq!(fmt_span(TimeDelta::minutes(90)), "90m");
    assert_eq!(fmt_span(TimeDelta::seconds(5)), "5s");
}
