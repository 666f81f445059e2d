//! The monthly report duty: on the 1st of each month (or at the first start after it, so a
//! server that was down on the 1st catches up) the previous month's security audit is written
//! to `<data_dir>/reports/monthly-YYYY-MM-LANG.EXT`, once per language and format.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mamori_report::monthly::Month;
use mamori_report::{Format, Lang, Locale, Zone};
use tokio::task::JoinHandle;

use crate::config::ReportsConfig;
use crate::rules::RulesHandle;

/// How often the duty looks whether a month's report is due.
const CHECK_EVERY: Duration = Duration::from_secs(600);

/// The reports folder inside a data directory.
pub fn reports_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("reports")
}

pub(crate) fn monthly_duty(
    cfg: ReportsConfig,
    data_dir: PathBuf,
    rules: Option<Arc<RulesHandle>>,
    notifier: Option<Arc<mamori_notify::Notifier>>,
) -> Option<JoinHandle<()>> {
    if !cfg.monthly {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        // A month whose report failed is retried at the next check, logged once per month.
        let mut failed_for: Option<String> = None;
        loop {
            tick.tick().await;
            let (c, d, r, n) = (
                cfg.clone(),
                data_dir.clone(),
                rules.clone(),
                notifier.clone(),
            );
            let seen = failed_for.clone();
            let res = tokio::task::spawn_blocking(move || {
                let now = Utc::now();
                let written = write_due(&c, &d, r.as_deref(), now, seen.as_deref())?;
                if let (Some(n), false) = (n, written.is_empty()) {
                    mail(&n, &written, now);
                }
                Ok::<_, String>(())
            })
            .await;
            if let Ok(Err(month)) = res {
                failed_for = Some(month);
            }
        }
    }))
}

/// Name of the file that records the first month a data directory reports on.
pub const SINCE_FILE: &str = "since";

/// The first month (`YYYY-MM`) this data directory writes audits for: the month of the duty's
/// first run, kept in `reports/since`. A fresh installation does not write an audit of a month
/// it never watched (`mamori report monthly --month` still makes one by hand).
/// When the file cannot be read or written, the current month is used (nothing is reported
/// for earlier months) and the error is logged.
fn first_month(dir: &Path, now: DateTime<Utc>, loc: &Locale) -> String {
    let this = Month::previous_of(now, loc).next().key();
    let path = dir.join(SINCE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if Month::parse(s.trim()).is_some() => return s.trim().to_owned(),
        Ok(s) => {
            tracing::warn!(path = %path.display(), content = %s.trim(), "not a month (YYYY-MM): rewritten");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the first reported month");
            return this;
        }
    }
    if let Err(e) =
        std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, format!("{this}\n")))
    {
        tracing::error!(path = %path.display(), error = %e, "cannot record the first reported month");
    }
    this
}

/// Mails the reports just written to the contacts who asked for them (`monthly_report`):
/// the PDFs when there are any, else the HTML files.
pub fn mail(n: &mamori_notify::Notifier, written: &[PathBuf], now: DateTime<Utc>) {
    let pdfs = written
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "pdf"));
    let mut files = Vec::new();
    let mut month = String::new();
    for p in written {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if (ext == "pdf") != pdfs {
            continue;
        }
        let name = p
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("report")
            .to_owned();
        // monthly-YYYY-MM-LANG.EXT
        let lang = if name.contains("-ja.") { "ja" } else { "en" };
        month = name.get(8..15).unwrap_or("").to_owned();
        let Ok(bytes) = std::fs::read(p) else {
            continue;
        };
        let content_type = if pdfs {
            "application/pdf"
        } else {
            "text/html; charset=utf-8"
        };
        files.push((
            lang,
            mamori_notify::Attachment {
                file_name: name,
                content_type: content_type.into(),
                bytes,
            },
        ));
    }
    let subject = format!("Mamori: monthly security audit {month} / 月次セキュリティ監査報告書");
    let body = format!(
        "The monthly security audit for {month} is attached.\n{month} の月次セキュリティ監査報告書を添付します。\n"
    );
    for d in n.send_report(&subject, &body, &files, now) {
        if d.ok {
            tracing::info!(contact = %d.contact, channel = %d.channel, "monthly report mailed");
        } else {
            tracing::error!(contact = %d.contact, channel = %d.channel, error = d.error.as_deref().unwrap_or(""), "monthly report not mailed");
        }
    }
}

/// Writes every report of the previous month that is not written yet; returns the files
/// written, or the month whose report failed (already logged).
pub fn write_due(
    cfg: &ReportsConfig,
    data_dir: &Path,
    rules: Option<&RulesHandle>,
    now: DateTime<Utc>,
    already_logged: Option<&str>,
) -> Result<Vec<PathBuf>, String> {
    let zone = cfg.timezone.as_deref().and_then(Zone::parse);
    let dir = reports_dir(data_dir);
    let since = first_month(&dir, now, &Locale::new(Lang::En, zone.clone()));
    let mut written = Vec::new();
    for lang in cfg.languages.iter().filter_map(|l| Lang::parse(l)) {
        let loc = Locale::new(lang, zone.clone());
        let month = Month::previous_of(now, &loc);
        if month.key() < since {
            continue; // before this data directory watched anything
        }
        let due: Vec<(Format, PathBuf)> = cfg
            .formats
            .iter()
            .filter_map(|f| Format::parse(f))
            .map(|f| {
                let name = format!(
                    "monthly-{}-{}.{}",
                    month.key(),
                    lang.as_str(),
                    f.extension()
                );
                (f, dir.join(name))
            })
            .filter(|(_, p)| !p.exists())
            .collect();
        if due.is_empty() {
            continue;
        }
        let made = (|| -> Result<Vec<PathBuf>, String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut data =
                mamori_report::monthly::load(data_dir, month, &loc).map_err(|e| e.to_string())?;
            data.rule_failures = rules.map(|r| r.report().failures);
            let report = mamori_report::monthly::build(&data, month, &loc, now)
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for (format, path) in due {
                let bytes = mamori_report::render(&report, format).map_err(|e| e.to_string())?;
                let tmp = path.with_extension("partial");
                std::fs::write(&tmp, &bytes)
                    .and_then(|_| std::fs::rename(&tmp, &path))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), bytes = bytes.len(), "monthly report written");
                out.push(path);
            }
            Ok(out)
        })();
        match made {
            Ok(mut w) => written.append(&mut w),
            Err(e) => {
                let key = month.key();
                if already_logged != Some(key.as_str()) {
                    tracing::error!(month = %key, lang = lang.as_str(), error = %e, "monthly report failed");
                }
                return Err(key);
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn html_en() -> ReportsConfig {
        ReportsConfig {
            monthly: true,
            languages: vec!["en".into()],
            formats: vec!["html".into()],
            timezone: Some("UTC".into()),
        }
    }

    #[test]
    fn a_fresh_data_dir_reports_from_its_first_month_on() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = html_en();
        // First run on 7 December: November was never watched.
        let dec = Utc.with_ymd_and_hms(2026, 12, 7, 0, 1, 0).unwrap();
        let w = write_due(&cfg, dir.path(), None, dec, None).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let since = reports_dir(dir.path()).join(SINCE_FILE);
        assert_eq!(std::fs::read_to_string(&since).unwrap().trim(), "2026-12");
        // On 1 January the month it watched is reported, once.
        let jan = Utc.with_ymd_and_hms(2027, 1, 1, 0, 5, 0).unwrap();
        let w = write_due(&cfg, dir.path(), None, jan, None).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].ends_with("monthly-2026-12-en.html"), "{w:?}");
        assert!(write_due(&cfg, dir.path(), None, jan, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_data_dir_installed_earlier_catches_up_and_a_broken_marker_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let reports = reports_dir(dir.path());
        std::fs::create_dir_all(&reports).unwrap();
        std::fs::write(reports.join(SINCE_FILE), "2026-10\n").unwrap();
        let dec = Utc.with_ymd_and_hms(2026, 12, 7, 0, 1, 0).unwrap();
        let w = write_due(&html_en(), dir.path(), None, dec, None).unwrap();
        assert!(w[0].ends_with("monthly-2026-11-en.html"), "{w:?}");
        std::fs::write(reports.join(SINCE_FILE), "garbage").unwrap();
        assert_eq!(
            first_month(&reports, dec, &Locale::new(Lang::En, None)),
            "2026-12"
        );
        assert_eq!(
            std::fs::read_to_string(reports.join(SINCE_FILE))
                .unwrap()
                .trim(),
            "2026-12"
        );
    }
}
