//! Key relay over virtual links (DESIGN.md §6.4), hop by hop with one-time pads, in one pass.
//!
//! The source end of a virtual link (the end without `virt_prev_hop`) generates fresh random
//! keys, pads them with keys of the physical link to the next hop (keys it owns, erased durably
//! before sending, [`KeyStores::take_pads`]), stores its own copy durably but held, and sends
//! them. Each node on the path removes the pad with its copy of the same keys
//! ([`KeyStores::use_pads`]), pads again for the next hop and forwards (`hop.rs`); the far end
//! stores the keys, usable at once since the source already holds them, and its answer travels
//! back; the source then makes its copy usable. One trip along the path per block, where the
//! previous protocol took two (the relay, then a commit).
//!
//! Nothing is lost or used twice when a message or a node is lost on the way: a source that
//! does not hear back asks the far end (`CommitRelay` with a refusal time) and keeps its copy
//! if the far end holds the relay, or erases it if not, the far end then refusing any copy
//! still under way. The far end's keys become usable before the source hears back; a
//! reservation of them (an `enc_keys` at the far end) reaching the source first commits the
//! source's copy. Relays under way are never settled behind their back (`flight.rs`). A far end
//! that predates one-pass relays stores the keys pending and answers without `committed`; the
//! source then commits with `CommitRelay` as before.
//!
//! The source refills each virtual link's store up to a stock target, at most at the link's
//! `virt_bandwidth` (a token bucket), with up to [`WINDOW`] blocks under way per link, so a long
//! path carries blocks one behind the other instead of one at a time. Every node keeps a pool
//! of pads per physical link that carries relays, erased on disk ahead of use, so that a relay
//! passing through does not wait for a disk write at each hop.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use qkdn_proto::peer::v1::{CommitRelayRequest, HopPad, RelayKeysReply, RelayKeysRequest};
use tokio::sync::watch;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::store::{KeyStores, Pad, RelayedKeys, Settle, StoreError, now_ms};
use crate::peer::PeerClients;
use crate::peer::client::PeerCallError;
use flight::{InFlight, LinkSequences};
pub use routes::{Routes, VirtRoute};
pub use stats::{RelayFigures, RelayStats};

mod flight;
mod hop;
mod routes;
mod stats;

/// Keys per relayed block, at most.
const MAX_BATCH: usize = 64;
/// Blocks under way per virtual link, at most.
pub const WINDOW: usize = 4;
/// How long relayed keys may travel: the far end refuses a relay arriving later.
const PENDING_FOR: Duration = Duration::from_secs(60);
/// How long the far end keeps the outcome of a relay it settled, for a source asking again.
const SETTLED_FOR: Duration = Duration::from_secs(600);
/// Margin for the clocks of the two ends when the source asks the far end to refuse a relay.
const CLOCK_MARGIN: Duration = Duration::from_secs(60);
/// Relay IDs remembered for answering retries.
const REMEMBERED: usize = 4096;

/// Why a relay step failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The request does not fit this node's view of the link.
    #[error("{0}")]
    Refused(String),
    /// Keys or pads are missing.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The next hop failed.
    #[error("{0}")]
    Next(String),
    /// The call to the next hop failed.
    #[error(transparent)]
    Call(#[from] PeerCallError),
}

/// The relay engine of a node.
pub struct Relay {
    node: Uuid,
    stores: Arc<KeyStores>,
    routes: watch::Receiver<Arc<Routes>>,
    clients: Arc<PeerClients>,
    key_bits: u32,
    random: SystemRandom,
    sequences: LinkSequences,
    in_flight: Arc<InFlight>,
    remembered: Mutex<(HashMap<Uuid, RelayKeysReply>, VecDeque<Uuid>)>,
    failures_logged: AtomicU64,
    /// The bandwidth budget of each virtual link this node sources: bits, and when last
    /// topped up (a token bucket at `virt_bandwidth`).
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
    /// Figures of the virtual links this node sources.
    pub stats: RelayStats,
}

impl Relay {
    /// The engine of `node`, relaying keys of `key_bits`.
    pub fn new(
        node: Uuid,
        stores: Arc<KeyStores>,
        routes: watch::Receiver<Arc<Routes>>,
        clients: Arc<PeerClients>,
        key_bits: u32,
    ) -> Arc<Relay> {
        Arc::new(Relay {
            node,
            stores,
            routes,
            clients,
            key_bits,
            random: SystemRandom::new(),
            sequences: LinkSequences::default(),
            in_flight: Arc::default(),
            remembered: Mutex::new((HashMap::new(), VecDeque::new())),
            failures_logged: AtomicU64::new(0),
            buckets: Mutex::default(),
            stats: RelayStats::default(),
        })
    }

    fn remember(&self, relay: Uuid, reply: RelayKeysReply) {
        let mut guard = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(relay, reply).is_none() {
            order.push_back(relay);
            if order.len() > REMEMBERED
                && let Some(old) = order.pop_front()
            {
                map.remove(&old);
            }
        }
    }

    fn remembered(&self, relay: Uuid) -> Option<RelayKeysReply> {
        self.remembered.lock().unwrap_or_else(|p| p.into_inner()).0.get(&relay).copied()
    }

    fn random_uuid(&self) -> Uuid {
        let mut id = [0u8; 16];
        self.random.fill(&mut id).expect("system randomness");
        uuid::Builder::from_random_bytes(id).into_uuid()
    }

    /// Relays one block of `count` fresh keys over virtual `link` from this node (its source),
    /// all owned by `owner` (this node or the far end); returns how many keys are now usable at
    /// both ends.
    pub async fn relay_block(
        &self,
        link: Uuid,
        count: usize,
        owner: Uuid,
    ) -> Result<usize, RelayError> {
        let started = Instant::now();
        let result = self.relay_block_once(link, count, owner).await;
        match &result {
            Ok(keys) => self.stats.committed(link, *keys, started.elapsed()),
            Err(e) => self.stats.failed(link, &e.to_string()),
        }
        result
    }

    async fn relay_block_once(
        &self,
        link: Uuid,
        count: usize,
        owner: Uuid,
    ) -> Result<usize, RelayError> {
        let routes = self.routes.borrow().clone();
        let route = routes
            .virt
            .get(&link)
            .ok_or_else(|| RelayError::Refused(format!("no virtual link {link} here")))?;
        let next = route.next.filter(|_| route.prev.is_none()).ok_or_else(|| {
            RelayError::Refused(format!("this node is not the source of virtual link {link}"))
        })?;
        let hop_link = *routes
            .neighbours
            .get(&next)
            .ok_or_else(|| RelayError::Refused(format!("no physical link to {next}")))?;
        let far_end = route
            .far_end
            .ok_or_else(|| RelayError::Refused(format!("virtual link {link} names no far end")))?;
        let key_bytes = self.key_bits as usize / 8;
        let mut keys = Vec::with_capacity(count);
        for _ in 0..count {
            let mut key = Zeroizing::new(vec![0u8; key_bytes]);
            self.random.fill(&mut key).expect("system randomness");
            keys.push((self.random_uuid(), key));
        }
        let relay = self.random_uuid();
        let _flight = self
            .in_flight
            .enter(relay, link, owner, count)
            .expect("a fresh relay ID is not under way");
        // The owner's positions: even for the smaller node ID (see `ownership`).
        let even = owner == self.node.min(far_end);
        let placement = self.sequences.block(link, count, even);
        let expires_ms = now_ms() + PENDING_FOR.as_millis() as u64;
        // The pads, erased durably, and this end's copy, durable and held: both writes go to
        // the disk together.
        let copy = RelayedKeys {
            relay,
            placement,
            keys: keys.clone(),
            expires_ms,
            source: true,
            usable: false,
            now_ms: now_ms(),
        };
        let (pads, stored) = tokio::join!(
            self.stores.take_pads(hop_link, count, self.key_bits),
            self.stores.put_relayed(link, copy),
        );
        let pads = match (pads, stored) {
            (Ok(pads), Ok(())) => pads,
            (pads, stored) => {
                // Nothing was sent: the copy goes (the pads, erased, are lost to the relay).
                self.stores.abandon_relay(link, relay);
                return Err(stored.and(pads.map(drop)).unwrap_err().into());
            }
        };
        let request = RelayKeysRequest {
            relay_id: relay.to_string(),
            virt_link_id: link.to_string(),
            source_node_id: self.node.to_string(),
            sender_node_id: self.node.to_string(),
            sequence: placement.sequence,
            key_size_bits: self.key_bits,
            key_ids: keys.iter().map(|(id, _)| id.to_string()).collect(),
            hop_link_id: hop_link.to_string(),
            pads: hop_pads(&pads),
            ciphertext: padded(&keys, pads.iter().map(|p| p.bytes.as_slice())),
            expires_ms,
            position_step: placement.step as u32,
            stored_at_source: true,
        };
        drop((pads, keys));
        match self.clients.relay_keys(next, request).await {
            Ok(reply) if reply.stored as usize == count && reply.committed => {
                self.stores.commit_relay(link, relay, Settle::default()).await?;
            }
            Ok(reply) if reply.stored as usize == count => {
                // A far end from before one-pass relays holds them pending: commit there.
                self.settle(link, relay).await?;
            }
            outcome => {
                let reason = match outcome {
                    Ok(reply) => format!("the far end stored {} of {count} keys", reply.stored),
                    Err(e) => e.to_string(),
                };
                // Ask the far end now; when it cannot be reached, the run loop asks later.
                if let Err(e) = self.settle(link, relay).await {
                    tracing::debug!(%relay, error = %e, "relay not settled yet");
                }
                return Err(RelayError::Next(reason));
            }
        }
        tracing::debug!(%link, %relay, keys = count, "relayed and committed");
        Ok(count)
    }

    /// Settles a relay this node sourced and holds pending: commits it at the far end (or, if
    /// the far end never stored it, has the far end refuse it from now on), then here. An error
    /// leaves it pending, to be asked about again.
    async fn settle(&self, link: Uuid, relay: Uuid) -> Result<(), RelayError> {
        let next = self
            .routes
            .borrow()
            .toward(link, None)
            .ok_or_else(|| RelayError::Refused(format!("no route for virtual link {link}")))?;
        let commit = CommitRelayRequest {
            relay_id: relay.to_string(),
            virt_link_id: link.to_string(),
            sender_node_id: self.node.to_string(),
            // Later than any copy of the relay can still be accepted (its expiry was set when
            // it was sent, before now).
            refuse_until_ms: now_ms() + (PENDING_FOR + CLOCK_MARGIN).as_millis() as u64,
            source_node_id: self.node.to_string(),
        };
        if self.clients.commit_relay(next, commit).await? {
            self.stores.commit_relay(link, relay, Settle::default()).await?;
            Ok(())
        } else {
            // The far end does not hold them and never will: nobody may use them.
            self.stores.abandon_relay(link, relay);
            Err(RelayError::Next(format!("relay {relay} did not reach the far end")))
        }
    }

    /// Keeps the virtual links this node sources filled, at most at their `virt_bandwidth`:
    /// each end's share (the keys it may hand out) up to half of `stock`, each block given
    /// whole to the end whose share is further below that, so that what an application draws
    /// from one end is what is refilled, and an end that draws nothing is not filled past its
    /// half. Up to [`WINDOW`] blocks per link are under way at once. Also settles relays whose
    /// answer a crash or a lost message kept from this node. Runs until dropped.
    pub async fn run(self: Arc<Self>, stock: usize) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.stores.refill_pad_pools();
            for (relay, link) in self.stores.unconfirmed_relays().await {
                // Never one whose request or question may still be travelling.
                let Some(flight) = self.in_flight.enter(relay, link, Uuid::nil(), 0) else {
                    continue;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    let _flight = flight;
                    if let Err(e) = this.settle(link, relay).await {
                        tracing::debug!(%relay, error = %e, "relay not settled yet");
                    }
                });
            }
            let sourced: Vec<(Uuid, u32, Uuid)> = {
                let routes = self.routes.borrow();
                routes
                    .virt
                    .iter()
                    .filter(|(_, r)| r.enabled && r.prev.is_none() && r.next.is_some())
                    .filter_map(|(id, r)| Some((*id, r.bandwidth, r.far_end?)))
                    .collect()
            };
            let share = (stock / 2).max(1);
            for (link, bandwidth, far_end) in sourced {
                let (here, there) = self.stores.shares(link).await;
                let (flying, to_here) = self.in_flight.of(link, self.node);
                let (_, to_there) = self.in_flight.of(link, far_end);
                let mut missing_here = share.saturating_sub(here + to_here);
                let mut missing_there = share.saturating_sub(there + to_there);
                let rate = if bandwidth > 0 { f64::from(bandwidth) } else { 1.0e6 };
                let mut launches = Vec::new();
                {
                    let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                    let (tokens, last) = buckets.entry(link).or_insert((0.0, Instant::now()));
                    *tokens = (*tokens + last.elapsed().as_secs_f64() * rate)
                        .min(rate.max(f64::from(self.key_bits) * (WINDOW * MAX_BATCH) as f64));
                    *last = Instant::now();
                    for _ in flying..WINDOW {
                        let (owner, missing) = if missing_here >= missing_there {
                            (self.node, &mut missing_here)
                        } else {
                            (far_end, &mut missing_there)
                        };
                        let affordable = (*tokens / f64::from(self.key_bits)) as usize;
                        let count = (*missing).min(affordable).min(MAX_BATCH);
                        if count == 0 {
                            break;
                        }
                        *missing -= count;
                        *tokens -= self.bits_of(count);
                        launches.push((owner, count));
                    }
                }
                for (owner, count) in launches {
                    let this = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = this.relay_block(link, count, owner).await {
                            // What failed used none of the link's bandwidth: the budget is
                            // given back, so that a failing path is tried again at once (each
                            // try uses up pads the next hop lacks, until the hops agree again).
                            if let Some((tokens, _)) = this
                                .buckets
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_mut(&link)
                            {
                                *tokens += this.bits_of(count);
                            }
                            let n = this.failures_logged.fetch_add(1, Ordering::Relaxed);
                            if n.is_multiple_of(100) {
                                tracing::info!(%link, error = %e, "relay not possible now");
                            }
                        }
                    });
                }
            }
        }
    }

    /// Bits of `count` relayed keys.
    fn bits_of(&self, count: usize) -> f64 {
        count as f64 * f64::from(self.key_bits)
    }
}

/// The pads' key IDs as a hop request names them.
fn hop_pads(pads: &[Pad]) -> Vec<HopPad> {
    pads.iter().map(|p| HopPad { key_ids: p.ids.iter().map(Uuid::to_string).collect() }).collect()
}

/// The keys one after the other, each XOR its pad.
fn padded<'a>(
    keys: &[(Uuid, Zeroizing<Vec<u8>>)],
    pads: impl Iterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(keys.iter().map(|(_, k)| k.len()).sum());
    for ((_, key), pad) in keys.iter().zip(pads) {
        out.extend(key.iter().zip(pad).map(|(k, p)| k ^ p));
    }
    out
}
