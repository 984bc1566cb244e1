//! The TLS policy every qkdn service shares (DESIGN.md §9), on rustls with the aws-lc-rs
//! provider: TLS 1.2 or 1.3 (1.3 preferred), the hybrid post-quantum key exchange
//! X25519MLKEM768 offered first, certificates and keys read from PEM files, client
//! certificates required wherever a client CA is given, and ALPN for HTTP/2 and HTTP/1.1.
//!
//! A [`Protocols`] setting narrows that per interface: `min_version = "1.3"` refuses TLS 1.2
//! clients, and `require_post_quantum = true` accepts only the hybrid group (so only TLS 1.3
//! clients that offer it). Interfaces between qkdn services that both ends run (the KMS peer
//! service) use [`Protocols::QKDN_PEERS`]: TLS 1.3 with the hybrid group required; interfaces
//! that applications and third-party tools reach default to [`Protocols::default`] (TLS 1.2
//! allowed for older clients, the hybrid group preferred, not required).
//!
//! Servers get a [`rustls::ServerConfig`] from [`server_config`]; clients a
//! [`rustls::ClientConfig`] from [`client_config`] (which `reqwest` and other hyper clients take
//! as is). A client may also require that the server's certificate names one identity
//! ([`client_config_expecting`]): a KMS calling its neighbour checks that the certificate names
//! that neighbour node, not only the host name. [`certificate_sha256`] gives the fingerprint
//! services publish so peers can pin them.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::identity::Identity;

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

/// The lowest TLS version an interface accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The protocol versions and key exchange groups of an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protocols {
    /// The lowest version.
    pub min_version: MinVersion,
    /// Only the hybrid post-quantum group X25519MLKEM768 (implies TLS 1.3).
    pub require_post_quantum: bool,
}

impl Protocols {
    /// Between qkdn services that both ends run: TLS 1.3, the hybrid group required.
    pub const QKDN_PEERS: Protocols =
        Protocols { min_version: MinVersion::Tls13, require_post_quantum: true };

    fn provider(self) -> Arc<CryptoProvider> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if self.require_post_quantum {
            provider.kx_groups.retain(|g| g.name() == rustls::NamedGroup::X25519MLKEM768);
        }
        Arc::new(provider)
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        if self.require_post_quantum || self.min_version == MinVersion::Tls13 {
            TLS13_ONLY
        } else {
            rustls::DEFAULT_VERSIONS
        }
    }
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
    server_config_with(cert, key, client_ca, Protocols::default())
}

/// [`server_config`] with the versions and groups of `protocols`.
pub fn server_config_with(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    protocols: Protocols,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certificates(cert)?;
    let private = load_private_key(key)?;
    let builder = ServerConfig::builder_with_provider(protocols.provider())
        .with_protocol_versions(protocols.versions())
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
    client_config_with(ca, identity, Protocols::default(), None)
}

/// A client configuration as [`client_config`], with the versions and groups of `protocols`,
/// that also requires the server's certificate to name one of `expected` (as its one typed
/// identity), on top of chaining to `ca` and naming the host.
pub fn client_config_expecting(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    protocols: Protocols,
    expected: Vec<Identity>,
) -> Result<ClientConfig, TlsError> {
    client_config_with(ca, identity, protocols, Some(expected))
}

fn client_config_with(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    protocols: Protocols,
    expected: Option<Vec<Identity>>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(protocols.provider())
        .with_protocol_versions(protocols.versions())
        .map_err(|source| TlsError::Rustls { context: "TLS versions".into(), source })?;
    let builder = match expected {
        None => builder.with_root_certificates(root_store(ca)?),
        Some(expected) => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(ca)?),
                protocols.provider(),
            )
            .build()
            .map_err(|e| file_error(ca, format!("cannot verify servers with it: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(IdentityVerifier { inner, expected }))
        }
    };
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

/// Verifies a server's certificate as WebPKI does (chain to the CA, host name, validity), then
/// requires its typed identity to be the expected one.
#[derive(Debug)]
struct IdentityVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: Vec<Identity>,
}

impl rustls::client::danger::ServerCertVerifier for IdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        match Identity::from_certificate(end_entity) {
            Ok(named) if self.expected.contains(&named) => Ok(verified),
            Ok(named) => Err(rustls::Error::General(format!(
                "the server's certificate names {named}, not {}",
                self.expected.iter().map(Identity::uri).collect::<Vec<_>>().join(" or ")
            ))),
            Err(e) => Err(rustls::Error::General(format!("the server's certificate: {e}"))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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

/// The TLS files of a server, as services' configuration files name them, and the versions and
/// groups it accepts.
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
    /// The lowest TLS version accepted (`"1.2"`, the default, or `"1.3"`).
    #[serde(default)]
    pub min_version: MinVersion,
    /// Accept only the hybrid post-quantum key exchange X25519MLKEM768 (and so TLS 1.3).
    #[serde(default)]
    pub require_post_quantum: bool,
}

impl ServerTls {
    /// The server configuration of these files ([`server_config_with`]).
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        server_config_with(&self.cert, &self.key, self.client_ca.as_deref(), self.protocols())
    }

    /// The server configuration for an interface whose protocols are fixed (the peer service).
    pub fn config_with(&self, protocols: Protocols) -> Result<Arc<ServerConfig>, TlsError> {
        server_config_with(&self.cert, &self.key, self.client_ca.as_deref(), protocols)
    }

    /// The versions and groups these settings ask for.
    pub fn protocols(&self) -> Protocols {
        Protocols { min_version: self.min_version, require_post_quantum: self.require_post_quantum }
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

    /// The client configuration of these files for a server that must name one of
    /// `expected`, with the versions and groups of `protocols` ([`client_config_expecting`]).
    pub fn config_expecting(
        &self,
        protocols: Protocols,
        expected: Vec<Identity>,
    ) -> Result<ClientConfig, TlsError> {
        client_config_expecting(&self.ca, Some((&self.cert, &self.key)), protocols, expected)
    }
}

/// The client certificate chain of a TLS connection, handed to request handlers as a request
/// extension (leaf first); absent on plain connections and when the client sent none.
#[derive(Clone, Debug, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);
