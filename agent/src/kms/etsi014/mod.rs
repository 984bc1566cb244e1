//! The node's ETSI GS QKD 014 v1.1.1 server (REST over mutual TLS): `status`, `enc_keys`
//! (GET with `number`/`size`, and POST) and `dec_keys` (GET with `key_ID`, and POST), sizes in
//! bits, multicast with `additional_slave_SAE_IDs`, the standard's error answers.
//!
//! The calling SAE is identified by its certificate (`kms::delivery::identity`). A pair of SAEs is served by
//! the link that backs their 015 application at this node (`server_app_id` = the SAE here,
//! `client_app_id` = the SAEs at the other end, the first `backing_qkdl_id` with a key store),
//! or by a static pair of the configuration. The handlers check a request in the standard's
//! terms and answer in its format; the delivery itself is the KMS's ([`super::delivery`]):
//! `enc_keys` issues keys this end owns and has the other end reserve them for the named
//! slaves before answering; `dec_keys` redeems the keys reserved for a slave, once.

mod api;
pub mod wire;

use axum::Router;
use axum::routing::get;

use super::delivery::KeyDelivery;

/// The router of the 014 API.
pub fn router(state: KeyDelivery) -> Router {
    Router::new()
        .route("/api/v1/keys/{sae}/status", get(api::status))
        .route("/api/v1/keys/{sae}/enc_keys", get(api::enc_keys_get).post(api::enc_keys_post))
        .route("/api/v1/keys/{sae}/dec_keys", get(api::dec_keys_get).post(api::dec_keys_post))
        .fallback(api::unknown)
        .method_not_allowed_fallback(api::unknown)
        .with_state(state)
}
