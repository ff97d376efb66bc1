//! A walk in the shape of cloud-init's `instance-data.json`, for tools that read that file
//! (`cloud-init query`, Jinja templates in user data, inventory scripts).
//!
//! The shape is cloud-init 22.4's (Debian 12's package), for its EC2 datasource on AWS:
//! - `ds`: what `DataSourceEc2.crawl_metadata` read, user-data left out:
//!   `meta-data` and `dynamic` (only `instance-identity`) materialised as
//!   `cloudinit/sources/helpers/ec2.py` does it (`MetadataMaterializer`: categories become
//!   objects, `N=NAME` public keys become `NAME: key`, `security-credentials` is skipped; values
//!   go through `MetadataLeafDecoder`: `{...}` parsed as JSON, text with line breaks split into
//!   lines, bytes that are not UTF-8 kept as bytes), and `_metadata_api_version`;
//! - `v1`: the standard keys of `DataSource._get_standardized_metadata`, each under its
//!   hyphenated and its underscored name, worked out as `DataSourceEc2` does on AWS (zone,
//!   region and instance id from the identity document first; the short host name from
//!   `local-hostname`; `cloud_id` from `canonical_cloud_id`);
//! - `base64_encoded_keys`: the paths of byte values, written in base64 (`ci-b64:` stripped, as
//!   `process_instance_metadata` does);
//! - `sensitive_keys`: empty, for nothing sensitive is written.
//!
//! Left out are the keys that describe the machine cloud-init runs on, not its metadata:
//! `sys_info`, `merged_cfg`, and `v1`'s `distro`, `distro_release`, `distro_version`,
//! `kernel_release`, `machine`, `python_version`, `system_platform` and `variant`; and `ds._doc`,
//! a note cloud-init adds to the file. The file is written as cloud-init's `json_dumps` writes
//! it: keys sorted, one-space indent, non-ASCII escaped.

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::capture::walk::Capture;

/// The prefix cloud-init's JSON writer gives bytes (`util.json_serialize_default`).
const BASE64_PREFIX: &str = "ci-b64:";

/// The `instance-data.json` of a walk.
pub fn instance_data(capture: &Capture) -> Value {
    let meta_data = materialize(capture, "meta-data");
    let identity = materialize(capture, "dynamic/instance-identity");
    let mut ds = Map::new();
    ds.insert(
        "_metadata_api_version".to_owned(),
        Value::from(capture.api_version.clone()),
    );
    ds.insert(
        "dynamic".to_owned(),
        Value::Object(Map::from_iter([(
            "instance-identity".to_owned(),
            Value::Object(identity.clone()),
        )])),
    );
    ds.insert("meta-data".to_owned(), Value::Object(meta_data.clone()));
    let v1 = standard_keys(capture, &meta_data, &identity);

    let mut data = Map::new();
    data.insert("ds".to_owned(), Value::Object(ds));
    data.insert("v1".to_owned(), Value::Object(v1));
    let mut base64_encoded_keys = Vec::new();
    let data = strip_base64_prefix(Value::Object(data), "", &mut base64_encoded_keys);
    let Value::Object(mut data) = data else {
        unreachable!("an object stays an object")
    };
    base64_encoded_keys.sort();
    data.insert(
        "base64_encoded_keys".to_owned(),
        Value::from(base64_encoded_keys),
    );
    data.insert("sensitive_keys".to_owned(), Value::Array(Vec::new()));
    Value::Object(data)
}

/// Writes `value` as cloud-init's `util.json_dumps` does (`indent=1, sort_keys=True`, ASCII
/// only), with a final line feed as `write_json` adds.
pub fn to_cloud_init_json(value: &Value) -> String {
    let mut bytes = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut bytes, AsciiFormatter::default());
    // serde_json's `Map` keeps keys sorted (no `preserve_order`), as `sort_keys=True` does.
    value
        .serialize(&mut serializer)
        .expect("a JSON value serialises");
    let mut text = String::from_utf8(bytes).expect("the formatter writes ASCII");
    text.push('\n');
    text
}

/// `json.dumps`'s layout with `indent=1`: one space per level, `", "`-free separators
/// (`","` at line ends, `": "` after keys), every character past ASCII as `\uXXXX`.
struct AsciiFormatter {
    pretty: serde_json::ser::PrettyFormatter<'static>,
}

impl Default for AsciiFormatter {
    fn default() -> AsciiFormatter {
        AsciiFormatter {
            pretty: serde_json::ser::PrettyFormatter::with_indent(b" "),
        }
    }
}

impl serde_json::ser::Formatter for AsciiFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.pretty.begin_array(writer)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.pretty.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        self.pretty.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.pretty.begin_object(writer)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.pretty.end_object(writer)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pretty.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        self.pretty.begin_object_value(writer)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        self.pretty.end_object_value(writer)
    }
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for character in fragment.chars() {
            if character.is_ascii() {
                writer.write_all(&[character as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Materialises the category at `key` as `MetadataMaterializer._materialize` does.
fn materialize(capture: &Capture, key: &str) -> Map<String, Value> {
    let mut joined = Map::new();
    let Some(listing) = capture.listing(key) else {
        return joined;
    };
    let mut children: Vec<String> = Vec::new();
    // A dict in cloud-init: a later line with the same name wins, in the first one's place.
    let mut leaves: Vec<(String, String)> = Vec::new();
    for line in python_splitlines(listing) {
        let field = line.trim();
        let field_name = field.trim_end_matches('/');
        if field.is_empty() || field_name.is_empty() || field_name == "security-credentials" {
            continue;
        }
        if field.ends_with('/') {
            if !children.iter().any(|child| child == field_name) {
                children.push(field_name.to_owned());
            }
            continue;
        }
        let (name, resource) = match field
            .split_once('=')
            .and_then(|(ident, rest)| Some((python_int(ident)?, rest)))
        {
            Some((index, rest)) => (rest.to_owned(), format!("{index}/openssh-key")),
            None => (field_name.to_owned(), field_name.to_owned()),
        };
        match leaves.iter_mut().find(|(leaf, _)| *leaf == name) {
            Some(entry) => entry.1 = resource,
            None => leaves.push((name, resource)),
        }
    }
    for child in children {
        let child_map = materialize(capture, &format!("{key}/{child}"));
        joined.insert(child, Value::Object(child_map));
    }
    for (name, resource) in leaves {
        if joined.contains_key(&name) {
            continue;
        }
        if let Some(bytes) = capture.value(&format!("{key}/{resource}")) {
            joined.insert(name, decode_leaf(bytes));
        }
    }
    joined
}

/// `str(int(text))`, when `int(text)` succeeds: optional blanks and sign, then ASCII digits
/// (single underscores between digits allowed, as in Python's literals).
fn python_int(text: &str) -> Option<String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits
            .chars()
            .all(|character| character.is_ascii_digit() || character == '_');
    if !well_formed {
        return None;
    }
    let digits = digits.replace('_', "");
    let digits = digits.trim_start_matches('0');
    Some(match (digits.is_empty(), negative) {
        (true, _) => "0".to_owned(),
        (false, true) => format!("-{digits}"),
        (false, false) => digits.to_owned(),
    })
}

/// `MetadataLeafDecoder`: empty is `""`; bytes that are not UTF-8 stay bytes (here: the
/// `ci-b64:` text cloud-init's writer makes of them); `{...}` (after trimming) is JSON if it
/// parses; text with a line feed is its lines; anything else the text.
pub fn decode_leaf(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::from("");
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Value::from(format!("{BASE64_PREFIX}{}", STANDARD.encode(bytes)));
    };
    let trimmed = text.trim();
    if trimmed.starts_with('{') && trimmed.ends_with('}') {
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            return value;
        }
    }
    if text.contains('\n') {
        return Value::from(python_splitlines(text));
    }
    Value::from(text)
}

/// Python's `str.splitlines()`: splits at every line boundary Python knows, drops a final
/// empty piece.
fn python_splitlines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\r' => {
                if characters.peek() == Some(&'\n') {
                    characters.next();
                }
                lines.push(std::mem::take(&mut current));
            }
            '\n' | '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => lines.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// `process_instance_metadata`: every string value of an object that starts with `ci-b64:`
/// loses the prefix and its path joins `keys` (list items are left as they are).
fn strip_base64_prefix(value: Value, path: &str, keys: &mut Vec<String>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, item)| {
                    let item_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}/{key}")
                    };
                    let item = match item {
                        Value::String(text) if text.starts_with(BASE64_PREFIX) => {
                            keys.push(item_path);
                            Value::String(text.replacen(BASE64_PREFIX, "", 1))
                        }
                        other => strip_base64_prefix(other, &item_path, keys),
                    };
                    (key, item)
                })
                .collect(),
        ),
        other => other,
    }
}

/// `v1`: the standard keys, as `DataSourceEc2` on AWS works them out.
fn standard_keys(
    capture: &Capture,
    meta_data: &Map<String, Value>,
    identity: &Map<String, Value>,
) -> Map<String, Value> {
    let document = identity.get("document").and_then(Value::as_object);
    let from_document = |field: &str| document.and_then(|document| document.get(field)).cloned();
    let availability_zone = from_document("availabilityZone").or_else(|| {
        meta_data
            .get("placement")
            .and_then(|placement| placement.get("availability-zone"))
            .cloned()
    });
    let region = from_document("region")
        .filter(|region| !region.is_null() && region.as_str() != Some(""))
        .or_else(|| {
            // The zone less its last character, when the document names no region.
            let zone = availability_zone.as_ref()?.as_str()?;
            let mut characters = zone.chars();
            characters.next_back();
            Some(Value::from(characters.as_str()))
        });
    let instance_id = from_document("instanceId").or_else(|| meta_data.get("instance-id").cloned());
    let local_hostname = meta_data
        .get("local-hostname")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(short_hostname);
    let cloud_id = match region.as_ref().and_then(Value::as_str) {
        Some(region) if region.starts_with("cn-") => "aws-china",
        Some(region) if region.starts_with("us-gov-") => "aws-gov",
        _ => "aws",
    };

    let mut v1 = Map::new();
    v1.insert("_beta_keys".to_owned(), Value::from(vec!["subplatform"]));
    let mut both = |name: &str, value: Value| {
        v1.insert(name.to_owned(), value.clone());
        v1.insert(name.replace('_', "-"), value);
    };
    both(
        "availability_zone",
        availability_zone.unwrap_or(Value::Null),
    );
    both("cloud_name", Value::from("aws"));
    both("instance_id", instance_id.unwrap_or(Value::Null));
    if let Some(name) = local_hostname {
        both("local_hostname", Value::from(name));
    }
    v1.insert("cloud_id".to_owned(), Value::from(cloud_id));
    v1.insert("platform".to_owned(), Value::from("ec2"));
    v1.insert(
        "public_ssh_keys".to_owned(),
        Value::from(public_ssh_keys(meta_data.get("public-keys"))),
    );
    v1.insert("region".to_owned(), region.unwrap_or(Value::Null));
    v1.insert(
        "subplatform".to_owned(),
        Value::from(format!("metadata ({})", capture.endpoint)),
    );
    v1
}

/// `DataSource.get_hostname()`: the first label of `local-hostname`, or `ip-A-B-C-D` when it
/// is an IPv4 address.
fn short_hostname(name: &str) -> String {
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return format!("ip-{}", name.replace('.', "-"));
    }
    name.split('.').next().unwrap_or(name).to_owned()
}

/// `normalize_pubkey_data`: the keys of every entry, empty ones left out.
fn public_ssh_keys(public_keys: Option<&Value>) -> Vec<Value> {
    match public_keys {
        None => Vec::new(),
        Some(Value::String(text)) => python_splitlines(text)
            .into_iter()
            .map(Value::from)
            .collect(),
        Some(Value::Array(keys)) => keys.clone(),
        Some(Value::Object(entries)) => entries
            .values()
            .flat_map(|keys| match keys {
                Value::String(key) => vec![Value::from(key.clone())],
                Value::Array(keys) => keys.clone(),
                _ => Vec::new(),
            })
            .filter(|key| match key {
                Value::String(text) => !text.is_empty(),
                Value::Null | Value::Bool(false) => false,
                Value::Array(items) => !items.is_empty(),
                Value::Object(items) => !items.is_empty(),
                _ => true,
            })
            .collect(),
        Some(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;

    use super::*;
    use crate::capture::walk::Entry;

    #[track_caller]
    fn check_leaf(bytes: &[u8], expect: Value) {
        assert_eq!(decode_leaf(bytes), expect, "{bytes:?}");
    }

    #[test]
    fn leaves_decode_as_cloud_init_decodes_them() {
        check_leaf(b"", Value::from(""));
        check_leaf(b"i-0123", Value::from("i-0123"));
        check_leaf(b"a\nb", serde_json::json!(["a", "b"]));
        check_leaf(b"a\r\nb\n", serde_json::json!(["a", "b"]));
        check_leaf(b"[]", Value::from("[]"));
        check_leaf(
            b" {\"Code\": \"Success\"}\n",
            serde_json::json!({"Code": "Success"}),
        );
        check_leaf(b"{not json}", Value::from("{not json}"));
        check_leaf(b"{a\nb}", serde_json::json!(["{a", "b}"]));
        check_leaf(&[0xff, 0x00], Value::from("ci-b64:/wA="));
    }

    #[test]
    fn splitlines() {
        for (text, expect) in [
            ("", vec![]),
            ("a", vec!["a"]),
            ("a\n", vec!["a"]),
            ("a\n\nb", vec!["a", "", "b"]),
            ("a\rb\x0bc\u{2028}d", vec!["a", "b", "c", "d"]),
        ] {
            assert_eq!(python_splitlines(text), expect, "{text:?}");
        }
    }

    #[test]
    fn python_ints() {
        for (good, expect) in [
            ("0", "0"),
            ("12", "12"),
            (" 3 ", "3"),
            ("+4", "4"),
            ("-5", "-5"),
            ("1_0", "10"),
            ("007", "7"),
            ("-0", "0"),
        ] {
            assert_eq!(python_int(good).as_deref(), Some(expect), "{good}");
        }
        for bad in ["", "a", "1a", "_1", "1_", "1__0", "+"] {
            assert_eq!(python_int(bad), None, "{bad}");
        }
    }

    fn capture(entries: &[(&str, Entry)]) -> Capture {
        Capture {
            endpoint: "http://169.254.169.254".to_owned(),
            api_version: "2021-03-23".to_owned(),
            entries: entries
                .iter()
                .map(|(key, entry)| ((*key).to_owned(), entry.clone()))
                .collect::<BTreeMap<_, _>>(),
            ..Capture::default()
        }
    }

    fn listing(text: &str) -> Entry {
        Entry::Listing(text.to_owned())
    }

    fn value(bytes: &[u8]) -> Entry {
        Entry::Value(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn materialised_as_cloud_init_does() {
        let capture = capture(&[
            (
                "meta-data",
                listing("iam/\ninstance-id\npublic-keys/\nlocal-hostname\nweird\nplacement/"),
            ),
            ("meta-data/iam", listing("info\nsecurity-credentials/")),
            ("meta-data/iam/info", value(b"{\"Code\" : \"Success\"}")),
            ("meta-data/iam/security-credentials", listing("role")),
            ("meta-data/instance-id", value(b"i-0123456789abcdef0")),
            (
                "meta-data/local-hostname",
                value(b"ip-10-0-1-23.eu-west-1.compute.internal"),
            ),
            ("meta-data/weird", value(&[0xc3, 0x28])),
            ("meta-data/placement", listing("availability-zone")),
            (
                "meta-data/placement/availability-zone",
                value(b"eu-west-1b"),
            ),
            ("meta-data/public-keys", listing("0=my-key")),
            ("meta-data/public-keys/0", listing("openssh-key")),
            (
                "meta-data/public-keys/0/openssh-key",
                value(b"ssh-ed25519 AAAA my-key"),
            ),
        ]);
        let data = instance_data(&capture);
        let meta_data = &data["ds"]["meta-data"];
        assert_eq!(
            meta_data["iam"],
            serde_json::json!({"info": {"Code": "Success"}})
        );
        assert_eq!(
            meta_data["public-keys"],
            serde_json::json!({"my-key": "ssh-ed25519 AAAA my-key"})
        );
        assert_eq!(meta_data["weird"], Value::from("wyg="));
        assert_eq!(
            data["base64_encoded_keys"],
            serde_json::json!(["ds/meta-data/weird"])
        );
        assert_eq!(
            data["ds"]["dynamic"],
            serde_json::json!({"instance-identity": {}})
        );
        assert_eq!(data["ds"]["_metadata_api_version"], "2021-03-23");
        let v1 = &data["v1"];
        assert_eq!(v1["availability_zone"], "eu-west-1b");
        assert_eq!(v1["availability-zone"], "eu-west-1b");
        assert_eq!(v1["region"], "eu-west-1");
        assert_eq!(v1["instance_id"], "i-0123456789abcdef0");
        assert_eq!(v1["local_hostname"], "ip-10-0-1-23");
        assert_eq!(v1["cloud_id"], "aws");
        assert_eq!(v1["platform"], "ec2");
        assert_eq!(
            v1["public_ssh_keys"],
            serde_json::json!(["ssh-ed25519 AAAA my-key"])
        );
        assert_eq!(v1["subplatform"], "metadata (http://169.254.169.254)");
    }

    #[test]
    fn written_as_json_dumps_writes() {
        let value = serde_json::json!({"b": [1, "é😀"], "a": {}});
        assert_eq!(
            to_cloud_init_json(&value),
            "{\n \"a\": {},\n \"b\": [\n  1,\n  \"\\u00e9\\ud83d\\ude00\"\n ]\n}\n"
        );
    }

    #[test]
    fn host_names_and_cloud_ids() {
        assert_eq!(short_hostname("ip-10-0-1-23.ec2.internal"), "ip-10-0-1-23");
        assert_eq!(short_hostname("10.0.1.23"), "ip-10-0-1-23");
        assert_eq!(short_hostname("plain"), "plain");
    }
}
