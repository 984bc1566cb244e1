//! The controller's REST API under `/api/v1` (described by the OpenAPI document at
//! `/api/v1/openapi.json`): agent registration, applications (register, list, get, change
//! QoS, remove), and read-only nodes, links, paths, candidate paths, events and monitoring. Errors are RFC
//! 9457 problem details. Writes go to the core as commands; reads use its latest view.

mod applications;
pub mod monitoring;
mod network;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
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
    /// Accepted bearer tokens (none: no token needed).
    pub tokens: std::sync::Arc<Vec<String>>,
}

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The router of `/api/v1`; every other path goes to `restconf` (the ETSI 018 northbound). Both
/// need the same credentials.
pub fn router(state: ApiState, restconf: Router) -> Router {
    Router::new()
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
        .layer(middleware::from_fn_with_state(state.clone(), authorise))
        .with_state(state)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no resource {} (see /api/v1/openapi.json)", request.uri().path()))
}

async fn not_allowed(request: Request) -> Response {
    let status = StatusCode::METHOD_NOT_ALLOWED;
    let body = serde_json::json!({"type": "about:blank", "title": "Method Not Allowed", "status": 405,
        "detail": format!("{} is not allowed on {}", request.method(), request.uri().path())});
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Requests carry a client certificate (mutual TLS) or, when tokens are configured, one of
/// them as a bearer token. The OpenAPI document is public.
async fn authorise(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if state.tokens.is_empty()
        || request.uri().path() == "/api/v1/openapi.json"
        || request.extensions().get::<qkdn_yang::tls::PeerCertificates>().is_some()
    {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t) if state.tokens.iter().any(|k| same(k.as_bytes(), t.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => ApiError::Unauthorized("the bearer token is not valid".into()).into_response(),
        None => ApiError::Unauthorized("a client certificate or a bearer token is required".into())
            .into_response(),
    }
}

/// A JSON body, or a problem naming what is wrong with it.
fn json_body(body: &Bytes) -> Result<Json, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::field(
            "",
            format!("not valid JSON (line {}, column {}): {e}", e.line(), e.column()),
        )
    })
}

/// A UUID path segment.
fn uuid_param(name: &str, value: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(value).map_err(|_| {
        ApiError::NotFound(format!("{name} {value:?} is not a UUID, so there is no such {name}"))
    })
}

#[cfg(test)]
mod tests;
