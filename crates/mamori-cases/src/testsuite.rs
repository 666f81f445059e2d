//! The one behavioural suite every case-store backend passes (SQLite in this crate's tests,
//! PostgreSQL in `mamori-cluster`'s): grouping, held low alerts, the phase machine, lists,
//! persistence across reopening and concurrent writers, through [`CaseStore`]'s public API.
//!
//! Each check is a function taking `open`, which opens the *same* fresh, empty store each time
//! it is called (a second call is a restart, or a second node on the same database). Run them
//! all with [`case_store_suite!`](crate::case_store_suite), one `#[test]` per check so they
//! run in parallel and fail by name. Failures panic.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use mamori_event::{Level, RuleId};

use crate::{
    AlertInput, CaseStore, Error, Grouped, HistoryAction, IncidentFilter, IncidentId, IncidentKind,
    Outcome, Phase, Status, MAX_ALERT_ENTITIES,
};

/// One `#[test]` per check of [`crate::testsuite`]. `$fixture` is a function returning
/// `Option<(impl Fn() -> CaseStore, G)>`: the opener of a fresh store and a guard kept alive
/// while the check runs; `None` skips the check (the fixture says why, e.g. no database
/// server).
#[macro_export]
macro_rules! case_store_suite {
    ($fixture:path) => {
        $crate::case_store_suite!(@each $fixture;
            re_ingesting_an_alert_only_adds_its_new_events,
            closed_incidents_are_not_joined,
            list_filters_pages_and_counts,
            missing_incidents_and_tasks_are_not_found,
            a_refused_change_is_not_written,
            oversized_and_untitled_alerts_are_invalid,
            a_low_alert_opens_no_incident_but_joins_one_that_shares_its_entities,
            held_alerts_join_only_an_incident_that_shares_an_entity_within_the_window,
            held_alerts_are_bounded_replaced_when_counted_again_and_survive_a_restart,
            vpn_intrusion_end_to_end,
            everything_survives_reopening_including_grouping_state,
            shared_across_threads,
            two_nodes_grouping_at_once_open_one_incident_per_entity,
            entity_values_are_kept_byte_for_byte,
            actions_and_evidence_are_recorded,
            many_random_alerts_and_operations_keep_the_invariants
        );
    };
    (@each $fixture:path; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                let Some((open, _guard)) = $fixture() else {
                    return;
                };
                $crate::testsuite::$check(&open);
            }
        )+
    };
}

/// 2026-05-01T00:00:00Z plus `h` hours.
pub fn t(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h)
}

/// 2026-11-23T01:00:00Z plus `min` minutes.
fn tm(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap() + TimeDelta::minutes(min)
}

/// Alert `id` of rule `r<id>` at hour `h`.
pub fn alert(id: i64, h: i64, level: Level, entities: &[(&str, &str)]) -> AlertInput {
    AlertInput {
        alert_id: id,
        rule_id: RuleId(format!("r{id}").into()),
        title: format!("Alert {id}"),
        title_ja: None,
        level,
        time: t(h),
        entities: entities
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect(),
        tags: vec![],
        event_seqs: vec![id as u64],
    }
}

/// An alert of a named rule at minute `min`, with tags.
fn named(
    id: i64,
    rule: &str,
    title: &str,
    level: Level,
    min: i64,
    entities: &[(&str, &str)],
    tags: &[&str],
) -> AlertInput {
    AlertInput {
        alert_id: id,
        rule_id: RuleId(rule.into()),
        title: title.into(),
        title_ja: None,
        level,
        time: tm(min),
        entities: entities
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect(),
        tags: tags.iter().map(|s| s.to_string()).collect(),
        event_seqs: vec![id as u64 * 100],
    }
}

/// Every incident, with its documents.
fn all_incidents(s: &CaseStore) -> Vec<crate::Incident> {
    let total = s.count(&IncidentFilter::default()).unwrap() as usize;
    let mut out = Vec::new();
    for offset in (0..total).step_by(crate::MAX_LIMIT) {
        for sum in s
            .list(&IncidentFilter {
                limit: Some(crate::MAX_LIMIT),
                offset: Some(offset),
                ..Default::default()
            })
            .unwrap()
        {
            out.push(s.get(sum.id).unwrap());
        }
    }
    assert_eq!(out.len(), total);
    out
}

/// Issue #20: two servers (two handles on one database) group alerts at the same moment; the
/// result is what one server grouping them one after the other gives. An entity both alerts
/// carry gives one incident, not one per node; a held low alert sharing one entity with each
/// alert is taken in once, and its entities then join the other alert to that incident.
pub fn two_nodes_grouping_at_once_open_one_incident_per_entity(open: &dyn Fn() -> CaseStore) {
    const ROUNDS: i64 = 12;
    let nodes = [Arc::new(open()), Arc::new(open())];
    // Low alerts held before the race, each sharing one entity with each racer of its round.
    for r in 0..ROUNDS {
        let ip = format!("198.51.100.{r}");
        let user = format!("user-{r}");
        let low = alert(
            10_000 + r,
            r,
            Level::Low,
            &[("source.ip", &ip), ("user.name", &user)],
        );
        assert!(matches!(
            nodes[0].group_alert(&low, t(r)).unwrap(),
            Grouped::Held(_)
        ));
    }
    let barrier = Arc::new(Barrier::new(2));
    std::thread::scope(|sc| {
        for (n, node) in nodes.iter().enumerate() {
            let (node, barrier) = (Arc::clone(node), Arc::clone(&barrier));
            sc.spawn(move || {
                let n = n as i64;
                for r in 0..ROUNDS {
                    // Same entity on both nodes at once: one incident.
                    let shared = format!("shared-{r}");
                    let a = alert(
                        20_000 + n * 1000 + r,
                        r,
                        Level::High,
                        &[("host.name", &shared)],
                    );
                    barrier.wait();
                    node.group_alert(&a, t(r)).unwrap();
                    // Different entities, one held alert sharing one with each.
                    let mine = if n == 0 {
                        ("source.ip", format!("198.51.100.{r}"))
                    } else {
                        ("user.name", format!("user-{r}"))
                    };
                    let host = format!("own-{n}-{r}");
                    let b = alert(
                        40_000 + n * 1000 + r,
                        r,
                        Level::High,
                        &[(mine.0, &mine.1), ("host.name", &host)],
                    );
                    barrier.wait();
                    node.group_alert(&b, t(r)).unwrap();
                }
            });
        }
    });
    let s = &nodes[1];
    let all = all_incidents(s);
    let mut where_alert: HashMap<i64, Vec<IncidentId>> = HashMap::new();
    for inc in &all {
        for a in &inc.alerts {
            where_alert.entry(a.alert_id).or_default().push(inc.id);
        }
    }
    for (id, incs) in &where_alert {
        assert_eq!(incs.len(), 1, "alert {id} is in incidents {incs:?}");
    }
    for r in 0..ROUNDS {
        let at = |id: i64| where_alert[&id][0];
        assert_eq!(
            at(20_000 + r),
            at(21_000 + r),
            "round {r}: one entity, two incidents"
        );
        // Whichever node took the held alert in, its other entity joins the other node's.
        assert_eq!(at(40_000 + r), at(10_000 + r), "round {r}");
        assert_eq!(at(41_000 + r), at(10_000 + r), "round {r}");
    }
    assert_eq!(all.len() as i64, 2 * ROUNDS);
    assert_eq!(where_alert.len() as i64, 5 * ROUNDS);
    assert_eq!(s.held_count().unwrap(), 0);
}

/// Log content is attacker-controlled: an entity value with NUL, quotes, SQL and non-ASCII
/// text groups like any other (case-insensitively) and reads back exactly.
pub fn entity_values_are_kept_byte_for_byte(open: &dyn Fn() -> CaseStore) {
    let s = open();
    let odd = "ボブ\0'; DROP TABLE incidents; --\"\u{202e}";
    let (id, o, _) = s
        .ingest_alert(&alert(1, 0, Level::High, &[("user.name", odd)]), t(0))
        .unwrap();
    assert_eq!(o, Outcome::Created);
    let upper = odd.to_uppercase();
    let (j, o, why) = s
        .ingest_alert(&alert(2, 1, Level::High, &[("User.Name", &upper)]), t(1))
        .unwrap();
    assert_eq!((j, o), (id, Outcome::Joined), "{why}");
    let (k, o, _) = s
        .ingest_alert(&alert(3, 1, Level::High, &[("user.name", "ボブ")]), t(1))
        .unwrap();
    assert_eq!(
        o,
        Outcome::Created,
        "a prefix up to the NUL is another value"
    );
    assert_ne!(k, id);
    assert_eq!(s.get(id).unwrap().entities[0].value, odd);
    // Held and taken in by the same odd value.
    let ip = "10.0.0.1\0evil";
    assert!(matches!(
        s.group_alert(&alert(4, 2, Level::Low, &[("source.ip", ip)]), t(2))
            .unwrap(),
        Grouped::Held(_)
    ));
    let Grouped::Incident(h, Outcome::Created, why) = s
        .group_alert(&alert(5, 3, Level::High, &[("source.ip", ip)]), t(3))
        .unwrap()
    else {
        panic!("a high alert opens an incident");
    };
    assert!(why.contains("took in held low alert(s) 4"), "{why}");
    assert_eq!(s.get(h).unwrap().alerts.len(), 2);
}

/// Response records and evidence references are kept on the incident, in order, with who.
pub fn actions_and_evidence_are_recorded(open: &dyn Fn() -> CaseStore) {
    let s = open();
    let (id, ..) = s
        .ingest_alert(&alert(1, 0, Level::High, &[("host.name", "ws-7")]), t(0))
        .unwrap();
    let entry = |n: u32| crate::ActionEntry {
        at: t(1),
        by: "responder".into(),
        kind: "block_ip".into(),
        detail: serde_json::json!({"address": "203.0.113.7", "n": n}),
    };
    s.record_action(id, entry(1)).unwrap();
    s.record_action(id, entry(2)).unwrap();
    s.add_evidence(id, "vault:entry-42", "suzuki", t(2))
        .unwrap();
    let inc = s.get(id).unwrap();
    assert_eq!(inc.actions, vec![entry(1), entry(2)]);
    assert!(inc
        .history
        .iter()
        .any(|h| h.action == HistoryAction::Evidence && h.by == "suzuki"));
    assert!(matches!(
        s.record_action(IncidentId(99), entry(3)),
        Err(Error::NotFound(IncidentId(99)))
    ));
}

pub fn re_ingesting_an_alert_only_adds_its_new_events(open: &dyn Fn() -> CaseStore) {
    let s = open();
    let mut a = alert(1, 0, Level::Low, &[("user.name", "alice")]);
    let (id, o, _) = s.ingest_alert(&a, t(0)).unwrap();
    assert_eq!(o, Outcome::Created);
    a.event_seqs = vec![1, 2, 3];
    let (id2, o, why) = s.ingest_alert(&a, t(1)).unwrap();
    assert_eq!((id2, o), (id, Outcome::AlreadyLinked));
    assert_eq!(why, "alert 1 is already linked to incident 1");
    let inc = s.get(id).unwrap();
    assert_eq!(inc.alerts.len(), 1);
    assert_eq!(inc.events, vec![1, 2, 3]);
}

pub fn closed_incidents_are_not_joined(open: &dyn Fn() -> CaseStore) {
    let s = open();
    let (id, ..) = s
        .ingest_alert(&alert(1, 0, Level::Low, &[("host.name", "ws-1")]), t(0))
        .unwrap();
    s.close(id, "lead", "benign admin activity", t(1)).unwrap();
    let (id2, o, why) = s
        .ingest_alert(&alert(2, 1, Level::Low, &[("host.name", "ws-1")]), t(1))
        .unwrap();
    assert_eq!(o, Outcome::Created);
    assert_ne!(id, id2);
    assert_eq!(
        why,
        "new incident: no open incident shares host.name=ws-1 within 24h"
    );
}

pub fn list_filters_pages_and_counts(open: &dyn Fn() -> CaseStore) {
    let s = open();
    let levels = [Level::Low, Level::High, Level::Critical, Level::Medium];
    for (i, l) in levels.iter().enumerate() {
        let user = format!("u{i}");
        s.ingest_alert(
            &alert(i as i64 + 1, i as i64, *l, &[("user.name", &user)]),
            t(i as i64),
        )
        .unwrap();
    }
    s.set_phase(IncidentId(2), Phase::Containment, "lead", None, t(10))
        .unwrap();
    s.close(IncidentId(4), "lead", "false positive", t(11))
        .unwrap();

    let ids =
        |f: IncidentFilter| -> Vec<i64> { s.list(&f).unwrap().iter().map(|x| x.id.0).collect() };
    assert_eq!(
        ids(IncidentFilter::default()),
        vec![4, 2, 3, 1],
        "newest activity first"
    );
    assert_eq!(
        ids(IncidentFilter {
            status: Some(Status::Open),
            ..Default::default()
        }),
        vec![2, 3, 1]
    );
    assert_eq!(
        ids(IncidentFilter {
            phase: Some(Phase::Containment),
            ..Default::default()
        }),
        vec![2]
    );
    assert_eq!(
        ids(IncidentFilter {
            min_severity: Some(Level::High),
            ..Default::default()
        }),
        vec![2, 3]
    );
    assert_eq!(
        ids(IncidentFilter {
            kind: Some(IncidentKind::Generic),
            limit: Some(2),
            offset: Some(1),
            ..Default::default()
        }),
        vec![2, 3]
    );
    assert_eq!(
        s.count(&IncidentFilter {
            status: Some(Status::Closed),
            ..Default::default()
        })
        .unwrap(),
        1
    );
    let row = &s
        .list(&IncidentFilter {
            phase: Some(Phase::Containment),
            ..Default::default()
        })
        .unwrap()[0];
    assert_eq!(
        (row.alert_count, row.severity, row.updated_at),
        (1, Level::High, t(10))
    );
    assert!(row.open_tasks > 0);
}

pub fn missing_incidents_and_tasks_are_not_found(open: &dyn Fn() -> CaseStore) {
    let s = open();
    assert!(matches!(
        s.get(IncidentId(9)),
        Err(Error::NotFound(IncidentId(9)))
    ));
    assert_eq!(
        s.add_note(IncidentId(9), "a", "b", t(0))
            .unwrap_err()
            .to_string(),
        "incident 9 not found"
    );
    let (id, ..) = s.ingest_alert(&alert(1, 0, Level::Low, &[]), t(0)).unwrap();
    assert!(matches!(
        s.complete_task(id, 1000, "a", t(0)),
        Err(Error::TaskNotFound { task: 1000, .. })
    ));
}

pub fn a_refused_change_is_not_written(open: &dyn Fn() -> CaseStore) {
    let s = open();
    let (id, ..) = s
        .ingest_alert(&alert(1, 0, Level::Low, &[("user.name", "x")]), t(0))
        .unwrap();
    let before = s.get(id).unwrap();
    assert!(s.close(id, "lead", "", t(1)).is_err());
    assert_eq!(s.get(id).unwrap(), before);
}

pub fn oversized_and_untitled_alerts_are_invalid(open: &dyn Fn() -> CaseStore) {
    let s = open();
    let mut a = alert(1, 0, Level::Low, &[]);
    a.entities = (0..=MAX_ALERT_ENTITIES)
        .map(|i| ("host.name".to_string(), format!("h{i}")))
        .collect();
    assert!(matches!(s.ingest_alert(&a, t(0)), Err(Error::Invalid(_))));
    let mut b = alert(2, 0, Level::Low, &[]);
    b.title = " ".into();
    assert!(matches!(s.ingest_alert(&b, t(0)), Err(Error::Invalid(_))));
    assert_eq!(s.count(&IncidentFilter::default()).unwrap(), 0);
}

/// Issue #14: the internet's failed probes and guessing are one low episode per source and
/// day, every day; each opened an incident (about 38 a month). A low alert now opens none on
/// its own — it says why — and still joins an incident that shares its entities.
pub fn a_low_alert_opens_no_incident_but_joins_one_that_shares_its_entities(
    open: &dyn Fn() -> CaseStore,
) {
    let s = open();
    let low = alert(1, 0, Level::Low, &[("source.ip", "45.10.20.30")]);
    match s.group_alert(&low, t(0)).unwrap() {
        Grouped::Held(why) => {
            assert!(why.contains("low alert opens no incident"), "{why}");
            assert!(why.contains("medium"), "{why}");
        }
        g => panic!("{g:?}"),
    }
    assert!(s.list(&IncidentFilter::default()).unwrap().is_empty());
    let high = alert(
        2,
        1,
        Level::High,
        &[("user.name", "sato"), ("source.ip", "45.10.20.30")],
    );
    let Grouped::Incident(id, Outcome::Created, why) = s.group_alert(&high, t(1)).unwrap() else {
        panic!("a high alert opens an incident");
    };
    // The held low alert that shares its address is taken into the incident it opened.
    assert!(why.contains("took in held low alert(s) 1"), "{why}");
    let inc = s.get(id).unwrap();
    assert_eq!(
        inc.alerts.iter().map(|a| a.alert_id).collect::<Vec<_>>(),
        [2, 1]
    );
    assert!(inc.events.contains(&1) && inc.events.contains(&2));
    assert_eq!(s.held_count().unwrap(), 0);
    let later = alert(3, 2, Level::Low, &[("source.ip", "45.10.20.30")]);
    match s.group_alert(&later, t(2)).unwrap() {
        Grouped::Incident(j, Outcome::Joined, why) => {
            assert_eq!(j, id);
            assert!(why.contains("source.ip=45.10.20.30"), "{why}");
        }
        g => panic!("{g:?}"),
    }
    // `ingest_alert` (imports, tests) still opens whatever it is given.
    let (_, o, _) = s
        .ingest_alert(&alert(4, 3, Level::Low, &[("host.name", "ws-9")]), t(3))
        .unwrap();
    assert_eq!(o, Outcome::Created);
}

pub fn held_alerts_join_only_an_incident_that_shares_an_entity_within_the_window(
    open: &dyn Fn() -> CaseStore,
) {
    let s = open();
    let window = s.grouper().window().num_hours();
    let held = |id, h, ip: &str| {
        let g = s
            .group_alert(&alert(id, h, Level::Low, &[("source.ip", ip)]), t(h))
            .unwrap();
        assert!(matches!(g, Grouped::Held(_)), "{g:?}");
    };
    held(1, 0, "198.51.100.7"); // too old for the incident below
    held(2, window + 2, "198.51.100.7"); // shares the address, in the window
    held(3, window + 2, "203.0.113.9"); // another address
    held(4, window + 3, "198.51.100.7"); // a second spray from the same address
    assert_eq!(s.held_count().unwrap(), 4);
    let high = alert(
        10,
        window + 4,
        Level::High,
        &[("user.name", "sato"), ("source.ip", "198.51.100.7")],
    );
    let Grouped::Incident(id, Outcome::Created, why) = s.group_alert(&high, t(window + 4)).unwrap()
    else {
        panic!("a high alert opens an incident");
    };
    assert!(why.contains("took in held low alert(s) 2, 4"), "{why}");
    let inc = s.get(id).unwrap();
    let mut ids: Vec<i64> = inc.alerts.iter().map(|a| a.alert_id).collect();
    ids.sort();
    assert_eq!(ids, [2, 4, 10]);
    assert_eq!(
        inc.severity,
        Level::High,
        "held alerts never lower the severity"
    );
    // The history says why each joined.
    let joined = serde_json::to_string(&inc.history).unwrap();
    assert!(
        joined.contains("held low alert joined when alert 10 grouped"),
        "{joined}"
    );
    // What was not taken is still held; a taken alert counted again stays linked.
    assert_eq!(s.held_count().unwrap(), 2);
    let again = alert(2, window + 2, Level::Low, &[("source.ip", "198.51.100.7")]);
    assert!(matches!(
        s.group_alert(&again, t(window + 5)).unwrap(),
        Grouped::Incident(j, Outcome::AlreadyLinked, _) if j == id
    ));
    // The entities of the taken alerts now group later alerts: the same address joins.
    let later = alert(11, window + 6, Level::Low, &[("source.ip", "198.51.100.7")]);
    assert!(matches!(
        s.group_alert(&later, t(window + 6)).unwrap(),
        Grouped::Incident(j, Outcome::Joined, _) if j == id
    ));
}

pub fn held_alerts_are_bounded_replaced_when_counted_again_and_survive_a_restart(
    open: &dyn Fn() -> CaseStore,
) {
    let s = open().with_max_held(3);
    for i in 0..5 {
        let a = alert(
            i + 1,
            i,
            Level::Low,
            &[("source.ip", &format!("192.0.2.{i}"))],
        );
        assert!(matches!(s.group_alert(&a, t(i)).unwrap(), Grouped::Held(_)));
    }
    // The two oldest are forgotten, with their entities (see below: not taken).
    assert_eq!(s.held_count().unwrap(), 3);
    // The same alert counted again (more events) replaces its held copy.
    let mut again = alert(5, 4, Level::Low, &[("source.ip", "192.0.2.4")]);
    again.event_seqs = vec![5, 6, 7];
    assert!(matches!(
        s.group_alert(&again, t(5)).unwrap(),
        Grouped::Held(_)
    ));
    assert_eq!(s.held_count().unwrap(), 3);
    drop(s);
    let s = open();
    assert_eq!(s.held_count().unwrap(), 3);
    let high = alert(9, 5, Level::High, &[("source.ip", "192.0.2.4")]);
    let Grouped::Incident(id, Outcome::Created, _) = s.group_alert(&high, t(6)).unwrap() else {
        panic!("a high alert opens an incident");
    };
    let inc = s.get(id).unwrap();
    assert!(inc.alerts.iter().any(|a| a.alert_id == 5));
    for seq in [5, 6, 7, 9] {
        assert!(inc.events.contains(&seq), "event {seq} in {:?}", inc.events);
    }
    // An address forgotten at the cap is not taken.
    let old = alert(20, 5, Level::High, &[("source.ip", "192.0.2.0")]);
    let Grouped::Incident(_, Outcome::Created, why) = s.group_alert(&old, t(6)).unwrap() else {
        panic!("a high alert opens an incident");
    };
    assert!(!why.contains("took in"), "{why}");
}

/// Password spraying against the VPN, a successful login from the same source, then lateral
/// movement from the account three days later (past the 24h window, joined by ATT&CK
/// progression), and an unrelated SSH brute force.
pub fn vpn_intrusion_end_to_end(open: &dyn Fn() -> CaseStore) {
    let s = open();
    let steps: Vec<(AlertInput, i64, Outcome, &str)> = vec![
        (
            named(1, "mamori_vpn_spray", "VPN Password Spraying", Level::High, 0,
                &[("source.ip", "203.0.113.50"), ("user.name", "-")],
                &["attack.credential-access", "attack.t1110.003"]),
            1, Outcome::Created,
            "new incident: no open incident shares source.ip=203.0.113.50 within 24h \
             (ignored noisy entities: user.name=-)",
        ),
        (
            named(2, "5b0f3c1e-2d6a-4b8e-9f1a-7c3d2e1b0a05", "VPN Login Success After Password Spraying",
                Level::Critical, 40,
                &[("source.ip", "203.0.113.50"), ("user.name", "alice")],
                &["attack.initial-access", "attack.t1133", "attack.t1078", "attack.t1110.003"]),
            1, Outcome::Joined,
            "joined because source.ip=203.0.113.50 (shared with alert 1)",
        ),
        (
            named(3, "ssh_bf", "SSH Brute Force", Level::Medium, 60,
                &[("source.ip", "198.51.100.9"), ("host.name", "bastion")],
                &["attack.credential_access", "attack.t1110.001"]),
            2, Outcome::Created,
            "new incident: no open incident shares source.ip=198.51.100.9, host.name=bastion within 24h",
        ),
        (
            named(4, "smb_lateral", "Remote service creation via SMB", Level::High, 3 * 24 * 60,
                &[("user.name", "alice"), ("host.name", "fs-01")],
                &["attack.lateral_movement", "attack.t1021.002"]),
            1, Outcome::Joined,
            "joined because user.name=alice progresses ATT&CK initial_access → lateral_movement (after alert 2)",
        ),
    ];
    for (a, want_id, want_outcome, want_because) in &steps {
        let (id, outcome, because) = s.ingest_alert(a, a.time).unwrap();
        assert_eq!(
            (id, outcome, because.as_str()),
            (IncidentId(*want_id), *want_outcome, *want_because),
            "alert {}",
            a.alert_id
        );
    }

    let inc = s.get(IncidentId(1)).unwrap();
    assert_eq!(inc.kind, IncidentKind::VpnCompromise);
    assert_eq!(inc.severity, Level::Critical);
    assert_eq!(
        inc.alerts.iter().map(|a| a.alert_id).collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert_eq!(inc.events, vec![100, 200, 400]);
    let shown: Vec<String> = inc
        .entities
        .iter()
        .map(|e| format!("{}={}", e.field, e.value))
        .collect();
    assert_eq!(
        shown,
        [
            "source.ip=203.0.113.50",
            "user.name=alice",
            "host.name=fs-01"
        ]
    );
    assert_eq!(s.get(IncidentId(2)).unwrap().kind, IncidentKind::BruteForce);

    // Work the incident.
    let inc = s.assign(inc.id, Some("tanaka"), "lead", tm(5000)).unwrap();
    assert_eq!(inc.assignee.as_deref(), Some("tanaka"));
    let inc = s
        .set_phase(inc.id, Phase::Containment, "tanaka", None, tm(5001))
        .unwrap();
    let reset = inc
        .tasks
        .iter()
        .find(|t| t.phase == Phase::Containment && t.text_en.contains("EVERY VPN user"))
        .expect("containment tasks created on entry");
    assert!(reset.text_ja.contains("全ユーザー"));
    let inc = s
        .complete_task(inc.id, reset.id, "suzuki", tm(5002))
        .unwrap();
    let inc = s
        .add_evidence(inc.id, "vault:vpn-logs-2026-11-23", "suzuki", tm(5003))
        .unwrap();
    let inc = s
        .add_note(
            inc.id,
            "tanaka",
            "alice confirmed by phone: not her login",
            tm(5004),
        )
        .unwrap();
    let e = s.close(inc.id, "tanaka", "", tm(5005)).unwrap_err();
    assert!(matches!(e, Error::InvalidTransition { .. }), "{e}");
    let inc = s
        .close(
            inc.id,
            "tanaka",
            "VPN without MFA; spraying went unnoticed for 40 minutes.",
            tm(6000),
        )
        .unwrap();
    assert_eq!(
        (inc.status, inc.phase),
        (Status::Closed, Phase::PostIncident)
    );
    let actions: Vec<HistoryAction> = inc.history.iter().map(|h| h.action).collect();
    for a in [
        HistoryAction::Created,
        HistoryAction::AlertJoined,
        HistoryAction::Severity,
        HistoryAction::Assigned,
        HistoryAction::Phase,
        HistoryAction::TaskDone,
        HistoryAction::Evidence,
        HistoryAction::Note,
        HistoryAction::Closed,
    ] {
        assert!(actions.contains(&a), "history lacks {a:?}: {actions:?}");
    }
}

pub fn everything_survives_reopening_including_grouping_state(open: &dyn Fn() -> CaseStore) {
    let first = {
        let s = open();
        let (id, ..) = s
            .ingest_alert(
                &named(
                    1,
                    "r",
                    "Suspicious logon",
                    Level::Medium,
                    0,
                    &[("user.name", "bob")],
                    &["attack.credential_access"],
                ),
                tm(0),
            )
            .unwrap();
        s.set_phase(id, Phase::Containment, "lead", None, tm(1))
            .unwrap();
        s.add_note(id, "lead", "メモ: 本人確認済み", tm(2)).unwrap()
    };
    let s = open();
    assert_eq!(s.get(first.id).unwrap(), first);
    // Within the window: joins through the persisted entity state.
    let (id, outcome, because) = s
        .ingest_alert(
            &named(
                2,
                "r2",
                "Another",
                Level::Low,
                60,
                &[("user.name", "BOB")],
                &[],
            ),
            tm(60),
        )
        .unwrap();
    assert_eq!((id, outcome), (first.id, Outcome::Joined));
    assert_eq!(
        because,
        "joined because user.name=BOB (shared with alert 1)"
    );
    drop(s);
    // Past the window, a later tactic on the same account still joins after another reopen.
    let s = open();
    let (id, outcome, because) = s
        .ingest_alert(
            &named(
                3,
                "r3",
                "Exfil",
                Level::High,
                4 * 24 * 60,
                &[("user.name", "bob")],
                &["attack.exfiltration"],
            ),
            tm(4 * 24 * 60),
        )
        .unwrap();
    assert_eq!((id, outcome), (first.id, Outcome::Joined));
    assert!(
        because.contains("progresses ATT&CK credential_access → exfiltration (after alert 1)"),
        "{because}"
    );
    assert_eq!(s.get(id).unwrap().kind, IncidentKind::DataExfiltration);
}

pub fn shared_across_threads(open: &dyn Fn() -> CaseStore) {
    let s = Arc::new(open());
    let handles: Vec<_> = (0..4)
        .map(|th| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..25 {
                    let id = th * 1000 + i;
                    let host = format!("host-{}", i % 5);
                    s.ingest_alert(
                        &named(id, "r", "A", Level::Low, i, &[("host.name", &host)], &[]),
                        tm(i),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let all = s
        .list(&IncidentFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.iter().map(|x| x.alert_count).sum::<usize>(), 100);
    assert_eq!(all.len(), 5, "one incident per host");
}

pub fn many_random_alerts_and_operations_keep_the_invariants(open: &dyn Fn() -> CaseStore) {
    let s = open();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let fields = [
        "user.name",
        "host.name",
        "source.ip",
        "aws.access_key_id",
        "",
        "User.Name",
    ];
    let values = [
        "alice",
        "bob",
        "SYSTEM",
        "-",
        "",
        "127.0.0.1",
        "::1",
        "localhost",
        "10.0.0.7",
        "ws-1",
        "AKIAEXAMPLE",
        "  carol  ",
        "ボブ",
        "a\u{0}b",
    ];
    let tags = [
        "attack.initial_access",
        "attack.execution",
        "attack.lateral-movement",
        "attack.exfiltration",
        "attack.impact",
        "attack.t1486",
        "attack.t1110.003",
        "attack.",
        "attack.t",
        "weird",
        "attack.credential_access",
    ];
    let rules = ["mamori_vpn_spray", "ssh_bf", "x", "shadow_copy_delete", ""];
    let mut levels_by_incident: HashMap<i64, Level> = HashMap::new();
    let mut alert_incident: HashMap<i64, i64> = HashMap::new();
    for i in 0..1500i64 {
        let n = rng.below(4) as usize;
        let entities: Vec<(String, String)> = (0..n)
            .map(|_| (rng.pick(&fields).to_string(), rng.pick(&values).to_string()))
            .collect();
        let a = AlertInput {
            alert_id: if rng.below(20) == 0 { i / 2 } else { i },
            rule_id: RuleId(rng.pick(&rules).into()),
            title: format!("alert {i}"),
            title_ja: None,
            level: Level::ALL[rng.below(5) as usize],
            time: tm(rng.below(30 * 24 * 60) as i64 - 100),
            entities,
            tags: (0..rng.below(3))
                .map(|_| rng.pick(&tags).to_string())
                .collect(),
            event_seqs: (0..rng.below(3)).map(|_| rng.below(50)).collect(),
        };
        let (id, outcome, because) = s.ingest_alert(&a, tm(i)).unwrap();
        assert!(!because.is_empty());
        if outcome != Outcome::AlreadyLinked {
            assert!(alert_incident.insert(a.alert_id, id.0).is_none());
            let l = levels_by_incident.entry(id.0).or_insert(a.level);
            *l = (*l).max(a.level);
        }
        // Random operations; refusals are fine, panics and corrupt state are not.
        let target = IncidentId(1 + rng.below(id.0 as u64 + 1) as i64);
        let r = match rng.below(6) {
            0 => s
                .set_phase(
                    target,
                    Phase::ALL[rng.below(5) as usize],
                    "op",
                    if rng.below(2) == 0 {
                        None
                    } else {
                        Some("re-check")
                    },
                    tm(i),
                )
                .map(|_| ()),
            1 => s
                .close(
                    target,
                    "op",
                    if rng.below(2) == 0 { "" } else { "done" },
                    tm(i),
                )
                .map(|_| ()),
            2 => s
                .complete_task(target, rng.below(12) as u32, "op", tm(i))
                .map(|_| ()),
            3 => s
                .assign(target, Some(rng.pick(&["x", "", "y"])), "op", tm(i))
                .map(|_| ()),
            _ => Ok(()),
        };
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    Error::NotFound(_)
                        | Error::TaskNotFound { .. }
                        | Error::InvalidTransition { .. }
                        | Error::Invalid(_)
                ),
                "unexpected error kind: {e}"
            );
        }
    }
    let all = s
        .list(&IncidentFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    let total = s.count(&IncidentFilter::default()).unwrap() as usize;
    assert_eq!(total, levels_by_incident.len());
    let mut linked = 0;
    for offset in (0..total).step_by(1000) {
        let page = s
            .list(&IncidentFilter {
                limit: Some(1000),
                offset: Some(offset),
                ..Default::default()
            })
            .unwrap();
        for sum in page {
            let inc = s.get(sum.id).unwrap();
            linked += inc.alerts.len();
            assert_eq!(
                Some(&inc.severity),
                levels_by_incident.get(&inc.id.0),
                "severity = max of alerts"
            );
            for a in &inc.alerts {
                assert_eq!(alert_incident.get(&a.alert_id), Some(&inc.id.0));
            }
            let mut ids: Vec<u32> = inc.tasks.iter().map(|t| t.id).collect();
            ids.dedup();
            assert_eq!(ids.len(), inc.tasks.len(), "task ids unique and increasing");
            if inc.status == Status::Closed {
                assert!(inc.lessons_learned.is_some() && inc.phase == Phase::PostIncident);
            }
            assert!(inc.history.iter().all(|h| !h.by.is_empty()));
            assert!(inc
                .tasks
                .iter()
                .any(|t| t.phase == Phase::DetectionAnalysis));
        }
    }
    assert_eq!(linked, alert_incident.len());
    // The run exercised joining, closing and phases, not only creation.
    assert!(linked > total, "{linked} alerts in {total} incidents");
    assert!(all.iter().any(|x| x.status == Status::Closed));
    assert!(all
        .iter()
        .any(|x| x.status == Status::Open && x.phase != Phase::DetectionAnalysis));
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}
