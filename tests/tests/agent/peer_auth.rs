//! The KMS peer service binds every message to the caller's node certificate: on the chain
//! A -- B -- C with a virtual link A -> C, a node that is not where a message says it is (node
//! D, or node C speaking for A) gets each RPC refused with `PERMISSION_DENIED` and the
//! peer-binding reason, and nothing changes at the callee: no pad is erased, no key is stored,
//! replaced or reserved, no relay committed. And the binding holds the other way: a KMS calling
//! a neighbour refuses a server whose certificate names another node.

use std::time::Duration;

use qkdn_proto::peer::v1::peer_client::PeerClient;
use qkdn_proto::peer::v1::{
    CommitRelayRequest, DeviceKeysRequest, HopPad, KeyDelivery, RelayKeysRequest,
    ReserveKeysRequest,
};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::harness::*;
use crate::relay::{LINK_BC, NODE_C, VIRT_AC, chain};

const NODE_D: &str = "00000004-0000-0000-0000-000000000000";

/// A peer client of `caller`'s node certificate, for the node `to` at `port`.
fn client_of(
    pki: &TestPki,
    caller: (&str, &str),
    to: &str,
    port: u16,
) -> PeerClient<tonic::transport::Channel> {
    let (cert, key) = pki.issue_node(caller.0, caller.1);
    let files = qkdn_kit::tls::ClientTls { cert, key, ca: pki.ca() };
    let to: Uuid = to.parse().unwrap();
    let clients = qkdn_agent::peer::PeerClients::new(
        [(to, format!("https://localhost:{port}"))],
        Some(files),
    );
    PeerClient::new(clients.channel(to).unwrap())
}

/// Asserts a refusal of the peer-binding condition.
fn refused<T: std::fmt::Debug>(what: &str, answer: Result<T, tonic::Status>, reason: &str) {
    let status = answer.expect_err(what);
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{what}: {status:?}");
    assert!(status.message().contains(reason), "{what}: {}", status.message());
}

/// The counters of a node's stores that a call could change (not the device feed's).
async fn stores(agent: &AgentProcess) -> Vec<Json> {
    let body = api_json(agent, "/v1/kms/stores").await;
    body["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!({"link": s["link"], "deliveries": s["deliveries"], "consumed": s["consumed"],
                "relayed_stored": if s["link"] == VIRT_AC { s["stored"].clone() } else { Json::Null }})
        })
        .collect()
}

fn relay_request(sender: &str, hop_link: &str) -> RelayKeysRequest {
    RelayKeysRequest {
        relay_id: Uuid::from_u128(0xfeed).to_string(),
        virt_link_id: VIRT_AC.into(),
        source_node_id: NODE_A.into(),
        sender_node_id: sender.into(),
        sequence: 1,
        key_size_bits: 256,
        key_ids: vec![Uuid::from_u128(0xbeef).to_string()],
        hop_link_id: hop_link.into(),
        pads: vec![HopPad { key_ids: vec![Uuid::from_u128(0xcafe).to_string()] }],
        ciphertext: vec![0u8; 32],
        expires_ms: u64::MAX,
        position_step: 2,
        stored_at_source: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_act_where_its_certificate_does_not_put_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let ([a, b, c], _, _) = chain(dir.path(), &pki).await;
    // Relays have run; then the source stops relaying, so that the stores only change by what
    // the calls below do (or by the devices' feed, which they do not count).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while api_json(&a, "/v1/kms/relays").await["relays"][0]["relays"].as_u64().unwrap_or(0) < 2 {
        assert!(std::time::Instant::now() < deadline, "no relays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let off = json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": VIRT_AC, "qkdl_enable": false}]});
    restconf(&a).patch(&format!("{NODE_PATH}/qkd_links/qkd_link={VIRT_AC}"), &off).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (b_before, c_before) = (stores(&b).await, stores(&c).await);

    let (peer_b, peer_c) = (peer_port_of(&b), peer_port_of(&c));
    let (d_at_b, d_at_c) = (
        client_of(&pki, ("d", NODE_D), NODE_B, peer_b),
        client_of(&pki, ("d2", NODE_D), NODE_C, peer_c),
    );
    let c_at_b = client_of(&pki, ("c2", NODE_C), NODE_B, peer_b);
    let a_at_c = client_of(&pki, ("a2", NODE_A), NODE_C, peer_c);

    // RelayKeys at B: only A, the previous hop, over link A-B.
    refused(
        "C relays in A's name",
        c_at_b.clone().relay_keys(relay_request(NODE_A, LINK_AB)).await,
        "cannot speak for node 00000001",
    );
    refused(
        "D relays as itself",
        d_at_b.clone().relay_keys(relay_request(NODE_D, LINK_AB)).await,
        "is not the previous hop",
    );
    refused(
        "C relays backwards over B-C",
        c_at_b.clone().relay_keys(relay_request(NODE_C, LINK_BC)).await,
        "is not the previous hop",
    );
    // CommitRelay at C (which also settles, as refused, a relay C never stored): only B, the
    // previous hop.
    let commit = |sender: &str| CommitRelayRequest {
        relay_id: Uuid::from_u128(0xfeed).to_string(),
        virt_link_id: VIRT_AC.into(),
        sender_node_id: sender.into(),
        refuse_until_ms: u64::MAX,
        source_node_id: NODE_A.into(),
    };
    refused(
        "D commits in B's name",
        d_at_c.clone().commit_relay(commit(NODE_B)).await,
        "cannot speak for node 00000002",
    );
    refused(
        "A commits past B",
        a_at_c.clone().commit_relay(commit(NODE_A)).await,
        "is not the previous hop",
    );
    // ReserveKeys: on A-B at B only from A for itself; on the virtual link at C only from B.
    let delivery = KeyDelivery {
        key_id: Uuid::from_u128(0xbeef).to_string(),
        master_sae_id: "sae-a".into(),
        slave_sae_ids: vec!["sae-c".into()],
        part_ids: vec![Uuid::from_u128(0xbeef).to_string()],
        size_bits: 256,
        expires_ms: u64::MAX,
        chunk: None,
    };
    let reserve = |link: &str, owner: &str, sender: &str| ReserveKeysRequest {
        link_id: link.into(),
        owner_node_id: owner.into(),
        sender_node_id: sender.into(),
        deliveries: vec![delivery.clone()],
    };
    refused(
        "C reserves in A's name",
        c_at_b.clone().reserve_keys(reserve(LINK_AB, NODE_A, NODE_A)).await,
        "cannot speak for node 00000001",
    );
    refused(
        "C reserves on A-B as itself",
        c_at_b.clone().reserve_keys(reserve(LINK_AB, NODE_C, NODE_C)).await,
        "is not the other end of link",
    );
    refused(
        "D reserves on the virtual link at C",
        d_at_c.clone().reserve_keys(reserve(VIRT_AC, NODE_A, NODE_D)).await,
        "is not the neighbour on the path",
    );
    refused(
        "A reserves at C, skipping B",
        a_at_c.clone().reserve_keys(reserve(VIRT_AC, NODE_A, NODE_A)).await,
        "is not the neighbour on the path",
    );
    // DeviceKeys at B: the master must be the caller.
    let announce = DeviceKeysRequest {
        link_id: LINK_AB.into(),
        master_node_id: NODE_A.into(),
        sequence: 1,
        key_size_bits: 256,
        key_ids: vec![Uuid::from_u128(0xbeef).to_string()],
    };
    refused(
        "C announces keys in A's name",
        c_at_b.clone().device_keys(announce).await,
        "cannot speak for node 00000001",
    );

    // Nothing changed at B or C.
    assert_eq!(stores(&b).await, b_before);
    assert_eq!(stores(&c).await, c_before);
    // Every refusal was counted at the node that refused it.
    let denied = |agent: &AgentProcess| {
        let url = format!("http://127.0.0.1:{}/metrics", agent.management);
        async move {
            let text = http_client().get(url).send().await.unwrap().text().await.unwrap();
            text.lines()
                .filter(|l| l.starts_with("qkdn_access_denied_total{") && l.contains("kms-peer"))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum::<f64>()
        }
    };
    assert_eq!(denied(&b).await, 6.0);
    assert_eq!(denied(&c).await, 4.0);

    // The other way: a KMS calling "B" refuses a server whose certificate names another node.
    let (cert, key) = pki.issue_node("a3", NODE_A);
    let files = qkdn_kit::tls::ClientTls { cert, key, ca: pki.ca() };
    let c_node: Uuid = NODE_C.parse().unwrap();
    let misdirected = qkdn_agent::peer::PeerClients::new(
        [(c_node, format!("https://localhost:{peer_b}"))],
        Some(files),
    );
    let err = misdirected.reserve_keys(c_node, reserve(VIRT_AC, NODE_A, NODE_A)).await.unwrap_err();
    assert!(err.to_string().contains("not urn:qkdn:node:00000003"), "{err:?}");
    drop((a, b, c));
}

/// The peer port of an agent, from its configuration file.
fn peer_port_of(agent: &AgentProcess) -> u16 {
    let text = std::fs::read_to_string(&agent.config).unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let listen = doc["peer"]["listen"].as_str().unwrap();
    listen.rsplit(':').next().unwrap().parse().unwrap()
}
