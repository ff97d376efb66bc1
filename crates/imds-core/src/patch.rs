//! JSON merge patches ([RFC 7396]), as the control API applies them to instance descriptions.
//!
//! [RFC 7396]: https://www.rfc-editor.org/rfc/rfc7396

use serde_json::Value;

/// Applies `patch` to `target` as RFC 7396 says: objects merge key by key, `null` removes a key,
/// anything else replaces the value.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let target_map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(target: Value, patch: Value, expect: Value) {
        let mut target = target;
        merge_patch(&mut target, &patch);
        assert_eq!(target, expect);
    }

    /// The examples of RFC 7396, appendix A, and a few more.
    #[test]
    fn merge_patch_follows_rfc_7396() {
        check(json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"}));
        check(
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        );
        check(json!({"a": "b"}), json!({"a": null}), json!({}));
        check(
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        );
        check(
            json!({"a": [1]}),
            json!({"a": [2, 3]}),
            json!({"a": [2, 3]}),
        );
        check(json!(["a"]), json!({"a": "b"}), json!({"a": "b"}));
        check(json!({"a": "b"}), json!(["c"]), json!(["c"]));
        check(
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        );
    }
}
