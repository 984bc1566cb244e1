//! Migration of a key store in the agent's previous format, written here as that format wrote
//! it (a row per key sealed under the store key, keyed by link, block sequence and index;
//! deliveries and pending relays as JSON): keys regrouped into blocks (an erased key splits a
//! block), a relay's keys two positions apart made one block, a relay whose keys cannot be
//! one block dropped, an unreadable key skipped, a delivery still fetchable with its bytes, and
//! the old file gone.

use std::sync::Arc;

use qkdn_kms::delivery::Delivery;
use qkdn_kms::legacy::Migrated;
use qkdn_kms::link::LinkSettings;
use qkdn_kms::node::{LinkConfig, NodeStores};
use qkdn_kms::owner::{PeerRefusal, ReserveFuture, Reserver, Settle};
use qkdn_kms::seal::{Keyring, StoreKey};
use redb::{Database, TableDefinition};
use uuid::Uuid;

const KEYS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("keys-by-arrival");
const DELIVERIES: TableDefinition<'_, &[u8; 40], &[u8]> =
    TableDefinition::new("deliveries-by-expiry");
const RELAYS: TableDefinition<'_, &[u8; 16], &[u8]> = TableDefinition::new("relays");
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const LINK: Uuid = Uuid::from_u128(12);
const A: Uuid = Uuid::from_u128(1);
const B: Uuid = Uuid::from_u128(2);

struct Nobody;

impl Reserver for Nobody {
    fn reserve(&self, _link: Uuid, _remote: Uuid, _deliveries: Vec<Delivery>) -> ReserveFuture {
        Box::pin(async { Err(PeerRefusal::Failed("no peer in this test".into())) })
    }
}

fn material(n: u128) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Writes key `n` at (sequence, index) as the previous format did.
fn put_key(
    table: &mut redb::Table<'_, &[u8; 32], &[u8]>,
    key: &StoreKey,
    sequence: u64,
    index: u32,
    n: u128,
) {
    let mut row = [0u8; 32];
    row[..16].copy_from_slice(LINK.as_bytes());
    row[16..24].copy_from_slice(&sequence.to_be_bytes());
    row[24..28].copy_from_slice(&index.to_be_bytes());
    let id = Uuid::from_u128(n);
    let mut value = Vec::new();
    value.extend_from_slice(id.as_bytes());
    value.extend_from_slice(&128u32.to_le_bytes());
    value.extend_from_slice(&(1_000 + n as u64).to_le_bytes());
    value.extend_from_slice(&key.seal_legacy(LINK, id, &material(n)));
    table.insert(&row, value.as_slice()).unwrap();
}

fn write_previous_format(path: &std::path::Path) {
    let key = StoreKey::from_hex(KEY_HEX).unwrap();
    let db = Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut keys = tx.open_table(KEYS).unwrap();
        // A device block at sequence 0 whose key 2 was erased.
        for index in [0u32, 1, 3, 4, 5] {
            put_key(&mut keys, &key, 0, index, 10 + index as u128);
        }
        // A relay's keys two positions apart, each its own row.
        for (i, sequence) in [100u64, 102, 104].into_iter().enumerate() {
            put_key(&mut keys, &key, sequence, 0, 30 + i as u128);
        }
        // A relay whose keys cannot make one block.
        for (i, sequence) in [200u64, 201, 205].into_iter().enumerate() {
            put_key(&mut keys, &key, sequence, 0, 40 + i as u128);
        }
        // A key sealed under another store key.
        put_key(&mut keys, &StoreKey::generate(), 300, 0, 50);

        let mut relays = tx.open_table(RELAYS).unwrap();
        let relay = |ids: &[u128]| {
            let keys: Vec<String> = ids.iter().map(|n| Uuid::from_u128(*n).to_string()).collect();
            serde_json::json!({"link": LINK, "keys": keys, "expires_ms": u64::MAX, "source": false})
                .to_string()
        };
        relays.insert(Uuid::from_u128(7).as_bytes(), relay(&[30, 31, 32]).as_bytes()).unwrap();
        relays.insert(Uuid::from_u128(8).as_bytes(), relay(&[40, 41, 42]).as_bytes()).unwrap();

        // Key 11 delivered to sae-b's master at B, waiting here for sae-a.
        let mut deliveries = tx.open_table(DELIVERIES).unwrap();
        let delivery = serde_json::json!({
            "state": "reserved", "master": "sae-b", "slaves": ["sae-a"], "fetched": [],
            "parts": [Uuid::from_u128(11)], "size_bits": 128, "expires_ms": u64::MAX,
        });
        let mut row = [0u8; 40];
        row[..16].copy_from_slice(LINK.as_bytes());
        row[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        row[24..].copy_from_slice(Uuid::from_u128(11).as_bytes());
        deliveries.insert(&row, delivery.to_string().as_bytes()).unwrap();
    }
    tx.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_previous_format_is_migrated_into_blocks_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("kms.redb");
    write_previous_format(&old);
    let ring = Keyring::new(StoreKey::from_hex(KEY_HEX).unwrap());
    let path = dir.path().join("keys.redb");
    let stores = NodeStores::open(&path, Some(&old), A, ring, Arc::new(Nobody)).unwrap();
    assert_eq!(
        stores.migrated(),
        Some(Migrated { keys: 8, blocks: 3, deliveries: 1, relays: 1, unreadable: 1, dropped: 3 })
    );
    assert!(!old.exists(), "the previous store is deleted once migrated");

    let settings = LinkSettings { capacity: 1_000, max_age_ms: None, relay_reserve: 0 };
    assert!(stores.set_links(&[LinkConfig { link: LINK, remote: B, settings }]).is_empty());
    let handle = stores.link(LINK).unwrap().handle;
    let stats = handle.stats().await.unwrap();
    assert_eq!((stats.stored, stats.deliveries, stats.pending_relays), (8, 1, 1), "{stats:?}");
    // A (the smaller ID) owns even positions: 0 and 4 of the device block are free here.
    assert_eq!(stats.free_owned, 2);

    let keys = stores.fetch(LINK, "sae-a", "sae-b", vec![Uuid::from_u128(11)], 1).await.unwrap();
    assert_eq!(keys[0].1.as_slice(), material(11).as_slice(), "the same bytes");
    // The relay's keys (positions 100-104: A's) are usable once it is committed.
    assert!(handle.commit_relay(Uuid::from_u128(7), Settle::default()).await.unwrap());
    assert_eq!(handle.stats().await.unwrap().free_owned, 5);
}
