//! Every request and response body of the control API, as the handlers read and write them and
//! as `imds ctl` sends and reads them. Field names are EC2's (`InstanceId`, `HttpTokens`, ...);
//! the descriptions an instance or a role is registered with keep the config file's keys
//! (`InstanceSpec`, `RoleSpec`).
//!
//! `docs/admin-api.openapi.json` is generated from these types (their `ToSchema` derives, doc
//! comments included) and the handlers' `#[utoipa::path]` attributes; see `admin_api::openapi`.
//!
//! # Layout
//! - Errors: `ErrorBody`, `ErrorCode`.
//! - Instances: `Instance`, `InstanceList`, `InstancePatch`, `HostQuery`.
//! - Metadata options: `InstanceMetadataOptions`, `OptionsState`, `ModifyInstanceMetadataOptions`,
//!   `InstanceMetadataOptionsResult`.
//! - Events: `PostEvent`, `EventType`, `Delay`, `SpotAction`, `MaintenanceCode`, `EventPosted`,
//!   `EventList`, `Event`, `EventStatus`, `EventDetails` and its variants, `EventEnded`.
//! - Roles: `Role`, `RoleList`, `RoleCredentials`.
//! - Faults: `InjectFault`, `FaultKind`, `GuestMethod`, `Fault`, `FaultState`, `FaultList`,
//!   `FaultsCleared`.
//! - ECS tasks: `EcsTask`, `EcsTaskContainer`, `EcsTaskRole`, `EcsTaskList`, `TaskOrigin`.
//! - Scenarios: `Scenario`, `ScenarioStep`, `ScenarioAction`, `ActionSubject`,
//!   `PodIdentityAssociationTarget`, `UpdatePodIdentityAssociationStep`, `ScenarioRun`,
//!   `ScenarioState`, `StepProgress`, `StepState`, `ScenarioList`.

use std::fmt;

use imds_core::{
    options::{HopLimit, HttpTokens, Toggle},
    spec::InstanceSpec,
    task::spec::TaskSpec,
};
use imds_credentials::spec::RoleSpec;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An error answer: what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What kind of error, as EC2 names it where one fits.
    pub code: ErrorCode,
    /// What was wrong, naming the field or value, and what to do next.
    pub message: String,
}

/// The codes of error answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub enum ErrorCode {
    /// 401: no bearer token, or the wrong one.
    AuthFailure,
    /// 403: the token is read-only and the call needs an admin token.
    UnauthorizedOperation,
    /// 400: the body is not JSON (or not sent as JSON), or a path segment does not parse.
    InvalidRequest,
    /// 400: a field, value or query parameter is not one the operation takes; the message
    /// names it.
    InvalidParameterValue,
    /// 404: no such route.
    NotFound,
    /// 404: no such instance.
    #[serde(rename = "InvalidInstanceID.NotFound")]
    InvalidInstanceIdNotFound,
    /// 404: the instance has no such event.
    #[serde(rename = "InvalidEventID.NotFound")]
    InvalidEventIdNotFound,
    /// 404: the instance has no such fault.
    #[serde(rename = "InvalidFaultID.NotFound")]
    InvalidFaultIdNotFound,
    /// 404: no such scenario.
    #[serde(rename = "InvalidScenarioID.NotFound")]
    InvalidScenarioIdNotFound,
    /// 404: no such ECS task.
    #[serde(rename = "InvalidTaskID.NotFound")]
    InvalidTaskIdNotFound,
    /// 404: no such EKS Pod Identity association (EKS's code for it).
    ResourceNotFoundException,
    /// 409: the service account has an association already (EKS's code for it).
    ResourceInUseException,
    /// 404: the role has no provider of its own.
    NoSuchEntity,
    /// 409: the change conflicts with what is registered (an id or address taken, a change
    /// made meanwhile).
    Conflict,
    /// 409: the operation does not apply now: the event has already ended, or the server has
    /// no key to mint service-account tokens with.
    IncorrectState,
    /// 503: the store cannot be reached; nothing was changed, try again.
    StoreUnavailable,
    /// 503: the role has no valid credentials at the moment.
    CredentialsUnavailable,
    /// 500: the store or the server failed; the server log says how.
    InternalError,
    /// 400: an EC2 Instance Connect argument is not valid (the OS user, the key, the zone), as
    /// the Instance Connect API names it.
    InvalidArgsException,
    /// 404: EC2 Instance Connect found no such instance (in the zone given), as the Instance
    /// Connect API names it.
    #[serde(rename = "EC2InstanceNotFoundException")]
    Ec2InstanceNotFoundException,
}

impl ErrorCode {
    /// The code as it is written in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthFailure => "AuthFailure",
            ErrorCode::UnauthorizedOperation => "UnauthorizedOperation",
            ErrorCode::InvalidRequest => "InvalidRequest",
            ErrorCode::InvalidParameterValue => "InvalidParameterValue",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::InvalidInstanceIdNotFound => "InvalidInstanceID.NotFound",
            ErrorCode::InvalidEventIdNotFound => "InvalidEventID.NotFound",
            ErrorCode::InvalidFaultIdNotFound => "InvalidFaultID.NotFound",
            ErrorCode::InvalidScenarioIdNotFound => "InvalidScenarioID.NotFound",
            ErrorCode::InvalidTaskIdNotFound => "InvalidTaskID.NotFound",
            ErrorCode::ResourceNotFoundException => "ResourceNotFoundException",
            ErrorCode::ResourceInUseException => "ResourceInUseException",
            ErrorCode::NoSuchEntity => "NoSuchEntity",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::IncorrectState => "IncorrectState",
            ErrorCode::StoreUnavailable => "StoreUnavailable",
            ErrorCode::CredentialsUnavailable => "CredentialsUnavailable",
            ErrorCode::InternalError => "InternalError",
            ErrorCode::InvalidArgsException => "InvalidArgsException",
            ErrorCode::Ec2InstanceNotFoundException => "EC2InstanceNotFoundException",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance as the control API shows it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    /// The instance's id (`i-` and 17 hex digits unless the description says otherwise).
    pub instance_id: String,
    /// Fleet mode: the host serving the instance; absent in host mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// The source addresses the instance calls from.
    pub addresses: Vec<String>,
    /// `instance-type`.
    pub instance_type: String,
    /// `placement/region`.
    pub region: String,
    /// `placement/availability-zone`.
    pub availability_zone: String,
    /// The role of its instance profile; null when it has none.
    #[schema(required)]
    pub iam_role: Option<String>,
    /// Bumped by every change; a change made meanwhile makes a write with an older one fail.
    pub revision: i64,
    /// Its metadata options and whether the instance serves them yet.
    pub metadata_options: InstanceMetadataOptions,
    /// Requests served without a token (IMDSv1), as EC2's CloudWatch metric `MetadataNoToken`.
    pub metadata_no_token: u64,
    /// Requests refused for want of a token, as EC2's `MetadataNoTokenRejected`.
    pub metadata_no_token_rejected: u64,
    /// The description as given, in the config file's keys (`[instance]`).
    pub description: InstanceSpec,
}

/// `GET /v1/instances`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceList {
    /// Every instance this host serves.
    pub instances: Vec<Instance>,
}

/// A JSON merge patch (RFC 7396) of an instance description: the keys given replace the
/// instance's, `null` removes one, objects merge key by key and arrays are replaced whole. It
/// stays JSON because a merge patch is defined on JSON (a `null` and an absent key differ).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = InstanceSpec)]
pub struct InstancePatch(pub serde_json::Value);

/// A JSON merge patch (RFC 7396) of a task's description: its keys are those of a `[[tasks]]`
/// entry, `null` removes one, objects merge key by key and arrays (`containers`) are replaced
/// whole.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = TaskSpec)]
pub struct TaskPatch(pub serde_json::Value);

/// `?host-id=HOST` (fleet mode): the host that is to serve the instance, if not the one called.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HostQuery {
    /// Fleet mode: the host to serve the instance (register it there, or move it there). 400 on
    /// a server without `--host-id`.
    #[serde(rename = "host-id", default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 255, pattern = r"^\S+$")]
    pub host_id: Option<String>,
}

/// `?delivery=1.0|2.0`: which of a role's sets the role-credentials route answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `2.0` (the default): the IMDSv2 set, which callers with a token get; `1.0`: the IMDSv1
    /// set, which tokenless callers get while the instance's tokens are optional (404 while they
    /// are required). As CloudTrail's `ec2RoleDelivery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^(1\.0|2\.0)$")]
    pub delivery: Option<String>,
}

/// Whether an instance serves its metadata options yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptionsState {
    /// Changed, not yet served.
    Pending,
    /// Served.
    Applied,
}

impl OptionsState {
    /// The name as written in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            OptionsState::Pending => "pending",
            OptionsState::Applied => "applied",
        }
    }
}

/// An instance's metadata options, as EC2's `InstanceMetadataOptionsResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceMetadataOptions {
    /// `pending` until the instance serves these options, then `applied`.
    pub state: OptionsState,
    /// `required`: requests without a session token get 401.
    pub http_tokens: HttpTokens,
    /// The IP TTL of token answers.
    pub http_put_response_hop_limit: HopLimit,
    /// `disabled`: every request gets 403.
    pub http_endpoint: Toggle,
    /// `enabled`: the IPv6 endpoint answers.
    pub http_protocol_ipv6: Toggle,
    /// `enabled`: `meta-data/tags/instance/` is served.
    pub instance_metadata_tags: Toggle,
}

/// `ModifyInstanceMetadataOptions`: the options given change, the others keep their values; at
/// least one must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
#[schema(min_properties = 1)]
pub struct ModifyInstanceMetadataOptions {
    /// `optional` or `required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_tokens: Option<HttpTokens>,
    /// 1 to 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_put_response_hop_limit: Option<HopLimit>,
    /// `enabled` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_endpoint: Option<Toggle>,
    /// `enabled` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_protocol_ipv6: Option<Toggle>,
    /// `enabled` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_metadata_tags: Option<Toggle>,
}

impl ModifyInstanceMetadataOptions {
    /// True when no option is given.
    pub fn is_empty(&self) -> bool {
        *self == ModifyInstanceMetadataOptions::default()
    }
}

/// An instance's metadata options with its id, as EC2's `ModifyInstanceMetadataOptions` answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceMetadataOptionsResult {
    /// The instance.
    pub instance_id: String,
    /// Its options now.
    pub instance_metadata_options: InstanceMetadataOptions,
}

/// The kinds of event the control API posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    /// `spot/instance-action` and `spot/termination-time`; its event id is `spot-interruption`.
    SpotInterruption,
    /// `events/recommendations/rebalance`; its event id is `rebalance-recommendation`.
    RebalanceRecommendation,
    /// An entry of `events/maintenance/scheduled`; its event id is `instance-event-...`.
    ScheduledMaintenance,
    /// `autoscaling/target-lifecycle-state`; its event id is `target-lifecycle-state`.
    TargetLifecycleState,
}

impl EventType {
    /// The name as written in answers and requests.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SpotInterruption => "spot-interruption",
            EventType::RebalanceRecommendation => "rebalance-recommendation",
            EventType::ScheduledMaintenance => "scheduled-maintenance",
            EventType::TargetLifecycleState => "target-lifecycle-state",
        }
    }
}

/// A delay: seconds, or a number with a unit (`90s`, `2m`, `1h`, `1d`); at most 366 days.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Delay {
    /// Seconds.
    Seconds(u64),
    /// A number and a unit: `s`, `m`, `h` or `d`.
    Text(String),
}

impl Delay {
    /// The longest delay, in seconds: 366 days.
    pub const MAX_SECONDS: u64 = 366 * 86_400;

    /// The delay in seconds; an error says what is wrong with it.
    pub fn to_seconds(&self) -> Result<u64, String> {
        let bad = |text: &str| {
            format!(
                "{text:?} is not a delay like 90s, 2m or 1h (seconds, or a number and s, m, h or d)"
            )
        };
        let seconds = match self {
            Delay::Seconds(seconds) => *seconds,
            Delay::Text(text) => {
                let (digits, unit) = text.split_at(
                    text.find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(text.len()),
                );
                let amount: u64 = digits.parse().map_err(|_| bad(text))?;
                let scale = match unit {
                    "" | "s" => 1,
                    "m" => 60,
                    "h" => 3600,
                    "d" => 86_400,
                    _ => return Err(bad(text)),
                };
                amount.saturating_mul(scale)
            }
        };
        if seconds > Delay::MAX_SECONDS {
            return Err("the delay must be from 0 to 366 days".to_owned());
        }
        Ok(seconds)
    }
}

/// Seconds from 0 to `Delay::MAX_SECONDS`, or digits and a unit.
impl utoipa::PartialSchema for Delay {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::Integer))
                    .minimum(Some(0))
                    .maximum(Some(Delay::MAX_SECONDS))
                    .description(Some("Seconds")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .pattern(Some("^[0-9]+[smhd]?$"))
                    .description(Some("A number and a unit: s, m, h or d (90s, 2m, 1h)")),
            )
            .description(Some(
                "A delay: seconds, or a number with a unit; at most 366 days",
            ))
            .into()
    }
}

impl ToSchema for Delay {}

/// What a Spot interruption does to the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpotAction {
    /// Hibernate.
    Hibernate,
    /// Stop.
    Stop,
    /// Terminate (EC2's default).
    Terminate,
}

impl SpotAction {
    /// Every action.
    pub const ALL: [SpotAction; 3] = [
        SpotAction::Hibernate,
        SpotAction::Stop,
        SpotAction::Terminate,
    ];

    /// The name as `spot/instance-action` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SpotAction::Hibernate => "hibernate",
            SpotAction::Stop => "stop",
            SpotAction::Terminate => "terminate",
        }
    }
}

/// The codes of EC2's scheduled events (`DescribeInstanceStatus`, `Events.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MaintenanceCode {
    /// The instance is rebooted.
    InstanceReboot,
    /// The host is rebooted.
    SystemReboot,
    /// The host is maintained (network or power).
    SystemMaintenance,
    /// The instance is retired (stopped or terminated for good).
    InstanceRetirement,
    /// The instance is stopped.
    InstanceStop,
}

impl MaintenanceCode {
    /// Every code.
    pub const ALL: [MaintenanceCode; 5] = [
        MaintenanceCode::InstanceReboot,
        MaintenanceCode::SystemReboot,
        MaintenanceCode::SystemMaintenance,
        MaintenanceCode::InstanceRetirement,
        MaintenanceCode::InstanceStop,
    ];

    /// The code as the instance's metadata writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceCode::InstanceReboot => "instance-reboot",
            MaintenanceCode::SystemReboot => "system-reboot",
            MaintenanceCode::SystemMaintenance => "system-maintenance",
            MaintenanceCode::InstanceRetirement => "instance-retirement",
            MaintenanceCode::InstanceStop => "instance-stop",
        }
    }

    /// True for events that end the instance, which have no end of window on EC2.
    pub fn ends_the_instance(self) -> bool {
        matches!(
            self,
            MaintenanceCode::InstanceStop | MaintenanceCode::InstanceRetirement
        )
    }
}

/// The name `text` is of one of `all`, whose names `name` gives; else an error listing them.
fn parse_name<T: Copy>(text: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|value| name(*value) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|value| name(*value)).collect();
            format!("{text:?} is not one of {}", names.join(", "))
        })
}

impl std::str::FromStr for SpotAction {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_name(text, &SpotAction::ALL, SpotAction::as_str)
    }
}

impl std::str::FromStr for MaintenanceCode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_name(text, &MaintenanceCode::ALL, MaintenanceCode::as_str)
    }
}

/// A request to post an event: now, after a delay (`In`) or at a time (`At`). Timestamps are
/// ISO 8601 in UTC, `2026-11-24T12:00:00Z`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PostEvent {
    /// The kind of event.
    pub r#type: EventType,
    /// When it is posted: at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// When it is posted: this long from now. Not with `At`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#in: Option<Delay>,
    /// Spot: what happens (default `terminate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<SpotAction>,
    /// Spot: when it happens (default: two minutes after the notice, as EC2 warns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Maintenance: the event code; required for `scheduled-maintenance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<MaintenanceCode>,
    /// Maintenance: what is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Maintenance: the start of its window (default: a week after posting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Maintenance: the end of its window (default: two hours after `NotBefore`, none for
    /// events that end the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Auto Scaling: the target lifecycle state (`InService`, `Warmed:Stopped`, ...); required
    /// for `target-lifecycle-state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl PostEvent {
    /// A request for an event of `kind` posted now, with no other field.
    pub fn new(kind: EventType) -> PostEvent {
        PostEvent {
            r#type: kind,
            at: None,
            r#in: None,
            action: None,
            time: None,
            code: None,
            description: None,
            not_before: None,
            not_after: None,
            state: None,
        }
    }
}

/// A posted event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EventPosted {
    /// The instance.
    pub instance_id: String,
    /// The event's id, for cancelling or completing it.
    pub event_id: String,
    /// When the instance shows it.
    pub posted_time: String,
}

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Posted for a later time.
    Pending,
    /// Shown by the instance.
    Active,
    /// A maintenance event that was completed (in `history`).
    Completed,
    /// A maintenance event that was cancelled (in `history`).
    Canceled,
}

impl EventStatus {
    /// The name as written in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Active => "active",
            EventStatus::Completed => "completed",
            EventStatus::Canceled => "canceled",
        }
    }
}

/// One event of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    /// Its id.
    pub event_id: String,
    /// Its kind.
    pub r#type: EventType,
    /// `pending` until posted, then `active`; maintenance events end `completed` or `canceled`.
    pub status: EventStatus,
    /// When the instance shows it.
    pub posted_time: String,
    /// What the instance shows, by kind.
    pub details: EventDetails,
}

/// What an event shows, by its kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventDetails {
    /// `spot-interruption`.
    Spot(SpotDetails),
    /// `rebalance-recommendation`.
    Rebalance(RebalanceDetails),
    /// `target-lifecycle-state`.
    Lifecycle(LifecycleDetails),
    /// `scheduled-maintenance`.
    Maintenance(MaintenanceDetails),
}

/// A Spot interruption: `spot/instance-action`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SpotDetails {
    /// `hibernate`, `stop` or `terminate`.
    pub action: String,
    /// When it happens.
    pub time: String,
}

/// A rebalance recommendation: `events/recommendations/rebalance`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RebalanceDetails {
    /// When it was given.
    pub notice_time: String,
}

/// An Auto Scaling target lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleDetails {
    /// The state.
    pub state: String,
}

/// A maintenance event, as `events/maintenance/scheduled` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MaintenanceDetails {
    /// The event code.
    pub code: String,
    /// What is done; null when not given.
    #[schema(required)]
    pub description: Option<String>,
    /// The start of its window.
    pub not_before: String,
    /// The end of its window; null for events that end the instance.
    #[schema(required)]
    pub not_after: Option<String>,
}

/// `GET /v1/instances/{instance_id}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EventList {
    /// The instance.
    pub instance_id: String,
    /// Its events, posted or pending, and its ended maintenance events.
    pub events: Vec<Event>,
}

/// A cancelled or completed event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EventEnded {
    /// The instance.
    pub instance_id: String,
    /// The event.
    pub event_id: String,
    /// `canceled` or `completed`.
    pub status: EventStatus,
}

/// A role with a provider of its own, never with its secret key or token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Role {
    /// The role's name.
    pub role_name: String,
    /// `generated`, `static` or `sts`.
    #[schema(value_type = imds_credentials::spec::ProviderName)]
    pub provider: String,
    /// Bumped by every change.
    pub revision: i64,
    /// When it was last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The served instances whose role it is.
    pub instance_ids: Vec<String>,
    /// The description as given, in the config file's keys (`[[roles]]`), without secrets.
    pub description: RoleSpec,
}

/// `GET /v1/roles`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RoleList {
    /// Every role with a provider of its own; the others use the default provider.
    pub roles: Vec<Role>,
}

/// A role's current credentials as the instance gets them, in the container credentials
/// endpoint's layout (no `Code`, `Type` or `LastUpdated`). Its `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RoleCredentials {
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `SecretAccessKey`.
    pub secret_access_key: String,
    /// The session token.
    pub token: String,
    /// When they expire.
    #[schema(format = DateTime)]
    pub expiration: String,
}

impl fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// The kinds of fault an instance's metadata service can be made to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The answer is sent late: `LatencyMs`, or a uniform pick from `LatencyMs` to
    /// `LatencyMaxMs`. Other faults matching the same request still apply after the delay.
    Latency,
    /// No answer at all: the connection stays open, and is closed without an answer when the
    /// fault ends or after the server's hold limit of two minutes.
    NoAnswer,
    /// The answer is `Status` with the body EC2 sends with it.
    Status,
    /// The connection is reset (TCP RST) instead of answered.
    Reset,
    /// The connection is closed (TCP FIN) without an answer.
    Close,
    /// Token answers leave out `X-aws-ec2-metadata-token-ttl-seconds`.
    OmitTokenTtl,
    /// Credentials documents say `Code` (default `AssumeRoleUnauthorizedAccess`) with
    /// `Message` instead of credentials.
    CredentialsCode,
    /// Credentials documents say they expire `ExpiresIn` seconds after the fault was injected
    /// (negative: before it); once that time has passed they are served expired.
    CredentialsExpiry,
    /// The role is shown as `RoleName`: the listing names it, it answers the role's
    /// credentials, and the role's own name answers 404.
    RoleRenamed,
    /// Requests beyond `RequestsPerSecond` (a burst of as many) are answered 429.
    Throttle,
}

impl FaultKind {
    /// Every kind, in the order metrics list them.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Latency,
        FaultKind::NoAnswer,
        FaultKind::Status,
        FaultKind::Reset,
        FaultKind::Close,
        FaultKind::OmitTokenTtl,
        FaultKind::CredentialsCode,
        FaultKind::CredentialsExpiry,
        FaultKind::RoleRenamed,
        FaultKind::Throttle,
    ];

    /// The name as written in requests, answers and the `kind` label of metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Latency => "latency",
            FaultKind::NoAnswer => "no-answer",
            FaultKind::Status => "status",
            FaultKind::Reset => "reset",
            FaultKind::Close => "close",
            FaultKind::OmitTokenTtl => "omit-token-ttl",
            FaultKind::CredentialsCode => "credentials-code",
            FaultKind::CredentialsExpiry => "credentials-expiry",
            FaultKind::RoleRenamed => "role-renamed",
            FaultKind::Throttle => "throttle",
        }
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_name(text, &FaultKind::ALL, FaultKind::as_str)
    }
}

/// The guest request methods a fault can be narrowed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum GuestMethod {
    /// Metadata reads.
    Get,
    /// Metadata reads without a body.
    Head,
    /// Token requests.
    Put,
    /// `OPTIONS`.
    Options,
}

impl GuestMethod {
    /// Every method.
    pub const ALL: [GuestMethod; 4] = [
        GuestMethod::Get,
        GuestMethod::Head,
        GuestMethod::Put,
        GuestMethod::Options,
    ];

    /// The method as HTTP writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestMethod::Get => "GET",
            GuestMethod::Head => "HEAD",
            GuestMethod::Put => "PUT",
            GuestMethod::Options => "OPTIONS",
        }
    }
}

impl std::str::FromStr for GuestMethod {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_name(
            &text.to_ascii_uppercase(),
            &GuestMethod::ALL,
            GuestMethod::as_str,
        )
    }
}

/// EC2 Instance Connect's `SendSSHPublicKey`, with its field names: a public key the instance
/// serves for 60 seconds at `managed-ssh-keys/active-keys/USER` (the instance is the path's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSshPublicKey {
    /// The OS user the key may log in as: letters, digits and `@._-`, starting with a letter,
    /// `_` or digits (not digits only), `$` allowed last, as the Instance Connect API takes.
    #[serde(rename = "InstanceOSUser")]
    #[schema(min_length = 1, max_length = 32)]
    pub instance_os_user: String,
    /// The public key, one OpenSSH line (`ssh-ed25519 ...`, or `ssh-rsa ...` of 2048 bits or
    /// more).
    #[serde(rename = "SSHPublicKey")]
    #[schema(min_length = 80, max_length = 4096)]
    pub ssh_public_key: String,
    /// The instance's Availability Zone; another zone's name answers
    /// `EC2InstanceNotFoundException`.
    #[serde(
        rename = "AvailabilityZone",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(
        min_length = 6,
        max_length = 32,
        pattern = "^([A-Za-z0-9_]+-){2,3}[0-9][A-Za-z0-9_]+$"
    )]
    pub availability_zone: Option<String>,
}

/// The answer to `SendSSHPublicKey`, as the Instance Connect API writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct SendSshPublicKeyResult {
    /// The request's id, also the key block's `#Request=` line.
    #[serde(rename = "RequestId")]
    pub request_id: String,
    /// Always true: a failure is an error answer.
    #[serde(rename = "Success")]
    pub success: bool,
}

/// A fault to inject into one instance's metadata service: its kind and what that kind needs,
/// which requests it applies to (`Path`, `Method`; every request when neither is given), and
/// for how long (`Duration`, `Count`; until removed when neither is given, the first reached
/// when both are).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct InjectFault {
    /// A name for the fault, unique within the instance (default: `fault-` and a number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub fault_id: Option<String>,
    /// What the fault does.
    pub kind: FaultKind,
    /// A glob over the request path below the API version (`meta-data/iam/security-credentials/*`,
    /// `api/token`, `meta-data/**`): `*` and `?` stay within a segment, `**` spans segments;
    /// leading and trailing slashes are ignored, `""` is the version root. Default: every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024)]
    pub path: Option<String>,
    /// Only requests with this method. Default: every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<GuestMethod>,
    /// The fault ends this long after it is injected (seconds, or `90s`, `2m`, `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Delay>,
    /// The fault ends after this many matching requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub count: Option<u64>,
    /// `latency`: the delay in milliseconds (the least delay with `LatencyMaxMs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 600_000)]
    pub latency_ms: Option<u64>,
    /// `latency`: the greatest delay in milliseconds; each request waits a uniform pick from
    /// `LatencyMs` to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 600_000)]
    pub latency_max_ms: Option<u64>,
    /// `status`: 400, 401, 403, 404, 405, 429, 500, 502, 503 or 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 400, maximum = 599)]
    pub status: Option<u16>,
    /// `credentials-code`: the document's `Code` (default `AssumeRoleUnauthorizedAccess`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._-]+$")]
    pub code: Option<String>,
    /// `credentials-code`: the document's `Message` (default: EC2's text for the role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024)]
    pub message: Option<String>,
    /// `credentials-expiry`: seconds from the injection to the `Expiration` served; negative
    /// or zero: already expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -31_622_400, maximum = 31_622_400)]
    pub expires_in: Option<i64>,
    /// `role-renamed`: the name the role is shown as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64, pattern = r"^[\w+=,.@-]+$")]
    pub role_name: Option<String>,
    /// `throttle`: matching requests allowed per second (and at once); the others get 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub requests_per_second: Option<u32>,
}

impl InjectFault {
    /// A fault of `kind` on every request, until removed, with no other field.
    pub fn new(kind: FaultKind) -> InjectFault {
        InjectFault {
            fault_id: None,
            kind,
            path: None,
            method: None,
            duration: None,
            count: None,
            latency_ms: None,
            latency_max_ms: None,
            status: None,
            code: None,
            message: None,
            expires_in: None,
            role_name: None,
            requests_per_second: None,
        }
    }
}

/// Whether a fault still applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FaultState {
    /// It applies to matching requests.
    Active,
    /// Its duration or count is used up, or it was removed.
    Ended,
}

impl FaultState {
    /// The name as written in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultState::Active => "active",
            FaultState::Ended => "ended",
        }
    }
}

/// An injected fault and what it did so far.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Fault {
    /// The instance.
    pub instance_id: String,
    /// Its id, for removing it.
    pub fault_id: String,
    /// `active` or `ended`.
    pub state: FaultState,
    /// When it was injected.
    #[schema(format = DateTime)]
    pub injected_at: String,
    /// When its duration ends; null without one.
    #[schema(required, format = DateTime)]
    pub ends_at: Option<String>,
    /// Requests it matched so far.
    pub matched: u64,
    /// Answers it changed so far (a `throttle` fault changes only those over its rate).
    pub injected: u64,
    /// The fault as injected, its id filled in.
    pub description: InjectFault,
}

/// `GET /v1/instances/{instance_id}/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct FaultList {
    /// The instance.
    pub instance_id: String,
    /// Its faults, active ones first, each in the order injected; the latest ended ones are
    /// kept until cleared.
    pub faults: Vec<Fault>,
}

/// `DELETE /v1/instances/{instance_id}/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct FaultsCleared {
    /// The instance.
    pub instance_id: String,
    /// How many faults were still active.
    pub removed: u64,
}

/// A scenario: a timeline of control-API calls, each at an offset from the scenario's start.
/// The same document is a TOML file (`imds serve --scenario`, `imds ctl run-scenario`) and the
/// JSON body of `POST /v1/scenarios`. Its own keys are kebab-case like the config file's; each
/// step's payload is the body of the control-API call it makes, in that call's keys.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// What the scenario stages (1 to 128 characters).
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// The instance its steps act on unless a step names another (default: the server's
    /// default instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The steps, in time order (1 to 1000).
    #[schema(min_items = 1, max_items = 1000)]
    pub steps: Vec<ScenarioStep>,
}

/// One step of a scenario: when, on which instance, and exactly one action: a control-API call,
/// its payload the call's body.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScenarioStep {
    /// When the step runs, from the scenario's start (seconds, or `90s`, `2m`, `1h`); no
    /// earlier than the step before.
    pub at: Delay,
    /// `inject-fault` only: the fault ends at this offset (it is injected with the `Duration`
    /// from `at` to here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Delay>,
    /// The instance this step acts on, if not the scenario's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// `POST /v1/instances/{id}/events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_event: Option<PostEvent>,
    /// `POST /v1/instances/{id}/events/{event_id}/cancel`: the event's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_event: Option<String>,
    /// `POST /v1/instances/{id}/events/{event_id}/complete`: the event's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_event: Option<String>,
    /// `POST /v1/instances/{id}/faults`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_fault: Option<InjectFault>,
    /// `DELETE /v1/instances/{id}/faults/{fault_id}`: the fault's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_fault: Option<String>,
    /// `DELETE /v1/instances/{id}/faults`: `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_faults: Option<bool>,
    /// `PUT /v1/instances/{id}/metadata-options`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modify_metadata_options: Option<ModifyInstanceMetadataOptions>,
    /// `PATCH /v1/instances/{id}`: a merge patch of the instance's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_instance: Option<InstancePatch>,
    /// `PUT /v1/roles/{name}`: a `[[roles]]` entry with its `name`. Putting a role's provider
    /// again rotates its credentials now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_role: Option<RoleSpec>,
    /// `DELETE /v1/roles/{name}`: the role's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_role: Option<String>,
    /// `POST /v1/instances/{id}/ssh-public-keys` (EC2 Instance Connect's `SendSSHPublicKey`):
    /// the key is served to the instance for 60 seconds from the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_ssh_public_key: Option<SendSshPublicKey>,
    /// `POST /v1/tasks`: a `[[tasks]]` entry; give its `task-id` for later steps to name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_task: Option<TaskSpec>,
    /// `PATCH /v1/tasks/{task_id}`: a merge patch of the task's description with its
    /// `task-id`, which names the task (a task's id does not change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_task: Option<TaskPatch>,
    /// `DELETE /v1/tasks/{task_id}`: the task's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_task: Option<String>,
    /// `POST /v1/pod-identity/associations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_pod_identity_association: Option<CreatePodIdentityAssociation>,
    /// `PATCH /v1/pod-identity/associations/{association_id}`: the association and its new
    /// `Role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_pod_identity_association: Option<UpdatePodIdentityAssociationStep>,
    /// `DELETE /v1/pod-identity/associations/{association_id}`: the association.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_pod_identity_association: Option<PodIdentityAssociationTarget>,
}

/// The Pod Identity association a scenario step acts on: its `AssociationId`, or its
/// `Namespace` and `ServiceAccount` (a service account has one association at most), which a
/// scenario knows before the association is made. Found when the step runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PodIdentityAssociationTarget {
    /// The association's id (`a-` and 17 lowercase letters and digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 19, max_length = 19, pattern = "^a-[a-z0-9]{17}$")]
    pub association_id: Option<String>,
    /// With `ServiceAccount`: the association of this namespace's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub namespace: Option<String>,
    /// With `Namespace`: the association of this service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 253)]
    pub service_account: Option<String>,
}

/// A scenario step's `update-pod-identity-association`: the association (as
/// `PodIdentityAssociationTarget`) and the body of `UpdatePodIdentityAssociation`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdatePodIdentityAssociationStep {
    /// The association's id (`a-` and 17 lowercase letters and digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 19, max_length = 19, pattern = "^a-[a-z0-9]{17}$")]
    pub association_id: Option<String>,
    /// With `ServiceAccount`: the association of this namespace's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub namespace: Option<String>,
    /// With `Namespace`: the association of this service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 253)]
    pub service_account: Option<String>,
    /// The role (an IAM role name) the service account's pods get from the step on.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[\w+=,.@-]+$")]
    pub role: String,
}

impl UpdatePodIdentityAssociationStep {
    /// The association it changes.
    pub fn target(&self) -> PodIdentityAssociationTarget {
        PodIdentityAssociationTarget {
            association_id: self.association_id.clone(),
            namespace: self.namespace.clone(),
            service_account: self.service_account.clone(),
        }
    }
}

/// What a step's action acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionSubject {
    /// The step's instance (or the scenario's, or the server's default instance).
    Instance,
    /// A role, named in the payload.
    Role,
    /// An ECS task, named in the payload (or made by it).
    Task,
    /// A Pod Identity association, named in the payload (or made by it).
    PodIdentityAssociation,
}

impl ActionSubject {
    /// The subject with its article, as messages say it.
    pub fn noun(self) -> &'static str {
        match self {
            ActionSubject::Instance => "an instance",
            ActionSubject::Role => "a role",
            ActionSubject::Task => "a task",
            ActionSubject::PodIdentityAssociation => "a Pod Identity association",
        }
    }
}

/// A step's action, borrowed from the step.
#[derive(Debug, Clone, Copy)]
pub enum ScenarioAction<'a> {
    /// `post-event`.
    PostEvent(&'a PostEvent),
    /// `cancel-event`.
    CancelEvent(&'a str),
    /// `complete-event`.
    CompleteEvent(&'a str),
    /// `inject-fault`.
    InjectFault(&'a InjectFault),
    /// `remove-fault`.
    RemoveFault(&'a str),
    /// `clear-faults`.
    ClearFaults(bool),
    /// `modify-metadata-options`.
    ModifyMetadataOptions(&'a ModifyInstanceMetadataOptions),
    /// `patch-instance`.
    PatchInstance(&'a InstancePatch),
    /// `put-role`.
    PutRole(&'a RoleSpec),
    /// `delete-role`.
    DeleteRole(&'a str),
    /// `send-ssh-public-key`.
    SendSshPublicKey(&'a SendSshPublicKey),
    /// `register-task`.
    RegisterTask(&'a TaskSpec),
    /// `update-task`.
    UpdateTask(&'a TaskPatch),
    /// `deregister-task`.
    DeregisterTask(&'a str),
    /// `create-pod-identity-association`.
    CreatePodIdentityAssociation(&'a CreatePodIdentityAssociation),
    /// `update-pod-identity-association`.
    UpdatePodIdentityAssociation(&'a UpdatePodIdentityAssociationStep),
    /// `delete-pod-identity-association`.
    DeletePodIdentityAssociation(&'a PodIdentityAssociationTarget),
}

impl ScenarioAction<'_> {
    /// The action's key in a step.
    pub fn key(&self) -> &'static str {
        match self {
            ScenarioAction::PostEvent(_) => "post-event",
            ScenarioAction::CancelEvent(_) => "cancel-event",
            ScenarioAction::CompleteEvent(_) => "complete-event",
            ScenarioAction::InjectFault(_) => "inject-fault",
            ScenarioAction::RemoveFault(_) => "remove-fault",
            ScenarioAction::ClearFaults(_) => "clear-faults",
            ScenarioAction::ModifyMetadataOptions(_) => "modify-metadata-options",
            ScenarioAction::PatchInstance(_) => "patch-instance",
            ScenarioAction::PutRole(_) => "put-role",
            ScenarioAction::DeleteRole(_) => "delete-role",
            ScenarioAction::SendSshPublicKey(_) => "send-ssh-public-key",
            ScenarioAction::RegisterTask(_) => "register-task",
            ScenarioAction::UpdateTask(_) => "update-task",
            ScenarioAction::DeregisterTask(_) => "deregister-task",
            ScenarioAction::CreatePodIdentityAssociation(_) => "create-pod-identity-association",
            ScenarioAction::UpdatePodIdentityAssociation(_) => "update-pod-identity-association",
            ScenarioAction::DeletePodIdentityAssociation(_) => "delete-pod-identity-association",
        }
    }

    /// What the action acts on: only an instance's actions take a step's `instance-id`.
    pub fn subject(&self) -> ActionSubject {
        match self {
            ScenarioAction::PutRole(_) | ScenarioAction::DeleteRole(_) => ActionSubject::Role,
            ScenarioAction::RegisterTask(_)
            | ScenarioAction::UpdateTask(_)
            | ScenarioAction::DeregisterTask(_) => ActionSubject::Task,
            ScenarioAction::CreatePodIdentityAssociation(_)
            | ScenarioAction::UpdatePodIdentityAssociation(_)
            | ScenarioAction::DeletePodIdentityAssociation(_) => {
                ActionSubject::PodIdentityAssociation
            }
            _ => ActionSubject::Instance,
        }
    }
}

impl ScenarioStep {
    /// Every action key a step may have.
    pub const ACTIONS: [&'static str; 17] = [
        "post-event",
        "cancel-event",
        "complete-event",
        "inject-fault",
        "remove-fault",
        "clear-faults",
        "modify-metadata-options",
        "patch-instance",
        "put-role",
        "delete-role",
        "send-ssh-public-key",
        "register-task",
        "update-task",
        "deregister-task",
        "create-pod-identity-association",
        "update-pod-identity-association",
        "delete-pod-identity-association",
    ];

    /// The step's actions, as given (a valid step has exactly one).
    pub fn actions(&self) -> Vec<ScenarioAction<'_>> {
        let mut actions = Vec::new();
        actions.extend(self.post_event.as_ref().map(ScenarioAction::PostEvent));
        actions.extend(
            self.cancel_event
                .as_deref()
                .map(ScenarioAction::CancelEvent),
        );
        actions.extend(
            self.complete_event
                .as_deref()
                .map(ScenarioAction::CompleteEvent),
        );
        actions.extend(self.inject_fault.as_ref().map(ScenarioAction::InjectFault));
        actions.extend(
            self.remove_fault
                .as_deref()
                .map(ScenarioAction::RemoveFault),
        );
        actions.extend(self.clear_faults.map(ScenarioAction::ClearFaults));
        actions.extend(
            self.modify_metadata_options
                .as_ref()
                .map(ScenarioAction::ModifyMetadataOptions),
        );
        actions.extend(
            self.patch_instance
                .as_ref()
                .map(ScenarioAction::PatchInstance),
        );
        actions.extend(self.put_role.as_ref().map(ScenarioAction::PutRole));
        actions.extend(self.delete_role.as_deref().map(ScenarioAction::DeleteRole));
        actions.extend(
            self.send_ssh_public_key
                .as_ref()
                .map(ScenarioAction::SendSshPublicKey),
        );
        actions.extend(
            self.register_task
                .as_ref()
                .map(ScenarioAction::RegisterTask),
        );
        actions.extend(self.update_task.as_ref().map(ScenarioAction::UpdateTask));
        actions.extend(
            self.deregister_task
                .as_deref()
                .map(ScenarioAction::DeregisterTask),
        );
        actions.extend(
            self.create_pod_identity_association
                .as_ref()
                .map(ScenarioAction::CreatePodIdentityAssociation),
        );
        actions.extend(
            self.update_pod_identity_association
                .as_ref()
                .map(ScenarioAction::UpdatePodIdentityAssociation),
        );
        actions.extend(
            self.delete_pod_identity_association
                .as_ref()
                .map(ScenarioAction::DeletePodIdentityAssociation),
        );
        actions
    }
}

/// Where a scenario is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioState {
    /// Steps are still to run.
    Running,
    /// Every step ran and succeeded.
    Completed,
    /// Every step ran; at least one failed.
    Failed,
    /// Stopped before its last step; the steps not yet run were skipped.
    Stopped,
}

impl ScenarioState {
    /// The name as written in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioState::Running => "running",
            ScenarioState::Completed => "completed",
            ScenarioState::Failed => "failed",
            ScenarioState::Stopped => "stopped",
        }
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Its time has not come.
    Pending,
    /// Its call is under way.
    Running,
    /// Its call succeeded.
    Done,
    /// Its call was refused or failed; `Error` says how. Later steps still run.
    Failed,
    /// The scenario was stopped before it ran.
    Skipped,
}

impl StepState {
    /// The name as written in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
        }
    }
}

/// One step of a running or ended scenario.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StepProgress {
    /// Its place in the scenario, from 0.
    pub index: usize,
    /// Its offset from the scenario's start, in milliseconds.
    pub at_ms: u64,
    /// Its action's key (`inject-fault`, `post-event`, ...).
    pub action: String,
    /// The instance it acts on; null for the actions on a role, a task or a Pod Identity
    /// association.
    #[schema(required)]
    pub instance_id: Option<String>,
    /// Where it is.
    pub state: StepState,
    /// When its call ended, in milliseconds from the scenario's start; null before.
    #[schema(required)]
    pub elapsed_ms: Option<u64>,
    /// When its call ended; null before.
    #[schema(required, format = DateTime)]
    pub ended_at: Option<String>,
    /// `done`: the call's answer (a `Fault`, an `EventPosted`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub answer: Option<serde_json::Value>,
    /// `failed`: the call's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// The step as given (a fault's `until` made its `Duration`; no role secrets).
    pub step: ScenarioStep,
}

/// A scenario started on this server, and how far it got.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ScenarioRun {
    /// Its id (`scenario-` and a number), for describing or stopping it.
    pub scenario_id: String,
    /// Its name.
    pub name: String,
    /// Where it is.
    pub state: ScenarioState,
    /// When it started; the steps' offsets count from here.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// When it ended; null while running.
    #[schema(required, format = DateTime)]
    pub ended_at: Option<String>,
    /// Its steps, in order.
    pub steps: Vec<StepProgress>,
}

/// `GET /v1/scenarios`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ScenarioList {
    /// The scenarios started since the server started (the latest ended ones are kept), in the
    /// order started.
    pub scenarios: Vec<ScenarioRun>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_round_trip<T>(json: &str)
    where
        T: serde::de::DeserializeOwned + Serialize,
    {
        let value: T = serde_json::from_str(json).unwrap();
        let expect: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_value(value).unwrap(), expect);
    }

    #[test]
    fn bodies_round_trip() {
        check_round_trip::<ErrorBody>(r#"{"Code": "InvalidInstanceID.NotFound", "Message": "no"}"#);
        check_round_trip::<ModifyInstanceMetadataOptions>(
            r#"{"HttpTokens": "required", "HttpPutResponseHopLimit": 2}"#,
        );
        check_round_trip::<PostEvent>(r#"{"Type": "spot-interruption", "In": 120}"#);
        check_round_trip::<PostEvent>(r#"{"Type": "spot-interruption", "In": "2m"}"#);
        check_round_trip::<Event>(
            r#"{"EventId": "instance-event-1", "Type": "scheduled-maintenance", "Status": "active",
                "PostedTime": "2026-11-24T12:00:00Z",
                "Details": {"Code": "system-reboot", "Description": null,
                            "NotBefore": "2026-11-25T12:00:00Z", "NotAfter": null}}"#,
        );
        check_round_trip::<Event>(
            r#"{"EventId": "target-lifecycle-state", "Type": "target-lifecycle-state",
                "Status": "pending", "PostedTime": "2026-11-24T12:00:00Z",
                "Details": {"State": "InService"}}"#,
        );
    }

    /// Found by the control_bodies fuzz target: a 123-digit number, the whole of a merge patch,
    /// read back one unit in the last place off until serde_json's `float_roundtrip` was on.
    #[test]
    fn a_number_in_a_patch_reads_back_as_sent() {
        let number = format!("5555550555{}5555", "7".repeat(109));
        for sent in [number.clone(), format!(r#"{{"tags": {{"n": {number}}}}}"#)] {
            let patch: InstancePatch = serde_json::from_str(&sent).unwrap();
            let written = serde_json::to_string(&patch).unwrap();
            let back: InstancePatch = serde_json::from_str(&written).unwrap();
            assert_eq!(back, patch, "{sent} was written as {written}");
        }
    }

    #[test]
    fn hop_limits_and_option_values_are_checked_when_read() {
        for body in [
            r#"{"HttpPutResponseHopLimit": 65}"#,
            r#"{"HttpPutResponseHopLimit": 0}"#,
            r#"{"HttpTokens": "always"}"#,
            r#"{"HttpEndpoint": "on"}"#,
            r#"{"Colour": "red"}"#,
        ] {
            assert!(
                serde_json::from_str::<ModifyInstanceMetadataOptions>(body).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn names_parse_as_they_serialise() {
        for action in SpotAction::ALL {
            assert_eq!(action.as_str().parse::<SpotAction>(), Ok(action));
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::json!(action.as_str())
            );
        }
        for code in MaintenanceCode::ALL {
            assert_eq!(code.as_str().parse::<MaintenanceCode>(), Ok(code));
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
        assert!("reboot".parse::<MaintenanceCode>().is_err());
    }

    #[test]
    fn credentials_debug_shows_no_secret() {
        let credentials = RoleCredentials {
            access_key_id: "ASIAEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI".to_owned(),
            token: "IQoJb3JpZ2luX2Vj".to_owned(),
            expiration: "2026-11-24T12:00:00Z".to_owned(),
        };
        let debug = format!("{credentials:?}");
        assert!(debug.contains("ASIAEXAMPLE"), "{debug}");
        assert!(
            !debug.contains("wJalr") && !debug.contains("IQoJ"),
            "{debug}"
        );
    }
}

/// Where an ECS task was registered: `config` (the config file's `[[tasks]]`, its whole list at
/// each start) or `api` (`POST /v1/tasks`, kept until deregistered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskOrigin {
    /// The config file's `[[tasks]]`.
    Config,
    /// The control API.
    Api,
}

/// One ECS task as the control API shows it: what the ECS agent gives its containers, and the
/// description as given.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EcsTask {
    /// The task id (32 hex digits unless the description gives one).
    pub task_id: String,
    /// `TaskARN`.
    #[serde(rename = "TaskARN")]
    pub task_arn: String,
    /// The cluster's short name.
    pub cluster: String,
    /// `Family`.
    pub family: String,
    /// `Revision`.
    pub revision: u32,
    /// `EC2` or `FARGATE`.
    pub launch_type: String,
    /// `bridge`, `host` or `awsvpc`.
    pub network_mode: String,
    /// Fleet mode: the host serving the task; absent in host mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// The source addresses of its containers.
    pub addresses: Vec<String>,
    /// Where it was registered.
    pub origin: TaskOrigin,
    /// The task role; null when the task has none.
    #[schema(required)]
    pub role: Option<EcsTaskRole>,
    /// Its containers (the pause container of EC2 `awsvpc` tasks included, last).
    pub containers: Vec<EcsTaskContainer>,
    /// The description as given, in the config file's `[[tasks]]` keys.
    pub description: TaskSpec,
}

/// A task's role, and the credentials path its containers are given.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EcsTaskRole {
    /// The imds role whose provider makes the credentials.
    pub role_name: String,
    /// `RoleArn` of the credentials answer.
    pub role_arn: String,
    /// The credentials id.
    pub credentials_id: String,
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`: `/v2/credentials/ID` on the container listener.
    pub credentials_relative_uri: String,
}

/// One container of a task.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EcsTaskContainer {
    /// Its name in the task definition.
    pub name: String,
    /// The id of `/v4/{id}`.
    pub endpoint_id: String,
    /// `DockerId`.
    pub docker_id: String,
    /// `ContainerARN`; null for the pause container.
    #[schema(required)]
    #[serde(rename = "ContainerARN")]
    pub container_arn: Option<String>,
    /// `ECS_CONTAINER_METADATA_URI_V4`'s path on the container listener: `/v4/ID`.
    pub metadata_uri_v4_path: String,
}

/// `GET /v1/tasks`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EcsTaskList {
    /// Every task this host serves.
    pub tasks: Vec<EcsTask>,
}

/// A request for an EKS Pod Identity service-account token, as the Kubernetes API server
/// projects one into a pod (`TokenRequest`): signed with the key the server's Pod Identity
/// endpoint checks tokens with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MintServiceAccountToken {
    /// The pod's namespace (an RFC 1123 label).
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub namespace: String,
    /// The pod's service account (an RFC 1123 subdomain).
    #[schema(
        min_length = 1,
        max_length = 253,
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    )]
    pub service_account: String,
    /// The audience (`aud`); default `pods.eks.amazonaws.com`, the one the endpoint accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255)]
    pub audience: Option<String>,
    /// Seconds the token is valid (default 86400, as EKS projects them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 31536000)]
    pub expiration_seconds: Option<u32>,
    /// The issuer (`iss`); default `https://imds.invalid/pod-identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255)]
    pub issuer: Option<String>,
}

/// A minted service-account token.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceAccountToken {
    /// The JWT, for `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (written without a newline).
    pub token: String,
    /// When it expires, ISO 8601 in UTC.
    pub expiration_timestamp: String,
}

impl std::fmt::Debug for ServiceAccountToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never in `Debug` output.
        f.debug_struct("ServiceAccountToken")
            .field("expiration_timestamp", &self.expiration_timestamp)
            .finish_non_exhaustive()
    }
}

/// A request to associate a service account with a role (EKS
/// `CreatePodIdentityAssociation`): the pods of the service account get the role's credentials
/// from the EKS Pod Identity endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CreatePodIdentityAssociation {
    /// The namespace (an RFC 1123 label).
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub namespace: String,
    /// The service account (an RFC 1123 subdomain).
    #[schema(
        min_length = 1,
        max_length = 253,
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    )]
    pub service_account: String,
    /// The role (an IAM role name) its pods get.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[\w+=,.@-]+$")]
    pub role: String,
}

/// A change of an association (EKS `UpdatePodIdentityAssociation`): its role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdatePodIdentityAssociation {
    /// The role (an IAM role name) the service account's pods get from now on.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[\w+=,.@-]+$")]
    pub role: String,
}

/// Where an association came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AssociationOrigin {
    /// The config file's `[[pod-identity-associations]]`: the next start removes it if the
    /// file no longer names it.
    Config,
    /// The control API: kept until deleted.
    Api,
}

/// One EKS Pod Identity association: which role the pods of a service account get.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PodIdentityAssociation {
    /// Its id: `a-` and 17 lowercase letters and digits, as EKS gives.
    pub association_id: String,
    /// The namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
    /// The role its pods get.
    pub role: String,
    /// Where it came from.
    pub origin: AssociationOrigin,
}

/// Every EKS Pod Identity association (`ListPodIdentityAssociations`), ordered by namespace and
/// service account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PodIdentityAssociationList {
    /// The associations.
    pub associations: Vec<PodIdentityAssociation>,
}
