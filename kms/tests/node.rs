//! A node's stores over a real database: links started as the configuration names them, keys
//! fetched from the store that holds their delivery after the pair moved to another link, a
//! link's keys kept on disk while the configuration does not name it, and blocks under a store
//! key the node does not hold reported rather than opened.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qkdn_kms::block::Placement;
use qkdn_kms::delivery::Delivery;
use qkdn_kms::link::{LinkSettings, NewBlock, ReserveError};
use qkdn_kms::node::{LinkConfig, NodeStores};
use qkdn_kms::owner::{PeerRefusal, ReserveFuture, Reserver, TakeRequest};
use qkdn_kms::seal::{Keyring, StoreKey};
use uuid::Uuid;
use zeroize::Zeroizing;

const A: Uuid = Uuid::from_u128(1);
const B: Uuid = Uuid::from_u128(2);
const C: Uuid = Uuid::from_u128(3);
const AB: Uuid = Uuid::from_u128(12);
const AC: Uuid = Uuid::from_u128(13);
const BC: Uuid = Uuid::from_u128(23);
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Reservations go to the other node's store of the same link.
#[derive(Default)]
struct Wire {
    other: Mutex<Option<Arc<NodeStores>>>,
}

impl Reserver for Wire {
    fn reserve(&self, link: Uuid, _remote: Uuid, deliveries: Vec<Delivery>) -> ReserveFuture {
        let other = self.other.lock().unwrap().clone();
        Box::pin(async move {
            let entry = other
                .and_then(|o| o.link(link))
                .ok_or_else(|| PeerRefusal::Failed("no such link there".into()))?;
            entry.handle.reserve(deliveries).await.map_err(|e| match e {
                ReserveError::Unusable(lacking) => PeerRefusal::Unusable(lacking),
                ReserveError::Malformed(reason) => PeerRefusal::Failed(reason.into()),
            })
        })
    }
}

fn settings() -> LinkSettings {
    LinkSettings { capacity: 10_000, max_age_ms: None, relay_reserve: 0 }
}

fn config(link: Uuid, remote: Uuid) -> LinkConfig {
    LinkConfig { link, remote, settings: settings() }
}

fn open(dir: &std::path::Path, node: Uuid, wire: Arc<Wire>) -> Arc<NodeStores> {
    let path = dir.join(format!("{node}.redb"));
    // A closed node's writer may still be closing the database.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ring = Keyring::new(StoreKey::from_hex(KEY_HEX).unwrap());
        match NodeStores::open(&path, None, node, ring, wire.clone()) {
            Ok(stores) => return Arc::new(stores),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    }
}

fn block(first: u128, keys: usize, sequence: u64) -> NewBlock {
    let ids: Vec<Uuid> = (0..keys as u128).map(|i| Uuid::from_u128(first + i)).collect();
    let material = ids.iter().flat_map(|id| id.as_u128().to_be_bytes()).collect();
    NewBlock {
        ids,
        material: Zeroizing::new(material),
        key_bytes: 16,
        placement: Placement { sequence, step: 1 },
    }
}

fn request(number: usize) -> TakeRequest {
    TakeRequest {
        master: "sae-a".into(),
        slaves: vec!["sae-b".into()],
        number,
        size_bits: 128,
        expires_ms: u64::MAX,
        keep_for_others: 0,
        chunk: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_links_start_from_its_configuration_and_keep_their_keys_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (wire_a, wire_b) = (Arc::new(Wire::default()), Arc::new(Wire::default()));
    let a = open(dir.path(), A, wire_a.clone());
    let b = open(dir.path(), B, wire_b.clone());
    *wire_a.other.lock().unwrap() = Some(b.clone());
    *wire_b.other.lock().unwrap() = Some(a.clone());
    assert!(a.set_links(&[config(AB, B), config(AC, C)]).is_empty());
    assert!(b.set_links(&[config(AB, A), config(BC, C)]).is_empty());
    for node in [&a, &b] {
        node.link(AB).unwrap().handle.ingest(block(100, 10, 0), 1).await.unwrap();
    }
    let keys = a.link(AB).unwrap().handle.take(request(2)).await.unwrap();

    // The pair now uses link BC at B: its keys delivered over AB are still found.
    let ids: Vec<Uuid> = keys.iter().map(|(id, _)| *id).collect();
    let fetched = b.fetch(BC, "sae-b", "sae-a", ids.clone(), 2).await.unwrap();
    assert_eq!(fetched[0].1.as_slice(), keys[0].1.as_slice());
    assert!(b.fetch(BC, "sae-b", "sae-a", ids, 2).await.is_err(), "fetched once");

    // A restarts with a configuration that does not name AB: its keys stay on disk.
    let before = a.link(AB).unwrap().handle.stats().await.unwrap().stored;
    *wire_b.other.lock().unwrap() = None;
    drop(a);
    let a = open(dir.path(), A, wire_a.clone());
    assert!(a.set_links(&[config(AC, C)]).is_empty());
    assert!(a.link(AB).is_none());
    assert!(a.set_links(&[config(AC, C), config(AB, B)]).is_empty());
    let after = a.link(AB).unwrap().handle.stats().await.unwrap();
    assert_eq!(after.stored, before, "the link's keys came back with it");
    assert_eq!(a.stats().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_under_another_store_key_are_reported_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), A, Arc::new(Wire::default()));
    assert!(a.set_links(&[config(AB, B)]).is_empty());
    a.link(AB).unwrap().handle.ingest(block(100, 4, 0), 1).await.unwrap();
    drop(a);
    let path = dir.path().join(format!("{A}.redb"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let other = loop {
        let ring = Keyring::new(StoreKey::generate());
        match NodeStores::open(&path, None, A, ring, Arc::new(Wire::default())) {
            Ok(stores) => break stores,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    };
    let failed = other.set_links(&[config(AB, B)]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].to_string().contains("not loaded"), "{}", failed[0]);
    assert_eq!(other.link(AB).unwrap().handle.stats().await.unwrap().stored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_key_rotation_rewraps_every_block_while_the_stores_serve() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{A}.redb"));
    let (old, new) = (StoreKey::generate(), StoreKey::generate());
    let open_with = |ring: Keyring| loop {
        match NodeStores::open(&path, None, A, ring.clone(), Arc::new(Wire::default())) {
            Ok(stores) => break stores,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let stores = open_with(Keyring::new(old.clone()));
    assert!(stores.set_links(&[config(AB, B)]).is_empty());
    for (n, first) in [100u128, 2_000].into_iter().enumerate() {
        stores
            .link(AB)
            .unwrap()
            .handle
            .ingest(block(first, 1_500, n as u64 * 1_500), 1)
            .await
            .unwrap();
    }
    drop(stores);

    // Started with the new key and the old one as previous: everything opens, new blocks are
    // sealed under the new key, and the rotation re-wraps the rest.
    let stores = open_with(Keyring::with_previous(new.clone(), vec![old.clone()]));
    assert!(stores.set_links(&[config(AB, B)]).is_empty());
    let handle = stores.link(AB).unwrap().handle;
    handle.ingest(block(9_000, 10, 3_000), 1).await.unwrap();
    assert_eq!(stores.finish_rotation().await.unwrap(), 4, "the two device blocks, cut in four");
    assert_eq!(stores.finish_rotation().await.unwrap(), 0, "done once");
    let stored = handle.stats().await.unwrap().stored;
    drop((handle, stores));

    // The old key is no longer needed.
    let stores = open_with(Keyring::new(new));
    assert!(stores.set_links(&[config(AB, B)]).is_empty());
    assert_eq!(stores.link(AB).unwrap().handle.stats().await.unwrap().stored, stored);
    drop(stores);
    // Without the rotation, the old key would have been: the new key alone opens nothing of it.
    let stores = open_with(Keyring::new(old));
    assert_eq!(stores.set_links(&[config(AB, B)]).len(), 5, "every block is under the new key");
}
