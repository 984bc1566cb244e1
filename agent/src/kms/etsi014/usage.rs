//! What the 014 server delivered to each application: key bits (for the 015 `app_statistics`),
//! and the `enc_keys` requests it answered, with their outcome and latency (for operators and
//! the controller's monitoring, on management `/v1/kms/applications`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

use crate::kms::hooks::AppUsage;

struct AppRecord {
    bits: u64,
    requests: u64,
    failed: u64,
    keys: u64,
    /// Microseconds, of answered requests.
    latency: Histogram<u64>,
}

impl Default for AppRecord {
    fn default() -> Self {
        AppRecord {
            bits: 0,
            requests: 0,
            failed: 0,
            keys: 0,
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
        }
    }
}

/// One application's delivery figures.
#[derive(Clone, Debug, Serialize)]
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
}

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

    /// Records an `enc_keys` request of `app`: its latency and how many keys it got (`None`:
    /// refused).
    pub(super) fn record(&self, app: Uuid, latency: Duration, keys: Option<usize>) {
        self.with(app, |r| {
            r.requests += 1;
            match keys {
                Some(k) => {
                    r.keys += k as u64;
                    let _ = r.latency.record((latency.as_micros() as u64).max(1));
                }
                None => r.failed += 1,
            }
        });
    }

    /// The figures of every application seen.
    pub fn report(&self) -> Vec<AppDelivery> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_outcomes_and_latency_are_counted_per_application() {
        let usage = Usage::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        usage.record(a, Duration::from_millis(2), Some(4));
        usage.record(a, Duration::from_millis(4), Some(1));
        usage.record(a, Duration::from_millis(1), None);
        usage.add(a, 1280);
        let report = usage.report();
        assert_eq!(report.len(), 1);
        let r = &report[0];
        assert_eq!(
            (r.requests, r.delivered, r.failed, r.keys, r.consumed_bits),
            (3, 2, 1, 5, 1280)
        );
        assert!((r.success_ratio - 2.0 / 3.0).abs() < 1e-9);
        assert!(r.latency_p50_ms >= 1.99 && r.latency_p99_ms >= 3.99, "{r:?}");
        assert_eq!(usage.consumed_bits(b), 0);
    }
}
