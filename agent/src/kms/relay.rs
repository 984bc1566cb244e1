//! Key relay over virtual links (DESIGN.md §6.4), hop by hop with one-time pads.
//!
//! The source end of a virtual link (the end without `virt_prev_hop`) generates fresh random
//! keys and pads them with keys of the physical link to the next hop, keys it owns and erases
//! durably before sending ([`KeyStores::take_pads`]), so a pad never pads twice. Each node on
//! the path removes the pad with its copy of the same keys ([`KeyStores::use_pads`]), pads again
//! for the next hop and forwards; the far end stores the keys as pending. Once the answer is
//! back, the source stores its copy, then sends a commit along the path; the far end makes the
//! keys usable and confirms, and only then does the source make its copy usable. Keys are thus
//! usable at neither end or at both; a relay that is never committed expires at the far end.
//! A retried relay or commit (same relay ID) is answered from memory without new pads.
//!
//! The source refills each virtual link's store up to a stock target, at most at the link's
//! `virt_bandwidth` (a token bucket). Every node keeps a pool of pads per physical link that
//! carries relays, erased on disk ahead of use, so that a relay passing through does not wait
//! for a disk write at each hop.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use qkdn_proto::peer::v1::{CommitRelayRequest, HopPad, RelayKeysRequest};
use tokio::sync::watch;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::relay_stats::RelayStats;
use super::store::{KeyStores, Placement, StoreError, now_ms};
use crate::peer::PeerClients;

/// Keys per relayed block, at most.
const MAX_BATCH: usize = 64;
/// How long the far end keeps relayed keys waiting for their commit.
const PENDING_FOR: Duration = Duration::from_secs(60);
/// Relay IDs remembered for answering retries.
const REMEMBERED: usize = 4096;

/// A virtual link as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtRoute {
    /// The previous node (none at the source).
    pub prev: Option<Uuid>,
    /// The next node (none at the far end).
    pub next: Option<Uuid>,
    /// The far end, as the source sees it.
    pub far_end: Option<Uuid>,
    /// `virt_bandwidth`, bit/s.
    pub bandwidth: u32,
    /// `qkdl_enable`.
    pub enabled: bool,
}

/// The paths keys can take from this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// Virtual links through or from this node.
    pub virt: HashMap<Uuid, VirtRoute>,
    /// Physical link to each neighbour.
    pub neighbours: HashMap<Uuid, Uuid>,
}

impl Routes {
    /// The neighbour to send a message about virtual `link` to, towards `target` (an end of
    /// the link) or away from `sender` (the previous hop of a forwarded message).
    pub fn toward(&self, link: Uuid, from: Option<Uuid>) -> Option<Uuid> {
        let route = self.virt.get(&link)?;
        match from {
            Some(sender) if route.prev == Some(sender) => route.next,
            Some(sender) if route.next == Some(sender) => route.prev,
            Some(_) => None,
            // From an end: the only side there is.
            None => route.next.or(route.prev),
        }
    }
}

impl Routes {
    /// Virtual `link` as this node routes a message about it arriving from neighbour `sender`
    /// on behalf of `origin` (the link's other end): this node's own id for the link, and the
    /// route. A link this node does not hold may be the other end's name for one that ends
    /// here: TeraFlowSDN names the two directions of a path with two ids, and writes each at
    /// every node but its destination, so the destination of one holds only the other, which
    /// starts here and goes back over the same first hop to the same node. That link, found by
    /// its far end and its first hop among the links this node sources, stands for the
    /// message's link, with this node as its far end. More than one such link is refused as
    /// ambiguous.
    pub fn resolve(
        &self,
        link: Uuid,
        sender: Uuid,
        origin: Option<Uuid>,
    ) -> Result<(Uuid, VirtRoute), String> {
        if let Some(route) = self.virt.get(&link) {
            return Ok((link, route.clone()));
        }
        let mut twins = self
            .virt
            .iter()
            .filter(|(_, r)| r.prev.is_none() && r.next == Some(sender) && r.far_end == origin);
        match (twins.next(), twins.next()) {
            (Some((id, route)), None) => {
                Ok((*id, VirtRoute { prev: Some(sender), next: None, ..route.clone() }))
            }
            (None, _) => Err(format!("no virtual link {link} here")),
            (Some((one, _)), Some((two, _))) => Err(format!(
                "virtual link {link} is not held here, and links {one} and {two} both lead back \
                 to its other end over the same hop: give its far end an entry of its own"
            )),
        }
    }
}

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
    remembered: Mutex<(HashMap<Uuid, u32>, VecDeque<Uuid>)>,
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
            remembered: Mutex::new((HashMap::new(), VecDeque::new())),
            stats: RelayStats::default(),
        })
    }

    fn remember(&self, relay: Uuid, stored: u32) {
        let mut guard = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(relay, stored).is_none() {
            order.push_back(relay);
            if order.len() > REMEMBERED
                && let Some(old) = order.pop_front()
            {
                map.remove(&old);
            }
        }
    }

    fn remembered(&self, relay: Uuid) -> Option<u32> {
        self.remembered.lock().unwrap_or_else(|p| p.into_inner()).0.get(&relay).copied()
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
        let key_bytes = self.key_bits as usize / 8;
        let mut keys = Vec::with_capacity(count);
        for _ in 0..count {
            let mut id = [0u8; 16];
            self.random.fill(&mut id).expect("system randomness");
            let mut key = Zeroizing::new(vec![0u8; key_bytes]);
            self.random.fill(&mut key).expect("system randomness");
            keys.push((uuid::Builder::from_random_bytes(id).into_uuid(), key));
        }
        let pads = self.stores.take_pads(hop_link, count, self.key_bits).await?;
        let relay = Uuid::from_bytes({
            let mut b = [0u8; 16];
            self.random.fill(&mut b).expect("system randomness");
            b
        });
        let far_end = route
            .far_end
            .ok_or_else(|| RelayError::Refused(format!("virtual link {link} names no far end")))?;
        // The owner's positions: even for the smaller node ID (see `ownership`).
        let even = owner == self.node.min(far_end);
        let placement = self.sequences.block(link, count, even);
        let sequence = placement.sequence;
        let request = RelayKeysRequest {
            relay_id: relay.to_string(),
            virt_link_id: link.to_string(),
            source_node_id: self.node.to_string(),
            sender_node_id: self.node.to_string(),
            sequence,
            key_size_bits: self.key_bits,
            key_ids: keys.iter().map(|(id, _)| id.to_string()).collect(),
            hop_link_id: hop_link.to_string(),
            pads: pads
                .iter()
                .map(|p| HopPad { key_ids: p.ids.iter().map(Uuid::to_string).collect() })
                .collect(),
            ciphertext: padded(&keys, pads.iter().map(|p| p.bytes.as_slice())),
            expires_ms: now_ms() + PENDING_FOR.as_millis() as u64,
            position_step: placement.step as u32,
        };
        // One retry with the same relay ID: the path answers it without new pads.
        let stored = match self.clients.relay_keys(next, request.clone()).await {
            Ok(stored) => stored,
            Err(_) => self.clients.relay_keys(next, request).await.map_err(RelayError::Next)?,
        };
        if stored as usize != count {
            return Err(RelayError::Next(format!("the far end stored {stored} of {count} keys")));
        }
        let expires = now_ms() + PENDING_FOR.as_millis() as u64;
        self.stores.put_relayed(link, relay, placement, keys, expires, true).await?;
        self.confirm(link, relay).await?;
        tracing::debug!(%link, %relay, keys = count, "relayed and committed");
        Ok(count)
    }

    /// Commits a relay this node sourced: at the far end, then here.
    async fn confirm(&self, link: Uuid, relay: Uuid) -> Result<(), RelayError> {
        let next = self
            .routes
            .borrow()
            .toward(link, None)
            .ok_or_else(|| RelayError::Refused(format!("no route for virtual link {link}")))?;
        let commit = CommitRelayRequest {
            relay_id: relay.to_string(),
            virt_link_id: link.to_string(),
            sender_node_id: self.node.to_string(),
        };
        if self.clients.commit_relay(next, commit).await.map_err(RelayError::Next)? {
            self.stores.commit_relay(link, relay).await?;
            Ok(())
        } else {
            // The far end no longer has them: nobody may use them.
            self.stores.abandon_relay(link, relay);
            Err(RelayError::Next(format!("relay {relay} expired at the far end")))
        }
    }

    /// A relay step arriving from the previous hop.
    pub async fn on_relay(&self, request: RelayKeysRequest) -> Result<u32, RelayError> {
        let relay = parse(&request.relay_id, "relay_id")?;
        if let Some(stored) = self.remembered(relay) {
            return Ok(stored);
        }
        let link = parse(&request.virt_link_id, "virt_link_id")?;
        let sender = parse(&request.sender_node_id, "sender_node_id")?;
        let hop_link = parse(&request.hop_link_id, "hop_link_id")?;
        let source = parse(&request.source_node_id, "source_node_id")?;
        let routes = self.routes.borrow().clone();
        let (link, route) = from_previous_hop(&routes, link, sender, Some(source))?;
        if routes.neighbours.get(&sender) != Some(&hop_link) {
            return Err(RelayError::Refused(format!(
                "link {hop_link} does not reach node {sender}"
            )));
        }
        if route.next.is_none() {
            // The far end: the keys come from the other end of the virtual link.
            if self.stores.remote_of(link) != Some(source) {
                return Err(RelayError::Refused(format!(
                    "node {source} is not the other end of virtual link {link}"
                )));
            }
        }
        let key_bytes = request.key_size_bits as usize / 8;
        let n = request.key_ids.len();
        if request.key_size_bits != self.key_bits
            || request.pads.len() != n
            || request.ciphertext.len() != n * key_bytes
            || request.position_step > 2
        {
            return Err(RelayError::Refused("inconsistent relay request".into()));
        }
        let placement =
            Placement { sequence: request.sequence, step: u64::from(request.position_step.max(1)) };
        let pad_ids = request
            .pads
            .iter()
            .map(|p| p.key_ids.iter().map(|id| parse(id, "pads")).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let pads = self.stores.use_pads(hop_link, sender, &pad_ids).await?;
        if pads.iter().any(|p| p.len() < key_bytes) {
            return Err(RelayError::Refused("a pad is shorter than its key".into()));
        }
        let mut keys = Vec::with_capacity(n);
        for (i, id) in request.key_ids.iter().enumerate() {
            let mut key =
                Zeroizing::new(request.ciphertext[i * key_bytes..(i + 1) * key_bytes].to_vec());
            key.iter_mut().zip(pads[i].iter()).for_each(|(k, p)| *k ^= p);
            keys.push((parse(id, "key_ids")?, key));
        }
        let stored = match route.next {
            None => {
                self.stores
                    .put_relayed(link, relay, placement, keys, request.expires_ms, false)
                    .await?;
                n as u32
            }
            Some(next) => {
                let next_link = *routes
                    .neighbours
                    .get(&next)
                    .ok_or_else(|| RelayError::Refused(format!("no physical link to {next}")))?;
                let next_pads = self.stores.take_pads(next_link, n, self.key_bits).await?;
                let forward = RelayKeysRequest {
                    sender_node_id: self.node.to_string(),
                    hop_link_id: next_link.to_string(),
                    pads: next_pads
                        .iter()
                        .map(|p| HopPad { key_ids: p.ids.iter().map(Uuid::to_string).collect() })
                        .collect(),
                    ciphertext: padded(&keys, next_pads.iter().map(|p| p.bytes.as_slice())),
                    ..request
                };
                self.clients.relay_keys(next, forward).await.map_err(RelayError::Next)?
            }
        };
        self.remember(relay, stored);
        Ok(stored)
    }

    /// A commit arriving from the previous hop.
    pub async fn on_commit(&self, request: CommitRelayRequest) -> Result<bool, RelayError> {
        let relay = parse(&request.relay_id, "relay_id")?;
        let link = parse(&request.virt_link_id, "virt_link_id")?;
        let sender = parse(&request.sender_node_id, "sender_node_id")?;
        // A commit names no source: a link held under another name here is the one the relay
        // was stored under.
        let origin =
            self.stores.pending_relay_link(relay).await.and_then(|l| self.stores.remote_of(l));
        let (link, route) = from_previous_hop(&self.routes.borrow(), link, sender, origin)?;
        let next = route.next;
        match next {
            None => Ok(self.stores.commit_relay(link, relay).await?),
            Some(next) => {
                let forward =
                    CommitRelayRequest { sender_node_id: self.node.to_string(), ..request };
                self.clients.commit_relay(next, forward).await.map_err(RelayError::Next)
            }
        }
    }

    /// Keeps the virtual links this node sources filled, at most at their `virt_bandwidth`:
    /// each end's share (the keys it may hand out) up to half of `stock`, each block given
    /// whole to the end whose share is further below that, so that what an application draws
    /// from one end is what is refilled, and an end that draws nothing is not filled past its
    /// half. Also completes commits a crash interrupted. Runs until dropped.
    pub async fn run(self: Arc<Self>, stock: usize) {
        let mut buckets: HashMap<Uuid, (f64, Instant)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle_rounds = 0u32;
        loop {
            tick.tick().await;
            self.stores.refill_pad_pools();
            for (relay, link) in self.stores.unconfirmed_relays().await {
                if let Err(e) = self.confirm(link, relay).await {
                    tracing::debug!(%relay, error = %e, "relay commit not confirmed yet");
                }
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
            let mut worked = false;
            for (link, bandwidth, far_end) in sourced {
                let rate = if bandwidth > 0 { f64::from(bandwidth) } else { 1.0e6 };
                let (tokens, last) = buckets.entry(link).or_insert((0.0, Instant::now()));
                *tokens = (*tokens + last.elapsed().as_secs_f64() * rate)
                    .min(rate.max(f64::from(self.key_bits) * MAX_BATCH as f64));
                *last = Instant::now();
                let (here, there) = self.stores.shares(link).await;
                let (missing_here, missing_there) =
                    (share.saturating_sub(here), share.saturating_sub(there));
                let (owner, missing) = if missing_here >= missing_there {
                    (self.node, missing_here)
                } else {
                    (far_end, missing_there)
                };
                let affordable = (*tokens / f64::from(self.key_bits)) as usize;
                let count = missing.min(affordable).min(MAX_BATCH);
                if count == 0 {
                    continue;
                }
                match self.relay_block(link, count, owner).await {
                    Ok(_) => {
                        *tokens -= (count as u32 * self.key_bits) as f64;
                        worked = true;
                    }
                    Err(e) => {
                        if idle_rounds.is_multiple_of(100) {
                            tracing::info!(%link, error = %e, "relay not possible now");
                        }
                    }
                }
            }
            idle_rounds = if worked { 0 } else { idle_rounds.wrapping_add(1) };
        }
    }
}

/// Virtual link `link` as this node routes it (its id here, and its route), when `sender` is
/// its previous hop, for a message on behalf of `origin` (see [`Routes::resolve`]).
fn from_previous_hop(
    routes: &Routes,
    link: Uuid,
    sender: Uuid,
    origin: Option<Uuid>,
) -> Result<(Uuid, VirtRoute), RelayError> {
    let (here, route) = routes.resolve(link, sender, origin).map_err(RelayError::Refused)?;
    if route.prev != Some(sender) {
        return Err(RelayError::Refused(format!(
            "node {sender} is not the previous hop of virtual link {link}"
        )));
    }
    Ok((here, route))
}

fn parse(text: &str, field: &str) -> Result<Uuid, RelayError> {
    Uuid::parse_str(text)
        .map_err(|_| RelayError::Refused(format!("{field}: \"{text}\" is not a UUID")))
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

/// Where each block of the virtual links this node sources goes in its link's key stream.
/// Every block has one owner, so its keys sit two positions apart on that owner's parity, and
/// blocks never share a position. A link's count starts at the time in microseconds: later than
/// any block of an earlier run, as a link never sources a block per microsecond.
#[derive(Default)]
struct LinkSequences(Mutex<HashMap<Uuid, u64>>);

impl LinkSequences {
    /// The placement of a block of `count` keys of `link` on even (else odd) positions.
    fn block(&self, link: Uuid, count: usize, even: bool) -> Placement {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = map.entry(link).or_insert_with(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
        });
        let mut sequence = *next;
        if sequence.is_multiple_of(2) != even {
            sequence += 1;
        }
        *next = sequence + 2 * count.max(1) as u64;
        Placement { sequence, step: 2 }
    }
}

#[cfg(test)]
mod sequence_tests {
    use super::*;
    use crate::kms::ownership;

    #[test]
    fn each_block_belongs_to_its_owner_and_blocks_never_share_a_position() {
        let sequences = LinkSequences::default();
        let (source, far) = (Uuid::from_u128(1), Uuid::from_u128(4));
        let link = Uuid::from_u128(10);
        let mut seen = std::collections::HashSet::new();
        for round in 0..50 {
            // The smaller node ID owns even positions.
            let owner = if round % 3 == 0 { far } else { source };
            let count = 1 + round % 5;
            let placement = sequences.block(link, count, owner == source.min(far));
            for index in 0..count {
                let position = placement.sequence + placement.step * index as u64;
                assert!(seen.insert(position), "position {position} given twice");
                assert_eq!(ownership::owned_by(source, far, position), owner == source);
                assert_eq!(ownership::owned_by(far, source, position), owner == far);
            }
        }
    }
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    fn source(next: u128, far_end: u128) -> VirtRoute {
        VirtRoute {
            prev: None,
            next: Some(Uuid::from_u128(next)),
            far_end: Some(Uuid::from_u128(far_end)),
            bandwidth: 0,
            enabled: true,
        }
    }

    #[test]
    fn a_link_named_by_the_other_end_resolves_to_the_one_leading_back_or_is_refused() {
        let (b, a, d) = (Uuid::from_u128(2), Uuid::from_u128(1), Uuid::from_u128(4));
        let (forward, backward, other) =
            (Uuid::from_u128(10), Uuid::from_u128(11), Uuid::from_u128(12));
        let mut routes = Routes::default();
        routes.virt.insert(backward, source(2, 1));
        // Held here: itself.
        assert_eq!(routes.resolve(backward, b, Some(a)).unwrap(), (backward, source(2, 1)));
        // Named by the other end: the link back over the same hop, seen from its far end.
        let (here, route) = routes.resolve(forward, b, Some(a)).unwrap();
        assert_eq!(here, backward);
        assert_eq!((route.prev, route.next), (Some(b), None));
        // From another neighbour, or for another origin: nothing.
        assert!(routes.resolve(forward, d, Some(a)).is_err());
        assert!(routes.resolve(forward, b, Some(d)).is_err());
        // Two links back to the same node over the same hop: ambiguous, refused.
        routes.virt.insert(other, source(2, 1));
        let err = routes.resolve(forward, b, Some(a)).unwrap_err();
        assert!(err.contains("both lead back"), "{err}");
    }
}
