//! IMDSv2 session tokens: issued by `PUT /latest/api/token`, checked on every data request.
//!
//! A token is stateless: `base64url(version || expiry_ms || tag)`, where `tag` is
//! HMAC-SHA256, keyed by a secret kept in the state directory, over the version, the expiry and
//! the id of the instance the token was issued to. So a token
//! - cannot be forged or altered without the key (the tag is checked in constant time),
//! - is valid only for the instance that asked for it (its id is part of the MAC input),
//! - expires exactly at its TTL (the expiry is kept in milliseconds),
//! - survives a restart of the server, and needs no storage however many are issued.
//!
//! A client sends the same token with every request until it expires, so each thread remembers
//! the last token it found authentic (with the authority and the instance it was checked for)
//! and does not decode it or compute the same MAC again for it: the HMAC was about a fifth of
//! the instructions of a metadata GET. Any other bytes are checked in full; the comparison with
//! the remembered token (as sent, before decoding) is constant-time too.
//!
//! AWS documents tokens as opaque; its own are 56 characters of base64url, and so are these.

use std::{
    cell::RefCell,
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::hmac;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The request header that asks for a token and the response header that echoes its TTL.
pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The request header that carries a token on data requests.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// Layout version of the token bytes, so the format can change without confusing old tokens
/// for new ones.
const TOKEN_VERSION: u8 = 1;
/// Bytes in a decoded token: version (1), expiry in Unix milliseconds (8), HMAC-SHA256 tag (32).
const TOKEN_BYTES: usize = 1 + 8 + 32;
/// Characters in an encoded token (base64 without padding of 41 bytes).
pub const TOKEN_LENGTH: usize = (TOKEN_BYTES * 4).div_ceil(3);
/// Length of the key in the state directory.
pub const KEY_LENGTH: usize = 32;

/// A token lifetime in seconds, within the range AWS accepts: "a minimum of one second and a
/// maximum of six hours" (EC2 User Guide, "How Instance Metadata Service Version 2 works").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTtl(u32);

impl TokenTtl {
    /// The shortest TTL, one second.
    pub const MIN: u32 = 1;
    /// The longest TTL, six hours.
    pub const MAX: u32 = 21_600;

    /// Parses the TTL header value: ASCII digits only, 1..=21600.
    pub fn parse(header_value: &[u8]) -> Result<TokenTtl, TokenError> {
        // No sign, no spaces, no leading '+': AWS answers 400 to anything but a plain integer.
        // Ten digits are enough for any value in range; longer inputs cannot be valid.
        if header_value.is_empty()
            || header_value.len() > 10
            || !header_value.iter().all(u8::is_ascii_digit)
        {
            return Err(TokenError::InvalidTtl);
        }
        let value = header_value
            .iter()
            .fold(0u64, |acc, digit| acc * 10 + u64::from(digit - b'0'));
        if (u64::from(Self::MIN)..=u64::from(Self::MAX)).contains(&value) {
            Ok(TokenTtl(value as u32))
        } else {
            Err(TokenError::InvalidTtl)
        }
    }

    /// The TTL in seconds.
    pub fn seconds(self) -> u32 {
        self.0
    }
}

/// Why a token or a token request was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// The TTL header is not an integer from 1 to 21600.
    #[error("the token TTL must be an integer number of seconds from 1 to 21600")]
    InvalidTtl,
    /// The token is not one this authority could have issued (wrong length, bad encoding, bad
    /// tag, wrong instance, or another key).
    #[error("the token is not valid for this instance")]
    Invalid,
    /// The token was valid but its TTL has run out; ask for a new one.
    #[error("the token has expired; request a new one")]
    Expired,
}

/// Issues and checks session tokens. Holds the key; never prints it.
pub struct TokenAuthority {
    key: hmac::Key,
    /// Distinct for every authority made, so that a thread's memo of an authentic token is
    /// never taken for another key's.
    id: u64,
}

/// The source of `TokenAuthority::id`.
static NEXT_AUTHORITY_ID: AtomicU64 = AtomicU64::new(1);

/// Instance ids up to this length (EC2's are 19 bytes) are kept inline: the MAC message is built
/// on the stack, and a thread's memo holds the id without allocating.
const INLINE_INSTANCE_ID: usize = 64;

/// The last token a thread found authentic: which authority checked it, for which instance, the
/// token as sent (so that a repeat is known before decoding it) and its expiry (still checked
/// on every request).
struct Authentic {
    authority: u64,
    instance_id: [u8; INLINE_INSTANCE_ID],
    instance_id_length: usize,
    /// The token as sent, in words (see [`token_words`]).
    token: [u64; TOKEN_WORDS],
    expiry_ms: u64,
}

/// A token is compared with the memo as whole words: byte by byte, the constant-time comparison
/// was a third of the memo's cost.
const TOKEN_WORDS: usize = TOKEN_LENGTH.div_ceil(8);

/// `token` as words, the last one padded with zeros.
fn token_words(token: &[u8; TOKEN_LENGTH]) -> [u64; TOKEN_WORDS] {
    let mut padded = [0u8; TOKEN_WORDS * 8];
    padded[..TOKEN_LENGTH].copy_from_slice(token);
    std::array::from_fn(|word| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&padded[word * 8..word * 8 + 8]);
        u64::from_ne_bytes(bytes)
    })
}

thread_local! {
    static LAST_AUTHENTIC: RefCell<Option<Authentic>> = const { RefCell::new(None) };
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TokenAuthority {
    /// Builds an authority from the key kept in the state directory.
    pub fn new(key: &[u8; KEY_LENGTH]) -> TokenAuthority {
        TokenAuthority {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            id: NEXT_AUTHORITY_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Issues a token for `instance_id`, valid from `now_ms` (Unix milliseconds) for `ttl`.
    pub fn issue(&self, instance_id: &str, ttl: TokenTtl, now_ms: u64) -> String {
        let expiry_ms = now_ms.saturating_add(u64::from(ttl.seconds()) * 1000);
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[0] = TOKEN_VERSION;
        bytes[1..9].copy_from_slice(&expiry_ms.to_be_bytes());
        let tag = self.tag(&bytes[..9], instance_id);
        bytes[9..].copy_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks a token presented by `instance_id` at `now_ms`; on success returns the whole
    /// seconds it has left (at least 1).
    pub fn validate(
        &self,
        token: &[u8],
        instance_id: &str,
        now_ms: u64,
    ) -> Result<u32, TokenError> {
        let Ok(token) = <&[u8; TOKEN_LENGTH]>::try_from(token) else {
            return Err(TokenError::Invalid);
        };
        let expiry_ms = match self.remembered(token, instance_id) {
            Some(expiry_ms) => expiry_ms,
            None => {
                let mut bytes = [0u8; TOKEN_BYTES];
                match URL_SAFE_NO_PAD.decode_slice(token, &mut bytes) {
                    Ok(TOKEN_BYTES) => {}
                    _ => return Err(TokenError::Invalid),
                }
                if bytes[0] != TOKEN_VERSION {
                    return Err(TokenError::Invalid);
                }
                self.verify(&bytes, instance_id)?;
                let expiry_ms =
                    u64::from_be_bytes(bytes[1..9].try_into().expect("slice of 8 bytes"));
                self.remember(token, expiry_ms, instance_id);
                expiry_ms
            }
        };
        if now_ms >= expiry_ms {
            return Err(TokenError::Expired);
        }
        let remaining_ms = expiry_ms - now_ms;
        Ok(remaining_ms.div_ceil(1000).min(u64::from(TokenTtl::MAX)) as u32)
    }

    /// The expiry of `token` if this thread found exactly these bytes authentic for
    /// `instance_id` with this authority's key (the bytes compared in constant time).
    fn remembered(&self, token: &[u8; TOKEN_LENGTH], instance_id: &str) -> Option<u64> {
        LAST_AUTHENTIC.with_borrow(|last| {
            last.as_ref()
                .filter(|last| {
                    last.authority == self.id
                        && last.instance_id[..last.instance_id_length] == *instance_id.as_bytes()
                        && bool::from(last.token.ct_eq(&token_words(token)))
                })
                .map(|last| last.expiry_ms)
        })
    }

    /// Makes `token`, just found authentic for `instance_id`, this thread's memo (unless the id
    /// is too long to keep inline: such a token is checked in full every time).
    fn remember(&self, token: &[u8; TOKEN_LENGTH], expiry_ms: u64, instance_id: &str) {
        if instance_id.len() > INLINE_INSTANCE_ID {
            return;
        }
        let mut kept = [0u8; INLINE_INSTANCE_ID];
        kept[..instance_id.len()].copy_from_slice(instance_id.as_bytes());
        LAST_AUTHENTIC.set(Some(Authentic {
            authority: self.id,
            instance_id: kept,
            instance_id_length: instance_id.len(),
            token: token_words(token),
            expiry_ms,
        }));
    }

    /// Checks the tag of `bytes` for `instance_id`.
    fn verify(&self, bytes: &[u8; TOKEN_BYTES], instance_id: &str) -> Result<(), TokenError> {
        // `hmac::verify` recomputes the tag and compares it in constant time. The message is
        // assembled on the stack for instance ids of usual length (EC2's are 19 bytes).
        let mut stack = [0u8; 9 + INLINE_INSTANCE_ID];
        let heap;
        let message: &[u8] = if instance_id.len() <= INLINE_INSTANCE_ID {
            stack[..9].copy_from_slice(&bytes[..9]);
            stack[9..9 + instance_id.len()].copy_from_slice(instance_id.as_bytes());
            &stack[..9 + instance_id.len()]
        } else {
            heap = [&bytes[..9], instance_id.as_bytes()].concat();
            &heap
        };
        hmac::verify(&self.key, message, &bytes[9..]).map_err(|_| TokenError::Invalid)
    }

    fn tag(&self, header: &[u8], instance_id: &str) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(header);
        context.update(instance_id.as_bytes());
        context.sign()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn authority(seed: u8) -> TokenAuthority {
        TokenAuthority::new(&[seed; KEY_LENGTH])
    }

    fn ttl(seconds: u32) -> TokenTtl {
        TokenTtl::parse(seconds.to_string().as_bytes()).unwrap()
    }

    #[track_caller]
    fn check_ttl(text: &str, expect: Option<u32>) {
        assert_eq!(
            TokenTtl::parse(text.as_bytes()).ok().map(TokenTtl::seconds),
            expect
        );
    }

    #[test]
    fn ttl_bounds() {
        check_ttl("1", Some(1));
        check_ttl("21600", Some(21600));
        check_ttl("0021600", Some(21600));
        check_ttl("0", None);
        check_ttl("21601", None);
        check_ttl("-1", None);
        check_ttl("+5", None);
        check_ttl(" 5", None);
        check_ttl("5.0", None);
        check_ttl("", None);
        check_ttl("99999999999999999999999", None);
        check_ttl("4294967297", None);
    }

    #[test]
    fn issued_token_validates_with_remaining_ttl() {
        let tokens = authority(1);
        let token = tokens.issue("i-1", ttl(60), NOW);
        assert_eq!(token.len(), TOKEN_LENGTH);
        assert_eq!(token.len(), 55);
        assert_eq!(tokens.validate(token.as_bytes(), "i-1", NOW), Ok(60));
        assert_eq!(
            tokens.validate(token.as_bytes(), "i-1", NOW + 30_500),
            Ok(30)
        );
    }

    #[test]
    fn a_remembered_token_still_expires_and_stays_bound_to_its_key() {
        let tokens = authority(1);
        let token = tokens.issue("i-1", ttl(1), NOW);
        assert_eq!(tokens.validate(token.as_bytes(), "i-1", NOW), Ok(1));
        assert_eq!(
            tokens.validate(token.as_bytes(), "i-1", NOW + 1000),
            Err(TokenError::Expired)
        );
        // A second token for the same instance replaces the first in the memo; both validate.
        let second = tokens.issue("i-1", ttl(60), NOW);
        assert_eq!(tokens.validate(second.as_bytes(), "i-1", NOW), Ok(60));
        assert_eq!(tokens.validate(token.as_bytes(), "i-1", NOW), Ok(1));
        // An instance id too long to keep inline is checked in full each time.
        let long_id = format!("i-{}", "0".repeat(INLINE_INSTANCE_ID));
        let long = tokens.issue(&long_id, ttl(60), NOW);
        for _ in 0..2 {
            assert_eq!(tokens.validate(long.as_bytes(), &long_id, NOW), Ok(60));
        }
        assert_eq!(
            tokens.validate(long.as_bytes(), &long_id[..INLINE_INSTANCE_ID], NOW),
            Err(TokenError::Invalid)
        );
        // Another authority with the same key, and another thread, validate it; another key not.
        assert_eq!(authority(1).validate(token.as_bytes(), "i-1", NOW), Ok(1));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert_eq!(tokens.validate(token.as_bytes(), "i-1", NOW), Ok(1));
                assert_eq!(
                    authority(2).validate(token.as_bytes(), "i-1", NOW),
                    Err(TokenError::Invalid)
                );
            });
        });
    }

    #[test]
    fn token_expires_exactly_at_ttl() {
        let tokens = authority(1);
        let token = tokens.issue("i-1", ttl(1), NOW);
        assert_eq!(tokens.validate(token.as_bytes(), "i-1", NOW + 999), Ok(1));
        assert_eq!(
            tokens.validate(token.as_bytes(), "i-1", NOW + 1000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn token_is_bound_to_instance_and_key() {
        let tokens = authority(1);
        let token = tokens.issue("i-1", ttl(60), NOW);
        // The thread's memo now holds the token, for `tokens` and `i-1` only.
        assert_eq!(tokens.validate(token.as_bytes(), "i-1", NOW), Ok(60));
        assert_eq!(
            tokens.validate(token.as_bytes(), "i-2", NOW),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            authority(1).validate(token.as_bytes(), "i-2", NOW),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            authority(2).validate(token.as_bytes(), "i-1", NOW),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn every_single_byte_change_is_rejected() {
        let tokens = authority(1);
        let token = tokens.issue("i-1", ttl(60), NOW).into_bytes();
        for position in 0..token.len() {
            for replacement in [b'A', b'_', b'-', b'z', b'0', b'=', 0, 0xff] {
                if token[position] == replacement {
                    continue;
                }
                // With the untouched token as the thread's last authentic one.
                assert_eq!(tokens.validate(&token, "i-1", NOW), Ok(60));
                let mut tampered = token.clone();
                tampered[position] = replacement;
                assert!(
                    tokens.validate(&tampered, "i-1", NOW).is_err(),
                    "tampered token accepted at byte {position}"
                );
            }
        }
        assert!(tokens
            .validate(&token[..token.len() - 1], "i-1", NOW)
            .is_err());
        assert!(tokens.validate(b"", "i-1", NOW).is_err());
        assert!(tokens.validate(&[b'A'; 4096], "i-1", NOW).is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let text = format!("{:?}", authority(7));
        assert!(text.contains("redacted"));
        assert!(!text.contains('7'));
    }
}
