//! `mamori user`: console users of a server (Argon2id password hashes in its state database).

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use clap::Subcommand;
use mamori_server::console::users::{self, Role};

use crate::exit;
use crate::serve::DataDirArgs;

#[derive(Subcommand, Debug)]
pub(crate) enum UserCmd {
    /// Add a console user. The password is asked on the terminal (twice), or read from the
    /// first line of standard input with --password-stdin.
    Add {
        /// The user's sign-in name: 1-64 letters, digits, `.`, `_` or `-`.
        name: String,
        /// admin (everything, including users), analyst (works alerts and incidents) or
        /// viewer (reads only).
        #[arg(long, value_parser = ["admin", "analyst", "viewer"])]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// List users with their role and state.
    List {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Disable a user: their sessions stop working at their next request.
    Disable {
        name: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Enable a disabled user (also lifts a lockout).
    Enable {
        name: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Set a user's password (also lifts a lockout).
    Passwd {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let p = line.trim_end_matches(['\r', '\n']).to_owned();
        if p.is_empty() {
            bail!("no password on standard input");
        }
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("standard input is not a terminal: use --password-stdin to pipe a password");
    }
    let p = rpassword::prompt_password("Password: ").context("cannot read the password")?;
    let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
    if p != again {
        bail!("the passwords differ");
    }
    Ok(p)
}

pub(crate) fn run(cmd: UserCmd) -> anyhow::Result<i32> {
    match cmd {
        UserCmd::Add {
            name,
            role,
            password_stdin,
            dir,
        } => {
            let role = Role::parse(&role).context("unknown role")?;
            let store = crate::serve::open_node_state(&dir)?;
            let store = &*store;
            let p = read_password(password_stdin)?;
            users::add(store, &name, role, &p).map_err(anyhow::Error::msg)?;
            eprintln!("Added user `{name}` ({}).", role.as_str());
        }
        UserCmd::List { dir } => {
            let store = crate::serve::open_node_state(&dir)?;
            let store = &*store;
            for u in users::read(store).map_err(anyhow::Error::msg)? {
                let l = users::lockout(store, &u.name);
                let state = if u.disabled {
                    "disabled".to_owned()
                } else if let Some(t) = l.locked_until.filter(|t| *t > chrono::Utc::now()) {
                    format!("locked until {}", t.to_rfc3339())
                } else {
                    "enabled".to_owned()
                };
                println!(
                    "{}\t{}\t{}\t{}",
                    u.name,
                    u.role.as_str(),
                    state,
                    u.created_at.to_rfc3339()
                );
            }
        }
        UserCmd::Disable { name, dir } => {
            let store = crate::serve::open_node_state(&dir)?;
            let store = &*store;
            if !users::set_disabled(store, &name, true).map_err(anyhow::Error::msg)? {
                eprintln!("error: no user `{name}`");
                return Ok(exit::USAGE);
            }
            eprintln!("Disabled user `{name}`.");
        }
        UserCmd::Enable { name, dir } => {
            let store = crate::serve::open_node_state(&dir)?;
            let store = &*store;
            if !users::set_disabled(store, &name, false).map_err(anyhow::Error::msg)? {
                eprintln!("error: no user `{name}`");
                return Ok(exit::USAGE);
            }
            eprintln!("Enabled user `{name}`.");
        }
        UserCmd::Passwd {
            name,
            password_stdin,
            dir,
        } => {
            let store = crate::serve::open_node_state(&dir)?;
            let store = &*store;
            if users::find(store, &name)
                .map_err(anyhow::Error::msg)?
                .is_none()
            {
                eprintln!("error: no user `{name}`");
                return Ok(exit::USAGE);
            }
            let p = read_password(password_stdin)?;
            users::set_password(store, &name, &p).map_err(anyhow::Error::msg)?;
            eprintln!("Password of `{name}` changed.");
        }
    }
    Ok(exit::OK)
}
