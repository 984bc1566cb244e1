//! The key ID index of a link's store: from a key ID to the key's place (its block and its
//! index there), small enough for millions of keys. The table holds only places, a word each;
//! a place's ID is read from its block, which keeps its keys' IDs in order, so no ID is kept
//! twice. IDs are hashed with foldhash under a per-process random seed (devices and peers
//! choose IDs; a seeded hash keeps them from aiming at one bucket, and SipHash took a tenth of
//! a relay hop's time).

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use uuid::Uuid;

use crate::block::Block;

/// Bits of a place that hold the key's index in its block (blocks hold far fewer keys).
const INDEX_BITS: u32 = 24;

/// Keys a block may hold for its places to be told apart.
const MAX_PLACES_PER_BLOCK: usize = 1 << INDEX_BITS;

/// A key's place: its block and its index there, in one word (block IDs below 2^40).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct KeyAt(u64);

impl KeyAt {
    pub(super) fn new(block: u64, index: u32) -> KeyAt {
        debug_assert!(block < 1 << (64 - INDEX_BITS) && (index as usize) < MAX_PLACES_PER_BLOCK);
        KeyAt((block << INDEX_BITS) | u64::from(index))
    }

    pub(super) fn block(self) -> u64 {
        self.0 >> INDEX_BITS
    }

    pub(super) fn index(self) -> u32 {
        (self.0 & ((1 << INDEX_BITS) - 1)) as u32
    }
}

/// A store's blocks by ID.
pub(super) type Blocks = BTreeMap<u64, Block>;

/// The ID of the key at `at`.
fn id_at(blocks: &Blocks, at: KeyAt) -> Option<Uuid> {
    blocks.get(&at.block())?.ids.get(at.index() as usize).copied()
}

/// Every indexed key's place. Each entry's block must be in the store's blocks while the
/// entry is here: [`KeyIndex::remove_block`] runs before a block goes.
#[derive(Default)]
pub(super) struct KeyIndex {
    table: HashTable<KeyAt>,
    hasher: DefaultHashBuilder,
}

impl KeyIndex {
    /// The place of key `id`.
    pub(super) fn get(&self, blocks: &Blocks, id: &Uuid) -> Option<KeyAt> {
        let hash = self.hasher.hash_one(id);
        self.table.find(hash, |at| id_at(blocks, *at) == Some(*id)).copied()
    }

    /// Indexes the keys of `block`, which is in `blocks` (its IDs checked to be new).
    pub(super) fn insert_block(&mut self, blocks: &Blocks, block: u64) {
        let Some(b) = blocks.get(&block) else { return };
        let hasher = &self.hasher;
        // An entry whose block were missing would hash as 0 and no longer be found: a lost
        // entry, never a wrong one (every block stays in `blocks` while it is indexed).
        let rehash = |at: &KeyAt| id_at(blocks, *at).map_or(0, |id| hasher.hash_one(id));
        self.table.reserve(b.ids.len(), rehash);
        for (index, id) in b.ids.iter().enumerate() {
            self.table.insert_unique(hasher.hash_one(id), KeyAt::new(block, index as u32), rehash);
        }
    }

    /// Forgets the keys of `block` (still in `blocks`).
    pub(super) fn remove_block(&mut self, blocks: &Blocks, block: u64) {
        let Some(b) = blocks.get(&block) else { return };
        for (index, id) in b.ids.iter().enumerate() {
            let at = KeyAt::new(block, index as u32);
            if let Ok(entry) = self.table.find_entry(self.hasher.hash_one(id), |x| *x == at) {
                entry.remove();
            }
        }
    }

    /// Keys indexed.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{KeySet, Placement};
    use crate::seal::BlockPlace;

    fn block(id: u64, ids: &[u128]) -> Block {
        Block {
            place: BlockPlace { link: Uuid::nil(), block: id },
            placement: Placement { sequence: 0, step: 1 },
            key_bytes: 4,
            created_ms: 0,
            ids: ids.iter().map(|i| Uuid::from_u128(*i)).collect(),
            material: None,
            erased: KeySet::default(),
        }
    }

    #[test]
    fn places_pack_block_and_index() {
        let at = KeyAt::new((1 << 40) - 1, (1 << 24) - 1);
        assert_eq!((at.block(), at.index()), ((1 << 40) - 1, (1 << 24) - 1));
        assert!(KeyAt::new(1, 0) > KeyAt::new(0, 1000), "places sort by block, then index");
    }

    #[test]
    fn finds_keys_by_id_until_their_block_is_removed() {
        let mut blocks = Blocks::new();
        let mut index = KeyIndex::default();
        for b in 0..50u64 {
            let ids: Vec<u128> = (0..100).map(|i| u128::from(b) * 1000 + i).collect();
            blocks.insert(b, block(b, &ids));
            index.insert_block(&blocks, b);
        }
        assert_eq!(index.len(), 5000);
        assert_eq!(index.get(&blocks, &Uuid::from_u128(7042)), Some(KeyAt::new(7, 42)));
        assert_eq!(index.get(&blocks, &Uuid::from_u128(7100)), None);
        index.remove_block(&blocks, 7);
        blocks.remove(&7);
        assert_eq!(index.len(), 4900);
        assert_eq!(index.get(&blocks, &Uuid::from_u128(7042)), None);
        assert_eq!(index.get(&blocks, &Uuid::from_u128(49099)), Some(KeyAt::new(49, 99)));
    }
}
