//! `/v1/pod-identity/associations`: create, describe, change and delete the EKS Pod Identity
//! associations (which role the pods of a service account get; see
//! `crate::container_api::associations`). A write reaches the store first, then the list the
//! endpoint reads; the answer comes once the change is served.

use axum::{extract::State, http::StatusCode, response::Response};
use imds_core::{
    kubernetes_name::{check_namespace, check_service_account},
    role_name::check_role_name,
};

use crate::{
    admin_api::{
        model::{
            AssociationOrigin, CreatePodIdentityAssociation, ErrorBody, ErrorCode,
            PodIdentityAssociation, PodIdentityAssociationList, UpdatePodIdentityAssociation,
        },
        reply, AdminState, ApiError, Body, PathParams,
    },
    container_api::{
        associations::{self, AssociationWriteError, Registered},
        pod_identity::Association,
    },
    registry::RegistryError,
};

/// Checks the names a request gives; the message names the field as the request spells it.
fn check_names(
    namespace: Option<&str>,
    service_account: Option<&str>,
    role: &str,
) -> Result<(), ApiError> {
    if let Some(namespace) = namespace {
        check_namespace(namespace)
            .map_err(|error| ApiError::invalid(format!("Namespace: {error}")))?;
    }
    if let Some(service_account) = service_account {
        check_service_account(service_account)
            .map_err(|error| ApiError::invalid(format!("ServiceAccount: {error}")))?;
    }
    check_role_name(role).map_err(|error| ApiError::invalid(format!("Role: {error}")))
}

/// `registered` as the control API shows it.
fn shown(registered: &Registered) -> PodIdentityAssociation {
    PodIdentityAssociation {
        association_id: registered.association_id.clone(),
        namespace: registered.association.namespace.clone(),
        service_account: registered.association.service_account.clone(),
        role: registered.association.role_name.clone(),
        origin: match registered.origin {
            associations::AssociationOrigin::Config => AssociationOrigin::Config,
            associations::AssociationOrigin::Api => AssociationOrigin::Api,
        },
    }
}

fn not_found(association_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::ResourceNotFoundException,
        format!("the pod identity association '{association_id}' does not exist"),
    )
}

impl From<AssociationWriteError> for ApiError {
    fn from(error: AssociationWriteError) -> Self {
        match error {
            AssociationWriteError::Invalid(message) => ApiError::invalid(message),
            AssociationWriteError::NotFound(association_id) => not_found(&association_id),
            AssociationWriteError::Conflict(message) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::ResourceInUseException,
                message,
            ),
            AssociationWriteError::Store(error) => RegistryError::from(error).into(),
        }
    }
}

/// `GET /v1/pod-identity/associations`.
#[utoipa::path(
    get,
    path = "/v1/pod-identity/associations",
    operation_id = "ListPodIdentityAssociations",
    tag = "pod-identity",
    summary = "List the EKS Pod Identity associations",
    responses(
        (status = 200, description = "Every association, ordered by namespace and service account", body = PodIdentityAssociationList),
    )
)]
pub async fn list(State(state): State<AdminState>) -> Response {
    reply(
        StatusCode::OK,
        PodIdentityAssociationList {
            associations: state.associations.list().iter().map(shown).collect(),
        },
    )
}

/// `POST /v1/pod-identity/associations`.
#[utoipa::path(
    post,
    path = "/v1/pod-identity/associations",
    operation_id = "CreatePodIdentityAssociation",
    tag = "pod-identity",
    summary = "Associate a service account with a role",
    description = "The pods of the service account get the role's credentials from the EKS Pod Identity endpoint once this is answered. Kept in the store (shared by every host of a fleet) until deleted.",
    request_body = CreatePodIdentityAssociation,
    responses(
        (status = 201, description = "Created and served", body = PodIdentityAssociation,
            links(
                ("DescribePodIdentityAssociation" = (operation_id = "DescribePodIdentityAssociation",
                    parameters(("association_id" = "$response.body#/AssociationId")))),
                ("DeletePodIdentityAssociation" = (operation_id = "DeletePodIdentityAssociation",
                    parameters(("association_id" = "$response.body#/AssociationId")))),
            )),
        (status = 400, description = "`InvalidParameterValue`: a name is not valid (the message names it); `InvalidRequest`: the body does not parse", body = ErrorBody),
        (status = 409, description = "`ResourceInUseException`: the service account has an association already", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AdminState>,
    Body(request): Body<CreatePodIdentityAssociation>,
) -> Result<Response, ApiError> {
    check_names(
        Some(&request.namespace),
        Some(&request.service_account),
        &request.role,
    )?;
    let registered = state
        .associations
        .create(Association {
            namespace: request.namespace,
            service_account: request.service_account,
            role_name: request.role,
        })
        .await?;
    tracing::info!(
        message = "Pod identity association created.",
        association_id = %registered.association_id,
        namespace = %registered.association.namespace,
        service_account = %registered.association.service_account,
        role = %registered.association.role_name,
    );
    Ok(reply(StatusCode::CREATED, shown(&registered)))
}

/// `GET /v1/pod-identity/associations/{association_id}`.
#[utoipa::path(
    get,
    path = "/v1/pod-identity/associations/{association_id}",
    operation_id = "DescribePodIdentityAssociation",
    tag = "pod-identity",
    summary = "Describe an EKS Pod Identity association",
    params(("association_id" = String, Path, description = "The association's id")),
    responses(
        (status = 200, description = "The association", body = PodIdentityAssociation),
        (status = 404, description = "`ResourceNotFoundException`: no such association", body = ErrorBody),
    )
)]
pub async fn describe(
    State(state): State<AdminState>,
    PathParams(association_id): PathParams<String>,
) -> Result<Response, ApiError> {
    let registered = state
        .associations
        .get(&association_id)
        .ok_or_else(|| not_found(&association_id))?;
    Ok(reply(StatusCode::OK, shown(&registered)))
}

/// `PATCH /v1/pod-identity/associations/{association_id}`.
#[utoipa::path(
    patch,
    path = "/v1/pod-identity/associations/{association_id}",
    operation_id = "UpdatePodIdentityAssociation",
    tag = "pod-identity",
    summary = "Give an association another role",
    description = "Served once answered. An association of the config file becomes the control API's: the next start no longer removes it.",
    params(("association_id" = String, Path, description = "The association's id")),
    request_body = UpdatePodIdentityAssociation,
    responses(
        (status = 200, description = "Changed and served", body = PodIdentityAssociation),
        (status = 400, description = "`InvalidParameterValue`: the role name is not valid; `InvalidRequest`: the body does not parse", body = ErrorBody),
        (status = 404, description = "`ResourceNotFoundException`: no such association", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AdminState>,
    PathParams(association_id): PathParams<String>,
    Body(request): Body<UpdatePodIdentityAssociation>,
) -> Result<Response, ApiError> {
    check_names(None, None, &request.role)?;
    let registered = state
        .associations
        .update(&association_id, &request.role)
        .await?;
    tracing::info!(
        message = "Pod identity association changed.",
        association_id = %association_id,
        role = %registered.association.role_name,
    );
    Ok(reply(StatusCode::OK, shown(&registered)))
}

/// `DELETE /v1/pod-identity/associations/{association_id}`.
#[utoipa::path(
    delete,
    path = "/v1/pod-identity/associations/{association_id}",
    operation_id = "DeletePodIdentityAssociation",
    tag = "pod-identity",
    summary = "Delete an EKS Pod Identity association",
    params(("association_id" = String, Path, description = "The association's id")),
    responses(
        (status = 204, description = "Deleted: the service account's pods get no credentials once answered"),
        (status = 404, description = "`ResourceNotFoundException`: no such association", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was changed", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AdminState>,
    PathParams(association_id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    state.associations.delete(&association_id).await?;
    tracing::info!(message = "Pod identity association deleted.", association_id = %association_id);
    Ok(StatusCode::NO_CONTENT)
}
