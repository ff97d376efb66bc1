//! `GET /metrics`: Prometheus metrics, on the control API's listener only (never the guest
//! listener), in the OpenMetrics text format. Per instance: `MetadataNoToken` and
//! `MetadataNoTokenRejected` (EC2's CloudWatch metrics of those names) and tokens issued; for the
//! server: instances served, callers no instance claims, and the credential cache's fetches,
//! failures and stale or unavailable answers.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{admin_api::AdminState, state::Counters};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type ByInstance = Family<Vec<(String, String)>, Counter>;

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

pub async fn metrics(State(state): State<AdminState>) -> Response {
    let no_token = ByInstance::default();
    let no_token_rejected = ByInstance::default();
    let tokens_issued = ByInstance::default();
    let instance_ids = state.registry.instance_ids().await;
    for instance_id in &instance_ids {
        let Some(slot) = state.registry.slot(instance_id).await else {
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
    }
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
    registry.register("instances", "Instances served", instances);
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
        "credentials_unavailable_served",
        "Answers without credentials because none were valid",
        counter(Counters::read(&cache.unavailable_served)),
    );
    let mut text = String::new();
    if let Err(error) = encode(&mut text, &registry) {
        tracing::error!(message = "Could not encode the metrics.", %error);
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}
