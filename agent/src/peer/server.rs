//! The gRPC service neighbours call: `DeviceKeys` hands an announcement to the link task of
//! the named link and answers with what it says; `ReserveKeys` records, in the KMS's stores,
//! deliveries the other end of a link made from its half of the keys (forwarded along the path
//! of a virtual link by the nodes in between); `RelayKeys` and `CommitRelay` are the KMS's key
//! relay.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use qkdn_proto::peer::v1::peer_server::{Peer, PeerServer};
use qkdn_proto::peer::v1::{
    CommitRelayReply, CommitRelayRequest, DeviceKeysReply, DeviceKeysRequest, KeyDelivery,
    RelayKeysReply, RelayKeysRequest, ReserveKeysReply, ReserveKeysRequest,
};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use qkdn_yang::tls::PeerCertificates;

use super::{Announcement, PeerHub};
use crate::kms::db::{Delivery, DeliveryState};
use crate::kms::relay::{Relay, RelayError, Routes};
use crate::kms::store::{KeyStores, ReserveError, StoreError};
use crate::peer::PeerClients;

/// How long a caller waits for the slave end to fetch its keys.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Keys per announcement, at most (a bound on what one request may ask of the KME).
const MAX_KEYS: usize = 4096;

/// What the service needs of the node's KMS.
#[derive(Clone)]
pub struct KmsPeer {
    /// This node.
    pub node: Uuid,
    /// The key stores.
    pub stores: Arc<KeyStores>,
    /// The relay engine.
    pub relay: Arc<Relay>,
    /// Paths of virtual links.
    pub routes: tokio::sync::watch::Receiver<Arc<Routes>>,
    /// Neighbours, for forwarding.
    pub clients: Arc<PeerClients>,
}

/// The service.
pub struct PeerService {
    hub: Arc<PeerHub>,
    kms: Option<KmsPeer>,
}

impl PeerService {
    /// A service routing device announcements to `hub` and the KMS's messages to `kms` (when
    /// the node runs a KMS).
    pub fn new(hub: Arc<PeerHub>, kms: Option<KmsPeer>) -> Self {
        PeerService { hub, kms }
    }

    fn kms(&self) -> Result<&KmsPeer, Status> {
        self.kms.as_ref().ok_or_else(|| Status::unimplemented("this node runs no KMS"))
    }

    /// The service as a router for [`qkdn_yang::restconf::serve`] (HTTP/2, with the shared TLS
    /// policy).
    pub fn router(self) -> Router {
        tonic::service::Routes::new(PeerServer::new(self)).into_axum_router()
    }
}

/// The node a neighbour's certificate names (`urn:qkdn:node:<uuid>` URI SAN, or a UUID common
/// name); `None` on a connection without a client certificate (plain HTTP/2, loopback only).
fn caller_node<T>(request: &Request<T>) -> Result<Option<Uuid>, Status> {
    let Some(certs) = request.extensions().get::<PeerCertificates>() else {
        return Ok(None);
    };
    let cert = certs.0.first().ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    node_of_certificate(cert)
        .map(Some)
        .ok_or_else(|| Status::permission_denied("the client certificate names no QKD node"))
}

/// The node named by a certificate.
pub fn node_of_certificate(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<Uuid> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(id) = uri.strip_prefix("urn:qkdn:node:")
                && let Ok(id) = Uuid::parse_str(id)
            {
                return Some(id);
            }
        }
    }
    let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Uuid::parse_str(cn.strip_prefix("node-").unwrap_or(cn)).ok()
}

/// Refuses a request whose certificate names another node than `claimed`.
fn check_caller<T>(request: &Request<T>, claimed: &str) -> Result<(), Status> {
    match caller_node(request)? {
        None => Ok(()),
        Some(node) if Uuid::parse_str(claimed).ok() == Some(node) => Ok(()),
        Some(node) => Err(Status::permission_denied(format!(
            "node {node} (by its certificate) cannot speak for node {claimed}"
        ))),
    }
}

fn uuid_of(field: &str, text: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(text)
        .map_err(|_| Status::invalid_argument(format!("{field}: \"{text}\" is not a UUID")))
}

/// A delivery from its wire form.
pub fn delivery_of(d: &KeyDelivery) -> Result<(Uuid, Delivery), Status> {
    let parts =
        d.part_ids.iter().map(|p| uuid_of("part_ids", p)).collect::<Result<Vec<Uuid>, Status>>()?;
    if parts.is_empty() || d.slave_sae_ids.is_empty() || d.size_bits == 0 {
        return Err(Status::invalid_argument("a delivery needs parts, slaves and a size"));
    }
    Ok((
        uuid_of("key_id", &d.key_id)?,
        Delivery {
            state: DeliveryState::Delivering,
            master: d.master_sae_id.clone(),
            slaves: d.slave_sae_ids.clone(),
            fetched: Vec::new(),
            parts,
            size_bits: d.size_bits,
            expires_ms: d.expires_ms,
        },
    ))
}

fn relay_status(e: RelayError) -> Status {
    match e {
        RelayError::Refused(reason) => Status::failed_precondition(reason),
        RelayError::Store(StoreError::NotEnough { .. }) => {
            Status::resource_exhausted(e.to_string())
        }
        RelayError::Store(other) => Status::failed_precondition(other.to_string()),
        RelayError::Next(reason) => Status::unavailable(reason),
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn reserve_keys(
        &self,
        request: Request<ReserveKeysRequest>,
    ) -> Result<Response<ReserveKeysReply>, Status> {
        let kms = self.kms()?;
        check_caller(&request, &request.get_ref().sender_node_id)?;
        let r = request.into_inner();
        let link = uuid_of("link_id", &r.link_id)?;
        let owner = uuid_of("owner_node_id", &r.owner_node_id)?;
        let sender = uuid_of("sender_node_id", &r.sender_node_id)?;
        // A node in the middle of a virtual link passes the request on.
        let onward = {
            let routes = kms.routes.borrow();
            routes
                .virt
                .get(&link)
                .filter(|v| v.prev.is_some() && v.next.is_some())
                .map(|_| routes.toward(link, Some(sender)))
        };
        if let Some(onward) = onward {
            let next = onward.ok_or_else(|| {
                Status::failed_precondition(format!("node {sender} is not on the path of {link}"))
            })?;
            let forward = ReserveKeysRequest { sender_node_id: kms.node.to_string(), ..r };
            let reply =
                kms.clients.reserve_keys(next, forward).await.map_err(Status::unavailable)?;
            return Ok(Response::new(reply));
        }
        let deliveries =
            r.deliveries.iter().map(delivery_of).collect::<Result<Vec<_>, Status>>()?;
        match kms.stores.reserve(owner, link, deliveries).await {
            Ok(()) => Ok(Response::new(ReserveKeysReply::default())),
            Err(ReserveError::Unusable(parts, earliest)) => Ok(Response::new(ReserveKeysReply {
                unusable_part_ids: parts.iter().map(Uuid::to_string).collect(),
                earliest_sequence: earliest,
            })),
            Err(ReserveError::Failed(reason)) => Err(Status::failed_precondition(reason)),
        }
    }

    async fn relay_keys(
        &self,
        request: Request<RelayKeysRequest>,
    ) -> Result<Response<RelayKeysReply>, Status> {
        let stored =
            self.kms()?.relay.on_relay(request.into_inner()).await.map_err(relay_status)?;
        Ok(Response::new(RelayKeysReply { stored }))
    }

    async fn commit_relay(
        &self,
        request: Request<CommitRelayRequest>,
    ) -> Result<Response<CommitRelayReply>, Status> {
        check_caller(&request, &request.get_ref().sender_node_id)?;
        let committed =
            self.kms()?.relay.on_commit(request.into_inner()).await.map_err(relay_status)?;
        Ok(Response::new(CommitRelayReply { committed }))
    }

    async fn device_keys(
        &self,
        request: Request<DeviceKeysRequest>,
    ) -> Result<Response<DeviceKeysReply>, Status> {
        check_caller(&request, &request.get_ref().master_node_id)?;
        let r = request.into_inner();
        let link = uuid_of("link_id", &r.link_id)?;
        let master = uuid_of("master_node_id", &r.master_node_id)?;
        if r.key_ids.is_empty() || r.key_ids.len() > MAX_KEYS {
            return Err(Status::invalid_argument(format!(
                "key_ids: expected 1 to {MAX_KEYS} IDs, got {}",
                r.key_ids.len()
            )));
        }
        let key_ids = r
            .key_ids
            .iter()
            .map(|id| uuid_of("key_ids", id))
            .collect::<Result<Vec<Uuid>, Status>>()?;
        let Some(task) = self.hub.route(link) else {
            return Err(Status::not_found(format!(
                "link {link} has no ETSI 014 slave device on this node"
            )));
        };
        let (reply, answer) = oneshot::channel();
        let announcement = Announcement {
            master,
            sequence: r.sequence,
            key_size_bits: r.key_size_bits,
            key_ids,
            reply,
        };
        task.send(announcement)
            .await
            .map_err(|_| Status::unavailable(format!("link {link} is stopping")))?;
        match tokio::time::timeout(ANSWER_WITHIN, answer).await {
            Ok(Ok(Ok(received))) => Ok(Response::new(DeviceKeysReply { received })),
            Ok(Ok(Err(reason))) => Err(Status::failed_precondition(reason)),
            Ok(Err(_)) => Err(Status::unavailable(format!("link {link} stopped"))),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the slave end of link {link} did not fetch the keys within {ANSWER_WITHIN:?}"
            ))),
        }
    }
}
