//! `imds ctl`: the control API from the command line, with verbs and flags modelled on the AWS
//! CLI (`modify-instance-metadata-options --instance-id i-... --http-tokens required`).
//! Human-readable output by default, the API's JSON with `--output json`.

use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context};
use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use imds_credentials::spec::RoleSpec;
use serde_json::{json, Map, Value};

use crate::{state_dir::StateDir, UsageError};

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// Tables and short lines.
    Text,
    /// The control API's JSON.
    Json,
}

/// Where the running server's control API is and how to authenticate to it.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The control API of the running server.
    #[arg(long, env = "IMDS_ENDPOINT", default_value = "http://127.0.0.1:1339")]
    pub endpoint: String,
    /// File holding the control API's bearer token (default: `admin-token` in the state dir).
    #[arg(long, env = "IMDS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The server's state directory, where its admin token is kept.
    #[arg(long, env = "IMDS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `imds ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(subcommand)]
    pub verb: Verb,
}

/// When an event is posted: now, after a delay, or at a time.
#[derive(Debug, Args)]
pub struct When {
    /// Post it after this delay (`90s`, `2m`, `1h`).
    #[arg(long = "in", conflicts_with = "at")]
    pub delay: Option<String>,
    /// Post it at this time (`2026-11-24T12:00:00Z`).
    #[arg(long)]
    pub at: Option<String>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Describe instances (all, or those named).
    DescribeInstances {
        #[arg(long = "instance-id")]
        instance_ids: Vec<String>,
    },
    /// Register an instance from a description file (config format, `[instance]` keys).
    RegisterInstance {
        #[arg(long)]
        config: PathBuf,
        /// A source address the instance calls from (repeatable; added to the file's).
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// Fleet mode: the host that is to serve it (default: the host called).
        #[arg(long, value_parser = crate::cli::parse_host_id)]
        host_id: Option<String>,
    },
    /// Change an instance: the keys in the file replace the instance's; with --host-id, move it
    /// to that host (fleet mode).
    UpdateInstance {
        #[arg(long)]
        instance_id: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Fleet mode: the host that is to serve it from now on.
        #[arg(long, value_parser = crate::cli::parse_host_id)]
        host_id: Option<String>,
    },
    /// Deregister an instance.
    DeregisterInstance {
        #[arg(long)]
        instance_id: String,
    },
    /// Change an instance's metadata options (only those given).
    ModifyInstanceMetadataOptions {
        #[arg(long)]
        instance_id: String,
        #[arg(long, value_parser = ["optional", "required"])]
        http_tokens: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
        http_put_response_hop_limit: Option<u32>,
        #[arg(long, value_parser = ["enabled", "disabled"])]
        http_endpoint: Option<String>,
        #[arg(long, value_parser = ["enabled", "disabled"])]
        http_protocol_ipv6: Option<String>,
        #[arg(long, value_parser = ["enabled", "disabled"])]
        instance_metadata_tags: Option<String>,
    },
    /// Post a Spot interruption notice (`spot/instance-action`).
    SendSpotInterruption {
        #[arg(long)]
        instance_id: String,
        #[arg(long, default_value = "terminate", value_parser = ["hibernate", "stop", "terminate"])]
        action: String,
        /// When the action happens (default: two minutes after the notice).
        #[arg(long)]
        time: Option<String>,
        #[command(flatten)]
        when: When,
    },
    /// Post a rebalance recommendation.
    SendRebalanceRecommendation {
        #[arg(long)]
        instance_id: String,
        #[command(flatten)]
        when: When,
    },
    /// Schedule a maintenance event.
    ScheduleMaintenance {
        #[arg(long)]
        instance_id: String,
        #[arg(long, value_parser = ["instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop"])]
        code: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        not_before: Option<String>,
        #[arg(long)]
        not_after: Option<String>,
        #[command(flatten)]
        when: When,
    },
    /// Set the Auto Scaling target lifecycle state.
    SetTargetLifecycleState {
        #[arg(long)]
        instance_id: String,
        #[arg(long)]
        state: String,
        #[command(flatten)]
        when: When,
    },
    /// List an instance's events.
    DescribeInstanceEvents {
        #[arg(long)]
        instance_id: String,
    },
    /// Cancel an event.
    CancelEvent {
        #[arg(long)]
        instance_id: String,
        #[arg(long)]
        event_id: String,
    },
    /// Complete a maintenance event.
    CompleteEvent {
        #[arg(long)]
        instance_id: String,
        #[arg(long)]
        event_id: String,
    },
    /// Describe the roles that have a provider of their own (all, or those named).
    DescribeRoles {
        #[arg(long = "role-name")]
        role_names: Vec<String>,
    },
    /// Set a role's credential provider; its instances get credentials from it at once.
    PutRole {
        #[arg(long)]
        role_name: String,
        #[command(flatten)]
        spec: RoleArgs,
    },
    /// Remove a role's own provider: it uses the default provider again.
    DeleteRole {
        #[arg(long)]
        role_name: String,
    },
}

/// A role's provider, as `[[roles]]` keys.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// `generated` (default), `static` or `sts`.
    #[arg(long, value_parser = ["generated", "static", "sts"])]
    pub provider: Option<String>,
    /// `generated`, `static`: how long each set lasts.
    #[arg(long)]
    pub lifetime_seconds: Option<u64>,
    /// `static`: a JSON file with AccessKeyId, SecretAccessKey and Token (or SessionToken), as
    /// IMDS or `aws sts assume-role` print them (keys are not taken on the command line, where
    /// other users could see them).
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// `sts`: the ARN of the role to assume.
    #[arg(long)]
    pub role_arn: Option<String>,
    /// `sts`: the STS endpoint.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// `sts`: the region STS is called in.
    #[arg(long)]
    pub region: Option<String>,
    /// `sts`: ExternalId.
    #[arg(long)]
    pub external_id: Option<String>,
    /// `sts`: DurationSeconds.
    #[arg(long)]
    pub duration_seconds: Option<i32>,
    /// `sts`: a session tag, KEY=VALUE (repeatable).
    #[arg(long = "session-tag", value_parser = parse_tag)]
    pub session_tags: Vec<(String, String)>,
    /// `sts`: an inline session policy (JSON).
    #[arg(long)]
    pub policy: Option<String>,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

impl RoleArgs {
    /// The body of `PUT /v1/roles/{name}`; a credentials file is read here.
    fn spec(&self) -> anyhow::Result<RoleSpec> {
        let mut spec = RoleSpec {
            provider: self.provider.clone(),
            lifetime_seconds: self.lifetime_seconds,
            role_arn: self.role_arn.clone(),
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            external_id: self.external_id.clone(),
            duration_seconds: self.duration_seconds,
            session_tags: self.session_tags.iter().cloned().collect(),
            policy: self.policy.clone(),
            ..RoleSpec::default()
        };
        if let Some(path) = &self.credentials_file {
            crate::config::read_credentials_file(&mut spec, path)
                .map_err(|error| UsageError(format_err!("--credentials-file: {error:#}")))?;
        }
        Ok(spec)
    }
}

/// Reads an instance description file (config format) as JSON: the `[instance]` table if there
/// is one, else the top level. A `user-data-file` is read here, relative to the file.
pub fn description(path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(UsageError)?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("invalid description file {}", path.display()))
        .map_err(UsageError)?;
    let value = serde_json::to_value(table).expect("TOML converts to JSON");
    let mut map = match value {
        Value::Object(mut map) => match map.remove("instance") {
            Some(Value::Object(instance)) => instance,
            Some(_) => bail!(UsageError(format_err!(
                "{}: instance must be a table",
                path.display()
            ))),
            None => map,
        },
        _ => unreachable!("a TOML document is a table"),
    };
    if let Some(Value::String(name)) = map.remove("user-data-file") {
        let user_data_path = path.parent().unwrap_or(Path::new(".")).join(name);
        let bytes = std::fs::read(&user_data_path)
            .with_context(|| format!("user-data-file: cannot read {}", user_data_path.display()))
            .map_err(UsageError)?;
        map.insert(
            "user-data-base64".to_owned(),
            Value::from(STANDARD.encode(bytes)),
        );
    }
    Ok(map)
}

fn admin_token(args: &CtlArgs) -> anyhow::Result<String> {
    admin_token_from(
        args.api.admin_token_file.as_deref(),
        args.api.state_dir.as_deref(),
    )
}

/// The control API's token: `IMDS_ADMIN_TOKEN`, else the file given, else `admin-token` in the
/// state directory.
pub fn admin_token_from(
    admin_token_file: Option<&Path>,
    state_dir: Option<&Path>,
) -> anyhow::Result<String> {
    if let Ok(token) = std::env::var("IMDS_ADMIN_TOKEN") {
        return Ok(token.trim().to_owned());
    }
    let path = match admin_token_file {
        Some(path) => path.to_owned(),
        None => state_dir
            .map(Path::to_owned)
            .unwrap_or_else(StateDir::default_path)
            .join(crate::state_dir::ADMIN_TOKEN),
    };
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the admin token from {} (give --admin-token-file, --state-dir or IMDS_ADMIN_TOKEN)",
            path.display()
        )
    })?;
    Ok(token.trim().to_owned())
}

/// A client of the control API.
pub struct Api {
    endpoint: String,
    token: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Api {
    /// A client of the control API at `endpoint`, authorised by `token`.
    pub fn new(endpoint: &str, token: String) -> Api {
        Api {
            endpoint: endpoint.to_owned(),
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Calls `method path` with an optional JSON body; the JSON answer, or the API's error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let uri = format!("{}{path}", self.endpoint.trim_end_matches('/'));
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {}", self.token));
        let payload = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(&body).expect("JSON values serialise"))
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|error| UsageError(format_err!("invalid endpoint {uri}: {error}")))?;
        let response = self.client.request(request).await.map_err(|error| {
            format_err!(
                "cannot reach the control API at {}: {error} (is `imds serve` running?)",
                self.endpoint
            )
        })?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        };
        if status.is_success() {
            return Ok(value);
        }
        let code = value["Code"].as_str().unwrap_or("Error");
        let message = value["Message"].as_str().unwrap_or("");
        let error = format_err!("{code}: {message}");
        if status == StatusCode::BAD_REQUEST
            || status == StatusCode::NOT_FOUND
            || status == StatusCode::CONFLICT
        {
            Err(UsageError(error).into())
        } else {
            Err(error)
        }
    }
}

fn when(when: &When) -> Map<String, Value> {
    let mut map = Map::new();
    if let Some(delay) = &when.delay {
        map.insert("In".to_owned(), Value::from(delay.clone()));
    }
    if let Some(at) = &when.at {
        map.insert("At".to_owned(), Value::from(at.clone()));
    }
    map
}

fn insert_some(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value);
    }
}

/// Runs one `imds ctl` verb.
pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let api = Api {
        endpoint: args.api.endpoint.clone(),
        token: admin_token(&args)?,
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let instance_path = |id: &str| format!("/v1/instances/{id}");
    let role_path = |name: &str| format!("/v1/roles/{name}");
    let result = match &args.verb {
        Verb::DescribeInstances { instance_ids } => {
            let mut instances = Vec::new();
            if instance_ids.is_empty() {
                let all = api.call(Method::GET, "/v1/instances", None).await?;
                instances = all["Instances"].as_array().cloned().unwrap_or_default();
            } else {
                for id in instance_ids {
                    instances.push(api.call(Method::GET, &instance_path(id), None).await?);
                }
            }
            json!({ "Instances": instances })
        }
        Verb::RegisterInstance {
            config,
            addresses,
            host_id,
        } => {
            let mut map = description(config)?;
            if !addresses.is_empty() {
                let mut all: Vec<Value> = map
                    .get("addresses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                all.extend(addresses.iter().cloned().map(Value::from));
                map.insert("addresses".to_owned(), Value::Array(all));
            }
            api.call(
                Method::POST,
                &format!("/v1/instances{}", host_query(host_id.as_deref())),
                Some(Value::Object(map)),
            )
            .await?
        }
        Verb::UpdateInstance {
            instance_id,
            config,
            host_id,
        } => {
            let map = match config {
                Some(config) => description(config)?,
                None if host_id.is_some() => Map::new(),
                None => bail!(UsageError(format_err!(
                    "give --config with the keys to change, or --host-id to move the instance"
                ))),
            };
            api.call(
                Method::PATCH,
                &format!(
                    "{}{}",
                    instance_path(instance_id),
                    host_query(host_id.as_deref())
                ),
                Some(Value::Object(map)),
            )
            .await?
        }
        Verb::DeregisterInstance { instance_id } => {
            api.call(Method::DELETE, &instance_path(instance_id), None)
                .await?;
            json!({ "InstanceId": instance_id, "Deregistered": true })
        }
        Verb::ModifyInstanceMetadataOptions {
            instance_id,
            http_tokens,
            http_put_response_hop_limit,
            http_endpoint,
            http_protocol_ipv6,
            instance_metadata_tags,
        } => {
            let mut body = Map::new();
            insert_some(
                &mut body,
                "HttpTokens",
                http_tokens.clone().map(Value::from),
            );
            insert_some(
                &mut body,
                "HttpPutResponseHopLimit",
                http_put_response_hop_limit.map(Value::from),
            );
            insert_some(
                &mut body,
                "HttpEndpoint",
                http_endpoint.clone().map(Value::from),
            );
            insert_some(
                &mut body,
                "HttpProtocolIpv6",
                http_protocol_ipv6.clone().map(Value::from),
            );
            insert_some(
                &mut body,
                "InstanceMetadataTags",
                instance_metadata_tags.clone().map(Value::from),
            );
            if body.is_empty() {
                bail!(UsageError(format_err!(
                    "give at least one option to change, e.g. --http-tokens required"
                )));
            }
            api.call(
                Method::PUT,
                &format!("{}/metadata-options", instance_path(instance_id)),
                Some(Value::Object(body)),
            )
            .await?
        }
        Verb::SendSpotInterruption {
            instance_id,
            action,
            time,
            when: timing,
        } => {
            let mut body = when(timing);
            body.insert("Type".to_owned(), Value::from("spot-interruption"));
            body.insert("Action".to_owned(), Value::from(action.clone()));
            insert_some(&mut body, "Time", time.clone().map(Value::from));
            post_event(&api, instance_id, body).await?
        }
        Verb::SendRebalanceRecommendation {
            instance_id,
            when: timing,
        } => {
            let mut body = when(timing);
            body.insert("Type".to_owned(), Value::from("rebalance-recommendation"));
            post_event(&api, instance_id, body).await?
        }
        Verb::ScheduleMaintenance {
            instance_id,
            code,
            description,
            not_before,
            not_after,
            when: timing,
        } => {
            let mut body = when(timing);
            body.insert("Type".to_owned(), Value::from("scheduled-maintenance"));
            body.insert("Code".to_owned(), Value::from(code.clone()));
            insert_some(
                &mut body,
                "Description",
                description.clone().map(Value::from),
            );
            insert_some(&mut body, "NotBefore", not_before.clone().map(Value::from));
            insert_some(&mut body, "NotAfter", not_after.clone().map(Value::from));
            post_event(&api, instance_id, body).await?
        }
        Verb::SetTargetLifecycleState {
            instance_id,
            state,
            when: timing,
        } => {
            let mut body = when(timing);
            body.insert("Type".to_owned(), Value::from("target-lifecycle-state"));
            body.insert("State".to_owned(), Value::from(state.clone()));
            post_event(&api, instance_id, body).await?
        }
        Verb::DescribeInstanceEvents { instance_id } => {
            api.call(
                Method::GET,
                &format!("{}/events", instance_path(instance_id)),
                None,
            )
            .await?
        }
        Verb::CancelEvent {
            instance_id,
            event_id,
        } => {
            api.call(
                Method::POST,
                &format!("{}/events/{event_id}/cancel", instance_path(instance_id)),
                None,
            )
            .await?
        }
        Verb::CompleteEvent {
            instance_id,
            event_id,
        } => {
            api.call(
                Method::POST,
                &format!("{}/events/{event_id}/complete", instance_path(instance_id)),
                None,
            )
            .await?
        }
        Verb::DescribeRoles { role_names } => {
            let mut roles = Vec::new();
            if role_names.is_empty() {
                let all = api.call(Method::GET, "/v1/roles", None).await?;
                roles = all["Roles"].as_array().cloned().unwrap_or_default();
            } else {
                for name in role_names {
                    roles.push(api.call(Method::GET, &role_path(name), None).await?);
                }
            }
            json!({ "Roles": roles })
        }
        Verb::PutRole { role_name, spec } => {
            let body = serde_json::to_value(spec.spec()?)?;
            api.call(Method::PUT, &role_path(role_name), Some(body))
                .await?
        }
        Verb::DeleteRole { role_name } => {
            api.call(Method::DELETE, &role_path(role_name), None)
                .await?;
            json!({ "RoleName": role_name, "Deleted": true })
        }
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&result)?),
        Output::Text => print_text(&args.verb, &result),
    }
    Ok(())
}

/// `?host-id=HOST`, percent-encoded, or nothing.
fn host_query(host_id: Option<&str>) -> String {
    match host_id {
        Some(host_id) => format!(
            "?host-id={}",
            form_urlencoded::byte_serialize(host_id.as_bytes()).collect::<String>()
        ),
        None => String::new(),
    }
}

async fn post_event(
    api: &Api,
    instance_id: &str,
    body: Map<String, Value>,
) -> anyhow::Result<Value> {
    api.call(
        Method::POST,
        &format!("/v1/instances/{instance_id}/events"),
        Some(Value::Object(body)),
    )
    .await
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|name| name.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(header.iter().map(|name| (*name).to_owned()).collect())
    );
    for row in rows {
        println!("{}", line(row));
    }
}

fn print_text(verb: &Verb, result: &Value) {
    match verb {
        Verb::DescribeInstances { .. } => {
            let rows = result["Instances"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|instance| {
                    let options = &instance["MetadataOptions"];
                    vec![
                        text(&instance["InstanceId"]),
                        text(&instance["Addresses"]),
                        text(&instance["InstanceType"]),
                        text(&instance["AvailabilityZone"]),
                        text(&instance["IamRole"]),
                        text(&options["HttpTokens"]),
                        text(&options["HttpEndpoint"]),
                        text(&options["HttpPutResponseHopLimit"]),
                        text(&options["State"]),
                    ]
                })
                .collect();
            print_table(
                &[
                    "INSTANCE",
                    "ADDRESSES",
                    "TYPE",
                    "ZONE",
                    "ROLE",
                    "TOKENS",
                    "ENDPOINT",
                    "HOPS",
                    "OPTIONS",
                ],
                rows,
            );
        }
        Verb::DescribeInstanceEvents { .. } => {
            let rows = result["Events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|event| {
                    vec![
                        text(&event["EventId"]),
                        text(&event["Type"]),
                        text(&event["Status"]),
                        text(&event["PostedTime"]),
                    ]
                })
                .collect();
            print_table(&["EVENT", "TYPE", "STATUS", "POSTED"], rows);
        }
        Verb::ModifyInstanceMetadataOptions { .. } => {
            let options = &result["InstanceMetadataOptions"];
            println!(
                "{}: http-tokens={} http-endpoint={} hop-limit={} ipv6={} tags={} ({})",
                text(&result["InstanceId"]),
                text(&options["HttpTokens"]),
                text(&options["HttpEndpoint"]),
                text(&options["HttpPutResponseHopLimit"]),
                text(&options["HttpProtocolIpv6"]),
                text(&options["InstanceMetadataTags"]),
                text(&options["State"]),
            );
        }
        Verb::RegisterInstance { .. } | Verb::UpdateInstance { .. } => {
            println!(
                "{} (revision {}) addresses {} host {}",
                text(&result["InstanceId"]),
                text(&result["Revision"]),
                text(&result["Addresses"]),
                text(&result["HostId"])
            );
        }
        Verb::DeregisterInstance { instance_id } => println!("{instance_id} deregistered"),
        Verb::SendSpotInterruption { .. }
        | Verb::SendRebalanceRecommendation { .. }
        | Verb::ScheduleMaintenance { .. }
        | Verb::SetTargetLifecycleState { .. } => {
            println!(
                "{} {} posted at {}",
                text(&result["InstanceId"]),
                text(&result["EventId"]),
                text(&result["PostedTime"])
            );
        }
        Verb::DescribeRoles { .. } => {
            let rows = result["Roles"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|role| {
                    let description = &role["Description"];
                    vec![
                        text(&role["RoleName"]),
                        text(&role["Provider"]),
                        text(&description["role-arn"]),
                        text(&role["InstanceIds"]),
                        text(&role["Revision"]),
                    ]
                })
                .collect();
            print_table(&["ROLE", "PROVIDER", "ARN", "INSTANCES", "REVISION"], rows);
        }
        Verb::PutRole { .. } => println!(
            "{} provider={} (revision {}) instances {}",
            text(&result["RoleName"]),
            text(&result["Provider"]),
            text(&result["Revision"]),
            text(&result["InstanceIds"]),
        ),
        Verb::DeleteRole { role_name } => {
            println!("{role_name} uses the default provider again")
        }
        Verb::CancelEvent { .. } | Verb::CompleteEvent { .. } => {
            println!(
                "{} {} {}",
                text(&result["InstanceId"]),
                text(&result["EventId"]),
                text(&result["Status"])
            );
        }
    }
}
