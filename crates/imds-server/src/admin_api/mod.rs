//! The control API: register, describe, change and deregister instances, change their metadata
//! options, post events to them, and choose each role's credential provider. JSON in and out, on its own listener (loopback by default),
//! never mounted on the guest listener, in plain HTTP or TLS (`crate::tls`, optionally with
//! client certificates). Every route but `/healthz` needs `Authorization: Bearer TOKEN`, a
//! token of `Tokens` (`tokens`): a read-only token may make the `GET` calls but role
//! credentials, everything else needs an admin token (`required_scope`); a read-only token is
//! answered 403 `UnauthorizedOperation` there. Every call that needs the admin scope, answered
//! or refused (401, 403), is one `control-api-call` line in the audit log, naming the token
//! (never its value), the operation, the ids in its path and the status; role credentials
//! handed out are their `credentials-issued` line instead, which names the token too.
//!
//! Every body is a type of `model`; each handler's `#[utoipa::path]` attribute says its method,
//! path, body and every status it answers, and the router is built from those same attributes
//! (`authenticated_routes`), so a route cannot be served undocumented. `openapi()` assembles the
//! document; `docs/admin-api.openapi.json` is that document, and a test fails with a diff when
//! they differ (`UPDATE_EXPECT=1 cargo test -p imds-server openapi` rewrites the file).
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
//! - `POST /v1/instances/{instance_id}/faults`: inject a fault into its metadata service.
//! - `GET /v1/instances/{instance_id}/faults`: its faults, with how many requests each matched.
//! - `DELETE /v1/instances/{instance_id}/faults`: remove all of them.
//! - `DELETE /v1/instances/{instance_id}/faults/{fault_id}`: remove one.
//! - `POST /v1/instances/{instance_id}/ssh-public-keys`: EC2 Instance Connect's
//!   `SendSSHPublicKey`: a key served to the instance for 60 seconds.
//! - `POST /v1/scenarios`: start a scenario (body: the scenario as JSON), see `crate::scenario`.
//! - `GET /v1/scenarios`: every scenario started, with each step's progress.
//! - `GET /v1/scenarios/{scenario_id}`: one.
//! - `POST /v1/scenarios/{scenario_id}/stop`: stop one; the steps not yet run are skipped.
//! - `GET /v1/tasks`: describe every ECS task the container listener serves.
//! - `POST /v1/tasks`: register one (body: a `[[tasks]]` entry as JSON); served once answered;
//!   in fleet mode `?host-id=HOST` registers it for another host.
//! - `GET /v1/tasks/{task_id}`: describe one.
//! - `PATCH /v1/tasks/{task_id}`: change one (body: a JSON merge patch of its description);
//!   served as changed once answered.
//! - `DELETE /v1/tasks/{task_id}`: deregister one; no longer served once answered (in fleet
//!   mode also another host's, which drops it when the change feed brings the removal).
//! - `POST /v1/pod-identity/service-account-tokens`: mint a service-account token the EKS Pod
//!   Identity endpoint accepts, with its own key.
//! - `GET /v1/pod-identity/associations`: every EKS Pod Identity association.
//! - `POST /v1/pod-identity/associations`: associate a service account with a role; served once
//!   answered, by every host of a fleet once the change feed brings it.
//! - `GET /v1/pod-identity/associations/{association_id}`: describe one.
//! - `PATCH /v1/pod-identity/associations/{association_id}`: give it another role.
//! - `DELETE /v1/pod-identity/associations/{association_id}`: delete it; its service account's
//!   pods get no credentials once answered.
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
//!
//! `client::AdminClient` calls these routes over the same `model` types.

pub mod client;
// The handlers are the crate's too: the web console (`crate::console`) calls them, so that a
// change made in a browser takes the control API's own path.
pub(crate) mod events;
pub(crate) mod faults;
pub(crate) mod instances;
mod metrics;
pub mod model;
pub(crate) mod options;
mod pod_identity_associations;
pub(crate) mod roles;
pub(crate) mod scenarios;
mod service_account_tokens;
mod ssh_keys;
pub(crate) mod tasks;

pub(crate) use scenarios::perform;
pub mod tokens;

use std::{collections::HashMap, fmt, sync::Arc};

use axum::{
    extract::{
        rejection::{JsonRejection, PathRejection},
        FromRequest, FromRequestParts, MatchedPath, Path, RawPathParams, Request, State,
    },
    http::{header, request::Parts, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Json, Router,
};
use serde::{de::DeserializeOwned, Serialize};
use utoipa::{
    openapi::{
        schema::{ObjectBuilder, SchemaType, Type},
        security::{Http, HttpAuthScheme, SecurityScheme},
        ContentBuilder, HeaderBuilder, OpenApi, Ref, ResponseBuilder,
    },
    Modify, OpenApi as _,
};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use crate::admin_api::tokens::{Caller, Scope, Tokens};
use crate::{
    admin_api::model::{ErrorBody, ErrorCode},
    audit::{AuditLog, Endpoint, Event, Record},
    container_api::{service_account_token::SigningKey, Associations, TaskTable, Tasks},
    registry::{Registry, RegistryError},
    scenario::Scenarios,
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

    /// True when `tag`, the MAC under `key` of what a caller presented, is this token's: the
    /// MACs are compared in constant time, and the length of the real token does not leak.
    fn verify(&self, key: &ring::hmac::Key, tag: &[u8]) -> bool {
        ring::hmac::verify(key, self.0.as_bytes(), tag).is_ok()
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
    /// The scenarios started on this server.
    pub scenarios: Arc<Scenarios>,
    /// The ECS tasks the container listener serves.
    pub tasks: Tasks,
    /// The EKS Pod Identity associations.
    pub associations: Associations,
    /// The key service-account tokens are minted with: the one the EKS Pod Identity endpoint
    /// checks them with, when it is served with a private key.
    pub token_signer: Option<Arc<SigningKey>>,
}

impl AdminState {
    /// The state of a control API serving `registry`, with fresh request counters, no audit log,
    /// no scenarios (whose steps act on `default_instance` unless they name one), and no tasks
    /// yet (those registered are kept in the registry's store).
    pub fn new(registry: Arc<Registry>, default_instance: Option<String>) -> AdminState {
        AdminState {
            tasks: Tasks::new(
                TaskTable::default(),
                registry.store().clone(),
                registry.host_id().map(str::to_owned),
            ),
            associations: Associations::empty(registry.store().clone()),
            registry,
            requests: Arc::default(),
            audit: AuditLog::off(),
            scenarios: Arc::new(Scenarios::new(default_instance)),
            token_signer: None,
        }
    }
}

/// The document's frame: what the routes' attributes do not say.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "imds control API",
        version = "1",
        description = "Register, describe, change and deregister the instances an imds server serves; change their metadata options (ModifyInstanceMetadataOptions semantics); post Spot, rebalance, maintenance and Auto Scaling events; choose each role's credential provider (generated, static or sts) at run time. Every route but /healthz needs Authorization: Bearer TOKEN; a read-only token may make the GET calls but GetRoleCredentials, and is answered 403 UnauthorizedOperation on the others, which need an admin token. Errors are {\"Code\": ..., \"Message\": ...}. This document is generated from the server's types."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "instances", description = "Instances: register, describe, change, deregister"),
        (name = "metadata-options", description = "ModifyInstanceMetadataOptions"),
        (name = "events", description = "Spot, rebalance, maintenance and Auto Scaling events"),
        (name = "roles", description = "Each role's credential provider, and its credentials"),
        (name = "faults", description = "Faults injected into an instance's metadata service"),
        (name = "tasks", description = "ECS tasks the container listener serves: register, describe, change, deregister"),
        (name = "pod-identity", description = "EKS Pod Identity: which role each service account gets, and service-account tokens the endpoint accepts"),
        (name = "scenarios", description = "Timelines of control-API calls, each at an offset from the scenario's start"),
        (name = "metrics", description = "Prometheus metrics"),
        (name = "health", description = "Liveness"),
    )
)]
struct Frame;

/// The `bearer` security scheme every route but `/healthz` requires.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, document: &mut OpenApi) {
        document
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// `GET /healthz`.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "Healthz",
    tag = "health",
    summary = "Liveness",
    security(()),
    responses((status = 200, description = "The server runs", body = String, content_type = "text/plain"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// The routes that need no token.
fn public_routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new().routes(routes!(healthz))
}

/// The routes behind the bearer token. A route is added here with its handler, whose
/// `#[utoipa::path]` attribute is its entry in the document; `authenticate` answers 401 for
/// each of them, which `openapi` adds to their documented answers.
fn authenticated_routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(metrics::metrics))
        .routes(routes!(instances::list, instances::register))
        .routes(routes!(
            instances::describe,
            instances::update,
            instances::deregister
        ))
        .routes(routes!(options::describe, options::modify))
        .routes(routes!(events::list, events::post))
        .routes(routes!(events::cancel))
        .routes(routes!(events::complete))
        .routes(routes!(faults::list, faults::inject, faults::clear))
        .routes(routes!(faults::remove))
        .routes(routes!(ssh_keys::send))
        .routes(routes!(scenarios::list, scenarios::start))
        .routes(routes!(scenarios::describe))
        .routes(routes!(scenarios::stop))
        .routes(routes!(roles::list))
        .routes(routes!(roles::describe, roles::put, roles::delete))
        .routes(routes!(roles::credentials))
        .routes(routes!(tasks::list, tasks::register))
        .routes(routes!(tasks::describe, tasks::update, tasks::deregister))
        .routes(routes!(service_account_tokens::mint))
        .routes(routes!(
            pod_identity_associations::list,
            pod_identity_associations::create
        ))
        .routes(routes!(
            pod_identity_associations::describe,
            pod_identity_associations::update,
            pod_identity_associations::delete
        ))
}

/// The control API's OpenAPI document, as `docs/admin-api.openapi.json` holds it.
pub fn openapi() -> OpenApi {
    let mut document = Frame::openapi();
    document.merge(public_routes().into_openapi());
    let mut authenticated = authenticated_routes().into_openapi();
    let error_body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Error")))
        .build();
    let unauthorized = ResponseBuilder::new()
        .description("Missing or wrong bearer token")
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(SchemaType::new(Type::String)))
                .description(Some("Bearer"))
                .build(),
        )
        .content("application/json", error_body.clone())
        .build();
    let forbidden = ResponseBuilder::new()
        .description("The token is read-only; this call needs an admin token")
        .content("application/json", error_body)
        .build();
    for (path, item) in &mut authenticated.paths.paths {
        for (method, operation) in [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ] {
            let Some(operation) = operation else {
                continue;
            };
            operation
                .responses
                .responses
                .insert("401".to_owned(), unauthorized.clone().into());
            if required_scope(&method, path) == Scope::Admin {
                operation
                    .responses
                    .responses
                    .insert("403".to_owned(), forbidden.clone().into());
            }
        }
    }
    document.merge(authenticated);
    document
}

/// `openapi()` as JSON text, two-space indented with a final newline, as the file is committed.
pub fn openapi_json() -> String {
    let mut document = serde_json::to_value(openapi()).expect("OpenAPI documents serialise");
    name_link_fields(&mut document);
    let mut text = serde_json::to_string_pretty(&document).expect("JSON values serialise");
    text.push('\n');
    text
}

/// Renames the fields of every response's links to OpenAPI's names: utoipa 5 writes a Link
/// Object's `operationId`, `operationRef` and `requestBody` in snake case.
fn name_link_fields(document: &mut serde_json::Value) {
    let Some(paths) = document
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    let responses = operations
        .filter_map(|operation| operation.get_mut("responses"))
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|responses| responses.values_mut());
    let links = responses
        .filter_map(|response| response.get_mut("links"))
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|links| links.values_mut())
        .filter_map(serde_json::Value::as_object_mut);
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(from) {
                link.insert(to.to_owned(), value);
            }
        }
    }
}

/// The role-credentials route: a `GET` that hands out credentials, so it needs the admin scope.
const CREDENTIALS_ROUTE: &str = "/v1/instances/{instance_id}/roles/{role_name}/credentials";

/// The scope a call of `method` on `route` (a path as the document writes it, with
/// `{parameters}`) needs: `GET`s are read-only but role credentials; the rest is admin.
pub fn required_scope(method: &Method, route: &str) -> Scope {
    if *method == Method::GET && route != CREDENTIALS_ROUTE {
        Scope::ReadOnly
    } else {
        Scope::Admin
    }
}

/// `operationId`s by method and route, from the document.
fn operation_ids() -> HashMap<(Method, String), String> {
    let mut ids = HashMap::new();
    for (path, item) in openapi().paths.paths {
        for (method, operation) in [
            (Method::GET, item.get),
            (Method::PUT, item.put),
            (Method::POST, item.post),
            (Method::DELETE, item.delete),
            (Method::PATCH, item.patch),
        ] {
            if let Some(id) = operation.and_then(|operation| operation.operation_id) {
                ids.insert((method, path.clone()), id);
            }
        }
    }
    ids
}

/// What `authenticate` needs: the tokens, and where admin-scope calls are recorded.
#[derive(Clone)]
struct Gate {
    tokens: Tokens,
    audit: AuditLog,
    operations: Arc<HashMap<(Method, String), String>>,
}

/// Builds the control API router, with fresh request counters, no audit log and no default
/// instance for scenarios.
pub fn router(registry: Arc<Registry>, tokens: impl Into<Tokens>) -> Router {
    router_with(AdminState::new(registry, None), tokens.into())
}

/// Builds the control API router on `state`, admitting `tokens`.
pub fn router_with(state: AdminState, tokens: Tokens) -> Router {
    let gate = Gate {
        tokens,
        audit: state.audit.clone(),
        operations: Arc::new(operation_ids()),
    };
    let (authenticated, _) = authenticated_routes()
        .route_layer(middleware::from_fn_with_state(gate, authenticate))
        .split_for_parts();
    let (public, _) = public_routes().split_for_parts();
    public
        .merge(authenticated)
        .with_state(state)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
        })
}

/// Serves the control API on `listener` until `watch` is told to stop (open requests are then
/// answered, new connections refused) or the task is dropped: over TLS when `tls` is given
/// (whose certificate `ServerTls::reload` replaces for new connections), else plain HTTP.
pub async fn serve(
    listener: std::net::TcpListener,
    state: AdminState,
    tokens: Tokens,
    tls: Option<crate::tls::ServerTls>,
    watch: crate::drain::Watch,
) -> std::io::Result<()> {
    crate::connection::serve_control(listener, router_with(state, tokens), tls, watch).await
}

async fn authenticate(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    let caller = gate.tokens.authenticate(presented);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let method = request.method().clone();
    let needed = required_scope(&method, &route);
    let (mut parts, body) = request.into_parts();
    let parameters: Vec<(String, String)> =
        match RawPathParams::from_request_parts(&mut parts, &()).await {
            Ok(parameters) => parameters
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            Err(_) => Vec::new(),
        };
    let mut request = Request::from_parts(parts, body);
    let address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|axum::extract::ConnectInfo(address)| *address);
    let response = match &caller {
        None => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::AuthFailure,
                "missing or wrong bearer token: send Authorization: Bearer TOKEN",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Some(caller) if !caller.scope.allows(needed) => ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::UnauthorizedOperation,
            format!(
                "the token '{}' is {}: this call needs an admin token",
                caller.name,
                caller.scope.as_str()
            ),
        )
        .into_response(),
        Some(caller) => {
            request.extensions_mut().insert(caller.clone());
            next.run(request).await
        }
    };
    // Role credentials handed out have their `credentials-issued` line (with the token's
    // name) from the handler: one line a call.
    let issued = route == CREDENTIALS_ROUTE && response.status().is_success();
    if needed == Scope::Admin && !issued {
        let parameter = |name: &str| {
            parameters
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let mut record = Record::new(Event::ControlApiCall, Endpoint::ControlApi);
        record.caller = address;
        record.token = caller.as_ref().map(|caller| &*caller.name);
        record.operation = gate.operations.get(&(method, route)).map(String::as_str);
        record.instance_id = parameter("instance_id");
        record.role = parameter("role_name");
        record.event_id = parameter("event_id");
        record.fault = parameter("fault_id");
        record.task_id = parameter("task_id");
        record.status = Some(response.status().as_u16());
        gate.audit.write(&record);
    }
    response
}

/// A control-API error: status, EC2-style code and a message that says what to do.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, as the answer's `Message` says it (never a secret).
    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `InvalidParameterValue`: a value is refused.
    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidParameterValue,
            message,
        )
    }

    /// 400 `InvalidRequest`: the request does not parse.
    fn request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// 500 `InternalError`; the details are for the log, which the caller writes.
    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            message,
        )
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::InvalidInstanceIdNotFound,
                format!("the instance ID '{id}' does not exist"),
            ),
            RegistryError::RoleNotFound(name) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NoSuchEntity,
                format!("the role {name} has no provider of its own (it uses the default)"),
            ),
            RegistryError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
            }
            RegistryError::Invalid(message) => ApiError::invalid(message),
            RegistryError::Unavailable(message) => {
                tracing::warn!(message = "Control-API write refused: the store is unavailable.", error = %message);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StoreUnavailable,
                    "the store is unavailable; nothing was changed, try again",
                )
            }
            RegistryError::Store(message) => {
                tracing::error!(message = "Control-API call failed in the store.", error = %message);
                ApiError::internal("the store failed; see the server log")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                code: self.code,
                message: self.message,
            }),
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
            // JSON of the wrong shape or with a refused value: EC2 answers such parameters
            // `InvalidParameterValue`.
            Err(rejection @ JsonRejection::JsonDataError(_)) => Err(ApiError::invalid(format!(
                "the body is not valid JSON for this call: {}",
                rejection.body_text()
            ))),
            Err(rejection) => Err(ApiError::request(format!(
                "the body is not valid JSON for this call: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// Path parameters whose rejection (a segment that is not UTF-8 once percent-decoded) is an
/// `ApiError` like every other answer.
pub struct PathParams<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::request(format!("the path: {}", rejection.body_text()))
}

/// Serialises a wire struct as a JSON response with `status`.
fn reply<T: Serialize>(status: StatusCode, value: T) -> Response {
    (status, Json(value)).into_response()
}

#[cfg(test)]
mod tests;
