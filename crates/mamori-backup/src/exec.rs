//! Running restic and Borg: typed arguments (never a shell), a timeout, output captured on
//! threads so a chatty child cannot block on a full pipe, and the environment cleaned of
//! variables that would make the tool read a password from somewhere else.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variables removed before a tool runs (a password command configured for the
/// operator's shell must not run inside the server).
const SCRUB: &[&str] = &[
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
    "BORG_PASSPHRASE",
    "BORG_PASSCOMMAND",
    "BORG_PASSPHRASE_FD",
    "BORG_REPO",
];

/// A command to run.
#[derive(Debug)]
pub(crate) struct Run {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Extra environment; values may be secrets and are never logged.
    pub env: Vec<(&'static str, OsString)>,
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
    /// Replaced in [`Output::tail`] (a repository URL with credentials → its redacted form).
    pub scrub: Option<(String, String)>,
}

#[derive(Debug)]
pub(crate) struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    scrub: Option<(String, String)>,
}

impl Output {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last lines of stderr (or stdout when stderr is empty), for a finding.
    pub(crate) fn tail(&self) -> String {
        let src = if self.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            &self.stderr
        } else {
            &self.stdout
        };
        let mut text = String::from_utf8_lossy(src).into_owned();
        if let Some((raw, shown)) = &self.scrub {
            text = text.replace(raw.as_str(), shown);
        }
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let start = lines.len().saturating_sub(4);
        let mut s = lines[start..].join(" | ");
        if s.len() > 600 {
            let mut cut = 600;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    }
}

#[derive(Debug)]
pub(crate) enum RunError {
    /// The program could not be started (not installed, not executable).
    Spawn(std::io::Error),
    /// It ran longer than the timeout and was killed.
    Timeout(Duration),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "cannot start: {e}"),
            RunError::Timeout(d) => write!(f, "killed after the timeout of {}s", d.as_secs()),
        }
    }
}

pub(crate) fn run(r: &Run) -> Result<Output, RunError> {
    let mut cmd = Command::new(&r.program);
    cmd.args(&r.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in SCRUB {
        cmd.env_remove(k);
    }
    for (k, v) in &r.env {
        cmd.env(k, v);
    }
    if let Some(d) = &r.cwd {
        cmd.current_dir(d);
    }
    tracing::debug!(program = %r.program.display(), args = ?r.args, "running backup tool");
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + r.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break child.wait().ok(),
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    match status {
        None => Err(RunError::Timeout(r.timeout)),
        Some(s) => Ok(Output {
            code: s.code(),
            stdout,
            stderr,
            scrub: r.scrub.clone(),
        }),
    }
}
