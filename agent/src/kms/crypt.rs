//! The store key: the operator's 256-bit key (a file or an environment variable, 64 hex
//! digits) that wraps the data key of every stored block of keys (`qkdn_kms::seal`), and the
//! keys being rotated away.

use qkdn_kms::seal::{Keyring, StoreKey};
use zeroize::Zeroize;

/// Why the store key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CryptError(pub String);

/// Reads the store key and the keys being rotated away (`previous`): the keyring of the stores.
pub fn load_keyring(
    file: Option<&std::path::Path>,
    previous: &[std::path::PathBuf],
) -> Result<Keyring, CryptError> {
    let current = load_store_key(file)?;
    let mut old = Vec::with_capacity(previous.len());
    for path in previous {
        let mut text = std::fs::read_to_string(path)
            .map_err(|e| CryptError(format!("{}: {e}", path.display())))?;
        let key =
            StoreKey::from_hex(&text).map_err(|e| CryptError(format!("{}: {e}", path.display())));
        text.zeroize();
        old.push(key?);
    }
    Ok(Keyring::with_previous(current, old))
}

/// Reads the store key: `QKDN_KMS_STORE_KEY` wins over the file.
pub fn load_store_key(file: Option<&std::path::Path>) -> Result<StoreKey, CryptError> {
    if let Ok(mut text) = std::env::var("QKDN_KMS_STORE_KEY") {
        let key = StoreKey::from_hex(&text)
            .map_err(|e| CryptError(format!("environment variable QKDN_KMS_STORE_KEY: {e}")));
        text.zeroize();
        return key;
    }
    let Some(path) = file else {
        return Err(CryptError(
            "no key store encryption key: set kms.store_key_file or QKDN_KMS_STORE_KEY".into(),
        ));
    };
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| CryptError(format!("{}: {e}", path.display())))?;
    let key = StoreKey::from_hex(&text).map_err(|e| CryptError(format!("{}: {e}", path.display())));
    text.zeroize();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_key_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        std::fs::write(&path, "abc").unwrap();
        let error = load_store_key(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("store.key") && error.contains("64 hexadecimal"), "{error}");
        assert!(load_store_key(None).unwrap_err().to_string().contains("kms.store_key_file"));
    }
}
