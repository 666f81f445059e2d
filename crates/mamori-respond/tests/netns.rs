//! Real nftables in real network namespaces: an "attacker" namespace sends UDP datagrams over a
//! veth pair to a "server" namespace; the responder blocks, rolls back, lets a TTL expire and
//! isolates the host there with the real `nft`, and the datagrams stop and start accordingly.
//!
//! Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), `ip`, `nft` and `python3`. Without them each
//! test prints `skipped: network namespaces not permitted: <reason>` and passes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use mamori_event::{Level, RuleId};
use mamori_respond::{
    Actor, Backends, Mode, Modes, NetNs, NftConfig, Outcome, Responder, ResponderConfig,
    ResponsePolicy, Trigger,
};

const PORT: u16 = 47_001;

/// Two namespaces joined by a veth pair; removed on drop, also when a test panics.
struct Lab {
    attacker: String,
    server: String,
    attacker_ip: String,
    server_ip: String,
    attacker_ip6: String,
    server_ip6: String,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    /// `case` is one digit so parallel tests get distinct names.
    fn new(case: u8) -> Result<Lab, String> {
        let pid = std::process::id();
        let tag = format!("{pid}-{case}");
        // The same subnet in every lab is fine: each pair of namespaces is its own network.
        let net = (pid % 250) as u8;
        let lab = Lab {
            attacker: format!("mamori-t-{tag}-a"),
            server: format!("mamori-t-{tag}-b"),
            attacker_ip: format!("10.77.{net}.1"),
            server_ip: format!("10.77.{net}.2"),
            attacker_ip6: format!("fd00:77:{net:x}::1"),
            server_ip6: format!("fd00:77:{net:x}::2"),
        };
        run(&["ip", "netns", "add", &lab.attacker])?;
        // From here on, Drop cleans up whatever was created.
        run(&["ip", "netns", "add", &lab.server])?;
        let (va, vb) = (format!("mt{pid}{case}a"), format!("mt{pid}{case}b"));
        run(&[
            "ip",
            "link",
            "add",
            &va,
            "netns",
            &lab.attacker,
            "type",
            "veth",
            "peer",
            "name",
            &vb,
            "netns",
            &lab.server,
        ])?;
        for (ns, dev, ip, ip6) in [
            (&lab.attacker, &va, &lab.attacker_ip, &lab.attacker_ip6),
            (&lab.server, &vb, &lab.server_ip, &lab.server_ip6),
        ] {
            let ip6 = format!("{ip6}/64");
            run(&["ip", "-n", ns, "addr", "add", &ip6, "dev", dev, "nodad"])?;
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Sends five datagrams from the attacker to the server over ~0.5 s and says whether the
    /// listener in the server namespace received one within `wait`.
    fn delivered(&self, wait: Duration) -> bool {
        self.delivered_to(&self.server_ip, &self.attacker, wait)
    }

    fn delivered_to(&self, dst: &str, from_ns: &str, wait: Duration) -> bool {
        const LISTEN: &str = "import socket,sys\n\
s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET,socket.SOCK_DGRAM)\n\
s.bind((sys.argv[1],int(sys.argv[2])))\n\
s.settimeout(float(sys.argv[3]))\n\
print('ready',flush=True)\n\
try:\n    d,a=s.recvfrom(100); print('got',a[0],flush=True)\n\
except socket.timeout:\n    print('timeout',flush=True)\n";
        const SEND: &str = "import socket,sys,time\n\
s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET,socket.SOCK_DGRAM)\n\
for _ in range(5):\n    s.sendto(b'probe',(sys.argv[1],int(sys.argv[2]))); time.sleep(0.1)\n";
        let mut listener = Command::new("ip")
            .args(["netns", "exec", &self.server, "python3", "-c", LISTEN, dst])
            .arg(PORT.to_string())
            .arg(format!("{}", wait.as_secs_f64()))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start listener");
        let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let sent = Command::new("ip")
            .args(["netns", "exec", from_ns, "python3", "-c", SEND, dst])
            .arg(PORT.to_string())
            .status()
            .expect("run sender");
        assert!(sent.success());
        let result = lines.next().unwrap().unwrap();
        listener.wait().unwrap();
        result.starts_with("got")
    }

    fn nft_set(&self) -> String {
        self.nft_list("blocked4")
    }

    fn nft_list(&self, set: &str) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                "nft",
                "list",
                "set",
                "inet",
                "mamori",
                set,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        for ns in [&self.attacker, &self.server] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The lab, or why this machine cannot run it (then the caller prints the skip message).
fn lab_or_skip(case: u8) -> Option<Lab> {
    let tool_ok = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let reason = if !tool_ok("nft", "--version") {
        Some("nft is not installed".to_owned())
    } else if !tool_ok("python3", "--version") {
        Some("python3 is not installed".to_owned())
    } else {
        // nft must also work inside the namespace (a container may lack nf_tables).
        match Lab::new(case).and_then(|lab| {
            run(&["ip", "netns", "exec", &lab.server, "nft", "list", "ruleset"])?;
            Ok(lab)
        }) {
            Ok(lab) => return Some(lab),
            Err(e) => Some(e),
        }
    };
    println!(
        "skipped: network namespaces not permitted: {}",
        reason.unwrap_or_default()
    );
    None
}

fn responder(lab: &Lab, modes: Modes) -> Responder {
    let mut policy = ResponsePolicy {
        // The server's own address is protected; the attacker's is not.
        server_addrs: vec![lab.server_ip.parse().unwrap()],
        allow_list: vec!["192.0.2.0/24".parse().unwrap()],
        local_host: Some("server".into()),
        isolation_keep: vec!["10.99.0.1:8443".parse().unwrap()],
        ..ResponsePolicy::default()
    };
    policy.levels.insert(Level::Critical, modes);
    Responder::new(ResponderConfig {
        policy,
        backends: Backends {
            nft: NftConfig {
                netns: Some(NetNs::parse(&lab.server).unwrap()),
                ..NftConfig::default()
            },
            ..Backends::default()
        },
    })
    .unwrap()
}

fn trigger(ip: &str, host: Option<&str>) -> Trigger {
    Trigger {
        rule_id: RuleId(Arc::from("ssh-bruteforce")),
        level: Level::Critical,
        source_ip: Some(ip.to_owned()),
        user_name: None,
        host_name: host.map(str::to_owned),
    }
}

const OPEN: Duration = Duration::from_millis(1500);

#[test]
fn block_then_rollback_in_namespace() {
    let Some(lab) = lab_or_skip(1) else { return };
    let start = Instant::now();
    assert!(
        lab.delivered(OPEN),
        "baseline: datagrams must arrive before any block"
    );
    let t_base = start.elapsed();

    let mut r = responder(
        &lab,
        Modes {
            block_ip: Mode::Automatic,
            ..Modes::default()
        },
    );
    // The server's own address is refused, the attacker's is blocked.
    let refused = r.respond(&trigger(&lab.server_ip, None), false, Utc::now());
    assert!(refused.executed.is_empty());
    assert!(refused.plan.refused[0].reason.contains("own addresses"));

    let t = Instant::now();
    let resp = r.respond(&trigger(&lab.attacker_ip, None), false, Utc::now());
    let t_block = t.elapsed();
    let rec = &resp.executed[0];
    assert_eq!(rec.outcome, Outcome::Ok, "{:?}", rec.commands);
    assert!(
        lab.nft_set().contains(&lab.attacker_ip),
        "{}",
        lab.nft_set()
    );
    assert!(
        !lab.delivered(Duration::from_millis(1000)),
        "blocked: datagrams must not arrive"
    );

    let t = Instant::now();
    let rolled = r
        .rollback(rec.id, Actor::user("analyst").unwrap(), false, Utc::now())
        .unwrap();
    let t_rollback = t.elapsed();
    assert!(rolled.rolled_back_at.is_some(), "{:?}", rolled.rollbacks);
    assert!(!lab.nft_set().contains(&lab.attacker_ip));
    assert!(
        lab.delivered(OPEN),
        "rolled back: datagrams must arrive again"
    );
    // Rolling back again is refused; a second block of the same address works.
    assert!(r
        .rollback(rec.id, Actor::Automatic, false, Utc::now())
        .is_err());
    println!(
        "netns block/rollback: baseline probe {t_base:?}, nft block {t_block:?}, nft rollback {t_rollback:?}, total {:?}",
        start.elapsed()
    );
}

#[test]
fn block_expires_after_ttl_in_namespace() {
    let Some(lab) = lab_or_skip(2) else { return };
    let mut r = responder(
        &lab,
        Modes {
            block_ip: Mode::Automatic,
            block_ttl: Some(Duration::from_secs(2)),
            ..Modes::default()
        },
    );
    assert!(lab.delivered(OPEN));
    let blocked_at = Instant::now();
    let resp = r.respond(&trigger(&lab.attacker_ip, None), false, Utc::now());
    let rec = resp.executed[0].clone();
    assert_eq!(rec.outcome, Outcome::Ok);
    assert!(rec.commands[0]
        .stdin
        .as_deref()
        .unwrap()
        .contains(&format!("{} timeout 2s", lab.attacker_ip)));
    assert!(
        !lab.delivered(Duration::from_millis(800)),
        "blocked within the ttl"
    );
    assert!(
        blocked_at.elapsed() < Duration::from_secs(2),
        "probe outlived the ttl; timing unusable"
    );

    // No rollback: the kernel drops the element when the timeout passes.
    std::thread::sleep(Duration::from_millis(2300).saturating_sub(blocked_at.elapsed()));
    assert!(
        !lab.nft_set().contains(&lab.attacker_ip),
        "{}",
        lab.nft_set()
    );
    assert!(
        lab.delivered(OPEN),
        "after the ttl: datagrams must arrive again"
    );
    let reopened = blocked_at.elapsed();
    assert_eq!(r.expire(Utc::now()), vec![rec.id]);
    assert!(r.record(rec.id).unwrap().expired_at.is_some());
    println!("netns ttl: 2 s block, traffic confirmed flowing again {reopened:?} after the block");
}

#[test]
fn isolate_then_rollback_in_namespace() {
    let Some(lab) = lab_or_skip(3) else { return };
    let mut r = responder(
        &lab,
        Modes {
            isolate_host: Mode::Automatic,
            ..Modes::default()
        },
    );
    assert!(lab.delivered(OPEN));
    let resp = r.respond(
        &trigger(&lab.attacker_ip, Some("server")),
        false,
        Utc::now(),
    );
    let rec = &resp.executed[0];
    assert_eq!(rec.outcome, Outcome::Ok, "{:?}", rec.outcome);
    assert!(
        !lab.delivered(Duration::from_millis(1000)),
        "isolated: outside traffic must not arrive"
    );
    // Loopback inside the isolated namespace keeps working.
    assert!(
        lab.delivered_to("127.0.0.1", &lab.server, OPEN),
        "isolated: loopback must keep working"
    );
    r.rollback(rec.id, Actor::user("analyst").unwrap(), false, Utc::now())
        .unwrap();
    assert!(
        lab.delivered(OPEN),
        "isolation rolled back: datagrams must arrive again"
    );
}

#[test]
fn block_ipv6_then_rollback_in_namespace() {
    let Some(lab) = lab_or_skip(4) else { return };
    let mut r = responder(
        &lab,
        Modes {
            block_ip: Mode::Automatic,
            ..Modes::default()
        },
    );
    let probe = |wait| lab.delivered_to(&lab.server_ip6, &lab.attacker, wait);
    assert!(probe(OPEN), "baseline: IPv6 datagrams must arrive");
    let resp = r.respond(&trigger(&lab.attacker_ip6, None), false, Utc::now());
    let rec = &resp.executed[0];
    assert_eq!(rec.outcome, Outcome::Ok, "{:?}", rec.outcome);
    assert!(lab.nft_list("blocked6").contains(&lab.attacker_ip6));
    assert!(
        !probe(Duration::from_millis(1000)),
        "blocked: IPv6 datagrams must not arrive"
    );
    // IPv4 from the same attacker is a different address and still flows.
    assert!(lab.delivered(OPEN));
    r.rollback(rec.id, Actor::user("analyst").unwrap(), false, Utc::now())
        .unwrap();
    assert!(probe(OPEN), "rolled back: IPv6 datagrams must arrive again");
}
