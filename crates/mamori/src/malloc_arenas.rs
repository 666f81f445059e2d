//! Fewer glibc malloc arenas for the server (`serve`, and `bench ingest` which runs it).
//!
//! glibc gives each thread that contends for the allocator its own arena, up to 8 per core, and
//! memory freed into one arena is not reused by another. `mamori serve` allocates events on the
//! tokio workers and frees them on the writer, detector and indexer threads while tantivy's
//! indexing and merge threads churn through their own buffers, so resident memory kept growing
//! with the volume stored although every queue is bounded (issue #15, finding 12). Measured
//! with `mamori bench ingest --seconds 60` on one (shared, 2-core) machine, the same build
//! with and without the variable: 236 MiB resident at the end of saturation with glibc's
//! default, 178 MiB with two arenas, for about the same CPU per event.
//!
//! Large blocks are kept out of the arenas too (`MALLOC_MMAP_THRESHOLD_`, 256 KiB): glibc
//! raises its mmap threshold to the size of every mmapped block freed (up to 32 MiB), after
//! which tantivy's 1 MiB indexing pages and the correlation state's change sets (megabytes,
//! every 5 s) come from the arenas and what they leave behind is rarely returned. A fixed
//! threshold gives every block of 256 KiB or more its own mapping, returned on free (issue
//! #15: the distinct-sources soak, figures in the README).
//!
//! The limits are read by glibc when the process starts, so they have to be in the environment
//! before `main`: the process re-executes itself once with `MALLOC_ARENA_MAX=2` and
//! `MALLOC_MMAP_THRESHOLD_=262144` unless `MALLOC_ARENA_MAX` (or `GLIBC_TUNABLES`) is already
//! set — an operator's own choice always wins.
//!
//! glibc also keeps what is freed in the middle of its heaps resident: after a burst (a
//! saturated pipeline holds its full 16 MiB budgets of events, batches and index documents,
//! spread over many small blocks) the process kept the high-water mark of the burst for good.
//! [`trim_periodically`] hands free pages back every 5 s (`mamori_alloc`, `malloc_trim`), so
//! memory follows what is live instead.

/// Re-executes the current binary with `MALLOC_ARENA_MAX=2` (and a fixed mmap threshold) if it
/// is not set yet. Returns only if the variable is already set or the re-execution failed (then
/// the process carries on with glibc's default, which is correct, only larger).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn limit() {
    use std::os::unix::process::CommandExt as _;
    const VAR: &str = "MALLOC_ARENA_MAX";
    const MMAP: &str = "MALLOC_MMAP_THRESHOLD_";
    if std::env::var_os(VAR).is_some() || std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let (Some(arg0), Ok(exe)) = (args.next(), std::env::current_exe()) else {
        return;
    };
    let err = std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env(VAR, "2")
        .env(
            MMAP,
            std::env::var_os(MMAP).unwrap_or_else(|| "262144".into()),
        )
        .exec();
    eprintln!("mamori: warning: cannot re-execute with {VAR}=2 ({err}); memory use may be higher");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn limit() {}

/// Starts the thread that hands free heap pages back to the kernel every
/// [`mamori_alloc::TRIM_EVERY`].
pub(crate) fn trim_periodically() {
    if let Err(e) = mamori_alloc::trim_periodically(mamori_alloc::TRIM_EVERY) {
        eprintln!("mamori: warning: cannot start the allocator trimming thread ({e})");
    }
}
