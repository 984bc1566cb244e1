//! Calling neighbours' peer services: one lazily connected gRPC channel per neighbour, over
//! TLS 1.3 with the hybrid post-quantum group (`https://` URLs, the agent's
//! `peer.client_tls`), accepting only a server certificate that names that neighbour node
//! (`urn:qkdn:node:<id>`), not merely its host name; or plain HTTP/2 (`http://`, loopback
//! development only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use qkdn_kit::Identity;
use qkdn_kit::tls::{ClientTls, Protocols};
use qkdn_proto::peer::v1::peer_client::PeerClient;
use qkdn_proto::peer::v1::{
    CommitRelayRequest, DeviceKeysReply, DeviceKeysRequest, KeyDelivery, RelayKeysReply,
    RelayKeysRequest, ReserveKeysReply, ReserveKeysRequest,
};
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use qkdn_kms::link::Lacking;
use qkdn_kms::owner::{PeerRefusal, ReserveFuture, Reserver};

use crate::kms::store::Delivery;

/// Time allowed to connect to a neighbour (TCP and TLS).
const CONNECT_WITHIN: Duration = Duration::from_secs(3);
/// HTTP/2 ping period on a neighbour's connection.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Time allowed to answer a ping before the connection counts as dead.
const PING_ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Time allowed to a reservation (it is small and answered at once by a live path).
const RESERVE_WITHIN: Duration = Duration::from_secs(5);
/// Times a reservation is sent again over a new path when its virtual link's path changes
/// while it is in flight.
const RESERVE_REROUTES: usize = 2;

/// Clients of the neighbours' peer services.
pub struct PeerClients {
    urls: HashMap<Uuid, String>,
    tls: Option<ClientTls>,
    channels: Mutex<HashMap<Uuid, Channel>>,
}

impl PeerClients {
    /// Clients for `neighbours` (node, URL), with the TLS files for `https` URLs.
    pub fn new(
        neighbours: impl IntoIterator<Item = (Uuid, String)>,
        tls: Option<ClientTls>,
    ) -> Self {
        PeerClients {
            urls: neighbours.into_iter().collect(),
            tls,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The channel to `node` (connected lazily, then kept).
    pub fn channel(&self, node: Uuid) -> Result<Channel, PeerCallError> {
        if let Some(channel) = self.channels.lock().expect("channels lock").get(&node) {
            return Ok(channel.clone());
        }
        let url = self.urls.get(&node).ok_or(PeerCallError::NotNeighbour(node))?;
        // A neighbour that stops answering (a host gone without closing its connections, a
        // frozen process) is noticed within seconds by HTTP/2 pings, so calls in flight fail
        // then rather than at the request timeout; a connection that does not come up within
        // CONNECT_WITHIN is given up.
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|source| PeerCallError::Url { url: url.clone(), source })?
            .connect_timeout(CONNECT_WITHIN)
            .timeout(Duration::from_secs(15))
            .http2_keep_alive_interval(PING_EVERY)
            .keep_alive_timeout(PING_ANSWER_WITHIN)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let channel = if url.starts_with("https://") {
            let files = self.tls.as_ref().ok_or_else(|| PeerCallError::NoClientTls(url.clone()))?;
            let config = files
                .config_expecting(Protocols::QKDN_PEERS, vec![Identity::Node(node)])
                .map_err(PeerCallError::ClientTls)?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: http::Uri| {
                let connector = connector.clone();
                async move {
                    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_owned();
                    let port = uri.port_u16().unwrap_or(443);
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    let _ = tcp.set_nodelay(true);
                    let name = ServerName::try_from(host)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }))
        } else {
            endpoint.connect_lazy()
        };
        self.channels.lock().expect("channels lock").insert(node, channel.clone());
        Ok(channel)
    }

    /// Sends a relay step to `node`; returns the far end's answer (keys stored, and whether
    /// they are usable there already).
    pub async fn relay_keys(
        &self,
        node: Uuid,
        request: RelayKeysRequest,
    ) -> Result<RelayKeysReply, PeerCallError> {
        let mut client = PeerClient::new(self.channel(node)?);
        client
            .relay_keys(request)
            .await
            .map(|r| r.into_inner())
            .map_err(|status| PeerCallError::Refused { node, status })
    }

    /// Sends a relay commit to `node`; returns whether the far end committed.
    pub async fn commit_relay(
        &self,
        node: Uuid,
        request: CommitRelayRequest,
    ) -> Result<bool, PeerCallError> {
        let mut client = PeerClient::new(self.channel(node)?);
        client
            .commit_relay(request)
            .await
            .map(|r| r.into_inner().committed)
            .map_err(|status| PeerCallError::Refused { node, status })
    }

    /// Sends a reservation to `node` (the other end of a link, or the next hop towards it).
    pub async fn reserve_keys(
        &self,
        node: Uuid,
        request: ReserveKeysRequest,
    ) -> Result<ReserveKeysReply, PeerCallError> {
        let mut client = PeerClient::new(self.channel(node)?);
        client
            .reserve_keys(request)
            .await
            .map(|r| r.into_inner())
            .map_err(|status| PeerCallError::Refused { node, status })
    }

    /// Announces device keys to `node`; returns how many keys it now holds.
    pub async fn device_keys(
        &self,
        node: Uuid,
        request: DeviceKeysRequest,
    ) -> Result<u32, PeerCallError> {
        let mut client = PeerClient::new(self.channel(node)?);
        client
            .device_keys(request)
            .await
            .map(|r: tonic::Response<DeviceKeysReply>| r.into_inner().received)
            .map_err(|status| PeerCallError::Refused { node, status })
    }
}

/// Why a call to a neighbour's peer service failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    /// The node is not one of this node's neighbours.
    #[error("node {0} is not a neighbour")]
    NotNeighbour(Uuid),
    /// Its peer URL is not usable.
    #[error("{url}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// Its peer URL is https but this node has no client certificate for it.
    #[error("{0}: no peer.client_tls")]
    NoClientTls(String),
    /// The client TLS files do not make a configuration.
    #[error("peer.client_tls: {0}")]
    ClientTls(#[source] qkdn_kit::tls::TlsError),
    /// The neighbour answered with an error, or could not be reached.
    #[error("node {node}: {}", if status.message().is_empty() { format!("{:?}", status.code()) } else { status.message().to_owned() })]
    Refused {
        /// The neighbour.
        node: Uuid,
        /// Its answer.
        #[source]
        status: tonic::Status,
    },
}

/// The KMS's reservations, sent over the peer service: to the other end of a physical link
/// directly, along the path for a virtual link.
pub struct GrpcPeerSync {
    /// The clients.
    pub clients: Arc<PeerClients>,
    /// This node (the owner of the keys it reserves at others).
    pub node: Uuid,
    /// Paths of virtual links.
    pub routes: tokio::sync::watch::Receiver<Arc<crate::kms::relay::Routes>>,
}

impl Reserver for GrpcPeerSync {
    fn reserve(&self, link: Uuid, remote: Uuid, deliveries: Vec<Delivery>) -> ReserveFuture {
        let clients = self.clients.clone();
        let owner = self.node;
        let mut routes = self.routes.clone();
        let mut hop = routes.borrow_and_update().toward(link, None).unwrap_or(remote);
        Box::pin(async move {
            let request = ReserveKeysRequest {
                link_id: link.to_string(),
                owner_node_id: owner.to_string(),
                sender_node_id: owner.to_string(),
                deliveries: deliveries
                    .iter()
                    .map(|d| KeyDelivery {
                        key_id: d.parts[0].to_string(),
                        master_sae_id: d.master.clone(),
                        slave_sae_ids: d.slaves.clone(),
                        part_ids: d.parts.iter().map(Uuid::to_string).collect(),
                        size_bits: d.size_bits,
                        expires_ms: d.expires_ms,
                        chunk: d.chunk.map(|c| qkdn_proto::peer::v1::StreamChunk {
                            stream_id: c.stream.to_string(),
                            index: c.index,
                        }),
                    })
                    .collect(),
            };
            // A reservation in flight when its virtual link moves to another path (a reroute)
            // is sent again over the new one (the other end takes a repeated reservation as
            // the same); one that no live path answers in time fails, and says why.
            let mut reroutes = 0;
            let reply = loop {
                let call = tokio::time::timeout(
                    RESERVE_WITHIN,
                    clients.reserve_keys(hop, request.clone()),
                );
                tokio::select! {
                    reply = call => match reply {
                        Ok(reply) => break reply.map_err(|e| PeerRefusal::Failed(e.to_string()))?,
                        Err(_) => return Err(PeerRefusal::Failed(format!(
                            "node {hop} did not answer the reservation within {} s",
                            RESERVE_WITHIN.as_secs()
                        ))),
                    },
                    moved = path_moved(&mut routes, link, hop) => match moved {
                        Some(next) if reroutes < RESERVE_REROUTES => {
                            tracing::info!(%link, from = %hop, to = %next, "reservation sent again over the new path");
                            reroutes += 1;
                            hop = next;
                        }
                        _ => return Err(PeerRefusal::Failed(format!(
                            "the path of virtual link {link} changed while the reservation was in flight"
                        ))),
                    },
                }
            };
            if reply.unusable_part_ids.is_empty() {
                return Ok(());
            }
            let parts =
                reply.unusable_part_ids.iter().filter_map(|p| Uuid::parse_str(p).ok()).collect();
            Err(PeerRefusal::Unusable(Lacking {
                parts,
                earliest: reply.earliest_sequence,
                end: reply.end_sequence,
            }))
        })
    }
}

/// Waits until virtual `link` no longer leaves this node towards `hop`; the new first hop
/// (`None`: the link is gone here). Never returns for a physical link.
async fn path_moved(
    routes: &mut tokio::sync::watch::Receiver<Arc<crate::kms::relay::Routes>>,
    link: Uuid,
    hop: Uuid,
) -> Option<Uuid> {
    if !routes.borrow().virt.contains_key(&link) {
        return std::future::pending().await;
    }
    loop {
        let next = {
            let current = routes.borrow_and_update();
            match current.virt.get(&link) {
                None => return None,
                Some(_) => current.toward(link, None),
            }
        };
        if next != Some(hop) {
            return next;
        }
        if routes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
