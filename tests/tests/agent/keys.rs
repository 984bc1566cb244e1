//! Keys: two agent processes with simulated devices deliver identical key blocks and IDs.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agent_processes_deliver_identical_key_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(&Spec {
        dir: dir.path(),
        name: "a",
        body: node_ab(NODE_A, 101, NODE_B, 201, "", ""),
        restconf_extra: "",
    });
    let b = start(&Spec {
        dir: dir.path(),
        name: "b",
        body: node_ab(NODE_B, 201, NODE_A, 101, "", ""),
        restconf_extra: "",
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (la, lb) = (ledger(&a).await, ledger(&b).await);
        let seqs = |l: &Json| -> Vec<(u64, Json)> {
            l["recent"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (r["sequence"].as_u64().unwrap(), r.clone()))
                .collect()
        };
        let (ra, rb) = (seqs(&la), seqs(&lb));
        let common: Vec<&(u64, Json)> =
            ra.iter().filter(|(s, _)| rb.iter().any(|(t, _)| t == s)).collect();
        if common.len() >= 5 {
            for (seq, record) in common {
                let other = &rb.iter().find(|(t, _)| t == seq).unwrap().1;
                assert_eq!(record, other, "block {seq} differs between the two ends");
                assert!(record["keys"].as_u64().unwrap() > 0);
            }
            return;
        }
        assert!(Instant::now() < deadline, "not enough common blocks: {la} / {lb}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
