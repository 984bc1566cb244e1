//! Starting and stopping an agent.
//!
//! [`Agent::start`] builds the node's 015 tree from the configuration (and start-up data),
//! restores what the controller wrote before a restart, and starts the RESTCONF server, the
//! live node (devices, state, notifications), the management endpoints and registration with
//! the controller. [`AgentHandle::shutdown`] stops them in order: the live node first (it
//! announces the interfaces going out), then the KMS feed, the servers and registration.
//! Every task it started is an [`OwnedTask`]: dropping the handle instead stops them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use qkdn_kit::ErrorFormat;
use qkdn_kit::Servers;
use qkdn_kit::server::{Edge, ServeOptions};
use qkdn_kit::tls;
use qkdn_kit::tls::Protocols;
use qkdn_yang::datastore::{ContentFilter, Datastore, Edit, EditOp};
use qkdn_yang::input::InputPolicy;
use qkdn_yang::restconf::{RestconfOptions, RestconfServer};

use crate::peer::server::PeerService;
use crate::peer::{PeerClients, PeerHub, PeerLinks};
use qkdn_kit::task::OwnedTask;
use qkdn_yang::{DataError, YangContext};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::access;
use crate::api;
use crate::config::AgentConfig;
use crate::device::{QkdDevice, driver_for};
use crate::kms::{self, AppUsage, Application, KeyLedger, KeySink, LedgerAndKms, NoUsage};
use crate::management::{self, ManagementState};
use crate::node::baseline::{baseline, baseline_phys_links};
use crate::node::catalog::Catalog;
use crate::node::durable::{NodeStore, StoreError};
use crate::node::live::{self, LiveSetup, LiveView};
use crate::node::rules::{NodeRules, SharedRules};
use crate::register::{self, KmsEndpoints, Registration, RegistrationState};

const NODE: &str = "/etsi-qkd-sdn-node:qkd_node";
/// Origin of the edits that restore saved configuration at start-up.
const RESTORE_ORIGIN: &str = "restore";

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The YANG context.
    #[error("{0}")]
    Context(#[from] qkdn_yang::ContextError),
    /// The start-up data or the node's tree.
    #[error("{0}")]
    Data(String),
    /// The durable store.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A device driver.
    #[error("{0}")]
    Device(#[from] crate::device::DriverError),
    /// The KMS.
    #[error("{0}")]
    Kms(String),
    /// TLS files.
    #[error("TLS: {0}")]
    Tls(#[from] qkdn_kit::tls::TlsError),
    /// The pre-shared keys of SKIP encryptors.
    #[error("kms.skip: {0}")]
    SkipPsk(#[from] crate::kms::skip_psk::PskFileError),
    /// A listening socket.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What happened.
        error: std::io::Error,
    },
}

fn data_error(what: &str, e: DataError) -> AgentError {
    AgentError::Data(format!(
        "{what}: {}{}",
        e.message,
        e.path.map(|p| format!(" (at {p})")).unwrap_or_default()
    ))
}

/// Hooks for the KMS (the agent counts and fingerprints keys itself when none is given).
#[derive(Default)]
pub struct AgentOptions {
    /// Where the devices' keys go.
    pub sink: Option<Arc<dyn KeySink>>,
    /// Application key consumption.
    pub usage: Option<Arc<dyn AppUsage>>,
}

/// The agent.
#[derive(Debug)]
pub struct Agent;

/// A running agent.
pub struct AgentHandle {
    node: Uuid,
    restconf_addr: SocketAddr,
    management_addr: SocketAddr,
    datastore: Datastore,
    applications: watch::Receiver<Arc<Vec<Application>>>,
    ledger: Option<Arc<KeyLedger>>,
    live_stop: watch::Sender<bool>,
    servers: Servers,
    live: OwnedTask,
    others: Vec<OwnedTask>,
    kms_tasks: Vec<OwnedTask>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("node", &self.node)
            .field("restconf", &self.restconf_addr)
            .finish()
    }
}

impl AgentHandle {
    /// The node's id.
    pub fn node_id(&self) -> Uuid {
        self.node
    }

    /// Where RESTCONF listens.
    pub fn restconf_addr(&self) -> SocketAddr {
        self.restconf_addr
    }

    /// Where the management endpoints listen.
    pub fn management_addr(&self) -> SocketAddr {
        self.management_addr
    }

    /// The node's datastore.
    pub fn datastore(&self) -> &Datastore {
        &self.datastore
    }

    /// The application table (for the KMS).
    pub fn applications(&self) -> watch::Receiver<Arc<Vec<Application>>> {
        self.applications.clone()
    }

    /// The key ledger, when no KMS sink was given.
    pub fn ledger(&self) -> Option<Arc<KeyLedger>> {
        self.ledger.clone()
    }

    /// Stops the agent: the live node first, then the servers.
    pub async fn shutdown(self) {
        let _ = self.live_stop.send(true);
        self.live.finished().await;
        // The KMS key feed stores what the devices delivered before they stopped.
        let mut kms_tasks = self.kms_tasks.into_iter();
        if let Some(feed) = kms_tasks.next() {
            let _ = tokio::time::timeout(Duration::from_secs(10), feed.finished()).await;
        }
        drop(kms_tasks);
        // Leave event streams a moment to carry the last notifications.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.servers.stop().await;
        for task in self.others {
            let _ = tokio::time::timeout(Duration::from_secs(5), task.finished()).await;
        }
    }
}

/// Where the SKIP key provider listens.
#[derive(Clone, Copy, Debug, Default)]
struct SkipAddrs {
    /// For encryptors with certificates (the KMS's TLS settings).
    certificates: Option<SocketAddr>,
    /// For encryptors with pre-shared keys (TLS 1.2 DHE-PSK).
    keys: Option<SocketAddr>,
}

/// The SKIP key provider's listeners, when configured: each behind the SKIP gate, with the
/// key interfaces' edge.
async fn serve_skip(
    kms_config: &crate::config::KmsConfig,
    kms: &kms::startup::Kms,
    servers: &mut Servers,
    denials: &Arc<qkdn_kit::Denials>,
    grace: Duration,
) -> Result<SkipAddrs, AgentError> {
    let Some(skip) = &kms_config.skip else {
        return Ok(SkipAddrs::default());
    };
    let router = || {
        let gate = access::skip_gate(kms.server.identity.clone(), denials.clone());
        gate.protect(kms::skip::router(kms.server.clone()))
    };
    let edge = Edge { shutdown_grace: grace, ..Edge::keys() };
    let mut addrs = SkipAddrs::default();
    if let Some(addr) = skip.listen {
        let listener = bind(addr).await?;
        addrs.certificates =
            Some(listener.local_addr().map_err(|error| AgentError::Listen { addr, error })?);
        let options = ServeOptions {
            tls: Some(kms_config.tls.config()?),
            edge: edge.clone(),
            format_of: |_| ErrorFormat::Problem,
            ..ServeOptions::default()
        };
        servers.spawn("skip", listener, router(), options);
    }
    if let Some(addr) = skip.psk_listen {
        let psk = Arc::new(kms::skip_psk::server(skip)?);
        let listener = bind(addr).await?;
        addrs.keys =
            Some(listener.local_addr().map_err(|error| AgentError::Listen { addr, error })?);
        let options = ServeOptions {
            edge,
            format_of: |_| ErrorFormat::Problem,
            psk: Some(psk),
            ..ServeOptions::default()
        };
        servers.spawn("skip-psk", listener, router(), options);
    }
    Ok(addrs)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, AgentError> {
    TcpListener::bind(addr).await.map_err(|error| AgentError::Listen { addr, error })
}

impl Agent {
    /// Starts an agent.
    pub async fn start(
        config: AgentConfig,
        options: AgentOptions,
    ) -> Result<AgentHandle, AgentError> {
        let ctx = YangContext::node_agent()?;
        let startup = match &config.startup_data {
            Some(path) => Some(load_startup(&ctx, path)?),
            None => None,
        };
        let baseline = baseline(&config, startup.as_ref());
        let store = Arc::new(NodeStore::open(&config.data_dir)?);
        if let Some(t) = &config.peer.client_tls {
            // Checked here so that bad files stop the start rather than the first relay.
            t.config()?;
        }
        let peers = PeerLinks {
            hub: Arc::new(PeerHub::default()),
            clients: Arc::new(PeerClients::new(
                config.neighbours.iter().map(|n| (n.node, n.url.clone())),
                config.peer.client_tls.clone(),
            )),
        };
        let denials = Arc::new(qkdn_kit::Denials::default());
        announce_insecure(&config);
        let mut devices: HashMap<u32, Arc<dyn QkdDevice>> = HashMap::new();
        for iface in &config.interfaces {
            if let Some(device) = &iface.device {
                devices.insert(
                    iface.id,
                    driver_for(device, iface.id, &config.simulator, &peers)
                        .map_err(AgentError::Device)?,
                );
            }
        }
        let (capacity_tx, capacity_rx) = watch::channel(Arc::new(HashMap::new()));
        let rules = NodeRules::new(
            config.node.id,
            baseline_phys_links(&baseline),
            capacity_rx,
            store.clone(),
        );
        let ds = Datastore::builder(ctx.clone())
            .config(baseline)
            .hook(SharedRules(rules.clone()))
            .build()
            .map_err(|e| data_error("the node's configuration", e))?;
        restore(&ds, &store).await?;
        rules.set_persist(true);
        store.save_running(&running(&ds))?;

        let (live_stop, live_stop_rx) = watch::channel(false);
        let mut servers = Servers::new();
        let mut others = Vec::new();

        let listener = bind(config.restconf.listen).await?;
        let restconf_addr = listener
            .local_addr()
            .map_err(|error| AgentError::Listen { addr: config.restconf.listen, error })?;
        let (scheme, restconf_tls, certificate_sha256) = match &config.restconf.tls {
            Some(t) => ("https", Some(t.config()?), Some(tls::certificate_sha256(&t.cert)?)),
            None => ("http", None, None),
        };
        let restconf_url = config
            .restconf
            .advertised_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{restconf_addr}/restconf"));
        // The agent's API is the RESTCONF listener's /api.
        let api_url = restconf_url
            .strip_suffix("/restconf")
            .map(|base| format!("{base}/api"))
            .unwrap_or_else(|| format!("{scheme}://{restconf_addr}/api"));
        let server = RestconfServer::builder(ds.clone())
            .options(RestconfOptions {
                unprefixed_top_level: config.restconf.compat_unprefixed,
                base_url: format!("{scheme}://{restconf_addr}"),
                ..RestconfOptions::default()
            })
            .stream("NETCONF", &format!("ETSI GS QKD 015 notifications of node {}", config.node.id))
            .write_filter(crate::node::paths::next_hops_of_paths(config.node.id))
            .build()
            .await
            .map_err(|e| data_error("the RESTCONF server", e))?;
        let publisher = server.publisher("NETCONF").expect("stream registered above");
        let grace = Duration::from_secs(1);
        let restconf_router = server.router();
        let restconf_gate = access::restconf_gate(&config, denials.clone());

        let (applications_tx, applications) = watch::channel(Arc::new(Vec::new()));
        let kms = match &config.kms {
            Some(kms_config) => {
                let kms = kms::startup::start(
                    config.node.id,
                    kms_config,
                    &config.data_dir,
                    &ds,
                    applications.clone(),
                    peers.clients.clone(),
                    publisher.clone(),
                )
                .map_err(|e| AgentError::Kms(e.0))?;
                Some(kms)
            }
            None => None,
        };
        let kms_addr = match (&config.kms, &kms) {
            (Some(kms_config), Some(kms)) => {
                let listener = bind(kms_config.listen).await?;
                let local = listener
                    .local_addr()
                    .map_err(|error| AgentError::Listen { addr: kms_config.listen, error })?;
                let t = &kms_config.tls;
                let options = ServeOptions {
                    tls: Some(t.config()?),
                    edge: Edge { shutdown_grace: grace, ..Edge::keys() },
                    format_of: |_| ErrorFormat::Etsi014,
                    ..ServeOptions::default()
                };
                let gate = access::etsi014_gate(kms.server.identity.clone(), denials.clone());
                let router = gate.protect(kms::etsi014::router(kms.server.clone()));
                servers.spawn("etsi014", listener, router, options);
                Some(local)
            }
            _ => None,
        };
        let skip_addrs = match (&config.kms, &kms) {
            (Some(kms_config), Some(kms)) => {
                serve_skip(kms_config, kms, &mut servers, &denials, grace).await?
            }
            _ => SkipAddrs::default(),
        };

        let peer_addr = match config.peer.listen {
            Some(addr) => {
                let listener = bind(addr).await?;
                let local =
                    listener.local_addr().map_err(|error| AgentError::Listen { addr, error })?;
                let tls = match &config.peer.tls {
                    Some(t) => Some(t.config_with(Protocols::QKDN_PEERS)?),
                    None => None,
                };
                let options = ServeOptions {
                    tls,
                    edge: Edge { shutdown_grace: grace, ..Edge::peer() },
                    format_of: |_| ErrorFormat::Grpc,
                    ..ServeOptions::default()
                };
                let kms_peer = kms.as_ref().map(|k| k.peer.clone());
                let gate = access::peer_gate(&config, denials.clone());
                let router = gate.protect(PeerService::new(peers.hub.clone(), kms_peer).router());
                servers.spawn("peer", listener, router, options);
                Some(local)
            }
            None => None,
        };

        let ledger =
            if options.sink.is_none() { Some(Arc::new(KeyLedger::default())) } else { None };
        let sink: Arc<dyn KeySink> = match (&options.sink, &ledger, &kms) {
            (Some(sink), _, _) => sink.clone(),
            (None, Some(ledger), Some(kms)) => {
                Arc::new(LedgerAndKms { ledger: ledger.clone(), kms: kms.sink.clone() })
            }
            (None, Some(ledger), None) => ledger.clone(),
            (None, None, _) => unreachable!("a ledger exists when no sink is given"),
        };
        let usage: Arc<dyn AppUsage> = match (options.usage, &kms) {
            (Some(usage), _) => usage,
            (None, Some(kms)) => kms.usage.clone(),
            (None, None) => Arc::new(NoUsage),
        };
        let (view_tx, view_rx) = watch::channel(Arc::new(LiveView::default()));
        let live = OwnedTask::spawn(live::run(
            LiveSetup {
                node: config.node.id,
                ds: ds.clone(),
                publisher,
                devices,
                sink,
                usage,
                store: store.clone(),
                capacity: capacity_tx,
                applications: applications_tx,
                view: view_tx,
                period: config.notifications.performance_period,
            },
            live_stop_rx,
        ));

        let (registration_tx, registration_rx) = watch::channel(RegistrationState::Standalone);
        let (ready_tx, ready_rx) = watch::channel(false);
        let management_listener = bind(config.management.listen).await?;
        let management_addr = management_listener
            .local_addr()
            .map_err(|error| AgentError::Listen { addr: config.management.listen, error })?;
        let kms_stores = kms.as_ref().map(|k| management::KmsView {
            stores: k.stores.clone(),
            health: k.health.clone(),
            figures: k.figures.clone(),
            relay: k.peer.relay.clone(),
            usage: k.usage.clone(),
            interfaces: k.server.counters.clone(),
        });
        let kms_tasks = kms.map(|k| k.tasks).unwrap_or_default();
        let management_state = ManagementState {
            kms: kms_stores,
            view: view_rx,
            ledger: ledger.clone(),
            registration: registration_rx,
            ready: ready_rx,
            denials,
        };
        // The 015 model and the agent's API, behind the policy.
        let router = restconf_gate
            .protect(restconf_router.nest("/api", api::router(management_state.clone())));
        let options = ServeOptions {
            tls: restconf_tls,
            edge: Edge { shutdown_grace: grace, ..Edge::api() },
            format_of: access::restconf_format,
            ..ServeOptions::default()
        };
        servers.spawn("restconf", listener, router, options);
        let router = management::router(management_state);
        let options = ServeOptions {
            edge: Edge { shutdown_grace: grace, ..Edge::management() },
            ..ServeOptions::default()
        };
        servers.spawn("management", management_listener, router, options);

        let registration = Registration {
            node_id: config.node.id,
            restconf_url,
            kms: KmsEndpoints {
                etsi014_url: kms_addr.map(|a| format!("https://{a}")),
                peer_url: peer_addr.map(|a| {
                    format!("{}://{a}", if config.peer.tls.is_some() { "https" } else { "http" })
                }),
            },
            certificate_sha256,
            agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            // The KMS figures are on the authenticated API, beside RESTCONF.
            management_url: Some(api_url),
        };
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if let Some(t) = &config.controller.tls {
            // The controller must be one of this node's (its certificate names the domain).
            let domains = &config.controller.domains;
            let tls = if domains.is_empty() {
                t.config()?
            } else {
                let expected = domains.iter().map(|d| qkdn_kit::Identity::Controller(d.clone()));
                t.config_expecting(Protocols::default(), expected.collect())?
            };
            http = http.tls_backend_preconfigured(tls);
        }
        let http = http.build().map_err(|e| AgentError::Data(format!("HTTP client: {e}")))?;
        others.push(OwnedTask::spawn(register::run(
            config.controller.urls.clone(),
            http,
            registration,
            config.controller.heartbeat,
            registration_tx,
            servers.stopping(),
        )));
        ready_tx.send_replace(true);
        // Every address it listens on, read back by whoever started it with port 0.
        let shown = |a: Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
        tracing::info!(node = %config.node.id, restconf = %restconf_addr, management = %management_addr,
            kms = %shown(kms_addr), skip = %shown(skip_addrs.certificates), skip_psk = %shown(skip_addrs.keys),
            peer = %shown(peer_addr), "agent started");
        Ok(AgentHandle {
            node: config.node.id,
            restconf_addr,
            management_addr,
            datastore: ds,
            applications,
            ledger,
            live_stop,
            servers,
            live,
            others,
            kms_tasks,
        })
    }
}

/// Says loudly which listeners let anybody in (`insecure_allow_unauthenticated`).
fn announce_insecure(config: &AgentConfig) {
    let insecure = config.insecure_allow_unauthenticated;
    let restconf = crate::config::restconf_listener(config);
    if restconf.insecure(insecure) {
        qkdn_kit::listener::warn_insecure("the agent", &restconf);
    }
    if let Some(peer) = crate::config::peer_listener(config).filter(|p| p.insecure(insecure)) {
        qkdn_kit::listener::warn_insecure("the agent", &peer);
    }
}

/// The configuration part of the node's tree as JSON.
fn running(ds: &Datastore) -> Json {
    let path = ds.path(NODE).expect("the 015 module is loaded");
    ds.snapshot().get_json(ds.context(), &path, ContentFilter::Config).unwrap_or(Json::Null)
}

/// Reads a start-up data file (tolerant input) and returns its configuration as strict JSON.
fn load_startup(ctx: &YangContext, path: &Path) -> Result<Json, AgentError> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| AgentError::Data(format!("{shown}: {e}")))?;
    let doc: Json = serde_json::from_str(&text).map_err(|e| {
        AgentError::Data(format!("{shown}:{}:{}: not valid JSON: {e}", e.line(), e.column()))
    })?;
    let ds = Datastore::builder(ctx.clone())
        .data(doc)
        .build()
        .map_err(|e| data_error(&shown.to_string(), e))?;
    Ok(running(&ds))
}

/// Applies the configuration saved before a restart that the baseline does not hold: links and
/// applications the controller wrote, and the writable leaves of configured physical links.
/// Whatever no longer fits (the configuration changed meanwhile) is dropped with a warning.
async fn restore(ds: &Datastore, store: &NodeStore) -> Result<(), AgentError> {
    let Some(saved) = store.running()? else {
        return Ok(());
    };
    let current = Catalog::from_node_json(&running(ds));
    let node = &saved["etsi-qkd-sdn-node:qkd_node"];
    let links: Vec<Json> = node["qkd_links"]["qkd_link"].as_array().cloned().unwrap_or_default();
    let apps: Vec<Json> =
        node["qkd_applications"]["qkd_app"].as_array().cloned().unwrap_or_default();
    let mut edits: Vec<(EditOp, String, Json)> = Vec::new();
    let id_of = |v: &Json, k: &str| v[k].as_str().and_then(|s| s.parse::<Uuid>().ok());
    for link in links.iter().filter(|l| l["qkdl_type"] == "etsi-qkd-node-types:PHYS") {
        let Some(id) = id_of(link, "qkdl_id") else { continue };
        if current.phys.contains_key(&id) {
            let mut writable = json!({"qkdl_id": id.to_string()});
            for key in ["qkdl_enable", "qkdl_applications"] {
                if let Some(v) = link.get(key) {
                    writable[key] = v.clone();
                }
            }
            edits.push((
                EditOp::Merge,
                format!("{NODE}/qkd_links/qkd_link={id}"),
                json!({"etsi-qkd-sdn-node:qkd_link": [writable]}),
            ));
        } else {
            edits.push((
                EditOp::Replace,
                format!("{NODE}/qkd_links/qkd_link={id}"),
                json!({"etsi-qkd-sdn-node:qkd_link": [link]}),
            ));
        }
    }
    for link in links.iter().filter(|l| l["qkdl_type"] != "etsi-qkd-node-types:PHYS") {
        let Some(id) = id_of(link, "qkdl_id") else { continue };
        edits.push((
            EditOp::Replace,
            format!("{NODE}/qkd_links/qkd_link={id}"),
            json!({"etsi-qkd-sdn-node:qkd_link": [link]}),
        ));
    }
    for app in &apps {
        let Some(id) = id_of(app, "app_id") else { continue };
        edits.push((
            EditOp::Replace,
            format!("{NODE}/qkd_applications/qkd_app={id}"),
            json!({"etsi-qkd-sdn-node:qkd_app": [app]}),
        ));
    }
    let mut restored = 0usize;
    for (op, path, body) in edits {
        let result = match ds
            .path(&path)
            .and_then(|p| Edit::prepare(ds.context(), op, &p, Some(body), InputPolicy::CONFIG))
        {
            Ok(edit) => ds.apply(edit.with_origin(RESTORE_ORIGIN)).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => restored += 1,
            Err(e) => {
                tracing::warn!(%path, error = %e, "saved configuration dropped: it no longer fits the node")
            }
        }
    }
    tracing::info!(restored, "configuration written by the controller restored");
    Ok(())
}
