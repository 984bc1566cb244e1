//! The orchestrator's REST API (`/api/v1`, OpenAPI document at `/api/v1/openapi.json`): the
//! domains and their state, the merged multi-domain network (nodes with their domains,
//! gateways, links), and recent events. Errors are RFC 9457 problem details.

use std::sync::Arc;

use axum::Json as JsonBody;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use qkdn_controller::error::ApiError;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::service_book::ServiceBook;
use crate::state::Snapshot;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI_SOURCE: &str = include_str!("openapi.json");

/// The OpenAPI document served: [`OPENAPI_SOURCE`] with the controller's QoS schema (services
/// take the same QoS as applications; it is described once, by the controller).
pub fn openapi() -> &'static str {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut doc: serde_json::Value = serde_json::from_str(OPENAPI_SOURCE)
            .expect("the OpenAPI document is JSON (a test reads it)");
        doc["components"]["schemas"]["Qos"] = qkdn_controller::api::qos_schema();
        serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
    });
    &DOCUMENT
}

/// What handlers share: the latest snapshot and the services' owner.
#[derive(Clone)]
pub struct ApiState {
    /// The latest snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The services.
    pub book: ServiceBook,
}

/// A service with its status.
fn described(service: &crate::end_to_end::Service, snapshot: &Snapshot) -> Json {
    let (status, reasons) = service.status(snapshot);
    let mut v = json!(service);
    v["status"] = json!(status);
    v["reasons"] = json!(reasons);
    v
}

type Shared = ApiState;

/// The router of `/api/v1`; other paths go to `restconf` (the merged ETSI 018 view).
pub fn router(snapshot: Shared, restconf: Router) -> Router {
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(|| async {
                ([(header::CONTENT_TYPE, "application/json")], openapi()).into_response()
            }),
        )
        .route("/api/v1/domains", get(domains))
        .route("/api/v1/domains/{name}", get(domain))
        .route("/api/v1/network", get(network))
        .route("/api/v1/events", get(events))
        .route("/api/v1/paths", get(paths))
        .route("/api/v1/services", get(list_services).post(create_service))
        .route("/api/v1/services/{id}", get(get_service).delete(delete_service))
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
    JsonBody(json!({"domains": s.snapshot.borrow().domains}))
}

async fn domain(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<JsonBody<Json>, ApiError> {
    let snapshot = s.snapshot.borrow().clone();
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
    let snapshot = s.snapshot.borrow().clone();
    let m = &snapshot.merged;
    JsonBody(json!({
        "nodes": m.nodes.values().collect::<Vec<_>>(),
        "gateways": m.gateways().iter().map(|n| n.id).collect::<Vec<_>>(),
        "links": m.links.values().collect::<Vec<_>>(),
    }))
}

async fn paths(
    State(s): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<JsonBody<Json>, ApiError> {
    let mut errors = Vec::new();
    let mut node = |name: &str| match q.get(name).map(|v| uuid::Uuid::parse_str(v)) {
        Some(Ok(id)) => Some(id),
        _ => {
            errors.push(qkdn_controller::apps::FieldError {
                pointer: format!("?{name}"),
                detail: "required: a node id (UUID)".into(),
            });
            None
        }
    };
    let (from, to) = (node("from"), node("to"));
    let number = |name: &str,
                  default: u64,
                  max: u64,
                  errors: &mut Vec<qkdn_controller::apps::FieldError>| match q
        .get(name)
        .map(|v| v.parse::<u64>())
    {
        None => default,
        Some(Ok(n)) if n <= max => n,
        _ => {
            errors.push(qkdn_controller::apps::FieldError {
                pointer: format!("?{name}"),
                detail: format!("must be an integer from 0 to {max}"),
            });
            default
        }
    };
    let rate = number("rate_bps", 0, u64::from(u32::MAX), &mut errors);
    let k = number("k", 3, 16, &mut errors) as usize;
    let (Some(from), Some(to), true) = (from, to, errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    let snapshot = s.snapshot.borrow().clone();
    for n in [from, to] {
        if !snapshot.merged.nodes.contains_key(&n) {
            return Err(ApiError::NotFound(format!("node {n} is in no domain")));
        }
    }
    let demand =
        qkdn_controller::routing::Demand { from, to, rate_bps: rate, ..Default::default() };
    let found = crate::paths::candidates(&snapshot.merged, &demand, k)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(JsonBody(json!({"candidates": found})))
}

async fn create_service(
    State(s): State<Shared>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    let doc: Json = qkdn_kit::problem::json_body(&body)?;
    let spec = crate::end_to_end::parse(&doc)?;
    let (service, made) = s.book.create(spec).await?;
    let body = JsonBody(described(&service, &s.snapshot.borrow().clone()));
    let status = if made { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, body).into_response())
}

async fn list_services(State(s): State<Shared>) -> JsonBody<Json> {
    let snapshot = s.snapshot.borrow().clone();
    let services = s.book.services();
    JsonBody(
        json!({"services": services.values().map(|x| described(x, &snapshot)).collect::<Vec<_>>()}),
    )
}

fn service_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id).map_err(|_| ApiError::NotFound(format!("no service {id:?}")))
}

async fn get_service(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<JsonBody<Json>, ApiError> {
    let id = service_id(&id)?;
    let snapshot = s.snapshot.borrow().clone();
    s.book
        .services()
        .get(&id)
        .map(|x| JsonBody(described(x, &snapshot)))
        .ok_or_else(|| ApiError::NotFound(format!("no service {id}")))
}

async fn delete_service(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.book.delete(service_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn events(State(s): State<Shared>) -> JsonBody<Json> {
    JsonBody(json!({"events": s.snapshot.borrow().events}))
}
