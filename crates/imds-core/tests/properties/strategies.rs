//! proptest strategies for instance descriptions (`imds_core::spec`): every key present or left
//! out, values plausible or arbitrary (any characters, control characters included), so that
//! both the writers and readers of each format and `InstanceSpec::resolve` see hostile text.
//!
//! The config file's property tests (crate `imds`) use these too.

use std::collections::BTreeMap;

use imds_core::spec::{
    EventsSpec, Generated, IamSpec, InstanceSpec, InterfaceSpec, MaintenanceSpec, OptionsSpec,
    PlacementSpec, PublicKeySpec, SecurityGroupSpec, SpotSpec, StoredInstance,
};
use proptest::{collection::vec, option::of, prelude::*};

/// Any text: mostly short printable strings, sometimes anything at all.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9 .:/_-]{0,12}",
        1 => "(?s).{0,10}",
    ]
    .boxed()
}

/// A value a key expects (`good`), or any text.
fn plausible(good: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    prop_oneof![3 => good, 1 => text()].boxed()
}

fn pick(values: &'static [&'static str]) -> BoxedStrategy<String> {
    plausible(prop::sample::select(values).prop_map(str::to_owned)).boxed()
}

fn id(prefix: &'static str) -> BoxedStrategy<String> {
    plausible("[0-9a-f]{17}".prop_map(move |hex| format!("{prefix}{hex}"))).boxed()
}

fn timestamp() -> BoxedStrategy<String> {
    plausible(
        (
            2000u32..2100,
            1u32..13,
            1u32..29,
            0u32..24,
            0u32..60,
            0u32..60,
        )
            .prop_map(|(year, month, day, hour, minute, second)| {
                format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
            }),
    )
    .boxed()
}

fn address() -> BoxedStrategy<String> {
    plausible(prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|address| address.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|address| address.to_string()),
    ])
    .boxed()
}

fn mac() -> BoxedStrategy<String> {
    plausible("02(:[0-9a-f]{2}){5}").boxed()
}

fn map() -> BoxedStrategy<BTreeMap<String, String>> {
    prop::collection::btree_map(text(), text(), 0..4).boxed()
}

fn placement() -> BoxedStrategy<PlacementSpec> {
    (
        of(pick(&[
            "us-east-1",
            "eu-west-1",
            "cn-north-1",
            "us-gov-west-1",
        ])),
        of(pick(&["us-east-1a", "eu-west-1b", "cn-north-1c"])),
        of(text()),
        of(text()),
        of(text()),
        of(any::<u32>()),
    )
        .prop_map(
            |(region, availability_zone, availability_zone_id, group_name, host_id, partition)| {
                PlacementSpec {
                    region,
                    availability_zone,
                    availability_zone_id,
                    group_name,
                    host_id,
                    partition_number: partition,
                }
            },
        )
        .boxed()
}

fn security_group() -> BoxedStrategy<SecurityGroupSpec> {
    (id("sg-"), text())
        .prop_map(|(id, name)| SecurityGroupSpec { id, name })
        .boxed()
}

fn interface() -> BoxedStrategy<InterfaceSpec> {
    (
        (
            of(mac()),
            of(any::<u32>()),
            of(any::<u32>()),
            of(id("eni-")),
            of(text()),
            of(vec(address(), 0..3)),
            of(text()),
            of(vec(address(), 0..3)),
        ),
        (
            of(vec(address(), 0..3)),
            of(vec(security_group(), 0..3)),
            of(id("subnet-")),
            of(text()),
            of(vec(text(), 0..2)),
            of(id("vpc-")),
            of(vec(text(), 0..2)),
            of(vec(text(), 0..2)),
        ),
        (of(vec(text(), 0..2)), of(vec(text(), 0..2))),
    )
        .prop_map(
            |(
                (
                    mac,
                    device,
                    card,
                    interface_id,
                    local_hostname,
                    local_ipv4s,
                    public_hostname,
                    public_ipv4s,
                ),
                (ipv6s, security_groups, subnet_id, subnet_v4, subnet_v6, vpc_id, vpc_v4, vpc_v6),
                (ipv4_prefixes, ipv6_prefixes),
            )| InterfaceSpec {
                mac,
                device_number: device,
                network_card_index: card,
                interface_id,
                local_hostname,
                local_ipv4s,
                public_hostname,
                public_ipv4s,
                ipv6s,
                security_groups,
                subnet_id,
                subnet_ipv4_cidr_block: subnet_v4,
                subnet_ipv6_cidr_blocks: subnet_v6,
                vpc_id,
                vpc_ipv4_cidr_blocks: vpc_v4,
                vpc_ipv6_cidr_blocks: vpc_v6,
                ipv4_prefixes,
                ipv6_prefixes,
            },
        )
        .boxed()
}

fn public_key() -> BoxedStrategy<PublicKeySpec> {
    (text(), text())
        .prop_map(|(name, openssh_key)| PublicKeySpec { name, openssh_key })
        .boxed()
}

fn iam() -> BoxedStrategy<IamSpec> {
    (
        of(any::<bool>()),
        of(plausible("[A-Za-z0-9+=,.@_-]{1,20}")),
        of(text()),
        of(text()),
        of(any::<bool>()),
    )
        .prop_map(
            |(attached, role_name, instance_profile_arn, instance_profile_id, extended)| IamSpec {
                attached,
                role_name,
                instance_profile_arn,
                instance_profile_id,
                extended_credentials: extended,
            },
        )
        .boxed()
}

fn options() -> BoxedStrategy<OptionsSpec> {
    (
        of(pick(&["required", "optional"])),
        of(pick(&["enabled", "disabled"])),
        of(0u32..70),
        of(pick(&["enabled", "disabled"])),
        of(pick(&["enabled", "disabled"])),
    )
        .prop_map(
            |(http_tokens, http_endpoint, hop_limit, ipv6, tags)| OptionsSpec {
                http_tokens,
                http_endpoint,
                http_put_response_hop_limit: hop_limit,
                http_protocol_ipv6: ipv6,
                instance_metadata_tags: tags,
            },
        )
        .boxed()
}

fn events() -> BoxedStrategy<EventsSpec> {
    let spot = (
        pick(&["hibernate", "stop", "terminate"]),
        timestamp(),
        of(timestamp()),
    )
        .prop_map(|(action, time, notice_time)| SpotSpec {
            action,
            time,
            notice_time,
        });
    let maintenance = (
        pick(&["instance-reboot", "system-reboot", "instance-stop"]),
        of(text()),
        of(text()),
        timestamp(),
        of(timestamp()),
        of(pick(&["active", "completed", "canceled"])),
        of(timestamp()),
    )
        .prop_map(
            |(code, description, event_id, not_before, not_after, state, posted_time)| {
                MaintenanceSpec {
                    code,
                    description,
                    event_id,
                    not_before,
                    not_after,
                    state,
                    posted_time,
                }
            },
        );
    (
        of(spot),
        of(timestamp()),
        of(pick(&["InService", "Terminated", "Warmed:Stopped"])),
        of(timestamp()),
        of(vec(maintenance, 0..3)),
    )
        .prop_map(
            |(spot_interruption, rebalance_notice, target_state, target_time, maintenance)| {
                EventsSpec {
                    spot_interruption,
                    rebalance_notice,
                    target_lifecycle_state: target_state,
                    target_lifecycle_state_time: target_time,
                    maintenance,
                }
            },
        )
        .boxed()
}

/// An instance description with any of its keys.
pub fn instance_spec() -> BoxedStrategy<InstanceSpec> {
    let identity = (
        of(vec(address(), 0..3)),
        of(id("i-")),
        of(plausible("[1-9][0-9]{11}")),
        of(id("ami-")),
        of(any::<u32>()),
        of(text()),
        of(vec(id("ami-"), 0..3)),
        of(pick(&["x86_64", "arm64", "i386"])),
        of(pick(&["m5.large", "t3.micro"])),
        of(pick(&["on-demand", "spot", "scheduled"])),
    );
    let more = (
        of(id("aki-")),
        of(id("ari-")),
        of(vec(text(), 0..3)),
        of(id("r-")),
        of(timestamp()),
        of(text()),
        of(text()),
        of(text()),
    );
    let user_data = (of(text()), of(plausible("[A-Za-z0-9+/]{0,12}")), of(text()));
    let nested = (
        of(placement()),
        of(vec(interface(), 0..3)),
        of(map()),
        of(vec(public_key(), 0..3)),
        of(iam()),
        of(map()),
        of(options()),
        of(events()),
    );
    (identity, more, user_data, nested)
        .prop_map(
            |(
                (
                    addresses,
                    instance_id,
                    account_id,
                    ami_id,
                    launch_index,
                    manifest,
                    ancestors,
                    architecture,
                    instance_type,
                    life_cycle,
                ),
                (
                    kernel_id,
                    ramdisk_id,
                    product_codes,
                    reservation_id,
                    pending_time,
                    hostname,
                    domain,
                    partition,
                ),
                (user_data, user_data_base64, user_data_file),
                (
                    placement,
                    network_interfaces,
                    block_devices,
                    public_keys,
                    iam,
                    tags,
                    metadata_options,
                    events,
                ),
            )| {
                // Field by field from the default, so that a key added to `InstanceSpec` does not
                // stop this strategy from building.
                #[allow(clippy::field_reassign_with_default)]
                {
                    let mut spec = InstanceSpec::default();
                    spec.addresses = addresses;
                    spec.instance_id = instance_id;
                    spec.account_id = account_id;
                    spec.ami_id = ami_id;
                    spec.ami_launch_index = launch_index;
                    spec.ami_manifest_path = manifest;
                    spec.ancestor_ami_ids = ancestors;
                    spec.architecture = architecture;
                    spec.instance_type = instance_type;
                    spec.instance_life_cycle = life_cycle;
                    spec.kernel_id = kernel_id;
                    spec.ramdisk_id = ramdisk_id;
                    spec.product_codes = product_codes;
                    spec.reservation_id = reservation_id;
                    spec.pending_time = pending_time;
                    spec.hostname = hostname;
                    spec.services_domain = domain;
                    spec.services_partition = partition;
                    spec.user_data = user_data;
                    spec.user_data_base64 = user_data_base64;
                    spec.user_data_file = user_data_file;
                    spec.placement = placement;
                    spec.network_interfaces = network_interfaces;
                    spec.block_device_mapping = block_devices;
                    spec.public_keys = public_keys;
                    spec.iam = iam;
                    spec.tags = tags;
                    spec.metadata_options = metadata_options;
                    spec.events = events;
                    spec
                }
            },
        )
        .boxed()
}

/// Generated identifiers: usually well formed, sometimes any text.
pub fn generated() -> BoxedStrategy<Generated> {
    (
        (
            id("i-"),
            plausible("[1-9][0-9]{11}"),
            id("ami-"),
            id("r-"),
            timestamp(),
            mac(),
            id("eni-"),
        ),
        (
            id("subnet-"),
            id("vpc-"),
            id("sg-"),
            address(),
            address(),
            text(),
            text(),
        ),
    )
        .prop_map(
            |(
                (instance_id, account_id, ami_id, reservation_id, pending_time, mac, interface_id),
                (
                    subnet_id,
                    vpc_id,
                    security_group_id,
                    local_ipv4,
                    public_ipv4,
                    profile_id,
                    public_key,
                ),
            )| Generated {
                instance_id,
                account_id,
                ami_id,
                reservation_id,
                pending_time,
                mac,
                interface_id,
                subnet_id,
                vpc_id,
                security_group_id,
                local_ipv4,
                public_ipv4,
                instance_profile_id: profile_id,
                public_key,
            },
        )
        .boxed()
}

/// A stored instance: generated identifiers and a description.
pub fn stored_instance() -> BoxedStrategy<StoredInstance> {
    (generated(), instance_spec())
        .prop_map(|(generated, instance)| StoredInstance {
            generated,
            instance,
        })
        .boxed()
}
