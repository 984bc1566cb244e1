//! What the agent's read-only endpoints read: the management endpoints ([`crate::management`]),
//! the metrics ([`crate::metrics`]) and the authenticated API ([`crate::api`]) all take a
//! [`ManagementState`], which depends on none of them.

use std::sync::Arc;

use tokio::sync::watch;

use crate::kms::KeyLedger;
use crate::kms::health::HealthView;
use crate::kms::relay::Relay;
use crate::kms::store::KeyStores;
use crate::node::live::LiveView;
use crate::register::RegistrationState;

/// What the endpoints read of the KMS.
#[derive(Clone)]
pub struct KmsView {
    /// The key stores.
    pub stores: Arc<KeyStores>,
    /// Their rates and alarms.
    pub health: HealthView,
    /// Their counters, refreshed every second.
    pub figures: watch::Receiver<Arc<Vec<crate::kms::store::StoreCounters>>>,
    /// The relay engine.
    pub relay: Arc<Relay>,
    /// What the key interfaces delivered to each application.
    pub usage: Arc<crate::kms::delivery::Usage>,
    /// Deliveries and refusals per key interface.
    pub interfaces: Arc<crate::kms::delivery::InterfaceCounters>,
}

/// What the endpoints read.
#[derive(Clone)]
pub struct ManagementState {
    /// The KMS, when the node runs one.
    pub kms: Option<KmsView>,
    /// The live node's view.
    pub view: watch::Receiver<Arc<LiveView>>,
    /// The key ledger, when the agent runs without a KMS.
    pub ledger: Option<Arc<KeyLedger>>,
    /// Registration with the controller.
    pub registration: watch::Receiver<RegistrationState>,
    /// The agent has started.
    pub ready: watch::Receiver<bool>,
    /// Requests the authorization policy refused.
    pub denials: Arc<qkdn_kit::Denials>,
}
