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
            let (c, d, r) = (cfg.clone(), data_dir.clone(), rules.clone());
            let seen = failed_for.clone();
            let res = tokio::task::spawn_blocking(move || {
                write_due(&c, &d, r.as_deref(), Utc::now(), seen.as_deref())
            })
            .await;
            if let Ok(Err(month)) = res {
                failed_for = Some(month);
            }
        }
    }))
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
    let mut written = Vec::new();
    for lang in cfg.languages.iter().filter_map(|l| Lang::parse(l)) {
        let loc = Locale::new(lang, zone.clone());
        let month = Month::previous_of(now, &loc);
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
