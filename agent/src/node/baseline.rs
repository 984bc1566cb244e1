//! The part of the node's 015 tree that the agent's configuration defines: the node's identity,
//! its interfaces, and the physical links of the configuration file, plus whatever a start-up
//! data file (a 015 instance document, such as TeraFlowSDN's mock node files) holds. The
//! controller cannot change these (except `qkdl_enable`, `qkdl_status` and `qkdl_applications`
//! of physical links); it adds virtual links, applications and physical links of its own.

use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

use crate::config::AgentConfig;

/// The baseline configuration document, `{"etsi-qkd-sdn-node:qkd_node": {...}}`, from the
/// configuration and the start-up data (already strict RFC 7951); the configuration wins where
/// both define the same interface or link.
pub fn baseline(config: &AgentConfig, startup: Option<&Json>) -> Json {
    let mut node = startup
        .and_then(|s| s.get("etsi-qkd-sdn-node:qkd_node"))
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    node.insert("qkdn_id".into(), json!(config.node.id.to_string()));
    let version = config
        .node
        .version
        .clone()
        .unwrap_or_else(|| format!("qkdn-agent {}", env!("CARGO_PKG_VERSION")));
    node.insert("qkdn_version".into(), json!(version));
    if !config.node.location.is_empty() || !node.contains_key("qkdn_location_id") {
        node.insert("qkdn_location_id".into(), json!(config.node.location));
    }
    let interfaces: Vec<Json> = config
        .interfaces
        .iter()
        .map(|i| {
            let mut caps = Map::new();
            caps.insert(
                "role_support".into(),
                json!(format!("etsi-qkd-node-types:{}", i.role.identity())),
            );
            if let Some(range) = &i.wavelength_range {
                caps.insert("wavelength_range".into(), json!(range));
            }
            if let Some(max) = i.max_absorption_db {
                caps.insert("max_absorption".into(), json!(decimal3(max)));
            }
            let mut iface = json!({
                "qkdi_id": i.id,
                "qkdi_type": format!("etsi-qkd-node-types:{}", i.technology.identity()),
                "qkdi_capabilities": caps,
            });
            if !i.model.is_empty() {
                iface["qkdi_model"] = json!(i.model);
            }
            if let Some(a) = &i.attachment {
                iface["qkdi_att_point"] = json!({"device": a.device, "port": a.port});
            }
            iface
        })
        .collect();
    merge_list(&mut node, "qkd_interfaces", "qkd_interface", "qkdi_id", interfaces);
    let links: Vec<Json> = config
        .links
        .iter()
        .map(|l| {
            json!({
                "qkdl_id": l.id.to_string(),
                "qkdl_status": "etsi-qkd-node-types:PENDING",
                "qkdl_local": {"qkdn_id": config.node.id.to_string(), "qkdi_id": l.local_interface},
                "qkdl_remote": {"qkdn_id": l.remote_node.to_string(), "qkdi_id": l.remote_interface},
                "qkdl_type": "etsi-qkd-node-types:PHYS",
                "phys_channel_att": decimal3(l.attenuation_db()),
                "phys_wavelength": l.wavelength.to_string(),
                "phys_qkd_role": format!("etsi-qkd-node-types:{}", l.role.identity()),
            })
        })
        .collect();
    merge_list(&mut node, "qkd_links", "qkd_link", "qkdl_id", links);
    json!({"etsi-qkd-sdn-node:qkd_node": node})
}

/// A decimal64 with three fraction digits.
fn decimal3(v: f64) -> String {
    format!("{v:.3}")
}

/// Puts `entries` into `node[container][list]`, replacing entries with the same key.
fn merge_list(
    node: &mut Map<String, Json>,
    container: &str,
    list: &str,
    key: &str,
    entries: Vec<Json>,
) {
    let holder = node.entry(container.to_owned()).or_insert_with(|| json!({}));
    if !holder.is_object() {
        *holder = json!({});
    }
    let existing = holder[list].as_array().cloned().unwrap_or_default();
    let mut merged: Vec<Json> =
        existing.into_iter().filter(|e| !entries.iter().any(|n| n[key] == e[key])).collect();
    merged.extend(entries);
    if !merged.is_empty() {
        holder[list] = Json::Array(merged);
    }
}

/// The ids of the physical links the baseline defines.
pub fn baseline_phys_links(doc: &Json) -> Vec<Uuid> {
    doc["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]["qkd_link"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["qkdl_type"] == "etsi-qkd-node-types:PHYS")
        .filter_map(|l| l["qkdl_id"].as_str()?.parse().ok())
        .collect()
}
