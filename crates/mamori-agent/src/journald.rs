//! journald: `journalctl -o json --follow --after-cursor CURSOR` run as a child with argv (no
//! shell), one JSON entry per line. Reading the journal files directly would need libsystemd;
//! journalctl is on every systemd host and its JSON output is a stable interface. The cursor of
//! the last entry in a batch is that batch's position, so a restart resumes after it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::batch::Record;

/// Fields kept from a journal entry (the rest — `__MONOTONIC_TIMESTAMP`, boot ids… — is noise).
const KEEP: &[&str] = &[
    "MESSAGE",
    "PRIORITY",
    "SYSLOG_IDENTIFIER",
    "SYSLOG_FACILITY",
    "_PID",
    "_UID",
    "_GID",
    "_COMM",
    "_EXE",
    "_CMDLINE",
    "_HOSTNAME",
    "_SYSTEMD_UNIT",
    "_TRANSPORT",
    "__REALTIME_TIMESTAMP",
];

/// One journal entry → a record and its cursor; `None` for a line that is not an entry.
pub fn entry(line: &str) -> Option<(Record, String)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let o = v.as_object()?;
    let cursor = o.get("__CURSOR")?.as_str()?.to_owned();
    let mut fields = serde_json::Map::new();
    for k in KEEP {
        if let Some(x) = o.get(*k) {
            // journalctl prints binary messages as arrays of bytes.
            let x = match x {
                serde_json::Value::Array(a) => {
                    let bytes: Vec<u8> = a
                        .iter()
                        .filter_map(|b| b.as_u64().map(|b| b as u8))
                        .collect();
                    serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }
                other => other.clone(),
            };
            fields.insert((*k).to_owned(), x);
        }
    }
    Some((
        Record::Journal {
            fields: serde_json::Value::Object(fields),
        },
        cursor,
    ))
}

/// The running journalctl and the thread reading it.
pub struct Journald {
    child: Child,
}

impl Journald {
    /// Starts journalctl after `cursor` (or at the end of the journal when there is none) and
    /// sends its entries on `tx`.
    pub fn start(
        units: &[String],
        cursor: Option<&str>,
        tx: mpsc::SyncSender<(Record, String)>,
    ) -> std::io::Result<Journald> {
        let mut cmd = Command::new("journalctl");
        cmd.args(["-o", "json", "--follow", "--no-pager"]);
        match cursor {
            Some(c) => {
                cmd.arg("--after-cursor").arg(c);
            }
            None => {
                cmd.args(["--lines", "0"]);
            }
        }
        for u in units {
            cmd.arg("-u").arg(u);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = child.stdout.take().expect("piped");
        std::thread::Builder::new()
            .name("journald".into())
            .spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(e) = entry(&line) {
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                }
                tracing::warn!("journalctl ended");
            })?;
        Ok(Journald { child })
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_useful_fields_and_cursor() {
        let l = r#"{"__CURSOR":"s=abc;i=1","MESSAGE":"Accepted password for root from 10.0.0.1 port 22 ssh2","SYSLOG_IDENTIFIER":"sshd","_PID":"42","_BOOT_ID":"x","__REALTIME_TIMESTAMP":"1700000000000000"}"#;
        let (r, c) = entry(l).unwrap();
        assert_eq!(c, "s=abc;i=1");
        let Record::Journal { fields } = r else {
            panic!()
        };
        assert_eq!(fields["SYSLOG_IDENTIFIER"], "sshd");
        assert!(fields.get("_BOOT_ID").is_none());
        let bin = r#"{"__CURSOR":"c","MESSAGE":[104,105]}"#;
        let Record::Journal { fields } = entry(bin).unwrap().0 else {
            panic!()
        };
        assert_eq!(fields["MESSAGE"], "hi");
        assert!(entry("not json").is_none());
        assert!(entry(r#"{"MESSAGE":"no cursor"}"#).is_none());
    }
}
