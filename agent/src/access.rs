//! Who may call the agent: each listener's requests sorted into the interfaces and operations of
//! the service kit's policy table (`qkdn_kit::policy`), and the gate in front of each.
//!
//! * RESTCONF listener: `/api/...` is the agent's API (KMS figures, link diagnostics); the rest
//!   is the ETSI 015 model (reads: GET, HEAD, OPTIONS and event streams; everything else
//!   writes). Its controllers are the domains `controller.domains` lists.
//! * ETSI 014 listener: every request is a key request of an SAE; certificates without a qkdn
//!   identity are read as `kms.sae_identity` says.
//! * SKIP listeners: the same for encryptors (SAEs), with certificates or pre-shared keys.
//! * Peer listener: the four RPCs of `qkdn.peer.v1.Peer`.
//! * Management listener: no gate (`/healthz`, `/readyz`, `/metrics`, which hold no key, no
//!   key ID and allow no change; left to network policy).

use std::sync::Arc;

use http::Method;
use qkdn_kit::authz::{Denials, ErrorFormat, FallbackIdentity, Gate};
use qkdn_kit::{Identity, Interface, Operation};

use crate::config::AgentConfig;
use crate::kms::delivery::identity::IdentityMap;

fn reads(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The RESTCONF listener: the 015 model, and the agent's API under `/api/`.
pub fn classify_restconf(method: &Method, path: &str) -> (Interface, Option<Operation>) {
    let interface =
        if path.starts_with("/api/") { Interface::AgentApi } else { Interface::AgentRestconf };
    let operation = if reads(method) { Operation::Read } else { Operation::Write };
    (interface, Some(operation))
}

/// The error format of the RESTCONF listener's edge, by path.
pub fn restconf_format(path: &str) -> ErrorFormat {
    ErrorFormat::of(classify_restconf(&Method::GET, path).0)
}

/// The ETSI 014 listener.
pub fn classify_014(_: &Method, _: &str) -> (Interface, Option<Operation>) {
    (Interface::Etsi014, Some(Operation::Keys))
}

/// The SKIP listeners (certificates and pre-shared keys).
pub fn classify_skip(_: &Method, _: &str) -> (Interface, Option<Operation>) {
    (Interface::Skip, Some(Operation::Keys))
}

/// The peer listener: the RPC named by the path.
pub fn classify_peer(_: &Method, path: &str) -> (Interface, Option<Operation>) {
    let operation = match path.strip_prefix("/qkdn.peer.v1.Peer/") {
        Some("DeviceKeys") => Some(Operation::DeviceKeys),
        Some("ReserveKeys") => Some(Operation::ReserveKeys),
        Some("RelayKeys") => Some(Operation::RelayKeys),
        Some("CommitRelay") => Some(Operation::CommitRelay),
        _ => None,
    };
    (Interface::Peer, operation)
}

/// The gate of the RESTCONF listener.
pub fn restconf_gate(config: &AgentConfig, denials: Arc<Denials>) -> Gate {
    let listener = crate::config::restconf_listener(config);
    Gate::new(classify_restconf, denials)
        .controllers(config.controller.domains.iter().cloned())
        .insecure(listener.insecure(config.insecure_allow_unauthenticated))
}

/// The gate of the ETSI 014 listener; `legacy` reads SAE IDs from certificates without a qkdn
/// identity (per `kms.sae_identity`).
pub fn etsi014_gate(legacy: IdentityMap, denials: Arc<Denials>) -> Gate {
    with_legacy_saes(Gate::new(classify_014, denials), legacy)
}

/// The gate of the SKIP listeners: as ETSI 014's (an encryptor is an SAE); a connection made
/// with a pre-shared key is the SAE the key is bound to.
pub fn skip_gate(legacy: IdentityMap, denials: Arc<Denials>) -> Gate {
    with_legacy_saes(Gate::new(classify_skip, denials), legacy)
}

fn with_legacy_saes(gate: Gate, legacy: IdentityMap) -> Gate {
    if legacy.reads_anything() {
        let fallback: FallbackIdentity =
            Arc::new(move |cert| legacy.sae_of(cert).map(Identity::Sae));
        gate.fallback(fallback)
    } else {
        gate
    }
}

/// The gate of the peer listener.
pub fn peer_gate(config: &AgentConfig, denials: Arc<Denials>) -> Gate {
    let insecure = crate::config::peer_listener(config)
        .is_some_and(|l| l.insecure(config.insecure_allow_unauthenticated));
    Gate::new(classify_peer, denials).insecure(insecure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_sorted_by_path_and_method() {
        assert_eq!(
            classify_restconf(&Method::GET, "/restconf/data/etsi-qkd-sdn-node:qkd_node"),
            (Interface::AgentRestconf, Some(Operation::Read))
        );
        assert_eq!(
            classify_restconf(&Method::DELETE, "/restconf/data/etsi-qkd-sdn-node:qkd_node"),
            (Interface::AgentRestconf, Some(Operation::Write))
        );
        assert_eq!(
            classify_restconf(&Method::GET, "/api/v1/kms/stores"),
            (Interface::AgentApi, Some(Operation::Read))
        );
        assert_eq!(
            classify_restconf(&Method::DELETE, "/api/v1/kms/relays"),
            (Interface::AgentApi, Some(Operation::Write))
        );
        assert_eq!(
            classify_peer(&Method::POST, "/qkdn.peer.v1.Peer/RelayKeys"),
            (Interface::Peer, Some(Operation::RelayKeys))
        );
        assert_eq!(classify_peer(&Method::POST, "/other.Service/X"), (Interface::Peer, None));
    }
}
