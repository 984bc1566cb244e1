//! Operation resources (RFC 8040 §3.6): `POST {+restconf}/operations/<module>:<rpc>`.
//!
//! Input is normalised and validated against the RPC's `input` by libyang, handed to the handler
//! the application registered, and the handler's output is validated against `output` before it
//! is sent (as `{"module:output": {...}}`, or 204 when there is none).

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{Value as Json, json};

use super::body::{check_accept, read_json};
use super::errors::{ErrorResponse, YANG_JSON, method_not_allowed};
use super::query::check_write_query;
use super::{ServerState, json_response};
use crate::error::{DataError, ErrorTag};
use crate::input::{InputPolicy, single_member};
use crate::ly::validate_rpc;
use crate::path::DataPath;

/// The future an [`OperationHandler`] returns.
pub type OperationFuture = Pin<Box<dyn Future<Output = Result<Option<Json>, DataError>> + Send>>;

/// Carries out one RPC. The input is the object of the RPC's input nodes (`{}` when the request
/// had none); the output, if any, is the object of its output nodes.
pub trait OperationHandler: Send + Sync + 'static {
    /// Runs the operation.
    fn invoke(&self, input: Json) -> OperationFuture;
}

impl<F, Fut> OperationHandler for F
where
    F: Fn(Json) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Json>, DataError>> + Send + 'static,
{
    fn invoke(&self, input: Json) -> OperationFuture {
        Box::pin(self(input))
    }
}

const ALLOW: &str = "POST, OPTIONS";

/// `POST {+restconf}/operations/{name}`.
pub(crate) async fn invoke(
    State(state): State<ServerState>,
    request: Request,
) -> Result<Response, ErrorResponse> {
    let (parts, body) = request.into_parts();
    if parts.method == Method::OPTIONS {
        let mut response = StatusCode::OK.into_response();
        response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static(ALLOW));
        return Ok(response);
    }
    if parts.method != Method::POST {
        return Err(method_not_allowed(&parts.method, ALLOW));
    }
    check_write_query(parts.uri.query(), "POST")?;
    check_accept(&parts.headers, &[YANG_JSON, "application/json"])?;
    let raw = parts.uri.path().trim_start_matches("/restconf/operations/").trim_end_matches('/');
    let name = percent_decode_str(raw).decode_utf8_lossy().into_owned();
    let ctx = state.ds.context().clone();
    let schema = ctx.schema();
    let Some(rpc) = schema.operations().get(&name).copied() else {
        return Err(DataError::invalid_value(format!("there is no operation \"{name}\""))
            .with_status(404)
            .into());
    };
    let Some(handler) = state.operations.get(&name).cloned() else {
        return Err(DataError::new(
            ErrorTag::OperationNotSupported,
            format!("operation {name} is defined but not implemented by this server"),
        )
        .with_status(501)
        .into());
    };
    let module = schema.node(rpc).module.clone();
    let body = read_json(
        &parts.headers,
        Body::new(body),
        state.options.max_body_bytes,
        state.options.body_timeout,
    )
    .await?;
    let input = match body {
        None => json!({}),
        Some(doc) => {
            let (member, value) =
                single_member(&ctx, rpc, &DataPath::root(), doc, InputPolicy::ALL)?;
            if schema.node(member).name != "input" {
                return Err(DataError::invalid_value(format!(
                    "the body of an operation is {{\"{module}:input\": {{...}}}}"
                ))
                .into());
            }
            value
        }
    };
    validate_rpc(&ctx, &json!({ name.clone(): input.clone() }).to_string(), false)?;
    let output = handler.invoke(input).await?;
    let Some(output) = output else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let wrapped = json!({ format!("{module}:output"): output });
    let (_, output) = single_member(&ctx, rpc, &DataPath::root(), wrapped, InputPolicy::ALL)
        .map_err(|e| {
            DataError::internal(format!("operation {name} produced invalid output: {e}"))
        })?;
    validate_rpc(&ctx, &json!({ name.clone(): output.clone() }).to_string(), true).map_err(
        |e| DataError::internal(format!("operation {name} produced invalid output: {e}")),
    )?;
    let body = json!({ format!("{module}:output"): output }).to_string();
    Ok(json_response(StatusCode::OK, body, false))
}
