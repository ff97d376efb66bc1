//! `/v1/instances/{id}/ssh-public-keys`: EC2 Instance Connect's `SendSSHPublicKey`. The key is
//! served at `managed-ssh-keys/active-keys/USER` for 60 seconds, then no more; keys live in the
//! process serving the instance and are not stored, so only an instance this server serves
//! takes them.

#![allow(
    clippy::disallowed_methods,
    reason = "a key's 60 seconds start when the control-API request arrives"
)]

use axum::{
    extract::State,
    http::{Extensions, StatusCode},
    response::Response,
};
use imds_core::managed_ssh_keys::{
    check_availability_zone, check_os_user, ManagedKey, PublicKey, KEY_LIFETIME_SECONDS,
};
use time::OffsetDateTime;

use crate::admin_api::{
    model::{ErrorBody, ErrorCode, SendSshPublicKey, SendSshPublicKeyResult},
    reply, AdminState, ApiError, Body, Caller, PathParams,
};

/// 400 `InvalidArgsException`.
fn invalid_args(message: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidArgsException,
        message,
    )
}

/// 404 `EC2InstanceNotFoundException`.
fn not_found(message: String) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::Ec2InstanceNotFoundException,
        message,
    )
}

/// True when `id` is an instance id as the Instance Connect API takes one: `i-` and hex digits,
/// 10 to 32 characters.
fn is_instance_id(id: &str) -> bool {
    (10..=32).contains(&id.len())
        && id.strip_prefix("i-").is_some_and(|hex| {
            hex.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        })
}

/// `POST /v1/instances/{instance_id}/ssh-public-keys`.
#[utoipa::path(
    post,
    path = "/v1/instances/{instance_id}/ssh-public-keys",
    operation_id = "SendSSHPublicKey",
    tag = "instances",
    summary = "Send an SSH public key to the instance for 60 seconds (EC2 Instance Connect)",
    description = "The instance serves the key at `meta-data/managed-ssh-keys/active-keys/USER` for 60 seconds from now, in the block layout EC2 Instance Connect's on-instance scripts read, signed by the server's Instance Connect signer (`managed-ssh-keys/signer-cert`); a second key for the same user is added to the user's document. Keys are kept in the serving process only: a restart starts without them.",
    params(("instance_id" = String, Path, description = "The instance's id")),
    request_body = SendSshPublicKey,
    responses(
        (status = 200, description = "Sent; served from the next guest request on", body = SendSshPublicKeyResult),
        (status = 400, description = "`InvalidArgsException`: the OS user, the key or the zone is not valid, or the path's instance id is not one (the message says which); `InvalidParameterValue` or `InvalidRequest`: the body does not parse", body = ErrorBody),
        (status = 404, description = "`EC2InstanceNotFoundException`: no such instance served here, or not in the zone given", body = ErrorBody),
    )
)]
pub async fn send(
    State(state): State<AdminState>,
    PathParams(instance_id): PathParams<String>,
    extensions: Extensions,
    Body(request): Body<SendSshPublicKey>,
) -> Result<Response, ApiError> {
    let Some(slot) = state.registry.slot(&instance_id) else {
        if !is_instance_id(&instance_id) {
            return Err(invalid_args(format!(
                "InstanceId: {instance_id:?} is not an instance id (i- and 8 to 30 hex digits)"
            )));
        }
        return Err(not_found(format!("instance {instance_id} was not found")));
    };
    check_os_user(&request.instance_os_user)
        .map_err(|error| invalid_args(format!("InstanceOSUser: {error}")))?;
    let key = PublicKey::parse(&request.ssh_public_key)
        .map_err(|error| invalid_args(format!("SSHPublicKey: {error}")))?;
    let described = slot.source().instance.clone();
    let instance = described.instance().map_err(|error| {
        tracing::error!(message = "An instance's description did not resolve.", %error);
        ApiError::internal("the instance's description did not resolve; see the server log")
    })?;
    if let Some(zone) = &request.availability_zone {
        check_availability_zone(zone)
            .map_err(|error| invalid_args(format!("AvailabilityZone: {error}")))?;
        if *zone != instance.placement.availability_zone {
            return Err(not_found(format!(
                "instance {instance_id} was not found in {zone}"
            )));
        }
    }
    let caller = extensions
        .get::<Caller>()
        .map_or("imds", |caller| &*caller.name);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let managed = ManagedKey {
        os_user: request.instance_os_user,
        key,
        expires_at: now + KEY_LIFETIME_SECONDS,
        request_id: crate::wire::request_id(),
        // The IAM principal that called, as the real block names it; here the control-API
        // token's name in the instance's account.
        caller: format!(
            "arn:{}:iam::{}:user/{caller}",
            instance.services_partition, instance.account_id
        ),
    };
    state.registry.add_managed_key(&slot, &managed, now);
    tracing::info!(
        message = "SSH public key sent to an instance.",
        instance_id = %instance_id,
        os_user = %managed.os_user,
        request_id = %managed.request_id,
        expires_at = managed.expires_at,
    );
    Ok(reply(
        StatusCode::OK,
        SendSshPublicKeyResult {
            request_id: managed.request_id,
            success: true,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_what_the_api_takes() {
        assert!(is_instance_id("i-0123456789abcdef0"));
        assert!(is_instance_id("i-12345678"));
        assert!(!is_instance_id("i-1234567"));
        assert!(!is_instance_id("i-0123456789ABCDEF0"));
        assert!(!is_instance_id("x-0123456789abcdef0"));
    }
}
