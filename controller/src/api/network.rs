//! Agents and the network over REST: registration (`POST /api/v1/nodes`, what agents send),
//! nodes with their agents, physical links (with the links agents report inconsistently),
//! the paths of the applications, candidate paths between two nodes, and events: the recent
//! ones, and a Server-Sent Events stream of new ones as they are raised.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json as JsonBody};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use super::{ApiState, Auth, json_body, refused, uuid_param};
use crate::core::{Command, Registration, View};
use crate::error::ApiError;
use crate::routing::{self, Demand};

pub(super) async fn register(
    State(s): State<ApiState>,
    Extension(auth): Auth,
    body: Bytes,
) -> Result<(StatusCode, JsonBody<Json>), ApiError> {
    let doc = json_body(&body)?;
    let registration: Registration = serde_json::from_value(doc).map_err(|e| {
        ApiError::field("", format!("not a registration {{node_id, restconf_url, kms, ...}}: {e}"))
    })?;
    let node = registration.node_id;
    // An agent registers only itself, with URLs the controller reaches over TLS.
    if !auth.is_insecure_loopback() {
        let what = format!("registration of node {node}");
        let caller = auth.identity().and_then(qkdn_kit::Identity::node);
        if caller != Some(node) {
            return Err(refused(
                &auth,
                &what,
                &format!("a node's certificate registers that node only, not node {node}"),
            ));
        }
        let plain = std::iter::once(&registration.restconf_url)
            .chain(registration.management_url.iter())
            .find(|url| !url.starts_with("https://"));
        if let Some(url) = plain {
            return Err(refused(
                &auth,
                &what,
                &format!("{url}: an agent's RESTCONF and API URLs must be https"),
            ));
        }
    }
    let created = s.core.ask(|r| Command::RegisterAgent(registration, r)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, JsonBody(json!({"node_id": node, "registered": true}))))
}

fn node_json(view: &View, id: Uuid) -> Option<Json> {
    let agent = view.agents.iter().find(|a| a.node == Some(id));
    let node = view.network.nodes.get(&id);
    if agent.is_none() && node.is_none() {
        return None;
    }
    let report = view.reports.get(&id);
    Some(json!({
        "node_id": id,
        "location": node.and_then(|n| n.location.clone()),
        "reachable": node.is_some_and(|n| n.reachable),
        "status": report.and_then(|r| r.status.clone()),
        "version": report.and_then(|r| r.version.clone()),
        "interfaces": report.map(|r| r.interfaces.iter().map(|(i, t)| json!({"qkdi_id": i, "type": t})).collect::<Vec<_>>()),
        "agent": agent,
    }))
}

pub(super) async fn nodes(State(s): State<ApiState>) -> JsonBody<Json> {
    let view = s.core.view();
    let mut ids: Vec<Uuid> = view.network.nodes.keys().copied().collect();
    ids.extend(
        view.agents.iter().filter_map(|a| a.node).filter(|n| !view.network.nodes.contains_key(n)),
    );
    let unidentified: Vec<_> = view.agents.iter().filter(|a| a.node.is_none()).collect();
    JsonBody(json!({
        "nodes": ids.into_iter().filter_map(|id| node_json(&view, id)).collect::<Vec<_>>(),
        "unidentified_agents": unidentified,
    }))
}

pub(super) async fn node(
    State(s): State<ApiState>,
    Extension(auth): Auth,
    Path(id): Path<String>,
) -> Result<JsonBody<Json>, ApiError> {
    let id = uuid_param("node", &id)?;
    // An agent reads its own registration only (its heartbeat).
    if let Some(caller) = auth.identity().and_then(qkdn_kit::Identity::node)
        && caller != id
    {
        return Err(refused(
            &auth,
            &format!("node {id}"),
            "a node reads its own registration only",
        ));
    }
    node_json(&s.core.view(), id)
        .map(JsonBody)
        .ok_or_else(|| ApiError::NotFound(format!("node {id} is not known to the controller")))
}

fn link_json(view: &View, l: &crate::topology::PhysLink) -> Json {
    let promised = view.promised.get(&l.id).copied().unwrap_or(0);
    json!({
        "link_id": l.id,
        "type": "PHYS",
        "ends": l.ends.iter().map(|(n, i)| json!({"node": n, "interface": i})).collect::<Vec<_>>(),
        "up": l.up,
        "down_reasons": l.down_reasons,
        "skr_bps": l.skr_bps,
        "eskr_bps": l.eskr_bps,
        "expected_consumption_bps": l.expected_bps,
        "reserved_bps": promised,
        "spare_bps": l.skr_bps.saturating_sub(promised + l.expected_bps.saturating_sub(view.direct.get(&l.id).copied().unwrap_or(0))),
        "qber": l.qber,
        "paths": view.apps.values().flat_map(|a| a.legs.iter().filter(|g| g.links.contains(&l.id)).map(|_| a.spec.app_id)).collect::<Vec<_>>(),
    })
}

pub(super) async fn links(State(s): State<ApiState>) -> JsonBody<Json> {
    let view = s.core.view();
    let virtual_links: Vec<Json> = view
        .apps
        .values()
        .flat_map(|a| a.legs.iter().filter(|l| l.is_virtual()).map(move |l| (a, l)))
        .map(|(a, l)| {
            json!({"link_id": l.link, "type": "VIRT", "application": a.spec.app_id,
            "nodes": l.nodes, "over": l.links, "virt_bandwidth_bps": a.spec.qos.demand_bps()})
        })
        .collect();
    JsonBody(json!({
        "links": view.network.links.values().map(|l| link_json(&view, l)).collect::<Vec<_>>(),
        "virtual_links": virtual_links,
        "problems": view.network.problems,
    }))
}

pub(super) async fn link(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<JsonBody<Json>, ApiError> {
    let id = uuid_param("link", &id)?;
    let view = s.core.view();
    if let Some(l) = view.network.links.get(&id) {
        return Ok(JsonBody(link_json(&view, l)));
    }
    if let Some(p) = view.network.problems.iter().find(|p| p.link == id) {
        return Ok(JsonBody(
            json!({"link_id": id, "type": "PHYS", "up": false, "problem": p.problem}),
        ));
    }
    Err(ApiError::NotFound(format!("no physical link {id}")))
}

pub(super) async fn paths(State(s): State<ApiState>) -> JsonBody<Json> {
    let view = s.core.view();
    let paths: Vec<Json> = view
        .apps
        .values()
        .flat_map(|a| {
            a.legs.iter().map(move |l| {
                json!({"application": a.spec.app_id, "state": a.state, "from": a.spec.server.node,
                    "to": l.client_node, "link": l.link, "nodes": l.nodes, "links": l.links,
                    "rate_bps": a.spec.qos.demand_bps()})
            })
        })
        .collect();
    JsonBody(json!({"paths": paths}))
}

pub(super) async fn candidates(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<JsonBody<Json>, ApiError> {
    let mut errors = Vec::new();
    let mut node = |name: &str| match q.get(name).map(|v| Uuid::parse_str(v)) {
        Some(Ok(id)) => Some(id),
        _ => {
            errors.push(crate::apps::FieldError {
                pointer: format!("?{name}"),
                detail: "required: a node id (UUID)".into(),
            });
            None
        }
    };
    let (from, to) = (node("from"), node("to"));
    let mut number =
        |name: &str, default: u64, max: u64| match q.get(name).map(|v| v.parse::<u64>()) {
            None => default,
            Some(Ok(n)) if n <= max => n,
            _ => {
                errors.push(crate::apps::FieldError {
                    pointer: format!("?{name}"),
                    detail: format!("must be an integer from 0 to {max}"),
                });
                default
            }
        };
    let rate = number("rate_bps", 0, u64::from(u32::MAX));
    let k = number("k", 3, 16) as usize;
    let max_hops = q.get("max_hops").map(|_| number("max_hops", 0, 64) as usize);
    let (Some(from), Some(to)) = (from, to) else {
        return Err(ApiError::Invalid(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let view = s.core.view();
    for n in [from, to] {
        if !view.network.nodes.contains_key(&n) {
            return Err(ApiError::NotFound(format!("node {n} is not known to the controller")));
        }
    }
    let topology = view.network.routing_topology(&view.promised, &view.direct, &view.stock);
    let demand = Demand { from, to, rate_bps: rate, max_hops, ..Demand::default() };
    let found = routing::k_shortest_paths(&topology, &demand, k)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(JsonBody(
        json!({"candidates": found.iter().map(|p| json!({"nodes": p.nodes, "links": p.links, "cost": p.cost})).collect::<Vec<_>>()}),
    ))
}

pub(super) async fn events(State(s): State<ApiState>) -> JsonBody<Json> {
    JsonBody(json!({"events": s.core.view().events}))
}

/// Alarms and events as they are raised, as Server-Sent Events (one JSON event per `data:`).
pub(super) async fn event_stream(State(s): State<ApiState>) -> axum::response::Response {
    qkdn_yang::restconf::sse::response(s.core.events(), "qkdn controller events")
}
