//! The metadata tree of one instance: categories (directories) and values (leaves), flattened
//! into prepared answers so that serving a request is one hash lookup.
//!
//! Listings follow AWS's format: the immediate children, one per line, separated by line feeds,
//! directories marked with a trailing `/`. No listing ends with a line feed: botocore and
//! aws-sdk-rust paste the role listing verbatim into the next URL. A directory may replace its
//! listing with custom text (`public-keys/` lists `0=name`, `latest/` lists names without slashes).
//!
//! Every answer carries when it last changed (Unix seconds, for `Last-Modified`): values the stamp
//! the tree had when they were put (`Tree::stamp`), listings the latest of their children's.

use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;
use time::OffsetDateTime;

/// How an answer is labelled on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// Metadata values, listings and JSON documents: AWS labels all of them `text/plain`.
    Text,
    /// User-data, which may be any bytes: `application/octet-stream`.
    Binary,
    /// A directory's listing: `text/plain` like values, told apart for metrics.
    Listing,
}

/// A prepared answer: the exact body bytes and how to label them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response body, shared by every request that gets this answer.
    pub body: Bytes,
    /// The content type to send.
    pub kind: ContentKind,
}

/// A tree could not take a value at the path given.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TreeError {
    /// A leaf already sits where a directory is needed, or the other way round.
    #[error("metadata path {0:?} is both a value and a category")]
    Conflict(String),
    /// A path segment is empty, `.` or `..`.
    #[error("metadata path {0:?} has an empty, `.` or `..` segment")]
    BadPath(String),
}

#[derive(Debug, Default)]
struct Directory {
    children: BTreeMap<String, Node>,
    listing: Option<Bytes>,
}

#[derive(Debug)]
enum Node {
    Directory(Directory),
    /// A value and when it last changed (Unix seconds).
    Leaf(Answer, i64),
}

/// A metadata tree being built.
#[derive(Debug, Default)]
pub struct Tree {
    root: Directory,
    /// When the values put from now on last changed (Unix seconds).
    stamp: i64,
    /// Answers that no listing names (see `Tree::unlisted`).
    unlisted: Vec<(String, Answer, i64)>,
}

/// A flattened tree: tree key (path without leading or trailing slash, `""` for the root) to
/// answer, sorted by key. A sorted slice rather than a hash map: lookups are a binary search over
/// about a hundred keys, and it takes half the memory, which counts with thousands of instances.
#[derive(Debug, Default)]
pub struct Flat {
    entries: Box<[(Box<str>, Answer, i64)]>,
}

impl Flat {
    /// The answer at `key`.
    pub fn get(&self, key: &str) -> Option<&Answer> {
        self.get_dated(key).map(|(answer, _)| answer)
    }

    /// The answer at `key` and when it last changed (Unix seconds).
    pub fn get_dated(&self, key: &str) -> Option<(&Answer, i64)> {
        self.entries
            .binary_search_by(|(entry_key, _, _)| (**entry_key).cmp(key))
            .ok()
            .map(|index| {
                let (_, answer, modified) = &self.entries[index];
                (answer, *modified)
            })
    }

    /// True when `key` has an answer.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every key and answer, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Answer)> {
        self.entries.iter().map(|(key, answer, _)| (&**key, answer))
    }

    /// When each answer last changed (Unix seconds), in key order.
    pub fn modified(&self) -> impl Iterator<Item = i64> + '_ {
        self.entries.iter().map(|(_, _, modified)| *modified)
    }

    /// Every key, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(key, _, _)| &**key)
    }

    /// How many answers there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Tree {
    /// Stamps the values put from now on as last changed at `when`.
    pub fn stamp(&mut self, when: OffsetDateTime) {
        self.stamp = when.unix_timestamp();
    }

    /// Puts a text value at `path` (slash-separated, below the tree root).
    pub fn text(&mut self, path: &str, value: impl Into<Bytes>) -> Result<(), TreeError> {
        self.leaf(
            path,
            Answer {
                body: value.into(),
                kind: ContentKind::Text,
            },
        )
    }

    /// Puts an answer at `path`.
    pub fn leaf(&mut self, path: &str, answer: Answer) -> Result<(), TreeError> {
        check_path(path)?;
        let (parent_path, name) = path.rsplit_once('/').unwrap_or(("", path));
        let stamp = self.stamp;
        let parent = self.directory_mut(parent_path, path)?;
        match parent.children.get(name) {
            Some(Node::Directory(_)) => Err(TreeError::Conflict(path.to_owned())),
            _ => {
                parent
                    .children
                    .insert(name.to_owned(), Node::Leaf(answer, stamp));
                Ok(())
            }
        }
    }

    /// Puts an answer at `key` that no listing names and that creates no directory: a path real
    /// IMDS answers without listing it (`meta-data/tags/instance` while tags are disabled). A
    /// value or directory of the tree at the same key wins over it.
    pub fn unlisted(&mut self, key: &str, answer: Answer) -> Result<(), TreeError> {
        for segment in key.split('/') {
            check_segment(key, segment)?;
        }
        self.unlisted.push((key.to_owned(), answer, self.stamp));
        Ok(())
    }

    /// Replaces the listing of the directory at `path` (creating it) with `listing`.
    pub fn listing(&mut self, path: &str, listing: impl Into<Bytes>) -> Result<(), TreeError> {
        if !path.is_empty() {
            check_path(path)?;
        }
        self.directory_mut(path, path)?.listing = Some(listing.into());
        Ok(())
    }

    /// Renders every listing and returns the answers by tree key.
    pub fn flatten(self) -> Flat {
        let mut entries = Vec::new();
        flatten_into(String::new(), self.root, &mut entries);
        entries.sort_unstable_by(|(a, _, _), (b, _, _)| a.cmp(b));
        for (key, answer, modified) in self.unlisted {
            if let Err(index) =
                entries.binary_search_by(|(entry_key, _, _)| (**entry_key).cmp(&key))
            {
                entries.insert(index, (key.into_boxed_str(), answer, modified));
            }
        }
        Flat {
            entries: entries.into_boxed_slice(),
        }
    }

    /// The directory at `path` (checked by the caller), created with its parents if needed.
    fn directory_mut(&mut self, path: &str, full_path: &str) -> Result<&mut Directory, TreeError> {
        let mut directory = &mut self.root;
        if path.is_empty() {
            return Ok(directory);
        }
        for segment in path.split('/') {
            let node = directory
                .children
                .entry(segment.to_owned())
                .or_insert_with(|| Node::Directory(Directory::default()));
            directory = match node {
                Node::Directory(child) => child,
                Node::Leaf(..) => return Err(TreeError::Conflict(full_path.to_owned())),
            };
        }
        Ok(directory)
    }
}

/// Checks every segment of `path` before anything is created, so that a refused path leaves
/// the tree as it was (and a leading or doubled slash is refused, not skipped).
fn check_path(path: &str) -> Result<(), TreeError> {
    path.split('/')
        .try_for_each(|segment| check_segment(path, segment))
}

fn check_segment(path: &str, segment: &str) -> Result<(), TreeError> {
    if segment.is_empty() || segment == "." || segment == ".." {
        Err(TreeError::BadPath(path.to_owned()))
    } else {
        Ok(())
    }
}

/// Flattens `directory` at `key` into `flat`; returns when its listing last changed: the latest of
/// its children's.
fn flatten_into(key: String, directory: Directory, flat: &mut Vec<(Box<str>, Answer, i64)>) -> i64 {
    let listing = directory.listing.unwrap_or_else(|| {
        let mut text = String::new();
        for (name, child) in &directory.children {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(name);
            if matches!(child, Node::Directory(_)) {
                text.push('/');
            }
        }
        Bytes::from(text)
    });
    let mut modified = i64::MIN;
    for (name, child) in directory.children {
        let child_key = if key.is_empty() {
            name
        } else {
            format!("{key}/{name}")
        };
        let child_modified = match child {
            Node::Directory(child_directory) => flatten_into(child_key, child_directory, flat),
            Node::Leaf(answer, leaf_modified) => {
                flat.push((child_key.into_boxed_str(), answer, leaf_modified));
                leaf_modified
            }
        };
        modified = modified.max(child_modified);
    }
    // An empty directory has no child to date it by.
    let modified = if modified == i64::MIN { 0 } else { modified };
    flat.push((
        key.into_boxed_str(),
        Answer {
            body: listing,
            kind: ContentKind::Listing,
        },
        modified,
    ));
    modified
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Flat {
        let mut tree = Tree::default();
        tree.text("meta-data/instance-id", "i-1").unwrap();
        tree.text("meta-data/placement/region", "eu-west-1")
            .unwrap();
        tree.text("meta-data/placement/availability-zone", "eu-west-1a")
            .unwrap();
        tree.text("meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAA k")
            .unwrap();
        tree.listing("meta-data/public-keys", "0=k").unwrap();
        tree.text("meta-data/iam/security-credentials/role", "{}")
            .unwrap();
        tree.flatten()
    }

    #[track_caller]
    fn check(flat: &Flat, key: &str, expect: Option<&str>) {
        let got = flat
            .get(key)
            .map(|answer| String::from_utf8(answer.body.to_vec()).unwrap());
        assert_eq!(got.as_deref(), expect, "{key}");
    }

    #[test]
    fn listings_mark_directories_and_have_no_trailing_newline() {
        let flat = sample();
        check(&flat, "", Some("meta-data/"));
        check(
            &flat,
            "meta-data",
            Some("iam/\ninstance-id\nplacement/\npublic-keys/"),
        );
        check(
            &flat,
            "meta-data/placement",
            Some("availability-zone\nregion"),
        );
        check(&flat, "meta-data/iam/security-credentials", Some("role"));
        check(&flat, "meta-data/public-keys", Some("0=k"));
        check(&flat, "meta-data/public-keys/0", Some("openssh-key"));
        check(&flat, "meta-data/placement/region", Some("eu-west-1"));
        check(&flat, "meta-data/nothing", None);
    }

    #[test]
    fn every_listed_name_is_a_key() {
        let flat = sample();
        for (key, answer) in flat.iter() {
            if key.starts_with("meta-data/public-keys") && !key.ends_with('0') {
                continue;
            }
            let Ok(text) = std::str::from_utf8(&answer.body) else {
                continue;
            };
            if flat
                .keys()
                .any(|other| other.starts_with(&format!("{key}/")) || key.is_empty())
            {
                for name in text.split('\n') {
                    let child = name.trim_end_matches('/');
                    let child_key = if key.is_empty() {
                        child.to_owned()
                    } else {
                        format!("{key}/{child}")
                    };
                    assert!(
                        flat.contains_key(child_key.as_str()),
                        "{child_key} listed but absent"
                    );
                }
            }
        }
    }

    #[test]
    fn listings_are_as_recent_as_their_newest_child() {
        let mut tree = Tree::default();
        tree.stamp(OffsetDateTime::from_unix_timestamp(100).unwrap());
        tree.text("meta-data/instance-id", "i-1").unwrap();
        tree.stamp(OffsetDateTime::from_unix_timestamp(300).unwrap());
        tree.text("meta-data/iam/info", "{}").unwrap();
        tree.stamp(OffsetDateTime::from_unix_timestamp(200).unwrap());
        tree.text("dynamic/fws/instance-monitoring", "disabled")
            .unwrap();
        let flat = tree.flatten();
        let modified = |key| flat.get_dated(key).map(|(_, modified)| modified);
        assert_eq!(modified("meta-data/instance-id"), Some(100));
        assert_eq!(modified("meta-data/iam/info"), Some(300));
        assert_eq!(modified("meta-data/iam"), Some(300));
        assert_eq!(modified("meta-data"), Some(300));
        assert_eq!(modified("dynamic"), Some(200));
        assert_eq!(modified(""), Some(300));
        assert_eq!(modified("nothing"), None);
    }

    #[test]
    fn unlisted_answers_are_served_but_not_listed() {
        let mut tree = Tree::default();
        tree.text("meta-data/instance-id", "i-1").unwrap();
        tree.unlisted(
            "meta-data/tags/instance",
            Answer {
                body: Bytes::new(),
                kind: ContentKind::Text,
            },
        )
        .unwrap();
        tree.unlisted(
            "meta-data/instance-id",
            Answer {
                body: Bytes::from_static(b"other"),
                kind: ContentKind::Text,
            },
        )
        .unwrap();
        assert_eq!(
            tree.unlisted(
                "meta-data/../x",
                Answer {
                    body: Bytes::new(),
                    kind: ContentKind::Text
                }
            ),
            Err(TreeError::BadPath("meta-data/../x".into()))
        );
        let flat = tree.flatten();
        check(&flat, "meta-data/tags/instance", Some(""));
        check(&flat, "meta-data/tags", None);
        check(&flat, "meta-data", Some("instance-id"));
        // The tree wins over an unlisted answer at the same key.
        check(&flat, "meta-data/instance-id", Some("i-1"));
        let keys: Vec<&str> = flat.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "keys stay sorted for the binary search");
    }

    #[test]
    fn conflicts_and_bad_paths() {
        let mut tree = Tree::default();
        tree.text("a/b", "1").unwrap();
        assert_eq!(
            tree.text("a/b/c", "2"),
            Err(TreeError::Conflict("a/b/c".into()))
        );
        assert_eq!(tree.text("a", "2"), Err(TreeError::Conflict("a".into())));
        assert_eq!(
            tree.text("a//c", "2"),
            Err(TreeError::BadPath("a//c".into()))
        );
        assert_eq!(
            tree.text("a/..", "2"),
            Err(TreeError::BadPath("a/..".into()))
        );
    }

    /// Found by the property test `trees_keep_the_listing_rules`: `"/a"` was stored at `a`, its
    /// empty first segment skipped.
    #[test]
    fn a_leading_slash_is_refused() {
        let mut tree = Tree::default();
        assert_eq!(tree.text("/a", "1"), Err(TreeError::BadPath("/a".into())));
        assert_eq!(
            tree.listing("/a", "x"),
            Err(TreeError::BadPath("/a".into()))
        );
        check(&tree.flatten(), "a", None);
    }

    /// Found by the property test `trees_keep_the_listing_rules`: a path refused for a bad
    /// segment had already created the directories before it, which then appeared in listings.
    #[test]
    fn a_refused_path_creates_nothing() {
        let mut tree = Tree::default();
        tree.text("b", "1").unwrap();
        assert_eq!(
            tree.text("a/c//d", "2"),
            Err(TreeError::BadPath("a/c//d".into()))
        );
        assert_eq!(
            tree.listing("e/..", "x"),
            Err(TreeError::BadPath("e/..".into()))
        );
        let flat = tree.flatten();
        check(&flat, "", Some("b"));
        check(&flat, "a", None);
        check(&flat, "e", None);
    }
}
