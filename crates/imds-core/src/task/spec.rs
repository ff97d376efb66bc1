//! Task descriptions: what a config file's `[[tasks]]` entry or a control-API request says about
//! an ECS task and its containers, and how that becomes a `Task`.
//!
//! `TaskSpec` holds exactly what was written (every key optional, unknown keys refused).
//! `TaskSpec::resolve` fills what was left out from the values generated for the task once
//! (`TaskGenerated`: ids, Docker ids, timestamps; kept with the description so the task stays the
//! same across restarts) and from values derived from the others (ARNs from the region, account,
//! cluster and ids; the ENI's subnet and DNS name from its address), and checks every value.
//! Errors name the key, `task.containers[1].name: ...`.
//!
//! The shapes generated follow the ECS agent and the ECS Developer Guide ("Task metadata endpoint
//! version 4"): task ids of 32 hex digits, 64-hex Docker ids on EC2 and
//! `<task id>-<10 digits>` on Fargate, container ARNs `container/CLUSTER/TASK_ID/UUID`, random
//! UUIDs for the endpoint and credentials ids.

use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, Ipv4Addr},
};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::{
    render::{parse_rfc3339, rfc3339_nano},
    role_name::check_role_name,
    spec::SpecError,
    task::{
        Container, ContainerKind, Eni, LaunchType, NetworkMode, Port, StatsSource, Task, TaskRole,
    },
};

type Result<T> = std::result::Result<T, SpecError>;

macro_rules! fail {
    ($($arg:tt)*) => { return Err(SpecError(format!($($arg)*))) };
}

/// The pause container's name, as the EC2 agent names it.
pub const PAUSE_CONTAINER_NAME: &str = "~internal~ecs~pause";

/// The pause container's image, as the ECS Developer Guide's `awsvpc` example shows it.
const PAUSE_IMAGE: &str = "amazon/amazon-ecs-pause:0.1.0";

/// The first host port Docker hands out to `bridge` containers that publish a port without
/// naming one (its default ephemeral range starts here).
const FIRST_EPHEMERAL_PORT: u16 = 32768;

/// An ECS task as described in a config file (`[[tasks]]`) or a control-API request.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskSpec {
    /// 32 lower-case hex digits; generated when left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The cluster's short name (default `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The task definition's family (default `imds-task`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// The task definition's revision (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, maximum = 4_294_967_295.0))]
    pub revision: Option<u32>,
    /// `EC2` (default) or `FARGATE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(EC2|FARGATE)$"))]
    pub launch_type: Option<String>,
    /// `bridge` (EC2's default), `host` or `awsvpc` (Fargate's only mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(bridge|host|awsvpc)$"))]
    pub network_mode: Option<String>,
    /// The region of the task's ARN (default `us-east-1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The account of the task's ARN (12 digits; generated when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The region followed by one letter (default: the region's `a` zone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// `DesiredStatus` (default `RUNNING`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_status: Option<String>,
    /// `KnownStatus` (default `RUNNING`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_status: Option<String>,
    /// The task's CPU limit in vCPU (Fargate's default 0.25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// The task's memory limit in MiB (Fargate's default 512).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, maximum = 4_294_967_295.0))]
    pub memory: Option<u32>,
    /// `ServiceName`, for a task of a service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// `VPCID` (EC2 only; generated when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// The imds role whose provider makes the task's credentials (default: the last part of
    /// `role-arn`); without either, the task has no credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The ARN the credentials answer names (default `arn:aws:iam::ACCOUNT:role/ROLE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The id of `/v2/credentials/{id}` (generated when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_id: Option<String>,
    /// Source addresses of the task's containers: a caller from one of them is this task's, and
    /// may read only this task's containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    /// `awsvpc`: the interface's IPv4 address (default: the first IPv4 address of `addresses`,
    /// else generated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// `awsvpc`: the interface's MAC address (generated when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// `awsvpc`: the interface's subnet (default: the address's /24).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_cidr_block: Option<String>,
    /// `awsvpc`: the subnet's DNS servers (Fargate's default: the subnet's base address + 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
    /// `awsvpc`: the DNS search list (Fargate's default: the region's internal domain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_search_list: Option<Vec<String>>,
    /// `TaskTags` of `/taskWithTags`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// `ContainerInstanceTags` of `/taskWithTags` (EC2 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_instance_tags: Option<BTreeMap<String, String>>,
    /// The task's containers; at least one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<ContainerSpec>>,
}

/// `[[tasks.containers]]`: one container of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContainerSpec {
    /// The container's name in the task definition; required, unique in the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The image reference (default `NAME:latest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `ImageID`, `sha256:` and 64 hex digits (generated when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The id of `/v4/{id}` (`ECS_CONTAINER_METADATA_URI_V4`; generated when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// CPU units (`Limits.CPU`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, maximum = 4_294_967_295.0))]
    pub cpu: Option<u32>,
    /// MiB (`Limits.Memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, maximum = 4_294_967_295.0))]
    pub memory: Option<u32>,
    /// Docker labels, besides the ECS labels the agent sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Published ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortSpec>>,
    /// `LogDriver`, e.g. `awslogs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<String>,
    /// `LogOptions`, e.g. `awslogs-group`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_options: Option<BTreeMap<String, String>>,
    /// Source addresses of this container (a caller from one is the task's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    /// `bridge`: the container's address on the bridge (default: the first IPv4 address of
    /// `addresses`, else generated in 172.17.0.0/16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// `/stats` from the cgroups of this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, maximum = 4_294_967_295.0))]
    pub pid: Option<u32>,
    /// `/stats` from this cgroup path (below each cgroup hierarchy's mount point).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// `DesiredStatus` (default `RUNNING`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_status: Option<String>,
    /// `KnownStatus` (default `RUNNING`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_status: Option<String>,
}

/// `ports = [{ container-port = 8080 }]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortSpec {
    pub container_port: u16,
    /// `tcp` (default) or `udp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// `bridge`: the host port (default: one from Docker's ephemeral range); `awsvpc` and
    /// `host`: the container port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// The host address (default `0.0.0.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// A task as the store keeps it: its description and the values generated for it, so that it
/// resolves to the same task every time.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoredTask {
    /// Values drawn when the task was registered (and for each container when it was added).
    pub generated: TaskGenerated,
    /// The description as given (and updated) through the config file or the control API.
    pub task: TaskSpec,
    /// Where the task was registered; left out for the config file's (as stored before tasks
    /// could be registered through the control API).
    #[serde(default, skip_serializing_if = "TaskOrigin::is_config")]
    pub origin: TaskOrigin,
}

/// Where a task was registered: the config file's tasks are its whole list at each start, the
/// control API's stay until deregistered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskOrigin {
    /// A `[[tasks]]` entry of the config file.
    #[default]
    Config,
    /// `POST /v1/tasks`.
    Api,
}

impl TaskOrigin {
    /// True for the config file's.
    pub fn is_config(&self) -> bool {
        *self == TaskOrigin::Config
    }

    /// `config` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskOrigin::Config => "config",
            TaskOrigin::Api => "api",
        }
    }
}

impl StoredTask {
    /// A new task: `spec` with freshly generated values.
    pub fn new(spec: TaskSpec) -> StoredTask {
        let mut generated = TaskGenerated::random();
        generated.complete(&spec);
        StoredTask {
            generated,
            task: spec,
            origin: TaskOrigin::Config,
        }
    }

    /// The task it resolves to.
    pub fn resolve(&self) -> Result<Task> {
        self.task.clone().resolve(&self.generated)
    }
}

/// Values generated once per task.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskGenerated {
    pub task_id: String,
    pub account_id: String,
    pub credentials_id: String,
    /// When the task was registered (RFC 3339): `PullStartedAt`, and the base of the other times.
    pub registered_at: String,
    pub vpc_id: String,
    pub mac_address: String,
    pub ipv4_address: String,
    /// By container name.
    pub containers: BTreeMap<String, ContainerGenerated>,
    /// The pause container's (EC2 `awsvpc`).
    pub pause: ContainerGenerated,
}

/// Values generated once per container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainerGenerated {
    /// A UUID, the id of `/v4/{id}`.
    pub endpoint_id: String,
    /// 64 hex digits: the Docker id on EC2.
    pub docker_hex: String,
    /// 10 digits: the Docker id's tail on Fargate (`<task id>-<digits>`).
    pub docker_digits: String,
    /// A UUID, the last part of the container's ARN.
    pub container_uuid: String,
    /// 20 hex digits ending the agent-made `DockerName`.
    pub name_suffix: String,
    /// 64 hex digits of `ImageID`.
    pub image_digest: String,
    /// An address in 172.17.0.0/16 (`bridge`).
    pub ipv4_address: String,
    /// Milliseconds from the task's registration to the container's `CreatedAt`.
    pub created_after_ms: u32,
}

/// Random values in the shapes ECS uses.
struct Draw(rand::rngs::ThreadRng);

impl Draw {
    fn new() -> Draw {
        Draw(rand::rng())
    }

    fn hex(&mut self, digits: usize) -> String {
        use rand::Rng;
        (0..digits)
            .map(|_| char::from(b"0123456789abcdef"[self.0.random_range(0..16)]))
            .collect()
    }

    fn digits(&mut self, count: usize) -> String {
        use rand::Rng;
        (0..count)
            .map(|_| char::from(b'0' + self.0.random_range(0..10u8)))
            .collect()
    }

    /// A random (version 4) UUID, lower case.
    fn uuid(&mut self) -> String {
        use rand::Rng;
        let variant = char::from(b"89ab"[self.0.random_range(0..4)]);
        format!(
            "{}-{}-4{}-{variant}{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }

    fn octet(&mut self) -> u8 {
        use rand::Rng;
        self.0.random_range(2..255)
    }

    fn container(&mut self) -> ContainerGenerated {
        use rand::Rng;
        ContainerGenerated {
            endpoint_id: self.uuid(),
            docker_hex: self.hex(64),
            docker_digits: self.digits(10),
            container_uuid: self.uuid(),
            name_suffix: self.hex(20),
            image_digest: self.hex(64),
            ipv4_address: Ipv4Addr::new(172, 17, 0, self.octet()).to_string(),
            created_after_ms: 2_000 + self.0.random_range(0..1_000),
        }
    }
}

impl TaskGenerated {
    /// Draws a new set, registered now; no containers yet (`complete` adds them).
    #[allow(
        clippy::disallowed_methods,
        reason = "a task's registration time is drawn with its ids, once, and then kept in the store"
    )]
    pub fn random() -> TaskGenerated {
        let mut draw = Draw::new();
        let mut account_id = draw.digits(12);
        if account_id.starts_with('0') {
            account_id.replace_range(0..1, "1");
        }
        // 0x02 in the first octet: a locally administered unicast address, as AWS's are.
        let mac_tail = draw.hex(10);
        let mac_address = format!(
            "02:{}:{}:{}:{}:{}",
            &mac_tail[0..2],
            &mac_tail[2..4],
            &mac_tail[4..6],
            &mac_tail[6..8],
            &mac_tail[8..10]
        );
        TaskGenerated {
            task_id: draw.hex(32),
            account_id,
            credentials_id: draw.uuid(),
            registered_at: rfc3339_nano(OffsetDateTime::now_utc()),
            vpc_id: format!("vpc-{}", draw.hex(17)),
            mac_address,
            ipv4_address: Ipv4Addr::new(10, 0, 2, draw.octet()).to_string(),
            containers: BTreeMap::new(),
            pause: draw.container(),
        }
    }

    /// Draws values for every container of `spec` that has none yet (a new task, or containers
    /// added by a change); the others keep theirs.
    pub fn complete(&mut self, spec: &TaskSpec) {
        let mut draw = Draw::new();
        for container in spec.containers.iter().flatten() {
            if let Some(name) = &container.name {
                self.containers
                    .entry(name.clone())
                    .or_insert_with(|| draw.container());
            }
        }
    }
}

/// `name` as the agent puts it in a `DockerName`: only letters, digits, `_` and `-`.
fn docker_name_part(name: &str) -> String {
    name.chars()
        .filter(|character| character.is_ascii_alphanumeric() || "_-".contains(*character))
        .collect()
}

/// Checks an ECS name (cluster, family, container): 1 to 255 letters, digits, `_` and `-`
/// (ECS API reference, `CreateCluster.clusterName`, `RegisterTaskDefinition.family`,
/// `ContainerDefinition.name`).
fn check_name(key: &str, value: &str) -> Result<()> {
    if value.is_empty()
        || value.len() > 255
        || !value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
    {
        fail!("{key}: {value:?} must be 1 to 255 letters, digits, _ and -");
    }
    Ok(())
}

/// Checks an id that ends a URI path (`/v4/{id}`, `/v2/credentials/{id}`): 1 to 128 letters,
/// digits and `._-`, so it needs no escaping.
fn check_path_id(key: &str, value: &str) -> Result<()> {
    if value.is_empty()
        || value.len() > 128
        || !value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
    {
        fail!("{key}: {value:?} must be 1 to 128 letters, digits and ._-");
    }
    Ok(())
}

/// Checks a status word (`RUNNING`, `STOPPED`, ...): upper-case letters and `_`.
fn status(key: &str, value: Option<String>) -> Result<String> {
    let value = value.unwrap_or_else(|| "RUNNING".to_owned());
    if value.is_empty()
        || !value
            .bytes()
            .all(|byte| byte.is_ascii_uppercase() || byte == b'_')
    {
        fail!("{key}: {value:?} must be an upper-case status such as RUNNING or STOPPED");
    }
    Ok(value)
}

fn parse_addresses(key: &str, texts: Option<&Vec<String>>) -> Result<Vec<IpAddr>> {
    texts
        .into_iter()
        .flatten()
        .map(|text| {
            text.parse::<IpAddr>()
                .map(|address| address.to_canonical())
                .map_err(|_| SpecError(format!("{key}: {text:?} is not an IP address")))
        })
        .collect()
}

fn ipv4(key: &str, text: &str) -> Result<Ipv4Addr> {
    text.parse()
        .map_err(|_| SpecError(format!("{key}: {text:?} is not an IPv4 address")))
}

/// The ARN partition of `region`.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The DNS suffix of private names: `ec2.internal` in us-east-1, `REGION.compute.internal`
/// elsewhere.
fn private_dns_suffix(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".to_owned()
    } else {
        format!("{region}.compute.internal")
    }
}

/// A `/24` (or the given block) and its gateway and DNS server, as a VPC lays them out: the
/// gateway is the block's base + 1 and the Amazon-provided DNS server base + 2.
fn subnet(key: &str, block: Option<&str>, address: Ipv4Addr) -> Result<(String, String, String)> {
    let (base, length) = match block {
        Some(text) => {
            let parsed = text.split_once('/').and_then(|(base, length)| {
                Some((base.parse::<Ipv4Addr>().ok()?, length.parse::<u32>().ok()?))
            });
            match parsed {
                Some((base, length)) if (16..=28).contains(&length) => (base, length),
                _ => fail!("{key}: {text:?} is not an IPv4 block like 10.0.2.0/24 (/16 to /28)"),
            }
        }
        None => {
            let [a, b, c, _] = address.octets();
            (Ipv4Addr::new(a, b, c, 0), 24)
        }
    };
    let mask = u32::MAX << (32 - length);
    if u32::from(base) & !mask != 0 {
        fail!("{key}: {base}/{length} has bits set past its prefix length");
    }
    let start = u32::from(base);
    Ok((
        format!("{base}/{length}"),
        format!("{}/{length}", Ipv4Addr::from(start + 1)),
        Ipv4Addr::from(start + 2).to_string(),
    ))
}

impl TaskSpec {
    /// Fills what this description leaves out from `generated` and derived values, and checks
    /// every value, naming the key of any error. `generated` must have values for every
    /// container (`TaskGenerated::complete`).
    pub fn resolve(self, generated: &TaskGenerated) -> Result<Task> {
        let spec = self;
        let task_id = spec.task_id.unwrap_or_else(|| generated.task_id.clone());
        if task_id.len() != 32
            || !task_id
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        {
            fail!("task.task-id: {task_id:?} must be 32 lower-case hex digits");
        }
        let cluster = spec.cluster.unwrap_or_else(|| "default".to_owned());
        check_name("task.cluster", &cluster)?;
        let family = spec.family.unwrap_or_else(|| "imds-task".to_owned());
        check_name("task.family", &family)?;
        let revision = spec.revision.unwrap_or(1);
        if revision == 0 {
            fail!("task.revision: revisions start at 1");
        }
        let launch_type = match spec.launch_type.as_deref() {
            None | Some("EC2") => LaunchType::Ec2,
            Some("FARGATE") => LaunchType::Fargate,
            Some(other) => fail!("task.launch-type: {other:?} must be EC2 or FARGATE"),
        };
        let network_mode = match (spec.network_mode.as_deref(), launch_type) {
            (None, LaunchType::Ec2) | (Some("bridge"), LaunchType::Ec2) => NetworkMode::Bridge,
            (Some("host"), LaunchType::Ec2) => NetworkMode::Host,
            (None | Some("awsvpc"), _) => NetworkMode::Awsvpc,
            (Some("bridge" | "host"), LaunchType::Fargate) => {
                fail!("task.network-mode: Fargate tasks use awsvpc")
            }
            (Some(other), _) => {
                fail!("task.network-mode: {other:?} must be bridge, host or awsvpc")
            }
        };
        let region = spec.region.unwrap_or_else(|| "us-east-1".to_owned());
        if region.is_empty()
            || !region
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        {
            fail!("task.region: {region:?} is not a region name like us-east-1");
        }
        let account_id = spec
            .account_id
            .unwrap_or_else(|| generated.account_id.clone());
        if account_id.len() != 12 || !account_id.bytes().all(|byte| byte.is_ascii_digit()) {
            fail!("task.account-id: {account_id:?} must be 12 digits");
        }
        let availability_zone = spec
            .availability_zone
            .unwrap_or_else(|| format!("{region}a"));
        let zone_letter = availability_zone
            .strip_prefix(region.as_str())
            .unwrap_or("");
        if zone_letter.len() != 1 || !zone_letter.bytes().all(|byte| byte.is_ascii_lowercase()) {
            fail!("task.availability-zone: {availability_zone:?} must be the region {region:?} followed by one letter");
        }
        let desired_status = status("task.desired-status", spec.desired_status)?;
        let known_status = status("task.known-status", spec.known_status)?;
        let (default_cpu, default_memory) = match launch_type {
            LaunchType::Fargate => (Some(0.25), Some(512)),
            LaunchType::Ec2 => (None, None),
        };
        let cpu = spec.cpu.or(default_cpu);
        if cpu.is_some_and(|cpu| !(cpu.is_finite() && cpu > 0.0 && cpu <= 192.0)) {
            fail!("task.cpu: vCPUs above 0, at most 192");
        }
        let memory = spec.memory.or(default_memory);
        if memory == Some(0) {
            fail!("task.memory: MiB above 0");
        }
        let registered_at = parse_rfc3339(&generated.registered_at).map_err(|_| {
            SpecError(format!(
                "task: the stored registration time {:?} is not a timestamp",
                generated.registered_at
            ))
        })?;
        let pull_started_at = registered_at;
        let pull_stopped_at = registered_at + Duration::milliseconds(1_850);
        let partition = partition(&region);
        let cluster_arn = format!("arn:{partition}:ecs:{region}:{account_id}:cluster/{cluster}");
        let task_arn =
            format!("arn:{partition}:ecs:{region}:{account_id}:task/{cluster}/{task_id}");
        let cluster_label = match launch_type {
            LaunchType::Ec2 => cluster.clone(),
            LaunchType::Fargate => cluster_arn.clone(),
        };
        let vpc_id = match launch_type {
            LaunchType::Ec2 => Some(spec.vpc_id.unwrap_or_else(|| generated.vpc_id.clone())),
            LaunchType::Fargate if spec.vpc_id.is_some() => {
                fail!("task.vpc-id: Fargate's task documents have no VPCID")
            }
            LaunchType::Fargate => None,
        };
        if launch_type == LaunchType::Fargate && spec.container_instance_tags.is_some() {
            fail!("task.container-instance-tags: Fargate tasks have no container instance");
        }
        let role = match (spec.role, spec.role_arn) {
            (None, None) => {
                if spec.credentials_id.is_some() {
                    fail!("task.credentials-id: the task has no role; give role or role-arn");
                }
                None
            }
            (role, role_arn) => {
                let role_name = match (role, &role_arn) {
                    (Some(role), _) => role,
                    (None, Some(arn)) => arn.rsplit('/').next().unwrap_or_default().to_owned(),
                    (None, None) => unreachable!("matched above"),
                };
                check_role_name(&role_name)
                    .map_err(|error| SpecError(format!("task.role: {error}")))?;
                let role_arn = role_arn.unwrap_or_else(|| {
                    format!("arn:{partition}:iam::{account_id}:role/{role_name}")
                });
                if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
                    fail!("task.role-arn: {role_arn:?} is not a role ARN like arn:aws:iam::123456789012:role/app");
                }
                let credentials_id = spec
                    .credentials_id
                    .unwrap_or_else(|| generated.credentials_id.clone());
                check_path_id("task.credentials-id", &credentials_id)?;
                Some(TaskRole {
                    role_name,
                    role_arn,
                    credentials_id,
                })
            }
        };
        let mut addresses = parse_addresses("task.addresses", spec.addresses.as_ref())?;

        let eni = if network_mode == NetworkMode::Awsvpc {
            let address = match &spec.ipv4_address {
                Some(text) => ipv4("task.ipv4-address", text)?,
                None => match addresses.iter().find_map(|address| match address {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                }) {
                    Some(address) => address,
                    None => ipv4("task.ipv4-address", &generated.ipv4_address)?,
                },
            };
            let mac_address = spec
                .mac_address
                .unwrap_or_else(|| generated.mac_address.clone());
            let parts: Vec<&str> = mac_address.split(':').collect();
            if parts.len() != 6
                || !parts.iter().all(|part| {
                    part.len() == 2
                        && part
                            .bytes()
                            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
                })
            {
                fail!("task.mac-address: {mac_address:?} must be a lower-case, colon-separated MAC address");
            }
            let (block, gateway, dns_server) = subnet(
                "task.subnet-cidr-block",
                spec.subnet_cidr_block.as_deref(),
                address,
            )?;
            let fargate = launch_type == LaunchType::Fargate;
            let dns_servers = match spec.dns_servers {
                Some(servers) => {
                    for server in &servers {
                        ipv4("task.dns-servers", server)?;
                    }
                    servers
                }
                None if fargate => vec![dns_server],
                None => Vec::new(),
            };
            let dns_search_list = match spec.dns_search_list {
                Some(list) => list,
                None if fargate => vec![private_dns_suffix(&region)],
                None => Vec::new(),
            };
            Some(Eni {
                ipv4_address: address.to_string(),
                private_dns_name: format!(
                    "ip-{}.{}",
                    address.to_string().replace('.', "-"),
                    private_dns_suffix(&region)
                ),
                mac_address,
                subnet_cidr_block: block,
                subnet_gateway: gateway,
                dns_servers,
                dns_search_list,
            })
        } else {
            for (key, given) in [
                ("ipv4-address", spec.ipv4_address.is_some()),
                ("mac-address", spec.mac_address.is_some()),
                ("subnet-cidr-block", spec.subnet_cidr_block.is_some()),
                ("dns-servers", spec.dns_servers.is_some()),
                ("dns-search-list", spec.dns_search_list.is_some()),
            ] {
                if given {
                    fail!("task.{key}: only awsvpc tasks have an interface of their own");
                }
            }
            None
        };

        let container_specs = spec.containers.unwrap_or_default();
        if container_specs.is_empty() {
            fail!("task.containers: give at least one container (a name is enough)");
        }
        let mut names = HashSet::new();
        let mut endpoint_ids = HashSet::new();
        let mut next_ephemeral_port = FIRST_EPHEMERAL_PORT;
        let mut containers = Vec::with_capacity(container_specs.len() + 1);
        let ecs_labels = |name: &str| {
            BTreeMap::from([
                (
                    "com.amazonaws.ecs.cluster".to_owned(),
                    cluster_label.clone(),
                ),
                (
                    "com.amazonaws.ecs.container-name".to_owned(),
                    name.to_owned(),
                ),
                ("com.amazonaws.ecs.task-arn".to_owned(), task_arn.clone()),
                (
                    "com.amazonaws.ecs.task-definition-family".to_owned(),
                    family.clone(),
                ),
                (
                    "com.amazonaws.ecs.task-definition-version".to_owned(),
                    revision.to_string(),
                ),
            ])
        };
        for (index, container) in container_specs.into_iter().enumerate() {
            let key = |name: &str| format!("task.containers[{index}].{name}");
            let Some(name) = container.name else {
                fail!("{}: required", key("name"));
            };
            check_name(&key("name"), &name)?;
            if !names.insert(name.clone()) {
                fail!("{}: {name:?} is given twice", key("name"));
            }
            let Some(seed) = generated.containers.get(&name) else {
                fail!(
                    "{}: no values were generated for container {name:?}",
                    key("name")
                );
            };
            let endpoint_id = container
                .endpoint_id
                .unwrap_or_else(|| seed.endpoint_id.clone());
            check_path_id(&key("endpoint-id"), &endpoint_id)?;
            if !endpoint_ids.insert(endpoint_id.clone()) {
                fail!(
                    "{}: {endpoint_id:?} is another container's",
                    key("endpoint-id")
                );
            }
            let image = container.image.unwrap_or_else(|| format!("{name}:latest"));
            if image.is_empty() || image.contains(char::is_whitespace) {
                fail!("{}: {image:?} is not an image reference", key("image"));
            }
            let image_id = container
                .image_id
                .unwrap_or_else(|| format!("sha256:{}", seed.image_digest));
            let digest = image_id.strip_prefix("sha256:").unwrap_or_default();
            if digest.len() != 64
                || !digest
                    .bytes()
                    .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
            {
                fail!(
                    "{}: {image_id:?} must be sha256: and 64 hex digits",
                    key("image-id")
                );
            }
            let container_addresses =
                parse_addresses(&key("addresses"), container.addresses.as_ref())?;
            let ipv4_address = match network_mode {
                NetworkMode::Bridge => match &container.ipv4_address {
                    Some(text) => ipv4(&key("ipv4-address"), text)?.to_string(),
                    None => container_addresses
                        .iter()
                        .find(|address| address.is_ipv4())
                        .map_or_else(|| seed.ipv4_address.clone(), ToString::to_string),
                },
                NetworkMode::Awsvpc | NetworkMode::Host if container.ipv4_address.is_some() => {
                    fail!(
                        "{}: only bridge containers have an address of their own",
                        key("ipv4-address")
                    )
                }
                NetworkMode::Awsvpc => eni
                    .as_ref()
                    .expect("awsvpc tasks have an interface")
                    .ipv4_address
                    .clone(),
                // Docker reports no address for the host network; the agent lists it as "".
                NetworkMode::Host => String::new(),
            };
            for address in container_addresses {
                if !addresses.contains(&address) {
                    addresses.push(address);
                }
            }
            let mut ports = Vec::new();
            for (port_index, port) in container.ports.into_iter().flatten().enumerate() {
                let port_key = |name: &str| key(&format!("ports[{port_index}].{name}"));
                let protocol = port.protocol.unwrap_or_else(|| "tcp".to_owned());
                if !["tcp", "udp"].contains(&protocol.as_str()) {
                    fail!("{}: {protocol:?} must be tcp or udp", port_key("protocol"));
                }
                let host_port = match (network_mode, port.host_port) {
                    (NetworkMode::Bridge, Some(host_port)) => host_port,
                    (NetworkMode::Bridge, None) => {
                        let host_port = next_ephemeral_port;
                        next_ephemeral_port = next_ephemeral_port.saturating_add(1);
                        host_port
                    }
                    (_, Some(host_port)) if host_port != port.container_port => fail!(
                        "{}: in {} mode the host port is the container port",
                        port_key("host-port"),
                        network_mode.as_str()
                    ),
                    _ => port.container_port,
                };
                let host_ip = port.host_ip.unwrap_or_else(|| "0.0.0.0".to_owned());
                if host_ip.parse::<IpAddr>().is_err() {
                    fail!("{}: {host_ip:?} is not an IP address", port_key("host-ip"));
                }
                ports.push(Port {
                    container_port: port.container_port,
                    protocol,
                    host_port,
                    host_ip,
                });
            }
            let stats = match (container.pid, container.cgroup) {
                (None, None) => StatsSource::Synthetic,
                (Some(0), None) => fail!("{}: process ids start at 1", key("pid")),
                (Some(pid), None) => StatsSource::Pid(pid),
                (None, Some(path)) => {
                    if !path.starts_with('/')
                        || path
                            .split('/')
                            .any(|segment| segment == ".." || segment == ".")
                    {
                        fail!(
                            "{}: {path:?} must be a cgroup path from the hierarchy's root, like /imds/web",
                            key("cgroup")
                        );
                    }
                    StatsSource::Cgroup(path)
                }
                (Some(_), Some(_)) => fail!("{}: give pid or cgroup, not both", key("cgroup")),
            };
            if container.log_options.is_some() && container.log_driver.is_none() {
                fail!("{}: log options need a log-driver", key("log-options"));
            }
            let mut labels = container.labels.unwrap_or_default();
            labels.extend(ecs_labels(&name));
            let created_at =
                registered_at + Duration::milliseconds(i64::from(seed.created_after_ms));
            let (docker_id, docker_name, snapshotter) = match launch_type {
                LaunchType::Ec2 => (
                    seed.docker_hex.clone(),
                    format!(
                        "ecs-{}-{revision}-{}-{}",
                        docker_name_part(&family),
                        docker_name_part(&name),
                        seed.name_suffix
                    ),
                    None,
                ),
                LaunchType::Fargate => (
                    format!("{task_id}-{}", seed.docker_digits),
                    name.clone(),
                    Some("overlayfs".to_owned()),
                ),
            };
            let cpu_units = f64::from(container.cpu.unwrap_or(0));
            containers.push(Container {
                endpoint_id,
                docker_id,
                docker_name,
                image,
                image_id,
                kind: ContainerKind::Normal,
                desired_status: status(&key("desired-status"), container.desired_status)?,
                known_status: status(&key("known-status"), container.known_status)?,
                // The EC2 agent gives a container at least 2 CPU shares (Docker's minimum) and
                // reports what it gave.
                cpu: match launch_type {
                    LaunchType::Ec2 => cpu_units.max(2.0),
                    LaunchType::Fargate => cpu_units,
                },
                memory: match launch_type {
                    LaunchType::Ec2 => Some(container.memory.unwrap_or(0)),
                    LaunchType::Fargate => container.memory,
                },
                created_at,
                started_at: created_at + Duration::milliseconds(480),
                labels,
                ports,
                log_driver: container.log_driver,
                log_options: container.log_options.unwrap_or_default(),
                container_arn: Some(format!(
                    "arn:{partition}:ecs:{region}:{account_id}:container/{cluster}/{task_id}/{}",
                    seed.container_uuid
                )),
                ipv4_address,
                stats,
                snapshotter,
                name,
            });
        }
        if launch_type == LaunchType::Ec2 && network_mode == NetworkMode::Awsvpc {
            let seed = &generated.pause;
            let created_at = registered_at + Duration::milliseconds(900);
            containers.push(Container {
                name: PAUSE_CONTAINER_NAME.to_owned(),
                endpoint_id: seed.endpoint_id.clone(),
                docker_id: seed.docker_hex.clone(),
                docker_name: format!(
                    "ecs-{}-{revision}-{}-{}",
                    docker_name_part(&family),
                    docker_name_part(PAUSE_CONTAINER_NAME),
                    seed.name_suffix
                ),
                image: PAUSE_IMAGE.to_owned(),
                image_id: String::new(),
                kind: ContainerKind::CniPause,
                desired_status: "RESOURCES_PROVISIONED".to_owned(),
                known_status: "RESOURCES_PROVISIONED".to_owned(),
                cpu: 0.0,
                memory: Some(0),
                created_at,
                started_at: created_at + Duration::milliseconds(350),
                labels: ecs_labels(PAUSE_CONTAINER_NAME),
                ports: Vec::new(),
                log_driver: None,
                log_options: BTreeMap::new(),
                container_arn: None,
                ipv4_address: eni
                    .as_ref()
                    .expect("awsvpc tasks have an interface")
                    .ipv4_address
                    .clone(),
                stats: StatsSource::Synthetic,
                snapshotter: None,
            });
        }
        Ok(Task {
            task_id,
            task_arn,
            cluster,
            cluster_arn,
            family,
            revision,
            launch_type,
            network_mode,
            region,
            account_id,
            availability_zone,
            desired_status,
            known_status,
            cpu,
            memory,
            pull_started_at,
            pull_stopped_at,
            vpc_id,
            service_name: spec.service_name,
            tags: spec.tags.unwrap_or_default(),
            container_instance_tags: spec.container_instance_tags.unwrap_or_default(),
            addresses,
            role,
            eni,
            containers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(json: &str) -> StoredTask {
        StoredTask::new(serde_json::from_str(json).unwrap())
    }

    #[track_caller]
    fn check_error(json: &str, expect: &str) {
        let error = stored(json).resolve().expect_err("should be refused");
        assert!(
            error.0.contains(expect),
            "error {error:?} does not mention {expect:?}"
        );
    }

    #[test]
    fn a_name_is_enough_for_an_ec2_bridge_task() {
        let stored = stored(r#"{"containers": [{"name": "web"}]}"#);
        let task = stored.resolve().unwrap();
        let generated = &stored.generated;
        assert_eq!(task.task_id, generated.task_id);
        assert_eq!(
            task.task_arn,
            format!(
                "arn:aws:ecs:us-east-1:{}:task/default/{}",
                generated.account_id, generated.task_id
            )
        );
        assert_eq!(task.launch_type, LaunchType::Ec2);
        assert_eq!(task.network_mode, NetworkMode::Bridge);
        assert_eq!(task.cluster_field(), "default");
        assert!(task.role.is_none() && task.eni.is_none());
        assert_eq!(task.vpc_id.as_deref(), Some(generated.vpc_id.as_str()));
        let [web] = task.containers.as_slice() else {
            panic!("one container: {:?}", task.containers)
        };
        let seed = &generated.containers["web"];
        assert_eq!(web.endpoint_id, seed.endpoint_id);
        assert_eq!(web.docker_id.len(), 64);
        assert_eq!(
            web.docker_name,
            format!("ecs-imds-task-1-web-{}", seed.name_suffix)
        );
        assert_eq!(web.image, "web:latest");
        assert_eq!(web.ipv4_address, seed.ipv4_address);
        assert_eq!(web.cpu, 2.0);
        assert_eq!(web.labels["com.amazonaws.ecs.task-arn"], task.task_arn);
        assert!(web.created_at > task.pull_stopped_at && web.started_at > web.created_at);
        assert_eq!(
            web.container_arn.as_deref(),
            Some(
                format!(
                    "arn:aws:ecs:us-east-1:{}:container/default/{}/{}",
                    generated.account_id, generated.task_id, seed.container_uuid
                )
                .as_str()
            )
        );
        // The same stored task resolves to the same task.
        assert_eq!(stored.resolve().unwrap(), task);
    }

    #[test]
    fn fargate_tasks_take_its_shapes() {
        let task = stored(
            r#"{"launch-type": "FARGATE", "cluster": "shop", "region": "eu-west-1",
                "addresses": ["10.0.7.9"], "role": "app",
                "containers": [{"name": "web"}, {"name": "sidecar"}]}"#,
        )
        .resolve()
        .unwrap();
        assert_eq!(task.network_mode, NetworkMode::Awsvpc);
        assert_eq!(task.cluster_field(), task.cluster_arn);
        assert!(task.cluster_arn.ends_with(":cluster/shop"));
        assert_eq!((task.cpu, task.memory), (Some(0.25), Some(512)));
        assert!(task.vpc_id.is_none());
        let eni = task.eni.as_ref().unwrap();
        assert_eq!(eni.ipv4_address, "10.0.7.9");
        assert_eq!(eni.subnet_cidr_block, "10.0.7.0/24");
        assert_eq!(eni.subnet_gateway, "10.0.7.1/24");
        assert_eq!(eni.dns_servers, ["10.0.7.2"]);
        assert_eq!(
            eni.private_dns_name,
            "ip-10-0-7-9.eu-west-1.compute.internal"
        );
        assert_eq!(task.containers.len(), 2, "no pause container on Fargate");
        for container in &task.containers {
            let (task_id, digits) = container.docker_id.split_once('-').unwrap();
            assert_eq!(task_id, task.task_id);
            assert!(digits.len() == 10 && digits.bytes().all(|byte| byte.is_ascii_digit()));
            assert_eq!(container.docker_name, container.name);
            assert_eq!(container.ipv4_address, "10.0.7.9");
            assert_eq!(container.snapshotter.as_deref(), Some("overlayfs"));
        }
        let role = task.role.unwrap();
        assert_eq!(
            role.role_arn,
            format!("arn:aws:iam::{}:role/app", task.account_id)
        );
    }

    #[test]
    fn ec2_awsvpc_tasks_have_a_pause_container_last() {
        let task = stored(r#"{"network-mode": "awsvpc", "containers": [{"name": "web"}]}"#)
            .resolve()
            .unwrap();
        let pause = task.containers.last().unwrap();
        assert_eq!(pause.kind, ContainerKind::CniPause);
        assert_eq!(pause.name, PAUSE_CONTAINER_NAME);
        assert!(pause.docker_name.contains("-internalecspause-"));
        assert!(pause.container_arn.is_none());
        assert_eq!(pause.ipv4_address, task.eni.as_ref().unwrap().ipv4_address);
        assert!(task.eni.unwrap().dns_servers.is_empty());
    }

    #[test]
    fn host_mode_containers_have_no_address() {
        let task = stored(
            r#"{"network-mode": "host", "containers": [{"name": "web", "ports": [{"container-port": 80}]}]}"#,
        )
        .resolve()
        .unwrap();
        assert_eq!(task.containers[0].ipv4_address, "");
        assert_eq!(task.containers[0].ports[0].host_port, 80);
    }

    #[test]
    fn a_role_arn_names_the_role() {
        let task = stored(
            r#"{"role-arn": "arn:aws:iam::123456789012:role/path/app", "credentials-id": "web-creds",
                "containers": [{"name": "web"}]}"#,
        )
        .resolve()
        .unwrap();
        let role = task.role.unwrap();
        assert_eq!(role.role_name, "app");
        assert_eq!(role.credentials_id, "web-creds");
    }

    #[test]
    fn containers_added_later_get_values_and_the_others_keep_theirs() {
        let mut stored = stored(r#"{"containers": [{"name": "web"}]}"#);
        let before = stored.generated.containers["web"].clone();
        stored
            .task
            .containers
            .as_mut()
            .unwrap()
            .push(ContainerSpec {
                name: Some("worker".to_owned()),
                ..ContainerSpec::default()
            });
        assert!(stored.resolve().is_err(), "no values for worker yet");
        stored.generated.complete(&stored.task);
        assert_eq!(stored.generated.containers["web"], before);
        assert_eq!(stored.resolve().unwrap().containers.len(), 2);
    }

    #[test]
    fn errors_name_the_key() {
        check_error(r#"{}"#, "task.containers: give at least one");
        check_error(
            r#"{"containers": [{}]}"#,
            "task.containers[0].name: required",
        );
        check_error(
            r#"{"containers": [{"name": "a"}, {"name": "a"}]}"#,
            "task.containers[1].name",
        );
        check_error(
            r#"{"task-id": "abc", "containers": [{"name": "a"}]}"#,
            "task.task-id",
        );
        check_error(
            r#"{"launch-type": "EXTERNAL", "containers": [{"name": "a"}]}"#,
            "task.launch-type",
        );
        check_error(
            r#"{"launch-type": "FARGATE", "network-mode": "bridge", "containers": [{"name": "a"}]}"#,
            "task.network-mode: Fargate",
        );
        check_error(
            r#"{"cluster": "my cluster", "containers": [{"name": "a"}]}"#,
            "task.cluster",
        );
        check_error(
            r#"{"role": "a/b", "containers": [{"name": "a"}]}"#,
            "task.role",
        );
        check_error(
            r#"{"credentials-id": "x", "containers": [{"name": "a"}]}"#,
            "task.credentials-id: the task has no role",
        );
        check_error(
            r#"{"role": "app", "credentials-id": "a/b", "containers": [{"name": "a"}]}"#,
            "task.credentials-id",
        );
        check_error(
            r#"{"containers": [{"name": "a", "endpoint-id": "x"}, {"name": "b", "endpoint-id": "x"}]}"#,
            "task.containers[1].endpoint-id",
        );
        check_error(
            r#"{"containers": [{"name": "a", "pid": 1, "cgroup": "/x"}]}"#,
            "task.containers[0].cgroup: give pid or cgroup",
        );
        check_error(
            r#"{"containers": [{"name": "a", "cgroup": "x/../y"}]}"#,
            "task.containers[0].cgroup",
        );
        check_error(
            r#"{"network-mode": "awsvpc", "containers": [{"name": "a", "ipv4-address": "10.0.0.1"}]}"#,
            "task.containers[0].ipv4-address",
        );
        check_error(
            r#"{"ipv4-address": "10.0.0.1", "containers": [{"name": "a"}]}"#,
            "task.ipv4-address: only awsvpc",
        );
        check_error(
            r#"{"addresses": ["nope"], "containers": [{"name": "a"}]}"#,
            "task.addresses",
        );
        check_error(
            r#"{"network-mode": "awsvpc", "containers": [{"name": "a", "ports": [{"container-port": 80, "host-port": 81}]}]}"#,
            "task.containers[0].ports[0].host-port",
        );
        check_error(
            r#"{"containers": [{"name": "a", "image-id": "sha256:12"}]}"#,
            "task.containers[0].image-id",
        );
        check_error(
            r#"{"desired-status": "running", "containers": [{"name": "a"}]}"#,
            "task.desired-status",
        );
        check_error(r#"{"cpu": 0, "containers": [{"name": "a"}]}"#, "task.cpu");
        check_error(
            r#"{"network-mode": "awsvpc", "subnet-cidr-block": "10.0.0.1/24", "containers": [{"name": "a"}]}"#,
            "task.subnet-cidr-block",
        );
    }

    #[test]
    fn uuids_have_the_version_4_shape() {
        let uuid = Draw::new().uuid();
        let parts: Vec<&str> = uuid.split('-').collect();
        assert_eq!(
            parts.iter().map(|part| part.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!("89ab".contains(&parts[3][..1]));
    }
}
