//! `mamori cluster status`: nodes, streams, consumer lag and alerts of a `[cluster]`;
//! `mamori cluster import`: an embedded install's events into the cluster (the upgrade path).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use mamori_server::ServerConfig;

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCmd {
    /// Nodes and their roles (heartbeats), stream state, the detectors' consumer lag and the
    /// alerts in PostgreSQL.
    Status {
        /// A node's configuration file (its `[cluster]` section says where NATS and
        /// PostgreSQL are).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Imports an embedded install's events into the cluster's stream, keeping their seqs,
    /// and its API tokens, console users and settings into PostgreSQL where the cluster has
    /// none (the upgrade path from one machine). Stop the embedded server first and run this
    /// before any collector publishes; an interrupted import resumes where it stopped, a
    /// finished one does nothing. Then start the store node with the same data directory.
    Import {
        /// The embedded install's data directory (its `events/` log is read, never changed).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The configuration of a hub node (its `[cluster]` section says where NATS is; the
        /// events get its `site`).
        #[arg(long)]
        config: PathBuf,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
}

pub(crate) fn run(cmd: ClusterCmd) -> anyhow::Result<i32> {
    match cmd {
        ClusterCmd::Status { config, json } => {
            let cfg = ServerConfig::load(&config)?;
            let Some(c) = cfg.cluster else {
                bail!(
                    "{} has no [cluster] section: this server runs embedded",
                    config.display()
                );
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let s = rt
                .block_on(mamori_cluster::status::collect(&c))
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", mamori_cluster::status::render(&s));
            }
            Ok(crate::exit::OK)
        }
        ClusterCmd::Import {
            from,
            config,
            quiet,
        } => import(&from, &config, quiet),
    }
}

fn import(from: &std::path::Path, config: &std::path::Path, quiet: bool) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let cfg = ServerConfig::load(config)?;
    let Some(c) = cfg.cluster else {
        bail!(
            "{} has no [cluster] section: give the configuration of a cluster node",
            config.display()
        );
    };
    let dir = from.join("events");
    if !dir.is_dir() {
        bail!(
            "{} is not an event log: --from takes the embedded install's data directory (the one holding events/)",
            dir.display()
        );
    }
    let store = mamori_store::EmbeddedEventStore::open(mamori_store::EmbeddedConfig::new(&dir))
        .with_context(|| {
            format!(
                "cannot open the event log {} (is its server still running? stop it first)",
                dir.display()
            )
        })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bar = if !quiet && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events {per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = rt.block_on(async {
        let bus = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            mamori_cluster::bus::Bus::connect(&c),
        )
        .await
        .map_err(|_| "NATS did not answer within 30 s".to_owned())??;
        mamori_cluster::import::import(&bus, &c.site, &store, &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await
    });
    bar.finish_and_clear();
    let report = report.map_err(|e| anyhow::anyhow!("import stopped: {e}"))?;
    match report.started_at {
        None => println!(
            "nothing to import: the stream already holds seqs {}..={} of {}",
            report.first,
            report.last,
            from.display()
        ),
        Some(start) => println!(
            "imported {} events (seqs {start}..={}) of {} into the cluster (site {}); the stream holds seqs {}..={}",
            report.published,
            report.last,
            from.display(),
            c.site,
            report.first,
            report.last
        ),
    }
    // The install's tokens, console users and settings become the cluster's (where it has
    // none yet): its senders and analysts keep working on every node.
    let state = mamori_server::state_db_path(from);
    if state.is_file() {
        let local = mamori_store::SqliteAlertStore::open(&state)
            .with_context(|| format!("cannot open {}", state.display()))?;
        let pg = mamori_cluster::PgAlertStore::open(&c.postgres.0, &c.postgres_schema)
            .map_err(|e| anyhow::anyhow!("[cluster] postgres: {e}"))?;
        let (copied, kept) = mamori_server::cluster::import_shared_state(&local, &pg)
            .map_err(|e| anyhow::anyhow!("copying the tokens, users and settings: {e}"))?;
        if !copied.is_empty() {
            println!("copied to the cluster: {}", copied.join(", "));
        }
        if !kept.is_empty() {
            println!(
                "kept the cluster's own (not overwritten): {}",
                kept.join(", ")
            );
        }
    }
    println!(
        "next: run the store node with data_dir = {:?}: it resumes after seq {}",
        from.display().to_string(),
        report.last
    );
    store
        .close()
        .with_context(|| format!("closing {}", dir.display()))?;
    Ok(crate::exit::OK)
}
