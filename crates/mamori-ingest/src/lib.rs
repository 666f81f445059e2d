//! Streaming log readers: files in, [`mamori_event::Event`]s out.
//!
//! # Key design decision: detect by content, stream everything, never stop at a bad record
//!
//! A hunt is pointed at a directory someone copied off a compromised host: rotated logs,
//! `.gz` archives, EVTX exports, CloudTrail dumps, junk. So a reader
//!
//! * picks the format from the **first kilobytes of content** ([`detect_format`]), with gzip
//!   unwrapped transparently (by magic bytes, not by the `.gz` extension); the file name only
//!   breaks ties;
//! * **streams** with bounded memory: text line by line through a line reader whose buffer never
//!   grows past [`ReadOptions::max_record_bytes`] (a longer line is skipped to the next newline
//!   and reported as `line too long`), EVTX chunk by chunk, JSON arrays element by element once
//!   a document is larger than 64 MiB;
//! * turns every unreadable record into a [`ReadError`] carrying the path and line / record /
//!   byte offset, and **carries on with the next record**. Only an I/O error (a truncated gzip
//!   stream, say) ends a file early, and that is reported too. The parsers never panic on any
//!   input (no unchecked indexing; fuzzed in `fuzz/` and smoke-tested in `tests/it/robustness.rs`).
//!
//! The per-format line parsers are public ([`parse_syslog_line`], [`parse_access_log_line`],
//! [`parse_json_object`], [`parse_auditd_line`]) so the network listener can reuse them.
//!
//! # Field vocabulary
//!
//! Names are ECS where ECS has one, **plus** the original names for Windows and CloudTrail so that
//! SigmaHQ rules resolve either way (details in the per-module docs):
//!
//! * **EVTX / Windows JSON**: System fields at top level (`Provider_Name`, `EventID`, `Channel`,
//!   `Computer`, `TimeCreated`, `Security_UserID`, `Execution_ProcessID`, …), `EventData` names at
//!   top level, unnamed `Data` as `Data`, `UserData` leaves at top level; ECS copies `host.name`,
//!   `event.code`, `user.name`, `source.ip`, `process.command_line`, `process.executable`,
//!   `event.outcome` (4624/4625).
//! * **CloudTrail**: every key flattened with dots (`userIdentity.arn`), ECS copies
//!   `event.action`, `event.outcome`, `user.name`, `source.ip`.
//! * **syslog**: `host.name`, `process.name`, `process.pid`, `message`, `log.syslog.*`; the
//!   Linux authentication programs add `event.action` / `event.outcome` / `event.category`,
//!   `user.name`, `user.target.name`, `source.ip`, `source.port`, `process.command_line` and
//!   `mamori.auth.method`. `event.action` values: `ssh_login`, `ssh_invalid_user`,
//!   `ssh_disconnect`, `ssh_max_auth_attempts`, `ssh_reverse_mapping_failed`,
//!   `ssh_no_identification`, `ssh_connection`, `ssh_subsystem`, `authentication_failure`,
//!   `sudo`, `su`,
//!   `session_opened`, `session_closed`, `user_created`, `user_deleted`, `user_modified`,
//!   `group_created`, `group_deleted`, `user_added_to_group`, `password_changed`, `cron_exec`.
//! * **syslog payloads** ([`syslog`]'s `payload` module): a message body that is an access-log
//!   line or a JSON object becomes that format's event (its `Format` and logsource, so web rules
//!   see web lines however they arrived) with the syslog header kept as `log.syslog.*`
//!   (`log.syslog.hostname` = the sender) and `host.name`/`process.*`/time where the payload
//!   lacks them; journald JSON records and Docker json-file lines are read the same way.
//! * **nginx / Apache error logs**: `log.level`, `process.pid`, `process.thread.id`,
//!   `source.ip`/`port`, `http.request.method`, `url.*` (the request, or ModSecurity's `uri`),
//!   `url.domain`, `error.code` (`AH…`), `error.message`, the whole text in `message`,
//!   `event.dataset` `nginx.error`/`apache.error`, logsource service `nginx`/`apache`.
//! * **web access logs / IIS**: ECS (`source.ip`, `url.path`, `http.response.status_code`, …)
//!   plus the Sigma webserver taxonomy (`c-ip`, `cs-method`, `cs-uri-stem`, `cs-uri-query`,
//!   `sc-status`, `cs-user-agent`, `c-useragent`, `cs-referer`, `cs-username`, `cs-host`,
//!   `c-uri`, `cs-uri`, `c-uri-extension`).
//! * **appliance and vendor formats** (in syslog or headerless; `vendor` module): FortiGate and
//!   other Fortinet key=value, Cisco ASA/FTD/PIX, Palo Alto CSV, SonicWall, Sophos, Check Point,
//!   OpenVPN, Ivanti/Pulse, CEF, LEEF, generic key=value, Windows NPS/RRAS/RD Gateway: the
//!   vendor's own names plus the normalisation contract (`event.category`, `event.outcome`,
//!   `event.action` from a vendor-neutral vocabulary such as `vpn_login`, `admin_login`,
//!   `vpn_tunnel_up`, `config_change`; `user.name`, `source.ip`, `observer.vendor`,
//!   `observer.product`, `mamori.format`), documented in the `vendor` module.
//! * **auditd**: one event per audit serial; `type` (list of record types), plain names
//!   (`syscall`, `exe`, `comm`, `key`, `a0`…, `name`) and type-qualified ones (`EXECVE.a0`),
//!   `process.command_line` from the EXECVE arguments (hex decoded).
//!
//! # Nothing misread in silence
//!
//! A [`FileReport`] says how a file was read: the format and why it was chosen
//! ([`explain_bytes`]: which vote or signature), how many lines were read only as generic text
//! (`unparsed`), which expected fields records lacked (`missing`: timestamp, HTTP status, a JSON
//! payload that did not parse), what was found inside records (`embedded`), and `warnings` — every
//! file read as generic text gets one, naming what its lines resemble (key=value, CEF, CSV, …)
//! when they share a shape Mamori does not parse. [`parse_syslog_line_info`] gives the same per
//! line ([`LineInfo`]) to the network listeners.
//!
//! # Syslog years
//!
//! RFC 3164 timestamps carry no year. For files the year is the year of the file's
//! modification time, minus one if the first timestamp's month lies after the mtime's month
//! (a file written in January that starts in December), and it is incremented whenever the
//! month goes back by more than six (December → January) within the file. Lines parsed without
//! a file ([`parse_syslog_line`]) take the current year, minus one if that puts them more than
//! a month in the future. Times without a zone are taken as UTC.

mod access;
mod auditd;
mod cef;
mod detect;
mod evtx_reader;
mod input;
mod json;
mod kv;
mod syslog;
mod vendor;
mod windows;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use mamori_event::{Event, Format, Interner, Origin};

pub use access::{parse_access_log_line, parse_iis_line, IisFields};
pub use auditd::{auditd_event, parse_auditd_line, AuditdRecord};
pub use detect::{detect_bytes, detect_format, explain_bytes, Detection, Sniffed};
pub use json::{parse_json_object, parse_json_value};
pub use syslog::{
    parse_syslog_line, parse_syslog_line_info, parse_syslog_line_with_year, LineInfo, YearHint,
};

/// Errors of the per-line parsers. Reading a file reports [`ReadError`]s instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JSON value is not an object")]
    NotAnObject,
    #[error("not an access-log line")]
    NotAccessLog,
    #[error("not an auditd record")]
    NotAuditd,
    #[error("empty line")]
    Empty,
    #[error("EVTX: {0}")]
    Evtx(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default for [`ReadOptions::max_record_bytes`].
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// How many errors a [`FileReport`] keeps; the rest are only counted.
pub const MAX_KEPT_ERRORS: usize = 100;

#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Forced format (`--format`); `None` detects it from the content.
    pub format: Option<Format>,
    /// Longer lines or records are reported as errors and skipped, never buffered whole.
    pub max_record_bytes: usize,
    /// Worker threads for one EVTX file. 1 by default: the CLI parallelises across files.
    pub evtx_threads: usize,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            format: None,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            evtx_threads: 1,
        }
    }
}

/// A record or file that could not be read, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub path: PathBuf,
    pub line: Option<u64>,
    pub record: Option<u64>,
    pub offset: Option<u64>,
    pub message: String,
}

impl ReadError {
    pub fn file(path: &Path, message: impl Into<String>) -> ReadError {
        ReadError {
            path: path.to_path_buf(),
            line: None,
            record: None,
            offset: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ReadError {
    /// `path:line: message`, `path@offset: message` (with `record N: ` in front of the message
    /// when the record number is known), or `path: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match (self.line, self.offset) {
            (Some(l), _) => write!(f, "{p}:{l}: ")?,
            (None, Some(o)) => write!(f, "{p}@{o}: ")?,
            (None, None) => write!(f, "{p}: ")?,
        }
        if let Some(r) = self.record {
            write!(f, "record {r}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReadError {}

/// What reading one file produced.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    pub path: PathBuf,
    pub format: Option<Format>,
    pub events: u64,
    /// Bytes of (decompressed) input consumed.
    pub bytes: u64,
    /// The first [`MAX_KEPT_ERRORS`] errors.
    pub errors: Vec<ReadError>,
    /// All errors, including those not kept in `errors`.
    pub error_count: u64,
    /// Why the file was not read at all, e.g. `unsupported format (binary)`.
    pub skipped: Option<String>,
    /// How the format was chosen: `--format`, or the sniffer's reason
    /// (`38 of the first 40 lines look like syslog lines`).
    pub detected: Option<String>,
    /// Lines read only as generic text: the line is the `message`, nothing else was understood.
    pub unparsed: u64,
    /// Expected fields that records lacked, with how many records lacked each
    /// (`timestamp`, `http status`, `json payload (did not parse)`).
    pub missing: BTreeMap<&'static str, u64>,
    /// Records of another format found inside this file's records, by format (`access-log`
    /// and `json` inside syslog messages, `error-log`).
    pub embedded: BTreeMap<&'static str, u64>,
    /// No known format matched: read one event per line with only `message`.
    pub generic_text: bool,
    /// What the operator must know about how this file was read: read as generic text (and
    /// what it resembles), most lines not understood, payloads that did not parse.
    pub warnings: Vec<String>,
}

impl FileReport {
    fn new(path: &Path) -> FileReport {
        FileReport {
            path: path.to_path_buf(),
            ..FileReport::default()
        }
    }

    pub(crate) fn count_missing(&mut self, what: &'static str) {
        *self.missing.entry(what).or_default() += 1;
    }

    pub(crate) fn count_embedded(&mut self, what: &'static str) {
        *self.embedded.entry(what).or_default() += 1;
    }

    /// Warnings derived from the counts once the file is read.
    fn conclude(&mut self, detection: Option<&Detection>) {
        if let Some(d) = detection.filter(|d| d.generic) {
            self.generic_text = true;
            let mut w = format!(
                "read as generic text ({}): one event per line, only `message` is searchable",
                d.reason
            );
            if let Some(r) = d.resembles {
                w.push_str(&format!(
                    "; the lines look like {r}, whose fields Mamori does not read"
                ));
            }
            self.warnings.push(w);
        } else if self.unparsed > 0 && self.unparsed * 2 > self.events {
            self.warnings.push(format!(
                "{} of {} lines not understood (read as generic text)",
                self.unparsed, self.events
            ));
        }
        for (what, n) in &self.missing {
            if what.ends_with("(did not parse)") {
                self.warnings
                    .push(format!("{n} records: {what}, kept as plain text"));
            } else if what.ends_with("(fields not read)") {
                self.warnings
                    .push(format!("{n} records: {what}, only `message` is searchable"));
            }
        }
    }

    fn push_error(&mut self, e: ReadError) {
        self.error_count += 1;
        if self.errors.len() < MAX_KEPT_ERRORS {
            self.errors.push(e);
        }
    }
}

/// All regular files under `paths`, recursively, sorted and de-duplicated. A path given
/// explicitly is followed even if it is a symlink; symlinks met while walking are followed only
/// to regular files, never into directories (no cycles, no escaping the tree).
pub fn discover(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<ReadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => walk_dir(p, &mut files, &mut errors),
            Ok(m) if m.is_file() => files.push(p.clone()),
            Ok(_) => errors.push(ReadError::file(p, "not a regular file or directory")),
            Err(e) => errors.push(ReadError::file(p, format!("cannot access: {e}"))),
        }
    }
    files.sort();
    files.dedup();
    (files, errors)
}

fn walk_dir(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<ReadError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ReadError::file(dir, format!("cannot read directory: {e}")));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(ReadError::file(dir, format!("cannot read directory: {e}")));
                continue;
            }
        };
        let path = entry.path();
        let ft = match entry.file_type() {
            Ok(t) => t,
            Err(e) => {
                errors.push(ReadError::file(&path, format!("cannot access: {e}")));
                continue;
            }
        };
        if ft.is_dir() {
            walk_dir(&path, files, errors);
        } else if ft.is_file() {
            files.push(path);
        } else if ft.is_symlink() {
            // Followed to a regular file only: a link to a directory could loop or leave the tree.
            if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                files.push(path);
            }
        }
    }
}

/// Shared state of one file read: where errors and events go.
pub(crate) struct Ctx<'a> {
    pub(crate) path: Arc<Path>,
    pub(crate) report: &'a mut FileReport,
    pub(crate) sink: &'a mut dyn FnMut(Event),
    pub(crate) names: Interner,
    /// The JSON fast path's buffers, reused from line to line.
    pub(crate) json: json::Scratch,
    pub(crate) opts: &'a ReadOptions,
}

impl Ctx<'_> {
    pub(crate) fn error(
        &mut self,
        line: Option<u64>,
        record: Option<u64>,
        offset: Option<u64>,
        message: impl Into<String>,
    ) {
        self.report.push_error(ReadError {
            path: self.path.to_path_buf(),
            line,
            record,
            offset,
            message: message.into(),
        });
    }

    pub(crate) fn emit(&mut self, ev: Event) {
        self.report.events += 1;
        (self.sink)(ev);
    }

    pub(crate) fn origin(&self, line: Option<u64>, record: Option<u64>, offset: u64) -> Origin {
        Origin::File {
            path: self.path.clone(),
            record,
            line,
            offset,
        }
    }
}

/// Reads one file, sending every event to `sink`. Never fails: problems are in the report.
pub fn read_file(path: &Path, opts: &ReadOptions, sink: &mut dyn FnMut(Event)) -> FileReport {
    let mut report = FileReport::new(path);
    let mut detection = None;
    let format = match opts.format {
        Some(f) => {
            report.detected = Some("given with --format".to_owned());
            f
        }
        None => match detect::sniff_path_explained(path) {
            Ok((Sniffed::Format(f), d)) => {
                report.detected = Some(d.reason.clone());
                detection = Some(d);
                f
            }
            Ok((Sniffed::Unsupported(why), _)) => {
                report.skipped = Some(format!("unsupported format ({why})"));
                return report;
            }
            Ok((Sniffed::Empty, _)) => {
                report.skipped = Some("empty file".to_owned());
                return report;
            }
            Err(e) => {
                report.skipped = Some(e.message.clone());
                report.push_error(e);
                return report;
            }
        },
    };
    report.format = Some(format);
    let mut ctx = Ctx {
        path: Arc::from(path),
        report: &mut report,
        sink,
        names: Interner::new(),
        json: json::Scratch::default(),
        opts,
    };
    match format {
        Format::Evtx => evtx_reader::read(&mut ctx),
        other => match input::open(path) {
            Ok(mut reader) => match other {
                Format::Json | Format::CloudTrail => json::read(&mut ctx, &mut reader),
                Format::Syslog => syslog::read(&mut ctx, &mut reader, input::mtime(path)),
                Format::AccessLog | Format::Iis => access::read(&mut ctx, &mut reader),
                Format::Auditd => auditd::read(&mut ctx, &mut reader),
                Format::Evtx => {}
            },
            Err(e) => ctx.error(None, None, None, format!("cannot open: {e}")),
        },
    }
    report.conclude(detection.as_ref());
    report
}

/// Reader throughput over a set of files, for `mamori bench readers`.
#[derive(Debug, Clone, Default)]
pub struct ReaderFigures {
    pub files: u64,
    pub events: u64,
    pub bytes: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl ReaderFigures {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Reads every file once (events are dropped) and measures the time.
pub fn measure_readers(files: &[PathBuf], opts: &ReadOptions) -> ReaderFigures {
    let start = Instant::now();
    let mut fig = ReaderFigures::default();
    for f in files {
        let r = read_file(f, opts, &mut |e| {
            std::hint::black_box(e);
        });
        fig.files += 1;
        fig.events += r.events;
        fig.bytes += r.bytes;
        fig.errors += r.error_count;
    }
    fig.elapsed = start.elapsed();
    fig
}
