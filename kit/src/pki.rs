//! A small certificate authority for qkdn deployments and tests (rcgen): a CA, and certificates
//! it issues to services (server and client use, with the DNS names and IP addresses clients
//! reach them by, since standard clients check the host name) and to clients such as SAEs and
//! operators. Every certificate [`Authority::issue_identity`] makes carries exactly one typed
//! identity ([`crate::identity`]) as a URI subject alternative name; that is what services
//! authorize by.
//!
//! Keys are ECDSA P-256. Everything comes out as PEM, ready for the TLS files of
//! [`crate::tls`]; private keys are written readable by their owner only.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::identity::Identity;
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
    /// The identity cannot be written in a certificate.
    #[error("{0}")]
    Identity(crate::identity::IdentityError),
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
    use std::io::Write;
    let fail = |source| PkiError::Write { path: path.to_path_buf(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // A private file is created readable by its owner only (never readable by others, not
        // even for a moment); one that existed already is narrowed before it is written.
        if private {
            options.mode(0o600);
            if path.exists() {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(fail)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
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

    /// Issues the certificate of `identity` (its URI as the one typed identity), valid for
    /// `hosts` (DNS names or IP addresses, written as subject alternative names); its common
    /// name is [`common_name`] of the identity.
    pub fn issue_identity(
        &self,
        identity: &Identity,
        hosts: &[&str],
        usage: Usage,
    ) -> Result<Issued, PkiError> {
        identity.validate().map_err(PkiError::Identity)?;
        self.issue_with_uris(&common_name(identity), hosts, &[&identity.uri()], usage)
    }

    /// Issues a certificate for `common_name`, valid for `hosts`, with an optional URI SAN.
    /// Services authorize only certificates with one typed identity: use
    /// [`issue_identity`](Self::issue_identity) for them; this is for certificates of other
    /// kinds (a third-party device's, a test's).
    pub fn issue(
        &self,
        common_name: &str,
        hosts: &[&str],
        uri: Option<&str>,
        usage: Usage,
    ) -> Result<Issued, PkiError> {
        self.issue_with_uris(common_name, hosts, uri.as_slice(), usage)
    }

    /// Issues a certificate for `common_name`, valid for `hosts`, with these URI SANs.
    pub fn issue_with_uris(
        &self,
        common_name: &str,
        hosts: &[&str],
        uris: &[&str],
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
        for uri in uris {
            params.subject_alt_names.push(SanType::URI((*uri).try_into()?));
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

/// The common name of an identity's certificate: the SAE ID for an SAE (so that KMSs reading
/// SAE IDs from common names agree), else the kind and the name (`node-<uuid>`,
/// `controller-<domain>`, `orchestrator-<name>`, `operator-<name>`).
pub fn common_name(identity: &Identity) -> String {
    match identity {
        Identity::Node(id) => format!("node-{id}"),
        Identity::Sae(id) => id.clone(),
        Identity::Controller(d) => format!("controller-{d}"),
        Identity::Orchestrator(n) => format!("orchestrator-{n}"),
        Identity::Operator { name, .. } => format!("operator-{name}"),
    }
}

/// A fresh 256-bit secret in hex (a KMS key store encryption key, a simulator network secret),
/// wiped from memory when dropped.
pub fn random_key_hex() -> Result<Zeroizing<String>, PkiError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::SystemRandom::new().fill(bytes.as_mut()).map_err(|_| PkiError::Write {
        path: PathBuf::new(),
        source: std::io::Error::other("no randomness"),
    })?;
    let mut hex = Zeroizing::new(String::with_capacity(65));
    for b in bytes.iter() {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        hex.push(DIGITS[usize::from(b >> 4)] as char);
        hex.push(DIGITS[usize::from(b & 15)] as char);
    }
    Ok(hex)
}

/// Writes a fresh secret ([`random_key_hex`], one line) to `path`, created readable by its
/// owner only.
pub fn write_new_secret(path: &Path) -> Result<(), PkiError> {
    let mut secret = random_key_hex()?;
    secret.push('\n');
    write_file(path, &secret, true)
}

/// Writes `text` to `path`, readable by the owner only.
pub fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    write_file(path, text, true)
}
