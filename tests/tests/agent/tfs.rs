//! TeraFlowSDN interoperability: the three-node `qkd_end2end` fixtures load into three agents,
//! TeraFlowSDN-style writes (its QKD driver's request shapes: `application/json`, trailing
//! slashes, unprefixed bodies that name the target container, `null` for unset leaves, string
//! interface ids) build the direct links, the virtual link QKD1-QKD3 through QKD2 and the
//! applications, and everything reads back, valid, the way that driver reads it.

use std::path::PathBuf;

use qkdn_yang::YangContext;
use qkdn_yang::ly::{Content, validate_data};
use serde_json::{Value as Json, json};

use crate::harness::*;

const QKD: [&str; 3] = [
    "00000001-0000-0000-0000-000000000000",
    "00000002-0000-0000-0000-000000000000",
    "00000003-0000-0000-0000-000000000000",
];
const DIRECT_12: &str = "00000001-0002-0000-0000-000000000000";
const DIRECT_23: &str = "00000002-0003-0000-0000-000000000000";
/// The virtual link the fixtures' applications name as their backing link.
const VIRTUAL_13: &str = "00000003-0002-0000-0000-000000000000";

fn fixtures() -> PathBuf {
    repo().parent().unwrap().join("shared/reference/tfs-data/qkd_end2end")
}

fn fixture(name: &str) -> Json {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

/// The link as TeraFlowSDN's driver builds it (`create_connectivity_link`).
pub(crate) fn tfs_link(
    id: &str,
    src: (&str, &str),
    dst: (&str, &str),
    prev: Option<&str>,
    next: Option<Vec<&str>>,
) -> Json {
    let mut link = json!({
        "qkdl_id": id,
        "qkdl_type": if prev.is_some() || next.is_some() { "etsi-qkd-node-types:VIRT" } else { "etsi-qkd-node-types:PHYS" },
        "qkdl_local": {"qkdn_id": src.0, "qkdi_id": src.1},
        "qkdl_remote": {"qkdn_id": dst.0, "qkdi_id": dst.1},
    });
    if prev.is_some() || next.is_some() {
        link["virt_prev_hop"] = json!(prev);
        link["virt_next_hop"] = json!(next.unwrap_or_default());
        link["virt_bandwidth"] = Json::Null;
    }
    json!({"qkd_links": {"qkd_link": [link]}})
}

/// A 015 application from a TeraFlowSDN app request (`tfs-05`, `tfs-06`); `app_status` is
/// state and is left out.
fn tfs_app(request: &Json, app_id: &str) -> Json {
    let app = &request["app"];
    json!({"qkd_applications": {"qkd_app": [{
        "app_id": app_id,
        "server_app_id": app["server_app_id"],
        "client_app_id": app["client_app_id"],
        "local_qkdn_id": app["local_qkdn_id"],
        "backing_qkdl_id": app["backing_qkdl_id"],
        "app_statistics": {"statistics": []},
        "app_qos": {},
    }]}})
}

pub(crate) async fn tfs_post(
    http: &reqwest::Client,
    agent: &AgentProcess,
    container: &str,
    body: &Json,
) {
    let url = format!(
        "http://127.0.0.1:{}/restconf/data/etsi-qkd-sdn-node:qkd_node/{container}/",
        agent.restconf
    );
    let response = http.post(&url).json(body).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "POST {url} {body}: {status} {text}");
}

async fn node_of(http: &reqwest::Client, agent: &AgentProcess) -> Json {
    let url =
        format!("http://127.0.0.1:{}/restconf/data/etsi-qkd-sdn-node:qkd_node", agent.restconf);
    http.get(url).send().await.unwrap().json().await.unwrap()
}

fn ids(node: &Json, container: &str, list: &str, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = node[container][list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e[key].to_string().trim_matches('"').to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teraflow_fixtures_load_into_three_agents_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let agents: Vec<AgentProcess> = (0..3)
        .map(|i| {
            let body = format!(
                "startup_data = \"{}\"\n[node]\nid = \"{}\"\n",
                fixtures().join(format!("qkd-node-0{}.json", i + 1)).display(),
                QKD[i]
            );
            // QKD2 speaks to clients that expect unprefixed top-level members.
            let restconf_extra = if i == 1 { "compat_unprefixed = true" } else { "" };
            start(&Spec { dir: dir.path(), name: &format!("qkd{}", i + 1), body, restconf_extra })
        })
        .collect();
    let http = http_client();

    // Onboarding, as TeraFlowSDN's QKD driver reads a device: the node (`Connect`, then
    // `fetch_node` with a trailing slash, reading `qkdn_id` at the top level), and the
    // containers of interfaces, links and applications, empty on these nodes: each is a 200.
    let qkd2 = |path: &str| {
        format!(
            "http://127.0.0.1:{}/restconf/data/etsi-qkd-sdn-node:qkd_node{path}",
            agents[1].restconf
        )
    };
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(&url).header("accept", "*/*").send().await.unwrap();
            let status = response.status();
            (status.as_u16(), response.json::<Json>().await.unwrap_or(Json::Null), url)
        }
    };
    let (status, connect, _) = get(qkd2("")).await;
    assert_eq!((status, &connect["qkd_node"]["qkdn_id"]), (200, &json!(QKD[1])), "{connect}");
    let (status, node, _) = get(qkd2("/")).await;
    assert_eq!((status, &node["qkdn_id"]), (200, &json!(QKD[1])), "fetch_node: {node}");
    for (container, list) in [("qkd_links", "qkd_link"), ("qkd_applications", "qkd_app")] {
        let (status, body, url) = get(qkd2(&format!("/{container}/"))).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(body[container].is_object() && body[container].get(list).is_none(), "{body}");
    }
    let (status, body, url) = get(format!(
        "http://127.0.0.1:{}/restconf/data/etsi-qkd-sdn-node:qkd_node/qkd_applications/",
        agents[0].restconf
    ))
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"etsi-qkd-sdn-node:qkd_applications": {}})),
        "{url}: strict without the switch"
    );

    // Direct links, each written at both ends as TeraFlowSDN's service handler does.
    let (q1, q2, q3) = (QKD[0], QKD[1], QKD[2]);
    tfs_post(
        &http,
        &agents[0],
        "qkd_links",
        &tfs_link(DIRECT_12, (q1, "102"), (q2, "201"), None, None),
    )
    .await;
    tfs_post(
        &http,
        &agents[1],
        "qkd_links",
        &tfs_link(DIRECT_12, (q2, "201"), (q1, "102"), None, None),
    )
    .await;
    tfs_post(
        &http,
        &agents[1],
        "qkd_links",
        &tfs_link(DIRECT_23, (q2, "203"), (q3, "302"), None, None),
    )
    .await;
    tfs_post(
        &http,
        &agents[2],
        "qkd_links",
        &tfs_link(DIRECT_23, (q3, "302"), (q2, "203"), None, None),
    )
    .await;
    // The virtual link QKD1-QKD3 relayed by QKD2.
    tfs_post(
        &http,
        &agents[0],
        "qkd_links",
        &tfs_link(VIRTUAL_13, (q1, "102"), (q3, "302"), None, Some(vec![q2])),
    )
    .await;
    tfs_post(
        &http,
        &agents[1],
        "qkd_links",
        &tfs_link(VIRTUAL_13, (q2, "203"), (q3, "302"), Some(q1), Some(vec![q3])),
    )
    .await;
    tfs_post(
        &http,
        &agents[2],
        "qkd_links",
        &tfs_link(VIRTUAL_13, (q3, "302"), (q1, "102"), Some(q2), None),
    )
    .await;
    // The applications at both ends.
    let app_1 = "00000001-0001-0000-0000-000000000001";
    let app_3 = "00000003-0001-0000-0000-000000000001";
    tfs_post(
        &http,
        &agents[0],
        "qkd_applications",
        &tfs_app(&fixture("tfs-05-app-1-qkd1-qkd3.json"), app_1),
    )
    .await;
    tfs_post(
        &http,
        &agents[2],
        "qkd_applications",
        &tfs_app(&fixture("tfs-06-app-1-qkd3-qkd1.json"), app_3),
    )
    .await;

    // A virtual link whose next hop is not a neighbour is refused, with the reason.
    let url = format!(
        "http://127.0.0.1:{}/restconf/data/etsi-qkd-sdn-node:qkd_node/qkd_links/",
        agents[0].restconf
    );
    let stray = tfs_link(
        "00000009-0000-0000-0000-000000000000",
        (q1, "102"),
        (q3, "302"),
        None,
        Some(vec![q3]),
    );
    let refused = http.post(&url).json(&stray).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(text.contains("is not a neighbour"), "{text}");

    let ctx = YangContext::qkdn().unwrap();
    let expected_links = [
        vec![DIRECT_12, VIRTUAL_13],
        vec![DIRECT_12, DIRECT_23, VIRTUAL_13],
        vec![DIRECT_23, VIRTUAL_13],
    ];
    let expected_apps = [vec![app_1], vec![], vec![app_3]];
    for (i, agent) in agents.iter().enumerate() {
        let doc = node_of(&http, agent).await;
        // With the switch on, the top-level member is unprefixed, as TeraFlowSDN reads it
        // (`r.json()['qkd_node']`); without, strict RFC 7951.
        let (node, strict) = if i == 1 {
            assert!(doc.get("etsi-qkd-sdn-node:qkd_node").is_none(), "{doc}");
            (doc["qkd_node"].clone(), json!({"etsi-qkd-sdn-node:qkd_node": doc["qkd_node"]}))
        } else {
            assert!(doc.get("qkd_node").is_none(), "{doc}");
            (doc["etsi-qkd-sdn-node:qkd_node"].clone(), doc.clone())
        };
        validate_data(&ctx, &strict.to_string(), Content::All)
            .unwrap_or_else(|e| panic!("QKD{}: {e:?}\n{strict}", i + 1));
        assert_eq!(node["qkdn_id"], QKD[i]);
        // Interfaces and attachment points come from the fixture.
        let startup =
            &fixture(&format!("qkd-node-0{}.json", i + 1))["etsi-qkd-sdn-node"]["qkd_node"];
        assert_eq!(
            ids(&node, "qkd_interfaces", "qkd_interface", "qkdi_id"),
            ids(startup, "qkd_interfaces", "qkd_interface", "qkdi_id")
        );
        for iface in startup["qkd_interfaces"]["qkd_interface"].as_array().unwrap() {
            let Some(device) = iface["qkdi_att_point"]["device"].as_str() else { continue };
            let id: u64 = iface["qkdi_id"].as_str().unwrap().parse().unwrap();
            let served = node["qkd_interfaces"]["qkd_interface"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["qkdi_id"] == id)
                .unwrap();
            assert_eq!(served["qkdi_att_point"]["device"], device);
        }
        let mut links: Vec<String> = expected_links[i].iter().map(|s| s.to_string()).collect();
        links.sort();
        assert_eq!(ids(&node, "qkd_links", "qkd_link", "qkdl_id"), links, "QKD{}", i + 1);
        let apps: Vec<String> = expected_apps[i].iter().map(|s| s.to_string()).collect();
        assert_eq!(ids(&node, "qkd_applications", "qkd_app", "app_id"), apps, "QKD{}", i + 1);
    }

    // The values TeraFlowSDN wrote are there, normalised: interface ids as numbers, the virtual
    // link's hops, the application's fields.
    let node1 = node_of(&http, &agents[0]).await["etsi-qkd-sdn-node:qkd_node"].clone();
    let link = |node: &Json, id: &str| {
        node["qkd_links"]["qkd_link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["qkdl_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(link(&node1, DIRECT_12)["qkdl_remote"], json!({"qkdn_id": q2, "qkdi_id": 201}));
    let virt = link(&node1, VIRTUAL_13);
    assert_eq!(virt["virt_next_hop"], json!([q2]));
    assert!(virt.get("virt_prev_hop").is_none(), "null means not set: {virt}");
    let node2 = node_of(&http, &agents[1]).await["qkd_node"].clone();
    assert_eq!(link(&node2, VIRTUAL_13)["virt_prev_hop"], q1);
    let app = &node1["qkd_applications"]["qkd_app"][0];
    assert_eq!(app["server_app_id"], "1");
    assert_eq!(app["backing_qkdl_id"], json!([VIRTUAL_13]));
    assert_eq!(app["local_qkdn_id"], q1);
    // The fixture's interfaces have no QKD device here, so the application has no keys yet.
    assert_eq!(app["app_status"], "etsi-qkd-node-types:DISCONNECTED");

    // DELETE of the whole application list is refused (write one entry at a time) and
    // deletes nothing.
    let url = format!(
        "http://127.0.0.1:{}/restconf/data/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app",
        agents[0].restconf
    );
    let refused = http.delete(&url).send().await.unwrap();
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "GET, HEAD, OPTIONS");
    let node1 = node_of(&http, &agents[0]).await["etsi-qkd-sdn-node:qkd_node"].clone();
    assert_eq!(ids(&node1, "qkd_applications", "qkd_app", "app_id"), vec![app_1.to_owned()]);
}
