//! Memory of index merges as a function of `index_merge_max_docs` (issue #15, finding 12):
//!
//! ```text
//! cargo run --release -p mamori-store --example merge_mem -- EVENTS CAP [CAP…]
//! ```
//!
//! Stores EVENTS lines of the fleet mix of `mamori bench ingest` (fsync off) with merging held
//! back (a cap of 10,000 events and a commit every 100,000, so segments of ~50,000), then for
//! each CAP copies that store, reopens the copy with `index_merge_max_docs = CAP`, lets tantivy
//! merge until the segment count settles — appending one event and committing every second, as
//! `serve` does under load (each commit reloads the searcher, which lets go of segments merged
//! away) — and prints the segments left and the peaks of anonymous and file-backed memory
//! (RssAnon and RssFile sampled every 10 ms) over the steady memory of the reopened store.
//! Linux only.
//!
//! Measured (release, 1.5 M events in 34 segments of ≤ 54 k, anonymous memory only): merging up
//! to 10 M (one merge of 1.4 M events) +0 MiB, 1 M +1 MiB, 250 k +6 MiB over ~105–115 MiB —
//! merges do not grow the heap (the correlation state's snapshots did). What they grow is
//! file-backed: every page of a merge's inputs is read through their maps and stays resident
//! until the merged inputs are dropped. 3 M events in 64 segments, cap 1 M: tantivy's log policy
//! merged one whole level (2.94 M events) at once, file-backed +97 MiB, RSS peak 297 MiB; with
//! merges capped at 1 M events in (`CappedMergePolicy`) +49 MiB, RSS peak 215 MiB.

use std::path::Path;
use std::time::{Duration, Instant};

use mamori_event::{Interner, Origin, Transport};
use mamori_store::{EmbeddedConfig, EventStore, FsyncPolicy};

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn segments(index: &Path) -> Vec<u64> {
    let meta: serde_json::Value = std::fs::read(index.join("meta.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut docs: Vec<u64> = meta["segments"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["max_doc"].as_u64()).collect())
        .unwrap_or_default();
    // The one-event segments of the example's own commits are not what it waits for.
    docs.retain(|&d| d > 1_000);
    docs.sort_unstable_by(|a, b| b.cmp(a));
    docs
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

fn config(dir: &Path, cap: u64) -> EmbeddedConfig {
    EmbeddedConfig {
        fsync: FsyncPolicy::Never,
        index_commit_every: 100_000,
        index_merge_max_docs: cap,
        ..EmbeddedConfig::new(dir)
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let Some((&n, caps)) = args.split_first() else {
        eprintln!("usage: merge_mem EVENTS CAP [CAP…]");
        std::process::exit(2);
    };
    let mut names = Interner::new();
    let origin = Origin::Network {
        peer: ([10, 0, 0, 1], 514).into(),
        transport: Transport::Tcp,
    };
    let tmp = tempfile::tempdir().expect("temporary directory");
    let base = tmp.path().join("base");
    let store = config(&base, 10_000).open().expect("store opens");
    let mut i = 0u64;
    while i < n {
        let batch: Vec<_> = (i..(i + 512).min(n))
            .map(|k| {
                let line = mamori_sim::load::fleet_syslog_line(k);
                mamori_ingest::parse_syslog_line(line.as_bytes(), origin.clone(), &mut names)
                    .expect("the fleet mix parses")
            })
            .collect();
        store.append_at(&batch, chrono::Utc::now()).expect("append");
        i += batch.len() as u64;
    }
    store.refresh().expect("refresh");
    store.close().expect("close");
    let before = segments(&base.join("index"));
    println!(
        "{n} events in {} segments (largest {:?})",
        before.len(),
        before.first()
    );
    for (k, &cap) in caps.iter().enumerate() {
        let dir = tmp.path().join(format!("cap{k}"));
        copy_dir(&base, &dir);
        let store = config(&dir, cap).open().expect("store reopens");
        std::thread::sleep(Duration::from_millis(500));
        let steady = status_kib("RssAnon:");
        let steady_file = status_kib("RssFile:");
        // One small append and commit asks tantivy for merge candidates.
        let line = mamori_sim::load::fleet_syslog_line(n);
        let e = mamori_ingest::parse_syslog_line(line.as_bytes(), origin.clone(), &mut names)
            .expect("the fleet mix parses");
        store.append_at(&[e], chrono::Utc::now()).expect("append");
        store.refresh().expect("refresh");
        let (mut peak, mut last_change) = (steady, Instant::now());
        let mut peak_file = steady_file;
        let mut peak_rss = steady + steady_file;
        let mut segs = segments(&dir.join("index"));
        let t = Instant::now();
        let mut next = n + 1;
        let mut last_commit = Instant::now();
        while last_change.elapsed() < Duration::from_secs(5)
            && t.elapsed() < Duration::from_secs(600)
        {
            std::thread::sleep(Duration::from_millis(10));
            // One event and a commit every second, as `serve` commits under load: each commit
            // reloads the searcher, which lets go of segments merged away.
            if last_commit.elapsed() >= Duration::from_secs(1) {
                let line = mamori_sim::load::fleet_syslog_line(next);
                let e =
                    mamori_ingest::parse_syslog_line(line.as_bytes(), origin.clone(), &mut names)
                        .expect("the fleet mix parses");
                store.append_at(&[e], chrono::Utc::now()).expect("append");
                store.refresh().expect("refresh");
                (next, last_commit) = (next + 1, Instant::now());
            }
            let (anon, file) = (status_kib("RssAnon:"), status_kib("RssFile:"));
            peak = peak.max(anon);
            peak_file = peak_file.max(file);
            peak_rss = peak_rss.max(anon + file);
            let now = segments(&dir.join("index"));
            if now != segs {
                (segs, last_change) = (now, Instant::now());
            }
        }
        println!(
            "cap {cap}: {} segments left (largest {:?}) after {:.1}s; anonymous memory {} MiB steady, peak {} MiB (+{} MiB); file-backed {} MiB steady, peak {} MiB (+{} MiB); RSS peak {} MiB",
            segs.len(),
            segs.first(),
            t.elapsed().as_secs_f64() - 5.0,
            steady >> 10,
            peak >> 10,
            (peak.saturating_sub(steady)) >> 10,
            steady_file >> 10,
            peak_file >> 10,
            (peak_file.saturating_sub(steady_file)) >> 10,
            peak_rss >> 10
        );
        store.close().expect("close");
        std::fs::remove_dir_all(&dir).ok();
    }
}
