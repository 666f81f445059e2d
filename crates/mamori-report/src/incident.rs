//! The incident report, structured by the NIST SP 800-61 phases: summary, timeline, detection
//! and analysis, containment/eradication/recovery, evidence, lessons learned, indicators.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use mamori_cases::{HistoryAction, Incident, IncidentId, Phase};
use mamori_event::Level;
use mamori_store::{Alert, AlertId, AlertStore, SqliteAlertStore};
use mamori_vault::AuditEntry;

use crate::model::{Block, Locale, Report, Section, Table, Tone};
use crate::{Error, Result};

/// Everything the incident report reads, gathered from the stores.
#[derive(Debug, Clone)]
pub struct IncidentData {
    pub incident: Incident,
    /// The stored alerts behind the incident (details: hosts, fields, ATT&CK tags).
    pub alerts: Vec<Alert>,
    /// The vault's last signed tree head (`None`: no vault in this data directory).
    pub vault_head: Option<serde_json::Value>,
    /// The vault's custody records for this incident (`None`: no vault).
    pub custody: Option<Vec<(u64, AuditEntry)>>,
}

/// Read one incident and what it refers to from a data directory (`incidents.db`,
/// `state.db`, `vault/`). Safe while `mamori serve` runs (SQLite readers, read-only vault scan).
pub fn load(data_dir: &Path, id: i64) -> Result<IncidentData> {
    let db = data_dir.join("incidents.db");
    if !db.exists() {
        return Err(Error::Input(format!(
            "no incident database at {} (has `mamori serve` run with this data directory?)",
            db.display()
        )));
    }
    let cases = mamori_cases::CaseStore::open(&db).map_err(|e| Error::store("incidents.db", e))?;
    let incident = cases
        .get(IncidentId(id))
        .map_err(|e| Error::store(format!("incident {id}"), e))?;
    let state = data_dir.join("state.db");
    let mut alerts = Vec::new();
    if state.exists() {
        let store = SqliteAlertStore::open(&state).map_err(|e| Error::store("state.db", e))?;
        for l in &incident.alerts {
            if let Some(a) = store
                .get_alert(AlertId(l.alert_id))
                .map_err(|e| Error::store("state.db", e))?
            {
                alerts.push(a);
            }
        }
    }
    let vdir = data_dir.join("vault");
    let (vault_head, custody) = if vdir.join("segments").is_dir() {
        let status = mamori_vault::read_status(&vdir).map_err(|e| Error::store("vault", e))?;
        let target = format!("incident:{id}");
        let custody = mamori_vault::read_custody(&vdir, |e| e.target == target)
            .map_err(|e| Error::store("vault", e))?;
        (status.last_head, Some(custody))
    } else {
        (None, None)
    };
    Ok(IncidentData {
        incident,
        alerts,
        vault_head,
        custody,
    })
}

fn level(l: Level, loc: &Locale) -> String {
    loc.t(l.as_str(), l.as_str_ja()).to_string()
}

/// Indicators found in the incident's entities and its alerts' fields.
#[derive(Default)]
struct Indicators {
    ips: BTreeSet<String>,
    accounts: BTreeSet<String>,
    hosts: BTreeSet<String>,
    hashes: BTreeSet<String>,
    techniques: BTreeSet<String>,
}

impl Indicators {
    fn add(&mut self, field: &str, value: &str) {
        let f = field.to_ascii_lowercase();
        let v = value.trim();
        if v.is_empty() || v == "-" {
            return;
        }
        if (f.ends_with(".ip") || f.ends_with("ip") || f.contains("address"))
            && v.parse::<std::net::IpAddr>().is_ok()
        {
            self.ips.insert(v.to_string());
        } else if f.ends_with("user.name")
            || f == "user"
            || f.ends_with("username")
            || f.ends_with("account")
            || f.ends_with("targetusername")
            || f.ends_with("subjectusername")
        {
            self.accounts.insert(v.to_string());
        } else if f.ends_with("host.name") || f == "host" || f == "hostname" || f == "computer" {
            self.hosts.insert(v.to_string());
        } else if f.contains("hash")
            || f.contains("sha256")
            || f.contains("sha1")
            || f.contains("md5")
            || f.contains("imphash")
        {
            self.hashes.insert(v.to_string());
        }
    }

    fn gather(d: &IncidentData) -> Indicators {
        let mut ind = Indicators::default();
        for e in &d.incident.entities {
            ind.add(&e.field, &e.value);
        }
        for a in &d.alerts {
            let det = &a.details;
            if let Some(h) = det.get("host").and_then(|v| v.as_str()) {
                ind.hosts.insert(h.to_string());
            }
            if let Some(hs) = det.get("hosts").and_then(|v| v.as_array()) {
                for h in hs.iter().filter_map(|h| h.as_str()) {
                    ind.hosts.insert(h.to_string());
                }
            }
            for key in ["fields", "group"] {
                if let Some(m) = det.get(key).and_then(|v| v.as_object()) {
                    for (k, v) in m {
                        match v {
                            serde_json::Value::String(s) => ind.add(k, s),
                            serde_json::Value::Array(xs) => {
                                for x in xs.iter().filter_map(|x| x.as_str()) {
                                    ind.add(k, x);
                                }
                            }
                            other => ind.add(k, &other.to_string()),
                        }
                    }
                }
            }
            if let Some(tags) = det.get("tags").and_then(|v| v.as_array()) {
                for t in tags.iter().filter_map(|t| t.as_str()) {
                    if let Some(id) = t.strip_prefix("attack.") {
                        let tid = id.to_ascii_uppercase();
                        if tid.starts_with('T')
                            && tid[1..].chars().next().is_some_and(|c| c.is_ascii_digit())
                        {
                            ind.techniques.insert(tid);
                        }
                    }
                }
            }
        }
        ind
    }
}

/// When the incident entered a phase first (from its history).
fn entered(inc: &Incident, p: Phase) -> Option<DateTime<Utc>> {
    inc.history
        .iter()
        .filter(|h| h.action == HistoryAction::Phase && h.to.as_deref() == Some(p.as_str()))
        .map(|h| h.at)
        .min()
}

fn closed_at(inc: &Incident) -> Option<DateTime<Utc>> {
    inc.history
        .iter()
        .filter(|h| h.action == HistoryAction::Closed)
        .map(|h| h.at)
        .max()
}

/// Short text for a JSON detail (an action's arguments), without quotes around plain strings.
fn detail_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", detail_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Build the incident report.
pub fn build(d: &IncidentData, loc: &Locale, now: DateTime<Utc>) -> Result<Report> {
    let inc = &d.incident;
    let l = loc.lang.as_str();
    let ind = Indicators::gather(d);
    let first_alert = inc.alerts.iter().map(|a| a.time).min();
    let detected = inc.created_at;
    let contained = entered(inc, Phase::Containment);
    let closed = closed_at(inc);
    let mut sections = Vec::new();

    // 1. Summary
    let mut s = Section::new(loc.t("1. Summary", "1. 概要"));
    s.push(Block::Figures {
        items: vec![
            (
                loc.t("alerts", "アラート").into(),
                inc.alerts.len().to_string(),
            ),
            (
                loc.t("affected hosts", "影響を受けたホスト").into(),
                ind.hosts.len().to_string(),
            ),
            (
                loc.t("affected accounts", "影響を受けたアカウント").into(),
                ind.accounts.len().to_string(),
            ),
            (
                loc.t("events", "イベント").into(),
                inc.events.len().to_string(),
            ),
        ],
    });
    let dash = || "—".to_string();
    let mut facts = vec![
        (
            loc.t("Incident", "インシデント").into(),
            format!(
                "#{} {}",
                inc.id.0,
                loc.pick(&inc.title, inc.title_ja.as_deref())
            ),
        ),
        (loc.t("Kind", "種別").into(), inc.kind.label(l).into()),
        (loc.t("Severity", "深刻度").into(), level(inc.severity, loc)),
        (
            loc.t("Status", "状態").into(),
            format!("{} — {}", inc.status.label(l), inc.phase.label(l)),
        ),
        (
            loc.t("First malicious activity", "最初の不審な活動").into(),
            first_alert.map_or_else(dash, |t| loc.time(t)),
        ),
        (loc.t("Detected", "検知").into(), loc.time(detected)),
        (
            loc.t("Contained", "封じ込め").into(),
            contained.map_or_else(dash, |t| loc.time(t)),
        ),
        (
            loc.t("Closed", "クローズ").into(),
            closed.map_or_else(dash, |t| loc.time(t)),
        ),
        (
            loc.t("Assignee", "担当者").into(),
            inc.assignee.clone().unwrap_or_else(dash),
        ),
    ];
    if let (Some(f), true) = (first_alert, detected >= first_alert.unwrap_or(detected)) {
        facts.push((
            loc.t("Time to detect", "検知までの時間").into(),
            loc.duration(detected - f),
        ));
    }
    if let Some(c) = contained {
        facts.push((
            loc.t("Time to contain", "封じ込めまでの時間").into(),
            loc.duration(c - detected),
        ));
    }
    s.push(Block::Facts { rows: facts });
    let impact = match loc.lang {
        crate::Lang::En => format!(
            "Impact: {} host(s) and {} account(s) were involved, with {} external or internal address(es) seen. {}",
            ind.hosts.len(),
            ind.accounts.len(),
            ind.ips.len(),
            if inc.status == mamori_cases::Status::Closed {
                "The incident is closed."
            } else {
                "The incident is still open; this report shows its state at the time of writing."
            }
        ),
        crate::Lang::Ja => format!(
            "影響：ホスト {} 台、アカウント {} 件が関係し、{} 件のアドレスが観測されました。{}",
            ind.hosts.len(),
            ind.accounts.len(),
            ind.ips.len(),
            if inc.status == mamori_cases::Status::Closed {
                "このインシデントはクローズされています。"
            } else {
                "このインシデントは対応中です。本報告書は作成時点の状況を示します。"
            }
        ),
    };
    s.push(Block::Para { text: impact });
    sections.push(s);

    // 2. Timeline
    let mut s = Section::new(loc.t("2. Timeline", "2. 時系列"));
    let mut rows: Vec<(DateTime<Utc>, String, String, String)> = Vec::new();
    for a in &inc.alerts {
        rows.push((
            a.time,
            loc.t("alert", "アラート").into(),
            "mamori".into(),
            format!(
                "[{}] {}",
                level(a.level, loc),
                loc.pick(&a.title, a.title_ja.as_deref())
            ),
        ));
    }
    for h in &inc.history {
        if matches!(
            h.action,
            HistoryAction::AlertJoined | HistoryAction::Note | HistoryAction::Action
        ) {
            continue; // shown as the alert, note or action itself
        }
        let change = match (&h.from, &h.to) {
            (Some(f), Some(t)) => format!("{f} → {t}"),
            (None, Some(t)) => t.clone(),
            (Some(f), None) => f.clone(),
            (None, None) => String::new(),
        };
        let why = h
            .why
            .as_deref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        rows.push((
            h.at,
            h.action.as_str().replace('_', " "),
            h.by.clone(),
            format!("{change}{why}"),
        ));
    }
    for n in &inc.notes {
        rows.push((
            n.at,
            loc.t("note", "メモ").into(),
            n.by.clone(),
            n.text.clone(),
        ));
    }
    for a in &inc.actions {
        rows.push((
            a.at,
            loc.t("action", "対応").into(),
            a.by.clone(),
            format!("{}: {}", a.kind, detail_text(&a.detail)),
        ));
    }
    rows.sort_by_key(|r| r.0);
    let mut t = Table::new(&[
        loc.t("Time", "日時"),
        loc.t("What", "内容"),
        loc.t("Who", "実施者"),
        loc.t("Detail", "詳細"),
    ])
    .widths(&[3, 2, 2, 7]);
    t.rows = rows
        .into_iter()
        .map(|(at, k, by, d)| vec![loc.time(at), k, by, d])
        .collect();
    s.push(Block::Table(t.limit(300)));
    sections.push(s);

    // 3. Detection and analysis
    let mut s = Section::new(loc.t("3. Detection and analysis", "3. 検知と分析"));
    s.new_page = true;
    s.heading(loc.t("Alerts", "アラート"));
    let stored: BTreeMap<i64, &Alert> = d.alerts.iter().map(|a| (a.id.0, a)).collect();
    let mut t = Table::new(&[
        loc.t("Time", "日時"),
        loc.t("Level", "レベル"),
        loc.t("Rule", "ルール"),
        loc.t("Title", "タイトル"),
        loc.t("Count", "件数"),
        loc.t("Why in this incident", "このインシデントに含めた理由"),
    ])
    .widths(&[3, 2, 3, 5, 1, 4])
    .mono(&[2]);
    for a in &inc.alerts {
        let count = stored.get(&a.alert_id).map_or(1, |s| s.count);
        t.rows.push(vec![
            loc.time(a.time),
            level(a.level, loc),
            a.rule_id.0.to_string(),
            loc.pick(&a.title, a.title_ja.as_deref()).to_owned(),
            count.to_string(),
            a.joined_because.clone(),
        ]);
    }
    s.push(Block::Table(t.limit(200)));
    if d.alerts.len() < inc.alerts.len() {
        s.push(Block::Notice {
            tone: Tone::Info,
            text: match loc.lang {
                crate::Lang::En => format!("{} of the {} alerts were not found in the alert store (state.db); their details are missing below.", inc.alerts.len() - d.alerts.len(), inc.alerts.len()),
                crate::Lang::Ja => format!("{} 件のアラートのうち {} 件はアラートストア（state.db）に見つからず、詳細を含めていません。", inc.alerts.len(), inc.alerts.len() - d.alerts.len()),
            },
        });
    }
    s.heading(loc.t(
        "Affected hosts and accounts",
        "影響を受けたホストとアカウント",
    ));
    let none = loc.t("none identified", "特定されていません").to_string();
    let join = |set: &BTreeSet<String>| {
        if set.is_empty() {
            none.clone()
        } else {
            set.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    s.push(Block::Facts {
        rows: vec![
            (loc.t("Hosts", "ホスト").into(), join(&ind.hosts)),
            (loc.t("Accounts", "アカウント").into(), join(&ind.accounts)),
            (loc.t("Addresses", "アドレス").into(), join(&ind.ips)),
        ],
    });
    s.heading(loc.t("ATT&CK techniques", "ATT&CK テクニック"));
    if ind.techniques.is_empty() {
        s.notice(
            Tone::Info,
            loc.t(
                "The rules behind these alerts name no ATT&CK technique.",
                "これらのアラートのルールには ATT&CK テクニックの指定がありません。",
            ),
        );
    } else {
        s.push(Block::Bullets {
            items: ind
                .techniques
                .iter()
                .map(|t| {
                    format!(
                        "{t} — https://attack.mitre.org/techniques/{}/",
                        t.replace('.', "/")
                    )
                })
                .collect(),
        });
    }
    if !inc.entities.is_empty() {
        s.heading(loc.t("Entities", "関係する対象"));
        let mut t = Table::new(&[loc.t("Field", "フィールド"), loc.t("Value", "値")])
            .widths(&[1, 3])
            .mono(&[0, 1]);
        t.rows = inc
            .entities
            .iter()
            .map(|e| vec![e.field.clone(), e.value.clone()])
            .collect();
        s.push(Block::Table(t.limit(100)));
    }
    sections.push(s);

    // 4. Containment, eradication and recovery
    let mut s = Section::new(loc.t(
        "4. Containment, eradication and recovery",
        "4. 封じ込め・根絶・復旧",
    ));
    let mut facts = Vec::new();
    for p in [
        Phase::Containment,
        Phase::Eradication,
        Phase::Recovery,
        Phase::PostIncident,
    ] {
        facts.push((
            p.label(l).to_string(),
            entered(inc, p).map_or_else(
                || loc.t("not entered", "未実施").to_string(),
                |t| loc.time(t),
            ),
        ));
    }
    s.push(Block::Facts { rows: facts });
    s.heading(loc.t("Response actions", "対応アクション"));
    if inc.actions.is_empty() {
        s.notice(
            Tone::Info,
            loc.t(
                "No response action was recorded on this incident.",
                "このインシデントに記録された対応アクションはありません。",
            ),
        );
    } else {
        let mut t = Table::new(&[
            loc.t("Time", "日時"),
            loc.t("Who", "実施者"),
            loc.t("Action", "アクション"),
            loc.t("Detail", "詳細"),
            loc.t("Rolled back", "ロールバック"),
        ])
        .widths(&[3, 2, 3, 6, 2]);
        for a in &inc.actions {
            let rollback = a.kind.contains("rollback")
                || a.detail
                    .get("rolled_back")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
            t.rows.push(vec![
                loc.time(a.at),
                a.by.clone(),
                a.kind.clone(),
                detail_text(&a.detail),
                if rollback {
                    loc.t("yes", "はい")
                } else {
                    "—"
                }
                .into(),
            ]);
        }
        s.push(Block::Table(t.limit(200)));
    }
    s.heading(loc.t("Playbook tasks", "プレイブックのタスク"));
    let mut t = Table::new(&[
        loc.t("Phase", "フェーズ"),
        loc.t("Task", "タスク"),
        loc.t("Done by", "実施者"),
        loc.t("When", "日時"),
    ])
    .widths(&[2, 7, 2, 3]);
    for task in &inc.tasks {
        t.rows.push(vec![
            task.phase.label(l).into(),
            loc.t(&task.text_en, &task.text_ja).into(),
            task.done_by.clone().unwrap_or_else(|| {
                if task.done {
                    "—".into()
                } else {
                    loc.t("open", "未完了").into()
                }
            }),
            task.done_at.map_or_else(dash, |t| loc.time(t)),
        ]);
    }
    s.push(Block::Table(t.limit(100)));
    sections.push(s);

    // 5. Evidence
    let mut s = Section::new(loc.t("5. Evidence", "5. 証拠"));
    s.new_page = true;
    s.heading(loc.t("Evidence bundles", "証拠バンドル"));
    if inc.evidence.is_empty() {
        s.notice(Tone::Warn, loc.t("No evidence bundle was exported for this incident (mamori evidence export --incident N).", "このインシデントの証拠バンドルはまだ出力されていません（mamori evidence export --incident N）。"));
    } else {
        let mut t = Table::new(&[
            loc.t("Bundle", "バンドル"),
            "SHA-256",
            loc.t("Records", "記録"),
        ])
        .widths(&[3, 9, 2])
        .mono(&[0, 1]);
        for e in &inc.evidence {
            let (path, rest) = e
                .strip_prefix("bundle ")
                .and_then(|r| r.split_once(" sha256:"))
                .unwrap_or(("", e));
            let (hash, extra) = rest.split_once(' ').unwrap_or((rest, ""));
            t.rows.push(vec![
                path.to_string(),
                hash.to_string(),
                extra.trim_matches(|c| c == '(' || c == ')').to_string(),
            ]);
        }
        s.push(Block::Table(t.limit(100)));
    }
    s.heading(loc.t(
        "Signed tree head of the vault",
        "証拠保管庫の署名付きツリーヘッド",
    ));
    match &d.vault_head {
        Some(h) => {
            let field = |k: &str| h.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_else(dash);
            let at = h.get("timestamp").and_then(|v| v.as_str()).and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| loc.time(t.with_timezone(&Utc)));
            s.push(Block::Facts {
                rows: vec![
                    (loc.t("Tree size", "記録数").into(), field("tree_size")),
                    (loc.t("Root hash", "ルートハッシュ").into(), field("root_hash")),
                    (loc.t("Signed at", "署名日時").into(), at.unwrap_or_else(|| field("timestamp"))),
                ],
            });
            s.push(Block::Para { text: loc.t("Every sealed record is covered by this Ed25519-signed Merkle tree head; \"mamori vault verify\" and \"mamori evidence verify\" check it with the public key alone.", "封印された各記録はこの Ed25519 署名付きマークルツリーヘッドで保護されています。「mamori vault verify」と「mamori evidence verify」で公開鍵のみを使って検証できます。").into() });
        }
        None => s.notice(Tone::Warn, loc.t("No evidence vault in this data directory (mamori init): events are not sealed.", "このデータディレクトリには証拠保管庫がありません（mamori init）。イベントは封印されていません。")),
    }
    s.heading(loc.t(
        "Chain of custody",
        "証拠保全の記録（チェーン・オブ・カストディ）",
    ));
    match &d.custody {
        Some(c) if !c.is_empty() => {
            let mut t = Table::new(&[
                loc.t("Vault record", "記録番号"),
                loc.t("Time", "日時"),
                loc.t("Who", "実施者"),
                loc.t("What", "内容"),
                loc.t("Detail", "詳細"),
            ])
            .widths(&[2, 3, 2, 3, 7])
            .mono(&[0]);
            for (seq, e) in c {
                let action = serde_json::to_value(e.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                t.rows.push(vec![
                    seq.to_string(),
                    loc.time(e.at),
                    e.actor.clone(),
                    action.replace('_', " "),
                    e.detail.clone(),
                ]);
            }
            s.push(Block::Table(t.limit(300)));
        }
        Some(_) => s.notice(
            Tone::Info,
            loc.t(
                "The vault holds no custody record for this incident yet.",
                "保管庫にはこのインシデントの保全記録はまだありません。",
            ),
        ),
        None => s.notice(
            Tone::Info,
            loc.t(
                "No vault: the incident's history above is its only record of custody.",
                "保管庫がないため、上記の履歴が唯一の記録です。",
            ),
        ),
    }
    sections.push(s);

    // 6. Lessons learned
    let mut s = Section::new(loc.t("6. Lessons learned", "6. 教訓"));
    match &inc.lessons_learned {
        Some(ll) => {
            s.push(Block::Para { text: ll.clone() });
        }
        None => {
            s.notice(
                Tone::Info,
                loc.t(
                    "The incident is not closed: no lessons learned recorded yet.",
                    "インシデントはクローズされていないため、教訓はまだ記録されていません。",
                ),
            );
        }
    }
    if !inc.notes.is_empty() {
        s.heading(loc.t("Analyst notes", "分析メモ"));
        s.push(Block::Bullets {
            items: inc
                .notes
                .iter()
                .map(|n| format!("{} — {}: {}", loc.time(n.at), n.by, n.text))
                .collect(),
        });
    }
    sections.push(s);

    // 7. Appendix: indicators
    let mut s = Section::new(loc.t("Appendix: indicators", "付録：侵害の痕跡（IOC）"));
    let mut t = Table::new(&[loc.t("Type", "種類"), loc.t("Value", "値")])
        .widths(&[1, 4])
        .mono(&[1]);
    for (kind, set) in [
        (loc.t("IP address", "IP アドレス"), &ind.ips),
        (loc.t("Account", "アカウント"), &ind.accounts),
        (loc.t("Host", "ホスト"), &ind.hosts),
        (loc.t("Hash", "ハッシュ"), &ind.hashes),
    ] {
        for v in set {
            t.rows.push(vec![kind.to_string(), v.clone()]);
        }
    }
    if t.rows.is_empty() {
        s.notice(
            Tone::Info,
            loc.t(
                "No indicator was extracted from the alerts.",
                "アラートから抽出された痕跡はありません。",
            ),
        );
    } else {
        s.push(Block::Table(t.limit(500)));
    }
    sections.push(s);

    Ok(Report {
        lang: loc.lang,
        title: loc.t("Incident report", "インシデント報告書").into(),
        subtitle: format!(
            "#{} {}",
            inc.id.0,
            loc.pick(&inc.title, inc.title_ja.as_deref())
        ),
        generated: match loc.lang {
            crate::Lang::En => format!("Generated {} by Mamori", loc.time(now)),
            crate::Lang::Ja => format!("{} Mamori により作成", loc.time(now)),
        },
        sections,
        charts: Vec::new(),
    })
}
