//! HTTPS for the API and the console: `[http] tls_cert` / `tls_key` are loaded with the same
//! code as syslog TLS ([`crate::sources::tls::load_or_generate`]: PEM chain, PKCS#8/PKCS#1/SEC1
//! key, a mismatch named), on rustls with the ring provider.

use std::path::Path;

use tokio_rustls::TlsAcceptor;

use crate::config::HttpConfig;

/// The acceptor when HTTPS is configured, `None` for plain HTTP; an error names the file.
pub fn acceptor(http: &HttpConfig, data_dir: &Path) -> Result<Option<TlsAcceptor>, String> {
    let (Some(cert), Some(key), Some(listen)) = (&http.tls_cert, &http.tls_key, http.listen) else {
        return Ok(None);
    };
    let cfg = crate::sources::tls::TlsConfig {
        listen,
        cert: Some(cert.clone()),
        key: Some(key.clone()),
    };
    crate::sources::tls::load_or_generate(&cfg, data_dir)
        .map(|(a, _)| Some(a))
        .map_err(|e| format!("[http] tls_cert/tls_key: {}", e.replace("syslog TLS: ", "")))
}
