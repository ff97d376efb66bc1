//! `AdminClient`: the control API over its own request and response types
//! (`imds_server::admin_api::model`), for `imds ctl`, `imds env` and `imds exec`.
//!
//! One method per operation. Error answers (`{"Code", "Message"}`) become errors that say
//! `Code: Message`; those of a request the server refused as wrong (400, 404, 409) are usage
//! errors (exit 64), the others (401, 403, 5xx, an unreachable server) runtime failures
//! (exit 1).
//!
//! An `https://` endpoint is reached over TLS (rustls): the server's certificate is checked
//! against `--ca-file` when given, else the system's CAs; `--cert` and `--key` present a client
//! certificate, for a server that requires one (mTLS).

use std::path::PathBuf;

use anyhow::format_err;
use bytes::Bytes;
use clap::Args;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use imds_core::spec::InstanceSpec;
use imds_credentials::spec::RoleSpec;
use imds_server::admin_api::model::{
    ErrorBody, EventEnded, EventList, EventPosted, Fault, FaultList, FaultsCleared, InjectFault,
    Instance, InstanceList, InstanceMetadataOptionsResult, InstancePatch,
    ModifyInstanceMetadataOptions, PostEvent, Role, RoleCredentials, RoleList,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use serde::{de::DeserializeOwned, Serialize};

use crate::{admin_token, error::UsageError, state_dir::StateDir};

/// Characters left as they are in a path segment: RFC 3986's unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the running server's control API is and how to authenticate to it.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The control API of the running server.
    #[arg(long, env = "IMDS_ENDPOINT", default_value = "http://127.0.0.1:1339")]
    pub endpoint: String,
    /// File holding the control API's bearer token; before IMDS_ADMIN_TOKEN and the state
    /// directory's `admin-token`.
    #[arg(long, env = "IMDS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The server's state directory, where its admin token is kept.
    #[arg(long, env = "IMDS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub tls: ClientTls,
}

/// How an `https://` endpoint is reached.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientTls {
    /// CA certificates (PEM) the control API's certificate is checked against (https://
    /// endpoints); without it, the system's CAs.
    #[arg(long, env = "IMDS_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) to present, for a server that requires one (mTLS).
    #[arg(long, env = "IMDS_CLIENT_CERT", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, env = "IMDS_CLIENT_KEY", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// The rustls settings these files give.
    fn config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for certificate in certificates(path, "CA file")? {
                    roots.add(certificate).map_err(|error| {
                        UsageError(format_err!(
                            "the CA file {} holds a certificate rustls refuses: {error}",
                            path.display()
                        ))
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for certificate in found.certs {
                    let _ = roots.add(certificate);
                }
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| format_err!("TLS settings: {error}"))?
        .with_root_certificates(roots);
        // hyper-rustls sets the ALPN protocols (`http/1.1`) itself.
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "client certificate file")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
                    UsageError(format_err!(
                        "cannot read a private key from {}: {error}",
                        key.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    UsageError(format_err!(
                        "the client key does not go with the certificate {}: {error}",
                        cert.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(config)
    }
}

/// The certificates of a PEM file; none is an error.
fn certificates(
    path: &std::path::Path,
    what: &str,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    imds_server::tls::certificates(path, what).map_err(|error| UsageError(error.into()).into())
}

/// An error answer of the control API, shown as `Code: Message`.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}

impl std::error::Error for ApiError {}

/// A client of one server's control API.
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
    /// A client of the control API at `endpoint` (`http://` or `https://`), authorised by
    /// `token`, reaching an `https://` endpoint as `tls` says.
    pub fn new(endpoint: &str, token: String, tls: &ClientTls) -> anyhow::Result<AdminClient> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.config()?)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(AdminClient {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// A client as the flags say, its token found by the one rule (`admin_token`).
    pub fn from_args(args: &ApiArgs) -> anyhow::Result<AdminClient> {
        let state_dir = args
            .state_dir
            .clone()
            .unwrap_or_else(StateDir::default_path);
        let source = admin_token::source(
            args.admin_token_file.as_deref(),
            admin_token::from_environment(),
            &state_dir,
        );
        AdminClient::new(&args.endpoint, admin_token::for_client(&source)?, &args.tls)
    }

    /// Sends `method path` with `body` as JSON; the answer's body, or the API's error.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<Bytes> {
        let uri = format!("{}{path}", self.endpoint);
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {}", self.token));
        let payload = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(body)?)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|error| UsageError(format_err!("invalid endpoint {uri}: {error}")))?;
        let response = self.http.request(request).await.map_err(|error| {
            format_err!(
                "cannot reach the control API at {}: {error} (is `imds serve` running?)",
                self.endpoint
            )
        })?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        let Ok(body) = serde_json::from_slice::<ErrorBody>(&bytes) else {
            return Err(format_err!(
                "the control API answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ));
        };
        let error = ApiError(body);
        if [
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
            StatusCode::CONFLICT,
        ]
        .contains(&status)
        {
            Err(UsageError(error.into()).into())
        } else {
            Err(error.into())
        }
    }

    /// Sends a request and reads its answer as `R`.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<R> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|error| {
            format_err!("the control API's answer to {path} is not what this client reads: {error}")
        })
    }

    /// `GET /v1/instances`.
    pub async fn describe_instances(&self) -> anyhow::Result<InstanceList> {
        self.call::<(), _>(Method::GET, "/v1/instances", None).await
    }

    /// `GET /v1/instances/{instance_id}`.
    pub async fn describe_instance(&self, instance_id: &str) -> anyhow::Result<Instance> {
        let path = format!("/v1/instances/{}", segment(instance_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /v1/instances`, on `host_id` (fleet mode) or the host called.
    pub async fn register_instance(
        &self,
        spec: &InstanceSpec,
        host_id: Option<&str>,
    ) -> anyhow::Result<Instance> {
        let path = format!("/v1/instances{}", host_query(host_id));
        self.call(Method::POST, &path, Some(spec)).await
    }

    /// `PATCH /v1/instances/{instance_id}`, moving it to `host_id` if given (fleet mode).
    pub async fn update_instance(
        &self,
        instance_id: &str,
        patch: &InstancePatch,
        host_id: Option<&str>,
    ) -> anyhow::Result<Instance> {
        let path = format!(
            "/v1/instances/{}{}",
            segment(instance_id),
            host_query(host_id)
        );
        self.call(Method::PATCH, &path, Some(patch)).await
    }

    /// `DELETE /v1/instances/{instance_id}`.
    pub async fn deregister_instance(&self, instance_id: &str) -> anyhow::Result<()> {
        let path = format!("/v1/instances/{}", segment(instance_id));
        self.send::<()>(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// `GET /v1/instances/{instance_id}/metadata-options`.
    pub async fn describe_metadata_options(
        &self,
        instance_id: &str,
    ) -> anyhow::Result<InstanceMetadataOptionsResult> {
        let path = format!("/v1/instances/{}/metadata-options", segment(instance_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `PUT /v1/instances/{instance_id}/metadata-options`.
    pub async fn modify_metadata_options(
        &self,
        instance_id: &str,
        request: &ModifyInstanceMetadataOptions,
    ) -> anyhow::Result<InstanceMetadataOptionsResult> {
        let path = format!("/v1/instances/{}/metadata-options", segment(instance_id));
        self.call(Method::PUT, &path, Some(request)).await
    }

    /// `GET /v1/instances/{instance_id}/events`.
    pub async fn describe_events(&self, instance_id: &str) -> anyhow::Result<EventList> {
        let path = format!("/v1/instances/{}/events", segment(instance_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /v1/instances/{instance_id}/events`.
    pub async fn post_event(
        &self,
        instance_id: &str,
        event: &PostEvent,
    ) -> anyhow::Result<EventPosted> {
        let path = format!("/v1/instances/{}/events", segment(instance_id));
        self.call(Method::POST, &path, Some(event)).await
    }

    /// `POST /v1/instances/{instance_id}/events/{event_id}/cancel`.
    pub async fn cancel_event(
        &self,
        instance_id: &str,
        event_id: &str,
    ) -> anyhow::Result<EventEnded> {
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
    ) -> anyhow::Result<EventEnded> {
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
    ) -> anyhow::Result<Fault> {
        let path = format!("/v1/instances/{}/faults", segment(instance_id));
        self.call(Method::POST, &path, Some(fault)).await
    }

    /// `GET /v1/instances/{instance_id}/faults`.
    pub async fn describe_faults(&self, instance_id: &str) -> anyhow::Result<FaultList> {
        let path = format!("/v1/instances/{}/faults", segment(instance_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `DELETE /v1/instances/{instance_id}/faults`.
    pub async fn clear_faults(&self, instance_id: &str) -> anyhow::Result<FaultsCleared> {
        let path = format!("/v1/instances/{}/faults", segment(instance_id));
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    /// `DELETE /v1/instances/{instance_id}/faults/{fault_id}`.
    pub async fn remove_fault(&self, instance_id: &str, fault_id: &str) -> anyhow::Result<Fault> {
        let path = format!(
            "/v1/instances/{}/faults/{}",
            segment(instance_id),
            segment(fault_id)
        );
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    /// `GET /v1/roles`.
    pub async fn describe_roles(&self) -> anyhow::Result<RoleList> {
        self.call::<(), _>(Method::GET, "/v1/roles", None).await
    }

    /// `GET /v1/roles/{role_name}`.
    pub async fn describe_role(&self, role_name: &str) -> anyhow::Result<Role> {
        let path = format!("/v1/roles/{}", segment(role_name));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `PUT /v1/roles/{role_name}`.
    pub async fn put_role(&self, role_name: &str, spec: &RoleSpec) -> anyhow::Result<Role> {
        let path = format!("/v1/roles/{}", segment(role_name));
        self.call(Method::PUT, &path, Some(spec)).await
    }

    /// `DELETE /v1/roles/{role_name}`.
    pub async fn delete_role(&self, role_name: &str) -> anyhow::Result<()> {
        let path = format!("/v1/roles/{}", segment(role_name));
        self.send::<()>(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// `GET /v1/instances/{instance_id}/roles/{role_name}/credentials`.
    pub async fn role_credentials(
        &self,
        instance_id: &str,
        role_name: &str,
    ) -> anyhow::Result<RoleCredentials> {
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
    fn the_host_query_is_there_only_when_a_host_is_named() {
        assert_eq!(host_query(None), "");
        assert_eq!(host_query(Some("host-1")), "?host-id=host-1");
        assert_eq!(host_query(Some("a&b=c")), "?host-id=a%26b%3Dc");
    }
}
