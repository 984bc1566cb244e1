//! The `main` of every qkdn service binary: one command line (`--config`, `--listen`,
//! `--management-listen`, `--data-dir`, `--log-format`, the `check-config FILE` subcommand,
//! and the service's own flags), one way to load and report its configuration, and one run
//! loop ([`crate::process::run`]).
//!
//! A service describes itself with [`ServiceBinary`]; its `main.rs` is then one call of
//! [`main`]. Exit statuses: 0 after a clean stop or a valid check, 1 for a check that found
//! problems, 2 when the configuration or the start failed, 130 on a second stop signal.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::ConfigError;
use crate::process::{self, LogFormat};

/// The flags every service takes.
#[derive(Args, Debug, Clone, Default)]
pub struct CommonFlags {
    /// Configuration file (TOML).
    #[arg(long, short, env = "QKDN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listening address of the service's API (overrides its `listen` key).
    #[arg(long)]
    pub listen: Option<String>,
    /// Management listening address: /healthz, /readyz, /metrics (overrides its key).
    #[arg(long)]
    pub management_listen: Option<String>,
    /// Data directory (overrides data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// No flags of its own.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct NoFlags {}

/// A service binary: its name, its own flags, how it loads its configuration, starts and stops.
pub trait ServiceBinary {
    /// The program's name (prefixes its messages).
    const NAME: &'static str;
    /// One line about it, for `--help`.
    const ABOUT: &'static str;
    /// Its own flags, beside the [`CommonFlags`].
    type Flags: Args;
    /// Its configuration.
    type Config;
    /// The running service.
    type Running;
    /// Why it could not start.
    type StartError: std::fmt::Display;

    /// Loads and checks the configuration from the flags' file, the environment and the flags.
    fn load(common: &CommonFlags, flags: &Self::Flags) -> Result<Self::Config, ConfigError>;
    /// Loads and checks `file` alone (no environment, no flags), for `check-config`.
    fn load_file(file: &Path) -> Result<Self::Config, ConfigError>;
    /// What `check-config` says of a valid configuration, after the file's name.
    fn summary(_config: &Self::Config) -> String {
        "valid".to_owned()
    }
    /// Starts the service.
    fn start(config: Self::Config)
    -> impl Future<Output = Result<Self::Running, Self::StartError>>;
    /// Stops it cleanly.
    fn stop(running: Self::Running) -> impl Future<Output = ()>;
}

#[derive(Parser)]
struct Cli<F: Args> {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonFlags,
    #[command(flatten)]
    flags: F,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration file and explain every problem.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
}

/// The whole of a service binary's `main`.
pub fn main<S: ServiceBinary>() -> ExitCode {
    let command = Cli::<S::Flags>::command()
        .name(S::NAME)
        .bin_name(S::NAME)
        .about(S::ABOUT)
        .version(env!("CARGO_PKG_VERSION"));
    let cli = match Cli::<S::Flags>::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check::<S>(file);
    }
    process::init_logging(cli.common.log_format);
    let config = match S::load(&cli.common, &cli.flags) {
        Ok(c) => c,
        Err(e) => {
            for p in &e.problems {
                eprintln!("{}: {p}", S::NAME);
            }
            return ExitCode::from(2);
        }
    };
    process::run(S::NAME, S::start(config), S::stop)
}

/// `check-config FILE`: "valid" and 0, or every problem, their count and 1.
fn check<S: ServiceBinary>(file: &Path) -> ExitCode {
    match S::load_file(file) {
        Ok(config) => {
            println!("{}: {}", file.display(), S::summary(&config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            for p in &e.problems {
                eprintln!("{p}");
            }
            eprintln!("{}: {} problem(s)", file.display(), e.problems.len());
            ExitCode::from(1)
        }
    }
}
