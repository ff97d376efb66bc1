//! `/v1/scenarios`: start a scenario (a timeline of control-API calls, see `crate::scenario`),
//! follow its progress, stop it. Scenarios live in the serving process: a restart starts
//! without them.

use axum::{
    extract::{Query, State},
    http::{Extensions, StatusCode},
    response::{IntoResponse, Response},
};

use crate::{
    admin_api::{
        events, faults, instances,
        model::{
            ErrorBody, ErrorCode, HostQuery, PodIdentityAssociationTarget, Scenario,
            ScenarioAction, ScenarioList, ScenarioRun, ScenarioStep, UpdatePodIdentityAssociation,
        },
        options, pod_identity_associations, reply, roles, ssh_keys, tasks, AdminState, ApiError,
        Body, PathParams,
    },
    scenario::StartError,
};

/// `POST /v1/scenarios`.
#[utoipa::path(
    post,
    path = "/v1/scenarios",
    operation_id = "StartScenario",
    tag = "scenarios",
    summary = "Start a scenario: its steps run at their offsets from now",
    description = "The whole scenario is checked first (every offset, action and payload, and that each instance is served here); nothing runs unless it is valid. Each step then makes its control-API call at its offset, as a client would; a failed step is recorded and the later ones still run.",
    request_body = Scenario,
    responses(
        (status = 201, description = "Started", body = ScenarioRun,
            links(
                ("DescribeScenario" = (operation_id = "DescribeScenario",
                    parameters(("scenario_id" = "$response.body#/ScenarioId")))),
                ("StopScenario" = (operation_id = "StopScenario",
                    parameters(("scenario_id" = "$response.body#/ScenarioId")))),
            )),
        (status = 400, description = "The scenario is not valid (the message names the key), or the most scenarios are running", body = ErrorBody),
    )
)]
pub async fn start(
    State(state): State<AdminState>,
    Body(scenario): Body<Scenario>,
) -> Result<Response, ApiError> {
    let run = state
        .scenarios
        .start(&state, scenario)
        .map_err(|error| match error {
            StartError::Invalid(message) => ApiError::invalid(message),
            busy @ StartError::Busy => ApiError::invalid(busy.to_string()),
        })?;
    Ok(reply(StatusCode::CREATED, run))
}

/// `GET /v1/scenarios`.
#[utoipa::path(
    get,
    path = "/v1/scenarios",
    operation_id = "DescribeScenarios",
    tag = "scenarios",
    summary = "Every scenario started (the latest ended ones are kept), with each step's progress",
    responses((status = 200, description = "The scenarios, in the order started", body = ScenarioList))
)]
pub async fn list(State(state): State<AdminState>) -> Response {
    reply(StatusCode::OK, state.scenarios.list())
}

fn not_found(scenario_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::InvalidScenarioIdNotFound,
        format!("there is no scenario {scenario_id}"),
    )
}

/// `GET /v1/scenarios/{scenario_id}`.
#[utoipa::path(
    get,
    path = "/v1/scenarios/{scenario_id}",
    operation_id = "DescribeScenario",
    tag = "scenarios",
    summary = "One scenario with each step's progress",
    params(("scenario_id" = String, Path, description = "The scenario's id, as starting it answered")),
    responses(
        (status = 200, description = "The scenario", body = ScenarioRun),
        (status = 404, description = "No such scenario", body = ErrorBody),
    )
)]
pub async fn describe(
    State(state): State<AdminState>,
    PathParams(scenario_id): PathParams<String>,
) -> Result<Response, ApiError> {
    let run = state
        .scenarios
        .describe(&scenario_id)
        .ok_or_else(|| not_found(&scenario_id))?;
    Ok(reply(StatusCode::OK, run))
}

/// `POST /v1/scenarios/{scenario_id}/stop`: an action on the scenario, which stays described
/// (as `stopped`) afterwards.
#[utoipa::path(
    post,
    path = "/v1/scenarios/{scenario_id}/stop",
    operation_id = "StopScenario",
    tag = "scenarios",
    summary = "Stop a scenario: the steps not yet run are skipped",
    description = "A step whose call is under way finishes. What the steps that ran did stays: a fault they injected ends when it says, or when removed.",
    params(("scenario_id" = String, Path, description = "The scenario's id")),
    responses(
        (status = 200, description = "Stopped (or had ended already); as it stands now", body = ScenarioRun),
        (status = 404, description = "No such scenario", body = ErrorBody),
    )
)]
pub async fn stop(
    State(state): State<AdminState>,
    PathParams(scenario_id): PathParams<String>,
) -> Result<Response, ApiError> {
    let run = state
        .scenarios
        .stop(&scenario_id)
        .ok_or_else(|| not_found(&scenario_id))?;
    tracing::info!(message = "Scenario stopped.", scenario_id = %scenario_id);
    Ok(reply(StatusCode::OK, run))
}

/// The id of the association `target` names: its `AssociationId`, or that of the association of
/// its `Namespace` and `ServiceAccount` now (404 `ResourceNotFoundException`, as the routes
/// answer for an unknown id, when there is none).
fn association_id(
    state: &AdminState,
    target: &PodIdentityAssociationTarget,
) -> Result<String, ErrorBody> {
    if let Some(association_id) = &target.association_id {
        return Ok(association_id.clone());
    }
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let service_account = target.service_account.as_deref().unwrap_or_default();
    state
        .associations
        .list()
        .iter()
        .find(|registered| {
            registered.association.namespace == namespace
                && registered.association.service_account == service_account
        })
        .map(|registered| registered.association_id.clone())
        .ok_or_else(|| ErrorBody {
            code: ErrorCode::ResourceNotFoundException,
            message: format!(
                "there is no pod identity association for the service account \
                 {namespace}/{service_account}"
            ),
        })
}

/// Makes `step`'s control-API call on `instance_id` (none for the actions on a role, a task or
/// an association) through the same handler a client's call reaches: the answer's body, or its
/// error.
pub(crate) async fn perform(
    state: &AdminState,
    instance_id: Option<&str>,
    step: &ScenarioStep,
) -> Result<serde_json::Value, ErrorBody> {
    let Some(action) = step.actions().first().copied() else {
        return Err(ErrorBody {
            code: ErrorCode::InvalidParameterValue,
            message: "the step has no action".to_owned(),
        });
    };
    let instance = || PathParams(instance_id.unwrap_or_default().to_owned());
    let event = |event_id: &str| {
        PathParams((
            instance_id.unwrap_or_default().to_owned(),
            event_id.to_owned(),
        ))
    };
    let state_ref = state;
    let state = || State(state.clone());
    let answer = match action {
        ScenarioAction::PostEvent(request) => {
            events::post(state(), instance(), Body(request.clone())).await
        }
        ScenarioAction::CancelEvent(event_id) => events::cancel(state(), event(event_id)).await,
        ScenarioAction::CompleteEvent(event_id) => events::complete(state(), event(event_id)).await,
        ScenarioAction::InjectFault(request) => {
            faults::inject(state(), instance(), Body(request.clone())).await
        }
        ScenarioAction::RemoveFault(fault_id) => faults::remove(state(), event(fault_id)).await,
        ScenarioAction::ClearFaults(_) => faults::clear(state(), instance()).await,
        ScenarioAction::ModifyMetadataOptions(request) => {
            options::modify(state(), instance(), Body(request.clone())).await
        }
        ScenarioAction::PatchInstance(patch) => {
            instances::update(
                state(),
                instance(),
                Ok(Query(HostQuery::default())),
                Body(patch.clone()),
            )
            .await
        }
        ScenarioAction::PutRole(spec) => {
            let name = spec.name.clone().unwrap_or_default();
            roles::put(state(), PathParams(name), Body(spec.clone())).await
        }
        ScenarioAction::DeleteRole(name) => roles::delete(state(), PathParams(name.to_owned()))
            .await
            .map(IntoResponse::into_response),
        ScenarioAction::SendSshPublicKey(request) => {
            ssh_keys::send(
                state(),
                instance(),
                Extensions::new(),
                Body(request.clone()),
            )
            .await
        }
        ScenarioAction::RegisterTask(spec) => {
            tasks::register(state(), Ok(Query(HostQuery::default())), Body(spec.clone())).await
        }
        ScenarioAction::UpdateTask(patch) => {
            let task_id = patch
                .0
                .get("task-id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            tasks::update(state(), PathParams(task_id), Body(patch.clone())).await
        }
        ScenarioAction::DeregisterTask(task_id) => {
            tasks::deregister(state(), PathParams(task_id.to_owned()))
                .await
                .map(IntoResponse::into_response)
        }
        ScenarioAction::CreatePodIdentityAssociation(request) => {
            pod_identity_associations::create(state(), Body(request.clone())).await
        }
        ScenarioAction::UpdatePodIdentityAssociation(request) => {
            let association_id = association_id(state_ref, &request.target())?;
            let body = UpdatePodIdentityAssociation {
                role: request.role.clone(),
            };
            pod_identity_associations::update(state(), PathParams(association_id), Body(body)).await
        }
        ScenarioAction::DeletePodIdentityAssociation(target) => {
            let association_id = association_id(state_ref, target)?;
            pod_identity_associations::delete(state(), PathParams(association_id))
                .await
                .map(IntoResponse::into_response)
        }
    };
    let response = answer.unwrap_or_else(IntoResponse::into_response);
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    if status.is_success() {
        // A call answered with no body (`204`) has an empty answer.
        return Ok(serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new())));
    }
    Err(
        serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
            code: ErrorCode::InternalError,
            message: format!("the call answered {status}"),
        }),
    )
}
