//! `mamori agent run --config agent.toml`: what to collect and watch, checked at start.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The whole agent configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Where the credential, the disk buffer, checkpoints and the FIM baseline live.
    pub state_dir: PathBuf,
    /// Log files to follow (`[[file]]`).
    #[serde(default)]
    pub file: Vec<FileSource>,
    #[serde(default)]
    pub journald: JournaldConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub fim: FimConfig,
    #[serde(default)]
    pub ransomware: RansomwareConfig,
    /// `[inventory]`: users, groups, listening ports, packages, kernel — sent on change.
    #[serde(default)]
    pub inventory: crate::inventory::InventoryConfig,
    /// `[response]`: which commands from the server this host runs (off by default).
    #[serde(default)]
    pub response: mamori_respond::HostPolicy,
    /// How often the agent reports in when it has nothing to send (seconds).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
}

fn default_heartbeat() -> u64 {
    30
}

/// `[[file]] paths = ["/var/log/auth.log"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    pub paths: Vec<PathBuf>,
}

/// `[journald]`: `journalctl -o json --follow` (argv, no shell).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournaldConfig {
    pub enabled: bool,
    /// Only these units (`-u`), when given.
    pub units: Vec<String>,
}

/// `[buffer]`: batching and the bounded disk buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Most bytes of buffered batches on disk; the oldest are dropped (and counted) beyond.
    pub max_bytes: u64,
    /// A batch is sealed at this many records…
    pub max_records: usize,
    /// …or this long after its first record.
    pub max_wait_ms: u64,
    /// How often sources are polled.
    pub poll_ms: u64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_bytes: 256 << 20,
            max_records: 2000,
            max_wait_ms: 1000,
            poll_ms: 250,
        }
    }
}

/// `[fim]`: file integrity monitoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FimConfig {
    /// Files and directories (recursive) to watch.
    pub paths: Vec<PathBuf>,
    /// Full hash scan interval (catches what inotify misses); 0 = only at start.
    pub scan_interval_secs: u64,
    /// Files larger than this are not hashed (size, owner and mode are still watched).
    pub max_hash_bytes: u64,
    /// Most files watched (the rest are reported once).
    pub max_files: usize,
}

impl Default for FimConfig {
    fn default() -> Self {
        FimConfig {
            paths: Vec::new(),
            scan_interval_secs: 300,
            max_hash_bytes: 64 << 20,
            max_files: 100_000,
        }
    }
}

/// What to do when ransomware behaviour is seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    /// Report only.
    #[default]
    Detect,
    /// Report and stop the process responsible (SIGKILL by PID).
    Automatic,
}

/// `[ransomware]`: behaviour detection in watched shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RansomwareConfig {
    /// Directories (recursive) where mass encryption is looked for.
    pub paths: Vec<PathBuf>,
    /// Canary file names placed in each path (touching one is an alarm by itself).
    pub canaries: Vec<String>,
    pub mode: ResponseMode,
    /// Suspicious rewrites (high entropy, lost magic bytes, renames to one extension) within
    /// `window_secs` that make an alarm.
    pub threshold: usize,
    pub window_secs: u64,
}

impl Default for RansomwareConfig {
    fn default() -> Self {
        RansomwareConfig {
            paths: Vec::new(),
            canaries: vec!["~mamori-canary.docx".into()],
            mode: ResponseMode::Detect,
            threshold: 10,
            window_secs: 10,
        }
    }
}

impl AgentConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e,
        })?;
        let cfg: AgentConfig = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| Error::Config {
            path: path.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    /// What serde cannot check.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.buffer.max_records == 0 || self.buffer.max_records > 100_000 {
            return Err("buffer.max_records must be 1-100000".into());
        }
        if self.buffer.poll_ms == 0 {
            return Err("buffer.poll_ms must be at least 1".into());
        }
        if self.buffer.max_bytes < (1 << 20) {
            return Err("buffer.max_bytes must be at least 1 MiB".into());
        }
        if self.heartbeat_secs == 0 {
            return Err("heartbeat_secs must be at least 1".into());
        }
        for f in &self.file {
            if f.paths.is_empty() {
                return Err("[[file]] has no paths".into());
            }
            for p in &f.paths {
                if !p.is_absolute() {
                    return Err(format!("file path {} is not absolute", p.display()));
                }
            }
        }
        for u in &self.journald.units {
            // Passed as one argv element after `-u`; still refuse option-looking names.
            if u.is_empty() || u.starts_with('-') || u.len() > 256 {
                return Err(format!("journald unit {u:?} is not a unit name"));
            }
        }
        for p in self.fim.paths.iter().chain(&self.ransomware.paths) {
            if !p.is_absolute() {
                return Err(format!("watched path {} is not absolute", p.display()));
            }
        }
        for c in &self.ransomware.canaries {
            if c.is_empty() || c.contains('/') || c == "." || c == ".." {
                return Err(format!("canary name {c:?} must be a plain file name"));
            }
        }
        if self.inventory.interval_secs == 0 {
            return Err("inventory.interval_secs must be at least 1".into());
        }
        for p in [
            &self.inventory.etc_root,
            &self.inventory.proc_root,
            &self.inventory.dpkg_status,
        ] {
            if !p.is_absolute() {
                return Err(format!("inventory path {} is not absolute", p.display()));
            }
        }
        if self.response.poll_secs == 0 {
            return Err("response.poll_secs must be at least 1".into());
        }
        if self.ransomware.threshold == 0 || self.ransomware.window_secs == 0 {
            return Err("ransomware.threshold and window_secs must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_and_unknown_keys() {
        let c: AgentConfig = toml::from_str(
            "state_dir = \"/var/lib/mamori-agent\"\n[[file]]\npaths = [\"/var/log/auth.log\"]\n",
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.buffer.max_records, 2000);
        assert!(toml::from_str::<AgentConfig>("state_dir = \"/x\"\nstat_dir = 1\n").is_err());
        let c: AgentConfig =
            toml::from_str("state_dir = \"/x\"\n[[file]]\npaths = [\"rel.log\"]\n").unwrap();
        assert!(c.validate().unwrap_err().contains("not absolute"));
        let c: AgentConfig =
            toml::from_str("state_dir = \"/x\"\n[journald]\nenabled = true\nunits = [\"--all\"]\n")
                .unwrap();
        assert!(c.validate().is_err());
    }
}
