//! The `qkdn-controller` program as the service kit runs it: where the common flags go in its
//! configuration.

use std::path::Path;

use qkdn_kit::binary::{CommonFlags, NoFlags, ServiceBinary};
use qkdn_kit::config::ConfigError;

use crate::Controller;
use crate::config::{self, ControllerConfig, Overrides};
use crate::controller::ServiceError;

/// The `qkdn-controller` binary.
pub struct ControllerBinary;

impl ServiceBinary for ControllerBinary {
    const NAME: &'static str = "qkdn-controller";
    const ABOUT: &'static str = "The qkdn SDN controller (topology, key-relay routing, applications, ETSI GS QKD 018 northbound)";
    type Flags = NoFlags;
    type Config = ControllerConfig;
    type Running = Controller;
    type StartError = ServiceError;

    fn load(common: &CommonFlags, _: &NoFlags) -> Result<ControllerConfig, ConfigError> {
        let overrides = Overrides {
            data_dir: common.data_dir.clone(),
            listen: common.listen.clone(),
            management_listen: common.management_listen.clone(),
        };
        config::load(common.config.as_deref(), &overrides)
    }

    fn load_file(file: &Path) -> Result<ControllerConfig, ConfigError> {
        config::load_file(file)
    }

    async fn start(config: ControllerConfig) -> Result<Controller, ServiceError> {
        Controller::start(config).await
    }

    async fn stop(running: Controller) {
        running.shutdown().await
    }
}
