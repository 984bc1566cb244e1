//! What the relay engine reports per virtual link it sources: relays committed, keys, failures,
//! and the end-to-end latency of a relay (fresh keys generated, padded hop by hop to the far
//! end, stored there, committed at both ends), for operators (`/v1/kms/relays`) and for the
//! relay benchmark.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use uuid::Uuid;

/// Counters and latencies of one virtual link.
struct LinkRecord {
    relays: u64,
    keys: u64,
    failures: u64,
    last_error: Option<String>,
    /// Microseconds.
    latency: Histogram<u64>,
}

pub use qkdn_proto::node_api::RelayFigures;

/// The relay figures of a node.
#[derive(Default)]
pub struct RelayStats {
    links: Mutex<HashMap<Uuid, LinkRecord>>,
}

impl RelayStats {
    fn with<R>(&self, link: Uuid, f: impl FnOnce(&mut LinkRecord) -> R) -> R {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let record = links.entry(link).or_insert_with(|| LinkRecord {
            relays: 0,
            keys: 0,
            failures: 0,
            last_error: None,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        });
        f(record)
    }

    /// A relay of `keys` keys over `link` committed after `took`.
    pub fn committed(&self, link: Uuid, keys: usize, took: Duration) {
        self.with(link, |r| {
            r.relays += 1;
            r.keys += keys as u64;
            r.latency.saturating_record(took.as_micros().max(1) as u64);
        });
    }

    /// A relay over `link` that failed.
    pub fn failed(&self, link: Uuid, error: &str) {
        self.with(link, |r| {
            r.failures += 1;
            r.last_error = Some(error.to_owned());
        });
    }

    /// Starts the figures afresh (like clearing an interface's counters).
    pub fn clear(&self) {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Figures of every link, in link order.
    pub fn report(&self) -> Vec<RelayFigures> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |us: u64| us as f64 / 1000.0;
        let mut all: Vec<RelayFigures> = links
            .iter()
            .map(|(link, r)| RelayFigures {
                link: *link,
                relays: r.relays,
                keys: r.keys,
                failures: r.failures,
                last_error: r.last_error.clone(),
                latency_p50_ms: ms(r.latency.value_at_quantile(0.5)),
                latency_p99_ms: ms(r.latency.value_at_quantile(0.99)),
                latency_max_ms: ms(r.latency.max()),
            })
            .collect();
        all.sort_by_key(|r| r.link);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_and_counts_are_reported_per_link() {
        let stats = RelayStats::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        for ms in 1..=100u64 {
            stats.committed(a, 64, Duration::from_millis(ms));
        }
        stats.failed(b, "no pads");
        let report = stats.report();
        assert_eq!((report[0].relays, report[0].keys), (100, 6400));
        assert!((report[0].latency_p50_ms - 50.0).abs() < 0.1, "{:?}", report[0]);
        assert!((report[0].latency_p99_ms - 99.0).abs() < 0.1, "{:?}", report[0]);
        assert_eq!((report[1].relays, report[1].failures), (0, 1));
        assert_eq!(report[1].last_error.as_deref(), Some("no pads"));
        stats.clear();
        assert!(stats.report().is_empty());
    }
}
