//! The TLS policy every qkdn service shares (DESIGN.md §9), on rustls with the aws-lc-rs
//! provider: TLS 1.2 or 1.3 (1.3 preferred), the hybrid post-quantum key exchange
//! X25519MLKEM768 offered first, certificates and keys read from PEM files, client
//! certificates required wherever a client CA is given, and ALPN for HTTP/2 and HTTP/1.1.
//!
//! Servers get a [`rustls::ServerConfig`] from [`server_config`]; clients a
//! [`rustls::ClientConfig`] from [`client_config`] (which `reqwest` and other hyper clients take
//! as is). [`certificate_sha256`] gives the fingerprint services publish so peers can pin them.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS could not be set up; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the combination (a key that does not match its certificate, ...).
    #[error("{context}: {source}")]
    Rustls {
        /// What was being set up.
        context: String,
        /// rustls' reason.
        source: rustls::Error,
    },
}

/// The crypto provider of every qkdn TLS endpoint: aws-lc-rs, whose default key-exchange
/// groups put X25519MLKEM768 first.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

/// Every certificate in a PEM file, in order (a chain: leaf first).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A server configuration: the certificate chain and key, and with `client_ca` a required
/// client certificate chaining to that CA (mutual TLS).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certificates(cert)?;
    let private = load_private_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls { context: "TLS versions".into(), source })?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca)?), provider())
                    .build()
                    .map_err(|e| file_error(ca, format!("cannot verify clients with it: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, private).map_err(|source| {
        TlsError::Rustls { context: format!("{} with {}", cert.display(), key.display()), source }
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration: servers must chain to `ca`; with `identity` (certificate chain and
/// key files) the client authenticates itself.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls { context: "TLS versions".into(), source })?
        .with_root_certificates(root_store(ca)?);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certificates(cert)?, load_private_key(key)?)
            .map_err(|source| TlsError::Rustls {
                context: format!("{} with {}", cert.display(), key.display()),
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// SHA-256 of a certificate's DER encoding, lower-case hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 fingerprint of the first (leaf) certificate of a PEM file.
pub fn certificate_sha256(path: &Path) -> Result<String, TlsError> {
    Ok(fingerprint(&load_certificates(path)?[0]))
}

/// The TLS files of a server, as services' configuration files name them.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// Certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// Private key (PEM).
    pub key: std::path::PathBuf,
    /// CA whose certificates clients must present (PEM); none means no client certificate.
    #[serde(default)]
    pub client_ca: Option<std::path::PathBuf>,
}

impl ServerTls {
    /// The server configuration of these files ([`server_config`]).
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        server_config(&self.cert, &self.key, self.client_ca.as_deref())
    }
}

/// The TLS files of a client.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// Client certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// Client private key (PEM).
    pub key: std::path::PathBuf,
    /// CA the server's certificate must chain to (PEM).
    pub ca: std::path::PathBuf,
}

impl ClientTls {
    /// The client configuration of these files ([`client_config`]).
    pub fn config(&self) -> Result<ClientConfig, TlsError> {
        client_config(&self.ca, Some((&self.cert, &self.key)))
    }
}

/// The client certificate chain of a TLS connection, handed to request handlers as a request
/// extension (leaf first); absent on plain connections and when the client sent none.
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);
