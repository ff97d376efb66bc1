//! `metadata_tree::Tree`, built from any sequence of insertions, and its flattened answers.
//!
//! - Every value put succeeds or fails as a whole: a refused insertion leaves the tree as it was.
//! - Every value put is served at its key (the last one put there).
//! - Every key is found by lookup, and keys are unique and sorted.
//! - Listings: one child per line, no blank line, no trailing line feed, sorted; a child that is
//!   a directory ends with `/` and nothing else does; every listed child is a key, and every key
//!   is listed by its parent (unless the parent's listing was replaced with custom text, which is
//!   then served verbatim).

use std::collections::BTreeMap;

use imds_core::metadata_tree::{ContentKind, Flat, Tree};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Text(String, String),
    Listing(String, String),
}

/// Paths over a few names, so that insertions share directories and collide; now and then an
/// empty, `.` or `..` segment, which the tree must refuse.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(vec!["a", "b", "c", "meta-data", "0", "x=y"]),
            1 => prop::sample::select(vec!["", ".", ".."]),
        ],
        1..5,
    )
    .prop_map(|segments| segments.join("/"))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (path(), "[a-z0-9 ]{0,8}").prop_map(|(path, value)| Op::Text(path, value)),
        1 => (prop_oneof![Just(String::new()), path()], "[a-z0-9=\n]{0,8}")
            .prop_map(|(path, listing)| Op::Listing(path, listing)),
    ]
}

fn apply(tree: &mut Tree, op: &Op) -> bool {
    match op {
        Op::Text(path, value) => tree.text(path, value.clone()).is_ok(),
        Op::Listing(path, listing) => tree.listing(path, listing.clone()).is_ok(),
    }
}

fn answers(flat: &Flat) -> Vec<(String, Vec<u8>, ContentKind)> {
    flat.iter()
        .map(|(key, answer)| (key.to_owned(), answer.body.to_vec(), answer.kind))
        .collect()
}

fn parent(key: &str) -> (&str, &str) {
    key.rsplit_once('/').unwrap_or(("", key))
}

proptest! {
    #[test]
    fn trees_keep_the_listing_rules(ops in prop::collection::vec(op(), 0..24)) {
        let mut tree = Tree::default();
        let mut accepted = Vec::new();
        let mut values = BTreeMap::new();
        let mut custom = BTreeMap::new();
        for op in &ops {
            if apply(&mut tree, op) {
                accepted.push(op.clone());
                match op {
                    Op::Text(path, value) => values.insert(path.clone(), value.clone()),
                    Op::Listing(path, listing) => custom.insert(path.clone(), listing.clone()),
                };
            }
        }
        let flat = tree.flatten();

        // A refused insertion changed nothing: the accepted ones alone build the same tree.
        let mut again = Tree::default();
        for op in &accepted {
            prop_assert!(apply(&mut again, op));
        }
        prop_assert_eq!(answers(&again.flatten()), answers(&flat));

        for (path, value) in &values {
            let answer = flat.get(path).expect("a value put is served");
            prop_assert_eq!(&answer.body[..], value.as_bytes());
            prop_assert_eq!(answer.kind, ContentKind::Text);
        }

        let keys: Vec<&str> = flat.keys().collect();
        prop_assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{:?}", keys);
        prop_assert!(flat.contains_key(""));
        for (key, answer) in flat.iter() {
            prop_assert_eq!(flat.get(key), Some(answer));
            if !key.is_empty() {
                let (parent_key, name) = parent(key);
                let parent_answer = flat.get(parent_key).expect("every key has a parent");
                prop_assert_eq!(parent_answer.kind, ContentKind::Listing);
                if !custom.contains_key(parent_key) {
                    let listed = if answer.kind == ContentKind::Listing {
                        format!("{name}/")
                    } else {
                        name.to_owned()
                    };
                    let text = std::str::from_utf8(&parent_answer.body).unwrap();
                    prop_assert!(
                        text.split('\n').any(|line| line == listed),
                        "{:?} not listed in {:?}: {:?}", key, parent_key, text
                    );
                }
            }
            if answer.kind != ContentKind::Listing {
                continue;
            }
            let text = std::str::from_utf8(&answer.body).unwrap();
            if let Some(listing) = custom.get(key) {
                prop_assert_eq!(text, listing.as_str());
                continue;
            }
            if text.is_empty() {
                // Only the root is ever empty: every other directory exists because of a child.
                prop_assert_eq!(key, "");
                continue;
            }
            let lines: Vec<&str> = text.split('\n').collect();
            let names: Vec<&str> = lines.iter().map(|line| line.strip_suffix('/').unwrap_or(line)).collect();
            prop_assert!(names.windows(2).all(|pair| pair[0] < pair[1]), "{:?}", text);
            for line in lines {
                prop_assert!(!line.is_empty(), "blank line in the listing of {:?}: {:?}", key, text);
                let name = line.strip_suffix('/').unwrap_or(line);
                let child = if key.is_empty() { name.to_owned() } else { format!("{key}/{name}") };
                let child_answer = flat.get(&child);
                prop_assert!(child_answer.is_some(), "{:?} listed but absent", child);
                prop_assert_eq!(
                    line.ends_with('/'),
                    child_answer.unwrap().kind == ContentKind::Listing,
                    "{:?} in {:?}", line, key
                );
            }
        }
    }
}
