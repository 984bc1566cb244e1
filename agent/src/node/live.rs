//! The live node: the one task that owns what changes while the agent runs.
//!
//! It starts a device task for every enabled physical link whose local interface has a device,
//! and turns what the devices report into the node's 015 state and notifications:
//!
//! * key blocks go to the KMS through the [`KeySink`];
//! * measurements become `qkdl_performance` (`skr`, `eskr`, `expected_consumption`,
//!   `phys_perf` QBER and SNR), written every performance period and announced with
//!   `sdqkdn_link_perf_update`; a link whose expected consumption exceeds its ESKR raises
//!   `sdqkdn_link_overloaded` and an alarm;
//! * link down/up set `qkdl_status` (a configuration leaf in 015, written by the agent) and
//!   raise `sdqkdn_link_down` with an alarm, or an event;
//! * device failure/recovery set `qkdi_status` and raise `sdqkdn_interface_down` with an alarm,
//!   or an event.
//!
//! It follows configuration changes made by the controller: device tasks start and stop with
//! physical links; applications get their `creation_time` (kept in the durable store),
//! `app_status` and `app_statistics`, and are announced (`sdqkdn_application_new`,
//! `_qos_update`, `_disconnected`); the application table the KMS reads is kept current.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use qkdn_yang::datastore::{ContentFilter, Datastore, Edit, EditOp, Layer};
use qkdn_yang::input::InputPolicy;
use qkdn_yang::restconf::NotificationPublisher;
use serde::Serialize;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::catalog::Catalog;
use super::durable::NodeStore;
use super::rules::AGENT_ORIGIN;
use crate::device::{DeviceEvent, LinkSpec, Measurement, QkdDevice};
use crate::kms::{AppUsage, Application, KeySink};
use crate::notify::{self, Severity, Subject, clamp32};

const NODE: &str = "/etsi-qkd-sdn-node:qkd_node";
/// Entries of `app_statistics` kept per application.
const STATISTICS_KEPT: usize = 16;
/// How long an application's requests are refused for lack of key material before it shows
/// as not served (`DISCONNECTED`, with a MAJOR alarm).
const STARVED_AFTER: Duration = Duration::from_secs(3);

/// What the live node needs.
pub struct LiveSetup {
    /// This node's `qkdn_id`.
    pub node: Uuid,
    /// The node's datastore.
    pub ds: Datastore,
    /// The stream notifications go to.
    pub publisher: NotificationPublisher,
    /// Devices by interface.
    pub devices: HashMap<u32, Arc<dyn QkdDevice>>,
    /// Where keys go.
    pub sink: Arc<dyn KeySink>,
    /// Key consumption of applications.
    pub usage: Arc<dyn AppUsage>,
    /// The durable store.
    pub store: Arc<NodeStore>,
    /// Available secret key rate per physical link, for the commit hook.
    pub capacity: watch::Sender<Arc<HashMap<Uuid, u64>>>,
    /// The application table, for the KMS.
    pub applications: watch::Sender<Arc<Vec<Application>>>,
    /// The live view, for the management endpoints.
    pub view: watch::Sender<Arc<LiveView>>,
    /// Performance period.
    pub period: Duration,
}

/// What the management endpoints show about the live node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveView {
    /// Physical links with a device task.
    pub links: Vec<LinkView>,
    /// Interfaces whose device has failed.
    pub failed_interfaces: Vec<u32>,
}

/// One driven physical link.
#[derive(Clone, Debug, Serialize)]
pub struct LinkView {
    /// `qkdl_id`.
    pub link: Uuid,
    /// Local interface.
    pub interface: u32,
    /// Device driver.
    pub driver: &'static str,
    /// Producing keys.
    pub up: bool,
    /// Secret key rate, bit/s.
    pub skr_bps: Option<u64>,
    /// QBER.
    pub qber: Option<f64>,
    /// SNR, dB.
    pub snr_db: Option<f64>,
}

struct DrivenLink {
    task: JoinHandle<()>,
    spec: LinkSpec,
    driver: &'static str,
}

struct Live {
    setup: LiveSetup,
    catalog: Catalog,
    events_tx: mpsc::Sender<DeviceEvent>,
    driven: BTreeMap<Uuid, DrivenLink>,
    measurements: HashMap<Uuid, Measurement>,
    up: HashMap<Uuid, bool>,
    failed: HashSet<u32>,
    overloaded: HashSet<Uuid>,
    app_created: HashMap<Uuid, String>,
    app_status: HashMap<Uuid, &'static str>,
    app_stats: HashMap<Uuid, VecDeque<Json>>,
    app_bits: HashMap<Uuid, u64>,
    last_period: SystemTime,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn link_path(id: Uuid) -> String {
    format!("{NODE}/qkd_links/qkd_link={id}")
}

fn app_path(id: Uuid) -> String {
    format!("{NODE}/qkd_applications/qkd_app={id}")
}

/// The node's configuration as JSON.
fn running(ds: &Datastore) -> Json {
    let path = ds.path(NODE).expect("the 015 module is loaded");
    ds.snapshot().get_json(ds.context(), &path, ContentFilter::Config).unwrap_or(Json::Null)
}

/// Runs the live node until `shutdown` turns true.
pub async fn run(setup: LiveSetup, mut shutdown: watch::Receiver<bool>) {
    let (events_tx, mut events) = mpsc::channel(1024);
    let app_created = setup.store.app_created().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "application creation times could not be read");
        HashMap::new()
    });
    let mut changes = setup.ds.subscribe();
    let period = setup.period;
    let mut live = Live {
        catalog: Catalog::from_node_json(&running(&setup.ds)),
        setup,
        events_tx,
        driven: BTreeMap::new(),
        measurements: HashMap::new(),
        up: HashMap::new(),
        failed: HashSet::new(),
        overloaded: HashSet::new(),
        app_created,
        app_status: HashMap::new(),
        app_stats: HashMap::new(),
        app_bits: HashMap::new(),
        last_period: SystemTime::now(),
    };
    live.start().await;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            Some(event) = events.recv() => live.on_device(event).await,
            change = changes.recv() => match change {
                Ok(set) if set.layer == Layer::Running && set.origin.as_deref() != Some(AGENT_ORIGIN) => live.on_config().await,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => live.on_config().await,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = ticker.tick() => live.periodic().await,
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    live.stop().await;
                    break;
                }
            }
        }
    }
}

impl Live {
    fn publish(&self, notification: Json) {
        if let Err(e) = self.setup.publisher.publish(notification) {
            tracing::error!(error = %e, "a notification failed validation and was not sent");
        }
    }

    async fn merge_state(&self, path: &str, body: Json) {
        if let Err(e) = self.setup.ds.merge_state(path, body).await {
            tracing::warn!(path, error = %e, "state not written");
        }
    }

    /// A configuration write of the agent's own (link status).
    async fn agent_merge(&self, path: &str, body: Json) {
        let ds = &self.setup.ds;
        let edit = ds
            .path(path)
            .and_then(|p| {
                Edit::prepare(ds.context(), EditOp::Merge, &p, Some(body), InputPolicy::CONFIG)
            })
            .map(|e| e.with_origin(AGENT_ORIGIN));
        match edit {
            Ok(edit) => {
                if let Err(e) = ds.apply(edit).await {
                    tracing::warn!(path, error = %e, "status not written");
                }
            }
            Err(e) => tracing::warn!(path, error = %e, "status not written"),
        }
    }

    async fn set_link_status(&self, link: Uuid, status: &str) {
        self.agent_merge(
            &link_path(link),
            json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": link.to_string(), "qkdl_status": format!("etsi-qkd-node-types:{status}")}]}),
        )
        .await;
    }

    async fn start(&mut self) {
        let interfaces: Vec<Json> = running(&self.setup.ds)["etsi-qkd-sdn-node:qkd_node"]["qkd_interfaces"]["qkd_interface"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let statuses: Vec<Json> = self
            .catalog
            .interfaces
            .iter()
            .map(|i| {
                let status =
                    if self.setup.devices.contains_key(i) { "ENABLED" } else { "DISABLED" };
                json!({"qkdi_id": i, "qkdi_status": format!("etsi-qkd-node-types:{status}")})
            })
            .collect();
        self.merge_state(
            NODE,
            json!({"etsi-qkd-sdn-node:qkd_node": {"qkdn_status": "etsi-qkd-node-types:OPERATING",
                "qkd_interfaces": {"qkd_interface": statuses}}}),
        )
        .await;
        for iface in &interfaces {
            self.publish(notify::interface_new(iface));
        }
        self.sync_links().await;
        self.sync_apps(&Catalog::default()).await;
        self.publish_view();
    }

    async fn stop(&mut self) {
        for (_, driven) in std::mem::take(&mut self.driven) {
            driven.task.abort();
        }
        for iface in self.catalog.interfaces.clone() {
            self.publish(notify::interface_out(iface));
        }
        self.merge_state(
            NODE,
            json!({"etsi-qkd-sdn-node:qkd_node": {"qkdn_status": "etsi-qkd-node-types:OUT"}}),
        )
        .await;
        self.setup.sink.flush();
    }

    /// The spec of every physical link that should have a device task now.
    fn desired_links(&self) -> BTreeMap<Uuid, (LinkSpec, Arc<dyn QkdDevice>)> {
        self.catalog
            .phys
            .values()
            .filter(|p| p.enabled)
            .filter_map(|p| {
                let interface = p.local_interface?;
                let device = self.setup.devices.get(&interface)?.clone();
                let spec = LinkSpec {
                    link: p.id,
                    local_node: self.setup.node,
                    interface,
                    remote_node: p.remote_node?,
                    attenuation_db: p.attenuation_db.unwrap_or(0.0),
                };
                Some((p.id, (spec, device)))
            })
            .collect()
    }

    async fn sync_links(&mut self) {
        let desired = self.desired_links();
        let stale: Vec<Uuid> = self
            .driven
            .iter()
            .filter(|(id, d)| {
                desired.get(id).is_none_or(|(spec, _)| spec.attenuation_db != d.spec.attenuation_db)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(driven) = self.driven.remove(&id) {
                driven.task.abort();
            }
            self.up.remove(&id);
            self.measurements.remove(&id);
            if self.catalog.phys.get(&id).is_some_and(|p| !p.enabled) {
                self.set_link_status(id, "OFF").await;
            }
        }
        let mut capacity = HashMap::new();
        for (id, (spec, device)) in desired {
            if let Some(rate) = device.nominal_rate(&spec) {
                capacity.insert(id, rate);
            }
            if self.driven.contains_key(&id) {
                continue;
            }
            self.set_link_status(id, "PENDING").await;
            let task = tokio::spawn(device.run_link(spec.clone(), self.events_tx.clone()));
            self.driven.insert(id, DrivenLink { task, spec, driver: device.driver() });
        }
        for (id, m) in &self.measurements {
            capacity.insert(*id, m.skr_bps);
        }
        self.setup.capacity.send_replace(Arc::new(capacity));
    }

    async fn on_device(&mut self, event: DeviceEvent) {
        match event {
            DeviceEvent::Keys(block) => {
                if self.driven.contains_key(&block.link) {
                    self.setup.sink.deliver(block);
                }
            }
            DeviceEvent::Measured { link, measurement } => {
                self.measurements.insert(link, measurement);
                self.setup.capacity.send_modify(|c| {
                    Arc::make_mut(c).insert(link, measurement.skr_bps);
                });
            }
            DeviceEvent::LinkUp { link } => {
                let was = self.up.insert(link, true);
                self.set_link_status(link, "ACTIVE").await;
                // Said on the first start too: a controller that read the link while it was
                // PENDING learns at once that it is ACTIVE (not at its next periodic read).
                let what = match was {
                    Some(false) => Some("the link produces keys again"),
                    None => Some("the link produces keys"),
                    Some(true) => None,
                };
                if let Some(what) = what {
                    self.publish(notify::event(
                        &Subject::Link(link, "ACTIVE"),
                        what,
                        Severity::Minor,
                    ));
                }
                self.publish_view();
            }
            DeviceEvent::LinkDown { link, reason } => {
                self.up.insert(link, false);
                self.set_link_status(link, "PASSIVE").await;
                self.publish(notify::link_down(link, &reason));
                self.publish(notify::alarm(
                    &Subject::Link(link, "PASSIVE"),
                    &reason,
                    Severity::Major,
                ));
                self.publish_view();
            }
            DeviceEvent::DeviceFailed { interface, reason } => {
                self.failed.insert(interface);
                self.set_interface_status(interface, "FAILED").await;
                self.publish(notify::interface_down(interface, &reason));
                self.publish(notify::alarm(
                    &Subject::Interface(interface, "FAILED"),
                    &reason,
                    Severity::Major,
                ));
                self.publish_view();
            }
            DeviceEvent::DeviceRecovered { interface } => {
                self.failed.remove(&interface);
                self.set_interface_status(interface, "ENABLED").await;
                self.publish(notify::event(
                    &Subject::Interface(interface, "ENABLED"),
                    "the QKD device works again",
                    Severity::Minor,
                ));
                self.publish_view();
            }
        }
    }

    async fn set_interface_status(&self, interface: u32, status: &str) {
        self.merge_state(
            NODE,
            json!({"etsi-qkd-sdn-node:qkd_node": {"qkd_interfaces": {"qkd_interface": [
                {"qkdi_id": interface, "qkdi_status": format!("etsi-qkd-node-types:{status}")}]}}}),
        )
        .await;
    }

    async fn on_config(&mut self) {
        let previous =
            std::mem::replace(&mut self.catalog, Catalog::from_node_json(&running(&self.setup.ds)));
        self.sync_links().await;
        self.sync_apps(&previous).await;
        self.publish_view();
    }

    /// Announces application changes since `previous`, records creation times and publishes
    /// the application table.
    async fn sync_apps(&mut self, previous: &Catalog) {
        let apps_json: Vec<Json> =
            running(&self.setup.ds)["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"]["qkd_app"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        let json_of = |id: Uuid| {
            apps_json
                .iter()
                .find(|a| a["app_id"].as_str() == Some(id.to_string().as_str()))
                .cloned()
        };
        for (id, app) in &self.catalog.apps {
            match previous.apps.get(id) {
                None => {
                    if !self.app_created.contains_key(id) {
                        let created = now_rfc3339();
                        if let Err(e) = self.setup.store.set_app_created(*id, Some(&created)) {
                            tracing::warn!(app = %id, error = %e, "creation time not stored");
                        }
                        self.app_created.insert(*id, created);
                    }
                    if let Some(j) = json_of(*id) {
                        self.publish(notify::application_new(&j));
                    }
                }
                Some(old) => {
                    let qos_changed = (old.max_bandwidth, old.min_bandwidth, old.ttl, old.priority)
                        != (app.max_bandwidth, app.min_bandwidth, app.ttl, app.priority);
                    if qos_changed && let Some(j) = json_of(*id) {
                        self.publish(notify::application_qos_update(&j));
                    }
                }
            }
        }
        for id in previous.apps.keys().filter(|id| !self.catalog.apps.contains_key(id)) {
            self.publish(notify::application_disconnected(*id));
            self.app_created.remove(id);
            self.app_status.remove(id);
            self.app_stats.remove(id);
            self.app_bits.remove(id);
            if let Err(e) = self.setup.store.set_app_created(*id, None) {
                tracing::warn!(app = %id, error = %e, "creation time not removed");
            }
        }
        let table: Vec<Application> = self.catalog.apps.values().cloned().collect();
        self.setup.applications.send_replace(Arc::new(table));
        self.write_app_state(false).await;
    }

    /// Whether a link carries keys now (physical: its device reports it up; virtual: every
    /// physical hop is up).
    fn link_active(&self, link: Uuid) -> bool {
        if self.catalog.phys.contains_key(&link) {
            return self.up.get(&link).copied().unwrap_or(false);
        }
        match self.catalog.virt.get(&link) {
            Some(v) => {
                let hops = self.catalog.hops_of(v);
                v.enabled
                    && !hops.is_empty()
                    && hops.iter().all(|h| self.up.get(h).copied().unwrap_or(false))
            }
            None => false,
        }
    }

    /// The application's `app_status`, and why it is not `ON`.
    fn app_state_of(&self, app: &Application) -> (&'static str, String) {
        let expired = app
            .expiration_time
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .is_some_and(|t| t < SystemTime::now());
        if expired {
            return ("OUT-OF-TIME", "the application is past its expiration time".into());
        }
        if app.backing_links.is_empty() || !app.backing_links.iter().all(|l| self.link_active(*l)) {
            return ("DISCONNECTED", "a link backing the application carries no keys".into());
        }
        match self.setup.usage.starved_for(app.id) {
            Some(starved) if starved >= STARVED_AFTER => (
                "DISCONNECTED",
                format!(
                    "the key store cannot serve the application: its requests have been refused \
                     for lack of key material for {} s",
                    starved.as_secs()
                ),
            ),
            _ => ("ON", String::new()),
        }
    }

    /// Writes `app_status` and `creation_time` of every application, and with `statistics` a
    /// new `app_statistics` entry.
    async fn write_app_state(&mut self, statistics: bool) {
        let now = SystemTime::now();
        let start = humantime::format_rfc3339_seconds(self.last_period).to_string();
        let end = humantime::format_rfc3339_seconds(now).to_string();
        let apps: Vec<Application> = self.catalog.apps.values().cloned().collect();
        for app in apps {
            let (status, why) = self.app_state_of(&app);
            let previous = self.app_status.insert(app.id, status);
            if previous == Some("ON") && status == "DISCONNECTED" {
                tracing::warn!(app = %app.id, "application disconnected: {why}");
                self.publish(notify::application_disconnected(app.id));
                self.publish(notify::alarm(
                    &Subject::Application(app.id, "DISCONNECTED"),
                    &why,
                    Severity::Major,
                ));
            } else if previous.is_some_and(|p| p != "ON") && status == "ON" {
                tracing::info!(app = %app.id, "application served again");
                self.publish(notify::event(
                    &Subject::Application(app.id, "ON"),
                    "the application's links carry keys again and its requests are served",
                    Severity::Minor,
                ));
            }
            let mut state = json!({"app_id": app.id.to_string(), "app_status": format!("etsi-qkd-node-types:{status}")});
            if let Some(created) = self.app_created.get(&app.id) {
                state["creation_time"] = json!(created);
            }
            self.merge_state(&app_path(app.id), json!({"etsi-qkd-sdn-node:qkd_app": [state]}))
                .await;
            if statistics && start != end {
                let total = self.setup.usage.consumed_bits(app.id);
                let last = self.app_bits.insert(app.id, total).unwrap_or(total);
                let ring = self.app_stats.entry(app.id).or_default();
                if ring.len() == STATISTICS_KEPT {
                    ring.pop_front();
                }
                ring.push_back(json!({"end_time": end, "start_time": start, "consumed_bits": clamp32(total.saturating_sub(last))}));
                let entries: Vec<Json> = ring.iter().cloned().collect();
                if let Err(e) = self
                    .setup
                    .ds
                    .set_state(
                        &format!("{}/app_statistics", app_path(app.id)),
                        json!({"etsi-qkd-sdn-node:app_statistics": {"statistics": entries}}),
                    )
                    .await
                {
                    tracing::warn!(app = %app.id, error = %e, "statistics not written");
                }
            }
        }
    }

    /// The performance of every link: written to the state, announced, checked for overload.
    async fn periodic(&mut self) {
        let mut entries = Vec::new();
        let mut notes = Vec::new();
        for p in self.catalog.phys.values() {
            let Some(m) = self.measurements.get(&p.id) else {
                continue;
            };
            let (relay, demand) = self.catalog.committed_on(p.id);
            let eskr = m.skr_bps.saturating_sub(relay);
            let mut perf = json!({"expected_consumption": clamp32(demand), "skr": clamp32(m.skr_bps), "eskr": clamp32(eskr)});
            let mut phys = Vec::new();
            if m.qber.is_finite() {
                phys.push(json!({"perf_type": "etsi-qkd-node-types:QBER", "value": format!("{:.3}", m.qber.clamp(0.0, 1.0))}));
            }
            if m.snr_db.is_finite() {
                phys.push(json!({"perf_type": "etsi-qkd-node-types:SNR", "value": format!("{:.3}", m.snr_db.clamp(-1.0e6, 1.0e6))}));
            }
            if !phys.is_empty() {
                perf["phys_perf"] = json!(phys);
            }
            entries.push(json!({"qkdl_id": p.id.to_string(), "qkdl_performance": perf.clone()}));
            notes.push((p.id, perf, demand, m.skr_bps, eskr));
        }
        for v in self.catalog.virt.values() {
            let skr = if self.link_active(v.id) { u64::from(v.bandwidth) } else { 0 };
            let demand = self.catalog.app_demand_on(v.id);
            let perf = json!({"expected_consumption": clamp32(demand), "skr": clamp32(skr), "eskr": clamp32(skr)});
            entries.push(json!({"qkdl_id": v.id.to_string(), "qkdl_performance": perf.clone()}));
            notes.push((v.id, perf, demand, skr, skr));
        }
        if !entries.is_empty() {
            self.merge_state(
                &format!("{NODE}/qkd_links"),
                json!({"etsi-qkd-sdn-node:qkd_links": {"qkd_link": entries}}),
            )
            .await;
        }
        for (link, perf, demand, skr, eskr) in notes {
            self.publish(notify::link_perf_update(link, &perf));
            let over = demand > eskr;
            if over && self.overloaded.insert(link) {
                self.publish(notify::link_overloaded(link, demand, skr, eskr));
                self.publish(notify::alarm(
                    &Subject::Link(link, if self.link_active(link) { "ACTIVE" } else { "PASSIVE" }),
                    &format!("expected consumption {demand} bit/s exceeds the effective secret key rate {eskr} bit/s"),
                    Severity::Minor,
                ));
            } else if !over && self.overloaded.remove(&link) {
                self.publish(notify::event(
                    &Subject::Link(link, if self.link_active(link) { "ACTIVE" } else { "PASSIVE" }),
                    "the link is no longer overloaded",
                    Severity::Minor,
                ));
            }
        }
        self.write_app_state(true).await;
        self.last_period = SystemTime::now();
        self.publish_view();
    }

    fn publish_view(&self) {
        let links = self
            .driven
            .iter()
            .map(|(id, d)| {
                let m = self.measurements.get(id);
                LinkView {
                    link: *id,
                    interface: d.spec.interface,
                    driver: d.driver,
                    up: self.up.get(id).copied().unwrap_or(false),
                    skr_bps: m.map(|m| m.skr_bps),
                    qber: m.map(|m| m.qber).filter(|q| q.is_finite()),
                    snr_db: m.map(|m| m.snr_db).filter(|s| s.is_finite()),
                }
            })
            .collect();
        let mut failed: Vec<u32> = self.failed.iter().copied().collect();
        failed.sort_unstable();
        self.setup.view.send_replace(Arc::new(LiveView { links, failed_interfaces: failed }));
    }
}
