use super::*;

fn small(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        days: 12,
        events_per_day: 400,
        ..SimConfig::default()
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for s in Scenario::ALL {
        let a = simulate(s, &small(7));
        let b = simulate(s, &small(7));
        let c = simulate(s, &small(8));
        assert_eq!(a.files, b.files, "{}", s.as_str());
        assert_ne!(a.files, c.files, "{}", s.as_str());
    }
}

#[test]
fn every_step_has_events_and_a_detection() {
    for s in Scenario::ALL {
        let sim = simulate(s, &small(3));
        assert!(!sim.steps.is_empty());
        for st in &sim.steps {
            assert!(!st.events.is_empty(), "{} {}", s.as_str(), st.step);
            assert!(!st.detect.is_empty());
        }
        assert!(sim.benign_events >= 12 * 400);
        let ct = &sim.files["cloudtrail.json"];
        let v: serde_json::Value =
            serde_json::from_str(ct).expect("cloudtrail is one JSON document");
        assert!(v["Records"].is_array());
    }
}

#[test]
fn scenario_names_round_trip() {
    for s in Scenario::ALL {
        assert_eq!(Scenario::parse(s.as_str()).unwrap(), s);
    }
    assert!(Scenario::parse("nope").is_err());
}

#[test]
fn the_vpn_gateway_writes_its_own_format_and_the_truth_points_at_it() {
    let vpn_lines = |sim: &Simulation, step: &str| -> Vec<String> {
        let lines: Vec<&str> = sim.files["vpn.log"].lines().collect();
        let st = sim.steps.iter().find(|s| s.step == step).unwrap();
        st.events
            .iter()
            .map(|e| {
                let n: usize = e.strip_prefix("vpn.log:").unwrap().parse().unwrap();
                lines[n - 1].to_owned()
            })
            .collect()
    };
    // vpn-intrusion: FortiGate SSL-VPN by default; the spray's truth is its 23 login failures.
    let sim = simulate(Scenario::VpnIntrusion, &small(4));
    let spray = vpn_lines(&sim, "vpn-password-spray");
    assert_eq!(spray.len(), 23);
    assert!(spray.iter().all(|l| l.starts_with("date=")
        && l.contains("action=\"ssl-login-fail\"")
        && l.contains("remip=89.160.20.115")));
    let login = vpn_lines(&sim, "vpn-login-guessed-password");
    assert!(login[0].contains("action=\"tunnel-up\"") && login[0].contains("user=\"yamada\""));
    // A chosen vendor, and the default of the other scenarios.
    let asa = simulate(
        Scenario::VpnIntrusion,
        &SimConfig {
            vpn_format: Some(VpnFormat::CiscoAsa),
            ..small(4)
        },
    );
    assert!(vpn_lines(&asa, "vpn-password-spray")
        .iter()
        .all(|l| l.contains("%ASA-6-716039: ") && l.contains("IP <89.160.20.115>")));
    let rw = simulate(Scenario::Ransomware, &small(4));
    assert!(vpn_lines(&rw, "vpn-login-phished-password")[0].contains("[auth@32473 "));
    for f in VpnFormat::ALL {
        assert_eq!(VpnFormat::parse(f.as_str()), Some(f));
    }
}

fn realistic(seed: u64) -> Simulation {
    simulate(
        Scenario::VpnIntrusion,
        &SimConfig {
            seed,
            days: 14,
            events_per_day: 100,
            staff: 20,
            ..SimConfig::default()
        },
    )
}

/// Office PCs' addresses of one person on two days: `FS01` logons from `office-dhcp`.
fn fs01_addresses(sim: &Simulation, user: &str, day: &str) -> std::collections::BTreeSet<String> {
    sim.files["windows.jsonl"]
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["EventID"] == 4624
                && v["TargetUserName"] == user
                && v["Computer"] == "FS01.corp.example"
                && v["TimeCreated"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(day))
        })
        .filter_map(|v| v["IpAddress"].as_str().map(str::to_owned))
        .filter(|ip| ip.starts_with("10.0.20."))
        .collect()
}

#[test]
fn realistic_background_churns_leases_and_has_joiners_leavers_and_noise() {
    let sim = realistic(5);
    // DHCP churn: a PC's address changes from one working day to the next, and the address
    // it had is handed to some other PC.
    let c = background_company::Company::new(&SimConfig {
        seed: 5,
        days: 14,
        staff: 20,
        ..SimConfig::default()
    });
    let (a1, a2) = (c.lease(0, 1), c.lease(0, 2));
    assert_ne!(a1, a2);
    assert!((1..c.members.len() + 3).any(|pc| c.lease(pc, 2) == a1));
    let day1: std::collections::BTreeSet<String> =
        (0..c.members.len()).map(|pc| c.lease(pc, 1)).collect();
    assert_eq!(day1.len(), c.members.len(), "one lease per PC a day");
    assert!(!fs01_addresses(&sim, "tanaka", "2026-09-01").is_empty());
    // The new hire appears only from their first day; the leaver not after their last.
    let ids = &sim.identities;
    assert!(ids.contains("account,mori,森,active,,2026-09-05"), "{ids}");
    assert!(
        ids.contains("account,hayashi,林,departed,2026-09-08,"),
        "{ids}"
    );
    let win = &sim.files["windows.jsonl"];
    for l in win.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let t = v["TimeCreated"].as_str().unwrap();
        if v["TargetUserName"] == "mori" && v["EventID"] == 4624 {
            assert!(t >= "2026-09-05", "{l}");
        }
        if v["TargetUserName"] == "hayashi" && v["EventID"] == 4624 {
            assert!(t < "2026-09-09", "{l}");
        }
    }
    // Travel: VPN logins from abroad with the right account.
    assert!(sim.files["vpn.log"].contains("2001:238:1:4::"));
    // The internet's noise is tagged by episode, one source and day each, and never part of
    // the scenario's ground truth.
    assert!(sim.background_attacks.len() >= 14);
    let bad: std::collections::BTreeSet<&String> =
        sim.steps.iter().flat_map(|s| s.events.iter()).collect();
    for e in &sim.background_attacks {
        assert!(!e.events.is_empty(), "{e:?}");
        assert!(e.events.iter().all(|l| !bad.contains(l)));
    }
    assert!(sim
        .background_attacks
        .iter()
        .any(|e| e.kind == "internal-vuln-scanner" && e.authorised));
    assert!(!sim.files["mail.log"].is_empty());
}

#[test]
fn simple_background_is_kept_for_rule_content() {
    let sim = simulate(
        Scenario::Ransomware,
        &SimConfig {
            days: 12,
            events_per_day: 400,
            realistic: false,
            ..SimConfig::default()
        },
    );
    assert!(sim.background_attacks.is_empty());
    assert!(!sim.identities.contains("hayashi"));
}
