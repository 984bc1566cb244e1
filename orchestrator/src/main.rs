//! `qkdn-orchestrator`: the qkdn multi-domain orchestrator (ETSI GS QKD 018).
//!
//! The binary's name and crate are part of the workspace layout fixed by the foundation; the
//! service itself is built by issue 6. Until then this program says so and exits with
//! status 2, rather than pretending to run.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "qkdn-orchestrator",
    version,
    about = "The qkdn multi-domain orchestrator (ETSI GS QKD 018)"
)]
struct Args {}

fn main() -> ExitCode {
    Args::parse();
    eprintln!(
        "qkdn-orchestrator: this build contains the YANG and RESTCONF foundation only; the orchestrator itself \
         is not part of it yet (issue 6)"
    );
    ExitCode::from(2)
}
