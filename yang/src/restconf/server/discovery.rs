//! The non-datastore resources of the RESTCONF API: root discovery through host-meta (RFC 6415,
//! RFC 8040 §3.1), the API root, `yang-library-version`, and the operations list.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::json;

use super::errors::{ErrorResponse, YANG_JSON, method_not_allowed};
use super::library::YANG_LIBRARY_REVISION;
use super::{ServerState, json_response};
use crate::error::DataError;

const READ_ONLY: &str = "GET, HEAD, OPTIONS";

fn read_only(method: &Method) -> Result<(), ErrorResponse> {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Ok(()),
        _ => Err(method_not_allowed(method, READ_ONLY)),
    }
}

fn options_response() -> Response {
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(READ_ONLY));
    response
}

/// `/.well-known/host-meta`: where the RESTCONF root is.
pub(crate) async fn host_meta(method: Method) -> Result<Response, ErrorResponse> {
    read_only(&method)?;
    if method == Method::OPTIONS {
        return Ok(options_response());
    }
    let body = "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  \
                <Link rel='restconf' href='/restconf'/>\n</XRD>\n";
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xrd+xml"));
    Ok(response)
}

/// `/.well-known/host-meta.json`: the same in JRD form.
pub(crate) async fn host_meta_json(method: Method) -> Result<Response, ErrorResponse> {
    read_only(&method)?;
    if method == Method::OPTIONS {
        return Ok(options_response());
    }
    let mut response =
        json!({"links": [{"rel": "restconf", "href": "/restconf"}]}).to_string().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jrd+json"));
    Ok(response)
}

/// `{+restconf}`: the API root resource.
pub(crate) async fn api_root(
    method: Method,
    headers: http::HeaderMap,
) -> Result<Response, ErrorResponse> {
    read_only(&method)?;
    if method == Method::OPTIONS {
        return Ok(options_response());
    }
    super::body::check_accept(&headers, &[YANG_JSON, "application/json"])?;
    let body = json!({"ietf-restconf:restconf": {
        "data": {}, "operations": {}, "yang-library-version": YANG_LIBRARY_REVISION}});
    Ok(json_response(StatusCode::OK, body.to_string(), method == Method::HEAD))
}

/// `{+restconf}/yang-library-version`.
pub(crate) async fn yang_library_version(
    method: Method,
    headers: http::HeaderMap,
) -> Result<Response, ErrorResponse> {
    read_only(&method)?;
    if method == Method::OPTIONS {
        return Ok(options_response());
    }
    super::body::check_accept(&headers, &[YANG_JSON, "application/json"])?;
    let body = json!({"ietf-restconf:yang-library-version": YANG_LIBRARY_REVISION});
    Ok(json_response(StatusCode::OK, body.to_string(), method == Method::HEAD))
}

/// `{+restconf}/operations`: the operations the server can invoke.
pub(crate) async fn operations_list(
    State(state): State<ServerState>,
    method: Method,
    headers: http::HeaderMap,
) -> Result<Response, ErrorResponse> {
    read_only(&method)?;
    if method == Method::OPTIONS {
        return Ok(options_response());
    }
    super::body::check_accept(&headers, &[YANG_JSON, "application/json"])?;
    let mut ops = serde_json::Map::new();
    for name in state.operations.keys() {
        ops.insert(name.clone(), json!([null]));
    }
    let body = json!({"ietf-restconf:operations": ops});
    Ok(json_response(StatusCode::OK, body.to_string(), method == Method::HEAD))
}

/// Anything else: 404 with an error body.
pub(crate) async fn not_found(uri: http::Uri) -> ErrorResponse {
    DataError::invalid_value(format!("no resource at {}", uri.path())).with_status(404).into()
}
