use mamori_store::{EmbeddedConfig, EmbeddedEventStore, FsyncPolicy};

/// Small segments so retention has units to remove; the default (safe) fsync policy.
pub(crate) fn small_config(dir: &std::path::Path) -> EmbeddedConfig {
    EmbeddedConfig {
        segment_max_bytes: 4096,
        index_heap_bytes: 15 << 20,
        ..EmbeddedConfig::new(dir)
    }
}

pub(crate) fn open(dir: &std::path::Path) -> EmbeddedEventStore {
    small_config(dir).open().unwrap()
}

#[allow(dead_code)]
pub(crate) fn open_with(dir: &std::path::Path, fsync: FsyncPolicy) -> EmbeddedEventStore {
    EmbeddedConfig {
        fsync,
        ..small_config(dir)
    }
    .open()
    .unwrap()
}
