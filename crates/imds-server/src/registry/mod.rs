//! The registry of served instances: who is answered as which instance, and every change the
//! control API makes.
//!
//! Reads (`Registry::resolve`, on every guest request) take no lock: they load the current
//! `Directory` through `ArcSwap` and do one hash lookup by the caller's address. Writes are
//! serialised by one async mutex: each is written to the store first (so an acknowledged change
//! is durable), then applied to the instance's runtime, then a new directory is published.
//!
//! # Layout
//! - `mod.rs`: the `Directory`, the `Registry` and its reads.
//! - `write`: registering, changing and deregistering instances.
//! - `roles`: roles' providers, changed at run time.
//! - `follow`: applying the store's change feed (fleet mode).
//! - `error`: `RegistryError`.
//!
//! In fleet mode (a `host_id`, a shared store) the registry serves only the instances assigned
//! to its host, and `follow` applies what other hosts write, from the store's change feed,
//! through the same `install` and `remove` as the control API's writes. The control API of any
//! host can change, register, move and deregister any instance: an instance served elsewhere is
//! written to the store only, and its host applies the change from its feed.

mod error;
mod follow;
mod roles;
mod write;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use imds_core::{instance::Instance, spec::StoredInstance};
use imds_credentials::spec::RoleSpec;
use imds_store::{InstanceRecord, InstanceWrite, Store};
use tokio::sync::Mutex;

pub use crate::registry::error::RegistryError;
use crate::{
    instance::{runtime::RuntimeHandle, services::Services, slot::InstanceSlot},
    sealing::RoleCodec,
};

/// How long a write waits for its change to be served before answering with `State: pending`.
const APPLY_PATIENCE: Duration = Duration::from_secs(5);

/// The first wait before a failed resynchronisation with the store is tried again; doubled
/// after each failure up to `MAX_RESYNC_BACKOFF`.
const MIN_RESYNC_BACKOFF: Duration = Duration::from_millis(200);

/// The longest wait between attempts to resynchronise.
const MAX_RESYNC_BACKOFF: Duration = Duration::from_secs(5);

/// Who is answered as which instance; replaced as a whole on every change.
#[derive(Debug, Default)]
pub struct Directory {
    by_address: HashMap<IpAddr, Arc<InstanceSlot>>,
    default: Option<Arc<InstanceSlot>>,
}

impl Directory {
    /// The instance a caller from `address` is answered as, if any.
    pub fn resolve(&self, address: IpAddr) -> Option<&Arc<InstanceSlot>> {
        let address = canonical(address);
        self.by_address.get(&address).or(self.default.as_ref())
    }

    /// How many addresses are registered.
    pub fn n_addresses(&self) -> usize {
        self.by_address.len()
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are the IPv4 address they carry.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// One registered instance as the control API shows it.
#[derive(Debug, Clone)]
pub struct InstanceView {
    /// The stored record (id, addresses, revision).
    pub record: InstanceRecord,
    /// Its description and generated identifiers.
    pub stored: StoredInstance,
    /// The resolved instance.
    pub instance: Instance,
    /// True once the snapshot being served shows this revision (`State: applied`).
    pub applied: bool,
    /// Request counters.
    pub counters: (u64, u64),
}

/// A role with its own provider, as the control API shows it.
#[derive(Debug, Clone)]
pub struct RoleView {
    /// The role name.
    pub name: String,
    /// The role's description without its secrets.
    pub spec: RoleSpec,
    /// Bumped by every write.
    pub revision: i64,
    /// When it was last written.
    pub updated_at: time::OffsetDateTime,
    /// The served instances whose role it is, by id.
    pub instance_ids: Vec<String>,
}

/// What stays in memory of a registered instance; its description is read back from the store
/// when the control API needs it, so that idle instances cost as little as possible.
struct Entry {
    record: InstanceRecord,
    /// Shared with the instance's runtime.
    instance: Arc<Instance>,
    handle: RuntimeHandle,
}

struct Writer {
    entries: HashMap<String, Entry>,
    /// The revision of each stored role this host's providers reflect, so that a
    /// resynchronisation with a shared store applies only the roles other hosts changed.
    role_revisions: HashMap<String, i64>,
}

/// The served instances.
pub struct Registry {
    directory: ArcSwap<Directory>,
    writer: Mutex<Writer>,
    store: Arc<dyn Store>,
    services: Services,
    codec: RoleCodec,
    /// When true the instance without addresses also answers callers no other instance claims,
    /// even while others are registered.
    explicit_default: bool,
    /// The host this registry serves in fleet mode; `None` in host mode (every stored instance).
    host_id: Option<String>,
    /// Requests from callers no instance claims.
    pub unknown_callers: AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("addresses", &self.directory.load().n_addresses())
            .field("explicit_default", &self.explicit_default)
            .finish_non_exhaustive()
    }
}

fn parse_stored(record: &InstanceRecord) -> Result<(StoredInstance, Instance), RegistryError> {
    let stored: StoredInstance = serde_json::from_str(&record.spec).map_err(|error| {
        RegistryError::Invalid(format!(
            "stored instance {} is unreadable: {error}",
            record.instance_id
        ))
    })?;
    let instance = resolve(&stored)?;
    Ok((stored, instance))
}

fn resolve(stored: &StoredInstance) -> Result<Instance, RegistryError> {
    stored
        .instance
        .clone()
        .resolve(&stored.generated)
        .map_err(|error| RegistryError::Invalid(error.0))
}

fn write_of(
    stored: &StoredInstance,
    instance: &Instance,
    host_id: Option<String>,
) -> InstanceWrite {
    InstanceWrite {
        instance_id: instance.instance_id.clone(),
        host_id,
        addresses: instance.addresses.iter().copied().map(canonical).collect(),
        spec: serde_json::to_string(stored).expect("specs serialise to JSON"),
    }
}

impl Registry {
    /// Loads every stored role and instance and starts serving them.
    ///
    /// A stored role whose provider `services` already has (the config file's, written to the store
    /// just before) keeps that provider; the others get theirs from their stored description.
    pub async fn load(
        store: Arc<dyn Store>,
        services: Services,
        codec: RoleCodec,
        explicit_default: bool,
    ) -> Result<Registry, RegistryError> {
        Self::load_for_host(store, services, codec, explicit_default, None).await
    }

    /// Loads the instances assigned to `host_id` (all of them without one) and starts serving
    /// them.
    pub async fn load_for_host(
        store: Arc<dyn Store>,
        services: Services,
        codec: RoleCodec,
        explicit_default: bool,
        host_id: Option<String>,
    ) -> Result<Registry, RegistryError> {
        let mut role_revisions = HashMap::new();
        for record in store.list_roles().await? {
            role_revisions.insert(record.name.clone(), record.revision);
            if services.providers.has_own(&record.name) {
                continue;
            }
            let spec = codec.decode(&record).map_err(RegistryError::Invalid)?;
            let provider = spec.provider(services.default_lifetime).map_err(|error| {
                RegistryError::Invalid(format!(
                    "stored role {}: {error}; give the role in the config file's [[roles]] to \
                     replace it",
                    record.name
                ))
            })?;
            services.providers.set(&record.name, provider);
        }
        let mut entries = HashMap::new();
        let records = match &host_id {
            Some(host_id) => store.list_host_instances(host_id).await?,
            None => store.list_instances().await?,
        };
        for mut record in records {
            let (stored, instance) = parse_stored(&record)?;
            // The parsed description is kept; its JSON text need not be.
            record.spec = String::new();
            let instance = Arc::new(instance);
            let handle =
                RuntimeHandle::start(instance.clone(), record.revision, services.clone()).await?;
            drop(stored);
            entries.insert(
                record.instance_id.clone(),
                Entry {
                    record,
                    instance,
                    handle,
                },
            );
        }
        let registry = Registry {
            directory: ArcSwap::from_pointee(Directory::default()),
            writer: Mutex::new(Writer {
                entries,
                role_revisions,
            }),
            store,
            services,
            codec,
            explicit_default,
            host_id,
            unknown_callers: AtomicU64::new(0),
        };
        registry.publish(&*registry.writer.lock().await);
        Ok(registry)
    }

    /// The directory in force; lock-free.
    pub fn directory(&self) -> arc_swap::Guard<Arc<Directory>> {
        self.directory.load()
    }

    /// The role credential cache every instance shares.
    pub fn role_cache(&self) -> &Arc<crate::credentials::RoleCache> {
        &self.services.roles
    }

    /// Counts a request from a caller no instance claims.
    pub fn count_unknown_caller(&self) {
        self.unknown_callers.fetch_add(1, Ordering::Relaxed);
    }

    fn publish(&self, writer: &Writer) {
        let mut by_address = HashMap::new();
        let mut default = None;
        for entry in writer.entries.values() {
            if entry.instance.addresses.is_empty() {
                default = Some(entry.handle.slot.clone());
            }
            for address in &entry.instance.addresses {
                by_address.insert(canonical(*address), entry.handle.slot.clone());
            }
        }
        // With no instance registered by address, every caller is the default instance.
        let default = default.filter(|_| self.explicit_default || by_address.is_empty());
        self.directory.store(Arc::new(Directory {
            by_address,
            default,
        }));
    }

    fn view(entry: &Entry, stored: StoredInstance) -> InstanceView {
        let counters = &entry.handle.slot.counters;
        InstanceView {
            record: entry.record.clone(),
            stored,
            instance: (*entry.instance).clone(),
            applied: entry.handle.slot.applied_revision() >= entry.record.revision,
            counters: (
                counters.no_token.load(Ordering::Relaxed),
                counters.no_token_rejected.load(Ordering::Relaxed),
            ),
        }
    }

    /// The host this registry serves, in fleet mode.
    pub fn host_id(&self) -> Option<&str> {
        self.host_id.as_deref()
    }

    /// Every instance this host serves, by id (descriptions read from the store).
    pub async fn list(&self) -> Result<Vec<InstanceView>, RegistryError> {
        let writer = self.writer.lock().await;
        let mut views = Vec::with_capacity(writer.entries.len());
        let records = match &self.host_id {
            Some(host_id) => self.store.list_host_instances(host_id).await?,
            None => self.store.list_instances().await?,
        };
        for record in records {
            if let Some(entry) = writer.entries.get(&record.instance_id) {
                let (stored, _) = parse_stored(&record)?;
                views.push(Self::view(entry, stored));
            }
        }
        Ok(views)
    }

    /// One instance (its description read from the store). In fleet mode, an instance another
    /// host serves too: its counters are that host's, so they show as zero, and whether its
    /// change is served yet is that host's to say, so it shows as not applied.
    pub async fn describe(&self, instance_id: &str) -> Result<InstanceView, RegistryError> {
        let writer = self.writer.lock().await;
        match writer.entries.get(instance_id) {
            Some(entry) => {
                let (stored, _) = parse_stored(&self.store.get_instance(instance_id).await?)?;
                Ok(Self::view(entry, stored))
            }
            None if self.host_id.is_some() => {
                let record = self.store.get_instance(instance_id).await?;
                let (stored, instance) = parse_stored(&record)?;
                Ok(Self::remote_view(record, stored, instance))
            }
            None => Err(RegistryError::NotFound(instance_id.to_owned())),
        }
    }

    fn remote_view(
        mut record: InstanceRecord,
        stored: StoredInstance,
        instance: Instance,
    ) -> InstanceView {
        record.spec = String::new();
        InstanceView {
            record,
            stored,
            instance,
            applied: false,
            counters: (0, 0),
        }
    }

    /// Whether `host_id` (the host a write names, `None` for this one) is another host.
    fn is_elsewhere(&self, host_id: Option<&str>) -> bool {
        host_id.is_some_and(|host_id| Some(host_id) != self.host_id.as_deref())
    }

    /// The ids of every served instance.
    pub async fn instance_ids(&self) -> Vec<String> {
        let writer = self.writer.lock().await;
        writer.entries.keys().cloned().collect()
    }

    /// The slot of one instance (for tests and counters).
    pub async fn slot(&self, instance_id: &str) -> Option<Arc<InstanceSlot>> {
        let writer = self.writer.lock().await;
        writer
            .entries
            .get(instance_id)
            .map(|entry| entry.handle.slot.clone())
    }

    fn check_default_is_unique(writer: &Writer, instance: &Instance) -> Result<(), RegistryError> {
        if !instance.addresses.is_empty() {
            return Ok(());
        }
        match writer.entries.values().find(|entry| {
            entry.instance.addresses.is_empty()
                && entry.instance.instance_id != instance.instance_id
        }) {
            Some(other) => Err(RegistryError::Conflict(format!(
                "instance {} already answers callers without a registered address; give addresses",
                other.instance.instance_id
            ))),
            None => Ok(()),
        }
    }
}

fn has_role(instance: &Instance, name: &str) -> bool {
    instance
        .iam
        .as_ref()
        .is_some_and(|profile| profile.role_name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_their_ipv4() {
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.2".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "::2".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
