//! The one way a scan talks HTTP: every request is checked against the target's scope, spends
//! from the budget, waits for the rate limiter, carries Mamori's User-Agent, has no body and
//! is never redirected. The method is a closed set of read-only verbs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::limiter::Limiter;
use crate::scope::Target;
use crate::{Error, Result};

/// The User-Agent of every request: says who is scanning and why.
pub const USER_AGENT: &str = concat!(
    "Mamori-Scan/",
    env!("CARGO_PKG_VERSION"),
    " (authorised security self-check; +https://github.com/mamori)"
);
/// A response body is read up to this size; the rest is dropped.
const MAX_BODY: u64 = 512 * 1024;

/// The only methods a scan sends. `PUT`, `DELETE`, `POST`… cannot be expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Head,
    Options,
    Trace,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
        }
    }
}

/// A response, its body cut at 512 KiB and read as lossy UTF-8.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub url: String,
    pub status: u16,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The headers as `name: value` lines (what `part: header` matchers see).
    pub fn header_text(&self) -> String {
        let mut s = String::new();
        for (n, v) in &self.headers {
            s.push_str(n);
            s.push_str(": ");
            s.push_str(v);
            s.push('\n');
        }
        s
    }

    pub fn is_html(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().contains("html"))
    }
}

/// An HTTP client bound to one target.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    target: Target,
    limiter: Arc<Limiter>,
    failures: Arc<AtomicU32>,
}

impl Client {
    /// Certificate verification is off on purpose: a bad certificate is a finding of the TLS
    /// check, not a reason to stop looking at the site.
    pub fn new(target: Target, limiter: Arc<Limiter>, timeout: Duration) -> Client {
        let tls = ureq::tls::TlsConfig::builder()
            .disable_verification(true)
            .build();
        let agent = ureq::Agent::config_builder()
            .user_agent(USER_AGENT)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .build()
            .new_agent();
        Client {
            agent,
            target,
            limiter,
            failures: Arc::new(AtomicU32::new(0)),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Requests that failed at the network level (timeouts, resets).
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Sends `method url`. `Ok(None)` when the network failed (counted); `Err` when the URL is
    /// out of scope or the budget is spent — the caller stops.
    pub fn send(&self, method: Method, url: &Url) -> Result<Option<Response>> {
        if !self.target.in_scope(url) {
            return Err(Error::OutsideAllowList(url.to_string()));
        }
        self.limiter.acquire()?;
        let req = match ureq::http::Request::builder()
            .method(method.as_str())
            .uri(url.as_str())
            .body(())
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(url = %url, error = %e, "request not built");
                return Ok(None);
            }
        };
        match self.agent.run(req) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_ascii_lowercase(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let body = if method == Method::Head {
                    String::new()
                } else {
                    use std::io::Read;
                    let mut b = Vec::new();
                    // Longer than the limit or cut short: keep what was read.
                    let _ = resp
                        .body_mut()
                        .as_reader()
                        .take(MAX_BODY)
                        .read_to_end(&mut b);
                    String::from_utf8_lossy(&b).into_owned()
                };
                Ok(Some(Response {
                    url: url.to_string(),
                    status,
                    headers,
                    body,
                }))
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(url = %url, error = %e, "request failed");
                Ok(None)
            }
        }
    }

    pub fn get(&self, url: &Url) -> Result<Option<Response>> {
        self.send(Method::Get, url)
    }
}
