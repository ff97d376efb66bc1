//! `merge_patch`, RFC 7396 JSON merge patch, on any documents.
//!
//! - Applying a patch twice is applying it once.
//! - Patching a document with itself leaves it as it is, when it has no `null` member (a `null`
//!   member of a patch removes the key, RFC 7396 section 1).
//! - A patch that is not an object replaces the document.
//! - An object patch: each `null` member removes its key, each other member merges into the
//!   key's value (or into nothing), and keys the patch does not name keep their values.
//! - A document without `null` members stays without them, outside arrays (which a patch
//!   replaces whole).

use imds_core::patch::merge_patch;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Any JSON document over a few keys, so that documents and patches share keys.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]", inner, 0..5)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// `document` with its `null` object members removed, through objects only.
fn without_null_members(document: Value) -> Value {
    match document {
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| (key, without_null_members(value)))
                .collect(),
        ),
        other => other,
    }
}

fn has_null_member(document: &Value) -> bool {
    match document {
        Value::Object(members) => members
            .values()
            .any(|value| value.is_null() || has_null_member(value)),
        _ => false,
    }
}

fn patched(target: &Value, patch: &Value) -> Value {
    let mut result = target.clone();
    merge_patch(&mut result, patch);
    result
}

proptest! {
    #[test]
    fn applying_twice_is_applying_once(target in json(), patch in json()) {
        let once = patched(&target, &patch);
        prop_assert_eq!(patched(&once, &patch), once);
    }

    #[test]
    fn a_document_patched_with_itself_is_unchanged(document in json().prop_map(without_null_members)) {
        prop_assert_eq!(patched(&document, &document), document);
    }

    #[test]
    fn patches_follow_rfc_7396(target in json(), patch in json()) {
        let result = patched(&target, &patch);
        let Value::Object(patch_members) = &patch else {
            prop_assert_eq!(result, patch);
            return Ok(());
        };
        let Value::Object(result_members) = &result else {
            prop_assert!(false, "an object patch gave {}", result);
            unreachable!();
        };
        let empty = Map::new();
        let target_members = target.as_object().unwrap_or(&empty);
        for (key, value) in patch_members {
            if value.is_null() {
                prop_assert!(!result_members.contains_key(key), "{} kept", key);
            } else {
                let before = target_members.get(key).cloned().unwrap_or(Value::Null);
                prop_assert_eq!(&result_members[key], &patched(&before, value), "{}", key);
            }
        }
        for (key, value) in target_members {
            if !patch_members.contains_key(key) {
                prop_assert_eq!(&result_members[key], value, "{}", key);
            }
        }
        prop_assert!(result_members.keys().all(|key| patch_members.contains_key(key) || target_members.contains_key(key)));
    }

    #[test]
    fn patches_never_add_null_members(target in json().prop_map(without_null_members), patch in json()) {
        prop_assert!(!has_null_member(&patched(&target, &patch)));
    }
}
