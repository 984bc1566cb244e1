//! The orchestrator's REST API (`/api/v1`, OpenAPI document at `/api/v1/openapi.json`): the
//! domains and their state, the merged multi-domain network (nodes with their domains,
//! gateways, links), and recent events. Errors are RFC 9457 problem details.

use std::sync::Arc;

use axum::Json as JsonBody;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use qkdn_controller::error::ApiError;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::state::Snapshot;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

type Shared = watch::Receiver<Arc<Snapshot>>;

/// The router of `/api/v1`; other paths go to `restconf` (the merged ETSI 018 view).
pub fn router(snapshot: Shared, restconf: Router) -> Router {
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(|| async {
                ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
            }),
        )
        .route("/api/v1/domains", get(domains))
        .route("/api/v1/domains/{name}", get(domain))
        .route("/api/v1/network", get(network))
        .route("/api/v1/events", get(events))
        .route(
            "/api/v1/{*rest}",
            axum::routing::any(|| async {
                ApiError::NotFound("no such resource (see /api/v1/openapi.json)".into())
            }),
        )
        .with_state(snapshot)
        .fallback_service(restconf)
}

async fn domains(State(s): State<Shared>) -> JsonBody<Json> {
    JsonBody(json!({"domains": s.borrow().domains}))
}

async fn domain(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<JsonBody<Json>, ApiError> {
    let snapshot = s.borrow().clone();
    let d = snapshot
        .domains
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no domain {name:?}")))?;
    let nodes: Vec<&crate::merged::Node> =
        snapshot.merged.nodes.values().filter(|n| n.domains.contains(&name)).collect();
    Ok(JsonBody(json!({"domain": d, "nodes": nodes})))
}

async fn network(State(s): State<Shared>) -> JsonBody<Json> {
    let snapshot = s.borrow().clone();
    let m = &snapshot.merged;
    JsonBody(json!({
        "nodes": m.nodes.values().collect::<Vec<_>>(),
        "gateways": m.gateways().iter().map(|n| n.id).collect::<Vec<_>>(),
        "links": m.links.values().collect::<Vec<_>>(),
    }))
}

async fn events(State(s): State<Shared>) -> JsonBody<Json> {
    JsonBody(json!({"events": s.borrow().events}))
}
