//! The handlers of the 014 API. Each checks the request completely before touching a store, so
//! a refused request consumes nothing. The calling SAE is the one the authorization gate found
//! in its certificate ([`Authorized`]); a request for a pair it is not part of is refused
//! through the gate's refusal path (logged and counted). Error bodies name no internal
//! identifier (links, nodes), and a key ID the caller may not read gets the same answer as one
//! that does not exist.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use qkdn_kit::Authorized;
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use qkdn_kit::Interface;

use super::wire::*;
use crate::kms::delivery::{DeliveryError, KeyDelivery, NewKeys};
use crate::kms::store::{Issued, StoreError};

type Auth = Extension<Authorized>;

/// The calling SAE, from its certificate (the gate lets only SAEs through).
fn caller(auth: &Auth) -> Result<String, ApiError> {
    auth.0
        .identity()
        .and_then(|i| i.sae())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::unauthorized("a client certificate naming an SAE is required"))
}

fn delivery_error(e: DeliveryError) -> ApiError {
    match e {
        DeliveryError::NotPaired(message) => ApiError::unauthorized(message),
        DeliveryError::OtherLink(_) => ApiError::bad_request(e.to_string()),
        DeliveryError::Rate(message) => ApiError::unavailable(message),
        DeliveryError::Store(e) => store_error(e),
    }
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        // Unknown, already fetched, expired, or delivered for someone else: one answer, so
        // that nobody learns whether a key ID they may not read exists.
        StoreError::NotFound | StoreError::NotAuthorized => ApiError::bad_request(KEYS_NOT_FOUND),
        StoreError::NotEnough { .. } => ApiError::unavailable(e.to_string()).for_lack_of_keys(),
        StoreError::KeptForOthers { .. } => ApiError::unavailable(e.to_string()),
        StoreError::NotThereYet(_) => ApiError::unavailable(
            "keys are not available now: they have not reached the other end of the key association yet; retry",
        ),
        StoreError::Peer(_) | StoreError::Unusable(_) | StoreError::NoLink(_) => {
            tracing::warn!(reason = %e, "keys not available");
            ApiError::unavailable(
                "keys are not available now: the other end of the key association did not confirm them; retry",
            )
        }
        StoreError::Db(reason) => {
            tracing::error!(%reason, "key store failure");
            ApiError::unavailable("key data access error")
        }
    }
}

/// The length of `{"keys":[...]}` for `keys`: the response buffer is allocated at this size
/// once and never grows (a growing buffer would leave unwiped copies of keys behind).
fn container_len(keys: &[Issued]) -> usize {
    let entries: usize = keys
        .iter()
        .map(|(_, key)| {
            r#"{"key_ID":""#.len()
                + 36
                + r#"","key":""#.len()
                + base64::encoded_len(key.len(), true).unwrap_or(0)
                + r#""}"#.len()
        })
        .sum();
    r#"{"keys":["#.len() + entries + keys.len().saturating_sub(1) + "]}".len()
}

/// `{"keys": [...]}` in a buffer of exactly its size, wiped when the response is dropped; keys
/// are encoded straight into it (no intermediate copy).
fn key_container(keys: Vec<Issued>) -> Response {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut body = Zeroizing::new(vec![0u8; container_len(&keys)]);
    let mut at = 0;
    fn put(body: &mut [u8], at: &mut usize, bytes: &[u8]) {
        body[*at..*at + bytes.len()].copy_from_slice(bytes);
        *at += bytes.len();
    }
    put(&mut body, &mut at, br#"{"keys":["#);
    for (i, (id, key)) in keys.iter().enumerate() {
        if i > 0 {
            put(&mut body, &mut at, b",");
        }
        put(&mut body, &mut at, br#"{"key_ID":""#);
        put(
            &mut body,
            &mut at,
            id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes(),
        );
        put(&mut body, &mut at, br#"","key":""#);
        at += engine
            .encode_slice(key.as_slice(), &mut body[at..])
            .expect("the buffer was sized for the encoding");
        put(&mut body, &mut at, br#""}"#);
    }
    put(&mut body, &mut at, b"]}");
    debug_assert_eq!(at, body.len());
    drop(keys);
    crate::kms::delivery::wiped_json(body)
}

/// The query's parameters ([`crate::kms::query`]), refusals in the standard's format.
fn query_pairs(query: &Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    crate::kms::query::parameters(query.as_deref())
        .map_err(|e| ApiError::bad_request(format!("bad request format: {e}")))
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
    State(state): State<KeyDelivery>,
    auth: Auth,
    Path(slave): Path<String>,
) -> Result<Response, ApiError> {
    let master = caller(&auth)?;
    let route = state.pair_route(&auth, &master, &slave).map_err(delivery_error)?;
    let limits = &state.limits;
    let target = state.stores.remote_of(route.link).map(|n| n.to_string()).unwrap_or_default();
    let status = Status {
        source_KME_ID: state.stores.node().to_string(),
        target_KME_ID: target,
        master_SAE_ID: master,
        slave_SAE_ID: slave,
        key_size: limits.key_size,
        stored_key_count: state.stores.available(route.link, limits.key_size).await as u64,
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
    State(state): State<KeyDelivery>,
    auth: Auth,
    Path(slave): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut request = KeyRequest::default();
    for (key, value) in query_pairs(&query)? {
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
    enc_keys(state, auth, slave, request).await
}

/// `POST {slave}/enc_keys`.
pub(super) async fn enc_keys_post(
    State(state): State<KeyDelivery>,
    auth: Auth,
    Path(slave): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = parse_json(&body)?;
    enc_keys(state, auth, slave, request).await
}

async fn enc_keys(
    state: KeyDelivery,
    auth: Auth,
    slave: String,
    request: KeyRequest,
) -> Result<Response, ApiError> {
    let master = caller(&auth)?;
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
    limits.check_size(size).map_err(|e| ApiError::bad_request(e.to_string()))?;
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
    let request =
        NewKeys { master: &master, slaves: &slaves, number, size_bits: size, chunk: None };
    let keys = state.issue(&auth, Interface::Etsi014, request).await.map_err(delivery_error)?;
    Ok(key_container(keys))
}

/// `GET {master}/dec_keys?key_ID=...`.
pub(super) async fn dec_keys_get(
    State(state): State<KeyDelivery>,
    auth: Auth,
    Path(master): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&query)?;
    let ids: Vec<String> = match pairs.as_slice() {
        [(key, value)] if key == "key_ID" => vec![value.clone()],
        _ => {
            return Err(ApiError::bad_request(
                "bad request format: GET dec_keys takes exactly one key_ID; use POST for more",
            ));
        }
    };
    dec_keys(state, auth, master, ids).await
}

/// `POST {master}/dec_keys`.
pub(super) async fn dec_keys_post(
    State(state): State<KeyDelivery>,
    auth: Auth,
    Path(master): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: KeyIds = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad request format: {e}")))?;
    let ids = request.key_IDs.into_iter().map(|k| k.key_ID).collect();
    dec_keys(state, auth, master, ids).await
}

async fn dec_keys(
    state: KeyDelivery,
    auth: Auth,
    master: String,
    ids: Vec<String>,
) -> Result<Response, ApiError> {
    let slave = caller(&auth)?;
    if ids.is_empty() {
        return Err(ApiError::bad_request("bad request format: key_IDs is empty"));
    }
    let most = state.limits.max_keys_per_request as usize;
    if ids.len() > most {
        return Err(ApiError::bad_request(format!(
            "bad request format: at most {most} key IDs per request (max_key_per_request)"
        )));
    }
    // An ID that is not a UUID cannot name a key of this KME.
    let ids: Vec<Uuid> = ids
        .iter()
        .map(|id| Uuid::parse_str(id).map_err(|_| ApiError::bad_request(KEYS_NOT_FOUND)))
        .collect::<Result<_, _>>()?;
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != ids.len() {
        return Err(ApiError::bad_request("bad request format: a key ID is named twice"));
    }
    let keys = state
        .redeem(&auth, Interface::Etsi014, &slave, &master, &ids)
        .await
        .map_err(delivery_error)?;
    Ok(key_container(keys))
}

/// Anything else under the server.
pub(super) async fn unknown() -> ApiError {
    ApiError::bad_request(
        "bad request format: the API is /api/v1/keys/{SAE_ID}/status, enc_keys and dec_keys",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_container_is_exactly_as_long_as_its_json() {
        for (n, bytes) in [(0usize, 32usize), (1, 32), (3, 1), (5, 2), (2, 1024)] {
            let keys: Vec<Issued> = (0..n)
                .map(|i| (Uuid::from_u128(i as u128), Zeroizing::new(vec![i as u8; bytes])))
                .collect();
            let expected = json!({"keys": keys.iter().map(|(id, k)| json!({"key_ID": id.to_string(),
                "key": base64::engine::general_purpose::STANDARD.encode(k.as_slice())})).collect::<Vec<_>>()})
            .to_string();
            assert_eq!(container_len(&keys), expected.len(), "{n} keys of {bytes} bytes");
        }
    }

    #[test]
    fn query_refusals_are_in_the_standards_words() {
        let refused = format!("{:?}", query_pairs(&Some("number=1&number=2".into())).unwrap_err());
        assert!(refused.contains("bad request format: query parameter number"), "{refused}");
    }
}
