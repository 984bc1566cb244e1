//! `qkdn-orchestrator`: runs the multi-domain orchestrator.
//!
//! ```text
//! qkdn-orchestrator check-config FILE
//! qkdn-orchestrator [--config FILE] [--listen ADDR] [--management-listen ADDR] [--data-dir DIR]
//!                   [--log-format human|json]
//! ```
//!
//! The first SIGINT or SIGTERM stops it cleanly; a second one exits at once.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qkdn_orchestrator::Orchestrator;
use qkdn_orchestrator::config::{self, Overrides};
use qkdn_yang::service::LogFormat;

#[derive(Parser)]
#[command(
    name = "qkdn-orchestrator",
    version,
    about = "The qkdn multi-domain orchestrator (ETSI GS QKD 018)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML).
    #[arg(long, short, env = "QKDN_CONFIG")]
    config: Option<PathBuf>,
    /// API listening address (overrides api.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Management listening address (overrides management_listen).
    #[arg(long)]
    management_listen: Option<String>,
    /// Data directory (overrides data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
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
        let checked =
            config::load(Some(file), &Overrides::default()).map(|_| ()).map_err(|e| e.problems);
        return qkdn_yang::service::report_check(file, checked);
    }
    qkdn_yang::service::init_logging(cli.log_format);
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        listen: cli.listen.clone(),
        management_listen: cli.management_listen.clone(),
    };
    let config = match config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            for p in &e.problems {
                eprintln!("qkdn-orchestrator: {p}");
            }
            return ExitCode::from(2);
        }
    };
    qkdn_yang::service::run(
        "qkdn-orchestrator",
        Orchestrator::start(config),
        Orchestrator::shutdown,
    )
}
