//! The configuration file: what the server serves.
//!
//! Loading is in two stages. `ConfigFile` holds exactly what was written (every key optional,
//! unknown keys refused); `ConfigFile::resolve` turns it into typed objects and checks every
//! value (`imds_core::spec` does the instance part). Loading has no side effects.
//!
//! - `[instance]` describes the default instance: it answers every caller when no instance is
//!   registered, and callers no registered instance claims when it is given explicitly.
//! - `[[instances]]` are registered instances (host mode), each with its `instance-id` and
//!   `addresses`. At every start they are written to the store, replacing the stored version:
//!   the file is authoritative for the instances it names, and changes made to them through the
//!   control API last until the next start.
//! - `[credentials]` sets the default credential provider (`generated`); `[[roles]]` gives a
//!   role its own provider: `generated`, `static` (fixed keys) or `sts` (`AssumeRole` on the
//!   role's ARN with the host's AWS credentials).
//! - `[lockdown]` says which users of this host may reach the endpoint and which may read
//!   credentials; `[throttle]` sets per-instance rate limits; `[audit]` where the audit log goes.
//! - `[server]` gives the addresses the guest listeners bind (`listen`), unless `--listen`
//!   flags give them; a reload binds the addresses added and closes those removed.
//! - `[control]` secures the control API: TLS certificate and key, a client CA (mTLS), a
//!   directory of named tokens, and whether its network is trusted (fleet mode without TLS).
//! - `[[faults]]` are faults injected into an instance's metadata service at every start, as
//!   `imds ctl inject-fault` injects them (they are not stored).
//! - `[[tasks]]` (with `[[tasks.containers]]`) are ECS tasks, served on the container listener
//!   by the task metadata endpoint (`/v4/{id}`) and the ECS credentials endpoint.

use std::{
    collections::{HashMap, HashSet},
    num::NonZeroU32,
    path::Path,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, format_err, Context};
use base64::{engine::general_purpose::STANDARD, Engine};
use imds_core::{
    instance::Instance,
    spec::{Generated, InstanceSpec},
};
use imds_credentials::{
    by_role::ByRole,
    generated::GeneratedProvider,
    spec::{check_role_name, ProviderSettings, RoleSpec, LIFETIME_SECONDS},
    sts, CredentialProvider,
};
use imds_server::{
    admin_api::model::{Delay, FaultKind, GuestMethod, InjectFault},
    audit::Destination,
    container_api::{pod_identity::Association, ContainerRoute, PerRequestRoles},
    lockdown::Policy,
    throttle::{Rate, Throttle},
};
use serde::Deserialize;

pub use crate::config::containers::{
    ContainerEndpointFile, PodIdentityAssociationFile, PodIdentityChecks, PodIdentityFile,
};

/// The commented example printed by `imds config default`.
pub const EXAMPLE_CONFIG: &str = include_str!("../imds.example.toml");

/// A configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// The default instance.
    pub instance: Option<InstanceSpec>,
    /// Registered instances, told apart by their source addresses.
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    /// How role credentials are made.
    #[serde(default)]
    pub credentials: CredentialsFile,
    /// Roles with their own credential provider.
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    /// Paths of the container credentials endpoint, each tied to one role.
    #[serde(default)]
    pub container_credentials: Vec<ContainerRouteFile>,
    /// The container endpoint's routes that name their role.
    #[serde(default)]
    pub container_endpoint: ContainerEndpointFile,
    /// The EKS Pod Identity endpoint's checks.
    #[serde(default)]
    pub pod_identity: PodIdentityFile,
    /// Which service account gets which role from the EKS Pod Identity endpoint.
    #[serde(default)]
    pub pod_identity_associations: Vec<PodIdentityAssociationFile>,
    /// ECS tasks, served by the task metadata endpoint on the container listener.
    #[serde(default)]
    pub tasks: Vec<imds_core::task::spec::TaskSpec>,
    /// Which users of this host may read what.
    pub lockdown: Option<LockdownFile>,
    /// Per-instance request rate limits.
    #[serde(default)]
    pub throttle: ThrottleFile,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditFile,
    /// Faults injected at start.
    #[serde(default)]
    pub faults: Vec<FaultFile>,
    /// The control listener's TLS and tokens.
    #[serde(default)]
    pub control: ControlFile,
    /// The guest listeners.
    #[serde(default)]
    pub server: ServerFile,
}

/// Where the guest listeners are without `--listen` or `[server] listen`.
pub const DEFAULT_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1338);

/// `[server]`: where the guest listeners are.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerFile {
    /// Addresses the metadata service listens on (`--listen`, which wins when given).
    pub listen: Option<Vec<std::net::SocketAddr>>,
}

impl ServerFile {
    /// The addresses, checked: at least one, none twice.
    fn resolve(&self) -> anyhow::Result<Option<Vec<std::net::SocketAddr>>> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        if listen.is_empty() {
            bail!("server.listen: give at least one address, or leave the key out");
        }
        for (index, address) in listen.iter().enumerate() {
            if listen[..index].contains(address) {
                bail!("server.listen: {address} is given twice");
            }
        }
        Ok(Some(listen.clone()))
    }
}

/// `[control]`: how the control API is secured; each key has a `serve` flag that overrides it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ControlFile {
    /// The certificate chain (PEM) the control listener serves TLS with (`--admin-tls-cert`).
    pub tls_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM) (`--admin-tls-key`).
    pub tls_key: Option<std::path::PathBuf>,
    /// Clients must present a certificate from one of these CAs (PEM) (`--admin-client-ca`).
    pub client_ca: Option<std::path::PathBuf>,
    /// A directory of named tokens, `NAME.admin` or `NAME.read-only` (`--admin-tokens-dir`).
    pub tokens_dir: Option<std::path::PathBuf>,
    /// The control listener may be on a non-loopback address without TLS in fleet mode: the
    /// network is trusted (`--admin-trusted-network`).
    #[serde(default)]
    pub trusted_network: bool,
}

/// `[[faults]]`: a fault injected at start: `instance-id`, and the fields of the control API's
/// `InjectFault` written in kebab-case (`kind`, `path`, `count`, `latency-ms`, ...), each
/// meaning what it means there.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FaultFile {
    /// The instance (default: the default instance).
    pub instance_id: Option<String>,
    pub fault_id: Option<String>,
    pub kind: FaultKind,
    pub path: Option<String>,
    pub method: Option<GuestMethod>,
    pub duration: Option<Delay>,
    pub count: Option<u64>,
    pub latency_ms: Option<u64>,
    pub latency_max_ms: Option<u64>,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub expires_in: Option<i64>,
    pub role_name: Option<String>,
    pub requests_per_second: Option<u32>,
}

impl FaultFile {
    /// The control API's request for it.
    fn request(self) -> InjectFault {
        InjectFault {
            fault_id: self.fault_id,
            path: self.path,
            method: self.method,
            duration: self.duration,
            count: self.count,
            latency_ms: self.latency_ms,
            latency_max_ms: self.latency_max_ms,
            status: self.status,
            code: self.code,
            message: self.message,
            expires_in: self.expires_in,
            role_name: self.role_name,
            requests_per_second: self.requests_per_second,
            ..InjectFault::new(self.kind)
        }
    }
}

/// A `[[faults]]` entry, checked.
#[derive(Debug, Clone)]
pub struct ConfiguredFault {
    /// The instance it applies to.
    pub instance_id: String,
    /// The fault.
    pub fault: InjectFault,
}

/// A user in the lockdown policy: a name (looked up when the config is read) or a uid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum UserFile {
    /// A uid.
    Uid(u32),
    /// A user name.
    Name(String),
}

/// `[lockdown]`: the users of this host who may reach the endpoint, and who may read credentials.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockdownFile {
    /// Users who may reach the endpoint at all; left out: every user.
    pub users: Option<Vec<UserFile>>,
    /// Users who may read credentials (`iam/security-credentials/`, `identity-credentials/`, the
    /// container endpoint); left out: every user in `users`.
    pub credential_users: Option<Vec<UserFile>>,
}

/// `[throttle]`: per-instance rate limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ThrottleFile {
    /// Requests per second each instance may make; 0: no limit.
    pub requests_per_second: Option<u32>,
    /// Requests an instance may make at once after a quiet spell (default: a second's worth).
    pub burst: Option<u32>,
    /// Requests per second by instance id, overriding `requests-per-second` (0: no limit).
    #[serde(default)]
    pub instances: std::collections::BTreeMap<String, u32>,
}

/// `[audit]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuditFile {
    /// The file audit records are appended to, `-` for standard output; left out: no audit log.
    pub file: Option<String>,
}

/// Requests per second each instance may make when the config does not say: generous for any
/// real client (SDKs ask a few times an hour), low enough that one runaway instance cannot take
/// the server from the others. EKS Pod Identity Agent allows 1,000 per second with a burst of
/// 500; the limit per ENI of link-local traffic on EC2 is 1,024 packets per second.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 5_000;

/// `[[container-credentials]]`: one credential URI of the container endpoint.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainerRouteFile {
    /// The path clients request (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or the path of
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`).
    pub path: Option<String>,
    /// The role it serves.
    pub role: Option<String>,
    /// The `Authorization` value clients must send (`AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    pub authorization_token: Option<String>,
}

impl std::fmt::Debug for ContainerRouteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerRouteFile")
            .field("path", &self.path)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `[credentials]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CredentialsFile {
    /// `generated` (the only provider so far).
    pub provider: Option<String>,
    /// How long each set of credentials lasts.
    pub lifetime_seconds: Option<u64>,
}

/// The resolved configuration.
#[derive(Debug)]
pub struct Config {
    /// The default instance.
    pub default_instance: Instance,
    /// True when the file gave `[instance]`: then the default instance also answers callers no
    /// registered instance claims.
    pub explicit_default: bool,
    /// Registered instances from the file, checked.
    pub instances: Vec<InstanceSpec>,
    /// Makes role credentials: each `[[roles]]` entry's provider, the default for other roles.
    pub credential_provider: Arc<ByRole>,
    /// The `[[roles]]` entries, checked (a `credentials-file` already read into its keys).
    pub roles: Vec<RoleSpec>,
    /// The lifetime of `generated` and `static` sets whose role gives none.
    pub credential_lifetime: Duration,
    /// The container credentials endpoint's routes.
    pub container_routes: Vec<ContainerRoute>,
    /// The container endpoint's routes that name their role.
    pub per_request_roles: PerRequestRoles,
    /// The EKS Pod Identity endpoint's checks.
    pub pod_identity: PodIdentityChecks,
    /// Which service account gets which role from the EKS Pod Identity endpoint.
    pub pod_identity_associations: Vec<Association>,
    /// The `[[tasks]]` entries, checked.
    pub tasks: Vec<imds_core::task::spec::TaskSpec>,
    /// The lockdown policy, `None` without `[lockdown]`.
    pub lockdown: Option<Policy>,
    /// Per-instance rate limits.
    pub throttle: Throttle,
    /// Where the audit log goes, `None`: no audit log.
    pub audit: Option<Destination>,
    /// The `[[faults]]` entries, checked, in the order given.
    pub faults: Vec<ConfiguredFault>,
    /// `[server] listen`, checked; `None` when the file gives none.
    pub listen: Option<Vec<std::net::SocketAddr>>,
}

/// Reads and parses a config file; errors name the file and the offending key. A
/// `user-data-file` is read here, relative to the config file.
pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut file =
        parse(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    let directory = path.parent().unwrap_or(Path::new("."));
    let specs = file.instance.iter_mut().chain(file.instances.iter_mut());
    for spec in specs {
        if let Some(name) = spec.user_data_file.take() {
            if spec.user_data.is_some() || spec.user_data_base64.is_some() {
                bail!(
                    "instance: set at most one of user-data, user-data-base64 and user-data-file"
                );
            }
            let user_data_path = directory.join(&name);
            let bytes = std::fs::read(&user_data_path).with_context(|| {
                format!(
                    "instance.user-data-file: cannot read {}",
                    user_data_path.display()
                )
            })?;
            spec.user_data_base64 = Some(STANDARD.encode(bytes));
        }
    }
    file.pod_identity.relative_to(directory);
    for (index, role) in file.roles.iter_mut().enumerate() {
        if let Some(name) = role.credentials_file.take() {
            read_credentials_file(role, &directory.join(&name))
                .map_err(|error| format_err!("roles[{index}].credentials-file: {error:#}"))?;
        }
    }
    Ok(file)
}

/// Fills a `static` role's keys from a credentials file (read as `imds_server::wire`'s
/// `fill_static_keys` reads one, for the console's upload too).
pub fn read_credentials_file(role: &mut RoleSpec, path: &Path) -> anyhow::Result<()> {
    // The provider first: a file given to another provider is refused as such, unread.
    if role.provider.as_deref() != Some("static") {
        return Err(imds_server::wire::CredentialsFileError::NotStatic.into());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    imds_server::wire::fill_static_keys(role, &text)
        .map_err(|error| format_err!("{}: {error}", path.display()))
}

/// Parses config text, naming the key of any error.
pub fn parse(text: &str) -> anyhow::Result<ConfigFile> {
    // A syntax error is told by its line and column and toml's message, never with the line's
    // text (toml's own Display quotes it): the line may hold a role's secret key, and a reload's
    // error goes to the log.
    let deserializer = toml::Deserializer::parse(text).map_err(|error| {
        let start = error.span().map_or(0, |span| span.start).min(text.len());
        let before = &text.as_bytes()[..start];
        let line = before.iter().filter(|byte| **byte == b'\n').count() + 1;
        let column = start
            - before
                .iter()
                .rposition(|byte| *byte == b'\n')
                .map_or(0, |at| at + 1)
            + 1;
        format_err!(
            "line {line}, column {column}: {}",
            error.message().trim_end()
        )
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        format_err!("{path}: {}", inner.message())
    })
}

impl ConfigFile {
    /// Checks every value; the default instance takes what it leaves out from `generated`.
    pub fn resolve(self, generated: &Generated) -> anyhow::Result<Config> {
        self.resolve_with(generated, sts::Timeouts::default())
    }

    /// As `resolve`, the roles' `sts` providers waiting for STS as long as `sts_timeouts` say.
    pub fn resolve_with(
        self,
        generated: &Generated,
        sts_timeouts: sts::Timeouts,
    ) -> anyhow::Result<Config> {
        let explicit_default = self.instance.is_some();
        let default_spec = self.instance.unwrap_or_default();
        if default_spec.addresses.is_some() {
            bail!(
                "instance.addresses: the default instance answers callers no other instance claims; \
                 give addresses in [[instances]]"
            );
        }
        let default_instance = default_spec
            .resolve(generated)
            .map_err(|error| format_err!("{error}"))?;
        let mut seen_ids = std::collections::HashSet::new();
        for (index, spec) in self.instances.iter().enumerate() {
            let rename =
                |message: String| message.replacen("instance.", &format!("instances[{index}]."), 1);
            let Some(instance_id) = &spec.instance_id else {
                bail!("instances[{index}].instance-id: required for registered instances");
            };
            if !seen_ids.insert(instance_id.clone()) || *instance_id == default_instance.instance_id
            {
                bail!("instances[{index}].instance-id: {instance_id} is given twice");
            }
            if spec.addresses.as_ref().is_none_or(Vec::is_empty) {
                bail!("instances[{index}].addresses: a registered instance needs at least one source address");
            }
            spec.clone()
                .resolve(&Generated::random())
                .map_err(|error| format_err!("{}", rename(error.0)))?;
        }

        let credentials = self.credentials;
        match credentials.provider.as_deref() {
            None | Some("generated") => {}
            Some(other) => {
                bail!("credentials.provider: {other:?} is not a provider; expected \"generated\"")
            }
        }
        let lifetime_seconds = credentials.lifetime_seconds.unwrap_or(6 * 3600);
        if !LIFETIME_SECONDS.contains(&lifetime_seconds) {
            bail!("credentials.lifetime-seconds: {lifetime_seconds} must be from 6 to 43200 (12 hours)");
        }
        let credential_lifetime = Duration::from_secs(lifetime_seconds);
        let mut role_providers = HashMap::new();
        for (index, role) in self.roles.iter().enumerate() {
            let Some(name) = role.name.clone() else {
                bail!("roles[{index}].name: required");
            };
            check_role_name(&name).map_err(|error| format_err!("roles[{index}].{error}"))?;
            let provider = role
                .clone()
                .provider(&ProviderSettings {
                    default_lifetime: credential_lifetime,
                    sts_timeouts,
                })
                .map_err(|error| format_err!("roles[{index}].{error}"))?;
            if role_providers.insert(name.clone(), provider).is_some() {
                bail!("roles[{index}].name: role {name:?} is given twice");
            }
        }
        let mut container_routes: Vec<ContainerRoute> = Vec::new();
        for (index, route) in self.container_credentials.into_iter().enumerate() {
            let Some(path) = route.path.filter(|path| path.starts_with('/')) else {
                bail!("container-credentials[{index}].path: required, starting with /");
            };
            if container_routes.iter().any(|other| other.path == path) {
                bail!("container-credentials[{index}].path: {path:?} is given twice");
            }
            let Some(role_name) = route.role.filter(|role| !role.is_empty()) else {
                bail!("container-credentials[{index}].role: required");
            };
            if let Some(token) = &route.authorization_token {
                containers::check_token_line(
                    token,
                    &format!("container-credentials[{index}].authorization-token"),
                )?;
            }
            container_routes.push(ContainerRoute {
                path,
                role_name,
                authorization_token: route.authorization_token,
            });
        }
        let per_request_roles = self.container_endpoint.resolve()?;
        let pod_identity = self.pod_identity.resolve()?;
        let pod_identity_associations =
            containers::resolve_associations(self.pod_identity_associations)?;
        // A task runs in the host's region and account unless it says otherwise, and an EC2
        // task in the zone of the instance it runs on, as on ECS.
        let mut tasks = self.tasks;
        for task in &mut tasks {
            if task.region.is_none() {
                task.region = Some(default_instance.placement.region.clone());
                if task.availability_zone.is_none()
                    && task.launch_type.as_deref().unwrap_or("EC2") == "EC2"
                {
                    task.availability_zone =
                        Some(default_instance.placement.availability_zone.clone());
                }
            }
            if task.account_id.is_none() {
                task.account_id = Some(default_instance.account_id.clone());
            }
        }
        for (index, task) in tasks.iter().enumerate() {
            imds_server::container_api::tasks::check_spec(index, task)
                .map_err(|message| format_err!("{message}"))?;
        }
        let default_provider: Arc<dyn CredentialProvider> =
            Arc::new(GeneratedProvider::new(credential_lifetime));
        let lockdown = self.lockdown.map(resolve_lockdown).transpose()?;
        let throttle = resolve_throttle(&self.throttle)?;
        let audit = match self.audit.file.as_deref() {
            None => None,
            Some("") => bail!("audit.file: give a path, or \"-\" for standard output"),
            Some("-") => Some(Destination::Stdout),
            Some(path) => Some(Destination::File(path.into())),
        };
        let faults = resolve_faults(self.faults, &default_instance.instance_id, &seen_ids)?;
        let listen = self.server.resolve()?;
        Ok(Config {
            default_instance,
            explicit_default,
            instances: self.instances,
            credential_provider: Arc::new(ByRole::new(default_provider, role_providers)),
            roles: self.roles,
            credential_lifetime,
            container_routes,
            per_request_roles,
            pod_identity,
            pod_identity_associations,
            tasks,
            lockdown,
            throttle,
            audit,
            faults,
            listen,
        })
    }
}

/// `error` of the control API's fault check, its leading field names (`LatencyMs, LatencyMaxMs:`)
/// written as config keys (`latency-ms, latency-max-ms:`).
fn kebab_field(error: &str) -> String {
    let Some((fields, rest)) = error.split_once(':') else {
        return error.to_owned();
    };
    let mut written = String::new();
    for (index, ch) in fields.char_indices() {
        if ch.is_ascii_uppercase() {
            if index > 0 && fields[..index].ends_with(|c: char| c.is_ascii_alphanumeric()) {
                written.push('-');
            }
            written.push(ch.to_ascii_lowercase());
        } else {
            written.push(ch);
        }
    }
    format!("{written}:{rest}")
}

/// Checks the `[[faults]]` entries: each names an instance of the file (or none: the default
/// instance) and is a fault the control API would accept; the ids given are unique per
/// instance. Errors name the entry and the key.
#[allow(
    clippy::disallowed_methods,
    reason = "a fault is checked as the control API would check it at the time the file is read"
)]
fn resolve_faults(
    files: Vec<FaultFile>,
    default_id: &str,
    instance_ids: &HashSet<String>,
) -> anyhow::Result<Vec<ConfiguredFault>> {
    let now = time::OffsetDateTime::now_utc();
    let mut ids = HashSet::new();
    let mut faults = Vec::with_capacity(files.len());
    for (index, file) in files.into_iter().enumerate() {
        let instance_id = file
            .instance_id
            .clone()
            .unwrap_or_else(|| default_id.to_owned());
        if instance_id != default_id && !instance_ids.contains(&instance_id) {
            bail!(
                "faults[{index}].instance-id: {instance_id} is neither [instance] nor one of [[instances]]"
            );
        }
        let fault = file.request();
        imds_server::faults::Fault::new(fault.clone(), format!("fault-{}", index + 1), now)
            .map_err(|error| format_err!("faults[{index}].{}", kebab_field(&error)))?;
        if let Some(fault_id) = &fault.fault_id {
            if !ids.insert((instance_id.clone(), fault_id.clone())) {
                bail!("faults[{index}].fault-id: {fault_id} is given twice for {instance_id}");
            }
        }
        faults.push(ConfiguredFault { instance_id, fault });
    }
    Ok(faults)
}

/// The uids of `[lockdown]`; user names are looked up now (errors name the key and the user).
fn resolve_lockdown(file: LockdownFile) -> anyhow::Result<Policy> {
    if file.users.is_none() && file.credential_users.is_none() {
        bail!("lockdown: give users, credential-users or both");
    }
    let uids = |key: &str, users: Option<Vec<UserFile>>| -> anyhow::Result<Option<HashSet<u32>>> {
        let Some(users) = users else {
            return Ok(None);
        };
        let mut uids = HashSet::new();
        for (index, user) in users.into_iter().enumerate() {
            let uid = match user {
                UserFile::Uid(uid) => uid,
                UserFile::Name(name) => match nix::unistd::User::from_name(&name) {
                    Ok(Some(user)) => user.uid.as_raw(),
                    Ok(None) => {
                        bail!("lockdown.{key}[{index}]: no user named {name:?} on this host")
                    }
                    Err(error) => {
                        bail!("lockdown.{key}[{index}]: cannot look up user {name:?}: {error}")
                    }
                },
            };
            uids.insert(uid);
        }
        Ok(Some(uids))
    };
    Ok(Policy {
        users: uids("users", file.users)?,
        credential_users: uids("credential-users", file.credential_users)?,
    })
}

/// The rate limits of `[throttle]`.
fn resolve_throttle(file: &ThrottleFile) -> anyhow::Result<Throttle> {
    let burst = match file.burst {
        Some(0) => bail!("throttle.burst: must be at least 1"),
        Some(burst) => NonZeroU32::new(burst),
        None => None,
    };
    let rate = |per_second: u32| {
        NonZeroU32::new(per_second).map(|per_second| Rate {
            per_second,
            burst: burst.unwrap_or(per_second),
        })
    };
    Ok(Throttle {
        default: rate(
            file.requests_per_second
                .unwrap_or(DEFAULT_REQUESTS_PER_SECOND),
        ),
        instances: file
            .instances
            .iter()
            .map(|(instance_id, per_second)| (instance_id.clone(), rate(*per_second)))
            .collect(),
        generation: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_error(text: &str, expect: &str) {
        let result = parse(text).and_then(|file| file.resolve(&Generated::random()));
        let error = format!("{:#}", result.expect_err("config should be refused"));
        assert!(
            error.contains(expect),
            "error {error:?} does not mention {expect:?}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line_and_never_quotes_it() {
        let error = parse("[[roles]]\nname = \"app\"\nsecret-access-key = \"wJalrXUtnFEMI\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("line 3, column "), "{error}");
        assert!(!error.contains("wJalrXUtnFEMI"), "{error}");
    }

    #[test]
    fn faults_are_checked_and_name_their_instance() {
        let config = parse(
            "[instance]\ninstance-id = \"i-0123456789abcdef0\"\n\
             [[faults]]\nkind = \"status\"\nstatus = 503\npath = \"meta-data/*\"\ncount = 2\n\
             [[faults]]\nkind = \"latency\"\nlatency-ms = 50\nduration = \"2m\"\n",
        )
        .unwrap()
        .resolve(&Generated::random())
        .unwrap();
        assert_eq!(config.faults.len(), 2);
        assert_eq!(config.faults[0].instance_id, "i-0123456789abcdef0");
        assert_eq!(config.faults[0].fault.status, Some(503));
        assert_eq!(
            config.faults[1].fault.duration,
            Some(Delay::Text("2m".to_owned()))
        );
        check_error(
            "[[faults]]\nkind = \"latency\"\n",
            "faults[0].latency-ms: give the delay",
        );
        check_error(
            "[[faults]]\nkind = \"status\"\nstatus = 200\n",
            "faults[0].status: 200 is not one of",
        );
        check_error("[[faults]]\nkind = \"explode\"\n", "explode");
        check_error(
            "[[faults]]\nkind = \"close\"\ninstance-id = \"i-0000000000000000f\"\n",
            "faults[0].instance-id: i-0000000000000000f is neither",
        );
        check_error(
            "[[faults]]\nkind = \"close\"\nfault-id = \"a\"\n[[faults]]\nkind = \"reset\"\nfault-id = \"a\"\n",
            "faults[1].fault-id: a is given twice",
        );
    }

    #[test]
    fn tasks_take_the_hosts_region_account_and_zone_unless_they_name_their_own() {
        let config = parse(
            "[instance]\naccount-id = \"210987654321\"\n\
             [instance.placement]\nregion = \"ap-southeast-2\"\navailability-zone = \"ap-southeast-2c\"\n\
             [[tasks]]\nfamily = \"on-the-host\"\n[[tasks.containers]]\nname = \"a\"\n\
             [[tasks]]\nfamily = \"fargate\"\nlaunch-type = \"FARGATE\"\n[[tasks.containers]]\nname = \"b\"\n\
             [[tasks]]\nfamily = \"elsewhere\"\nregion = \"eu-west-1\"\naccount-id = \"123456789012\"\n\
             [[tasks.containers]]\nname = \"c\"\n",
        )
        .unwrap()
        .resolve(&Generated::random())
        .unwrap();
        let [host, fargate, elsewhere] = &config.tasks[..] else {
            panic!("three tasks: {:?}", config.tasks.len());
        };
        assert_eq!(host.region.as_deref(), Some("ap-southeast-2"));
        assert_eq!(host.account_id.as_deref(), Some("210987654321"));
        assert_eq!(host.availability_zone.as_deref(), Some("ap-southeast-2c"));
        // A Fargate task is in the host's region and account, in a zone of its own.
        assert_eq!(fargate.region.as_deref(), Some("ap-southeast-2"));
        assert_eq!(fargate.account_id.as_deref(), Some("210987654321"));
        assert_eq!(fargate.availability_zone, None);
        assert_eq!(elsewhere.region.as_deref(), Some("eu-west-1"));
        assert_eq!(elsewhere.account_id.as_deref(), Some("123456789012"));
        assert_eq!(elsewhere.availability_zone, None);
    }

    #[test]
    fn example_config_parses_and_resolves() {
        let config = parse(EXAMPLE_CONFIG)
            .unwrap()
            .resolve(&Generated::random())
            .unwrap();
        let instance = config.default_instance;
        assert_eq!(instance.instance_id, "i-0123456789abcdef0");
        assert_eq!(instance.placement.region, "eu-west-1");
        assert_eq!(instance.placement.availability_zone, "eu-west-1b");
        assert!(instance.iam.is_some());
        assert!(instance.user_data.is_some());
        assert!(config.explicit_default);
    }

    #[test]
    fn errors_name_the_field() {
        check_error(
            "[instance]\nbogus = 1\n",
            "instance.bogus: unknown field `bogus`",
        );
        check_error(
            "[instance.metadata-options]\nhttp-tokens = \"always\"\n",
            "instance.metadata-options.http-tokens",
        );
        check_error(
            "[instance.metadata-options]\nhttp-put-response-hop-limit = \"1\"\n",
            "instance.metadata-options.http-put-response-hop-limit",
        );
        check_error(
            "[credentials]\nlifetime-seconds = 1\n",
            "credentials.lifetime-seconds",
        );
        check_error("[instance\n", "line 1");
        check_error("[[roles]]\nprovider = \"sts\"\n", "roles[0].name: required");
        check_error(
            "[[roles]]\nname = \"app\"\nprovider = \"sts\"\n",
            "roles[0].role-arn: required",
        );
        check_error(
            "[[roles]]\nname = \"app\"\nprovider = \"sts\"\nrole-arn = \"app\"\n",
            "roles[0].role-arn: \"app\" is not an ARN",
        );
        check_error(
            "[[roles]]\nname = \"a\"\n[[roles]]\nname = \"app\"\nprovider = \"static\"\naccess-key-id = \"AKIA\"\n",
            "roles[1].secret-access-key: required",
        );
        check_error(
            "[[roles]]\nname = \"app\"\nprovider = \"static\"\naccess-key-id = \"A\"\nsecret-access-key = \"s\"\nrole-arn = \"arn:aws:iam::1:role/x\"\n",
            "roles[0].role-arn: not a setting of the \"static\" provider",
        );
        check_error(
            "[[roles]]\nname = \"app\"\nprovider = \"vault\"\n",
            "roles[0].provider: \"vault\" is not a provider",
        );
        check_error(
            "[[roles]]\nname = \"app\"\n[[roles]]\nname = \"app\"\n",
            "roles[1].name: role \"app\" is given twice",
        );
        check_error("[[roles]]\nname = \"app\"\nbogus = 1\n", "roles[0].bogus");
        check_error(
            "[[container-credentials]]\npath = \"v2/x\"\nrole = \"app\"\n",
            "container-credentials[0].path",
        );
        check_error(
            "[[container-credentials]]\npath = \"/v2/x\"\n",
            "container-credentials[0].role: required",
        );
        check_error(
            "[[container-credentials]]\npath = \"/v2/x\"\nrole = \"a\"\nauthorization-token = \"a\\n\"\n",
            "container-credentials[0].authorization-token",
        );
        check_error(
            "[instance]\naddresses = [\"127.0.0.2\"]\n",
            "instance.addresses",
        );
        check_error(
            "[[instances]]\naddresses = [\"127.0.0.2\"]\n",
            "instances[0].instance-id",
        );
        check_error(
            "[[instances]]\ninstance-id = \"i-0123456789abcdef0\"\n",
            "instances[0].addresses",
        );
        check_error(
            "[[instances]]\ninstance-id = \"i-0123456789abcdef0\"\naddresses = [\"127.0.0.2\"]\ninstance-type = 3\n",
            "instances[0].instance-type",
        );
        check_error(
            "[[instances]]\ninstance-id = \"i-0123456789abcdef0\"\naddresses = [\"127.0.0.2\"]\n[instances.placement]\nregion = \"Bad\"\n",
            "instances[0].placement.region",
        );
    }

    #[tokio::test]
    #[allow(
        clippy::disallowed_methods,
        reason = "loading the config checks descriptions and roles at the moment it is loaded"
    )]
    async fn roles_get_their_providers_and_secrets_stay_out_of_debug() {
        let config = parse(
            "[[roles]]\nname = \"fixed\"\nprovider = \"static\"\naccess-key-id = \"AKIAIOSFODNN7EXAMPLE\"\n\
             secret-access-key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\nsession-token = \"tok\"\n\
             [[roles]]\nname = \"assumed\"\nprovider = \"sts\"\nrole-arn = \"arn:aws:iam::123456789012:role/assumed\"\n\
             endpoint-url = \"http://127.0.0.1:9\"\nduration-seconds = 900\n[roles.session-tags]\nteam = \"a\"\n",
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("wJalr"));
        let config = config.resolve(&Generated::random()).unwrap();
        assert!(!format!("{config:?}").contains("wJalr"));
        let request = |role_name| imds_credentials::CredentialRequest {
            role_name,
            instance_id: "i-0123456789abcdef0",
            delivery: imds_credentials::Delivery::V2,
        };
        let now = time::OffsetDateTime::now_utc();
        let provider = &config.credential_provider;
        let fixed = provider.fetch(request("fixed"), now).await.unwrap();
        assert_eq!(fixed.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(fixed.session_token.expose(), "tok");
        let other = provider.fetch(request("other"), now).await.unwrap();
        assert!(other.access_key_id.starts_with("ASIA"));
        assert!(provider.per_instance("assumed"));
        assert!(!provider.per_instance("fixed"));
    }

    #[track_caller]
    fn check_credentials_file(json: &str, expect: Option<(&str, &str, Option<&str>)>) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("keys.json");
        std::fs::write(&path, json).unwrap();
        let mut role = RoleSpec {
            provider: Some("static".to_owned()),
            ..RoleSpec::default()
        };
        let read = read_credentials_file(&mut role, &path).ok().map(|()| {
            (
                role.access_key_id.unwrap(),
                role.secret_access_key.unwrap(),
                role.session_token,
            )
        });
        let expect = expect.map(|(key, secret, token)| {
            (key.to_owned(), secret.to_owned(), token.map(str::to_owned))
        });
        assert_eq!(read, expect, "{json}");
    }

    #[test]
    fn credentials_files_are_read_as_imds_and_sts_print_them() {
        check_credentials_file(
            r#"{"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "AKIA1", "SecretAccessKey": "s", "Token": "t", "Expiration": "2026-01-01T00:00:00Z"}"#,
            Some(("AKIA1", "s", Some("t"))),
        );
        check_credentials_file(
            r#"{"Credentials": {"AccessKeyId": "ASIA2", "SecretAccessKey": "s", "SessionToken": "t"}, "AssumedRoleUser": {}}"#,
            Some(("ASIA2", "s", Some("t"))),
        );
        check_credentials_file(
            r#"{"AccessKeyId": "AKIA3", "SecretAccessKey": "s"}"#,
            Some(("AKIA3", "s", None)),
        );
        check_credentials_file(r#"{"AccessKeyId": "AKIA4"}"#, None);
        check_credentials_file(r#"{"AccessKeyId": 4, "SecretAccessKey": "s"}"#, None);
        check_credentials_file("not json", None);
    }

    #[tokio::test]
    #[allow(
        clippy::disallowed_methods,
        reason = "loading the config checks descriptions and roles at the moment it is loaded"
    )]
    async fn static_keys_can_come_from_a_credentials_file() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join("keys.json"),
            r#"{"Credentials": {"AccessKeyId": "ASIAFILEFILEFILEFILE", "SecretAccessKey": "s", "SessionToken": "t"}}"#,
        )
        .unwrap();
        let path = directory.path().join("imds.toml");
        let role = "[[roles]]\nname = \"fixed\"\nprovider = \"static\"\ncredentials-file = \"keys.json\"\n";
        std::fs::write(&path, role).unwrap();
        let config = read(&path).unwrap().resolve(&Generated::random()).unwrap();
        let request = imds_credentials::CredentialRequest {
            role_name: "fixed",
            instance_id: "i-0123456789abcdef0",
            delivery: imds_credentials::Delivery::V2,
        };
        let credentials = config
            .credential_provider
            .fetch(request, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id, "ASIAFILEFILEFILEFILE");
        assert_eq!(credentials.session_token.expose(), "t");

        std::fs::write(&path, role.replace("keys.json", "missing.json")).unwrap();
        let error = format!("{:#}", read(&path).unwrap_err());
        assert!(
            error.contains("roles[0].credentials-file: cannot read"),
            "{error}"
        );
        std::fs::write(&path, role.replace("static", "generated")).unwrap();
        let error = format!("{:#}", read(&path).unwrap_err());
        assert!(
            error.contains("roles[0].credentials-file: only the \"static\""),
            "{error}"
        );
    }

    #[test]
    fn lockdown_throttle_and_audit_resolve() {
        let config = parse(
            "[lockdown]\nusers = [\"root\", 1000]\ncredential-users = [0]\n\
             [throttle]\nrequests-per-second = 10\nburst = 20\n[throttle.instances]\n\"i-0123456789abcdef0\" = 0\n\
             [audit]\nfile = \"-\"\n",
        )
        .unwrap()
        .resolve(&Generated::random())
        .unwrap();
        let policy = config.lockdown.unwrap();
        assert_eq!(policy.users, Some(HashSet::from([0, 1000])));
        assert_eq!(policy.credential_users, Some(HashSet::from([0])));
        let rate = config.throttle.default.unwrap();
        assert_eq!((rate.per_second.get(), rate.burst.get()), (10, 20));
        assert!(config.throttle.limiter_for("i-0123456789abcdef0").is_none());
        assert!(matches!(config.audit, Some(Destination::Stdout)));
        let defaults = parse("").unwrap().resolve(&Generated::random()).unwrap();
        assert!(defaults.lockdown.is_none());
        assert!(defaults.audit.is_none());
        assert_eq!(
            defaults.throttle.default.unwrap().per_second.get(),
            DEFAULT_REQUESTS_PER_SECOND
        );
    }

    #[test]
    fn lockdown_errors_name_the_key() {
        check_error(
            "[lockdown]\nusers = [\"imds-no-such-user\"]\n",
            "lockdown.users[0]: no user named \"imds-no-such-user\"",
        );
        check_error(
            "[lockdown]\ncredential-users = [0, \"imds-no-such-user\"]\n",
            "lockdown.credential-users[1]",
        );
        check_error("[lockdown]\n", "lockdown: give users");
        check_error("[lockdown]\nuser = [0]\n", "lockdown.user: unknown field");
        check_error("[lockdown]\nusers = [-1]\n", "lockdown.users");
        check_error("[throttle]\nburst = 0\n", "throttle.burst");
        check_error("[throttle]\nrate = 1\n", "throttle.rate: unknown field");
        check_error(
            "[throttle]\nrequests-per-second = -5\n",
            "throttle.requests-per-second",
        );
        check_error("[audit]\nfile = \"\"\n", "audit.file");
        check_error(
            "[server]\nlisten = []\n",
            "server.listen: give at least one",
        );
        check_error(
            "[server]\nlisten = [\"127.0.0.1:80\", \"127.0.0.1:80\"]\n",
            "server.listen: 127.0.0.1:80 is given twice",
        );
        check_error("[server]\nlisten = [\"localhost:80\"]\n", "server.listen");
        check_error("[server]\nport = 80\n", "server.port: unknown field");
    }

    #[test]
    fn server_listen_gives_the_guest_listeners() {
        let config = parse("[server]\nlisten = [\"169.254.169.254:80\", \"[fd00:ec2::254]:80\"]\n")
            .unwrap()
            .resolve(&Generated::random())
            .unwrap();
        let listen: Vec<std::net::SocketAddr> = vec![
            "169.254.169.254:80".parse().unwrap(),
            "[fd00:ec2::254]:80".parse().unwrap(),
        ];
        assert_eq!(config.listen, Some(listen));
        let config = parse("").unwrap().resolve(&Generated::random()).unwrap();
        assert_eq!(config.listen, None);
    }

    #[test]
    fn user_data_file_is_read_relative_to_the_config() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("boot.sh"), b"#!/bin/sh\ntrue\n").unwrap();
        let path = directory.path().join("imds.toml");
        std::fs::write(&path, "[instance]\nuser-data-file = \"boot.sh\"\n").unwrap();
        let config = read(&path).unwrap().resolve(&Generated::random()).unwrap();
        assert_eq!(
            config.default_instance.user_data.as_deref(),
            Some(&b"#!/bin/sh\ntrue\n"[..])
        );
        std::fs::write(&path, "[instance]\nuser-data-file = \"missing.sh\"\n").unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("missing.sh"));
    }
}

#[cfg(test)]
mod properties;

mod containers;
