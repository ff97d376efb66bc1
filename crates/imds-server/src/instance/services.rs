//! What every instance's runtime uses to make its answers: the identity signer, the role
//! credential cache and its providers. One `Services` is shared by all instances of a server.

use std::{sync::Arc, time::Duration};

use imds_credentials::{by_role::ByRole, CredentialRequest, CredentialsError};
use time::OffsetDateTime;

use crate::{
    credentials::{RenderedCredentials, RoleCache},
    identity::IdentitySigner,
    instance::snapshot::IDENTITY_ROLE,
};

/// The services instances are served with.
#[derive(Debug, Clone)]
pub struct Services {
    /// Signs identity documents.
    pub signer: Arc<IdentitySigner>,
    /// Role credentials, cached per role; its provider also makes identity credentials.
    pub roles: Arc<RoleCache>,
    /// The provider behind `roles`, whose roles the control API changes.
    pub providers: Arc<ByRole>,
    /// The lifetime of `generated` and `static` sets whose role gives none.
    pub default_lifetime: Duration,
}

impl Services {
    /// Services signing with `signer` and getting credentials from `providers`.
    pub fn new(
        signer: Arc<IdentitySigner>,
        providers: Arc<ByRole>,
        default_lifetime: Duration,
    ) -> Services {
        Services {
            signer,
            roles: Arc::new(RoleCache::new(providers.clone())),
            providers,
            default_lifetime,
        }
    }

    /// A new set of the instance's own identity credentials, rendered.
    pub(crate) async fn identity_credentials(
        &self,
        instance_id: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<RenderedCredentials>, CredentialsError> {
        let request = CredentialRequest {
            role_name: IDENTITY_ROLE,
            instance_id,
        };
        let credentials = self.roles.provider().fetch(request, now).await?;
        Ok(Arc::new(RenderedCredentials::imds_only(&credentials)))
    }
}
