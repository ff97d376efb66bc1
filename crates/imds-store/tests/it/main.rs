//! Store tests: the conformance story every backend passes, and what is particular to each.
//!
//! # Layout
//! - `story`: the conformance story, written against `Arc<dyn Store>` only; `conformance!` turns
//!   it into one test per chapter for a backend's fixture.
//! - `sqlite`: the story on SQLite in a temp dir, then durability (drop without close, `kill -9`),
//!   migrations (reopen, upgrade from 0001, refusal of a newer file) and open errors.
//! - `postgres`: the story on PostgreSQL, one uniquely named database per test (dropped after it
//!   unless `IMDS_TEST_KEEP_DB` is set) on the server `IMDS_TEST_PG_URL` names, or else on a
//!   private server started from Debian's `postgresql` package
//!   (`imds_store::test_server`); then concurrent migrations, the change feed across a server
//!   restart, open errors, and the bounds of every wait on a network gone silent. Built with the
//!   `system-tests` feature only (`scripts/test` turns it on); with it and without PostgreSQL
//!   installed these tests fail, never skip.
//! - `proxy`: a TCP relay that can stop forwarding, as a network partition does.

#![allow(
    clippy::disallowed_methods,
    reason = "the store tests bound their waits on the real clock and read the test environment"
)]

#[cfg(feature = "system-tests")]
mod postgres;
#[cfg(feature = "system-tests")]
mod proxy;
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
