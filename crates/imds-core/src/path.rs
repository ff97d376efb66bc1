//! Request path normalisation: which API version a request names and which node of the metadata
//! tree it asks for.
//!
//! AWS serves the same tree under `latest` and under every dated API version, answers a
//! directory with or without its trailing slash, and a leaf with or without one too (botocore asks
//! for `placement/availability-zone/`). Clients also send `//latest/...` (the JavaScript SDK's
//! `MetadataService`) and percent-encoded segments (cloud-init quotes tag keys). All of these
//! reduce here to one tree key: the path below the version, without leading or trailing slashes.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The API versions `GET /` lists, oldest first, ending with `latest`.
///
/// Source: the EC2 User Guide, "Retrieve instance metadata" (the list up to 2016-04-19) and the
/// "version when category was released" column of "Instance metadata categories" for the later
/// ones, which also match versions seen on real instances.
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
    /// Nothing IMDS serves: an unknown version, `.`/`..` segments, or undecodable bytes.
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

fn parse_decoded(path: &str) -> Target<'_> {
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return Target::Versions;
    }
    let (version, rest) = path.split_once('/').unwrap_or((path, ""));
    let latest = version == "latest";
    if !latest && API_VERSIONS.binary_search(&version).is_err() {
        return Target::Unknown;
    }
    let rest = rest.trim_matches('/');
    let needs_cleaning = rest.contains("//")
        || rest
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    if !needs_cleaning {
        return Target::Node {
            latest,
            key: Cow::Borrowed(rest),
        };
    }
    // Invariant: `..` never climbs out of a version, and `.` is not a name IMDS serves, so
    // both make the path unknown rather than being resolved.
    let mut cleaned = String::with_capacity(rest.len());
    for segment in rest.split('/').filter(|segment| !segment.is_empty()) {
        if segment == "." || segment == ".." {
            return Target::Unknown;
        }
        if !cleaned.is_empty() {
            cleaned.push('/');
        }
        cleaned.push_str(segment);
    }
    Target::Node {
        latest,
        key: Cow::Owned(cleaned),
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
    fn hostile_segments() {
        check("/latest/meta-data/../user-data", None);
        check("/latest/./meta-data", None);
        check("/latest/..", None);
        check("/latest/%2e%2e/meta-data", None);
        check("/latest/meta-data/%ff", None);
        check("/latest/meta-data/%", Some((true, "meta-data/%")));
        check(
            "/latest/meta-data/tags/instance/a%3Ab",
            Some((true, "meta-data/tags/instance/a:b")),
        );
        check("/latest/meta-data/\0", Some((true, "meta-data/\0")));
    }
}
