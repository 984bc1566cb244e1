//! The KMS's durable state: one redb database (`kms.redb` in the data directory) written by one
//! thread with group commit. Callers hand it batches of operations and, for the writes an answer
//! depends on, wait until the batch is durable (`Durability::Immediate`); batches that arrive
//! while a commit runs share the next one, so many concurrent requests cost one fsync.
//!
//! Tables: `keys`, `(link, block sequence, index in the block) → key ID, size, creation time,
//! sealed material` (the material AEAD-sealed by [`super::crypt`]); `deliveries`, `(link,
//! expiry, key ID) → delivery` (who received a key and who may still fetch it; no material);
//! `relays`, `relay ID → pending relayed keys` (keys of a virtual link stored but not yet usable:
//! the relay that brought them is not committed at both ends).
//!
//! Rows sort in the order they arrive (block sequence, expiry), not by the random key IDs: a
//! stored block appends, keys consumed oldest first are erased from the front, and a commit
//! touches few pages. Keyed by ID, a store of millions of keys wrote ten times slower.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

const KEYS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("keys-by-arrival");
const DELIVERIES: TableDefinition<'_, &[u8; 40], &[u8]> =
    TableDefinition::new("deliveries-by-expiry");
const RELAYS: TableDefinition<'_, &[u8; 16], &[u8]> = TableDefinition::new("relays");

/// Batches one commit may take.
const MAX_GROUP: usize = 4096;

/// A failure of the KMS database.
#[derive(Clone, Debug, thiserror::Error)]
#[error("KMS store: {0}")]
pub struct DbError(pub String);

fn fail(e: impl std::fmt::Display) -> DbError {
    DbError(e.to_string())
}

/// The row of a delivery: link, expiry (big-endian, so new deliveries append) and key ID.
fn delivery_row(link: Uuid, expires_ms: u64, id: Uuid) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..16].copy_from_slice(link.as_bytes());
    key[16..24].copy_from_slice(&expires_ms.to_be_bytes());
    key[24..].copy_from_slice(id.as_bytes());
    key
}

fn split_delivery_row(key: &[u8; 40]) -> (Uuid, Uuid) {
    let link = Uuid::from_bytes(key[..16].try_into().expect("16 bytes"));
    let id = Uuid::from_bytes(key[24..].try_into().expect("16 bytes"));
    (link, id)
}

/// The row of a key: link, block sequence and index, big-endian so rows sort in arrival order.
fn key_row(link: Uuid, sequence: u64, index: u32) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(link.as_bytes());
    key[16..24].copy_from_slice(&sequence.to_be_bytes());
    key[24..28].copy_from_slice(&index.to_be_bytes());
    key
}

/// A stored key, as written.
#[derive(Clone)]
pub struct StoredKey {
    /// Its link.
    pub link: Uuid,
    /// Its ID.
    pub id: Uuid,
    /// Size, bits.
    pub size_bits: u32,
    /// When it was stored, ms since the Unix epoch.
    pub created_ms: u64,
    /// Sequence of its block in the link's key stream.
    pub sequence: u64,
    /// Its index in the block (with the sequence, decides its owner).
    pub index: u32,
    /// Nonce, ciphertext and tag.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey").field("link", &self.link).field("id", &self.id).finish()
    }
}

impl StoredKey {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.sealed.len());
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.size_bits.to_le_bytes());
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        out.extend_from_slice(&self.sealed);
        out
    }

    fn decode(row: &[u8; 32], bytes: &[u8]) -> Result<StoredKey, DbError> {
        let link = Uuid::from_bytes(row[..16].try_into().expect("16 bytes"));
        let sequence = u64::from_be_bytes(row[16..24].try_into().expect("8 bytes"));
        let index = u32::from_be_bytes(row[24..28].try_into().expect("4 bytes"));
        if bytes.len() < 28 {
            return Err(DbError(format!(
                "key {sequence}/{index} of link {link}: truncated record"
            )));
        }
        Ok(StoredKey {
            link,
            id: Uuid::from_bytes(bytes[..16].try_into().expect("16 bytes")),
            size_bits: u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")),
            created_ms: u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes")),
            sequence,
            index,
            sealed: bytes[28..].to_vec(),
        })
    }
}

/// Where a delivered key stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// At the owner: handed to a master SAE; the other end is being told.
    Delivering,
    /// At the other end: the owner handed it out; the named slaves may fetch it.
    Reserved,
}

/// A key handed to a master SAE (no material: the parts' material stays in `keys` until
/// every named slave has it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// State.
    pub state: DeliveryState,
    /// The master SAE.
    pub master: String,
    /// The slave SAEs that may fetch it.
    pub slaves: Vec<String>,
    /// Those that did.
    pub fetched: Vec<String>,
    /// Stored keys whose concatenation (cut to `size_bits`) is the delivered key; the first
    /// one's ID is the delivered key's ID.
    pub parts: Vec<Uuid>,
    /// Size of the delivered key, bits.
    pub size_bits: u32,
    /// When it is erased if not fetched, ms since the Unix epoch.
    pub expires_ms: u64,
}

/// One change.
#[derive(Debug)]
pub enum Op {
    /// Store a key.
    PutKey(StoredKey),
    /// Erase a key.
    RemoveKey {
        /// Its link.
        link: Uuid,
        /// Its block's sequence.
        sequence: u64,
        /// Its index in the block.
        index: u32,
    },
    /// Record a delivery.
    PutDelivery {
        /// Its link.
        link: Uuid,
        /// The delivered key's ID.
        id: Uuid,
        /// The delivery.
        delivery: Delivery,
    },
    /// Forget a delivery.
    RemoveDelivery {
        /// Its link.
        link: Uuid,
        /// The delivered key's ID.
        id: Uuid,
        /// Its expiry (part of its row).
        expires_ms: u64,
    },
    /// Record pending relayed keys.
    PutRelay {
        /// The relay.
        id: Uuid,
        /// Its keys.
        relay: PendingRelay,
    },
    /// Forget a relay (committed or abandoned).
    RemoveRelay {
        /// The relay.
        id: Uuid,
    },
}

/// Relayed keys stored at an end of a virtual link, not usable until the relay is committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRelay {
    /// The virtual link.
    pub link: Uuid,
    /// The keys.
    pub keys: Vec<Uuid>,
    /// Erased if not committed by then, ms since the Unix epoch.
    pub expires_ms: u64,
    /// This end generated them (it confirms the commit) or received them.
    pub source: bool,
}

type Batch = (Vec<Op>, Option<oneshot::Sender<Result<(), DbError>>>);

/// What the database holds, read at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every stored key.
    pub keys: Vec<StoredKey>,
    /// Every delivery.
    pub deliveries: Vec<(Uuid, Uuid, Delivery)>,
    /// Every pending relay.
    pub relays: Vec<(Uuid, PendingRelay)>,
}

/// The KMS database.
#[derive(Clone)]
pub struct Db {
    db: Arc<Database>,
    batches: mpsc::UnboundedSender<Batch>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db(..)")
    }
}

impl Db {
    /// Opens (or creates) `kms.redb` in `dir` and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        std::fs::create_dir_all(dir).map_err(fail)?;
        let path = dir.join("kms.redb");
        // A previous owner in this process may still be finishing its last commit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break Arc::new(db),
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(DbError(format!("{}: {e}", path.display()))),
            }
        };
        let (batches, incoming) = mpsc::unbounded_channel();
        let writer = db.clone();
        std::thread::Builder::new()
            .name("kms-writer".into())
            .spawn(move || write_loop(&writer, incoming))
            .map_err(fail)?;
        Ok(Db { db, batches })
    }

    /// Applies `ops` and returns once they are durable.
    pub async fn write(&self, ops: Vec<Op>) -> Result<(), DbError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.batches.send((ops, Some(done))).map_err(|_| DbError("the writer stopped".into()))?;
        wait.await.map_err(|_| DbError("the writer stopped".into()))?
    }

    /// Returns once everything written before is durable.
    pub async fn flush(&self) -> Result<(), DbError> {
        let (done, wait) = oneshot::channel();
        self.batches
            .send((Vec::new(), Some(done)))
            .map_err(|_| DbError("the writer stopped".into()))?;
        wait.await.map_err(|_| DbError("the writer stopped".into()))?
    }

    /// Applies `ops` in order with the other writes, without waiting.
    pub fn write_detached(&self, ops: Vec<Op>) {
        if !ops.is_empty() && self.batches.send((ops, None)).is_err() {
            tracing::error!("the KMS writer stopped; a change was not stored");
        }
    }

    /// Everything stored.
    pub fn load(&self) -> Result<Loaded, DbError> {
        let read = self.db.begin_read().map_err(fail)?;
        let mut loaded = Loaded::default();
        match read.open_table(KEYS) {
            Ok(table) => {
                for entry in table.iter().map_err(fail)? {
                    let (k, v) = entry.map_err(fail)?;
                    loaded.keys.push(StoredKey::decode(k.value(), v.value())?);
                }
            }
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(fail(e)),
        }
        match read.open_table(DELIVERIES) {
            Ok(table) => {
                for entry in table.iter().map_err(fail)? {
                    let (k, v) = entry.map_err(fail)?;
                    let (link, id) = split_delivery_row(k.value());
                    let delivery = serde_json::from_slice(v.value())
                        .map_err(|e| DbError(format!("delivery {id}: {e}")))?;
                    loaded.deliveries.push((link, id, delivery));
                }
            }
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(fail(e)),
        }
        match read.open_table(RELAYS) {
            Ok(table) => {
                for entry in table.iter().map_err(fail)? {
                    let (k, v) = entry.map_err(fail)?;
                    let id = Uuid::from_bytes(*k.value());
                    let relay = serde_json::from_slice(v.value())
                        .map_err(|e| DbError(format!("relay {id}: {e}")))?;
                    loaded.relays.push((id, relay));
                }
            }
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(fail(e)),
        }
        Ok(loaded)
    }
}

fn write_loop(db: &Database, mut incoming: mpsc::UnboundedReceiver<Batch>) {
    while let Some(first) = incoming.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match incoming.try_recv() {
                Ok(batch) => group.push(batch),
                Err(_) => break,
            }
        }
        let result = commit(db, &group);
        if let Err(e) = &result {
            tracing::error!(error = %e, "a KMS store commit failed");
        }
        for (_, done) in group {
            if let Some(done) = done {
                let _ = done.send(result.clone());
            }
        }
    }
}

fn commit(db: &Database, group: &[Batch]) -> Result<(), DbError> {
    let mut tx = db.begin_write().map_err(fail)?;
    tx.set_durability(Durability::Immediate).map_err(fail)?;
    {
        let mut keys = tx.open_table(KEYS).map_err(fail)?;
        let mut deliveries = tx.open_table(DELIVERIES).map_err(fail)?;
        let mut relays = tx.open_table(RELAYS).map_err(fail)?;
        for (ops, _) in group {
            for op in ops {
                match op {
                    Op::PutKey(key) => {
                        let row = key_row(key.link, key.sequence, key.index);
                        keys.insert(&row, key.encode().as_slice()).map_err(fail)?;
                    }
                    Op::RemoveKey { link, sequence, index } => {
                        keys.remove(&key_row(*link, *sequence, *index)).map_err(fail)?;
                    }
                    Op::PutDelivery { link, id, delivery } => {
                        let json = serde_json::to_vec(delivery).map_err(fail)?;
                        let row = delivery_row(*link, delivery.expires_ms, *id);
                        deliveries.insert(&row, json.as_slice()).map_err(fail)?;
                    }
                    Op::RemoveDelivery { link, id, expires_ms } => {
                        deliveries.remove(&delivery_row(*link, *expires_ms, *id)).map_err(fail)?;
                    }
                    Op::PutRelay { id, relay } => {
                        let json = serde_json::to_vec(relay).map_err(fail)?;
                        relays.insert(id.as_bytes(), json.as_slice()).map_err(fail)?;
                    }
                    Op::RemoveRelay { id } => {
                        relays.remove(id.as_bytes()).map_err(fail)?;
                    }
                }
            }
        }
    }
    tx.commit().map_err(fail)
}
