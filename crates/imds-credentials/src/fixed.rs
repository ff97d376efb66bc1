//! The `static` provider: the same keys every time, for tests that need to know them. Each
//! fetch dates them anew (`LastUpdated` now, `Expiration` a lifetime later), so clients keep
//! accepting them.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{
    refresh_time, BoxFuture, CredentialProvider, CredentialRequest, Credentials, CredentialsError,
    Secret,
};

/// Fixed keys, as the config gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticKeys {
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `SecretAccessKey`.
    pub secret_access_key: Secret,
    /// `Token`; an empty one is served as given.
    pub session_token: Secret,
}

/// Serves `keys` to every role it is asked for.
#[derive(Debug, Clone)]
pub struct StaticProvider {
    keys: StaticKeys,
    lifetime: Duration,
}

impl StaticProvider {
    /// Serves `keys`, each time valid for `lifetime` from the fetch.
    pub fn new(keys: StaticKeys, lifetime: Duration) -> StaticProvider {
        StaticProvider { keys, lifetime }
    }

    /// The credentials served at `now`.
    pub fn credentials(&self, now: OffsetDateTime) -> Credentials {
        let now = now
            .replace_nanosecond(0)
            .expect("zero nanoseconds is valid");
        let expiration = now + time::Duration::try_from(self.lifetime).expect("lifetime fits");
        Credentials {
            access_key_id: self.keys.access_key_id.clone(),
            secret_access_key: self.keys.secret_access_key.clone(),
            session_token: self.keys.session_token.clone(),
            last_updated: now,
            expiration,
            refresh_at: refresh_time(now, expiration),
        }
    }
}

impl CredentialProvider for StaticProvider {
    fn fetch<'a>(
        &'a self,
        _request: CredentialRequest<'a>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Credentials, CredentialsError>> {
        Box::pin(std::future::ready(Ok(self.credentials(now))))
    }

    fn name(&self, _role_name: &str) -> &'static str {
        "static"
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
    fn serves_the_given_keys_dated_from_now() {
        let keys = StaticKeys {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned()),
            session_token: Secret::new("token".to_owned()),
        };
        let provider = StaticProvider::new(keys.clone(), Duration::from_secs(3600));
        let now = datetime!(2026-11-24 12:00:00.5 UTC);
        let credentials = provider.credentials(now);
        assert_eq!(credentials.access_key_id, keys.access_key_id);
        assert_eq!(credentials.secret_access_key, keys.secret_access_key);
        assert_eq!(credentials.session_token, keys.session_token);
        assert_eq!(credentials.last_updated, datetime!(2026-11-24 12:00:00 UTC));
        assert_eq!(credentials.expiration, datetime!(2026-11-24 13:00:00 UTC));
        assert!(credentials.expiration - credentials.refresh_at >= time::Duration::minutes(5));
        assert!(!format!("{provider:?}").contains("wJalr"));
    }
}
