use super::*;
use mamori_event::{Interner, Transport};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn syslog(lines: &[String]) -> Vec<Event> {
    let mut names = Interner::new();
    let origin = Origin::Network {
        peer: "192.0.2.10:514".parse().unwrap(),
        transport: Transport::Udp,
    };
    lines
        .iter()
        .map(|l| {
            mamori_ingest::parse_syslog_line(l.as_bytes(), origin.clone(), &mut names).unwrap()
        })
        .collect()
}

fn history(first: &str, last: &str, hours: &[(&str, u64)]) -> History {
    History {
        first_seen: Some(t(first)),
        last_seen: Some(t(last)),
        hours: hours.iter().map(|(h, n)| (t(h).timestamp(), *n)).collect(),
    }
}

fn cfg() -> SourcesConfig {
    SourcesConfig {
        min_silence_secs: 1800,
        ..SourcesConfig::default()
    }
}

/// A source that sends every few minutes and has been quiet for an hour is silent; quiet for
/// ten minutes it is not.
#[test]
fn a_steady_source_quiet_for_an_hour_is_silent() {
    let mut hours = Vec::new();
    let stamps: Vec<String> = (0..30)
        .map(|i| format!("2026-12-05T{:02}:00:00Z", i % 24))
        .collect();
    for s in stamps.iter().take(24) {
        hours.push((s.as_str(), 20));
    }
    hours.push(("2026-12-06T00:00:00Z", 20));
    hours.push(("2026-12-06T01:00:00Z", 20));
    hours.push(("2026-12-06T02:00:00Z", 10));
    let h = history("2026-12-05T00:00:00Z", "2026-12-06T02:30:00Z", &hours);
    let started = t("2026-12-01T00:00:00Z");
    let v = judge(&cfg(), t("2026-12-06T02:40:00Z"), &h, true, started);
    assert_eq!(v.state, State::Ok, "{v:?}");
    let gap = v.usual_gap_secs.unwrap();
    assert!(
        (150.0..200.0).contains(&gap),
        "usual gap about 3 minutes: {gap}"
    );
    let v = judge(&cfg(), t("2026-12-06T03:31:00Z"), &h, true, started);
    assert_eq!(v.state, State::Silent, "{v:?}");
    assert_eq!(v.hourly.len(), HOURLY);
    assert_eq!(v.hourly[HOURLY - 2], 10, "02:00 is the previous hour");
    // Unwatched (ignored) sources are never silent.
    let v = judge(&cfg(), t("2026-12-06T03:31:00Z"), &h, false, started);
    assert_eq!(v.state, State::Ok);
}

/// A source quiet every night for 10 hours is not silent after 2 quiet hours at night.
#[test]
fn a_source_that_sleeps_at_night_is_not_silent_at_night() {
    let mut hours: Vec<(String, u64)> = Vec::new();
    for h in 0..24 {
        let n = if (8..18).contains(&h) { 200 } else { 0 };
        hours.push((format!("2026-12-05T{h:02}:00:00Z"), n));
    }
    let hours_ref: Vec<(&str, u64)> = hours.iter().map(|(h, n)| (h.as_str(), *n)).collect();
    let h = history("2026-12-04T08:00:00Z", "2026-12-05T17:59:00Z", &hours_ref);
    let v = judge(
        &cfg(),
        t("2026-12-05T21:00:00Z"),
        &h,
        true,
        t("2026-12-01T00:00:00Z"),
    );
    // Only 14 hours of its own history: the longest quiet stretch is not known yet (the night
    // before is outside the counts), so the gap rule decides.
    assert_eq!(v.state, State::Silent);
    // With the previous night in the history, the same quiet is normal for it.
    let mut more = hours.clone();
    for h in 0..24 {
        let n = if (8..18).contains(&h) { 200 } else { 0 };
        more.push((format!("2026-12-04T{h:02}:00:00Z"), n));
    }
    let more_ref: Vec<(&str, u64)> = more.iter().map(|(h, n)| (h.as_str(), *n)).collect();
    let h = history("2026-12-04T08:00:00Z", "2026-12-05T17:59:00Z", &more_ref);
    let c = SourcesConfig {
        history_hours: 48,
        ..cfg()
    };
    let v = judge(
        &c,
        t("2026-12-05T21:00:00Z"),
        &h,
        true,
        t("2026-12-01T00:00:00Z"),
    );
    assert_eq!(v.state, State::Ok, "{v:?}");
    assert!(v.silent_after_secs >= 14.0 * 3600.0);
}

#[test]
fn a_collapse_is_judged_against_the_median_hour() {
    let mut hours: Vec<(String, u64)> = (0..6)
        .map(|h| (format!("2026-12-06T{h:02}:00:00Z"), 500))
        .collect();
    hours.push(("2026-12-06T06:00:00Z".into(), 0));
    hours.push(("2026-12-06T07:00:00Z".into(), 5));
    let r: Vec<(&str, u64)> = hours.iter().map(|(h, n)| (h.as_str(), *n)).collect();
    let h = history("2026-12-06T00:00:00Z", "2026-12-06T07:30:00Z", &r);
    let v = judge(
        &cfg(),
        t("2026-12-06T07:31:00Z"),
        &h,
        true,
        t("2026-12-01T00:00:00Z"),
    );
    assert_eq!(v.state, State::Collapsed, "{v:?}");
    assert_eq!(v.usual_hourly, Some(500.0));
    assert_eq!(v.events_last_hour, 5);
    // A small source (median below collapse_min_events) is never collapsed.
    let small: Vec<(&str, u64)> = r.iter().map(|(h, n)| (*h, n / 10)).collect();
    let h = history("2026-12-06T00:00:00Z", "2026-12-06T07:30:00Z", &small);
    let v = judge(
        &cfg(),
        t("2026-12-06T07:31:00Z"),
        &h,
        true,
        t("2026-12-01T00:00:00Z"),
    );
    assert_eq!(v.state, State::New);
}

#[test]
fn an_expected_source_never_heard_from_is_silent_after_the_minimum() {
    let h = History::default();
    let started = t("2026-12-06T00:00:00Z");
    let v = judge(&cfg(), t("2026-12-06T00:10:00Z"), &h, true, started);
    assert_eq!(v.state, State::New);
    let v = judge(&cfg(), t("2026-12-06T01:00:00Z"), &h, true, started);
    assert_eq!(v.state, State::Silent);
}

#[test]
fn the_tally_counts_sources_hours_and_external_addresses_with_auth_outcomes() {
    let tally = Tally::new(Networks::default(), 100, 100);
    let mut lines = Vec::new();
    for i in 0..3 {
        lines.push(format!("<38>1 2026-12-06T10:0{i}:00Z WEB1 sshd 1 - - Failed password for root from 203.0.113.9 port 22 ssh2"));
    }
    lines.push("<38>1 2026-12-06T11:00:00Z web1 sshd 1 - - Accepted password for alice from 203.0.113.9 port 22 ssh2".into());
    lines.push("<38>1 2026-12-06T11:00:00Z web1 sshd 1 - - Failed password for root from 10.0.0.5 port 22 ssh2".into());
    lines.push("<38>1 2026-12-06T11:00:00Z - app 1 - - no host here".into());
    let evs = syslog(&lines);
    let recv = t("2026-12-06T11:30:00Z");
    tally.count(&evs, SourceKind::Udp, recv, 6);
    let db = Arc::new(SqliteAlertStore::open_in_memory().unwrap());
    let h = SourceHealth::open(
        SourcesConfig::default(),
        Networks::default(),
        Arc::clone(&db),
    )
    .unwrap();
    // Move the counts into the health's tally by merging the window (same code path as flush).
    h.tally.put_back(tally.take());
    h.flush().unwrap();
    let hours = db
        .source_hours(t("2026-12-06T00:00:00Z"), t("2026-12-07T00:00:00Z"))
        .unwrap();
    let got: Vec<(String, String, String, u64)> = hours
        .iter()
        .map(|r| {
            (
                r.source.clone(),
                r.kind.clone(),
                r.hour.format("%H").to_string(),
                r.events,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("web1".into(), "syslog".into(), "10".into(), 3),
            ("192.0.2.10".into(), "syslog".into(), "11".into(), 1),
            ("web1".into(), "syslog".into(), "11".into(), 2),
        ]
    );
    let addrs = db
        .address_days(recv.date_naive(), recv.date_naive())
        .unwrap();
    assert_eq!(addrs.len(), 1, "private 10.0.0.5 is not counted: {addrs:?}");
    assert_eq!(addrs[0].ip.to_string(), "203.0.113.9");
    assert_eq!(
        (
            addrs[0].events,
            addrs[0].auth_failures,
            addrs[0].auth_successes
        ),
        (4, 3, 1)
    );
    assert_eq!(addrs[0].first_seen, t("2026-12-06T10:00:00Z"));
    assert_eq!(db.aggregates_through().unwrap(), 6);
    let seen = db.sources_seen().unwrap();
    assert!(seen.iter().all(|s| s.last_seen == recv), "{seen:?}");
}

#[test]
fn caps_bound_sources_and_addresses() {
    let tally = Tally::new(Networks::default(), 2, 10);
    let lines: Vec<String> = (0..50)
        .map(|i| format!("<38>1 2026-12-06T10:00:00Z host{i} sshd 1 - - Failed password for root from 198.51.{i}.7 port 22 ssh2"))
        .collect();
    tally.count(
        &syslog(&lines),
        SourceKind::Tcp,
        t("2026-12-06T10:00:05Z"),
        50,
    );
    let w = tally.take();
    assert_eq!(w.sources.len(), 3, "two sources and (other)");
    assert!(w.sources.contains_key(OTHER_SOURCE));
    assert_eq!(w.addrs.len(), 11, "ten addresses and 0.0.0.0");
    let other = w
        .addrs
        .iter()
        .find(|((ip, _), _)| *ip == OTHER_ADDRESS)
        .unwrap();
    assert_eq!(other.1.events, 40);
}

#[test]
fn internal_addresses_are_not_external() {
    for a in [
        "10.1.2.3",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.1.1",
        "fe80::1",
        "fd00::1",
        "::1",
        "100.64.0.1",
        "::ffff:10.0.0.1",
    ] {
        assert!(!is_external(a.parse().unwrap()), "{a}");
    }
    for a in ["203.0.113.9", "8.8.8.8", "2001:db8::1"] {
        assert!(is_external(a.parse().unwrap()), "{a}");
    }
}

#[test]
fn one_alert_per_episode_and_recovery_closes_it() {
    let db = Arc::new(SqliteAlertStore::open_in_memory().unwrap());
    let c = SourcesConfig {
        min_silence_secs: 60,
        ..SourcesConfig::default()
    };
    let h = SourceHealth::open(c, Networks::default(), Arc::clone(&db)).unwrap();
    let m = Metrics::default();
    let (tx, _rx) = broadcast::channel(16);
    let line = |ts: &str| format!("<38>1 {ts} fw1 kernel - - - packet");
    let base = Utc::now() - TimeDelta::minutes(10);
    let evs = syslog(&[line(&base.to_rfc3339())]);
    h.tally.count(&evs, SourceKind::Udp, base, 1);
    h.tally
        .count(&evs, SourceKind::Udp, base + TimeDelta::seconds(5), 2);
    let now = Utc::now();
    let r = h.report(now).unwrap();
    assert_eq!(r.sources.len(), 1, "{r:?}");
    assert_eq!(r.sources[0].state, State::Silent, "{r:?}");
    assert_eq!(h.check(now, &*db, &tx, &m).unwrap(), 1);
    assert_eq!(
        h.check(now + TimeDelta::seconds(1), &*db, &tx, &m).unwrap(),
        0
    );
    let alerts = db.list_alerts(&Default::default()).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(&*alerts[0].rule_id.0, "mamori.sources.silent");
    assert!(alerts[0].details["description_ja"]
        .as_str()
        .unwrap()
        .contains("fw1"));
    assert_eq!(m.sources_by_state[2].load(Relaxed), 1);
    // It sends again: ok (new), episode closed; silence again is a second alert.
    h.tally.count(&evs, SourceKind::Udp, now, 3);
    assert_eq!(h.check(now, &*db, &tx, &m).unwrap(), 0);
    assert_eq!(m.sources_by_state[2].load(Relaxed), 0);
    // Three events in ten minutes: a usual gap of five minutes, silent after fifty.
    assert_eq!(
        h.check(now + TimeDelta::minutes(5), &*db, &tx, &m).unwrap(),
        0
    );
    assert_eq!(
        h.check(now + TimeDelta::minutes(60), &*db, &tx, &m)
            .unwrap(),
        1
    );
    assert_eq!(db.list_alerts(&Default::default()).unwrap().len(), 2);
}

#[test]
fn bad_sources_settings_are_refused_with_their_key() {
    let p = std::path::Path::new("mamori.toml");
    for (text, key) in [
        ("[sources]\ncollapse_ratio = 2.0\n", "collapse_ratio"),
        (
            "[sources]\nflush_interval_secs = 0\n",
            "flush_interval_secs",
        ),
        ("[sources]\nwatch_kinds = [\"smtp\"]\n", "watch_kinds"),
    ] {
        let e = crate::ServerConfig::parse(text, p).unwrap_err().to_string();
        assert!(e.contains(key), "{e}");
    }
    assert!(crate::ServerConfig::parse("[sources]\nunknown = 1\n", p).is_err());
    let c = crate::ServerConfig::parse("[sources]\nexpected = [\"fw01\"]\n", p).unwrap();
    assert_eq!(c.sources.expected, vec!["fw01".to_owned()]);
}
