//! The management endpoints (plain HTTP, for supervisors and Prometheus): `/healthz`,
//! `/readyz` and `/metrics` (see [`crate::metrics`]), and nothing else: no key, no key ID, no
//! change. Everything an operator or a controller reads beyond that (link diagnostics, the
//! KMS's stores, relays and applications) is on the authenticated API ([`crate::api`]), under
//! the authorization policy. [`ManagementState`] ([`crate::views`]) is what both read.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use crate::views::{KmsView, ManagementState};

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
