//! Ransomware behaviour in watched shares: a burst of rewrites whose content became
//! high-entropy or lost the magic bytes its extension promises, mass renames to one new
//! extension, ransom-note file names and touched canary files. The content tests are
//! `mamori-backup`'s (`content` module), the same ones the backup checks use.
//!
//! The process responsible is found by scanning `/proc/<pid>/fd` (and `cwd`) for files under
//! the share — fanotify would name it directly but needs `CAP_SYS_ADMIN` and raw syscalls
//! (this workspace forbids `unsafe`); the scan is repeated for a short while because an
//! encrypting process holds each file only briefly. In `automatic` mode that process is
//! killed by PID (a number read from `/proc`, never a name or a shell command), with guards:
//! never PID 1, never the agent itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mamori_backup::content;

use crate::config::{RansomwareConfig, ResponseMode};
use crate::fim::Change;

/// Why a change looks like encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sign {
    HighEntropy,
    LostMagic,
    RansomExtension(String),
    RenamedTo(String),
}

/// A detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub reason: String,
    pub files: Vec<String>,
    pub directory: String,
}

/// The process found and what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Culprit {
    pub pid: u32,
    pub name: String,
    pub executable: String,
    pub command_line: String,
}

pub struct Detector {
    cfg: RansomwareConfig,
    recent: VecDeque<(Instant, String, Sign)>,
    quiet_until: Option<Instant>,
}

fn head(path: &Path) -> Option<Vec<u8>> {
    let f = std::fs::File::open(path).ok()?;
    let mut b = Vec::with_capacity(content::SAMPLE_BYTES);
    f.take(content::SAMPLE_BYTES as u64)
        .read_to_end(&mut b)
        .ok()?;
    Some(b)
}

/// The content signs of one file now.
pub fn content_sign(path: &Path) -> Option<Sign> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let ext = content::extension(&name);
    if let Some(e) = &ext {
        if content::is_ransom_extension(e) {
            return Some(Sign::RansomExtension(e.clone()));
        }
    }
    let h = head(path)?;
    if let Some(e) = &ext {
        match content::magic_matches(e, &h) {
            Some(false) => return Some(Sign::LostMagic),
            // The type its extension promises: compressed formats are high-entropy by nature.
            Some(true) => return None,
            None => {}
        }
    }
    (h.len() >= content::MIN_ENTROPY_SAMPLE
        && content::shannon_entropy(&h) >= content::HIGH_ENTROPY)
        .then_some(Sign::HighEntropy)
}

impl Detector {
    pub fn new(cfg: RansomwareConfig) -> Detector {
        Detector {
            cfg,
            recent: VecDeque::new(),
            quiet_until: None,
        }
    }

    fn share_of(&self, p: &Path) -> Option<&PathBuf> {
        self.cfg.paths.iter().find(|s| p.starts_with(s))
    }

    /// Places the canary files in each share (left alone when present).
    pub fn plant_canaries(&self) {
        for s in &self.cfg.paths {
            for c in &self.cfg.canaries {
                let p = s.join(c);
                if !p.exists() {
                    // A plausible document nobody should touch: a ZIP header and text.
                    let mut body = b"PK\x03\x04".to_vec();
                    body.extend_from_slice(&[b'm'; 2048]);
                    if let Err(e) = std::fs::write(&p, body) {
                        tracing::warn!(path = %p.display(), error = %e, "cannot place canary file");
                    }
                }
            }
        }
    }

    /// Looks at one change; an alarm when it completes a burst (or is a canary or a note).
    pub fn observe(&mut self, c: &Change, now: Instant) -> Option<Alarm> {
        let p = Path::new(&c.path);
        let share = self.share_of(p)?.clone();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let touched_canary = |path: &str| {
            Path::new(path).file_name().is_some_and(|n| {
                self.cfg
                    .canaries
                    .iter()
                    .any(|c| **c == *n.to_string_lossy())
            })
        };
        let window = Duration::from_secs(self.cfg.window_secs);
        let quiet = self.quiet_until.is_some_and(|t| now < t);
        if touched_canary(&c.path) || c.previous_path.as_deref().is_some_and(touched_canary) {
            if c.action == "created" {
                return None;
            }
            return self.alarm(
                now,
                &share,
                format!(
                    "canary file {} was {}",
                    c.previous_path.as_deref().unwrap_or(&c.path),
                    c.action
                ),
                vec![c.path.clone()],
            );
        }
        if c.action == "created" && content::is_ransom_note(&name) {
            return self.alarm(
                now,
                &share,
                format!("ransom note {name} created"),
                vec![c.path.clone()],
            );
        }
        let sign = match c.action {
            "renamed" => {
                let old_ext = c
                    .previous_path
                    .as_deref()
                    .and_then(|pp| Path::new(pp).file_name())
                    .and_then(|n| content::extension(&n.to_string_lossy()));
                let new_ext = content::extension(&name);
                match (new_ext, old_ext) {
                    (Some(n), o) if Some(&n) != o.as_ref() => Some(Sign::RenamedTo(n)),
                    _ => content_sign(p),
                }
            }
            "created" | "modified" => content_sign(p),
            _ => None,
        }?;
        while self
            .recent
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back((now, c.path.clone(), sign));
        if quiet {
            return None;
        }
        // Renames to one extension count together; content signs count together.
        let mut by_ext: BTreeMap<&str, usize> = BTreeMap::new();
        let mut content_n = 0usize;
        for (_, _, s) in &self.recent {
            match s {
                Sign::RenamedTo(e) => *by_ext.entry(e.as_str()).or_default() += 1,
                _ => content_n += 1,
            }
        }
        let (top_ext, top_n) = by_ext
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or(("", 0), |(e, n)| (*e, *n));
        let reason = if top_n >= self.cfg.threshold {
            format!(
                "{top_n} files renamed to .{top_ext} within {}s",
                self.cfg.window_secs
            )
        } else if content_n >= self.cfg.threshold {
            format!(
                "{content_n} files rewritten with encrypted-looking content (high entropy or lost magic bytes) within {}s",
                self.cfg.window_secs
            )
        } else {
            return None;
        };
        let files: Vec<String> = self.recent.iter().map(|(_, p, _)| p.clone()).collect();
        self.alarm(now, &share, reason, files)
    }

    fn alarm(
        &mut self,
        now: Instant,
        share: &Path,
        reason: String,
        files: Vec<String>,
    ) -> Option<Alarm> {
        self.quiet_until = Some(now + Duration::from_secs(self.cfg.window_secs));
        let files: BTreeSet<String> = files.into_iter().collect();
        Some(Alarm {
            reason,
            files: files.into_iter().take(50).collect(),
            directory: share.to_string_lossy().into_owned(),
        })
    }

    pub fn mode(&self) -> ResponseMode {
        self.cfg.mode
    }
}

fn proc_text(pid: u32, what: &str) -> String {
    std::fs::read(format!("/proc/{pid}/{what}"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// Processes with a file open under `dir` (or working in it), scanned repeatedly for up to
/// `wait`, most files first.
pub fn find_culprits(dir: &Path, wait: Duration) -> Vec<Culprit> {
    let me = std::process::id();
    let deadline = Instant::now() + wait;
    loop {
        let mut hits: BTreeMap<u32, usize> = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for ent in rd.flatten() {
                let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if pid <= 1 || pid == me {
                    continue;
                }
                let base = ent.path();
                let mut n = 0usize;
                if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
                    for fd in fds.flatten() {
                        if std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)) {
                            n += 2;
                        }
                    }
                }
                if std::fs::read_link(base.join("cwd")).is_ok_and(|t| t.starts_with(dir)) {
                    n += 1;
                }
                if n > 0 {
                    hits.insert(pid, n);
                }
            }
        }
        if !hits.is_empty() || Instant::now() >= deadline {
            let mut v: Vec<(u32, usize)> = hits.into_iter().collect();
            v.sort_by_key(|b| std::cmp::Reverse(b.1));
            return v
                .into_iter()
                .map(|(pid, _)| Culprit {
                    pid,
                    name: proc_text(pid, "comm"),
                    executable: std::fs::read_link(format!("/proc/{pid}/exe"))
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    command_line: proc_text(pid, "cmdline"),
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills a process by PID (SIGKILL). Refuses PID 0/1 and the agent itself.
#[cfg(unix)]
pub fn kill(pid: u32) -> Result<(), String> {
    if pid <= 1 || pid == std::process::id() {
        return Err(format!("refusing to kill PID {pid}"));
    }
    let p = rustix::process::Pid::from_raw(pid as i32).ok_or("invalid PID")?;
    rustix::process::kill_process(p, rustix::process::Signal::KILL).map_err(|e| e.to_string())
}

#[cfg(not(unix))]
pub fn kill(_pid: u32) -> Result<(), String> {
    Err("killing a process is only supported on Unix".into())
}

/// The ECS fields of an alarm and the response.
pub fn alarm_fields(
    a: &Alarm,
    culprit: Option<&Culprit>,
    response: (&str, &str),
    host: &str,
) -> serde_json::Value {
    use serde_json::json;
    let mut v = json!({
        "@timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "message": format!("ransomware behaviour in {}: {}", a.directory, a.reason),
        "event": {
            "kind": "alert",
            "category": "malware",
            "type": "info",
            "action": "ransomware_behaviour",
            "module": "ransomware",
            "dataset": "mamori.ransomware",
            "reason": a.reason,
        },
        "host": { "name": host },
        "file": { "directory": a.directory },
        "ransomware": { "files": a.files, "file_count": a.files.len() },
        "response": { "action": response.0, "result": response.1 },
    });
    if let Some(c) = culprit {
        v["process"] = json!({
            "pid": c.pid,
            "name": c.name,
            "executable": c.executable,
            "command_line": c.command_line,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fim::{Change, FileState};

    fn change(action: &'static str, path: &Path, prev: Option<&Path>) -> Change {
        Change {
            action,
            path: path.to_string_lossy().into_owned(),
            previous_path: prev.map(|p| p.to_string_lossy().into_owned()),
            before: None,
            after: Some(FileState {
                sha256: None,
                size: 0,
                mode: 0,
                uid: 0,
                gid: 0,
                ino: 1,
            }),
        }
    }

    fn cfg(dir: &Path) -> RansomwareConfig {
        RansomwareConfig {
            paths: vec![dir.to_owned()],
            threshold: 5,
            ..RansomwareConfig::default()
        }
    }

    #[test]
    fn burst_of_encrypted_rewrites_is_an_alarm_plain_edits_are_not() {
        let d = tempfile::tempdir().unwrap();
        let mut det = Detector::new(cfg(d.path()));
        let now = Instant::now();
        // Ordinary edits of text files: nothing.
        for i in 0..20 {
            let p = d.path().join(format!("note{i}.txt"));
            std::fs::write(&p, "meeting notes ".repeat(200)).unwrap();
            assert!(det.observe(&change("modified", &p, None), now).is_none());
        }
        let mut alarm = None;
        for i in 0..5 {
            let p = d.path().join(format!("doc{i}.txt"));
            let noise: Vec<u8> = (0..8192u32)
                .map(|x| (x.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            std::fs::write(&p, noise).unwrap();
            alarm = alarm.or(det.observe(&change("modified", &p, None), now));
        }
        let a = alarm.expect("five encrypted rewrites");
        assert!(a.reason.contains("5 files"), "{}", a.reason);
        assert_eq!(a.files.len(), 5);
    }

    #[test]
    fn mass_rename_note_and_canary() {
        let d = tempfile::tempdir().unwrap();
        let mut det = Detector::new(cfg(d.path()));
        let now = Instant::now();
        let mut alarm = None;
        for i in 0..5 {
            let old = d.path().join(format!("f{i}.pdf"));
            let new = d.path().join(format!("f{i}.pdf.xyz"));
            std::fs::write(&new, "%PDF-1.7").unwrap();
            alarm = alarm.or(det.observe(&change("renamed", &new, Some(&old)), now));
        }
        assert!(alarm.unwrap().reason.contains("renamed to .xyz"));
        let mut det = Detector::new(cfg(d.path()));
        let note = d.path().join("HOW_TO_RECOVER_FILES.txt");
        std::fs::write(&note, "pay").unwrap();
        assert!(det.observe(&change("created", &note, None), now).is_some());
        let mut det = Detector::new(cfg(d.path()));
        let canary = d.path().join("~mamori-canary.docx");
        assert!(det
            .observe(&change("created", &canary, None), now)
            .is_none());
        assert!(det
            .observe(&change("modified", &canary, None), now)
            .is_some());
        // Outside the share: ignored.
        let other = tempfile::tempdir().unwrap();
        let p = other.path().join("HOW_TO_RECOVER_FILES.txt");
        assert!(det.observe(&change("created", &p, None), now).is_none());
    }

    #[test]
    fn kill_refuses_init_and_self() {
        assert!(kill(1).is_err());
        assert!(kill(std::process::id()).is_err());
    }
}
