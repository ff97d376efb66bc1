//! The EKS Pod Identity Agent's endpoint, on its own listener (EKS: `169.254.170.23:80` and
//! `[fd00:ec2::23]:80`), as `aws/eks-pod-identity-agent` serves it
//! (`pkg/handlers/eks_credential_handler.go`, `pkg/server/server.go`).
//!
//! - `/v1/credentials`, any method, `Authorization` = the pod's service-account token (no
//!   `Bearer`): `200`, `application/json`,
//!   `{"AccessKeyId","SecretAccessKey","Token","AccountId","Expiration"}` (`answer::eks`).
//! - Any other path: `404`, `404 page not found` (Go's `http.NotFound`).
//! - Errors are plain text as Go's `http.Error` writes them: `text/plain; charset=utf-8`,
//!   `X-Content-Type-Options: nosniff`, the message and a newline. In the agent's order: over the
//!   rate limit (one bucket per listener) `429`; a `Host` other than the agent's addresses `403`;
//!   the token's own checks `400` (`service_account_token`); then what EKS Auth decides, in the
//!   agent's pass-through form `[REQUEST ID]: (CODE): MESSAGE, fault: client`: a token that does
//!   not verify `400` `InvalidTokenException`, a service account with no association `404`
//!   `ResourceNotFoundException`, no valid credentials `500` `InternalServerException`
//!   (`fault: server`).
//!
//! Each service account gets its own set of its role's credentials: the role cache's session is
//! `NAMESPACE@NAME` (`@` is in no Kubernetes name, so sessions never collide, and STS allows it
//! in role session names).

use std::{net::IpAddr, num::NonZeroU32, sync::Arc};

use axum::{
    body::Body,
    extract::State,
    http::{header, Extensions, HeaderMap, HeaderValue, StatusCode, Uri},
    response::Response,
    Router,
};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use time::OffsetDateTime;

use crate::{
    audit::{self, Event},
    container_api::{
        answer, hand_out,
        service_account_token::{self, Rejection, ServiceAccount, TokenKeys},
        Caller, Guard, HandOut, Principal, Subject, Withheld,
    },
    credentials::RoleCache,
};

/// The only path the agent serves.
const PATH: &str = "/v1/credentials";

/// The addresses the agent answers at (`Host` without port or brackets).
const AGENT_HOSTS: [&str; 2] = ["169.254.170.23", "fd00:ec2::23"];

/// One pod identity association: a service account and the role its pods get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
    /// The role.
    pub role_name: String,
}

/// How the endpoint checks requests.
#[derive(Debug, Clone)]
pub struct PodIdentitySettings {
    /// The keys tokens must be signed with.
    pub keys: TokenKeys,
    /// Refuse a `Host` other than the agent's addresses (loopback is always accepted).
    pub check_host: bool,
    /// Requests per second, all callers together (the agent: 1000).
    pub rate: NonZeroU32,
    /// Requests allowed at once above the rate (the agent: 500).
    pub burst: NonZeroU32,
}

/// What the endpoint serves, and from what.
#[derive(Debug, Clone)]
pub struct PodIdentityEndpoint {
    /// Its checks.
    pub settings: PodIdentitySettings,
    /// Which service account gets which role.
    pub associations: crate::container_api::associations::Associations,
    /// The role credentials, shared with IMDS.
    pub roles: Arc<RoleCache>,
    /// Whose credentials they are.
    pub principal: Principal,
    /// Lockdown and audit.
    pub guard: Guard,
}

struct Served {
    endpoint: PodIdentityEndpoint,
    limiter: DefaultDirectRateLimiter,
}

/// The endpoint's router; each router has its own rate limit, as each of the agent's listeners.
pub fn router(endpoint: PodIdentityEndpoint) -> Router {
    let quota = Quota::per_second(endpoint.settings.rate).allow_burst(endpoint.settings.burst);
    Router::new().fallback(respond).with_state(Arc::new(Served {
        endpoint,
        limiter: RateLimiter::direct(quota),
    }))
}

/// Serves the endpoint on `listener` until `watch` is told to stop (then open requests are
/// answered) or the task is dropped.
pub async fn serve(
    listener: std::net::TcpListener,
    endpoint: PodIdentityEndpoint,
    watch: crate::drain::Watch,
) -> std::io::Result<()> {
    let listener = crate::container_api::CheckedListener::new(listener)?;
    let limits = crate::Limits::default();
    crate::connection::serve_router_until(listener, router(endpoint), limits, watch).await;
    Ok(())
}

/// Go's `http.Error`.
fn text(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An EKS Auth error as the agent passes it on.
fn eks_auth_error(status: StatusCode, code: &str, message: &str, fault: &str) -> Response {
    let request_id = crate::wire::request_id();
    text(
        status,
        &format!("[{request_id}]: ({code}): {message}, fault: {fault}"),
    )
}

/// Whether `Host` names the agent (or loopback), its port and brackets stripped.
fn host_allowed(headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None if host.matches(':').count() > 1 => host,
        None => host.split(':').next().unwrap_or(host),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    if loopback || AGENT_HOSTS.contains(&name) {
        Ok(())
    } else {
        Err(name.to_owned())
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "a Pod Identity request is answered at the time it arrives"
)]
async fn respond(
    State(served): State<Arc<Served>>,
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    if served.limiter.check().is_err() {
        return text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    if uri.path() != PATH {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    let endpoint = &served.endpoint;
    let caller = Caller::of(&extensions, &endpoint.guard).await;
    if endpoint.settings.check_host {
        if let Err(host) = host_allowed(&headers) {
            tracing::info!(
                message = "Pod Identity request to another host refused.",
                peer = ?caller.address(),
                host = %host,
            );
            return text(
                StatusCode::FORBIDDEN,
                &format!(
                    "Access Denied. Called agent through invalid address, please use either [169.254.170.23 fd00:ec2::23] address not {host}"
                ),
            );
        }
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .map_or(&b""[..], HeaderValue::as_bytes);
    let now = OffsetDateTime::now_utc();
    let now_seconds = now.unix_timestamp_nanos() as f64 / 1e9;
    let service_account = std::str::from_utf8(token)
        .map_err(|_| Rejection::Malformed("token is malformed: not UTF-8".to_owned()))
        .and_then(|token| {
            service_account_token::check(&endpoint.settings.keys, token, now_seconds)
        });
    let service_account = match service_account {
        Ok(service_account) => service_account,
        Err(rejection) => return refuse(endpoint, &caller, &rejection),
    };
    let Some(association) = endpoint
        .associations
        .role_of(&service_account.namespace, &service_account.name)
    else {
        tracing::info!(
            message = "Pod Identity request for a service account with no association.",
            peer = ?caller.address(),
            namespace = %service_account.namespace,
            service_account = %service_account.name,
        );
        return eks_auth_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "No Pod Identity Association exists for the service account",
            "client",
        );
    };
    issue(endpoint, &caller, &service_account, &association).await
}

/// Answers a refused token; the log names the reason, never the token.
fn refuse(endpoint: &PodIdentityEndpoint, caller: &Caller, rejection: &Rejection) -> Response {
    let reason = match rejection {
        Rejection::Empty => "empty",
        Rejection::Malformed(_) => "malformed",
        Rejection::Claims(_) => "expired or not yet valid",
        Rejection::Invalid(reason) => reason,
    };
    tracing::info!(
        message = "Pod Identity service-account token refused.",
        peer = ?caller.address(),
        reason = %reason,
    );
    let mut record = caller.record(Event::TokenRefused, audit::Endpoint::PodIdentity);
    record.reason = Some(reason);
    endpoint.guard.audit.write(&record);
    match rejection {
        Rejection::Empty => text(
            StatusCode::BAD_REQUEST,
            "Service account token cannot be empty",
        ),
        Rejection::Malformed(detail) => text(
            StatusCode::BAD_REQUEST,
            &format!("Service account token cannot be parsed: {detail}"),
        ),
        Rejection::Claims(detail) => text(
            StatusCode::BAD_REQUEST,
            &format!("Service account token failed basic claim validations: {detail}"),
        ),
        Rejection::Invalid(_) => eks_auth_error(
            StatusCode::BAD_REQUEST,
            "InvalidTokenException",
            "The specified Kubernetes service account token is invalid.",
            "client",
        ),
    }
}

async fn issue(
    endpoint: &PodIdentityEndpoint,
    caller: &Caller,
    service_account: &ServiceAccount,
    association: &Association,
) -> Response {
    let session = format!("{}@{}", service_account.namespace, service_account.name);
    let request = HandOut {
        role_name: &association.role_name,
        session: &session,
        subject: Subject::ServiceAccount {
            namespace: &service_account.namespace,
            name: &service_account.name,
        },
        endpoint: audit::Endpoint::PodIdentity,
    };
    let unavailable = || {
        eks_auth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            "No valid credentials for the associated role at the moment",
            "server",
        )
    };
    match hand_out(&endpoint.guard, &endpoint.roles, caller, request).await {
        Ok(credentials) => {
            let role_arn = endpoint
                .principal
                .role_arn(&endpoint.roles, &association.role_name);
            let account = answer::account_of(&role_arn).unwrap_or(&endpoint.principal.account_id);
            match answer::eks(&credentials, account) {
                Some(body) => {
                    let mut response = Response::new(Body::from(body));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    response
                }
                None => unavailable(),
            }
        }
        Err(Withheld::Lockdown) => text(
            StatusCode::FORBIDDEN,
            "Access Denied. This user may not read credentials on this host",
        ),
        Err(Withheld::Unavailable) => unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_host(host: &str, allowed: bool) {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        assert_eq!(host_allowed(&headers).is_ok(), allowed, "{host}");
    }

    #[test]
    fn hosts_are_the_agents_or_loopback() {
        check_host("169.254.170.23", true);
        check_host("169.254.170.23:80", true);
        check_host("[fd00:ec2::23]:80", true);
        check_host("[fd00:ec2::23]", true);
        check_host("fd00:ec2::23", true);
        check_host("127.0.0.1:8080", true);
        check_host("[::1]:80", true);
        check_host("localhost:80", true);
        check_host("169.254.170.2", false);
        check_host("example.com", false);
        check_host("", false);
    }
}
