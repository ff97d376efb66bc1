//! Shared server state: the token authority, the instances being served, and the policies and
//! counters every request consults.

use std::sync::Arc;

use arc_swap::ArcSwap;
use imds_core::token::TokenAuthority;

use crate::{
    audit::AuditLog, lockdown::LockdownSwitch, registry::Registry, telemetry::RequestCounters,
    throttle::Throttle,
};

/// Everything request handling reads.
#[derive(Debug)]
pub struct AppState {
    /// Issues and checks session tokens.
    pub tokens: TokenAuthority,
    /// The served instances and who is answered as which.
    pub registry: Arc<Registry>,
    /// Which users of this host may read what, and the caller lookups that tell (none without
    /// a policy); a config reload may replace it.
    pub lockdown: LockdownSwitch,
    /// Per-instance rate limits; a config reload replaces them.
    pub throttle: ArcSwap<Throttle>,
    /// Where credential hand-outs and refusals are recorded.
    pub audit: AuditLog,
    /// Requests by route, status and version; throttled requests, refusals, connections.
    pub requests: Arc<RequestCounters>,
}
