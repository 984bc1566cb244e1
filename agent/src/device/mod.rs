//! QKD devices, behind one trait: a simulator, and a driver for real devices whose key manager
//! speaks ETSI GS QKD 014.
//!
//! The agent starts one task per physical link with a device at its local interface
//! ([`QkdDevice::run_link`]). The task reports what happens on the link as [`DeviceEvent`]s:
//! key blocks (which go to the KMS through a [`crate::kms::KeySink`]), measurements (secret key
//! rate, QBER, SNR), link down/up, device failure/recovery.

pub mod etsi014;
pub mod sim;
pub mod skr;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::{DeviceConfig, SimulatorConfig};
use crate::peer::PeerLinks;

/// Keys produced together on one link, both ends holding the same block.
pub struct KeyBlock {
    /// The link.
    pub link: Uuid,
    /// Position of the block in the link's key stream (the same at both ends).
    pub sequence: u64,
    key_bytes: usize,
    ids: Vec<Uuid>,
    material: Zeroizing<Vec<u8>>,
}

impl KeyBlock {
    /// A block of `ids.len()` keys of `key_bytes` bytes each, stored one after the other in
    /// `material`.
    pub fn new(
        link: Uuid,
        sequence: u64,
        key_bytes: usize,
        ids: Vec<Uuid>,
        material: Zeroizing<Vec<u8>>,
    ) -> Self {
        assert_eq!(material.len(), key_bytes * ids.len(), "one key per id");
        KeyBlock { link, sequence, key_bytes, ids, material }
    }

    /// The keys' IDs and their material, concatenated.
    pub fn into_parts(self) -> (Vec<Uuid>, Zeroizing<Vec<u8>>) {
        (self.ids, self.material)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the block holds no key.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Size of each key, bytes.
    pub fn key_bytes(&self) -> usize {
        self.key_bytes
    }

    /// The keys: id and material.
    pub fn keys(&self) -> impl Iterator<Item = (Uuid, &[u8])> {
        self.ids.iter().copied().zip(self.material.chunks(self.key_bytes.max(1)))
    }
}

impl std::fmt::Debug for KeyBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material never appears in debug output.
        f.debug_struct("KeyBlock")
            .field("link", &self.link)
            .field("sequence", &self.sequence)
            .field("keys", &self.ids.len())
            .field("key_bytes", &self.key_bytes)
            .finish_non_exhaustive()
    }
}

/// Measured performance of a link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// Secret key rate, bits per second.
    pub skr_bps: u64,
    /// Quantum bit error rate.
    pub qber: f64,
    /// Signal-to-noise ratio, dB.
    pub snr_db: f64,
}

/// Something that happened on a link or its device.
#[derive(Debug)]
pub enum DeviceEvent {
    /// New keys.
    Keys(KeyBlock),
    /// Current performance.
    Measured {
        /// The link.
        link: Uuid,
        /// Its performance.
        measurement: Measurement,
    },
    /// The link produces keys again.
    LinkUp {
        /// The link.
        link: Uuid,
    },
    /// The link stopped producing keys.
    LinkDown {
        /// The link.
        link: Uuid,
        /// Why.
        reason: String,
    },
    /// The device of an interface failed.
    DeviceFailed {
        /// The interface.
        interface: u32,
        /// Why.
        reason: String,
    },
    /// The device works again.
    DeviceRecovered {
        /// The interface.
        interface: u32,
    },
}

/// What a device needs to know about a link it serves.
#[derive(Clone, Debug)]
pub struct LinkSpec {
    /// The link.
    pub link: Uuid,
    /// This node.
    pub local_node: Uuid,
    /// The local interface.
    pub interface: u32,
    /// The node at the other end.
    pub remote_node: Uuid,
    /// Channel attenuation, dB.
    pub attenuation_db: f64,
}

/// The future of a running link task.
pub type LinkTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A QKD device driver.
pub trait QkdDevice: Send + Sync + 'static {
    /// Driver name (`simulator`, `etsi014`).
    fn driver(&self) -> &'static str;

    /// The nominal secret key rate on a link, bits per second, when the driver can tell before
    /// measuring (used to judge requested bandwidth).
    fn nominal_rate(&self, spec: &LinkSpec) -> Option<u64>;

    /// Runs the link until the task is dropped, reporting on `events`.
    fn run_link(&self, spec: LinkSpec, events: mpsc::Sender<DeviceEvent>) -> LinkTask;
}

/// Why a device's driver could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The simulator has no network secret.
    #[error("simulator.network_secret is not set")]
    NoSecret,
    /// The simulator's network secret is not 64 hexadecimal digits.
    #[error("simulator.network_secret: expected 64 hexadecimal digits")]
    BadSecret,
    /// The simulator's epoch is not a time.
    #[error("simulator.epoch: {0}")]
    Epoch(#[source] humantime::TimestampError),
    /// The client of an ETSI 014 device's KME could not be made.
    #[error("interface {interface}: {source}")]
    Kme {
        /// The device's interface.
        interface: u32,
        /// Why.
        #[source]
        source: etsi014::KmeClientError,
    },
}

/// The driver for a configured device.
pub fn driver_for(
    device: &DeviceConfig,
    interface: u32,
    simulator: &SimulatorConfig,
    peers: &PeerLinks,
) -> Result<Arc<dyn QkdDevice>, DriverError> {
    match device {
        DeviceConfig::Simulator(params) => {
            Ok(Arc::new(sim::Simulator::new(interface, params, simulator)?))
        }
        DeviceConfig::Etsi014(params) => {
            Ok(Arc::new(etsi014::Etsi014Driver::new(interface, params, peers.clone())?))
        }
    }
}
