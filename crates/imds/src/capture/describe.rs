//! From a walk to an instance description: each captured value goes to the `InstanceSpec` key
//! that serves it back, written out in full (never left to a generated or derived default), so
//! that the description does not depend on the rules that fill gaps.
//!
//! Values the description has no key for are not dropped here in silence: `check` compares the
//! walk with what the description serves and reports every difference.

use std::collections::BTreeMap;

use base64::{engine::general_purpose::STANDARD, Engine};
use imds_core::{
    render::{aws_timestamp, parse_maintenance_time},
    spec::{
        EventsSpec, IamSpec, InstanceSpec, InterfaceSpec, MaintenanceSpec, OptionsSpec,
        PlacementSpec, PublicKeySpec, SecurityGroupSpec, SpotSpec,
    },
};
use imds_credentials::spec::RoleSpec;
use serde_json::Value;

use crate::capture::walk::{parse_listing, Capture, Child};

/// EC2's limit on user data: 16 KiB before base64 encoding (EC2 User Guide, "Run commands when
/// you launch an EC2 instance with user data input").
const USER_DATA_LIMIT: usize = 16 * 1024;

/// A captured instance as a description.
#[derive(Debug)]
pub struct Description {
    /// The instance.
    pub instance: InstanceSpec,
    /// The role the instance profile names, with generated credentials in place of the real
    /// ones.
    pub roles: Vec<RoleSpec>,
    /// Captured values that could not be written into the description, for the report.
    pub notes: Vec<String>,
}

/// Reads `meta-data/...` values of a capture, noting values that are not text.
struct Reader<'a> {
    capture: &'a Capture,
    notes: Vec<String>,
}

impl Reader<'_> {
    /// The text of `meta-data/{key}`.
    fn text(&mut self, key: &str) -> Option<String> {
        let bytes = self.capture.value(&format!("meta-data/{key}"))?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Some(text.to_owned()),
            Err(_) => {
                self.notes
                    .push(format!("meta-data/{key}: not UTF-8 text, left out"));
                None
            }
        }
    }

    /// The lines of `meta-data/{key}` (an absent value has none).
    fn lines(&mut self, key: &str) -> Option<Vec<String>> {
        self.text(key).map(|text| {
            text.split('\n')
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    /// `meta-data/{key}` as a number.
    fn number(&mut self, key: &str) -> Option<u32> {
        let text = self.text(key)?;
        match text.trim().parse() {
            Ok(number) => Some(number),
            Err(_) => {
                self.notes.push(format!(
                    "meta-data/{key}: {text:?} is not a number, left out"
                ));
                None
            }
        }
    }

    /// `meta-data/{key}` as JSON.
    fn json(&mut self, key: &str) -> Option<Value> {
        let text = self.text(key)?;
        match serde_json::from_str(&text) {
            Ok(value) => Some(value),
            Err(error) => {
                self.notes
                    .push(format!("meta-data/{key}: not JSON ({error}), left out"));
                None
            }
        }
    }

    /// The names the listing of `meta-data/{key}` gives, categories and values alike.
    fn names(&self, key: &str) -> Option<Vec<String>> {
        let listing = self.capture.listing(&format!("meta-data/{key}"))?;
        Some(
            parse_listing(listing, false)
                .into_iter()
                .filter_map(|child| match child {
                    Child::Category(name) | Child::Value(name) => Some(name),
                    Child::Odd(_) => None,
                })
                .collect(),
        )
    }

    fn has_category(&self, key: &str) -> bool {
        self.capture.listing(&format!("meta-data/{key}")).is_some()
    }
}

/// A string field of a JSON object.
fn json_text(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// Describes the instance a walk saw.
pub fn describe(capture: &Capture) -> Description {
    let mut reader = Reader {
        capture,
        notes: Vec::new(),
    };
    let identity: Option<Value> = capture
        .value("dynamic/instance-identity/document")
        .and_then(|bytes| serde_json::from_slice(bytes).ok());
    let identity_text =
        |field: &str| -> Option<String> { identity.as_ref().and_then(|doc| json_text(doc, field)) };

    let mut spec = InstanceSpec {
        instance_id: reader.text("instance-id"),
        ami_id: reader.text("ami-id"),
        ami_launch_index: reader.number("ami-launch-index"),
        ami_manifest_path: reader.text("ami-manifest-path"),
        ancestor_ami_ids: Some(reader.lines("ancestor-ami-ids").unwrap_or_default()),
        architecture: identity_text("architecture"),
        instance_type: reader.text("instance-type"),
        instance_life_cycle: reader.text("instance-life-cycle"),
        kernel_id: reader.text("kernel-id"),
        ramdisk_id: reader.text("ramdisk-id"),
        product_codes: Some(reader.lines("product-codes").unwrap_or_default()),
        reservation_id: reader.text("reservation-id"),
        pending_time: identity_text("pendingTime"),
        hostname: reader.text("hostname"),
        services_domain: reader.text("services/domain"),
        services_partition: reader.text("services/partition"),
        ..InstanceSpec::default()
    };

    let region = reader
        .text("placement/region")
        .or_else(|| identity_text("region"));
    spec.placement = Some(PlacementSpec {
        region,
        availability_zone: reader.text("placement/availability-zone"),
        availability_zone_id: reader.text("placement/availability-zone-id"),
        group_name: reader.text("placement/group-name"),
        host_id: reader.text("placement/host-id"),
        partition_number: reader.number("placement/partition-number"),
    });

    let interfaces = interfaces(&mut reader);
    // The owner of the interfaces is the account, when the identity document does not say.
    let owner_id = interfaces.first().and_then(|(_, owner)| owner.clone());
    spec.account_id = identity_text("accountId").or(owner_id).or_else(|| {
        reader
            .json("identity-credentials/ec2/info")
            .and_then(|info| json_text(&info, "AccountId"))
    });
    spec.network_interfaces = Some(interfaces.into_iter().map(|(spec, _)| spec).collect());

    spec.block_device_mapping = Some(
        reader
            .names("block-device-mapping")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|name| {
                let device = reader.text(&format!("block-device-mapping/{name}"))?;
                Some((name, device))
            })
            .collect(),
    );

    spec.public_keys = Some(public_keys(&mut reader));
    let (iam, roles) = iam(&mut reader);
    spec.iam = Some(iam);

    let tags_enabled = reader.has_category("tags");
    spec.tags = Some(
        reader
            .names("tags/instance")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|key| {
                let value = reader.text(&format!("tags/instance/{key}"))?;
                Some((key, value))
            })
            .collect::<BTreeMap<_, _>>(),
    );

    spec.events = Some(events(&mut reader));
    let user_data = user_data(capture, &mut reader.notes);
    spec.user_data = user_data.0;
    spec.user_data_base64 = user_data.1;

    spec.metadata_options = Some(OptionsSpec {
        http_tokens: capture
            .tokens_required
            .map(|required| if required { "required" } else { "optional" }.to_owned()),
        // The walk reached the endpoint, so it is on.
        http_endpoint: Some("enabled".to_owned()),
        http_put_response_hop_limit: None,
        // Only a walk over IPv6 shows that the IPv6 endpoint answers.
        http_protocol_ipv6: capture
            .endpoint
            .starts_with("http://[")
            .then(|| "enabled".to_owned()),
        instance_metadata_tags: Some(if tags_enabled { "enabled" } else { "disabled" }.to_owned()),
    });

    Description {
        instance: spec,
        roles,
        notes: reader.notes,
    }
}

/// The interfaces, the primary one (the top-level `mac`) first, then by device number; each
/// with its `owner-id`.
fn interfaces(reader: &mut Reader<'_>) -> Vec<(InterfaceSpec, Option<String>)> {
    let primary_mac = reader.text("mac");
    let macs = reader.names("network/interfaces/macs").unwrap_or_default();
    let mut interfaces = Vec::new();
    for mac in macs {
        let base = format!("network/interfaces/macs/{mac}");
        let key = |name: &str| format!("{base}/{name}");
        let ids = reader.lines(&key("security-group-ids"));
        let names = reader.lines(&key("security-groups"));
        let security_groups = match (ids, names) {
            (None, None) => Vec::new(),
            (ids, names) => {
                let ids = ids.unwrap_or_default();
                let names = names.unwrap_or_default();
                if ids.len() != names.len() {
                    reader.notes.push(format!(
                        "meta-data/{base}: {} security-group-ids but {} security-groups; only pairs are kept",
                        ids.len(),
                        names.len()
                    ));
                }
                ids.into_iter()
                    .zip(names)
                    .map(|(id, name)| SecurityGroupSpec { id, name })
                    .collect()
            }
        };
        let vpc_ipv4_cidr_blocks = reader
            .lines(&key("vpc-ipv4-cidr-blocks"))
            .or_else(|| reader.lines(&key("vpc-ipv4-cidr-block")));
        let network_card_index = reader
            .number(&key("network-card-index"))
            .or_else(|| reader.number(&key("network-card")));
        let interface = InterfaceSpec {
            mac: Some(reader.text(&key("mac")).unwrap_or_else(|| mac.clone())),
            device_number: reader.number(&key("device-number")),
            network_card_index,
            interface_id: reader.text(&key("interface-id")),
            local_hostname: reader.text(&key("local-hostname")),
            local_ipv4s: Some(reader.lines(&key("local-ipv4s")).unwrap_or_default()),
            public_hostname: reader.text(&key("public-hostname")),
            public_ipv4s: Some(reader.lines(&key("public-ipv4s")).unwrap_or_default()),
            ipv6s: Some(reader.lines(&key("ipv6s")).unwrap_or_default()),
            security_groups: Some(security_groups),
            subnet_id: reader.text(&key("subnet-id")),
            subnet_ipv4_cidr_block: reader.text(&key("subnet-ipv4-cidr-block")),
            subnet_ipv6_cidr_blocks: reader.lines(&key("subnet-ipv6-cidr-blocks")),
            vpc_id: reader.text(&key("vpc-id")),
            vpc_ipv4_cidr_blocks,
            vpc_ipv6_cidr_blocks: reader.lines(&key("vpc-ipv6-cidr-blocks")),
            ipv4_prefixes: reader.lines(&key("ipv4-prefix")),
            ipv6_prefixes: reader.lines(&key("ipv6-prefix")),
        };
        let owner = reader.text(&key("owner-id"));
        interfaces.push((interface, owner));
    }
    interfaces.sort_by_key(|(interface, _)| {
        (
            interface.mac != primary_mac,
            interface.device_number.unwrap_or(u32::MAX),
            interface.mac.clone(),
        )
    });
    interfaces
}

/// `public-keys/`: `N=NAME` lines and `N/openssh-key` values, in index order.
fn public_keys(reader: &mut Reader<'_>) -> Vec<PublicKeySpec> {
    let Some(listing) = reader.capture.listing("meta-data/public-keys") else {
        return Vec::new();
    };
    let mut keys: Vec<(u32, PublicKeySpec)> = Vec::new();
    for line in listing
        .split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        let Some((index, name)) = line
            .split_once('=')
            .and_then(|(index, name)| Some((index.parse::<u32>().ok()?, name)))
        else {
            reader.notes.push(format!(
                "meta-data/public-keys: line {line:?} is not INDEX=NAME, left out"
            ));
            continue;
        };
        let Some(openssh_key) = reader.text(&format!("public-keys/{index}/openssh-key")) else {
            reader.notes.push(format!(
                "meta-data/public-keys/{index}/: no openssh-key, key {name:?} left out"
            ));
            continue;
        };
        for other in reader
            .names(&format!("public-keys/{index}"))
            .unwrap_or_default()
        {
            if other != "openssh-key" {
                reader.notes.push(format!(
                    "meta-data/public-keys/{index}/{other}: only openssh-key is kept"
                ));
            }
        }
        keys.push((
            index,
            PublicKeySpec {
                name: name.to_owned(),
                openssh_key,
            },
        ));
    }
    keys.sort_by_key(|(index, _)| *index);
    keys.into_iter().map(|(_, key)| key).collect()
}

/// `iam/`: the instance profile and its role, which gets generated credentials.
fn iam(reader: &mut Reader<'_>) -> (IamSpec, Vec<RoleSpec>) {
    if !reader.has_category("iam") {
        return (
            IamSpec {
                attached: Some(false),
                ..IamSpec::default()
            },
            Vec::new(),
        );
    }
    let info = reader.json("iam/info");
    let roles = reader.names("iam/security-credentials").unwrap_or_default();
    if roles.len() > 1 {
        reader.notes.push(format!(
            "meta-data/iam/security-credentials/: lists {} roles; only the first, {:?}, is kept",
            roles.len(),
            roles[0]
        ));
    }
    let role_name = roles.into_iter().next();
    let spec = IamSpec {
        attached: Some(true),
        role_name: role_name.clone(),
        instance_profile_arn: info
            .as_ref()
            .and_then(|info| json_text(info, "InstanceProfileArn")),
        instance_profile_id: info
            .as_ref()
            .and_then(|info| json_text(info, "InstanceProfileId")),
        extended_credentials: reader.capture.extended_credentials,
    };
    let roles = role_name
        .map(|name| RoleSpec {
            name: Some(name),
            provider: Some("generated".to_owned()),
            ..RoleSpec::default()
        })
        .into_iter()
        .collect();
    (spec, roles)
}

/// Spot, rebalance, maintenance and Auto Scaling notices.
fn events(reader: &mut Reader<'_>) -> EventsSpec {
    let mut events = EventsSpec::default();
    if let Some(action) = reader.json("spot/instance-action") {
        match (json_text(&action, "action"), json_text(&action, "time")) {
            (Some(action), Some(time)) => {
                events.spot_interruption = Some(SpotSpec {
                    action,
                    time,
                    notice_time: None,
                })
            }
            _ => reader
                .notes
                .push("meta-data/spot/instance-action: no action or time, left out".to_owned()),
        }
    }
    if let Some(rebalance) = reader.json("events/recommendations/rebalance") {
        match json_text(&rebalance, "noticeTime") {
            Some(time) => events.rebalance_notice = Some(time),
            None => reader.notes.push(
                "meta-data/events/recommendations/rebalance: no noticeTime, left out".to_owned(),
            ),
        }
    }
    events.target_lifecycle_state = reader.text("autoscaling/target-lifecycle-state");
    let mut maintenance = Vec::new();
    for list in ["scheduled", "history"] {
        let key = format!("events/maintenance/{list}");
        let Some(value) = reader.json(&key) else {
            continue;
        };
        let Some(entries) = value.as_array() else {
            reader
                .notes
                .push(format!("meta-data/{key}: not a JSON list, left out"));
            continue;
        };
        for (index, entry) in entries.iter().enumerate() {
            match maintenance_event(entry) {
                Ok(event) => maintenance.push(event),
                Err(reason) => reader
                    .notes
                    .push(format!("meta-data/{key}: event {index} {reason}, left out")),
            }
        }
    }
    events.maintenance = Some(maintenance);
    events
}

/// One maintenance event of `scheduled` or `history`; `[Completed] ` and `[Canceled] ` are
/// taken off the description, as the server puts them back for events in those states.
fn maintenance_event(entry: &Value) -> Result<MaintenanceSpec, String> {
    let field = |name: &str| json_text(entry, name).ok_or_else(|| format!("has no {name}"));
    let time = |name: &str| -> Result<String, String> {
        let text = field(name)?;
        parse_maintenance_time(&text)
            .map(aws_timestamp)
            .map_err(|_| format!("has {name} {text:?}, not like \"21 Jan 2019 09:00:43 GMT\""))
    };
    let state = field("State")?;
    let mut description = json_text(entry, "Description");
    let prefix = match state.as_str() {
        "completed" => Some("[Completed] "),
        "canceled" => Some("[Canceled] "),
        _ => None,
    };
    if let (Some(prefix), Some(text)) = (prefix, &description) {
        if let Some(rest) = text.strip_prefix(prefix) {
            description = Some(rest.to_owned());
        }
    }
    Ok(MaintenanceSpec {
        code: field("Code")?,
        description,
        event_id: json_text(entry, "EventId"),
        not_before: time("NotBefore")?,
        // Events without an end have no NotAfter.
        not_after: match json_text(entry, "NotAfter") {
            Some(_) => Some(time("NotAfter")?),
            None => None,
        },
        state: Some(state),
        posted_time: None,
    })
}

/// User data as `user-data` (text) or `user-data-base64` (anything else); `user-data = ""`
/// (none) when there is none or it is over EC2's limit.
fn user_data(capture: &Capture, notes: &mut Vec<String>) -> (Option<String>, Option<String>) {
    let Some(bytes) = capture.value("user-data") else {
        return (Some(String::new()), None);
    };
    if bytes.len() > USER_DATA_LIMIT {
        notes.push(format!(
            "user-data: {} bytes is over EC2's limit of {USER_DATA_LIMIT}, left out",
            bytes.len()
        ));
        return (Some(String::new()), None);
    }
    match std::str::from_utf8(bytes) {
        // Carriage returns and other control characters go through base64, so that no TOML
        // reader can change them.
        Ok(text)
            if !text.is_empty()
                && !text.chars().any(|character| {
                    character.is_control() && !matches!(character, '\n' | '\t')
                }) =>
        {
            (Some(text.to_owned()), None)
        }
        _ => (None, Some(STANDARD.encode(bytes))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_user_data(bytes: &[u8], expect: (Option<&str>, Option<&str>)) {
        let mut capture = Capture::default();
        capture.entries.insert(
            "user-data".to_owned(),
            crate::capture::walk::Entry::Value(bytes::Bytes::copy_from_slice(bytes)),
        );
        let mut notes = Vec::new();
        let (text, encoded) = user_data(&capture, &mut notes);
        assert_eq!((text.as_deref(), encoded.as_deref()), expect, "{bytes:?}");
    }

    #[test]
    fn user_data_text_or_base64() {
        check_user_data(
            b"#!/bin/sh\necho hi\n",
            (Some("#!/bin/sh\necho hi\n"), None),
        );
        check_user_data(b"a\r\nb", (None, Some("YQ0KYg==")));
        check_user_data(&[0x1f, 0x8b, 0x08, 0x00], (None, Some("H4sIAA==")));
        check_user_data(b"\0", (None, Some("AA==")));
        let mut notes = Vec::new();
        assert_eq!(
            user_data(&Capture::default(), &mut notes),
            (Some(String::new()), None)
        );
    }

    #[track_caller]
    fn check_event(json: &str, expect: Result<(&str, Option<&str>, &str), &str>) {
        let value: Value = serde_json::from_str(json).unwrap();
        match (maintenance_event(&value), expect) {
            (Ok(event), Ok((state, description, not_before))) => {
                assert_eq!(event.state.as_deref(), Some(state));
                assert_eq!(event.description.as_deref(), description);
                assert_eq!(event.not_before, not_before);
            }
            (Err(error), Err(expect)) => assert!(error.contains(expect), "{error}"),
            (got, expect) => panic!("{json}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn maintenance_events() {
        check_event(
            r#"{"NotBefore": "21 Jan 2019 09:00:43 GMT", "Code": "system-reboot",
                "Description": "scheduled reboot", "EventId": "instance-event-0d59937288b749b32",
                "NotAfter": "21 Jan 2019 09:17:23 GMT", "State": "active"}"#,
            Ok(("active", Some("scheduled reboot"), "2019-01-21T09:00:43Z")),
        );
        check_event(
            r#"{"NotBefore": "1 Feb 2019 09:00:43 GMT", "Code": "instance-stop",
                "Description": "[Completed] scheduled stop", "NotAfter": "1 Feb 2019 10:00:00 GMT",
                "State": "completed"}"#,
            Ok(("completed", Some("scheduled stop"), "2019-02-01T09:00:43Z")),
        );
        check_event(
            r#"{"NotBefore": "1 Feb 2019 09:00:43 GMT", "Code": "instance-stop",
                "Description": "[Completed] but canceled", "NotAfter": "1 Feb 2019 10:00:00 GMT",
                "State": "canceled"}"#,
            Ok((
                "canceled",
                Some("[Completed] but canceled"),
                "2019-02-01T09:00:43Z",
            )),
        );
        check_event(
            r#"{"NotBefore": "2019-01-21T09:00:43Z", "Code": "system-reboot",
                "NotAfter": "21 Jan 2019 09:17:23 GMT", "State": "active"}"#,
            Err("has NotBefore"),
        );
        check_event(r#"{"Code": "system-reboot"}"#, Err("has no State"));
    }
}
