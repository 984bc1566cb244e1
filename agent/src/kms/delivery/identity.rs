//! An SAE's identity, taken from the client certificate it authenticated with (ETSI 014: "the
//! KME determines the SAE ID from the certificate"), never from the URL. A certificate with a
//! qkdn identity says it itself (`urn:qkdn:sae:<ID>`, read by the service kit); for
//! certificates of other CAs without one, this map reads, as `kms.sae_identity` configures,
//! the subject's common name, the first URI subject alternative name, or the certificate's
//! SHA-256 fingerprint looked up in a table (or nothing, the default).

use std::collections::BTreeMap;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::SaeIdentity;

/// Reads SAE IDs from certificates.
#[derive(Clone, Debug)]
pub struct IdentityMap {
    mode: SaeIdentity,
    fingerprints: BTreeMap<String, String>,
}

impl IdentityMap {
    /// A map in `mode`; `fingerprints` (hex, any case) for [`SaeIdentity::Fingerprint`].
    pub fn new(mode: SaeIdentity, fingerprints: &BTreeMap<String, String>) -> Self {
        let fingerprints =
            fingerprints.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        IdentityMap { mode, fingerprints }
    }

    /// Whether the map reads SAE IDs from certificates at all.
    pub fn reads_anything(&self) -> bool {
        self.mode != SaeIdentity::None
    }

    /// The SAE ID of the holder of `cert`, if the certificate names one.
    pub fn sae_of(&self, cert: &CertificateDer<'_>) -> Option<String> {
        match self.mode {
            SaeIdentity::None => None,
            SaeIdentity::Fingerprint => {
                self.fingerprints.get(&qkdn_kit::tls::fingerprint(cert)).cloned()
            }
            SaeIdentity::CommonName => {
                let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
                let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
                (!cn.is_empty()).then_some(cn)
            }
            SaeIdentity::SanUri => {
                let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
                let san = parsed.subject_alternative_name().ok()??;
                san.value.general_names.iter().find_map(|name| match name {
                    GeneralName::URI(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qkdn_kit::pki::{Authority, Usage};
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn identities_come_from_the_certificate() {
        let ca = Authority::generate("test CA").unwrap();
        let issued = ca.issue("sae-a", &[], Some("urn:qkdn:sae:alpha"), Usage::Client).unwrap();
        let cert = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let none = BTreeMap::new();
        assert_eq!(
            IdentityMap::new(SaeIdentity::CommonName, &none).sae_of(&cert).as_deref(),
            Some("sae-a")
        );
        assert_eq!(
            IdentityMap::new(SaeIdentity::SanUri, &none).sae_of(&cert).as_deref(),
            Some("urn:qkdn:sae:alpha")
        );
        assert_eq!(IdentityMap::new(SaeIdentity::Fingerprint, &none).sae_of(&cert), None);
        let table = BTreeMap::from([(
            qkdn_kit::tls::fingerprint(&cert).to_uppercase(),
            "gamma".to_owned(),
        )]);
        assert_eq!(
            IdentityMap::new(SaeIdentity::Fingerprint, &table).sae_of(&cert).as_deref(),
            Some("gamma")
        );
    }
}
