//! `/v1/instances` and `/v1/instances/{id}`: register, describe, change, deregister.

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::StatusCode,
    response::Response,
};
use imds_core::spec::InstanceSpec;
use serde::{Deserialize, Serialize};

use crate::{
    admin_api::{options::OptionsView, reply, AdminState, ApiError, Body},
    registry::InstanceView,
};

/// One instance as the control API shows it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceJson {
    instance_id: String,
    /// The host serving it in fleet mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<String>,
    addresses: Vec<String>,
    instance_type: String,
    region: String,
    availability_zone: String,
    iam_role: Option<String>,
    revision: i64,
    metadata_options: OptionsView,
    metadata_no_token: u64,
    metadata_no_token_rejected: u64,
    /// The description as given, in the config file's keys.
    description: InstanceSpec,
}

impl From<&InstanceView> for InstanceJson {
    fn from(view: &InstanceView) -> Self {
        let instance = &view.instance;
        InstanceJson {
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
            metadata_options: OptionsView::of(view),
            metadata_no_token: view.counters.0,
            metadata_no_token_rejected: view.counters.1,
            description: view.stored.instance.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceList {
    instances: Vec<InstanceJson>,
}

pub async fn list(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let views = state.registry.list().await?;
    Ok(reply(
        StatusCode::OK,
        InstanceList {
            instances: views.iter().map(InstanceJson::from).collect(),
        },
    ))
}

/// `?host-id=HOST` (fleet mode): the host that is to serve the instance, if not this one.
#[derive(Deserialize)]
pub struct Placement {
    #[serde(rename = "host-id")]
    host_id: Option<String>,
}

/// The `?host-id=` of a request; a query that does not parse is a JSON 400 like other errors.
fn host_id(
    placement: Result<Query<Placement>, QueryRejection>,
) -> Result<Option<String>, ApiError> {
    match placement {
        Ok(Query(placement)) => Ok(placement.host_id),
        Err(rejection) => Err(ApiError::invalid(format!(
            "the query string: {}; give at most one host-id=HOST",
            rejection.body_text()
        ))),
    }
}

pub async fn register(
    State(state): State<AdminState>,
    placement: Result<Query<Placement>, QueryRejection>,
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
    Ok(reply(StatusCode::CREATED, InstanceJson::from(&view)))
}

pub async fn describe(
    State(state): State<AdminState>,
    Path(instance_id): Path<String>,
) -> Result<Response, ApiError> {
    let view = state.registry.describe(&instance_id).await?;
    Ok(reply(StatusCode::OK, InstanceJson::from(&view)))
}

pub async fn update(
    State(state): State<AdminState>,
    Path(instance_id): Path<String>,
    placement: Result<Query<Placement>, QueryRejection>,
    Body(patch): Body<serde_json::Value>,
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
    Ok(reply(StatusCode::OK, InstanceJson::from(&view)))
}

pub async fn deregister(
    State(state): State<AdminState>,
    Path(instance_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.deregister(&instance_id).await?;
    tracing::info!(message = "Instance deregistered.", instance_id = %instance_id);
    Ok(StatusCode::NO_CONTENT)
}
