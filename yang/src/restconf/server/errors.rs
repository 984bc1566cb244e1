//! Error responses: every failure becomes an `ietf-restconf:errors` body (RFC 8040 §7) with the
//! status its error tag maps to, and the media type `application/yang-data+json`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::error::{DataError, ErrorTag};

/// The media type of RESTCONF JSON bodies.
pub(crate) const YANG_JSON: &str = "application/yang-data+json";

/// A [`DataError`] on its way out as an HTTP response.
#[derive(Debug)]
pub(crate) struct ErrorResponse {
    pub(crate) error: DataError,
    pub(crate) allow: Option<&'static str>,
}

impl From<DataError> for ErrorResponse {
    fn from(error: DataError) -> Self {
        ErrorResponse { error, allow: None }
    }
}

/// The `error-type` of an error: `protocol` for problems with the request itself, `application`
/// for problems with the data.
fn error_type(err: &DataError) -> &'static str {
    let status = err.http_status();
    if err.protocol
        || matches!(status, 405 | 406 | 408 | 412 | 413 | 415 | 503)
        || matches!(
            err.tag,
            ErrorTag::MalformedMessage
                | ErrorTag::OperationNotSupported
                | ErrorTag::TooBig
                | ErrorTag::AccessDenied
                | ErrorTag::LockDenied
        )
    {
        "protocol"
    } else {
        "application"
    }
}

/// The `ietf-restconf:errors` document for `err`.
pub fn errors_body(err: &DataError) -> serde_json::Value {
    let mut entry = serde_json::Map::new();
    entry.insert("error-type".into(), json!(error_type(err)));
    entry.insert("error-tag".into(), json!(err.tag.as_str()));
    if let Some(app_tag) = &err.app_tag {
        entry.insert("error-app-tag".into(), json!(app_tag));
    }
    if let Some(path) = &err.path {
        entry.insert("error-path".into(), json!(path));
    }
    entry.insert("error-message".into(), json!(err.message));
    json!({"ietf-restconf:errors": {"error": [entry]}})
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = errors_body(&self.error).to_string();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(YANG_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// 405 for a method the resource does not support.
pub(crate) fn method_not_allowed(method: &http::Method, allow: &'static str) -> ErrorResponse {
    ErrorResponse {
        error: DataError::new(
            ErrorTag::OperationNotSupported,
            format!("method {method} is not supported on this resource (allowed: {allow})"),
        ),
        allow: Some(allow),
    }
}
