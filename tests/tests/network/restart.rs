//! `kill -9` of the controller while applications are being registered: after a restart every
//! answered registration is there, whatever was half-written on the nodes for unanswered ones
//! is rolled back, nodes hold exactly the entries of the registered applications, and
//! repeating every request (they carry their ids) registers each application once.

use std::collections::BTreeSet;
use std::sync::Arc;

use qkdn_tests::network::TestNetwork;
use reqwest::Method;
use serde_json::{Value as Json, json};

const APPS: usize = 24;

fn app_id(i: usize) -> String {
    format!("a1000000-0000-4000-8000-{i:012x}")
}

fn request(net: &TestNetwork, i: usize) -> Json {
    json!({"app_id": app_id(i), "server": {"sae_id": format!("sae-a{i}"), "node": net.nodes["a"].id},
        "clients": [{"sae_id": format!("sae-c{i}"), "node": net.nodes["c"].id}], "qos": {"rate_bps": 50}})
}

/// The ids in a list of a node (`qkd_app` ids or VIRT `qkd_link` ids).
async fn held(net: &TestNetwork, node: &str, apps: bool) -> BTreeSet<String> {
    let path = if apps {
        "/etsi-qkd-sdn-node:qkd_node/qkd_applications"
    } else {
        "/etsi-qkd-sdn-node:qkd_node/qkd_links"
    };
    let doc = net.restconf(node).get(path, &[]).await.unwrap();
    let (container, list, key) = if apps {
        ("etsi-qkd-sdn-node:qkd_applications", "qkd_app", "app_id")
    } else {
        ("etsi-qkd-sdn-node:qkd_links", "qkd_link", "qkdl_id")
    };
    doc[container][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| apps || e["qkdl_type"] == "etsi-qkd-node-types:VIRT")
        .map(|e| e[key].as_str().unwrap().to_owned())
        .collect()
}

/// The registered applications, their links, and whether all are active.
async fn registered(net: &TestNetwork) -> (BTreeSet<String>, BTreeSet<String>, bool) {
    let apps = net.get("/api/v1/applications").await;
    let list = apps["applications"].as_array().unwrap();
    (
        list.iter().map(|a| a["app_id"].as_str().unwrap().to_owned()).collect(),
        list.iter().map(|a| a["legs"][0]["link"].as_str().unwrap().to_owned()).collect(),
        list.iter().all(|a| a["state"] == "active"),
    )
}

/// Polls until the nodes hold exactly the registered applications' entries.
async fn nodes_match(net: &TestNetwork) -> BTreeSet<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (apps, links, active) = registered(net).await;
        let (at_a, at_c) = (held(net, "a", true).await, held(net, "c", true).await);
        let (virt_a, virt_b, virt_c) =
            (held(net, "a", false).await, held(net, "b", false).await, held(net, "c", false).await);
        if active
            && at_a == apps
            && at_c == apps
            && virt_a == links
            && virt_b == links
            && virt_c == links
        {
            return apps;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nodes do not match the registrations (all active: {active}):\napps {apps:?}\nat a {at_a:?}\nat c {at_c:?}\nlinks {links:?}\nat b {virt_b:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_during_registrations_loses_and_duplicates_nothing() {
    let dir = qkdn_tests::process::test_dir();
    let mut net = TestNetwork::new(dir.path(), &["a", "b", "c"], &[("a", "b"), ("b", "c")]);
    net.start_controller("");
    net.start_agents();
    net.wait_for_topology(30).await;

    // Four clients register concurrently; the controller is killed part way.
    let answered = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut clients = Vec::new();
    for worker in 0..4 {
        let answered = answered.clone();
        let (api, url) = (net.api.clone(), net.url("/api/v1/applications"));
        let requests: Vec<(usize, Json)> =
            (worker..APPS).step_by(4).map(|i| (i, request(&net, i))).collect();
        clients.push(tokio::spawn(async move {
            for (i, body) in requests {
                match api.post(&url).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => {
                        answered.lock().unwrap().insert(app_id(i));
                    }
                    Ok(r) => panic!(
                        "registration {i}: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ),
                    Err(_) => {}
                }
            }
        }));
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        if answered.lock().unwrap().len() >= APPS / 3 {
            break;
        }
    }
    net.controller.as_mut().unwrap().kill_hard();
    for c in clients {
        c.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= APPS / 3 && answered.len() < APPS, "killed part way: {answered:?}");

    net.controller.as_mut().unwrap().restart();
    net.wait_for_topology(30).await;
    let kept = nodes_match(&net).await;
    assert!(
        kept.is_superset(&answered),
        "every answered registration survives: {answered:?} vs {kept:?}"
    );

    // Every request again: each application registered once.
    for i in 0..APPS {
        let (status, body) =
            net.call(Method::POST, "/api/v1/applications", Some(&request(&net, i))).await;
        let expected = if kept.contains(&app_id(i)) { 200 } else { 201 };
        assert_eq!(status, expected, "registration {i}: {body}");
    }
    let all = nodes_match(&net).await;
    assert_eq!(all.len(), APPS);
}
