//! Process life: SIGTERM stops cleanly, configuration errors name key, value and expectation.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_announces_the_interfaces_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start(&Spec {
        dir: dir.path(),
        name: "a",
        body: node_ab(NODE_A, 101, NODE_B, 201, "", ""),
        restconf_extra: "",
    });
    let (seen, _task) = collect(&agent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = agent.process.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = agent.process.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the agent did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    wait_for(
        &seen,
        |s: &[Json]| names(s).iter().any(|k| k == "etsi-qkd-sdn-node:sdqkdn_interface_out"),
        Duration::from_secs(5),
    )
    .await;
}

#[test]
fn an_invalid_configuration_exits_with_the_key_value_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        format!("data_dir = \"{}\"\n[node]\nid = \"{NODE_A}\"\n[[links]]\nid = \"{LINK_AB}\"\nlocal_interface = 7\nremote_node = \"{NODE_B}\"\nremote_interface = 1\nwavelength = 20\nrole = \"TRANSMITTER\"\nlength_km = 1.0\n", dir.path().display()),
    )
    .unwrap();
    let out =
        Command::new(crate::harness::agent_binary()).arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:6: links[0].local_interface: 7: no such interface",
            file.display()
        )),
        "{err}"
    );
    let check = Command::new(crate::harness::agent_binary())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    // Environment variables override the file, with the variable named in errors.
    let out = Command::new(crate::harness::agent_binary())
        .arg("--config")
        .arg(&file)
        .env("QKDN_NODE__ID", "not-a-uuid")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("QKDN_NODE__ID"), "{err}");
    // The example network's files are valid, once their simulator secret is made as they say.
    let workdir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(workdir.path().join("qkdn-example")).unwrap();
    qkdn_kit::pki::write_new_secret(&workdir.path().join("qkdn-example/simulator-secret")).unwrap();
    for node in ["a", "b", "c"] {
        let example = repo().join(format!("deploy/agents/node-{node}.toml"));
        let ok = Command::new(crate::harness::agent_binary())
            .current_dir(workdir.path())
            .arg("check-config")
            .arg(&example)
            .output()
            .unwrap();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    }
}
