//! Playbooks: per incident kind, the tasks of each phase in English and Japanese. Kept as data
//! (`playbooks/*.yml`, embedded at build time) so responders can read and review them without
//! reading Rust, and so a site can later load its own.
//!
//! File shape:
//! ```yaml
//! kind: vpn_compromise
//! title: { en: "VPN compromise", ja: "VPN侵害" }
//! phases:
//!   containment:
//!     - en: "Disable the affected VPN accounts ..."
//!       ja: "影響を受けたVPNアカウントを無効化し ..."
//! ```
//! Unknown keys, unknown phases (including `preparation`, which is not an incident phase) and
//! empty texts are errors naming the file and the place.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

use crate::error::{Error, Result};
use crate::model::{IncidentKind, Phase};

/// The built-in playbooks: `(file name, contents)`.
pub const BUILTIN_PLAYBOOKS: &[(&str, &str)] = &[
    (
        "vpn_compromise.yml",
        include_str!("../playbooks/vpn_compromise.yml"),
    ),
    (
        "ransomware.yml",
        include_str!("../playbooks/ransomware.yml"),
    ),
    (
        "brute_force.yml",
        include_str!("../playbooks/brute_force.yml"),
    ),
    (
        "web_attack.yml",
        include_str!("../playbooks/web_attack.yml"),
    ),
    (
        "account_compromise.yml",
        include_str!("../playbooks/account_compromise.yml"),
    ),
    (
        "data_exfiltration.yml",
        include_str!("../playbooks/data_exfiltration.yml"),
    ),
    ("generic.yml", include_str!("../playbooks/generic.yml")),
];

/// One task template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybookTask {
    pub en: String,
    pub ja: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playbook {
    pub kind: IncidentKind,
    pub title_en: String,
    pub title_ja: String,
    pub phases: BTreeMap<Phase, Vec<PlaybookTask>>,
}

impl Playbook {
    /// Parses one playbook file; `file` is used in error messages only.
    pub fn parse(file: &str, text: &str) -> Result<Playbook> {
        let err = |reason: String| Error::Playbook {
            file: file.to_owned(),
            reason,
        };
        let docs = YamlLoader::load_from_str(text).map_err(|e| err(e.to_string()))?;
        let [doc] = docs.as_slice() else {
            return Err(err(format!(
                "expected one YAML document, found {}",
                docs.len()
            )));
        };
        let top = mapping(doc, "the document").map_err(&err)?;
        let mut kind = None;
        let mut title = None;
        let mut phases = BTreeMap::new();
        for (k, v) in top {
            match k {
                "kind" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| err("kind: expected a string".into()))?;
                    kind = Some(
                        IncidentKind::parse(s)
                            .ok_or_else(|| err(format!("kind: unknown incident kind {s:?}")))?,
                    );
                }
                "title" => title = Some(texts(v, "title").map_err(&err)?),
                "phases" => {
                    for (p, list) in mapping(v, "phases").map_err(&err)? {
                        let phase = Phase::parse(p).ok_or_else(|| {
                            err(format!(
                                "phases: unknown phase {p:?} (expected one of detection_analysis, \
                                 containment, eradication, recovery, post_incident)"
                            ))
                        })?;
                        let items = list
                            .as_vec()
                            .ok_or_else(|| err(format!("phases.{p}: expected a list of tasks")))?;
                        let tasks = items
                            .iter()
                            .enumerate()
                            .map(|(i, t)| {
                                texts(t, &format!("phases.{p}[{i}]"))
                                    .map(|(en, ja)| PlaybookTask { en, ja })
                            })
                            .collect::<std::result::Result<Vec<_>, String>>()
                            .map_err(&err)?;
                        if phases.insert(phase, tasks).is_some() {
                            return Err(err(format!("phases: {p} given twice")));
                        }
                    }
                }
                other => return Err(err(format!("unknown key {other:?}"))),
            }
        }
        let kind = kind.ok_or_else(|| err("missing kind".into()))?;
        let (title_en, title_ja) = title.ok_or_else(|| err("missing title".into()))?;
        Ok(Playbook {
            kind,
            title_en,
            title_ja,
            phases,
        })
    }

    pub fn tasks(&self, phase: Phase) -> &[PlaybookTask] {
        self.phases.get(&phase).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A mapping with string keys, in file order.
fn mapping<'a>(y: &'a Yaml, what: &str) -> std::result::Result<Vec<(&'a str, &'a Yaml)>, String> {
    let h = y
        .as_hash()
        .ok_or_else(|| format!("{what}: expected a mapping"))?;
    h.iter()
        .map(|(k, v)| {
            k.as_str()
                .map(|k| (k, v))
                .ok_or_else(|| format!("{what}: keys must be strings"))
        })
        .collect()
}

/// `{en: "...", ja: "..."}`, both required and non-empty, nothing else.
fn texts(y: &Yaml, what: &str) -> std::result::Result<(String, String), String> {
    let (mut en, mut ja) = (None, None);
    for (k, v) in mapping(y, what)? {
        let s = v
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{what}.{k}: expected non-empty text"))?;
        match k {
            "en" => en = Some(s.to_owned()),
            "ja" => ja = Some(s.to_owned()),
            other => return Err(format!("{what}: unknown key {other:?} (expected en, ja)")),
        }
    }
    match (en, ja) {
        (Some(en), Some(ja)) => Ok((en, ja)),
        (None, _) => Err(format!("{what}: missing en")),
        (_, None) => Err(format!("{what}: missing ja")),
    }
}

/// A playbook for each incident kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playbooks {
    by_kind: BTreeMap<IncidentKind, Playbook>,
}

impl Playbooks {
    /// The embedded playbooks. Their validity is checked by this crate's tests, so an error here
    /// means a broken build, but it is still reported rather than panicking.
    pub fn builtin() -> Result<Playbooks> {
        Playbooks::from_files(BUILTIN_PLAYBOOKS.iter().copied())
    }

    /// Parses `(file name, contents)` pairs. Two files for one kind is an error; a kind with no
    /// file falls back to the generic playbook (see [`Playbooks::tasks`]).
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Playbooks> {
        let mut by_kind = BTreeMap::new();
        for (file, text) in files {
            let p = Playbook::parse(file, text)?;
            if by_kind.contains_key(&p.kind) {
                return Err(Error::Playbook {
                    file: file.to_owned(),
                    reason: format!("a second playbook for kind {}", p.kind),
                });
            }
            by_kind.insert(p.kind, p);
        }
        Ok(Playbooks { by_kind })
    }

    pub fn get(&self, kind: IncidentKind) -> Option<&Playbook> {
        self.by_kind.get(&kind)
    }

    /// The tasks to create when an incident of `kind` enters `phase` (the generic playbook's when
    /// `kind` has none).
    pub fn tasks(&self, kind: IncidentKind, phase: Phase) -> &[PlaybookTask] {
        self.get(kind)
            .or_else(|| self.get(IncidentKind::Generic))
            .map(|p| p.tasks(phase))
            .unwrap_or(&[])
    }
}

/// An item of the organisation's standing preparation checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChecklistItem {
    pub key: &'static str,
    pub en: &'static str,
    pub ja: &'static str,
}

const PREPARATION: &[ChecklistItem] = &[
    ChecklistItem {
        key: "contacts",
        en: "An up-to-date contact list: incident lead and deputy, IT, management, legal, PR, the incident response provider, the VPN and cloud vendors, the police cybercrime desk, JPCERT/CC — reachable off-hours and without company email.",
        ja: "最新の連絡先一覧を用意する（対応責任者と代理、情報システム部門、経営層、法務、広報、インシデント対応事業者、VPN・クラウドベンダー、警察のサイバー犯罪相談窓口、JPCERT/CC）。夜間・休日や社内メールが使えない場合にも連絡がつくようにしておく。",
    },
    ChecklistItem {
        key: "escalation",
        en: "Written escalation rules: who decides severity, who may isolate hosts or disable accounts, when management is called.",
        ja: "エスカレーションのルールを文書化する（誰が深刻度を判断するか、誰がホストの隔離やアカウントの無効化を決められるか、どの時点で経営層に連絡するか）。",
    },
    ChecklistItem {
        key: "regulator",
        en: "The personal data breach reporting procedure: who reports to the Personal Information Protection Commission (PPC), the preliminary (prompt) and final (30 or 60 days) deadlines, and the notice to individuals.",
        ja: "個人データの漏えい等の報告手順を決めておく（個人情報保護委員会への報告担当者、速報（速やかに）と確報（30日または60日以内）の期限、本人への通知）。",
    },
    ChecklistItem {
        key: "backups_offline",
        en: "Backups verified offline: an offline or immutable copy exists, and a restore has been tested recently.",
        ja: "バックアップをオフラインで検証しておく（オフラインまたは改ざんできない複製があり、最近復元テストを行っている）。",
    },
    ChecklistItem {
        key: "mfa_coverage",
        en: "MFA on every remote access path (VPN, remote desktop gateways, cloud consoles, mail) and on every administrator account.",
        ja: "すべてのリモートアクセス経路（VPN、リモートデスクトップゲートウェイ、クラウドの管理画面、メール）と全管理者アカウントに多要素認証を設定する。",
    },
    ChecklistItem {
        key: "log_retention",
        en: "Logs kept long enough to investigate (at least 90 days online, one year archived): VPN, authentication, firewall, proxy, cloud audit logs, and clocks synchronised with NTP.",
        ja: "調査に必要な期間ログを保存する（オンラインで90日以上、アーカイブで1年以上。VPN、認証、ファイアウォール、プロキシ、クラウドの監査ログ）。各機器の時刻はNTPで同期しておく。",
    },
    ChecklistItem {
        key: "asset_list",
        en: "An asset list with owners: hosts, internet-facing services, VPN appliances and their firmware versions, cloud accounts, where personal data lives.",
        ja: "担当者付きの資産台帳を整備する（ホスト、インターネット公開サービス、VPN装置とファームウェアのバージョン、クラウドアカウント、個人データの保存場所）。",
    },
    ChecklistItem {
        key: "patching",
        en: "A patch process for internet-facing devices (VPN, firewalls, web servers) with a named owner and a deadline for critical fixes.",
        ja: "インターネットに公開している機器（VPN、ファイアウォール、Webサーバー）の更新手順を定め、担当者と緊急の修正の適用期限を決めておく。",
    },
    ChecklistItem {
        key: "evidence",
        en: "Evidence handling ready: the evidence vault is initialised, and responders know how to capture memory and disk images.",
        ja: "証拠保全の準備をしておく（証拠保管庫を初期化済みで、対応者がメモリやディスクイメージの取得方法を知っている）。",
    },
    ChecklistItem {
        key: "exercise",
        en: "A tabletop exercise at least once a year using these playbooks.",
        ja: "これらのプレイブックを使った机上演習を年に1回以上行う。",
    },
];

/// The organisation's standing preparation checklist (NIST SP 800-61 "Preparation"). Not an
/// incident phase: it is done before incidents, and reviewed after each one.
pub fn preparation_checklist() -> &'static [ChecklistItem] {
    PREPARATION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_tasks_for_every_phase_in_both_languages() {
        let books = Playbooks::builtin().expect("built-in playbooks parse");
        for kind in IncidentKind::ALL {
            let p = books
                .get(kind)
                .unwrap_or_else(|| panic!("no playbook for {kind}"));
            assert!(!p.title_en.is_empty() && !p.title_ja.is_empty());
            for phase in Phase::ALL {
                let tasks = p.tasks(phase);
                assert!(!tasks.is_empty(), "{kind}: no tasks for {phase}");
                for t in tasks {
                    assert!(
                        t.en.is_ascii(),
                        "{kind}/{phase}: English text is not ASCII: {}",
                        t.en
                    );
                    assert!(
                        t.ja.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)),
                        "{kind}/{phase}: Japanese text has no kana: {}",
                        t.ja
                    );
                }
            }
        }
    }

    #[test]
    fn vpn_playbook_resets_every_user_and_preserves_logs() {
        let books = Playbooks::builtin().unwrap();
        let c = books.tasks(IncidentKind::VpnCompromise, Phase::Containment);
        assert!(c.iter().any(|t| t.en.contains("EVERY VPN user")));
        assert!(c
            .iter()
            .any(|t| t.ja.contains("全ユーザーのパスワードをリセット")));
        assert!(c.iter().any(|t| t.en.contains("evidence vault")));
        assert!(c.iter().any(|t| t.en.contains("PPC")));
        let r = books.tasks(IncidentKind::Ransomware, Phase::Containment);
        assert!(r.iter().any(|t| t.en.contains("Do NOT reboot")));
    }

    #[test]
    fn broken_playbooks_are_errors_with_file_and_reason() {
        let cases: &[(&str, &str)] = &[
            ("kind: [", "while parsing"),
            ("kind: nope\ntitle: {en: a, ja: b}\n", "unknown incident kind \"nope\""),
            ("title: {en: a, ja: b}\n", "missing kind"),
            (
                "kind: generic\ntitle: {en: a, ja: b}\nphases:\n  preparation: []\n",
                "unknown phase \"preparation\"",
            ),
            (
                "kind: generic\ntitle: {en: a, ja: b}\nphases:\n  containment:\n    - en: x\n",
                "phases.containment[0]: missing ja",
            ),
            (
                "kind: generic\ntitle: {en: a, ja: b}\nphases:\n  recovery:\n    - {en: x, ja: \"\"}\n",
                "phases.recovery[0].ja: expected non-empty text",
            ),
            ("kind: generic\ntitle: {en: a, ja: b}\nextra: 1\n", "unknown key \"extra\""),
        ];
        for (text, want) in cases {
            let e = Playbook::parse("bad.yml", text).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("playbook bad.yml: "), "{msg}");
            assert!(msg.contains(want), "{text:?}: {msg}");
        }
    }

    #[test]
    fn duplicate_kind_is_an_error_and_missing_kind_falls_back_to_generic() {
        let g = BUILTIN_PLAYBOOKS
            .iter()
            .find(|(f, _)| *f == "generic.yml")
            .unwrap()
            .1;
        let e = Playbooks::from_files([("a.yml", g), ("b.yml", g)]).unwrap_err();
        assert!(e
            .to_string()
            .contains("b.yml: a second playbook for kind generic"));
        let only_generic = Playbooks::from_files([("generic.yml", g)]).unwrap();
        assert_eq!(
            only_generic.tasks(IncidentKind::Ransomware, Phase::Recovery),
            only_generic.tasks(IncidentKind::Generic, Phase::Recovery)
        );
    }

    #[test]
    fn preparation_checklist_is_bilingual_and_not_a_phase() {
        let items = preparation_checklist();
        for key in [
            "contacts",
            "escalation",
            "backups_offline",
            "mfa_coverage",
            "log_retention",
            "asset_list",
        ] {
            assert!(items.iter().any(|i| i.key == key), "missing {key}");
        }
        assert!(items.iter().all(|i| !i.en.is_empty() && !i.ja.is_empty()));
        assert_eq!(Phase::parse("preparation"), None);
    }
}
