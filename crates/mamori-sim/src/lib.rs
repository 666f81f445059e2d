//! Attack simulator: realistic logs of the incidents small companies suffer, mixed into benign
//! background traffic, with a ground-truth file naming every malicious step.
//!
//! # Key design decision: deterministic, format-faithful, truth by location
//!
//! A [`Simulation`] is a pure function of a [`Scenario`] and a [`SimConfig`] (seed included):
//! the generator uses its own SplitMix64 so the same seed gives the same bytes with any `rand`
//! version. Logs are written in the formats the readers meet in the field — syslog `auth.log`,
//! RFC 5424 VPN syslog with structured data, Apache combined access logs, Windows events as JSON
//! lines (Winlogbeat-like flat EventData), CloudTrail `{"Records":[…]}` — so a hunt over them
//! exercises the real readers. Every malicious record is tagged while generating; after the
//! records of a file are sorted by time the tags become `file:line` (or `file:record`) locations
//! in `ground_truth.jsonl`, one line per attack [`Step`], with the detections expected to find
//! it and the indicators (addresses, accounts, keys) that correlation and baseline alerts name.
//!
//! All times are UTC; office hours are 09:00–18:00 JST (00:00–09:00 UTC).

mod background;
pub(crate) mod background_company;
mod background_noise;
pub mod load;
mod rng;
mod scenarios;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

pub use rng::Rng;
pub use scenarios::ids;

/// Errors writing a simulation to disk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("unknown scenario `{0}` (expected one of: {list})", list = Scenario::names().join(", "))]
    UnknownScenario(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The incidents the simulator can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Sprayed VPN password, lateral movement with stolen admin credentials, exfiltration.
    VpnIntrusion,
    /// Scan, web attacks, webmail (Active!mail-style) exploit, webshell, mailbox theft.
    WebmailExploit,
    /// Phished password over VPN, persistence, backup/shadow-copy deletion, log clearing.
    Ransomware,
    /// A contractor exporting customer records a little at a time, after hours, past contract end.
    InsiderExport,
    /// A former vendor's never-revoked AWS access key used to take S3 data and cover tracks.
    VendorKey,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::VpnIntrusion,
        Scenario::WebmailExploit,
        Scenario::Ransomware,
        Scenario::InsiderExport,
        Scenario::VendorKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::VpnIntrusion => "vpn-intrusion",
            Scenario::WebmailExploit => "webmail-exploit",
            Scenario::Ransomware => "ransomware",
            Scenario::InsiderExport => "insider-export",
            Scenario::VendorKey => "vendor-key",
        }
    }

    pub fn names() -> Vec<&'static str> {
        Scenario::ALL.iter().map(|s| s.as_str()).collect()
    }

    pub fn parse(s: &str) -> Result<Scenario> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| Error::UnknownScenario(s.to_owned()))
    }
}

/// The log format the simulated VPN gateway writes (`vpn.log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VpnFormat {
    /// RFC 5424 syslog with `[auth@32473 user= src= result=]` structured data.
    Rfc5424,
    /// FortiGate SSL-VPN key=value lines as the appliance writes them to disk
    /// (`date= time= devname= … logid="0101039426" … action="ssl-login-fail" remip= user=`).
    Fortigate,
    /// Cisco ASA AnyConnect/WebVPN syslog (`%ASA-6-716039: Group <…> User <…> IP <…>
    /// Authentication: rejected`), RFC 3164 header.
    CiscoAsa,
    /// Palo Alto Networks GlobalProtect gateway logs (PAN-OS 9.1+ `GLOBALPROTECT` CSV) as a
    /// syslog server writes them (`Sep  1 00:00:00 pa-fw 1,2026/09/01 …,GLOBALPROTECT,…`).
    PaloAlto,
}

impl VpnFormat {
    pub const ALL: [VpnFormat; 4] = [
        VpnFormat::Rfc5424,
        VpnFormat::Fortigate,
        VpnFormat::CiscoAsa,
        VpnFormat::PaloAlto,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VpnFormat::Rfc5424 => "rfc5424",
            VpnFormat::Fortigate => "fortigate",
            VpnFormat::CiscoAsa => "cisco-asa",
            VpnFormat::PaloAlto => "paloalto",
        }
    }

    pub fn parse(s: &str) -> Option<VpnFormat> {
        VpnFormat::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// How much background and over how long.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Days of logs; the attack happens in the last part. At least 10.
    pub days: u32,
    /// Benign events per day, spread over all log files.
    pub events_per_day: u32,
    /// First day (UTC).
    pub start: NaiveDate,
    /// The VPN gateway's log format; `None`: FortiGate for `vpn-intrusion`, RFC 5424 otherwise.
    pub vpn_format: Option<VpnFormat>,
    /// Staff of the simulated company (at least the twelve named people the scenarios use;
    /// more are numbered `staff013`, …), plus a new hire and a leaver.
    pub staff: u32,
    /// The realistic company background (DHCP churn, travel, admin work, backups, the
    /// internet's noise, …); `false`: only the staff's stable habits (the older, simpler
    /// background, kept to test rule content on its own).
    pub realistic: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            days: 21,
            events_per_day: 3000,
            start: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default(),
            vpn_format: None,
            staff: 24,
            realistic: true,
        }
    }
}

/// The log files a simulation writes (under `logs/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogFile {
    AuthLog,
    VpnLog,
    AccessLog,
    Windows,
    CloudTrail,
    MailLog,
}

impl LogFile {
    pub const ALL: [LogFile; 6] = [
        LogFile::AuthLog,
        LogFile::VpnLog,
        LogFile::AccessLog,
        LogFile::Windows,
        LogFile::CloudTrail,
        LogFile::MailLog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LogFile::AuthLog => "auth.log",
            LogFile::VpnLog => "vpn.log",
            LogFile::AccessLog => "access.log",
            LogFile::Windows => "windows.jsonl",
            LogFile::CloudTrail => "cloudtrail.json",
            LogFile::MailLog => "mail.log",
        }
    }
}

/// One log record before it is placed in its file.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) time: DateTime<Utc>,
    pub(crate) file: LogFile,
    /// The line (or JSON object) exactly as written.
    pub(crate) text: String,
    /// Index into [`Simulation::steps`] when malicious.
    pub(crate) step: Option<usize>,
    /// Index into [`Simulation::background_attacks`] when part of the internet's background
    /// noise (or the company's own scanner).
    pub(crate) noise: Option<usize>,
}

/// An episode of background attack traffic: not part of the scenario, but real attacks (or the
/// company's authorised vulnerability scanner) that every exposed service receives. Written to
/// `background_attacks.jsonl` so an evaluation can check what the operator is told about them:
/// at most one row per episode (one source on one day), never above level `low` for probes that
/// failed, and nothing for the authorised scanner.
#[derive(Debug, Clone, Serialize)]
pub struct Episode {
    /// `ssh-guessing`, `vpn-guessing`, `mail-guessing`, `web-scanner`, `exploit-probe`,
    /// `internal-vuln-scanner`.
    pub kind: &'static str,
    /// The source address.
    pub source: String,
    /// Day (UTC date) of the episode.
    pub day: String,
    /// Whether the traffic is authorised (the company's own scanner).
    pub authorised: bool,
    /// `file:line` of every record of the episode.
    pub events: Vec<String>,
}

/// One malicious step of a scenario, as written to `ground_truth.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub scenario: &'static str,
    pub step: &'static str,
    pub description: &'static str,
    /// ATT&CK technique.
    pub technique: &'static str,
    /// Rule ids of which any one finding the step counts as detecting it.
    pub detect: Vec<&'static str>,
    /// Values a correlation or baseline alert about this step names (address, account, key).
    pub indicators: Vec<String>,
    /// `file:line` (or `file:record` for CloudTrail) of every malicious record of the step.
    pub events: Vec<String>,
}

/// A generated data set.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub scenario: Scenario,
    pub steps: Vec<Step>,
    /// Background attack episodes (internet noise, the company's scanner); benign for the
    /// ground truth.
    pub background_attacks: Vec<Episode>,
    /// File name → content, records sorted by time.
    pub files: BTreeMap<&'static str, String>,
    /// Identity directory (CSV) of the simulated company.
    pub identities: String,
    pub benign_events: u64,
    pub malicious_events: u64,
    pub end: DateTime<Utc>,
}

/// Builds the records of a scenario; see [`Simulation`].
pub(crate) struct Builder {
    pub(crate) rng: Rng,
    pub(crate) cfg: SimConfig,
    pub(crate) records: Vec<Record>,
    pub(crate) steps: Vec<Step>,
    pub(crate) episodes: Vec<Episode>,
    pub(crate) scenario: Scenario,
    pub(crate) pid: u32,
    pub(crate) company: background_company::Company,
}

impl Builder {
    pub(crate) fn day_start(&self, day: u32) -> DateTime<Utc> {
        self.cfg
            .start
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            + Duration::days(day.into())
    }

    /// Registers a step; records pushed with [`Builder::bad`] refer to it.
    pub(crate) fn step(
        &mut self,
        step: &'static str,
        description: &'static str,
        technique: &'static str,
        detect: &[&'static str],
        indicators: &[&str],
    ) -> usize {
        self.steps.push(Step {
            scenario: self.scenario.as_str(),
            step,
            description,
            technique,
            detect: detect.to_vec(),
            indicators: indicators.iter().map(|s| (*s).to_owned()).collect(),
            events: Vec::new(),
        });
        self.steps.len() - 1
    }

    pub(crate) fn good(&mut self, time: DateTime<Utc>, file: LogFile, text: String) {
        self.records.push(Record {
            time,
            file,
            text,
            step: None,
            noise: None,
        });
    }

    pub(crate) fn bad(&mut self, step: usize, time: DateTime<Utc>, file: LogFile, text: String) {
        self.records.push(Record {
            time,
            file,
            text,
            step: Some(step),
            noise: None,
        });
    }

    /// Registers a background attack episode; see [`Episode`].
    pub(crate) fn episode(
        &mut self,
        kind: &'static str,
        source: &str,
        day: u32,
        authorised: bool,
    ) -> usize {
        let d = self.day_start(day).date_naive().to_string();
        self.episodes.push(Episode {
            kind,
            source: source.to_owned(),
            day: d,
            authorised,
            events: Vec::new(),
        });
        self.episodes.len() - 1
    }

    /// A record of background attack traffic (benign for the scenario's ground truth).
    pub(crate) fn noisy(&mut self, ep: usize, time: DateTime<Utc>, file: LogFile, text: String) {
        self.records.push(Record {
            time,
            file,
            text,
            step: None,
            noise: Some(ep),
        });
    }

    /// The VPN log format of this run (see [`SimConfig::vpn_format`]).
    pub(crate) fn vpn_format(&self) -> VpnFormat {
        self.cfg.vpn_format.unwrap_or(match self.scenario {
            Scenario::VpnIntrusion => VpnFormat::Fortigate,
            _ => VpnFormat::Rfc5424,
        })
    }

    pub(crate) fn next_pid(&mut self) -> u32 {
        self.pid += 1;
        self.pid
    }
}

/// Generates a scenario. Deterministic in `(scenario, cfg)`.
pub fn simulate(scenario: Scenario, cfg: &SimConfig) -> Simulation {
    let mut cfg = cfg.clone();
    cfg.days = cfg.days.max(10);
    let company = background_company::Company::new(&cfg);
    let mut b = Builder {
        company,
        episodes: Vec::new(),
        rng: Rng::new(cfg.seed ^ (scenario as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        cfg,
        records: Vec::new(),
        steps: Vec::new(),
        scenario,
        pid: 3000,
    };
    background::generate(&mut b);
    scenarios::generate(&mut b);
    let identities = background::identities_csv(&b);
    assemble(b, identities)
}

fn assemble(mut b: Builder, identities: String) -> Simulation {
    // Stable sort: records with equal times keep generation order.
    b.records.sort_by_key(|r| r.time);
    let mut files: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut counts: BTreeMap<LogFile, u64> = BTreeMap::new();
    let (mut benign, mut malicious) = (0u64, 0u64);
    let end = b.records.last().map(|r| r.time).unwrap_or_default();
    for f in LogFile::ALL {
        let head = if f == LogFile::CloudTrail {
            "{\"Records\":[\n"
        } else {
            ""
        };
        files.insert(f.name(), head.to_owned());
    }
    for r in &b.records {
        let n = counts.entry(r.file).or_default();
        *n += 1;
        let text = files.entry(r.file.name()).or_default();
        if r.file == LogFile::CloudTrail && *n > 1 {
            text.push_str(",\n");
        }
        text.push_str(&r.text);
        if r.file != LogFile::CloudTrail {
            text.push('\n');
        }
        match r.step {
            Some(s) => {
                malicious += 1;
                if let Some(step) = b.steps.get_mut(s) {
                    step.events.push(format!("{}:{n}", r.file.name()));
                }
            }
            None => benign += 1,
        }
        if let Some(e) = r.noise.and_then(|e| b.episodes.get_mut(e)) {
            e.events.push(format!("{}:{n}", r.file.name()));
        }
    }
    if let Some(t) = files.get_mut(LogFile::CloudTrail.name()) {
        t.push_str("\n]}\n");
    }
    Simulation {
        scenario: b.scenario,
        steps: b.steps,
        background_attacks: b.episodes,
        files,
        identities,
        benign_events: benign,
        malicious_events: malicious,
        end,
    }
}

impl Simulation {
    /// Writes `DIR/logs/<files>`, `DIR/identities.csv` and `DIR/ground_truth.jsonl`. The log
    /// files' modification time is set to the end of the simulated period so that syslog
    /// timestamps (which carry no year) resolve to the simulated year.
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |source| Error::Io { path, source }
        };
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(io(&logs))?;
        let mtime = std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(self.end.timestamp().max(0) as u64);
        for (name, text) in &self.files {
            let p = logs.join(name);
            std::fs::write(&p, text).map_err(io(&p))?;
            let f = std::fs::File::options()
                .write(true)
                .open(&p)
                .map_err(io(&p))?;
            f.set_modified(mtime).map_err(io(&p))?;
        }
        let p = dir.join("identities.csv");
        std::fs::write(&p, &self.identities).map_err(io(&p))?;
        let mut truth = String::new();
        for s in &self.steps {
            truth.push_str(&serde_json::to_string(s).unwrap_or_default());
            truth.push('\n');
        }
        let p = dir.join("ground_truth.jsonl");
        std::fs::write(&p, truth).map_err(io(&p))?;
        let mut noise = String::new();
        for e in &self.background_attacks {
            noise.push_str(&serde_json::to_string(e).unwrap_or_default());
            noise.push('\n');
        }
        let p = dir.join("background_attacks.jsonl");
        std::fs::write(&p, noise).map_err(io(&p))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
