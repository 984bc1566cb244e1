//! The relay's part of a link's store: pads at the sending end of a hop (keys this end owns,
//! erased before use, from a pool erased ahead), pads at the receiving end, and relayed keys
//! held until their relay is committed (or abandoned).

use std::collections::{BTreeSet, HashSet};

use uuid::Uuid;
use zeroize::Zeroizing;

use super::{
    KeyAt, LinkStore, MAX_BLOCK_KEYS, MAX_PAD_POOL, NewBlock, Pad, PadBytes, PooledPad, Relayed,
    StoreError,
};
use crate::delivery::PendingRelay;
use crate::disk::DiskOp;
use crate::seal::Keyring;

impl LinkStore {
    /// Free keys `enc_keys` must leave: the relay's reserve, less what the pad pool holds.
    pub(super) fn reserve_left(&self) -> usize {
        self.settings.relay_reserve.saturating_sub(self.pad_pool.len())
    }

    /// Keys this end may hand out, and keys of the other end's share nobody holds.
    pub fn shares(&mut self) -> (usize, usize) {
        self.compact_others();
        (self.free.len(), self.theirs)
    }

    /// Copies the material of keys `at` (before they are erased).
    fn material_of(&self, keys: &[KeyAt]) -> Zeroizing<Vec<u8>> {
        let total = keys.iter().map(|at| self.blocks[&at.block].key_bytes as usize).sum();
        // Sized for every key, so it never grows (a grown buffer leaves an unwiped copy).
        let mut out = Zeroizing::new(Vec::with_capacity(total));
        for at in keys {
            out.extend_from_slice(self.blocks[&at.block].key(at.index));
        }
        out
    }

    /// Pads for relaying `count` keys of `key_bits`: whole keys this end owns, from the pad
    /// pool first, then free keys, erased. The pads may be used only once the returned write
    /// is durable, so that no pad can be used twice, even across a crash.
    pub fn take_pads(
        &mut self,
        count: usize,
        key_bits: u32,
    ) -> Result<(Vec<Pad>, Vec<DiskOp>), StoreError> {
        let per_key = self.parts_per_key(key_bits);
        let needed = per_key * count;
        let have = self.pad_pool.len() + self.free.len();
        if have < needed {
            return Err(StoreError::NotEnough { available: have / per_key, needed: count });
        }
        let from_pool = needed.min(self.pad_pool.len());
        let mut parts: Vec<PooledPad> = self.pad_pool.drain(..from_pool).collect();
        let fresh: Vec<KeyAt> = self.free.drain(..needed - from_pool).collect();
        let mut touched = BTreeSet::new();
        for at in fresh {
            let id = self.blocks[&at.block].ids[at.index as usize];
            parts.push((id, self.material_of(&[at])));
            self.erase(at, &mut touched);
        }
        self.stats.consumed += needed as u64;
        let mut pads = Vec::with_capacity(count);
        let mut parts = parts.into_iter();
        for _ in 0..count {
            let mine: Vec<PooledPad> = parts.by_ref().take(per_key).collect();
            let mut bytes =
                Zeroizing::new(Vec::with_capacity(mine.iter().map(|(_, m)| m.len()).sum()));
            let mut ids = Vec::with_capacity(per_key);
            for (id, material) in mine {
                ids.push(id);
                bytes.extend_from_slice(&material);
            }
            pads.push(Pad { ids, bytes });
        }
        Ok((pads, self.flush(touched)))
    }

    /// Pads to erase ahead so that the pool is at least half of the relay's reserve: the
    /// keys' material and the write that erases them; once it is durable,
    /// [`pool_filled`](Self::pool_filled) puts them in the pool. `None` when the pool is full
    /// enough.
    pub fn refill_pool(&mut self) -> Option<(Vec<PooledPad>, Vec<DiskOp>)> {
        let target = self.settings.relay_reserve.min(MAX_PAD_POOL);
        if self.pad_pool.len() >= target / 2 || self.free.is_empty() {
            return None;
        }
        let take = (target - self.pad_pool.len()).min(self.free.len());
        let keys: Vec<KeyAt> = self.free.drain(..take).collect();
        let mut touched = BTreeSet::new();
        let mut pads = Vec::with_capacity(take);
        for at in keys {
            let id = self.blocks[&at.block].ids[at.index as usize];
            pads.push((id, self.material_of(&[at])));
            self.erase(at, &mut touched);
        }
        Some((pads, self.flush(touched)))
    }

    /// Pads erased ahead are durable: they join the pool.
    pub fn pool_filled(&mut self, pads: Vec<PooledPad>) {
        self.pad_pool.extend(pads);
    }

    /// Pads erased ahead whose write failed: forgotten unused (after a restart they may come
    /// back from disk as free keys, which is safe since none was used).
    pub fn pool_not_filled(&mut self, pads: Vec<PooledPad>) {
        self.stats.dropped += pads.len() as u64;
    }

    /// At the receiving end of a hop: the pads `pads` (each the hop keys of one relayed key),
    /// which must be keys of the sender's share that nobody holds; they are erased. All or
    /// nothing. The erasure need not be durable before use: a pad that reappears after a crash
    /// belongs to the sender, which erased it durably before sending, so nobody can use it.
    pub fn use_pads(
        &mut self,
        pads: &[Vec<Uuid>],
    ) -> Result<(Vec<PadBytes>, Vec<DiskOp>), StoreError> {
        let mut seen = HashSet::new();
        for id in pads.iter().flatten() {
            let usable =
                self.index.get(id).is_some_and(|at| self.theirs_unheld(*at)) && seen.insert(*id);
            if !usable {
                return Err(StoreError::NotFound);
            }
        }
        let mut touched = BTreeSet::new();
        let mut out = Vec::with_capacity(pads.len());
        for ids in pads {
            let keys: Vec<KeyAt> = ids.iter().map(|id| self.index[id]).collect();
            out.push(self.material_of(&keys));
            for at in keys {
                self.erase(at, &mut touched);
            }
            self.stats.consumed += ids.len() as u64;
        }
        Ok((out, self.flush(touched)))
    }

    /// Stores relayed keys (their IDs and bytes) at `placement`, held until
    /// [`commit_relay`](Self::commit_relay); `None` when the relay is already stored here. The
    /// returned write must be durable before the relay is acknowledged; then
    /// [`stored`](Self::stored) (the keys stay held).
    pub fn put_relayed(
        &mut self,
        ring: &Keyring,
        relayed: Relayed<'_>,
        now_ms: u64,
    ) -> Result<Option<(u64, Vec<DiskOp>)>, StoreError> {
        let Relayed { relay, placement, keys, expires_ms, source } = relayed;
        if self.relays.contains_key(&relay) {
            return Ok(None);
        }
        let key_bytes = keys.first().map(|(_, k)| k.len()).unwrap_or(0);
        if keys.iter().any(|(_, k)| k.len() != key_bytes) {
            return Err(StoreError::Malformed("relayed keys of different sizes"));
        }
        let mut material = Zeroizing::new(Vec::with_capacity(key_bytes * keys.len()));
        for (_, bytes) in keys {
            material.extend_from_slice(bytes);
        }
        let new = NewBlock {
            ids: keys.iter().map(|(id, _)| *id).collect(),
            material,
            key_bytes: key_bytes as u32,
            placement,
        };
        if keys.len() > MAX_BLOCK_KEYS {
            return Err(StoreError::Malformed("more relayed keys than a block holds"));
        }
        let (blocks, mut ops) = self.ingest(ring, new, now_ms)?;
        let block = blocks.start;
        self.hold_block(block);
        let pending = PendingRelay { id: relay, block, expires_ms, source };
        ops.push(DiskOp::PutRelay { link: self.link, relay: pending.clone() });
        self.relays.insert(relay, pending);
        Ok(Some((block, ops)))
    }

    /// Makes a relay's keys usable; `None` when the relay is not pending here (never stored,
    /// expired, or already committed).
    pub fn commit_relay(&mut self, relay: Uuid) -> Option<Vec<DiskOp>> {
        let pending = self.relays.remove(&relay)?;
        if let Some(b) = self.blocks.get(&pending.block) {
            for index in 0..b.count() {
                self.held.remove(&KeyAt { block: pending.block, index });
            }
            if !self.unwritten.contains(&pending.block) {
                self.release_block(pending.block);
            }
        }
        Some(vec![DiskOp::RemoveRelay { link: self.link, id: relay }])
    }

    /// Erases a relay's keys (it will never be committed).
    pub fn abandon_relay(&mut self, relay: Uuid) -> Vec<DiskOp> {
        let Some(pending) = self.relays.remove(&relay) else {
            return Vec::new();
        };
        let mut touched = BTreeSet::new();
        if let Some(b) = self.blocks.get(&pending.block) {
            let keys: Vec<KeyAt> = (0..b.count())
                .filter(|index| !b.erased.contains(*index))
                .map(|index| KeyAt { block: pending.block, index })
                .collect();
            for at in keys {
                self.erase(at, &mut touched);
            }
        }
        let mut ops = self.flush(touched);
        ops.push(DiskOp::RemoveRelay { link: self.link, id: relay });
        ops
    }

    /// Whether relay `relay` is pending here.
    pub fn has_relay(&self, relay: Uuid) -> bool {
        self.relays.contains_key(&relay)
    }

    /// Relays this end generated whose commit is not confirmed yet.
    pub fn unconfirmed_relays(&self) -> Vec<Uuid> {
        let mut out: Vec<Uuid> = self.relays.values().filter(|r| r.source).map(|r| r.id).collect();
        out.sort();
        out
    }
}
