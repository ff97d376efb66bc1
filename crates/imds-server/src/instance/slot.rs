//! One served instance as requests see it: what its answers are made from, the answers once a
//! request asked for them, its counters and its rate limit.

use std::sync::{
    atomic::{AtomicI64, AtomicU64, Ordering},
    Arc,
};

use arc_swap::{ArcSwap, ArcSwapOption};
use governor::DefaultDirectRateLimiter;
use time::OffsetDateTime;

use crate::{
    faults::InstanceFaults,
    instance::snapshot::{Snapshot, Source},
    telemetry::InstanceRequests,
    throttle::Throttle,
};

/// An instance's rate limiter and the generation of the limits it was made under; `None`
/// inside: unlimited.
#[derive(Debug)]
struct Bucket {
    generation: u64,
    limiter: Option<DefaultDirectRateLimiter>,
}

/// Per-instance counters, mirroring EC2's CloudWatch metrics of the same names.
#[derive(Debug, Default)]
pub struct Counters {
    /// `MetadataNoToken`: tokenless (IMDSv1) requests served.
    pub no_token: AtomicU64,
    /// `MetadataNoTokenRejected`: tokenless requests refused because tokens are required.
    pub no_token_rejected: AtomicU64,
    /// Session tokens issued.
    pub tokens_issued: AtomicU64,
    /// Requests refused with 429 because the instance was over its rate limit.
    pub throttled: AtomicU64,
    /// Requests by route and IMDS version, and refusals (the console's instance charts).
    pub requests: InstanceRequests,
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

/// One instance being served: what its answers are made from, the answers themselves once a
/// request asked for them, and its counters.
#[derive(Debug)]
pub struct InstanceSlot {
    source: ArcSwap<Source>,
    snapshot: ArcSwapOption<Snapshot>,
    /// The store revision the current source shows in full (its role's credentials included):
    /// `State: applied` for writes up to it.
    applied_revision: AtomicI64,
    /// Unix milliseconds when the runtime's timer is due to renew the role's credentials; 0
    /// when none is set. A timer entry of another time is stale.
    pub(crate) renew_due_ms: AtomicI64,
    /// Request counters of this instance.
    pub counters: Counters,
    /// The instance's rate limiter, made on its first request under each generation of the
    /// limits.
    limiter: ArcSwapOption<Bucket>,
    /// Faults injected into the instance's answers; kept across changes of the instance.
    pub faults: InstanceFaults,
}

impl InstanceSlot {
    /// A slot serving `source`, which shows revision `applied` of the instance in full.
    pub fn new(source: Source, applied: i64) -> InstanceSlot {
        InstanceSlot {
            source: ArcSwap::from_pointee(source),
            snapshot: ArcSwapOption::empty(),
            applied_revision: AtomicI64::new(applied),
            renew_due_ms: AtomicI64::new(0),
            counters: Counters::default(),
            limiter: ArcSwapOption::empty(),
            faults: InstanceFaults::default(),
        }
    }

    /// True when the instance is within its rate limit under `throttle` (taking one request
    /// from its allowance); false when the request must be refused with 429. Lock-free.
    pub fn admit(&self, throttle: &Throttle) -> bool {
        let current = self.limiter.load();
        match &*current {
            Some(bucket) if bucket.generation == throttle.generation => self.take(&bucket.limiter),
            _ => {
                // Two requests racing here may both make one; either is right.
                let bucket = Arc::new(Bucket {
                    generation: throttle.generation,
                    limiter: throttle.limiter_for(&self.source.load().instance.instance_id),
                });
                let admitted = self.take(&bucket.limiter);
                self.limiter.store(Some(bucket));
                admitted
            }
        }
    }

    fn take(&self, limiter: &Option<DefaultDirectRateLimiter>) -> bool {
        match limiter {
            None => true,
            Some(limiter) => {
                let admitted = limiter.check().is_ok();
                if !admitted {
                    Counters::bump(&self.counters.throttled);
                }
                admitted
            }
        }
    }

    /// Calls `answer` with the snapshot in force at `now_ms` (Unix milliseconds), building it
    /// first if the source changed since the last one was built or the last one's time is up.
    /// Lock-free; two requests racing after a change may both build, and either result is
    /// right.
    #[allow(
        clippy::disallowed_methods,
        reason = "a snapshot is built at the time a request finds the old one stale"
    )]
    pub fn with_snapshot<R>(&self, now_ms: u64, answer: impl FnOnce(&Snapshot) -> R) -> R {
        let source = self.source.load();
        {
            let current = self.snapshot.load();
            if let Some(snapshot) = current.as_deref() {
                if snapshot.generation == source.generation
                    && i64::try_from(now_ms).is_ok_and(|now| now < snapshot.valid_until_ms)
                {
                    return answer(snapshot);
                }
            }
        }
        let built = Arc::new(
            source
                .build(OffsetDateTime::now_utc())
                .unwrap_or_else(|error| {
                    tracing::error!(
                        message = "Could not build a snapshot; answering 404.",
                        instance_id = %source.instance.instance_id,
                        %error,
                    );
                    Snapshot::empty(&source)
                }),
        );
        self.snapshot.store(Some(built.clone()));
        answer(&built)
    }

    /// Replaces the source with what `next` makes of the current one (`None`: keep it), as one
    /// atomic step: `next` may run more than once when sources race, and must be cheap. Says
    /// whether a new source was published.
    pub(crate) fn update_source(&self, mut next: impl FnMut(&Source) -> Option<Source>) -> bool {
        let mut published = false;
        self.source.rcu(|current| match next(current) {
            Some(source) => {
                published = true;
                Arc::new(source)
            }
            None => {
                published = false;
                Arc::clone(current)
            }
        });
        if published {
            // Drop the old answers now rather than at the next request.
            self.snapshot.store(None);
        }
        published
    }

    /// True when the identity document of the current source is not signed yet: the next
    /// snapshot build signs it, which callers on an async worker do first with `sign` on a
    /// blocking thread.
    pub fn needs_signing(&self) -> bool {
        !self.source.load().identity.is_signed()
    }

    /// Signs the current source's identity document (CPU work: call it on a blocking thread).
    pub fn sign(&self) {
        let source = self.source.load();
        // A description that does not resolve has no document; the build that follows says so.
        if let Ok(instance) = source.instance.instance() {
            source.identity.get(instance, &source.issuer.signer);
        }
    }

    /// The source in force.
    pub fn source(&self) -> arc_swap::Guard<Arc<Source>> {
        self.source.load()
    }

    /// Records that the source now shows `revision`.
    pub fn mark_applied(&self, revision: i64) {
        self.applied_revision.fetch_max(revision, Ordering::AcqRel);
    }

    /// The revision the current source shows.
    pub fn applied_revision(&self) -> i64 {
        self.applied_revision.load(Ordering::Acquire)
    }
}
