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
//! The limit is read by glibc when the process starts, so it has to be in the environment
//! before `main`: the process re-executes itself once with `MALLOC_ARENA_MAX=2` unless the
//! variable (or `GLIBC_TUNABLES`) is already set — an operator's own choice always wins.

/// Re-executes the current binary with `MALLOC_ARENA_MAX=2` if it is not set yet. Returns only
/// if the variable is already set or the re-execution failed (then the process carries on with
/// glibc's default, which is correct, only larger).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn limit() {
    use std::os::unix::process::CommandExt as _;
    const VAR: &str = "MALLOC_ARENA_MAX";
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
        .exec();
    eprintln!("mamori: warning: cannot re-execute with {VAR}=2 ({err}); memory use may be higher");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn limit() {}
