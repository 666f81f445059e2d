//! Evidence export: a tar bundle that a third party can check offline, with Mamori
//! (`mamori evidence verify`) or with `sha256sum -c` and `openssl` alone.
//!
//! **Invariant: the bundle's paths are ours, never the data's.** Source names only ever appear
//! in file names after [`safe_component`], every path is `<root>/<fixed dir>/<component>`, and
//! the output is created with `create_new` on a temporary name and renamed into place, so an
//! export cannot follow a symlink or write outside its target.

mod spool;
#[cfg(test)]
mod tests;

use std::fs::{self, OpenOptions};
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use ed25519_dalek::Signer;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::{AuditAction, AuditEntry};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, RecordKind};
use crate::head::{self, SignedTreeHead};
use crate::keys;
use crate::merkle::{Hash, MerkleTree};
use crate::vault::{for_each_record, sync_dir, Vault, HEADS_FILE};
use spool::Spool;

/// An incident whose timeline the caller supplies (the vault knows nothing about incidents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRef {
    pub id: u64,
    pub title: String,
    pub timeline_csv: Vec<u8>,
    pub timeline_jsonl: Vec<u8>,
}

/// Which records to export. Event records match when all given conditions hold; audit
/// records (the chain of custody) are always exported in full.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportFilter {
    /// Receipt time ≥ `from`.
    pub from: Option<DateTime<Utc>>,
    /// Receipt time < `to`.
    pub to: Option<DateTime<Utc>>,
    /// Case-insensitive match on the host part of the source: the authority of a URL-like
    /// source (`udp://HOST:514/…`), else the text before the first `/` or `:port`.
    pub host: Option<String>,
    /// Prefix match on the source.
    pub source: Option<String>,
    /// Only records sealed from these event-store seqs (an incident's events; see
    /// [`crate::event_source`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_seqs: Option<std::collections::BTreeSet<u64>>,
}

impl ExportFilter {
    pub fn matches(&self, received_at_ns: i64, source: &str) -> bool {
        let t = Utc.timestamp_nanos(received_at_ns);
        self.from.is_none_or(|f| t >= f)
            && self.to.is_none_or(|e| t < e)
            && self.source.as_deref().is_none_or(|s| source.starts_with(s))
            && self
                .host
                .as_deref()
                .is_none_or(|h| host_of(source).eq_ignore_ascii_case(h))
            && self.store_seqs.as_ref().is_none_or(|set| {
                crate::vault::store_seq_of(source).is_some_and(|s| set.contains(&s))
            })
    }
}

/// The host part of a source string (see [`ExportFilter::host`]).
pub fn host_of(source: &str) -> &str {
    let source = source.split('#').next().unwrap_or(source);
    let rest = source.split_once("://").map_or(source, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// What to export and who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub incident: Option<IncidentRef>,
    pub filter: ExportFilter,
    /// Recorded in the chain-of-custody entry for this export.
    pub actor: String,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub path: PathBuf,
    pub records: u64,
    pub audit_records: u64,
    pub tree_size: u64,
    pub root_hash: String,
    pub files: usize,
    pub bundle_sha256: String,
}

/// Entry names inside the bundle, relative to its root directory.
pub(crate) mod names {
    pub(crate) const README: &str = "README.txt";
    pub(crate) const MANIFEST: &str = "MANIFEST.sha256";
    pub(crate) const MANIFEST_SIG: &str = "MANIFEST.sha256.sig";
    pub(crate) const PUBKEY: &str = "vault-public-key.pem";
    pub(crate) const EXPORT_JSON: &str = "export.json";
    pub(crate) const HEAD_MSG: &str = "head/tree-head.msg";
    pub(crate) const HEAD_SIG: &str = "head/tree-head.sig";
    pub(crate) const HEAD_JSON: &str = "head/tree-head.json";
    pub(crate) const RECORDS_BIN: &str = "records/records.bin";
    pub(crate) const RECORDS_JSONL: &str = "records/records.jsonl";
    pub(crate) const AUDIT_BIN: &str = "custody/audit.bin";
    pub(crate) const AUDIT_JSONL: &str = "custody/audit.jsonl";
    pub(crate) const INCLUSION: &str = "proofs/inclusion.jsonl";
    pub(crate) const CONSISTENCY: &str = "proofs/consistency.jsonl";
    pub(crate) const VERIFY_PY: &str = "verify_proofs.py";
}

impl Vault {
    /// Write an evidence bundle to `out` (which must not exist). First records a custody entry
    /// for the export and signs a head covering it, so the bundle contains its own custody
    /// record. Refuses to export from a vault that does not verify.
    pub fn export(
        &mut self,
        req: &ExportRequest,
        out: &Path,
        now: DateTime<Utc>,
    ) -> Result<ExportSummary> {
        if let (Some(f), Some(t)) = (req.filter.from, req.filter.to) {
            if f >= t {
                return Err(Error::InvalidRequest(format!(
                    "--from {f} is not before --to {t}"
                )));
            }
        }
        if fs::symlink_metadata(out).is_ok() {
            return Err(Error::AlreadyExists {
                what: "export file",
                path: out.to_path_buf(),
            });
        }
        let out_name = out
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::InvalidRequest(format!("{} is not a file name", out.display())))?
            .to_string();
        let dir = self.config().dir.clone();
        let public = self.verifying_key();
        let report = crate::verify(&dir, &public)?;
        if let Some(f) = report.first() {
            return Err(Error::InvalidRequest(format!(
                "the vault does not verify, refusing to export: {f}"
            )));
        }

        let detail = serde_json::json!({
            "incident": req.incident.as_ref().map(|i| i.id),
            "filter": &req.filter,
            "file": out_name,
        });
        self.append_audit(
            &AuditEntry::new(
                now,
                req.actor.clone(),
                AuditAction::EvidenceExport,
                out_name.clone(),
                detail.to_string(),
            ),
            now,
        )?;
        let sth = self.checkpoint(now)?;

        // A stale spool of an export killed half-way (ours by name; never a symlink's target).
        let spool_dir = out.with_file_name(format!(".{out_name}.spool"));
        if fs::symlink_metadata(&spool_dir).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(&spool_dir).at(&spool_dir)?;
        }
        let mut sel = Selection {
            spool: Spool::create(spool_dir)?,
            proved: Vec::new(),
            timeline: Vec::new(),
            records: 0,
            audit_records: 0,
        };
        // Memory: 32 bytes per leaf of the vault (the leaves, then the tree: about two hashes
        // per leaf) and 40 per exported record (its seq, and its place for the timeline).
        let mut leaves: Vec<Hash> = Vec::with_capacity(sth.tree_size as usize);
        for_each_record(&dir, |segment, offset, frame, bytes| {
            if frame.seq >= sth.tree_size {
                return Ok(());
            }
            let leaf = frame.leaf();
            leaves.push(leaf);
            let source = String::from_utf8_lossy(frame.source);
            match frame.kind() {
                Some(RecordKind::Audit) => sel.add_audit(frame, bytes, segment, offset, leaf),
                Some(RecordKind::Event) if req.filter.matches(frame.received_at_ns, &source) => {
                    sel.add_event(frame, bytes, segment, offset, leaf, &source)
                }
                _ => Ok(()),
            }
        })?;
        if leaves.len() as u64 != sth.tree_size {
            return Err(Error::Corrupt {
                path: dir,
                offset: 0,
                reason: "record count changed during export".into(),
            });
        }
        let tree = MerkleTree::from_leaves(leaves);
        let heads = read_all_heads(&dir, &public)?;
        let (records, audit_records) = (sel.records, sel.audit_records);
        let mut spool = build_files(req, &sth, &tree, &heads, sel, &public, now)?;
        drop(tree);
        let root = format!("mamori-evidence-{}", now.format("%Y%m%dT%H%M%SZ"));
        let manifest = manifest(&spool);
        let manifest_sig = self.signing_key().sign(manifest.as_bytes()).to_bytes();
        spool.write(names::MANIFEST, manifest.as_bytes())?;
        spool.write(names::MANIFEST_SIG, &manifest_sig)?;
        spool.flush()?;
        let bundle_sha256 = write_tar(out, &root, &spool, now)?;
        Ok(ExportSummary {
            path: out.to_path_buf(),
            records,
            audit_records,
            tree_size: sth.tree_size,
            root_hash: hex::encode(sth.root_hash),
            files: spool.files().count(),
            bundle_sha256,
        })
    }
}

/// The exported records, spooled to disk as they are read.
struct Selection {
    spool: Spool,
    /// Seqs of every exported record, for proofs (their leaves are in the tree).
    proved: Vec<u64>,
    /// `(received_at, seq, offset, len)` of each event record in `records.bin`, for the
    /// timeline in receipt order.
    timeline: Vec<(i64, u64, u64, u32)>,
    records: u64,
    audit_records: u64,
}

fn ts_ns(ns: i64) -> String {
    Utc.timestamp_nanos(ns)
        .to_rfc3339_opts(SecondsFormat::Nanos, true)
}

impl Selection {
    fn add_event(
        &mut self,
        f: &format::Frame<'_>,
        bytes: &[u8],
        segment: u32,
        offset: u64,
        leaf: Hash,
        source: &str,
    ) -> Result<()> {
        let file = format!("records/by-source/{}.log", safe_component(source));
        let payload = payload_json(f.payload);
        let line = serde_json::json!({
            "seq": f.seq,
            "received_at": ts_ns(f.received_at_ns),
            "source": source,
            "segment": segment,
            "offset": offset,
            "leaf_hash": hex::encode(leaf),
            "payload": payload,
            "file": file,
        });
        self.spool.write(names::RECORDS_JSONL, &json_line(&line))?;
        let at = self.spool.len(names::RECORDS_BIN);
        self.spool.write(names::RECORDS_BIN, bytes)?;
        self.timeline
            .push((f.received_at_ns, f.seq, at, bytes.len() as u32));
        self.proved.push(f.seq);
        self.records += 1;
        self.spool.write(&file, f.payload)?;
        if !f.payload.ends_with(b"\n") {
            self.spool.write(&file, b"\n")?;
        }
        Ok(())
    }

    fn add_audit(
        &mut self,
        f: &format::Frame<'_>,
        bytes: &[u8],
        segment: u32,
        offset: u64,
        leaf: Hash,
    ) -> Result<()> {
        let entry = AuditEntry::from_payload(f.payload);
        let line = serde_json::json!({
            "seq": f.seq,
            "recorded_at": ts_ns(f.received_at_ns),
            "segment": segment,
            "offset": offset,
            "leaf_hash": hex::encode(leaf),
            "entry": entry,
            "raw": if entry.is_none() { Some(payload_json(f.payload)) } else { None },
        });
        self.spool.write(names::AUDIT_JSONL, &json_line(&line))?;
        self.spool.write(names::AUDIT_BIN, bytes)?;
        self.proved.push(f.seq);
        self.audit_records += 1;
        Ok(())
    }
}

fn payload_json(p: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(p) {
        Ok(s) => serde_json::json!({ "utf8": s }),
        Err(_) => serde_json::json!({ "hex": hex::encode(p) }),
    }
}

fn json_line(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).expect("json to memory");
    out.push(b'\n');
    out
}

/// A source name as one safe path component: `[A-Za-z0-9._-]` only, no leading dot, bounded
/// length, plus a short hash so distinct sources never collide after sanitising.
pub fn safe_component(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    let tag = hex::encode(&Sha256::digest(s.as_bytes())[..4]);
    if out.is_empty() {
        out.push_str("source");
    }
    format!("{out}-{tag}")
}

/// Every valid head in the heads file, in order.
fn read_all_heads(dir: &Path, key: &ed25519_dalek::VerifyingKey) -> Result<Vec<SignedTreeHead>> {
    let path = dir.join(HEADS_FILE);
    let bytes = fs::read(&path).at(&path)?;
    let file = head::parse_heads_file(&bytes).map_err(|e| Error::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: format!("{e:?}"),
    })?;
    Ok(file
        .heads
        .iter()
        .filter_map(|r| SignedTreeHead::parse(&r.msg, r.signature))
        .filter(|h| h.verify_signature(key))
        .collect())
}

fn build_files(
    req: &ExportRequest,
    sth: &SignedTreeHead,
    tree: &MerkleTree,
    heads: &[SignedTreeHead],
    sel: Selection,
    key: &ed25519_dalek::VerifyingKey,
    now: DateTime<Utc>,
) -> Result<Spool> {
    let Selection {
        mut spool,
        proved,
        timeline,
        records,
        audit_records,
    } = sel;
    let root_hex = hex::encode(sth.root_hash);

    spool.write(names::INCLUSION, b"")?;
    for seq in &proved {
        let path = tree
            .inclusion_proof(*seq, sth.tree_size)
            .expect("seq < tree_size");
        let leaf = tree.leaf(*seq).expect("seq < tree_size");
        let line = json_line(&serde_json::json!({
            "seq": seq,
            "leaf_index": seq,
            "leaf_hash": hex::encode(leaf),
            "tree_size": sth.tree_size,
            "root_hash": root_hex,
            "audit_path": path.iter().map(hex::encode).collect::<Vec<_>>(),
        }));
        spool.write(names::INCLUSION, &line)?;
    }
    drop(proved);
    spool.write(names::CONSISTENCY, b"")?;
    for h in heads.iter().filter(|h| h.tree_size <= sth.tree_size) {
        let proof = tree
            .consistency_proof(h.tree_size, sth.tree_size)
            .expect("sizes in range");
        let line = json_line(&serde_json::json!({
            "old_head": String::from_utf8_lossy(&h.message()),
            "old_signature": hex::encode(h.signature),
            "old_size": h.tree_size,
            "old_root": hex::encode(h.root_hash),
            "new_size": sth.tree_size,
            "new_root": root_hex,
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        }));
        spool.write(names::CONSISTENCY, &line)?;
    }

    // The exported records in receipt order, always; with an incident, also the incident's
    // own timeline (alerts, phase changes, notes, actions) as its caller rendered it.
    records_timeline(&mut spool, timeline)?;
    if let Some(i) = &req.incident {
        spool.write("timeline/incident.csv", &i.timeline_csv)?;
        spool.write("timeline/incident.jsonl", &i.timeline_jsonl)?;
    }
    let fingerprint = keys::fingerprint(key);
    let export_json = serde_json::json!({
        "format": "mamori-evidence-bundle",
        "format_version": format::FORMAT_VERSION,
        "created_at": head::format_ts(now),
        "incident": req.incident.as_ref().map(|i| serde_json::json!({"id": i.id, "title": i.title})),
        "filter": req.filter,
        "actor": req.actor,
        "tree_head": sth.to_json(),
        "public_key_fingerprint": fingerprint,
        "records": records,
        "audit_records": audit_records,
    });

    spool.write(names::README, readme(sth, &fingerprint).as_bytes())?;
    spool.write(names::PUBKEY, keys::public_key_pem(key).as_bytes())?;
    spool.write(
        names::EXPORT_JSON,
        &serde_json::to_vec_pretty(&export_json).expect("json"),
    )?;
    spool.write(names::HEAD_MSG, &sth.message())?;
    spool.write(names::HEAD_SIG, &sth.signature)?;
    spool.write(
        names::HEAD_JSON,
        &serde_json::to_vec_pretty(&sth.to_json()).expect("json"),
    )?;
    for name in [
        names::RECORDS_BIN,
        names::RECORDS_JSONL,
        names::AUDIT_BIN,
        names::AUDIT_JSONL,
    ] {
        spool.write(name, b"")?; // present even when empty
    }
    spool.write(names::VERIFY_PY, VERIFY_PY.as_bytes())?;
    Ok(spool)
}

/// A timeline of the exported records, for when no incident timeline was supplied, read back
/// from the spooled `records.bin` in receipt order. Cells starting with `= + - @` get a leading
/// `'` so spreadsheets do not run them as formulas; the raw bytes are in `records/records.bin`.
fn records_timeline(spool: &mut Spool, mut rows: Vec<(i64, u64, u64, u32)>) -> Result<()> {
    use std::os::unix::fs::FileExt as _;
    const CSV: &str = "timeline/timeline.csv";
    const JSONL: &str = "timeline/timeline.jsonl";
    rows.sort_by_key(|r| (r.0, r.1));
    spool.write(CSV, b"received_at,seq,source,payload\n")?;
    spool.write(JSONL, b"")?;
    spool.write(names::RECORDS_BIN, b"")?;
    spool.flush()?;
    let bin_path = spool
        .path(names::RECORDS_BIN)
        .expect("written")
        .to_path_buf();
    let bin = fs::File::open(&bin_path).at(&bin_path)?;
    let mut buf = Vec::new();
    for (ns, seq, at, len) in rows {
        buf.resize(len as usize, 0);
        bin.read_exact_at(&mut buf, at).at(&bin_path)?;
        let f = format::decode_frame(&buf).map_err(|e| Error::Corrupt {
            path: bin_path.clone(),
            offset: at,
            reason: format!("spooled record: {e:?}"),
        })?;
        let source = String::from_utf8_lossy(f.source);
        let payload = String::from_utf8_lossy(f.payload);
        let line = format!(
            "{},{seq},{},{}\n",
            ts_ns(ns),
            csv_cell(&source),
            csv_cell(payload.trim_end_matches(['\r', '\n']))
        );
        spool.write(CSV, line.as_bytes())?;
        let j = json_line(
            &serde_json::json!({"received_at": ts_ns(ns), "seq": seq, "source": source, "payload": payload}),
        );
        spool.write(JSONL, &j)?;
    }
    Ok(())
}

/// Neutralises a CSV cell a spreadsheet would otherwise run as a formula: a leading
/// `= + - @`, tab or CR gets a `'`. Quoting is left to the writer.
pub fn formula_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

/// One CSV cell, safe for spreadsheets ([`formula_safe`]) and quoted when needed (RFC 4180).
pub fn csv_cell(s: &str) -> String {
    let s = formula_safe(s);
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

/// `sha256sum` format: `<hex>  <path>` per line, sorted, paths relative to the bundle root.
fn manifest(spool: &Spool) -> String {
    spool
        .files()
        .map(|(name, sha, _, _)| format!("{sha}  {name}\n"))
        .collect()
}

/// Write the tar to a fresh temporary file next to `out`, streaming each spooled file, then
/// rename it into place; returns the bundle's SHA-256 (read back, streaming).
fn write_tar(out: &Path, root: &str, spool: &Spool, now: DateTime<Utc>) -> Result<String> {
    let tmp = out.with_file_name(format!(
        ".{}.partial",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("export")
    ));
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .at(&tmp)?;
    let result = (|| -> std::io::Result<()> {
        let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(256 << 10, f));
        b.follow_symlinks(false);
        let mtime = now.timestamp().max(0) as u64;
        let mut dirs: Vec<String> = vec![root.to_string()];
        for (name, _, _, _) in spool.files() {
            let mut p = root.to_string();
            let parts: Vec<&str> = name.split('/').collect();
            for d in &parts[..parts.len() - 1] {
                p = format!("{p}/{d}");
                if !dirs.contains(&p) {
                    dirs.push(p.clone());
                }
            }
        }
        for d in &dirs {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_mtime(mtime);
            h.set_size(0);
            b.append_data(&mut h, format!("{d}/"), std::io::empty())?;
        }
        for (name, _, len, path) in spool.files() {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            h.set_size(len);
            let data = fs::File::open(path)?;
            b.append_data(&mut h, format!("{root}/{name}"), data.take(len))?;
        }
        let mut w = b.into_inner()?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).at(&tmp);
    }
    fs::rename(&tmp, out).at(out)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    let mut sha = Sha256::new();
    let mut f = fs::File::open(out).at(out)?;
    std::io::copy(&mut f, &mut sha).at(out)?;
    Ok(hex::encode(sha.finalize()))
}

const VERIFY_PY: &str = include_str!("export/verify_proofs.py");

fn readme(sth: &SignedTreeHead, fingerprint: &str) -> String {
    format!(
        include_str!("export/README.txt.in"),
        tree_size = sth.tree_size,
        root_hash = hex::encode(sth.root_hash),
        timestamp = head::format_ts(sth.timestamp),
        fingerprint = fingerprint,
    )
}
