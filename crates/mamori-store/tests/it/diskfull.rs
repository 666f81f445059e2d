//! Disk full under the index (issue #15, finding 2): the index must never claim what it does
//! not hold, must catch up from the log once space returns, and closing must not hang.
//!
//! A real full filesystem: a small tmpfs mounted on the store's `index/` directory (the log
//! stays on the ordinary disk), grown with `mount -o remount,size=…` to give space back. This
//! needs root; without it the tests say they were skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mamori_store::testsuite::{ssh_event, t};
use mamori_store::{EmbeddedEventStore, EventStore, SearchRequest};

use crate::common::small_config;

/// A tmpfs mounted at a path, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(SmallFs(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {} to {size}", self.0.display());
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const EVENTS: u64 = 50_001;

fn append_all(s: &EmbeddedEventStore) {
    let mut i = 0;
    while i < EVENTS {
        let n = (EVENTS - i).min(500);
        let batch: Vec<_> = (i..i + n)
            .map(|k| {
                ssh_event(
                    k,
                    &format!("user{k}"),
                    "failure",
                    "203.0.113.5",
                    Some(t(k as i64)),
                )
            })
            .collect();
        s.append_at(&batch, t(0)).unwrap();
        i += n;
    }
}

fn searchable(s: &EmbeddedEventStore) -> u64 {
    s.search(&SearchRequest {
        limit: 0,
        ..SearchRequest::new("*")
    })
    .unwrap()
    .total
}

/// Waits until the index reports a failure (the indexer runs in its own thread).
fn wait_failing(s: &EmbeddedEventStore) {
    let until = Instant::now() + Duration::from_secs(60);
    while s.stats().unwrap().index_error.is_none() {
        assert!(
            Instant::now() < until,
            "the index never reported the full disk"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn full_index_disk_is_honest_and_catches_up_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = SmallFs::mount(&dir.path().join("index"), "256k") else {
        return;
    };
    let s = small_config(dir.path()).open().unwrap();
    // Every append is acknowledged: the log (on the ordinary disk) has it.
    append_all(&s);
    assert!(
        s.refresh().is_err(),
        "refresh cannot succeed on a full index"
    );
    wait_failing(&s);
    let st = s.stats().unwrap();
    assert_eq!(st.last_seq, Some(EVENTS));
    assert!(st.index_disk_full, "the failure is a full disk: {st:?}");
    assert!(st.index_errors > 0);
    // Honest: what the index says it covers is exactly what it holds, and lags the log.
    let held = s.indexed_seqs().unwrap();
    assert_eq!(held, (1..=st.indexed_seq).collect::<Vec<_>>());
    assert!(
        st.indexed_seq < EVENTS,
        "the index claims {}",
        st.indexed_seq
    );

    fs.resize("64m");
    s.refresh().expect("the index recovers once space returns");
    let st = s.stats().unwrap();
    assert_eq!(st.indexed_seq, EVENTS);
    assert_eq!(st.index_error, None);
    assert_eq!(searchable(&s), EVENTS);
    assert_eq!(s.indexed_seqs().unwrap(), (1..=EVENTS).collect::<Vec<_>>());
    s.close().unwrap();

    let s = small_config(dir.path()).open().unwrap();
    assert_eq!(s.open_report().reindexed, 0, "the recovery was committed");
    assert_eq!(searchable(&s), EVENTS);
}

#[test]
fn closing_on_a_full_index_disk_is_bounded_and_the_next_open_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = SmallFs::mount(&dir.path().join("index"), "256k") else {
        return;
    };
    let s = small_config(dir.path()).open().unwrap();
    append_all(&s);
    wait_failing(&s);
    let t0 = Instant::now();
    drop(s);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "closing took {:?}",
        t0.elapsed()
    );
    // Still full: the store opens anyway (the log is the truth) and reports the index.
    let s = small_config(dir.path()).open().unwrap();
    assert_eq!(s.stats().unwrap().last_seq, Some(EVENTS));
    assert!(s.stats().unwrap().index_error.is_some());
    drop(s);
    fs.resize("64m");
    let s = small_config(dir.path()).open().unwrap();
    assert_eq!(s.stats().unwrap().index_error, None);
    assert_eq!(searchable(&s), EVENTS);
    assert_eq!(s.indexed_seqs().unwrap(), (1..=EVENTS).collect::<Vec<_>>());
}
