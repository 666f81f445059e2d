//! `[[backup]]` entries and the `[backups]` settings, as read from the server's TOML file.
//!
//! A password is never a shell string: it comes from a file (`password_file`, first line) or
//! from an environment variable named by `password_env`, and is handed to restic/Borg through
//! their own environment variable. It is never logged, printed or stored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// What kind of backup an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// A restic repository (local path or any URL restic understands: `sftp:`, `rest:`, `s3:`…).
    Restic,
    /// A Borg repository (local path or `ssh://`).
    Borg,
    /// A plain directory or mounted NAS share holding backup files.
    Directory,
}

impl BackupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Restic => "restic",
            BackupKind::Borg => "borg",
            BackupKind::Directory => "directory",
        }
    }
}

/// One `[[backup]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Unique name: letters, digits, `.`, `_`, `-` (it names files under the data directory).
    pub name: String,
    pub kind: BackupKind,
    /// The repository path or URL (restic, Borg), or the directory (directory).
    pub repository: String,
    /// A file whose first line is the repository password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable of the server holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The latest snapshot (or newest file, for a directory) must be younger than this:
    /// `26h`, `2d`, `90m`.
    #[serde(default = "default_max_age")]
    pub max_age: String,
    /// Share of the repository's data read back by each check, in percent (restic
    /// `--read-data-subset`; Borg 1.x can only read all data back, so any value above 0 means
    /// `--verify-data`). For a directory: share of unchanged files re-hashed against the
    /// manifest on each run.
    #[serde(default = "default_read_data_percent")]
    pub read_data_percent: u8,
    /// Files restored into a temporary directory and compared on each run (0 = no restore test).
    #[serde(default = "default_restore_sample")]
    pub restore_sample: usize,
    /// The original data this backup copies. When set, restored files whose original has not
    /// changed since the snapshot must be identical to it.
    #[serde(default)]
    pub source: Option<PathBuf>,
    /// The protected system this backup belongs to, for the 3-2-1 judgement (default: `name`).
    #[serde(default)]
    pub system: Option<String>,
    /// Host names whose backups these are: alerts of the backup-deletion rules on these hosts
    /// are linked to this entry.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// How many copies this entry stands for (e.g. 2 when the NAS replicates it).
    #[serde(default = "default_copies")]
    pub copies: u32,
    /// The kind of medium: `disk`, `nas`, `tape`, `cloud`, `usb`, `optical`…
    #[serde(default = "default_media")]
    pub media: String,
    /// The copy is kept at another site (or another cloud region than the system).
    #[serde(default)]
    pub offsite: bool,
    /// The copy is offline (disconnected) or immutable (object lock, append-only, WORM).
    #[serde(default)]
    pub offline: bool,
    /// How often `mamori serve` checks it: `24h`, `6h`, `7d`.
    #[serde(default = "default_every")]
    pub every: String,
    /// Longest a single restic/Borg command may run before it is killed.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// A fall of the snapshot count, repository size or file count by more than this percent
    /// since the previous check fails it.
    #[serde(default = "default_shrink_percent")]
    pub shrink_percent: u8,
    /// The restic/Borg program (default `restic` / `borg` from `PATH`).
    #[serde(default)]
    pub program: Option<PathBuf>,
}

fn default_max_age() -> String {
    "26h".into()
}
fn default_read_data_percent() -> u8 {
    5
}
fn default_restore_sample() -> usize {
    5
}
fn default_copies() -> u32 {
    1
}
fn default_media() -> String {
    "disk".into()
}
fn default_every() -> String {
    "24h".into()
}
fn default_timeout() -> String {
    "2h".into()
}
fn default_shrink_percent() -> u8 {
    25
}

/// `[backups]`: settings for all entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupsSettings {
    /// Judge ages as if it were this time (RFC 3339). For tests and drills only: it lets a
    /// test see a repository go stale without touching the system clock.
    pub clock: Option<DateTime<Utc>>,
}

impl BackupsSettings {
    /// The time ages are judged against.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.unwrap_or_else(Utc::now)
    }
}

/// A password held only in memory; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl BackupConfig {
    /// The protected system this entry belongs to.
    pub fn system(&self) -> &str {
        self.system.as_deref().unwrap_or(&self.name)
    }

    pub fn max_age(&self) -> Duration {
        parse_duration(&self.max_age).expect("validated")
    }

    pub fn every(&self) -> Duration {
        parse_duration(&self.every).expect("validated")
    }

    pub fn timeout(&self) -> Duration {
        parse_duration(&self.timeout).expect("validated")
    }

    /// The repository as it may be shown, stored and logged: a URL's `user:password@` is
    /// replaced by `***@` (restic and Borg accept credentials in repository URLs).
    pub fn repository_display(&self) -> String {
        redact_userinfo(&self.repository)
    }

    /// Checks everything that can be checked without touching the repository.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("backup {:?}: {m}", self.name)));
        if !valid_name(&self.name) {
            return bad(
                "name must be 1–64 letters, digits, '.', '_' or '-', not starting with '.'".into(),
            );
        }
        if self.repository.trim().is_empty() {
            return bad("repository must not be empty".into());
        }
        for (key, v) in [
            ("max_age", &self.max_age),
            ("every", &self.every),
            ("timeout", &self.timeout),
        ] {
            if let Err(e) = parse_duration(v) {
                return bad(format!("{key}: {e}"));
            }
        }
        if self.read_data_percent > 100 {
            return bad("read_data_percent must be 0–100".into());
        }
        if self.shrink_percent == 0 || self.shrink_percent > 100 {
            return bad("shrink_percent must be 1–100".into());
        }
        if self.copies == 0 {
            return bad("copies must be at least 1".into());
        }
        match self.kind {
            BackupKind::Directory => {
                if self.password_file.is_some() || self.password_env.is_some() {
                    return bad("a directory has no password".into());
                }
                if !Path::new(&self.repository).is_absolute() {
                    return bad("a directory repository must be an absolute path".into());
                }
            }
            BackupKind::Restic | BackupKind::Borg => {
                if self.password_file.is_some() && self.password_env.is_some() {
                    return bad("set password_file or password_env, not both".into());
                }
                if let Some(v) = &self.password_env {
                    if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return bad(format!(
                            "password_env {v:?} is not an environment variable name"
                        ));
                    }
                }
                // A repository starting with '-' would be read as an option by the tool.
                if self.repository.starts_with('-') {
                    return bad("repository must not start with '-'".into());
                }
            }
        }
        if self.media.trim().is_empty() {
            return bad("media must not be empty".into());
        }
        Ok(())
    }

    /// Reads the password (restic/Borg), if one is configured.
    pub fn password(&self) -> Result<Option<Secret>> {
        if let Some(p) = &self.password_file {
            let text = std::fs::read_to_string(p).at(p)?;
            let line = text.lines().next().unwrap_or("").to_string();
            return Ok(Some(Secret(line)));
        }
        if let Some(v) = &self.password_env {
            return match std::env::var(v) {
                Ok(s) => Ok(Some(Secret(s))),
                Err(_) => Err(Error::Config(format!(
                    "backup {:?}: environment variable {v} is not set",
                    self.name
                ))),
            };
        }
        Ok(None)
    }
}

/// Validates a whole list: each entry, and names unique.
pub fn validate_all(entries: &[BackupConfig]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for e in entries {
        e.validate()?;
        if !seen.insert(e.name.as_str()) {
            return Err(Error::Config(format!(
                "backup {:?} is defined twice",
                e.name
            )));
        }
    }
    Ok(())
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `90s`, `45m`, `26h`, `7d` (one number and one unit).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit (s, m, h or d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    if n == 0 {
        return Err(format!("{s:?} must be greater than zero"));
    }
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// `scheme://user:pass@host/path` → `scheme://***@host/path`; anything else unchanged.
pub(crate) fn redact_userinfo(s: &str) -> String {
    let Some(i) = s.find("://") else {
        return s.to_string();
    };
    let rest = &s[i + 3..];
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}://***{}", &s[..i], &rest[at..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_userinfo;

    #[test]
    fn credentials_in_repository_urls_are_redacted() {
        assert_eq!(
            redact_userinfo("rest:https://backup:hunter2@nas.local:8000/fs01"),
            "rest:https://***@nas.local:8000/fs01"
        );
        assert_eq!(
            redact_userinfo("ssh://borg@host/./repo"),
            "ssh://***@host/./repo"
        );
        assert_eq!(redact_userinfo("/mnt/backup/restic"), "/mnt/backup/restic");
        assert_eq!(
            redact_userinfo("s3:https://s3.example.com/bucket@x"),
            "s3:https://s3.example.com/bucket@x"
        );
    }
}
