//! Providers chosen per role: each role named in the config has its own provider, every other
//! role gets the default one.

use std::{collections::HashMap, sync::Arc};

use time::OffsetDateTime;

use crate::{BoxFuture, CredentialProvider, CredentialRequest, Credentials, CredentialsError};

/// Sends each role to its own provider, and the roles nobody named to `default`.
#[derive(Debug)]
pub struct ByRole {
    default: Arc<dyn CredentialProvider>,
    roles: HashMap<String, Arc<dyn CredentialProvider>>,
}

impl ByRole {
    /// `roles` maps role names to their providers; `default` serves the others.
    pub fn new(
        default: Arc<dyn CredentialProvider>,
        roles: HashMap<String, Arc<dyn CredentialProvider>>,
    ) -> ByRole {
        ByRole { default, roles }
    }

    /// The provider that serves `role_name`.
    pub fn provider(&self, role_name: &str) -> &Arc<dyn CredentialProvider> {
        self.roles.get(role_name).unwrap_or(&self.default)
    }
}

impl CredentialProvider for ByRole {
    fn fetch<'a>(
        &'a self,
        request: CredentialRequest<'a>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Credentials, CredentialsError>> {
        self.provider(request.role_name).fetch(request, now)
    }

    fn per_instance(&self, role_name: &str) -> bool {
        self.provider(role_name).per_instance(role_name)
    }

    fn name(&self, role_name: &str) -> &'static str {
        self.provider(role_name).name(role_name)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;
    use crate::{
        fixed::{StaticKeys, StaticProvider},
        generated::GeneratedProvider,
        Secret,
    };

    #[tokio::test]
    async fn named_roles_get_their_provider_and_others_the_default() {
        let now = datetime!(2026-11-24 12:00:00 UTC);
        let known = StaticKeys {
            access_key_id: "ASIAFIXEDFIXEDFIXED1".to_owned(),
            secret_access_key: Secret::new("secret".to_owned()),
            session_token: Secret::new("token".to_owned()),
        };
        let by_role = ByRole::new(
            Arc::new(GeneratedProvider::new(Duration::from_secs(3600))),
            HashMap::from([(
                "fixed".to_owned(),
                Arc::new(StaticProvider::new(
                    known.clone(),
                    Duration::from_secs(3600),
                )) as Arc<dyn CredentialProvider>,
            )]),
        );
        let request = |role_name| CredentialRequest {
            role_name,
            instance_id: "i-0123456789abcdef0",
        };
        let fixed = by_role.fetch(request("fixed"), now).await.unwrap();
        assert_eq!(fixed.access_key_id, known.access_key_id);
        let other = by_role.fetch(request("other"), now).await.unwrap();
        assert_ne!(other.access_key_id, known.access_key_id);
        assert!(!by_role.per_instance("fixed"));
    }
}
