//! Property tests of the domain: request paths, session tokens, the metadata tree, instance
//! descriptions written and read back, and JSON merge patches.
//!
//! Each module states the properties it checks in its header. proptest draws the cases (256 per
//! property by default; `PROPTEST_CASES` raises it) and, when one fails, shrinks it to the
//! smallest input that still fails and prints it.

mod merge_patch;
mod path;
mod spec;
pub mod strategies;
mod token;
mod tree;
