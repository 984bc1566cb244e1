//! Six agents in a ring-like mesh under one controller: an application between non-adjacent
//! nodes gets a virtual link on every node of its path and its SAEs get identical keys; one
//! between neighbours uses their physical link; bad registrations are refused and change
//! nothing; when the agent in the middle of the first path dies (`kill -9`) the controller
//! moves the application to another path and keys keep flowing.

use qkdn_tests::network::TestNetwork;
use qkdn_tests::sae::Sae;
use reqwest::Method;
use serde_json::{Value as Json, json};

const APP_AC: &str = "a0000000-0000-4000-8000-0000000000ac";
const APP_AD: &str = "a0000000-0000-4000-8000-0000000000ad";

fn ids(net: &TestNetwork, names: &[&str]) -> Vec<Json> {
    names.iter().map(|n| json!(net.nodes[*n].id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_get_relayed_keys_and_move_when_a_trusted_node_dies() {
    let dir = qkdn_tests::process::test_dir();
    let mut net = TestNetwork::ring_of_six(dir.path()).await;

    // Between non-adjacent nodes: the shortest key-aware path is a-b-c.
    let request = json!({"app_id": APP_AC, "server": {"sae_id": "sae-a", "node": net.nodes["a"].id},
        "clients": [{"sae_id": "sae-c", "node": net.nodes["c"].id}], "qos": {"rate_bps": 4000, "ttl_s": 3600}});
    let (status, app) = net.call(Method::POST, "/api/v1/applications", Some(&request)).await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["state"], "active");
    assert_eq!(app["legs"][0]["nodes"], json!(ids(&net, &["a", "b", "c"])));
    let virt = app["legs"][0]["link"].as_str().unwrap().to_owned();
    // The same request again is the same registration.
    let (status, again) = net.call(Method::POST, "/api/v1/applications", Some(&request)).await;
    assert_eq!((status, &again["legs"]), (200, &app["legs"]));

    // Every node of the path holds the virtual link, with its neighbours on the path as hops.
    let link_path = format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={virt}");
    let at_b = net.restconf("b").get(&link_path, &[]).await.unwrap();
    let l = &at_b["etsi-qkd-sdn-node:qkd_link"][0];
    assert_eq!(l["qkdl_type"], "etsi-qkd-node-types:VIRT");
    assert_eq!(l["virt_prev_hop"], json!(net.nodes["a"].id));
    assert_eq!(l["virt_next_hop"], json!([net.nodes["c"].id]));
    assert_eq!(l["virt_bandwidth"], json!(4000));
    for end in ["a", "c"] {
        let doc = net
            .restconf(end)
            .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app={APP_AC}"), &[])
            .await
            .unwrap();
        assert_eq!(
            doc["etsi-qkd-sdn-node:qkd_app"][0]["backing_qkdl_id"],
            json!([virt]),
            "{end}: {doc}"
        );
    }
    let sae_a = Sae::new(&net.pki, "sae-a", net.nodes["a"].kms);
    let sae_c = Sae::new(&net.pki, "sae-c", net.nodes["c"].kms);
    let (sent, received) = sae_a.exchange(&sae_c, "sae-a", "sae-c", 4, 30).await;
    assert_eq!(sent, received, "same IDs, same bytes at both ends");
    monitoring_follows_the_key_stores_relays_and_deliveries(&net, &virt).await;

    // Between neighbours: their physical link backs the application, no virtual link.
    let ad = json!({"app_id": APP_AD, "server": {"sae_id": "sae-a2", "node": net.nodes["a"].id},
        "clients": [{"sae_id": "sae-d", "node": net.nodes["d"].id}], "qos": {"rate_bps": 1000}});
    let (status, app_ad) = net.call(Method::POST, "/api/v1/applications", Some(&ad)).await;
    assert_eq!(status, 201, "{app_ad}");
    assert_eq!(app_ad["legs"][0]["link"], json!(net.link_id("a", "d")));
    let sae_a2 = Sae::new(&net.pki, "sae-a2", net.nodes["a"].kms);
    let sae_d = Sae::new(&net.pki, "sae-d", net.nodes["d"].kms);
    let (sent, received) = sae_a2.exchange(&sae_d, "sae-a2", "sae-d", 2, 30).await;
    assert_eq!(sent, received);

    bad_registrations_change_nothing(&net).await;

    // Clients on two nodes: one path per client node, keys for each.
    let multi = json!({"app_id": "a0000000-0000-4000-8000-0000000000ff", "server": {"sae_id": "sae-m", "node": net.nodes["a"].id},
        "clients": [{"sae_id": "sae-mc", "node": net.nodes["c"].id}, {"sae_id": "sae-md", "node": net.nodes["d"].id}],
        "qos": {"rate_bps": 1000}});
    let (status, app_m) = net.call(Method::POST, "/api/v1/applications", Some(&multi)).await;
    assert_eq!(status, 201, "{app_m}");
    assert_eq!(app_m["legs"].as_array().unwrap().len(), 2, "{app_m}");
    let sae_m = Sae::new(&net.pki, "sae-m", net.nodes["a"].kms);
    for (client, node) in [("sae-mc", "c"), ("sae-md", "d")] {
        let sae = Sae::new(&net.pki, client, net.nodes[node].kms);
        let (sent, received) = sae_m.exchange(&sae, "sae-m", client, 2, 30).await;
        assert_eq!(sent, received, "keys for {client}");
    }
    let (status, _) = net
        .call(Method::DELETE, "/api/v1/applications/a0000000-0000-4000-8000-0000000000ff", None)
        .await;
    assert_eq!(status, 204);

    // A QoS change reaches every node of the path.
    let (status, changed) = net
        .call(
            Method::PATCH,
            &format!("/api/v1/applications/{APP_AC}"),
            Some(&json!({"qos": {"rate_bps": 6000, "ttl_s": 3600}})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["qos"]["rate_bps"], 6000);
    let at_b = net.restconf("b").get(&link_path, &[]).await.unwrap();
    assert_eq!(at_b["etsi-qkd-sdn-node:qkd_link"][0]["virt_bandwidth"], json!(6000));
    let (status, body) = net
        .call(
            Method::PATCH,
            &format!("/api/v1/applications/{APP_AC}"),
            Some(&json!({"qos": {"rate_bps": 0}, "server": {}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/server", "/qos/rate_bps"], "{body}");

    // The trusted node b dies: the application moves to a-d-e-f-c, and keys keep flowing.
    net.agents.get_mut("b").unwrap().kill_hard();
    let moved = net
        .wait_for(&format!("/api/v1/applications/{APP_AC}"), 30, |a| {
            a["legs"][0]["nodes"] == json!(ids(&net, &["a", "d", "e", "f", "c"]))
                && a["state"] == "active"
        })
        .await;
    assert_eq!(
        moved["legs"][0]["link"],
        json!(virt),
        "the virtual link keeps its id, so stored keys stay valid"
    );
    assert_eq!(moved["reroutes"], 1);
    // The controller shows the new legs as soon as it moved the application; the nodes get
    // their entries from the job that follows, within seconds.
    let hops = [
        ("a", "virt_next_hop", json!([net.nodes["d"].id])),
        ("e", "virt_prev_hop", json!(net.nodes["d"].id)),
    ];
    for (node, leaf, expected) in hops {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let held = net.restconf(node).get(&link_path, &[]).await;
            let value = held.as_ref().map(|h| h["etsi-qkd-sdn-node:qkd_link"][0][leaf].clone());
            if value.as_ref().is_ok_and(|v| *v == expected) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{node} holds {held:?}, not {leaf} {expected}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let (sent, received) = sae_a.exchange(&sae_c, "sae-a", "sae-c", 8, 30).await;
    assert_eq!(sent, received, "keys relayed over the new path");
    let events = net.get("/api/v1/events").await;
    let kinds: Vec<&str> =
        events["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"agent-lost") && kinds.contains(&"app-rerouted"), "{kinds:?}");
    // The application between neighbours was not touched.
    let ad_now = net.get(&format!("/api/v1/applications/{APP_AD}")).await;
    assert_eq!(ad_now["reroutes"], 0);

    // The operator disables a-d at a: with b gone, neither application has a path; both are
    // marked and keep their entries, and come back when the link does.
    let ad_link = net.link_id("a", "d");
    let enable =
        |on: bool| json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": ad_link, "qkdl_enable": on}]});
    let at = format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={ad_link}");
    net.restconf("a").patch(&at, &enable(false)).await.unwrap();
    for app in [APP_AC, APP_AD] {
        let marked = net
            .wait_for(&format!("/api/v1/applications/{app}"), 20, |a| a["state"] == "no-path")
            .await;
        assert!(marked["reason"].as_str().unwrap().contains("no path"), "{marked}");
    }
    let link = net.get(&format!("/api/v1/links/{ad_link}")).await;
    assert!(link["down_reasons"][0].as_str().unwrap().contains("disabled at node"), "{link}");
    assert!(
        net.restconf("d")
            .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app={APP_AD}"), &[])
            .await
            .is_ok()
    );
    net.restconf("a").patch(&at, &enable(true)).await.unwrap();
    for app in [APP_AC, APP_AD] {
        net.wait_for(&format!("/api/v1/applications/{app}"), 20, |a| a["state"] == "active").await;
    }
    let kinds: Vec<String> = net.get("/api/v1/events").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert!(
        kinds.contains(&"app-no-path".to_owned()) && kinds.contains(&"app-restored".to_owned()),
        "{kinds:?}"
    );
    let (sent, received) = sae_a.exchange(&sae_c, "sae-a", "sae-c", 2, 30).await;
    assert_eq!(sent, received, "keys flow again");

    // b comes back: its session reconnects, reads the node again, and its links are up.
    net.start_agent("b");
    net.wait_for_topology(30).await;
    // It still held the virtual link of the application's old path; the controller, which
    // recorded that the removal did not reach b, removes it now.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while net.restconf("b").get(&link_path, &[]).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "b still holds {virt}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Removing an application removes its entries from the nodes that answer.
    let (status, _) =
        net.call(Method::DELETE, &format!("/api/v1/applications/{APP_AD}"), None).await;
    assert_eq!(status, 204);
    let gone = net
        .restconf("d")
        .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app={APP_AD}"), &[])
        .await;
    assert_eq!(gone.unwrap_err().status(), Some(404));
}

/// The monitoring figures, over REST and in the ETSI 018 view, come from the agents' KMSs.
async fn monitoring_follows_the_key_stores_relays_and_deliveries(net: &TestNetwork, virt: &str) {
    let ab = net.link_id("a", "b");
    let doc = net
        .wait_for("/api/v1/monitoring", 20, |m| {
            // Both ends report what the exchange drew: the master's enc_keys, the slave's bits.
            m["applications"][0]["deliveries"].as_array().is_some_and(|d| {
                d.len() == 2 && d.iter().all(|x| x["consumed_bits"].as_u64() > Some(0))
            }) && m["virtual_links"][0]["relay"]["keys"].as_u64() > Some(0)
        })
        .await;
    let link = doc["links"].as_array().unwrap().iter().find(|l| l["link_id"] == ab).unwrap();
    assert_eq!(link["reserved_bps"], 4000, "{link}");
    for store in link["key_stores"].as_array().unwrap() {
        assert_eq!(store["reported"], true, "{link}");
        assert!(
            store["stored_bits"].as_u64().unwrap() > 0 && store["fill_ratio"].as_f64().is_some(),
            "{link}"
        );
    }
    let v = &doc["virtual_links"][0];
    assert_eq!(v["link_id"], virt);
    assert!(v["relay"]["success_ratio"].as_f64().unwrap() > 0.0, "{v}");
    let app = &doc["applications"][0];
    assert_eq!((&app["app_id"], &app["ttl_s"]), (&json!(APP_AC), &json!(3600)));
    let at_a = app["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["node"] == json!(net.nodes["a"].id))
        .unwrap();
    assert_eq!(at_a["sae_id"], "sae-a");
    let (requests, delivered) =
        (at_a["requests"].as_f64().unwrap(), at_a["delivered"].as_f64().unwrap());
    assert!(delivered >= 1.0, "{app}");
    assert!((at_a["success_ratio"].as_f64().unwrap() - delivered / requests).abs() < 1e-9, "{app}");
    assert!(at_a["latency_p99_ms"].as_f64().unwrap() > 0.0, "{app}");
    // The slave's side counts its fetches.
    let at_c = app["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["node"] == json!(net.nodes["c"].id))
        .unwrap();
    assert!(at_c["fetch_requests"].as_u64() >= Some(1), "{app}");
    assert!(at_c["fetched_keys"].as_u64() >= Some(4), "{app}");
    assert_eq!(at_c["fetch_failed"], 0, "{app}");

    // The same figures in the 018 inventory (refreshed every few seconds).
    let northbound =
        qkdn_yang::restconf::RestconfClient::with_client(net.api.clone(), &net.url(""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let tree = northbound
            .get(
                &format!(
                    "/etsi-qkd-sdn-topology:qkd_network/qkd_links/qkd_phys_links/phys_link={ab}"
                ),
                &[],
            )
            .await
            .unwrap();
        let stores = &tree["etsi-qkd-sdn-topology:phys_link"][0]["etsi-qkd-sdn-inventory:phys_link_details"]
            ["phys_performance"]["key_store"];
        // uint64 leaves are JSON strings in RFC 7951.
        let bits = |x: &Json| x["stored_bits"].as_str().and_then(|b| b.parse::<u64>().ok());
        if stores.as_array().is_some_and(|s| s.len() == 2 && s.iter().all(|x| bits(x) > Some(0))) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no key stores in the 018 view: {tree}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn bad_registrations_change_nothing(net: &TestNetwork) {
    let before = net.get("/api/v1/applications").await;
    let a = net.nodes["a"].id.clone();
    let c = net.nodes["c"].id.clone();
    let (status, body) = net
        .call(Method::POST, "/api/v1/applications", Some(&json!({"server": {"sae_id": "x", "node": a}, "clients": [{"sae_id": "", "node": c}], "qos": {}})))
        .await;
    assert_eq!(status, 400, "{body}");
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/clients/0/sae_id", "/qos/rate_bps"], "{body}");
    let unknown = "99999999-0000-4000-8000-000000000000";
    let (status, body) = net
        .call(Method::POST, "/api/v1/applications", Some(&json!({"server": {"sae_id": "x", "node": a}, "clients": [{"sae_id": "y", "node": unknown}], "qos": {"rate_bps": 10}})))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].as_str().unwrap().contains(unknown), "{body}");
    let (status, body) = net
        .call(Method::POST, "/api/v1/applications", Some(&json!({"server": {"sae_id": "x", "node": a}, "clients": [{"sae_id": "y", "node": c}], "qos": {"rate_bps": 4000000000u64}})))
        .await;
    assert_eq!(status, 409, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("no path with 4000000000 bit/s spare")
            && detail.contains("the best offers"),
        "{body}"
    );
    let (status, body) = net.call(Method::POST, "/api/v1/applications", Some(&json!({"app_id": APP_AC, "server": {"sae_id": "other", "node": a}, "clients": [{"sae_id": "sae-c", "node": c}], "qos": {"rate_bps": 10}}))).await;
    assert_eq!(status, 409, "an id reused with other content: {body}");
    assert_eq!(net.get("/api/v1/applications").await, before, "nothing was registered");
    let (status, body) = net.call(Method::GET, "/api/v1/applications/not-a-uuid", None).await;
    assert_eq!((status, body["status"].as_u64()), (404, Some(404)));
}
