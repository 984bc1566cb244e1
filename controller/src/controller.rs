//! The controller service: loads the state and starts the core, serves the REST API and the
//! ETSI 018 RESTCONF northbound on one listener, and health and readiness on the management
//! listener, until asked to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use qkdn_kit::Servers;
use qkdn_kit::server::ServeOptions;
use tokio::net::TcpListener;

use crate::api::{self, ApiState};
use crate::config::ControllerConfig;
use crate::core::{self, CoreHandle};

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The core.
    #[error(transparent)]
    Core(#[from] core::StartError),
    /// TLS files.
    #[error("api.tls: {0}")]
    Tls(#[from] qkdn_kit::tls::TlsError),
    /// The ETSI 018 server.
    #[error(transparent)]
    Northbound(crate::northbound::NorthboundError),
    /// A listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running controller.
pub struct Controller {
    /// The core.
    pub core: CoreHandle,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Where the management endpoints listen.
    pub management_addr: SocketAddr,
    servers: Servers,
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, ServiceError> {
    TcpListener::bind(addr).await.map_err(|source| ServiceError::Listen { addr, source })
}

impl Controller {
    /// Starts the controller.
    pub async fn start(config: ControllerConfig) -> Result<Controller, ServiceError> {
        let config = Arc::new(config);
        let tls = match &config.api.tls {
            Some(t) => Some(t.config()?),
            None => None,
        };
        let api_listener = listen(config.api.listen).await?;
        let management_listener = listen(config.management.listen).await?;
        let core = core::start(config.clone())?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|source| ServiceError::Listen { addr: config.api.listen, source })?;
        let management_addr = management_listener
            .local_addr()
            .map_err(|source| ServiceError::Listen { addr: config.management.listen, source })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let northbound = crate::northbound::start(core.clone(), format!("{scheme}://{api_addr}"))
            .await
            .map_err(ServiceError::Northbound)?;
        let denials = Arc::new(qkdn_kit::Denials::default());
        if config.api.listener().insecure(config.insecure_allow_unauthenticated) {
            qkdn_kit::listener::warn_insecure("the controller", &config.api.listener());
        }
        let api_router = api::router(
            ApiState { core: core.clone() },
            northbound,
            crate::access::gate(&config, denials.clone()),
        );
        let management = management_router(core.clone(), denials);
        let mut servers = Servers::new();
        servers.spawn(
            "api",
            api_listener,
            api_router,
            ServeOptions::api(tls, crate::access::format),
        );
        servers.spawn("management", management_listener, management, ServeOptions::management());
        tracing::info!(api = %api_addr, management = %management_addr, "controller started");
        Ok(Controller { core, api_addr, management_addr, servers })
    }

    /// Stops serving (requests in flight finish within the grace period), then the core and
    /// its agent sessions.
    pub async fn shutdown(self) {
        self.servers.stop().await;
        self.core.stop().await;
    }
}

fn management_router(core: CoreHandle, denials: Arc<qkdn_kit::Denials>) -> Router {
    qkdn_kit::management::router(Observed { core, denials })
}

/// What the management endpoints read of the controller.
#[derive(Clone)]
struct Observed {
    core: CoreHandle,
    denials: Arc<qkdn_kit::Denials>,
}

impl qkdn_kit::management::Observed for Observed {
    fn not_ready(&self) -> Option<String> {
        (!self.core.view().ready).then(|| "loading state".to_owned())
    }

    fn metrics(&self) -> String {
        crate::metrics::render(&self.core.view(), &self.denials)
    }
}
