//! `qkdn-agent`: runs the node agent, or checks a configuration file.
//!
//! ```text
//! qkdn-agent [--config FILE] [--node-id UUID] [--listen ADDR] [--management-listen ADDR]
//!            [--data-dir DIR] [--controller URL]... [--log-format human|json]
//! qkdn-agent check-config FILE
//! ```
//!
//! The first SIGINT or SIGTERM stops the agent cleanly; a second one exits at once.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qkdn_agent::config::{self, Overrides};
use qkdn_agent::{Agent, AgentOptions};
use qkdn_yang::service::LogFormat;

/// mimalloc rather than the C library's allocator: the KMS holds millions of small key buffers
/// and allocates per request; with glibc's malloc a third of the `enc_keys` CPU time went to
/// the allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "qkdn-agent", version, about = "The qkdn node agent")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML).
    #[arg(long, short, env = "QKDN_CONFIG")]
    config: Option<PathBuf>,
    /// Node id (overrides node.id).
    #[arg(long)]
    node_id: Option<String>,
    /// RESTCONF listening address (overrides restconf.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Management listening address (overrides management.listen).
    #[arg(long)]
    management_listen: Option<String>,
    /// Data directory (overrides data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Controller URL (overrides controller.urls; repeatable).
    #[arg(long = "controller")]
    controllers: Vec<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration file and explain every problem.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match config::load_file(file) {
            Ok(c) => {
                println!(
                    "{}: valid (node {}, {} interfaces, {} links)",
                    file.display(),
                    c.node.id,
                    c.interfaces.len(),
                    c.links.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                for p in &e.problems {
                    eprintln!("{p}");
                }
                eprintln!("{}: {} problem(s)", file.display(), e.problems.len());
                ExitCode::from(1)
            }
        };
    }
    qkdn_yang::service::init_logging(cli.log_format);
    let overrides = Overrides {
        node_id: cli.node_id.clone(),
        data_dir: cli.data_dir.clone(),
        restconf_listen: cli.listen.clone(),
        management_listen: cli.management_listen.clone(),
        controller_urls: (!cli.controllers.is_empty()).then(|| cli.controllers.clone()),
    };
    let config = match config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            for p in &e.problems {
                eprintln!("qkdn-agent: {p}");
            }
            return ExitCode::from(2);
        }
    };
    qkdn_yang::service::run(
        "qkdn-agent",
        Agent::start(config, AgentOptions::default()),
        qkdn_agent::AgentHandle::shutdown,
    )
}
