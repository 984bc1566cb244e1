//! Key store thresholds through the real interfaces: two KMS agents with small stores; the
//! store fills past its high threshold (a MINOR 015 `alarm` on the link), an SAE drains this
//! end's half below the low threshold while the device is stopped (a MAJOR `alarm`), and once
//! the device runs again it says so with an `event` and the low alarm clears with another. The
//! management endpoint shows the rates and the raised alarms.

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::harness::*;
use crate::kms::{KmsPair, Sae, key_ids, start_kms_pair, wait_for_keys};

fn link_notifications<'a>(seen: &'a [Json], kind: &str, text: &str) -> Vec<&'a Json> {
    seen.iter()
        .filter_map(|n| n.get(format!("etsi-qkd-sdn-node:{kind}"))?.get("link"))
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(text)))
        .collect()
}

async fn set_link_enabled(agent: &AgentProcess, enabled: bool) {
    let path = format!("{NODE_PATH}/qkd_links/qkd_link={LINK_AB}");
    let body =
        json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": LINK_AB, "qkdl_enable": enabled}]});
    restconf(agent).patch(&path, &body).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_thresholds_raise_and_clear_015_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    // 4000 keys: high above 2400 keys, low below 500 keys this end may hand out.
    let small = "store_capacity = 4000\nstore_low_watermark = 0.25\nstore_high_watermark = 0.6\n";
    let KmsPair { a, b, kms_a, .. } = start_kms_pair(dir.path(), &pki, small).await;
    let (seen, _collector) = collect(&a.agent);
    let sae_a = Sae::new(&pki, "sae-a", kms_a);

    // Filling: the high alarm, once, MINOR, on the link.
    wait_for(
        &seen,
        |s| !link_notifications(s, "alarm", "nearly full").is_empty(),
        Duration::from_secs(30),
    )
    .await;
    let high = link_notifications(&seen.lock().unwrap(), "alarm", "nearly full")[0].clone();
    assert_eq!(high["qkdl_id"], LINK_AB);
    assert_eq!(high["severity"], "etsi-qkd-node-types:MINOR");
    let stores = api_json(&a.agent, "/v1/kms/stores").await;
    let store = &stores["stores"][0];
    assert!(store["fill_bps"].as_f64().unwrap() > 0.0, "{stores}");
    assert!(store["fill_ratio"].as_f64().unwrap() > 0.6, "{stores}");
    assert!(store["alarms"].as_array().unwrap().contains(&json!("high")), "{stores}");
    assert!(link_notifications(&seen.lock().unwrap(), "alarm", "key store low").is_empty());

    // The device stops; an SAE drains this end's half: the low alarm, MAJOR.
    set_link_enabled(&a.agent, false).await;
    wait_for_keys(&sae_a, "sae-b", 600).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = sae_a.get("sae-b/status").await.body["stored_key_count"].as_u64().unwrap();
        if left < 400 {
            break;
        }
        let take = (left - 300).min(1024);
        let enc = sae_a.post("sae-b/enc_keys", &json!({"number": take})).await;
        assert_eq!(enc.status, 200, "{}", enc.body);
        assert_eq!(key_ids(&enc).len() as u64, take);
        assert!(Instant::now() < deadline, "the store did not drain");
    }
    wait_for(
        &seen,
        |s| !link_notifications(s, "alarm", "key store low").is_empty(),
        Duration::from_secs(10),
    )
    .await;
    let low = link_notifications(&seen.lock().unwrap(), "alarm", "key store low")[0].clone();
    assert_eq!(low["severity"], "etsi-qkd-node-types:MAJOR");
    let stores = api_json(&a.agent, "/v1/kms/stores").await;
    assert!(stores["stores"][0]["alarms"].as_array().unwrap().contains(&json!("low")), "{stores}");
    assert!(stores["stores"][0]["consumption_bps"].as_f64().unwrap() > 0.0, "{stores}");

    // The device runs again: the low alarm clears with an event.
    set_link_enabled(&a.agent, true).await;
    wait_for(
        &seen,
        |s| !link_notifications(s, "event", "no longer low").is_empty(),
        Duration::from_secs(30),
    )
    .await;
    let seen = seen.lock().unwrap();
    // The link's device, started again, says so at once (a controller that read the link while
    // it was not producing learns it is ACTIVE without waiting for its next periodic read).
    let started = link_notifications(&seen, "event", "the link produces keys");
    assert!(
        started.iter().any(|l| l["qkdl_status"] == "etsi-qkd-node-types:ACTIVE"),
        "no event for the link's start in {started:?}"
    );
    assert_eq!(link_notifications(&seen, "alarm", "key store low").len(), 1, "the alarm flapped");
    let (raised, cleared) = (
        link_notifications(&seen, "alarm", "nearly full").len(),
        link_notifications(&seen, "event", "no longer nearly full").len(),
    );
    assert!(raised == cleared || raised == cleared + 1, "{raised} raised, {cleared} cleared");
    drop((a, b));
}
