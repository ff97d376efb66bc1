//! `respond` from a raw request to its status and body, one decision per line, in the order
//! ARCHITECTURE.md gives: IPv6 endpoint, `HttpEndpoint`, rate limit, malformed target, the token
//! resource, PUT elsewhere, other methods, lockdown, the token, tokens required, then lookup.
//!
//! Every case runs against a fixed instance (`Guest`): its metadata options are the test's, its
//! role credentials are generated, tokens are issued with a fixed key at a fixed `NOW_MS`.

#![allow(
    clippy::disallowed_methods,
    reason = "the slot builds its snapshot at the clock's time, so the fixture's credentials are made at it"
)]

use std::{
    future::Future,
    num::NonZeroU32,
    pin::pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, Waker},
};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::BodyExt;
use imds_core::{
    spec::{Generated, InstanceSpec, StoredInstance},
    token::{TokenAuthority, TokenTtl, KEY_LENGTH},
};
use imds_credentials::generated::GeneratedProvider;
use serde_json::json;
use time::OffsetDateTime;

use super::{respond, GuestRequest, Note, Outcome, Reply};
use crate::{
    credentials::{RenderedCredentials, RoleSets},
    identity::IdentitySigner,
    instance::{
        described::Described,
        slot::{Counters, InstanceSlot},
        snapshot::{IdentitySeed, Issuer, LazyIdentity, Source},
    },
    responses::{BAD_REQUEST_PAGE, NOT_FOUND_PAGE, TOO_MANY_REQUESTS_PAGE, UNAUTHORIZED_PAGE},
    throttle::{Rate, Throttle},
};

const INSTANCE: &str = "i-0123456789abcdef0";
const ROLE: &str = "app-role";
const USER_DATA: &str = "#!/bin/sh\necho hello\n";
/// The moment every request is made at (2026-01-01T00:00:00Z).
const NOW_MS: u64 = 1_767_225_600_000;
/// The status `check` expects when the request is not answered at all (`Outcome::Drop`).
const DROPPED: u16 = 0;

/// One instance, the token authority and the throttle every request of a test goes through.
struct Guest {
    slot: InstanceSlot,
    tokens: TokenAuthority,
    throttle: Throttle,
    over_ipv6: bool,
    credentials_allowed: bool,
}

/// The signer is one per process: making an RSA key is slow, and no case looks at it.
fn issuer() -> Arc<Issuer> {
    static ISSUER: OnceLock<Arc<Issuer>> = OnceLock::new();
    ISSUER
        .get_or_init(|| {
            Arc::new(Issuer {
                signer: Arc::new(IdentitySigner::generate().unwrap()),
                identity_credentials: GeneratedProvider::new(GeneratedProvider::DEFAULT_LIFETIME),
                instance_connect: None,
            })
        })
        .clone()
}

impl Guest {
    /// The instance with `metadata-options` `options`, a role and user-data.
    fn new(options: serde_json::Value) -> Guest {
        let spec: InstanceSpec = serde_json::from_value(json!({
            "instance-id": INSTANCE,
            "user-data": USER_DATA,
            "iam": { "role-name": ROLE },
            "metadata-options": options,
        }))
        .unwrap();
        let instance = Arc::new(
            Described::of(&StoredInstance {
                generated: Generated::random(),
                instance: spec,
            })
            .unwrap(),
        );
        // The slot builds its snapshot at the clock's time, so the credentials are made at it.
        let now = OffsetDateTime::now_utc();
        let role = GeneratedProvider::new(GeneratedProvider::DEFAULT_LIFETIME).generate(now);
        let v1_role = GeneratedProvider::new(GeneratedProvider::DEFAULT_LIFETIME).generate(now);
        let source = Source {
            generation: 1,
            revision: 1,
            instance,
            identity: Arc::new(LazyIdentity::default()),
            // Tokenless callers get a set of their own while tokens are optional.
            role_credentials: Some(RoleSets {
                v2: Arc::new(RenderedCredentials::imds_only(&role)),
                v1: Some(Arc::new(RenderedCredentials::imds_only(&v1_role))),
            }),
            identity_seed: IdentitySeed::new(now),
            issuer: issuer(),
            managed_keys: Arc::default(),
        };
        Guest {
            slot: InstanceSlot::new(source, 1),
            tokens: TokenAuthority::new(&[7; KEY_LENGTH]),
            throttle: Throttle::unlimited(),
            over_ipv6: false,
            credentials_allowed: true,
        }
    }

    /// Requests arrive at the IPv6 endpoint.
    fn over_ipv6(mut self) -> Guest {
        self.over_ipv6 = true;
        self
    }

    /// Lockdown forbids this caller credentials.
    fn locked_down(mut self) -> Guest {
        self.credentials_allowed = false;
        self
    }

    /// The instance may make `burst` requests at once, then one a second.
    fn limited(mut self, burst: u32) -> Guest {
        self.throttle.default = Some(Rate {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        });
        self
    }

    /// A token of `instance` issued at `issued_ms` for `ttl` seconds.
    fn token(&self, instance: &str, ttl: u32, issued_ms: u64) -> String {
        let ttl = TokenTtl::parse(ttl.to_string().as_bytes()).unwrap();
        self.tokens.issue(instance, ttl, issued_ms)
    }

    /// Answers `raw`: a request line without the version (`GET /latest/meta-data/`), then
    /// header lines. In it, `{token}` is a valid token, `{expired}` one whose time is up,
    /// `{foreign}` another instance's and `{tampered}` a valid one with a byte changed.
    fn reply(&self, raw: &str) -> (Reply, HeaderMap) {
        let valid = self.token(INSTANCE, 21600, NOW_MS);
        let mut tampered = valid.clone().into_bytes();
        tampered[valid.len() / 2] ^= 1;
        let raw = raw
            .replace("{token}", &valid)
            .replace("{expired}", &self.token(INSTANCE, 1, NOW_MS - 1000))
            .replace(
                "{foreign}",
                &self.token("i-00000000000000000", 21600, NOW_MS),
            )
            .replace("{tampered}", &String::from_utf8(tampered).unwrap());
        let mut lines = raw.lines();
        let (method, target) = lines.next().unwrap().split_once(' ').unwrap();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut headers = HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':').unwrap();
            headers.append(
                HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                HeaderValue::from_str(value.trim()).unwrap(),
            );
        }
        let request = GuestRequest {
            method: &method,
            path: target,
            target_is_authority: !target.starts_with('/'),
            headers: &headers,
            over_ipv6: self.over_ipv6,
            credentials_allowed: self.credentials_allowed,
        };
        let reply = respond(&request, &self.slot, &self.tokens, &self.throttle, NOW_MS);
        (reply, headers)
    }

    /// Asserts that `raw` (as `reply` reads it) is answered with `status` (`DROPPED`: not at
    /// all) and `body`; a `body` ending in `...` is a prefix of the body.
    #[track_caller]
    fn check(&self, raw: &str, status: u16, body: &str) {
        let (reply, _) = self.reply(raw);
        let (actual_status, actual_body) = status_and_body(reply.outcome);
        let body_matches = match body.strip_suffix("...") {
            Some(prefix) => actual_body.starts_with(prefix),
            None => actual_body == body,
        };
        assert!(
            actual_status == status && body_matches,
            "{raw:?}\nexpected {status} {body:?}\n     got {actual_status} {actual_body:?}"
        );
    }
}

/// The status and body of an outcome; `DROPPED` and no body for a dropped request.
fn status_and_body(outcome: Outcome) -> (u16, String) {
    let response = match outcome {
        Outcome::Respond(response) | Outcome::Token { response, .. } => response,
        Outcome::Drop => return (DROPPED, String::new()),
    };
    let status = response.status().as_u16();
    // A `Full` body is ready at once: its one poll needs no waker.
    let collect = pin!(response.into_body().collect());
    let Poll::Ready(Ok(collected)) = collect.poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("a full body is ready at once");
    };
    (
        status,
        String::from_utf8(collected.to_bytes().to_vec()).unwrap(),
    )
}

/// The headers of the answer to `raw`.
fn headers_of(guest: &Guest, raw: &str) -> HeaderMap {
    match guest.reply(raw).0.outcome {
        Outcome::Respond(response) | Outcome::Token { response, .. } => response.headers().clone(),
        Outcome::Drop => panic!("{raw:?} was dropped"),
    }
}

fn optional() -> Guest {
    Guest::new(json!({ "http-tokens": "optional" }))
}

fn required() -> Guest {
    Guest::new(json!({ "http-tokens": "required" }))
}

#[test]
fn the_ipv6_endpoint_of_an_instance_without_it_is_not_there() {
    let guest = optional().over_ipv6();
    guest.check("GET /latest/meta-data/instance-id", DROPPED, "");
    guest.check(
        "PUT /latest/api/token\nX-aws-ec2-metadata-token-ttl-seconds: 60",
        DROPPED,
        "",
    );
    let enabled = Guest::new(json!({ "http-protocol-ipv6": "enabled" })).over_ipv6();
    enabled.check("GET /latest/meta-data/instance-id", 200, INSTANCE);
}

#[test]
fn a_disabled_endpoint_refuses_everything_with_403() {
    let guest = Guest::new(json!({ "http-endpoint": "disabled" }));
    guest.check("GET /latest/meta-data/instance-id", 403, "");
    guest.check(
        "PUT /latest/api/token\nX-aws-ec2-metadata-token-ttl-seconds: 60",
        403,
        "",
    );
    guest.check("GET /", 403, "");
    // Disabled comes before the IPv6 endpoint's own answer only when IPv6 is on.
    let both = Guest::new(json!({ "http-endpoint": "disabled" })).over_ipv6();
    both.check("GET /latest/meta-data/instance-id", DROPPED, "");
}

#[test]
fn over_its_rate_limit_an_instance_is_answered_429_before_anything_else() {
    let guest = optional().limited(2);
    guest.check("GET /latest/meta-data/instance-id", 200, INSTANCE);
    guest.check("BREW /nowhere", 405, "");
    guest.check(
        "GET /latest/meta-data/instance-id",
        429,
        TOO_MANY_REQUESTS_PAGE,
    );
    guest.check("CONNECT example.com:443", 429, TOO_MANY_REQUESTS_PAGE);
    guest.check(
        "PUT /latest/api/token\nX-aws-ec2-metadata-token-ttl-seconds: 60",
        429,
        TOO_MANY_REQUESTS_PAGE,
    );
    assert_eq!(Counters::read(&guest.slot.counters.throttled), 3);
}

#[test]
fn an_authority_form_target_is_400() {
    let guest = optional();
    guest.check("CONNECT 169.254.169.254:80", 400, BAD_REQUEST_PAGE);
    guest.check("GET example.com:80", 400, BAD_REQUEST_PAGE);
}

#[test]
fn the_token_resource_issues_tokens_for_a_valid_ttl() {
    let guest = optional();
    let ttl = "X-aws-ec2-metadata-token-ttl-seconds";
    for path in [
        "/latest/api/token",
        "//latest/api/token",
        "/latest//api/token",
        "/latest/api/%74oken",
    ] {
        let (reply, _) = guest.reply(&format!("PUT {path}\n{ttl}: 21600"));
        let Outcome::Token { response, .. } = reply.outcome else {
            panic!("{path}: no token");
        };
        assert_eq!(response.headers()[ttl], "21600", "{path}");
        let (_, token) = status_and_body(Outcome::Respond(response));
        assert_eq!(
            guest.tokens.validate(token.as_bytes(), INSTANCE, NOW_MS),
            Ok(21600)
        );
    }
    assert_eq!(Counters::read(&guest.slot.counters.tokens_issued), 4);
    guest.check(&format!("PUT /latest/api/token\n{ttl}: 1"), 200, "...");
}

#[test]
fn the_token_resource_refuses_bad_ttls_forwarded_requests_and_other_methods() {
    let guest = optional();
    let ttl = "X-aws-ec2-metadata-token-ttl-seconds";
    guest.check("PUT /latest/api/token", 400, BAD_REQUEST_PAGE);
    guest.check(
        &format!("PUT /latest/api/token\n{ttl}: 0"),
        400,
        BAD_REQUEST_PAGE,
    );
    guest.check(
        &format!("PUT /latest/api/token\n{ttl}: 21601"),
        400,
        BAD_REQUEST_PAGE,
    );
    guest.check(
        &format!("PUT /latest/api/token\n{ttl}: ten"),
        400,
        BAD_REQUEST_PAGE,
    );
    guest.check(
        &format!("PUT /latest/api/token\n{ttl}: 60\nX-Forwarded-For: 10.0.0.1"),
        403,
        "",
    );
    guest.check("GET /latest/api/token", 405, "");
    guest.check("POST /latest/api/token", 405, "");
    guest.check("OPTIONS /latest/api/token", 200, "");
    assert_eq!(
        headers_of(&guest, "GET /latest/api/token")["allow"],
        "OPTIONS, PUT"
    );
    assert_eq!(
        headers_of(&guest, "OPTIONS /latest/api/token")["allow"],
        "OPTIONS, PUT"
    );
    // A token request with no TTL and a forwarded one are refused before a TTL is looked at.
    guest.check("PUT /latest/api/token\nX-Forwarded-For: 10.0.0.1", 403, "");
    assert_eq!(Counters::read(&guest.slot.counters.tokens_issued), 0);
}

#[test]
fn token_refusals_are_noted_with_their_reason() {
    let guest = optional();
    let reason = |raw: &str| match guest.reply(raw).0.note {
        Some(Note::TokenRefused { reason, .. }) => reason,
        other => panic!("{raw:?}: {other:?}"),
    };
    let ttl = "X-aws-ec2-metadata-token-ttl-seconds: 60";
    assert_eq!(
        reason(&format!(
            "PUT /latest/api/token\n{ttl}\nX-Forwarded-For: 1.2.3.4"
        )),
        "forwarded"
    );
    assert_eq!(
        reason("PUT /latest/api/token\nX-aws-ec2-metadata-token-ttl-seconds: 0"),
        "invalid-ttl"
    );
    assert_eq!(
        reason(&format!("PUT /2021-03-23/api/token\n{ttl}")),
        "versioned-path"
    );
    assert_eq!(
        reason(&format!("PUT /latest/api/token/\n{ttl}")),
        "other-path"
    );
    assert_eq!(
        reason(&format!("PUT /latest/meta-data/\n{ttl}")),
        "other-path"
    );
}

#[test]
fn a_put_anywhere_but_the_token_resource_is_403() {
    let guest = optional();
    let ttl = "X-aws-ec2-metadata-token-ttl-seconds: 60";
    guest.check(&format!("PUT /2021-03-23/api/token\n{ttl}"), 403, "");
    guest.check(&format!("PUT /latest/api/token/\n{ttl}"), 403, "");
    guest.check(&format!("PUT /latest/api/token/.\n{ttl}"), 403, "");
    guest.check(
        &format!("PUT /latest/meta-data/instance-id\n{ttl}"),
        403,
        "",
    );
    guest.check("PUT /", 403, "");
    guest.check("PUT /nowhere", 403, "");
}

#[test]
fn other_methods_are_405_with_get_and_head_allowed() {
    let guest = optional();
    guest.check("POST /latest/meta-data/", 405, "");
    guest.check("DELETE /latest/meta-data/instance-id", 405, "");
    guest.check("OPTIONS /latest/meta-data/", 405, "");
    guest.check("BREW /nowhere", 405, "");
    assert_eq!(headers_of(&guest, "POST /")["allow"], "GET, HEAD");
    // The method is decided before the token: an invalid one does not make it 401.
    required().check(
        "POST /latest/meta-data/\nX-aws-ec2-metadata-token: nonsense",
        405,
        "",
    );
}

#[test]
fn lockdown_refuses_credentials_paths_only_and_before_the_token() {
    let guest = optional().locked_down();
    let credentials = format!("/latest/meta-data/iam/security-credentials/{ROLE}");
    guest.check(&format!("GET {credentials}"), 403, "");
    guest.check("GET /latest/meta-data/iam/security-credentials/", 403, "");
    guest.check(
        "GET /latest/meta-data/iam/security-credentials/no-such-role",
        403,
        "",
    );
    guest.check(
        "GET /latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
        403,
        "",
    );
    guest.check(
        &format!("GET {credentials}\nX-aws-ec2-metadata-token: {{expired}}"),
        403,
        "",
    );
    guest.check("GET /latest/meta-data/instance-id", 200, INSTANCE);
    guest.check("GET /latest/meta-data/iam/info", 200, "{...");
    assert!(matches!(
        guest.reply(&format!("GET {credentials}")).0.note,
        Some(Note::CredentialsRefused { .. })
    ));
    optional().check(
        &format!("GET {credentials}"),
        200,
        "{\n  \"Code\" : \"Success\",...",
    );
}

#[test]
fn a_token_that_is_invalid_expired_foreign_or_forwarded_is_refused() {
    let guest = optional();
    let get = "GET /latest/meta-data/instance-id\nX-aws-ec2-metadata-token:";
    guest.check(&format!("{get} {{token}}"), 200, INSTANCE);
    guest.check(&format!("{get} {{expired}}"), 401, UNAUTHORIZED_PAGE);
    guest.check(&format!("{get} {{foreign}}"), 401, UNAUTHORIZED_PAGE);
    guest.check(&format!("{get} {{tampered}}"), 401, UNAUTHORIZED_PAGE);
    guest.check(&format!("{get} nonsense"), 401, UNAUTHORIZED_PAGE);
    guest.check(&format!("{get} "), 401, UNAUTHORIZED_PAGE);
    guest.check(
        &format!("{get} {{token}}\nX-Forwarded-For: 10.0.0.1"),
        403,
        "",
    );
    // A token is checked even where nothing is found.
    guest.check(
        "GET /latest/meta-data/nothing\nX-aws-ec2-metadata-token: nonsense",
        401,
        UNAUTHORIZED_PAGE,
    );
    // Tokenless forwarded requests are answered (only a token request or a token is refused).
    guest.check(
        "GET /latest/meta-data/instance-id\nX-Forwarded-For: 10.0.0.1",
        200,
        INSTANCE,
    );
}

#[test]
fn authenticated_answers_carry_the_remaining_ttl() {
    let guest = optional();
    let headers = headers_of(
        &guest,
        "GET /latest/meta-data/instance-id\nX-aws-ec2-metadata-token: {token}",
    );
    assert_eq!(headers["x-aws-ec2-metadata-token-ttl-seconds"], "21600");
    let tokenless = headers_of(&guest, "GET /latest/meta-data/instance-id");
    assert!(!tokenless.contains_key("x-aws-ec2-metadata-token-ttl-seconds"));
}

#[test]
fn with_tokens_required_a_tokenless_request_is_401_and_counted() {
    let guest = required();
    guest.check("GET /latest/meta-data/instance-id", 401, UNAUTHORIZED_PAGE);
    guest.check("GET /", 401, UNAUTHORIZED_PAGE);
    guest.check("GET /latest/meta-data/nothing", 401, UNAUTHORIZED_PAGE);
    guest.check(
        "GET /latest/meta-data/instance-id\nX-aws-ec2-metadata-token: {token}",
        200,
        INSTANCE,
    );
    assert_eq!(Counters::read(&guest.slot.counters.no_token_rejected), 3);
    assert_eq!(Counters::read(&guest.slot.counters.no_token), 0);
    let tokenless = optional();
    tokenless.check("GET /latest/meta-data/instance-id", 200, INSTANCE);
    tokenless.check("GET /latest/meta-data/nothing", 404, NOT_FOUND_PAGE);
    assert_eq!(Counters::read(&tokenless.slot.counters.no_token), 1);
}

#[test]
fn lookups_answer_200_with_the_value_or_the_real_404_page() {
    let guest = optional();
    guest.check("GET /latest/meta-data/instance-id", 200, INSTANCE);
    guest.check("HEAD /latest/meta-data/instance-id", 200, INSTANCE);
    guest.check("GET /2021-03-23/meta-data/instance-id", 200, INSTANCE);
    guest.check("GET /latest/meta-data/instance-id/", 200, INSTANCE);
    guest.check("GET /latest/user-data", 200, USER_DATA);
    guest.check(
        "GET /latest/dynamic/instance-identity/document",
        200,
        "{...",
    );
    guest.check("GET /latest/meta-data/nothing", 404, NOT_FOUND_PAGE);
    guest.check(
        "GET /latest/meta-data/instance-id/more",
        404,
        NOT_FOUND_PAGE,
    );
    guest.check("GET /1999-01-01/meta-data/instance-id", 404, NOT_FOUND_PAGE);
    guest.check("GET /latest/meta-data/%FF", 404, NOT_FOUND_PAGE);
    guest.check("GET /nowhere", 404, NOT_FOUND_PAGE);
}

#[test]
fn listings_name_their_children() {
    let guest = optional();
    guest.check("GET /", 200, &imds_core::path::API_VERSIONS.join("\n"));
    guest.check("GET /latest", 200, "dynamic\nmeta-data\nuser-data");
    guest.check("GET /latest/", 200, "dynamic\nmeta-data\nuser-data");
    guest.check("GET /latest/meta-data/iam/security-credentials/", 200, ROLE);
    guest.check("GET /latest/meta-data/iam/security-credentials", 200, ROLE);
    guest.check("GET /latest/meta-data/", 200, "ami-id\n...");
}

#[test]
fn dot_segments_resolve_within_the_version() {
    let guest = optional();
    guest.check("GET /latest/meta-data/../user-data", 200, USER_DATA);
    guest.check("GET /latest/meta-data/./instance-id", 200, INSTANCE);
    guest.check("GET /latest/../../meta-data/instance-id", 200, INSTANCE);
    guest.check("GET /latest/meta-data/%2E%2E/user-data", 200, USER_DATA);
    guest.check(
        "GET /latest/meta-data/..",
        200,
        "dynamic\nmeta-data\nuser-data",
    );
    guest.check("GET /..", 200, &imds_core::path::API_VERSIONS.join("\n"));
}

#[test]
fn served_credentials_are_noted_for_the_audit_log() {
    let guest = optional();
    let (reply, _) = guest.reply(&format!(
        "GET /latest/meta-data/iam/security-credentials/{ROLE}"
    ));
    match reply.note {
        Some(Note::CredentialsIssued {
            instance_id,
            role,
            access_key_id,
            delivery,
            path,
        }) => {
            assert_eq!(&*instance_id, INSTANCE);
            assert_eq!(&*role, ROLE);
            assert_eq!(path, "iam/security-credentials");
            // No token: the IMDSv1 set.
            assert_eq!(delivery, Some(imds_credentials::Delivery::V1));
            assert!(access_key_id.starts_with("ASIA"), "{access_key_id}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        guest.reply("GET /latest/meta-data/instance-id").0.note,
        None
    );
}

#[test]
fn user_data_honours_one_byte_range() {
    let guest = optional();
    guest.check("GET /latest/user-data\nRange: bytes=0-8", 206, "#!/bin/sh");
    guest.check("HEAD /latest/user-data\nRange: bytes=0-8", 200, USER_DATA);
}

#[test]
fn managed_ssh_keys_are_served_until_they_expire() {
    use imds_core::managed_ssh_keys::{ManagedKey, ManagedKeys, PublicKey};
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBNhFc1R2IF6bIePrctFQFKCdmRXHXKsAEsvwU/5QSZS me@host";
    const DOCUMENT: &str = "meta-data/managed-ssh-keys/active-keys/ec2-user";
    let guest = Guest::new(json!({}));
    let source = guest.slot.source();
    let now =
        OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    let expires_at = now.unix_timestamp() + 60;
    let key = ManagedKey {
        os_user: "ec2-user".to_owned(),
        key: PublicKey::parse(KEY).unwrap(),
        expires_at,
        request_id: "request-1".to_owned(),
        caller: "arn:aws:iam::123456789012:user/admin".to_owned(),
    };
    let with_keys = Source {
        generation: 2,
        revision: source.revision,
        instance: source.instance.clone(),
        identity: source.identity.clone(),
        role_credentials: source.role_credentials.clone(),
        identity_seed: source.identity_seed,
        issuer: source.issuer.clone(),
        managed_keys: Arc::new(ManagedKeys::default().with(key, now.unix_timestamp())),
    };
    let snapshot = with_keys.build(now).unwrap();
    let document = snapshot.answers.get(DOCUMENT).unwrap();
    assert_eq!(
        document.body,
        format!(
            "#Timestamp={expires_at}\n#Instance={INSTANCE}\n\
             #Caller=arn:aws:iam::123456789012:user/admin\n#Request=request-1\n{KEY}\n\n"
        )
    );
    assert_eq!(
        snapshot
            .answers
            .get("meta-data/managed-ssh-keys")
            .unwrap()
            .body,
        "active-keys/"
    );
    // The snapshot is good until the key expires, no longer.
    assert_eq!(snapshot.valid_until_ms, expires_at * 1000);
    let later = with_keys.build(now + time::Duration::seconds(60)).unwrap();
    assert!(later.answers.get(DOCUMENT).is_none());
    assert!(later.answers.get("meta-data/managed-ssh-keys").is_none());
    assert!(later.valid_until_ms > expires_at * 1000);
    // Without keys nothing of it is there.
    let plain = source.build(now).unwrap();
    assert!(plain.answers.get("meta-data/managed-ssh-keys").is_none());
}

#[test]
fn the_seconds_header_is_the_number_asked_for_whatever_came_before() {
    for seconds in [21_600, 21_600, 59, 0, 59, u32::MAX, 21_600] {
        assert_eq!(
            super::seconds_header(seconds).to_str().unwrap(),
            seconds.to_string()
        );
    }
}
