//! Instance descriptions written and read back, and resolved.
//!
//! - JSON (the control API's bodies and the store's records) and TOML (the config file's
//!   `[instance]` and `[[instances]]` tables): writing a description and reading it back gives
//!   the same description.
//! - A stored instance (generated identifiers and description) reads back as written.
//! - Resolving any description returns an instance or an error naming a key; never a panic, and
//!   the same answer every time.

use imds_core::spec::{InstanceSpec, StoredInstance};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use crate::strategies::{generated, instance_spec, stored_instance};

/// A config file holding one `[instance]` and some `[[instances]]`, as `imds` reads it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigShape {
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<InstanceSpec>,
    #[serde(default)]
    instances: Vec<InstanceSpec>,
}

proptest! {
    #[test]
    fn json_reads_back_as_written(spec in instance_spec()) {
        let text = serde_json::to_string(&spec).unwrap();
        prop_assert_eq!(serde_json::from_str::<InstanceSpec>(&text).unwrap(), spec, "{}", text);
    }

    #[test]
    fn toml_reads_back_as_written(
        instance in proptest::option::of(instance_spec()),
        instances in prop::collection::vec(instance_spec(), 0..3),
    ) {
        let config = ConfigShape { instance, instances };
        let text = toml::to_string(&config).unwrap();
        let read: ConfigShape = toml::from_str(&text).map_err(|error| {
            TestCaseError::fail(format!("{error}\n{text}"))
        })?;
        prop_assert_eq!(read, config, "{}", text);
    }

    #[test]
    fn stored_instances_read_back_as_written(stored in stored_instance()) {
        let text = serde_json::to_string(&stored).unwrap();
        prop_assert_eq!(serde_json::from_str::<StoredInstance>(&text).unwrap(), stored, "{}", text);
    }

    #[test]
    fn resolving_never_panics_and_is_deterministic(
        spec in instance_spec(),
        generated in generated(),
    ) {
        let first = spec.clone().resolve(&generated);
        let second = spec.resolve(&generated);
        if let Err(error) = &first {
            prop_assert!(error.0.starts_with("instance"), "{:?}", error);
        }
        prop_assert_eq!(first, second);
    }
}
