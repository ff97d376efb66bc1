//! Prepared answers for one instance: its whole metadata tree rendered ahead of time, so that a
//! request costs one hash lookup and a reference-count increment.
//!
//! A snapshot is rebuilt whenever something it shows changes (new credentials, an option, an
//! event) and swapped in atomically; requests in flight keep the one they started with.

use std::{
    fmt::Write,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use http::HeaderValue;
use imds_core::{
    instance::{is_imds_tag_key, Instance, MaintenanceState},
    metadata_tree::{Answer, ContentKind, Flat, Tree, TreeError},
    options::MetadataOptions,
    render::{aws_timestamp, http_date, maintenance_time},
};
use time::OffsetDateTime;

use crate::{
    credentials::RenderedCredentials,
    identity::{IdentityError, IdentitySigner, Signatures},
    wire,
};

/// The role name of the credentials AWS issues to the instance itself.
pub const IDENTITY_ROLE: &str = "ec2-instance";

/// Everything the guest API needs to answer one instance, prepared.
#[derive(Debug)]
pub struct Snapshot {
    /// The `Source` generation it was built from.
    pub generation: u64,
    /// The instance id tokens are bound to.
    pub instance_id: Arc<str>,
    /// The options in force.
    pub options: MetadataOptions,
    /// Answers by tree key (path below the API version).
    pub answers: Flat,
    /// The credentials it serves, for the audit log: role name and `AccessKeyId` of
    /// `iam/security-credentials/ROLE` (the key is empty while the role has none valid).
    pub role_key: Option<(Arc<str>, Arc<str>)>,
    /// `AccessKeyId` of the identity credentials.
    pub identity_key: Arc<str>,
    /// `Last-Modified` values, rendered once, by the Unix time an answer carries (a handful of
    /// distinct times per instance: launch, credentials, events); sorted by time.
    pub last_modified: Box<[(i64, HeaderValue)]>,
}

impl Snapshot {
    /// The `Last-Modified` value of an answer that last changed at `modified` (Unix seconds).
    pub fn last_modified(&self, modified: i64) -> Option<HeaderValue> {
        self.last_modified
            .binary_search_by_key(&modified, |(time, _)| *time)
            .ok()
            .map(|index| self.last_modified[index].1.clone())
    }

    /// The role and `AccessKeyId` served at the credentials tree key `key`, if it is a set of
    /// credentials (not a listing, not an error document).
    pub fn credentials_at(&self, key: &str) -> Option<(Arc<str>, Arc<str>)> {
        let (role, access_key_id) =
            if let Some(role) = key.strip_prefix("meta-data/iam/security-credentials/") {
                let (served_role, access_key_id) = self.role_key.as_ref()?;
                if **served_role != *role {
                    return None;
                }
                (served_role.clone(), access_key_id.clone())
            } else if key.strip_prefix("meta-data/identity-credentials/ec2/security-credentials/")
                == Some(IDENTITY_ROLE)
            {
                (Arc::from(IDENTITY_ROLE), self.identity_key.clone())
            } else {
                return None;
            };
        (!access_key_id.is_empty()).then_some((role, access_key_id))
    }
}

/// The signed identity document of an instance; computed once per instance, not per snapshot.
#[derive(Debug, Clone)]
pub struct SignedIdentity {
    /// The document bytes exactly as served and signed.
    pub document: Bytes,
    /// Its signatures.
    pub signatures: Signatures,
}

/// An identity document signed on first use: signing costs milliseconds and kilobytes, and an
/// idle instance needs neither.
#[derive(Debug)]
pub struct LazyIdentity {
    signer: Arc<IdentitySigner>,
    signed: OnceLock<Option<SignedIdentity>>,
}

impl LazyIdentity {
    /// Signs with `signer` when first asked.
    pub fn new(signer: Arc<IdentitySigner>) -> LazyIdentity {
        LazyIdentity {
            signer,
            signed: OnceLock::new(),
        }
    }

    /// The signed document of `instance` (always the same instance for one `LazyIdentity`);
    /// `None` if signing failed, which is logged.
    pub fn get(&self, instance: &Instance) -> Option<&SignedIdentity> {
        self.signed
            .get_or_init(|| match SignedIdentity::new(instance, &self.signer) {
                Ok(signed) => Some(signed),
                Err(error) => {
                    tracing::error!(
                        message = "Could not sign the identity document.",
                        instance_id = %instance.instance_id,
                        %error,
                    );
                    None
                }
            })
            .as_ref()
    }
}

impl SignedIdentity {
    /// A document with empty signatures, for checking that a tree builds.
    fn placeholder() -> SignedIdentity {
        SignedIdentity {
            document: Bytes::from_static(b"{}"),
            signatures: Signatures {
                signature: Bytes::new(),
                pkcs7: Bytes::new(),
                rsa2048: Bytes::new(),
            },
        }
    }

    /// Renders and signs the identity document of `instance`.
    pub fn new(
        instance: &Instance,
        signer: &IdentitySigner,
    ) -> Result<SignedIdentity, IdentityError> {
        let document = Self::document(instance);
        let signatures = signer.sign(document.as_bytes())?;
        Ok(SignedIdentity {
            document: Bytes::from(document),
            signatures,
        })
    }

    /// The identity document of `instance`, exactly as served.
    pub fn document(instance: &Instance) -> String {
        let pending_time = aws_timestamp(instance.pending_time);
        let private_ip = instance
            .primary_interface()
            .and_then(|interface| interface.local_ipv4s.first())
            .map(ToString::to_string);
        wire::to_aws_json(&wire::IdentityDocument {
            account_id: &instance.account_id,
            architecture: &instance.architecture,
            availability_zone: &instance.placement.availability_zone,
            billing_products: None,
            devpay_product_codes: None,
            marketplace_product_codes: None,
            image_id: &instance.ami_id,
            instance_id: &instance.instance_id,
            instance_type: &instance.instance_type,
            kernel_id: instance.kernel_id.as_deref(),
            pending_time: &pending_time,
            private_ip,
            ramdisk_id: instance.ramdisk_id.as_deref(),
            region: &instance.placement.region,
            version: "2017-09-30",
        })
    }
}

/// Inputs that change over an instance's life besides the instance itself.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// Current credentials of the attached role, if any.
    pub role_credentials: Option<&'a RenderedCredentials>,
    /// Current credentials of the instance identity role.
    pub identity_credentials: &'a RenderedCredentials,
    /// The moment the snapshot shows: events posted later are not in it yet.
    pub now: OffsetDateTime,
}

/// What a snapshot is built from. Replaced whole (with a new generation) whenever anything in
/// it changes or an event becomes visible; the snapshot itself is built on the first request
/// after that, so idle instances keep only this.
#[derive(Debug)]
pub struct Source {
    /// Bumped by every replacement; a snapshot of an older generation is stale.
    pub generation: u64,
    /// The instance.
    pub instance: Arc<Instance>,
    /// Its identity document, signed on first use.
    pub identity: Arc<LazyIdentity>,
    /// Current role credentials (shared with every instance of the role).
    pub role_credentials: Option<Arc<RenderedCredentials>>,
    /// Current identity credentials.
    pub identity_credentials: Arc<RenderedCredentials>,
}

impl Source {
    /// Checks that the snapshot builds, without signing anything.
    pub fn check(&self) -> Result<(), TreeError> {
        self.build_with(&SignedIdentity::placeholder(), OffsetDateTime::now_utc())
            .map(drop)
    }

    /// Builds the snapshot at `now`, signing the identity document if not done yet.
    pub fn build(&self, now: OffsetDateTime) -> Result<Snapshot, TreeError> {
        let placeholder;
        let identity = match self.identity.get(&self.instance) {
            Some(identity) => identity,
            None => {
                placeholder = SignedIdentity::placeholder();
                &placeholder
            }
        };
        self.build_with(identity, now)
    }

    fn build_with(
        &self,
        identity: &SignedIdentity,
        now: OffsetDateTime,
    ) -> Result<Snapshot, TreeError> {
        let mut snapshot = Snapshot::build(
            &self.instance,
            identity,
            Live {
                role_credentials: self.role_credentials.as_deref(),
                identity_credentials: &self.identity_credentials,
                now,
            },
        )?;
        snapshot.generation = self.generation;
        Ok(snapshot)
    }
}

impl Snapshot {
    /// A snapshot that answers nothing (404 everywhere), served only if a validated instance
    /// somehow fails to build.
    pub fn empty(source: &Source) -> Snapshot {
        Snapshot {
            generation: source.generation,
            instance_id: Arc::from(source.instance.instance_id.as_str()),
            options: source.instance.options,
            answers: Flat::default(),
            role_key: None,
            identity_key: Arc::from(""),
            last_modified: Box::default(),
        }
    }

    /// Renders every answer of `instance`.
    pub fn build(
        instance: &Instance,
        identity: &SignedIdentity,
        live: Live<'_>,
    ) -> Result<Snapshot, TreeError> {
        let mut tree = Tree::default();
        // What nothing else dates was set at launch.
        tree.stamp(instance.pending_time);
        meta_data(&mut tree, instance, live)?;
        tree.stamp(instance.pending_time);
        dynamic(&mut tree, identity)?;
        let mut root_listing = String::from("dynamic\nmeta-data");
        if let Some(user_data) = &instance.user_data {
            tree.leaf(
                "user-data",
                Answer {
                    body: user_data.clone(),
                    kind: ContentKind::Binary,
                },
            )?;
            root_listing.push_str("\nuser-data");
        }
        // AWS lists the categories below a version without trailing slashes.
        tree.listing("", root_listing)?;
        let answers = tree.flatten();
        let mut times: Vec<i64> = answers.modified().collect();
        times.sort_unstable();
        times.dedup();
        let last_modified = times
            .into_iter()
            .filter_map(|time| {
                let when = OffsetDateTime::from_unix_timestamp(time).ok()?;
                let value = HeaderValue::from_str(&http_date(when)).ok()?;
                Some((time, value))
            })
            .collect();
        Ok(Snapshot {
            generation: 0,
            instance_id: Arc::from(instance.instance_id.as_str()),
            options: instance.options,
            answers,
            last_modified,
            role_key: instance.iam.as_ref().zip(live.role_credentials).map(
                |(profile, credentials)| {
                    (
                        Arc::from(profile.role_name.as_str()),
                        Arc::from(credentials.access_key_id.as_str()),
                    )
                },
            ),
            identity_key: Arc::from(live.identity_credentials.access_key_id.as_str()),
        })
    }
}

fn lines<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn meta_data(tree: &mut Tree, instance: &Instance, live: Live<'_>) -> Result<(), TreeError> {
    put(tree, "ami-id", instance.ami_id.clone())?;
    put(
        tree,
        "ami-launch-index",
        instance.ami_launch_index.to_string(),
    )?;
    put(
        tree,
        "ami-manifest-path",
        instance.ami_manifest_path.clone(),
    )?;
    if !instance.ancestor_ami_ids.is_empty() {
        put(tree, "ancestor-ami-ids", lines(&instance.ancestor_ami_ids))?;
    }
    for (virtual_name, device) in &instance.block_device_mapping {
        put(
            tree,
            &format!("block-device-mapping/{virtual_name}"),
            device.clone(),
        )?;
    }
    put(tree, "hostname", instance.hostname.clone())?;
    put(tree, "instance-action", "none".to_owned())?;
    put(tree, "instance-id", instance.instance_id.clone())?;
    put(
        tree,
        "instance-life-cycle",
        instance.instance_life_cycle.clone(),
    )?;
    put(tree, "instance-type", instance.instance_type.clone())?;
    if let Some(kernel_id) = &instance.kernel_id {
        put(tree, "kernel-id", kernel_id.clone())?;
    }
    if let Some(ramdisk_id) = &instance.ramdisk_id {
        put(tree, "ramdisk-id", ramdisk_id.clone())?;
    }
    if !instance.product_codes.is_empty() {
        put(tree, "product-codes", lines(&instance.product_codes))?;
    }
    put(tree, "reservation-id", instance.reservation_id.clone())?;
    put(tree, "profile", "default-hvm".to_owned())?;
    put(tree, "services/domain", instance.services_domain.clone())?;
    put(
        tree,
        "services/partition",
        instance.services_partition.clone(),
    )?;

    let placement = &instance.placement;
    put(
        tree,
        "placement/availability-zone",
        placement.availability_zone.clone(),
    )?;
    put(
        tree,
        "placement/availability-zone-id",
        placement.availability_zone_id.clone(),
    )?;
    put(tree, "placement/region", placement.region.clone())?;
    if let Some(group_name) = &placement.group_name {
        put(tree, "placement/group-name", group_name.clone())?;
    }
    if let Some(host_id) = &placement.host_id {
        put(tree, "placement/host-id", host_id.clone())?;
    }
    if let Some(partition_number) = placement.partition_number {
        put(
            tree,
            "placement/partition-number",
            partition_number.to_string(),
        )?;
    }

    if let Some(primary) = instance.primary_interface() {
        put(tree, "mac", primary.mac.clone())?;
        put(tree, "local-hostname", primary.local_hostname.clone())?;
        if let Some(address) = primary.local_ipv4s.first() {
            put(tree, "local-ipv4", address.to_string())?;
        }
        if let Some(address) = primary.public_ipv4s.first() {
            put(tree, "public-ipv4", address.to_string())?;
        }
        if let Some(name) = &primary.public_hostname {
            put(tree, "public-hostname", name.clone())?;
        }
        if let Some(address) = primary.ipv6s.first() {
            put(tree, "ipv6", address.to_string())?;
        }
        let names: Vec<&str> = primary
            .security_groups
            .iter()
            .map(|group| group.name.as_str())
            .collect();
        put(tree, "security-groups", names.join("\n"))?;
    }
    for interface in &instance.network_interfaces {
        let base = format!("network/interfaces/macs/{}", interface.mac);
        let mut put_interface =
            |key: &str, value: String| put(tree, &format!("{base}/{key}"), value);
        put_interface("device-number", interface.device_number.to_string())?;
        put_interface(
            "network-card-index",
            interface.network_card_index.to_string(),
        )?;
        put_interface("interface-id", interface.interface_id.clone())?;
        put_interface("local-hostname", interface.local_hostname.clone())?;
        if !interface.local_ipv4s.is_empty() {
            put_interface("local-ipv4s", lines(&interface.local_ipv4s))?;
        }
        put_interface("mac", interface.mac.clone())?;
        put_interface("owner-id", instance.account_id.clone())?;
        if let Some(name) = &interface.public_hostname {
            put_interface("public-hostname", name.clone())?;
        }
        if !interface.public_ipv4s.is_empty() {
            put_interface("public-ipv4s", lines(&interface.public_ipv4s))?;
            // Each public address maps to the private address it is associated with.
            for (public, private) in interface.public_ipv4s.iter().zip(&interface.local_ipv4s) {
                put_interface(&format!("ipv4-associations/{public}"), private.to_string())?;
            }
        }
        if !interface.ipv6s.is_empty() {
            put_interface("ipv6s", lines(&interface.ipv6s))?;
            put_interface(
                "subnet-ipv6-cidr-blocks",
                lines(&interface.subnet_ipv6_cidr_blocks),
            )?;
            put_interface(
                "vpc-ipv6-cidr-blocks",
                lines(&interface.vpc_ipv6_cidr_blocks),
            )?;
        }
        let group_ids: Vec<&str> = interface
            .security_groups
            .iter()
            .map(|group| group.id.as_str())
            .collect();
        let group_names: Vec<&str> = interface
            .security_groups
            .iter()
            .map(|group| group.name.as_str())
            .collect();
        put_interface("security-group-ids", group_ids.join("\n"))?;
        put_interface("security-groups", group_names.join("\n"))?;
        put_interface("subnet-id", interface.subnet_id.clone())?;
        put_interface(
            "subnet-ipv4-cidr-block",
            interface.subnet_ipv4_cidr_block.clone(),
        )?;
        put_interface("vpc-id", interface.vpc_id.clone())?;
        if let Some(first) = interface.vpc_ipv4_cidr_blocks.first() {
            put_interface("vpc-ipv4-cidr-block", first.clone())?;
            put_interface(
                "vpc-ipv4-cidr-blocks",
                lines(&interface.vpc_ipv4_cidr_blocks),
            )?;
        }
    }

    if !instance.public_keys.is_empty() {
        let mut listing = String::new();
        for (index, key) in instance.public_keys.iter().enumerate() {
            if index > 0 {
                listing.push('\n');
            }
            write!(listing, "{index}={}", key.name).expect("writing to a String cannot fail");
            put(
                tree,
                &format!("public-keys/{index}/openssh-key"),
                key.openssh_key.clone(),
            )?;
        }
        tree.listing("meta-data/public-keys", listing)?;
    }

    // Answers made from credentials or events date from when those were issued or posted.
    let since = |when: OffsetDateTime| when.max(instance.pending_time);
    if let (Some(profile), Some(credentials)) = (&instance.iam, live.role_credentials) {
        tree.stamp(since(credentials.last_updated));
        put(
            tree,
            "iam/info",
            wire::to_aws_json(&wire::IamInfo {
                code: "Success",
                last_updated: &aws_timestamp(credentials.last_updated),
                instance_profile_arn: &profile.instance_profile_arn,
                instance_profile_id: &profile.instance_profile_id,
            }),
        )?;
        put(
            tree,
            &format!("iam/security-credentials/{}", profile.role_name),
            credentials.json.clone(),
        )?;
    }
    let identity_credentials = live.identity_credentials;
    tree.stamp(since(identity_credentials.last_updated));
    put(
        tree,
        "identity-credentials/ec2/info",
        wire::to_aws_json(&wire::IdentityCredentialsInfo {
            code: "Success",
            last_updated: &aws_timestamp(identity_credentials.last_updated),
            account_id: &instance.account_id,
        }),
    )?;
    put(
        tree,
        &format!("identity-credentials/ec2/security-credentials/{IDENTITY_ROLE}"),
        identity_credentials.json.clone(),
    )?;

    tree.stamp(instance.pending_time);
    if instance.options.instance_metadata_tags.is_enabled() {
        for (key, value) in &instance.tags {
            // Keys IMDS cannot carry are left out, as AWS does.
            if is_imds_tag_key(key) {
                put(tree, &format!("tags/instance/{key}"), value.clone())?;
            }
        }
    }

    let events = &instance.events;
    let maintenance = |history: bool| {
        let shown = || {
            events
                .maintenance
                .iter()
                .filter(|event| event.posted_time <= live.now)
                .filter(move |event| (event.state != MaintenanceState::Active) == history)
        };
        let posted = shown()
            .map(|event| event.posted_time)
            .max()
            .map_or(instance.pending_time, since);
        let entries: Vec<wire::MaintenanceEvent<'_>> = shown()
            .map(|event| wire::MaintenanceEvent {
                not_before: maintenance_time(event.not_before),
                code: &event.code,
                description: match event.state {
                    MaintenanceState::Active => event.description.clone(),
                    MaintenanceState::Completed => format!("[Completed] {}", event.description),
                    MaintenanceState::Canceled => format!("[Canceled] {}", event.description),
                },
                event_id: &event.event_id,
                not_after: event.not_after.map(maintenance_time),
                state: event.state.as_str(),
            })
            .collect();
        (posted, wire::to_aws_json(&entries))
    };
    for (key, history) in [
        ("events/maintenance/scheduled", false),
        ("events/maintenance/history", true),
    ] {
        let (posted, document) = maintenance(history);
        tree.stamp(posted);
        put(tree, key, document)?;
    }
    if let Some(notice_time) = events.rebalance_notice.filter(|notice| *notice <= live.now) {
        tree.stamp(since(notice_time));
        put(
            tree,
            "events/recommendations/rebalance",
            wire::to_compact_json(&wire::RebalanceRecommendation {
                notice_time: &aws_timestamp(notice_time),
            }),
        )?;
    }
    if let Some(interruption) = events
        .spot_interruption
        .as_ref()
        .filter(|interruption| interruption.notice_time <= live.now)
    {
        tree.stamp(since(interruption.notice_time));
        let time = aws_timestamp(interruption.time);
        put(
            tree,
            "spot/instance-action",
            wire::to_compact_json(&wire::SpotInstanceAction {
                action: &interruption.action,
                time: &time,
            }),
        )?;
        put(tree, "spot/termination-time", time)?;
    }
    if let Some(target) = events
        .target_lifecycle_state
        .as_ref()
        .filter(|target| target.time <= live.now)
    {
        tree.stamp(since(target.time));
        put(
            tree,
            "autoscaling/target-lifecycle-state",
            target.state.clone(),
        )?;
    }
    Ok(())
}

/// Puts a text value below `meta-data/`.
fn put(tree: &mut Tree, path: &str, value: impl Into<Bytes>) -> Result<(), TreeError> {
    tree.text(&format!("meta-data/{path}"), value)
}

fn dynamic(tree: &mut Tree, identity: &SignedIdentity) -> Result<(), TreeError> {
    tree.text(
        "dynamic/instance-identity/document",
        identity.document.clone(),
    )?;
    tree.text(
        "dynamic/instance-identity/signature",
        identity.signatures.signature.clone(),
    )?;
    tree.text(
        "dynamic/instance-identity/pkcs7",
        identity.signatures.pkcs7.clone(),
    )?;
    tree.text(
        "dynamic/instance-identity/rsa2048",
        identity.signatures.rsa2048.clone(),
    )?;
    tree.text("dynamic/fws/instance-monitoring", "disabled")?;
    Ok(())
}
