//! Request bodies and media types: size limits, read timeouts, NUL bytes and JSON syntax are
//! checked here, before anything reaches the datastore or libyang.

use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Limited};

use crate::error::{DataError, ErrorTag};

/// Media types accepted for JSON request bodies.
const JSON_TYPES: &[&str] = &["application/yang-data+json", "application/json"];

/// Checks `Content-Type`: JSON (RFC 8040 or plain) is accepted, so is its absence; anything else
/// is 415.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), DataError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("").to_ascii_lowercase();
    let media = text.split(';').next().unwrap_or("").trim();
    if JSON_TYPES.contains(&media) {
        return Ok(());
    }
    Err(DataError::invalid_value(format!(
        "unsupported media type \"{media}\": this server reads application/yang-data+json \
         (or application/json)"
    ))
    .with_status(415))
}

/// Whether `Accept` names `media` itself (not through a wildcard).
pub(crate) fn accept_names(headers: &HeaderMap, media: &str) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|value| {
        let text = value.to_str().unwrap_or("").to_ascii_lowercase();
        text.split(',').any(|item| item.split(';').next().unwrap_or("").trim() == media)
    })
}

/// Checks `Accept` against the media types a response can have; 406 when none is acceptable.
pub(crate) fn check_accept(headers: &HeaderMap, offered: &[&str]) -> Result<(), DataError> {
    let Some(value) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("").to_ascii_lowercase();
    for item in text.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if refused {
            continue;
        }
        let (top, _) = media.split_once('/').unwrap_or((media, ""));
        if media == "*/*"
            || offered.contains(&media)
            || (media.ends_with("/*") && offered.iter().any(|o| o.starts_with(&format!("{top}/"))))
        {
            return Ok(());
        }
    }
    Err(DataError::invalid_value(format!(
        "none of the media types in Accept ({text}) can be produced; this resource offers {}",
        offered.join(", ")
    ))
    .with_status(406))
}

/// Reads a JSON body of at most `max` bytes within `timeout`. `Ok(None)` for an empty body.
pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Option<serde_json::Value>, DataError> {
    Ok(read_json_sized(headers, body, max, timeout).await?.map(|(value, _)| value))
}

/// Like [`read_json`], also returning the body's size in bytes.
pub(crate) async fn read_json_sized(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Option<(serde_json::Value, usize)>, DataError> {
    let too_big = || {
        DataError::new(
            ErrorTag::TooBig,
            format!("the request body exceeds the limit of {max} bytes"),
        )
        .with_status(413)
    };
    if let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(too_big());
    }
    let collected =
        tokio::time::timeout(timeout, Limited::new(body, max).collect()).await.map_err(|_| {
            DataError::malformed(format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ))
            .with_status(408)
        })?;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(too_big());
        }
        Err(e) => return Err(DataError::malformed(format!("cannot read the request body: {e}"))),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    check_content_type(headers)?;
    if let Some(pos) = bytes.iter().position(|b| *b == 0) {
        return Err(DataError::malformed(format!(
            "the request body contains a NUL byte at offset {pos}"
        )));
    }
    serde_json::from_slice(&bytes)
        .map(|v| Some((v, bytes.len())))
        .map_err(|e| DataError::malformed(format!("the request body is not valid JSON: {e}")))
}
