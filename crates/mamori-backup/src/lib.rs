//! Backup integrity checks.
//!
//! Ransomware crews delete or encrypt backups first; many victims find their backups useless on
//! the day they need them. This crate checks, on a schedule and on demand, that each configured
//! backup can still be restored:
//!
//! * restic and Borg repositories through their own command-line tools with `--json`, spawned
//!   with typed arguments (never a shell), a timeout and the password passed by environment;
//! * plain directories and NAS shares through an Ed25519-signed manifest of file hashes and
//!   signs of encryption (entropy, lost magic bytes, ransom notes, mass renames);
//! * a restore test of a sample of files, compared by hash;
//! * the 3-2-1 rule judged from the configured copies.
//!
//! # The key design decision
//!
//! A failed check is a *value*, not an error: [`CheckRecord`] with [`CheckStatus::Failed`] and
//! findings that each carry a stable code and an English and a Japanese sentence. Errors
//! ([`Error`]) are kept for the machinery (configuration, the history database, key files).
//! Every result is stored in [`History`] so the next run can see a repository that shrank and
//! the monthly report can list a month of results.

mod error;
mod history;
mod model;

pub use error::{Error, Result};
pub use history::{History, HISTORY_FILE};
pub use model::{CheckRecord, CheckStatus, Finding};
mod borg;
mod check;
mod config;
pub mod content;
mod directory;
mod exec;
mod restic;
pub mod rule321;

pub use check::{worst, Checker};
pub use config::{parse_duration, validate_all, BackupConfig, BackupKind, BackupsSettings};
pub use directory::{manifest_key, manifest_paths, Manifest};
