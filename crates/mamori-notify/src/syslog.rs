//! Syslog to a SIEM: RFC 5424 lines carrying either CEF or structured data, over UDP or TCP.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use mamori_event::Level;

use crate::config::{SyslogFormat, SyslogProtocol};
use crate::escape;
use crate::message::{severity_en, Notification};

#[derive(Debug, Clone)]
pub(crate) struct SyslogChannel {
    pub(crate) address: String,
    pub(crate) protocol: SyslogProtocol,
    pub(crate) format: SyslogFormat,
    pub(crate) hostname: String,
    pub(crate) timeout: Duration,
}

/// Facility `auth` (4): "security/authorization messages".
const FACILITY: u8 = 4;

fn syslog_severity(level: Level) -> u8 {
    match level {
        Level::Critical => 2,
        Level::High => 3,
        Level::Medium => 4,
        Level::Low => 5,
        Level::Informational => 6,
    }
}

/// CEF severity, 0-10.
pub fn cef_severity(level: Level) -> u8 {
    match level {
        Level::Informational => 1,
        Level::Low => 3,
        Level::Medium => 5,
        Level::High => 8,
        Level::Critical => 10,
    }
}

/// The CEF record (no syslog header), e.g.
/// `CEF:0|Mamori|Mamori|0.1.0|incident-opened|<title>|8|rt=... externalId=42 ...`.
pub fn cef(n: &Notification) -> String {
    let mut ext = vec![
        ("rt", n.time.timestamp_millis().to_string()),
        ("externalId", n.incident_id.clone()),
        ("cat", n.kind.code.clone()),
        ("cs1Label", "phase".to_owned()),
        ("cs1", n.phase.code.clone()),
        ("cs2Label", "entities".to_owned()),
        (
            "cs2",
            escape::truncate(
                &n.entities
                    .iter()
                    .take(20)
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                1024,
            ),
        ),
        ("msg", escape::truncate(n.summary.trim(), 1024)),
    ];
    // Well-known entities in their CEF keys, where SIEMs index them.
    for (k, v) in &n.entities {
        let key = match k.as_str() {
            "user" | "user.name" | "target_user" => "duser",
            "host" | "host.name" | "hostname" => "dhost",
            "ip" | "source.ip" | "src_ip" if v.parse::<std::net::IpAddr>().is_ok() => "src",
            _ => continue,
        };
        if !ext.iter().any(|(e, _)| *e == key) {
            ext.push((key, escape::truncate(v, 256)));
        }
    }
    if let Some(url) = &n.url {
        ext.push(("request", url.clone()));
    }
    let ext: Vec<String> = ext
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", escape::cef_value(&v)))
        .collect();
    format!(
        "CEF:0|Mamori|Mamori|{}|{}|{}|{}|{}",
        escape::cef_header(env!("CARGO_PKG_VERSION")),
        escape::cef_header(&format!("incident-{}", n.reason.as_str())),
        escape::cef_header(&escape::truncate(&n.title, 256)),
        cef_severity(n.severity),
        ext.join(" ")
    )
}

/// The whole line, RFC 5424 header included, without the trailing newline.
pub(crate) fn line(
    n: &Notification,
    format: SyslogFormat,
    hostname: &str,
    now: DateTime<Utc>,
) -> String {
    let pri = FACILITY * 8 + syslog_severity(n.severity);
    let ts = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let msgid = format!("incident-{}", n.reason.as_str());
    match format {
        SyslogFormat::Cef => format!("<{pri}>1 {ts} {hostname} mamori - {msgid} - {}", cef(n)),
        SyslogFormat::Rfc5424 => {
            // 32473 is the private enterprise number RFC 5612 reserves for documentation.
            let sd = format!(
                "[mamori@32473 incident=\"{}\" severity=\"{}\" phase=\"{}\" kind=\"{}\" reason=\"{}\"]",
                escape::sd_param(&n.incident_id),
                n.severity.as_str(),
                escape::sd_param(&n.phase.code),
                escape::sd_param(&n.kind.code),
                n.reason.as_str(),
            );
            let mut text = format!(
                "[{}] {}",
                severity_en(n.severity),
                escape::truncate(&n.title, 256)
            );
            if !n.summary.trim().is_empty() {
                text.push_str(": ");
                text.push_str(&escape::truncate(n.summary.trim(), 1024));
            }
            if let Some(url) = &n.url {
                text.push_str(&format!(" ({url})"));
            }
            // UTF-8 MSG starts with a BOM (RFC 5424 §6.4).
            format!(
                "<{pri}>1 {ts} {hostname} mamori - {msgid} {sd} \u{feff}{}",
                escape::one_line(&text)
            )
        }
    }
}

impl SyslogChannel {
    pub(crate) fn send(&self, n: &Notification, now: DateTime<Utc>) -> Result<(), String> {
        let line = line(n, self.format, &self.hostname, now);
        let addr: SocketAddr = self
            .address
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", self.address))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.address))?;
        match self.protocol {
            SyslogProtocol::Udp => {
                let bind = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let sock = UdpSocket::bind(bind).map_err(|e| format!("udp bind: {e}"))?;
                sock.set_write_timeout(Some(self.timeout))
                    .map_err(|e| e.to_string())?;
                sock.send_to(line.as_bytes(), addr)
                    .map_err(|e| format!("udp send to {addr}: {e}"))?;
                Ok(())
            }
            SyslogProtocol::Tcp => {
                let mut stream = TcpStream::connect_timeout(&addr, self.timeout)
                    .map_err(|e| format!("tcp connect to {addr}: {e}"))?;
                stream
                    .set_write_timeout(Some(self.timeout))
                    .map_err(|e| e.to_string())?;
                let mut framed = line.into_bytes();
                framed.push(b'\n');
                stream
                    .write_all(&framed)
                    .and_then(|()| stream.flush())
                    .map_err(|e| format!("tcp write to {addr}: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;
    use chrono::TimeZone;

    #[test]
    fn cef_record_for_a_sample() {
        let mut n = sample();
        n.title = "a|b=c\nd".into();
        n.summary = "x=1\\2\r\n|ok".into();
        let c = cef(&n);
        assert_eq!(
            c,
            format!(
                "CEF:0|Mamori|Mamori|{}|incident-opened|a\\|b=c d|8|rt=1768483800000 externalId=42 \
                 cat=brute_force cs1Label=phase cs1=containment cs2Label=entities \
                 cs2=user.name: alice; source.ip: 203.0.113.9 msg=x\\=1\\\\2\\r\\n|ok duser=alice \
                 src=203.0.113.9 request=https://mamori.example.jp/incidents/42",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn rfc5424_line_escapes_structured_data() {
        let mut n = sample();
        n.incident_id = "4\"2]".into();
        n.title = "t\nx".into();
        let now = Utc.with_ymd_and_hms(2026, 1, 15, 13, 31, 0).unwrap();
        let l = line(&n, SyslogFormat::Rfc5424, "mamori01", now);
        assert!(l.starts_with("<35>1 2026-01-15T13:31:00.000Z mamori01 mamori - incident-opened [mamori@32473 incident=\"4\\\"2\\]\" severity=\"high\""), "{l}");
        assert!(
            l.contains("\u{feff}[High] t x: 37 failed logins for alice then one success"),
            "{l}"
        );
        assert!(!l.contains('\n'));
    }
}
