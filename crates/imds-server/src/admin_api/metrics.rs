//! `GET /metrics`: Prometheus metrics, on the control API's listener only (never the guest
//! listener), in the OpenMetrics text format. Per instance: `MetadataNoToken` and
//! `MetadataNoTokenRejected` (EC2's CloudWatch metrics of those names) and tokens issued; for the
//! server: instances served, callers no instance claims, and the credential cache's fetches,
//! failures and stale or unavailable answers.
//!
//! Guest requests are counted by route template (a fixed set, see `telemetry::Route`), status
//! and IMDS version; throttled requests per instance; lockdown refusals by scope; open guest
//! connections; and per credential provider its refreshes, failures and refresh latency.
//!
//! The config generation served (`config_generation`: 1 at start, one more per reload that
//! applied the file) and the reloads that applied nothing (`config_reload_failures`).
//!
//! In fleet mode, the store's change feed: whether it listens (`store_feed_connected`), how long
//! since the database was last heard from on it (`store_feed_contact_age_seconds`), and how often
//! it reconnected (`store_feed_reconnections_total`).

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use imds_credentials::Delivery;

use crate::{
    admin_api::{model::ErrorBody, AdminState, ApiError},
    instance::slot::Counters,
    telemetry::Refusal,
};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type ByInstance = Family<Vec<(String, String)>, Counter>;

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "GetMetrics",
    tag = "metrics",
    summary = "Prometheus metrics in the OpenMetrics text format",
    description = "MetadataNoToken, MetadataNoTokenRejected, tokens issued and throttled requests per instance; guest requests by route template, status and IMDS version; lockdown refusals; answers changed by injected faults; open guest connections; instances, unknown callers; credential fetches and failures, and per provider refreshes, failures and refresh latency.",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text"),
        (status = 500, description = "The metrics could not be encoded", body = ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AdminState>) -> Response {
    let no_token = ByInstance::default();
    let no_token_rejected = ByInstance::default();
    let tokens_issued = ByInstance::default();
    let throttled = ByInstance::default();
    let faults_injected = ByInstance::default();
    let instance_ids = state.registry.instance_ids();
    for instance_id in &instance_ids {
        let Some(slot) = state.registry.slot(instance_id) else {
            continue;
        };
        let labels = vec![("instance_id".to_owned(), instance_id.clone())];
        no_token
            .get_or_create(&labels)
            .inc_by(Counters::read(&slot.counters.no_token));
        no_token_rejected
            .get_or_create(&labels)
            .inc_by(Counters::read(&slot.counters.no_token_rejected));
        tokens_issued
            .get_or_create(&labels)
            .inc_by(Counters::read(&slot.counters.tokens_issued));
        throttled
            .get_or_create(&labels)
            .inc_by(Counters::read(&slot.counters.throttled));
        for (kind, count) in slot.faults.injected_by_kind() {
            faults_injected
                .get_or_create(&vec![
                    ("instance_id".to_owned(), instance_id.clone()),
                    ("kind".to_owned(), kind.as_str().to_owned()),
                ])
                .inc_by(count);
        }
    }
    let requests = ByInstance::default();
    for (route, status, version, count) in state.requests.requests() {
        let labels = vec![
            ("route".to_owned(), route.to_owned()),
            ("status".to_owned(), status),
            ("version".to_owned(), version.to_owned()),
        ];
        requests.get_or_create(&labels).inc_by(count);
    }
    let refusals = ByInstance::default();
    for (scope, refusal) in [
        ("endpoint", Refusal::Endpoint),
        ("credentials", Refusal::Credentials),
    ] {
        refusals
            .get_or_create(&vec![("scope".to_owned(), scope.to_owned())])
            .inc_by(state.requests.refusals(refusal));
    }
    let deliveries = ByInstance::default();
    for delivery in Delivery::ALL {
        deliveries
            .get_or_create(&vec![("delivery".to_owned(), delivery.as_str().to_owned())])
            .inc_by(state.requests.deliveries(delivery));
    }
    let active_connections = Gauge::<i64>::default();
    active_connections.set(
        state
            .requests
            .active_connections
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let instances = Gauge::<i64>::default();
    instances.set(i64::try_from(instance_ids.len()).unwrap_or(i64::MAX));
    let cache = &state.registry.role_cache().counters;

    let mut registry = Registry::with_prefix("imds");
    registry.register(
        "metadata_no_token",
        "Requests served without a token (IMDSv1), as EC2's MetadataNoToken",
        no_token,
    );
    registry.register(
        "metadata_no_token_rejected",
        "Requests refused for want of a token, as EC2's MetadataNoTokenRejected",
        no_token_rejected,
    );
    registry.register("tokens_issued", "Session tokens issued", tokens_issued);
    registry.register(
        "requests",
        "Guest requests by route template, status and IMDS version (v2: with a token)",
        requests,
    );
    registry.register(
        "throttled_requests",
        "Requests answered 429 because the instance was over its rate limit",
        throttled,
    );
    registry.register(
        "role_credentials_served",
        "Role credentials served to guests, by delivery (1.0: the IMDSv1 set, 2.0: the IMDSv2 set)",
        deliveries,
    );
    registry.register(
        "faults_injected",
        "Guest answers an injected fault changed, by instance and fault kind",
        faults_injected,
    );
    registry.register(
        "lockdown_refusals",
        "Requests refused by the lockdown policy, by scope (endpoint or credentials)",
        refusals,
    );
    registry.register(
        "active_connections",
        "Guest connections open now",
        active_connections,
    );
    let by_provider = &cache.by_provider;
    registry.register(
        "credential_refreshes",
        "Calls to credential providers, by provider",
        by_provider.refreshes.clone(),
    );
    registry.register(
        "credential_refresh_failures",
        "Failed calls to credential providers, by provider",
        by_provider.failures.clone(),
    );
    registry.register_with_unit(
        "credential_refresh_duration",
        "Time taken by calls to credential providers, by provider",
        Unit::Seconds,
        by_provider.refresh_seconds.clone(),
    );
    registry.register("instances", "Instances served", instances);
    let generation = Gauge::<i64>::default();
    generation.set(
        i64::try_from(
            state
                .requests
                .config_generation
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .unwrap_or(i64::MAX),
    );
    registry.register(
        "config_generation",
        "The config generation served: 1 at start, one more for each reload that applied the file",
        generation,
    );
    registry.register(
        "config_reload_failures",
        "Reloads that applied nothing: the config file did not read, parse or check",
        counter(
            state
                .requests
                .config_reload_failures
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
    );
    registry.register(
        "unknown_callers",
        "Requests from addresses no instance claims",
        counter(
            state
                .registry
                .unknown_callers
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
    );
    registry.register(
        "credential_fetches",
        "Credentials obtained from providers",
        counter(Counters::read(&cache.fetches)),
    );
    registry.register(
        "credential_failures",
        "Failed credential fetches",
        counter(Counters::read(&cache.failures)),
    );
    registry.register(
        "credentials_stale_served",
        "Answers that kept the last good credentials because a refresh failed",
        counter(Counters::read(&cache.stale_served)),
    );
    registry.register(
        "audit_records_dropped",
        "Audit records dropped because the audit log's writer could not keep up",
        counter(state.audit.dropped()),
    );
    registry.register(
        "credentials_unavailable_served",
        "Answers without credentials because none were valid",
        counter(Counters::read(&cache.unavailable_served)),
    );
    if let Some(feed) = state.registry.feed_health() {
        register_feed(&mut registry, feed.status());
    }
    let mut text = String::new();
    if let Err(error) = encode(&mut text, &registry) {
        tracing::error!(message = "Could not encode the metrics.", %error);
        return ApiError::internal("the metrics could not be encoded; see the server log")
            .into_response();
    }
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// The change feed's health: a host that stopped following the store shows it here.
fn register_feed(registry: &mut Registry, status: imds_store::FeedStatus) {
    let connected = Gauge::<i64>::default();
    connected.set(i64::from(status.connected));
    registry.register(
        "store_feed_connected",
        "Whether the store's change feed listens (1) or is reconnecting (0)",
        connected,
    );
    if let Some(age) = status.since_last_contact {
        let contact_age = Gauge::<f64, AtomicU64>::default();
        contact_age.set(age.as_secs_f64());
        registry.register_with_unit(
            "store_feed_contact_age",
            "Time since the database was last heard from on the change feed (a change or an \
             answered heartbeat)",
            Unit::Seconds,
            contact_age,
        );
    }
    registry.register(
        "store_feed_reconnections",
        "Times the change feed connected again after losing its connection",
        counter(status.reconnections),
    );
}
