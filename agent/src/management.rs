//! The management endpoints (plain HTTP, for supervisors and Prometheus): `/healthz`,
//! `/readyz` and `/metrics` (see [`crate::metrics`]), and nothing else: no key, no key ID, no
//! change. Everything an operator or a controller reads beyond that (link diagnostics, the
//! KMS's stores, relays and applications) is on the authenticated API ([`crate::api`]), under
//! the authorization policy. [`ManagementState`] is what both read.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

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
    /// Their counters, refreshed every second.
    pub figures: watch::Receiver<Arc<Vec<crate::kms::store::StoreCounters>>>,
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
    /// Requests the authorization policy refused.
    pub denials: Arc<qkdn_kit::Denials>,
}

/// The router of the management endpoints.
pub fn router(state: ManagementState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no such management resource (here: /healthz, /readyz, /metrics; the rest is on the authenticated API)\n",
            )
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
    qkdn_kit::metrics::response(crate::metrics::render(&state))
}
