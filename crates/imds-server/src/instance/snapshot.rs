//! Prepared answers for one instance: its whole metadata tree rendered on the first request that
//! needs it, so that a request costs one binary search and a reference-count increment.
//!
//! A snapshot is built from a `Source` and is good until the source is replaced (new
//! credentials, a change through the control API) or until its `valid_until` passes (an event
//! becomes visible, the identity credentials rotate, the role's credentials expire); the next
//! request then builds another. Requests in flight keep the one they started with.

use std::{
    fmt::Write,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use http::HeaderValue;
use imds_core::{
    instance::{is_imds_tag_key, Instance, MaintenanceState},
    managed_ssh_keys::{ManagedKeys, KEY_LIFETIME_SECONDS},
    metadata_tree::{Answer, ContentKind, Flat, Tree, TreeError},
    options::{HttpTokens, MetadataOptions},
    render::{aws_timestamp, http_date, maintenance_time},
};
use imds_credentials::generated::GeneratedProvider;
use rand::{rngs::StdRng, SeedableRng};
use time::OffsetDateTime;

use crate::{
    credentials::{RenderedCredentials, RoleSets},
    identity::{IdentityError, IdentitySigner, Signatures},
    instance::described::Described,
    instance_connect::{InstanceConnectSigner, SignerChain},
    telemetry::{CREDENTIALS_KEY, EXTENDED_CREDENTIALS_KEY},
    wire,
};

/// The role name of the credentials AWS issues to the instance itself.
pub const IDENTITY_ROLE: &str = "ec2-instance";

/// `metrics/vhostmd`, "No longer available" (User Guide) but still there on real instances,
/// holding only an XML declaration (the crawls kept in cloud-init's
/// `tests/unittests/sources/test_ec2.py` and rapid7/metasploit-framework's
/// `aws_ec2_instance_metadata` documentation).
const VHOSTMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

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
    /// What tokenless requests get at the role's credentials paths while tokens are optional:
    /// the IMDSv1 set.
    pub v1_role: Option<V1Answers>,
    /// `Last-Modified` values, rendered once, by the Unix time an answer carries (a handful of
    /// distinct times per instance: launch, credentials, events); sorted by time.
    pub last_modified: Box<[(i64, HeaderValue)]>,
    /// Unix milliseconds from which the snapshot is stale even if its source is not: an event
    /// becomes visible, identity credentials rotate or role credentials expire.
    pub valid_until_ms: i64,
}

/// A role name and the `AccessKeyId` served for it, for the audit log.
pub type ServedSet = (Arc<str>, Arc<str>);

/// The IMDSv1 set of the role, rendered for its credentials paths.
#[derive(Debug)]
pub struct V1Answers {
    /// `iam/security-credentials/ROLE`.
    pub legacy: Bytes,
    /// `iam/security-credentials-extended/ROLE`, where the instance serves that path.
    pub extended: Option<Bytes>,
    /// Its `AccessKeyId` (empty for the error document), for the audit log.
    pub access_key_id: Arc<str>,
    /// When it was last updated (Unix seconds), for `Last-Modified`.
    pub modified: i64,
}

impl Snapshot {
    /// The IMDSv1 answer at the credentials tree key `key`, if `key` is the role's set (legacy
    /// or extended path) and the instance has an IMDSv1 set: its body, and the role and
    /// `AccessKeyId` for the audit log (`None` for the error document).
    pub fn v1_credentials_at(&self, key: &str) -> Option<(&V1Answers, Bytes, Option<ServedSet>)> {
        let v1 = self.v1_role.as_ref()?;
        let (role, _) = self.role_key.as_ref()?;
        let of = |prefix: &str| {
            key.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(&**role)
        };
        let body = if of(CREDENTIALS_KEY) {
            v1.legacy.clone()
        } else if of(EXTENDED_CREDENTIALS_KEY) {
            v1.extended.clone()?
        } else {
            return None;
        };
        let note = (!v1.access_key_id.is_empty()).then(|| (role.clone(), v1.access_key_id.clone()));
        Some((v1, body, note))
    }

    /// The `Last-Modified` value of an answer that last changed at `modified` (Unix seconds).
    pub fn last_modified(&self, modified: i64) -> Option<HeaderValue> {
        self.last_modified
            .binary_search_by_key(&modified, |(time, _)| *time)
            .ok()
            .map(|index| self.last_modified[index].1.clone())
    }

    /// The role and `AccessKeyId` served at the credentials tree key `key` (legacy or extended
    /// path), if it is a set of credentials (not a listing, not an error document).
    pub fn credentials_at(&self, key: &str) -> Option<(Arc<str>, Arc<str>)> {
        let role_of = |prefix: &str| {
            key.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
        };
        let (role, access_key_id) = if let Some(role) =
            role_of(CREDENTIALS_KEY).or_else(|| role_of(EXTENDED_CREDENTIALS_KEY))
        {
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
#[derive(Debug, Default)]
pub struct LazyIdentity {
    /// Boxed: an unsigned identity is then a pointer's worth, not the signatures' size.
    signed: OnceLock<Option<Box<SignedIdentity>>>,
}

impl LazyIdentity {
    /// True once the document is signed (or signing failed): `get` will not block.
    pub fn is_signed(&self) -> bool {
        self.signed.get().is_some()
    }

    /// The signed document of `instance` (always the same instance for one `LazyIdentity`),
    /// signing it with `signer` first if needed; `None` if signing failed, which is logged.
    /// Signing is CPU work of a millisecond or more: callers on an async worker check
    /// `is_signed` first and sign on a blocking thread.
    pub fn get(&self, instance: &Instance, signer: &IdentitySigner) -> Option<&SignedIdentity> {
        self.signed
            .get_or_init(|| match SignedIdentity::new(instance, signer) {
                Ok(signed) => Some(Box::new(signed)),
                Err(error) => {
                    tracing::error!(
                        message = "Could not sign the identity document.",
                        instance_id = %instance.instance_id,
                        %error,
                    );
                    None
                }
            })
            .as_deref()
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
    /// Current IMDSv1 credentials of the attached role, while tokens are optional.
    pub role_credentials_v1: Option<&'a RenderedCredentials>,
    /// Current credentials of the instance identity role.
    pub identity_credentials: &'a RenderedCredentials,
    /// The moment the snapshot shows: events posted later are not in it yet.
    pub now: OffsetDateTime,
    /// EC2 Instance Connect's keys sent to the instance; those active at `now` are served.
    pub managed_keys: &'a ManagedKeys,
    /// EC2 Instance Connect's signer chain for the instance's region and domain, if the server
    /// has a signer.
    pub signer_chain: Option<&'a SignerChain>,
}

/// What snapshots are signed and identity credentials made with: one per server, shared by
/// every source.
#[derive(Debug)]
pub struct Issuer {
    /// Signs identity documents.
    pub signer: Arc<IdentitySigner>,
    /// Makes the instances' own identity credentials (`identity-credentials/ec2/`), which no
    /// role's provider replaces.
    pub identity_credentials: GeneratedProvider,
    /// Signs EC2 Instance Connect's keys and makes the chain `managed-ssh-keys/` serves; without
    /// one, keys are served unsigned and no chain is served.
    pub instance_connect: Option<Arc<InstanceConnectSigner>>,
}

/// An instance's own identity credentials, kept as the seed they are made from: each set is
/// rendered when a snapshot needs it, so an idle instance keeps 16 bytes, not a kilobyte.
///
/// Sets follow each other from `epoch` on the provider's schedule (a new one every sixth of the
/// lifetime, as generated credentials rotate); set `n` is made from `seed` and `n`, so every
/// build in its time answers the same keys.
#[derive(Debug, Clone, Copy)]
pub struct IdentitySeed {
    /// Tells this instance's sets from every other's.
    pub seed: u64,
    /// Unix seconds when the first set was issued.
    pub epoch: i64,
}

impl IdentitySeed {
    /// A new seed, its first set issued at `now`.
    pub fn new(now: OffsetDateTime) -> IdentitySeed {
        IdentitySeed {
            seed: rand::random(),
            epoch: now.unix_timestamp(),
        }
    }

    /// The set in force at `now`, and when the next one takes over.
    pub fn at(
        &self,
        provider: &GeneratedProvider,
        now: OffsetDateTime,
    ) -> (RenderedCredentials, OffsetDateTime) {
        let epoch = OffsetDateTime::from_unix_timestamp(self.epoch)
            .expect("the epoch was a valid time when it was taken");
        let period = provider.refresh_after();
        let elapsed = (now - epoch).max(time::Duration::ZERO);
        let index = (elapsed.whole_milliseconds() / period.whole_milliseconds().max(1)) as u64;
        let issued = epoch + period * (index as f64);
        // A fixed odd multiplier spreads consecutive indexes over the whole seed space.
        let mut rng = StdRng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let credentials = provider.generate_with(&mut rng, issued);
        (
            RenderedCredentials::imds_only(&credentials),
            issued + period,
        )
    }
}

/// What a snapshot is built from. Replaced whole (with a new generation) whenever anything in
/// it changes; the snapshot itself is built on the first request after that, so idle instances
/// keep only this.
#[derive(Debug)]
pub struct Source {
    /// Bumped by every replacement; a snapshot of an older generation is stale.
    pub generation: u64,
    /// The store revision of `instance`.
    pub revision: i64,
    /// The instance, resolved from its description when a snapshot is first built.
    pub instance: Arc<Described>,
    /// Its identity document, signed on first use.
    pub identity: Arc<LazyIdentity>,
    /// Current role credentials (shared with every instance of the role): the IMDSv2 set and,
    /// while tokens are optional, the IMDSv1 set; `None` without a role, and while the first
    /// sets of the role are being fetched.
    pub role_credentials: Option<RoleSets>,
    /// The instance's own identity credentials.
    pub identity_seed: IdentitySeed,
    /// The signer and the identity credentials' provider.
    pub issuer: Arc<Issuer>,
    /// EC2 Instance Connect's keys sent to the instance (kept in the serving process only,
    /// expired ones included until the next key drops them).
    pub managed_keys: Arc<ManagedKeys>,
}

/// Why a source's snapshot could not be built; the instance then answers 404 everywhere.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The tree has conflicting paths (prevented by `check` before a description is stored).
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The stored description did not resolve again.
    #[error("{0}")]
    Unresolved(String),
}

/// Unix milliseconds of `when`.
fn unix_ms(when: OffsetDateTime) -> i64 {
    (when.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Source {
    /// The name of the role whose credentials the source serves, if any.
    pub fn role_name(&self) -> Option<&str> {
        self.instance.role_name.as_deref()
    }

    /// Builds the snapshot at `now`, signing the identity document if not done yet.
    pub fn build(&self, now: OffsetDateTime) -> Result<Snapshot, BuildError> {
        let instance = self.instance.instance().map_err(BuildError::Unresolved)?;
        let placeholder;
        let identity = match self.identity.get(instance, &self.issuer.signer) {
            Some(identity) => identity,
            None => {
                placeholder = SignedIdentity::placeholder();
                &placeholder
            }
        };
        let (identity_credentials, rotation) = self
            .identity_seed
            .at(&self.issuer.identity_credentials, now);
        let mut valid_until = rotation;
        // Expired credentials are never served: past their expiration the role answers AWS's
        // error document until its next set is published.
        let role_name = self.role_name().unwrap_or_default();
        let (expired, expired_v1);
        let role_credentials = match self.role_credentials.as_ref().map(|sets| &*sets.v2) {
            Some(credentials) if credentials.is_valid_at(now) => {
                if let Some(expiration) = credentials.expiration {
                    valid_until = valid_until.min(expiration);
                }
                Some(credentials)
            }
            Some(credentials) => {
                expired = RenderedCredentials::unavailable(role_name, now, credentials.refresh_at);
                Some(&expired)
            }
            None => None,
        };
        // With tokens optional a tokenless caller gets the IMDSv1 set, or the error document
        // while it has none valid; never the IMDSv2 set.
        let role_credentials_v1 = match &self.role_credentials {
            Some(sets) if self.instance.options.http_tokens == HttpTokens::Optional => {
                match sets.v1.as_deref() {
                    Some(credentials) if credentials.is_valid_at(now) => {
                        if let Some(expiration) = credentials.expiration {
                            valid_until = valid_until.min(expiration);
                        }
                        Some(credentials)
                    }
                    other => {
                        let retry_at = other.map_or(now, |credentials| credentials.refresh_at);
                        expired_v1 = RenderedCredentials::unavailable(role_name, now, retry_at);
                        Some(&expired_v1)
                    }
                }
            }
            _ => None,
        };
        if let Some(change) = instance.events.next_change_after(now) {
            valid_until = valid_until.min(change);
        }
        if let Some(expiry) = self.managed_keys.next_expiry_after(now.unix_timestamp()) {
            if let Ok(expiry) = OffsetDateTime::from_unix_timestamp(expiry) {
                valid_until = valid_until.min(expiry);
            }
        }
        let signer_chain = self.issuer.instance_connect.as_ref().and_then(|signer| {
            signer
                .chain(&instance.placement.region, &instance.services_domain, now)
                .map_err(|error| {
                    tracing::warn!(%error, instance_id = %instance.instance_id, "no EC2 Instance Connect signer chain");
                })
                .ok()
        });
        if let Some(chain) = &signer_chain {
            valid_until = valid_until.min(chain.refresh_at);
        }
        let mut snapshot = Snapshot::build(
            instance,
            identity,
            Live {
                role_credentials,
                role_credentials_v1,
                identity_credentials: &identity_credentials,
                now,
                managed_keys: &self.managed_keys,
                signer_chain: signer_chain.as_deref(),
            },
        )?;
        snapshot.generation = self.generation;
        snapshot.valid_until_ms = unix_ms(valid_until);
        Ok(snapshot)
    }
}

/// Checks that every snapshot of `instance` builds: with its role's credentials and every
/// event visible, the most a snapshot of it can hold (a leaf or a listing more can only add
/// conflicts). Done once per description, before it is stored, so that building at request
/// time cannot fail.
#[allow(
    clippy::disallowed_methods,
    reason = "checking a description builds its tree at the present time"
)]
pub fn check(instance: &Instance) -> Result<(), TreeError> {
    let now = OffsetDateTime::now_utc();
    let placeholder = RenderedCredentials::unavailable("role", now, now);
    Snapshot::build(
        instance,
        &SignedIdentity::placeholder(),
        Live {
            role_credentials: Some(&placeholder),
            role_credentials_v1: Some(&placeholder),
            identity_credentials: &placeholder,
            now: now + time::Duration::days(365 * 1000),
            managed_keys: &ManagedKeys::default(),
            signer_chain: None,
        },
    )
    .map(drop)
}

impl Snapshot {
    /// A snapshot that answers nothing (404 everywhere), served only if a validated instance
    /// somehow fails to build.
    pub fn empty(source: &Source) -> Snapshot {
        Snapshot {
            generation: source.generation,
            instance_id: source.instance.instance_id.clone(),
            options: source.instance.options,
            answers: Flat::default(),
            role_key: None,
            identity_key: Arc::from(""),
            v1_role: None,
            last_modified: Box::default(),
            valid_until_ms: i64::MAX,
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
        // 0: an empty directory, with no entry to date it by; it gets no Last-Modified.
        let v1_role =
            instance
                .iam
                .as_ref()
                .zip(live.role_credentials_v1)
                .map(|(profile, credentials)| V1Answers {
                    legacy: credentials.json.clone(),
                    extended: profile
                        .extended_credentials
                        .then(|| extended_document(credentials, &instance.account_id)),
                    access_key_id: Arc::from(credentials.access_key_id.as_str()),
                    modified: credentials
                        .last_updated
                        .max(instance.pending_time)
                        .unix_timestamp(),
                });
        let mut times: Vec<i64> = answers
            .modified()
            .chain(v1_role.as_ref().map(|v1| v1.modified))
            .filter(|time| *time != 0)
            .collect();
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
            v1_role,
            valid_until_ms: i64::MAX,
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
    put(tree, "metrics/vhostmd", VHOSTMD)?;
    put(tree, "system", instance.system.clone())?;
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
        if let Some(card) = interface.network_card {
            put_interface("network-card", card.to_string())?;
        }
        if !interface.ipv4_prefixes.is_empty() {
            put_interface("ipv4-prefix", lines(&interface.ipv4_prefixes))?;
        }
        if !interface.ipv6_prefixes.is_empty() {
            put_interface("ipv6-prefix", lines(&interface.ipv6_prefixes))?;
        }
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
        if let Some(block) = &interface.subnet_ipv4_cidr_block {
            put_interface("subnet-ipv4-cidr-block", block.clone())?;
        }
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
    managed_ssh_keys(tree, instance, live)?;
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
        if profile.extended_credentials {
            // Served for clients that ask for it, but not listed in `iam/`: no capture of a real
            // instance lists it (see docs/behaviour.md).
            tree.unlisted(
                EXTENDED_CREDENTIALS_KEY,
                Answer {
                    body: Bytes::from(profile.role_name.clone()),
                    kind: ContentKind::Listing,
                },
            )?;
            tree.unlisted(
                &format!("{EXTENDED_CREDENTIALS_KEY}/{}", profile.role_name),
                Answer {
                    body: extended_document(credentials, &instance.account_id),
                    kind: ContentKind::Text,
                },
            )?;
        }
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
        let mut any = false;
        for (key, value) in &instance.tags {
            // Keys IMDS cannot carry are left out, as AWS does.
            if is_imds_tag_key(key) {
                put(tree, &format!("tags/instance/{key}"), value.clone())?;
                any = true;
            }
        }
        if !any {
            tree.listing("meta-data/tags/instance", Bytes::new())?;
        }
    } else {
        // With tags disabled, `tags/` is absent but `tags/instance` answers 200 with an empty
        // body, unlisted (aws/amazon-ec2-metadata-mock#189, from a real instance).
        tree.unlisted(
            "meta-data/tags/instance",
            Answer {
                body: Bytes::new(),
                kind: ContentKind::Text,
            },
        )?;
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

/// `managed-ssh-keys/` (docs/behaviour.md, "EC2 Instance Connect"): `signer-cert` and
/// `signer-ocsp/FINGERPRINT` whenever the server has a signer; `active-keys/` while keys are
/// active, listing the OS users with keys, `active-keys/USER` being their document.
fn managed_ssh_keys(tree: &mut Tree, instance: &Instance, live: Live<'_>) -> Result<(), TreeError> {
    if let Some(chain) = live.signer_chain {
        put(
            tree,
            "managed-ssh-keys/signer-cert",
            chain.certificates.clone(),
        )?;
        for (fingerprint, staple) in &chain.staples {
            put(
                tree,
                &format!("managed-ssh-keys/signer-ocsp/{fingerprint}"),
                staple.clone(),
            )?;
        }
    }
    let now = live.now.unix_timestamp();
    let documents = live.managed_keys.documents_at(now, &instance.instance_id);
    if documents.is_empty() {
        return Ok(());
    }
    // Dated from the latest key sent.
    let sent = live
        .managed_keys
        .active_at(now)
        .map(|key| key.expires_at - KEY_LIFETIME_SECONDS)
        .max()
        .and_then(|sent| OffsetDateTime::from_unix_timestamp(sent).ok())
        .map_or(instance.pending_time, |sent| {
            sent.max(instance.pending_time)
        });
    tree.stamp(sent);
    for (user, document) in documents {
        put(
            tree,
            &format!("managed-ssh-keys/active-keys/{user}"),
            document,
        )?;
    }
    Ok(())
}

/// The `security-credentials-extended/ROLE` document: the legacy one with the instance's
/// `AccountId` last; the error document, which carries no credentials, unchanged.
fn extended_document(credentials: &RenderedCredentials, account_id: &str) -> Bytes {
    if credentials.expiration.is_none() {
        return credentials.json.clone();
    }
    Bytes::from(wire::with_account_id(&credentials.json, account_id))
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
