//! `path::parse`, the request path to tree key.
//!
//! - Extra slashes anywhere (leading, between segments, trailing) change nothing.
//! - Percent-encoding any character but `/` changes nothing.
//! - A normalised key is a fixed point: asking for it again (with `%` escaped, so it is not
//!   decoded a second time) gives the same key, under `latest` and under every dated version.
//! - A key never escapes its tree: it has no empty, `.` or `..` segment, and its segments are
//!   some of the request's own segments in their order (whether `.`/`..` are refused or
//!   resolved, nothing is invented and nothing climbs above the version).
//! - A request below a version stays below that version: `latest` gives `latest`, a dated
//!   version a dated version, and only a path of slashes lists the versions.

use imds_core::path::{parse, Target, API_VERSIONS};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;

/// One path segment as the tree has them: never empty, `.` or `..`, never holding `/` or `%`.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9-]{1,12}",
        1 => "[^/%]{1,6}",
    ]
    .prop_filter("not a dot segment", |segment| {
        segment != "." && segment != ".."
    })
}

fn version() -> impl Strategy<Value = &'static str> {
    prop::sample::select(API_VERSIONS)
}

fn slashes(min: usize) -> impl Strategy<Value = String> {
    (min..min + 3).prop_map(|count| "/".repeat(count))
}

/// What `parse` answered, owned, for comparisons.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Versions,
    Node { latest: bool, key: String },
    Unknown,
}

fn parsed(raw: &str) -> Parsed {
    match parse(raw) {
        Target::Versions => Parsed::Versions,
        Target::Node { latest, key } => Parsed::Node {
            latest,
            key: key.into_owned(),
        },
        Target::Unknown => Parsed::Unknown,
    }
}

/// Percent-encodes the characters of `raw` picked by `picks` (cycled), never `/`.
fn encode_some(raw: &str, picks: &[bool], upper: bool) -> String {
    let mut out = String::with_capacity(raw.len() * 3);
    for (index, character) in raw.chars().enumerate() {
        if character != '/' && picks[index % picks.len()] {
            let mut buffer = [0u8; 4];
            for byte in character.encode_utf8(&mut buffer).bytes() {
                if upper {
                    out.push_str(&format!("%{byte:02X}"));
                } else {
                    out.push_str(&format!("%{byte:02x}"));
                }
            }
        } else {
            out.push(character);
        }
    }
    out
}

/// The path that asks for `key` again below `version`: `%` escaped, so the key is read as is.
fn request_for(version: &str, key: &str) -> String {
    format!("/{version}/{}", key.replace('%', "%25"))
}

#[track_caller]
fn check_key_shape(key: &str) {
    assert!(!key.starts_with('/') && !key.ends_with('/'), "{key:?}");
    if !key.is_empty() {
        for segment in key.split('/') {
            assert!(
                !segment.is_empty() && segment != "." && segment != "..",
                "segment {segment:?} in {key:?}"
            );
        }
    }
}

/// True when `part` is `whole` with some items left out.
fn is_subsequence(part: &[&str], whole: &[String]) -> bool {
    let mut rest = whole.iter();
    part.iter()
        .all(|wanted| rest.by_ref().any(|item| item == wanted))
}

proptest! {
    #[test]
    fn extra_slashes_change_nothing(
        version in version(),
        segments in prop::collection::vec(segment(), 0..5),
        leading in slashes(1),
        separators in prop::collection::vec(slashes(1), 5),
        trailing in slashes(0),
    ) {
        let mut raw = format!("{leading}{version}");
        for (segment, separator) in segments.iter().zip(&separators) {
            raw.push_str(separator);
            raw.push_str(segment);
        }
        raw.push_str(&trailing);
        prop_assert_eq!(
            parsed(&raw),
            Parsed::Node { latest: version == "latest", key: segments.join("/") },
            "{:?}", raw
        );
    }

    #[test]
    fn percent_encoding_changes_nothing(
        version in version(),
        segments in prop::collection::vec(segment(), 0..5),
        picks in prop::collection::vec(any::<bool>(), 1..16),
        upper in any::<bool>(),
    ) {
        let raw = format!("/{version}/{}", segments.join("/"));
        let encoded = encode_some(&raw, &picks, upper);
        prop_assert_eq!(parsed(&encoded), parsed(&raw), "{:?} against {:?}", encoded, raw);
        prop_assert_eq!(
            parsed(&raw),
            Parsed::Node { latest: version == "latest", key: segments.join("/") }
        );
    }

    #[test]
    fn dot_segments_never_escape(
        version in version(),
        segments in prop::collection::vec(
            prop_oneof![
                2 => segment(),
                1 => prop::sample::select(vec![".", "..", "%2e", "%2E%2e", ".%2E", "%2e.", ""])
                    .prop_map(str::to_owned),
            ],
            0..7,
        ),
    ) {
        let raw = format!("/{version}/{}", segments.join("/"));
        let names: Vec<String> = segments
            .iter()
            .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
            .filter(|name| !name.is_empty() && name != "." && name != "..")
            .collect();
        match parsed(&raw) {
            Parsed::Unknown => {}
            Parsed::Versions => prop_assert!(false, "{:?} left its version", raw),
            Parsed::Node { latest, key } => {
                prop_assert_eq!(latest, version == "latest");
                check_key_shape(&key);
                let kept: Vec<&str> = key.split('/').filter(|name| !name.is_empty()).collect();
                prop_assert!(is_subsequence(&kept, &names), "{:?} gave {:?}", raw, key);
            }
        }
    }

    #[test]
    fn normalising_twice_is_normalising_once(
        raw in prop_oneof![
            "(?s).{0,40}",
            "[/.%a-z2eEfF]{0,40}",
            ("/latest/", "[/.%a-z2eEfF]{0,30}").prop_map(|(head, tail)| format!("{head}{tail}")),
        ],
    ) {
        match parsed(&raw) {
            Parsed::Unknown => {}
            Parsed::Versions => {
                // The root: only slashes and dot segments, which never climb above it.
                let decoded = percent_decode_str(&raw).decode_utf8_lossy().into_owned();
                prop_assert!(
                    decoded.split('/').all(|segment| matches!(segment, "" | "." | "..")),
                    "{:?}", raw
                );
            }
            Parsed::Node { latest, key } => {
                check_key_shape(&key);
                let decoded = percent_decode_str(&raw).decode_utf8_lossy().into_owned();
                let version = decoded.trim_start_matches('/').split('/').next().unwrap_or("");
                prop_assert_eq!(latest, version == "latest", "{:?}", raw);
                prop_assert_eq!(
                    parsed(&request_for("latest", &key)),
                    Parsed::Node { latest: true, key: key.clone() }
                );
                prop_assert_eq!(
                    parsed(&request_for("2021-03-23", &key)),
                    Parsed::Node { latest: false, key: key.clone() }
                );
            }
        }
    }
}
