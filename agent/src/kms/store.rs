//! The key stores of the node's links, in memory over the durable [`Db`]: every key a device
//! (or the relay) delivered and nobody has consumed yet, with who owns it ([`ownership`]) and the
//! deliveries under way.
//!
//! * [`KeyStores::ingest`] stores a block durably, then makes its keys available.
//! * [`KeyStores::take`] (the owner's side of `enc_keys`) takes keys this end owns, records the
//!   delivery durably, has the other end reserve them for the named slaves ([`PeerSync`]), and
//!   only then returns the keys. A refused or failed reservation puts the keys back (or drops
//!   those the other end lacks) and hands out nothing.
//! * [`KeyStores::reserve`] (the other end) records such a delivery durably, after checking that
//!   every part exists here, belongs to the caller's half and is free.
//! * [`KeyStores::fetch`] (`dec_keys`) gives a reserved key to a slave named in its delivery,
//!   once, durably, and erases it when every named slave has it.
//! * [`KeyStores::sweep`] erases expired deliveries and keys older than their link's TTL.
//!
//! Key material lives in [`Zeroizing`] buffers and is never logged.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;
use zeroize::Zeroizing;

use super::crypt::StoreKey;
use super::db::{Db, DbError, Delivery, DeliveryState, Op, PendingRelay, StoredKey};
use super::ownership;
use crate::device::KeyBlock;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Why a store operation did not happen. Each leaves the stores as they were.
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
    /// A key ID is unknown, already fetched or expired.
    #[error("one or more keys specified are not found on KME")]
    NotFound,
    /// The requester is not a party the keys were delivered for.
    #[error("the keys were not delivered for this SAE")]
    NotAuthorized,
    /// The link has no store here.
    #[error("no key store for link {0}")]
    NoLink(Uuid),
    /// The other end did not reserve the keys.
    #[error("the other end of the link could not reserve the keys: {0}")]
    Peer(String),
    /// The other end lacked some keys (they are erased here); other keys may do.
    #[error("{0} keys were not usable at the other end")]
    Unusable(usize),
    /// The durable store failed.
    #[error("{0}")]
    Db(String),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        StoreError::Db(e.0)
    }
}

/// The other end's answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveError {
    /// Parts the other end lacks or cannot give (not there, not the caller's, already taken),
    /// and the earliest block (sequence) it holds for the link.
    Unusable(Vec<Uuid>, Option<u64>),
    /// Anything else (unreachable, refused): nothing is known to be reserved.
    Failed(String),
}

/// A reservation request's future.
pub type ReserveFuture = Pin<Box<dyn Future<Output = Result<(), ReserveError>> + Send>>;

/// Telling the other end of a link about deliveries.
pub trait PeerSync: Send + Sync + 'static {
    /// Asks `remote` to reserve `deliveries` (delivered key ID, delivery) of `link`.
    fn reserve(&self, remote: Uuid, link: Uuid, deliveries: Vec<(Uuid, Delivery)>)
    -> ReserveFuture;
}

/// Pads a link's pool holds at most.
const MAX_PAD_POOL: usize = 16_384;

/// Tries of one `enc_keys` when the other end lacks keys.
const MAX_TAKE_ATTEMPTS: usize = 4;

/// Settings of the stores.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// Keys a link's store holds at most; blocks beyond it are dropped.
    pub capacity: usize,
    /// How long a delivered key waits for its slaves when the application sets no TTL.
    pub delivery_ttl: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings { capacity: 1_000_000, delivery_ttl: Duration::from_secs(3600) }
    }
}

/// A stored key in memory.
struct Material {
    bytes: Zeroizing<Vec<u8>>,
    created_ms: u64,
    sequence: u64,
    /// Position in its block (with the sequence, its place on disk).
    index: u32,
    owned_here: bool,
}

/// A key erased on disk, waiting in memory to be used as a pad: its ID and bytes.
type PooledPad = (Uuid, Zeroizing<Vec<u8>>);

/// One link's store.
struct LinkStore {
    remote: Uuid,
    key_bits: u32,
    /// Keys owned here and free, oldest first.
    free: VecDeque<Uuid>,
    /// Keys the other end owns, oldest first (entries of keys since erased or held are skipped
    /// when met, and swept out when they outnumber the keys).
    others: VecDeque<Uuid>,
    /// The store was full when a block last arrived (for logging state changes only).
    full: bool,
    material: HashMap<Uuid, Material>,
    /// Keys held per block sequence (the earliest block held is its first entry).
    blocks: BTreeMap<u64, u32>,
    /// Deliveries by delivered key ID.
    deliveries: HashMap<Uuid, Delivery>,
    /// Parts held by a delivery (or being delivered).
    held: HashSet<Uuid>,
    /// Largest key age, when an application of the link sets a TTL.
    max_age: Option<Duration>,
    /// Free keys `enc_keys` leaves for the relay's pads.
    relay_reserve: usize,
    /// Pads ready for the relay: keys this end owns, already erased on disk, kept in memory
    /// only until they pad a relayed key (a crash loses them, which is what erasure means).
    pad_pool: VecDeque<PooledPad>,
    filled_keys: u64,
    consumed_keys: u64,
    dropped_keys: u64,
}

impl LinkStore {
    fn new(remote: Uuid) -> Self {
        LinkStore {
            remote,
            key_bits: 0,
            free: VecDeque::new(),
            others: VecDeque::new(),
            full: false,
            material: HashMap::new(),
            blocks: BTreeMap::new(),
            deliveries: HashMap::new(),
            held: HashSet::new(),
            max_age: None,
            relay_reserve: 0,
            pad_pool: VecDeque::new(),
            filled_keys: 0,
            consumed_keys: 0,
            dropped_keys: 0,
        }
    }

    /// Concatenation of `parts`, cut to `size_bits`.
    fn assemble(&self, parts: &[Uuid], size_bits: u32) -> Option<Zeroizing<Vec<u8>>> {
        // Sized for every part, so it never grows (a grown buffer leaves an unwiped copy).
        let mut total = 0;
        for part in parts {
            total += self.material.get(part)?.bytes.len();
        }
        let mut out = Zeroizing::new(Vec::with_capacity(total));
        for part in parts {
            out.extend_from_slice(&self.material.get(part)?.bytes);
        }
        out.truncate(size_bits as usize / 8);
        (out.len() == size_bits as usize / 8).then_some(out)
    }

    /// Takes `id`'s material out of the store, with the operation that erases it on disk.
    fn take_material(&mut self, link: Uuid, id: &Uuid) -> Option<(Material, Op)> {
        let m = self.material.remove(id)?;
        if let Some(count) = self.blocks.get_mut(&m.sequence) {
            *count -= 1;
            if *count == 0 {
                self.blocks.remove(&m.sequence);
            }
        }
        let op = Op::RemoveKey { link, sequence: m.sequence, index: m.index };
        Some((m, op))
    }

    /// Holds `id`'s material.
    fn put_material(&mut self, id: Uuid, material: Material) {
        let sequence = material.sequence;
        let theirs = !material.owned_here;
        if self.material.insert(id, material).is_none() {
            *self.blocks.entry(sequence).or_default() += 1;
            if theirs {
                self.others.push_back(id);
            }
        }
    }

    /// Whether `id` is a key of the other end's share that nothing holds.
    fn theirs_unheld(&self, id: &Uuid) -> bool {
        self.material.get(id).is_some_and(|m| !m.owned_here) && !self.held.contains(id)
    }

    /// Keys this end may hand out, and keys of the other end's share held here for it that
    /// nothing holds yet.
    fn shares(&mut self) -> (usize, usize) {
        self.sweep_others();
        (self.free.len(), self.others.len())
    }

    /// Drops the entries of `others` that no longer stand for an unheld key of the other end.
    fn sweep_others(&mut self) {
        let mut others = std::mem::take(&mut self.others);
        others.retain(|id| self.theirs_unheld(id));
        self.others = others;
    }

    /// Makes room for `needed` keys by erasing the oldest unheld keys of the larger share (this
    /// end's free keys, or the other end's): the share nobody draws from is the one that grows.
    /// A key of the other end's share erased here is refused when that end delivers it, and it
    /// then takes others. Returns the erase operations (fewer keys than `needed` when the rest
    /// is held by deliveries).
    fn evict_for(&mut self, link: Uuid, needed: usize) -> Vec<Op> {
        let mut ops = Vec::new();
        if self.others.len() > self.material.len() {
            self.sweep_others();
        }
        while ops.len() < needed {
            let ours = self.free.len();
            let theirs = self.others.len();
            let victim = if ours >= theirs && ours > 0 {
                self.free.pop_front()
            } else {
                let mut found = None;
                while let Some(id) = self.others.pop_front() {
                    if self.theirs_unheld(&id) {
                        found = Some(id);
                        break;
                    }
                }
                found.or_else(|| self.free.pop_front())
            };
            let Some(id) = victim else {
                break;
            };
            ops.extend(self.erase(link, &id));
        }
        self.dropped_keys += ops.len() as u64;
        ops
    }

    /// Erases `id` from memory; the operation that erases it on disk.
    fn erase(&mut self, link: Uuid, id: &Uuid) -> Option<Op> {
        self.take_material(link, id).map(|(_, op)| op)
    }

    /// Free keys `enc_keys` must leave: the reserve, less what the pad pool already holds.
    fn reserve_left(&self) -> usize {
        self.relay_reserve.saturating_sub(self.pad_pool.len())
    }

    fn parts_per_key(&self, size_bits: u32) -> usize {
        (size_bits as usize).div_ceil(self.key_bits.max(8) as usize).max(1)
    }
}

/// What the KMS knows of a link from the node's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSettings {
    /// The other end.
    pub remote: Uuid,
    /// Largest key age (the smallest TTL of the link's applications).
    pub max_age: Option<Duration>,
    /// Free keys to keep for relaying (pads) rather than hand to SAEs.
    pub relay_reserve: usize,
}

/// Counters of one store, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// The link.
    pub link: Uuid,
    /// Its other end.
    pub remote: Uuid,
    /// Size of the stored keys, bits.
    pub key_bits: u32,
    /// Keys held (both halves, deliveries included).
    pub stored: usize,
    /// Keys this end may hand out now.
    pub free_owned: usize,
    /// Deliveries waiting for slaves.
    pub deliveries: usize,
    /// Keys stored since start.
    pub filled: u64,
    /// Keys consumed since start.
    pub consumed: u64,
    /// Keys dropped because the store was full (or could not keep up).
    pub dropped: u64,
    /// Pads erased ahead for the relay, held in memory.
    pub pad_pool: usize,
}

/// What `enc_keys` asks of a store.
#[derive(Clone, Copy, Debug)]
pub struct Take<'a> {
    /// The link whose keys serve the pair.
    pub link: Uuid,
    /// The master SAE.
    pub master: &'a str,
    /// The slave SAEs.
    pub slaves: &'a [String],
    /// How many keys.
    pub number: usize,
    /// Their size, bits.
    pub size_bits: u32,
    /// How long the slaves have to fetch them (default: the stores' delivery TTL).
    pub ttl: Option<Duration>,
    /// Keys (of `size_bits`) that must stay in the store for the other SAE pairs of the link
    /// (their guarantee): the request is refused rather than take them. Checked together with
    /// the take, so two requests cannot both pass the check and then take the same reserve.
    pub keep_for_others: usize,
}

/// Where a relayed block's keys sit in their virtual link's key stream (their positions decide
/// their owner, see [`ownership`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The block's sequence: the position of its first key.
    pub sequence: u64,
    /// Positions between consecutive keys: 1 (alternating owners) or 2 (one owner).
    pub step: u64,
}

impl Placement {
    /// The row of the block's key `index`: (sequence, index in the block). Keys two positions
    /// apart are stored each as its own one-key block, so that their position survives a
    /// restart as it is (sequence + index).
    fn of(&self, index: usize) -> (u64, u32) {
        if self.step > 1 {
            (self.sequence.wrapping_add(self.step * index as u64), 0)
        } else {
            (self.sequence, index as u32)
        }
    }
}

/// Deliveries of a link waiting to be confirmed: link, other end, deliveries.
type Pending = (Uuid, Uuid, Vec<(Uuid, Delivery)>);

/// A key handed out: its ID and bytes.
pub type Issued = (Uuid, Zeroizing<Vec<u8>>);

/// The key stores of a node.
pub struct KeyStores {
    node: Uuid,
    seal: StoreKey,
    db: Db,
    settings: StoreSettings,
    links: Mutex<HashMap<Uuid, LinkStore>>,
    /// Relayed keys not yet usable, by relay.
    relays: Mutex<HashMap<Uuid, PendingRelay>>,
}

impl std::fmt::Debug for KeyStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStores").field("node", &self.node).finish_non_exhaustive()
    }
}

impl KeyStores {
    /// The stores of `node`, loaded from `db` (keys whose record fails authentication are
    /// reported and skipped).
    pub fn open(
        node: Uuid,
        seal: StoreKey,
        db: Db,
        settings: StoreSettings,
        links: &HashMap<Uuid, Uuid>,
    ) -> Result<Arc<KeyStores>, StoreError> {
        let loaded = db.load()?;
        let mut stores: HashMap<Uuid, LinkStore> = HashMap::new();
        for (link, remote) in links {
            stores.insert(*link, LinkStore::new(*remote));
        }
        let mut keys = loaded.keys;
        keys.sort_by_key(|k| (k.created_ms, k.sequence, k.index));
        let mut unreadable = 0usize;
        for key in keys {
            let Some(store) = stores.get_mut(&key.link) else {
                continue;
            };
            let Ok(bytes) = seal.open(key.link, key.id, &key.sealed) else {
                unreadable += 1;
                continue;
            };
            let position = ownership::position(key.sequence, key.index as usize);
            let owned_here = ownership::owned_by(node, store.remote, position);
            store.key_bits = key.size_bits;
            store.put_material(
                key.id,
                Material {
                    bytes,
                    created_ms: key.created_ms,
                    sequence: key.sequence,
                    index: key.index,
                    owned_here,
                },
            );
        }
        if unreadable > 0 {
            tracing::error!(
                unreadable,
                "stored keys failed authentication and were skipped (wrong store key?)"
            );
        }
        for (link, id, delivery) in loaded.deliveries {
            if let Some(store) = stores.get_mut(&link) {
                store.held.extend(delivery.parts.iter().copied());
                store.deliveries.insert(id, delivery);
            }
        }
        let mut relays = HashMap::new();
        for (id, relay) in loaded.relays {
            if let Some(store) = stores.get_mut(&relay.link) {
                store.held.extend(relay.keys.iter().copied());
            }
            relays.insert(id, relay);
        }
        for store in stores.values_mut() {
            let mut free: Vec<(u64, Uuid)> = store
                .material
                .iter()
                .filter(|(id, m)| m.owned_here && !store.held.contains(id))
                .map(|(id, m)| (m.created_ms, *id))
                .collect();
            free.sort();
            store.free = free.into_iter().map(|(_, id)| id).collect();
        }
        Ok(Arc::new(KeyStores {
            node,
            seal,
            db,
            settings,
            links: Mutex::new(stores),
            relays: Mutex::new(relays),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, LinkStore>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node.
    pub fn node(&self) -> Uuid {
        self.node
    }

    /// Declares the node's links and their settings; stores of links that are gone are kept
    /// (their keys stay valid).
    pub fn set_links(&self, links: &HashMap<Uuid, LinkSettings>) {
        let mut stores = self.lock();
        for (link, settings) in links {
            let store = stores.entry(*link).or_insert_with(|| LinkStore::new(settings.remote));
            store.max_age = settings.max_age;
            store.relay_reserve = settings.relay_reserve;
        }
    }

    /// The other end of `link`, when it has a store.
    pub fn remote_of(&self, link: Uuid) -> Option<Uuid> {
        self.lock().get(&link).map(|s| s.remote)
    }

    /// Counters of every store.
    pub fn stats(&self) -> Vec<StoreStats> {
        let stores = self.lock();
        let mut all: Vec<StoreStats> = stores
            .iter()
            .map(|(link, s)| StoreStats {
                link: *link,
                remote: s.remote,
                key_bits: s.key_bits,
                stored: s.material.len(),
                free_owned: s.free.len(),
                deliveries: s.deliveries.len(),
                filled: s.filled_keys,
                consumed: s.consumed_keys,
                dropped: s.dropped_keys,
                pad_pool: s.pad_pool.len(),
            })
            .collect();
        all.sort_by_key(|s| s.link);
        all
    }

    /// Counts `keys` keys of `link` lost before they reached the store.
    pub fn count_dropped(&self, link: Uuid, keys: usize) {
        if let Some(store) = self.lock().get_mut(&link) {
            store.dropped_keys += keys as u64;
        }
    }

    /// Keys of `size_bits` this end could hand out on `link` now (the relay's reserve apart).
    pub fn available(&self, link: Uuid, size_bits: u32) -> usize {
        self.lock()
            .get(&link)
            .map(|s| s.free.len().saturating_sub(s.reserve_left()) / s.parts_per_key(size_bits))
            .unwrap_or(0)
    }

    /// Size of the keys stored for `link`, bits (0 before the first block).
    pub fn key_bits(&self, link: Uuid) -> u32 {
        self.lock().get(&link).map(|s| s.key_bits).unwrap_or(0)
    }

    /// Stores a block durably, then makes its keys available.
    pub async fn ingest(&self, block: KeyBlock) -> Result<(), StoreError> {
        let created_ms = now_ms();
        let size_bits = (block.key_bytes() * 8) as u32;
        let (remote, mut ops) = {
            let mut stores = self.lock();
            let Some(store) = stores.get_mut(&block.link) else {
                return Err(StoreError::NoLink(block.link));
            };
            let over = (store.material.len() + block.len()).saturating_sub(self.settings.capacity);
            let evicted = if over > 0 { store.evict_for(block.link, over) } else { Vec::new() };
            if over > 0 && !store.full {
                store.full = true;
                tracing::warn!(
                    link = %block.link,
                    capacity = self.settings.capacity,
                    "key store full: the oldest keys of the larger half make room for new ones"
                );
            } else if over == 0 && store.full {
                store.full = false;
                tracing::info!(link = %block.link, "key store no longer full");
            }
            if evicted.len() < over {
                // Deliveries hold the rest: the block cannot be kept.
                store.dropped_keys += block.len() as u64;
                drop(stores);
                self.db.write_detached(evicted);
                return Ok(());
            }
            (store.remote, evicted)
        };
        ops.reserve(block.len());
        let mut fresh = Vec::with_capacity(block.len());
        for (index, (id, material)) in block.keys().enumerate() {
            let position = ownership::position(block.sequence, index);
            let sequence = block.sequence;
            let index = index as u32;
            let sealed = self.seal.seal(block.link, id, material);
            ops.push(Op::PutKey(StoredKey {
                link: block.link,
                id,
                size_bits,
                created_ms,
                sequence,
                index,
                sealed,
            }));
            let owned_here = ownership::owned_by(self.node, remote, position);
            fresh.push((id, index, Zeroizing::new(material.to_vec()), owned_here));
        }
        self.db.write(ops).await?;
        let mut stores = self.lock();
        let store = stores.get_mut(&block.link).ok_or(StoreError::NoLink(block.link))?;
        store.key_bits = size_bits;
        store.filled_keys += fresh.len() as u64;
        for (id, index, bytes, owned_here) in fresh {
            if owned_here {
                store.free.push_back(id);
            }
            let sequence = block.sequence;
            store.put_material(id, Material { bytes, created_ms, sequence, index, owned_here });
        }
        Ok(())
    }

    /// `enc_keys` at the owner: keys for the request's master, fetchable by its slaves at the
    /// other end, reserved there before they are returned.
    ///
    /// Keys the other end turns out to lack (it started later, or dropped a block when full) are
    /// erased here and the request is tried again with other keys, a few times.
    pub async fn take(
        &self,
        request: &Take<'_>,
        peer: &dyn PeerSync,
    ) -> Result<Vec<Issued>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.take_once(request, peer).await {
                Err(StoreError::Unusable(n)) if attempt < MAX_TAKE_ATTEMPTS => {
                    tracing::debug!(link = %request.link, unusable = n, attempt, "trying other keys");
                }
                Err(StoreError::Unusable(n)) => {
                    return Err(StoreError::Peer(format!(
                        "{n} keys were not usable at the other end"
                    )));
                }
                other => return other,
            }
        }
    }

    async fn take_once(
        &self,
        request: &Take<'_>,
        peer: &dyn PeerSync,
    ) -> Result<Vec<Issued>, StoreError> {
        let Take { link, master, slaves, number, size_bits, ttl, keep_for_others } = *request;
        let expires_ms = now_ms() + ttl.unwrap_or(self.settings.delivery_ttl).as_millis() as u64;
        let (remote, deliveries, issued) = {
            let mut stores = self.lock();
            let store = stores.get_mut(&link).ok_or(StoreError::NoLink(link))?;
            let per_key = store.parts_per_key(size_bits);
            let needed = per_key * number;
            let usable = store.free.len().saturating_sub(store.reserve_left());
            if usable < needed {
                return Err(StoreError::NotEnough { available: usable / per_key, needed: number });
            }
            let kept = per_key * keep_for_others;
            if usable < needed + kept {
                return Err(StoreError::KeptForOthers {
                    available: usable.saturating_sub(kept) / per_key,
                    needed: number,
                });
            }
            let mut deliveries = Vec::with_capacity(number);
            let mut issued = Vec::with_capacity(number);
            for _ in 0..number {
                let parts: Vec<Uuid> = store.free.drain(..per_key).collect();
                store.held.extend(parts.iter().copied());
                let bytes = store
                    .assemble(&parts, size_bits)
                    .ok_or_else(|| StoreError::Db("a stored key has no material".into()))?;
                let delivery = Delivery {
                    state: DeliveryState::Delivering,
                    master: master.to_owned(),
                    slaves: slaves.to_vec(),
                    fetched: Vec::new(),
                    parts: parts.clone(),
                    size_bits,
                    expires_ms,
                };
                issued.push((parts[0], bytes));
                deliveries.push((parts[0], delivery));
            }
            for (id, delivery) in &deliveries {
                store.deliveries.insert(*id, delivery.clone());
            }
            (store.remote, deliveries, issued)
        };
        let record: Vec<Op> = deliveries
            .iter()
            .map(|(id, d)| Op::PutDelivery { link, id: *id, delivery: d.clone() })
            .collect();
        // The record here and the reservation there are written at the same time: a crash
        // before both are durable leaves at most a reservation at the other end for keys this
        // end may offer again, and the other end refuses those (they are held there), so they
        // are dropped, never handed out twice. Nothing is answered before both are durable.
        let (written, reserved) =
            tokio::join!(self.db.write(record), peer.reserve(remote, link, deliveries.clone()));
        if let Err(e) = written {
            // The other end may hold a reservation now: these keys are not offered again.
            let parts: Vec<Uuid> = match reserved {
                Ok(()) => deliveries.iter().flat_map(|(_, d)| d.parts.clone()).collect(),
                Err(_) => Vec::new(),
            };
            self.give_back(link, &deliveries, &parts);
            return Err(e.into());
        }
        match reserved {
            Ok(()) => {
                let mut erase = Vec::new();
                {
                    let mut stores = self.lock();
                    if let Some(store) = stores.get_mut(&link) {
                        for (id, delivery) in &deliveries {
                            store.deliveries.remove(id);
                            for part in &delivery.parts {
                                store.held.remove(part);
                                erase.extend(store.erase(link, part));
                            }
                            store.consumed_keys += delivery.parts.len() as u64;
                            erase.push(Op::RemoveDelivery {
                                link,
                                id: *id,
                                expires_ms: delivery.expires_ms,
                            });
                        }
                    }
                }
                // Durable before the answer is not needed: a restart finds the deliveries still
                // `Delivering` and tells the other end again (idempotent) before erasing.
                self.db.write_detached(erase);
                Ok(issued)
            }
            Err(ReserveError::Unusable(parts, earliest)) => {
                tracing::warn!(%link, unusable = parts.len(), "the other end lacks keys this end holds; dropping them");
                self.drop_blocks_of(link, &parts);
                self.give_back(link, &deliveries, &parts);
                if let Some(earliest) = earliest {
                    self.drop_before(link, earliest);
                }
                self.forget_deliveries(link, &deliveries).await?;
                Err(StoreError::Unusable(parts.len()))
            }
            Err(ReserveError::Failed(reason)) => {
                self.give_back(link, &deliveries, &[]);
                self.forget_deliveries(link, &deliveries).await?;
                Err(StoreError::Peer(reason))
            }
        }
    }

    /// Erases the records of deliveries that did not happen, durably.
    async fn forget_deliveries(
        &self,
        link: Uuid,
        deliveries: &[(Uuid, Delivery)],
    ) -> Result<(), StoreError> {
        let ops = deliveries
            .iter()
            .map(|(id, d)| Op::RemoveDelivery { link, id: *id, expires_ms: d.expires_ms })
            .collect();
        Ok(self.db.write(ops).await?)
    }

    /// Undoes a delivery that did not happen: its parts become free again, except `unusable`
    /// ones, which are erased.
    fn give_back(&self, link: Uuid, deliveries: &[(Uuid, Delivery)], unusable: &[Uuid]) {
        let mut erase = Vec::new();
        let mut stores = self.lock();
        let Some(store) = stores.get_mut(&link) else {
            return;
        };
        for (id, delivery) in deliveries.iter().rev() {
            store.deliveries.remove(id);
            for part in delivery.parts.iter().rev() {
                store.held.remove(part);
                if unusable.contains(part) {
                    erase.extend(store.erase(link, part));
                    store.dropped_keys += 1;
                } else {
                    store.free.push_front(*part);
                }
            }
        }
        drop(stores);
        self.db.write_detached(erase);
    }

    /// Erases the free keys of `link` from the blocks `parts` came from: the other end lacks
    /// those parts, and a store drops whole blocks, so it lacks their blocks' other keys too.
    fn drop_blocks_of(&self, link: Uuid, parts: &[Uuid]) {
        let mut erase = Vec::new();
        let mut stores = self.lock();
        let Some(store) = stores.get_mut(&link) else {
            return;
        };
        let mut blocks: Vec<u64> =
            parts.iter().filter_map(|p| store.material.get(p).map(|m| m.sequence)).collect();
        blocks.sort_unstable();
        blocks.dedup();
        for sequence in &blocks {
            // Free keys are in arrival order, so a block's keys sit together: find them.
            let sequence_at = |i: usize| {
                store.free.get(i).and_then(|id| store.material.get(id)).map(|m| m.sequence)
            };
            let start = store.free.partition_point(|id| {
                store.material.get(id).is_some_and(|m| m.sequence < *sequence)
            });
            let mut end = start;
            while sequence_at(end) == Some(*sequence) {
                end += 1;
            }
            let gone: Vec<Uuid> = store.free.drain(start..end).collect();
            for id in &gone {
                erase.extend(store.erase(link, id));
            }
        }
        store.dropped_keys += erase.len() as u64;
        drop(stores);
        if !erase.is_empty() {
            tracing::info!(%link, blocks = ?blocks, dropped = erase.len(), "dropped the rest of blocks the other end lacks");
        }
        self.db.write_detached(erase);
    }

    /// Erases the free keys of `link` from blocks before sequence `earliest` (the other end does
    /// not have them).
    fn drop_before(&self, link: Uuid, earliest: u64) {
        let mut erase = Vec::new();
        let mut stores = self.lock();
        let Some(store) = stores.get_mut(&link) else {
            return;
        };
        // Free keys are in arrival order: the stale ones are at the front.
        let before = store
            .free
            .partition_point(|id| store.material.get(id).is_some_and(|m| m.sequence < earliest));
        let stale: Vec<Uuid> = store.free.drain(..before).collect();
        for id in &stale {
            erase.extend(store.erase(link, id));
        }
        store.dropped_keys += stale.len() as u64;
        drop(stores);
        if !stale.is_empty() {
            tracing::info!(%link, dropped = stale.len(), "dropped keys the other end never had");
        }
        self.db.write_detached(erase);
    }

    /// At the other end: records deliveries the owner made, after checking each part.
    pub async fn reserve(
        &self,
        from: Uuid,
        link: Uuid,
        deliveries: Vec<(Uuid, Delivery)>,
    ) -> Result<(), ReserveError> {
        let mut ops = Vec::new();
        {
            let mut stores = self.lock();
            let store = stores
                .get_mut(&link)
                .ok_or_else(|| ReserveError::Failed(format!("no key store for link {link}")))?;
            if store.remote != from {
                return Err(ReserveError::Failed(format!(
                    "link {link} does not end at node {from}"
                )));
            }
            let mut unusable = Vec::new();
            for (id, delivery) in &deliveries {
                if store.deliveries.get(id).is_some_and(|d| {
                    d.state == DeliveryState::Reserved
                        && d.parts == delivery.parts
                        && d.master == delivery.master
                        && d.slaves == delivery.slaves
                }) {
                    continue; // already reserved: a retry
                }
                for part in &delivery.parts {
                    let usable = store.material.get(part).is_some_and(|m| !m.owned_here)
                        && !store.held.contains(part);
                    if !usable {
                        unusable.push(*part);
                    }
                }
            }
            if !unusable.is_empty() {
                let earliest = store.blocks.keys().next().copied();
                return Err(ReserveError::Unusable(unusable, earliest));
            }
            for (id, delivery) in deliveries {
                if store.deliveries.contains_key(&id) {
                    continue;
                }
                let reserved =
                    Delivery { state: DeliveryState::Reserved, fetched: Vec::new(), ..delivery };
                store.held.extend(reserved.parts.iter().copied());
                ops.push(Op::PutDelivery { link, id, delivery: reserved.clone() });
                store.deliveries.insert(id, reserved);
            }
        }
        if let Err(e) = self.db.write(ops).await {
            return Err(ReserveError::Failed(e.0));
        }
        Ok(())
    }

    /// `dec_keys`: the keys `ids` for `slave`, delivered to `master` at the other end, looked
    /// up in the store of `link` (the pair's link now) and, for keys delivered before the pair
    /// moved to another link (a reroute between `enc_keys` and `dec_keys`), in the store that
    /// holds their delivery. All or nothing; each slave gets each key once.
    pub async fn fetch(
        &self,
        link: Uuid,
        slave: &str,
        master: &str,
        ids: &[Uuid],
    ) -> Result<Vec<Issued>, StoreError> {
        let now = now_ms();
        let mut ops = Vec::new();
        let mut issued = Vec::with_capacity(ids.len());
        {
            let mut stores = self.lock();
            if !stores.contains_key(&link) {
                return Err(StoreError::NoLink(link));
            }
            // The store of each key's delivery.
            let mut found = Vec::with_capacity(ids.len());
            let mut seen = HashSet::new();
            for id in ids {
                let holder = if stores[&link].deliveries.contains_key(id) {
                    Some(link)
                } else {
                    stores.iter().find(|(_, s)| s.deliveries.contains_key(id)).map(|(l, _)| *l)
                };
                let Some(holder) = holder else {
                    return Err(StoreError::NotFound);
                };
                let store = &stores[&holder];
                let d = &store.deliveries[id];
                if d.state != DeliveryState::Reserved || d.expires_ms <= now || !seen.insert(*id) {
                    return Err(StoreError::NotFound);
                }
                if d.master != master || !d.slaves.iter().any(|s| s == slave) {
                    return Err(StoreError::NotAuthorized);
                }
                if d.fetched.iter().any(|s| s == slave) {
                    return Err(StoreError::NotFound);
                }
                if store.assemble(&d.parts, d.size_bits).is_none() {
                    return Err(StoreError::NotFound);
                }
                found.push((*id, holder));
            }
            for (id, holder) in found {
                let store = stores.get_mut(&holder).expect("checked above");
                let mut delivery = store.deliveries.remove(&id).expect("checked above");
                let bytes =
                    store.assemble(&delivery.parts, delivery.size_bits).expect("checked above");
                issued.push((id, bytes));
                delivery.fetched.push(slave.to_owned());
                if delivery.fetched.len() >= delivery.slaves.len() {
                    for part in &delivery.parts {
                        store.held.remove(part);
                        ops.extend(store.erase(holder, part));
                    }
                    store.consumed_keys += delivery.parts.len() as u64;
                    ops.push(Op::RemoveDelivery {
                        link: holder,
                        id,
                        expires_ms: delivery.expires_ms,
                    });
                } else {
                    ops.push(Op::PutDelivery { link: holder, id, delivery: delivery.clone() });
                    store.deliveries.insert(id, delivery);
                }
            }
        }
        // Durable before the answer: a slave never gets a key twice, even across a crash.
        self.db.write(ops).await?;
        Ok(issued)
    }

    /// Deliveries this end made whose reservation at the other end may not have been
    /// confirmed (found at start-up): they are sent again, then erased here.
    pub async fn finish_deliveries(&self, peer: &dyn PeerSync) {
        let pending: Vec<Pending> = {
            let stores = self.lock();
            stores
                .iter()
                .filter_map(|(link, s)| {
                    let mine: Vec<(Uuid, Delivery)> = s
                        .deliveries
                        .iter()
                        .filter(|(_, d)| d.state == DeliveryState::Delivering)
                        .map(|(id, d)| (*id, d.clone()))
                        .collect();
                    (!mine.is_empty()).then_some((*link, s.remote, mine))
                })
                .collect()
        };
        for (link, remote, deliveries) in pending {
            match peer.reserve(remote, link, deliveries.clone()).await {
                Ok(()) | Err(ReserveError::Unusable(..)) => {
                    // Reserved there (or impossible there): either way never handed out here.
                    let mut ops = Vec::new();
                    let mut stores = self.lock();
                    if let Some(store) = stores.get_mut(&link) {
                        for (id, d) in &deliveries {
                            store.deliveries.remove(id);
                            for part in &d.parts {
                                store.held.remove(part);
                                ops.extend(store.erase(link, part));
                            }
                            ops.push(Op::RemoveDelivery {
                                link,
                                id: *id,
                                expires_ms: d.expires_ms,
                            });
                        }
                    }
                    drop(stores);
                    self.db.write_detached(ops);
                }
                Err(ReserveError::Failed(reason)) => {
                    tracing::warn!(%link, %reason, "deliveries not confirmed by the other end yet; will retry");
                }
            }
        }
    }

    /// Pads for relaying `count` keys of `key_bits` over `link`: keys this end owns (whole keys,
    /// as many per relayed key as it takes), erased durably before they are returned, so that no
    /// pad can ever be used twice, even across a crash. They come from the pad pool first
    /// (erased ahead, see [`refill_pad_pools`](Self::refill_pad_pools)), then from the free keys.
    pub async fn take_pads(
        &self,
        link: Uuid,
        count: usize,
        key_bits: u32,
    ) -> Result<Vec<Pad>, StoreError> {
        let mut ops = Vec::new();
        let pads = {
            let mut stores = self.lock();
            let store = stores.get_mut(&link).ok_or(StoreError::NoLink(link))?;
            let per_key = store.parts_per_key(key_bits);
            let needed = per_key * count;
            let have = store.pad_pool.len() + store.free.len();
            if have < needed {
                return Err(StoreError::NotEnough { available: have / per_key, needed: count });
            }
            let from_pool = needed.min(store.pad_pool.len());
            let mut parts: Vec<PooledPad> = store.pad_pool.drain(..from_pool).collect();
            for id in store.free.drain(..needed - from_pool).collect::<Vec<_>>() {
                let (m, op) = store.take_material(link, &id).expect("free keys have material");
                parts.push((id, m.bytes));
                ops.push(op);
            }
            store.consumed_keys += needed as u64;
            let mut pads = Vec::with_capacity(count);
            let mut parts = parts.into_iter();
            for _ in 0..count {
                let mut ids = Vec::with_capacity(per_key);
                let mine: Vec<(Uuid, Zeroizing<Vec<u8>>)> = parts.by_ref().take(per_key).collect();
                // Sized for its parts, so it never grows (no unwiped copy left behind).
                let mut bytes =
                    Zeroizing::new(Vec::with_capacity(mine.iter().map(|(_, m)| m.len()).sum()));
                for (id, material) in mine {
                    ids.push(id);
                    bytes.extend_from_slice(&material);
                }
                pads.push(Pad { ids, bytes });
            }
            pads
        };
        self.db.write(ops).await?;
        Ok(pads)
    }

    /// Keeps the pad pool of every link with a relay reserve at least half full (the reserve
    /// is its target): free keys are erased on disk in one durable write, then kept in memory
    /// as pads, so that relaying through this node does not wait for the disk.
    pub async fn refill_pad_pools(&self) -> Result<(), StoreError> {
        let mut ops = Vec::new();
        let mut moved: Vec<(Uuid, Vec<PooledPad>)> = Vec::new();
        {
            let mut stores = self.lock();
            for (link, store) in stores.iter_mut() {
                let target = store.relay_reserve.min(MAX_PAD_POOL);
                if store.pad_pool.len() >= target / 2 || store.free.is_empty() {
                    continue;
                }
                let take = (target - store.pad_pool.len()).min(store.free.len());
                let mut keys = Vec::with_capacity(take);
                for id in store.free.drain(..take).collect::<Vec<_>>() {
                    let (m, op) = store.take_material(*link, &id).expect("free keys have material");
                    keys.push((id, m.bytes));
                    ops.push(op);
                }
                moved.push((*link, keys));
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        let written = self.db.write(ops).await;
        let mut stores = self.lock();
        for (link, keys) in moved {
            let Some(store) = stores.get_mut(&link) else {
                continue;
            };
            if written.is_ok() {
                store.pad_pool.extend(keys);
            } else {
                // Not known to be erased on disk: forgotten here, unused; after a restart they
                // may come back from disk as free keys, which is safe since none was used.
                store.dropped_keys += keys.len() as u64;
            }
        }
        written.map_err(StoreError::from)
    }

    /// At the receiving end of a hop: the pads `ids` of `link`, which must be keys the sender
    /// `from` owns and nobody holds; they are erased.
    pub fn use_pads(
        &self,
        link: Uuid,
        from: Uuid,
        pads: &[Vec<Uuid>],
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, StoreError> {
        let mut stores = self.lock();
        let store = stores.get_mut(&link).ok_or(StoreError::NoLink(link))?;
        if store.remote != from {
            return Err(StoreError::NotAuthorized);
        }
        let mut seen = HashSet::new();
        for id in pads.iter().flatten() {
            let usable = store.material.get(id).is_some_and(|m| !m.owned_here)
                && !store.held.contains(id)
                && seen.insert(*id);
            if !usable {
                return Err(StoreError::NotFound);
            }
        }
        let mut ops = Vec::new();
        let mut out = Vec::with_capacity(pads.len());
        for ids in pads {
            let total =
                ids.iter().filter_map(|id| store.material.get(id)).map(|m| m.bytes.len()).sum();
            let mut bytes = Zeroizing::new(Vec::with_capacity(total));
            for id in ids {
                let (m, op) = store.take_material(link, id).expect("checked above");
                bytes.extend_from_slice(&m.bytes);
                ops.push(op);
            }
            store.consumed_keys += ids.len() as u64;
            out.push(bytes);
        }
        drop(stores);
        // Not durable before use: a pad that reappeared after a crash belongs to the sender,
        // which erased it durably before sending, so nobody can use it again.
        self.db.write_detached(ops);
        Ok(out)
    }

    /// Stores relayed keys of virtual link `link` at `placement` in its key stream, not usable
    /// until [`commit_relay`](Self::commit_relay). A relay already stored is not stored again.
    pub async fn put_relayed(
        &self,
        link: Uuid,
        relay: Uuid,
        placement: Placement,
        keys: Vec<Issued>,
        expires_ms: u64,
        source: bool,
    ) -> Result<(), StoreError> {
        if self.relays.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&relay) {
            return Ok(());
        }
        let created_ms = now_ms();
        let remote = self.remote_of(link).ok_or(StoreError::NoLink(link))?;
        let mut ops = Vec::with_capacity(keys.len() + 1);
        for (index, (id, bytes)) in keys.iter().enumerate() {
            let sealed = self.seal.seal(link, *id, bytes);
            let size_bits = (bytes.len() * 8) as u32;
            let (sequence, index) = placement.of(index);
            ops.push(Op::PutKey(StoredKey {
                link,
                id: *id,
                size_bits,
                created_ms,
                sequence,
                index,
                sealed,
            }));
        }
        let pending = PendingRelay {
            link,
            keys: keys.iter().map(|(id, _)| *id).collect(),
            expires_ms,
            source,
        };
        ops.push(Op::PutRelay { id: relay, relay: pending.clone() });
        self.db.write(ops).await?;
        let mut stores = self.lock();
        let store = stores.get_mut(&link).ok_or(StoreError::NoLink(link))?;
        for (index, (id, bytes)) in keys.into_iter().enumerate() {
            let (sequence, index) = placement.of(index);
            let position = ownership::position(sequence, index as usize);
            let owned_here = ownership::owned_by(self.node, remote, position);
            store.key_bits = (bytes.len() * 8) as u32;
            store.held.insert(id);
            store.put_material(id, Material { bytes, created_ms, sequence, index, owned_here });
        }
        drop(stores);
        self.relays.lock().unwrap_or_else(|p| p.into_inner()).insert(relay, pending);
        Ok(())
    }

    /// Makes a relay's keys of virtual link `link` usable; `false` when the relay is unknown
    /// here (never stored, expired, or already committed) or is one of another link.
    pub async fn commit_relay(&self, link: Uuid, relay: Uuid) -> Result<bool, StoreError> {
        let pending = {
            let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
            match relays.get(&relay) {
                Some(p) if p.link == link => relays.remove(&relay),
                _ => None,
            }
        };
        let Some(pending) = pending else {
            return Ok(false);
        };
        self.db.write(vec![Op::RemoveRelay { id: relay }]).await?;
        let mut stores = self.lock();
        if let Some(store) = stores.get_mut(&pending.link) {
            for id in &pending.keys {
                store.held.remove(id);
                if store.material.get(id).is_some_and(|m| m.owned_here) {
                    store.free.push_back(*id);
                }
            }
            store.filled_keys += pending.keys.len() as u64;
        }
        Ok(true)
    }

    /// Keys this end may hand out on `link`, and keys of the other end's share held here for it
    /// and not yet delivered (what the other end may still hand out, as far as this end knows).
    pub fn shares(&self, link: Uuid) -> (usize, usize) {
        self.lock().get_mut(&link).map(LinkStore::shares).unwrap_or((0, 0))
    }

    /// The link a pending relay's keys are stored under, if the relay is pending here.
    pub fn pending_relay_link(&self, relay: Uuid) -> Option<Uuid> {
        self.relays.lock().unwrap_or_else(|p| p.into_inner()).get(&relay).map(|p| p.link)
    }

    /// Erases a relay's keys (it will never be committed).
    pub fn abandon_relay(&self, relay: Uuid) {
        let Some(pending) = self.relays.lock().unwrap_or_else(|p| p.into_inner()).remove(&relay)
        else {
            return;
        };
        let mut ops = vec![Op::RemoveRelay { id: relay }];
        let mut stores = self.lock();
        if let Some(store) = stores.get_mut(&pending.link) {
            for id in &pending.keys {
                store.held.remove(id);
                ops.extend(store.erase(pending.link, id));
            }
        }
        drop(stores);
        self.db.write_detached(ops);
    }

    /// Relays this end generated whose commit is not confirmed yet.
    pub fn unconfirmed_relays(&self) -> Vec<(Uuid, Uuid)> {
        self.relays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, r)| r.source)
            .map(|(id, r)| (*id, r.link))
            .collect()
    }

    /// Keys stored for `link` (both halves, pending ones included).
    pub fn stored(&self, link: Uuid) -> usize {
        self.lock().get(&link).map(|s| s.material.len()).unwrap_or(0)
    }

    /// Erases expired deliveries and keys older than their link's TTL; returns how many keys
    /// were erased.
    pub fn sweep(&self) -> usize {
        let now = now_ms();
        let mut ops = Vec::new();
        let mut erased = 0;
        {
            let mut stores = self.lock();
            for (link, store) in stores.iter_mut() {
                let expired: Vec<Uuid> = store
                    .deliveries
                    .iter()
                    .filter(|(_, d)| d.expires_ms <= now && d.state == DeliveryState::Reserved)
                    .map(|(id, _)| *id)
                    .collect();
                for id in expired {
                    let d = store.deliveries.remove(&id).expect("listed");
                    for part in &d.parts {
                        store.held.remove(part);
                        ops.extend(store.erase(*link, part));
                        erased += 1;
                    }
                    ops.push(Op::RemoveDelivery { link: *link, id, expires_ms: d.expires_ms });
                }
                if let Some(max_age) = store.max_age {
                    let oldest = now.saturating_sub(max_age.as_millis() as u64);
                    let old: Vec<Uuid> = store
                        .material
                        .iter()
                        .filter(|(id, m)| m.created_ms < oldest && !store.held.contains(id))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in old {
                        ops.extend(store.erase(*link, &id));
                        erased += 1;
                    }
                    let material = &store.material;
                    store.free.retain(|id| material.contains_key(id));
                }
            }
        }
        self.db.write_detached(ops);
        let expired: Vec<Uuid> = self
            .relays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, r)| !r.source && r.expires_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for relay in expired {
            self.abandon_relay(relay);
        }
        erased
    }
}

/// Pad material for one relayed key: the hop keys it is made of, concatenated.
pub struct Pad {
    /// The hop keys.
    pub ids: Vec<Uuid>,
    /// Their material.
    pub bytes: Zeroizing<Vec<u8>>,
}
