//! Deliveries: who received a key with `enc_keys` and who may still fetch it with `dec_keys`.
//! A delivery carries no material: the parts' material stays in their blocks until every named
//! slave has it. Its ID is the ID of its first part (the key ID the master SAE received).
//!
//! A chunk of a key stream (ETSI GS QKD 004) is a delivery tagged with its [`StreamChunk`] and
//! reserved at both ends: at the other end for the destination application, as any delivery,
//! and at the owner, once the other end confirmed, for the source application (the owner keeps
//! it as a mirror delivery whose slave is the source). Each end hands it to its application
//! once, by its stream and index; a chunk is in a store at most once.
//! A relay record is the other record of who may use keys: relayed keys stored at an end of a
//! virtual link and held until their relay is committed (pending), or the outcome of a relay
//! the far end has settled (committed or refused), kept for a while to answer the source.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a delivered key stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// At the owner: handed to a master SAE; the other end is being told.
    Delivering,
    /// At the other end: the owner handed it out; the named slaves may fetch it.
    Reserved,
}

/// A chunk of a key stream: the stream's ID (its KSID) and the chunk's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamChunk {
    /// The key stream.
    pub stream: Uuid,
    /// The chunk's index in it.
    pub index: u32,
}

/// A key handed to a master SAE.
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
    /// Stored keys whose concatenation (cut to `size_bits`) is the delivered key.
    pub parts: Vec<Uuid>,
    /// Size of the delivered key, bits.
    pub size_bits: u32,
    /// When it is erased if not fetched, ms since the Unix epoch.
    pub expires_ms: u64,
    /// The key stream chunk it is (absent for `enc_keys` deliveries; rows written before
    /// streams existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<StreamChunk>,
}

impl Delivery {
    /// Its ID: the ID of its first part.
    pub fn id(&self) -> Option<Uuid> {
        self.parts.first().copied()
    }

    /// Whether `other` is the same delivery of the same parts to the same parties (a retried
    /// reservation).
    pub fn same_as(&self, other: &Delivery) -> bool {
        self.parts == other.parts
            && self.master == other.master
            && self.slaves == other.slaves
            && self.chunk == other.chunk
    }
}

/// Deliveries written in one row: those one `enc_keys` (or one reservation) made, of one
/// expiry. The row is named by a random ID of the store's, never by a key ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryGroup {
    /// The row's ID.
    pub id: Uuid,
    /// Its deliveries.
    pub deliveries: Vec<Delivery>,
}

/// Where a relay stands at an end of its virtual link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayState {
    /// Its keys are stored here and held until the relay is committed (or abandoned).
    #[default]
    Pending,
    /// Its keys were made usable here; the record answers the source until it expires.
    Committed,
    /// It never reached here and never will: a copy arriving late is refused until the record
    /// expires (after which the copy's own expiry refuses it).
    Refused,
}

/// A relay at an end of its virtual link: pending (its keys stored and held), or settled at
/// the far end (the record alone, so that the source can learn the outcome).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRecord {
    /// The relay's ID.
    pub id: Uuid,
    /// The block its keys are stored in (pending and committed relays).
    pub block: u64,
    /// Pending: its keys are erased if not committed by then (at the far end; the source
    /// settles its own by asking). Settled: the record goes then. Ms since the Unix epoch.
    pub expires_ms: u64,
    /// This end generated them (it settles the relay with the far end) or received them.
    pub source: bool,
    /// Pending, committed or refused (records written before outcomes were kept are pending).
    #[serde(default)]
    pub state: RelayState,
}

impl RelayRecord {
    /// Whether its keys are stored here and held.
    pub fn pending(&self) -> bool {
        self.state == RelayState::Pending
    }
}
