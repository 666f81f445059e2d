//! End-to-end tests: run the real `mamori` binary in temporary directories.

mod agent;
mod backup;
mod cluster;
mod cluster_ha;
mod cluster_leaf;
mod console;
mod content;
mod correlation;
mod diskfull;
mod evidence;
mod fidelity;
mod formats;
mod hardening;
mod hunt;
mod incidents;
mod live_analytics;
mod reports;
mod rule_tests;
mod scan;
mod scenarios;
mod serve;
mod sources;
mod state_caps;
mod vault;
mod vendor;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn mamori(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mamori"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run mamori")
}

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("MAMORI_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/corpus"));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: corpus not found at {}", p.display());
        None
    }
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
