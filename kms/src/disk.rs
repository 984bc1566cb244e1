//! The key blocks on disk: one redb database, rows keyed by what the KMS decides (link and the
//! block ID its store gave the block, big-endian so rows sort in arrival order), never by a
//! number a peer chose.
//!
//! Tables: `blocks`, `(link, block) → header, key IDs, sealed material`; `block-keys`, `(link,
//! block) → the block's data key, wrapped by a store key` (small rows, so a rotation re-wraps
//! them without rewriting material); `erased`, `(link, block) → bitmap of the block's erased
//! keys`; `next-block`, `link → the next block ID` (IDs are never reused, even after the last
//! block of a link is gone); `deliveries-by-expiry`, `(link, expiry, row ID) → the deliveries
//! of one request` (no material; the row ID is the store's own, and rows the previous version
//! wrote, named by a delivered key ID and holding that one delivery, still load);
//! `pending-relays`, `(link, relay ID) → relay record`: the block of relayed keys held until
//! the relay is committed, or (at the far end) the outcome of a relay it settled, kept for a
//! while to answer its source.
//!
//! Erasing the last key of a block deletes its three rows in one transaction: the data key goes
//! with them, and with it every copy of the block's material that free pages or a backup still
//! hold, once the store key that wrapped it is rotated away. [`Disk::apply`] commits a batch of
//! [`DiskOp`]s in one durable transaction.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::block::{BlockSource, KeySet, Placement, SealedBlock, SourceError};
use crate::delivery::{Delivery, DeliveryGroup, RelayRecord};
use crate::seal::{
    BlockPlace, Keyring, SealError, SharedKeyring, StoreKeyId, WRAPPED_LEN, WrappedKey,
};

const BLOCKS: TableDefinition<'_, &[u8; 24], &[u8]> = TableDefinition::new("blocks");
const BLOCK_KEYS: TableDefinition<'_, &[u8; 24], &[u8]> = TableDefinition::new("block-keys");
const ERASED: TableDefinition<'_, &[u8; 24], &[u8]> = TableDefinition::new("erased");
const NEXT_BLOCK: TableDefinition<'_, &[u8; 16], u64> = TableDefinition::new("next-block");
const DELIVERIES: TableDefinition<'_, &[u8; 40], &[u8]> =
    TableDefinition::new("deliveries-by-expiry");
const RELAYS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("pending-relays");

/// Bytes of a block's header row before its key IDs: sequence, step, key size, created, count.
const HEADER_LEN: usize = 8 + 8 + 4 + 8 + 4;

/// Keys a block on disk may hold (far more than any version writes: the stores number keys
/// within a block in 24 bits).
const MAX_STORED_BLOCK_KEYS: usize = 1 << 24;

/// Bytes of pages redb keeps in memory. Its default (1 GiB) would keep most of a large store's
/// blocks in memory a second time; the stores keep the blocks they use loaded themselves,
/// and the operating system caches the file.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// A failure of the key database.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// The database could not be opened, read or written.
    #[error("key database: {0}")]
    Database(String),
    /// A row is not what this version writes.
    #[error("key database: block {block} of link {link}: {reason}")]
    Corrupt {
        /// The block's link.
        link: Uuid,
        /// The block.
        block: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A block's keys could not be unwrapped or opened.
    #[error(transparent)]
    Seal(#[from] SealError),
}

fn fail(e: impl std::fmt::Display) -> DiskError {
    DiskError::Database(e.to_string())
}

/// The row of a block: link, then block ID big-endian.
fn row(place: BlockPlace) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(place.link.as_bytes());
    key[16..].copy_from_slice(&place.block.to_be_bytes());
    key
}

/// The row of deliveries: link, expiry (big-endian, so that new deliveries, which mostly expire
/// later than earlier ones, append to the table instead of landing at random places in it),
/// then the row's ID.
fn delivery_row(link: Uuid, expires_ms: u64, id: Uuid) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..16].copy_from_slice(link.as_bytes());
    key[16..24].copy_from_slice(&expires_ms.to_be_bytes());
    key[24..].copy_from_slice(id.as_bytes());
    key
}

/// The row of a pending relay: link, then its ID.
fn relay_row(link: Uuid, id: Uuid) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(link.as_bytes());
    key[16..].copy_from_slice(id.as_bytes());
    key
}

fn place_of(row: &[u8; 24]) -> BlockPlace {
    BlockPlace {
        link: Uuid::from_bytes(row[..16].try_into().expect("16 bytes")),
        block: u64::from_be_bytes(row[16..].try_into().expect("8 bytes")),
    }
}

/// A change to the stored blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskOp {
    /// Stores a new block (none of its keys erased).
    Put(SealedBlock),
    /// Records which keys of a block are erased (the whole set, not a difference).
    Erase {
        /// The block.
        place: BlockPlace,
        /// Its erased keys.
        erased: KeySet,
    },
    /// Deletes a block, its data key and its erasures (its last key is gone).
    Drop(BlockPlace),
    /// Records (or replaces) a row of deliveries of `link`, all of one expiry.
    PutDeliveries {
        /// Their link.
        link: Uuid,
        /// The row's ID.
        group: Uuid,
        /// Their expiry (part of the row's key).
        expires_ms: u64,
        /// The deliveries.
        deliveries: Vec<Delivery>,
    },
    /// Forgets a row of deliveries.
    RemoveDeliveries {
        /// Their link.
        link: Uuid,
        /// The row's ID.
        group: Uuid,
        /// Their expiry (part of the row's key).
        expires_ms: u64,
    },
    /// Records a pending relay of `link`.
    PutRelay {
        /// Its link.
        link: Uuid,
        /// The relay.
        relay: RelayRecord,
    },
    /// Forgets a pending relay (committed or abandoned).
    RemoveRelay {
        /// Its link.
        link: Uuid,
        /// The relay's ID.
        id: Uuid,
    },
    /// Replaces a block's wrapped data key (a rotation).
    Rewrap {
        /// The block.
        place: BlockPlace,
        /// Its data key, wrapped by the new store key.
        wrapped: WrappedKey,
    },
}

/// A stored block as loaded: still sealed, with its erased keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    /// The block.
    pub block: SealedBlock,
    /// Its erased keys.
    pub erased: KeySet,
}

/// Rows of a table keyed by link: the link, and what the rest of the key names with the record.
type LinkRows<K, T> = Vec<(Uuid, (K, T))>;

/// The key database.
pub struct Disk {
    db: Database,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Disk(..)")
    }
}

fn encode_block(block: &SealedBlock) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 16 * block.ids.len() + block.sealed.len());
    out.extend_from_slice(&block.placement.sequence.to_le_bytes());
    out.extend_from_slice(&block.placement.step.to_le_bytes());
    out.extend_from_slice(&block.key_bytes.to_le_bytes());
    out.extend_from_slice(&block.created_ms.to_le_bytes());
    out.extend_from_slice(&(block.ids.len() as u32).to_le_bytes());
    for id in &block.ids {
        out.extend_from_slice(id.as_bytes());
    }
    out.extend_from_slice(&block.sealed);
    out
}

fn decode_block(
    place: BlockPlace,
    bytes: &[u8],
    wrapped: WrappedKey,
) -> Result<SealedBlock, DiskError> {
    let corrupt = |reason| DiskError::Corrupt { link: place.link, block: place.block, reason };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt("truncated header"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let count = u32_at(28) as usize;
    if count > MAX_STORED_BLOCK_KEYS {
        return Err(corrupt("more keys than a block holds"));
    }
    let ids_end = HEADER_LEN + 16 * count;
    if bytes.len() < ids_end {
        return Err(corrupt("truncated key IDs"));
    }
    let ids = bytes[HEADER_LEN..ids_end]
        .chunks_exact(16)
        .map(|c| Uuid::from_bytes(c.try_into().expect("16 bytes")))
        .collect();
    Ok(SealedBlock {
        place,
        placement: Placement { sequence: u64_at(0), step: u64_at(8) },
        key_bytes: u32_at(16),
        created_ms: u64_at(20),
        ids,
        sealed: bytes[ids_end..].to_vec(),
        wrapped,
    })
}

fn encode_wrapped(wrapped: &WrappedKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + wrapped.bytes.len());
    out.extend_from_slice(&wrapped.by.0);
    out.extend_from_slice(&wrapped.bytes);
    out
}

fn decode_wrapped(place: BlockPlace, bytes: &[u8]) -> Result<WrappedKey, DiskError> {
    if bytes.len() != 8 + WRAPPED_LEN {
        return Err(DiskError::Corrupt {
            link: place.link,
            block: place.block,
            reason: "malformed data key",
        });
    }
    Ok(WrappedKey {
        by: StoreKeyId(bytes[..8].try_into().expect("8 bytes")),
        bytes: bytes[8..].to_vec(),
    })
}

fn missing_is_empty<T>(result: Result<T, TableError>) -> Result<Option<T>, DiskError> {
    match result {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(fail(e)),
    }
}

impl Disk {
    /// Opens (or creates) the database at `path`, waiting up to two seconds for a previous
    /// owner in this process to close it.
    pub fn open(path: &Path) -> Result<Disk, DiskError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match redb::Builder::new().set_cache_size(CACHE_BYTES).create(path) {
                Ok(db) => return Ok(Disk { db }),
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(fail(format!("{}: {e}", path.display()))),
            }
        }
    }

    /// Applies `ops` in order, in one durable transaction.
    pub fn apply(&self, ops: &[DiskOp]) -> Result<(), DiskError> {
        let mut tx = self.db.begin_write().map_err(fail)?;
        tx.set_durability(Durability::Immediate).map_err(fail)?;
        {
            let mut blocks = tx.open_table(BLOCKS).map_err(fail)?;
            let mut keys = tx.open_table(BLOCK_KEYS).map_err(fail)?;
            let mut erased = tx.open_table(ERASED).map_err(fail)?;
            let mut next = tx.open_table(NEXT_BLOCK).map_err(fail)?;
            let mut deliveries = tx.open_table(DELIVERIES).map_err(fail)?;
            let mut relays = tx.open_table(RELAYS).map_err(fail)?;
            for op in ops {
                match op {
                    DiskOp::Put(block) => {
                        let at = row(block.place);
                        blocks.insert(&at, encode_block(block).as_slice()).map_err(fail)?;
                        keys.insert(&at, encode_wrapped(&block.wrapped).as_slice())
                            .map_err(fail)?;
                        erased.remove(&at).map_err(fail)?;
                        let link = block.place.link.as_bytes();
                        let after = next.get(link).map_err(fail)?.map(|v| v.value()).unwrap_or(0);
                        next.insert(link, after.max(block.place.block + 1)).map_err(fail)?;
                    }
                    DiskOp::Erase { place, erased: set } => {
                        erased.insert(&row(*place), set.to_bytes().as_slice()).map_err(fail)?;
                    }
                    DiskOp::Drop(place) => {
                        let at = row(*place);
                        blocks.remove(&at).map_err(fail)?;
                        keys.remove(&at).map_err(fail)?;
                        erased.remove(&at).map_err(fail)?;
                    }
                    DiskOp::PutDeliveries { link, group, expires_ms, deliveries: records } => {
                        let json = serde_json::to_vec(records).map_err(fail)?;
                        deliveries
                            .insert(&delivery_row(*link, *expires_ms, *group), json.as_slice())
                            .map_err(fail)?;
                    }
                    DiskOp::RemoveDeliveries { link, group, expires_ms } => {
                        deliveries
                            .remove(&delivery_row(*link, *expires_ms, *group))
                            .map_err(fail)?;
                    }
                    DiskOp::PutRelay { link, relay } => {
                        let json = serde_json::to_vec(relay).map_err(fail)?;
                        relays
                            .insert(&relay_row(*link, relay.id), json.as_slice())
                            .map_err(fail)?;
                    }
                    DiskOp::RemoveRelay { link, id } => {
                        relays.remove(&relay_row(*link, *id)).map_err(fail)?;
                    }
                    DiskOp::Rewrap { place, wrapped } => {
                        let at = row(*place);
                        if keys.get(&at).map_err(fail)?.is_some() {
                            keys.insert(&at, encode_wrapped(wrapped).as_slice()).map_err(fail)?;
                        }
                    }
                }
            }
        }
        tx.commit().map_err(fail)
    }

    /// The stored block at `place`, still sealed, if it is there.
    pub fn block(&self, place: BlockPlace) -> Result<Option<SealedBlock>, DiskError> {
        let read = self.db.begin_read().map_err(fail)?;
        let Some(blocks) = missing_is_empty(read.open_table(BLOCKS))? else {
            return Ok(None);
        };
        let at = row(place);
        let Some(bytes) = blocks.get(&at).map_err(fail)? else { return Ok(None) };
        let keys = read.open_table(BLOCK_KEYS).map_err(fail)?;
        let wrapped = keys.get(&at).map_err(fail)?.ok_or(DiskError::Corrupt {
            link: place.link,
            block: place.block,
            reason: "no data key",
        })?;
        let wrapped = decode_wrapped(place, wrapped.value())?;
        decode_block(place, bytes.value(), wrapped).map(Some)
    }

    /// Every stored block, in order of link and block ID.
    pub fn load(&self) -> Result<Vec<StoredBlock>, DiskError> {
        let read = self.db.begin_read().map_err(fail)?;
        let Some(blocks) = missing_is_empty(read.open_table(BLOCKS))? else {
            return Ok(Vec::new());
        };
        let keys = read.open_table(BLOCK_KEYS).map_err(fail)?;
        let erased = read.open_table(ERASED).map_err(fail)?;
        let mut out = Vec::new();
        for entry in blocks.iter().map_err(fail)? {
            let (at, bytes) = entry.map_err(fail)?;
            let place = place_of(at.value());
            let wrapped = keys.get(at.value()).map_err(fail)?.ok_or(DiskError::Corrupt {
                link: place.link,
                block: place.block,
                reason: "no data key",
            })?;
            let wrapped = decode_wrapped(place, wrapped.value())?;
            let set = match erased.get(at.value()).map_err(fail)? {
                Some(bits) => KeySet::from_bytes(bits.value()).ok_or(DiskError::Corrupt {
                    link: place.link,
                    block: place.block,
                    reason: "malformed erasure bitmap",
                })?,
                None => KeySet::default(),
            };
            out.push(StoredBlock {
                block: decode_block(place, bytes.value(), wrapped)?,
                erased: set,
            });
        }
        Ok(out)
    }

    /// Every row of deliveries: link and row (a row the previous version wrote holds one
    /// delivery and is named by its ID).
    pub fn deliveries(&self) -> Result<Vec<(Uuid, DeliveryGroup)>, DiskError> {
        /// A row: the deliveries of one request, or (written before rows held several) one.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Row {
            Many(Vec<Delivery>),
            One(Delivery),
        }
        let rows: LinkRows<Uuid, Row> = self.json_rows(DELIVERIES, "a delivery", |at| {
            Uuid::from_bytes(at[24..40].try_into().expect("16 bytes"))
        })?;
        Ok(rows
            .into_iter()
            .map(|(link, (id, row))| {
                let deliveries = match row {
                    Row::Many(many) => many,
                    Row::One(one) => vec![one],
                };
                (link, DeliveryGroup { id, deliveries })
            })
            .collect())
    }

    /// Every pending relay: link and relay.
    pub fn relays(&self) -> Result<Vec<(Uuid, RelayRecord)>, DiskError> {
        let rows = self.json_rows(RELAYS, "a pending relay", |_| ())?;
        Ok(rows.into_iter().map(|(link, ((), relay))| (link, relay)).collect())
    }

    /// Every row of a table whose keys start with a link and whose values are JSON records:
    /// link, and what `named` reads from the rest of the key with the record.
    fn json_rows<const N: usize, K, T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<'_, &[u8; N], &[u8]>,
        what: &str,
        named: impl Fn(&[u8; N]) -> K,
    ) -> Result<LinkRows<K, T>, DiskError> {
        let read = self.db.begin_read().map_err(fail)?;
        let Some(table) = missing_is_empty(read.open_table(table))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(fail)? {
            let (at, bytes) = entry.map_err(fail)?;
            let link = Uuid::from_bytes(at.value()[..16].try_into().expect("16 bytes"));
            let record = serde_json::from_slice(bytes.value())
                .map_err(|e| fail(format!("{what} of link {link}: {e}")))?;
            out.push((link, (named(at.value()), record)));
        }
        Ok(out)
    }

    /// The next block ID of every link that ever stored a block.
    pub fn next_blocks(&self) -> Result<std::collections::HashMap<Uuid, u64>, DiskError> {
        let read = self.db.begin_read().map_err(fail)?;
        let Some(next) = missing_is_empty(read.open_table(NEXT_BLOCK))? else {
            return Ok(Default::default());
        };
        let mut out = std::collections::HashMap::new();
        for entry in next.iter().map_err(fail)? {
            let (link, block) = entry.map_err(fail)?;
            out.insert(Uuid::from_bytes(*link.value()), block.value());
        }
        Ok(out)
    }

    /// The next block ID of `link`: above every ID it ever stored.
    pub fn next_block(&self, link: Uuid) -> Result<u64, DiskError> {
        let read = self.db.begin_read().map_err(fail)?;
        let Some(next) = missing_is_empty(read.open_table(NEXT_BLOCK))? else {
            return Ok(0);
        };
        Ok(next.get(link.as_bytes()).map_err(fail)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Re-wraps every block's data key under `ring`'s current key, `batch` blocks per
    /// transaction (the store serves on meanwhile: blocks not yet re-wrapped open under the
    /// previous key, which the ring keeps). Returns how many blocks were re-wrapped.
    pub fn rewrap_all(&self, ring: &Keyring, batch: usize) -> Result<usize, DiskError> {
        let mut done = 0;
        // Each batch resumes after the last row the previous one read.
        let mut after: Option<[u8; 24]> = None;
        loop {
            let mut ops = Vec::with_capacity(batch);
            {
                let read = self.db.begin_read().map_err(fail)?;
                let Some(keys) = missing_is_empty(read.open_table(BLOCK_KEYS))? else {
                    return Ok(0);
                };
                let rows = match &after {
                    Some(last) => keys.range::<&[u8; 24]>((
                        std::ops::Bound::Excluded(last),
                        std::ops::Bound::Unbounded,
                    )),
                    None => keys.range::<&[u8; 24]>(..),
                };
                for entry in rows.map_err(fail)? {
                    let (at, bytes) = entry.map_err(fail)?;
                    after = Some(*at.value());
                    let place = place_of(at.value());
                    let wrapped = decode_wrapped(place, bytes.value())?;
                    if wrapped.by != ring.current_id() {
                        ops.push(DiskOp::Rewrap { place, wrapped: ring.rewrap(place, &wrapped)? });
                        if ops.len() == batch.max(1) {
                            break;
                        }
                    }
                }
            }
            if ops.is_empty() {
                return Ok(done);
            }
            done += ops.len();
            self.apply(&ops)?;
        }
    }
}

/// The stores' [`BlockSource`]: material read back from the database and opened under the
/// node's keyring (whichever of its store keys wrapped the block's data key).
pub struct DiskBlocks {
    disk: Arc<Disk>,
    ring: SharedKeyring,
}

impl DiskBlocks {
    /// Blocks of `disk`, opened under `ring`.
    pub fn new(disk: Arc<Disk>, ring: SharedKeyring) -> DiskBlocks {
        DiskBlocks { disk, ring }
    }
}

impl BlockSource for DiskBlocks {
    fn material(&self, place: BlockPlace) -> Result<Zeroizing<Vec<u8>>, SourceError> {
        let sealed = self.disk.block(place)?.ok_or(NotInDatabase(place.block))?;
        Ok(sealed.open_material(&self.ring.load())?)
    }
}

/// A block asked for is not in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("block {0} is not in the database")]
pub struct NotInDatabase(pub u64);
