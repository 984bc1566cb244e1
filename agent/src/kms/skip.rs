//! The node's SKIP key provider (Cisco's Secure Key Integration Protocol,
//! draft-cisco-skip-02): how routers and IPsec gateways take post-quantum pre-shared keys for
//! IKEv2 (RFC 8784). GET only, JSON answers, hex encodings:
//!
//! * `GET /capabilities`: `{entropy, key, algorithm, localSystemID, remoteSystemID[]}`;
//! * `GET /key?remoteSystemID=B[&size=BITS]`: a new key shared with encryptor B, `{keyId, key}`;
//! * `GET /key/{keyId}?remoteSystemID=A`: the key encryptor A took, by its ID;
//! * `GET /entropy[?minentropy=BITS]`: random bytes from the operating system's generator,
//!   `{randomStr, minentropy}`.
//!
//! An encryptor is an SAE: `localSystemID` is the calling SAE's ID, from its certificate (the
//! shared TLS policy, as the KMS's `tls` sets it) or its pre-shared key (TLS 1.2 DHE-PSK,
//! `qkdn_kit::psk`), never
//! from the request; `remoteSystemID` is the peer SAE's ID. So SKIP pairs are ETSI 014 pairs,
//! served by the same delivery core ([`super::delivery`]) with the same quotas and guarantees:
//! `/key` issues one key for the peer, `/key/{keyId}` redeems it there, once. The `keyId` is the
//! key's 014 UUID as 32 hex digits, so an encryptor and a 014 SAE of one pair share keys both
//! ways. A key handed out is gone from this node (the store erased its copy) and its answer's
//! buffer is wiped when sent.
//!
//! Where the draft names no status, the reference's suggestions hold: an unknown
//! `remoteSystemID`, a malformed or unknown `keyId` or an unsupported size get 400; no key
//! available now gets 503; a store failure 500. Other paths get 404, other methods 405 with
//! `Allow: GET`. Every error has an RFC 9457 body.

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use qkdn_kit::{Authorized, Interface};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::delivery::{DeliveryError, KeyDelivery, NewKeys};
use super::store::{Issued, StoreError};

/// The key size when the request names none, bits (the draft's default).
pub const DEFAULT_KEY_BITS: u64 = 256;
/// The entropy sample when the request names none, bits (the draft's default).
pub const DEFAULT_ENTROPY_BITS: u64 = 256;
/// The largest entropy sample served, bits.
pub const MAX_ENTROPY_BITS: u64 = 8192;
/// What `/capabilities` says keys are made with.
pub const ALGORITHM: &str = "QKD";

/// The router of the key provider.
pub fn router(delivery: KeyDelivery) -> Router {
    Router::new()
        .route("/capabilities", get(capabilities))
        .route("/key", get(new_key))
        .route("/key/{key_id}", get(key_by_id))
        .route("/entropy", get(entropy))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, NOT_FOUND) })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(delivery)
}

const NOT_FOUND: &str =
    "no such resource: the key provider serves /capabilities, /key, /key/{keyId} and /entropy";

async fn method_not_allowed() -> Response {
    let mut response =
        problem(StatusCode::METHOD_NOT_ALLOWED, "the key provider answers GET requests only");
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    qkdn_kit::problem::response(status, detail)
}

/// A request the provider does not serve: its status and why (an RFC 9457 body).
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    detail: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        problem(self.status, self.detail)
    }
}

fn refusal(status: StatusCode, detail: impl Into<String>) -> Refusal {
    Refusal { status, detail: detail.into() }
}

fn bad_request(detail: impl Into<String>) -> Refusal {
    refusal(StatusCode::BAD_REQUEST, detail)
}

/// The calling encryptor, from its credential (the gate lets only SAEs through).
fn caller(auth: &Authorized) -> Result<String, Refusal> {
    auth.identity().and_then(|i| i.sae()).map(str::to_owned).ok_or_else(|| {
        refusal(StatusCode::UNAUTHORIZED, "a certificate or pre-shared key of an SAE is required")
    })
}

/// The query's parameters ([`super::query`]); any but `known` is refused.
fn query(raw: &Option<String>, known: &[&str]) -> Result<Vec<(String, String)>, Refusal> {
    let pairs = super::query::parameters(raw.as_deref()).map_err(|e| bad_request(e.to_string()))?;
    if let Some((key, _)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(bad_request(format!(
            "unknown query parameter {key}; this resource takes {}",
            known.join(", ")
        )));
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn remote_system(pairs: &[(String, String)]) -> Result<String, Refusal> {
    match param(pairs, "remoteSystemID") {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(bad_request("remoteSystemID (the peer encryptor's ID) is required")),
    }
}

fn bits(pairs: &[(String, String)], name: &str, default: u64) -> Result<u64, Refusal> {
    match param(pairs, name) {
        None => Ok(default),
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| bad_request(format!("{name} must be a positive whole number of bits"))),
    }
}

fn delivery_error(e: DeliveryError) -> Refusal {
    match e {
        DeliveryError::NotPaired(message) => bad_request(message),
        DeliveryError::OtherLink(_) => bad_request(e.to_string()),
        DeliveryError::Rate(message) => refusal(StatusCode::SERVICE_UNAVAILABLE, message),
        DeliveryError::Store(e) => match e {
            // Unknown, already fetched, expired, or taken for someone else: one answer.
            StoreError::NotFound | StoreError::NotAuthorized => {
                bad_request("no key with this keyId is waiting for this encryptor")
            }
            StoreError::NotEnough { .. }
            | StoreError::KeptForOthers { .. }
            | StoreError::NotThereYet(_)
            | StoreError::Peer(_)
            | StoreError::Unusable(_)
            | StoreError::NoLink(_) => {
                tracing::debug!(reason = %e, "SKIP key not available");
                refusal(StatusCode::SERVICE_UNAVAILABLE, format!("no key is available now: {e}"))
            }
            StoreError::Db(reason) => {
                tracing::error!(%reason, "key store failure");
                refusal(StatusCode::INTERNAL_SERVER_ERROR, "the key could not be read")
            }
        },
    }
}

/// `GET /capabilities`: what the provider offers the calling encryptor, and its peers.
async fn capabilities(
    State(delivery): State<KeyDelivery>,
    Extension(auth): Extension<Authorized>,
) -> Response {
    let local = match caller(&auth) {
        Ok(local) => local,
        Err(refused) => return refused.into_response(),
    };
    let partners = delivery.partners(&local);
    Json(json!({
        "entropy": true,
        "key": true,
        "algorithm": ALGORITHM,
        "localSystemID": local,
        "remoteSystemID": partners,
    }))
    .into_response()
}

/// `GET /key?remoteSystemID=..[&size=..]`.
async fn new_key(
    State(delivery): State<KeyDelivery>,
    Extension(auth): Extension<Authorized>,
    RawQuery(raw): RawQuery,
) -> Response {
    let answer = async {
        let local = caller(&auth)?;
        let pairs = query(&raw, &["remoteSystemID", "size"])?;
        let remote = remote_system(&pairs)?;
        let size = bits(&pairs, "size", DEFAULT_KEY_BITS)?;
        delivery.limits.check_size(size).map_err(|e| bad_request(e.to_string()))?;
        let slaves = [remote];
        let request =
            NewKeys { master: &local, slaves: &slaves, number: 1, size_bits: size, chunk: None };
        let keys = delivery.issue(&auth, Interface::Skip, request).await.map_err(delivery_error)?;
        Ok::<_, Refusal>(key_answer(keys))
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /key/{keyId}?remoteSystemID=..`.
async fn key_by_id(
    State(delivery): State<KeyDelivery>,
    Extension(auth): Extension<Authorized>,
    Path(key_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let answer = async {
        let local = caller(&auth)?;
        let pairs = query(&raw, &["remoteSystemID"])?;
        let remote = remote_system(&pairs)?;
        let id = key_id_of(&key_id).ok_or_else(|| {
            bad_request("keyId is malformed: it is the key's 32 hexadecimal digits")
        })?;
        let keys = delivery
            .redeem(&auth, Interface::Skip, &local, &remote, &[id])
            .await
            .map_err(delivery_error)?;
        Ok::<_, Refusal>(key_answer(keys))
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// The key a `keyId` names: 32 hex digits in either case (a UUID without its dashes).
pub fn key_id_of(text: &str) -> Option<Uuid> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// The `keyId` of a key.
pub fn key_id(id: &Uuid) -> String {
    id.simple().to_string()
}

/// `{"keyId":"..","key":".."}` in a buffer of exactly its size, wiped when the response is
/// dropped; the key is written into it as hex directly (no intermediate copy).
fn key_answer(keys: Vec<Issued>) -> Response {
    let Some((id, key)) = keys.first() else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "the key could not be read");
    };
    const HEAD: &[u8] = br#"{"keyId":""#;
    const MIDDLE: &[u8] = br#"","key":""#;
    const TAIL: &[u8] = br#""}"#;
    let id = key_id(id);
    let length = HEAD.len() + id.len() + MIDDLE.len() + 2 * key.len() + TAIL.len();
    let mut body = Zeroizing::new(Vec::with_capacity(length));
    body.extend_from_slice(HEAD);
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(MIDDLE);
    put_hex(&mut body, key, LOWER_HEX);
    body.extend_from_slice(TAIL);
    debug_assert_eq!(body.len(), length, "the buffer never grew");
    drop(keys);
    crate::kms::delivery::wiped_json(body)
}

const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";
const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `bytes` to `out` in hexadecimal with `digits`.
fn put_hex(out: &mut Vec<u8>, bytes: &[u8], digits: &[u8; 16]) {
    for byte in bytes {
        out.push(digits[usize::from(byte >> 4)]);
        out.push(digits[usize::from(byte & 0x0f)]);
    }
}

/// `GET /entropy[?minentropy=..]`: a sample of the operating system's generator, used for
/// nothing else.
async fn entropy(Extension(auth): Extension<Authorized>, RawQuery(raw): RawQuery) -> Response {
    let answer = (|| {
        caller(&auth)?;
        let pairs = query(&raw, &["minentropy"])?;
        let wanted = bits(&pairs, "minentropy", DEFAULT_ENTROPY_BITS)?;
        if wanted == 0 || !wanted.is_multiple_of(8) || wanted > MAX_ENTROPY_BITS {
            return Err(bad_request(format!(
                "minentropy shall be a multiple of 8 between 8 and {MAX_ENTROPY_BITS}"
            )));
        }
        let mut sample = Zeroizing::new(vec![0u8; (wanted / 8) as usize]);
        aws_lc_rs::rand::fill(&mut sample).map_err(|_| {
            refusal(StatusCode::SERVICE_UNAVAILABLE, "the random generator did not answer")
        })?;
        let mut hex = Zeroizing::new(Vec::with_capacity(2 * sample.len()));
        put_hex(&mut hex, &sample, UPPER_HEX);
        let hex = std::str::from_utf8(&hex).expect("hex digits are ASCII");
        Ok(Json(json!({"randomStr": hex, "minentropy": wanted})).into_response())
    })();
    answer.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_32_hex_digits_in_either_case() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(key_id(&id), "0123456789abcdef0123456789abcdef");
        assert_eq!(key_id_of("0123456789ABCDEF0123456789abcdef"), Some(id));
        for bad in [
            "",
            "0123456789abcdef",
            "0123456789abcdef0123456789abcdeg",
            "01234567-89ab-cdef-0123-456789abcdef",
            "{0123456789abcdef0123456789abcdef}",
            "0123456789abcdef0123456789abcdef00",
        ] {
            assert_eq!(key_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_key_answer_is_exactly_its_json() {
        let id = Uuid::from_u128(7);
        let response = key_answer(vec![(id, Zeroizing::new(vec![0x00, 0xab, 0xff]))]);
        let body =
            futures_util::FutureExt::now_or_never(axum::body::to_bytes(response.into_body(), 1024))
                .unwrap()
                .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json, json!({"keyId": key_id(&id), "key": "00abff"}));
    }
}
