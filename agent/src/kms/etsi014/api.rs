//! The handlers of the 014 API. Each checks the request completely before touching a store, so
//! a refused request consumes nothing.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use qkdn_yang::tls::PeerCertificates;
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::wire::*;
use super::{Route, ServerState};
use crate::kms::store::{Issued, StoreError, Take};

type Certs = Option<Extension<PeerCertificates>>;

/// The calling SAE, from its certificate.
fn caller(state: &ServerState, certs: &Certs) -> Result<String, ApiError> {
    let cert = certs
        .as_ref()
        .and_then(|c| c.0.0.first().cloned())
        .ok_or_else(|| ApiError::unauthorized("a client certificate is required"))?;
    state
        .identity
        .sae_of(&cert)
        .ok_or_else(|| ApiError::unauthorized("the client certificate names no known SAE"))
}

fn route(state: &ServerState, local: &str, remote: &str) -> Result<Route, ApiError> {
    state.route(local, remote).ok_or_else(|| {
        ApiError::unauthorized(format!("SAE {local} has no key association with SAE {remote}"))
    })
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::bad_request(KEYS_NOT_FOUND),
        StoreError::NotAuthorized => {
            ApiError::unauthorized("the keys were not delivered for this SAE")
        }
        StoreError::NotEnough { .. }
        | StoreError::Peer(_)
        | StoreError::Unusable(_)
        | StoreError::NoLink(_) => ApiError::unavailable(e.to_string()),
        StoreError::Db(reason) => {
            tracing::error!(%reason, "key store failure");
            ApiError::unavailable("key data access error")
        }
    }
}

/// `{"keys": [...]}` in a buffer that is wiped when the response is dropped.
fn key_container(keys: Vec<Issued>) -> Response {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut body = Zeroizing::new(Vec::with_capacity(keys.len() * 96 + 16));
    body.extend_from_slice(b"{\"keys\":[");
    for (i, (id, key)) in keys.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"key_ID\":\"");
        body.extend_from_slice(id.to_string().as_bytes());
        body.extend_from_slice(b"\",\"key\":\"");
        let mut encoded = Zeroizing::new(engine.encode(key.as_slice()));
        body.extend_from_slice(encoded.as_bytes());
        encoded.clear();
        body.extend_from_slice(b"\"}");
    }
    body.extend_from_slice(b"]}");
    let mut response = Response::new(Body::from(Bytes::from_owner(body)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn query_pairs(query: &Option<String>) -> Vec<(String, String)> {
    query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

fn parse_json<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("bad request format: {e}")))
}

/// `GET {slave}/status`.
pub(super) async fn status(
    State(state): State<ServerState>,
    certs: Certs,
    Path(slave): Path<String>,
) -> Result<Response, ApiError> {
    let master = caller(&state, &certs)?;
    let route = route(&state, &master, &slave)?;
    let limits = &state.limits;
    let target = state.stores.remote_of(route.link).map(|n| n.to_string()).unwrap_or_default();
    let status = Status {
        source_KME_ID: state.stores.node().to_string(),
        target_KME_ID: target,
        master_SAE_ID: master,
        slave_SAE_ID: slave,
        key_size: limits.key_size,
        stored_key_count: state.stores.available(route.link, limits.key_size) as u64,
        max_key_count: limits.max_key_count,
        max_key_per_request: limits.max_keys_per_request,
        max_key_size: limits.max_key_size,
        min_key_size: limits.min_key_size,
        max_SAE_ID_count: limits.max_sae_id_count,
    };
    Ok(axum::Json(status).into_response())
}

/// `GET {slave}/enc_keys[?number=N&size=S]`.
pub(super) async fn enc_keys_get(
    State(state): State<ServerState>,
    certs: Certs,
    Path(slave): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut request = KeyRequest::default();
    for (key, value) in query_pairs(&query) {
        let number = value.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("bad request format: {key} must be a positive integer"))
        });
        match key.as_str() {
            "number" => request.number = Some(number?),
            "size" => request.size = Some(number?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "bad request format: unknown query parameter {other} (GET takes number and size; use POST for more)"
                )));
            }
        }
    }
    enc_keys(state, certs, slave, request).await
}

/// `POST {slave}/enc_keys`.
pub(super) async fn enc_keys_post(
    State(state): State<ServerState>,
    certs: Certs,
    Path(slave): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = parse_json(&body)?;
    enc_keys(state, certs, slave, request).await
}

async fn enc_keys(
    state: ServerState,
    certs: Certs,
    slave: String,
    request: KeyRequest,
) -> Result<Response, ApiError> {
    let master = caller(&state, &certs)?;
    let limits = &state.limits;
    if !request.extension_mandatory.is_empty() {
        let details = request
            .extension_mandatory
            .iter()
            .flat_map(|e| e.keys())
            .map(|name| json!({"extension_mandatory_unsupported": format!("{name} is not supported")}))
            .collect();
        return Err(ApiError::bad_request_details(MANDATORY_UNSUPPORTED, details));
    }
    let number = request.number.unwrap_or(1);
    if number == 0 || number > u64::from(limits.max_keys_per_request) {
        return Err(ApiError::bad_request(format!(
            "number shall be between 1 and {} (max_key_per_request)",
            limits.max_keys_per_request
        )));
    }
    let size = request.size.unwrap_or(u64::from(limits.key_size));
    if !size.is_multiple_of(8) {
        return Err(ApiError::bad_request(SIZE_MULTIPLE_OF_8));
    }
    if size < u64::from(limits.min_key_size) || size > u64::from(limits.max_key_size) {
        return Err(ApiError::bad_request(format!(
            "size shall be between {} and {} (min_key_size, max_key_size)",
            limits.min_key_size, limits.max_key_size
        )));
    }
    if request.additional_slave_SAE_IDs.len() > limits.max_sae_id_count as usize {
        return Err(ApiError::bad_request(format!(
            "at most {} additional_slave_SAE_IDs (max_SAE_ID_count)",
            limits.max_sae_id_count
        )));
    }
    let mut slaves = vec![slave.clone()];
    for extra in &request.additional_slave_SAE_IDs {
        if !slaves.contains(extra) {
            slaves.push(extra.clone());
        }
    }
    let started = std::time::Instant::now();
    let route = route(&state, &master, &slave)?;
    let result = deliver(&state, &master, &slaves, &route, number, size).await;
    if let Some(app) = route.app {
        let keys = result.as_ref().ok().map(|_| number as usize);
        state.usage.record(app, started.elapsed(), keys);
    }
    result
}

/// The keys of an `enc_keys` request whose route is known.
async fn deliver(
    state: &ServerState,
    master: &str,
    slaves: &[String],
    route: &Route,
    number: u64,
    size: u64,
) -> Result<Response, ApiError> {
    let slave = &slaves[0];
    for extra in &slaves[1..] {
        if route_link(state, master, extra)? != route.link {
            return Err(ApiError::bad_request(format!(
                "SAE {extra} is not reached by the same link as SAE {slave}"
            )));
        }
    }
    let take = Take {
        link: route.link,
        master,
        slaves,
        number: number as usize,
        size_bits: size as u32,
        ttl: route.ttl,
    };
    let applications = state.applications.borrow().clone();
    let guaranteed =
        super::limits::guaranteed_to_others(&applications, route.link, route.app, size as u32);
    if guaranteed > 0 {
        let available = state.stores.available(route.link, size as u32);
        if available < number as usize + guaranteed {
            return Err(ApiError::unavailable(format!(
                "not enough keys: {available} available, {guaranteed} of them kept for the \
                 min_bandwidth of other applications on link {}",
                route.link
            )));
        }
    }
    let bits = number * size;
    if let (Some(app), Some(rate)) = (route.app, route.rate) {
        state.limiter.admit(app, rate, bits).map_err(ApiError::unavailable)?;
    }
    let keys = match state.stores.take(&take, state.peer.as_ref()).await {
        Ok(keys) => keys,
        Err(e) => {
            if let (Some(app), Some(rate)) = (route.app, route.rate) {
                state.limiter.refund(app, rate, bits);
            }
            return Err(store_error(e));
        }
    };
    if let Some(app) = route.app {
        state.usage.add(app, bits);
    }
    // The IDs are listed only when debug logging is on.
    tracing::debug!(%master, ?slaves, link = %route.link,
        keys = ?keys.iter().map(|(id, _)| id).collect::<Vec<_>>(), size, "enc_keys delivered");
    Ok(key_container(keys))
}

fn route_link(state: &ServerState, master: &str, slave: &str) -> Result<Uuid, ApiError> {
    route(state, master, slave).map(|r| r.link)
}

/// `GET {master}/dec_keys?key_ID=...`.
pub(super) async fn dec_keys_get(
    State(state): State<ServerState>,
    certs: Certs,
    Path(master): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&query);
    let ids: Vec<String> = match pairs.as_slice() {
        [(key, value)] if key == "key_ID" => vec![value.clone()],
        _ => {
            return Err(ApiError::bad_request(
                "bad request format: GET dec_keys takes exactly one key_ID; use POST for more",
            ));
        }
    };
    dec_keys(state, certs, master, ids).await
}

/// `POST {master}/dec_keys`.
pub(super) async fn dec_keys_post(
    State(state): State<ServerState>,
    certs: Certs,
    Path(master): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: KeyIds = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad request format: {e}")))?;
    let ids = request.key_IDs.into_iter().map(|k| k.key_ID).collect();
    dec_keys(state, certs, master, ids).await
}

async fn dec_keys(
    state: ServerState,
    certs: Certs,
    master: String,
    ids: Vec<String>,
) -> Result<Response, ApiError> {
    let slave = caller(&state, &certs)?;
    if ids.is_empty() {
        return Err(ApiError::bad_request("bad request format: key_IDs is empty"));
    }
    // An ID that is not a UUID cannot name a key of this KME.
    let ids: Vec<Uuid> = ids
        .iter()
        .map(|id| Uuid::parse_str(id).map_err(|_| ApiError::bad_request(KEYS_NOT_FOUND)))
        .collect::<Result<_, _>>()?;
    let route = route(&state, &slave, &master)?;
    let keys = state.stores.fetch(route.link, &slave, &master, &ids).await.map_err(store_error)?;
    if let Some(app) = route.app {
        let bits: u64 = keys.iter().map(|(_, k)| k.len() as u64 * 8).sum();
        state.usage.add(app, bits);
    }
    tracing::debug!(%slave, %master, link = %route.link, keys = ?ids, "dec_keys delivered");
    Ok(key_container(keys))
}

/// Anything else under the server.
pub(super) async fn unknown() -> ApiError {
    ApiError::bad_request(
        "bad request format: the API is /api/v1/keys/{SAE_ID}/status, enc_keys and dec_keys",
    )
}
