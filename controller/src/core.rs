//! The controller's core: one task owns the agents' sessions, the network view, the
//! applications and the record of what was written on each node (DESIGN.md §11: one owner,
//! others send messages). HTTP handlers send it [`Command`]s and read the latest [`View`]
//! without waiting; sessions send what they learn; provisioning jobs report when done.
//!
//! After each batch of messages the core rebuilds the network view, and when links went down
//! or agents were lost it moves the applications whose paths used them (and only those); when
//! links come back it restores applications that had no path.

mod agents;
mod connectivity;
mod jobs;
mod reroute;
mod segments;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use qkdn_yang::restconf::client::RestconfClient;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use uuid::Uuid;

use crate::apps::{AppSpec, Application, Entry, Qos};
use crate::config::ControllerConfig;
use crate::error::ApiError;
use crate::inventory::NodeReport;
use qkdn_kit::task::OwnedTask;

use crate::provision::Outcome;
use crate::records::{Op, Store, Table};
use crate::session::{SessionEvent, SessionId};
use crate::topology::Network;

use qkdn_proto::node_api::KmsFigures;
pub use qkdn_proto::node_api::Registration;

/// An agent as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AgentView {
    /// Its node, once known.
    pub node: Option<Uuid>,
    /// RESTCONF base URL.
    pub restconf_url: String,
    /// `registered` or `static`.
    pub source: &'static str,
    /// Whether it answers.
    pub reachable: bool,
    /// The last problem with it.
    pub last_error: Option<String>,
    /// What it sent when it registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
}

impl View {
    /// The KMS figures `node` last gave, if any.
    pub fn kms_of(&self, node: Uuid) -> Option<&KmsFigures> {
        self.kms.get(&node).map(|f| &**f)
    }
}

/// An alarm or event the controller raised.
pub type Event = Json;

/// The state handlers read.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Nodes and physical links.
    pub network: Arc<Network>,
    /// Each node's last report.
    pub reports: BTreeMap<Uuid, Arc<NodeReport>>,
    /// Sessions.
    pub agents: Vec<AgentView>,
    /// Applications.
    pub apps: BTreeMap<Uuid, Application>,
    /// Rate the controller's paths take from each physical link, bit/s.
    pub promised: HashMap<Uuid, u64>,
    /// Part of it the agents count as direct application demand.
    pub direct: HashMap<Uuid, u64>,
    /// Recent alarms and events, oldest first.
    pub events: Vec<Event>,
    /// Whether the durable state has been loaded and the sessions started.
    pub ready: bool,
    /// The KMS figures of each node that gives them ([`crate::kms_figures`]).
    pub kms: BTreeMap<Uuid, Arc<KmsFigures>>,
    /// Key stock of each physical link whose stores are known, bits (the smaller end).
    pub stock: HashMap<Uuid, u64>,
}

/// Requests to the core.
#[derive(Debug)]
pub enum Command {
    /// Stop: end every session and the core (reply once they are stopped).
    Stop(oneshot::Sender<Result<(), ApiError>>),
    /// An agent registers (reply: true when it was not registered before).
    RegisterAgent(Registration, oneshot::Sender<Result<bool, ApiError>>),
    /// Register an application (reply: the application, and true when it was created now).
    CreateApp(AppSpec, oneshot::Sender<Result<(Application, bool), ApiError>>),
    /// Change an application's QoS.
    UpdateQos(Uuid, Qos, oneshot::Sender<Result<Application, ApiError>>),
    /// Remove an application (reply: true when every node let go of its entries).
    DeleteApp(Uuid, oneshot::Sender<Result<bool, ApiError>>),
    /// Register an application without deploying a path (ETSI 018 `app-registration`).
    RegisterApp(AppSpec, oneshot::Sender<Result<(Application, bool), ApiError>>),
    /// Compute and keep candidate paths of an application.
    Candidates {
        /// The application.
        app: Uuid,
        /// Nodes to avoid besides its QoS exclusions.
        exclude: std::collections::HashSet<Uuid>,
        /// Hop limit (else its QoS one).
        max_hops: Option<usize>,
        /// How many.
        k: usize,
        /// The candidates, cheapest first.
        reply: oneshot::Sender<Result<Vec<crate::apps::Candidate>, ApiError>>,
    },
    /// Deploy candidate `path_id` (1-based) of an application.
    Deploy(Uuid, usize, oneshot::Sender<Result<Application, ApiError>>),
    /// Provision a segment of a service crossing domains (see `core/segments.rs`).
    DeploySegment {
        /// The service, as an application.
        spec: AppSpec,
        /// The service's virtual link.
        link: Uuid,
        /// The segment's nodes, in order.
        nodes: Vec<Uuid>,
        /// The hops before and after it.
        segment: crate::apps::Segment,
        /// The application record.
        reply: oneshot::Sender<Result<(Application, bool), ApiError>>,
    },
    /// A provisioning job finished.
    JobDone(Uuid, Outcome),
}

/// A handle on the core.
#[derive(Clone)]
pub struct CoreHandle {
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<Arc<View>>,
    events: broadcast::Sender<Event>,
}

impl CoreHandle {
    /// The latest view.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Follows the view as it changes.
    pub fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Alarms and events as they are raised.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Stops the core and its agent sessions; later requests are answered "stopping".
    pub async fn stop(&self) {
        let _ = self.ask(Command::Stop).await;
    }

    /// Sends `make(reply)` and waits for the reply.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ApiError>>) -> Command,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| ApiError::Unavailable("the controller is stopping".into()))?;
        answer.await.map_err(|_| ApiError::Unavailable("the controller is stopping".into()))?
    }
}

/// What waits on a job.
enum Pending {
    Create(oneshot::Sender<Result<(Application, bool), ApiError>>),
    Update(oneshot::Sender<Result<Application, ApiError>>, Box<Application>),
    Delete(oneshot::Sender<Result<bool, ApiError>>),
    /// Undoing a failed create or update; then answer with the error.
    Rollback(Box<dyn FnOnce(ApiError) + Send>, ApiError),
    /// Moving or repairing, nobody waiting.
    Background,
}

struct Session {
    url: String,
    registered: Option<Registration>,
    expected_node: Option<Uuid>,
    node: Option<Uuid>,
    reachable: bool,
    last_error: Option<String>,
    client: RestconfClient,
    /// Following the agent (stops when the session is dropped).
    _task: OwnedTask,
    /// Polling its KMS figures.
    _monitor: Option<OwnedTask>,
}

/// An entry written (or about to be written) on a node, and the application it is for.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Recorded {
    app: Uuid,
    entry: Entry,
}

const EVENTS_KEPT: usize = 512;

/// How often performance updates (rates, QBER) are folded into the network view: a link whose
/// QBER crosses the threshold is acted on within this time.
const PERF_PERIOD: Duration = Duration::from_millis(500);

/// The core's state.
pub struct Core {
    config: Arc<ControllerConfig>,
    store: Store,
    http: reqwest::Client,
    streaming_http: reqwest::Client,
    commands: mpsc::Sender<Command>,
    session_events: mpsc::Sender<(SessionId, SessionEvent)>,
    sessions: HashMap<SessionId, Session>,
    next_session: SessionId,
    nodes: BTreeMap<Uuid, (Arc<NodeReport>, bool)>,
    kms: BTreeMap<Uuid, Arc<KmsFigures>>,
    apps: BTreeMap<Uuid, Application>,
    entries: BTreeMap<String, Recorded>,
    busy: HashMap<Uuid, Pending>,
    again: HashSet<Uuid>,
    network: Arc<Network>,
    events: VecDeque<Event>,
    event_tx: broadcast::Sender<Event>,
    view_tx: watch::Sender<Arc<View>>,
    dirty: bool,
    topology_changed: bool,
    /// Performance updates not yet folded into the network view.
    perf_pending: bool,
    /// Until every known agent has answered once (or the loss timeout has passed since the
    /// start), paths are not judged: a picture still being assembled is not a failure.
    settled: bool,
    started: std::time::Instant,
}

/// Why the core could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The durable state.
    #[error(transparent)]
    Store(#[from] crate::records::StoreError),
    /// TLS files for agents.
    #[error("agents.tls: {0}")]
    Tls(#[from] qkdn_kit::tls::TlsError),
    /// The HTTP client.
    #[error("HTTP client: {0}")]
    Http(String),
}

fn http_clients(
    config: &ControllerConfig,
) -> Result<(reqwest::Client, reqwest::Client), StartError> {
    let tls = match &config.agents.tls {
        Some(t) => Some(t.config()?),
        None => None,
    };
    let build = |timeout: Option<Duration>| {
        let mut b = reqwest::Client::builder().connect_timeout(config.agents.request_timeout);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        if let Some(tls) = &tls {
            b = b.tls_backend_preconfigured(tls.clone());
        }
        b.build().map_err(|e| StartError::Http(qkdn_yang::restconf::client::error_chain(&e)))
    };
    Ok((build(Some(config.agents.request_timeout))?, build(None)?))
}

/// Loads the durable state, starts the sessions and the core task.
pub fn start(config: Arc<ControllerConfig>) -> Result<CoreHandle, StartError> {
    let store = crate::records::open(&config.data_dir)?;
    let (http, streaming_http) = http_clients(&config)?;
    let (commands, command_rx) = mpsc::channel(1024);
    let (session_events, session_rx) = mpsc::channel(4096);
    let (view_tx, view) = watch::channel(Arc::new(View::default()));
    let (event_tx, _) = broadcast::channel(1024);
    let mut core = Core {
        config,
        store,
        http,
        streaming_http,
        commands: commands.clone(),
        session_events,
        sessions: HashMap::new(),
        next_session: 1,
        nodes: BTreeMap::new(),
        kms: BTreeMap::new(),
        apps: BTreeMap::new(),
        entries: BTreeMap::new(),
        busy: HashMap::new(),
        again: HashSet::new(),
        network: Arc::new(Network::default()),
        events: VecDeque::new(),
        event_tx: event_tx.clone(),
        view_tx,
        dirty: true,
        topology_changed: false,
        perf_pending: false,
        settled: false,
        started: std::time::Instant::now(),
    };
    let loaded = core.load()?;
    tokio::spawn(async move {
        if let Some(ops) = loaded
            && let Err(e) = core.store.write(ops).await
        {
            tracing::error!(error = %e, "could not drop unanswered registrations");
        }
        core.run(command_rx, session_rx).await
    });
    Ok(CoreHandle { commands, view, events: event_tx })
}

impl Core {
    /// Reads the state and starts sessions; returns the writes that drop applications whose
    /// registration was never answered (they are rolled back on their nodes).
    fn load(&mut self) -> Result<Option<Vec<Op>>, StartError> {
        let mut ops = Vec::new();
        for (key, app) in self.store.load::<Application>(Table::Applications)? {
            if app.state == crate::apps::AppState::Provisioning {
                tracing::info!(app = %key, "rolling back a registration that was never answered");
                ops.push(Op::Delete(Table::Applications, key));
            } else {
                self.apps.insert(app.spec.app_id, app);
            }
        }
        for (key, recorded) in self.store.load::<Recorded>(Table::Entries)? {
            self.entries.insert(key, recorded);
        }
        for (_, registration) in self.store.load::<Registration>(Table::Agents)? {
            self.start_session(
                registration.restconf_url.clone(),
                Some(registration),
                None,
                Some("NETCONF".into()),
            );
        }
        for s in self.config.static_agents.clone() {
            self.start_session(s.restconf_url.clone(), None, s.node_id, s.stream.clone());
        }
        tracing::info!(
            applications = self.apps.len(),
            entries = self.entries.len(),
            agents = self.sessions.len(),
            "state loaded"
        );
        Ok((!ops.is_empty()).then_some(ops))
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut session_rx: mpsc::Receiver<(SessionId, SessionEvent)>,
    ) {
        self.publish();
        let mut retry = tokio::time::interval(Duration::from_secs(5));
        let mut perf_tick = tokio::time::interval(PERF_PERIOD);
        perf_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                c = commands.recv() => match c {
                    Some(c) => if self.command(c).await.is_break() {
                        return;
                    },
                    None => break,
                },
                Some((id, e)) = session_rx.recv() => {
                    self.session_event(id, e);
                    // Take what else has arrived before acting on the new picture.
                    for _ in 0..256 {
                        match session_rx.try_recv() {
                            Ok((id, e)) => self.session_event(id, e),
                            Err(_) => break,
                        }
                    }
                }
                _ = retry.tick() => if self.settled {
                    self.retry_unplaced().await;
                },
                _ = perf_tick.tick() => if self.perf_pending {
                    self.perf_pending = false;
                    self.topology_changed = true;
                    self.dirty = true;
                },
            }
            if !self.settled {
                let all_heard = self.sessions.values().all(|s| s.reachable);
                if all_heard || self.started.elapsed() >= self.config.agents.loss_timeout {
                    self.settled = true;
                    self.topology_changed = true;
                    tracing::info!("every known agent heard from; judging paths");
                }
            }
            if self.topology_changed {
                self.topology_changed = false;
                self.after_topology_change().await;
            }
            if self.dirty {
                self.publish();
            }
        }
        self.stop_sessions();
    }

    /// Ends every session (their tasks stop with them).
    fn stop_sessions(&mut self) {
        self.sessions.clear();
    }

    /// Carries out `c`; `Break` once the core is to stop.
    async fn command(&mut self, c: Command) -> ControlFlow<()> {
        match c {
            Command::Stop(reply) => {
                self.stop_sessions();
                let _ = reply.send(Ok(()));
                return ControlFlow::Break(());
            }
            Command::RegisterAgent(r, reply) => {
                let result = self.register_agent(r).await;
                let _ = reply.send(result);
            }
            Command::CreateApp(spec, reply) => self.create_app(spec, reply).await,
            Command::UpdateQos(id, qos, reply) => self.update_qos(id, qos, reply).await,
            Command::DeleteApp(id, reply) => self.delete_app(id, reply).await,
            Command::RegisterApp(spec, reply) => self.register_only(spec, reply).await,
            Command::Candidates { app, exclude, max_hops, k, reply } => {
                self.candidates(app, exclude, max_hops, k, reply).await
            }
            Command::Deploy(app, path, reply) => self.deploy(app, path, reply).await,
            Command::DeploySegment { spec, link, nodes, segment, reply } => {
                self.deploy_segment(spec, link, nodes, segment, reply).await
            }
            Command::JobDone(app, outcome) => self.job_done(app, outcome).await,
        }
        ControlFlow::Continue(())
    }

    /// Records an alarm or event and sends it to subscribers.
    fn raise(&mut self, kind: &str, severity: &str, subject: Json, message: String) {
        let event = json!({
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "kind": kind,
            "severity": severity,
            "subject": subject,
            "message": message,
        });
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        let _ = self.event_tx.send(event);
        self.dirty = true;
    }

    /// Publishes the view.
    fn publish(&mut self) {
        let (promised, direct) = self.reservations(None);
        let agents = self
            .sessions
            .values()
            .map(|s| AgentView {
                node: s.node,
                restconf_url: s.url.clone(),
                source: if s.registered.is_some() { "registered" } else { "static" },
                reachable: s.reachable,
                last_error: s.last_error.clone(),
                registration: s.registered.clone(),
            })
            .collect();
        let view = View {
            network: self.network.clone(),
            reports: self.nodes.iter().map(|(id, (r, _))| (*id, r.clone())).collect(),
            agents,
            apps: self.apps.clone(),
            promised,
            direct,
            events: self.events.iter().cloned().collect(),
            ready: true,
            kms: self.kms.clone(),
            stock: self.stock(),
        };
        self.view_tx.send_replace(Arc::new(view));
        self.dirty = false;
    }

    /// Rate promised on each physical link by the applications other than `except`, and the
    /// part the agents count as direct demand.
    fn reservations(&self, except: Option<Uuid>) -> (HashMap<Uuid, u64>, HashMap<Uuid, u64>) {
        let mut promised = HashMap::new();
        let mut direct = HashMap::new();
        for app in self.apps.values().filter(|a| Some(a.spec.app_id) != except) {
            let rate = app.spec.qos.demand_bps();
            for leg in &app.legs {
                for l in &leg.links {
                    *promised.entry(*l).or_insert(0) += rate;
                }
                if app.segment.is_none()
                    && !leg.is_virtual()
                    && let Some(l) = leg.links.first()
                {
                    *direct.entry(*l).or_insert(0) += rate;
                }
            }
        }
        (promised, direct)
    }

    /// Key stock per physical link from the agents' store figures: the smaller of the two
    /// ends' stored bits (an end that reports none counts as empty).
    fn stock(&self) -> HashMap<Uuid, u64> {
        let mut stock = HashMap::new();
        for l in self.network.links.values() {
            let at = |node: Uuid| -> Option<u64> {
                Some(self.kms.get(&node)?.store(l.id)?.counters.stored_bits())
            };
            let (a, b) = (at(l.ends[0].0), at(l.ends[1].0));
            if a.is_some() || b.is_some() {
                stock.insert(l.id, a.unwrap_or(0).min(b.unwrap_or(0)));
            }
        }
        stock
    }

    fn clients(&self) -> HashMap<Uuid, RestconfClient> {
        self.sessions.values().filter_map(|s| Some((s.node?, s.client.clone()))).collect()
    }
}
