//! An end-to-end key service across two domains: five agents with simulated devices and KMSs,
//! a1 - a2 - g under controller "one" and g - b1 - b2 under controller "two" (the gateway g
//! registers with one and is a static agent of two), and an orchestrator joining them. A
//! service from an SAE at a1 to an SAE at b2 is cut into the two domains' segments, each
//! controller writes its part of one virtual link, and the SAEs get identical keys relayed end
//! to end through g. A domain controller that dies degrades the service until it returns; the
//! orchestrator keeps its services across a restart; bad requests change nothing; deleting the
//! service removes its entries.

use std::time::Duration;

use qkdn_tests::network::{ControllerPorts, TestNetwork};
use qkdn_tests::process::{Process, binary};
use qkdn_tests::sae::Sae;
use serde_json::{Value as Json, json};

async fn call(api: u16, method: reqwest::Method, path: &str, body: Option<&Json>) -> (u16, Json) {
    let mut r = reqwest::Client::new().request(method, format!("http://127.0.0.1:{api}{path}"));
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b.to_string());
    }
    let response = r.send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Json::Null))
}

async fn wait_status(api: u16, path: &str, status: &str) -> Json {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = call(api, reqwest::Method::GET, path, None).await;
        if body["status"] == status {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "not {status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saes_in_two_domains_get_identical_keys_through_the_gateway() {
    let dir = qkdn_tests::process::test_dir();
    let mut net = TestNetwork::new(
        dir.path(),
        &["a1", "a2", "a3", "g", "b1", "b2"],
        &[("a1", "a2"), ("a2", "g"), ("a1", "a3"), ("a3", "g"), ("g", "b1"), ("b1", "b2")],
    );
    // The gateway is written by both domains' controllers.
    net.agent_domains
        .insert("g".into(), vec![qkdn_tests::network::MAIN_DOMAIN.into(), "two".into()]);
    net.start_controller("");
    for a in ["a1", "a2", "a3", "g"] {
        net.start_agent(a);
    }
    // Domain two's controller reads the gateway as a static agent, and b1 and b2 register with
    // it (each picks its ports itself, so they start in that order).
    let statics = format!(
        "[[static_agents]]\nrestconf_url = \"https://127.0.0.1:{}\"\n",
        net.nodes["g"].restconf
    );
    let mut controller_two = net.launch_controller("two", &statics);
    let two = ControllerPorts::of(&controller_two);
    for b in ["b1", "b2"] {
        net.agent_controller.insert(b.to_owned(), two.api);
        net.agent_domains.insert(b.to_owned(), vec!["two".into()]);
        net.start_agent(b);
    }

    let mut config = format!(
        "data_dir = \"{}\"\ninsecure_allow_unauthenticated = true\nmanagement_listen = \"127.0.0.1:0\"\nloss_timeout = \"3s\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().join("orchestrator-data").display()
    );
    let (cert, key) = net.pki.orchestrator("orchestrator");
    for (name, port) in [("one", net.controller_ports.api), ("two", two.api)] {
        config.push_str(&format!(
            "\n[[domains]]\nname = \"{name}\"\nurl = \"https://localhost:{port}\"\ntls = {{ cert = \"{}\", key = \"{}\", ca = \"{}\" }}\n",
            cert.display(),
            key.display(),
            net.pki.ca().display()
        ));
    }
    let file = dir.path().join("orchestrator.toml");
    std::fs::write(&file, config).unwrap();
    let mut orchestrator = Process::start_service(
        &binary("qkdn-orchestrator"),
        &["--config".into(), file.display().to_string()],
        &dir.path().join("orchestrator.log"),
        "orchestrator started",
    );
    let api = orchestrator.port("api");
    // Both domains' links up with key rates, g the gateway.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (_, n) = call(api, reqwest::Method::GET, "/api/v1/network", None).await;
        let ok = n["links"].as_array().is_some_and(|l| {
            l.len() == 6 && l.iter().all(|x| x["up"] == true && x["skr_bps"].as_u64() > Some(0))
        }) && n["gateways"] == json!([net.nodes["g"].id]);
        if ok {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let request = json!({"service_id": "5e0f0000-0000-4000-8000-0000000000ab",
        "server": {"sae_id": "sae-x", "node": net.nodes["a1"].id},
        "client": {"sae_id": "sae-y", "node": net.nodes["b2"].id}, "qos": {"rate_bps": 2000}});
    let (status, service) =
        call(api, reqwest::Method::POST, "/api/v1/services", Some(&request)).await;
    assert_eq!(status, 201, "{service}");
    let parts = service["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{service}");
    assert_eq!((&parts[0]["domain"], &parts[1]["domain"]), (&json!("one"), &json!("two")));
    // Through a2 or a3 (equally good), whichever the key-aware costs prefer.
    let middle = if parts[0]["nodes"][1] == json!(net.nodes["a2"].id) { "a2" } else { "a3" };
    let other = if middle == "a2" { "a3" } else { "a2" };
    assert_eq!(
        parts[0]["nodes"],
        json!([net.nodes["a1"].id, net.nodes[middle].id, net.nodes["g"].id])
    );
    assert_eq!(parts[0]["downstream"], json!(net.nodes["b1"].id));
    assert_eq!(parts[1]["upstream"], json!(net.nodes["g"].id));
    let (status, again) =
        call(api, reqwest::Method::POST, "/api/v1/services", Some(&request)).await;
    assert_eq!((status, &again["svc_link_id"]), (200, &service["svc_link_id"]), "idempotent");

    // The gateway holds one virtual link joining the domains.
    let svc = service["svc_link_id"].as_str().unwrap();
    let at_g = net
        .restconf("g")
        .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={svc}"), &[])
        .await
        .unwrap();
    let l = &at_g["etsi-qkd-sdn-node:qkd_link"][0];
    assert_eq!(
        (&l["virt_prev_hop"], &l["virt_next_hop"]),
        (&json!(net.nodes[middle].id), &json!([net.nodes["b1"].id]))
    );
    let sae_x = Sae::new(&net.pki, "sae-x", net.nodes["a1"].kms);
    let sae_y = Sae::new(&net.pki, "sae-y", net.nodes["b2"].kms);
    let (sent, received) = sae_x.exchange(&sae_y, "sae-x", "sae-y", 3, 40).await;
    assert_eq!(sent, received, "keys relayed end to end across the domains");

    let service_path = "/api/v1/services/5e0f0000-0000-4000-8000-0000000000ab";
    assert_eq!(call(api, reqwest::Method::GET, service_path, None).await.1["status"], "active");

    // A trusted node of domain one dies: its controller repairs the segment through the other
    // node (the ends, a1 and the gateway, stay), the orchestrator hears of it, keys flow again.
    net.agents.get_mut(middle).unwrap().kill_hard();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let at_g = net
            .restconf("g")
            .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={svc}"), &[])
            .await
            .unwrap();
        if at_g["etsi-qkd-sdn-node:qkd_link"][0]["virt_prev_hop"] == json!(net.nodes[other].id) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "segment not repaired: {at_g}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (sent, received) = sae_x.exchange(&sae_y, "sae-x", "sae-y", 2, 40).await;
    assert_eq!(sent, received, "keys relayed over the repaired segment");
    wait_status(api, service_path, "active").await;
    let (_, events) = call(api, reqwest::Method::GET, "/api/v1/events", None).await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["domain"] == "one"
                && e["message"].as_str().is_some_and(|m| m.contains("moved"))),
        "the repair reported upward: {events}"
    );

    // Domain two's controller dies: the service is degraded, and active again when it returns.
    controller_two.kill_hard();
    let degraded = wait_status(api, service_path, "degraded").await;
    assert_eq!(degraded["reasons"], json!(["domain two is down"]), "{degraded}");
    controller_two.restart();
    wait_status(api, service_path, "active").await;

    // The orchestrator is killed and restarted: the service is still there, and active.
    orchestrator.restart();
    let (status, kept) = call(api, reqwest::Method::GET, service_path, None).await;
    assert_eq!((status, &kept["svc_link_id"]), (200, &service["svc_link_id"]), "{kept}");
    wait_status(api, service_path, "active").await;

    // Bad requests.
    let (status, body) = call(
        api,
        reqwest::Method::POST,
        "/api/v1/services",
        Some(&json!({"server": {"sae_id": "x"}, "client": 3, "qos": {}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert!(
        pointers.contains(&"/server/node")
            && pointers.contains(&"/client")
            && pointers.contains(&"/qos/rate_bps"),
        "{body}"
    );
    let unknown = json!({"server": {"sae_id": "x", "node": net.nodes["a1"].id}, "client": {"sae_id": "y", "node": "99999999-0000-4000-8000-000000000000"}, "qos": {"rate_bps": 10}});
    assert_eq!(call(api, reqwest::Method::POST, "/api/v1/services", Some(&unknown)).await.0, 404);
    let (_, list) = call(api, reqwest::Method::GET, "/api/v1/services", None).await;
    assert_eq!(list["services"].as_array().unwrap().len(), 1);

    // b2 is in domain two's view again once it has registered with the restarted controller
    // two (a heartbeat after that restart); the orchestrator's restart may come before.
    let b2 = net.nodes["b2"].id.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, network) = call(api, reqwest::Method::GET, "/api/v1/network", None).await;
        if network["nodes"].as_array().is_some_and(|n| n.iter().any(|x| x["id"] == b2)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "b2 not in the network: {network}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let infeasible = json!({"server": {"sae_id": "x", "node": net.nodes["a1"].id}, "client": {"sae_id": "y", "node": net.nodes["b2"].id}, "qos": {"rate_bps": 4000000000u64}});
    let (status, body) =
        call(api, reqwest::Method::POST, "/api/v1/services", Some(&infeasible)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("the best offers"), "{body}");

    // Deleting the service removes its entries in both domains.
    let (status, _) = call(
        api,
        reqwest::Method::DELETE,
        "/api/v1/services/5e0f0000-0000-4000-8000-0000000000ab",
        None,
    )
    .await;
    assert_eq!(status, 204);
    for node in ["a1", "g", "b2"] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while net
            .restconf(node)
            .get(&format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={svc}"), &[])
            .await
            .is_ok()
        {
            assert!(tokio::time::Instant::now() < deadline, "{node} still holds {svc}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A domain that fails its part: b2's agent dies, and before its controller notices, a
    // service to b2 is asked for; domain two cannot write at b2, domain one's part is removed
    // again, and nothing of the service is kept anywhere.
    net.agents.get_mut("b2").unwrap().kill_hard();
    let doomed = json!({"service_id": "5e0f0000-0000-4000-8000-0000000000dd",
        "server": {"sae_id": "sae-x2", "node": net.nodes["a1"].id},
        "client": {"sae_id": "sae-y2", "node": net.nodes["b2"].id}, "qos": {"rate_bps": 1000}});
    let (status, body) = call(api, reqwest::Method::POST, "/api/v1/services", Some(&doomed)).await;
    // 502 when the write to b2 fails; 409 should controller two already know b2 is gone.
    assert!(status == 502 || status == 409, "{status} {body}");
    assert!(body["detail"].as_str().unwrap().contains("domain two refused its segment"), "{body}");
    let (status, _) = call(
        api,
        reqwest::Method::GET,
        "/api/v1/services/5e0f0000-0000-4000-8000-0000000000dd",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let apps = net.restconf("a1").get("/etsi-qkd-sdn-node:qkd_node/qkd_applications", &[]).await;
    let held = apps.map(|a| a.to_string()).unwrap_or_default();
    assert!(!held.contains("sae-x2"), "domain one kept its part: {held}");
}
