//! `mamori serve` and `mamori token`: glue between the command line and `mamori-server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use mamori_server::{tokens, ServerConfig};

use crate::exit;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (see --print-config for every key and its default).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (events, alerts, uploads); overrides `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Sigma rule files or directories; overrides `[detection] rules` (added to the embedded
    /// default pack).
    #[arg(long, value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Leave out the embedded default rule pack (`[detection] default_rules = false`).
    #[arg(long)]
    no_default_rules: bool,
    /// API address; overrides `[http] listen`.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Syslog TCP address; overrides `[syslog] tcp`.
    #[arg(long, value_name = "ADDR")]
    syslog_tcp: Option<SocketAddr>,
    /// Syslog UDP address; overrides `[syslog] udp`.
    #[arg(long, value_name = "ADDR")]
    syslog_udp: Option<SocketAddr>,
    /// Print the default configuration and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCmd {
    /// Create an API token; it is printed once and stored only as a hash.
    Create {
        /// A name for the token (who or what uses it), e.g. `ops` or `winlogbeat-hq`.
        name: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// List token names and creation times.
    List {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Revoke a token by name.
    Revoke {
        name: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

#[derive(Args, Debug)]
pub(crate) struct DataDirArgs {
    /// The server's configuration file (its `data_dir` is used).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The server's data directory (default: `mamori-data`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    /// The configuration file, when one was given.
    pub(crate) fn config_file(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }

    pub(crate) fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        Ok(match &self.config {
            Some(p) => ServerConfig::load(p)?.data_dir,
            None => ServerConfig::default().data_dir,
        })
    }
}

pub(crate) fn config_from(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut cfg = match &args.config {
        Some(p) => ServerConfig::load(p)?,
        None => ServerConfig::default(),
    };
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if args.no_default_rules {
        cfg.detection.default_rules = false;
    }
    if !args.rules.is_empty() {
        cfg.detection.rules = args.rules.clone();
    }
    if args.http.is_some() {
        cfg.http.listen = args.http;
    }
    if args.syslog_tcp.is_some() {
        cfg.syslog.tcp = args.syslog_tcp;
    }
    if args.syslog_udp.is_some() {
        cfg.syslog.udp = args.syslog_udp;
    }
    let origin = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("(command line)"));
    cfg.validate(&origin)?;
    Ok(cfg)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MAMORI_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<i32> {
    if args.print_config {
        print!("{}", ServerConfig::example());
        return Ok(exit::OK);
    }
    let cfg = config_from(&args)?;
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mamori-worker")
        .build()
        .context("cannot start the async runtime")?;
    let scheme = if cfg.http.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    rt.block_on(async move {
        let running = mamori_server::start(cfg).await?;
        if let Some(a) = running.http {
            eprintln!("mamori: API on {scheme}://{a}/api/v1 (health: /api/v1/health)");
        }
        if let Some(a) = running.syslog_tcp {
            eprintln!("mamori: syslog TCP on {a}");
        }
        if let Some(a) = running.syslog_tls {
            eprintln!("mamori: syslog TLS on {a}");
        }
        if let Some(a) = running.syslog_udp {
            eprintln!("mamori: syslog UDP on {a}");
        }
        wait_for_signal().await;
        eprintln!("mamori: shutting down (draining queued events)");
        running.shutdown().await;
        anyhow::Ok(exit::OK)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The state `mamori token` and `mamori user` change: the data directory's `state.db`, or
/// with `--config` of a cluster node the cluster's tokens and users (PostgreSQL).
pub(crate) fn open_node_state(
    dir: &DataDirArgs,
) -> anyhow::Result<std::sync::Arc<dyn mamori_store::AlertStore>> {
    let data = dir.resolve()?;
    let cluster = match dir.config_file() {
        Some(p) => ServerConfig::load(p)?.cluster,
        None => None,
    };
    Ok(mamori_server::open_node_state(&data, cluster.as_ref())?)
}

pub(crate) fn run_token(cmd: TokenCmd) -> anyhow::Result<i32> {
    match cmd {
        TokenCmd::Create { name, dir } => {
            let store = open_node_state(&dir)?;
            let store = &*store;
            let t = tokens::create(store, &name).map_err(anyhow::Error::msg)?;
            eprintln!("Created token `{name}`. It is shown only now; store it safely:");
            println!("{t}");
            Ok(exit::OK)
        }
        TokenCmd::List { dir } => {
            let store = open_node_state(&dir)?;
            let store = &*store;
            for t in tokens::list(store).map_err(anyhow::Error::msg)? {
                println!("{}\t{}", t.name, t.created_at.to_rfc3339());
            }
            Ok(exit::OK)
        }
        TokenCmd::Revoke { name, dir } => {
            let store = open_node_state(&dir)?;
            let store = &*store;
            if tokens::revoke(store, &name).map_err(anyhow::Error::msg)? {
                eprintln!("Revoked token `{name}`.");
                Ok(exit::OK)
            } else {
                eprintln!("error: no token named `{name}`");
                Ok(exit::FOUND)
            }
        }
    }
}
