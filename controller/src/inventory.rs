//! What one agent says about its node: the `qkd_node` tree read over RESTCONF, reduced to what
//! the controller reasons about (links with their ends, status and performance; applications;
//! location). Reading is tolerant the way third-party 015 servers need: module prefixes on
//! members and identities optional, numbers as JSON numbers or strings.

use qkdn_yang::etsi015::{LinkEnd, LinkType, QkdApp, QkdLink};
use serde::Serialize;
use serde_json::Value as Json;
use uuid::Uuid;

/// Type of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LinkKind {
    /// A quantum channel to a neighbour.
    Phys,
    /// A key-relay link over other links.
    Virt,
}

/// A link as one end reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkReport {
    /// `qkdl_id`.
    pub id: Uuid,
    /// `qkdl_type`.
    pub kind: Option<LinkKind>,
    /// `qkdl_local`: node and interface.
    pub local: (Option<Uuid>, Option<u32>),
    /// `qkdl_remote`: node and interface.
    pub remote: (Option<Uuid>, Option<u32>),
    /// `qkdl_status` identity name (`ACTIVE`, `PASSIVE`, `PENDING`, `OFF`).
    pub status: Option<String>,
    /// `qkdl_enable`.
    pub enabled: bool,
    /// `qkdl_performance/skr`, bit/s.
    pub skr_bps: Option<u64>,
    /// `qkdl_performance/eskr`, bit/s.
    pub eskr_bps: Option<u64>,
    /// `qkdl_performance/expected_consumption`, bit/s.
    pub expected_bps: Option<u64>,
    /// `phys_perf` QBER, fraction.
    pub qber: Option<f64>,
    /// `virt_prev_hop`.
    pub prev_hop: Option<Uuid>,
    /// `virt_next_hop`.
    pub next_hops: Vec<Uuid>,
    /// `virt_bandwidth`, bit/s.
    pub virt_bandwidth: Option<u64>,
}

impl LinkReport {
    /// Whether this end reports the link producing keys.
    pub fn active(&self) -> bool {
        self.enabled && self.status.as_deref().is_none_or(|s| s == "ACTIVE")
    }
}

/// An application as the node holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppReport {
    /// `app_id`.
    pub id: Uuid,
    /// `server_app_id`.
    pub server_sae: Option<String>,
    /// `client_app_id`.
    pub client_saes: Vec<String>,
    /// `backing_qkdl_id`.
    pub backing_links: Vec<Uuid>,
    /// `app_status` identity name.
    pub status: Option<String>,
}

/// A node's report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeReport {
    /// `qkdn_id`.
    pub id: Uuid,
    /// `qkdn_status` identity name.
    pub status: Option<String>,
    /// `qkdn_location_id`.
    pub location: Option<String>,
    /// `qkdn_version`.
    pub version: Option<String>,
    /// Interfaces: id and technology identity name.
    pub interfaces: Vec<(u32, Option<String>)>,
    /// Links.
    pub links: Vec<LinkReport>,
    /// Applications.
    pub apps: Vec<AppReport>,
}

/// Why a document is not a node.
#[derive(Debug, thiserror::Error)]
#[error("not an ETSI 015 qkd_node: {0}")]
pub struct NotANode(String);

/// Member `name` of `obj`, with or without a module prefix.
pub fn member<'a>(obj: &'a Json, name: &str) -> &'a Json {
    if let Some(v) = obj.get(name) {
        return v;
    }
    obj.as_object()
        .and_then(|m| {
            m.iter().find(|(k, _)| k.rsplit_once(':').is_some_and(|(_, local)| local == name))
        })
        .map(|(_, v)| v)
        .unwrap_or(&Json::Null)
}

fn uuid(v: &Json) -> Option<Uuid> {
    v.as_str().and_then(|s| Uuid::parse_str(s).ok())
}

fn number(v: &Json) -> Option<u64> {
    match v {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn decimal(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An identity's name without its module prefix.
fn identity(v: &Json) -> Option<String> {
    v.as_str().map(|s| s.rsplit(':').next().unwrap_or(s).to_owned())
}

fn list(v: &Json) -> impl Iterator<Item = &Json> {
    v.as_array().into_iter().flatten()
}

fn link(v: &Json) -> Option<LinkReport> {
    let config = QkdLink::read(v)?;
    let perf = member(v, "qkdl_performance");
    let qber = list(member(perf, "phys_perf"))
        .find(|p| identity(member(p, "perf_type")).as_deref() == Some("QBER"))
        .and_then(|p| decimal(member(p, "value")));
    let end = |e: &Option<LinkEnd>| e.as_ref().map_or((None, None), |e| (e.qkdn_id, e.qkdi_id));
    Some(LinkReport {
        id: config.qkdl_id,
        kind: config.qkdl_type.map(|t| match t {
            LinkType::Phys => LinkKind::Phys,
            LinkType::Virt => LinkKind::Virt,
        }),
        local: end(&config.qkdl_local),
        remote: end(&config.qkdl_remote),
        status: identity(member(v, "qkdl_status")),
        enabled: config.enabled(),
        skr_bps: number(member(perf, "skr")),
        eskr_bps: number(member(perf, "eskr")),
        expected_bps: number(member(perf, "expected_consumption")),
        qber,
        prev_hop: config.virt_prev_hop,
        next_hops: config.virt_next_hop,
        virt_bandwidth: config.virt_bandwidth.map(u64::from),
    })
}

fn app(v: &Json) -> Option<AppReport> {
    let config = QkdApp::read(v)?;
    Some(AppReport {
        id: config.app_id,
        server_sae: config.server_app_id,
        client_saes: config.client_app_id,
        backing_links: config.backing_qkdl_id,
        status: identity(member(v, "app_status")),
    })
}

impl NodeReport {
    /// Reads a GET of `qkd_node` (the document holding the `qkd_node` member, or the node
    /// itself).
    pub fn parse(doc: &Json) -> Result<NodeReport, NotANode> {
        let node = match member(doc, "qkd_node") {
            Json::Null => doc,
            n => n,
        };
        let id = uuid(member(node, "qkdn_id"))
            .ok_or_else(|| NotANode("no qkdn_id holding a UUID".into()))?;
        let interfaces = list(member(member(node, "qkd_interfaces"), "qkd_interface"))
            .filter_map(|i| {
                let id = u32::try_from(number(member(i, "qkdi_id"))?).ok()?;
                Some((id, identity(member(i, "qkdi_type"))))
            })
            .collect();
        Ok(NodeReport {
            id,
            status: identity(member(node, "qkdn_status")),
            location: member(node, "qkdn_location_id").as_str().map(str::to_owned),
            version: member(node, "qkdn_version").as_str().map(str::to_owned),
            interfaces,
            links: list(member(member(node, "qkd_links"), "qkd_link")).filter_map(link).collect(),
            apps: list(member(member(node, "qkd_applications"), "qkd_app"))
                .filter_map(app)
                .collect(),
        })
    }

    /// Applies an `sdqkdn_link_perf_update` notification; false when it names no known link.
    pub fn apply_perf_update(&mut self, notification: &Json) -> bool {
        let body = member(member(notification, "sdqkdn_link_perf_update"), "qkd_link");
        let Some(id) = uuid(member(body, "qkdl_id")) else {
            return false;
        };
        let Some(link) = self.links.iter_mut().find(|l| l.id == id) else {
            return false;
        };
        let perf = member(body, "performance");
        link.skr_bps = number(member(perf, "skr")).or(link.skr_bps);
        link.eskr_bps = number(member(perf, "eskr")).or(link.eskr_bps);
        link.expected_bps = number(member(perf, "expected_consumption")).or(link.expected_bps);
        if let Some(q) = list(member(perf, "phys_perf"))
            .find(|p| identity(member(p, "perf_type")).as_deref() == Some("QBER"))
            .and_then(|p| decimal(member(p, "value")))
        {
            link.qber = Some(q);
        }
        true
    }
}

/// Whether a notification is a performance update (handled in place; others trigger a re-read).
pub fn is_perf_update(notification: &Json) -> bool {
    !member(notification, "sdqkdn_link_perf_update").is_null()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_prefixed_and_unprefixed_trees_alike() {
        let strict = json!({"etsi-qkd-sdn-node:qkd_node": {"qkdn_id": "00000001-0000-0000-0000-000000000000",
            "qkdn_location_id": "lab", "qkd_links": {"qkd_link": [{"qkdl_id": "00000001-0002-0000-0000-000000000000",
            "qkdl_type": "etsi-qkd-node-types:PHYS", "qkdl_status": "etsi-qkd-node-types:ACTIVE",
            "qkdl_local": {"qkdn_id": "00000001-0000-0000-0000-000000000000", "qkdi_id": 100},
            "qkdl_remote": {"qkdn_id": "00000002-0000-0000-0000-000000000000", "qkdi_id": 200},
            "qkdl_performance": {"skr": 1000, "eskr": 900, "phys_perf": [{"perf_type": "etsi-qkd-node-types:QBER", "value": "0.031"}]}}]}}});
        let loose = json!({"qkd_node": {"qkdn_id": "00000001-0000-0000-0000-000000000000",
            "qkdn_location_id": "lab", "qkd_links": {"qkd_link": [{"qkdl_id": "00000001-0002-0000-0000-000000000000",
            "qkdl_type": "PHYS", "qkdl_status": "ACTIVE",
            "qkdl_local": {"qkdn_id": "00000001-0000-0000-0000-000000000000", "qkdi_id": "100"},
            "qkdl_remote": {"qkdn_id": "00000002-0000-0000-0000-000000000000", "qkdi_id": "200"},
            "qkdl_performance": {"skr": "1000", "eskr": "900", "phys_perf": [{"perf_type": "QBER", "value": 0.031}]}}]}}});
        let a = NodeReport::parse(&strict).unwrap();
        assert_eq!(a, NodeReport::parse(&loose).unwrap());
        let l = &a.links[0];
        assert_eq!(
            (l.kind, l.local.1, l.remote.1, l.skr_bps, l.qber),
            (Some(LinkKind::Phys), Some(100), Some(200), Some(1000), Some(0.031))
        );
        assert!(l.active());
        assert!(NodeReport::parse(&json!({"qkd_node": {"qkdn_id": 5}})).is_err());
    }

    #[test]
    fn perf_updates_change_only_the_named_link() {
        let mut node = NodeReport::parse(&json!({"qkd_node": {"qkdn_id": "00000001-0000-0000-0000-000000000000",
            "qkd_links": {"qkd_link": [{"qkdl_id": "00000001-0002-0000-0000-000000000000", "qkdl_performance": {"skr": 5}}]}}}))
        .unwrap();
        let note = json!({"etsi-qkd-sdn-node:sdqkdn_link_perf_update": {"qkd_link": {"qkdl_id": "00000001-0002-0000-0000-000000000000",
            "performance": {"skr": 70, "eskr": 60, "expected_consumption": 10}}}, "eventTime": "2026-01-01T00:00:00Z"});
        assert!(is_perf_update(&note));
        assert!(node.apply_perf_update(&note));
        assert_eq!(
            (node.links[0].skr_bps, node.links[0].eskr_bps, node.links[0].expected_bps),
            (Some(70), Some(60), Some(10))
        );
        let other = json!({"sdqkdn_link_perf_update": {"qkd_link": {"qkdl_id": "00000009-0002-0000-0000-000000000000", "performance": {"skr": 1}}}});
        assert!(!node.apply_perf_update(&other));
    }
}
