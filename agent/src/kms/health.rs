//! Watching the key stores: fill and consumption rates (bit/s, smoothed), the time left before
//! a store runs dry, and the low and high fill thresholds. Crossing a threshold raises an ETSI
//! GS QKD 015 `alarm` on the link; returning past it (with a margin, so a store that hovers at a
//! threshold does not flap) sends an `event` that clears it.
//!
//! The high threshold watches the whole store (both ends' halves and the deliveries waiting for
//! slaves) against its capacity: at the capacity, the oldest keys of the larger half make room
//! for new ones. The low threshold
//! watches what this end may still hand out (its half of the stream) against its half of the
//! capacity. The low alarm is armed only once a store has been above the low threshold: a
//! store that is still filling after start-up is not an incident, one that drains is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::store::StoreCounters;
use crate::notify::{self, Severity, Subject};

/// Weight of the newest second in the smoothed rates.
const SMOOTHING: f64 = 0.3;
/// Net drain below which a store counts as not draining, bit/s (smoothed rates decay towards
/// zero without reaching it; a drain of a fraction of a bit per second empties nothing).
const MIN_DRAIN_BPS: f64 = 1.0;

/// Where the thresholds lie, in keys.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Keys a store holds at most.
    pub capacity: usize,
    /// Share of this end's half of the capacity below which a store is low.
    pub low: f64,
    /// Share of the capacity above which a store is nearly full.
    pub high: f64,
}

impl Thresholds {
    fn low_keys(&self) -> usize {
        (self.capacity as f64 / 2.0 * self.low) as usize
    }

    fn high_keys(&self) -> usize {
        (self.capacity as f64 * self.high) as usize
    }

    /// Keys past a threshold before its alarm clears.
    fn margin(&self) -> usize {
        (self.capacity / 100).max(1)
    }
}

pub use qkdn_proto::node_api::{FillAlarm, StoreHealth};

/// What the monitor keeps of one store: its health and what the next observation needs.
#[derive(Debug, Default)]
struct Tracked {
    health: StoreHealth,
    /// The low alarm may be raised (the store was above the low threshold once).
    armed: bool,
    last_filled: u64,
    last_consumed: u64,
}

/// A threshold crossed: the notification to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Crossing {
    /// The link.
    pub link: Uuid,
    /// The threshold.
    pub alarm: FillAlarm,
    /// Raised (else cleared).
    pub raised: bool,
    /// What happened, for the notification's `message`.
    pub message: String,
}

impl Crossing {
    /// The 015 notification: `alarm` when raised (MAJOR when low: applications may be refused;
    /// MINOR when high), `event` when cleared; `status` is the link's `qkdl_status` identity.
    pub fn notification(&self, status: &'static str) -> serde_json::Value {
        let subject = Subject::Link(self.link, status);
        match (self.raised, self.alarm) {
            (true, FillAlarm::Low) => notify::alarm(&subject, &self.message, Severity::Major),
            (true, FillAlarm::High) => notify::alarm(&subject, &self.message, Severity::Minor),
            (false, _) => notify::event(&subject, &self.message, Severity::Minor),
        }
    }
}

/// The health of every store, by link, as the monitor last saw it.
pub type HealthView = watch::Receiver<Arc<HashMap<Uuid, StoreHealth>>>;

/// The monitor of a node's stores.
#[derive(Debug)]
pub struct StoreMonitor {
    thresholds: Thresholds,
    tracked: HashMap<Uuid, Tracked>,
}

impl StoreMonitor {
    /// A monitor with nothing observed yet.
    pub fn new(thresholds: Thresholds) -> Self {
        StoreMonitor { thresholds, tracked: HashMap::new() }
    }

    /// The health of every store observed.
    pub fn health(&self) -> HashMap<Uuid, StoreHealth> {
        self.tracked.iter().map(|(link, t)| (*link, t.health.clone())).collect()
    }

    /// Takes in the stores' counters `elapsed` after the previous observation; returns the
    /// thresholds crossed.
    pub fn observe(&mut self, stats: &[StoreCounters], elapsed: Duration) -> Vec<Crossing> {
        let t = self.thresholds;
        let seconds = elapsed.as_secs_f64().max(1e-3);
        let mut crossings = Vec::new();
        for s in stats {
            let first = !self.tracked.contains_key(&s.link);
            let Tracked { health: h, armed, last_filled, last_consumed } =
                self.tracked.entry(s.link).or_default();
            let bits = f64::from(s.key_bits);
            if !first {
                let fill = s.filled.saturating_sub(*last_filled) as f64 * bits / seconds;
                let used = s.consumed.saturating_sub(*last_consumed) as f64 * bits / seconds;
                h.fill_bps += SMOOTHING * (fill - h.fill_bps);
                h.consumption_bps += SMOOTHING * (used - h.consumption_bps);
            }
            *last_filled = s.filled;
            *last_consumed = s.consumed;
            h.fill_ratio = s.stored as f64 / t.capacity.max(1) as f64;
            let draining = h.consumption_bps - h.fill_bps;
            h.seconds_to_empty = (draining >= MIN_DRAIN_BPS && bits > 0.0)
                .then(|| s.stored as f64 * bits / draining);

            let free = s.free_owned;
            if free > t.low_keys() + t.margin() {
                *armed = true;
            }
            let was_low = h.alarms.contains(&FillAlarm::Low);
            let low = if was_low {
                free < t.low_keys() + t.margin()
            } else {
                *armed && free < t.low_keys()
            };
            let was_high = h.alarms.contains(&FillAlarm::High);
            let high = if was_high {
                s.stored + t.margin() > t.high_keys()
            } else {
                s.stored > t.high_keys()
            };
            if low != was_low {
                let message = if low {
                    format!(
                        "key store low: {free} keys left to hand out here, below {} ({:.1} % of \
                         this end's half of the capacity); applications may be refused",
                        t.low_keys(),
                        t.low * 100.0
                    )
                } else {
                    format!("key store no longer low: {free} keys to hand out here")
                };
                crossings.push(Crossing {
                    link: s.link,
                    alarm: FillAlarm::Low,
                    raised: low,
                    message,
                });
            }
            if high != was_high {
                let message = if high {
                    format!(
                        "key store nearly full: {} keys, above {} ({:.1} % of the capacity); at \
                         {} the oldest keys of the larger half make room for new ones",
                        s.stored,
                        t.high_keys(),
                        t.high * 100.0,
                        t.capacity
                    )
                } else {
                    format!("key store no longer nearly full: {} keys", s.stored)
                };
                crossings.push(Crossing {
                    link: s.link,
                    alarm: FillAlarm::High,
                    raised: high,
                    message,
                });
            }
            h.alarms = [(low, FillAlarm::Low), (high, FillAlarm::High)]
                .into_iter()
                .filter_map(|(on, a)| on.then_some(a))
                .collect();
        }
        crossings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(
        link: Uuid,
        stored: usize,
        free_owned: usize,
        filled: u64,
        consumed: u64,
    ) -> StoreCounters {
        StoreCounters {
            link,
            key_bits: 256,
            stored,
            free_owned,
            filled,
            consumed,
            ..StoreCounters::default()
        }
    }

    fn seen(c: &[Crossing]) -> Vec<(FillAlarm, bool)> {
        c.iter().map(|c| (c.alarm, c.raised)).collect()
    }

    #[test]
    fn thresholds_raise_and_clear_alarms_once_with_a_margin() {
        // Capacity 1000: high above 900 keys, low below 50 free keys (10 % of 500), margin 10.
        let link = Uuid::from_u128(7);
        let mut m = StoreMonitor::new(Thresholds { capacity: 1000, low: 0.1, high: 0.9 });
        let second = Duration::from_secs(1);
        // Filling from empty: no low alarm, it is not armed yet.
        assert!(m.observe(&[stats(link, 0, 0, 0, 0)], second).is_empty());
        assert!(m.observe(&[stats(link, 50, 25, 50, 0)], second).is_empty());
        assert!(m.observe(&[stats(link, 500, 250, 500, 0)], second).is_empty());
        // Nearly full.
        let c = m.observe(&[stats(link, 950, 475, 950, 0)], second);
        assert_eq!(seen(&c), [(FillAlarm::High, true)]);
        assert!(c[0].message.contains("above 900"), "{}", c[0].message);
        // Within the margin below the threshold: still high, nothing sent.
        assert!(m.observe(&[stats(link, 895, 420, 950, 55)], second).is_empty());
        let c = m.observe(&[stats(link, 880, 405, 950, 70)], second);
        assert_eq!(seen(&c), [(FillAlarm::High, false)]);
        // This end drains its half while the other half stays: low, and high again.
        let c = m.observe(&[stats(link, 920, 49, 950, 500)], second);
        assert_eq!(seen(&c), [(FillAlarm::Low, true), (FillAlarm::High, true)]);
        assert!(c[0].message.contains("below 50"), "{}", c[0].message);
        assert_eq!(m.health()[&link].alarms, [FillAlarm::Low, FillAlarm::High]);
        assert!(m.health()[&link].seconds_to_empty.is_some());
        // Hovering at the threshold does not flap.
        assert!(m.observe(&[stats(link, 920, 51, 952, 500)], second).is_empty());
        let c = m.observe(&[stats(link, 700, 100, 1001, 750)], second);
        assert_eq!(seen(&c), [(FillAlarm::Low, false), (FillAlarm::High, false)]);
        assert!(m.health()[&link].alarms.is_empty());
    }

    #[test]
    fn rates_follow_the_counters() {
        let link = Uuid::from_u128(8);
        let mut m = StoreMonitor::new(Thresholds { capacity: 1_000_000, low: 0.0, high: 1.0 });
        m.observe(&[stats(link, 0, 0, 0, 0)], Duration::from_secs(1));
        for i in 1..=30u64 {
            m.observe(&[stats(link, 0, 0, i * 100, i * 40)], Duration::from_secs(1));
        }
        let all = m.health();
        let h = &all[&link];
        assert!((h.fill_bps - 25_600.0).abs() < 1.0, "{}", h.fill_bps);
        assert!((h.consumption_bps - 10_240.0).abs() < 1.0, "{}", h.consumption_bps);
        assert_eq!(h.seconds_to_empty, None);
        // Draining, then consumption stops and the fill too: the smoothed rates decay towards
        // zero, and a store that drains by a fraction of a bit per second is not draining.
        for i in 31..=40u64 {
            m.observe(&[stats(link, 1000, 500, 3000 + i, 1200 + i * 100)], Duration::from_secs(1));
        }
        assert!(m.health()[&link].seconds_to_empty.is_some());
        for _ in 0..200 {
            m.observe(&[stats(link, 1000, 500, 3040, 5200)], Duration::from_secs(1));
        }
        assert_eq!(m.health()[&link].seconds_to_empty, None, "{:?}", m.health()[&link]);
    }

    #[test]
    fn notifications_are_alarms_then_an_event() {
        let link = Uuid::from_u128(9);
        let raised = Crossing { link, alarm: FillAlarm::Low, raised: true, message: "low".into() };
        let n = raised.notification("ACTIVE");
        assert_eq!(n["etsi-qkd-sdn-node:alarm"]["link"]["severity"], "etsi-qkd-node-types:MAJOR");
        let cleared = Crossing { raised: false, ..raised };
        assert!(cleared.notification("ACTIVE").get("etsi-qkd-sdn-node:event").is_some());
    }
}
