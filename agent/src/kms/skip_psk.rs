//! The pre-shared keys of SKIP encryptors: each read from its file (hex) and bound to the one
//! SAE it stands for, then handed to the service kit's TLS-PSK server (`qkdn_kit::psk`). A key
//! is never logged; a file that does not hold one is named with what is wrong with it.

use std::path::{Path, PathBuf};

use qkdn_kit::Identity;
use qkdn_kit::psk::{MAX_KEY_BYTES, PskClient, PskError, PskServer};
use zeroize::Zeroizing;

use crate::config::SkipConfig;

/// Why an encryptor's key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PskFileError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("{}: expected a key of 16 to {MAX_KEY_BYTES} bytes in hexadecimal (32 to {} digits)", path.display(), 2 * MAX_KEY_BYTES)]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
    /// The keys do not make a server.
    #[error(transparent)]
    Server(#[from] PskError),
}

/// The key in `path`: hex digits, surrounding whitespace ignored.
pub fn read_key(path: &Path) -> Result<Zeroizing<Vec<u8>>, PskFileError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|source| PskFileError::Read { path: path.to_path_buf(), source })?,
    );
    let digits = text.trim().as_bytes();
    let not_a_key = || PskFileError::NotAKey { path: path.to_path_buf() };
    if digits.len() % 2 != 0 || !(32..=2 * MAX_KEY_BYTES).contains(&digits.len()) {
        return Err(not_a_key());
    }
    let mut key = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for pair in digits.chunks(2) {
        let high = (pair[0] as char).to_digit(16).ok_or_else(not_a_key)?;
        let low = (pair[1] as char).to_digit(16).ok_or_else(not_a_key)?;
        key.push((high * 16 + low) as u8);
    }
    Ok(key)
}

/// The TLS-PSK server of `config`'s encryptors.
pub fn server(config: &SkipConfig) -> Result<PskServer, PskFileError> {
    let clients = config
        .psk
        .iter()
        .map(|psk| {
            Ok(PskClient {
                psk_identity: psk.psk_identity().to_owned(),
                key: read_key(&psk.key_file)?,
                identity: Identity::Sae(psk.sae.clone()),
            })
        })
        .collect::<Result<Vec<_>, PskFileError>>()?;
    Ok(PskServer::new(clients)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_as_hex_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("enc.psk");
        std::fs::write(&file, "  00112233445566778899AABBccddeeff\n").unwrap();
        assert_eq!(
            read_key(&file).unwrap().as_slice(),
            [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        for bad in ["0011", "00112233445566778899aabbccddeeffx", "zz112233445566778899aabbccddeeff"]
        {
            std::fs::write(&file, bad).unwrap();
            let error = read_key(&file).unwrap_err().to_string();
            assert!(error.contains("enc.psk") && error.contains("hexadecimal"), "{error}");
        }
        let missing = read_key(&dir.path().join("none.psk")).unwrap_err().to_string();
        assert!(missing.contains("none.psk"), "{missing}");
    }
}
