//! A block of keys, the unit in which a store keeps, seals and erases key material: the keys a
//! device (or a relay) delivered together, each with its ID, their place in the link's key
//! stream, and which of them are erased. A block is sealed as a whole under its own data key
//! ([`crate::seal`]); its keys are erased one by one in a [`KeySet`], and when the last one goes
//! the whole block, data key included, is deleted.

use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use crate::seal::{BlockPlace, DataKey, Keyring, SealError, WrappedKey};

/// Where a block's keys sit in their link's key stream: key `i` is at position
/// `sequence + step * i` (positions decide which end owns a key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The position of the block's first key.
    pub sequence: u64,
    /// Positions between consecutive keys: 1 (alternating owners) or 2 (one owner).
    pub step: u64,
}

impl Placement {
    /// The stream position of key `index`.
    pub fn position(&self, index: usize) -> u64 {
        self.sequence.wrapping_add(self.step.wrapping_mul(index as u64))
    }
}

/// A set of key indexes within a block (which keys are erased), as a bitmap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySet {
    words: Vec<u64>,
    len: u32,
}

impl KeySet {
    /// Whether `index` is in the set.
    pub fn contains(&self, index: u32) -> bool {
        self.words.get(index as usize / 64).is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    /// Adds `index`; whether it was new.
    pub fn insert(&mut self, index: u32) -> bool {
        let word = index as usize / 64;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << (index % 64);
        let new = self.words[word] & bit == 0;
        self.words[word] |= bit;
        self.len += new as u32;
        new
    }

    /// How many indexes the set holds.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bitmap, little-endian words (the form on disk).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// From [`to_bytes`](Self::to_bytes); `None` when the length is not whole words.
    pub fn from_bytes(bytes: &[u8]) -> Option<KeySet> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let len = words.iter().map(|w| w.count_ones()).sum();
        Some(KeySet { words, len })
    }
}

/// Keys a stored block holds at most (a device's larger blocks are cut).
pub const MAX_BLOCK_KEYS: usize = 1024;

/// Where the material of a block whose material is not in memory comes from (the database:
/// [`crate::disk::DiskBlocks`]). A link's store keeps the material of a few blocks in memory
/// and reads the others back, so that a store of millions of keys does not hold them all.
pub trait BlockSource: Send + Sync {
    /// The material of the block at `place`, opened (every key, erased ones included).
    fn material(&self, place: BlockPlace) -> Result<Zeroizing<Vec<u8>>, SourceError>;
}

/// Why a [`BlockSource`] could not give a block's material.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A block in memory: IDs of its keys and, while it is loaded, their material (wiped when
/// dropped, when unloaded, and key by key when erased).
pub struct Block {
    /// Its link and ID.
    pub place: BlockPlace,
    /// Its keys' place in the key stream.
    pub placement: Placement,
    /// Bytes per key.
    pub key_bytes: u32,
    /// When it was stored, ms since the Unix epoch.
    pub created_ms: u64,
    /// The keys' IDs, in order.
    pub ids: Vec<Uuid>,
    /// The keys' material, concatenated in order, while the block is loaded.
    pub material: Option<Zeroizing<Vec<u8>>>,
    /// The keys erased so far.
    pub erased: KeySet,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("place", &self.place)
            .field("keys", &self.ids.len())
            .field("erased", &self.erased.len())
            .finish_non_exhaustive()
    }
}

impl Block {
    /// Keys in the block.
    pub fn count(&self) -> u32 {
        self.ids.len() as u32
    }

    /// The material of key `index`, while the block is loaded.
    pub fn key(&self, index: u32) -> Option<&[u8]> {
        let size = self.key_bytes as usize;
        self.material.as_ref()?.get(index as usize * size..(index as usize + 1) * size)
    }

    /// Whether its material is in memory.
    pub fn loaded(&self) -> bool {
        self.material.is_some()
    }

    /// Takes its material back (read from disk): the erased keys' bytes are wiped at once.
    /// False (and nothing changes) when the material is not the size of the block's keys.
    pub fn load(&mut self, mut material: Zeroizing<Vec<u8>>) -> bool {
        let size = self.key_bytes as usize;
        if material.len() != self.ids.len() * size {
            return false;
        }
        for index in 0..self.count() {
            if self.erased.contains(index) {
                material[index as usize * size..(index as usize + 1) * size].zeroize();
            }
        }
        self.material = Some(material);
        true
    }

    /// Lets go of its material (wiped); [`load`](Self::load) brings it back.
    pub fn unload(&mut self) {
        self.material = None;
    }

    /// Erases key `index`: marked in the set, its bytes wiped if loaded. Whether it was new.
    pub fn erase(&mut self, index: u32) -> bool {
        let size = self.key_bytes as usize;
        if let Some(key) = self
            .material
            .as_mut()
            .and_then(|m| m.get_mut(index as usize * size..(index as usize + 1) * size))
        {
            key.zeroize();
        }
        self.erased.insert(index)
    }

    /// Whether every key is erased.
    pub fn all_erased(&self) -> bool {
        self.erased.len() >= self.count()
    }

    /// The block as written: material sealed under a fresh data key, wrapped by `ring`;
    /// `None` when its material is not loaded.
    pub fn seal(&self, ring: &Keyring) -> Option<SealedBlock> {
        let material = self.material.as_ref()?;
        let data = DataKey::generate();
        Some(SealedBlock {
            place: self.place,
            placement: self.placement,
            key_bytes: self.key_bytes,
            created_ms: self.created_ms,
            ids: self.ids.clone(),
            sealed: data.seal(self.place, material),
            wrapped: ring.wrap(self.place, &data),
        })
    }
}

/// A block as it is on disk: IDs in the clear (they are not secret), material sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBlock {
    /// Its link and ID.
    pub place: BlockPlace,
    /// Its keys' place in the key stream.
    pub placement: Placement,
    /// Bytes per key.
    pub key_bytes: u32,
    /// When it was stored, ms since the Unix epoch.
    pub created_ms: u64,
    /// The keys' IDs, in order.
    pub ids: Vec<Uuid>,
    /// The material under the block's data key.
    pub sealed: Vec<u8>,
    /// The block's data key, wrapped by a store key.
    pub wrapped: WrappedKey,
}

impl SealedBlock {
    /// Its material, opened under `ring` (every key, erased ones included).
    pub fn open_material(&self, ring: &Keyring) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let material = ring.unwrap(self.place, &self.wrapped)?.open(self.place, &self.sealed)?;
        if material.len() != self.ids.len() * self.key_bytes as usize {
            return Err(SealError::Open { link: self.place.link, block: self.place.block });
        }
        Ok(material)
    }

    /// The block in memory, loaded, with the keys `erased` already gone (their bytes wiped).
    pub fn open(&self, ring: &Keyring, erased: KeySet) -> Result<Block, SealError> {
        let material = self.open_material(ring)?;
        let mut block = Block {
            place: self.place,
            placement: self.placement,
            key_bytes: self.key_bytes,
            created_ms: self.created_ms,
            ids: self.ids.clone(),
            material: None,
            erased,
        };
        block.load(material);
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::StoreKey;

    #[test]
    fn key_sets_count_and_round_trip() {
        let mut set = KeySet::default();
        assert!(set.is_empty());
        assert!(set.insert(3) && set.insert(64) && set.insert(130));
        assert!(!set.insert(64), "already there");
        assert_eq!(set.len(), 3);
        assert!(set.contains(3) && set.contains(64) && set.contains(130) && !set.contains(4));
        assert!(!set.contains(100_000));
        let back = KeySet::from_bytes(&set.to_bytes()).unwrap();
        assert_eq!(back, set);
        assert!(KeySet::from_bytes(&[1, 2, 3]).is_none());
    }

    #[test]
    fn a_sealed_block_opens_to_the_same_keys() {
        let ring = Keyring::new(StoreKey::generate());
        let place = BlockPlace { link: Uuid::from_u128(5), block: 9 };
        let block = Block {
            place,
            placement: Placement { sequence: 40, step: 2 },
            key_bytes: 4,
            created_ms: 1,
            ids: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
            material: Some(Zeroizing::new(b"aaaabbbb".to_vec())),
            erased: KeySet::default(),
        };
        let sealed = block.seal(&ring).unwrap();
        assert!(!sealed.sealed.windows(4).any(|w| w == b"aaaa"));
        let opened = sealed.open(&ring, KeySet::default()).unwrap();
        assert_eq!((opened.key(0), opened.key(1)), (Some(&b"aaaa"[..]), Some(&b"bbbb"[..])));
        let mut erased = KeySet::default();
        erased.insert(0);
        let mut reopened = sealed.open(&ring, erased).unwrap();
        assert_eq!(reopened.key(0), Some(&[0u8; 4][..]), "an erased key's bytes are wiped");
        reopened.unload();
        assert!(!reopened.loaded() && reopened.key(1).is_none());
        assert!(!reopened.load(Zeroizing::new(vec![1; 3])), "material of the wrong size");
        assert!(reopened.load(sealed.open_material(&ring).unwrap()));
        assert_eq!(reopened.key(1), Some(&b"bbbb"[..]));
        assert!(reopened.erase(1) && !reopened.erase(1));
        assert_eq!(reopened.key(1), Some(&[0u8; 4][..]), "erasing wipes the key's bytes");
        assert_eq!(opened.placement.position(1), 42);
        let mut moved = sealed.clone();
        moved.place.block = 10;
        assert!(moved.open(&ring, KeySet::default()).is_err(), "a block cannot be moved");
    }
}
