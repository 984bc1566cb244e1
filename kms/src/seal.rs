//! Envelope encryption of key blocks at rest. Each block of keys is sealed (AES-256-GCM) under
//! a data key of its own, drawn at random when the block is stored; the data key is kept on disk
//! only wrapped by the operator's store key. Erasing the last key of a block deletes its wrapped
//! data key, which makes every copy of the block's ciphertext (free pages of the database,
//! backups) unreadable once the store key that wrapped it is rotated away.
//!
//! Both the data key and the wrapping are bound to the block's place (link and block ID) as
//! associated data, so a record cannot be moved to another block or link without failing to
//! open. Store keys carry a short identifier (a hash of the key, revealing nothing about it) so
//! that a [`Keyring`] knows which of its keys wrapped a block while a rotation re-wraps them.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Bytes an AEAD seal adds: the nonce and the tag.
pub const OVERHEAD: usize = NONCE_LEN + 16;

/// Bytes of a wrapped data key: nonce, the 32-byte key, tag.
pub const WRAPPED_LEN: usize = 32 + OVERHEAD;

/// Why a key could not be loaded, or a record not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The operator's key is malformed.
    #[error("store key: {0}")]
    Key(String),
    /// A block's data key was wrapped by a store key this keyring does not hold.
    #[error(
        "block {block} of link {link} was sealed under store key {key_id}, which is not loaded"
    )]
    UnknownStoreKey {
        /// The block's link.
        link: Uuid,
        /// The block.
        block: u64,
        /// Identifier of the store key that wrapped it.
        key_id: String,
    },
    /// A record failed authentication (corrupted, moved, or sealed under another key).
    #[error("block {block} of link {link} failed authentication (corrupted or moved)")]
    Open {
        /// The block's link.
        link: Uuid,
        /// The block.
        block: u64,
    },
}

/// Where a block sits: its link and the block ID its store gave it (the associated data of
/// every seal, so that records cannot be swapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockPlace {
    /// The link.
    pub link: Uuid,
    /// The block ID, chosen by the store (never by a peer).
    pub block: u64,
}

impl BlockPlace {
    fn aad(&self, purpose: u8) -> [u8; 25] {
        let mut aad = [0u8; 25];
        aad[..16].copy_from_slice(self.link.as_bytes());
        aad[16..24].copy_from_slice(&self.block.to_be_bytes());
        aad[24] = purpose;
        aad
    }
}

/// A keyring shared by a node's stores, replaced as a whole when a rotation ends.
pub type SharedKeyring = std::sync::Arc<arc_swap::ArcSwap<Keyring>>;

/// `ring`, to be shared.
pub fn shared(ring: Keyring) -> SharedKeyring {
    std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(ring))
}

/// The associated-data purpose of a wrapped data key.
const WRAP: u8 = 1;
/// The associated-data purpose of sealed material.
const MATERIAL: u8 = 2;

/// The identifier of a store key: the first 8 bytes of a domain-separated SHA-256 of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StoreKeyId(pub [u8; 8]);

impl std::fmt::Display for StoreKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn random_bytes<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut bytes = Zeroizing::new([0u8; N]);
    SystemRandom::new().fill(bytes.as_mut_slice()).expect("the system random generator works");
    bytes
}

/// A random identifier (of records the store names itself, such as rows of deliveries).
pub(crate) fn random_id() -> Uuid {
    Uuid::from_bytes(*random_bytes::<16>())
}

fn aead_key(bytes: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes make an AES-256 key"))
}

/// Seals `plain` under `key` with a fresh nonce: nonce, ciphertext, tag.
fn seal_with(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let nonce = random_bytes::<NONCE_LEN>();
    let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
    out.extend_from_slice(nonce.as_slice());
    out.extend_from_slice(plain);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .expect("sealing cannot fail");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Opens what [`seal_with`] made, into a buffer that is wiped when dropped.
fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).ok()?;
    let mut buffer = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?.len();
    buffer.truncate(plain);
    Some(buffer)
}

/// The operator's key that wraps the data keys of the blocks.
pub struct StoreKey {
    key: LessSafeKey,
    id: StoreKeyId,
    bytes: Zeroizing<[u8; 32]>,
}

impl Clone for StoreKey {
    fn clone(&self) -> Self {
        StoreKey::from_bytes(&self.bytes)
    }
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({})", self.id)
    }
}

impl StoreKey {
    /// From 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> StoreKey {
        let mut input = Zeroizing::new(Vec::with_capacity(64));
        input.extend_from_slice(b"qkdn-kms store key id\0");
        input.extend_from_slice(bytes);
        let hash = digest(&SHA256, &input);
        let mut id = [0u8; 8];
        id.copy_from_slice(&hash.as_ref()[..8]);
        StoreKey { key: aead_key(bytes), id: StoreKeyId(id), bytes: Zeroizing::new(*bytes) }
    }

    /// From 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<StoreKey, SealError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SealError::Key("expected 64 hexadecimal digits (256 bits)".into()));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex checked");
        }
        Ok(StoreKey::from_bytes(&bytes))
    }

    /// A fresh random key (tests, and `qkdn pki secret`).
    pub fn generate() -> StoreKey {
        StoreKey::from_bytes(&random_bytes::<32>())
    }

    /// Its identifier.
    pub fn id(&self) -> StoreKeyId {
        self.id
    }

    /// Opens a key sealed by the agent's previous store format (before blocks had their own
    /// data keys): each key sealed under the store key itself, its link and key ID the
    /// associated data. Used only to migrate such a store.
    pub fn open_legacy(
        &self,
        link: Uuid,
        id: Uuid,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut aad = [0u8; 32];
        aad[..16].copy_from_slice(link.as_bytes());
        aad[16..].copy_from_slice(id.as_bytes());
        open_with(&self.key, &aad, sealed).ok_or(SealError::Open { link, block: 0 })
    }

    /// Seals a key as the previous store format did (tests of the migration).
    pub fn seal_legacy(&self, link: Uuid, id: Uuid, material: &[u8]) -> Vec<u8> {
        let mut aad = [0u8; 32];
        aad[..16].copy_from_slice(link.as_bytes());
        aad[16..].copy_from_slice(id.as_bytes());
        seal_with(&self.key, &aad, material)
    }
}

/// A block's own data key; wiped when dropped.
pub struct DataKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A data key as stored: wrapped by the store key `by`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// The store key that wrapped it.
    pub by: StoreKeyId,
    /// Nonce, wrapped key, tag.
    pub bytes: Vec<u8>,
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> DataKey {
        DataKey { bytes: random_bytes::<32>() }
    }

    /// Seals the material of the block at `place`.
    pub fn seal(&self, place: BlockPlace, material: &[u8]) -> Vec<u8> {
        seal_with(&aead_key(self.bytes.as_slice()), &place.aad(MATERIAL), material)
    }

    /// Opens what [`seal`](Self::seal) made for the same place.
    pub fn open(&self, place: BlockPlace, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        open_with(&aead_key(self.bytes.as_slice()), &place.aad(MATERIAL), sealed)
            .ok_or(SealError::Open { link: place.link, block: place.block })
    }
}

/// The store keys a KMS holds: the current one wraps new blocks; earlier ones only open blocks
/// not yet re-wrapped by a rotation.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: StoreKey,
    previous: Vec<StoreKey>,
}

impl Keyring {
    /// A keyring whose current key is `current`.
    pub fn new(current: StoreKey) -> Keyring {
        Keyring { current, previous: Vec::new() }
    }

    /// A keyring whose current key is `current`, still opening what `previous` keys wrapped
    /// (a rotation begun at start: the current key re-wraps them, then they can go).
    pub fn with_previous(current: StoreKey, previous: Vec<StoreKey>) -> Keyring {
        Keyring { current, previous }
    }

    /// Whether it holds keys other than the current one.
    pub fn has_previous(&self) -> bool {
        !self.previous.is_empty()
    }

    /// Makes `next` the current key; the current one stays to open what it wrapped until
    /// [`forget_previous`](Self::forget_previous).
    pub fn rotate_to(&mut self, next: StoreKey) {
        let old = std::mem::replace(&mut self.current, next);
        self.previous.push(old);
    }

    /// Drops every key but the current one (after a rotation re-wrapped every block).
    pub fn forget_previous(&mut self) {
        self.previous.clear();
    }

    /// The current key's identifier.
    pub fn current_id(&self) -> StoreKeyId {
        self.current.id
    }

    /// The current key.
    pub fn current(&self) -> &StoreKey {
        &self.current
    }

    /// Wraps `data` for the block at `place` under the current key.
    pub fn wrap(&self, place: BlockPlace, data: &DataKey) -> WrappedKey {
        WrappedKey {
            by: self.current.id,
            bytes: seal_with(&self.current.key, &place.aad(WRAP), data.bytes.as_slice()),
        }
    }

    /// Unwraps the data key of the block at `place`.
    pub fn unwrap(&self, place: BlockPlace, wrapped: &WrappedKey) -> Result<DataKey, SealError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == wrapped.by)
            .ok_or_else(|| SealError::UnknownStoreKey {
                link: place.link,
                block: place.block,
                key_id: wrapped.by.to_string(),
            })?;
        let plain = open_with(&key.key, &place.aad(WRAP), &wrapped.bytes)
            .filter(|p| p.len() == 32)
            .ok_or(SealError::Open { link: place.link, block: place.block })?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&plain);
        Ok(DataKey { bytes })
    }

    /// Re-wraps a data key under the current key (a rotation); unchanged when it already is.
    pub fn rewrap(&self, place: BlockPlace, wrapped: &WrappedKey) -> Result<WrappedKey, SealError> {
        if wrapped.by == self.current.id {
            return Ok(wrapped.clone());
        }
        Ok(self.wrap(place, &self.unwrap(place, wrapped)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn place(block: u64) -> BlockPlace {
        BlockPlace { link: Uuid::from_u128(1), block }
    }

    #[test]
    fn material_opens_only_at_its_place_with_its_data_key() {
        let data = DataKey::generate();
        let material = b"0123456789abcdef0123456789abcdef";
        let sealed = data.seal(place(7), material);
        assert_eq!(sealed.len(), material.len() + OVERHEAD);
        assert!(!sealed.windows(16).any(|w| w == &material[..16]), "plaintext visible");
        assert_eq!(data.open(place(7), &sealed).unwrap().as_slice(), material);
        assert!(data.open(place(8), &sealed).is_err(), "another block");
        let moved = BlockPlace { link: Uuid::from_u128(2), block: 7 };
        assert!(data.open(moved, &sealed).is_err(), "another link");
        assert!(DataKey::generate().open(place(7), &sealed).is_err(), "another data key");
        assert_ne!(sealed, data.seal(place(7), material), "fresh nonces");
    }

    #[test]
    fn wrapped_keys_open_under_their_store_key_and_survive_a_rotation() {
        let mut ring = Keyring::new(StoreKey::from_hex(HEX).unwrap());
        let data = DataKey::generate();
        let sealed = data.seal(place(1), b"key material");
        let wrapped = ring.wrap(place(1), &data);
        assert_eq!(wrapped.bytes.len(), WRAPPED_LEN);
        assert!(ring.unwrap(place(2), &wrapped).is_err(), "bound to its block");

        ring.rotate_to(StoreKey::generate());
        let opened = ring.unwrap(place(1), &wrapped).unwrap();
        assert_eq!(opened.open(place(1), &sealed).unwrap().as_slice(), b"key material");
        let rewrapped = ring.rewrap(place(1), &wrapped).unwrap();
        assert_eq!(rewrapped.by, ring.current_id());
        ring.forget_previous();
        assert!(matches!(ring.unwrap(place(1), &wrapped), Err(SealError::UnknownStoreKey { .. })));
        let opened = ring.unwrap(place(1), &rewrapped).unwrap();
        assert_eq!(opened.open(place(1), &sealed).unwrap().as_slice(), b"key material");
    }

    #[test]
    fn store_keys_are_named_by_a_hash_and_malformed_ones_refused() {
        let a = StoreKey::from_hex(HEX).unwrap();
        assert_eq!(a.id(), StoreKey::from_hex(&format!(" {HEX}\n")).unwrap().id());
        assert_ne!(a.id(), StoreKey::generate().id());
        assert!(!format!("{a:?}").contains("0001020304"), "no key in debug output");
        assert!(StoreKey::from_hex("abc").is_err());
        assert!(StoreKey::from_hex(&"g".repeat(64)).is_err());
    }
}
