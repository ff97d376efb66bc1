//! Store tests: the conformance story every backend passes, and what is particular to each.
//!
//! # Layout
//! - `story`: the conformance story, written against `Arc<dyn Store>` only; `conformance!` turns
//!   it into one test per chapter for a backend's fixture.
//! - `sqlite`: the story on SQLite in a temp dir, then durability (drop without close, `kill -9`),
//!   migrations (reopen, upgrade from 0001, refusal of a newer file) and open errors.
//!
//! PostgreSQL joins as a `postgres` module when its backend exists: a fixture that creates a
//! uniquely named database on the server `IMDS_TEST_PG_URL` names (dropped on exit unless
//! `IMDS_TEST_KEEP_DB` is set), and `story::conformance!(fixture)`; the story stays as it is.
//! Its suite is a separate command that the test script runs with a server it starts, so that it
//! never silently skips.

mod sqlite;
mod story;

use std::any::Any;
use std::sync::Arc;

use imds_store::Store;

/// An empty store for one test, and what must live as long as it (a temp dir, a database).
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// Dropped with the fixture, after the test.
    _keep_alive: Box<dyn Any + Send>,
}

impl Fixture {
    /// A fixture for `store`, keeping `keep_alive` until it is dropped.
    pub fn new(store: Arc<dyn Store>, keep_alive: impl Any + Send) -> Self {
        Fixture {
            store,
            _keep_alive: Box::new(keep_alive),
        }
    }
}
