//! TLS checks. rustls (ring) makes the modern handshakes (TLS 1.3, TLS 1.2) and hands over the
//! certificate chain, which is then judged with rustls' WebPKI verifier (public roots from
//! `webpki-roots`, plus a private CA from the configuration) and `webpki` for the name.
//! rustls cannot speak SSL 3.0, TLS 1.0/1.1 or weak cipher suites, so those are probed with a
//! hand-made ClientHello: the server either answers with a ServerHello (accepted) or an alert
//! or a closed connection (refused). Nothing past the ServerHello is sent.
//!
//! Not checked: renegotiation, compression (CRIME), Heartbleed, OCSP stapling, certificate
//! revocation and the strength of the server's DH/ECDH parameters.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::limiter::Limiter;
use crate::Result;

/// What the modern handshake and the certificate check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    pub tls13: bool,
    pub tls12: bool,
    pub cipher: Option<String>,
    /// `None` when no handshake succeeded.
    pub cert: Option<CertVerdict>,
    /// Legacy versions the server accepted (`SSL 3.0`, `TLS 1.0`, `TLS 1.1`).
    pub legacy_accepted: Vec<&'static str>,
    /// Weak suites the server chose when offered only weak ones (IANA names).
    pub weak_ciphers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertVerdict {
    pub trusted: bool,
    /// Self-signed or issued by an authority the client does not know.
    pub untrusted_reason: Option<String>,
    pub expired: bool,
    /// `notAfter` as Unix seconds, when the verifier told it.
    pub not_after: Option<u64>,
    pub expires_within_30_days: bool,
    pub name_ok: bool,
    pub chain_len: usize,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any chain but keeps it, so it can be judged after the handshake.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let mut c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        c.clear();
        c.push(end_entity.clone().into_owned());
        c.extend(intermediates.iter().map(|i| i.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn server_name(host: &str) -> Option<ServerName<'static>> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Some(ServerName::from(ip));
    }
    ServerName::try_from(host.to_string()).ok()
}

fn connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

struct Handshake {
    chain: Vec<CertificateDer<'static>>,
    cipher: Option<String>,
}

/// One rustls handshake limited to `version`.
fn handshake(
    host: &str,
    port: u16,
    version: &'static rustls::SupportedProtocolVersion,
    timeout: Duration,
) -> Option<Handshake> {
    let provider = provider();
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = server_name(host)?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let mut sock = connect(host, port, timeout).ok()?;
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            return None;
        }
    }
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()));
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let chain = recorder
        .chain
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Some(Handshake { chain, cipher })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Judges a chain as a client would: trusted by the public roots (or `extra_roots`), valid now
/// and in 30 days, issued for `host`. `now` is passed in (tests use fixed times).
pub fn judge_chain(
    chain: &[CertificateDer<'static>],
    host: &str,
    extra_roots: &[CertificateDer<'static>],
    now: u64,
) -> Option<CertVerdict> {
    let (ee, rest) = chain.split_first()?;
    let name = server_name(host)?;
    let verify = |roots: RootCertStore, at: u64| -> std::result::Result<(), rustls::Error> {
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        v.verify_server_cert(
            ee,
            rest,
            &name,
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(at)),
        )
        .map(|_| ())
    };
    let public = || {
        let mut r = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for c in extra_roots {
            let _ = r.add(c.clone());
        }
        r
    };
    // The chain's own certificates as anchors: what is left once trust is set aside.
    let own = || {
        let mut r = RootCertStore::empty();
        for c in chain {
            let _ = r.add(c.clone());
        }
        r
    };
    let mut v = CertVerdict {
        chain_len: chain.len(),
        ..CertVerdict::default()
    };
    let mut roots_ok_public = true;
    let result = match verify(public(), now) {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => {
            roots_ok_public = false;
            v.untrusted_reason = Some(if chain.len() == 1 {
                "self-signed or unknown issuer".into()
            } else {
                "unknown issuer".into()
            });
            verify(own(), now)
        }
        other => other,
    };
    match &result {
        Ok(()) => {}
        Err(rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            not_after,
            ..
        })) => {
            v.expired = true;
            v.not_after = Some(not_after.as_secs());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Expired)) => v.expired = true,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {}
        Err(e) => {
            if v.untrusted_reason.is_none() {
                v.untrusted_reason = Some(e.to_string());
            }
        }
    }
    // webpki reports expiry before trust: judge trust again just before `notAfter`.
    if v.expired && roots_ok_public {
        if let Some(na) = v.not_after {
            if let Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            )) = verify(public(), na.saturating_sub(1))
            {
                roots_ok_public = false;
                v.untrusted_reason = Some(if chain.len() == 1 {
                    "self-signed or unknown issuer".into()
                } else {
                    "unknown issuer".into()
                });
            }
        }
    }
    v.trusted = roots_ok_public && v.untrusted_reason.is_none();
    if !v.expired {
        let later = now + 30 * 86_400;
        let roots = if roots_ok_public { public() } else { own() };
        if let Err(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) = verify(roots, later)
        {
            v.expires_within_30_days = true;
        }
    }
    v.name_ok = webpki::EndEntityCert::try_from(ee)
        .map(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
        .unwrap_or(false);
    Some(v)
}

// ---- raw ClientHello probing for what rustls cannot speak ----

/// Suites offered when probing legacy versions (common RSA/ECDHE CBC suites of that era).
const LEGACY_SUITES: &[u16] = &[
    0xC014, 0xC013, 0xC00A, 0xC009, 0x0035, 0x002F, 0x0039, 0x0033, 0x000A, 0x0005, 0x0004,
];

/// Weak suites: RC4, 3DES, NULL, EXPORT, anonymous DH.
const WEAK_SUITES: &[(u16, &str)] = &[
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5"),
    (0xC011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"),
    (0xC007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"),
    (0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0001, "TLS_RSA_WITH_NULL_MD5"),
    (0x0002, "TLS_RSA_WITH_NULL_SHA"),
    (0x003B, "TLS_RSA_WITH_NULL_SHA256"),
    (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"),
    (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0009, "TLS_RSA_WITH_DES_CBC_SHA"),
    (0x0018, "TLS_DH_anon_WITH_RC4_128_MD5"),
    (0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA"),
    (0xC018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"),
];

fn push_u16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}

fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    push_u16(out, kind);
    push_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// A ClientHello for `version` offering `suites`, with SNI when `host` is a name.
pub fn client_hello(version: u16, suites: &[u16], host: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    push_u16(&mut body, version);
    // The random need not be unpredictable: no session is ever established.
    let seed = unix_now().to_be_bytes();
    for i in 0..32 {
        body.push(seed[i % 8] ^ (i as u8).wrapping_mul(37));
    }
    body.push(0); // session id
    push_u16(&mut body, (suites.len() * 2 + 2) as u16);
    for s in suites {
        push_u16(&mut body, *s);
    }
    push_u16(&mut body, 0x00FF); // TLS_EMPTY_RENEGOTIATION_INFO_SCSV
    body.extend_from_slice(&[1, 0]); // compression: null
    if version >= 0x0301 {
        let mut exts = Vec::new();
        if let Some(h) = host.filter(|h| h.parse::<IpAddr>().is_err() && !h.starts_with('[')) {
            let name = h.as_bytes();
            let mut sni = Vec::new();
            push_u16(&mut sni, (name.len() + 3) as u16);
            sni.push(0);
            push_u16(&mut sni, name.len() as u16);
            sni.extend_from_slice(name);
            ext(&mut exts, 0x0000, &sni);
        }
        ext(&mut exts, 0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]);
        ext(&mut exts, 0x000b, &[1, 0]);
        if version >= 0x0303 {
            let algs: &[u16] = &[
                0x0401, 0x0501, 0x0601, 0x0403, 0x0503, 0x0804, 0x0805, 0x0201, 0x0203,
            ];
            let mut sa = Vec::new();
            push_u16(&mut sa, (algs.len() * 2) as u16);
            for a in algs {
                push_u16(&mut sa, *a);
            }
            ext(&mut exts, 0x000d, &sa);
        }
        push_u16(&mut body, exts.len() as u16);
        body.extend_from_slice(&exts);
    }
    let mut hs = vec![1u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16];
    push_u16(&mut rec, version.min(0x0301));
    push_u16(&mut rec, hs.len() as u16);
    rec.extend_from_slice(&hs);
    rec
}

/// The answer to a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloAnswer {
    ServerHello { version: u16, suite: u16 },
    Refused,
}

/// Reads the first handshake record; anything but a well-formed ServerHello is `Refused`.
pub fn parse_answer(buf: &[u8]) -> HelloAnswer {
    // record: type(1) version(2) length(2); handshake: type(1) length(3) version(2) random(32)
    // session_id_len(1) session_id cipher(2)
    if buf.len() < 5 + 4 + 2 + 32 + 1 || buf[0] != 0x16 || buf[5] != 0x02 {
        return HelloAnswer::Refused;
    }
    let version = u16::from_be_bytes([buf[9], buf[10]]);
    let sid = buf[43] as usize;
    let at = 44 + sid;
    if buf.len() < at + 2 {
        return HelloAnswer::Refused;
    }
    HelloAnswer::ServerHello {
        version,
        suite: u16::from_be_bytes([buf[at], buf[at + 1]]),
    }
}

fn send_hello(host: &str, port: u16, hello: &[u8], timeout: Duration) -> HelloAnswer {
    let Ok(mut s) = connect(host, port, timeout) else {
        return HelloAnswer::Refused;
    };
    if s.write_all(hello).is_err() {
        return HelloAnswer::Refused;
    }
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    // Enough for the record header and the start of a ServerHello.
    while n < 128 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
        if n >= 5 && buf[0] != 0x16 {
            break;
        }
    }
    parse_answer(&buf[..n])
}

/// Runs every TLS probe against `host:port`, each taking one request from the budget.
pub fn check(
    host: &str,
    port: u16,
    extra_roots: &[CertificateDer<'static>],
    limiter: &Limiter,
    timeout: Duration,
) -> Result<TlsFacts> {
    let mut f = TlsFacts::default();
    limiter.acquire()?;
    let h13 = handshake(host, port, &rustls::version::TLS13, timeout);
    limiter.acquire()?;
    let h12 = handshake(host, port, &rustls::version::TLS12, timeout);
    f.tls13 = h13.is_some();
    f.tls12 = h12.is_some();
    let best = h13.or(h12);
    if let Some(h) = &best {
        f.cipher = h.cipher.clone();
        f.cert = judge_chain(&h.chain, host, extra_roots, unix_now());
    }
    for (v, label) in [
        (0x0300u16, "SSL 3.0"),
        (0x0301, "TLS 1.0"),
        (0x0302, "TLS 1.1"),
    ] {
        limiter.acquire()?;
        if let HelloAnswer::ServerHello { version, .. } = send_hello(
            host,
            port,
            &client_hello(v, LEGACY_SUITES, Some(host)),
            timeout,
        ) {
            if version == v {
                f.legacy_accepted.push(label);
            }
        }
    }
    let weak: Vec<u16> = WEAK_SUITES.iter().map(|(c, _)| *c).collect();
    limiter.acquire()?;
    if let HelloAnswer::ServerHello { suite, .. } = send_hello(
        host,
        port,
        &client_hello(0x0303, &weak, Some(host)),
        timeout,
    ) {
        if let Some((_, name)) = WEAK_SUITES.iter().find(|(c, _)| *c == suite) {
            f.weak_ciphers.push(name.to_string());
        }
    }
    Ok(f)
}

/// Reads PEM certificates (a private CA the clients trust).
pub fn read_pem_certs(text: &str) -> Vec<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(text.as_bytes())
        .filter_map(|c| c.ok())
        .collect()
}

#[cfg(test)]
mod tests;
