//! The monthly security audit: a one-page summary for management, then suspicious connections,
//! log anomalies, accounts and keys, backups and detection. It reads aggregates (events per
//! source-hour and per address-day in `state.db`), alerts, incidents and backup checks — never
//! the events themselves — so a month of ten million events is a few thousand rows.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Utc};
use mamori_analytics::ids;
use mamori_backup::{CheckRecord, CheckStatus};
use mamori_cases::{HistoryAction, Incident, IncidentFilter, Phase};
use mamori_event::Level;
use mamori_store::{AddressDay, SourceHour};
use mamori_store::{Alert, AlertFilter, AlertStore, SqliteAlertStore};
use plotters::style::RGBColor;

use crate::chart::{self, Series};
use crate::model::{Block, Lang, Locale, Report, Section, Table, Tone};
use crate::{Error, Result};

/// Months of history in the trend charts (the report's month included).
pub const TREND_MONTHS: u32 = 6;

/// A calendar month, e.g. `2026-11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        ((1970..=9999).contains(&year) && (1..=12).contains(&month) && y.len() == 4)
            .then_some(Month { year, month })
    }

    /// The month before the one holding `t` (what the 1st-of-month duty reports on).
    pub fn previous_of(t: DateTime<Utc>, loc: &Locale) -> Month {
        let l = t.with_timezone(&loc.zone.offset);
        Month {
            year: l.year(),
            month: l.month(),
        }
        .back(1)
    }

    pub fn back(self, n: u32) -> Month {
        let idx = self.year * 12 + self.month as i32 - 1 - n as i32;
        Month {
            year: idx.div_euclid(12),
            month: idx.rem_euclid(12) as u32 + 1,
        }
    }

    pub fn next(self) -> Month {
        self.back(0).forward()
    }

    fn forward(self) -> Month {
        let idx = self.year * 12 + self.month as i32;
        Month {
            year: idx.div_euclid(12),
            month: idx.rem_euclid(12) as u32 + 1,
        }
    }

    /// Midnight of the 1st in the reader's zone, as UTC.
    pub fn start(self, loc: &Locale) -> DateTime<Utc> {
        loc.zone
            .offset
            .with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .expect("a fixed offset has no gaps")
            .with_timezone(&Utc)
    }

    pub fn end(self, loc: &Locale) -> DateTime<Utc> {
        self.forward().start(loc)
    }

    /// `2026-11`, for file names.
    pub fn key(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

/// Everything the monthly report reads.
#[derive(Debug, Default)]
pub struct MonthlyData {
    /// Alerts received from the start of the trend window to the end of the month.
    pub alerts: Vec<Alert>,
    /// Incidents created in the trend window.
    pub incidents: Vec<Incident>,
    /// Hourly counts from one month before the report's month to its end (`None`: this
    /// data directory records no aggregates).
    pub source_hours: Option<Vec<SourceHour>>,
    /// Daily address counts of the month.
    pub address_days: Option<Vec<AddressDay>>,
    /// Backup checks of the month (`None`: no backup checks configured).
    pub backups: Option<Vec<CheckRecord>>,
    /// Rules that failed to load (`None`: not known to the caller).
    pub rule_failures: Option<Vec<String>>,
    /// Scheduled external scans of the month (`[scan]`): runs and the findings seen (`None`:
    /// no scan database).
    pub scans: Option<(u64, Vec<mamori_scan::store::StoredFinding>)>,
}

/// Read the month's data from a data directory (`state.db`, `incidents.db`, `backups.db`).
pub fn load(data_dir: &Path, month: Month, loc: &Locale) -> Result<MonthlyData> {
    let from = month.start(loc);
    let to = month.end(loc);
    let trend_from = month.back(TREND_MONTHS - 1).start(loc);
    let mut d = MonthlyData::default();
    let state = data_dir.join("state.db");
    if state.exists() {
        let store = SqliteAlertStore::open(&state).map_err(|e| Error::store("state.db", e))?;
        d.alerts = alerts_between(&store, trend_from, to)?;
        let hours = store
            .source_hours(month.back(1).start(loc), to)
            .map_err(|e| Error::store("state.db aggregates", e))?;
        let days = store
            .address_days(from.date_naive(), (to - TimeDelta::seconds(1)).date_naive())
            .map_err(|e| Error::store("state.db aggregates", e))?;
        let recorded = store
            .aggregates_through()
            .map_err(|e| Error::store("state.db aggregates", e))?;
        if recorded > 0 || !hours.is_empty() {
            d.source_hours = Some(hours);
            d.address_days = Some(days);
        }
    }
    let db = data_dir.join("incidents.db");
    if db.exists() {
        let cases =
            mamori_cases::CaseStore::open(&db).map_err(|e| Error::store("incidents.db", e))?;
        d.incidents = incidents_between(&cases, trend_from, to)?;
    }
    if data_dir.join(mamori_backup::HISTORY_FILE).exists() {
        let h =
            mamori_backup::History::open(data_dir).map_err(|e| Error::store("backups.db", e))?;
        d.backups = Some(
            h.between(from, to)
                .map_err(|e| Error::store("backups.db", e))?,
        );
    }
    d.scans = mamori_scan::store::seen_between(data_dir, from, to)
        .map_err(|e| Error::store(mamori_scan::store::SCANS_FILE, e))?;
    Ok(d)
}

fn alerts_between(
    store: &SqliteAlertStore,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Alert>> {
    const PAGE: usize = 5000;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = store
            .list_alerts(&AlertFilter {
                since: Some(from),
                offset,
                limit: PAGE,
                ..AlertFilter::default()
            })
            .map_err(|e| Error::store("state.db alerts", e))?;
        let n = page.len();
        out.extend(
            page.into_iter()
                .filter(|a| a.received_at >= from && a.received_at < to),
        );
        if n < PAGE {
            return Ok(out);
        }
        offset += n;
    }
}

fn incidents_between(
    cases: &mamori_cases::CaseStore,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Incident>> {
    let page = mamori_cases::MAX_LIMIT;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let list = cases
            .list(&IncidentFilter {
                limit: Some(page),
                offset: Some(offset),
                ..IncidentFilter::default()
            })
            .map_err(|e| Error::store("incidents.db", e))?;
        let n = list.len();
        for s in list {
            if s.created_at >= from && s.created_at < to {
                out.push(
                    cases
                        .get(s.id)
                        .map_err(|e| Error::store("incidents.db", e))?,
                );
            }
        }
        if n < page {
            out.sort_by_key(|i| i.id.0);
            return Ok(out);
        }
        offset += n;
    }
}

/// One chart series per level (colours of [`LEVEL_COLORS`]), counting the items of each slot
/// (a month); items outside every slot (`None`) are left out.
fn by_level_per_slot(
    lang: Lang,
    slots: usize,
    items: impl Iterator<Item = (Option<usize>, Level)>,
) -> Vec<Series<'static>> {
    let mut series: Vec<Series<'static>> = LEVEL_COLORS
        .iter()
        .map(|(lv, c)| Series {
            name: level_label(*lv, lang),
            color: *c,
            values: vec![0; slots],
        })
        .collect();
    for (slot, level) in items {
        if let (Some(i), Some(k)) = (slot, LEVEL_COLORS.iter().position(|(lv, _)| *lv == level)) {
            series[k].values[i] += 1;
        }
    }
    series
}

fn level_label(l: Level, lang: Lang) -> &'static str {
    lang.t(l.as_str(), l.as_str_ja())
}

fn tags(a: &Alert) -> Vec<String> {
    a.details
        .get("tags")
        .and_then(|t| t.as_array())
        .map(|t| {
            t.iter()
                .filter_map(|x| x.as_str().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default()
}

fn has_tag(a: &Alert, prefixes: &[&str]) -> bool {
    tags(a)
        .iter()
        .any(|t| prefixes.iter().any(|p| t.starts_with(p)))
}

/// A value from the alert's details (`fields`, `group` or top level), as text.
fn detail(a: &Alert, keys: &[&str]) -> Option<String> {
    for k in keys {
        for v in [
            a.details.get("fields").and_then(|f| f.get(*k)),
            a.details.get("group").and_then(|f| f.get(*k)),
            a.details.get(*k),
        ]
        .into_iter()
        .flatten()
        {
            match v {
                serde_json::Value::String(s) if !s.is_empty() => return Some(s.clone()),
                serde_json::Value::Number(n) => return Some(n.to_string()),
                _ => {}
            }
        }
    }
    None
}

const IP_KEYS: &[&str] = &["source.ip", "client.ip", "src_ip", "ip", "IpAddress"];
const USER_KEYS: &[&str] = &[
    "user.name",
    "user",
    "TargetUserName",
    "SubjectUserName",
    "identity",
    "account",
];

fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn in_month(t: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    t >= from && t < to
}

/// Per-source health over the month, from the hourly counts.
struct SourceHealth {
    source: String,
    kind: String,
    month_events: u64,
    prev_events: u64,
    last: Option<DateTime<Utc>>,
    /// Longest run of silent hours inside the month while the source was otherwise active.
    longest_gap_h: i64,
    gap_from: Option<DateTime<Utc>>,
    last_week: u64,
    weeks_before_avg: f64,
}

fn source_health(
    hours: &[SourceHour],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<SourceHealth> {
    type Hours = Vec<(DateTime<Utc>, u64)>;
    let mut by: BTreeMap<(String, String), Hours> = BTreeMap::new();
    for h in hours {
        by.entry((h.source.clone(), h.kind.clone()))
            .or_default()
            .push((h.hour, h.events));
    }
    let week = to - TimeDelta::days(7);
    let mut out = Vec::new();
    for ((source, kind), mut v) in by {
        v.sort_by_key(|x| x.0);
        let month: Vec<&(DateTime<Utc>, u64)> = v
            .iter()
            .filter(|(t, n)| *n > 0 && in_month(*t, from, to))
            .collect();
        let month_events = month.iter().map(|x| x.1).sum();
        let prev_events = v.iter().filter(|(t, _)| *t < from).map(|x| x.1).sum();
        let last = v.iter().filter(|x| x.1 > 0).map(|x| x.0).max();
        let (mut longest_gap_h, mut gap_from) = (0, None);
        for w in month.windows(2) {
            let gap = (w[1].0 - w[0].0).num_hours() - 1;
            if gap > longest_gap_h {
                longest_gap_h = gap;
                gap_from = Some(w[0].0 + TimeDelta::hours(1));
            }
        }
        let last_week = v
            .iter()
            .filter(|(t, _)| *t >= week && *t < to)
            .map(|x| x.1)
            .sum();
        let before: u64 = v
            .iter()
            .filter(|(t, _)| *t >= from && *t < week)
            .map(|x| x.1)
            .sum();
        let weeks = ((week - from).num_hours() as f64 / 168.0).max(1.0);
        out.push(SourceHealth {
            source,
            kind,
            month_events,
            prev_events,
            last,
            longest_gap_h,
            gap_from,
            last_week,
            weeks_before_avg: before as f64 / weeks,
        });
    }
    out
}

/// Phase entry time from history.
fn entered(inc: &Incident, p: Phase) -> Option<DateTime<Utc>> {
    inc.history
        .iter()
        .filter(|h| h.action == HistoryAction::Phase && h.to.as_deref() == Some(p.as_str()))
        .map(|h| h.at)
        .min()
}

fn median(mut v: Vec<TimeDelta>) -> Option<TimeDelta> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    Some(v[v.len() / 2])
}

/// A test picking the alerts of one line of the report.
type AlertTest = Box<dyn Fn(&Alert) -> bool>;

const LEVEL_COLORS: [(Level, RGBColor); 5] = [
    (Level::Informational, RGBColor(160, 174, 192)),
    (Level::Low, RGBColor(91, 143, 201)),
    (Level::Medium, RGBColor(240, 180, 60)),
    (Level::High, RGBColor(226, 110, 60)),
    (Level::Critical, RGBColor(190, 40, 50)),
];

/// Build the monthly report.
pub fn build(d: &MonthlyData, month: Month, loc: &Locale, now: DateTime<Utc>) -> Result<Report> {
    let lang = loc.lang;
    let l = lang.as_str();
    let from = month.start(loc);
    let to = month.end(loc);
    let end = to.min(now);
    let month_alerts: Vec<&Alert> = d
        .alerts
        .iter()
        .filter(|a| in_month(a.received_at, from, to))
        .collect();
    let month_incidents: Vec<&Incident> = d
        .incidents
        .iter()
        .filter(|i| in_month(i.created_at, from, to))
        .collect();
    let mut charts = Vec::new();
    let mut sections = Vec::new();

    // Shared figures.
    let events_month: Option<u64> = d.source_hours.as_ref().map(|h| {
        h.iter()
            .filter(|x| in_month(x.hour, from, to))
            .map(|x| x.events)
            .sum()
    });
    let health = d
        .source_hours
        .as_ref()
        .map(|h| source_health(h, from, end))
        .unwrap_or_default();
    let silent: Vec<&SourceHealth> = health
        .iter()
        .filter(|s| s.last.is_some_and(|t| end - t > TimeDelta::hours(24)))
        .collect();
    let collapsed: Vec<&SourceHealth> = health
        .iter()
        .filter(|s| {
            !silent
                .iter()
                .any(|x| x.source == s.source && x.kind == s.kind)
                && s.weeks_before_avg >= 100.0
                && (s.last_week as f64) < 0.2 * s.weeks_before_avg
        })
        .collect();
    let failed_backups: Vec<&CheckRecord> = d
        .backups
        .iter()
        .flatten()
        .filter(|c| c.status == CheckStatus::Failed)
        .collect();
    let departed: Vec<&&Alert> = month_alerts
        .iter()
        .filter(|a| &*a.rule_id.0 == ids::DEPARTED)
        .collect();
    let high_alerts = month_alerts
        .iter()
        .filter(|a| a.level >= Level::High)
        .count();

    // Management summary: one page in plain words.
    let mut s = Section::new(loc.t("Summary for management", "経営層向けサマリー"));
    let mut figures = vec![];
    if let Some(n) = events_month {
        figures.push((loc.t("events recorded", "記録したイベント").into(), int(n)));
    }
    figures.push((
        loc.t("alerts", "アラート").into(),
        int(month_alerts.len() as u64),
    ));
    figures.push((
        loc.t("incidents", "インシデント").into(),
        int(month_incidents.len() as u64),
    ));
    figures.push((
        loc.t("failed backup checks", "失敗したバックアップ検査")
            .into(),
        d.backups
            .as_ref()
            .map_or("—".into(), |_| int(failed_backups.len() as u64)),
    ));
    s.push(Block::Figures { items: figures });
    let open_incidents = month_incidents
        .iter()
        .filter(|i| i.status == mamori_cases::Status::Open)
        .count();
    let mut points: Vec<(Tone, String)> = Vec::new();
    let en = lang == Lang::En;
    if month_incidents.is_empty() {
        points.push((
            Tone::Good,
            if en {
                "No security incident was opened this month.".into()
            } else {
                "今月、セキュリティインシデントは発生しませんでした。".into()
            },
        ));
    } else {
        points.push((
            if open_incidents > 0 {
                Tone::Warn
            } else {
                Tone::Info
            },
            if en {
                format!(
                    "{} security incident(s) were opened this month; {} still open.",
                    month_incidents.len(),
                    open_incidents
                )
            } else {
                format!(
                    "今月 {} 件のセキュリティインシデントが発生し、{} 件が対応中です。",
                    month_incidents.len(),
                    open_incidents
                )
            },
        ));
    }
    if high_alerts > 0 {
        points.push((
            Tone::Warn,
            if en {
                format!("{high_alerts} alert(s) of high or critical severity needed attention.")
            } else {
                format!("重要度「高」以上のアラートが {high_alerts} 件ありました。")
            },
        ));
    }
    match &d.backups {
        None => points.push((Tone::Warn, loc.t("No backup checks are configured: Mamori cannot tell whether your backups would work on the day you need them.", "バックアップ検査が設定されていません。必要なときにバックアップから復元できるか確認できていません。").into())),
        Some(_) if !failed_backups.is_empty() => {
            let names: Vec<&str> = failed_backups.iter().map(|c| c.name.as_str()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            points.push((Tone::Bad, if en { format!("Backup checks FAILED for: {}. Fix this first: backups are what ransomware crews destroy first.", names.join(", ")) } else { format!("バックアップ検査に失敗しました：{}。ランサムウェア攻撃者はまずバックアップを狙います。最優先で対処してください。", names.join("、")) }));
        }
        Some(b) if b.is_empty() => points.push((Tone::Warn, loc.t("Backup checks are configured but none ran this month.", "バックアップ検査は設定されていますが、今月は一度も実行されていません。").into())),
        Some(_) => points.push((Tone::Good, loc.t("Every backup check this month passed.", "今月のバックアップ検査はすべて成功しました。").into())),
    }
    if !silent.is_empty() {
        let names: Vec<&str> = silent.iter().map(|s| s.source.as_str()).collect();
        points.push((
            Tone::Bad,
            if en {
                format!(
                    "{} log source(s) went silent: {}. Attacks there would not be seen.",
                    silent.len(),
                    names.join(", ")
                )
            } else {
                format!(
                    "{} 件のログ送信元が停止しました：{}。その機器への攻撃は検知できません。",
                    silent.len(),
                    names.join("、")
                )
            },
        ));
    }
    if !departed.is_empty() {
        points.push((
            Tone::Bad,
            if en {
                format!(
                    "{} sign(s) of activity by people who have left or whose contract ended.",
                    departed.len()
                )
            } else {
                format!(
                    "退職者・契約終了者のアカウントの利用が {} 件ありました。",
                    departed.len()
                )
            },
        ));
    }
    if d.source_hours.is_none() {
        points.push((Tone::Info, loc.t("This data directory records no activity aggregates, so connection and log-source figures are missing.", "このデータディレクトリには集計データがないため、通信とログ送信元の数値は含まれていません。").into()));
    }
    for (tone, text) in points {
        s.push(Block::Notice { tone, text });
    }
    sections.push(s);

    // Suspicious connections.
    let mut s = Section::new(loc.t("Suspicious connections", "不審な通信"));
    s.new_page = true;
    s.heading(loc.t("External addresses by volume", "通信量の多い外部アドレス"));
    match &d.address_days {
        None => s.notice(
            Tone::Info,
            loc.t(
                "No address aggregates recorded in this data directory.",
                "アドレスの集計データがありません。",
            ),
        ),
        Some(days) => {
            let mut by: HashMap<std::net::IpAddr, (u64, u64, u64, DateTime<Utc>)> = HashMap::new();
            for a in days {
                let e = by.entry(a.ip).or_insert((0, 0, 0, a.first_seen));
                e.0 += a.events;
                e.1 += a.auth_failures;
                e.2 += a.auth_successes;
                e.3 = e.3.min(a.first_seen);
            }
            let mut v: Vec<_> = by.into_iter().collect();
            v.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
            if v.is_empty() {
                s.notice(
                    Tone::Info,
                    loc.t(
                        "No external address was seen this month.",
                        "今月、外部アドレスからの通信はありませんでした。",
                    ),
                );
            } else {
                let mut t = Table::new(&[
                    loc.t("Address", "アドレス"),
                    loc.t("Events", "イベント"),
                    loc.t("Failed logins", "ログイン失敗"),
                    loc.t("Logins", "ログイン成功"),
                    loc.t("First seen", "初回観測"),
                ])
                .widths(&[3, 2, 2, 2, 3])
                .mono(&[0]);
                for (ip, (ev, fail, ok, first)) in &v {
                    let new = if in_month(*first, from, to) {
                        loc.t(" (new)", "（新規）")
                    } else {
                        ""
                    };
                    let ip = if *ip == mamori_store::OTHER_ADDRESS {
                        loc.t("(other addresses)", "（その他のアドレス）")
                            .to_string()
                    } else {
                        ip.to_string()
                    };
                    t.rows.push(vec![
                        ip,
                        int(*ev),
                        int(*fail),
                        int(*ok),
                        format!("{}{new}", loc.time(*first)),
                    ]);
                }
                s.push(Block::Table(t.limit(20)));
                let mut byfail: Vec<_> = v.iter().filter(|x| x.1 .1 > 0).collect();
                byfail.sort_by_key(|b| std::cmp::Reverse(b.1 .1));
                if !byfail.is_empty() {
                    s.heading(loc.t(
                        "Addresses with the most failed logins",
                        "ログイン失敗の多いアドレス",
                    ));
                    let mut t = Table::new(&[
                        loc.t("Address", "アドレス"),
                        loc.t("Failed logins", "ログイン失敗"),
                        loc.t("Logins", "ログイン成功"),
                    ])
                    .widths(&[3, 2, 2])
                    .mono(&[0]);
                    for (ip, (_, fail, ok, _)) in byfail {
                        t.rows.push(vec![ip.to_string(), int(*fail), int(*ok)]);
                    }
                    s.push(Block::Table(t.limit(10)));
                }
            }
        }
    }
    s.heading(loc.t("Addresses by alert", "アラートに関係したアドレス"));
    let mut by_ip: BTreeMap<String, (u64, Level)> = BTreeMap::new();
    for a in &month_alerts {
        if let Some(ip) = detail(a, IP_KEYS).filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()) {
            let e = by_ip.entry(ip).or_insert((0, a.level));
            e.0 += 1;
            e.1 = e.1.max(a.level);
        }
    }
    if by_ip.is_empty() {
        s.notice(
            Tone::Info,
            loc.t(
                "No alert this month named a network address.",
                "今月、ネットワークアドレスを含むアラートはありませんでした。",
            ),
        );
    } else {
        let mut v: Vec<_> = by_ip.into_iter().collect();
        v.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
        let mut t = Table::new(&[
            loc.t("Address", "アドレス"),
            loc.t("Alerts", "アラート"),
            loc.t("Highest level", "最高レベル"),
        ])
        .widths(&[3, 2, 2])
        .mono(&[0]);
        t.rows = v
            .into_iter()
            .map(|(ip, (n, lv))| vec![ip, int(n), level_label(lv, lang).into()])
            .collect();
        s.push(Block::Table(t.limit(20)));
    }
    s.heading(loc.t(
        "First-seen countries and networks",
        "初めて観測された国・ネットワーク",
    ));
    let firsts: Vec<&&Alert> = month_alerts
        .iter()
        .filter(|a| {
            [ids::NEW_COUNTRY, ids::FIRST_ADDRESS, ids::IMPOSSIBLE_TRAVEL].contains(&&*a.rule_id.0)
        })
        .collect();
    if firsts.is_empty() {
        s.notice(Tone::Good, loc.t("No login from a never-seen country or network, and no impossible travel.", "未観測の国・ネットワークからのログインや、移動が不可能な連続ログインはありませんでした。"));
    } else {
        let mut t = Table::new(&[
            loc.t("Time", "日時"),
            loc.t("Finding", "検出内容"),
            loc.t("Account", "アカウント"),
            loc.t("Address", "アドレス"),
        ])
        .widths(&[3, 5, 2, 3])
        .mono(&[3]);
        for a in firsts {
            t.rows.push(vec![
                loc.time(a.received_at),
                loc.alert_title(a).to_owned(),
                detail(a, USER_KEYS).unwrap_or_default(),
                detail(a, IP_KEYS).unwrap_or_default(),
            ]);
        }
        s.push(Block::Table(t.limit(30)));
    }
    s.heading(loc.t(
        "Blocked addresses and their outcome",
        "遮断したアドレスと結果",
    ));
    let mut t = Table::new(&[
        loc.t("Time", "日時"),
        loc.t("Incident", "インシデント"),
        loc.t("Action", "アクション"),
        loc.t("Target", "対象"),
        loc.t("By", "実施者"),
    ])
    .widths(&[3, 1, 3, 4, 2])
    .mono(&[3]);
    for i in &month_incidents {
        for a in i
            .actions
            .iter()
            .filter(|a| a.kind.contains("block") || a.kind.contains("rollback"))
        {
            let target = a
                .detail
                .get("ip")
                .or_else(|| a.detail.get("address"))
                .or_else(|| a.detail.get("target"))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .unwrap_or_else(|| a.detail.to_string());
            t.rows.push(vec![
                loc.time(a.at),
                format!("#{}", i.id.0),
                a.kind.clone(),
                target,
                a.by.clone(),
            ]);
        }
    }
    if t.rows.is_empty() {
        s.notice(
            Tone::Info,
            loc.t(
                "No address was blocked this month.",
                "今月、遮断したアドレスはありません。",
            ),
        );
    } else {
        s.push(Block::Table(t.limit(50)));
    }
    sections.push(s);

    // Log anomalies.
    let mut s = Section::new(loc.t("Log anomalies", "ログの異常"));
    s.new_page = true;
    match &d.source_hours {
        None => s.notice(
            Tone::Info,
            loc.t(
                "No per-source aggregates recorded: silent sources and gaps cannot be judged.",
                "送信元ごとの集計データがないため、停止や欠落を判定できません。",
            ),
        ),
        Some(hours) => {
            let days = (to - from).num_days().max(1) as usize;
            let mut per_day = vec![0u64; days];
            for h in hours.iter().filter(|h| in_month(h.hour, from, to)) {
                let i = ((h.hour - from).num_hours() / 24) as usize;
                if let Some(x) = per_day.get_mut(i) {
                    *x += h.events;
                }
            }
            // Days after the report's end (a month still running) are not drawn as zeros.
            let shown = (((end - from).num_hours() + 23) / 24).clamp(1, days as i64) as usize;
            per_day.truncate(shown.max(2));
            let labels: Vec<String> = (0..days).map(|i| (i + 1).to_string()).collect();
            charts.push(chart::line(&labels, &per_day, RGBColor(31, 59, 87))?);
            s.push(Block::Chart {
                index: charts.len() - 1,
                caption: loc.t("Events per day", "日別イベント数").into(),
            });
            s.heading(loc.t(
                "Sources that went silent or whose volume collapsed",
                "停止した・量が激減した送信元",
            ));
            if silent.is_empty() && collapsed.is_empty() {
                s.notice(
                    Tone::Good,
                    loc.t(
                        "Every log source kept sending.",
                        "すべてのログ送信元が送信を続けていました。",
                    ),
                );
            } else {
                let mut t = Table::new(&[
                    loc.t("Source", "送信元"),
                    loc.t("Kind", "種類"),
                    loc.t("Finding", "状況"),
                    loc.t("Last event", "最終受信"),
                    loc.t("This month", "今月"),
                    loc.t("Previous month", "前月"),
                ])
                .widths(&[3, 1, 3, 3, 2, 2])
                .mono(&[0]);
                for x in &silent {
                    t.rows.push(vec![
                        x.source.clone(),
                        x.kind.clone(),
                        loc.t("silent", "停止").into(),
                        x.last.map_or("—".into(), |t| loc.time(t)),
                        int(x.month_events),
                        int(x.prev_events),
                    ]);
                }
                for x in &collapsed {
                    let pct = (100.0 * x.last_week as f64 / x.weeks_before_avg).round();
                    t.rows.push(vec![
                        x.source.clone(),
                        x.kind.clone(),
                        if en {
                            format!("volume collapsed: last 7 days at {pct}% of usual")
                        } else {
                            format!("量が激減（直近7日が通常の {pct}%）")
                        },
                        x.last.map_or("—".into(), |t| loc.time(t)),
                        int(x.month_events),
                        int(x.prev_events),
                    ]);
                }
                s.push(Block::Table(t));
            }
            s.heading(loc.t("Gaps", "欠落"));
            let mut gaps: Vec<&SourceHealth> =
                health.iter().filter(|x| x.longest_gap_h >= 6).collect();
            gaps.sort_by_key(|b| std::cmp::Reverse(b.longest_gap_h));
            if gaps.is_empty() {
                s.notice(
                    Tone::Good,
                    loc.t(
                        "No source had a gap of 6 hours or more between events this month.",
                        "今月、6時間以上イベントが途切れた送信元はありませんでした。",
                    ),
                );
            } else {
                let mut t = Table::new(&[
                    loc.t("Source", "送信元"),
                    loc.t("Longest gap", "最長の欠落"),
                    loc.t("From", "開始"),
                ])
                .widths(&[3, 2, 3])
                .mono(&[0]);
                for g in gaps {
                    t.rows.push(vec![
                        g.source.clone(),
                        loc.duration(TimeDelta::hours(g.longest_gap_h)),
                        g.gap_from.map_or("—".into(), |t| loc.time(t)),
                    ]);
                }
                s.push(Block::Table(t.limit(20)));
            }
        }
    }
    s.heading(loc.t(
        "Log clearing, clock skew and dropped messages",
        "ログ消去・時刻のずれ・受信漏れ",
    ));
    let kinds: [(&str, &str, AlertTest); 4] = [
        (
            "Log clearing",
            "ログ消去",
            Box::new(|a: &Alert| {
                has_tag(a, &["attack.t1070.001", "attack.t1070.002"])
                    || a.title.to_ascii_lowercase().contains("log cleared")
                    || a.rule_id.0.contains("log_clear")
                    || a.rule_id.0.contains("cleared")
            }),
        ),
        (
            "Clock skew (future-dated events)",
            "時刻のずれ（未来日時のイベント）",
            Box::new(|a: &Alert| &*a.rule_id.0 == "mamori.correlation.future_dated"),
        ),
        (
            "Dropped UDP syslog",
            "UDP syslog の受信漏れ",
            Box::new(|a: &Alert| &*a.rule_id.0 == "mamori.pipeline.udp_dropped"),
        ),
        (
            "Storage full",
            "ディスク容量不足",
            Box::new(|a: &Alert| &*a.rule_id.0 == "mamori.storage.disk_full"),
        ),
    ];
    let mut t = Table::new(&[
        loc.t("Finding", "項目"),
        loc.t("Alerts", "アラート"),
        loc.t("Sources", "送信元"),
    ])
    .widths(&[3, 1, 4]);
    for (en_label, ja_label, f) in &kinds {
        let hits: Vec<&&Alert> = month_alerts.iter().filter(|a| f(a)).collect();
        let mut srcs: Vec<String> = hits
            .iter()
            .filter_map(|a| detail(a, &["host", "source"]))
            .collect();
        srcs.sort();
        srcs.dedup();
        t.rows.push(vec![
            loc.t(en_label, ja_label).into(),
            int(hits.iter().map(|a| a.count).sum()),
            srcs.join(", "),
        ]);
    }
    s.push(Block::Table(t));
    s.push(Block::Para { text: loc.t("Parse failures are counted live in /metrics (mamori_events_unparsed_total, mamori_malformed_total); they are not kept per month yet.", "解析できなかった行は /metrics（mamori_events_unparsed_total、mamori_malformed_total）で集計していますが、月ごとの記録はまだありません。").into() });
    sections.push(s);

    // Accounts and keys.
    let mut s = Section::new(loc.t("Accounts and keys", "アカウントと鍵"));
    s.new_page = true;
    let groups: [(&str, &str, AlertTest); 5] = [
        (
            "Activity by departed or contract-ended identities",
            "退職者・契約終了者による利用",
            Box::new(|a: &Alert| &*a.rule_id.0 == ids::DEPARTED),
        ),
        (
            "Access keys older than policy",
            "ポリシーより古いアクセスキー",
            Box::new(|a: &Alert| &*a.rule_id.0 == ids::KEY_AGE),
        ),
        (
            "Privileged group changes",
            "特権グループの変更",
            Box::new(|a: &Alert| {
                has_tag(a, &["attack.t1098", "attack.t1484"])
                    || a.title.to_ascii_lowercase().contains("group")
            }),
        ),
        (
            "New accounts",
            "新規アカウント",
            Box::new(|a: &Alert| has_tag(a, &["attack.t1136"])),
        ),
        (
            "Logins outside usual hours",
            "通常時間外のログイン",
            Box::new(|a: &Alert| &*a.rule_id.0 == ids::OFF_HOURS),
        ),
    ];
    for (en_label, ja_label, f) in &groups {
        s.heading(loc.t(en_label, ja_label));
        let hits: Vec<&&Alert> = month_alerts.iter().filter(|a| f(a)).collect();
        if hits.is_empty() {
            s.notice(
                Tone::Good,
                loc.t("None this month.", "今月はありませんでした。"),
            );
            continue;
        }
        let mut t = Table::new(&[
            loc.t("Time", "日時"),
            loc.t("Account", "アカウント"),
            loc.t("Alert", "アラート"),
            loc.t("Count", "件数"),
        ])
        .widths(&[3, 2, 6, 1])
        .mono(&[1]);
        for a in hits {
            t.rows.push(vec![
                loc.time(a.received_at),
                detail(a, USER_KEYS).unwrap_or_default(),
                loc.alert_title(a).to_owned(),
                int(a.count),
            ]);
        }
        s.push(Block::Table(t.limit(30)));
    }
    sections.push(s);

    // Backups.
    let mut s = Section::new(loc.t("Backups", "バックアップ"));
    match &d.backups {
        None => s.notice(
            Tone::Warn,
            loc.t(
                "No backup checks configured ([[backup]] in the server configuration).",
                "バックアップ検査が設定されていません（サーバー設定の [[backup]]）。",
            ),
        ),
        Some(b) if b.is_empty() => s.notice(
            Tone::Warn,
            loc.t(
                "No backup check ran this month.",
                "今月はバックアップ検査が一度も実行されていません。",
            ),
        ),
        Some(b) => {
            let mut v: Vec<&CheckRecord> = b.iter().collect();
            let rank = |c: &CheckRecord| match c.status {
                CheckStatus::Failed => 0,
                CheckStatus::Warning => 1,
                CheckStatus::Passed => 2,
            };
            v.sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.started.cmp(&a.started)));
            let (fail, warn, pass) = (
                v.iter().filter(|c| rank(c) == 0).count(),
                v.iter().filter(|c| rank(c) == 1).count(),
                v.iter().filter(|c| rank(c) == 2).count(),
            );
            s.push(Block::Figures {
                items: vec![
                    (loc.t("failed", "失敗").into(), int(fail as u64)),
                    (loc.t("warnings", "警告").into(), int(warn as u64)),
                    (loc.t("passed", "成功").into(), int(pass as u64)),
                ],
            });
            let mut t = Table::new(&[
                loc.t("Check", "検査"),
                loc.t("Kind", "種類"),
                loc.t("When", "日時"),
                loc.t("Result", "結果"),
                loc.t("Findings", "指摘事項"),
            ])
            .widths(&[2, 2, 3, 1, 7]);
            for c in v {
                let status = match c.status {
                    CheckStatus::Failed => loc.t("FAILED", "失敗"),
                    CheckStatus::Warning => loc.t("warning", "警告"),
                    CheckStatus::Passed => loc.t("passed", "成功"),
                };
                let findings: Vec<&str> = c.findings.iter().map(|f| f.text(l)).collect();
                t.rows.push(vec![
                    c.name.clone(),
                    c.kind.clone(),
                    loc.time(c.started),
                    status.into(),
                    findings.join(" / "),
                ]);
            }
            s.push(Block::Table(t.limit(100)));
        }
    }
    sections.push(s);

    // External scans of the company's own services.
    let mut s = Section::new(loc.t("External scans of your services", "公開サービスの外部診断"));
    match &d.scans {
        None => s.notice(
            Tone::Info,
            loc.t(
                "No scheduled scans configured ([scan] in the server configuration; `mamori scan` by hand).",
                "定期診断が設定されていません（サーバー設定の [scan]、手動では `mamori scan`）。",
            ),
        ),
        Some((runs, found)) => {
            let above_info: Vec<_> = found
                .iter()
                .filter(|f| f.severity > mamori_scan::Severity::Info)
                .collect();
            s.push(Block::Figures {
                items: vec![
                    (loc.t("scans run", "診断回数").into(), int(*runs)),
                    (
                        loc.t("findings above info", "情報以外の指摘").into(),
                        int(above_info.len() as u64),
                    ),
                    (
                        loc.t("high or critical", "高・重大").into(),
                        int(above_info
                            .iter()
                            .filter(|f| f.severity >= mamori_scan::Severity::High)
                            .count() as u64),
                    ),
                ],
            });
            if *runs == 0 {
                s.notice(
                    Tone::Warn,
                    loc.t(
                        "No scan ran this month although scans are configured.",
                        "診断が設定されていますが、今月は一度も実行されていません。",
                    ),
                );
            }
            if above_info.is_empty() {
                s.notice(
                    Tone::Info,
                    loc.t(
                        "No finding above info this month.",
                        "今月は情報レベルを超える指摘はありません。",
                    ),
                );
            } else {
                let mut t = Table::new(&[
                    loc.t("Severity", "重大度"),
                    loc.t("Target", "対象"),
                    loc.t("Finding", "指摘"),
                    loc.t("Where", "場所"),
                    loc.t("First seen", "初検出"),
                    loc.t("Last seen", "最終検出"),
                ])
                .widths(&[1, 3, 4, 3, 2, 2]);
                let sl = mamori_scan::Lang::parse(l).unwrap_or(mamori_scan::Lang::En);
                for f in above_info {
                    let title = mamori_scan::texts::get(&f.check_id).title;
                    t.rows.push(vec![
                        f.severity.label(sl).into(),
                        f.target.clone(),
                        title.get(sl).to_owned(),
                        f.location.clone(),
                        loc.time(f.first_seen),
                        loc.time(f.last_seen),
                    ]);
                }
                s.push(Block::Table(t.limit(50)));
            }
        }
    }
    sections.push(s);

    // Detection.
    let mut s = Section::new(loc.t("Detection", "検知"));
    s.new_page = true;
    let months: Vec<Month> = (0..TREND_MONTHS).rev().map(|i| month.back(i)).collect();
    let month_idx = |t: DateTime<Utc>| {
        months
            .iter()
            .position(|m| t >= m.start(loc) && t < m.end(loc))
    };
    let labels: Vec<String> = months
        .iter()
        .map(|m| match lang {
            Lang::En => format!("{}/{:02}", m.year % 100, m.month),
            Lang::Ja => format!("{}月", m.month),
        })
        .collect();
    let series = by_level_per_slot(
        lang,
        months.len(),
        d.alerts.iter().map(|a| (month_idx(a.received_at), a.level)),
    );
    charts.push(chart::stacked_bars(&labels, &series)?);
    s.push(Block::Chart {
        index: charts.len() - 1,
        caption: loc
            .t("Alerts per month by level", "月別・レベル別のアラート数")
            .into(),
    });
    let inc_series = by_level_per_slot(
        lang,
        months.len(),
        d.incidents
            .iter()
            .map(|i| (month_idx(i.created_at), i.severity)),
    );
    charts.push(chart::stacked_bars(&labels, &inc_series)?);
    s.push(Block::Chart {
        index: charts.len() - 1,
        caption: loc
            .t(
                "Incidents per month by severity",
                "月別・深刻度別のインシデント数",
            )
            .into(),
    });
    s.heading(loc.t("Alerts by level", "レベル別アラート"));
    let mut t = Table::new(&[
        loc.t("Level", "レベル"),
        loc.t("Alerts", "アラート"),
        loc.t("Occurrences", "発生回数"),
        loc.t("Previous month", "前月"),
    ])
    .widths(&[2, 1, 1, 1]);
    let prev = month.back(1);
    for (lv, _) in LEVEL_COLORS.iter().rev() {
        let this: Vec<&&Alert> = month_alerts.iter().filter(|a| a.level == *lv).collect();
        let before = d
            .alerts
            .iter()
            .filter(|a| a.level == *lv && in_month(a.received_at, prev.start(loc), prev.end(loc)))
            .count();
        t.rows.push(vec![
            level_label(*lv, lang).into(),
            int(this.len() as u64),
            int(this.iter().map(|a| a.count).sum()),
            int(before as u64),
        ]);
    }
    s.push(Block::Table(t));
    s.heading(loc.t("Incidents by kind", "種別ごとのインシデント"));
    if month_incidents.is_empty() {
        s.notice(
            Tone::Good,
            loc.t(
                "No incident this month.",
                "今月のインシデントはありません。",
            ),
        );
    } else {
        let mut t = Table::new(&[
            loc.t("Incident", "インシデント"),
            loc.t("Kind", "種別"),
            loc.t("Severity", "深刻度"),
            loc.t("Status", "状態"),
            loc.t("Time to detect", "検知まで"),
            loc.t("Time to contain", "封じ込めまで"),
        ])
        .widths(&[5, 2, 1, 2, 2, 2]);
        let (mut ttd, mut ttc) = (Vec::new(), Vec::new());
        for i in &month_incidents {
            let first = i.alerts.iter().map(|a| a.time).min();
            let detect = first
                .map(|f| i.created_at - f)
                .filter(|d| *d >= TimeDelta::zero());
            let contain = entered(i, Phase::Containment).map(|c| c - i.created_at);
            if let Some(x) = detect {
                ttd.push(x);
            }
            if let Some(x) = contain {
                ttc.push(x);
            }
            t.rows.push(vec![
                format!("#{} {}", i.id.0, loc.pick(&i.title, i.title_ja.as_deref())),
                i.kind.label(l).into(),
                level_label(i.severity, lang).into(),
                format!("{} / {}", i.status.label(l), i.phase.label(l)),
                detect.map_or("—".into(), |d| loc.duration(d)),
                contain.map_or("—".into(), |d| loc.duration(d)),
            ]);
        }
        s.push(Block::Table(t.limit(50)));
        s.push(Block::Facts {
            rows: vec![
                (
                    loc.t("Median time to detect", "検知までの時間（中央値）")
                        .into(),
                    median(ttd).map_or("—".into(), |d| loc.duration(d)),
                ),
                (
                    loc.t("Median time to contain", "封じ込めまでの時間（中央値）")
                        .into(),
                    median(ttc).map_or(
                        loc.t(
                            "no incident reached containment",
                            "封じ込めに至ったインシデントなし",
                        )
                        .into(),
                        |d| loc.duration(d),
                    ),
                ),
            ],
        });
    }
    s.heading(loc.t("Rules that fired most", "発報の多いルール"));
    let mut by_rule: HashMap<&str, (u64, u64, &str, Level)> = HashMap::new();
    for a in &month_alerts {
        let e = by_rule
            .entry(&*a.rule_id.0)
            .or_insert((0, 0, loc.alert_title(a), a.level));
        e.0 += 1;
        e.1 += a.count;
        e.3 = e.3.max(a.level);
    }
    if by_rule.is_empty() {
        s.notice(
            Tone::Info,
            loc.t(
                "No rule fired this month.",
                "今月、発報したルールはありません。",
            ),
        );
    } else {
        let mut v: Vec<_> = by_rule.into_iter().collect();
        v.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
        let mut t = Table::new(&[
            loc.t("Rule", "ルール"),
            loc.t("Title", "タイトル"),
            loc.t("Level", "レベル"),
            loc.t("Alerts", "アラート"),
            loc.t("Occurrences", "発生回数"),
        ])
        .widths(&[4, 5, 1, 1, 1])
        .mono(&[0]);
        t.rows = v
            .into_iter()
            .map(|(r, (n, c, title, lv))| {
                vec![
                    r.to_string(),
                    title.to_string(),
                    level_label(lv, lang).into(),
                    int(n),
                    int(c),
                ]
            })
            .collect();
        s.push(Block::Table(t.limit(15)));
    }
    s.heading(loc.t("Rule failures", "ルールの読み込みエラー"));
    match &d.rule_failures {
        None => s.notice(
            Tone::Info,
            loc.t(
                "Rule load failures are not known to this report (generated outside the server).",
                "ルールの読み込みエラーはこの報告書では確認できません（サーバー外で作成）。",
            ),
        ),
        Some(f) if f.is_empty() => s.notice(
            Tone::Good,
            loc.t("Every rule loaded.", "すべてのルールを読み込みました。"),
        ),
        Some(f) => {
            s.push(Block::Notice {
                tone: Tone::Bad,
                text: if en {
                    format!("{} rule(s) failed to load and detect nothing:", f.len())
                } else {
                    format!(
                        "{} 件のルールが読み込めず、検知に使われていません：",
                        f.len()
                    )
                },
            });
            s.push(Block::Bullets {
                items: f.iter().take(50).cloned().collect(),
            });
        }
    }
    sections.push(s);

    Ok(Report {
        lang,
        title: loc
            .t("Monthly security audit", "月次セキュリティ監査報告書")
            .into(),
        subtitle: loc.month(month.year, month.month),
        generated: match lang {
            Lang::En => format!(
                "Generated {} by Mamori · period {} – {}",
                loc.time(now),
                loc.date(from.with_timezone(&loc.zone.offset).date_naive()),
                loc.date(
                    (to - TimeDelta::seconds(1))
                        .with_timezone(&loc.zone.offset)
                        .date_naive()
                )
            ),
            Lang::Ja => format!(
                "{} Mamori により作成・対象期間 {}〜{}",
                loc.time(now),
                loc.date(from.with_timezone(&loc.zone.offset).date_naive()),
                loc.date(
                    (to - TimeDelta::seconds(1))
                        .with_timezone(&loc.zone.offset)
                        .date_naive()
                )
            ),
        },
        sections,
        charts,
    })
}
