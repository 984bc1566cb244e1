//! Link store owners over real databases: two ends of a link, each an owner task with its own
//! database and writer, the reservation going from one owner to the other as the agents'
//! peer service carries it. Concurrent `enc_keys` at both ends never hand out a key twice and
//! every answered key reaches its slave with the same bytes; a stalled peer holds up only the
//! requests waiting for it; a restart right after an answer keeps its keys for the slave and
//! never hands them out again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qkdn_kms::block::Placement;
use qkdn_kms::delivery::Delivery;
use qkdn_kms::disk::{Disk, DiskBlocks};
use qkdn_kms::link::{Issued, LinkSettings, LinkStore, NewBlock, ReserveError, StoreError};
use qkdn_kms::owner::{
    LinkHandle, OwnerError, PeerRefusal, RelayedKeys, ReserveFuture, Reserver, Settle, TakeRequest,
};
use qkdn_kms::seal::{Keyring, StoreKey};
use qkdn_kms::writer::Writer;
use uuid::Uuid;
use zeroize::Zeroizing;

const LINK: Uuid = Uuid::from_u128(100);
const A: Uuid = Uuid::from_u128(1);
const B: Uuid = Uuid::from_u128(2);

/// The peer transport between the two owners: a reservation goes to the other end's handle;
/// it can be made to stall.
#[derive(Default)]
struct Wire {
    other: Mutex<Option<LinkHandle>>,
    stall_next: AtomicBool,
    /// Ends a stall.
    release: Arc<tokio::sync::Notify>,
}

impl Reserver for Wire {
    fn reserve(&self, _link: Uuid, _remote: Uuid, deliveries: Vec<Delivery>) -> ReserveFuture {
        let other = self.other.lock().unwrap().clone();
        let stall = self.stall_next.swap(false, Ordering::SeqCst);
        let release = self.release.clone();
        Box::pin(async move {
            if stall {
                release.notified().await;
            }
            let Some(other) = other else {
                return Err(PeerRefusal::Failed("not connected".into()));
            };
            match other.reserve(deliveries).await {
                Ok(()) => Ok(()),
                Err(ReserveError::Unusable(lacking)) => Err(PeerRefusal::Unusable(lacking)),
                Err(ReserveError::Malformed(reason)) => Err(PeerRefusal::Failed(reason.into())),
            }
        })
    }
}

struct Node {
    handle: LinkHandle,
    wire: Arc<Wire>,
}

fn start(node: Uuid, other: Uuid, dir: &std::path::Path, ring: &Arc<Keyring>) -> Node {
    // A stopped owner's writer may still be closing the database.
    let path = dir.join(format!("{node}.redb"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let disk = loop {
        match Disk::open(&path) {
            Ok(disk) => break disk,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let settings = LinkSettings { capacity: 100_000, max_age_ms: None, relay_reserve: 0 };
    let disk = Arc::new(disk);
    let shared = qkdn_kms::seal::shared((**ring).clone());
    // Two blocks loaded at most: most steps read their blocks back from the database.
    let source = Arc::new(DiskBlocks::new(disk.clone(), shared.clone()));
    let mut store = LinkStore::new(LINK, node, other, settings, disk.next_block(LINK).unwrap())
        .with_source(source, 2);
    let blocks = disk.load().unwrap();
    let deliveries = disk.deliveries().unwrap().into_iter().map(|(_, d)| d).collect();
    let relays: Vec<_> = disk.relays().unwrap().into_iter().map(|(_, r)| r).collect();
    assert!(store.restore(ring, blocks, deliveries, relays).is_empty());
    let writer = Writer::start(disk).unwrap();
    let wire = Arc::new(Wire::default());
    let handle = LinkHandle::spawn(store, shared, writer, wire.clone());
    Node { handle, wire }
}

fn connect(a: &Node, b: &Node) {
    *a.wire.other.lock().unwrap() = Some(b.handle.clone());
    *b.wire.other.lock().unwrap() = Some(a.handle.clone());
}

async fn feed(nodes: &[&Node], blocks: usize, keys: usize) {
    for block in 0..blocks {
        feed_block(nodes, block, keys).await;
    }
}

/// Block number `block` of `keys` keys, the same at every node of `nodes`.
async fn feed_block(nodes: &[&Node], block: usize, keys: usize) {
    let first = 1_001 + (block * keys) as u128;
    let ids: Vec<Uuid> = (0..keys).map(|k| Uuid::from_u128(first + k as u128)).collect();
    let material: Vec<u8> = ids.iter().flat_map(|id| id.as_u128().to_be_bytes()).collect();
    for node in nodes {
        let new = NewBlock {
            ids: ids.clone(),
            material: Zeroizing::new(material.clone()),
            key_bytes: 16,
            placement: Placement { sequence: (block * keys) as u64, step: 1 },
        };
        node.handle.ingest(new, 1).await.unwrap();
    }
}

fn request(master: &str, number: usize) -> TakeRequest {
    TakeRequest {
        master: master.into(),
        slaves: vec![format!("{master}-slave")],
        number,
        size_bits: 128,
        expires_ms: u64::MAX,
        keep_for_others: 0,
        chunk: None,
    }
}

/// Takes keys from `node` until it runs out; every key answered.
async fn drain(handle: LinkHandle, master: &'static str, number: usize) -> Vec<Issued> {
    let mut all = Vec::new();
    loop {
        match handle.take(request(master, number)).await {
            Ok(keys) => all.extend(keys),
            Err(OwnerError::Store(StoreError::NotEnough { .. })) => return all,
            Err(e) => panic!("take: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_takes_at_both_ends_hand_out_each_key_once_and_slaves_get_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(Keyring::new(StoreKey::generate()));
    let (a, b) = (start(A, B, dir.path(), &ring), start(B, A, dir.path(), &ring));
    connect(&a, &b);
    // One block of 2,000 keys: stored as two blocks (1,024 and 976 keys).
    feed(&[&a, &b], 1, 2_000).await;

    let mut tasks = Vec::new();
    for i in 0..8 {
        let number = 1 + i % 4;
        tasks.push((true, tokio::spawn(drain(a.handle.clone(), "sae-a", number))));
        tasks.push((false, tokio::spawn(drain(b.handle.clone(), "sae-b", number))));
    }
    let mut seen = HashSet::new();
    let mut answered = 0;
    for (from_a, task) in tasks {
        let keys = task.await.unwrap();
        let (holder, master) = if from_a { (&b.handle, "sae-a") } else { (&a.handle, "sae-b") };
        for (id, bytes) in keys {
            assert!(seen.insert(id), "key {id} handed out twice");
            let fetched =
                holder.fetch(&format!("{master}-slave"), master, vec![id], 2).await.unwrap();
            assert_eq!(fetched[0].1.as_slice(), bytes.as_slice(), "same bytes at both ends");
            answered += 1;
        }
    }
    // Each end owns half of the 2,000 keys; requests of up to 4 keys leave at most 3 per end.
    assert!(answered >= 2_000 - 6, "{answered} keys answered");
    let (sa, sb) = (a.handle.stats().await.unwrap(), b.handle.stats().await.unwrap());
    assert_eq!((sa.deliveries, sb.deliveries), (0, 0), "{sa:?} {sb:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_holds_up_only_the_request_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(Keyring::new(StoreKey::generate()));
    let (a, b) = (start(A, B, dir.path(), &ring), start(B, A, dir.path(), &ring));
    connect(&a, &b);
    feed(&[&a, &b], 2, 100).await;

    a.wire.stall_next.store(true, Ordering::SeqCst);
    let stalled = tokio::spawn({
        let handle = a.handle.clone();
        async move { handle.take(request("sae-a", 1)).await }
    });
    while a.wire.stall_next.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    // The peer holds the first request; twenty others are served meanwhile.
    let others = async {
        for _ in 0..20 {
            a.handle.take(request("sae-a", 1)).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), others)
        .await
        .expect("requests waited for a stalled peer they do not need");
    assert!(!stalled.is_finished(), "the stalled request was answered before its peer");
    a.wire.release.notify_one();
    let keys = stalled.await.unwrap().unwrap();
    let fetched = b.handle.fetch("sae-a-slave", "sae-a", vec![keys[0].0], 2).await.unwrap();
    assert_eq!(fetched[0].1.as_slice(), keys[0].1.as_slice());
    assert_eq!(a.handle.stats().await.unwrap().deliveries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_right_after_an_answer_keeps_its_keys_for_the_slave_and_never_again() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(Keyring::new(StoreKey::generate()));
    let (a, b) = (start(A, B, dir.path(), &ring), start(B, A, dir.path(), &ring));
    connect(&a, &b);
    feed(&[&a, &b], 1, 50).await;
    let keys = a.handle.take(request("sae-a", 3)).await.unwrap();
    // A goes down at once: the erasures after the answer may not be written.
    *b.wire.other.lock().unwrap() = None;
    drop(a);
    let a = start(A, B, dir.path(), &ring);
    connect(&a, &b);
    // Recovery runs at start; wait for it to confirm.
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.handle.stats().await.unwrap().deliveries > 0 {
        assert!(Instant::now() < deadline, "deliveries not confirmed after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ids: Vec<Uuid> = keys.iter().map(|(id, _)| *id).collect();
    let fetched = b.handle.fetch("sae-a-slave", "sae-a", ids.clone(), 2).await.unwrap();
    for ((_, want), (_, got)) in keys.iter().zip(&fetched) {
        assert_eq!(want.as_slice(), got.as_slice());
    }
    // None of them is handed out again.
    let rest = drain(a.handle.clone(), "sae-a", 1).await;
    assert!(rest.iter().all(|(id, _)| !ids.contains(id)));
    assert!(matches!(
        b.handle.fetch("sae-a-slave", "sae-a", ids, 2).await,
        Err(OwnerError::Store(StoreError::NotFound))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pad_is_the_senders_key_and_pads_once() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(Keyring::new(StoreKey::generate()));
    let (a, b) = (start(A, B, dir.path(), &ring), start(B, A, dir.path(), &ring));
    connect(&a, &b);
    feed(&[&a, &b], 1, 40).await;

    // A hop: A's pads (its own keys, erased before they are returned), used once at B.
    let pads = a.handle.take_pads(3, 256).await.unwrap();
    assert!(pads.iter().all(|p| p.ids.len() == 2 && p.bytes.len() == 32));
    let ids: Vec<Vec<Uuid>> = pads.iter().map(|p| p.ids.clone()).collect();
    let at_b = b.handle.use_pads(ids.clone()).await.unwrap();
    for (pad, bytes) in pads.iter().zip(&at_b) {
        assert_eq!(pad.bytes.as_slice(), bytes.as_slice());
    }
    assert!(matches!(b.handle.use_pads(ids).await, Err(OwnerError::Store(StoreError::NotFound))));
    // B cannot pad with A's keys.
    let mine = a.handle.take_pads(1, 128).await.unwrap();
    assert!(b.handle.use_pads(vec![mine[0].ids.clone()]).await.is_ok());
    assert!(a.handle.use_pads(vec![mine[0].ids.clone()]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_keys_wait_for_their_commit_at_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(Keyring::new(StoreKey::generate()));
    let (a, b) = (start(A, B, dir.path(), &ring), start(B, A, dir.path(), &ring));
    connect(&a, &b);
    let relay = Uuid::from_u128(77);
    let keys: Vec<Issued> =
        (0..4u128).map(|i| (Uuid::from_u128(500 + i), Zeroizing::new(vec![i as u8; 16]))).collect();
    for (handle, source) in [(&a.handle, true), (&b.handle, false)] {
        let relayed = RelayedKeys {
            relay,
            // Even positions two apart: all A's.
            placement: Placement { sequence: 0, step: 2 },
            keys: keys.iter().map(|(id, k)| (*id, k.clone())).collect(),
            expires_ms: u64::MAX,
            source,
            usable: false,
            now_ms: 1,
        };
        assert!(handle.put_relayed(relayed).await.unwrap());
    }
    assert!(matches!(
        a.handle.take(request("sae-a", 1)).await,
        Err(OwnerError::Store(StoreError::NotEnough { .. }))
    ));
    assert_eq!(a.handle.unconfirmed_relays().await.unwrap(), vec![relay]);
    let far = Settle { keep_until: Some(u64::MAX / 2), refuse_until: Some(u64::MAX / 2) };
    assert!(b.handle.commit_relay(relay, far).await.unwrap());
    assert!(b.handle.commit_relay(relay, far).await.unwrap(), "asked again: still committed");
    assert!(a.handle.commit_relay(relay, Settle::default()).await.unwrap());
    assert!(a.handle.unconfirmed_relays().await.unwrap().is_empty());
    assert_eq!(a.handle.shares().await.unwrap(), (4, 0));
    assert_eq!(b.handle.shares().await.unwrap(), (0, 4));
    let taken = a.handle.take(request("sae-a", 4)).await.unwrap();
    let got = b
        .handle
        .fetch("sae-a-slave", "sae-a", taken.iter().map(|(id, _)| *id).collect(), 2)
        .await
        .unwrap();
    for ((_, want), (_, have)) in taken.iter().zip(&got) {
        assert_eq!(want.as_slice(), have.as_slice());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_pass_relay_is_usable_at_the_far_end_at_once_and_its_use_commits_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(Keyring::new(StoreKey::generate()));
    let (a, b) = (start(A, B, dir.path(), &ring), start(B, A, dir.path(), &ring));
    connect(&a, &b);
    let keys: Vec<Issued> =
        (0..4u128).map(|i| (Uuid::from_u128(600 + i), Zeroizing::new(vec![i as u8; 16]))).collect();
    let relayed = |relay: u128, source: bool| RelayedKeys {
        relay: Uuid::from_u128(relay),
        // Odd positions two apart: all B's.
        placement: Placement { sequence: 1, step: 2 },
        keys: keys.iter().map(|(id, k)| (*id, k.clone())).collect(),
        expires_ms: u64::MAX / 2,
        source,
        usable: !source,
        now_ms: 1,
    };
    // A (the source) holds its copy; B (the far end) can use its copy at once.
    assert!(a.handle.put_relayed(relayed(78, true)).await.unwrap());
    assert!(b.handle.put_relayed(relayed(78, false)).await.unwrap());
    assert!(!b.handle.put_relayed(relayed(78, false)).await.unwrap(), "a retry stores nothing");
    assert_eq!(b.handle.shares().await.unwrap(), (4, 0));
    // B hands two keys out before A hears back: A's reservation commits A's copy.
    let taken = b.handle.take(request("sae-b", 2)).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert!(a.handle.unconfirmed_relays().await.unwrap().is_empty());
    assert_eq!(a.handle.shares().await.unwrap(), (0, 2));
    let got = a
        .handle
        .fetch("sae-b-slave", "sae-b", taken.iter().map(|(id, _)| *id).collect(), 2)
        .await
        .unwrap();
    for ((_, want), (_, have)) in taken.iter().zip(&got) {
        assert_eq!(want.as_slice(), have.as_slice());
    }
    // The source hearing back late finds it committed.
    let far = Settle { keep_until: Some(u64::MAX / 2), refuse_until: Some(u64::MAX / 2) };
    assert!(b.handle.commit_relay(Uuid::from_u128(78), far).await.unwrap());
    // A relay that never reached B: B refuses it, and a copy arriving later.
    let other: Vec<Issued> =
        (0..2u128).map(|i| (Uuid::from_u128(700 + i), Zeroizing::new(vec![9; 16]))).collect();
    let late = RelayedKeys { keys: other, ..relayed(79, false) };
    assert!(!b.handle.commit_relay(Uuid::from_u128(79), far).await.unwrap());
    assert!(matches!(
        b.handle.put_relayed(late).await,
        Err(OwnerError::Store(StoreError::RelayRefused(_)))
    ));
    assert_eq!(b.handle.shares().await.unwrap(), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_other_end_has_not_stored_yet_are_kept_until_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(Keyring::new(StoreKey::generate()));
    let (a, b) = (start(A, B, dir.path(), &ring), start(B, A, dir.path(), &ring));
    connect(&a, &b);
    // Both ends have block 0; only A has block 1 so far (the ends store a device's blocks
    // independently, and one may be ahead).
    feed(&[&a, &b], 1, 8).await;
    feed_block(&[&a], 1, 8).await;
    let before = a.handle.available(128).await.unwrap();
    // A owns the even positions: 4 keys of block 0, then block 1's.
    let first = a.handle.take(request("sae-a", 4)).await.unwrap();
    assert_eq!(first.len(), 4);
    match a.handle.take(request("sae-a", 2)).await {
        Err(OwnerError::NotThereYet(n)) => assert!(n > 0),
        other => panic!("keys the other end lacks for now were not told apart: {other:?}"),
    }
    // Kept, not erased: once B has the block, they are handed out.
    assert_eq!(a.handle.available(128).await.unwrap(), before - 4);
    feed_block(&[&b], 1, 8).await;
    let later = a.handle.take(request("sae-a", 2)).await.unwrap();
    assert_eq!(later.len(), 2);
}
