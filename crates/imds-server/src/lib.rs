//! Everything in imds that speaks HTTP: the guest API, the listeners and connection handling,
//! and the snapshots of prepared answers they serve from.
//!
//! # Layout
//! - `guest_api`: the IMDS request decisions, a pure function of request, snapshot and time.
//! - `responses`: headers and error pages as AWS sends them.
//! - `listener`: binding, accepting, connection limits, hop limit on token responses.
//! - `snapshot`: an instance's metadata tree rendered ahead of time.
//! - `identity`: the identity document's signatures and the signing certificate.
//! - `rotation`: keeps snapshots current as credentials come due.
//! - `state`: shared state (token authority, instances, counters).
//! - `wire`: JSON documents as AWS lays them out.
#![forbid(unsafe_code)]

pub mod guest_api;
pub mod identity;
pub mod listener;
pub mod responses;
pub mod rotation;
pub mod snapshot;
pub mod state;
pub mod wire;

pub use listener::{bind, run, Limits};
