//! A third-party ETSI 015 server as a static agent: three RESTCONF servers (the foundation's
//! example server, which never registers) loaded with TeraFlowSDN's `qkd_end2end` node
//! fixtures; the controller is told their URLs, reads the nodes, follows their event streams
//! as links are written to them the way TeraFlowSDN's driver writes them, and provisions an
//! application across them.

use std::time::Duration;

use qkdn_tests::network::TestNetwork;
use qkdn_yang::restconf::RestconfClient;
use reqwest::Method;
use serde_json::{Value as Json, json};

const QKD: [&str; 3] = [
    "00000001-0000-0000-0000-000000000000",
    "00000002-0000-0000-0000-000000000000",
    "00000003-0000-0000-0000-000000000000",
];

/// The interface of node `n` facing node `m` (its attachment point names `QKD<m>`), and the
/// remote interface (the attachment point's port).
fn facing(n: usize, m: usize) -> (u32, u32) {
    let node = qkdn_tests::fixtures::tfs_node(n);
    let iface = node["qkd_node"]["qkd_interfaces"]["qkd_interface"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["qkdi_att_point"]["device"] == format!("QKD{m}"))
        .unwrap()
        .clone();
    let num =
        |v: &Json| v.as_str().map(|s| s.parse().unwrap()).or(v.as_u64().map(|x| x as u32)).unwrap();
    (num(&iface["qkdi_id"]), num(&iface["qkdi_att_point"]["port"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_servers_are_discovered_as_static_agents_and_provisioned() {
    let dir = qkdn_tests::process::test_dir();
    let (mut servers, urls) = qkdn_tests::fixtures::start_tfs_servers(dir.path());
    let mut net = TestNetwork::new(dir.path(), &[], &[]);
    let statics: String =
        urls.iter().map(|u| format!("[[static_agents]]\nrestconf_url = \"{u}\"\n\n")).collect();
    net.start_controller(&statics);
    net.wait_for("/api/v1/nodes", 20, |b| {
        b["nodes"].as_array().is_some_and(|n| {
            n.len() == 3
                && n.iter().all(|x| x["reachable"] == true && x["agent"]["source"] == "static")
        })
    })
    .await;

    // The direct links, written at both ends as TeraFlowSDN's driver does.
    let direct = [
        (1, 2, "00000001-0002-0000-0000-000000000000"),
        (2, 3, "00000002-0003-0000-0000-000000000000"),
    ];
    for (a, b, id) in direct {
        for (x, y) in [(a, b), (b, a)] {
            let (local, remote) = facing(x, y);
            let body = json!({"qkd_link": [{"qkdl_id": id, "qkdl_type": "etsi-qkd-node-types:PHYS",
                "qkdl_local": {"qkdn_id": QKD[x - 1], "qkdi_id": local.to_string()},
                "qkdl_remote": {"qkdn_id": QKD[y - 1], "qkdi_id": remote.to_string()}}]});
            RestconfClient::new(&urls[x - 1])
                .post("/etsi-qkd-sdn-node:qkd_node/qkd_links", &body)
                .await
                .unwrap();
        }
    }
    // Seen through the event streams, with the key rates the servers publish.
    let links = net
        .wait_for("/api/v1/links", 20, |b| {
            b["links"].as_array().is_some_and(|l| {
                l.len() == 2
                    && l.iter().all(|x| x["up"] == true && x["skr_bps"].as_u64().unwrap_or(0) > 0)
            })
        })
        .await;
    assert!(links["problems"].as_array().unwrap().is_empty(), "{links}");

    let request = json!({"server": {"sae_id": "sae-1", "node": QKD[0]}, "clients": [{"sae_id": "sae-3", "node": QKD[2]}], "qos": {"rate_bps": 10000}});
    let (status, app) = net.call(Method::POST, "/api/v1/applications", Some(&request)).await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["legs"][0]["nodes"], json!(QKD));
    let virt = app["legs"][0]["link"].as_str().unwrap();
    let at_2 = RestconfClient::new(&urls[1])
        .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={virt}"), &[])
        .await
        .unwrap();
    let l = &at_2["etsi-qkd-sdn-node:qkd_link"][0];
    assert_eq!((&l["virt_prev_hop"], &l["virt_next_hop"]), (&json!(QKD[0]), &json!([QKD[2]])));
    let app_id = app["app_id"].as_str().unwrap();
    let at_3 = RestconfClient::new(&urls[2])
        .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app={app_id}"), &[])
        .await
        .unwrap();
    assert_eq!(at_3["etsi-qkd-sdn-node:qkd_app"][0]["server_app_id"], "sae-3");

    etsi_018_northbound(&net, app_id, virt, &urls).await;

    // Servers that go away are lost after the timeout, and their links with them; the
    // orchestrator hears of it on the 018 stream.
    let northbound = RestconfClient::with_client(net.api.clone(), &net.url(""));
    let mut stream =
        northbound.subscribe("qkd-network", qkdn_yang::restconf::client::Backoff::default());
    assert_eq!(stream.next().await, Some(qkdn_yang::restconf::client::StreamEvent::Connected));

    // A node that stops answering in the middle of a registration: QKD3's server dies, and a
    // registration between neighbours QKD2 and QKD3 is written at QKD2, fails at QKD3 and is
    // rolled back: 502 naming the node, and nothing kept anywhere.
    drop(servers.remove(2));
    let partial = "5e1f0000-0000-4000-8000-0000000000f3";
    let request = json!({"app_id": partial, "server": {"sae_id": "sae-2x", "node": QKD[1]},
        "clients": [{"sae_id": "sae-3x", "node": QKD[2]}], "qos": {"rate_bps": 1000}});
    let (status, body) = net.call(Method::POST, "/api/v1/applications", Some(&request)).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["detail"].as_str().unwrap().contains(QKD[2]), "{body}");
    let (status, _) = net.call(Method::GET, &format!("/api/v1/applications/{partial}"), None).await;
    assert_eq!(status, 404, "nothing persisted");
    let at_2 = RestconfClient::new(&urls[1])
        .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app={partial}"), &[])
        .await;
    assert_eq!(at_2.unwrap_err().status(), Some(404), "rolled back at QKD2");

    drop(servers.remove(1));
    net.wait_for("/api/v1/links", 20, |b| {
        b["links"].as_array().is_some_and(|l| l.iter().all(|x| x["up"] == false))
    })
    .await;
    let app = net
        .wait_for(&format!("/api/v1/applications/{app_id}"), 20, |a| a["state"] == "no-path")
        .await;
    assert!(app["reason"].as_str().unwrap().contains("no path"), "{app}");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.iter().any(|n: &Json| n["etsi-qkd-sdn-inventory:alarm"]["kind"] == "agent-lost")
        && seen.iter().any(|n| {
            n["etsi-qkd-sdn-connectivity:sdqkdn_application_status"]["app_status"] == "DISCONNECTED"
        }))
    {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(qkdn_yang::restconf::client::StreamEvent::Notification(n))) => seen.push(n),
            Ok(Some(_)) => {}
            _ => panic!("018 notifications missing; seen {seen:?}"),
        }
    }
}

/// The network and the applications over ETSI 018 (RESTCONF), and the four connectivity
/// steps deploying a second application.
async fn etsi_018_northbound(
    net: &TestNetwork,
    first_app: &str,
    first_link: &str,
    urls: &[String],
) {
    let northbound = RestconfClient::with_client(net.api.clone(), &net.url(""));
    // The tree follows the controller's state within the northbound's sync period.
    let doc = eventually(&northbound, "/etsi-qkd-sdn-topology:qkd_network", |d| {
        d["etsi-qkd-sdn-topology:qkd_network"]["qkd_links"]["qkd_svc_links"]["svc_link"]
            .as_array()
            .is_some_and(|l| l.len() == 1)
    })
    .await;
    let network = &doc["etsi-qkd-sdn-topology:qkd_network"];
    assert_eq!(network["sdqkd_nodes"]["sdqkd_node"].as_array().unwrap().len(), 3, "{doc}");
    let phys = network["qkd_links"]["qkd_phys_links"]["phys_link"].as_array().unwrap();
    assert_eq!(phys.len(), 2);
    let details = &phys[0]["etsi-qkd-sdn-inventory:phys_link_details"];
    assert_eq!(details["phys_link_status"], "etsi-qkd-node-types:ACTIVE", "{doc}");
    assert!(details["phys_performance"]["skr"].as_u64().unwrap() > 0);
    assert_eq!(details["phys_performance"]["reserved_bandwidth"], 10000);
    let svc = &network["qkd_links"]["qkd_svc_links"]["svc_link"][0];
    assert_eq!(svc["svc_link_id"], first_link, "{doc}");
    let apps = eventually(&northbound, "/etsi-qkd-sdn-connectivity:qkd_applications", |a| {
        a["etsi-qkd-sdn-connectivity:qkd_applications"]["qkd_app"][0]["app_status"] == "DEPLOYED"
    })
    .await;
    let app = &apps["etsi-qkd-sdn-connectivity:qkd_applications"]["qkd_app"][0];
    assert_eq!(
        (&app["app_id"], &app["app_status"]),
        (&json!(first_app), &json!("DEPLOYED")),
        "{apps}"
    );

    // The four steps.
    let registered = northbound
        .invoke(
            "etsi-qkd-sdn-connectivity:app-registration",
            Some(&json!({"server_app_id": "sae-3b", "client_app_id": ["sae-1b"],
                "local_qkdn_id": QKD[2], "remote_qkdn_id": QKD[0], "app_qos": {"min_bandwidth": 2000}})),
        )
        .await
        .unwrap()
        .unwrap();
    let app_id = registered["app_id"].as_str().unwrap().to_owned();
    let svc = northbound
        .invoke(
            "etsi-qkd-sdn-connectivity:create-service-link-id-for-app",
            Some(&json!({"app_id": app_id})),
        )
        .await
        .unwrap()
        .unwrap();
    let svc_id = svc["svc_link_id"].as_str().unwrap().to_owned();
    let candidates = northbound
        .invoke(
            "etsi-qkd-sdn-connectivity:create-candidate-paths-per-service-link-for-app",
            Some(&json!({"app_id": app_id, "svc_link_id": svc_id})),
        )
        .await
        .unwrap()
        .unwrap();
    let paths = candidates["candidate_path"].as_array().unwrap().clone();
    assert_eq!(paths.len(), 1, "one loop-free path in a line: {candidates}");
    assert_eq!(
        paths[0]["phys_link_id"],
        json!(["00000002-0003-0000-0000-000000000000", "00000001-0002-0000-0000-000000000000"])
    );
    let wrong = northbound
        .invoke(
            "etsi-qkd-sdn-connectivity:deploy-a-candidate-path-per-service-link-for-app",
            Some(&json!({"app_id": app_id, "path_id": 5})),
        )
        .await
        .unwrap_err();
    assert_eq!(wrong.status(), Some(404), "{wrong}");
    assert!(wrong.to_string().contains("no candidate path 5"), "{wrong}");
    let deployed = northbound
        .invoke(
            "etsi-qkd-sdn-connectivity:deploy-a-candidate-path-per-service-link-for-app",
            Some(&json!({"app_id": app_id, "svc_link_id": svc_id, "path_id": 1})),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deployed["phys_link_id"], paths[0]["phys_link_id"]);
    // The service link is on every node of the path, with the id the controller gave.
    let at_2 = RestconfClient::new(&urls[1])
        .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={svc_id}"), &[])
        .await
        .unwrap();
    assert_eq!(at_2["etsi-qkd-sdn-node:qkd_link"][0]["virt_prev_hop"], json!(QKD[2]));
    let apps = eventually(
        &northbound,
        &format!("/etsi-qkd-sdn-connectivity:qkd_applications/qkd_app={app_id}"),
        |a| a["etsi-qkd-sdn-connectivity:qkd_app"][0]["app_status"] == "DEPLOYED",
    )
    .await;
    let app = &apps["etsi-qkd-sdn-connectivity:qkd_app"][0];
    assert_eq!(app["app_status"], "DEPLOYED", "{apps}");
    assert_eq!(app["deployed_path"]["path_id"], 1);
    // Bad input gets RESTCONF errors.
    let bad = northbound
        .invoke(
            "etsi-qkd-sdn-connectivity:app-registration",
            Some(&json!({"client_app_id": ["x"]})),
        )
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400), "{bad}");
}

/// GET `path` until `what` holds (the 018 tree trails the controller by up to its sync period).
async fn eventually(northbound: &RestconfClient, path: &str, what: impl Fn(&Json) -> bool) -> Json {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let doc = northbound.get(path, &[]).await.map_err(|e| e.to_string());
        if let Ok(doc) = &doc
            && what(doc)
        {
            return doc.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {doc:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
