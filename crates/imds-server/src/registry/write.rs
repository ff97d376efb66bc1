//! Writes: registering, changing and deregistering instances. Each takes its instance's lock,
//! writes to the store (so an acknowledged change is durable), publishes the new maps and lets
//! go of the lock; only then does it wait (up to the apply patience) for the instance to serve
//! the change, which may need credentials from upstream.

use std::sync::Arc;

use imds_core::{
    host_id::check_host_id,
    instance::Instance,
    patch::merge_patch,
    spec::{Generated, InstanceSpec, StoredInstance},
};
use imds_store::InstanceRecord;

use crate::{
    instance::{
        described::Described,
        runtime::{Applying, Urgency},
    },
    registry::{parse_stored, resolve, write_of, Entry, InstanceView, Registry, RegistryError},
};

/// A write that is stored and published, and is being served.
pub(crate) struct Written {
    /// The view as the control API answers it (`applied` as of the write).
    view: InstanceView,
    /// Served once this resolves.
    applying: Applying,
}

impl Written {
    fn remote(view: InstanceView) -> Written {
        Written {
            view,
            applying: Applying::done(),
        }
    }
}

impl Registry {
    /// Waits up to the apply patience for `written` to be served; the view says whether it was.
    async fn settle(&self, written: Written) -> InstanceView {
        let Written { mut view, applying } = written;
        if applying.wait(self.settings.apply_patience).await {
            view.applied = true;
        } else if let Some(entry) = self.entry(&view.record.instance_id) {
            view.applied = entry.slot.applied_revision() >= view.record.revision;
        }
        view
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
        self.check_placement(host_id)?;
        let stored = StoredInstance {
            generated: Generated::random(),
            instance: spec,
        };
        let instance = resolve(&stored)?;
        let _instance_lock = self.instance_locks.lock(&instance.instance_id).await;
        if self.is_elsewhere(host_id) {
            let record = self
                .store
                .create_instance(write_of(&stored, &instance, host_id.map(str::to_owned)))
                .await?;
            return Ok(Self::remote_view(record, stored, instance));
        }
        let _default_lock = self.default_lock(&instance).await;
        self.check_default_is_unique(&instance)?;
        let record = self
            .store
            .create_instance(write_of(&stored, &instance, self.host_id.clone()))
            .await?;
        let written = self.install(record, stored, instance, Urgency::Now);
        drop((_default_lock, _instance_lock));
        Ok(self.settle(written).await)
    }

    /// A host id given in host mode is refused: there is no other host to serve the instance.
    fn check_placement(&self, host_id: Option<&str>) -> Result<(), RegistryError> {
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
    /// for it before if it was stored already. Does not wait for the instance to serve it:
    /// start-up never waits on an upstream.
    pub async fn upsert(
        &self,
        spec: InstanceSpec,
        fallback: Generated,
    ) -> Result<InstanceView, RegistryError> {
        let instance_id = spec.instance_id.clone();
        let _instance_lock = match &instance_id {
            Some(id) => Some(self.instance_locks.lock(id).await),
            None => None,
        };
        let existing = match &instance_id {
            Some(id) if self.entry(id).is_some() => Some(
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
        let _default_lock = self.default_lock(&instance).await;
        self.check_default_is_unique(&instance)?;
        let record = self
            .store
            .upsert_instance(write_of(&stored, &instance, self.host_id.clone()))
            .await?;
        Ok(self
            .install(record, stored, instance, Urgency::Background)
            .view)
    }

    /// Makes `spec` (which has no addresses) the default instance, deregistering a previous
    /// default instance of another id: the config file names the default instance.
    pub async fn set_default(
        &self,
        spec: InstanceSpec,
        fallback: Generated,
    ) -> Result<InstanceView, RegistryError> {
        let previous: Vec<String> = self
            .entries
            .load()
            .values()
            .filter(|entry| entry.instance.addresses.is_empty())
            .map(|entry| entry.instance.instance_id.to_string())
            .filter(|id| Some(id) != spec.instance_id.as_ref())
            .collect();
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
        let written = self
            .write_update(instance_id, patch, expected_revision, move_to, Urgency::Now)
            .await?;
        Ok(self.settle(written).await)
    }

    /// The write of `update_on`, without waiting for the instance to serve it.
    pub(crate) async fn write_update(
        &self,
        instance_id: &str,
        patch: &serde_json::Value,
        expected_revision: Option<i64>,
        move_to: Option<&str>,
        urgency: Urgency,
    ) -> Result<Written, RegistryError> {
        self.check_placement(move_to)?;
        let instance_lock = self.instance_locks.lock(instance_id).await;
        let local = self.entry(instance_id);
        if local.is_none() && self.host_id.is_none() {
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
        let default_lock = if served_here {
            self.default_lock(&instance).await
        } else {
            None
        };
        if served_here {
            self.check_default_is_unique(&instance)?;
        }
        let expected = expected_revision.or(Some(current_revision));
        let record = self
            .store
            .update_instance(write_of(&stored, &instance, host_id), expected)
            .await?;
        let written = if served_here {
            self.install(record, stored, instance, urgency)
        } else {
            if local.is_some() {
                tracing::info!(message = "Instance moved to another host.", instance_id = %instance_id, host_id = ?record.host_id);
                self.remove(instance_id);
            }
            Written::remote(Self::remote_view(record, stored, instance))
        };
        drop((default_lock, instance_lock));
        Ok(written)
    }

    /// Removes an instance; its callers are refused (or the default instance) from now on.
    pub async fn deregister(&self, instance_id: &str) -> Result<(), RegistryError> {
        let _instance_lock = self.instance_locks.lock(instance_id).await;
        // In fleet mode an instance another host serves can be deregistered here too.
        if self.entry(instance_id).is_none() && self.host_id.is_none() {
            return Err(RegistryError::NotFound(instance_id.to_owned()));
        }
        self.store.delete_instance(instance_id).await?;
        self.remove(instance_id);
        Ok(())
    }

    /// Stops serving an instance (deregistered, or moved to another host). Callers hold its
    /// lock.
    pub(super) fn remove(&self, instance_id: &str) {
        let Some(entry) = self.entry(instance_id) else {
            return;
        };
        self.publish(|entries| {
            entries.remove(instance_id);
        });
        self.runtime.stop(&entry.slot);
        // Its own STS sessions, if any, are of no use to anyone else.
        self.role_cache().forget_instance(instance_id);
    }

    /// Serves a stored record: the instance's slot gets the change (a new instance a new slot)
    /// and the maps are published. Callers hold the instance's lock; nothing here waits.
    pub(super) fn install(
        &self,
        mut record: InstanceRecord,
        stored: StoredInstance,
        instance: Instance,
        urgency: Urgency,
    ) -> Written {
        let described = Arc::new(Described::new(std::mem::take(&mut record.spec), &instance));
        let (slot, applying) = match self.entry(&record.instance_id) {
            Some(entry) => {
                let applying = self.runtime.change(
                    &entry.slot,
                    described.clone(),
                    record.revision,
                    false,
                    urgency,
                );
                (entry.slot.clone(), applying)
            }
            None => self
                .runtime
                .start(described.clone(), record.revision, urgency),
        };
        let entry = Arc::new(Entry {
            revision: record.revision,
            instance: described.clone(),
            slot,
        });
        self.publish(|entries| {
            entries.insert(described.instance_id.clone(), entry.clone());
        });
        Written {
            view: Self::view(&entry, stored, instance, record),
            applying,
        }
    }
}
