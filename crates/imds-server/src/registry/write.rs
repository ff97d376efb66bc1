//! Writes: registering, changing and deregistering instances. Each goes to the store first,
//! then to the instance's runtime, then into a new directory.

use std::sync::Arc;

use imds_core::{
    host_id::check_host_id,
    instance::Instance,
    patch::merge_patch,
    spec::{Generated, InstanceSpec, StoredInstance},
};
use imds_store::InstanceRecord;

use crate::{
    instance::runtime::RuntimeHandle,
    registry::{
        parse_stored, resolve, write_of, Entry, InstanceView, Registry, RegistryError, Writer,
        APPLY_PATIENCE,
    },
};

impl Registry {
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
    pub(super) fn remove(&self, writer: &mut Writer, instance_id: &str) {
        if let Some(entry) = writer.entries.remove(instance_id) {
            entry.handle.stop();
            // Its own STS sessions, if any, are of no use to anyone else.
            self.services.roles.forget_instance(instance_id);
            self.publish(writer);
        }
    }

    pub(super) async fn install(
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
                    RuntimeHandle::start(instance.clone(), record.revision, self.services.clone())
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
