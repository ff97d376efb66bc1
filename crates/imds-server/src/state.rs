//! Shared server state: the token authority and the instances being served.

use std::sync::{
    atomic::{AtomicI64, AtomicU64, Ordering},
    Arc,
};

use arc_swap::ArcSwap;
use imds_core::token::TokenAuthority;

use crate::{registry::Registry, snapshot::Snapshot};

/// Per-instance counters, mirroring EC2's CloudWatch metrics of the same names.
#[derive(Debug, Default)]
pub struct Counters {
    /// `MetadataNoToken`: tokenless (IMDSv1) requests served.
    pub no_token: AtomicU64,
    /// `MetadataNoTokenRejected`: tokenless requests refused because tokens are required.
    pub no_token_rejected: AtomicU64,
    /// Session tokens issued.
    pub tokens_issued: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`; relaxed, as nothing is ordered by these counts.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One instance being served: its current prepared answers and its counters.
#[derive(Debug)]
pub struct InstanceSlot {
    snapshot: ArcSwap<Snapshot>,
    /// The store revision of the instance that the current snapshot shows.
    applied_revision: AtomicI64,
    /// Request counters of this instance.
    pub counters: Counters,
}

impl InstanceSlot {
    /// A slot serving `snapshot`, made from `revision` of the instance.
    pub fn new(snapshot: Snapshot, revision: i64) -> InstanceSlot {
        InstanceSlot {
            snapshot: ArcSwap::from_pointee(snapshot),
            applied_revision: AtomicI64::new(revision),
            counters: Counters::default(),
        }
    }

    /// Records that the snapshot now shows `revision`.
    pub fn mark_applied(&self, revision: i64) {
        self.applied_revision.fetch_max(revision, Ordering::AcqRel);
    }

    /// The revision the current snapshot shows.
    pub fn applied_revision(&self) -> i64 {
        self.applied_revision.load(Ordering::Acquire)
    }

    /// The snapshot in force; lock-free.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// Replaces the snapshot; requests already holding the old one finish with it.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }
}

/// Everything request handling reads.
#[derive(Debug)]
pub struct AppState {
    /// Issues and checks session tokens.
    pub tokens: TokenAuthority,
    /// The served instances and who is answered as which.
    pub registry: Arc<Registry>,
}
