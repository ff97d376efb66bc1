//! The `sts` provider: real temporary credentials from STS `AssumeRole` on the role's ARN.
//!
//! The source credentials are the host's, found by the standard AWS chain (environment
//! variables, shared profile files, container or instance credentials), exactly as the AWS CLI
//! would find them on that host. Each instance gets its own role sessions, named after its
//! instance id as EC2 names them (`assumed-role/ROLE/i-…`): one per delivery (IMDSv1, IMDSv2),
//! told apart, where the operator opts in, by a session tag or the `SourceIdentity` (STS cannot
//! set `ec2:RoleDelivery` itself). The credentials served are exactly those STS returned,
//! `Expiration` included.
//!
//! Every call has a timeout and is retried with exponential backoff by the SDK. An STS error
//! is returned as `CredentialsError::Upstream` for the log; it never reaches a guest.

use std::{sync::Arc, time::Duration};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
use aws_sdk_sts::{error::DisplayErrorContext, types::Tag};
use aws_smithy_http_client::tls;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::{
    refresh_time, BoxFuture, CredentialProvider, CredentialRequest, Credentials, CredentialsError,
    Delivery, Secret,
};

/// The region STS is called in when neither the config nor the host's AWS settings name one.
const FALLBACK_REGION: &str = "us-east-1";
/// How long one STS attempt may take by default, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one `AssumeRole`, retries included, may take by default.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts per `AssumeRole` (the first and two retries).
const MAX_ATTEMPTS: u32 = 3;
/// The first retry waits about this long; each later one about twice as long.
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);

/// How long STS may take: settings of the server (`--sts-attempt-timeout-ms`,
/// `--sts-timeout-ms`), so that a silent STS endpoint holds a fetch for a known time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// One attempt, connection included.
    pub attempt: Duration,
    /// One `AssumeRole`, retries and their backoff included.
    pub operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            attempt: ATTEMPT_TIMEOUT,
            operation: OPERATION_TIMEOUT,
        }
    }
}

/// How to assume one role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The role's ARN, `arn:aws:iam::ACCOUNT:role/NAME`.
    pub role_arn: String,
    /// The STS endpoint, for STS-compatible servers and private endpoints; the SDK's default
    /// endpoint for the region otherwise.
    pub endpoint_url: Option<String>,
    /// The region to call STS in; the host's AWS settings (`AWS_REGION`, profile) otherwise.
    pub region: Option<String>,
    /// `ExternalId`, when the role's trust policy requires one.
    pub external_id: Option<String>,
    /// `DurationSeconds`; STS's default (one hour) otherwise.
    pub duration_seconds: Option<i32>,
    /// Session tags, as (key, value) pairs.
    pub session_tags: Vec<(String, String)>,
    /// An inline session policy (JSON) that narrows the role's permissions.
    pub policy: Option<String>,
    /// Tag each session with its delivery (`RoleDelivery` = `1.0` or `2.0`); the role's trust
    /// policy must allow `sts:TagSession`.
    pub delivery_tag: bool,
    /// Set each session's `SourceIdentity` to its delivery (`RoleDelivery-1.0`,
    /// `RoleDelivery-2.0`); the role's trust policy must allow `sts:SetSourceIdentity`.
    pub delivery_source_identity: bool,
    /// How long STS may take.
    pub timeouts: Timeouts,
}

/// The session tag that carries the delivery, when `Config::delivery_tag` asks for it.
pub const DELIVERY_TAG_KEY: &str = "RoleDelivery";

/// The `SourceIdentity` of a session of `delivery`: `[\w+=,.@-]`, as STS requires.
pub fn delivery_source_identity(delivery: Delivery) -> String {
    format!("{DELIVERY_TAG_KEY}-{}", delivery.as_str())
}

/// Assumes one role with the host's credentials.
#[derive(Debug)]
pub struct StsProvider {
    config: Config,
    /// Built on first use: loading the host's AWS settings is asynchronous and may read files.
    client: OnceCell<aws_sdk_sts::Client>,
}

impl StsProvider {
    /// A provider for the role `config` describes. Nothing is read or called until the first
    /// fetch.
    pub fn new(config: Config) -> StsProvider {
        StsProvider {
            config,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_sts::Client {
        self.client
            .get_or_init(|| async {
                // HTTPS through rustls with ring; plain HTTP works too, for local STS servers.
                let http_client = aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http_client)
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_attempt_timeout(self.config.timeouts.attempt)
                            .operation_timeout(self.config.timeouts.operation)
                            .build(),
                    )
                    .retry_config(
                        RetryConfig::standard()
                            .with_max_attempts(MAX_ATTEMPTS)
                            .with_initial_backoff(INITIAL_BACKOFF),
                    );
                if let Some(region) = &self.config.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(endpoint_url) = &self.config.endpoint_url {
                    loader = loader.endpoint_url(endpoint_url.clone());
                }
                let mut sdk_config = loader.load().await;
                if sdk_config.region().is_none() {
                    sdk_config = sdk_config
                        .into_builder()
                        .region(Region::from_static(FALLBACK_REGION))
                        .build();
                }
                aws_sdk_sts::Client::new(&sdk_config)
            })
            .await
    }

    async fn assume_role(
        &self,
        request: CredentialRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<Credentials, CredentialsError> {
        let delivery_tag = self
            .config
            .delivery_tag
            .then(|| (DELIVERY_TAG_KEY, request.delivery.as_str()));
        let tags = self
            .config
            .session_tags
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .chain(delivery_tag)
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| CredentialsError::Upstream(format!("bad session tag: {error}")))?;
        let source_identity = self
            .config
            .delivery_source_identity
            .then(|| delivery_source_identity(request.delivery));
        let output = self
            .client()
            .await
            .assume_role()
            .role_arn(&self.config.role_arn)
            .role_session_name(session_name(request.instance_id))
            .set_external_id(self.config.external_id.clone())
            .set_duration_seconds(self.config.duration_seconds)
            .set_policy(self.config.policy.clone())
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_source_identity(source_identity)
            .send()
            .await
            .map_err(|error| {
                CredentialsError::Upstream(format!(
                    "AssumeRole on {} failed: {}",
                    self.config.role_arn,
                    DisplayErrorContext(&error)
                ))
            })?;
        let issued = output.credentials().ok_or_else(|| {
            CredentialsError::Upstream(format!(
                "AssumeRole on {} returned no credentials",
                self.config.role_arn
            ))
        })?;
        let expiration =
            OffsetDateTime::from_unix_timestamp(issued.expiration().secs()).map_err(|error| {
                CredentialsError::Upstream(format!("STS returned a bad expiration: {error}"))
            })?;
        let last_updated = now
            .replace_nanosecond(0)
            .expect("zero nanoseconds is valid");
        Ok(Credentials {
            access_key_id: issued.access_key_id().to_owned(),
            secret_access_key: Secret::new(issued.secret_access_key().to_owned()),
            session_token: Secret::new(issued.session_token().to_owned()),
            last_updated,
            expiration,
            refresh_at: refresh_time(last_updated, expiration),
        })
    }
}

/// The role session name for an instance: its id, cut to STS's 64 characters and stripped of
/// characters STS refuses (`[\w+=,.@-]` are allowed).
fn session_name(instance_id: &str) -> String {
    let name: String = instance_id
        .chars()
        .filter(|character| character.is_ascii_alphanumeric() || "_+=,.@-".contains(*character))
        .take(64)
        .collect();
    if name.len() < 2 {
        format!("imds-{name}")
    } else {
        name
    }
}

impl CredentialProvider for StsProvider {
    fn fetch<'a>(
        &'a self,
        request: CredentialRequest<'a>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Credentials, CredentialsError>> {
        Box::pin(self.assume_role(request, now))
    }

    fn per_instance(&self, _role_name: &str) -> bool {
        true
    }

    fn role_arn(&self, _role_name: &str) -> Option<String> {
        Some(self.config.role_arn.clone())
    }

    fn name(&self, _role_name: &str) -> &'static str {
        "sts"
    }
}

/// An `StsProvider` held as a shared provider.
pub fn provider(config: Config) -> Arc<dyn CredentialProvider> {
    Arc::new(StsProvider::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(instance_id: &str, expect: &str) {
        assert_eq!(session_name(instance_id), expect);
    }

    #[test]
    fn session_names_follow_sts_rules() {
        check("i-0123456789abcdef0", "i-0123456789abcdef0");
        check("i/x y", "ixy");
        check("", "imds-");
        check(&"a".repeat(80), &"a".repeat(64));
    }

    #[tokio::test]
    #[allow(
        clippy::disallowed_methods,
        reason = "an STS answer's expiry is stamped with the time it arrived"
    )]
    async fn an_unreachable_sts_is_an_upstream_error() {
        // Port 9 on loopback (discard) refuses connections on a machine without inetd.
        let provider = StsProvider::new(Config {
            role_arn: "arn:aws:iam::123456789012:role/app".to_owned(),
            endpoint_url: Some("http://127.0.0.1:9".to_owned()),
            region: Some("eu-west-1".to_owned()),
            ..Config::default()
        });
        let error = provider
            .fetch(
                CredentialRequest {
                    role_name: "app",
                    instance_id: "i-0123456789abcdef0",
                    delivery: Delivery::V2,
                },
                OffsetDateTime::now_utc(),
            )
            .await
            .expect_err("nothing listens there");
        assert!(matches!(error, CredentialsError::Upstream(_)));
        assert!(error
            .to_string()
            .contains("arn:aws:iam::123456789012:role/app"));
    }
}
