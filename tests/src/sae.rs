//! An SAE: an ETSI GS QKD 014 client with its own certificate, talking to its node's KMS.

use base64::Engine;
use serde_json::{Value as Json, json};

use crate::pki::TestPki;

/// An SAE.
pub struct Sae {
    http: reqwest::Client,
    base: String,
}

/// An answer of the KMS.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Json,
}

impl Sae {
    /// SAE `name` (its certificate's common name) of the KMS on `kms_port`.
    pub fn new(pki: &TestPki, name: &str, kms_port: u16) -> Sae {
        Sae {
            http: pki.https_client(pki.sae(name)),
            base: format!("https://localhost:{kms_port}/api/v1/keys"),
        }
    }

    /// POST `body` to `path` below `/api/v1/keys/`; None when the KMS does not answer JSON.
    pub async fn post(&self, path: &str, body: &Json) -> Option<Reply> {
        let response =
            self.http.post(format!("{}/{path}", self.base)).json(body).send().await.ok()?;
        let status = response.status().as_u16();
        let body = serde_json::from_str(&response.text().await.ok()?).ok()?;
        Some(Reply { status, body })
    }

    /// `number` keys for `slave` (retrying for up to `seconds` while the KMS has none yet),
    /// then the same keys fetched by `slave` at its own KMS: both answers' (ids, bytes).
    pub async fn exchange(
        &self,
        slave: &Sae,
        master_name: &str,
        slave_name: &str,
        number: u32,
        seconds: u64,
    ) -> (Vec<(String, Vec<u8>)>, Vec<(String, Vec<u8>)>) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let enc = loop {
            match self.post(&format!("{slave_name}/enc_keys"), &json!({"number": number})).await {
                Some(r) if r.status == 200 => break r,
                other => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no keys for {slave_name} within {seconds} s: {:?}",
                        other.map(|r| (r.status, r.body))
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        };
        let ids: Vec<Json> = keys(&enc).iter().map(|(id, _)| json!({"key_ID": id})).collect();
        let dec = slave
            .post(&format!("{master_name}/dec_keys"), &json!({"key_IDs": ids}))
            .await
            .expect("dec_keys answers");
        assert_eq!(dec.status, 200, "dec_keys: {}", dec.body);
        (keys(&enc), keys(&dec))
    }
}

/// The keys of an answer: (key_ID, bytes).
pub fn keys(reply: &Reply) -> Vec<(String, Vec<u8>)> {
    let engine = base64::engine::general_purpose::STANDARD;
    reply.body["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            (
                k["key_ID"].as_str().unwrap().to_owned(),
                engine.decode(k["key"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}
