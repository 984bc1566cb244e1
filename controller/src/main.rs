//! `qkdn-controller`: runs the SDN controller, or checks a configuration file.
//!
//! ```text
//! qkdn-controller [--config FILE] [--listen ADDR] [--management-listen ADDR] [--data-dir DIR]
//!                 [--log-format human|json]
//! qkdn-controller check-config FILE
//! ```
//!
//! The first SIGINT or SIGTERM stops the controller cleanly; a second one exits at once.

fn main() -> std::process::ExitCode {
    qkdn_kit::binary::main::<qkdn_controller::binary::ControllerBinary>()
}
