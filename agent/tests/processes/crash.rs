//! Crashes: `kill -9` of the source of a relayed link while SAEs fetch keys from it and relays
//! are in flight, then of the trusted node in the middle. After restarts every key acknowledged
//! with a 2xx is still deliverable to its slave by ID with the same bytes, and no key ID was
//! ever handed out twice (DESIGN.md §7.2, §7.4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::kms::{Sae, key_bytes, key_ids, wait_for_keys};
use crate::relay::chain;

/// Keys handed out: ID → bytes, and how often each ID was seen.
#[derive(Default)]
struct Ledger {
    keys: HashMap<String, Vec<u8>>,
    duplicates: Vec<String>,
    answers: usize,
}

/// `workers` SAE loops calling `enc_keys` until `stop` turns true.
fn load(
    sae: Arc<Sae>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    workers: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let (sae, ledger, stop) = (sae.clone(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let Some(reply) = sae.try_post("sae-c/enc_keys", &json!({"number": 2})).await
                    else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    if reply.status != 200 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let mut l = ledger.lock().unwrap();
                    l.answers += 1;
                    for (id, bytes) in key_ids(&reply).into_iter().zip(key_bytes(&reply)) {
                        if l.keys.insert(id.clone(), bytes).is_some() {
                            l.duplicates.push(id);
                        }
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_keys_survive_kill_9_and_are_never_handed_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let ([a, b, c], ka, kc) = chain(dir.path(), &pki).await;
    let sae_a = Arc::new(Sae::new(&pki, "sae-a", ka));
    let sae_c = Sae::new(&pki, "sae-c", kc);
    wait_for_keys(&sae_a, "sae-c", 10).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = load(sae_a.clone(), ledger.clone(), stop.clone(), 4);

    // Kill the source (KMS of the masters, source of the relays) under load.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let before_restart = ledger.lock().unwrap().answers;
    assert!(before_restart > 5, "the load did not run: {before_restart} answers");
    let a = relaunch(a);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Kill the trusted node in the middle while relays and reservations cross it.
    let mut b = b;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = relaunch(b);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "crash test: {} answers ({before_restart} before the first kill), {} keys",
        ledger.answers,
        ledger.keys.len()
    );
    assert!(ledger.answers > before_restart, "no key was handed out after the restarts");
    assert!(ledger.duplicates.is_empty(), "key IDs handed out twice: {:?}", ledger.duplicates);

    // Every acknowledged key: the slave gets it, once, with the master's bytes.
    let ids: Vec<&String> = ledger.keys.keys().collect();
    for chunk in ids.chunks(64) {
        let body =
            json!({"key_IDs": chunk.iter().map(|id| json!({"key_ID": id})).collect::<Vec<_>>()});
        let dec = sae_c.post("sae-a/dec_keys", &body).await;
        assert_eq!(dec.status, 200, "{}", dec.body);
        for (id, bytes) in key_ids(&dec).iter().zip(key_bytes(&dec)) {
            assert_eq!(ledger.keys[id], bytes, "key {id} differs between the ends");
        }
        assert_eq!(sae_c.post("sae-a/dec_keys", &body).await.status, 400, "fetched twice");
    }
    drop((a, b, c));
}
