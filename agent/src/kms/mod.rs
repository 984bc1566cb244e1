//! The node's key management system (KMS): durable, encrypted key stores fed by the QKD
//! devices and by key relay, the synchronisation that keeps the two ends of every link in
//! agreement on who may hand out which key, and key delivery to applications over ETSI GS QKD
//! 014.
//!
//! The invariants of DESIGN.md §7 are the design's spine; where each is kept:
//!
//! 1. same ID, same bytes at both ends: keys come from the devices (or the relay) with their IDs
//!    and are never altered ([`store`]);
//! 2. delivered once, to the named parties only: [`store`] states, kept in step with the
//!    other end over the peer service (`crate::peer`);
//! 3. hop keys pad one relayed key and are erased: [`relay`];
//! 4. what a 2xx delivered survives `kill -9`: group-committed redb writes before every answer
//!    ([`db`]);
//! 5. no race between the ends: keys of a link are split between the two ends by position
//!    ([`ownership`]);
//! 6. key bytes never logged, zeroized, encrypted at rest ([`crypt`]);
//! 7. expired keys erased at both ends ([`store`]).
//!
//! [`monitor`] watches the stores' fill and rates and raises the 015 threshold alarms.

pub mod crypt;
pub mod db;
pub mod etsi014;
mod hooks;
pub mod monitor;
pub mod ownership;
pub mod relay;
pub mod relay_stats;
pub mod service;
pub mod store;

pub use hooks::*;

#[cfg(test)]
mod store_tests;
