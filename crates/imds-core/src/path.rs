//! Request path normalisation: which API version a request names and which node of the metadata
//! tree it asks for.
//!
//! AWS serves the same tree under `latest` and under every dated API version, answers a
//! directory with or without its trailing slash, and a leaf with or without one too (botocore asks
//! for `placement/availability-zone/`). Clients also send `//latest/...` (the JavaScript SDK's
//! `MetadataService`) and percent-encoded segments (cloud-init quotes tag keys). All of these
//! reduce here to one tree key: the path below the version, without leading or trailing slashes.
//!
//! Dot segments are resolved as RFC 3986 §5.2.4 removes them, the way a client such as Perl's
//! VM::EC2 relies on (`GET /latest/meta-data/../user-data` is its user-data), within the tree of
//! the version: a `..` never climbs above the version root, nor one before the version above `/`.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The API versions `GET /` lists, oldest first, ending with `latest`.
///
/// Source: the EC2 User Guide, "Retrieve instance metadata" (the list up to 2016-04-19) and the
/// "version when category was released" column of "Instance metadata categories" for the later
/// ones, which also match versions seen on real instances; `2022-09-24` is a build the current
/// guide names (docs/behaviour.md, "Paths and listings").
pub const API_VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2016-11-15",
    "2016-11-30",
    "2018-03-28",
    "2018-05-23",
    "2018-08-17",
    "2018-09-24",
    "2018-11-29",
    "2019-10-01",
    "2020-08-24",
    "2020-10-27",
    "2020-11-01",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "latest",
];

/// The key of the token resource below `latest`.
pub const TOKEN_KEY: &str = "api/token";

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/`: the list of API versions.
    Versions,
    /// A node below an API version.
    Node {
        /// True for `latest`, false for a dated version such as `2021-03-23`.
        latest: bool,
        /// The tree key: the rest of the path without leading or trailing slashes, `""` for the
        /// version root.
        key: Cow<'a, str>,
    },
    /// Nothing IMDS serves: an unknown version, or undecodable bytes.
    Unknown,
}

impl Target<'_> {
    /// True when this is `latest/api/token`, the only path that issues tokens.
    pub fn is_token(&self) -> bool {
        matches!(self, Target::Node { latest: true, key } if key == TOKEN_KEY)
    }
}

/// Maps a raw request path (without the query string) to its target.
pub fn parse(raw_path: &str) -> Target<'_> {
    if !raw_path.contains('%') {
        return parse_decoded(raw_path);
    }
    match percent_decode_str(raw_path).decode_utf8() {
        Ok(Cow::Borrowed(decoded)) => parse_decoded(decoded),
        Ok(Cow::Owned(decoded)) => match parse_decoded(&decoded) {
            Target::Node { latest, key } => Target::Node {
                latest,
                key: Cow::Owned(key.into_owned()),
            },
            Target::Versions => Target::Versions,
            Target::Unknown => Target::Unknown,
        },
        Err(_) => Target::Unknown,
    }
}

/// True when `raw_path` names a directory as written: it ends with `/`, or with a `.` or `..`
/// segment (which leave a trailing slash when resolved), percent-encoded or not.
pub fn names_directory(raw_path: &str) -> bool {
    let ends_so = |path: &str| {
        path.ends_with('/')
            || path
                .rsplit('/')
                .next()
                .is_some_and(|last| last == "." || last == "..")
    };
    ends_so(raw_path)
        || (raw_path.contains('%')
            && percent_decode_str(raw_path)
                .decode_utf8()
                .is_ok_and(|decoded| ends_so(&decoded)))
}

fn is_dot_segment(segment: &str) -> bool {
    segment == "." || segment == ".."
}

/// Whether `rest`, a key trimmed of slashes, has an empty segment (`//`) or a dot segment; one
/// pass over its bytes, as every request's path goes through here.
fn needs_cleaning(rest: &str) -> bool {
    !rest.is_empty()
        && rest
            .as_bytes()
            .split(|byte| *byte == b'/')
            .any(|segment| matches!(segment, b"" | b"." | b".."))
}

fn parse_decoded(path: &str) -> Target<'_> {
    // Dot segments before the version stay at the root: RFC 3986 §5.2.4 never climbs above `/`.
    let mut path = path.trim_start_matches('/');
    loop {
        let (first, rest) = path.split_once('/').unwrap_or((path, ""));
        if !is_dot_segment(first) {
            break;
        }
        path = rest.trim_start_matches('/');
    }
    if path.is_empty() {
        return Target::Versions;
    }
    let (version, rest) = path.split_once('/').unwrap_or((path, ""));
    let latest = version == "latest";
    if !latest && API_VERSIONS.binary_search(&version).is_err() {
        return Target::Unknown;
    }
    let rest = rest.trim_matches('/');
    if !needs_cleaning(rest) {
        return Target::Node {
            latest,
            key: Cow::Borrowed(rest),
        };
    }
    // Invariant: `..` removes the segment before it but never the version: at the version root
    // it stays there, so a path never leaves the tree of the version it names.
    let mut segments: Vec<&str> = Vec::new();
    for segment in rest.split('/').filter(|segment| !segment.is_empty()) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    Target::Node {
        latest,
        key: Cow::Owned(segments.join("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw: &str, expect: Option<(bool, &str)>) {
        let got = match parse(raw) {
            Target::Node { latest, key } => Some((latest, key.into_owned())),
            Target::Versions => Some((false, "<versions>".to_owned())),
            Target::Unknown => None,
        };
        assert_eq!(
            got,
            expect.map(|(latest, key)| (latest, key.to_owned())),
            "{raw}"
        );
    }

    #[test]
    fn versions_are_sorted_for_binary_search() {
        let mut sorted = API_VERSIONS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, API_VERSIONS);
    }

    #[test]
    fn slashes() {
        check("/", Some((false, "<versions>")));
        check("//", Some((false, "<versions>")));
        check("/latest", Some((true, "")));
        check("/latest/", Some((true, "")));
        check("/latest/meta-data", Some((true, "meta-data")));
        check("/latest/meta-data/", Some((true, "meta-data")));
        check(
            "//latest/meta-data/instance-id",
            Some((true, "meta-data/instance-id")),
        );
        check(
            "/latest/meta-data/placement/availability-zone/",
            Some((true, "meta-data/placement/availability-zone")),
        );
        check(
            "/latest//meta-data///ami-id",
            Some((true, "meta-data/ami-id")),
        );
    }

    #[test]
    fn versions() {
        check(
            "/2021-03-23/meta-data/instance-id",
            Some((false, "meta-data/instance-id")),
        );
        check("/2009-04-04/", Some((false, "")));
        check("/1.0/meta-data", Some((false, "meta-data")));
        check("/2021-03-24/meta-data", None);
        check("/Latest/meta-data", None);
        check("/meta-data/", None);
        assert!(parse("/latest/api/token").is_token());
        assert!(parse("/latest/api/token/").is_token());
        assert!(!parse("/2021-03-23/api/token").is_token());
    }

    #[test]
    fn dot_segments_resolve_within_the_version() {
        // VM::EC2's user-data path.
        check("/latest/meta-data/../user-data", Some((true, "user-data")));
        check("/latest/./meta-data", Some((true, "meta-data")));
        check(
            "/latest/meta-data/./instance-id",
            Some((true, "meta-data/instance-id")),
        );
        check("/latest/meta-data/.", Some((true, "meta-data")));
        check("/latest/..", Some((true, "")));
        check("/latest/../../../etc/passwd", Some((true, "etc/passwd")));
        check(
            "/2021-03-23/meta-data/../../latest/x",
            Some((false, "latest/x")),
        );
        check("/latest/%2e%2e/meta-data", Some((true, "meta-data")));
        check("/../latest/meta-data", Some((true, "meta-data")));
        check("/./latest/", Some((true, "")));
        check("/..", Some((false, "<versions>")));
        check("/nope/../latest/meta-data", None);
        assert!(parse("/latest/api/./token").is_token());
        assert!(parse("/latest/meta-data/../api/token").is_token());
        for once in [
            "/latest/a/../b/./c//d",
            "/latest/../x",
            "/latest/a/b/../../../c",
        ] {
            let Target::Node { key, .. } = parse(once) else {
                panic!("{once}")
            };
            check(&format!("/latest/{key}"), Some((true, key.as_ref())));
        }
    }

    #[test]
    fn directories_as_written() {
        for directory in [
            "/latest/api/token/",
            "/latest/api/token/.",
            "/latest/api/token/x/..",
            "/latest/api/token%2F",
            "/latest/api/token/%2e",
        ] {
            assert!(names_directory(directory), "{directory}");
        }
        for value in [
            "/latest/api/token",
            "/latest/api/token.",
            "/latest/api/..token",
            "/latest/api/%74oken",
        ] {
            assert!(!names_directory(value), "{value}");
        }
    }

    #[test]
    fn hostile_segments() {
        check("/latest/meta-data/%ff", None);
        check("/latest/meta-data/%", Some((true, "meta-data/%")));
        check(
            "/latest/meta-data/tags/instance/a%3Ab",
            Some((true, "meta-data/tags/instance/a:b")),
        );
        check("/latest/meta-data/\0", Some((true, "meta-data/\0")));
    }
}
