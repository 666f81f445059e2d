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
