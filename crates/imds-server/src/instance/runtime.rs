//! Keeps every instance's source current, without a task per instance.
//!
//! - A change (`Runtime::change`, `Runtime::start`) is served as soon as what it needs is there:
//!   at once when its role's credentials are in the cache (or the provider answers without
//!   waiting, as `generated` and `static` do); otherwise a task fetches them and publishes the
//!   change when they arrive, and lives only that long. Until then the previous version is
//!   served (a new instance: without its role's credentials). A newer change published first
//!   wins: the older one is then dropped.
//! - Credentials that come due are renewed by one scheduler task with a timer queue (one entry
//!   per instance with a role), which fetches once per cache entry however many instances share
//!   it, at most `fetch_concurrency` fetches at a time.
//! - Events becoming visible and identity credentials rotating need no timer: a snapshot knows
//!   until when it is good (`Snapshot::valid_until_ms`), and the next request builds another.
//!
//! Nothing here holds a lock across an await: sources are replaced with one atomic
//! read-modify-write (`InstanceSlot::update_source`), and the timer queue's mutex guards only
//! pushes and pops.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use imds_core::{
    managed_ssh_keys::{ManagedKey, ManagedKeys},
    options::HttpTokens,
};
use imds_credentials::{CredentialRequest, Delivery};
use time::OffsetDateTime;
use tokio::sync::{oneshot, Notify, Semaphore};

use crate::{
    credentials::{EntryKey, RoleSets},
    instance::{
        described::Described,
        services::Services,
        slot::InstanceSlot,
        snapshot::{IdentitySeed, LazyIdentity, SignedIdentity, Source},
    },
};

/// The longest the scheduler sleeps without looking at its queue, so that a clock that jumps
/// does not leave credentials unrenewed for long.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

/// A change under way: says, when awaited, whether it was served.
#[derive(Debug)]
pub struct Applying(Option<oneshot::Receiver<()>>);

impl Applying {
    /// A change that is served already.
    pub fn done() -> Applying {
        Applying(None)
    }

    /// Waits up to `patience` for the change to be served; false if it was not by then (its
    /// credentials are still being fetched) or if a newer change took its place.
    pub async fn wait(self, patience: Duration) -> bool {
        match self.0 {
            None => true,
            Some(receiver) => matches!(tokio::time::timeout(patience, receiver).await, Ok(Ok(()))),
        }
    }
}

/// How urgent a fetch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// A control-API call is waiting for it.
    Now,
    /// Nobody waits (start-up, the change feed): it takes its turn among at most
    /// `fetch_concurrency` fetches.
    Background,
}

/// One entry of the timer queue: renew `slot`'s role credentials at `due_ms`.
struct Due {
    due_ms: i64,
    slot: Weak<InstanceSlot>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.due_ms == other.due_ms
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.due_ms.cmp(&other.due_ms)
    }
}

struct Shared {
    services: Services,
    timers: std::sync::Mutex<BinaryHeap<Reverse<Due>>>,
    /// Wakes the scheduler when an earlier timer is set.
    wake: Arc<Notify>,
    /// Bounds background fetches.
    fetches: Arc<Semaphore>,
    /// Source generations, increasing across all instances.
    generations: AtomicU64,
    /// The EC2 Instance Connect keys of every instance that was sent none: one empty set.
    no_managed_keys: Arc<ManagedKeys>,
}

/// The runtime of every instance of a server.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("timers", &self.timers_len())
            .finish_non_exhaustive()
    }
}

fn unix_ms(when: OffsetDateTime) -> i64 {
    (when.unix_timestamp_nanos() / 1_000_000) as i64
}

fn role_request<'a>(
    instance: &'a Described,
    role_name: &'a str,
    delivery: Delivery,
) -> CredentialRequest<'a> {
    CredentialRequest {
        role_name,
        instance_id: &instance.instance_id,
        delivery,
    }
}

/// True when `instance` is served an IMDSv1 set: only while its tokens are optional ("If you
/// retrieve IAM role credentials without a session token, you receive the IMDSv1 role
/// credentials"; with tokens required "IMDSv1 credentials are not available", EC2 API
/// reference, `HttpTokens`).
fn wants_v1(instance: &Described) -> bool {
    instance.options.http_tokens == HttpTokens::Optional
}

/// True when `a` and `b` have the same identity document (false if either does not resolve).
fn same_identity_document(a: &Described, b: &Described) -> bool {
    match (a.instance(), b.instance()) {
        (Ok(a), Ok(b)) => SignedIdentity::document(a) == SignedIdentity::document(b),
        _ => false,
    }
}

/// Polls `future` once: its output if it is ready without waiting, else the future itself, to be
/// spawned. Only for fetches from providers that answer at once: a fetch that went upstream
/// must not be dropped after its first poll (the HTTP client carries on with it regardless).
fn ready_or_pending<F: Future + Unpin>(mut future: F) -> Result<F::Output, F> {
    match Pin::new(&mut future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(future),
    }
}

type Fetch = Pin<Box<dyn Future<Output = RoleSets> + Send>>;

impl Runtime {
    /// A runtime serving with `services`, running at most `fetch_concurrency` background fetches
    /// at a time. Starts the scheduler task, so it must be called inside a Tokio runtime.
    pub fn new(services: Services, fetch_concurrency: usize) -> Runtime {
        let shared = Arc::new(Shared {
            services,
            timers: std::sync::Mutex::new(BinaryHeap::new()),
            wake: Arc::new(Notify::new()),
            fetches: Arc::new(Semaphore::new(fetch_concurrency.max(1))),
            generations: AtomicU64::new(0),
            no_managed_keys: Arc::default(),
        });
        tokio::spawn(schedule(Arc::downgrade(&shared), shared.wake.clone()));
        Runtime { shared }
    }

    /// What instances are served with.
    pub fn services(&self) -> &Services {
        &self.shared.services
    }

    fn timers_len(&self) -> usize {
        self.shared
            .timers
            .lock()
            .expect("the timer lock is never held across a panic")
            .len()
    }

    fn next_generation(&self) -> u64 {
        self.shared.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// `role_name`'s credentials for `instance` if they can be had without waiting (cached and
    /// not due, or from a provider that answers at once), else the fetch to run on a task.
    #[allow(
        clippy::disallowed_methods,
        reason = "the instance runtime owns the timers: renewals are scheduled from the clock"
    )]
    fn fetch_in_place(
        &self,
        instance: &Arc<Described>,
        role_name: &str,
    ) -> Result<RoleSets, Fetch> {
        let roles = &self.shared.services.roles;
        let now = OffsetDateTime::now_utc();
        let peek = |delivery| roles.peek(role_request(instance, role_name, delivery), now);
        if let Some(v2) = peek(Delivery::V2) {
            match wants_v1(instance).then(|| peek(Delivery::V1)) {
                None => return Ok(RoleSets { v2, v1: None }),
                Some(Some(v1)) => return Ok(RoleSets { v2, v1: Some(v1) }),
                Some(None) => {}
            }
        }
        let fetch = self.fetch(instance, role_name);
        if roles.provider().answers_at_once(role_name) {
            ready_or_pending(fetch)
        } else {
            Err(fetch)
        }
    }

    /// A fetch of `role_name`'s credentials for `instance` (each set it is served), waiting for
    /// a fetch under way.
    #[allow(
        clippy::disallowed_methods,
        reason = "the instance runtime owns the timers: renewals are scheduled from the clock"
    )]
    fn fetch(&self, instance: &Arc<Described>, role_name: &str) -> Fetch {
        let roles = self.shared.services.roles.clone();
        let instance = instance.clone();
        let role_name = role_name.to_owned();
        Box::pin(async move {
            let now = OffsetDateTime::now_utc();
            let fetch = |delivery| roles.fresh(role_request(&instance, &role_name, delivery), now);
            if wants_v1(&instance) {
                let (v2, v1) = tokio::join!(fetch(Delivery::V2), fetch(Delivery::V1));
                RoleSets { v2, v1: Some(v1) }
            } else {
                RoleSets {
                    v2: fetch(Delivery::V2).await,
                    v1: None,
                }
            }
        })
    }

    /// Starts serving `instance` at `revision`: a new slot, answering at once. Its role's
    /// credentials are in it if they can be had without waiting; otherwise they are fetched
    /// (`urgency` says how) and the slot serves the instance without them until they arrive.
    /// The revision counts as applied once they are there.
    #[allow(
        clippy::disallowed_methods,
        reason = "the instance runtime owns the timers: renewals are scheduled from the clock"
    )]
    pub fn start(
        &self,
        instance: Arc<Described>,
        revision: i64,
        urgency: Urgency,
    ) -> (Arc<InstanceSlot>, Applying) {
        let now = OffsetDateTime::now_utc();
        let (credentials, pending) = match instance.role_name.as_deref() {
            None => (None, None),
            Some(role_name) => match self.fetch_in_place(&instance, role_name) {
                Ok(credentials) => (Some(credentials), None),
                Err(fetch) => (None, Some(fetch)),
            },
        };
        let source = Source {
            generation: self.next_generation(),
            revision,
            instance,
            identity: Arc::new(LazyIdentity::default()),
            role_credentials: credentials,
            identity_seed: IdentitySeed::new(now),
            issuer: self.shared.services.issuer.clone(),
            managed_keys: self.shared.no_managed_keys.clone(),
        };
        let applied = if pending.is_some() { 0 } else { revision };
        let slot = Arc::new(InstanceSlot::new(source, applied));
        let applying = match pending {
            None => {
                self.schedule_renewal(&slot);
                Applying::done()
            }
            Some(fetch) => self.finish_in_task(&slot, fetch, None, urgency),
        };
        (slot, applying)
    }

    /// Serves `instance` (the same id) at `revision` on `slot` as soon as its role's
    /// credentials are there (at once if they can be had without waiting); the previous
    /// version meanwhile. With `renew_role`, the role's credentials are fetched again even if
    /// the role is unchanged (its provider changed).
    pub fn change(
        &self,
        slot: &Arc<InstanceSlot>,
        instance: Arc<Described>,
        revision: i64,
        renew_role: bool,
        urgency: Urgency,
    ) -> Applying {
        let current = slot.source();
        let role_name = instance.role_name.as_deref().map(str::to_owned);
        let wanted_v1 = wants_v1(&instance);
        let kept = match (&role_name, &current.role_credentials) {
            (None, _) => Some(None),
            // The same role: its sets are kept, but an IMDSv1 set only while tokens stay
            // optional; one that is wanted and missing is fetched.
            (Some(role), Some(sets))
                if !renew_role
                    && current.role_name() == Some(role.as_str())
                    && (sets.v1.is_some() || !wanted_v1) =>
            {
                Some(Some(RoleSets {
                    v2: sets.v2.clone(),
                    v1: sets.v1.clone().filter(|_| wanted_v1),
                }))
            }
            _ => None,
        };
        drop(current);
        if !wanted_v1 {
            // Tokens required: the IMDSv1 set is not kept (a set shared per role stays for the
            // instances that still use it).
            self.shared
                .services
                .roles
                .forget_delivery(&instance.instance_id, Delivery::V1);
        }
        let fetch = match (kept, role_name) {
            (Some(credentials), _) => {
                self.publish_change(slot, instance, revision, credentials);
                return Applying::done();
            }
            (None, Some(role)) => match self.fetch_in_place(&instance, &role) {
                Ok(credentials) => {
                    self.publish_change(slot, instance, revision, Some(credentials));
                    return Applying::done();
                }
                Err(fetch) => fetch,
            },
            (None, None) => unreachable!("an instance without a role keeps no credentials"),
        };
        self.finish_in_task(slot, fetch, Some((instance, revision)), urgency)
    }

    /// Fetches the credentials of the role `slot` serves again (its provider changed) and
    /// serves them; the returned change is served once they are.
    pub fn renew(&self, slot: &Arc<InstanceSlot>) -> Applying {
        let current = slot.source();
        let Some(role) = current.role_name().map(str::to_owned) else {
            return Applying::done();
        };
        let fetch = self.fetch_in_place(&current.instance, &role);
        drop(current);
        match fetch {
            Ok(credentials) => {
                self.publish_credentials(slot, &role, credentials);
                Applying::done()
            }
            Err(fetch) => self.finish_in_task(slot, fetch, None, Urgency::Now),
        }
    }

    /// Stops renewing `slot`'s credentials (the instance is no longer served).
    pub fn stop(&self, slot: &InstanceSlot) {
        slot.renew_due_ms.store(0, Ordering::Relaxed);
    }

    /// Runs `fetch` in a task of its own, then publishes `change` with what it fetched (or, with
    /// no change, the credentials alone onto whatever is served then).
    fn finish_in_task(
        &self,
        slot: &Arc<InstanceSlot>,
        fetch: Fetch,
        change: Option<(Arc<Described>, i64)>,
        urgency: Urgency,
    ) -> Applying {
        let (served, receiver) = oneshot::channel();
        let runtime = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            let _permit = match urgency {
                Urgency::Now => None,
                Urgency::Background => runtime.shared.fetches.clone().acquire_owned().await.ok(),
            };
            let credentials = fetch.await;
            let published = match change {
                Some((instance, revision)) => {
                    runtime.publish_change(&slot, instance, revision, Some(credentials))
                }
                None => {
                    let role = slot.source().role_name().map(str::to_owned);
                    match role {
                        Some(role) => runtime.publish_credentials(&slot, &role, credentials),
                        None => false,
                    }
                }
            };
            if published {
                let _ = served.send(());
            }
        });
        Applying(Some(receiver))
    }

    /// Publishes `instance` at `revision` with `credentials` on `slot`, unless a newer revision
    /// is served already; marks it applied and sets the timer for its credentials.
    fn publish_change(
        &self,
        slot: &Arc<InstanceSlot>,
        instance: Arc<Described>,
        revision: i64,
        credentials: Option<RoleSets>,
    ) -> bool {
        let generation = self.next_generation();
        let published = slot.update_source(|current| {
            if current.revision > revision {
                return None;
            }
            // The identity document is signed again only if it changed (one never signed is
            // not compared: that would resolve an idle instance's description for nothing).
            let identity = if current.identity.is_signed()
                && same_identity_document(&instance, &current.instance)
            {
                current.identity.clone()
            } else {
                Arc::new(LazyIdentity::default())
            };
            Some(Source {
                generation,
                revision,
                instance: instance.clone(),
                identity,
                role_credentials: credentials.clone(),
                identity_seed: current.identity_seed,
                issuer: current.issuer.clone(),
                managed_keys: current.managed_keys.clone(),
            })
        });
        if published {
            slot.mark_applied(revision);
            self.schedule_renewal(slot);
        }
        published
    }

    /// Publishes `credentials` of `role_name` onto whatever `slot` serves, if it serves that
    /// role; the revision it serves is then applied in full.
    fn publish_credentials(
        &self,
        slot: &Arc<InstanceSlot>,
        role_name: &str,
        credentials: RoleSets,
    ) -> bool {
        let generation = self.next_generation();
        let mut revision = 0;
        let published = slot.update_source(|current| {
            if current.role_name() != Some(role_name) {
                return None;
            }
            revision = current.revision;
            // The sets were fetched for the instance as it was: an IMDSv1 set is served only
            // while its tokens are optional, and one fetched by a change meanwhile is kept.
            let v1 = match wants_v1(&current.instance) {
                false => None,
                true => credentials.v1.clone().or_else(|| {
                    current
                        .role_credentials
                        .as_ref()
                        .and_then(|sets| sets.v1.clone())
                }),
            };
            let credentials = RoleSets {
                v2: credentials.v2.clone(),
                v1,
            };
            Some(Source {
                generation,
                revision: current.revision,
                instance: current.instance.clone(),
                identity: current.identity.clone(),
                role_credentials: Some(credentials),
                identity_seed: current.identity_seed,
                issuer: current.issuer.clone(),
                managed_keys: current.managed_keys.clone(),
            })
        });
        if published {
            slot.mark_applied(revision);
            self.schedule_renewal(slot);
        }
        published
    }

    /// Adds `key` (EC2 Instance Connect's) to what `slot` serves, dropping its keys expired at
    /// `now` (Unix seconds); served from the next request on. Nothing removes it later: each
    /// snapshot holds the keys active when it was built and is good until the first of them
    /// expires.
    pub fn add_managed_key(&self, slot: &InstanceSlot, key: &ManagedKey, now: i64) {
        let generation = self.next_generation();
        // Signed once, when sent: the block's bytes never change while it is served.
        let source = slot.source();
        let signature = source.issuer.instance_connect.as_ref().and_then(|signer| {
            signer
                .sign(key.signed_data(&source.instance.instance_id).as_bytes())
                .map_err(|error| {
                    tracing::warn!(%error, "an EC2 Instance Connect key is served unsigned");
                })
                .ok()
        });
        drop(source);
        slot.update_source(|current| {
            Some(Source {
                generation,
                revision: current.revision,
                instance: current.instance.clone(),
                identity: current.identity.clone(),
                role_credentials: current.role_credentials.clone(),
                identity_seed: current.identity_seed,
                issuer: current.issuer.clone(),
                managed_keys: Arc::new(current.managed_keys.with_signed(
                    key.clone(),
                    signature.clone(),
                    now,
                )),
            })
        });
    }

    /// Sets the timer for the credentials `slot` serves now, if it serves any.
    fn schedule_renewal(&self, slot: &Arc<InstanceSlot>) {
        let due = slot
            .source()
            .role_credentials
            .as_ref()
            .map(|credentials| unix_ms(credentials.refresh_at()));
        match due {
            Some(due_ms) => self.set_timer(slot, due_ms),
            None => slot.renew_due_ms.store(0, Ordering::Relaxed),
        }
    }

    fn set_timer(&self, slot: &Arc<InstanceSlot>, due_ms: i64) {
        // Zero means "no timer": a time at the epoch is due at once all the same.
        let due_ms = due_ms.max(1);
        if slot.renew_due_ms.swap(due_ms, Ordering::Relaxed) == due_ms {
            return;
        }
        let earliest = {
            let mut timers = self
                .shared
                .timers
                .lock()
                .expect("the timer lock is never held across a panic");
            timers.push(Reverse(Due {
                due_ms,
                slot: Arc::downgrade(slot),
            }));
            timers.peek().map(|Reverse(due)| due.due_ms)
        };
        if earliest == Some(due_ms) {
            self.shared.wake.notify_one();
        }
    }
}

/// The scheduler: sleeps until the earliest timer, then renews every slot that is due, one
/// fetch per cache entry.
#[allow(
    clippy::disallowed_methods,
    reason = "the instance runtime owns the timers: renewals are scheduled from the clock"
)]
async fn schedule(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let runtime = Runtime { shared: strong };
        let now_ms = unix_ms(OffsetDateTime::now_utc());
        let mut due = Vec::new();
        let next_ms = {
            let mut timers = runtime
                .shared
                .timers
                .lock()
                .expect("the timer lock is never held across a panic");
            while let Some(Reverse(entry)) = timers.peek() {
                if entry.due_ms > now_ms {
                    break;
                }
                let Some(Reverse(entry)) = timers.pop() else {
                    break;
                };
                if let Some(slot) = entry.slot.upgrade() {
                    // A slot whose timer moved since has another entry; this one is stale.
                    if slot.renew_due_ms.load(Ordering::Relaxed) == entry.due_ms {
                        due.push(slot);
                    }
                }
            }
            timers.peek().map(|Reverse(entry)| entry.due_ms)
        };
        renew_due(&runtime, due);
        let sleep = next_ms.map_or(LONGEST_SLEEP, |next_ms| {
            Duration::from_millis(u64::try_from(next_ms - now_ms).unwrap_or(0)).min(LONGEST_SLEEP)
        });
        // The scheduler holds no strong reference while it sleeps: once the runtime is dropped,
        // it ends at its next wake.
        drop(runtime);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = wake.notified() => {}
        }
    }
}

/// Renews the credentials of every slot in `due`: one fetch per cache entry, published to every
/// slot that shares it.
fn renew_due(runtime: &Runtime, due: Vec<Arc<InstanceSlot>>) {
    let roles = &runtime.shared.services.roles;
    // Slots share a fetch when they share the IMDSv2 cache entry and want the same sets.
    let mut groups: HashMap<(EntryKey, bool), Vec<Arc<InstanceSlot>>> = HashMap::new();
    for slot in due {
        slot.renew_due_ms.store(0, Ordering::Relaxed);
        let source = slot.source();
        let Some(role) = source.role_name() else {
            continue;
        };
        let key = (
            roles.key(role_request(&source.instance, role, Delivery::V2)),
            wants_v1(&source.instance),
        );
        drop(source);
        groups.entry(key).or_default().push(slot);
    }
    for (((role, _, _), _), slots) in groups {
        let first = slots[0].source().instance.clone();
        match runtime.fetch_in_place(&first, &role) {
            Ok(credentials) => {
                for slot in &slots {
                    runtime.publish_credentials(slot, &role, credentials.clone());
                }
            }
            Err(fetch) => {
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    let _permit = runtime.shared.fetches.clone().acquire_owned().await.ok();
                    let credentials = fetch.await;
                    for slot in &slots {
                        runtime.publish_credentials(slot, &role, credentials.clone());
                    }
                });
            }
        }
    }
}
