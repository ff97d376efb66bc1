//! Role credentials: the temporary keys IMDS hands out under `iam/security-credentials/ROLE`.
//!
//! A `CredentialProvider` makes credentials for a role; the server caches what it returns and
//! asks again on the schedule that `Credentials::refresh_at` gives.
//!
//! # Layout
//! - `generated`: AWS-shaped random credentials, for tests and laptops (the default).
#![forbid(unsafe_code)]

use std::{fmt, future::Future, pin::Pin, time::Duration};

use thiserror::Error;
use time::OffsetDateTime;

pub mod generated;

/// A secret string (secret key, session token) whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One set of temporary credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AccessKeyId`: `ASIA` and 16 upper-case letters and digits. Not secret: it is logged and
    /// audited to tell credentials apart.
    pub access_key_id: String,
    /// `SecretAccessKey`.
    pub secret_access_key: Secret,
    /// `Token`: the session token.
    pub session_token: Secret,
    /// `LastUpdated`: when these credentials were obtained.
    pub last_updated: OffsetDateTime,
    /// `Expiration`.
    pub expiration: OffsetDateTime,
    /// When to obtain the next credentials. Invariant: at least five minutes before
    /// `expiration` whenever the lifetime allows it ("We make new credentials available at
    /// least five minutes before the expiration of the old credentials", EC2 User Guide, "IAM
    /// roles for Amazon EC2").
    pub refresh_at: OffsetDateTime,
}

/// Why credentials could not be had.
#[derive(Debug, Error)]
pub enum CredentialsError {
    /// The provider is not set up for this role.
    #[error("no credential provider is configured for role {0:?}")]
    NotConfigured(String),
    /// The upstream source (e.g. STS) failed; the message is for logs, never for guests.
    #[error("credential source failed: {0}")]
    Upstream(String),
}

/// A boxed future, so that providers can be held as `Arc<dyn CredentialProvider>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that makes credentials for a role.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// Obtains fresh credentials for `role_name` at `now`.
    fn fetch<'a>(
        &'a self,
        role_name: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Credentials, CredentialsError>>;
}

/// How long the wait is from `now` until `when`, zero when `when` has passed.
pub fn until(now: OffsetDateTime, when: OffsetDateTime) -> Duration {
    (when - now).try_into().unwrap_or(Duration::ZERO)
}
