//! `/v1/instances/{id}/metadata-options`: `ModifyInstanceMetadataOptions` semantics. Only the
//! options given change; the answer shows `State: pending` until the instance serves them, then
//! `applied`.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{
    admin_api::{reply, AdminState, ApiError, Body},
    registry::InstanceView,
};

/// `InstanceMetadataOptionsResponse`, with EC2's names.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OptionsView {
    state: &'static str,
    http_tokens: String,
    http_put_response_hop_limit: u8,
    http_endpoint: String,
    http_protocol_ipv6: String,
    instance_metadata_tags: String,
}

impl OptionsView {
    /// The options of `view` and whether they are applied.
    pub fn of(view: &InstanceView) -> OptionsView {
        let options = view.instance.options;
        OptionsView {
            state: if view.applied { "applied" } else { "pending" },
            http_tokens: options.http_tokens.to_string(),
            http_put_response_hop_limit: options.http_put_response_hop_limit.get(),
            http_endpoint: options.http_endpoint.to_string(),
            http_protocol_ipv6: options.http_protocol_ipv6.to_string(),
            instance_metadata_tags: options.instance_metadata_tags.to_string(),
        }
    }
}

/// `ModifyInstanceMetadataOptions` request fields; absent ones keep their value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ModifyRequest {
    http_tokens: Option<String>,
    http_put_response_hop_limit: Option<u32>,
    http_endpoint: Option<String>,
    http_protocol_ipv6: Option<String>,
    instance_metadata_tags: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct OptionsResult {
    instance_id: String,
    instance_metadata_options: OptionsView,
}

pub async fn describe(
    State(state): State<AdminState>,
    Path(instance_id): Path<String>,
) -> Result<Response, ApiError> {
    let view = state.registry.describe(&instance_id).await?;
    Ok(reply(
        StatusCode::OK,
        OptionsResult {
            instance_id,
            instance_metadata_options: OptionsView::of(&view),
        },
    ))
}

pub async fn modify(
    State(state): State<AdminState>,
    Path(instance_id): Path<String>,
    Body(request): Body<ModifyRequest>,
) -> Result<Response, ApiError> {
    let mut changes = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            changes.insert(key.to_owned(), value);
        }
    };
    set("http-tokens", request.http_tokens.map(Value::from));
    set(
        "http-put-response-hop-limit",
        request.http_put_response_hop_limit.map(Value::from),
    );
    set("http-endpoint", request.http_endpoint.map(Value::from));
    set(
        "http-protocol-ipv6",
        request.http_protocol_ipv6.map(Value::from),
    );
    set(
        "instance-metadata-tags",
        request.instance_metadata_tags.map(Value::from),
    );
    if changes.is_empty() {
        return Err(ApiError::invalid("give at least one option to change"));
    }
    let view = state
        .registry
        .update(&instance_id, &json!({ "metadata-options": changes }), None)
        .await?;
    tracing::info!(message = "Metadata options changed.", instance_id = %instance_id);
    Ok(reply(
        StatusCode::OK,
        OptionsResult {
            instance_id,
            instance_metadata_options: OptionsView::of(&view),
        },
    ))
}
