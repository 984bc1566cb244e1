//! RESTCONF writes of links and applications through the real server: schema and meaning
//! checks, refusals that change nothing, persistence across `kill -9`.

use std::time::{Duration, Instant};

use qkdn_yang::restconf::RestconfClient;
use serde_json::{Value as Json, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restconf_writes_are_checked_for_meaning_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&Spec {
        dir: dir.path(),
        name: "a",
        body: node_ab(NODE_A, 101, NODE_B, 201, "", ""),
        restconf_extra: "",
    });
    let client = restconf(&agent);
    let virt = json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": VIRT, "qkdl_type": "etsi-qkd-node-types:VIRT",
        "qkdl_remote": {"qkdn_id": "00000003-0000-0000-0000-000000000000"}, "virt_next_hop": [NODE_B], "virt_bandwidth": 1000}]});
    assert!(
        client.put(&format!("{NODE_PATH}/qkd_links/qkd_link={VIRT}"), &virt).await.unwrap().created
    );
    let before = client.get(NODE_PATH, &[("content", "config")]).await.unwrap();
    // Meaning checks: each refusal names the reason and changes nothing.
    let refusals = [
        (
            format!("{NODE_PATH}/qkd_links/qkd_link=d0000000-0000-4000-8000-000000000001"),
            json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "d0000000-0000-4000-8000-000000000001", "qkdl_type": "etsi-qkd-node-types:VIRT",
                "qkdl_remote": {"qkdn_id": "00000003-0000-0000-0000-000000000000"}, "virt_next_hop": ["00000003-0000-0000-0000-000000000000"]}]}),
            "not a neighbour",
        ),
        (
            format!("{NODE_PATH}/qkd_links/qkd_link=d0000000-0000-4000-8000-000000000002"),
            json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "d0000000-0000-4000-8000-000000000002", "qkdl_type": "etsi-qkd-node-types:PHYS",
                "qkdl_local": {"qkdi_id": 999}, "qkdl_remote": {"qkdn_id": NODE_B, "qkdi_id": 7}}]}),
            "no local interface 999",
        ),
        (
            format!("{NODE_PATH}/qkd_applications/qkd_app={APP}"),
            json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": APP, "backing_qkdl_id": ["eeee0000-0000-4000-8000-000000000001"]}]}),
            "no link eeee0000",
        ),
        (
            format!("{NODE_PATH}/qkd_links/qkd_link={VIRT}"),
            json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": VIRT, "qkdl_type": "etsi-qkd-node-types:VIRT",
                "qkdl_remote": {"qkdn_id": "00000003-0000-0000-0000-000000000000"}, "virt_next_hop": [NODE_B], "virt_bandwidth": 900000000}]}),
            "does not fit",
        ),
        (
            format!("{NODE_PATH}/qkd_interfaces/qkd_interface=101"),
            json!({"etsi-qkd-sdn-node:qkd_interface": [{"qkdi_id": 101, "qkdi_model": "other"}]}),
            "interfaces are defined by the agent's configuration",
        ),
        (
            format!("{NODE_PATH}/qkd_links/qkd_link={LINK_AB}"),
            json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": LINK_AB, "qkdl_type": "etsi-qkd-node-types:PHYS", "phys_wavelength": "30"}]}),
            "defined by the agent's configuration",
        ),
    ];
    for (path, body, reason) in refusals {
        let err = client.put(&path, &body).await.unwrap_err();
        let message = err.first_error().and_then(|e| e.error_message.clone()).unwrap_or_default();
        assert!(message.contains(reason), "{path}: expected \"{reason}\", got {err}");
        assert!(matches!(err.status(), Some(400 | 409)));
    }
    assert_eq!(
        client.get(NODE_PATH, &[("content", "config")]).await.unwrap(),
        before,
        "refusals changed nothing"
    );
    // POST creates, PATCH changes: a second virtual link, then its bandwidth, within what the
    // physical hop can carry and beyond it.
    let second = "c0c00000-0000-4000-8000-00000000000a";
    let body = json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": second, "qkdl_type": "etsi-qkd-node-types:VIRT",
        "qkdl_remote": {"qkdn_id": "00000003-0000-0000-0000-000000000000"}, "virt_next_hop": [NODE_B], "virt_bandwidth": 500}]});
    assert!(client.post(&format!("{NODE_PATH}/qkd_links"), &body).await.unwrap().created);
    let err = client.post(&format!("{NODE_PATH}/qkd_links"), &body).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let link_path = format!("{NODE_PATH}/qkd_links/qkd_link={second}");
    let patch = |bandwidth: u64| json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": second, "virt_bandwidth": bandwidth}]});
    let err = client.patch(&link_path, &patch(900_000_000)).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("does not fit"), "{err}");
    client.patch(&link_path, &patch(700)).await.unwrap();
    let read = client.get(&format!("{link_path}/virt_bandwidth"), &[]).await.unwrap();
    assert_eq!(read["etsi-qkd-sdn-node:virt_bandwidth"], 700);
    client.delete(&link_path).await.unwrap();
    assert_eq!(client.get(&link_path, &[]).await.unwrap_err().status(), Some(404));

    let app = json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": APP, "app_type": "etsi-qkd-node-types:CLIENT",
        "server_app_id": "sae-a", "client_app_id": ["sae-c"], "backing_qkdl_id": [VIRT], "app_qos": {"max_bandwidth": 500}}]});
    assert!(
        client
            .put(&format!("{NODE_PATH}/qkd_applications/qkd_app={APP}"), &app)
            .await
            .unwrap()
            .created
    );
    let err = client.delete(&format!("{NODE_PATH}/qkd_links/qkd_link={VIRT}")).await.unwrap_err();
    assert!(err.to_string().contains("backs application"), "{err}");
    let created = creation_time(&client).await;
    assert!(created.is_string());

    // kill -9 right after acknowledged writes: they are there after the restart.
    let config_before = client.get(NODE_PATH, &[("content", "config")]).await.unwrap();
    let mut agent = agent;
    agent.process.kill_hard();
    let agent = relaunch(agent);
    let client = restconf(&agent);
    let after = client.get(NODE_PATH, &[("content", "config")]).await.unwrap();
    let links = |doc: &Json| -> Vec<String> {
        let mut ids: Vec<String> = doc["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]["qkd_link"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["qkdl_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(links(&after), links(&config_before));
    assert_eq!(
        after["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"],
        config_before["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"]
    );
    let created_after = creation_time(&client).await;
    assert_eq!(created, created_after, "creation_time survives restarts");
}

/// The application's `creation_time`: operational state, written by the agent right after the
/// commit that created the application, so it may take a moment to appear.
async fn creation_time(client: &RestconfClient) -> Json {
    let path = format!("{NODE_PATH}/qkd_applications/qkd_app={APP}/creation_time");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.get(&path, &[]).await {
            Ok(doc) => return doc["etsi-qkd-sdn-node:creation_time"].clone(),
            Err(e) if Instant::now() > deadline => panic!("no creation_time: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
