//! Safe external diagnosis of the company's own web services and VPN (`mamori scan`).
//!
//! The key design decision is that **the scanner cannot be pointed anywhere by accident**:
//! every request goes through one [`http::Client`] that checks the target against the
//! allow-list ([`scope::AllowList`]), spends from a fixed request budget and waits for the rate
//! limiter ([`limiter::Limiter`]), identifies itself in the User-Agent, sends only `GET`,
//! `HEAD`, `OPTIONS` and `TRACE` with no body, and never follows a redirect or a link out of
//! the target's scope. A dry run goes through the same client and records instead of sending.
//!
//! What is checked is mostly data: YAML templates in the spirit of Nuclei (matchers on status,
//! headers, body and regex, joined by `and`/`or`), shipped under `templates/` and embedded at
//! build time, plus a KEV-style list of product fingerprints → known-exploited CVEs
//! (`data/kev.yml`). Code does what data cannot: TLS (rustls for the certificate and the modern
//! versions, hand-made ClientHellos for TLS 1.0/1.1 and weak ciphers), security headers and
//! cookies, a bounded in-scope crawl, and harmless-marker probes for reflected XSS,
//! error-based/boolean SQL injection and open redirects on the parameters the crawl found.
//!
//! Payloads are harmless by construction: markers are inert text, the SQL probes are a quote
//! and `AND '1'='1'`/`AND '1'='2'` comparisons (reads only), redirects point to
//! `mamori-scan.invalid` (a name that never resolves); forms that `POST` are never submitted and
//! links that look like logout/delete are never followed. Login forms are never filled.

pub mod checks;
pub mod crawl;
pub mod http;
pub mod kev;
pub mod limiter;
pub mod model;
pub mod report;
pub mod scan;
pub mod scope;
pub mod store;
pub mod template;
pub mod texts;
pub mod tls;

pub use model::{Finding, Lang, Severity, Text};
pub use scan::{Profile, ScanConfig, ScanReport, Scanner};
pub use scope::{AllowList, Target};

/// Everything that stops a scan before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("target {target:?} is not a valid http(s) URL or host: {reason}")]
    BadTarget { target: String, reason: String },
    #[error("target {0} is outside the allow-list")]
    OutsideAllowList(String),
    #[error("allow-list entry {entry:?} is not a host, IP address, CIDR or *.domain: {reason}")]
    BadAllowEntry { entry: String, reason: String },
    #[error("{path}: {msg}")]
    Template { path: String, msg: String },
    #[error("{path}: {msg}")]
    Config { path: String, msg: String },
    #[error("request budget of {0} requests spent")]
    BudgetSpent(u32),
    #[error("time budget of {0} s spent")]
    TimeSpent(u64),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
