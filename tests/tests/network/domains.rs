//! Two domains under one orchestrator: three example servers loaded with the TeraFlowSDN
//! `qkd_end2end` fixtures, QKD1 and QKD2 in domain "one", QKD2 and QKD3 in domain "two" (QKD2,
//! known to both controllers, is the gateway); each domain's controller exports it over ETSI
//! 018, and the orchestrator joins them: one network over REST and over RESTCONF in the same
//! 018 modules. A domain whose controller dies is marked down with its links, and comes back.

use std::time::Duration;

use qkdn_tests::network::TestNetwork;
use qkdn_tests::process::{Process, binary};
use qkdn_yang::restconf::RestconfClient;
use serde_json::{Value as Json, json};

const QKD: [&str; 3] = [
    "00000001-0000-0000-0000-000000000000",
    "00000002-0000-0000-0000-000000000000",
    "00000003-0000-0000-0000-000000000000",
];
const LINK_12: &str = "00000001-0002-0000-0000-000000000000";
const LINK_23: &str = "00000002-0003-0000-0000-000000000000";

/// Writes link `id` between nodes `a` and `b` (1-based) at both ends.
async fn link(urls: &[String], id: &str, a: usize, b: usize) {
    for (x, y) in [(a, b), (b, a)] {
        let body = json!({"qkd_link": [{"qkdl_id": id, "qkdl_type": "etsi-qkd-node-types:PHYS",
            "qkdl_local": {"qkdn_id": QKD[x - 1], "qkdi_id": x * 100 + y},
            "qkdl_remote": {"qkdn_id": QKD[y - 1], "qkdi_id": y * 100 + x}}]});
        RestconfClient::new(&urls[x - 1])
            .post("/etsi-qkd-sdn-node:qkd_node/qkd_links", &body)
            .await
            .unwrap();
    }
}

async fn get(port: u16, path: &str) -> Json {
    let text =
        reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or(Json::Null)
}

async fn wait(port: u16, path: &str, what: impl Fn(&Json) -> bool) -> Json {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let doc = get(port, path).await;
        if what(&doc) {
            return doc;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {doc}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_joins_two_domains_at_their_gateway() {
    let dir = qkdn_tests::process::test_dir();
    let (_servers, urls) = qkdn_tests::fixtures::start_tfs_servers(dir.path());
    link(&urls, LINK_12, 1, 2).await;
    link(&urls, LINK_23, 2, 3).await;
    let mut domains = Vec::new();
    for (name, members) in [("one", [0, 1]), ("two", [1, 2])] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let mut net = TestNetwork::new(&sub, &[], &[]);
        let statics: String = members
            .iter()
            .map(|i| format!("[[static_agents]]\nrestconf_url = \"{}\"\n\n", urls[*i]))
            .collect();
        net.start_controller(&statics);
        domains.push((name, net));
    }
    // The orchestrator reaches each controller with a client certificate of that domain's CA.
    let mut config = format!(
        "data_dir = \"{}\"\ninsecure_allow_unauthenticated = true\nmanagement_listen = \"127.0.0.1:0\"\nloss_timeout = \"2s\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().join("orchestrator-data").display()
    );
    for (name, net) in &domains {
        let (cert, key) = net.pki.orchestrator("orchestrator");
        config.push_str(&format!(
            "\n[[domains]]\nname = \"{name}\"\nurl = \"{}\"\ntls = {{ cert = \"{}\", key = \"{}\", ca = \"{}\" }}\n",
            net.url(""),
            cert.display(),
            key.display(),
            net.pki.ca().display()
        ));
    }
    let config_file = dir.path().join("orchestrator.toml");
    std::fs::write(&config_file, config).unwrap();
    let orchestrator = Process::start_service(
        &binary("qkdn-orchestrator"),
        &["--config".into(), config_file.display().to_string()],
        &dir.path().join("orchestrator.log"),
        "orchestrator started",
    );
    let api = orchestrator.port("api");

    // One network: QKD2 is the gateway, each domain contributes its link.
    let network = wait(api, "/api/v1/network", |n| {
        // Key rates reach the 018 views within their refresh period (5 s).
        n["links"].as_array().is_some_and(|l| {
            l.len() == 2 && l.iter().all(|x| x["up"] == true && x["skr_bps"].as_u64() > Some(0))
        }) && n["nodes"].as_array().is_some_and(|x| x.len() == 3)
    })
    .await;
    assert_eq!(network["gateways"], json!([QKD[1]]), "{network}");
    let gateway = network["nodes"].as_array().unwrap().iter().find(|n| n["id"] == QKD[1]).unwrap();
    assert_eq!(gateway["domains"], json!(["one", "two"]));
    let domain_of = |id: &str| {
        network["links"].as_array().unwrap().iter().find(|l| l["id"] == id).unwrap()["domain"]
            .clone()
    };
    assert_eq!((domain_of(LINK_12), domain_of(LINK_23)), (json!("one"), json!("two")));

    // The same network over RESTCONF, in the ETSI 018 modules.
    let northbound = RestconfClient::new(&format!("http://127.0.0.1:{api}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let tree = northbound
            .get("/etsi-qkd-sdn-topology:qkd_network", &[])
            .await
            .map_err(|e| e.to_string());
        let counts = tree.as_ref().ok().map(|t| {
            let n = &t["etsi-qkd-sdn-topology:qkd_network"];
            (
                n["sdqkd_nodes"]["sdqkd_node"].as_array().map_or(0, Vec::len),
                n["qkd_links"]["qkd_phys_links"]["phys_link"].as_array().map_or(0, Vec::len),
            )
        });
        if counts == Some((3, 2)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{tree:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An end-to-end path from QKD1 to QKD3, cut at the gateway into the two domains' segments.
    let paths =
        get(api, &format!("/api/v1/paths?from={}&to={}&rate_bps=1000", QKD[0], QKD[2])).await;
    let c = &paths["candidates"][0];
    assert_eq!(c["gateways"], json!([QKD[1]]), "{paths}");
    assert_eq!(c["segments"][0]["domain"], "one");
    assert_eq!(c["segments"][1]["domain"], "two");
    assert_eq!(c["segments"][1]["links"], json!([LINK_23]));
    let bad =
        reqwest::get(format!("http://127.0.0.1:{api}/api/v1/paths?from=x&k=99")).await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let body: Json = serde_json::from_str(&bad.text().await.unwrap()).unwrap();
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["?from", "?to", "?k"], "{body}");

    // Domain two's controller dies: its link is down, QKD3 unreachable; it comes back.
    let (_, two) = &mut domains[1];
    two.controller.as_mut().unwrap().kill_hard();
    let network = wait(api, "/api/v1/network", |n| {
        n["links"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["id"] == LINK_23 && x["up"] == false))
    })
    .await;
    let qkd3 = network["nodes"].as_array().unwrap().iter().find(|n| n["id"] == QKD[2]).unwrap();
    assert_eq!(qkd3["reachable"], false);
    let status = get(api, "/api/v1/domains/two").await;
    assert_eq!(status["domain"]["up"], false, "{status}");
    two.controller.as_mut().unwrap().restart();
    wait(api, "/api/v1/network", |n| {
        n["links"].as_array().is_some_and(|l| l.iter().all(|x| x["up"] == true))
    })
    .await;
    let events = get(api, "/api/v1/events").await;
    let kinds: Vec<&str> =
        events["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"domain-down") && kinds.iter().filter(|k| **k == "domain-up").count() >= 3,
        "{kinds:?}"
    );
}
