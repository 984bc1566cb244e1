//! The node's configuration as plain data: interfaces, physical and virtual links and
//! applications, read from the 015 tree (the datastore's running configuration or a candidate).

use std::collections::BTreeMap;

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

fn uuid(v: &Json) -> Option<Uuid> {
    v.as_str().and_then(|s| s.parse().ok())
}

fn uuids(v: &Json) -> Vec<Uuid> {
    v.as_array().into_iter().flatten().filter_map(uuid).collect()
}

fn u32_of(v: &Json) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

impl Catalog {
    /// Reads the configuration part of `{"etsi-qkd-sdn-node:qkd_node": {...}}`.
    pub fn from_node_json(doc: &Json) -> Catalog {
        let node = doc.get("etsi-qkd-sdn-node:qkd_node").unwrap_or(&Json::Null);
        let mut catalog = Catalog { node: uuid(&node["qkdn_id"]), ..Catalog::default() };
        for iface in node["qkd_interfaces"]["qkd_interface"].as_array().into_iter().flatten() {
            if let Some(id) = u32_of(&iface["qkdi_id"]) {
                catalog.interfaces.push(id);
            }
        }
        for link in node["qkd_links"]["qkd_link"].as_array().into_iter().flatten() {
            let Some(id) = uuid(&link["qkdl_id"]) else {
                continue;
            };
            let enabled = link["qkdl_enable"].as_bool().unwrap_or(true);
            match link["qkdl_type"].as_str() {
                Some("etsi-qkd-node-types:PHYS") => {
                    catalog.phys.insert(
                        id,
                        PhysLink {
                            id,
                            local_interface: u32_of(&link["qkdl_local"]["qkdi_id"]),
                            remote_node: uuid(&link["qkdl_remote"]["qkdn_id"]),
                            remote_interface: u32_of(&link["qkdl_remote"]["qkdi_id"]),
                            attenuation_db: link["phys_channel_att"]
                                .as_str()
                                .and_then(|s| s.parse().ok()),
                            enabled,
                        },
                    );
                }
                Some("etsi-qkd-node-types:VIRT") => {
                    catalog.virt.insert(
                        id,
                        VirtLink {
                            id,
                            local_node: uuid(&link["qkdl_local"]["qkdn_id"]),
                            remote_node: uuid(&link["qkdl_remote"]["qkdn_id"]),
                            prev_hop: uuid(&link["virt_prev_hop"]),
                            next_hops: uuids(&link["virt_next_hop"]),
                            bandwidth: u32_of(&link["virt_bandwidth"]).unwrap_or(0),
                            enabled,
                        },
                    );
                }
                _ => catalog.untyped.push(id),
            }
        }
        for app in node["qkd_applications"]["qkd_app"].as_array().into_iter().flatten() {
            let Some(id) = uuid(&app["app_id"]) else {
                continue;
            };
            let qos = &app["app_qos"];
            catalog.apps.insert(
                id,
                Application {
                    id,
                    server_sae: app["server_app_id"].as_str().map(str::to_owned),
                    client_saes: app["client_app_id"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect(),
                    backing_links: uuids(&app["backing_qkdl_id"]),
                    local_node: uuid(&app["local_qkdn_id"]),
                    remote_node: uuid(&app["remote_qkdn_id"]),
                    max_bandwidth: u32_of(&qos["max_bandwidth"]),
                    min_bandwidth: u32_of(&qos["min_bandwidth"]),
                    ttl: u32_of(&qos["ttl"]),
                    priority: u32_of(&app["app_priority"]).unwrap_or(0),
                    expiration_time: app["expiration_time"].as_str().map(str::to_owned),
                },
            );
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
