//! The key stores of the node's links as the agent's interfaces use them: a facade over the KMS
//! core (`qkdn-kms`), which gives every link's store one owner task and keeps the invariants of
//! DESIGN.md §7 (its crate documentation maps each to the module that keeps it).
//!
//! * [`KeyStores::ingest`] stores a device's block durably, then makes its keys available.
//! * [`KeyStores::take`] (the owner's side of `enc_keys`) has the other end reserve the keys
//!   for the named slaves (over the peer service), and only then returns them; keys the other
//!   end turns out to lack are dropped and the request is tried with others, a few times.
//! * [`KeyStores::reserve`] (the other end) records such deliveries after checking each part.
//! * [`KeyStores::fetch`] (`dec_keys`) gives a reserved key to each named slave once.
//! * The relay's pads, relayed keys and commits, and the sweep of expired keys.
//!
//! Key material lives in wiped buffers and is never logged.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qkdn_kms::link::{Lacking, LinkSettings as CoreSettings, StoreError as CoreError};
use qkdn_kms::node::{LinkConfig, NodeStores};
use qkdn_kms::owner::{OwnerError, Reserver, TakeRequest};
pub use qkdn_kms::owner::{RelayedKeys, Settle};
use qkdn_kms::seal::Keyring;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use qkdn_kms::block::Placement;
pub use qkdn_kms::delivery::{Delivery, DeliveryState, StreamChunk};
pub use qkdn_kms::link::{Issued, Pad};

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
    /// A key ID is unknown, already fetched, expired, or not delivered for the caller.
    #[error("one or more keys specified are not found on KME")]
    NotFound,
    /// The caller is not the other end of the link.
    #[error("the keys were not delivered for this caller")]
    NotAuthorized,
    /// The link has no store here.
    #[error("no key store for link {0}")]
    NoLink(Uuid),
    /// The other end did not reserve the keys.
    #[error("the other end of the link could not reserve the keys: {0}")]
    Peer(String),
    /// The other end lacked some keys (dropped here); other keys may do.
    #[error("{0} keys were not usable at the other end")]
    Unusable(usize),
    /// Some keys have not reached the other end yet (kept here); waiting may do.
    #[error("{0} keys have not reached the other end of the link yet")]
    NotThereYet(usize),
    /// The durable store failed, or a block was refused.
    #[error("{0}")]
    Db(String),
}

impl From<OwnerError> for StoreError {
    fn from(e: OwnerError) -> Self {
        match e {
            OwnerError::Store(CoreError::NotEnough { available, needed }) => {
                StoreError::NotEnough { available, needed }
            }
            OwnerError::Store(CoreError::KeptForOthers { available, needed }) => {
                StoreError::KeptForOthers { available, needed }
            }
            OwnerError::Store(CoreError::NotFound) => StoreError::NotFound,
            OwnerError::Unusable(n) => StoreError::Unusable(n),
            OwnerError::NotThereYet(n) => StoreError::NotThereYet(n),
            OwnerError::Peer(reason) => StoreError::Peer(reason),
            other => StoreError::Db(other.to_string()),
        }
    }
}

/// The other end's answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveError {
    /// Parts the other end lacks or cannot give (not there, not the caller's, already held).
    Unusable(Lacking),
    /// Anything else (unreachable, refused): nothing is known to be reserved.
    Failed(String),
}

/// Tries of one `enc_keys` when the other end lacks keys.
const MAX_TAKE_ATTEMPTS: usize = 4;

/// How long one `enc_keys` waits, at most, for keys to reach the other end of the link (the
/// two ends store a device's blocks independently, so one may be a little ahead).
const MAX_WAIT_FOR_OTHER_END: Duration = Duration::from_secs(2);

/// Settings of the stores.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// Keys a link's store holds at most; the oldest keys of the larger half make room.
    pub capacity: usize,
    /// How long a delivered key waits for its slaves when the application sets no TTL.
    pub delivery_ttl: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings { capacity: 1_000_000, delivery_ttl: Duration::from_secs(3600) }
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

pub use qkdn_proto::node_api::StoreCounters;

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
    /// Keys (of `size_bits`) that must stay in the store for the other SAE pairs of the link,
    /// checked in the same step as the take.
    pub keep_for_others: usize,
    /// The key stream chunk the key is: one key for one slave, reserved at both ends (the
    /// master fetches its copy with [`KeyStores::fetch_chunk`]).
    pub chunk: Option<StreamChunk>,
}

/// The key stores of a node.
pub struct KeyStores {
    node: Uuid,
    settings: StoreSettings,
    stores: NodeStores,
}

impl std::fmt::Debug for KeyStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStores").field("node", &self.node).finish_non_exhaustive()
    }
}

/// The database file of the stores in the data directory, and the previous format's.
const DATABASE: &str = "keys.redb";
const PREVIOUS_DATABASE: &str = "kms.redb";

impl KeyStores {
    /// The stores of `node`, kept in `data_dir` (a store of the previous format there is
    /// migrated and deleted), sealed under `ring`'s store key, with `peer` carrying
    /// reservations to the other ends. Must be called within a tokio runtime.
    pub fn open(
        node: Uuid,
        ring: Keyring,
        data_dir: &Path,
        settings: StoreSettings,
        peer: Arc<dyn Reserver>,
    ) -> Result<Arc<KeyStores>, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Db(format!("{}: {e}", data_dir.display())))?;
        let path = data_dir.join(DATABASE);
        let previous = data_dir.join(PREVIOUS_DATABASE);
        let stores = NodeStores::open(&path, Some(&previous), node, ring, peer)
            .map_err(|e| StoreError::Db(e.to_string()))?;
        if let Some(m) = stores.migrated() {
            tracing::info!(
                keys = m.keys,
                blocks = m.blocks,
                deliveries = m.deliveries,
                relays = m.relays,
                unreadable = m.unreadable,
                dropped = m.dropped,
                "key store migrated from the previous format"
            );
        }
        Ok(Arc::new(KeyStores { node, settings, stores }))
    }

    /// This node.
    pub fn node(&self) -> Uuid {
        self.node
    }

    /// Starts the stores of new links and passes new settings to the others; stores of
    /// links that are gone keep running (their keys stay valid).
    pub fn set_links(&self, links: &HashMap<Uuid, LinkSettings>) {
        let configs: Vec<LinkConfig> = links
            .iter()
            .map(|(link, s)| LinkConfig {
                link: *link,
                remote: s.remote,
                settings: CoreSettings {
                    capacity: self.settings.capacity,
                    max_age_ms: s.max_age.map(|a| a.as_millis() as u64),
                    relay_reserve: s.relay_reserve,
                },
            })
            .collect();
        let failed = self.stores.set_links(&configs);
        if !failed.is_empty() {
            tracing::error!(
                unreadable = failed.len(),
                first = %failed[0],
                "stored key blocks failed authentication and were skipped (wrong store key?)"
            );
        }
    }

    fn handle(&self, link: Uuid) -> Result<qkdn_kms::owner::LinkHandle, StoreError> {
        self.stores.link(link).map(|e| e.handle).ok_or(StoreError::NoLink(link))
    }

    /// The other end of `link`, when it has a store.
    pub fn remote_of(&self, link: Uuid) -> Option<Uuid> {
        self.stores.link(link).map(|e| e.remote)
    }

    /// Counters of every store.
    pub async fn stats(&self) -> Vec<StoreCounters> {
        self.stores
            .stats()
            .await
            .into_iter()
            .map(|(link, remote, s)| StoreCounters {
                link,
                remote,
                key_bits: s.key_bits,
                stored: s.stored,
                free_owned: s.free_owned,
                deliveries: s.deliveries,
                filled: s.filled,
                consumed: s.consumed,
                dropped: s.dropped,
                pad_pool: s.pad_pool,
            })
            .collect()
    }

    /// Counts `keys` keys of `link` lost before they reached the store.
    pub fn count_dropped(&self, link: Uuid, keys: usize) {
        if let Ok(handle) = self.handle(link) {
            handle.count_dropped(keys);
        }
    }

    /// Keys of `size_bits` this end could hand out on `link` now (the relay's reserve apart).
    pub async fn available(&self, link: Uuid, size_bits: u32) -> usize {
        match self.handle(link) {
            Ok(handle) => handle.available(size_bits).await.unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Stores a device's block durably, then makes its keys available.
    pub async fn ingest(&self, block: KeyBlock) -> Result<(), StoreError> {
        let handle = self.handle(block.link)?;
        let (link, sequence, key_bytes) = (block.link, block.sequence, block.key_bytes());
        let (ids, material) = block.into_parts();
        let new = qkdn_kms::link::NewBlock {
            ids,
            material,
            key_bytes: key_bytes as u32,
            placement: Placement { sequence, step: 1 },
        };
        match handle.ingest(new, now_ms()).await {
            Ok(()) => Ok(()),
            // A full store drops the block (counted); not an error of the feed.
            Err(OwnerError::Store(CoreError::Full)) => {
                tracing::debug!(%link, "key store full of held keys: a block was dropped");
                Ok(())
            }
            Err(e) => Err(StoreError::Db(e.to_string())),
        }
    }

    /// `enc_keys` at the owner: keys for the request's master, fetchable by its slaves at the
    /// other end, reserved there before they are returned.
    pub async fn take(&self, request: &Take<'_>) -> Result<Vec<Issued>, StoreError> {
        let handle = self.handle(request.link)?;
        let expires_ms =
            now_ms() + request.ttl.unwrap_or(self.settings.delivery_ttl).as_millis() as u64;
        let mut attempt = 0;
        let mut pause = Duration::from_millis(10);
        let wait_until = tokio::time::Instant::now() + MAX_WAIT_FOR_OTHER_END;
        loop {
            attempt += 1;
            let take = TakeRequest {
                master: request.master.to_owned(),
                slaves: request.slaves.to_vec(),
                number: request.number,
                size_bits: request.size_bits,
                expires_ms,
                keep_for_others: request.keep_for_others,
                chunk: request.chunk,
            };
            match handle.take(take).await.map_err(StoreError::from) {
                Err(StoreError::Unusable(n)) if attempt < MAX_TAKE_ATTEMPTS => {
                    tracing::debug!(link = %request.link, unusable = n, attempt, "trying other keys");
                }
                Err(StoreError::Unusable(n)) => {
                    return Err(StoreError::Peer(format!(
                        "{n} keys were not usable at the other end"
                    )));
                }
                Err(StoreError::NotThereYet(n))
                    if tokio::time::Instant::now() + pause <= wait_until =>
                {
                    tracing::debug!(link = %request.link, keys = n, "waiting for the other end");
                    attempt -= 1;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                other => return other,
            }
        }
    }

    /// At the other end: records deliveries that `from` made on `link`, after checking each
    /// part.
    pub async fn reserve(
        &self,
        from: Uuid,
        link: Uuid,
        deliveries: Vec<Delivery>,
    ) -> Result<(), ReserveError> {
        let entry = self
            .stores
            .link(link)
            .ok_or_else(|| ReserveError::Failed(format!("no key store for link {link}")))?;
        if entry.remote != from {
            return Err(ReserveError::Failed(format!("link {link} does not end at node {from}")));
        }
        entry.handle.reserve(deliveries).await.map_err(|e| match e {
            qkdn_kms::link::ReserveError::Unusable(lacking) => ReserveError::Unusable(lacking),
            qkdn_kms::link::ReserveError::Malformed(reason) => ReserveError::Failed(reason.into()),
        })
    }

    /// `dec_keys`: the keys `ids` for `slave`, delivered to `master` at the other end, from the
    /// store of `link` (the pair's link now) or, for keys delivered before the pair moved to
    /// another link, from the store that holds them. All or nothing; each slave gets each key
    /// once.
    pub async fn fetch(
        &self,
        link: Uuid,
        slave: &str,
        master: &str,
        ids: &[Uuid],
    ) -> Result<Vec<Issued>, StoreError> {
        if self.stores.link(link).is_none() {
            return Err(StoreError::NoLink(link));
        }
        Ok(self.stores.fetch(link, slave, master, ids.to_vec(), now_ms()).await?)
    }

    /// Chunk `chunk` of a key stream for `local` (the application at this end) whose other end
    /// is `remote`, from the store of `link`; once.
    pub async fn fetch_chunk(
        &self,
        link: Uuid,
        local: &str,
        remote: &str,
        chunk: StreamChunk,
    ) -> Result<Vec<Issued>, StoreError> {
        if self.stores.link(link).is_none() {
            return Err(StoreError::NoLink(link));
        }
        Ok(self.stores.fetch_chunk(link, local, remote, chunk, now_ms()).await?)
    }

    /// Pads for relaying `count` keys of `key_bits` over `link`: keys this end owns, erased
    /// durably before they are returned, so that no pad can ever be used twice.
    pub async fn take_pads(
        &self,
        link: Uuid,
        count: usize,
        key_bits: u32,
    ) -> Result<Vec<Pad>, StoreError> {
        Ok(self.handle(link)?.take_pads(count, key_bits).await?)
    }

    /// Keeps every link's pad pool at least half its relay reserve (erased ahead, in memory).
    pub fn refill_pad_pools(&self) {
        self.stores.refill_pools();
    }

    /// At the receiving end of a hop: the pads `pads` of `link`, which must be keys the
    /// sender `from` owns and nobody holds; they are erased.
    pub async fn use_pads(
        &self,
        link: Uuid,
        from: Uuid,
        pads: &[Vec<Uuid>],
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, StoreError> {
        let entry = self.stores.link(link).ok_or(StoreError::NoLink(link))?;
        if entry.remote != from {
            return Err(StoreError::NotAuthorized);
        }
        Ok(entry.handle.use_pads(pads.to_vec()).await?)
    }

    /// Stores relayed keys of virtual link `link`: held until
    /// [`commit_relay`](Self::commit_relay), or usable at once when `keys.usable`. A relay
    /// already stored is not stored again; one refused here is refused.
    pub async fn put_relayed(&self, link: Uuid, keys: RelayedKeys) -> Result<(), StoreError> {
        self.handle(link)?.put_relayed(keys).await?;
        Ok(())
    }

    /// Commits a relay of virtual link `link` (see [`Settle`]): `true` when it is committed
    /// here (now or before), `false` when it is not stored here.
    pub async fn commit_relay(
        &self,
        link: Uuid,
        relay: Uuid,
        settle: Settle,
    ) -> Result<bool, StoreError> {
        match self.handle(link) {
            Ok(handle) => Ok(handle.commit_relay(relay, settle).await?),
            Err(_) => Ok(false),
        }
    }

    /// Keys this end may hand out on `link`, and keys of the other end's share held here and
    /// not yet delivered.
    pub async fn shares(&self, link: Uuid) -> (usize, usize) {
        match self.handle(link) {
            Ok(handle) => handle.shares().await.unwrap_or((0, 0)),
            Err(_) => (0, 0),
        }
    }

    /// The link a relay is recorded under (pending, or settled at the far end).
    pub async fn recorded_relay_link(&self, relay: Uuid) -> Option<Uuid> {
        self.stores.relay_link(relay).await
    }

    /// Erases a relay's keys of `link` (it will never be committed).
    pub fn abandon_relay(&self, link: Uuid, relay: Uuid) {
        if let Ok(handle) = self.handle(link) {
            handle.abandon_relay(relay);
        }
    }

    /// Relays this end generated whose commit is not confirmed yet: relay and link.
    pub async fn unconfirmed_relays(&self) -> Vec<(Uuid, Uuid)> {
        self.stores.unconfirmed_relays().await
    }

    /// Ends a store key rotation begun at start (previous keys in the keyring): re-wraps every
    /// block's data key under the store key; how many blocks were re-wrapped.
    pub async fn finish_rotation(&self) -> Result<usize, StoreError> {
        self.stores.finish_rotation().await.map_err(|e| StoreError::Db(e.to_string()))
    }

    /// Erases expired deliveries, relays and keys older than their link's TTL.
    pub async fn sweep(&self) {
        self.stores.sweep(now_ms()).await;
    }
}
