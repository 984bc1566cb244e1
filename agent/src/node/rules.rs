//! The agent's say on every configuration change: checks of meaning beyond the schema, and
//! durability. A change is refused (and nothing is applied) when it
//!
//! * changes the node's identity or its interfaces (defined by the agent's configuration);
//! * changes a physical link of the configuration other than its `qkdl_enable`, `qkdl_status`
//!   or `qkdl_applications`, or deletes one;
//! * names a local interface, node or link that does not exist, or a node that is not a
//!   neighbour where relaying needs one (virtual link hops must be the remote nodes of this
//!   node's physical links);
//! * asks for more key rate than the physical links can give (`virt_bandwidth` and application
//!   bandwidth against the measured, or else nominal, secret key rate);
//! * deletes a link that an application still uses.
//!
//! An accepted change is written to the durable store before it is committed, so whatever a
//! client was told succeeded survives a crash. The agent's own writes (origin `agent`, such as
//! link status from the devices) skip the checks.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use qkdn_yang::datastore::{CommitHook, Transaction};
use qkdn_yang::path::Selector;
use qkdn_yang::tree::Value;
use qkdn_yang::tree::diff::ChangeOp;
use qkdn_yang::{DataError, DataPath, ErrorTag};
use tokio::sync::watch;
use uuid::Uuid;

use super::catalog::Catalog;
use super::durable::NodeStore;

/// Origin of the agent's own edits.
pub const AGENT_ORIGIN: &str = "agent";

/// The commit hook of the node.
pub struct NodeRules {
    node: Uuid,
    protected_links: BTreeSet<Uuid>,
    capacity: watch::Receiver<Arc<HashMap<Uuid, u64>>>,
    store: Arc<NodeStore>,
    persist: AtomicBool,
}

impl NodeRules {
    /// Rules for node `node`, whose configuration defines the physical links
    /// `protected_links`; `capacity` gives the available secret key rate of physical links.
    pub fn new(
        node: Uuid,
        protected_links: impl IntoIterator<Item = Uuid>,
        capacity: watch::Receiver<Arc<HashMap<Uuid, u64>>>,
        store: Arc<NodeStore>,
    ) -> Arc<NodeRules> {
        Arc::new(NodeRules {
            node,
            protected_links: protected_links.into_iter().collect(),
            capacity,
            store,
            persist: AtomicBool::new(false),
        })
    }

    /// Starts (or stops) writing accepted changes to the durable store.
    pub fn set_persist(&self, on: bool) {
        self.persist.store(on, Ordering::SeqCst);
    }
}

/// A hook that shares the rules (the datastore takes ownership of its hook).
pub struct SharedRules(pub Arc<NodeRules>);

impl CommitHook for SharedRules {
    fn prepare(&self, tx: &Transaction<'_>) -> Result<(), DataError> {
        self.0.prepare(tx)
    }
}

fn node_path(tx: &Transaction<'_>) -> DataPath {
    DataPath::parse_restconf(tx.context(), "/etsi-qkd-sdn-node:qkd_node")
        .expect("the 015 module is loaded")
}

impl NodeRules {
    fn prepare(&self, tx: &Transaction<'_>) -> Result<(), DataError> {
        let candidate = tx.candidate_json(&node_path(tx)).ok_or_else(|| {
            DataError::invalid_value("the SD-QKD node itself cannot be deleted")
                .at("/etsi-qkd-sdn-node:qkd_node")
        })?;
        if tx.origin() != Some(AGENT_ORIGIN) {
            self.check(tx, &Catalog::from_node_json(&candidate))?;
        }
        if self.persist.load(Ordering::SeqCst) {
            self.store.save_running(&candidate).map_err(|e| {
                DataError::internal(format!("the change could not be made durable: {e}"))
                    .with_status(503)
            })?;
        }
        Ok(())
    }

    fn check(&self, tx: &Transaction<'_>, catalog: &Catalog) -> Result<(), DataError> {
        let schema = tx.context().schema();
        let mut touched_links: BTreeSet<Uuid> = BTreeSet::new();
        let mut touched_apps: BTreeSet<Uuid> = BTreeSet::new();
        for change in tx.changes() {
            let at = change.path.to_instance_identifier(schema);
            let names: Vec<&str> =
                change.path.steps().iter().map(|s| schema.node(s.node).name.as_str()).collect();
            let key_of = |list: &str| -> Option<Uuid> {
                let step = change.path.steps().iter().find(|s| schema.node(s.node).name == list)?;
                match &step.selector {
                    Selector::Key(k) => match k.values().first() {
                        Some(Value::Text(t)) => t.parse().ok(),
                        _ => None,
                    },
                    _ => None,
                }
            };
            match names.get(1).copied() {
                Some("qkdn_id") => {
                    return Err(refuse("the node's id is set by the agent's configuration", &at));
                }
                Some("qkd_interfaces") => {
                    return Err(refuse(
                        "interfaces are defined by the agent's configuration (change it there and \
                         restart the agent)",
                        &at,
                    ));
                }
                _ => {}
            }
            // A change at or above a list's container (created, replaced or deleted as a whole)
            // touches every entry of the list.
            if names.len() <= 2 && names.get(1).is_none_or(|n| *n == "qkd_links") {
                touched_links.extend(catalog.phys.keys().chain(catalog.virt.keys()));
                touched_links.extend(catalog.untyped.iter().copied());
                for id in &self.protected_links {
                    if !catalog.phys.contains_key(id) {
                        return Err(refuse(
                            &format!(
                                "physical link {id} is defined by the agent's configuration and \
                                 cannot be deleted"
                            ),
                            &at,
                        ));
                    }
                }
            }
            if names.len() <= 2 && names.get(1).is_none_or(|n| *n == "qkd_applications") {
                touched_apps.extend(catalog.apps.keys().copied());
            }
            if let Some(link) = key_of("qkd_link") {
                touched_links.insert(link);
                let leaf = names.get(3).copied();
                let writable =
                    matches!(leaf, Some("qkdl_enable" | "qkdl_status" | "qkdl_applications"));
                if self.protected_links.contains(&link) && !writable {
                    let what = if names.len() == 3 && change.op == ChangeOp::Deleted {
                        "this physical link is defined by the agent's configuration and cannot be \
                         deleted"
                    } else {
                        "this physical link is defined by the agent's configuration; only \
                         qkdl_enable, qkdl_status and qkdl_applications can be changed"
                    };
                    return Err(refuse(what, &at));
                }
            }
            if let Some(app) = key_of("qkd_app") {
                touched_apps.insert(app);
            }
        }
        // Every application's links exist, whatever the change touched (this also refuses
        // deleting a link that an application uses).
        for app in catalog.apps.values() {
            if let Some(missing) = app.backing_links.iter().find(|l| !catalog.has_link(**l)) {
                let at = format!(
                    "/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app[app_id='{}']/backing_qkdl_id",
                    app.id
                );
                let message = if touched_apps.contains(&app.id) {
                    format!("there is no link {missing} on this node")
                } else {
                    format!(
                        "link {missing} backs application {}; change or delete the application first",
                        app.id
                    )
                };
                return Err(refuse(&message, &at));
            }
        }
        let link_at =
            |id: Uuid| format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link[qkdl_id='{id}']");
        let neighbours = catalog.neighbours();
        for id in &touched_links {
            if catalog.untyped.contains(id) {
                return Err(refuse(
                    "qkdl_type is required: etsi-qkd-node-types:PHYS or etsi-qkd-node-types:VIRT",
                    &link_at(*id),
                ));
            }
            if let Some(p) = catalog.phys.get(id) {
                let Some(iface) = p.local_interface else {
                    return Err(refuse("a physical link needs qkdl_local/qkdi_id", &link_at(*id)));
                };
                if !catalog.interfaces.contains(&iface) {
                    return Err(refuse(
                        &format!("there is no local interface {iface}"),
                        &format!("{}/qkdl_local/qkdi_id", link_at(*id)),
                    ));
                }
                if let Some(other) =
                    catalog.phys.values().find(|o| o.id != *id && o.local_interface == Some(iface))
                {
                    return Err(refuse(
                        &format!("interface {iface} already carries physical link {}", other.id),
                        &format!("{}/qkdl_local/qkdi_id", link_at(*id)),
                    ));
                }
                self.check_far_end(
                    p.remote_node,
                    "a physical link needs qkdl_remote/qkdn_id",
                    &link_at(*id),
                )?;
                if p.remote_interface.is_none() {
                    return Err(refuse("a physical link needs qkdl_remote/qkdi_id", &link_at(*id)));
                }
            }
            if let Some(v) = catalog.virt.get(id) {
                // At an end, qkdl_local is this node; a node in the middle may name the link's
                // source there instead (TeraFlowSDN writes the link's ends at every node).
                let middle = v.prev_hop.is_some() && !v.next_hops.is_empty();
                if let Some(local) = v.local_node
                    && local != self.node
                    && (!middle || Some(local) == v.remote_node)
                {
                    return Err(refuse(
                        &format!(
                            "{local} is not this node ({}); only a node in the middle of a \
                             virtual link may name the link's other end in qkdl_local",
                            self.node
                        ),
                        &format!("{}/qkdl_local/qkdn_id", link_at(*id)),
                    ));
                }
                self.check_far_end(
                    v.remote_node,
                    "a virtual link needs qkdl_remote/qkdn_id (its far end)",
                    &link_at(*id),
                )?;
                for (leaf, hop) in v
                    .prev_hop
                    .iter()
                    .map(|h| ("virt_prev_hop", h))
                    .chain(v.next_hops.iter().map(|h| ("virt_next_hop", h)))
                {
                    if !neighbours.contains_key(hop) {
                        let known: Vec<String> = neighbours.keys().map(Uuid::to_string).collect();
                        return Err(refuse(
                            &format!(
                                "node {hop} is not a neighbour of this node (no physical link reaches it; neighbours: {})",
                                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                            ),
                            &format!("{}/{leaf}", link_at(*id)),
                        ));
                    }
                }
                if v.prev_hop.is_none() && v.next_hops.is_empty() {
                    return Err(refuse(
                        "a virtual link needs virt_prev_hop or virt_next_hop",
                        &link_at(*id),
                    ));
                }
                self.check_capacity(
                    catalog,
                    v.id,
                    v.bandwidth,
                    &catalog.hops_of(v),
                    &link_at(*id),
                )?;
            }
        }
        let app_at = |id: Uuid| {
            format!("/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app[app_id='{id}']")
        };
        for id in &touched_apps {
            let Some(app) = catalog.apps.get(id) else {
                continue;
            };
            for link in &app.backing_links {
                if !catalog.has_link(*link) {
                    return Err(refuse(
                        &format!("there is no link {link} on this node"),
                        &format!("{}/backing_qkdl_id", app_at(*id)),
                    ));
                }
            }
            if let Some(local) = app.local_node
                && local != self.node
            {
                return Err(refuse(
                    &format!("{local} is not this node ({})", self.node),
                    &format!("{}/local_qkdn_id", app_at(*id)),
                ));
            }
            // One application per SAE pair (server SAE here, client SAE there): the KMS serves
            // a pair by its application, so no application id can take over another's pair.
            if let Some(server) = &app.server_sae {
                let taken = catalog.apps.values().find(|other| {
                    other.id != app.id
                        && other.server_sae.as_ref() == Some(server)
                        && other.client_saes.iter().any(|c| app.client_saes.contains(c))
                });
                if let Some(other) = taken {
                    return Err(DataError::new(
                        ErrorTag::DataExists,
                        format!(
                            "the SAE pair of {server} is served by application {}; delete it first",
                            other.id
                        ),
                    )
                    .at(format!("{}/client_app_id", app_at(*id))));
                }
            }
            if let (Some(min), Some(max)) = (app.min_bandwidth, app.max_bandwidth)
                && min > max
            {
                return Err(refuse(
                    &format!("min_bandwidth {min} is above max_bandwidth {max}"),
                    &format!("{}/app_qos", app_at(*id)),
                ));
            }
            let demand = app.max_bandwidth.or(app.min_bandwidth).unwrap_or(0);
            for link in &app.backing_links {
                if let Some(v) = catalog.virt.get(link) {
                    let total = catalog.app_demand_on(*link);
                    if total > u64::from(v.bandwidth) && v.bandwidth > 0 {
                        return Err(DataError::new(
                            ErrorTag::ResourceDenied,
                            format!(
                                "the applications on virtual link {link} would ask for {total} bit/s; its virt_bandwidth is {} bit/s",
                                v.bandwidth
                            ),
                        )
                        .at(format!("{}/app_qos", app_at(*id))));
                    }
                } else if catalog.phys.contains_key(link) {
                    self.check_capacity(
                        catalog,
                        *id,
                        demand,
                        &[*link],
                        &format!("{}/app_qos", app_at(*id)),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// A link's far end: present, and not this node.
    fn check_far_end(
        &self,
        remote: Option<Uuid>,
        missing: &str,
        link_at: &str,
    ) -> Result<(), DataError> {
        match remote {
            None => Err(refuse(missing, link_at)),
            Some(n) if n == self.node => Err(refuse(
                "a link cannot end at its own node",
                &format!("{link_at}/qkdl_remote/qkdn_id"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Refuses when the physical links `hops` cannot carry what is committed on them.
    fn check_capacity(
        &self,
        catalog: &Catalog,
        what: Uuid,
        rate: u32,
        hops: &[Uuid],
        at: &str,
    ) -> Result<(), DataError> {
        if rate == 0 {
            return Ok(());
        }
        let capacity = self.capacity.borrow().clone();
        for phys in hops {
            let Some(available) = capacity.get(phys).copied() else {
                continue;
            };
            let (relay, apps) = catalog.committed_on(*phys);
            let committed = relay + apps;
            if committed > available {
                let towards = catalog
                    .phys
                    .get(phys)
                    .and_then(|p| p.remote_node)
                    .map(|n| format!(" towards node {n}"))
                    .unwrap_or_default();
                return Err(DataError::new(
                    ErrorTag::ResourceDenied,
                    format!(
                        "{rate} bit/s for {what} does not fit on physical link {phys}{towards}: {committed} bit/s would be committed \
                         of {available} bit/s of secret key rate"
                    ),
                )
                .at(at));
            }
        }
        Ok(())
    }
}

fn refuse(message: &str, at: &str) -> DataError {
    DataError::invalid_value(message).at(at)
}
