//! End-to-end key services between SAEs in different domains: the cheapest path over the
//! merged network is cut into the nodes each domain writes (a gateway is written by the domain
//! the path arrives from; a node reached over a configured link between domains by the domain
//! it belongs to), and each domain's controller is asked for its segment with the ETSI 018
//! connectivity operation `deploy-segment` (the same service link id everywhere, the hops
//! before and after each segment, the application at the service's two ends), so that keys
//! relay end to end through the gateways. When a domain refuses, the segments already made
//! are removed (`remove-app`) and nothing is kept.

use std::collections::BTreeMap;

use qkdn_controller::apps::{AppSpec, derived_id, parse_spec};
use qkdn_controller::error::ApiError;
use qkdn_controller::routing::Demand;
use qkdn_yang::etsi015::AppQos;
use qkdn_yang::restconf::RestconfClient;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::merged::Merged;
use crate::paths;

/// What one domain writes for a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// The domain.
    pub domain: String,
    /// The application id the domain's controller holds the segment under.
    pub app_id: Uuid,
    /// The nodes it writes.
    pub nodes: Vec<Uuid>,
    /// The node before them.
    pub upstream: Option<Uuid>,
    /// The node after them.
    pub downstream: Option<Uuid>,
}

/// A service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Service {
    /// Its id (client-supplied or generated).
    pub service_id: Uuid,
    /// The request as an application (server SAE and node, one client SAE and node, QoS).
    pub spec: AppSpec,
    /// The service link, the same on every node of the path.
    pub svc_link_id: Uuid,
    /// The nodes of the path.
    pub nodes: Vec<Uuid>,
    /// The physical links of the path.
    pub links: Vec<Uuid>,
    /// What each domain writes, in path order.
    pub parts: Vec<Part>,
    /// Every domain took its part (false while provisioning; a service found so after a
    /// restart was never answered and is rolled back).
    #[serde(default)]
    pub provisioned: bool,
}

impl Service {
    /// `active`, or `degraded` with the reasons: a domain of the service is down, or reports
    /// the service's segment without a path (its controller is repairing it).
    pub fn status(&self, snapshot: &crate::state::Snapshot) -> (&'static str, Vec<String>) {
        let mut reasons = Vec::new();
        for part in &self.parts {
            if let Some(d) = snapshot.domains.iter().find(|d| d.name == part.domain)
                && !d.up
            {
                reasons.push(format!("domain {} is down", part.domain));
                continue;
            }
            let app_status =
                snapshot.app_status.get(&part.domain).and_then(|a| a.get(&part.app_id));
            if app_status.is_some_and(|s| s == "DISCONNECTED") {
                reasons.push(format!("domain {} has no path for its segment", part.domain));
            }
        }
        (if reasons.is_empty() { "active" } else { "degraded" }, reasons)
    }
}

/// Reads a service request (`{"service_id"?, "server": {...}, "client": {...}, "qos": {...}}`).
pub fn parse(body: &Json) -> Result<AppSpec, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::field("", "the body must be a JSON object"));
    };
    let mut errors = Vec::new();
    for k in obj.keys().filter(|k| !["service_id", "server", "client", "qos"].contains(&k.as_str()))
    {
        errors.push(qkdn_controller::apps::FieldError {
            pointer: format!("/{k}"),
            detail: "unknown field; expected service_id, server, client, qos".into(),
        });
    }
    let mut spec =
        json!({"server": obj.get("server"), "clients": [obj.get("client")], "qos": obj.get("qos")});
    if let Some(id) = obj.get("service_id") {
        spec["app_id"] = id.clone();
    }
    match parse_spec(&spec) {
        Ok(s) if errors.is_empty() => Ok(s),
        Ok(_) => Err(ApiError::Invalid(errors)),
        Err(more) => {
            errors.extend(more.into_iter().map(|mut e| {
                e.pointer = e.pointer.replacen("/clients/0", "/client", 1).replacen(
                    "/app_id",
                    "/service_id",
                    1,
                );
                e
            }));
            Err(ApiError::Invalid(errors))
        }
    }
}

/// The plan of a service: its path and what each domain writes.
pub fn plan(merged: &Merged, spec: &AppSpec) -> Result<Service, ApiError> {
    let (from, to) = (spec.server.node, spec.clients[0].node);
    for (at, n) in [("/server/node", from), ("/client/node", to)] {
        if !merged.nodes.contains_key(&n) {
            return Err(ApiError::NotFound(format!("node {n} ({at}) is in no domain")));
        }
    }
    let demand = Demand {
        from,
        to,
        rate_bps: spec.qos.demand_bps(),
        max_hops: spec.qos.max_hops,
        exclude_nodes: spec.qos.exclude_nodes.iter().copied().collect(),
        exclude_locations: spec.qos.exclude_locations.iter().cloned().collect(),
    };
    let candidate = paths::candidates(merged, &demand, 1)
        .map_err(|e| ApiError::Conflict(e.to_string()))?
        .remove(0);
    // The writer of each node: the domain of the link arriving at it, else of the link
    // leaving it, else its first domain.
    let domain_of_link = |i: usize| {
        candidate
            .segments
            .iter()
            .find(|s| s.links.contains(&candidate.links[i]))
            .and_then(|s| s.domain.clone())
    };
    let writers: Vec<String> = (0..candidate.nodes.len())
        .map(|k| {
            (k > 0)
                .then(|| domain_of_link(k - 1))
                .flatten()
                .or_else(|| (k < candidate.links.len()).then(|| domain_of_link(k)).flatten())
                .unwrap_or_else(|| merged.nodes[&candidate.nodes[k]].domains[0].clone())
        })
        .collect();
    let mut parts: Vec<Part> = Vec::new();
    for (k, node) in candidate.nodes.iter().enumerate() {
        match parts.last_mut() {
            Some(p) if p.domain == writers[k] => p.nodes.push(*node),
            _ => parts.push(Part {
                domain: writers[k].clone(),
                app_id: derived_id(spec.app_id, &format!("segment:{}", parts.len())),
                nodes: vec![*node],
                upstream: (k > 0).then(|| candidate.nodes[k - 1]),
                downstream: None,
            }),
        }
    }
    for i in 0..parts.len().saturating_sub(1) {
        parts[i].downstream = parts[i + 1].nodes.first().copied();
    }
    Ok(Service {
        service_id: spec.app_id,
        spec: spec.clone(),
        svc_link_id: derived_id(spec.app_id, "service-link"),
        nodes: candidate.nodes,
        links: candidate.links,
        parts,
        provisioned: false,
    })
}

/// The part of the application's `app_qos` the 018 `qos` grouping has (max and min
/// bandwidth, TTL; the 015 `app_qos` has more).
fn segment_qos(qos: &qkdn_controller::apps::Qos) -> AppQos {
    let full = qos.app_qos();
    AppQos {
        max_bandwidth: full.max_bandwidth,
        min_bandwidth: full.min_bandwidth,
        ttl: full.ttl,
        ..AppQos::default()
    }
}

/// The `deploy-segment` input of `part`.
fn segment_input(service: &Service, part: &Part) -> Json {
    let spec = &service.spec;
    let mut input = json!({
        "app_id": part.app_id.to_string(),
        "svc_link_id": service.svc_link_id.to_string(),
        "server_app_id": spec.server.sae_id,
        "client_app_id": spec.clients.iter().map(|c| c.sae_id.clone()).collect::<Vec<_>>(),
        "local_qkdn_id": spec.server.node.to_string(),
        "remote_qkdn_id": spec.clients[0].node.to_string(),
        "app_qos": segment_qos(&spec.qos),
        "path_qkdn_id": part.nodes.iter().map(Uuid::to_string).collect::<Vec<_>>(),
    });
    if let Some(u) = part.upstream {
        input["upstream_qkdn_id"] = json!(u.to_string());
    }
    if let Some(d) = part.downstream {
        input["downstream_qkdn_id"] = json!(d.to_string());
    }
    input
}

const MODULE: &str = "etsi-qkd-sdn-connectivity";

/// Asks each domain for its segment; on a refusal removes the segments made and says which
/// domain refused and why.
pub async fn provision(
    service: &Service,
    domains: &BTreeMap<String, RestconfClient>,
) -> Result<(), ApiError> {
    let mut done: Vec<&Part> = Vec::new();
    for part in &service.parts {
        let client = domains
            .get(&part.domain)
            .ok_or_else(|| ApiError::NotFound(format!("no domain {:?}", part.domain)))?;
        match client
            .invoke(&format!("{MODULE}:deploy-segment"), Some(&segment_input(service, part)))
            .await
        {
            Ok(_) => done.push(part),
            Err(e) => {
                remove(&done, domains).await;
                let reason = e
                    .first_error()
                    .and_then(|x| x.error_message.clone())
                    .unwrap_or_else(|| e.to_string());
                let message = format!(
                    "domain {} refused its segment {:?}: {reason}; nothing was kept",
                    part.domain, part.nodes
                );
                return Err(match e.status() {
                    Some(409) => ApiError::Conflict(message),
                    Some(404) | Some(400) => ApiError::Conflict(message),
                    _ => ApiError::Agent(message),
                });
            }
        }
    }
    Ok(())
}

/// Removes `parts` from their domains (best effort, reported in the log).
pub async fn remove(parts: &[&Part], domains: &BTreeMap<String, RestconfClient>) {
    for part in parts.iter().rev() {
        if let Some(client) = domains.get(&part.domain) {
            let input = json!({"app_id": part.app_id.to_string()});
            if let Err(e) = client.invoke(&format!("{MODULE}:remove-app"), Some(&input)).await {
                tracing::warn!(domain = %part.domain, error = %e, "a segment could not be removed");
            }
        }
    }
}
