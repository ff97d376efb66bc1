//! Roles with a provider of their own: listed, described, given a provider and sent back to
//! the default one at run time. Each change is stored first; then the role's cached sets are
//! dropped and every instance of the role fetches again.

use std::sync::Arc;

use imds_credentials::spec::{check_role_name, RoleSpec};
use imds_store::{RoleRecord, RoleWrite};

use crate::registry::{has_role, Registry, RegistryError, RoleView, Writer, APPLY_PATIENCE};

impl Registry {
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
            .services
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
            .provider(self.services.default_lifetime)
            .map_err(|error| RegistryError::Invalid(format!("role.{error}")))?;
        let mut writer = self.writer.lock().await;
        let record = self
            .store
            .put_role(RoleWrite {
                name: name.to_owned(),
                spec: self.codec.encode(name, &spec),
            })
            .await?;
        writer
            .role_revisions
            .insert(name.to_owned(), record.revision);
        self.services.providers.set(name, provider);
        self.renew_role(&writer, name).await;
        self.role_view(&writer, &record)
    }

    /// Sends `name` back to the default provider; its instances get new credentials from it.
    pub async fn delete_role(&self, name: &str) -> Result<(), RegistryError> {
        let mut writer = self.writer.lock().await;
        self.store.delete_role(name).await?;
        writer.role_revisions.remove(name);
        self.services.providers.remove(name);
        self.renew_role(&writer, name).await;
        Ok(())
    }

    /// After `name`'s provider changed: drops its cached sets and has every instance whose role
    /// it is fetch again, waiting up to `APPLY_PATIENCE` for all of them together.
    pub(super) async fn renew_role(&self, writer: &Writer, name: &str) {
        self.services.roles.forget_role(name);
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

    pub(super) fn role_view(
        &self,
        writer: &Writer,
        record: &RoleRecord,
    ) -> Result<RoleView, RegistryError> {
        let spec = self.codec.decode(record).map_err(RegistryError::Invalid)?;
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
}
