//! Role credentials: the temporary keys IMDS hands out under `iam/security-credentials/ROLE`.
//!
//! A `CredentialProvider` makes credentials for a role; the server caches what it returns and
//! asks again on the schedule that `Credentials::refresh_at` gives.
//!
//! # Layout
//! - `generated`: AWS-shaped random credentials, for tests and laptops (the default).
//! - `fixed`: the `static` provider, the same credentials every time (for tests that need known
//!   keys).
//! - `sts`: real temporary credentials from STS `AssumeRole`.
//! - `by_role`: picks a provider per role name, with a default for the others; roles can be
//!   given, changed and removed while it serves.
//! - `spec`: a role's provider as written (config file, control API, store), checked into a
//!   provider.
#![forbid(unsafe_code)]

use std::{fmt, future::Future, pin::Pin, time::Duration};

use rand::Rng;
use thiserror::Error;
use time::OffsetDateTime;

pub mod by_role;
pub mod fixed;
pub mod generated;
pub mod spec;
pub mod sts;

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

/// Which of a role's two sets: EC2 hands a tokenless (IMDSv1) caller "the IMDSv1 role
/// credentials" and a caller with a valid token "the IMDSv2 role credentials" (EC2 API
/// reference, `HttpTokens`), told apart in IAM by `ec2:RoleDelivery` and in CloudTrail by
/// `ec2RoleDelivery`, `1.0` and `2.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Delivery {
    /// `1.0`: the set tokenless requests get while tokens are optional.
    V1,
    /// `2.0`: the set requests with a token get, and every other consumer (the container
    /// endpoint, the control API by default).
    V2,
}

impl Delivery {
    /// Both, in order.
    pub const ALL: [Delivery; 2] = [Delivery::V1, Delivery::V2];

    /// AWS's value: `1.0` or `2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::V1 => "1.0",
            Delivery::V2 => "2.0",
        }
    }

    /// The delivery AWS's value names.
    pub fn parse(text: &str) -> Option<Delivery> {
        match text {
            "1.0" => Some(Delivery::V1),
            "2.0" => Some(Delivery::V2),
            _ => None,
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whom credentials are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialRequest<'a> {
    /// The role whose credentials are wanted.
    pub role_name: &'a str,
    /// The instance that asks; STS names the role session after it.
    pub instance_id: &'a str,
    /// Which of the role's two sets.
    pub delivery: Delivery,
}

/// Something that makes credentials for a role.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// Obtains fresh credentials for `request` at `now`.
    fn fetch<'a>(
        &'a self,
        request: CredentialRequest<'a>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Credentials, CredentialsError>>;

    /// True when the credentials of a role differ per instance (an STS session per instance), so
    /// that the cache must keep one set per instance rather than one per role.
    fn per_instance(&self, _role_name: &str) -> bool {
        false
    }

    /// The provider's name as the config writes it (`generated`, `static`, `sts`), for metrics;
    /// providers that route by role name the provider of `_role_name`.
    fn name(&self, _role_name: &str) -> &'static str {
        "other"
    }

    /// True when `fetch` for `_role_name` makes its credentials in memory and never waits (no
    /// upstream), so that a caller may run it in place rather than on a task of its own.
    fn answers_at_once(&self, _role_name: &str) -> bool {
        false
    }

    /// The ARN of the IAM role whose credentials `fetch` gives for `_role_name`, when the
    /// provider knows it (`sts` assumes a given ARN); `None` for providers that make up their
    /// keys.
    fn role_arn(&self, _role_name: &str) -> Option<String> {
        None
    }

    /// The role name whose provider assumes `_role_arn`, if a provider routing by role name has
    /// one (a `[[roles]]` entry with that `role-arn`).
    fn role_named_by_arn(&self, _role_arn: &str) -> Option<String> {
        None
    }
}

/// When to obtain the credentials that replace a set obtained at `obtained` and expiring at
/// `expiration`: at least five minutes before expiry (EC2 User Guide, "IAM roles for Amazon
/// EC2": "We make new credentials available at least five minutes before the expiration of the
/// old credentials"), a quarter of the lifetime before it for long lifetimes, and never later
/// than halfway for lifetimes under ten minutes. A random part of up to a fifth of that lead
/// is added, so that many roles obtained together do not all refresh together.
pub fn refresh_time(obtained: OffsetDateTime, expiration: OffsetDateTime) -> OffsetDateTime {
    let lifetime = expiration - obtained;
    if lifetime <= time::Duration::ZERO {
        return obtained;
    }
    let lead: time::Duration = (lifetime / 4_i32)
        .max(time::Duration::minutes(5))
        .min(lifetime / 2_i32);
    let jitter_millis = (lead.whole_milliseconds() / 5).max(0) as i64;
    let jitter = time::Duration::milliseconds(rand::rng().random_range(0..=jitter_millis));
    expiration - lead - jitter
}

/// How long the wait is from `now` until `when`, zero when `when` has passed.
pub fn until(now: OffsetDateTime, when: OffsetDateTime) -> Duration {
    (when - now).try_into().unwrap_or(Duration::ZERO)
}
