//! Memory of index merges as a function of `index_merge_max_docs` (issue #15, finding 12):
//!
//! ```text
//! cargo run --release -p mamori-store --example merge_mem -- EVENTS CAP [CAP…]
//! ```
//!
//! Stores EVENTS lines of the fleet mix of `mamori bench ingest` (fsync off) with merging held
//! back (a cap of 10,000 events and a commit every 100,000, so segments of ~50,000), then for
//! each CAP copies that store, reopens the copy with `index_merge_max_docs = CAP`, lets tantivy
//! merge until the segment count settles and prints the segments left and the peak anonymous
//! memory (RssAnon sampled every 10 ms) over the steady memory of the reopened store. Linux only.
//!
//! Measured (release, 1.5 M events in 34 segments of ≤ 54 k): merging up to 10 M (one merge
//! of 1.4 M events) +0 MiB, 1 M +1 MiB, 250 k +6 MiB over ~105–115 MiB — merges are not what
//! makes `bench ingest`'s memory grow (the correlation state's snapshots were).

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
        // One small append and commit asks tantivy for merge candidates.
        let line = mamori_sim::load::fleet_syslog_line(n);
        let e = mamori_ingest::parse_syslog_line(line.as_bytes(), origin.clone(), &mut names)
            .expect("the fleet mix parses");
        store.append_at(&[e], chrono::Utc::now()).expect("append");
        store.refresh().expect("refresh");
        let (mut peak, mut last_change) = (steady, Instant::now());
        let mut segs = segments(&dir.join("index"));
        let t = Instant::now();
        while last_change.elapsed() < Duration::from_secs(5)
            && t.elapsed() < Duration::from_secs(600)
        {
            std::thread::sleep(Duration::from_millis(10));
            peak = peak.max(status_kib("RssAnon:"));
            let now = segments(&dir.join("index"));
            if now != segs {
                (segs, last_change) = (now, Instant::now());
            }
        }
        println!(
            "cap {cap}: {} segments left (largest {:?}) after {:.1}s; anonymous memory {} MiB steady, peak {} MiB (+{} MiB)",
            segs.len(),
            segs.first(),
            t.elapsed().as_secs_f64() - 5.0,
            steady >> 10,
            peak >> 10,
            (peak.saturating_sub(steady)) >> 10
        );
        store.close().expect("close");
        std::fs::remove_dir_all(&dir).ok();
    }
}
