//! The OpenAPI document and the router agree: every documented operation is served (it does
//! not fall through to "no resource" or "method not allowed"; an event stream opens), and the
//! document is OpenAPI 3.1.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value as Json;
use tower::ServiceExt;

use super::*;
use qkdn_kit::authz::ConnectionIdentity;
use qkdn_kit::{Identity, Role};

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: crate::config::ControllerConfig = toml_edit::de::from_str("").unwrap();
    config.data_dir = dir.path().to_path_buf();
    let core = crate::core::start(Arc::new(config)).unwrap();
    let gate = qkdn_kit::Gate::new(crate::access::classify, Arc::default());
    let router = router(ApiState { core }, Router::new(), gate);
    let doc: Json = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let uri = path.replace("{id}", "00000000-0000-4000-8000-000000000001");
            // A caller the policy lets through to the handler: the node for a registration,
            // an admin for everything else.
            let caller = if method == "post" && path == "/api/v1/nodes" {
                Identity::Node("00000000-0000-4000-8000-000000000001".parse().unwrap())
            } else {
                Identity::operator("admin", Role::Admin)
            };
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("content-type", "application/json")
                .extension(ConnectionIdentity {
                    identity: Ok(Arc::new(caller)),
                    certificates: qkdn_kit::tls::PeerCertificates(Arc::new(Vec::new())),
                })
                .body(Body::from("{}"))
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let endless = response
                .headers()
                .get("content-type")
                .is_some_and(|t| t.as_bytes() == b"text/event-stream");
            let body = if endless {
                // An event stream never ends: its opening is enough.
                use futures_util::StreamExt as _;
                let mut stream = response.into_body().into_data_stream();
                let first = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next());
                first.await.expect("the stream opens").unwrap().unwrap()
            } else {
                axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()
            };
            let text = String::from_utf8_lossy(&body);
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}: {text}");
            assert_ne!(status, StatusCode::FORBIDDEN, "{method} {uri}: {text}");
            assert!(
                !text.contains("no resource"),
                "{method} {uri} is documented but not routed: {text}"
            );
            assert!(
                !body.is_empty() || status == StatusCode::NO_CONTENT,
                "{method} {uri}: no body"
            );
        }
    }
    assert!(operations >= 14, "{operations} operations documented");
}

/// A QoS field is declared once, in [`crate::apps::Qos`], and described once, in the OpenAPI
/// document: the two name the same fields (the struct's names read from serde itself).
#[test]
fn the_qos_schema_describes_exactly_the_qos_fields() {
    use serde::Deserialize;
    let probe = crate::apps::Qos::deserialize(serde_json::json!({"no such field": 1}));
    let message = probe.unwrap_err().to_string();
    let expected = message.split_once("expected one of").map(|(_, list)| list).unwrap_or("");
    let fields: std::collections::BTreeSet<&str> = expected.split('`').skip(1).step_by(2).collect();
    assert!(fields.contains("rate_bps"), "{message}");
    let schema = super::qos_schema();
    let described: std::collections::BTreeSet<&str> =
        schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, described);
}

/// The core has a stop path: once stopped, it changes nothing and says it is stopping.
#[tokio::test]
async fn a_stopped_core_refuses_requests_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: crate::config::ControllerConfig = toml_edit::de::from_str("").unwrap();
    config.data_dir = dir.path().to_path_buf();
    let core = crate::core::start(Arc::new(config)).unwrap();
    let mut view = core.watch();
    core.stop().await;
    let registration: crate::core::Registration = serde_json::from_value(serde_json::json!({
        "node_id": "00000000-0000-4000-8000-000000000001",
        "restconf_url": "https://127.0.0.1:1/restconf",
    }))
    .unwrap();
    let refused = core.ask(|reply| crate::core::Command::RegisterAgent(registration, reply)).await;
    assert!(
        matches!(&refused, Err(crate::error::ApiError::Unavailable(m)) if m.contains("stopping")),
        "{refused:?}"
    );
    assert!(core.view().agents.is_empty());
    // The core task is gone: its view no longer changes.
    view.borrow_and_update();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), view.changed()).await;
    assert!(matches!(ended, Ok(Err(_))), "the core still runs");
}
