//! `/v1/pod-identity/service-account-tokens`: a service-account token for the EKS Pod Identity
//! endpoint, minted with the key that endpoint checks tokens with, so a test can hand a "pod"
//! its `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` without holding the key itself.

#![allow(
    clippy::disallowed_methods,
    reason = "a token is issued at the moment the control-API request arrives"
)]

use axum::{extract::State, http::StatusCode, response::Response};
use imds_core::{
    kubernetes_name::{check_namespace, check_service_account},
    render::aws_timestamp,
};
use time::OffsetDateTime;

use crate::{
    admin_api::{
        model::{ErrorBody, ErrorCode, MintServiceAccountToken, ServiceAccountToken},
        reply, AdminState, ApiError, Body,
    },
    container_api::service_account_token::{
        TokenRequest, AUDIENCE, DEFAULT_ISSUER, DEFAULT_LIFETIME, LONGEST_LIFETIME,
    },
};

/// `POST /v1/pod-identity/service-account-tokens`.
#[utoipa::path(
    post,
    path = "/v1/pod-identity/service-account-tokens",
    operation_id = "MintServiceAccountToken",
    tag = "pod-identity",
    summary = "Mint an EKS Pod Identity service-account token",
    description = "A JWT as the Kubernetes API server projects it into a pod (audience `pods.eks.amazonaws.com` unless another is asked for, `sub` `system:serviceaccount:NAMESPACE:NAME`, the `kubernetes.io` claims), signed with the key this server's EKS Pod Identity endpoint checks tokens with: the state directory's key, or `[pod-identity] key-file` when that holds a private key. The service account needs no association for the token to be minted; the endpoint answers it with the associated role, or refuses it as the agent does.",
    request_body = MintServiceAccountToken,
    responses(
        (status = 201, description = "Minted", body = ServiceAccountToken),
        (status = 400, description = "`InvalidParameterValue`: a field is not valid (the message names it); `InvalidRequest`: the body does not parse", body = ErrorBody),
        (status = 409, description = "`IncorrectState`: this server has no key to mint with (no EKS Pod Identity endpoint, or `[pod-identity]` names a JWK Set or a public key only)", body = ErrorBody),
    )
)]
pub async fn mint(
    State(state): State<AdminState>,
    Body(request): Body<MintServiceAccountToken>,
) -> Result<Response, ApiError> {
    check_namespace(&request.namespace)
        .map_err(|error| ApiError::invalid(format!("Namespace: {error}")))?;
    check_service_account(&request.service_account)
        .map_err(|error| ApiError::invalid(format!("ServiceAccount: {error}")))?;
    let lifetime = request.expiration_seconds.unwrap_or(DEFAULT_LIFETIME);
    if !(1..=LONGEST_LIFETIME).contains(&lifetime) {
        return Err(ApiError::invalid(format!(
            "ExpirationSeconds: must be 1 to {LONGEST_LIFETIME}"
        )));
    }
    for (key, value) in [
        ("Audience", request.audience.as_deref()),
        ("Issuer", request.issuer.as_deref()),
    ] {
        // The document's lengths count characters, as JSON Schema does.
        if value.is_some_and(|value| value.is_empty() || value.chars().count() > 255) {
            return Err(ApiError::invalid(format!(
                "{key}: must be 1 to 255 characters"
            )));
        }
    }
    let Some(signer) = &state.token_signer else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::IncorrectState,
            "this server has no key to mint service-account tokens with: serve EKS Pod Identity \
             (--pod-identity-listen) with the state directory's key or a private [pod-identity] \
             key-file",
        ));
    };
    let now = OffsetDateTime::now_utc();
    let token = signer
        .mint(&TokenRequest {
            namespace: &request.namespace,
            service_account: &request.service_account,
            audience: request.audience.as_deref().unwrap_or(AUDIENCE),
            issuer: request.issuer.as_deref().unwrap_or(DEFAULT_ISSUER),
            issued_at: now.unix_timestamp(),
            lifetime: i64::from(lifetime),
        })
        .map_err(|error| {
            tracing::error!(message = "Could not mint a service-account token.", %error);
            ApiError::internal("the token could not be signed; see the server log")
        })?;
    tracing::info!(
        message = "Service-account token minted.",
        namespace = %request.namespace,
        service_account = %request.service_account,
        lifetime,
    );
    Ok(reply(
        StatusCode::CREATED,
        ServiceAccountToken {
            token,
            expiration_timestamp: aws_timestamp(now + time::Duration::seconds(i64::from(lifetime))),
        },
    ))
}
