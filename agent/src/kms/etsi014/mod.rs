//! The node's ETSI GS QKD 014 v1.1.1 server (REST over mutual TLS): `status`, `enc_keys`
//! (GET with `number`/`size`, and POST) and `dec_keys` (GET with `key_ID`, and POST), sizes in
//! bits, multicast with `additional_slave_SAE_IDs`, the standard's error answers.
//!
//! The calling SAE is identified by its certificate ([`identity`]). A pair of SAEs is served by
//! the link that backs their 015 application at this node (`server_app_id` = the SAE here,
//! `client_app_id` = the SAEs at the other end, the first `backing_qkdl_id` with a key store),
//! or by a static pair of the configuration. Keys come from the link's store ([`super::store`]):
//! `enc_keys` takes keys this end owns and has the other end reserve them for the named slaves
//! before answering; `dec_keys` gives a slave the keys reserved for it, once.

mod api;
pub mod identity;
pub mod limits;
mod usage;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::sync::watch;
use uuid::Uuid;

use self::identity::IdentityMap;
pub use self::usage::{AppDelivery, Usage};
use super::hooks::Application;
use super::store::KeyStores;
use crate::config::{KmsConfig, SaePair};

/// Limits the server announces in `status` and enforces.
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

/// What the handlers share.
#[derive(Clone)]
pub struct ServerState {
    /// The key stores.
    pub stores: Arc<KeyStores>,
    /// The node's applications.
    pub applications: watch::Receiver<Arc<Vec<Application>>>,
    /// Static pairs.
    pub pairs: Arc<Vec<SaePair>>,
    /// SAE identities.
    pub identity: IdentityMap,
    /// Limits.
    pub limits: Limits,
    /// Usage per application.
    pub usage: Arc<Usage>,
    /// Rate limits per SAE pair.
    pub limiter: Arc<limits::RateLimiter>,
    /// The quotas of pairs whose application sets none.
    pub defaults: limits::DefaultRates,
}

impl ServerState {
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
}

/// The router of the 014 API.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/api/v1/keys/{sae}/status", get(api::status))
        .route("/api/v1/keys/{sae}/enc_keys", get(api::enc_keys_get).post(api::enc_keys_post))
        .route("/api/v1/keys/{sae}/dec_keys", get(api::dec_keys_get).post(api::dec_keys_post))
        .fallback(api::unknown)
        .method_not_allowed_fallback(api::unknown)
        .with_state(state)
}
