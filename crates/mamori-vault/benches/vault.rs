//! Sealing and verification throughput, with `sha256sum` over the same segment bytes in the same
//! run as the baseline (skipped if `sha256sum` is missing).
//!
//! `cargo bench -p mamori-vault --bench vault`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mamori_vault::{verify, FsyncPolicy, RecordInput, SigningKey, VaultConfig};
use sha2::{Digest, Sha256};

const PAYLOAD: usize = 256;
const BATCH: usize = 256;
/// Size of the vault the verify benchmarks read.
const VERIFY_BYTES: usize = 256 << 20;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut p = format!("<34>Jan  1 00:00:00 web01 sshd[{i}]: Failed password for root from 203.0.113.{} port 22 ssh2 ", i % 250).into_bytes();
            p.resize(PAYLOAD, b'x');
            p
        })
        .collect()
}

fn config(dir: &Path, fsync: FsyncPolicy) -> VaultConfig {
    VaultConfig {
        fsync,
        checkpoint_every_records: 10_000,
        checkpoint_every_secs: 60,
        segment_max_bytes: 32 << 20,
        ..VaultConfig::new(dir)
    }
}

fn seal(c: &mut Criterion) {
    let t = Utc.timestamp_opt(1_735_689_600, 0).unwrap();
    let ps = payloads(BATCH);
    let recs: Vec<RecordInput<'_>> = ps
        .iter()
        .map(|p| RecordInput {
            source: "udp://10.0.0.5:514",
            received_at: t,
            payload: p,
        })
        .collect();
    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(5));
    for (name, fsync) in [
        ("batch256_fsync_never", FsyncPolicy::Never),
        ("batch256_fsync_batch", FsyncPolicy::Batch),
        ("batch256_fsync_always", FsyncPolicy::Always),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut v = config(dir.path(), fsync).open(key(), t).unwrap();
        g.bench_function(name, |b| b.iter(|| v.append_batch(&recs, t).unwrap()));
    }
    g.finish();
    eprintln!(
        "(seal: one record = {PAYLOAD} B payload + {} B source + 59 B framing)",
        "udp://10.0.0.5:514".len()
    );
}

fn build_verify_vault() -> (tempfile::TempDir, Vec<PathBuf>, u64) {
    let t = Utc.timestamp_opt(1_735_689_600, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ps = payloads(BATCH);
    let recs: Vec<RecordInput<'_>> = ps
        .iter()
        .map(|p| RecordInput {
            source: "udp://10.0.0.5:514",
            received_at: t,
            payload: p,
        })
        .collect();
    let mut v = config(dir.path(), FsyncPolicy::Never)
        .open(key(), t)
        .unwrap();
    while (v.tree_size() as usize) * (PAYLOAD + 77) < VERIFY_BYTES {
        v.append_batch(&recs, t).unwrap();
    }
    v.close(t).unwrap();
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let bytes = segs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    (dir, segs, bytes)
}

fn verify_throughput(c: &mut Criterion) {
    let (dir, segs, bytes) = build_verify_vault();
    let vk = key().verifying_key();
    assert!(verify(dir.path(), &vk).unwrap().is_intact());
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("mamori_verify_all_cores", |b| {
        b.iter(|| assert!(verify(dir.path(), &vk).unwrap().is_intact()))
    });
    if Command::new("sha256sum")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        // The baseline the issue asks for: one sha256sum process over the same files.
        g.bench_function("sha256sum_same_bytes", |b| {
            b.iter(|| {
                assert!(Command::new("sha256sum")
                    .args(&segs)
                    .output()
                    .unwrap()
                    .status
                    .success())
            })
        });
    } else {
        eprintln!("SKIPPED sha256sum baseline: sha256sum not found");
    }
    g.bench_function("sha2_single_thread_same_bytes", |b| {
        b.iter_batched(
            || (),
            |_| {
                for s in &segs {
                    let mut h = Sha256::new();
                    h.update(std::fs::read(s).unwrap());
                    criterion::black_box(h.finalize());
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, seal, verify_throughput);
criterion_main!(benches);
