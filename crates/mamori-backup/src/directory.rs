//! Plain backup directories and NAS shares: an Ed25519-signed manifest of file hashes, the
//! files changed since the last run, a restore test against the manifest, and signs of
//! encryption by ransomware.
//!
//! Only new or changed files (size or modification time differ from the manifest) are hashed
//! on each run; a sample of unchanged ones is copied out and re-hashed (the restore test), which
//! catches content that changed under an unchanged size and time. The manifest is replaced
//! only by a run that did not fail, so an encrypted share is compared against the last good
//! state on every run until someone looks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, Verifier};
use mamori_vault::{KeyPaths, SigningKey, VerifyingKey};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::BackupConfig;
use crate::content::{
    extension, is_ransom_extension, is_ransom_note, is_text_like, magic_matches, shannon_entropy,
    HIGH_ENTROPY, MIN_ENTROPY_SAMPLE, SAMPLE_BYTES,
};
use crate::error::{Error, IoContext, Result};
use crate::model::{CheckStatus, Outcome};

const MANIFEST_VERSION: u32 = 1;
/// At least this many suspicious files, or this share of the changed ones, is a burst.
const BURST_MIN_FILES: usize = 3;
const BURST_SHARE: f64 = 0.10;
/// At least this many files renamed to the same new extension is a mass extension change.
const RENAME_BURST: usize = 3;
/// Below this entropy a file was "plain" before; a rewrite above [`HIGH_ENTROPY`] is suspicious.
const LOW_ENTROPY: f64 = 6.0;
/// Paths named in one finding.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub name: String,
    pub root: String,
    pub created: DateTime<Utc>,
    pub files: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    pub sha256: String,
    /// Shannon entropy of the first [`SAMPLE_BYTES`], two decimals.
    pub entropy: f32,
}

/// Where the manifest of `name` and its signature are kept.
pub fn manifest_paths(data_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("backup-manifests");
    (
        dir.join(format!("{name}.manifest.json")),
        dir.join(format!("{name}.manifest.sig")),
    )
}

/// The key pair signing manifests: `<data_dir>/keys/backup-ed25519.{key,pub}`, in the vault's
/// format (PKCS#8 PEM, 0600), created on first use. Its own key so that the vault's key is
/// never needed by a job that walks file shares.
pub fn manifest_key(data_dir: &Path) -> Result<SigningKey> {
    let dir = data_dir.join("keys");
    let paths = KeyPaths {
        private: dir.join("backup-ed25519.key"),
        public: dir.join("backup-ed25519.pub"),
    };
    if !paths.private.exists() {
        let key = mamori_vault::generate_keypair();
        mamori_vault::write_keypair(&paths, &key, false)?;
        return Ok(key);
    }
    Ok(mamori_vault::load_signing_key(&paths.private)?)
}

fn sign_and_write(data_dir: &Path, m: &Manifest, key: &SigningKey) -> Result<String> {
    let (json_path, sig_path) = manifest_paths(data_dir, &m.name);
    let dir = json_path.parent().expect("has a parent");
    fs::create_dir_all(dir).at(dir)?;
    let bytes = serde_json::to_vec(m).expect("a manifest always serialises");
    let sig = key.sign(&bytes);
    write_atomic(&json_path, &bytes)?;
    write_atomic(&sig_path, hex::encode(sig.to_bytes()).as_bytes())?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    fs::rename(&tmp, path).at(path)
}

/// Why a stored manifest cannot be trusted.
#[derive(Debug)]
enum Untrusted {
    Missing,
    Bad(String),
}

fn load_manifest(data_dir: &Path, name: &str, key: &VerifyingKey) -> Result<Manifest, Untrusted> {
    let (json_path, sig_path) = manifest_paths(data_dir, name);
    let bytes = match fs::read(&json_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Untrusted::Missing),
        Err(e) => return Err(Untrusted::Bad(format!("{}: {e}", json_path.display()))),
    };
    let sig_hex = fs::read_to_string(&sig_path)
        .map_err(|e| Untrusted::Bad(format!("{}: {e}", sig_path.display())))?;
    let sig = hex::decode(sig_hex.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| Untrusted::Bad(format!("{} is not a signature", sig_path.display())))?;
    key.verify(&bytes, &sig).map_err(|_| {
        Untrusted::Bad(format!(
            "{} does not match its signature",
            json_path.display()
        ))
    })?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Untrusted::Bad(format!("{}: {e}", json_path.display())))?;
    if m.version != MANIFEST_VERSION || m.name != name {
        return Err(Untrusted::Bad(format!(
            "{} is version {} of {:?}",
            json_path.display(),
            m.version,
            m.name
        )));
    }
    Ok(m)
}

/// One file as found on this run.
struct Seen {
    entry: FileEntry,
    /// Hashed on this run (new or changed), so its sample was judged.
    fresh: bool,
    magic_ok: Option<bool>,
    sample_len: usize,
    /// The first bytes, to judge a renamed file by the extension it had.
    head: Vec<u8>,
}

/// Hashes a file and samples its head.
fn hash_file(path: &Path) -> std::io::Result<(String, f64, Option<Vec<u8>>, u64)> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut head = Vec::with_capacity(SAMPLE_BYTES.min(1 << 16));
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < SAMPLE_BYTES {
            let take = (SAMPLE_BYTES - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    let e = shannon_entropy(&head);
    Ok((hex::encode(h.finalize()), e, Some(head), total))
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Files under `root` (symlinks are not followed; they are counted), as `/`-separated
/// relative paths.
fn walk(
    root: &Path,
    out: &mut Vec<(String, PathBuf, fs::Metadata)>,
    errors: &mut Vec<String>,
    links: &mut usize,
) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for ent in rd {
            let ent = match ent {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            let path = ent.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            if meta.file_type().is_symlink() {
                *links += 1;
            } else if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .expect("walked from root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, path, meta));
            }
        }
    }
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

fn examples(v: &[String]) -> String {
    let mut s = v
        .iter()
        .take(EXAMPLES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if v.len() > EXAMPLES {
        s.push_str(&format!(" (+{})", v.len() - EXAMPLES));
    }
    s
}

pub(crate) fn check(
    cfg: &BackupConfig,
    data_dir: &Path,
    now: DateTime<Utc>,
    out: &mut Outcome,
) -> Result<()> {
    let root = Path::new(&cfg.repository);
    let r = &cfg.repository;
    if !root.is_dir() {
        out.fail(
            "dir.missing",
            format!("the backup directory {r} does not exist or is not a directory"),
            format!("バックアップディレクトリ {r} が存在しないか、ディレクトリではありません"),
        );
        return Ok(());
    }
    let key = manifest_key(data_dir)?;
    let prev = match load_manifest(data_dir, &cfg.name, &key.verifying_key()) {
        Ok(m) => Some(m),
        Err(Untrusted::Missing) => None,
        Err(Untrusted::Bad(why)) => {
            out.fail(
                "dir.manifest_untrusted",
                format!("the stored manifest cannot be trusted ({why}); every file is judged anew and the manifest is not replaced until someone looks"),
                format!("保存されたマニフェストが信頼できません({why})。全ファイルを改めて判定し、確認されるまでマニフェストは更新しません"),
            );
            None
        }
    };

    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut links = 0usize;
    walk(root, &mut files, &mut errors, &mut links);
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut unchanged: Vec<String> = Vec::new();
    for (rel, path, meta) in &files {
        let size = meta.len();
        let mtime = mtime_ns(meta);
        if let Some(p) = prev.as_ref().and_then(|m| m.files.get(rel)) {
            if p.size == size && p.mtime_ns == mtime {
                unchanged.push(rel.clone());
                seen.insert(
                    rel.clone(),
                    Seen {
                        entry: p.clone(),
                        fresh: false,
                        magic_ok: None,
                        sample_len: 0,
                        head: Vec::new(),
                    },
                );
                continue;
            }
        }
        match hash_file(path) {
            Ok((sha, ent, head, total)) => {
                let head = head.unwrap_or_default();
                let magic_ok = extension(file_name(rel)).and_then(|e| magic_matches(&e, &head));
                seen.insert(
                    rel.clone(),
                    Seen {
                        entry: FileEntry {
                            size: total,
                            mtime_ns: mtime,
                            sha256: sha,
                            entropy: (ent * 100.0).round() as f32 / 100.0,
                        },
                        fresh: true,
                        magic_ok,
                        sample_len: head.len(),
                        head: head[..head.len().min(32)].to_vec(),
                    },
                );
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }

    if !errors.is_empty() {
        out.warn(
            "dir.unreadable",
            format!(
                "{} files or folders could not be read: {}",
                errors.len(),
                examples(&errors)
            ),
            format!(
                "{}個のファイルまたはフォルダを読み取れませんでした: {}",
                errors.len(),
                examples(&errors)
            ),
        );
    }
    if links > 0 {
        out.note(
            "dir.symlinks_skipped",
            format!("{links} symbolic links were not followed"),
            format!("{links}個のシンボリックリンクはたどっていません"),
        );
    }

    // What changed since the last good manifest.
    let empty = BTreeMap::new();
    let before = prev.as_ref().map_or(&empty, |m| &m.files);
    let added: Vec<String> = seen
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect();
    let removed: Vec<String> = before
        .keys()
        .filter(|k| !seen.contains_key(*k))
        .cloned()
        .collect();
    let changed: Vec<String> = seen
        .iter()
        .filter(|(k, s)| s.fresh && before.get(*k).is_some_and(|p| p.sha256 != s.entry.sha256))
        .map(|(k, _)| k.clone())
        .collect();

    // Ransom notes: anywhere, new or old.
    let notes: Vec<String> = seen
        .keys()
        .filter(|k| is_ransom_note(file_name(k)))
        .cloned()
        .collect();
    if !notes.is_empty() {
        out.fail(
            "dir.ransom_note",
            format!("ransom-note files found in the backup: {} — the backup has probably been encrypted by ransomware", examples(&notes)),
            format!("バックアップ内に身代金要求ファイルがあります: {} — ランサムウェアにより暗号化された可能性が高いです", examples(&notes)),
        );
    }

    // Renames: a file gone and a new one with the same path plus an extension, or the same
    // stem with another extension.
    let removed_set: HashSet<&str> = removed.iter().map(String::as_str).collect();
    let removed_stems: HashMap<&str, &str> = removed
        .iter()
        .filter_map(|r| r.rsplit_once('.').map(|(stem, _)| (stem, r.as_str())))
        .collect();
    let mut renames: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut renamed_from: HashSet<String> = HashSet::new();
    let mut renamed_to: HashMap<String, String> = HashMap::new();
    for a in &added {
        let Some((stem, ext)) = a.rsplit_once('.') else {
            continue;
        };
        let from = if removed_set.contains(stem) {
            Some(stem)
        } else {
            removed_stems.get(stem).copied()
        };
        if let Some(from) = from {
            renames
                .entry(ext.to_ascii_lowercase())
                .or_default()
                .push(format!("{from} → {a}"));
            renamed_from.insert(from.to_string());
            renamed_to.insert(a.clone(), from.to_string());
        }
    }
    // Suspicious content among the files hashed on this run.
    let mut suspicious: Vec<String> = Vec::new();
    let mut magic_lost: Vec<String> = Vec::new();
    let mut high_entropy: Vec<String> = Vec::new();
    let mut ransom_ext: Vec<String> = Vec::new();
    for (rel, s) in seen.iter().filter(|(_, s)| s.fresh) {
        let ext = extension(file_name(rel));
        let mut why = false;
        if ext.as_deref().is_some_and(is_ransom_extension) {
            ransom_ext.push(rel.clone());
            why = true;
        }
        // `report.pdf.locked` is judged as the PDF it was.
        let inner = file_name(rel)
            .rsplit_once('.')
            .and_then(|(stem, _)| extension(stem))
            .and_then(|e| magic_matches(&e, &s.head));
        if s.magic_ok == Some(false) || (s.magic_ok.is_none() && inner == Some(false)) {
            magic_lost.push(rel.clone());
            why = true;
        }
        let judged =
            s.sample_len >= MIN_ENTROPY_SAMPLE && f64::from(s.entry.entropy) > HIGH_ENTROPY;
        let was = before
            .get(rel)
            .or_else(|| renamed_to.get(rel).and_then(|f| before.get(f)));
        let was_plain = was.is_some_and(|p| f64::from(p.entropy) < LOW_ENTROPY);
        if judged && (ext.as_deref().is_some_and(is_text_like) || was_plain) {
            high_entropy.push(rel.clone());
            why = true;
        }
        if why {
            suspicious.push(rel.clone());
        }
    }

    for (ext, list) in &renames {
        if list.len() >= RENAME_BURST || is_ransom_extension(ext) {
            out.fail(
                "dir.mass_extension_change",
                format!("{} files were renamed to the extension .{ext} since the last check ({}) — the pattern of ransomware encryption", list.len(), examples(list)),
                format!("前回のチェック以降、{}個のファイルの拡張子が .{ext} に変わりました({}) — ランサムウェアによる暗号化の特徴です", list.len(), examples(list)),
            );
        }
    }

    let fresh = seen.values().filter(|s| s.fresh).count();
    let burst = suspicious.len() >= BURST_MIN_FILES
        || (!suspicious.is_empty()
            && suspicious.len() as f64 >= BURST_SHARE * fresh.max(1) as f64
            && fresh >= BURST_MIN_FILES);
    let kinds = [
        (
            &magic_lost,
            "lost the file signature its extension promises (e.g. a PDF not starting %PDF)",
            "拡張子に対応するファイル署名が失われています(例: %PDFで始まらないPDF)",
        ),
        (
            &high_entropy,
            "were rewritten with random-looking (encrypted) content",
            "ランダムな(暗号化された)内容に書き換えられています",
        ),
        (
            &ransom_ext,
            "carry an extension ransomware appends",
            "ランサムウェアが付ける拡張子になっています",
        ),
    ];
    if burst {
        let mut en = format!(
            "{} files written since the last check look encrypted:",
            suspicious.len()
        );
        let mut ja = format!(
            "前回のチェック以降に書き込まれた{}個のファイルが暗号化されているように見えます:",
            suspicious.len()
        );
        for (list, e, j) in kinds {
            if !list.is_empty() {
                en.push_str(&format!(" {} {e} ({});", list.len(), examples(list)));
                ja.push_str(&format!(" {}個が{j}({});", list.len(), examples(list)));
            }
        }
        en.pop();
        ja.pop();
        out.fail("dir.encryption_burst", en, ja);
    } else {
        for (list, e, j) in kinds {
            if !list.is_empty() {
                out.warn(
                    "dir.suspicious_file",
                    format!("{} file(s) {e}: {}", list.len(), examples(list)),
                    format!("{}個のファイルが{j}: {}", list.len(), examples(list)),
                );
            }
        }
    }

    // Mass deletion and size collapse, against the last good manifest.
    let deleted: Vec<String> = removed
        .iter()
        .filter(|r| !renamed_from.contains(*r))
        .cloned()
        .collect();
    let shrink = f64::from(cfg.shrink_percent) / 100.0;
    if !before.is_empty() && deleted.len() as f64 > shrink * before.len() as f64 {
        out.fail(
            "dir.mass_deletion",
            format!(
                "{} of {} files were deleted since the last check ({})",
                deleted.len(),
                before.len(),
                examples(&deleted)
            ),
            format!(
                "前回のチェック以降、{}個中{}個のファイルが削除されました({})",
                before.len(),
                deleted.len(),
                examples(&deleted)
            ),
        );
    }
    let bytes_before: u64 = before.values().map(|f| f.size).sum();
    let bytes_now: u64 = seen.values().map(|s| s.entry.size).sum();
    if bytes_before > 0 && (bytes_now as f64) < (1.0 - shrink) * bytes_before as f64 {
        out.fail(
            "dir.size_collapsed",
            format!("the backup shrank from {bytes_before} to {bytes_now} bytes since the last check"),
            format!("前回のチェック以降、バックアップの容量が{bytes_before}バイトから{bytes_now}バイトに減りました"),
        );
    }

    // Freshness: the newest file must be recent enough.
    let newest = seen.values().map(|s| s.entry.mtime_ns).max();
    match newest.and_then(|ns| DateTime::from_timestamp_nanos(ns).into()) {
        None => out.fail(
            "dir.empty",
            format!("the backup directory {r} holds no files"),
            format!("バックアップディレクトリ {r} にファイルがありません"),
        ),
        Some(t) => {
            crate::check::judge_age(
                out,
                "dir.stale",
                t,
                now,
                cfg.max_age(),
                "the newest file",
                "最新のファイル",
            );
            out.set("newest", t.to_rfc3339());
        }
    }

    // Restore test: copy a sample of unchanged files out and compare with the signed hashes.
    let share = (unchanged.len() * usize::from(cfg.read_data_percent)).div_ceil(100);
    let n = cfg.restore_sample.max(share).min(unchanged.len());
    let mut sample = unchanged.clone();
    sample.shuffle(&mut rand::thread_rng());
    sample.truncate(n);
    sample.sort();
    if n > 0 {
        restore_test(root, &sample, &seen, out)?;
    } else if cfg.restore_sample > 0 && prev.is_some() {
        out.note(
            "restore.nothing_to_compare",
            "no file is unchanged since the last manifest, so none could be compared in the restore test",
            "前回のマニフェスト以降に変更のないファイルがないため、リストアテストで比較できるファイルがありません",
        );
    }

    if prev.is_some() && (!added.is_empty() || !changed.is_empty() || !removed.is_empty()) {
        out.note(
            "dir.changed",
            format!(
                "since the last check: {} files added, {} changed, {} removed",
                added.len(),
                changed.len(),
                removed.len()
            ),
            format!(
                "前回のチェック以降: 追加{}件、変更{}件、削除{}件",
                added.len(),
                changed.len(),
                removed.len()
            ),
        );
    }
    out.set("files", seen.len());
    out.set("bytes", bytes_now);
    out.set("added", added.len());
    out.set("changed", changed.len());
    out.set("removed", removed.len());
    out.set("hashed", fresh);
    out.set("restored", n);
    out.set(
        "changed_files",
        changed.iter().take(50).cloned().collect::<Vec<_>>(),
    );
    out.set("first_run", prev.is_none());

    let unchanged_since = prev.is_some()
        && added.is_empty()
        && changed.is_empty()
        && removed.is_empty()
        && seen.values().all(|s| !s.fresh);
    if unchanged_since {
        // Nothing to record: the signed manifest already says exactly this.
        out.set("manifest_updated", false);
    } else if out.status() != CheckStatus::Failed {
        let m = Manifest {
            version: MANIFEST_VERSION,
            name: cfg.name.clone(),
            root: cfg.repository.clone(),
            created: Utc::now(),
            files: seen.into_iter().map(|(k, s)| (k, s.entry)).collect(),
        };
        let digest = sign_and_write(data_dir, &m, &key)?;
        out.set("manifest_sha256", digest);
        out.set("manifest_updated", true);
    } else {
        out.set("manifest_updated", false);
    }
    Ok(())
}

fn restore_test(
    root: &Path,
    sample: &[String],
    seen: &BTreeMap<String, Seen>,
    out: &mut Outcome,
) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("mamori-restore-")
        .tempdir()
        .map_err(|e| Error::Io {
            path: std::env::temp_dir(),
            source: e,
        })?;
    let mut mismatched = Vec::new();
    let mut failed = Vec::new();
    for (i, rel) in sample.iter().enumerate() {
        let src = root.join(rel);
        let dst = tmp.path().join(format!("{i}"));
        let copied = fs::copy(&src, &dst).and_then(|_| hash_file(&dst));
        match copied {
            Ok((sha, ..)) if sha == seen[rel].entry.sha256 => {}
            Ok(_) => mismatched.push(rel.clone()),
            Err(e) => failed.push(format!("{rel}: {e}")),
        }
        let _ = fs::remove_file(&dst);
    }
    if !mismatched.is_empty() {
        out.fail(
            "restore.mismatch",
            format!("restore test: {} of {} restored files differ from the signed manifest although their size and time did not change: {}", mismatched.len(), sample.len(), examples(&mismatched)),
            format!("リストアテスト: 復元した{}個中{}個のファイルが、サイズと更新日時は変わっていないのに署名付きマニフェストと一致しません: {}", sample.len(), mismatched.len(), examples(&mismatched)),
        );
    }
    if !failed.is_empty() {
        out.fail(
            "restore.failed",
            format!(
                "restore test: {} files could not be restored: {}",
                failed.len(),
                examples(&failed)
            ),
            format!(
                "リストアテスト: {}個のファイルを復元できませんでした: {}",
                failed.len(),
                examples(&failed)
            ),
        );
    }
    out.set("restore_mismatched", mismatched);
    Ok(())
}
