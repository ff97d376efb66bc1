//! Fleet mode: applying the store's change feed, so that what other hosts write reaches this
//! host's instances through the same `install` and `remove` as the control API's writes.
//!
//! Nothing here waits for an instance to serve a change: changes that need credentials get them
//! in the background, within the runtime's fetch bound. Each instance is reread and installed
//! under its own lock, so the control API's writes to other instances never wait for the feed.

use std::{collections::HashSet, sync::Arc};

use imds_store::{InstanceRecord, RoleRecord, StoreError};

use crate::{
    instance::runtime::Urgency,
    registry::{
        parse_stored, Entries, Registry, RegistryError, MAX_RESYNC_BACKOFF, MIN_RESYNC_BACKOFF,
    },
};

impl Registry {
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
                imds_store::Change::Resync => self.resync_all().await,
                imds_store::Change::Instance {
                    instance_id,
                    host_id,
                } => self.reread(&instance_id, host_id.as_deref()).await,
                imds_store::Change::Role { name } => self.reread_role(&name).await,
                imds_store::Change::Task { task_id, host_id } => {
                    let served_here = self
                        .followed_tasks
                        .get()
                        .is_some_and(|tasks| tasks.table().task(&task_id).is_some());
                    if served_here || (host_id.is_some() && host_id == self.host_id) {
                        self.reload_tasks().await
                    } else {
                        Ok(())
                    }
                }
                imds_store::Change::Association { .. } => self.reload_associations().await,
            };
            let mut backoff = MIN_RESYNC_BACKOFF;
            while let Err(error) = outcome {
                tracing::warn!(message = "Cannot read the store's changes; resynchronising.", %error, retry_in_ms = backoff.as_millis() as u64);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_RESYNC_BACKOFF);
                outcome = self.resync_all().await;
            }
        }
    }

    /// Brings the instances, roles, tasks and associations in line with the store.
    async fn resync_all(&self) -> Result<(), RegistryError> {
        self.resync().await?;
        self.reload_tasks().await?;
        self.reload_associations().await
    }

    /// Reads the Pod Identity associations again, when the feed keeps them.
    async fn reload_associations(&self) -> Result<(), RegistryError> {
        match self.followed_associations.get() {
            Some(associations) => Ok(associations.reload().await?),
            None => Ok(()),
        }
    }

    /// Reads this host's tasks again, when the feed keeps a task table.
    async fn reload_tasks(&self) -> Result<(), RegistryError> {
        match self.followed_tasks.get() {
            Some(tasks) => Ok(tasks.reload().await?),
            None => Ok(()),
        }
    }

    /// Brings every role provider and every instance of this host in line with the store.
    ///
    /// No lock is held across the listing. An instance whose entry is the same as before the
    /// listing was read had no local write since, so the listing is news for it; one written
    /// locally meanwhile (or new since) is read again under its own lock instead, as a feed
    /// change would be.
    async fn resync(&self) -> Result<(), RegistryError> {
        let roles = self.store.list_roles().await?;
        let stored: HashSet<String> = roles.iter().map(|record| record.name.clone()).collect();
        for record in roles {
            if self.role_revision(&record.name) != Some(record.revision) {
                self.reread_role(&record.name).await?;
            }
        }
        let gone: Vec<String> = self
            .role_revisions
            .lock()
            .expect("the role revisions are never held across a panic")
            .keys()
            .filter(|name| !stored.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            self.reread_role(&name).await?;
        }

        let before: Arc<Entries> = self.entries.load_full();
        let records = match &self.host_id {
            Some(host_id) => self.store.list_host_instances(host_id).await?,
            None => self.store.list_instances().await?,
        };
        let mut in_store = HashSet::with_capacity(records.len());
        let mut n_changed = 0usize;
        for record in records {
            in_store.insert(record.instance_id.clone());
            let id = record.instance_id.clone();
            let unchanged = self
                .entry(&id)
                .is_some_and(|entry| entry.revision == record.revision);
            if unchanged {
                continue;
            }
            n_changed += 1;
            let instance_lock = self.instance_locks.lock(&id).await;
            let untouched = match (before.get(id.as_str()), self.entry(&id)) {
                (Some(earlier), Some(now)) => Arc::ptr_eq(earlier, &now),
                (None, None) => true,
                _ => false,
            };
            if untouched {
                self.apply(record).await;
            } else {
                drop(instance_lock);
                self.reread(&id, self.host_id.as_deref()).await?;
            }
        }
        let gone: Vec<String> = self
            .entries
            .load()
            .keys()
            .filter(|instance_id| !in_store.contains(&***instance_id))
            .map(|instance_id| instance_id.to_string())
            .collect();
        for instance_id in &gone {
            let instance_lock = self.instance_locks.lock(instance_id).await;
            let untouched = match (before.get(instance_id.as_str()), self.entry(instance_id)) {
                (Some(earlier), Some(now)) => Arc::ptr_eq(earlier, &now),
                _ => false,
            };
            if untouched {
                self.remove(instance_id);
            } else {
                drop(instance_lock);
                self.reread(instance_id, None).await?;
            }
        }
        tracing::info!(
            message = "Resynchronised with the store.",
            instances = self.entries.load().len(),
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
        let served_here = self.entry(instance_id).is_some();
        let assigned_here = host_hint.is_some() && host_hint == self.host_id.as_deref();
        if !served_here && !assigned_here {
            return Ok(());
        }
        // Read under the instance's lock, so no write of this host's control API to it
        // interleaves: the record read is the latest, and a revision that differs from the
        // served one is newer.
        let _instance_lock = self.instance_locks.lock(instance_id).await;
        let served_here = self.entry(instance_id).is_some();
        match self.store.get_instance(instance_id).await {
            Ok(record) if record.host_id == self.host_id => {
                let unchanged = self
                    .entry(instance_id)
                    .is_some_and(|entry| entry.revision == record.revision);
                if !unchanged {
                    self.apply(record).await;
                }
                Ok(())
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {
                if served_here {
                    tracing::info!(message = "Instance removed or moved to another host.", instance_id = %instance_id);
                    self.remove(instance_id);
                }
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Reads one changed role again and gives it its stored provider, or the default one.
    async fn reread_role(&self, name: &str) -> Result<(), RegistryError> {
        let role_lock = self.role_locks.lock(name).await;
        match self.store.get_role(name).await {
            Ok(record) => {
                if self.role_revision(name) != Some(record.revision) {
                    self.apply_role(record);
                }
                drop(role_lock);
                Ok(())
            }
            Err(StoreError::RoleNotFound(_)) => {
                if self.role_revision(name).is_some() {
                    self.drop_role(name);
                }
                drop(role_lock);
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Gives a role the provider another host stored for it, as `put_role` does here (callers
    /// hold the role's lock; nothing waits for the instances).
    fn apply_role(&self, record: RoleRecord) {
        let services = self.runtime.services();
        let provider = self
            .codec
            .decode(&record)
            .map_err(RegistryError::Invalid)
            .and_then(|spec| {
                spec.provider(&services.provider_settings)
                    .map_err(|error| RegistryError::Invalid(format!("role.{error}")))
            });
        self.set_role_revision(&record.name, Some(record.revision));
        match provider {
            Ok(provider) => {
                services.providers.set(&record.name, provider);
                drop(self.renew_role(&record.name));
                tracing::info!(message = "Applied a role's provider from the store.", role = %record.name, revision = record.revision);
            }
            Err(error) => {
                tracing::warn!(message = "Cannot use a role's provider from the store.", role = %record.name, %error);
            }
        }
    }

    /// Sends a role another host deleted back to the default provider, as `delete_role` does.
    fn drop_role(&self, name: &str) {
        self.set_role_revision(name, None);
        self.runtime.services().providers.remove(name);
        drop(self.renew_role(name));
        tracing::info!(message = "A role's provider was removed from the store.", role = %name);
    }

    /// Serves a record another host wrote; one that cannot be served is logged and left out.
    /// Callers hold the instance's lock.
    async fn apply(&self, record: InstanceRecord) {
        let instance_id = record.instance_id.clone();
        let prepared = parse_stored(&record);
        let result = match prepared {
            Ok((stored, instance)) => {
                let _default_lock = self.default_lock(&instance).await;
                self.check_default_is_unique(&instance).map(|()| {
                    drop(self.install(record, stored, instance, Urgency::Background));
                })
            }
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
}
