//! The ECS task metadata endpoint (versions 4 and 3) and the ECS credentials endpoint, for the
//! tasks of the task table, on the container listener.
//!
//! # Routes (any method, as the ECS agent's router takes any)
//! - `/v4/{id}`, `/v4/{id}/task`, `/v4/{id}/taskWithTags`: the container, its task, the task
//!   with `TaskTags` (and `ContainerInstanceTags` on EC2); `200`, compact `application/json`.
//! - `/v4/{id}/stats`, `/v4/{id}/task/stats`: Docker's stats of the container, and of each of
//!   the task's containers by Docker id (`task_stats`); when a container's cgroup cannot be
//!   read, `500` with the agent's `"Unable to get container stats for: DOCKERID"` (in
//!   `/task/stats`: that container is `{}`).
//! - `/v3/{id}`, `/v3/{id}/task`, `/v3/{id}/taskWithTags`, `/v3/{id}/stats`, `/v3/{id}/task/stats`:
//!   the same without the fields v4 added.
//! - `/v2/credentials/{id}`, `/v1/credentials?id={id}`: the task role's credentials,
//!   `{"RoleArn","AccessKeyId","SecretAccessKey","Token","Expiration"}`.
//!
//! `{id}` is a container's endpoint id (`ECS_CONTAINER_METADATA_URI_V4`). A caller whose source
//! address is registered for a task is that task's: an id of another task's container (or
//! credentials) is answered as an unknown one, so a task cannot read its neighbours.
//!
//! Each caller address may make `--task-metadata-rate` requests a second on each path (burst
//! `--task-metadata-burst`; the agent's 40 and 60); over it, `429` with the agent's text.
//!
//! Unknown ids are answered as the agent answers them: v4 `404` and v3 `500`, each with a JSON
//! string naming the handler; credentials `400` with `{"code","message","HTTPErrorCode"}`
//! (`NoIdInRequest`, `InvalidIdInRequest`), and `503 CredentialsUninitialized` while the role's
//! provider has no valid credentials. Configured `[[container-credentials]]` paths are matched
//! before these.

use std::fmt::Write as _;

use axum::{body::Body, http::StatusCode, http::Uri, response::Response};
use imds_core::{
    render::rfc3339_nano,
    task::{Container, LaunchType, NetworkMode, Task},
};
use imds_credentials::{CredentialRequest, Delivery};
use time::OffsetDateTime;

use crate::{
    audit::{self, Event, Record},
    container_api::{
        error, go_json, json_response, task_stats, ContainerEndpoint as Endpoint, Peer,
    },
    lockdown::{Access, Verdict},
    telemetry::Refusal,
};

/// A JSON value whose objects keep their keys in the order written, as Go's `encoding/json`
/// writes a struct's fields.
pub(crate) enum Json {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Json>),
    Object(Vec<(&'static str, Json)>),
    /// A map (labels, tags): keys sorted, as Go writes maps.
    Map(Vec<(String, String)>),
    /// An object with keys made at run time (`/task/stats` by Docker id).
    Keyed(Vec<(String, Json)>),
}

impl Json {
    pub(crate) fn str(text: impl Into<String>) -> Json {
        Json::Str(text.into())
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Str(text) => out.push_str(&go_json::to_string(text).expect("strings serialise")),
            Json::Int(number) => {
                let _ = write!(out, "{number}");
            }
            Json::Float(number) => out.push_str(&go_float(*number)),
            Json::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Json::Array(items) => {
                out.push('[');
                for (position, item) in items.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (position, (key, value)) in fields.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    Json::str(*key).write(out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
            Json::Keyed(entries) => {
                out.push('{');
                for (position, (key, value)) in entries.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    Json::str(key.as_str()).write(out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
            Json::Map(entries) => {
                out.push('{');
                for (position, (key, value)) in entries.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    Json::str(key.as_str()).write(out);
                    out.push(':');
                    Json::str(value.as_str()).write(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

/// A float as Go's `encoding/json` writes it: whole numbers without a fraction (`256`, not
/// `256.0`).
fn go_float(number: f64) -> String {
    if number.is_finite() && number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{}", number as i64)
    } else {
        serde_json::to_string(&number).unwrap_or_else(|_| "0".to_owned())
    }
}

fn map(entries: &std::collections::BTreeMap<String, String>) -> Json {
    Json::Map(
        entries
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    )
}

/// Which version's shape a document takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V3,
    V4,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::V3 => "V3",
            Version::V4 => "V4",
        }
    }
}

/// What a metadata path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Document {
    Container,
    Task,
    TaskWithTags,
    Stats,
    TaskStats,
}

/// What a request asks for, if it is one of this module's paths.
#[derive(Debug, PartialEq, Eq)]
enum Ask<'a> {
    Metadata(Version, &'a str, Document),
    Credentials(&'static str, Option<String>),
}

fn parse(uri: &Uri) -> Option<Ask<'_>> {
    let path = uri.path();
    if let Some(id) = path.strip_prefix("/v2/credentials/") {
        return Some(Ask::Credentials(
            "CredentialsV2Request",
            Some(id.to_owned()).filter(|id| !id.is_empty()),
        ));
    }
    if path == "/v1/credentials" {
        let id =
            axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(uri)
                .ok()
                .and_then(|axum::extract::Query(mut query)| query.remove("id"));
        return Some(Ask::Credentials(
            "CredentialsV1Request",
            id.filter(|id| !id.is_empty()),
        ));
    }
    let (version, rest) = if let Some(rest) = path.strip_prefix("/v4/") {
        (Version::V4, rest)
    } else if let Some(rest) = path.strip_prefix("/v3/") {
        (Version::V3, rest)
    } else {
        return None;
    };
    let (id, document) = match rest.split_once('/') {
        None => (rest, Document::Container),
        Some((id, "task")) => (id, Document::Task),
        Some((id, "taskWithTags")) => (id, Document::TaskWithTags),
        Some((id, "stats")) => (id, Document::Stats),
        Some((id, "task/stats")) => (id, Document::TaskStats),
        Some(_) => return None,
    };
    Some(Ask::Metadata(version, id, document))
}

fn timestamp(when: OffsetDateTime) -> Json {
    Json::Str(rfc3339_nano(when))
}

fn networks(task: &Task, container: &Container, version: Version) -> Json {
    let mut fields = vec![
        ("NetworkMode", Json::str(task.network_mode.as_str())),
        (
            "IPv4Addresses",
            Json::Array(vec![Json::str(container.ipv4_address.as_str())]),
        ),
    ];
    if let (NetworkMode::Awsvpc, Version::V4, Some(eni)) = (task.network_mode, version, &task.eni) {
        fields.push(("AttachmentIndex", Json::Int(0)));
        fields.push(("MACAddress", Json::str(eni.mac_address.as_str())));
        fields.push((
            "IPv4SubnetCIDRBlock",
            Json::str(eni.subnet_cidr_block.as_str()),
        ));
        if !eni.dns_servers.is_empty() {
            fields.push((
                "DomainNameServers",
                Json::Array(
                    eni.dns_servers
                        .iter()
                        .map(|s| Json::str(s.as_str()))
                        .collect(),
                ),
            ));
        }
        if !eni.dns_search_list.is_empty() {
            fields.push((
                "DomainNameSearchList",
                Json::Array(
                    eni.dns_search_list
                        .iter()
                        .map(|s| Json::str(s.as_str()))
                        .collect(),
                ),
            ));
        }
        fields.push(("PrivateDNSName", Json::str(eni.private_dns_name.as_str())));
        fields.push((
            "SubnetGatewayIpv4Address",
            Json::str(eni.subnet_gateway.as_str()),
        ));
    }
    Json::Array(vec![Json::Object(fields)])
}

/// The container document (the agent's `ContainerResponse`, fields in its order).
fn container_document(task: &Task, container: &Container, version: Version) -> Json {
    let mut fields = vec![
        ("DockerId", Json::str(container.docker_id.as_str())),
        ("Name", Json::str(container.name.as_str())),
        ("DockerName", Json::str(container.docker_name.as_str())),
        ("Image", Json::str(container.image.as_str())),
        ("ImageID", Json::str(container.image_id.as_str())),
    ];
    if !container.ports.is_empty() {
        let ports = container
            .ports
            .iter()
            .map(|port| {
                let mut port_fields = vec![
                    ("ContainerPort", Json::Int(port.container_port.into())),
                    ("Protocol", Json::str(port.protocol.as_str())),
                    ("HostPort", Json::Int(port.host_port.into())),
                ];
                if version == Version::V4 {
                    port_fields.push(("HostIp", Json::str(port.host_ip.as_str())));
                }
                Json::Object(port_fields)
            })
            .collect();
        fields.push(("Ports", Json::Array(ports)));
    }
    if !container.labels.is_empty() {
        fields.push(("Labels", map(&container.labels)));
    }
    fields.push((
        "DesiredStatus",
        Json::str(container.desired_status.as_str()),
    ));
    fields.push(("KnownStatus", Json::str(container.known_status.as_str())));
    let mut limits = vec![("CPU", Json::Float(container.cpu))];
    if let Some(memory) = container.memory {
        limits.push(("Memory", Json::Int(memory.into())));
    }
    fields.push(("Limits", Json::Object(limits)));
    fields.push(("CreatedAt", timestamp(container.created_at)));
    fields.push(("StartedAt", timestamp(container.started_at)));
    fields.push(("Type", Json::str(container.kind.as_str())));
    if version == Version::V4 {
        if let Some(driver) = &container.log_driver {
            fields.push(("LogDriver", Json::str(driver.as_str())));
        }
        if !container.log_options.is_empty() {
            fields.push(("LogOptions", map(&container.log_options)));
        }
        if let Some(arn) = &container.container_arn {
            fields.push(("ContainerARN", Json::str(arn.as_str())));
        }
    }
    fields.push(("Networks", networks(task, container, version)));
    if version == Version::V4 {
        if let Some(snapshotter) = &container.snapshotter {
            fields.push(("Snapshotter", Json::str(snapshotter.as_str())));
        }
    }
    Json::Object(fields)
}

/// The task document (the agent's `TaskResponse`, fields in its order).
fn task_document(task: &Task, version: Version, with_tags: bool, now: OffsetDateTime) -> Json {
    let mut fields = vec![
        ("Cluster", Json::str(task.cluster_field())),
        ("TaskARN", Json::str(task.task_arn.as_str())),
        ("Family", Json::str(task.family.as_str())),
        ("Revision", Json::Str(task.revision.to_string())),
        ("DesiredStatus", Json::str(task.desired_status.as_str())),
        ("KnownStatus", Json::str(task.known_status.as_str())),
    ];
    let mut limits = Vec::new();
    if let Some(cpu) = task.cpu {
        limits.push(("CPU", Json::Float(cpu)));
    }
    if let Some(memory) = task.memory {
        limits.push(("Memory", Json::Int(memory.into())));
    }
    if !limits.is_empty() {
        fields.push(("Limits", Json::Object(limits)));
    }
    fields.push(("PullStartedAt", timestamp(task.pull_started_at)));
    fields.push(("PullStoppedAt", timestamp(task.pull_stopped_at)));
    fields.push((
        "AvailabilityZone",
        Json::str(task.availability_zone.as_str()),
    ));
    if with_tags {
        if !task.tags.is_empty() {
            fields.push(("TaskTags", map(&task.tags)));
        }
        if task.launch_type == LaunchType::Ec2 && !task.container_instance_tags.is_empty() {
            fields.push(("ContainerInstanceTags", map(&task.container_instance_tags)));
        }
    }
    if version == Version::V4 {
        fields.push(("LaunchType", Json::str(task.launch_type.as_str())));
    }
    fields.push((
        "Containers",
        Json::Array(
            task.containers
                .iter()
                .map(|container| container_document(task, container, version))
                .collect(),
        ),
    ));
    if version == Version::V4 {
        if let Some(vpc_id) = &task.vpc_id {
            fields.push(("VPCID", Json::str(vpc_id.as_str())));
        }
        if let Some(service) = &task.service_name {
            fields.push(("ServiceName", Json::str(service.as_str())));
        }
        if task.launch_type == LaunchType::Fargate {
            // Fargate reports its clock's state and the task's ephemeral storage; imds has
            // neither to measure, so it reports a synchronised clock and an unused volume of
            // Fargate's default size (20 GiB plus the platform's share, as AWS's examples show).
            let reference = now.replace_nanosecond(0).unwrap_or(now);
            fields.push((
                "ClockDrift",
                Json::Object(vec![
                    ("ClockErrorBound", Json::Float(0.5)),
                    ("ReferenceTimestamp", timestamp(reference)),
                    ("ClockSynchronizationStatus", Json::str("SYNCHRONIZED")),
                ]),
            ));
            fields.push((
                "EphemeralStorageMetrics",
                Json::Object(vec![
                    ("Utilized", Json::Int(0)),
                    ("Reserved", Json::Int(20496)),
                ]),
            ));
        }
        fields.push(("FaultInjectionEnabled", Json::Bool(false)));
    }
    Json::Object(fields)
}

fn json_string(status: StatusCode, text: &str) -> Response {
    let body = go_json::to_string(text).expect("strings serialise");
    json_response(status, Body::from(body))
}

/// The agent's answer to an id it does not know (`agent/handlers/v4/tmdsstate.go` texts).
fn unknown_id(version: Version, document: Document, id: &str) -> Response {
    let stats = matches!(document, Document::Stats | Document::TaskStats);
    let status = match (version, stats) {
        (Version::V4, _) => StatusCode::NOT_FOUND,
        (Version::V3, false) => StatusCode::INTERNAL_SERVER_ERROR,
        (Version::V3, true) => StatusCode::BAD_REQUEST,
    };
    let text = match document {
        Document::Container => format!(
            "{} container metadata handler: unable to get container ID from request: unable to \
             get docker ID from v3 endpoint ID: {id}",
            version.name()
        ),
        Document::Task | Document::TaskWithTags => format!(
            "{} task metadata handler: unable to get task arn from request: unable to get task \
             Arn from v3 endpoint ID: {id}",
            version.name()
        ),
        Document::Stats => format!(
            "{} container stats handler: unable to get task arn from request: unable to get \
             task Arn from v3 endpoint ID: {id}",
            version.name()
        ),
        Document::TaskStats => format!(
            "{} task stats handler: unable to get task arn from request: unable to get task Arn \
             from v3 endpoint ID: {id}",
            version.name()
        ),
    };
    json_string(status, &text)
}

/// The agent's answer when a container's stats cannot be had (its `ErrorStatsFetchFailure`):
/// `500` with the reason as a JSON string.
fn stats_unavailable(reason: &str) -> Response {
    json_string(StatusCode::INTERNAL_SERVER_ERROR, reason)
}

/// The agent's credentials error body, `{"code","message","HTTPErrorCode"}`.
fn credentials_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = Json::Object(vec![
        ("code", Json::str(code)),
        ("message", Json::str(message)),
        ("HTTPErrorCode", Json::Int(status.as_u16().into())),
    ]);
    json_response(status, Body::from(body.text()))
}

fn lockdown_refusal(endpoint: &Endpoint, peer: Option<&Peer>, verdict: Verdict) -> Response {
    let guard = &endpoint.guard;
    guard.requests.count_refusal(match verdict.access {
        Access::Nothing => Refusal::Endpoint,
        _ => Refusal::Credentials,
    });
    let mut record = Record::new(Event::LockdownRefused, audit::Endpoint::Container);
    if let Some(peer) = peer {
        record = record.caller(peer.address, verdict.caller);
    }
    record.reason = Some(match verdict.access {
        Access::Nothing => "endpoint",
        _ => "credentials",
    });
    guard.audit.write(&record);
    error(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "this user may not read this on this host",
    )
}

/// The answer to a task metadata or ECS credentials path, or `None` for any other path.
#[allow(
    clippy::disallowed_methods,
    reason = "a task metadata request is answered at the time it arrives"
)]
pub(crate) async fn respond(
    endpoint: &Endpoint,
    uri: &Uri,
    peer: Option<&Peer>,
    verdict: Verdict,
) -> Option<Response> {
    let table = endpoint.tasks.table();
    // Without tasks (none ever served), the endpoint answers as it did before them.
    if !table.answers_ecs() {
        return None;
    }
    let ask = parse(uri)?;
    if let Some(peer) = peer {
        if !table.admit(peer.address.ip(), uri.path()) {
            return Some(too_many_requests());
        }
    }
    let caller_task = peer.and_then(|peer| table.task_at(peer.address.ip()));
    let mine = |index: usize| caller_task.is_none_or(|caller| caller == index);
    Some(match ask {
        Ask::Metadata(version, id, document) => {
            if verdict.access == Access::Nothing {
                return Some(lockdown_refusal(endpoint, peer, verdict));
            }
            match table.container(id).filter(|(index, _, _)| mine(*index)) {
                None => unknown_id(version, document, id),
                Some((_, task, container)) => {
                    let body = match document {
                        Document::Container => container_document(task, container, version),
                        Document::Task => {
                            task_document(task, version, false, OffsetDateTime::now_utc())
                        }
                        Document::TaskWithTags => {
                            task_document(task, version, true, OffsetDateTime::now_utc())
                        }
                        Document::Stats => {
                            match task_stats::container_stats(
                                task,
                                container,
                                version == Version::V4,
                                OffsetDateTime::now_utc(),
                            ) {
                                Some(stats) => stats,
                                None => {
                                    return Some(stats_unavailable(&format!(
                                        "Unable to get container stats for: {}",
                                        container.docker_id
                                    )))
                                }
                            }
                        }
                        Document::TaskStats => task_stats::task_stats(
                            task,
                            version == Version::V4,
                            OffsetDateTime::now_utc(),
                        ),
                    };
                    json_response(StatusCode::OK, Body::from(body.text()))
                }
            }
        }
        Ask::Credentials(prefix, None) => credentials_error(
            StatusCode::BAD_REQUEST,
            "NoIdInRequest",
            &format!("{prefix}: No Credential ID in the request"),
        ),
        Ask::Credentials(prefix, Some(id)) => {
            let found = table
                .by_credentials(&id)
                .filter(|(index, _)| mine(*index))
                .and_then(|(_, task)| task.role.as_ref().map(|role| (task, role)));
            let Some((task, role)) = found else {
                return Some(credentials_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidIdInRequest",
                    &format!("{prefix}: Credentials not found"),
                ));
            };
            if verdict.access != Access::Everything {
                return Some(lockdown_refusal(endpoint, peer, verdict));
            }
            let request = CredentialRequest {
                role_name: &role.role_name,
                instance_id: &task.task_id,
                // A task has no IMDS version: it is served the IMDSv2 set, as the container
                // endpoint is.
                delivery: Delivery::V2,
            };
            let now = OffsetDateTime::now_utc();
            let credentials = endpoint.roles.get(request, now).await;
            match &credentials.container_json {
                Some(body) if credentials.is_valid_at(now) => {
                    let mut record =
                        Record::new(Event::CredentialsIssued, audit::Endpoint::Container);
                    if let Some(peer) = peer {
                        record = record.caller(peer.address, verdict.caller);
                    }
                    record.role = Some(&role.role_name);
                    record.task_id = Some(&task.task_id);
                    record.access_key_id = Some(&credentials.access_key_id);
                    endpoint.guard.audit.write(&record);
                    json_response(
                        StatusCode::OK,
                        Body::from(super::answer::role_arn_first(&role.role_arn, body)),
                    )
                }
                _ => credentials_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "CredentialsUninitialized",
                    &format!("{prefix}: Credentials uninitialized for ID"),
                ),
            }
        }
    })
}

/// The agent's answer over its rate limit (tollbooth's default message and type).
fn too_many_requests() -> Response {
    let mut response = Response::new(Body::from("You have reached maximum request limit."));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_as_the_agent_routes_them() {
        let ask = |path: &str| {
            let uri: Uri = path.parse().unwrap();
            format!("{:?}", parse(&uri))
        };
        assert_eq!(ask("/v4/abc"), "Some(Metadata(V4, \"abc\", Container))");
        assert_eq!(ask("/v4/"), "Some(Metadata(V4, \"\", Container))");
        assert_eq!(ask("/v3/abc/task"), "Some(Metadata(V3, \"abc\", Task))");
        assert_eq!(
            ask("/v4/abc/taskWithTags"),
            "Some(Metadata(V4, \"abc\", TaskWithTags))"
        );
        assert_eq!(ask("/v4/abc/other"), "None");
        assert_eq!(ask("/v4/abc/stats"), "Some(Metadata(V4, \"abc\", Stats))");
        assert_eq!(
            ask("/v3/abc/task/stats"),
            "Some(Metadata(V3, \"abc\", TaskStats))"
        );
        assert_eq!(ask("/v4/abc/task/"), "None");
        assert_eq!(ask("/v5/abc"), "None");
        assert_eq!(
            ask("/v2/credentials/a/b"),
            "Some(Credentials(\"CredentialsV2Request\", Some(\"a/b\")))"
        );
        assert_eq!(
            ask("/v2/credentials/"),
            "Some(Credentials(\"CredentialsV2Request\", None))"
        );
        assert_eq!(
            ask("/v1/credentials?id=x%2Fy"),
            "Some(Credentials(\"CredentialsV1Request\", Some(\"x/y\")))"
        );
        assert_eq!(
            ask("/v1/credentials"),
            "Some(Credentials(\"CredentialsV1Request\", None))"
        );
    }

    /// The ECS agent is Go: its documents escape `<`, `>`, `&`, U+2028 and U+2029 as
    /// `encoding/json` does, in values and keys alike, and still parse to the values given.
    #[tokio::test]
    async fn documents_escape_as_the_go_agent_escapes() {
        use axum::body::to_bytes;
        use imds_core::task::spec::{ContainerSpec, StoredTask, TaskSpec};
        use tower::ServiceExt;

        use crate::container_api::tasks::{TaskTable, Tasks};

        let tricky = "a<b>&c\u{2028}d\u{2029}";
        let spec = TaskSpec {
            role: Some("app".to_owned()),
            tags: Some([(format!("k{tricky}"), tricky.to_owned())].into()),
            containers: Some(vec![ContainerSpec {
                name: Some("web".to_owned()),
                endpoint_id: Some("endpoint-1".to_owned()),
                labels: Some([("team".to_owned(), tricky.to_owned())].into()),
                ..ContainerSpec::default()
            }]),
            ..TaskSpec::default()
        };
        let stored = StoredTask::new(spec);
        let task = stored.resolve().unwrap();
        let credentials_id = task.role.as_ref().unwrap().credentials_id.clone();
        let mut endpoint = crate::container_api::tests::app_endpoint();
        endpoint.tasks = Tasks::fixed(TaskTable::new(vec![(stored, task)]).unwrap());
        let app = crate::container_api::router(endpoint);
        let get = |path: String| {
            let app = app.clone();
            async move {
                let request = axum::http::Request::builder()
                    .uri(path)
                    .body(Body::empty())
                    .unwrap();
                let response = app.oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
                String::from_utf8(body.to_vec()).unwrap()
            }
        };
        let escaped = r#"a\u003cb\u003e\u0026c\u2028d\u2029"#;
        let body = get("/v4/endpoint-1/taskWithTags".to_owned()).await;
        assert!(
            body.contains(&format!(r#""TaskTags":{{"k{escaped}":"{escaped}"}}"#)),
            "{body}"
        );
        assert!(body.contains(&format!(r#""team":"{escaped}""#)), "{body}");
        for raw in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            assert!(!body.contains(raw), "{raw:?} written raw: {body}");
        }
        let document: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(document["TaskTags"][format!("k{tricky}")], tricky);
        assert_eq!(document["Containers"][0]["Labels"]["team"], tricky);
        // The container document too.
        let body = get("/v4/endpoint-1".to_owned()).await;
        assert!(body.contains(&format!(r#""team":"{escaped}""#)), "{body}");
        // The task's credentials answer is the cache's container rendering, made the same way.
        let body = get(format!("/v2/credentials/{credentials_id}")).await;
        assert!(body.starts_with(r#"{"RoleArn":"#), "{body}");
    }

    #[test]
    fn floats_are_written_as_go_writes_them() {
        assert_eq!(go_float(256.0), "256");
        assert_eq!(go_float(0.25), "0.25");
        assert_eq!(go_float(2.0), "2");
    }

    #[test]
    fn the_role_arn_comes_first() {
        let body = super::super::answer::role_arn_first(
            "arn:aws:iam::1:role/a",
            br#"{"AccessKeyId":"A"}"#,
        );
        assert_eq!(
            String::from_utf8(body.to_vec()).unwrap(),
            r#"{"RoleArn":"arn:aws:iam::1:role/a","AccessKeyId":"A"}"#
        );
    }
}
