//! The agent's configuration: what the node is (identity, interfaces with their QKD devices,
//! physical links), where it listens, where its controller is, and how its simulated devices
//! behave.
//!
//! Sources, later ones winning: a TOML file, `QKDN_*` environment variables (`__` separates
//! nesting levels: `QKDN_NODE__ID`, `QKDN_RESTCONF__LISTEN`), and command-line flags. Loading
//! gives either a configuration that passed every check in [`check`] or the list of problems,
//! each naming the key, the value and what was expected (with the file line when the value came
//! from the file).

mod check;
mod locate;
mod model;

use std::path::{Path, PathBuf};

pub(crate) use check::{peer_listener, restconf_listener};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
pub use model::*;

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

/// One thing wrong with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: `file:line: key` when known, else the key.
    pub place: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// Loads and checks the configuration from `file` (if any), the environment and `overrides`.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<AgentConfig, ConfigError> {
    load_from(file, environment(), overrides)
}

/// The top-level keys of the configuration: only `QKDN_*` variables naming one of them are
/// configuration (`QKDN_CONFIG`, the file's path, and other tools' variables are not).
const TOP_LEVEL_KEYS: [&str; 14] = [
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

fn environment() -> Env {
    Env::prefixed("QKDN_").split("__").filter(|key| {
        let first = key.as_str().split('.').next().unwrap_or_default();
        TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(first))
    })
}

/// Like [`load`], ignoring the environment (for `check-config`, which checks a file alone).
pub fn load_file(file: &Path) -> Result<AgentConfig, ConfigError> {
    load_from(
        Some(file),
        Env::prefixed("QKDN_IGNORED_NOTHING_MATCHES_").split("__"),
        &Overrides::default(),
    )
}

fn load_from(
    file: Option<&Path>,
    env: Env,
    overrides: &Overrides,
) -> Result<AgentConfig, ConfigError> {
    let text = match file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![Problem {
                        place: path.display().to_string(),
                        message: format!("cannot read: {e}"),
                    }],
                });
            }
        },
        None => None,
    };
    let mut figment = Figment::new();
    if let (Some(path), Some(text)) = (file, &text) {
        if let Err(e) = text.parse::<toml_edit::DocumentMut>() {
            let line = e.span().map(|s| locate::line_of_offset(text, s.start)).unwrap_or(0);
            return Err(ConfigError {
                problems: vec![Problem {
                    place: format!("{}:{line}", path.display()),
                    message: format!("not valid TOML: {}", e.message()),
                }],
            });
        }
        figment = figment.merge(Toml::string(text));
    }
    let figment = overrides_merged(figment.merge(env), overrides);
    let mut config: AgentConfig = figment.extract().map_err(|err| ConfigError {
        problems: err
            .into_iter()
            .map(|e| locate::problem_of_figment(e, file, text.as_deref()))
            .collect(),
    })?;
    let mut problems = Vec::new();
    if let Some(secret_file) = &config.simulator.network_secret_file {
        let at = locate::KeyPath::default().key("simulator").key("network_secret_file");
        match std::fs::read_to_string(secret_file) {
            Ok(_) if config.simulator.network_secret.is_some() => {
                problems.push((at, "set network_secret or network_secret_file, not both".into()))
            }
            Ok(secret) => config.simulator.network_secret = Some(secret.trim().to_owned()),
            Err(e) => problems.push((at, format!("{}: {e}", secret_file.display()))),
        }
    }
    problems.extend(check::check(&config));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError {
            problems: problems
                .into_iter()
                .map(|(key, message)| Problem {
                    place: locate::place(file, text.as_deref(), &key),
                    message,
                })
                .collect(),
        })
    }
}

/// Merges the command-line overrides key by key (figment nests dotted names).
fn overrides_merged(mut figment: Figment, overrides: &Overrides) -> Figment {
    if let Some(v) = &overrides.node_id {
        figment = figment.merge(Serialized::default("node.id", v));
    }
    if let Some(v) = &overrides.data_dir {
        figment = figment.merge(Serialized::default("data_dir", v));
    }
    if let Some(v) = &overrides.restconf_listen {
        figment = figment.merge(Serialized::default("restconf.listen", v));
    }
    if let Some(v) = &overrides.management_listen {
        figment = figment.merge(Serialized::default("management.listen", v));
    }
    if let Some(v) = &overrides.controller_urls {
        figment = figment.merge(Serialized::default("controller.urls", v));
    }
    figment
}

#[cfg(test)]
mod tests;
