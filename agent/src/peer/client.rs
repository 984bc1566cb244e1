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
    CommitRelayRequest, DeviceKeysReply, DeviceKeysRequest, KeyDelivery, RelayKeysRequest,
    ReserveKeysReply, ReserveKeysRequest,
};
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::kms::db::Delivery;
use crate::kms::store::{PeerSync, ReserveError, ReserveFuture};

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
    pub fn channel(&self, node: Uuid) -> Result<Channel, String> {
        if let Some(channel) = self.channels.lock().expect("channels lock").get(&node) {
            return Ok(channel.clone());
        }
        let url = self.urls.get(&node).ok_or_else(|| format!("node {node} is not a neighbour"))?;
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("{url}: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .tcp_nodelay(true);
        let channel = if url.starts_with("https://") {
            let files = self.tls.as_ref().ok_or_else(|| format!("{url}: no peer.client_tls"))?;
            let config = files
                .config_expecting(Protocols::QKDN_PEERS, vec![Identity::Node(node)])
                .map_err(|e| format!("peer.client_tls: {e}"))?;
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

    /// Sends a relay step to `node`; returns how many keys the far end stored.
    pub async fn relay_keys(&self, node: Uuid, request: RelayKeysRequest) -> Result<u32, String> {
        let mut client = PeerClient::new(self.channel(node)?);
        client
            .relay_keys(request)
            .await
            .map(|r| r.into_inner().stored)
            .map_err(|status| status_text(node, &status))
    }

    /// Sends a relay commit to `node`; returns whether the far end committed.
    pub async fn commit_relay(
        &self,
        node: Uuid,
        request: CommitRelayRequest,
    ) -> Result<bool, String> {
        let mut client = PeerClient::new(self.channel(node)?);
        client
            .commit_relay(request)
            .await
            .map(|r| r.into_inner().committed)
            .map_err(|status| status_text(node, &status))
    }

    /// Sends a reservation to `node` (the other end of a link, or the next hop towards it).
    pub async fn reserve_keys(
        &self,
        node: Uuid,
        request: ReserveKeysRequest,
    ) -> Result<ReserveKeysReply, String> {
        let mut client = PeerClient::new(self.channel(node)?);
        client
            .reserve_keys(request)
            .await
            .map(|r| r.into_inner())
            .map_err(|status| status_text(node, &status))
    }

    /// Announces device keys to `node`; returns how many keys it now holds.
    pub async fn device_keys(&self, node: Uuid, request: DeviceKeysRequest) -> Result<u32, String> {
        let mut client = PeerClient::new(self.channel(node)?);
        client
            .device_keys(request)
            .await
            .map(|r: tonic::Response<DeviceKeysReply>| r.into_inner().received)
            .map_err(|status| status_text(node, &status))
    }
}

fn status_text(node: Uuid, status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("node {node}: {:?}", status.code())
    } else {
        format!("node {node}: {}", status.message())
    }
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

impl PeerSync for GrpcPeerSync {
    fn reserve(
        &self,
        remote: Uuid,
        link: Uuid,
        deliveries: Vec<(Uuid, Delivery)>,
    ) -> ReserveFuture {
        let clients = self.clients.clone();
        let owner = self.node;
        let hop = self.routes.borrow().toward(link, None).unwrap_or(remote);
        Box::pin(async move {
            let request = ReserveKeysRequest {
                link_id: link.to_string(),
                owner_node_id: owner.to_string(),
                sender_node_id: owner.to_string(),
                deliveries: deliveries
                    .iter()
                    .map(|(id, d)| KeyDelivery {
                        key_id: id.to_string(),
                        master_sae_id: d.master.clone(),
                        slave_sae_ids: d.slaves.clone(),
                        part_ids: d.parts.iter().map(Uuid::to_string).collect(),
                        size_bits: d.size_bits,
                        expires_ms: d.expires_ms,
                    })
                    .collect(),
            };
            let reply = clients.reserve_keys(hop, request).await.map_err(ReserveError::Failed)?;
            if reply.unusable_part_ids.is_empty() {
                return Ok(());
            }
            let parts =
                reply.unusable_part_ids.iter().filter_map(|p| Uuid::parse_str(p).ok()).collect();
            Err(ReserveError::Unusable(parts, reply.earliest_sequence))
        })
    }
}
