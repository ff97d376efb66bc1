//! `/v1/roles`: each role's credential provider, chosen and changed at run time; and
//! `/v1/instances/{id}/roles/{role}/credentials`: a role's current credentials, from the same
//! cache the instance and the container endpoint are served from.

use axum::{
    extract::{ConnectInfo, Path, State},
    http::{header, Extensions, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use imds_core::render::aws_timestamp;
use imds_credentials::spec::RoleSpec;
use serde::Serialize;
use time::OffsetDateTime;

use crate::{
    admin_api::{reply, AdminState, ApiError, Body},
    audit::{Endpoint, Event, Record},
    registry::RoleView,
};

/// One role as the control API shows it; never with its secret key or token.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RoleJson {
    role_name: String,
    provider: String,
    revision: i64,
    updated_at: String,
    /// The served instances whose role it is.
    instance_ids: Vec<String>,
    /// The description as given, in the config file's keys, without secrets.
    description: RoleSpec,
}

impl From<RoleView> for RoleJson {
    fn from(view: RoleView) -> Self {
        RoleJson {
            provider: view.spec.provider_name().to_owned(),
            role_name: view.name,
            revision: view.revision,
            updated_at: aws_timestamp(view.updated_at),
            instance_ids: view.instance_ids,
            description: view.spec,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RoleList {
    roles: Vec<RoleJson>,
}

/// `GET /v1/roles`: every role with a provider of its own (the others use the default).
pub async fn list(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let roles = state.registry.roles().await?;
    Ok(reply(
        StatusCode::OK,
        RoleList {
            roles: roles.into_iter().map(RoleJson::from).collect(),
        },
    ))
}

/// `GET /v1/roles/{role_name}`.
pub async fn describe(
    State(state): State<AdminState>,
    Path(role_name): Path<String>,
) -> Result<Response, ApiError> {
    let view = state.registry.role(&role_name).await?;
    Ok(reply(StatusCode::OK, RoleJson::from(view)))
}

/// `PUT /v1/roles/{role_name}`: sets the role's provider (body: a `[[roles]]` entry as JSON).
pub async fn put(
    State(state): State<AdminState>,
    Path(role_name): Path<String>,
    Body(spec): Body<RoleSpec>,
) -> Result<Response, ApiError> {
    let view = state.registry.put_role(&role_name, spec).await?;
    tracing::info!(
        message = "Role provider set.",
        role = %role_name,
        provider = %view.spec.provider_name(),
        revision = view.revision,
    );
    Ok(reply(StatusCode::OK, RoleJson::from(view)))
}

/// `DELETE /v1/roles/{role_name}`: the role uses the default provider again.
pub async fn delete(
    State(state): State<AdminState>,
    Path(role_name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.delete_role(&role_name).await?;
    tracing::info!(message = "Role provider removed; the role uses the default.", role = %role_name);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET`: `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`, or `503` when the role has
/// no valid credentials (the provider failed and nothing valid is left).
pub async fn credentials(
    State(state): State<AdminState>,
    Path((instance_id, role_name)): Path<(String, String)>,
    extensions: Extensions,
) -> Result<Response, ApiError> {
    let rendered = state
        .registry
        .role_credentials(&instance_id, &role_name)
        .await?;
    match &rendered.container_json {
        Some(json) if rendered.is_valid_at(OffsetDateTime::now_utc()) => {
            let mut record = Record::new(Event::CredentialsIssued, Endpoint::ControlApi);
            record.caller = extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|ConnectInfo(address)| *address);
            record.instance_id = Some(&instance_id);
            record.role = Some(&role_name);
            record.access_key_id = Some(&rendered.access_key_id);
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
            "CredentialsUnavailable",
            format!("no valid credentials for role {role_name} at the moment; see the server log"),
        )),
    }
}
