//! The store invariants (DESIGN.md §7) between two in-process ends of a link, each with its own
//! durable database, the other end's reservation called directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use zeroize::Zeroizing;

use super::crypt::StoreKey;
use super::db::{Db, Delivery};
use super::store::*;
use crate::device::KeyBlock;

const SEAL: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const LINK: Uuid = Uuid::from_u128(0xa0b0);
const A: Uuid = Uuid::from_u128(1);
const B: Uuid = Uuid::from_u128(2);

/// The other end, reached directly.
struct Direct(Arc<KeyStores>, Uuid);

impl PeerSync for Direct {
    fn reserve(
        &self,
        _remote: Uuid,
        link: Uuid,
        deliveries: Vec<(Uuid, Delivery)>,
    ) -> ReserveFuture {
        let (other, from) = (self.0.clone(), self.1);
        Box::pin(async move { other.reserve(from, link, deliveries).await })
    }
}

/// A peer that is down.
struct Down;

impl PeerSync for Down {
    fn reserve(&self, _: Uuid, _: Uuid, _: Vec<(Uuid, Delivery)>) -> ReserveFuture {
        Box::pin(async { Err(ReserveError::Failed("unreachable".into())) })
    }
}

fn open(
    dir: &std::path::Path,
    node: Uuid,
    remote: Uuid,
    settings: StoreSettings,
) -> Arc<KeyStores> {
    let db = Db::open(dir).unwrap();
    let links = HashMap::from([(LINK, remote)]);
    KeyStores::open(node, StoreKey::from_hex(SEAL).unwrap(), db, settings, &links).unwrap()
}

/// Block `sequence`: `n` keys of 32 bytes, the same at both ends.
fn block(sequence: u64, n: usize) -> KeyBlock {
    let ids: Vec<Uuid> = (0..n)
        .map(|i| Uuid::from_u128(((sequence as u128) << 32) | i as u128 | 1 << 100))
        .collect();
    let mut material = Zeroizing::new(vec![0u8; 32 * n]);
    for (i, byte) in material.iter_mut().enumerate() {
        *byte = (sequence as usize * 7 + i * 13) as u8;
    }
    KeyBlock::new(LINK, sequence, 32, ids, material)
}

struct Pair {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    a: Arc<KeyStores>,
    b: Arc<KeyStores>,
}

async fn pair(blocks: u64, per_block: usize) -> Pair {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(dirs.0.path(), A, B, StoreSettings::default());
    let b = open(dirs.1.path(), B, A, StoreSettings::default());
    for s in 0..blocks {
        a.ingest(block(s, per_block)).await.unwrap();
        b.ingest(block(s, per_block)).await.unwrap();
    }
    Pair { _dirs: dirs, a, b }
}

fn slaves(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn take<'a>(
    master: &'a str,
    slaves: &'a [String],
    number: usize,
    size_bits: u32,
    ttl: Option<Duration>,
) -> Take<'a> {
    Take { link: LINK, master, slaves, number, size_bits, ttl, keep_for_others: 0 }
}

#[tokio::test]
async fn the_same_id_gives_the_same_bytes_at_both_ends() {
    let p = pair(4, 8).await;
    let to_b = Direct(p.b.clone(), A);
    let keys = p.a.take(&take("m", &slaves(&["s"]), 5, 256, None), &to_b).await.unwrap();
    let ids: Vec<Uuid> = keys.iter().map(|(id, _)| *id).collect();
    let fetched = p.b.fetch(LINK, "s", "m", &ids).await.unwrap();
    for ((i, x), (j, y)) in keys.iter().zip(&fetched) {
        assert_eq!(i, j);
        assert_eq!(x.as_slice(), y.as_slice());
    }
    // Longer keys are whole stored keys concatenated, the same at both ends.
    let long = p.a.take(&take("m", &slaves(&["s"]), 2, 520, None), &to_b).await.unwrap();
    assert_eq!(long[0].1.len(), 65);
    let again = p.b.fetch(LINK, "s", "m", &[long[0].0, long[1].0]).await.unwrap();
    assert_eq!(long[1].1.as_slice(), again[1].1.as_slice());
}

#[tokio::test]
async fn a_key_goes_once_to_the_named_parties_only() {
    let p = pair(2, 8).await;
    let to_b = Direct(p.b.clone(), A);
    let keys = p.a.take(&take("m", &slaves(&["s1", "s2"]), 2, 256, None), &to_b).await.unwrap();
    let ids: Vec<Uuid> = keys.iter().map(|(id, _)| *id).collect();
    assert_eq!(p.b.fetch(LINK, "x", "m", &ids).await.unwrap_err(), StoreError::NotAuthorized);
    assert_eq!(p.b.fetch(LINK, "s1", "other", &ids).await.unwrap_err(), StoreError::NotAuthorized);
    assert_eq!(
        p.b.fetch(LINK, "s1", "m", &[Uuid::from_u128(99)]).await.unwrap_err(),
        StoreError::NotFound
    );
    // A failed request consumes nothing: both slaves still get both keys, once each.
    p.b.fetch(LINK, "s1", "m", &ids).await.unwrap();
    assert_eq!(p.b.fetch(LINK, "s1", "m", &ids).await.unwrap_err(), StoreError::NotFound);
    p.b.fetch(LINK, "s2", "m", &ids[..1]).await.unwrap();
    p.b.fetch(LINK, "s2", "m", &ids[1..]).await.unwrap();
    assert_eq!(p.b.fetch(LINK, "s2", "m", &ids[1..]).await.unwrap_err(), StoreError::NotFound);
    // The owner's copy is gone: it cannot be given out again, nor fetched at the owner's end.
    assert!(p.a.fetch(LINK, "s1", "m", &ids).await.is_err());
}

#[tokio::test]
async fn keys_delivered_before_a_reroute_are_fetched_after_it() {
    // B's pair moved from LINK to OTHER between the master's enc_keys (served from LINK) and
    // the slave's dec_keys (routed to OTHER): the slave still gets each key, once.
    const OTHER: Uuid = Uuid::from_u128(0xa0c0);
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(dirs.0.path(), A, B, StoreSettings::default());
    let links = HashMap::from([(LINK, A), (OTHER, Uuid::from_u128(3))]);
    let db = Db::open(dirs.1.path()).unwrap();
    let key = StoreKey::from_hex(SEAL).unwrap();
    let b = KeyStores::open(B, key, db, StoreSettings::default(), &links).unwrap();
    for s in 0..2 {
        a.ingest(block(s, 8)).await.unwrap();
        b.ingest(block(s, 8)).await.unwrap();
    }
    let to_b = Direct(b.clone(), A);
    let keys = a.take(&take("m", &slaves(&["s"]), 3, 256, None), &to_b).await.unwrap();
    let ids: Vec<Uuid> = keys.iter().map(|(id, _)| *id).collect();
    assert_eq!(b.fetch(OTHER, "x", "m", &ids).await.unwrap_err(), StoreError::NotAuthorized);
    let fetched = b.fetch(OTHER, "s", "m", &ids).await.unwrap();
    for ((i, x), (j, y)) in keys.iter().zip(&fetched) {
        assert_eq!((i, x.as_slice()), (j, y.as_slice()));
    }
    assert_eq!(b.fetch(OTHER, "s", "m", &ids).await.unwrap_err(), StoreError::NotFound);
    assert_eq!(b.fetch(LINK, "s", "m", &ids).await.unwrap_err(), StoreError::NotFound);
    let unknown = Uuid::from_u128(0xdead);
    assert_eq!(b.fetch(unknown, "s", "m", &ids).await.unwrap_err(), StoreError::NoLink(unknown));
}

#[tokio::test]
async fn the_two_ends_never_hand_out_the_same_key() {
    let p = pair(5, 7).await;
    let (to_a, to_b) = (Direct(p.a.clone(), B), Direct(p.b.clone(), A));
    let mut from_a = Vec::new();
    let mut from_b = Vec::new();
    // Interleaved, until both run dry.
    loop {
        let x = p.a.take(&take("ma", &slaves(&["sb"]), 1, 256, None), &to_b).await;
        let y = p.b.take(&take("mb", &slaves(&["sa"]), 1, 256, None), &to_a).await;
        if let Ok(k) = &x {
            from_a.push(k[0].0);
        }
        if let Ok(k) = &y {
            from_b.push(k[0].0);
        }
        if x.is_err() && y.is_err() {
            break;
        }
    }
    assert_eq!(from_a.len() + from_b.len(), 35, "every key went out exactly once");
    assert!(from_a.iter().all(|id| !from_b.contains(id)));
    assert!(matches!(
        p.a.take(&take("ma", &slaves(&["sb"]), 1, 256, None), &to_b).await,
        Err(StoreError::NotEnough { available: 0, needed: 1 })
    ));
}

#[tokio::test]
async fn a_failed_reservation_hands_out_nothing_and_keeps_the_keys() {
    let p = pair(1, 8).await;
    let before = p.a.available(LINK, 256);
    let err = p.a.take(&take("m", &slaves(&["s"]), 2, 256, None), &Down).await.unwrap_err();
    assert!(matches!(err, StoreError::Peer(_)), "{err}");
    assert_eq!(p.a.available(LINK, 256), before);
    // Keys the other end lacks are dropped (an empty other end: every one of a few tries).
    let dirs = tempfile::tempdir().unwrap();
    let lonely = open(dirs.path(), B, A, StoreSettings::default());
    let to_lonely = Direct(lonely.clone(), A);
    assert!(p.a.take(&take("m", &slaves(&["s"]), 1, 256, None), &to_lonely).await.is_err());
    assert_eq!(p.a.available(LINK, 256), before - 4);
    // When the other end holds later keys only, everything before them goes at once and the
    // request succeeds with the first keys both ends hold.
    lonely.ingest(block(7, 8)).await.unwrap();
    p.a.ingest(block(7, 8)).await.unwrap();
    let keys = p.a.take(&take("m", &slaves(&["s"]), 1, 256, None), &to_lonely).await.unwrap();
    assert_eq!(
        keys[0].0,
        block(7, 8).keys().nth(1).unwrap().0,
        "the first key of A's half of block 7"
    );
}

#[tokio::test]
async fn delivered_keys_survive_a_restart_and_are_never_given_again() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ids;
    let bytes;
    {
        let a = open(dirs.0.path(), A, B, StoreSettings::default());
        let b = open(dirs.1.path(), B, A, StoreSettings::default());
        a.ingest(block(0, 8)).await.unwrap();
        b.ingest(block(0, 8)).await.unwrap();
        let keys =
            a.take(&take("m", &slaves(&["s"]), 3, 256, None), &Direct(b.clone(), A)).await.unwrap();
        ids = keys.iter().map(|(id, _)| *id).collect::<Vec<_>>();
        bytes = keys.iter().map(|(_, k)| k.to_vec()).collect::<Vec<_>>();
        // Let the owner's erasure reach the disk before "crashing".
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = open(dirs.0.path(), A, B, StoreSettings::default());
    let b = open(dirs.1.path(), B, A, StoreSettings::default());
    let fetched = b.fetch(LINK, "s", "m", &ids).await.unwrap();
    assert_eq!(fetched.iter().map(|(_, k)| k.to_vec()).collect::<Vec<_>>(), bytes);
    let rest =
        a.take(&take("m", &slaves(&["s"]), 1, 256, None), &Direct(b.clone(), A)).await.unwrap();
    assert!(!ids.contains(&rest[0].0));
    assert_eq!(a.available(LINK, 256), 0, "4 owned keys: 3 given, 1 now");
}

#[tokio::test]
async fn expired_keys_are_erased_at_both_ends() {
    let p = pair(1, 8).await;
    let to_b = Direct(p.b.clone(), A);
    let keys =
        p.a.take(&take("m", &slaves(&["s"]), 1, 256, Some(Duration::from_millis(30))), &to_b)
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(p.b.sweep() >= 1);
    assert_eq!(p.b.fetch(LINK, "s", "m", &[keys[0].0]).await.unwrap_err(), StoreError::NotFound);
    // Stock older than the link's TTL goes at both ends.
    let ttl = HashMap::from([(
        LINK,
        LinkSettings { remote: B, max_age: Some(Duration::from_millis(1)), relay_reserve: 0 },
    )]);
    p.a.set_links(&ttl);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(p.a.sweep() > 0);
    assert_eq!(p.a.available(LINK, 256), 0);
}

#[tokio::test]
async fn key_bytes_are_not_in_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), A, B, StoreSettings::default());
    let b = block(3, 4);
    let secret: Vec<u8> = b.keys().next().unwrap().1.to_vec();
    a.ingest(b).await.unwrap();
    drop(a);
    let file = std::fs::read(dir.path().join("kms.redb")).unwrap();
    assert!(!file.windows(16).any(|w| w == &secret[..16]), "plaintext key in the store file");
    // And a store opened with another sealing key cannot read them.
    let db = Db::open(dir.path()).unwrap();
    let other = StoreKey::from_hex(&SEAL.replace('8', "9")).unwrap();
    let stores =
        KeyStores::open(A, other, db, StoreSettings::default(), &HashMap::from([(LINK, B)]))
            .unwrap();
    assert_eq!(stores.available(LINK, 256), 0);
}

#[tokio::test]
async fn a_full_store_makes_room_from_the_idle_share_and_keeps_serving_the_other() {
    // Both ends hold at most 32 keys; A's master SAE consumes, B's never does. Forty blocks of
    // eight keys pass: five times the capacity, and every key A owns is delivered.
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let small = || StoreSettings { capacity: 32, ..StoreSettings::default() };
    let a = open(dirs.0.path(), A, B, small());
    let b = open(dirs.1.path(), B, A, small());
    let to_b = Direct(b.clone(), A);
    let mut delivered = 0;
    for sequence in 0..40 {
        a.ingest(block(sequence, 8)).await.unwrap();
        b.ingest(block(sequence, 8)).await.unwrap();
        // A owns the even positions: four keys of each block.
        assert_eq!(a.available(LINK, 256), 4, "block {sequence}");
        for _ in 0..4 {
            let keys = a.take(&take("m", &slaves(&["s"]), 1, 256, None), &to_b).await.unwrap();
            let fetched = b.fetch(LINK, "s", "m", &[keys[0].0]).await.unwrap();
            assert_eq!(fetched[0].1, keys[0].1);
            delivered += 1;
        }
    }
    assert_eq!(delivered, 160);
    for end in [&a, &b] {
        let stats = &end.stats()[0];
        assert!(stats.stored <= 32 && stats.dropped > 0, "{stats:?}");
    }
}

#[tokio::test]
async fn keys_held_by_deliveries_are_never_made_room_from() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(dirs.0.path(), A, B, StoreSettings::default());
    let b = open(dirs.1.path(), B, A, StoreSettings { capacity: 10, ..StoreSettings::default() });
    a.ingest(block(0, 8)).await.unwrap();
    b.ingest(block(0, 8)).await.unwrap();
    // A delivers its four keys; B holds them for the slave, who has not fetched them yet.
    let keys =
        a.take(&take("m", &slaves(&["s"]), 4, 256, None), &Direct(b.clone(), A)).await.unwrap();
    // Eight more keys need six places: B's own four free keys go, the held four stay, and the
    // block cannot be kept.
    b.ingest(block(1, 8)).await.unwrap();
    let stats = &b.stats()[0];
    assert_eq!((stats.stored, stats.dropped), (4, 12), "{stats:?}");
    let ids: Vec<Uuid> = keys.iter().map(|(id, _)| *id).collect();
    assert_eq!(b.fetch(LINK, "s", "m", &ids).await.unwrap().len(), 4);
}

#[tokio::test]
async fn enc_keys_leaves_the_relay_its_reserve() {
    let p = pair(1, 8).await;
    let to_b = Direct(p.b.clone(), A);
    p.a.set_links(&HashMap::from([(
        LINK,
        LinkSettings { remote: B, max_age: None, relay_reserve: 3 },
    )]));
    assert_eq!(p.a.available(LINK, 256), 1);
    p.a.take(&take("m", &slaves(&["s"]), 1, 256, None), &to_b).await.unwrap();
    assert!(matches!(
        p.a.take(&take("m", &slaves(&["s"]), 1, 256, None), &to_b).await,
        Err(StoreError::NotEnough { available: 0, needed: 1 })
    ));
    // The relay itself may use the reserve.
    assert_eq!(p.a.take_pads(LINK, 3, 256).await.unwrap().len(), 3);
}

#[tokio::test]
async fn pads_are_erased_on_disk_before_they_wait_in_the_pool() {
    let p = pair(2, 16).await;
    p.a.set_links(&HashMap::from([(
        LINK,
        LinkSettings { remote: B, max_age: None, relay_reserve: 6 },
    )]));
    // A owns 16 of the 32 keys; the pool takes 6 of them, which still count as the reserve.
    p.a.refill_pad_pools().await.unwrap();
    let stats = &p.a.stats()[0];
    assert_eq!((stats.pad_pool, stats.free_owned), (6, 10));
    assert_eq!(p.a.available(LINK, 256), 10);
    // Pool keys are gone from the database: a restart does not bring them back.
    let dir = p._dirs.0.path().to_path_buf();
    let pads = p.a.take_pads(LINK, 2, 256).await.unwrap();
    let pooled: Vec<Uuid> = pads.iter().flat_map(|pad| pad.ids.clone()).collect();
    drop(pads);
    let Pair { _dirs, a, b } = p;
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reopened = open(&dir, A, B, StoreSettings::default());
    let stats = &reopened.stats()[0];
    assert_eq!(stats.free_owned, 10, "the 6 pooled keys stay erased");
    let err = reopened.use_pads(LINK, B, &[pooled]).unwrap_err();
    assert!(matches!(err, StoreError::NotAuthorized | StoreError::NotFound), "{err:?}");
    drop(_dirs);
}

#[tokio::test]
async fn a_block_the_other_end_dropped_is_dropped_here_at_once() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(dirs.0.path(), A, B, StoreSettings::default());
    let b = open(dirs.1.path(), B, A, StoreSettings::default());
    for s in 0..3 {
        a.ingest(block(s, 64)).await.unwrap();
        if s != 1 {
            b.ingest(block(s, 64)).await.unwrap(); // B dropped block 1 (its store was full)
        }
    }
    let to_b = Direct(b.clone(), A);
    // Block 0 (32 keys of A's) serves; the next request meets block 1, which goes as a whole
    // (one refusal, not one per request), and is served from block 2.
    a.take(&take("m", &slaves(&["s"]), 32, 256, None), &to_b).await.unwrap();
    let keys = a.take(&take("m", &slaves(&["s"]), 4, 256, None), &to_b).await.unwrap();
    let block_2: Vec<Uuid> = block(2, 64).keys().map(|(id, _)| id).collect();
    assert!(keys.iter().all(|(id, _)| block_2.contains(id)));
    let stats = &a.stats()[0];
    assert_eq!(stats.dropped, 32, "A's half of block 1, at once");
    assert_eq!(stats.free_owned, 28);
}
