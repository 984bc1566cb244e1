//! Figures of the KMS core on its own, in process (no HTTP, no TLS): what the store, its owner
//! task and its database cost before the agent's interfaces add theirs.
//!
//! cargo bench -p qkdn-kms --bench store [-- --keys N]
//!
//! * keys stored from a device feed (blocks of 1,024 keys of 256 bits, durable) at one end;
//! * memory per stored key: the process's resident memory grown while a store fills;
//! * `enc_keys` with number=16 from 16 concurrent tasks at one end, each take reserved at the
//!   other end's owner, then confirmed: keys/s;
//! * the same with 1 key per request from 64 tasks: requests/s;
//! * the once-a-second sweep of a store whose link has a largest key age, when nothing is old
//!   enough to erase: µs per sweep.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use qkdn_kms::block::Placement;
use qkdn_kms::delivery::Delivery;
use qkdn_kms::disk::{Disk, DiskBlocks};
use qkdn_kms::link::{LinkSettings, LinkStore, NewBlock, ReserveError, StoreError};
use qkdn_kms::node::LOADED_BLOCKS;
use qkdn_kms::owner::{LinkHandle, OwnerError, PeerRefusal, ReserveFuture, Reserver, TakeRequest};
use qkdn_kms::seal::{Keyring, StoreKey};
use qkdn_kms::writer::Writer;
use uuid::Uuid;
use zeroize::Zeroizing;

const LINK: Uuid = Uuid::from_u128(100);
const BLOCK: usize = 1024;

#[derive(Default)]
struct Wire {
    other: Mutex<Option<LinkHandle>>,
}

impl Reserver for Wire {
    fn reserve(&self, _link: Uuid, _remote: Uuid, deliveries: Vec<Delivery>) -> ReserveFuture {
        let other = self.other.lock().unwrap().clone();
        Box::pin(async move {
            let other = other.ok_or_else(|| PeerRefusal::Failed("not connected".into()))?;
            other.reserve(deliveries).await.map_err(|e| match e {
                ReserveError::Unusable(lacking) => PeerRefusal::Unusable(lacking),
                ReserveError::Malformed(reason) => PeerRefusal::Failed(reason.into()),
            })
        })
    }
}

fn start(
    node: Uuid,
    other: Uuid,
    dir: &std::path::Path,
    ring: &Arc<Keyring>,
) -> (LinkHandle, Arc<Wire>) {
    let disk = Arc::new(Disk::open(&dir.join(format!("{node}.redb"))).unwrap());
    let settings = LinkSettings { capacity: 10_000_000, max_age_ms: None, relay_reserve: 0 };
    let ring = qkdn_kms::seal::shared((**ring).clone());
    let source = Arc::new(DiskBlocks::new(disk.clone(), ring.clone()));
    let store = LinkStore::new(LINK, node, other, settings, 0).with_source(source, LOADED_BLOCKS);
    let wire = Arc::new(Wire::default());
    let handle = LinkHandle::spawn(store, ring, Writer::start(disk).unwrap(), wire.clone());
    (handle, wire)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn block(first: u128, sequence: u64) -> NewBlock {
    let ids: Vec<Uuid> = (0..BLOCK as u128).map(|i| Uuid::from_u128(first + i)).collect();
    let mut material = Zeroizing::new(vec![0u8; BLOCK * 32]);
    for (i, chunk) in material.chunks_exact_mut(32).enumerate() {
        chunk[..16].copy_from_slice(&(first + i as u128).to_le_bytes());
    }
    NewBlock { ids, material, key_bytes: 32, placement: Placement { sequence, step: 1 } }
}

/// Feeds `keys` keys to the handles, blocks concurrently per end; returns keys/s per end.
async fn feed(handles: &[LinkHandle], keys: usize) -> f64 {
    let started = Instant::now();
    let blocks = keys / BLOCK;
    let mut tasks = Vec::new();
    for handle in handles {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let mut inflight = Vec::new();
            for b in 0..blocks {
                let handle = handle.clone();
                inflight.push(tokio::spawn(async move {
                    let first = 1_000_000 + (b * BLOCK) as u128;
                    handle.ingest(block(first, (b * BLOCK) as u64), 1).await.unwrap();
                }));
                if inflight.len() >= 16 {
                    inflight.remove(0).await.unwrap();
                }
            }
            for task in inflight {
                task.await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (blocks * BLOCK) as f64 / started.elapsed().as_secs_f64()
}

/// A store of `keys` keys whose link has a largest key age, with nothing old enough to erase:
/// microseconds per sweep (a store's owner sweeps once a second).
fn sweep_cost(ring: &Keyring, keys: usize) -> f64 {
    let settings =
        LinkSettings { capacity: keys * 2, max_age_ms: Some(3_600_000), relay_reserve: 0 };
    let mut store = LinkStore::new(LINK, Uuid::from_u128(1), Uuid::from_u128(2), settings, 0);
    for b in 0..keys / BLOCK {
        let first = 1_000_000 + (b * BLOCK) as u128;
        let (blocks, _) = store.ingest(ring, block(first, (b * BLOCK) as u64), 1_000).unwrap();
        store.stored(blocks);
    }
    let rounds = 20;
    let started = Instant::now();
    for round in 0..rounds {
        assert!(store.sweep(2_000 + round).is_empty(), "nothing is old enough");
    }
    started.elapsed().as_secs_f64() * 1e6 / rounds as f64
}

async fn takes(handle: &LinkHandle, tasks: usize, number: usize, seconds: f64) -> (f64, f64) {
    let started = Instant::now();
    let mut running = Vec::new();
    for _ in 0..tasks {
        let handle = handle.clone();
        running.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed().as_secs_f64() < seconds {
                let request = TakeRequest {
                    master: "sae-a".into(),
                    slaves: vec!["sae-b".into()],
                    number,
                    size_bits: 256,
                    expires_ms: u64::MAX,
                    keep_for_others: 0,
                    chunk: None,
                };
                match handle.take(request).await {
                    Ok(_) => done += 1,
                    Err(OwnerError::Store(StoreError::NotEnough { .. })) => break,
                    Err(e) => panic!("take: {e}"),
                }
            }
            done
        }));
    }
    let mut requests = 0;
    for task in running {
        requests += task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    (requests as f64 / elapsed, (requests * number as u64) as f64 / elapsed)
}

fn main() {
    let mut keys = 1_048_576usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--keys" {
            keys = args.next().and_then(|n| n.parse().ok()).expect("--keys N");
        }
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ring = Arc::new(Keyring::new(StoreKey::generate()));
        let (a, a_wire) = start(Uuid::from_u128(1), Uuid::from_u128(2), dir.path(), &ring);
        let (b, b_wire) = start(Uuid::from_u128(2), Uuid::from_u128(1), dir.path(), &ring);
        *a_wire.other.lock().unwrap() = Some(b.clone());
        *b_wire.other.lock().unwrap() = Some(a.clone());

        let before = rss_bytes();
        let rate = feed(std::slice::from_ref(&a), keys).await;
        let grown = rss_bytes().saturating_sub(before);
        println!("## qkdn-kms in process\n");
        println!("| figure | value |\n|---|---|");
        println!("| keys stored from a device feed, one end, blocks of {BLOCK} | {rate:.0} keys/s |");
        println!(
            "| memory per stored key ({keys} keys of 256 bits, resident growth) | {:.0} bytes |",
            grown as f64 / keys as f64
        );
        feed(std::slice::from_ref(&b), keys).await;
        let (req, per_s) = takes(&a, 16, 16, 3.0).await;
        println!("| enc_keys number=16, 16 tasks (reserved at the other owner) | {per_s:.0} keys/s ({req:.0} requests/s) |");
        let (req, _) = takes(&a, 64, 1, 3.0).await;
        println!("| enc_keys 1 key, 64 tasks | {req:.0} requests/s |");
        let sweep = sweep_cost(&ring, keys);
        println!("| a sweep of a store of {keys} keys with a largest key age, nothing to erase | {sweep:.1} µs |");
    });
}
