//! The controller's REST API under `/api/v1` (described by the OpenAPI document at
//! `/api/v1/openapi.json`): agent registration, applications (register, list, get, change
//! QoS, remove), and read-only nodes, links, paths, candidate paths, events and monitoring.
//! Errors are RFC 9457 problem details. Writes go to the core as commands; reads use its latest
//! view. Every request passed the authorization gate first; handlers judge the conditions it
//! left to them (an agent registers only itself, an SAE reads only its applications).

mod applications;
pub mod monitoring;
mod network;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value as Json;

use crate::core::CoreHandle;
use crate::error::ApiError;

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The core.
    pub core: CoreHandle,
}

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The schema of an application's QoS ([`crate::apps::Qos`]) in [`OPENAPI`], for the APIs that
/// take the same QoS (the orchestrator's services).
pub fn qos_schema() -> serde_json::Value {
    let doc: serde_json::Value =
        serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON (a test reads it)");
    doc["components"]["schemas"]["Qos"].clone()
}

/// The router of `/api/v1`; every other path goes to `restconf` (the ETSI 018 northbound). Both
/// are behind `gate` (the authorization policy, [`crate::access`]).
pub fn router(state: ApiState, restconf: Router, gate: qkdn_kit::Gate) -> Router {
    let router = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/nodes", get(network::nodes).post(network::register))
        .route("/api/v1/nodes/{id}", get(network::node))
        .route("/api/v1/links", get(network::links))
        .route("/api/v1/links/{id}", get(network::link))
        .route("/api/v1/paths", get(network::paths))
        .route("/api/v1/paths/candidates", get(network::candidates))
        .route("/api/v1/events", get(network::events))
        .route("/api/v1/events/stream", get(network::event_stream))
        .route("/api/v1/monitoring", get(monitoring::get))
        .route("/api/v1/applications", get(applications::list).post(applications::create))
        .route(
            "/api/v1/applications/{id}",
            get(applications::get).patch(applications::update).delete(applications::remove),
        )
        .route("/api/{*rest}", axum::routing::any(not_found))
        .method_not_allowed_fallback(not_allowed)
        .fallback_service(restconf)
        .with_state(state);
    gate.protect(router)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no resource {} (see /api/v1/openapi.json)", request.uri().path()))
}

async fn not_allowed(request: Request) -> Response {
    let detail = format!("{} is not allowed on {}", request.method(), request.uri().path());
    qkdn_kit::problem::response(StatusCode::METHOD_NOT_ALLOWED, detail)
}

/// What the gate allowed the request as (present on every request that reached a handler).
pub(crate) type Auth = axum::Extension<qkdn_kit::Authorized>;

/// A refusal of a condition the policy left to a handler, as an API error (logged and counted
/// by the gate's path).
pub(crate) fn refused(auth: &qkdn_kit::Authorized, what: &str, detail: &str) -> ApiError {
    let refused = auth.refuse(auth.condition.map_or("handler", |c| c.as_str()), what, detail);
    ApiError::Forbidden(refused.message)
}

/// A JSON body, or a problem naming what is wrong with it.
fn json_body(body: &Bytes) -> Result<Json, ApiError> {
    qkdn_kit::problem::json_body(body)
}

/// A UUID path segment.
fn uuid_param(name: &str, value: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(value).map_err(|_| {
        ApiError::NotFound(format!("{name} {value:?} is not a UUID, so there is no such {name}"))
    })
}

#[cfg(test)]
mod tests;
