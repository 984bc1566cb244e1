//! Notifications: scripted simulator events raise valid 015 notifications with the right values.

use std::time::Duration;

use qkdn_yang::YangContext;
use serde_json::{Value as Json, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_events_raise_valid_notifications_with_the_right_values() {
    let dir = tempfile::tempdir().unwrap();
    // Simulated time runs 10x; the script: fibre down at 40s, up at 80s, error rate 15% at 120s.
    let events = format!(
        "[[simulator.events]]\nlink = \"{LINK_AB}\"\nat = \"40s\"\nkind = \"down\"\n\
         [[simulator.events]]\nlink = \"{LINK_AB}\"\nat = \"80s\"\nkind = \"up\"\n\
         [[simulator.events]]\nlink = \"{LINK_AB}\"\nat = \"120s\"\nkind = \"qber\"\nvalue = 0.15\n"
    );
    let agent = start(&Spec {
        dir: dir.path(),
        name: "a",
        body: node_ab(NODE_A, 101, NODE_B, 201, &events, ""),
        restconf_extra: "",
    });
    let (seen, _task) = collect(&agent);
    let ctx = YangContext::qkdn().unwrap();

    // An application on the physical link: announced, then its QoS changes.
    let client = restconf(&agent);
    let app_path = format!("{NODE_PATH}/qkd_applications/qkd_app={APP}");
    let app = json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": APP, "backing_qkdl_id": [LINK_AB],
        "server_app_id": "sae-a", "app_qos": {"max_bandwidth": 1000}}]});
    client.put(&app_path, &app).await.unwrap();
    let application = |name: &'static str| {
        move |s: &[Json]| {
            s.iter().any(|n| {
                n[format!("etsi-qkd-sdn-node:sdqkdn_application_{name}")]["qkd_application"]
                    ["app_id"]
                    == APP
            })
        }
    };
    // The 015 model gives `sdqkdn_application_new` the application's details, not its id.
    let announced = |s: &[Json]| {
        s.iter().any(|n| {
            n["etsi-qkd-sdn-node:sdqkdn_application_new"]["qkd_application"]["server_app_id"]
                == "sae-a"
        })
    };
    wait_for(&seen, announced, Duration::from_secs(5)).await;
    let qos = json!({"etsi-qkd-sdn-node:app_qos": {"max_bandwidth": 2000}});
    client.patch(&format!("{app_path}/app_qos"), &qos).await.unwrap();
    wait_for(&seen, application("qos_update"), Duration::from_secs(5)).await;

    let down_with = |reason: &'static str| {
        move |s: &[Json]| {
            s.iter().any(|n| {
                n["etsi-qkd-sdn-node:sdqkdn_link_down"]["qkd_link"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(reason))
            })
        }
    };
    wait_for(&seen, down_with("fibre"), Duration::from_secs(20)).await;
    wait_for(
        &seen,
        |s: &[Json]| {
            s.iter().any(|n| {
                n["etsi-qkd-sdn-node:event"]["link"]["qkdl_status"] == "etsi-qkd-node-types:ACTIVE"
            })
        },
        Duration::from_secs(20),
    )
    .await;
    wait_for(&seen, down_with("abort threshold"), Duration::from_secs(20)).await;
    let all = seen.lock().unwrap().clone();
    let kinds = names(&all);
    for expected in [
        "etsi-qkd-sdn-node:sdqkdn_link_perf_update",
        "etsi-qkd-sdn-node:alarm",
        "etsi-qkd-sdn-node:event",
        "etsi-qkd-sdn-node:sdqkdn_link_down",
    ] {
        assert!(kinds.iter().any(|k| k == expected), "no {expected} in {kinds:?}");
    }
    // Every notification is valid against the 015 module, and carries plausible values.
    for n in &all {
        let mut inner = n.clone();
        inner.as_object_mut().unwrap().remove("eventTime");
        qkdn_yang::ly::validate_notification(&ctx, &inner.to_string())
            .unwrap_or_else(|e| panic!("{n}: {e:?}"));
    }
    let perf: Vec<&Json> =
        all.iter().filter_map(|n| n.get("etsi-qkd-sdn-node:sdqkdn_link_perf_update")).collect();
    let skrs: Vec<u64> =
        perf.iter().filter_map(|p| p["qkd_link"]["performance"]["skr"].as_u64()).collect();
    assert!(
        skrs.iter().any(|s| *s > 10_000),
        "a working 25 km link reports tens of kbit/s at 10 MHz: {skrs:?}"
    );
    assert!(skrs.contains(&0), "a cut fibre reports 0: {skrs:?}");
    // The cut fibre disconnected the application; the aborting link could not carry the
    // 2,000 bit/s it asks for.
    assert!(application("disconnected")(&all), "{kinds:?}");
    let overloaded = all
        .iter()
        .find_map(|n| n.get("etsi-qkd-sdn-node:sdqkdn_link_overloaded"))
        .unwrap_or_else(|| panic!("no overload in {kinds:?}"));
    assert_eq!(overloaded["qkd_link"]["qkdl_id"], LINK_AB);
    assert_eq!(overloaded["qkd_link"]["performance"]["expected_consumption"], 2000);
    assert_eq!(overloaded["qkd_link"]["performance"]["eskr"], 0);
    let alarm = all.iter().find_map(|n| n.get("etsi-qkd-sdn-node:alarm")).unwrap();
    assert_eq!(alarm["link"]["severity"], "etsi-qkd-node-types:MAJOR");
    assert_eq!(alarm["link"]["qkdl_status"], "etsi-qkd-node-types:PASSIVE");
}
