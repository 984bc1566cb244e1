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
//!   [`LinkStore::commit_relay`] / [`LinkStore::abandon_relay`] (in `relay.rs`; the
//!   deliveries are in `deliveries.rs`).
//!
//! Keys are found by ID through a compact index (`index.rs`: a word per key, the IDs kept
//! once, in their blocks), and a store given a [`BlockSource`] keeps only a few blocks'
//! material in memory, reading the others back when a step needs them (`material.rs`).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::block::{Block, KeySet, Placement};
pub use crate::block::{BlockSource, MAX_BLOCK_KEYS};
use crate::delivery::{Delivery, DeliveryGroup, RelayRecord, StreamChunk};
use crate::disk::{DiskOp, StoredBlock};
use crate::seal::{BlockPlace, Keyring, SealError};

mod deliveries;
mod groups;
mod index;
mod material;
mod relay;

pub use groups::GROUP_DELIVERIES;
use index::{Blocks, KeyAt, KeyIndex};

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
    /// The key stream chunk is in the store already (each index is made once).
    #[error("chunk {} of key stream {} exists already", .0.index, .0.stream)]
    ChunkExists(StreamChunk),
    /// A block repeats a key ID this store holds (or repeats one of its own).
    #[error("key ID {0} is already in the store of this link")]
    DuplicateKeyId(Uuid),
    /// A block is malformed (no keys, or material of the wrong length).
    #[error("malformed key block: {0}")]
    Malformed(&'static str),
    /// The store is full of keys held by deliveries: the block cannot be kept.
    #[error("the key store is full of keys held by deliveries")]
    Full,
    /// A block's material could not be read back from disk.
    #[error("key block {block} could not be read: {reason}")]
    Unreadable {
        /// The block.
        block: u64,
        /// Why.
        reason: String,
    },
    /// A relay's keys arrived after this end had settled the relay as refused.
    #[error("relay {0} was given up by its source; its keys are refused")]
    RelayRefused(Uuid),
}

/// Why the other end of a link refused a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveError {
    /// Parts it lacks or cannot give (not there, not the caller's, already held).
    Unusable(Lacking),
    /// The request itself is malformed.
    Malformed(&'static str),
}

/// What the other end of a link lacked for a reservation, and which stream positions it holds
/// (so that the owner tells keys it never will have from keys it does not have yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lacking {
    /// The parts it lacks or cannot give (not there, not the caller's, already held).
    pub parts: Vec<Uuid>,
    /// The earliest stream position it holds for the link.
    pub earliest: Option<u64>,
    /// The position after its newest durable key (`None` from an end that does not say):
    /// parts at or after it may still arrive there.
    pub end: Option<u64>,
}

/// What [`LinkStore::audit`] found out of order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    /// The count of the other end's unheld keys is off.
    #[error("{counted} keys of the other end counted, {there} there")]
    TheirsCount {
        /// Counted.
        counted: usize,
        /// There.
        there: usize,
    },
    /// The count of stored keys is off.
    #[error("{counted} keys counted as stored, {there} there")]
    StoredCount {
        /// Counted.
        counted: usize,
        /// There.
        there: usize,
    },
    /// A key in the free queue is erased or held.
    #[error("a free key is erased or held")]
    FreeNotFree,
    /// An erased key's bytes are still in memory.
    #[error("erased key {index} of block {block} is still in memory")]
    ErasedInMemory {
        /// The block.
        block: u64,
        /// The key.
        index: u32,
    },
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
    /// This end generated them (it settles the relay with the far end).
    pub source: bool,
    /// Usable at once (the far end, when the source holds its copy already); else held
    /// until the relay is committed.
    pub usable: bool,
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
    /// The key stream chunk the key is (then `number` is 1 and there is one slave): reserved
    /// at both ends, the owner's copy for the master once the other end confirmed.
    pub chunk: Option<StreamChunk>,
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

/// What an abort changed: the write of the keys it erased, and how many lacked parts may
/// still reach the other end (they are free again; a later take may use them).
pub struct Aborted {
    /// The write.
    pub ops: Vec<DiskOp>,
    /// Lacked parts at or after the end of the other end's stream.
    pub not_there_yet: usize,
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

/// One link's key store.
pub struct LinkStore {
    link: Uuid,
    local: Uuid,
    remote: Uuid,
    settings: LinkSettings,
    next_block: u64,
    blocks: Blocks,
    /// Blocks written but not yet durable: their keys are not usable.
    unwritten: BTreeSet<u64>,
    /// Every key of every block held, by ID.
    index: KeyIndex,
    /// Where the material of blocks not in memory is read back from, if anywhere.
    loaded: Option<material::Loaded>,
    /// Keys this end owns and nobody holds, oldest first.
    free: VecDeque<KeyAt>,
    /// Keys of the other end's share, oldest first (entries of keys since held or erased are
    /// skipped when met).
    others: VecDeque<KeyAt>,
    /// Keys held by a delivery.
    held: HashSet<KeyAt>,
    /// Deliveries by ID.
    deliveries: HashMap<Uuid, Delivery>,
    /// The deliveries that are key stream chunks, by chunk.
    chunks: HashMap<StreamChunk, Uuid>,
    /// The rows they are written in.
    groups: groups::Groups,
    /// Deliveries whose request is waiting for the other end.
    in_flight: HashSet<Uuid>,
    /// Relays whose keys are stored here but not usable yet, by relay ID.
    relays: HashMap<Uuid, RelayRecord>,
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
            blocks: Blocks::new(),
            unwritten: BTreeSet::new(),
            index: KeyIndex::default(),
            loaded: None,
            free: VecDeque::new(),
            others: VecDeque::new(),
            held: HashSet::new(),
            deliveries: HashMap::new(),
            chunks: HashMap::new(),
            groups: groups::Groups::default(),
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
        deliveries: Vec<DeliveryGroup>,
        relays: Vec<RelayRecord>,
    ) -> Vec<SealError> {
        let mut failed = Vec::new();
        for stored in blocks {
            match stored.block.open(ring, stored.erased) {
                Ok(block) => {
                    self.next_block = self.next_block.max(block.place.block + 1);
                    self.key_bits = block.key_bytes * 8;
                    self.stored += (block.count() - block.erased.len()) as usize;
                    let id = block.place.block;
                    self.blocks.insert(id, block);
                    self.index.insert_block(&self.blocks, id);
                    self.note_loaded(id);
                    self.trim_loaded();
                }
                Err(e) => failed.push(e),
            }
        }
        for group in deliveries {
            for delivery in &group.deliveries {
                for part in &delivery.parts {
                    if let Some(at) = self.key_at(part) {
                        self.held.insert(at);
                    }
                }
            }
            self.restore_group(group);
        }
        for relay in relays {
            if relay.pending() {
                self.hold_block(relay.block);
            }
            self.relays.insert(relay.id, relay);
        }
        let ids: Vec<u64> = self.blocks.keys().copied().collect();
        for block in ids {
            self.release_block(block);
        }
        self.trim_loaded();
        failed
    }

    /// The place of key `id`, if the store holds it.
    fn key_at(&self, id: &Uuid) -> Option<KeyAt> {
        self.index.get(&self.blocks, id)
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
            pending_relays: self.relays.values().filter(|r| r.pending()).count(),
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
                    let at = KeyAt::new(b.place.block, index);
                    !b.erased.contains(index) && !self.held.contains(&at)
                })
            })
            .map(|b| b.created_ms)
    }

    fn owned_here(&self, placement: Placement, index: u32) -> bool {
        placement.position(index as usize).is_multiple_of(2) == (self.local < self.remote)
    }

    fn live(&self, at: KeyAt) -> bool {
        self.blocks.get(&at.block()).is_some_and(|b| !b.erased.contains(at.index()))
            && !self.unwritten.contains(&at.block())
    }

    /// A key of the other end's share in a durable block a pending relay holds.
    fn theirs_in_relay(&self, at: KeyAt) -> bool {
        self.live(at) && !self.owned_here(self.blocks[&at.block()].placement, at.index())
    }

    fn theirs_unheld(&self, at: KeyAt) -> bool {
        self.live(at)
            && !self.held.contains(&at)
            && !self.owned_here(self.blocks[&at.block()].placement, at.index())
    }

    /// Puts a durable block's unheld keys in the free and others queues.
    fn release_block(&mut self, block: u64) {
        let Some(b) = self.blocks.get(&block) else { return };
        let placement = b.placement;
        for index in 0..b.count() {
            let at = KeyAt::new(block, index);
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
                    self.held.insert(KeyAt::new(block, index));
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
        if let Some(id) = new.ids.iter().find(|id| self.key_at(id).is_some() || !seen.insert(**id))
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
                material: Some(material),
                erased: KeySet::default(),
            };
            ops.extend(stored.seal(ring).map(DiskOp::Put));
            self.blocks.insert(block, stored);
            self.index.insert_block(&self.blocks, block);
            self.unwritten.insert(block);
            self.note_loaded(block);
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
        self.trim_loaded();
    }

    /// The write of blocks `blocks` failed: they are forgotten.
    pub fn not_stored(&mut self, blocks: std::ops::Range<u64>) {
        for block in blocks {
            if self.unwritten.remove(&block) {
                self.index.remove_block(&self.blocks, block);
                let Some(b) = self.blocks.remove(&block) else { continue };
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
        if let Some(block) = self.blocks.get_mut(&at.block())
            && block.erase(at.index())
        {
            self.stored -= 1;
            self.theirs -= usize::from(counted);
            touched.insert(at.block());
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
    pub fn audit(&self) -> Result<(), Inconsistency> {
        let theirs =
            self.others.iter().filter(|at| self.theirs_unheld(**at)).collect::<HashSet<_>>().len();
        let mut live = 0;
        for b in self.blocks.values() {
            live += (b.count() - b.erased.len()) as usize;
        }
        if theirs != self.theirs {
            return Err(Inconsistency::TheirsCount { counted: self.theirs, there: theirs });
        }
        if live != self.stored {
            return Err(Inconsistency::StoredCount { counted: self.stored, there: live });
        }
        if self.free.iter().any(|at| !self.live(*at) || self.held.contains(at)) {
            return Err(Inconsistency::FreeNotFree);
        }
        for b in self.blocks.values() {
            let wiped = |index: u32| b.key(index).is_none_or(|k| k.iter().all(|x| *x == 0));
            if let Some(index) = (0..b.count()).find(|i| b.erased.contains(*i) && !wiped(*i)) {
                return Err(Inconsistency::ErasedInMemory { block: b.place.block, index });
            }
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
                let place = b.place;
                self.index.remove_block(&self.blocks, block);
                self.blocks.remove(&block);
                ops.push(DiskOp::Drop(place));
            } else {
                ops.push(DiskOp::Erase { place: b.place, erased: b.erased.clone() });
            }
        }
        ops
    }

    /// Erases expired deliveries (not those in flight) and keys nobody holds that are older
    /// than the link's largest age.
    pub fn sweep(&mut self, now_ms: u64) -> Vec<DiskOp> {
        let mut touched = BTreeSet::new();
        let expired: Vec<Uuid> = self
            .deliveries
            .iter()
            .filter(|(id, d)| d.expires_ms <= now_ms && !self.in_flight.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(delivery) = self.forget_delivery(&id) else { continue };
            for part in &delivery.parts {
                if let Some(at) = self.key_at(part) {
                    self.erase(at, &mut touched);
                }
            }
        }
        let mut ops = self.group_writes();
        ops.extend(self.sweep_relays(now_ms));
        if let Some(max_age) = self.settings.max_age_ms {
            self.erase_old_keys(now_ms.saturating_sub(max_age), &mut touched);
        }
        let mut all = self.flush(touched);
        all.extend(ops);
        all
    }

    /// Erases the keys nobody holds that were stored at or before `cutoff`. The queues hold
    /// keys in the order they became usable, which is the order they were stored except for
    /// relayed blocks released late: the old keys are taken from the queues' fronts (a sweep
    /// costs what it erases, not the store's size), and only when an old block still holds
    /// an unheld key after that are the whole queues sorted through.
    fn erase_old_keys(&mut self, cutoff: u64, touched: &mut BTreeSet<u64>) {
        let old = |store: &LinkStore, at: KeyAt| {
            store.blocks.get(&at.block()).is_some_and(|b| b.created_ms <= cutoff)
        };
        while let Some(&at) = self.free.front() {
            if !old(self, at) {
                break;
            }
            self.free.pop_front();
            self.erase(at, touched);
        }
        while let Some(&at) = self.others.front() {
            let unheld = self.theirs_unheld(at);
            if unheld && !old(self, at) {
                break;
            }
            self.others.pop_front();
            if unheld {
                self.erase(at, touched);
            }
        }
        let straggler = self.blocks.values().take_while(|b| b.created_ms <= cutoff).any(|b| {
            let block = b.place.block;
            !self.unwritten.contains(&block)
                && (0..b.count()).any(|index| {
                    !b.erased.contains(index) && !self.held.contains(&KeyAt::new(block, index))
                })
        });
        if straggler {
            let (gone, kept): (Vec<KeyAt>, Vec<KeyAt>) =
                std::mem::take(&mut self.free).into_iter().partition(|at| old(self, *at));
            self.free = kept.into();
            let (old_theirs, theirs): (Vec<KeyAt>, Vec<KeyAt>) =
                std::mem::take(&mut self.others).into_iter().partition(|at| old(self, *at));
            self.others = theirs.into();
            let old_theirs: Vec<KeyAt> =
                old_theirs.into_iter().filter(|at| self.theirs_unheld(*at)).collect();
            for at in gone.into_iter().chain(old_theirs) {
                self.erase(at, touched);
            }
        }
    }
}
