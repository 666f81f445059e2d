//! Talking to the server: enrolment, batches, heartbeats (ureq on rustls/ring).
//!
//! **Transport security.** `https://` servers are verified against the CA certificate given at
//! enrolment (`--ca-cert`), which is copied into the credential file and is from then on the
//! only root the agent trusts for that server — a pin: a certificate from any other CA is
//! refused even if the system trusts it. Without `--ca-cert`, the certificate the server
//! presents at enrolment is pinned (trust on first use; `--pin sha256:…` requires a given one):
//! its SHA-256 is printed and saved, and it becomes the only certificate trusted — a server
//! presenting another one later is refused with both fingerprints in the error. (`mamori
//! serve` with `[http] tls_cert/tls_key` is such a server; the pinned certificate must name
//! the host in the URL.) Plain `http://` is accepted for a loopback server and, for any other
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
    /// `sha256:<hex>` of the server certificate pinned at enrolment (trust on first use, or
    /// the `--pin` given); its PEM is then `ca_cert_pem`, the only certificate trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_sha256: Option<String>,
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
///
/// For an `https://` server without `ca_pem`, the certificate the server presents is pinned
/// (trust on first use): its SHA-256 must equal `pin` when one is given, and from then on it is
/// the only certificate trusted for this server — the enrolment request itself already goes
/// over a connection verified against it.
pub fn enroll(
    server: &str,
    token: &str,
    id: &Identity,
    ca_pem: Option<String>,
    allow_plain_http: bool,
    pin: Option<&str>,
) -> Result<Credential> {
    let server = check_server_url(server, allow_plain_http)?;
    let want = pin.map(normalise_pin).transpose()?;
    let (ca_pem, pinned_sha256) = match (&ca_pem, server.starts_with("https://")) {
        (None, true) => {
            let der = probe_certificate(&server, Duration::from_secs(30))?;
            let got = fingerprint(&der);
            if let Some(want) = &want {
                if *want != got {
                    return Err(Error::Server(format!(
                        "the server presents certificate {got}, not the pinned {want}: refusing to enrol (someone may be intercepting the connection)"
                    )));
                }
            }
            (Some(pem_of(&der)), Some(got))
        }
        (Some(_), _) if want.is_some() => {
            return Err(Error::Invalid("give --ca-cert or --pin, not both".into()))
        }
        (None, false) if want.is_some() => {
            return Err(Error::Invalid("--pin needs an https:// server".into()))
        }
        _ => (ca_pem, None),
    };
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
                pinned_sha256,
            })
        }
        Reply::Refused(s, m) => Err(Error::Server(format!("enrolment refused (HTTP {s}): {m}"))),
        Reply::Retry(m) => Err(Error::Server(format!("enrolment failed: {m}"))),
    }
}

/// `sha256:<64 lowercase hex>` of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(der)))
}

/// Accepts `sha256:AB:CD…`, `sha256:abcd…` or bare hex; returns the form of [`fingerprint`].
pub fn normalise_pin(p: &str) -> Result<String> {
    let body = p.trim();
    let body = body
        .strip_prefix("sha256:")
        .or_else(|| body.strip_prefix("SHA256:"))
        .unwrap_or(body);
    let hexs: String = body.chars().filter(|c| *c != ':').collect();
    if hexs.len() != 64 || !hexs.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "--pin {p:?} is not a SHA-256 fingerprint (sha256: and 64 hex digits)"
        )));
    }
    Ok(format!("sha256:{}", hexs.to_ascii_lowercase()))
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// Accepts any certificate: used only to *read* the one a server presents (to pin it, or to
/// say which one it presents instead of the pinned one). Nothing is sent on such a connection.
#[derive(Debug)]
struct ReadOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ReadOnly {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The DER of the certificate an `https://host[:port]` server presents (its TLS handshake
/// only; nothing is sent).
pub fn probe_certificate(server: &str, timeout: Duration) -> Result<Vec<u8>> {
    use std::net::ToSocketAddrs as _;
    let rest = server
        .strip_prefix("https://")
        .ok_or_else(|| Error::Invalid(format!("{server} is not an https:// URL")))?;
    let host = if let Some(h) = rest.strip_prefix('[') {
        h.split(']').next().unwrap_or("").to_owned()
    } else {
        rest.rsplit_once(':').map_or(rest, |(h, _)| h).to_owned()
    };
    let hostport = if (rest.starts_with('[') && !rest.contains("]:"))
        || (!rest.starts_with('[') && !rest.contains(':'))
    {
        format!("{rest}:443")
    } else {
        rest.to_owned()
    };
    let err = |m: String| Error::Server(format!("{server}: {m}"));
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))?;
    let mut tcp =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| err(e.to_string()))?;
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ReadOnly(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| err(format!("server name: {e}")))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| err(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| err(format!("TLS handshake: {e}")))?;
    }
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| err("presented no certificate".into()))
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

    /// A failed request's reason, made clear when the server no longer presents the pinned
    /// certificate (which one it presents instead).
    fn explain(&self, r: Reply) -> Reply {
        let m = match r {
            Reply::Retry(m) => m,
            other => return other,
        };
        let Some(pinned) = &self.cred.pinned_sha256 else {
            return Reply::Retry(m);
        };
        let l = m.to_ascii_lowercase();
        if !(l.contains("certificate") || l.contains("unknownissuer") || l.contains("tls")) {
            return Reply::Retry(m);
        }
        match probe_certificate(&self.cred.server, Duration::from_secs(10)) {
            Ok(der) if fingerprint(&der) != *pinned => Reply::Retry(format!(
                "the server's certificate changed: pinned {pinned} at enrolment, the server now presents {}; refusing to connect (re-enrol if the change is expected): {m}",
                fingerprint(&der)
            )),
            _ => Reply::Retry(m),
        }
    }

    /// Sends one buffered batch (gzip JSON).
    pub fn send_batch(&self, body: &[u8]) -> Reply {
        self.explain(reply(
            self.agent
                .post(format!("{}/api/v1/agents/batches", self.cred.server))
                .header("Authorization", format!("Bearer {}", self.cred.credential))
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .send(body),
        ))
    }

    /// Reports in with the buffer's state when there is nothing to send.
    pub fn heartbeat(&self, status: &serde_json::Value) -> Reply {
        self.explain(reply(
            self.agent
                .post(format!("{}/api/v1/agents/heartbeat", self.cred.server))
                .header("Authorization", format!("Bearer {}", self.cred.credential))
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(status).unwrap_or_default().as_slice()),
        ))
    }
}

impl Client {
    /// The commands the server has queued for this agent (response on the host).
    pub fn fetch_commands(&self) -> Reply {
        reply(
            self.agent
                .get(format!("{}/api/v1/agents/commands", self.cred.server))
                .header("Authorization", format!("Bearer {}", self.cred.credential))
                .call(),
        )
    }

    /// Reports how a command ended.
    pub fn report_result(&self, result: &mamori_respond::HostResult) -> Reply {
        reply(
            self.agent
                .post(format!(
                    "{}/api/v1/agents/commands/{}/result",
                    self.cred.server, result.id
                ))
                .header("Authorization", format!("Bearer {}", self.cred.credential))
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(result).unwrap_or_default().as_slice()),
        )
    }

    /// The server's addresses with its port: what host isolation keeps reachable.
    pub fn server_endpoints(&self) -> Vec<mamori_respond::Keep> {
        server_endpoints(&self.cred.server)
    }
}

/// Resolves `scheme://host[:port]` to the addresses and TCP port of the server.
pub fn server_endpoints(url: &str) -> Vec<mamori_respond::Keep> {
    use std::net::ToSocketAddrs as _;
    let Some((scheme, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let has_port = if rest.starts_with('[') {
        rest.contains("]:")
    } else {
        rest.contains(':')
    };
    let hostport = if has_port {
        rest.to_owned()
    } else {
        format!("{rest}:{default_port}")
    };
    let mut out: Vec<mamori_respond::Keep> = Vec::new();
    if let Ok(addrs) = hostport.to_socket_addrs() {
        for a in addrs {
            let k = mamori_respond::Keep {
                ip: a.ip().to_canonical(),
                tcp_port: Some(a.port()),
            };
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    out
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
    fn server_endpoints_resolve_with_their_port() {
        let k = server_endpoints("http://10.1.2.3:8080");
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].to_string(), "10.1.2.3:8080");
        assert_eq!(
            server_endpoints("https://[2001:db8::5]")[0].to_string(),
            "[2001:db8::5]:443"
        );
        assert_eq!(
            server_endpoints("http://127.0.0.1")[0].to_string(),
            "127.0.0.1:80"
        );
        assert!(server_endpoints("nonsense").is_empty());
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
            pinned_sha256: None,
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
