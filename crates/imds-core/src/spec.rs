//! Instance descriptions: what a config file's `[instance]` table or a control-API request says
//! about an instance, and how that becomes an `Instance`.
//!
//! `InstanceSpec` holds exactly what was written (every key optional, unknown keys refused).
//! `InstanceSpec::resolve` fills what was left out from the values generated for the instance
//! (`Generated`: random identifiers drawn once and kept, so the instance stays the same) and from
//! values derived from the others (hostnames from addresses, the availability zone from the
//! region, ARNs from the account and role name), and checks every value. Errors name the key.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

use crate::{
    instance::{
        IamProfile, Instance, InstanceEvents, MaintenanceEvent, MaintenanceState, NetworkInterface,
        Placement, PublicKey, SecurityGroup, SpotInterruption, TargetLifecycle,
    },
    options::{HopLimit, HttpTokens, MetadataOptions, Toggle},
    render::{aws_timestamp, parse_aws_timestamp},
};

/// A description that cannot be served; the message names the key and says what is expected.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SpecError(pub String);

type Result<T> = std::result::Result<T, SpecError>;

macro_rules! spec_error {
    ($($arg:tt)*) => { SpecError(format!($($arg)*)) };
}

macro_rules! fail {
    ($($arg:tt)*) => { return Err(spec_error!($($arg)*)) };
}

/// An instance as described in a config file (`[instance]`) or a control-API request.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, maximum = 4_294_967_295.0))]
    pub ami_launch_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami_manifest_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ancestor_ami_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_life_cycle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramdisk_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_codes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services_partition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_interfaces: Option<Vec<InterfaceSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_device_mapping: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_keys: Option<Vec<PublicKeySpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iam: Option<IamSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_options: Option<OptionsSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsSpec>,
}

/// `[instance.placement]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacementSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, maximum = 4_294_967_295.0))]
    pub partition_number: Option<u32>,
}

/// `[[instance.network-interfaces]]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InterfaceSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, maximum = 4_294_967_295.0))]
    pub device_number: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, maximum = 4_294_967_295.0))]
    pub network_card_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_ipv4s: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ipv4s: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6s: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<SecurityGroupSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_ipv4_cidr_block: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_ipv6_cidr_blocks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_ipv4_cidr_blocks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_ipv6_cidr_blocks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_prefixes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_prefixes: Option<Vec<String>>,
}

/// A security group in an interface's `security-groups`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityGroupSpec {
    pub id: String,
    pub name: String,
}

/// `[[instance.public-keys]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicKeySpec {
    pub name: String,
    pub openssh_key: String,
}

/// `[instance.iam]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IamSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_profile_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_credentials: Option<bool>,
}

/// `[instance.metadata-options]`, with AWS's option names.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OptionsSpec {
    // The values are checked by `resolve`, whose errors name the key; the document shows the
    // values it accepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<HttpTokens>))]
    pub http_tokens: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Toggle>))]
    pub http_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<HopLimit>))]
    pub http_put_response_hop_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Toggle>))]
    pub http_protocol_ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Toggle>))]
    pub instance_metadata_tags: Option<String>,
}

/// `[instance.events]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventsSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_interruption: Option<SpotSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebalance_notice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_lifecycle_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_lifecycle_state_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Vec<MaintenanceSpec>>,
}

/// `spot-interruption = { action = "...", time = "..." }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpotSpec {
    pub action: String,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice_time: Option<String>,
}

/// `[[instance.events.maintenance]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceSpec {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub not_before: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posted_time: Option<String>,
}

/// An instance as the store keeps it: its description and the identifiers generated for it, so
/// that it resolves to the same instance every time.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoredInstance {
    /// Identifiers drawn when the instance was registered.
    pub generated: Generated,
    /// The description as given (and updated) through the config file or the control API.
    pub instance: InstanceSpec,
}

/// Values generated once per host (state directory), filling what a config leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[allow(missing_docs)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Generated {
    pub instance_id: String,
    pub account_id: String,
    pub ami_id: String,
    pub reservation_id: String,
    pub pending_time: String,
    pub mac: String,
    pub interface_id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub security_group_id: String,
    pub local_ipv4: String,
    pub public_ipv4: String,
    pub instance_profile_id: String,
    pub public_key: String,
}

impl Generated {
    /// Draws a new set of identifiers.
    #[allow(
        clippy::disallowed_methods,
        reason = "new identifiers are drawn once per host, with the launch time they are drawn at"
    )]
    pub fn random() -> Generated {
        use rand::Rng;
        let mut rng = rand::rng();
        let mut hex = |digits: usize| -> String {
            (0..digits)
                .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
                .collect()
        };
        let instance_id = format!("i-{}", hex(17));
        let ami_id = format!("ami-{}", hex(17));
        let reservation_id = format!("r-{}", hex(17));
        let interface_id = format!("eni-{}", hex(17));
        let subnet_id = format!("subnet-{}", hex(17));
        let vpc_id = format!("vpc-{}", hex(17));
        let security_group_id = format!("sg-{}", hex(17));
        // 0x02 in the first octet: a locally administered unicast address, as EC2's are.
        let mac_tail = hex(10);
        let mac = format!(
            "02:{}:{}:{}:{}:{}",
            &mac_tail[0..2],
            &mac_tail[2..4],
            &mac_tail[4..6],
            &mac_tail[6..8],
            &mac_tail[8..10]
        );
        let mut rng = rand::rng();
        let account_id: String = (0..12)
            .map(|index| {
                let digit = if index == 0 {
                    rng.random_range(1..10)
                } else {
                    rng.random_range(0..10)
                };
                char::from(b'0' + digit)
            })
            .collect();
        let local_ipv4 = Ipv4Addr::new(10, 0, 1, rng.random_range(4..255)).to_string();
        // 203.0.113.0/24 is TEST-NET-3 (RFC 5737): never a real host.
        let public_ipv4 = Ipv4Addr::new(203, 0, 113, rng.random_range(1..255)).to_string();
        let profile_tail: String = (0..17)
            .map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[rng.random_range(0..32)]))
            .collect();
        let key_bytes: [u8; 32] = rng.random();
        let mut blob = Vec::with_capacity(51);
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&key_bytes);
        let now = OffsetDateTime::now_utc();
        Generated {
            instance_id,
            account_id,
            ami_id,
            reservation_id,
            pending_time: aws_timestamp(now),
            mac,
            interface_id,
            subnet_id,
            vpc_id,
            security_group_id,
            local_ipv4,
            public_ipv4,
            instance_profile_id: format!("AIPA{profile_tail}"),
            public_key: format!("ssh-ed25519 {} imds-key", STANDARD.encode(blob)),
        }
    }
}

fn field<T: std::str::FromStr>(name: &str, text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|error| spec_error!("{name}: {error}"))
}

fn timestamp(name: &str, text: &str) -> Result<OffsetDateTime> {
    parse_aws_timestamp(text)
        .map_err(|_| spec_error!("{name}: {text:?} is not a timestamp like 2026-11-24T12:00:00Z"))
}

/// A timestamp that may be left out, meaning "since always".
fn optional_timestamp(name: &str, text: Option<&str>) -> Result<OffsetDateTime> {
    match text {
        Some(text) => timestamp(name, text),
        None => Ok(OffsetDateTime::UNIX_EPOCH),
    }
}

fn check_id(name: &str, value: &str, prefix: &str) -> Result<()> {
    let hex = value
        .strip_prefix(prefix)
        .ok_or_else(|| spec_error!("{name}: {value:?} must start with {prefix:?}"))?;
    if !(hex.len() == 8 || hex.len() == 17)
        || !hex
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    {
        fail!("{name}: {value:?} must be {prefix:?} followed by 8 or 17 lower-case hex digits");
    }
    Ok(())
}

fn check_mac(name: &str, value: &str) -> Result<()> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6
        || !parts.iter().all(|part| {
            part.len() == 2
                && part
                    .bytes()
                    .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        })
    {
        fail!("{name}: {value:?} must be a lower-case, colon-separated MAC address");
    }
    Ok(())
}

/// Checks delegated prefixes (`10.0.1.16/28`, `2001:db8::/80`): of the family asked for, with
/// no host bits set; returns them as written.
fn prefixes(name: &str, texts: &[String], ipv6: bool) -> Result<Vec<String>> {
    for text in texts {
        let family = if ipv6 { "IPv6" } else { "IPv4" };
        let parsed = text.split_once('/').and_then(|(address, length)| {
            let address: IpAddr = address.parse().ok()?;
            let length: u32 = length.parse().ok()?;
            Some((address, length))
        });
        let aligned = match parsed {
            Some((IpAddr::V4(address), length)) if !ipv6 && length <= 32 => {
                u32::from(address).checked_shl(length).unwrap_or(0) == 0
            }
            Some((IpAddr::V6(address), length)) if ipv6 && length <= 128 => {
                u128::from(address).checked_shl(length).unwrap_or(0) == 0
            }
            _ => fail!(
                "{name}: {text:?} is not an {family} prefix like {}",
                if ipv6 {
                    "2001:db8:1::/80"
                } else {
                    "10.0.1.16/28"
                }
            ),
        };
        if !aligned {
            fail!("{name}: {text:?} has bits set past its prefix length");
        }
    }
    Ok(texts.to_vec())
}

fn addresses(name: &str, texts: &[String]) -> Result<Vec<IpAddr>> {
    texts
        .iter()
        .map(|text| field::<IpAddr>(name, text))
        .collect()
}

/// `us-east-1` → `use1`, the prefix of availability-zone ids.
fn region_code(region: &str) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    match parts.as_slice() {
        [area, direction, number] => {
            format!("{area}{}{number}", direction.chars().next().unwrap_or('x'))
        }
        _ => region.replace('-', ""),
    }
}

/// The DNS suffix of private names: `ec2.internal` in us-east-1, `REGION.compute.internal`
/// elsewhere (EC2 User Guide, "Amazon EC2 instance hostname types").
fn private_dns_suffix(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".to_owned()
    } else {
        format!("{region}.compute.internal")
    }
}

fn public_dns_name(address: &IpAddr, region: &str, domain: &str) -> String {
    let dashed = address.to_string().replace(['.', ':'], "-");
    if region == "us-east-1" {
        format!("ec2-{dashed}.compute-1.{domain}")
    } else {
        format!("ec2-{dashed}.{region}.compute.{domain}")
    }
}

impl InstanceSpec {
    /// Fills what this description leaves out from `generated` and derived values, and checks
    /// every value, naming the key of any error.
    pub fn resolve(self, generated: &Generated) -> Result<Instance> {
        let file = self;
        let instance_id = file
            .instance_id
            .unwrap_or_else(|| generated.instance_id.clone());
        check_id("instance.instance-id", &instance_id, "i-")?;
        let account_id = file
            .account_id
            .unwrap_or_else(|| generated.account_id.clone());
        if account_id.len() != 12 || !account_id.bytes().all(|byte| byte.is_ascii_digit()) {
            fail!("instance.account-id: {account_id:?} must be 12 digits");
        }
        let ami_id = file.ami_id.unwrap_or_else(|| generated.ami_id.clone());
        check_id("instance.ami-id", &ami_id, "ami-")?;
        let reservation_id = file
            .reservation_id
            .unwrap_or_else(|| generated.reservation_id.clone());
        check_id("instance.reservation-id", &reservation_id, "r-")?;
        let pending_time = timestamp(
            "instance.pending-time",
            file.pending_time
                .as_deref()
                .unwrap_or(&generated.pending_time),
        )?;
        let architecture = file.architecture.unwrap_or_else(|| {
            match std::env::consts::ARCH {
                "aarch64" => "arm64",
                "x86" => "i386",
                _ => "x86_64",
            }
            .to_owned()
        });
        if !["x86_64", "arm64", "i386"].contains(&architecture.as_str()) {
            fail!("instance.architecture: {architecture:?} must be x86_64, arm64 or i386");
        }
        let system = file.system.unwrap_or_else(|| "nitro".to_owned());
        if system.is_empty()
            || !system
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        {
            fail!("instance.system: {system:?} must be a lower-case word such as nitro");
        }
        let instance_life_cycle = file
            .instance_life_cycle
            .unwrap_or_else(|| "on-demand".to_owned());
        if !["on-demand", "spot", "scheduled"].contains(&instance_life_cycle.as_str()) {
            fail!("instance.instance-life-cycle: {instance_life_cycle:?} must be on-demand, spot or scheduled");
        }

        let placement_file = file.placement.unwrap_or_default();
        let region = placement_file
            .region
            .unwrap_or_else(|| "us-east-1".to_owned());
        if region.is_empty()
            || !region
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        {
            fail!("instance.placement.region: {region:?} is not a region name like us-east-1");
        }
        let availability_zone = placement_file
            .availability_zone
            .unwrap_or_else(|| format!("{region}a"));
        // botocore takes the region to be the zone minus its last character.
        let zone_letter = availability_zone
            .strip_prefix(region.as_str())
            .unwrap_or("");
        if zone_letter.len() != 1 || !zone_letter.bytes().all(|byte| byte.is_ascii_lowercase()) {
            fail!(
                "instance.placement.availability-zone: {availability_zone:?} must be the region {region:?} followed by one letter"
            );
        }
        let zone_number = u32::from(zone_letter.as_bytes()[0] - b'a') + 1;
        let placement = Placement {
            availability_zone_id: placement_file
                .availability_zone_id
                .unwrap_or_else(|| format!("{}-az{zone_number}", region_code(&region))),
            availability_zone,
            region: region.clone(),
            group_name: placement_file.group_name,
            host_id: placement_file.host_id,
            partition_number: placement_file.partition_number,
        };
        let (default_domain, default_partition) = if region.starts_with("cn-") {
            ("amazonaws.com.cn", "aws-cn")
        } else if region.starts_with("us-gov-") {
            ("amazonaws.com", "aws-us-gov")
        } else {
            ("amazonaws.com", "aws")
        };
        let services_domain = file
            .services_domain
            .unwrap_or_else(|| default_domain.to_owned());
        let services_partition = file
            .services_partition
            .unwrap_or_else(|| default_partition.to_owned());

        let interface_files = file
            .network_interfaces
            .unwrap_or_else(|| vec![InterfaceSpec::default()]);
        // An instance whose primary interface has no IPv4 address is IPv6-only: it has resource
        // names and no IPv4 values (EC2 User Guide, "Amazon EC2 instance hostname types":
        // "If the instance is launched into an IPv6-only subnet, resource name is used
        // automatically").
        let ipv6_only = interface_files
            .first()
            .and_then(|primary| primary.local_ipv4s.as_ref())
            .is_some_and(Vec::is_empty);
        let resource_names = match file.hostname_type.as_deref() {
            None => ipv6_only,
            Some("resource-name") => true,
            Some("ip-name") if ipv6_only => fail!(
                "instance.hostname-type: an IPv6-only instance (no local-ipv4s on its primary interface) has resource names; leave it out or set resource-name"
            ),
            Some("ip-name") => false,
            Some(other) => {
                fail!("instance.hostname-type: {other:?} must be ip-name or resource-name")
            }
        };
        let resource_name = format!("{instance_id}.{}", private_dns_suffix(&region));
        // `network-card` exists on instance types with several network cards: imds takes an
        // instance to be one when an interface is on a card other than 0.
        let several_cards = interface_files
            .iter()
            .any(|interface| interface.network_card_index.is_some_and(|card| card > 0));
        let mut network_interfaces = Vec::with_capacity(interface_files.len());
        for (index, interface) in interface_files.into_iter().enumerate() {
            let name = |key: &str| format!("instance.network-interfaces[{index}].{key}");
            let primary = index == 0;
            let pick =
                |value: Option<String>, generated_value: &str, key: &str| -> Result<String> {
                    match value {
                        Some(value) => Ok(value),
                        None if primary => Ok(generated_value.to_owned()),
                        None => fail!("{}: required for every interface but the first", name(key)),
                    }
                };
            let mac = pick(interface.mac, &generated.mac, "mac")?;
            check_mac(&name("mac"), &mac)?;
            let local_ipv4s = match interface.local_ipv4s {
                Some(texts) => addresses(&name("local-ipv4s"), &texts)?,
                None if primary => vec![field(&name("local-ipv4s"), &generated.local_ipv4)?],
                None => Vec::new(),
            };
            let public_ipv4s = match interface.public_ipv4s {
                Some(texts) => addresses(&name("public-ipv4s"), &texts)?,
                None if primary && !local_ipv4s.is_empty() => {
                    vec![field(&name("public-ipv4s"), &generated.public_ipv4)?]
                }
                None => Vec::new(),
            };
            let ipv6s = addresses(&name("ipv6s"), &interface.ipv6s.unwrap_or_default())?;
            if local_ipv4s.iter().chain(&public_ipv4s).any(IpAddr::is_ipv6) {
                fail!("{}: IPv6 addresses belong in ipv6s", name("local-ipv4s"));
            }
            if ipv6s.iter().any(IpAddr::is_ipv4) {
                fail!("{}: IPv4 addresses belong in local-ipv4s", name("ipv6s"));
            }
            if local_ipv4s.is_empty() && !public_ipv4s.is_empty() {
                fail!(
                    "{}: a public IPv4 address maps to a private one, and the interface has none in local-ipv4s",
                    name("public-ipv4s")
                );
            }
            if primary && local_ipv4s.is_empty() && ipv6s.is_empty() {
                fail!(
                    "{}: the primary interface needs an address: give local-ipv4s, or ipv6s for an IPv6-only instance",
                    name("ipv6s")
                );
            }
            let ipv4_prefixes = prefixes(
                &name("ipv4-prefixes"),
                &interface.ipv4_prefixes.unwrap_or_default(),
                false,
            )?;
            let ipv6_prefixes = prefixes(
                &name("ipv6-prefixes"),
                &interface.ipv6_prefixes.unwrap_or_default(),
                true,
            )?;
            let local_hostname =
                interface
                    .local_hostname
                    .unwrap_or_else(|| match local_ipv4s.first() {
                        Some(address) if !resource_names => format!(
                            "ip-{}.{}",
                            address.to_string().replace('.', "-"),
                            private_dns_suffix(&region)
                        ),
                        _ => resource_name.clone(),
                    });
            let public_hostname = interface.public_hostname.or_else(|| {
                public_ipv4s
                    .first()
                    .map(|address| public_dns_name(address, &region, &services_domain))
            });
            let security_groups = match interface.security_groups {
                Some(groups) => groups
                    .into_iter()
                    .map(|group| SecurityGroup {
                        id: group.id,
                        name: group.name,
                    })
                    .collect(),
                None => vec![SecurityGroup {
                    id: generated.security_group_id.clone(),
                    name: "default".to_owned(),
                }],
            };
            let ipv6_assigned = !ipv6s.is_empty();
            let has_ipv4 = !local_ipv4s.is_empty();
            network_interfaces.push(NetworkInterface {
                device_number: interface.device_number.unwrap_or(index as u32),
                network_card: several_cards.then(|| interface.network_card_index.unwrap_or(0)),
                interface_id: pick(
                    interface.interface_id,
                    &generated.interface_id,
                    "interface-id",
                )?,
                mac,
                local_hostname,
                local_ipv4s,
                public_hostname,
                public_ipv4s,
                ipv6s,
                security_groups,
                subnet_id: pick(interface.subnet_id, &generated.subnet_id, "subnet-id")?,
                subnet_ipv4_cidr_block: interface
                    .subnet_ipv4_cidr_block
                    .or_else(|| has_ipv4.then(|| "10.0.1.0/24".to_owned())),
                subnet_ipv6_cidr_blocks: interface.subnet_ipv6_cidr_blocks.unwrap_or_else(|| {
                    if ipv6_assigned {
                        vec!["2001:db8:1234:1a00::/64".to_owned()]
                    } else {
                        Vec::new()
                    }
                }),
                vpc_id: pick(interface.vpc_id, &generated.vpc_id, "vpc-id")?,
                vpc_ipv4_cidr_blocks: interface
                    .vpc_ipv4_cidr_blocks
                    .unwrap_or_else(|| vec!["10.0.0.0/16".to_owned()]),
                vpc_ipv6_cidr_blocks: interface.vpc_ipv6_cidr_blocks.unwrap_or_else(|| {
                    if ipv6_assigned {
                        vec!["2001:db8:1234:1a00::/56".to_owned()]
                    } else {
                        Vec::new()
                    }
                }),
                ipv4_prefixes,
                ipv6_prefixes,
            });
        }
        let mut seen_macs = std::collections::HashSet::new();
        for interface in &network_interfaces {
            if !seen_macs.insert(interface.mac.as_str()) {
                fail!(
                    "instance.network-interfaces: MAC {} appears twice",
                    interface.mac
                );
            }
        }
        let hostname = file.hostname.unwrap_or_else(|| {
            network_interfaces
                .first()
                .map(|interface| interface.local_hostname.clone())
                .unwrap_or_else(|| instance_id.clone())
        });

        let public_keys = match file.public_keys {
            Some(keys) => keys
                .into_iter()
                .map(|key| PublicKey {
                    name: key.name,
                    openssh_key: key.openssh_key,
                })
                .collect(),
            None => vec![PublicKey {
                name: "imds-key".to_owned(),
                openssh_key: generated.public_key.clone(),
            }],
        };
        for (index, key) in public_keys.iter().enumerate() {
            if key.name.is_empty() || key.name.contains(['\n', '/', '=']) {
                fail!("instance.public-keys[{index}].name: {:?} must be a key pair name without newlines, '/' or '='", key.name);
            }
        }

        let iam_file = file.iam.unwrap_or_default();
        let iam = if iam_file.attached.unwrap_or(true) {
            let role_name = iam_file
                .role_name
                .unwrap_or_else(|| "imds-instance-role".to_owned());
            if let Err(error) = crate::role_name::check_role_name(&role_name) {
                fail!("instance.iam.role-name: {error}");
            }
            Some(IamProfile {
                instance_profile_arn: iam_file.instance_profile_arn.unwrap_or_else(|| {
                    format!(
                        "arn:{services_partition}:iam::{account_id}:instance-profile/{role_name}"
                    )
                }),
                instance_profile_id: iam_file
                    .instance_profile_id
                    .unwrap_or_else(|| generated.instance_profile_id.clone()),
                extended_credentials: iam_file.extended_credentials.unwrap_or(true),
                role_name,
            })
        } else {
            None
        };

        let user_data = match (file.user_data, file.user_data_base64, file.user_data_file) {
            (Some(text), None, None) => text.into_bytes(),
            (None, Some(encoded), None) => STANDARD
                .decode(encoded.trim())
                .map_err(|error| spec_error!("instance.user-data-base64: {error}"))?,
            (None, None, Some(_)) => {
                fail!("instance.user-data-file: only a config file read from disk may name a file")
            }
            (None, None, None) => b"#!/bin/sh\necho 'Hello from imds'\n".to_vec(),
            _ => {
                fail!("instance: set at most one of user-data, user-data-base64 and user-data-file")
            }
        };
        // EC2 limits user data to 16 KiB before base64 encoding.
        if user_data.len() > 16 * 1024 {
            fail!(
                "instance.user-data: {} bytes is over EC2's limit of 16384",
                user_data.len()
            );
        }

        let options_file = file.metadata_options.unwrap_or_default();
        let mut options = MetadataOptions::default();
        if let Some(text) = &options_file.http_tokens {
            options.http_tokens =
                field::<HttpTokens>("instance.metadata-options.http-tokens", text)?;
        }
        if let Some(text) = &options_file.http_endpoint {
            options.http_endpoint =
                field::<Toggle>("instance.metadata-options.http-endpoint", text)?;
        }
        if let Some(value) = options_file.http_put_response_hop_limit {
            options.http_put_response_hop_limit = HopLimit::new(value).map_err(|error| {
                spec_error!("instance.metadata-options.http-put-response-hop-limit: {error}")
            })?;
        }
        if let Some(text) = &options_file.http_protocol_ipv6 {
            options.http_protocol_ipv6 =
                field::<Toggle>("instance.metadata-options.http-protocol-ipv6", text)?;
        }
        if let Some(text) = &options_file.instance_metadata_tags {
            options.instance_metadata_tags =
                field::<Toggle>("instance.metadata-options.instance-metadata-tags", text)?;
        }

        let events = resolve_events(file.events.unwrap_or_default())?;

        let addresses = addresses("instance.addresses", &file.addresses.unwrap_or_default())?;
        let instance = Instance {
            instance_id,
            addresses,
            account_id,
            ami_id,
            ami_launch_index: file.ami_launch_index.unwrap_or(0),
            ami_manifest_path: file
                .ami_manifest_path
                .unwrap_or_else(|| "(unknown)".to_owned()),
            ancestor_ami_ids: file.ancestor_ami_ids.unwrap_or_default(),
            architecture,
            instance_type: file.instance_type.unwrap_or_else(|| "m5.large".to_owned()),
            system,
            instance_life_cycle,
            kernel_id: file.kernel_id,
            ramdisk_id: file.ramdisk_id,
            product_codes: file.product_codes.unwrap_or_default(),
            reservation_id,
            pending_time,
            hostname,
            placement,
            network_interfaces,
            block_device_mapping: file
                .block_device_mapping
                .unwrap_or_else(|| {
                    BTreeMap::from([
                        ("ami".to_owned(), "/dev/xvda".to_owned()),
                        ("root".to_owned(), "/dev/xvda".to_owned()),
                    ])
                })
                .into_iter()
                .collect(),
            public_keys,
            services_domain,
            services_partition,
            iam,
            tags: file
                .tags
                .unwrap_or_else(|| BTreeMap::from([("Name".to_owned(), "imds".to_owned())]))
                .into_iter()
                .collect(),
            user_data: (!user_data.is_empty()).then(|| user_data.into()),
            events,
            options,
        };
        Ok(instance)
    }
}

fn resolve_events(file: EventsSpec) -> Result<InstanceEvents> {
    let spot_interruption = match file.spot_interruption {
        Some(spot) => {
            if !["hibernate", "stop", "terminate"].contains(&spot.action.as_str()) {
                fail!(
                    "instance.events.spot-interruption.action: {:?} must be hibernate, stop or terminate",
                    spot.action
                );
            }
            Some(SpotInterruption {
                time: timestamp("instance.events.spot-interruption.time", &spot.time)?,
                notice_time: optional_timestamp(
                    "instance.events.spot-interruption.notice-time",
                    spot.notice_time.as_deref(),
                )?,
                action: spot.action,
            })
        }
        None => None,
    };
    let rebalance_notice = file
        .rebalance_notice
        .map(|text| timestamp("instance.events.rebalance-notice", &text))
        .transpose()?;
    let mut maintenance = Vec::new();
    for (index, event) in file.maintenance.unwrap_or_default().into_iter().enumerate() {
        let name = |key: &str| format!("instance.events.maintenance[{index}].{key}");
        const CODES: [&str; 5] = [
            "instance-reboot",
            "system-reboot",
            "system-maintenance",
            "instance-retirement",
            "instance-stop",
        ];
        if !CODES.contains(&event.code.as_str()) {
            fail!(
                "{}: {:?} must be one of {}",
                name("code"),
                event.code,
                CODES.join(", ")
            );
        }
        let state = match event.state.as_deref().unwrap_or("active") {
            "active" => MaintenanceState::Active,
            "completed" => MaintenanceState::Completed,
            "canceled" => MaintenanceState::Canceled,
            other => fail!(
                "{}: {other:?} must be active, completed or canceled",
                name("state")
            ),
        };
        maintenance.push(MaintenanceEvent {
            description: event
                .description
                .unwrap_or_else(|| format!("scheduled {}", event.code.replace('-', " "))),
            event_id: event
                .event_id
                .unwrap_or_else(|| format!("instance-event-{:017x}", index as u64 + 1)),
            not_before: timestamp(&name("not-before"), &event.not_before)?,
            not_after: event
                .not_after
                .as_deref()
                .map(|text| timestamp(&name("not-after"), text))
                .transpose()?,
            posted_time: optional_timestamp(&name("posted-time"), event.posted_time.as_deref())?,
            code: event.code,
            state,
        });
    }
    Ok(InstanceEvents {
        spot_interruption,
        rebalance_notice,
        maintenance,
        target_lifecycle_state: match file.target_lifecycle_state {
            Some(state) => {
                const STATES: [&str; 8] = [
                    "Detached",
                    "InService",
                    "Standby",
                    "Terminated",
                    "Warmed:Hibernated",
                    "Warmed:Running",
                    "Warmed:Stopped",
                    "Warmed:Terminated",
                ];
                if !STATES.contains(&state.as_str()) {
                    fail!(
                        "instance.events.target-lifecycle-state: {state:?} must be one of {}",
                        STATES.join(", ")
                    );
                }
                Some(TargetLifecycle {
                    state,
                    time: optional_timestamp(
                        "instance.events.target-lifecycle-state-time",
                        file.target_lifecycle_state_time.as_deref(),
                    )?,
                })
            }
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> InstanceSpec {
        serde_json::from_str(text).unwrap()
    }

    #[track_caller]
    fn check_error(json: &str, expect: &str) {
        let error = parse(json)
            .resolve(&Generated::random())
            .expect_err("should be refused");
        assert!(
            error.0.contains(expect),
            "error {error:?} does not mention {expect:?}"
        );
    }

    #[test]
    fn empty_spec_takes_generated_values() {
        let seed = Generated::random();
        let instance = parse("{}").resolve(&seed).unwrap();
        assert_eq!(instance.instance_id, seed.instance_id);
        assert_eq!(instance.placement.availability_zone, "us-east-1a");
        assert_eq!(instance.placement.availability_zone_id, "use1-az1");
        assert_eq!(instance.network_interfaces[0].mac, seed.mac);
        assert!(instance.hostname.ends_with(".ec2.internal"));
        assert_eq!(
            instance.iam.unwrap().instance_profile_arn,
            format!(
                "arn:aws:iam::{}:instance-profile/imds-instance-role",
                seed.account_id
            )
        );
        assert_eq!(instance.options, MetadataOptions::default());
        assert!(instance.addresses.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        check_error(
            r#"{"metadata-options": {"http-tokens": "always"}}"#,
            "instance.metadata-options.http-tokens",
        );
        check_error(
            r#"{"metadata-options": {"http-put-response-hop-limit": 65}}"#,
            "instance.metadata-options.http-put-response-hop-limit",
        );
        check_error(r#"{"instance-id": "x-123"}"#, "instance.instance-id");
        check_error(
            r#"{"placement": {"region": "eu-west-1", "availability-zone": "us-east-1a"}}"#,
            "instance.placement.availability-zone",
        );
        check_error(
            r#"{"network-interfaces": [{"mac": "AA:BB"}]}"#,
            "instance.network-interfaces[0].mac",
        );
        check_error(
            r#"{"network-interfaces": [{"local-ipv4s": ["10.0.0.300"]}]}"#,
            "instance.network-interfaces[0].local-ipv4s",
        );
        check_error(
            r#"{"user-data": "a", "user-data-base64": "YQ=="}"#,
            "at most one",
        );
        check_error(
            r#"{"iam": {"role-name": "bad role"}}"#,
            "instance.iam.role-name",
        );
        check_error(r#"{"addresses": ["not-an-address"]}"#, "instance.addresses");
        check_error(r#"{"user-data-file": "x"}"#, "instance.user-data-file");
        check_error(r#"{"system": "Nitro"}"#, "instance.system");
        check_error(r#"{"hostname-type": "dns-name"}"#, "instance.hostname-type");
        check_error(
            r#"{"hostname-type": "ip-name", "network-interfaces": [{"local-ipv4s": [], "ipv6s": ["2001:db8::1"]}]}"#,
            "instance.hostname-type",
        );
        check_error(
            r#"{"network-interfaces": [{"local-ipv4s": []}]}"#,
            "instance.network-interfaces[0].ipv6s",
        );
        check_error(
            r#"{"network-interfaces": [{"local-ipv4s": [], "ipv6s": ["2001:db8::1"], "public-ipv4s": ["203.0.113.1"]}]}"#,
            "instance.network-interfaces[0].public-ipv4s",
        );
        check_error(
            r#"{"network-interfaces": [{"ipv6s": ["10.0.0.1"]}]}"#,
            "instance.network-interfaces[0].ipv6s",
        );
        for (key, prefix) in [
            ("ipv4-prefixes", "10.0.1.17/28"),
            ("ipv4-prefixes", "10.0.1.16/33"),
            ("ipv4-prefixes", "2001:db8::/80"),
            ("ipv4-prefixes", "10.0.1.16"),
            ("ipv6-prefixes", "2001:db8::1/80"),
            ("ipv6-prefixes", "10.0.1.16/28"),
        ] {
            check_error(
                &format!(r#"{{"network-interfaces": [{{"{key}": ["{prefix}"]}}]}}"#),
                &format!("instance.network-interfaces[0].{key}"),
            );
        }
    }

    #[test]
    fn hostnames_cards_and_ipv6_only() {
        let seed = Generated::random();
        let ipv6_only = parse(
            r#"{"instance-id": "i-0123456789abcdef0", "placement": {"region": "eu-west-1"},
                "network-interfaces": [{"local-ipv4s": [], "ipv6s": ["2001:db8::1"]}]}"#,
        )
        .resolve(&seed)
        .unwrap();
        let primary = &ipv6_only.network_interfaces[0];
        assert_eq!(
            ipv6_only.hostname,
            "i-0123456789abcdef0.eu-west-1.compute.internal"
        );
        assert_eq!(primary.local_hostname, ipv6_only.hostname);
        assert!(primary.public_ipv4s.is_empty() && primary.public_hostname.is_none());
        assert_eq!(primary.subnet_ipv4_cidr_block, None);
        assert_eq!(primary.network_card, None);

        let dual =
            parse(r#"{"instance-id": "i-0123456789abcdef0", "hostname-type": "resource-name"}"#)
                .resolve(&seed)
                .unwrap();
        assert_eq!(dual.hostname, "i-0123456789abcdef0.ec2.internal");
        assert!(!dual.network_interfaces[0].local_ipv4s.is_empty());
        let ip_named = parse("{}").resolve(&seed).unwrap();
        assert!(
            ip_named.hostname.starts_with("ip-10-0-1-"),
            "{}",
            ip_named.hostname
        );
        assert_eq!(ip_named.system, "nitro");

        // network-card appears on every interface once one is on a card other than 0.
        let cards = |json: &str| -> Vec<Option<u32>> {
            parse(json)
                .resolve(&seed)
                .unwrap()
                .network_interfaces
                .iter()
                .map(|interface| interface.network_card)
                .collect()
        };
        let second = r#""mac": "02:00:00:00:00:02", "interface-id": "eni-0123456789abcdef1", "subnet-id": "subnet-0123456789abcdef1", "vpc-id": "vpc-0123456789abcdef1""#;
        assert_eq!(
            cards(&format!(
                r#"{{"network-interfaces": [{{}}, {{{second}, "network-card-index": 2}}]}}"#
            )),
            [Some(0), Some(2)]
        );
        assert_eq!(
            cards(&format!(
                r#"{{"network-interfaces": [{{"network-card-index": 0}}, {{{second}}}]}}"#
            )),
            [None, None]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_json::from_str::<InstanceSpec>(r#"{"bogus": 1}"#).is_err());
    }

    #[test]
    fn empty_user_data_means_none_and_iam_can_be_detached() {
        let instance = parse(
            r#"{"user-data": "", "iam": {"attached": false}, "addresses": ["127.0.0.2", "::2"]}"#,
        )
        .resolve(&Generated::random())
        .unwrap();
        assert!(instance.user_data.is_none());
        assert!(instance.iam.is_none());
        assert_eq!(instance.addresses.len(), 2);
    }

    #[test]
    fn generated_values_survive_a_round_trip() {
        let seed = Generated::random();
        let text = serde_json::to_string(&seed).unwrap();
        assert_eq!(serde_json::from_str::<Generated>(&text).unwrap(), seed);
        parse("{}").resolve(&seed).unwrap();
    }
}
