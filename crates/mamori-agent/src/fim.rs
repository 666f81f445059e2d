//! File integrity monitoring: inotify (through `notify`) for changes as they happen, a periodic
//! hash scan for what events miss (a full inotify queue, changes while the agent was stopped),
//! and a baseline — SHA-256, size, mode, owner, inode per file — that survives restarts.
//!
//! The baseline file is saved by the collector only after the batch holding the changes is in
//! the disk buffer, so a crash never forgets a change it did not report.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::FimConfig;
use crate::{Error, Result};

pub const BASELINE_FILE: &str = "fim-baseline.json";
/// Quiet time after a path's last event before it is hashed.
pub const SETTLE: Duration = Duration::from_millis(100);
/// A path written to continuously is still looked at this often.
pub const MAX_SETTLE: Duration = Duration::from_secs(1);

/// What is known of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// `None` when the file is larger than `max_hash_bytes` or unreadable.
    pub sha256: Option<String>,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub ino: u64,
}

/// One change found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `created`, `modified`, `deleted`, `renamed`, `permissions_changed`, `owner_changed`.
    pub action: &'static str,
    pub path: String,
    /// For `renamed`: the old path.
    pub previous_path: Option<String>,
    pub before: Option<FileState>,
    pub after: Option<FileState>,
}

#[cfg(unix)]
fn state_of(path: &Path, max_hash: u64) -> Option<FileState> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    let sha256 = (m.len() <= max_hash).then(|| hash_file(path)).flatten();
    Some(FileState {
        sha256,
        size: m.len(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        ino: m.ino(),
    })
}

#[cfg(not(unix))]
fn state_of(path: &Path, max_hash: u64) -> Option<FileState> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    let sha256 = (m.len() <= max_hash).then(|| hash_file(path)).flatten();
    Some(FileState {
        sha256,
        size: m.len(),
        mode: 0,
        uid: 0,
        gid: 0,
        ino: 0,
    })
}

/// SHA-256 (hex) of a file's content.
pub fn hash_file(path: &Path) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return None,
        }
    }
    Some(hex::encode(h.finalize()))
}

/// Compares two states of one path.
pub fn compare(
    path: &str,
    before: Option<&FileState>,
    after: Option<&FileState>,
) -> Option<Change> {
    let action = match (before, after) {
        (None, None) => return None,
        (None, Some(_)) => "created",
        (Some(_), None) => "deleted",
        (Some(b), Some(a)) => {
            if b.sha256 != a.sha256 || b.size != a.size || b.ino != a.ino {
                "modified"
            } else if b.mode != a.mode {
                "permissions_changed"
            } else if b.uid != a.uid || b.gid != a.gid {
                "owner_changed"
            } else {
                return None;
            }
        }
    };
    Some(Change {
        action,
        path: path.to_owned(),
        previous_path: None,
        before: before.cloned(),
        after: after.cloned(),
    })
}

/// The watcher and the baseline.
pub struct Fim {
    cfg: FimConfig,
    file: PathBuf,
    baseline: BTreeMap<String, FileState>,
    dirty: bool,
    _watcher: Option<notify::RecommendedWatcher>,
    rx: Option<mpsc::Receiver<notify::Result<notify::Event>>>,
    /// Paths with events not looked at yet: first event, last event, closed after writing.
    /// Per path: first event, last event, closed after writing, created (a new file is hashed
    /// once its writer closes it, not after a pause between `open` and `write`).
    settling: BTreeMap<PathBuf, (Instant, Instant, bool, bool)>,
    /// Paths over the `max_files` limit were seen (reported once).
    pub over_limit: bool,
}

impl Fim {
    /// Loads the baseline from `state_dir` (or takes a first one, reporting nothing).
    pub fn open(cfg: FimConfig, state_dir: &Path) -> Result<Fim> {
        let file = state_dir.join(BASELINE_FILE);
        let (baseline, fresh) = match std::fs::read(&file) {
            Ok(b) => (
                serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
                    path: file.clone(),
                    offset: e.column() as u64,
                    reason: e.to_string(),
                })?,
                false,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), true),
            Err(e) => {
                return Err(Error::Io {
                    path: file,
                    source: e,
                })
            }
        };
        let mut f = Fim {
            cfg,
            file,
            baseline,
            dirty: false,
            _watcher: None,
            rx: None,
            settling: BTreeMap::new(),
            over_limit: false,
        };
        if fresh {
            let mut ignore = Vec::new();
            f.scan(&mut ignore);
            f.save()?;
        }
        Ok(f)
    }

    /// Starts inotify watches on every configured path (recursive).
    pub fn watch(&mut self) {
        use notify::Watcher as _;
        let (tx, rx) = mpsc::channel();
        let mut w = match notify::recommended_watcher(tx) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot start inotify; relying on the periodic scan");
                return;
            }
        };
        for p in &self.cfg.paths {
            if let Err(e) = w.watch(p, notify::RecursiveMode::Recursive) {
                tracing::warn!(path = %p.display(), error = %e, "cannot watch path; the periodic scan still covers it");
            }
        }
        self._watcher = Some(w);
        self.rx = Some(rx);
    }

    fn watched(&self, p: &Path) -> bool {
        self.cfg.paths.iter().any(|w| p.starts_with(w))
    }

    /// Changes reported by inotify. A path is looked at once its events have been quiet for
    /// [`SETTLE`] (or its writer closed it, or it has been busy for [`MAX_SETTLE`]), so a file
    /// being written is hashed when complete, not half-way; a newly created file waits for its
    /// writer's close (or [`MAX_SETTLE`]): a pause between `open` and `write` on a loaded host
    /// made the creation carry the hash of an empty file.
    pub fn poll(&mut self, out: &mut Vec<Change>) {
        let Some(rx) = &self.rx else {
            return;
        };
        let now = Instant::now();
        let mut rescan = false;
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Ok(ev) => {
                    if ev.need_rescan() {
                        rescan = true;
                    }
                    let closed = matches!(
                        ev.kind,
                        notify::EventKind::Access(notify::event::AccessKind::Close(
                            notify::event::AccessMode::Write
                        ))
                    );
                    if matches!(ev.kind, notify::EventKind::Access(_)) && !closed {
                        continue;
                    }
                    let created = matches!(ev.kind, notify::EventKind::Create(_));
                    for p in ev.paths {
                        let e = self.settling.entry(p).or_insert((now, now, false, false));
                        e.1 = now;
                        e.2 |= closed;
                        e.3 |= created;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "inotify error; scanning");
                    rescan = true;
                }
            }
        }
        if rescan {
            self.settling.clear();
            self.scan(out);
            return;
        }
        let ready: Vec<PathBuf> = self
            .settling
            .iter()
            .filter(|(_, (first, last, closed, created))| {
                *closed || (!*created && now - *last >= SETTLE) || now - *first >= MAX_SETTLE
            })
            .map(|(p, _)| p.clone())
            .collect();
        let mut changes = Vec::new();
        for p in ready {
            self.settling.remove(&p);
            if !self.watched(&p) {
                continue;
            }
            if p.is_dir() {
                // A directory appeared (or was moved in): its files are new.
                self.walk_into(&p, &mut changes);
                continue;
            }
            let key = p.to_string_lossy().into_owned();
            let after = state_of(&p, self.cfg.max_hash_bytes);
            if after.is_none() {
                // Gone (or not a file): its entry and, for a removed directory, those under it.
                let prefix = format!("{key}/");
                let gone: Vec<String> = self
                    .baseline
                    .range(key.clone()..)
                    .take_while(|(k, _)| **k == key || k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in gone {
                    self.apply(&k, None, &mut changes);
                }
                continue;
            }
            self.apply(&key, after, &mut changes);
        }
        out.extend(pair_renames(changes));
    }

    fn walk_into(&mut self, dir: &Path, changes: &mut Vec<Change>) {
        let mut files = Vec::new();
        walk(dir, self.cfg.max_files, &mut files);
        for f in files {
            let after = state_of(&f, self.cfg.max_hash_bytes);
            self.apply(&f.to_string_lossy(), after, changes);
        }
    }

    /// Records `after` for `key`, reporting a change.
    fn apply(&mut self, key: &str, after: Option<FileState>, out: &mut Vec<Change>) {
        if after.is_some()
            && !self.baseline.contains_key(key)
            && self.baseline.len() >= self.cfg.max_files
        {
            if !self.over_limit {
                tracing::warn!(
                    limit = self.cfg.max_files,
                    "fim.max_files reached; new files are not watched"
                );
                self.over_limit = true;
            }
            return;
        }
        let before = self.baseline.get(key);
        if let Some(c) = compare(key, before, after.as_ref()) {
            out.push(c);
            self.dirty = true;
        }
        match after {
            Some(a) => {
                if self.baseline.get(key) != Some(&a) {
                    self.baseline.insert(key.to_owned(), a);
                }
            }
            None => {
                self.baseline.remove(key);
            }
        }
    }

    /// Hashes every watched file and compares it with the baseline.
    pub fn scan(&mut self, out: &mut Vec<Change>) {
        let mut files = Vec::new();
        for p in self.cfg.paths.clone() {
            walk(&p, self.cfg.max_files, &mut files);
        }
        let seen: BTreeSet<String> = files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut changes = Vec::new();
        for f in &files {
            let after = state_of(f, self.cfg.max_hash_bytes);
            self.apply(&f.to_string_lossy(), after, &mut changes);
        }
        let gone: Vec<String> = self
            .baseline
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.apply(&k, None, &mut changes);
        }
        out.extend(pair_renames(changes));
    }

    /// Writes the baseline if it changed.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty && self.file.exists() {
            return Ok(());
        }
        let b = serde_json::to_vec(&self.baseline).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::spool::write_atomic(&self.file, &b)?;
        self.dirty = false;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.baseline.len()
    }

    pub fn is_empty(&self) -> bool {
        self.baseline.is_empty()
    }
}

/// A deletion and a creation of the same inode *and the same content* in one round are a
/// rename. The inode alone is not enough: a file system reuses a deleted file's inode for the
/// next file created (a deleted `gone` and a new `shell.php` must stay a deletion and a
/// creation).
fn pair_renames(mut changes: Vec<Change>) -> Vec<Change> {
    let ino_of = |s: &Option<FileState>| s.as_ref().map_or(0, |s| s.ino);
    let mut created: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        if c.action == "created" && ino_of(&c.after) != 0 {
            created.insert(ino_of(&c.after), i);
        }
    }
    let mut merged = vec![false; changes.len()];
    for j in 0..changes.len() {
        if changes[j].action != "deleted" {
            continue;
        }
        let ino = ino_of(&changes[j].before);
        let hash = |s: &Option<FileState>| s.as_ref().and_then(|s| s.sha256.clone());
        let Some(&i) = created.get(&ino) else {
            continue;
        };
        if hash(&changes[i].after).is_none() || hash(&changes[i].after) != hash(&changes[j].before)
        {
            continue;
        }
        created.remove(&ino);
        merged[i] = true;
        let (path, after) = (changes[i].path.clone(), changes[i].after.clone());
        let d = &mut changes[j];
        d.action = "renamed";
        d.previous_path = Some(std::mem::replace(&mut d.path, path));
        d.after = after;
    }
    changes
        .into_iter()
        .zip(merged)
        .filter(|(_, m)| !m)
        .map(|(c, _)| c)
        .collect()
}

/// Regular files under `p` (or `p` itself), depth-first, at most `max`.
fn walk(p: &Path, max: usize, out: &mut Vec<PathBuf>) {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return;
    };
    if m.is_file() {
        if out.len() < max {
            out.push(p.to_owned());
        }
        return;
    }
    if !m.is_dir() {
        return;
    }
    let Ok(rd) = std::fs::read_dir(p) else {
        return;
    };
    let mut ents: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    ents.sort();
    for e in ents {
        if out.len() >= max {
            return;
        }
        walk(&e, max, out);
    }
}

/// The ECS fields of a change.
pub fn change_fields(c: &Change, host: &str) -> serde_json::Value {
    use serde_json::json;
    let p = Path::new(&c.path);
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
    let ext = name.as_deref().and_then(mamori_backup::content::extension);
    let etype = match c.action {
        "created" => "creation",
        "deleted" => "deletion",
        _ => "change",
    };
    let cur = c.after.as_ref().or(c.before.as_ref());
    let mut file = json!({
        "path": c.path,
        "name": name,
        "directory": p.parent().map(|d| d.to_string_lossy().into_owned()),
    });
    if let Some(e) = ext {
        file["extension"] = json!(e);
    }
    if let Some(s) = cur {
        file["size"] = json!(s.size);
        file["mode"] = json!(format!("{:04o}", s.mode));
        file["uid"] = json!(s.uid.to_string());
        file["gid"] = json!(s.gid.to_string());
        file["inode"] = json!(s.ino.to_string());
    }
    if let Some(h) = c.after.as_ref().and_then(|a| a.sha256.as_ref()) {
        file["hash"] = json!({ "sha256": h });
    }
    let mut before = json!({});
    if let Some(b) = &c.before {
        before = json!({
            "sha256": b.sha256,
            "size": b.size,
            "mode": format!("{:04o}", b.mode),
            "uid": b.uid.to_string(),
            "gid": b.gid.to_string(),
        });
    }
    let short = |h: Option<&String>| h.map_or("-".to_owned(), |h| h[..h.len().min(12)].to_owned());
    let msg = format!(
        "file {}: {}{} (sha256 {} -> {})",
        c.action,
        c.previous_path
            .as_ref()
            .map(|pp| format!("{pp} -> "))
            .unwrap_or_default(),
        c.path,
        short(c.before.as_ref().and_then(|b| b.sha256.as_ref())),
        short(c.after.as_ref().and_then(|a| a.sha256.as_ref())),
    );
    let mut v = json!({
        "@timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "message": msg,
        "event": {
            "kind": "event",
            "category": "file",
            "type": etype,
            "action": c.action,
            "module": "fim",
            "dataset": "mamori.fim",
        },
        "host": { "name": host },
        "file": file,
        "fim": { "before": before },
    });
    if let Some(pp) = &c.previous_path {
        v["fim"]["previous_path"] = json!(pp);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(p: &Path) -> FimConfig {
        FimConfig {
            paths: vec![p.to_owned()],
            ..FimConfig::default()
        }
    }

    #[test]
    fn baseline_scan_reports_each_kind_once_and_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("w");
        let st = d.path().join("state");
        std::fs::create_dir_all(&w).unwrap();
        std::fs::create_dir_all(&st).unwrap();
        std::fs::write(w.join("passwd"), "root:x:0:0\n").unwrap();
        std::fs::write(w.join("gone"), "x").unwrap();
        let mut f = Fim::open(cfg(&w), &st).unwrap();
        assert_eq!(f.len(), 2);
        let mut out = Vec::new();
        f.scan(&mut out);
        assert!(out.is_empty(), "a first baseline reports nothing: {out:?}");
        let old = hash_file(&w.join("passwd")).unwrap();
        std::fs::write(w.join("passwd"), "root:x:0:0\nevil:x:0:0\n").unwrap();
        std::fs::remove_file(w.join("gone")).unwrap();
        std::fs::write(w.join("shell.php"), "<?php system($_GET[1]); ?>").unwrap();
        f.scan(&mut out);
        f.save().unwrap();
        let mut acts: Vec<(&str, &str)> = out
            .iter()
            .map(|c| (c.action, c.path.rsplit('/').next().unwrap()))
            .collect();
        acts.sort();
        assert_eq!(
            acts,
            [
                ("created", "shell.php"),
                ("deleted", "gone"),
                ("modified", "passwd")
            ]
        );
        let m = out.iter().find(|c| c.action == "modified").unwrap();
        assert_eq!(
            m.before.as_ref().unwrap().sha256.as_deref(),
            Some(old.as_str())
        );
        assert_ne!(
            m.after.as_ref().unwrap().sha256,
            m.before.as_ref().unwrap().sha256
        );
        // The baseline survives a restart: nothing new to report.
        let mut f = Fim::open(cfg(&w), &st).unwrap();
        out.clear();
        f.scan(&mut out);
        assert!(out.is_empty(), "{out:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(w.join("passwd"), std::fs::Permissions::from_mode(0o666))
                .unwrap();
            f.scan(&mut out);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].action, "permissions_changed");
        }
    }

    #[test]
    fn inotify_sees_changes_and_renames() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("w");
        std::fs::create_dir_all(&w).unwrap();
        std::fs::write(w.join("a.txt"), "hello").unwrap();
        let mut f = Fim::open(cfg(&w), d.path()).unwrap();
        f.watch();
        std::fs::rename(w.join("a.txt"), w.join("a.txt.locked")).unwrap();
        std::fs::write(w.join("authorized_keys"), "ssh-ed25519 AAAA x").unwrap();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while out.len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            f.poll(&mut out);
        }
        let r = out.iter().find(|c| c.action == "renamed").expect("rename");
        assert!(r.path.ends_with("a.txt.locked"));
        assert!(r.previous_path.as_deref().unwrap().ends_with("a.txt"));
        let c = out.iter().find(|c| c.action == "created").expect("create");
        let v = change_fields(c, "h1");
        assert_eq!(v["event"]["category"], "file");
        assert_eq!(v["file"]["name"], "authorized_keys");
        assert_eq!(v["file"]["hash"]["sha256"].as_str().unwrap().len(), 64);
    }
}
