//! The management endpoints (plain HTTP, for operators and supervisors): `/healthz`,
//! `/readyz`, and diagnostics of the driven links: device state and rates (`/v1/links`), and
//! the key ledger of a link (`/v1/links/{id}/keys`: counters and the fingerprints of recent
//! blocks, which let an operator check that both ends of a link hold the same keys without
//! revealing any), plus the registration state (`/v1/registration`) and the KMS's key stores
//! (`/v1/kms/stores`: counters, fill and consumption rates and threshold alarms per link, never
//! a key) and its relays (`/v1/kms/relays`: per virtual link it sources, relays, keys,
//! failures and end-to-end latency; DELETE clears them) and its applications
//! (`/v1/kms/applications`: key bits, `enc_keys` requests, their success ratio and latency),
//! and all of it for Prometheus on `/metrics` (see [`crate::metrics`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json as JsonBody, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use crate::kms::KeyLedger;
use crate::kms::monitor::HealthView;
use crate::kms::relay::Relay;
use crate::kms::store::KeyStores;
use crate::node::live::LiveView;
use crate::register::RegistrationState;

/// What the endpoints read of the KMS.
#[derive(Clone)]
pub struct KmsView {
    /// The key stores.
    pub stores: Arc<KeyStores>,
    /// Their rates and alarms.
    pub health: HealthView,
    /// The relay engine.
    pub relay: Arc<Relay>,
    /// What the 014 server delivered to each application.
    pub usage: Arc<crate::kms::etsi014::Usage>,
}

/// What the endpoints read.
#[derive(Clone)]
pub struct ManagementState {
    /// The KMS, when the node runs one.
    pub kms: Option<KmsView>,
    /// The live node's view.
    pub view: watch::Receiver<Arc<LiveView>>,
    /// The key ledger, when the agent runs without a KMS.
    pub ledger: Option<Arc<KeyLedger>>,
    /// Registration with the controller.
    pub registration: watch::Receiver<RegistrationState>,
    /// The agent has started.
    pub ready: watch::Receiver<bool>,
}

/// The router of the management endpoints.
pub fn router(state: ManagementState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/links", get(links))
        .route("/v1/links/{id}/keys", get(keys))
        .route("/v1/registration", get(registration))
        .route("/v1/kms/stores", get(kms_stores))
        .route("/v1/kms/relays", get(kms_relays).delete(clear_kms_relays))
        .route("/v1/kms/applications", get(kms_applications))
        .fallback(|| async {
            (StatusCode::NOT_FOUND, JsonBody(json!({"message": "no such management resource"})))
        })
        .with_state(state)
}

async fn readyz(State(state): State<ManagementState>) -> Response {
    if *state.ready.borrow() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics(State(state): State<ManagementState>) -> Response {
    qkdn_yang::metrics::response(crate::metrics::render(&state))
}

async fn links(State(state): State<ManagementState>) -> JsonBody<serde_json::Value> {
    let view = state.view.borrow().clone();
    JsonBody(json!(view.as_ref()))
}

async fn keys(State(state): State<ManagementState>, Path(id): Path<String>) -> Response {
    let Ok(link) = id.parse::<Uuid>() else {
        return (
            StatusCode::BAD_REQUEST,
            JsonBody(json!({"message": format!("\"{id}\" is not a link id (UUID)")})),
        )
            .into_response();
    };
    let Some(ledger) = &state.ledger else {
        return (
            StatusCode::NOT_FOUND,
            JsonBody(json!({"message": "keys go to the KMS; it has its own endpoints"})),
        )
            .into_response();
    };
    match ledger.link(link) {
        Some(l) => JsonBody(json!(l)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            JsonBody(json!({"message": format!("no keys have been produced on link {link}")})),
        )
            .into_response(),
    }
}

async fn registration(State(state): State<ManagementState>) -> JsonBody<serde_json::Value> {
    JsonBody(json!(*state.registration.borrow()))
}

async fn kms_stores(State(state): State<ManagementState>) -> Response {
    match &state.kms {
        Some(KmsView { stores, health, .. }) => {
            let health = health.borrow().clone();
            let stores: Vec<serde_json::Value> = stores
                .stats()
                .into_iter()
                .map(|s| {
                    let mut entry = json!(s);
                    if let (Some(map), Some(h)) = (entry.as_object_mut(), health.get(&s.link))
                        && let serde_json::Value::Object(h) = json!(h)
                    {
                        map.extend(h);
                    }
                    entry
                })
                .collect();
            JsonBody(json!({ "stores": stores })).into_response()
        }
        None => (StatusCode::NOT_FOUND, JsonBody(json!({"message": "this node runs no KMS"})))
            .into_response(),
    }
}

async fn kms_applications(State(state): State<ManagementState>) -> Response {
    match &state.kms {
        Some(kms) => JsonBody(json!({"applications": kms.usage.report()})).into_response(),
        None => (StatusCode::NOT_FOUND, JsonBody(json!({"message": "this node runs no KMS"})))
            .into_response(),
    }
}

async fn kms_relays(State(state): State<ManagementState>) -> Response {
    match &state.kms {
        Some(kms) => JsonBody(json!({"relays": kms.relay.stats.report()})).into_response(),
        None => (StatusCode::NOT_FOUND, JsonBody(json!({"message": "this node runs no KMS"})))
            .into_response(),
    }
}

/// Clears the relay figures (as an operator clears counters before a measurement).
async fn clear_kms_relays(State(state): State<ManagementState>) -> Response {
    match &state.kms {
        Some(kms) => {
            kms.relay.stats.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        None => (StatusCode::NOT_FOUND, JsonBody(json!({"message": "this node runs no KMS"})))
            .into_response(),
    }
}
