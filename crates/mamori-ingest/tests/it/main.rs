//! Integration tests of the readers: corpus files, bad input, robustness.

mod bad_input;
mod corpus;
mod openssh;
mod robustness;
mod server_logs;
mod vendors;

use std::path::{Path, PathBuf};

use mamori_ingest::{read_file, Event, FileReport, ReadOptions};

/// The shared corpus (`MAMORI_CORPUS`, default `../shared/corpus` from the project root), or
/// `None` after printing why the test is skipped.
pub(crate) fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("MAMORI_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/corpus"
            ))
        });
    if p.is_dir() {
        Some(p)
    } else {
        println!("skipped: corpus not found at {}", p.display());
        None
    }
}

pub(crate) fn read_all(path: &Path) -> (FileReport, Vec<Event>) {
    let mut events = Vec::new();
    let report = read_file(path, &ReadOptions::default(), &mut |e| events.push(e));
    (report, events)
}
