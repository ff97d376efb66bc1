//! One served instance: what requests read of it, what its answers are made from, and what
//! keeps them current. Nothing here knows of the registry or of the server state: the registry
//! owns instances, and instances own nothing above them.
//!
//! # Layout
//! - `described`: `Described`, an instance's description as stored, resolved on first use.
//! - `slot`: `InstanceSlot`, what requests read (the current `Source`, the snapshot built from
//!   it on demand, counters, the rate limiter), lock-free.
//! - `snapshot`: `Source` and `Snapshot`, the instance's metadata tree rendered into answers.
//! - `runtime`: keeps an instance's source current (credentials due, events, changes).
//! - `services`: the signer, credential cache and providers every instance is served with.

pub mod described;
pub mod runtime;
pub mod services;
pub mod slot;
pub mod snapshot;
