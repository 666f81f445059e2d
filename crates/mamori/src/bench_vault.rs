//! `mamori bench vault-export`: evidence export and bundle verification of a large vault in
//! bounded memory (issue #15, finding 10). Seals `--records` syslog-sized records into a fresh
//! vault, then measures each phase's peak resident memory (VmHWM, reset between phases through
//! `/proc/self/clear_refs`) and time: sealing (the same-run baseline), `Vault::export` of every
//! record, and `verify_bundle` of the bundle.

use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use mamori_vault::{ExportFilter, ExportRequest, FsyncPolicy, RecordInput, VaultConfig};

use crate::exit;

#[derive(Args, Debug)]
pub(crate) struct VaultExportArgs {
    /// Records to seal and export.
    #[arg(long, default_value_t = 300_000)]
    records: u64,
    /// Scratch directory (default: a temporary one, removed at the end).
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

/// Peak resident memory since the last reset, MiB.
fn hwm_mib() -> f64 {
    crate::bench::peak_rss_mib().unwrap_or(0.0)
}

/// Resets the peak to the current resident size (Linux ≥ 4.0).
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(crate) fn run(a: VaultExportArgs) -> anyhow::Result<i32> {
    let tmp = tempfile::tempdir()?;
    let base = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let key = mamori_vault::generate_keypair();
    let now = Utc::now();
    let cfg = VaultConfig {
        fsync: FsyncPolicy::Never,
        ..VaultConfig::new(base.join("vault"))
    };
    reset_hwm();
    let t = Instant::now();
    let mut v = cfg.open(key, now).context("open the vault")?;
    let mut payloads = Vec::with_capacity(1000);
    let mut n = 0u64;
    while n < a.records {
        payloads.clear();
        for i in 0..1000.min(a.records - n) {
            let k = n + i;
            payloads.push(format!(
                "<38>Dec  6 10:{:02}:{:02} web{:02} sshd[{}]: Failed password for invalid user u{} from 198.51.{}.{} port {} ssh2",
                (k / 60) % 60, k % 60, k % 20, 1000 + k % 30000, k % 97, (k / 250) % 250, k % 250 + 1, 1024 + k % 60000
            ));
        }
        let sources: Vec<String> = (0..payloads.len())
            .map(|i| format!("tcp://10.0.0.{}:514", (n as usize + i) % 20 + 1))
            .collect();
        let recs: Vec<RecordInput<'_>> = payloads
            .iter()
            .zip(&sources)
            .map(|(p, s)| RecordInput {
                source: s,
                received_at: now,
                payload: p.as_bytes(),
            })
            .collect();
        v.append_batch(&recs, now)?;
        n += payloads.len() as u64;
    }
    v.checkpoint(now)?;
    let (seal_s, seal_mib) = (t.elapsed().as_secs_f64(), hwm_mib());
    drop(payloads);

    let out = base.join("bundle.tar");
    reset_hwm();
    let t = Instant::now();
    let summary = v.export(
        &ExportRequest {
            incident: None,
            filter: ExportFilter::default(),
            actor: "bench".into(),
        },
        &out,
        Utc::now(),
    )?;
    let (export_s, export_mib) = (t.elapsed().as_secs_f64(), hwm_mib());
    let bundle_mib = std::fs::metadata(&out)?.len() as f64 / (1 << 20) as f64;

    reset_hwm();
    let t = Instant::now();
    let report = mamori_vault::verify_bundle(&out, Some(&v.verifying_key()))?;
    let (verify_s, verify_mib) = (t.elapsed().as_secs_f64(), hwm_mib());
    anyhow::ensure!(
        report.is_intact(),
        "bundle does not verify: {:?}",
        report.findings.first()
    );
    anyhow::ensure!(report.records == summary.records, "record count differs");
    println!(
        "vault export of {} records (bundle {bundle_mib:.0} MiB, {} files):\n  seal (baseline): {seal_s:.1} s, peak RSS {seal_mib:.0} MiB\n  export:          {export_s:.1} s, peak RSS {export_mib:.0} MiB ({:.2}× the sealing peak, {:.2}× the bundle size)\n  verify bundle:   {verify_s:.1} s, peak RSS {verify_mib:.0} MiB ({:.2}× the sealing peak, {:.2}× the bundle size)",
        summary.records,
        summary.files,
        export_mib / seal_mib.max(1.0),
        export_mib / bundle_mib.max(1.0),
        verify_mib / seal_mib.max(1.0),
        verify_mib / bundle_mib.max(1.0),
    );
    let _ = std::fs::remove_dir_all(base.join("vault"));
    let _ = std::fs::remove_file(&out);
    Ok(exit::OK)
}
