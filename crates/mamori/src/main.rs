//! `mamori`: the command-line entry point. Glue only: argument parsing, wiring of the library
//! crates, terminal output and exit codes.

mod agent_cli;
mod analytics;
mod backup_cli;
mod bench;
mod bench_agent;
mod bench_console;
mod bench_corr;
mod bench_ingest;
mod bench_report;
mod bench_vault;
mod cluster_cli;
mod cmd_user;
mod episodes;
mod hunt;
mod incident_cli;
mod malloc_arenas;
mod report_cli;
mod rules;
mod scan_cli;
mod serve;
mod simulate;
mod term;
mod timeline;
mod vault_cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes scripts can rely on.
pub(crate) mod exit {
    /// Ran fine (and, with `--fail-on-detection`, found nothing).
    pub(crate) const OK: i32 = 0;
    /// Detections found with `--fail-on-detection`; tampering found by a verify command.
    pub(crate) const FOUND: i32 = 1;
    /// Usage or configuration error: bad arguments, unreadable rules directory, …
    pub(crate) const USAGE: i32 = 2;
}

#[derive(Parser, Debug)]
#[command(
    name = "mamori",
    version,
    about = "Mamori (守り): security monitoring and incident response in one binary.",
    long_about = "Mamori (守り): security monitoring and incident response in one binary.\n\n\
Mamori reads Windows EVTX, JSON (Winlogbeat/NXLog/CloudTrail), syslog (RFC 3164/5424, Linux auth.log),\n\
web access logs (Apache/nginx/IIS) and auditd, matches them against Sigma rules (incl. correlations),\n\
and writes a forensic timeline.\n\n\
Examples:\n    \
mamori hunt /var/log --rules ./rules                 Hunt a folder of logs\n    \
mamori serve --rules ./rules                          Run the server (syslog 5514, API 8080)\n    \
mamori report monthly --month 2026-11 --lang ja -o audit.pdf   Monthly security audit\n    \
mamori token create ops                               Create an API token\n    \
mamori scan https://mail.example.co.jp/ --lang ja      Safe external diagnosis of your own site\n    \
mamori user add aki --role analyst                    Add a web console user (console at http://HOST:8080/)\n    \
mamori hunt logs/ --rules rules/ -o out.jsonl --format jsonl\n    \
mamori rules check ./rules                            Compile rules, list failures\n    \
mamori bench rules --rules sigma/rules              Matching throughput\n\n\
Exit codes: 0 ok, 1 detections with --fail-on-detection or tampering found, 2 usage/config error.",
    after_help = "Run 'mamori <COMMAND> --help' for the options of a command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hunt through log files with Sigma rules and write a forensic timeline.
    Hunt(hunt::HuntArgs),
    /// Work with rule sets.
    #[command(subcommand)]
    Rules(rules::RulesCmd),
    /// Measure throughput of the hot paths on real data.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Create a data directory with an evidence vault and its signing key.
    Init(vault_cli::InitArgs),
    /// Seal, inspect and verify the evidence vault.
    #[command(subcommand)]
    Vault(vault_cli::VaultCmd),
    /// Export and verify evidence bundles.
    #[command(subcommand)]
    Evidence(vault_cli::EvidenceCmd),
    /// Write realistic logs of an incident with its ground truth.
    Simulate(simulate::SimulateArgs),
    /// Run the server: receive syslog and HTTP events, store, detect, alert, search.
    Serve(serve::ServeArgs),
    /// Work incidents through the NIST SP 800-61 phases.
    #[command(subcommand)]
    Incident(incident_cli::IncidentCmd),
    /// Create, list and revoke API tokens of a server.
    #[command(subcommand)]
    Token(serve::TokenCmd),
    /// Write an incident report or the monthly security audit (PDF or HTML, ja/en).
    #[command(subcommand)]
    Report(report_cli::ReportCmd),
    /// Check backups: restic/Borg repositories, backup directories, restore tests, 3-2-1.
    #[command(subcommand)]
    Backup(backup_cli::BackupCmd),
    /// Add, list, disable and change the passwords of web console users.
    #[command(subcommand)]
    User(cmd_user::UserCmd),
    /// Safe external diagnosis of your own web services and VPN (TLS, headers, exposed files, KEV).
    Scan(scan_cli::ScanArgs),
    /// Host agent: enrolment tokens and agent list (server), enrol and run (host).
    #[command(subcommand)]
    Agent(agent_cli::AgentCmd),
    /// Scale-out (preview): the state of a `[cluster]` — nodes, streams, consumer lag.
    #[command(subcommand)]
    Cluster(cluster_cli::ClusterCmd),
}

fn main() -> ExitCode {
    term::install_pipe_guard();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    if matches!(
        cli.command,
        Command::Serve(_) | Command::Bench(bench::BenchCmd::Ingest(_))
    ) {
        malloc_arenas::limit();
        malloc_arenas::trim_periodically();
    }
    let result = match cli.command {
        Command::Hunt(a) => hunt::run(a),
        Command::Rules(c) => rules::run(c),
        Command::Bench(c) => bench::run(c),
        Command::Init(a) => vault_cli::run_init(a),
        Command::Vault(c) => vault_cli::run_vault(c),
        Command::Evidence(c) => vault_cli::run_evidence(c),
        Command::Simulate(a) => simulate::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Token(c) => serve::run_token(c),
        Command::Incident(c) => incident_cli::run(c),
        Command::Report(c) => report_cli::run(c),
        Command::Backup(c) => backup_cli::run(c),
        Command::User(c) => cmd_user::run(c),
        Command::Scan(a) => scan_cli::run(a),
        Command::Agent(c) => agent_cli::run(c),
        Command::Cluster(c) => cluster_cli::run(c),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        // `mamori … | head`: the reader left; nothing went wrong.
        Err(e) if term::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::USAGE as u8)
        }
    }
}
