//! Wire formats shared by qkdn services that are not YANG-modelled, as protobuf definitions
//! (`proto/qkdn/...`) compiled at build time with protox and prost, with tonic services.
//!
//! - [`peer::v1`]: between the agents of neighbouring nodes: the key-ID exchange of ETSI 014
//!   QKD devices, the KMS key relay and reservations;
//! - [`node_api`]: JSON (serde) contracts between an agent and its controller: registration
//!   and the KMS figures.

pub mod node_api;

/// Between neighbouring agents.
pub mod peer {
    /// Version 1.
    #[allow(missing_docs, unreachable_pub, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("qkdn.peer.v1");
    }
}
