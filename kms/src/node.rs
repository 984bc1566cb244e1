//! A node's key stores: one owner per link, one database and its writer, and the registry of
//! the owners' handles that the agent's interfaces look links up in. The registry holds
//! handles only (no key state): it is replaced as a whole when the node's links change.
//!
//! At open, everything the database holds is loaded and grouped by link; a link's store is
//! started when the node's configuration names the link (with its other end, which decides
//! who owns which key), and what was stored for a link the configuration no longer names stays
//! on disk, valid, until the link comes back.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use uuid::Uuid;

use crate::delivery::{DeliveryGroup, RelayRecord, StreamChunk};
use crate::disk::{Disk, DiskBlocks, DiskError, StoredBlock};
use crate::legacy::Migrated;
use crate::link::{Issued, LinkSettings, LinkStats, LinkStore, StoreError};
use crate::owner::{LinkHandle, OwnerError, Reserver};
use crate::seal::{Keyring, SealError, SharedKeyring};
use crate::writer::Writer;

/// Blocks whose material a link's store keeps in memory between steps (with 1024 keys of 256
/// bits a block, 2 MiB a link); the others are read back from the database when used.
pub const LOADED_BLOCKS: usize = 64;

/// A link of the node, as its configuration names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// The link.
    pub link: Uuid,
    /// Its other end.
    pub remote: Uuid,
    /// Its store's settings.
    pub settings: LinkSettings,
}

/// A running link store.
#[derive(Clone, Debug)]
pub struct LinkEntry {
    /// The link's other end.
    pub remote: Uuid,
    /// Its owner.
    pub handle: LinkHandle,
}

/// What the database held of a link not started yet.
#[derive(Default)]
struct Loaded {
    blocks: Vec<StoredBlock>,
    deliveries: Vec<DeliveryGroup>,
    relays: Vec<RelayRecord>,
}

/// A node's key stores.
pub struct NodeStores {
    node: Uuid,
    ring: SharedKeyring,
    /// The database, read by the stores (the writer thread writes it).
    disk: Arc<Disk>,
    writer: Writer,
    peer: Arc<dyn Reserver>,
    links: ArcSwap<HashMap<Uuid, LinkEntry>>,
    /// Loaded data of links not started, and the next block ID of every link seen on disk.
    waiting: Mutex<(HashMap<Uuid, Loaded>, HashMap<Uuid, u64>)>,
    migrated: Option<Migrated>,
}

impl std::fmt::Debug for NodeStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStores").field("node", &self.node).finish_non_exhaustive()
    }
}

impl NodeStores {
    /// Opens the database at `path` (created if missing) for `node`, with `peer` carrying
    /// reservations to the other ends. A store of the previous format at `legacy`, if there
    /// is one, is migrated into it and then deleted. Call [`set_links`](Self::set_links) to
    /// start stores.
    pub fn open(
        path: &Path,
        legacy: Option<&Path>,
        node: Uuid,
        ring: Keyring,
        peer: Arc<dyn Reserver>,
    ) -> Result<NodeStores, DiskError> {
        let disk = Disk::open(path)?;
        let migrated = match legacy {
            Some(old) if old.exists() => {
                let report = crate::legacy::migrate(old, &disk, &ring)?;
                std::fs::remove_file(old).map_err(|e| {
                    DiskError::Database(format!(
                        "{}: migrated, but not deleted: {e}",
                        old.display()
                    ))
                })?;
                Some(report)
            }
            _ => None,
        };
        let mut loaded: HashMap<Uuid, Loaded> = HashMap::new();
        for block in disk.load()? {
            loaded.entry(block.block.place.link).or_default().blocks.push(block);
        }
        for (link, delivery) in disk.deliveries()? {
            loaded.entry(link).or_default().deliveries.push(delivery);
        }
        for (link, relay) in disk.relays()? {
            loaded.entry(link).or_default().relays.push(relay);
        }
        let next_blocks = disk.next_blocks()?;
        let disk = Arc::new(disk);
        Ok(NodeStores {
            node,
            ring: crate::seal::shared(ring),
            disk: disk.clone(),
            writer: Writer::start(disk)?,
            peer,
            links: ArcSwap::from_pointee(HashMap::new()),
            waiting: Mutex::new((loaded, next_blocks)),
            migrated,
        })
    }

    /// What was migrated from the previous format at open, if anything.
    pub fn migrated(&self) -> Option<Migrated> {
        self.migrated
    }

    /// This node.
    pub fn node(&self) -> Uuid {
        self.node
    }

    /// Starts the stores of links not started yet and passes new settings to the others;
    /// returns the blocks that could not be opened (wrong store key, or corrupted), which are
    /// left out. Stores of links no longer named keep running (their keys stay valid).
    /// Must be called from within a tokio runtime.
    pub fn set_links(&self, links: &[LinkConfig]) -> Vec<SealError> {
        let mut failed = Vec::new();
        let current = self.links.load_full();
        let mut next = (*current).clone();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for config in links {
            if let Some(entry) = current.get(&config.link) {
                entry.handle.set_settings(config.settings);
                continue;
            }
            let first = waiting.1.get(&config.link).copied().unwrap_or(0);
            let source = DiskBlocks::new(self.disk.clone(), self.ring.clone());
            let mut store =
                LinkStore::new(config.link, self.node, config.remote, config.settings, first)
                    .with_source(Arc::new(source), LOADED_BLOCKS);
            let loaded = waiting.0.remove(&config.link).unwrap_or_default();
            failed.extend(store.restore(
                &self.ring.load(),
                loaded.blocks,
                loaded.deliveries,
                loaded.relays,
            ));
            let handle =
                LinkHandle::spawn(store, self.ring.clone(), self.writer.clone(), self.peer.clone());
            next.insert(config.link, LinkEntry { remote: config.remote, handle });
        }
        self.links.store(Arc::new(next));
        failed
    }

    /// Ends a store key rotation begun at open (a keyring with previous keys): every block's
    /// data key is re-wrapped under the current key, in order with the writes (the stores
    /// serve meanwhile), then the previous keys are dropped. Returns how many blocks were
    /// re-wrapped (0 without previous keys). Call after [`set_links`](Self::set_links) has
    /// opened the blocks the previous keys wrapped.
    pub async fn finish_rotation(&self) -> Result<usize, DiskError> {
        let ring = self.ring.load_full();
        if !ring.has_previous() {
            return Ok(0);
        }
        let rewrapped = self.writer.rewrap(ring.clone()).await?;
        let mut current = (*ring).clone();
        current.forget_previous();
        self.ring.store(Arc::new(current));
        Ok(rewrapped)
    }

    /// The running store of `link`.
    pub fn link(&self, link: Uuid) -> Option<LinkEntry> {
        self.links.load().get(&link).cloned()
    }

    /// Every running store, by link.
    pub fn links(&self) -> Arc<HashMap<Uuid, LinkEntry>> {
        self.links.load_full()
    }

    /// `dec_keys`: the keys `ids` for `slave` of `master`, from the store of `link` (the pair's
    /// link now) or, for keys delivered before the pair moved to another link, from the store
    /// that holds all of them. All or nothing within one store.
    pub async fn fetch(
        &self,
        link: Uuid,
        slave: &str,
        master: &str,
        ids: Vec<Uuid>,
        now_ms: u64,
    ) -> Result<Vec<Issued>, OwnerError> {
        let links = self.links.load_full();
        let primary = links.get(&link).ok_or(OwnerError::Store(StoreError::NotFound))?;
        match primary.handle.fetch(slave, master, ids.clone(), now_ms).await {
            Err(OwnerError::Store(StoreError::NotFound)) => {}
            other => return other,
        }
        for (other, entry) in links.iter() {
            if *other == link {
                continue;
            }
            match entry.handle.fetch(slave, master, ids.clone(), now_ms).await {
                Err(OwnerError::Store(StoreError::NotFound)) => continue,
                found => return found,
            }
        }
        Err(OwnerError::Store(StoreError::NotFound))
    }

    /// Chunk `chunk` of a key stream for `slave`, whose other end is `master`, from the store
    /// of `link` (the stream's).
    pub async fn fetch_chunk(
        &self,
        link: Uuid,
        slave: &str,
        master: &str,
        chunk: StreamChunk,
        now_ms: u64,
    ) -> Result<Vec<Issued>, OwnerError> {
        let links = self.links.load_full();
        let entry = links.get(&link).ok_or(OwnerError::Store(StoreError::NotFound))?;
        entry.handle.fetch_chunk(slave, master, chunk, now_ms).await
    }

    /// The link whose store holds a record of relay `relay` (pending or settled).
    pub async fn relay_link(&self, relay: Uuid) -> Option<Uuid> {
        for (link, entry) in self.links.load_full().iter() {
            if entry.handle.knows_relay(relay).await.unwrap_or(false) {
                return Some(*link);
            }
        }
        None
    }

    /// Relays this node generated whose commit is not confirmed: relay and link.
    pub async fn unconfirmed_relays(&self) -> Vec<(Uuid, Uuid)> {
        let mut out = Vec::new();
        for (link, entry) in self.links.load_full().iter() {
            for relay in entry.handle.unconfirmed_relays().await.unwrap_or_default() {
                out.push((relay, *link));
            }
        }
        out.sort();
        out
    }

    /// Erases what expired by `now_ms` in every store.
    pub async fn sweep(&self, now_ms: u64) {
        for entry in self.links.load_full().values() {
            let _ = entry.handle.sweep(now_ms).await;
        }
    }

    /// Asks every store to erase pads ahead for the relay.
    pub fn refill_pools(&self) {
        for entry in self.links.load_full().values() {
            entry.handle.refill_pool();
        }
    }

    /// Counters of every running store, by link.
    pub async fn stats(&self) -> Vec<(Uuid, Uuid, LinkStats)> {
        let mut out = Vec::new();
        for (link, entry) in self.links.load_full().iter() {
            if let Ok(stats) = entry.handle.stats().await {
                out.push((*link, entry.remote, stats));
            }
        }
        out.sort_by_key(|(link, _, _)| *link);
        out
    }
}
