//! The registry of served instances: who is answered as which instance, and every change the
//! control API makes.
//!
//! # Locks
//! - Reads take no lock. Guest requests load the `Directory` (address → slot) through
//!   `ArcSwap`; the control API and `/metrics` load the id → entry map the same way, and read
//!   descriptions from the store.
//! - Writes to one instance wait for each other, and only for each other: a per-instance async
//!   lock (`KeyedLocks`) is held across the store write and the publication of the new maps,
//!   never across a credential fetch or the wait for a change to be served, which happen after
//!   it is released. Writes that make an instance the default one (no addresses) also take the
//!   lock of the default slot, after their own, so two of them cannot both succeed.
//! - Publishing the maps is a short read-modify-write of the two `ArcSwap`s under a
//!   `std::sync::Mutex` (`publishing`) that is never held across an await.
//! - Role writes wait for writes to the same role (`role_locks`), and only across the store
//!   write and the provider swap.
//!
//! A write is durable once the store acknowledged it; the instance then serves it as soon as its
//! credentials are there (`instance::runtime`), and the write answers `State: pending` if that
//! takes longer than the apply patience.
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

#[cfg(test)]
pub(crate) mod sqlite_tests;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use imds_core::{instance::Instance, spec::StoredInstance};
use imds_credentials::spec::RoleSpec;
use imds_store::{InstanceRecord, InstanceWrite, Store};
use tokio::sync::OwnedMutexGuard;

pub use crate::registry::error::RegistryError;
use crate::{
    instance::{
        described::Described,
        runtime::{Runtime, Urgency},
        services::Services,
        slot::InstanceSlot,
        snapshot,
    },
    sealing::RoleCodec,
};

/// How long a write waits for its change to be served before answering `State: pending`, unless
/// the server says otherwise (`--apply-patience-ms`).
pub const DEFAULT_APPLY_PATIENCE: Duration = Duration::from_secs(5);

/// How many credential fetches run at once in the background (start-up, the change feed,
/// renewals), unless the server says otherwise (`--credential-fetch-concurrency`).
pub const DEFAULT_FETCH_CONCURRENCY: usize = 16;

/// The first wait before a failed resynchronisation with the store is tried again; doubled
/// after each failure up to `MAX_RESYNC_BACKOFF`.
const MIN_RESYNC_BACKOFF: Duration = Duration::from_millis(200);

/// The longest wait between attempts to resynchronise.
const MAX_RESYNC_BACKOFF: Duration = Duration::from_secs(5);

/// The key of the lock that writes making an instance the default one also take. Instance ids
/// are never empty, so it names no instance.
const DEFAULT_LOCK: &str = "";

/// The registry's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// When true the instance without addresses also answers callers no other instance claims,
    /// even while others are registered.
    pub explicit_default: bool,
    /// How long a control-API write waits for its change to be served.
    pub apply_patience: Duration,
    /// How many credential fetches run at once in the background.
    pub fetch_concurrency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            explicit_default: false,
            apply_patience: DEFAULT_APPLY_PATIENCE,
            fetch_concurrency: DEFAULT_FETCH_CONCURRENCY,
        }
    }
}

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

/// What stays in memory of a served instance; its description is read back from the store when
/// the control API needs it, so that idle instances cost as little as possible.
#[derive(Debug)]
struct Entry {
    /// The store revision last written (it may not be served yet).
    revision: i64,
    /// The instance at that revision; shared with the source once it is served.
    instance: Arc<Described>,
    /// What requests read; kept across changes.
    slot: Arc<InstanceSlot>,
}

/// The served instances by id.
type Entries = HashMap<Arc<str>, Arc<Entry>>;

/// Async locks by key, made when first asked for and dropped when nobody holds or waits for
/// them, so that idle instances keep none.
#[derive(Debug, Default)]
struct KeyedLocks(std::sync::Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    /// Waits for the lock of `key`.
    async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .0
                .lock()
                .expect("the lock table is never held across a panic");
            match locks.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    if locks.len() >= 64 {
                        locks.retain(|_, lock| lock.strong_count() > 0);
                    }
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// The served instances.
pub struct Registry {
    /// Who is answered as which instance; read by every guest request.
    directory: ArcSwap<Directory>,
    /// The served instances by id; read by the control API.
    entries: ArcSwap<Entries>,
    /// Held while a new `entries` and `directory` are made from the current ones and published;
    /// never across an await.
    publishing: std::sync::Mutex<()>,
    /// Writes to one instance (and to the default slot) wait for each other here.
    instance_locks: KeyedLocks,
    /// Writes to one role wait for each other here.
    role_locks: KeyedLocks,
    /// The revision of each stored role this host's providers reflect, so that a
    /// resynchronisation with a shared store applies only the roles other hosts changed.
    role_revisions: std::sync::Mutex<HashMap<String, i64>>,
    store: Arc<dyn Store>,
    runtime: Runtime,
    codec: RoleCodec,
    settings: Settings,
    /// The host this registry serves in fleet mode; `None` in host mode (every stored instance).
    host_id: Option<String>,
    /// Requests from callers no instance claims.
    pub unknown_callers: AtomicU64,
    /// The task table the change feed keeps in line with the store (fleet mode), once set.
    followed_tasks: std::sync::OnceLock<crate::container_api::Tasks>,
    /// The Pod Identity associations the change feed keeps in line with the store, once set.
    followed_associations: std::sync::OnceLock<crate::container_api::Associations>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("addresses", &self.directory.load().n_addresses())
            .field("settings", &self.settings)
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

/// Resolves a description and checks that its snapshots build.
fn resolve(stored: &StoredInstance) -> Result<Instance, RegistryError> {
    let instance = stored
        .instance
        .clone()
        .resolve(&stored.generated)
        .map_err(|error| RegistryError::Invalid(error.0))?;
    snapshot::check(&instance)
        .map_err(|error| RegistryError::Invalid(format!("instance: {error}")))?;
    Ok(instance)
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
    /// A stored role whose provider `services` already has (the config file's, written to the
    /// store just before) keeps that provider; the others get theirs from their stored
    /// description. Serving starts without waiting for any credentials: instances whose role's
    /// credentials need an upstream get them in the background, at most
    /// `settings.fetch_concurrency` fetches at a time, and answer without them meanwhile.
    pub async fn load(
        store: Arc<dyn Store>,
        services: Services,
        codec: RoleCodec,
        settings: Settings,
    ) -> Result<Registry, RegistryError> {
        Self::load_for_host(store, services, codec, settings, None).await
    }

    /// Loads the instances assigned to `host_id` (all of them without one) and starts serving
    /// them, as `load` does.
    pub async fn load_for_host(
        store: Arc<dyn Store>,
        services: Services,
        codec: RoleCodec,
        settings: Settings,
        host_id: Option<String>,
    ) -> Result<Registry, RegistryError> {
        let mut role_revisions = HashMap::new();
        for record in store.list_roles().await? {
            role_revisions.insert(record.name.clone(), record.revision);
            if services.providers.has_own(&record.name) {
                continue;
            }
            let spec = codec.decode(&record).map_err(RegistryError::Invalid)?;
            let provider = spec
                .provider(&services.provider_settings)
                .map_err(|error| {
                    RegistryError::Invalid(format!(
                        "stored role {}: {error}; give the role in the config file's [[roles]] \
                         to replace it",
                        record.name
                    ))
                })?;
            services.providers.set(&record.name, provider);
        }
        let runtime = Runtime::new(services, settings.fetch_concurrency);
        let records = match &host_id {
            Some(host_id) => store.list_host_instances(host_id).await?,
            None => store.list_instances().await?,
        };
        let mut entries = Entries::with_capacity(records.len());
        for record in records {
            let (_, instance) = parse_stored(&record)?;
            let instance = Arc::new(Described::new(record.spec, &instance));
            let (slot, _) = runtime.start(instance.clone(), record.revision, Urgency::Background);
            entries.insert(
                instance.instance_id.clone(),
                Arc::new(Entry {
                    revision: record.revision,
                    instance,
                    slot,
                }),
            );
        }
        let registry = Registry {
            directory: ArcSwap::from_pointee(Directory::default()),
            entries: ArcSwap::from_pointee(Entries::new()),
            publishing: std::sync::Mutex::new(()),
            instance_locks: KeyedLocks::default(),
            role_locks: KeyedLocks::default(),
            role_revisions: std::sync::Mutex::new(role_revisions),
            store,
            runtime,
            codec,
            settings,
            host_id,
            unknown_callers: AtomicU64::new(0),
            followed_tasks: std::sync::OnceLock::new(),
            followed_associations: std::sync::OnceLock::new(),
        };
        registry.publish(|current| current.extend(entries));
        Ok(registry)
    }

    /// The directory in force; lock-free.
    pub fn directory(&self) -> arc_swap::Guard<Arc<Directory>> {
        self.directory.load()
    }

    /// The role credential cache every instance shares.
    pub fn role_cache(&self) -> &Arc<crate::credentials::RoleCache> {
        &self.runtime.services().roles
    }

    /// How the store's change feed is doing (fleet mode), for `/metrics`; `None` without one.
    pub fn feed_health(&self) -> Option<imds_store::FeedHealth> {
        self.store.feed_health()
    }

    /// Counts a request from a caller no instance claims.
    pub fn count_unknown_caller(&self) {
        self.unknown_callers.fetch_add(1, Ordering::Relaxed);
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The entry of `instance_id`, lock-free.
    fn entry(&self, instance_id: &str) -> Option<Arc<Entry>> {
        self.entries.load().get(instance_id).cloned()
    }

    /// Publishes new maps: `change` edits a copy of the entries, and the directory is made again
    /// from the result. The only place the maps change.
    fn publish(&self, change: impl FnOnce(&mut Entries)) {
        let _publishing = self
            .publishing
            .lock()
            .expect("publishing never panics while it holds the lock");
        let mut entries = Entries::clone(&self.entries.load());
        change(&mut entries);
        let mut by_address = HashMap::with_capacity(entries.len());
        let mut default = None;
        for entry in entries.values() {
            if entry.instance.addresses.is_empty() {
                default = Some(entry.slot.clone());
            }
            for address in &entry.instance.addresses {
                by_address.insert(canonical(*address), entry.slot.clone());
            }
        }
        // With no instance registered by address, every caller is the default instance.
        let default = default.filter(|_| self.settings.explicit_default || by_address.is_empty());
        self.entries.store(Arc::new(entries));
        self.directory.store(Arc::new(Directory {
            by_address,
            default,
        }));
    }

    /// The view of `record` (with its description `stored`, resolved as `instance`), served by
    /// `entry`. Everything shown comes from the record, so that a view read while a write is
    /// between the store and the maps is still of one revision.
    fn view(
        entry: &Entry,
        stored: StoredInstance,
        instance: Instance,
        mut record: InstanceRecord,
    ) -> InstanceView {
        let counters = &entry.slot.counters;
        record.spec = String::new();
        InstanceView {
            applied: entry.slot.applied_revision() >= record.revision,
            record,
            stored,
            instance,
            counters: (
                counters.no_token.load(Ordering::Relaxed),
                counters.no_token_rejected.load(Ordering::Relaxed),
            ),
        }
    }

    /// The store the instances are kept in (and the tasks, beside them).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Has the change feed keep `tasks` in line with the store as well: a task another host
    /// registers for this one, or deregisters, is served or dropped. Only the first call counts.
    pub fn follow_tasks(&self, tasks: crate::container_api::Tasks) {
        let _ = self.followed_tasks.set(tasks);
    }

    /// Has the change feed keep `associations` in line with the store as well: an association
    /// another host creates, changes or deletes is served as changed. Only the first call counts.
    pub fn follow_associations(&self, associations: crate::container_api::Associations) {
        let _ = self.followed_associations.set(associations);
    }

    /// The host this registry serves, in fleet mode.
    pub fn host_id(&self) -> Option<&str> {
        self.host_id.as_deref()
    }

    /// Every instance this host serves, by id (descriptions read from the store); takes no
    /// lock.
    pub async fn list(&self) -> Result<Vec<InstanceView>, RegistryError> {
        let records = match &self.host_id {
            Some(host_id) => self.store.list_host_instances(host_id).await?,
            None => self.store.list_instances().await?,
        };
        let entries = self.entries.load();
        let mut views = Vec::with_capacity(entries.len());
        for record in records {
            if let Some(entry) = entries.get(record.instance_id.as_str()) {
                let (stored, instance) = parse_stored(&record)?;
                views.push(Self::view(entry, stored, instance, record));
            }
        }
        Ok(views)
    }

    /// One instance (its description read from the store); takes no lock. In fleet mode, an
    /// instance another host serves too: its counters are that host's, so they show as zero,
    /// and whether its change is served yet is that host's to say, so it shows as not applied.
    pub async fn describe(&self, instance_id: &str) -> Result<InstanceView, RegistryError> {
        match self.entry(instance_id) {
            Some(entry) => {
                let record = self.store.get_instance(instance_id).await?;
                let (stored, instance) = parse_stored(&record)?;
                Ok(Self::view(&entry, stored, instance, record))
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

    /// The ids of every served instance; lock-free.
    pub fn instance_ids(&self) -> Vec<String> {
        self.entries
            .load()
            .keys()
            .map(|id| id.to_string())
            .collect()
    }

    /// Adds EC2 Instance Connect's `key` to what `slot` (one of this registry's) serves; see
    /// `Runtime::add_managed_key`.
    pub fn add_managed_key(
        &self,
        slot: &InstanceSlot,
        key: &imds_core::managed_ssh_keys::ManagedKey,
        now: i64,
    ) {
        self.runtime.add_managed_key(slot, key, now);
    }

    /// The slot of one instance (for counters and tests); lock-free.
    pub fn slot(&self, instance_id: &str) -> Option<Arc<InstanceSlot>> {
        self.entry(instance_id).map(|entry| entry.slot.clone())
    }

    /// Refuses a second instance without addresses (callers hold the default lock).
    fn check_default_is_unique(&self, instance: &Instance) -> Result<(), RegistryError> {
        if !instance.addresses.is_empty() {
            return Ok(());
        }
        match self.entries.load().values().find(|entry| {
            entry.instance.addresses.is_empty()
                && *entry.instance.instance_id != *instance.instance_id
        }) {
            Some(other) => Err(RegistryError::Conflict(format!(
                "instance {} already answers callers without a registered address; give addresses",
                other.instance.instance_id
            ))),
            None => Ok(()),
        }
    }

    /// The default slot's lock, for a write that leaves `instance` without addresses.
    async fn default_lock(&self, instance: &Instance) -> Option<OwnedMutexGuard<()>> {
        if instance.addresses.is_empty() {
            Some(self.instance_locks.lock(DEFAULT_LOCK).await)
        } else {
            None
        }
    }
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
