//! `/v1/instances/{id}/faults`: faults injected into an instance's metadata service on purpose
//! (see `crate::faults`). They live in the process serving the instance and are not stored, so
//! only an instance this server serves has them.

#![allow(
    clippy::disallowed_methods,
    reason = "faults start, end and are listed at the time the control-API request arrives"
)]

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::Response};
use time::OffsetDateTime;

use crate::{
    admin_api::{
        model::{ErrorBody, ErrorCode, Fault, FaultList, FaultsCleared, InjectFault},
        reply, AdminState, ApiError, Body, PathParams,
    },
    faults::{unix_ms, InjectError},
    instance::slot::InstanceSlot,
    registry::RegistryError,
};

/// The slot of `instance_id`, or 404.
fn slot(state: &AdminState, instance_id: &str) -> Result<Arc<InstanceSlot>, ApiError> {
    state
        .registry
        .slot(instance_id)
        .ok_or_else(|| RegistryError::NotFound(instance_id.to_owned()).into())
}

/// `POST /v1/instances/{instance_id}/faults`.
#[utoipa::path(
    post,
    path = "/v1/instances/{instance_id}/faults",
    operation_id = "InjectFault",
    tag = "faults",
    summary = "Inject a fault into the instance's metadata service",
    description = "The fault applies to the guest requests it matches (Path, a glob below the API version, and Method) from now until its Duration passes, its Count of matching requests is used up, or it is removed. Faults are kept in the serving process only: a restart starts without them.",
    params(("instance_id" = String, Path, description = "The instance's id")),
    request_body = InjectFault,
    responses(
        (status = 201, description = "Injected; in force at once", body = Fault),
        (status = 400, description = "A field is wrong (the message names it), or the instance has the most faults it may have", body = ErrorBody),
        (status = 404, description = "No such instance served here", body = ErrorBody),
        (status = 409, description = "A fault of that FaultId is in force", body = ErrorBody),
    )
)]
pub async fn inject(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
    Body(request): Body<InjectFault>,
) -> Result<Response, ApiError> {
    let slot = slot(&state, &instance_id)?;
    let now = OffsetDateTime::now_utc();
    let fault = slot
        .faults
        .inject(request, now)
        .map_err(|error| match error {
            InjectError::Invalid(message) => ApiError::invalid(message),
            InjectError::Taken(id) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("instance {instance_id} has a fault {id} in force; remove it first"),
            ),
        })?;
    tracing::info!(
        message = "Fault injected into an instance.",
        instance_id = %instance_id,
        fault_id = %fault.id(),
        kind = fault.kind().as_str(),
    );
    Ok(reply(
        StatusCode::CREATED,
        fault.view(&instance_id, unix_ms(now)),
    ))
}

/// `GET /v1/instances/{instance_id}/faults`.
#[utoipa::path(
    get,
    path = "/v1/instances/{instance_id}/faults",
    operation_id = "DescribeFaults",
    tag = "faults",
    summary = "List the instance's faults with how many requests each matched",
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "Its faults, active ones first, then the latest ended ones", body = FaultList),
        (status = 404, description = "No such instance served here", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
) -> Result<Response, ApiError> {
    let slot = slot(&state, &instance_id)?;
    let now_ms = unix_ms(OffsetDateTime::now_utc());
    let faults = slot
        .faults
        .list()
        .iter()
        .map(|fault| fault.view(&instance_id, now_ms))
        .collect();
    Ok(reply(
        StatusCode::OK,
        FaultList {
            instance_id,
            faults,
        },
    ))
}

/// `DELETE /v1/instances/{instance_id}/faults`.
#[utoipa::path(
    delete,
    path = "/v1/instances/{instance_id}/faults",
    operation_id = "ClearFaults",
    tag = "faults",
    summary = "Remove every fault of the instance",
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "Removed; requests they held are closed without an answer", body = FaultsCleared),
        (status = 404, description = "No such instance served here", body = ErrorBody),
    )
)]
pub async fn clear(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
) -> Result<Response, ApiError> {
    let slot = slot(&state, &instance_id)?;
    let removed = slot.faults.clear(unix_ms(OffsetDateTime::now_utc()));
    tracing::info!(message = "Faults cleared.", instance_id = %instance_id, removed);
    Ok(reply(
        StatusCode::OK,
        FaultsCleared {
            instance_id,
            removed,
        },
    ))
}

/// `DELETE /v1/instances/{instance_id}/faults/{fault_id}`.
#[utoipa::path(
    delete,
    path = "/v1/instances/{instance_id}/faults/{fault_id}",
    operation_id = "RemoveFault",
    tag = "faults",
    summary = "Remove one fault: it ends now",
    params(
        ("instance_id" = String, Path, description = "The instance's id"),
        ("fault_id" = String, Path, description = "The fault's id, as injecting it answered"),
    ),
    responses(
        (status = 200, description = "Removed (or had ended already); as it stands now", body = Fault),
        (status = 404, description = "No such instance served here, or it has no such fault", body = ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<AdminState>,
    PathParams((instance_id, fault_id)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let slot = slot(&state, &instance_id)?;
    let now_ms = unix_ms(OffsetDateTime::now_utc());
    let Some(fault) = slot.faults.remove(&fault_id, now_ms) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::InvalidFaultIdNotFound,
            format!("instance {instance_id} has no fault {fault_id}"),
        ));
    };
    tracing::info!(message = "Fault removed.", instance_id = %instance_id, fault_id = %fault_id);
    Ok(reply(StatusCode::OK, fault.view(&instance_id, now_ms)))
}
