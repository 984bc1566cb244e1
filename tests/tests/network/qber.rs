//! A link whose QBER rises above the controller's threshold (a scripted simulator event: the
//! devices keep producing keys, but the controller no longer trusts the link) loses its paths:
//! the application on it moves to the other side of the triangle, and keys keep flowing.

use qkdn_tests::network::TestNetwork;
use qkdn_tests::sae::Sae;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_over_the_qber_threshold_loses_its_paths() {
    let dir = qkdn_tests::process::test_dir();
    let mut net =
        TestNetwork::new(dir.path(), &["a", "b", "c"], &[("a", "b"), ("b", "c"), ("a", "c")]);
    // At 120 simulated seconds (12 s after the epoch) the QBER of a-c becomes 0.05: well under the
    // devices' abort limit (0.11), over this controller's threshold (0.03).
    let ac = net.link_id("a", "c");
    let event = format!(
        "[[simulator.events]]\nlink = \"{ac}\"\nat = \"120s\"\nkind = \"qber\"\nvalue = 0.05\n"
    );
    for end in ["a", "c"] {
        net.agent_extra.insert(end.to_owned(), event.clone());
    }
    net.start_controller("[links]\nqber_threshold = 0.03\n");
    net.start_agents();
    net.wait_for_topology(30).await;
    let request = json!({"app_id": "a0000000-0000-4000-8000-0000000000ac",
        "server": {"sae_id": "sae-a", "node": net.nodes["a"].id},
        "clients": [{"sae_id": "sae-c", "node": net.nodes["c"].id}], "qos": {"rate_bps": 2000}});
    let (status, app) = net.call(Method::POST, "/api/v1/applications", Some(&request)).await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["legs"][0]["links"], json!([ac]), "neighbours use their link");
    let id = app["app_id"].as_str().unwrap().to_owned();
    let moved = net
        .wait_for(&format!("/api/v1/applications/{id}"), 45, |a| {
            a["legs"][0]["links"].as_array().is_some_and(|l| l.len() == 2)
        })
        .await;
    assert_eq!(moved["legs"][0]["nodes"][1], json!(net.nodes["b"].id));
    let link = net.get(&format!("/api/v1/links/{ac}")).await;
    assert_eq!(link["up"], false);
    assert!(
        link["down_reasons"][0].as_str().unwrap().contains("above the threshold 0.03"),
        "{link}"
    );
    let sae_a = Sae::new(&net.pki, "sae-a", net.nodes["a"].kms);
    let sae_c = Sae::new(&net.pki, "sae-c", net.nodes["c"].kms);
    let (sent, received) = sae_a.exchange(&sae_c, "sae-a", "sae-c", 2, 30).await;
    assert_eq!(sent, received);
}
