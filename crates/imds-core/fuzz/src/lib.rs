//! The checks behind imds-core's fuzz targets: one public function per target, taking the raw
//! input. Each asserts properties of what it parses (a failed assertion is a crash libFuzzer
//! reports), not only that nothing panics.
//!
//! Inputs are text or a short binary header followed by text, so that seeds can be written by
//! hand (`seeds/<target>/`).
//!
//! # Layout
//! - `path`: the input is a request path.
//! - `token`: a 14-byte header (clock, elapsed time, a byte change) and four lines: the TTL
//!   header, the instance id, a presented token, another instance id.
//! - `tree`: lines of operations on a metadata tree, then lookups by request path.
//! - `instance_json`, `instance_toml`: an instance description as the control API and the store
//!   (JSON) or the config file (TOML) read it.
//! - `merge_patch`: two JSON documents, a target and an RFC 7396 merge patch.
//! - `instance_patch`: two JSON documents, an instance description and the merge patch of a
//!   `PATCH /v1/instances/{id}`.

use std::{borrow::Cow, collections::BTreeMap};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use imds_core::{
    metadata_tree::{ContentKind, Flat, Tree},
    patch::merge_patch,
    path::{self, Target, API_VERSIONS},
    spec::{Generated, InstanceSpec, StoredInstance},
    token::{TokenAuthority, TokenError, TokenTtl, KEY_LENGTH, TOKEN_LENGTH},
};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Asserts what every tree key satisfies: no leading or trailing slash, and no empty, `.` or
/// `..` segment, so it cannot name anything outside its version's tree.
fn check_key_shape(key: &str) {
    assert!(!key.starts_with('/') && !key.ends_with('/'), "key {key:?}");
    if !key.is_empty() {
        for segment in key.split('/') {
            assert!(
                !segment.is_empty() && segment != "." && segment != "..",
                "segment {segment:?} of key {key:?}"
            );
        }
    }
}

/// The path that asks for `key` again: `%` escaped, so the key is not decoded a second time.
fn request_for(version: &str, key: &str) -> String {
    format!("/{version}/{}", key.replace('%', "%25"))
}

/// Request paths. A node's key has the shape of a tree key; asking for it again (under `latest`
/// and under a dated version) gives the same key; `latest` is reported only for `latest`;
/// the version list only for a path of slashes and dot segments; `is_token` only for `latest/api/token`.
pub fn path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let target = path::parse(raw);
    let decoded = percent_decode_str(raw).decode_utf8_lossy();
    match &target {
        Target::Unknown => {}
        Target::Versions => {
            // The root: slashes and dot segments only, which never climb above it.
            assert!(
                decoded
                    .split('/')
                    .all(|segment| matches!(segment, "" | "." | "..")),
                "{raw:?}"
            );
        }
        Target::Node { latest, key } => {
            check_key_shape(key);
            // The version is the first segment that is not empty or a dot segment: dot
            // segments before it stay at the root.
            let version = decoded
                .split('/')
                .find(|segment| !matches!(*segment, "" | "." | ".."))
                .unwrap_or("");
            assert_eq!(*latest, version == "latest", "{raw:?}");
            assert!(*latest || API_VERSIONS.contains(&version), "{raw:?}");
            for (version, latest) in [("latest", true), ("2021-03-23", false)] {
                match path::parse(&request_for(version, key)) {
                    Target::Node {
                        latest: again_latest,
                        key: again,
                    } => {
                        assert_eq!(again_latest, latest);
                        assert_eq!(again, *key, "{raw:?} normalised twice");
                    }
                    other => panic!("{raw:?} gave {key:?}, which then gave {other:?}"),
                }
            }
            assert_eq!(target.is_token(), *latest && key == "api/token");
        }
    }
}

/// The key of the authority the `token` target issues with.
const KEY: [u8; KEY_LENGTH] = *b"imds fuzz token key 0123456789ab";
/// The clock is kept below this so that expiry does not saturate.
const LATEST_NOW_MS: u64 = u64::MAX / 2;

/// What the TTL header rule says of `text`: 1 to 10 ASCII digits worth 1 to 21600.
fn ttl_model(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    (u64::from(TokenTtl::MIN)..=u64::from(TokenTtl::MAX))
        .contains(&value)
        .then_some(value as u32)
}

/// Session tokens. Input: `now_ms` (u64 LE), `elapsed_ms` (u32 LE), a position and an XOR mask
/// (one byte each), then lines: TTL header, instance id, presented token, other instance id.
///
/// The TTL header is accepted exactly by the rule; a token issued for the TTL validates before
/// expiry with the seconds left and is expired after; changing a byte, cutting it short or
/// presenting it for the other instance or under another key makes it invalid; and a presented
/// token is accepted (valid or expired) only if it is exactly what the authority issues for
/// that instance and expiry.
pub fn token(data: &[u8]) {
    if data.len() < 14 {
        return;
    }
    let now_ms = u64::from_le_bytes(data[0..8].try_into().unwrap()) % LATEST_NOW_MS;
    let elapsed_ms = u64::from(u32::from_le_bytes(data[8..12].try_into().unwrap()));
    let (position, mask) = (usize::from(data[12]), data[13]);
    let mut lines = data[14..].splitn(4, |byte| *byte == b'\n');
    let ttl_header = lines.next().unwrap_or_default();
    let instance = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let presented = lines.next().unwrap_or_default();
    let other_instance = String::from_utf8_lossy(lines.next().unwrap_or_default());

    let authority = TokenAuthority::new(&KEY);
    let ttl = TokenTtl::parse(ttl_header);
    assert_eq!(
        ttl.as_ref().ok().map(|ttl| ttl.seconds()),
        ttl_model(ttl_header)
    );

    match authority.validate(presented, &instance, now_ms) {
        Err(TokenError::Invalid) => {}
        Err(TokenError::InvalidTtl) => panic!("validate answered InvalidTtl"),
        Ok(_) | Err(TokenError::Expired) => {
            let mut bytes = [0u8; 41];
            let decoded = URL_SAFE_NO_PAD.decode_slice(presented, &mut bytes);
            assert_eq!(
                decoded,
                Ok(bytes.len()),
                "accepted bytes that do not decode"
            );
            let expiry_ms = u64::from_be_bytes(bytes[1..9].try_into().unwrap());
            let one_second = TokenTtl::parse(b"1").unwrap();
            assert!(expiry_ms >= 1000);
            assert_eq!(
                authority
                    .issue(&instance, one_second, expiry_ms - 1000)
                    .as_bytes(),
                presented,
                "accepted a token the authority does not issue"
            );
        }
    }

    let Ok(ttl) = ttl else {
        return;
    };
    let token = authority.issue(&instance, ttl, now_ms).into_bytes();
    assert_eq!(token.len(), TOKEN_LENGTH);
    let lifetime_ms = u64::from(ttl.seconds()) * 1000;
    let elapsed_ms = elapsed_ms % lifetime_ms;
    let left = authority.validate(&token, &instance, now_ms + elapsed_ms);
    assert_eq!(left, Ok((lifetime_ms - elapsed_ms).div_ceil(1000) as u32));
    assert_eq!(
        authority.validate(&token, &instance, now_ms + lifetime_ms + elapsed_ms),
        Err(TokenError::Expired)
    );

    let mut changed = token.clone();
    changed[position % TOKEN_LENGTH] ^= mask;
    if mask != 0 {
        assert_eq!(
            authority.validate(&changed, &instance, now_ms),
            Err(TokenError::Invalid)
        );
    }
    let cut = position % TOKEN_LENGTH;
    assert_eq!(
        authority.validate(&token[..cut], &instance, now_ms),
        Err(TokenError::Invalid)
    );
    let extended = [&token[..], &[mask]].concat();
    assert_eq!(
        authority.validate(&extended, &instance, now_ms),
        Err(TokenError::Invalid)
    );
    if other_instance != instance {
        assert_eq!(
            authority.validate(&token, &other_instance, now_ms),
            Err(TokenError::Invalid)
        );
    }
    let mut other_key = KEY;
    other_key[position % KEY_LENGTH] ^= mask | 1;
    assert_eq!(
        TokenAuthority::new(&other_key).validate(&token, &instance, now_ms),
        Err(TokenError::Invalid)
    );
}

fn answers(flat: &Flat) -> Vec<(String, Vec<u8>, ContentKind)> {
    flat.iter()
        .map(|(key, answer)| (key.to_owned(), answer.body.to_vec(), answer.kind))
        .collect()
}

/// Asserts the listing rules of a flattened tree: keys sorted and found, each key listed by its
/// parent, each listing line a child (directories with `/`), no blank lines; directories in
/// `custom` serve their custom text instead.
pub fn check_listings(flat: &Flat, custom: &BTreeMap<String, String>) {
    let keys: Vec<&str> = flat.keys().collect();
    assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
    assert!(flat.contains_key(""), "no root");
    for (key, answer) in flat.iter() {
        assert_eq!(flat.get(key), Some(answer));
        if !key.is_empty() {
            let (parent_key, name) = key.rsplit_once('/').unwrap_or(("", key));
            let parent = flat.get(parent_key).expect("every key has a parent");
            assert_eq!(parent.kind, ContentKind::Listing);
            if !custom.contains_key(parent_key) {
                let line = if answer.kind == ContentKind::Listing {
                    Cow::Owned(format!("{name}/"))
                } else {
                    Cow::Borrowed(name)
                };
                let text = std::str::from_utf8(&parent.body).expect("listings are text");
                assert!(
                    text.split('\n').any(|listed| listed == line),
                    "{key:?} not listed in {text:?}"
                );
            }
        }
        if answer.kind != ContentKind::Listing {
            continue;
        }
        let text = std::str::from_utf8(&answer.body).expect("listings are text");
        if let Some(listing) = custom.get(key) {
            assert_eq!(text, listing);
            continue;
        }
        if text.is_empty() {
            assert_eq!(key, "", "an empty directory below the root");
            continue;
        }
        let mut previous: Option<&str> = None;
        for line in text.split('\n') {
            assert!(!line.is_empty(), "blank line in {key:?}: {text:?}");
            let name = line.strip_suffix('/').unwrap_or(line);
            assert!(
                previous < Some(name),
                "listing of {key:?} unsorted: {text:?}"
            );
            previous = Some(name);
            let child = if key.is_empty() {
                name.to_owned()
            } else {
                format!("{key}/{name}")
            };
            let child_answer = flat
                .get(&child)
                .unwrap_or_else(|| panic!("{child:?} listed but absent"));
            assert_eq!(
                line.ends_with('/'),
                child_answer.kind == ContentKind::Listing,
                "{line:?} in {key:?}"
            );
        }
    }
}

#[derive(Clone)]
enum Op<'a> {
    Text(&'a str, &'a str),
    Listing(&'a str, &'a str),
}

fn apply(tree: &mut Tree, op: &Op<'_>) -> bool {
    match op {
        Op::Text(path, value) => tree.text(path, value.to_string()).is_ok(),
        Op::Listing(path, listing) => tree.listing(path, listing.replace('\\', "\n")).is_ok(),
    }
}

/// The metadata tree. Input lines: `T path=value` puts a value, `L path=listing` replaces a
/// listing (`\` in it stands for a line feed), `G path` looks a request path up.
///
/// A refused operation changes nothing (the accepted ones alone build the same tree); every
/// value put is served at its key; the listing rules hold; a looked-up path is served exactly
/// when its key is in the tree, and the answer is the one at that key.
pub fn tree(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut tree = Tree::default();
    let mut accepted = Vec::new();
    let mut values = BTreeMap::new();
    let mut custom = BTreeMap::new();
    let mut lookups = Vec::new();
    for line in text.split('\n') {
        let op = match line.split_at_checked(2) {
            Some(("T ", rest)) => {
                let (path, value) = rest.split_once('=').unwrap_or((rest, ""));
                Op::Text(path, value)
            }
            Some(("L ", rest)) => {
                let (path, listing) = rest.split_once('=').unwrap_or((rest, ""));
                Op::Listing(path, listing)
            }
            Some(("G ", rest)) => {
                lookups.push(rest);
                continue;
            }
            _ => continue,
        };
        if apply(&mut tree, &op) {
            match op {
                Op::Text(path, value) => {
                    values.insert(path.to_owned(), value.to_owned());
                }
                Op::Listing(path, listing) => {
                    custom.insert(path.to_owned(), listing.replace('\\', "\n"));
                }
            }
            accepted.push(op);
        }
    }
    let flat = tree.flatten();
    let mut again = Tree::default();
    for op in &accepted {
        assert!(
            apply(&mut again, op),
            "an accepted operation was refused on replay"
        );
    }
    assert_eq!(
        answers(&again.flatten()),
        answers(&flat),
        "a refused operation left a trace"
    );
    for (path, value) in &values {
        let answer = flat.get(path).expect("a value put is served");
        assert_eq!(&answer.body[..], value.as_bytes());
        assert_eq!(answer.kind, ContentKind::Text);
    }
    check_listings(&flat, &custom);
    for raw in lookups {
        if let Target::Node { key, .. } = path::parse(raw) {
            let found = flat.get(&key);
            assert_eq!(found.is_some(), flat.keys().any(|other| other == key));
        }
    }
}

/// A config file's `[instance]` and `[[instances]]`, as `imds` reads them.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigShape {
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<InstanceSpec>,
    #[serde(default)]
    instances: Vec<InstanceSpec>,
}

/// Identifiers as a host draws them, fixed so that runs are repeatable.
fn generated() -> Generated {
    Generated {
        instance_id: "i-0123456789abcdef0".into(),
        account_id: "123456789012".into(),
        ami_id: "ami-0123456789abcdef0".into(),
        reservation_id: "r-0123456789abcdef0".into(),
        pending_time: "2026-11-24T12:00:00Z".into(),
        mac: "02:00:00:00:00:01".into(),
        interface_id: "eni-0123456789abcdef0".into(),
        subnet_id: "subnet-0123456789abcdef0".into(),
        vpc_id: "vpc-0123456789abcdef0".into(),
        security_group_id: "sg-0123456789abcdef0".into(),
        local_ipv4: "10.0.1.4".into(),
        public_ipv4: "203.0.113.4".into(),
        instance_profile_id: "AIPAABCDEFGHIJKLMNOPQ".into(),
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA imds-key".into(),
    }
}

/// Checks one description read from outside: it reads back as written in both formats, and
/// resolving it returns an instance or an error naming a key, the same every time.
fn check_spec(spec: &InstanceSpec) {
    let json = serde_json::to_string(spec).expect("a description can be written as JSON");
    assert_eq!(
        &serde_json::from_str::<InstanceSpec>(&json).expect("written JSON reads back"),
        spec,
        "{json}"
    );
    let config = ConfigShape {
        instance: Some(spec.clone()),
        instances: vec![spec.clone()],
    };
    let toml_text = toml::to_string(&config).expect("a description can be written as TOML");
    let read: ConfigShape = toml::from_str(&toml_text)
        .unwrap_or_else(|error| panic!("written TOML does not read back: {error}\n{toml_text}"));
    assert_eq!(read, config, "{toml_text}");
    let generated = generated();
    let first = spec.clone().resolve(&generated);
    if let Err(error) = &first {
        assert!(error.0.starts_with("instance"), "{error:?}");
    }
    assert_eq!(first, spec.clone().resolve(&generated));
}

/// Instance descriptions as the control API and the store read them (JSON): as an
/// `InstanceSpec` and as a `StoredInstance`.
pub fn instance_json(data: &[u8]) {
    if let Ok(spec) = serde_json::from_slice::<InstanceSpec>(data) {
        check_spec(&spec);
    }
    if let Ok(stored) = serde_json::from_slice::<StoredInstance>(data) {
        let json = serde_json::to_string(&stored).expect("a stored instance can be written");
        assert_eq!(
            serde_json::from_str::<StoredInstance>(&json).expect("written JSON reads back"),
            stored
        );
        let _ = stored.instance.clone().resolve(&stored.generated);
    }
}

/// Instance descriptions as the config file gives them (TOML, `[instance]` and `[[instances]]`).
pub fn instance_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = toml::from_str::<ConfigShape>(text) {
        for spec in config.instance.iter().chain(&config.instances) {
            check_spec(spec);
        }
    }
}

/// Reads two JSON documents from `data`, one after the other (whitespace between).
fn two_documents(data: &[u8]) -> Option<(Value, Value)> {
    let mut documents = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let first = documents.next()?.ok()?;
    let second = documents.next()?.ok()?;
    Some((first, second))
}

fn patched(target: &Value, patch: &Value) -> Value {
    let mut result = target.clone();
    merge_patch(&mut result, patch);
    result
}

/// JSON merge patch (RFC 7396). Input: two JSON documents, a target and a patch.
///
/// Applying the patch twice is applying it once; a patch that is not an object replaces the
/// target; an object patch removes its `null` members' keys, merges the others and keeps the
/// keys it does not name; a document patched with itself (without its `null` members) is
/// unchanged.
pub fn merge_patch_json(data: &[u8]) {
    let Some((target, patch)) = two_documents(data) else {
        return;
    };
    let once = patched(&target, &patch);
    assert_eq!(patched(&once, &patch), once, "applying twice differs");
    match (&patch, &once) {
        (Value::Object(patch_members), Value::Object(result_members)) => {
            let empty = serde_json::Map::new();
            let target_members = target.as_object().unwrap_or(&empty);
            for (key, value) in patch_members {
                if value.is_null() {
                    assert!(!result_members.contains_key(key), "{key} kept");
                } else {
                    let before = target_members.get(key).cloned().unwrap_or(Value::Null);
                    assert_eq!(result_members[key], patched(&before, value), "{key}");
                }
            }
            for (key, value) in target_members {
                if !patch_members.contains_key(key) {
                    assert_eq!(&result_members[key], value, "{key}");
                }
            }
        }
        (Value::Object(_), other) => panic!("an object patch gave {other}"),
        (_, result) => assert_eq!(result, &patch),
    }
    let document = without_null_members(target);
    assert_eq!(
        patched(&document, &document),
        document,
        "self-patch changed it"
    );
}

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

/// A control-API change: input is two JSON documents, an instance description (the body that
/// registered it) and a merge patch (the body of `PATCH /v1/instances/{id}`), applied as the
/// registry applies it (to the stored description's JSON, then read back as a description).
///
/// The registered description reads back from the store as written; the patched description,
/// stored and read back, is the same; patching it again changes nothing; resolving either
/// gives an instance or an error naming a key, never a panic.
pub fn instance_patch(data: &[u8]) {
    let Some((body, patch)) = two_documents(data) else {
        return;
    };
    let Ok(spec) = serde_json::from_value::<InstanceSpec>(body) else {
        return;
    };
    let stored = StoredInstance {
        generated: generated(),
        instance: spec,
    };
    let record = serde_json::to_string(&stored).expect("a stored instance can be written");
    let read: StoredInstance = serde_json::from_str(&record).expect("a stored record reads back");
    assert_eq!(read, stored);
    let _ = read.instance.clone().resolve(&read.generated);

    let apply = |spec: &InstanceSpec| -> Option<InstanceSpec> {
        let mut document = serde_json::to_value(spec).expect("specs serialise to JSON");
        merge_patch(&mut document, &patch);
        serde_json::from_value(document).ok()
    };
    let Some(changed) = apply(&read.instance) else {
        return;
    };
    let changed_record = serde_json::to_string(&StoredInstance {
        generated: read.generated.clone(),
        instance: changed.clone(),
    })
    .expect("a stored instance can be written");
    let changed_read: StoredInstance =
        serde_json::from_str(&changed_record).expect("a stored record reads back");
    assert_eq!(changed_read.instance, changed);
    assert_eq!(
        apply(&changed).as_ref(),
        Some(&changed),
        "patching twice differs"
    );
    if let Err(error) = changed.resolve(&read.generated) {
        assert!(error.0.starts_with("instance"), "{error:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("seeds")
            .join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(path).unwrap())
            })
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds for {target}");
        seeds
    }

    #[test]
    fn every_seed_passes_its_checks() {
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 7] = [
            ("path", path),
            ("token", token),
            ("tree", tree),
            ("instance_json", instance_json),
            ("instance_toml", instance_toml),
            ("merge_patch", merge_patch_json),
            ("instance_patch", instance_patch),
        ];
        for (target, check) in targets {
            for (_, data) in seeds(target) {
                check(&data);
            }
        }
    }

    #[test]
    fn token_seeds_present_real_tokens() {
        // The seeds carry tokens issued with `KEY`, so that the fuzzer starts from accepted
        // tokens and the "only issued bytes are accepted" check is reached.
        let authority = TokenAuthority::new(&KEY);
        for (name, expect) in [
            ("valid", Ok(21_599)),
            ("expired", Err(TokenError::Expired)),
            ("other-instance", Err(TokenError::Invalid)),
        ] {
            let data = &seeds("token")
                .into_iter()
                .find(|(seed, _)| seed == name)
                .unwrap()
                .1;
            let now_ms = u64::from_le_bytes(data[0..8].try_into().unwrap());
            let mut lines = data[14..].split(|byte| *byte == b'\n');
            let (_, instance, presented) =
                (lines.next(), lines.next().unwrap(), lines.next().unwrap());
            let instance = std::str::from_utf8(instance).unwrap();
            assert_eq!(
                authority.validate(presented, instance, now_ms),
                expect,
                "{name}"
            );
        }
    }

    #[test]
    fn valid_json_seeds_resolve() {
        for name in ["empty", "minimal", "full"] {
            let data = &seeds("instance_json")
                .into_iter()
                .find(|(seed, _)| seed == name)
                .unwrap()
                .1;
            let spec: InstanceSpec = serde_json::from_slice(data).unwrap();
            spec.resolve(&generated())
                .unwrap_or_else(|error| panic!("{name}: {error}"));
        }
    }

    #[test]
    fn instance_patch_seeds_reach_the_patched_description() {
        // Seeds that register a description and change it, so that the fuzzer starts past
        // both parses and `resolve`; the others are refused on the way, as the registry
        // refuses them: (seed, the patched description reads, it resolves).
        for (name, patched, resolves) in [
            ("options", true, true),
            ("tags-and-role-removed", true, true),
            ("events-posted", true, true),
            ("maintenance-replaced", true, true),
            ("user-data-switched", true, true),
            ("interfaces-replaced", true, true),
            ("bad-hop-limit", true, false),
            ("unknown-key", false, false),
        ] {
            let data = &seeds("instance_patch")
                .into_iter()
                .find(|(seed, _)| seed == name)
                .unwrap()
                .1;
            let (body, patch) = two_documents(data).expect("two documents");
            let spec: InstanceSpec = serde_json::from_value(body).expect(name);
            let mut document = serde_json::to_value(&spec).unwrap();
            merge_patch(&mut document, &patch);
            let read = serde_json::from_value::<InstanceSpec>(document);
            assert_eq!(read.is_ok(), patched, "{name}: {read:?}");
            if let Ok(changed) = read {
                let resolved = changed.resolve(&generated());
                assert_eq!(resolved.is_ok(), resolves, "{name}: {resolved:?}");
            }
        }
    }
}
