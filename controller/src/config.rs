//! The controller's configuration: where it listens, where it keeps its state, how it talks to
//! agents (TLS, timeouts, agents given statically), and the thresholds that decide when a link
//! is unusable.
//!
//! Sources, later ones winning: a TOML file, `QKDN_*` environment variables (`__` separates
//! nesting levels: `QKDN_API__LISTEN`), and command-line flags. A problem names the key and,
//! when the value came from the file, the file and line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Directory of the durable state (`controller.redb`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The REST API (`/api/v1`) and the ETSI 018 RESTCONF server (`/restconf`).
    #[serde(default)]
    pub api: ApiConfig,
    /// Health, readiness and metrics.
    #[serde(default)]
    pub management: ManagementConfig,
    /// Sessions with agents.
    #[serde(default)]
    pub agents: AgentsConfig,
    /// Agents that do not register (any ETSI 015 RESTCONF server).
    #[serde(default)]
    pub static_agents: Vec<StaticAgent>,
    /// When links stop being used.
    #[serde(default)]
    pub links: LinkPolicy,
    /// Lets a plain-HTTP loopback API without tokens serve callers without any authentication,
    /// as operator admins: for development on one machine only; announced loudly at start.
    #[serde(default)]
    pub insecure_allow_unauthenticated: bool,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("qkdn-controller-data")
}

/// The northbound server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listening address (default `127.0.0.1:8450`).
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// TLS; without it plain HTTP, allowed on loopback only.
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// Bearer tokens accepted besides client certificates, each standing for an operator
    /// (`{ name, role = "admin" | "viewer", sha256 = "<SHA-256 of the token, hex>" }`).
    #[serde(default)]
    pub tokens: Vec<qkdn_kit::authz::TokenConfig>,
}

impl ApiConfig {
    /// The listener, for the authentication check.
    pub fn listener(&self) -> qkdn_kit::listener::ListenerSettings<'_> {
        qkdn_kit::listener::ListenerSettings {
            other_authentication: !self.tokens.is_empty(),
            ..qkdn_kit::listener::ListenerSettings::new("api", self.listen, self.tls.as_ref())
        }
    }
}

fn default_api_listen() -> SocketAddr {
    "127.0.0.1:8450".parse().expect("valid address")
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: default_api_listen(), tls: None, tokens: Vec::new() }
    }
}

/// The management endpoints.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementConfig {
    /// Listening address (default `127.0.0.1:9450`), plain HTTP.
    #[serde(default = "default_management_listen")]
    pub listen: SocketAddr,
}

fn default_management_listen() -> SocketAddr {
    "127.0.0.1:9450".parse().expect("valid address")
}

impl Default for ManagementConfig {
    fn default() -> Self {
        ManagementConfig { listen: default_management_listen() }
    }
}

pub use qkdn_kit::tls::{ClientTls, ServerTls};

/// How the controller keeps in touch with agents.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// TLS for `https` agent URLs (the controller's client certificate).
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Full re-read of each agent's `qkd_node`, besides the event stream.
    #[serde(default = "default_resync", with = "humantime_serde")]
    pub resync_interval: Duration,
    /// An agent neither streaming nor answering for this long is lost.
    #[serde(default = "default_loss_timeout", with = "humantime_serde")]
    pub loss_timeout: Duration,
    /// Time a RESTCONF request to an agent may take.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often the KMS figures of agents that gave a management URL are read.
    #[serde(default = "default_kms_poll", with = "humantime_serde")]
    pub kms_poll_interval: Duration,
}

fn default_kms_poll() -> Duration {
    Duration::from_secs(5)
}

fn default_resync() -> Duration {
    Duration::from_secs(30)
}

fn default_loss_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            tls: None,
            resync_interval: default_resync(),
            loss_timeout: default_loss_timeout(),
            request_timeout: default_request_timeout(),
            kms_poll_interval: default_kms_poll(),
        }
    }
}

/// An agent known from the configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAgent {
    /// Base URL of its RESTCONF server (`https://host:port`).
    pub restconf_url: String,
    /// Its `qkdn_id`, when known in advance (checked against what it serves).
    #[serde(default)]
    pub node_id: Option<Uuid>,
    /// Name of its event stream (`NETCONF` for qkdn agents); none: no stream, polling only.
    #[serde(default = "default_stream")]
    pub stream: Option<String>,
}

fn default_stream() -> Option<String> {
    Some("NETCONF".into())
}

/// When a physical link is not used for new paths and its paths are moved.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkPolicy {
    /// QBER above which a link counts as failed (fraction, default 0.11).
    #[serde(default = "default_qber")]
    pub qber_threshold: f64,
}

fn default_qber() -> f64 {
    0.11
}

impl Default for LinkPolicy {
    fn default() -> Self {
        LinkPolicy { qber_threshold: default_qber() }
    }
}

/// Values given on the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `data_dir`
    pub data_dir: Option<PathBuf>,
    /// `api.listen`
    pub listen: Option<String>,
    /// `management.listen`
    pub management_listen: Option<String>,
}

pub use qkdn_kit::config::{ConfigError, Problem};
use qkdn_kit::config::{KeyPath, Loader, Problems, problems_of_lines};

/// The top-level keys of the configuration (only `QKDN_*` variables naming one count).
pub const TOP_LEVEL_KEYS: [&str; 7] = [
    "data_dir",
    "api",
    "management",
    "agents",
    "static_agents",
    "links",
    "insecure_allow_unauthenticated",
];

/// Loads and checks the configuration from `file` (if any), the environment and `overrides`.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<ControllerConfig, ConfigError> {
    Loader::new(file, &TOP_LEVEL_KEYS)
        .set("data_dir", overrides.data_dir.as_ref())
        .set("api.listen", overrides.listen.as_ref())
        .set("management.listen", overrides.management_listen.as_ref())
        .load(check)
}

/// Like [`load`], ignoring the environment (for `check-config`, which checks a file alone).
pub fn load_file(file: &Path) -> Result<ControllerConfig, ConfigError> {
    Loader::file_only(file, &TOP_LEVEL_KEYS).load(check)
}

fn check(config: &mut ControllerConfig) -> Problems {
    let mut problems = problems_of_lines(
        config.api.listener().problem_lines(config.insecure_allow_unauthenticated),
    );
    if let Err(token_problems) = qkdn_kit::authz::Tokens::from_config(&config.api.tokens) {
        problems.extend(problems_of_lines(token_problems.into_iter().map(|p| format!("api.{p}"))));
    }
    if !(0.0..=1.0).contains(&config.links.qber_threshold) {
        problems.push((
            KeyPath::parse("links.qber_threshold"),
            format!("{} is not a fraction between 0 and 1", config.links.qber_threshold),
        ));
    }
    for (i, a) in config.static_agents.iter().enumerate() {
        if !(a.restconf_url.starts_with("http://") || a.restconf_url.starts_with("https://")) {
            problems.push((
                KeyPath::default().key("static_agents").index(i).key("restconf_url"),
                format!("{:?} is not an http:// or https:// URL", a.restconf_url),
            ));
        }
    }
    problems
}
