//! `AdminClient`: the control API over its own request and response types (`model`), one
//! method per operation, for `imds ctl`, `imds env`, `imds exec` and the in-process server of
//! `imds-testing`.
//!
//! Error answers (`{"Code", "Message"}`) become `ClientError::Api` with their status and body;
//! `ClientError::is_refusal` tells a request the server refused as wrong (400, 404, 409) from
//! the other failures (401, 5xx, an unreachable server).

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use imds_core::{spec::InstanceSpec, task::spec::TaskSpec};
use imds_credentials::spec::RoleSpec;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

use crate::admin_api::model::{
    CreatePodIdentityAssociation, PodIdentityAssociation, PodIdentityAssociationList,
    UpdatePodIdentityAssociation,
};
use crate::admin_api::model::{
    EcsTask, EcsTaskList, ErrorBody, EventEnded, EventList, EventPosted, Fault, FaultList,
    FaultsCleared, InjectFault, Instance, InstanceList, InstanceMetadataOptionsResult,
    InstancePatch, MintServiceAccountToken, ModifyInstanceMetadataOptions, PostEvent, Role,
    RoleCredentials, RoleList, Scenario, ScenarioList, ScenarioRun, SendSshPublicKey,
    SendSshPublicKeyResult, ServiceAccountToken, TaskPatch,
};

/// Characters left as they are in a path segment: RFC 3986's unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A control-API call that did not succeed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The endpoint and path do not make a request URI.
    #[error("invalid endpoint {uri}: {source}")]
    Endpoint {
        /// The URI that did not parse.
        uri: String,
        /// Why.
        source: http::Error,
    },
    /// A request body could not be written as JSON.
    #[error("cannot write the request to {path} as JSON: {source}")]
    Encode {
        /// The path called.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
    /// No answer: the server is not listening there, or the connection failed.
    #[error("cannot reach the control API at {endpoint}: {source} (is the server running?)")]
    Unreachable {
        /// The endpoint called.
        endpoint: String,
        /// Why.
        source: hyper_util::client::legacy::Error,
    },
    /// The answer's body could not be read to its end.
    #[error("cannot read the control API's answer to {path}: {source}")]
    Read {
        /// The path called.
        path: String,
        /// Why.
        source: hyper::Error,
    },
    /// The API answered with one of its error bodies; shown as `Code: Message`.
    #[error("{}: {}", .body.code, .body.message)]
    Api {
        /// The answer's status.
        status: StatusCode,
        /// The error body: EC2's code where one fits, and what to do.
        body: ErrorBody,
    },
    /// The API answered an error status without an error body (not imds's control API?).
    #[error("the control API answered {status}: {text}")]
    Status {
        /// The answer's status.
        status: StatusCode,
        /// The body as text, trimmed.
        text: String,
    },
    /// A success answer whose body is not the type this client reads.
    #[error("the control API's answer to {path} is not what this client reads: {source}")]
    Decode {
        /// The path called.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

impl ClientError {
    /// True for a request the server refused as wrong (400, 404, 409): the caller's mistake,
    /// as opposed to a failure of the server or of the way to it.
    pub fn is_refusal(&self) -> bool {
        match self {
            ClientError::Api { status, .. } | ClientError::Status { status, .. } => [
                StatusCode::BAD_REQUEST,
                StatusCode::NOT_FOUND,
                StatusCode::CONFLICT,
            ]
            .contains(status),
            ClientError::Endpoint { .. } => true,
            _ => false,
        }
    }

    /// The answer's status, when the API answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one server's control API.
#[derive(Clone)]
pub struct AdminClient {
    endpoint: String,
    token: String,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// `segment` percent-encoded for a path.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// `?host-id=HOST` (`HostQuery`), percent-encoded, or nothing.
fn host_query(host_id: Option<&str>) -> String {
    match host_id {
        Some(host_id) => format!(
            "?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("host-id", host_id)
                .finish()
        ),
        None => String::new(),
    }
}

impl AdminClient {
    /// A client of the control API at `endpoint` (`http://HOST:PORT`), authorised by `token`.
    /// It trusts no certificate: an `https://` endpoint needs [`AdminClient::with_tls`].
    pub fn new(endpoint: &str, token: String) -> AdminClient {
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring's provider supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        AdminClient::with_tls(endpoint, token, config)
    }

    /// A client of the control API at `endpoint` (`http://` or `https://`), authorised by
    /// `token`, reaching an `https://` endpoint with `tls` (its trusted CAs and, for a server
    /// that requires one, its client certificate).
    pub fn with_tls(endpoint: &str, token: String, tls: rustls::ClientConfig) -> AdminClient {
        // hyper-rustls sets the ALPN protocols (`http/1.1`) itself.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        AdminClient {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            http: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The endpoint this client calls.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends `method path` with `body` as JSON; the answer's body, or the API's error.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Bytes, ClientError> {
        let uri = format!("{}{path}", self.endpoint);
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {}", self.token));
        let payload = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(
                    serde_json::to_vec(body).map_err(|source| ClientError::Encode {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|source| ClientError::Endpoint { uri, source })?;
        let response =
            self.http
                .request(request)
                .await
                .map_err(|source| ClientError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    source,
                })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Read {
                path: path.to_owned(),
                source,
            })?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api { status, body }),
            Err(_) => Err(ClientError::Status {
                status,
                text: String::from_utf8_lossy(&bytes).trim().to_owned(),
            }),
        }
    }

    /// Sends a request and reads its answer as `R`.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, ClientError> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            path: path.to_owned(),
            source,
        })
    }

    /// `GET /v1/instances`.
    pub async fn describe_instances(&self) -> Result<InstanceList, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/instances", None).await
    }

    /// `GET /v1/instances/{instance_id}`.
    pub async fn describe_instance(&self, instance_id: &str) -> Result<Instance, ClientError> {
        let path = format!("/v1/instances/{}", segment(instance_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /v1/instances`, on `host_id` (fleet mode) or the host called.
    pub async fn register_instance(
        &self,
        spec: &InstanceSpec,
        host_id: Option<&str>,
    ) -> Result<Instance, ClientError> {
        let path = format!("/v1/instances{}", host_query(host_id));
        self.call(Method::POST, &path, Some(spec)).await
    }

    /// `PATCH /v1/instances/{instance_id}`, moving it to `host_id` if given (fleet mode).
    pub async fn update_instance(
        &self,
        instance_id: &str,
        patch: &InstancePatch,
        host_id: Option<&str>,
    ) -> Result<Instance, ClientError> {
        let path = format!(
            "/v1/instances/{}{}",
            segment(instance_id),
            host_query(host_id)
        );
        self.call(Method::PATCH, &path, Some(patch)).await
    }

    /// `DELETE /v1/instances/{instance_id}`.
    pub async fn deregister_instance(&self, instance_id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/instances/{}", segment(instance_id));
        self.send::<()>(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// `GET /v1/tasks`.
    pub async fn describe_tasks(&self) -> Result<EcsTaskList, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/tasks", None).await
    }

    /// `GET /v1/tasks/{task_id}`.
    pub async fn describe_task(&self, task_id: &str) -> Result<EcsTask, ClientError> {
        let path = format!("/v1/tasks/{}", segment(task_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /v1/tasks`, on `host_id` (fleet mode) or the host called.
    pub async fn register_task(
        &self,
        spec: &TaskSpec,
        host_id: Option<&str>,
    ) -> Result<EcsTask, ClientError> {
        let path = format!("/v1/tasks{}", host_query(host_id));
        self.call(Method::POST, &path, Some(spec)).await
    }

    /// `PATCH /v1/tasks/{task_id}`: a merge patch of the task's description.
    pub async fn update_task(
        &self,
        task_id: &str,
        patch: &TaskPatch,
    ) -> Result<EcsTask, ClientError> {
        let path = format!("/v1/tasks/{}", segment(task_id));
        self.call(Method::PATCH, &path, Some(patch)).await
    }

    /// `DELETE /v1/tasks/{task_id}`.
    pub async fn deregister_task(&self, task_id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/tasks/{}", segment(task_id));
        self.send::<()>(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// `GET /v1/instances/{instance_id}/metadata-options`.
    pub async fn describe_metadata_options(
        &self,
        instance_id: &str,
    ) -> Result<InstanceMetadataOptionsResult, ClientError> {
        let path = format!("/v1/instances/{}/metadata-options", segment(instance_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `PUT /v1/instances/{instance_id}/metadata-options`.
    pub async fn modify_metadata_options(
        &self,
        instance_id: &str,
        request: &ModifyInstanceMetadataOptions,
    ) -> Result<InstanceMetadataOptionsResult, ClientError> {
        let path = format!("/v1/instances/{}/metadata-options", segment(instance_id));
        self.call(Method::PUT, &path, Some(request)).await
    }

    /// `GET /v1/instances/{instance_id}/events`.
    pub async fn describe_events(&self, instance_id: &str) -> Result<EventList, ClientError> {
        let path = format!("/v1/instances/{}/events", segment(instance_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /v1/instances/{instance_id}/events`.
    pub async fn post_event(
        &self,
        instance_id: &str,
        event: &PostEvent,
    ) -> Result<EventPosted, ClientError> {
        let path = format!("/v1/instances/{}/events", segment(instance_id));
        self.call(Method::POST, &path, Some(event)).await
    }

    /// `POST /v1/instances/{instance_id}/events/{event_id}/cancel`.
    pub async fn cancel_event(
        &self,
        instance_id: &str,
        event_id: &str,
    ) -> Result<EventEnded, ClientError> {
        let path = format!(
            "/v1/instances/{}/events/{}/cancel",
            segment(instance_id),
            segment(event_id)
        );
        self.call::<(), _>(Method::POST, &path, None).await
    }

    /// `POST /v1/instances/{instance_id}/events/{event_id}/complete`.
    pub async fn complete_event(
        &self,
        instance_id: &str,
        event_id: &str,
    ) -> Result<EventEnded, ClientError> {
        let path = format!(
            "/v1/instances/{}/events/{}/complete",
            segment(instance_id),
            segment(event_id)
        );
        self.call::<(), _>(Method::POST, &path, None).await
    }

    /// `POST /v1/instances/{instance_id}/faults`.
    pub async fn inject_fault(
        &self,
        instance_id: &str,
        fault: &InjectFault,
    ) -> Result<Fault, ClientError> {
        let path = format!("/v1/instances/{}/faults", segment(instance_id));
        self.call(Method::POST, &path, Some(fault)).await
    }

    /// `POST /v1/instances/{instance_id}/ssh-public-keys` (`SendSSHPublicKey`).
    pub async fn send_ssh_public_key(
        &self,
        instance_id: &str,
        request: &SendSshPublicKey,
    ) -> Result<SendSshPublicKeyResult, ClientError> {
        let path = format!("/v1/instances/{}/ssh-public-keys", segment(instance_id));
        self.call(Method::POST, &path, Some(request)).await
    }

    /// `POST /v1/pod-identity/service-account-tokens`.
    pub async fn mint_service_account_token(
        &self,
        request: &MintServiceAccountToken,
    ) -> Result<ServiceAccountToken, ClientError> {
        self.call(
            Method::POST,
            "/v1/pod-identity/service-account-tokens",
            Some(request),
        )
        .await
    }

    /// `GET /v1/pod-identity/associations`.
    pub async fn list_pod_identity_associations(
        &self,
    ) -> Result<PodIdentityAssociationList, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/pod-identity/associations", None)
            .await
    }

    /// `GET /v1/pod-identity/associations/{association_id}`.
    pub async fn describe_pod_identity_association(
        &self,
        association_id: &str,
    ) -> Result<PodIdentityAssociation, ClientError> {
        let path = format!("/v1/pod-identity/associations/{}", segment(association_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /v1/pod-identity/associations`.
    pub async fn create_pod_identity_association(
        &self,
        request: &CreatePodIdentityAssociation,
    ) -> Result<PodIdentityAssociation, ClientError> {
        self.call(Method::POST, "/v1/pod-identity/associations", Some(request))
            .await
    }

    /// `PATCH /v1/pod-identity/associations/{association_id}`.
    pub async fn update_pod_identity_association(
        &self,
        association_id: &str,
        request: &UpdatePodIdentityAssociation,
    ) -> Result<PodIdentityAssociation, ClientError> {
        let path = format!("/v1/pod-identity/associations/{}", segment(association_id));
        self.call(Method::PATCH, &path, Some(request)).await
    }

    /// `DELETE /v1/pod-identity/associations/{association_id}`.
    pub async fn delete_pod_identity_association(
        &self,
        association_id: &str,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/pod-identity/associations/{}", segment(association_id));
        self.send::<()>(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// `GET /v1/instances/{instance_id}/faults`.
    pub async fn describe_faults(&self, instance_id: &str) -> Result<FaultList, ClientError> {
        let path = format!("/v1/instances/{}/faults", segment(instance_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `DELETE /v1/instances/{instance_id}/faults`.
    pub async fn clear_faults(&self, instance_id: &str) -> Result<FaultsCleared, ClientError> {
        let path = format!("/v1/instances/{}/faults", segment(instance_id));
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    /// `DELETE /v1/instances/{instance_id}/faults/{fault_id}`.
    pub async fn remove_fault(
        &self,
        instance_id: &str,
        fault_id: &str,
    ) -> Result<Fault, ClientError> {
        let path = format!(
            "/v1/instances/{}/faults/{}",
            segment(instance_id),
            segment(fault_id)
        );
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    /// `POST /v1/scenarios`.
    pub async fn start_scenario(&self, scenario: &Scenario) -> Result<ScenarioRun, ClientError> {
        self.call(Method::POST, "/v1/scenarios", Some(scenario))
            .await
    }

    /// `GET /v1/scenarios`.
    pub async fn describe_scenarios(&self) -> Result<ScenarioList, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/scenarios", None).await
    }

    /// `GET /v1/scenarios/{scenario_id}`.
    pub async fn describe_scenario(&self, scenario_id: &str) -> Result<ScenarioRun, ClientError> {
        let path = format!("/v1/scenarios/{}", segment(scenario_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /v1/scenarios/{scenario_id}/stop`.
    pub async fn stop_scenario(&self, scenario_id: &str) -> Result<ScenarioRun, ClientError> {
        let path = format!("/v1/scenarios/{}/stop", segment(scenario_id));
        self.call::<(), _>(Method::POST, &path, None).await
    }

    /// `GET /v1/roles`.
    pub async fn describe_roles(&self) -> Result<RoleList, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/roles", None).await
    }

    /// `GET /v1/roles/{role_name}`.
    pub async fn describe_role(&self, role_name: &str) -> Result<Role, ClientError> {
        let path = format!("/v1/roles/{}", segment(role_name));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `PUT /v1/roles/{role_name}`.
    pub async fn put_role(&self, role_name: &str, spec: &RoleSpec) -> Result<Role, ClientError> {
        let path = format!("/v1/roles/{}", segment(role_name));
        self.call(Method::PUT, &path, Some(spec)).await
    }

    /// `DELETE /v1/roles/{role_name}`.
    pub async fn delete_role(&self, role_name: &str) -> Result<(), ClientError> {
        let path = format!("/v1/roles/{}", segment(role_name));
        self.send::<()>(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// `GET /v1/instances/{instance_id}/roles/{role_name}/credentials`.
    pub async fn role_credentials(
        &self,
        instance_id: &str,
        role_name: &str,
    ) -> Result<RoleCredentials, ClientError> {
        let path = format!(
            "/v1/instances/{}/roles/{}/credentials",
            segment(instance_id),
            segment(role_name)
        );
        self.call::<(), _>(Method::GET, &path, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_segment(text: &str, expect: &str) {
        assert_eq!(segment(text), expect);
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        check_segment("i-0123456789abcdef0", "i-0123456789abcdef0");
        check_segment("app.role_1~", "app.role_1~");
        check_segment("a/b", "a%2Fb");
        check_segment("a b?c#", "a%20b%3Fc%23");
        check_segment("rôle", "r%C3%B4le");
    }

    #[test]
    fn refusals_are_the_answers_to_a_wrong_request() {
        let answer = |status: u16| ClientError::Api {
            status: StatusCode::from_u16(status).unwrap(),
            body: ErrorBody {
                code: crate::admin_api::model::ErrorCode::InvalidRequest,
                message: "no".to_owned(),
            },
        };
        for (status, refusal) in [
            (400, true),
            (404, true),
            (409, true),
            (401, false),
            (503, false),
        ] {
            assert_eq!(answer(status).is_refusal(), refusal, "{status}");
            assert_eq!(
                answer(status).status().map(|status| status.as_u16()),
                Some(status)
            );
        }
        let text = ClientError::Status {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            text: "down".to_owned(),
        };
        assert!(!text.is_refusal());
        assert_eq!(answer(404).to_string(), "InvalidRequest: no");
    }

    #[test]
    fn the_host_query_is_there_only_when_a_host_is_named() {
        assert_eq!(host_query(None), "");
        assert_eq!(host_query(Some("host-1")), "?host-id=host-1");
        assert_eq!(host_query(Some("a&b=c")), "?host-id=a%26b%3Dc");
    }
}
