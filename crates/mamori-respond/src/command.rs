//! One external command as data (program, argv, stdin) and the one place that runs it.
//!
//! There is no shell anywhere: [`run`] calls `std::process::Command::new(program).args(args)`,
//! so every argument reaches the program as one argv element whatever bytes it holds. A dry run
//! returns these same values without calling [`run`], so what is shown is what would run.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// Longest stderr/stdout excerpt kept in an [`Outcome`].
const MAX_OUTPUT: usize = 4096;

/// An external command: program, argv (without argv\[0\]) and optional stdin text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Exit codes besides 0 that mean success (`pkill` exits 1 when no process matched).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_ok: Vec<i32>,
}

impl CommandSpec {
    pub(crate) fn new(program: impl Into<PathBuf>, args: Vec<String>) -> CommandSpec {
        CommandSpec {
            program: program.into(),
            args,
            stdin: None,
            also_ok: Vec::new(),
        }
    }

    /// The command as one line for humans (not for a shell): program and args space-separated,
    /// followed by the stdin text if any.
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        if let Some(stdin) = &self.stdin {
            s.push_str(" <<EOF\n");
            s.push_str(stdin);
            s.push_str("EOF");
        }
        s
    }
}

/// How an action (or its rollback) went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Every command exited successfully, or this was a dry run (nothing ran).
    Ok,
    /// A command could not be started or exited unsuccessfully; `stderr` says which and why.
    Failed { stderr: String },
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

/// Runs commands in order and stops at the first failure.
pub(crate) fn run_all(cmds: &[CommandSpec]) -> Outcome {
    for cmd in cmds {
        if let Err(stderr) = run(cmd) {
            return Outcome::Failed { stderr };
        }
    }
    Outcome::Ok
}

fn run(cmd: &CommandSpec) -> std::result::Result<(), String> {
    let name = cmd.program.display().to_string();
    let mut child = Command::new(&cmd.program)
        .args(&cmd.args)
        .env("LC_ALL", "C")
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{name}: cannot start: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (&cmd.stdin, child.stdin.take()) {
        // Scripts are a few hundred bytes, far below the pipe buffer, so writing before reading
        // cannot deadlock. A child that exits without reading gives EPIPE, reported by its status.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{name}: wait failed: {e}"))?;
    let code = out.status.code();
    if out.status.success() || code.is_some_and(|c| cmd.also_ok.contains(&c)) {
        return Ok(());
    }
    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if msg.is_empty() {
        msg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    if msg.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
    }
    let status = match code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_owned(),
    };
    Err(format!("{name}: {status}: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_not_interpreted_by_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        // If this went through `sh -c`, the `;` would run `touch`.
        let evil = format!("x; touch {}", marker.display());
        let out = run_all(&[CommandSpec::new("echo", vec![evil])]);
        assert_eq!(out, Outcome::Ok);
        assert!(!marker.exists());
    }

    #[test]
    fn failures_carry_program_status_and_stderr() {
        let out = run_all(&[CommandSpec::new("ls", vec!["/definitely/not/here".into()])]);
        let Outcome::Failed { stderr } = out else {
            panic!("expected failure")
        };
        assert!(stderr.starts_with("ls: exit status"), "{stderr}");
        assert!(stderr.contains("/definitely/not/here"), "{stderr}");

        let out = run_all(&[CommandSpec::new("/nonexistent/mamori-bin", vec![])]);
        assert!(
            matches!(&out, Outcome::Failed { stderr } if stderr.contains("cannot start")),
            "{out:?}"
        );
    }

    #[test]
    fn stdin_and_also_ok_codes() {
        let mut cmd = CommandSpec::new("grep", vec!["-q".into(), "needle".into()]);
        cmd.stdin = Some("hay\nneedle\n".into());
        assert_eq!(run_all(std::slice::from_ref(&cmd)), Outcome::Ok);
        cmd.stdin = Some("hay\n".into());
        assert!(!run_all(std::slice::from_ref(&cmd)).is_ok());
        cmd.also_ok = vec![1];
        assert_eq!(run_all(std::slice::from_ref(&cmd)), Outcome::Ok);
    }
}
