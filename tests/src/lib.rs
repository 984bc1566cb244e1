//! Integration tests of qkdn over real processes: the harness that starts agents with
//! simulated devices and their KMSs, a controller, and third-party RESTCONF servers, with a
//! test PKI, and the clients the tests talk to them with (REST, RESTCONF, ETSI 014 SAEs).
//!
//! The tests themselves are in `tests/tests/`. The service binaries are the ones `cargo test
//! --workspace` builds beside the test executables (`target/<profile>/qkdn-agent`, ...).

pub mod fixtures;
pub mod network;
pub mod pki;
pub mod process;
pub mod sae;
