//! What every instance is served with: the identity signer, the provider of the instances' own
//! identity credentials, the role credential cache and its providers. One `Services` is shared
//! by all instances of a server.

use std::{sync::Arc, time::Duration};

use imds_credentials::{by_role::ByRole, generated::GeneratedProvider, spec::ProviderSettings};

use crate::{
    credentials::RoleCache, identity::IdentitySigner, instance::snapshot::Issuer,
    instance_connect::InstanceConnectSigner,
};

/// The services instances are served with.
#[derive(Debug, Clone)]
pub struct Services {
    /// Signs identity documents and makes identity credentials.
    pub issuer: Arc<Issuer>,
    /// Role credentials, cached per role.
    pub roles: Arc<RoleCache>,
    /// The provider behind `roles`, whose roles the control API changes.
    pub providers: Arc<ByRole>,
    /// What providers made at run time (control API, stored roles) are made with.
    pub provider_settings: ProviderSettings,
}

impl Services {
    /// Services signing with `signer` and getting role credentials from `providers`; identity
    /// credentials and the `generated` and `static` sets whose role gives no lifetime last
    /// `default_lifetime`.
    pub fn new(
        signer: Arc<IdentitySigner>,
        providers: Arc<ByRole>,
        default_lifetime: Duration,
    ) -> Services {
        Services::with_settings(
            signer,
            providers,
            ProviderSettings::with_lifetime(default_lifetime),
        )
    }

    /// As `new`, with every provider setting given.
    pub fn with_settings(
        signer: Arc<IdentitySigner>,
        providers: Arc<ByRole>,
        provider_settings: ProviderSettings,
    ) -> Services {
        Services {
            issuer: Arc::new(Issuer {
                signer,
                identity_credentials: GeneratedProvider::new(provider_settings.default_lifetime),
                instance_connect: None,
            }),
            roles: Arc::new(RoleCache::new(providers.clone())),
            providers,
            provider_settings,
        }
    }

    /// These services with `signer` signing EC2 Instance Connect's keys and making the chain
    /// `managed-ssh-keys/` serves.
    pub fn with_instance_connect(self, signer: Arc<InstanceConnectSigner>) -> Services {
        Services {
            issuer: Arc::new(Issuer {
                signer: self.issuer.signer.clone(),
                identity_credentials: GeneratedProvider::new(
                    self.provider_settings.default_lifetime,
                ),
                instance_connect: Some(signer),
            }),
            ..self
        }
    }
}
