//! A scan: configuration (`[scan]` of a TOML file), the profiles, and the order of checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::checks::{self, finding};
use crate::crawl;
use crate::http::Client;
use crate::kev::Kev;
use crate::limiter::Limiter;
use crate::model::{Finding, Severity, Text};
use crate::scope::{AllowList, Target};
use crate::template::{Template, TemplateSet};
use crate::tls;
use crate::{Error, Result};

/// How far a scan goes. `safe` looks (pages, headers, TLS, templates, fingerprints);
/// `standard` also sends harmless-marker probes (XSS, SQL injection, open redirect) to the
/// parameters the crawl found, and `TRACE`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Safe,
    Standard,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Safe => "safe",
            Profile::Standard => "standard",
        }
    }

    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "safe" => Some(Profile::Safe),
            "standard" => Some(Profile::Standard),
            _ => None,
        }
    }
}

/// `[scan]` in the configuration (the same section `mamori serve` reads).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// Hosts that may be scanned: names, `*.domain`, IP addresses, CIDR networks.
    #[serde(default)]
    pub allow: Vec<String>,
    /// What `serve` scans on its schedule (each must be in `allow`).
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub profile: Profile,
    /// Requests (and TLS connections) per target; default 300 (safe) / 1000 (standard).
    #[serde(default)]
    pub max_requests: Option<u32>,
    /// Requests per second; default 5 (safe) / 10 (standard).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Time per target; default 300 s.
    #[serde(default)]
    pub max_seconds: Option<u64>,
    /// Pages the crawl fetches per target; default 20 (safe) / 50 (standard).
    #[serde(default)]
    pub max_pages: Option<usize>,
    /// Per request; default 10 s.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// PEM file of a private CA the company's clients trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A directory of more templates (`*.yml`), added to the shipped ones.
    #[serde(default)]
    pub templates: Option<PathBuf>,
    /// A newer KEV list replacing the shipped one.
    #[serde(default)]
    pub kev_file: Option<PathBuf>,
    /// `serve`: how often to scan (`24h`, `7d`, `30m`); default `7d`.
    #[serde(default)]
    pub every: Option<String>,
}

impl ScanConfig {
    /// Reads the `[scan]` section of a TOML file; relative paths are taken from the file's
    /// directory.
    pub fn from_file(path: &Path) -> Result<ScanConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        let doc: toml::Table = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        let scan = doc.get("scan").cloned().ok_or_else(|| Error::Config {
            path: path.display().to_string(),
            msg: "no [scan] section".into(),
        })?;
        let mut cfg: ScanConfig = scan
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config {
                path: path.display().to_string(),
                msg: format!("[scan]: {e}"),
            })?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.ca_file, &mut self.templates, &mut self.kev_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// `every` as a duration.
    pub fn every(&self) -> Result<Duration> {
        let s = self.every.as_deref().unwrap_or("7d").trim();
        let bad = || Error::Config {
            path: "[scan]".into(),
            msg: format!("every = {s:?}: expected a number and m, h or d (e.g. 24h)"),
        };
        let (n, unit) = s.split_at(s.len().saturating_sub(1));
        let n: u64 = n.parse().map_err(|_| bad())?;
        let secs = match unit {
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            _ => return Err(bad()),
        };
        if secs < 600 {
            return Err(Error::Config {
                path: "[scan]".into(),
                msg: format!("every = {s:?}: at least 10m"),
            });
        }
        Ok(Duration::from_secs(secs))
    }

    pub fn limits(&self, profile: Profile) -> Limits {
        let standard = profile == Profile::Standard;
        Limits {
            max_requests: self
                .max_requests
                .unwrap_or(if standard { 1000 } else { 300 }),
            rate: self.rate.unwrap_or(if standard { 10.0 } else { 5.0 }),
            max_seconds: self.max_seconds.unwrap_or(300),
            max_pages: self.max_pages.unwrap_or(if standard { 50 } else { 20 }),
            timeout: Duration::from_secs(self.timeout_seconds.unwrap_or(10).max(1)),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    pub max_requests: u32,
    pub rate: f64,
    pub max_seconds: u64,
    pub max_pages: usize,
    #[serde(skip)]
    pub timeout: Duration,
}

/// A fact about a target (TLS versions, pages crawled…) shown in the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fact {
    pub name: Text,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetReport {
    pub target: String,
    pub url: String,
    pub reachable: bool,
    pub requests: u32,
    pub max_requests: u32,
    pub facts: Vec<Fact>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanReport {
    pub scanner: String,
    pub profile: Profile,
    pub started: String,
    pub duration_ms: u64,
    pub targets: Vec<TargetReport>,
    /// Templates that did not load (file and reason); the others ran.
    pub template_errors: Vec<String>,
}

impl ScanReport {
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.targets.iter().flat_map(|t| t.findings.iter())
    }

    pub fn worst(&self) -> Severity {
        self.findings()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Info)
    }
}

/// One request a dry run would send.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub target: String,
    pub method: String,
    pub url: String,
    pub why: String,
}

pub struct Scanner {
    profile: Profile,
    limits: Limits,
    allow: Option<AllowList>,
    templates: TemplateSet,
    kev: Kev,
    roots: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("profile", &self.profile)
            .field("templates", &self.templates.templates.len())
            .finish_non_exhaustive()
    }
}

fn nonce() -> String {
    let n =
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64 ^ std::process::id() as u64;
    format!("{:x}", n & 0xff_ffff)
}

impl Scanner {
    /// `allow`: `None` means the targets passed to `run` are their own allow-list (the
    /// person typed them); `Some` is checked strictly.
    pub fn new(cfg: &ScanConfig, profile: Profile) -> Result<Scanner> {
        let allow = if cfg.allow.is_empty() {
            None
        } else {
            Some(AllowList::parse(&cfg.allow)?)
        };
        let mut templates = TemplateSet::shipped();
        if let Some(dir) = &cfg.templates {
            templates.add_dir(dir).map_err(|e| Error::Config {
                path: dir.display().to_string(),
                msg: e.to_string(),
            })?;
        }
        let kev = match &cfg.kev_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::Config {
                    path: p.display().to_string(),
                    msg: e.to_string(),
                })?;
                Kev::parse(&p.display().to_string(), &text)?
            }
            None => Kev::shipped(),
        };
        let roots = match &cfg.ca_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::Config {
                    path: p.display().to_string(),
                    msg: e.to_string(),
                })?;
                let r = tls::read_pem_certs(&text);
                if r.is_empty() {
                    return Err(Error::Config {
                        path: p.display().to_string(),
                        msg: "no PEM certificate in ca_file".into(),
                    });
                }
                r
            }
            None => Vec::new(),
        };
        Ok(Scanner {
            profile,
            limits: cfg.limits(profile),
            allow,
            templates,
            kev,
            roots,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn template_errors(&self) -> Vec<String> {
        self.templates
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    /// Refuses the whole scan when any target is outside the allow-list.
    pub fn check_targets(&self, targets: &[Target]) -> Result<()> {
        let own;
        let allow = match &self.allow {
            Some(a) => a,
            None => {
                own = AllowList::of_targets(targets);
                &own
            }
        };
        targets.iter().try_for_each(|t| allow.check(t))
    }

    fn active_templates(&self) -> impl Iterator<Item = &Template> {
        self.templates
            .templates
            .iter()
            .filter(move |t| t.profile <= self.profile)
    }

    /// What a scan would send, without sending anything.
    pub fn plan(&self, targets: &[Target]) -> Result<Vec<Planned>> {
        self.check_targets(targets)?;
        let mut out = Vec::new();
        for t in targets {
            let p = |method: &str, url: &str, why: String| Planned {
                target: t.given.clone(),
                method: method.to_string(),
                url: url.to_string(),
                why,
            };
            out.push(p(
                "GET",
                t.url.as_str(),
                format!(
                    "crawl start; then up to {} in-scope pages found by links",
                    self.limits.max_pages - 1
                ),
            ));
            if t.is_https() {
                let hp = format!("{}:{}", t.host(), t.port());
                for what in [
                    "TLS 1.3 handshake (rustls)",
                    "TLS 1.2 handshake (rustls)",
                    "ClientHello SSL 3.0",
                    "ClientHello TLS 1.0",
                    "ClientHello TLS 1.1",
                    "ClientHello TLS 1.2 offering only weak ciphers",
                ] {
                    out.push(p("TLS", &hp, what.to_string()));
                }
            }
            for tpl in self.active_templates() {
                for r in &tpl.requests {
                    for path in &r.path {
                        if let Some(u) = t.join(Template::rel_path(path)) {
                            out.push(p(
                                r.method.as_str(),
                                u.as_str(),
                                format!("template {}", tpl.id),
                            ));
                        }
                    }
                }
            }
            out.push(p("OPTIONS", t.url.as_str(), "announced methods".into()));
            if self.profile == Profile::Standard {
                out.push(p("TRACE", t.url.as_str(), "TRACE echo".into()));
                out.push(p(
                    "GET",
                    &format!("{}…?PARAM=…", t.url),
                    "per parameter found by the crawl (at most 20 URLs × 10 parameters): \
                     marker for reflected XSS, one quote, AND '1'='1' / AND '1'='2', \
                     redirect to mamori-scan.invalid"
                        .into(),
                ));
            }
        }
        Ok(out)
    }

    /// Scans every target, one after the other. Fails only when a target is outside the
    /// allow-list (then nothing is sent at all).
    pub fn run(&self, targets: &[Target], mut progress: impl FnMut(&str)) -> Result<ScanReport> {
        self.check_targets(targets)?;
        let started = chrono::Utc::now();
        let t0 = Instant::now();
        let mut reports = Vec::new();
        for t in targets {
            progress(&t.given);
            reports.push(self.run_target(t));
        }
        Ok(ScanReport {
            scanner: crate::http::USER_AGENT.to_string(),
            profile: self.profile,
            started: started.to_rfc3339(),
            duration_ms: t0.elapsed().as_millis() as u64,
            targets: reports,
            template_errors: self.template_errors(),
        })
    }

    fn run_target(&self, t: &Target) -> TargetReport {
        let limiter = Arc::new(Limiter::new(
            self.limits.max_requests,
            self.limits.rate,
            Duration::from_secs(self.limits.max_seconds),
        ));
        let client = Client::new(t.clone(), limiter.clone(), self.limits.timeout);
        let mut rep = TargetReport {
            target: t.given.clone(),
            url: t.url.to_string(),
            reachable: false,
            requests: 0,
            max_requests: self.limits.max_requests,
            facts: Vec::new(),
            findings: Vec::new(),
        };
        if let Err(e) = self.steps(t, &client, &mut rep) {
            match e {
                Error::BudgetSpent(_) | Error::TimeSpent(_) => rep.findings.push(finding(
                    "budget-spent",
                    Severity::Info,
                    t,
                    t.url.as_str(),
                    t.url.path(),
                    &e.to_string(),
                )),
                other => rep.findings.push(finding(
                    "unreachable",
                    Severity::Info,
                    t,
                    t.url.as_str(),
                    t.url.path(),
                    &other.to_string(),
                )),
            }
        }
        rep.requests = limiter.spent();
        rep.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.check.cmp(&b.check))
                .then_with(|| a.location.cmp(&b.location))
        });
        rep.findings.dedup_by(|a, b| a.key() == b.key());
        rep
    }

    fn steps(&self, t: &Target, client: &Client, rep: &mut TargetReport) -> Result<()> {
        let fact = |en: &str, ja: &str, v: String| Fact {
            name: Text::new(en, ja),
            value: v,
        };
        let crawl = crawl::crawl(client, self.limits.max_pages)?;
        if crawl.pages.is_empty() {
            rep.findings.push(finding(
                "unreachable",
                Severity::Info,
                t,
                t.url.as_str(),
                t.url.path(),
                &format!("{} request(s) failed", client.failures()),
            ));
            return Ok(());
        }
        rep.reachable = true;
        rep.facts.push(fact(
            "pages crawled",
            "巡回したページ",
            crawl.pages.len().to_string(),
        ));
        rep.facts.push(fact(
            "parameters found",
            "見つけたパラメータ",
            crawl
                .points
                .iter()
                .map(|p| p.params.len())
                .sum::<usize>()
                .to_string(),
        ));
        if !crawl.post_forms.is_empty() {
            rep.facts.push(fact(
                "POST forms not submitted",
                "送信しなかった POST フォーム",
                crawl.post_forms.len().to_string(),
            ));
        }
        let main = &crawl.pages[0];
        rep.findings.extend(checks::headers(t, main));
        rep.findings.extend(checks::cookies(t, &crawl.pages));
        if t.is_https() {
            let f = tls::check(
                &t.host(),
                t.port(),
                &self.roots,
                client.limiter(),
                self.limits.timeout,
            )?;
            self.tls_findings(t, &f, rep);
        } else {
            rep.findings.push(finding(
                "no-https",
                Severity::Medium,
                t,
                t.url.as_str(),
                t.url.path(),
                t.url.as_str(),
            ));
        }
        // Passive templates over every page fetched.
        let mut products: BTreeMap<String, (Option<String>, String, Severity)> = BTreeMap::new();
        for tpl in self.active_templates() {
            let Some(p) = &tpl.passive else { continue };
            let header_only = p.matchers.iter().all(|m| {
                m.part == crate::template::Part::Header
                    || m.kind == crate::template::MatcherType::Status
            });
            let mut n = 0;
            for page in &crawl.pages {
                if let Some(hit) = p.eval(page) {
                    self.record_hit(t, tpl, hit, rep, &mut products);
                    n += 1;
                    if header_only || n >= 5 {
                        break;
                    }
                }
            }
        }
        // Request templates: the first path that matches.
        for tpl in self.active_templates() {
            'spec: for spec in &tpl.requests {
                for path in &spec.path {
                    let Some(u) = t.join(Template::rel_path(path)) else {
                        continue;
                    };
                    if let Some(r) = client.send(spec.method, &u)? {
                        if let Some(hit) = spec.probe.eval(&r) {
                            self.record_hit(t, tpl, hit, rep, &mut products);
                            break 'spec;
                        }
                    }
                }
            }
        }
        self.kev_findings(t, &products, rep);
        rep.findings
            .extend(checks::methods(client, self.profile == Profile::Standard)?);
        if self.profile == Profile::Standard {
            let nonce = nonce();
            let mut probed = 0;
            for point in crawl.points.iter().take(20) {
                probed += point.params.len().min(10);
                rep.findings
                    .extend(checks::probe_point(client, point, &nonce)?);
            }
            rep.facts.push(fact(
                "parameters probed",
                "検査したパラメータ",
                probed.to_string(),
            ));
        }
        Ok(())
    }

    fn record_hit(
        &self,
        t: &Target,
        tpl: &Template,
        hit: crate::template::Hit,
        rep: &mut TargetReport,
        products: &mut BTreeMap<String, (Option<String>, String, Severity)>,
    ) {
        if let Some(product) = &tpl.fingerprint {
            let version = hit
                .extracted
                .iter()
                .find(|(n, _)| n == "version")
                .map(|(_, v)| crate::kev::normalise_version(v));
            let e = products.entry(product.clone()).or_insert((
                None,
                hit.url.clone(),
                tpl.info.severity,
            ));
            if e.0.is_none() && version.is_some() {
                *e = (version, hit.url, tpl.info.severity);
            }
            return;
        }
        let path = Url::parse(&hit.url)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|_| "/".into());
        rep.findings.push(Finding {
            check: tpl.id.clone(),
            severity: tpl.info.severity,
            target: t.given.clone(),
            location: hit.url.clone(),
            path,
            title: tpl.info.name.clone(),
            explain: tpl.info.description.clone(),
            fix: tpl.info.remediation.clone(),
            evidence: hit.evidence,
            cves: Vec::new(),
        });
    }

    fn kev_findings(
        &self,
        t: &Target,
        products: &BTreeMap<String, (Option<String>, String, Severity)>,
        rep: &mut TargetReport,
    ) {
        for (id, (version, url, sev)) in products {
            let path = Url::parse(url)
                .map(|u| u.path().to_string())
                .unwrap_or_else(|_| "/".into());
            let Some(p) = self.kev.product(id) else {
                continue;
            };
            let shown = match version {
                Some(v) => format!("{} {v}", p.name),
                None => p.name.clone(),
            };
            rep.facts.push(Fact {
                name: Text::new("product", "製品"),
                value: format!("{shown} ({url})"),
            });
            let (check, severity, vulns): (&str, Severity, Vec<&crate::kev::Vuln>) = match version {
                Some(v) if p.versioned => {
                    let hit: Vec<_> = p.vulns.iter().filter(|x| x.affects(v)).collect();
                    if hit.is_empty() {
                        ("product-seen", Severity::Info, hit)
                    } else {
                        let s = hit
                            .iter()
                            .map(|x| x.severity)
                            .max()
                            .unwrap_or(Severity::High);
                        ("kev-affected", s, hit)
                    }
                }
                _ => ("kev-exposed", *sev, p.vulns.iter().collect()),
            };
            let mut f = finding(check, severity, t, &format!("{id} {url}"), &path, "");
            f.title = Text::new(
                format!("{}: {}", shown, f.title.en),
                format!("{}: {}", shown, f.title.ja),
            );
            f.evidence = vulns
                .iter()
                .map(|v| format!("{} ({}, KEV {})", v.cve, v.name, v.kev_added))
                .collect::<Vec<_>>()
                .join("; ");
            if f.evidence.is_empty() {
                f.evidence = shown.clone();
            }
            f.cves = vulns.iter().map(|v| v.cve.clone()).collect();
            rep.findings.push(f);
        }
    }

    fn tls_findings(&self, t: &Target, f: &tls::TlsFacts, rep: &mut TargetReport) {
        let hp = format!("{}:{}", t.host(), t.port());
        let mut versions = Vec::new();
        if f.tls13 {
            versions.push("TLS 1.3");
        }
        if f.tls12 {
            versions.push("TLS 1.2");
        }
        versions.extend(f.legacy_accepted.iter().copied());
        rep.facts.push(Fact {
            name: Text::new("TLS versions offered", "提供されている TLS"),
            value: if versions.is_empty() {
                "-".into()
            } else {
                versions.join(", ")
            },
        });
        if let Some(c) = &f.cipher {
            rep.facts.push(Fact {
                name: Text::new("cipher chosen", "選ばれた暗号"),
                value: c.clone(),
            });
        }
        let Some(cert) = &f.cert else {
            rep.findings.push(finding(
                "tls-unreachable",
                Severity::Info,
                t,
                &hp,
                "/",
                "no TLS 1.2/1.3 handshake",
            ));
            return;
        };
        let not_after = cert
            .not_after
            .and_then(|s| chrono::DateTime::from_timestamp(s as i64, 0))
            .map(|d| d.format("%Y-%m-%d").to_string());
        if cert.expired {
            rep.findings.push(finding(
                "cert-expired",
                Severity::High,
                t,
                &hp,
                "/",
                &format!("notAfter {}", not_after.as_deref().unwrap_or("(past)")),
            ));
        } else if cert.expires_within_30_days {
            rep.findings.push(finding(
                "cert-expiring",
                Severity::Medium,
                t,
                &hp,
                "/",
                "expires within 30 days",
            ));
        }
        if let Some(why) = &cert.untrusted_reason {
            rep.findings.push(finding(
                "cert-untrusted",
                Severity::Medium,
                t,
                &hp,
                "/",
                &format!("{why} (chain of {})", cert.chain_len),
            ));
        }
        if !cert.name_ok {
            rep.findings.push(finding(
                "cert-name",
                Severity::High,
                t,
                &hp,
                "/",
                &format!("not valid for {}", t.host()),
            ));
        }
        if !f.legacy_accepted.is_empty() {
            rep.findings.push(finding(
                "tls-old-protocol",
                Severity::Medium,
                t,
                &hp,
                "/",
                &f.legacy_accepted.join(", "),
            ));
        }
        if !f.weak_ciphers.is_empty() {
            rep.findings.push(finding(
                "tls-weak-cipher",
                Severity::Medium,
                t,
                &hp,
                "/",
                &f.weak_ciphers.join(", "),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_the_scan_section_and_resolves_paths() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mamori.toml");
        std::fs::write(
            &p,
            "[server]\nlisten = \"x\"\n[scan]\nallow = [\"example.com\"]\nprofile = \"standard\"\nca_file = \"ca.pem\"\nevery = \"24h\"\n",
        )
        .unwrap();
        let c = ScanConfig::from_file(&p).unwrap();
        assert_eq!(c.profile, Profile::Standard);
        assert_eq!(
            c.ca_file.as_deref(),
            Some(d.path().join("ca.pem").as_path())
        );
        assert_eq!(c.every().unwrap(), Duration::from_secs(86_400));
        std::fs::write(&p, "[scan]\nalow = []\n").unwrap();
        let e = ScanConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("alow"), "{e}");
        let c = ScanConfig {
            every: Some("1m".into()),
            ..ScanConfig::default()
        };
        assert!(c.every().is_err());
    }

    #[test]
    fn outside_the_allow_list_is_refused_before_anything_is_planned() {
        let cfg = ScanConfig {
            allow: vec!["192.0.2.0/24".into()],
            ..ScanConfig::default()
        };
        let s = Scanner::new(&cfg, Profile::Safe).unwrap();
        let ok = Target::parse("https://192.0.2.10/").unwrap();
        let out = Target::parse("https://198.51.100.1/").unwrap();
        assert!(s.plan(std::slice::from_ref(&ok)).is_ok());
        assert!(matches!(
            s.plan(&[ok, out.clone()]),
            Err(Error::OutsideAllowList(_))
        ));
        assert!(matches!(
            s.run(&[out], |_| {}),
            Err(Error::OutsideAllowList(_))
        ));
    }

    #[test]
    fn dry_run_plan_lists_templates_and_tls_probes() {
        let s = Scanner::new(&ScanConfig::default(), Profile::Standard).unwrap();
        let t = Target::parse("https://mail.example.co.jp/").unwrap();
        let plan = s.plan(&[t]).unwrap();
        assert!(plan.iter().any(|p| p.url.ends_with("/.git/HEAD")));
        assert!(plan.iter().any(|p| p.method == "TLS"));
        assert!(plan.iter().any(|p| p.method == "TRACE"));
        assert!(plan
            .iter()
            .all(|p| ["GET", "HEAD", "OPTIONS", "TRACE", "TLS"].contains(&p.method.as_str())));
    }
}
