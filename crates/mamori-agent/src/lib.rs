//! `mamori agent`: a light host agent — log collection with store-and-forward, file integrity
//! monitoring and ransomware behaviour detection, shipped to a `mamori serve`.
//!
//! # The key design decision: the disk buffer is the only queue, and positions ride in it
//!
//! Everything collected (file lines, journald entries, the agent's own file and ransomware
//! events) is sealed into numbered batches that are written — and fsynced — to a bounded
//! on-disk buffer ([`spool`]) *before* anything is sent. Each batch carries the collector
//! positions after it (file offsets, journald cursor), so a batch and "how far we read" are
//! one write: a crash re-reads nothing that is buffered and skips nothing that is not. A
//! sender thread drains the buffer in order and removes a batch only after the server has
//! answered that it is durable; the server keeps, per agent, the last batch number it stored,
//! so a batch sent again after a crash is acknowledged without being stored twice. When the
//! server is away the buffer grows up to its bound, then drops its oldest batches and counts
//! them — the count is in every batch, never silent.
//!
//! # Invariants
//!
//! - **Nothing leaves the buffer unacknowledged**; **batch numbers are never reused**.
//! - **Nothing from a watched file or a log reaches a shell**: journalctl and kill take argv
//!   and typed values (a PID is a number read from `/proc`).
//! - **Bad input never panics** the agent: unreadable files, torn buffer frames and malformed
//!   journal lines are skipped and reported.

pub mod batch;
pub mod client;
pub mod config;
pub mod fim;
pub mod inventory;
pub mod journald;
pub mod ransom;
pub mod respond;
pub mod run;
pub mod spool;
pub mod tail;

use std::path::PathBuf;

pub use config::AgentConfig;

/// Why the agent could not do something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("server: {0}")]
    Server(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// This host's name (`/proc/sys/kernel/hostname`, else `HOSTNAME`, else `localhost`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
