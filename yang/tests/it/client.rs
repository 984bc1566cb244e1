//! The RESTCONF client against a real server: data methods, typed errors, entity-tags.

use qkdn_yang::restconf::{ClientError, RestconfClient};
use serde_json::json;

use super::harness::{TestServer, example_node};

const NODE: &str = "/etsi-qkd-sdn-node:qkd_node";

#[tokio::test]
async fn the_client_reads_and_writes_with_typed_errors() {
    let server = TestServer::start(example_node()).await;
    let client = RestconfClient::new(&server.base);
    assert_eq!(client.discover_root().await.unwrap(), "/restconf");
    let node = client.get(NODE, &[("depth", "2"), ("content", "config")]).await.unwrap();
    assert_eq!(
        node["etsi-qkd-sdn-node:qkd_node"]["qkdn_id"],
        "00000001-0000-0000-0000-000000000000"
    );
    let iface = format!("{NODE}/qkd_interfaces/qkd_interface=150");
    let created = client
        .put(
            &iface,
            &json!({"etsi-qkd-sdn-node:qkd_interface": [{"qkdi_id": 150, "qkdi_model": "m"}]}),
        )
        .await
        .unwrap();
    assert!(created.created);
    assert!(created.etag.is_some());
    let (_, etag) = client.get_with_etag(&iface, &[]).await.unwrap();
    let etag = etag.unwrap();
    client
        .patch(
            &iface,
            &json!({"etsi-qkd-sdn-node:qkd_interface": [{"qkdi_id": 150, "qkdi_model": "n"}]}),
        )
        .await
        .unwrap();
    // The old tag no longer matches.
    let err = client
        .put_if_match(
            &iface,
            &json!({"etsi-qkd-sdn-node:qkd_interface": [{"qkdi_id": 150}]}),
            &etag,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(412));
    let posted = client
        .post(
            &format!("{NODE}/qkd_interfaces"),
            &json!({"etsi-qkd-sdn-node:qkd_interface": [{"qkdi_id": 151}]}),
        )
        .await
        .unwrap();
    assert_eq!(
        posted.location.as_deref(),
        Some("/restconf/data/etsi-qkd-sdn-node:qkd_node/qkd_interfaces/qkd_interface=151")
    );
    client.delete(&iface).await.unwrap();
    // Errors carry the server's error entries.
    let err = client.delete(&iface).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let entry = err.first_error().unwrap();
    assert_eq!(entry.error_tag, "invalid-value");
    assert_eq!(
        entry.error_path.as_deref(),
        Some("/etsi-qkd-sdn-node:qkd_node/qkd_interfaces/qkd_interface[qkdi_id='150']")
    );
    let err = client
        .patch(
            NODE,
            &json!({"etsi-qkd-sdn-node:qkd_node": {"qkdn_status": "etsi-qkd-node-types:DOWN"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("state data"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = RestconfClient::new(&format!("http://{addr}"));
    match client.get(NODE, &[]).await {
        Err(ClientError::Transport { .. }) => {}
        other => panic!("expected a transport error, got {other:?}"),
    }
}
