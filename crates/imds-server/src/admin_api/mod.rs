//! The control API: register, describe, change and deregister instances, change their metadata
//! options, post events to them, and choose each role's credential provider. JSON in and out, on its own listener (loopback by default),
//! never mounted on the guest listener. Every route but `/healthz` needs
//! `Authorization: Bearer TOKEN`. `docs/admin-api.openapi.json` documents each route; a test
//! checks that the two agree.
//!
//! # Routes
//! - `GET /healthz`: liveness, no authentication.
//! - `GET /metrics`: Prometheus metrics (OpenMetrics text).
//! - `GET /v1/instances`: describe every instance.
//! - `POST /v1/instances`: register an instance (body: an instance description); in fleet mode
//!   `?host-id=HOST` registers it for another host.
//! - `GET /v1/instances/{instance_id}`: describe one.
//! - `PATCH /v1/instances/{instance_id}`: change one (body: a JSON merge patch of its description);
//!   in fleet mode `?host-id=HOST` also moves it to that host.
//! - `DELETE /v1/instances/{instance_id}`: deregister one.
//! - `GET /v1/instances/{instance_id}/metadata-options`: its options, with `State`.
//! - `PUT /v1/instances/{instance_id}/metadata-options`: `ModifyInstanceMetadataOptions`.
//! - `GET /v1/instances/{instance_id}/events`: its events.
//! - `POST /v1/instances/{instance_id}/events`: post an event now, after a delay, or at a time.
//! - `POST /v1/instances/{instance_id}/events/{event_id}/cancel`: cancel an event.
//! - `POST /v1/instances/{instance_id}/events/{event_id}/complete`: complete a maintenance event.
//! - `GET /v1/roles`: every role with a provider of its own.
//! - `GET /v1/roles/{role_name}`: one (without its secrets).
//! - `PUT /v1/roles/{role_name}`: set its provider (body: a `[[roles]]` entry as JSON); the
//!   instances whose role it is get credentials from the new provider before the answer.
//! - `DELETE /v1/roles/{role_name}`: the role uses the default provider again.
//! - `GET /v1/instances/{instance_id}/roles/{role_name}/credentials`: a role's current
//!   credentials as the instance gets them (the container endpoint's JSON; `503` when none are
//!   valid). For `imds env` and `imds exec`. Each answer with credentials is audited.
//!
//! Errors are `{"Code": ..., "Message": ...}` with EC2's codes where one fits.

mod events;
mod instances;
mod metrics;
mod options;
mod roles;

use std::{fmt, sync::Arc};

use axum::{
    extract::{rejection::JsonRejection, FromRequest, Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Serialize;
use serde_json::json;

use crate::{
    audit::AuditLog,
    registry::{Registry, RegistryError},
    telemetry::RequestCounters,
};

/// The bearer token that authorises control-API calls. Never printed.
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

impl AdminToken {
    /// Wraps a token; surrounding whitespace (a trailing newline in a file) is not part of it.
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Arc::from(token.trim()))
    }

    fn matches(&self, presented: &[u8]) -> bool {
        // Compare the MACs of both under a random key: constant time, and the length of the
        // real token does not leak either.
        let key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("the system random source works");
        let expected = ring::hmac::sign(&key, self.0.as_bytes());
        ring::hmac::verify(&key, presented, expected.as_ref()).is_ok()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The served instances.
    pub registry: Arc<Registry>,
    /// Request counters of the guest listeners, for `/metrics`.
    pub requests: Arc<RequestCounters>,
    /// Where the role credentials route records what it hands out.
    pub audit: AuditLog,
}

/// Builds the control API router, with fresh request counters and no audit log.
pub fn router(registry: Arc<Registry>, token: AdminToken) -> Router {
    router_with(registry, token, Arc::default(), AuditLog::off())
}

/// Builds the control API router reporting `requests` and auditing to `audit`.
pub fn router_with(
    registry: Arc<Registry>,
    token: AdminToken,
    requests: Arc<RequestCounters>,
    audit: AuditLog,
) -> Router {
    let state = AdminState {
        registry,
        requests,
        audit,
    };
    let api = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route(
            "/v1/instances",
            get(instances::list).post(instances::register),
        )
        .route(
            "/v1/instances/{instance_id}",
            get(instances::describe)
                .patch(instances::update)
                .delete(instances::deregister),
        )
        .route(
            "/v1/instances/{instance_id}/metadata-options",
            get(options::describe).put(options::modify),
        )
        .route(
            "/v1/instances/{instance_id}/events",
            get(events::list).post(events::post),
        )
        .route(
            "/v1/instances/{instance_id}/events/{event_id}/cancel",
            post(events::cancel),
        )
        .route(
            "/v1/instances/{instance_id}/events/{event_id}/complete",
            post(events::complete),
        )
        .route("/v1/roles", get(roles::list))
        .route(
            "/v1/roles/{role_name}",
            get(roles::describe).put(roles::put).delete(roles::delete),
        )
        .route(
            "/v1/instances/{instance_id}/roles/{role_name}/credentials",
            get(roles::credentials),
        )
        .route_layer(middleware::from_fn_with_state(token, authenticate))
        .with_state(state);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NotFound", "no such route") })
}

/// Serves the control API on `listener` until the task is dropped.
pub async fn serve(
    listener: std::net::TcpListener,
    registry: Arc<Registry>,
    token: AdminToken,
    requests: Arc<RequestCounters>,
    audit: AuditLog,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = router_with(registry, token, requests, audit);
    crate::connection::serve_router(listener, app, crate::Limits::default()).await;
    Ok(())
}

async fn authenticate(State(token): State<AdminToken>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(presented) if token.matches(presented) => next.run(request).await,
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "AuthFailure",
                "missing or wrong bearer token: send Authorization: Bearer TOKEN",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// A control-API error: status, EC2-style code and a message that says what to do.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidParameterValue", message)
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "InvalidInstanceID.NotFound",
                format!("the instance ID '{id}' does not exist"),
            ),
            RegistryError::RoleNotFound(name) => ApiError::new(
                StatusCode::NOT_FOUND,
                "NoSuchEntity",
                format!("the role {name} has no provider of its own (it uses the default)"),
            ),
            RegistryError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", message)
            }
            RegistryError::Invalid(message) => ApiError::invalid(message),
            RegistryError::Unavailable(message) => {
                tracing::warn!(message = "Control-API write refused: the store is unavailable.", error = %message);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "StoreUnavailable",
                    "the store is unavailable; nothing was changed, try again",
                )
            }
            RegistryError::Store(message) => {
                tracing::error!(message = "Control-API call failed in the store.", error = %message);
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "the store failed; see the server log",
                )
            }
            RegistryError::Prepare(error) => {
                tracing::error!(message = "Could not prepare an instance.", %error);
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "the instance could not be prepared; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"Code": self.code, "Message": self.message})),
        )
            .into_response()
    }
}

/// A JSON body whose rejection is an `ApiError` naming what was wrong.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                format!(
                    "the body is not valid JSON for this call: {}",
                    rejection.body_text()
                ),
            )),
        }
    }
}

/// Serialises a wire struct as a JSON response with `status`.
fn reply<T: Serialize>(status: StatusCode, value: T) -> Response {
    (status, Json(value)).into_response()
}

#[cfg(test)]
mod tests;
