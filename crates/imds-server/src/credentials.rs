//! Credentials as served: rendered once into the JSON IMDS answers, and cached so that every
//! instance with the same role shares one set (and one rendering) until it is due. Providers
//! whose credentials differ per instance (STS sessions are named after the instance) get one
//! set per instance and role.
//!
//! # Lifecycle
//! - Single flight: each cache entry has its own async lock, held across the fetch, so any
//!   number of concurrent askers cause at most one upstream call per entry.
//! - Refresh ahead: a set is replaced once its `refresh_at` passes (at least five minutes before
//!   it expires, with jitter; see `imds_credentials::refresh_time`).
//! - Static stability: when the provider fails, the last good set keeps being served until it
//!   expires, with a warning log; the provider is asked again after a backoff (one second,
//!   doubling up to thirty).
//! - When nothing valid is left, the role answers AWS's error document (`Code`
//!   `AssumeRoleUnauthorizedAccess`, see `docs/behaviour.md`), never expired credentials, and
//!   recovers by itself on the first successful fetch.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use imds_core::render::aws_timestamp;
use imds_credentials::{CredentialProvider, CredentialRequest, Credentials, Delivery};
use prometheus_client::metrics::{
    counter::Counter,
    family::Family,
    histogram::{exponential_buckets, Histogram},
};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::wire;

/// The first wait before asking a failing provider again.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait before asking a failing provider again.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// One set of credentials, rendered as `iam/security-credentials/ROLE` answers it.
#[derive(Debug)]
pub struct RenderedCredentials {
    /// The JSON document, shared by every snapshot that serves it.
    pub json: Bytes,
    /// `AccessKeyId`, for logs; empty for the error document.
    pub access_key_id: String,
    /// `LastUpdated`.
    pub last_updated: OffsetDateTime,
    /// When the next set is due (or, after a failure, when to ask the provider again).
    pub refresh_at: OffsetDateTime,
    /// `Expiration`, or `None` for the error document that stands in when no valid set exists.
    pub expiration: Option<OffsetDateTime>,
    /// The same credentials as the container credentials endpoint answers them; `None` for the
    /// error document.
    pub container_json: Option<Bytes>,
}

impl RenderedCredentials {
    /// Renders `credentials` for IMDS and for the container endpoint; the secrets live on only
    /// inside the JSON.
    pub fn new(credentials: &Credentials) -> RenderedCredentials {
        // Go's escaping: the agents this document stands in for are Go programs.
        let container_json = crate::container_api::go_json::to_vec(&wire::ContainerCredentials {
            access_key_id: &credentials.access_key_id,
            secret_access_key: credentials.secret_access_key.expose(),
            token: credentials.session_token.expose(),
            expiration: &aws_timestamp(credentials.expiration),
        })
        .expect("string fields always serialise");
        RenderedCredentials {
            container_json: Some(Bytes::from(container_json)),
            ..Self::imds_only(credentials)
        }
    }

    /// Renders `credentials` for IMDS only: an instance's own identity credentials, which no
    /// container route serves (and which every instance has, so the second rendering would cost
    /// a kilobyte per instance).
    pub fn imds_only(credentials: &Credentials) -> RenderedCredentials {
        let json = wire::to_aws_json(&wire::RoleCredentials {
            code: "Success",
            last_updated: &aws_timestamp(credentials.last_updated),
            kind: "AWS-HMAC",
            access_key_id: &credentials.access_key_id,
            secret_access_key: credentials.secret_access_key.expose(),
            token: credentials.session_token.expose(),
            expiration: &aws_timestamp(credentials.expiration),
        });
        RenderedCredentials {
            json: Bytes::from(json),
            access_key_id: credentials.access_key_id.clone(),
            last_updated: credentials.last_updated,
            refresh_at: credentials.refresh_at,
            expiration: Some(credentials.expiration),
            container_json: None,
        }
    }

    /// The document AWS serves for a role it cannot get credentials for, to be replaced at
    /// `retry_at`. The message is AWS's, never the upstream error.
    pub fn unavailable(
        role_name: &str,
        now: OffsetDateTime,
        retry_at: OffsetDateTime,
    ) -> RenderedCredentials {
        let now = now
            .replace_nanosecond(0)
            .expect("zero nanoseconds is valid");
        let message = Self::unavailable_message(role_name);
        let json = wire::to_aws_json(&wire::RoleCredentialsError {
            code: "AssumeRoleUnauthorizedAccess",
            message: &message,
            last_updated: &aws_timestamp(now),
        });
        RenderedCredentials {
            json: Bytes::from(json),
            access_key_id: String::new(),
            last_updated: now,
            refresh_at: retry_at,
            expiration: None,
            container_json: None,
        }
    }

    /// The `Message` of that document for `role_name`, as EC2 words it.
    pub fn unavailable_message(role_name: &str) -> String {
        format!(
            "EC2 cannot assume the role {role_name}.  Please see documentation at \
             http://docs.amazonwebservices.com/IAM/latest/UserGuide/RolesTroubleshooting.html."
        )
    }

    /// True when these are credentials (not the error document) that have not expired at `now`.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.expiration.is_some_and(|expiration| expiration > now)
    }

    /// The same answer, due again at `refresh_at`.
    fn due_at(&self, refresh_at: OffsetDateTime) -> RenderedCredentials {
        RenderedCredentials {
            json: self.json.clone(),
            access_key_id: self.access_key_id.clone(),
            last_updated: self.last_updated,
            refresh_at,
            expiration: self.expiration,
            container_json: self.container_json.clone(),
        }
    }
}

/// A role's sets as one instance is served them: the IMDSv2 set, and the IMDSv1 set while the
/// instance's `HttpTokens` is `optional` (with tokens required EC2 has no IMDSv1 set).
#[derive(Debug, Clone)]
pub struct RoleSets {
    /// `2.0`: what requests with a token get.
    pub v2: Arc<RenderedCredentials>,
    /// `1.0`: what tokenless requests get while tokens are optional.
    pub v1: Option<Arc<RenderedCredentials>>,
}

impl RoleSets {
    /// When the first of the sets is due.
    pub fn refresh_at(&self) -> OffsetDateTime {
        match &self.v1 {
            Some(v1) => v1.refresh_at.min(self.v2.refresh_at),
            None => self.v2.refresh_at,
        }
    }

    /// The set of `delivery`, if there is one.
    pub fn get(&self, delivery: Delivery) -> Option<&Arc<RenderedCredentials>> {
        match delivery {
            Delivery::V1 => self.v1.as_ref(),
            Delivery::V2 => Some(&self.v2),
        }
    }
}

/// What the cache keeps per role (or per role and instance).
#[derive(Debug, Default)]
struct Entry {
    /// Held across a fetch: the single flight.
    state: Mutex<EntryState>,
    /// A copy of `state.current`, readable while a fetch holds `state`, so that askers need not
    /// wait for a slow upstream while the credentials they have are valid.
    published: std::sync::Mutex<Option<Arc<RenderedCredentials>>>,
}

#[derive(Debug, Default)]
struct EntryState {
    /// What is served now: credentials, or the error document.
    current: Option<Arc<RenderedCredentials>>,
    /// Failed fetches in a row, for the backoff.
    failures: u32,
}

/// A cache key: the role, the instance when the provider's sets differ per instance, and the
/// delivery (each has its own set, with its own rotation).
pub(crate) type EntryKey = (String, Option<String>, Delivery);

/// Metric labels naming a credential provider (`generated`, `static`, `sts`).
pub type ProviderLabels = Vec<(String, String)>;

/// A family of histograms, one per provider.
pub type ProviderHistograms = Family<ProviderLabels, Histogram, fn() -> Histogram>;

/// Buckets of the refresh latency, in seconds: 1 ms to about 33 s, doubling.
fn refresh_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// What the cache did per provider, for metrics. `prometheus_client` families take a lock when
/// a label set is first seen and a histogram locks on observation, which is fine here: these
/// are touched once per provider call, in the background, never per request.
#[derive(Debug, Clone)]
pub struct ProviderMetrics {
    /// Provider calls by provider.
    pub refreshes: Family<ProviderLabels, Counter>,
    /// Failed provider calls by provider.
    pub failures: Family<ProviderLabels, Counter>,
    /// Time taken by provider calls (successful or not), by provider.
    pub refresh_seconds: ProviderHistograms,
}

impl Default for ProviderMetrics {
    fn default() -> Self {
        ProviderMetrics {
            refreshes: Family::default(),
            failures: Family::default(),
            refresh_seconds: Family::new_with_constructor(refresh_histogram),
        }
    }
}

/// Counts of what the cache did, for logs and metrics.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Calls to the provider (each may be one upstream call, such as one `AssumeRole`).
    pub fetches: AtomicU64,
    /// Failed calls to the provider.
    pub failures: AtomicU64,
    /// Times the last good credentials were kept because the provider failed.
    pub stale_served: AtomicU64,
    /// Times the error document was served because nothing valid was left.
    pub unavailable_served: AtomicU64,
    /// Provider calls, failures and latency by provider.
    pub by_provider: ProviderMetrics,
}

/// Role credentials, cached per role name (and per instance where the provider says so).
#[derive(Debug)]
pub struct RoleCache {
    provider: Arc<dyn CredentialProvider>,
    entries: std::sync::Mutex<HashMap<EntryKey, Arc<Entry>>>,
    /// What the cache did since start.
    pub counters: CacheCounters,
}

impl RoleCache {
    /// A cache in front of `provider`.
    pub fn new(provider: Arc<dyn CredentialProvider>) -> RoleCache {
        RoleCache {
            provider,
            entries: std::sync::Mutex::new(HashMap::new()),
            counters: CacheCounters::default(),
        }
    }

    /// The provider behind the cache.
    pub fn provider(&self) -> &Arc<dyn CredentialProvider> {
        &self.provider
    }

    /// What to serve for `request` at `now`: the cached answer until it is due, then a new set;
    /// if the provider fails, the last good set while it is valid, else the error document.
    /// While another caller's fetch is under way, the set being replaced is answered at once if
    /// it is still valid.
    pub async fn get(
        &self,
        request: CredentialRequest<'_>,
        now: OffsetDateTime,
    ) -> Arc<RenderedCredentials> {
        self.answer(request, now, false).await
    }

    /// As `get`, but while another caller's fetch is under way it waits for that fetch rather
    /// than answering the set being replaced: for renewing an instance's credentials in the
    /// background, which must not come back with the set that was due.
    pub async fn fresh(
        &self,
        request: CredentialRequest<'_>,
        now: OffsetDateTime,
    ) -> Arc<RenderedCredentials> {
        self.answer(request, now, true).await
    }

    /// The set cached for `request` if it is not due at `now`, without waiting for anything.
    pub fn peek(
        &self,
        request: CredentialRequest<'_>,
        now: OffsetDateTime,
    ) -> Option<Arc<RenderedCredentials>> {
        let key = self.key(request);
        let entry = self
            .entries
            .lock()
            .expect("the entries lock is never held across a panic")
            .get(&key)
            .cloned()?;
        let published = entry
            .published
            .lock()
            .expect("the published lock is never held across a panic")
            .clone();
        published.filter(|current| current.refresh_at > now)
    }

    /// The cache key of `request`: its role, its instance when the role's provider makes a set
    /// per instance, and its delivery.
    pub(crate) fn key(&self, request: CredentialRequest<'_>) -> EntryKey {
        (
            request.role_name.to_owned(),
            self.provider
                .per_instance(request.role_name)
                .then(|| request.instance_id.to_owned()),
            request.delivery,
        )
    }

    async fn answer(
        &self,
        request: CredentialRequest<'_>,
        now: OffsetDateTime,
        wait_for_fetch: bool,
    ) -> Arc<RenderedCredentials> {
        let key = self.key(request);
        let entry = self
            .entries
            .lock()
            .expect("the entries lock is never held across a panic")
            .entry(key)
            .or_default()
            .clone();
        let published = entry
            .published
            .lock()
            .expect("the published lock is never held across a panic")
            .clone();
        if let Some(current) = &published {
            if current.refresh_at > now {
                return current.clone();
            }
        }
        let mut state = match entry.state.try_lock() {
            Ok(state) => state,
            Err(_) => match published.filter(|current| !wait_for_fetch && current.is_valid_at(now))
            {
                // A fetch is under way and what is served is still valid: no need to wait.
                Some(current) => return current,
                None => entry.state.lock().await,
            },
        };
        if let Some(current) = &state.current {
            if current.refresh_at > now {
                return current.clone();
            }
        }
        let answer = self.fetch(&mut state, request, now).await;
        state.current = Some(answer.clone());
        *entry
            .published
            .lock()
            .expect("the published lock is never held across a panic") = Some(answer.clone());
        answer
    }

    /// Drops the sets kept for `instance_id` alone (per-instance providers such as `sts`); sets
    /// shared per role stay.
    pub fn forget_instance(&self, instance_id: &str) {
        self.entries
            .lock()
            .expect("the entries lock is never held across a panic")
            .retain(|(_, owner, _), _| owner.as_deref() != Some(instance_id));
    }

    /// Drops every set kept for `role_name`, so that the next request asks the role's provider
    /// (after the provider was changed). Fetches under way finish into the dropped entries.
    pub fn forget_role(&self, role_name: &str) {
        self.entries
            .lock()
            .expect("the entries lock is never held across a panic")
            .retain(|(role, _, _), _| role != role_name);
    }

    /// Drops the set of `delivery` kept for `instance_id` alone (the IMDSv1 set of a
    /// per-instance provider once the instance's tokens are required).
    pub fn forget_delivery(&self, instance_id: &str, delivery: Delivery) {
        self.entries
            .lock()
            .expect("the entries lock is never held across a panic")
            .retain(|(_, owner, kept), _| {
                owner.as_deref() != Some(instance_id) || *kept != delivery
            });
    }

    /// The number of cached sets, for tests and diagnostics.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .expect("the entries lock is never held across a panic")
            .len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks the provider; on failure, keeps the last good set while it is valid.
    #[allow(
        clippy::disallowed_methods,
        reason = "the time a credential fetch took is reported in its log line"
    )]
    async fn fetch(
        &self,
        state: &mut EntryState,
        request: CredentialRequest<'_>,
        now: OffsetDateTime,
    ) -> Arc<RenderedCredentials> {
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let labels = vec![(
            "provider".to_owned(),
            self.provider.name(request.role_name).to_owned(),
        )];
        let started = std::time::Instant::now();
        let result = self.provider.fetch(request, now).await;
        let by_provider = &self.counters.by_provider;
        by_provider
            .refresh_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        by_provider.refreshes.get_or_create(&labels).inc();
        if result.is_err() {
            by_provider.failures.get_or_create(&labels).inc();
        }
        match result {
            Ok(credentials) => {
                let fresh = Arc::new(RenderedCredentials::new(&credentials));
                tracing::info!(
                    message = "Role credentials obtained.",
                    role = %request.role_name,
                    instance_id = %request.instance_id,
                    delivery = %request.delivery,
                    access_key_id = %fresh.access_key_id,
                    expiration = %aws_timestamp(credentials.expiration),
                );
                state.failures = 0;
                fresh
            }
            Err(error) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                state.failures = state.failures.saturating_add(1);
                let retry_at = now + retry_delay(state.failures);
                match &state.current {
                    Some(last) if last.is_valid_at(now) => {
                        self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                        let expiration = last.expiration.expect("valid credentials expire");
                        tracing::warn!(
                                message = "Could not refresh role credentials; serving the last good ones until they expire.",
                                role = %request.role_name,
                                instance_id = %request.instance_id,
                        delivery = %request.delivery,
                                access_key_id = %last.access_key_id,
                                expiration = %aws_timestamp(expiration),
                                %error,
                            );
                        Arc::new(last.due_at(retry_at.min(expiration)))
                    }
                    _ => {
                        self.counters
                            .unavailable_served
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                                message = "Could not obtain role credentials and none are valid; serving the error document.",
                                role = %request.role_name,
                                instance_id = %request.instance_id,
                        delivery = %request.delivery,
                                %error,
                            );
                        Arc::new(RenderedCredentials::unavailable(
                            request.role_name,
                            now,
                            retry_at,
                        ))
                    }
                }
            }
        }
    }
}

/// The wait after `failures` failed fetches in a row: one second, doubling, at most thirty.
fn retry_delay(failures: u32) -> time::Duration {
    let delay = FIRST_RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_RETRY);
    time::Duration::try_from(delay).expect("the delay is at most thirty seconds")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use imds_credentials::{BoxFuture, CredentialsError, Secret};
    use time::macros::datetime;

    use super::*;

    /// A provider that counts its calls, can be made to fail, and issues a set lasting an hour.
    #[derive(Debug, Default)]
    struct Flaky {
        calls: AtomicU64,
        failing: AtomicBool,
    }

    impl CredentialProvider for Flaky {
        fn fetch<'a>(
            &'a self,
            _request: CredentialRequest<'a>,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, Result<Credentials, CredentialsError>> {
            Box::pin(async move {
                let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                // Let concurrent askers pile up behind this call.
                tokio::task::yield_now().await;
                if self.failing.load(Ordering::SeqCst) {
                    return Err(CredentialsError::Upstream(
                        "secret upstream detail".to_owned(),
                    ));
                }
                Ok(Credentials {
                    access_key_id: format!("ASIA{call:016}"),
                    secret_access_key: Secret::new("secret".to_owned()),
                    session_token: Secret::new("token".to_owned()),
                    last_updated: now,
                    expiration: now + time::Duration::hours(1),
                    refresh_at: now + time::Duration::minutes(45),
                })
            })
        }
    }

    const REQUEST: CredentialRequest<'static> = CredentialRequest {
        role_name: "app",
        instance_id: "i-0123456789abcdef0",
        delivery: Delivery::V2,
    };

    #[tokio::test]
    async fn concurrent_askers_cause_one_fetch() {
        let flaky = Arc::new(Flaky::default());
        let cache = Arc::new(RoleCache::new(flaky.clone()));
        let now = datetime!(2026-11-24 12:00:00 UTC);
        let askers: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get(REQUEST, now).await })
            })
            .collect();
        let mut key_ids = std::collections::HashSet::new();
        for asker in askers {
            key_ids.insert(asker.await.unwrap().access_key_id.clone());
        }
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
        assert_eq!(key_ids.len(), 1);
    }

    #[tokio::test]
    async fn failures_keep_the_last_good_set_until_it_expires_then_recover() {
        let flaky = Arc::new(Flaky::default());
        let cache = RoleCache::new(flaky.clone());
        let start = datetime!(2026-11-24 12:00:00 UTC);
        let first = cache.get(REQUEST, start).await;
        assert!(first.is_valid_at(start));

        // Due, but the provider fails: the same credentials, asked again a second later.
        flaky.failing.store(true, Ordering::SeqCst);
        let due = start + time::Duration::minutes(46);
        let stale = cache.get(REQUEST, due).await;
        assert_eq!(stale.json, first.json);
        assert_eq!(stale.refresh_at, due + time::Duration::seconds(1));
        // Within the backoff, the provider is left alone.
        let calls = flaky.calls.load(Ordering::SeqCst);
        cache.get(REQUEST, due).await;
        assert_eq!(flaky.calls.load(Ordering::SeqCst), calls);
        // The backoff doubles, but never past the expiration.
        let later = due + time::Duration::seconds(1);
        assert_eq!(
            cache.get(REQUEST, later).await.refresh_at,
            later + time::Duration::seconds(2)
        );
        let near_expiry = start + time::Duration::seconds(3599);
        assert_eq!(
            cache.get(REQUEST, near_expiry).await.refresh_at,
            start + time::Duration::hours(1)
        );

        // Expired: the error document, without the upstream detail.
        let expired = start + time::Duration::hours(1);
        let unavailable = cache.get(REQUEST, expired).await;
        assert!(!unavailable.is_valid_at(expired));
        let body = std::str::from_utf8(&unavailable.json).unwrap();
        assert!(
            body.contains("\"Code\" : \"AssumeRoleUnauthorizedAccess\""),
            "{body}"
        );
        assert!(body.contains("EC2 cannot assume the role app."), "{body}");
        assert!(!body.contains("AccessKeyId"));
        assert!(!body.contains("secret upstream detail"));

        // The provider is back: new credentials at the next retry.
        flaky.failing.store(false, Ordering::SeqCst);
        let back = cache.get(REQUEST, unavailable.refresh_at).await;
        assert!(back.is_valid_at(unavailable.refresh_at));
        assert_ne!(back.access_key_id, first.access_key_id);
        assert_eq!(cache.counters.unavailable_served.load(Ordering::Relaxed), 1);
    }

    /// A provider that, once made slow, waits for a release before answering.
    #[derive(Debug, Default)]
    struct Slow {
        calls: AtomicU64,
        slow: AtomicBool,
        release: tokio::sync::Notify,
    }

    impl CredentialProvider for Slow {
        fn fetch<'a>(
            &'a self,
            _request: CredentialRequest<'a>,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, Result<Credentials, CredentialsError>> {
            Box::pin(async move {
                let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                if self.slow.load(Ordering::SeqCst) {
                    self.release.notified().await;
                }
                Ok(Credentials {
                    access_key_id: format!("ASIA{call:016}"),
                    secret_access_key: Secret::new("secret".to_owned()),
                    session_token: Secret::new("token".to_owned()),
                    last_updated: now,
                    expiration: now + time::Duration::hours(1),
                    refresh_at: now + time::Duration::minutes(45),
                })
            })
        }
    }

    #[tokio::test]
    async fn a_slow_refresh_does_not_hold_up_askers_while_the_old_set_is_valid() {
        let slow = Arc::new(Slow::default());
        let cache = Arc::new(RoleCache::new(slow.clone()));
        let start = datetime!(2026-11-24 12:00:00 UTC);
        let first = cache.get(REQUEST, start).await;

        slow.slow.store(true, Ordering::SeqCst);
        let due = start + time::Duration::minutes(46);
        let refreshing = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get(REQUEST, due).await }
        });
        while slow.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // The refresh is in flight: another asker gets the old, still valid set at once.
        let meanwhile = tokio::time::timeout(Duration::from_secs(5), cache.get(REQUEST, due))
            .await
            .expect("no waiting for the slow upstream");
        assert_eq!(meanwhile.access_key_id, first.access_key_id);
        assert_eq!(slow.calls.load(Ordering::SeqCst), 2);

        slow.release.notify_one();
        let second = refreshing.await.unwrap();
        assert_ne!(second.access_key_id, first.access_key_id);
        assert_eq!(
            cache.get(REQUEST, due).await.access_key_id,
            second.access_key_id
        );
    }

    /// `Flaky`, but with one set per instance.
    #[derive(Debug, Default)]
    struct PerInstance(Flaky);

    impl CredentialProvider for PerInstance {
        fn fetch<'a>(
            &'a self,
            request: CredentialRequest<'a>,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, Result<Credentials, CredentialsError>> {
            self.0.fetch(request, now)
        }

        fn per_instance(&self, _role_name: &str) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn per_instance_providers_get_a_set_per_instance_and_forget_removed_ones() {
        let now = datetime!(2026-11-24 12:00:00 UTC);
        let other = CredentialRequest {
            instance_id: "i-0fedcba9876543210",
            ..REQUEST
        };
        let per_instance = RoleCache::new(Arc::new(PerInstance::default()));
        let first = per_instance.get(REQUEST, now).await;
        let second = per_instance.get(other, now).await;
        assert_ne!(first.access_key_id, second.access_key_id);
        assert_eq!(per_instance.len(), 2);
        per_instance.forget_instance(REQUEST.instance_id);
        assert_eq!(per_instance.len(), 1);

        let shared = RoleCache::new(Arc::new(Flaky::default()));
        let first = shared.get(REQUEST, now).await;
        assert_eq!(
            shared.get(other, now).await.access_key_id,
            first.access_key_id
        );
        shared.forget_instance(REQUEST.instance_id);
        assert_eq!(shared.len(), 1, "sets shared per role stay");
    }

    #[tokio::test]
    async fn each_delivery_has_its_own_set() {
        let now = datetime!(2026-11-24 12:00:00 UTC);
        let v1 = CredentialRequest {
            delivery: Delivery::V1,
            ..REQUEST
        };
        let cache = RoleCache::new(Arc::new(PerInstance::default()));
        let second = cache.get(REQUEST, now).await;
        let first = cache.get(v1, now).await;
        assert_ne!(first.access_key_id, second.access_key_id);
        assert_eq!(cache.get(v1, now).await.access_key_id, first.access_key_id);
        assert_eq!(
            cache.get(REQUEST, now).await.access_key_id,
            second.access_key_id
        );
        assert_eq!(cache.len(), 2);
        cache.forget_role("app");
        assert!(cache.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        let seconds: Vec<i64> = (1..=8)
            .map(|failures| retry_delay(failures).whole_seconds())
            .collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX).whole_seconds(), 30);
    }
}
