//! Key supply through a reroute, as an application sees it: SAEs draw keys steadily over a
//! relayed application while the trusted node in the middle of its path freezes (a host that
//! stops answering without closing its connections, here a `SIGSTOP`). Requests in flight then
//! fail within seconds, with a reason, rather than waiting out the peer timeout; once the
//! controller has moved the application to another path, every request is served again and the
//! slave fetches the same keys.

use std::time::{Duration, Instant};

use qkdn_tests::network::TestNetwork;
use qkdn_tests::sae::{Sae, keys};
use reqwest::Method;
use serde_json::{Value as Json, json};

const APP_AC: &str = "a0000000-0000-4000-8000-0000000000ac";

/// One `enc_keys` request: when it was sent (s from the start), how long it took, its status.
struct Sample {
    at: f64,
    took: f64,
    status: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_reroute_are_answered_within_seconds() {
    let dir = qkdn_tests::process::test_dir();
    let net = TestNetwork::ring_of_six(dir.path()).await;
    let request = json!({"app_id": APP_AC, "server": {"sae_id": "sae-a", "node": net.nodes["a"].id},
        "clients": [{"sae_id": "sae-c", "node": net.nodes["c"].id}],
        "qos": {"rate_bps": 20000, "ttl_s": 3600}});
    let (status, app) = net.call(Method::POST, "/api/v1/applications", Some(&request)).await;
    assert_eq!(status, 201, "{app}");
    let sae_a = Sae::new(&net.pki, "sae-a", net.nodes["a"].kms);
    let sae_c = Sae::new(&net.pki, "sae-c", net.nodes["c"].kms);
    let (sent, received) = sae_a.exchange(&sae_c, "sae-a", "sae-c", 1, 30).await;
    assert_eq!(sent, received);

    // 20 requests a second; b freezes after 3 s.
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut frozen = None;
    let mut rerouted = None;
    while started.elapsed() < Duration::from_secs(24) {
        if frozen.is_none() && started.elapsed() > Duration::from_secs(3) {
            let pid = rustix::process::Pid::from_raw(net.agents["b"].child.id() as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
            frozen = Some(started.elapsed().as_secs_f64());
        }
        if frozen.is_some() && rerouted.is_none() {
            let now = net.get(&format!("/api/v1/applications/{APP_AC}")).await;
            if now["reroutes"] == 1 && now["state"] == "active" {
                rerouted = Some(started.elapsed().as_secs_f64());
            }
        }
        let sent_at = Instant::now();
        let reply = sae_a.post("sae-c/enc_keys", &json!({"number": 1})).await;
        let took = sent_at.elapsed().as_secs_f64();
        let status = reply.as_ref().map_or(0, |r| r.status);
        if let Some(reply) = reply.filter(|r| r.status == 200) {
            let ids: Vec<Json> = keys(&reply).iter().map(|(id, _)| json!({"key_ID": id})).collect();
            let dec = sae_c.post("sae-a/dec_keys", &json!({"key_IDs": ids})).await.unwrap();
            assert_eq!(dec.status, 200, "{}", dec.body);
            assert_eq!(keys(&dec), keys(&reply));
        } else if status != 503 {
            panic!("enc_keys answered {status} during the reroute");
        }
        samples.push(Sample { at: sent_at.duration_since(started).as_secs_f64(), took, status });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (frozen, rerouted) = (frozen.unwrap(), rerouted.expect("the application was not moved"));
    let worst = samples.iter().map(|s| s.took).fold(0.0, f64::max);
    let refused = samples.iter().filter(|s| s.status != 200).count();
    eprintln!(
        "b froze at {frozen:.1} s, the application moved at {rerouted:.1} s; of {} requests {refused} \
         were refused, the slowest took {worst:.2} s",
        samples.len()
    );
    assert!(worst < 6.0, "a request waited {worst:.1} s");
    // From a second after the move on, every request is served.
    let late: Vec<&Sample> = samples.iter().filter(|s| s.at > rerouted + 1.0).collect();
    assert!(late.len() > 50, "too few requests after the move");
    assert!(late.iter().all(|s| s.status == 200), "refused after the move");
}
