//! The `qkdn-agent` program as the service kit runs it: its own flags (`--node-id`,
//! `--controller`), where the common ones go in its configuration, and what `check-config`
//! says of a valid file.

use std::path::Path;

use qkdn_kit::binary::{CommonFlags, ServiceBinary};
use qkdn_kit::config::ConfigError;

use crate::config::{self, AgentConfig, Overrides};
use crate::{Agent, AgentError, AgentHandle, AgentOptions};

/// The agent's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AgentFlags {
    /// Node id (overrides node.id).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Controller URL (overrides controller.urls; repeatable).
    #[arg(long = "controller")]
    pub controllers: Vec<String>,
}

/// The `qkdn-agent` binary.
pub struct AgentBinary;

impl ServiceBinary for AgentBinary {
    const NAME: &'static str = "qkdn-agent";
    const ABOUT: &'static str = "The qkdn node agent";
    type Flags = AgentFlags;
    type Config = AgentConfig;
    type Running = AgentHandle;
    type StartError = AgentError;

    fn load(common: &CommonFlags, flags: &AgentFlags) -> Result<AgentConfig, ConfigError> {
        let overrides = Overrides {
            node_id: flags.node_id.clone(),
            data_dir: common.data_dir.clone(),
            restconf_listen: common.listen.clone(),
            management_listen: common.management_listen.clone(),
            controller_urls: (!flags.controllers.is_empty()).then(|| flags.controllers.clone()),
        };
        config::load(common.config.as_deref(), &overrides)
    }

    fn load_file(file: &Path) -> Result<AgentConfig, ConfigError> {
        config::load_file(file)
    }

    fn summary(c: &AgentConfig) -> String {
        format!(
            "valid (node {}, {} interfaces, {} links)",
            c.node.id,
            c.interfaces.len(),
            c.links.len()
        )
    }

    async fn start(config: AgentConfig) -> Result<AgentHandle, AgentError> {
        Agent::start(config, AgentOptions::default()).await
    }

    async fn stop(running: AgentHandle) {
        running.shutdown().await
    }
}
