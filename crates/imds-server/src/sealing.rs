//! Role descriptions as the store keeps them: JSON, with a `static` role's `secret-access-key`
//! and `session-token` sealed when the server has a store key (`--store-key-file`), so that
//! nobody who can read the database (a fleet's PostgreSQL) reads role secrets from it.
//!
//! A sealed field is the text `sealed:v1:` and the base64 of what the `Sealer` made, bound to the
//! role and field name. Descriptions written without a store key keep plain values and still
//! load; a sealed one needs the key. `RoleCodec` is what the registry encodes and decodes
//! stored roles with.

use std::sync::Arc;

use base64::{engine::general_purpose::STANDARD, Engine};
use imds_credentials::spec::RoleSpec;
use imds_store::RoleRecord;

/// Seals and opens small secrets with a key the operator provides.
pub trait Sealer: Send + Sync + std::fmt::Debug {
    /// Seals `plaintext`, bound to `name` (it opens only under the same name).
    fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8>;
    /// Opens what `seal` made under `name`; fails with a message for the log if the key or the
    /// name differ or the value was altered.
    fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, String>;
}

const SEALED: &str = "sealed:v1:";

/// Role descriptions to and from the store's text, sealing secrets when it has a `Sealer`.
#[derive(Debug, Clone, Default)]
pub struct RoleCodec {
    /// Seals role secrets before they reach the store (with `--store-key-file`).
    sealer: Option<Arc<dyn Sealer>>,
}

impl RoleCodec {
    /// A codec that seals with `sealer`, or keeps secrets plain without one.
    pub fn new(sealer: Option<Arc<dyn Sealer>>) -> RoleCodec {
        RoleCodec { sealer }
    }

    /// The text the store keeps for role `name`'s `spec`.
    pub fn encode(&self, name: &str, spec: &RoleSpec) -> String {
        encode_role(self.sealer.as_deref(), name, spec)
    }

    /// The description a stored role holds.
    pub fn decode(&self, record: &RoleRecord) -> Result<RoleSpec, String> {
        decode_role(self.sealer.as_deref(), record)
    }
}

fn field_name(role: &str, field: &str) -> String {
    format!("role/{role}/{field}")
}

/// The JSON text the store keeps for `spec`, with its secrets sealed if there is a `sealer`.
pub fn encode_role(sealer: Option<&dyn Sealer>, name: &str, spec: &RoleSpec) -> String {
    let mut stored = spec.clone();
    if let Some(sealer) = sealer {
        for (field, value) in [
            ("secret-access-key", &mut stored.secret_access_key),
            ("session-token", &mut stored.session_token),
        ] {
            if let Some(plain) = value.as_mut() {
                let sealed = sealer.seal(&field_name(name, field), plain.as_bytes());
                *plain = format!("{SEALED}{}", STANDARD.encode(sealed));
            }
        }
    }
    serde_json::to_string(&stored).expect("role specs serialise to JSON")
}

/// The description a stored role record holds, its sealed fields opened.
pub fn decode_role(sealer: Option<&dyn Sealer>, record: &RoleRecord) -> Result<RoleSpec, String> {
    let mut spec: RoleSpec = serde_json::from_str(&record.spec)
        .map_err(|error| format!("stored role {} is unreadable: {error}", record.name))?;
    for (field, value) in [
        ("secret-access-key", &mut spec.secret_access_key),
        ("session-token", &mut spec.session_token),
    ] {
        let Some(sealed) = value.as_deref().and_then(|text| text.strip_prefix(SEALED)) else {
            continue;
        };
        let Some(sealer) = sealer else {
            return Err(format!(
                "stored role {}: its {field} is sealed; start the server with the store's \
                 --store-key-file",
                record.name
            ));
        };
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| format!("stored role {}: its sealed {field} is damaged", record.name))?;
        let plain = sealer
            .open(&field_name(&record.name, field), &bytes)
            .map_err(|error| format!("stored role {}: {field}: {error}", record.name))?;
        *value = Some(
            String::from_utf8(plain)
                .map_err(|_| format!("stored role {}: its {field} is not text", record.name))?,
        );
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealer that is easy to see through but keeps the contract: bound to the name, and
    /// refusing another name. (The real one, AES-256-GCM, is tested in the binary.)
    #[derive(Debug)]
    struct Reversing;

    impl Sealer for Reversing {
        fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
            let mut sealed = name.as_bytes().to_vec();
            sealed.push(0);
            sealed.extend(plaintext.iter().rev());
            sealed
        }

        fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
            let prefix_length = name.len() + 1;
            if sealed.len() < prefix_length || &sealed[..name.len()] != name.as_bytes() {
                return Err("sealed under another name".to_owned());
            }
            Ok(sealed[prefix_length..].iter().rev().copied().collect())
        }
    }

    fn record(name: &str, spec: String) -> RoleRecord {
        RoleRecord {
            name: name.to_owned(),
            spec,
            revision: 1,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn static_spec() -> RoleSpec {
        serde_json::from_str(
            r#"{"provider": "static", "access-key-id": "ASIAKEY", "secret-access-key": "the-secret", "session-token": "the-token"}"#,
        )
        .unwrap()
    }

    #[test]
    fn secrets_are_sealed_per_role_and_open_again() {
        let text = encode_role(Some(&Reversing), "app", &static_spec());
        assert!(
            !text.contains("the-secret") && !text.contains("the-token"),
            "{text}"
        );
        assert!(
            text.contains("ASIAKEY"),
            "the access key id is not secret: {text}"
        );
        assert_eq!(
            decode_role(Some(&Reversing), &record("app", text.clone())).unwrap(),
            static_spec()
        );
        // Sealed for one role, it does not open as another's.
        assert!(decode_role(Some(&Reversing), &record("web", text.clone())).is_err());
        // Without the key the role is refused, saying which flag is missing.
        let error = decode_role(None, &record("app", text)).unwrap_err();
        assert!(error.contains("--store-key-file"), "{error}");
    }

    #[test]
    fn without_a_sealer_values_stay_plain_and_load_either_way() {
        let text = encode_role(None, "app", &static_spec());
        assert!(text.contains("the-secret"));
        assert_eq!(
            decode_role(None, &record("app", text.clone())).unwrap(),
            static_spec()
        );
        assert_eq!(
            decode_role(Some(&Reversing), &record("app", text)).unwrap(),
            static_spec()
        );
    }
}
