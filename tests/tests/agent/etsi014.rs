//! Real-device driver: two agent processes whose interfaces are QKD devices with ETSI GS QKD
//! 014 key managers. A mock KME (this test, over mutual TLS, SAE identity from the client
//! certificate, one-shot delivery as the standard says) serves both; the master agent takes
//! keys with `enc_keys` and announces their IDs over the peer service (gRPC, mutual TLS), the
//! slave agent fetches them with `dec_keys`. Both agents end up with exactly the KME's keys;
//! a KME outage is reported as a device failure and recovery resumes the flow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json as JsonBody, Router};
use base64::Engine;
use qkdn_agent::device::KeyBlock;
use qkdn_kit::authz::ConnectionIdentity;
use qkdn_kit::pki::Usage;
use qkdn_kit::server::{ServeOptions, serve};
use qkdn_kit::tls;
use serde_json::{Value as Json, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::harness::*;

const KEY_BITS: u32 = 256;

/// A key the mock KME handed out with `enc_keys`.
struct Issued {
    master: String,
    slave: String,
    key: Vec<u8>,
    fetched_by_slave: bool,
}

#[derive(Default)]
struct KmeState {
    /// SAE ID by client certificate fingerprint.
    saes: HashMap<String, String>,
    issued: HashMap<Uuid, Issued>,
    /// Key IDs in the order enc_keys returned them.
    order: Vec<Uuid>,
    counter: u64,
    dec_refused: u64,
}

#[derive(Clone, Default)]
struct Kme {
    state: Arc<Mutex<KmeState>>,
    outage: Arc<AtomicBool>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, JsonBody(json!({"message": message}))).into_response()
}

impl Kme {
    fn caller(&self, certs: &Option<Extension<ConnectionIdentity>>) -> Option<String> {
        let fingerprint = tls::fingerprint(certs.as_ref()?.0.certificates.0.first()?);
        self.state.lock().unwrap().saes.get(&fingerprint).cloned()
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/keys/{sae}/status", get(status))
            .route("/api/v1/keys/{sae}/enc_keys", post(enc_keys))
            .route("/api/v1/keys/{sae}/dec_keys", post(dec_keys))
            .with_state(self.clone())
    }
}

async fn status(
    State(kme): State<Kme>,
    certs: Option<Extension<ConnectionIdentity>>,
    UrlPath(slave): UrlPath<String>,
) -> Response {
    let Some(master) = kme.caller(&certs) else {
        return error(StatusCode::UNAUTHORIZED, "unknown SAE");
    };
    if kme.outage.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "key data access error");
    }
    JsonBody(json!({
        "source_KME_ID": "kme-a", "target_KME_ID": "kme-b", "master_SAE_ID": master,
        "slave_SAE_ID": slave, "key_size": KEY_BITS, "stored_key_count": 40,
        "max_key_count": 1000, "max_key_per_request": 8, "max_key_size": 1024,
        "min_key_size": 64, "max_SAE_ID_count": 0,
    }))
    .into_response()
}

async fn enc_keys(
    State(kme): State<Kme>,
    certs: Option<Extension<ConnectionIdentity>>,
    UrlPath(slave): UrlPath<String>,
    JsonBody(request): JsonBody<Json>,
) -> Response {
    let Some(master) = kme.caller(&certs) else {
        return error(StatusCode::UNAUTHORIZED, "unknown SAE");
    };
    if kme.outage.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "key data access error");
    }
    let number = request["number"].as_u64().unwrap_or(1);
    let size = request["size"].as_u64().unwrap_or(u64::from(KEY_BITS));
    if size % 8 != 0 {
        return error(StatusCode::BAD_REQUEST, "size shall be a multiple of 8");
    }
    let mut state = kme.state.lock().unwrap();
    let mut keys = Vec::new();
    for _ in 0..number {
        state.counter += 1;
        let id =
            Uuid::from_u128(0x1400_0000_0000_4000_8000_0000_0000_0000 | u128::from(state.counter));
        let mut key = vec![0u8; size as usize / 8];
        blake3::Hasher::new_derive_key("mock KME keys")
            .update(&state.counter.to_le_bytes())
            .finalize_xof()
            .fill(&mut key);
        keys.push(json!({"key_ID": id.to_string(), "key": base64::engine::general_purpose::STANDARD.encode(&key)}));
        state.order.push(id);
        state.issued.insert(
            id,
            Issued { master: master.clone(), slave: slave.clone(), key, fetched_by_slave: false },
        );
    }
    JsonBody(json!({"keys": keys})).into_response()
}

async fn dec_keys(
    State(kme): State<Kme>,
    certs: Option<Extension<ConnectionIdentity>>,
    UrlPath(master): UrlPath<String>,
    JsonBody(request): JsonBody<Json>,
) -> Response {
    let Some(caller) = kme.caller(&certs) else {
        return error(StatusCode::UNAUTHORIZED, "unknown SAE");
    };
    if kme.outage.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "key data access error");
    }
    let mut state = kme.state.lock().unwrap();
    let ids: Vec<Uuid> = request["key_IDs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| Uuid::parse_str(k["key_ID"].as_str()?).ok())
        .collect();
    for id in &ids {
        let refusal = match state.issued.get(id) {
            Some(k) if k.fetched_by_slave => {
                Some((StatusCode::BAD_REQUEST, "one or more keys specified are not found on KME"))
            }
            Some(k) if k.slave != caller || k.master != master => {
                Some((StatusCode::UNAUTHORIZED, "the keys were not issued for this SAE"))
            }
            Some(_) => None,
            None => {
                Some((StatusCode::BAD_REQUEST, "one or more keys specified are not found on KME"))
            }
        };
        if let Some((status, message)) = refusal {
            state.dec_refused += 1;
            return error(status, message);
        }
    }
    let mut keys = Vec::new();
    for id in &ids {
        let k = state.issued.get_mut(id).unwrap();
        k.fetched_by_slave = true;
        keys.push(json!({"key_ID": id.to_string(), "key": base64::engine::general_purpose::STANDARD.encode(&k.key)}));
    }
    JsonBody(json!({"keys": keys})).into_response()
}

fn toml_path(p: &Path) -> String {
    p.display().to_string()
}

/// The configuration body of one end (node, its interface with an ETSI 014 device, the link).
#[allow(clippy::too_many_arguments)]
fn etsi014_node(
    pki: &TestPki,
    node: &str,
    iface: u32,
    remote: &str,
    remote_iface: u32,
    role: &str,
    peer_sae: &str,
    kme: SocketAddr,
    peer_section: &str,
) -> String {
    let (sae_cert, sae_key) = pki.issue(&format!("sae-of-{node}"), Usage::Client);
    format!(
        r#"[node]
id = "{node}"

[notifications]
performance_period = "300ms"

{peer_section}

[[interfaces]]
id = {iface}
technology = "DV-QKD"
[interfaces.device]
driver = "etsi014"
kme_url = "https://localhost:{kme_port}"
sae_id = "sae-of-{node}"
peer_sae_id = "{peer_sae}"
role = "{role}"
key_size_bits = {KEY_BITS}
keys_per_request = 16
poll_interval = "100ms"
tls = {{ cert = "{cert}", key = "{key}", ca = "{ca}" }}

[[links]]
id = "{LINK_AB}"
local_interface = {iface}
remote_node = "{remote}"
remote_interface = {remote_iface}
wavelength = 20
role = "TRANSMITTER"
length_km = 10.0
"#,
        kme_port = kme.port(),
        cert = toml_path(&sae_cert),
        key = toml_path(&sae_key),
        ca = toml_path(&pki.ca()),
    )
}

async fn links_view(agent: &AgentProcess) -> Json {
    api_json(agent, "/v1/links").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etsi014_device_pair_delivers_the_kmes_keys_to_both_agents() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());

    // The mock KME, over mutual TLS.
    let kme = Kme::default();
    let (kme_cert, kme_key) = pki.issue("kme", Usage::Service);
    let kme_tls = tls::server_config(&kme_cert, &kme_key, Some(&pki.ca())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kme_addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        kme.router(),
        ServeOptions { tls: Some(kme_tls), ..ServeOptions::default() },
        std::future::pending(),
    ));

    // Node B: the slave end, with a peer service over mutual TLS.
    let peer_port = free_port();
    let (node_b_cert, node_b_key) = pki.issue_node("b", NODE_B);
    let b_peer = format!(
        "[peer]\nlisten = \"127.0.0.1:{peer_port}\"\ntls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}\n",
        toml_path(&node_b_cert),
        toml_path(&node_b_key),
        toml_path(&pki.ca())
    );
    let b_body = etsi014_node(
        &pki,
        NODE_B,
        201,
        NODE_A,
        101,
        "slave",
        &format!("sae-of-{NODE_A}"),
        kme_addr,
        &b_peer,
    );
    // Node A: the master end, calling B's peer service with its node certificate.
    let (node_a_cert, node_a_key) = pki.issue_node("a", NODE_A);
    let a_peer = format!(
        "[peer]\nclient_tls = {{ cert = \"{}\", key = \"{}\", ca = \"{}\" }}\n\n[[neighbours]]\nnode = \"{NODE_B}\"\nurl = \"https://localhost:{peer_port}\"\n",
        toml_path(&node_a_cert),
        toml_path(&node_a_key),
        toml_path(&pki.ca())
    );
    let a_body = etsi014_node(
        &pki,
        NODE_A,
        101,
        NODE_B,
        201,
        "master",
        &format!("sae-of-{NODE_B}"),
        kme_addr,
        &a_peer,
    );
    {
        let mut state = kme.state.lock().unwrap();
        for node in [NODE_A, NODE_B] {
            let cert = pki.dir.join(format!("sae-of-{node}.crt"));
            state.saes.insert(tls::certificate_sha256(&cert).unwrap(), format!("sae-of-{node}"));
        }
    }
    let b = start(&Spec { dir: dir.path(), name: "b", body: b_body, restconf_extra: "" });
    let a = start(&Spec { dir: dir.path(), name: "a", body: a_body, restconf_extra: "" });

    // Blocks arrive at both ends, identical, and hold exactly the KME's keys.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (la, lb) = loop {
        let (la, lb) = (ledger(&a).await, ledger(&b).await);
        if la["blocks"].as_u64().unwrap_or(0) >= 4 && lb["blocks"].as_u64().unwrap_or(0) >= 4 {
            break (la, lb);
        }
        assert!(Instant::now() < deadline, "too few blocks: {la} / {lb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recent = |l: &Json| -> HashMap<u64, Json> {
        l["recent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["sequence"].as_u64().unwrap(), r.clone()))
            .collect()
    };
    let (ra, rb) = (recent(&la), recent(&lb));
    let common: Vec<u64> = ra.keys().filter(|s| rb.contains_key(s)).copied().collect();
    assert!(common.len() >= 3, "{la} / {lb}");
    {
        let state = kme.state.lock().unwrap();
        for seq in common {
            let (x, y) = (&ra[&seq], &rb[&seq]);
            assert_eq!(x, y, "block {seq} differs between the ends");
            // Recompute the fingerprint from the KME's own keys: the agents hold exactly them.
            let first = Uuid::parse_str(x["first_id"].as_str().unwrap()).unwrap();
            let start = state.order.iter().position(|id| *id == first).unwrap();
            let ids: Vec<Uuid> =
                state.order[start..start + x["keys"].as_u64().unwrap() as usize].to_vec();
            let mut material = Zeroizing::new(Vec::new());
            for id in &ids {
                let issued = &state.issued[id];
                assert!(issued.fetched_by_slave, "key {id} is at the master end only");
                assert_eq!(issued.master, format!("sae-of-{NODE_A}"));
                assert_eq!(issued.slave, format!("sae-of-{NODE_B}"));
                material.extend_from_slice(&issued.key);
            }
            let block = KeyBlock::new(
                Uuid::parse_str(LINK_AB).unwrap(),
                seq,
                KEY_BITS as usize / 8,
                ids,
                material,
            );
            assert_eq!(x["fingerprint"].as_str().unwrap(), qkdn_agent::kms::fingerprint(&block));
        }
        // At most 8 keys per request (the KME's max_key_per_request), though 16 were configured.
        assert!(ra.values().all(|r| r["keys"].as_u64().unwrap() <= 8));
    }

    // The link reports a delivered-key rate; QBER is not known through ETSI 014.
    let deadline = Instant::now() + Duration::from_secs(5);
    let view = loop {
        let view = links_view(&a).await;
        if view["links"][0]["skr_bps"].as_u64().unwrap_or(0) > 0 {
            break view;
        }
        assert!(Instant::now() < deadline, "no rate reported: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let link = &view["links"][0];
    assert_eq!(link["driver"], "etsi014");
    assert_eq!(link["up"], true, "{view}");
    assert!(link["qber"].is_null(), "{view}");

    // A KME outage is a device failure at both ends; when it ends, keys flow again.
    kme.outage.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while links_view(&a).await["failed_interfaces"] != json!([101]) {
        assert!(Instant::now() < deadline, "the master end did not report the failure");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let node = restconf(&a).get(NODE_PATH, &[]).await.unwrap();
    let iface = &node["etsi-qkd-sdn-node:qkd_node"]["qkd_interfaces"]["qkd_interface"][0];
    assert_eq!(iface["qkdi_status"], "etsi-qkd-node-types:FAILED", "{node}");
    let before = ledger(&a).await["blocks"].as_u64().unwrap();
    kme.outage.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = links_view(&a).await;
        if view["failed_interfaces"] == json!([])
            && ledger(&a).await["blocks"].as_u64().unwrap() > before
        {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The slave end never asked for a key twice, nor for one not issued to it.
    assert_eq!(kme.state.lock().unwrap().dec_refused, 0);
}
