//! The configuration's data model, as read from TOML (unknown keys are errors, so a misspelt
//! key is reported rather than ignored).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The whole configuration of one agent.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The SD-QKD node.
    pub node: NodeConfig,
    /// Directory for the agent's durable state (controller-written configuration).
    pub data_dir: PathBuf,
    /// A 015 instance document (RFC 7951 JSON, tolerant forms accepted, such as TeraFlowSDN's
    /// mock node files) whose interfaces, links and applications the node starts with; the
    /// entries of this configuration win where both define the same one.
    #[serde(default)]
    pub startup_data: Option<PathBuf>,
    /// The RESTCONF server.
    #[serde(default)]
    pub restconf: RestconfConfig,
    /// Health and diagnostics endpoints.
    #[serde(default)]
    pub management: ManagementConfig,
    /// The SDN controller(s) to register with.
    #[serde(default)]
    pub controller: ControllerConfig,
    /// The gRPC service neighbouring agents call (and how this agent calls theirs).
    #[serde(default)]
    pub peer: PeerConfig,
    /// Where the agents of neighbouring nodes listen.
    #[serde(default)]
    pub neighbours: Vec<NeighbourConfig>,
    /// The node's KMS (key stores, ETSI GS QKD 014 server); none means keys are only counted.
    #[serde(default)]
    pub kms: Option<KmsConfig>,
    /// Notification timing.
    #[serde(default)]
    pub notifications: NotificationConfig,
    /// Settings shared by the simulated QKD devices of this node.
    #[serde(default)]
    pub simulator: SimulatorConfig,
    /// The QKD interfaces (QKD modules) of the node.
    #[serde(default)]
    pub interfaces: Vec<InterfaceConfig>,
    /// The physical key association links that end at this node.
    #[serde(default)]
    pub links: Vec<LinkConfig>,
    /// Lets plain-HTTP loopback listeners (RESTCONF, peer) serve callers without any
    /// authentication, as operator admins (and peers whose claims are believed): for
    /// development on one machine only; announced loudly at start.
    #[serde(default)]
    pub insecure_allow_unauthenticated: bool,
}

/// The peer service between neighbouring agents (gRPC): key-ID exchange of ETSI 014 devices and
/// the KMS's reservations and relay. Always TLS 1.3 with the hybrid post-quantum group, both
/// ends presenting node certificates (each checks that the other's names the expected node).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Listening address; none means neighbours cannot call this agent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// TLS of the listener (`client_ca` is required: neighbours present node certificates);
    /// without it, plain HTTP/2 on loopback with `insecure_allow_unauthenticated` only.
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// TLS files for calling neighbours (required for `https` neighbour URLs).
    #[serde(default)]
    pub client_tls: Option<ClientTls>,
}

/// The KMS.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// Listening address of the ETSI GS QKD 014 server.
    pub listen: SocketAddr,
    /// TLS of the 014 server; `client_ca` is required (SAEs authenticate with certificates).
    pub tls: ServerTls,
    /// How an SAE's ID is read from a certificate that carries no qkdn identity (certificates
    /// of other CAs' SAEs); a certificate with one (`urn:qkdn:sae:<ID>`) is always read by it.
    #[serde(default)]
    pub sae_identity: SaeIdentity,
    /// SAE IDs by certificate SHA-256 fingerprint (hex), for `sae_identity = "fingerprint"`.
    #[serde(default)]
    pub sae_fingerprints: std::collections::BTreeMap<String, String>,
    /// File holding the key stores' encryption key (64 hex digits); the environment variable
    /// `QKDN_KMS_STORE_KEY` takes precedence.
    #[serde(default)]
    pub store_key_file: Option<PathBuf>,
    /// Store keys being rotated away: at start, the blocks they wrapped are opened and their
    /// data keys re-wrapped under the store key (the stores serve meanwhile); the agent logs
    /// when that is done, and these files can then be removed from the configuration.
    #[serde(default)]
    pub previous_store_key_files: Vec<PathBuf>,
    /// Default key size, bits (`key_size` of the 014 status).
    #[serde(default = "default_key_size")]
    pub key_size_bits: u32,
    /// Smallest key size served, bits.
    #[serde(default = "default_min_key_size")]
    pub min_key_size_bits: u32,
    /// Largest key size served, bits.
    #[serde(default = "default_max_key_size")]
    pub max_key_size_bits: u32,
    /// Most keys per request.
    #[serde(default = "default_max_keys_per_request")]
    pub max_keys_per_request: u32,
    /// Most additional slave SAEs per request (multicast; 0 disables it).
    #[serde(default = "default_max_sae_id_count")]
    pub max_sae_id_count: u32,
    /// Keys a link's store holds at most.
    #[serde(default = "default_store_capacity")]
    pub store_capacity: usize,
    /// Share of this end's half of `store_capacity` below which the keys this end may hand out
    /// raise a low-key alarm (once the store has been above it).
    #[serde(default = "default_store_low_watermark")]
    pub store_low_watermark: f64,
    /// Fill (share of `store_capacity`) above which a store raises a nearly-full alarm.
    #[serde(default = "default_store_high_watermark")]
    pub store_high_watermark: f64,
    /// How long a delivered key waits for its slaves when the application sets no TTL.
    #[serde(default = "default_delivery_ttl", with = "humantime_serde")]
    pub delivery_ttl: Duration,
    /// SAE pairs served without a 015 application: `local_sae`, `remote_sae`, `link`.
    #[serde(default)]
    pub pairs: Vec<SaePair>,
    /// Keys the source of a virtual link keeps relayed ahead (at most at `virt_bandwidth`).
    #[serde(default = "default_relay_stock")]
    pub relay_stock_keys: usize,
    /// The rate an SAE pair may take keys at when its application sets no `max_bandwidth`
    /// (static pairs included), bit/s.
    #[serde(default = "default_pair_max_bandwidth")]
    pub default_max_bandwidth_bps: u32,
    /// The rate kept for an SAE pair when its application sets no `min_bandwidth` (static
    /// pairs included), bit/s: other pairs of its link cannot take the keys of its
    /// guarantee (5 s of this rate).
    #[serde(default = "default_pair_min_bandwidth")]
    pub default_min_bandwidth_bps: u32,
    /// The SKIP key provider for encryptors (draft-cisco-skip-02), if any.
    #[serde(default)]
    pub skip: Option<SkipConfig>,
}

/// The SKIP key provider: a listener for encryptors with certificates (the KMS's
/// `tls`), one for encryptors with pre-shared keys (TLS 1.2 DHE-PSK), or both.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SkipConfig {
    /// Listening address for encryptors with certificates of the KMS's client CA.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Listening address for encryptors with pre-shared keys (`psk`).
    #[serde(default)]
    pub psk_listen: Option<SocketAddr>,
    /// The encryptors' pre-shared keys.
    #[serde(default)]
    pub psk: Vec<SkipPsk>,
}

/// One encryptor's pre-shared key: a connection made with it acts as SAE `sae`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SkipPsk {
    /// The SAE (encryptor) ID the key stands for.
    pub sae: String,
    /// The PSK identity the encryptor sends in its handshake (default: `sae`).
    #[serde(default)]
    pub identity: Option<String>,
    /// File holding the key, in hex (16 to 256 bytes; keep it readable by the agent only).
    pub key_file: PathBuf,
}

impl SkipPsk {
    /// The PSK identity.
    pub fn psk_identity(&self) -> &str {
        self.identity.as_deref().unwrap_or(&self.sae)
    }
}

fn default_pair_max_bandwidth() -> u32 {
    2_000_000
}

fn default_pair_min_bandwidth() -> u32 {
    2_560
}

fn default_relay_stock() -> usize {
    4096
}

fn default_min_key_size() -> u32 {
    64
}
fn default_max_key_size() -> u32 {
    8192
}
fn default_max_keys_per_request() -> u32 {
    1024
}
fn default_max_sae_id_count() -> u32 {
    8
}
fn default_store_capacity() -> usize {
    1_000_000
}
fn default_store_low_watermark() -> f64 {
    0.01
}
fn default_store_high_watermark() -> f64 {
    0.95
}
fn default_delivery_ttl() -> Duration {
    Duration::from_secs(3600)
}

/// How the 014 server reads an SAE's ID from a client certificate without a qkdn identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SaeIdentity {
    /// It does not: only certificates naming `urn:qkdn:sae:<ID>` are SAEs.
    #[default]
    None,
    /// The subject's common name.
    CommonName,
    /// The first URI subject alternative name.
    SanUri,
    /// The certificate's SHA-256 fingerprint, looked up in `sae_fingerprints`.
    Fingerprint,
}

/// A pair of SAEs served by a link without a 015 application.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SaePair {
    /// The SAE at this node.
    pub local_sae: String,
    /// The SAE at the other end of the link.
    pub remote_sae: String,
    /// The link.
    pub link: Uuid,
}

/// A neighbouring node's agent.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    /// Its `qkdn_id`.
    pub node: Uuid,
    /// Its peer service (`https://host:port`; `http://` to loopback only).
    pub url: String,
}

/// Identity of the node.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `qkdn_id`.
    pub id: Uuid,
    /// `qkdn_version` (default: the agent's own version).
    #[serde(default)]
    pub version: Option<String>,
    /// `qkdn_location_id`: the secure site hosting the node.
    #[serde(default)]
    pub location: String,
}

pub use qkdn_kit::tls::{ClientTls, ServerTls};

/// The RESTCONF server of the agent.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestconfConfig {
    /// Listening address (default `127.0.0.1:8441`).
    #[serde(default = "default_restconf_listen")]
    pub listen: SocketAddr,
    /// TLS; without it the server speaks plain HTTP, allowed on loopback only.
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// Write the outermost member of responses without its module prefix (for clients that
    /// need it).
    #[serde(default)]
    pub compat_unprefixed: bool,
    /// The URL the controller should use (default: derived from `listen` and `tls`).
    #[serde(default)]
    pub advertised_url: Option<String>,
}

fn default_restconf_listen() -> SocketAddr {
    "127.0.0.1:8441".parse().expect("valid address")
}

impl Default for RestconfConfig {
    fn default() -> Self {
        RestconfConfig {
            listen: default_restconf_listen(),
            tls: None,
            compat_unprefixed: false,
            advertised_url: None,
        }
    }
}

/// The management endpoints (`/healthz`, `/readyz`, `/metrics`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementConfig {
    /// Listening address (default `127.0.0.1:9441`), plain HTTP.
    #[serde(default = "default_management_listen")]
    pub listen: SocketAddr,
}

fn default_management_listen() -> SocketAddr {
    "127.0.0.1:9441".parse().expect("valid address")
}

impl Default for ManagementConfig {
    fn default() -> Self {
        ManagementConfig { listen: default_management_listen() }
    }
}

/// The controller the agent registers with.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Controller base URLs, tried in order; none means the agent runs without a controller.
    #[serde(default)]
    pub urls: Vec<String>,
    /// TLS client files for the controller connection.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// The domains whose controllers (`urn:qkdn:controller:<domain>` certificates) may read
    /// and write this node's configuration over RESTCONF and read its KMS figures.
    #[serde(default)]
    pub domains: Vec<String>,
    /// How often a registered agent checks that the controller still knows it.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(15)
}

/// Notification timing.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationConfig {
    /// Period of `sdqkdn_link_perf_update` notifications (and of the performance state).
    #[serde(default = "default_performance_period", with = "humantime_serde")]
    pub performance_period: Duration,
}

fn default_performance_period() -> Duration {
    Duration::from_secs(10)
}

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig { performance_period: default_performance_period() }
    }
}

/// Settings shared by the simulated devices.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// 32 bytes in hex, shared by every simulated device of a network: each link's key stream
    /// is derived from it and the link id, so both ends produce the same keys.
    #[serde(default)]
    pub network_secret: Option<String>,
    /// A file holding `network_secret` (readable by the agent only); keeps the secret out of
    /// the configuration file.
    #[serde(default)]
    pub network_secret_file: Option<PathBuf>,
    /// Start of simulated time (RFC 3339, default the Unix epoch); both ends of a link must
    /// share it.
    #[serde(default)]
    pub epoch: Option<String>,
    /// Simulated seconds per real second (default 1.0); both ends of a link must share it.
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// Simulated time between two key blocks (default 1 s).
    #[serde(default = "default_slot", with = "humantime_serde")]
    pub slot: Duration,
    /// Scripted events, in simulated time since the epoch.
    #[serde(default)]
    pub events: Vec<SimEvent>,
}

fn default_time_scale() -> f64 {
    1.0
}

fn default_slot() -> Duration {
    Duration::from_secs(1)
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            network_secret: None,
            network_secret_file: None,
            epoch: None,
            time_scale: default_time_scale(),
            slot: default_slot(),
            events: Vec::new(),
        }
    }
}

/// A scripted event of a simulated link.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimEvent {
    /// The link it happens to.
    pub link: Uuid,
    /// When, in simulated time since the epoch (`"90s"`, `"5m"`).
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// What happens.
    pub kind: SimEventKind,
    /// For `qber`: the optical error rate from then on (0 to 0.5).
    #[serde(default)]
    pub value: Option<f64>,
}

/// Kinds of scripted events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimEventKind {
    /// The fibre is cut: no key until `up`.
    Down,
    /// The fibre is back.
    Up,
    /// The optical error rate changes (an eavesdropper, misalignment); above the abort
    /// threshold no key is produced.
    Qber,
    /// The local device fails.
    DeviceFailure,
    /// The local device works again.
    DeviceRecovery,
}

/// QKD technologies (ETSI 015 identities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum Technology {
    /// Continuous-variable QKD.
    #[serde(rename = "CV-QKD")]
    CvQkd,
    /// Discrete-variable QKD.
    #[serde(rename = "DV-QKD")]
    DvQkd,
    /// Coherent one-way.
    #[serde(rename = "DV-QKD-COW")]
    DvQkdCow,
    /// Two-way (plug and play).
    #[serde(rename = "DV-QKD-2Ws")]
    DvQkd2Ws,
}

impl Technology {
    /// The ETSI 015 identity.
    pub fn identity(self) -> &'static str {
        match self {
            Technology::CvQkd => "CV-QKD",
            Technology::DvQkd => "DV-QKD",
            Technology::DvQkdCow => "DV-QKD-COW",
            Technology::DvQkd2Ws => "DV-QKD-2Ws",
        }
    }
}

/// Device roles (ETSI 015 identities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    /// Sends the quantum signal.
    Transmitter,
    /// Detects it.
    Receiver,
    /// Either.
    Transceiver,
}

impl Role {
    /// The ETSI 015 identity.
    pub fn identity(self) -> &'static str {
        match self {
            Role::Transmitter => "TRANSMITTER",
            Role::Receiver => "RECEIVER",
            Role::Transceiver => "TRANSCEIVER",
        }
    }
}

/// Where an interface is plugged in.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// Optical switch or passive element.
    pub device: String,
    /// Its port.
    pub port: u32,
}

/// A QKD interface: a QKD module of the node.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// `qkdi_id`, unique in the node.
    pub id: u32,
    /// Vendor model.
    #[serde(default)]
    pub model: String,
    /// QKD technology.
    pub technology: Technology,
    /// Roles the module supports.
    #[serde(default = "default_role")]
    pub role: Role,
    /// WDM channels it can use (`"1-40"`).
    #[serde(default)]
    pub wavelength_range: Option<String>,
    /// Largest channel attenuation it tolerates, dB.
    #[serde(default)]
    pub max_absorption_db: Option<f64>,
    /// Optical attachment point.
    #[serde(default)]
    pub attachment: Option<Attachment>,
    /// The QKD device behind the interface and how qkdn drives it; none means keys cannot be
    /// produced on this interface.
    #[serde(default)]
    pub device: Option<DeviceConfig>,
}

fn default_role() -> Role {
    Role::Transceiver
}

/// A QKD device and its driver.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "driver", rename_all = "kebab-case")]
pub enum DeviceConfig {
    /// A simulated device.
    Simulator(SimDevice),
    /// A real device whose key manager speaks ETSI GS QKD 014.
    Etsi014(Etsi014Device),
}

/// Physical parameters of a simulated device (decoy-state BB84 model; see `device::skr`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimDevice {
    /// Pulse repetition rate, Hz (default 1 GHz).
    #[serde(default = "default_pulse_rate")]
    pub pulse_rate_hz: f64,
    /// Mean photon number of signal states (default 0.5).
    #[serde(default = "default_mu")]
    pub mean_photon_number: f64,
    /// Receiver transmittance including detector efficiency (default 0.1).
    #[serde(default = "default_detector_efficiency")]
    pub detector_efficiency: f64,
    /// Dark count probability per pulse (default 1e-6).
    #[serde(default = "default_dark_count")]
    pub dark_count_probability: f64,
    /// Optical misalignment error (default 0.01).
    #[serde(default = "default_misalignment")]
    pub misalignment_error: f64,
    /// Error-correction inefficiency f (default 1.16).
    #[serde(default = "default_ec_efficiency")]
    pub error_correction_efficiency: f64,
    /// QBER above which the protocol aborts (default 0.11, the BB84 limit).
    #[serde(default = "default_abort_qber")]
    pub abort_qber: f64,
    /// Size of each key, bits (default 256).
    #[serde(default = "default_key_size")]
    pub key_size_bits: u32,
}

fn default_pulse_rate() -> f64 {
    1.0e9
}
fn default_mu() -> f64 {
    0.5
}
fn default_detector_efficiency() -> f64 {
    0.1
}
fn default_dark_count() -> f64 {
    1.0e-6
}
fn default_misalignment() -> f64 {
    0.01
}
fn default_ec_efficiency() -> f64 {
    1.16
}
fn default_abort_qber() -> f64 {
    0.11
}
fn default_key_size() -> u32 {
    256
}

/// Which side of an ETSI 014 device pair this agent plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Fetches new keys with `enc_keys` and hands their IDs to the peer agent.
    Master,
    /// Fetches the keys the peer announced with `dec_keys`.
    Slave,
}

/// A real device's ETSI GS QKD 014 key manager.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Etsi014Device {
    /// Base URL of the device's KME (`https://kme-a:443`).
    pub kme_url: String,
    /// SAE ID of this agent at the KME.
    pub sae_id: String,
    /// SAE ID of the agent at the other end of the link.
    pub peer_sae_id: String,
    /// Master or slave.
    pub role: KeyRole,
    /// Key size to request, bits (default 256).
    #[serde(default = "default_key_size")]
    pub key_size_bits: u32,
    /// Keys per request (default 16).
    #[serde(default = "default_keys_per_request")]
    pub keys_per_request: u32,
    /// Time between polls of the KME (default 1 s).
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Mutual TLS with the KME.
    pub tls: ClientTls,
}

fn default_keys_per_request() -> u32 {
    16
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}

/// A physical key association link ending at this node.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// `qkdl_id`, shared by both ends.
    pub id: Uuid,
    /// The local interface (its device produces the keys).
    pub local_interface: u32,
    /// The node at the other end.
    pub remote_node: Uuid,
    /// The interface at the other end.
    pub remote_interface: u32,
    /// WDM channel, 1 to 9999.
    pub wavelength: u32,
    /// Role of the local device on this link.
    pub role: Role,
    /// Channel attenuation, dB; if absent, `length_km` times `attenuation_db_per_km`.
    #[serde(default)]
    pub channel_attenuation_db: Option<f64>,
    /// Fibre length, km.
    #[serde(default)]
    pub length_km: Option<f64>,
    /// Fibre loss, dB/km (default 0.2).
    #[serde(default = "default_fibre_loss")]
    pub attenuation_db_per_km: f64,
}

fn default_fibre_loss() -> f64 {
    0.2
}

impl LinkConfig {
    /// The channel attenuation in dB.
    pub fn attenuation_db(&self) -> f64 {
        self.channel_attenuation_db
            .unwrap_or_else(|| self.length_km.unwrap_or(0.0) * self.attenuation_db_per_km)
    }
}
