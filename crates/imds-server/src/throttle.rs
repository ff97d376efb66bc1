//! Per-instance request rate limits, as EC2 throttles IMDS queries "on a per-instance basis"
//! (EC2 User Guide, "Query throttling").
//!
//! Each instance has its own token bucket (GCRA, `governor`), made on its first request, so a
//! noisy instance uses up only its own allowance. A check is one atomic compare-and-swap; no
//! lock is taken. Requests over the limit are answered `429 Too Many Requests`, the status real
//! IMDS has been seen to answer when throttling (see docs/behaviour.md).

use std::{collections::HashMap, num::NonZeroU32};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// One instance's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: NonZeroU32,
    /// Requests allowed at once after a quiet spell.
    pub burst: NonZeroU32,
}

impl Rate {
    fn limiter(self) -> DefaultDirectRateLimiter {
        RateLimiter::direct(Quota::per_second(self.per_second).allow_burst(self.burst))
    }
}

/// The configured limits: a default for every instance and overrides by instance id.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    /// The limit of instances without an override; `None`: unlimited.
    pub default: Option<Rate>,
    /// Limits by instance id; `None` in the map: that instance is unlimited.
    pub instances: HashMap<String, Option<Rate>>,
    /// Which limits these are: 0 at start, one more each time a config reload changes them.
    /// An instance whose bucket was made under another generation gets a new one.
    pub generation: u64,
}

impl Throttle {
    /// No limits at all.
    pub fn unlimited() -> Throttle {
        Throttle::default()
    }

    /// The limiter of a new bucket for `instance_id`, `None` when it is unlimited.
    pub fn limiter_for(&self, instance_id: &str) -> Option<DefaultDirectRateLimiter> {
        self.instances
            .get(instance_id)
            .copied()
            .unwrap_or(self.default)
            .map(Rate::limiter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u32, burst: u32) -> Option<Rate> {
        Some(Rate {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    #[test]
    fn buckets_are_per_instance_and_overrides_apply() {
        let throttle = Throttle {
            default: rate(1, 3),
            instances: HashMap::from([
                ("i-big".to_owned(), rate(1, 10)),
                ("i-free".to_owned(), None),
            ]),
            generation: 0,
        };
        let admitted = |limiter: &DefaultDirectRateLimiter| {
            (0..20).filter(|_| limiter.check().is_ok()).count()
        };
        let noisy = throttle.limiter_for("i-a").unwrap();
        assert_eq!(admitted(&noisy), 3);
        // Another instance has its own full bucket.
        let other = throttle.limiter_for("i-b").unwrap();
        assert_eq!(admitted(&other), 3);
        assert_eq!(admitted(&throttle.limiter_for("i-big").unwrap()), 10);
        assert!(throttle.limiter_for("i-free").is_none());
        assert!(Throttle::unlimited().limiter_for("i-a").is_none());
    }
}
