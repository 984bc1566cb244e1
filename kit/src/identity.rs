//! Typed identities: who a certificate (or a bearer token) says its holder is.
//!
//! Every certificate `qkdn pki` issues carries exactly one identity as a URI subject alternative
//! name, and this module is the one parser of them that every service uses:
//!
//! | identity | URI |
//! |---|---|
//! | a QKD node (its agent and KMS) | `urn:qkdn:node:<qkdn_id>` (a UUID) |
//! | an application entity (SAE) | `urn:qkdn:sae:<SAE_ID>` |
//! | a domain's SDN controller | `urn:qkdn:controller:<domain>` |
//! | an orchestrator | `urn:qkdn:orchestrator:<name>` |
//! | a person or tool operating qkdn | `urn:qkdn:operator:<role>:<name>`, role `admin` or `viewer` |
//!
//! Names (domains, orchestrator and operator names) are 1 to 64 characters of letters, digits,
//! `.`, `_` and `-`; SAE IDs 1 to 128 characters of those and `:`, `@`, `~`, `+`, `=`. Other
//! URI SANs of a certificate are ignored (certificates of other vendors' devices carry their
//! own); a certificate naming no qkdn identity, or more than one, or a malformed one, has no
//! identity here, and every service refuses it at the application layer.

use std::fmt;

use rustls::pki_types::CertificateDer;
use uuid::Uuid;

/// The URI prefix of every qkdn identity.
pub const URN_PREFIX: &str = "urn:qkdn:";

/// What an operator may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Reads and changes everything an operator may change.
    Admin,
    /// Reads only.
    Viewer,
}

impl Role {
    /// `admin` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// The role named `text`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// Who a caller is, by its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A QKD node: its agent and KMS.
    Node(Uuid),
    /// A secure application entity, by its ETSI 014 `SAE_ID`.
    Sae(String),
    /// The SDN controller of a domain.
    Controller(String),
    /// An orchestrator.
    Orchestrator(String),
    /// A person or tool operating qkdn.
    Operator {
        /// Its name.
        name: String,
        /// What it may do.
        role: Role,
    },
}

/// The kinds of identity the authorization policy distinguishes (operators by role).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// [`Identity::Node`].
    Node,
    /// [`Identity::Sae`].
    Sae,
    /// [`Identity::Controller`].
    Controller,
    /// [`Identity::Orchestrator`].
    Orchestrator,
    /// An operator with [`Role::Admin`].
    Admin,
    /// An operator with [`Role::Viewer`].
    Viewer,
}

impl Kind {
    /// Every kind, in the order the policy table lists them.
    pub const ALL: [Kind; 6] =
        [Kind::Admin, Kind::Viewer, Kind::Controller, Kind::Orchestrator, Kind::Node, Kind::Sae];

    /// Its name in logs, metrics and the policy table.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Sae => "sae",
            Kind::Controller => "controller",
            Kind::Orchestrator => "orchestrator",
            Kind::Admin => "operator-admin",
            Kind::Viewer => "operator-viewer",
        }
    }
}

/// Why a certificate or URI gives no identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate could not be parsed.
    #[error("the certificate cannot be read")]
    Unreadable,
    /// No `urn:qkdn:` URI.
    #[error("the certificate names no qkdn identity (a urn:qkdn: URI)")]
    Missing,
    /// Several `urn:qkdn:` URIs.
    #[error("the certificate names {0} qkdn identities; exactly one is allowed")]
    Ambiguous(usize),
    /// A `urn:qkdn:` URI of no known form.
    #[error("{uri:?} is not a qkdn identity: {reason}")]
    Malformed {
        /// The URI.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn is_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_sae_id(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'_' | b'-' | b':' | b'@' | b'~' | b'+' | b'=')
        })
}

impl Identity {
    /// The operator `name` with `role`.
    pub fn operator(name: &str, role: Role) -> Identity {
        Identity::Operator { name: name.to_owned(), role }
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Identity::Node(_) => Kind::Node,
            Identity::Sae(_) => Kind::Sae,
            Identity::Controller(_) => Kind::Controller,
            Identity::Orchestrator(_) => Kind::Orchestrator,
            Identity::Operator { role: Role::Admin, .. } => Kind::Admin,
            Identity::Operator { role: Role::Viewer, .. } => Kind::Viewer,
        }
    }

    /// The node, for a node identity.
    pub fn node(&self) -> Option<Uuid> {
        match self {
            Identity::Node(id) => Some(*id),
            _ => None,
        }
    }

    /// The SAE ID, for an SAE identity.
    pub fn sae(&self) -> Option<&str> {
        match self {
            Identity::Sae(id) => Some(id),
            _ => None,
        }
    }

    /// Its URI (what certificates carry).
    pub fn uri(&self) -> String {
        match self {
            Identity::Node(id) => format!("{URN_PREFIX}node:{id}"),
            Identity::Sae(id) => format!("{URN_PREFIX}sae:{id}"),
            Identity::Controller(d) => format!("{URN_PREFIX}controller:{d}"),
            Identity::Orchestrator(n) => format!("{URN_PREFIX}orchestrator:{n}"),
            Identity::Operator { name, role } => {
                format!("{URN_PREFIX}operator:{}:{name}", role.as_str())
            }
        }
    }

    /// Checks that the identity can be written in a certificate (the names' character sets).
    pub fn validate(&self) -> Result<(), IdentityError> {
        Identity::parse_uri(&self.uri()).map(|_| ())
    }

    /// Reads an identity URI.
    pub fn parse_uri(uri: &str) -> Result<Identity, IdentityError> {
        let malformed = |reason| Err(IdentityError::Malformed { uri: uri.to_owned(), reason });
        // The scheme and the namespace are case-insensitive (RFC 8141); the rest is not.
        if uri.len() < URN_PREFIX.len()
            || !uri.is_char_boundary(URN_PREFIX.len())
            || !uri[..URN_PREFIX.len()].eq_ignore_ascii_case(URN_PREFIX)
        {
            return malformed("it does not start with urn:qkdn:");
        }
        let rest = &uri[URN_PREFIX.len()..];
        let Some((kind, value)) = rest.split_once(':') else {
            return malformed("expected urn:qkdn:<kind>:<name>");
        };
        match kind {
            "node" => match Uuid::parse_str(value) {
                Ok(id) if value.len() == 36 => Ok(Identity::Node(id)),
                _ => malformed("a node is named by its qkdn_id, a UUID"),
            },
            "sae" if is_sae_id(value) => Ok(Identity::Sae(value.to_owned())),
            "sae" => malformed("an SAE ID is 1 to 128 letters, digits or . _ - : @ ~ + ="),
            "controller" if is_name(value) => Ok(Identity::Controller(value.to_owned())),
            "orchestrator" if is_name(value) => Ok(Identity::Orchestrator(value.to_owned())),
            "controller" | "orchestrator" => {
                malformed("a name is 1 to 64 letters, digits or . _ -")
            }
            "operator" => {
                let Some((role, name)) = value.split_once(':') else {
                    return malformed("an operator is urn:qkdn:operator:<admin|viewer>:<name>");
                };
                let Some(role) = Role::parse(role) else {
                    return malformed("an operator's role is admin or viewer");
                };
                if !is_name(name) {
                    return malformed("a name is 1 to 64 letters, digits or . _ -");
                }
                Ok(Identity::Operator { name: name.to_owned(), role })
            }
            _ => malformed("the kind is node, sae, controller, orchestrator or operator"),
        }
    }

    /// The one identity a certificate (DER) names.
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Result<Identity, IdentityError> {
        let uris = qkdn_uris(cert)?;
        match uris.as_slice() {
            [] => Err(IdentityError::Missing),
            [one] => Identity::parse_uri(one),
            many => Err(IdentityError::Ambiguous(many.len())),
        }
    }
}

/// The `urn:qkdn:` URI SANs of a certificate.
fn qkdn_uris(cert: &CertificateDer<'_>) -> Result<Vec<String>, IdentityError> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) =
        X509Certificate::from_der(cert.as_ref()).map_err(|_| IdentityError::Unreadable)?;
    let san = parsed.subject_alternative_name().map_err(|_| IdentityError::Unreadable)?;
    Ok(san
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri)
                        if uri.len() >= URN_PREFIX.len()
                            && uri.is_char_boundary(URN_PREFIX.len())
                            && uri[..URN_PREFIX.len()].eq_ignore_ascii_case(URN_PREFIX) =>
                    {
                        Some((*uri).to_owned())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, Usage};
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn every_kind_round_trips_through_its_uri() {
        let all = [
            Identity::Node(Uuid::from_u128(7)),
            Identity::Sae("sae-a".into()),
            Identity::Sae("urn-like:sae@site~1".into()),
            Identity::Controller("metro-west".into()),
            Identity::Orchestrator("global".into()),
            Identity::operator("alice", Role::Admin),
            Identity::operator("grafana.reader", Role::Viewer),
        ];
        for identity in all {
            assert_eq!(Identity::parse_uri(&identity.uri()).unwrap(), identity);
        }
        assert_eq!(
            Identity::parse_uri("URN:QKDN:node:00000000-0000-0000-0000-000000000007").unwrap(),
            Identity::Node(Uuid::from_u128(7))
        );
    }

    #[test]
    fn malformed_uris_are_refused_with_the_reason() {
        for bad in [
            "urn:qkdn:",
            "urn:qkdn:node",
            "urn:qkdn:node:not-a-uuid",
            "urn:qkdn:node:00000000000000000000000000000007",
            "urn:qkdn:sae:",
            "urn:qkdn:sae:has space",
            "urn:qkdn:controller:a/b",
            "urn:qkdn:orchestrator:",
            "urn:qkdn:operator:alice",
            "urn:qkdn:operator:root:alice",
            "urn:qkdn:operator:admin:",
            "urn:qkdn:wizard:merlin",
            "urn:other:node:x",
            "urn:qkd",
        ] {
            assert!(
                matches!(Identity::parse_uri(bad), Err(IdentityError::Malformed { .. })),
                "{bad}"
            );
        }
        let long = format!("urn:qkdn:controller:{}", "x".repeat(65));
        assert!(Identity::parse_uri(&long).is_err());
    }

    fn cert_with(uris: &[&str]) -> CertificateDer<'static> {
        let ca = Authority::generate("test CA").unwrap();
        let issued = ca.issue_with_uris("holder", &[], uris, Usage::Client).unwrap();
        CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()
    }

    #[test]
    fn a_certificate_names_exactly_one_identity() {
        let node = "urn:qkdn:node:00000000-0000-0000-0000-000000000007";
        assert_eq!(
            Identity::from_certificate(&cert_with(&[node])).unwrap(),
            Identity::Node(Uuid::from_u128(7))
        );
        // Other URIs are somebody else's business.
        assert_eq!(
            Identity::from_certificate(&cert_with(&["https://vendor.example/dev/1", node]))
                .unwrap(),
            Identity::Node(Uuid::from_u128(7))
        );
        assert_eq!(Identity::from_certificate(&cert_with(&[])), Err(IdentityError::Missing));
        assert_eq!(
            Identity::from_certificate(&cert_with(&["https://vendor.example/dev/1"])),
            Err(IdentityError::Missing)
        );
        assert_eq!(
            Identity::from_certificate(&cert_with(&[node, "urn:qkdn:sae:sae-a"])),
            Err(IdentityError::Ambiguous(2))
        );
        assert!(matches!(
            Identity::from_certificate(&cert_with(&["urn:qkdn:operator:root:alice"])),
            Err(IdentityError::Malformed { .. })
        ));
        assert_eq!(
            Identity::from_certificate(&CertificateDer::from(vec![1, 2, 3])),
            Err(IdentityError::Unreadable)
        );
    }
}
