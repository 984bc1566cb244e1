//! A small certificate authority for qkdn deployments and tests (rcgen): a CA, and certificates
//! it issues to services (server and client use, with the DNS names and IP addresses clients
//! reach them by, since standard clients check the host name) and to clients such as SAEs.
//!
//! Keys are ECDSA P-256. Everything comes out as PEM, ready for the TLS files of
//! [`crate::tls`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl Issued {
    /// Writes `{name}.crt` and `{name}.key` (the key readable by the owner only) into `dir`;
    /// returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write_file(&cert, &self.cert_pem, false)?;
        write_file(&key, &self.key_pem, true)?;
        Ok((cert, key))
    }
}

fn write_file(path: &Path, text: &str, private: bool) -> Result<(), PkiError> {
    let fail = |source| PkiError::Write { path: path.to_path_buf(), source };
    std::fs::write(path, text).map_err(fail)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}

/// What an issued certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A service: TLS server and client (services call each other).
    Service,
    /// A client only (an SAE, an operator).
    Client,
}

/// A certificate authority.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl Authority {
    /// A new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Authority { issuer: Issuer::new(params, key), cert_pem: cert.pem(), key_pem })
    }

    /// A CA from its certificate and key (PEM), as [`issued`](Self::issued) wrote them.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Authority { issuer, cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned() })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate and key.
    pub fn issued(&self) -> Issued {
        Issued { cert_pem: self.cert_pem.clone(), key_pem: self.key_pem.clone() }
    }

    /// Issues a certificate for `common_name`, valid for `hosts` (DNS names or IP addresses,
    /// written as subject alternative names), with an optional URI SAN (an SAE identity such
    /// as `urn:qkdn:sae:sae-a`, or a node's `urn:qkdn:node:<uuid>`, see [`node_uri`]).
    pub fn issue(
        &self,
        common_name: &str,
        hosts: &[&str],
        uri: Option<&str>,
        usage: Usage,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(common_name);
        for host in hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*host).try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        if let Some(uri) = uri {
            params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match usage {
            Usage::Service => {
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
            }
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "qkdn");
    dn
}

/// The URI subject alternative name that names a QKD node in its certificate.
pub fn node_uri(node: &str) -> String {
    format!("urn:qkdn:node:{node}")
}

/// A fresh 256-bit key in hex (for the KMS key store encryption key).
pub fn random_key_hex() -> Result<String, PkiError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| PkiError::Write {
        path: PathBuf::new(),
        source: std::io::Error::other("no randomness"),
    })?;
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
    bytes.fill(0);
    Ok(hex)
}

/// Writes `text` to `path`, readable by the owner only.
pub fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    write_file(path, text, true)
}
