//! `qkdn-controller`: runs the SDN controller.
//!
//! ```text
//! qkdn-controller check-config FILE
//! qkdn-controller [--config FILE] [--listen ADDR] [--management-listen ADDR] [--data-dir DIR]
//!                 [--log-format human|json]
//! ```
//!
//! The first SIGINT or SIGTERM stops the controller cleanly; a second one exits at once.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use qkdn_controller::Controller;
use qkdn_controller::config::{self, Overrides};

#[derive(Parser)]
#[command(
    name = "qkdn-controller",
    version,
    about = "The qkdn SDN controller (topology, key-relay routing, applications, ETSI GS QKD 018 northbound)"
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
    /// Management listening address (overrides management.listen).
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

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match config::load(Some(file), &Overrides::default()) {
            Ok(_) => {
                println!("{}: valid", file.display());
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
    qkdn_yang::service::init_logging(matches!(cli.log_format, LogFormat::Json));
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        listen: cli.listen.clone(),
        management_listen: cli.management_listen.clone(),
    };
    let config = match config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            for p in &e.problems {
                eprintln!("qkdn-controller: {p}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("qkdn-controller: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let controller = match Controller::start(config).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("qkdn-controller: {e}");
                return ExitCode::from(2);
            }
        };
        qkdn_yang::service::wait_for_signal().await;
        tracing::info!("stopping (a second signal exits at once)");
        tokio::spawn(async {
            qkdn_yang::service::wait_for_signal().await;
            eprintln!("qkdn-controller: second signal, exiting now");
            std::process::exit(130);
        });
        controller.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}
