//! Typed, validated arguments. Every value that ends up in an argv or an nft script is one of
//! these types (or `IpAddr`, a `u64` of seconds, a constant), and each has exactly one way in:
//! a strict parser that rejects anything outside a small alphabet.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{clip, Error, Result};

/// Parses an IP address and nothing else (no ports, no CIDR, no scope ids, no trailing text).
/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are returned as the IPv4 address they are, so
/// that allow-list checks and the choice of nft set cannot be dodged by re-spelling an address.
pub fn parse_ip(input: &str) -> Result<IpAddr> {
    input
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| Error::InvalidIp { input: clip(input) })
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`, or a bare address = a host route). Host bits
/// are cleared on parse, so `10.1.2.3/8` is `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr> {
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::InvalidCidr {
                input: format!("{addr}/{prefix}"),
                reason: "prefix length too long",
            });
        }
        Ok(Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// A single-address network.
    pub fn host(addr: IpAddr) -> Cidr {
        let addr = addr.to_canonical();
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(input: &str) -> Result<Cidr> {
        let bad = |reason| Error::InvalidCidr {
            input: clip(input),
            reason,
        };
        match input.split_once('/') {
            None => Ok(Cidr::host(
                parse_ip(input).map_err(|_| bad("not an address"))?,
            )),
            Some((a, p)) => {
                let addr = a.parse::<IpAddr>().map_err(|_| bad("not an address"))?;
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("prefix length is not a number"));
                }
                let prefix: u8 = p.parse().map_err(|_| bad("prefix length too long"))?;
                // `::ffff:10.0.0.0/104` is the IPv4 network 10.0.0.0/8.
                let (addr, prefix) = match addr {
                    IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                        (IpAddr::V6(v6).to_canonical(), prefix - 96)
                    }
                    other => (other, prefix),
                };
                Cidr::new(addr, prefix).map_err(|_| bad("prefix length too long"))
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl TryFrom<String> for Cidr {
    type Error = Error;
    fn try_from(s: String) -> Result<Cidr> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

/// A local account name, as `useradd` accepts by default: `^[a-z_][a-z0-9_-]{0,31}$`.
/// It cannot start with `-`, so it can never be read as an option by `usermod` or `pkill`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    pub fn parse(input: &str) -> Result<UserName> {
        let bad = |reason| Error::InvalidUserName {
            input: clip(input),
            reason,
        };
        let bytes = input.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(bad("empty"));
        };
        if bytes.len() > 32 {
            return Err(bad("longer than 32 characters"));
        }
        if !(first.is_ascii_lowercase() || first == b'_') {
            return Err(bad("must start with a-z or _"));
        }
        if !bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(bad("only a-z, 0-9, _ and - are allowed"));
        }
        Ok(UserName(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for UserName {
    type Error = Error;
    fn try_from(s: String) -> Result<UserName> {
        UserName::parse(&s)
    }
}

impl From<UserName> for String {
    fn from(u: UserName) -> String {
        u.0
    }
}

/// A network namespace name for `ip netns exec NAME ...`: `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`
/// (no `/`, no leading `-` or `.`, so it is neither an option nor a path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetNs(String);

impl NetNs {
    pub fn parse(input: &str) -> Result<NetNs> {
        let bad = |reason| Error::InvalidNetNs {
            input: clip(input),
            reason,
        };
        let bytes = input.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(bad("empty"));
        };
        if bytes.len() > 64 {
            return Err(bad("longer than 64 characters"));
        }
        if !(first.is_ascii_alphanumeric() || first == b'_') {
            return Err(bad("must start with a letter, digit or _"));
        }
        if !bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(bad("only letters, digits, _, . and - are allowed"));
        }
        Ok(NetNs(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NetNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for NetNs {
    type Error = Error;
    fn try_from(s: String) -> Result<NetNs> {
        NetNs::parse(&s)
    }
}

impl From<NetNs> for String {
    fn from(n: NetNs) -> String {
        n.0
    }
}

/// An `http://` or `https://` URL with a DNS name, IPv4 address or bracketed IPv6 address as
/// host, an optional port, and a path/query of printable ASCII without spaces, quotes or angle
/// brackets. User info (`user:pass@`) is rejected: credentials would be copied into every
/// action record. At most 2048 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(input: &str) -> Result<WebhookUrl> {
        let bad = |reason| Error::InvalidUrl {
            input: clip(input),
            reason,
        };
        if input.len() > 2048 {
            return Err(bad("longer than 2048 bytes"));
        }
        let lower = input.get(..8).unwrap_or(input).to_ascii_lowercase();
        let rest = if lower.starts_with("https://") {
            &input[8..]
        } else if lower.starts_with("http://") {
            &input[7..]
        } else {
            return Err(bad("scheme must be http or https"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad("user info is not allowed"));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (v6, after) = inner.split_once(']').ok_or(bad("unclosed ["))?;
            v6.parse::<Ipv6Addr>()
                .map_err(|_| bad("bad IPv6 address"))?;
            let port = match after {
                "" => None,
                a => Some(a.strip_prefix(':').ok_or(bad("bad port"))?),
            };
            (None, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (Some(h), Some(p)),
                None => (Some(authority), None),
            }
        };
        if let Some(host) = host {
            if !valid_dns_name(host) {
                return Err(bad("bad host name"));
            }
        }
        if let Some(port) = port {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("bad port"));
            }
            match port.parse::<u16>() {
                Ok(p) if p != 0 => {}
                _ => return Err(bad("bad port")),
            }
        }
        if !tail.bytes().all(|b| {
            (0x21..=0x7e).contains(&b)
                && !matches!(
                    b,
                    b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
                )
        }) {
            return Err(bad("path contains a forbidden character"));
        }
        Ok(WebhookUrl(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// DNS name or dotted IPv4: labels of `[A-Za-z0-9-]`, 1..=63 bytes, not starting or ending with
/// `-`; at most 253 bytes in all.
fn valid_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = Error;
    fn try_from(s: String) -> Result<WebhookUrl> {
        WebhookUrl::parse(&s)
    }
}

impl From<WebhookUrl> for String {
    fn from(u: WebhookUrl) -> String {
        u.0
    }
}

/// A peer that host isolation keeps reachable: the Mamori server, optionally one TCP port of it.
/// Written `10.0.0.5`, `10.0.0.5:8443`, `2001:db8::5` or `[2001:db8::5]:8443`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Keep {
    pub ip: IpAddr,
    pub tcp_port: Option<u16>,
}

impl FromStr for Keep {
    type Err = Error;

    fn from_str(input: &str) -> Result<Keep> {
        if let Ok(sa) = input.parse::<std::net::SocketAddr>() {
            if sa.port() == 0 {
                return Err(Error::InvalidKeep { input: clip(input) });
            }
            return Ok(Keep {
                ip: sa.ip().to_canonical(),
                tcp_port: Some(sa.port()),
            });
        }
        let ip = parse_ip(input).map_err(|_| Error::InvalidKeep { input: clip(input) })?;
        Ok(Keep { ip, tcp_port: None })
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.tcp_port) {
            (ip, None) => write!(f, "{ip}"),
            (IpAddr::V4(ip), Some(p)) => write!(f, "{ip}:{p}"),
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
        }
    }
}

impl TryFrom<String> for Keep {
    type Error = Error;
    fn try_from(s: String) -> Result<Keep> {
        s.parse()
    }
}

impl From<Keep> for String {
    fn from(k: Keep) -> String {
        k.to_string()
    }
}

/// Who did something: the responder on its own, or a named person (from the caller's
/// authentication, so free text but bounded and without control characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Automatic,
    User(String),
}

impl Actor {
    pub fn user(name: &str) -> Result<Actor> {
        let bad = |reason| Error::InvalidActor {
            input: clip(name),
            reason,
        };
        if name.trim().is_empty() {
            return Err(bad("empty"));
        }
        if name.chars().count() > 128 {
            return Err(bad("longer than 128 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(bad("contains control characters"));
        }
        Ok(Actor::User(name.to_owned()))
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Automatic => f.write_str("automatic"),
            Actor::User(u) => f.write_str(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_accepts_only_addresses() {
        assert_eq!(parse_ip("1.2.3.4").unwrap(), IpAddr::from([1, 2, 3, 4]));
        assert_eq!(
            parse_ip("2001:db8::1").unwrap(),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(
            parse_ip("::ffff:127.0.0.1").unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        for bad in [
            "1.2.3.4; rm -rf /",
            "1.2.3.4 }; flush ruleset; add element inet mamori blocked4 { 5.6.7.8",
            "1.2.3.4\nflush ruleset",
            "$(reboot)",
            "`id`",
            "1.2.3.4/32",
            "1.2.3.4:22",
            "fe80::1%eth0",
            " 1.2.3.4",
            "1.2.3",
            "01.2.3.4",
            "256.1.1.1",
            "",
            "-1.2.3.4",
            "localhost",
        ] {
            let err = parse_ip(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidIp { .. }), "{bad:?} -> {err}");
        }
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.9.9.9".parse().unwrap()));
        let h: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(h.to_string(), "192.0.2.7/32");
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::9".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8; x",
            "x/8",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn user_names_are_strict() {
        for good in ["alice", "_svc", "bob-2", "www_data", "a", &"a".repeat(32)] {
            assert_eq!(UserName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "-rf",
            "--help",
            "Alice",
            "1abc",
            "alice bob",
            "alice;reboot",
            "alice$(id)",
            "alice\n",
            "al/ice",
            "alice$",
            "ä",
            &"a".repeat(33),
            "root`id`",
        ] {
            assert!(
                matches!(UserName::parse(bad), Err(Error::InvalidUserName { .. })),
                "{bad:?}"
            );
        }
        // Deserialisation goes through the validator too.
        assert!(serde_json::from_str::<UserName>("\"-L\"").is_err());
        assert!(serde_json::from_str::<UserName>("\"ok\"").is_ok());
    }

    #[test]
    fn netns_names_are_strict() {
        assert!(NetNs::parse("mamori-t-123-a").is_ok());
        for bad in ["", "-n", "..", ".x", "a/b", "a b", "a;b", &"a".repeat(65)] {
            assert!(NetNs::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn webhook_urls() {
        for good in [
            "https://hooks.example.com/services/T0/B0/XyZ",
            "http://10.0.0.5:8080/hook?x=1&y=2",
            "HTTPS://example.com",
            "http://[2001:db8::5]:9000/a",
            "http://[::1]/",
        ] {
            assert!(WebhookUrl::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "https://exa mple.com/",
            "https://example.com/a b",
            "https://example.com/\"; rm -rf /",
            "https://example.com:0/",
            "https://example.com:99999/",
            "https://example.com:/",
            "https://-example.com/",
            "https://[not-v6]/",
            "https://[::1]x/",
            "https://",
            "-K/etc/passwd",
            "https://example.com/\n",
            "https://example.com/{a}",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keep_addresses() {
        let k: Keep = "10.0.0.5:8443".parse().unwrap();
        assert_eq!(
            (k.ip, k.tcp_port),
            (IpAddr::from([10, 0, 0, 5]), Some(8443))
        );
        assert_eq!(k.to_string(), "10.0.0.5:8443");
        let k: Keep = "[2001:db8::5]:443".parse().unwrap();
        assert_eq!(k.to_string(), "[2001:db8::5]:443");
        let k: Keep = "10.0.0.5".parse().unwrap();
        assert_eq!(k.tcp_port, None);
        for bad in ["10.0.0.5:0", "10.0.0.5:x", "host:443", "10.0.0.5; x"] {
            assert!(bad.parse::<Keep>().is_err(), "{bad}");
        }
    }

    #[test]
    fn actors() {
        assert_eq!(
            Actor::user("ana@example.com").unwrap().to_string(),
            "ana@example.com"
        );
        assert!(Actor::user("  ").is_err());
        assert!(Actor::user("a\nb").is_err());
        assert_eq!(Actor::Automatic.to_string(), "automatic");
    }
}
