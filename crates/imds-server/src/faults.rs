//! Fault injection: an instance's metadata service made to misbehave on purpose, so that the
//! software on it can be tested against a slow, failing or inconsistent IMDS.
//!
//! Each instance has an `InstanceFaults` in its slot. Without faults it costs one relaxed atomic
//! load per request (`in_force`) and eight bytes of memory; the table behind it is made when
//! the first fault is injected. A request that finds faults in force is matched against them
//! (`plan`): at most one `latency` fault delays it, and the first other matching fault decides
//! what becomes of it (a `throttle` fault under its rate lets the request go on to the next).
//! What the listener does with the plan is in `listener`; the answers faults make and the
//! rewriting of real answers are here.
//!
//! A fault ends when its `Duration` has passed, after `Count` matching requests, or when it is
//! removed; ended faults leave the table at the next request that sees them (or the next write),
//! and the latest of them are kept for `describe`. Faults live in the serving process only:
//! they are not stored, and a restart starts without them (the config file's are injected again
//! at every start).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use globset::{GlobBuilder, GlobMatcher};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderName, Method, Response, StatusCode};
use http_body_util::BodyExt;
use imds_core::{
    render::{aws_timestamp, parse_aws_timestamp},
    token::TTL_HEADER,
};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{
    admin_api::model::{self, FaultKind, FaultState, GuestMethod, InjectFault},
    credentials::RenderedCredentials,
    responses::{self, Body},
    wire,
};

/// The `Code` of a `credentials-code` fault that names none: what EC2 sends for a role it
/// cannot get credentials for (docs/behaviour.md, "Role providers and the credential lifecycle").
const DEFAULT_CODE: &str = "AssumeRoleUnauthorizedAccess";

/// How many ended faults an instance keeps for `describe`.
const ENDED_KEPT: usize = 32;

/// How many faults an instance may have in force at once: each request that finds faults in
/// force looks at every one.
pub const MAX_FAULTS: usize = 64;

/// The statuses a `status` fault can answer with: those EC2's IMDS and the load balancers in
/// front of metadata proxies answer, each sent with its error page.
pub const STATUSES: [u16; 10] = [400, 401, 403, 404, 405, 429, 500, 502, 503, 504];

/// The longest `latency`, in milliseconds: ten minutes.
const MAX_LATENCY_MS: u64 = 600_000;

/// The longest `credentials-expiry` offset, in seconds: 366 days.
const MAX_EXPIRES_IN: i64 = 366 * 86_400;

/// What a fault does, checked.
#[derive(Debug)]
enum Effect {
    Latency {
        min_ms: u64,
        max_ms: u64,
    },
    NoAnswer,
    Status(StatusCode),
    Reset,
    Close,
    OmitTokenTtl,
    CredentialsCode {
        code: String,
        message: Option<String>,
    },
    CredentialsExpiry {
        expiration: OffsetDateTime,
    },
    RoleRenamed {
        role_name: String,
    },
    Throttle(DefaultDirectRateLimiter),
}

/// One injected fault.
#[derive(Debug)]
pub struct Fault {
    /// As injected, with its id filled in.
    description: InjectFault,
    effect: Effect,
    path: Option<GlobMatcher>,
    method: Option<Method>,
    injected_at: OffsetDateTime,
    /// Unix milliseconds when its duration ends.
    ends_at_ms: Option<u64>,
    /// Requests it matched.
    matched: AtomicU64,
    /// Answers it changed.
    injected: AtomicU64,
    /// Set when it was removed or its count was used up.
    over: AtomicBool,
    /// Tells held requests (`no-answer`) that the fault was removed.
    released: watch::Sender<bool>,
}

/// What a fault does to the request it decides, as the listener carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Hold the request without answering until the fault ends or the hold limit passes.
    NoAnswer,
    /// Answer this status with its page.
    Status(StatusCode),
    /// Reset the connection.
    Reset,
    /// Close the connection without an answer.
    Close,
    /// Answer 429.
    Throttle,
    /// Answer as usual, then rewrite the answer (`rewrite`).
    Rewrite,
}

/// What the faults in force make of one request.
#[derive(Debug, Default)]
pub struct Plan {
    /// How long to wait before anything else.
    pub delay: Duration,
    /// The latency fault that set `delay`.
    pub latency: Option<Arc<Fault>>,
    /// The fault that decides the answer, if any.
    pub decisive: Option<Arc<Fault>>,
}

impl Plan {
    /// What the decisive fault does, if there is one.
    pub fn action(&self) -> Option<Action> {
        self.decisive.as_ref().map(|fault| fault.action())
    }
}

/// Unix milliseconds of `when`.
pub fn unix_ms(when: OffsetDateTime) -> u64 {
    u64::try_from(when.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The fields that belong to one kind only, with the kind they belong to.
fn kind_fields(spec: &InjectFault) -> [(&'static str, bool, &'static [FaultKind]); 9] {
    [
        (
            "LatencyMs",
            spec.latency_ms.is_some(),
            &[FaultKind::Latency],
        ),
        (
            "LatencyMaxMs",
            spec.latency_max_ms.is_some(),
            &[FaultKind::Latency],
        ),
        ("Status", spec.status.is_some(), &[FaultKind::Status]),
        ("Code", spec.code.is_some(), &[FaultKind::CredentialsCode]),
        (
            "Message",
            spec.message.is_some(),
            &[FaultKind::CredentialsCode],
        ),
        (
            "ExpiresIn",
            spec.expires_in.is_some(),
            &[FaultKind::CredentialsExpiry],
        ),
        (
            "RoleName",
            spec.role_name.is_some(),
            &[FaultKind::RoleRenamed],
        ),
        (
            "RequestsPerSecond",
            spec.requests_per_second.is_some(),
            &[FaultKind::Throttle],
        ),
        ("Count", false, &[]),
    ]
}

/// Checks `text` against the character set of ids and codes.
fn is_name(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
}

/// The path pattern as matched: without leading or trailing slashes.
fn normalised_pattern(pattern: &str) -> &str {
    pattern.trim_matches('/')
}

impl Fault {
    /// Checks `spec` and makes the fault it describes, injected at `now` with the id `id` when
    /// the spec names none. Errors name the field.
    pub fn new(mut spec: InjectFault, id: String, now: OffsetDateTime) -> Result<Fault, String> {
        for (field, given, kinds) in kind_fields(&spec) {
            if given && !kinds.contains(&spec.kind) {
                let names: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
                return Err(format!(
                    "{field}: only for Kind {}, not {}",
                    names.join(", "),
                    spec.kind.as_str()
                ));
            }
        }
        match &spec.fault_id {
            Some(given) if !is_name(given, 64) => {
                return Err(format!(
                    "FaultId: {given:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
                ))
            }
            Some(_) => {}
            None => spec.fault_id = Some(id),
        }
        let path = match &spec.path {
            Some(pattern) if pattern.len() > 1024 => {
                return Err("Path: at most 1024 characters".to_owned())
            }
            Some(pattern) if normalised_pattern(pattern).starts_with("latest/") => {
                return Err(format!(
                    "Path: {pattern:?} names the version; give the path below it, e.g. \
                     meta-data/iam/security-credentials/*"
                ))
            }
            Some(pattern) => Some(
                GlobBuilder::new(normalised_pattern(pattern))
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|error| format!("Path: {pattern:?} is not a glob: {error}"))?
                    .compile_matcher(),
            ),
            None => None,
        };
        let method = spec.method.map(|method| match method {
            GuestMethod::Get => Method::GET,
            GuestMethod::Head => Method::HEAD,
            GuestMethod::Put => Method::PUT,
            GuestMethod::Options => Method::OPTIONS,
        });
        let ends_at_ms = match &spec.duration {
            Some(delay) => {
                let seconds = delay
                    .to_seconds()
                    .map_err(|error| format!("Duration: {error}"))?;
                Some(unix_ms(now).saturating_add(seconds.saturating_mul(1000)))
            }
            None => None,
        };
        if spec.count == Some(0) {
            return Err("Count: at least 1".to_owned());
        }
        let effect = match spec.kind {
            FaultKind::Latency => {
                let Some(min_ms) = spec.latency_ms else {
                    return Err("LatencyMs: give the delay in milliseconds".to_owned());
                };
                let max_ms = spec.latency_max_ms.unwrap_or(min_ms);
                if max_ms < min_ms {
                    return Err("LatencyMaxMs: must not be below LatencyMs".to_owned());
                }
                if max_ms > MAX_LATENCY_MS {
                    return Err(format!(
                        "LatencyMs, LatencyMaxMs: at most {MAX_LATENCY_MS} (ten minutes)"
                    ));
                }
                Effect::Latency { min_ms, max_ms }
            }
            FaultKind::NoAnswer => Effect::NoAnswer,
            FaultKind::Status => {
                let Some(status) = spec.status else {
                    return Err("Status: give the status to answer, e.g. 500".to_owned());
                };
                if !STATUSES.contains(&status) {
                    return Err(format!(
                        "Status: {status} is not one of {}",
                        STATUSES.map(|status| status.to_string()).join(", ")
                    ));
                }
                Effect::Status(StatusCode::from_u16(status).expect("the listed statuses are valid"))
            }
            FaultKind::Reset => Effect::Reset,
            FaultKind::Close => Effect::Close,
            FaultKind::OmitTokenTtl => Effect::OmitTokenTtl,
            FaultKind::CredentialsCode => {
                let code = spec.code.clone().unwrap_or_else(|| DEFAULT_CODE.to_owned());
                if !is_name(&code, 128) {
                    return Err(format!(
                        "Code: {code:?} must be 1 to 128 letters, digits, '.', '_' or '-'"
                    ));
                }
                if spec.message.as_ref().is_some_and(|text| text.len() > 1024) {
                    return Err("Message: at most 1024 characters".to_owned());
                }
                if code == "Success" {
                    return Err(
                        "Code: Success is what credentials say; give another code".to_owned()
                    );
                }
                Effect::CredentialsCode {
                    code,
                    message: spec.message.clone(),
                }
            }
            FaultKind::CredentialsExpiry => {
                let Some(seconds) = spec.expires_in else {
                    return Err(
                        "ExpiresIn: give the seconds from now to the Expiration served".to_owned(),
                    );
                };
                if seconds.abs() > MAX_EXPIRES_IN {
                    return Err("ExpiresIn: at most 366 days either way".to_owned());
                }
                let expiration = (now + time::Duration::seconds(seconds))
                    .replace_nanosecond(0)
                    .expect("zero nanoseconds is valid");
                Effect::CredentialsExpiry { expiration }
            }
            FaultKind::RoleRenamed => {
                let Some(role_name) = spec.role_name.clone() else {
                    return Err("RoleName: give the name the role is to be shown as".to_owned());
                };
                imds_core::role_name::check_role_name(&role_name)
                    .map_err(|error| format!("RoleName: {error}"))?;
                Effect::RoleRenamed { role_name }
            }
            FaultKind::Throttle => {
                let Some(per_second) = spec.requests_per_second.and_then(std::num::NonZeroU32::new)
                else {
                    return Err(
                        "RequestsPerSecond: give the requests allowed per second, at least 1"
                            .to_owned(),
                    );
                };
                Effect::Throttle(RateLimiter::direct(Quota::per_second(per_second)))
            }
        };
        Ok(Fault {
            description: spec,
            effect,
            path,
            method,
            injected_at: now,
            ends_at_ms,
            matched: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            over: AtomicBool::new(false),
            released: watch::Sender::new(false),
        })
    }

    /// Its id.
    pub fn id(&self) -> &str {
        self.description
            .fault_id
            .as_deref()
            .expect("a fault's id is filled in when it is made")
    }

    /// Its kind.
    pub fn kind(&self) -> FaultKind {
        self.description.kind
    }

    /// What it does to a request it decides.
    pub fn action(&self) -> Action {
        match &self.effect {
            Effect::NoAnswer => Action::NoAnswer,
            Effect::Status(status) => Action::Status(*status),
            Effect::Reset => Action::Reset,
            Effect::Close => Action::Close,
            Effect::Throttle(_) => Action::Throttle,
            Effect::Latency { .. }
            | Effect::OmitTokenTtl
            | Effect::CredentialsCode { .. }
            | Effect::CredentialsExpiry { .. }
            | Effect::RoleRenamed { .. } => Action::Rewrite,
        }
    }

    /// The name a `role-renamed` fault shows the role as.
    pub fn shown_role(&self) -> Option<&str> {
        match &self.effect {
            Effect::RoleRenamed { role_name } => Some(role_name),
            _ => None,
        }
    }

    /// Unix milliseconds when its duration ends.
    pub fn ends_at_ms(&self) -> Option<u64> {
        self.ends_at_ms
    }

    /// True once it no longer applies at `now_ms`.
    fn is_over(&self, now_ms: u64) -> bool {
        self.over.load(Ordering::Relaxed) || self.ends_at_ms.is_some_and(|end| now_ms >= end)
    }

    /// True when it applies to a request with `method` for the tree key `key` (`None`: a path
    /// that names no key, which only faults without a path match).
    fn matches(&self, method: &Method, key: Option<&str>) -> bool {
        if self.method.as_ref().is_some_and(|wanted| wanted != method) {
            return false;
        }
        match (&self.path, key) {
            (None, _) => true,
            (Some(pattern), Some(key)) => pattern.is_match(key),
            (Some(_), None) => false,
        }
    }

    /// Counts one matching request, unless its count is used up: then it is over.
    fn take(&self) -> bool {
        let taken = self
            .matched
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |matched| {
                match self.description.count {
                    Some(count) if matched >= count => None,
                    _ => Some(matched + 1),
                }
            });
        match taken {
            Ok(before) => {
                if self.description.count == Some(before + 1) {
                    self.over.store(true, Ordering::Relaxed);
                }
                true
            }
            Err(_) => {
                self.over.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    /// Marks it ended and releases the requests it holds.
    fn end(&self) {
        self.over.store(true, Ordering::Relaxed);
        self.released.send_replace(true);
    }

    /// Waits until it is removed (or has already been).
    pub async fn removed(&self) {
        let mut released = self.released.subscribe();
        let _ = released.wait_for(|released| *released).await;
    }

    /// Counts an answer it changed.
    fn count_injected(&self, table: &FaultTable) {
        self.injected.fetch_add(1, Ordering::Relaxed);
        table.by_kind[kind_index(self.kind())].fetch_add(1, Ordering::Relaxed);
    }

    /// The delay a `latency` fault adds to one request.
    fn delay(&self) -> Duration {
        match self.effect {
            Effect::Latency { min_ms, max_ms } if max_ms > min_ms => {
                Duration::from_millis(rand::random_range(min_ms..=max_ms))
            }
            Effect::Latency { min_ms, .. } => Duration::from_millis(min_ms),
            _ => Duration::ZERO,
        }
    }

    /// How the control API shows it, for `instance_id` at `now_ms`.
    pub fn view(&self, instance_id: &str, now_ms: u64) -> model::Fault {
        model::Fault {
            instance_id: instance_id.to_owned(),
            fault_id: self.id().to_owned(),
            state: if self.is_over(now_ms) {
                FaultState::Ended
            } else {
                FaultState::Active
            },
            injected_at: aws_timestamp(self.injected_at),
            ends_at: self.ends_at_ms.and_then(|end| {
                let when =
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(end) * 1_000_000).ok()?;
                Some(aws_timestamp(when))
            }),
            matched: self.matched.load(Ordering::Relaxed),
            injected: self.injected.load(Ordering::Relaxed),
            description: self.description.clone(),
        }
    }
}

fn kind_index(kind: FaultKind) -> usize {
    FaultKind::ALL
        .iter()
        .position(|each| *each == kind)
        .expect("every kind is in ALL")
}

/// An instance's faults, once one was injected.
#[derive(Debug, Default)]
struct FaultTable {
    /// The faults in force (some may have ended since), in the order injected.
    active: ArcSwap<Vec<Arc<Fault>>>,
    /// The latest faults that ended, oldest first.
    ended: Mutex<VecDeque<Arc<Fault>>>,
    /// Held while `active` is replaced; never across an await.
    writing: Mutex<()>,
    /// Answers changed, by kind, for `/metrics` (never reset, so the counters only grow).
    by_kind: [AtomicU64; FaultKind::ALL.len()],
    /// The number of the next default fault id.
    next_id: AtomicU64,
}

/// The faults of one instance.
#[derive(Debug, Default)]
pub struct InstanceFaults {
    /// True while the table may hold a fault in force: the one check a request makes.
    in_force: AtomicBool,
    table: OnceLock<Box<FaultTable>>,
}

/// A fault could not be injected.
#[derive(Debug, PartialEq, Eq)]
pub enum InjectError {
    /// A field is wrong; the message names it.
    Invalid(String),
    /// A fault of that id is in force.
    Taken(String),
}

impl InstanceFaults {
    /// True when the instance may have a fault in force. One relaxed atomic load.
    #[inline]
    pub fn in_force(&self) -> bool {
        self.in_force.load(Ordering::Relaxed)
    }

    fn table(&self) -> &FaultTable {
        self.table.get_or_init(Box::default)
    }

    /// Injects the fault `spec` describes at `now`.
    pub fn inject(
        &self,
        spec: InjectFault,
        now: OffsetDateTime,
    ) -> Result<Arc<Fault>, InjectError> {
        let table = self.table();
        let default_id = format!(
            "fault-{}",
            table.next_id.fetch_add(1, Ordering::Relaxed) + 1
        );
        let fault = Arc::new(Fault::new(spec, default_id, now).map_err(InjectError::Invalid)?);
        let now_ms = unix_ms(now);
        let _writing = table
            .writing
            .lock()
            .expect("the fault table is never held across a panic");
        let mut active: Vec<Arc<Fault>> = Vec::clone(&table.active.load());
        self.retire(table, &mut active, now_ms);
        if active.iter().any(|other| other.id() == fault.id()) {
            return Err(InjectError::Taken(fault.id().to_owned()));
        }
        if active.len() >= MAX_FAULTS {
            return Err(InjectError::Invalid(format!(
                "the instance has {MAX_FAULTS} faults in force, the most it may have; remove some"
            )));
        }
        table
            .ended
            .lock()
            .expect("the fault table is never held across a panic")
            .retain(|ended| ended.id() != fault.id());
        active.push(fault.clone());
        table.active.store(Arc::new(active));
        self.in_force.store(true, Ordering::Relaxed);
        Ok(fault)
    }

    /// Moves the faults of `active` that are over at `now_ms` to the ended ones, and says in
    /// `in_force` whether any is left. Callers hold `writing`.
    fn retire(&self, table: &FaultTable, active: &mut Vec<Arc<Fault>>, now_ms: u64) {
        let mut ended = table
            .ended
            .lock()
            .expect("the fault table is never held across a panic");
        active.retain(|fault| {
            if fault.is_over(now_ms) {
                fault.end();
                ended.push_back(fault.clone());
                false
            } else {
                true
            }
        });
        while ended.len() > ENDED_KEPT {
            ended.pop_front();
        }
        self.in_force.store(!active.is_empty(), Ordering::Relaxed);
    }

    /// Drops the faults that are over from the table; skipped when a write is under way (the
    /// write retires them).
    fn prune(&self, table: &FaultTable, now_ms: u64) {
        let Ok(_writing) = table.writing.try_lock() else {
            return;
        };
        let mut active: Vec<Arc<Fault>> = Vec::clone(&table.active.load());
        self.retire(table, &mut active, now_ms);
        table.active.store(Arc::new(active));
    }

    /// Removes the fault `fault_id`: it ends now. `None` when the instance has no such fault.
    pub fn remove(&self, fault_id: &str, now_ms: u64) -> Option<Arc<Fault>> {
        let table = self.table.get()?;
        let _writing = table
            .writing
            .lock()
            .expect("the fault table is never held across a panic");
        let mut active: Vec<Arc<Fault>> = Vec::clone(&table.active.load());
        let removed = match active.iter().position(|fault| fault.id() == fault_id) {
            Some(index) => {
                let fault = active.remove(index);
                fault.end();
                table
                    .ended
                    .lock()
                    .expect("the fault table is never held across a panic")
                    .push_back(fault.clone());
                Some(fault)
            }
            None => table
                .ended
                .lock()
                .expect("the fault table is never held across a panic")
                .iter()
                .find(|fault| fault.id() == fault_id)
                .cloned(),
        };
        self.retire(table, &mut active, now_ms);
        table.active.store(Arc::new(active));
        removed
    }

    /// Removes every fault, active and ended; says how many were active.
    pub fn clear(&self, now_ms: u64) -> u64 {
        let Some(table) = self.table.get() else {
            return 0;
        };
        let _writing = table
            .writing
            .lock()
            .expect("the fault table is never held across a panic");
        let active = table.active.swap(Arc::default());
        self.in_force.store(false, Ordering::Relaxed);
        table
            .ended
            .lock()
            .expect("the fault table is never held across a panic")
            .clear();
        let mut removed = 0;
        for fault in active.iter() {
            if !fault.is_over(now_ms) {
                removed += 1;
            }
            fault.end();
        }
        removed
    }

    /// Every fault, active ones first, then the ended ones kept, each in the order injected.
    pub fn list(&self) -> Vec<Arc<Fault>> {
        let Some(table) = self.table.get() else {
            return Vec::new();
        };
        let mut faults: Vec<Arc<Fault>> = Vec::clone(&table.active.load());
        faults.extend(
            table
                .ended
                .lock()
                .expect("the fault table is never held across a panic")
                .iter()
                .cloned(),
        );
        faults
    }

    /// Counts an answer the rewriting fault `fault` changed.
    pub fn count_rewritten(&self, fault: &Fault) {
        if let Some(table) = self.table.get() {
            fault.count_injected(table);
        }
    }

    /// Answers changed by faults of each kind so far, for `/metrics`.
    pub fn injected_by_kind(&self) -> Vec<(FaultKind, u64)> {
        let Some(table) = self.table.get() else {
            return Vec::new();
        };
        FaultKind::ALL
            .iter()
            .zip(&table.by_kind)
            .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    /// What the faults in force make of a request with `method` for the tree key `key` at
    /// `now_ms`; `None` when none applies. Counts the matches and the answers changed.
    pub fn plan(&self, method: &Method, key: Option<&str>, now_ms: u64) -> Option<Plan> {
        let table = self.table.get()?;
        let faults = table.active.load();
        let mut plan = Plan::default();
        let mut any_over = false;
        for fault in faults.iter() {
            if fault.is_over(now_ms) {
                any_over = true;
                continue;
            }
            let is_latency = matches!(fault.effect, Effect::Latency { .. });
            if (is_latency && plan.latency.is_some())
                || (!is_latency && plan.decisive.is_some())
                || !fault.matches(method, key)
            {
                continue;
            }
            if !fault.take() {
                any_over = true;
                continue;
            }
            any_over |= fault.over.load(Ordering::Relaxed);
            match &fault.effect {
                Effect::Latency { .. } => {
                    plan.delay = fault.delay();
                    fault.count_injected(table);
                    plan.latency = Some(fault.clone());
                }
                // Under its rate, the request goes on to the next fault.
                Effect::Throttle(limiter) if limiter.check().is_ok() => {}
                _ => {
                    // A rewriting fault counts only the answers it changes (`count_rewritten`).
                    if fault.action() != Action::Rewrite {
                        fault.count_injected(table);
                    }
                    plan.decisive = Some(fault.clone());
                }
            }
        }
        if any_over {
            self.prune(table, now_ms);
        }
        (plan.latency.is_some() || plan.decisive.is_some()).then_some(plan)
    }
}

/// The page a `status` fault answers with: EC2's error page for that status (an empty body for
/// 403 and 405, as real IMDS sends them).
pub fn status_answer(status: StatusCode) -> Response<Body> {
    match status {
        StatusCode::NOT_FOUND => responses::not_found(),
        StatusCode::UNAUTHORIZED => responses::unauthorized(),
        StatusCode::BAD_REQUEST => responses::bad_request(),
        StatusCode::TOO_MANY_REQUESTS => responses::too_many_requests(),
        StatusCode::FORBIDDEN => responses::forbidden(),
        StatusCode::METHOD_NOT_ALLOWED => responses::method_not_allowed("GET, HEAD"),
        other => responses::error_page(other),
    }
}

/// How a `role-renamed` fault maps a request's tree key.
#[derive(Debug, PartialEq, Eq)]
pub enum Renamed {
    /// Answer the request as for this key (the role's own).
    As(String),
    /// Answer 404: the role's own name, which is no longer shown.
    Gone,
    /// Answer as usual (rewriting listings that name the role).
    Same,
}

/// The role-credentials directories whose entries are named after the role.
fn role_entry(key: &str) -> Option<(&str, &str)> {
    let (directory, name) = key.rsplit_once('/')?;
    let under_iam = directory
        .strip_prefix("meta-data/iam/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
    under_iam.then_some((directory, name))
}

/// What a `role-renamed` fault showing `role` as `shown` does to the tree key `key`.
pub fn renamed(key: &str, role: &str, shown: &str) -> Renamed {
    match role_entry(key) {
        Some((directory, name)) if name == shown && shown != role => {
            Renamed::As(format!("{directory}/{role}"))
        }
        Some((_, name)) if name == role && shown != role => Renamed::Gone,
        _ => Renamed::Same,
    }
}

/// The credentials document as the SDKs read it, to be written again with one change.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServedCredentials {
    code: String,
    last_updated: String,
    r#type: String,
    access_key_id: String,
    secret_access_key: String,
    token: String,
}

/// What a rewriting fault needs to know of the request it rewrites the answer of.
#[derive(Debug, Clone, Copy)]
pub struct Rewriting<'a> {
    /// The request's tree key (after any `role-renamed` mapping).
    pub key: Option<&'a str>,
    /// True for the token resource.
    pub is_token: bool,
    /// The instance's role, if any.
    pub role: Option<&'a str>,
    /// The time of the answer.
    pub now: OffsetDateTime,
}

/// True when `key` is a role's credentials document (`meta-data/iam/<directory>/<role>`).
fn is_role_document(key: &str, role: Option<&str>) -> bool {
    role.is_some_and(|role| role_entry(key).is_some_and(|(_, name)| name == role))
}

/// Rewrites `response`, the usual answer to a request, as `fault` says; the response is left
/// as it was when the fault does not concern it (a credentials fault on a listing, a token
/// fault on metadata). Says whether it changed anything.
pub async fn rewrite(
    fault: &Fault,
    request: Rewriting<'_>,
    response: Response<Body>,
) -> (Response<Body>, bool) {
    if !response.status().is_success() {
        return (response, false);
    }
    if let Effect::OmitTokenTtl = fault.effect {
        let mut response = response;
        let changed = request.is_token
            && response
                .headers_mut()
                .remove(HeaderName::from_static(TTL_HEADER))
                .is_some();
        return (response, changed);
    }
    let (parts, body) = response.into_parts();
    // A `Full` body is one chunk, ready at once.
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let rewritten = rewritten_body(fault, request, &body);
    let changed = rewritten.is_some();
    (
        Response::from_parts(parts, Body::new(rewritten.unwrap_or(body))),
        changed,
    )
}

/// The body a credentials or role fault makes of `body`, the usual answer; `None` when the fault
/// does not concern it.
fn rewritten_body(fault: &Fault, request: Rewriting<'_>, body: &Bytes) -> Option<Bytes> {
    let key = request.key?;
    match &fault.effect {
        Effect::CredentialsCode { code, message } if is_role_document(key, request.role) => {
            let role = request.role.unwrap_or_default();
            let message = message
                .clone()
                .unwrap_or_else(|| RenderedCredentials::unavailable_message(role));
            let now = request
                .now
                .replace_nanosecond(0)
                .expect("zero nanoseconds is valid");
            Some(Bytes::from(wire::to_aws_json(
                &wire::RoleCredentialsError {
                    code,
                    message: &message,
                    last_updated: &aws_timestamp(now),
                },
            )))
        }
        Effect::CredentialsExpiry { expiration } if is_role_document(key, request.role) => {
            let served = serde_json::from_slice::<ServedCredentials>(body).ok()?;
            if served.code != "Success" || parse_aws_timestamp(&served.last_updated).is_err() {
                return None;
            }
            Some(Bytes::from(wire::to_aws_json(&wire::RoleCredentials {
                code: &served.code,
                last_updated: &served.last_updated,
                kind: &served.r#type,
                access_key_id: &served.access_key_id,
                secret_access_key: &served.secret_access_key,
                token: &served.token,
                expiration: &aws_timestamp(*expiration),
            })))
        }
        Effect::RoleRenamed { role_name } => {
            let role = request.role?;
            let is_listing = key
                .strip_prefix("meta-data/iam/")
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
            if !is_listing {
                // The renamed role's document, answered for its own key: unchanged.
                return is_role_document(key, Some(role)).then(|| body.clone());
            }
            let listing = std::str::from_utf8(body).ok()?;
            if !listing.split('\n').any(|line| line == role) {
                return None;
            }
            let renamed: Vec<&str> = listing
                .split('\n')
                .map(|line| {
                    if line == role {
                        role_name.as_str()
                    } else {
                        line
                    }
                })
                .collect();
            Some(Bytes::from(renamed.join("\n")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
    }

    fn spec(json: &str) -> InjectFault {
        serde_json::from_str(json).unwrap()
    }

    #[track_caller]
    fn check_refused(json: &str, expect: &str) {
        let error = Fault::new(spec(json), "fault-1".to_owned(), now()).unwrap_err();
        assert!(error.contains(expect), "{json}: {error}");
    }

    #[test]
    fn fields_of_other_kinds_and_bad_values_are_refused_naming_the_field() {
        check_refused(r#"{"Kind": "status"}"#, "Status: give");
        check_refused(r#"{"Kind": "status", "Status": 200}"#, "Status: 200 is not");
        check_refused(
            r#"{"Kind": "reset", "Status": 500}"#,
            "Status: only for Kind status",
        );
        check_refused(r#"{"Kind": "latency"}"#, "LatencyMs");
        check_refused(
            r#"{"Kind": "latency", "LatencyMs": 10, "LatencyMaxMs": 5}"#,
            "LatencyMaxMs",
        );
        check_refused(r#"{"Kind": "latency", "LatencyMs": 600001}"#, "at most");
        check_refused(
            r#"{"Kind": "close", "Path": "latest/api/token"}"#,
            "names the version",
        );
        check_refused(r#"{"Kind": "close", "Path": "meta-data/[a"}"#, "not a glob");
        check_refused(r#"{"Kind": "close", "Count": 0}"#, "Count");
        check_refused(r#"{"Kind": "close", "Duration": "5x"}"#, "Duration");
        check_refused(r#"{"Kind": "close", "FaultId": "a b"}"#, "FaultId");
        check_refused(r#"{"Kind": "credentials-code", "Code": "Success"}"#, "Code");
        check_refused(r#"{"Kind": "credentials-expiry"}"#, "ExpiresIn");
        check_refused(r#"{"Kind": "role-renamed", "RoleName": "a/b"}"#, "RoleName");
        check_refused(
            r#"{"Kind": "throttle", "RequestsPerSecond": 0}"#,
            "RequestsPerSecond",
        );
    }

    #[track_caller]
    fn check_match(pattern: &str, method: Option<&str>, key: Option<&str>, expect: bool) {
        let mut json = format!(r#"{{"Kind": "close", "Path": {pattern:?}"#);
        if let Some(method) = method {
            json.push_str(&format!(r#", "Method": {method:?}"#));
        }
        json.push('}');
        let fault = Fault::new(spec(&json), "f".to_owned(), now()).unwrap();
        assert_eq!(
            fault.matches(&Method::GET, key),
            expect,
            "{pattern} {key:?}"
        );
    }

    #[test]
    fn paths_match_as_globs_below_the_version() {
        let role = Some("meta-data/iam/security-credentials/app");
        let listing = Some("meta-data/iam/security-credentials");
        check_match("meta-data/iam/security-credentials/*", None, role, true);
        check_match("meta-data/iam/security-credentials/*", None, listing, false);
        check_match("/meta-data/iam/security-credentials/", None, listing, true);
        check_match("meta-data/iam/security-credentials*", None, listing, true);
        check_match("meta-data/*", None, role, false);
        check_match("meta-data/**", None, role, true);
        check_match("api/token", None, Some("api/token"), true);
        check_match("", None, Some(""), true);
        check_match("meta-data/**", None, None, false);
        check_match("meta-data/**", Some("PUT"), role, false);
        check_match("meta-data/**", Some("GET"), role, true);
    }

    #[test]
    fn a_count_ends_the_fault_after_that_many_matching_requests() {
        let faults = InstanceFaults::default();
        assert!(!faults.in_force());
        faults
            .inject(
                spec(r#"{"Kind": "status", "Status": 500, "Count": 2}"#),
                now(),
            )
            .unwrap();
        assert!(faults.in_force());
        let now_ms = unix_ms(now());
        for _ in 0..2 {
            let plan = faults
                .plan(&Method::GET, Some("meta-data"), now_ms)
                .unwrap();
            assert_eq!(
                plan.action(),
                Some(Action::Status(StatusCode::INTERNAL_SERVER_ERROR))
            );
        }
        assert!(faults
            .plan(&Method::GET, Some("meta-data"), now_ms)
            .is_none());
        assert!(!faults.in_force(), "a used-up fault leaves the table");
        let listed = faults.list();
        assert_eq!(listed.len(), 1);
        let view = listed[0].view("i-1", now_ms);
        assert_eq!(
            (view.state, view.matched, view.injected),
            (FaultState::Ended, 2, 2)
        );
        assert_eq!(faults.injected_by_kind(), vec![(FaultKind::Status, 2)]);
    }

    #[test]
    fn a_duration_ends_the_fault() {
        let faults = InstanceFaults::default();
        faults
            .inject(spec(r#"{"Kind": "close", "Duration": "2s"}"#), now())
            .unwrap();
        let now_ms = unix_ms(now());
        assert!(faults.plan(&Method::GET, None, now_ms + 1_999).is_some());
        assert!(faults.plan(&Method::GET, None, now_ms + 2_000).is_none());
        assert!(!faults.in_force());
    }

    #[test]
    fn latency_combines_with_one_deciding_fault_and_throttle_passes_requests_under_its_rate() {
        let faults = InstanceFaults::default();
        for json in [
            r#"{"Kind": "latency", "LatencyMs": 250}"#,
            r#"{"Kind": "latency", "LatencyMs": 999}"#,
            r#"{"Kind": "throttle", "RequestsPerSecond": 1}"#,
            r#"{"Kind": "status", "Status": 503, "Path": "meta-data/**"}"#,
            r#"{"Kind": "reset"}"#,
        ] {
            faults.inject(spec(json), now()).unwrap();
        }
        let now_ms = unix_ms(now());
        let first = faults
            .plan(&Method::GET, Some("user-data"), now_ms)
            .unwrap();
        assert_eq!(first.delay, Duration::from_millis(250));
        assert_eq!(
            first.action(),
            Some(Action::Reset),
            "throttle let the first one through"
        );
        let second = faults
            .plan(&Method::GET, Some("user-data"), now_ms)
            .unwrap();
        assert_eq!(second.action(), Some(Action::Throttle));
        let ids: Vec<(String, u64, u64)> = faults
            .list()
            .iter()
            .map(|fault| {
                let view = fault.view("i", now_ms);
                (view.fault_id, view.matched, view.injected)
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("fault-1".to_owned(), 2, 2),
                ("fault-2".to_owned(), 0, 0),
                ("fault-3".to_owned(), 2, 1),
                ("fault-4".to_owned(), 0, 0),
                ("fault-5".to_owned(), 1, 1),
            ]
        );
    }

    #[test]
    fn ids_are_unique_among_faults_in_force_and_removal_ends_them() {
        let faults = InstanceFaults::default();
        let named = r#"{"Kind": "no-answer", "FaultId": "outage"}"#;
        faults.inject(spec(named), now()).unwrap();
        assert_eq!(
            faults.inject(spec(named), now()).unwrap_err(),
            InjectError::Taken("outage".to_owned())
        );
        let now_ms = unix_ms(now());
        let removed = faults.remove("outage", now_ms).unwrap();
        assert_eq!(removed.view("i", now_ms).state, FaultState::Ended);
        assert!(!faults.in_force());
        assert!(faults.remove("other", now_ms).is_none());
        faults.inject(spec(named), now()).unwrap();
        assert_eq!(
            faults.list().len(),
            1,
            "the ended one of that id is replaced"
        );
        assert_eq!(faults.clear(now_ms), 1);
        assert!(faults.list().is_empty() && !faults.in_force());
    }

    #[track_caller]
    fn check_renamed(key: &str, expect: Renamed) {
        assert_eq!(renamed(key, "app", "other"), expect, "{key}");
    }

    #[test]
    fn a_renamed_role_answers_under_its_new_name_only() {
        check_renamed(
            "meta-data/iam/security-credentials/other",
            Renamed::As("meta-data/iam/security-credentials/app".to_owned()),
        );
        check_renamed("meta-data/iam/security-credentials/app", Renamed::Gone);
        check_renamed("meta-data/iam/security-credentials", Renamed::Same);
        check_renamed("meta-data/iam/info", Renamed::Same);
        check_renamed("meta-data/other", Renamed::Same);
        assert_eq!(
            renamed("meta-data/iam/security-credentials/app", "app", "app"),
            Renamed::Same
        );
    }
}
