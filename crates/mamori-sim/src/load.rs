//! Load generation: realistic, cheap-to-make log lines for benchmarks.

/// Line `i` of the background mix a Linux fleet sends over syslog (sshd, sudo, cron, systemd,
/// the kernel firewall, an RFC 5424 application), in RFC 3164 and 5424, 40 hosts: the load of
/// `mamori bench ingest` and of the store's indexing-cost harness.
pub fn fleet_syslog_line(i: u64) -> String {
    let host = format!("srv{:02}", i % 40);
    let sec = i % 60;
    match i % 8 {
        0 => format!("<86>Nov 23 10:00:{sec:02} {host} sshd[{p}]: Accepted publickey for deploy from 10.0.{a}.{b} port {port} ssh2: ED25519 SHA256:abcdef", p = 1000 + i % 5000, a = i % 200, b = i % 250, port = 30000 + i % 30000),
        1 => format!("<85>Nov 23 10:00:{sec:02} {host} sudo:   deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/systemctl restart app{}", i % 9),
        2 => format!("<78>Nov 23 10:00:{sec:02} {host} CRON[{p}]: (root) CMD (/usr/local/bin/backup.sh --incremental)", p = 2000 + i % 3000),
        3 => format!("<30>Nov 23 10:00:{sec:02} {host} systemd[1]: Started Session {} of User deploy.", i % 100_000),
        4 => format!("<4>Nov 23 10:00:{sec:02} {host} kernel: [UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.{} DST=10.0.0.5 PROTO=TCP SPT={} DPT=23", i % 250, 40000 + i % 20000),
        5 => format!("<86>Nov 23 10:00:{sec:02} {host} sshd[{p}]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)", p = 1000 + i % 5000),
        6 => format!("<14>1 2026-11-23T10:00:{sec:02}.123Z {host} app 4242 ID47 - request id={i} path=/api/orders status=200 ms=12"),
        _ => format!("<38>Nov 23 10:00:{sec:02} {host} sshd[{p}]: Connection closed by 10.0.{a}.{b} port {port} [preauth]", p = 1000 + i % 5000, a = i % 200, b = i % 250, port = 30000 + i % 30000),
    }
}
