//! The agent's API beside its RESTCONF model, on the same authenticated listener and under the
//! same authorization policy (reads by its controllers, operators and orchestrators; changes by
//! admins): link diagnostics (`/api/v1/links`: driver, up, SKR, QBER, SNR; failed
//! interfaces), the key ledger of a link when no KMS runs (`/api/v1/links/{id}/keys`: counters
//! and the fingerprints of recent blocks, which let an operator check that both ends of a link
//! hold the same keys without revealing any), the registration state
//! (`/api/v1/registration`), and the KMS's key stores (`/api/v1/kms/stores`: counters, fill
//! and consumption rates and threshold alarms per link, never a key), relays
//! (`/api/v1/kms/relays`: per virtual link it sources, relays, keys, failures and end-to-end
//! latency; DELETE clears them) and applications (`/api/v1/kms/applications`: key bits,
//! `enc_keys` requests, their success ratio and latency). Errors are RFC 9457 problems.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json as JsonBody, Response};
use axum::routing::get;
use qkdn_proto::node_api::{ApplicationsReply, RelaysReply, StoreFigures, StoresReply};
use serde_json::json;
use uuid::Uuid;

use crate::views::{KmsView, ManagementState};

/// An RFC 9457 problem.
fn problem(status: StatusCode, detail: String) -> Response {
    qkdn_kit::problem::response(status, detail)
}

/// The routes of the API, to be nested at `/api` in the RESTCONF listener's router.
pub fn router(state: ManagementState) -> Router {
    Router::new()
        .route("/v1/links", get(links))
        .route("/v1/links/{id}/keys", get(keys))
        .route("/v1/registration", get(registration))
        .route("/v1/kms/stores", get(kms_stores))
        .route("/v1/kms/relays", get(kms_relays).delete(clear_kms_relays))
        .route("/v1/kms/applications", get(kms_applications))
        .fallback(|| async {
            problem(StatusCode::NOT_FOUND, "no such resource of the agent's API".into())
        })
        .method_not_allowed_fallback(|| async {
            problem(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here".into())
        })
        .with_state(state)
}

async fn links(State(state): State<ManagementState>) -> JsonBody<serde_json::Value> {
    let view = state.view.borrow().clone();
    JsonBody(json!(view.as_ref()))
}

async fn keys(State(state): State<ManagementState>, Path(id): Path<String>) -> Response {
    let Ok(link) = id.parse::<Uuid>() else {
        return problem(StatusCode::BAD_REQUEST, format!("\"{id}\" is not a link id (UUID)"));
    };
    let Some(ledger) = &state.ledger else {
        return problem(StatusCode::NOT_FOUND, "keys go to the KMS; see /api/v1/kms/stores".into());
    };
    match ledger.link(link) {
        Some(l) => JsonBody(json!(l)).into_response(),
        None => {
            problem(StatusCode::NOT_FOUND, format!("no keys have been produced on link {link}"))
        }
    }
}

async fn registration(State(state): State<ManagementState>) -> JsonBody<serde_json::Value> {
    JsonBody(json!(*state.registration.borrow()))
}

fn no_kms() -> Response {
    problem(StatusCode::NOT_FOUND, "this node runs no KMS".into())
}

async fn kms_stores(State(state): State<ManagementState>) -> Response {
    let Some(KmsView { stores, health, .. }) = &state.kms else {
        return no_kms();
    };
    let health = health.borrow().clone();
    let stores = stores
        .stats()
        .await
        .into_iter()
        .map(|counters| StoreFigures { health: health.get(&counters.link).cloned(), counters })
        .collect();
    JsonBody(json!(StoresReply { stores })).into_response()
}

async fn kms_applications(State(state): State<ManagementState>) -> Response {
    match &state.kms {
        Some(kms) => {
            JsonBody(json!(ApplicationsReply { applications: kms.usage.report() })).into_response()
        }
        None => no_kms(),
    }
}

async fn kms_relays(State(state): State<ManagementState>) -> Response {
    match &state.kms {
        Some(kms) => {
            JsonBody(json!(RelaysReply { relays: kms.relay.stats.report() })).into_response()
        }
        None => no_kms(),
    }
}

/// Clears the relay figures (as an operator clears counters before a measurement).
async fn clear_kms_relays(State(state): State<ManagementState>) -> Response {
    match &state.kms {
        Some(kms) => {
            kms.relay.stats.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        None => no_kms(),
    }
}
