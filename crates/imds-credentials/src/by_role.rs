//! Providers chosen per role: each role given its own provider has it, every other role gets the
//! default one. Roles can be given, changed and removed while requests are served.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use time::OffsetDateTime;

use crate::{BoxFuture, CredentialProvider, CredentialRequest, Credentials, CredentialsError};

type ProviderMap = HashMap<String, Arc<dyn CredentialProvider>>;

/// Sends each role to its own provider, and the roles nobody named to `default`.
#[derive(Debug)]
pub struct ByRole {
    default: Arc<dyn CredentialProvider>,
    /// Read without a lock on every fetch; replaced whole (roles change rarely).
    roles: ArcSwap<ProviderMap>,
    /// Serialises `set` and `remove`, so that two changes at once do not lose one.
    writer: std::sync::Mutex<()>,
}

impl ByRole {
    /// `roles` maps role names to their providers; `default` serves the others.
    pub fn new(default: Arc<dyn CredentialProvider>, roles: ProviderMap) -> ByRole {
        ByRole {
            default,
            roles: ArcSwap::from_pointee(roles),
            writer: std::sync::Mutex::new(()),
        }
    }

    /// The provider that serves `role_name`.
    pub fn provider(&self, role_name: &str) -> Arc<dyn CredentialProvider> {
        self.roles
            .load()
            .get(role_name)
            .unwrap_or(&self.default)
            .clone()
    }

    /// Whether `role_name` has a provider of its own.
    pub fn has_own(&self, role_name: &str) -> bool {
        self.roles.load().contains_key(role_name)
    }

    /// Gives `role_name` its own provider from now on (fetches already started finish with the
    /// previous one).
    pub fn set(&self, role_name: &str, provider: Arc<dyn CredentialProvider>) {
        let _writer = self
            .writer
            .lock()
            .expect("the writer lock is never held across a panic");
        let mut roles = ProviderMap::clone(&self.roles.load());
        roles.insert(role_name.to_owned(), provider);
        self.roles.store(Arc::new(roles));
    }

    /// Sends `role_name` to the default provider from now on; false if it had none of its own.
    pub fn remove(&self, role_name: &str) -> bool {
        let _writer = self
            .writer
            .lock()
            .expect("the writer lock is never held across a panic");
        let mut roles = ProviderMap::clone(&self.roles.load());
        let removed = roles.remove(role_name).is_some();
        self.roles.store(Arc::new(roles));
        removed
    }
}

impl CredentialProvider for ByRole {
    fn fetch<'a>(
        &'a self,
        request: CredentialRequest<'a>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Credentials, CredentialsError>> {
        let provider = self.provider(request.role_name);
        Box::pin(async move { provider.fetch(request, now).await })
    }

    fn per_instance(&self, role_name: &str) -> bool {
        self.provider(role_name).per_instance(role_name)
    }

    fn name(&self, role_name: &str) -> &'static str {
        self.provider(role_name).name(role_name)
    }

    fn answers_at_once(&self, role_name: &str) -> bool {
        self.provider(role_name).answers_at_once(role_name)
    }

    fn role_arn(&self, role_name: &str) -> Option<String> {
        self.provider(role_name).role_arn(role_name)
    }

    fn role_named_by_arn(&self, role_arn: &str) -> Option<String> {
        // Roles change rarely and are few; the smallest name wins if two assume one ARN, so the
        // answer does not depend on the map's order.
        self.roles
            .load()
            .iter()
            .filter(|(name, provider)| provider.role_arn(name).as_deref() == Some(role_arn))
            .map(|(name, _)| name.clone())
            .min()
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

    fn known_keys() -> StaticKeys {
        StaticKeys {
            access_key_id: "ASIAFIXEDFIXEDFIXED1".to_owned(),
            secret_access_key: Secret::new("secret".to_owned()),
            session_token: Secret::new("token".to_owned()),
        }
    }

    #[tokio::test]
    async fn named_roles_get_their_provider_and_others_the_default() {
        let now = datetime!(2026-11-24 12:00:00 UTC);
        let known = known_keys();
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
            delivery: crate::Delivery::V2,
        };
        let fixed = by_role.fetch(request("fixed"), now).await.unwrap();
        assert_eq!(fixed.access_key_id, known.access_key_id);
        let other = by_role.fetch(request("other"), now).await.unwrap();
        assert_ne!(other.access_key_id, known.access_key_id);
        assert!(!by_role.per_instance("fixed"));
    }

    #[tokio::test]
    async fn roles_change_while_serving() {
        let now = datetime!(2026-11-24 12:00:00 UTC);
        let known = known_keys();
        let by_role = ByRole::new(
            Arc::new(GeneratedProvider::new(Duration::from_secs(3600))),
            HashMap::new(),
        );
        let request = CredentialRequest {
            role_name: "app",
            instance_id: "i-0123456789abcdef0",
            delivery: crate::Delivery::V2,
        };
        assert!(!by_role.has_own("app"));
        by_role.set(
            "app",
            Arc::new(StaticProvider::new(
                known.clone(),
                Duration::from_secs(3600),
            )),
        );
        assert!(by_role.has_own("app"));
        let fixed = by_role.fetch(request, now).await.unwrap();
        assert_eq!(fixed.access_key_id, known.access_key_id);
        assert!(by_role.remove("app"));
        assert!(!by_role.remove("app"));
        let generated = by_role.fetch(request, now).await.unwrap();
        assert_ne!(generated.access_key_id, known.access_key_id);
    }

    #[test]
    fn roles_are_found_by_the_arn_their_provider_assumes() {
        let sts = |arn: &str| {
            crate::sts::provider(crate::sts::Config {
                role_arn: arn.to_owned(),
                ..crate::sts::Config::default()
            })
        };
        let by_role = ByRole::new(
            Arc::new(GeneratedProvider::new(Duration::from_secs(3600))),
            HashMap::from([
                ("b".to_owned(), sts("arn:aws:iam::123456789012:role/app")),
                ("a".to_owned(), sts("arn:aws:iam::123456789012:role/app")),
                (
                    "other".to_owned(),
                    sts("arn:aws:iam::123456789012:role/other"),
                ),
            ]),
        );
        assert_eq!(
            by_role.role_named_by_arn("arn:aws:iam::123456789012:role/app"),
            Some("a".to_owned())
        );
        assert_eq!(
            by_role.role_arn("other").as_deref(),
            Some("arn:aws:iam::123456789012:role/other")
        );
        assert_eq!(by_role.role_named_by_arn("arn:aws:iam::1:role/none"), None);
        assert_eq!(by_role.role_arn("unnamed"), None);
    }
}
