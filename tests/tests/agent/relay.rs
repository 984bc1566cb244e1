//! Key relay through a trusted node: a chain A -- B -- C of agent processes with simulated
//! devices, their KMSs connected by the peer service over mutual TLS; a virtual link A -> C
//! through B (written to the three nodes over RESTCONF, as a controller would), and SAEs at A
//! and C that get identical keys with `enc_keys` / `dec_keys` over the relayed link.

use std::path::Path;

use serde_json::{Value as Json, json};

use crate::harness::*;
use crate::kms::{Sae, key_bytes, key_ids, wait_for_keys};

pub(crate) const NODE_C: &str = "00000003-0000-0000-0000-000000000000";
pub(crate) const LINK_BC: &str = "b0c00000-0000-4000-8000-000000000002";
pub(crate) const VIRT_AC: &str = "a0c00000-0000-4000-8000-000000000003";

/// One node of the chain.
pub(crate) struct ChainNode<'a> {
    pub(crate) name: &'a str,
    pub(crate) node: &'a str,
    /// (link, local interface, remote node, remote interface).
    pub(crate) links: Vec<(&'a str, u32, &'a str, u32)>,
    pub(crate) peer_port: u16,
    /// (node, peer port).
    pub(crate) neighbours: Vec<(&'a str, u16)>,
    pub(crate) kms_port: u16,
    /// `kms.relay_stock_keys`.
    pub(crate) relay_stock: usize,
}

/// Starts a chain node: simulated devices on each link, peer service and KMS over mutual TLS.
pub(crate) fn start_chain_node(dir: &Path, pki: &TestPki, n: &ChainNode<'_>) -> AgentProcess {
    let (cert, key) = pki.issue_node(n.name, n.node);
    let ca = pki.ca();
    let store_key = store_key_file(dir, n.name);
    let tls_server = server_tls_toml(&cert, &key, &ca);
    let mut body = format!(
        "[node]\nid = \"{}\"\n\n[notifications]\nperformance_period = \"300ms\"\n\n{}\n",
        n.node,
        sim_section("")
    );
    for (link, iface, remote, remote_iface) in &n.links {
        body.push_str(&format!(
            "[[interfaces]]\nid = {iface}\ntechnology = \"DV-QKD\"\n[interfaces.device]\ndriver = \"simulator\"\npulse_rate_hz = 1.0e7\n\n\
             [[links]]\nid = \"{link}\"\nlocal_interface = {iface}\nremote_node = \"{remote}\"\nremote_interface = {remote_iface}\n\
             wavelength = 20\nrole = \"TRANSMITTER\"\nlength_km = 25.0\n\n"
        ));
    }
    body.push_str(&format!(
        "[peer]\nlisten = \"127.0.0.1:{}\"\ntls = {tls_server}\nclient_tls = {{ cert = \"{}\", key = \"{}\", ca = \"{}\" }}\n\n",
        n.peer_port,
        cert.display(),
        key.display(),
        ca.display()
    ));
    for (node, port) in &n.neighbours {
        body.push_str(&format!(
            "[[neighbours]]\nnode = \"{node}\"\nurl = \"https://localhost:{port}\"\n\n"
        ));
    }
    body.push_str(&format!(
        "[kms]\nlisten = \"127.0.0.1:{}\"\ntls = {tls_server}\nstore_key_file = \"{}\"\nrelay_stock_keys = {}\n",
        n.kms_port,
        store_key.display(),
        n.relay_stock,
    ));
    start(&Spec { dir, name: n.name, body, restconf_extra: "" })
}

/// The virtual link A -> C through B, as each node of its path holds it.
pub(crate) async fn provision_virtual_link(a: &AgentProcess, b: &AgentProcess, c: &AgentProcess) {
    let entry = |remote: &str, prev: Option<&str>, next: Option<&str>| {
        let mut link = json!({"qkdl_id": VIRT_AC, "qkdl_type": "etsi-qkd-node-types:VIRT",
            "qkdl_remote": {"qkdn_id": remote}, "virt_bandwidth": 20000});
        if let Some(p) = prev {
            link["virt_prev_hop"] = json!(p);
        }
        if let Some(n) = next {
            link["virt_next_hop"] = json!([n]);
        }
        json!({"etsi-qkd-sdn-node:qkd_link": [link]})
    };
    let path = format!("{NODE_PATH}/qkd_links/qkd_link={VIRT_AC}");
    restconf(b).put(&path, &entry(NODE_C, Some(NODE_A), Some(NODE_C))).await.unwrap();
    restconf(c).put(&path, &entry(NODE_A, Some(NODE_B), None)).await.unwrap();
    restconf(a).put(&path, &entry(NODE_C, None, Some(NODE_B))).await.unwrap();
}

/// The application pairing `local` here with `remote` at the far end of the virtual link.
pub(crate) async fn pair_over_virtual(agent: &AgentProcess, app: &str, local: &str, remote: &str) {
    pair_over(agent, app, local, remote, VIRT_AC).await;
}

/// The application pairing `local` here with `remote` over `link`.
async fn pair_over(agent: &AgentProcess, app: &str, local: &str, remote: &str, link: &str) {
    let body = json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": app, "server_app_id": local,
        "client_app_id": [remote], "backing_qkdl_id": [link]}]});
    let path = format!("{NODE_PATH}/qkd_applications/qkd_app={app}");
    restconf(agent).put(&path, &body).await.unwrap();
}

/// Starts the chain and the virtual link; returns the agents and the KMS ports of A and C.
pub(crate) async fn chain(dir: &Path, pki: &TestPki) -> ([AgentProcess; 3], u16, u16) {
    let ([a, b, c], ka, kc) = chain_nodes(dir, pki, 256);
    provision_virtual_link(&a, &b, &c).await;
    pair_over_virtual(&a, "aaaa0000-0000-4000-8000-0000000000ac", "sae-a", "sae-c").await;
    pair_over_virtual(&c, "aaaa0000-0000-4000-8000-0000000000ca", "sae-c", "sae-a").await;
    ([a, b, c], ka, kc)
}

/// Starts the three nodes of the chain, with no virtual link yet, the relay's stock at
/// `relay_stock` keys.
pub(crate) fn chain_nodes(
    dir: &Path,
    pki: &TestPki,
    relay_stock: usize,
) -> ([AgentProcess; 3], u16, u16) {
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let (ka, kb, kc) = (free_port(), free_port(), free_port());
    let a = start_chain_node(
        dir,
        pki,
        &ChainNode {
            name: "a",
            node: NODE_A,
            links: vec![(LINK_AB, 101, NODE_B, 201)],
            peer_port: pa,
            neighbours: vec![(NODE_B, pb)],
            kms_port: ka,
            relay_stock,
        },
    );
    let b = start_chain_node(
        dir,
        pki,
        &ChainNode {
            name: "b",
            node: NODE_B,
            links: vec![(LINK_AB, 201, NODE_A, 101), (LINK_BC, 202, NODE_C, 301)],
            peer_port: pb,
            neighbours: vec![(NODE_A, pa), (NODE_C, pc)],
            kms_port: kb,
            relay_stock,
        },
    );
    let c = start_chain_node(
        dir,
        pki,
        &ChainNode {
            name: "c",
            node: NODE_C,
            links: vec![(LINK_BC, 301, NODE_B, 202)],
            peer_port: pc,
            neighbours: vec![(NODE_B, pb)],
            kms_port: kc,
            relay_stock,
        },
    );
    ([a, b, c], ka, kc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saes_at_the_ends_of_a_relayed_link_get_identical_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let ([a, b, c], ka, kc) = chain(dir.path(), &pki).await;
    let (sae_a, sae_c) = (Sae::new(&pki, "sae-a", ka), Sae::new(&pki, "sae-c", kc));
    wait_for_keys(&sae_a, "sae-c", 10).await;

    let enc = sae_a.post("sae-c/enc_keys", &json!({"number": 4})).await;
    assert_eq!(enc.status, 200, "{}", enc.body);
    let body = json!({"key_IDs": key_ids(&enc).iter().map(|id| json!({"key_ID": id})).collect::<Vec<_>>()});
    let dec = sae_c.post("sae-a/dec_keys", &body).await;
    assert_eq!(dec.status, 200, "{}", dec.body);
    assert_eq!(dec.body["keys"], enc.body["keys"], "same IDs, same bytes");
    // The other direction: C's half of the relayed stream.
    wait_for_keys(&sae_c, "sae-a", 3).await;
    let enc = sae_c.post("sae-a/enc_keys", &json!({"number": 3})).await;
    assert_eq!(enc.status, 200, "{}", enc.body);
    let body = json!({"key_IDs": key_ids(&enc).iter().map(|id| json!({"key_ID": id})).collect::<Vec<_>>()});
    let dec = sae_a.post("sae-c/dec_keys", &body).await;
    assert_eq!(dec.body["keys"], enc.body["keys"]);
    let mut delivered = key_bytes(&enc);
    let named = key_ids(&enc);

    // The trusted node in the middle holds no store for the virtual link, and every hop key it
    // used is gone: the physical links' stores show what the relay consumed.
    let stores = api_json(&b, "/v1/kms/stores").await;
    let links: Vec<&str> =
        stores["stores"].as_array().unwrap().iter().map(|s| s["link"].as_str().unwrap()).collect();
    assert!(!links.contains(&VIRT_AC), "{stores}");
    let a_stores = api_json(&a, "/v1/kms/stores").await;
    let ab = a_stores["stores"].as_array().unwrap().iter().find(|s| s["link"] == LINK_AB).unwrap();
    let virt =
        a_stores["stores"].as_array().unwrap().iter().find(|s| s["link"] == VIRT_AC).unwrap();
    assert!(
        ab["consumed"].as_u64().unwrap() >= virt["filled"].as_u64().unwrap(),
        "one pad per relayed key: {a_stores}"
    );
    let relays = api_json(&a, "/v1/kms/relays").await;
    let virt_relays = &relays["relays"][0];
    assert_eq!(virt_relays["link"], VIRT_AC, "{relays}");
    assert!(virt_relays["relays"].as_u64().unwrap() >= 1, "{relays}");
    assert!(virt_relays["keys"].as_u64().unwrap() >= 1, "{relays}");
    assert!(virt_relays["latency_p50_ms"].as_f64().unwrap() > 0.0, "{relays}");
    let c_stores = api_json(&c, "/v1/kms/stores").await;
    let virt_c =
        c_stores["stores"].as_array().unwrap().iter().find(|s| s["link"] == VIRT_AC).unwrap();
    assert_eq!(virt_c["remote"], NODE_A);

    // The trusted node saw the relayed keys in the clear, but logged none of them.
    delivered.extend(key_bytes(&sae_a.post("sae-c/enc_keys", &json!({"number": 2})).await));
    drop((a, b, c));
    assert_logs_hold_no_keys(dir.path(), &delivered, &named);
}

/// TeraFlowSDN's QKD service handler provisions a path A -- B -- C as two one-way virtual
/// links, each written at its source and at every node in between but not at its destination,
/// with `virt_next_hop` holding the rest of the path and the ends of the link in `qkdl_local`
/// and `qkdl_remote` at every node; its driver POSTs each to `qkd_links/` (plain JSON, the
/// target container named in the body, `null` for no previous hop, bandwidth 0). Written
/// exactly so at the three agents, it relays keys: SAEs at A and C get identical keys both
/// ways, each end holding the key association under its own link's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_written_as_teraflowsdn_writes_it_relays_keys() {
    const FORWARD: &str = "7f000000-0000-4000-8000-0000000000ac";
    const BACKWARD: &str = "7b000000-0000-4000-8000-0000000000ca";
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let ([a, b, c], ka, kc) = chain_nodes(dir.path(), &pki, 256);
    let http = http_client();
    // The ends' interfaces on the path: A's towards B (101), C's towards B (301).
    let (src, dst) = ((NODE_A, "101"), (NODE_C, "301"));
    let link =
        |id: &str, ends: ((&str, &str), (&str, &str)), prev: Option<&str>, next: Vec<&str>| {
            let mut body = crate::tfs::tfs_link(id, ends.0, ends.1, prev, Some(next));
            body["qkd_links"]["qkd_link"][0]["virt_bandwidth"] = json!(0);
            body
        };
    let writes = [
        (&a, link(FORWARD, (src, dst), None, vec![NODE_B, NODE_C])),
        (&b, link(FORWARD, (src, dst), Some(NODE_A), vec![NODE_C])),
        (&b, link(BACKWARD, (dst, src), Some(NODE_C), vec![NODE_A])),
        (&c, link(BACKWARD, (dst, src), None, vec![NODE_B, NODE_A])),
    ];
    for (agent, body) in &writes {
        crate::tfs::tfs_post(&http, agent, "qkd_links", body).await;
    }
    // Each node keeps what 015 means: the next hop (the datastore would sort the path).
    for (agent, id) in [(&a, FORWARD), (&c, BACKWARD)] {
        let link = restconf(agent)
            .get(&format!("{NODE_PATH}/qkd_links/qkd_link={id}"), &[])
            .await
            .unwrap();
        let link = &link["etsi-qkd-sdn-node:qkd_link"][0];
        assert_eq!(link["virt_next_hop"], json!([NODE_B]), "{link}");
        assert!(link.get("virt_prev_hop").is_none(), "{link}");
    }
    // A path that comes back through this node is refused.
    let looping = link(
        "7c000000-0000-4000-8000-0000000000ac",
        (src, dst),
        None,
        vec![NODE_B, NODE_A, NODE_C],
    );
    let url = format!(
        "http://127.0.0.1:{}/restconf/data/etsi-qkd-sdn-node:qkd_node/qkd_links/",
        a.restconf
    );
    let refused = http.post(&url).json(&looping).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(text.contains("comes back through this node"), "{text}");

    pair_over(&a, "aaaa0000-0000-4000-8000-0000000000ac", "sae-a", "sae-c", FORWARD).await;
    pair_over(&c, "aaaa0000-0000-4000-8000-0000000000ca", "sae-c", "sae-a", BACKWARD).await;
    let (sae_a, sae_c) = (Sae::new(&pki, "sae-a", ka), Sae::new(&pki, "sae-c", kc));
    for (master, slave, slave_id, master_id) in
        [(&sae_a, &sae_c, "sae-c", "sae-a"), (&sae_c, &sae_a, "sae-a", "sae-c")]
    {
        wait_for_keys(master, slave_id, 4).await;
        let enc = master.post(&format!("{slave_id}/enc_keys"), &json!({"number": 4})).await;
        assert_eq!(enc.status, 200, "{}", enc.body);
        let ids: Vec<Json> = key_ids(&enc).iter().map(|id| json!({"key_ID": id})).collect();
        let dec = slave.post(&format!("{master_id}/dec_keys"), &json!({"key_IDs": ids})).await;
        assert_eq!(dec.status, 200, "{}", dec.body);
        assert_eq!(dec.body["keys"], enc.body["keys"], "same IDs, same bytes");
    }
    // Each end holds the association under its own name, with the other end as its remote.
    for (agent, id, remote) in [(&a, FORWARD, NODE_C), (&c, BACKWARD, NODE_A)] {
        let stores = api_json(agent, "/v1/kms/stores").await;
        let store = stores["stores"].as_array().unwrap().iter().find(|s| s["link"] == id);
        assert_eq!(store.map(|s| &s["remote"]), Some(&json!(remote)), "{stores}");
    }
    drop(b);
}
