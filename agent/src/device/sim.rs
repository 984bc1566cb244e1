//! A simulated QKD device pair that behaves like hardware, without the two ends talking.
//!
//! Simulated time runs from a shared epoch at a shared scale (so tests can run a day in a
//! minute) and is cut into slots. Everything about slot `s` of a link is a pure function of the
//! network secret, the link id, the link's physics and the scripted events: the secret key rate
//! (from [`super::skr`], with a small deterministic fluctuation of the optical error), hence the
//! number of keys, and the keys and their IDs themselves (BLAKE3 keyed by a per-link secret
//! derived from the network secret and the link id). Both ends therefore produce the same key
//! blocks with the same IDs and sequence numbers. A device that starts late simply begins at the
//! current slot, as a real device joining a running link would.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::skr::{Bb84Device, decoy_bb84};
use super::{DeviceEvent, DriverError, KeyBlock, LinkSpec, LinkTask, Measurement, QkdDevice};
use crate::config::{SimDevice, SimEvent, SimEventKind, SimulatorConfig};

/// At most this many missed slots are produced after a stall; older ones are skipped.
const MAX_CATCH_UP: u64 = 16;

/// The simulated clock and script shared by the devices of a network.
#[derive(Debug)]
pub struct SimClock {
    secret: [u8; 32],
    epoch: SystemTime,
    scale: f64,
    slot: Duration,
    events: Vec<SimEvent>,
}

impl SimClock {
    /// From the `[simulator]` configuration.
    pub fn new(config: &SimulatorConfig) -> Result<SimClock, DriverError> {
        let hex = config.network_secret.as_deref().ok_or(DriverError::NoSecret)?;
        let mut secret = [0u8; 32];
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(DriverError::BadSecret);
        }
        for (i, byte) in secret.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| DriverError::BadSecret)?;
        }
        let epoch = match &config.epoch {
            Some(text) => humantime::parse_rfc3339_weak(text).map_err(DriverError::Epoch)?,
            None => UNIX_EPOCH,
        };
        let mut events = config.events.clone();
        events.sort_by_key(|e| e.at);
        Ok(SimClock { secret, epoch, scale: config.time_scale, slot: config.slot, events })
    }

    /// Simulated time since the epoch at wall-clock time `now`.
    fn sim_time(&self, now: SystemTime) -> Duration {
        now.duration_since(self.epoch).unwrap_or_default().mul_f64(self.scale)
    }

    /// The slot under way at `now`.
    fn slot_at(&self, now: SystemTime) -> u64 {
        (self.sim_time(now).as_nanos() / self.slot.as_nanos().max(1)) as u64
    }

    /// Wall-clock time at which `slot` begins.
    fn slot_start(&self, slot: u64) -> SystemTime {
        self.epoch + Duration::from_secs_f64(self.slot.as_secs_f64() * slot as f64 / self.scale)
    }

    /// The key secret of one link.
    fn link_secret(&self, link: Uuid) -> [u8; 32] {
        *blake3::Hasher::new_keyed(&self.secret)
            .update(b"qkdn-sim-link")
            .update(link.as_bytes())
            .finalize()
            .as_bytes()
    }

    /// The scripted state of `link` at simulated time `at`.
    fn script_state(&self, link: Uuid, at: Duration) -> Script {
        let mut state = Script::default();
        for e in self.events.iter().filter(|e| e.link == link && e.at <= at) {
            match e.kind {
                SimEventKind::Down => state.fibre_down = true,
                SimEventKind::Up => state.fibre_down = false,
                SimEventKind::Qber => state.misalignment = e.value,
                SimEventKind::DeviceFailure => state.device_failed = true,
                SimEventKind::DeviceRecovery => state.device_failed = false,
            }
        }
        state
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Script {
    fibre_down: bool,
    device_failed: bool,
    misalignment: Option<f64>,
}

/// A simulated QKD device behind one interface.
pub struct Simulator {
    interface: u32,
    params: SimDevice,
    clock: Arc<SimClock>,
}

impl Simulator {
    /// A device for `interface` with physical parameters `params`.
    pub fn new(
        interface: u32,
        params: &SimDevice,
        config: &SimulatorConfig,
    ) -> Result<Simulator, DriverError> {
        Ok(Simulator { interface, params: params.clone(), clock: Arc::new(SimClock::new(config)?) })
    }

    fn model(&self) -> Bb84Device {
        Bb84Device {
            pulse_rate_hz: self.params.pulse_rate_hz,
            mean_photon_number: self.params.mean_photon_number,
            detector_efficiency: self.params.detector_efficiency,
            dark_count_probability: self.params.dark_count_probability,
            error_correction_efficiency: self.params.error_correction_efficiency,
            abort_qber: self.params.abort_qber,
        }
    }
}

/// What one slot of one link produced.
#[derive(Debug)]
pub struct SlotOutput {
    /// Measured performance during the slot.
    pub measurement: Measurement,
    /// Why no key was produced, if none was.
    pub stopped: Option<String>,
    /// Whether the local device was failed.
    pub device_failed: bool,
    /// The keys.
    pub block: Option<KeyBlock>,
}

/// Computes slot `slot` of a link: a pure function of the clock, the device, the link and the
/// slot number (the heart of the simulator, shared by both ends).
pub fn compute_slot(
    clock: &SimClock,
    device: &Bb84Device,
    params: &SimDevice,
    spec: &LinkSpec,
    slot: u64,
) -> SlotOutput {
    let secret = clock.link_secret(spec.link);
    let at = clock.slot.mul_f64(slot as f64);
    let script = clock.script_state(spec.link, at);
    // A fluctuation of ±10 % of the optical error, the same at both ends.
    let noise =
        blake3::Hasher::new_keyed(&secret).update(b"noise").update(&slot.to_le_bytes()).finalize();
    let u = f64::from(u16::from_le_bytes([noise.as_bytes()[0], noise.as_bytes()[1]]))
        / f64::from(u16::MAX);
    let misalignment = script.misalignment.unwrap_or(params.misalignment_error) * (0.9 + 0.2 * u);
    let rate = decoy_bb84(device, spec.attenuation_db, misalignment);
    let measurement = Measurement {
        skr_bps: if script.fibre_down || script.device_failed { 0 } else { rate.skr_bps as u64 },
        qber: if script.fibre_down { 0.5 } else { rate.qber },
        snr_db: if script.fibre_down { 0.0 } else { rate.snr_db },
    };
    let stopped = if script.device_failed {
        Some("the local QKD device has failed".to_owned())
    } else if script.fibre_down {
        Some("no quantum signal: the fibre is down".to_owned())
    } else if rate.aborted {
        Some(format!("QBER {:.3} is above the abort threshold {:.3}", rate.qber, params.abort_qber))
    } else if rate.skr_bps < 1.0 {
        Some(format!("no secret key over {:.1} dB of channel attenuation", spec.attenuation_db))
    } else {
        None
    };
    let block = stopped.is_none().then(|| {
        let key_bits = f64::from(params.key_size_bits);
        let count = (rate.skr_bps * clock.slot.as_secs_f64() / key_bits).floor() as usize;
        let key_bytes = (params.key_size_bits / 8) as usize;
        // One keyed XOF stream per slot for the material and one for the IDs: both ends
        // compute the same bytes, and long outputs use BLAKE3's parallel compression.
        let mut material = Zeroizing::new(vec![0u8; count * key_bytes]);
        blake3::Hasher::new_keyed(&secret)
            .update(b"keys")
            .update(&slot.to_le_bytes())
            .finalize_xof()
            .fill(&mut material);
        let mut id_bytes = vec![0u8; count * 16];
        blake3::Hasher::new_keyed(&secret)
            .update(b"ids")
            .update(&slot.to_le_bytes())
            .finalize_xof()
            .fill(&mut id_bytes);
        let ids: Vec<Uuid> = id_bytes
            .chunks_exact(16)
            .map(|b| uuid::Builder::from_random_bytes(b.try_into().expect("16 bytes")).into_uuid())
            .collect();
        KeyBlock::new(spec.link, slot, key_bytes, ids, material)
    });
    SlotOutput { measurement, stopped, device_failed: script.device_failed, block }
}

impl QkdDevice for Simulator {
    fn driver(&self) -> &'static str {
        "simulator"
    }

    fn nominal_rate(&self, spec: &LinkSpec) -> Option<u64> {
        Some(
            decoy_bb84(&self.model(), spec.attenuation_db, self.params.misalignment_error).skr_bps
                as u64,
        )
    }

    fn run_link(&self, spec: LinkSpec, events: mpsc::Sender<DeviceEvent>) -> LinkTask {
        let clock = self.clock.clone();
        let params = self.params.clone();
        let model = self.model();
        let interface = self.interface;
        Box::pin(async move {
            let mut next = clock.slot_at(SystemTime::now());
            let mut producing: Option<bool> = None;
            let mut failed = false;
            loop {
                let current = clock.slot_at(SystemTime::now());
                if current < next {
                    let wait = clock
                        .slot_start(next)
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                    continue;
                }
                next = next.max(current.saturating_sub(MAX_CATCH_UP));
                while next <= current {
                    let out = compute_slot(&clock, &model, &params, &spec, next);
                    next += 1;
                    if out.device_failed != failed {
                        failed = out.device_failed;
                        let event = if failed {
                            DeviceEvent::DeviceFailed {
                                interface,
                                reason: "the simulated device failed (scripted)".into(),
                            }
                        } else {
                            DeviceEvent::DeviceRecovered { interface }
                        };
                        if events.send(event).await.is_err() {
                            return;
                        }
                    }
                    let up = out.stopped.is_none();
                    if producing != Some(up) {
                        producing = Some(up);
                        let event = match &out.stopped {
                            None => DeviceEvent::LinkUp { link: spec.link },
                            Some(reason) => {
                                DeviceEvent::LinkDown { link: spec.link, reason: reason.clone() }
                            }
                        };
                        if events.send(event).await.is_err() {
                            return;
                        }
                    }
                    if events
                        .send(DeviceEvent::Measured {
                            link: spec.link,
                            measurement: out.measurement,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if let Some(block) = out.block
                        && !block.is_empty()
                        && events.send(DeviceEvent::Keys(block)).await.is_err()
                    {
                        return;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(events: Vec<SimEvent>) -> SimulatorConfig {
        SimulatorConfig {
            network_secret: Some("11".repeat(32)),
            network_secret_file: None,
            epoch: Some("2026-01-01T00:00:00Z".into()),
            time_scale: 1.0,
            slot: Duration::from_secs(1),
            events,
        }
    }

    fn params() -> SimDevice {
        SimDevice {
            pulse_rate_hz: 1.0e9,
            mean_photon_number: 0.5,
            detector_efficiency: 0.1,
            dark_count_probability: 1.0e-6,
            misalignment_error: 0.01,
            error_correction_efficiency: 1.16,
            abort_qber: 0.11,
            key_size_bits: 256,
        }
    }

    fn spec(link: Uuid) -> LinkSpec {
        LinkSpec {
            link,
            local_node: Uuid::nil(),
            interface: 1,
            remote_node: Uuid::max(),
            attenuation_db: 5.0,
        }
    }

    #[test]
    fn both_ends_compute_the_same_keys_and_ids() {
        let link = Uuid::from_u128(7);
        let a = Simulator::new(1, &params(), &config(vec![])).unwrap();
        let b = Simulator::new(2, &params(), &config(vec![])).unwrap();
        let ka = compute_slot(&a.clock, &a.model(), &a.params, &spec(link), 42).block.unwrap();
        let kb = compute_slot(&b.clock, &b.model(), &b.params, &spec(link), 42).block.unwrap();
        assert!(ka.len() > 10_000, "about 3.7 Mbit/s in 256-bit keys");
        let (va, vb): (Vec<_>, Vec<_>) = (ka.keys().collect(), kb.keys().collect());
        assert_eq!(va, vb);
        // Another slot, another link: other keys.
        let other = compute_slot(&a.clock, &a.model(), &a.params, &spec(link), 43).block.unwrap();
        assert_ne!(other.keys().next(), ka.keys().next());
        let other_link =
            compute_slot(&a.clock, &a.model(), &a.params, &spec(Uuid::from_u128(8)), 42)
                .block
                .unwrap();
        assert_ne!(other_link.keys().next(), ka.keys().next());
    }

    #[test]
    fn scripted_events_stop_and_restart_the_keys() {
        let link = Uuid::from_u128(7);
        let events = vec![
            SimEvent { link, at: Duration::from_secs(10), kind: SimEventKind::Down, value: None },
            SimEvent { link, at: Duration::from_secs(20), kind: SimEventKind::Up, value: None },
            SimEvent {
                link,
                at: Duration::from_secs(30),
                kind: SimEventKind::Qber,
                value: Some(0.15),
            },
        ];
        let sim = Simulator::new(1, &params(), &config(events)).unwrap();
        let at = |slot| compute_slot(&sim.clock, &sim.model(), &sim.params, &spec(link), slot);
        assert!(at(5).stopped.is_none());
        assert!(at(12).stopped.as_deref().unwrap().contains("fibre"));
        assert_eq!(at(12).measurement.skr_bps, 0);
        assert!(at(25).stopped.is_none());
        let high = at(35);
        assert!(high.stopped.as_deref().unwrap().contains("abort threshold"), "{high:?}");
        assert!(high.measurement.qber > 0.11);
    }
}
