//! Property test of the config file: a config written with serde's TOML writer and read back by
//! `config::parse` holds the same `[instance]`, `[[instances]]` and `[[roles]]` as were written.

use std::collections::BTreeMap;

use imds_core::spec::InstanceSpec;
use imds_credentials::spec::RoleSpec;
use proptest::{option::of, prelude::*};
use serde::Serialize;

// The strategies of imds-core's property tests, shared rather than copied; this test uses some.
#[allow(dead_code)]
#[path = "../../../imds-core/tests/properties/strategies.rs"]
mod strategies;

use strategies::{instance_spec, text};

/// The part of a config file this test writes.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Written<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a InstanceSpec>,
    instances: &'a [InstanceSpec],
    roles: &'a [RoleSpec],
}

fn role_spec() -> impl Strategy<Value = RoleSpec> {
    (
        (
            of(text()),
            of(prop::sample::select(vec!["generated", "static", "sts"]).prop_map(str::to_owned)),
            // TOML integers are signed 64-bit: a config cannot hold more.
            of(0..=i64::MAX as u64),
            of(text()),
            of(text()),
            of(text()),
            of(text()),
        ),
        (
            of(text()),
            of(text()),
            of(text()),
            of(text()),
            of(any::<i32>()),
            prop::collection::btree_map(text(), text(), 0..3),
            of(text()),
        ),
        (of(any::<bool>()), of(any::<bool>())),
    )
        .prop_map(
            |(
                (
                    name,
                    provider,
                    lifetime_seconds,
                    access_key_id,
                    secret_access_key,
                    session_token,
                    credentials_file,
                ),
                (
                    role_arn,
                    endpoint_url,
                    region,
                    external_id,
                    duration_seconds,
                    session_tags,
                    policy,
                ),
                (delivery_session_tag, delivery_source_identity),
            ): (_, (_, _, _, _, _, BTreeMap<String, String>, _), _)| RoleSpec {
                name,
                provider,
                lifetime_seconds,
                access_key_id,
                secret_access_key,
                session_token,
                credentials_file,
                role_arn,
                endpoint_url,
                region,
                external_id,
                duration_seconds,
                session_tags,
                policy,
                delivery_session_tag,
                delivery_source_identity,
            },
        )
}

proptest! {
    #[test]
    fn a_written_config_reads_back_as_written(
        instance in of(instance_spec()),
        instances in prop::collection::vec(instance_spec(), 0..3),
        roles in prop::collection::vec(role_spec(), 0..3),
    ) {
        let text = toml::to_string(&Written { instance: instance.as_ref(), instances: &instances, roles: &roles })
            .expect("every description can be written as TOML");
        let file = super::parse(&text).map_err(|error| TestCaseError::fail(format!("{error:#}\n{text}")))?;
        prop_assert_eq!(file.instance, instance, "{}", text);
        prop_assert_eq!(file.instances, instances, "{}", text);
        prop_assert!(file.roles == roles, "roles differ after reading back:\n{}", text);
    }
}
