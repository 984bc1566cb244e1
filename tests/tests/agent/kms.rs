//! The KMS through its real interfaces: two agent processes with simulated devices, their KMSs
//! synchronised over the peer service (mutual TLS, node certificates), and SAEs calling the
//! ETSI GS QKD 014 API over mutual TLS with their own certificates.

use std::time::{Duration, Instant};

use base64::Engine;
use qkdn_kit::pki::Usage;
use qkdn_kit::tls;
use serde_json::{Value as Json, json};

use crate::harness::*;

/// An SAE: an HTTPS client with its certificate.
pub(crate) struct Sae {
    http: reqwest::Client,
    base: String,
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Json,
}

impl Sae {
    pub(crate) fn new(pki: &TestPki, name: &str, kms_port: u16) -> Sae {
        let (cert, key) = pki.issue_sae(name);
        let config = tls::client_config(&pki.ca(), Some((&cert, &key))).unwrap();
        let http = https_client(config, Duration::from_secs(10));
        Sae { http, base: format!("https://localhost:{kms_port}/api/v1/keys") }
    }

    async fn answer(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
        Reply { status, body }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        Self::answer(self.http.get(format!("{}/{path}", self.base)).send().await.unwrap()).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Json) -> Reply {
        let url = format!("{}/{path}", self.base);
        Self::answer(self.http.post(url).json(body).send().await.unwrap()).await
    }

    /// Like [`post`](Self::post), but `None` when the KMS cannot be reached or answers no JSON.
    pub(crate) async fn try_post(&self, path: &str, body: &Json) -> Option<Reply> {
        let url = format!("{}/{path}", self.base);
        let response = self.http.post(url).json(body).send().await.ok()?;
        let status = response.status().as_u16();
        let body = serde_json::from_str(&response.text().await.ok()?).ok()?;
        Some(Reply { status, body })
    }
}

pub(crate) fn key_ids(reply: &Reply) -> Vec<String> {
    reply.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_ID"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn key_bytes(reply: &Reply) -> Vec<Vec<u8>> {
    let engine = base64::engine::general_purpose::STANDARD;
    reply.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| engine.decode(k["key"].as_str().unwrap()).unwrap())
        .collect()
}

/// A KMS-enabled agent's ports.
pub(crate) struct KmsNode {
    pub(crate) agent: AgentProcess,
}

/// Starts node `node` (A or B of the harness's link) with a KMS and a peer service, both over
/// mutual TLS, listening on `peer_port` and `kms_port`, its neighbour's peer service at
/// `neighbour_peer`; `kms_extra` is added to the `[kms]` section.
pub(crate) fn start_kms_node(
    dir: &std::path::Path,
    pki: &TestPki,
    name: &str,
    (node, iface, remote, remote_iface): (&str, u32, &str, u32),
    (peer_port, neighbour_peer, kms_port): (u16, u16, u16),
    kms_extra: &str,
) -> KmsNode {
    let (cert, key) = pki.issue_node(name, node);
    let ca = pki.ca();
    let store_key = store_key_file(dir, name);
    let tls_server = server_tls_toml(&cert, &key, &ca);
    let extra = format!(
        r#"
[peer]
listen = "127.0.0.1:{peer_port}"
tls = {tls_server}
client_tls = {{ cert = "{cert}", key = "{key}", ca = "{ca}" }}

[[neighbours]]
node = "{remote}"
url = "https://localhost:{neighbour_peer}"

[kms]
listen = "127.0.0.1:{kms_port}"
tls = {tls_server}
store_key_file = "{store_key}"
{kms_extra}
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.display(),
        store_key = store_key.display(),
    );
    let body = format!("{}\n{extra}", node_ab(node, iface, remote, remote_iface, "", ""));
    let agent = start(&Spec { dir, name, body, restconf_extra: "" });
    KmsNode { agent }
}

/// Two KMS nodes, A and B, over the link A-B, with the 015 applications pairing sae-a at A
/// with sae-b at B; `kms_extra` goes into both `[kms]` sections.
pub(crate) struct KmsPair {
    pub(crate) a: KmsNode,
    pub(crate) b: KmsNode,
    pub(crate) kms_a: u16,
    pub(crate) kms_b: u16,
    pub(crate) peer_b: u16,
}

pub(crate) async fn start_kms_pair(
    dir: &std::path::Path,
    pki: &TestPki,
    kms_extra: &str,
) -> KmsPair {
    let (peer_a, peer_b, kms_a, kms_b) = (free_port(), free_port(), free_port(), free_port());
    let a_ends = (NODE_A, 101, NODE_B, 201);
    let a = start_kms_node(dir, pki, "a", a_ends, (peer_a, peer_b, kms_a), kms_extra);
    let b_ends = (NODE_B, 201, NODE_A, 101);
    let b = start_kms_node(dir, pki, "b", b_ends, (peer_b, peer_a, kms_b), kms_extra);
    pair_saes(&a, "aaaa0000-0000-4000-8000-00000000000a", "sae-a", "sae-b").await;
    pair_saes(&b, "aaaa0000-0000-4000-8000-00000000000b", "sae-b", "sae-a").await;
    KmsPair { a, b, kms_a, kms_b, peer_b }
}

/// The 015 application pairing `local` (here) with `remote` (there) over the link A-B.
pub(crate) async fn pair_saes(node: &KmsNode, app: &str, local: &str, remote: &str) {
    let body = json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": app, "server_app_id": local,
        "client_app_id": [remote], "backing_qkdl_id": [LINK_AB]}]});
    let path = format!("{NODE_PATH}/qkd_applications/qkd_app={app}");
    restconf(&node.agent).put(&path, &body).await.unwrap();
}

/// Waits until `sae` sees at least `n` keys for `slave`.
pub(crate) async fn wait_for_keys(sae: &Sae, slave: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = sae.get(&format!("{slave}/status")).await;
        if status.status == 200 && status.body["stored_key_count"].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no keys: {}", status.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saes_get_the_same_keys_at_both_ends_exactly_as_etsi_014_says() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let KmsPair { a, b, kms_a, kms_b, peer_b } = start_kms_pair(dir.path(), &pki, "").await;
    let (sae_a, sae_b) = (Sae::new(&pki, "sae-a", kms_a), Sae::new(&pki, "sae-b", kms_b));
    let stranger = Sae::new(&pki, "sae-x", kms_b);
    wait_for_keys(&sae_a, "sae-b", 20).await;

    // Status: the standard's fields, this node as source, the other end as target.
    let status = sae_a.get("sae-b/status").await;
    assert_eq!(status.status, 200);
    for field in [
        "source_KME_ID",
        "target_KME_ID",
        "master_SAE_ID",
        "slave_SAE_ID",
        "key_size",
        "stored_key_count",
        "max_key_count",
        "max_key_per_request",
        "max_key_size",
        "min_key_size",
        "max_SAE_ID_count",
    ] {
        assert!(status.body.get(field).is_some(), "no {field} in {}", status.body);
    }
    assert_eq!(status.body["source_KME_ID"], NODE_A);
    assert_eq!(status.body["target_KME_ID"], NODE_B);
    assert_eq!(status.body["master_SAE_ID"], "sae-a", "the SAE comes from the certificate");
    assert_eq!(status.body["key_size"], 256);

    // enc_keys (GET with query) at A, dec_keys (POST) at B: the same bytes.
    let enc = sae_a.get("sae-b/enc_keys?number=3&size=256").await;
    assert_eq!(enc.status, 200, "{}", enc.body);
    let ids = key_ids(&enc);
    assert_eq!(ids.len(), 3);
    let body = json!({"key_IDs": ids.iter().map(|id| json!({"key_ID": id})).collect::<Vec<_>>()});
    let dec = sae_b.post("sae-a/dec_keys", &body).await;
    assert_eq!(dec.status, 200, "{}", dec.body);
    assert_eq!(key_ids(&dec), ids);
    assert_eq!(key_bytes(&dec), key_bytes(&enc));
    assert!(key_bytes(&enc).iter().all(|k| k.len() == 32));

    // Once only; and never for anyone else.
    let again = sae_b.post("sae-a/dec_keys", &body).await;
    assert_eq!(
        (again.status, again.body.clone()),
        (400, json!({"message": "one or more keys specified are not found on KME"}))
    );
    let enc = sae_a.post("sae-b/enc_keys", &json!({"number": 1, "size": 512})).await;
    assert_eq!(enc.status, 200, "{}", enc.body);
    assert_eq!(key_bytes(&enc)[0].len(), 64);
    let id = &key_ids(&enc)[0];
    let stolen = stranger.get(&format!("sae-a/dec_keys?key_ID={id}")).await;
    assert_eq!(stolen.status, 401, "{}", stolen.body);
    assert!(stolen.body["message"].is_string());
    // Another SAE at B paired with sae-a, but not named in the delivery: the same answer as for
    // a key ID that does not exist, so it learns nothing.
    pair_saes(&b, "aaaa0000-0000-4000-8000-0000000000b2", "sae-b2", "sae-a").await;
    let sibling = Sae::new(&pki, "sae-b2", kms_b);
    let not_named = sibling.get(&format!("sae-a/dec_keys?key_ID={id}")).await;
    let unknown = sibling.get(&format!("sae-a/dec_keys?key_ID={}", uuid::Uuid::from_u128(7))).await;
    assert_eq!((not_named.status, &not_named.body), (400, &unknown.body));
    assert_eq!(unknown.body, json!({"message": "one or more keys specified are not found on KME"}));
    let got = sae_b.get(&format!("sae-a/dec_keys?key_ID={id}")).await;
    assert_eq!(key_bytes(&got), key_bytes(&enc));
    // Query strings are percent-decoded; a parameter given twice is refused.
    let decoded = sae_a.get("sae-b/enc_keys?%6Eumber=%32").await;
    assert_eq!((decoded.status, key_ids(&decoded).len()), (200, 2), "{}", decoded.body);
    let twice = sae_a.get("sae-b/enc_keys?number=1&number=2").await;
    assert_eq!(twice.status, 400);
    assert!(twice.body["message"].as_str().unwrap().contains("more than once"), "{}", twice.body);
    // At most max_key_per_request IDs, each once.
    let many: Vec<Json> = (0..1025u32)
        .map(|i| json!({"key_ID": uuid::Uuid::from_u128(0x5eed_0000 + u128::from(i)).to_string()}))
        .collect();
    let too_many = sae_b.post("sae-a/dec_keys", &json!({ "key_IDs": many })).await;
    assert_eq!(too_many.status, 400);
    assert!(
        too_many.body["message"].as_str().unwrap().contains("at most 1024"),
        "{}",
        too_many.body
    );
    let dup = json!({"key_IDs": [{"key_ID": id}, {"key_ID": id}]});
    let twice = sae_b.post("sae-a/dec_keys", &dup).await;
    assert_eq!(twice.status, 400, "{}", twice.body);

    // The other direction, B as master: other keys (B's half of the stream).
    wait_for_keys(&sae_b, "sae-a", 5).await;
    let from_b = sae_b.post("sae-a/enc_keys", &json!({"number": 5})).await;
    assert_eq!(from_b.status, 200, "{}", from_b.body);
    let body = json!({"key_IDs": key_ids(&from_b).iter().map(|id| json!({"key_ID": id})).collect::<Vec<_>>()});
    let at_a = sae_a.post("sae-b/dec_keys", &body).await;
    assert_eq!(key_bytes(&at_a), key_bytes(&from_b));

    // Errors: the standard's statuses and messages, a JSON body each, nothing consumed.
    let before = sae_a.get("sae-b/status").await.body["stored_key_count"].as_u64().unwrap();
    let cases = [
        (
            sae_a.post("sae-b/enc_keys", &json!({"size": 100})).await,
            400,
            json!({"message": "size shall be a multiple of 8"}),
        ),
        (
            sae_a
                .post(
                    "sae-b/enc_keys",
                    &json!({"extension_mandatory": [{"abc_route_type": "direct"}]}),
                )
                .await,
            400,
            json!({"message": "not all extension_mandatory parameters are supported",
                   "details": [{"extension_mandatory_unsupported": "abc_route_type is not supported"}]}),
        ),
    ];
    for (reply, status, body) in cases {
        assert_eq!((reply.status, reply.body), (status, body));
    }
    for (reply, status) in [
        (sae_a.post("sae-b/enc_keys", &json!({"number": 0})).await, 400),
        (sae_a.post("sae-b/enc_keys", &json!({"number": 100000})).await, 400),
        (sae_a.post("sae-b/enc_keys", &json!({"size": 16})).await, 400),
        (sae_a.post("sae-b/enc_keys", &json!({"surprise": 1})).await, 400),
        (sae_a.get("sae-b/enc_keys?colour=blue").await, 400),
        (sae_a.get("sae-b/keys").await, 400),
        (sae_a.get("sae-z/status").await, 401),
        (sae_a.post("sae-z/enc_keys", &json!({})).await, 401),
        (sae_b.post("sae-a/dec_keys", &json!({"key_IDs": [{"key_ID": "not-a-uuid"}]})).await, 400),
        (sae_b.post("sae-a/dec_keys", &json!({"keys": []})).await, 400),
        (
            sae_a
                .post(
                    "sae-b/enc_keys",
                    &json!({"number": 3, "additional_slave_SAE_IDs": ["sae-q"]}),
                )
                .await,
            401,
        ),
    ] {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(reply.body["message"].is_string(), "{}", reply.body);
    }
    let after = sae_a.get("sae-b/status").await.body["stored_key_count"].as_u64().unwrap();
    assert!(after >= before, "a refused request consumed keys: {before} -> {after}");

    // No certificate: no TLS session at all.
    let anonymous = tls::client_config(&pki.ca(), None).unwrap();
    let anonymous = https_client(anonymous, Duration::from_secs(5));
    assert!(
        anonymous
            .get(format!("https://localhost:{kms_a}/api/v1/keys/sae-b/status"))
            .send()
            .await
            .is_err()
    );
    // A certificate from another CA, even with a known SAE's name: no TLS session either.
    let rogue_dir = dir.path().join("rogue");
    std::fs::create_dir_all(&rogue_dir).unwrap();
    let (rogue_cert, rogue_key) = TestPki::new(&rogue_dir).issue("sae-a", Usage::Client);
    let rogue = tls::client_config(&pki.ca(), Some((&rogue_cert, &rogue_key))).unwrap();
    let rogue = https_client(rogue, Duration::from_secs(5));
    assert!(
        rogue
            .get(format!("https://localhost:{kms_a}/api/v1/keys/sae-b/status"))
            .send()
            .await
            .is_err(),
        "a certificate of an untrusted CA was accepted"
    );

    // The stores say what they hold, never a key.
    let stores = api_json(&a.agent, "/v1/kms/stores").await;
    let link = &stores["stores"][0];
    assert_eq!(link["link"], LINK_AB);
    assert!(link["consumed"].as_u64().unwrap() >= 5, "{stores}");

    // Fair use: another application of the link keeps its min_bandwidth (5 s of it) out of
    // sae-a's reach; once it is gone, sae-a is served again.
    let guarded = "aaaa0000-0000-4000-8000-0000000000a2";
    let body = json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": guarded, "server_app_id": "sae-g",
        "client_app_id": ["sae-b"], "backing_qkdl_id": [LINK_AB],
        "app_qos": {"min_bandwidth": 30_000, "max_bandwidth": 30_000}}]});
    let guarded_path = format!("{NODE_PATH}/qkd_applications/qkd_app={guarded}");
    restconf(&a.agent).put(&guarded_path, &body).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 30,000 bit/s for 5 s: 586 keys of 256 bits kept; ask for more than what is left.
    let available = sae_a.get("sae-b/status").await.body["stored_key_count"].as_u64().unwrap();
    let number = available.saturating_sub(586 / 2).clamp(1, 1024);
    let kept = sae_a.post("sae-b/enc_keys", &json!({ "number": number })).await;
    assert_eq!(kept.status, 503, "{}", kept.body);
    assert!(
        kept.body["message"].as_str().unwrap().contains("kept for the link's other applications"),
        "{}",
        kept.body
    );
    restconf(&a.agent).delete(&guarded_path).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sae_a.post("sae-b/enc_keys", &json!({"number": 1})).await.status, 200);

    // Fair use: with app_qos max_bandwidth = 1024 bit/s, sae-a gets 1024 bits per second.
    let qos_path = format!(
        "{NODE_PATH}/qkd_applications/qkd_app=aaaa0000-0000-4000-8000-00000000000a/app_qos"
    );
    restconf(&a.agent)
        .patch(&qos_path, &json!({"etsi-qkd-sdn-node:app_qos": {"max_bandwidth": 1024}}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sae_a.post("sae-b/enc_keys", &json!({"number": 4})).await.status, 200);
    let limited = sae_a.post("sae-b/enc_keys", &json!({"number": 1})).await;
    assert_eq!(limited.status, 503, "{}", limited.body);
    assert!(
        limited.body["message"].as_str().unwrap().contains("max_bandwidth"),
        "{}",
        limited.body
    );
    let too_big = sae_a.post("sae-b/enc_keys", &json!({"number": 5})).await;
    assert_eq!(too_big.status, 503, "{}", too_big.body);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sae_a.post("sae-b/enc_keys", &json!({"number": 4})).await.status, 200);

    // A neighbour cannot speak for another node: a certificate naming node C cannot reserve
    // keys at B in A's name.
    let (cert, key) = pki.issue_node("intruder", "00000003-0000-0000-0000-000000000000");
    let files = qkdn_kit::tls::ClientTls { cert, key, ca: pki.ca() };
    let b_node = uuid::Uuid::parse_str(NODE_B).unwrap();
    let intruder = qkdn_agent::peer::PeerClients::new(
        [(b_node, format!("https://localhost:{peer_b}"))],
        Some(files),
    );
    let forged = qkdn_proto::peer::v1::ReserveKeysRequest {
        link_id: LINK_AB.into(),
        owner_node_id: NODE_A.into(),
        sender_node_id: NODE_A.into(),
        deliveries: vec![],
    };
    let refused = intruder.reserve_keys(b_node, forged).await.unwrap_err();
    let denied = matches!(&refused, qkdn_agent::peer::client::PeerCallError::Refused { status, .. }
        if status.code() == tonic::Code::PermissionDenied);
    assert!(denied && refused.to_string().contains("cannot speak for node"), "{refused:?}");

    // Nothing the agents logged (at debug level) holds a key they handed out.
    let mut delivered = key_bytes(&dec);
    delivered.extend(key_bytes(&got));
    delivered.extend(key_bytes(&from_b));
    let mut named = key_ids(&dec);
    named.extend(key_ids(&from_b));
    drop((a, b));
    assert_logs_hold_no_keys(dir.path(), &delivered, &named);
}
