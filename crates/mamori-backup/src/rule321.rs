//! The 3-2-1 rule per protected system: at least 3 copies of the data, on at least 2 kinds of
//! media, at least 1 off-site, and at least 1 offline or immutable.
//!
//! Judged from the configuration: the original data counts as one copy; each `[[backup]]`
//! entry of the system adds its `copies`. Media kinds, off-site and offline are counted among
//! the backups (the original is on-line and on-site by definition). A backup whose latest
//! check failed does not count: a copy that cannot be restored is not a copy.

use std::collections::BTreeSet;

use crate::config::BackupConfig;
use crate::model::{CheckStatus, Outcome};

/// The counts behind a judgement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule321 {
    pub system: String,
    /// Copies including the original.
    pub copies: u32,
    pub media: BTreeSet<String>,
    pub offsite: u32,
    pub offline: u32,
    /// Entries left out because their latest check failed.
    pub failed: Vec<String>,
}

impl Rule321 {
    pub fn satisfied(&self) -> bool {
        self.copies >= 3 && self.media.len() >= 2 && self.offsite >= 1 && self.offline >= 1
    }
}

/// Counts the copies of `system` among `entries` (each with the status of its latest check,
/// if it ran).
pub fn judge(system: &str, entries: &[(&BackupConfig, Option<CheckStatus>)]) -> Rule321 {
    let mut r = Rule321 {
        system: system.to_string(),
        copies: 1,
        media: BTreeSet::new(),
        offsite: 0,
        offline: 0,
        failed: Vec::new(),
    };
    for (cfg, status) in entries.iter().filter(|(c, _)| c.system() == system) {
        if *status == Some(CheckStatus::Failed) {
            r.failed.push(cfg.name.clone());
            continue;
        }
        r.copies += cfg.copies;
        r.media.insert(cfg.media.trim().to_ascii_lowercase());
        r.offsite += u32::from(cfg.offsite) * cfg.copies;
        r.offline += u32::from(cfg.offline) * cfg.copies;
    }
    r
}

/// Adds what is missing, said plainly, as warnings (a configuration that breaks the rule is a
/// risk to fix, not a broken backup).
pub(crate) fn findings(r: &Rule321, out: &mut Outcome) {
    let s = &r.system;
    if !r.failed.is_empty() {
        let names = r.failed.join(", ");
        out.note(
            "rule321.failed_copies_not_counted",
            format!("3-2-1 for {s}: {names} not counted as a copy because its latest check failed"),
            format!(
                "3-2-1({s}): 直近のチェックに失敗したため {names} はコピーとして数えていません"
            ),
        );
    }
    if r.copies < 3 {
        let missing = 3 - r.copies;
        out.warn(
            "rule321.copies",
            format!(
                "3-2-1 for {s}: {} copies of the data (the original included), at least 3 are needed — add {missing} more backup {}",
                r.copies,
                if missing == 1 { "copy" } else { "copies" }
            ),
            format!(
                "3-2-1({s}): データのコピーは元データを含めて{}個です。3個以上必要です — バックアップをあと{missing}個追加してください",
                r.copies
            ),
        );
    }
    if r.media.len() < 2 {
        let have = if r.media.is_empty() {
            "none".to_string()
        } else {
            r.media.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        out.warn(
            "rule321.media",
            format!("3-2-1 for {s}: backups are on {} kind(s) of media ({have}), at least 2 are needed — keep a copy on another kind (e.g. tape, cloud, USB disk)", r.media.len()),
            format!("3-2-1({s}): バックアップの媒体は{}種類({have})です。2種類以上必要です — 別の種類の媒体(テープ、クラウド、USBディスクなど)にもコピーを置いてください", r.media.len()),
        );
    }
    if r.offsite == 0 {
        out.warn(
            "rule321.offsite",
            format!("3-2-1 for {s}: no copy is kept off-site — a fire, theft or flood at the site destroys every copy"),
            format!("3-2-1({s}): 遠隔地に保管されたコピーがありません — 火災・盗難・水害で全てのコピーを失います"),
        );
    }
    if r.offline == 0 {
        out.warn(
            "rule321.offline",
            format!("3-2-1 for {s}: no copy is offline or immutable — ransomware that reaches the network can delete or encrypt every copy"),
            format!("3-2-1({s}): オフラインまたは変更不可(イミュータブル)のコピーがありません — ネットワークに侵入したランサムウェアが全てのコピーを削除・暗号化できます"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackupKind;

    fn entry(name: &str, media: &str, offsite: bool, offline: bool) -> BackupConfig {
        let toml = format!(
            "name = {name:?}\nkind = \"directory\"\nrepository = \"/b/{name}\"\nsystem = \"fs01\"\nmedia = {media:?}\noffsite = {offsite}\noffline = {offline}\n"
        );
        let c: BackupConfig = toml::from_str(&toml).unwrap();
        assert_eq!(c.kind, BackupKind::Directory);
        c
    }

    fn codes(r: &Rule321) -> Vec<String> {
        let mut o = Outcome::default();
        findings(r, &mut o);
        o.found.into_iter().map(|(_, f)| f.code).collect()
    }

    #[test]
    fn nas_plus_offline_cloud_satisfies_the_rule() {
        let nas = entry("nas", "nas", false, false);
        let cloud = entry("cloud", "cloud", true, true);
        let r = judge("fs01", &[(&nas, Some(CheckStatus::Passed)), (&cloud, None)]);
        assert_eq!(r.copies, 3);
        assert!(r.satisfied(), "{r:?}");
        assert!(codes(&r).is_empty());
    }

    #[test]
    fn one_nas_copy_misses_everything_and_says_so() {
        let nas = entry("nas", "nas", false, false);
        let r = judge("fs01", &[(&nas, None)]);
        assert!(!r.satisfied());
        assert_eq!(
            codes(&r),
            [
                "rule321.copies",
                "rule321.media",
                "rule321.offsite",
                "rule321.offline"
            ]
        );
        let mut o = Outcome::default();
        findings(&r, &mut o);
        assert!(o.found[0].1.en.contains("2 copies"), "{}", o.found[0].1.en);
        assert!(o.found[0].1.ja.contains("あと1個"), "{}", o.found[0].1.ja);
    }

    #[test]
    fn a_failed_copy_does_not_count_and_other_systems_are_ignored() {
        let nas = entry("nas", "nas", false, false);
        let cloud = entry("cloud", "cloud", true, true);
        let mut other = entry("other", "tape", true, true);
        other.system = Some("db01".into());
        let r = judge(
            "fs01",
            &[
                (&nas, Some(CheckStatus::Passed)),
                (&cloud, Some(CheckStatus::Failed)),
                (&other, None),
            ],
        );
        assert_eq!(r.copies, 2);
        assert_eq!(r.failed, ["cloud"]);
        assert_eq!(
            codes(&r),
            [
                "rule321.failed_copies_not_counted",
                "rule321.copies",
                "rule321.media",
                "rule321.offsite",
                "rule321.offline"
            ]
        );
    }

    #[test]
    fn copies_attribute_counts_replicas() {
        let mut nas = entry("nas", "nas", false, true);
        nas.copies = 2;
        let tape = entry("tape", "tape", true, false);
        let r = judge("fs01", &[(&nas, None), (&tape, None)]);
        assert_eq!(r.copies, 4);
        assert_eq!(r.offline, 2);
        assert!(r.satisfied());
    }
}
