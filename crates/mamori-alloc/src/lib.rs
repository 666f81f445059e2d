//! Allocator upkeep for `mamori serve` (issue #15, finding 12: memory must not keep the
//! high-water mark of a burst).
//!
//! glibc returns freed memory to the kernel only from the top of a heap (and blocks of its
//! own mapping); what is freed in the middle stays resident. After a burst — a saturated
//! pipeline holds its full budgets of events, batches and index documents, spread over many
//! small blocks — the server kept the burst's memory for good although nothing used it:
//! `mamori bench ingest --seconds 60` stayed at ~187 MiB anonymous in the quiet phase after
//! saturation; trimming every 5 s brought it to ~160 MiB (figures in the README).
//! [`release_free_memory`] is `malloc_trim(0)`: every arena, every run of whole free pages.
//!
//! This crate exists so that the rest of the workspace keeps `unsafe_code = "forbid"`: it
//! holds the single foreign call, which takes no pointer and has no precondition.

use std::time::Duration;

/// Hands the allocator's free pages back to the kernel. Returns whether any memory was
/// released. A no-op returning `false` where the allocator is not glibc's (musl, macOS): those
/// return freed memory themselves.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointer, has no precondition and is MT-safe: glibc takes
    // each arena's lock while it walks that arena's free lists (malloc_trim(3)).
    #[allow(unsafe_code)]
    let released = unsafe { libc::malloc_trim(0) };
    released == 1
}

/// See the glibc version: nothing to do elsewhere.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

/// How often the server's trimming thread calls [`release_free_memory`].
pub const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Starts a thread (`mamori-trim`) that calls [`release_free_memory`] every `every`. One call
/// walks the free lists under each arena's lock in turn; what it returns is faulted in again
/// only when it is used again.
pub fn trim_periodically(every: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("mamori-trim".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            release_free_memory();
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimming is process-wide: the tests that trim must not run at the same time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn rss_anon_kib() -> Option<u64> {
        std::fs::read_to_string("/proc/self/status")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The burst this crate is for: many small blocks, most freed, a few kept live between
    /// them so the heap cannot shrink from its top. Trimming gives the free pages back.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trimming_returns_the_pages_a_burst_left_behind() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        // On a thread of its own, so the blocks come from one arena that other tests do not
        // touch while this one measures.
        std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = (0..100_000).map(|i| vec![i as u8; 1000]).collect();
            let keep: Vec<Vec<u8>> = blocks.iter_mut().step_by(200).map(std::mem::take).collect();
            drop(blocks);
            let before = rss_anon_kib().expect("RssAnon in /proc/self/status");
            release_free_memory();
            let after = rss_anon_kib().expect("RssAnon in /proc/self/status");
            // ~95 MiB were freed between the kept blocks; most of it must go back.
            assert!(
                before.saturating_sub(after) > 50 << 10,
                "RssAnon {before} KiB before trimming, {after} KiB after"
            );
            assert_eq!(keep.len(), 500);
            assert!(keep.iter().all(|b| b.len() == 1000));
        })
        .join()
        .expect("the measuring thread");
    }

    /// Trimming while other threads allocate and free is what the server does: glibc
    /// serialises it per arena, and every block must keep its contents.
    #[test]
    fn trimming_beside_allocating_threads_is_safe() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let trimmer = std::thread::spawn(move || {
            let mut calls = 0u32;
            while !s.load(Ordering::Relaxed) {
                release_free_memory();
                calls += 1;
            }
            calls
        });
        for round in 0..50usize {
            let v: Vec<Vec<u8>> = (0..2_000).map(|i| vec![(i + round) as u8; 300]).collect();
            assert!(v
                .iter()
                .enumerate()
                .all(|(i, b)| b.iter().all(|&x| x == (i + round) as u8)));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(trimmer.join().expect("trimmer") > 0);
        // The periodic thread starts (with a period long enough not to run in this test).
        trim_periodically(Duration::from_secs(3600)).expect("thread starts");
    }
}
