//! `mamori bench report`: the monthly security audit of a busy month. The month's aggregates
//! are synthesised straight into a fresh `state.db` at the scale of `--events` events (what the
//! pipeline would have recorded: events per source-hour and per address-day, plus alerts),
//! then the report is loaded, built and rendered (PDF and HTML). The baseline, measured in the
//! same run, is the same report over an empty month: the fixed cost of typesetting.

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use mamori_event::{Level, RuleId};
use mamori_report::monthly::Month;
use mamori_report::{Format, Lang, Locale};
use mamori_store::{AddressDay, AlertStore, NewAlert, SourceHour, SqliteAlertStore};

use crate::exit;

#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// Events in the month (spread over the sources and addresses).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Log sources sending all month.
    #[arg(long, default_value_t = 200)]
    sources: u32,
    /// Distinct external addresses per day.
    #[arg(long, default_value_t = 2_000)]
    addresses_per_day: u32,
    /// Alerts in the month.
    #[arg(long, default_value_t = 5_000)]
    alerts: u32,
    /// Language of the report.
    #[arg(long, default_value = "ja")]
    lang: String,
}

fn synthesise(dir: &Path, a: &ReportArgs, from: DateTime<Utc>, days: i64) -> anyhow::Result<()> {
    let store = SqliteAlertStore::open(&dir.join("state.db"))?;
    let hours = days * 24;
    let per_source_hour = (a.events / (u64::from(a.sources) * hours as u64)).max(1);
    // One day at a time: memory stays at one day's rows.
    for d in 0..days {
        let day = from + TimeDelta::days(d);
        let mut rows = Vec::with_capacity(a.sources as usize * 24);
        for s in 0..a.sources {
            // The last source goes silent in the last week.
            if s + 1 == a.sources && d >= days - 7 {
                continue;
            }
            for h in 0..24 {
                rows.push(SourceHour {
                    source: format!("host-{s:04}"),
                    kind: if s % 3 == 0 { "http" } else { "syslog" }.into(),
                    hour: day + TimeDelta::hours(h),
                    events: per_source_hour + (s as u64 * 7 + h as u64) % 5,
                });
            }
        }
        let per_addr = (a.events / 4 / (u64::from(a.addresses_per_day) * days as u64)).max(1);
        let addrs: Vec<AddressDay> = (0..a.addresses_per_day)
            .map(|i| AddressDay {
                ip: std::net::IpAddr::V4(std::net::Ipv4Addr::from(0xCB00_7100u32 + i)),
                day: day.date_naive(),
                events: per_addr + u64::from(i % 97),
                auth_failures: u64::from(i % 13),
                auth_successes: u64::from(i % 3),
                first_seen: day + TimeDelta::minutes(i64::from(i % 1440)),
            })
            .collect();
        store.add_aggregates(&rows, &addrs)?;
    }
    let levels = [Level::Low, Level::Medium, Level::High, Level::Critical];
    for i in 0..a.alerts {
        let at =
            from + TimeDelta::seconds(i64::from(i) * days * 86_400 / i64::from(a.alerts.max(1)));
        store.insert_alert(&NewAlert {
            rule_id: RuleId(format!("bench-rule-{}", i % 40).into()),
            title: format!("Bench rule {}", i % 40),
            level: levels[i as usize % levels.len()],
            event_time: Some(at),
            received_at: at,
            event_seqs: vec![u64::from(i)],
            group_key: None,
            dedup_key: None,
            details: serde_json::json!({
                "host": format!("host-{:04}", i % a.sources),
                "fields": { "source.ip": format!("203.0.113.{}", i % 250), "user.name": format!("user{}", i % 300) },
                "tags": ["attack.credential_access", "attack.t1110"],
            }),
        })?;
    }
    Ok(())
}

/// Load + build + render both formats; returns (seconds, PDF bytes, pages-worth of rows).
fn measure(dir: &Path, month: Month, loc: &Locale) -> anyhow::Result<(f64, usize, usize)> {
    let t = Instant::now();
    let data = mamori_report::monthly::load(dir, month, loc)?;
    let rows = data.source_hours.as_ref().map_or(0, Vec::len)
        + data.address_days.as_ref().map_or(0, Vec::len)
        + data.alerts.len();
    let report = mamori_report::monthly::build(&data, month, loc, Utc::now())?;
    let pdf = mamori_report::render(&report, Format::Pdf)?;
    let _html = mamori_report::render(&report, Format::Html)?;
    Ok((t.elapsed().as_secs_f64(), pdf.len(), rows))
}

pub(crate) fn run(a: ReportArgs) -> anyhow::Result<i32> {
    let Some(lang) = Lang::parse(&a.lang) else {
        eprintln!("error: unknown language `{}` (ja, en)", a.lang);
        return Ok(exit::USAGE);
    };
    let loc = Locale::new(lang, None);
    let month = Month::previous_of(Utc::now(), &loc);
    let (from, to) = (month.start(&loc), month.end(&loc));
    let days = (to - from).num_days();

    let empty = tempfile::tempdir()?;
    let (base_s, _, _) = measure(empty.path(), month, &loc)?;
    println!("baseline (empty month): {base_s:.2}s");

    let full = tempfile::tempdir()?;
    let t = Instant::now();
    synthesise(full.path(), &a, from, days)?;
    println!(
        "synthesised {} events as aggregates ({} sources × {days} days × 24 h, {} addresses/day) and {} alerts in {:.1}s",
        a.events,
        a.sources,
        a.addresses_per_day,
        a.alerts,
        t.elapsed().as_secs_f64()
    );
    let rss_before = crate::bench::peak_rss_mib().unwrap_or(0.0);
    let (s, pdf, rows) = measure(full.path(), month, &loc)?;
    let rss = crate::bench::peak_rss_mib().unwrap_or(0.0);
    println!(
        "monthly report of {} events: {s:.2}s ({:.1}× the empty month), {rows} aggregate/alert rows read, PDF {} KiB; peak RSS {rss:.0} MiB (before the report: {rss_before:.0} MiB)",
        a.events,
        s / base_s.max(1e-9),
        pdf / 1024
    );
    let ok = s < 30.0 && rss < 256.0;
    println!(
        "goal < 30 s and < 256 MiB: {}",
        if ok { "met" } else { "NOT met" }
    );
    Ok(if ok { exit::OK } else { exit::FOUND })
}
