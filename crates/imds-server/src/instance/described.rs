//! An instance as the registry and the runtime keep it: what every request and every write needs
//! at hand (its id, addresses, metadata options and role), and the rest of its description as
//! the store holds it, resolved into an `Instance` when a request first needs its answers.
//!
//! A resolved `Instance` is about 3 KiB of strings and vectors; its stored description is about
//! 650 bytes of JSON. An instance nobody has asked anything yet keeps only the latter, which is
//! what lets a host serve many idle instances cheaply.

use std::{
    net::IpAddr,
    sync::{Arc, OnceLock},
};

use imds_core::{instance::Instance, options::MetadataOptions, spec::StoredInstance};

/// An instance's description, kept as stored and resolved on first use.
pub struct Described {
    /// `instance-id`.
    pub instance_id: Arc<str>,
    /// The source addresses it calls from; empty for the default instance.
    pub addresses: Box<[IpAddr]>,
    /// Its metadata options.
    pub options: MetadataOptions,
    /// The name of its instance profile's role, if it has one.
    pub role_name: Option<Box<str>>,
    /// The `StoredInstance` it resolves from, as JSON (the store's record).
    stored: Box<str>,
    resolved: OnceLock<Arc<Instance>>,
}

impl std::fmt::Debug for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Described")
            .field("instance_id", &self.instance_id)
            .field("addresses", &self.addresses)
            .field("resolved", &self.resolved.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Described {
    /// `instance` as kept: `stored` is the JSON of the `StoredInstance` it was resolved from.
    /// The resolved instance itself is dropped; `instance` resolves it again when needed.
    pub fn new(stored: String, instance: &Instance) -> Described {
        Described {
            instance_id: Arc::from(instance.instance_id.as_str()),
            addresses: instance.addresses.iter().copied().collect(),
            options: instance.options,
            role_name: instance
                .iam
                .as_ref()
                .map(|profile| Box::from(profile.role_name.as_str())),
            stored: stored.into_boxed_str(),
            resolved: OnceLock::new(),
        }
    }

    /// `stored` as kept, once it resolves.
    pub fn of(stored: &StoredInstance) -> Result<Described, String> {
        let instance = stored
            .instance
            .clone()
            .resolve(&stored.generated)
            .map_err(|error| error.0)?;
        let json = serde_json::to_string(stored).map_err(|error| error.to_string())?;
        Ok(Described::new(json, &instance))
    }

    /// The resolved instance, resolving it on first use. A description is stored only once it
    /// resolved, and resolving is a pure function of it, so this fails only if the text was
    /// damaged since; callers answer as for an instance that does not build.
    pub fn instance(&self) -> Result<&Arc<Instance>, String> {
        if let Some(instance) = self.resolved.get() {
            return Ok(instance);
        }
        let stored: StoredInstance = serde_json::from_str(&self.stored).map_err(|error| {
            format!(
                "the description of {} is unreadable: {error}",
                self.instance_id
            )
        })?;
        let instance = stored
            .instance
            .resolve(&stored.generated)
            .map_err(|error| error.0)?;
        // Two callers racing here resolve the same instance; either is kept.
        Ok(self.resolved.get_or_init(|| Arc::new(instance)))
    }

    /// True once `instance` resolved the description.
    pub fn is_resolved(&self) -> bool {
        self.resolved.get().is_some()
    }

    /// True when its role is `name`.
    pub fn has_role(&self, name: &str) -> bool {
        self.role_name.as_deref() == Some(name)
    }
}

#[cfg(test)]
mod tests {
    use imds_core::spec::{Generated, InstanceSpec};

    use super::*;

    fn described() -> (Described, Instance) {
        let spec: InstanceSpec = serde_json::from_value(serde_json::json!({
            "instance-id": "i-0123456789abcdef0",
            "addresses": ["127.0.0.2"],
            "iam": {"role-name": "app"},
        }))
        .unwrap();
        let stored = StoredInstance {
            generated: Generated::random(),
            instance: spec,
        };
        let instance = stored.instance.clone().resolve(&stored.generated).unwrap();
        (Described::of(&stored).unwrap(), instance)
    }

    #[test]
    fn it_keeps_what_requests_need_and_resolves_the_rest_to_the_same_instance() {
        let (described, instance) = described();
        assert_eq!(&*described.instance_id, "i-0123456789abcdef0");
        assert_eq!(&*described.addresses, instance.addresses.as_slice());
        assert!(described.has_role("app"));
        assert!(!described.has_role("other"));
        assert!(!described.is_resolved());
        let resolved = described.instance().unwrap().clone();
        assert!(described.is_resolved());
        assert_eq!(*resolved, instance);
        // Resolved once: the same instance every time after.
        assert!(Arc::ptr_eq(&resolved, described.instance().unwrap()));
    }

    #[test]
    fn a_damaged_description_is_an_error_naming_the_instance() {
        let (mut described, _) = described();
        described.stored = Box::from("{");
        let error = described.instance().unwrap_err();
        assert!(error.contains("i-0123456789abcdef0"), "{error}");
    }
}
