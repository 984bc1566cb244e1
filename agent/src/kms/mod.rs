//! The node's key management system (KMS): durable, encrypted key stores fed by the QKD
//! devices and by key relay, the synchronisation that keeps the two ends of every link in
//! agreement on who may hand out which key, and key delivery to applications over ETSI GS QKD
//! 014.
//!
//! The stores themselves are the KMS core (`qkdn-kms`: one owner task per link store, blocks
//! sealed under their own data keys); its crate documentation maps each invariant of DESIGN.md
//! §7 to the module that keeps it. Here: [`store`], the facade the agent's interfaces use;
//! [`crypt`], the operator's store key; [`relay`], the hop-by-hop relay over the peer service
//! (`crate::peer`), which pads each relayed key with keys used once (invariant 3);
//! [`ownership`], the split of a link's key stream between its ends (invariant 5);
//! [`delivery`], key delivery to applications, which the key interfaces adapt: [`etsi014`]
//! and [`skip`].
//!
//! [`health`] watches the stores' fill and rates and raises the 015 threshold alarms.

pub mod crypt;
pub mod delivery;
pub mod etsi004;
pub mod etsi014;
pub mod health;
mod hooks;
pub mod ownership;
pub mod query;
pub mod relay;
pub mod skip;
pub mod skip_psk;
pub mod startup;
pub mod store;

pub use hooks::*;
