//! The JSON contracts between an agent and its controller: what an agent registers with
//! (`POST /api/v1/nodes` at the controller) and the KMS figures the controller reads from the
//! agent's API (`/api/v1/kms/stores`, `/relays`, `/applications`) for monitoring, the 018
//! inventory and the routing weights (a link's key stock). Both sides use these types, so a
//! field renamed on one side is renamed on the other; readers accept fields they do not know.

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// What an agent sends to register.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Its node's `qkdn_id`.
    pub node_id: Uuid,
    /// Base URL of its RESTCONF server.
    pub restconf_url: String,
    /// Its KMS endpoints.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kms: KmsEndpoints,
    /// SHA-256 of its RESTCONF server certificate (DER), hex, when TLS is on.
    #[serde(default)]
    pub certificate_sha256: Option<String>,
    /// Its version.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Base URL of its API (the KMS figures; `https://.../api`).
    #[serde(default)]
    pub management_url: Option<String>,
}

/// Where a node's KMS serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEndpoints {
    /// Its ETSI GS QKD 014 server, when it runs one.
    #[serde(default)]
    pub etsi014_url: Option<String>,
    /// Its peer service (key relay between KMSs).
    #[serde(default)]
    pub peer_url: Option<String>,
}

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The counters of one key store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCounters {
    /// The link.
    pub link: Uuid,
    /// Its other end.
    pub remote: Uuid,
    /// Size of the stored keys, bits.
    pub key_bits: u32,
    /// Keys held (both halves, deliveries included).
    pub stored: usize,
    /// Keys this end may hand out now.
    pub free_owned: usize,
    /// Deliveries waiting for slaves.
    pub deliveries: usize,
    /// Keys stored since start.
    pub filled: u64,
    /// Keys consumed since start.
    pub consumed: u64,
    /// Keys dropped because the store was full (or could not keep up).
    pub dropped: u64,
    /// Pads erased ahead for the relay, held in memory.
    pub pad_pool: usize,
}

impl StoreCounters {
    /// Key bits held.
    pub fn stored_bits(&self) -> u64 {
        self.stored as u64 * u64::from(self.key_bits)
    }
}

/// The two fill thresholds of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillAlarm {
    /// What this end may hand out fell below the low threshold.
    Low,
    /// The store is above the high threshold.
    High,
}

/// How a store fares: rates, fill level, time to empty, alarms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// Key bits stored per second (smoothed).
    pub fill_bps: f64,
    /// Key bits consumed per second (smoothed).
    pub consumption_bps: f64,
    /// Share of the capacity in use.
    pub fill_ratio: f64,
    /// Seconds until the store is empty at the present rates, when it is draining.
    pub seconds_to_empty: Option<f64>,
    /// The raised alarms.
    pub alarms: Vec<FillAlarm>,
}

/// One key store's figures (`/api/v1/kms/stores`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreFigures {
    /// Its counters.
    #[serde(flatten)]
    pub counters: StoreCounters,
    /// Its health, once the agent's monitor has looked at it.
    #[serde(flatten)]
    pub health: Option<StoreHealth>,
}

/// A virtual link's relay figures, at the node that sources it (`/api/v1/kms/relays`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayFigures {
    /// The virtual link.
    pub link: Uuid,
    /// Relays committed at both ends.
    pub relays: u64,
    /// Keys they carried.
    pub keys: u64,
    /// Relays that failed (and were retried later with fresh keys and pads).
    pub failures: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Latency of a relay, milliseconds: median.
    pub latency_p50_ms: f64,
    /// 99th percentile.
    pub latency_p99_ms: f64,
    /// Largest.
    pub latency_max_ms: f64,
}

impl RelayFigures {
    /// Committed relays among all tried (1 when none were).
    pub fn success_ratio(&self) -> f64 {
        let tried = self.relays + self.failures;
        if tried == 0 { 1.0 } else { self.relays as f64 / tried as f64 }
    }
}

/// One application's key deliveries at a node (`/api/v1/kms/applications`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppDelivery {
    /// `app_id`.
    pub app: Uuid,
    /// Key bits delivered (both 014 calls).
    pub consumed_bits: u64,
    /// `enc_keys` requests routed to the application.
    pub requests: u64,
    /// Of which answered with keys.
    pub delivered: u64,
    /// Of which refused (no keys, rate limit, store error).
    pub failed: u64,
    /// `delivered / requests` (1 when there were none).
    pub success_ratio: f64,
    /// Keys handed out by `enc_keys`.
    pub keys: u64,
    /// `enc_keys` latency, milliseconds: median.
    pub latency_p50_ms: f64,
    /// 99th percentile.
    pub latency_p99_ms: f64,
    /// `dec_keys` requests of the application's slaves here.
    pub fetch_requests: u64,
    /// Of which refused.
    pub fetch_failed: u64,
    /// Keys fetched by `dec_keys`.
    pub fetched_keys: u64,
    /// Seconds since requests started being refused for lack of key material (none while
    /// requests are served or the application does not ask).
    pub starved_s: Option<f64>,
}

/// `GET /api/v1/kms/stores`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoresReply {
    /// Every store of the node.
    pub stores: Vec<StoreFigures>,
}

/// `GET /api/v1/kms/relays`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RelaysReply {
    /// Every virtual link the node sources.
    pub relays: Vec<RelayFigures>,
}

/// `GET /api/v1/kms/applications`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplicationsReply {
    /// Every application the node delivered keys for.
    pub applications: Vec<AppDelivery>,
}

/// All the KMS figures of a node, as its controller keeps them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KmsFigures {
    /// Its stores.
    pub stores: Vec<StoreFigures>,
    /// Its relays.
    pub relays: Vec<RelayFigures>,
    /// Its applications' deliveries.
    pub applications: Vec<AppDelivery>,
}

impl KmsFigures {
    /// The store of `link`.
    pub fn store(&self, link: Uuid) -> Option<&StoreFigures> {
        self.stores.iter().find(|s| s.counters.link == link)
    }

    /// The relay figures of virtual link `link`.
    pub fn relay(&self, link: Uuid) -> Option<&RelayFigures> {
        self.relays.iter().find(|r| r.link == link)
    }

    /// The deliveries of application `app`.
    pub fn application(&self, app: Uuid) -> Option<&AppDelivery> {
        self.applications.iter().find(|a| a.app == app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_without_health_reads_back_without_it_and_with_it_with_it() {
        let counters = StoreCounters {
            link: Uuid::from_u128(1),
            stored: 5,
            key_bits: 256,
            ..Default::default()
        };
        let bare = StoreFigures { counters: counters.clone(), health: None };
        let text = serde_json::to_string(&bare).unwrap();
        assert!(!text.contains("fill_ratio"), "{text}");
        assert_eq!(serde_json::from_str::<StoreFigures>(&text).unwrap(), bare);
        let health =
            StoreHealth { fill_ratio: 0.5, alarms: vec![FillAlarm::Low], ..Default::default() };
        let full = StoreFigures { counters, health: Some(health) };
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<StoreFigures>(&text).unwrap(), full);
        assert_eq!(full.counters.stored_bits(), 1280);
    }

    #[test]
    fn a_registration_of_an_older_agent_still_reads() {
        let old = r#"{"node_id": "00000000-0000-0000-0000-000000000001",
            "restconf_url": "https://a/restconf", "kms": null, "agent_version": "0.1.0"}"#;
        let r: Registration = serde_json::from_str(old).unwrap();
        assert_eq!(r.kms, KmsEndpoints::default());
        let with_kms = r#"{"node_id": "00000000-0000-0000-0000-000000000001",
            "restconf_url": "https://a/restconf",
            "kms": {"etsi014_url": "https://a:8443", "peer_url": null, "more": 1}}"#;
        let r: Registration = serde_json::from_str(with_kms).unwrap();
        assert_eq!(r.kms.etsi014_url.as_deref(), Some("https://a:8443"));
    }
}
