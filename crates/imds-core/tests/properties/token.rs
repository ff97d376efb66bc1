//! `TokenTtl` and `TokenAuthority`.
//!
//! - The TTL header is accepted exactly when it is 1 to 10 ASCII digits worth 1 to 21600.
//! - A token issued for any TTL in bounds, at any `now`, validates for its instance at every
//!   moment before its expiry, reporting the whole seconds left (1 to the TTL), and is expired
//!   from its expiry on.
//! - Any one-byte change, any truncation and any extension makes it invalid (not expired); so do
//!   another key and another instance.
//! - Bytes the authority did not issue are never accepted.

use imds_core::token::{TokenAuthority, TokenError, TokenTtl, KEY_LENGTH, TOKEN_LENGTH};
use proptest::prelude::*;

/// How long after its expiry an expired token is presented, at most.
const LATEST_LATE_MS: u64 = 10_000_000;
/// Milliseconds up to which `now` is drawn: far past any real clock, with room for the TTL and
/// the lateness.
const LATEST_NOW_MS: u64 = u64::MAX - 1_000 * TokenTtl::MAX as u64 - LATEST_LATE_MS;

fn ttl() -> impl Strategy<Value = TokenTtl> {
    (TokenTtl::MIN..=TokenTtl::MAX)
        .prop_map(|seconds| TokenTtl::parse(seconds.to_string().as_bytes()).expect("in bounds"))
}

fn now() -> impl Strategy<Value = u64> {
    prop_oneof![
        // Unix milliseconds of this century.
        946_684_800_000u64..4_102_444_800_000,
        0..=LATEST_NOW_MS,
        Just(0),
        Just(LATEST_NOW_MS),
    ]
}

fn instance_id() -> impl Strategy<Value = String> {
    prop_oneof!["i-[0-9a-f]{17}", "(?s).{0,100}"]
}

/// What the TTL header rule says of `text`.
fn ttl_model(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    (u64::from(TokenTtl::MIN)..=u64::from(TokenTtl::MAX))
        .contains(&value)
        .then_some(value as u32)
}

proptest! {
    #[test]
    fn ttl_header_rule(
        text in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..12),
            "[0-9]{0,12}".prop_map(String::into_bytes),
            (0u64..100_000).prop_map(|value| value.to_string().into_bytes()),
            ("0{0,8}", 0u32..30_000).prop_map(|(zeros, value)| format!("{zeros}{value}").into_bytes()),
        ],
    ) {
        prop_assert_eq!(
            TokenTtl::parse(&text).ok().map(TokenTtl::seconds),
            ttl_model(&text),
            "{:?}", String::from_utf8_lossy(&text)
        );
    }

    #[test]
    fn issued_tokens_validate_until_expiry(
        key in any::<[u8; KEY_LENGTH]>(),
        instance in instance_id(),
        ttl in ttl(),
        now in now(),
        elapsed in any::<u64>(),
        late in 0..LATEST_LATE_MS,
    ) {
        let authority = TokenAuthority::new(&key);
        let token = authority.issue(&instance, ttl, now);
        prop_assert_eq!(token.len(), TOKEN_LENGTH);
        let lifetime_ms = u64::from(ttl.seconds()) * 1000;
        let elapsed = elapsed % lifetime_ms;
        let left = authority.validate(token.as_bytes(), &instance, now + elapsed);
        prop_assert_eq!(&left, &Ok((lifetime_ms - elapsed).div_ceil(1000) as u32));
        let left = left.unwrap();
        prop_assert!((1..=ttl.seconds()).contains(&left));
        prop_assert_eq!(
            authority.validate(token.as_bytes(), &instance, now + lifetime_ms + late),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn any_change_invalidates(
        key in any::<[u8; KEY_LENGTH]>(),
        instance in instance_id(),
        ttl in ttl(),
        now in now(),
        position in 0..TOKEN_LENGTH,
        replacement in any::<u8>(),
        cut in 0..TOKEN_LENGTH,
        suffix in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let authority = TokenAuthority::new(&key);
        let token = authority.issue(&instance, ttl, now).into_bytes();
        let mut changed = token.clone();
        changed[position] = replacement;
        if changed != token {
            prop_assert_eq!(
                authority.validate(&changed, &instance, now),
                Err(TokenError::Invalid),
                "byte {} changed to {:?}", position, replacement
            );
        }
        prop_assert_eq!(authority.validate(&token[..cut], &instance, now), Err(TokenError::Invalid));
        let extended = [token.as_slice(), &suffix].concat();
        prop_assert_eq!(authority.validate(&extended, &instance, now), Err(TokenError::Invalid));
    }

    #[test]
    fn tokens_are_bound_to_their_key_and_instance(
        key in any::<[u8; KEY_LENGTH]>(),
        other_key in any::<[u8; KEY_LENGTH]>(),
        instance in instance_id(),
        other_instance in instance_id(),
        ttl in ttl(),
        now in now(),
    ) {
        let token = TokenAuthority::new(&key).issue(&instance, ttl, now);
        if other_key != key {
            prop_assert_eq!(
                TokenAuthority::new(&other_key).validate(token.as_bytes(), &instance, now),
                Err(TokenError::Invalid)
            );
        }
        if other_instance != instance {
            prop_assert_eq!(
                TokenAuthority::new(&key).validate(token.as_bytes(), &other_instance, now),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn unissued_bytes_are_refused(
        key in any::<[u8; KEY_LENGTH]>(),
        instance in instance_id(),
        now in now(),
        token in prop_oneof![
            "[A-Za-z0-9_-]{55}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..80),
        ],
    ) {
        let result = TokenAuthority::new(&key).validate(&token, &instance, now);
        prop_assert!(result.is_err(), "{:?} accepted", String::from_utf8_lossy(&token));
    }
}
