//! Data resources (RFC 8040 §3.5, §4): `{+restconf}/data` and everything below it, with every
//! method. Reads render from a snapshot (cached per representation); writes are prepared on the
//! request's task and applied by the datastore owner, with the request's preconditions checked
//! atomically there.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::body::{accept_names, check_accept, read_json_sized};
use super::errors::{ErrorResponse, YANG_JSON, method_not_allowed};
use super::precondition::{Validators, conditions, validators};
use super::query::{check_write_query, read_query};
use super::{ServerState, json_response};
use crate::datastore::{ContentFilter, Edit, EditOp};
use crate::error::DataError;
use crate::input::InputPolicy;
use crate::path::DataPath;
use crate::schema::NodeKind;
use crate::tree::render::{RenderOptions, exists};

/// Methods of configuration containers and list entries.
const ALLOW_ALL: &str = "GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE";
/// Methods of the datastore resource (it cannot be deleted).
const ALLOW_DATASTORE: &str = "GET, HEAD, OPTIONS, PUT, POST, PATCH";
/// Methods of configuration leaves, leaf-lists and their entries (nothing to POST into).
const ALLOW_VALUE: &str = "GET, HEAD, OPTIONS, PUT, PATCH, DELETE";
/// Methods of read-only resources: state, and whole lists (written entry by entry).
const ALLOW_READ: &str = "GET, HEAD, OPTIONS";

/// The methods the resource at `path` supports.
fn allowed(schema: &crate::schema::Schema, path: &DataPath) -> &'static str {
    let Some(step) = path.last() else {
        return ALLOW_DATASTORE;
    };
    let def = schema.node(step.node);
    match def.kind {
        _ if !def.config => ALLOW_READ,
        NodeKind::List if step.selector == crate::path::Selector::None => ALLOW_READ,
        NodeKind::Leaf | NodeKind::LeafList | NodeKind::AnyData => ALLOW_VALUE,
        _ => ALLOW_ALL,
    }
}

/// Bodies above this size are parsed on a blocking thread.
const LARGE_BODY: usize = 64 * 1024;

/// Handles every request below `{+restconf}/data`.
pub(crate) async fn data(
    State(state): State<ServerState>,
    request: Request,
) -> Result<Response, ErrorResponse> {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path().strip_prefix("/restconf/data").unwrap_or("").to_owned();
    let query = parts.uri.query().map(str::to_owned);
    if matches!(parts.method, Method::PUT | Method::POST | Method::PATCH | Method::DELETE) {
        let path = DataPath::parse_restconf(state.ds.context(), &raw_path)?;
        let allow = allowed(state.ds.context().schema(), &path);
        if !allow.split(", ").any(|m| m == parts.method.as_str()) {
            return Err(refuse_method(state.ds.context().schema(), &parts.method, &path));
        }
    }
    match parts.method {
        Method::GET | Method::HEAD => {
            read(&state, &parts.method, &parts.headers, &raw_path, query.as_deref())
        }
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE => {
            write(
                &state,
                &parts.method,
                &parts.headers,
                &raw_path,
                query.as_deref(),
                Body::new(body),
            )
            .await
        }
        Method::OPTIONS => {
            let path = DataPath::parse_restconf(state.ds.context(), &raw_path)?;
            let allow = allowed(state.ds.context().schema(), &path);
            let mut response = StatusCode::OK.into_response();
            let headers = response.headers_mut();
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            if allow.contains("PATCH") {
                headers.insert("accept-patch", HeaderValue::from_static(YANG_JSON));
            }
            Ok(response)
        }
        ref other => {
            let path = DataPath::parse_restconf(state.ds.context(), &raw_path)?;
            Err(refuse_method(state.ds.context().schema(), other, &path))
        }
    }
}

/// 405 naming the resource and the methods it has.
fn refuse_method(
    schema: &crate::schema::Schema,
    method: &Method,
    path: &DataPath,
) -> ErrorResponse {
    let mut refusal = method_not_allowed(method, allowed(schema, path));
    let writes = matches!(*method, Method::PUT | Method::POST | Method::PATCH | Method::DELETE);
    let Some(step) = path.last() else {
        if writes {
            refusal.error.message.push_str(": the datastore resource itself cannot be deleted");
        }
        return refusal;
    };
    refusal.error = refusal.error.at(path.to_instance_identifier(schema));
    if !writes {
        return refusal;
    }
    let def = schema.node(step.node);
    let why = match def.kind {
        _ if !def.config => format!("{} is state (config false) and read-only", def.name),
        NodeKind::List if step.selector == crate::path::Selector::None => format!(
            "{} is a whole list: write one entry, named by its key values ({}=...)",
            def.name, def.name
        ),
        _ => format!("{} has no children to create: POST to its parent", def.name),
    };
    refusal.error.message.push_str(": ");
    refusal.error.message.push_str(&why);
    refusal
}

fn read(
    state: &ServerState,
    method: &Method,
    headers: &HeaderMap,
    raw_path: &str,
    query: Option<&str>,
) -> Result<Response, ErrorResponse> {
    check_accept(headers, &[YANG_JSON, "application/json"])?;
    let ctx = state.ds.context();
    let path = DataPath::parse_restconf(ctx, raw_path)?;
    let q = read_query(ctx.schema(), &path, query)?;
    let conditions = conditions(headers)?;
    let snap = state.ds.snapshot();
    if !path.is_root() && !exists(ctx.schema(), snap.layers(q.content), &path) {
        return Err(DataError::not_found(path.to_instance_identifier(ctx.schema())).into());
    }
    let v = validators(&snap, &path, q.content);
    if conditions.check_read(&v)? {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        set_validators(response.headers_mut(), &v);
        return Ok(response);
    }
    let members_only = members_only(state, headers, raw_path, &path);
    let cache_key = format!("{raw_path}?{}|{}|{members_only}", query.unwrap_or(""), v.etag);
    let body = match state.cache.get(&cache_key) {
        Some(body) => body,
        None => {
            let options = RenderOptions {
                depth: q.depth,
                fields: q.fields.as_ref(),
                defaults: q.defaults,
                unprefixed_top_level: state.options.unprefixed_top_level,
                members_only,
            };
            let text = snap
                .render(ctx, &path, q.content, &options)
                .ok_or_else(|| DataError::not_found(path.to_instance_identifier(ctx.schema())))?;
            let body = Bytes::from(text);
            state.cache.put(cache_key, body.clone());
            body
        }
    };
    let mut response = json_response(StatusCode::OK, body, *method == Method::HEAD);
    set_validators(response.headers_mut(), &v);
    Ok(response)
}

/// The compatibility shape of a top-level container (see the README's conformance notes): with
/// the compatibility switch on, `GET {+restconf}/data/<module>:<container>/` (the trailing slash
/// included) from a client that does not ask for `application/yang-data+json` by name answers
/// the container's members without the object naming it, as FreeCONF-based 015 servers do and
/// TeraFlowSDN's QKD driver reads (`value['qkdn_id']`). Every other request keeps its wrapper.
fn members_only(state: &ServerState, headers: &HeaderMap, raw_path: &str, path: &DataPath) -> bool {
    let schema = state.ds.context().schema();
    state.options.unprefixed_top_level
        && raw_path.ends_with('/')
        && path.steps().len() == 1
        && path.last().is_some_and(|s| schema.node(s.node).kind == NodeKind::Container)
        && !accept_names(headers, YANG_JSON)
}

async fn write(
    state: &ServerState,
    method: &Method,
    headers: &HeaderMap,
    raw_path: &str,
    query: Option<&str>,
    body: Body,
) -> Result<Response, ErrorResponse> {
    check_write_query(query, method.as_str())?;
    let ctx = state.ds.context().clone();
    let path = DataPath::parse_restconf(&ctx, raw_path)?;
    let conditions = conditions(headers)?;
    let body =
        read_json_sized(headers, body, state.options.max_body_bytes, state.options.body_timeout)
            .await?;
    let large = body.as_ref().is_some_and(|(_, len)| *len > LARGE_BODY);
    let body = match (body, &state.write_filter) {
        (Some((value, _)), Some(filter)) => Some(filter(&path, value)?),
        (body, _) => body.map(|(value, _)| value),
    };
    let op = match *method {
        Method::PUT => EditOp::Replace,
        Method::POST => EditOp::Create,
        Method::PATCH => EditOp::Merge,
        _ => EditOp::Delete,
    };
    let edit = if large {
        let (ctx2, path2) = (ctx.clone(), path.clone());
        tokio::task::spawn_blocking(move || {
            Edit::prepare(&ctx2, op, &path2, body, InputPolicy::CONFIG)
        })
        .await
        .map_err(|e| DataError::internal(format!("request parsing failed: {e}")))??
    } else {
        Edit::prepare(&ctx, op, &path, body, InputPolicy::CONFIG)?
    };
    let edit = match conditions.for_write(path.clone()) {
        Some(p) => edit.with_precondition(p),
        None => edit,
    };
    let target = edit.target().clone();
    let commit = state.ds.apply(edit).await?;
    let status = match op {
        EditOp::Create => StatusCode::CREATED,
        EditOp::Replace if commit.created => StatusCode::CREATED,
        _ => StatusCode::NO_CONTENT,
    };
    let mut response = status.into_response();
    if op != EditOp::Delete {
        let snap = state.ds.snapshot();
        let v = validators(&snap, &target, ContentFilter::Config);
        set_validators(response.headers_mut(), &v);
    }
    if status == StatusCode::CREATED {
        let location = format!("/restconf/data{}", target.to_uri(ctx.schema()));
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }
    Ok(response)
}

fn set_validators(headers: &mut HeaderMap, v: &Validators) {
    if let Ok(etag) = HeaderValue::from_str(&v.etag) {
        headers.insert(header::ETAG, etag);
    }
    if let Some(modified) = v.last_modified.filter(|t| *t > SystemTime::UNIX_EPOCH)
        && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        headers.insert(header::LAST_MODIFIED, value);
    }
}
