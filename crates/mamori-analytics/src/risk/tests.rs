use chrono::TimeZone;

use super::*;
use crate::{Analytics, Config, Observation};

fn t(day: i64, hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap() + Duration::days(day) + Duration::hours(hour)
}

fn sig(time: DateTime<Utc>, rule: &str, weight: f64, who: &str, line: u32) -> Signal {
    Signal {
        time,
        rule_id: rule.into(),
        title: rule.into(),
        weight,
        entities: vec![Entity::actor(who)],
        source: format!("a.log:{line}"),
        seq: None,
        why: String::new(),
        tags: vec![],
    }
}

fn no_learning() -> RiskConfig {
    RiskConfig {
        learning_days: 0,
        ..RiskConfig::default()
    }
}

#[test]
fn converging_signals_alert_and_cite_every_one() {
    let mut r = RiskEngine::new(no_learning(), RiskState::default());
    let mut out = Vec::new();
    r.add(sig(t(5, 1), ids::FIRST_ADDRESS, 50.0, "sato", 10), &mut out);
    assert!(out.is_empty());
    r.add(sig(t(5, 2), ids::NEW_COUNTRY, 60.0, "sato", 11), &mut out);
    assert_eq!(out.len(), 1, "50 + 60 (a little decayed) ≥ 100");
    let a = &out[0];
    assert_eq!(a.entity, Entity::actor("sato"));
    assert!(a.score >= 100.0 && a.score < 110.0, "{}", a.score);
    let cited: Vec<&str> = a.signals.iter().map(|s| s.source.as_str()).collect();
    assert_eq!(cited, ["a.log:10", "a.log:11"]);
    assert!(
        a.why.contains("a.log:10") && a.why.contains("threshold 100"),
        "{}",
        a.why
    );
    assert!(
        a.why_ja.contains("しきい値") && a.why_ja.contains("a.log:11"),
        "{}",
        a.why_ja
    );
    // The evidence was consumed: one more weak signal alone does not re-alert.
    r.add(sig(t(5, 3), ids::OFF_HOURS, 35.0, "sato", 12), &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn the_same_kind_of_finding_counts_once_and_risk_decays() {
    let mut r = RiskEngine::new(no_learning(), RiskState::default());
    let mut out = Vec::new();
    // An honest user moving between PCs every hour: one kind of evidence, never an alert.
    for h in 0..10 {
        r.add(
            sig(t(3, h), ids::FIRST_HOST, 25.0, "ito", h as u32),
            &mut out,
        );
    }
    assert!(out.is_empty());
    assert!((r.score(&Entity::actor("ito"), t(3, 9)) - 25.0).abs() < 1e-9);
    // Two different findings a day apart: half-life 12 h, so 50/4 + 60 < 100.
    r.add(sig(t(4, 0), ids::FIRST_ADDRESS, 50.0, "kato", 1), &mut out);
    r.add(sig(t(5, 0), ids::NEW_COUNTRY, 60.0, "kato", 2), &mut out);
    assert!(out.is_empty(), "{out:?}");
    // Outside the window a signal no longer counts at all.
    assert!(r.score(&Entity::actor("kato"), t(5, 0)) > 60.0);
    assert_eq!(r.score(&Entity::actor("kato"), t(9, 0)), 0.0);
    r.add(sig(t(9, 0), ids::OFF_HOURS, 35.0, "kato", 3), &mut out);
    assert!((r.score(&Entity::actor("kato"), t(9, 0)) - 35.0).abs() < 1e-9);
}

#[test]
fn no_risk_alert_while_learning_and_state_round_trips() {
    let mut r = RiskEngine::new(RiskConfig::default(), RiskState::default());
    let mut out = Vec::new();
    r.note_time(t(0, 0));
    r.add(sig(t(0, 0), ids::FIRST_ADDRESS, 50.0, "sato", 1), &mut out);
    r.add(sig(t(0, 1), ids::NEW_COUNTRY, 60.0, "sato", 2), &mut out);
    assert!(out.is_empty(), "day 0 is inside the 2-day learning period");
    let saved = r.save();
    let mut r2 = RiskEngine::new(RiskConfig::default(), RiskEngine::restore(&saved).unwrap());
    r2.add(sig(t(3, 0), ids::FIRST_ADDRESS, 50.0, "sato", 3), &mut out);
    r2.add(sig(t(3, 1), ids::NEW_COUNTRY, 60.0, "sato", 4), &mut out);
    assert_eq!(
        out.len(),
        1,
        "the learning period started before the restart"
    );
    assert!(RiskEngine::restore("{not json").is_err());
}

#[test]
fn networks_name_internal_addresses_and_reject_bad_ranges() {
    let n = Networks::parse(&[
        Network {
            name: "office-dhcp".into(),
            cidrs: vec!["10.0.20.0/24".into()],
            role: None,
        },
        Network {
            name: "vpn-pool".into(),
            cidrs: vec!["100.64.8.0/22".into(), "fd00:1::/64".into()],
            role: None,
        },
    ])
    .unwrap();
    assert_eq!(n.name_of("10.0.20.77"), Some("office-dhcp"));
    assert_eq!(n.name_of("10.0.21.1"), Some("internal 10.0.0.0/8"));
    assert_eq!(n.name_of("100.64.9.3"), Some("vpn-pool"));
    assert_eq!(n.name_of("fd00:1::5"), Some("vpn-pool"));
    assert_eq!(n.name_of("192.168.1.4"), Some("internal 192.168.0.0/16"));
    assert_eq!(n.name_of("172.32.0.1"), None);
    assert_eq!(n.name_of("203.0.113.9"), None);
    assert_eq!(n.name_of("not an ip"), None);
    assert_eq!(n.baseline_key("10.0.20.5"), "net:office-dhcp");
    assert_eq!(n.baseline_key("203.0.113.9"), "203.0.113.9");
    for bad in ["10.0.0.0/33", "10.0.0/8", "x/8", "10.0.0.0/x"] {
        let e = Networks::parse(&[Network {
            name: "servers".into(),
            cidrs: vec![bad.into()],
            role: None,
        }])
        .unwrap_err();
        assert!(
            e.to_string().contains("servers") && e.to_string().contains(bad),
            "{e}"
        );
    }
}

/// Issue #14: DHCP churn inside the office network raised a first-seen-address alert for
/// nearly every lease. Judged by network, a new lease is not new; a new public address is.
#[test]
fn dhcp_churn_inside_a_network_is_not_a_first_seen_address() {
    let cfg = Config {
        networks: Networks::parse(&[Network {
            name: "office-dhcp".into(),
            cidrs: vec!["10.0.20.0/24".into()],
            role: None,
        }])
        .unwrap(),
        ..Config::default()
    };
    let mut a = Analytics::new(cfg, None, crate::State::default());
    let mut out = Vec::new();
    let o = |day: i64, ip: &str| Observation {
        time: t(day, 1),
        actor: "sato".into(),
        login: true,
        address: Some(ip.into()),
        host: None,
        bytes: None,
        source: format!("vpn.log:{day}"),
        seq: None,
    };
    for d in 0..20 {
        a.observe(&o(d, &format!("10.0.20.{}", 10 + d)), &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    a.observe(&o(20, "45.155.205.33"), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rule_id, ids::FIRST_ADDRESS);
    let s = Signal::from_alert(&out[0], &RiskConfig::default(), &Networks::default());
    assert_eq!(s.weight, 60.0);
    assert_eq!(
        s.entities,
        vec![
            Entity::actor("sato"),
            Entity {
                kind: EntityKind::Address,
                name: "45.155.205.33".into()
            }
        ]
    );
    assert_eq!(Entity::actor("AKIAVENDOR7QX2EXAMPL").kind, EntityKind::Key);
    // The account and the address cross on the same evidence: one alert, not two.
    let mut r = RiskEngine::new(no_learning(), RiskState::default());
    let mut alerts = Vec::new();
    let mut s2 = s.clone();
    s2.rule_id = ids::OFF_HOURS.into();
    s2.weight = 40.0;
    r.add(s, &mut alerts);
    r.add(s2, &mut alerts);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].entity, Entity::actor("sato"));
}

#[test]
fn sigma_levels_feed_risk_only_when_configured() {
    let mut c = RiskConfig::default();
    assert!(!c.sigma_is_signal(Level::Low));
    c.sigma_signal_max_level = Some(Level::Low);
    assert!(c.sigma_is_signal(Level::Informational) && c.sigma_is_signal(Level::Low));
    assert!(!c.sigma_is_signal(Level::Medium));
    assert_eq!(c.sigma_weight(Level::Low), 25.0);
    assert!(c.is_strong(ids::DEPARTED) && !c.is_strong(ids::FIRST_HOST));
}

/// Issue #14: a business trip is a new hotel address in a new country — one fact, found twice.
/// Counted once (the larger), it needs another kind of evidence (an odd hour) to alert; the
/// same two findings from two different logins still add up.
#[test]
fn a_new_country_and_a_new_address_of_one_login_count_once() {
    let mut r = RiskEngine::new(no_learning(), RiskState::default());
    let mut out = Vec::new();
    r.add(
        sig(t(5, 1), ids::FIRST_ADDRESS, 60.0, "watanabe", 10),
        &mut out,
    );
    r.add(
        sig(t(5, 1), ids::NEW_COUNTRY, 60.0, "watanabe", 10),
        &mut out,
    );
    assert!(out.is_empty(), "a trip: {out:?}");
    assert_eq!(r.score(&Entity::actor("watanabe"), t(5, 1)), 60.0);
    // The same login at an hour the account is never active: a stolen password.
    r.add(sig(t(5, 1), ids::OFF_HOURS, 40.0, "watanabe", 10), &mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].why.contains("of one login once"), "{}", out[0].why);
    // Two different logins: a new address, then a new country elsewhere.
    let mut r = RiskEngine::new(no_learning(), RiskState::default());
    let mut out = Vec::new();
    r.add(sig(t(5, 1), ids::FIRST_ADDRESS, 60.0, "sato", 10), &mut out);
    r.add(sig(t(5, 1), ids::NEW_COUNTRY, 60.0, "sato", 11), &mut out);
    assert_eq!(out.len(), 1);
}

/// Issue #15: public addresses are entities, so a flood of failed probes from new addresses
/// must not grow the state without bound. At the cap the least recently signalled entities go
/// (counted), a tenth at a time; the busiest recent entity keeps its risk.
#[test]
fn entities_are_capped_and_the_least_recently_signalled_go_first() {
    let cfg = RiskConfig {
        max_entities: 100,
        ..no_learning()
    };
    let mut r = RiskEngine::new(cfg, RiskState::default());
    let mut out = Vec::new();
    for i in 0..1000u32 {
        let at = t(0, 0) + Duration::seconds(i64::from(i));
        r.add(sig(at, "probe", 10.0, &format!("u{i}"), i), &mut out);
        // One entity signalled all along stays.
        r.add(sig(at, "other", 1.0, "steady", i), &mut out);
        assert!(r.entity_count() <= 100, "{}", r.entity_count());
    }
    assert!(r.entity_count() >= 89, "{}", r.entity_count());
    assert_eq!(r.evicted() as usize + r.entity_count(), 1001);
    let now = t(0, 0) + Duration::seconds(1000);
    assert!(r.score(&Entity::actor("steady"), now) > 0.0);
    assert!(r.score(&Entity::actor("u999"), now) > 0.0);
    assert_eq!(r.score(&Entity::actor("u0"), now), 0.0, "the oldest went");
    // A state saved under a larger cap is cut down on restore.
    let saved = RiskEngine::restore(&r.save()).unwrap();
    let small = RiskEngine::new(
        RiskConfig {
            max_entities: 10,
            ..no_learning()
        },
        saved,
    );
    assert!(small.entity_count() <= 10);
}
