//! `/v1/instances` and `/v1/instances/{id}`: register, describe, change, deregister.

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::StatusCode,
    response::Response,
};
use imds_core::spec::InstanceSpec;

use crate::{
    admin_api::{
        model::{ErrorBody, HostQuery, Instance, InstanceList, InstancePatch},
        options::options_of,
        reply, AdminState, ApiError, Body, PathParams,
    },
    registry::InstanceView,
};

/// `view` as the control API shows it.
pub fn instance_of(view: &InstanceView) -> Instance {
    let instance = &view.instance;
    Instance {
        instance_id: instance.instance_id.clone(),
        host_id: view.record.host_id.clone(),
        addresses: instance.addresses.iter().map(ToString::to_string).collect(),
        instance_type: instance.instance_type.clone(),
        region: instance.placement.region.clone(),
        availability_zone: instance.placement.availability_zone.clone(),
        iam_role: instance
            .iam
            .as_ref()
            .map(|profile| profile.role_name.clone()),
        revision: view.record.revision,
        metadata_options: options_of(view),
        metadata_no_token: view.counters.0,
        metadata_no_token_rejected: view.counters.1,
        description: view.stored.instance.clone(),
    }
}

/// `GET /v1/instances`.
#[utoipa::path(
    get,
    path = "/v1/instances",
    operation_id = "DescribeInstances",
    tag = "instances",
    summary = "Describe every instance",
    responses(
        (status = 200, description = "Every instance this host serves", body = InstanceList),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let views = state.registry.list().await?;
    Ok(reply(
        StatusCode::OK,
        InstanceList {
            instances: views.iter().map(instance_of).collect(),
        },
    ))
}

/// The `?host-id=` of a request; a query that does not parse is a JSON 400 like other errors.
pub(crate) fn host_id(
    placement: Result<Query<HostQuery>, QueryRejection>,
) -> Result<Option<String>, ApiError> {
    match placement {
        Ok(Query(placement)) => Ok(placement.host_id),
        Err(rejection) => Err(ApiError::invalid(format!(
            "the query string: {}; give at most one host-id=HOST",
            rejection.body_text()
        ))),
    }
}

/// `POST /v1/instances`.
#[utoipa::path(
    post,
    path = "/v1/instances",
    operation_id = "RegisterInstance",
    tag = "instances",
    summary = "Register an instance",
    params(HostQuery),
    request_body(content = InstanceSpec,
        description = "An instance description with the config file's [instance] keys; addresses (the source addresses the instance calls from) is required"),
    responses(
        (status = 201, description = "Registered", body = Instance,
            links(
                ("DescribeInstance" = (operation_id = "DescribeInstance",
                    parameters(("instance_id" = "$response.body#/InstanceId")))),
                ("UpdateInstance" = (operation_id = "UpdateInstance",
                    parameters(("instance_id" = "$response.body#/InstanceId")))),
                ("DeregisterInstance" = (operation_id = "DeregisterInstance",
                    parameters(("instance_id" = "$response.body#/InstanceId")))),
                ("DescribeInstanceMetadataOptions" = (operation_id = "DescribeInstanceMetadataOptions",
                    parameters(("instance_id" = "$response.body#/InstanceId")))),
                ("ModifyInstanceMetadataOptions" = (operation_id = "ModifyInstanceMetadataOptions",
                    parameters(("instance_id" = "$response.body#/InstanceId")))),
                ("DescribeInstanceEvents" = (operation_id = "DescribeInstanceEvents",
                    parameters(("instance_id" = "$response.body#/InstanceId")))),
                ("PostInstanceEvent" = (operation_id = "PostInstanceEvent",
                    parameters(("instance_id" = "$response.body#/InstanceId")))),
            )),
        (status = 400, description = "The body is not a valid description (the message names the key), it has no addresses, or host-id is not valid here", body = ErrorBody),
        (status = 409, description = "The instance id or an address is taken", body = ErrorBody),
        (status = 500, description = "The store failed, or the instance could not be prepared", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AdminState>,
    placement: Result<Query<HostQuery>, QueryRejection>,
    Body(spec): Body<InstanceSpec>,
) -> Result<Response, ApiError> {
    if spec.addresses.as_ref().is_none_or(Vec::is_empty) {
        return Err(ApiError::invalid(
            "instance.addresses: give the source addresses the instance calls from",
        ));
    }
    let view = state
        .registry
        .register_on(spec, host_id(placement)?.as_deref())
        .await?;
    tracing::info!(message = "Instance registered.", instance_id = %view.instance.instance_id);
    Ok(reply(StatusCode::CREATED, instance_of(&view)))
}

/// `GET /v1/instances/{instance_id}`.
#[utoipa::path(
    get,
    path = "/v1/instances/{instance_id}",
    operation_id = "DescribeInstance",
    tag = "instances",
    summary = "Describe an instance",
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "The instance", body = Instance),
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
    Ok(reply(StatusCode::OK, instance_of(&view)))
}

/// `PATCH /v1/instances/{instance_id}`.
#[utoipa::path(
    patch,
    path = "/v1/instances/{instance_id}",
    operation_id = "UpdateInstance",
    tag = "instances",
    summary = "Change an instance: a JSON merge patch (RFC 7396) of its description",
    params(("instance_id" = String, Path, description = "The instance's id"), HostQuery),
    request_body(content(
            (InstancePatch = "application/merge-patch+json"),
            (InstancePatch = "application/json"),
        ),
        description = "The keys to change, in the config file's [instance] keys; null removes a key"),
    responses(
        (status = 200, description = "Changed", body = Instance),
        (status = 400, description = "The body is not a JSON object, the changed description is not valid (the message names the key), or host-id is not valid here", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "An address is taken, or the instance changed meanwhile", body = ErrorBody),
        (status = 500, description = "The store failed, or the instance could not be prepared", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
    placement: Result<Query<HostQuery>, QueryRejection>,
    Body(InstancePatch(patch)): Body<InstancePatch>,
) -> Result<Response, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::invalid(
            "the body must be a JSON object: a merge patch of the instance description",
        ));
    }
    let view = state
        .registry
        .update_on(&instance_id, &patch, None, host_id(placement)?.as_deref())
        .await?;
    tracing::info!(message = "Instance changed.", instance_id = %instance_id, revision = view.record.revision);
    Ok(reply(StatusCode::OK, instance_of(&view)))
}

/// `DELETE /v1/instances/{instance_id}`.
#[utoipa::path(
    delete,
    path = "/v1/instances/{instance_id}",
    operation_id = "DeregisterInstance",
    tag = "instances",
    summary = "Deregister an instance",
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 204, description = "Deregistered"),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn deregister(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.deregister(&instance_id).await?;
    tracing::info!(message = "Instance deregistered.", instance_id = %instance_id);
    Ok(StatusCode::NO_CONTENT)
}
