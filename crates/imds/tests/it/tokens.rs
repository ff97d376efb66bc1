//! `PUT /latest/api/token` and token checks (spec Part B §2, §3.1).

use std::time::Duration;

use crate::support::{server, Server};

const TTL: &str = "X-aws-ec2-metadata-token-ttl-seconds";

fn put_token(server: &Server, headers: &[(&str, &str)]) -> crate::support::Response {
    server.request("PUT", "/latest/api/token", headers)
}

#[test]
fn valid_ttls_get_a_token_with_the_ttl_echoed() {
    let server = server().start();
    for ttl in ["1", "300", "21600"] {
        let response = put_token(&server, &[(TTL, ttl)]);
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("x-aws-ec2-metadata-token-ttl-seconds"),
            Some(ttl)
        );
        assert_eq!(response.header("server"), Some("EC2ws"));
        assert_eq!(response.header("content-type"), Some("text/plain"));
        let token = response.text();
        assert_eq!(token.len(), 55, "{token}");
        assert!(token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'));
    }
    // Header names are case-insensitive.
    assert_eq!(
        put_token(&server, &[("x-aws-ec2-metadata-token-ttl-seconds", "60")]).status,
        200
    );
    assert_eq!(
        put_token(&server, &[("X-AWS-EC2-METADATA-TOKEN-TTL-SECONDS", "60")]).status,
        200
    );
}

#[test]
fn bad_ttls_get_400() {
    let server = server().start();
    assert_eq!(put_token(&server, &[]).status, 400);
    for ttl in [
        "0",
        "21601",
        "-1",
        "abc",
        "1.5",
        "",
        " ",
        "+60",
        "99999999999999999999999999",
        "0x10",
    ] {
        let response = put_token(&server, &[(TTL, ttl)]);
        assert_eq!(response.status, 400, "TTL {ttl:?}");
        assert!(response.text().contains("<title>400 - Bad Request</title>"));
    }
}

#[test]
fn forwarded_versioned_and_wrong_method_token_requests() {
    let server = server().start();
    let forwarded = put_token(&server, &[(TTL, "60"), ("X-Forwarded-For", "10.0.0.9")]);
    assert_eq!(forwarded.status, 403);
    assert!(forwarded.body.is_empty());
    let versioned = server.request("PUT", "/2021-03-23/api/token", &[(TTL, "60")]);
    assert_eq!(versioned.status, 403);
    for method in ["GET", "POST", "DELETE", "PATCH"] {
        let response = server.request(method, "/latest/api/token", &[(TTL, "60")]);
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("OPTIONS, PUT"));
        assert!(response.body.is_empty());
    }
}

#[test]
fn tokens_are_checked_on_every_request() {
    let server = server().start();
    let token = server.token(60);
    let ok = server.get_with_token("/latest/meta-data/instance-id", &token);
    assert_eq!(ok.status, 200);
    let remaining: u32 = ok
        .header("x-aws-ec2-metadata-token-ttl-seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&remaining), "{remaining}");
    // Lower-case header name, as botocore sends it.
    let lower = server.request(
        "GET",
        "/latest/meta-data/instance-id",
        &[("x-aws-ec2-metadata-token", &token)],
    );
    assert_eq!(lower.status, 200);

    let mut tampered = token.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        "",
        "not-a-token",
        &"A".repeat(55),
        &token[..54],
    ] {
        let response = server.get_with_token("/latest/meta-data/instance-id", bad);
        assert_eq!(response.status, 401, "token {bad:?}");
        assert!(response.text().contains("401 - Unauthorized"));
    }
}

#[test]
fn tokens_expire_at_their_ttl() {
    let server = server().start();
    let token = server.token(1);
    assert_eq!(
        server
            .get_with_token("/latest/meta-data/instance-id", &token)
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        server
            .get_with_token("/latest/meta-data/instance-id", &token)
            .status,
        401
    );
    // Also in optional mode an expired token is refused, not served as IMDSv1.
    assert_eq!(server.get("/latest/meta-data/instance-id").status, 200);
}

#[test]
fn tokens_from_another_key_are_refused_and_tokens_survive_restarts() {
    let state = tempfile::tempdir().unwrap();
    let first = server().state_dir(state.path()).start();
    let token = first.token(600);
    let instance_id = first.get("/latest/meta-data/instance-id").text();
    let other = server().start();
    assert_eq!(
        other
            .get_with_token("/latest/meta-data/instance-id", &token)
            .status,
        401
    );
    drop(first);

    let again = server().state_dir(state.path()).start();
    assert_eq!(
        again.get("/latest/meta-data/instance-id").text(),
        instance_id
    );
    assert_eq!(
        again
            .get_with_token("/latest/meta-data/instance-id", &token)
            .status,
        200
    );
}

#[test]
fn tokens_are_bound_to_the_instance() {
    let state = tempfile::tempdir().unwrap();
    let first = server()
        .state_dir(state.path())
        .config("[instance]\ninstance-id = \"i-0123456789abcdef0\"\n")
        .start();
    let token = first.token(600);
    drop(first);
    // Same key, another instance id: the token is foreign.
    let second = server()
        .state_dir(state.path())
        .config("[instance]\ninstance-id = \"i-0fedcba9876543210\"\n")
        .start();
    assert_eq!(
        second
            .get_with_token("/latest/meta-data/instance-id", &token)
            .status,
        401
    );
}

#[test]
fn many_concurrent_token_requests_all_succeed() {
    let server = server().start();
    let address = server.address();
    let threads: Vec<_> = (0..64)
        .map(|_| {
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        crate::support::send_raw(
                            address,
                            b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n\r\n",
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut n_tokens = 0;
    for thread in threads {
        for response in thread.join().unwrap() {
            assert_eq!(response.status, 200);
            assert_eq!(
                server
                    .get_with_token("/latest/meta-data/instance-id", &response.text())
                    .status,
                200
            );
            n_tokens += 1;
        }
    }
    assert_eq!(n_tokens, 640);
}
