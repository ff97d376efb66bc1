//! Start-up: brings the store in line with the config file and starts serving what it holds.
//!
//! The config file is authoritative for what it names: its roles are written to the store at
//! every start (replacing changes made through the control API), its `[instance]` is the default
//! instance (else the generated one, created on the first start and then kept with its changes),
//! and its `[[instances]]` are created or replaced. Nothing here waits for credentials: instances
//! whose role needs an upstream get their credentials in the background (see
//! `instance::runtime`), so serving starts whatever the upstreams do.
//!
//! A reload (SIGHUP) brings the registry from one file's `Declared` roles and instances to the
//! next file's, writing only what differs (`Declared::reapply`).

use std::sync::Arc;

use imds_core::spec::{Generated, InstanceSpec, OptionsSpec};
use imds_credentials::spec::RoleSpec;
use imds_store::{RoleWrite, Store, StoreError};
use thiserror::Error;
use tokio::task::JoinHandle;

use crate::{
    instance::{runtime::Urgency, services::Services},
    registry::{Registry, RegistryError, Settings},
    sealing::RoleCodec,
};

/// What start-up serves, and with what.
#[derive(Debug)]
pub struct Bootstrap {
    /// The store, opened.
    pub store: Arc<dyn Store>,
    /// What instances are served with.
    pub services: Services,
    /// How roles are kept in the store.
    pub codec: RoleCodec,
    /// The registry's settings.
    pub settings: Settings,
    /// This host's name in fleet mode.
    pub host_id: Option<String>,
    /// The config file's `[[roles]]`, each with its name.
    pub roles: Vec<RoleSpec>,
    /// The default instance's id (the file's, or the generated one).
    pub default_id: String,
    /// The file's `[instance]`, if it gives one.
    pub default_spec: Option<InstanceSpec>,
    /// The identifiers the default instance takes what it leaves out from.
    pub default_generated: Generated,
    /// Metadata options given as flags, laid over the default instance's.
    pub option_flags: Option<OptionsSpec>,
    /// The file's `[[instances]]`.
    pub instances: Vec<InstanceSpec>,
}

/// Start-up failed.
#[derive(Debug, Error)]
pub enum BootstrapError {
    /// The config file's roles could not be written.
    #[error("cannot store the config file's roles: {0}")]
    Roles(StoreError),
    /// A role of the config file has no name (the config check prevents it).
    #[error("a config role has no name")]
    UnnamedRole,
    /// The stored instances could not be loaded.
    #[error("cannot load the stored instances: {0}")]
    Load(RegistryError),
    /// The default instance or an `[[instances]]` entry cannot be served as the file gives it.
    #[error("{0}")]
    Config(RegistryError),
    /// The option flags cannot be laid over the stored default instance.
    #[error("{0}")]
    Flags(RegistryError),
}

/// A registry serving, and the task following the store's change feed (fleet mode).
#[derive(Debug)]
pub struct Started {
    /// The served instances.
    pub registry: Arc<Registry>,
    /// Follows what other hosts write; `None` in host mode.
    pub follower: Option<JoinHandle<()>>,
}

/// Lays the option flags over `spec`'s options.
fn apply_flags(spec: &mut InstanceSpec, flags: &OptionsSpec) {
    let options = spec
        .metadata_options
        .get_or_insert_with(OptionsSpec::default);
    if flags.http_tokens.is_some() {
        options.http_tokens.clone_from(&flags.http_tokens);
    }
    if flags.http_endpoint.is_some() {
        options.http_endpoint.clone_from(&flags.http_endpoint);
    }
    if flags.http_put_response_hop_limit.is_some() {
        options.http_put_response_hop_limit = flags.http_put_response_hop_limit;
    }
    if flags.http_protocol_ipv6.is_some() {
        options
            .http_protocol_ipv6
            .clone_from(&flags.http_protocol_ipv6);
    }
    if flags.instance_metadata_tags.is_some() {
        options
            .instance_metadata_tags
            .clone_from(&flags.instance_metadata_tags);
    }
}

impl Bootstrap {
    /// Writes the config's roles, loads the registry, follows the feed (fleet mode) and
    /// reconciles the default instance and the config's instances.
    pub async fn run(self) -> Result<Started, BootstrapError> {
        for role in &self.roles {
            let name = role.name.clone().ok_or(BootstrapError::UnnamedRole)?;
            let spec = RoleSpec {
                name: None,
                ..role.clone()
            };
            self.store
                .put_role(RoleWrite {
                    spec: self.codec.encode(&name, &spec),
                    name,
                })
                .await
                .map_err(BootstrapError::Roles)?;
        }
        let registry = Arc::new(
            Registry::load_for_host(
                self.store.clone(),
                self.services,
                self.codec,
                self.settings,
                self.host_id.clone(),
            )
            .await
            .map_err(BootstrapError::Load)?,
        );
        // Fleet mode: what other hosts write reaches this one through the store's change feed.
        let follower = self
            .host_id
            .as_ref()
            .map(|_| tokio::spawn(registry.clone().follow(self.store.watch())));

        // The default instance: the file's `[instance]` if given (the file wins at every start),
        // else the generated one, created on first start and then kept with its changes.
        let stored_default_exists = registry.describe(&self.default_id).await.is_ok();
        if self.default_spec.is_some() || !stored_default_exists {
            let mut spec = self.default_spec.unwrap_or_default();
            spec.instance_id
                .get_or_insert_with(|| self.default_id.clone());
            if let Some(flags) = &self.option_flags {
                apply_flags(&mut spec, flags);
            }
            registry
                .set_default(spec, self.default_generated)
                .await
                .map_err(BootstrapError::Config)?;
        } else if let Some(flags) = &self.option_flags {
            let patch = serde_json::json!({ "metadata-options": flags });
            registry
                .write_update(&self.default_id, &patch, None, None, Urgency::Background)
                .await
                .map_err(BootstrapError::Flags)?;
        }
        for spec in self.instances {
            registry
                .upsert(spec, Generated::random())
                .await
                .map_err(BootstrapError::Config)?;
        }
        Ok(Started { registry, follower })
    }
}

/// What a config file declares of roles and instances: what start-up writes, and what a reload
/// (SIGHUP) brings the registry from the previous file's declaration to the new one's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared {
    /// `[[roles]]`, each with its name.
    pub roles: Vec<RoleSpec>,
    /// `[instance]`, if given, with the option flags laid over it.
    pub default_spec: Option<InstanceSpec>,
    /// `[[instances]]`, each with its id.
    pub instances: Vec<InstanceSpec>,
}

/// What a reload changed in the registry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reapplied {
    /// Roles given or changed, written.
    pub roles_put: usize,
    /// Roles the file no longer gives, sent back to the default provider.
    pub roles_removed: usize,
    /// Instances given or changed (the default instance among them), created or replaced.
    pub instances_put: usize,
    /// Instances the file no longer gives, deregistered.
    pub instances_removed: usize,
}

fn role_name(role: &RoleSpec) -> Result<&str, RegistryError> {
    role.name
        .as_deref()
        .ok_or_else(|| RegistryError::Invalid("roles: a role has no name".to_owned()))
}

fn instance_id(spec: &InstanceSpec) -> Result<&str, RegistryError> {
    spec.instance_id.as_deref().ok_or_else(|| {
        RegistryError::Invalid("instances: a registered instance has no instance-id".to_owned())
    })
}

impl Declared {
    /// The declaration start-up writes: `[instance]` with the option flags laid over it.
    pub fn new(
        roles: Vec<RoleSpec>,
        default_spec: Option<InstanceSpec>,
        instances: Vec<InstanceSpec>,
        option_flags: Option<&OptionsSpec>,
    ) -> Declared {
        let default_spec = default_spec.map(|mut spec| {
            if let Some(flags) = option_flags {
                apply_flags(&mut spec, flags);
            }
            spec
        });
        Declared {
            roles,
            default_spec,
            instances,
        }
    }

    /// Brings `registry` from the declaration `self` to `next`, changing only what differs:
    /// roles given or changed are put (their instances get credentials from the new provider),
    /// roles no longer given go back to the default provider; instances given or changed are
    /// created or replaced (keeping the identifiers generated for them), instances no longer
    /// given are deregistered; `[instance]`, when given and changed, replaces the default
    /// instance (`default_id`, which a reload does not change). What the control API did to
    /// roles and instances the two files agree on is left as it is. Stops at the first write the
    /// registry refuses, with what was applied before it in place.
    pub async fn reapply(
        &self,
        next: &Declared,
        registry: &Registry,
        default_id: &str,
        default_generated: &Generated,
    ) -> Result<Reapplied, RegistryError> {
        let mut applied = Reapplied::default();
        for role in &next.roles {
            let name = role_name(role)?;
            let before = self
                .roles
                .iter()
                .find(|previous| previous.name.as_deref() == Some(name));
            if before != Some(role) {
                registry.put_role(name, role.clone()).await?;
                applied.roles_put += 1;
            }
        }
        for role in &self.roles {
            let name = role_name(role)?;
            if !next
                .roles
                .iter()
                .any(|kept| kept.name.as_deref() == Some(name))
            {
                match registry.delete_role(name).await {
                    Ok(()) | Err(RegistryError::RoleNotFound(_)) => {}
                    Err(error) => return Err(error),
                }
                applied.roles_removed += 1;
            }
        }
        // Instances leave first, so that their addresses are free for the ones given now.
        for spec in &self.instances {
            let id = instance_id(spec)?;
            if !next
                .instances
                .iter()
                .any(|kept| kept.instance_id.as_deref() == Some(id))
            {
                match registry.deregister(id).await {
                    Ok(()) | Err(RegistryError::NotFound(_)) => {}
                    Err(error) => return Err(error),
                }
                applied.instances_removed += 1;
            }
        }
        if let Some(spec) = &next.default_spec {
            if self.default_spec.as_ref() != Some(spec) {
                let mut spec = spec.clone();
                spec.instance_id
                    .get_or_insert_with(|| default_id.to_owned());
                registry.upsert(spec, default_generated.clone()).await?;
                applied.instances_put += 1;
            }
        }
        for spec in &next.instances {
            let id = instance_id(spec)?;
            let before = self
                .instances
                .iter()
                .find(|previous| previous.instance_id.as_deref() == Some(id));
            if before != Some(spec) {
                registry.upsert(spec.clone(), Generated::random()).await?;
                applied.instances_put += 1;
            }
        }
        Ok(applied)
    }
}
