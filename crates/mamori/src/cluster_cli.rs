//! `mamori cluster status`: nodes, streams, consumer lag and alerts of a `[cluster]`.

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
    }
}
