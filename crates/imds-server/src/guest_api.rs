//! The guest API: what an instance sees at `http://169.254.169.254/`.
//!
//! # Routes
//! - `PUT /latest/api/token`: issue a session token (TTL header 1..=21600 s).
//! - `OPTIONS /latest/api/token`: 200 with `Allow: OPTIONS, PUT`; other methods 405.
//! - `GET|HEAD /`: the API versions.
//! - `GET|HEAD /{latest|VERSION}/...`: `meta-data/...`, `dynamic/...`, `user-data` (`GET` of
//!   user-data honours one byte range).
//! - `PUT` on any other path: 403; any other method on them: 405 with `Allow: GET, HEAD`.
//!
//! `respond` is a pure function of the request, the instance's prepared snapshot, the token
//! authority and `now`; it decides in the order the spec's "request-processing order" gives:
//! endpoint disabled (403), rate limit (429), token issuance, method (403 or 405), lockdown of
//! credentials (403), forwarded requests (403), token checks (401), then lookup (200 or 404).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use imds_core::{
    metadata_tree::ContentKind,
    options::{HopLimit, HttpTokens},
    path::{self, Target, API_VERSIONS},
    token::{TokenAuthority, TokenError, TokenTtl, TOKEN_HEADER, TTL_HEADER},
};
use imds_credentials::Delivery;

use crate::{
    instance::{
        slot::{Counters, InstanceSlot},
        snapshot::Snapshot,
    },
    responses::{self, Body, Kind},
    telemetry::{
        is_credentials_key, is_credentials_target, Route, Version, IDENTITY_CREDENTIALS_KEY,
    },
    throttle::Throttle,
};

const TTL_HEADER_NAME: HeaderName = HeaderName::from_static(TTL_HEADER);
const TOKEN_HEADER_NAME: HeaderName = HeaderName::from_static(TOKEN_HEADER);
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The parts of a request the guest API looks at.
#[derive(Debug)]
pub struct GuestRequest<'a> {
    /// The HTTP method.
    pub method: &'a Method,
    /// The path, without the query string.
    pub path: &'a str,
    /// True when the request target is not a path (authority-form, as only CONNECT may send).
    pub target_is_authority: bool,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// True when the request arrived over IPv6 (the `fd00:ec2::254` endpoint).
    pub over_ipv6: bool,
    /// False when lockdown forbids this caller credentials: those paths answer 403.
    pub credentials_allowed: bool,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Respond(Response<Body>),
    /// Send this token response, with the IP TTL / hop limit set to `hop_limit` first.
    Token {
        /// The 200 carrying the token.
        response: Response<Body>,
        /// `HttpPutResponseHopLimit` of the instance.
        hop_limit: HopLimit,
    },
    /// Do not answer: close the connection (the IPv6 endpoint of an instance without
    /// `HttpProtocolIpv6`, which on EC2 is simply not there).
    Drop,
}

/// What became of a request, for telemetry and the audit log.
#[derive(Debug)]
pub struct Reply {
    /// What to send.
    pub outcome: Outcome,
    /// The route template it matched.
    pub route: Route,
    /// IMDSv1 or IMDSv2.
    pub version: Version,
    /// What the audit log must record, if anything.
    pub note: Option<Note>,
}

impl Reply {
    /// The status sent; `None` when the connection is dropped without an answer.
    pub fn status(&self) -> Option<http::StatusCode> {
        match &self.outcome {
            Outcome::Respond(response) | Outcome::Token { response, .. } => Some(response.status()),
            Outcome::Drop => None,
        }
    }

    /// Counts the reply in `slot`'s per-instance counters.
    pub fn count_in(&self, slot: &InstanceSlot) {
        slot.counters
            .requests
            .count(self.route, self.status(), self.version);
    }
}

/// An event of a request that the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Credentials were served.
    CredentialsIssued {
        /// The instance.
        instance_id: Arc<str>,
        /// The role (`ec2-instance` for identity credentials).
        role: Arc<str>,
        /// Their `AccessKeyId`.
        access_key_id: Arc<str>,
        /// Which of the role's sets (`None` for identity credentials, of which there is one).
        delivery: Option<Delivery>,
        /// The credentials path asked, below `meta-data/` (the extended one or not).
        path: &'static str,
    },
    /// A token request was refused.
    TokenRefused {
        /// The instance.
        instance_id: Arc<str>,
        /// Why: `forwarded` (X-Forwarded-For), `invalid-ttl`, `versioned-path` (a PUT on the token
        /// path of a dated version), `other-path` (a PUT on any other path).
        reason: &'static str,
    },
    /// Lockdown refused credentials to a caller who may read other metadata.
    CredentialsRefused {
        /// The instance.
        instance_id: Arc<str>,
    },
}

/// Answers one guest request for the instance `slot` at `now_ms` (Unix milliseconds), within
/// the instance's rate limit under `throttle`.
pub fn respond(
    request: &GuestRequest<'_>,
    slot: &InstanceSlot,
    tokens: &TokenAuthority,
    throttle: &Throttle,
    now_ms: u64,
) -> Reply {
    slot.with_snapshot(now_ms, |snapshot| {
        respond_with(request, snapshot, slot, tokens, throttle, now_ms)
    })
}

fn refused(outcome: Outcome, version: Version) -> Reply {
    Reply {
        outcome,
        route: Route::Refused,
        version,
        note: None,
    }
}

fn respond_with(
    request: &GuestRequest<'_>,
    snapshot: &Snapshot,
    slot: &InstanceSlot,
    tokens: &TokenAuthority,
    throttle: &Throttle,
    now_ms: u64,
) -> Reply {
    let options = snapshot.options;
    let token_header = request.headers.get(TOKEN_HEADER_NAME);
    let version = if token_header.is_some() {
        Version::V2
    } else {
        Version::V1
    };
    if request.over_ipv6 && !options.http_protocol_ipv6.is_enabled() {
        return refused(Outcome::Drop, version);
    }
    if !options.http_endpoint.is_enabled() {
        return refused(Outcome::Respond(responses::forbidden()), version);
    }
    // "We throttle queries to the IMDS on a per-instance basis" (EC2 User Guide, "Query
    // throttling"); real IMDS has answered 429 (see docs/behaviour.md).
    if !slot.admit(throttle) {
        return refused(Outcome::Respond(responses::too_many_requests()), version);
    }
    if request.target_is_authority {
        return refused(Outcome::Respond(responses::bad_request()), version);
    }
    let target = path::parse(request.path);
    let forwarded = request.headers.contains_key(X_FORWARDED_FOR);
    let token_refused = |reason| {
        Some(Note::TokenRefused {
            instance_id: snapshot.instance_id.clone(),
            reason,
        })
    };

    // The token resource is `/latest/api/token` exactly, give or take leading slashes, inner
    // double slashes and percent-encoding: with a trailing slash it is another path, to which real
    // IMDS answers a PUT with 403 (aws-beam/aws_credentials#47).
    if target.is_token() && !path::names_directory(request.path) {
        let reply = |outcome, note| Reply {
            outcome,
            route: Route::Token,
            version: Version::V2,
            note,
        };
        return match *request.method {
            Method::PUT if forwarded => reply(
                Outcome::Respond(responses::forbidden()),
                token_refused("forwarded"),
            ),
            Method::PUT => match issue_token(
                request.headers,
                &snapshot.instance_id,
                options.http_put_response_hop_limit,
                slot,
                tokens,
                now_ms,
            ) {
                Some(outcome) => reply(outcome, None),
                None => reply(
                    Outcome::Respond(responses::bad_request()),
                    token_refused("invalid-ttl"),
                ),
            },
            // The methods EC2's 405 names in `Allow` are the methods the resource has (RFC 9110
            // §10.2.1), so OPTIONS answers, with the same `Allow` (RFC 9110 §9.3.7).
            Method::OPTIONS => reply(Outcome::Respond(responses::options("OPTIONS, PUT")), None),
            _ => reply(
                Outcome::Respond(responses::method_not_allowed("OPTIONS, PUT")),
                None,
            ),
        };
    }
    // Refusals name their route with an extra lookup; served answers take it from the lookup
    // that finds them, so the common path looks up once.
    let reply = |response, note| Reply {
        outcome: Outcome::Respond(response),
        route: route_of(&target, snapshot),
        version,
        note,
    };
    match *request.method {
        Method::GET | Method::HEAD => {}
        // "Issuing PUT requests to any version-specific path ... will result in the metadata
        // service returning 403 Forbidden errors" (EC2 User Guide, "Retrieve instance metadata"),
        // and real IMDS answers 403 to `PUT /latest/api/token/` too (aws-beam/aws_credentials#47):
        // a PUT anywhere but the token resource is refused with 403.
        Method::PUT => {
            let reason = match &target {
                Target::Node { latest: false, key } if key == path::TOKEN_KEY => "versioned-path",
                _ => "other-path",
            };
            return Reply {
                route: Route::Token,
                ..reply(responses::forbidden(), token_refused(reason))
            };
        }
        _ => return reply(responses::method_not_allowed("GET, HEAD"), None),
    }
    if !request.credentials_allowed && is_credentials_target(&target) {
        let note = Note::CredentialsRefused {
            instance_id: snapshot.instance_id.clone(),
        };
        return reply(responses::forbidden(), Some(note));
    }

    let remaining_ttl = match token_header {
        Some(token) => {
            // A forwarded request carrying a token is refused (kube2iam#279: AWS answers 403).
            if forwarded {
                return reply(responses::forbidden(), None);
            }
            match tokens.validate(token.as_bytes(), &snapshot.instance_id, now_ms) {
                Ok(remaining) => Some(remaining),
                // Expired, malformed, tampered with or another instance's: the same 401.
                Err(_) => return reply(responses::unauthorized(), None),
            }
        }
        None if options.http_tokens == HttpTokens::Required => {
            Counters::bump(&slot.counters.no_token_rejected);
            return reply(responses::unauthorized(), None);
        }
        None => None,
    };

    let mut note = None;
    let mut route = Route::NotFound;
    let mut response = match &target {
        Target::Versions => {
            route = Route::Versions;
            versions_listing()
        }
        Target::Node { key, .. } => match snapshot.answers.get_dated(key.as_ref()) {
            Some((answer, mut modified)) => {
                let kind = match answer.kind {
                    ContentKind::Text | ContentKind::Listing => Kind::Text,
                    ContentKind::Binary => Kind::Binary,
                };
                route = Route::of_key(key, answer.kind == ContentKind::Listing);
                let mut body = &answer.body;
                let v1_body;
                if matches!(route, Route::Credentials | Route::CredentialsExtended) {
                    let path = if key.starts_with(IDENTITY_CREDENTIALS_KEY) {
                        "identity-credentials/ec2/security-credentials"
                    } else if route == Route::CredentialsExtended {
                        "iam/security-credentials-extended"
                    } else {
                        "iam/security-credentials"
                    };
                    let issued = |(role, access_key_id), delivery| Note::CredentialsIssued {
                        instance_id: snapshot.instance_id.clone(),
                        role,
                        access_key_id,
                        delivery,
                        path,
                    };
                    // A tokenless caller gets the role's IMDSv1 set (`v1_credentials_at` is
                    // `None` with tokens required: such a caller was refused above).
                    let v1 = match remaining_ttl {
                        None => snapshot.v1_credentials_at(key),
                        Some(_) => None,
                    };
                    note = match v1 {
                        Some((v1, v1_answer, v1_note)) => {
                            v1_body = v1_answer;
                            body = &v1_body;
                            modified = v1.modified;
                            v1_note.map(|served| issued(served, Some(Delivery::V1)))
                        }
                        None => snapshot.credentials_at(key).map(|served| {
                            // Identity credentials are one set, whoever asks.
                            let role_set = !key.starts_with(IDENTITY_CREDENTIALS_KEY);
                            issued(served, role_set.then_some(Delivery::V2))
                        }),
                    };
                }
                let last_modified = snapshot.last_modified(modified);
                match kind {
                    Kind::Binary if *request.method == Method::GET => {
                        responses::user_data(body.clone(), request.headers, last_modified)
                    }
                    _ => responses::data(kind, body.clone(), last_modified),
                }
            }
            None => {
                // A 404 on a credentials path is counted under its template: how many clients
                // asked the extended path and fell back, or named a role the instance lacks.
                if is_credentials_key(key) {
                    route = Route::of_key(key, false);
                }
                responses::not_found()
            }
        },
        Target::Unknown => responses::not_found(),
    };
    match remaining_ttl {
        // Authenticated answers carry the token's remaining TTL, as real IMDS's do.
        Some(remaining) => {
            response
                .headers_mut()
                .insert(TTL_HEADER_NAME, seconds_header(remaining));
        }
        None if response.status().is_success() => Counters::bump(&slot.counters.no_token),
        None => {}
    }
    Reply {
        outcome: Outcome::Respond(response),
        route,
        version,
        note,
    }
}

/// The route template of a (non-token) target.
fn route_of(target: &Target<'_>, snapshot: &Snapshot) -> Route {
    match target {
        Target::Versions => Route::Versions,
        Target::Node { key, .. } => match snapshot.answers.get(key) {
            Some(answer) => Route::of_key(key, answer.kind == ContentKind::Listing),
            // Credentials paths are refused by lockdown whether or not they exist.
            None if is_credentials_key(key) => Route::of_key(key, false),
            None => Route::NotFound,
        },
        Target::Unknown => Route::NotFound,
    }
}

fn issue_token(
    headers: &HeaderMap,
    instance_id: &str,
    hop_limit: HopLimit,
    slot: &InstanceSlot,
    tokens: &TokenAuthority,
    now_ms: u64,
) -> Option<Outcome> {
    let ttl = headers
        .get(TTL_HEADER_NAME)
        .ok_or(TokenError::InvalidTtl)
        .and_then(|value| TokenTtl::parse(value.as_bytes()))
        .ok()?;
    let token = tokens.issue(instance_id, ttl, now_ms);
    Counters::bump(&slot.counters.tokens_issued);
    let mut response = responses::answer(StatusCode::OK, Kind::Text, Bytes::from(token));
    response
        .headers_mut()
        .insert(TTL_HEADER_NAME, seconds_header(ttl.seconds()));
    Some(Outcome::Token {
        response,
        hop_limit,
    })
}

/// A header value of `seconds`. Every v2 answer carries one and within a second they are all
/// the same, so each thread keeps its last one: a clone shares its bytes, where a new value
/// would be an allocation.
fn seconds_header(seconds: u32) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u32, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((kept, value)) if *kept == seconds => value.clone(),
        _ => {
            let mut buffer = itoa::Buffer::new();
            let value = HeaderValue::from_str(buffer.format(seconds))
                .expect("digits are a valid header value");
            *last = Some((seconds, value.clone()));
            value
        }
    })
}

fn versions_listing() -> Response<Body> {
    static LISTING: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let body = LISTING
        .get_or_init(|| Bytes::from(API_VERSIONS.join("\n")))
        .clone();
    responses::data(Kind::Text, body, None)
}

#[cfg(test)]
mod tests;
