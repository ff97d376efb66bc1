//! The config file's container sections: `[container-endpoint]`, the routes of the container
//! endpoint that name their role in the path; `[pod-identity]` and
//! `[[pod-identity-associations]]`, the EKS Pod Identity endpoint.

use std::{num::NonZeroU32, path::PathBuf, sync::Arc};

use anyhow::{bail, Context};
use imds_core::kubernetes_name::{check_namespace, check_service_account};
use imds_credentials::spec::check_role_name;
use imds_server::container_api::{
    pod_identity::{Association, PodIdentitySettings},
    service_account_token::{SigningKey, TokenKeys},
    PerRequestRoles,
};
use serde::Deserialize;

/// `[pod-identity]`: how the EKS Pod Identity endpoint checks requests.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PodIdentityFile {
    /// The cluster issuer's JWK Set (its `/openid/v1/jwks`), relative to the config file.
    pub jwks_file: Option<PathBuf>,
    /// One PEM key (public, or the private key tokens are minted with), relative to the config
    /// file.
    pub key_file: Option<PathBuf>,
    /// Refuse a `Host` other than `169.254.170.23` and `fd00:ec2::23` (and loopback); default
    /// true, as the agent.
    pub check_host: Option<bool>,
    /// Requests per second, all callers together; default 1000, as the agent.
    pub requests_per_second: Option<u32>,
    /// Requests at once above the rate; default 500, as the agent.
    pub burst: Option<u32>,
}

/// `[[pod-identity-associations]]`: a service account and its role.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PodIdentityAssociationFile {
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
    /// The role its pods get.
    pub role: String,
}

impl PodIdentityFile {
    /// Makes key paths relative to the config file's directory.
    pub fn relative_to(&mut self, directory: &std::path::Path) {
        for path in [&mut self.jwks_file, &mut self.key_file]
            .into_iter()
            .flatten()
        {
            *path = directory.join(&*path);
        }
    }

    /// The checks, without keys when none is configured; errors name the key.
    pub fn resolve(self) -> anyhow::Result<PodIdentityChecks> {
        let mut signer = None;
        let keys = match (&self.jwks_file, &self.key_file) {
            (Some(_), Some(_)) => bail!("pod-identity: give jwks-file or key-file, not both"),
            (None, None) => None,
            (Some(path), None) => Some({
                let bytes = std::fs::read(path).with_context(|| {
                    format!("pod-identity.jwks-file: cannot read {}", path.display())
                })?;
                TokenKeys::from_jwks(&bytes)
                    .with_context(|| format!("pod-identity.jwks-file {}", path.display()))?
            }),
            (None, Some(path)) => Some({
                let bytes = std::fs::read(path).with_context(|| {
                    format!("pod-identity.key-file: cannot read {}", path.display())
                })?;
                // A private key also mints tokens through the control API.
                signer = SigningKey::from_pem(&bytes).ok().map(Arc::new);
                TokenKeys::from_pem(&bytes)
                    .with_context(|| format!("pod-identity.key-file {}", path.display()))?
            }),
        };
        let positive = |value: Option<u32>, default: u32, key: &str| {
            NonZeroU32::new(value.unwrap_or(default))
                .with_context(|| format!("pod-identity.{key}: must be at least 1"))
        };
        Ok(PodIdentityChecks {
            keys,
            signer,
            check_host: self.check_host.unwrap_or(true),
            rate: positive(self.requests_per_second, 1000, "requests-per-second")?,
            burst: positive(self.burst, 500, "burst")?,
        })
    }
}

/// `[pod-identity]`, checked.
#[derive(Debug, Clone)]
pub struct PodIdentityChecks {
    /// The configured keys; `None`: the state directory's signing key.
    pub keys: Option<TokenKeys>,
    /// The configured key's private half, when `key-file` holds one.
    pub signer: Option<Arc<SigningKey>>,
    /// Refuse other `Host`s.
    pub check_host: bool,
    /// Requests per second.
    pub rate: NonZeroU32,
    /// Burst.
    pub burst: NonZeroU32,
}

impl PodIdentityChecks {
    /// The endpoint's settings, with `keys` when none is configured.
    pub fn settings(
        &self,
        keys: impl FnOnce() -> anyhow::Result<TokenKeys>,
    ) -> anyhow::Result<PodIdentitySettings> {
        Ok(PodIdentitySettings {
            keys: match &self.keys {
                Some(keys) => keys.clone(),
                None => keys()?,
            },
            check_host: self.check_host,
            rate: self.rate,
            burst: self.burst,
        })
    }
}

/// The associations, checked: Kubernetes names, role names, one role per service account (EKS
/// allows one association per service account).
pub fn resolve_associations(
    files: Vec<PodIdentityAssociationFile>,
) -> anyhow::Result<Vec<Association>> {
    let mut associations: Vec<Association> = Vec::with_capacity(files.len());
    for (index, file) in files.into_iter().enumerate() {
        let key = format!("pod-identity-associations[{index}]");
        check_namespace(&file.namespace)
            .map_err(|error| anyhow::format_err!("{key}.namespace: {error}"))?;
        check_service_account(&file.service_account)
            .map_err(|error| anyhow::format_err!("{key}.service-account: {error}"))?;
        check_role_name(&file.role).map_err(|error| anyhow::format_err!("{key}.role: {error}"))?;
        if associations.iter().any(|association| {
            association.namespace == file.namespace
                && association.service_account == file.service_account
        }) {
            bail!(
                "{key}: service account {}/{} already has an association",
                file.namespace,
                file.service_account
            );
        }
        associations.push(Association {
            namespace: file.namespace,
            service_account: file.service_account,
            role_name: file.role,
        });
    }
    Ok(associations)
}

/// `[container-endpoint]`: which routes that name their role the container endpoint serves.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainerEndpointFile {
    /// Serve `/role-arn/ARN` (aws-vault's form).
    pub role_arn_routes: Option<bool>,
    /// Serve `/role/NAME` (amazon-ecs-local-container-endpoints' form).
    pub role_routes: Option<bool>,
    /// The `Authorization` value those routes require (`AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    pub authorization_token: Option<String>,
}

impl std::fmt::Debug for ContainerEndpointFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerEndpointFile")
            .field("role_arn_routes", &self.role_arn_routes)
            .field("role_routes", &self.role_routes)
            .finish_non_exhaustive()
    }
}

impl ContainerEndpointFile {
    /// The routes to serve; errors name the key.
    pub fn resolve(self) -> anyhow::Result<PerRequestRoles> {
        if let Some(token) = &self.authorization_token {
            check_token_line(token, "container-endpoint.authorization-token")?;
        }
        Ok(PerRequestRoles {
            role_arn: self.role_arn_routes.unwrap_or(false),
            role_name: self.role_routes.unwrap_or(false),
            authorization_token: self.authorization_token,
        })
    }
}

/// An `Authorization` value as SDKs can send it: one non-empty line.
pub fn check_token_line(token: &str, key: &str) -> anyhow::Result<()> {
    if token.is_empty() || token.contains(['\r', '\n']) {
        bail!("{key}: must be one non-empty line (SDKs refuse line breaks)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associations_are_kubernetes_names_one_per_service_account() {
        let file = |namespace: &str, service_account: &str| PodIdentityAssociationFile {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            role: "app".to_owned(),
        };
        let ok = resolve_associations(vec![file("shop", "cart.v2"), file("shop", "pay")]).unwrap();
        assert_eq!(ok[0].service_account, "cart.v2");
        for (namespace, service_account, key) in [
            ("Shop", "cart", "[0].namespace"),
            ("a.b", "cart", "[0].namespace"),
            ("shop", "-cart", "[0].service-account"),
            ("shop", "", "[0].service-account"),
        ] {
            let error = resolve_associations(vec![file(namespace, service_account)]).unwrap_err();
            assert!(format!("{error:#}").contains(key), "{error:#}");
        }
        let error =
            resolve_associations(vec![file("shop", "cart"), file("shop", "cart")]).unwrap_err();
        assert!(format!("{error:#}").contains("already has an association"));
    }

    #[test]
    fn pod_identity_needs_one_key_and_positive_rates() {
        let defaults = PodIdentityFile::default().resolve().unwrap();
        assert!(defaults.keys.is_none() && defaults.check_host);
        assert_eq!((defaults.rate.get(), defaults.burst.get()), (1000, 500));
        let zero = PodIdentityFile {
            burst: Some(0),
            ..PodIdentityFile::default()
        };
        assert!(format!("{:#}", zero.resolve().unwrap_err()).contains("pod-identity.burst"));
        let both = PodIdentityFile {
            jwks_file: Some("a".into()),
            key_file: Some("b".into()),
            ..PodIdentityFile::default()
        };
        assert!(format!("{:#}", both.resolve().unwrap_err()).contains("not both"));
        let missing = PodIdentityFile {
            jwks_file: Some("/nonexistent/jwks.json".into()),
            ..PodIdentityFile::default()
        };
        assert!(format!("{:#}", missing.resolve().unwrap_err()).contains("pod-identity.jwks-file"));
    }

    #[test]
    fn routes_are_off_unless_asked_for_and_tokens_are_one_line() {
        let off = ContainerEndpointFile::default().resolve().unwrap();
        assert!(!off.role_arn && !off.role_name && off.authorization_token.is_none());
        let on: ContainerEndpointFile =
            toml::from_str("role-arn-routes = true\nauthorization-token = \"t0k3n\"\n").unwrap();
        assert!(!format!("{on:?}").contains("t0k3n"));
        let on = on.resolve().unwrap();
        assert!(on.role_arn && !on.role_name);
        let bad: ContainerEndpointFile =
            toml::from_str("authorization-token = \"a\\n\"\n").unwrap();
        let error = format!("{:#}", bad.resolve().unwrap_err());
        assert!(
            error.contains("container-endpoint.authorization-token"),
            "{error}"
        );
    }
}
