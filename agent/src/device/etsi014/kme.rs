//! A client of a QKD device's key manager (KME) speaking ETSI GS QKD 014 v1.1.1 over mutual
//! TLS: `status`, `enc_keys` (master) and `dec_keys` (slave), with sizes in bits and keys in
//! base64. Key material is decoded into zeroizing buffers; the response bodies that carried it
//! are wiped once parsed.

use std::time::Duration;

use base64::Engine;
use qkdn_yang::restconf::client::error_chain;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use crate::config::ClientTls;

/// Why a KME call failed.
#[derive(Debug, thiserror::Error)]
pub enum KmeError {
    /// The KME could not be reached (connection, TLS, timeout).
    #[error("KME unreachable: {0}")]
    Unreachable(String),
    /// The KME answered with an error status.
    #[error("KME answered {status}: {message}")]
    Refused {
        /// HTTP status (400, 401 or 503 per the standard).
        status: u16,
        /// The `message` of its error body, or the body itself.
        message: String,
    },
    /// The KME answered something that is not what the standard says.
    #[error("KME answer not understood: {0}")]
    Malformed(String),
}

impl KmeError {
    /// Whether the device itself is at fault (unreachable or failing), rather than the request.
    pub fn is_device_failure(&self) -> bool {
        match self {
            KmeError::Unreachable(_) => true,
            KmeError::Refused { status, .. } => *status >= 500,
            KmeError::Malformed(_) => false,
        }
    }
}

/// The `Status` object of a KME (fields used here).
#[derive(Clone, Debug, Deserialize)]
pub struct KmeStatus {
    /// Default key size, bits.
    pub key_size: u32,
    /// Keys deliverable now to this SAE pair.
    pub stored_key_count: u64,
    /// Most keys per request.
    pub max_key_per_request: u32,
    /// Largest key size, bits.
    pub max_key_size: u32,
    /// Smallest key size, bits.
    pub min_key_size: u32,
}

#[derive(Deserialize)]
struct KeyContainer {
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    #[serde(rename = "key_ID")]
    key_id: String,
    key: Zeroizing<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

/// Keys from the KME: IDs and material (each `size / 8` bytes), in the KME's order.
pub struct Keys {
    /// The IDs.
    pub ids: Vec<Uuid>,
    /// The keys one after the other.
    pub material: Zeroizing<Vec<u8>>,
}

/// A KME client.
pub struct KmeClient {
    http: reqwest::Client,
    base: String,
}

/// Why a KME client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KmeClientError {
    /// The TLS files do not make a client configuration.
    #[error("TLS: {0}")]
    Tls(#[from] qkdn_kit::tls::TlsError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

impl KmeClient {
    /// A client of the KME at `url` (`https://host[:port]`), authenticating with `tls`.
    pub fn new(url: &str, tls: &ClientTls) -> Result<KmeClient, KmeClientError> {
        let config = qkdn_kit::tls::client_config(&tls.ca, Some((&tls.cert, &tls.key)))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(KmeClient { http, base: format!("{}/api/v1/keys", url.trim_end_matches('/')) })
    }

    fn url(&self, sae: &str, call: &str) -> String {
        let sae: String = url_escape(sae);
        format!("{}/{sae}/{call}", self.base)
    }

    /// `GET {slave}/status`.
    pub async fn status(&self, slave_sae: &str) -> Result<KmeStatus, KmeError> {
        let response = self.http.get(self.url(slave_sae, "status")).send().await;
        let body = checked(response).await?;
        serde_json::from_slice(&body).map_err(|e| KmeError::Malformed(format!("status: {e}")))
    }

    /// `POST {slave}/enc_keys` for `number` keys of `size_bits`.
    pub async fn enc_keys(
        &self,
        slave_sae: &str,
        number: u32,
        size_bits: u32,
    ) -> Result<Keys, KmeError> {
        let request = json!({"number": number, "size": size_bits});
        let response = self.http.post(self.url(slave_sae, "enc_keys")).json(&request).send().await;
        let keys = decode(checked(response).await?, size_bits)?;
        if keys.ids.len() != number as usize {
            return Err(KmeError::Malformed(format!(
                "asked for {number} keys, got {}",
                keys.ids.len()
            )));
        }
        Ok(keys)
    }

    /// `POST {master}/dec_keys` for the keys `ids`, each of `size_bits`.
    pub async fn dec_keys(
        &self,
        master_sae: &str,
        ids: &[Uuid],
        size_bits: u32,
    ) -> Result<Keys, KmeError> {
        let key_ids: Vec<_> = ids.iter().map(|id| json!({"key_ID": id.to_string()})).collect();
        let response = self
            .http
            .post(self.url(master_sae, "dec_keys"))
            .json(&json!({"key_IDs": key_ids}))
            .send()
            .await;
        let keys = decode(checked(response).await?, size_bits)?;
        if keys.ids != ids {
            return Err(KmeError::Malformed("dec_keys returned other keys than asked for".into()));
        }
        Ok(keys)
    }
}

/// Percent-encodes an SAE ID for a path segment (SAE IDs are free-form strings).
fn url_escape(sae: &str) -> String {
    sae.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The body of a successful answer, or the error.
async fn checked(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<Zeroizing<Vec<u8>>, KmeError> {
    let response = response.map_err(|e| KmeError::Unreachable(error_chain(&e)))?;
    let status = response.status();
    let body = read_wiped(response).await?;
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_slice::<ErrorBody>(&body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
    Err(KmeError::Refused { status: status.as_u16(), message })
}

/// The most a KME's answer may hold (a container of 1,024 keys of 8,192 bits is about 1.5 MB).
const MAX_BODY: usize = 4 << 20;

/// Reads a response body into a buffer that is wiped when dropped, chunk by chunk: each chunk
/// is wiped once copied (when nothing else holds it), and when the buffer must grow the old one
/// is wiped too, so no copy of the keys' encoding is left behind in freed memory.
async fn read_wiped(mut response: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, KmeError> {
    let declared = response.content_length().unwrap_or(16 << 10) as usize;
    let mut body = Zeroizing::new(Vec::with_capacity(declared.min(MAX_BODY)));
    while let Some(chunk) =
        response.chunk().await.map_err(|e| KmeError::Unreachable(error_chain(&e)))?
    {
        let needed = body.len() + chunk.len();
        if needed > MAX_BODY {
            return Err(KmeError::Malformed(format!("the answer is larger than {MAX_BODY} bytes")));
        }
        if needed > body.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(2 * body.capacity())));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
        if let Ok(mut owned) = chunk.try_into_mut() {
            owned.as_mut().zeroize();
        }
    }
    Ok(body)
}

/// Decodes a key container whose keys must all be `size_bits` long.
fn decode(body: Zeroizing<Vec<u8>>, size_bits: u32) -> Result<Keys, KmeError> {
    let container: KeyContainer = serde_json::from_slice(&body)
        .map_err(|e| KmeError::Malformed(format!("key container: {e}")))?;
    let key_bytes = size_bits as usize / 8;
    let mut ids = Vec::with_capacity(container.keys.len());
    let mut material = Zeroizing::new(Vec::with_capacity(key_bytes * container.keys.len()));
    for entry in &container.keys {
        let id = Uuid::parse_str(&entry.key_id).map_err(|_| {
            KmeError::Malformed(format!("key_ID \"{}\" is not a UUID", entry.key_id))
        })?;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(entry.key.as_bytes())
            .map_err(|_| KmeError::Malformed(format!("key {id} is not base64")))?;
        if bytes.len() != key_bytes {
            let got = bytes.len() * 8;
            bytes.zeroize();
            return Err(KmeError::Malformed(format!(
                "key {id} has {got} bits, expected {size_bits}"
            )));
        }
        material.extend_from_slice(&bytes);
        bytes.zeroize();
        ids.push(id);
    }
    Ok(Keys { ids, material })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_containers_are_checked() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let id = Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
        let body = json!({"keys": [{"key_ID": id.to_string(), "key": key}]}).to_string();
        let keys = decode(Zeroizing::new(body.clone().into_bytes()), 256).unwrap();
        assert_eq!(keys.ids, vec![id]);
        assert_eq!(keys.material.as_slice(), &[7u8; 32]);
        let short = decode(Zeroizing::new(body.into_bytes()), 512).err().unwrap();
        assert!(short.to_string().contains("has 256 bits, expected 512"), "{short}");
        let bad = json!({"keys": [{"key_ID": "k1", "key": "AAAA"}]}).to_string();
        assert!(decode(Zeroizing::new(bad.into_bytes()), 24).is_err());
    }

    #[test]
    fn sae_ids_are_escaped_in_paths() {
        assert_eq!(url_escape("sae-1"), "sae-1");
        assert_eq!(url_escape("urn:sae/a b"), "urn%3Asae%2Fa%20b");
    }
}
