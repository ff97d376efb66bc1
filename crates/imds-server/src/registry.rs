//! The registry of served instances: who is answered as which instance, and every change the
//! control API makes.
//!
//! Reads (`Registry::resolve`, on every guest request) take no lock: they load the current
//! `Directory` through `ArcSwap` and do one hash lookup by the caller's address. Writes are
//! serialised by one async mutex: each is written to the store first (so an acknowledged change
//! is durable), then applied to the instance's runtime, then a new directory is published.
//!
//! In fleet mode (a `host_id`, a shared store) the registry serves only the instances assigned
//! to its host, and `follow` applies what other hosts write, from the store's change feed,
//! through the same `install` and `remove` as the control API's writes. The control API of any
//! host can change, register, move and deregister any instance: an instance served elsewhere is
//! written to the store only, and its host applies the change from its feed.

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
use imds_core::{
    instance::Instance,
    spec::{Generated, InstanceSpec, StoredInstance},
};
use imds_credentials::spec::{check_role_name, RoleSpec};
use imds_store::{InstanceRecord, InstanceWrite, RoleRecord, RoleWrite, Store, StoreError};
use thiserror::Error;
use tokio::sync::Mutex;

use crate::{
    runtime::{Makers, PrepareError, RuntimeHandle},
    state::InstanceSlot,
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

/// A change could not be made.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// No such instance.
    #[error("instance {0} is not registered")]
    NotFound(String),
    /// No such role (it has no provider of its own).
    #[error("role {0} has no provider of its own")]
    RoleNotFound(String),
    /// The change conflicts with what is registered (id or address taken, stale revision).
    #[error("{0}")]
    Conflict(String),
    /// The description is not valid; the message names the key.
    #[error("{0}")]
    Invalid(String),
    /// The store failed or is unreachable; nothing was changed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The instance could not be prepared for serving.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
}

impl From<StoreError> for RegistryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => RegistryError::NotFound(id),
            StoreError::RoleNotFound(name) => RegistryError::RoleNotFound(name),
            StoreError::Conflict(message) => RegistryError::Conflict(message),
            StoreError::Unavailable(message) => RegistryError::Unavailable(message),
            StoreError::Config(message) => RegistryError::Unavailable(message),
            StoreError::Other(error) => RegistryError::Unavailable(error.to_string()),
        }
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
    makers: Makers,
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
    /// A stored role whose provider `makers` already has (the config file's, written to the store
    /// just before) keeps that provider; the others get theirs from their stored description.
    pub async fn load(
        store: Arc<dyn Store>,
        makers: Makers,
        explicit_default: bool,
    ) -> Result<Registry, RegistryError> {
        Self::load_for_host(store, makers, explicit_default, None).await
    }

    /// Loads the instances assigned to `host_id` (all of them without one) and starts serving
    /// them.
    pub async fn load_for_host(
        store: Arc<dyn Store>,
        makers: Makers,
        explicit_default: bool,
        host_id: Option<String>,
    ) -> Result<Registry, RegistryError> {
        let mut role_revisions = HashMap::new();
        for record in store.list_roles().await? {
            role_revisions.insert(record.name.clone(), record.revision);
            if makers.providers.has_own(&record.name) {
                continue;
            }
            let spec = makers
                .decode_role(&record)
                .map_err(RegistryError::Invalid)?;
            let provider = spec.provider(makers.default_lifetime).map_err(|error| {
                RegistryError::Invalid(format!(
                    "stored role {}: {error}; give the role in the config file's [[roles]] to \
                     replace it",
                    record.name
                ))
            })?;
            makers.providers.set(&record.name, provider);
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
                RuntimeHandle::start(instance.clone(), record.revision, makers.clone()).await?;
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
            makers,
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
        &self.makers.roles
    }

    /// How the store's change feed is doing (fleet mode), for `/metrics`; `None` without one.
    pub fn feed_health(&self) -> Option<imds_store::FeedHealth> {
        self.store.feed_health()
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

    /// Registers a new instance; identifiers it leaves out are generated now and kept.
    pub async fn register(&self, spec: InstanceSpec) -> Result<InstanceView, RegistryError> {
        self.register_on(spec, None).await
    }

    /// Registers a new instance on `host_id` (fleet mode; `None`: this host). An instance for
    /// another host is only written to the store; that host serves it from its change feed.
    pub async fn register_on(
        &self,
        spec: InstanceSpec,
        host_id: Option<&str>,
    ) -> Result<InstanceView, RegistryError> {
        self.check_host_id(host_id)?;
        let generated = Generated::random();
        let stored = StoredInstance {
            generated,
            instance: spec,
        };
        let instance = resolve(&stored)?;
        let mut writer = self.writer.lock().await;
        if self.is_elsewhere(host_id) {
            let record = self
                .store
                .create_instance(write_of(&stored, &instance, host_id.map(str::to_owned)))
                .await?;
            return Ok(Self::remote_view(record, stored, instance));
        }
        Self::check_default_is_unique(&writer, &instance)?;
        let record = self
            .store
            .create_instance(write_of(&stored, &instance, self.host_id.clone()))
            .await?;
        self.install(&mut writer, record, stored, instance).await
    }

    /// A host id given in host mode is refused: there is no other host to serve the instance.
    fn check_host_id(&self, host_id: Option<&str>) -> Result<(), RegistryError> {
        match (host_id, &self.host_id) {
            (Some(_), None) => Err(RegistryError::Invalid(
                "host-id: this server is not in fleet mode (serve with --host-id and a shared \
                 --store)"
                    .to_owned(),
            )),
            (Some(host_id), Some(_)) => check_host_id(host_id)
                .map_err(|message| RegistryError::Invalid(format!("host-id: {message}"))),
            _ => Ok(()),
        }
    }

    /// Creates or replaces an instance from the config file, keeping the identifiers generated
    /// for it before if it was stored already.
    pub async fn upsert(
        &self,
        spec: InstanceSpec,
        fallback: Generated,
    ) -> Result<InstanceView, RegistryError> {
        let mut writer = self.writer.lock().await;
        let existing = match spec.instance_id.as_ref() {
            Some(id) if writer.entries.contains_key(id) => Some(
                parse_stored(&self.store.get_instance(id).await?)?
                    .0
                    .generated,
            ),
            _ => None,
        };
        let stored = StoredInstance {
            generated: existing.unwrap_or(fallback),
            instance: spec,
        };
        let instance = resolve(&stored)?;
        Self::check_default_is_unique(&writer, &instance)?;
        let record = self
            .store
            .upsert_instance(write_of(&stored, &instance, self.host_id.clone()))
            .await?;
        self.install(&mut writer, record, stored, instance).await
    }

    /// Makes `spec` (which has no addresses) the default instance, deregistering a previous
    /// default instance of another id: the config file names the default instance.
    pub async fn set_default(
        &self,
        spec: InstanceSpec,
        fallback: Generated,
    ) -> Result<InstanceView, RegistryError> {
        let previous: Vec<String> = {
            let writer = self.writer.lock().await;
            writer
                .entries
                .values()
                .filter(|entry| entry.instance.addresses.is_empty())
                .map(|entry| entry.instance.instance_id.clone())
                .filter(|id| Some(id) != spec.instance_id.as_ref())
                .collect()
        };
        for instance_id in previous {
            tracing::info!(message = "Replacing the previous default instance.", instance_id = %instance_id);
            self.deregister(&instance_id).await?;
        }
        self.upsert(spec, fallback).await
    }

    /// Applies an RFC 7396 JSON merge patch to an instance's description.
    pub async fn update(
        &self,
        instance_id: &str,
        patch: &serde_json::Value,
        expected_revision: Option<i64>,
    ) -> Result<InstanceView, RegistryError> {
        self.update_on(instance_id, patch, expected_revision, None)
            .await
    }

    /// Applies a merge patch to an instance's description and, with `move_to` (fleet mode),
    /// assigns it to that host: the host losing it stops serving it and the host gaining it
    /// starts, each as soon as it learns of the change.
    pub async fn update_on(
        &self,
        instance_id: &str,
        patch: &serde_json::Value,
        expected_revision: Option<i64>,
        move_to: Option<&str>,
    ) -> Result<InstanceView, RegistryError> {
        self.check_host_id(move_to)?;
        let mut writer = self.writer.lock().await;
        let local_revision = writer
            .entries
            .get(instance_id)
            .map(|entry| entry.record.revision);
        if local_revision.is_none() && self.host_id.is_none() {
            return Err(RegistryError::NotFound(instance_id.to_owned()));
        }
        // The patch applies to the stored description, so the write expects the stored revision
        // (in fleet mode another host may have written since this one applied its last change).
        let current_record = self.store.get_instance(instance_id).await?;
        let current_revision = current_record.revision;
        let (current, _) = parse_stored(&current_record)?;
        let mut document =
            serde_json::to_value(&current.instance).expect("specs serialise to JSON");
        merge_patch(&mut document, patch);
        let spec: InstanceSpec = serde_json::from_value(document)
            .map_err(|error| RegistryError::Invalid(format!("instance: {error}")))?;
        if spec
            .instance_id
            .as_deref()
            .is_some_and(|id| id != instance_id)
        {
            return Err(RegistryError::Invalid(
                "instance.instance-id: an instance id cannot change; register a new instance"
                    .to_owned(),
            ));
        }
        let stored = StoredInstance {
            generated: current.generated,
            instance: spec,
        };
        let instance = resolve(&stored)?;
        if instance.instance_id != instance_id {
            return Err(RegistryError::Invalid(
                "instance.instance-id: an instance id cannot change".to_owned(),
            ));
        }
        let host_id = match move_to {
            Some(host_id) => Some(host_id.to_owned()),
            None => current_record.host_id.clone(),
        };
        let served_here = host_id.is_none() || host_id == self.host_id;
        if served_here {
            Self::check_default_is_unique(&writer, &instance)?;
        }
        let expected = expected_revision.or(Some(current_revision));
        let record = self
            .store
            .update_instance(write_of(&stored, &instance, host_id), expected)
            .await?;
        if served_here {
            self.install(&mut writer, record, stored, instance).await
        } else {
            if local_revision.is_some() {
                tracing::info!(message = "Instance moved to another host.", instance_id = %instance_id, host_id = ?record.host_id);
                self.remove(&mut writer, instance_id);
            }
            Ok(Self::remote_view(record, stored, instance))
        }
    }

    /// The current credentials of `role_name` as `instance_id` gets them (any role, not only the
    /// instance's own: the control API is the host operator's).
    pub async fn role_credentials(
        &self,
        instance_id: &str,
        role_name: &str,
    ) -> Result<Arc<crate::credentials::RenderedCredentials>, RegistryError> {
        if !self.writer.lock().await.entries.contains_key(instance_id) {
            return Err(RegistryError::NotFound(instance_id.to_owned()));
        }
        let request = imds_credentials::CredentialRequest {
            role_name,
            instance_id,
        };
        Ok(self
            .makers
            .roles
            .get(request, time::OffsetDateTime::now_utc())
            .await)
    }

    /// Every role with a provider of its own, by name.
    pub async fn roles(&self) -> Result<Vec<RoleView>, RegistryError> {
        let writer = self.writer.lock().await;
        let mut views = Vec::new();
        for record in self.store.list_roles().await? {
            views.push(self.role_view(&writer, &record)?);
        }
        Ok(views)
    }

    /// One role with a provider of its own.
    pub async fn role(&self, name: &str) -> Result<RoleView, RegistryError> {
        let writer = self.writer.lock().await;
        let record = self.store.get_role(name).await?;
        self.role_view(&writer, &record)
    }

    /// Gives `name` the provider `spec` describes (replacing the one it had): stored first, then
    /// used for every later fetch, and the instances whose role it is get new credentials from it
    /// before this returns (or, for a slow provider, once they arrive).
    pub async fn put_role(&self, name: &str, spec: RoleSpec) -> Result<RoleView, RegistryError> {
        check_role_name(name).map_err(|error| RegistryError::Invalid(format!("role.{error}")))?;
        if spec.name.as_deref().is_some_and(|given| given != name) {
            return Err(RegistryError::Invalid(format!(
                "role.name: the body names another role than the path ({name})"
            )));
        }
        let spec = RoleSpec { name: None, ..spec };
        let provider = spec
            .clone()
            .provider(self.makers.default_lifetime)
            .map_err(|error| RegistryError::Invalid(format!("role.{error}")))?;
        let mut writer = self.writer.lock().await;
        let record = self
            .store
            .put_role(RoleWrite {
                name: name.to_owned(),
                spec: self.makers.encode_role(name, &spec),
            })
            .await?;
        writer
            .role_revisions
            .insert(name.to_owned(), record.revision);
        self.makers.providers.set(name, provider);
        self.renew_role(&writer, name).await;
        self.role_view(&writer, &record)
    }

    /// Sends `name` back to the default provider; its instances get new credentials from it.
    pub async fn delete_role(&self, name: &str) -> Result<(), RegistryError> {
        let mut writer = self.writer.lock().await;
        self.store.delete_role(name).await?;
        writer.role_revisions.remove(name);
        self.makers.providers.remove(name);
        self.renew_role(&writer, name).await;
        Ok(())
    }

    /// After `name`'s provider changed: drops its cached sets and has every instance whose role
    /// it is fetch again, waiting up to `APPLY_PATIENCE` for all of them together.
    async fn renew_role(&self, writer: &Writer, name: &str) {
        self.makers.roles.forget_role(name);
        let waiting: Vec<_> = writer
            .entries
            .values()
            .filter(|entry| has_role(&entry.instance, name))
            .map(|entry| {
                entry
                    .handle
                    .renew_role(entry.instance.clone(), entry.record.revision)
            })
            .collect();
        let all_served = async {
            for applied in waiting {
                let _ = applied.await;
            }
        };
        if tokio::time::timeout(APPLY_PATIENCE, all_served)
            .await
            .is_err()
        {
            tracing::info!(
                message = "Some instances still wait for credentials from the role's new provider.",
                role = %name,
            );
        }
    }

    fn role_view(&self, writer: &Writer, record: &RoleRecord) -> Result<RoleView, RegistryError> {
        let spec = self
            .makers
            .decode_role(record)
            .map_err(RegistryError::Invalid)?;
        let mut instance_ids: Vec<String> = writer
            .entries
            .values()
            .filter(|entry| has_role(&entry.instance, &record.name))
            .map(|entry| entry.instance.instance_id.clone())
            .collect();
        instance_ids.sort_unstable();
        Ok(RoleView {
            name: record.name.clone(),
            spec: spec.without_secrets(),
            revision: record.revision,
            updated_at: record.updated_at,
            instance_ids,
        })
    }

    /// Removes an instance; its callers are refused (or the default instance) from now on.
    pub async fn deregister(&self, instance_id: &str) -> Result<(), RegistryError> {
        let mut writer = self.writer.lock().await;
        // In fleet mode an instance another host serves can be deregistered here too.
        if !writer.entries.contains_key(instance_id) && self.host_id.is_none() {
            return Err(RegistryError::NotFound(instance_id.to_owned()));
        }
        self.store.delete_instance(instance_id).await?;
        self.remove(&mut writer, instance_id);
        Ok(())
    }

    /// Stops serving an instance (deregistered, or moved to another host).
    fn remove(&self, writer: &mut Writer, instance_id: &str) {
        if let Some(entry) = writer.entries.remove(instance_id) {
            entry.handle.stop();
            // Its own STS sessions, if any, are of no use to anyone else.
            self.makers.roles.forget_instance(instance_id);
            self.publish(writer);
        }
    }

    /// Applies the store's change feed until it ends: what other hosts write reaches this
    /// host's instances through the same `install` and `remove` as the control API's writes.
    ///
    /// On `Resync` (the feed connected or reconnected) every instance of this host is compared
    /// with the store; on a change of one instance it is read again. A failed read makes the
    /// next step a resynchronisation, retried with backoff until the store answers, so no change
    /// is lost while the store is unreachable: the host keeps serving what it has meanwhile.
    pub async fn follow(self: Arc<Self>, mut feed: imds_store::ChangeFeed) {
        while let Some(change) = feed.next().await {
            let mut outcome = match change {
                imds_store::Change::Resync => self.resync().await,
                imds_store::Change::Instance {
                    instance_id,
                    host_id,
                } => self.reread(&instance_id, host_id.as_deref()).await,
                imds_store::Change::Role { name } => self.reread_role(&name).await,
            };
            let mut backoff = MIN_RESYNC_BACKOFF;
            while let Err(error) = outcome {
                tracing::warn!(message = "Cannot read the store's changes; resynchronising.", %error, retry_in_ms = backoff.as_millis() as u64);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_RESYNC_BACKOFF);
                outcome = self.resync().await;
            }
        }
    }

    /// Brings every role provider and every instance of this host in line with the store.
    async fn resync(&self) -> Result<(), RegistryError> {
        // Each listing is read under the writer lock, so no write of this host's control API
        // (or start-up, which registers the default instance) falls between the listing and its
        // application: what the listing lacks is really gone.
        {
            let mut writer = self.writer.lock().await;
            let roles = self.store.list_roles().await?;
            let stored: std::collections::HashSet<String> =
                roles.iter().map(|record| record.name.clone()).collect();
            for record in roles {
                if writer.role_revisions.get(&record.name) != Some(&record.revision) {
                    self.apply_role(&mut writer, record).await;
                }
            }
            let gone: Vec<String> = writer
                .role_revisions
                .keys()
                .filter(|name| !stored.contains(*name))
                .cloned()
                .collect();
            for name in gone {
                self.drop_role(&mut writer, &name).await;
            }
        }
        let mut writer = self.writer.lock().await;
        let records = match &self.host_id {
            Some(host_id) => self.store.list_host_instances(host_id).await?,
            None => self.store.list_instances().await?,
        };
        let mut in_store = std::collections::HashSet::with_capacity(records.len());
        let mut n_changed = 0usize;
        for record in records {
            in_store.insert(record.instance_id.clone());
            let unchanged = writer
                .entries
                .get(&record.instance_id)
                .is_some_and(|entry| entry.record.revision == record.revision);
            if !unchanged {
                n_changed += 1;
                self.apply(&mut writer, record).await;
            }
        }
        let gone: Vec<String> = writer
            .entries
            .keys()
            .filter(|instance_id| !in_store.contains(*instance_id))
            .cloned()
            .collect();
        for instance_id in &gone {
            self.remove(&mut writer, instance_id);
        }
        tracing::info!(
            message = "Resynchronised with the store.",
            instances = writer.entries.len(),
            changed = n_changed,
            removed = gone.len()
        );
        Ok(())
    }

    /// Reads one changed instance again and serves, changes or drops it accordingly.
    async fn reread(
        &self,
        instance_id: &str,
        host_hint: Option<&str>,
    ) -> Result<(), RegistryError> {
        let mut writer = self.writer.lock().await;
        let served_here = writer.entries.contains_key(instance_id);
        let assigned_here = host_hint.is_some() && host_hint == self.host_id.as_deref();
        if !served_here && !assigned_here {
            return Ok(());
        }
        // Read under the writer lock, so no write of this host's control API interleaves: the
        // record read is the latest, and a revision that differs from the served one is newer.
        match self.store.get_instance(instance_id).await {
            Ok(record) if record.host_id == self.host_id => {
                let unchanged = writer
                    .entries
                    .get(instance_id)
                    .is_some_and(|entry| entry.record.revision == record.revision);
                if !unchanged {
                    self.apply(&mut writer, record).await;
                }
                Ok(())
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {
                if served_here {
                    tracing::info!(message = "Instance removed or moved to another host.", instance_id = %instance_id);
                    self.remove(&mut writer, instance_id);
                }
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Reads one changed role again and gives it its stored provider, or the default one.
    async fn reread_role(&self, name: &str) -> Result<(), RegistryError> {
        let mut writer = self.writer.lock().await;
        match self.store.get_role(name).await {
            Ok(record) => {
                if writer.role_revisions.get(name) != Some(&record.revision) {
                    self.apply_role(&mut writer, record).await;
                }
                Ok(())
            }
            Err(StoreError::RoleNotFound(_)) => {
                if writer.role_revisions.contains_key(name) {
                    self.drop_role(&mut writer, name).await;
                }
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Gives a role the provider another host stored for it, as `put_role` does here.
    async fn apply_role(&self, writer: &mut Writer, record: RoleRecord) {
        let provider = self
            .makers
            .decode_role(&record)
            .map_err(RegistryError::Invalid)
            .and_then(|spec| {
                spec.provider(self.makers.default_lifetime)
                    .map_err(|error| RegistryError::Invalid(format!("role.{error}")))
            });
        writer
            .role_revisions
            .insert(record.name.clone(), record.revision);
        match provider {
            Ok(provider) => {
                self.makers.providers.set(&record.name, provider);
                self.renew_role(writer, &record.name).await;
                tracing::info!(message = "Applied a role's provider from the store.", role = %record.name, revision = record.revision);
            }
            Err(error) => {
                tracing::warn!(message = "Cannot use a role's provider from the store.", role = %record.name, %error);
            }
        }
    }

    /// Sends a role another host deleted back to the default provider, as `delete_role` does.
    async fn drop_role(&self, writer: &mut Writer, name: &str) {
        writer.role_revisions.remove(name);
        self.makers.providers.remove(name);
        self.renew_role(writer, name).await;
        tracing::info!(message = "A role's provider was removed from the store.", role = %name);
    }

    /// Serves a record another host wrote; one that cannot be served is logged and left out.
    async fn apply(&self, writer: &mut Writer, record: InstanceRecord) {
        let instance_id = record.instance_id.clone();
        let prepared = parse_stored(&record).and_then(|(stored, instance)| {
            Self::check_default_is_unique(writer, &instance)?;
            Ok((stored, instance))
        });
        let result = match prepared {
            Ok((stored, instance)) => self
                .install(writer, record, stored, instance)
                .await
                .map(|_| ()),
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                tracing::debug!(message = "Applied a change from the store.", instance_id = %instance_id)
            }
            Err(error) => {
                tracing::warn!(message = "Cannot serve an instance from the store.", instance_id = %instance_id, %error);
            }
        }
    }

    async fn install(
        &self,
        writer: &mut Writer,
        record: InstanceRecord,
        stored: StoredInstance,
        instance: Instance,
    ) -> Result<InstanceView, RegistryError> {
        let instance = Arc::new(instance);
        let instance_id = record.instance_id.clone();
        let mut record = record;
        // The parsed description is kept; its JSON text need not be.
        record.spec = String::new();
        match writer.entries.get_mut(&instance_id) {
            Some(entry) => {
                // Answer once the change is served, so the caller's next request sees it.
                entry
                    .handle
                    .replace(instance.clone(), record.revision, APPLY_PATIENCE)
                    .await;
                entry.record = record;
                entry.instance = instance;
            }
            None => {
                let handle =
                    RuntimeHandle::start(instance.clone(), record.revision, self.makers.clone())
                        .await?;
                writer.entries.insert(
                    instance_id.clone(),
                    Entry {
                        record,
                        instance,
                        handle,
                    },
                );
            }
        }
        self.publish(writer);
        Ok(Self::view(&writer.entries[&instance_id], stored))
    }
}

/// Checks a host id: 1 to 255 bytes, no spaces or control characters (it names a host in logs,
/// URLs and `--host-id`).
pub fn check_host_id(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 255 {
        return Err("give 1 to 255 characters".to_owned());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".to_owned());
    }
    Ok(())
}

fn has_role(instance: &Instance, name: &str) -> bool {
    instance
        .iam
        .as_ref()
        .is_some_and(|profile| profile.role_name == name)
}

/// RFC 7396 JSON merge patch: objects merge key by key, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    let target_map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge_patch(
                target_map
                    .entry(key.clone())
                    .or_insert(serde_json::Value::Null),
                value,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(target: serde_json::Value, patch: serde_json::Value, expect: serde_json::Value) {
        let mut target = target;
        merge_patch(&mut target, &patch);
        assert_eq!(target, expect);
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        check(json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"}));
        check(
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        );
        check(json!({"a": "b"}), json!({"a": null}), json!({}));
        check(
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        );
        check(
            json!({"a": [1]}),
            json!({"a": [2, 3]}),
            json!({"a": [2, 3]}),
        );
        check(json!(["a"]), json!({"a": "b"}), json!({"a": "b"}));
        check(json!({"a": "b"}), json!(["c"]), json!(["c"]));
        check(
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        );
    }

    #[test]
    fn mapped_addresses_are_their_ipv4() {
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.2".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "::2".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
