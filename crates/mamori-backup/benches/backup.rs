//! The hot paths of a directory check: sampling a file's entropy (against SHA-256 of the same
//! bytes, the work every check does anyway), and a whole check of a share the first time
//! (every file hashed) against a re-check where nothing changed (metadata only, plus the
//! restore sample).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mamori_backup::{content, BackupConfig, BackupsSettings, Checker, History};
use rand::RngCore;
use sha2::{Digest, Sha256};

const FILES: usize = 2000;
const FILE_BYTES: usize = 8 * 1024;

fn sample(c: &mut Criterion) {
    let mut text = "請求書 2026年11月 / invoice, 1,234,000 JPY\n"
        .repeat(2000)
        .into_bytes();
    text.truncate(content::SAMPLE_BYTES);
    let mut g = c.benchmark_group("sample_64k");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("sha256 (baseline)", |b| {
        b.iter(|| Sha256::digest(black_box(&text)))
    });
    g.bench_function("shannon_entropy", |b| {
        b.iter(|| content::shannon_entropy(black_box(&text)))
    });
    g.finish();
}

fn directory(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let mut rng = rand::thread_rng();
    for i in 0..FILES {
        let mut b = vec![0u8; FILE_BYTES];
        rng.fill_bytes(&mut b[..FILE_BYTES / 2]);
        std::fs::write(share.join(format!("f{i:05}.bin")), b).unwrap();
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let entry: BackupConfig = toml::from_str(&format!(
        "name = \"share\"\nkind = \"directory\"\nrepository = {:?}\nrestore_sample = 5\nread_data_percent = 0\n",
        share.display().to_string()
    ))
    .unwrap();
    let entries = vec![entry];
    let settings = BackupsSettings::default();
    let history = History::open(&data).unwrap();
    let checker = Checker {
        data_dir: &data,
        history: &history,
        settings: &settings,
        entries: &entries,
    };
    let (manifest, _) = mamori_backup::manifest_paths(&data, "share");

    let mut g = c.benchmark_group("directory_2000_files_16MiB");
    g.sample_size(10);
    g.bench_function("first run (hash everything)", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_file(&manifest);
            },
            |_| checker.check(&entries[0]).unwrap(),
            BatchSize::PerIteration,
        )
    });
    checker.check(&entries[0]).unwrap();
    g.bench_function("re-check, nothing changed", |b| {
        b.iter(|| checker.check(&entries[0]).unwrap())
    });
    g.finish();
}

criterion_group!(benches, sample, directory);
criterion_main!(benches);
