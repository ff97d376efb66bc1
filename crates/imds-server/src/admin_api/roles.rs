//! `/v1/roles`: each role's credential provider, chosen and changed at run time; and
//! `/v1/instances/{id}/roles/{role}/credentials`: a role's current credentials, from the same
//! cache the instance and the container endpoint are served from.

use axum::{
    extract::{rejection::QueryRejection, ConnectInfo, Query, State},
    http::{header, Extensions, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use imds_core::render::aws_timestamp;
use imds_credentials::{spec::RoleSpec, Delivery};
use time::OffsetDateTime;

use crate::{
    admin_api::{
        model::{DeliveryQuery, ErrorBody, ErrorCode, Role, RoleCredentials, RoleList},
        reply, AdminState, ApiError, Body, PathParams,
    },
    audit::{Endpoint, Event, Record},
    registry::RoleView,
};

/// `view` as the control API shows it.
fn role_of(view: RoleView) -> Role {
    Role {
        provider: view.spec.provider_name().to_owned(),
        role_name: view.name,
        revision: view.revision,
        updated_at: aws_timestamp(view.updated_at),
        instance_ids: view.instance_ids,
        description: view.spec,
    }
}

/// `GET /v1/roles`: every role with a provider of its own (the others use the default).
#[utoipa::path(
    get,
    path = "/v1/roles",
    operation_id = "DescribeRoles",
    tag = "roles",
    summary = "Every role with a provider of its own",
    responses(
        (status = 200, description = "The roles; the others use the default provider", body = RoleList),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let roles = state.registry.roles().await?;
    Ok(reply(
        StatusCode::OK,
        RoleList {
            roles: roles.into_iter().map(role_of).collect(),
        },
    ))
}

/// `GET /v1/roles/{role_name}`.
#[utoipa::path(
    get,
    path = "/v1/roles/{role_name}",
    operation_id = "DescribeRole",
    tag = "roles",
    summary = "One role's provider (without its secrets)",
    params(("role_name" = String, Path, description = "The role's name", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9+=,.@_-]+$")),
    responses(
        (status = 200, description = "The role", body = Role),
        (status = 404, description = "The role has no provider of its own", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn describe(
    State(state): State<AdminState>,
    PathParams(role_name): PathParams<String>,
) -> Result<Response, ApiError> {
    let view = state.registry.role(&role_name).await?;
    Ok(reply(StatusCode::OK, role_of(view)))
}

/// `PUT /v1/roles/{role_name}`: sets the role's provider (body: a `[[roles]]` entry as JSON).
#[utoipa::path(
    put,
    path = "/v1/roles/{role_name}",
    operation_id = "PutRole",
    tag = "roles",
    summary = "Set a role's provider; its instances get credentials from it before the answer",
    params(("role_name" = String, Path, description = "The role's name (1 to 64 letters, digits and +=,.@_-)", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9+=,.@_-]+$")),
    request_body(content = RoleSpec,
        description = "A [[roles]] entry of the config file, as JSON. Keys the provider does not use are refused; name, if given, must be the path's"),
    responses(
        (status = 200, description = "Set", body = Role,
            links(
                ("DescribeRole" = (operation_id = "DescribeRole",
                    parameters(("role_name" = "$response.body#/RoleName")))),
                ("DeleteRole" = (operation_id = "DeleteRole",
                    parameters(("role_name" = "$response.body#/RoleName")))),
            )),
        (status = 400, description = "Not a role name, or the description is not valid (the message names the key)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn put(
    State(state): State<AdminState>,
    PathParams(role_name): PathParams<String>,
    Body(spec): Body<RoleSpec>,
) -> Result<Response, ApiError> {
    let view = state.registry.put_role(&role_name, spec).await?;
    tracing::info!(
        message = "Role provider set.",
        role = %role_name,
        provider = %view.spec.provider_name(),
        revision = view.revision,
    );
    Ok(reply(StatusCode::OK, role_of(view)))
}

/// `DELETE /v1/roles/{role_name}`: the role uses the default provider again.
#[utoipa::path(
    delete,
    path = "/v1/roles/{role_name}",
    operation_id = "DeleteRole",
    tag = "roles",
    summary = "The role uses the default provider again",
    params(("role_name" = String, Path, description = "The role's name", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9+=,.@_-]+$")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "The role has no provider of its own", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AdminState>,
    PathParams(role_name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.delete_role(&role_name).await?;
    tracing::info!(message = "Role provider removed; the role uses the default.", role = %role_name);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET`: `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`, or `503` when the role has
/// no valid credentials (the provider failed and nothing valid is left). The body is the cached
/// rendering the container endpoint serves (`wire::ContainerCredentials`), whose schema is
/// `RoleCredentials`.
#[utoipa::path(
    get,
    path = "/v1/instances/{instance_id}/roles/{role_name}/credentials",
    operation_id = "GetRoleCredentials",
    tag = "roles",
    summary = "A role's current credentials as the instance gets them (for imds env and imds exec); audited",
    params(
        ("instance_id" = String, Path, description = "The instance's id"),
        ("role_name" = String, Path, description = "The role's name", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9+=,.@_-]+$"),
        DeliveryQuery,
    ),
    responses(
        (status = 200, description = "The credentials", body = RoleCredentials),
        (status = 400, description = "Not a role name, or not a delivery", body = ErrorBody),
        (status = 404, description = "No such instance, or no IMDSv1 set (the instance's tokens are required)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "No valid credentials at the moment (the server log says why), or the store is unavailable", body = ErrorBody),
    )
)]
#[allow(
    clippy::disallowed_methods,
    reason = "a control-API request is answered at the time it arrives"
)]
pub async fn credentials(
    State(state): State<AdminState>,
    PathParams((instance_id, role_name)): PathParams<(String, String)>,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
    extensions: Extensions,
) -> Result<Response, ApiError> {
    imds_core::role_name::check_role_name(&role_name)
        .map_err(|error| ApiError::invalid(format!("role_name: {error}")))?;
    let delivery = match query {
        Ok(Query(DeliveryQuery { delivery: None })) => Delivery::V2,
        Ok(Query(DeliveryQuery {
            delivery: Some(given),
        })) => Delivery::parse(&given)
            .ok_or_else(|| ApiError::invalid(format!("delivery: {given:?} is not 1.0 or 2.0")))?,
        Err(rejection) => {
            return Err(ApiError::invalid(format!(
                "the query string: {}; give at most one delivery=1.0|2.0",
                rejection.body_text()
            )))
        }
    };
    let rendered = state
        .registry
        .role_credentials(&instance_id, &role_name, delivery)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("instance {instance_id} requires tokens: it has no IMDSv1 (1.0) set"),
            )
        })?;
    match &rendered.container_json {
        Some(json) if rendered.is_valid_at(OffsetDateTime::now_utc()) => {
            let mut record = Record::new(Event::CredentialsIssued, Endpoint::ControlApi);
            record.caller = extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|ConnectInfo(address)| *address);
            record.instance_id = Some(&instance_id);
            record.role = Some(&role_name);
            record.access_key_id = Some(&rendered.access_key_id);
            record.delivery = Some(delivery.as_str());
            record.token = extensions
                .get::<super::Caller>()
                .map(|caller| &*caller.name);
            state.audit.write(&record);
            let mut response = json.clone().into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::CredentialsUnavailable,
            format!("no valid credentials for role {role_name} at the moment; see the server log"),
        )),
    }
}
