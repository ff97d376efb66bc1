//! `/v1/instances/{id}/metadata-options`: `ModifyInstanceMetadataOptions` semantics. Only the
//! options given change; the answer shows `State: pending` until the instance serves them, then
//! `applied`.

use axum::{extract::State, http::StatusCode, response::Response};
use imds_core::spec::{InstanceSpec, OptionsSpec};

use crate::{
    admin_api::{
        model::{
            ErrorBody, InstanceMetadataOptions, InstanceMetadataOptionsResult,
            ModifyInstanceMetadataOptions, OptionsState,
        },
        reply, AdminState, ApiError, Body, PathParams,
    },
    registry::InstanceView,
};

/// The options of `view` and whether they are applied.
pub fn options_of(view: &InstanceView) -> InstanceMetadataOptions {
    let options = view.instance.options;
    InstanceMetadataOptions {
        state: if view.applied {
            OptionsState::Applied
        } else {
            OptionsState::Pending
        },
        http_tokens: options.http_tokens,
        http_put_response_hop_limit: options.http_put_response_hop_limit,
        http_endpoint: options.http_endpoint,
        http_protocol_ipv6: options.http_protocol_ipv6,
        instance_metadata_tags: options.instance_metadata_tags,
    }
}

/// The merge patch of an instance description that makes `request`'s changes.
fn patch(request: &ModifyInstanceMetadataOptions) -> serde_json::Value {
    let spec = InstanceSpec {
        metadata_options: Some(OptionsSpec {
            http_tokens: request.http_tokens.map(|value| value.to_string()),
            http_endpoint: request.http_endpoint.map(|value| value.to_string()),
            http_put_response_hop_limit: request
                .http_put_response_hop_limit
                .map(|limit| u32::from(limit.get())),
            http_protocol_ipv6: request.http_protocol_ipv6.map(|value| value.to_string()),
            instance_metadata_tags: request
                .instance_metadata_tags
                .map(|value| value.to_string()),
        }),
        ..InstanceSpec::default()
    };
    serde_json::to_value(spec).expect("instance descriptions always serialise")
}

/// `GET /v1/instances/{instance_id}/metadata-options`.
#[utoipa::path(
    get,
    path = "/v1/instances/{instance_id}/metadata-options",
    operation_id = "DescribeInstanceMetadataOptions",
    tag = "metadata-options",
    summary = "Describe the metadata options",
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "The options and whether they are served yet", body = InstanceMetadataOptionsResult),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn describe(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
) -> Result<Response, ApiError> {
    let view = state.registry.describe(&instance_id).await?;
    Ok(reply(
        StatusCode::OK,
        InstanceMetadataOptionsResult {
            instance_id,
            instance_metadata_options: options_of(&view),
        },
    ))
}

/// `PUT /v1/instances/{instance_id}/metadata-options`.
#[utoipa::path(
    put,
    path = "/v1/instances/{instance_id}/metadata-options",
    operation_id = "ModifyInstanceMetadataOptions",
    tag = "metadata-options",
    summary = "ModifyInstanceMetadataOptions: change the options given",
    params(("instance_id" = String, Path, description = "The instance's id")),
    request_body = ModifyInstanceMetadataOptions,
    responses(
        (status = 200, description = "Changed; State is pending until the instance serves them", body = InstanceMetadataOptionsResult),
        (status = 400, description = "No option given, or a value EC2 would refuse", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "The instance changed meanwhile", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn modify(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
    Body(request): Body<ModifyInstanceMetadataOptions>,
) -> Result<Response, ApiError> {
    if request.is_empty() {
        return Err(ApiError::invalid("give at least one option to change"));
    }
    let view = state
        .registry
        .update(&instance_id, &patch(&request), None)
        .await?;
    tracing::info!(message = "Metadata options changed.", instance_id = %instance_id);
    Ok(reply(
        StatusCode::OK,
        InstanceMetadataOptionsResult {
            instance_id,
            instance_metadata_options: options_of(&view),
        },
    ))
}
