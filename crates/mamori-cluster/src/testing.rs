//! Test support shared by this crate's tests and the binary's end-to-end tests: real
//! `nats-server` processes (one server, a JetStream cluster, a hub with a leaf node) on free
//! loopback ports, and a TCP relay a test can cut. Nothing here runs in a server.
//!
//! The server binary is `$MAMORI_NATS_SERVER` or `/usr/sbin/nats-server`; without it
//! [`nats_server_bin`] says "skipped" and returns `None`, and tests return early.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `nats-server` binary, or `None` (and a "skipped" line) when it is not installed.
pub fn nats_server_bin() -> Option<PathBuf> {
    let p = std::env::var_os("MAMORI_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} not installed", p.display());
        None
    }
}

/// A free loopback port (bound then released: a tiny race other tests could lose).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("local address")
        .port()
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on a `nats-server` monitoring port (`/jsz`, `/leafz`, `/connz`).
pub fn monitor(http_port: u16, path: &str) -> Option<String> {
    let mut c = TcpStream::connect(("127.0.0.1", http_port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        c,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// One `nats-server` process with a configuration file of its own; SIGKILLed on drop.
pub struct NatsServer {
    bin: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    /// The monitoring port (`/jsz`, `/healthz`).
    pub http_port: u16,
    pub name: String,
}

impl NatsServer {
    /// Starts a server named `name` with JetStream storing under `dir`; `extra` is more
    /// configuration (cluster, leaf nodes, authorization) and `jetstream_extra` goes inside
    /// the `jetstream {}` block (a `domain`).
    pub fn start(dir: &Path, name: &str, jetstream_extra: &str, extra: &str) -> Option<NatsServer> {
        let port = free_port();
        Self::start_on(dir, name, port, jetstream_extra, extra)
    }

    fn start_on(
        dir: &Path,
        name: &str,
        port: u16,
        jetstream_extra: &str,
        extra: &str,
    ) -> Option<NatsServer> {
        let bin = nats_server_bin()?;
        std::fs::create_dir_all(dir).expect("nats dir");
        let http_port = free_port();
        let store = dir.join("js");
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{http_port}\"\n\
                 jetstream {{\n  store_dir: {store:?}\n  {jetstream_extra}\n}}\n{extra}\n"
            ),
        )
        .expect("write nats config");
        let mut s = NatsServer {
            bin,
            conf,
            child: None,
            port,
            http_port,
            name: name.to_owned(),
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let log = self.conf.with_extension("log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        wait_listening(self.port, &self.name);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no goodbye to the cluster, nothing flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same configuration, ports and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The server's log (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.conf.with_extension("log")).unwrap_or_default()
    }

    /// `GET path` on the monitoring port.
    pub fn monitor(&self, path: &str) -> Option<String> {
        monitor(self.http_port, path)
    }

    /// Waits until JetStream knows its meta leader (a cluster has formed; a single server at
    /// once).
    pub fn wait_jetstream(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(b) = self.monitor("/jsz") {
                let v: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
                let clustered = v.get("meta_cluster").is_some();
                if (!clustered && v.get("config").is_some())
                    || v["meta_cluster"]["leader"]
                        .as_str()
                        .is_some_and(|l| !l.is_empty())
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "JetStream of {} not ready: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A single JetStream server (the common case of a test).
pub fn single(dir: &Path) -> Option<NatsServer> {
    let s = NatsServer::start(dir, "solo", "", "")?;
    s.wait_jetstream();
    Some(s)
}

/// A JetStream cluster of `n` servers routed to each other, every one with `extra`
/// configuration (authorization); ready (meta leader elected) when returned.
pub fn cluster(dir: &Path, n: usize, extra: &str) -> Option<Vec<NatsServer>> {
    nats_server_bin()?;
    let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let route_list = routes
        .iter()
        .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut nodes = Vec::new();
    for (i, rp) in routes.iter().enumerate() {
        let name = format!("n{}", i + 1);
        nodes.push(NatsServer::start(
            &dir.join(&name),
            &name,
            "",
            &format!(
                "cluster {{\n  name: mamori_test\n  listen: \"127.0.0.1:{rp}\"\n  routes: [{route_list}]\n}}\n{extra}"
            ),
        )?);
    }
    for s in &nodes {
        s.wait_jetstream();
    }
    Some(nodes)
}

/// A hub server (JetStream domain `hub`) and a leaf node of `site` (JetStream domain named
/// like the site) whose link to the hub runs through a [`Relay`]: `(hub, relay, leaf)`,
/// linked when returned.
pub fn hub_and_leaf(dir: &Path, site: &str) -> Option<(NatsServer, Relay, NatsServer)> {
    nats_server_bin()?;
    let leaf_port = free_port();
    let relay = Relay::start(([127, 0, 0, 1], leaf_port).into());
    // The hub tells a leaf its leaf URLs: it advertises the relay's (and `no_advertise`
    // alone does not stop it on 2.9), else the leaf reconnects around the relay.
    let hub = NatsServer::start(
        &dir.join("hub"),
        "hub",
        "domain: hub",
        &format!(
            "leafnodes {{\n  listen: \"127.0.0.1:{leaf_port}\"\n  advertise: \"127.0.0.1:{}\"\n}}",
            relay.port
        ),
    )?;
    hub.wait_jetstream();
    let leaf = NatsServer::start(
        &dir.join(site),
        &format!("leaf_{site}"),
        &format!("domain: {site}"),
        &format!(
            "leafnodes {{\n  reconnect: 1\n  remotes: [ {{ url: \"nats-leaf://127.0.0.1:{}\" }} ]\n}}",
            relay.port
        ),
    )?;
    leaf.wait_jetstream();
    wait_leaf_linked(&hub, true);
    Some((hub, relay, leaf))
}

/// Waits until the hub has (or, `linked == false`, no longer has) a leaf node connection.
pub fn wait_leaf_linked(hub: &NatsServer, linked: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = hub
            .monitor("/leafz")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["leafnodes"].as_u64());
        if n.is_some_and(|n| (n > 0) == linked) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "leaf link of {} never became {linked}: {}",
            hub.name,
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A TCP relay the test controls, between a client (a leaf node) and a server (the hub's
/// leaf port): [`Relay::cut`] closes every connection through it and refuses new ones until
/// [`Relay::restore`] — a WAN link going down and coming back.
pub struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = l.local_addr().expect("relay address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c2, s2, k2) = (Arc::clone(&cut), Arc::clone(&stop), Arc::clone(&conns));
        let accept = std::thread::spawn(move || {
            for inbound in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(inbound) = inbound else { continue };
                if c2.load(Ordering::SeqCst) {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(i2), Ok(o2)) = (inbound.try_clone(), outbound.try_clone()) else {
                    continue;
                };
                {
                    let mut k = k2.lock().unwrap_or_else(|p| p.into_inner());
                    k.extend(inbound.try_clone().ok());
                    k.extend(outbound.try_clone().ok());
                }
                std::thread::spawn(move || pipe(inbound, o2));
                std::thread::spawn(move || pipe(outbound, i2));
            }
        });
        Relay {
            port,
            cut,
            stop,
            conns,
            accept: Some(accept),
        }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}
