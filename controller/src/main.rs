//! `qkdn-controller`: the qkdn SDN controller (topology, key-relay routing, applications, ETSI GS QKD 018 northbound).
//!
//! The binary's name and crate are part of the workspace layout fixed by the foundation; the
//! service itself is built by issue 5. Until then this program says so and exits with
//! status 2, rather than pretending to run.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "qkdn-controller",
    version,
    about = "The qkdn SDN controller (topology, key-relay routing, applications, ETSI GS QKD 018 northbound)"
)]
struct Args {}

fn main() -> ExitCode {
    Args::parse();
    eprintln!(
        "qkdn-controller: this build contains the YANG and RESTCONF foundation only; the controller itself \
         is not part of it yet (issue 5)"
    );
    ExitCode::from(2)
}
