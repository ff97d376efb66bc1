//! Fleet mode: applying the store's change feed, so that what other hosts write reaches this
//! host's instances through the same `install` and `remove` as the control API's writes.

use std::sync::Arc;

use imds_store::{InstanceRecord, RoleRecord, StoreError};

use crate::registry::{
    parse_stored, Registry, RegistryError, Writer, MAX_RESYNC_BACKOFF, MIN_RESYNC_BACKOFF,
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
            .codec
            .decode(&record)
            .map_err(RegistryError::Invalid)
            .and_then(|spec| {
                spec.provider(self.services.default_lifetime)
                    .map_err(|error| RegistryError::Invalid(format!("role.{error}")))
            });
        writer
            .role_revisions
            .insert(record.name.clone(), record.revision);
        match provider {
            Ok(provider) => {
                self.services.providers.set(&record.name, provider);
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
        self.services.providers.remove(name);
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
}
