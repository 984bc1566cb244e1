//! Fair use of the key stores: every SAE pair (an application, or a static pair of the
//! configuration) has a quota. It may take keys at most at its rate (the application's
//! `max_bandwidth`, else `kms.default_max_bandwidth_bps`; a token bucket holding one second of
//! it), and the keys that the other pairs of the same link are guaranteed (their
//! `min_bandwidth`, else `kms.default_min_bandwidth_bps`, for [`GUARANTEE_SECONDS`]) are not
//! handed to it: the store checks that guarantee together with the take. So one SAE cannot
//! drain a store shared with others. Requests beyond either are refused with 503 and say why.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

use crate::config::SaePair;
use crate::kms::Application;

/// Seconds of their guaranteed rate kept in a store for the other SAE pairs of its link.
pub const GUARANTEE_SECONDS: u64 = 5;

/// Whose quota a request uses: an application's, or a static pair's (its index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKey {
    /// A 015 application.
    App(Uuid),
    /// `kms.pairs[i]`.
    Pair(usize),
}

/// The rates of pairs whose application sets none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultRates {
    /// Most a pair may take, bit/s.
    pub max_bandwidth_bps: u32,
    /// What a pair is guaranteed, bit/s.
    pub min_bandwidth_bps: u32,
}

/// Keys of `key_bits` kept on `link` for the SAE pairs other than `requester` that it serves:
/// their guaranteed rate for [`GUARANTEE_SECONDS`]. Static pairs count unless an application
/// serves the same SAEs (the application is then used instead).
pub fn guaranteed_to_others(
    apps: &[Application],
    pairs: &[SaePair],
    link: Uuid,
    requester: QuotaKey,
    key_bits: u32,
    defaults: DefaultRates,
) -> usize {
    let app_bits: u64 = apps
        .iter()
        .filter(|a| QuotaKey::App(a.id) != requester && a.backing_links.contains(&link))
        .map(|a| u64::from(a.min_bandwidth.unwrap_or(defaults.min_bandwidth_bps)))
        .sum();
    let served_by_app = |p: &SaePair| {
        apps.iter().any(|a| {
            a.server_sae.as_deref() == Some(p.local_sae.as_str())
                && a.client_saes.contains(&p.remote_sae)
        })
    };
    let pair_bits: u64 = pairs
        .iter()
        .enumerate()
        .filter(|(i, p)| QuotaKey::Pair(*i) != requester && p.link == link && !served_by_app(p))
        .map(|_| u64::from(defaults.min_bandwidth_bps))
        .sum();
    ((app_bits + pair_bits) * GUARANTEE_SECONDS).div_ceil(u64::from(key_bits.max(8))) as usize
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Why a request is over its pair's rate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RateRefusal {
    /// More than the pair may take in one second, at once.
    #[error(
        "the request asks for {bits} bits, more than the application may take in one second (its max_bandwidth: {rate_bps} bit/s)"
    )]
    TooLarge {
        /// Bits asked.
        bits: u64,
        /// The pair's rate, bit/s.
        rate_bps: u32,
    },
    /// The pair took its allowance; it may ask again after `wait_ms`.
    #[error(
        "rate limit: the application may take {rate_bps} bit/s (its max_bandwidth); retry in {wait_ms} ms"
    )]
    Limited {
        /// The pair's rate, bit/s.
        rate_bps: u32,
        /// When the bits asked are allowed again, ms.
        wait_ms: u64,
    },
}

/// Token buckets per SAE pair.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<QuotaKey, Bucket>>,
}

impl RateLimiter {
    /// Takes `bits` from pair `app`'s allowance of `rate` bit/s, or says why not.
    pub fn admit(&self, app: QuotaKey, rate: u32, bits: u64) -> Result<(), RateRefusal> {
        let (rate_bps, bits_asked) = (rate, bits);
        let rate = f64::from(rate);
        let bits = bits as f64;
        if bits > rate {
            return Err(RateRefusal::TooLarge { bits: bits_asked, rate_bps });
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(app).or_insert(Bucket { tokens: rate, last: Instant::now() });
        bucket.tokens = (bucket.tokens + bucket.last.elapsed().as_secs_f64() * rate).min(rate);
        bucket.last = Instant::now();
        if bucket.tokens < bits {
            let wait_ms = ((bits - bucket.tokens) / rate * 1000.0).ceil() as u64;
            return Err(RateRefusal::Limited { rate_bps, wait_ms });
        }
        bucket.tokens -= bits;
        Ok(())
    }

    /// Gives back `bits` a refused delivery did not use.
    pub fn refund(&self, app: QuotaKey, rate: u32, bits: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get_mut(&app) {
            bucket.tokens = (bucket.tokens + bits as f64).min(f64::from(rate));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: u128, link: Uuid, min: Option<u32>) -> Application {
        Application {
            id: Uuid::from_u128(id),
            server_sae: Some(format!("m{id}")),
            client_saes: vec![format!("s{id}")],
            backing_links: vec![link],
            local_node: None,
            remote_node: None,
            max_bandwidth: None,
            min_bandwidth: min,
            ttl: None,
            priority: 0,
            expiration_time: None,
        }
    }

    const DEFAULTS: DefaultRates =
        DefaultRates { max_bandwidth_bps: 1_000_000, min_bandwidth_bps: 256 };

    #[test]
    fn other_pairs_keep_their_guarantee() {
        let (link, other_link) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let apps = [
            app(1, link, Some(1024)),
            app(2, link, Some(512)),
            app(3, link, None),
            app(4, other_link, Some(1_000_000)),
        ];
        let pairs = [
            SaePair { local_sae: "x".into(), remote_sae: "y".into(), link },
            // Served by application 1: not counted twice.
            SaePair { local_sae: "m1".into(), remote_sae: "s1".into(), link },
        ];
        let keep = |who, link| guaranteed_to_others(&apps, &pairs, link, who, 256, DEFAULTS);
        // For app 3: apps 1 and 2 keep (1024 + 512) bit/s, static pair x-y the default 256:
        // 1792 bit/s x 5 s = 8960 bits = 35 keys of 256.
        assert_eq!(keep(QuotaKey::App(Uuid::from_u128(3)), link), 35);
        // For app 1: app 2's 512, app 3's default 256, pair x-y's 256: 1024 x 5 / 256 = 20.
        assert_eq!(keep(QuotaKey::App(Uuid::from_u128(1)), link), 20);
        // For the static pair: every application of the link.
        assert_eq!(keep(QuotaKey::Pair(0), link), (1024 + 512 + 256) * 5 / 256);
        assert_eq!(keep(QuotaKey::Pair(0), other_link), 19_532);
    }

    #[test]
    fn a_pair_gets_its_rate_and_no_more() {
        let limiter = RateLimiter::default();
        let (app, other) = (QuotaKey::App(Uuid::from_u128(1)), QuotaKey::Pair(0));
        assert!(limiter.admit(app, 1024, 768).is_ok());
        let refused = limiter.admit(app, 1024, 512).unwrap_err();
        assert!(matches!(refused, RateRefusal::Limited { rate_bps: 1024, .. }), "{refused}");
        assert!(refused.to_string().contains("retry in"), "{refused}");
        assert!(limiter.admit(other, 1024, 1024).is_ok(), "pairs have their own buckets");
        limiter.refund(app, 1024, 768);
        assert!(limiter.admit(app, 1024, 1024).is_ok());
        assert!(
            limiter
                .admit(app, 100, 256)
                .unwrap_err()
                .to_string()
                .contains("more than the application may take")
        );
    }
}
