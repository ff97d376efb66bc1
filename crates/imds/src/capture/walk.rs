//! The walk: every listing and value below one API version, as cloud-init's EC2 datasource
//! reads them (`cloudinit/sources/helpers/ec2.py`, `MetadataMaterializer`): a listing's lines
//! ending in `/` are categories, the others values, `N=NAME` in `public-keys/` stands for the
//! category `N/`; credentials are never read, only the role names that list them.
//!
//! Keys are paths below the version without leading or trailing slash, as the server's tree
//! keys are: `""` for the version's own listing, `meta-data` for the category, `meta-data/mac`.

use std::collections::BTreeMap;

use anyhow::{bail, format_err};
use bytes::Bytes;

use crate::capture::client::{encode_segment, ImdsClient};

/// The most listings and values one walk reads; EC2's tree has a few hundred.
const MAX_ENTRIES: usize = 10_000;

/// The deepest category read; EC2's deepest is `meta-data/network/interfaces/macs/MAC/ipv4-associations`.
const MAX_DEPTH: usize = 12;

/// One captured answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A category's listing, as served.
    Listing(String),
    /// A value's bytes, as served.
    Value(Bytes),
}

/// Everything one walk read.
#[derive(Debug, Default)]
pub struct Capture {
    /// The endpoint, `http://HOST[:PORT]`.
    pub endpoint: String,
    /// The API version walked (`latest`, `2021-03-23`, ...).
    pub api_version: String,
    /// True when the walk sent an IMDSv2 token.
    pub used_token: bool,
    /// True when a tokenless request got `401` (HttpTokens required), false when it was
    /// served, `None` when not asked or neither.
    pub tokens_required: Option<bool>,
    /// Whether `iam/security-credentials-extended/` answered (the instance is allowlisted for
    /// credentials with `AccountId`): its listing is read, never its credentials. `None` when the
    /// instance has no `iam/` or the question got no clear answer.
    pub extended_credentials: Option<bool>,
    /// Answers by key.
    pub entries: BTreeMap<String, Entry>,
    /// Things the walk skipped, for the report.
    pub notes: Vec<String>,
}

impl Capture {
    /// The value at `key`.
    pub fn value(&self, key: &str) -> Option<&Bytes> {
        match self.entries.get(key) {
            Some(Entry::Value(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// The listing at `key`.
    pub fn listing(&self, key: &str) -> Option<&str> {
        match self.entries.get(key) {
            Some(Entry::Listing(text)) => Some(text),
            _ => None,
        }
    }
}

/// One parsed listing line.
#[derive(Debug, PartialEq, Eq)]
pub enum Child {
    /// A category (`name/`, or `N=NAME` in `public-keys/`).
    Category(String),
    /// A value.
    Value(String),
    /// A line that names nothing that can be asked for (empty name, `.`, `..`, a `/` inside).
    Odd(String),
}

/// The children a listing names, in order. `public_keys` reads `N=NAME` lines as the
/// category `N`.
pub fn parse_listing(text: &str, public_keys: bool) -> Vec<Child> {
    let mut children = Vec::new();
    for line in text.split('\n') {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (name, category) = match line.strip_suffix('/') {
            Some(name) => (name, true),
            None => match line.split_once('=') {
                Some((index, _)) if public_keys && index.parse::<u32>().is_ok() => (index, true),
                _ => (line, false),
            },
        };
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            children.push(Child::Odd(line.to_owned()));
        } else if category {
            children.push(Child::Category(name.to_owned()));
        } else {
            children.push(Child::Value(name.to_owned()));
        }
    }
    children
}

/// True for the categories whose values are credentials: only their names are kept.
fn holds_credentials(key: &str) -> bool {
    key.rsplit('/').next() == Some("security-credentials")
}

/// Walks `/{api_version}/` of the client's endpoint: `meta-data/` and `dynamic/` whole,
/// and `user-data`.
pub async fn walk(client: &mut ImdsClient, api_version: &str) -> anyhow::Result<Capture> {
    let mut capture = Capture {
        endpoint: client.base().to_owned(),
        api_version: api_version.to_owned(),
        used_token: client.has_token(),
        ..Capture::default()
    };
    let version_path = format!("/{}/", encode_segment(api_version));
    let root = client.get(&version_path).await?.ok_or_else(|| {
        format_err!(
            "{}: GET {version_path} answered 404: the endpoint does not serve API version {api_version:?}",
            client.base()
        )
    })?;
    let root = String::from_utf8(root.to_vec()).map_err(|_| {
        format_err!(
            "{}: GET {version_path} is not a text listing",
            client.base()
        )
    })?;
    let mut categories = Vec::new();
    for child in parse_listing(&root, false) {
        let name = match child {
            Child::Category(name) | Child::Value(name) | Child::Odd(name) => name,
        };
        match name.as_str() {
            "meta-data" | "dynamic" => categories.push(name),
            "user-data" => {}
            _ => capture.notes.push(format!(
                "{version_path}{name}: not captured (only meta-data, dynamic and user-data are)"
            )),
        }
    }
    if !categories.iter().any(|name| name == "meta-data") {
        bail!(
            "{}: GET {version_path} does not list meta-data: not an EC2-style metadata service",
            client.base()
        );
    }
    capture.entries.insert(String::new(), Entry::Listing(root));

    let mut pending: Vec<String> = categories;
    pending.reverse();
    while let Some(key) = pending.pop() {
        if capture.entries.len() >= MAX_ENTRIES {
            bail!(
                "{}: more than {MAX_ENTRIES} listings and values below {version_path}: stopped",
                client.base()
            );
        }
        let path = format!("{version_path}{}/", encoded_key(&key));
        let Some(body) = client.get(&path).await? else {
            capture
                .notes
                .push(format!("{path}: listed but answered 404 Not Found"));
            continue;
        };
        let Ok(listing) = String::from_utf8(body.to_vec()) else {
            capture
                .notes
                .push(format!("{path}: the listing is not UTF-8 text, left out"));
            continue;
        };
        let children = parse_listing(&listing, key == "meta-data/public-keys");
        capture.entries.insert(key.clone(), Entry::Listing(listing));
        if holds_credentials(&key) {
            continue;
        }
        let depth = key.split('/').count();
        let mut categories = Vec::new();
        for child in children {
            match child {
                Child::Category(name) if depth >= MAX_DEPTH => capture.notes.push(format!(
                    "{path}{name}/: deeper than {MAX_DEPTH} levels, not captured"
                )),
                Child::Category(name) => categories.push(format!("{key}/{name}")),
                Child::Value(name) => {
                    let child_key = format!("{key}/{name}");
                    let child_path = format!("{version_path}{}", encoded_key(&child_key));
                    match client.get(&child_path).await? {
                        Some(value) => {
                            capture.entries.insert(child_key, Entry::Value(value));
                        }
                        None => capture
                            .notes
                            .push(format!("{child_path}: listed but answered 404 Not Found")),
                    }
                }
                Child::Odd(line) => capture.notes.push(format!(
                    "{path}: listing line {line:?} names no path, skipped"
                )),
            }
        }
        // Depth first, in listing order.
        pending.extend(categories.into_iter().rev());
    }

    // The extended credentials path is listed nowhere; only its listing is read, to tell
    // whether the instance answers it (see docs/behaviour.md, "Extended credentials").
    if capture.listing("meta-data/iam").is_some() {
        let extended_path = format!("{version_path}meta-data/iam/security-credentials-extended/");
        match client.get(&extended_path).await {
            // Not kept as an entry: cloud-init does not read it, and its export must not show it.
            Ok(Some(_)) => capture.extended_credentials = Some(true),
            Ok(None) => capture.extended_credentials = Some(false),
            Err(error) => capture.notes.push(format!(
                "{extended_path}: {error:#}; whether the instance serves extended credentials is not captured"
            )),
        }
    }

    let user_data_path = format!("{version_path}user-data");
    if let Some(user_data) = client.get(&user_data_path).await? {
        capture
            .entries
            .insert("user-data".to_owned(), Entry::Value(user_data));
    }
    Ok(capture)
}

/// A key as a URL path: each segment percent-encoded.
fn encoded_key(key: &str) -> String {
    key.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category(name: &str) -> Child {
        Child::Category(name.to_owned())
    }

    fn value(name: &str) -> Child {
        Child::Value(name.to_owned())
    }

    #[track_caller]
    fn check(text: &str, public_keys: bool, expect: Vec<Child>) {
        assert_eq!(parse_listing(text, public_keys), expect, "{text:?}");
    }

    #[test]
    fn listings() {
        check(
            "ami-id\nblock-device-mapping/\nevents/\nhostname",
            false,
            vec![
                value("ami-id"),
                category("block-device-mapping"),
                category("events"),
                value("hostname"),
            ],
        );
        check(
            "dynamic\nmeta-data\nuser-data",
            false,
            vec![value("dynamic"), value("meta-data"), value("user-data")],
        );
        check(
            "0=my-key\n1=other",
            true,
            vec![category("0"), category("1")],
        );
        // Outside public-keys/ a `=` is part of the name (tag keys may hold one).
        check(
            "0=my-key\nk=v",
            false,
            vec![value("0=my-key"), value("k=v")],
        );
        check("x=y", true, vec![value("x=y")]);
        check("a\r\n\n  b  \n", false, vec![value("a"), value("b")]);
        check(
            "../\n./\n/\na/b",
            false,
            vec![
                Child::Odd("../".into()),
                Child::Odd("./".into()),
                Child::Odd("/".into()),
                Child::Odd("a/b".into()),
            ],
        );
        check("", false, vec![]);
    }

    #[test]
    fn credentials_categories() {
        assert!(holds_credentials("meta-data/iam/security-credentials"));
        assert!(holds_credentials(
            "meta-data/identity-credentials/ec2/security-credentials"
        ));
        assert!(!holds_credentials("meta-data/iam"));
        assert!(!holds_credentials("meta-data/iam/info"));
    }

    #[test]
    fn keys_are_encoded_per_segment() {
        assert_eq!(
            encoded_key("meta-data/tags/instance/Name ü"),
            "meta-data/tags/instance/Name%20%C3%BC"
        );
    }
}
