//! Fair use of the key stores: each application may take keys at most at its QoS
//! `max_bandwidth` (a token bucket holding one second of it), so that one SAE cannot drain a
//! store shared with others. Requests beyond it are refused with 503 and say when to retry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

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
