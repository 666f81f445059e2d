//! Publishing signed tree heads to a witness outside the box (issue #15, finding 11).
//!
//! Whoever controls this machine can put back an earlier copy of the vault, and every head in
//! it still verifies; only a copy of the newest head kept elsewhere shows the rollback
//! (`mamori vault verify --witness FILE`). Each new signed head goes to every configured
//! witness, carrying the head's JSON (`{"tree_head": {…}}`), which the verifier reads back as is:
//! - as one RFC 5424 syslog line over TCP (`[vault] witness_syslog = "host:port"`) to a log host
//!   the operator keeps — rsyslog, a SIEM, another Mamori;
//! - as an HTTPS POST (`[vault] witness_webhook = "https://…"`, HMAC-signed with
//!   `witness_webhook_secret` like webhook notifications) to a service that appends each body as
//!   one line (a serverless function, an object store, another organisation's log collector).
//!
//! The vault is only read here (its heads file),
//! so sealing never waits for the network; a head that cannot be sent is retried, and the
//! newest head always goes out, so a witness never lags by more than one failed attempt.

use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;

/// Where signed heads go.
#[derive(Clone)]
pub(crate) enum Witness {
    /// `host:port`, RFC 5424 over TCP.
    Syslog(String),
    /// A URL (a credential: never logged) and the optional HMAC key.
    Webhook {
        url: mamori_notify::Secret,
        secret: Option<mamori_notify::Secret>,
    },
}

impl Witness {
    /// The witnesses of a `[vault]` section.
    pub(crate) fn configured(v: &crate::config::VaultSection) -> Vec<Witness> {
        let mut out = Vec::new();
        if let Some(t) = &v.witness_syslog {
            out.push(Witness::Syslog(t.clone()));
        }
        if let Some(url) = &v.witness_webhook {
            out.push(Witness::Webhook {
                url: url.clone(),
                secret: v.witness_webhook_secret.clone(),
            });
        }
        out
    }

    /// For logs: the syslog address, never the webhook's URL.
    fn name(&self) -> String {
        match self {
            Witness::Syslog(t) => format!("syslog {t}"),
            Witness::Webhook { .. } => "webhook".into(),
        }
    }

    fn send(&self, head: &serde_json::Value) -> std::io::Result<()> {
        let doc = serde_json::json!({ "tree_head": head });
        match self {
            Witness::Syslog(target) => {
                let line = format!(
                    "<110>1 {} {} mamori - vault-head - {doc}\n",
                    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    hostname(),
                );
                let addr = target
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))?;
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                s.set_write_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(line.as_bytes())?;
                s.flush()
            }
            Witness::Webhook { url, secret } => mamori_notify::http::post_signed(
                url,
                secret.as_ref(),
                doc.to_string().as_bytes(),
                Duration::from_secs(10),
                Utc::now(),
            )
            .map_err(std::io::Error::other),
        }
    }
}

/// Sends each new head of the vault at `vault_dir` to `witness`, checking every `every`.
pub(crate) fn run(
    vault_dir: PathBuf,
    witness: Witness,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let target = witness.name();
    tokio::spawn(async move {
        let mut sent: Option<(u64, String)> = None;
        let mut failing = false;
        loop {
            tokio::time::sleep(every).await;
            let (dir, t, last) = (vault_dir.clone(), witness.clone(), sent.clone());
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
    witness: &Witness,
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
    witness.send(&head)?;
    Ok(Some(id))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "-".into())
}
