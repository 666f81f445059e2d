use std::path::Path;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use mamori_event::{Event, FieldName, Format, Origin, Value};
use mamori_sigma::{FieldMap, Placeholders, RulePack};

use super::*;
use crate::{CompileOptions, RuleSet};

struct Harness {
    rules: RuleSet,
    corr: Correlator,
    out: Vec<CorrelationAlert>,
    seq: u64,
}

fn harness(src: &str) -> Harness {
    let mut pack = RulePack::new();
    pack.add_file("c.yml", src, &Placeholders::new());
    pack.resolve_references();
    assert!(pack.failures.is_empty(), "{:?}", pack.failures);
    let rules = RuleSet::compile(&pack, &CompileOptions::default());
    let corr = Correlator::new(&pack, &rules, &FieldMap::builtin(), Limits::default());
    Harness {
        rules,
        corr,
        out: Vec::new(),
        seq: 0,
    }
}

impl Harness {
    /// Sends an event at `secs` with the given fields.
    fn send(&mut self, secs: i64, fields: &[(&str, &str)]) -> usize {
        self.send_from("x", secs, None, fields)
    }

    /// Sends an event dated `secs` from `source`, received at `received` (seconds, same base).
    fn send_from(
        &mut self,
        source: &str,
        secs: i64,
        received: Option<i64>,
        fields: &[(&str, &str)],
    ) -> usize {
        let mut e = Event::new(
            Format::Json,
            Origin::File {
                path: Arc::from(Path::new("x")),
                record: None,
                line: None,
                offset: 0,
            },
            Vec::new(),
        );
        e.logsource.product = Some("test".into());
        e.timestamp = Some(Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap());
        for (k, v) in fields {
            e.push(FieldName::new(k), Value::from(*v));
        }
        let mut m = Vec::new();
        self.rules.matches(&e, &mut self.rules.scratch(), &mut m);
        let before = self.out.len();
        self.seq += 1;
        let arrival = Arrival {
            source,
            received_ms: received.map(|r| (1_700_000_000 + r) * 1000),
            reference: self.seq,
        };
        self.corr.observe(&e, &m, &arrival, &mut self.out);
        self.out[before..]
            .iter()
            .filter(|a| a.phase == Phase::Opened)
            .count()
    }

    /// Alerts that opened an episode.
    fn opened(&self) -> Vec<&CorrelationAlert> {
        self.out
            .iter()
            .filter(|a| a.phase == Phase::Opened)
            .collect()
    }
}

const BASE: &str = "title: failed\nname: failed\nlogsource: {product: test}\ndetection:\n  s: {outcome: failure}\n  condition: s\n---\ntitle: ok\nname: ok\nlogsource: {product: test}\ndetection:\n  s: {outcome: success}\n  condition: s\n";

fn corr(body: &str) -> String {
    format!("title: c\nid: c1\nlevel: high\ncorrelation:\n{body}---\n{BASE}")
}

#[test]
fn event_count_fires_once_per_burst_per_group() {
    let mut h = harness(&corr("  type: event_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1m\n  condition: {gte: 3}\n"));
    assert_eq!(h.send(0, &[("outcome", "failure"), ("ip", "1.1.1.1")]), 0);
    assert_eq!(h.send(10, &[("outcome", "failure"), ("ip", "2.2.2.2")]), 0);
    assert_eq!(h.send(20, &[("outcome", "failure"), ("ip", "1.1.1.1")]), 0);
    assert_eq!(h.send(30, &[("outcome", "failure"), ("ip", "1.1.1.1")]), 1);
    let a = &h.out[0];
    assert_eq!(a.group, vec![("ip".to_string(), "1.1.1.1".to_string())]);
    assert_eq!(a.value, 3.0);
    // reset after firing
    assert_eq!(h.send(31, &[("outcome", "failure"), ("ip", "1.1.1.1")]), 0);
}

#[test]
fn event_count_respects_timespan_and_out_of_order() {
    let mut h = harness(&corr("  type: event_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1m\n  condition: {gte: 3}\n"));
    h.send(0, &[("outcome", "failure"), ("ip", "a")]);
    h.send(100, &[("outcome", "failure"), ("ip", "a")]);
    assert_eq!(
        h.send(200, &[("outcome", "failure"), ("ip", "a")]),
        0,
        "spread over >1m"
    );
    // a late event at t=150 fills the window [100, 200]... wait, 150 and 200 and 100 within 100s > 60s
    assert_eq!(h.send(170, &[("outcome", "failure"), ("ip", "a")]), 0);
    assert_eq!(
        h.send(190, &[("outcome", "failure"), ("ip", "a")]),
        1,
        "170, 190, 200 within 1m"
    );
}

#[test]
fn value_count_counts_distinct() {
    let mut h = harness(&corr("  type: value_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 5m\n  condition: {gte: 3, field: user}\n"));
    for (t, u) in [(0, "root"), (1, "root"), (2, "admin"), (3, "admin")] {
        assert_eq!(
            h.send(t, &[("outcome", "failure"), ("ip", "x"), ("user", u)]),
            0
        );
    }
    assert_eq!(
        h.send(
            4,
            &[("outcome", "failure"), ("ip", "x"), ("user", "oracle")]
        ),
        1
    );
    assert_eq!(h.out[0].value, 3.0);
}

#[test]
fn temporal_ordered_needs_order() {
    let src = corr(
        "  type: temporal_ordered\n  rules: [failed, ok]\n  group-by: [user]\n  timespan: 10m\n",
    );
    let mut h = harness(&src);
    assert_eq!(h.send(0, &[("outcome", "success"), ("user", "u")]), 0);
    assert_eq!(h.send(5, &[("outcome", "failure"), ("user", "u")]), 0);
    assert_eq!(h.send(9, &[("outcome", "success"), ("user", "u")]), 1);
    let mut h = harness(&src.replace("temporal_ordered", "temporal"));
    assert_eq!(h.send(0, &[("outcome", "success"), ("user", "u")]), 0);
    assert_eq!(
        h.send(5, &[("outcome", "failure"), ("user", "u")]),
        1,
        "any order"
    );
}

#[test]
fn chained_correlations_and_generate() {
    let src = "title: brute then success\nid: top\ncorrelation:\n  type: temporal_ordered\n  rules: [many_failed, ok]\n  group-by: [user]\n  timespan: 10m\n---\ntitle: many failed\nname: many_failed\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [user]\n  timespan: 10m\n  condition: {gte: 3}\n---\n".to_string() + BASE;
    let mut h = harness(&src);
    for t in 0..3 {
        assert_eq!(
            h.send(t, &[("outcome", "failure"), ("user", "bob")]),
            0,
            "inner correlation is quiet"
        );
    }
    assert_eq!(h.send(60, &[("outcome", "success"), ("user", "bob")]), 1);
    assert_eq!(h.out[0].correlation.meta.id.as_deref(), Some("top"));
    // base rules referenced by a correlation without `generate` are not standalone alerts
    let failed = (0..h.rules.len() as u32)
        .find(|&i| h.rules.rule(i).meta.name.as_deref() == Some("failed"))
        .unwrap();
    assert!(!h.rules.rule(failed).standalone);
}

#[test]
fn non_monotone_conditions_judge_closed_windows() {
    let mut h = harness(&corr("  type: value_avg\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1m\n  condition: {gt: 100, field: bytes}\n"));
    h.send(0, &[("outcome", "failure"), ("ip", "x"), ("bytes", "50")]);
    h.send(10, &[("outcome", "failure"), ("ip", "x"), ("bytes", "250")]);
    assert_eq!(h.out.len(), 0, "judged at close");
    h.corr.flush(&mut h.out);
    assert_eq!(h.opened().len(), 1);
    assert_eq!(h.out[0].value, 150.0);

    let mut h = harness(&corr("  type: event_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1m\n  condition: {lt: 2}\n"));
    h.send(0, &[("outcome", "failure"), ("ip", "x")]);
    h.send(0, &[("outcome", "failure"), ("ip", "y")]);
    h.send(1, &[("outcome", "failure"), ("ip", "y")]);
    h.corr.flush(&mut h.out);
    assert_eq!(h.opened().len(), 1);
    assert_eq!(h.out[0].group[0].1, "x");
}

#[test]
fn value_sum_and_percentile() {
    let mut h = harness(&corr("  type: value_sum\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1h\n  condition: {gt: 1000, field: bytes}\n"));
    h.send(0, &[("outcome", "failure"), ("ip", "x"), ("bytes", "600")]);
    assert_eq!(
        h.send(5, &[("outcome", "failure"), ("ip", "x"), ("bytes", "600")]),
        1
    );
    let mut h = harness(&corr("  type: value_percentile\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1h\n  condition: {gte: 90, field: bytes, percentile: 90}\n"));
    for (t, b) in [(0, "10"), (1, "20"), (2, "95"), (3, "99")] {
        h.send(t, &[("outcome", "failure"), ("ip", "x"), ("bytes", b)]);
    }
    h.corr.flush(&mut h.out);
    assert_eq!(h.opened().len(), 1);
}

#[test]
fn state_survives_save_and_restore() {
    let src = corr("  type: event_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1m\n  condition: {gte: 3}\n");
    let mut h = harness(&src);
    h.send(0, &[("outcome", "failure"), ("ip", "a")]);
    h.send(1, &[("outcome", "failure"), ("ip", "a")]);
    let saved = h.corr.save();
    let mut h2 = harness(&src);
    h2.corr.restore(&saved).unwrap();
    assert_eq!(
        h2.send(2, &[("outcome", "failure"), ("ip", "a")]),
        1,
        "restart lost no window"
    );
    assert!(h2.corr.restore(b"garbage").is_err());
}

#[test]
fn memory_is_bounded_and_counted() {
    let mut pack = RulePack::new();
    pack.add_file("c.yml", &corr("  type: event_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1h\n  condition: {gte: 3}\n"), &Placeholders::new());
    pack.resolve_references();
    let rules = RuleSet::compile(&pack, &CompileOptions::default());
    let limits = Limits {
        max_groups: 10,
        max_entries: 2,
        ..Limits::default()
    };
    let mut h = Harness {
        corr: Correlator::new(&pack, &rules, &FieldMap::builtin(), limits),
        rules,
        out: Vec::new(),
        seq: 0,
    };
    for i in 0..50 {
        h.send(i, &[("outcome", "failure"), ("ip", &i.to_string())]);
    }
    assert_eq!(h.corr.group_count(), 10);
    assert_eq!(h.corr.stats.evicted_groups, 40);
}

/// A temporal correlation skips groups that lack an input without scanning them; the per-input
/// counts follow entries through eviction, sweeping and a save/restore.
#[test]
fn temporal_input_counts_follow_the_window() {
    let src =
        corr("  type: temporal\n  rules: [failed, ok]\n  group-by: [user]\n  timespan: 10m\n");
    let mut h = harness(&src);
    // Many successes alone never fire, however many there are.
    for t in 0..2000 {
        assert_eq!(
            h.send(t / 10, &[("outcome", "success"), ("user", "deploy")]),
            0
        );
    }
    h.send(200, &[("outcome", "failure"), ("user", "deploy")]);
    assert_eq!(h.opened().len(), 1, "the failure completes the window");
    // Counts are rebuilt on restore: a saved failure still pairs with a later success.
    let mut h = harness(&src);
    h.send(0, &[("outcome", "failure"), ("user", "eve")]);
    let saved = h.corr.save();
    let mut h2 = harness(&src);
    h2.corr.restore(&saved).unwrap();
    assert_eq!(h2.send(5, &[("outcome", "success"), ("user", "eve")]), 1);
    // A window swept out (older than the timespan) no longer counts.
    let mut h3 = harness(&src);
    h3.send(0, &[("outcome", "failure"), ("user", "bob")]);
    h3.send(3600, &[("outcome", "success"), ("user", "bob")]);
    assert_eq!(
        h3.opened().len(),
        0,
        "failure an hour earlier is outside 10m"
    );
}

const BRUTE: &str = "  type: event_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 5m\n  condition: {gte: 10}\n";

fn burst(h: &mut Harness, source: &str, at: i64, received: Option<i64>, ip: &str) -> usize {
    (0..10)
        .map(|i| {
            h.send_from(
                source,
                at + i,
                received.map(|r| r + i),
                &[("outcome", "failure"), ("ip", ip), ("host.name", source)],
            )
        })
        .sum()
}

/// Issue #15 finding 1: one line dated 2099 must not make every later event "too late", and
/// its source is reported once, however many such lines it sends.
#[test]
fn a_future_dated_line_does_not_blind_and_is_reported_once() {
    let mut h = harness(&corr(BRUTE));
    let year_2099 = 4_070_908_800 - 1_700_000_000;
    for _ in 0..3 {
        h.send_from(
            "udp://192.0.2.66/evil",
            year_2099,
            Some(0),
            &[("outcome", "failure"), ("ip", "192.0.2.66")],
        );
    }
    let reports = h.corr.take_skew_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].source, "udp://192.0.2.66/evil");
    assert_eq!(h.corr.stats.future_dated, 3);
    assert!(h.corr.take_skew_reports().is_empty(), "once per source");
    assert_eq!(burst(&mut h, "web01", 60, Some(60), "203.0.113.9"), 1);
    assert_eq!(h.corr.stats.too_late, 0);
    // Across a restart too: the reported source is remembered, the brute force still fires.
    let saved = h.corr.save();
    let mut h2 = harness(&corr(BRUTE));
    h2.corr.restore(&saved).unwrap();
    h2.send_from(
        "udp://192.0.2.66/evil",
        year_2099,
        Some(400),
        &[("outcome", "failure"), ("ip", "x")],
    );
    assert!(h2.corr.take_skew_reports().is_empty());
    assert_eq!(burst(&mut h2, "web01", 900, Some(900), "203.0.113.10"), 1);
}

/// A host that sends its local time (JST, +9 h) is clamped to receipt and blinds nobody.
#[test]
fn a_host_in_local_time_does_not_blind_other_hosts() {
    let mut h = harness(&corr(BRUTE));
    let jst = 9 * 3600;
    assert_eq!(
        burst(&mut h, "tcp://10.0.0.5/jp01", jst, Some(0), "198.51.100.1"),
        1,
        "its own brute force still fires"
    );
    assert_eq!(
        burst(&mut h, "tcp://10.0.0.6/web01", 30, Some(30), "198.51.100.2"),
        1
    );
    assert_eq!(h.corr.take_skew_reports().len(), 1);
}

/// Issue #14 item 5: files uploaded newest first still correlate (each keeps its own time).
#[test]
fn a_backfill_older_than_what_came_before_still_correlates() {
    let mut h = harness(&corr(BRUTE));
    let month = 30 * 86_400;
    let now = month + 3600;
    assert_eq!(burst(&mut h, "dec.log", month, Some(now), "203.0.113.9"), 1);
    assert_eq!(
        burst(&mut h, "nov.log", 0, Some(now + 5), "203.0.113.9"),
        1,
        "same attacker a month earlier"
    );
    assert_eq!(
        burst(&mut h, "oct.log", -month, Some(now + 9), "203.0.113.7"),
        1
    );
    assert_eq!(h.corr.stats.future_dated, 0);
    // Offline (no receipt time), out-of-order files behave the same.
    let mut h = harness(&corr(BRUTE));
    assert_eq!(burst(&mut h, "dec.log", month, None, "203.0.113.9"), 1);
    assert_eq!(burst(&mut h, "nov.log", 0, None, "203.0.113.9"), 1);
}

/// Issue #15 item 13: an event without a group-by value belongs to no group.
#[test]
fn missing_group_by_values_form_no_group() {
    let mut h = harness(&corr(BRUTE));
    for i in 0..20 {
        assert_eq!(h.send(i, &[("outcome", "failure")]), 0);
    }
    assert_eq!(h.corr.group_count(), 0);
    assert_eq!(h.corr.stats.missing_group_by, 20);
}

/// Issue #14 item 4: one attack gives one episode with its first/last time, count, evidence.
#[test]
fn one_attack_gives_one_episode_with_evidence() {
    let mut h = harness(&corr(BRUTE));
    // 40 failures over 4 minutes from one address, on two hosts.
    for i in 0..40 {
        let host = if i % 2 == 0 { "web01" } else { "web02" };
        h.send(
            i * 6,
            &[
                ("outcome", "failure"),
                ("ip", "203.0.113.9"),
                ("host.name", host),
            ],
        );
    }
    assert_eq!(h.opened().len(), 1, "no re-firing per window slide");
    let opened = h.opened()[0].clone();
    assert_eq!(opened.events, 10);
    assert_eq!(opened.evidence.first.unwrap().reference, 1);
    assert_eq!(opened.evidence.last.unwrap().reference, 10);
    h.corr.flush(&mut h.out);
    let closed: Vec<_> = h.out.iter().filter(|a| a.phase == Phase::Closed).collect();
    assert_eq!(closed.len(), 1);
    let c = closed[0];
    assert_eq!(c.episode_ms, opened.episode_ms);
    assert_eq!(c.events, 40);
    assert_eq!(c.last_ms - c.first_ms, 39 * 6 * 1000);
    assert_eq!(c.evidence.first.unwrap().reference, 1);
    assert_eq!(c.evidence.last.unwrap().reference, 40);
    assert_eq!(c.evidence.refs.len(), 40);
    assert_eq!(
        c.evidence.hosts,
        vec!["web01".to_string(), "web02".to_string()]
    );
    // A second attack after a quiet timespan is a second episode.
    let mut h = harness(&corr(BRUTE));
    burst(&mut h, "a", 0, None, "203.0.113.9");
    burst(&mut h, "a", 1000, None, "203.0.113.9");
    assert_eq!(h.opened().len(), 2);
    assert_eq!(
        h.out.iter().filter(|a| a.phase == Phase::Closed).count(),
        1,
        "the first closed when the second began"
    );
}

/// Eviction takes the least recently touched group, not a scan for the oldest event.
#[test]
fn eviction_takes_the_least_recently_touched_group() {
    let mut pack = RulePack::new();
    pack.add_file("c.yml", &corr(BRUTE), &Placeholders::new());
    pack.resolve_references();
    let rules = RuleSet::compile(&pack, &CompileOptions::default());
    let limits = Limits {
        max_groups: 3,
        ..Limits::default()
    };
    let mut h = Harness {
        corr: Correlator::new(&pack, &rules, &FieldMap::builtin(), limits),
        rules,
        out: Vec::new(),
        seq: 0,
    };
    for ip in ["a", "b", "c"] {
        for _ in 0..5 {
            h.send(0, &[("outcome", "failure"), ("ip", ip)]);
        }
    }
    h.send(1, &[("outcome", "failure"), ("ip", "a")]); // a is fresh again
    h.send(2, &[("outcome", "failure"), ("ip", "d")]); // evicts b
    assert_eq!(h.corr.stats.evicted_groups, 1);
    for _ in 0..4 {
        h.send(3, &[("outcome", "failure"), ("ip", "a")]);
    }
    assert_eq!(h.opened().len(), 1, "a kept its 6 + 4 failures");
}

/// Saved changes applied over a snapshot give the same state as a full save.
#[test]
fn incremental_saves_restore_the_same_state() {
    let mut h = harness(&corr(BRUTE));
    h.corr.track_changes(true);
    for i in 0..5 {
        h.send(i, &[("outcome", "failure"), ("ip", "a")]);
    }
    let base = h.corr.save();
    h.corr.mark_saved();
    assert!(h.corr.save_changes().is_none(), "nothing changed");
    for i in 5..9 {
        h.send(i, &[("outcome", "failure"), ("ip", "a")]);
        h.send(i, &[("outcome", "failure"), ("ip", "b")]);
    }
    let delta = h.corr.save_changes().unwrap();
    assert!(
        delta.len() < base.len() * 3,
        "a delta holds only changed groups"
    );
    let mut h2 = harness(&corr(BRUTE));
    h2.corr.restore(&base).unwrap();
    h2.corr.restore(&delta).unwrap();
    assert_eq!(h2.corr.group_count(), 2);
    assert_eq!(
        h2.send(9, &[("outcome", "failure"), ("ip", "a")]),
        1,
        "5 + 4 + 1 = 10"
    );
    // A group removed after the snapshot is removed by the changes.
    let mut h3 = harness(&corr(BRUTE));
    h3.corr.restore(&base).unwrap();
    h3.corr.restore(&h2.corr.save()).unwrap();
    assert_eq!(h3.corr.group_count(), h2.corr.group_count());
}

/// Non-monotone windows already judged drop late events, counted by reason.
#[test]
fn too_late_is_counted_by_reason() {
    let mut h = harness(&corr("  type: event_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1m\n  condition: {lt: 2}\n"));
    h.send(0, &[("outcome", "failure"), ("ip", "x")]);
    h.send(600, &[("outcome", "failure"), ("ip", "x")]); // closes [0, 60]
    assert_eq!(h.opened().len(), 1);
    h.send(10, &[("outcome", "failure"), ("ip", "x")]);
    assert_eq!(h.corr.stats.too_late_window_closed, 1);
    assert_eq!(h.corr.stats.too_late, 1);
}

/// Issue #15: a flood of new addresses at the group cap evicts (counted) and says so once per
/// episode — never silent blindness; a quiet period ends the episode and the next flood is a
/// new one.
#[test]
fn state_pressure_is_reported_once_per_episode() {
    let mut pack = RulePack::new();
    pack.add_file("c.yml", &corr("  type: event_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1m\n  condition: {gte: 3}\n"), &Placeholders::new());
    pack.resolve_references();
    let rules = RuleSet::compile(&pack, &CompileOptions::default());
    let limits = Limits {
        max_groups: 100,
        lateness_ms: 10_000,
        ..Limits::default()
    };
    let mut h = Harness {
        corr: Correlator::new(&pack, &rules, &FieldMap::builtin(), limits),
        rules,
        out: Vec::new(),
        seq: 0,
    };
    for i in 0..1000 {
        let ip = format!("10.0.{}.{}", i / 256, i % 256);
        h.send_from(
            "x",
            i / 100,
            Some(i / 100),
            &[("outcome", "failure"), ("ip", &ip)],
        );
    }
    assert!(h.corr.under_pressure());
    assert_eq!(h.corr.stats.evicted_groups, 900);
    let reports = h.corr.take_pressure_reports();
    assert_eq!(reports.len(), 1, "one report per episode, not per eviction");
    assert_eq!(reports[0].max_groups, 100);
    assert_eq!(reports[0].evicted_before, 0);
    // Quiet for longer than the longest window + lateness: the episode ends.
    let mut out = Vec::new();
    h.corr.tick((1_700_000_000 + 10 + 71) * 1000, &mut out);
    assert!(!h.corr.under_pressure());
    assert!(h.corr.take_pressure_reports().is_empty());
    for i in 0..200 {
        let ip = format!("10.9.{}.{}", i / 256, i % 256);
        h.send_from("x", 100, Some(100), &[("outcome", "failure"), ("ip", &ip)]);
    }
    let again = h.corr.take_pressure_reports();
    assert_eq!(again.len(), 1, "a new flood is a new episode");
    assert!(again[0].evicted_before >= 900);
    assert_eq!(h.corr.stats.pressure_episodes, 2);
}

/// Keys of several group-by values are one allocation and unambiguous: no two value tuples
/// share a group, whatever separators an attacker puts in them.
#[test]
fn multi_value_keys_do_not_collide() {
    let a = Key::encode(&["a:1", "b"]);
    let b = Key::encode(&["a", "1b"]);
    let c = Key::encode(&["1:a", "b"]);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.values(2), vec!["a:1", "b"]);
    assert_eq!(b.values(2), vec!["a", "1b"]);
    assert_eq!(Key::encode(&["x:y"]).values(1), vec!["x:y"]);
    assert_eq!(Key::encode(&["", ""]).values(2), vec!["", ""]);
    assert!(Key::encode::<&str>(&[]).values(0).is_empty());
}

/// Scale-out routing (issue #20): `route` names the correlation a match feeds with the group-by
/// values `observe` would group it by; no value, no route; a match feeding nothing, no route.
#[test]
fn route_gives_the_group_values_observe_uses() {
    let h = harness(&corr(
        "  type: event_count\n  rules: [failed]\n  group-by: [ip, user]\n  timespan: 1m\n  condition: {gte: 3}\n",
    ));
    let ev = |fields: &[(&str, &str)]| {
        let mut e = Event::new(
            Format::Json,
            Origin::File {
                path: Arc::from(Path::new("x")),
                record: None,
                line: None,
                offset: 0,
            },
            Vec::new(),
        );
        e.logsource.product = Some("test".into());
        for (k, v) in fields {
            e.push(FieldName::new(k), Value::from(*v));
        }
        let mut m = Vec::new();
        h.rules.matches(&e, &mut h.rules.scratch(), &mut m);
        (e, m)
    };
    let (e, m) = ev(&[("outcome", "failure"), ("ip", "1.1.1.1"), ("user", "bob")]);
    assert_eq!(
        h.corr.route(&e, &m),
        vec![(0, vec!["1.1.1.1".to_string(), "bob".to_string()])]
    );
    let (e, m) = ev(&[("outcome", "failure"), ("ip", "1.1.1.1")]);
    assert!(h.corr.route(&e, &m).is_empty(), "a missing group-by value");
    let (e, m) = ev(&[("outcome", "success"), ("ip", "1.1.1.1"), ("user", "bob")]);
    assert!(!m.is_empty());
    assert!(
        h.corr.route(&e, &m).is_empty(),
        "a rule no correlation reads"
    );
}
