//! Talking to the server: enrolment, batches, heartbeats (ureq on rustls/ring).
//!
//! **Transport security.** `https://` servers are verified against the CA certificate given at
//! enrolment (`--ca-cert`), which is copied into the credential file and is from then on the
//! only root the agent trusts for that server — a pin: a certificate from any other CA is
//! refused even if the system trusts it. Without `--ca-cert`, the WebPKI roots are used.
//! `mamori serve` itself serves its API over plain HTTP (TLS is terminated by a reverse proxy
//! in front of it), so plain `http://` is accepted for a loopback server and, for any other
//! host, only when enrolment was told `--allow-plain-http` (recorded in the credential file).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What enrolment leaves in `<state_dir>/credential.json` (mode 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// `http(s)://host:port` of the server.
    pub server: String,
    pub agent_id: String,
    pub name: String,
    /// The per-agent secret (Bearer).
    pub credential: String,
    /// PEM of the CA pinned at enrolment (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_pem: Option<String>,
    #[serde(default)]
    pub allow_plain_http: bool,
}

pub const CREDENTIAL_FILE: &str = "credential.json";

impl Credential {
    pub fn load(state_dir: &Path) -> Result<Credential> {
        let p = state_dir.join(CREDENTIAL_FILE);
        let b = std::fs::read(&p).map_err(|e| Error::Io {
            path: p.clone(),
            source: e,
        })?;
        serde_json::from_slice(&b).map_err(|e| Error::Config {
            path: p,
            message: format!("not a credential file: {e}"),
        })
    }

    /// Writes the credential readable by its owner only (created 0600, never wider).
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        use std::io::Write as _;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
        let p = state_dir.join(CREDENTIAL_FILE);
        let tmp = state_dir.join(".credential.json.tmp");
        let b = serde_json::to_vec_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        let _ = std::fs::remove_file(&tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(&b).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))?;
        Ok(())
    }
}

/// Checks a server URL: `http(s)://host[:port]`, nothing after; plain HTTP only to loopback
/// unless allowed.
pub fn check_server_url(url: &str, allow_plain_http: bool) -> Result<String> {
    let url = url.trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Invalid(format!("server URL {url:?} has no scheme")))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(Error::Invalid(format!(
            "server URL {url:?} must be scheme://host[:port] only"
        )));
    }
    match scheme {
        "https" => Ok(url.to_owned()),
        "http" => {
            let host = if let Some(h) = rest.strip_prefix('[') {
                h.split(']').next().unwrap_or("")
            } else {
                rest.rsplit_once(':').map_or(rest, |(h, _)| h)
            };
            let loopback =
                host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback || allow_plain_http {
                Ok(url.to_owned())
            } else {
                Err(Error::Invalid(format!(
                    "refusing plain http to {host}: use https (with --ca-cert to pin the server's CA) or pass --allow-plain-http on a network you trust"
                )))
            }
        }
        other => Err(Error::Invalid(format!(
            "server URL scheme {other:?} is not http or https"
        ))),
    }
}

fn agent(ca_pem: Option<&str>, timeout: Duration) -> Result<ureq::Agent> {
    let mut b = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("mamori-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let cert = ureq::tls::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| Error::Invalid(format!("CA certificate: {e}")))?;
        b = b.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
                .build(),
        );
    }
    Ok(b.build().into())
}

/// The server's answer to a request.
#[derive(Debug)]
pub enum Reply {
    Ok(serde_json::Value),
    /// 401/403: the credential is unknown or revoked. Retrying will not help.
    Refused(u16, String),
    /// Anything else (unreachable, 5xx, 507): try again later.
    Retry(String),
}

fn reply(r: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    match r {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_vec()
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            match status {
                200..=299 => Reply::Ok(v),
                401 | 403 => {
                    Reply::Refused(status, v["error"].as_str().unwrap_or("refused").to_owned())
                }
                _ => Reply::Retry(format!(
                    "HTTP {status}: {}",
                    v["error"].as_str().unwrap_or("")
                )),
            }
        }
        Err(e) => Reply::Retry(e.to_string()),
    }
}

/// What the agent tells the server about itself at enrolment.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub name: String,
    pub hostname: String,
    pub os: String,
    pub version: String,
}

impl Identity {
    /// This host: its name from `/proc/sys/kernel/hostname`, the OS from `/etc/os-release`.
    pub fn of_this_host(name: Option<String>) -> Identity {
        let hostname = crate::hostname();
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        Identity {
            name: name.unwrap_or_else(|| hostname.clone()),
            hostname,
            os,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// Enrols with a one-time token and returns the credential (not yet saved).
pub fn enroll(
    server: &str,
    token: &str,
    id: &Identity,
    ca_pem: Option<String>,
    allow_plain_http: bool,
) -> Result<Credential> {
    let server = check_server_url(server, allow_plain_http)?;
    let a = agent(ca_pem.as_deref(), Duration::from_secs(30))?;
    let body = serde_json::json!({
        "token": token,
        "name": id.name,
        "hostname": id.hostname,
        "os": id.os,
        "version": id.version,
    });
    let r = a
        .post(format!("{server}/api/v1/agents/enroll"))
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(&body).unwrap_or_default().as_slice());
    match reply(r) {
        Reply::Ok(v) => {
            let field = |k: &str| {
                v[k].as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::Server(format!("enrolment answer lacks `{k}`")))
            };
            Ok(Credential {
                server,
                agent_id: field("agent_id")?,
                name: field("name")?,
                credential: field("credential")?,
                ca_cert_pem: ca_pem,
                allow_plain_http,
            })
        }
        Reply::Refused(s, m) => Err(Error::Server(format!("enrolment refused (HTTP {s}): {m}"))),
        Reply::Retry(m) => Err(Error::Server(format!("enrolment failed: {m}"))),
    }
}

/// A connection to the server with the agent's credential.
pub struct Client {
    cred: Credential,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(cred: Credential) -> Result<Client> {
        check_server_url(&cred.server, cred.allow_plain_http)?;
        let agent = agent(cred.ca_cert_pem.as_deref(), Duration::from_secs(60))?;
        Ok(Client { cred, agent })
    }

    pub fn credential(&self) -> &Credential {
        &self.cred
    }

    /// Sends one buffered batch (gzip JSON).
    pub fn send_batch(&self, body: &[u8]) -> Reply {
        reply(
            self.agent
                .post(format!("{}/api/v1/agents/batches", self.cred.server))
                .header("Authorization", format!("Bearer {}", self.cred.credential))
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .send(body),
        )
    }

    /// Reports in with the buffer's state when there is nothing to send.
    pub fn heartbeat(&self, status: &serde_json::Value) -> Reply {
        reply(
            self.agent
                .post(format!("{}/api/v1/agents/heartbeat", self.cred.server))
                .header("Authorization", format!("Bearer {}", self.cred.credential))
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(status).unwrap_or_default().as_slice()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert!(check_server_url("http://127.0.0.1:8080", false).is_ok());
        assert!(check_server_url("http://[::1]:8080/", false).is_ok());
        assert!(check_server_url("http://localhost:8080", false).is_ok());
        assert!(check_server_url("http://10.0.0.5:8080", false).is_err());
        assert!(check_server_url("http://10.0.0.5:8080", true).is_ok());
        assert!(check_server_url("https://mamori.example:443", false).is_ok());
        assert!(check_server_url("ftp://x", true).is_err());
        assert!(check_server_url("https://x/api?y", true).is_err());
        assert!(check_server_url("https://user@x", true).is_err());
    }

    #[test]
    fn credential_roundtrip_is_private() {
        let d = tempfile::tempdir().unwrap();
        let c = Credential {
            server: "http://127.0.0.1:1".into(),
            agent_id: "ag-1".into(),
            name: "web01".into(),
            credential: "mamori_agent_x".into(),
            ca_cert_pem: None,
            allow_plain_http: false,
        };
        c.save(d.path()).unwrap();
        assert_eq!(Credential::load(d.path()).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let m = std::fs::metadata(d.path().join(CREDENTIAL_FILE)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
    }
}
