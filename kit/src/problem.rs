//! Errors of the services' REST APIs, answered as RFC 9457 problem details
//! (`application/problem+json`): a title, the HTTP status, a detail sentence, and for invalid
//! requests the pointer of every field at fault; and the reading of a JSON request body, whose
//! syntax errors are answered the same way.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value as Json, json};

/// A field at fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer to the field (`/qos/rate_bps`; empty: the whole body).
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

/// A problem response of `status` saying `detail`.
pub fn response(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = json!({"type": "about:blank", "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(), "detail": detail.into()});
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// A request body as JSON, or the problem naming where its syntax fails.
pub fn json_body(body: &[u8]) -> Result<Json, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::field(
            "",
            format!("not valid JSON (line {}, column {}): {e}", e.line(), e.column()),
        )
    })
}

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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(response: Response) -> (StatusCode, String, Json) {
        let status = response.status();
        let kind = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, kind, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_problem_is_rfc_9457_with_its_fields() {
        let (status, kind, doc) = body(json_body(b"{\"a\": ").unwrap_err().into_response()).await;
        assert_eq!((status, kind.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"));
        assert_eq!(doc["errors"][0]["pointer"], "");
        assert!(doc["detail"].as_str().unwrap().contains("not valid JSON (line 1"), "{doc}");
        let (status, _, doc) = body(response(StatusCode::NOT_FOUND, "no such thing")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            doc,
            json!({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no such thing"})
        );
        let (status, _, doc) = body(ApiError::Conflict("taken".into()).into_response()).await;
        assert_eq!((status, doc["detail"].as_str()), (StatusCode::CONFLICT, Some("taken")));
        assert_eq!(json_body(b"[1]").unwrap(), json!([1]));
    }
}
