//! Key material at rest: AES-256-GCM (aws-lc-rs) under a 256-bit key the operator supplies
//! (a file or an environment variable, 64 hex digits). Each stored key gets a fresh random nonce,
//! and its link and key ID are authenticated with it, so a record cannot be moved to another key
//! or link without failing to decrypt.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

/// Bytes added to every sealed key: the nonce and the tag.
pub const OVERHEAD: usize = NONCE_LEN + 16;

/// Why the at-rest key could not be loaded or a record not opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    /// The operator's key is missing or malformed.
    #[error("{0}")]
    Key(String),
    /// A record failed authentication (corrupted, or sealed under another key).
    #[error("a stored key of link {link} failed authentication (wrong store key or corrupted)")]
    Open {
        /// Its link.
        link: Uuid,
    },
}

/// The sealing key of the key stores.
pub struct StoreKey {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

impl StoreKey {
    /// From 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<StoreKey, CryptError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CryptError::Key("expected 64 hexadecimal digits (256 bits)".into()));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex checked");
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes.as_slice())
            .map_err(|_| CryptError::Key("AES-256-GCM refused the key".into()))?;
        Ok(StoreKey { key: LessSafeKey::new(unbound), random: SystemRandom::new() })
    }

    fn aad(link: Uuid, id: Uuid) -> [u8; 32] {
        let mut aad = [0u8; 32];
        aad[..16].copy_from_slice(link.as_bytes());
        aad[16..].copy_from_slice(id.as_bytes());
        aad
    }

    /// Seals key `id` of `link`: nonce, ciphertext and tag.
    pub fn seal(&self, link: Uuid, id: Uuid, material: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).expect("the system random generator works");
        let mut out = Vec::with_capacity(material.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(material);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(link, id)),
                &mut out[NONCE_LEN..],
            )
            .expect("sealing a key cannot fail");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Opens what [`seal`](Self::seal) made for the same link and key.
    pub fn open(
        &self,
        link: Uuid,
        id: Uuid,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptError::Open { link });
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN])
            .map_err(|_| CryptError::Open { link })?;
        let mut buffer = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(link, id)), &mut buffer)
            .map_err(|_| CryptError::Open { link })?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }
}

/// Reads the store key: `QKDN_KMS_STORE_KEY` wins over the file.
pub fn load_store_key(file: Option<&std::path::Path>) -> Result<StoreKey, CryptError> {
    if let Ok(mut text) = std::env::var("QKDN_KMS_STORE_KEY") {
        let key = StoreKey::from_hex(&text)
            .map_err(|e| CryptError::Key(format!("environment variable QKDN_KMS_STORE_KEY: {e}")));
        text.zeroize();
        return key;
    }
    let Some(path) = file else {
        return Err(CryptError::Key(
            "no key store encryption key: set kms.store_key_file or QKDN_KMS_STORE_KEY".into(),
        ));
    };
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| CryptError::Key(format!("{}: {e}", path.display())))?;
    let key =
        StoreKey::from_hex(&text).map_err(|e| CryptError::Key(format!("{}: {e}", path.display())));
    text.zeroize();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_keys_open_only_for_their_link_and_id() {
        let key = StoreKey::from_hex(HEX).unwrap();
        let (link, id) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let sealed = key.seal(link, id, b"0123456789abcdef0123456789abcdef");
        assert_eq!(sealed.len(), 32 + OVERHEAD);
        assert!(!sealed.windows(16).any(|w| w == b"0123456789abcdef"), "plaintext visible");
        assert_eq!(
            key.open(link, id, &sealed).unwrap().as_slice(),
            b"0123456789abcdef0123456789abcdef"
        );
        assert!(key.open(link, Uuid::from_u128(3), &sealed).is_err());
        assert!(key.open(Uuid::from_u128(9), id, &sealed).is_err());
        let other = StoreKey::from_hex(&HEX.replace("00", "ff")).unwrap();
        assert!(other.open(link, id, &sealed).is_err());
        // Two seals of the same key differ (fresh nonces).
        assert_ne!(sealed, key.seal(link, id, b"0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn malformed_store_keys_are_refused() {
        assert!(StoreKey::from_hex("abc").is_err());
        assert!(StoreKey::from_hex(&"g".repeat(64)).is_err());
        assert!(StoreKey::from_hex(&format!(" {HEX}\n")).is_ok());
    }
}
