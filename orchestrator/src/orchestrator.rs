//! The orchestrator service: a session per domain, the state owner, the REST API and the
//! merged ETSI 018 RESTCONF view on one listener, and health and readiness on the management
//! listener, until asked to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use qkdn_kit::Servers;
use qkdn_kit::server::ServeOptions;
use qkdn_kit::task::OwnedTask;
use qkdn_yang::restconf::RestconfClient;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::OrchestratorConfig;
use crate::state::{self, Snapshot};

/// Why the orchestrator could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// TLS files.
    #[error(transparent)]
    Tls(#[from] qkdn_kit::tls::TlsError),
    /// The HTTP client.
    #[error("HTTP client: {0}")]
    Http(String),
    /// The 018 server.
    #[error(transparent)]
    Northbound(#[from] crate::northbound::NorthboundError),
    /// The durable state.
    #[error("orchestrator state: {0}")]
    Store(String),
    /// A listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running orchestrator.
pub struct Orchestrator {
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Where the management endpoints listen.
    pub management_addr: SocketAddr,
    /// Following the domains, merging, the services' owner (they stop when dropped).
    tasks: Vec<OwnedTask>,
    servers: Servers,
}

fn client(
    tls: Option<&crate::config::ClientTls>,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, ServiceError> {
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    if let Some(t) = tls {
        b = b.tls_backend_preconfigured(t.config()?);
    }
    b.build().map_err(|e| ServiceError::Http(qkdn_yang::restconf::client::error_chain(&e)))
}

impl Orchestrator {
    /// Starts the orchestrator.
    pub async fn start(config: OrchestratorConfig) -> Result<Orchestrator, ServiceError> {
        let config = Arc::new(config);
        let tls = config.api.tls.as_ref().map(|t| t.config()).transpose()?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| ServiceError::Listen { addr, source })
        };
        let api = bind(config.api.listen).await?;
        let management = bind(config.management_listen).await?;
        let api_addr = api
            .local_addr()
            .map_err(|source| ServiceError::Listen { addr: config.api.listen, source })?;
        let management_addr = management
            .local_addr()
            .map_err(|source| ServiceError::Listen { addr: config.management_listen, source })?;
        let (events, incoming) = mpsc::channel(1024);
        let mut tasks = Vec::new();
        let mut controllers = std::collections::BTreeMap::new();
        for (i, d) in config.domains.iter().enumerate() {
            let requests = RestconfClient::with_client(
                client(d.tls.as_ref(), Some(Duration::from_secs(30)))?,
                &d.url,
            );
            controllers.insert(d.name.clone(), requests.clone());
            let streaming = RestconfClient::with_client(client(d.tls.as_ref(), None)?, &d.url);
            tasks.push(OwnedTask::spawn(crate::domain::run(
                i,
                requests,
                streaming,
                config.resync_interval,
                config.loss_timeout,
                events.clone(),
            )));
        }
        drop(events);
        let initial = Snapshot { complete: config.domains.is_empty(), ..Snapshot::default() };
        let (snapshots, snapshot) = watch::channel(Arc::new(initial));
        tasks.push(OwnedTask::spawn(state::run(config.clone(), incoming, snapshots)));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let northbound =
            crate::northbound::start(snapshot.clone(), format!("{scheme}://{api_addr}")).await?;
        let store = crate::records::open(&config.data_dir)
            .map_err(|e| ServiceError::Store(e.to_string()))?;
        let mut services = std::collections::BTreeMap::new();
        let mut unanswered = Vec::new();
        for (key, service) in store
            .load::<crate::end_to_end::Service>(crate::records::Table::Services)
            .map_err(|e| ServiceError::Store(e.to_string()))?
        {
            if service.provisioned {
                services.insert(service.service_id, service);
            } else {
                unanswered.push((key, service));
            }
        }
        let domains = Arc::new(controllers);
        // Services whose creation was never answered are removed from their domains.
        if !unanswered.is_empty() {
            let (store, domains) = (store.clone(), domains.clone());
            tasks.push(OwnedTask::spawn(async move {
                for (key, service) in unanswered {
                    tracing::info!(service = %key, "rolling back a service that was never answered");
                    crate::end_to_end::remove(&service.parts.iter().collect::<Vec<_>>(), &domains).await;
                    let _ = store.write(vec![crate::records::Op::Delete(crate::records::Table::Services, key)]).await;
                }
            }));
        }
        let parts = crate::service_book::BookParts { snapshot: snapshot.clone(), domains, store };
        let (book, owner) = crate::service_book::ServiceBook::start(services, parts);
        tasks.push(owner.into());
        let state = crate::api::ApiState { snapshot: snapshot.clone(), book };
        let metrics_state = state.clone();
        let denials = Arc::new(qkdn_kit::Denials::default());
        if config.api.listener().insecure(config.insecure_allow_unauthenticated) {
            qkdn_kit::listener::warn_insecure("the orchestrator", &config.api.listener());
        }
        let gate = crate::access::gate(&config, denials.clone());
        let api_router = gate.protect(crate::api::router(state, northbound));
        let management_router =
            qkdn_kit::management::router(Observed { state: metrics_state, denials });
        let mut servers = Servers::new();
        servers.spawn("api", api, api_router, ServeOptions::api(tls, crate::access::format));
        servers.spawn("management", management, management_router, ServeOptions::management());
        tracing::info!(api = %api_addr, management = %management_addr, domains = config.domains.len(), "orchestrator started");
        Ok(Orchestrator { api_addr, management_addr, tasks, servers })
    }

    /// Stops serving and following the domains.
    pub async fn shutdown(self) {
        self.servers.stop().await;
        drop(self.tasks);
    }
}

/// What the management endpoints read of the orchestrator.
#[derive(Clone)]
struct Observed {
    state: crate::api::ApiState,
    denials: Arc<qkdn_kit::Denials>,
}

impl qkdn_kit::management::Observed for Observed {
    fn not_ready(&self) -> Option<String> {
        let complete = self.state.snapshot.borrow().complete;
        (!complete).then(|| "not every domain heard from yet".to_owned())
    }

    fn metrics(&self) -> String {
        let snapshot = self.state.snapshot.borrow().clone();
        let services = self.state.book.services();
        crate::metrics::render(&snapshot, services.values(), &self.denials)
    }
}
