//! Targets and the allow-list. A target is an `http(s)` URL given by a person (command line
//! or configuration) — never taken from a log line; the allow-list says which hosts may be
//! scanned at all, and the scope of a target (same scheme, host and port, under its path) says
//! which URLs the crawl may follow.

use std::net::{IpAddr, ToSocketAddrs};

use url::{Host, Url};

use crate::{Error, Result};

/// One thing to scan: an `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As given, for reports.
    pub given: String,
    pub url: Url,
}

impl Target {
    /// `mail.example.co.jp`, `https://vpn.example.co.jp:8443/`, `http://192.0.2.7/app/`.
    /// A bare host means `https://host/`.
    pub fn parse(s: &str) -> Result<Target> {
        let s = s.trim();
        let bad = |reason: &str| Error::BadTarget {
            target: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let with_scheme = if s.contains("://") {
            s.to_string()
        } else {
            format!("https://{s}/")
        };
        let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad("only http and https are scanned"));
        }
        if url.host().is_none() {
            return Err(bad("no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials in the URL are not accepted"));
        }
        url.set_query(None);
        url.set_fragment(None);
        if !url.path().ends_with('/') {
            // `/app` scans `/app/…`: the scope is a directory.
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        Ok(Target {
            given: s.to_string(),
            url,
        })
    }

    pub fn host(&self) -> String {
        match self.url.host() {
            Some(Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => String::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(443)
    }

    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// Same scheme, host and port, and under the target's path.
    pub fn in_scope(&self, u: &Url) -> bool {
        u.scheme() == self.url.scheme()
            && u.host() == self.url.host()
            && u.port_or_known_default() == self.url.port_or_known_default()
            && u.path().starts_with(self.url.path())
    }

    /// `base` joined with `rel` (templates use paths relative to the target's directory).
    pub fn join(&self, rel: &str) -> Option<Url> {
        let rel = rel.trim_start_matches('/');
        self.url.join(rel).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Host(String),
    /// `*.example.co.jp`: the domain itself and every name under it.
    Domain(String),
    Net(IpAddr, u8),
}

/// The hosts that may be scanned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

fn parse_entry(s: &str) -> Result<Entry> {
    let s = s.trim();
    let bad = |reason: &str| Error::BadAllowEntry {
        entry: s.to_string(),
        reason: reason.to_string(),
    };
    if let Some((ip, bits)) = s.split_once('/') {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| bad("not an IP address before '/'"))?;
        let bits: u8 = bits
            .parse()
            .map_err(|_| bad("prefix length is not a number"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(bad("prefix length too long"));
        }
        return Ok(Entry::Net(ip, bits));
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(Entry::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
    }
    let (wild, name) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        return Err(bad("not a host name"));
    }
    Ok(if wild {
        Entry::Domain(name)
    } else {
        Entry::Host(name)
    })
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| in_net(IpAddr::V4(a), net, bits)),
        _ => false,
    }
}

impl AllowList {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList> {
        Ok(AllowList {
            entries: entries
                .iter()
                .map(|e| parse_entry(e.as_ref()))
                .collect::<Result<_>>()?,
        })
    }

    /// The allow-list that is exactly the given targets' hosts (what `mamori scan TARGET…`
    /// uses without a configuration: the person typed them).
    pub fn of_targets(targets: &[Target]) -> AllowList {
        AllowList {
            entries: targets
                .iter()
                .filter_map(|t| parse_entry(&t.host()).ok())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name_allowed(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|e| match e {
            Entry::Host(h) => *h == name,
            Entry::Domain(d) => name == *d || name.ends_with(&format!(".{d}")),
            Entry::Net(..) => false,
        })
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Net(n, bits) => in_net(ip, *n, *bits),
            _ => false,
        })
    }

    /// Whether `t` may be scanned. A name is allowed by a name entry, or when every address it
    /// resolves to is inside an address entry (so a CIDR allow-list cannot be escaped through
    /// DNS).
    pub fn check(&self, t: &Target) -> Result<()> {
        let allowed = match t.url.host() {
            Some(Host::Ipv4(a)) => self.ip_allowed(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => self.ip_allowed(IpAddr::V6(a)),
            Some(Host::Domain(d)) => {
                self.name_allowed(d) || {
                    let addrs: Vec<IpAddr> = (d, t.port())
                        .to_socket_addrs()
                        .map(|it| it.map(|a| a.ip()).collect())
                        .unwrap_or_default();
                    !addrs.is_empty() && addrs.iter().all(|a| self.ip_allowed(*a))
                }
            }
            None => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::OutsideAllowList(t.url.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_normalise() {
        let t = Target::parse("mail.example.co.jp").unwrap();
        assert_eq!(t.url.as_str(), "https://mail.example.co.jp/");
        let t = Target::parse("http://192.0.2.7:8080/app?x=1#f").unwrap();
        assert_eq!(t.url.as_str(), "http://192.0.2.7:8080/app/");
        assert_eq!(t.port(), 8080);
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("https://user:pw@x/").is_err());
        assert!(Target::parse("").is_err());
    }

    #[test]
    fn scope_is_scheme_host_port_and_path() {
        let t = Target::parse("https://a.example/app/").unwrap();
        assert!(t.in_scope(&Url::parse("https://a.example/app/x?y=1").unwrap()));
        assert!(!t.in_scope(&Url::parse("https://a.example/other").unwrap()));
        assert!(!t.in_scope(&Url::parse("http://a.example/app/").unwrap()));
        assert!(!t.in_scope(&Url::parse("https://b.example/app/").unwrap()));
        assert!(!t.in_scope(&Url::parse("https://a.example:444/app/").unwrap()));
    }

    #[test]
    fn allow_list_names_domains_and_networks() {
        let a = AllowList::parse(&["www.example.co.jp", "*.corp.example", "192.0.2.0/24", "::1"])
            .unwrap();
        let ok = |s: &str| a.check(&Target::parse(s).unwrap()).is_ok();
        assert!(ok("https://WWW.example.co.jp/"));
        assert!(ok("https://vpn.corp.example/"));
        assert!(ok("https://corp.example/"));
        assert!(ok("http://192.0.2.200/"));
        assert!(ok("http://[::1]:8080/"));
        assert!(!ok("https://example.co.jp/"));
        assert!(!ok("https://evilcorp.example/"));
        assert!(!ok("http://192.0.3.1/"));
        assert!(!ok("http://127.0.0.1/"));
        assert!(AllowList::parse(&["10.0.0.0/33"]).is_err());
        assert!(AllowList::parse(&["bad host!"]).is_err());
    }

    #[test]
    fn a_name_is_allowed_through_its_addresses() {
        let a = AllowList::parse(&["127.0.0.0/8", "::1"]).unwrap();
        assert!(a
            .check(&Target::parse("http://localhost:1/").unwrap())
            .is_ok());
        let b = AllowList::parse(&["192.0.2.1"]).unwrap();
        assert!(b
            .check(&Target::parse("http://localhost:1/").unwrap())
            .is_err());
    }
}
