//! What a captured description serves, compared with what was captured.
//!
//! `servable` resolves the description as `imds serve` would; a value the description refuses
//! (the error names its key) is taken out and the rest tried again, so one odd value never
//! costs the others. `compare` renders the resulting instance's metadata tree with the
//! server's own code (`imds_server::snapshot`) and lists every captured answer that would be
//! served differently or not at all, and every answer that would be served without having been
//! captured. Credentials, their `LastUpdated` times, the identity signatures and what
//! `managed-ssh-keys/` holds (the serving host's EC2 Instance Connect chain, keys sent to a served
//! instance) are left out of the comparison: they are made anew by the serving imds.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use imds_core::{
    instance::Instance,
    metadata_tree::{ContentKind, Flat},
    spec::{Generated, InstanceSpec},
};
use imds_server::{
    credentials::RenderedCredentials,
    identity::Signatures,
    instance::snapshot::{Live, SignedIdentity, Snapshot},
    instance_connect::SignerChain,
};
use serde_json::Value;
use time::OffsetDateTime;

use crate::capture::walk::{parse_listing, Capture, Child, Entry};

/// The most keys taken out of one description before giving up.
const MAX_REMOVALS: usize = 100;

/// Resolves `spec`, taking out each value it refuses (noted in `notes`) until it resolves.
pub fn servable(
    spec: InstanceSpec,
    generated: &Generated,
    notes: &mut Vec<String>,
) -> anyhow::Result<(InstanceSpec, Instance)> {
    let mut spec = spec;
    for _ in 0..MAX_REMOVALS {
        let error = match spec.clone().resolve(generated) {
            Ok(instance) => return Ok((spec, instance)),
            Err(error) => error,
        };
        let Some(path) = error
            .0
            .split_once(": ")
            .and_then(|(key, _)| key.strip_prefix("instance."))
        else {
            anyhow::bail!("the captured values cannot be served: {error}");
        };
        let mut value = serde_json::to_value(&spec).expect("an instance spec serialises");
        let Some((removed_path, removed)) = remove(&mut value, path) else {
            anyhow::bail!("the captured values cannot be served: {error}");
        };
        notes.push(format!(
            "instance.{removed_path} = {} not kept: {error}",
            preview_json(&removed)
        ));
        spec = serde_json::from_value(value).expect("removing a key keeps a valid spec");
    }
    anyhow::bail!("the captured values cannot be served: over {MAX_REMOVALS} of them are refused")
}

/// Takes out the node at `path` (`placement.availability-zone`, `network-interfaces[1].mac`),
/// or the nearest enclosing one whose removal leaves a description that still parses; returns
/// the path taken out and its value.
fn remove(value: &mut Value, path: &str) -> Option<(String, Value)> {
    let mut segments: Vec<(String, Option<usize>)> = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((name, index)) => {
                let index = index.strip_suffix(']')?.parse().ok()?;
                segments.push((name.to_owned(), None));
                segments.push((String::new(), Some(index)));
            }
            None => segments.push((part.to_owned(), None)),
        }
    }
    while !segments.is_empty() {
        let mut candidate = value.clone();
        if let Some(removed) = remove_at(&mut candidate, &segments) {
            if serde_json::from_value::<InstanceSpec>(candidate.clone()).is_ok() {
                *value = candidate;
                return Some((segments_text(&segments), removed));
            }
        }
        segments.pop();
    }
    None
}

fn remove_at(value: &mut Value, segments: &[(String, Option<usize>)]) -> Option<Value> {
    let ((last_name, last_index), parents) = segments.split_last()?;
    let mut node = value;
    for (name, index) in parents {
        node = match index {
            Some(index) => node.get_mut(*index)?,
            None => node.get_mut(name.as_str())?,
        };
    }
    match last_index {
        Some(index) => {
            let list = node.as_array_mut()?;
            (*index < list.len()).then(|| list.remove(*index))
        }
        None => node.as_object_mut()?.remove(last_name.as_str()),
    }
}

fn segments_text(segments: &[(String, Option<usize>)]) -> String {
    let mut text = String::new();
    for (name, index) in segments {
        match index {
            Some(index) => text.push_str(&format!("[{index}]")),
            None => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(name);
            }
        }
    }
    text
}

/// The metadata tree `instance` is served with, at `now`, credentials and signatures made up.
pub fn served_tree(instance: &Instance, now: OffsetDateTime) -> anyhow::Result<Flat> {
    let credentials = RenderedCredentials {
        json: Bytes::from_static(b"{}"),
        access_key_id: String::new(),
        last_updated: now,
        refresh_at: now,
        expiration: None,
        container_json: None,
    };
    let identity = SignedIdentity {
        document: Bytes::from(SignedIdentity::document(instance)),
        signatures: Signatures {
            signature: Bytes::new(),
            pkcs7: Bytes::new(),
            rsa2048: Bytes::new(),
        },
    };
    let snapshot = Snapshot::build(
        instance,
        &identity,
        Live {
            role_credentials: Some(&credentials),
            role_credentials_v1: None,
            identity_credentials: &credentials,
            now,
            // Instance Connect keys are sent to a served instance, never captured; the chain is
            // the serving host's (an empty stand-in: only its place in `meta-data/` is compared).
            managed_keys: &Default::default(),
            signer_chain: Some(&SignerChain {
                certificates: Bytes::new(),
                staples: Vec::new(),
                refresh_at: now,
            }),
        },
    )
    .map_err(|error| anyhow::format_err!("the captured instance does not build: {error}"))?;
    Ok(snapshot.answers)
}

/// True for keys whose answers the serving imds makes anew (credentials and signatures), and
/// for the extended credentials listing, which no walk reads as a category (only whether it
/// answers).
fn made_anew(key: &str) -> bool {
    if key == "meta-data/iam/security-credentials-extended"
        || key == "meta-data/managed-ssh-keys"
        || key.starts_with("meta-data/managed-ssh-keys/")
    {
        return true;
    }
    let credentials = [
        "meta-data/iam/security-credentials/",
        "meta-data/iam/security-credentials-extended/",
        "meta-data/identity-credentials/ec2/security-credentials/",
    ];
    credentials.iter().any(|prefix| key.starts_with(prefix))
        || matches!(
            key,
            "dynamic/instance-identity/signature"
                | "dynamic/instance-identity/pkcs7"
                | "dynamic/instance-identity/rsa2048"
        )
}

/// JSON documents whose `LastUpdated` is the time of the credentials, not of the instance.
fn dated_by_credentials(key: &str) -> bool {
    matches!(
        key,
        "meta-data/iam/info" | "meta-data/identity-credentials/ec2/info"
    )
}

/// Every difference between what was captured and what `served` serves, one line each.
pub fn compare(capture: &Capture, served: &Flat) -> Vec<String> {
    let served: BTreeMap<&str, (&Bytes, ContentKind)> = served
        .iter()
        .map(|(key, answer)| (key, (&answer.body, answer.kind)))
        .collect();
    let mut keys: BTreeSet<&str> = capture.entries.keys().map(String::as_str).collect();
    keys.extend(served.keys().copied());
    let mut differences = Vec::new();
    for key in keys {
        if made_anew(key) {
            continue;
        }
        let shown = if key.is_empty() { "/" } else { key };
        let shown_category = if key.is_empty() {
            "/".to_owned()
        } else {
            format!("{key}/")
        };
        match (capture.entries.get(key), served.get(key)) {
            (Some(Entry::Listing(captured)), Some((body, ContentKind::Listing))) => {
                let public_keys = key == "meta-data/public-keys";
                let names = |text: &str| -> BTreeSet<String> {
                    if public_keys {
                        text.split('\n')
                            .map(|line| line.trim().to_owned())
                            .filter(|line| !line.is_empty())
                            .collect()
                    } else {
                        parse_listing(text, false)
                            .into_iter()
                            .map(|child| match child {
                                Child::Category(name) => format!("{name}/"),
                                Child::Value(name) | Child::Odd(name) => name,
                            })
                            .collect()
                    }
                };
                let captured_names = names(captured);
                let served_names = names(&String::from_utf8_lossy(body));
                let missing: Vec<&str> = captured_names
                    .difference(&served_names)
                    .map(String::as_str)
                    .collect();
                let added: Vec<&str> = served_names
                    .difference(&captured_names)
                    .map(String::as_str)
                    .collect();
                let mut parts = Vec::new();
                if !missing.is_empty() {
                    parts.push(format!(
                        "without {}",
                        preview(missing.join(", ").as_bytes())
                    ));
                }
                if !added.is_empty() {
                    parts.push(format!("with {}", preview(added.join(", ").as_bytes())));
                }
                if !parts.is_empty() {
                    differences.push(format!(
                        "{shown_category} is listed {} (compared with the capture)",
                        parts.join(" and ")
                    ));
                }
            }
            (Some(Entry::Value(captured)), Some((body, kind))) if *kind != ContentKind::Listing => {
                if !same_value(key, captured, body) {
                    match json_fields_differing(captured, body) {
                        Some(fields) => {
                            for (field, served_field, captured_field) in fields {
                                differences.push(format!(
                                    "{shown} field {field} is served as {} (captured: {})",
                                    preview_json(&served_field),
                                    preview_json(&captured_field)
                                ));
                            }
                        }
                        None => differences.push(format!(
                            "{shown} is served as {} (captured: {})",
                            preview(body),
                            preview(captured)
                        )),
                    }
                }
            }
            (Some(_), Some(_)) => differences.push(format!(
                "{shown} is served as a {} (captured as a {})",
                if matches!(served.get(key), Some((_, ContentKind::Listing))) {
                    "category"
                } else {
                    "value"
                },
                if matches!(capture.entries.get(key), Some(Entry::Listing(_))) {
                    "category"
                } else {
                    "value"
                },
            )),
            (Some(Entry::Listing(_)), None) => differences.push(format!(
                "{shown_category} is not served (captured as a category)"
            )),
            (Some(Entry::Value(captured)), None) => differences.push(format!(
                "{shown} is not served (captured: {})",
                preview(captured)
            )),
            (None, Some((_, ContentKind::Listing))) => {
                // A category the walk did not read (below one it skipped) shows up in the
                // listing comparison of its parent.
                if parent_captured(capture, key) {
                    differences.push(format!("{shown_category} is served but was not captured"));
                }
            }
            (None, Some(_)) => {
                // Not shown: it may be a value the serving imds generates for itself.
                if parent_captured(capture, key) {
                    differences.push(format!("{shown} is served but was not captured"));
                }
            }
            (None, None) => {}
        }
    }
    differences
}

/// True when the walk read the listing of `key`'s parent category.
fn parent_captured(capture: &Capture, key: &str) -> bool {
    let parent = key.rsplit_once('/').map_or("", |(parent, _)| parent);
    capture.listing(parent).is_some()
}

/// Values compare byte for byte; JSON documents compare as JSON (layout aside), those dated by
/// credentials without their `LastUpdated`.
fn same_value(key: &str, captured: &[u8], served: &[u8]) -> bool {
    if captured == served {
        return true;
    }
    let (Ok(mut captured), Ok(mut served)) = (
        serde_json::from_slice::<Value>(captured),
        serde_json::from_slice::<Value>(served),
    ) else {
        return false;
    };
    if !(captured.is_object() || captured.is_array()) {
        return false;
    }
    if dated_by_credentials(key) {
        for document in [&mut captured, &mut served] {
            if let Some(object) = document.as_object_mut() {
                object.remove("LastUpdated");
            }
        }
    }
    captured == served
}

/// A value for a one-line message: text quoted and cut at 80 characters, bytes counted.
fn preview(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().count() > 80 => {
            let cut: String = text.chars().take(80).collect();
            format!("{cut:?}...")
        }
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("{} bytes, not text", bytes.len()),
    }
}

fn preview_json(value: &Value) -> String {
    match value {
        Value::String(text) => preview(text.as_bytes()),
        Value::Null => "nothing".to_owned(),
        other => preview(other.to_string().as_bytes()),
    }
}

/// The fields two JSON objects differ in (field, served, captured; a missing field is
/// `null`), when both are objects.
fn json_fields_differing(captured: &[u8], served: &[u8]) -> Option<Vec<(String, Value, Value)>> {
    let captured: serde_json::Map<String, Value> = serde_json::from_slice(captured).ok()?;
    let served: serde_json::Map<String, Value> = serde_json::from_slice(served).ok()?;
    let fields: BTreeSet<&String> = captured.keys().chain(served.keys()).collect();
    Some(
        fields
            .into_iter()
            .filter_map(|field| {
                let captured_field = captured.get(field).cloned().unwrap_or(Value::Null);
                let served_field = served.get(field).cloned().unwrap_or(Value::Null);
                (captured_field != served_field)
                    .then(|| (field.clone(), served_field, captured_field))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_remove(json: &str, path: &str, expect: Option<(&str, &str)>) {
        let mut value: Value = serde_json::from_str(json).unwrap();
        let got = remove(&mut value, path);
        match (got, expect) {
            (Some((removed_path, _)), Some((expect_path, expect_rest))) => {
                assert_eq!(removed_path, expect_path);
                assert_eq!(value, serde_json::from_str::<Value>(expect_rest).unwrap());
            }
            (None, None) => {}
            (got, expect) => panic!("{path}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn removals() {
        check_remove(
            r#"{"placement": {"region": "nova", "availability-zone": "nova"}}"#,
            "placement.availability-zone",
            Some((
                "placement.availability-zone",
                r#"{"placement": {"region": "nova"}}"#,
            )),
        );
        check_remove(
            r#"{"network-interfaces": [{"mac": "A"}, {"mac": "B"}]}"#,
            "network-interfaces[1].mac",
            Some((
                "network-interfaces[1].mac",
                r#"{"network-interfaces": [{"mac": "A"}, {}]}"#,
            )),
        );
        // `code` is required: the whole event goes.
        check_remove(
            r#"{"events": {"maintenance": [{"code": "x", "not-before": "a", "not-after": "b"}]}}"#,
            "events.maintenance[0].code",
            Some((
                "events.maintenance[0]",
                r#"{"events": {"maintenance": []}}"#,
            )),
        );
        check_remove(r#"{"instance-id": "x"}"#, "ami-id", None);
        check_remove(r#"{"instance-id": "x"}"#, "instance-id[", None);
    }

    #[test]
    fn values_compare_as_json_and_credential_times_are_ignored() {
        assert!(same_value("meta-data/x", b"a", b"a"));
        assert!(!same_value("meta-data/x", b"a", b"b"));
        assert!(same_value(
            "meta-data/x",
            b"{\"a\": 1}",
            b"{\n  \"a\" : 1\n}"
        ));
        assert!(!same_value("meta-data/x", b"1", b"1.0"));
        assert!(same_value(
            "meta-data/iam/info",
            b"{\"Code\": \"Success\", \"LastUpdated\": \"2026-01-01T00:00:00Z\"}",
            b"{\"Code\": \"Success\", \"LastUpdated\": \"2026-02-02T00:00:00Z\"}"
        ));
        assert!(!same_value(
            "meta-data/events/maintenance/scheduled",
            b"[{\"LastUpdated\": \"a\"}]",
            b"[{\"LastUpdated\": \"b\"}]"
        ));
    }

    fn captured(entries: &[(&str, Entry)]) -> Capture {
        Capture {
            entries: entries
                .iter()
                .map(|(key, entry)| ((*key).to_owned(), entry.clone()))
                .collect(),
            ..Capture::default()
        }
    }

    fn served(values: &[(&str, &str)]) -> Flat {
        let mut tree = imds_core::metadata_tree::Tree::default();
        for (key, value) in values {
            tree.text(key, value.to_string()).unwrap();
        }
        // The server lists the version's categories without slashes.
        tree.listing("", "meta-data").unwrap();
        tree.flatten()
    }

    #[track_caller]
    fn check_compare(capture: &[(&str, Entry)], serve: &[(&str, &str)], expect: &[&str]) {
        assert_eq!(compare(&captured(capture), &served(serve)), expect);
    }

    fn listing(text: &str) -> Entry {
        Entry::Listing(text.to_owned())
    }

    fn value(text: &str) -> Entry {
        Entry::Value(Bytes::from(text.to_owned()))
    }

    #[test]
    fn differences() {
        let root = ("", listing("meta-data"));
        check_compare(
            &[
                root.clone(),
                ("meta-data", listing("a")),
                ("meta-data/a", value("1")),
            ],
            &[("meta-data/a", "1")],
            &[],
        );
        check_compare(
            &[
                root.clone(),
                ("meta-data", listing("a")),
                ("meta-data/a", value("1")),
            ],
            &[("meta-data/a", "2")],
            &["meta-data/a is served as \"2\" (captured: \"1\")"],
        );
        check_compare(
            &[
                root.clone(),
                ("meta-data", listing("a\nb/")),
                ("meta-data/a", value("1")),
                ("meta-data/b", listing("c")),
                ("meta-data/b/c", value("3")),
            ],
            &[("meta-data/a", "1"), ("meta-data/d", "4")],
            &[
                "meta-data/ is listed without \"b/\" and with \"d\" (compared with the capture)",
                "meta-data/b/ is not served (captured as a category)",
                "meta-data/b/c is not served (captured: \"3\")",
                "meta-data/d is served but was not captured",
            ],
        );
        check_compare(
            &[
                root.clone(),
                ("meta-data", listing("doc")),
                ("meta-data/doc", value("{\"a\": 1, \"b\": 2}")),
            ],
            &[("meta-data/doc", "{\n  \"a\" : 1,\n  \"b\" : 3\n}")],
            &["meta-data/doc field b is served as \"3\" (captured: \"2\")"],
        );
        // Credentials are never compared, nor is what lies below a category the walk skipped.
        check_compare(
            &[
                root,
                ("meta-data", listing("iam/")),
                ("meta-data/iam", listing("security-credentials/")),
                ("meta-data/iam/security-credentials", listing("role")),
            ],
            &[("meta-data/iam/security-credentials/role", "{}")],
            &[],
        );
    }

    #[test]
    fn credentials_and_signatures_are_made_anew() {
        for key in [
            "meta-data/iam/security-credentials/role",
            "meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
            "dynamic/instance-identity/signature",
            "dynamic/instance-identity/pkcs7",
            "dynamic/instance-identity/rsa2048",
        ] {
            assert!(made_anew(key), "{key}");
        }
        for key in [
            "meta-data/iam/security-credentials",
            "meta-data/iam/info",
            "dynamic/instance-identity/document",
        ] {
            assert!(!made_anew(key), "{key}");
        }
    }
}
