//! Host inventory: users and groups (`/etc/passwd`, `/etc/group`), listening TCP ports with
//! the processes that own them (`/proc/net/tcp{,6}` and `/proc/*/fd`), installed packages (the
//! dpkg status file), kernel and uptime — collected every `[inventory] interval_secs`, diffed
//! against the last inventory sent, and reported as events (`event.dataset: mamori.inventory`).
//!
//! The first inventory is a baseline (`event.action: present`, one event per item, so the
//! server can search it); after it, only what changed is sent (`added`, `removed`, `changed`)
//! with a summary. Rules in `rules/agent/inventory.yml` make a new listening port and a new
//! UID 0 account alerts. The last inventory sent is saved (`inventory.json`) after the batch
//! holding its changes is buffered, so a restart does not report the same change twice and
//! does not miss one made while the agent was stopped.
//!
//! The roots are configurable (`etc_root`, `proc_root`, `dpkg_status`) so tests run on a tree
//! of their own. Every file is parsed leniently: a malformed line is skipped and counted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Error, Result};

const STATE_FILE: &str = "inventory.json";
/// Most items of one kind kept (a bound against a hostile or broken file).
const MAX_ITEMS: usize = 50_000;

/// `[inventory]` in `agent.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    pub enabled: bool,
    /// How often the inventory is taken (seconds).
    pub interval_secs: u64,
    pub etc_root: PathBuf,
    pub proc_root: PathBuf,
    pub dpkg_status: PathBuf,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            enabled: true,
            interval_secs: 300,
            etc_root: PathBuf::from("/etc"),
            proc_root: PathBuf::from("/proc"),
            dpkg_status: PathBuf::from("/var/lib/dpkg/status"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub gid: u32,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub ip: String,
    pub port: u16,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub process: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// One inventory. Keys: user and group names, `tcp/IP:PORT`, `name:arch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    pub ports: BTreeMap<String, Port>,
    pub packages: BTreeMap<String, Package>,
    pub kernel: String,
    /// Not diffed (it always changes).
    #[serde(default)]
    pub uptime_secs: u64,
    /// Lines that did not parse, per file.
    #[serde(default)]
    pub skipped: BTreeMap<String, u64>,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read(p)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `/etc/passwd`: `name:x:uid:gid:gecos:home:shell`.
pub fn parse_passwd(text: &str, skipped: &mut u64) -> BTreeMap<String, User> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let l = l.trim_end_matches('\r');
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split(':').collect();
        match (
            f.len(),
            f.first(),
            f.get(2).and_then(|u| u.parse().ok()),
            f.get(3).and_then(|g| g.parse().ok()),
        ) {
            (7, Some(name), Some(uid), Some(gid)) if !name.is_empty() && out.len() < MAX_ITEMS => {
                out.insert(
                    (*name).to_owned(),
                    User {
                        uid,
                        gid,
                        home: f[5].to_owned(),
                        shell: f[6].to_owned(),
                    },
                );
            }
            _ => *skipped += 1,
        }
    }
    out
}

/// `/etc/group`: `name:x:gid:member,member`.
pub fn parse_group(text: &str, skipped: &mut u64) -> BTreeMap<String, Group> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let l = l.trim_end_matches('\r');
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split(':').collect();
        match (f.len(), f.first(), f.get(2).and_then(|g| g.parse().ok())) {
            (4, Some(name), Some(gid)) if !name.is_empty() && out.len() < MAX_ITEMS => {
                let members = f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect();
                out.insert((*name).to_owned(), Group { gid, members });
            }
            _ => *skipped += 1,
        }
    }
    out
}

/// The dpkg status file: installed packages (`Status: install ok installed`).
pub fn parse_dpkg(text: &str) -> BTreeMap<String, Package> {
    let mut out = BTreeMap::new();
    for para in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = ("", "", "", false);
        for l in para.lines() {
            if let Some(v) = l.strip_prefix("Package: ") {
                name = v.trim();
            } else if let Some(v) = l.strip_prefix("Version: ") {
                version = v.trim();
            } else if let Some(v) = l.strip_prefix("Architecture: ") {
                arch = v.trim();
            } else if let Some(v) = l.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if installed && !name.is_empty() && out.len() < MAX_ITEMS {
            out.insert(
                format!("{name}:{arch}"),
                Package {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    arch: arch.to_owned(),
                },
            );
        }
    }
    out
}

/// `/proc/net/tcp{,6}` listening sockets: `(ip, port, inode)`.
pub fn parse_proc_net_tcp(text: &str, v6: bool, skipped: &mut u64) -> Vec<(String, u16, u64)> {
    let mut out = Vec::new();
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 10 {
            *skipped += 1;
            continue;
        }
        if f[3] != "0A" {
            continue; // not LISTEN
        }
        let Some((addr, port)) = f[1].split_once(':') else {
            *skipped += 1;
            continue;
        };
        let (Ok(port), Ok(inode)) = (u16::from_str_radix(port, 16), f[9].parse::<u64>()) else {
            *skipped += 1;
            continue;
        };
        let Some(ip) = hex_ip(addr, v6) else {
            *skipped += 1;
            continue;
        };
        out.push((ip, port, inode));
    }
    out
}

/// The kernel prints addresses as 32-bit words in host byte order (little-endian here).
fn hex_ip(h: &str, v6: bool) -> Option<String> {
    let words: Vec<u32> = (0..h.len() / 8)
        .map(|i| u32::from_str_radix(h.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    match (v6, words.as_slice()) {
        (false, [w]) => Some(std::net::Ipv4Addr::from(w.to_le_bytes()).to_string()),
        (true, [a, b, c, d]) => {
            let mut o = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            Some(std::net::Ipv6Addr::from(o).to_string())
        }
        _ => None,
    }
}

/// Which process holds each socket inode (`/proc/PID/fd/* -> socket:[inode]`).
fn socket_owners(proc_root: &Path, want: &[u64]) -> HashMap<u64, (u32, String)> {
    let mut out = HashMap::new();
    if want.is_empty() {
        return out;
    }
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if want.contains(&inode) && !out.contains_key(&inode) {
                let comm = read(&e.path().join("comm"))
                    .map(|c| c.trim_end().to_owned())
                    .unwrap_or_default();
                out.insert(inode, (pid, comm));
            }
        }
        if out.len() == want.len() {
            break;
        }
    }
    out
}

/// Takes an inventory from the configured roots.
pub fn collect(cfg: &InventoryConfig) -> Snapshot {
    let mut s = Snapshot::default();
    let mut skip = |name: &str, n: u64| {
        if n > 0 {
            s.skipped.insert(name.to_owned(), n);
        }
    };
    let mut n = 0;
    let users = read(&cfg.etc_root.join("passwd"))
        .map(|t| parse_passwd(&t, &mut n))
        .unwrap_or_default();
    skip("passwd", n);
    let mut n = 0;
    let groups = read(&cfg.etc_root.join("group"))
        .map(|t| parse_group(&t, &mut n))
        .unwrap_or_default();
    skip("group", n);
    let mut n = 0;
    let mut listen = Vec::new();
    for (file, v6) in [("net/tcp", false), ("net/tcp6", true)] {
        if let Some(t) = read(&cfg.proc_root.join(file)) {
            listen.extend(parse_proc_net_tcp(&t, v6, &mut n));
        }
    }
    skip("proc_net_tcp", n);
    let inodes: Vec<u64> = listen.iter().map(|l| l.2).collect();
    let owners = socket_owners(&cfg.proc_root, &inodes);
    let mut ports = BTreeMap::new();
    for (ip, port, inode) in listen {
        let key = if ip.contains(':') {
            format!("tcp/[{ip}]:{port}")
        } else {
            format!("tcp/{ip}:{port}")
        };
        let owner = owners.get(&inode);
        ports.insert(
            key,
            Port {
                ip,
                port,
                pid: owner.map(|o| o.0),
                process: owner.map(|o| o.1.clone()),
            },
        );
        if ports.len() >= MAX_ITEMS {
            break;
        }
    }
    s.users = users;
    s.groups = groups;
    s.ports = ports;
    s.packages = read(&cfg.dpkg_status)
        .map(|t| parse_dpkg(&t))
        .unwrap_or_default();
    s.kernel = read(&cfg.proc_root.join("sys/kernel/osrelease"))
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    s.uptime_secs = read(&cfg.proc_root.join("uptime"))
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |u| u as u64);
    s
}

/// The last inventory sent.
pub fn load(state_dir: &Path) -> Result<Option<Snapshot>> {
    let p = state_dir.join(STATE_FILE);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: p,
                offset: e.column() as u64,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io { path: p, source: e }),
    }
}

pub fn save(state_dir: &Path, s: &Snapshot) -> Result<()> {
    let b = serde_json::to_vec(s).map_err(|e| Error::Invalid(e.to_string()))?;
    crate::spool::write_atomic(&state_dir.join(STATE_FILE), &b)
}

/// True when the inventories differ in anything but uptime.
pub fn changed(old: &Snapshot, new: &Snapshot) -> bool {
    old.users != new.users
        || old.groups != new.groups
        || old.packages != new.packages
        || old.kernel != new.kernel
        || old.ports.keys().ne(new.ports.keys())
}

fn base(host: &str, action: &str, kind: &str, category: &str, message: String) -> Value {
    json!({
        "@timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "message": message,
        "event": {
            "kind": "state", "category": category, "type": "info", "action": action,
            "module": "inventory", "dataset": "mamori.inventory",
        },
        "host": { "name": host },
        "inventory": { "type": kind },
    })
}

fn user_event(host: &str, action: &str, name: &str, u: &User, before: Option<&User>) -> Value {
    let mut v = base(
        host,
        action,
        "user",
        "iam",
        format!(
            "inventory: user {action} {name} (uid {}, gid {}, home {}, shell {})",
            u.uid, u.gid, u.home, u.shell
        ),
    );
    v["user"] =
        json!({ "name": name, "id": u.uid.to_string(), "group": { "id": u.gid.to_string() } });
    v["inventory"]["home"] = json!(u.home);
    v["inventory"]["shell"] = json!(u.shell);
    if let Some(b) = before {
        v["inventory"]["before"] = json!({ "uid": b.uid.to_string(), "gid": b.gid.to_string(), "home": b.home, "shell": b.shell });
    }
    v
}

fn group_event(host: &str, action: &str, name: &str, g: &Group) -> Value {
    let mut v = base(
        host,
        action,
        "group",
        "iam",
        format!(
            "inventory: group {action} {name} (gid {}, members {})",
            g.gid,
            g.members.join(",")
        ),
    );
    v["group"] = json!({ "name": name, "id": g.gid.to_string() });
    v["inventory"]["members"] = json!(g.members.join(","));
    v
}

fn port_event(host: &str, action: &str, p: &Port) -> Value {
    let who = match (&p.process, p.pid) {
        (Some(n), Some(pid)) => format!(" by {n} (PID {pid})"),
        _ => String::new(),
    };
    let mut v = base(
        host,
        action,
        "port",
        "network",
        format!(
            "inventory: listening port {action} tcp {}:{}{who}",
            p.ip, p.port
        ),
    );
    v["network"] = json!({ "transport": "tcp" });
    v["server"] = json!({ "ip": p.ip, "port": p.port });
    if let (Some(pid), Some(n)) = (p.pid, &p.process) {
        v["process"] = json!({ "pid": pid, "name": n });
    }
    v
}

fn package_event(host: &str, action: &str, p: &Package, before: Option<&Package>) -> Value {
    let mut v = base(
        host,
        action,
        "package",
        "package",
        format!(
            "inventory: package {action} {} {} ({})",
            p.name, p.version, p.arch
        ),
    );
    v["package"] = json!({ "name": p.name, "version": p.version, "architecture": p.arch });
    if let Some(b) = before {
        v["inventory"]["before"] = json!({ "version": b.version });
    }
    v
}

/// The events for a new inventory: per item (`present` for a baseline, else `added`,
/// `removed`, `changed`) and a summary (`event.action: inventory`).
pub fn events(old: Option<&Snapshot>, new: &Snapshot, host: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let empty = Snapshot::default();
    let (old, added) = match old {
        None => (&empty, "present"),
        Some(o) => (o, "added"),
    };
    for (n, u) in &new.users {
        match old.users.get(n) {
            None => out.push(user_event(host, added, n, u, None)),
            Some(b) if b != u => out.push(user_event(host, "changed", n, u, Some(b))),
            _ => {}
        }
    }
    for (n, u) in &old.users {
        if !new.users.contains_key(n) {
            out.push(user_event(host, "removed", n, u, None));
        }
    }
    for (n, g) in &new.groups {
        match old.groups.get(n) {
            None => out.push(group_event(host, added, n, g)),
            Some(b) if b != g => out.push(group_event(host, "changed", n, g)),
            _ => {}
        }
    }
    for (n, g) in &old.groups {
        if !new.groups.contains_key(n) {
            out.push(group_event(host, "removed", n, g));
        }
    }
    for (k, p) in &new.ports {
        if !old.ports.contains_key(k) {
            out.push(port_event(host, added, p));
        }
    }
    for (k, p) in &old.ports {
        if !new.ports.contains_key(k) {
            out.push(port_event(host, "removed", p));
        }
    }
    for (k, p) in &new.packages {
        match old.packages.get(k) {
            None => out.push(package_event(host, added, p, None)),
            Some(b) if b != p => out.push(package_event(host, "changed", p, Some(b))),
            _ => {}
        }
    }
    for (k, p) in &old.packages {
        if !new.packages.contains_key(k) {
            out.push(package_event(host, "removed", p, None));
        }
    }
    let changes = out.len();
    let mut s = base(
        host,
        "inventory",
        "summary",
        "host",
        format!(
            "inventory: {} users, {} groups, {} listening ports, {} packages, kernel {}, up {} s; {changes} {}",
            new.users.len(),
            new.groups.len(),
            new.ports.len(),
            new.packages.len(),
            new.kernel,
            new.uptime_secs,
            if added == "present" { "items in the baseline" } else { "changes" }
        ),
    );
    s["host"]["os"] = json!({ "kernel": new.kernel });
    s["host"]["uptime"] = json!(new.uptime_secs);
    s["inventory"]["users"] = json!(new.users.len());
    s["inventory"]["groups"] = json!(new.groups.len());
    s["inventory"]["ports"] = json!(new.ports.len());
    s["inventory"]["packages"] = json!(new.packages.len());
    s["inventory"]["changes"] = json!(changes);
    s["inventory"]["baseline"] = json!(added == "present");
    if old.kernel != new.kernel && !old.kernel.is_empty() {
        s["inventory"]["before"] = json!({ "kernel": old.kernel });
    }
    if !new.skipped.is_empty() {
        s["inventory"]["skipped_lines"] = json!(new.skipped);
    }
    out.push(s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small host: /etc and /proc of its own, one listening socket owned by PID 4242.
    fn host(d: &Path) -> InventoryConfig {
        let etc = d.join("etc");
        let proc = d.join("proc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(proc.join("net")).unwrap();
        std::fs::create_dir_all(proc.join("sys/kernel")).unwrap();
        std::fs::create_dir_all(proc.join("4242/fd")).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\nbroken line\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\nsudo:x:27:alice\n").unwrap();
        std::fs::write(
            proc.join("net/tcp"),
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0 100 0 0 10 0\n\
             \x20  1: 0100007F:9C40 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 6666 1 0 100 0 0 10 0\n",
        )
        .unwrap();
        std::fs::write(
            proc.join("net/tcp6"),
            "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0 100 0 0 10 0\n",
        )
        .unwrap();
        std::fs::write(proc.join("4242/comm"), "sshd\n").unwrap();
        std::os::unix::fs::symlink("socket:[5555]", proc.join("4242/fd/3")).unwrap();
        std::fs::write(proc.join("sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        std::fs::write(proc.join("uptime"), "12345.67 100.00\n").unwrap();
        let dpkg = d.join("status");
        std::fs::write(
            &dpkg,
            "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2\n\n\
             Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n",
        )
        .unwrap();
        InventoryConfig {
            enabled: true,
            interval_secs: 60,
            etc_root: etc,
            proc_root: proc,
            dpkg_status: dpkg,
        }
    }

    #[test]
    fn collects_users_groups_ports_packages_kernel() {
        let d = tempfile::tempdir().unwrap();
        let s = collect(&host(d.path()));
        assert_eq!(s.users.len(), 2);
        assert_eq!(s.users["alice"].uid, 1000);
        assert_eq!(s.skipped["passwd"], 1);
        assert_eq!(s.groups["sudo"].members, ["alice"]);
        assert_eq!(s.ports.len(), 2, "{:?}", s.ports);
        let ssh = &s.ports["tcp/0.0.0.0:22"];
        assert_eq!(
            (ssh.pid, ssh.process.as_deref()),
            (Some(4242), Some("sshd"))
        );
        assert!(s.ports.contains_key("tcp/[::1]:80"), "{:?}", s.ports);
        assert_eq!(s.packages.len(), 1);
        assert_eq!(s.packages["openssh-server:amd64"].version, "1:9.2p1-2");
        assert_eq!(s.kernel, "6.1.0-test");
        assert_eq!(s.uptime_secs, 12345);
    }

    #[test]
    fn baseline_then_only_changes() {
        let d = tempfile::tempdir().unwrap();
        let cfg = host(d.path());
        let first = collect(&cfg);
        let ev = events(None, &first, "web01");
        assert_eq!(ev.len(), 2 + 2 + 2 + 1 + 1);
        assert!(ev[..ev.len() - 1]
            .iter()
            .all(|e| e["event"]["action"] == "present"));
        assert_eq!(ev.last().unwrap()["inventory"]["baseline"], true);
        // Nothing changed but the uptime: no report.
        std::fs::write(cfg.proc_root.join("uptime"), "99999.0 1.0\n").unwrap();
        let same = collect(&cfg);
        assert!(!changed(&first, &same));
        // A UID 0 account and a listening port appear.
        let mut p = std::fs::read_to_string(cfg.etc_root.join("passwd")).unwrap();
        p.push_str("toor:x:0:0::/root:/bin/sh\n");
        std::fs::write(cfg.etc_root.join("passwd"), p).unwrap();
        let mut t = std::fs::read_to_string(cfg.proc_root.join("net/tcp")).unwrap();
        t.push_str("   2: 00000000:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8888 1 0 100 0 0 10 0\n");
        std::fs::write(cfg.proc_root.join("net/tcp"), t).unwrap();
        let next = collect(&cfg);
        assert!(changed(&first, &next));
        let ev = events(Some(&first), &next, "web01");
        assert_eq!(ev.len(), 3, "{ev:#?}");
        let user = ev
            .iter()
            .find(|e| e["inventory"]["type"] == "user")
            .unwrap();
        assert_eq!(user["event"]["action"], "added");
        assert_eq!(user["user"]["name"], "toor");
        assert_eq!(user["user"]["id"], "0");
        let port = ev
            .iter()
            .find(|e| e["inventory"]["type"] == "port")
            .unwrap();
        assert_eq!(port["event"]["action"], "added");
        assert_eq!(port["server"]["port"], 4444);
        assert_eq!(ev[2]["inventory"]["changes"], 2);
        // Saved and loaded.
        save(d.path(), &next).unwrap();
        assert_eq!(load(d.path()).unwrap().unwrap(), next);
    }

    #[test]
    fn hostile_input_is_skipped_not_fatal() {
        let mut n = 0;
        assert!(parse_passwd("::::::\nroot:x:notanumber:0::/:/bin/sh\n\u{0}\n", &mut n).is_empty());
        assert_eq!(n, 3);
        let mut n = 0;
        assert!(parse_proc_net_tcp(
            "header\n 0: ZZZZ:0016 0 0A a b c d e 1\n 1: short\n",
            false,
            &mut n
        )
        .is_empty());
        assert_eq!(n, 2);
        assert!(parse_dpkg("Package: x\n").is_empty());
    }
}
