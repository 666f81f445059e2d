use chrono::{Duration, TimeZone};

use super::*;

fn obs(day: i64, hour: u32, actor: &str, ip: &str, bytes: Option<u64>) -> Observation {
    Observation {
        time: Utc.with_ymd_and_hms(2026, 9, 1, hour, 0, 0).unwrap() + Duration::days(day),
        actor: actor.into(),
        login: bytes.is_none(),
        address: Some(ip.into()),
        host: None,
        bytes,
        source: format!("t.log:{day}"),
        seq: None,
    }
}

#[test]
fn median_and_mad() {
    assert_eq!(median_mad(&[1, 2, 3, 4, 100]), (3.0, 1.0));
    assert_eq!(median_mad(&[]), (0.0, 0.0));
}

#[test]
fn first_seen_address_only_after_history_and_not_learned_from() {
    let mut a = Analytics::default();
    let mut out = Vec::new();
    for d in 0..5 {
        a.observe(&obs(d, 1, "tanaka", "198.51.100.21", None), &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    a.observe(&obs(5, 2, "tanaka", "45.155.205.33", None), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rule_id, ids::FIRST_ADDRESS);
    assert!(out[0]
        .details
        .iter()
        .any(|(_, v)| v.contains("198.51.100.21")));
    a.observe(&obs(6, 2, "tanaka", "45.155.205.33", None), &mut out);
    assert_eq!(out.len(), 2, "an alerting address is not learned");
}

/// The account's own new address in the morning (a home router never seen, say) must not hide
/// an intruder's login from another new address the same evening.
#[test]
fn a_second_new_address_the_same_day_is_reported_too() {
    let mut a = Analytics::default();
    let mut out = Vec::new();
    for d in 0..5 {
        a.observe(&obs(d, 1, "sato", "198.51.100.21", None), &mut out);
    }
    a.observe(&obs(5, 0, "sato", "2001:240:2a:22::10", None), &mut out);
    a.observe(&obs(5, 1, "sato", "2001:240:2a:22::10", None), &mut out);
    assert_eq!(
        out.len(),
        1,
        "the same address twice a day is one finding: {out:?}"
    );
    a.observe(&obs(5, 17, "sato", "175.16.199.18", None), &mut out);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[1]
        .details
        .iter()
        .any(|(_, v)| v.contains("175.16.199.18")));
}

#[test]
fn slow_exfiltration_stands_out_against_own_history() {
    let mut a = Analytics::default();
    let mut out = Vec::new();
    for d in 0..10 {
        a.observe(
            &obs(
                d,
                3,
                "kobayashi",
                "198.51.100.10",
                Some(9_000 + (d as u64 % 3) * 1500),
            ),
            &mut out,
        );
    }
    // 150 KB: far under any fixed threshold, far above this account's habit.
    a.observe(
        &obs(10, 3, "kobayashi", "198.51.100.10", Some(150_000)),
        &mut out,
    );
    a.finish(&mut out);
    let v: Vec<_> = out.iter().filter(|x| x.rule_id == ids::VOLUME).collect();
    assert_eq!(v.len(), 1, "{out:?}");
    assert!(v[0].details.iter().any(|(_, w)| w.contains("robust z")));
}

#[test]
fn departed_identity_and_old_key() {
    let dir = Directory::parse(
        "kind,id,person,status,end_date,created\naccount,kobayashi,小林,contractor_ended,2026-09-03,\nkey,AKIAX,vendor,departed,2024-03-31,2022-01-10\n",
        "ids.csv",
    )
    .unwrap();
    let mut a = Analytics::new(Config::default(), Some(dir), State::default());
    let mut out = Vec::new();
    a.observe(&obs(1, 1, "kobayashi", "1.1.1.1", None), &mut out);
    assert!(out.is_empty(), "before the end date is fine: {out:?}");
    a.observe(&obs(3, 1, "kobayashi", "1.1.1.1", None), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rule_id, ids::DEPARTED);
    a.observe(&obs(3, 2, "AKIAX", "5.188.62.140", None), &mut out);
    let rules: Vec<_> = out.iter().map(|x| x.rule_id).collect();
    assert!(
        rules.contains(&ids::KEY_AGE) && rules.iter().filter(|r| **r == ids::DEPARTED).count() == 2,
        "{rules:?}"
    );
    assert!(Directory::parse(
        "kind,id,person,status,end_date,created\naccount,a,b,weird,,\n",
        "x"
    )
    .is_err());
}

#[test]
fn off_hours_after_enough_history() {
    let mut a = Analytics::default();
    let mut out = Vec::new();
    for d in 0..10 {
        for h in [0, 2, 4, 6] {
            a.observe(&obs(d, h, "sato", "198.51.100.22", None), &mut out);
        }
    }
    assert!(out.is_empty());
    a.observe(&obs(10, 17, "sato", "198.51.100.22", None), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rule_id, ids::OFF_HOURS);
}

#[test]
fn state_round_trips() {
    let mut a = Analytics::default();
    let mut out = Vec::new();
    a.observe(&obs(0, 1, "tanaka", "198.51.100.21", None), &mut out);
    let s = State::from_json(&a.state().to_json()).unwrap();
    assert_eq!(s.accounts.len(), 1);
}

fn corpus_geoip() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("MAMORI_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus").into());
    let p = base.join("geoip-maxmind-test/test-data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: corpus not found at {}", p.display());
        None
    }
}

#[test]
fn geoip_new_country_and_impossible_travel_with_maxmind_test_databases() {
    let Some(dir) = corpus_geoip() else { return };
    let geo = GeoIp::open(
        Some(&dir.join("GeoLite2-City-Test.mmdb")),
        Some(&dir.join("GeoLite2-ASN-Test.mmdb")),
    )
    .unwrap();
    let london = geo.locate("81.2.69.142").unwrap();
    assert_eq!(london.country.as_deref(), Some("GB"));
    assert_eq!(london.city.as_deref(), Some("London"));
    assert_eq!(geo.locate("1.0.0.1").and_then(|p| p.asn), Some(15169));
    assert!(geo.locate("not an ip").is_none());
    let se = geo.locate("89.160.20.113").unwrap();
    let km = distance_km(london.coords.unwrap(), se.coords.unwrap());
    assert!((1200.0..1300.0).contains(&km), "{km}");

    let mut a = Analytics::default();
    a.set_geo(geo);
    let mut out = Vec::new();
    for d in 0..5 {
        a.observe(&obs(d, 1, "tanaka", "81.2.69.142", None), &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    // One hour after a London login, a login from Linköping: new country and ~1,260 km/h.
    a.observe(&obs(4, 2, "tanaka", "89.160.20.113", None), &mut out);
    let rules: Vec<_> = out.iter().map(|x| x.rule_id).collect();
    assert!(rules.contains(&ids::NEW_COUNTRY), "{rules:?}");
    assert!(rules.contains(&ids::IMPOSSIBLE_TRAVEL), "{rules:?}");
    let why = &out
        .iter()
        .find(|x| x.rule_id == ids::IMPOSSIBLE_TRAVEL)
        .unwrap()
        .details;
    assert!(
        why.iter()
            .any(|(_, v)| v.contains("km/h") && v.contains("London")),
        "{why:?}"
    );
    // A business trip: the next days in Sweden, from other addresses there, are new
    // addresses but no longer a new country (reported once, then known).
    let before = out.len();
    a.observe(&obs(6, 8, "tanaka", "89.160.20.130", None), &mut out);
    a.observe(&obs(7, 8, "tanaka", "89.160.20.131", None), &mut out);
    let later: Vec<_> = out[before..].iter().map(|x| x.rule_id).collect();
    assert!(!later.contains(&ids::NEW_COUNTRY), "{later:?}");
    assert_eq!(
        later.iter().filter(|r| **r == ids::FIRST_ADDRESS).count(),
        2,
        "{later:?}"
    );
}

#[test]
fn geoip_never_panics_on_broken_databases() {
    let Some(dir) = corpus_geoip() else { return };
    for name in [
        "MaxMind-DB-test-broken-search-tree-24.mmdb",
        "MaxMind-DB-test-broken-pointers-24.mmdb",
        "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
        "GeoIP2-City-Test-Broken-Double-Format.mmdb",
    ] {
        if let Ok(g) = GeoIp::open(Some(&dir.join(name)), None) {
            for ip in ["1.1.1.1", "81.2.69.142", "2001:218::1"] {
                let _ = g.locate(ip);
            }
        }
    }
}

/// Issue #14: with only the VPN log received so far (a shuffled upload), an account's own
/// history is too short to say what its hours are; a login at an hour at which nobody in the
/// organisation ever logs in is still off-hours — judged against the organisation's logins.
#[test]
fn a_short_history_is_judged_against_the_organisations_hours() {
    let mut a = Analytics::default();
    let mut out = Vec::new();
    // Twenty colleagues log in every morning (00:00–02:59 UTC) for ten days; sato on five
    // (a week of VPN logins, too few events for its own hours).
    for d in 0..10 {
        for k in 0..20 {
            let who = format!("staff{k}");
            a.observe(
                &obs(d, (k % 3) as u32, &who, "198.51.100.21", None),
                &mut out,
            );
        }
        if d < 5 {
            a.observe(&obs(d, 1, "sato", "198.51.100.30", None), &mut out);
        }
    }
    assert!(out.is_empty(), "{out:?}");
    // A morning login of sato: not odd.
    a.observe(&obs(10, 2, "sato", "198.51.100.30", None), &mut out);
    assert!(out.is_empty(), "{out:?}");
    // 17:00 UTC (02:00 in Tokyo): nobody logs in then.
    a.observe(&obs(10, 17, "sato", "198.51.100.30", None), &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].rule_id, ids::OFF_HOURS);
    let why = &out[0].details.iter().find(|(k, _)| k == "why").unwrap().1;
    assert!(why.contains("logins of the organisation"), "{why}");
}

/// Mail logins (dovecot IMAP, as a phone's client logs in from home) feed the baselines: the
/// address is known afterwards.
#[test]
fn a_mail_login_is_a_login_observation() {
    let mut names = mamori_event::Interner::new();
    let line = "<22>Sep  3 21:10:00 mx01 dovecot[4242]: imap-login: Login: user=<sato>, method=PLAIN, rip=198.51.100.44, lip=198.51.100.25, mpid=4243, TLS, session=<abc>";
    let origin = mamori_event::Origin::File {
        path: std::sync::Arc::from(std::path::Path::new("mail.log")),
        record: None,
        line: Some(1),
        offset: 0,
    };
    let ev = mamori_ingest::parse_syslog_line(line.as_bytes(), origin, &mut names).unwrap();
    let o = Observation::from_event(&ev).expect("a login");
    assert!(o.login);
    assert_eq!(
        (o.actor.as_str(), o.address.as_deref(), o.host.as_deref()),
        ("sato", Some("198.51.100.44"), None)
    );
}

/// Issue #14 (fidelity, ransomware seed 3): after four days of 00:00–07:59 UTC activity, the
/// phone's first evening mail check (20:54 in Tokyo) was "off-hours" — the working day's end
/// had not been seen yet. The account's own hours are judged after a working week.
#[test]
fn hours_are_judged_after_a_working_week() {
    let mut a = Analytics::default();
    let mut out = Vec::new();
    for d in 0..4 {
        for h in [0, 3, 5, 7] {
            a.observe(&obs(d, h, "kato", "198.51.100.10", None), &mut out);
        }
    }
    a.observe(&obs(4, 11, "kato", "198.51.100.10", None), &mut out);
    assert!(out.iter().all(|x| x.rule_id != ids::OFF_HOURS), "{out:?}");
}

/// Issue #15: account names come from logs (a forged VPN line names any account), so the
/// baselines are capped; at the cap the accounts active least recently are forgotten, a tenth
/// at a time, and counted.
#[test]
fn accounts_are_capped_and_the_least_recently_active_are_forgotten() {
    let cfg = Config {
        max_accounts: 50,
        ..Config::default()
    };
    let mut a = Analytics::new(cfg, None, State::default());
    let mut out = Vec::new();
    // A real account with a history, active every day.
    for d in 0..5 {
        a.observe(&obs(d, 9, "sato", "198.51.100.21", None), &mut out);
    }
    for i in 0..500 {
        a.observe(
            &obs(5 + i / 100, 3, &format!("forged{i}"), "203.0.113.9", None),
            &mut out,
        );
        if i % 100 == 0 {
            a.observe(
                &obs(5 + i / 100, 9, "sato", "198.51.100.21", None),
                &mut out,
            );
        }
        assert!(a.account_count() <= 50, "{}", a.account_count());
    }
    assert!(a.account_count() >= 44, "{}", a.account_count());
    assert_eq!(a.evicted() as usize + a.account_count(), 501);
    // The account active on the last day kept its baseline: a new address is still news.
    out.clear();
    a.observe(&obs(9, 9, "sato", "45.155.205.33", None), &mut out);
    assert!(
        out.iter().any(|x| x.rule_id == ids::FIRST_ADDRESS),
        "{out:?}"
    );
}

/// Issue #15: a flood of forged logins naming one account from many addresses and hosts while
/// it is still learning makes its baseline learn at most `MAX_KNOWN_PER_ACCOUNT` of each.
#[test]
fn one_accounts_learned_addresses_and_hosts_are_capped() {
    let mut a = Analytics::new(Config::default(), None, State::default());
    let mut out = Vec::new();
    for i in 0..(MAX_KNOWN_PER_ACCOUNT as u32 * 3) {
        let mut o = obs(
            0,
            9,
            "flooded",
            &format!("198.51.{}.{}", i / 200, 1 + i % 200),
            None,
        );
        o.host = Some(format!("pc-{i}"));
        a.observe(&o, &mut out);
    }
    let acct = &a.state.accounts["flooded"];
    assert_eq!(acct.addresses.len(), MAX_KNOWN_PER_ACCOUNT);
    assert_eq!(acct.hosts.len(), MAX_KNOWN_PER_ACCOUNT);
    // What was learned before the cap is still the account's.
    assert!(acct.addresses.contains("198.51.0.1") && acct.hosts.contains("pc-0"));
}
