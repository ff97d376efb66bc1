//! Generated credentials: random keys in AWS's formats, valid nowhere, rotated on EC2's
//! schedule. The default provider, for testing software that reads role credentials.

use std::time::Duration;

use rand::{distr::Alphanumeric, Rng};
use time::OffsetDateTime;

use crate::{
    BoxFuture, CredentialProvider, CredentialRequest, Credentials, CredentialsError, Secret,
};

/// The prefix of real session tokens: the base64 of their first bytes.
const SESSION_TOKEN_PREFIX: &str = "IQoJb3JpZ2luX2Vj";
/// Characters of a generated session token, about the size of a real one.
const SESSION_TOKEN_LENGTH: usize = 880;
/// Characters of a secret access key.
const SECRET_LENGTH: usize = 40;

/// Makes random, AWS-shaped credentials.
#[derive(Debug, Clone)]
pub struct GeneratedProvider {
    lifetime: Duration,
}

impl GeneratedProvider {
    /// EC2's instance credentials last about six hours.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(6 * 3600);
    /// The shortest lifetime accepted; anything under 30 minutes is for tests of rotation.
    pub const MIN_LIFETIME: Duration = Duration::from_secs(6);

    /// Credentials last `lifetime` and are replaced after a sixth of it (one hour by default,
    /// so new credentials exist five hours before the old ones expire).
    pub fn new(lifetime: Duration) -> GeneratedProvider {
        GeneratedProvider {
            lifetime: lifetime.max(Self::MIN_LIFETIME),
        }
    }

    /// Makes one set of credentials at `now`.
    pub fn generate(&self, now: OffsetDateTime) -> Credentials {
        self.generate_with(&mut rand::rng(), now)
    }

    /// How long after it is issued a set is replaced: a sixth of the lifetime.
    pub fn refresh_after(&self) -> time::Duration {
        time::Duration::try_from(self.lifetime).expect("lifetime fits") / 6
    }

    /// Makes one set of credentials at `now` from `rng`: the same generator state makes the
    /// same keys (for sets made again from a seed instead of being kept).
    pub fn generate_with(&self, rng: &mut impl Rng, now: OffsetDateTime) -> Credentials {
        let now = now
            .replace_nanosecond(0)
            .expect("zero nanoseconds is valid");
        let access_key_id = format!(
            "ASIA{}",
            (0..16)
                .map(|_| {
                    let index = rng.random_range(0..36);
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[index] as char
                })
                .collect::<String>()
        );
        let secret: String = (0..SECRET_LENGTH)
            .map(|_| {
                let index = rng.random_range(0..64);
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[index] as char
            })
            .collect();
        let token_body: String = rng
            .sample_iter(Alphanumeric)
            .take(SESSION_TOKEN_LENGTH - SESSION_TOKEN_PREFIX.len())
            .map(char::from)
            .collect();
        let lifetime = time::Duration::try_from(self.lifetime).expect("lifetime fits");
        Credentials {
            access_key_id,
            secret_access_key: Secret::new(secret),
            session_token: Secret::new(format!("{SESSION_TOKEN_PREFIX}{token_body}")),
            last_updated: now,
            expiration: now + lifetime,
            refresh_at: now + self.refresh_after(),
        }
    }
}

impl Default for GeneratedProvider {
    fn default() -> Self {
        GeneratedProvider::new(Self::DEFAULT_LIFETIME)
    }
}

impl CredentialProvider for GeneratedProvider {
    fn fetch<'a>(
        &'a self,
        _request: CredentialRequest<'a>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Credentials, CredentialsError>> {
        Box::pin(std::future::ready(Ok(self.generate(now))))
    }

    fn name(&self, _role_name: &str) -> &'static str {
        "generated"
    }

    fn answers_at_once(&self, _role_name: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn shapes_match_aws() {
        let now = datetime!(2026-11-24 12:00:00.7 UTC);
        let credentials = GeneratedProvider::default().generate(now);
        assert_eq!(credentials.access_key_id.len(), 20);
        assert!(credentials.access_key_id.starts_with("ASIA"));
        assert!(credentials.access_key_id[4..]
            .bytes()
            .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit()));
        assert_eq!(credentials.secret_access_key.expose().len(), 40);
        assert!(credentials
            .session_token
            .expose()
            .starts_with("IQoJb3JpZ2luX2Vj"));
        assert_eq!(credentials.last_updated, datetime!(2026-11-24 12:00:00 UTC));
        assert_eq!(credentials.expiration, datetime!(2026-11-24 18:00:00 UTC));
    }

    #[test]
    fn new_credentials_come_well_before_expiry() {
        let now = datetime!(2026-11-24 12:00:00 UTC);
        for lifetime_seconds in [3600, 6 * 3600, 12 * 3600] {
            let credentials =
                GeneratedProvider::new(Duration::from_secs(lifetime_seconds)).generate(now);
            assert!(credentials.refresh_at > now);
            assert!(credentials.expiration - credentials.refresh_at >= time::Duration::minutes(5));
        }
    }

    #[test]
    fn each_set_is_different_and_debug_hides_secrets() {
        let provider = GeneratedProvider::default();
        let now = datetime!(2026-11-24 12:00:00 UTC);
        let first = provider.generate(now);
        let second = provider.generate(now);
        assert_ne!(first.access_key_id, second.access_key_id);
        let debug = format!("{first:?}");
        assert!(debug.contains(&first.access_key_id));
        assert!(!debug.contains(first.secret_access_key.expose()));
        assert!(!debug.contains(first.session_token.expose()));
    }
}
