//! The container credentials endpoint, as ECS and EKS serve it, on its own listener, and the EKS
//! Pod Identity Agent's endpoint on another (`pod_identity`).
//!
//! Clients reach the container endpoint in one of two styles (AWS SDKs and Tools Reference
//! Guide, "Container credential provider"):
//! - `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`: the path, appended to `http://169.254.170.2`; no
//!   authorization (give the route no token).
//! - `AWS_CONTAINER_CREDENTIALS_FULL_URI`: the whole URL (loopback for plain HTTP), with
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or `_FILE`) sent verbatim as `Authorization`.
//!
//! # Routes
//! - `GET <route path>` (`[[container-credentials]]`, `routes`): `200` with the ECS agent's
//!   document, `{"RoleArn", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}` as
//!   `application/json` (`answer`).
//! - `GET /role-arn/ARN` and `GET /role/NAME` (`[container-endpoint]`, `per_request`): the role
//!   the path names, as aws-vault and amazon-ecs-local-container-endpoints serve it; the same
//!   document.
//! - Missing or wrong `Authorization` on a route with a token: `403`.
//! - A caller the lockdown policy does not allow credentials: `403` (checked once per
//!   connection, see `lockdown`).
//! - No valid credentials for the role (the provider failed and nothing valid is left): `500`;
//!   SDKs retry 5xx.
//! - Unknown path: `404`; other methods: `405`; a `/role-arn/` path that is no role ARN: `400`.
//!
//! The ECS task metadata and credentials paths of the task table's tasks (`/v4/...`,
//! `/v2/credentials/...`) are answered by `task_metadata` when no configured route matches.
//!
//! Error bodies are `{"code": "...", "message": "..."}` (docs.rs aws-config `ecs` module: errors
//! "MAY be returned with a code and message field") and never carry an upstream error.
//!
//! # Layout
//! - `mod.rs`: the listener, callers and their lockdown verdicts, the hand-out of a role's
//!   credentials (lockdown, cache, audit) every route shares, and the container router.
//! - `routes`: the configured paths.
//! - `per_request`: the routes that name their role.
//! - `answer`: the agents' documents.
//! - `pod_identity`: the EKS Pod Identity Agent's `/v1/credentials`, on its own listener.
//! - `associations`: which role each service account's pods get there, kept in the store.
//! - `service_account_token`: the service-account tokens it accepts, and minting them.

mod answer;
pub mod associations;
pub(crate) mod go_json;
pub mod per_request;
pub mod pod_identity;
mod routes;
pub mod service_account_token;
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
use imds_credentials::{CredentialRequest, Delivery};
use time::OffsetDateTime;

pub use answer::account_of;
pub use associations::Associations;
pub use per_request::PerRequestRoles;
pub use routes::ContainerRoute;
pub use tasks::{TaskTable, Tasks};

use crate::{
    audit::{self, AuditLog, Event, Record},
    credentials::{RenderedCredentials, RoleCache},
    lockdown::{Access, ConnectionVerdict, LockdownSwitch, Verdict},
    telemetry::{Refusal as LockdownRefusal, RequestCounters},
};

/// The account the container endpoint's credentials belong to: the default instance's.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The instance the credentials are for (names STS role sessions, as for the instance).
    pub instance_id: Arc<str>,
    /// Its account, the account of role ARNs no provider names (`arn:aws:iam::ACCOUNT:role/NAME`).
    pub account_id: Arc<str>,
    /// Its partition (`aws`, `aws-cn`, `aws-us-gov`), for the same ARNs.
    pub partition: Arc<str>,
}

impl Principal {
    /// The ARN of `role_name`: the one its provider assumes, else the role of that name in the
    /// principal's account.
    pub fn role_arn(&self, roles: &RoleCache, role_name: &str) -> String {
        roles.provider().role_arn(role_name).unwrap_or_else(|| {
            format!(
                "arn:{}:iam::{}:role/{role_name}",
                self.partition, self.account_id
            )
        })
    }
}

/// What the container endpoint serves, and from what.
#[derive(Debug, Clone)]
pub struct ContainerEndpoint {
    /// The configured paths.
    pub routes: Vec<ContainerRoute>,
    /// Which routes that name their role are served.
    pub per_request: PerRequestRoles,
    /// The role credentials, shared with IMDS.
    pub roles: Arc<RoleCache>,
    /// Whose credentials they are.
    pub principal: Principal,
    /// Lockdown and audit.
    pub guard: Guard,
    /// The ECS tasks served (`task_metadata`), which the control API may change.
    pub tasks: Tasks,
}

/// Who may read credentials, and where hand-outs and refusals are recorded.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The lockdown in force and its caller lookups (none without a policy), shared with the
    /// guest listeners; a config reload may replace it.
    pub lockdown: LockdownSwitch,
    /// The audit log.
    pub audit: AuditLog,
    /// Where lockdown refusals are counted.
    pub requests: Arc<RequestCounters>,
}

/// The endpoint's router.
pub fn router(endpoint: ContainerEndpoint) -> Router {
    Router::new()
        .fallback(respond)
        .with_state(Arc::new(endpoint))
}

/// A caller: its address, and what lockdown lets it read, decided once per connection, on its
/// first request (never in the accept loop), and again after a reload changed the lockdown.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The caller's address.
    pub address: SocketAddr,
    /// The connection's local address, which the kernel lookup needs.
    local: Option<SocketAddr>,
    /// Its lockdown verdict and the lockdown generation it was decided under, once decided;
    /// shared by the connection's requests.
    verdict: Arc<ConnectionVerdict>,
}

impl Peer {
    /// What lockdown lets this connection read, looking the caller up on its first request.
    pub async fn verdict(&self, lockdown: &LockdownSwitch) -> Verdict {
        match self.verdict.current(lockdown) {
            Some(verdict) => verdict,
            // Two requests of one connection racing here both decide; either verdict is right.
            None => {
                self.verdict
                    .decide(lockdown, self.local, self.address)
                    .await
            }
        }
    }
}

/// A TCP listener whose connections carry what lockdown needs to check them.
pub(crate) struct CheckedListener {
    inner: tokio::net::TcpListener,
}

impl CheckedListener {
    /// Takes over a bound listener.
    pub(crate) fn new(listener: std::net::TcpListener) -> std::io::Result<CheckedListener> {
        Ok(CheckedListener {
            inner: tokio::net::TcpListener::from_std(listener)?,
        })
    }
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

/// Serves the endpoint, and the task metadata endpoint of `tasks`, on `listener` until `watch`
/// is told to stop (then open requests are answered) or the task is dropped.
pub async fn serve(
    listener: std::net::TcpListener,
    endpoint: ContainerEndpoint,
    watch: crate::drain::Watch,
) -> std::io::Result<()> {
    let listener = CheckedListener::new(listener)?;
    let limits = crate::Limits::default();
    crate::connection::serve_router_until(listener, router(endpoint), limits, watch).await;
    Ok(())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = go_json::to_vec(&serde_json::json!({ "code": code, "message": message }))
        .expect("a JSON value serialises");
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

/// The caller of a request: its address and lockdown verdict, decided on the connection's first
/// request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    peer: Option<Peer>,
    verdict: Verdict,
}

impl Caller {
    /// The caller of the request whose extensions are `extensions`.
    pub(crate) async fn of(extensions: &Extensions, guard: &Guard) -> Caller {
        let peer = extensions
            .get::<ConnectInfo<Peer>>()
            .map(|ConnectInfo(peer)| peer.clone());
        let verdict = match &peer {
            Some(peer) => peer.verdict(&guard.lockdown).await,
            None => Verdict::OPEN,
        };
        Caller { peer, verdict }
    }

    /// The caller's address, when the request came over a socket.
    pub(crate) fn address(&self) -> Option<SocketAddr> {
        self.peer.as_ref().map(|peer| peer.address)
    }

    /// An audit record of `event` at `endpoint` naming this caller.
    pub(crate) fn record<'a>(&self, event: Event, endpoint: audit::Endpoint) -> Record<'a> {
        let record = Record::new(event, endpoint);
        match &self.peer {
            Some(peer) => record.caller(peer.address, self.verdict.caller),
            None => record,
        }
    }
}

/// Whom a hand-out is for, as the audit log names it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// The instance the container endpoint serves.
    Instance(&'a str),
    /// A Kubernetes service account (EKS Pod Identity).
    ServiceAccount {
        /// Its namespace.
        namespace: &'a str,
        /// Its name.
        name: &'a str,
    },
}

/// A request for one role's credentials, once its route has found the role.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandOut<'a> {
    /// The role.
    pub role_name: &'a str,
    /// The cache's "instance" (per-instance providers make one set per value): the instance for
    /// the container endpoint, the service account's session for EKS Pod Identity.
    pub session: &'a str,
    /// Whom the audit log names.
    pub subject: Subject<'a>,
    /// Which endpoint answers.
    pub endpoint: audit::Endpoint,
}

/// Why a hand-out gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Withheld {
    /// Lockdown does not let the caller read credentials.
    Lockdown,
    /// The role has no valid credentials at the moment.
    Unavailable,
}

/// The role's current credentials, after lockdown let the caller have them; audited either way.
#[allow(
    clippy::disallowed_methods,
    reason = "a hand-out is made at the time the request arrives"
)]
pub(crate) async fn hand_out(
    guard: &Guard,
    roles: &RoleCache,
    caller: &Caller,
    request: HandOut<'_>,
) -> Result<Arc<RenderedCredentials>, Withheld> {
    if caller.verdict.access != Access::Everything {
        guard.requests.count_refusal(match caller.verdict.access {
            Access::Nothing => LockdownRefusal::Endpoint,
            _ => LockdownRefusal::Credentials,
        });
        tracing::info!(
            message = "Lockdown refused container credentials.",
            peer = ?caller.address(),
            uid = ?caller.verdict.caller.map(|caller| caller.uid),
            role = %request.role_name,
        );
        let mut record = caller.record(Event::LockdownRefused, request.endpoint);
        record.role = Some(request.role_name);
        record.reason = Some("credentials");
        subject_fields(&mut record, request.subject);
        guard.audit.write(&record);
        return Err(Withheld::Lockdown);
    }
    let now = OffsetDateTime::now_utc();
    let credentials = roles
        .get(
            CredentialRequest {
                role_name: request.role_name,
                instance_id: request.session,
                // The container endpoint has no IMDS version: it serves what a token-holding
                // caller gets (see docs/behaviour.md).
                delivery: Delivery::V2,
            },
            now,
        )
        .await;
    if credentials.container_json.is_none() || !credentials.is_valid_at(now) {
        return Err(Withheld::Unavailable);
    }
    let mut record = caller.record(Event::CredentialsIssued, request.endpoint);
    record.role = Some(request.role_name);
    record.access_key_id = Some(&credentials.access_key_id);
    subject_fields(&mut record, request.subject);
    guard.audit.write(&record);
    Ok(credentials)
}

/// Names the subject in an audit record.
fn subject_fields<'a>(record: &mut Record<'a>, subject: Subject<'a>) {
    match subject {
        Subject::Instance(instance_id) => record.instance_id = Some(instance_id),
        Subject::ServiceAccount { namespace, name } => {
            record.namespace = Some(namespace);
            record.service_account = Some(name);
        }
    }
}

/// What a container route found: the role, and the ARN its document names.
#[derive(Debug)]
pub(crate) struct Found {
    /// The role whose credentials are served.
    role_name: String,
    /// `RoleArn` of the document.
    role_arn: String,
}

async fn respond(
    State(endpoint): State<Arc<ContainerEndpoint>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let found = match per_request::find(&endpoint, &method, &uri, &headers) {
        Some(found) => found,
        None => routes::find(&endpoint.routes, &method, &uri, &headers).map(|route| Found {
            role_arn: endpoint
                .principal
                .role_arn(&endpoint.roles, &route.role_name),
            role_name: route.role_name.clone(),
        }),
    };
    let found = match found {
        Ok(found) => found,
        Err(Refusal::UnknownPath) => {
            let caller = Caller::of(&extensions, &endpoint.guard).await;
            return task_metadata::respond(&endpoint, &uri, caller.peer.as_ref(), caller.verdict)
                .await
                .unwrap_or_else(|| Refusal::UnknownPath.response());
        }
        Err(refusal) => return refusal.response(),
    };
    let caller = Caller::of(&extensions, &endpoint.guard).await;
    let request = HandOut {
        role_name: &found.role_name,
        session: &endpoint.principal.instance_id,
        subject: Subject::Instance(&endpoint.principal.instance_id),
        endpoint: audit::Endpoint::Container,
    };
    match hand_out(&endpoint.guard, &endpoint.roles, &caller, request).await {
        Ok(credentials) => match answer::ecs(&credentials, &found.role_arn) {
            Some(body) => json_response(StatusCode::OK, Body::from(body)),
            None => Refusal::Unavailable(found.role_name).response(),
        },
        Err(Withheld::Lockdown) => Refusal::Lockdown.response(),
        Err(Withheld::Unavailable) => Refusal::Unavailable(found.role_name).response(),
    }
}

/// Why the container endpoint answers with an error, in the `{"code", "message"}` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No route has the request's path: `404`.
    UnknownPath,
    /// A method other than `GET`: `405`.
    WrongMethod,
    /// A missing or wrong `Authorization` token: `403`.
    WrongToken,
    /// Lockdown does not let the caller read credentials: `403`.
    Lockdown,
    /// A `/role-arn/` path that names no IAM role: `400`.
    NotARoleArn,
    /// A `/role/` path that is no role name: `400`.
    NotARoleName,
    /// A role ARN whose role name belongs to a role that assumes another ARN: `404`.
    OtherArn(String),
    /// The role has no valid credentials at the moment: `500`.
    Unavailable(String),
}

impl Refusal {
    /// The answer.
    pub(crate) fn response(&self) -> Response {
        match self {
            Refusal::UnknownPath => error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "no credentials are served at this path",
            ),
            Refusal::WrongMethod => {
                let mut response = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "use GET",
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET"));
                response
            }
            Refusal::WrongToken => error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "missing or wrong Authorization token",
            ),
            Refusal::Lockdown => error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "this user may not read credentials on this host",
            ),
            Refusal::NotARoleArn => error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                "the path after /role-arn/ must be an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME",
            ),
            Refusal::NotARoleName => error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                "the path after /role/ must be a role name",
            ),
            Refusal::OtherArn(role_name) => error(
                StatusCode::NOT_FOUND,
                "NoSuchEntity",
                &format!("no role assumes this ARN; the role named {role_name} assumes another"),
            ),
            Refusal::Unavailable(role_name) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "CredentialsUnavailable",
                &format!("no valid credentials for role {role_name} at the moment"),
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use axum::body::to_bytes;
    use imds_credentials::{
        fixed::{StaticKeys, StaticProvider},
        Secret,
    };
    use tower::ServiceExt;

    use super::*;

    fn principal() -> Principal {
        Principal {
            instance_id: Arc::from("i-0123456789abcdef0"),
            account_id: Arc::from("111122223333"),
            partition: Arc::from("aws"),
        }
    }

    fn endpoint(roles: Arc<RoleCache>, routes: Vec<ContainerRoute>) -> ContainerEndpoint {
        ContainerEndpoint {
            routes,
            per_request: PerRequestRoles::default(),
            roles,
            principal: principal(),
            guard: Guard::default(),
            tasks: Tasks::default(),
        }
    }

    fn static_roles() -> Arc<RoleCache> {
        let keys = StaticKeys {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned()),
            session_token: Secret::new("token".to_owned()),
        };
        let sts = imds_credentials::sts::provider(imds_credentials::sts::Config {
            role_arn: "arn:aws:iam::444455556666:role/team/assumed".to_owned(),
            // Nothing listens on the discard port: no test reaches a real STS.
            endpoint_url: Some("http://127.0.0.1:9".to_owned()),
            region: Some("eu-west-1".to_owned()),
            ..imds_credentials::sts::Config::default()
        });
        let by_role = imds_credentials::by_role::ByRole::new(
            Arc::new(StaticProvider::new(keys, Duration::from_secs(3600))),
            std::collections::HashMap::from([("assumed".to_owned(), sts)]),
        );
        Arc::new(RoleCache::new(Arc::new(by_role)))
    }

    fn app() -> Router {
        router(app_endpoint())
    }

    pub(crate) fn app_endpoint() -> ContainerEndpoint {
        let mut endpoint = endpoint(
            static_roles(),
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
        );
        endpoint.per_request = PerRequestRoles {
            role_arn: true,
            role_name: true,
            authorization_token: None,
        };
        endpoint
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
        let app = router(endpoint(Arc::new(RoleCache::new(Arc::new(Down))), routes));
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
            "GET",
            "/v2/credentials/app",
            None,
            (
                200,
                "{\"RoleArn\":\"arn:aws:iam::111122223333:role/app\",\"AccessKeyId\"",
            ),
        );
        check(
            "POST",
            "/v2/credentials/app",
            None,
            (405, "MethodNotAllowed"),
        );
    }

    #[test]
    fn routes_that_name_their_role() {
        check(
            "GET",
            "/role-arn/arn:aws:iam::111122223333:role/path/app",
            None,
            (
                200,
                "{\"RoleArn\":\"arn:aws:iam::111122223333:role/path/app\",\"AccessKeyId\":\"AKIA",
            ),
        );
        check(
            "GET",
            "/role-arn/arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fapp/",
            None,
            (200, "\"RoleArn\":\"arn:aws:iam::111122223333:role/app\""),
        );
        check(
            "GET",
            "/role/app",
            None,
            (200, "\"RoleArn\":\"arn:aws:iam::111122223333:role/app\""),
        );
        // Another account's role of the same name is not that role.
        check(
            "GET",
            "/role-arn/arn:aws:iam::111122223333:role/assumed",
            None,
            (404, "NoSuchEntity"),
        );
        check("GET", "/role-arn/app", None, (400, "InvalidParameterValue"));
        check(
            "GET",
            "/role-arn/arn:aws:iam::111122223333:user/app",
            None,
            (400, "InvalidParameterValue"),
        );
        check(
            "GET",
            "/role-arn/arn:aws:iam::111122223333:role/",
            None,
            (400, "InvalidParameterValue"),
        );
        check("GET", "/role/a%20b", None, (400, "InvalidParameterValue"));
        check("GET", "/role/", None, (400, "InvalidParameterValue"));
        check("PUT", "/role/app", None, (405, "MethodNotAllowed"));
    }
}
