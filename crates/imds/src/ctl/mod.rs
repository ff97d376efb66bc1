//! `imds ctl`: the control API from the command line, with verbs and flags modelled on the AWS
//! CLI (`modify-instance-metadata-options --instance-id i-... --http-tokens required`).
//! Each verb builds a request of the API's own types, calls it through `AdminClient`, and hands
//! the typed answer to `output`: human-readable by default, the API's JSON with `--output json`.
//!
//! # Layout
//! - `mod.rs`: the verbs and their flags, and what each one asks the API.
//! - `output.rs`: how each answer is printed.

mod output;

use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context};
use base64::{engine::general_purpose::STANDARD, Engine};
use clap::{Args, Subcommand, ValueEnum};
use imds_core::{
    options::{HopLimit, HttpTokens, Toggle},
    spec::InstanceSpec,
    task::spec::TaskSpec,
};
use imds_credentials::spec::RoleSpec;
use imds_server::admin_api::model::{
    CreatePodIdentityAssociation, PodIdentityAssociationList, UpdatePodIdentityAssociation,
};
use imds_server::admin_api::model::{
    Delay, EcsTaskList, EventType, FaultKind, GuestMethod, InjectFault, InstanceList,
    InstancePatch, MaintenanceCode, MintServiceAccountToken, ModifyInstanceMetadataOptions,
    PostEvent, RoleList, SendSshPublicKey, SpotAction, TaskPatch,
};

use crate::{
    client::{self, AdminClient, ApiArgs},
    ctl::output::Outcome,
    error::UsageError,
};

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// Tables and short lines.
    Text,
    /// The control API's JSON.
    Json,
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

impl When {
    /// `kind` posted as these flags say.
    fn event(&self, kind: EventType) -> PostEvent {
        PostEvent {
            at: self.at.clone(),
            r#in: self.delay.clone().map(Delay::Text),
            ..PostEvent::new(kind)
        }
    }
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
        #[arg(long, value_parser = imds_core::host_id::parse_host_id)]
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
        #[arg(long, value_parser = imds_core::host_id::parse_host_id)]
        host_id: Option<String>,
    },
    /// Deregister an instance.
    DeregisterInstance {
        #[arg(long)]
        instance_id: String,
    },
    /// Register an ECS task from a description file: TOML with the config file's `[[tasks]]`
    /// keys (at the top level or in one `[[tasks]]` table), or the same as JSON (`.json`).
    RegisterTask {
        #[arg(long)]
        file: PathBuf,
        /// Fleet mode: the host that is to serve it (default: the host called).
        #[arg(long, value_parser = imds_core::host_id::parse_host_id)]
        host_id: Option<String>,
    },
    /// Change an ECS task: the keys a file gives (TOML with `[[tasks]]` keys, or JSON, where
    /// null removes a key) replace the task's; its generated values stay.
    UpdateTask {
        #[arg(long = "task-id")]
        task_id: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Describe ECS tasks (all, or those named).
    DescribeTasks {
        #[arg(long = "task-id")]
        task_ids: Vec<String>,
    },
    /// Deregister an ECS task: its metadata and credentials are no longer served.
    DeregisterTask {
        #[arg(long)]
        task_id: String,
    },
    /// Describe an instance's metadata options and whether it serves them yet.
    DescribeInstanceMetadataOptions {
        #[arg(long)]
        instance_id: String,
    },
    /// Change an instance's metadata options (only those given).
    ModifyInstanceMetadataOptions {
        #[arg(long)]
        instance_id: String,
        #[arg(long, value_name = "optional|required")]
        http_tokens: Option<HttpTokens>,
        #[arg(long, value_name = "1-64")]
        http_put_response_hop_limit: Option<HopLimit>,
        #[arg(long, value_name = "enabled|disabled")]
        http_endpoint: Option<Toggle>,
        #[arg(long, value_name = "enabled|disabled")]
        http_protocol_ipv6: Option<Toggle>,
        #[arg(long, value_name = "enabled|disabled")]
        instance_metadata_tags: Option<Toggle>,
    },
    /// Post a Spot interruption notice (`spot/instance-action`).
    SendSpotInterruption {
        #[arg(long)]
        instance_id: String,
        #[arg(
            long,
            default_value = "terminate",
            value_name = "hibernate|stop|terminate"
        )]
        action: SpotAction,
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
        #[arg(
            long,
            value_name = "instance-reboot|system-reboot|system-maintenance|instance-retirement|instance-stop"
        )]
        code: MaintenanceCode,
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
    /// Inject a fault into an instance's metadata service (until removed unless --duration or
    /// --count is given).
    InjectFault {
        #[arg(long)]
        instance_id: String,
        #[command(flatten)]
        fault: FaultArgs,
    },
    /// Send an SSH public key to an instance for 60 seconds, as EC2 Instance Connect's
    /// send-ssh-public-key does: the guest reads it at
    /// meta-data/managed-ssh-keys/active-keys/USER.
    SendSshPublicKey {
        #[arg(long)]
        instance_id: String,
        /// The OS user the key may log in as.
        #[arg(long = "instance-os-user")]
        instance_os_user: String,
        /// The public key file (one OpenSSH line: ssh-ed25519 or ssh-rsa of 2048 bits or more).
        #[arg(long = "ssh-public-key", value_name = "FILE")]
        ssh_public_key: PathBuf,
        /// The instance's Availability Zone (checked against the instance's).
        #[arg(long)]
        availability_zone: Option<String>,
    },
    /// Mint an EKS Pod Identity service-account token with the key the server's Pod Identity
    /// endpoint checks tokens with (printed, or written to --output for
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE).
    MintServiceAccountToken {
        /// The pod's namespace.
        #[arg(long)]
        namespace: String,
        /// The pod's service account.
        #[arg(long)]
        service_account: String,
        /// The audience (default pods.eks.amazonaws.com).
        #[arg(long)]
        audience: Option<String>,
        /// Seconds the token is valid (default 86400).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(imds_server::container_api::service_account_token::LONGEST_LIFETIME)))]
        lifetime: Option<u32>,
        /// The issuer (`iss`).
        #[arg(long)]
        issuer: Option<String>,
        /// Write the token here (mode 0600, no trailing newline) instead of printing it.
        #[arg(long = "token-file", value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Associate an EKS Pod Identity service account with a role (as `aws eks
    /// create-pod-identity-association`): its pods get the role's credentials at once.
    CreatePodIdentityAssociation {
        /// The service account's namespace.
        #[arg(long)]
        namespace: String,
        /// The service account.
        #[arg(long)]
        service_account: String,
        /// The role its pods get.
        #[arg(long = "role")]
        role: String,
    },
    /// List the EKS Pod Identity associations (all, or those named).
    ListPodIdentityAssociations {
        /// Only these associations.
        #[arg(long = "association-id")]
        association_ids: Vec<String>,
    },
    /// Give an EKS Pod Identity association another role.
    UpdatePodIdentityAssociation {
        #[arg(long)]
        association_id: String,
        /// The role its pods get from now on.
        #[arg(long = "role")]
        role: String,
    },
    /// Delete an EKS Pod Identity association: its service account's pods get no credentials.
    DeletePodIdentityAssociation {
        #[arg(long)]
        association_id: String,
    },
    /// List an instance's faults with how many requests each matched.
    DescribeFaults {
        #[arg(long)]
        instance_id: String,
    },
    /// Remove an instance's faults (all, or the one named).
    ClearFaults {
        #[arg(long)]
        instance_id: String,
        #[arg(long)]
        fault_id: Option<String>,
    },
    /// Start a scenario file (TOML; see examples/scenarios): its steps run at their offsets
    /// from now.
    RunScenario {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Describe scenarios (all, or the one named) with each step's progress.
    DescribeScenario {
        #[arg(value_name = "ID")]
        scenario_id: Option<String>,
    },
    /// Stop a scenario: the steps not yet run are skipped.
    StopScenario {
        #[arg(value_name = "ID")]
        scenario_id: String,
    },
}

/// A fault, as the fields of `InjectFault`.
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// latency, no-answer, status, reset, close, omit-token-ttl, credentials-code,
    /// credentials-expiry, role-renamed or throttle.
    #[arg(long)]
    pub kind: FaultKind,
    /// A name for it (default: fault-N).
    #[arg(long)]
    pub fault_id: Option<String>,
    /// Only requests for paths below the version matching this glob
    /// (`meta-data/iam/security-credentials/*`, `api/token`).
    #[arg(long)]
    pub path: Option<String>,
    /// Only requests with this method (GET, HEAD, PUT, OPTIONS).
    #[arg(long)]
    pub method: Option<GuestMethod>,
    /// End it after this long (`30s`, `5m`).
    #[arg(long)]
    pub duration: Option<String>,
    /// End it after this many matching requests.
    #[arg(long)]
    pub count: Option<u64>,
    /// latency: milliseconds (the least with --latency-max-ms).
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// latency: the most milliseconds; each request waits a uniform pick.
    #[arg(long)]
    pub latency_max_ms: Option<u64>,
    /// status: the status answered (500, 503, 404, 403, 401, ...).
    #[arg(long)]
    pub status: Option<u16>,
    /// credentials-code: the Code (default AssumeRoleUnauthorizedAccess).
    #[arg(long)]
    pub code: Option<String>,
    /// credentials-code: the Message.
    #[arg(long)]
    pub message: Option<String>,
    /// credentials-expiry: seconds from now to the Expiration served.
    #[arg(long, allow_hyphen_values = true)]
    pub expires_in: Option<i64>,
    /// role-renamed: the name the role is shown as.
    #[arg(long)]
    pub role_name: Option<String>,
    /// throttle: requests allowed per second; the others get 429.
    #[arg(long)]
    pub requests_per_second: Option<u32>,
}

impl FaultArgs {
    /// The body of `POST /v1/instances/{id}/faults`.
    fn request(&self) -> InjectFault {
        InjectFault {
            fault_id: self.fault_id.clone(),
            path: self.path.clone(),
            method: self.method,
            duration: self.duration.clone().map(Delay::Text),
            count: self.count,
            latency_ms: self.latency_ms,
            latency_max_ms: self.latency_max_ms,
            status: self.status,
            code: self.code.clone(),
            message: self.message.clone(),
            expires_in: self.expires_in,
            role_name: self.role_name.clone(),
            requests_per_second: self.requests_per_second,
            ..InjectFault::new(self.kind)
        }
    }
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

/// Reads an instance description file (config format): the `[instance]` table if there is one,
/// else the top level. A `user-data-file` is read here, relative to the file, and sent as
/// `user-data-base64`.
pub fn description(path: &Path) -> anyhow::Result<InstanceSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(UsageError)?;
    let mut table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("invalid description file {}", path.display()))
        .map_err(UsageError)?;
    let table = match table.remove("instance") {
        Some(toml::Value::Table(instance)) => instance,
        Some(_) => bail!(UsageError(format_err!(
            "{}: instance must be a table",
            path.display()
        ))),
        None => table,
    };
    let mut spec: InstanceSpec = table
        .try_into()
        .with_context(|| format!("invalid description file {}", path.display()))
        .map_err(UsageError)?;
    if let Some(name) = spec.user_data_file.take() {
        if spec.user_data.is_some() || spec.user_data_base64.is_some() {
            bail!(UsageError(format_err!(
                "{}: set at most one of user-data, user-data-base64 and user-data-file",
                path.display()
            )));
        }
        let user_data_path = path.parent().unwrap_or(Path::new(".")).join(name);
        let bytes = std::fs::read(&user_data_path)
            .with_context(|| format!("user-data-file: cannot read {}", user_data_path.display()))
            .map_err(UsageError)?;
        spec.user_data_base64 = Some(STANDARD.encode(bytes));
    }
    Ok(spec)
}

/// Reads a task description file: JSON when it ends in `.json`, else TOML, either the keys of
/// one `[[tasks]]` entry at the top level or a file with exactly one `[[tasks]]` table.
/// The merge patch `update-task` sends: a JSON file as it is (so `null` removes a key), a TOML
/// file as the keys it gives.
fn task_patch(path: &Path) -> anyhow::Result<TaskPatch> {
    if path
        .extension()
        .is_some_and(|extension| extension == "json")
    {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(UsageError)?;
        let patch: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("invalid task patch file {}", path.display()))
            .map_err(UsageError)?;
        if !patch.is_object() {
            bail!(UsageError(format_err!(
                "{}: a task patch is a JSON object",
                path.display()
            )));
        }
        return Ok(TaskPatch(patch));
    }
    Ok(TaskPatch(serde_json::to_value(task_description(path)?)?))
}

pub fn task_description(path: &Path) -> anyhow::Result<TaskSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(UsageError)?;
    let invalid = || format!("invalid task description file {}", path.display());
    if path
        .extension()
        .is_some_and(|extension| extension == "json")
    {
        return serde_json::from_str(&text)
            .with_context(invalid)
            .map_err(|error| UsageError(error).into());
    }
    let mut table: toml::Table = toml::from_str(&text)
        .with_context(invalid)
        .map_err(UsageError)?;
    let table = match table.remove("tasks") {
        Some(toml::Value::Array(mut tasks)) if tasks.len() == 1 && table.is_empty() => {
            match tasks.pop() {
                Some(toml::Value::Table(task)) => task,
                _ => bail!(UsageError(format_err!(
                    "{}: tasks must be a table ([[tasks]])",
                    path.display()
                ))),
            }
        }
        Some(_) => bail!(UsageError(format_err!(
            "{}: give one task, as the top-level keys or one [[tasks]] table",
            path.display()
        ))),
        None => table,
    };
    table
        .try_into()
        .with_context(invalid)
        .map_err(|error| UsageError(error).into())
}

/// Runs one `imds ctl` verb.
pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let client = client::from_args(&args.api)?;
    let outcome = ask(&client, &args.verb).await?;
    output::print(&outcome, args.output)
}

/// Asks the control API what `verb` says.
async fn ask(client: &AdminClient, verb: &Verb) -> anyhow::Result<Outcome> {
    Ok(match verb {
        Verb::DescribeInstances { instance_ids } => {
            let list = if instance_ids.is_empty() {
                client.describe_instances().await?
            } else {
                let mut instances = Vec::new();
                for instance_id in instance_ids {
                    instances.push(client.describe_instance(instance_id).await?);
                }
                InstanceList { instances }
            };
            Outcome::Instances(list)
        }
        Verb::RegisterInstance {
            config,
            addresses,
            host_id,
        } => {
            let mut spec = description(config)?;
            if !addresses.is_empty() {
                spec.addresses
                    .get_or_insert_with(Vec::new)
                    .extend(addresses.iter().cloned());
            }
            Outcome::Instance(Box::new(
                client.register_instance(&spec, host_id.as_deref()).await?,
            ))
        }
        Verb::UpdateInstance {
            instance_id,
            config,
            host_id,
        } => {
            let spec = match config {
                Some(config) => description(config)?,
                None if host_id.is_some() => InstanceSpec::default(),
                None => bail!(UsageError(format_err!(
                    "give --config with the keys to change, or --host-id to move the instance"
                ))),
            };
            let patch = InstancePatch(serde_json::to_value(spec)?);
            Outcome::Instance(Box::new(
                client
                    .update_instance(instance_id, &patch, host_id.as_deref())
                    .await?,
            ))
        }
        Verb::DeregisterInstance { instance_id } => {
            client.deregister_instance(instance_id).await?;
            Outcome::Deregistered {
                instance_id: instance_id.clone(),
            }
        }
        Verb::RegisterTask { file, host_id } => {
            let spec = task_description(file)?;
            Outcome::Task(Box::new(
                client.register_task(&spec, host_id.as_deref()).await?,
            ))
        }
        Verb::UpdateTask { task_id, file } => {
            let patch = task_patch(file)?;
            Outcome::Task(Box::new(client.update_task(task_id, &patch).await?))
        }
        Verb::DescribeTasks { task_ids } => {
            let list = if task_ids.is_empty() {
                client.describe_tasks().await?
            } else {
                let mut tasks = Vec::new();
                for task_id in task_ids {
                    tasks.push(client.describe_task(task_id).await?);
                }
                EcsTaskList { tasks }
            };
            Outcome::Tasks(list)
        }
        Verb::DeregisterTask { task_id } => {
            client.deregister_task(task_id).await?;
            Outcome::TaskDeregistered {
                task_id: task_id.clone(),
            }
        }
        Verb::InjectFault { instance_id, fault } => Outcome::Fault(Box::new(
            client.inject_fault(instance_id, &fault.request()).await?,
        )),
        Verb::DescribeFaults { instance_id } => {
            Outcome::Faults(client.describe_faults(instance_id).await?)
        }
        Verb::SendSshPublicKey {
            instance_id,
            instance_os_user,
            ssh_public_key,
            availability_zone,
        } => {
            let text = std::fs::read_to_string(ssh_public_key)
                .with_context(|| {
                    format!("--ssh-public-key: cannot read {}", ssh_public_key.display())
                })
                .map_err(UsageError)?;
            // Checked here too, so that a wrong file is named before anything is sent.
            imds_core::managed_ssh_keys::PublicKey::parse(&text).map_err(|error| {
                UsageError(format_err!(
                    "--ssh-public-key: {}: {error}",
                    ssh_public_key.display()
                ))
            })?;
            let request = SendSshPublicKey {
                instance_os_user: instance_os_user.clone(),
                ssh_public_key: text,
                availability_zone: availability_zone.clone(),
            };
            Outcome::KeySent(client.send_ssh_public_key(instance_id, &request).await?)
        }
        Verb::MintServiceAccountToken {
            namespace,
            service_account,
            audience,
            lifetime,
            issuer,
            token_file,
        } => {
            let request = MintServiceAccountToken {
                namespace: namespace.clone(),
                service_account: service_account.clone(),
                audience: audience.clone(),
                expiration_seconds: *lifetime,
                issuer: issuer.clone(),
            };
            let minted = client.mint_service_account_token(&request).await?;
            match token_file {
                Some(path) => {
                    crate::pod_identity::write_token(path, &minted.token)?;
                    Outcome::TokenWritten {
                        path: path.clone(),
                        expiration_timestamp: minted.expiration_timestamp,
                    }
                }
                None => Outcome::Token(minted),
            }
        }
        Verb::CreatePodIdentityAssociation {
            namespace,
            service_account,
            role,
        } => {
            let request = CreatePodIdentityAssociation {
                namespace: namespace.clone(),
                service_account: service_account.clone(),
                role: role.clone(),
            };
            Outcome::Association(client.create_pod_identity_association(&request).await?)
        }
        Verb::ListPodIdentityAssociations { association_ids } => {
            let list = if association_ids.is_empty() {
                client.list_pod_identity_associations().await?
            } else {
                let mut associations = Vec::with_capacity(association_ids.len());
                for association_id in association_ids {
                    associations.push(
                        client
                            .describe_pod_identity_association(association_id)
                            .await?,
                    );
                }
                PodIdentityAssociationList { associations }
            };
            Outcome::Associations(list)
        }
        Verb::UpdatePodIdentityAssociation {
            association_id,
            role,
        } => {
            let request = UpdatePodIdentityAssociation { role: role.clone() };
            Outcome::Association(
                client
                    .update_pod_identity_association(association_id, &request)
                    .await?,
            )
        }
        Verb::DeletePodIdentityAssociation { association_id } => {
            client
                .delete_pod_identity_association(association_id)
                .await?;
            Outcome::AssociationDeleted {
                association_id: association_id.clone(),
            }
        }
        Verb::ClearFaults {
            instance_id,
            fault_id: Some(fault_id),
        } => Outcome::Fault(Box::new(client.remove_fault(instance_id, fault_id).await?)),
        Verb::ClearFaults {
            instance_id,
            fault_id: None,
        } => Outcome::FaultsCleared(client.clear_faults(instance_id).await?),
        Verb::RunScenario { file } => {
            let scenario = crate::scenario_file::read(file)?;
            Outcome::Scenario(Box::new(client.start_scenario(&scenario).await?))
        }
        Verb::DescribeScenario {
            scenario_id: Some(scenario_id),
        } => Outcome::Scenario(Box::new(client.describe_scenario(scenario_id).await?)),
        Verb::DescribeScenario { scenario_id: None } => {
            Outcome::Scenarios(client.describe_scenarios().await?)
        }
        Verb::StopScenario { scenario_id } => {
            Outcome::Scenario(Box::new(client.stop_scenario(scenario_id).await?))
        }
        Verb::DescribeInstanceMetadataOptions { instance_id } => {
            Outcome::Options(client.describe_metadata_options(instance_id).await?)
        }
        Verb::ModifyInstanceMetadataOptions {
            instance_id,
            http_tokens,
            http_put_response_hop_limit,
            http_endpoint,
            http_protocol_ipv6,
            instance_metadata_tags,
        } => {
            let request = ModifyInstanceMetadataOptions {
                http_tokens: *http_tokens,
                http_put_response_hop_limit: *http_put_response_hop_limit,
                http_endpoint: *http_endpoint,
                http_protocol_ipv6: *http_protocol_ipv6,
                instance_metadata_tags: *instance_metadata_tags,
            };
            if request.is_empty() {
                bail!(UsageError(format_err!(
                    "give at least one option to change, e.g. --http-tokens required"
                )));
            }
            Outcome::Options(
                client
                    .modify_metadata_options(instance_id, &request)
                    .await?,
            )
        }
        Verb::SendSpotInterruption {
            instance_id,
            action,
            time,
            when,
        } => {
            let event = PostEvent {
                action: Some(*action),
                time: time.clone(),
                ..when.event(EventType::SpotInterruption)
            };
            Outcome::Posted(client.post_event(instance_id, &event).await?)
        }
        Verb::SendRebalanceRecommendation { instance_id, when } => {
            let event = when.event(EventType::RebalanceRecommendation);
            Outcome::Posted(client.post_event(instance_id, &event).await?)
        }
        Verb::ScheduleMaintenance {
            instance_id,
            code,
            description,
            not_before,
            not_after,
            when,
        } => {
            let event = PostEvent {
                code: Some(*code),
                description: description.clone(),
                not_before: not_before.clone(),
                not_after: not_after.clone(),
                ..when.event(EventType::ScheduledMaintenance)
            };
            Outcome::Posted(client.post_event(instance_id, &event).await?)
        }
        Verb::SetTargetLifecycleState {
            instance_id,
            state,
            when,
        } => {
            let event = PostEvent {
                state: Some(state.clone()),
                ..when.event(EventType::TargetLifecycleState)
            };
            Outcome::Posted(client.post_event(instance_id, &event).await?)
        }
        Verb::DescribeInstanceEvents { instance_id } => {
            Outcome::Events(client.describe_events(instance_id).await?)
        }
        Verb::CancelEvent {
            instance_id,
            event_id,
        } => Outcome::Ended(client.cancel_event(instance_id, event_id).await?),
        Verb::CompleteEvent {
            instance_id,
            event_id,
        } => Outcome::Ended(client.complete_event(instance_id, event_id).await?),
        Verb::DescribeRoles { role_names } => {
            let list = if role_names.is_empty() {
                client.describe_roles().await?
            } else {
                let mut roles = Vec::new();
                for role_name in role_names {
                    roles.push(client.describe_role(role_name).await?);
                }
                RoleList { roles }
            };
            Outcome::Roles(list)
        }
        Verb::PutRole { role_name, spec } => {
            Outcome::Role(Box::new(client.put_role(role_name, &spec.spec()?).await?))
        }
        Verb::DeleteRole { role_name } => {
            client.delete_role(role_name).await?;
            Outcome::RoleDeleted {
                role_name: role_name.clone(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, text: &str) -> anyhow::Result<TaskSpec> {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(name);
        std::fs::write(&path, text).unwrap();
        task_description(&path)
    }

    #[test]
    fn a_task_file_is_toml_keys_one_tasks_table_or_json() {
        let top = read(
            "task.toml",
            "family = \"a\"\n[[containers]]\nname = \"web\"\n",
        )
        .unwrap();
        assert_eq!(top.family.as_deref(), Some("a"));
        assert_eq!(top.containers.unwrap()[0].name.as_deref(), Some("web"));
        let table = read(
            "task.toml",
            "[[tasks]]\nfamily = \"b\"\n[[tasks.containers]]\nname = \"web\"\n",
        )
        .unwrap();
        assert_eq!(table.family.as_deref(), Some("b"));
        let json = read(
            "task.json",
            r#"{"family": "c", "containers": [{"name": "web"}]}"#,
        )
        .unwrap();
        assert_eq!(json.family.as_deref(), Some("c"));

        for (name, text, said) in [
            (
                "two.toml",
                "[[tasks]]\nfamily = \"a\"\n[[tasks]]\nfamily = \"b\"\n",
                "one task",
            ),
            ("typo.toml", "famly = \"a\"\n", "famly"),
            ("typo.json", r#"{"famly": "a"}"#, "famly"),
        ] {
            let error = read(name, text).unwrap_err();
            assert!(error.downcast_ref::<UsageError>().is_some(), "{name}");
            assert!(format!("{error:#}").contains(said), "{name}: {error:#}");
        }
    }
}
