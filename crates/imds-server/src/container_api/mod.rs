//! The container credentials endpoint, as ECS and EKS serve it, on its own listener.
//!
//! Each route ties one path to one role. Clients reach it in one of two styles (AWS SDKs
//! Reference Guide, "Container credential provider"):
//! - `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`: the path, appended to `http://169.254.170.2`; no
//!   authorization (give the route no token).
//! - `AWS_CONTAINER_CREDENTIALS_FULL_URI`: the whole URL (loopback for plain HTTP), with
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or `_FILE`) sent verbatim as `Authorization`.
//!
//! # Routes
//! - `GET <route path>`: `200` with `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`
//!   as `application/json` (the ECS agent's and EKS Pod Identity Agent's fields).
//! - Missing or wrong `Authorization` on a route with a token: `403`.
//! - A caller the lockdown policy does not allow credentials: `403` (checked once per
//!   connection, see `lockdown`).
//! - No valid credentials for the role (the provider failed and nothing valid is left): `500`;
//!   SDKs retry 5xx.
//! - Unknown path: `404`; other methods: `405`.
//!
//! The ECS task metadata and credentials paths of the task table's tasks (`/v4/...`,
//! `/v2/credentials/...`) are answered by `task_metadata` when no configured route matches.
//!
//! Error bodies are `{"code": "...", "message": "..."}` (docs.rs aws-config `ecs` module: errors
//! "MAY be returned with a code and message field") and never carry an upstream error.

mod routes;
mod task_cgroup;
mod task_metadata;
mod task_stats;
pub mod tasks;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{ConnectInfo, State},
    http::{header, Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::Response,
    Router,
};
use imds_credentials::CredentialRequest;
use time::OffsetDateTime;

pub use routes::ContainerRoute;
pub use tasks::TaskTable;

use crate::{
    audit::{self, AuditLog, Event, Record},
    credentials::RoleCache,
    lockdown::{Access, Lockdown, Verdict},
    telemetry::{Refusal, RequestCounters},
};

/// What the endpoint serves from.
#[derive(Debug, Clone)]
struct Endpoint {
    routes: Arc<Vec<ContainerRoute>>,
    roles: Arc<RoleCache>,
    /// The instance the credentials are for (names STS role sessions).
    instance_id: Arc<str>,
    guard: Guard,
    /// The ECS tasks served (`task_metadata`).
    tasks: Arc<TaskTable>,
}

/// Who may read credentials, and where hand-outs and refusals are recorded.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The lockdown policy and its caller lookups; `None`: no caller lookups.
    pub lockdown: Option<Lockdown>,
    /// The audit log.
    pub audit: AuditLog,
    /// Where lockdown refusals are counted.
    pub requests: Arc<RequestCounters>,
}

/// The endpoint's router, without lockdown or audit.
pub fn router(routes: Vec<ContainerRoute>, roles: Arc<RoleCache>, instance_id: &str) -> Router {
    guarded_router(routes, roles, instance_id, Guard::default(), Arc::default())
}

fn guarded_router(
    routes: Vec<ContainerRoute>,
    roles: Arc<RoleCache>,
    instance_id: &str,
    guard: Guard,
    tasks: Arc<TaskTable>,
) -> Router {
    Router::new().fallback(respond).with_state(Endpoint {
        routes: Arc::new(routes),
        roles,
        instance_id: Arc::from(instance_id),
        guard,
        tasks,
    })
}

/// A caller: its address, and what lockdown lets it read, decided once per connection, on its
/// first request (never in the accept loop).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The caller's address.
    pub address: SocketAddr,
    /// The connection's local address, which the kernel lookup needs.
    local: Option<SocketAddr>,
    /// Its lockdown verdict, once decided; shared by the connection's requests.
    verdict: Arc<tokio::sync::OnceCell<Verdict>>,
}

impl Peer {
    /// What lockdown lets this connection read, looking the caller up on its first request.
    pub async fn verdict(&self, lockdown: Option<&Lockdown>) -> Verdict {
        *self
            .verdict
            .get_or_init(|| async {
                match (lockdown, self.local) {
                    (None, _) => Verdict::OPEN,
                    (Some(lockdown), Some(local)) => lockdown.check(local, self.address).await,
                    (Some(_), None) => Verdict {
                        caller: None,
                        access: Access::Nothing,
                    },
                }
            })
            .await
    }
}

/// A TCP listener whose connections carry what lockdown needs to check them.
struct CheckedListener {
    inner: tokio::net::TcpListener,
}

impl axum::serve::Listener for CheckedListener {
    type Io = tokio::net::TcpStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = axum::serve::Listener::accept(&mut self.inner).await;
        let local = stream.local_addr().ok();
        (
            stream,
            Peer {
                address,
                local,
                verdict: Arc::default(),
            },
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            address: self.inner.local_addr()?,
            local: None,
            verdict: Arc::default(),
        })
    }
}

/// Serves the endpoint, and the task metadata endpoint of `tasks`, on `listener` until the task
/// is dropped.
pub async fn serve(
    listener: std::net::TcpListener,
    routes: Vec<ContainerRoute>,
    roles: Arc<RoleCache>,
    instance_id: &str,
    guard: Guard,
    tasks: Arc<TaskTable>,
) -> std::io::Result<()> {
    let listener = CheckedListener {
        inner: tokio::net::TcpListener::from_std(listener)?,
    };
    let app = guarded_router(routes, roles, instance_id, guard, tasks);
    crate::connection::serve_router(listener, app, crate::Limits::default()).await;
    Ok(())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    json_response(status, Body::from(body))
}

fn json_response(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Compares tokens in constant time, whatever their lengths.
fn token_matches(expected: &str, presented: &[u8]) -> bool {
    let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
        .expect("the system random source works");
    let expected_tag = ring::hmac::sign(&key, expected.as_bytes());
    ring::hmac::verify(&key, presented, expected_tag.as_ref()).is_ok()
}

async fn respond(
    State(endpoint): State<Endpoint>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let peer = extensions
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(peer)| peer.clone());
    let guard = &endpoint.guard;
    let verdict = match &peer {
        Some(peer) => peer.verdict(guard.lockdown.as_ref()).await,
        None => Verdict::OPEN,
    };
    let audit_record = |event| {
        let record = Record::new(event, audit::Endpoint::Container);
        match &peer {
            Some(peer) => record.caller(peer.address, verdict.caller),
            None => record,
        }
    };
    let route = match routes::find(&endpoint.routes, &method, &uri, &headers) {
        Ok(route) => route,
        Err(routes::Refusal::UnknownPath) => {
            return task_metadata::respond(&endpoint, &uri, peer.as_ref(), verdict)
                .await
                .unwrap_or_else(|| routes::Refusal::UnknownPath.response());
        }
        Err(refusal) => return refusal.response(),
    };
    if verdict.access != Access::Everything {
        guard.requests.count_refusal(match verdict.access {
            Access::Nothing => Refusal::Endpoint,
            _ => Refusal::Credentials,
        });
        tracing::info!(
            message = "Lockdown refused container credentials.",
            peer = ?peer.as_ref().map(|peer| peer.address),
            uid = ?verdict.caller.map(|caller| caller.uid),
            role = %route.role_name,
        );
        let mut record = audit_record(Event::LockdownRefused);
        record.role = Some(&route.role_name);
        record.reason = Some("credentials");
        guard.audit.write(&record);
        return error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "this user may not read credentials on this host",
        );
    }
    let request = CredentialRequest {
        role_name: &route.role_name,
        instance_id: &endpoint.instance_id,
    };
    let now = OffsetDateTime::now_utc();
    let credentials = endpoint.roles.get(request, now).await;
    match &credentials.container_json {
        Some(body) if credentials.is_valid_at(now) => {
            let mut record = audit_record(Event::CredentialsIssued);
            record.instance_id = Some(&endpoint.instance_id);
            record.role = Some(&route.role_name);
            record.access_key_id = Some(&credentials.access_key_id);
            guard.audit.write(&record);
            json_response(StatusCode::OK, Body::from(body.clone()))
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "CredentialsUnavailable",
            &format!(
                "no valid credentials for role {} at the moment",
                route.role_name
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::to_bytes;
    use imds_credentials::{
        fixed::{StaticKeys, StaticProvider},
        Secret,
    };
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        let keys = StaticKeys {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned()),
            session_token: Secret::new("token".to_owned()),
        };
        let roles = Arc::new(RoleCache::new(Arc::new(StaticProvider::new(
            keys,
            Duration::from_secs(3600),
        ))));
        router(
            vec![
                ContainerRoute {
                    path: "/v2/credentials/app".to_owned(),
                    role_name: "app".to_owned(),
                    authorization_token: None,
                },
                ContainerRoute {
                    path: "/v1/credentials".to_owned(),
                    role_name: "app".to_owned(),
                    authorization_token: Some("Bearer s3cret".to_owned()),
                },
            ],
            roles,
            "i-0123456789abcdef0",
        )
    }

    #[track_caller]
    fn check(method: &str, path: &str, authorization: Option<&str>, expect: (u16, &str)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = runtime
            .block_on(app().oneshot(request.body(Body::empty()).unwrap()))
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()[header::CONTENT_TYPE].clone();
        let body = runtime
            .block_on(to_bytes(response.into_body(), 1 << 16))
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(content_type, "application/json");
        assert_eq!(status, expect.0, "{body}");
        assert!(body.contains(expect.1), "{body} lacks {}", expect.1);
    }

    /// A provider whose upstream is always down.
    #[derive(Debug)]
    struct Down;

    impl imds_credentials::CredentialProvider for Down {
        fn fetch<'a>(
            &'a self,
            _request: CredentialRequest<'a>,
            _now: OffsetDateTime,
        ) -> imds_credentials::BoxFuture<
            'a,
            Result<imds_credentials::Credentials, imds_credentials::CredentialsError>,
        > {
            Box::pin(std::future::ready(Err(
                imds_credentials::CredentialsError::Upstream("upstream detail".to_owned()),
            )))
        }
    }

    #[tokio::test]
    async fn no_valid_credentials_is_a_500_without_upstream_detail() {
        let routes = vec![ContainerRoute {
            path: "/v2/credentials/app".to_owned(),
            role_name: "app".to_owned(),
            authorization_token: None,
        }];
        let app = router(routes, Arc::new(RoleCache::new(Arc::new(Down))), "i-1");
        let request = axum::http::Request::builder()
            .uri("/v2/credentials/app")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("CredentialsUnavailable"), "{body}");
        assert!(!body.contains("upstream detail"));
    }

    #[test]
    fn routes_answer_as_the_sdks_expect() {
        check(
            "GET",
            "/v2/credentials/app",
            None,
            (200, "\"AccessKeyId\":\"AKIAIOSFODNN7EXAMPLE\""),
        );
        check(
            "GET",
            "/v2/credentials/app",
            None,
            (200, "\"Token\":\"token\""),
        );
        check(
            "GET",
            "/v1/credentials",
            Some("Bearer s3cret"),
            (200, "\"Expiration\":\"20"),
        );
        check("GET", "/v1/credentials", None, (403, "AccessDenied"));
        check(
            "GET",
            "/v1/credentials",
            Some("Bearer s3cre"),
            (403, "AccessDenied"),
        );
        check("GET", "/v2/credentials/other", None, (404, "NotFound"));
        check(
            "POST",
            "/v2/credentials/app",
            None,
            (405, "MethodNotAllowed"),
        );
    }
}
