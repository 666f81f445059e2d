use chrono::{TimeDelta, TimeZone};
use mamori_event::{Level, RuleId};

use super::*;
use crate::model::IncidentKind;

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap() + TimeDelta::minutes(min)
}

fn alert(id: i64, rule: &str, title: &str, level: Level, tags: &[&str]) -> AlertInput {
    AlertInput {
        alert_id: id,
        rule_id: RuleId(rule.into()),
        title: title.into(),
        title_ja: None,
        level,
        time: t(0),
        entities: vec![("user.name".into(), "alice".into())],
        tags: tags.iter().map(|s| s.to_string()).collect(),
        event_seqs: vec![id as u64 * 10, id as u64 * 10 + 1],
    }
}

fn ent() -> Vec<Entity> {
    vec![Entity {
        field: "user.name".into(),
        value: "alice".into(),
    }]
}

fn incident() -> (Incident, Playbooks) {
    let books = Playbooks::builtin().unwrap();
    let a = alert(
        1,
        "mamori_vpn_spray",
        "VPN Password Spraying",
        Level::High,
        &[],
    );
    let inc = Incident::new(
        IncidentId(7),
        &a,
        ent(),
        "new incident: test".into(),
        t(0),
        &books,
    );
    (inc, books)
}

fn tasks_in(inc: &Incident, phase: Phase) -> usize {
    inc.tasks.iter().filter(|t| t.phase == phase).count()
}

#[test]
fn creation_enters_detection_with_its_tasks() {
    let (inc, books) = incident();
    assert_eq!(inc.phase, Phase::DetectionAnalysis);
    assert_eq!(inc.status, Status::Open);
    assert_eq!(inc.kind, IncidentKind::VpnCompromise);
    assert_eq!(inc.title, "VPN Password Spraying (alice)");
    let want = books
        .tasks(IncidentKind::VpnCompromise, Phase::DetectionAnalysis)
        .len();
    assert_eq!(tasks_in(&inc, Phase::DetectionAnalysis), want);
    assert_eq!(inc.tasks.len(), want, "only the entered phase has tasks");
    assert_eq!(
        inc.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        (1..=want as u32).collect::<Vec<_>>()
    );
    assert_eq!(inc.history[0].action, HistoryAction::Created);
    assert_eq!(inc.alerts[0].joined_because, "new incident: test");
    assert_eq!(inc.events, vec![10, 11]);
}

#[test]
fn forward_steps_create_tasks_and_record_history() {
    let (mut inc, books) = incident();
    inc.set_phase(Phase::Containment, "bob", None, t(5), &books)
        .unwrap();
    assert!(tasks_in(&inc, Phase::Containment) > 0);
    // Skipping eradication is allowed (forward by more than one step); no eradication tasks.
    inc.set_phase(
        Phase::Recovery,
        "bob",
        Some("appliance replaced, nothing to eradicate"),
        t(9),
        &books,
    )
    .unwrap();
    assert_eq!(tasks_in(&inc, Phase::Eradication), 0);
    assert!(tasks_in(&inc, Phase::Recovery) > 0);
    let h = inc.history.last().unwrap();
    assert_eq!(
        (
            h.action,
            h.by.as_str(),
            h.from.as_deref(),
            h.to.as_deref(),
            h.at
        ),
        (
            HistoryAction::Phase,
            "bob",
            Some("containment"),
            Some("recovery"),
            t(9)
        )
    );
    assert_eq!(
        h.why.as_deref(),
        Some("appliance replaced, nothing to eradicate")
    );
    assert_eq!(inc.updated_at, t(9));
}

#[test]
fn invalid_transitions_are_refused_with_clear_errors() {
    let (mut inc, books) = incident();
    let e = inc
        .set_phase(Phase::DetectionAnalysis, "bob", None, t(1), &books)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot move incident from detection_analysis to detection_analysis: the incident is already in this phase"
    );
    inc.set_phase(Phase::Recovery, "bob", None, t(2), &books)
        .unwrap();
    for why in [None, Some(""), Some("   ")] {
        let e = inc
            .set_phase(Phase::Containment, "bob", why, t(3), &books)
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidTransition { from: Phase::Recovery, to: Phase::Containment, reason }
                if reason.contains("needs a reason")),
            "{e}"
        );
    }
    assert_eq!(
        inc.phase,
        Phase::Recovery,
        "a refused change changes nothing"
    );
    let e = inc
        .set_phase(Phase::Containment, "", Some("x"), t(3), &books)
        .unwrap_err();
    assert_eq!(e.to_string(), "invalid request: who must not be empty");
}

#[test]
fn going_back_needs_a_reason_and_starts_a_fresh_round_of_done_tasks() {
    let (mut inc, books) = incident();
    inc.set_phase(Phase::Containment, "bob", None, t(1), &books)
        .unwrap();
    let first = inc
        .tasks
        .iter()
        .find(|t| t.phase == Phase::Containment)
        .unwrap()
        .id;
    inc.complete_task(first, "carol", t(2)).unwrap();
    let n = tasks_in(&inc, Phase::Containment);
    inc.set_phase(Phase::Recovery, "bob", None, t(3), &books)
        .unwrap();
    inc.set_phase(
        Phase::Containment,
        "bob",
        Some("re-infection: beacon seen again from ws-042"),
        t(4),
        &books,
    )
    .unwrap();
    // The done task gets a fresh copy; the open ones are not duplicated.
    assert_eq!(tasks_in(&inc, Phase::Containment), n + 1);
    let h = inc.history.last().unwrap();
    assert_eq!(
        h.why.as_deref(),
        Some("re-infection: beacon seen again from ws-042")
    );
    assert_eq!(
        (h.from.as_deref(), h.to.as_deref()),
        (Some("recovery"), Some("containment"))
    );
}

#[test]
fn closing_needs_lessons_and_reopening_needs_a_reason() {
    let (mut inc, books) = incident();
    let e = inc.close("bob", "  ", t(1), &books).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidTransition { to: Phase::PostIncident, reason, .. } if reason.starts_with("closing needs lessons learned")),
        "{e}"
    );
    assert_eq!(inc.status, Status::Open);
    // A false positive is closed straight from detection & analysis.
    inc.close(
        "bob",
        "False positive: help desk testing; rule tuned.",
        t(2),
        &books,
    )
    .unwrap();
    assert_eq!(
        (inc.status, inc.phase),
        (Status::Closed, Phase::PostIncident)
    );
    assert!(tasks_in(&inc, Phase::PostIncident) > 0);
    assert_eq!(
        inc.lessons_learned.as_deref(),
        Some("False positive: help desk testing; rule tuned.")
    );
    let e = inc.close("bob", "again", t(3), &books).unwrap_err();
    assert!(
        e.to_string().ends_with("the incident is already closed"),
        "{e}"
    );
    let e = inc
        .set_phase(Phase::PostIncident, "bob", None, t(3), &books)
        .unwrap_err();
    assert!(e.to_string().contains("the incident is closed"), "{e}");
    let e = inc
        .set_phase(Phase::Containment, "bob", None, t(3), &books)
        .unwrap_err();
    assert!(e.to_string().contains("needs a reason"), "{e}");
    inc.set_phase(
        Phase::Containment,
        "bob",
        Some("it was not a false positive"),
        t(4),
        &books,
    )
    .unwrap();
    assert_eq!((inc.status, inc.phase), (Status::Open, Phase::Containment));
    let actions: Vec<HistoryAction> = inc.history.iter().rev().take(2).map(|h| h.action).collect();
    assert_eq!(actions, vec![HistoryAction::Phase, HistoryAction::Reopened]);
}

#[test]
fn joining_alerts_raise_severity_and_kind_and_add_the_new_playbooks_tasks() {
    let (mut inc, books) = incident();
    let a2 = alert(2, "r2", "SSH Brute Force", Level::Medium, &["attack.t1110"]);
    inc.add_alert(&a2, ent(), "joined because x".into(), t(1), &books);
    assert_eq!(
        inc.severity,
        Level::High,
        "severity is the max, never lowered"
    );
    assert_eq!(
        inc.kind,
        IncidentKind::VpnCompromise,
        "kind is the most severe, never lowered"
    );
    let before = inc.tasks.len();
    let a3 = alert(
        3,
        "r3",
        "Shadow copies deleted",
        Level::Critical,
        &["attack.t1490"],
    );
    inc.add_alert(&a3, ent(), "joined because y".into(), t(2), &books);
    assert_eq!(inc.severity, Level::Critical);
    assert_eq!(inc.kind, IncidentKind::Ransomware);
    let added = books
        .tasks(IncidentKind::Ransomware, Phase::DetectionAnalysis)
        .len();
    assert_eq!(inc.tasks.len(), before + added);
    assert_eq!(inc.entities.len(), 1, "entities are deduplicated");
    assert_eq!(inc.events, vec![10, 11, 20, 21, 30, 31]);
    let kinds: Vec<HistoryAction> = inc.history.iter().map(|h| h.action).collect();
    assert!(kinds.contains(&HistoryAction::Severity) && kinds.contains(&HistoryAction::Kind));
}

#[test]
fn tasks_are_checked_off_once_with_who_and_when() {
    let (mut inc, _) = incident();
    inc.complete_task(2, "carol", t(3)).unwrap();
    let task = &inc.tasks[1];
    assert!(task.done);
    assert_eq!(
        (task.done_by.as_deref(), task.done_at),
        (Some("carol"), Some(t(3)))
    );
    let h = inc.history.last().unwrap();
    assert_eq!(
        (h.action, h.by.as_str()),
        (HistoryAction::TaskDone, "carol")
    );
    assert!(h.to.as_deref().unwrap().starts_with("task 2: "));
    let e = inc.complete_task(2, "dave", t(4)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid request: task 2 is already done (by carol"),
        "{e}"
    );
    let e = inc.complete_task(99, "dave", t(4)).unwrap_err();
    assert_eq!(e.to_string(), "incident 7 has no task 99");
}

#[test]
fn assign_note_action_evidence() {
    let (mut inc, _) = incident();
    inc.assign(Some("carol"), "lead", t(1)).unwrap();
    inc.assign(Some("carol"), "lead", t(2)).unwrap();
    inc.assign(None, "lead", t(3)).unwrap();
    let assigned: Vec<(Option<&str>, Option<&str>)> = inc
        .history
        .iter()
        .filter(|h| h.action == HistoryAction::Assigned)
        .map(|h| (h.from.as_deref(), h.to.as_deref()))
        .collect();
    assert_eq!(assigned, vec![(None, Some("carol")), (Some("carol"), None)]);
    assert!(inc.assign(Some("a\nb"), "lead", t(3)).is_err());

    inc.add_note("carol", "  user confirmed: not her login  ", t(4))
        .unwrap();
    assert_eq!(inc.notes[0].text, "user confirmed: not her login");
    assert!(inc.add_note("carol", "", t(4)).is_err());

    inc.record_action(ActionEntry {
        at: t(5),
        by: "mamori-respond".into(),
        kind: "disable_account".into(),
        detail: serde_json::json!({"user": "alice", "ok": true}),
    })
    .unwrap();
    assert_eq!(inc.actions.len(), 1);
    assert_eq!(
        inc.history.last().unwrap().to.as_deref(),
        Some("disable_account")
    );

    inc.add_evidence("vault:seg-3/entry-41", "carol", t(6))
        .unwrap();
    inc.add_evidence("vault:seg-3/entry-41", "carol", t(7))
        .unwrap();
    assert_eq!(inc.evidence, vec!["vault:seg-3/entry-41"]);
    assert_eq!(
        inc.updated_at,
        t(6),
        "a duplicate reference changes nothing"
    );
}

#[test]
fn incident_json_round_trips() {
    let (mut inc, books) = incident();
    inc.set_phase(Phase::Containment, "bob", None, t(1), &books)
        .unwrap();
    let json = serde_json::to_value(&inc).unwrap();
    assert_eq!(json["phase"], "containment");
    assert_eq!(json["kind"], "vpn_compromise");
    assert_eq!(json["severity"], "high");
    assert_eq!(json["id"], 7);
    assert_eq!(json["alerts"][0]["rule_id"], "mamori_vpn_spray");
    let back: Incident = serde_json::from_value(json).unwrap();
    assert_eq!(back, inc);
}

#[test]
fn japanese_title_is_built_like_the_english_one() {
    let books = Playbooks::builtin().unwrap();
    let mut a = alert(
        1,
        "ssh_bf",
        "SSH Brute Force From One Source",
        Level::High,
        &[],
    );
    a.title_ja = Some("同一送信元からのSSH総当たり攻撃".into());
    let inc = Incident::new(IncidentId(1), &a, ent(), "test".into(), t(0), &books);
    assert_eq!(inc.title, "SSH Brute Force From One Source (alice)");
    assert_eq!(
        inc.title_ja.as_deref(),
        Some("同一送信元からのSSH総当たり攻撃 (alice)")
    );
    assert_eq!(
        inc.alerts[0].title_ja.as_deref(),
        Some("同一送信元からのSSH総当たり攻撃")
    );
    assert_eq!(
        crate::model::IncidentSummary::from(&inc).title_ja,
        inc.title_ja
    );

    // No Japanese title (or a blank one): none on the incident, and none serialised.
    a.title_ja = Some("  ".into());
    let inc = Incident::new(IncidentId(2), &a, ent(), "test".into(), t(0), &books);
    assert_eq!(inc.title_ja, None);
    let doc = serde_json::to_value(&inc).unwrap();
    assert!(doc.get("title_ja").is_none(), "{doc}");
}

#[test]
fn documents_written_before_title_ja_still_load() {
    let (inc, _) = incident();
    let mut doc = serde_json::to_value(&inc).unwrap();
    let o = doc.as_object_mut().unwrap();
    o.remove("title_ja");
    for a in o["alerts"].as_array_mut().unwrap() {
        a.as_object_mut().unwrap().remove("title_ja");
    }
    let back: Incident = serde_json::from_value(doc).unwrap();
    assert_eq!(back.title_ja, None);
    assert_eq!(back, inc);
}
