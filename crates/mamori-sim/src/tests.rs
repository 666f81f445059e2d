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
