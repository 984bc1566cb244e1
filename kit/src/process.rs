//! What every qkdn service binary does around its library: logging set up the same way (human
//! or JSON lines on stderr, filtered by `RUST_LOG`, default `info`) and waiting for SIGINT or
//! SIGTERM to stop (listened to before the service starts, so none is lost).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// How a service writes its log (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Sets up logging on stderr in `format`.
pub fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only for a person at a terminal, not in files, journals or container logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(ansi);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The signals that stop a process: SIGINT and SIGTERM, and SIGHUP where asked for. Listened
/// to from creation on, so one that arrives before anyone awaits [`StopSignals::received`] (while
/// a service starts, say) is kept rather than lost.
#[derive(Debug)]
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Option<Signal>,
}

impl StopSignals {
    /// Starts listening (inside a tokio runtime); `hangup`: SIGHUP stops too.
    pub fn listen(hangup: bool) -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: if hangup { Some(signal(SignalKind::hangup())?) } else { None },
        })
    }

    /// Returns when one of the signals has arrived (at once if one arrived already).
    pub async fn received(&mut self) {
        let hangup = async {
            match self.hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = hangup => {}
        }
    }
}

/// Runs a service on a new multi-threaded runtime: `start` it, wait for SIGINT or SIGTERM,
/// then `stop` it (a second signal exits at once with status 130). Start failures are printed
/// prefixed with `name` and give status 2.
pub fn run<S, E, Start, Stop, Stopped>(
    name: &str,
    start: Start,
    stop: Stop,
) -> std::process::ExitCode
where
    E: std::fmt::Display,
    Start: std::future::Future<Output = Result<S, E>>,
    Stop: FnOnce(S) -> Stopped,
    Stopped: std::future::Future<Output = ()>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let name = name.to_owned();
    runtime.block_on(async move {
        let mut signals = match StopSignals::listen(false) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{name}: cannot listen for signals: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        let service = match start.await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{name}: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        signals.received().await;
        tracing::info!("stopping (a second signal exits at once)");
        tokio::spawn(async move {
            signals.received().await;
            eprintln!("{name}: second signal, exiting now");
            std::process::exit(130);
        });
        stop(service).await;
        tracing::info!("stopped");
        std::process::ExitCode::SUCCESS
    })
}
