//! The agent's configuration: what the node is (identity, interfaces with their QKD devices,
//! physical links), where it listens, where its controller is, and how its simulated devices
//! behave.
//!
//! Sources, later ones winning: a TOML file, `QKDN_*` environment variables (`__` separates
//! nesting levels: `QKDN_NODE__ID`, `QKDN_RESTCONF__LISTEN`), and command-line flags. Loading
//! gives either a configuration that passed every check in `check` or the list of problems,
//! each naming the key, the value and what was expected (with the file line when the value came
//! from the file).

mod check;
mod model;

use std::path::{Path, PathBuf};

pub(crate) use check::{peer_listener, restconf_listener};
pub use model::*;
pub use qkdn_kit::config::{ConfigError, Problem};
use qkdn_kit::config::{KeyPath, Loader, Problems};

/// Values given on the command line, which override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `node.id`
    pub node_id: Option<String>,
    /// `data_dir`
    pub data_dir: Option<PathBuf>,
    /// `restconf.listen`
    pub restconf_listen: Option<String>,
    /// `management.listen`
    pub management_listen: Option<String>,
    /// `controller.urls`
    pub controller_urls: Option<Vec<String>>,
}

/// The top-level keys of the configuration: only `QKDN_*` variables naming one of them are
/// configuration (`QKDN_CONFIG`, the file's path, and other tools' variables are not).
pub const TOP_LEVEL_KEYS: [&str; 14] = [
    "insecure_allow_unauthenticated",
    "node",
    "data_dir",
    "startup_data",
    "restconf",
    "management",
    "controller",
    "peer",
    "neighbours",
    "notifications",
    "simulator",
    "interfaces",
    "links",
    "kms",
];

/// Loads and checks the configuration from `file` (if any), the environment and `overrides`.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<AgentConfig, ConfigError> {
    Loader::new(file, &TOP_LEVEL_KEYS)
        .set("node.id", overrides.node_id.as_ref())
        .set("data_dir", overrides.data_dir.as_ref())
        .set("restconf.listen", overrides.restconf_listen.as_ref())
        .set("management.listen", overrides.management_listen.as_ref())
        .set("controller.urls", overrides.controller_urls.as_ref())
        .load(completed_and_checked)
}

/// Like [`load`], ignoring the environment (for `check-config`, which checks a file alone).
pub fn load_file(file: &Path) -> Result<AgentConfig, ConfigError> {
    Loader::file_only(file, &TOP_LEVEL_KEYS).load(completed_and_checked)
}

/// Reads the files the configuration names, then checks it.
fn completed_and_checked(config: &mut AgentConfig) -> Problems {
    let mut problems = Vec::new();
    if let Some(secret_file) = &config.simulator.network_secret_file {
        let at = KeyPath::default().key("simulator").key("network_secret_file");
        match std::fs::read_to_string(secret_file) {
            Ok(_) if config.simulator.network_secret.is_some() => {
                problems.push((at, "set network_secret or network_secret_file, not both".into()))
            }
            Ok(secret) => config.simulator.network_secret = Some(secret.trim().to_owned()),
            Err(e) => problems.push((at, format!("{}: {e}", secret_file.display()))),
        }
    }
    problems.extend(check::check(config));
    problems
}

#[cfg(test)]
mod tests;
