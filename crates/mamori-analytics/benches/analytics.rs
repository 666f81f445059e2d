//! The per-event cost `mamori serve` pays for live analytics: extracting an observation from
//! every event (most yield none), and learning/judging a login plus adding its signals to risk.
//! Run: `cargo bench -p mamori-analytics`.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mamori_analytics::{Analytics, Config, Observation, RiskConfig, RiskEngine, Signal, State};
use mamori_event::{Event, Format, Interner, Origin, Value};

fn event(names: &mut Interner, fields: &[(&str, &str)]) -> Event {
    let mut ev = Event::new(
        Format::Syslog,
        Origin::File {
            path: Arc::from(std::path::Path::new("bench.log")),
            record: None,
            line: Some(1),
            offset: 0,
        },
        Vec::new(),
    );
    ev.timestamp = Some(Utc.with_ymd_and_hms(2026, 9, 1, 9, 0, 0).unwrap());
    for (k, v) in fields {
        ev.push(names.intern(k), Value::Str((*v).into()));
    }
    ev
}

fn bench(c: &mut Criterion) {
    let mut names = Interner::new();
    let other = event(
        &mut names,
        &[
            ("host.name", "fw01"),
            ("process.name", "kernel"),
            ("message", "DROP IN=eth0 SRC=203.0.113.9"),
        ],
    );
    let vpn = event(
        &mut names,
        &[
            ("log.syslog.structured_data.auth@32473.user", "sato"),
            ("log.syslog.structured_data.auth@32473.src", "10.0.20.41"),
            ("log.syslog.structured_data.auth@32473.result", "success"),
        ],
    );
    let mut g = c.benchmark_group("analytics");
    g.bench_function("observation_from_other_event", |b| {
        b.iter(|| black_box(Observation::from_event(black_box(&other))))
    });
    g.bench_function("observation_from_vpn_login", |b| {
        b.iter(|| black_box(Observation::from_event(black_box(&vpn))))
    });
    // 200 accounts with a month of history; one login judged and learned per iteration.
    let base = Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap();
    let mut engine = Analytics::new(Config::default(), None, State::default());
    let mut out = Vec::new();
    let obs = |i: u64, t| Observation {
        time: t,
        actor: format!("user{}", i % 200),
        login: true,
        address: Some(format!("10.0.20.{}", i % 250)),
        host: Some(format!("ws-{}", i % 200)),
        bytes: Some(10_000),
        source: "bench.log:1".into(),
        seq: Some(i),
    };
    for i in 0..200 * 30 {
        let t = base + Duration::days((i / 200) as i64) + Duration::minutes((i % 200) as i64);
        engine.observe(&obs(i, t), &mut out);
    }
    let mut i = 0u64;
    let late = base + Duration::days(31);
    g.bench_function("observe_login_with_history", |b| {
        b.iter(|| {
            i += 1;
            out.clear();
            engine.observe(&obs(i, late), &mut out);
            black_box(out.len())
        })
    });
    let mut risk = RiskEngine::new(RiskConfig::default(), Default::default());
    let mut alerts = Vec::new();
    let mut j = 0u64;
    g.bench_function("risk_add_signal", |b| {
        b.iter(|| {
            j += 1;
            let s = Signal {
                time: late + Duration::seconds(j as i64),
                rule_id: "mamori-analytics-first-seen-host".into(),
                title: "First-Seen Host For Account".into(),
                weight: 25.0,
                entities: vec![mamori_analytics::Entity::actor(&format!("user{}", j % 200))],
                source: "bench.log:1".into(),
                seq: Some(j),
                why: String::new(),
                tags: Vec::new(),
            };
            risk.add(s, &mut alerts);
            black_box(alerts.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
