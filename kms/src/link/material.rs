//! Which blocks of a link's store hold their material in memory, and copying keys out of
//! them. A store given a [`BlockSource`] keeps a few blocks loaded (those its steps loaded
//! last) and reads the others back when a step needs their keys, so that a store of millions
//! of keys holds their IDs and places but not their bytes; blocks not yet durable stay loaded
//! (the disk does not hold them yet). A store without a source keeps every block loaded.

use std::collections::VecDeque;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::{KeyAt, LinkStore, StoreError};
use crate::block::BlockSource;

/// The loaded blocks of a store that reads material back.
pub(super) struct Loaded {
    source: Arc<dyn BlockSource>,
    /// Blocks kept loaded at most (beyond those not yet durable, and those one step needs).
    keep: usize,
    /// Loaded blocks, the longest loaded first (IDs of blocks since dropped are skipped).
    order: VecDeque<u64>,
}

impl LinkStore {
    /// Reads the material of blocks it does not keep loaded from `source`, keeping at most
    /// `keep` blocks loaded between steps.
    pub fn with_source(mut self, source: Arc<dyn BlockSource>, keep: usize) -> LinkStore {
        let order = self.blocks.values().filter(|b| b.loaded()).map(|b| b.place.block).collect();
        self.loaded = Some(Loaded { source, keep, order });
        self.trim_loaded();
        self
    }

    /// Blocks whose material is in memory.
    pub fn loaded_blocks(&self) -> usize {
        self.blocks.values().filter(|b| b.loaded()).count()
    }

    /// Block `block` was loaded (stored, or opened at restore).
    pub(super) fn note_loaded(&mut self, block: u64) {
        if let Some(loaded) = &mut self.loaded {
            loaded.order.push_back(block);
        }
    }

    /// Unloads the longest-loaded durable blocks beyond the budget.
    pub(super) fn trim_loaded(&mut self) {
        let Some(loaded) = &mut self.loaded else { return };
        let mut turns = loaded.order.len();
        while loaded.order.len() > loaded.keep && turns > 0 {
            turns -= 1;
            let Some(block) = loaded.order.pop_front() else { break };
            if self.unwritten.contains(&block) {
                loaded.order.push_back(block);
            } else if let Some(b) = self.blocks.get_mut(&block) {
                b.unload();
            }
        }
    }

    /// Loads the blocks of `keys` that are not loaded (after unloading others beyond the
    /// budget). An error, when a block cannot be read back, changes no key.
    pub(super) fn load_material(
        &mut self,
        keys: impl IntoIterator<Item = KeyAt>,
    ) -> Result<(), StoreError> {
        self.trim_loaded();
        let mut missing: Vec<u64> = keys
            .into_iter()
            .map(KeyAt::block)
            .filter(|block| self.blocks.get(block).is_some_and(|b| !b.loaded()))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        for block in missing {
            let unreadable = |reason: String| StoreError::Unreadable { block, reason };
            let Some(loaded) = &mut self.loaded else {
                return Err(unreadable("no copy of its material to read".into()));
            };
            let b = self.blocks.get_mut(&block).ok_or_else(|| unreadable("gone".into()))?;
            let material =
                loaded.source.material(b.place).map_err(|e| unreadable(e.to_string()))?;
            if !b.load(material) {
                return Err(unreadable("its material is not the size of its keys".into()));
            }
            loaded.order.push_back(block);
        }
        Ok(())
    }

    /// The material of keys `keys`, concatenated (their blocks loaded); `None` when a key is
    /// erased or its block is not loaded.
    pub(super) fn material_of(&self, keys: &[KeyAt]) -> Option<Zeroizing<Vec<u8>>> {
        let mut parts = Vec::with_capacity(keys.len());
        for at in keys {
            let block = self.blocks.get(&at.block())?;
            if block.erased.contains(at.index()) {
                return None;
            }
            parts.push(block.key(at.index())?);
        }
        // Sized for every key, so it never grows (a grown buffer leaves an unwiped copy).
        let mut out = Zeroizing::new(Vec::with_capacity(parts.iter().map(|k| k.len()).sum()));
        for key in parts {
            out.extend_from_slice(key);
        }
        Some(out)
    }

    /// The delivered key made of the stored keys at `keys`, cut to `size_bits`.
    pub(super) fn assemble(&self, keys: &[KeyAt], size_bits: u32) -> Option<Zeroizing<Vec<u8>>> {
        let mut out = self.material_of(keys)?;
        out.truncate(size_bits as usize / 8);
        (out.len() == size_bits as usize / 8).then_some(out)
    }
}
