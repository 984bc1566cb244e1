//! Starting the KMS inside the agent: the store encryption key, the database, the key stores of
//! the node's links and the relay routes (both kept in step with the 015 configuration), the
//! device key feed, the expiry sweep, the completion of deliveries a crash interrupted, the
//! relay of the virtual links this node sources, the stores' monitor (rates and threshold
//! alarms), and the 014 server's state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qkdn_kit::task::OwnedTask;
use qkdn_yang::Datastore;
use qkdn_yang::datastore::{ContentFilter, Layer};
use qkdn_yang::restconf::NotificationPublisher;
use serde_json::Value as Json;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::crypt::load_keyring;
use super::delivery::identity::IdentityMap;
use super::delivery::{KeyDelivery, Limits, Usage};
use super::health::{HealthView, StoreMonitor, Thresholds};
use super::hooks::{Application, KeySink};
use super::relay::{Relay, Routes, VirtRoute};
use super::store::{KeyStores, LinkSettings, StoreCounters, StoreSettings};
use crate::config::KmsConfig;
use crate::device::KeyBlock;
use crate::node::catalog::Catalog;
use crate::peer::PeerClients;
use crate::peer::client::GrpcPeerSync;
use crate::peer::server::KmsPeer;

/// Why the KMS did not start.
#[derive(Debug, thiserror::Error)]
#[error("KMS: {0}")]
pub struct KmsStartError(pub String);

/// A running KMS.
pub struct Kms {
    /// The key stores.
    pub stores: Arc<KeyStores>,
    /// Where devices' keys go.
    pub sink: Arc<KmsSink>,
    /// Key bits per application.
    pub usage: Arc<Usage>,
    /// Key delivery, shared by the key interfaces.
    pub server: KeyDelivery,
    /// What the peer service needs.
    pub peer: KmsPeer,
    /// Rates and alarm state of every store, refreshed every second.
    pub health: HealthView,
    /// The stores' counters, refreshed every second (for scrapes, which cannot wait).
    pub figures: watch::Receiver<Arc<Vec<StoreCounters>>>,
    /// Background tasks; the first is the key feed, which ends once the sink is flushed.
    pub tasks: Vec<OwnedTask>,
}

/// Blocks waiting to be stored, at most; devices producing faster than the store can take
/// lose blocks (counted as dropped) rather than growing memory without bound.
const FEED_QUEUE_BLOCKS: usize = 64;

/// The device feed: blocks are queued and stored in order by one task.
pub struct KmsSink {
    queue: Mutex<Option<mpsc::Sender<KeyBlock>>>,
    stores: Arc<KeyStores>,
    overflows: AtomicU64,
}

impl KeySink for KmsSink {
    fn deliver(&self, block: KeyBlock) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        match queue.as_ref() {
            Some(tx) => match tx.try_send(block) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(block)) => {
                    self.stores.count_dropped(block.link, block.len());
                    let n = self.overflows.fetch_add(1, Ordering::Relaxed);
                    if n.is_multiple_of(100) {
                        tracing::warn!(link = %block.link, keys = block.len(), overflows = n + 1,
                            "the key store cannot keep up with the device: block dropped");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::error!("the KMS key feed stopped; a block was dropped");
                }
            },
            None => tracing::warn!("a block arrived after shutdown and was dropped"),
        }
    }

    /// Closes the feed: the queued blocks are still stored.
    fn flush(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Seconds of relaying the reserve on a physical link covers.
const RELAY_RESERVE_SECONDS: u64 = 5;

/// The node's links that have key stores here: physical links (with the reserve the relay
/// needs on them), and virtual links that end here.
fn store_links(config: &Json, key_bits: u32) -> HashMap<Uuid, LinkSettings> {
    let catalog = Catalog::from_node_json(config);
    let ttl_of = |link: Uuid| {
        catalog
            .apps
            .values()
            .filter(|a| a.backing_links.contains(&link))
            .filter_map(|a| a.ttl)
            .min()
            .map(|t| Duration::from_secs(u64::from(t)))
    };
    let mut links = HashMap::new();
    for p in catalog.phys.values() {
        if let Some(remote) = p.remote_node {
            let (relay_bps, _) = catalog.committed_on(p.id);
            let relay_reserve =
                (relay_bps * RELAY_RESERVE_SECONDS / u64::from(key_bits.max(8))) as usize;
            links.insert(p.id, LinkSettings { remote, max_age: ttl_of(p.id), relay_reserve });
        }
    }
    for v in catalog.virt.values() {
        let endpoint = v.prev_hop.is_none() || v.next_hops.is_empty();
        if let (true, Some(remote)) = (endpoint, v.remote_node) {
            links.insert(v.id, LinkSettings { remote, max_age: ttl_of(v.id), relay_reserve: 0 });
        }
    }
    links
}

/// Paths of the virtual links through or from this node, and the physical link to each
/// neighbour.
fn routes_of(config: &Json) -> Routes {
    let catalog = Catalog::from_node_json(config);
    let virt = catalog
        .virt
        .values()
        .map(|v| {
            let route = VirtRoute {
                prev: v.prev_hop,
                next: v.next_hops.first().copied(),
                far_end: v.remote_node,
                bandwidth: v.bandwidth,
                enabled: v.enabled,
            };
            (v.id, route)
        })
        .collect();
    Routes { virt, neighbours: catalog.neighbours().into_iter().collect() }
}

/// The `qkdl_status` identity name of `link` in `config` (`ACTIVE` when unset).
fn link_status(config: &Json, link: Uuid) -> &'static str {
    let id = link.to_string();
    let status = config["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]["qkd_link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["qkdl_id"].as_str() == Some(id.as_str()))
        .and_then(|l| l["qkdl_status"].as_str());
    match status.map(|s| s.rsplit(':').next().unwrap_or(s)) {
        Some("PASSIVE") => "PASSIVE",
        Some("PENDING") => "PENDING",
        Some("OFF") => "OFF",
        _ => "ACTIVE",
    }
}

fn running(ds: &Datastore) -> Json {
    let path = ds.path("/etsi-qkd-sdn-node:qkd_node").expect("the 015 module is loaded");
    ds.snapshot().get_json(ds.context(), &path, ContentFilter::Config).unwrap_or(Json::Null)
}

/// Starts the KMS of `node` with its data in `data_dir`.
pub fn start(
    node: Uuid,
    config: &KmsConfig,
    data_dir: &std::path::Path,
    ds: &Datastore,
    applications: watch::Receiver<Arc<Vec<Application>>>,
    clients: Arc<PeerClients>,
    publisher: NotificationPublisher,
) -> Result<Kms, KmsStartError> {
    let ring = load_keyring(config.store_key_file.as_deref(), &config.previous_store_key_files)
        .map_err(|e| KmsStartError(e.to_string()))?;
    let settings =
        StoreSettings { capacity: config.store_capacity, delivery_ttl: config.delivery_ttl };
    let config_now = running(ds);
    let links = store_links(&config_now, config.key_size_bits);
    let (routes_tx, routes) = watch::channel(Arc::new(routes_of(&config_now)));
    let peer = Arc::new(GrpcPeerSync { clients: clients.clone(), node, routes: routes.clone() });
    let stores = KeyStores::open(node, ring, data_dir, settings, peer)
        .map_err(|e| KmsStartError(e.to_string()))?;
    stores.set_links(&links);
    let mut tasks = Vec::new();

    let (tx, mut rx) = mpsc::channel::<KeyBlock>(FEED_QUEUE_BLOCKS);
    let sink = Arc::new(KmsSink {
        queue: Mutex::new(Some(tx)),
        stores: stores.clone(),
        overflows: AtomicU64::new(0),
    });
    tasks.push(OwnedTask::spawn({
        let stores = stores.clone();
        async move {
            while let Some(block) = rx.recv().await {
                if let Err(e) = stores.ingest(block).await {
                    tracing::error!(error = %e, "a key block was not stored");
                }
            }
        }
    }));
    if !config.previous_store_key_files.is_empty() {
        // A rotation: the stores serve while every block is re-wrapped under the store key.
        tasks.push(OwnedTask::spawn({
            let stores = stores.clone();
            async move {
                match stores.finish_rotation().await {
                    Ok(blocks) => tracing::info!(
                        blocks,
                        "store key rotation done: every block is wrapped by the store key; \
                         kms.previous_store_key_files can be removed"
                    ),
                    Err(e) => tracing::error!(error = %e, "store key rotation failed"),
                }
            }
        }));
    }
    // Stores follow the configuration: new links, new TTLs, new reserves.
    let key_bits = config.key_size_bits;
    tasks.push(OwnedTask::spawn({
        let (stores, ds) = (stores.clone(), ds.clone());
        let mut changes = ds.subscribe();
        async move {
            loop {
                match changes.recv().await {
                    Ok(set) if set.layer != Layer::Running => continue,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let config = running(&ds);
                        stores.set_links(&store_links(&config, key_bits));
                        routes_tx.send_if_modified(|current| {
                            let fresh = routes_of(&config);
                            let changed = **current != fresh;
                            if changed {
                                *current = Arc::new(fresh);
                            }
                            changed
                        });
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    }));
    // Expired keys go, every second (each store's owner also completes, at start, the
    // deliveries a crash left unconfirmed).
    tasks.push(OwnedTask::spawn({
        let stores = stores.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                stores.sweep().await;
            }
        }
    }));
    // Rates and thresholds, every second; crossings become 015 alarms and events.
    let (health_tx, health) = watch::channel(Arc::new(HashMap::new()));
    let (figures_tx, figures) = watch::channel(Arc::new(Vec::<StoreCounters>::new()));
    tasks.push(OwnedTask::spawn({
        let (stores, ds) = (stores.clone(), ds.clone());
        let mut monitor = StoreMonitor::new(Thresholds {
            capacity: config.store_capacity,
            low: config.store_low_watermark,
            high: config.store_high_watermark,
        });
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let now = tokio::time::Instant::now();
                let stats = stores.stats().await;
                let crossings = monitor.observe(&stats, now - last);
                figures_tx.send_replace(Arc::new(stats));
                last = now;
                if !crossings.is_empty() {
                    let config = running(&ds);
                    for c in crossings {
                        tracing::warn!(link = %c.link, alarm = ?c.alarm, raised = c.raised, "{}", c.message);
                        let notification = c.notification(link_status(&config, c.link));
                        if let Err(e) = publisher.publish(notification) {
                            tracing::error!(error = %e, "a store alarm failed validation");
                        }
                    }
                }
                health_tx.send_replace(Arc::new(monitor.health()));
            }
        }
    }));
    let relay =
        Relay::new(node, stores.clone(), routes.clone(), clients.clone(), config.key_size_bits);
    tasks.push(OwnedTask::spawn(relay.clone().run(config.relay_stock_keys)));
    let usage = Arc::new(Usage::default());
    let server = KeyDelivery {
        stores: stores.clone(),
        applications,
        pairs: Arc::new(config.pairs.clone()),
        identity: IdentityMap::new(config.sae_identity, &config.sae_fingerprints),
        limits: Limits::of(config),
        usage: usage.clone(),
        limiter: Arc::default(),
        defaults: super::delivery::limits::DefaultRates {
            max_bandwidth_bps: config.default_max_bandwidth_bps,
            min_bandwidth_bps: config.default_min_bandwidth_bps,
        },
        counters: Arc::default(),
    };
    let peer = KmsPeer { node, stores: stores.clone(), relay, routes, clients };
    Ok(Kms { stores, sink, usage, server, peer, health, figures, tasks })
}
