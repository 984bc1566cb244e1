//! The qkdn KMS core: the key stores of a node's links, kept apart from the agent's node model,
//! its devices and its transport (the agent wires them in: `agent/src/kms/store.rs`).
//!
//! Data flows one way through its modules: [`seal`] (envelope encryption: a data key per block,
//! wrapped by the operator's store key) ← [`block`] (a block of keys, its place in the key
//! stream, its erased keys) ← [`disk`] (blocks and [`delivery`] records on disk, keyed by the
//! block ID the store chose) ← [`link`] (one link's store as its single owner holds it: every
//! change a synchronous step that returns the write making it durable) ← [`owner`] (the task
//! that owns a link's store, its handle, and the [`owner::Reserver`] trait through which the
//! agent's transport reaches the other end) and [`writer`] (the database's one writer thread,
//! group commit) ← [`node`] (a node's stores: the database loaded and grouped by link, an
//! owner started per configured link, the registry of their handles). No module imports a
//! transport: the agent's peer service carries reservations and the one-pass relay
//! (`agent/src/kms/relay`), and drives the relay steps here.
//!
//! Where the invariants of DESIGN.md §7 are kept:
//!
//! | invariant | kept by |
//! |---|---|
//! | 1. same key ID, same bytes at both ends | [`block`]: a block keeps the IDs and material a device delivered together, sealed as one record that cannot be moved to another block or link; [`link::LinkStore::ingest`] refuses a key ID the store holds |
//! | 2. delivered once, only to its SAEs | [`link::LinkStore::take`] holds each key for one delivery; [`link::LinkStore::fetch`] gives it once to each named slave, all or nothing |
//! | 3. a hop key pads one relayed key, then is erased | [`link::LinkStore::take_pads`] (only keys this end owns, erased by a write that [`owner`] makes durable before the pads are returned; pads erased ahead live only in memory), [`link::LinkStore::use_pads`] (only keys of the sender's share that nobody holds, erased); relayed keys stay held at the source until [`link::LinkStore::commit_relay`] (or a reservation by the far end, which proves the far end holds them); a relay the far end settled as refused is never stored there ([`delivery::RelayRecord`]) |
//! | 4. nothing acknowledged is lost by `kill -9` | every [`link::LinkStore`] step returns its write; [`owner`] answers only once it is durable ([`writer`], one transaction per group); [`link::LinkStore::recoverable`] offers only deliveries whose request is gone, and [`owner`] sends them again at start |
//! | 5. never the same key to two requests | [`link::LinkStore`]: a key's stream position decides its owner; only the owner takes it; [`link::LinkStore::reserve`] refuses parts the caller does not own, held or missing |
//! | 6. key bytes never in logs; zeroized; encrypted at rest | [`seal`] (AES-256-GCM, a data key per block), [`block::Block`] (material in wiped buffers, no bytes in `Debug`, an erased key's bytes wiped at once); [`link`] keeps only a few blocks' material in memory and reads the others back from the sealed copy on disk ([`block::BlockSource`], [`disk::DiskBlocks`]) |
//! | 7. expired keys erased | [`link::LinkStore::sweep`] (deliveries past their expiry, keys past the link's largest age); [`disk`]: a block's last erasure deletes its data key, so its material is unreadable in free pages and backups once the store key rotates |

pub mod block;
pub mod delivery;
pub mod disk;
pub mod legacy;
pub mod link;
pub mod node;
pub mod owner;
pub mod seal;
pub mod writer;
