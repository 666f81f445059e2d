//! Deterministic robustness smoke (the CI stand-in for the cargo-fuzz targets in `fuzz/`):
//! thousands of mutated and random inputs through every parser, asserting only that nothing
//! panics and that every file read ends with a report.

use std::sync::Arc;

use super::*;
use mamori_ingest::{
    auditd_event, detect_bytes, parse_access_log_line, parse_auditd_line, parse_iis_line,
    parse_json_object, parse_syslog_line, Format, IisFields, Interner, Origin,
};

/// xorshift64*: small, seeded, no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"[",
    b"]",
    b"{",
    b"}",
    b":",
    b"=",
    b" ",
    b"\n",
    b"\r",
    b"\0",
    b"\xff",
    b"\xe2\x82",
    b"<",
    b">",
    b"<13>1 ",
    b" port ",
    b" from ",
    b"msg=audit(",
    b"HTTP/1.1",
    b"\\",
    b"'",
    b"(",
    b")",
    b"\x1d",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 => {
                let i = rng.below(v.len() + 1);
                let s = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(i..i, s.iter().copied());
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                let j = (i + rng.below(16)).min(v.len());
                v.drain(i..j);
            }
            3 => v.truncate(rng.below(v.len() + 1)),
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                let j = (i + rng.below(32)).min(v.len());
                let dup = v[i..j].to_vec();
                let k = rng.below(v.len() + 1);
                v.splice(k..k, dup);
            }
            5 => v = (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
            _ => {}
        }
    }
    v
}

fn origin() -> Origin {
    Origin::File {
        path: Arc::from(Path::new("fuzz")),
        record: None,
        line: Some(1),
        offset: 0,
    }
}

const SYSLOG: &[&str] = &[
    "Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
    "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\\\"x\"] BOM'su root' failed",
    "<13>Feb  5 17:32:18 10.0.0.99 sudo:  alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls",
    "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4",
    "2024-01-02T03:04:05.678+01:00 host useradd[1]: new user: name=bob, UID=1001, GID=1001, home=/home/bob",
    "[Sun Dec 04 04:47:44 2005] [error] [client 1.2.3.4] mod_jk child workerEnv in error state 6",
    "Jan  1 00:00:00 h systemd-logind[1]: New session 3 of user alice.",
];
const ACCESS: &[&str] = &[
    "192.168.4.25 - - [22/Dec/2016:16:30:52 +0300] \"POST /administrator/index.php HTTP/1.1\" 303 382 \"http://x/\" \"Mozilla/5.0\"",
    "\"1.2.3.4 - bob [10/Oct/2000:13:55:36 -0700] \"GET /a?b=c HTTP/1.0\" 200 2326 \"-\" \"ua\"\"",
    "vhost.example 1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"-\" 400 -",
];
const JSON: &[&str] = &[
    r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"X"}},"EventID":{"#text":4624,"#attributes":{"Qualifiers":0}},"TimeCreated":{"#attributes":{"SystemTime":"2020-01-01T00:00:00Z"}}},"EventData":{"Data":[{"#text":"a"},"b"],"IpAddress":"1.2.3.4"}}}"##,
    r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject","userIdentity":{"arn":"arn:aws:iam::1:user/x"},"errorCode":"AccessDenied","eventTime":"2023-07-10T11:42:18Z","sourceIPAddress":"AWS Internal","resources":[{"ARN":"a"},{"ARN":"b"}]}"#,
    r#"{"winlog":{"event_id":"4688","event_data":{"CommandLine":"cmd"},"channel":"Security"},"@timestamp":1600000000123}"#,
    r#"{"EventID":"1","SourceName":"Microsoft-Windows-Sysmon","Hostname":"h","EventTime":"2020-10-18 19:50:09","big":18446744073709551615}"#,
];
const AUDITD: &[&str] = &[
    "type=SYSCALL msg=audit(1604994496.155:92733): arch=c000003e syscall=59 success=yes exit=0 a0=558e a1=558e ppid=29002 pid=1631 comm=\"arp\" exe=\"/usr/sbin/arp\" key=(null)",
    "type=EXECVE msg=audit(1604994496.155:92733): argc=2 a0=\"arp\" a1=2D61",
    "node=h type=USER_AUTH msg=audit(1.0:1): pid=1 uid=0 msg='op=PAM:authentication acct=\"root\" exe=\"/usr/sbin/sshd\" res=failed'\x1dUID=\"root\"",
    "type=PROCTITLE msg=audit(1604994496.155:92733): proctitle=617270002D61",
];

#[test]
fn line_parsers_never_panic_on_mutated_input() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut names = Interner::new();
    let iis = IisFields::default();
    for round in 0..3000 {
        let s = mutate(&mut rng, SYSLOG[round % SYSLOG.len()].as_bytes());
        let _ = parse_syslog_line(&s, origin(), &mut names);
        let a = mutate(&mut rng, ACCESS[round % ACCESS.len()].as_bytes());
        let _ = parse_access_log_line(&a, origin(), &mut names);
        let _ = parse_iis_line(&a, &iis, origin(), &mut names);
        let _ = parse_syslog_line(&a, origin(), &mut names);
        let j = mutate(&mut rng, JSON[round % JSON.len()].as_bytes());
        let _ = parse_json_object(&j, origin(), &mut names);
        let d = mutate(&mut rng, AUDITD[round % AUDITD.len()].as_bytes());
        if let Ok(rec) = parse_auditd_line(&d) {
            let _ = auditd_event(&[rec.clone(), rec], d.clone(), origin(), &mut names);
        }
        for sample in [&s, &a, &j, &d] {
            let _ = detect_bytes(sample, None);
        }
    }
}

#[test]
fn file_readers_never_panic_on_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let path = dir.path().join("f");
    let all: Vec<&str> = SYSLOG
        .iter()
        .chain(ACCESS)
        .chain(JSON)
        .chain(AUDITD)
        .copied()
        .collect();
    for round in 0..300 {
        let mut content = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let seed = all[rng.below(all.len())];
            content.extend(mutate(&mut rng, seed.as_bytes()));
            content.push(b'\n');
        }
        if round % 7 == 0 {
            // A document: an array or a Records object around the lines.
            content.splice(0..0, b"{\"Records\":[".iter().copied());
        }
        std::fs::write(&path, &content).unwrap();
        let forced = [
            None,
            Some(Format::Json),
            Some(Format::Syslog),
            Some(Format::AccessLog),
            Some(Format::Iis),
            Some(Format::Auditd),
            Some(Format::Evtx),
        ];
        let opts = ReadOptions {
            format: forced[round % forced.len()],
            max_record_bytes: 64 + rng.below(4096),
            ..ReadOptions::default()
        };
        let r = read_file(&path, &opts, &mut |_| {});
        assert!(
            r.events + r.error_count > 0
                || r.skipped.is_some()
                || content.iter().all(u8::is_ascii_whitespace)
                || opts.format.is_some()
        );
    }
}

#[test]
fn evtx_reader_never_panics_on_mutated_files() {
    let Some(c) = corpus() else { return };
    let original =
        std::fs::read(c.join("evtx/hayabusa-sample-evtx/DeepBlueCLI/new-user-security.evtx"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.evtx");
    let mut rng = Rng(0x5eed_1234_abcd_0003);
    for round in 0..120 {
        let mut bytes = original.clone();
        // Flip bytes mostly inside the first chunk's records, sometimes in the headers.
        let flips = 1 + rng.below(40);
        for _ in 0..flips {
            let i = match round % 3 {
                0 => rng.below(bytes.len()),
                1 => 4096 + 512 + rng.below(8000),
                _ => 4096 + rng.below(512),
            };
            if let Some(b) = bytes.get_mut(i) {
                *b = rng.next() as u8;
            }
        }
        if round % 10 == 9 {
            bytes.truncate(rng.below(bytes.len()));
        }
        std::fs::write(&path, &bytes).unwrap();
        let r = read_file(&path, &ReadOptions::default(), &mut |_| {});
        assert!(r.events <= 64);
    }
}
