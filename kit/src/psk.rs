//! TLS with external pre-shared keys, for clients that authenticate with a key instead of a
//! certificate: SKIP encryptors, for which draft-cisco-skip-02 recommends PSK mode (it does not
//! rest on public-key cryptography a quantum computer breaks). rustls has no external PSKs, so
//! these handshakes run through OpenSSL: TLS 1.2 with the DHE-PSK suites the draft names (and
//! their GCM sibling), ephemeral Diffie-Hellman over the 3072-bit MODP group of RFC 3526.
//!
//! Each PSK identity names one key and one qkdn identity: a connection made with it acts as that
//! identity, and nothing the client sends later changes it. A client with no listed key gets
//! no connection. Sessions are never resumed (no cache, no tickets), so every connection proves
//! its key again. TLS 1.3 PSK needs an OpenSSL callback the `openssl` crate does not bind; it
//! is not offered.

use std::collections::HashMap;
use std::sync::Arc;

use openssl::bn::BigNum;
use openssl::dh::Dh;
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{
    Ssl, SslContext, SslMethod, SslOptions, SslRef, SslSessionCacheMode, SslVersion,
};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use zeroize::Zeroizing;

use crate::Identity;

/// The cipher suites offered, in the server's order of preference: the two of
/// draft-cisco-skip-02 §TLS, after AES-GCM with the same key exchange.
pub const CIPHERS: &str =
    "DHE-PSK-AES256-GCM-SHA384:DHE-PSK-AES256-CBC-SHA384:DHE-PSK-AES256-CBC-SHA";

/// Most bytes of a pre-shared key (OpenSSL's limit, `PSK_MAX_PSK_LEN`).
pub const MAX_KEY_BYTES: usize = 256;

/// One client's key.
pub struct PskClient {
    /// The PSK identity the client sends in its handshake.
    pub psk_identity: String,
    /// The key (at least 16 bytes).
    pub key: Zeroizing<Vec<u8>>,
    /// Who a connection made with it is.
    pub identity: Identity,
}

/// Why a PSK server cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    /// Two clients with one PSK identity.
    #[error("the PSK identity {0:?} is listed twice")]
    Duplicate(String),
    /// A key too short or too long.
    #[error(
        "the key of PSK identity {identity:?} has {bytes} bytes; 16 to {MAX_KEY_BYTES} are accepted"
    )]
    KeyLength {
        /// The identity.
        identity: String,
        /// Its key's length.
        bytes: usize,
    },
    /// OpenSSL refused a setting.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] ErrorStack),
}

/// A client's key and who it is, by PSK identity.
type KeyOf = (Zeroizing<Vec<u8>>, Arc<Identity>);

/// The clients' keys and the TLS context that checks them.
pub struct PskServer {
    context: SslContext,
    /// Where a handshake leaves the identity of the key it used.
    matched: Index<Ssl, Arc<Identity>>,
}

impl std::fmt::Debug for PskServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PskServer")
    }
}

impl PskServer {
    /// A server accepting `clients`' keys.
    pub fn new(clients: Vec<PskClient>) -> Result<PskServer, PskError> {
        let mut keys: HashMap<Vec<u8>, KeyOf> = HashMap::new();
        for client in clients {
            let bytes = client.key.len();
            if !(16..=MAX_KEY_BYTES).contains(&bytes) {
                return Err(PskError::KeyLength { identity: client.psk_identity, bytes });
            }
            let name = client.psk_identity.as_bytes().to_vec();
            if keys.insert(name, (client.key, Arc::new(client.identity))).is_some() {
                return Err(PskError::Duplicate(client.psk_identity));
            }
        }
        let matched = Ssl::new_ex_index::<Arc<Identity>>()?;
        let mut builder = SslContext::builder(SslMethod::tls_server())?;
        builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        builder.set_max_proto_version(Some(SslVersion::TLS1_2))?;
        builder.set_cipher_list(CIPHERS)?;
        builder.set_options(
            SslOptions::CIPHER_SERVER_PREFERENCE
                | SslOptions::NO_TICKET
                | SslOptions::NO_RENEGOTIATION
                | SslOptions::NO_COMPRESSION,
        );
        builder.set_session_cache_mode(SslSessionCacheMode::OFF);
        let prime = BigNum::get_rfc3526_prime_3072()?;
        let group = Dh::from_pqg(prime, None, BigNum::from_u32(2)?)?;
        builder.set_tmp_dh(&group)?;
        builder.set_psk_server_callback(move |ssl: &mut SslRef, identity, out: &mut [u8]| {
            let Some((key, holder)) = identity.and_then(|i| keys.get(i)) else {
                // OpenSSL answers an unknown identity with an alert; nothing is revealed.
                return Ok(0);
            };
            if key.len() > out.len() {
                return Ok(0);
            }
            out[..key.len()].copy_from_slice(key);
            ssl.set_ex_data(matched, holder.clone());
            Ok(key.len())
        });
        Ok(PskServer { context: builder.build(), matched })
    }

    /// Runs the server side of a handshake on `stream`: the TLS stream and who the client is.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> Result<(SslStream<TcpStream>, Arc<Identity>), std::io::Error> {
        let ssl = Ssl::new(&self.context).map_err(std::io::Error::other)?;
        let mut tls = SslStream::new(ssl, stream).map_err(std::io::Error::other)?;
        std::pin::Pin::new(&mut tls).accept().await.map_err(|e| {
            std::io::Error::other(e.ssl_error().map_or_else(|| e.to_string(), |s| s.to_string()))
        })?;
        let identity = tls.ssl().ex_data(self.matched).cloned().ok_or_else(|| {
            std::io::Error::other("the handshake completed without a pre-shared key")
        })?;
        Ok((tls, identity))
    }
}
