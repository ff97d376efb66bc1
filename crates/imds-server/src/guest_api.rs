//! The guest API: what an instance sees at `http://169.254.169.254/`.
//!
//! # Routes
//! - `PUT /latest/api/token`: issue a session token (TTL header 1..=21600 s).
//! - `GET|HEAD /`: the API versions.
//! - `GET|HEAD /{latest|VERSION}/...`: `meta-data/...`, `dynamic/...`, `user-data`.
//!
//! `respond` is a pure function of the request, the instance's prepared snapshot, the token
//! authority and `now`; it decides in the order the spec's "request-processing order" gives:
//! endpoint disabled (403), token issuance, method (405), forwarded requests (403), token
//! checks (401), then lookup (200 or 404).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use imds_core::{
    metadata_tree::ContentKind,
    options::{HopLimit, HttpTokens},
    path::{self, Target, API_VERSIONS},
    token::{TokenAuthority, TokenError, TokenTtl, TOKEN_HEADER, TTL_HEADER},
};

use crate::{
    responses::{self, Body, Kind},
    snapshot::Snapshot,
    state::{Counters, InstanceSlot},
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

/// Answers one guest request for the instance `slot` at `now_ms` (Unix milliseconds).
pub fn respond(
    request: &GuestRequest<'_>,
    slot: &InstanceSlot,
    tokens: &TokenAuthority,
    now_ms: u64,
) -> Outcome {
    slot.with_snapshot(|snapshot| respond_with(request, snapshot, slot, tokens, now_ms))
}

fn respond_with(
    request: &GuestRequest<'_>,
    snapshot: &Snapshot,
    slot: &InstanceSlot,
    tokens: &TokenAuthority,
    now_ms: u64,
) -> Outcome {
    let options = snapshot.options;
    if request.over_ipv6 && !options.http_protocol_ipv6.is_enabled() {
        return Outcome::Drop;
    }
    if !options.http_endpoint.is_enabled() {
        return Outcome::Respond(responses::forbidden());
    }
    if request.target_is_authority {
        return Outcome::Respond(responses::bad_request());
    }
    let target = path::parse(request.path);
    let forwarded = request.headers.contains_key(X_FORWARDED_FOR);

    if target.is_token() {
        return match *request.method {
            Method::PUT if forwarded => Outcome::Respond(responses::forbidden()),
            Method::PUT => issue_token(
                request.headers,
                &snapshot.instance_id,
                options.http_put_response_hop_limit,
                slot,
                tokens,
                now_ms,
            ),
            _ => Outcome::Respond(responses::method_not_allowed("OPTIONS, PUT")),
        };
    }
    match *request.method {
        Method::GET | Method::HEAD => {}
        // "Issuing PUT requests to any version-specific path ... will result in the metadata
        // service returning 403 Forbidden errors" (EC2 User Guide, "Retrieve instance metadata").
        Method::PUT if matches!(&target, Target::Node { latest: false, key } if key == path::TOKEN_KEY) =>
        {
            return Outcome::Respond(responses::forbidden());
        }
        _ => return Outcome::Respond(responses::method_not_allowed("GET, HEAD")),
    }

    let remaining_ttl = match request.headers.get(TOKEN_HEADER_NAME) {
        Some(token) => {
            // A forwarded request carrying a token is refused (kube2iam#279: AWS answers 403).
            if forwarded {
                return Outcome::Respond(responses::forbidden());
            }
            match tokens.validate(token.as_bytes(), &snapshot.instance_id, now_ms) {
                Ok(remaining) => Some(remaining),
                // Expired, malformed, tampered with or another instance's: the same 401.
                Err(_) => return Outcome::Respond(responses::unauthorized()),
            }
        }
        None if options.http_tokens == HttpTokens::Required => {
            Counters::bump(&slot.counters.no_token_rejected);
            return Outcome::Respond(responses::unauthorized());
        }
        None => None,
    };

    let mut response = match target {
        Target::Versions => versions_listing(),
        Target::Node { key, .. } => match snapshot.answers.get(key.as_ref()) {
            Some(answer) => {
                let kind = match answer.kind {
                    ContentKind::Text => Kind::Text,
                    ContentKind::Binary => Kind::Binary,
                };
                responses::answer(StatusCode::OK, kind, answer.body.clone())
            }
            None => responses::not_found(),
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
        None if response.status() == StatusCode::OK => Counters::bump(&slot.counters.no_token),
        None => {}
    }
    Outcome::Respond(response)
}

fn issue_token(
    headers: &HeaderMap,
    instance_id: &str,
    hop_limit: HopLimit,
    slot: &InstanceSlot,
    tokens: &TokenAuthority,
    now_ms: u64,
) -> Outcome {
    let ttl = match headers
        .get(TTL_HEADER_NAME)
        .ok_or(TokenError::InvalidTtl)
        .and_then(|value| TokenTtl::parse(value.as_bytes()))
    {
        Ok(ttl) => ttl,
        Err(_) => return Outcome::Respond(responses::bad_request()),
    };
    let token = tokens.issue(instance_id, ttl, now_ms);
    Counters::bump(&slot.counters.tokens_issued);
    let mut response = responses::answer(StatusCode::OK, Kind::Text, Bytes::from(token));
    response
        .headers_mut()
        .insert(TTL_HEADER_NAME, seconds_header(ttl.seconds()));
    Outcome::Token {
        response,
        hop_limit,
    }
}

fn seconds_header(seconds: u32) -> HeaderValue {
    let mut buffer = itoa::Buffer::new();
    HeaderValue::from_str(buffer.format(seconds)).expect("digits are a valid header value")
}

fn versions_listing() -> Response<Body> {
    static LISTING: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let body = LISTING
        .get_or_init(|| Bytes::from(API_VERSIONS.join("\n")))
        .clone();
    responses::answer(StatusCode::OK, Kind::Text, body)
}
