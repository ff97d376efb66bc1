//! Start-up: brings the store in line with the config file and starts serving what it holds.
//!
//! The config file is authoritative for what it names: its roles are written to the store at
//! every start (replacing changes made through the control API), its `[instance]` is the default
//! instance (else the generated one, created on the first start and then kept with its changes),
//! and its `[[instances]]` are created or replaced. Nothing here waits for credentials: instances
//! whose role needs an upstream get their credentials in the background (see
//! `instance::runtime`), so serving starts whatever the upstreams do.

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
