//! `mamori agent`: enrolment tokens and the agent list (server side), enrol and run (host side).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::exit;
use crate::serve::DataDirArgs;

#[derive(Subcommand, Debug)]
pub(crate) enum AgentCmd {
    /// Server side: create a one-time enrolment token (printed once, stored hashed).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Server side: list enrolled agents (revoke with POST /api/v1/agents/{id}/revoke).
    List {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Host side: enrol this host with a server and save the credential in the state directory.
    ///
    /// Example: mamori agent enroll --server https://mamori.example:8443 --token mamori_enroll_… \
    ///          --config /etc/mamori/agent.toml --ca-cert /etc/mamori/ca.pem
    Enroll(EnrollArgs),
    /// Host side: collect, buffer and forward (runs until killed; SIGKILL is safe).
    Run {
        /// The agent configuration (TOML: state_dir, [[file]], [journald], [fim], [ransomware]).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCmd {
    /// Create a one-time enrolment token.
    Create {
        /// How long the token can be used, in hours.
        #[arg(long, default_value_t = 24, value_name = "HOURS")]
        ttl_hours: u64,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

#[derive(Args, Debug)]
pub(crate) struct EnrollArgs {
    /// The server: `https://host:port` (or `http://` to a loopback address).
    #[arg(long, value_name = "URL")]
    server: String,
    /// The one-time enrolment token from `mamori agent token create`.
    #[arg(long, value_name = "TOKEN")]
    token: String,
    /// The agent configuration whose `state_dir` receives the credential…
    #[arg(short, long, value_name = "FILE", conflicts_with = "state_dir")]
    config: Option<PathBuf>,
    /// …or the state directory itself.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The agent's name on the server (default: this host's name).
    #[arg(long)]
    name: Option<String>,
    /// PEM CA certificate the server's certificate must chain to (pinned: the only root
    /// trusted for this server from now on).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Allow plain http to a non-loopback server (a network you trust; not recommended).
    #[arg(long)]
    allow_plain_http: bool,
    /// Require the server's certificate to have this SHA-256 (`sha256:…`, as printed by a
    /// previous enrolment or `openssl x509 -noout -fingerprint -sha256`). Without it and
    /// without --ca-cert, the certificate presented now is pinned (trust on first use).
    #[arg(long, value_name = "SHA256", conflicts_with = "ca_cert")]
    pin: Option<String>,
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

pub(crate) fn run(cmd: AgentCmd) -> anyhow::Result<i32> {
    match cmd {
        AgentCmd::Token(TokenCmd::Create { ttl_hours, dir }) => {
            if ttl_hours == 0 || ttl_hours > 24 * 30 {
                anyhow::bail!("--ttl-hours must be 1-720");
            }
            let store = mamori_server::open_state(&dir.resolve()?)?;
            let t = mamori_server::agents::create_enroll_token(
                &store,
                std::time::Duration::from_secs(ttl_hours * 3600),
            )
            .map_err(anyhow::Error::msg)?;
            eprintln!(
                "Created a one-time enrolment token valid for {ttl_hours} h. It is shown only now:"
            );
            println!("{t}");
            Ok(exit::OK)
        }
        AgentCmd::List { dir } => {
            let store = mamori_server::open_state(&dir.resolve()?)?;
            for a in mamori_server::agents::list(&store).map_err(anyhow::Error::msg)? {
                let state = if a.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\tlast_seen={}\tbuffer_bytes={}\tdropped={}",
                    a.id,
                    a.name,
                    state,
                    a.hostname,
                    a.os,
                    a.version,
                    a.last_seen.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    a.buffer.bytes,
                    a.buffer.dropped,
                );
            }
            Ok(exit::OK)
        }
        AgentCmd::Enroll(a) => {
            let state_dir = match (&a.config, &a.state_dir) {
                (Some(c), _) => mamori_agent::AgentConfig::load(c)?.state_dir,
                (None, Some(d)) => d.clone(),
                (None, None) => anyhow::bail!("give --config FILE or --state-dir DIR"),
            };
            let ca = match &a.ca_cert {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
                ),
                None => None,
            };
            let id = mamori_agent::client::Identity::of_this_host(a.name.clone());
            let cred = mamori_agent::client::enroll(
                &a.server,
                &a.token,
                &id,
                ca,
                a.allow_plain_http,
                a.pin.as_deref(),
            )?;
            cred.save(&state_dir)?;
            if let Some(fp) = &cred.pinned_sha256 {
                eprintln!(
                    "Pinned the server's certificate {fp}{}; a different certificate will be refused.",
                    if a.pin.is_some() { " (as required by --pin)" } else { " (trust on first use: compare it with the server's)" }
                );
                println!("{fp}");
            }
            eprintln!(
                "Enrolled as `{}` ({}); credential saved in {}",
                cred.name,
                cred.agent_id,
                state_dir
                    .join(mamori_agent::client::CREDENTIAL_FILE)
                    .display()
            );
            Ok(exit::OK)
        }
        AgentCmd::Run { config } => {
            init_tracing();
            let cfg = mamori_agent::AgentConfig::load(&config)?;
            let stop = Arc::new(AtomicBool::new(false));
            let stats = Arc::new(mamori_agent::run::Stats::default());
            mamori_agent::run::run(cfg, stop, stats)?;
            Ok(exit::OK)
        }
    }
}
