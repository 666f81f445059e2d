//! Inventory end to end: the agent reads a host tree of the test's own (`etc_root`,
//! `proc_root`, `dpkg_status`), sends a searchable baseline that alerts on nothing, then a new
//! UID 0 account and a new listening port become alerts naming them.

use std::time::{Duration, Instant};

use super::*;

const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

fn tcp_line(i: u32, port: u16, inode: u64) -> String {
    format!("   {i}: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0 100 0 0 10 0\n")
}

#[test]
fn inventory_baseline_is_searchable_and_a_new_root_account_and_port_alert() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = server_config(dir.path(), &format!("127.0.0.1:{port}"), "");
    let srv = Server::start(&cfg, None);
    let root = dir.path().join("host");
    let (etc, proc) = (root.join("etc"), root.join("proc"));
    for d in [
        etc.clone(),
        proc.join("net"),
        proc.join("sys/kernel"),
        proc.join("700/fd"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/bash\nzzalice:x:1000:1000::/home/zzalice:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nsudo:x:27:zzalice\n").unwrap();
    std::fs::write(
        proc.join("net/tcp"),
        format!("{TCP_HEADER}{}", tcp_line(0, 22, 5001)),
    )
    .unwrap();
    std::fs::write(proc.join("700/comm"), "sshd\n").unwrap();
    std::os::unix::fs::symlink("socket:[5001]", proc.join("700/fd/3")).unwrap();
    std::fs::write(proc.join("sys/kernel/osrelease"), "6.1.0-zztest\n").unwrap();
    std::fs::write(proc.join("uptime"), "100.5 1.0\n").unwrap();
    let dpkg = root.join("status");
    std::fs::write(
        &dpkg,
        "Package: zzpkgbaseline\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n",
    )
    .unwrap();
    let adir = dir.path().join("agent");
    std::fs::create_dir_all(&adir).unwrap();
    let acfg = agent_config(
        &adir,
        &format!(
            "[inventory]\ninterval_secs = 1\netc_root = {:?}\nproc_root = {:?}\ndpkg_status = {:?}\n",
            etc.display().to_string(),
            proc.display().to_string(),
            dpkg.display().to_string()
        ),
    );
    enroll(
        &Host { ns: None },
        port,
        &enroll_token(&cfg),
        &acfg,
        "inv01",
    );
    let agent = AgentProc::start(&Host { ns: None }, &acfg);

    // The baseline: searchable, no alert (root's UID 0 and port 22 were there before).
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(&srv, "zzpkgbaseline") == 0 || total(&srv, "zzalice") == 0 {
        assert!(Instant::now() < deadline, "no inventory baseline arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    let hits = srv.search_all("sshd");
    assert!(
        hits.iter().any(|h| h["fields"]["server.port"] == 22
            && h["fields"]["process.name"] == "sshd"
            && h["fields"]["event.action"] == "present"),
        "{hits:?}"
    );
    // Nothing changes: nothing more is sent (the uptime alone is no change).
    std::fs::write(proc.join("uptime"), "200.5 1.0\n").unwrap();
    let summaries = total(&srv, "inventory.type:summary");
    assert!(summaries >= 1, "the baseline's summary is searchable");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        total(&srv, "inventory.type:summary"),
        summaries,
        "no report without a change"
    );
    assert!(alert_with_rule(&srv, "New UID 0 Account On A Host").is_none());
    assert!(alert_with_rule(&srv, "New Listening Port On A Host").is_none());

    // A second root account and a backdoor port.
    let mut p = std::fs::read_to_string(etc.join("passwd")).unwrap();
    p.push_str("zztoor:x:0:0::/root:/bin/sh\n");
    std::fs::write(etc.join("passwd"), p).unwrap();
    std::fs::write(
        proc.join("net/tcp"),
        format!(
            "{TCP_HEADER}{}{}",
            tcp_line(0, 22, 5001),
            tcp_line(1, 4444, 5002)
        ),
    )
    .unwrap();
    let (uid0, _) = wait_alert(&srv, "New UID 0 Account On A Host", Duration::from_secs(60));
    assert_eq!(uid0["level"], "critical");
    let e = alert_event(&srv, &uid0);
    assert_eq!(e["fields"]["user.name"], "zztoor", "{e}");
    let (p, _) = wait_alert(
        &srv,
        "New Listening Port On A Host",
        Duration::from_secs(60),
    );
    let e = alert_event(&srv, &p);
    assert_eq!(e["fields"]["server.port"], 4444, "{e}");
    assert_eq!(e["fields"]["agent.name"], "inv01");
    drop(agent);
}
