//! `qkdn-agent`: the qkdn node agent (ETSI GS QKD 015 over RESTCONF, QKD device drivers, embedded KMS).
//!
//! The binary's name and crate are part of the workspace layout fixed by the foundation; the
//! service itself is built by issue 3. Until then this program says so and exits with
//! status 2, rather than pretending to run.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "qkdn-agent",
    version,
    about = "The qkdn node agent (ETSI GS QKD 015 over RESTCONF, QKD device drivers, embedded KMS)"
)]
struct Args {}

fn main() -> ExitCode {
    Args::parse();
    eprintln!(
        "qkdn-agent: this build contains the YANG and RESTCONF foundation only; the agent itself \
         is not part of it yet (issue 3)"
    );
    ExitCode::from(2)
}
