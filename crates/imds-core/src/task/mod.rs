//! ECS tasks and their containers, as the task metadata endpoint and the ECS credentials
//! endpoint serve them: the resolved model, every value filled in.
//!
//! A `Task` is made from a description (`spec::TaskSpec`, a config file's `[[tasks]]` entry or a
//! control-API body) and the values generated for it once (`spec::TaskGenerated`), so that it
//! resolves to the same task, with the same ids and timestamps, after every restart.
//!
//! # Layout
//! - `mod.rs`: `Task`, `Container`, their parts, and the closed sets of values (`LaunchType`,
//!   `NetworkMode`, `ContainerKind`, `StatsSource`).
//! - `spec`: descriptions, generated values and `resolve`.

pub mod spec;

use std::{collections::BTreeMap, net::IpAddr};

use time::OffsetDateTime;

/// Where a task runs (the task document's `LaunchType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchType {
    /// On an EC2 container instance: the agent's own cluster name, 64-hex Docker ids, a pause
    /// container in `awsvpc` mode.
    Ec2,
    /// On Fargate: the cluster's ARN, `<task id>-<10 digits>` Docker ids, `awsvpc` only.
    Fargate,
}

impl LaunchType {
    /// The name as the task document writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchType::Ec2 => "EC2",
            LaunchType::Fargate => "FARGATE",
        }
    }

    /// `AWS_EXECUTION_ENV` inside the task's containers.
    pub fn execution_env(self) -> &'static str {
        match self {
            LaunchType::Ec2 => "AWS_ECS_EC2",
            LaunchType::Fargate => "AWS_ECS_FARGATE",
        }
    }
}

/// How the task's containers are networked (the task definition's `networkMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Docker's default bridge: each container has its own address.
    Bridge,
    /// The host's network: Docker reports no address.
    Host,
    /// One elastic network interface for the whole task.
    Awsvpc,
}

impl NetworkMode {
    /// The name as the task document writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::Awsvpc => "awsvpc",
        }
    }
}

/// What a container is to ECS (the container document's `Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// A container of the task definition.
    Normal,
    /// The pause container the EC2 agent starts to hold an `awsvpc` task's network namespace.
    CniPause,
}

impl ContainerKind {
    /// The name as the container document writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Normal => "NORMAL",
            ContainerKind::CniPause => "CNI_PAUSE",
        }
    }
}

/// Where a container's `/stats` numbers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsSource {
    /// Plausible numbers that move with time, made up for the container.
    Synthetic,
    /// The cgroups of this process (`/proc/PID/cgroup`).
    Pid(u32),
    /// This cgroup path, below every cgroup hierarchy's mount point.
    Cgroup(String),
}

/// A published port (the container document's `Ports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port inside the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The port on the host (`awsvpc`: the container port).
    pub host_port: u16,
    /// The host address it is bound to (v4 only).
    pub host_ip: String,
}

/// The task's elastic network interface (`awsvpc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eni {
    /// Its private IPv4 address.
    pub ipv4_address: String,
    /// Its MAC address.
    pub mac_address: String,
    /// Its subnet, `10.0.2.0/24`.
    pub subnet_cidr_block: String,
    /// The subnet's gateway with the prefix length, `10.0.2.1/24`, as the agent writes it.
    pub subnet_gateway: String,
    /// `ip-10-0-2-100.REGION.compute.internal`.
    pub private_dns_name: String,
    /// The DNS servers of the subnet.
    pub dns_servers: Vec<String>,
    /// The DNS search list.
    pub dns_search_list: Vec<String>,
}

/// The role whose credentials the task's containers get from the ECS credentials endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRole {
    /// The imds role name: its provider makes the credentials.
    pub role_name: String,
    /// The ARN the credentials answer names (`RoleArn`).
    pub role_arn: String,
    /// The id in `/v2/credentials/{id}` (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`).
    pub credentials_id: String,
}

/// One container of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Its name in the task definition.
    pub name: String,
    /// The id in `/v4/{id}` and `/v3/{id}` (`ECS_CONTAINER_METADATA_URI_V4`).
    pub endpoint_id: String,
    /// `DockerId`.
    pub docker_id: String,
    /// `DockerName`.
    pub docker_name: String,
    /// `Image`.
    pub image: String,
    /// `ImageID` (`sha256:...`, empty for the pause container).
    pub image_id: String,
    /// `Type`.
    pub kind: ContainerKind,
    /// `DesiredStatus`.
    pub desired_status: String,
    /// `KnownStatus`.
    pub known_status: String,
    /// `Limits.CPU`, in CPU units.
    pub cpu: f64,
    /// `Limits.Memory`, in MiB; left out of Fargate's documents when the container sets none.
    pub memory: Option<u32>,
    /// `CreatedAt`.
    pub created_at: OffsetDateTime,
    /// `StartedAt`.
    pub started_at: OffsetDateTime,
    /// `Labels`: Docker's, the ECS labels included.
    pub labels: BTreeMap<String, String>,
    /// `Ports`.
    pub ports: Vec<Port>,
    /// `LogDriver`.
    pub log_driver: Option<String>,
    /// `LogOptions`.
    pub log_options: BTreeMap<String, String>,
    /// `ContainerARN`; none for the pause container.
    pub container_arn: Option<String>,
    /// The address its `Networks` entry shows (`bridge`: its own; `awsvpc`: the ENI's; `host`:
    /// empty, as Docker reports none).
    pub ipv4_address: String,
    /// Where its `/stats` come from.
    pub stats: StatsSource,
    /// `Snapshotter` (Fargate).
    pub snapshotter: Option<String>,
}

/// One ECS task, every value resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The 32-hex task id, the last part of its ARN.
    pub task_id: String,
    /// `TaskARN`: `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/TASK_ID`.
    pub task_arn: String,
    /// The cluster's short name.
    pub cluster: String,
    /// The cluster's ARN.
    pub cluster_arn: String,
    /// `Family`.
    pub family: String,
    /// `Revision` (the task document writes it as a string).
    pub revision: u32,
    /// `LaunchType`.
    pub launch_type: LaunchType,
    /// The network mode.
    pub network_mode: NetworkMode,
    /// The region, from the task's ARN.
    pub region: String,
    /// The account, from the task's ARN.
    pub account_id: String,
    /// `AvailabilityZone`.
    pub availability_zone: String,
    /// `DesiredStatus`.
    pub desired_status: String,
    /// `KnownStatus`.
    pub known_status: String,
    /// `Limits.CPU` in vCPU, if the task definition sets it.
    pub cpu: Option<f64>,
    /// `Limits.Memory` in MiB, if the task definition sets it.
    pub memory: Option<u32>,
    /// `PullStartedAt`.
    pub pull_started_at: OffsetDateTime,
    /// `PullStoppedAt`.
    pub pull_stopped_at: OffsetDateTime,
    /// `VPCID` (EC2 only).
    pub vpc_id: Option<String>,
    /// `ServiceName`, for a task of a service.
    pub service_name: Option<String>,
    /// `TaskTags` of `/taskWithTags`.
    pub tags: BTreeMap<String, String>,
    /// `ContainerInstanceTags` of `/taskWithTags` (EC2 only).
    pub container_instance_tags: BTreeMap<String, String>,
    /// Source addresses of the task's containers: a caller from one is this task's.
    pub addresses: Vec<IpAddr>,
    /// The task role, if it has one.
    pub role: Option<TaskRole>,
    /// The task's interface (`awsvpc`).
    pub eni: Option<Eni>,
    /// Its containers, the pause container (EC2 `awsvpc`) last.
    pub containers: Vec<Container>,
}

impl Task {
    /// The container whose endpoint id is `endpoint_id`.
    pub fn container_by_endpoint(&self, endpoint_id: &str) -> Option<&Container> {
        self.containers
            .iter()
            .find(|container| container.endpoint_id == endpoint_id)
    }

    /// The container named `name` in the task definition (the pause container is none of them).
    pub fn container_named(&self, name: &str) -> Option<&Container> {
        self.containers
            .iter()
            .find(|container| container.kind == ContainerKind::Normal && container.name == name)
    }

    /// The `Cluster` field: the short name on EC2, the ARN on Fargate (as each agent reports it).
    pub fn cluster_field(&self) -> &str {
        match self.launch_type {
            LaunchType::Ec2 => &self.cluster,
            LaunchType::Fargate => &self.cluster_arn,
        }
    }
}
