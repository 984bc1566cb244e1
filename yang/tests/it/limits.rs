//! Limits a long-running server needs: request size, time to send headers, time to send a body.

use std::time::Duration;

use qkdn_kit::server::{Edge, ServeOptions};
use qkdn_yang::YangContext;
use qkdn_yang::restconf::RestconfOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::{TestServer, example_node, fingerprint};

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let options = RestconfOptions { max_body_bytes: 64 * 1024, ..RestconfOptions::default() };
    let server = TestServer::start_with(example_node(), options, |b| b).await;
    let before = fingerprint(&server.ds);
    let big = format!("{{\"etsi-qkd-sdn-node:qkdn_version\":\"{}\"}}", "x".repeat(100 * 1024));
    // Announced by Content-Length...
    let response = server
        .http()
        .put(server.url("/restconf/data/etsi-qkd-sdn-node:qkd_node/qkdn_version"))
        .header("content-type", "application/yang-data+json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["ietf-restconf:errors"]["error"][0]["error-tag"], "too-big");
    // ...and streamed without a length.
    let stream = futures_util::stream::iter(
        big.into_bytes()
            .chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = server
        .http()
        .put(server.url("/restconf/data/etsi-qkd-sdn-node:qkd_node/qkdn_version"))
        .header("content-type", "application/yang-data+json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(fingerprint(&server.ds), before);
}

/// Sends `request` on a raw connection, then reads whatever comes back within `wait`.
async fn raw_exchange(base: &str, request: &[u8], wait: Duration) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    // The edge of the server (the service kit) reads bodies first, within its body timeout,
    // and answers in the RESTCONF format.
    let options =
        RestconfOptions { body_timeout: Duration::from_millis(300), ..RestconfOptions::default() };
    let serve = ServeOptions {
        edge: Edge { body_timeout: Duration::from_millis(300), ..Edge::api() },
        ..ServeOptions::default()
    };
    let ds = qkdn_yang::Datastore::builder(YangContext::qkdn().unwrap())
        .data(example_node())
        .build()
        .unwrap();
    let server = TestServer::serve_full(ds, options, serve, |b| b, None).await;
    let request =
        b"PUT /restconf/data/etsi-qkd-sdn-node:qkd_node/qkdn_version HTTP/1.1\r\nHost: x\r\n\
        Content-Type: application/yang-data+json\r\nContent-Length: 100\r\n\r\n{\"etsi";
    let answer = raw_exchange(&server.base, request, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("ietf-restconf:errors"), "{answer}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let ctx = YangContext::qkdn().unwrap();
    let serve = ServeOptions {
        edge: Edge { header_timeout: Duration::from_millis(300), ..Edge::api() },
        ..ServeOptions::default()
    };
    let server = TestServer::start_on(ctx, RestconfOptions::default(), serve, |b| b).await;
    let started = std::time::Instant::now();
    let answer = raw_exchange(
        &server.base,
        b"GET /restconf HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(4), "the connection stayed open");
    assert!(!answer.contains("200 OK"), "{answer}");
}
