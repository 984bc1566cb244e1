//! Deliveries: who received a key with `enc_keys` and who may still fetch it with `dec_keys`.
//! A delivery carries no material: the parts' material stays in their blocks until every named
//! slave has it. Its ID is the ID of its first part (the key ID the master SAE received).
//! A pending relay is the other record of who may use keys: relayed keys stored at an end of
//! a virtual link, held until the relay that brought them is committed at both ends.

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
}

impl Delivery {
    /// Its ID: the ID of its first part.
    pub fn id(&self) -> Option<Uuid> {
        self.parts.first().copied()
    }

    /// Whether `other` is the same delivery of the same parts to the same parties (a retried
    /// reservation).
    pub fn same_as(&self, other: &Delivery) -> bool {
        self.parts == other.parts && self.master == other.master && self.slaves == other.slaves
    }
}

/// Relayed keys stored at an end of a virtual link, not usable until the relay is committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRelay {
    /// The relay's ID.
    pub id: Uuid,
    /// The block its keys are stored in.
    pub block: u64,
    /// Erased if not committed by then, ms since the Unix epoch.
    pub expires_ms: u64,
    /// This end generated them (it confirms the commit) or received them.
    pub source: bool,
}
