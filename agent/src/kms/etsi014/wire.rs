//! The ETSI GS QKD 014 v1.1.1 data formats (Status, Key request, Key container, Key IDs) and its
//! error answers: only 400, 401 and 503, each with a JSON `{"message": ...}` body (401 included,
//! since some clients fail on an empty body), with the standard's exact messages where it gives
//! them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json_, json};

/// The standard's message for unknown or consumed key IDs.
pub const KEYS_NOT_FOUND: &str = "one or more keys specified are not found on KME";
/// The standard's message for unsupported mandatory extensions.
pub const MANDATORY_UNSUPPORTED: &str = "not all extension_mandatory parameters are supported";

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Json_,
    /// A refusal for lack of key material (the application counts as starved).
    pub no_key_material: bool,
}

impl ApiError {
    /// 400 Bad request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, json!({"message": message.into()}))
    }

    /// 400 with `details`.
    pub fn bad_request_details(message: &str, details: Vec<Json_>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, json!({"message": message, "details": details}))
    }

    /// 401 Unauthorized.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, json!({"message": message.into()}))
    }

    /// 503 Service unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, json!({"message": message.into()}))
    }

    /// Marks a refusal for lack of key material.
    pub fn for_lack_of_keys(self) -> Self {
        ApiError { no_key_material: true, ..self }
    }

    fn new(status: StatusCode, body: Json_) -> Self {
        ApiError { status, body, no_key_material: false }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// `Status`.
#[derive(Debug, Serialize)]
#[allow(non_snake_case)]
pub struct Status {
    /// This KME.
    pub source_KME_ID: String,
    /// The KME serving the slave SAE.
    pub target_KME_ID: String,
    /// The calling SAE.
    pub master_SAE_ID: String,
    /// The SAE named in the path.
    pub slave_SAE_ID: String,
    /// Default key size, bits.
    pub key_size: u32,
    /// Keys deliverable to this pair now.
    pub stored_key_count: u64,
    /// Most keys the store holds for the pair.
    pub max_key_count: u64,
    /// Most keys per request.
    pub max_key_per_request: u32,
    /// Largest key size, bits.
    pub max_key_size: u32,
    /// Smallest key size, bits.
    pub min_key_size: u32,
    /// Most additional slave SAEs (0: no multicast).
    pub max_SAE_ID_count: u32,
}

/// `Key request` (every member optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct KeyRequest {
    /// Number of keys (default 1).
    pub number: Option<u64>,
    /// Size of each key, bits (default `key_size`).
    pub size: Option<u64>,
    #[serde(default)]
    /// Further slaves for the same keys (multicast).
    pub additional_slave_SAE_IDs: Vec<String>,
    #[serde(default)]
    /// Extensions the KME must handle.
    pub extension_mandatory: Vec<serde_json::Map<String, Json_>>,
    #[serde(default)]
    /// Extensions the KME may ignore.
    pub extension_optional: Vec<serde_json::Map<String, Json_>>,
}

/// One entry of `Key IDs`.
#[derive(Debug, Deserialize)]
#[allow(non_snake_case)]
pub struct KeyIdEntry {
    /// A key ID.
    pub key_ID: String,
    #[serde(default)]
    /// Its extension.
    pub key_ID_extension: Option<Json_>,
}

/// `Key IDs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct KeyIds {
    /// The keys asked for.
    pub key_IDs: Vec<KeyIdEntry>,
    #[serde(default)]
    /// An extension.
    pub key_IDs_extension: Option<Json_>,
}
