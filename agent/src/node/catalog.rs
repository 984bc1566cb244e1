//! The node's configuration as plain data: interfaces, physical and virtual links and
//! applications, read from the 015 tree (the datastore's running configuration or a candidate).

use std::collections::BTreeMap;

use qkdn_yang::etsi015::{LinkType, QkdApp, QkdInterface, QkdLink, entries};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::kms::Application;

/// A physical link.
#[derive(Clone, Debug, PartialEq)]
pub struct PhysLink {
    /// `qkdl_id`.
    pub id: Uuid,
    /// `qkdl_local/qkdi_id`.
    pub local_interface: Option<u32>,
    /// `qkdl_remote/qkdn_id`.
    pub remote_node: Option<Uuid>,
    /// `qkdl_remote/qkdi_id`.
    pub remote_interface: Option<u32>,
    /// `phys_channel_att`, dB.
    pub attenuation_db: Option<f64>,
    /// `qkdl_enable`.
    pub enabled: bool,
}

/// A virtual (relayed) link.
#[derive(Clone, Debug, PartialEq)]
pub struct VirtLink {
    /// `qkdl_id`.
    pub id: Uuid,
    /// `qkdl_local/qkdn_id`.
    pub local_node: Option<Uuid>,
    /// `qkdl_remote/qkdn_id`.
    pub remote_node: Option<Uuid>,
    /// `virt_prev_hop`.
    pub prev_hop: Option<Uuid>,
    /// `virt_next_hop`.
    pub next_hops: Vec<Uuid>,
    /// `virt_bandwidth`, bit/s.
    pub bandwidth: u32,
    /// `qkdl_enable`.
    pub enabled: bool,
}

/// Everything configured on the node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// `qkdn_id`.
    pub node: Option<Uuid>,
    /// Interface ids.
    pub interfaces: Vec<u32>,
    /// Physical links by id.
    pub phys: BTreeMap<Uuid, PhysLink>,
    /// Virtual links by id.
    pub virt: BTreeMap<Uuid, VirtLink>,
    /// Links of no stated type, by id.
    pub untyped: Vec<Uuid>,
    /// Applications by id.
    pub apps: BTreeMap<Uuid, Application>,
}

impl Catalog {
    /// Reads the configuration part of `{"etsi-qkd-sdn-node:qkd_node": {...}}`.
    pub fn from_node_json(doc: &Json) -> Catalog {
        let node = doc.get("etsi-qkd-sdn-node:qkd_node").unwrap_or(&Json::Null);
        let node_id = node["qkdn_id"].as_str().and_then(|s| s.parse().ok());
        let mut catalog = Catalog { node: node_id, ..Catalog::default() };
        catalog.interfaces = entries(node, "qkd_interfaces", "qkd_interface", QkdInterface::read)
            .into_iter()
            .map(|i| i.qkdi_id)
            .collect();
        for link in entries(node, "qkd_links", "qkd_link", QkdLink::read) {
            let id = link.qkdl_id;
            let enabled = link.enabled();
            let local = link.qkdl_local.clone().unwrap_or_default();
            let remote = link.qkdl_remote.clone().unwrap_or_default();
            match link.qkdl_type {
                Some(LinkType::Phys) => {
                    let attenuation_db =
                        link.phys_channel_att.as_ref().and_then(|s| s.parse().ok());
                    let phys = PhysLink {
                        id,
                        local_interface: local.qkdi_id,
                        remote_node: remote.qkdn_id,
                        remote_interface: remote.qkdi_id,
                        attenuation_db,
                        enabled,
                    };
                    catalog.phys.insert(id, phys);
                }
                Some(LinkType::Virt) => {
                    let virt = VirtLink {
                        id,
                        local_node: local.qkdn_id,
                        remote_node: remote.qkdn_id,
                        prev_hop: link.virt_prev_hop,
                        next_hops: link.virt_next_hop,
                        bandwidth: link.virt_bandwidth.unwrap_or(0),
                        enabled,
                    };
                    catalog.virt.insert(id, virt);
                }
                None => catalog.untyped.push(id),
            }
        }
        for app in entries(node, "qkd_applications", "qkd_app", QkdApp::read) {
            let qos = app.qos();
            let application = Application {
                id: app.app_id,
                server_sae: app.server_app_id,
                client_saes: app.client_app_id,
                backing_links: app.backing_qkdl_id,
                local_node: app.local_qkdn_id,
                remote_node: app.remote_qkdn_id,
                max_bandwidth: qos.max_bandwidth,
                min_bandwidth: qos.min_bandwidth,
                ttl: qos.ttl,
                priority: app.app_priority.unwrap_or(0),
                expiration_time: app.expiration_time,
            };
            catalog.apps.insert(app.app_id, application);
        }
        catalog
    }

    /// Whether a link of any kind has id `id`.
    pub fn has_link(&self, id: Uuid) -> bool {
        self.phys.contains_key(&id) || self.virt.contains_key(&id) || self.untyped.contains(&id)
    }

    /// The nodes at the other end of the physical links (the neighbours keys can be relayed
    /// to), with the link leading there.
    pub fn neighbours(&self) -> BTreeMap<Uuid, Uuid> {
        self.phys.values().filter_map(|p| Some((p.remote_node?, p.id))).collect()
    }

    /// The physical links a virtual link relays over at this node (towards its previous and
    /// next hops).
    pub fn hops_of(&self, virt: &VirtLink) -> Vec<Uuid> {
        let neighbours = self.neighbours();
        virt.prev_hop
            .iter()
            .chain(&virt.next_hops)
            .filter_map(|n| neighbours.get(n).copied())
            .collect()
    }

    /// Key rate committed on physical link `phys`: relays of virtual links through it and
    /// applications backed by it directly, bit/s.
    pub fn committed_on(&self, phys: Uuid) -> (u64, u64) {
        let relay: u64 = self
            .virt
            .values()
            .filter(|v| v.enabled && self.hops_of(v).contains(&phys))
            .map(|v| u64::from(v.bandwidth))
            .sum();
        let apps = self.app_demand_on(phys);
        (relay, apps)
    }

    /// Key rate the applications backed by `link` ask for, bit/s.
    pub fn app_demand_on(&self, link: Uuid) -> u64 {
        self.apps
            .values()
            .filter(|a| a.backing_links.contains(&link))
            .map(|a| u64::from(a.max_bandwidth.or(a.min_bandwidth).unwrap_or(0)))
            .sum()
    }
}
