//! Syslog/CEF and RFC 5424 to real UDP and TCP sockets on loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use common::{closed_port, config, daytime, sample};
use mamori_notify::Notifier;

fn notifier(text: &str) -> Notifier {
    Notifier::new(&config(text)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn cef_over_udp_escapes_a_hostile_title() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = notifier(&format!(
        r#"
        [channels.siem]
        type = "syslog"
        address = "{}"
        hostname = "mamori01"

        [[contacts]]
        name = "siem"
        channels = ["siem"]
        "#,
        sock.local_addr().unwrap()
    ));
    let mut note = sample();
    note.title = "a|b=c\nd".into();
    note.summary = "k=v\\x\r\nnext|line".into();
    let d = n.notify(&note, daytime());
    assert!(d[0].ok, "{d:?}");
    let mut buf = [0u8; 65536];
    let len = sock.recv(&mut buf).unwrap();
    let line = std::str::from_utf8(&buf[..len]).unwrap();
    let (header, cef) = line.split_once(" CEF:").unwrap();
    assert_eq!(
        header,
        "<35>1 2026-01-15T03:05:00.000Z mamori01 mamori - incident-opened -"
    );
    let cef = format!("CEF:{cef}");
    // Header fields: `|` escaped, newline gone, `=` left alone (only extensions escape it).
    let fields: Vec<&str> = split_unescaped_pipes(&cef);
    assert_eq!(fields.len(), 8, "{cef}");
    assert_eq!(
        &fields[..7],
        [
            "CEF:0",
            "Mamori",
            "Mamori",
            env!("CARGO_PKG_VERSION"),
            "incident-opened",
            "a\\|b=c d",
            "8"
        ]
    );
    // Extensions: `=`, `\` and line breaks escaped.
    let ext = fields[7];
    assert!(ext.contains("msg=k\\=v\\\\x\\r\\nnext|line"), "{ext}");
    assert!(
        ext.contains("externalId=42 cat=brute_force cs1Label=phase cs1=containment"),
        "{ext}"
    );
    assert!(
        ext.contains("duser=alice") && ext.contains("src=203.0.113.9"),
        "{ext}"
    );
    assert!(!line.contains('\n') && !line.contains('\r'));
}

/// Splits a CEF header on `|` not preceded by an escaping backslash (max 8 parts).
fn split_unescaped_pipes(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() && out.len() < 7 {
        match bytes[i] {
            b'\\' => i += 2,
            b'|' => {
                out.push(&s[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    out.push(&s[start..]);
    out
}

#[test]
fn rfc5424_over_tcp_is_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let n = notifier(&format!(
        r#"
        [channels.siem]
        type = "syslog"
        address = "{}"
        protocol = "tcp"
        format = "rfc5424"

        [[contacts]]
        name = "siem"
        channels = ["siem"]
        "#,
        listener.local_addr().unwrap()
    ));
    let mut note = sample();
    note.title = "evil\n<13>1 2026-01-01T00:00:00Z forged - - - - injected".into();
    let d = n.notify(&note, daytime());
    assert!(d[0].ok, "{d:?}");
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let lines: Vec<String> = BufReader::new(stream).lines().map(Result::unwrap).collect();
    assert_eq!(
        lines.len(),
        1,
        "a newline in the title must not forge a second record: {lines:?}"
    );
    let l = &lines[0];
    assert!(l.starts_with("<35>1 2026-01-15T03:05:00.000Z - mamori - incident-opened [mamori@32473 incident=\"42\" severity=\"high\" phase=\"containment\" kind=\"brute_force\" reason=\"opened\"] \u{feff}[High] evil <13>1"), "{l}");
}

#[test]
fn tcp_connection_refused_is_reported() {
    let n = notifier(&format!(
        r#"
        [channels.siem]
        type = "syslog"
        address = "{}"
        protocol = "tcp"
        timeout_secs = 2

        [[contacts]]
        name = "siem"
        channels = ["siem"]
        "#,
        closed_port()
    ));
    let d = n.notify(&sample(), daytime());
    assert!(!d[0].ok);
    assert!(
        d[0].error
            .as_deref()
            .unwrap()
            .starts_with("tcp connect to 127.0.0.1:"),
        "{d:?}"
    );
}
