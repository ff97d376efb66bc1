//! The instance model: everything IMDS says about one instance.
//!
//! Values are kept as EC2 would report them (ids, names, addresses as text) after validation at
//! the edge (config file, control API); building the metadata tree from them cannot fail on
//! their account.

use std::net::IpAddr;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::options::MetadataOptions;

/// One EC2 instance as IMDS describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `instance-id`, e.g. `i-0123456789abcdef0`; also what tokens are bound to.
    pub instance_id: String,
    /// The source addresses this instance calls from (host mode); empty for the default
    /// instance, which answers callers no other instance claims.
    pub addresses: Vec<IpAddr>,
    /// The owning account: `accountId` in the identity document, `owner-id` of interfaces.
    pub account_id: String,
    /// `ami-id`.
    pub ami_id: String,
    /// `ami-launch-index`.
    pub ami_launch_index: u32,
    /// `ami-manifest-path`: `(unknown)` for EBS-backed AMIs.
    pub ami_manifest_path: String,
    /// `ancestor-ami-ids`, only listed when not empty.
    pub ancestor_ami_ids: Vec<String>,
    /// `architecture` in the identity document: `x86_64`, `arm64` or `i386`.
    pub architecture: String,
    /// `instance-type`, e.g. `m5.large`.
    pub instance_type: String,
    /// `system`: the kind of host the instance runs on, `nitro` for Nitro instances.
    pub system: String,
    /// `instance-life-cycle`: `on-demand`, `spot` or `scheduled`.
    pub instance_life_cycle: String,
    /// `kernel-id`, only when set.
    pub kernel_id: Option<String>,
    /// `ramdisk-id`, only when set.
    pub ramdisk_id: Option<String>,
    /// `product-codes`, only listed when not empty.
    pub product_codes: Vec<String>,
    /// `reservation-id`.
    pub reservation_id: String,
    /// `pendingTime` of the identity document: when the instance was launched.
    pub pending_time: OffsetDateTime,
    /// `hostname` (the private DNS name).
    pub hostname: String,
    /// `placement/`.
    pub placement: Placement,
    /// The network interfaces; the first is the primary one, whose values also appear at the top
    /// of `meta-data/` (`mac`, `local-ipv4`, `public-ipv4`, `security-groups`, ...).
    pub network_interfaces: Vec<NetworkInterface>,
    /// `block-device-mapping/`: virtual name (`ami`, `root`, `ebs1`, ...) to device name, sorted
    /// by name (a sorted list rather than a map: a few entries, kept for many instances).
    pub block_device_mapping: Vec<(String, String)>,
    /// `public-keys/`, in index order.
    pub public_keys: Vec<PublicKey>,
    /// `services/domain`, e.g. `amazonaws.com`.
    pub services_domain: String,
    /// `services/partition`, e.g. `aws`.
    pub services_partition: String,
    /// The attached instance profile, if any; without one there is no `iam/`.
    pub iam: Option<IamProfile>,
    /// Instance tags, served under `tags/instance/` when `InstanceMetadataTags` is enabled;
    /// sorted by key.
    pub tags: Vec<(String, String)>,
    /// The user-data bytes exactly as given; `None` answers 404.
    pub user_data: Option<Bytes>,
    /// Spot, rebalance, maintenance and Auto Scaling notices.
    pub events: InstanceEvents,
    /// The instance metadata options.
    pub options: MetadataOptions,
}

/// `placement/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `availability-zone`: the region and one letter (botocore strips the last character).
    pub availability_zone: String,
    /// `availability-zone-id`, e.g. `use1-az4`.
    pub availability_zone_id: String,
    /// `region`.
    pub region: String,
    /// `group-name`, only for instances in a placement group.
    pub group_name: Option<String>,
    /// `host-id`, only for instances on a Dedicated Host.
    pub host_id: Option<String>,
    /// `partition-number`, only for partition placement groups.
    pub partition_number: Option<u32>,
}

/// One elastic network interface, `network/interfaces/macs/MAC/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    /// `mac`, lower-case and colon-separated.
    pub mac: String,
    /// `device-number`: 0 for the primary interface.
    pub device_number: u32,
    /// `network-card`: the network card the interface is on. Real IMDS has the key only on
    /// instance types with several network cards (404 on the others).
    pub network_card: Option<u32>,
    /// `interface-id`, e.g. `eni-...`.
    pub interface_id: String,
    /// `local-hostname`.
    pub local_hostname: String,
    /// `local-ipv4s`; the first is the primary private address (`local-ipv4`).
    pub local_ipv4s: Vec<IpAddr>,
    /// `public-hostname`, only with a public address and DNS hostnames.
    pub public_hostname: Option<String>,
    /// `public-ipv4s`; the first is `public-ipv4`.
    pub public_ipv4s: Vec<IpAddr>,
    /// `ipv6s`; the first is `ipv6`.
    pub ipv6s: Vec<IpAddr>,
    /// Security groups attached to the interface.
    pub security_groups: Vec<SecurityGroup>,
    /// `subnet-id`.
    pub subnet_id: String,
    /// `subnet-ipv4-cidr-block`; absent in an IPv6-only subnet.
    pub subnet_ipv4_cidr_block: Option<String>,
    /// `subnet-ipv6-cidr-blocks`, only when IPv6 is assigned.
    pub subnet_ipv6_cidr_blocks: Vec<String>,
    /// `vpc-id`.
    pub vpc_id: String,
    /// `vpc-ipv4-cidr-block`; also the first of `vpc-ipv4-cidr-blocks`.
    pub vpc_ipv4_cidr_blocks: Vec<String>,
    /// `vpc-ipv6-cidr-blocks`, only when IPv6 is assigned.
    pub vpc_ipv6_cidr_blocks: Vec<String>,
    /// `ipv4-prefix`: IPv4 prefixes delegated to the interface, only listed when not empty.
    pub ipv4_prefixes: Vec<String>,
    /// `ipv6-prefix`: IPv6 prefixes delegated to the interface, only listed when not empty.
    pub ipv6_prefixes: Vec<String>,
}

/// A security group: `security-groups` lists names, `security-group-ids` ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    /// `sg-...`.
    pub id: String,
    /// The group name.
    pub name: String,
}

/// One entry of `public-keys/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key pair name, listed as `INDEX=NAME`.
    pub name: String,
    /// The OpenSSH public key line, served at `public-keys/INDEX/openssh-key`.
    pub openssh_key: String,
}

/// The instance profile attached to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamProfile {
    /// The role name: listed by `iam/security-credentials/` and the key of its credentials.
    pub role_name: String,
    /// `InstanceProfileArn` of `iam/info`.
    pub instance_profile_arn: String,
    /// `InstanceProfileId` of `iam/info` (`AIPA...`).
    pub instance_profile_id: String,
    /// True when `iam/security-credentials-extended/` answers (the credentials with
    /// `AccountId`), as on the EC2 instances allowlisted for it; false: 404 there, as elsewhere.
    pub extended_credentials: bool,
}

/// Notices EC2 posts to an instance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceEvents {
    /// A Spot interruption: `spot/instance-action` and `spot/termination-time` (404 without).
    pub spot_interruption: Option<SpotInterruption>,
    /// When a rebalance recommendation is posted: `events/recommendations/rebalance` exists from
    /// then on.
    pub rebalance_notice: Option<OffsetDateTime>,
    /// Scheduled maintenance events (`events/maintenance/scheduled`) and, once completed or
    /// cancelled, their history (`events/maintenance/history`).
    pub maintenance: Vec<MaintenanceEvent>,
    /// `autoscaling/target-lifecycle-state`, for instances in an Auto Scaling group.
    pub target_lifecycle_state: Option<TargetLifecycle>,
}

/// The Auto Scaling target lifecycle state, and since when it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLifecycle {
    /// `InService`, `Terminated`, `Warmed:Stopped`, ...
    pub state: String,
    /// From when it is shown.
    pub time: OffsetDateTime,
}

/// A Spot interruption notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotInterruption {
    /// `hibernate`, `stop` or `terminate`.
    pub action: String,
    /// When the action happens.
    pub time: OffsetDateTime,
    /// When the notice appears (EC2 posts it two minutes before `time`).
    pub notice_time: OffsetDateTime,
}

/// A scheduled maintenance event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceEvent {
    /// `instance-reboot`, `system-reboot`, `system-maintenance`, `instance-retirement` or
    /// `instance-stop`.
    pub code: String,
    /// A free-text description.
    pub description: String,
    /// `instance-event-...`.
    pub event_id: String,
    /// Start of the window.
    pub not_before: OffsetDateTime,
    /// End of the window; `None` for events without one (`instance-stop`, `instance-retirement`),
    /// whose documents have no `NotAfter`.
    pub not_after: Option<OffsetDateTime>,
    /// `active` while scheduled; `completed` or `canceled` in history.
    pub state: MaintenanceState,
    /// When the event is posted to the instance.
    pub posted_time: OffsetDateTime,
}

/// The state of a maintenance event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceState {
    /// Scheduled: listed in `events/maintenance/scheduled`.
    Active,
    /// Done: listed in `events/maintenance/history`.
    Completed,
    /// Called off: listed in `events/maintenance/history`.
    Canceled,
}

impl MaintenanceState {
    /// The name AWS writes in the `State` field.
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceState::Active => "active",
            MaintenanceState::Completed => "completed",
            MaintenanceState::Canceled => "canceled",
        }
    }
}

impl InstanceEvents {
    /// The first moment after `now` at which what the instance shows changes, if any.
    pub fn next_change_after(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let spot = self.spot_interruption.as_ref().map(|spot| spot.notice_time);
        let lifecycle = self
            .target_lifecycle_state
            .as_ref()
            .map(|target| target.time);
        let maintenance = self.maintenance.iter().map(|event| event.posted_time);
        spot.into_iter()
            .chain(self.rebalance_notice)
            .chain(lifecycle)
            .chain(maintenance)
            .filter(|when| *when > now)
            .min()
    }
}

impl Instance {
    /// The primary network interface, if the instance has any.
    pub fn primary_interface(&self) -> Option<&NetworkInterface> {
        self.network_interfaces.first()
    }
}

/// True when `key` is a tag key that IMDS can carry: letters, digits and `+ - = . , _ : @`,
/// and not `.`, `..` or `_index` (EC2 User Guide, "Tag your Amazon EC2 resources", tags in
/// instance metadata).
pub fn is_imds_tag_key(key: &str) -> bool {
    !key.is_empty()
        && key != "."
        && key != ".."
        && key != "_index"
        && key
            .chars()
            .all(|character| character.is_alphanumeric() || "+-=.,_:@".contains(character))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys() {
        for good in [
            "Name",
            "aws:autoscaling:groupName",
            "a+b-c=d.e,f_g:h@i",
            "ünïcode",
        ] {
            assert!(is_imds_tag_key(good), "{good}");
        }
        for bad in ["", ".", "..", "_index", "a b", "a/b", "a\0b", "a\nb"] {
            assert!(!is_imds_tag_key(bad), "{bad:?}");
        }
    }
}
