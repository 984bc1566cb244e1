//! Errors of the controller's REST API, answered as RFC 9457 problem details
//! (`application/problem+json`): a title, the HTTP status, a detail sentence, and for invalid
//! requests the pointer of every field at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::apps::FieldError;

/// An API error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; every field at fault.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// A node, application or SAE that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the state (infeasible QoS, an id reused with other content).
    #[error("{0}")]
    Conflict(String),
    /// A node refused or did not answer a write the request needed.
    #[error("{0}")]
    Agent(String),
    /// The request needs credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The controller cannot serve the request now.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Agent(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A problem for one field.
    pub fn field(pointer: &str, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![FieldError { pointer: pointer.to_owned(), detail: detail.into() }])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
        });
        match &self {
            ApiError::Invalid(errors) => {
                body["detail"] = json!(format!(
                    "the request has {} invalid field(s): {}",
                    errors.len(),
                    errors
                        .iter()
                        .map(|e| format!(
                            "{} {}",
                            if e.pointer.is_empty() { "(body)" } else { &e.pointer },
                            e.detail
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
                body["errors"] = json!(errors);
            }
            other => body["detail"] = json!(other.to_string()),
        }
        let mut response = (status, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
