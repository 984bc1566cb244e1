//! `qkdn-agent`: runs the node agent, or checks a configuration file.
//!
//! ```text
//! qkdn-agent [--config FILE] [--node-id UUID] [--listen ADDR] [--management-listen ADDR]
//!            [--data-dir DIR] [--controller URL]... [--log-format human|json]
//! qkdn-agent check-config FILE
//! ```
//!
//! The first SIGINT or SIGTERM stops the agent cleanly; a second one exits at once.

/// mimalloc rather than the C library's allocator: the KMS holds millions of small key buffers
/// and allocates per request; with glibc's malloc a third of the `enc_keys` CPU time went to
/// the allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    qkdn_kit::binary::main::<qkdn_agent::binary::AgentBinary>()
}
