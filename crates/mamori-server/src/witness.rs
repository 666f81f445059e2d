//! Publishing signed tree heads to a witness outside the box (issue #15, finding 11).
//!
//! Whoever controls this machine can put back an earlier copy of the vault, and every head in
//! it still verifies; only a copy of the newest head kept elsewhere shows the rollback
//! (`mamori vault verify --witness FILE`). Each new signed head is sent as one RFC 5424 syslog
//! line over TCP (`[vault] witness_syslog = "host:port"`) to a log host the operator keeps —
//! rsyslog, a SIEM, another Mamori — carrying the head's JSON (`{"tree_head": {…}}`), which the
//! verifier reads back from that host's log as is. The vault is only read here (its heads file),
//! so sealing never waits for the network; a head that cannot be sent is retried, and the
//! newest head always goes out, so a witness never lags by more than one failed attempt.

use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;

/// Sends each new head of the vault at `vault_dir` to `target` (`host:port`, TCP), checking
/// every `every`.
pub(crate) fn run(
    vault_dir: PathBuf,
    target: String,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sent: Option<(u64, String)> = None;
        let mut failing = false;
        loop {
            tokio::time::sleep(every).await;
            let (dir, t, last) = (vault_dir.clone(), target.clone(), sent.clone());
            let r = tokio::task::spawn_blocking(move || publish_new(&dir, &t, last)).await;
            match r {
                Ok(Ok(Some(head))) => {
                    if failing {
                        tracing::info!(target = %target, "vault head witness reachable again");
                    }
                    failing = false;
                    sent = Some(head);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(target = %target, error = %e, "cannot send the vault head to the witness; retrying");
                    }
                    failing = true;
                }
                Err(_) => return,
            }
        }
    })
}

/// Sends the vault's newest head unless it is `last`; returns what was sent.
fn publish_new(
    dir: &std::path::Path,
    target: &str,
    last: Option<(u64, String)>,
) -> std::io::Result<Option<(u64, String)>> {
    let status = mamori_vault::read_status(dir).map_err(std::io::Error::other)?;
    let Some(head) = status.last_head else {
        return Ok(None);
    };
    let id = (
        head["tree_size"].as_u64().unwrap_or(0),
        head["root_hash"].as_str().unwrap_or("").to_owned(),
    );
    if last.as_ref() == Some(&id) {
        return Ok(None);
    }
    let host = hostname();
    let line = format!(
        "<110>1 {} {host} mamori - vault-head - {}\n",
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        serde_json::json!({ "tree_head": head })
    );
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(line.as_bytes())?;
    s.flush()?;
    Ok(Some(id))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "-".into())
}
