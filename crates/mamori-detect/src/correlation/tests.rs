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
    }
}

impl Harness {
    /// Sends an event at `secs` with the given fields.
    fn send(&mut self, secs: i64, fields: &[(&str, &str)]) -> usize {
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
        self.corr.observe(&e, &m, &mut self.out);
        self.out.len() - before
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
    assert_eq!(h.out.len(), 1);
    assert_eq!(h.out[0].value, 150.0);

    let mut h = harness(&corr("  type: event_count\n  rules: [failed]\n  group-by: [ip]\n  timespan: 1m\n  condition: {lt: 2}\n"));
    h.send(0, &[("outcome", "failure"), ("ip", "x")]);
    h.send(0, &[("outcome", "failure"), ("ip", "y")]);
    h.send(1, &[("outcome", "failure"), ("ip", "y")]);
    h.corr.flush(&mut h.out);
    assert_eq!(h.out.len(), 1);
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
    assert_eq!(h.out.len(), 1);
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
        lateness_ms: 60_000,
    };
    let mut h = Harness {
        corr: Correlator::new(&pack, &rules, &FieldMap::builtin(), limits),
        rules,
        out: Vec::new(),
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
    assert_eq!(h.out.len(), 1, "the failure completes the window");
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
    assert_eq!(h3.out.len(), 0, "failure an hour earlier is outside 10m");
}
