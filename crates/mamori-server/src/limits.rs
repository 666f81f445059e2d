//! Resource limits of `mamori serve` against exhaustion (issue #15 finding 5 and 7).
//!
//! * **File descriptors**: at start the soft `RLIMIT_NOFILE` is raised to the hard limit (what
//!   systemd's `LimitNOFILE=` or `ulimit -Hn` allows) and the result is logged. Each stream
//!   listener (syslog TCP, syslog TLS, HTTP) has a connection cap; when the caps together would
//!   not fit in the descriptors left after [`FD_RESERVE`] (store segments, the index, SQLite,
//!   the vault), they are lowered to fit and a warning says so, so that a flood of connections
//!   can never take the descriptors that storage needs.
//! * **Idle connections**: syslog TCP/TLS connections that send nothing for
//!   `idle_timeout_secs` are closed; once a listener is three-quarters full the limit drops to
//!   `idle_timeout_when_full_secs`, so idle sockets cannot lock new senders out. HTTP requests
//!   must send their headers within `header_read_timeout_secs` (this also bounds idle
//!   keep-alive connections) and their body within `body_timeout_secs`.
//! * **UDP**: the socket's receive buffer is set from `udp_receive_buffer_bytes` and the
//!   kernel's count of datagrams it dropped because that buffer was full (the `drops` column of
//!   `/proc/net/udp` for our socket) is exported, since those losses never reach the server.
//!
//! The operator's view of all this is `docs/limits.md`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Descriptors kept for everything but client connections.
pub const FD_RESERVE: u64 = 64;

/// Counters of the limits, rendered into `/metrics` by the API.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Datagrams the kernel dropped on our UDP socket (receive buffer full), as last read.
    pub udp_kernel_drops: AtomicU64,
    /// The UDP receive buffer the kernel granted (bytes).
    pub udp_receive_buffer_bytes: AtomicU64,
    /// Syslog TCP/TLS connections closed for being idle.
    pub stream_idle_closed: AtomicU64,
    /// Lines or elements of ingest requests rejected (the rest of their request was stored).
    pub ingest_rejected: AtomicU64,
}

impl NetCounters {
    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, s: &mut String) {
        let rows: [(&str, &str, &str, &AtomicU64); 4] = [
            (
                "mamori_udp_receive_buffer_drops_total",
                "counter",
                "UDP datagrams the kernel dropped because the socket's receive buffer was full.",
                &self.udp_kernel_drops,
            ),
            (
                "mamori_udp_receive_buffer_bytes",
                "gauge",
                "UDP receive buffer granted by the kernel.",
                &self.udp_receive_buffer_bytes,
            ),
            (
                "mamori_stream_idle_closed_total",
                "counter",
                "Syslog TCP/TLS connections closed because they were idle.",
                &self.stream_idle_closed,
            ),
            (
                "mamori_ingest_rejected_total",
                "counter",
                "Ingest lines or array elements rejected (the rest of the request was stored).",
                &self.ingest_rejected,
            ),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
    }
}

/// The soft and hard `RLIMIT_NOFILE` after trying to raise the soft one to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft descriptor limit to the hard limit (capped at 1,048,576) and reports it.
#[cfg(unix)]
pub fn raise_nofile() -> NoFile {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    const CEILING: u64 = 1 << 20;
    let cur = getrlimit(Resource::Nofile);
    let before = cur.current.unwrap_or(CEILING);
    let hard = cur.maximum.unwrap_or(CEILING);
    let want = hard.min(CEILING);
    if want > before {
        let new = Rlimit {
            current: Some(want),
            maximum: cur.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, new) {
            tracing::warn!(error = %e, soft = before, hard, "cannot raise the open-file limit");
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(CEILING);
    NoFile { before, soft, hard }
}

#[cfg(not(unix))]
pub fn raise_nofile() -> NoFile {
    NoFile {
        before: u64::MAX,
        soft: u64::MAX,
        hard: u64::MAX,
    }
}

/// The connection caps that fit in `soft` descriptors: each configured cap, lowered
/// proportionally when together they exceed `soft - FD_RESERVE` (never below 8).
pub fn fit_caps(soft: u64, caps: &[usize]) -> Vec<usize> {
    let budget = soft.saturating_sub(FD_RESERVE);
    let total: u64 = caps.iter().map(|&c| c as u64).sum();
    if total <= budget || total == 0 {
        return caps.to_vec();
    }
    caps.iter()
        .map(|&c| ((c as u64 * budget / total) as usize).max(8))
        .collect()
}

/// Datagrams the kernel dropped on the UDP socket with inode `inode` (the `drops` column of
/// `/proc/net/udp` or `/proc/net/udp6`), or `None` where that is not available.
pub fn udp_kernel_drops(inode: u64) -> Option<u64> {
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        parse_proc_net_udp(&text, inode)
    })
}

/// The `drops` column of the line of `/proc/net/udp` whose inode is `inode`.
pub fn parse_proc_net_udp(text: &str, inode: u64) -> Option<u64> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    // Header: sl local_address rem_address st tx_queue rx_queue tr tm->when retrnsmt uid
    // timeout inode ref pointer drops. The data lines split "tx_queue:rx_queue" and
    // "tr:tm->when" into one field each, so the inode is field 9 and drops the last.
    if header.last() != Some(&"drops") {
        return None;
    }
    lines.find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(9)?.parse::<u64>().ok()? == inode {
            f.last()?.parse().ok()
        } else {
            None
        }
    })
}

/// The inode of a socket descriptor (`/proc/self/fd/N` reads `socket:[INODE]`).
#[cfg(unix)]
pub fn socket_inode(fd: std::os::fd::RawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_in_the_descriptor_budget() {
        assert_eq!(fit_caps(65_536, &[1024, 512]), vec![1024, 512]);
        let c = fit_caps(256, &[1024, 512]);
        assert!(c.iter().sum::<usize>() as u64 <= 256 - FD_RESERVE, "{c:?}");
        assert_eq!(c, vec![128, 64]);
        assert_eq!(fit_caps(10, &[100]), vec![8]);
    }

    #[test]
    fn proc_net_udp_drops_of_our_inode() {
        let t = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                 1234: 0100007F:1582 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 778899 2 0000000000000000 17\n\
                 1235: 0100007F:1583 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 778900 2 0000000000000000 0\n";
        assert_eq!(parse_proc_net_udp(t, 778899), Some(17));
        assert_eq!(parse_proc_net_udp(t, 778900), Some(0));
        assert_eq!(parse_proc_net_udp(t, 1), None);
        assert_eq!(parse_proc_net_udp("garbage", 1), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_udp_socket_is_found_in_proc() {
        use std::os::fd::AsRawFd;
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inode = socket_inode(s.as_raw_fd()).expect("socket inode");
        assert_eq!(udp_kernel_drops(inode), Some(0));
    }
}
