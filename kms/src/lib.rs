//! The qkdn KMS core: the key stores of a node's links, kept apart from the agent's node model,
//! its devices and its transport (the agent wires them in). This crate grows in steps (issue
//! 16); it holds today the storage layer that the link stores are being rebuilt on.
//!
//! Data flows one way through its modules: [`seal`] (envelope encryption: a data key per block,
//! wrapped by the operator's store key) ← [`block`] (a block of keys, its place in the key
//! stream, its erased keys) ← [`disk`] (blocks on disk, keyed by the block ID the store chose).
//! No module imports a transport.
//!
//! Where the invariants of DESIGN.md §7 are kept (so far):
//!
//! | invariant | kept by |
//! |---|---|
//! | 1. same key ID, same bytes at both ends | [`block`]: a block keeps the IDs and material a device delivered together, sealed as one record that cannot be moved to another block or link |
//! | 4. nothing acknowledged is lost by `kill -9` | [`disk::Disk::apply`]: one durable transaction per batch |
//! | 6. key bytes never in logs; zeroized; encrypted at rest | [`seal`] (AES-256-GCM, a data key per block), [`block::Block`] (material in wiped buffers, no bytes in `Debug`) |
//! | 7. expired keys erased | [`disk`]: a block's last erasure deletes its data key, so its material is unreadable in free pages and backups once the store key rotates |

pub mod block;
pub mod disk;
pub mod seal;
