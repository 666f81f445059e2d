//! The case store through its public API only: a VPN intrusion end to end, persistence across
//! reopen, concurrent use, and many random alerts and operations.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use mamori_cases::{
    AlertInput, CaseStore, Error, HistoryAction, IncidentFilter, IncidentId, IncidentKind, Outcome,
    Phase, Status,
};
use mamori_event::{Level, RuleId};

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap() + TimeDelta::minutes(min)
}

fn alert(
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
        time: t(min),
        entities: entities
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect(),
        tags: tags.iter().map(|s| s.to_string()).collect(),
        event_seqs: vec![id as u64 * 100],
    }
}

/// Password spraying against the VPN, a successful login from the same source, then lateral
/// movement from the account three days later (past the 24h window, joined by ATT&CK
/// progression), and an unrelated SSH brute force.
#[test]
fn vpn_intrusion_end_to_end() {
    let s = CaseStore::open_in_memory().unwrap();
    let steps: Vec<(AlertInput, i64, Outcome, &str)> = vec![
        (
            alert(1, "mamori_vpn_spray", "VPN Password Spraying", Level::High, 0,
                &[("source.ip", "203.0.113.50"), ("user.name", "-")],
                &["attack.credential-access", "attack.t1110.003"]),
            1, Outcome::Created,
            "new incident: no open incident shares source.ip=203.0.113.50 within 24h \
             (ignored noisy entities: user.name=-)",
        ),
        (
            alert(2, "5b0f3c1e-2d6a-4b8e-9f1a-7c3d2e1b0a05", "VPN Login Success After Password Spraying",
                Level::Critical, 40,
                &[("source.ip", "203.0.113.50"), ("user.name", "alice")],
                &["attack.initial-access", "attack.t1133", "attack.t1078", "attack.t1110.003"]),
            1, Outcome::Joined,
            "joined because source.ip=203.0.113.50 (shared with alert 1)",
        ),
        (
            alert(3, "ssh_bf", "SSH Brute Force", Level::Medium, 60,
                &[("source.ip", "198.51.100.9"), ("host.name", "bastion")],
                &["attack.credential_access", "attack.t1110.001"]),
            2, Outcome::Created,
            "new incident: no open incident shares source.ip=198.51.100.9, host.name=bastion within 24h",
        ),
        (
            alert(4, "smb_lateral", "Remote service creation via SMB", Level::High, 3 * 24 * 60,
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
    let inc = s.assign(inc.id, Some("tanaka"), "lead", t(5000)).unwrap();
    assert_eq!(inc.assignee.as_deref(), Some("tanaka"));
    let inc = s
        .set_phase(inc.id, Phase::Containment, "tanaka", None, t(5001))
        .unwrap();
    let reset = inc
        .tasks
        .iter()
        .find(|t| t.phase == Phase::Containment && t.text_en.contains("EVERY VPN user"))
        .expect("containment tasks created on entry");
    assert!(reset.text_ja.contains("全ユーザー"));
    let inc = s
        .complete_task(inc.id, reset.id, "suzuki", t(5002))
        .unwrap();
    let inc = s
        .add_evidence(inc.id, "vault:vpn-logs-2026-11-23", "suzuki", t(5003))
        .unwrap();
    let inc = s
        .add_note(
            inc.id,
            "tanaka",
            "alice confirmed by phone: not her login",
            t(5004),
        )
        .unwrap();
    let e = s.close(inc.id, "tanaka", "", t(5005)).unwrap_err();
    assert!(matches!(e, Error::InvalidTransition { .. }), "{e}");
    let inc = s
        .close(
            inc.id,
            "tanaka",
            "VPN without MFA; spraying went unnoticed for 40 minutes.",
            t(6000),
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

#[test]
fn everything_survives_reopening_including_grouping_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.sqlite");
    let first = {
        let s = CaseStore::open(&path).unwrap();
        let (id, ..) = s
            .ingest_alert(
                &alert(
                    1,
                    "r",
                    "Suspicious logon",
                    Level::Medium,
                    0,
                    &[("user.name", "bob")],
                    &["attack.credential_access"],
                ),
                t(0),
            )
            .unwrap();
        s.set_phase(id, Phase::Containment, "lead", None, t(1))
            .unwrap();
        s.add_note(id, "lead", "メモ: 本人確認済み", t(2)).unwrap()
    };
    let s = CaseStore::open(&path).unwrap();
    assert_eq!(s.get(first.id).unwrap(), first);
    // Within the window: joins through the persisted entity state.
    let (id, outcome, because) = s
        .ingest_alert(
            &alert(
                2,
                "r2",
                "Another",
                Level::Low,
                60,
                &[("user.name", "BOB")],
                &[],
            ),
            t(60),
        )
        .unwrap();
    assert_eq!((id, outcome), (first.id, Outcome::Joined));
    assert_eq!(
        because,
        "joined because user.name=BOB (shared with alert 1)"
    );
    drop(s);
    // Past the window, a later tactic on the same account still joins after another reopen.
    let s = CaseStore::open(&path).unwrap();
    let (id, outcome, because) = s
        .ingest_alert(
            &alert(
                3,
                "r3",
                "Exfil",
                Level::High,
                4 * 24 * 60,
                &[("user.name", "bob")],
                &["attack.exfiltration"],
            ),
            t(4 * 24 * 60),
        )
        .unwrap();
    assert_eq!((id, outcome), (first.id, Outcome::Joined));
    assert!(
        because.contains("progresses ATT&CK credential_access → exfiltration (after alert 1)"),
        "{because}"
    );
    assert_eq!(s.get(id).unwrap().kind, IncidentKind::DataExfiltration);
}

#[test]
fn shared_across_threads() {
    let s = Arc::new(CaseStore::open_in_memory().unwrap());
    let handles: Vec<_> = (0..4)
        .map(|th| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..25 {
                    let id = th * 1000 + i;
                    let host = format!("host-{}", i % 5);
                    s.ingest_alert(
                        &alert(id, "r", "A", Level::Low, i, &[("host.name", &host)], &[]),
                        t(i),
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

#[test]
fn many_random_alerts_and_operations_keep_the_invariants() {
    let s = CaseStore::open_in_memory().unwrap();
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
            time: t(rng.below(30 * 24 * 60) as i64 - 100),
            entities,
            tags: (0..rng.below(3))
                .map(|_| rng.pick(&tags).to_string())
                .collect(),
            event_seqs: (0..rng.below(3)).map(|_| rng.below(50)).collect(),
        };
        let (id, outcome, because) = s.ingest_alert(&a, t(i)).unwrap();
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
                    t(i),
                )
                .map(|_| ()),
            1 => s
                .close(
                    target,
                    "op",
                    if rng.below(2) == 0 { "" } else { "done" },
                    t(i),
                )
                .map(|_| ()),
            2 => s
                .complete_task(target, rng.below(12) as u32, "op", t(i))
                .map(|_| ()),
            3 => s
                .assign(target, Some(rng.pick(&["x", "", "y"])), "op", t(i))
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
