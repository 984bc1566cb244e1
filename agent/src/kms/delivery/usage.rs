//! What the 014 server delivered to each application: key bits (for the 015 `app_statistics`),
//! the `enc_keys` requests it answered, with their outcome and latency, and the `dec_keys`
//! requests of its slaves (for operators and the controller's monitoring, on the agent's API
//! `/v1/kms/applications`); and whether the application is starved: refused for lack of key
//! material since some time, with no delivery in between (the node shows it in the
//! application's status and raises the 015 alarm).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use uuid::Uuid;

use crate::kms::hooks::AppUsage;

/// A refusal for lack of key material older than this no longer counts as the application
/// asking (it may have stopped).
const STILL_ASKING: Duration = Duration::from_secs(10);

/// How an `enc_keys` request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Keys handed out (how many).
    Delivered(usize),
    /// Refused: the store had not enough key material for the request.
    NoKeyMaterial,
    /// Refused for another reason (rate limit, the other end, the store).
    Refused,
}

struct AppRecord {
    bits: u64,
    requests: u64,
    failed: u64,
    keys: u64,
    fetch_requests: u64,
    fetch_failed: u64,
    fetched_keys: u64,
    /// Microseconds, of answered requests.
    latency: Histogram<u64>,
    /// The first refusal for lack of key material since the last delivery.
    starved_since: Option<Instant>,
    /// The latest refusal for lack of key material.
    last_starved: Option<Instant>,
}

impl Default for AppRecord {
    fn default() -> Self {
        AppRecord {
            bits: 0,
            requests: 0,
            failed: 0,
            keys: 0,
            fetch_requests: 0,
            fetch_failed: 0,
            fetched_keys: 0,
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            starved_since: None,
            last_starved: None,
        }
    }
}

pub use qkdn_proto::node_api::AppDelivery;

/// Per-application usage of the 014 server.
#[derive(Default)]
pub struct Usage {
    apps: Mutex<HashMap<Uuid, AppRecord>>,
}

impl Usage {
    fn with<R>(&self, app: Uuid, f: impl FnOnce(&mut AppRecord) -> R) -> R {
        f(self.apps.lock().unwrap_or_else(|p| p.into_inner()).entry(app).or_default())
    }

    /// Counts `bits` delivered to `app`.
    pub(super) fn add(&self, app: Uuid, bits: u64) {
        self.with(app, |r| r.bits += bits);
    }

    /// Records an `enc_keys` request of `app`: its latency and how it ended.
    pub(super) fn record(&self, app: Uuid, latency: Duration, outcome: Outcome) {
        let now = Instant::now();
        self.with(app, |r| {
            r.requests += 1;
            match outcome {
                Outcome::Delivered(k) => {
                    r.keys += k as u64;
                    let _ = r.latency.record((latency.as_micros() as u64).max(1));
                    r.starved_since = None;
                }
                Outcome::NoKeyMaterial => {
                    r.failed += 1;
                    r.starved_since.get_or_insert(now);
                    r.last_starved = Some(now);
                }
                Outcome::Refused => r.failed += 1,
            }
        });
    }

    /// Records a `dec_keys` request for `app`: how many keys it fetched (`None`: refused).
    pub(super) fn record_fetch(&self, app: Uuid, keys: Option<usize>) {
        self.with(app, |r| {
            r.fetch_requests += 1;
            match keys {
                Some(k) => r.fetched_keys += k as u64,
                None => r.fetch_failed += 1,
            }
        });
    }

    fn starved(r: &AppRecord, now: Instant) -> Option<Duration> {
        let since = r.starved_since?;
        let asking = r.last_starved.is_some_and(|t| now.duration_since(t) < STILL_ASKING);
        asking.then(|| now.duration_since(since))
    }

    /// The figures of every application seen.
    pub fn report(&self) -> Vec<AppDelivery> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut out: Vec<AppDelivery> = apps
            .iter()
            .map(|(app, r)| {
                let delivered = r.requests - r.failed;
                AppDelivery {
                    app: *app,
                    consumed_bits: r.bits,
                    requests: r.requests,
                    delivered,
                    failed: r.failed,
                    success_ratio: if r.requests == 0 {
                        1.0
                    } else {
                        delivered as f64 / r.requests as f64
                    },
                    keys: r.keys,
                    latency_p50_ms: r.latency.value_at_quantile(0.5) as f64 / 1e3,
                    latency_p99_ms: r.latency.value_at_quantile(0.99) as f64 / 1e3,
                    fetch_requests: r.fetch_requests,
                    fetch_failed: r.fetch_failed,
                    fetched_keys: r.fetched_keys,
                    starved_s: Usage::starved(r, now).map(|d| d.as_secs_f64()),
                }
            })
            .collect();
        out.sort_by_key(|a| a.app);
        out
    }
}

impl AppUsage for Usage {
    fn consumed_bits(&self, app: Uuid) -> u64 {
        self.with(app, |r| r.bits)
    }

    fn starved_for(&self, app: Uuid) -> Option<Duration> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.get(&app).and_then(|r| Usage::starved(r, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_outcomes_and_latency_are_counted_per_application() {
        let usage = Usage::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        usage.record(a, Duration::from_millis(2), Outcome::Delivered(4));
        usage.record(a, Duration::from_millis(4), Outcome::Delivered(1));
        usage.record(a, Duration::from_millis(1), Outcome::Refused);
        usage.add(a, 1280);
        usage.record_fetch(b, Some(3));
        usage.record_fetch(b, None);
        let report = usage.report();
        assert_eq!(report.len(), 2);
        assert_eq!(
            (report[1].fetch_requests, report[1].fetch_failed, report[1].fetched_keys),
            (2, 1, 3),
            "the slave side counts its fetches"
        );
        let r = &report[0];
        assert_eq!(
            (r.requests, r.delivered, r.failed, r.keys, r.consumed_bits),
            (3, 2, 1, 5, 1280)
        );
        assert!((r.success_ratio - 2.0 / 3.0).abs() < 1e-9);
        assert!(r.latency_p50_ms >= 1.99 && r.latency_p99_ms >= 3.99, "{r:?}");
        assert_eq!(usage.consumed_bits(b), 0);
        // Starved: refused for lack of keys since the first such refusal, until a delivery.
        assert_eq!(usage.starved_for(a), None, "other refusals do not starve");
        usage.record(a, Duration::from_millis(1), Outcome::NoKeyMaterial);
        std::thread::sleep(Duration::from_millis(20));
        usage.record(a, Duration::from_millis(1), Outcome::NoKeyMaterial);
        assert!(usage.starved_for(a).is_some_and(|d| d >= Duration::from_millis(20)));
        assert!(usage.report()[0].starved_s.is_some());
        usage.record(a, Duration::from_millis(1), Outcome::Delivered(1));
        assert_eq!(usage.starved_for(a), None);
    }
}
