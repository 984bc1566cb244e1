//! Key delivery to applications: the operations every key interface of the KMS is a thin
//! adapter over (ETSI 014 in [`super::etsi014`], SKIP in [`super::skip`]), so that no interface
//! has store logic of its own and each gets the same guarantees.
//!
//! * [`KeyDelivery::issue`]: an SAE (the master) takes new keys for SAEs at the other end of
//!   its key association (the slaves). The pair's route is found from the node's applications
//!   and static pairs; the pair's rate and the guarantees of the link's other pairs are
//!   checked ([`limits`]); the store takes the keys and has the other end reserve them for the
//!   slaves, durably, before anything is answered.
//! * [`KeyDelivery::redeem`]: a slave takes the keys reserved for it by ID, once.
//!
//! The caller is always the SAE its credential names ([`qkdn_kit::Authorized`]); a request
//! for a pair it is not part of is refused through the gate's refusal path (logged, counted).
//! Every outcome is counted per interface ([`InterfaceCounters`]) and per application
//! ([`Usage`]).

pub mod identity;
pub mod limits;
mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use qkdn_kit::{Authorized, Interface};
use tokio::sync::watch;
use uuid::Uuid;
use zeroize::Zeroizing;

use self::identity::IdentityMap;
use self::usage::Outcome;
pub use self::usage::{AppDelivery, Usage};
use super::hooks::Application;
use super::store::{Issued, KeyStores, StoreError, StreamChunk, Take};
use crate::config::{KmsConfig, SaePair};

/// Limits every interface announces and enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Default key size, bits.
    pub key_size: u32,
    /// Smallest key size, bits.
    pub min_key_size: u32,
    /// Largest key size, bits.
    pub max_key_size: u32,
    /// Most keys per request.
    pub max_keys_per_request: u32,
    /// Most additional slaves.
    pub max_sae_id_count: u32,
    /// Keys a store holds at most.
    pub max_key_count: u64,
}

impl Limits {
    /// From the configuration.
    pub fn of(config: &KmsConfig) -> Self {
        Limits {
            key_size: config.key_size_bits,
            min_key_size: config.min_key_size_bits,
            max_key_size: config.max_key_size_bits,
            max_keys_per_request: config.max_keys_per_request,
            max_sae_id_count: config.max_sae_id_count,
            max_key_count: config.store_capacity as u64 / 2,
        }
    }

    /// Whether keys of `bits` are served: a whole number of bytes within the limits.
    pub fn check_size(&self, bits: u64) -> Result<(), SizeRefusal> {
        if !bits.is_multiple_of(8) {
            return Err(SizeRefusal::NotWholeBytes);
        }
        if bits < u64::from(self.min_key_size) || bits > u64::from(self.max_key_size) {
            return Err(SizeRefusal::OutOfRange { min: self.min_key_size, max: self.max_key_size });
        }
        Ok(())
    }
}

/// A key size that is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeRefusal {
    /// Not a multiple of 8.
    #[error("size shall be a multiple of 8")]
    NotWholeBytes,
    /// Outside the limits.
    #[error("size shall be between {min} and {max} (min_key_size, max_key_size)")]
    OutOfRange {
        /// Smallest, bits.
        min: u32,
        /// Largest, bits.
        max: u32,
    },
}

/// Where a pair of SAEs gets its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The link.
    pub link: Uuid,
    /// The application, when the pair is one.
    pub app: Option<Uuid>,
    /// Whose quota it uses.
    pub quota: limits::QuotaKey,
    /// The application's key TTL.
    pub ttl: Option<Duration>,
    /// The most the pair may take, bit/s (`max_bandwidth`, else the default).
    pub rate: u32,
}

/// What every key interface shares: the stores, the applications and static pairs that say
/// which SAEs are paired, the limits, and the counters.
#[derive(Clone)]
pub struct KeyDelivery {
    /// The key stores.
    pub stores: Arc<KeyStores>,
    /// The node's applications.
    pub applications: watch::Receiver<Arc<Vec<Application>>>,
    /// Static pairs.
    pub pairs: Arc<Vec<SaePair>>,
    /// SAE identities of certificates without a qkdn one.
    pub identity: IdentityMap,
    /// Limits.
    pub limits: Limits,
    /// Usage per application.
    pub usage: Arc<Usage>,
    /// Rate limits per SAE pair.
    pub limiter: Arc<limits::RateLimiter>,
    /// The quotas of pairs whose application sets none.
    pub defaults: limits::DefaultRates,
    /// Outcomes per interface.
    pub counters: Arc<InterfaceCounters>,
}

/// Why keys were not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The caller has no key association with that SAE (already logged and counted as a
    /// refusal of the policy's `sae-pair` condition).
    #[error("{0}")]
    NotPaired(String),
    /// An additional slave is not reached by the same key association.
    #[error("SAE {0} is not reached by the same key association as the first slave")]
    OtherLink(String),
    /// The pair asked beyond its rate.
    #[error("{0}")]
    Rate(String),
    /// The store could not deliver.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request for new keys.
#[derive(Clone, Copy, Debug)]
pub struct NewKeys<'a> {
    /// The calling SAE.
    pub master: &'a str,
    /// The SAEs at the other end that may fetch them (at least one; the first decides the
    /// route, the others must share it).
    pub slaves: &'a [String],
    /// How many.
    pub number: u64,
    /// Bits each (checked with [`Limits::check_size`] before).
    pub size_bits: u64,
    /// The key stream chunk the key is (then `number` is 1 and there is one slave): it is
    /// reserved at both ends, each end's application fetches it with
    /// [`KeyDelivery::redeem_chunk`], and the master's answer holds no key.
    pub chunk: Option<StreamChunk>,
}

impl KeyDelivery {
    /// The route of the pair (SAE at this node, SAE at the other end). One application serves
    /// a pair: the node's rules refuse a second one for the same SAEs, so no application id a
    /// client chooses can take over another's pair.
    pub fn route(&self, local: &str, remote: &str) -> Option<Route> {
        let apps = self.applications.borrow().clone();
        for app in apps.iter() {
            if app.server_sae.as_deref() != Some(local)
                || !app.client_saes.iter().any(|c| c == remote)
            {
                continue;
            }
            if let Some(link) =
                app.backing_links.iter().find(|l| self.stores.remote_of(**l).is_some())
            {
                return Some(Route {
                    link: *link,
                    app: Some(app.id),
                    quota: limits::QuotaKey::App(app.id),
                    ttl: app.ttl.map(|t| Duration::from_secs(u64::from(t))),
                    rate: app
                        .max_bandwidth
                        .filter(|r| *r > 0)
                        .unwrap_or(self.defaults.max_bandwidth_bps),
                });
            }
        }
        self.pairs
            .iter()
            .enumerate()
            .find(|(_, p)| p.local_sae == local && p.remote_sae == remote)
            .map(|(i, p)| Route {
                link: p.link,
                app: None,
                quota: limits::QuotaKey::Pair(i),
                ttl: None,
                rate: self.defaults.max_bandwidth_bps,
            })
    }

    /// The SAEs `local` is paired with (as the SAE at this node), by applications or static
    /// pairs, each once.
    pub fn partners(&self, local: &str) -> Vec<String> {
        let mut partners: Vec<String> = Vec::new();
        let apps = self.applications.borrow().clone();
        let from_apps = apps
            .iter()
            .filter(|a| a.server_sae.as_deref() == Some(local))
            .flat_map(|a| a.client_saes.iter().cloned());
        let from_pairs =
            self.pairs.iter().filter(|p| p.local_sae == local).map(|p| p.remote_sae.clone());
        for sae in from_apps.chain(from_pairs) {
            if !partners.contains(&sae) {
                partners.push(sae);
            }
        }
        partners
    }

    /// The route of the pair, or the refusal (the policy's `sae-pair` condition).
    pub fn pair_route(
        &self,
        auth: &Authorized,
        local: &str,
        remote: &str,
    ) -> Result<Route, DeliveryError> {
        self.route(local, remote).ok_or_else(|| {
            let refused = auth.refuse(
                "sae-pair",
                &format!("keys of SAE {local} with SAE {remote}"),
                &format!("SAE {local} has no key association with SAE {remote}"),
            );
            DeliveryError::NotPaired(refused.message)
        })
    }

    /// New keys for `request.master` and its slaves, over `interface`.
    pub async fn issue(
        &self,
        auth: &Authorized,
        interface: Interface,
        request: NewKeys<'_>,
    ) -> Result<Vec<Issued>, DeliveryError> {
        let started = Instant::now();
        let slave = request.slaves.first().map(String::as_str).unwrap_or_default();
        let route = match self.pair_route(auth, request.master, slave) {
            Ok(route) => route,
            Err(e) => {
                self.counters.count(interface, Operation::Issue, &Err(&e), 0);
                return Err(e);
            }
        };
        let result = self.issue_on(auth, &route, request).await;
        if let Some(app) = route.app {
            let outcome = match &result {
                Ok(keys) => Outcome::Delivered(keys.len()),
                Err(DeliveryError::Store(StoreError::NotEnough { .. })) => Outcome::NoKeyMaterial,
                Err(_) => Outcome::Refused,
            };
            self.usage.record(app, started.elapsed(), outcome);
        }
        let keys = result.as_ref().map_or(0, Vec::len);
        self.counters.count(interface, Operation::Issue, &result.as_ref().map(|_| ()), keys);
        result
    }

    async fn issue_on(
        &self,
        auth: &Authorized,
        route: &Route,
        request: NewKeys<'_>,
    ) -> Result<Vec<Issued>, DeliveryError> {
        let (master, slaves) = (request.master, request.slaves);
        for extra in slaves.iter().skip(1) {
            if self.pair_route(auth, master, extra)?.link != route.link {
                return Err(DeliveryError::OtherLink(extra.clone()));
            }
        }
        let applications = self.applications.borrow().clone();
        let keep_for_others = limits::guaranteed_to_others(
            &applications,
            &self.pairs,
            route.link,
            route.quota,
            request.size_bits as u32,
            self.defaults,
        );
        let take = Take {
            link: route.link,
            master,
            slaves,
            number: request.number as usize,
            size_bits: request.size_bits as u32,
            ttl: route.ttl,
            keep_for_others,
            chunk: request.chunk,
        };
        let bits = request.number * request.size_bits;
        self.limiter
            .admit(route.quota, route.rate, bits)
            .map_err(|e| DeliveryError::Rate(e.to_string()))?;
        let keys = match self.stores.take(&take).await {
            Ok(keys) => keys,
            Err(e) => {
                self.limiter.refund(route.quota, route.rate, bits);
                return Err(e.into());
            }
        };
        if let Some(app) = route.app {
            self.usage.add(app, bits);
        }
        // The IDs are listed only when debug logging is on.
        tracing::debug!(%master, ?slaves, link = %route.link,
            keys = ?keys.iter().map(|(id, _)| id).collect::<Vec<_>>(), size = request.size_bits,
            "keys issued");
        Ok(keys)
    }

    /// The keys `ids` that `master` took for the caller `slave`, each once, over `interface`.
    pub async fn redeem(
        &self,
        auth: &Authorized,
        interface: Interface,
        slave: &str,
        master: &str,
        ids: &[Uuid],
    ) -> Result<Vec<Issued>, DeliveryError> {
        let result = self.redeem_on(auth, slave, master, ids).await;
        let keys = result.as_ref().map_or(0, Vec::len);
        self.counters.count(interface, Operation::Redeem, &result.as_ref().map(|_| ()), keys);
        result
    }

    /// Chunk `chunk` of a key stream for `local` (the application at this end) whose other end
    /// is `remote`, once, over `interface`.
    pub async fn redeem_chunk(
        &self,
        auth: &Authorized,
        interface: Interface,
        (local, remote): (&str, &str),
        chunk: StreamChunk,
    ) -> Result<Vec<Issued>, DeliveryError> {
        let result = async {
            let route = self.pair_route(auth, local, remote)?;
            Ok(self.stores.fetch_chunk(route.link, local, remote, chunk).await?)
        }
        .await;
        let keys = result.as_ref().map_or(0, Vec::len);
        self.counters.count(interface, Operation::Redeem, &result.as_ref().map(|_| ()), keys);
        result
    }

    async fn redeem_on(
        &self,
        auth: &Authorized,
        slave: &str,
        master: &str,
        ids: &[Uuid],
    ) -> Result<Vec<Issued>, DeliveryError> {
        let route = self.pair_route(auth, slave, master)?;
        let fetched = self.stores.fetch(route.link, slave, master, ids).await;
        if let Some(app) = route.app {
            self.usage.record_fetch(app, fetched.as_ref().ok().map(Vec::len));
        }
        let keys = fetched?;
        if let Some(app) = route.app {
            let bits: u64 = keys.iter().map(|(_, k)| k.len() as u64 * 8).sum();
            self.usage.add(app, bits);
        }
        tracing::debug!(%slave, %master, link = %route.link, keys = ?ids, "keys redeemed");
        Ok(keys)
    }
}

/// A JSON answer holding key material: `body` is sent as it is and wiped when the response is
/// dropped (the key interfaces write keys straight into a buffer of the answer's exact length,
/// so no unwiped copy is left behind).
pub fn wiped_json(body: Zeroizing<Vec<u8>>) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let bytes = axum::body::Bytes::from_owner(body);
    let mut response = axum::response::Response::new(axum::body::Body::from(bytes));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A delivery operation, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// New keys for a master ([`KeyDelivery::issue`]).
    Issue,
    /// Keys redeemed by a slave ([`KeyDelivery::redeem`]).
    Redeem,
}

impl Operation {
    /// Its label in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Issue => "issue",
            Operation::Redeem => "redeem",
        }
    }
}

/// The interfaces that deliver keys, in the order counters are kept.
pub const KEY_INTERFACES: [Interface; 2] = [Interface::Etsi014, Interface::Skip];

/// Requests answered with keys, requests refused, and keys handed out, per key interface and
/// operation (for `/metrics`).
#[derive(Debug, Default)]
pub struct InterfaceCounters {
    /// `[interface][operation]`: (delivered requests, refused requests, keys).
    counts: [[[AtomicU64; 3]; 2]; KEY_INTERFACES.len()],
}

/// One line of [`InterfaceCounters::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceCount {
    /// The interface.
    pub interface: Interface,
    /// The operation.
    pub operation: Operation,
    /// Requests answered with keys.
    pub delivered: u64,
    /// Requests refused.
    pub refused: u64,
    /// Keys handed out.
    pub keys: u64,
}

impl InterfaceCounters {
    fn count(
        &self,
        interface: Interface,
        operation: Operation,
        result: &Result<(), &DeliveryError>,
        keys: usize,
    ) {
        let Some(i) = KEY_INTERFACES.iter().position(|k| *k == interface) else {
            return;
        };
        let cell = &self.counts[i][operation as usize];
        let slot = if result.is_ok() { 0 } else { 1 };
        cell[slot].fetch_add(1, Ordering::Relaxed);
        cell[2].fetch_add(keys as u64, Ordering::Relaxed);
    }

    /// Every (interface, operation) with its counts.
    pub fn snapshot(&self) -> Vec<InterfaceCount> {
        let mut lines = Vec::new();
        for (i, interface) in KEY_INTERFACES.iter().enumerate() {
            for operation in [Operation::Issue, Operation::Redeem] {
                let cell = &self.counts[i][operation as usize];
                lines.push(InterfaceCount {
                    interface: *interface,
                    operation,
                    delivered: cell[0].load(Ordering::Relaxed),
                    refused: cell[1].load(Ordering::Relaxed),
                    keys: cell[2].load(Ordering::Relaxed),
                });
            }
        }
        lines
    }
}
