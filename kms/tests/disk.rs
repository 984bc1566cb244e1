//! The key database against a model: random sequences of stores, erasures, drops, store-key
//! rotations and reopenings, after each of which what the database loads (and opens) is what
//! the model says; block IDs are never reused; no plaintext key reaches the file.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use qkdn_kms::block::{Block, BlockSource, KeySet, Placement};
use qkdn_kms::disk::{Disk, DiskBlocks, DiskOp};
use qkdn_kms::seal::{BlockPlace, Keyring, StoreKey};
use uuid::Uuid;
use zeroize::Zeroizing;

#[derive(Clone, Debug)]
enum Step {
    /// Store a block of `keys` keys on link `link`.
    Put { link: u8, keys: u8 },
    /// Erase key `key` (modulo its size) of the `block`-th stored block (modulo their number).
    Erase { block: usize, key: u8 },
    /// Rotate the store key and re-wrap `batch` blocks per transaction.
    Rotate { batch: usize },
    /// Close the database and open it again.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..3, 1u8..6).prop_map(|(link, keys)| Step::Put { link, keys }),
        5 => (any::<usize>(), any::<u8>()).prop_map(|(block, key)| Step::Erase { block, key }),
        1 => (1usize..4).prop_map(|batch| Step::Rotate { batch }),
        1 => Just(Step::Reopen),
    ]
}

/// What the model holds of a block: its material, key by key, and which keys are erased.
struct Modelled {
    ids: Vec<Uuid>,
    keys: Vec<[u8; 16]>,
    erased: KeySet,
}

/// Recognisable bytes, to look for in the file.
const MARK: &[u8; 8] = b"PLAINKEY";

fn material(n: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(MARK);
    key[8..].copy_from_slice(&n.to_be_bytes());
    key
}

fn check(disk: &Disk, ring: &Keyring, model: &BTreeMap<BlockPlace, Modelled>) {
    let loaded = disk.load().unwrap();
    let places: Vec<BlockPlace> = loaded.iter().map(|s| s.block.place).collect();
    assert_eq!(places, model.keys().copied().collect::<Vec<_>>(), "the blocks stored");
    for stored in loaded {
        let want = &model[&stored.block.place];
        assert_eq!(stored.erased, want.erased);
        assert_eq!(stored.block.ids, want.ids);
        let block = stored.block.open(ring, stored.erased.clone()).unwrap();
        for (i, key) in want.keys.iter().enumerate() {
            // An opened block holds no erased key's bytes.
            let want: &[u8] = if want.erased.contains(i as u32) { &[0; 16] } else { key };
            assert_eq!(block.key(i as u32), Some(want), "key {i} of {:?}", block.place);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_database_holds_what_the_model_says(steps in proptest::collection::vec(step(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.redb");
        let mut disk = Disk::open(&path).unwrap();
        let mut ring = Keyring::new(StoreKey::generate());
        let mut model: BTreeMap<BlockPlace, Modelled> = BTreeMap::new();
        let mut issued: BTreeMap<u8, u64> = BTreeMap::new();
        let mut counter = 0u64;
        for step in steps {
            match step {
                Step::Put { link, keys } => {
                    let link_id = Uuid::from_u128(link as u128 + 1);
                    let block = disk.next_block(link_id).unwrap();
                    let last = issued.get(&link).copied();
                    prop_assert!(last.is_none_or(|l| block > l), "block IDs never reused");
                    issued.insert(link, block);
                    let place = BlockPlace { link: link_id, block };
                    let mut bytes = Zeroizing::new(Vec::new());
                    let mut ids = Vec::new();
                    let mut modelled = Vec::new();
                    for _ in 0..keys {
                        counter += 1;
                        let key = material(counter);
                        bytes.extend_from_slice(&key);
                        modelled.push(key);
                        ids.push(Uuid::from_u128(counter as u128));
                    }
                    let block = Block {
                        place,
                        placement: Placement { sequence: counter, step: 1 },
                        key_bytes: 16,
                        created_ms: counter,
                        ids: ids.clone(),
                        material: Some(bytes),
                        erased: KeySet::default(),
                    };
                    disk.apply(&[DiskOp::Put(block.seal(&ring).unwrap())]).unwrap();
                    model.insert(place, Modelled { ids, keys: modelled, erased: KeySet::default() });
                }
                Step::Erase { block, key } => {
                    if model.is_empty() {
                        continue;
                    }
                    let place = *model.keys().nth(block % model.len()).unwrap();
                    let entry = model.get_mut(&place).unwrap();
                    entry.erased.insert(key as u32 % entry.keys.len() as u32);
                    if entry.erased.len() as usize == entry.keys.len() {
                        model.remove(&place);
                        disk.apply(&[DiskOp::Drop(place)]).unwrap();
                    } else {
                        let erased = entry.erased.clone();
                        disk.apply(&[DiskOp::Erase { place, erased }]).unwrap();
                    }
                }
                Step::Rotate { batch } => {
                    ring.rotate_to(StoreKey::generate());
                    // Until the re-wrap is done, blocks open under either key.
                    check(&disk, &ring, &model);
                    let rewrapped = disk.rewrap_all(&ring, batch).unwrap();
                    prop_assert_eq!(rewrapped, model.len());
                    ring.forget_previous();
                }
                Step::Reopen => {
                    drop(disk);
                    disk = Disk::open(&path).unwrap();
                }
            }
            check(&disk, &ring, &model);
        }
        drop(disk);
        let file = std::fs::read(&path).unwrap();
        prop_assert!(!file.windows(8).any(|w| w == MARK), "plaintext key material on disk");
    }
}

/// A loaded block of 4-byte keys with `material`, IDs 9, 10, ...
fn four_byte_keys(place: BlockPlace, material: &[u8]) -> Block {
    Block {
        place,
        placement: Placement { sequence: 0, step: 1 },
        key_bytes: 4,
        created_ms: 0,
        ids: (0..material.len() as u128 / 4).map(|i| Uuid::from_u128(9 + i)).collect(),
        material: Some(Zeroizing::new(material.to_vec())),
        erased: KeySet::default(),
    }
}

#[test]
fn a_block_under_an_unknown_store_key_is_reported_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::open(&dir.path().join("keys.redb")).unwrap();
    let ring = Keyring::new(StoreKey::generate());
    let place = BlockPlace { link: Uuid::from_u128(1), block: 0 };
    let block = four_byte_keys(place, b"abcd");
    disk.apply(&[DiskOp::Put(block.seal(&ring).unwrap())]).unwrap();
    let stored = disk.load().unwrap().remove(0);
    let other = Keyring::new(StoreKey::generate());
    let error = stored.block.open(&other, KeySet::default()).unwrap_err();
    assert!(error.to_string().contains("not loaded"), "{error}");
    assert!(!format!("{stored:?}").contains("abcd"));
}

#[test]
fn a_blocks_material_is_read_back_from_the_database_only_while_it_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(Disk::open(&dir.path().join("keys.redb")).unwrap());
    let ring = Keyring::new(StoreKey::generate());
    let place = BlockPlace { link: Uuid::from_u128(1), block: 3 };
    let block = four_byte_keys(place, b"abcdefgh");
    let source = DiskBlocks::new(disk.clone(), qkdn_kms::seal::shared(ring.clone()));
    assert!(source.material(place).unwrap_err().to_string().contains("not in the database"));
    disk.apply(&[DiskOp::Put(block.seal(&ring).unwrap())]).unwrap();
    assert_eq!(source.material(place).unwrap().as_slice(), b"abcdefgh");
    let moved = BlockPlace { link: Uuid::from_u128(2), ..place };
    assert!(source.material(moved).is_err(), "another link's block is not there");
    let other =
        DiskBlocks::new(disk.clone(), qkdn_kms::seal::shared(Keyring::new(StoreKey::generate())));
    assert!(
        other.material(place).unwrap_err().to_string().contains("not loaded"),
        "another store key"
    );
    disk.apply(&[DiskOp::Drop(place)]).unwrap();
    assert!(source.material(place).is_err(), "a dropped block's material is gone");
}

#[test]
fn rows_of_one_delivery_written_before_rows_held_several_still_load() {
    use qkdn_kms::delivery::{Delivery, DeliveryState};
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
    const ROWS: TableDefinition<'_, &[u8; 40], &[u8]> =
        TableDefinition::new("deliveries-by-expiry");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.redb");
    let link = Uuid::from_u128(1);
    let delivery = |id: u128| Delivery {
        state: DeliveryState::Reserved,
        master: "m".into(),
        slaves: vec!["s".into()],
        fetched: Vec::new(),
        parts: vec![Uuid::from_u128(id)],
        size_bits: 256,
        expires_ms: 77,
        chunk: None,
    };
    {
        // The previous version's row: link, expiry, delivery ID → one delivery.
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        let mut row = [0u8; 40];
        row[..16].copy_from_slice(link.as_bytes());
        row[16..24].copy_from_slice(&77u64.to_be_bytes());
        row[24..].copy_from_slice(Uuid::from_u128(5).as_bytes());
        let json = serde_json::to_vec(&delivery(5)).unwrap();
        tx.open_table(ROWS).unwrap().insert(&row, json.as_slice()).unwrap();
        tx.commit().unwrap();
        let read = db.begin_read().unwrap();
        assert_eq!(read.open_table(ROWS).unwrap().len().unwrap(), 1);
    }
    let disk = Disk::open(&path).unwrap();
    let group = Uuid::from_u128(900);
    disk.apply(&[DiskOp::PutDeliveries {
        link,
        group,
        expires_ms: 77,
        deliveries: vec![delivery(6), delivery(7)],
    }])
    .unwrap();
    let mut rows = disk.deliveries().unwrap();
    rows.sort_by_key(|(_, g)| g.id);
    let groups: Vec<(Uuid, Vec<Uuid>)> = rows
        .iter()
        .map(|(l, g)| {
            assert_eq!(*l, link);
            (g.id, g.deliveries.iter().map(|d| d.parts[0]).collect())
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            (Uuid::from_u128(5), vec![Uuid::from_u128(5)]),
            (group, vec![Uuid::from_u128(6), Uuid::from_u128(7)]),
        ]
    );
    disk.apply(&[DiskOp::RemoveDeliveries { link, group, expires_ms: 77 }]).unwrap();
    assert_eq!(disk.deliveries().unwrap().len(), 1, "the row of two went as one");
}
