//! Operations (RPCs) and event streams, with a test module that defines RPCs and a notification.

use std::time::Duration;

use qkdn_kit::server::{Edge, ServeOptions};
use qkdn_yang::modules::QKDN_MODULES;
use qkdn_yang::restconf::client::{Backoff, StreamEvent};
use qkdn_yang::restconf::{RestconfClient, RestconfOptions};
use qkdn_yang::{DataError, YangContext};
use serde_json::{Value as Json, json};

use super::harness::{TestServer, repo_root};

fn test_context() -> YangContext {
    let text =
        std::fs::read_to_string(repo_root().join("yang/tests/modules/qkdn-test-ops.yang")).unwrap();
    YangContext::from_modules(QKDN_MODULES, &[&text]).unwrap()
}

async fn ops_server(request_timeout: Duration) -> TestServer {
    let options = RestconfOptions { request_timeout, ..RestconfOptions::default() };
    TestServer::start_on(test_context(), options, ServeOptions::default(), |b| {
        b.stream("NETCONF", "test events")
            .operation("qkdn-test-ops:add", |input: Json| async move {
                let sum = input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0);
                Ok(Some(json!({"sum": sum})))
            })
            .operation("qkdn-test-ops:reset", |_input: Json| async move { Ok(None) })
            .operation("qkdn-test-ops:slow", |input: Json| async move {
                tokio::time::sleep(Duration::from_millis(input["millis"].as_u64().unwrap_or(0)))
                    .await;
                Ok(None)
            })
            .operation("qkdn-test-ops:broken", |_input: Json| async move {
                Ok(Some(json!({"sum": "many"})))
            })
    })
    .await
}

async fn post(server: &TestServer, name: &str, body: Option<Json>) -> (u16, Json) {
    let mut request = server.http().post(server.url(&format!("/restconf/operations/{name}")));
    if let Some(body) = body {
        request =
            request.header("content-type", "application/yang-data+json").body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Json::Null } else { serde_json::from_str(&text).unwrap() })
}

#[tokio::test]
async fn operations_are_listed_validated_and_invoked() {
    let server = ops_server(Duration::from_secs(5)).await;
    let list: Json = server.get_json("/restconf/operations").await;
    assert_eq!(
        list,
        json!({"ietf-restconf:operations": {"qkdn-test-ops:add": [null], "qkdn-test-ops:broken": [null],
            "qkdn-test-ops:reset": [null], "qkdn-test-ops:slow": [null]}})
    );
    let (status, body) = post(
        &server,
        "qkdn-test-ops:add",
        Some(json!({"qkdn-test-ops:input": {"a": 2, "b": "40"}})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"qkdn-test-ops:output": {"sum": 42}})));
    // Input is checked against the RPC's input before the handler runs.
    let (status, body) =
        post(&server, "qkdn-test-ops:add", Some(json!({"qkdn-test-ops:input": {"a": 2}}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["ietf-restconf:errors"]["error"][0]["error-message"]
            .as_str()
            .unwrap()
            .contains("Mandatory node \"b\"")
    );
    let (status, body) = post(
        &server,
        "qkdn-test-ops:add",
        Some(json!({"qkdn-test-ops:input": {"a": 2, "b": 1, "c": 3}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["ietf-restconf:errors"]["error"][0]["error-tag"], "unknown-element");
    let (status, body) =
        post(&server, "qkdn-test-ops:add", Some(json!({"qkdn-test-ops:output": {}}))).await;
    assert_eq!(status, 400, "{body}");
    // No input, no output: 204.
    assert_eq!(post(&server, "qkdn-test-ops:reset", None).await.0, 204);
    // Output is checked too: a handler that breaks the schema is a server error.
    let (status, body) = post(&server, "qkdn-test-ops:broken", None).await;
    assert_eq!(status, 500);
    assert!(
        body["ietf-restconf:errors"]["error"][0]["error-message"]
            .as_str()
            .unwrap()
            .contains("invalid output")
    );
    // Defined but not implemented, and not defined.
    assert_eq!(post(&server, "qkdn-test-ops:unimplemented", None).await.0, 501);
    assert_eq!(post(&server, "qkdn-test-ops:nothing", None).await.0, 404);
    // Only POST.
    let response = server
        .http()
        .get(server.url("/restconf/operations/qkdn-test-ops:add"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST, OPTIONS");
    // The client speaks the same protocol.
    let client = RestconfClient::new(&server.base);
    assert_eq!(
        client.invoke("qkdn-test-ops:add", Some(&json!({"a": 1, "b": 1}))).await.unwrap(),
        Some(json!({"sum": 2}))
    );
    assert_eq!(client.invoke("qkdn-test-ops:reset", None).await.unwrap(), None);
}

#[tokio::test]
async fn a_request_that_overruns_its_deadline_gets_503_with_a_body() {
    let server = ops_server(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (status, body) =
        post(&server, "qkdn-test-ops:slow", Some(json!({"qkdn-test-ops:input": {"millis": 5000}})))
            .await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        body["ietf-restconf:errors"]["error"][0]["error-message"]
            .as_str()
            .unwrap()
            .contains("did not complete")
    );
}

#[tokio::test]
async fn notifications_reach_subscribers_and_bad_ones_are_refused() {
    let server = ops_server(Duration::from_secs(5)).await;
    let publisher = server.server.publisher("NETCONF").unwrap();
    let client = RestconfClient::new(&server.base);
    let mut sub = client.subscribe("NETCONF", Backoff::default());
    assert_eq!(sub.next().await, Some(StreamEvent::Connected));
    // Wait for the server to count the subscriber before publishing.
    for _ in 0..100 {
        if publisher.subscribers() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(publisher.publish(json!({"qkdn-test-ops:tick": {"n": 1}})).unwrap(), 1);
    // Invalid notifications never leave the server.
    let err: DataError = publisher.publish(json!({"qkdn-test-ops:tick": {"n": -1}})).unwrap_err();
    assert!(err.message.contains("-1"), "{err:?}");
    assert!(publisher.publish(json!({"qkdn-test-ops:tock": {}})).is_err());
    // ETSI 015 notifications of the node model are validated the same way.
    publisher
        .publish(json!({"etsi-qkd-sdn-node:sdqkdn_link_down": {"qkd_link": {"qkdl_id": "11111111-0000-0000-0000-000000000000", "reason": "fibre cut"}}}))
        .unwrap();
    // Values go out in their canonical form, as the datastore prints them ("0.010" is 0.01).
    publisher
        .publish(json!({"etsi-qkd-sdn-node:sdqkdn_link_perf_update": {"qkd_link": {
            "qkdl_id": "11111111-0000-0000-0000-000000000000",
            "performance": {"skr": 10, "phys_perf": [
                {"perf_type": "etsi-qkd-node-types:QBER", "value": "0.010"},
                {"perf_type": "etsi-qkd-node-types:SNR", "value": "+14.20"}]}}}}))
        .unwrap();
    let Some(StreamEvent::Notification(first)) = sub.next().await else {
        panic!("no notification")
    };
    assert_eq!(first["qkdn-test-ops:tick"]["n"], 1);
    assert!(first["eventTime"].as_str().unwrap().ends_with('Z'));
    let Some(StreamEvent::Notification(second)) = sub.next().await else {
        panic!("no notification")
    };
    assert_eq!(second["etsi-qkd-sdn-node:sdqkdn_link_down"]["qkd_link"]["reason"], "fibre cut");
    let Some(StreamEvent::Notification(third)) = sub.next().await else {
        panic!("no notification")
    };
    let perf = &third["etsi-qkd-sdn-node:sdqkdn_link_perf_update"]["qkd_link"]["performance"];
    assert_eq!(perf["phys_perf"][0]["value"], "0.01", "{third}");
    assert_eq!(perf["phys_perf"][1]["value"], "14.2", "{third}");
}

#[tokio::test]
async fn stream_requests_are_checked() {
    let server = ops_server(Duration::from_secs(5)).await;
    let http = server.http();
    let status = |path: &'static str, accept: &'static str| {
        let (http, url) = (http.clone(), server.url(path));
        async move { http.get(url).header("accept", accept).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/restconf/streams/nope", "text/event-stream").await, 404);
    assert_eq!(
        status("/restconf/streams/NETCONF?start-time=2020-01-01T00:00:00Z", "text/event-stream")
            .await,
        400
    );
    assert_eq!(status("/restconf/streams/NETCONF?filter=/x", "text/event-stream").await, 400);
    assert_eq!(status("/restconf/streams/NETCONF", "application/yang-data+json").await, 406);
    let monitoring: Json =
        server.get_json("/restconf/data/ietf-restconf-monitoring:restconf-state/streams").await;
    let stream = &monitoring["ietf-restconf-monitoring:streams"]["stream"][0];
    assert_eq!(stream["name"], "NETCONF");
    assert_eq!(
        stream["access"][0]["location"],
        format!("{}/restconf/streams/NETCONF", server.base)
    );
}

#[tokio::test]
async fn a_subscription_reconnects_after_the_server_returns() {
    let ctx = test_context();
    let ds = qkdn_yang::Datastore::builder(ctx.clone()).build().unwrap();
    let first = TestServer::serve_full(
        ds.clone(),
        RestconfOptions::default(),
        ServeOptions {
            edge: Edge { shutdown_grace: Duration::from_millis(50), ..Edge::api() },
            ..ServeOptions::default()
        },
        |b| b.stream("NETCONF", "x"),
        None,
    )
    .await;
    let addr: std::net::SocketAddr = first.base.trim_start_matches("http://").parse().unwrap();
    let client = RestconfClient::new(&first.base);
    let mut sub = client.subscribe(
        "NETCONF",
        Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(200) },
    );
    assert_eq!(sub.next().await, Some(StreamEvent::Connected));
    drop(first);
    let Some(StreamEvent::Disconnected(reason)) =
        tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap()
    else {
        panic!("no disconnection reported")
    };
    assert!(!reason.is_empty());
    // The server comes back on the same address; the subscription finds it by itself.
    let second = TestServer::serve_full(
        ds,
        RestconfOptions::default(),
        ServeOptions::default(),
        |b| b.stream("NETCONF", "x"),
        Some(addr),
    )
    .await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await.unwrap() {
            Some(StreamEvent::Connected) => break,
            Some(StreamEvent::Disconnected(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    let publisher = second.server.publisher("NETCONF").unwrap();
    for _ in 0..100 {
        if publisher.subscribers() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    publisher.publish(json!({"qkdn-test-ops:tick": {"n": 7}})).unwrap();
    let Some(StreamEvent::Notification(n)) = sub.next().await else {
        panic!("no notification after reconnecting")
    };
    assert_eq!(n["qkdn-test-ops:tick"]["n"], 7);
}
