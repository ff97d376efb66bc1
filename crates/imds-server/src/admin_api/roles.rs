//! `/v1/instances/{id}/roles/{role}/credentials`: a role's current credentials, from the same
//! cache the instance and the container endpoint are served from.

use axum::{
    extract::{ConnectInfo, Path, State},
    http::{header, Extensions, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use time::OffsetDateTime;

use crate::{
    admin_api::{AdminState, ApiError},
    audit::{Endpoint, Event, Record},
};

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
