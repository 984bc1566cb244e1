//! The driver for real QKD devices whose key manager (KME) speaks ETSI GS QKD 014, as many
//! commercial devices do. The agent is an SAE of its own device's KME, over mutual TLS.
//!
//! ETSI 014 is asymmetric, so the two ends of a link play different parts:
//!
//! - the **master** end polls its KME (`status`, then `enc_keys` for the slave SAE), announces
//!   the key IDs to the agent at the other end over the peer service
//!   ([`crate::peer`]), and keeps the keys only once that agent says it holds them too;
//! - the **slave** end waits for announcements, fetches the named keys from its own KME with
//!   `dec_keys`, hands them on and answers.
//!
//! Both ends emit the same blocks (same sequence, same IDs, same bytes). Keys the slave end
//! cannot fetch are discarded at the master end (wiped, never used). Should the slave's answer
//! be lost after it fetched the keys, the block exists at the slave end only; no application at
//! the master end can name those keys, and the KMS sync between the two ends (DESIGN.md §7.5)
//! is what removes them. The secret key rate reported is the rate of keys actually delivered; QBER
//! and SNR are not available through ETSI 014 and are not reported.

pub mod kme;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qkdn_proto::peer::v1::DeviceKeysRequest;
use tokio::sync::mpsc;

pub use self::kme::KmeClientError;
use self::kme::{Keys, KmeClient, KmeError};
use super::{DeviceEvent, DriverError, KeyBlock, LinkSpec, LinkTask, Measurement, QkdDevice};
use crate::config::{Etsi014Device, KeyRole};
use crate::peer::{Announcement, FetchRefusal, PeerLinks};

/// A device behind an ETSI 014 KME.
pub struct Etsi014Driver {
    interface: u32,
    params: Arc<Etsi014Device>,
    kme: Arc<KmeClient>,
    peers: PeerLinks,
}

impl Etsi014Driver {
    /// The driver of `interface`'s device.
    pub fn new(
        interface: u32,
        params: &Etsi014Device,
        peers: PeerLinks,
    ) -> Result<Etsi014Driver, DriverError> {
        let kme = KmeClient::new(&params.kme_url, &params.tls)
            .map_err(|source| DriverError::Kme { interface, source })?;
        Ok(Etsi014Driver { interface, params: Arc::new(params.clone()), kme: Arc::new(kme), peers })
    }
}

impl QkdDevice for Etsi014Driver {
    fn driver(&self) -> &'static str {
        "etsi014"
    }

    fn nominal_rate(&self, _spec: &LinkSpec) -> Option<u64> {
        // ETSI 014 says how many keys are stored, not how fast they come.
        None
    }

    fn run_link(&self, spec: LinkSpec, events: mpsc::Sender<DeviceEvent>) -> LinkTask {
        let link = LinkRun {
            spec,
            interface: self.interface,
            params: self.params.clone(),
            kme: self.kme.clone(),
            events,
            up: None,
            failed: false,
            rate: RateMeter::new(),
        };
        match self.params.role {
            KeyRole::Master => Box::pin(link.master(self.peers.clone())),
            KeyRole::Slave => Box::pin(link.slave(self.peers.clone())),
        }
    }
}

/// Delivered-key rate over a sliding window.
struct RateMeter {
    since: Instant,
    bits: u64,
    last_bps: u64,
}

impl RateMeter {
    const WINDOW: Duration = Duration::from_secs(5);

    fn new() -> Self {
        RateMeter { since: Instant::now(), bits: 0, last_bps: 0 }
    }

    fn add(&mut self, bits: u64) {
        self.bits += bits;
    }

    /// Bits per second over the current window (the previous window's figure until a window
    /// has passed).
    fn rate(&mut self) -> u64 {
        let elapsed = self.since.elapsed();
        if elapsed >= Self::WINDOW {
            self.last_bps = (self.bits as f64 / elapsed.as_secs_f64()) as u64;
            self.bits = 0;
            self.since = Instant::now();
        } else if self.last_bps == 0 && elapsed >= Duration::from_millis(100) {
            return (self.bits as f64 / elapsed.as_secs_f64()) as u64;
        }
        self.last_bps
    }
}

/// One link's task state.
struct LinkRun {
    spec: LinkSpec,
    interface: u32,
    params: Arc<Etsi014Device>,
    kme: Arc<KmeClient>,
    events: mpsc::Sender<DeviceEvent>,
    up: Option<bool>,
    failed: bool,
    rate: RateMeter,
}

/// The receiving side went away: the link task ends.
struct Stopped;

impl LinkRun {
    async fn send(&self, event: DeviceEvent) -> Result<(), Stopped> {
        self.events.send(event).await.map_err(|_| Stopped)
    }

    async fn set_up(&mut self, up: bool, reason: &str) -> Result<(), Stopped> {
        if self.up == Some(up) {
            return Ok(());
        }
        self.up = Some(up);
        let link = self.spec.link;
        if up {
            self.send(DeviceEvent::LinkUp { link }).await
        } else {
            self.send(DeviceEvent::LinkDown { link, reason: reason.to_owned() }).await
        }
    }

    async fn set_failed(&mut self, failed: bool, reason: &str) -> Result<(), Stopped> {
        if self.failed == failed {
            return Ok(());
        }
        self.failed = failed;
        let interface = self.interface;
        if failed {
            tracing::warn!(interface, link = %self.spec.link, reason, "the QKD device's KME fails");
            self.send(DeviceEvent::DeviceFailed { interface, reason: reason.to_owned() }).await
        } else {
            tracing::info!(interface, link = %self.spec.link, "the QKD device's KME answers again");
            self.send(DeviceEvent::DeviceRecovered { interface }).await
        }
    }

    async fn measured(&mut self) -> Result<(), Stopped> {
        let measurement =
            Measurement { skr_bps: self.rate.rate(), qber: f64::NAN, snr_db: f64::NAN };
        self.send(DeviceEvent::Measured { link: self.spec.link, measurement }).await
    }

    async fn kme_failed(&mut self, e: &KmeError) -> Result<(), Stopped> {
        if e.is_device_failure() {
            self.set_failed(true, &e.to_string()).await?;
        }
        self.set_up(false, &e.to_string()).await
    }

    async fn deliver(&mut self, sequence: u64, size_bits: u32, keys: Keys) -> Result<(), Stopped> {
        self.rate.add(u64::from(size_bits) * keys.ids.len() as u64);
        let block = KeyBlock::new(
            self.spec.link,
            sequence,
            size_bits as usize / 8,
            keys.ids,
            keys.material,
        );
        self.set_failed(false, "").await?;
        self.set_up(true, "").await?;
        self.send(DeviceEvent::Keys(block)).await
    }

    /// The master end: poll, take keys, announce, keep them once the other end holds them.
    async fn master(mut self, peers: PeerLinks) {
        // Sequences only need to grow and not repeat across restarts: start from the clock.
        let mut sequence =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let params = self.params.clone();
        let mut tick = tokio::time::interval(params.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.master_round(&peers, &mut sequence).await.is_err() {
                return;
            }
        }
    }

    async fn master_round(&mut self, peers: &PeerLinks, sequence: &mut u64) -> Result<(), Stopped> {
        let params = self.params.clone();
        let status = match self.kme.status(&params.peer_sae_id).await {
            Ok(status) => status,
            Err(e) => {
                self.kme_failed(&e).await?;
                return self.measured().await;
            }
        };
        self.set_failed(false, "").await?;
        let size = params.key_size_bits;
        if size < status.min_key_size || size > status.max_key_size {
            let reason = format!(
                "key_size_bits {size} is outside what the KME serves ({} to {})",
                status.min_key_size, status.max_key_size
            );
            self.set_up(false, &reason).await?;
            return self.measured().await;
        }
        let available = status.stored_key_count.min(u64::from(status.max_key_per_request.max(1)));
        let number = available.min(u64::from(params.keys_per_request)) as u32;
        if number > 0 {
            match self.kme.enc_keys(&params.peer_sae_id, number, size).await {
                Ok(keys) => {
                    *sequence += 1;
                    let request = DeviceKeysRequest {
                        link_id: self.spec.link.to_string(),
                        master_node_id: self.spec.local_node.to_string(),
                        sequence: *sequence,
                        key_size_bits: size,
                        key_ids: keys.ids.iter().map(|id| id.to_string()).collect(),
                    };
                    match peers.clients.device_keys(self.spec.remote_node, request).await {
                        Ok(received) if received as usize == keys.ids.len() => {
                            self.deliver(*sequence, size, keys).await?;
                        }
                        Ok(received) => {
                            tracing::warn!(link = %self.spec.link, received, sent = keys.ids.len(), "the other end holds a different number of keys; discarding the block");
                        }
                        Err(reason) => {
                            tracing::warn!(link = %self.spec.link, keys = keys.ids.len(), %reason, "the other end could not fetch the keys; discarding them");
                            self.set_up(
                                false,
                                &format!("the other end could not fetch the keys: {reason}"),
                            )
                            .await?;
                        }
                    }
                }
                Err(e) => self.kme_failed(&e).await?,
            }
        }
        self.measured().await
    }

    /// The slave end: fetch what the master end announces.
    async fn slave(mut self, peers: PeerLinks) {
        let (mut announcements, _attached) =
            peers.hub.attach(self.spec.link, self.spec.remote_node);
        // Without announcements for this long, the link is considered down.
        let silence = (self.params.poll_interval * 10).max(Duration::from_secs(5));
        let mut measure =
            tokio::time::interval(self.params.poll_interval.max(Duration::from_secs(1)));
        let mut last = Instant::now();
        loop {
            tokio::select! {
                next = announcements.recv() => {
                    let Some(announcement) = next else { return };
                    last = Instant::now();
                    if self.fetch(announcement).await.is_err() {
                        return;
                    }
                }
                _ = measure.tick() => {
                    let quiet = last.elapsed() > silence;
                    if quiet && self.set_up(false, &format!("no keys announced by the other end for {silence:?}")).await.is_err() {
                        return;
                    }
                    if self.measured().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn fetch(&mut self, announcement: Announcement) -> Result<(), Stopped> {
        let Announcement { master, sequence, key_size_bits, key_ids, reply } = announcement;
        if master != self.spec.remote_node {
            let _ = reply.send(Err(FetchRefusal::OtherEnd {
                link: self.spec.link,
                remote: self.spec.remote_node,
                master,
            }));
            return Ok(());
        }
        if key_size_bits != self.params.key_size_bits {
            let _ = reply.send(Err(FetchRefusal::KeySize {
                asked: key_size_bits,
                here: self.params.key_size_bits,
            }));
            return Ok(());
        }
        let params = self.params.clone();
        match self.kme.dec_keys(&params.peer_sae_id, &key_ids, key_size_bits).await {
            Ok(keys) => {
                let count = keys.ids.len() as u32;
                self.deliver(sequence, key_size_bits, keys).await?;
                let _ = reply.send(Ok(count));
            }
            Err(e) => {
                let e = Arc::new(e);
                let _ = reply.send(Err(FetchRefusal::Kme(e.clone())));
                self.kme_failed(&e).await?;
            }
        }
        Ok(())
    }
}
