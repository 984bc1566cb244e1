//! One link's key store, as its single owner holds it: the link's blocks, which of their keys
//! this end owns, which are free, held by a delivery or erased, and the deliveries under way.
//! Every method is synchronous and returns the [`DiskOp`]s that make its change durable; the
//! owner writes them before it answers anybody (so that what was answered survives a crash),
//! and nothing else touches the store.
//!
//! * [`LinkStore::ingest`] refuses a key ID it already holds, gives the block an ID of its own,
//!   makes room at capacity from the larger half (this end's free keys or the other end's), and
//!   returns the write; the keys become usable with [`LinkStore::stored`] once it is durable.
//! * [`LinkStore::take`] (the owner's side of `enc_keys`) holds keys this end owns for new
//!   deliveries, checking the guarantee kept for the link's other applications in the same
//!   step; [`LinkStore::confirm`] erases them once the other end reserved them,
//!   [`LinkStore::abort`] frees them when it did not.
//! * [`LinkStore::reserve`] (the other end) records such deliveries after checking every part.
//! * [`LinkStore::fetch`] (`dec_keys`) gives a reserved key to each named slave once.
//! * [`LinkStore::sweep`] erases expired deliveries and keys older than the link's largest age.
//! * [`LinkStore::recoverable`] lists deliveries whose request is gone (found after a restart):
//!   only those may be sent to the other end again, never one still in flight.
//! * The relay: [`LinkStore::take_pads`] (the sending end of a hop; keys this end owns, from a
//!   pool erased ahead by [`LinkStore::refill_pool`] first), [`LinkStore::use_pads`] (the
//!   receiving end), [`LinkStore::put_relayed`] (relayed keys, held) and
//!   [`LinkStore::commit_relay`] / [`LinkStore::abandon_relay`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::block::{Block, KeySet, Placement};
use crate::delivery::{Delivery, DeliveryState, PendingRelay};
use crate::disk::{DiskOp, StoredBlock};
use crate::seal::{BlockPlace, Keyring, SealError};

/// Why a store operation did not happen; each leaves the store as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Not enough keys owned here.
    #[error("not enough key material: {available} keys available, {needed} needed")]
    NotEnough {
        /// Keys this end may hand out now.
        available: usize,
        /// Keys the request needs.
        needed: usize,
    },
    /// The keys there are kept for the guarantees of the link's other SAE pairs.
    #[error(
        "not enough key material: {available} keys available beyond those kept for the link's other applications, {needed} needed"
    )]
    KeptForOthers {
        /// Keys this request could take.
        available: usize,
        /// Keys the request needs.
        needed: usize,
    },
    /// A key ID is unknown, already fetched, expired, or not delivered for the caller.
    #[error("one or more keys specified are not found on KME")]
    NotFound,
    /// A block repeats a key ID this store holds (or repeats one of its own).
    #[error("key ID {0} is already in the store of this link")]
    DuplicateKeyId(Uuid),
    /// A block is malformed (no keys, or material of the wrong length).
    #[error("malformed key block: {0}")]
    Malformed(&'static str),
    /// The store is full of keys held by deliveries: the block cannot be kept.
    #[error("the key store is full of keys held by deliveries")]
    Full,
}

/// Why the other end of a link refused a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveError {
    /// Parts it lacks or cannot give (not there, not the caller's, already held), and the
    /// earliest stream position it holds for the link.
    Unusable(Vec<Uuid>, Option<u64>),
    /// The request itself is malformed.
    Malformed(&'static str),
}

/// Settings of a link's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSettings {
    /// Keys the store holds at most.
    pub capacity: usize,
    /// Largest key age, ms (the smallest TTL of the link's applications), if any.
    pub max_age_ms: Option<u64>,
    /// Free keys `enc_keys` leaves for the relay's pads (pads erased ahead count towards it).
    pub relay_reserve: usize,
}

/// Pads a link's pool holds at most.
const MAX_PAD_POOL: usize = 16_384;

/// Keys a stored block holds at most (a device's larger blocks are cut).
pub const MAX_BLOCK_KEYS: usize = 1024;

/// Pad material for one relayed key: the hop keys it is made of, concatenated.
pub struct Pad {
    /// The hop keys.
    pub ids: Vec<Uuid>,
    /// Their material.
    pub bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Pad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pad").field("ids", &self.ids).finish_non_exhaustive()
    }
}

/// A key erased on disk, kept in memory until it pads a relayed key: its ID and bytes.
pub type PooledPad = (Uuid, Zeroizing<Vec<u8>>);

/// The material of one pad, at the receiving end of a hop.
pub type PadBytes = Zeroizing<Vec<u8>>;

/// Relayed keys arriving at an end of a virtual link.
#[derive(Clone, Copy, Debug)]
pub struct Relayed<'a> {
    /// The relay that brought them.
    pub relay: Uuid,
    /// Their place in the virtual link's key stream.
    pub placement: Placement,
    /// Their IDs and bytes.
    pub keys: &'a [Issued],
    /// When they are erased if the relay is not committed, ms since the Unix epoch.
    pub expires_ms: u64,
    /// This end generated them (it confirms the commit).
    pub source: bool,
}

/// A block as a device (or a relay) delivered it.
pub struct NewBlock {
    /// The keys' IDs, in order.
    pub ids: Vec<Uuid>,
    /// Their material, concatenated.
    pub material: Zeroizing<Vec<u8>>,
    /// Bytes per key.
    pub key_bytes: u32,
    /// Their place in the key stream.
    pub placement: Placement,
}

/// What `enc_keys` asks of the store.
#[derive(Clone, Copy, Debug)]
pub struct Take<'a> {
    /// The master SAE.
    pub master: &'a str,
    /// The slave SAEs.
    pub slaves: &'a [String],
    /// How many keys.
    pub number: usize,
    /// Their size, bits.
    pub size_bits: u32,
    /// When the slaves' time to fetch them ends, ms since the Unix epoch.
    pub expires_ms: u64,
    /// Keys (of `size_bits`) that must stay for the link's other SAE pairs.
    pub keep_for_others: usize,
}

/// A key handed out: its ID and bytes.
pub type Issued = (Uuid, Zeroizing<Vec<u8>>);

/// What a take produced: the deliveries to reserve at the other end, the keys to answer with
/// once they are, and the write that records the deliveries here.
pub struct Taken {
    /// The deliveries (each one key).
    pub deliveries: Vec<Delivery>,
    /// The keys.
    pub issued: Vec<Issued>,
    /// The write.
    pub ops: Vec<DiskOp>,
}

/// Counters of a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Keys held (both halves, deliveries included).
    pub stored: usize,
    /// Keys this end may hand out now.
    pub free_owned: usize,
    /// Keys of the other end's share nobody holds.
    pub theirs: usize,
    /// Deliveries (both states).
    pub deliveries: usize,
    /// Keys stored since start.
    pub filled: u64,
    /// Keys consumed since start.
    pub consumed: u64,
    /// Keys dropped: full store, or lacking at the other end.
    pub dropped: u64,
    /// Pads erased ahead for the relay, held in memory.
    pub pad_pool: usize,
    /// Size of the stored keys, bits (0 before the first block).
    pub key_bits: u32,
    /// Relays whose keys are stored here but not usable yet.
    pub pending_relays: usize,
}

/// A key's place: its block and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct KeyAt {
    block: u64,
    index: u32,
}

/// One link's key store.
pub struct LinkStore {
    link: Uuid,
    local: Uuid,
    remote: Uuid,
    settings: LinkSettings,
    next_block: u64,
    blocks: BTreeMap<u64, Block>,
    /// Blocks written but not yet durable: their keys are not usable.
    unwritten: BTreeSet<u64>,
    /// Every key of every block held, by ID.
    index: HashMap<Uuid, KeyAt>,
    /// Keys this end owns and nobody holds, oldest first.
    free: VecDeque<KeyAt>,
    /// Keys of the other end's share, oldest first (entries of keys since held or erased are
    /// skipped when met).
    others: VecDeque<KeyAt>,
    /// Keys held by a delivery.
    held: HashSet<KeyAt>,
    /// Deliveries by ID.
    deliveries: HashMap<Uuid, Delivery>,
    /// Deliveries whose request is waiting for the other end.
    in_flight: HashSet<Uuid>,
    /// Relays whose keys are stored here but not usable yet, by relay ID.
    relays: HashMap<Uuid, PendingRelay>,
    /// Pads ready for the relay: keys this end owned, already erased on disk, kept in memory
    /// only until they pad a relayed key (a crash loses them, which is what erasure means).
    pad_pool: VecDeque<PooledPad>,
    /// Keys held (not erased).
    stored: usize,
    /// Keys of the other end's share that nobody holds (kept exact at every change, so that
    /// figures cost nothing; `others` may also hold entries of keys since held or erased).
    theirs: usize,
    key_bits: u32,
    stats: LinkStats,
}

impl std::fmt::Debug for LinkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkStore")
            .field("link", &self.link)
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

impl LinkStore {
    /// An empty store of `link` between `local` and `remote`, numbering blocks from
    /// `next_block`.
    pub fn new(
        link: Uuid,
        local: Uuid,
        remote: Uuid,
        settings: LinkSettings,
        next_block: u64,
    ) -> LinkStore {
        LinkStore {
            link,
            local,
            remote,
            settings,
            next_block,
            blocks: BTreeMap::new(),
            unwritten: BTreeSet::new(),
            index: HashMap::new(),
            free: VecDeque::new(),
            others: VecDeque::new(),
            held: HashSet::new(),
            deliveries: HashMap::new(),
            in_flight: HashSet::new(),
            relays: HashMap::new(),
            pad_pool: VecDeque::new(),
            stored: 0,
            theirs: 0,
            key_bits: 0,
            stats: LinkStats::default(),
        }
    }

    /// Loads what the disk holds of this link: its blocks (opened under `ring`), deliveries
    /// and pending relays. Blocks that fail to open are returned as errors and left out.
    pub fn restore(
        &mut self,
        ring: &Keyring,
        blocks: Vec<StoredBlock>,
        deliveries: Vec<Delivery>,
        relays: Vec<PendingRelay>,
    ) -> Vec<SealError> {
        let mut failed = Vec::new();
        for stored in blocks {
            match stored.block.open(ring, stored.erased) {
                Ok(block) => {
                    self.next_block = self.next_block.max(block.place.block + 1);
                    self.key_bits = block.key_bytes * 8;
                    for (index, id) in block.ids.iter().enumerate() {
                        self.index
                            .insert(*id, KeyAt { block: block.place.block, index: index as u32 });
                    }
                    self.stored += (block.count() - block.erased.len()) as usize;
                    self.blocks.insert(block.place.block, block);
                }
                Err(e) => failed.push(e),
            }
        }
        for delivery in deliveries {
            let Some(id) = delivery.id() else { continue };
            for part in &delivery.parts {
                if let Some(at) = self.index.get(part) {
                    self.held.insert(*at);
                }
            }
            self.deliveries.insert(id, delivery);
        }
        for relay in relays {
            self.hold_block(relay.block);
            self.relays.insert(relay.id, relay);
        }
        let ids: Vec<u64> = self.blocks.keys().copied().collect();
        for block in ids {
            self.release_block(block);
        }
        failed
    }

    /// The link.
    pub fn link(&self) -> Uuid {
        self.link
    }

    /// The link's other end.
    pub fn remote(&self) -> Uuid {
        self.remote
    }

    /// Counts `keys` keys lost before they reached the store (a feed that could not keep up).
    pub fn count_dropped(&mut self, keys: usize) {
        self.stats.dropped += keys as u64;
    }

    /// Changes the settings (the link's applications changed).
    pub fn set_settings(&mut self, settings: LinkSettings) {
        self.settings = settings;
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            stored: self.stored,
            free_owned: self.free.len(),
            theirs: self.theirs,
            deliveries: self.deliveries.len(),
            pad_pool: self.pad_pool.len(),
            key_bits: self.key_bits,
            pending_relays: self.relays.len(),
            ..self.stats
        }
    }

    /// The delivery `id`, if the store holds it.
    pub fn delivery(&self, id: Uuid) -> Option<&Delivery> {
        self.deliveries.get(&id)
    }

    /// When the oldest key nobody holds was stored (ms since the Unix epoch).
    pub fn oldest_unheld_ms(&self) -> Option<u64> {
        self.blocks
            .values()
            .filter(|b| !self.unwritten.contains(&b.place.block))
            .find(|b| {
                (0..b.count()).any(|index| {
                    let at = KeyAt { block: b.place.block, index };
                    !b.erased.contains(index) && !self.held.contains(&at)
                })
            })
            .map(|b| b.created_ms)
    }

    fn owned_here(&self, placement: Placement, index: u32) -> bool {
        placement.position(index as usize).is_multiple_of(2) == (self.local < self.remote)
    }

    fn live(&self, at: KeyAt) -> bool {
        self.blocks.get(&at.block).is_some_and(|b| !b.erased.contains(at.index))
            && !self.unwritten.contains(&at.block)
    }

    fn theirs_unheld(&self, at: KeyAt) -> bool {
        self.live(at)
            && !self.held.contains(&at)
            && !self.owned_here(self.blocks[&at.block].placement, at.index)
    }

    /// Puts a durable block's unheld keys in the free and others queues.
    fn release_block(&mut self, block: u64) {
        let Some(b) = self.blocks.get(&block) else { return };
        let placement = b.placement;
        for index in 0..b.count() {
            let at = KeyAt { block, index };
            if b.erased.contains(index) || self.held.contains(&at) {
                continue;
            }
            if self.owned_here(placement, index) {
                self.free.push_back(at);
            } else {
                self.others.push_back(at);
                self.theirs += 1;
            }
        }
    }

    /// Holds every live key of `block` (a pending relay's).
    fn hold_block(&mut self, block: u64) {
        if let Some(b) = self.blocks.get(&block) {
            for index in 0..b.count() {
                if !b.erased.contains(index) {
                    self.held.insert(KeyAt { block, index });
                }
            }
        }
    }

    /// Stores a block: the write to make durable, then [`stored`](Self::stored). The block's
    /// keys are not usable before.
    pub fn ingest(
        &mut self,
        ring: &Keyring,
        new: NewBlock,
        now_ms: u64,
    ) -> Result<(std::ops::Range<u64>, Vec<DiskOp>), StoreError> {
        let count = new.ids.len();
        if count == 0 || new.key_bytes == 0 {
            return Err(StoreError::Malformed("no keys"));
        }
        if new.material.len() != count * new.key_bytes as usize {
            return Err(StoreError::Malformed("material does not match the key IDs"));
        }
        let mut seen = HashSet::with_capacity(count);
        if let Some(id) =
            new.ids.iter().find(|id| self.index.contains_key(id) || !seen.insert(**id))
        {
            return Err(StoreError::DuplicateKeyId(*id));
        }
        let mut ops = Vec::new();
        let over = (self.stored + count).saturating_sub(self.settings.capacity);
        if over > 0 {
            let evictable = self.free.len() + self.theirs;
            if evictable < over {
                self.stats.dropped += count as u64;
                return Err(StoreError::Full);
            }
            ops.extend(self.evict(over));
        }
        // Stored in blocks of at most MAX_BLOCK_KEYS keys, so that erasing a key rewrites a
        // small bitmap and a block's data key goes as soon as its few keys are used.
        let first = self.next_block;
        let key_bytes = new.key_bytes as usize;
        for (chunk, ids) in new.ids.chunks(MAX_BLOCK_KEYS).enumerate() {
            let offset = chunk * MAX_BLOCK_KEYS;
            let block = self.next_block;
            self.next_block += 1;
            let material = Zeroizing::new(
                new.material[offset * key_bytes..(offset + ids.len()) * key_bytes].to_vec(),
            );
            let placement =
                Placement { sequence: new.placement.position(offset), step: new.placement.step };
            let stored = Block {
                place: BlockPlace { link: self.link, block },
                placement,
                key_bytes: new.key_bytes,
                created_ms: now_ms,
                ids: ids.to_vec(),
                material,
                erased: KeySet::default(),
            };
            ops.push(DiskOp::Put(stored.seal(ring)));
            for (index, id) in stored.ids.iter().enumerate() {
                self.index.insert(*id, KeyAt { block, index: index as u32 });
            }
            self.blocks.insert(block, stored);
            self.unwritten.insert(block);
        }
        self.key_bits = new.key_bytes * 8;
        self.stored += count;
        self.stats.filled += count as u64;
        Ok((first..self.next_block, ops))
    }

    /// The write of blocks `blocks` is durable: their keys become usable.
    pub fn stored(&mut self, blocks: std::ops::Range<u64>) {
        for block in blocks {
            if self.unwritten.remove(&block) {
                self.release_block(block);
            }
        }
    }

    /// The write of blocks `blocks` failed: they are forgotten.
    pub fn not_stored(&mut self, blocks: std::ops::Range<u64>) {
        for block in blocks {
            if self.unwritten.remove(&block)
                && let Some(b) = self.blocks.remove(&block)
            {
                for id in &b.ids {
                    self.index.remove(id);
                }
                self.stored -= b.count() as usize;
                self.stats.filled -= b.count() as u64;
            }
        }
    }

    /// Erases `needed` unheld keys, oldest first from the larger half.
    fn evict(&mut self, needed: usize) -> Vec<DiskOp> {
        let mut touched = BTreeSet::new();
        let mut evicted = 0;
        while evicted < needed {
            let victim = if self.free.len() >= self.theirs && !self.free.is_empty() {
                self.free.pop_front()
            } else {
                let mut found = None;
                while let Some(at) = self.others.pop_front() {
                    if self.theirs_unheld(at) {
                        found = Some(at);
                        break;
                    }
                }
                found.or_else(|| self.free.pop_front())
            };
            let Some(at) = victim else { break };
            self.erase(at, &mut touched);
            evicted += 1;
        }
        self.stats.dropped += evicted as u64;
        self.flush(touched)
    }

    /// Marks `at` erased (its block's write follows in [`flush`](Self::flush)).
    fn erase(&mut self, at: KeyAt, touched: &mut BTreeSet<u64>) {
        let counted = self.theirs_unheld(at);
        if let Some(block) = self.blocks.get_mut(&at.block)
            && block.erased.insert(at.index)
        {
            self.stored -= 1;
            self.theirs -= usize::from(counted);
            touched.insert(at.block);
        }
        self.held.remove(&at);
    }

    /// Drops the entries of `others` that no longer stand for an unheld key of the other end
    /// (once they outnumber those keys by far, so that the cost is spread over many changes).
    fn compact_others(&mut self) {
        if self.others.len() > 2 * self.theirs + 4096 {
            let mut others = std::mem::take(&mut self.others);
            others.retain(|at| self.theirs_unheld(*at));
            self.others = others;
        }
    }

    /// Recounts what the store keeps counts of and compares (for tests: linear in the keys).
    pub fn audit(&self) -> Result<(), String> {
        let theirs =
            self.others.iter().filter(|at| self.theirs_unheld(**at)).collect::<HashSet<_>>().len();
        let mut live = 0;
        for b in self.blocks.values() {
            live += (b.count() - b.erased.len()) as usize;
        }
        if theirs != self.theirs {
            return Err(format!("{} keys of the other end counted, {theirs} there", self.theirs));
        }
        if live != self.stored {
            return Err(format!("{} keys counted as stored, {live} there", self.stored));
        }
        if self.free.iter().any(|at| !self.live(*at) || self.held.contains(at)) {
            return Err("a free key is erased or held".into());
        }
        Ok(())
    }

    /// The writes of the erasures in `touched` blocks: a block whose last key is gone is
    /// dropped with its data key.
    fn flush(&mut self, touched: BTreeSet<u64>) -> Vec<DiskOp> {
        let mut ops = Vec::with_capacity(touched.len());
        for block in touched {
            let Some(b) = self.blocks.get(&block) else { continue };
            if b.all_erased() {
                let b = self.blocks.remove(&block).expect("just seen");
                for id in &b.ids {
                    self.index.remove(id);
                }
                ops.push(DiskOp::Drop(b.place));
            } else {
                ops.push(DiskOp::Erase { place: b.place, erased: b.erased.clone() });
            }
        }
        ops
    }

    fn parts_per_key(&self, size_bits: u32) -> usize {
        (size_bits as usize).div_ceil(self.key_bits.max(8) as usize).max(1)
    }

    /// The delivered key made of `parts`, cut to `size_bits`.
    fn assemble(&self, parts: &[Uuid], size_bits: u32) -> Option<Zeroizing<Vec<u8>>> {
        let mut keys = Vec::with_capacity(parts.len());
        for part in parts {
            let at = self.index.get(part)?;
            let block = self.blocks.get(&at.block)?;
            if block.erased.contains(at.index) {
                return None;
            }
            keys.push(block.key(at.index));
        }
        // Sized for every part, so it never grows (a grown buffer leaves an unwiped copy).
        let mut out = Zeroizing::new(Vec::with_capacity(keys.iter().map(|k| k.len()).sum()));
        for key in keys {
            out.extend_from_slice(key);
        }
        out.truncate(size_bits as usize / 8);
        (out.len() == size_bits as usize / 8).then_some(out)
    }

    /// Keys of `size_bits` this end could hand out now (the relay's reserve apart).
    pub fn available(&self, size_bits: u32) -> usize {
        self.free.len().saturating_sub(self.reserve_left()) / self.parts_per_key(size_bits)
    }

    /// Free keys `enc_keys` must leave: the relay's reserve, less what the pad pool holds.
    fn reserve_left(&self) -> usize {
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

    /// `enc_keys` at the owner: holds keys for new deliveries (checking the guarantee to the
    /// link's other pairs in the same step). Answer with the keys only after the other end
    /// reserved them and [`confirm`](Self::confirm) ran.
    pub fn take(&mut self, request: &Take<'_>) -> Result<Taken, StoreError> {
        let per_key = self.parts_per_key(request.size_bits);
        let needed = per_key * request.number;
        let usable = self.free.len().saturating_sub(self.reserve_left());
        if usable < needed {
            return Err(StoreError::NotEnough {
                available: usable / per_key,
                needed: request.number,
            });
        }
        let kept = per_key * request.keep_for_others;
        if usable < needed + kept {
            return Err(StoreError::KeptForOthers {
                available: usable.saturating_sub(kept) / per_key,
                needed: request.number,
            });
        }
        let mut taken = Taken {
            deliveries: Vec::with_capacity(request.number),
            issued: Vec::with_capacity(request.number),
            ops: Vec::with_capacity(request.number),
        };
        for _ in 0..request.number {
            let parts: Vec<KeyAt> = self.free.drain(..per_key).collect();
            let ids: Vec<Uuid> =
                parts.iter().map(|at| self.blocks[&at.block].ids[at.index as usize]).collect();
            self.held.extend(parts.iter().copied());
            let bytes = self
                .assemble(&ids, request.size_bits)
                .ok_or(StoreError::Malformed("a free key has no material"))?;
            let delivery = Delivery {
                state: DeliveryState::Delivering,
                master: request.master.to_owned(),
                slaves: request.slaves.to_vec(),
                fetched: Vec::new(),
                parts: ids,
                size_bits: request.size_bits,
                expires_ms: request.expires_ms,
            };
            let id = delivery.parts[0];
            taken.ops.push(DiskOp::PutDelivery { link: self.link, delivery: delivery.clone() });
            taken.issued.push((id, bytes));
            self.in_flight.insert(id);
            self.deliveries.insert(id, delivery.clone());
            taken.deliveries.push(delivery);
        }
        Ok(taken)
    }

    /// The other end reserved deliveries `ids`: their parts are erased here (the answer may go
    /// out once the returned write is durable; a crash before leaves them `Delivering`, and
    /// they are confirmed again after the restart).
    pub fn confirm(&mut self, ids: &[Uuid]) -> Vec<DiskOp> {
        let mut touched = BTreeSet::new();
        let mut ops = Vec::new();
        for id in ids {
            self.in_flight.remove(id);
            let Some(delivery) = self.deliveries.remove(id) else { continue };
            ops.push(self.consume(&delivery, &mut touched));
        }
        let mut erasures = self.flush(touched);
        erasures.extend(ops);
        erasures
    }

    /// Erases the parts of a delivery that is done (confirmed at the owner, or fetched by every
    /// slave); the write that forgets its record.
    fn consume(&mut self, delivery: &Delivery, touched: &mut BTreeSet<u64>) -> DiskOp {
        for part in &delivery.parts {
            if let Some(at) = self.index.get(part).copied() {
                self.erase(at, touched);
            }
        }
        self.stats.consumed += delivery.parts.len() as u64;
        DiskOp::RemoveDelivery {
            link: self.link,
            id: delivery.parts[0],
            expires_ms: delivery.expires_ms,
        }
    }

    /// The other end did not reserve deliveries `ids`: their parts are free again, except
    /// `unusable` ones (the other end lacks them), which are erased with the free keys of
    /// their blocks (a store drops whole blocks, so it lacks the rest too) and, when the
    /// other end said where its stream starts (`earliest`), every free key before it.
    pub fn abort(&mut self, ids: &[Uuid], unusable: &[Uuid], earliest: Option<u64>) -> Vec<DiskOp> {
        let mut touched = BTreeSet::new();
        let mut ops = Vec::new();
        let lacking: HashSet<Uuid> = unusable.iter().copied().collect();
        let mut lacking_blocks = BTreeSet::new();
        for id in ids.iter().rev() {
            self.in_flight.remove(id);
            let Some(delivery) = self.deliveries.remove(id) else { continue };
            for part in delivery.parts.iter().rev() {
                let Some(at) = self.index.get(part).copied() else { continue };
                self.held.remove(&at);
                if lacking.contains(part) {
                    lacking_blocks.insert(at.block);
                    self.erase(at, &mut touched);
                    self.stats.dropped += 1;
                } else if self.live(at) {
                    self.free.push_front(at);
                }
            }
            ops.push(DiskOp::RemoveDelivery {
                link: self.link,
                id: *id,
                expires_ms: delivery.expires_ms,
            });
        }
        if !lacking_blocks.is_empty() || earliest.is_some() {
            let before = |store: &LinkStore, at: &KeyAt| {
                earliest.is_some_and(|e| {
                    store
                        .blocks
                        .get(&at.block)
                        .is_some_and(|b| b.placement.position(at.index as usize) < e)
                })
            };
            let (gone, kept): (Vec<KeyAt>, Vec<KeyAt>) = std::mem::take(&mut self.free)
                .into_iter()
                .partition(|at| lacking_blocks.contains(&at.block) || before(self, at));
            self.free = kept.into();
            self.stats.dropped += gone.len() as u64;
            for at in gone {
                self.erase(at, &mut touched);
            }
        }
        let mut erasures = self.flush(touched);
        erasures.extend(ops);
        erasures
    }

    /// Deliveries this end made whose request is gone (a restart), which the other end may
    /// not have reserved: send them again, then [`confirm`](Self::confirm) them.
    pub fn recoverable(&self) -> Vec<Delivery> {
        let mut out: Vec<Delivery> = self
            .deliveries
            .iter()
            .filter(|(id, d)| d.state == DeliveryState::Delivering && !self.in_flight.contains(id))
            .map(|(_, d)| d.clone())
            .collect();
        out.sort_by_key(|d| d.parts[0]);
        out
    }

    /// Marks recoverable deliveries `ids` as in flight again (their resend is under way).
    pub fn resending(&mut self, ids: &[Uuid]) {
        self.in_flight.extend(ids.iter().copied());
    }

    /// A resend of recoverable deliveries `ids` failed: they are recoverable again.
    pub fn resend_failed(&mut self, ids: &[Uuid]) {
        for id in ids {
            self.in_flight.remove(id);
        }
    }

    /// At the other end: records deliveries the owner made, after checking every part (exists
    /// here, belongs to the owner's half, nobody holds it). All or nothing; a retry of a
    /// reservation already made is accepted.
    pub fn reserve(&mut self, deliveries: &[Delivery]) -> Result<Vec<DiskOp>, ReserveError> {
        let mut unusable = Vec::new();
        let mut fresh = Vec::new();
        let mut claimed = HashSet::new();
        for delivery in deliveries {
            let Some(id) = delivery.id() else {
                return Err(ReserveError::Malformed("a delivery without parts"));
            };
            if delivery.slaves.is_empty() {
                return Err(ReserveError::Malformed("a delivery without slaves"));
            }
            if self
                .deliveries
                .get(&id)
                .is_some_and(|d| d.state == DeliveryState::Reserved && d.same_as(delivery))
            {
                continue;
            }
            for part in &delivery.parts {
                let usable = self.index.get(part).is_some_and(|at| self.theirs_unheld(*at))
                    && claimed.insert(*part);
                if !usable {
                    unusable.push(*part);
                }
            }
            fresh.push(delivery);
        }
        if !unusable.is_empty() {
            let earliest = self.blocks.values().map(|b| b.placement.sequence).min();
            return Err(ReserveError::Unusable(unusable, earliest));
        }
        let mut ops = Vec::with_capacity(fresh.len());
        for delivery in fresh {
            let reserved = Delivery {
                state: DeliveryState::Reserved,
                fetched: Vec::new(),
                ..delivery.clone()
            };
            for part in &reserved.parts {
                let at = self.index[part];
                self.theirs -= usize::from(self.theirs_unheld(at));
                self.held.insert(at);
            }
            ops.push(DiskOp::PutDelivery { link: self.link, delivery: reserved.clone() });
            self.deliveries.insert(reserved.parts[0], reserved);
        }
        self.compact_others();
        Ok(ops)
    }

    /// `dec_keys`: the keys `ids` for `slave` of `master`, all or nothing, each once per slave.
    /// Unknown, expired, already fetched and not-for-this-slave keys are all `NotFound`.
    pub fn fetch(
        &mut self,
        slave: &str,
        master: &str,
        ids: &[Uuid],
        now_ms: u64,
    ) -> Result<(Vec<Issued>, Vec<DiskOp>), StoreError> {
        let mut seen = HashSet::with_capacity(ids.len());
        for id in ids {
            let Some(d) = self.deliveries.get(id) else {
                return Err(StoreError::NotFound);
            };
            let fetchable = d.state == DeliveryState::Reserved
                && d.expires_ms > now_ms
                && d.master == master
                && d.slaves.iter().any(|s| s == slave)
                && !d.fetched.iter().any(|s| s == slave)
                && seen.insert(*id);
            if !fetchable || self.assemble(&d.parts, d.size_bits).is_none() {
                return Err(StoreError::NotFound);
            }
        }
        let mut issued = Vec::with_capacity(ids.len());
        let mut touched = BTreeSet::new();
        let mut ops = Vec::new();
        for id in ids {
            let mut delivery = self.deliveries.remove(id).expect("checked above");
            let bytes = self.assemble(&delivery.parts, delivery.size_bits).expect("checked above");
            issued.push((*id, bytes));
            delivery.fetched.push(slave.to_owned());
            if delivery.fetched.len() >= delivery.slaves.len() {
                ops.push(self.consume(&delivery, &mut touched));
            } else {
                ops.push(DiskOp::PutDelivery { link: self.link, delivery: delivery.clone() });
                self.deliveries.insert(*id, delivery);
            }
        }
        let mut all = self.flush(touched);
        all.extend(ops);
        Ok((issued, all))
    }

    /// Erases expired deliveries (not those in flight) and keys nobody holds that are older
    /// than the link's largest age.
    pub fn sweep(&mut self, now_ms: u64) -> Vec<DiskOp> {
        let mut touched = BTreeSet::new();
        let mut ops = Vec::new();
        let expired: Vec<Uuid> = self
            .deliveries
            .iter()
            .filter(|(id, d)| d.expires_ms <= now_ms && !self.in_flight.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let delivery = self.deliveries.remove(&id).expect("listed above");
            for part in &delivery.parts {
                if let Some(at) = self.index.get(part).copied() {
                    self.erase(at, &mut touched);
                }
            }
            ops.push(DiskOp::RemoveDelivery {
                link: self.link,
                id,
                expires_ms: delivery.expires_ms,
            });
        }
        let expired: Vec<Uuid> = self
            .relays
            .values()
            .filter(|r| !r.source && r.expires_ms <= now_ms)
            .map(|r| r.id)
            .collect();
        for relay in expired {
            ops.extend(self.abandon_relay(relay));
        }
        if let Some(max_age) = self.settings.max_age_ms {
            let cutoff = now_ms.saturating_sub(max_age);
            let old = |store: &LinkStore, at: &KeyAt| {
                store.blocks.get(&at.block).is_some_and(|b| b.created_ms <= cutoff)
            };
            let (gone, kept): (Vec<KeyAt>, Vec<KeyAt>) =
                std::mem::take(&mut self.free).into_iter().partition(|at| old(self, at));
            self.free = kept.into();
            let (old_theirs, theirs): (Vec<KeyAt>, Vec<KeyAt>) =
                std::mem::take(&mut self.others).into_iter().partition(|at| old(self, at));
            self.others = theirs.into();
            let old_theirs: Vec<KeyAt> =
                old_theirs.into_iter().filter(|at| self.theirs_unheld(*at)).collect();
            for at in gone.into_iter().chain(old_theirs) {
                self.erase(at, &mut touched);
            }
        }
        let mut all = self.flush(touched);
        all.extend(ops);
        all
    }
}
