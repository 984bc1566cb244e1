//! Applications as the controller registers them: the request (server SAE and node, client
//! SAEs and nodes, QoS), its validation with the path of every field at fault, the stored
//! record with its paths, and the ETSI 015 entries each node of a path must hold for it
//! ([`desired_entries`]): a VIRT `qkd_link` on every node of a multi-hop path, and a `qkd_app`
//! at each end backed by that link (or by the physical link when the ends are neighbours).
//!
//! Entry ids are derived from the application id, so writing them again after a crash or a
//! retry is idempotent.

use std::collections::BTreeSet;

use qkdn_yang::etsi015::{AppQos, AppType, LinkEnd, LinkType, QkdApp, QkdLink};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use uuid::Uuid;

/// One end: an SAE and its node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The SAE's identifier (as in its certificate; ETSI 014 `SAE_ID`).
    pub sae_id: String,
    /// Its node's `qkdn_id`.
    pub node: Uuid,
}

/// What the application asks of its key supply: the one place a QoS field is declared (the
/// REST request is read from it, member by member; [`Qos::app_qos`] and [`Qos::from_app_qos`]
/// map it to and from the 015 `app_qos`; the OpenAPI document describes it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qos {
    /// Key rate to reserve along the path, bit/s (015 `virt_bandwidth`, `min_bandwidth`).
    #[serde(default)]
    pub rate_bps: u64,
    /// Most the application may draw, bit/s (015 `max_bandwidth`); none: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_bps: Option<u64>,
    /// Lifetime of its keys, seconds (015 `ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u32>,
    /// Most physical links on a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hops: Option<usize>,
    /// Nodes a path must cross, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_nodes: Vec<Uuid>,
    /// Nodes a path must not cross.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub exclude_nodes: BTreeSet<Uuid>,
    /// Locations (`qkdn_location_id`) a path must not cross.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub exclude_locations: BTreeSet<String>,
    /// 015 `app_priority`.
    #[serde(default)]
    pub priority: u32,
}

impl Qos {
    /// The rate the agents count as the application's demand (max, else min bandwidth).
    pub fn demand_bps(&self) -> u64 {
        self.max_rate_bps.unwrap_or(self.rate_bps)
    }
}

/// A registration request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    /// Client-supplied id (makes the request idempotent); generated when absent.
    pub app_id: Uuid,
    /// The SAE that asks for keys first (ETSI 014 master).
    pub server: Endpoint,
    /// The SAEs that receive the same keys (slaves).
    pub clients: Vec<Endpoint>,
    /// Requirements.
    pub qos: Qos,
}

mod request;

pub use request::{FieldError, parse_spec};

/// Where an application stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppState {
    /// Its entries are being written (or, after a restart, rolled back).
    Provisioning,
    /// Every leg has a path and the nodes hold its entries.
    Active,
    /// Some leg lost its path; its entries stay (stored keys remain usable) and it is
    /// restored when a path returns.
    NoPath,
    /// Registered through ETSI 018 without a path yet (deployed by a later operation).
    Registered,
}

/// The path of one client node's keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The client node.
    pub client_node: Uuid,
    /// The link backing the application: a VIRT link made for it, or the physical link
    /// joining neighbouring ends.
    pub link: Uuid,
    /// Nodes from the server's node to the client's, when routed.
    pub nodes: Vec<Uuid>,
    /// Physical links between them.
    pub links: Vec<Uuid>,
}

impl Leg {
    /// Whether the leg relays keys over a virtual link.
    pub fn is_virtual(&self) -> bool {
        self.links.len() > 1
    }
}

/// A registered application, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Application {
    /// The registration.
    pub spec: AppSpec,
    /// State.
    pub state: AppState,
    /// Why it is not active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One per client node, in the order of first appearance; empty legs have no path.
    pub legs: Vec<Leg>,
    /// Registration time, RFC 3339.
    pub created: String,
    /// Times it was moved to another path.
    #[serde(default)]
    pub reroutes: u64,
    /// Paths computed for it on request (ETSI 018 candidate paths), cheapest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// When this controller holds only a segment of a service that crosses domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
}

/// A segment of a service that crosses domains: this controller writes the service's virtual
/// link on the nodes of its leg only, continuing from `upstream` and towards `downstream`
/// (nodes of the neighbouring domains), and the application only at the service's ends it
/// holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The node before the segment's first node, in the upstream domain.
    pub upstream: Option<Uuid>,
    /// The node after the segment's last node, in the downstream domain.
    pub downstream: Option<Uuid>,
}

/// A candidate path of an application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Nodes from the server's node to the client's.
    pub nodes: Vec<Uuid>,
    /// Physical links between them.
    pub links: Vec<Uuid>,
}

impl AppSpec {
    /// The client nodes, each once, in order.
    pub fn client_nodes(&self) -> Vec<Uuid> {
        let mut nodes = Vec::new();
        for c in &self.clients {
            if !nodes.contains(&c.node) {
                nodes.push(c.node);
            }
        }
        nodes
    }
}

/// A derived identifier: `app_id` for the application's own entries when it has one client,
/// else a stable UUID from the application id and a label.
pub fn derived_id(app: Uuid, label: &str) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(app.as_bytes());
    h.update(label.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    Uuid::new_v8(bytes)
}

/// The virtual link of the leg to `client_node`.
pub fn virtual_link_id(app: Uuid, client_node: Uuid) -> Uuid {
    derived_id(app, &format!("virtual-link:{client_node}"))
}

/// Kind of a 015 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A `qkd_link`.
    Link,
    /// A `qkd_app`.
    App,
}

/// The content of an entry: a typed 015 list entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EntryBody {
    /// A `qkd_link`.
    Link(QkdLink),
    /// A `qkd_app`.
    App(QkdApp),
}

/// One entry a node holds for an application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The node.
    pub node: Uuid,
    /// Link or application.
    pub kind: EntryKind,
    /// `qkdl_id` or `app_id`.
    pub id: Uuid,
    /// The list entry's content.
    pub body: EntryBody,
}

impl Entry {
    /// The entry's RESTCONF data path below `/restconf/data`.
    pub fn path(&self) -> String {
        match self.kind {
            EntryKind::Link => {
                format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={}", self.id)
            }
            EntryKind::App => {
                format!("/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app={}", self.id)
            }
        }
    }

    /// The PUT body.
    pub fn document(&self) -> Json {
        match &self.body {
            EntryBody::Link(link) => json!({"etsi-qkd-sdn-node:qkd_link": [link]}),
            EntryBody::App(app) => json!({"etsi-qkd-sdn-node:qkd_app": [app]}),
        }
    }

    /// The `qkd_link`, if it is one.
    pub fn link(&self) -> Option<&QkdLink> {
        match &self.body {
            EntryBody::Link(link) => Some(link),
            EntryBody::App(_) => None,
        }
    }

    /// The `qkd_app`, if it is one.
    pub fn app(&self) -> Option<&QkdApp> {
        match &self.body {
            EntryBody::App(app) => Some(app),
            EntryBody::Link(_) => None,
        }
    }

    /// The key of the entry in the controller's store.
    pub fn key(&self) -> String {
        entry_key(self.node, self.kind, self.id)
    }
}

/// `node/kind/id`.
pub fn entry_key(node: Uuid, kind: EntryKind, id: Uuid) -> String {
    format!(
        "{node}/{}/{id}",
        match kind {
            EntryKind::Link => "link",
            EntryKind::App => "app",
        }
    )
}

impl Qos {
    /// The QoS an 015 `app_qos` and `app_priority` ask for (the rate: the minimum bandwidth,
    /// else the maximum).
    pub fn from_app_qos(qos: &AppQos, priority: Option<u32>) -> Qos {
        Qos {
            rate_bps: u64::from(qos.min_bandwidth.or(qos.max_bandwidth).unwrap_or(0)),
            max_rate_bps: qos.max_bandwidth.map(u64::from),
            ttl_s: qos.ttl,
            priority: priority.unwrap_or(0),
            ..Qos::default()
        }
    }

    /// The application's `app_qos`.
    pub fn app_qos(&self) -> AppQos {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        AppQos {
            min_bandwidth: Some(clamp(self.rate_bps)),
            max_bandwidth: self.max_rate_bps.map(clamp),
            ttl: self.ttl_s,
            ..AppQos::default()
        }
    }
}

/// A VIRT `qkd_link` at `node` towards `remote`, between hops `prev` and `next`.
fn virt_link(
    link: Uuid,
    node: Uuid,
    remote: Uuid,
    hops: [Option<Uuid>; 2],
    bandwidth: u32,
) -> QkdLink {
    let end = |n: Uuid| Some(LinkEnd { qkdn_id: Some(n), qkdi_id: None });
    QkdLink {
        qkdl_id: link,
        qkdl_type: Some(LinkType::Virt),
        qkdl_local: end(node),
        qkdl_remote: end(remote),
        virt_prev_hop: hops[0],
        virt_next_hop: hops[1].into_iter().collect(),
        virt_bandwidth: Some(bandwidth),
        ..QkdLink::default()
    }
}

/// The entries the nodes must hold for `app` with its current legs (links first, then
/// applications; none when it has no path).
pub fn desired_entries(app: &Application) -> Vec<Entry> {
    let spec = &app.spec;
    if app.legs.is_empty() {
        return Vec::new();
    }
    let single = spec.clients.len() == 1;
    let bandwidth = u32::try_from(spec.qos.demand_bps()).unwrap_or(u32::MAX);
    let mut links = Vec::new();
    let mut apps = Vec::new();
    for (i, leg) in app.legs.iter().enumerate() {
        if let Some(seg) = &app.segment {
            links.extend(segment_links(spec, seg, leg, bandwidth));
        } else if leg.is_virtual() {
            let far = *leg.nodes.last().expect("a virtual leg has nodes");
            let last = leg.nodes.len() - 1;
            for (k, node) in leg.nodes.iter().enumerate() {
                let remote = if k == last { spec.server.node } else { far };
                let prev = (k > 0).then(|| leg.nodes[k - 1]);
                let next = leg.nodes.get(k + 1).copied();
                let body = virt_link(leg.link, *node, remote, [prev, next], bandwidth);
                links.push(Entry {
                    node: *node,
                    kind: EntryKind::Link,
                    id: leg.link,
                    body: EntryBody::Link(body),
                });
            }
        }
        let leg_clients: Vec<&Endpoint> =
            spec.clients.iter().filter(|c| c.node == leg.client_node).collect();
        let entry = |id: Uuid, local: Uuid, remote: Uuid, server: &str, clients: Vec<String>| {
            let body = QkdApp {
                app_id: id,
                app_type: Some(AppType::Client),
                server_app_id: Some(server.to_owned()),
                client_app_id: clients,
                app_priority: Some(spec.qos.priority),
                app_qos: Some(spec.qos.app_qos()),
                backing_qkdl_id: vec![leg.link],
                local_qkdn_id: Some(local),
                remote_qkdn_id: Some(remote),
                ..QkdApp::default()
            };
            Entry { node: local, kind: EntryKind::App, id, body: EntryBody::App(body) }
        };
        let server_id =
            if single { spec.app_id } else { derived_id(spec.app_id, &format!("server:{i}")) };
        // A segment holds the application only at the service's ends it reaches.
        let holds = |node: Uuid| app.segment.is_none() || leg.nodes.contains(&node);
        if holds(spec.server.node) {
            let clients = leg_clients.iter().map(|c| c.sae_id.clone()).collect();
            apps.push(entry(
                server_id,
                spec.server.node,
                leg.client_node,
                &spec.server.sae_id,
                clients,
            ));
        }
        for c in leg_clients.into_iter().filter(|_| holds(leg.client_node)) {
            let id = if single {
                spec.app_id
            } else {
                derived_id(spec.app_id, &format!("client:{}", c.sae_id))
            };
            let server = vec![spec.server.sae_id.clone()];
            apps.push(entry(id, leg.client_node, spec.server.node, &c.sae_id, server));
        }
    }
    links.extend(apps);
    links
}

/// The virtual link entries of a segment: on each of its nodes, with the hops before and after
/// the segment in the neighbouring domains.
fn segment_links(spec: &AppSpec, seg: &Segment, leg: &Leg, bandwidth: u32) -> Vec<Entry> {
    let last = leg.nodes.len().saturating_sub(1);
    leg.nodes
        .iter()
        .enumerate()
        .map(|(k, node)| {
            let far = if *node == leg.client_node { spec.server.node } else { leg.client_node };
            let prev = if k == 0 { seg.upstream } else { Some(leg.nodes[k - 1]) };
            let next = if k == last { seg.downstream } else { Some(leg.nodes[k + 1]) };
            let body = virt_link(leg.link, *node, far, [prev, next], bandwidth);
            Entry { node: *node, kind: EntryKind::Link, id: leg.link, body: EntryBody::Link(body) }
        })
        .collect()
}

#[cfg(test)]
mod tests;
