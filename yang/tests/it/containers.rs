//! Which empty containers a read finds: a non-presence container exists whenever its parent
//! does (RFC 7950 §7.5.1), so a GET answers it empty rather than 404; containers with a `when`,
//! inside a case, with presence, or holding only state under `content=config` are not invented.

use qkdn_kit::server::ServeOptions;
use qkdn_yang::YangContext;
use qkdn_yang::modules::QKDN_MODULES;
use qkdn_yang::restconf::RestconfOptions;
use serde_json::{Value as Json, json};

use super::harness::{TestServer, repo_root};

fn context() -> YangContext {
    let path = repo_root().join("yang/tests/modules/qkdn-test-containers.yang");
    let text = std::fs::read_to_string(path).unwrap();
    YangContext::from_modules(QKDN_MODULES, &[&text]).unwrap()
}

async fn get(server: &TestServer, path: &str) -> (u16, Json) {
    let response = server.http().get(server.url(&format!("/restconf/data{path}"))).send().await;
    let response = response.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_non_presence_containers_read_empty_and_no_others_are_invented() {
    let server =
        TestServer::start_on(context(), RestconfOptions::default(), ServeOptions::default(), |b| b)
            .await;
    // Nothing configured at all: the top-level container and its plain child are there.
    assert_eq!(
        get(&server, "/qkdn-test-containers:box").await,
        (200, json!({"qkdn-test-containers:box": {}}))
    );
    assert_eq!(
        get(&server, "/qkdn-test-containers:box/plain").await,
        (200, json!({"qkdn-test-containers:plain": {}}))
    );
    for absent in ["conditional", "present", "circle", "plain/note", "kind"] {
        let (status, body) = get(&server, &format!("/qkdn-test-containers:box/{absent}")).await;
        assert_eq!(status, 404, "{absent}: {body}");
    }
    // A state-only container is there for content=all and nonconfig, not for config.
    assert_eq!(get(&server, "/qkdn-test-containers:box/readings").await.0, 200);
    assert_eq!(get(&server, "/qkdn-test-containers:box/readings?content=nonconfig").await.0, 200);
    assert_eq!(get(&server, "/qkdn-test-containers:box/readings?content=config").await.0, 404);
    // A merge into an empty non-presence container is a merge (it is there, as a read says);
    // once the when condition holds and data exists, the conditional container reads as written.
    let patch = server
        .http()
        .patch(server.url("/restconf/data/qkdn-test-containers:box/plain"))
        .header("content-type", "application/yang-data+json")
        .body(json!({"qkdn-test-containers:plain": {"note": "p"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 204);
    assert_eq!(
        get(&server, "/qkdn-test-containers:box/plain").await,
        (200, json!({"qkdn-test-containers:plain": {"note": "p"}}))
    );
    server
        .ds
        .merge_config(
            "/qkdn-test-containers:box",
            json!({"qkdn-test-containers:box": {"kind": "special", "conditional": {"note": "n"}}}),
        )
        .await
        .unwrap();
    assert_eq!(
        get(&server, "/qkdn-test-containers:box/conditional").await,
        (200, json!({"qkdn-test-containers:conditional": {"note": "n"}}))
    );
}
