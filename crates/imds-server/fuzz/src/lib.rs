//! The checks behind imds-server's fuzz targets: one public function per target, taking the raw
//! input. Each asserts properties of what it decides (a failed assertion is a crash libFuzzer
//! reports), not only that nothing panics.
//!
//! # Layout
//! - `guest_request`: one flag byte, then a request as text: `METHOD TARGET`, then header lines
//!   `Name: value`. In header values `{token}` is a valid token of the instance, `{expired}` one
//!   whose time is up, `{foreign}` another instance's, `{alien}` the instance's from another
//!   token key and `{tampered}` a valid one with a byte changed. Flags: bit 0 tokens required,
//!   bit 1 the instance has the IPv6 endpoint, bit 2 the request arrives over IPv6, bit 3
//!   lockdown forbids the caller credentials.
//! - `control_bodies`: one byte choosing the control-API body type (`BODIES`), then its JSON.
//! - `identity`: an instance description (JSON, as `POST /v1/instances` takes it).

use std::{
    future::Future,
    pin::pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, Waker},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use imds_core::{
    kubernetes_name::{check_namespace, check_service_account},
    managed_ssh_keys::{check_os_user, PublicKey},
    path,
    spec::{Generated, InstanceSpec, StoredInstance},
    task::spec::{StoredTask, TaskSpec},
    token::{TokenAuthority, TokenTtl, KEY_LENGTH, TOKEN_HEADER, TTL_HEADER},
};
use imds_credentials::{
    generated::GeneratedProvider,
    spec::{check_role_name, RoleSpec},
};
use imds_server::{
    admin_api::model::{
        CreatePodIdentityAssociation, InjectFault, InstancePatch, MintServiceAccountToken,
        ModifyInstanceMetadataOptions, PostEvent, Scenario, SendSshPublicKey, TaskPatch,
        UpdatePodIdentityAssociation,
    },
    credentials::{RenderedCredentials, RoleSets},
    faults::Fault,
    guest_api::{respond, GuestRequest, Outcome},
    identity::IdentitySigner,
    instance::{
        described::Described,
        slot::InstanceSlot,
        snapshot::{self, IdentitySeed, Issuer, LazyIdentity, SignedIdentity, Source},
    },
    responses::Body,
    scenario,
    telemetry::is_credentials_target,
    throttle::Throttle,
};
use openssl::{
    hash::MessageDigest,
    pkcs7::{Pkcs7, Pkcs7Flags},
    sign::Verifier,
    stack::Stack,
    x509::{store::X509StoreBuilder, X509},
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The instance every guest request is made to.
pub const INSTANCE: &str = "i-0123456789abcdef0";
/// Its role.
pub const ROLE: &str = "app-role";
/// Its user-data.
pub const USER_DATA: &str = "#!/bin/sh\necho hello\n";
/// The moment every request is made at (2026-01-01T00:00:00Z).
pub const NOW_MS: u64 = 1_767_225_600_000;

/// Every status the guest API answers with (docs/behaviour.md): a value or listing, a byte range
/// of user-data, an authority-form target or a bad TTL, a missing or bad token, a refusal
/// (disabled endpoint, PUT off the token resource, lockdown, forwarded token requests), an
/// unknown path, another method, a range past the end, the rate limit.
pub const GUEST_STATUSES: [u16; 9] = [200, 206, 400, 401, 403, 404, 405, 416, 429];

/// The identifiers drawn for the fuzzed instances (fixed, so that a crash replays).
fn generated() -> Generated {
    Generated {
        instance_id: INSTANCE.to_owned(),
        account_id: "123456789012".to_owned(),
        ami_id: "ami-0123456789abcdef0".to_owned(),
        reservation_id: "r-0123456789abcdef0".to_owned(),
        pending_time: "2026-01-01T00:00:00Z".to_owned(),
        mac: "02:00:00:00:00:01".to_owned(),
        interface_id: "eni-0123456789abcdef0".to_owned(),
        subnet_id: "subnet-0123456789abcdef0".to_owned(),
        vpc_id: "vpc-0123456789abcdef0".to_owned(),
        security_group_id: "sg-0123456789abcdef0".to_owned(),
        local_ipv4: "10.0.0.10".to_owned(),
        public_ipv4: "203.0.113.10".to_owned(),
        instance_profile_id: "AIPA0123456789ABCDEFG".to_owned(),
        public_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd7rSUb2GDnHTP1eHNXTLvWn1QmxlqGqIsCXYbSVqaS fuzz"
                .to_owned(),
    }
}

/// The signer and identity-credential provider, one per process (an RSA key is slow to make).
fn issuer() -> Arc<Issuer> {
    static ISSUER: OnceLock<Arc<Issuer>> = OnceLock::new();
    ISSUER
        .get_or_init(|| {
            Arc::new(Issuer {
                signer: Arc::new(IdentitySigner::generate().expect("an identity signer")),
                identity_credentials: GeneratedProvider::new(GeneratedProvider::DEFAULT_LIFETIME),
                instance_connect: None,
            })
        })
        .clone()
}

/// The slot serving `described`, with `role_credentials`.
fn slot_of(described: Described, role_credentials: Option<RoleSets>) -> InstanceSlot {
    // The slot builds its snapshot at the clock's time; credentials are made at it to be valid.
    let source = Source {
        generation: 1,
        revision: 1,
        instance: Arc::new(described),
        identity: Arc::new(LazyIdentity::default()),
        role_credentials,
        identity_seed: IdentitySeed::new(OffsetDateTime::now_utc()),
        issuer: issuer(),
        managed_keys: Arc::default(),
    };
    InstanceSlot::new(source, 1)
}

/// The status, headers and body of an answer.
pub struct Answered {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

fn answered(response: http::Response<Body>) -> Answered {
    let (parts, body) = response.into_parts();
    // A `Full` body is ready at once: its one poll needs no waker.
    let collect = pin!(body.collect());
    let Poll::Ready(Ok(collected)) = collect.poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("a full body is ready at once");
    };
    Answered {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
    }
}

/// One fixed instance with a role, tags and user-data, in one token mode, and what it serves.
pub struct Guest {
    /// The instance's slot.
    pub slot: InstanceSlot,
    /// The token authority the server issues tokens with.
    pub tokens: TokenAuthority,
    /// Issues tokens with another key: none of them validates with `tokens`.
    pub alien: TokenAuthority,
    /// No rate limit.
    pub throttle: Throttle,
    /// `HttpTokens=required`.
    pub required: bool,
    /// The secret key of the role's IMDSv2 set.
    pub secret_v2: String,
    /// The secret key of the role's IMDSv1 set.
    pub secret_v1: String,
    /// The secret key of the instance's identity credentials.
    pub secret_identity: String,
}

impl Guest {
    /// The guest for `flags` (bit 0 tokens required, bit 1 the IPv6 endpoint on), built once.
    pub fn get(flags: u8) -> &'static Guest {
        static GUESTS: [OnceLock<Guest>; 4] = [const { OnceLock::new() }; 4];
        let index = usize::from(flags & 3);
        GUESTS[index].get_or_init(|| Guest::new(index & 1 == 1, index & 2 == 2))
    }

    fn new(required: bool, ipv6: bool) -> Guest {
        let spec: InstanceSpec = serde_json::from_value(json!({
            "instance-id": INSTANCE,
            "user-data": USER_DATA,
            "iam": { "role-name": ROLE },
            "tags": { "Name": "fuzz", "team": "imds" },
            "metadata-options": {
                "http-tokens": if required { "required" } else { "optional" },
                "http-protocol-ipv6": if ipv6 { "enabled" } else { "disabled" },
                "instance-metadata-tags": "enabled",
            },
        }))
        .expect("the fixture's description reads");
        let described = Described::of(&StoredInstance {
            generated: generated(),
            instance: spec,
        })
        .expect("the fixture's description resolves");
        let now = OffsetDateTime::now_utc();
        let provider = GeneratedProvider::new(GeneratedProvider::DEFAULT_LIFETIME);
        let (v2, v1) = (provider.generate(now), provider.generate(now));
        let slot = slot_of(
            described,
            Some(RoleSets {
                v2: Arc::new(RenderedCredentials::imds_only(&v2)),
                v1: Some(Arc::new(RenderedCredentials::imds_only(&v1))),
            }),
        );
        let identity_key = "meta-data/identity-credentials/ec2/security-credentials/ec2-instance";
        let secret_identity = slot.with_snapshot(NOW_MS, |snapshot| {
            let answer = snapshot
                .answers
                .get(identity_key)
                .expect("identity credentials are served");
            let document: Value =
                serde_json::from_slice(&answer.body).expect("credentials are JSON");
            document["SecretAccessKey"]
                .as_str()
                .expect("a secret key")
                .to_owned()
        });
        Guest {
            slot,
            tokens: TokenAuthority::new(&[7; KEY_LENGTH]),
            alien: TokenAuthority::new(&[8; KEY_LENGTH]),
            throttle: Throttle::unlimited(),
            required,
            secret_v2: v2.secret_access_key.expose().to_owned(),
            secret_v1: v1.secret_access_key.expose().to_owned(),
            secret_identity,
        }
    }

    /// Replaces the token placeholders of `data` (see the module's layout).
    fn expand(&self, data: &[u8]) -> Vec<u8> {
        let ttl = TokenTtl::parse(b"21600").expect("a valid TTL");
        let valid = self.tokens.issue(INSTANCE, ttl, NOW_MS);
        let mut tampered = valid.clone().into_bytes();
        let middle = tampered.len() / 2;
        tampered[middle] ^= 1;
        let one_second = TokenTtl::parse(b"1").expect("a valid TTL");
        let replacements: [(&[u8], Vec<u8>); 5] = [
            (b"{token}", valid.clone().into_bytes()),
            (
                b"{expired}",
                self.tokens
                    .issue(INSTANCE, one_second, NOW_MS - 1000)
                    .into_bytes(),
            ),
            (
                b"{foreign}",
                self.tokens
                    .issue("i-00000000000000000", ttl, NOW_MS)
                    .into_bytes(),
            ),
            (
                b"{alien}",
                self.alien.issue(INSTANCE, ttl, NOW_MS).into_bytes(),
            ),
            (b"{tampered}", tampered),
        ];
        let mut out = data.to_vec();
        for (placeholder, value) in replacements {
            out = replace(&out, placeholder, &value);
        }
        out
    }
}

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = rest.windows(from.len()).position(|window| window == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// A request as the layout gives it: method, target and headers.
struct RawRequest {
    method: Method,
    target: String,
    headers: HeaderMap,
}

fn parse_request(data: &[u8]) -> Option<RawRequest> {
    let mut lines = data.split(|&byte| byte == b'\n');
    let first = std::str::from_utf8(lines.next()?).ok()?;
    let (method, target) = first.split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    Some(RawRequest {
        method,
        target: target.to_owned(),
        headers,
    })
}

/// The whole guest request function, against a fixed instance. Properties: the status is one
/// of `GUEST_STATUSES` (or the request is dropped, only at an IPv6 endpoint the instance lacks);
/// a credentials document is answered only to GET or HEAD of a credentials path, only when
/// lockdown allows it, and only as the token rules allow (with tokens required, only with a
/// valid token; the IMDSv2 set only with a valid token, the IMDSv1 set only without one); no
/// other answer carries any of the instance's secret keys; with tokens required, nothing but
/// the token resource answers 2xx without a valid token of this instance and this authority; an
/// issued token validates with the TTL echoed; an authenticated answer carries its token's
/// remaining TTL.
pub fn guest_request(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let guest = Guest::get(flags);
    let over_ipv6 = flags & 4 != 0;
    let credentials_allowed = flags & 8 == 0;
    let Some(raw) = parse_request(&guest.expand(rest)) else {
        return;
    };
    let request = GuestRequest {
        method: &raw.method,
        path: &raw.target,
        target_is_authority: !raw.target.starts_with('/'),
        headers: &raw.headers,
        over_ipv6,
        credentials_allowed,
    };
    let reply = respond(
        &request,
        &guest.slot,
        &guest.tokens,
        &guest.throttle,
        NOW_MS,
    );
    let (issued_token, answer) = match reply.outcome {
        Outcome::Drop => {
            assert!(
                over_ipv6 && flags & 2 == 0,
                "a request was dropped at an endpoint the instance has"
            );
            return;
        }
        Outcome::Respond(response) => (false, answered(response)),
        Outcome::Token { response, .. } => (true, answered(response)),
    };
    let status = answer.status.as_u16();
    assert!(
        GUEST_STATUSES.contains(&status),
        "status {status} is not in the documented set"
    );
    assert!(
        !(over_ipv6 && flags & 2 == 0),
        "a request at an endpoint the instance lacks was answered"
    );

    let token_header = raw.headers.get(TOKEN_HEADER);
    let forwarded = raw.headers.contains_key("x-forwarded-for");
    let validated =
        token_header.map(|token| guest.tokens.validate(token.as_bytes(), INSTANCE, NOW_MS));
    let token_valid = matches!(validated, Some(Ok(_))) && !forwarded;
    let target = path::parse(&raw.target);
    let token_resource =
        !request.target_is_authority && target.is_token() && !path::names_directory(&raw.target);
    let reading = matches!(raw.method, Method::GET | Method::HEAD);

    // Credentials and secrets.
    let secrets = [
        guest.secret_v2.as_bytes(),
        guest.secret_v1.as_bytes(),
        guest.secret_identity.as_bytes(),
    ];
    let carries_credentials = contains(&answer.body, b"SecretAccessKey")
        || secrets.iter().any(|secret| contains(&answer.body, secret));
    if carries_credentials {
        assert!(
            !request.target_is_authority && is_credentials_target(&target),
            "credentials answered off the credentials paths"
        );
        assert!(reading, "credentials answered to {}", raw.method);
        assert!(credentials_allowed, "credentials answered through lockdown");
        assert!(
            token_header.is_none() || token_valid,
            "credentials answered to a bad token"
        );
        assert!(
            !guest.required || token_valid,
            "credentials answered without a valid token while tokens are required"
        );
        assert_eq!(status, 200, "credentials with status {status}");
    }
    if contains(&answer.body, guest.secret_v2.as_bytes()) {
        assert!(token_valid, "the IMDSv2 set answered without a valid token");
    }
    if contains(&answer.body, guest.secret_v1.as_bytes()) {
        assert!(
            token_header.is_none() && !guest.required,
            "the IMDSv1 set answered to a request with a token, or with tokens required"
        );
    }

    // Tokens.
    if guest.required && !token_resource && !token_valid {
        assert!(
            !answer.status.is_success(),
            "{status} without a valid token while tokens are required"
        );
    }
    if token_header.is_some() && !token_valid && !token_resource {
        assert!(
            !answer.status.is_success(),
            "{status} to a request with a bad or forwarded token"
        );
    }
    if issued_token {
        assert!(token_resource && raw.method == Method::PUT && !forwarded);
        assert_eq!(status, 200);
        let echoed: u32 = answer.headers[TTL_HEADER]
            .to_str()
            .expect("digits")
            .parse()
            .expect("a TTL");
        assert!((1..=21600).contains(&echoed), "TTL {echoed}");
        assert_eq!(
            guest.tokens.validate(&answer.body[..], INSTANCE, NOW_MS),
            Ok(echoed),
            "an issued token does not validate with its TTL"
        );
    } else if token_resource && raw.method == Method::PUT {
        assert!(
            status == 400 || status == 403,
            "token request answered {status}"
        );
    }
    if answer.status.is_success() && !token_resource {
        assert!(reading, "{status} to {} off the token resource", raw.method);
        match validated {
            Some(Ok(remaining)) => assert_eq!(
                answer.headers.get(TTL_HEADER).map(HeaderValue::as_bytes),
                Some(remaining.to_string().as_bytes()),
                "an authenticated answer without its token's remaining TTL"
            ),
            _ => assert!(!answer.headers.contains_key(TTL_HEADER)),
        }
    }
}

/// The control API's request bodies, by the first byte of the input.
pub const BODIES: [&str; 13] = [
    "instance",
    "instance-patch",
    "metadata-options",
    "event",
    "fault",
    "role",
    "scenario",
    "service-account-token",
    "ssh-public-key",
    "task",
    "task-patch",
    "pod-identity-association",
    "pod-identity-association-update",
];

/// What was parsed written and read back is the same value.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_vec(value).expect("a parsed body can be written");
    let back: T = serde_json::from_slice(&json).expect("a written body reads back");
    assert_eq!(&back, value, "{}", String::from_utf8_lossy(&json));
}

/// For types without `PartialEq`: written, read back and written again, the JSON is the same.
fn round_trip_json<T: DeserializeOwned + Serialize>(value: &T) {
    let json = serde_json::to_value(value).expect("a parsed body can be written");
    let back: T = serde_json::from_value(json.clone()).expect("a written body reads back");
    assert_eq!(
        serde_json::to_value(&back).expect("written again"),
        json,
        "a body changed on a round trip"
    );
}

fn parse<T: DeserializeOwned>(json: &[u8]) -> Option<T> {
    serde_json::from_slice(json).ok()
}

/// Control-API request bodies from arbitrary JSON. Properties: nothing panics; every body that
/// parses writes and reads back to the same value; where the control API checks a body
/// (instance descriptions resolved and their trees checked, roles, faults, scenarios, tasks,
/// Kubernetes names, SSH keys and users), an accepted body still round-trips and what is made of
/// it keeps what was asked; a role's secrets never reach its `Debug`.
pub fn control_bodies(data: &[u8]) {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    // The moment checks are made at, fixed so that a crash replays.
    let now = OffsetDateTime::from_unix_timestamp((NOW_MS / 1000) as i64).expect("a valid time");
    match usize::from(which) % BODIES.len() {
        0 => {
            let Some(spec) = parse::<InstanceSpec>(json) else {
                return;
            };
            round_trip(&spec);
            let stored = StoredInstance {
                generated: generated(),
                instance: spec,
            };
            if let Ok(instance) = stored.instance.clone().resolve(&stored.generated) {
                if snapshot::check(&instance).is_ok() {
                    round_trip(&stored);
                    let described = Described::of(&stored).expect("a resolved description");
                    assert_eq!(&*described.instance_id, instance.instance_id);
                }
            }
        }
        1 => {
            if let Some(patch) = parse::<InstancePatch>(json) {
                round_trip(&patch);
            }
        }
        2 => {
            if let Some(options) = parse::<ModifyInstanceMetadataOptions>(json) {
                round_trip(&options);
                assert_eq!(
                    options.is_empty(),
                    serde_json::to_value(&options).expect("written") == json!({}),
                    "is_empty disagrees with the body"
                );
            }
        }
        3 => {
            if let Some(event) = parse::<PostEvent>(json) {
                round_trip(&event);
            }
        }
        4 => {
            let Some(spec) = parse::<InjectFault>(json) else {
                return;
            };
            round_trip(&spec);
            if let Ok(fault) = Fault::new(spec.clone(), "fault-fuzz".to_owned(), now) {
                let view = fault.view(INSTANCE, NOW_MS);
                assert_eq!(view.description.kind, spec.kind);
                assert_eq!(
                    view.fault_id,
                    spec.fault_id.as_deref().unwrap_or("fault-fuzz")
                );
                round_trip(&view);
            }
        }
        5 => {
            let Some(spec) = parse::<RoleSpec>(json) else {
                return;
            };
            round_trip(&spec);
            // The Debug (which errors and logs show) does not depend on the secrets.
            let mut other = spec.clone();
            other.secret_access_key = Some("other secret".to_owned());
            other.session_token = Some("other token".to_owned());
            assert_eq!(
                format!("{spec:?}"),
                format!("{other:?}"),
                "a role's secrets reach its Debug"
            );
            if spec.check().is_ok() {
                let hidden = spec.without_secrets();
                assert!(hidden.secret_access_key.is_none() && hidden.session_token.is_none());
            }
        }
        6 => {
            let Some(scenario) = parse::<Scenario>(json) else {
                return;
            };
            round_trip_json(&scenario);
            let _ = scenario::check(scenario, now);
        }
        7 => {
            if let Some(request) = parse::<MintServiceAccountToken>(json) {
                round_trip(&request);
                let _ = check_namespace(&request.namespace);
                let _ = check_service_account(&request.service_account);
            }
        }
        8 => {
            let Some(request) = parse::<SendSshPublicKey>(json) else {
                return;
            };
            round_trip(&request);
            let _ = check_os_user(&request.instance_os_user);
            if let Ok(key) = PublicKey::parse(&request.ssh_public_key) {
                // The line a key is served as reads back as the same key.
                let again = PublicKey::parse(key.line()).expect("a served key line reads back");
                assert_eq!(again, key);
            }
        }
        9 => {
            let Some(spec) = parse::<TaskSpec>(json) else {
                return;
            };
            round_trip(&spec);
            let stored = StoredTask::new(spec.clone());
            if stored.resolve().is_ok() {
                round_trip(&stored);
            }
        }
        10 => {
            if let Some(patch) = parse::<TaskPatch>(json) {
                round_trip(&patch);
            }
        }
        11 => {
            if let Some(request) = parse::<CreatePodIdentityAssociation>(json) {
                round_trip(&request);
                let _ = check_namespace(&request.namespace);
                let _ = check_service_account(&request.service_account);
                let _ = check_role_name(&request.role);
            }
        }
        _ => {
            if let Some(request) = parse::<UpdatePodIdentityAssociation>(json) {
                round_trip(&request);
                let _ = check_role_name(&request.role);
            }
        }
    }
}

/// Un-wraps the served base64 (64-character lines).
fn unwrap_base64(text: &[u8]) -> Vec<u8> {
    let joined: Vec<u8> = text.iter().copied().filter(|&byte| byte != b'\n').collect();
    STANDARD.decode(joined).expect("a signature is base64")
}

/// Checks `pkcs7` (as served: PEM without its armour) over `document` with `certificate`.
fn verify_pkcs7(pkcs7: &[u8], document: &[u8], certificate: &X509) -> bool {
    let pem = format!(
        "-----BEGIN PKCS7-----\n{}\n-----END PKCS7-----\n",
        String::from_utf8_lossy(pkcs7)
    );
    let parsed = Pkcs7::from_pem(pem.as_bytes()).expect("a PKCS#7 signature");
    let mut certificates = Stack::new().expect("a stack");
    certificates
        .push(certificate.clone())
        .expect("a certificate on the stack");
    let store = X509StoreBuilder::new().expect("a store").build();
    parsed
        .verify(
            &certificates,
            &store,
            Some(document),
            None,
            Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY,
        )
        .is_ok()
}

/// The identity document of an arbitrary accepted description. Properties: the document served
/// at `dynamic/instance-identity/document` is byte for byte the one rendered and signed; it is
/// JSON naming the instance; the served `signature` (RSA SHA-256, base64), `pkcs7` and `rsa2048`
/// verify over it with the signing certificate, and a document with a byte changed does not.
pub fn identity(data: &[u8]) {
    let Some(spec) = parse::<InstanceSpec>(data) else {
        return;
    };
    let stored = StoredInstance {
        generated: generated(),
        instance: spec,
    };
    let Ok(instance) = stored.instance.clone().resolve(&stored.generated) else {
        return;
    };
    // What the registry accepts: the description resolves and its tree builds.
    if snapshot::check(&instance).is_err() {
        return;
    }
    let described = Described::of(&stored).expect("a resolved description");
    let issuer = issuer();
    let certificate = X509::from_pem(
        &issuer
            .signer
            .certificate_pem()
            .expect("the certificate as PEM"),
    )
    .expect("the certificate reads");
    let public_key = certificate.public_key().expect("its public key");

    let rendered = SignedIdentity::document(&instance);
    let signed = issuer
        .signer
        .sign(rendered.as_bytes())
        .expect("a document signs");
    let document: Value = serde_json::from_str(&rendered).expect("the document is JSON");
    assert_eq!(document["instanceId"], instance.instance_id.as_str());

    let slot = slot_of(described, None);
    let served = |key: &str| {
        slot.with_snapshot(NOW_MS, |snapshot| {
            snapshot
                .answers
                .get(key)
                .unwrap_or_else(|| panic!("{key} is not served"))
                .body
                .clone()
        })
    };
    let served_document = served("dynamic/instance-identity/document");
    assert_eq!(
        served_document,
        rendered.as_bytes(),
        "the served document is not the rendered one"
    );
    let mut tampered = served_document.to_vec();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;

    let verify_rsa = |signature: &[u8], document: &[u8]| {
        let mut verifier = Verifier::new(MessageDigest::sha256(), &public_key).expect("a verifier");
        verifier.update(document).expect("hashing");
        verifier
            .verify(&unwrap_base64(signature))
            .expect("verifying")
    };
    for signature in [
        &signed.signature,
        &served("dynamic/instance-identity/signature"),
    ] {
        assert!(
            verify_rsa(&signature[..], &served_document[..]),
            "the signature does not verify"
        );
        assert!(
            !verify_rsa(&signature[..], &tampered[..]),
            "a changed document verifies"
        );
    }
    for pkcs7 in [
        &signed.pkcs7,
        &signed.rsa2048,
        &served("dynamic/instance-identity/pkcs7"),
        &served("dynamic/instance-identity/rsa2048"),
    ] {
        assert!(
            verify_pkcs7(pkcs7, &served_document, &certificate),
            "a PKCS#7 signature does not verify"
        );
    }
    assert!(
        !verify_pkcs7(&signed.pkcs7, &tampered, &certificate),
        "a changed document verifies with PKCS#7"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("seeds")
            .join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(path).unwrap())
            })
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds for {target}");
        seeds
    }

    #[test]
    fn every_seed_passes_its_checks() {
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 3] = [
            ("guest_request", guest_request),
            ("control_bodies", control_bodies),
            ("identity", identity),
        ];
        for (target, check) in targets {
            for (name, data) in seeds(target) {
                eprintln!("{target}/{name}");
                check(&data);
            }
        }
    }
}
