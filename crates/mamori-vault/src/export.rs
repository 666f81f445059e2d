//! Evidence export: a tar bundle that a third party can check offline, with Mamori
//! (`mamori evidence verify`) or with `sha256sum -c` and `openssl` alone.
//!
//! **Invariant: the bundle's paths are ours, never the data's.** Source names only ever appear
//! in file names after [`safe_component`], every path is `<root>/<fixed dir>/<component>`, and
//! the output is created with `create_new` on a temporary name and renamed into place, so an
//! export cannot follow a symlink or write outside its target.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
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

        let mut leaves: Vec<Hash> = Vec::with_capacity(sth.tree_size as usize);
        let mut sel = Selection::default();
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
                _ => {}
            }
            Ok(())
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
        let files = build_files(req, &sth, &tree, &heads, sel, &public, now)?;
        let root = format!("mamori-evidence-{}", now.format("%Y%m%dT%H%M%SZ"));
        let mut files = files;
        let manifest = manifest(&files);
        let manifest_sig = self
            .signing_key()
            .sign(manifest.as_bytes())
            .to_bytes()
            .to_vec();
        files.insert(names::MANIFEST.into(), manifest.into_bytes());
        files.insert(names::MANIFEST_SIG.into(), manifest_sig);
        let bundle_sha256 = write_tar(out, &root, &files, now)?;
        Ok(ExportSummary {
            path: out.to_path_buf(),
            records: count_lines(files.get(names::RECORDS_JSONL)),
            audit_records: count_lines(files.get(names::AUDIT_JSONL)),
            tree_size: sth.tree_size,
            root_hash: hex::encode(sth.root_hash),
            files: files.len(),
            bundle_sha256,
        })
    }
}

fn count_lines(b: Option<&Vec<u8>>) -> u64 {
    b.map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64)
}

#[derive(Default)]
struct Selection {
    records_bin: Vec<u8>,
    records_jsonl: Vec<u8>,
    audit_bin: Vec<u8>,
    audit_jsonl: Vec<u8>,
    /// `(seq, leaf)` of every exported record, for proofs.
    proved: Vec<(u64, Hash)>,
    by_source: BTreeMap<String, Vec<u8>>,
    timeline: Vec<(i64, u64, String, String)>,
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
    ) {
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
        push_line(&mut self.records_jsonl, &line);
        self.records_bin.extend_from_slice(bytes);
        self.proved.push((f.seq, leaf));
        let e = self.by_source.entry(file).or_default();
        e.extend_from_slice(f.payload);
        if !f.payload.ends_with(b"\n") {
            e.push(b'\n');
        }
        self.timeline.push((
            f.received_at_ns,
            f.seq,
            source.to_string(),
            String::from_utf8_lossy(f.payload).into_owned(),
        ));
    }

    fn add_audit(
        &mut self,
        f: &format::Frame<'_>,
        bytes: &[u8],
        segment: u32,
        offset: u64,
        leaf: Hash,
    ) {
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
        push_line(&mut self.audit_jsonl, &line);
        self.audit_bin.extend_from_slice(bytes);
        self.proved.push((f.seq, leaf));
    }
}

fn payload_json(p: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(p) {
        Ok(s) => serde_json::json!({ "utf8": s }),
        Err(_) => serde_json::json!({ "hex": hex::encode(p) }),
    }
}

fn push_line(out: &mut Vec<u8>, v: &serde_json::Value) {
    serde_json::to_writer(&mut *out, v).expect("json to memory");
    out.push(b'\n');
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
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let root_hex = hex::encode(sth.root_hash);

    let mut inclusion = Vec::new();
    for (seq, leaf) in &sel.proved {
        let path = tree
            .inclusion_proof(*seq, sth.tree_size)
            .expect("seq < tree_size");
        push_line(
            &mut inclusion,
            &serde_json::json!({
                "seq": seq,
                "leaf_index": seq,
                "leaf_hash": hex::encode(leaf),
                "tree_size": sth.tree_size,
                "root_hash": root_hex,
                "audit_path": path.iter().map(hex::encode).collect::<Vec<_>>(),
            }),
        );
    }
    let mut consistency = Vec::new();
    for h in heads.iter().filter(|h| h.tree_size <= sth.tree_size) {
        let proof = tree
            .consistency_proof(h.tree_size, sth.tree_size)
            .expect("sizes in range");
        push_line(
            &mut consistency,
            &serde_json::json!({
                "old_head": String::from_utf8_lossy(&h.message()),
                "old_signature": hex::encode(h.signature),
                "old_size": h.tree_size,
                "old_root": hex::encode(h.root_hash),
                "new_size": sth.tree_size,
                "new_root": root_hex,
                "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
            }),
        );
    }

    // The exported records in receipt order, always; with an incident, also the incident's
    // own timeline (alerts, phase changes, notes, actions) as its caller rendered it.
    let (timeline_csv, timeline_jsonl) = records_timeline(&sel.timeline);
    if let Some(i) = &req.incident {
        files.insert("timeline/incident.csv".into(), i.timeline_csv.clone());
        files.insert("timeline/incident.jsonl".into(), i.timeline_jsonl.clone());
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
        "records": sel.proved.len() - count_lines(Some(&sel.audit_jsonl)) as usize,
        "audit_records": count_lines(Some(&sel.audit_jsonl)),
    });

    files.insert(names::README.into(), readme(sth, &fingerprint).into_bytes());
    files.insert(names::PUBKEY.into(), keys::public_key_pem(key).into_bytes());
    files.insert(
        names::EXPORT_JSON.into(),
        serde_json::to_vec_pretty(&export_json).expect("json"),
    );
    files.insert(names::HEAD_MSG.into(), sth.message());
    files.insert(names::HEAD_SIG.into(), sth.signature.to_vec());
    files.insert(
        names::HEAD_JSON.into(),
        serde_json::to_vec_pretty(&sth.to_json()).expect("json"),
    );
    files.insert(names::RECORDS_BIN.into(), sel.records_bin);
    files.insert(names::RECORDS_JSONL.into(), sel.records_jsonl);
    files.insert(names::AUDIT_BIN.into(), sel.audit_bin);
    files.insert(names::AUDIT_JSONL.into(), sel.audit_jsonl);
    files.insert(names::INCLUSION.into(), inclusion);
    files.insert(names::CONSISTENCY.into(), consistency);
    files.insert("timeline/timeline.csv".into(), timeline_csv);
    files.insert("timeline/timeline.jsonl".into(), timeline_jsonl);
    files.insert(names::VERIFY_PY.into(), VERIFY_PY.as_bytes().to_vec());
    for (name, bytes) in sel.by_source {
        files.insert(name, bytes);
    }
    Ok(files)
}

/// A timeline of the exported records, for when no incident timeline was supplied. Cells
/// starting with `= + - @` get a leading `'` so spreadsheets do not run them as formulas; the
/// raw bytes are in `records/records.bin`.
fn records_timeline(rows: &[(i64, u64, String, String)]) -> (Vec<u8>, Vec<u8>) {
    let mut rows: Vec<_> = rows.iter().collect();
    rows.sort_by_key(|r| (r.0, r.1));
    let mut csv = b"received_at,seq,source,payload\n".to_vec();
    let mut jsonl = Vec::new();
    for (ns, seq, source, payload) in rows {
        let line = format!(
            "{},{seq},{},{}\n",
            ts_ns(*ns),
            csv_cell(source),
            csv_cell(payload.trim_end_matches(['\r', '\n']))
        );
        csv.extend_from_slice(line.as_bytes());
        push_line(
            &mut jsonl,
            &serde_json::json!({"received_at": ts_ns(*ns), "seq": seq, "source": source, "payload": payload}),
        );
    }
    (csv, jsonl)
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
fn manifest(files: &BTreeMap<String, Vec<u8>>) -> String {
    files
        .iter()
        .map(|(name, bytes)| format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))))
        .collect()
}

/// Write the tar to a fresh temporary file next to `out`, then rename it into place.
fn write_tar(
    out: &Path,
    root: &str,
    files: &BTreeMap<String, Vec<u8>>,
    now: DateTime<Utc>,
) -> Result<String> {
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
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        b.follow_symlinks(false);
        let mtime = now.timestamp().max(0) as u64;
        let mut dirs: Vec<String> = vec![root.to_string()];
        for name in files.keys() {
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
        for (name, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            h.set_size(bytes.len() as u64);
            b.append_data(&mut h, format!("{root}/{name}"), &bytes[..])?;
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
    let sha = hex::encode(Sha256::digest(fs::read(out).at(out)?));
    Ok(sha)
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
