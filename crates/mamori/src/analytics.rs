//! Glue for `mamori hunt`'s baseline analytics (`mamori-analytics`): options, a parallel pass
//! that extracts compact observations from every file, the time-ordered analytics run, and the
//! timeline rows.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use mamori_analytics::{Analytics, Config, Directory, GeoIp, Observation, State};
use mamori_event::Level;
use mamori_ingest::ReadOptions;
use rayon::prelude::*;

use crate::timeline::Row;

#[derive(Args, Debug, Default)]
pub(crate) struct AnalyticsArgs {
    /// Run the baseline analytics (first-seen, volume, off-hours) and keep what they learned in
    /// FILE (read if it exists, written after the hunt).
    #[arg(long, value_name = "FILE")]
    baseline_state: Option<PathBuf>,
    /// Identity directory (CSV or JSON: kind,id,person,status,end_date,created); any activity
    /// by a departed identity is an alert. Enables the baseline analytics.
    #[arg(long, value_name = "FILE")]
    identities: Option<PathBuf>,
    /// Run the baseline analytics without a saved state (the first days of the logs are learned).
    #[arg(long)]
    baselines: bool,
    /// MaxMind GeoIP2/GeoLite2 City (or Country) database: new-country and impossible-travel
    /// checks on logins. Enables the baseline analytics.
    #[arg(long, value_name = "FILE")]
    geoip_city: Option<PathBuf>,
    /// MaxMind ASN database: the network of a first-seen address. Enables the baseline analytics.
    #[arg(long, value_name = "FILE")]
    geoip_asn: Option<PathBuf>,
}

impl AnalyticsArgs {
    pub(crate) fn enabled(&self) -> bool {
        self.baselines
            || self.baseline_state.is_some()
            || self.identities.is_some()
            || self.geoip_city.is_some()
            || self.geoip_asn.is_some()
    }
}

/// Reads `files` again, runs the analytics over their observations in time order, returns rows.
pub(crate) fn run(
    args: &AnalyticsArgs,
    files: &[PathBuf],
    read_opts: &ReadOptions,
    pool: &rayon::ThreadPool,
    min_level: Level,
) -> anyhow::Result<Vec<Row>> {
    let directory = match &args.identities {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(Directory::parse(&text, &p.display().to_string())?)
        }
        None => None,
    };
    let state = match &args.baseline_state {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            State::from_json(&text).with_context(|| format!("in {}", p.display()))?
        }
        _ => State::default(),
    };
    let mut obs: Vec<Observation> = pool.install(|| {
        files
            .par_iter()
            .flat_map_iter(|path: &PathBuf| observations(path, read_opts))
            .collect()
    });
    obs.sort_by(|a, b| (a.time, &a.source).cmp(&(b.time, &b.source)));
    let mut engine = Analytics::new(Config::default(), directory, state);
    if args.geoip_city.is_some() || args.geoip_asn.is_some() {
        engine.set_geo(GeoIp::open(
            args.geoip_city.as_deref(),
            args.geoip_asn.as_deref(),
        )?);
    }
    let mut alerts = Vec::new();
    for o in &obs {
        engine.observe(o, &mut alerts);
    }
    engine.finish(&mut alerts);
    if let Some(p) = &args.baseline_state {
        std::fs::write(p, engine.state().to_json())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(alerts
        .into_iter()
        .filter(|a| a.level >= min_level)
        .map(|a| Row {
            timestamp: Some(a.time),
            host: a.host,
            source: a.source,
            rule_id: a.rule_id.to_owned(),
            rule_title: a.title.to_owned(),
            level: a.level,
            tags: a.tags.iter().map(|t| (*t).to_owned()).collect(),
            details: a.details,
            event: None,
            evidence: None,
        })
        .collect())
}

fn observations(path: &Path, read_opts: &ReadOptions) -> Vec<Observation> {
    let mut out = Vec::new();
    let _ = mamori_ingest::read_file(path, read_opts, &mut |ev| {
        if let Some(o) = Observation::from_event(&ev) {
            out.push(o);
        }
    });
    out
}
