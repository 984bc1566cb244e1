//! Store key rotation: agent B, holding the reservations of keys SAE A was given, restarts
//! with a new store key and the old one as `previous_store_key_files`; it opens every stored
//! block, serves, re-wraps every block's data key under the new key and says so; restarted
//! with the new key alone it still serves the rest, and with the old key alone it opens nothing.

use serde_json::json;

use crate::harness::*;
use crate::kms::{KmsPair, Sae, key_bytes, key_ids, start_kms_pair, wait_for_keys};

/// Writes `config` for `agent` and restarts it (`kill -9` first).
fn restart_with(mut agent: AgentProcess, config: &str) -> AgentProcess {
    std::fs::write(&agent.config, config).unwrap();
    agent.process.kill_hard();
    relaunch(agent)
}

/// Waits until the log of the agent at `data` contains `text`.
async fn wait_for_log(data: &std::path::Path, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(log_of(data)).unwrap_or_default().contains(text) {
        assert!(std::time::Instant::now() < deadline, "the agent never logged {text:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_key_rotation_keeps_every_key_and_then_needs_only_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let KmsPair { a, b, kms_a, kms_b, .. } = start_kms_pair(dir.path(), &pki, "").await;
    let (sae_a, sae_b) = (Sae::new(&pki, "sae-a", kms_a), Sae::new(&pki, "sae-b", kms_b));
    wait_for_keys(&sae_a, "sae-b", 8).await;
    let enc = sae_a.post("sae-b/enc_keys", &json!({"number": 8})).await;
    assert_eq!(enc.status, 200, "{}", enc.body);
    let (ids, bytes) = (key_ids(&enc), key_bytes(&enc));
    let fetch = |range: std::ops::Range<usize>| json!({"key_IDs": ids[range].iter().map(|id| json!({"key_ID": id})).collect::<Vec<_>>()});

    let old_key = store_key_file(dir.path(), "b");
    let new_key = dir.path().join("b-new.storekey");
    std::fs::write(&new_key, qkdn_kit::pki::random_key_hex().unwrap()).unwrap();
    let original = std::fs::read_to_string(&b.agent.config).unwrap();
    let old_line = format!("store_key_file = \"{}\"", old_key.display());
    assert!(original.contains(&old_line), "{original}");
    let new_line = format!("store_key_file = \"{}\"", new_key.display());
    let rotating = original.replace(
        &old_line,
        &format!("{new_line}\nprevious_store_key_files = [\"{}\"]", old_key.display()),
    );
    let b = restart_with(b.agent, &rotating);
    wait_for_log(&b.data, "store key rotation done").await;
    let dec = sae_b.post("sae-a/dec_keys", &fetch(0..4)).await;
    assert_eq!(dec.status, 200, "{}", dec.body);
    assert_eq!(key_bytes(&dec), bytes[0..4], "the same bytes after the rotation");

    // The new key alone: everything is wrapped by it.
    let b = restart_with(b, &original.replace(&old_line, &new_line));
    let dec = sae_b.post("sae-a/dec_keys", &fetch(4..6)).await;
    assert_eq!(dec.status, 200, "{}", dec.body);
    assert_eq!(key_bytes(&dec), bytes[4..6]);
    let log = std::fs::read_to_string(log_of(&b.data)).unwrap();
    assert!(!log.contains("failed authentication"), "blocks left under the old key");

    // The old key alone opens nothing any more.
    let b = restart_with(b, &original);
    wait_for_log(&b.data, "failed authentication").await;
    let dec = sae_b.post("sae-a/dec_keys", &fetch(6..8)).await;
    assert_eq!(dec.status, 400, "{}", dec.body);
    drop((a, b));
}
