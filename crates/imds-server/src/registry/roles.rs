//! Roles with a provider of their own: listed, described, given a provider and sent back to
//! the default one at run time. Each change takes the role's lock for the store write and the
//! provider swap only; then the role's cached sets are dropped and every instance of the role
//! fetches again, with no lock held, and the call waits (up to the apply patience) for them.

use std::sync::Arc;

use imds_credentials::spec::{check_role_name, RoleSpec};
use imds_store::{RoleRecord, RoleWrite};

use crate::{
    instance::runtime::Applying,
    registry::{Registry, RegistryError, RoleView},
};

impl Registry {
    /// The current credentials of `role_name` in `delivery` as `instance_id` gets them (any
    /// role, not only the instance's own: the control API is the host operator's); `None` for
    /// the IMDSv1 set of an instance whose tokens are required, which has none.
    #[allow(
        clippy::disallowed_methods,
        reason = "a role's credentials are fetched at the time they are asked for"
    )]
    pub async fn role_credentials(
        &self,
        instance_id: &str,
        role_name: &str,
        delivery: imds_credentials::Delivery,
    ) -> Result<Option<Arc<crate::credentials::RenderedCredentials>>, RegistryError> {
        let Some(entry) = self.entry(instance_id) else {
            return Err(RegistryError::NotFound(instance_id.to_owned()));
        };
        let tokens = entry.slot.source().instance.options.http_tokens;
        if delivery == imds_credentials::Delivery::V1
            && tokens == imds_core::options::HttpTokens::Required
        {
            return Ok(None);
        }
        let request = imds_credentials::CredentialRequest {
            role_name,
            instance_id,
            delivery,
        };
        Ok(Some(
            self.role_cache()
                .get(request, time::OffsetDateTime::now_utc())
                .await,
        ))
    }

    /// Every role with a provider of its own, by name; takes no lock.
    pub async fn roles(&self) -> Result<Vec<RoleView>, RegistryError> {
        let mut views = Vec::new();
        for record in self.store.list_roles().await? {
            views.push(self.role_view(&record)?);
        }
        Ok(views)
    }

    /// One role with a provider of its own; takes no lock.
    pub async fn role(&self, name: &str) -> Result<RoleView, RegistryError> {
        let record = self.store.get_role(name).await?;
        self.role_view(&record)
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
            .provider(&self.runtime.services().provider_settings)
            .map_err(|error| RegistryError::Invalid(format!("role.{error}")))?;
        let record = {
            let _role_lock = self.role_locks.lock(name).await;
            let record = self
                .store
                .put_role(RoleWrite {
                    name: name.to_owned(),
                    spec: self.codec.encode(name, &spec),
                })
                .await?;
            self.set_role_revision(name, Some(record.revision));
            self.runtime.services().providers.set(name, provider);
            record
        };
        self.wait_for_all(name, self.renew_role(name)).await;
        self.role_view(&record)
    }

    /// Sends `name` back to the default provider; its instances get new credentials from it.
    pub async fn delete_role(&self, name: &str) -> Result<(), RegistryError> {
        {
            let _role_lock = self.role_locks.lock(name).await;
            self.store.delete_role(name).await?;
            self.set_role_revision(name, None);
            self.runtime.services().providers.remove(name);
        }
        self.wait_for_all(name, self.renew_role(name)).await;
        Ok(())
    }

    /// Records the revision of `name` this host's providers reflect (`None`: not stored).
    pub(super) fn set_role_revision(&self, name: &str, revision: Option<i64>) {
        let mut revisions = self
            .role_revisions
            .lock()
            .expect("the role revisions are never held across a panic");
        match revision {
            Some(revision) => revisions.insert(name.to_owned(), revision),
            None => revisions.remove(name),
        };
    }

    /// The revision of `name` this host's providers reflect.
    pub(super) fn role_revision(&self, name: &str) -> Option<i64> {
        self.role_revisions
            .lock()
            .expect("the role revisions are never held across a panic")
            .get(name)
            .copied()
    }

    /// After `name`'s provider changed: drops its cached sets and has every instance whose role
    /// it is fetch again. Returns the changes under way; nothing waits here.
    pub(super) fn renew_role(&self, name: &str) -> Vec<Applying> {
        self.role_cache().forget_role(name);
        self.entries
            .load()
            .values()
            .filter(|entry| entry.instance.has_role(name))
            .map(|entry| self.runtime.renew(&entry.slot))
            .collect()
    }

    /// Waits up to the apply patience for every one of `renewals` together.
    async fn wait_for_all(&self, name: &str, renewals: Vec<Applying>) {
        let patience = self.settings.apply_patience;
        let all_served = async {
            let mut all = true;
            for renewal in renewals {
                all &= renewal.wait(patience).await;
            }
            all
        };
        let served = tokio::time::timeout(patience, all_served)
            .await
            .unwrap_or(false);
        if !served {
            tracing::info!(
                message = "Some instances still wait for credentials from the role's new provider.",
                role = %name,
            );
        }
    }

    pub(super) fn role_view(&self, record: &RoleRecord) -> Result<RoleView, RegistryError> {
        let spec = self.codec.decode(record).map_err(RegistryError::Invalid)?;
        let mut instance_ids: Vec<String> = self
            .entries
            .load()
            .values()
            .filter(|entry| entry.instance.has_role(&record.name))
            .map(|entry| entry.instance.instance_id.to_string())
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
}
