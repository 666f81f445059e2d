//! The case store through its public API only: the shared backend suite
//! (`mamori_cases::testsuite`) on SQLite files. PostgreSQL runs the same suite in
//! `mamori-cluster`.

use mamori_cases::CaseStore;

/// A fresh SQLite case database in a temporary directory; every call of the opener opens the
/// same file again (a restart, or a second server on the same file). On tmpfs when there is
/// one: the store syncs every commit, and 1,500 syncs on a busy disk take most of a minute.
fn sqlite() -> Option<(impl Fn() -> CaseStore, tempfile::TempDir)> {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let path = dir.path().join("incidents.db");
    Some((move || CaseStore::open(&path).unwrap(), dir))
}

mamori_cases::case_store_suite!(sqlite);
