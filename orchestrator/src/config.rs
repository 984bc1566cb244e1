//! The orchestrator's configuration: its domains (each a controller's ETSI 018 RESTCONF server
//! with the client certificate to reach it), links between domains that no controller
//! reports, and where the orchestrator listens and keeps its state.
//!
//! Sources, later ones winning: a TOML file, `QKDN_*` environment variables (`__` separates
//! nesting levels), and command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use qkdn_kit::tls::{ClientTls, ServerTls};

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// Directory of the durable state.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The REST API (`/api/v1`) and the merged ETSI 018 RESTCONF server.
    #[serde(default)]
    pub api: ApiConfig,
    /// Health and readiness.
    #[serde(default = "default_management")]
    pub management_listen: SocketAddr,
    /// The domains.
    #[serde(default)]
    pub domains: Vec<DomainConfig>,
    /// Physical links between domains that no controller reports.
    #[serde(default)]
    pub inter_domain_links: Vec<InterDomainLink>,
    /// Full re-read of each domain, besides its event stream.
    #[serde(default = "default_resync", with = "humantime_serde")]
    pub resync_interval: Duration,
    /// A domain neither streaming nor answering for this long is down.
    #[serde(default = "default_loss", with = "humantime_serde")]
    pub loss_timeout: Duration,
    /// Lets a plain-HTTP loopback API serve callers without any authentication, as operator
    /// admins: for development on one machine only; announced loudly at start.
    #[serde(default)]
    pub insecure_allow_unauthenticated: bool,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("qkdn-orchestrator-data")
}

fn default_management() -> SocketAddr {
    "127.0.0.1:9460".parse().expect("valid address")
}

fn default_resync() -> Duration {
    Duration::from_secs(30)
}

fn default_loss() -> Duration {
    Duration::from_secs(10)
}

/// The northbound server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listening address (default `127.0.0.1:8460`).
    #[serde(default = "default_api")]
    pub listen: SocketAddr,
    /// TLS; without it plain HTTP, allowed on loopback only.
    #[serde(default)]
    pub tls: Option<ServerTls>,
}

fn default_api() -> SocketAddr {
    "127.0.0.1:8460".parse().expect("valid address")
}

impl ApiConfig {
    /// The listener, for the authentication check.
    pub fn listener(&self) -> qkdn_kit::listener::ListenerSettings<'_> {
        qkdn_kit::listener::ListenerSettings::new("api", self.listen, self.tls.as_ref())
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: default_api(), tls: None }
    }
}

/// One domain: a controller's ETSI 018 server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// The domain's name (unique).
    pub name: String,
    /// Base URL of the controller's RESTCONF server (`https://host:port`).
    pub url: String,
    /// The orchestrator's client certificate for it.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

/// A physical link between nodes of two domains.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterDomainLink {
    /// Its id.
    pub id: Uuid,
    /// One end: domain name and node.
    pub a: (String, Uuid),
    /// The other end.
    pub b: (String, Uuid),
    /// Its effective key rate, bit/s.
    #[serde(default)]
    pub eskr_bps: u64,
}

/// Values given on the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `data_dir`
    pub data_dir: Option<PathBuf>,
    /// `api.listen`
    pub listen: Option<String>,
    /// `management_listen`
    pub management_listen: Option<String>,
}

pub use qkdn_kit::config::{ConfigError, Problem};
use qkdn_kit::config::{KeyPath, Loader, Problems, problems_of_lines};

/// The top-level keys of the configuration (only `QKDN_*` variables naming one count).
pub const TOP_LEVEL_KEYS: [&str; 8] = [
    "insecure_allow_unauthenticated",
    "data_dir",
    "api",
    "management_listen",
    "domains",
    "inter_domain_links",
    "resync_interval",
    "loss_timeout",
];

/// Loads and checks the configuration from `file` (if any), the environment and `overrides`.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<OrchestratorConfig, ConfigError> {
    Loader::new(file, &TOP_LEVEL_KEYS)
        .set("data_dir", overrides.data_dir.as_ref())
        .set("api.listen", overrides.listen.as_ref())
        .set("management_listen", overrides.management_listen.as_ref())
        .load(check)
}

/// Like [`load`], ignoring the environment (for `check-config`, which checks a file alone).
pub fn load_file(file: &Path) -> Result<OrchestratorConfig, ConfigError> {
    Loader::file_only(file, &TOP_LEVEL_KEYS).load(check)
}

fn check(config: &mut OrchestratorConfig) -> Problems {
    let mut problems = problems_of_lines(
        config.api.listener().problem_lines(config.insecure_allow_unauthenticated),
    );
    let mut names = std::collections::BTreeSet::new();
    let domain = |i: usize, key: &str| KeyPath::default().key("domains").index(i).key(key);
    for (i, d) in config.domains.iter().enumerate() {
        if !names.insert(d.name.as_str()) {
            problems.push((domain(i, "name"), format!("{:?} is used by another domain", d.name)));
        }
        if !(d.url.starts_with("http://") || d.url.starts_with("https://")) {
            problems
                .push((domain(i, "url"), format!("{:?} is not an http:// or https:// URL", d.url)));
        }
    }
    for (i, l) in config.inter_domain_links.iter().enumerate() {
        for (end, (name, _)) in [("a", &l.a), ("b", &l.b)] {
            if !names.contains(name.as_str()) {
                problems.push((
                    KeyPath::default().key("inter_domain_links").index(i).key(end),
                    format!("no domain named {name:?}"),
                ));
            }
        }
    }
    problems
}
