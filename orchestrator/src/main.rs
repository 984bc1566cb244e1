//! `qkdn-orchestrator`: runs the multi-domain orchestrator, or checks a configuration file.
//!
//! ```text
//! qkdn-orchestrator [--config FILE] [--listen ADDR] [--management-listen ADDR] [--data-dir DIR]
//!                   [--log-format human|json]
//! qkdn-orchestrator check-config FILE
//! ```
//!
//! The first SIGINT or SIGTERM stops it cleanly; a second one exits at once.

fn main() -> std::process::ExitCode {
    qkdn_kit::binary::main::<qkdn_orchestrator::binary::OrchestratorBinary>()
}
