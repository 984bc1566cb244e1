//! Fair use of the key stores, from the applications' QoS: each application may take keys at
//! most at its `max_bandwidth` (a token bucket holding one second of it), and the keys that the
//! other applications of the same link are guaranteed (their `min_bandwidth` for
//! [`GUARANTEE_SECONDS`]) are not handed to it, so that one SAE cannot drain a store shared with
//! others. Requests beyond either are refused with 503 and say why.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

use crate::kms::Application;

/// Seconds of their `min_bandwidth` kept in a store for the other applications of its link.
pub const GUARANTEE_SECONDS: u64 = 5;

/// Keys of `key_bits` kept on `link` for the applications other than `requester` that it backs:
/// their `min_bandwidth` for [`GUARANTEE_SECONDS`].
pub fn guaranteed_to_others(
    apps: &[Application],
    link: Uuid,
    requester: Option<Uuid>,
    key_bits: u32,
) -> usize {
    let bits: u64 = apps
        .iter()
        .filter(|a| Some(a.id) != requester && a.backing_links.contains(&link))
        .filter_map(|a| a.min_bandwidth)
        .map(|b| u64::from(b) * GUARANTEE_SECONDS)
        .sum();
    bits.div_ceil(u64::from(key_bits.max(8))) as usize
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per application.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

impl RateLimiter {
    /// Takes `bits` from application `app`'s allowance of `rate` bit/s, or says why not.
    pub fn admit(&self, app: Uuid, rate: u32, bits: u64) -> Result<(), String> {
        let rate = f64::from(rate);
        let bits = bits as f64;
        if bits > rate {
            return Err(format!(
                "the request asks for {bits} bits, more than the application may take in one second (app_qos max_bandwidth {rate} bit/s)"
            ));
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(app).or_insert(Bucket { tokens: rate, last: Instant::now() });
        bucket.tokens = (bucket.tokens + bucket.last.elapsed().as_secs_f64() * rate).min(rate);
        bucket.last = Instant::now();
        if bucket.tokens < bits {
            let wait_ms = ((bits - bucket.tokens) / rate * 1000.0).ceil();
            return Err(format!(
                "rate limit: the application may take {rate} bit/s (app_qos max_bandwidth); retry in {wait_ms} ms"
            ));
        }
        bucket.tokens -= bits;
        Ok(())
    }

    /// Gives back `bits` a refused delivery did not use.
    pub fn refund(&self, app: Uuid, rate: u32, bits: u64) {
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
            server_sae: None,
            client_saes: Vec::new(),
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

    #[test]
    fn other_applications_keep_their_minimum() {
        let (link, other_link) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let apps = [
            app(1, link, Some(1024)),
            app(2, link, Some(512)),
            app(3, link, None),
            app(4, other_link, Some(1_000_000)),
        ];
        // For app 3: apps 1 and 2 keep (1024 + 512) bit/s x 5 s = 7680 bits = 30 keys of 256.
        assert_eq!(guaranteed_to_others(&apps, link, Some(Uuid::from_u128(3)), 256), 30);
        // For app 1: only app 2's 2560 bits, 10 keys; a static pair (no app) leaves both.
        assert_eq!(guaranteed_to_others(&apps, link, Some(Uuid::from_u128(1)), 256), 10);
        assert_eq!(guaranteed_to_others(&apps, link, None, 256), 30);
        assert_eq!(guaranteed_to_others(&apps, other_link, None, 256), 19_532);
    }

    #[test]
    fn an_application_gets_its_rate_and_no_more() {
        let limiter = RateLimiter::default();
        let (app, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(limiter.admit(app, 1024, 768).is_ok());
        let refused = limiter.admit(app, 1024, 512).unwrap_err();
        assert!(refused.contains("retry in"), "{refused}");
        assert!(limiter.admit(other, 1024, 1024).is_ok(), "applications have their own buckets");
        limiter.refund(app, 1024, 768);
        assert!(limiter.admit(app, 1024, 1024).is_ok());
        assert!(
            limiter
                .admit(app, 100, 256)
                .unwrap_err()
                .contains("more than the application may take")
        );
    }
}
