//! `mamori init`, `mamori vault …` and `mamori evidence …`: argument parsing and printing over
//! the `mamori_vault` crate. Glue only — every decision about the format lives in the crate.
//!
//! Exit codes: 0 ok, 1 verification found tampering (or damage), 2 usage or configuration error.

use crate::term::{out_raw, outln};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use mamori_vault::{
    AuditAction, AuditEntry, ExportFilter, ExportRequest, KeyPaths, RecordInput, VaultConfig,
};

const EXIT_OK: i32 = 0;
const EXIT_TAMPERED: i32 = 1;
const EXIT_USAGE: i32 = 2;

/// How many findings the text report prints before summarising the rest.
const MAX_PRINTED_FINDINGS: usize = 20;

fn default_data_dir() -> PathBuf {
    PathBuf::from("./mamori-data")
}

fn vault_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("vault")
}

/// Print a usage/configuration error the way clap does and return its exit code.
fn usage_error(msg: impl std::fmt::Display) -> anyhow::Result<i32> {
    eprintln!("error: {msg}");
    Ok(EXIT_USAGE)
}

// ---------------------------------------------------------------------------------------------
// mamori init

/// Create a data directory with an empty evidence vault and its signing key.
///
/// Creates DIR/vault/ and the vault's Ed25519 key pair: DIR/keys/vault-ed25519.key (PKCS#8 PEM,
/// mode 0600, never printed) and DIR/keys/vault-ed25519.pub (SubjectPublicKeyInfo PEM). Prints
/// the public key and its fingerprint: keep a copy of both somewhere Mamori cannot write (a
/// password manager, a printed page in the incident binder). Auditors verify the vault and
/// exported evidence against that copy, not against the file on this machine.
#[derive(clap::Args, Debug)]
pub(crate) struct InitArgs {
    /// Data directory to create or complete.
    #[arg(long, value_name = "DIR", default_value = "./mamori-data")]
    data_dir: PathBuf,
    /// Replace an existing key pair. Refused when the vault already has signed heads: a new key
    /// would orphan them.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run_init(args: InitArgs) -> anyhow::Result<i32> {
    let paths = KeyPaths::in_data_dir(&args.data_dir);
    let vdir = vault_dir(&args.data_dir);
    let has_heads = mamori_vault::read_status(&vdir)
        .map(|s| s.last_head.is_some())
        .unwrap_or(false);
    if paths.private.exists() {
        if !args.force {
            return usage_error(format!(
                "{} already exists; this data directory is initialised (use --force to replace the key of an empty vault)",
                paths.private.display()
            ));
        }
        if has_heads {
            return usage_error(format!(
                "the vault in {} already has signed heads; a new key would orphan them. Move the data directory away to start over",
                vdir.display()
            ));
        }
    }
    let key = mamori_vault::generate_keypair();
    mamori_vault::write_keypair(&paths, &key, args.force)
        .with_context(|| format!("writing the key pair under {}", args.data_dir.display()))?;
    let public = key.verifying_key();
    let fingerprint = mamori_vault::fingerprint(&public);
    let now = Utc::now();
    let mut vault = VaultConfig::new(&vdir)
        .open(key, now)
        .with_context(|| format!("creating the vault in {}", vdir.display()))?;
    vault.append_audit(
        &AuditEntry::new(
            now,
            whoami(),
            AuditAction::VaultInit,
            "vault",
            format!("vault initialised; signing key {fingerprint}"),
        ),
        now,
    )?;
    vault.close(now)?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "created evidence vault: {}", vdir.display())?;
    writeln!(
        out,
        "private key (mode 0600, keep secret, back it up): {}",
        paths.private.display()
    )?;
    writeln!(out, "public key: {}", paths.public.display())?;
    writeln!(out, "public key fingerprint: {fingerprint}")?;
    writeln!(out)?;
    write!(out, "{}", mamori_vault::public_key_pem(&public))?;
    writeln!(out)?;
    writeln!(
        out,
        "Keep a copy of this public key and fingerprint OUTSIDE this machine. Verification is\n\
         only independent of Mamori if it uses that copy (`--key`)."
    )?;
    Ok(EXIT_OK)
}

fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "operator".into())
}

// ---------------------------------------------------------------------------------------------
// mamori vault

#[derive(clap::Subcommand, Debug)]
pub(crate) enum VaultCmd {
    /// Re-hash the whole vault and report the first bad record precisely.
    ///
    /// Reads only the vault files and a public key: no database, no private key. Every record is
    /// checked against the hash chain and the signed Merkle tree heads, in parallel on all cores.
    /// Reports each problem with segment, offset and expected-vs-found values, and tells
    /// modification, deletion, insertion, reordering and a cut tail apart. Exit status: 0 intact,
    /// 1 tampering or damage found, 2 usage error.
    Verify {
        /// Data directory (the vault is DIR/vault).
        #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// Vault directory, if not DIR/vault (e.g. a copy handed to an auditor).
        #[arg(long, value_name = "DIR")]
        vault: Option<PathBuf>,
        /// Public key (PEM) to verify against. Use the copy kept outside this machine; defaults
        /// to DIR/keys/vault-ed25519.pub.
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
        /// Signed heads kept outside this machine (a syslog/webhook log of the
        /// `mamori.vault.head` lines, a bundle's head/tree-head.json; `-` = stdin): the vault
        /// must extend each of them, or it was rolled back to an earlier copy.
        #[arg(long, value_name = "FILE")]
        witness: Option<PathBuf>,
    },
    /// Seal raw lines from a file or stdin into the vault (for operators and tests).
    ///
    /// Each line (without its line terminator) becomes one record, stamped with the current time
    /// and the given source. Lines are sealed in batches with one fsync per batch; the final
    /// records are covered by a signed tree head before the command exits.
    Append {
        /// Data directory (the vault is DIR/vault, keys in DIR/keys).
        #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// Where the lines came from, e.g. `file:/var/log/auth.log` or `udp://10.0.0.5:514`.
        #[arg(long)]
        source: String,
        /// File to read; `-` or absent for stdin.
        file: Option<PathBuf>,
    },
    /// Show the tree size and the last signed head.
    ///
    /// Reads the last segment and the heads file without checking signatures; use `verify` for
    /// that.
    Status {
        /// Data directory (the vault is DIR/vault, keys in DIR/keys).
        #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run_vault(cmd: VaultCmd) -> anyhow::Result<i32> {
    match cmd {
        VaultCmd::Verify {
            data_dir,
            vault,
            key,
            json,
            witness,
        } => vault_verify(&data_dir, vault, key, json, witness),
        VaultCmd::Append {
            data_dir,
            source,
            file,
        } => vault_append(&data_dir, &source, file),
        VaultCmd::Status { data_dir, json } => {
            let dir = vault_dir(&data_dir);
            if !dir.is_dir() {
                return usage_error(format!(
                    "no vault at {} (run `mamori init --data-dir {}`)",
                    dir.display(),
                    data_dir.display()
                ));
            }
            let s = mamori_vault::read_status(&dir)?;
            if json {
                out_raw!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                outln!("vault: {}", dir.display());
                outln!("records: {}", s.tree_size);
                outln!("segments: {}", s.segments);
                outln!(
                    "records not yet covered by a signed head: {}",
                    s.unsigned_records
                );
                match &s.last_head {
                    Some(h) => outln!(
                        "last signed head: size {} root {} at {} (signature not checked here)",
                        h["tree_size"],
                        h["root_hash"].as_str().unwrap_or("?"),
                        h["timestamp"].as_str().unwrap_or("?")
                    ),
                    None => outln!("last signed head: none"),
                }
            }
            Ok(EXIT_OK)
        }
    }
}

fn load_public_key(
    data_dir: &Path,
    key: Option<PathBuf>,
) -> Result<(mamori_vault::VerifyingKey, bool), String> {
    let independent = key.is_some();
    let path = key.unwrap_or_else(|| KeyPaths::in_data_dir(data_dir).public);
    mamori_vault::load_verifying_key(&path)
        .map(|k| (k, independent))
        .map_err(|e| e.to_string())
}

fn vault_verify(
    data_dir: &Path,
    vault: Option<PathBuf>,
    key: Option<PathBuf>,
    json: bool,
    witness: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let dir = vault.unwrap_or_else(|| vault_dir(data_dir));
    if !dir.is_dir() {
        return usage_error(format!("no vault at {}", dir.display()));
    }
    let (key, independent) = match load_public_key(data_dir, key) {
        Ok(k) => k,
        Err(e) => return usage_error(e),
    };
    let witnessed = match &witness {
        None => None,
        Some(p) => {
            let text = if p.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("read the witness from stdin")?;
                s
            } else {
                match std::fs::read(p) {
                    Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                    Err(e) => {
                        return usage_error(format!("cannot read witness {}: {e}", p.display()))
                    }
                }
            };
            let (heads, bad) = mamori_vault::parse_witness(&text);
            let w = mamori_vault::check_witness(&dir, &key, &heads)?;
            if w.witnessed == 0 {
                return usage_error(format!(
                    "the witness {} holds no tree head signed by key {} ({} unreadable, {} signed by another key)",
                    p.display(),
                    mamori_vault::fingerprint(&key),
                    bad,
                    w.ignored
                ));
            }
            Some(w)
        }
    };
    let started = std::time::Instant::now();
    let report = mamori_vault::verify(&dir, &key)?;
    let elapsed = started.elapsed();
    let consistent = witnessed.as_ref().is_none_or(|w| w.is_consistent());
    if json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(w) = &witnessed {
            v["witness"] = serde_json::to_value(w)?;
        }
        out_raw!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "vault: {}", dir.display())?;
        writeln!(out, "key: {}", mamori_vault::fingerprint(&key))?;
        if !independent {
            writeln!(
                out,
                "note: using the key stored next to the vault; for an independent check pass --key with the copy kept elsewhere"
            )?;
        }
        let secs = elapsed.as_secs_f64().max(1e-9);
        writeln!(
            out,
            "checked {} records in {} segments ({:.1} MB) in {:.2}s ({:.0} MB/s); {} signed heads",
            report.records,
            report.segments,
            report.bytes as f64 / 1e6,
            secs,
            report.bytes as f64 / 1e6 / secs,
            report.valid_heads
        )?;
        if report.unsigned_records > 0 {
            writeln!(
                out,
                "note: the last {} records are not yet covered by a signed head (chain-protected only)",
                report.unsigned_records
            )?;
        }
        if report.is_intact() {
            writeln!(out, "OK: the vault is intact")?;
        } else {
            writeln!(
                out,
                "TAMPERING OR DAMAGE FOUND: {} finding(s)",
                report.findings.len() as u64 + report.suppressed
            )?;
            for f in report.findings.iter().take(MAX_PRINTED_FINDINGS) {
                writeln!(out, "  {f}")?;
            }
            let rest = report.findings.len().saturating_sub(MAX_PRINTED_FINDINGS) as u64
                + report.suppressed;
            if rest > 0 {
                writeln!(out, "  … and {rest} more (use --json for all)")?;
            }
        }
        if let Some(w) = &witnessed {
            let newest = w.newest.as_ref().expect("at least one witnessed head");
            if w.is_consistent() {
                writeln!(
                    out,
                    "OK: the vault extends all {} witnessed heads (newest: {} records at {})",
                    w.witnessed,
                    newest.tree_size,
                    newest
                        .timestamp
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                )?;
            } else {
                writeln!(out, "WITNESS CHECK FAILED:")?;
                for p in &w.problems {
                    writeln!(out, "  {p}")?;
                }
            }
        }
    }
    Ok(if report.is_intact() && consistent {
        EXIT_OK
    } else {
        EXIT_TAMPERED
    })
}

fn open_vault(data_dir: &Path, now: DateTime<Utc>) -> Result<mamori_vault::Vault, String> {
    let paths = KeyPaths::in_data_dir(data_dir);
    let key = mamori_vault::load_signing_key(&paths.private).map_err(|e| {
        format!(
            "{e} (run `mamori init --data-dir {}` first?)",
            data_dir.display()
        )
    })?;
    let vault = VaultConfig::new(vault_dir(data_dir))
        .open(key, now)
        .map_err(|e| e.to_string())?;
    for r in vault.recoveries() {
        eprintln!(
            "warning: recovered an interrupted write: {} bytes at {} offset {} moved to {} (audit record seq {})",
            r.len, r.file, r.offset, r.quarantined_as, r.audit_seq
        );
    }
    Ok(vault)
}

fn vault_append(data_dir: &Path, source: &str, file: Option<PathBuf>) -> anyhow::Result<i32> {
    const BATCH: usize = 1000;
    let mut vault = match open_vault(data_dir, Utc::now()) {
        Ok(v) => v,
        Err(e) => return usage_error(e),
    };
    let input: Box<dyn BufRead> = match file.as_deref() {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p == Path::new("-") => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
    };
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let (mut first, mut last, mut n) = (None, 0u64, 0u64);
    let mut flush =
        |lines: &mut Vec<Vec<u8>>, vault: &mut mamori_vault::Vault| -> anyhow::Result<()> {
            if lines.is_empty() {
                return Ok(());
            }
            let now = Utc::now();
            let recs: Vec<RecordInput<'_>> = lines
                .iter()
                .map(|l| RecordInput {
                    source,
                    received_at: now,
                    payload: l,
                })
                .collect();
            let receipts = vault.append_batch(&recs, now)?;
            first = first.or(receipts.first().map(|r| r.seq));
            last = receipts.last().map_or(last, |r| r.seq);
            n += receipts.len() as u64;
            lines.clear();
            Ok(())
        };
    for line in input.split(b'\n') {
        let mut line = line.context("reading input")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        lines.push(line);
        if lines.len() == BATCH {
            flush(&mut lines, &mut vault)?;
        }
    }
    flush(&mut lines, &mut vault)?;
    vault.close(Utc::now())?;
    match first {
        Some(f) => outln!("sealed {n} records (seq {f}..={last}); covered by a signed tree head"),
        None => outln!("sealed 0 records"),
    }
    Ok(EXIT_OK)
}

// ---------------------------------------------------------------------------------------------
// mamori evidence

#[derive(clap::Subcommand, Debug)]
pub(crate) enum EvidenceCmd {
    /// Write an evidence bundle (tar) that third parties can verify offline.
    ///
    /// The bundle holds the selected raw records byte for byte, the full chain-of-custody log,
    /// a signed tree head, Merkle inclusion proofs, a SHA-256 manifest (`sha256sum -c` format)
    /// signed with the vault key, a timeline (CSV and JSON Lines) and a README (English and
    /// Japanese) explaining how to verify it with `mamori evidence verify` or with `sha256sum`
    /// and `openssl` alone. The export itself is recorded in the vault's audit trail first.
    /// Refuses to overwrite FILE and to export from a vault that does not verify.
    Export {
        /// Data directory (the vault is DIR/vault, keys in DIR/keys).
        #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// Export an incident: the sealed records of its events (as `mamori serve` sealed
        /// them), the full chain of custody and the incident's own timeline (alerts, phase
        /// changes, notes, actions). Reads DIR/incidents.db.
        #[arg(long, value_name = "N", conflicts_with_all = ["from", "to", "host", "source"])]
        incident: Option<i64>,
        /// Only records received at or after this time (RFC 3339, or a date = midnight UTC).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: Option<DateTime<Utc>>,
        /// Only records received before this time (RFC 3339, or a date = midnight UTC).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        to: Option<DateTime<Utc>>,
        /// Only records whose source's host part is HOST (case-insensitive).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Only records whose source starts with PREFIX.
        #[arg(long, value_name = "PREFIX")]
        source: Option<String>,
        /// Who is exporting, for the chain-of-custody record (default: $USER).
        #[arg(long)]
        actor: Option<String>,
        /// The bundle file to create (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify an evidence bundle offline.
    ///
    /// Reads the tar without extracting it. Checks every file against the manifest, the manifest
    /// and tree-head signatures, every record's inclusion proof and the consistency of earlier
    /// heads. Pass --key with the public key you were given separately; without it the bundle's
    /// own key is used and its fingerprint printed for you to compare. Exit status: 0 intact,
    /// 1 problems found, 2 usage error.
    Verify {
        /// The bundle (tar) to check.
        file: PathBuf,
        /// Public key (PEM) the bundle must be signed with.
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The incident's own timeline (CSV with formula-safe cells, and JSON Lines) and the store seqs
/// of its events, from DIR/incidents.db.
fn incident_ref(
    data_dir: &Path,
    n: i64,
) -> Result<(mamori_vault::IncidentRef, std::collections::BTreeSet<u64>), String> {
    let db = data_dir.join("incidents.db");
    if !db.exists() {
        return Err(format!(
            "no incident database at {} (has `mamori serve` run with this data directory?)",
            db.display()
        ));
    }
    let cases = mamori_cases::CaseStore::open(&db).map_err(|e| e.to_string())?;
    let inc = cases
        .get(mamori_cases::IncidentId(n))
        .map_err(|e| e.to_string())?;
    // (time, kind, actor, summary, detail)
    let mut rows: Vec<(DateTime<Utc>, String, String, String, String)> = Vec::new();
    for a in &inc.alerts {
        rows.push((
            a.time,
            "alert".into(),
            "mamori".into(),
            format!("[{}] {} ({})", a.level, a.title, a.rule_id.0),
            a.joined_because.clone(),
        ));
    }
    for h in &inc.history {
        let change = match (&h.from, &h.to) {
            (Some(f), Some(t)) => format!("{f} -> {t}"),
            (None, Some(t)) => t.clone(),
            (Some(f), None) => format!("{f} -> (none)"),
            (None, None) => String::new(),
        };
        rows.push((
            h.at,
            format!("history:{}", h.action.as_str()),
            h.by.clone(),
            change,
            h.why.clone().unwrap_or_default(),
        ));
    }
    for note in &inc.notes {
        rows.push((
            note.at,
            "note".into(),
            note.by.clone(),
            note.text.clone(),
            String::new(),
        ));
    }
    for a in &inc.actions {
        rows.push((
            a.at,
            format!("action:{}", a.kind),
            a.by.clone(),
            a.kind.clone(),
            a.detail.to_string(),
        ));
    }
    // Every event behind every alert: the seqs the incident and its alerts cite, and the
    // first..=last range of a correlation alert whose citation is bounded. One timeline row per
    // event names the alerts it belongs to.
    let behind = events_behind(data_dir, &inc)?;
    for (seq, (time, why)) in &behind {
        rows.push((
            *time,
            "event".into(),
            "mamori".into(),
            format!("store seq {seq}"),
            why.join("; "),
        ));
    }
    rows.sort_by_key(|r| r.0);
    let cell = mamori_vault::csv_cell;
    let mut csv = String::from("time,kind,actor,summary,detail\n");
    let mut jsonl = String::new();
    for (t, kind, actor, summary, detail) in &rows {
        let time = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        csv.push_str(&format!(
            "{time},{},{},{},{}\n",
            cell(kind),
            cell(actor),
            cell(summary),
            cell(detail)
        ));
        jsonl.push_str(
            &serde_json::json!({"time": time, "kind": kind, "actor": actor, "summary": summary, "detail": detail})
                .to_string(),
        );
        jsonl.push('\n');
    }
    let seqs = behind.keys().copied().collect();
    Ok((
        mamori_vault::IncidentRef {
            id: inc.id.0 as u64,
            title: inc.title.clone(),
            timeline_csv: csv.into_bytes(),
            timeline_jsonl: jsonl.into_bytes(),
        },
        seqs,
    ))
}

/// Most seqs a bounded correlation alert's `first_seq..=last_seq` range may add.
const MAX_RANGE: u64 = 1_000_000;

/// The store seqs of the events behind an incident, each with the time of its earliest alert
/// and the alerts it belongs to: the incident's own event list, every seq its alerts cite in
/// the alert store (DIR/state.db; a correlation alert's episode adds its later events there,
/// at the latest when `mamori serve` stops) and, for a correlation alert whose citation is
/// bounded (it counted more events than it names), its whole `first_seq..=last_seq` range.
/// Whether an event of that range belongs to the alert's correlation group cannot be decided
/// from the vault's raw lines without re-running the rules, so the whole range is taken (it may
/// hold unrelated events; the timeline says which seqs are only in the range).
#[allow(clippy::type_complexity)]
fn events_behind(
    data_dir: &Path,
    inc: &mamori_cases::Incident,
) -> Result<std::collections::BTreeMap<u64, (DateTime<Utc>, Vec<String>)>, String> {
    use std::collections::BTreeMap;
    let mut out: BTreeMap<u64, (DateTime<Utc>, Vec<String>)> = BTreeMap::new();
    let add = |out: &mut BTreeMap<u64, (DateTime<Utc>, Vec<String>)>,
               seq: u64,
               time: DateTime<Utc>,
               why: String| {
        let e = out.entry(seq).or_insert_with(|| (time, Vec::new()));
        e.0 = e.0.min(time);
        if !e.1.contains(&why) {
            e.1.push(why);
        }
    };
    let state = mamori_server::state_db_path(data_dir);
    let store = if state.exists() {
        Some(mamori_store::SqliteAlertStore::open(&state).map_err(|e| e.to_string())?)
    } else {
        None
    };
    for linked in &inc.alerts {
        let label = format!("alert {} ({})", linked.alert_id, linked.rule_id.0);
        let stored = match &store {
            Some(s) => {
                use mamori_store::AlertStore;
                s.get_alert(mamori_store::AlertId(linked.alert_id))
                    .map_err(|e| e.to_string())?
            }
            None => None,
        };
        let Some(a) = stored else { continue };
        let mut cited: Vec<u64> = a.event_seqs.clone();
        cited.sort_unstable();
        cited.dedup();
        for &seq in &cited {
            add(&mut out, seq, linked.time, format!("{label}: cited"));
        }
        let d = &a.details;
        let counted = d.get("events").and_then(|v| v.as_u64()).unwrap_or(0);
        let first = d.get("first_seq").and_then(|v| v.as_u64());
        let last = d.get("last_seq").and_then(|v| v.as_u64());
        if let (Some(f), Some(l)) = (first, last) {
            if counted > cited.len() as u64 {
                // first/last are the earliest and latest events by time: with out-of-order
                // times a cited seq can lie outside them, so the span covers those too.
                let lo = f.min(l).min(cited.first().copied().unwrap_or(u64::MAX));
                let hi = f.max(l).max(cited.last().copied().unwrap_or(0));
                let hi = hi.min(lo.saturating_add(MAX_RANGE - 1));
                for seq in lo..=hi {
                    if cited.binary_search(&seq).is_err() {
                        add(
                            &mut out,
                            seq,
                            linked.time,
                            format!("{label}: in seq range {lo}..={hi}"),
                        );
                    }
                }
            }
        }
    }
    // Seqs the incident lists whose alert is not in the alert store (another data directory,
    // a deleted state.db): kept, attributed to the incident.
    let at = inc.alerts.first().map_or(inc.created_at, |a| a.time);
    for &seq in &inc.events {
        if !out.contains_key(&seq) {
            add(&mut out, seq, at, "incident event list".into());
        }
    }
    Ok(out)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("`{s}` is not an RFC 3339 time (2025-01-31T09:00:00Z) or a date (2025-01-31)")
        })
}

pub(crate) fn run_evidence(cmd: EvidenceCmd) -> anyhow::Result<i32> {
    match cmd {
        EvidenceCmd::Export {
            data_dir,
            incident,
            from,
            to,
            host,
            source,
            actor,
            out,
        } => {
            let (incident_ref, store_seqs): (_, Option<std::collections::BTreeSet<u64>>) =
                match incident {
                    Some(n) => match incident_ref(&data_dir, n) {
                        Ok((r, seqs)) => (Some(r), Some(seqs)),
                        Err(e) => return usage_error(e),
                    },
                    None => (None, None),
                };
            if let (Some(f), Some(t)) = (from, to) {
                if f >= t {
                    return usage_error(format!("--from {f} must be before --to {t}"));
                }
            }
            let now = Utc::now();
            let mut vault = match open_vault(&data_dir, now) {
                Ok(v) => v,
                Err(e) => return usage_error(e),
            };
            let req = ExportRequest {
                incident: incident_ref,
                filter: ExportFilter {
                    from,
                    to,
                    host,
                    source,
                    store_seqs,
                },
                actor: actor.unwrap_or_else(whoami),
            };
            let summary = match vault.export(&req, &out, now) {
                Ok(s) => s,
                Err(e @ mamori_vault::Error::AlreadyExists { .. }) => return usage_error(e),
                Err(mamori_vault::Error::InvalidRequest(msg))
                    if msg.contains("does not verify") =>
                {
                    eprintln!("error: {msg}");
                    return Ok(EXIT_TAMPERED);
                }
                Err(e @ mamori_vault::Error::InvalidRequest(_)) => return usage_error(e),
                Err(e) => return Err(e.into()),
            };
            vault.close(Utc::now())?;
            let wanted = req.filter.store_seqs.as_ref().map_or(0, |s| s.len() as u64);
            if incident.is_some() && summary.records < wanted {
                eprintln!(
                    "warning: the vault holds {} of the incident's {wanted} events; the others were stored before the vault was initialised (`mamori init`) or are not sealed yet",
                    summary.records
                );
            }
            if let Some(n) = incident {
                // The incident points at its evidence (best effort: the bundle is already
                // written and its export is in the chain of custody).
                let reference = format!(
                    "bundle {} sha256:{} (records {}, tree size {})",
                    summary.path.display(),
                    summary.bundle_sha256,
                    summary.records,
                    summary.tree_size
                );
                let added =
                    mamori_cases::CaseStore::open(&data_dir.join("incidents.db")).and_then(|c| {
                        c.add_evidence(
                            mamori_cases::IncidentId(n),
                            &reference,
                            &req.actor,
                            Utc::now(),
                        )
                    });
                if let Err(e) = added {
                    eprintln!(
                        "warning: the bundle is written but incident {n} does not list it yet: {e}"
                    );
                }
            }
            outln!("wrote {}", summary.path.display());
            outln!(
                "records: {}, custody records: {}, signed tree size: {}, root: {}",
                summary.records,
                summary.audit_records,
                summary.tree_size,
                summary.root_hash
            );
            outln!("bundle sha256: {}", summary.bundle_sha256);
            outln!(
                "verify with: mamori evidence verify {} --key <public key kept elsewhere>",
                out.display()
            );
            Ok(EXIT_OK)
        }
        EvidenceCmd::Verify { file, key, json } => {
            let expected = match key {
                Some(p) => match mamori_vault::load_verifying_key(&p) {
                    Ok(k) => Some(k),
                    Err(e) => return usage_error(e),
                },
                None => None,
            };
            if !file.is_file() {
                return usage_error(format!("{} is not a file", file.display()));
            }
            let report = mamori_vault::verify_bundle(&file, expected.as_ref())?;
            if json {
                out_raw!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                outln!("bundle: {}", file.display());
                if let Some(fp) = &report.key_fingerprint {
                    outln!("key: {fp}");
                }
                if report.key_from_bundle {
                    outln!("note: checked against the key inside the bundle; compare the fingerprint above with the one you were given, or pass --key");
                }
                if let (Some(size), Some(root)) = (report.tree_size, &report.root_hash) {
                    outln!("signed tree head: size {size}, root {root}");
                }
                outln!(
                    "{} files, {} records, {} custody records",
                    report.files,
                    report.records,
                    report.audit_records
                );
                if report.is_intact() {
                    outln!("OK: every file, signature and inclusion proof verifies");
                } else {
                    outln!("PROBLEMS FOUND: {}", report.findings.len());
                    for f in report.findings.iter().take(MAX_PRINTED_FINDINGS) {
                        outln!("  {}: {}", f.file, f.problem);
                    }
                    if report.findings.len() > MAX_PRINTED_FINDINGS {
                        outln!(
                            "  … and {} more (use --json for all)",
                            report.findings.len() - MAX_PRINTED_FINDINGS
                        );
                    }
                }
            }
            Ok(if report.is_intact() {
                EXIT_OK
            } else {
                EXIT_TAMPERED
            })
        }
    }
}
