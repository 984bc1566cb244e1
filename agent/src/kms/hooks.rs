//! The hooks between the node and its KMS.
//!
//! * [`KeySink`]: where the keys produced by the node's QKD devices go: the KMS, and
//!   [`KeyLedger`], which keeps no key: it counts keys and records a fingerprint of each block
//!   (a BLAKE3 hash of its key IDs and key material), so the two ends of a link can be compared
//!   without revealing anything about the keys.
//! * [`Application`] and the application table: the node's applications (SAE pairs, backing
//!   links, QoS) as the KMS needs them to map key requests to key stores, kept current by the
//!   agent.
//! * [`AppUsage`]: how many key bits each application consumed, for `app_statistics`, and
//!   whether it is starved, for `app_status`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use uuid::Uuid;

use crate::device::KeyBlock;

/// Receives the keys of the node's physical links.
pub trait KeySink: Send + Sync + 'static {
    /// Takes a block of new keys (the block zeroizes its material when dropped).
    fn deliver(&self, block: KeyBlock);

    /// Makes everything delivered so far durable (called at shutdown).
    fn flush(&self) {}
}

/// How many key bits applications consumed, and whether they are starved.
pub trait AppUsage: Send + Sync + 'static {
    /// Key bits delivered to application `app` so far.
    fn consumed_bits(&self, app: Uuid) -> u64;

    /// How long application `app` has been refused for lack of key material, with no delivery
    /// since and still asking; `None` when it is not.
    fn starved_for(&self, _app: Uuid) -> Option<std::time::Duration> {
        None
    }
}

/// Usage when nothing delivers keys to applications yet.
#[derive(Debug, Default)]
pub struct NoUsage;

impl AppUsage for NoUsage {
    fn consumed_bits(&self, _app: Uuid) -> u64 {
        0
    }
}

/// How many recent blocks the ledger remembers per link.
const RECENT_BLOCKS: usize = 512;

/// One block as the ledger remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockRecord {
    /// Position in the link's key stream.
    pub sequence: u64,
    /// Number of keys.
    pub keys: usize,
    /// First key ID.
    pub first_id: Uuid,
    /// Last key ID.
    pub last_id: Uuid,
    /// BLAKE3 (derive-key mode, qkdn context) of the sequence, the key IDs and the key material.
    pub fingerprint: String,
}

/// Key counters and recent blocks of one link.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkLedger {
    /// The link.
    pub link: Uuid,
    /// Blocks received.
    pub blocks: u64,
    /// Keys received.
    pub keys: u64,
    /// Key bits received.
    pub bits: u64,
    /// The most recent blocks, oldest first.
    pub recent: VecDeque<BlockRecord>,
}

/// The sink used until the KMS exists: counts and fingerprints, keeps no key.
#[derive(Debug, Default)]
pub struct KeyLedger {
    links: Mutex<HashMap<Uuid, LinkLedger>>,
}

impl KeyLedger {
    /// The ledger of `link`.
    pub fn link(&self, link: Uuid) -> Option<LinkLedger> {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).get(&link).cloned()
    }

    /// The ledgers of every link.
    pub fn all(&self) -> Vec<LinkLedger> {
        let mut all: Vec<LinkLedger> =
            self.links.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        all.sort_by_key(|l| l.link);
        all
    }
}

/// The fingerprint of a block.
pub fn fingerprint(block: &KeyBlock) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("qkdn 2026-11 key block fingerprint");
    hasher.update(block.link.as_bytes()).update(&block.sequence.to_le_bytes());
    for (id, material) in block.keys() {
        hasher.update(id.as_bytes()).update(material);
    }
    hasher.finalize().to_hex().to_string()
}

impl KeySink for KeyLedger {
    fn deliver(&self, block: KeyBlock) {
        self.record(&block);
    }
}

/// The ledger and the KMS together: the ledger records each block, then the KMS stores it.
pub struct LedgerAndKms {
    /// The ledger.
    pub ledger: Arc<KeyLedger>,
    /// The KMS's feed.
    pub kms: Arc<dyn KeySink>,
}

impl KeySink for LedgerAndKms {
    fn deliver(&self, block: KeyBlock) {
        self.ledger.record(&block);
        self.kms.deliver(block);
    }

    fn flush(&self) {
        self.kms.flush();
    }
}

impl KeyLedger {
    /// Counts and fingerprints a block.
    pub fn record(&self, block: &KeyBlock) {
        let (Some((first, _)), Some((last, _))) = (block.keys().next(), block.keys().last()) else {
            return;
        };
        let record = BlockRecord {
            sequence: block.sequence,
            keys: block.len(),
            first_id: first,
            last_id: last,
            fingerprint: fingerprint(block),
        };
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let ledger = links
            .entry(block.link)
            .or_insert_with(|| LinkLedger { link: block.link, ..LinkLedger::default() });
        ledger.blocks += 1;
        ledger.keys += block.len() as u64;
        ledger.bits += (block.len() * block.key_bytes() * 8) as u64;
        if ledger.recent.len() == RECENT_BLOCKS {
            ledger.recent.pop_front();
        }
        ledger.recent.push_back(record);
    }
}

/// An application of the node, as the KMS needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Application {
    /// `app_id`.
    pub id: Uuid,
    /// `server_app_id`: the SAE that initiates the key association.
    pub server_sae: Option<String>,
    /// `client_app_id`: SAEs allowed to receive the same keys.
    pub client_saes: Vec<String>,
    /// `backing_qkdl_id`: the links whose keys serve it.
    pub backing_links: Vec<Uuid>,
    /// `local_qkdn_id`.
    pub local_node: Option<Uuid>,
    /// `remote_qkdn_id`.
    pub remote_node: Option<Uuid>,
    /// `app_qos/max_bandwidth`, bit/s.
    pub max_bandwidth: Option<u32>,
    /// `app_qos/min_bandwidth`, bit/s.
    pub min_bandwidth: Option<u32>,
    /// `app_qos/ttl`, seconds.
    pub ttl: Option<u32>,
    /// `app_priority`.
    pub priority: u32,
    /// `expiration_time` (RFC 3339).
    pub expiration_time: Option<String>,
}
