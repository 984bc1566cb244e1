//! Key supply as an application sees it, under steady one-way load: an application whose
//! master SAE alone draws keys keeps being served far past its store's capacity (a physical
//! link) and far past the relay's stock (a virtual link), every request answered and every key
//! fetched by the slave; and an application its store cannot serve shows it in its `app_status`
//! with a 015 alarm, and is back `ON` with an event once it is served again.

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::harness::*;
use crate::kms::{KmsPair, Sae, key_ids, start_kms_pair, wait_for_keys};

/// `enc_keys` of `per_request` keys by `master` for `slave_id` every `pace` until `keys`
/// keys are delivered, each answer's keys fetched by `slave`; panics on any refusal.
async fn one_way_load(
    (master, master_id): (&Sae, &str),
    (slave, slave_id): (&Sae, &str),
    per_request: u64,
    keys: u64,
    pace: Duration,
) {
    let started = Instant::now();
    let mut delivered = 0;
    let mut ticker = tokio::time::interval(pace);
    while delivered < keys {
        ticker.tick().await;
        let enc =
            master.post(&format!("{slave_id}/enc_keys"), &json!({"number": per_request})).await;
        assert_eq!(
            enc.status,
            200,
            "request after {delivered} keys, {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            enc.body
        );
        let ids: Vec<Json> = key_ids(&enc).iter().map(|id| json!({"key_ID": id})).collect();
        let dec = slave.post(&format!("{master_id}/dec_keys"), &json!({"key_IDs": ids})).await;
        assert_eq!(dec.status, 200, "{}", dec.body);
        assert_eq!(dec.body["keys"], enc.body["keys"]);
        delivered += per_request;
    }
}

fn store_of<'a>(stores: &'a Json, link: &str) -> &'a Json {
    stores["stores"].as_array().unwrap().iter().find(|s| s["link"] == link).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_application_is_served_past_many_times_its_store_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let KmsPair { a, b, kms_a, kms_b, .. } =
        start_kms_pair(dir.path(), &pki, "store_capacity = 300\n").await;
    let (sae_a, sae_b) = (Sae::new(&pki, "sae-a", kms_a), Sae::new(&pki, "sae-b", kms_b));
    // Both stores fill up and make room from their oldest keys for a while before anyone draws.
    let deadline = Instant::now() + Duration::from_secs(20);
    for agent in [&a.agent, &b.agent] {
        while store_of(&api_json(agent, "/v1/kms/stores").await, LINK_AB)["dropped"] == 0 {
            assert!(Instant::now() < deadline, "the stores did not fill");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 1200 keys drawn at A, four times the capacity; B's SAE never draws.
    one_way_load((&sae_a, "sae-a"), (&sae_b, "sae-b"), 8, 1200, Duration::from_millis(20)).await;
    for agent in [&a.agent, &b.agent] {
        let store = store_of(&api_json(agent, "/v1/kms/stores").await, LINK_AB).clone();
        assert!(store["stored"].as_u64().unwrap() <= 300, "{store}");
        assert!(store["filled"].as_u64().unwrap() > 1200, "{store}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_relayed_application_is_served_past_many_times_the_relay_stock() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    // A stock of 64 keys: each end's share is refilled up to 32.
    let ([a, b, c], ka, kc) = crate::relay::chain_nodes(dir.path(), &pki, 64);
    crate::relay::provision_virtual_link(&a, &b, &c).await;
    crate::relay::pair_over_virtual(&a, "aaaa0000-0000-4000-8000-0000000000ac", "sae-a", "sae-c")
        .await;
    crate::relay::pair_over_virtual(&c, "aaaa0000-0000-4000-8000-0000000000ca", "sae-c", "sae-a")
        .await;
    let (sae_a, sae_c) = (Sae::new(&pki, "sae-a", ka), Sae::new(&pki, "sae-c", kc));
    wait_for_keys(&sae_a, "sae-c", 16).await;
    // 640 keys drawn at A, ten times the stock, at 40 keys/s (the link relays 78 keys/s).
    one_way_load((&sae_a, "sae-a"), (&sae_c, "sae-c"), 2, 640, Duration::from_millis(50)).await;
    // C's share was filled to its half of the stock and no further.
    let at_c = store_of(&api_json(&c, "/v1/kms/stores").await, crate::relay::VIRT_AC).clone();
    assert!(at_c["stored"].as_u64().unwrap() <= 64 + 64, "{at_c}");
    drop(b);
}

/// The `application` member of `alarm` or `event` notifications in `seen` that mention `text`.
fn app_notifications(seen: &[Json], kind: &str, text: &str) -> Vec<Json> {
    seen.iter()
        .filter_map(|n| n.get(format!("etsi-qkd-sdn-node:{kind}"))?.get("application"))
        .filter(|a| a["message"].as_str().is_some_and(|m| m.contains(text)))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_its_store_cannot_serve_shows_it_and_raises_an_alarm() {
    const APP_A: &str = "aaaa0000-0000-4000-8000-00000000000a";
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let KmsPair { a, b: _b, kms_a, .. } =
        start_kms_pair(dir.path(), &pki, "store_capacity = 300\n").await;
    let (seen, _collector) = collect(&a.agent);
    let sae_a = Sae::new(&pki, "sae-a", kms_a);
    wait_for_keys(&sae_a, "sae-b", 20).await;
    let status = || async {
        let path = format!("{NODE_PATH}/qkd_applications/qkd_app={APP_A}/app_status");
        let doc = restconf(&a.agent).get(&path, &[]).await.unwrap();
        doc["etsi-qkd-sdn-node:app_status"].as_str().unwrap().to_owned()
    };
    assert_eq!(status().await, "etsi-qkd-node-types:ON");
    // The application asks for more than its store can ever hold (this end's half of 300
    // keys), again and again: every request is refused for lack of key material.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app_notifications(&seen.lock().unwrap(), "alarm", "cannot serve").is_empty() {
        let enc = sae_a.post("sae-b/enc_keys", &json!({"number": 1000})).await;
        assert_eq!(enc.status, 503, "{}", enc.body);
        assert!(Instant::now() < deadline, "no alarm: {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alarm = app_notifications(&seen.lock().unwrap(), "alarm", "cannot serve")[0].clone();
    assert_eq!(alarm["app_id"], APP_A);
    assert_eq!(alarm["severity"], "etsi-qkd-node-types:MAJOR");
    assert_eq!(alarm["app_status"], "etsi-qkd-node-types:DISCONNECTED");
    assert_eq!(status().await, "etsi-qkd-node-types:DISCONNECTED");
    let apps = api_json(&a.agent, "/v1/kms/applications").await;
    let figures = apps["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["app"] == APP_A)
        .cloned()
        .unwrap_or_default();
    assert!(figures["starved_s"].as_f64().is_some_and(|s| s >= 3.0), "{apps}");
    // Requests it can serve: back ON, with an event.
    let enc = sae_a.post("sae-b/enc_keys", &json!({"number": 2})).await;
    assert_eq!(enc.status, 200, "{}", enc.body);
    wait_for(
        &seen,
        |s| !app_notifications(s, "event", "requests are served").is_empty(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status().await, "etsi-qkd-node-types:ON");
    assert_eq!(app_notifications(&seen.lock().unwrap(), "alarm", "cannot serve").len(), 1);
}
