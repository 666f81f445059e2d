//! The shared suite against every backend in this crate.

use mamori_store::testsuite::{alert_store_suite, event_store_suite};
use mamori_store::{MemoryAlertStore, MemoryEventStore, SqliteAlertStore};

use crate::common::open;

#[test]
fn memory_event_store_passes_the_suite() {
    event_store_suite(|| (MemoryEventStore::new(), ()));
}

#[test]
fn embedded_event_store_passes_the_suite() {
    event_store_suite(|| {
        let dir = tempfile::tempdir().unwrap();
        (open(dir.path()), dir)
    });
}

#[test]
fn memory_alert_store_passes_the_suite() {
    alert_store_suite(|| (MemoryAlertStore::new(), ()));
}

#[test]
fn sqlite_alert_store_passes_the_suite() {
    alert_store_suite(|| {
        let dir = tempfile::tempdir().unwrap();
        (
            SqliteAlertStore::open(&dir.path().join("mamori.sqlite")).unwrap(),
            dir,
        )
    });
}
