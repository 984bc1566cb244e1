//! Applications as the controller registers them: the request (server SAE and node, client
//! SAEs and nodes, QoS), its validation with the path of every field at fault, the stored
//! record with its paths, and the ETSI 015 entries each node of a path must hold for it
//! ([`desired_entries`]): a VIRT `qkd_link` on every node of a multi-hop path, and a `qkd_app`
//! at each end backed by that link (or by the physical link when the ends are neighbours).
//!
//! Entry ids are derived from the application id, so writing them again after a crash or a
//! retry is idempotent.

use std::collections::BTreeSet;

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

/// What the application asks of its key supply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qos {
    /// Key rate to reserve along the path, bit/s (015 `virt_bandwidth`, `min_bandwidth`).
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

/// A field at fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer to the field (`/qos/rate_bps`).
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

fn fault(pointer: &str, detail: impl Into<String>) -> FieldError {
    FieldError { pointer: pointer.to_owned(), detail: detail.into() }
}

const SPEC_FIELDS: [&str; 4] = ["app_id", "server", "clients", "qos"];
const QOS_FIELDS: [&str; 8] = [
    "rate_bps",
    "max_rate_bps",
    "ttl_s",
    "max_hops",
    "include_nodes",
    "exclude_nodes",
    "exclude_locations",
    "priority",
];

/// Reads a registration, collecting every field at fault rather than stopping at the first.
pub fn parse_spec(body: &Json) -> Result<AppSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec![fault("", "the body must be a JSON object")]);
    };
    for k in obj.keys().filter(|k| !SPEC_FIELDS.contains(&k.as_str())) {
        errors.push(fault(
            &format!("/{k}"),
            format!("unknown field; expected one of {SPEC_FIELDS:?}"),
        ));
    }
    let app_id = match obj.get("app_id") {
        None | Some(Json::Null) => Uuid::new_v4(),
        Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => id,
            None => {
                errors.push(fault("/app_id", "must be a UUID string"));
                Uuid::nil()
            }
        },
    };
    let server = endpoint(obj.get("server"), "/server", &mut errors);
    let mut clients = Vec::new();
    match obj.get("clients") {
        Some(Json::Array(list)) if !list.is_empty() => {
            for (i, c) in list.iter().enumerate() {
                if let Some(e) = endpoint(Some(c), &format!("/clients/{i}"), &mut errors) {
                    clients.push(e);
                }
            }
        }
        Some(Json::Array(_)) => errors.push(fault("/clients", "at least one client is needed")),
        None => errors.push(fault("/clients", "required: a list of {sae_id, node}")),
        Some(_) => errors.push(fault("/clients", "must be a list of {sae_id, node}")),
    }
    let qos = qos(obj.get("qos"), &mut errors);
    if let Some(s) = &server {
        for (i, c) in clients.iter().enumerate() {
            if c.sae_id == s.sae_id {
                errors.push(fault(
                    &format!("/clients/{i}/sae_id"),
                    "the server SAE cannot be its own client",
                ));
            }
            if c.node == s.node {
                errors.push(fault(
                    &format!("/clients/{i}/node"),
                    "the client is on the server's node; keys come from QKD links between nodes",
                ));
            }
        }
        if let Some(q) = &qos {
            for (i, n) in q.include_nodes.iter().enumerate() {
                if *n == s.node
                    || clients.iter().any(|c| c.node == *n)
                    || q.exclude_nodes.contains(n)
                {
                    errors.push(fault(
                        &format!("/qos/include_nodes/{i}"),
                        "an end of the application, or excluded, cannot be a node to include",
                    ));
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, c) in clients.iter().enumerate() {
        if !seen.insert(&c.sae_id) {
            errors.push(fault(&format!("/clients/{i}/sae_id"), "named twice"));
        }
    }
    if clients.iter().map(|c| c.node).collect::<BTreeSet<_>>().len() > 1
        && qos.as_ref().is_some_and(|q| !q.include_nodes.is_empty())
    {
        errors.push(fault(
            "/qos/include_nodes",
            "only for applications whose clients share one node",
        ));
    }
    match (errors.is_empty(), server, qos) {
        (true, Some(server), Some(qos)) => Ok(AppSpec { app_id, server, clients, qos }),
        _ => Err(errors),
    }
}

fn endpoint(v: Option<&Json>, at: &str, errors: &mut Vec<FieldError>) -> Option<Endpoint> {
    let Some(obj) = v.and_then(Json::as_object) else {
        errors.push(fault(at, "required: an object {sae_id, node}"));
        return None;
    };
    for k in obj.keys().filter(|k| *k != "sae_id" && *k != "node") {
        errors.push(fault(&format!("{at}/{k}"), "unknown field; expected sae_id and node"));
    }
    let sae = match obj.get("sae_id").and_then(Json::as_str) {
        Some(s) if valid_sae(s) => Some(s.to_owned()),
        Some(_) => {
            errors.push(fault(
                &format!("{at}/sae_id"),
                "must be 1-255 characters of letters, digits and -._~:/",
            ));
            None
        }
        None => {
            errors.push(fault(&format!("{at}/sae_id"), "required: a string"));
            None
        }
    };
    let node = match obj.get("node").and_then(Json::as_str).map(Uuid::parse_str) {
        Some(Ok(n)) => Some(n),
        _ => {
            errors.push(fault(&format!("{at}/node"), "required: the node's qkdn_id (a UUID)"));
            None
        }
    };
    Some(Endpoint { sae_id: sae?, node: node? })
}

/// SAE identifiers travel in 014 URL paths and 015 `inet:uri` leaves.
fn valid_sae(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:/".contains(&b))
}

fn qos(v: Option<&Json>, errors: &mut Vec<FieldError>) -> Option<Qos> {
    let Some(obj) = v.and_then(Json::as_object) else {
        errors.push(fault("/qos", "required: an object with at least rate_bps"));
        return None;
    };
    let before = errors.len();
    for k in obj.keys().filter(|k| !QOS_FIELDS.contains(&k.as_str())) {
        errors.push(fault(
            &format!("/qos/{k}"),
            format!("unknown field; expected one of {QOS_FIELDS:?}"),
        ));
    }
    let int = |name: &str, max: u64, errors: &mut Vec<FieldError>| -> Option<u64> {
        match obj.get(name) {
            None | Some(Json::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Some(n),
                _ => {
                    errors.push(fault(
                        &format!("/qos/{name}"),
                        format!("must be an integer from 0 to {max}"),
                    ));
                    None
                }
            },
        }
    };
    let rate = int("rate_bps", u64::from(u32::MAX), errors);
    if rate.is_none() && !obj.contains_key("rate_bps") {
        errors.push(fault("/qos/rate_bps", "required: the key rate to reserve, bit/s"));
    }
    if rate == Some(0) {
        errors.push(fault("/qos/rate_bps", "must be above 0"));
    }
    let max_rate = int("max_rate_bps", u64::from(u32::MAX), errors);
    if let (Some(r), Some(m)) = (rate, max_rate)
        && m < r
    {
        errors.push(fault("/qos/max_rate_bps", format!("{m} is below rate_bps {r}")));
    }
    let ttl = int("ttl_s", u64::from(u32::MAX), errors).map(|t| t as u32);
    let max_hops = int("max_hops", 64, errors).map(|h| h as usize);
    if max_hops == Some(0) {
        errors.push(fault("/qos/max_hops", "must be at least 1"));
    }
    let priority = int("priority", u64::from(u32::MAX), errors).unwrap_or(0) as u32;
    let uuids = |name: &str, errors: &mut Vec<FieldError>| -> Vec<Uuid> {
        match obj.get(name) {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(list)) => list
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v.as_str().map(Uuid::parse_str) {
                    Some(Ok(u)) => Some(u),
                    _ => {
                        errors.push(fault(&format!("/qos/{name}/{i}"), "must be a node id (UUID)"));
                        None
                    }
                })
                .collect(),
            Some(_) => {
                errors.push(fault(&format!("/qos/{name}"), "must be a list of node ids"));
                Vec::new()
            }
        }
    };
    let include_nodes = uuids("include_nodes", errors);
    let exclude_nodes = uuids("exclude_nodes", errors).into_iter().collect();
    let exclude_locations = match obj.get("exclude_locations") {
        None | Some(Json::Null) => BTreeSet::new(),
        Some(Json::Array(list)) if list.iter().all(Json::is_string) => {
            list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        Some(_) => {
            errors
                .push(fault("/qos/exclude_locations", "must be a list of location ids (strings)"));
            BTreeSet::new()
        }
    };
    (errors.len() == before).then(|| Qos {
        rate_bps: rate.unwrap_or(0),
        max_rate_bps: max_rate,
        ttl_s: ttl,
        max_hops,
        include_nodes,
        exclude_nodes,
        exclude_locations,
        priority,
    })
}

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

/// One entry a node holds for an application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The node.
    pub node: Uuid,
    /// Link or application.
    pub kind: EntryKind,
    /// `qkdl_id` or `app_id`.
    pub id: Uuid,
    /// The list entry's content (RFC 7951, without the module prefix on members).
    pub body: Json,
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
        match self.kind {
            EntryKind::Link => json!({"etsi-qkd-sdn-node:qkd_link": [self.body]}),
            EntryKind::App => json!({"etsi-qkd-sdn-node:qkd_app": [self.body]}),
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

fn app_qos(qos: &Qos) -> Json {
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let mut q = json!({"min_bandwidth": clamp(qos.rate_bps)});
    if let Some(m) = qos.max_rate_bps {
        q["max_bandwidth"] = json!(clamp(m));
    }
    if let Some(t) = qos.ttl_s {
        q["ttl"] = json!(t);
    }
    q
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
        if leg.is_virtual() {
            let far = *leg.nodes.last().expect("a virtual leg has nodes");
            for (k, node) in leg.nodes.iter().enumerate() {
                let mut body = json!({
                    "qkdl_id": leg.link.to_string(),
                    "qkdl_type": "etsi-qkd-node-types:VIRT",
                    "qkdl_local": {"qkdn_id": node.to_string()},
                    "qkdl_remote": {"qkdn_id": if k + 1 == leg.nodes.len() { spec.server.node } else { far }.to_string()},
                    "virt_bandwidth": bandwidth,
                });
                if k > 0 {
                    body["virt_prev_hop"] = json!(leg.nodes[k - 1].to_string());
                }
                if k + 1 < leg.nodes.len() {
                    body["virt_next_hop"] = json!([leg.nodes[k + 1].to_string()]);
                }
                links.push(Entry { node: *node, kind: EntryKind::Link, id: leg.link, body });
            }
        }
        let leg_clients: Vec<&Endpoint> =
            spec.clients.iter().filter(|c| c.node == leg.client_node).collect();
        let base = |local: Uuid, remote: Uuid, server: &str, clients: Vec<&str>| {
            json!({
                "app_type": "etsi-qkd-node-types:CLIENT",
                "server_app_id": server,
                "client_app_id": clients,
                "app_priority": spec.qos.priority,
                "app_qos": app_qos(&spec.qos),
                "backing_qkdl_id": [leg.link.to_string()],
                "local_qkdn_id": local.to_string(),
                "remote_qkdn_id": remote.to_string(),
            })
        };
        let server_id =
            if single { spec.app_id } else { derived_id(spec.app_id, &format!("server:{i}")) };
        let mut body = base(
            spec.server.node,
            leg.client_node,
            &spec.server.sae_id,
            leg_clients.iter().map(|c| c.sae_id.as_str()).collect(),
        );
        body["app_id"] = json!(server_id.to_string());
        apps.push(Entry { node: spec.server.node, kind: EntryKind::App, id: server_id, body });
        for c in leg_clients {
            let id = if single {
                spec.app_id
            } else {
                derived_id(spec.app_id, &format!("client:{}", c.sae_id))
            };
            let mut body =
                base(leg.client_node, spec.server.node, &c.sae_id, vec![&spec.server.sae_id]);
            body["app_id"] = json!(id.to_string());
            apps.push(Entry { node: leg.client_node, kind: EntryKind::App, id, body });
        }
    }
    links.extend(apps);
    links
}

#[cfg(test)]
mod tests;
