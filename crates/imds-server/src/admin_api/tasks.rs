//! `/v1/tasks` and `/v1/tasks/{task_id}`: register, describe and deregister the ECS tasks the
//! container listener serves (see `crate::container_api::tasks`). A write reaches the store
//! first, then the table the listener reads; the answer comes once the task is served (or no
//! longer is).

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::StatusCode,
    response::Response,
};
use imds_core::task::{
    spec::{StoredTask, TaskOrigin as StoredOrigin, TaskSpec},
    Task,
};

use crate::{
    admin_api::{
        instances::host_id,
        model::{
            EcsTask, EcsTaskContainer, EcsTaskList, EcsTaskRole, ErrorBody, ErrorCode, HostQuery,
            TaskOrigin, TaskPatch,
        },
        reply, AdminState, ApiError, Body, PathParams,
    },
    container_api::tasks::TaskWriteError,
    registry::RegistryError,
};

/// `task` (stored as `stored`) as the control API shows it.
pub fn task_of(stored: &StoredTask, task: &Task, host_id: Option<&str>) -> EcsTask {
    EcsTask {
        task_id: task.task_id.clone(),
        task_arn: task.task_arn.clone(),
        cluster: task.cluster.clone(),
        family: task.family.clone(),
        revision: task.revision,
        launch_type: task.launch_type.as_str().to_owned(),
        network_mode: task.network_mode.as_str().to_owned(),
        host_id: host_id.map(str::to_owned),
        addresses: task.addresses.iter().map(ToString::to_string).collect(),
        origin: match stored.origin {
            StoredOrigin::Config => TaskOrigin::Config,
            StoredOrigin::Api => TaskOrigin::Api,
        },
        role: task.role.as_ref().map(|role| EcsTaskRole {
            role_name: role.role_name.clone(),
            role_arn: role.role_arn.clone(),
            credentials_id: role.credentials_id.clone(),
            credentials_relative_uri: format!("/v2/credentials/{}", role.credentials_id),
        }),
        containers: task
            .containers
            .iter()
            .map(|container| EcsTaskContainer {
                name: container.name.clone(),
                endpoint_id: container.endpoint_id.clone(),
                docker_id: container.docker_id.clone(),
                container_arn: container.container_arn.clone(),
                metadata_uri_v4_path: format!("/v4/{}", container.endpoint_id),
            })
            .collect(),
        description: stored.task.clone(),
    }
}

fn not_found(task_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::InvalidTaskIdNotFound,
        format!("the task ID '{task_id}' does not exist"),
    )
}

impl From<TaskWriteError> for ApiError {
    fn from(error: TaskWriteError) -> Self {
        match error {
            TaskWriteError::Invalid(message) => ApiError::invalid(message),
            TaskWriteError::NotFound(task_id) => not_found(&task_id),
            TaskWriteError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
            }
            TaskWriteError::Store(error) => RegistryError::from(error).into(),
        }
    }
}

/// `GET /v1/tasks`.
#[utoipa::path(
    get,
    path = "/v1/tasks",
    operation_id = "DescribeTasks",
    tag = "tasks",
    summary = "Describe every ECS task",
    responses(
        (status = 200, description = "Every task the container listener serves", body = EcsTaskList),
    )
)]
pub async fn list(State(state): State<AdminState>) -> Response {
    let table = state.tasks.table();
    let host_id = state.registry.host_id();
    reply(
        StatusCode::OK,
        EcsTaskList {
            tasks: table
                .described()
                .map(|(stored, task)| task_of(stored, task, host_id))
                .collect(),
        },
    )
}

/// `POST /v1/tasks`.
#[utoipa::path(
    post,
    path = "/v1/tasks",
    operation_id = "RegisterTask",
    tag = "tasks",
    summary = "Register an ECS task",
    params(HostQuery),
    request_body(content = TaskSpec,
        description = "A task description with the config file's [[tasks]] keys; containers is required"),
    responses(
        (status = 201, description = "Registered and served", body = EcsTask,
            links(
                ("DescribeTask" = (operation_id = "DescribeTask",
                    parameters(("task_id" = "$response.body#/TaskId")))),
                ("DeregisterTask" = (operation_id = "DeregisterTask",
                    parameters(("task_id" = "$response.body#/TaskId")))),
            )),
        (status = 400, description = "The body is not a valid task description (the message names the key), or host-id is not valid here", body = ErrorBody),
        (status = 409, description = "The task id, an endpoint or credentials id, or an address is another task's", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AdminState>,
    placement: Result<Query<HostQuery>, QueryRejection>,
    Body(spec): Body<TaskSpec>,
) -> Result<Response, ApiError> {
    let placement = host_id(placement)?;
    let (stored, task, placed) = state.tasks.register(spec, placement.as_deref()).await?;
    tracing::info!(message = "Task registered.", task_id = %task.task_id, host_id = ?placed);
    Ok(reply(
        StatusCode::CREATED,
        task_of(&stored, &task, placed.as_deref()),
    ))
}

/// `GET /v1/tasks/{task_id}`.
#[utoipa::path(
    get,
    path = "/v1/tasks/{task_id}",
    operation_id = "DescribeTask",
    tag = "tasks",
    summary = "Describe an ECS task",
    params(("task_id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = EcsTask),
        (status = 404, description = "No such task", body = ErrorBody),
    )
)]
pub async fn describe(
    State(state): State<AdminState>,
    PathParams(task_id): PathParams<String>,
) -> Result<Response, ApiError> {
    let table = state.tasks.table();
    let (stored, task) = table.task(&task_id).ok_or_else(|| not_found(&task_id))?;
    Ok(reply(
        StatusCode::OK,
        task_of(stored, task, state.registry.host_id()),
    ))
}

/// `PATCH /v1/tasks/{task_id}`.
#[utoipa::path(
    patch,
    path = "/v1/tasks/{task_id}",
    operation_id = "UpdateTask",
    tag = "tasks",
    summary = "Change an ECS task: a JSON merge patch (RFC 7396) of its description",
    description = "The patch applies to the task's description as registered (the [[tasks]] keys); the values generated for the task and its containers stay, and a container added gets its own. Served as changed once answered. A config file's task keeps the change until the next start.",
    params(("task_id" = String, Path, description = "The task's id")),
    request_body(content(
            (TaskPatch = "application/merge-patch+json"),
            (TaskPatch = "application/json"),
        ),
        description = "The keys to change; null removes a key, arrays (containers) are replaced whole"),
    responses(
        (status = 200, description = "Changed and served", body = EcsTask),
        (status = 400, description = "The body is not a JSON object, or the changed description is not valid (the message names the key)", body = ErrorBody),
        (status = 404, description = "No such task served here", body = ErrorBody),
        (status = 409, description = "An endpoint or credentials id, or an address, is another task's", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AdminState>,
    PathParams(task_id): PathParams<String>,
    Body(patch): Body<TaskPatch>,
) -> Result<Response, ApiError> {
    let (stored, task) = state.tasks.update(&task_id, &patch.0).await?;
    tracing::info!(message = "Task changed.", task_id = %task_id);
    Ok(reply(
        StatusCode::OK,
        task_of(&stored, &task, state.registry.host_id()),
    ))
}

/// `DELETE /v1/tasks/{task_id}`.
#[utoipa::path(
    delete,
    path = "/v1/tasks/{task_id}",
    operation_id = "DeregisterTask",
    tag = "tasks",
    summary = "Deregister an ECS task",
    params(("task_id" = String, Path, description = "The task's id")),
    responses(
        (status = 204, description = "Deregistered: its metadata and credentials are no longer served"),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn deregister(
    State(state): State<AdminState>,
    PathParams(task_id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    state.tasks.deregister(&task_id).await?;
    tracing::info!(message = "Task deregistered.", task_id = %task_id);
    Ok(StatusCode::NO_CONTENT)
}
