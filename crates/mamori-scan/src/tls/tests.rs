use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;

/// 2026-01-01T00:00:00Z: judging uses this instead of the clock.
const NOW: u64 = 1_767_225_600;

struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    leaf_key: KeyPair,
}

fn private_ca(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .unwrap();
    Pki {
        ca: ca_cert.der().clone(),
        leaf: leaf.der().clone(),
        leaf_key,
    }
}

fn expired_self_signed() -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2019, 1, 1);
    p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    p.self_signed(&key).unwrap().der().clone()
}

#[test]
fn a_private_ca_given_as_extra_root_is_trusted() {
    let pki = private_ca(&["localhost"]);
    let chain = vec![pki.leaf.clone()];
    let v = judge_chain(&chain, "localhost", std::slice::from_ref(&pki.ca), NOW).unwrap();
    assert!(
        v.trusted && v.name_ok && !v.expired && !v.expires_within_30_days,
        "{v:?}"
    );
    let v = judge_chain(&chain, "localhost", &[], NOW).unwrap();
    assert!(!v.trusted && v.untrusted_reason.is_some(), "{v:?}");
}

#[test]
fn expired_self_signed_is_expired_untrusted_and_says_when() {
    let v = judge_chain(&[expired_self_signed()], "localhost", &[], NOW).unwrap();
    assert!(v.expired && !v.trusted && v.name_ok, "{v:?}");
    assert_eq!(v.not_after, Some(1_577_836_800));
}

#[test]
fn wrong_name_and_ip_names() {
    let pki = private_ca(&["www.example.co.jp"]);
    let v = judge_chain(
        std::slice::from_ref(&pki.leaf),
        "mail.example.co.jp",
        std::slice::from_ref(&pki.ca),
        NOW,
    )
    .unwrap();
    assert!(!v.name_ok, "{v:?}");
    let pki = private_ca(&["127.0.0.1"]);
    let v = judge_chain(
        std::slice::from_ref(&pki.leaf),
        "127.0.0.1",
        std::slice::from_ref(&pki.ca),
        NOW,
    )
    .unwrap();
    assert!(v.name_ok && v.trusted, "{v:?}");
}

#[test]
fn expiring_within_30_days() {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2026, 1, 20);
    let c = p.self_signed(&key).unwrap().der().clone();
    let v = judge_chain(std::slice::from_ref(&c), "localhost", &[], NOW).unwrap();
    assert!(!v.expired && v.expires_within_30_days, "{v:?}");
}

#[test]
fn client_hello_round_trips_through_the_parser_shape() {
    let h = client_hello(0x0301, &[0x002F, 0x0035], Some("vpn.example.co.jp"));
    assert_eq!(h[0], 0x16);
    assert_eq!(u16::from_be_bytes([h[1], h[2]]), 0x0301);
    assert_eq!(u16::from_be_bytes([h[3], h[4]]) as usize, h.len() - 5);
    assert_eq!(h[5], 1);
    assert_eq!(u16::from_be_bytes([h[9], h[10]]), 0x0301);
    assert!(h.windows(17).any(|w| w == b"vpn.example.co.jp"));
    // An alert and garbage are refusals; a short record is a refusal, not a panic.
    assert_eq!(
        parse_answer(&[0x15, 3, 1, 0, 2, 2, 40]),
        HelloAnswer::Refused
    );
    assert_eq!(parse_answer(&[]), HelloAnswer::Refused);
    assert_eq!(
        parse_answer(&[0x16, 3, 1, 0, 60, 2, 0]),
        HelloAnswer::Refused
    );
}

fn server_hello(version: u16, suite: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&suite.to_be_bytes());
    body.push(0);
    let mut hs = vec![2u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16];
    rec.extend_from_slice(&version.to_be_bytes());
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// A fake old appliance on loopback: accepts TLS 1.0 and RC4 in its ClientHellos, refuses
/// everything else with an alert. It answers only the ServerHello — all the prober reads.
#[test]
fn legacy_versions_and_weak_ciphers_are_detected_on_the_wire() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let served = Arc::new(AtomicU32::new(0));
    let s2 = served.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            s2.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 2048];
            let n = c.read(&mut buf).unwrap_or(0);
            if n < 50 {
                continue;
            }
            let version = u16::from_be_bytes([buf[9], buf[10]]);
            let sid = buf[43] as usize;
            let at = 44 + sid;
            let len = u16::from_be_bytes([buf[at], buf[at + 1]]) as usize;
            let suites: Vec<u16> = buf[at + 2..at + 2 + len]
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let answer = if version == 0x0301 {
                server_hello(0x0301, 0x002F)
            } else if version == 0x0303 && suites.contains(&0x0005) && !suites.contains(&0x1301) {
                server_hello(0x0303, 0x0005)
            } else {
                vec![0x15, 3, 1, 0, 2, 2, 70]
            };
            let _ = c.write_all(&answer);
        }
    });
    let limiter = Limiter::new(100, 1000.0, Duration::from_secs(60));
    let f = check("127.0.0.1", port, &[], &limiter, Duration::from_secs(30)).unwrap();
    assert_eq!(f.legacy_accepted, vec!["TLS 1.0"]);
    assert_eq!(f.weak_ciphers, vec!["TLS_RSA_WITH_RC4_128_SHA".to_string()]);
    assert!(!f.tls13 && !f.tls12 && f.cert.is_none());
    // Six connections: two rustls handshakes, three legacy hellos, one weak-cipher hello.
    assert_eq!(limiter.spent(), 6);
    assert_eq!(served.load(Ordering::SeqCst), 6);
}

/// A real rustls server: TLS 1.3 and 1.2 offered, nothing legacy, nothing weak, and the
/// private-CA certificate judged trusted when the CA is given.
#[test]
fn a_rustls_server_is_modern_and_trusted_with_its_ca() {
    let pki = private_ca(&["localhost"]);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.leaf_key.serialize_der()));
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.leaf.clone()], key)
            .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                let mut conn = rustls::ServerConnection::new(cfg).unwrap();
                while conn.is_handshaking() {
                    if conn.complete_io(&mut c).is_err() {
                        return;
                    }
                }
                let _ = conn.complete_io(&mut c);
            });
        }
    });
    let limiter = Limiter::new(100, 1000.0, Duration::from_secs(60));
    let f = check(
        "localhost",
        port,
        std::slice::from_ref(&pki.ca),
        &limiter,
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(f.tls13 && f.tls12, "{f:?}");
    assert!(
        f.legacy_accepted.is_empty() && f.weak_ciphers.is_empty(),
        "{f:?}"
    );
    let c = f.cert.unwrap();
    assert!(c.trusted && c.name_ok && !c.expired, "{c:?}");
}
