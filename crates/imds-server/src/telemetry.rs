//! Request telemetry: counters by route template, status and IMDS version, and the server-wide
//! counts (throttled requests, lockdown refusals, open connections) that `/metrics` reports.
//!
//! Routes are a small fixed set of templates, never raw paths, so the number of series is
//! bounded whatever guests ask for. Every counter is a relaxed atomic in a fixed array: the
//! request path takes no lock and allocates nothing to count.

use std::sync::{
    atomic::{AtomicI64, AtomicU64, Ordering},
    Arc,
};

use http::StatusCode;
use imds_core::path::{self, Target};
use imds_credentials::Delivery;

/// The route template a guest request matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `PUT /latest/api/token` (and other methods on it).
    Token,
    /// `GET /`: the API versions.
    Versions,
    /// A listing below `meta-data/` (or a version root).
    MetaDataListing,
    /// A value below `meta-data/`.
    MetaDataLeaf,
    /// `iam/security-credentials/...` or `identity-credentials/...`.
    Credentials,
    /// `iam/security-credentials-extended/...`.
    CredentialsExtended,
    /// `dynamic/instance-identity/...`.
    Identity,
    /// `user-data`.
    UserData,
    /// Anything else below `dynamic/`.
    Dynamic,
    /// A path with no answer.
    NotFound,
    /// Refused before the path was looked at (endpoint disabled, lockdown, throttling, a bad
    /// request target, an unknown caller).
    Refused,
    /// Answered (or not answered) by an injected fault instead of the metadata service.
    Faulted,
}

impl Route {
    /// Every route, in label order.
    pub const ALL: [Route; 12] = [
        Route::Token,
        Route::Versions,
        Route::MetaDataListing,
        Route::MetaDataLeaf,
        Route::Credentials,
        Route::CredentialsExtended,
        Route::Identity,
        Route::UserData,
        Route::Dynamic,
        Route::NotFound,
        Route::Refused,
        Route::Faulted,
    ];

    /// The `route` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Token => "token",
            Route::Versions => "versions",
            Route::MetaDataListing => "meta-data-listing",
            Route::MetaDataLeaf => "meta-data-leaf",
            Route::Credentials => "credentials",
            Route::CredentialsExtended => "credentials-extended",
            Route::Identity => "identity",
            Route::UserData => "user-data",
            Route::Dynamic => "dynamic",
            Route::NotFound => "not-found",
            Route::Refused => "refused",
            Route::Faulted => "faulted",
        }
    }

    /// The route of a tree key that has an answer; `listing` when the answer is a listing.
    pub fn of_key(key: &str, listing: bool) -> Route {
        if is_under(key, EXTENDED_CREDENTIALS_KEY) {
            Route::CredentialsExtended
        } else if is_credentials_key(key) {
            Route::Credentials
        } else if key.starts_with("dynamic/instance-identity") {
            Route::Identity
        } else if key.starts_with("dynamic") {
            Route::Dynamic
        } else if key == "user-data" {
            Route::UserData
        } else if listing {
            Route::MetaDataListing
        } else {
            Route::MetaDataLeaf
        }
    }
}

/// The tree key of the role listing, below which each role's credentials are.
pub const CREDENTIALS_KEY: &str = "meta-data/iam/security-credentials";
/// The tree key of the extended role listing (credentials with `AccountId`).
pub const EXTENDED_CREDENTIALS_KEY: &str = "meta-data/iam/security-credentials-extended";
/// The tree key of the instance's own identity credentials.
pub const IDENTITY_CREDENTIALS_KEY: &str = "meta-data/identity-credentials";

/// True when `key` is `prefix` or below it.
fn is_under(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// True for the tree keys that carry credentials or name the roles that have them:
/// `meta-data/iam/security-credentials[/ROLE]`, `meta-data/iam/security-credentials-extended[/ROLE]`
/// and `meta-data/identity-credentials[/...]`.
pub fn is_credentials_key(key: &str) -> bool {
    is_under(key, CREDENTIALS_KEY)
        || is_under(key, EXTENDED_CREDENTIALS_KEY)
        || is_under(key, IDENTITY_CREDENTIALS_KEY)
}

/// True when `target` names credentials (see `is_credentials_key`).
pub fn is_credentials_target(target: &Target<'_>) -> bool {
    matches!(target, Target::Node { key, .. } if key != path::TOKEN_KEY && is_credentials_key(key))
}

/// IMDSv1 (no token) or IMDSv2 (a token request or a request carrying a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// No token.
    V1,
    /// A token request, or a request with a token.
    V2,
}

/// Statuses counted by name; anything else is counted as `other`.
const STATUSES: [u16; 10] = [200, 400, 401, 403, 404, 405, 429, 500, 503, 0];
const STATUS_COUNT: usize = STATUSES.len();
const ROUTE_COUNT: usize = Route::ALL.len();

fn status_index(status: Option<StatusCode>) -> usize {
    let code = status.map_or(0, |status| status.as_u16());
    STATUSES
        .iter()
        .position(|known| *known == code)
        .unwrap_or(STATUS_COUNT - 1)
}

/// Lockdown refusals, by what was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The whole endpoint (the user may not reach it at all).
    Endpoint,
    /// Credentials only.
    Credentials,
}

/// Server-wide request counters.
#[derive(Debug)]
pub struct RequestCounters {
    by_route: [[[AtomicU64; 2]; STATUS_COUNT]; ROUTE_COUNT],
    lockdown_refusals: [AtomicU64; 2],
    /// Role credentials served, by delivery (IMDSv1, IMDSv2).
    deliveries: [AtomicU64; 2],
    /// Guest connections open now.
    pub active_connections: AtomicI64,
    /// The config generation served: 1 for the one the server started with, one more for
    /// each reload that applied a file.
    pub config_generation: AtomicU64,
    /// Reloads that applied nothing: the file did not read, parse or check.
    pub config_reload_failures: AtomicU64,
}

impl Default for RequestCounters {
    fn default() -> Self {
        RequestCounters {
            by_route: std::array::from_fn(|_| {
                std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            }),
            lockdown_refusals: std::array::from_fn(|_| AtomicU64::new(0)),
            deliveries: std::array::from_fn(|_| AtomicU64::new(0)),
            active_connections: AtomicI64::new(0),
            config_generation: AtomicU64::new(1),
            config_reload_failures: AtomicU64::new(0),
        }
    }
}

/// One `(route, status, version, count)` row of `RequestCounters::requests`.
pub type RequestRow = (&'static str, String, &'static str, u64);

impl RequestCounters {
    /// Counts one answered request (`status` `None`: dropped without an answer).
    pub fn count(&self, route: Route, status: Option<StatusCode>, version: Version) {
        self.by_route[route as usize][status_index(status)][version as usize]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered with `status` on any route, either version (429: those throttled).
    pub fn answered_with(&self, status: StatusCode) -> u64 {
        let index = status_index(Some(status));
        self.by_route
            .iter()
            .flat_map(|by_status| &by_status[index])
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts a lockdown refusal.
    pub fn count_refusal(&self, refusal: Refusal) {
        self.lockdown_refusals[refusal as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts role credentials served in `delivery`.
    pub fn count_delivery(&self, delivery: Delivery) {
        self.deliveries[delivery as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Role credentials served in `delivery`.
    pub fn deliveries(&self, delivery: Delivery) -> u64 {
        self.deliveries[delivery as usize].load(Ordering::Relaxed)
    }

    /// Lockdown refusals of the kind given.
    pub fn refusals(&self, refusal: Refusal) -> u64 {
        self.lockdown_refusals[refusal as usize].load(Ordering::Relaxed)
    }

    /// Every non-zero count as `(route, status, version, count)`.
    pub fn requests(&self) -> Vec<RequestRow> {
        let mut rows = Vec::new();
        for route in Route::ALL {
            for (status_idx, status) in STATUSES.iter().enumerate() {
                for (version_idx, version) in ["v1", "v2"].into_iter().enumerate() {
                    let count = self.by_route[route as usize][status_idx][version_idx]
                        .load(Ordering::Relaxed);
                    if count > 0 {
                        let status = match status {
                            0 => "other".to_owned(),
                            code => code.to_string(),
                        };
                        rows.push((route.as_str(), status, version, count));
                    }
                }
            }
        }
        rows
    }
}

/// The refusals counted per instance, by status.
const INSTANCE_REFUSALS: [u16; 3] = [401, 403, 429];

/// One instance's requests by route and version, and its refusals (401, 403, 429) by version:
/// relaxed atomics in fixed arrays (240 bytes an instance), bumped by the request path without
/// a lock or an allocation. The instance page's live charts read them.
#[derive(Debug)]
pub struct InstanceRequests {
    by_route: [[AtomicU64; 2]; ROUTE_COUNT],
    refusals: [[AtomicU64; 2]; INSTANCE_REFUSALS.len()],
}

impl Default for InstanceRequests {
    fn default() -> Self {
        InstanceRequests {
            by_route: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            refusals: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

/// An instance's counts, as `InstanceRequests::read` answers them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InstanceCounts {
    /// `(route, version, count)` of every non-zero route counter.
    pub routes: Vec<(&'static str, &'static str, u64)>,
    /// `(status, version, count)` of every non-zero refusal counter.
    pub refusals: Vec<(u16, &'static str, u64)>,
}

const VERSIONS: [&str; 2] = ["v1", "v2"];

impl InstanceRequests {
    /// Counts one request of the instance (`status` `None`: dropped without an answer).
    pub fn count(&self, route: Route, status: Option<StatusCode>, version: Version) {
        self.by_route[route as usize][version as usize].fetch_add(1, Ordering::Relaxed);
        let refusal = match status.map(|status| status.as_u16()) {
            Some(401) => 0,
            Some(403) => 1,
            Some(429) => 2,
            _ => return,
        };
        self.refusals[refusal][version as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every non-zero count.
    pub fn read(&self) -> InstanceCounts {
        let mut counts = InstanceCounts::default();
        for route in Route::ALL {
            for (index, version) in VERSIONS.into_iter().enumerate() {
                let count = self.by_route[route as usize][index].load(Ordering::Relaxed);
                if count > 0 {
                    counts.routes.push((route.as_str(), version, count));
                }
            }
        }
        for (row, status) in INSTANCE_REFUSALS.into_iter().enumerate() {
            for (index, version) in VERSIONS.into_iter().enumerate() {
                let count = self.refusals[row][index].load(Ordering::Relaxed);
                if count > 0 {
                    counts.refusals.push((status, version, count));
                }
            }
        }
        counts
    }
}

/// Counts an open connection for as long as it lives.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<RequestCounters>);

impl ConnectionGuard {
    /// Counts one more open connection in `counters` until dropped.
    pub fn new(counters: Arc<RequestCounters>) -> ConnectionGuard {
        counters.active_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(counters)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(key: &str, listing: bool, expect: Route) {
        assert_eq!(Route::of_key(key, listing), expect, "{key}");
    }

    #[test]
    fn routes_of_keys() {
        check("meta-data/instance-id", false, Route::MetaDataLeaf);
        check("meta-data", true, Route::MetaDataListing);
        check("", true, Route::MetaDataListing);
        check(
            "meta-data/iam/security-credentials",
            true,
            Route::Credentials,
        );
        check(
            "meta-data/iam/security-credentials/app",
            false,
            Route::Credentials,
        );
        check("meta-data/iam/info", false, Route::MetaDataLeaf);
        check(
            "meta-data/iam/security-credentials-extended",
            true,
            Route::CredentialsExtended,
        );
        check(
            "meta-data/iam/security-credentials-extended/app",
            false,
            Route::CredentialsExtended,
        );
        assert!(is_credentials_key(
            "meta-data/iam/security-credentials-extended/app"
        ));
        assert!(!is_credentials_key(
            "meta-data/iam/security-credentials-extendedX"
        ));
        check(
            "meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
            false,
            Route::Credentials,
        );
        check("dynamic/instance-identity/document", false, Route::Identity);
        check("dynamic", true, Route::Dynamic);
        check("user-data", false, Route::UserData);
        assert!(!is_credentials_key("meta-data/iam/security-credentialsX"));
    }

    #[test]
    fn instance_counts_by_route_version_and_refusal() {
        let counters = InstanceRequests::default();
        counters.count(Route::MetaDataLeaf, Some(StatusCode::OK), Version::V2);
        counters.count(Route::MetaDataLeaf, Some(StatusCode::OK), Version::V1);
        counters.count(Route::MetaDataLeaf, Some(StatusCode::OK), Version::V1);
        counters.count(Route::Refused, Some(StatusCode::UNAUTHORIZED), Version::V1);
        counters.count(
            Route::Refused,
            Some(StatusCode::TOO_MANY_REQUESTS),
            Version::V2,
        );
        counters.count(Route::Faulted, None, Version::V2);
        assert_eq!(
            counters.read(),
            InstanceCounts {
                routes: vec![
                    ("meta-data-leaf", "v1", 2),
                    ("meta-data-leaf", "v2", 1),
                    ("refused", "v1", 1),
                    ("refused", "v2", 1),
                    ("faulted", "v2", 1),
                ],
                refusals: vec![(401, "v1", 1), (429, "v2", 1)],
            }
        );
    }

    #[test]
    fn counts_by_route_status_and_version() {
        let counters = RequestCounters::default();
        counters.count(Route::MetaDataLeaf, Some(StatusCode::OK), Version::V2);
        counters.count(Route::MetaDataLeaf, Some(StatusCode::OK), Version::V2);
        counters.count(Route::Token, Some(StatusCode::IM_A_TEAPOT), Version::V2);
        counters.count(Route::Refused, None, Version::V1);
        assert_eq!(
            counters.requests(),
            vec![
                ("token", "other".to_owned(), "v2", 1),
                ("meta-data-leaf", "200".to_owned(), "v2", 2),
                ("refused", "other".to_owned(), "v1", 1),
            ]
        );
        counters.count(
            Route::Refused,
            Some(StatusCode::TOO_MANY_REQUESTS),
            Version::V1,
        );
        counters.count(
            Route::Refused,
            Some(StatusCode::TOO_MANY_REQUESTS),
            Version::V2,
        );
        assert_eq!(counters.answered_with(StatusCode::TOO_MANY_REQUESTS), 2);
        assert_eq!(counters.answered_with(StatusCode::OK), 2);
    }
}
