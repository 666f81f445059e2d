//! Sustained ingest into the embedded store and search latency, with the same frame bytes
//! written by plain `write` (+ `fdatasync`) in the same run as the baseline.
//!
//! `cargo bench -p mamori-store --bench store`

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use chrono::TimeDelta;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mamori_event::Event;
use mamori_store::testsuite::{ssh_event, t, windows_event};
use mamori_store::{codec, EmbeddedConfig, EventStore, FsyncPolicy, SearchRequest, SortOrder};

const BATCH: usize = 256;
const SEARCH_EVENTS: u64 = 100_000;

fn batch(base: u64) -> Vec<Event> {
    (0..BATCH as u64)
        .map(|i| {
            let n = base + i;
            let at = Some(t((n / 10) as i64));
            match n % 4 {
                0 => windows_event(n, r"C:\Windows\System32\cmd.exe", at),
                1 => ssh_event(n, "alice", "failure", "203.0.113.5", at),
                2 => ssh_event(n, "bob", "failure", "198.51.100.7", at),
                _ => ssh_event(n, "alice", "success", "203.0.113.5", at),
            }
        })
        .collect()
}

fn ingest(c: &mut Criterion) {
    let events = batch(0);
    let mut frames = Vec::new();
    for (i, e) in events.iter().enumerate() {
        codec::encode_frame(&mut frames, i as u64, t(0), e).unwrap();
    }
    eprintln!(
        "batch: {BATCH} events, {} bytes of frames ({} B/event)",
        frames.len(),
        frames.len() / BATCH
    );
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(8));
    g.sample_size(20);
    for (name, sync) in [
        ("baseline_write_fdatasync", true),
        ("baseline_write", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("raw"))
            .unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                f.write_all(&frames).unwrap();
                if sync {
                    f.sync_data().unwrap();
                }
            })
        });
    }
    for (name, fsync) in [
        ("store_append_always(default)", FsyncPolicy::Always),
        (
            "store_append_batch100ms",
            FsyncPolicy::Batch { interval_ms: 100 },
        ),
        ("store_append_never", FsyncPolicy::Never),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedConfig {
            fsync,
            ..EmbeddedConfig::new(dir.path())
        }
        .open()
        .unwrap();
        g.bench_function(name, |b| b.iter(|| store.append_at(&events, t(0)).unwrap()));
        store.close().unwrap();
    }
    g.finish();
}

fn search(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedConfig {
        fsync: FsyncPolicy::Never,
        ..EmbeddedConfig::new(dir.path())
    }
    .open()
    .unwrap();
    for base in (0..SEARCH_EVENTS).step_by(BATCH) {
        store.append_at(&batch(base), t(0)).unwrap();
    }
    store.refresh().unwrap();
    let mut g = c.benchmark_group("search_100k");
    g.measurement_time(Duration::from_secs(5));
    let cases = [
        (
            "fields_and_top100_desc",
            SearchRequest {
                limit: 100,
                ..SearchRequest::new("user.name:alice AND event.outcome:failure")
            },
        ),
        (
            "phrase_top100_asc",
            SearchRequest {
                limit: 100,
                sort: SortOrder::Asc,
                ..SearchRequest::new("\"Failed password\" AND NOT user.name:bob")
            },
        ),
        (
            "count_and_histogram_1h",
            SearchRequest {
                limit: 0,
                histogram: Some(TimeDelta::hours(1)),
                ..SearchRequest::new("event.outcome:failure")
            },
        ),
        (
            "time_range_page_10",
            SearchRequest {
                from: Some(t(1000)),
                to: Some(t(2000)),
                offset: 500,
                limit: 10,
                ..SearchRequest::new("*")
            },
        ),
    ];
    for (name, req) in cases {
        let r = store.search(&req).unwrap();
        eprintln!("{name}: total {} hits {}", r.total, r.hits.len());
        g.bench_function(name, |b| b.iter(|| store.search(&req).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, ingest, search);
criterion_main!(benches);
