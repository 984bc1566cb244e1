//! The peer service between the agents of neighbouring nodes (gRPC, `proto/qkdn/peer/v1`): the
//! server neighbours call ([`server`]), the clients this agent calls them with ([`client`]),
//! and the hub that connects the server to the link tasks waiting for what neighbours send.
//!
//! Today it carries the key-ID exchange of QKD devices that speak ETSI GS QKD 014: the master
//! end of a link announces the IDs of keys it took from its KME, the slave end's link task
//! fetches the same keys from its own KME and answers.

pub mod client;
pub mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use client::PeerClients;

/// Keys announced by the master end of a link.
#[derive(Debug)]
pub struct Announcement {
    /// The node that sent it.
    pub master: Uuid,
    /// Position of the block in the link's key stream.
    pub sequence: u64,
    /// Size of every key, bits.
    pub key_size_bits: u32,
    /// The keys' ETSI 014 IDs, in order.
    pub key_ids: Vec<Uuid>,
    /// The answer: the number of keys now held, or why they could not be fetched.
    pub reply: oneshot::Sender<Result<u32, FetchRefusal>>,
}

/// Why the slave end did not fetch announced keys.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FetchRefusal {
    /// The announcing node is not the link's other end.
    #[error("link {link} ends at node {remote}, not {master}")]
    OtherEnd {
        /// The link.
        link: Uuid,
        /// Its other end.
        remote: Uuid,
        /// The announcing node.
        master: Uuid,
    },
    /// The keys' size differs from this end's.
    #[error("key size {asked} differs from this end's {here}")]
    KeySize {
        /// Announced.
        asked: u32,
        /// Configured here.
        here: u32,
    },
    /// This end's KME did not give the keys.
    #[error("{0}")]
    Kme(#[source] std::sync::Arc<crate::device::etsi014::kme::KmeError>),
}

/// Routes announcements to the link tasks that wait for them.
#[derive(Default)]
pub struct PeerHub {
    waiting: Mutex<HashMap<Uuid, (Uuid, mpsc::Sender<Announcement>)>>,
}

impl PeerHub {
    /// Registers the task of `link`, whose other end is node `remote`; announcements for it
    /// arrive on the receiver until the returned guard is dropped.
    pub fn attach(
        self: &Arc<Self>,
        link: Uuid,
        remote: Uuid,
    ) -> (mpsc::Receiver<Announcement>, Attachment) {
        let (tx, rx) = mpsc::channel(16);
        self.waiting.lock().expect("hub lock").insert(link, (remote, tx));
        (rx, Attachment { hub: self.clone(), link })
    }

    /// The task waiting for `link` and the link's other end, if any.
    pub fn route(&self, link: Uuid) -> Option<(Uuid, mpsc::Sender<Announcement>)> {
        self.waiting.lock().expect("hub lock").get(&link).cloned()
    }
}

/// Keeps a link task attached to the hub.
pub struct Attachment {
    hub: Arc<PeerHub>,
    link: Uuid,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.hub.waiting.lock().expect("hub lock").remove(&self.link);
    }
}

/// What device drivers need of the peer service.
#[derive(Clone)]
pub struct PeerLinks {
    /// Incoming announcements.
    pub hub: Arc<PeerHub>,
    /// Outgoing calls.
    pub clients: Arc<PeerClients>,
}
