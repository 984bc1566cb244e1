//! The relay's part of a link's store: pads at the sending end of a hop (keys this end owns,
//! erased before use, from a pool erased ahead), pads at the receiving end, relayed keys held
//! until their relay is committed (or abandoned), and the far end's records of relays it
//! settled (committed or refused), which answer a source that asks again.

use std::collections::{BTreeSet, HashMap, HashSet};

use uuid::Uuid;
use zeroize::Zeroizing;

use super::{
    KeyAt, LinkStore, MAX_BLOCK_KEYS, MAX_PAD_POOL, NewBlock, Pad, PadBytes, PooledPad, Relayed,
    StoreError,
};
use crate::delivery::{RelayRecord, RelayState};
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
        let mut touched = BTreeSet::new();
        let fresh = self.erase_free_front(needed - from_pool, &mut touched)?;
        let parts: Vec<PooledPad> = self.pad_pool.drain(..from_pool).chain(fresh).collect();
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
        let mut touched = BTreeSet::new();
        // A block that cannot be read back now is tried again at the next refill.
        let pads = self.erase_free_front(take, &mut touched).ok()?;
        Some((pads, self.flush(touched)))
    }

    /// The IDs and material of the first `count` free keys, which are then erased (their
    /// blocks' erasure written by the caller's flush). An error changes nothing.
    fn erase_free_front(
        &mut self,
        count: usize,
        touched: &mut BTreeSet<u64>,
    ) -> Result<Vec<PooledPad>, StoreError> {
        let keys: Vec<KeyAt> = self.free.iter().take(count).copied().collect();
        self.load_material(keys.iter().copied())?;
        let mut out = Vec::with_capacity(keys.len());
        for at in &keys {
            let id = self.blocks[&at.block()].ids[at.index() as usize];
            let bytes = self
                .material_of(&[*at])
                .ok_or(StoreError::Malformed("a free key has no material"))?;
            out.push((id, bytes));
        }
        self.free.drain(..keys.len());
        for at in keys {
            self.erase(at, touched);
        }
        Ok(out)
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
        let mut seen = HashSet::with_capacity(pads.iter().map(Vec::len).sum());
        let mut places = Vec::with_capacity(pads.len());
        for ids in pads {
            let mut keys = Vec::with_capacity(ids.len());
            for id in ids {
                match self.key_at(id) {
                    Some(at) if self.theirs_unheld(at) && seen.insert(*id) => keys.push(at),
                    _ => return Err(StoreError::NotFound),
                }
            }
            places.push(keys);
        }
        self.load_material(places.iter().flatten().copied())?;
        let mut out = Vec::with_capacity(pads.len());
        for keys in &places {
            out.push(
                self.material_of(keys)
                    .ok_or(StoreError::Malformed("a stored key has no material"))?,
            );
        }
        let mut touched = BTreeSet::new();
        for keys in places {
            self.stats.consumed += keys.len() as u64;
            for at in keys {
                self.erase(at, &mut touched);
            }
        }
        Ok((out, self.flush(touched)))
    }

    /// Stores relayed keys (their IDs and bytes) at `placement`: held until
    /// [`commit_relay`](Self::commit_relay), or usable at once when `relayed.usable` (the far
    /// end of a relay whose source holds its copy already). `None` when the relay is already
    /// stored here (or settled: a retry); refused when it was refused here. The returned write
    /// must be durable before the relay is acknowledged; then [`stored`](Self::stored).
    pub fn put_relayed(
        &mut self,
        ring: &Keyring,
        relayed: Relayed<'_>,
        now_ms: u64,
    ) -> Result<Option<(u64, Vec<DiskOp>)>, StoreError> {
        let Relayed { relay, placement, keys, expires_ms, source, usable } = relayed;
        match self.relays.get(&relay).map(|r| r.state) {
            Some(RelayState::Refused) => return Err(StoreError::RelayRefused(relay)),
            Some(_) => return Ok(None),
            None => {}
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
        let state = if usable { RelayState::Committed } else { RelayState::Pending };
        if !usable {
            self.hold_block(block);
        }
        let record = RelayRecord { id: relay, block, expires_ms, source, state };
        ops.push(DiskOp::PutRelay { link: self.link, relay: record.clone() });
        self.relays.insert(relay, record);
        Ok(Some((block, ops)))
    }

    /// Makes a pending relay's keys usable. With `keep_until` (the far end) the outcome is
    /// kept until then, so that the source asking again learns it; without (the source), the
    /// record goes. `Some` (with the write, empty when it was committed already) when the
    /// relay is committed here; `None` when it is not stored here (never arrived, expired,
    /// abandoned or refused).
    pub fn commit_relay(&mut self, relay: Uuid, keep_until: Option<u64>) -> Option<Vec<DiskOp>> {
        let record = self.relays.get_mut(&relay)?;
        match record.state {
            RelayState::Committed => return Some(Vec::new()),
            RelayState::Refused => return None,
            RelayState::Pending => {}
        }
        let block = record.block;
        let op = match keep_until {
            Some(until) => {
                record.state = RelayState::Committed;
                record.expires_ms = until;
                DiskOp::PutRelay { link: self.link, relay: record.clone() }
            }
            None => {
                self.relays.remove(&relay);
                DiskOp::RemoveRelay { link: self.link, id: relay }
            }
        };
        self.release_relay_block(block);
        Some(vec![op])
    }

    /// Lets go of the keys a pending relay held (it is committed).
    fn release_relay_block(&mut self, block: u64) {
        if let Some(b) = self.blocks.get(&block) {
            for index in 0..b.count() {
                self.held.remove(&KeyAt::new(block, index));
            }
            if !self.unwritten.contains(&block) {
                self.release_block(block);
            }
        }
    }

    /// The far end settles a relay its source asks about and it does not hold: refused until
    /// `until`, so that a copy still under way is turned away. Nothing for a relay it holds.
    pub fn refuse_relay(&mut self, relay: Uuid, until: u64) -> Vec<DiskOp> {
        if self.relays.contains_key(&relay) {
            return Vec::new();
        }
        let record = RelayRecord {
            id: relay,
            block: 0,
            expires_ms: until,
            source: false,
            state: RelayState::Refused,
        };
        self.relays.insert(relay, record.clone());
        vec![DiskOp::PutRelay { link: self.link, relay: record }]
    }

    /// Erases a pending relay's keys (it will never be committed). Nothing for a relay that is
    /// settled: its keys are usable, or it has none.
    pub fn abandon_relay(&mut self, relay: Uuid) -> Vec<DiskOp> {
        if !self.relays.get(&relay).is_some_and(RelayRecord::pending) {
            return Vec::new();
        }
        let record = self.relays.remove(&relay).expect("checked above");
        let mut touched = BTreeSet::new();
        if let Some(b) = self.blocks.get(&record.block) {
            let keys: Vec<KeyAt> = (0..b.count())
                .filter(|index| !b.erased.contains(*index))
                .map(|index| KeyAt::new(record.block, index))
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
        self.relays.get(&relay).is_some_and(RelayRecord::pending)
    }

    /// Whether this store holds a record of relay `relay` (pending or settled).
    pub fn knows_relay(&self, relay: Uuid) -> bool {
        self.relays.contains_key(&relay)
    }

    /// The source's pending relays whose blocks hold keys, by block: a reservation of their
    /// keys by the far end proves the far end made them usable.
    pub(super) fn sourced_pending_blocks(&self) -> HashMap<u64, Uuid> {
        self.relays.values().filter(|r| r.source && r.pending()).map(|r| (r.block, r.id)).collect()
    }

    /// Settled records past their time, and pending relays received here that were never
    /// committed in time: the writes that forget and erase them.
    pub(super) fn sweep_relays(&mut self, now_ms: u64) -> Vec<DiskOp> {
        let (mut expired_pending, mut expired_settled) = (Vec::new(), Vec::new());
        for r in self.relays.values().filter(|r| r.expires_ms <= now_ms) {
            match r.state {
                RelayState::Pending if !r.source => expired_pending.push(r.id),
                RelayState::Pending => {}
                _ => expired_settled.push(r.id),
            }
        }
        let mut ops = Vec::new();
        for relay in expired_pending {
            ops.extend(self.abandon_relay(relay));
        }
        for relay in expired_settled {
            self.relays.remove(&relay);
            ops.push(DiskOp::RemoveRelay { link: self.link, id: relay });
        }
        ops
    }

    /// Relays this end generated whose commit is not confirmed yet.
    pub fn unconfirmed_relays(&self) -> Vec<Uuid> {
        let mut out: Vec<Uuid> =
            self.relays.values().filter(|r| r.source && r.pending()).map(|r| r.id).collect();
        out.sort();
        out
    }
}
