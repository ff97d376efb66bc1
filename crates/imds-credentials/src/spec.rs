//! A role's provider as written: a config file's `[[roles]]` entry, a control-API body, or a
//! stored role. `RoleSpec::provider` checks it and makes the provider; its errors start with the
//! key at fault within the entry (`role-arn: required by the "sts" provider`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    fixed::{StaticKeys, StaticProvider},
    generated::GeneratedProvider,
    sts, CredentialProvider, Secret,
};

/// The shortest and longest lifetime of `generated` and `static` credentials: STS's own bounds
/// for a role session are 15 minutes to 12 hours; shorter sets are allowed to test rotation.
pub const LIFETIME_SECONDS: std::ops::RangeInclusive<u64> = 6..=43_200;

/// What a provider is made with besides its role's description: the server's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSettings {
    /// The lifetime of `generated` and `static` sets whose description gives none.
    pub default_lifetime: Duration,
    /// How long STS may take, for `sts` roles.
    pub sts_timeouts: sts::Timeouts,
}

impl ProviderSettings {
    /// Settings with `default_lifetime` and the default STS timeouts.
    pub fn with_lifetime(default_lifetime: Duration) -> ProviderSettings {
        ProviderSettings {
            default_lifetime,
            sts_timeouts: sts::Timeouts::default(),
        }
    }
}

/// One role's provider and its settings, in the config file's keys.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleSpec {
    /// The role name, as instances give it in `iam.role-name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9+=,.@_-]+$")
    )]
    pub name: Option<String>,
    /// `generated` (the default), `static` or `sts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ProviderName>))]
    pub provider: Option<String>,
    /// `generated` and `static`: how long each set lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 6, maximum = 43200))]
    pub lifetime_seconds: Option<u64>,
    /// `static`: `AccessKeyId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// `static`: `SecretAccessKey`; never shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(write_only))]
    pub secret_access_key: Option<String>,
    /// `static`: `Token`; never shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(write_only))]
    pub session_token: Option<String>,
    /// `static`, config file only: a JSON file holding the keys, which the config loader reads
    /// into the three keys above before the provider is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub credentials_file: Option<String>,
    /// `sts`: the ARN of the role to assume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// `sts`: the STS endpoint (for STS-compatible servers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// `sts`: the region STS is called in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `sts`: `ExternalId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `sts`: `DurationSeconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 43200))]
    pub duration_seconds: Option<i32>,
    /// `sts`: session tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub session_tags: BTreeMap<String, String>,
    /// `sts`: an inline session policy (JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `sts`: tag each session `RoleDelivery=1.0|2.0` (needs `sts:TagSession`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_session_tag: Option<bool>,
    /// `sts`: set each session's `SourceIdentity` to `RoleDelivery-1.0|2.0` (needs
    /// `sts:SetSourceIdentity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_source_identity: Option<bool>,
}

/// The providers a role can have, as `provider` names them; documentation of `RoleSpec`'s
/// field, which `RoleSpec::provider` checks.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ProviderName {
    /// Random keys made on this host.
    Generated,
    /// The same keys every time.
    Static,
    /// `AssumeRole` on `role-arn`.
    Sts,
}

impl std::fmt::Debug for RoleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key and token are left out: specs are logged with errors.
        f.debug_struct("RoleSpec")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("role_arn", &self.role_arn)
            .field("endpoint_url", &self.endpoint_url)
            .finish_non_exhaustive()
    }
}

/// A role spec that cannot be used; the message starts with the key at fault.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct RoleSpecError(pub String);

macro_rules! refuse {
    ($($argument:tt)*) => {
        return Err(RoleSpecError(format!($($argument)*)))
    };
}

impl RoleSpec {
    /// The provider name, `generated` when none is given.
    pub fn provider_name(&self) -> &str {
        self.provider.as_deref().unwrap_or("generated")
    }

    /// The spec without its secrets (`secret-access-key`, `session-token`), for showing.
    pub fn without_secrets(&self) -> RoleSpec {
        RoleSpec {
            secret_access_key: None,
            session_token: None,
            ..self.clone()
        }
    }

    /// Checks the spec as `provider` does, without making anything that lasts: for plans
    /// (a scenario's `put-role` step) that make the provider later.
    pub fn check(&self) -> Result<(), RoleSpecError> {
        // Making a provider is cheap and has no effects (the STS client is made on first use),
        // so the check is the constructor itself and cannot drift from it.
        self.clone()
            .provider(&ProviderSettings::with_lifetime(Duration::from_secs(3600)))
            .map(drop)
    }

    /// Checks the spec and makes its provider with the server's `settings`.
    pub fn provider(
        self,
        settings: &ProviderSettings,
    ) -> Result<Arc<dyn CredentialProvider>, RoleSpecError> {
        let default_lifetime = settings.default_lifetime;
        let lifetime = match self.lifetime_seconds {
            Some(seconds) if !LIFETIME_SECONDS.contains(&seconds) => {
                refuse!("lifetime-seconds: {seconds} must be from 6 to 43200 (12 hours)")
            }
            Some(seconds) => Duration::from_secs(seconds),
            None => default_lifetime,
        };
        let provider = self.provider_name().to_owned();
        let static_keys = [
            ("access-key-id", self.access_key_id.is_some()),
            ("secret-access-key", self.secret_access_key.is_some()),
            ("session-token", self.session_token.is_some()),
            ("credentials-file", self.credentials_file.is_some()),
        ];
        let sts_keys = [
            ("role-arn", self.role_arn.is_some()),
            ("endpoint-url", self.endpoint_url.is_some()),
            ("region", self.region.is_some()),
            ("external-id", self.external_id.is_some()),
            ("duration-seconds", self.duration_seconds.is_some()),
            ("session-tags", !self.session_tags.is_empty()),
            ("policy", self.policy.is_some()),
            ("delivery-session-tag", self.delivery_session_tag.is_some()),
            (
                "delivery-source-identity",
                self.delivery_source_identity.is_some(),
            ),
        ];
        let refuse_keys = |keys: &[(&str, bool)]| -> Result<(), RoleSpecError> {
            match keys.iter().find(|(_, given)| *given) {
                Some((key, _)) => refuse!("{key}: not a setting of the {provider:?} provider"),
                None => Ok(()),
            }
        };
        match provider.as_str() {
            "generated" => {
                refuse_keys(&static_keys)?;
                refuse_keys(&sts_keys)?;
                Ok(Arc::new(GeneratedProvider::new(lifetime)))
            }
            "static" => {
                refuse_keys(&sts_keys)?;
                if self.credentials_file.is_some() {
                    refuse!("credentials-file: read only from a config file; give access-key-id and secret-access-key")
                }
                let Some(access_key_id) = self.access_key_id.filter(|key| !key.is_empty()) else {
                    refuse!("access-key-id: required by the \"static\" provider");
                };
                let Some(secret_access_key) = self.secret_access_key.filter(|key| !key.is_empty())
                else {
                    refuse!("secret-access-key: required by the \"static\" provider");
                };
                let keys = StaticKeys {
                    access_key_id,
                    secret_access_key: Secret::new(secret_access_key),
                    session_token: Secret::new(self.session_token.unwrap_or_default()),
                };
                Ok(Arc::new(StaticProvider::new(keys, lifetime)))
            }
            "sts" => {
                refuse_keys(&static_keys)?;
                if self.lifetime_seconds.is_some() {
                    refuse!(
                        "lifetime-seconds: not a setting of the \"sts\" provider; use duration-seconds"
                    );
                }
                let Some(role_arn) = self.role_arn.filter(|arn| !arn.is_empty()) else {
                    refuse!("role-arn: required by the \"sts\" provider");
                };
                if !role_arn.starts_with("arn:") || role_arn.split(':').count() < 6 {
                    refuse!("role-arn: {role_arn:?} is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)");
                }
                if let Some(url) = &self.endpoint_url {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        refuse!("endpoint-url: {url:?} must start with http:// or https://");
                    }
                }
                if let Some(seconds) = self.duration_seconds {
                    if !(1..=43_200).contains(&seconds) {
                        refuse!("duration-seconds: {seconds} must be from 1 to 43200 (STS itself accepts 900 and up)");
                    }
                }
                let delivery_tag = self.delivery_session_tag.unwrap_or(false);
                if delivery_tag && self.session_tags.contains_key(sts::DELIVERY_TAG_KEY) {
                    refuse!(
                        "session-tags: {:?} is the tag delivery-session-tag sets",
                        sts::DELIVERY_TAG_KEY
                    );
                }
                Ok(sts::provider(sts::Config {
                    role_arn,
                    endpoint_url: self.endpoint_url,
                    region: self.region,
                    external_id: self.external_id,
                    duration_seconds: self.duration_seconds,
                    session_tags: self.session_tags.into_iter().collect(),
                    policy: self.policy,
                    delivery_tag,
                    delivery_source_identity: self.delivery_source_identity.unwrap_or(false),
                    timeouts: settings.sts_timeouts,
                }))
            }
            other => refuse!(
                "provider: {other:?} is not a provider; expected \"generated\", \"static\" or \"sts\""
            ),
        }
    }
}

/// Checks a role name as IAM does (`imds_core::role_name`); the error starts with `name:`.
pub fn check_role_name(name: &str) -> Result<(), RoleSpecError> {
    imds_core::role_name::check_role_name(name)
        .map_err(|error| RoleSpecError(format!("name: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_refused(json: &str, expect: &str) {
        let spec: RoleSpec = serde_json::from_str(json).unwrap();
        let error = match spec.provider(&ProviderSettings::with_lifetime(Duration::from_secs(3600)))
        {
            Ok(_) => panic!("{json} should be refused"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.starts_with(expect),
            "{error:?} should start with {expect:?}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        check_refused(r#"{"provider": "sts"}"#, "role-arn: required");
        check_refused(
            r#"{"provider": "sts", "role-arn": "x"}"#,
            "role-arn: \"x\" is not an ARN",
        );
        check_refused(
            r#"{"provider": "static", "access-key-id": "A"}"#,
            "secret-access-key: required",
        );
        check_refused(r#"{"lifetime-seconds": 1}"#, "lifetime-seconds: 1 must be");
        check_refused(
            r#"{"provider": "vault"}"#,
            "provider: \"vault\" is not a provider",
        );
        check_refused(
            r#"{"region": "eu-west-1"}"#,
            "region: not a setting of the \"generated\"",
        );
        check_refused(
            r#"{"provider": "static", "credentials-file": "keys.json"}"#,
            "credentials-file: read only from a config file",
        );
        check_refused(
            r#"{"provider": "generated", "delivery-session-tag": true}"#,
            "delivery-session-tag: not a setting of the \"generated\"",
        );
        check_refused(
            r#"{"provider": "sts", "role-arn": "arn:aws:iam::123456789012:role/app", "delivery-session-tag": true, "session-tags": {"RoleDelivery": "x"}}"#,
            "session-tags: \"RoleDelivery\" is the tag",
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_and_of_the_shown_spec() {
        let spec: RoleSpec = serde_json::from_str(
            r#"{"provider": "static", "access-key-id": "AKIAEXAMPLE", "secret-access-key": "wJalrSECRET", "session-token": "TOKENSECRET"}"#,
        )
        .unwrap();
        assert!(!format!("{spec:?}").contains("SECRET"));
        let shown = serde_json::to_string(&spec.without_secrets()).unwrap();
        assert_eq!(
            shown,
            r#"{"provider":"static","access-key-id":"AKIAEXAMPLE"}"#
        );
    }

    #[test]
    fn role_names_follow_iam() {
        assert!(check_role_name("app-Role_1+=,.@").is_ok());
        assert!(check_role_name("").is_err());
        assert!(check_role_name("a/b").is_err());
        assert!(check_role_name(&"a".repeat(65)).is_err());
    }
}
