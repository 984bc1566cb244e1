//! The gRPC service neighbours call: `DeviceKeys` hands an announcement to the link task of
//! the named link and answers with what it says; `ReserveKeys` records, in the KMS's stores,
//! deliveries the other end of a link made from its half of the keys (forwarded along the path
//! of a virtual link by the nodes in between); `RelayKeys` and `CommitRelay` are the KMS's key
//! relay.
//!
//! Who calls is what the caller's node certificate says (the service kit's gate let only
//! nodes through and put the identity in the request), never what a message claims: every node
//! a message names as its sender must be the caller, and the caller must be the node the
//! message's role requires (the policy's `peer-binding` condition): the other end of the
//! physical link for device keys and reservations; for a virtual link, the neighbour on its
//! path (a reservation's owner must then be the link's other end); the previous hop, over the
//! physical link joining them, for a relay step and its commit. Every check comes before
//! anything changes, so a refused call erases no pad and stores, replaces or reserves no key.

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

use qkdn_kit::Authorized;
use qkdn_kit::authz::grpc_authorized;

use super::{Announcement, PeerHub};
use crate::kms::relay::{Relay, RelayError, Routes};
use crate::kms::store::{Delivery, DeliveryState, StreamChunk};
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

    /// The service as a router for [`qkdn_kit::serve`] (HTTP/2, with the shared TLS
    /// policy).
    pub fn router(self) -> Router {
        tonic::service::Routes::new(PeerServer::new(self)).into_axum_router()
    }
}

/// The node that `field` of a message names, as the caller's certificate binds it: refused
/// unless it is the caller (on a loopback listener open to everyone, what the message claims is
/// taken as is).
fn bound(auth: &Authorized, field: &str, claimed: &str) -> Result<Uuid, Status> {
    let named = uuid_of(field, claimed)?;
    if auth.is_insecure_loopback() {
        return Ok(named);
    }
    let caller = auth.identity().and_then(qkdn_kit::Identity::node);
    if caller == Some(named) {
        return Ok(named);
    }
    let who = caller.map_or_else(|| "the caller".to_owned(), |n| format!("node {n}"));
    Err(refuse(auth, field, &format!("{who} (by its certificate) cannot speak for node {named}")))
}

/// A refusal of the peer-binding condition (logged and counted by the gate's path).
fn refuse(auth: &Authorized, what: &str, detail: &str) -> Status {
    auth.refuse("peer-binding", what, detail).status()
}

/// Requires `holds` for the peer-binding condition.
fn require(auth: &Authorized, holds: bool, what: &str, detail: &str) -> Result<(), Status> {
    if holds { Ok(()) } else { Err(refuse(auth, what, detail)) }
}

fn uuid_of(field: &str, text: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(text)
        .map_err(|_| Status::invalid_argument(format!("{field}: \"{text}\" is not a UUID")))
}

/// A delivery from its wire form.
pub fn delivery_of(d: &KeyDelivery) -> Result<Delivery, Status> {
    let parts =
        d.part_ids.iter().map(|p| uuid_of("part_ids", p)).collect::<Result<Vec<Uuid>, Status>>()?;
    if parts.is_empty() || d.slave_sae_ids.is_empty() || d.size_bits == 0 {
        return Err(Status::invalid_argument("a delivery needs parts, slaves and a size"));
    }
    // A delivered key's ID is its first part's.
    if uuid_of("key_id", &d.key_id)? != parts[0] {
        return Err(Status::invalid_argument("a delivery's key_id must be its first part's ID"));
    }
    let chunk = match &d.chunk {
        Some(c) => {
            if d.slave_sae_ids.len() != 1 {
                return Err(Status::invalid_argument("a stream chunk has one slave"));
            }
            Some(StreamChunk { stream: uuid_of("chunk.stream_id", &c.stream_id)?, index: c.index })
        }
        None => None,
    };
    Ok(Delivery {
        state: DeliveryState::Delivering,
        master: d.master_sae_id.clone(),
        slaves: d.slave_sae_ids.clone(),
        fetched: Vec::new(),
        parts,
        size_bits: d.size_bits,
        expires_ms: d.expires_ms,
        chunk,
    })
}

fn relay_status(e: RelayError) -> Status {
    match e {
        RelayError::Refused(reason) => Status::failed_precondition(reason),
        RelayError::Store(StoreError::NotEnough { .. } | StoreError::KeptForOthers { .. }) => {
            Status::resource_exhausted(e.to_string())
        }
        RelayError::Store(other) => Status::failed_precondition(other.to_string()),
        RelayError::Next(reason) => Status::unavailable(reason),
        RelayError::Call(call) => Status::unavailable(call.to_string()),
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn reserve_keys(
        &self,
        request: Request<ReserveKeysRequest>,
    ) -> Result<Response<ReserveKeysReply>, Status> {
        let kms = self.kms()?;
        let auth = grpc_authorized(&request)?.clone();
        let r = request.into_inner();
        let sender = bound(&auth, "sender_node_id", &r.sender_node_id)?;
        let link = uuid_of("link_id", &r.link_id)?;
        let owner = uuid_of("owner_node_id", &r.owner_node_id)?;
        let what = format!("ReserveKeys on link {link}");
        // A virtual link, perhaps held here under another name (see `Routes::resolve`); a link
        // with a store here and no route is physical.
        let route = {
            let routes = kms.routes.borrow();
            if routes.virt.contains_key(&link) || kms.stores.remote_of(link).is_none() {
                routes.resolve(link, sender, Some(owner)).ok()
            } else {
                None
            }
        };
        let mut here = link;
        match &route {
            // A node in the middle of a virtual link passes the request on, away from the
            // neighbour on the path that sent it.
            Some((_, v)) if v.prev.is_some() && v.next.is_some() => {
                let next = kms.routes.borrow().toward(link, Some(sender));
                let next = next.ok_or_else(|| {
                    refuse(&auth, &what, &format!("node {sender} is not on the path of {link}"))
                })?;
                let forward = ReserveKeysRequest { sender_node_id: kms.node.to_string(), ..r };
                let reply = kms
                    .clients
                    .reserve_keys(next, forward)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                return Ok(Response::new(reply));
            }
            // An end of a virtual link: from its neighbour on the path, for the other end.
            Some((id, v)) => {
                here = *id;
                let neighbour = v.prev.or(v.next);
                require(
                    &auth,
                    neighbour == Some(sender),
                    &what,
                    &format!("node {sender} is not the neighbour on the path of {link}"),
                )?;
                require(
                    &auth,
                    kms.stores.remote_of(here) == Some(owner),
                    &what,
                    &format!("node {owner} is not the other end of {link}"),
                )?;
            }
            // A physical link: from its other end, for itself.
            None => {
                require(
                    &auth,
                    owner == sender && kms.stores.remote_of(link) == Some(sender),
                    &what,
                    &format!("node {sender} is not the other end of link {link} or not its owner"),
                )?;
            }
        }
        let deliveries =
            r.deliveries.iter().map(delivery_of).collect::<Result<Vec<_>, Status>>()?;
        match kms.stores.reserve(owner, here, deliveries).await {
            Ok(()) => Ok(Response::new(ReserveKeysReply::default())),
            Err(ReserveError::Unusable(lacking)) => Ok(Response::new(ReserveKeysReply {
                unusable_part_ids: lacking.parts.iter().map(Uuid::to_string).collect(),
                earliest_sequence: lacking.earliest,
                end_sequence: lacking.end,
            })),
            Err(ReserveError::Failed(reason)) => Err(Status::failed_precondition(reason)),
        }
    }

    async fn relay_keys(
        &self,
        request: Request<RelayKeysRequest>,
    ) -> Result<Response<RelayKeysReply>, Status> {
        let kms = self.kms()?;
        let auth = grpc_authorized(&request)?.clone();
        // The sender must be the caller; the relay engine then requires it to be the previous
        // hop of the virtual link, over the physical link the request names.
        bound(&auth, "sender_node_id", &request.get_ref().sender_node_id)?;
        let reply = kms.relay.on_relay(request.into_inner()).await.map_err(|e| match e {
            RelayError::Refused(reason) => refuse(&auth, "RelayKeys", &reason),
            other => relay_status(other),
        })?;
        Ok(Response::new(reply))
    }

    async fn commit_relay(
        &self,
        request: Request<CommitRelayRequest>,
    ) -> Result<Response<CommitRelayReply>, Status> {
        let kms = self.kms()?;
        let auth = grpc_authorized(&request)?.clone();
        bound(&auth, "sender_node_id", &request.get_ref().sender_node_id)?;
        let committed = kms.relay.on_commit(request.into_inner()).await.map_err(|e| match e {
            RelayError::Refused(reason) => refuse(&auth, "CommitRelay", &reason),
            other => relay_status(other),
        })?;
        Ok(Response::new(CommitRelayReply { committed }))
    }

    async fn device_keys(
        &self,
        request: Request<DeviceKeysRequest>,
    ) -> Result<Response<DeviceKeysReply>, Status> {
        let auth = grpc_authorized(&request)?.clone();
        let r = request.into_inner();
        // The master must be the caller; the link's task requires it to be the link's other end.
        let master = bound(&auth, "master_node_id", &r.master_node_id)?;
        let link = uuid_of("link_id", &r.link_id)?;
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
        let Some((remote, task)) = self.hub.route(link) else {
            return Err(Status::not_found(format!(
                "link {link} has no ETSI 014 slave device on this node"
            )));
        };
        require(
            &auth,
            remote == master,
            &format!("DeviceKeys on link {link}"),
            &format!("node {master} is not the other end of link {link}"),
        )?;
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
            Ok(Ok(Err(reason))) => Err(Status::failed_precondition(reason.to_string())),
            Ok(Err(_)) => Err(Status::unavailable(format!("link {link} stopped"))),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the slave end of link {link} did not fetch the keys within {ANSWER_WITHIN:?}"
            ))),
        }
    }
}
