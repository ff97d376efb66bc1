//! The configuration file: what the server serves.
//!
//! Loading is in two stages. `ConfigFile` holds exactly what was written (every key optional,
//! unknown keys refused); `ConfigFile::resolve` turns it into typed objects and checks every
//! value (`imds_core::spec` does the instance part). Loading has no side effects.
//!
//! - `[instance]` describes the default instance: it answers every caller when no instance is
//!   registered, and callers no registered instance claims when it is given explicitly.
//! - `[[instances]]` are registered instances (host mode), each with its `instance-id` and
//!   `addresses`. At every start they are written to the store, replacing the stored version:
//!   the file is authoritative for the instances it names, and changes made to them through the
//!   control API last until the next start.

use std::{path::Path, time::Duration};

use anyhow::{bail, format_err, Context};
use base64::{engine::general_purpose::STANDARD, Engine};
use imds_core::{
    instance::Instance,
    spec::{Generated, InstanceSpec},
};
use serde::Deserialize;

/// The commented example printed by `imds config default`.
pub const EXAMPLE_CONFIG: &str = include_str!("../imds.example.toml");

/// A configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// The default instance.
    pub instance: Option<InstanceSpec>,
    /// Registered instances, told apart by their source addresses.
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    /// How role credentials are made.
    #[serde(default)]
    pub credentials: CredentialsFile,
}

/// `[credentials]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CredentialsFile {
    /// `generated` (the only provider so far).
    pub provider: Option<String>,
    /// How long each set of credentials lasts.
    pub lifetime_seconds: Option<u64>,
}

/// The resolved configuration.
#[derive(Debug)]
pub struct Config {
    /// The default instance.
    pub default_instance: Instance,
    /// True when the file gave `[instance]`: then the default instance also answers callers no
    /// registered instance claims.
    pub explicit_default: bool,
    /// Registered instances from the file, checked.
    pub instances: Vec<InstanceSpec>,
    /// Lifetime of generated credentials.
    pub credential_lifetime: Duration,
}

/// Reads and parses a config file; errors name the file and the offending key. A
/// `user-data-file` is read here, relative to the config file.
pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut file =
        parse(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    let directory = path.parent().unwrap_or(Path::new("."));
    let specs = file.instance.iter_mut().chain(file.instances.iter_mut());
    for spec in specs {
        if let Some(name) = spec.user_data_file.take() {
            if spec.user_data.is_some() || spec.user_data_base64.is_some() {
                bail!(
                    "instance: set at most one of user-data, user-data-base64 and user-data-file"
                );
            }
            let user_data_path = directory.join(&name);
            let bytes = std::fs::read(&user_data_path).with_context(|| {
                format!(
                    "instance.user-data-file: cannot read {}",
                    user_data_path.display()
                )
            })?;
            spec.user_data_base64 = Some(STANDARD.encode(bytes));
        }
    }
    Ok(file)
}

/// Parses config text, naming the key of any error.
pub fn parse(text: &str) -> anyhow::Result<ConfigFile> {
    let deserializer = toml::Deserializer::parse(text).map_err(|error| format_err!("{error}"))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        format_err!("{path}: {}", inner.message())
    })
}

impl ConfigFile {
    /// Checks every value; the default instance takes what it leaves out from `generated`.
    pub fn resolve(self, generated: &Generated) -> anyhow::Result<Config> {
        let explicit_default = self.instance.is_some();
        let default_spec = self.instance.unwrap_or_default();
        if default_spec.addresses.is_some() {
            bail!(
                "instance.addresses: the default instance answers callers no other instance claims; \
                 give addresses in [[instances]]"
            );
        }
        let default_instance = default_spec
            .resolve(generated)
            .map_err(|error| format_err!("{error}"))?;
        let mut seen_ids = std::collections::HashSet::new();
        for (index, spec) in self.instances.iter().enumerate() {
            let rename =
                |message: String| message.replacen("instance.", &format!("instances[{index}]."), 1);
            let Some(instance_id) = &spec.instance_id else {
                bail!("instances[{index}].instance-id: required for registered instances");
            };
            if !seen_ids.insert(instance_id.clone()) || *instance_id == default_instance.instance_id
            {
                bail!("instances[{index}].instance-id: {instance_id} is given twice");
            }
            if spec.addresses.as_ref().is_none_or(Vec::is_empty) {
                bail!("instances[{index}].addresses: a registered instance needs at least one source address");
            }
            spec.clone()
                .resolve(&Generated::random())
                .map_err(|error| format_err!("{}", rename(error.0)))?;
        }

        let credentials = self.credentials;
        match credentials.provider.as_deref() {
            None | Some("generated") => {}
            Some(other) => {
                bail!("credentials.provider: {other:?} is not a provider; expected \"generated\"")
            }
        }
        let lifetime_seconds = credentials.lifetime_seconds.unwrap_or(6 * 3600);
        if !(6..=43_200).contains(&lifetime_seconds) {
            bail!("credentials.lifetime-seconds: {lifetime_seconds} must be from 6 to 43200 (12 hours)");
        }
        Ok(Config {
            default_instance,
            explicit_default,
            instances: self.instances,
            credential_lifetime: Duration::from_secs(lifetime_seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_error(text: &str, expect: &str) {
        let result = parse(text).and_then(|file| file.resolve(&Generated::random()));
        let error = format!("{:#}", result.expect_err("config should be refused"));
        assert!(
            error.contains(expect),
            "error {error:?} does not mention {expect:?}"
        );
    }

    #[test]
    fn example_config_parses_and_resolves() {
        let config = parse(EXAMPLE_CONFIG)
            .unwrap()
            .resolve(&Generated::random())
            .unwrap();
        let instance = config.default_instance;
        assert_eq!(instance.instance_id, "i-0123456789abcdef0");
        assert_eq!(instance.placement.region, "eu-west-1");
        assert_eq!(instance.placement.availability_zone, "eu-west-1b");
        assert!(instance.iam.is_some());
        assert!(instance.user_data.is_some());
        assert!(config.explicit_default);
    }

    #[test]
    fn errors_name_the_field() {
        check_error(
            "[instance]\nbogus = 1\n",
            "instance.bogus: unknown field `bogus`",
        );
        check_error(
            "[instance.metadata-options]\nhttp-tokens = \"always\"\n",
            "instance.metadata-options.http-tokens",
        );
        check_error(
            "[instance.metadata-options]\nhttp-put-response-hop-limit = \"1\"\n",
            "instance.metadata-options.http-put-response-hop-limit",
        );
        check_error(
            "[credentials]\nlifetime-seconds = 1\n",
            "credentials.lifetime-seconds",
        );
        check_error("[instance\n", "line 1");
        check_error(
            "[instance]\naddresses = [\"127.0.0.2\"]\n",
            "instance.addresses",
        );
        check_error(
            "[[instances]]\naddresses = [\"127.0.0.2\"]\n",
            "instances[0].instance-id",
        );
        check_error(
            "[[instances]]\ninstance-id = \"i-0123456789abcdef0\"\n",
            "instances[0].addresses",
        );
        check_error(
            "[[instances]]\ninstance-id = \"i-0123456789abcdef0\"\naddresses = [\"127.0.0.2\"]\ninstance-type = 3\n",
            "instances[0].instance-type",
        );
        check_error(
            "[[instances]]\ninstance-id = \"i-0123456789abcdef0\"\naddresses = [\"127.0.0.2\"]\n[instances.placement]\nregion = \"Bad\"\n",
            "instances[0].placement.region",
        );
    }

    #[test]
    fn user_data_file_is_read_relative_to_the_config() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("boot.sh"), b"#!/bin/sh\ntrue\n").unwrap();
        let path = directory.path().join("imds.toml");
        std::fs::write(&path, "[instance]\nuser-data-file = \"boot.sh\"\n").unwrap();
        let config = read(&path).unwrap().resolve(&Generated::random()).unwrap();
        assert_eq!(
            config.default_instance.user_data.as_deref(),
            Some(&b"#!/bin/sh\ntrue\n"[..])
        );
        std::fs::write(&path, "[instance]\nuser-data-file = \"missing.sh\"\n").unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("missing.sh"));
    }
}
