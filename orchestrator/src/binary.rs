//! The `qkdn-orchestrator` program as the service kit runs it: where the common flags go in its
//! configuration.

use std::path::Path;

use qkdn_kit::binary::{CommonFlags, NoFlags, ServiceBinary};
use qkdn_kit::config::ConfigError;

use crate::Orchestrator;
use crate::config::{self, OrchestratorConfig, Overrides};
use crate::orchestrator::ServiceError;

/// The `qkdn-orchestrator` binary.
pub struct OrchestratorBinary;

impl ServiceBinary for OrchestratorBinary {
    const NAME: &'static str = "qkdn-orchestrator";
    const ABOUT: &'static str = "The qkdn multi-domain orchestrator (ETSI GS QKD 018)";
    type Flags = NoFlags;
    type Config = OrchestratorConfig;
    type Running = Orchestrator;
    type StartError = ServiceError;

    fn load(common: &CommonFlags, _: &NoFlags) -> Result<OrchestratorConfig, ConfigError> {
        let overrides = Overrides {
            data_dir: common.data_dir.clone(),
            listen: common.listen.clone(),
            management_listen: common.management_listen.clone(),
        };
        config::load(common.config.as_deref(), &overrides)
    }

    fn load_file(file: &Path) -> Result<OrchestratorConfig, ConfigError> {
        config::load_file(file)
    }

    async fn start(config: OrchestratorConfig) -> Result<Orchestrator, ServiceError> {
        Orchestrator::start(config).await
    }

    async fn stop(running: Orchestrator) {
        running.shutdown().await
    }
}
