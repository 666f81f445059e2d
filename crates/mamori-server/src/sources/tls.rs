//! Syslog over TLS (RFC 5425): the TCP listener's framing (`MSG-LEN SP SYSLOG-MSG`, or
//! newline-separated as many senders do anyway) inside a TLS session.
//!
//! * **Certificates**: the operator's PEM pair ([`TlsConfig::cert`], [`TlsConfig::key`]), or,
//!   when neither is set, a self-signed pair generated on first run into `<data_dir>/tls/` and
//!   reused afterwards; the certificate's path is returned so it can be handed to the senders
//!   (rsyslog `DefaultNetstreamDriverCAFile`, syslog-ng `ca-file`) for pinning.
//! * **Crypto**: rustls with the *ring* provider, set on the config itself, so no
//!   process-wide default provider is installed or needed. TLS 1.2 and 1.3; no client
//!   certificates.
//! * **Handshakes are bounded**: each one runs in the connection's own task under a
//!   [`HANDSHAKE_TIMEOUT`]; a peer that sends garbage or nothing loses its slot when it fails or
//!   times out, and is counted in `malformed` of the `syslog_tls` source.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use mamori_event::Transport;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::syslog::{accept_loop, serve_stream, StreamCtx};
use crate::metrics::SourceKind;

/// A TLS handshake must complete within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// File names of the generated pair under `<data_dir>/tls/`.
pub const GENERATED_CERT: &str = "syslog-tls.crt";
pub const GENERATED_KEY: &str = "syslog-tls.key";

/// `[syslog] tls = { listen = "0.0.0.0:6514", cert = "...", key = "..." }`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Where to listen (RFC 5425's port is 6514).
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first. Set together with `key`, or neither: then a
    /// self-signed pair is generated into `<data_dir>/tls/` on first run and reused.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// Loads the configured pair, or the generated one (creating it on first run), and builds the
/// acceptor. The second value is the path of the *generated* certificate (whether made now or
/// on an earlier run), for the operator to distribute; `None` with an operator-supplied pair.
///
/// Errors name the file and the reason: unreadable or missing file, no certificate or no key
/// in the PEM, a key that does not belong to the certificate.
pub fn load_or_generate(
    cfg: &TlsConfig,
    data_dir: &Path,
) -> Result<(TlsAcceptor, Option<PathBuf>), String> {
    let (cert_path, key_path, generated) = match (&cfg.cert, &cfg.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        (None, None) => {
            let dir = data_dir.join("tls");
            let (c, k) = ensure_generated(&dir, cfg.listen)?;
            (c, k, true)
        }
        (Some(_), None) => {
            return Err(
                "syslog TLS: `cert` is set but `key` is not (set both, or neither to \
                        use a generated self-signed pair)"
                    .into(),
            )
        }
        (None, Some(_)) => {
            return Err(
                "syslog TLS: `key` is set but `cert` is not (set both, or neither to \
                        use a generated self-signed pair)"
                    .into(),
            )
        }
    };
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("syslog TLS: {e}"))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => format!(
            "syslog TLS: key {} does not match certificate {}",
            key_path.display(),
            cert_path.display()
        ),
        e => format!(
            "syslog TLS: cannot use certificate {} with key {}: {e}",
            cert_path.display(),
            key_path.display()
        ),
    })?;
    Ok((
        TlsAcceptor::from(Arc::new(server)),
        generated.then_some(cert_path),
    ))
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!("syslog TLS: {what} file {} does not exist", path.display())
        } else {
            format!(
                "syslog TLS: cannot read {what} file {}: {e}",
                path.display()
            )
        }
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path, "certificate")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("syslog TLS: bad PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "syslog TLS: no certificate (-----BEGIN CERTIFICATE-----) in {}",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_pem(path, "key")?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(k) => Ok(k),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(format!(
            "syslog TLS: no private key (-----BEGIN PRIVATE KEY-----, RSA or EC) in {}",
            path.display()
        )),
        Err(e) => Err(format!("syslog TLS: bad PEM in {}: {e}", path.display())),
    }
}

/// The generated pair's paths, generating it when absent. The key is written first (mode
/// 0600) and the certificate last, each through a temporary file and a rename, so a crash
/// leaves either a complete pair or no certificate (and the next start generates again).
fn ensure_generated(dir: &Path, listen: SocketAddr) -> Result<(PathBuf, PathBuf), String> {
    let cert = dir.join(GENERATED_CERT);
    let key = dir.join(GENERATED_KEY);
    if cert.exists() {
        if !key.exists() {
            return Err(format!(
                "syslog TLS: generated certificate {} exists but its key {} is missing \
                 (remove the certificate to generate a new pair, and redistribute it)",
                cert.display(),
                key.display()
            ));
        }
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("syslog TLS: cannot create {}: {e}", dir.display()))?;
    let pair = generate(listen)?;
    write_file(&key, pair.key_pair.serialize_pem().as_bytes(), true)?;
    write_file(&cert, pair.cert.pem().as_bytes(), false)?;
    tracing::info!(cert = %cert.display(), "generated a self-signed syslog TLS certificate");
    Ok((cert, key))
}

/// A self-signed ECDSA P-256 certificate for `localhost`, the loopback addresses, this host's
/// name and the listen address.
fn generate(listen: SocketAddr) -> Result<rcgen::CertifiedKey, String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Some(h) = hostname() {
        names.push(h);
    }
    let ip = listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    names.dedup();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| format!("syslog TLS: cannot generate a certificate: {e}"))?;
    for n in names {
        let san = match n.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => match n.clone().try_into() {
                Ok(dns) => rcgen::SanType::DnsName(dns),
                Err(_) => continue,
            },
        };
        params.subject_alt_names.push(san);
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mamori syslog TLS");
    let key_pair = rcgen::KeyPair::generate()
        .map_err(|e| format!("syslog TLS: cannot generate a key: {e}"))?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| format!("syslog TLS: cannot generate a certificate: {e}"))?;
    Ok(rcgen::CertifiedKey { cert, key_pair })
}

/// This host's name, when it is a plausible DNS name.
fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let h = h.trim();
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then(|| h.to_ascii_lowercase())
}

fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), String> {
    use std::io::Write as _;
    let err = |e: io::Error| format!("syslog TLS: cannot write {}: {e}", path.display());
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Serves syslog over TLS until `ctx.stop` changes; each connection (handshake included) is
/// its own task, at most `max_connections` at once. `ctx.kind` and `ctx.transport` are set to
/// TLS here.
pub async fn run_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ctx: StreamCtx,
    max_connections: usize,
) {
    run_tls_with(listener, acceptor, ctx, max_connections, HANDSHAKE_TIMEOUT).await
}

pub(crate) async fn run_tls_with(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ctx: StreamCtx,
    max_connections: usize,
    handshake_timeout: Duration,
) {
    let ctx = StreamCtx {
        kind: SourceKind::Tls,
        transport: Transport::Tls,
        ..ctx
    };
    accept_loop(listener, ctx, max_connections, move |stream, peer, ctx| {
        let acceptor = acceptor.clone();
        async move {
            let mut stop = ctx.stop.clone();
            let hs = tokio::select! {
                r = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)) => r,
                _ = stop.changed() => return,
            };
            let failure = match hs {
                Ok(Ok(tls)) => return serve_stream(tls, peer, ctx).await,
                Ok(Err(e)) => format!("TLS handshake failed: {e}"),
                Err(_) => "TLS handshake timed out".to_owned(),
            };
            ctx.metrics
                .source(SourceKind::Tls)
                .malformed
                .fetch_add(1, Relaxed);
            tracing::debug!(%peer, "{failure}");
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::pipeline::{Pipeline, Settings};
    use mamori_event::Level;
    use mamori_store::{AlertStore, EventStore, MemoryAlertStore, MemoryEventStore, RawRecord};
    use std::time::Instant;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::sync::{broadcast, watch};
    use tokio_rustls::TlsConnector;

    struct Harness {
        store: Arc<MemoryEventStore>,
        metrics: Arc<Metrics>,
        stop: watch::Sender<bool>,
        addr: SocketAddr,
        task: tokio::task::JoinHandle<()>,
        pipeline: Option<Pipeline>,
        cert: PathBuf,
        _dir: tempfile::TempDir,
    }

    async fn start(max_connections: usize, handshake_timeout: Duration) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = TlsConfig {
            listen: addr,
            cert: None,
            key: None,
        };
        let (acceptor, cert) = load_or_generate(&cfg, dir.path()).unwrap();
        let store = Arc::new(MemoryEventStore::new());
        let alerts: Arc<dyn AlertStore> = Arc::new(MemoryAlertStore::new());
        let metrics = Arc::new(Metrics::default());
        let (alert_tx, _) = broadcast::channel(16);
        let pipeline = Pipeline::start(
            Arc::clone(&store) as Arc<dyn EventStore>,
            alerts,
            None,
            Settings {
                min_level: Level::Informational,
                suppress_secs: 60,
                lateness_secs: 60,
                max_correlation_groups: 50_000,
                queue_batches: 64,
                max_group_events: 4096,
                backup_links: Default::default(),
            },
            Arc::clone(&metrics),
            alert_tx,
        );
        let (stop, stop_rx) = watch::channel(false);
        let ctx = StreamCtx {
            // Deliberately not TLS: run_tls must set them.
            kind: SourceKind::Tcp,
            transport: Transport::Tcp,
            sink: pipeline.sink.clone(),
            metrics: Arc::clone(&metrics),
            max_frame: 64 * 1024,
            stop: stop_rx,
            idle: Duration::from_secs(600),
            idle_when_full: Duration::from_secs(10),
            load: None,
        };
        let task = tokio::spawn(run_tls_with(
            listener,
            acceptor,
            ctx,
            max_connections,
            handshake_timeout,
        ));
        Harness {
            store,
            metrics,
            stop,
            addr,
            task,
            pipeline: Some(pipeline),
            cert: cert.unwrap(),
            _dir: dir,
        }
    }

    impl Harness {
        fn connector(&self) -> TlsConnector {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(&self.cert).unwrap() {
                roots.add(c).unwrap();
            }
            let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            TlsConnector::from(Arc::new(cfg))
        }

        /// Connects, sends RFC 5425 octet-counted frames, closes; returns the local port.
        async fn send(&self, msgs: &[&str]) -> u16 {
            let tcp = TcpStream::connect(self.addr).await.unwrap();
            let port = tcp.local_addr().unwrap().port();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = self.connector().connect(name, tcp).await.unwrap();
            for m in msgs {
                tls.write_all(format!("{} {m}", m.len()).as_bytes())
                    .await
                    .unwrap();
            }
            tls.shutdown().await.unwrap();
            port
        }

        async fn wait_events(&self, n: u64) -> Vec<RawRecord> {
            let t = Instant::now();
            while self.store.stats().unwrap().events < n {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "timed out waiting for {n} events (have {})",
                    self.store.stats().unwrap().events
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.store.raw_since(0, 100_000).unwrap()
        }

        fn malformed(&self) -> u64 {
            self.metrics.source(SourceKind::Tls).malformed.load(Relaxed)
        }

        async fn stop(mut self) {
            let _ = self.stop.send(true);
            tokio::time::timeout(Duration::from_secs(5), &mut self.task)
                .await
                .expect("run_tls stops")
                .unwrap();
            let p = self.pipeline.take().unwrap();
            tokio::task::spawn_blocking(move || p.shutdown())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn octet_counted_frames_over_tls_are_stored_with_tls_origin() {
        let h = start(16, HANDSHAKE_TIMEOUT).await;
        let port = h
            .send(&[
                "<34>1 2024-05-01T10:00:00Z web1 sshd 42 - - Failed password for root from 10.0.0.9 port 22 ssh2",
                "<13>May  1 10:00:01 web1 app: second message\nwith a newline inside",
            ])
            .await;
        let recs = h.wait_events(2).await;
        assert_eq!(recs.len(), 2);
        for r in &recs {
            assert_eq!(r.source, format!("tls://127.0.0.1:{port}"));
        }
        assert!(String::from_utf8_lossy(&recs[0].raw).contains("Failed password"));
        // Octet counting keeps the embedded newline inside one message.
        assert!(String::from_utf8_lossy(&recs[1].raw).ends_with("with a newline inside"));
        let ev = h.store.get(recs[0].seq).unwrap().unwrap().event;
        assert_eq!(ev.host().as_deref(), Some("web1"));
        let c = h.metrics.source(SourceKind::Tls);
        assert_eq!(c.events_in.load(Relaxed), 2);
        assert_eq!(c.connections.load(Relaxed), 1);
        assert_eq!(h.metrics.source(SourceKind::Tcp).events_in.load(Relaxed), 0);
        h.stop().await;
    }

    #[tokio::test]
    async fn garbage_handshake_is_counted_and_others_still_work() {
        let h = start(16, HANDSHAKE_TIMEOUT).await;
        let mut bad = TcpStream::connect(h.addr).await.unwrap();
        bad.write_all(b"<13>May  1 10:00:00 host plain text, not TLS\n")
            .await
            .unwrap();
        // The server rejects the handshake: it answers with an alert and/or closes.
        let t = Instant::now();
        while h.malformed() < 1 {
            assert!(t.elapsed() < Duration::from_secs(5), "failure not counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        h.send(&["<13>May  1 10:00:02 web1 app: after garbage"])
            .await;
        let recs = h.wait_events(1).await;
        assert!(String::from_utf8_lossy(&recs[0].raw).contains("after garbage"));
        assert_eq!(h.malformed(), 1);
        h.stop().await;
    }

    #[tokio::test]
    async fn silent_client_does_not_block_others_and_times_out() {
        // One slot only: the silent client holds it until the handshake timeout.
        let h = start(1, Duration::from_millis(300)).await;
        let _silent = TcpStream::connect(h.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        h.send(&["<13>May  1 10:00:03 web1 app: after silence"])
            .await;
        h.wait_events(1).await;
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "slot was free early"
        );
        assert_eq!(h.malformed(), 1, "timeout counted");
        h.stop().await;

        // With free slots a silent client does not delay anyone.
        let h = start(4, HANDSHAKE_TIMEOUT).await;
        let _silent = TcpStream::connect(h.addr).await.unwrap();
        let _silent2 = TcpStream::connect(h.addr).await.unwrap();
        let t = Instant::now();
        h.send(&["<13>May  1 10:00:04 web1 app: not delayed"]).await;
        h.wait_events(1).await;
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(h.malformed(), 0);
        // Shutdown is not held up by the pending handshakes.
        h.stop().await;
    }

    #[test]
    fn generated_pair_is_reused_and_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TlsConfig {
            listen: "0.0.0.0:6514".parse().unwrap(),
            cert: None,
            key: None,
        };
        let (_, c1) = load_or_generate(&cfg, dir.path()).unwrap();
        let c1 = c1.unwrap();
        assert_eq!(c1, dir.path().join("tls").join(GENERATED_CERT));
        let cert1 = std::fs::read(&c1).unwrap();
        let key1 = std::fs::read(dir.path().join("tls").join(GENERATED_KEY)).unwrap();
        assert!(String::from_utf8_lossy(&cert1).starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("tls").join(GENERATED_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (_, c2) = load_or_generate(&cfg, dir.path()).unwrap();
        assert_eq!(c2.unwrap(), c1);
        assert_eq!(std::fs::read(&c1).unwrap(), cert1);
        assert_eq!(
            std::fs::read(dir.path().join("tls").join(GENERATED_KEY)).unwrap(),
            key1
        );
        // The generated files work as an operator-supplied pair too.
        let explicit = TlsConfig {
            cert: Some(c1.clone()),
            key: Some(dir.path().join("tls").join(GENERATED_KEY)),
            ..cfg.clone()
        };
        let (_, none) = load_or_generate(&explicit, dir.path()).unwrap();
        assert_eq!(none, None);
        // Certificate without its key: refuse rather than silently re-keying.
        std::fs::remove_file(dir.path().join("tls").join(GENERATED_KEY)).unwrap();
        let e = load_or_generate(&cfg, dir.path()).err().unwrap();
        assert!(e.contains(GENERATED_KEY) && e.contains("missing"), "{e}");
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let listen: SocketAddr = "127.0.0.1:6514".parse().unwrap();
        let cfg = |c: &str, k: &str| TlsConfig {
            listen,
            cert: Some(d.join(c)),
            key: Some(d.join(k)),
        };
        // Two real pairs to mix up.
        let a = generate(listen).unwrap();
        let b = generate(listen).unwrap();
        std::fs::write(d.join("a.crt"), a.cert.pem()).unwrap();
        std::fs::write(d.join("a.key"), a.key_pair.serialize_pem()).unwrap();
        std::fs::write(d.join("b.key"), b.key_pair.serialize_pem()).unwrap();
        std::fs::write(d.join("empty.pem"), "nothing here\n").unwrap();
        assert!(load_or_generate(&cfg("a.crt", "a.key"), d).is_ok());

        let e = load_or_generate(&cfg("missing.crt", "a.key"), d)
            .err()
            .unwrap();
        assert!(
            e.contains("missing.crt") && e.contains("does not exist"),
            "{e}"
        );
        let e = load_or_generate(&cfg("a.crt", "missing.key"), d)
            .err()
            .unwrap();
        assert!(
            e.contains("missing.key") && e.contains("does not exist"),
            "{e}"
        );
        let e = load_or_generate(&cfg("empty.pem", "a.key"), d)
            .err()
            .unwrap();
        assert!(
            e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );
        // A key file given as the certificate has no certificate in it.
        let e = load_or_generate(&cfg("a.key", "a.key"), d).err().unwrap();
        assert!(e.contains("a.key") && e.contains("no certificate"), "{e}");
        let e = load_or_generate(&cfg("a.crt", "empty.pem"), d)
            .err()
            .unwrap();
        assert!(
            e.contains("empty.pem") && e.contains("no private key"),
            "{e}"
        );
        let e = load_or_generate(&cfg("a.crt", "b.key"), d).err().unwrap();
        assert!(
            e.contains("b.key") && e.contains("a.crt") && e.contains("does not match"),
            "{e}"
        );
        let half = TlsConfig {
            listen,
            cert: Some(d.join("a.crt")),
            key: None,
        };
        let e = load_or_generate(&half, d).err().unwrap();
        assert!(e.contains("`key` is not"), "{e}");
    }

    #[test]
    fn config_deserializes_and_rejects_unknown_keys() {
        let c: TlsConfig = toml::from_str(r#"listen = "0.0.0.0:6514""#).unwrap();
        assert_eq!(c.cert, None);
        assert_eq!(c.key, None);
        let c: TlsConfig =
            toml::from_str("listen = \"[::]:6514\"\ncert = \"/etc/a.crt\"\nkey = \"/etc/a.key\"")
                .unwrap();
        assert_eq!(c.cert.as_deref(), Some(Path::new("/etc/a.crt")));
        assert!(toml::from_str::<TlsConfig>("listen = \"0.0.0.0:6514\"\ncrt = \"x\"").is_err());
    }
}
