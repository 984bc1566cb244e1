//! Resource exhaustion over real processes: thousands of idle connections to a KMS's ETSI 014
//! listener do not keep an SAE from getting keys; and an SAE drawing keys as fast as it can,
//! beyond its quota, gets 503 while another SAE on the same link keeps its guaranteed rate
//! (the seed's "KMS attack").

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::kms::{Sae, start_kms_pair, wait_for_keys};

/// Connections this process may open (it raises its own soft limit to the hard one).
fn connection_budget(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        limit.current = Some(max);
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let current = getrlimit(Resource::Nofile).current.unwrap_or(1024) as usize;
    wanted.min(current.saturating_sub(256))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_greedy_sae_do_not_starve_another_sae() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let pair = start_kms_pair(dir.path(), &pki, "").await;
    let (kms_a, a) = (pair.kms_a, &pair.a.agent);
    // A second pair on the link A-B: sae-g at A, guaranteed 20,000 bit/s.
    let guarded = "aaaa0000-0000-4000-8000-0000000000a9";
    let body = json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": guarded, "server_app_id": "sae-g",
        "client_app_id": ["sae-b"], "backing_qkdl_id": [LINK_AB],
        "app_qos": {"min_bandwidth": 20_000}}]});
    let path = format!("{NODE_PATH}/qkd_applications/qkd_app={guarded}");
    restconf(a).put(&path, &body).await.unwrap();
    let (greedy, guarded_sae) = (Sae::new(&pki, "sae-a", kms_a), Sae::new(&pki, "sae-g", kms_a));
    wait_for_keys(&guarded_sae, "sae-b", 600).await;

    // Thousands of connections that never start their TLS handshake.
    let wanted = connection_budget(5_000);
    let mut idle = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        match tokio::net::TcpStream::connect(("127.0.0.1", kms_a)).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connection {} refused by the kernel: {e}", idle.len()),
        }
    }
    // A client that connects afresh (not a connection pooled before the flood).
    let fresh = Sae::new(&pki, "sae-g", kms_a);
    let started = Instant::now();
    for _ in 0..10 {
        let reply = fresh.post("sae-b/enc_keys", &json!({"number": 1})).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{wanted} idle connections slowed the SAE down to {:?} for 10 requests",
        started.elapsed()
    );
    drop(idle);

    // sae-a takes as fast as it can from four connections; sae-g asks at its guaranteed rate
    // (8 keys of 256 bits every 100 ms: 20,480 bit/s) meanwhile, and is served every time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut drains = Vec::new();
    for _ in 0..4 {
        let (greedy, stop) = (Sae::new(&pki, "sae-a", kms_a), stop.clone());
        drains.push(tokio::spawn(async move {
            let (mut served, mut refused, mut reasons) = (0u32, 0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match greedy.try_post("sae-b/enc_keys", &json!({"number": 64})).await {
                    Some(r) if r.status == 200 => served += 1,
                    Some(r) if r.status == 503 => {
                        refused += 1;
                        if reasons.len() < 50 {
                            reasons.push(r.body["message"].as_str().unwrap_or_default().to_owned());
                        }
                    }
                    other => panic!("greedy: {:?}", other.map(|r| (r.status, r.body))),
                }
            }
            (served, refused, reasons)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0..40 {
        tick.tick().await;
        let reply = guarded_sae.post("sae-b/enc_keys", &json!({"number": 8})).await;
        assert_eq!(reply.status, 200, "request {i} of the guaranteed SAE: {}", reply.body);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut served, mut refused, mut reasons) = (0, 0, Vec::new());
    for d in drains {
        let (s, r, why) = d.await.unwrap();
        (served, refused) = (served + s, refused + r);
        reasons.extend(why);
    }
    assert!(served > 0, "the greedy SAE got nothing at all");
    assert!(refused > 0, "the greedy SAE was never refused ({served} served)");
    assert!(
        reasons
            .iter()
            .any(|m| m.contains("kept for the link's other applications")
                || m.contains("rate limit")),
        "{reasons:?}"
    );
    drop(greedy);
}
