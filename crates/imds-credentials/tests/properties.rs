//! Property tests of credential refresh scheduling (`refresh_time`, `until`).
//!
//! For credentials obtained at `obtained` that expire after a lifetime `L > 0`, the refresh is
//! scheduled
//! - in the second half of the lifetime at the earliest, less the jitter: never sooner than
//!   `obtained + 2L/5`, so a short lifetime cannot make the cache refresh in a loop;
//! - at least `min(5 min, L/2)` before expiry: five minutes, as the EC2 User Guide promises
//!   ("IAM roles for Amazon EC2"), whenever the lifetime allows;
//! - a quarter of the lifetime before expiry for lifetimes of 20 minutes or more, and never more
//!   than that lead plus a fifth of it (the jitter);
//! - at `obtained` when the credentials are already expired.

use std::time::Duration as StdDuration;

use imds_credentials::{refresh_time, until};
use proptest::prelude::*;
use time::{Duration, OffsetDateTime};

fn instant() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..4_102_444_800, 0i64..1_000_000_000).prop_map(|(seconds, nanos)| {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap() + Duration::nanoseconds(nanos)
    })
}

/// Lifetimes from nothing to 36 hours (STS allows 12; a `static` role may give more), at every
/// scale: nanoseconds, milliseconds, minutes.
fn lifetime() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1i64..1_000_000).prop_map(Duration::nanoseconds),
        (1i64..20 * 60 * 1000).prop_map(Duration::milliseconds),
        (1i64..36 * 3600 * 1000).prop_map(Duration::milliseconds),
        (5i64..=15).prop_map(Duration::minutes),
    ]
}

fn nanos(duration: Duration) -> i128 {
    duration.whole_nanoseconds()
}

proptest! {
    #[test]
    fn refresh_time_stays_within_its_bounds(obtained in instant(), lifetime in lifetime()) {
        let expiration = obtained + lifetime;
        let refresh = refresh_time(obtained, expiration);
        let (l, before_expiry, after_obtained) =
            (nanos(lifetime), nanos(expiration - refresh), nanos(refresh - obtained));
        prop_assert!(5 * after_obtained >= 2 * l, "refresh {after_obtained} ns into a life of {l} ns");
        let minimum_lead = nanos(Duration::minutes(5)).min(l / 2);
        prop_assert!(before_expiry >= minimum_lead, "{before_expiry} ns before expiry, life {l} ns");
        if lifetime >= Duration::minutes(10) {
            prop_assert!(expiration - refresh >= Duration::minutes(5));
        }
        if lifetime >= Duration::minutes(20) {
            prop_assert!(4 * before_expiry >= l);
            prop_assert!(before_expiry <= l / 4 + l / 20 + 1_000_000, "{before_expiry} ns before expiry, life {l} ns");
        }
    }

    #[test]
    fn expired_credentials_refresh_at_once(obtained in instant(), overdue in 0i64..86_400_000) {
        let expiration = obtained - Duration::milliseconds(overdue);
        prop_assert_eq!(refresh_time(obtained, expiration), obtained);
    }

    #[test]
    fn refreshes_are_spread(obtained in instant(), minutes in 20i64..720) {
        // The jitter spans a fifth of the lead (at least a minute here), in milliseconds: 32
        // draws that all agree would mean there is none.
        let expiration = obtained + Duration::minutes(minutes);
        let first = refresh_time(obtained, expiration);
        prop_assert!((0..32).any(|_| refresh_time(obtained, expiration) != first));
    }

    #[test]
    fn until_is_the_wait_or_nothing(now in instant(), offset in -86_400_000i64..86_400_000) {
        let when = now + Duration::milliseconds(offset);
        let expect = if offset > 0 { StdDuration::from_millis(offset as u64) } else { StdDuration::ZERO };
        prop_assert_eq!(until(now, when), expect);
    }
}
