//! `mamori simulate`: write realistic logs of an incident plus its ground truth.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use mamori_sim::{simulate, Scenario, SimConfig, VpnFormat};

use crate::exit;

#[derive(Args, Debug)]
#[command(
    long_about = "Write realistic logs of an incident, mixed into benign background traffic.\n\n\
Scenarios: vpn-intrusion, webmail-exploit, ransomware, insider-export, vendor-key.\n\
Writes DIR/logs/ (auth.log, vpn.log, access.log, windows.jsonl, cloudtrail.json, mail.log),\n\
DIR/identities.csv (the simulated company's identity directory), DIR/ground_truth.jsonl (every\n\
malicious step with its file:line locations and the detections expected to find it) and\n\
DIR/background_attacks.jsonl (the internet's scans and password guessing of the realistic\n\
background, one episode per source and day). Deterministic for a given seed.\n\
vpn.log is written as the VPN gateway writes it: FortiGate SSL-VPN key=value for vpn-intrusion,\n\
RFC 5424 syslog for the others, or as chosen with --vpn-format (fortigate, cisco-asa, paloalto,\n\
rfc5424).\n\n\
Example:\n    mamori simulate vpn-intrusion --out /tmp/sim && \\\n    \
mamori hunt /tmp/sim/logs --rules rules --identities /tmp/sim/identities.csv"
)]
pub(crate) struct SimulateArgs {
    /// Scenario to play (or `all`, each into DIR/<scenario>).
    #[arg(value_name = "SCENARIO")]
    scenario: String,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Days of logs (at least 10; the attack happens near the end).
    #[arg(long, default_value_t = 21)]
    days: u32,
    /// Benign events per day.
    #[arg(long, value_name = "N", default_value_t = 3000)]
    events_per_day: u32,
    /// The VPN gateway's log format: fortigate, cisco-asa, paloalto or rfc5424 (default: fortigate for
    /// vpn-intrusion, rfc5424 for the other scenarios).
    #[arg(long, value_name = "FORMAT")]
    vpn_format: Option<String>,
    /// Staff of the simulated company (at least 12; a new hire and a leaver come on top).
    #[arg(long, value_name = "N", default_value_t = 24)]
    staff: u32,
    /// Background: `realistic` (DHCP churn, people moving between PCs, a new hire and a leaver,
    /// travel, admin work, backups, the company's vulnerability scanner, the internet's
    /// scans and password guessing, mail logins; the internet's attacks are listed in
    /// DIR/background_attacks.jsonl) or `simple` (only the staff's stable habits).
    #[arg(long, value_name = "KIND", default_value = "realistic", value_parser = ["realistic", "simple"])]
    background: String,
}

pub(crate) fn run(args: SimulateArgs) -> anyhow::Result<i32> {
    let scenarios: Vec<(Scenario, PathBuf)> = if args.scenario == "all" {
        Scenario::ALL
            .iter()
            .map(|s| (*s, args.out.join(s.as_str())))
            .collect()
    } else {
        match Scenario::parse(&args.scenario) {
            Ok(s) => vec![(s, args.out.clone())],
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(exit::USAGE);
            }
        }
    };
    let vpn_format = match args.vpn_format.as_deref().map(|f| (f, VpnFormat::parse(f))) {
        None => None,
        Some((_, Some(f))) => Some(f),
        Some((f, None)) => {
            let known: Vec<&str> = VpnFormat::ALL.iter().map(|f| f.as_str()).collect();
            eprintln!(
                "error: unknown VPN format `{f}` (expected one of: {})",
                known.join(", ")
            );
            return Ok(exit::USAGE);
        }
    };
    let cfg = SimConfig {
        vpn_format,
        seed: args.seed,
        days: args.days,
        events_per_day: args.events_per_day,
        staff: args.staff,
        realistic: args.background == "realistic",
        ..SimConfig::default()
    };
    for (s, dir) in scenarios {
        let sim = simulate(s, &cfg);
        sim.write_to(&dir)
            .with_context(|| format!("cannot write the {} simulation", s.as_str()))?;
        eprintln!(
            "{}: {} benign + {} malicious events in {} steps → {}",
            s.as_str(),
            sim.benign_events,
            sim.malicious_events,
            sim.steps.len(),
            dir.display()
        );
    }
    Ok(exit::OK)
}
